#!/usr/bin/env python3
"""Writes tiny random-weight Stable Diffusion models in the diffusers/optimum ONNX layout.

The Rust image engine loads real exports from Hugging Face (diffusers' `OnnxStableDiffusionPipeline`
folders and optimum's `ORT*Pipeline` folders). Those differ in small ways that the loader has to
detect from the files rather than assume: input_ids int32 or int64, timestep float32 / int64 /
float16 with shape [1] or [batch], `latent_sample` versus `latent_parameters` from the VAE encoder,
extra UNet inputs (LCM's `timestep_cond`, SDXL's `text_embeds` and `time_ids`), float16 graphs,
weights in ONNX external data, a second text encoder and tokenizer. The models written here keep
those conventions on purpose, each model with a different mix, while staying a few hundred KB.

The weights are random, so the images are meaningless, but every graph is smooth in every input,
deterministic, and returns O(1) values, so samplers and guidance behave numerically like with a
real model (finite outputs, prompts and timesteps change the result, ...).

Models (written to `models/<name>/` next to this script unless `--out` says otherwise):

* `tiny-sd`    SD 1.x, epsilon, PNDM config; input_ids int32, timestep float32 [1], UNet weights
               in `unet/model.onnx_data` (external data); has an `easel.toml`.
* `tiny-sd2-v` SD 2.x, v_prediction; input_ids int64, timestep int64 [batch], tokenizer pads with
               "!" (id 0); VAE encoder returns `latent_parameters` (mean and logvar, 8 channels).
* `tiny-lcm`   LCM; like tiny-sd plus the UNet input `timestep_cond` float32 [batch, 256]; its
               UNet takes exactly 77 tokens (a static-shape export: long prompts are truncated).
* `tiny-sdxl`  SDXL; two text encoders (hidden 32 and 48, with `hidden_states.N` outputs),
               two tokenizers, float16 UNet and VAE with `text_embeds` and `time_ids`.
* `tiny-taesd` not a pipeline: the decoder of a TAESD (diffusers `AutoencoderTiny`) export,
               `taesd_decoder/model.onnx` (latent_sample float32 [b,4,h,w] -> sample float32
               [b,3,8h,8w], TAESD's layers at channel width 8, output mapped to [-1, 1] by x*2-1)
               and its `config.json` (scaling_factor 1.0).

`--medium OUT_DIR` writes one bigger SD 1.x-layout model (same I/O as tiny-sd, a UNet made of a
few 128-channel 3x3 convolutions) for benchmarks; that one is not committed.

The tokenizer files are built from the CLIP BPE merges that ship with open_clip
(`open_clip/bpe_simple_vocab_16e6.txt.gz`), laid out as in Hugging Face's
openai/clip-vit-large-patch14: 256 byte symbols, the same with `</w>`, one entry per merge, then
`<|startoftext|>` (49406) and `<|endoftext|>` (49407). Pass the open_clip wheel (or the .txt.gz)
with `--clip-bpe`; `pip download open_clip_torch==3.3.0 --no-deps` fetches the wheel.

Only numpy and onnx (its helper API) are used to write the files. Seeds are fixed and nothing
depends on time or on the machine, so a rerun writes byte-identical files. `--check` then runs
every model with onnxruntime (batch 1 and 2, 64x64 and 128x64; finite outputs, declared shapes,
the UNet reacting to each input, a [1] timestep broadcasting over the batch; the TAESD decoder's
range, its reaction to the latent and per-item batching).

    python3 server/tests/assets/make_test_models.py --clip-bpe /path/to/open_clip_torch-3.3.0-py3-none-any.whl --check
    python3 server/tests/assets/make_test_models.py --clip-bpe ... --medium /tmp/medium-sd
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 9 (ONNX 1.14) rather than the newest: older ONNX Runtime builds refuse newer IR.
IR_VERSION = 9
DIFFUSERS_VERSION = "0.30.0"
MAX_LENGTH = 77
# The token embedding table is indexed by `input_ids mod TABLE_ROWS` to keep the files small.
TABLE_ROWS = 1024

HERE = Path(__file__).resolve().parent
WHEEL_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
DEFAULT_BPE_CANDIDATES = [
    HERE / "open_clip_torch-3.3.0-py3-none-any.whl",
    HERE.parents[2] / "open_clip_torch-3.3.0-py3-none-any.whl",
    Path("/tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl"),
]

F32 = TensorProto.FLOAT
F16 = TensorProto.FLOAT16
I32 = TensorProto.INT32
I64 = TensorProto.INT64
NP_OF = {F32: np.float32, F16: np.float16, I32: np.int32, I64: np.int64}


# --------------------------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by GPT-2/CLIP byte-level BPE, in vocab order.

    Printable Latin-1 bytes map to themselves; the other bytes (controls, space, ...) map to
    U+0100 and up, in byte order. The vocabulary lists the printable ones first.
    """
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in keep] + [mapping[b] for b in range(256) if b not in keep]


def read_bpe_merges(path: Path) -> list[str]:
    if path.suffix == ".whl" or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(WHEEL_MEMBER)
    else:
        raw = path.read_bytes()
    text = gzip.decompress(raw).decode("utf-8")
    lines = text.split("\n")
    # Line 0 is a header; CLIP uses the first 49152 - 256 - 2 merges.
    merges = lines[1 : 49152 - 256 - 2 + 1]
    assert len(merges) == 48894, len(merges)
    assert all(len(m.split(" ")) == 2 for m in merges)
    return merges


