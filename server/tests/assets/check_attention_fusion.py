#!/usr/bin/env python3
"""Does ONNX Runtime's own transformer optimizer make a real-size SD 1.5 UNet (or VAE decoder)
step faster on this CPU? A measurement for issue 14, not a test.

It runs `onnxruntime.transformers.optimizer` with model_type "unet" and every fusion that has
no CPU kernel turned off (GroupNorm, SkipGroupNorm, BiasSplitGelu, NhwcConv, BiasAdd, packed
QKV/KV), which leaves self-attention -> `Attention`, cross-attention -> `MultiHeadAttention`,
LayerNorm and SkipLayerNorm fusions; then times one step of the original and the fused graph
in alternating visits (A B A B, a new session each, a warm-up run, 2 intra-op threads, memory
patterns off as Easel sets them) and compares their outputs.

    /tmp/lpwvenv/bin/python server/tests/assets/check_attention_fusion.py \
        /tmp/sd15-random /tmp/sd15-fused [unet|vae_decoder] [visits]

Measured (2026-11-30, 2 cores, SD 1.5 UNet 512x512 batch 2): 16 Attention + 16
MultiHeadAttention + 16 LayerNorm + 32 SkipLayerNorm fused in 140 s; step 15.8 s original,
16.4 s fused (ratio 1.04, max |diff| 1.2e-6): no gain, so Easel does not ship the fusion.
"""
import sys, time, statistics, gc
from pathlib import Path
import numpy as np
import onnxruntime as ort
from onnxruntime.transformers import optimizer
from onnxruntime.transformers.fusion_options import FusionOptions

from onnxruntime.transformers import fusion_attention_unet as fau
_orig = fau.FusionAttentionUnet.get_num_heads
def _get_num_heads(self, reshape_q, is_torch2=False):
    # numpy 2.4 no longer converts a 1-element array with int(); ORT 1.31's code still does.
    if is_torch2:
        parent = self.model.get_parent(reshape_q, 1)
        if parent and parent.op_type == "Concat" and len(parent.input) == 4:
            v = self.model.get_constant_value(parent.input[2])
            if isinstance(v, np.ndarray) and v.size == 1:
                return int(v.reshape(-1)[0])
        return 0
    return _orig(self, reshape_q, is_torch2)
fau.FusionAttentionUnet.get_num_heads = _get_num_heads
import fusion_attention_unet as fau2
fau2.FusionAttentionUnet.get_num_heads = _get_num_heads
model = Path(sys.argv[1]); out = Path(sys.argv[2]); part = sys.argv[3] if len(sys.argv) > 3 else "unet"
src = model / part / "model.onnx"
dst = out / part / "model.onnx"
if not dst.exists():
    dst.parent.mkdir(parents=True, exist_ok=True)
    o = FusionOptions("unet")
    for k in ["enable_group_norm", "enable_skip_group_norm", "enable_bias_splitgelu", "enable_nhwc_conv", "enable_bias_add", "enable_packed_qkv", "enable_packed_kv", "group_norm_channels_last"]:
        if hasattr(o, k): setattr(o, k, False)
    t = time.time()
    m = optimizer.optimize_model(str(src), model_type="unet", num_heads=0, hidden_size=0, opt_level=0, optimization_options=o, use_gpu=False)
    print("fused ops:", m.get_fused_operator_statistics(), f"{time.time()-t:.0f}s", flush=True)
    m.save_model_to_file(str(dst), use_external_data_format=True, all_tensors_to_one_file=True)
    del m; gc.collect()

def sess(p):
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1; so.enable_mem_pattern = False
    return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
if part == "unet":
    feed = {"sample": rng.standard_normal((2, 4, 64, 64)).astype(np.float32),
            "timestep": np.array([751.0, 751.0], np.float32),
            "encoder_hidden_states": rng.standard_normal((2, 77, 768)).astype(np.float32)}
else:
    feed = {"latent_sample": rng.standard_normal((1, 4, 64, 64)).astype(np.float32)}
res = {"orig": [], "fused": []}; outs = {}
for visit in range(int(sys.argv[4]) if len(sys.argv) > 4 else 2):
    for name, p in [("orig", src), ("fused", dst)]:
        s = sess(p); s.run(None, feed)
        t = time.perf_counter(); o = s.run(None, feed)[0]; res[name].append(time.perf_counter() - t)
        outs[name] = o; del s; gc.collect()
        print(name, f"{res[name][-1]*1000:.0f} ms", flush=True)
print({k: f"{statistics.median(v)*1000:.0f}" for k, v in res.items()}, "ratio", statistics.median(res["fused"]) / statistics.median(res["orig"]),
      "max diff", float(np.abs(outs["orig"] - outs["fused"]).max()), "scale", float(np.abs(outs["orig"]).max()))
