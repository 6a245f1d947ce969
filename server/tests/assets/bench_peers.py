#!/usr/bin/env python3
"""Benchmarks SD 1.5 (real architecture and sizes) on the CPU: ONNX Runtime settings, a cached
optimised UNet, int8 UNets, diffusers' PyTorch pipeline and (when installed) stable-diffusion.cpp,
all on the same weights and thread count. A benchmark, not a test: nothing here runs in CI.

The model folder is the one `make_real_size_sd15.py` writes (ONNX layout at its root, the same
weights as a diffusers PyTorch folder in `pytorch/`). Every case is one 512x512 image at
classifier-free guidance 7.5, so one UNet step is a batch of 2 (latents 64x64, 77 tokens), and
end to end is text encoder + 4 Euler (discrete) steps + VAE decode, starting from the same
unit-variance latents (WORK/latents-1.npy, seed 0), so the pictures can be compared too.

Cases (`--cases`, comma-separated; each runs in its own process so memory does not pile up):

* cache      UNet session creation (ORT_ENABLE_ALL, and ORT_DISABLE_ALL) from the export, then
             saving the optimised graph (`optimized_model_filepath`, initializers over 1 KiB in
             an external file) and creating the session from that file with ORT_DISABLE_ALL and
             with ORT_ENABLE_ALL; checks the saved model's output against the original's (max
             abs diff) and times its step. Creation times are medians of `--runs`.
* ort        UNet step time under ONNX Runtime settings, one setting after another (default
             options; intra 2 + inter 1 as Easel sets them; denormals as zero; spinning off;
             memory pattern off; arena off; ORT_ENABLE_EXTENDED; parallel execution; Easel's
             again), the VAE decoder alone, then Easel's settings end to end with a small numpy
             pipeline (diffusers' EulerDiscreteScheduler).
* ab         the settings that differ by a few per cent, each against Easel's in alternating
             visits (A B A B, each visit a new session, a warm-up and `--ab-runs` steps), so a
             slow drift of the machine cannot pass for an effect.
* int8       `quantize_dynamic` UNets (QInt8 / QUInt8, per channel or not, MatMul only or MatMul
             and Conv): step time and the deviation from fp32 (one step's noise prediction, and
             the decoded picture after 4 Euler steps: max abs diff and PSNR).
* diffusers  diffusers' `StableDiffusionPipeline` (PyTorch, fp32, torch.set_num_threads): UNet
             step, VAE decode and end to end (`--images 1,2` for 2 images too).
* sdcpp      stable-diffusion.cpp through `stable-diffusion-cpp-python`, if installed
             (`CMAKE_ARGS="-DGGML_NATIVE=ON" pip install stable-diffusion-cpp-python`); it reads
             the diffusers folder `pytorch/` itself.

Step times are the median of `--runs` (3) runs after one warm-up (1 run when a step takes over
60 s). Before each timed run the script waits (`--quiet-wait`, 180 s at most) until other
processes leave the cores idle, and a run whose CPU share (this process's CPU time / wall time /
threads; about 0.97 when it had the cores to itself) is under `--min-share` (0.9) is run again,
up to `--retries` (4) times per case; the table shows the lowest share kept. End-to-end times
are `--e2e-runs` (1) runs after the warm-up the step timing gave. The ratio column is the step
time over the reference case's (`--reference`, default Easel's own ORT settings: intra-op 2
threads, inter-op 1). The load column is the 1-minute load average at the start and end of the
case. RSS is the process's resident memory after the case's runs (the `(…: peak RSS)` rows
give each process's peak).

Memory: one fp32 UNet session with its arena is ~8 GiB RSS after a batch-2 step; saving the
optimised model peaks at ~12.6 GiB; `--images 2` makes the ORT UNet run at batch 4 and its arena
grow to ~18 GiB (peak ~21 GiB), so leave it out on a 24 GiB machine that does other work. The
PyTorch pipeline stays under 7 GiB.

Easel's own numbers for the same case (run from the repository root after `cargo build`;
`--latents` makes it start from the same latents (written by this script into WORK),
`--repeat 3` times 3 runs after a warm-up; `denoise_ms / 4` is its step time, `total_ms` its end
to end, `load_ms` the model load):

    EASEL_ORT_THREADS=2 target/debug/easel generate --model /tmp/sd15-random \\
        --prompt "a photograph of an astronaut riding a horse" --negative "" \\
        --size 512x512 --steps 4 --sampler euler --schedule discrete --guidance 7.5 \\
        -n 1 --latents /tmp/sd15-bench/latents-1.npy --repeat 3 --json --npy --out /tmp/easel-bench

    2 images: `-n 2 --latents /tmp/sd15-bench/latents-2.npy` (a UNet step is then a batch of 4;
    see the memory note above). Prefix
    `ORT_DYLIB_PATH=/tmp/lpwvenv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1`
    when Easel has no ONNX Runtime of its own. `--npy` writes the float picture [3, 512, 512];
    compare it with WORK/image-ort-fp32.npy or WORK/image-diffusers.npy (same layout, saved by
    the `ort` and `diffusers` cases): all three start from the same latents and should agree
    to ~1e-4.

Usage:

    nice -n 15 /tmp/lpwvenv/bin/python server/tests/assets/bench_peers.py /tmp/sd15-random \\
        [--work /tmp/sd15-bench] [--cases cache,ort,ab,int8,diffusers,sdcpp] [--threads 2] \\
        [--images 1] [--json rows.json]
    /tmp/lpwvenv/bin/python server/tests/assets/bench_peers.py --from-json rows.json [more.json]

WORK holds the latents, the pictures, the cached optimised UNet and the int8 UNets (each deleted
after it is measured unless `--keep`); about 3.5 GB at peak. The whole set takes about 1.5 hours
on 2 cores (a fp32 UNet step is ~12 s there).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PROMPT = "a photograph of an astronaut riding a horse"
NEGATIVE = ""
STEPS = 4
GUIDANCE = 7.5
SIZE = 512
LATENT = SIZE // 8
SEQ = 77
SCALING = 0.18215

ROWS: list[dict] = []
ARGS = None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load1() -> float:
    return os.getloadavg()[0]


def status_gib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (kB there), in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def rss_gib() -> float:
    return status_gib("VmRSS")


def hwm_gib() -> float:
    """Peak resident memory."""
    return status_gib("VmHWM")


def psnr(got: np.ndarray, want: np.ndarray, peak: float | None = None) -> float:
    mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
    if peak is None:
        peak = float(want.max() - want.min())
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def machine_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over `seconds` (1.0 = every core)."""
    b0, t0 = cpu_ticks()
    time.sleep(seconds)
    b1, t1 = cpu_ticks()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet() -> None:
    """Waits (up to --quiet-wait seconds) until other processes leave the CPUs idle, so a timed
    run does not start in the middle of someone else's compile."""
    deadline = time.time() + ARGS.quiet_wait
    busy = machine_busy()
    while busy > 0.25 and time.time() < deadline:
        log(f"  machine {busy * 100:.0f}% busy; waiting")
        time.sleep(10)
        busy = machine_busy()


