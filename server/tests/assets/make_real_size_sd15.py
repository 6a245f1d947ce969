#!/usr/bin/env python3
"""Builds a random-weight Stable Diffusion 1.5 with the real architecture and sizes, for benchmarks.

Nothing here runs in CI and nothing it writes is committed: the output is about 8.5 GB.

The configs below are SD 1.5's (runwayml/stable-diffusion-v1-5: UNet 859.5 M parameters,
VAE 83.7 M, CLIP ViT-L/14 text encoder 123.1 M), written inline; nothing is downloaded. The
weights are diffusers' / transformers' default initialisation under a fixed seed, so the
pictures are noise, but every operator, shape and FLOP is SD 1.5's: speed measured on this
model is the speed of a real SD 1.5 checkpoint.

Written to OUT (default /tmp/sd15-random):

* OUT/                   the ONNX layout Easel loads (diffusers' `OnnxStableDiffusionPipeline`,
                         the names and dynamic axes diffusers' `convert_stable_diffusion_checkpoint
                         _to_onnx.py` and optimum use), fp32, opset 17:
  - model_index.json
  - text_encoder/model.onnx   input_ids int32 [batch, sequence]
                              -> last_hidden_state [batch, sequence, 768], pooler_output [batch, 768]
  - unet/model.onnx + unet/model.onnx_data (external data, one file; the UNet is 3.4 GB)
                              sample float32 [batch, 4, height, width], timestep float32 [batch],
                              encoder_hidden_states float32 [batch, sequence, 768]
                              -> out_sample [batch, 4, height, width]
                              (float timesteps, so Euler's fractional timesteps reach the UNet
                              unrounded, as in the PyTorch pipeline)
  - vae_decoder/model.onnx    latent_sample [batch, 4, height, width] -> sample [batch, 3, 8h, 8w]
  - tokenizer/                copied from tests/assets/models/tiny-sd (the real CLIP vocab/merges)
  - scheduler/                SD 1.5's PNDMScheduler config (as tiny-sd's: scaled_linear,
                              0.00085..0.012, steps_offset 1, leading spacing, epsilon)
  - easel.toml                512x512, euler, guidance 7.5
* OUT/pytorch/           the same weights as a diffusers `StableDiffusionPipeline` folder
                         (safetensors), for diffusers' PyTorch pipeline and other peers.
* OUT/reference.npz      torch outputs on fixed inputs (batch 2, 64x64 latents, 77 tokens),
                         which `--check` compares ONNX Runtime's against.

Usage (about 10 minutes and 10 GB of memory at peak on 2 cores; run it under `nice`):

    /tmp/lpwvenv/bin/python server/tests/assets/make_real_size_sd15.py [OUT] [--check]

Needs torch, diffusers, transformers, safetensors, onnx (and onnxruntime for --check).
Stages that already have their files are skipped, so a rerun after a failure continues.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TINY_SD = HERE / "models" / "tiny-sd"
SEED = 1234
OPSET = 17

UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# SD 1.5's text_encoder/config.json (openai/clip-vit-large-patch14's text tower). Its token ids
# 0/1/2 are the legacy ones: transformers then pools at argmax(input_ids), i.e. <|endoftext|>.
TEXT_CONFIG = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# SD 1.5's scheduler/scheduler_config.json.
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}

EASEL_TOML = """display_name = "SD 1.5 architecture, random weights (benchmark)"
default_size = "512x512"
default_sampler = "euler"
default_schedule = "discrete"
default_guidance = 7.5
[steps]
auto = 4
low = 4
medium = 4
high = 4
"""

# Fixed inputs for the reference check: batch 2 (classifier-free guidance), 512x512.
LATENT = 64
SEQ = 77
PROMPT = "a photograph of an astronaut riding a horse"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_models():
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    torch.manual_seed(SEED + 2)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    log(
        f"parameters: unet {params(unet) / 1e6:.1f} M, vae {params(vae) / 1e6:.1f} M "
        f"(decoder {params(vae.decoder) + params(vae.post_quant_conv):,}), "
        f"text encoder {params(text_encoder) / 1e6:.1f} M"
    )
    return text_encoder, vae, unet


def save_pytorch(out: Path, text_encoder, vae, unet) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    target = out / "pytorch"
    if (target / "model_index.json").is_file() and (
        target / "unet" / "diffusion_pytorch_model.safetensors"
    ).is_file():
        log(f"{target} exists; not rewritten")
        return
    tokenizer = CLIPTokenizer.from_pretrained(str(TINY_SD / "tokenizer"))
    scheduler = PNDMScheduler.from_config(
        {k: v for k, v in SCHEDULER_CONFIG.items() if k != "_class_name"}
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(target), safe_serialization=True)
    log(f"saved the PyTorch pipeline to {target}")


def reference_inputs():
    """Token ids, latents and timesteps the reference check feeds to torch and to ONNX Runtime."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(TINY_SD / "tokenizer"))
    ids = tokenizer(
        ["", PROMPT], padding="max_length", max_length=SEQ, truncation=True, return_tensors="np"
    ).input_ids.astype(np.int32)
    rng = np.random.default_rng(SEED)
    sample = rng.standard_normal((2, 4, LATENT, LATENT)).astype(np.float32)
    timestep = np.array([999.0, 999.0], dtype=np.float32)
    latent = (rng.standard_normal((1, 4, LATENT, LATENT)) / VAE_CONFIG["scaling_factor"]).astype(
        np.float32
    )
    return ids, sample, timestep, latent


