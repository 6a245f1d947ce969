#!/usr/bin/env python3
"""Writes fixtures/schedulers.json, the reference data of the Rust scheduler and RNG tests
(server/src/imaging/diffusion/schedulers/*.rs and rng.rs).

Rerun (CPU only, a few seconds):

    pip install torch diffusers numpy      # tested with torch 2.15, diffusers 0.42.1
    python server/tests/assets/make_scheduler_fixtures.py

then `cargo test -p server schedulers` / `cargo test -p server rng`. The output is
deterministic for a given torch/diffusers version (keep it under ~300 KB).

Contents:
- "configs": the scheduler_config.json variants the tests parse (SD 1.5 leading/offset 1
  epsilon, SD 2.1 v-prediction without timestep_spacing so each class uses its own default,
  squaredcos_cap_v2 linspace "sample", trailing, zero-terminal-SNR trailing v-prediction, LCM).
- "tables": timesteps / sigmas / init_noise_sigma after `set_timesteps(steps)` for steps 1, 4,
  6, 25 of diffusers' EulerDiscrete ("euler"), EulerAncestralDiscrete ("euler_a"),
  HeunDiscrete ("heun"), KDPM2Discrete ("dpm2"), DPMSolverMultistep ("dpm++2m"), DDIM
  ("ddim"), LCM ("lcm"), both with and without use_karras_sigmas where diffusers has it; and
  "kdiffusion": the sigmas of k-diffusion's DiscreteSchedule.get_sigmas / get_sigmas_karras
  that the dpm++2s_a, dpm++2mv2, ipndm and ipndm_v samplers use. diffusers' EulerAncestral
  has no Karras option: "euler_a" with Karras is k-diffusion style (EulerAncestral's step on
  get_sigmas_karras over the model's whole sigma range, initial noise times the first sigma).
- "trajectories": the final latents of a full sampling run on the fake model
  `model_output = tanh(0.5 * scaled_latents + 0.01 * t)` from the fixed 2x4x4x4 "latent"
  (torch.randn with seed 0) times init_noise_sigma. diffusers' schedulers drive the diffusers
  samplers; dpm++2s_a (k-diffusion sample_dpmpp_2s_ancestral) and dpm++2mv2 / ipndm / ipndm_v
  (stable-diffusion.cpp's loops) are transcribed below as plain per-step loops, so the Rust
  per-evaluation versions are checked against the loop form. Ancestral samplers draw their
  noise from torch.Generator().manual_seed(noise_seed), as the Rust tests do with TorchRng.
- "randn": torch.randn outputs (successive calls on one seeded CPU generator), whole for small
  sizes and sampled (plus the sum) for 4x64x64.
"""

import json
import math
import os

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
)

from diffusers.utils import logging as diffusers_logging

torch.set_grad_enabled(False)
diffusers_logging.set_verbosity_error()  # unknown-key warnings from reused configs

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "schedulers.json")

CONFIGS = {
    "sd15": {
        "_class_name": "PNDMScheduler",
        "_diffusers_version": "0.6.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
        "clip_sample": False,
        "timestep_spacing": "leading",
        "prediction_type": "epsilon",
    },
    "sd21v": {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.8.0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    },
    "cos_sample": {
        "beta_schedule": "squaredcos_cap_v2",
        "num_train_timesteps": 1000,
        "timestep_spacing": "linspace",
        "prediction_type": "sample",
        "clip_sample": False,
    },
    "trailing": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "timestep_spacing": "trailing",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
    },
    "zsnr": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "timestep_spacing": "trailing",
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "clip_sample": False,
        "set_alpha_to_one": False,
    },
    "lcm": {
        "_class_name": "LCMScheduler",
        "_diffusers_version": "0.22.0.dev0",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "num_train_timesteps": 1000,
        "original_inference_steps": 50,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 1,
        "thresholding": False,
        "timestep_scaling": 10.0,
        "timestep_spacing": "leading",
        "trained_betas": None,
    },
}

DIFFUSERS = {
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpm2": KDPM2DiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "lcm": LCMScheduler,
}
KARRAS_CAPABLE = {"euler", "euler_a", "heun", "dpm2", "dpm++2m"}  # euler_a: k-diffusion style
KDIFFUSION = ["dpm++2s_a", "dpm++2mv2", "ipndm", "ipndm_v"]
# diffusers' Heun/KDPM2 ignore rescale_betas_zero_snr (the Rust versions honour it).
NO_ZSNR = {"heun", "dpm2"}
# diffusers' EulerAncestral and KDPM2 raise NotImplementedError for prediction_type "sample".
NO_SAMPLE_PREDICTION = {"euler_a", "dpm2"}
NOISE_SEED = 1234