def timed_runs(fn, runs: int, warmup: bool = True) -> tuple[list[float], object]:
    """One warm-up, then `runs` timed calls (1 when the warm-up took over 60 s). Seconds.

    Each run's CPU share (this process's CPU time over wall time x threads) is kept in SHARES:
    well under 1 means the run competed with other processes for the cores."""
    if warmup:
        started = time.perf_counter()
        out = fn()
        warm = time.perf_counter() - started
        log(f"  warm-up {warm * 1000:.0f} ms")
        if warm > 60:
            runs = 1
    times = []
    SHARES.clear()
    retries = ARGS.retries
    while len(times) < runs:
        wait_quiet()
        cpu0 = time.process_time()
        started = time.perf_counter()
        out = fn()
        took = time.perf_counter() - started
        share = (time.process_time() - cpu0) / (took * ARGS.threads)
        if share < ARGS.min_share and retries > 0:
            # Another process took the cores during this run: not a measurement of ours.
            retries -= 1
            log(f"  run {took * 1000:.0f} ms, CPU share {share:.2f}: contended, run again")
            continue
        times.append(took)
        SHARES.append(share)
        log(f"  run {took * 1000:.0f} ms, CPU share {share:.2f}")
    return times, out


SHARES: list[float] = []


def add_row(case: str, create_s=None, step_times=None, e2e_ms=None, load=(None, None), note="", rss=None):
    row = {
        "case": case,
        "create_s": create_s,
        "step_ms": statistics.median(step_times) * 1000 if step_times else None,
        "step_min_ms": min(step_times) * 1000 if step_times else None,
        "step_max_ms": max(step_times) * 1000 if step_times else None,
        "step_runs": len(step_times) if step_times else 0,
        "e2e_ms": e2e_ms,
        "load": load,
        "rss_gib": rss,
        "cpu_share": min(SHARES) if (SHARES and (step_times or e2e_ms is not None)) else None,
        "note": note,
    }
    ROWS.append(row)
    log(f"ROW {json.dumps(row)}")
    if ARGS is not None and ARGS.json:
        Path(ARGS.json).write_text(json.dumps(ROWS, indent=2))


# ------------------------------------------------------------------------------------------
# Inputs shared by every case
# ------------------------------------------------------------------------------------------


