#!/usr/bin/env python3
"""Writes fixtures/reference/: images of the tiny test models made by the reference pipeline
(server/benches/reference_pipeline.py: diffusers 0.42.1 schedulers around onnxruntime sessions,
following diffusers' OnnxStableDiffusionPipeline), for checking Easel's Rust pipeline end to end.

Rerun (CPU, ~20 s):

    EASEL_TOKENIZER_PYTHON=/path/to/venv-with-transformers-4/bin/python \\
        python3 server/tests/assets/make_reference_images.py

The committed files were made with Python 3.11.7, numpy 2.4.6, onnxruntime 1.31.1, torch 2.15.0
(CPU), diffusers 0.42.1; tokenization with the slow CLIPTokenizer of transformers 4.57.6, run
from a venv (`python3 -m venv /tmp/tf4venv && /tmp/tf4venv/bin/pip install "transformers==4.57.*"`)
through EASEL_TOKENIZER_PYTHON, because diffusers 0.42.1 needs huggingface_hub >= 1.32 and
transformers 4.x < 1.0, so both do not fit in one environment. Without EASEL_TOKENIZER_PYTHON
(under transformers 5) the reference falls back to CLIPTokenizerFast with a warning; the prompts
here are plain ASCII, for which both give the same ids. manifest.json records the versions used.
onnxruntime runs with one intra-op thread so the sums are in a fixed order.

Contents:
* `latents_{n}x4x{h}x{w}.npy`: unit-variance initial latents,
  `np.random.RandomState(42).randn(n, 4, h, w).astype(np.float32)`, one file per shape;
* `<model>/<sampler>-<schedule>[-n2][-g1].npy`: float32 images [n, 3, H, W] in [0, 1];
* edits: `source_64.png`, a 64x64 RGB picture (gradients and a few shapes), and `mask_64.png`,
  an opaque greyscale mask, white (repaint) on the left 32 columns and black elsewhere: aligned
  to the 8x8 latent blocks, so Easel's mean over each block and diffusers' nearest-neighbour
  `interpolate` give the same latent mask; `<model>/img2img-<sampler>-<schedule>-s<strength>.npy`
  and `<model>/inpaint-<sampler>-<schedule>-s<strength>.npy` (the reference pipeline's img2img =
  StableDiffusionImg2ImgPipeline and 4-channel inpainting = StableDiffusionInpaintPipeline, the
  latents file being the noise);
* `manifest.json`: `{"cases": [{"name", "model", "prompt", "negative", "n", "width", "height",
  "steps", "guidance", "sampler", "schedule", "latents", "expected"}, ...], ...}`; edit cases add
  `"image"`, `"strength"` and, for inpainting, `"mask"`; paths are relative to the folder, models
  are folder names under tests/assets/models.

A case is reproduced with
`easel generate --model <model> --prompt P --negative N -n n --size WxH --steps S --guidance G
--sampler S --schedule S --latents <latents> [--image <image> [--mask <mask>] --strength S]
--npy --out DIR` (EASEL_MODELS_DIR=tests/assets/models), which writes image i as
`easel-<seed>-<i>.npy` [3, H, W]; compare with `expected[i]` (max abs difference ≤ 1e-3 expected).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benches"))

import reference_pipeline as ref  # noqa: E402

MODELS = HERE / "models"
OUT = HERE / "fixtures" / "reference"

PROMPT = "a watercolor painting of a red fox in the snow"
NEGATIVE = "blurry, low quality"
WIDTH = HEIGHT = 64
STEPS = 6
GUIDANCE = 7.5
SOURCE = "source_64.png"
MASK = "mask_64.png"


def source_pixels() -> np.ndarray:
    """The edit cases' source: 64x64 RGB uint8, smooth gradients with a disc, a bar and a ring."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    r = 40 + 170 * x / (WIDTH - 1)
    g = 70 + 140 * y / (HEIGHT - 1)
    b = 200 - 110 * (x + y) / (WIDTH + HEIGHT - 2)
    rgb = np.stack([r, g, b], axis=-1)
    disc = (x - 44) ** 2 + (y - 20) ** 2 <= 11**2
    rgb[disc] = (235, 200, 40)
    rgb[40:54, 6:30] = (30, 40, 110)
    ring = np.abs(np.hypot(x - 46, y - 48) - 9) <= 2
    rgb[ring] = (200, 50, 60)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def mask_pixels() -> np.ndarray:
    """The inpaint cases' mask: 64x64 uint8, 255 (repaint) on the left 32 columns, 0 elsewhere."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[:, : WIDTH // 2] = 255
    return mask


def cases() -> list[dict]:
    out = []

    def case(model, sampler, schedule, n=1, guidance=GUIDANCE):
        name = f"{sampler}-{schedule}" + ("-n2" if n == 2 else "") + ("-g1" if guidance == 1.0 else "")
        out.append(
            {
                "name": f"{model}/{name}",
                "model": model,
                "prompt": PROMPT,
                "negative": NEGATIVE,
                "n": n,
                "width": WIDTH,
                "height": HEIGHT,
                "steps": STEPS,
                "guidance": guidance,
                "sampler": sampler,
                "schedule": schedule,
                "latents": f"latents_{n}x4x{HEIGHT // 8}x{WIDTH // 8}.npy",
                "expected": f"{model}/{name}.npy",
            }
        )

    def edit(model, sampler, schedule, strength, masked=False):
        name = f"{'inpaint' if masked else 'img2img'}-{sampler}-{schedule}-s{strength}"
        out.append(
            {
                "name": f"{model}/{name}",
                "model": model,
                "prompt": PROMPT,
                "negative": NEGATIVE,
                "n": 1,
                "width": WIDTH,
                "height": HEIGHT,
                "steps": STEPS,
                "guidance": GUIDANCE,
                "sampler": sampler,
                "schedule": schedule,
                "latents": f"latents_1x4x{HEIGHT // 8}x{WIDTH // 8}.npy",
                "image": SOURCE,
                **({"mask": MASK} if masked else {}),
                "strength": strength,
                "expected": f"{model}/{name}.npy",
            }
        )

    for sampler in ("euler", "heun", "dpm2", "dpm++2m"):
        for schedule in ("discrete", "karras"):
            case("tiny-sd", sampler, schedule)
    case("tiny-sd", "ddim", "discrete")
    case("tiny-sd", "euler", "discrete", n=2)
    case("tiny-sd", "euler", "discrete", guidance=1.0)
    case("tiny-sd2-v", "euler", "discrete")
    case("tiny-sd2-v", "dpm++2m", "karras")
    edit("tiny-sd", "euler", "discrete", 0.6)
    edit("tiny-sd", "ddim", "discrete", 0.5)
    edit("tiny-sd", "dpm++2m", "karras", 0.75)
    edit("tiny-sd", "heun", "discrete", 0.5)  # second order: the begin index is 2 * t_start
    edit("tiny-sd", "euler", "discrete", 1.0, masked=True)
    edit("tiny-sd", "euler", "discrete", 0.7, masked=True)
    edit("tiny-sd2-v", "euler", "discrete", 0.6)  # 8-channel `latent_parameters` encoder, v-prediction
    return out


def main() -> None:
    import diffusers
    import onnxruntime
    import torch
    from PIL import Image

    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    Image.fromarray(source_pixels(), mode="RGB").save(OUT / SOURCE)
    Image.fromarray(mask_pixels(), mode="L").save(OUT / MASK)

    models: dict[str, ref.ReferenceModel] = {}
    all_cases = cases()
    for c in all_cases:
        latents_path = OUT / c["latents"]
        if not latents_path.exists():
            shape = (c["n"], 4, c["height"] // 8, c["width"] // 8)
            np.save(latents_path, np.random.RandomState(42).randn(*shape).astype(np.float32))
        if c["model"] not in models:
            models[c["model"]] = ref.load_model(MODELS / c["model"], threads=1)
        images = ref.generate(
            models[c["model"]],
            prompt=c["prompt"],
            negative=c["negative"],
            latents=np.load(latents_path),
            steps=c["steps"],
            guidance=c["guidance"],
            sampler=c["sampler"],
            schedule=c["schedule"],
            image=ref.load_image(OUT / c["image"], c["width"], c["height"]) if "image" in c else None,
            mask=ref.load_mask(OUT / c["mask"], c["width"], c["height"]) if "mask" in c else None,
            strength=c.get("strength", 1.0),
        )
        assert images.shape == (c["n"], 3, c["height"], c["width"]) and images.dtype == np.float32
        assert np.isfinite(images).all()
        expected = OUT / c["expected"]
        expected.parent.mkdir(parents=True, exist_ok=True)
        np.save(expected, images)
        print(f"{c['name']:40} mean={images.mean():.4f} std={images.std():.4f}")

    tokenizers = sorted({m.tokenizer.kind for m in models.values()})
    import transformers

    manifest = {
        "about": "Reference images (text-to-image, img2img, inpainting) of the tiny test models; written by tests/assets/make_reference_images.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers (this interpreter)": transformers.__version__,
            "tokenizer": tokenizers,
        },
        "cases": all_cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({len(all_cases)} cases, {size / 1024:.0f} KiB; tokenizer: {', '.join(tokenizers)})")


if __name__ == "__main__":
    main()