def tokenizer_files(merges: list[str]) -> dict[str, str]:
    symbols = byte_symbols()
    vocab_list = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab_list) == 49408
    vocab = {}
    for i, tok in enumerate(vocab_list):
        # Every merge result is new in the CLIP merges, so ids are unique.
        assert tok not in vocab, tok
        vocab[tok] = i
    vocab_json = json.dumps(vocab, ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "\n".join(merges) + "\n"
    return {"vocab.json": vocab_json, "merges.txt": merges_txt}


def added_token(content: str) -> dict:
    return {
        "__type": "AddedToken",
        "content": content,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }


def write_tokenizer(folder: Path, files: dict[str, str], pad_token: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    special = {k: added_token(v) for k, v in (("bos_token", "<|startoftext|>"), ("eos_token", "<|endoftext|>"), ("unk_token", "<|endoftext|>"))}
    config = {
        "add_prefix_space": False,
        "bos_token": special["bos_token"],
        "do_lower_case": True,
        "eos_token": special["eos_token"],
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": pad_token,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": special["unk_token"],
    }
    stm = {
        "bos_token": {k: v for k, v in special["bos_token"].items() if k != "__type"},
        "eos_token": {k: v for k, v in special["eos_token"].items() if k != "__type"},
        "pad_token": pad_token,
        "unk_token": {k: v for k, v in special["unk_token"].items() if k != "__type"},
    }
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", stm)


# --------------------------------------------------------------------------------------------
# Graph building
# --------------------------------------------------------------------------------------------


class Graph:
    """A small wrapper over onnx.helper that names values and draws weights from one seeded RNG.

    `weight_type` is the type weights are stored in; float16 weights get a Cast to float32 so
    the arithmetic runs in float32 on every execution provider.
    """

    def __init__(self, name: str, seed: int, weight_type: int = F32):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.weight_type = weight_type
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def const(self, array: np.ndarray, stem: str = "const") -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def i64(self, values: list[int]) -> str:
        return self.const(np.array(values, dtype=np.int64), "shape")

    def weight(self, shape: list[int], scale: float, stem: str = "w", offset: float = 0.0) -> str:
        values = (self.rng.standard_normal(shape) * scale + offset).astype(np.float32)
        if self.weight_type == F16:
            stored = self.const(values.astype(np.float16), stem)
            return self.op("Cast", [stored], to=F32)
        return self.const(values, stem)

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        output = out or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), **attrs))
        return output

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="easel make_test_models.py",
            producer_version="1",
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def vi(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def to_f32(g: Graph, name: str, elem: int) -> str:
    return name if elem == F32 else g.op("Cast", [name], to=F32)


def from_f32(g: Graph, name: str, elem: int, out: str) -> str:
    if elem == F32:
        return g.op("Identity", [name], out=out)
    return g.op("Cast", [name], out=out, to=elem)


def text_encoder(
    *,
    seed: int,
    ids_type: int,
    hidden: int,
    outputs: list[str],
    projection: int | None = None,
) -> onnx.ModelProto:
    """CLIP-shaped text encoder: embeddings, two residual tanh layers, final LayerNorm.

    `outputs` picks (and orders) the graph outputs among `last_hidden_state`, `pooler_output`,
    `text_embeds` (pooled output times a projection) and `hidden_states.0..2` (embeddings and
    each layer's output, before the final norm, as `output_hidden_states=True` exports give).
    The pooled output is the final state at the position of the largest id (the EOS token),
    like CLIPTextModel's.
    """
    g = Graph("text_encoder", seed)
    ids = "input_ids"
    rows = g.op("Mod", [ids, g.const(np.array(TABLE_ROWS, dtype=NP_OF[ids_type]), "table_rows")])
    token_emb = g.op("Gather", [g.weight([TABLE_ROWS, hidden], 0.7, "token_embedding"), rows], axis=0)
    h = g.op("Add", [token_emb, g.weight([MAX_LENGTH, hidden], 0.2, "position_embedding")], out="hidden_states.0")
    for layer in range(2):
        w = g.weight([hidden, hidden], 1.0 / np.sqrt(hidden), f"layer{layer}_w")
        b = g.weight([hidden], 0.1, f"layer{layer}_b")
        y = g.op("Tanh", [g.op("Add", [g.op("MatMul", [h, w]), b])])
        h = g.op("Add", [h, y], out=f"hidden_states.{layer + 1}")
    last = g.op(
        "LayerNormalization",
        [h, g.weight([hidden], 0.05, "ln_scale", offset=1.0), g.weight([hidden], 0.05, "ln_bias")],
        out="last_hidden_state",
        axis=-1,
        epsilon=1e-5,
    )
    # Pooled output: last_hidden_state[b, argmax(input_ids[b])].
    eos_pos = g.op("ArgMax", [g.op("Cast", [ids], to=F32)], axis=1, keepdims=1)  # [B, 1]
    index = g.op("Expand", [g.op("Unsqueeze", [eos_pos, g.i64([2])]), g.i64([1, 1, hidden])])
    pooled = g.op("Squeeze", [g.op("GatherElements", [last, index], axis=1), g.i64([1])], out="pooler_output")
    if projection is not None:
        g.op("MatMul", [pooled, g.weight([hidden, projection], 1.0 / np.sqrt(hidden), "text_projection")], out="text_embeds")

    shapes = {
        "last_hidden_state": ["batch", MAX_LENGTH, hidden],
        "pooler_output": ["batch", hidden],
        "text_embeds": ["batch", projection],
        "hidden_states.0": ["batch", MAX_LENGTH, hidden],
        "hidden_states.1": ["batch", MAX_LENGTH, hidden],
        "hidden_states.2": ["batch", MAX_LENGTH, hidden],
    }
    return g.model([vi(ids, ids_type, ["batch", MAX_LENGTH])], [vi(o, F32, shapes[o]) for o in outputs])


def unet(
    *,
    seed: int,
    io_type: int,
    timestep_type: int,
    timestep_shape: list,
    context_dim: int,
    extra: dict[str, int] | None = None,
    channels: list[int] | None = None,
    static_tokens: bool = False,
) -> onnx.ModelProto:
    """A UNet stand-in: out = tanh(conv(sample) + t_emb + text_emb + extra_emb).

    * `conv` is one 3x3 convolution (tiny models) or a stack of 3x3 convolutions with SiLU when
      `channels` is given (the benchmark model), conditioning added after the first one.
    * `t_emb` is a few sinusoids of the timestep plus a linear term, reshaped to [Bt, C, 1, 1];
      Bt is 1 or batch, so a timestep of shape [1] broadcasts over a batch of 2.
    * `text_emb` projects the mean over tokens of encoder_hidden_states. Their count is dynamic
      (`sequence`), as in optimum's and diffusers' exports, so prompts encoded in several
      77-token windows fit; `static_tokens` fixes it at 77, as some static-shape exports do.
    * `extra` names more [batch, n] inputs (LCM's timestep_cond, SDXL's text_embeds, time_ids),
      each projected and added the same way.
    The tanh keeps the prediction O(1) whatever the sampler feeds in.
    """
    extra = extra or {}
    g = Graph("unet", seed, weight_type=F16 if io_type == F16 else F32)
    cond_ch = channels[0] if channels else 4

    sample = to_f32(g, "sample", io_type)
    if channels:
        h = g.op("Conv", [sample, g.weight([channels[0], 4, 3, 3], 0.5 / 6, "conv_in_w"), g.weight([channels[0]], 0.05, "conv_in_b")], pads=[1, 1, 1, 1])
    else:
        h = g.op("Conv", [sample, g.weight([4, 4, 3, 3], 0.08, "conv_w"), g.weight([4], 0.05, "conv_b")], pads=[1, 1, 1, 1])

    t = g.op("Reshape", [g.op("Cast", ["timestep"], to=F32), g.i64([-1, 1])])  # [Bt, 1]
    freqs = g.const((np.geomspace(0.0008, 0.02, cond_ch) * g.rng.uniform(0.8, 1.2, cond_ch)).astype(np.float32)[None, :], "t_freqs")
    phase = g.const(g.rng.uniform(0, 2 * np.pi, (1, cond_ch)).astype(np.float32), "t_phase")
    t_sin = g.op("Sin", [g.op("Add", [g.op("Mul", [t, freqs]), phase])])
    t_lin = g.op("Mul", [t, g.const(g.rng.uniform(-1e-3, 1e-3, (1, cond_ch)).astype(np.float32), "t_lin")])
    t_emb = g.op("Mul", [g.op("Add", [t_sin, t_lin]), g.const(np.float32(0.4), "t_scale")])
    cond = t_emb

    context = to_f32(g, "encoder_hidden_states", io_type)
    pooled = g.op("ReduceMean", [context], axes=[1], keepdims=0)  # [B, context_dim]
    text = g.op("MatMul", [pooled, g.weight([context_dim, cond_ch], 1.2 / np.sqrt(context_dim), "text_proj")])
    cond = g.op("Add", [cond, text])
    for name, width in extra.items():
        value = to_f32(g, name, io_type)
        scale = 1.0 / np.sqrt(width)
        if name == "time_ids":
            scale = 1.0 / 512.0  # sizes like 1024 and crop offsets
        cond = g.op("Add", [cond, g.op("MatMul", [value, g.weight([width, cond_ch], scale, f"{name}_proj")])])
    h = g.op("Add", [h, g.op("Reshape", [cond, g.i64([-1, cond_ch, 1, 1])])])

    if channels:
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            h = g.op("Mul", [h, g.op("Sigmoid", [h])])
            w = g.weight([cout, cin, 3, 3], 1.6 / np.sqrt(cin * 9), f"conv{i}_w")
            h = g.op("Conv", [h, w, g.weight([cout], 0.02, f"conv{i}_b")], pads=[1, 1, 1, 1])
        h = g.op("Mul", [h, g.op("Sigmoid", [h])])
        h = g.op("Conv", [h, g.weight([4, channels[-1], 3, 3], 2.0 / np.sqrt(channels[-1] * 9), "conv_out_w"), g.weight([4], 0.02, "conv_out_b")], pads=[1, 1, 1, 1])
    out = g.op("Tanh", [h])
    from_f32(g, out, io_type, "out_sample")

    inputs = [
        vi("sample", io_type, ["batch", 4, "height", "width"]),
        vi("timestep", timestep_type, timestep_shape),
        vi("encoder_hidden_states", io_type, ["batch", MAX_LENGTH if static_tokens else "sequence", context_dim]),
    ] + [vi(name, io_type, ["batch", width]) for name, width in extra.items()]
    return g.model(inputs, [vi("out_sample", io_type, ["batch", 4, "height", "width"])])


def vae_decoder(*, seed: int, io_type: int) -> onnx.ModelProto:
    """latent_sample [b,4,h,w] -> sample [b,3,8h,8w] in (-1, 1).

    tanh(bilinear x8 upsampling of a 1x1 conv + an 8x8 stride-8 transposed conv). The transposed
    conv gives every 8x8 block its own texture so images vary inside blocks, not just between.
    """
    g = Graph("vae_decoder", seed, weight_type=F16 if io_type == F16 else F32)
    z = to_f32(g, "latent_sample", io_type)
    low = g.op("Conv", [z, g.weight([3, 4, 1, 1], 0.06, "conv_w"), g.weight([3], 0.1, "conv_b")])
    smooth = g.op("Resize", [low, "", g.const(np.array([1, 1, 8, 8], dtype=np.float32), "scales")], mode="linear")
    detail = g.op("ConvTranspose", [z, g.weight([4, 3, 8, 8], 0.025, "deconv_w")], strides=[8, 8])
    out = g.op("Tanh", [g.op("Add", [smooth, detail])])
    from_f32(g, out, io_type, "sample")
    return g.model(
        [vi("latent_sample", io_type, ["batch", 4, "latent_height", "latent_width"])],
        [vi("sample", io_type, ["batch", 3, "height", "width"])],
    )


def vae_encoder(*, seed: int, io_type: int, out_name: str, out_channels: int) -> onnx.ModelProto:
    """sample [b,3,H,W] -> [b,out_channels,H/8,W/8]: 8x8 average pooling, then a 1x1 conv.

    With 8 channels (`latent_parameters`) the second half is a log-variance, kept in [-6, -2]
    as a trained VAE's is.
    """
    g = Graph("vae_encoder", seed, weight_type=F16 if io_type == F16 else F32)
    x = to_f32(g, "sample", io_type)
    pooled = g.op("AveragePool", [x], kernel_shape=[8, 8], strides=[8, 8])
    mean = g.op("Conv", [pooled, g.weight([4, 3, 1, 1], 2.0, "mean_w"), g.weight([4], 0.3, "mean_b")])
    out = mean
    if out_channels == 8:
        raw = g.op("Conv", [pooled, g.weight([4, 3, 1, 1], 0.5, "logvar_w"), g.weight([4], 0.1, "logvar_b")])
        logvar = g.op("Sub", [g.op("Mul", [g.op("Tanh", [raw]), g.const(np.float32(2.0))]), g.const(np.float32(4.0))])
        out = g.op("Concat", [mean, logvar], axis=1)
    from_f32(g, out, io_type, out_name)
    return g.model(
        [vi("sample", io_type, ["batch", 3, "height", "width"])],
        [vi(out_name, io_type, ["batch", out_channels, "latent_height", "latent_width"])],
    )


TAESD_CHANNELS = 8
TAESD_DECODER_BLOCKS = [3, 3, 3, 1]


def taesd_decoder(*, seed: int) -> onnx.ModelProto:
    """TAESD decoder (diffusers `AutoencoderTiny` / `DecoderTiny`), float32, channel width 8.

    latent_sample [b,4,h,w] -> sample [b,3,8h,8w], the same layers in the same order as the real
    one: the clamp tanh(x/3)*3; conv3x3(4->C) + ReLU; then per stage i of [3, 3, 3, 1]: that many
    blocks (conv-ReLU-conv-ReLU-conv plus identity skip, then ReLU), and for the first three stages
    a nearest x2 Resize and a bias-free conv3x3(C->C); the last stage ends with conv3x3(C->3). As
    `DecoderTiny.forward` does, the output is mapped from TAESD's [0, 1] to [-1, 1] by x*2-1; like
    the real model, nothing clamps it.

    Weights: a +1 bias on the first conv keeps most ReLUs open and the residual branches are
    damped (x0.2) so activations do not blow up over the ten blocks. The last conv's weights are
    projected so that the constant part of the hidden state (its response to a zero latent) does
    not reach the output, which centres the image near 0 instead of at a seed-dependent offset.
    For latents of unit scale the image has a standard deviation of about 0.12 (between and within
    the 8x8 blocks) and stays within [-1, 1]. Saturated latents (|z| >> 3, e.g. from early sampler
    steps) overshoot to about +-2, as a real TAESD can overshoot a little: consumers must clamp,
    as diffusers' image postprocessing does.
    """
    g = Graph("taesd_decoder", seed)
    c = TAESD_CHANNELS
    # Per conv: its weight summed over the 3x3 taps and its bias, to follow a spatially constant
    # input through the network in float64 (see the projection below).
    flat: list[tuple[np.ndarray, np.ndarray]] = []

    def conv(x: str, cin: int, cout: int, scale: float, *, bias: bool = True, bias_offset: float = 0.0) -> str:
        w = (g.rng.standard_normal([cout, cin, 3, 3]) * scale).astype(np.float32)
        inputs = [x, g.const(w, "conv_w")]
        b = np.zeros(cout, dtype=np.float32)
        if bias:
            b = (g.rng.standard_normal(cout) * 0.05 + bias_offset).astype(np.float32)
            inputs.append(g.const(b, "conv_b"))
        flat.append((w.astype(np.float64).sum(axis=(2, 3)), b.astype(np.float64)))
        return g.op("Conv", inputs, pads=[1, 1, 1, 1])

    def he(cin: int) -> float:
        return float(np.sqrt(2.0 / (cin * 9)))

    three = g.const(np.array(3.0, dtype=np.float32), "three")
    z = g.op("Mul", [g.op("Tanh", [g.op("Div", ["latent_sample", three])]), three])
    h = g.op("Relu", [conv(z, 4, c, he(4), bias_offset=1.0)])
    layers = ["in", "relu"]
    for stage, blocks in enumerate(TAESD_DECODER_BLOCKS):
        for _ in range(blocks):
            y = g.op("Relu", [conv(h, c, c, he(c))])
            y = g.op("Relu", [conv(y, c, c, he(c))])
            y = conv(y, c, c, 0.2 * he(c))
            h = g.op("Relu", [g.op("Add", [y, h])])
            layers.append("block")
        if stage < len(TAESD_DECODER_BLOCKS) - 1:
            scales = g.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
            # As torch.onnx exports nn.Upsample(scale_factor=2, mode="nearest").
            h = g.op("Resize", [h, "", scales], coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, mode="nearest", nearest_mode="floor")
            h = conv(h, c, c, he(c), bias=False)
            layers.append("up")

    # Hidden state for a zero latent, away from the borders (float64; Resize does not change it).
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    it = iter(flat)
    w_sum, b = next(it)
    state = relu(w_sum @ np.zeros(4) + b)
    for layer in layers[2:]:
        if layer == "block":
            (w1, b1), (w2, b2), (w3, b3) = next(it), next(it), next(it)
            state = relu(w3 @ relu(w2 @ relu(w1 @ state + b1) + b2) + b3 + state)
        else:
            w_up, _ = next(it)
            state = w_up @ state
    unit = state / np.linalg.norm(state)

    w = g.rng.standard_normal([3, c, 3, 3]) * 0.008
    # Remove from each output channel's tap-summed weight its component along `unit`, spread
    # evenly over the 9 taps. Rounded so float64 noise cannot change the stored float32 bytes.
    along = w.sum(axis=(2, 3)) @ unit  # [3]
    w = np.round(w - (along[:, None] * unit[None, :] / 9.0)[:, :, None, None], 7).astype(np.float32)
    b = (0.5 + g.rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    raw = g.op("Conv", [h, g.const(w, "conv_out_w"), g.const(b, "conv_out_b")], pads=[1, 1, 1, 1])
    g.op("Sub", [g.op("Mul", [raw, g.const(np.array(2.0, dtype=np.float32), "two")]), g.const(np.array(1.0, dtype=np.float32), "one")], out="sample")
    return g.model(
        [vi("latent_sample", F32, ["batch", 4, "latent_height", "latent_width"])],
        [vi("sample", F32, ["batch", 3, "height", "width"])],
    )


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_onnx(model: onnx.ModelProto, path: Path, external_data: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        data = path.parent / (path.name + "_data")
        if data.exists():
            data.unlink()  # onnx appends to an existing data file
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            # Weights go to the data file; small shape constants stay inline, as in real
            # exports (ONNX Runtime's shape inference cannot read a Reshape shape from it).
            size_threshold=128,
        )
    else:
        onnx.save_model(model, str(path))


def scaled_linear(**extra) -> dict:
    base = {
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
    }
    base.update(extra)
    return base


def vae_config(scaling_factor: float, sample_size: int, force_upcast: bool | None = None) -> dict:
    config = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": [8, 8, 8, 8],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": scaling_factor,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    if force_upcast is not None:
        config["force_upcast"] = force_upcast
    return config


def unet_config(*, sample_size: int, cross_attention_dim: int, time_cond_proj_dim=None, sdxl=False) -> dict:
    config = {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [32, 64],
        "center_input_sample": False,
        "cross_attention_dim": cross_attention_dim,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "out_channels": 4,
        "sample_size": sample_size,
        "time_cond_proj_dim": time_cond_proj_dim,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }
    if sdxl:
        config.update(
            {
                "addition_embed_type": "text_time",
                "addition_time_embed_dim": 8,
                "projection_class_embeddings_input_dim": 6 * 8 + 32,
            }
        )
    return config


def text_config(hidden: int, *, projection_dim: int, with_projection: bool = False) -> dict:
    return {
        "architectures": ["CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"],
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "hidden_act": "quick_gelu",
        "hidden_size": hidden,
        "intermediate_size": hidden * 4,
        "layer_norm_eps": 1e-5,
        "max_position_embeddings": MAX_LENGTH,
        "model_type": "clip_text_model",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 1,
        "projection_dim": projection_dim,
        "vocab_size": 49408,
    }


def taesd_config() -> dict:
    """Like madebyollin/taesd's config.json as diffusers (0.30) saves it, at channel width 8."""
    return {
        "_class_name": "AutoencoderTiny",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "relu",
        "decoder_block_out_channels": [TAESD_CHANNELS] * 4,
        "encoder_block_out_channels": [TAESD_CHANNELS] * 4,
        "force_upcast": False,
        "in_channels": 3,
        "latent_channels": 4,
        "latent_magnitude": 3,
        "latent_shift": 0.5,
        "num_decoder_blocks": TAESD_DECODER_BLOCKS,
        "num_encoder_blocks": [1, 3, 3, 3],
        "out_channels": 3,
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
        "upsample_fn": "nearest",
        "upsampling_scaling_factor": 2,
    }


def onnx_components(*names: str) -> dict:
    return {name: ["diffusers", "OnnxRuntimeModel"] for name in names}


TINY_SD_TOML = """\
display_name = "Tiny SD (test model)"
default_size = "64x64"
allowed_sizes = ["64x64", "128x128", "128x64", "64x128"]
max_size = 256
default_sampler = "euler"
default_guidance = 7.5
[steps]
auto = 4
low = 2
medium = 4
high = 8
"""


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_sd1_like(root: Path, tok: dict[str, str], *, seed: int, medium: bool = False) -> None:
    """tiny-sd (and the --medium benchmark model, which shares its I/O)."""
    write_json(
        root / "model_index.json",
        {
            "_class_name": "OnnxStableDiffusionPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            **onnx_components("text_encoder", "unet", "vae_decoder", "vae_encoder"),
        },
    )
    write_tokenizer(root / "tokenizer", tok, "<|endoftext|>")
    write_json(
        root / "scheduler" / "scheduler_config.json",
        {"_class_name": "PNDMScheduler", "_diffusers_version": DIFFUSERS_VERSION, **scaled_linear(prediction_type="epsilon", set_alpha_to_one=False, skip_prk_steps=True)},
    )
    save_onnx(text_encoder(seed=seed + 1, ids_type=I32, hidden=32, outputs=["last_hidden_state", "pooler_output"]), root / "text_encoder" / "model.onnx")
    write_json(root / "text_encoder" / "config.json", text_config(32, projection_dim=32))
    sample_size = 64 if medium else 8
    u = unet(
        seed=seed + 2,
        io_type=F32,
        timestep_type=F32,
        timestep_shape=[1],
        context_dim=32,
        channels=[128] * 7 if medium else None,
    )
    save_onnx(u, root / "unet" / "model.onnx", external_data=not medium)
    write_json(root / "unet" / "config.json", unet_config(sample_size=sample_size, cross_attention_dim=32))
    save_onnx(vae_decoder(seed=seed + 3, io_type=F32), root / "vae_decoder" / "model.onnx")
    save_onnx(vae_encoder(seed=seed + 4, io_type=F32, out_name="latent_sample", out_channels=4), root / "vae_encoder" / "model.onnx")
    for part in ("vae_decoder", "vae_encoder"):
        write_json(root / part / "config.json", vae_config(0.18215, sample_size * 8))
    if not medium:
        (root / "easel.toml").write_text(TINY_SD_TOML, encoding="utf-8")


def write_sd2_v(root: Path, tok: dict[str, str], *, seed: int) -> None:
    write_json(
        root / "model_index.json",
        {
            "_class_name": "ORTStableDiffusionPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae_decoder": ["diffusers", "AutoencoderKL"],
            "vae_encoder": ["diffusers", "AutoencoderKL"],
        },
    )
    write_tokenizer(root / "tokenizer", tok, "!")
    write_json(
        root / "scheduler" / "scheduler_config.json",
        {"_class_name": "DDIMScheduler", "_diffusers_version": DIFFUSERS_VERSION, **scaled_linear(prediction_type="v_prediction", set_alpha_to_one=False, skip_prk_steps=True)},
    )
    save_onnx(text_encoder(seed=seed + 1, ids_type=I64, hidden=32, outputs=["last_hidden_state", "pooler_output"]), root / "text_encoder" / "model.onnx")
    write_json(root / "text_encoder" / "config.json", text_config(32, projection_dim=32))
    save_onnx(unet(seed=seed + 2, io_type=F32, timestep_type=I64, timestep_shape=["batch"], context_dim=32), root / "unet" / "model.onnx")
    write_json(root / "unet" / "config.json", unet_config(sample_size=8, cross_attention_dim=32))
    save_onnx(vae_decoder(seed=seed + 3, io_type=F32), root / "vae_decoder" / "model.onnx")
    save_onnx(vae_encoder(seed=seed + 4, io_type=F32, out_name="latent_parameters", out_channels=8), root / "vae_encoder" / "model.onnx")
    for part in ("vae_decoder", "vae_encoder"):
        write_json(root / part / "config.json", vae_config(0.18215, 64))


def write_lcm(root: Path, tok: dict[str, str], *, seed: int) -> None:
    write_json(
        root / "model_index.json",
        {
            "_class_name": "ORTLatentConsistencyModelPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "LCMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae_decoder": ["diffusers", "AutoencoderKL"],
            "vae_encoder": ["diffusers", "AutoencoderKL"],
        },
    )
    write_tokenizer(root / "tokenizer", tok, "<|endoftext|>")
    write_json(
        root / "scheduler" / "scheduler_config.json",
        {
            "_class_name": "LCMScheduler",
            "_diffusers_version": DIFFUSERS_VERSION,
            **scaled_linear(
                prediction_type="epsilon",
                set_alpha_to_one=True,
                original_inference_steps=50,
                timestep_scaling=10.0,
                clip_sample_range=1.0,
                dynamic_thresholding_ratio=0.995,
                rescale_betas_zero_snr=False,
                sample_max_value=1.0,
                thresholding=False,
            ),
        },
    )
    save_onnx(text_encoder(seed=seed + 1, ids_type=I32, hidden=32, outputs=["last_hidden_state", "pooler_output"]), root / "text_encoder" / "model.onnx")
    write_json(root / "text_encoder" / "config.json", text_config(32, projection_dim=32))
    save_onnx(
        unet(seed=seed + 2, io_type=F32, timestep_type=F32, timestep_shape=[1], context_dim=32, extra={"timestep_cond": 256}, static_tokens=True),
        root / "unet" / "model.onnx",
    )
    write_json(root / "unet" / "config.json", unet_config(sample_size=8, cross_attention_dim=32, time_cond_proj_dim=256))
    save_onnx(vae_decoder(seed=seed + 3, io_type=F32), root / "vae_decoder" / "model.onnx")
    save_onnx(vae_encoder(seed=seed + 4, io_type=F32, out_name="latent_sample", out_channels=4), root / "vae_encoder" / "model.onnx")
    for part in ("vae_decoder", "vae_encoder"):
        write_json(root / part / "config.json", vae_config(0.18215, 64))


def write_sdxl(root: Path, tok: dict[str, str], *, seed: int) -> None:
    write_json(
        root / "model_index.json",
        {
            "_class_name": "ORTStableDiffusionXLPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [None, None],
            "force_zeros_for_empty_prompt": True,
            "image_encoder": [None, None],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae_decoder": ["diffusers", "AutoencoderKL"],
            "vae_encoder": ["diffusers", "AutoencoderKL"],
        },
    )
    write_tokenizer(root / "tokenizer", tok, "<|endoftext|>")
    write_tokenizer(root / "tokenizer_2", tok, "!")
    write_json(
        root / "scheduler" / "scheduler_config.json",
        {
            "_class_name": "EulerDiscreteScheduler",
            "_diffusers_version": DIFFUSERS_VERSION,
            **scaled_linear(
                prediction_type="epsilon",
                interpolation_type="linear",
                sample_max_value=1.0,
                set_alpha_to_one=False,
                skip_prk_steps=True,
                use_karras_sigmas=False,
            ),
        },
    )
    hidden_outputs = ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    save_onnx(
        text_encoder(seed=seed + 1, ids_type=I64, hidden=32, outputs=["last_hidden_state", "pooler_output", *hidden_outputs]),
        root / "text_encoder" / "model.onnx",
    )
    write_json(root / "text_encoder" / "config.json", text_config(32, projection_dim=32))
    save_onnx(
        text_encoder(seed=seed + 5, ids_type=I64, hidden=48, projection=32, outputs=["text_embeds", "last_hidden_state", *hidden_outputs]),
        root / "text_encoder_2" / "model.onnx",
    )
    write_json(root / "text_encoder_2" / "config.json", text_config(48, projection_dim=32, with_projection=True))
    save_onnx(
        unet(seed=seed + 2, io_type=F16, timestep_type=F16, timestep_shape=[1], context_dim=80, extra={"text_embeds": 32, "time_ids": 6}),
        root / "unet" / "model.onnx",
    )
    write_json(root / "unet" / "config.json", unet_config(sample_size=8, cross_attention_dim=80, sdxl=True))
    save_onnx(vae_decoder(seed=seed + 3, io_type=F16), root / "vae_decoder" / "model.onnx")
    save_onnx(vae_encoder(seed=seed + 4, io_type=F16, out_name="latent_sample", out_channels=4), root / "vae_encoder" / "model.onnx")
    for part in ("vae_decoder", "vae_encoder"):
        write_json(root / part / "config.json", vae_config(0.13025, 64, force_upcast=True))


def write_taesd(root: Path, *, seed: int) -> None:
    """tiny-taesd: only the decoder half of a TAESD export (no pipeline files, no tokenizer)."""
    save_onnx(taesd_decoder(seed=seed), root / "taesd_decoder" / "model.onnx")
    write_json(root / "taesd_decoder" / "config.json", taesd_config())


# --------------------------------------------------------------------------------------------
# Self-check with ONNX Runtime (only with --check; generation itself needs numpy and onnx only)
# --------------------------------------------------------------------------------------------


def check_models(folders: list[Path]) -> None:
    """Runs every model with batch 1 and 2 at 64x64 and 128x64 and checks the outputs are finite,
    shaped as declared, and that the UNet depends on each of its inputs."""
    import onnxruntime as ort

    def session(path: Path):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    np_type = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
    rng = np.random.default_rng(0)
    for folder in folders:
        sessions = {p.parent.name: session(p) for p in sorted(folder.glob("*/model.onnx"))}
        report = []
        for batch in (1, 2):
            ids = np.full((batch, MAX_LENGTH), 49407, dtype=np.int64)
            ids[:, 0] = 49406
            ids[:, 1:5] = rng.integers(0, 49406, (batch, 4))
            encoded = {}
            for name in ("text_encoder", "text_encoder_2"):
                if name not in sessions:
                    continue
                s = sessions[name]
                feed_type = np_type[s.get_inputs()[0].type]
                outs = s.run(None, {"input_ids": ids.astype(feed_type)})
                for meta, value in zip(s.get_outputs(), outs):
                    assert np.isfinite(value).all(), (folder.name, name, meta.name)
                    assert value.shape[0] == batch
                encoded[name] = {meta.name: v for meta, v in zip(s.get_outputs(), outs)}
            u = sessions["unet"]
            inputs = {i.name: i for i in u.get_inputs()}
            dtype = np_type[inputs["sample"].type]
            if "text_encoder_2" in encoded:
                context = np.concatenate([encoded["text_encoder"]["hidden_states.1"], encoded["text_encoder_2"]["hidden_states.1"]], axis=-1)
            else:
                context = encoded["text_encoder"]["last_hidden_state"]
            for height, width in ((64, 64), (128, 64)):
                lh, lw = height // 8, width // 8
                feed = {
                    "sample": rng.standard_normal((batch, 4, lh, lw)).astype(dtype) * 3,
                    "timestep": np.array([701], dtype=np_type[inputs["timestep"].type]),
                    "encoder_hidden_states": context.astype(dtype),
                }
                if "timestep_cond" in inputs:
                    feed["timestep_cond"] = rng.standard_normal((batch, 256)).astype(dtype)
                if "text_embeds" in inputs:
                    feed["text_embeds"] = encoded["text_encoder_2"]["text_embeds"].astype(dtype)
                    feed["time_ids"] = np.tile(np.array([height, width, 0, 0, height, width], dtype=dtype), (batch, 1))
                (out,) = u.run(None, feed)
                assert out.shape == (batch, 4, lh, lw) and out.dtype == dtype and np.isfinite(out).all(), folder.name
                assert np.abs(out.astype(np.float32)).max() < 1.0 + 1e-3
                # A timestep given per batch item gives the same as the broadcast one.
                repeated = dict(feed, timestep=np.repeat(feed["timestep"], batch))
                if batch > 1 and inputs["timestep"].shape != [1]:
                    assert np.allclose(u.run(None, repeated)[0], out)
                for name in feed:
                    changed = dict(feed)
                    changed[name] = (feed[name] + {"timestep": 37, "time_ids": 64}.get(name, 0.5)).astype(feed[name].dtype)
                    delta = np.abs(u.run(None, changed)[0].astype(np.float32) - out.astype(np.float32)).max()
                    assert delta > 1e-3, (folder.name, "unet ignores", name, delta)
                d = sessions["vae_decoder"]
                dec_type = np_type[d.get_inputs()[0].type]
                (image,) = d.run(None, {"latent_sample": (out.astype(np.float32) / 0.18215).astype(dec_type)})
                assert image.shape == (batch, 3, height, width) and np.isfinite(image).all()
                assert np.abs(image.astype(np.float32)).max() <= 1.0
                assert image.astype(np.float32).std() > 0.05
                e = sessions["vae_encoder"]
                enc_type = np_type[e.get_inputs()[0].type]
                (latent,) = e.run(None, {"sample": image.astype(enc_type)})
                assert latent.shape[0] == batch and latent.shape[2:] == (lh, lw) and np.isfinite(latent).all()
                report.append(f"b{batch} {height}x{width} unet|max|={np.abs(out.astype(np.float32)).max():.2f} image std={image.astype(np.float32).std():.2f}")
        print(f"{folder.name}: ok ({'; '.join(report[:1])} ...)")
        for name, s in sessions.items():
            ins = ", ".join(f"{i.name} {i.type} {i.shape}" for i in s.get_inputs())
            outs = ", ".join(f"{o.name} {o.type} {o.shape}" for o in s.get_outputs())
            print(f"  {name}: {ins} -> {outs}")


def check_taesd(folder: Path) -> None:
    """Runs the TAESD decoder with batch 1 and 2 at 64x64 and 128x64: declared names and shapes,
    finite output within [-1, 1] for unit-scale latents that varies between and within the 8x8
    blocks and follows the latent, each batch item decoded independently, saturated latents finite."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    s = ort.InferenceSession(str(folder / "taesd_decoder" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    (inp,), (out,) = s.get_inputs(), s.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("latent_sample", "tensor(float)", ["batch", 4, "latent_height", "latent_width"]), inp
    assert (out.name, out.type, out.shape) == ("sample", "tensor(float)", ["batch", 3, "height", "width"]), out
    config = json.loads((folder / "taesd_decoder" / "config.json").read_text(encoding="utf-8"))
    assert config["_class_name"] == "AutoencoderTiny" and config["scaling_factor"] == 1.0
    rng = np.random.default_rng(0)
    report = []
    for batch in (1, 2):
        for lh, lw in ((8, 8), (16, 8)):
            z = rng.standard_normal((batch, 4, lh, lw)).astype(np.float32)
            (image,) = s.run(None, {"latent_sample": z})
            assert image.shape == (batch, 3, 8 * lh, 8 * lw) and image.dtype == np.float32, image.shape
            assert np.isfinite(image).all() and np.abs(image).max() <= 1.0, np.abs(image).max()
            assert image.std() > 0.05, image.std()
            blocks = image.reshape(batch, 3, lh, 8, lw, 8)
            assert blocks.std(axis=(3, 5)).mean() > 0.02 and blocks.mean(axis=(3, 5)).std() > 0.02
            changed = z.copy()
            changed[:, 2] += 0.5
            (other,) = s.run(None, {"latent_sample": changed})
            assert np.abs(other - image).max() > 1e-2, "the decoder ignores its input"
            if batch > 1:
                (alone,) = s.run(None, {"latent_sample": z[1:]})
                assert np.allclose(alone[0], image[1], atol=1e-5), "batch items are not decoded independently"
            (loud,) = s.run(None, {"latent_sample": z * 100})
            assert np.isfinite(loud).all() and np.abs(loud).max() < 3.0
            report.append(f"b{batch} {8 * lh}x{8 * lw} std={image.std():.2f} max|x|={np.abs(image).max():.2f}")
    print(f"{folder.name}: ok ({'; '.join(report[:1])} ...)")
    print(f"  taesd_decoder: {inp.name} {inp.type} {inp.shape} -> {out.name} {out.type} {out.shape}")


def find_bpe(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    for candidate in DEFAULT_BPE_CANDIDATES:
        if candidate.exists():
            return candidate
    sys.exit("make_test_models.py: pass --clip-bpe (the open_clip_torch wheel or bpe_simple_vocab_16e6.txt.gz)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip-bpe", help="open_clip_torch wheel, or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--out", type=Path, default=HERE / "models", help="where the tiny models go")
    parser.add_argument("--medium", type=Path, metavar="OUT_DIR", help="write only the benchmark model, to OUT_DIR")
    parser.add_argument("--check", action="store_true", help="afterwards, run the models with onnxruntime")
    args = parser.parse_args()

    tok = tokenizer_files(read_bpe_merges(find_bpe(args.clip_bpe)))
    if args.medium:
        write_sd1_like(fresh_dir(args.medium), tok, seed=5000, medium=True)
        print(f"wrote {args.medium}")
        if args.check:
            check_models([args.medium])
        return
    writers = {"tiny-sd": (write_sd1_like, 1000), "tiny-sd2-v": (write_sd2_v, 2000), "tiny-lcm": (write_lcm, 3000), "tiny-sdxl": (write_sdxl, 4000)}
    for name, (writer, seed) in writers.items():
        writer(fresh_dir(args.out / name), tok, seed=seed)
    write_taesd(fresh_dir(args.out / "tiny-taesd"), seed=6000)
    print(f"wrote {args.out}")
    if args.check:
        check_models([args.out / name for name in writers])
        check_taesd(args.out / "tiny-taesd")


if __name__ == "__main__":
    main()
