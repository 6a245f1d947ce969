#!/usr/bin/env python3
"""Which float16 Stable Diffusion operators can ONNX Runtime's CPU execution provider run, and how fast?

Not part of CI: a one-off investigation kept so it can be rerun against another onnxruntime release.

Background. fp16 SD exports come in two flavours:

* plain fp16 exports (optimum / diffusers `torch.onnx.export` of a float16 model, or an fp32 export
  converted with onnxconverter-common): only standard ONNX operators (Conv, MatMul, Softmax,
  InstanceNormalization, Resize, ...), all in float16;
* exports tuned for the CUDA execution provider, such as Hugging Face `onnxruntime/sd-turbo` (made by
  Olive `stable_diffusion.py --provider cuda --optimize`, which runs
  `onnxruntime.transformers.optimizer` with model types unet / vae / clip, then converts to float16
  with keep_io_types=False). Besides the standard operators these contain com.microsoft fused
  operators: GroupNorm (channels_last, gamma/beta kept float32), SkipGroupNorm, BiasSplitGelu,
  BiasAdd, NhwcConv (between Transposes), MultiHeadAttention (packed QKV for self-attention,
  packed KV for cross-attention), Attention (VAE mid-block, CLIP), SkipLayerNormalization,
  LayerNormalization, Gelu / BiasGelu (CLIP).

What it does, for each of those operators:

1. builds a one-node graph (a few nodes for the composite cases) in float16 and in float32 with the
   onnx helper API (opset 17, IR 9; opset 18 / 20 / 21 where the operator needs it), creates a
   CPUExecutionProvider session and runs it on small inputs. It records whether the session loads
   and runs, the exact error otherwise, whether ONNX Runtime silently inserted Cast nodes (its
   CastFloat16Transformer runs float16 nodes that have no CPU float16 kernel in float32 between
   Casts), and the float16 result's error relative to float32;
2. for the timed cases, times float16 against float32 at Stable Diffusion 1.5 sizes (512x512,
   batch 2 as with classifier-free guidance), with --threads intra-op threads, median of --runs runs
   after one warm-up, float32 and float16 runs interleaved so background load hits both alike.

Needs numpy, onnx and onnxruntime (CPU build). Takes a few minutes on 2 cores.

    python3 server/tests/assets/check_fp16_cpu.py                 # checks + timings
    python3 server/tests/assets/check_fp16_cpu.py --no-timing     # load/run checks only
    python3 server/tests/assets/check_fp16_cpu.py --only MultiHeadAttention,Conv --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT
F16 = TensorProto.FLOAT16
BOOL = TensorProto.BOOL
I64 = TensorProto.INT64
NP = {F32: np.float32, F16: np.float16, BOOL: np.bool_, I64: np.int64}
MS = "com.microsoft"


class G:
    """Collects one test graph. `t` is the float type under test (float16 or float32); `big` asks
    for the Stable Diffusion sized variant. Random data comes from one seeded RNG and is drawn in
    float32 before any cast, so the float16 and float32 graphs of a case hold the same values."""

    def __init__(self, t: int, big: bool, seed: int = 0):
        self.t = t
        self.big = big
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.n = 0

    def x(self, name: str, shape: list[int], scale: float = 1.0, positive: bool = False, elem: int | None = None) -> str:
        """A graph input of float type `elem` (default: the type under test) with random data."""
        a = self.rng.standard_normal(shape).astype(np.float32) * scale
        if positive:
            a = np.abs(a) + 0.1
        e = self.t if elem is None else elem
        self.feeds[name] = a.astype(NP[e])
        self.inputs.append(helper.make_tensor_value_info(name, e, shape))
        return name

    def raw_input(self, name: str, array: np.ndarray, elem: int) -> str:
        self.feeds[name] = array
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(array.shape)))
        return name

    def w(self, shape: list[int], scale: float | None = None, offset: float = 0.0, elem: int | None = None) -> str:
        """A float initializer; default scale 1/sqrt(fan_in) as in a trained layer."""
        if scale is None:
            scale = 1.0 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else shape[0])
        a = self.rng.standard_normal(shape).astype(np.float32) * scale + offset
        return self.const(a, elem=self.t if elem is None else elem)

    def const(self, array: np.ndarray, elem: int | None = None) -> str:
        self.n += 1
        name = f"c{self.n}"
        if elem is not None:
            array = array.astype(NP[elem])
        # np.ascontiguousarray would turn a 0-d array (a scalar input such as Range's) into 1-d.
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def i64(self, values) -> str:
        return self.const(np.array(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs) -> list[str]:
        self.n += 1
        outs = [f"{op_type.lower()}{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{op_type}_{self.n}", domain=domain, **attrs))
        return outs

    def out(self, name: str, elem: int | None = None) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, self.t if elem is None else elem, None))

    def model(self, opset: int) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "case", self.inputs, self.outputs, self.inits)
        imports = [helper.make_opsetid("", opset)]
        if any(n.domain == MS for n in self.nodes):
            imports.append(helper.make_opsetid(MS, 1))
        m = helper.make_model(graph, opset_imports=imports, producer_name="check_fp16_cpu.py")
        # IR 9 (ONNX 1.14/1.15) covers opsets up to 20; opset 21 needs IR 10.
        m.ir_version = 10 if opset >= 21 else 9
        return m


@dataclass
class Case:
    name: str
    domain: str
    build: Callable[[G], None]
    opset: int = 17
    sd_shape: str = ""  # set for the timed cases: what the big variant computes
    where: str = ""  # where the op shows up in SD exports


def pick(g: G, small, big):
    return big if g.big else small


# --------------------------------------------------------------------------------------------
# Standard ONNX operators (plain fp16 exports; also present in the CUDA-tuned ones)
# --------------------------------------------------------------------------------------------


def unary(op_type: str, positive: bool = False, big_shape=(2, 320, 64, 64), **attrs):
    def build(g: G):
        x = g.x("x", pick(g, [1, 8, 16, 16], list(big_shape)), positive=positive)
        g.out(g.op(op_type, [x], **attrs)[0])

    return build


def binary(op_type: str):
    def build(g: G):
        shape = pick(g, [1, 8, 16, 16], [2, 320, 64, 64])
        a = g.x("a", shape)
        b = g.x("b", shape, positive=op_type == "Div")
        g.out(g.op(op_type, [a, b])[0])

    return build


def conv(g: G):
    c = pick(g, 8, 320)
    x = g.x("x", pick(g, [1, 8, 16, 16], [2, 320, 64, 64]))
    g.out(g.op("Conv", [x, g.w([c, c, 3, 3]), g.w([c], 0.1)], pads=[1, 1, 1, 1])[0])


def conv_transpose(g: G):
    x = g.x("x", pick(g, [1, 8, 8, 8], [2, 64, 32, 32]))
    c = pick(g, 8, 64)
    g.out(g.op("ConvTranspose", [x, g.w([c, 4, 4, 4])], strides=[2, 2], pads=[1, 1, 1, 1])[0])


def matmul(g: G):
    x = g.x("x", pick(g, [1, 16, 32], [2, 4096, 320]))
    d = pick(g, 32, 320)
    g.out(g.op("MatMul", [x, g.w([d, d])])[0])


def matmul_qk(g: G):
    # Attention scores Q.K^T per head: [B*heads, S, Dh] x [B*heads, Dh, S]; 32x32 level of SD 1.5.
    q = g.x("q", pick(g, [4, 16, 8], [16, 1024, 80]), scale=0.5)
    k = g.x("k", pick(g, [4, 8, 16], [16, 80, 1024]), scale=0.5)
    g.out(g.op("MatMul", [q, k])[0])


def gemm(g: G):
    x = g.x("x", pick(g, [2, 32], [2, 1280]))
    d = pick(g, 32, 1280)
    g.out(g.op("Gemm", [x, g.w([d, d]), g.w([d], 0.1)])[0])


def softmax(big_shape):
    def build(g: G):
        x = g.x("x", pick(g, [4, 16, 16], list(big_shape)), scale=2.0)
        g.out(g.op("Softmax", [x], axis=-1)[0])

    return build


def instance_norm(g: G):
    # How torch exports GroupNorm at opset 17: Reshape [B, 32, -1] -> InstanceNormalization -> ...
    x = g.x("x", pick(g, [1, 4, 64], [2, 32, 40960]))
    c = pick(g, 4, 32)
    g.out(g.op("InstanceNormalization", [x, g.w([c], 0.0, 1.0), g.w([c], 0.0)], epsilon=1e-5)[0])


def layer_norm(g: G):
    x = g.x("x", pick(g, [1, 16, 32], [2, 4096, 320]))
    d = pick(g, 32, 320)
    g.out(g.op("LayerNormalization", [x, g.w([d], 0.1, 1.0), g.w([d], 0.1)], axis=-1, epsilon=1e-5)[0])


def group_norm_onnx(opset: int):
    def build(g: G):
        x = g.x("x", pick(g, [1, 8, 4, 4], [2, 320, 64, 64]))
        groups = pick(g, 4, 32)
        n = groups if opset < 21 else pick(g, 8, 320)  # GroupNormalization-18: per group; -21: per channel
        g.out(g.op("GroupNormalization", [x, g.w([n], 0.1, 1.0), g.w([n], 0.1)], num_groups=groups, epsilon=1e-5)[0])

    return build


def resize(mode: str):
    def build(g: G):
        x = g.x("x", pick(g, [1, 8, 8, 8], [2, 640, 32, 32]))
        scales = g.const(np.array([1, 1, 2, 2], dtype=np.float32))
        g.out(g.op("Resize", [x, "", scales], mode=mode)[0])

    return build


def concat(g: G):
    shape = pick(g, [1, 8, 16, 16], [2, 320, 64, 64])
    g.out(g.op("Concat", [g.x("a", shape), g.x("b", shape)], axis=1)[0])


def transpose(g: G):
    g.out(g.op("Transpose", [g.x("x", pick(g, [1, 8, 16, 16], [2, 320, 64, 64]))], perm=[0, 2, 3, 1])[0])


def reshape(g: G):
    g.out(g.op("Reshape", [g.x("x", [1, 8, 16, 16]), g.i64([1, 8, -1])])[0])


def slice_(g: G):
    x = g.x("x", [1, 8, 16, 16])
    g.out(g.op("Slice", [x, g.i64([0]), g.i64([4]), g.i64([1])])[0])


def split(g: G):
    x = g.x("x", [1, 8, 16])
    a, b = g.op("Split", [x, g.i64([4, 4])], n_out=2, axis=1)
    g.out(a)
    g.out(b)


def pow_(g: G):
    x = g.x("x", [1, 8, 16, 16])
    g.out(g.op("Pow", [x, g.const(np.array(2.0, dtype=np.float32), elem=g.t)])[0])


def reduce_mean(g: G):
    g.out(g.op("ReduceMean", [g.x("x", [1, 16, 32])], axes=[-1], keepdims=1)[0])


def reduce_sum(g: G):
    g.out(g.op("ReduceSum", [g.x("x", [1, 16, 32]), g.i64([-1])], keepdims=1)[0])


def reduce_max(g: G):
    g.out(g.op("ReduceMax", [g.x("x", [1, 16, 32])], axes=[-1], keepdims=1)[0])


def where(g: G):
    cond = g.raw_input("cond", g.rng.random([1, 16, 16]) > 0.5, BOOL)
    g.out(g.op("Where", [cond, g.x("a", [1, 16, 16]), g.x("b", [1, 16, 16])])[0])


def gather(g: G):
    ids = g.raw_input("ids", g.rng.integers(0, 64, [1, 77]).astype(np.int64), I64)
    g.out(g.op("Gather", [g.w([64, 32], 1.0), ids], axis=0)[0])


def cast_to(g: G):
    x = g.x("x", [1, 8, 16, 16], elem=F32)
    g.out(g.op("Cast", [x], to=g.t)[0])


def cast_from(g: G):
    x = g.x("x", [1, 8, 16, 16])
    g.out(g.op("Cast", [x], to=F32)[0], elem=F32)


def expand(g: G):
    g.out(g.op("Expand", [g.x("x", [1, 1, 32]), g.i64([2, 77, 32])])[0])


def unsqueeze_squeeze(g: G):
    u = g.op("Unsqueeze", [g.x("x", [2, 32]), g.i64([2, 3])])[0]
    g.out(g.op("Squeeze", [u, g.i64([3])])[0])


def compare(op_type: str):
    def build(g: G):
        g.out(g.op(op_type, [g.x("a", [1, 16, 16]), g.x("b", [1, 16, 16])])[0], elem=BOOL)

    return build


def trilu(g: G):
    # CLIP's causal mask: triu of a matrix filled with the dtype's lowest value.
    g.out(g.op("Trilu", [g.x("x", [77, 77]), g.i64(1)], upper=1)[0])


def range_(g: G):
    start, limit, delta = (g.const(np.array(v, dtype=np.float32), elem=g.t) for v in (0.0, 160.0, 1.0))
    g.out(g.op("Range", [start, limit, delta])[0])


def clip(g: G):
    lo, hi = (g.const(np.array(v, dtype=np.float32), elem=g.t) for v in (-1.0, 1.0))
    g.out(g.op("Clip", [g.x("x", [1, 8, 16, 16]), lo, hi])[0])


def constant_of_shape(g: G):
    value = numpy_helper.from_array(np.array([0.5], dtype=NP[g.t]))
    g.out(g.op("ConstantOfShape", [g.i64([2, 77])], value=value)[0])


def gelu_onnx(g: G):
    g.out(g.op("Gelu", [g.x("x", pick(g, [1, 16, 32], [2, 4096, 1280]))])[0])


def resblock_plain(g: G):
    """An SD ResNet block's first half as torch exports it at opset 17, all in the tested type:
    GroupNorm as Reshape/InstanceNormalization/Reshape/Mul/Add, SiLU as x*Sigmoid(x), 3x3 Conv, skip."""
    b, c, h = pick(g, (1, 8, 8), (2, 320, 64))
    groups = pick(g, 4, 32)
    x = g.x("x", [b, c, h, h])
    r = g.op("Reshape", [x, g.i64([b, groups, -1])])[0]
    n = g.op("InstanceNormalization", [r, g.const(np.ones(groups, np.float32), g.t), g.const(np.zeros(groups, np.float32), g.t)], epsilon=1e-5)[0]
    n = g.op("Reshape", [n, g.i64([b, c, h, h])])[0]
    n = g.op("Add", [g.op("Mul", [n, g.w([c, 1, 1], 0.1, 1.0)])[0], g.w([c, 1, 1], 0.1)])[0]
    s = g.op("Mul", [n, g.op("Sigmoid", [n])[0]])[0]
    y = g.op("Conv", [s, g.w([c, c, 3, 3]), g.w([c], 0.1)], pads=[1, 1, 1, 1])[0]
    g.out(g.op("Add", [x, y])[0])


def transformer_block_plain(g: G):
    """An SD transformer block (self-attention + GEGLU feed-forward) as an unfused export has it, all
    in the tested type: LayerNormalization, MatMul, Reshape/Transpose, Softmax, Split, Erf-GELU.
    The big variant is the 32x32 level of SD 1.5: 1024 tokens, 640 channels, 8 heads."""
    b, s, d, heads = pick(g, (1, 16, 32, 4), (2, 1024, 640, 8))
    hd = d // heads
    x = g.x("x", [b, s, d])

    def ln(v):
        return g.op("LayerNormalization", [v, g.w([d], 0.1, 1.0), g.w([d], 0.1)], axis=-1, epsilon=1e-5)[0]

    def heads_of(v, perm):
        return g.op("Transpose", [g.op("Reshape", [v, g.i64([b, s, heads, hd])])[0]], perm=perm)[0]

    n = ln(x)
    q = heads_of(g.op("MatMul", [n, g.w([d, d])])[0], [0, 2, 1, 3])
    k = heads_of(g.op("MatMul", [n, g.w([d, d])])[0], [0, 2, 3, 1])
    v = heads_of(g.op("MatMul", [n, g.w([d, d])])[0], [0, 2, 1, 3])
    scores = g.op("Mul", [g.op("MatMul", [q, k])[0], g.const(np.array(hd**-0.5, dtype=np.float32), elem=g.t)])[0]
    a = g.op("MatMul", [g.op("Softmax", [scores], axis=-1)[0], v])[0]
    a = g.op("Reshape", [g.op("Transpose", [a], perm=[0, 2, 1, 3])[0], g.i64([b, s, d])])[0]
    x = g.op("Add", [x, g.op("Add", [g.op("MatMul", [a, g.w([d, d])])[0], g.w([d], 0.1)])[0]])[0]
    h = g.op("Add", [g.op("MatMul", [ln(x), g.w([d, 8 * d])])[0], g.w([8 * d], 0.1)])[0]
    val, gate = g.op("Split", [h, g.i64([4 * d, 4 * d])], n_out=2, axis=-1)
    half, one, sqrt2 = (g.const(np.array(c, dtype=np.float32), elem=g.t) for c in (0.5, 1.0, np.sqrt(2.0)))
    erf = g.op("Erf", [g.op("Div", [gate, sqrt2])[0]])[0]
    gelu = g.op("Mul", [g.op("Mul", [gate, g.op("Add", [erf, one])[0]])[0], half])[0]
    ff = g.op("Add", [g.op("MatMul", [g.op("Mul", [val, gelu])[0], g.w([4 * d, d])])[0], g.w([d], 0.1)])[0]
    g.out(g.op("Add", [x, ff])[0])


# --------------------------------------------------------------------------------------------
# com.microsoft operators written by onnxruntime.transformers' SD fusions (CUDA-tuned exports)
# --------------------------------------------------------------------------------------------


def ms_group_norm(gamma_f32: bool, activation: int = 1):
    def build(g: G):
        # channels_last=1: the fusion puts Transposes to NHWC around it. float16 conversion keeps
        # gamma/beta float32 (float16.py ALWAYS_FLOAT_INPUTS).
        x = g.x("x", pick(g, [1, 4, 4, 8], [2, 64, 64, 320]))
        c = pick(g, 8, 320)
        pe = F32 if gamma_f32 else None
        gamma, beta = g.w([c], 0.1, 1.0, elem=pe), g.w([c], 0.1, elem=pe)
        g.out(g.op("GroupNorm", [x, gamma, beta], domain=MS, epsilon=1e-5, groups=pick(g, 4, 32), activation=activation, channels_last=1)[0])

    return build


def ms_skip_group_norm(g: G):
    x = g.x("x", [1, 4, 4, 8])
    skip = g.x("skip", [1, 4, 4, 8])
    y, s = g.op(
        "SkipGroupNorm",
        [x, g.w([8], 0.1, 1.0, elem=F32), g.w([8], 0.1, elem=F32), skip, g.w([8], 0.1)],
        n_out=2,
        domain=MS,
        epsilon=1e-5,
        groups=4,
        activation=0,
        channels_last=1,
    )
    g.out(y)
    g.out(s)


def ms_bias_split_gelu(g: G):
    x = g.x("x", [1, 16, 64])
    g.out(g.op("BiasSplitGelu", [x, g.w([64], 0.1)], domain=MS)[0])


def ms_bias_add(g: G):
    x, skip = g.x("x", [1, 16, 32]), g.x("skip", [1, 16, 32])
    g.out(g.op("BiasAdd", [x, g.w([32], 0.1), skip], domain=MS)[0])


def ms_nhwc_conv(g: G):
    x = g.x("x", [1, 16, 16, 8])
    # FusionNhwcConv(update_weight=True) stores the weight transposed to [M, kH, kW, C].
    g.out(g.op("NhwcConv", [x, g.w([8, 3, 3, 8]), g.w([8], 0.1)], domain=MS, pads=[1, 1, 1, 1])[0])


def ms_mha(layout: str):
    """MultiHeadAttention as FusionAttentionUnet writes it: `qkv` self-attention with packed QKV
    [B, S, N, 3, H]; `kv` cross-attention with query [B, S, D] and packed KV [B, L, N, 2, H];
    `separate` unpacked Q, K, V [B, S, D] (enable_packed_qkv/kv off)."""

    def build(g: G):
        b, s, heads, hd = pick(g, (1, 16, 4, 8), (2, 4096, 8, 40))
        lk = pick(g, 8, 77)
        if layout == "qkv":
            inputs = [g.x("qkv", [b, s, heads, 3, hd])]
        elif layout == "kv":
            inputs = [g.x("q", [b, s, heads * hd]), g.x("kv", [b, lk, heads, 2, hd])]
        else:
            inputs = [g.x("q", [b, s, heads * hd]), g.x("k", [b, s, heads * hd]), g.x("v", [b, s, heads * hd])]
        g.out(g.op("MultiHeadAttention", inputs, domain=MS, num_heads=heads)[0])

    return build


def ms_attention(unidirectional: int):
    """Attention with merged QKV weights: the VAE mid-block self-attention (FusionAttentionVae)
    and, with unidirectional=1 (causal), CLIP's (FusionAttentionClip)."""

    def build(g: G):
        b, s, d, heads = pick(g, (1, 16, 32, 4), (2, 77, 1024, 16))
        x = g.x("x", [b, s, d])
        g.out(g.op("Attention", [x, g.w([d, 3 * d]), g.w([3 * d], 0.0)], domain=MS, num_heads=heads, unidirectional=unidirectional)[0])

    return build