def f32(v):
    """Shortest decimal that round-trips the float32 value."""
    return float(np.format_float_positional(np.float32(v), unique=True))


def f32s(values):
    return [f32(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def short(values):
    return [float("%.8g" % v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def make_scheduler(sampler, config, karras):
    cls = DIFFUSERS["euler" if sampler == "euler_a" and karras else sampler]
    kwargs = {"use_karras_sigmas": True} if karras else {}
    if sampler == "dpm++2m":
        kwargs.update(
            algorithm_type="dpmsolver++",
            solver_order=2,
            solver_type="midpoint",
            lower_order_final=True,
            final_sigmas_type="zero",
        )
    return cls.from_config(config, **kwargs)


def set_steps(sampler, config, karras, steps):
    """The diffusers scheduler after set_timesteps. For euler_a with Karras: EulerAncestral
    with k-diffusion's Karras sigmas and their sigma_to_t timesteps put in."""
    if sampler == "euler_a" and karras:
        model = KDiffusionModel(config)
        scheduler = EulerAncestralDiscreteScheduler.from_config(config)
        scheduler.set_timesteps(steps)
        sigmas = model.get_sigmas(steps, True)
        scheduler.sigmas = sigmas
        scheduler.timesteps = torch.tensor([model.sigma_to_t(s) for s in sigmas[:-1]])
    else:
        scheduler = make_scheduler(sampler, config, karras)
        scheduler.set_timesteps(steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler


def init_noise_sigma(sampler, scheduler, karras):
    if sampler == "euler_a" and karras:
        return float(scheduler.sigmas[0])  # k-diffusion: x = noise * sigmas[0]
    return float(scheduler.init_noise_sigma)


def diffusers_table(sampler, config, karras, steps):
    s = set_steps(sampler, config, karras, steps)
    entry = {"timesteps": f32s(s.timesteps.double().numpy())}
    if sampler in ("euler", "euler_a", "heun", "dpm2", "dpm++2m"):
        entry["sigmas"] = f32s(s.sigmas.double().numpy())
    if sampler == "dpm2":
        # The first midpoint is NaN in torch (lerp with -inf) and never used.
        entry["sigmas_interpol"] = f32s(s.sigmas_interpol.double().numpy()[1:])
    if sampler in ("euler", "euler_a", "heun", "dpm2"):
        entry["init_noise_sigma"] = f32(init_noise_sigma(sampler, s, karras))
    return entry


class KDiffusionModel:
    """k-diffusion DiscreteSchedule on the config's alphas_cumprod (Euler's, which clamps the
    zero-terminal-SNR last value to 2^-24), with diffusers' _sigma_to_t for the timesteps."""

    def __init__(self, config):
        self.euler = EulerDiscreteScheduler.from_config(config)
        ac = self.euler.alphas_cumprod
        self.sigmas = ((1 - ac) / ac) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self.log_sigmas_np = np.log(self.sigmas.numpy())
        self.prediction = config.get("prediction_type", "epsilon")

    def get_sigmas(self, steps, karras):
        if karras:  # k-diffusion get_sigmas_karras(n, sigma_min, sigma_max, rho=7)
            sigma_min, sigma_max = self.sigmas[0].item(), self.sigmas[-1].item()
            ramp = torch.linspace(0, 1, steps)
            min_inv_rho, max_inv_rho = sigma_min ** (1 / 7), sigma_max ** (1 / 7)
            sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** 7
        else:  # DiscreteSchedule.get_sigmas(n) with t_to_sigma
            t = torch.linspace(len(self.sigmas) - 1, 0, steps)
            low, high, w = t.floor().long(), t.ceil().long(), t.frac()
            sigmas = ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
        return torch.cat([sigmas, sigmas.new_zeros([1])])

    def sigma_to_t(self, sigma):
        return float(self.euler._sigma_to_t(np.array(float(sigma)), self.log_sigmas_np))

    def denoise(self, x, sigma):
        """The fake UNet (float32, like the Rust test's) on x / sqrt(sigma^2 + 1) at
        t = sigma_to_t(sigma), converted to a float64 x0 (the loops run in float64 so that
        the reference stays accurate where sigma_max is large)."""
        sigma = float(sigma)
        t = torch.tensor(self.sigma_to_t(sigma), dtype=torch.float32)
        model_input = (x / (sigma**2 + 1) ** 0.5).float()
        out = torch.tanh(0.5 * model_input + 0.01 * t).double()
        if self.prediction == "epsilon":
            return x - sigma * out
        if self.prediction == "v_prediction":
            return out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
        return out


def kdiffusion_table(config, karras, steps):
    model = KDiffusionModel(config)
    sigmas = model.get_sigmas(steps, karras)
    return {
        "sigmas": f32s(sigmas.double().numpy()),
        "timesteps": f32s([model.sigma_to_t(s) for s in sigmas[:-1]]),
    }


def run_dpmpp_2s_ancestral(model, x, sigmas, generator):
    """k-diffusion sample_dpmpp_2s_ancestral, eta = 1."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model.denoise(x, s)
        s_up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        s_down = (s_next**2 - s_up**2) ** 0.5
        if s_down == 0:
            x = x + (x - denoised) / s * (s_down - s)
        else:
            t, t_next = -math.log(s), -math.log(s_down)
            h = t_next - t
            s_mid = math.exp(-(t + 0.5 * h))
            x_2 = (s_mid / s) * x - math.expm1(-0.5 * h) * denoised
            denoised_2 = model.denoise(x_2, s_mid)
            x = (s_down / s) * x - math.expm1(-h) * denoised_2
        if s_next > 0:
            x = x + torch.randn(x.shape, generator=generator).double() * s_up
    return x


def run_dpmpp_2m_v2(model, x, sigmas, generator):
    """stable-diffusion.cpp DPMPP2Mv2."""
    old = None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model.denoise(x, s)
        if s_next == 0:
            x = denoised  # a = 0, b = -1
        elif i == 0:
            h = math.log(s) - math.log(s_next)
            x = (s_next / s) * x - (math.exp(-h) - 1) * denoised
        else:
            t, t_next = -math.log(s), -math.log(s_next)
            h = t_next - t
            h_last = t + math.log(float(sigmas[i - 1]))
            h_min, h_max = min(h_last, h), max(h_last, h)
            r = h_max / h_min
            h_d = (h_max + h_min) / 2
            b = math.exp(-h_d) - 1
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (s_next / s) * x - b * denoised_d
        old = denoised
    return x


def run_ipndm(model, x, sigmas, generator, variable=False):
    """stable-diffusion.cpp IPNDM / IPNDM_V (max order 4)."""
    buffer = []
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model.denoise(x, s)
        d = (x - denoised) / s
        order = min(4, i + 1)
        h = s_next - s
        if order == 1:
            x = x + h * d
        elif order == 2:
            if variable:
                h_1 = s - float(sigmas[i - 1])
                x = x + h * ((2 + h / h_1) * d - (h / h_1) * buffer[-1]) / 2
            else:
                x = x + h * (3 * d - buffer[-1]) / 2
        elif order == 3:
            x = x + h * (23 * d - 16 * buffer[-1] + 5 * buffer[-2]) / 12
        else:
            x = x + h * (55 * d - 59 * buffer[-1] + 37 * buffer[-2] - 9 * buffer[-3]) / 24
        buffer.append(d)
        buffer = buffer[-3:]
    return x


K_LOOPS = {
    "dpm++2s_a": run_dpmpp_2s_ancestral,
    "dpm++2mv2": run_dpmpp_2m_v2,
    "ipndm": run_ipndm,
    "ipndm_v": lambda m, x, s, g: run_ipndm(m, x, s, g, variable=True),
}
ANCESTRAL = {"euler_a", "lcm", "dpm++2s_a"}


def trajectory(sampler, config, karras, steps, latent):
    generator = torch.Generator("cpu").manual_seed(NOISE_SEED)
    if sampler in K_LOOPS:
        model = KDiffusionModel(config)
        sigmas = model.get_sigmas(steps, karras)
        x = (latent * sigmas[0]).double()
        return K_LOOPS[sampler](model, x, sigmas, generator).float()
    s = set_steps(sampler, config, karras, steps)
    x = latent * init_noise_sigma(sampler, s, karras)
    for t in s.timesteps:
        model_input = s.scale_model_input(x, t)
        model_output = torch.tanh(0.5 * model_input + 0.01 * t)
        kwargs = {"generator": generator} if sampler in ("euler_a", "lcm") else {}
        x = s.step(model_output, t, x, **kwargs).prev_sample
    return x


def randn_cases():
    cases = []
    for seed in [0, 1, 42, 2**32 + 5, 123456789012]:
        for sizes in [[1], [7], [15], [16], [17], [256], [1, 7, 3, 16, 1, 17, 2, 33, 1]]:
            g = torch.Generator("cpu").manual_seed(seed)
            values = torch.cat([torch.randn(n, generator=g) for n in sizes])
            cases.append({"seed": seed, "sizes": sizes, "values": f32s(values.numpy())})
        g = torch.Generator("cpu").manual_seed(seed)
        big = torch.randn(4 * 64 * 64, generator=g)
        indices = list(range(0, big.numel(), 101)) + list(range(big.numel() - 16, big.numel()))
        cases.append(
            {
                "seed": seed,
                "sizes": [big.numel()],
                "indices": indices,
                "values": f32s(big[indices].numpy()),
                "sum": float(big.double().sum()),
            }
        )
    return cases


def main():
    latent = torch.randn((2, 4, 4, 4), generator=torch.Generator("cpu").manual_seed(0))
    tables = []
    for name, config in CONFIGS.items():
        for sampler in list(DIFFUSERS) + ["kdiffusion"]:
            if name == "zsnr" and sampler in NO_ZSNR:
                continue
            if name == "lcm" and sampler not in ("lcm", "ddim"):
                continue
            karras_options = [False, True] if sampler in KARRAS_CAPABLE | {"kdiffusion"} else [False]
            for karras in karras_options:
                for steps in [1, 4, 6, 25]:
                    if sampler == "kdiffusion":
                        entry = kdiffusion_table(config, karras, steps)
                    else:
                        entry = diffusers_table(sampler, config, karras, steps)
                    head = {
                        "config": name,
                        "sampler": sampler,
                        "schedule": "karras" if karras else "discrete",
                        "steps": steps,
                    }
                    tables.append({**head, **entry})

    all_samplers = list(DIFFUSERS) + KDIFFUSION
    plan = []  # (config, sampler, karras, steps)
    for name in ["sd15", "sd21v"]:
        for sampler in all_samplers:
            for karras in [False, True]:
                if karras and sampler in ("ddim", "lcm"):
                    continue  # no diffusers reference for these
                plan.append((name, sampler, karras, 6))
    for sampler in ["euler", "heun", "dpm2", "dpm++2m", "ddim"] + KDIFFUSION:
        plan.append(("sd15", sampler, False, 1))
    for sampler in all_samplers:
        if sampler not in NO_SAMPLE_PREDICTION:
            plan.append(("cos_sample", sampler, False, 6))
        plan.append(("trailing", sampler, False, 6))
        if sampler not in NO_ZSNR:
            plan.append(("zsnr", sampler, False, 6))
    plan.append(("lcm", "lcm", False, 4))
    plan.append(("lcm", "lcm", False, 1))

    trajectories = []
    for name, sampler, karras, steps in plan:
        final = trajectory(sampler, CONFIGS[name], karras, steps, latent)
        assert torch.isfinite(final).all(), (name, sampler, karras, steps)
        trajectories.append(
            {
                "config": name,
                "sampler": sampler,
                "schedule": "karras" if karras else "discrete",
                "steps": steps,
                "noise_seed": NOISE_SEED if sampler in ANCESTRAL else None,
                "final": short(final.numpy()),
            }
        )

    fixture = {
        "generator": "make_scheduler_fixtures.py",
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__},
        "configs": CONFIGS,
        "latent_shape": list(latent.shape),
        "latent": f32s(latent.numpy()),
        "tables": tables,
        "trajectories": trajectories,
        "randn": randn_cases(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    text = json.dumps(fixture, separators=(",", ":"), allow_nan=False)
    with open(OUT, "w") as f:
        f.write(text + "\n")
    print(f"wrote {OUT}: {len(text) / 1024:.1f} KiB, {len(tables)} tables, "
          f"{len(trajectories)} trajectories")


if __name__ == "__main__":
    main()