class Inputs:
    def __init__(self, model: Path, work: Path):
        from transformers import CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
        self.ids = self.tokenizer(
            [NEGATIVE, PROMPT], padding="max_length", max_length=SEQ, truncation=True, return_tensors="np"
        ).input_ids.astype(np.int64)
        rng = np.random.default_rng(0)
        # One-step inputs: latents as the UNet sees them at the first Euler step.
        self.sample = rng.standard_normal((2, 4, LATENT, LATENT)).astype(np.float32)
        self.hidden = (rng.standard_normal((2, SEQ, 768)) * 1.0).astype(np.float32)
        self.timestep = np.array([751.0, 751.0], dtype=np.float32)
        # Unit-variance initial latents for the pictures (Easel's --latents, diffusers' latents=).
        work.mkdir(parents=True, exist_ok=True)
        self.latents = {}
        for n in (1, 2):
            lat = np.random.default_rng(n - 1).standard_normal((n, 4, LATENT, LATENT)).astype(np.float32)
            np.save(work / f"latents-{n}.npy", lat)
            self.latents[n] = lat

    def unet_feed(self, session, hidden=None):
        ports = {i.name: i for i in session.get_inputs()}
        width = ports["encoder_hidden_states"].shape[2]
        hidden = self.hidden if hidden is None else hidden
        if isinstance(width, int) and width != hidden.shape[2]:  # a test model's smaller width
            hidden = np.resize(hidden, (hidden.shape[0], hidden.shape[1], width))
        feed = {"sample": self.sample, "encoder_hidden_states": hidden}
        t = ports["timestep"]
        feed["timestep"] = timestep_array(t, float(self.timestep[0]), len(self.sample))
        return feed


def timestep_array(port, t: float, batch: int) -> np.ndarray:
    """The timestep as the export declares it: int64 or float, [batch], [1] or a scalar."""
    dtype = np.int64 if "int64" in port.type else np.float16 if "float16" in port.type else np.float32
    if len(port.shape) == 0:
        return np.array(t, dtype=dtype)
    return np.full((1 if port.shape[0] == 1 else batch,), t, dtype=dtype)


# ------------------------------------------------------------------------------------------
# ONNX Runtime
# ------------------------------------------------------------------------------------------


def session_options(settings: dict):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if "intra" in settings:
        so.intra_op_num_threads = settings["intra"]
    if "inter" in settings:
        so.inter_op_num_threads = settings["inter"]
    level = settings.get("level")
    if level:
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
    if settings.get("denormal"):
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    if "spinning" in settings:
        so.add_session_config_entry("session.intra_op.allow_spinning", str(settings["spinning"]))
        so.add_session_config_entry("session.inter_op.allow_spinning", str(settings["spinning"]))
    if "mem_pattern" in settings:
        so.enable_mem_pattern = settings["mem_pattern"]
    if "arena" in settings:
        so.enable_cpu_mem_arena = settings["arena"]
    if settings.get("parallel"):
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if "save" in settings:
        out = Path(settings["save"])
        so.optimized_model_filepath = str(out)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", out.name + "_data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    return so


def release_memory() -> None:
    """Collects garbage and hands freed heap back to the system (glibc keeps it otherwise)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def open_session(path: Path, settings: dict):
    import onnxruntime as ort

    release_memory()
    started = time.perf_counter()
    s = ort.InferenceSession(str(path), session_options(settings), providers=["CPUExecutionProvider"])
    created = time.perf_counter() - started
    log(f"  session {path.name} {settings}: {created:.1f} s, RSS {rss_gib():.1f} GiB")
    return s, created


def ort_step_case(case, path, settings, inputs, keep=False, note=""):
    l0 = load1()
    s, created = open_session(path, settings)
    feed = inputs.unet_feed(s)
    times, out = timed_runs(lambda: s.run(None, feed)[0], ARGS.runs)
    add_row(case, created, times, load=(l0, load1()), rss=rss_gib(), note=note)
    if keep:
        return s, out
    del s
    gc.collect()
    return None, out


class OrtPipeline:
    """diffusers' ONNX pipeline in a few lines: CLIP, CFG batch of 2 per image, Euler, VAE."""

    def __init__(self, model: Path, settings: dict, unet=None):
        from diffusers import EulerDiscreteScheduler

        self.text, _ = open_session(model / "text_encoder" / "model.onnx", {k: v for k, v in settings.items() if k != "save"})
        self.vae, _ = open_session(model / "vae_decoder" / "model.onnx", {k: v for k, v in settings.items() if k != "save"})
        self.unet = unet
        config = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
        self.scheduler = EulerDiscreteScheduler.from_config(config)

    def __call__(self, inputs: Inputs, n: int = 1):
        import torch

        clock = time.perf_counter()
        ids = inputs.ids
        t_in = self.text.get_inputs()[0]
        ids = ids.astype(np.int32 if "int32" in t_in.type else np.int64)
        hidden = self.text.run(["last_hidden_state"], {"input_ids": ids})[0]
        self.parts = {"text": time.perf_counter() - clock}
        clock = time.perf_counter()
        hidden = np.concatenate([np.repeat(hidden[:1], n, 0), np.repeat(hidden[1:], n, 0)])
        sch = self.scheduler
        sch.set_timesteps(STEPS)
        latents = torch.from_numpy(inputs.latents[n]) * sch.init_noise_sigma
        t_port = [i for i in self.unet.get_inputs() if i.name == "timestep"][0]
        for t in sch.timesteps:
            model_in = sch.scale_model_input(torch.cat([latents] * 2), t)
            ts = timestep_array(t_port, float(t), 2 * n)
            noise = self.unet.run(
                None, {"sample": model_in.numpy(), "timestep": ts, "encoder_hidden_states": hidden}
            )[0]
            uncond, cond = noise[:n], noise[n:]
            guided = torch.from_numpy(uncond + GUIDANCE * (cond - uncond))
            latents = sch.step(guided, t, latents).prev_sample
        self.parts["denoise"] = time.perf_counter() - clock
        clock = time.perf_counter()
        images = []
        for k in range(n):
            img = self.vae.run(None, {"latent_sample": (latents[k : k + 1] / SCALING).numpy().astype(np.float32)})[0]
            images.append(np.clip(img[0] / 2 + 0.5, 0, 1))
        self.parts["vae"] = time.perf_counter() - clock
        return np.stack(images)

    def breakdown(self) -> str:
        return "text {text:.1f} s, denoise {denoise:.1f} s, VAE {vae:.1f} s".format(**self.parts)