def ms_skip_layer_norm(g: G):
    b, s, d = pick(g, (1, 16, 32), (2, 4096, 320))
    x, skip = g.x("x", [b, s, d]), g.x("skip", [b, s, d])
    g.out(g.op("SkipLayerNormalization", [x, skip, g.w([d], 0.1, 1.0), g.w([d], 0.1), g.w([d], 0.1)], domain=MS, epsilon=1e-5)[0])


def ms_unary(op_type: str, with_bias: bool = False):
    def build(g: G):
        shape = pick(g, [1, 16, 32], [2, 4096, 1280])
        inputs = [g.x("x", shape)]
        if with_bias:
            inputs.append(g.w([shape[-1]], 0.1))
        g.out(g.op(op_type, inputs, domain=MS)[0])

    return build


S = "onnx"
CASES = [
    # name, domain, builder, opset, timed shape, where it appears
    Case("Conv 3x3", S, conv, sd_shape="[2,320,64,64] 320->320", where="UNet, VAE"),
    Case("ConvTranspose", S, conv_transpose, where="(not in SD; for completeness)"),
    Case("MatMul x.W", S, matmul, sd_shape="[2,4096,320]x[320,320]", where="UNet attn/FF, CLIP"),
    Case("MatMul Q.K^T", S, matmul_qk, sd_shape="[16,1024,80]x[16,80,1024]", where="unfused attention"),
    Case("Gemm", S, gemm, sd_shape="[2,1280]x[1280,1280]", where="UNet time embedding"),
    Case("Add", S, binary("Add"), sd_shape="[2,320,64,64]", where="everywhere"),
    Case("Mul", S, binary("Mul"), sd_shape="[2,320,64,64]", where="everywhere"),
    Case("Div", S, binary("Div"), where="attention scale, norms"),
    Case("Sub", S, binary("Sub"), where="norms"),
    Case("Sigmoid", S, unary("Sigmoid"), sd_shape="[2,320,64,64]", where="SiLU"),
    Case("Tanh", S, unary("Tanh"), where="GELU(tanh)"),
    Case("Erf", S, unary("Erf", big_shape=(2, 4096, 1280)), sd_shape="[2,4096,1280]", where="GELU"),
    Case("Exp", S, unary("Exp"), where="timestep embedding"),
    Case("Sin", S, unary("Sin"), where="timestep embedding"),
    Case("Cos", S, unary("Cos"), where="timestep embedding"),
    Case("Sqrt", S, unary("Sqrt", positive=True), where="LayerNorm (unfused)"),
    Case("Neg", S, unary("Neg"), where="misc"),
    Case("Relu", S, unary("Relu"), where="TAESD"),
    Case("Pow", S, pow_, where="LayerNorm (unfused)"),
    Case("Softmax (cross)", S, softmax((16, 4096, 77)), sd_shape="[16,4096,77]", where="cross-attention"),
    Case("Softmax (self)", S, softmax((16, 1024, 1024)), sd_shape="[16,1024,1024]", where="self-attention"),
    Case("InstanceNormalization", S, instance_norm, sd_shape="[2,32,40960]", where="GroupNorm at opset<18"),
    Case("LayerNormalization", S, layer_norm, sd_shape="[2,4096,320]", where="UNet transformer, CLIP"),
    Case("GroupNormalization-18", S, group_norm_onnx(18), opset=18, where="GroupNorm at opset 18-20"),
    Case("GroupNormalization-21", S, group_norm_onnx(21), opset=21, sd_shape="[2,320,64,64] g=32", where="GroupNorm at opset 21+"),
    Case("Resize nearest x2", S, resize("nearest"), sd_shape="[2,640,32,32]->64x64", where="UNet/VAE upsample"),
    Case("Resize linear x2", S, resize("linear"), where="(other upsamplers)"),
    Case("Concat", S, concat, sd_shape="2x[2,320,64,64] axis 1", where="UNet skip connections"),
    Case("Transpose", S, transpose, sd_shape="[2,320,64,64]->NHWC", where="attention reshapes"),
    Case("Reshape", S, reshape, where="everywhere"),
    Case("Slice", S, slice_, where="GEGLU chunk, misc"),
    Case("Split", S, split, where="GEGLU chunk"),
    Case("ReduceMean", S, reduce_mean, where="LayerNorm (unfused)"),
    Case("ReduceSum", S, reduce_sum, where="(Softmax decomposition)"),
    Case("ReduceMax", S, reduce_max, where="(Softmax decomposition)"),
    Case("Where", S, where, where="CLIP mask"),
    Case("Gather", S, gather, where="CLIP token embedding"),
    Case("Cast f32->T", S, cast_to, where="I/O, timestep"),
    Case("Cast T->f32", S, cast_from, where="I/O"),
    Case("Expand", S, expand, where="CLIP mask, misc"),
    Case("Unsqueeze+Squeeze", S, unsqueeze_squeeze, where="misc"),
    Case("Equal", S, compare("Equal"), where="misc"),
    Case("Less", S, compare("Less"), where="misc"),
    Case("Trilu", S, trilu, where="CLIP causal mask"),
    Case("Range", S, range_, where="timestep embedding (if not folded)"),
    Case("Clip", S, clip, where="misc"),
    Case("ConstantOfShape", S, constant_of_shape, where="CLIP mask"),
    Case("Gelu-20", S, gelu_onnx, opset=20, where="GELU at opset 20+"),
    Case("ResBlock (plain ops)", S, resblock_plain, sd_shape="[2,320,64,64]", where="UNet/VAE ResNet block"),
    Case("Transformer block (plain ops)", S, transformer_block_plain, sd_shape="[2,1024,640] 8 heads", where="UNet transformer block"),
    Case("GroupNorm", MS, ms_group_norm(gamma_f32=True), sd_shape="[2,64,64,320] NHWC", where="CUDA-tuned UNet/VAE"),
    Case("GroupNorm (fp16 gamma)", MS, ms_group_norm(gamma_f32=False), where="(DirectML variant)"),
    Case("SkipGroupNorm", MS, ms_skip_group_norm, where="CUDA-tuned UNet"),
    Case("BiasSplitGelu", MS, ms_bias_split_gelu, where="CUDA-tuned UNet GEGLU"),
    Case("BiasAdd", MS, ms_bias_add, where="CUDA-tuned UNet"),
    Case("NhwcConv", MS, ms_nhwc_conv, where="CUDA-tuned UNet/VAE"),
    Case("MultiHeadAttention packed QKV", MS, ms_mha("qkv"), sd_shape="[2,4096,8,3,40]", where="CUDA-tuned UNet self-attn"),
    Case("MultiHeadAttention packed KV", MS, ms_mha("kv"), sd_shape="q[2,4096,320] kv[2,77,8,2,40]", where="CUDA-tuned UNet cross-attn"),
    Case("MultiHeadAttention Q,K,V", MS, ms_mha("separate"), sd_shape="3x[2,4096,320] 8 heads", where="UNet without packing"),
    Case("Attention", MS, ms_attention(0), sd_shape="[2,77,1024] 16 heads", where="CUDA-tuned VAE mid-block"),
    Case("Attention causal", MS, ms_attention(1), sd_shape="[2,77,1024] 16 heads", where="CUDA-tuned CLIP"),
    Case("SkipLayerNormalization", MS, ms_skip_layer_norm, sd_shape="[2,4096,320]", where="CUDA-tuned UNet/CLIP"),
    Case("Gelu", MS, ms_unary("Gelu"), sd_shape="[2,4096,1280]", where="CUDA-tuned CLIP/UNet"),
    Case("BiasGelu", MS, ms_unary("BiasGelu", with_bias=True), sd_shape="[2,4096,1280]", where="CUDA-tuned CLIP"),
    Case("FastGelu", MS, ms_unary("FastGelu", with_bias=True), where="(gelu approximation option)"),
    Case("QuickGelu", MS, ms_unary("QuickGelu"), where="SD 1.x CLIP (quick_gelu)"),
]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def session(model: onnx.ModelProto, threads: int, optimized_path: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def short_error(e: Exception) -> str:
    text = str(e).strip().splitlines()[0]
    return text.replace("[ONNXRuntimeError] : ", "")


@dataclass
class Check:
    ok: bool
    stage: str = ""  # where it failed: "load" (session creation) or "run"
    error: str = ""
    casts_added: int = 0
    ops_after: str = ""
    outputs: list | None = None


def check(case: Case, t: int, threads: int, tmp: Path) -> Check:
    g = G(t, big=False)
    case.build(g)
    model = g.model(case.opset)
    opt = tmp / f"opt_{abs(hash((case.name, t)))}.onnx"
    try:
        s = session(model, threads, opt)
    except Exception as e:  # noqa: BLE001 - report whatever ORT says
        return Check(False, "load", short_error(e))
    try:
        outs = s.run(None, g.feeds)
    except Exception as e:  # noqa: BLE001
        return Check(False, "run", short_error(e))
    casts_before = sum(n.op_type == "Cast" for n in model.graph.node)
    after = onnx.load(str(opt), load_external_data=False)
    casts_after = sum(n.op_type == "Cast" for n in after.graph.node)
    ops = sorted({f"{n.op_type}" + (f"({n.domain})" if n.domain not in ("", "ai.onnx") else "") for n in after.graph.node if n.op_type != "Cast"})
    return Check(True, casts_added=casts_after - casts_before, ops_after=",".join(ops), outputs=outs)


def time_case(case: Case, threads: int, runs: int) -> tuple[float | None, float | None, str]:
    sessions, feeds, notes = {}, {}, []
    for t in (F32, F16):
        g = G(t, big=True)
        case.build(g)
        try:
            sessions[t] = session(g.model(case.opset), threads)
            feeds[t] = g.feeds
            sessions[t].run(None, feeds[t])  # warm-up
        except Exception as e:  # noqa: BLE001
            sessions.pop(t, None)
            notes.append(f"{'fp16' if t == F16 else 'fp32'} big: {short_error(e)}")
    times: dict[int, list[float]] = {t: [] for t in sessions}
    for _ in range(runs):
        for t, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds[t])
            times[t].append(time.perf_counter() - start)
    med = {t: statistics.median(v) * 1000 for t, v in times.items()}
    return med.get(F32), med.get(F16), "; ".join(notes)


