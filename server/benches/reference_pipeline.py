#!/usr/bin/env python3
"""The reference text-to-image pipeline Easel's Rust engine is compared against (results and speed).

It is diffusers' `OnnxStableDiffusionPipeline.__call__`
(diffusers/pipelines/stable_diffusion/pipeline_onnx_stable_diffusion.py) written out step by step:
diffusers' schedulers (torch, CPU) around plain onnxruntime sessions. The class itself is not
used: in diffusers 0.42.1 it breaks with the Euler-family schedulers, whose `init_noise_sigma` is
a tensor. What it does, as the Rust pipeline (server/src/imaging/diffusion/pipeline.rs) does:

1. tokenize the prompt and the negative prompt separately (padding="max_length", max_length=77,
   truncation=True) and run the text encoder on each (input_ids in the dtype the session declares);
   `prompt_embeds = concat([neg] * n + [pos] * n)` when guidance > 1, else only `[pos] * n`;
2. `latents = initial_latents [n, 4, h/8, w/8] * float(scheduler.init_noise_sigma)`;
3. for each `t` in `scheduler.timesteps`: `concat([latents] * 2)` (with guidance) →
   `scheduler.scale_model_input` → unet(sample, timestep=np.array([t], dtype=the unet's timestep
   dtype), encoder_hidden_states) → `u + g * (c - u)` → `scheduler.step(...).prev_sample`;
4. decode `latents / scaling_factor` (vae_decoder/config.json, default 0.18215) one image at a
   time; images are `clip(x / 2 + 0.5, 0, 1)`, float32 [n, 3, H, W].

LCM models (a UNet input `timestep_cond`) get diffusers' guidance-scale embedding of
`guidance - 1` and no classifier-free guidance, as `LatentConsistencyModelPipeline`. SDXL models
(two text encoders) are not supported here.

Edits (`--image`, optionally `--mask`, and `--strength`), as diffusers' PyTorch pipelines do them
around the ONNX sessions (the Rust pipeline's `prepare_edit` / `EditState`):

* img2img = `StableDiffusionImg2ImgPipeline`: the picture (resized to the output size with PIL's
  Lanczos if needed, as `VaeImageProcessor`) → float [0, 1] → `2x - 1`, [1, 3, H, W];
  `image_latents = vae_encoder(sample=image)[0]`, only the first 4 channels (the mean) when the
  encoder returns 8 (`latent_parameters`: mean, then log-variance), times the VAE scaling factor;
  `scheduler.set_timesteps(steps)`; `get_timesteps`: `init_timestep = min(int(steps * strength),
  steps)`, `t_start = max(steps - init_timestep, 0)`, `timesteps = scheduler.timesteps[t_start *
  scheduler.order:]`, `scheduler.set_begin_index(t_start * scheduler.order)` where the scheduler
  has it; `latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(n))` where
  `noise` is the unit-variance initial latents (--latents or --seed); then the loop of step 3 over
  `timesteps`, and step 4.
* inpainting with a standard 4-channel UNet = the 4-channel branch of
  `StableDiffusionInpaintPipeline`: the mask goes through `VaeImageProcessor(do_normalize=False,
  do_binarize=True, do_convert_grayscale=True)` (grayscale, white = repaint, `>= 0.5` → 1) and
  `torch.nn.functional.interpolate(mask, size=(H/8, W/8))` (nearest); the start is as img2img, or
  `noise * init_noise_sigma` when strength is 1; after each `scheduler.step`:
  `init_latents_proper = image_latents`, noised with `scheduler.add_noise(image_latents, noise,
  torch.tensor([timesteps[i + 1]]))` unless it was the last timestep, and
  `latents = (1 - mask) * init_latents_proper + mask * latents`. A mask PNG with any transparency
  is first turned into Easel's convention (transparent = repaint, as OpenAI's images API) by
  taking `1 - alpha`; diffusers itself only reads the grey level. 9-channel inpainting UNets are
  not supported here.

Samplers (`Class.from_config(scheduler_config.json, use_karras_sigmas=(schedule == "karras"))`,
Karras only where the class has the option): euler → EulerDiscreteScheduler, euler_a →
EulerAncestralDiscreteScheduler, heun → HeunDiscreteScheduler, dpm2 → KDPM2DiscreteScheduler,
dpm++2m → DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2), ddim →
DDIMScheduler (eta 0), lcm → LCMScheduler. Stochastic samplers (euler_a, lcm) draw their noise
from one torch CPU generator per image seeded with `seed + i` (after the initial latents when
those are drawn here too), as the Rust pipeline does.

Tokenizer: the slow (pure Python) `CLIPTokenizer` of transformers 4.x is the reference (the Rust
tokenizer reproduces it). transformers 5 dropped it, so:
  * under transformers < 5 it is used directly;
  * else, if `--tokenizer-python` / the environment variable EASEL_TOKENIZER_PYTHON names a Python
    that has transformers 4.x (e.g. a venv with `pip install "transformers==4.57.*"`; it needs
    neither torch nor onnxruntime), tokenization runs there in a subprocess;
  * else `CLIPTokenizerFast` is used with a warning (it agrees on plain ASCII prompts).
`ftfy` must not be installed (the slow tokenizer would then clean text differently).

CLI (one warm-up then R timed runs with `--repeat R`; `--json` prints one line
`{"tokenizer", "threads", "runs": [{"total_ms", "text_encoder_ms", "denoise_ms", "vae_ms", "onnx_ms",
"encode_ms"}, ...], "mean": {...}}` where onnx_ms is the wall time inside `session.run` calls and total_ms includes
the PNG encoding (encode_ms), as `easel generate --json` counts it; session loading is not timed):

    python3 server/benches/reference_pipeline.py --model server/tests/assets/models/tiny-sd \\
        --prompt "a red fox" --negative "blurry" -n 1 --size 64x64 --steps 6 --guidance 7.5 \\
        --sampler euler --schedule discrete --seed 1 --threads 4 --out /tmp/ref

It writes `reference-<i>.png` per image and `reference.npy` (float32 [n, 3, H, W]) into --out.
Without --latents the initial latents of image i are `torch.randn([1, 4, h, w])` from a CPU
generator seeded with `seed + i` (the Rust TorchRng reproduces this).

An edit adds `--image source.png [--mask mask.png] --strength 0.6` (the default strength, as
`easel generate`'s); the VAE encoder's time counts as denoise_ms, as `easel generate` counts it.

Tested with Python 3.11, numpy 2.4, onnxruntime 1.31.1, torch 2.15 (CPU), diffusers 0.42.1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import numpy as np
import onnxruntime as ort
import torch
from diffusers.utils import logging as diffusers_logging

MAX_LENGTH = 77
DEFAULT_SCALING_FACTOR = 0.18215

ORT_TO_NP = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}

# sampler name -> (diffusers class name, extra from_config kwargs)
SAMPLERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
SCHEDULES = ("discrete", "karras")


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_SUBPROCESS_TOKENIZE = r"""
import json, sys
import transformers
from transformers import CLIPTokenizer
request = json.load(sys.stdin)
if int(transformers.__version__.split(".")[0]) >= 5:
    sys.exit("transformers %s has no slow CLIPTokenizer" % transformers.__version__)