def create_repeatedly(path: Path, settings: dict, times: int):
    """Creates the session `times` times (each after the machine goes quiet); returns the last
    session and the creation times in seconds."""
    created = []
    s = None
    retries = ARGS.retries
    while len(created) < times:
        s = None
        release_memory()
        wait_quiet()
        cpu0 = time.process_time()
        s, took = open_session(path, settings)
        # Creation is mostly one thread: CPU time / wall time is about 1 when uncontended.
        share = (time.process_time() - cpu0) / took
        if share < 0.8 and retries > 0:
            retries -= 1
            log(f"  creation CPU share {share:.2f}: contended, create again")
            continue
        created.append(took)
    return s, created


def spread(values: list[float]) -> str:
    return f"creation median of {len(values)}: {', '.join(f'{v:.1f}' for v in values)} s"


def case_cache(model: Path, work: Path, inputs: Inputs):
    unet = model / "unet" / "model.onnx"
    base = {"intra": ARGS.threads, "inter": 1}
    cached = work / "unet-optimized" / "model.onnx"
    shutil.rmtree(cached.parent, ignore_errors=True)
    cached.parent.mkdir(parents=True)

    # The files are read once first, so every creation below finds them in the page cache.
    l0 = load1()
    s, created = create_repeatedly(unet, {**base, "level": "all"}, ARGS.runs)
    ref = s.run(None, inputs.unet_feed(s))[0]
    s = None
    add_row("cache: create from export, ORT_ENABLE_ALL", statistics.median(created), load=(l0, load1()), rss=rss_gib(), note=spread(created))

    l0 = load1()
    s, created = create_repeatedly(unet, {**base, "level": "disable"}, ARGS.runs)
    out = s.run(None, inputs.unet_feed(s))[0]
    s = None
    add_row("cache: create from export, ORT_DISABLE_ALL (no optimisation)", statistics.median(created), load=(l0, load1()), note=spread(created) + f"; max|unoptimised-optimised| {np.abs(out - ref).max():.3g}")

    l0 = load1()
    wait_quiet()
    s, created = open_session(unet, {**base, "level": "all", "save": cached})
    s = None
    gc.collect()
    size = sum(f.stat().st_size for f in cached.parent.iterdir()) / 2**30
    add_row("cache: create + save optimised (ENABLE_ALL)", created, load=(l0, load1()), note=f"{size:.2f} GiB written ({', '.join(f.name for f in sorted(cached.parent.iterdir()))})")

    for level in ("disable", "all"):
        l0 = load1()
        s, created = create_repeatedly(cached, {**base, "level": level}, ARGS.runs)
        feed = inputs.unet_feed(s)
        times = None
        if level == "disable":
            times, out = timed_runs(lambda: s.run(None, feed)[0], ARGS.runs)
        else:
            out = s.run(None, feed)[0]
        note = spread(created) + f"; max|cached-export| {np.abs(out - ref).max():.3g}"
        s = None
        gc.collect()
        add_row(f"cache: create from saved, ORT_{'DISABLE' if level == 'disable' else 'ENABLE'}_ALL", statistics.median(created), times, load=(l0, load1()), note=note)
    if not ARGS.keep:
        shutil.rmtree(cached.parent, ignore_errors=True)


ORT_CASES = [
    ("ort intra2 inter1 (Easel's)", {"intra": None, "inter": 1}),
    ("ort default SessionOptions()", {}),
    ("ort + set_denormal_as_zero", {"intra": None, "inter": 1, "denormal": True}),
    ("ort + allow_spinning 0", {"intra": None, "inter": 1, "spinning": 0}),
    ("ort + enable_mem_pattern off", {"intra": None, "inter": 1, "mem_pattern": False}),
    ("ort + cpu_mem_arena off", {"intra": None, "inter": 1, "arena": False}),
    ("ort + ORT_ENABLE_EXTENDED", {"intra": None, "inter": 1, "level": "extended"}),
    ("ort + ORT_PARALLEL (inter 2)", {"intra": None, "inter": 2, "parallel": True}),
    ("ort intra2 inter1 (repeat)", {"intra": None, "inter": 1}),
]