def rel_err(a: list, b: list) -> float:
    x, y = np.asarray(a[0], dtype=np.float32), np.asarray(b[0], dtype=np.float32)
    if x.dtype == np.bool_ or y.dtype == np.bool_ or x.shape != y.shape:
        return float("nan")
    return float(np.abs(x - y).max() / (np.abs(y).max() + 1e-6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per type, median reported (default 5)")
    parser.add_argument("--no-timing", action="store_true", help="only the load/run checks")
    parser.add_argument("--only", help="comma-separated substrings of case names to run")
    args = parser.parse_args()

    cases = CASES
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        cases = [c for c in CASES if any(k in c.name.lower() for k in keys)]

    print(f"onnxruntime {ort.__version__} ({ort.get_device()}), onnx {onnx.__version__}, numpy {np.__version__}")
    print(f"providers: {ort.get_available_providers()}; intra-op threads {args.threads}; median of {args.runs}")
    print()
    rows, errors = [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for case in cases:
            c32 = check(case, F32, args.threads, tmp)
            c16 = check(case, F16, args.threads, tmp)
            if not c32.ok:
                errors.append((case, f"fp32 {c32.stage}", c32.error))
            if not c16.ok:
                errors.append((case, f"fp16 {c16.stage}", c16.error))
            if c16.ok:
                how = "fp16 kernel" if c16.casts_added == 0 else f"fp32 + {c16.casts_added} Cast"
                # Name the ops only for single-op cases that ORT decomposed (composites list too many).
                if c16.ops_after and c32.ok and c16.ops_after != c32.ops_after and len(c16.ops_after) < 50:
                    how += f" [{c16.ops_after}]"
            else:
                how = "-"
            err = f"{rel_err(c16.outputs, c32.outputs):.1e}" if c16.ok and c32.ok else ""
            t32 = t16 = None
            note = ""
            if case.sd_shape and not args.no_timing and (c16.ok or c32.ok):
                t32, t16, note = time_case(case, args.threads, args.runs)
                if note:
                    errors.append((case, "timing", note))
            rows.append((case, c32, c16, how, err, t32, t16))
            print(f"  done: {case.name}", file=sys.stderr, flush=True)

    def fmt_ms(v):
        return "" if v is None else f"{v:.1f}"

    header = ("op", "domain", "fp32", "fp16", "fp16 runs as", "rel.err", "SD-size shape", "fp32 ms", "fp16 ms", "fp16/fp32")
    table = []
    for case, c32, c16, how, err, t32, t16 in rows:
        ratio = f"{t16 / t32:.2f}x" if (t32 and t16) else ""
        table.append(
            (
                case.name,
                case.domain,
                "ok" if c32.ok else f"{c32.stage} FAIL",
                "ok" if c16.ok else f"{c16.stage} FAIL",
                how,
                err,
                case.sd_shape,
                fmt_ms(t32),
                fmt_ms(t16),
                ratio,
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table:
        print(line(r))
    print()
    print("'fp32 + N Cast': ORT inserted N Cast nodes (CastFloat16Transformer) and ran the op's float32 kernel;")
    print("'[ops]': the float16 graph after ORT's optimisations, where it differs from the float32 one.")
    print("rel.err: max|fp16 - fp32| / max|fp32| on the small check inputs.")
    print("'load FAIL': InferenceSession creation fails; 'run FAIL': the session loads but Run fails.")
    if errors:
        print()
        print("Errors (exact ONNX Runtime messages):")
        for case, which, message in errors:
            print(f"  {case.name} [{case.domain}] {which}: {message}")


if __name__ == "__main__":
    main()