def torch_reference(out: Path, text_encoder, vae, unet) -> None:
    import torch

    path = out / "reference.npz"
    if path.is_file():
        log(f"{path} exists; not recomputed")
        return
    ids, sample, timestep, latent = reference_inputs()
    with torch.no_grad():
        enc = text_encoder(torch.from_numpy(ids).long())
        hidden = enc.last_hidden_state
        started = time.time()
        noise = unet(torch.from_numpy(sample), torch.from_numpy(timestep), hidden).sample
        log(f"torch UNet forward (batch 2, 64x64): {time.time() - started:.1f} s")
        image = vae.decode(torch.from_numpy(latent)).sample
    arrays = {
        "input_ids": ids,
        "sample": sample,
        "timestep": timestep,
        "latent": latent,
        "last_hidden_state": hidden.numpy(),
        "pooler_output": enc.pooler_output.numpy(),
        "out_sample": noise.numpy(),
        "image": image.numpy(),
    }
    for name, value in arrays.items():
        if value.dtype.kind == "f":
            if not np.isfinite(value).all():
                raise SystemExit(f"torch {name} is not finite: scale the initialisation down")
            log(f"torch {name}: shape {value.shape} std {value.std():.4g} max|x| {np.abs(value).max():.4g}")
    np.savez(path, **arrays)


def merge_external_data(tmp_model: Path, final_model: Path, data_name: str) -> None:
    """Rewrites a model whose initializers sit in one file each (torch's layout above 2 GB) into
    `final_model` + one `data_name` file, streaming tensor by tensor (no copy of the weights in
    memory)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    model = onnx.load(str(tmp_model), load_external_data=False)
    src_dir = tmp_model.parent
    data_path = final_model.parent / data_name
    offset = 0
    moved = 0
    with open(data_path, "wb") as data:
        for tensor in model.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                # Inline tensors over 1 KB move too, so the .onnx stays small.
                if len(tensor.raw_data) <= 1024:
                    continue
                raw = tensor.raw_data
                tensor.ClearField("raw_data")
            else:
                info = ExternalDataInfo(tensor)
                with open(src_dir / info.location, "rb") as f:
                    if info.offset:
                        f.seek(info.offset)
                    raw = f.read(info.length) if info.length else f.read()
            pad = (-offset) % 4096
            data.write(b"\0" * pad)
            offset += pad
            data.write(raw)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = tensor.external_data.add()
                entry.key = key
                entry.value = value
            offset += len(raw)
            moved += 1
    onnx.save(model, str(final_model))
    log(f"{final_model}: {moved} initializers in {data_name} ({offset / 2**30:.2f} GiB)")


def export(module, args, path: Path, input_names, output_names, dynamic_axes, large=False) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if not large:
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    else:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix="export-") as tmp:
            tmp_model = Path(tmp) / "model.onnx"
            torch.onnx.export(
                module,
                args,
                str(tmp_model),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
            merge_external_data(tmp_model, path, "model.onnx_data")
    log(f"exported {path} in {time.time() - started:.0f} s")


def for_export(name: str, module, forward):
    """`module` as a torch Module whose forward is `forward(module, *inputs)`, returning plain
    tensors (diffusers and transformers return dataclasses). The module is kept under the
    attribute `name`, which prefixes the exported weights' names (`unet.conv_in.weight`)."""
    import torch

    class Wrapper(torch.nn.Module):
        def forward(self, *inputs):
            return forward(getattr(self, name), *inputs)

    wrapper = Wrapper()
    setattr(wrapper, name, module)  # registers the submodule
    return wrapper


def unet_out(unet, sample, timestep, encoder_hidden_states):
    return unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


def vae_decoded(vae, latent_sample):
    return vae.decode(latent_sample, return_dict=False)[0]


def text_encoded(text_encoder, input_ids):
    out = text_encoder(input_ids.long(), return_dict=True)
    return out.last_hidden_state, out.pooler_output