tok = CLIPTokenizer.from_pretrained(request["folder"])
ids = tok(request["texts"], padding="max_length", max_length=request["max_length"], truncation=True).input_ids
json.dump({"ids": ids, "kind": "slow CLIPTokenizer, transformers " + transformers.__version__}, sys.stdout)
"""


class Tokenizer:
    """`tokenizer(texts, padding="max_length", max_length=77, truncation=True).input_ids` with the
    best CLIP tokenizer available (see the module docstring). `kind` says which one."""

    def __init__(self, folder: Path, python: str | None = None):
        self.folder = Path(folder)
        self.python = python if python is not None else os.environ.get("EASEL_TOKENIZER_PYTHON") or None
        self._cache: dict[str, list[int]] = {}
        self._local = None
        import transformers

        if int(transformers.__version__.split(".")[0]) < 5:
            from transformers import CLIPTokenizer

            self._local = CLIPTokenizer.from_pretrained(str(self.folder))
            self.kind = f"slow CLIPTokenizer, transformers {transformers.__version__}"
        elif self.python:
            self.kind = None  # known after the first call
        else:
            from transformers import CLIPTokenizerFast

            warnings.warn(
                f"transformers {transformers.__version__} has no slow CLIPTokenizer; using CLIPTokenizerFast "
                "(same ids for plain ASCII prompts). Set EASEL_TOKENIZER_PYTHON to a Python with "
                "transformers 4.x for the reference tokenizer.",
                stacklevel=2,
            )
            self._local = CLIPTokenizerFast.from_pretrained(str(self.folder))
            self.kind = f"CLIPTokenizerFast, transformers {transformers.__version__}"

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if self._local is not None:
                ids = self._local(missing, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
            else:
                request = {"folder": str(self.folder), "texts": missing, "max_length": MAX_LENGTH}
                done = subprocess.run(
                    [self.python, "-c", _SUBPROCESS_TOKENIZE],
                    input=json.dumps(request),
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
                )
                if done.returncode != 0:
                    raise RuntimeError(f"tokenizing with {self.python} failed:\n{done.stderr}")
                answer = json.loads(done.stdout)
                ids, self.kind = answer["ids"], answer["kind"] + " (EASEL_TOKENIZER_PYTHON subprocess)"
            for text, row in zip(missing, ids):
                assert len(row) == MAX_LENGTH, (text, len(row))
                self._cache[text] = list(row)
        return np.array([self._cache[t] for t in texts], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass
class Clock:
    """Wall time per phase, and inside `session.run`, in seconds."""

    text_encoder: float = 0.0
    denoise: float = 0.0
    vae: float = 0.0
    onnx: float = 0.0
    encode: float = 0.0

    def as_ms(self, total: float) -> dict:
        return {
            "total_ms": total * 1000.0,
            "text_encoder_ms": self.text_encoder * 1000.0,
            "denoise_ms": self.denoise * 1000.0,
            "vae_ms": self.vae * 1000.0,
            "onnx_ms": self.onnx * 1000.0,
            "encode_ms": self.encode * 1000.0,
        }


@dataclass
class ReferenceModel:
    folder: Path
    tokenizer: Tokenizer
    text_encoder: ort.InferenceSession
    unet: ort.InferenceSession
    vae_decoder: ort.InferenceSession
    scheduler_config: dict
    scaling_factor: float
    ids_dtype: type
    timestep_dtype: type
    sample_dtype: type
    hidden_dtype: type
    decoder_dtype: type
    unet_inputs: dict = field(default_factory=dict)
    vae_encoder: ort.InferenceSession | None = None
    encoder_dtype: type = np.float32
    clock: Clock = field(default_factory=Clock)

    def run(self, session: ort.InferenceSession, feeds: dict) -> list[np.ndarray]:
        started = time.perf_counter()
        out = session.run(None, feeds)
        self.clock.onnx += time.perf_counter() - started
        return out


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per physical core)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def load_model(folder: str | Path, threads: int = 0, tokenizer_python: str | None = None) -> ReferenceModel:
    """Tokenizer, CPU sessions for text_encoder / unet / vae_decoder (and vae_encoder when the
    folder has one), scheduler config and the VAE scaling factor of a diffusers ONNX model folder."""
    folder = Path(folder)
    if (folder / "text_encoder_2").exists():
        raise SystemExit(f"{folder}: SDXL models are not supported by the reference pipeline")

    def session(part: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(folder / part / "model.onnx"), session_options(threads), providers=["CPUExecutionProvider"])

    text_encoder, unet, vae_decoder = session("text_encoder"), session("unet"), session("vae_decoder")
    vae_encoder = session("vae_encoder") if (folder / "vae_encoder" / "model.onnx").exists() else None
    scaling_factor = DEFAULT_SCALING_FACTOR
    vae_config = folder / "vae_decoder" / "config.json"
    if vae_config.exists():
        scaling_factor = float(json.loads(vae_config.read_text()).get("scaling_factor", DEFAULT_SCALING_FACTOR))
    unet_inputs = {i.name: i for i in unet.get_inputs()}
    ids_type = next(i.type for i in text_encoder.get_inputs() if i.name == "input_ids")
    return ReferenceModel(
        folder=folder,
        tokenizer=Tokenizer(folder / "tokenizer", tokenizer_python),
        text_encoder=text_encoder,
        unet=unet,
        vae_decoder=vae_decoder,
        scheduler_config=json.loads((folder / "scheduler" / "scheduler_config.json").read_text()),
        scaling_factor=scaling_factor,
        ids_dtype=ORT_TO_NP[ids_type],
        timestep_dtype=ORT_TO_NP[unet_inputs["timestep"].type] if "timestep" in unet_inputs else np.float32,
        sample_dtype=ORT_TO_NP[unet_inputs["sample"].type],
        hidden_dtype=ORT_TO_NP[unet_inputs["encoder_hidden_states"].type],
        decoder_dtype=ORT_TO_NP[vae_decoder.get_inputs()[0].type],
        unet_inputs=unet_inputs,
        vae_encoder=vae_encoder,
        encoder_dtype=ORT_TO_NP[vae_encoder.get_inputs()[0].type] if vae_encoder is not None else np.float32,
    )


def make_scheduler(config: dict, sampler: str, schedule: str = "discrete"):
    """`Class.from_config(config, use_karras_sigmas=...)` for an Easel sampler name."""
    diffusers_logging.set_verbosity_error()  # "config attributes ... will be ignored" when reusing PNDM configs
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r} (expected one of {', '.join(SAMPLERS)})")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} (expected discrete or karras)")
    class_name, extra = SAMPLERS[sampler]
    cls = getattr(diffusers, class_name)
    kwargs = dict(extra)
    if "use_karras_sigmas" in inspect.signature(cls.__init__).parameters:
        kwargs["use_karras_sigmas"] = schedule == "karras"
    elif schedule == "karras":
        raise ValueError(f"{class_name} has no Karras sigmas; use --schedule discrete with {sampler}")
    return cls.from_config(dict(config), **kwargs)


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------


def encode_prompt(model: ReferenceModel, text: str) -> np.ndarray:
    """[1, 77, width] last hidden states of one prompt."""
    ids = model.tokenizer([text]).astype(model.ids_dtype)
    outputs = model.run(model.text_encoder, {"input_ids": ids})
    names = [o.name for o in model.text_encoder.get_outputs()]
    return outputs[names.index("last_hidden_state") if "last_hidden_state" in names else 0]


def guidance_scale_embedding(w: float, dim: int, batch: int) -> np.ndarray:
    """diffusers' LatentConsistencyModelPipeline.get_guidance_scale_embedding(w, dim), [batch, dim]."""
    w_t = torch.tensor(w).repeat(batch) * 1000.0
    half = dim // 2
    emb = torch.log(torch.tensor(10000.0)) / (half - 1)
    emb = torch.exp(torch.arange(half, dtype=torch.float32) * -emb)
    emb = w_t.to(torch.float32)[:, None] * emb[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb.numpy()


def seeded_latents(seed: int, n: int, height: int, width: int) -> tuple[np.ndarray, list[torch.Generator]]:
    """Image i: `torch.randn([1, 4, h/8, w/8])` from a CPU generator seeded with seed + i. Returns the
    latents and the generators (which stochastic samplers keep drawing from)."""
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]
    latents = torch.cat([torch.randn((1, 4, height // 8, width // 8), generator=g, dtype=torch.float32) for g in generators])
    return latents.numpy(), generators


def load_image(path: str | Path, width: int, height: int) -> np.ndarray:
    """A source picture as diffusers' `VaeImageProcessor.preprocess` makes it: RGB, resized to
    width x height with PIL's Lanczos when it is another size, `/ 255`, `2x - 1`; float32 [1, 3, H, W]."""
    from PIL import Image

    picture = Image.open(path).convert("RGB")
    if picture.size != (width, height):
        picture = picture.resize((width, height), resample=Image.LANCZOS)
    pixels = np.array(picture).astype(np.float32) / 255.0
    return np.ascontiguousarray(2.0 * pixels.transpose(2, 0, 1)[None] - 1.0, dtype=np.float32)


def load_mask(path: str | Path, width: int, height: int) -> np.ndarray:
    """An inpainting mask as diffusers' mask processor makes it (`do_convert_grayscale`,
    `do_binarize`, no normalisation): grey level, white = repaint, resized with Lanczos when it is
    another size, `/ 255`, then `< 0.5` → 0 and `>= 0.5` → 1; float32 [1, 1, H, W]. A PNG with any
    transparency uses Easel's (OpenAI's) convention instead: transparent = repaint, i.e. `1 - alpha`."""
    from PIL import Image

    picture = Image.open(path)
    grey = None
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        alpha = np.array(picture.convert("RGBA"))[:, :, 3]
        if alpha.min() < 255:
            grey = Image.fromarray((255 - alpha).astype(np.uint8), mode="L")
    if grey is None:
        grey = picture.convert("L")
    if grey.size != (width, height):
        grey = grey.resize((width, height), resample=Image.LANCZOS)
    mask = np.array(grey).astype(np.float32) / 255.0
    mask[mask < 0.5] = 0.0
    mask[mask >= 0.5] = 1.0
    return np.ascontiguousarray(mask[None, None], dtype=np.float32)


def encode_image(model: ReferenceModel, image: np.ndarray) -> np.ndarray:
    """`vae_encoder(sample=image)[0]` × scaling factor, [1, 4, H/8, W/8]. Encoders that return the
    distribution's parameters ([1, 8, ...]: mean, then log-variance) give their mean."""
    if model.vae_encoder is None:
        raise ValueError(f"{model.folder}: no vae_encoder, so the model cannot edit pictures")
    out = model.run(model.vae_encoder, {"sample": image.astype(model.encoder_dtype)})[0].astype(np.float32)
    if out.ndim != 4 or out.shape[1] not in (4, 8):
        raise ValueError(f"{model.folder}: the VAE encoder returned shape {out.shape}")
    return np.ascontiguousarray(out[:, :4] * model.scaling_factor, dtype=np.float32)


def edit_timesteps(scheduler, steps: int, strength: float) -> torch.Tensor:
    """diffusers' img2img / inpaint `get_timesteps`: the last `strength` share of the schedule;
    sets the scheduler's begin index where it has one."""
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    if len(timesteps) == 0:
        raise ValueError(f"strength {strength} with {steps} steps leaves no step to run")
    return timesteps


def generate(
    model: ReferenceModel,
    *,
    prompt: str,
    negative: str,
    latents: np.ndarray,
    steps: int,
    guidance: float,
    sampler: str = "euler",
    schedule: str = "discrete",
    generators: list[torch.Generator] | None = None,
    trace: list | None = None,
    image: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    strength: float = 1.0,
) -> np.ndarray:
    """Runs the pipeline from unit-variance `latents` [n, 4, h/8, w/8]. Returns float32 images
    [n, 3, H, W] in [0, 1]. Times go to `model.clock` (reset by the caller). With `trace` a list,
    appends per evaluation a dict (t, scaled model input, guided noise_pred, latents after step;
    for inpainting also `stepped`, the latents after the step and before the blend).

    With `image` ([1, 3, H, W] in [-1, 1], see `load_image`) it is an edit, as the module
    docstring says: img2img, or inpainting with `mask` ([1, 1, H, W], 1 = repaint, see
    `load_mask`); `latents` are then the noise added to the source's latents."""
    clock = model.clock
    latents = np.ascontiguousarray(latents, dtype=np.float32)
    n = latents.shape[0]
    if mask is not None and image is None:
        raise ValueError("a mask needs a source image")
    if image is not None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], not {strength}")
        if image.shape != (1, 3, latents.shape[2] * 8, latents.shape[3] * 8):
            raise ValueError(f"the source image has shape {image.shape}; the latents {latents.shape} need [1, 3, H, W] of the output size")
        if model.unet_inputs["sample"].shape[1] == 9:
            raise ValueError(f"{model.folder}: 9-channel inpainting UNets are not supported by the reference pipeline")
    lcm_dim = None
    if "timestep_cond" in model.unet_inputs:
        lcm_dim = model.unet_inputs["timestep_cond"].shape[1]
        lcm_dim = lcm_dim if isinstance(lcm_dim, int) and lcm_dim > 0 else 256
    do_cfg = guidance > 1.0 and lcm_dim is None

    # 1. text
    started = time.perf_counter()
    positive = encode_prompt(model, prompt)
    prompt_embeds = np.repeat(positive, n, axis=0)
    if do_cfg:
        negative_embeds = np.repeat(encode_prompt(model, negative), n, axis=0)
        prompt_embeds = np.concatenate([negative_embeds, prompt_embeds])
    prompt_embeds = prompt_embeds.astype(model.hidden_dtype)
    clock.text_encoder += time.perf_counter() - started

    # 2. scheduler and initial latents
    started = time.perf_counter()
    scheduler = make_scheduler(model.scheduler_config, sampler, schedule)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    noise = torch.from_numpy(latents)
    image_latents = mask_latents = None
    if image is None:
        latents = latents * float(scheduler.init_noise_sigma)
    else:
        # img2img / inpaint: `get_timesteps`, then `prepare_latents`
        timesteps = edit_timesteps(scheduler, steps, strength)
        image_latents = torch.from_numpy(encode_image(model, image)).repeat(n, 1, 1, 1)
        if mask is not None and strength == 1.0:
            # the inpaint pipeline's `is_strength_max`: pure noise
            latents = latents * float(scheduler.init_noise_sigma)
        else:
            latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(n)).numpy()
        if mask is not None:
            # `prepare_mask_latents`: nearest-neighbour down to the latent size
            mask_latents = torch.nn.functional.interpolate(torch.from_numpy(mask), size=latents.shape[2:])
            mask_latents = mask_latents.repeat(n // mask_latents.shape[0], 1, 1, 1)
    latents = np.ascontiguousarray(latents, dtype=np.float32)
    step_kwargs = {}
    step_params = inspect.signature(scheduler.step).parameters
    if "generator" in step_params and generators is not None:
        step_kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    if "eta" in step_params:
        step_kwargs["eta"] = 0.0
    extra_feeds = {}
    if lcm_dim is not None:
        extra_feeds["timestep_cond"] = guidance_scale_embedding(guidance - 1.0, lcm_dim, n).astype(model.sample_dtype)

    # 3. denoise
    for i, t in enumerate(timesteps):
        model_input = np.concatenate([latents] * 2) if do_cfg else latents
        model_input = scheduler.scale_model_input(torch.from_numpy(model_input), t).cpu().numpy()
        timestep = np.array([t.item()]).astype(model.timestep_dtype)
        feeds = {
            "sample": model_input.astype(model.sample_dtype),
            "timestep": timestep,
            "encoder_hidden_states": prompt_embeds,
            **extra_feeds,
        }
        noise_pred = model.run(model.unet, feeds)[0].astype(np.float32)
        if do_cfg:
            uncond, cond = np.split(noise_pred, 2)
            noise_pred = uncond + guidance * (cond - uncond)
        out = scheduler.step(torch.from_numpy(noise_pred), t, torch.from_numpy(latents), **step_kwargs)
        stepped = out.prev_sample
        if mask_latents is not None:
            # the inpaint pipeline for 4-channel UNets: keep the source outside the mask, noised
            # to the level of the next timestep
            init_latents_proper = image_latents
            if i < len(timesteps) - 1:
                noise_timestep = timesteps[i + 1]
                init_latents_proper = scheduler.add_noise(init_latents_proper, noise, torch.tensor([noise_timestep]))
            latents = ((1 - mask_latents) * init_latents_proper + mask_latents * stepped).numpy()
        else:
            latents = stepped.numpy()
        if trace is not None:
            entry = {"t": t.item(), "model_input": model_input, "noise_pred": noise_pred, "latents": latents.copy()}
            if mask_latents is not None:
                entry["stepped"] = stepped.numpy().copy()
            trace.append(entry)
    clock.denoise += time.perf_counter() - started

    # 4. decode, one image at a time
    started = time.perf_counter()
    latents = latents / model.scaling_factor
    decoded = [
        model.run(model.vae_decoder, {"latent_sample": latents[i : i + 1].astype(model.decoder_dtype)})[0].astype(np.float32)
        for i in range(n)
    ]
    images = np.clip(np.concatenate(decoded) / 2 + 0.5, 0, 1).astype(np.float32)
    clock.vae += time.perf_counter() - started
    return images


def to_png_bytes(image: np.ndarray) -> bytes:
    """[3, H, W] in [0, 1] → PNG, quantised as diffusers' numpy_to_pil: round(x * 255)."""
    import io

    from PIL import Image

    pixels = (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, not {text}")
    if w % 8 or h % 8 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("width and height must be positive multiples of 8")
    return w, h


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="diffusers ONNX model folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="")
    parser.add_argument("-n", type=int, default=1, help="images")
    parser.add_argument("--size", type=parse_size, default=(512, 512), help="WIDTHxHEIGHT")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--sampler", choices=list(SAMPLERS), default="euler")
    parser.add_argument("--schedule", choices=SCHEDULES, default="discrete")
    parser.add_argument("--seed", type=int, default=0, help="image i: torch.randn from a CPU generator seeded with seed + i")
    parser.add_argument("--latents", help="unit-variance initial latents [n, 4, h/8, w/8], float32 .npy (instead of --seed noise)")
    parser.add_argument("--image", help="edit this picture (img2img; resized to --size if it is another size)")
    parser.add_argument("--mask", help="with --image: inpaint; white (or, in a PNG with transparency, transparent) = repaint")
    parser.add_argument("--strength", type=float, default=0.6, help="with --image: the share of the schedule that runs, 0-1 (default 0.6)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--repeat", type=int, default=0, help="one warm-up, then this many timed runs")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the timings")
    parser.add_argument("--out", help="folder for reference-<i>.png and reference.npy")
    parser.add_argument("--tokenizer-python", help="a Python with transformers 4.x for the slow CLIPTokenizer (or EASEL_TOKENIZER_PYTHON)")
    args = parser.parse_args(argv)

    torch.set_grad_enabled(False)
    torch.set_num_threads(1)  # scheduler arithmetic only; keep the cores for onnxruntime
    width, height = args.size
    if args.mask and not args.image:
        parser.error("--mask needs --image")
    if args.image and not 0.0 <= args.strength <= 1.0:
        parser.error("--strength must be between 0 and 1")
    model = load_model(args.model, args.threads, args.tokenizer_python)
    source = load_image(args.image, width, height) if args.image else None
    mask = load_mask(args.mask, width, height) if args.mask else None
    if args.latents:
        unit = np.load(args.latents).astype(np.float32)
        expected = (args.n, 4, height // 8, width // 8)
        if unit.shape != expected:
            sys.exit(f"--latents has shape {unit.shape}, expected {expected}")

    model.tokenizer([args.prompt, args.negative])  # tokenize (and cache) outside the timed runs
    runs = []
    images = None
    pngs: list[bytes] = []
    for r in range(args.repeat + 1 if args.repeat > 0 else 1):
        model.clock = Clock()
        started = time.perf_counter()
        if args.latents:
            generators = [torch.Generator("cpu").manual_seed(args.seed + i) for i in range(args.n)]
        else:
            unit, generators = seeded_latents(args.seed, args.n, height, width)
        images = generate(
            model,
            prompt=args.prompt,
            negative=args.negative,
            latents=unit,
            steps=args.steps,
            guidance=args.guidance,
            sampler=args.sampler,
            schedule=args.schedule,
            generators=generators,
            image=source,
            mask=mask,
            strength=args.strength,
        )
        encode_started = time.perf_counter()
        pngs = [to_png_bytes(image) for image in images]
        model.clock.encode = time.perf_counter() - encode_started
        if args.repeat == 0 or r > 0:
            runs.append(model.clock.as_ms(time.perf_counter() - started))

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(pngs):
            (out / f"reference-{i}.png").write_bytes(png)
        np.save(out / "reference.npy", images)
    mean = {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"tokenizer": model.tokenizer.kind, "threads": args.threads, "runs": runs, "mean": mean}))
    else:
        print(f"tokenizer: {model.tokenizer.kind}", file=sys.stderr)
        print(" ".join(f"{k}={v:.1f}" for k, v in mean.items()))
        if args.out:
            print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