def resolve(settings: dict) -> dict:
    return {k: (ARGS.threads if (k == "intra" and v is None) else v) for k, v in settings.items()}


def case_ort(model: Path, work: Path, inputs: Inputs):
    unet = model / "unet" / "model.onnx"
    only = set(ARGS.ort_only.split(",")) if ARGS.ort_only else None
    for i, (name, settings) in enumerate(ORT_CASES):
        if only and str(i) not in only:
            continue
        ort_step_case(name, unet, resolve(settings), inputs)
    settings = resolve(ORT_CASES[0][1])
    # The VAE decoder alone (one 512x512 image), under the settings that matter for its convolutions.
    latent = (inputs.latents[1] * 1.0).astype(np.float32)
    vae_path = model / "vae_decoder" / "model.onnx"
    for name, extra in (("", {}), (", mem_pattern off", {"mem_pattern": False}), (", ORT_ENABLE_EXTENDED", {"level": "extended"})):
        l0 = load1()
        v, created = open_session(vae_path, {**settings, **extra})
        times, _ = timed_runs(lambda: v.run(None, {"latent_sample": latent})[0], ARGS.runs)
        add_row(f"ort VAE decode 512x512{name}", created, times, load=(l0, load1()), rss=rss_gib(), note="ms column: one decode, not a UNet step")
        v = None
        release_memory()
    # End to end with Easel's settings, and the fp32 picture the int8 case compares against.
    # (2 images run the UNet at batch 4: ONNX Runtime's arena then grows to ~18 GiB RSS.)
    l0 = load1()
    s, created = open_session(unet, settings)
    pipe = OrtPipeline(model, settings, s)
    noise = s.run(None, inputs.unet_feed(s))[0]
    np.save(work / "noise-ort-fp32.npy", noise)
    for n in ARGS.images:
        log(f"  end to end, {n} image(s)")
        e2e, image = timed_runs(lambda: pipe(inputs, n), ARGS.e2e_runs, warmup=False)
        np.save(work / f"image-ort-fp32-{n}.npy", image)
        if n == 1:
            np.save(work / "image-ort-fp32.npy", image[0])
        add_row(f"ort pipeline e2e, {n} image(s), Easel's settings", created, e2e_ms=statistics.median(e2e) * 1000, load=(l0, load1()), rss=rss_gib(), note=f"numpy Euler + ORT; last run: {pipe.breakdown()}")
    del pipe, s
    gc.collect()


AB_CASES = [
    ("A/B: + set_denormal_as_zero", {"denormal": True}),
    ("A/B: + allow_spinning 0", {"spinning": 0}),
    ("A/B: + enable_mem_pattern off", {"mem_pattern": False}),
    ("A/B: + cpu_mem_arena off", {"arena": False}),
    ("A/B: + ORT_ENABLE_EXTENDED", {"level": "extended"}),
    ("A/B: default SessionOptions()", None),
]


def case_ab(model: Path, work: Path, inputs: Inputs):
    """Each setting against Easel's settings, alternating A B A B (`--ab-cycles` cycles; each
    visit creates its session, warms it up and times `--ab-runs` steps), so slow drifts of the
    machine hit both sides alike. One session at a time: two fp32 UNet sessions with their
    arenas would need about 16 GiB."""
    unet = model / "unet" / "model.onnx"
    base_settings = resolve(ORT_CASES[0][1])
    only = set(ARGS.ab_only.split(",")) if ARGS.ab_only else None
    for i, (name, extra) in enumerate(AB_CASES):
        if only and str(i) not in only:
            continue
        l0 = load1()
        settings = {} if extra is None else {**base_settings, **extra}
        times = {"a": [], "b": []}
        created = {"a": [], "b": []}
        rss = {"a": 0.0, "b": 0.0}
        shares = []
        for cycle in range(ARGS.ab_cycles):
            for side, chosen in (("a", base_settings), ("b", settings)):
                session, took = open_session(unet, chosen)
                created[side].append(took)
                feed = inputs.unet_feed(session)
                runs, _ = timed_runs(lambda: session.run(None, feed)[0], ARGS.ab_runs)
                times[side].extend(runs)
                shares.extend(SHARES)
                rss[side] = max(rss[side], rss_gib())
                session = None
                release_memory()
        SHARES[:] = shares
        ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
        add_row(
            name,
            statistics.median(created["b"]),
            times["b"],
            load=(l0, load1()),
            rss=rss["b"],
            note=(
                f"Easel's settings, interleaved: {ma * 1000:.0f} ms (runs {', '.join(f'{x * 1000:.0f}' for x in times['a'])}; "
                f"created in {statistics.median(created['a']):.1f} s; RSS {rss['a']:.1f} GiB); variant runs "
                f"{', '.join(f'{x * 1000:.0f}' for x in times['b'])}; **variant/Easel's {mb / ma:.3f}**"
            ),
        )