def write_onnx(out: Path, text_encoder, vae, unet) -> None:
    import torch

    ids, sample, timestep, latent = reference_inputs()
    with torch.no_grad():
        path = out / "text_encoder" / "model.onnx"
        if not path.is_file():
            export(
                for_export("text_encoder", text_encoder, text_encoded),
                (torch.from_numpy(ids),),
                path,
                ["input_ids"],
                ["last_hidden_state", "pooler_output"],
                {"input_ids": {0: "batch", 1: "sequence"}},
            )
        write_json(out / "text_encoder" / "config.json", {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **TEXT_CONFIG})

        path = out / "vae_decoder" / "model.onnx"
        if not path.is_file():
            # A 32x32 latent is enough to trace; the axes are dynamic.
            export(
                for_export("vae", vae, vae_decoded),
                (torch.from_numpy(latent[:, :, :32, :32].copy()),),
                path,
                ["latent_sample"],
                ["sample"],
                {"latent_sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}},
            )
        write_json(out / "vae_decoder" / "config.json", {"_class_name": "AutoencoderKL", **VAE_CONFIG})

        path = out / "unet" / "model.onnx"
        if not path.is_file():
            hidden = torch.randn(2, SEQ, 768)
            export(
                for_export("unet", unet, unet_out),
                (torch.from_numpy(sample[:, :, :32, :32].copy()), torch.from_numpy(timestep), hidden),
                path,
                ["sample", "timestep", "encoder_hidden_states"],
                ["out_sample"],
                {
                    "sample": {0: "batch", 1: "channels", 2: "height", 3: "width"},
                    "timestep": {0: "batch"},
                    "encoder_hidden_states": {0: "batch", 1: "sequence"},
                },
                large=True,
            )
        write_json(out / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **UNET_CONFIG})


def write_files(out: Path) -> None:
    write_json(
        out / "model_index.json",
        {
            "_class_name": "OnnxStableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "_name_or_path": "random-weight SD 1.5 architecture (make_real_size_sd15.py)",
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["diffusers", "OnnxRuntimeModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "OnnxRuntimeModel"],
            "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        },
    )
    shutil.copytree(TINY_SD / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    tiny = json.loads((TINY_SD / "scheduler" / "scheduler_config.json").read_text())
    for key, value in SCHEDULER_CONFIG.items():
        if tiny.get(key) != value:
            raise SystemExit(f"tiny-sd's scheduler differs from SD 1.5's at {key}: {tiny.get(key)!r}")
    write_json(out / "scheduler" / "scheduler_config.json", {**SCHEDULER_CONFIG, "_diffusers_version": "0.30.0"})
    (out / "easel.toml").write_text(EASEL_TOML)


def check(out: Path, threads: int) -> None:
    """Runs the ONNX files with ONNX Runtime on the reference inputs and compares with torch."""
    import onnxruntime as ort

    ref = np.load(out / "reference.npz")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    failed = False

    def compare(name, got, want, tol):
        nonlocal failed
        diff = float(np.abs(got - want).max())
        finite = bool(np.isfinite(got).all())
        ok = finite and diff <= tol
        failed |= not ok
        log(f"check {name}: shape {got.shape} finite {finite} max|onnx-torch| {diff:.3g} (tol {tol}) {'ok' if ok else 'FAIL'}")

    s = ort.InferenceSession(str(out / "text_encoder" / "model.onnx"), so, providers=["CPUExecutionProvider"])
    hidden, pooled = s.run(None, {"input_ids": ref["input_ids"]})
    compare("text_encoder last_hidden_state", hidden, ref["last_hidden_state"], 1e-3)
    compare("text_encoder pooler_output", pooled, ref["pooler_output"], 1e-3)
    del s
    s = ort.InferenceSession(str(out / "vae_decoder" / "model.onnx"), so, providers=["CPUExecutionProvider"])
    (image,) = s.run(None, {"latent_sample": ref["latent"]})
    compare("vae_decoder sample", image, ref["image"], 1e-2)
    del s
    gc.collect()
    started = time.time()
    s = ort.InferenceSession(str(out / "unet" / "model.onnx"), so, providers=["CPUExecutionProvider"])
    log(f"UNet session created in {time.time() - started:.1f} s")
    for i in s.get_inputs():
        log(f"  unet input {i.name} {i.type} {i.shape}")
    started = time.time()
    (noise,) = s.run(
        None,
        {"sample": ref["sample"], "timestep": ref["timestep"], "encoder_hidden_states": ref["last_hidden_state"]},
    )
    log(f"ORT UNet step (batch 2, 64x64): {time.time() - started:.1f} s")
    compare("unet out_sample", noise, ref["out_sample"], 1e-2)
    if failed:
        raise SystemExit("check failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="/tmp/sd15-random", type=Path)
    parser.add_argument("--check", action="store_true", help="compare ONNX Runtime with torch afterwards")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out: Path = args.out.resolve()
    repo = HERE.parents[2]
    if out == repo or repo in out.parents:
        raise SystemExit(f"{out} is inside the repository; write the model elsewhere (it is ~8.5 GB)")
    out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    done = all(
        (out / rel).is_file()
        for rel in (
            "text_encoder/model.onnx",
            "unet/model.onnx",
            "vae_decoder/model.onnx",
            "pytorch/unet/diffusion_pytorch_model.safetensors",
            "reference.npz",
        )
    )
    if not done:
        text_encoder, vae, unet = build_models()
        save_pytorch(out, text_encoder, vae, unet)
        torch_reference(out, text_encoder, vae, unet)
        write_onnx(out, text_encoder, vae, unet)
        del text_encoder, vae, unet
        gc.collect()
    write_files(out)
    if args.check:
        check(out, args.threads)
    log(f"done: {out}")


if __name__ == "__main__":
    sys.exit(main())