def fp32_references(model: Path, work: Path, inputs: Inputs):
    """The fp32 noise prediction and picture (from the `ort` case, or computed now)."""
    noise_path, image_path = work / "noise-ort-fp32.npy", work / "image-ort-fp32.npy"
    if not noise_path.is_file() or not image_path.is_file():
        settings = resolve(ORT_CASES[0][1])
        s, _ = open_session(model / "unet" / "model.onnx", settings)
        np.save(noise_path, s.run(None, inputs.unet_feed(s))[0])
        pipe = OrtPipeline(model, settings, s)
        np.save(image_path, pipe(inputs, 1)[0])
        del pipe, s
        gc.collect()
    return np.load(noise_path), np.load(image_path)


INT8_CASES = [
    # name, weight type, per channel, op types
    ("int8 MatMul QInt8", "QInt8", False, ["MatMul"]),
    ("int8 MatMul QInt8 per-channel", "QInt8", True, ["MatMul"]),
    ("int8 MatMul QUInt8", "QUInt8", False, ["MatMul"]),
    ("int8 MatMul QUInt8 per-channel", "QUInt8", True, ["MatMul"]),
    ("int8 MatMul+Conv QUInt8", "QUInt8", False, ["MatMul", "Conv"]),
    ("int8 MatMul+Conv QInt8", "QInt8", False, ["MatMul", "Conv"]),
]


def case_int8(model: Path, work: Path, inputs: Inputs):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ref_noise, ref_image = fp32_references(model, work, inputs)
    settings = resolve(ORT_CASES[0][1])
    only = set(ARGS.int8_only.split(",")) if ARGS.int8_only else None
    for i, (name, weight, per_channel, ops) in enumerate(INT8_CASES):
        if only and str(i) not in only:
            continue
        folder = work / f"unet-int8-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        out = folder / "model.onnx"
        log(f"{name}: quantising")
        started = time.perf_counter()
        try:
            quantize_dynamic(
                str(model / "unet" / "model.onnx"),
                str(out),
                weight_type=getattr(QuantType, weight),
                per_channel=per_channel,
                op_types_to_quantize=ops,
                use_external_data_format=True,
                extra_options={"MatMulConstBOnly": True},
            )
        except Exception as e:  # noqa: BLE001 - a failed variant is a result, not a crash
            add_row(name, note=f"quantize_dynamic failed: {type(e).__name__}: {str(e)[:160]}")
            shutil.rmtree(folder, ignore_errors=True)
            continue
        quant_s = time.perf_counter() - started
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**30
        try:
            l0 = load1()
            s, created = open_session(out, settings)
            feed = inputs.unet_feed(s)
            times, noise = timed_runs(lambda: s.run(None, feed)[0], ARGS.runs)
            note = (
                f"quantised in {quant_s:.0f} s, {size:.2f} GiB; step max|int8-fp32| "
                f"{np.abs(noise - ref_noise).max():.3g} PSNR {psnr(noise, ref_noise):.1f} dB"
            )
            e2e_ms = None
            if ARGS.int8_image:
                pipe = OrtPipeline(model, settings, s)
                shares = list(SHARES)
                e2e, image = timed_runs(lambda: pipe(inputs, 1)[0], 1, warmup=False)
                SHARES[:] = shares + SHARES
                e2e_ms = e2e[0] * 1000
                np.save(work / f"image-int8-{i}.npy", image)
                note += f"; picture max|diff| {np.abs(image - ref_image).max():.3g} PSNR {psnr(image, ref_image, 1.0):.1f} dB"
                del pipe
            add_row(name, created, times, e2e_ms=e2e_ms, load=(l0, load1()), rss=rss_gib(), note=note)
            del s
        except Exception as e:  # noqa: BLE001
            add_row(name, note=f"ORT failed: {type(e).__name__}: {str(e)[:160]}")
        gc.collect()
        if not ARGS.keep:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Peers
# ------------------------------------------------------------------------------------------


def case_diffusers(model: Path, work: Path, inputs: Inputs):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    torch.set_num_threads(ARGS.threads)
    l0 = load1()
    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(str(model / "pytorch"), torch_dtype=torch.float32)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    created = time.perf_counter() - started
    sample = torch.from_numpy(inputs.sample)
    hidden = torch.from_numpy(inputs.hidden)
    timestep = torch.from_numpy(inputs.timestep)

    def step():
        with torch.inference_mode():
            return pipe.unet(sample, timestep, hidden, return_dict=False)[0].numpy()

    times, noise = timed_runs(step, ARGS.runs)
    ref_noise_path = work / "noise-ort-fp32.npy"
    note = f"torch {torch.__version__}, diffusers SDPA attention"
    if ref_noise_path.is_file():
        ref = np.load(ref_noise_path)
        note += f"; step max|torch-ort| {np.abs(noise - ref).max():.3g}"
    add_row("diffusers PyTorch fp32 UNet step", created, times, load=(l0, load1()), rss=rss_gib(), note=note)

    latent = torch.from_numpy(inputs.latents[1])

    def decode():
        with torch.inference_mode():
            return pipe.vae.decode(latent, return_dict=False)[0]

    l0 = load1()
    times, _ = timed_runs(decode, ARGS.runs)
    add_row("diffusers VAE decode 512x512", None, times, load=(l0, load1()), rss=rss_gib(), note="ms column: one decode, not a UNet step")

    for n in ARGS.images:
        l0 = load1()
        def generate():
            with torch.inference_mode():
                return pipe(
                    PROMPT,
                    negative_prompt=NEGATIVE,
                    height=SIZE,
                    width=SIZE,
                    num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE,
                    latents=torch.from_numpy(inputs.latents[n]),
                    num_images_per_prompt=n,
                    output_type="np",
                ).images

        log(f"  end to end, {n} image(s)")
        e2e, image = timed_runs(generate, ARGS.e2e_runs, warmup=False)
        image = np.transpose(image, (0, 3, 1, 2))  # NHWC -> NCHW like Easel's .npy
        np.save(work / f"image-diffusers-{n}.npy", image)
        note = ""
        if n == 1:
            np.save(work / "image-diffusers.npy", image[0])
            ref_path = work / "image-ort-fp32.npy"
            if ref_path.is_file():
                ref = np.load(ref_path)
                note = f"picture vs ORT fp32: max|diff| {np.abs(image[0] - ref).max():.3g} PSNR {psnr(image[0], ref, 1.0):.1f} dB"
        add_row(f"diffusers PyTorch e2e, {n} image(s)", None, e2e_ms=statistics.median(e2e) * 1000, load=(l0, load1()), rss=rss_gib(), note=note)
    del pipe
    gc.collect()


def case_sdcpp(model: Path, work: Path, inputs: Inputs):
    """stable-diffusion.cpp reads the diffusers folder (`pytorch/`) itself. Its step time is
    (end to end at 4 steps - end to end at 2 steps) / 2; its pictures start from its own noise."""
    try:
        from stable_diffusion_cpp import StableDiffusion
    except ImportError:
        add_row("stable-diffusion.cpp", note="stable-diffusion-cpp-python is not installed")
        return
    import inspect

    import stable_diffusion_cpp

    l0 = load1()
    started = time.perf_counter()
    extra = {"vae_decode_only": True} if "vae_decode_only" in inspect.signature(StableDiffusion).parameters else {}
    sd = StableDiffusion(model_path=str(model / "pytorch"), n_threads=ARGS.threads, verbose=ARGS.sdcpp_verbose, **extra)
    created = time.perf_counter() - started
    params = inspect.signature(sd.generate_image).parameters
    log(f"  generate_image parameters: {list(params)}")
    version = getattr(stable_diffusion_cpp, "__version__", "?")

    def kwargs(steps, n):
        k = dict(prompt=PROMPT, negative_prompt=NEGATIVE, width=SIZE, height=SIZE, cfg_scale=GUIDANCE, seed=0)
        k["sample_steps" if "sample_steps" in params else "steps"] = steps
        if "sample_method" in params:
            k["sample_method"] = "euler"
        if "batch_count" in params:
            k["batch_count"] = n
        return k

    for n in ARGS.images:
        l0 = load1()
        times = {}
        for steps in (2, STEPS):
            log(f"  stable-diffusion.cpp, {n} image(s), {steps} steps")
            runs, _ = timed_runs(lambda: sd.generate_image(**kwargs(steps, n)), ARGS.e2e_runs, warmup=(steps == 2))
            times[steps] = statistics.median(runs)
        per_step = (times[STEPS] - times[2]) / (STEPS - 2) / n
        add_row(
            f"stable-diffusion.cpp e2e, {n} image(s)",
            created,
            [per_step],
            e2e_ms=times[STEPS] * 1000,
            load=(l0, load1()),
            rss=rss_gib(),
            note=f"stable-diffusion-cpp-python {version}, f32 weights; step = (4-step - 2-step)/2 per image (batch_count runs images one by one)",
        )
    del sd
    gc.collect()


# ------------------------------------------------------------------------------------------


def fmt(v, spec):
    return "" if v is None else format(v, spec)


def table() -> str:
    ref = next((r for r in ROWS if r["case"] == ARGS.reference and r["step_ms"]), None)
    lines = [
        f"| case | create s | ms / UNet step (median) | min–max (runs) | end-to-end ms | step ratio to `{ARGS.reference}` | load 1 min (start→end) | min CPU share | RSS GiB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ROWS:
        ratio = f"{r['step_ms'] / ref['step_ms']:.2f}" if (ref and r["step_ms"] and "VAE" not in r["case"]) else ""
        span = f"{r['step_min_ms']:.0f}–{r['step_max_ms']:.0f} ({r['step_runs']})" if r["step_ms"] else ""
        l0, l1 = r["load"]
        load = f"{l0:.1f}→{l1:.1f}" if l0 is not None else ""
        lines.append(
            f"| {r['case']} | {fmt(r['create_s'], '.1f')} | {fmt(r['step_ms'], '.0f')} | {span} | "
            f"{fmt(r['e2e_ms'], '.0f')} | {ratio} | {load} | {fmt(r.get('cpu_share'), '.2f')} | {fmt(r['rss_gib'], '.1f')} | {r['note']} |"
        )
    return "\n".join(lines)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", default=Path("/tmp/sd15-random"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/sd15-bench"))
    parser.add_argument("--cases", default="cache,ort,ab,int8,diffusers,sdcpp")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="timed UNet steps after one warm-up")
    parser.add_argument("--e2e-runs", type=int, default=1)
    parser.add_argument("--images", default="1", help="comma-separated image counts for end to end, e.g. 1,2")
    parser.add_argument("--ort-only", default="", help="indices into the ort settings list, e.g. 0,2,8")
    parser.add_argument("--ab-only", default="", help="indices into the A/B list, e.g. 0,2")
    parser.add_argument("--ab-cycles", type=int, default=2, help="A B cycles per A/B setting")
    parser.add_argument("--ab-runs", type=int, default=2, help="timed steps per visit in the A/B case")
    parser.add_argument("--int8-only", default="", help="indices into the int8 list, e.g. 0,4")
    parser.add_argument("--no-int8-image", dest="int8_image", action="store_false", help="skip the 4-step picture per int8 UNet")
    parser.add_argument("--reference", default="ort intra2 inter1 (Easel's)")
    parser.add_argument("--quiet-wait", type=float, default=180, help="seconds to wait for other processes to go idle before each timed run")
    parser.add_argument("--min-share", type=float, default=0.9, help="a timed run whose CPU share (process CPU time / wall / threads) is below this is run again")
    parser.add_argument("--retries", type=int, default=4, help="how many contended runs may be run again per case")
    parser.add_argument("--sdcpp-verbose", action="store_true", help="let stable-diffusion.cpp log (per-step times)")
    parser.add_argument("--keep", action="store_true", help="keep the cached and int8 models in WORK")
    parser.add_argument("--json", help="also write the rows as JSON here (rewritten after every row)")
    parser.add_argument("--from-json", nargs="+", help="only print the table of rows saved by earlier --json runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ARGS = parser.parse_args()
    ARGS.images = [int(x) for x in ARGS.images.split(",") if x]
    if ARGS.from_json:
        for path in ARGS.from_json:
            ROWS.extend(json.loads(Path(path).read_text()))
        print(table())
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))
    model, work = ARGS.model.resolve(), ARGS.work.resolve()
    if not (model / "unet" / "model.onnx").is_file():
        raise SystemExit(f"{model} has no unet/model.onnx: run make_real_size_sd15.py first")
    names = [n for n in ARGS.cases.split(",") if n]
    cases = {"cache": case_cache, "ort": case_ort, "ab": case_ab, "int8": case_int8, "diffusers": case_diffusers, "sdcpp": case_sdcpp}
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(cases)}")
    if not ARGS.child:
        # Each case runs in its own process, so one case's sessions and allocator leftovers do
        # not add to the next one's peak memory.
        import subprocess
        import tempfile

        for name in names:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                rows_file = f.name
            argv = [a for a in sys.argv[1:]]
            cmd = [sys.executable, str(Path(__file__).resolve()), *strip_options(argv, ("--cases", "--json")), "--cases", name, "--json", rows_file, "--child"]
            code = subprocess.call(cmd, stdout=subprocess.DEVNULL)
            try:
                rows = json.loads(Path(rows_file).read_text() or "[]")
            except (OSError, json.JSONDecodeError):
                rows = []
            os.unlink(rows_file)
            if code != 0:
                rows.append({**empty_row(f"{name} (failed)"), "note": f"the case's process exited with {code}; see its log above"})
            ROWS.extend(rows)
            if ARGS.json:
                Path(ARGS.json).write_text(json.dumps(ROWS, indent=2))
        print(table())
        return
    inputs = Inputs(model, work)
    import onnxruntime

    log(f"onnxruntime {onnxruntime.__version__}, threads {ARGS.threads}, load {os.getloadavg()}")
    for name in names:
        log(f"== {name}")
        try:
            cases[name](model, work, inputs)
        except Exception as e:  # noqa: BLE001 - report and go on with the next case
            import traceback

            traceback.print_exc()
            add_row(f"{name} (failed)", note=f"{type(e).__name__}: {str(e)[:200]}")
    log(f"peak RSS of this case's process {hwm_gib():.1f} GiB")
    add_row(f"({name}: peak RSS of its process)", rss=hwm_gib())


def strip_options(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv without the given `--option value` / `--option=value` pairs."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in options:
            skip = True
            continue
        if any(a.startswith(o + "=") for o in options):
            continue
        out.append(a)
    return out


def empty_row(case: str) -> dict:
    return {"case": case, "create_s": None, "step_ms": None, "step_min_ms": None, "step_max_ms": None, "step_runs": 0, "e2e_ms": None, "load": [None, None], "rss_gib": None, "cpu_share": None, "note": ""}

if __name__ == "__main__":
    main()
