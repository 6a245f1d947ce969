#!/usr/bin/env python3
"""Writes fixtures/prompts/: reference text embeddings of long and weighted prompts, made by the
diffusers community "long prompt weighting" (lpw) code on the tiny test models, for checking
Easel's Rust prompt parser, chunking and weighting.

Easel accepts A1111-style weights ("a (red:1.3) fox", "((red))", "[snow]") and prompts longer
than CLIP's 77 tokens, as the lpw pipelines do. Nothing in diffusers proper does either, so the
reference is the lpw code itself, imported unchanged from the files named on the command line:

* SD 1.x / 2.x (tiny-sd, tiny-sd2-v): `get_weighted_text_embeddings` of
  `examples/community/lpw_stable_diffusion_onnx.py` (numpy). `pipe.tokenizer` is transformers'
  CLIPTokenizer of the model's `tokenizer/` folder; `pipe.text_encoder(input_ids=...)` runs the
  onnxruntime session (ids cast to the model's input dtype) and returns `[last_hidden_state]`, as
  diffusers' OnnxRuntimeModel does. `max_embeddings_multiples=3` (the default of that pipeline's
  `__call__`, `text2img`, `img2img` and `inpaint`), the function's own defaults otherwise
  (`no_boseos_middle=False`, weighting on); a case with a negative passes it as `uncond_prompt`.
* SDXL (tiny-sdxl): `get_weighted_text_embeddings_sdxl` of
  `examples/community/lpw_stable_diffusion_xl.py` (torch), called as that pipeline's `__call__`
  calls it (`neg_prompt=""` unless the case has a negative, `clip_skip=None`). The ONNX encoders
  answer `encoder(ids, output_hidden_states=True)` with `[0]` = the first graph output
  (`last_hidden_state` for text_encoder, `text_embeds` for text_encoder_2) and `.hidden_states` =
  (`hidden_states.0`, `hidden_states.1`, `hidden_states.2`). lpw feeds a partial last chunk
  unpadded (fewer than 77 ids) while the tiny encoders take exactly 77 positions, so the wrapper
  pads it with EOS ids and keeps the first rows: every output row of these encoders depends only
  on its own id and position (in CLIP, whose attention is causal, only on the ids up to it) and
  the pooled row is at the first EOS, so that is what a variable-length encoder gives (checked on
  each call by padding a second time with id 0 and comparing).

Weighting off (`-plain` cases, for Easel's chunking without weights): the SD file's own
`skip_parsing=True` is broken (it concatenates Python lists with the tokenizer's numpy rows, which
numpy turns into element-wise additions: it raises for nearly every length, see
`lpw_skip_parsing_true` in cases.json) and the SDXL file has no such switch. Both `-plain`
variants therefore run the normal path with the module's `parse_prompt_attention` replaced by
`lambda text: [[text, 1.0]]`: the whole prompt is one fragment (brackets are plain text), the same
truncation and chunking, all weights 1.0 (SD's mean-preserving rescale is then exactly a no-op),
which is what `skip_parsing=True` is meant to give.

The two lpw files are not in the diffusers package. Download them from the diffusers GitHub
repository (huggingface/diffusers), folder examples/community/; the committed fixtures were made
from commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (2026-08-23), whose two files are the same
blobs as in tags v0.38.0 to v0.40.0 (sha256 in LPW_FILES below; the script warns when the files
given differ and cases.json records their sha256):

    mkdir -p /tmp/lpw    # save lpw_stable_diffusion_onnx.py and lpw_stable_diffusion_xl.py there

Both files import torch, PIL and diffusers at module level. The tokenizer must be the *slow*
CLIPTokenizer of transformers 4, without ftfy (what Easel's Rust tokenizer reproduces, see
make_tokenizer_fixture.py; the script refuses anything else). diffusers 0.40 and later need
huggingface_hub >= 1, which transformers 4 refuses, so install diffusers 0.38.0 (its own copy of
the lpw files is the same). Rerun (CPU, ~10 s):

    python3 -m venv /tmp/lpwvenv
    /tmp/lpwvenv/bin/pip install onnxruntime==1.31.1 numpy "transformers==4.57.*" diffusers==0.38.0 torch pillow
    /tmp/lpwvenv/bin/python server/tests/assets/make_prompt_fixtures.py \\
        --lpw-onnx /tmp/lpw/lpw_stable_diffusion_onnx.py --lpw-xl /tmp/lpw/lpw_stable_diffusion_xl.py

The committed files were made with Python 3.11.7, numpy 2.4.6, onnxruntime 1.31.1, torch 2.15.0
(PyPI build, run on CPU), transformers 4.57.6, diffusers 0.38.0; cases.json records them.
onnxruntime and torch run on one thread and nothing depends on time or on the machine, so a rerun
writes byte-identical files.

Prompts (the same for each model, see PROMPTS): "a photo of a cat"; ""; exactly 75, 76, 160 and
400 tokens (one CLIP token per word); A1111 weights "a (red:1.3) fox", "a ((red)) fox in [snow]",
the nested example of lpw's docstring, escaped parentheses, "(unbalanced"; a weighted prompt of
over 75 tokens whose (...:1.4) group straddles the first chunk boundary; Unicode with an em dash
and an emoji; "a cat BREAK a dog" (the SDXL file turns BREAK into the token "break" with weight
-1); and "a photo of a cat" with a 160-token negative (lpw gives the prompt as many chunks as
the negative).

Contents (paths relative to fixtures/prompts/):
* `<model>/<case>.npy`: float32 prompt embedding as lpw returns it, [1, rows, width]
  (SD: rows = 77 * chunks, width 32; SDXL: 77 rows per full chunk plus 2 + the tokens of a
  partial last chunk, width 32 + 48 = 80); `<model>/<case>.pooled.npy` (SDXL): float32 [1, 32],
  text_encoder_2's `text_embeds` of the LAST chunk; a case with a negative also has
  `<case>.negative.npy` (and `<case>.negative.pooled.npy`).
* `cases.json`: `{"about", "versions", "lpw_files", "max_embeddings_multiples", "cases": [...]}`;
  each case has `model`, `name`, `prompt`, `negative` (null: none for SD, "" for SDXL),
  `reference` (the function), `options`, `fragments` (parse_prompt_attention's [text, weight]
  pairs, null when parsing is off), `tokens` (the prompt's content ids after lpw's truncation,
  without BOS/EOS/padding), `chunks` (one per encoder call: `input_ids` as fed, SDXL also
  `input_ids_2`; `weights` per row as lpw computes them in float64, SDXL also `weights_f16`, the
  float16 values it multiplies by), `embedding` and `pooled` (`file`, `shape`), the same with
  `negative_` for a negative, `error` where lpw raises (SDXL with an empty prompt), and `standard`
  for the bracket-free prompts of at most 75 tokens: the ids of the plain pipeline (tokenizer
  padding to 77, one encoder call) and the max abs difference of its embedding to lpw's.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import platform
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
OUT = HERE / "fixtures" / "prompts"

CHUNK = 77
BOS, EOS = 49406, 49407
# lpw_stable_diffusion_onnx's pipeline `__call__` / `text2img` / `img2img` / `inpaint` default.
MAX_EMBEDDINGS_MULTIPLES = 3
LPW_FILES = {
    "lpw_onnx": ("lpw_stable_diffusion_onnx.py", "c5d62ac0e17d7a413c936c0d4ba8c6f3a12f0a8dca8179054238c7808ad2273c"),
    "lpw_xl": ("lpw_stable_diffusion_xl.py", "e397d440ffd49aa235f96432f726cf979198bec5acc66f1abda49146d6a4b0f0"),
}
LPW_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
SD_MODELS = ["tiny-sd", "tiny-sd2-v"]
XL_MODEL = "tiny-sdxl"

# Every word here is one CLIP token, so "the first n words" is a prompt of exactly n tokens.
WORDS = (
    "a red fox sits in deep snow under the pale winter sky near an old wooden house on hill with tall "
    "pine trees and frozen river soft light morning mist over distant mountains oil painting highly "
    "detailed warm colors small birds fly above quiet village smoke rises from stone chimney"
).split()


def words(n: int, start: int = 0) -> str:
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


# A weighted prompt of more than 75 tokens whose (... :1.4) group straddles the first chunk boundary.
WEIGHTED_LONG = (
    f"(masterpiece:1.2), [[lowres]], {words(64)}, ({words(12, 64)}:1.4), "
    f"{words(20, 12)} ((glowing eyes)), [blurry:0.5] {words(15, 30)}"
)

# (name, prompt, negative, with a "-plain" variant (weighting off))
PROMPTS: list[tuple[str, str, str | None, bool]] = [
    ("short", "a photo of a cat", None, False),
    ("empty", "", None, False),
    ("tokens-75", words(75), None, False),
    ("tokens-76", words(76), None, True),
    ("tokens-160", words(160), None, True),
    ("tokens-400", words(400), None, True),
    ("weight-explicit", "a (red:1.3) fox", None, True),
    ("weight-brackets", "a ((red)) fox in [snow]", None, False),
    ("weight-nested", "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", None, True),
    ("escaped", r"\(literal\) parens", None, False),
    ("unbalanced", "(unbalanced", None, False),
    ("weighted-long", WEIGHTED_LONG, None, True),
    ("unicode", "a fox \u2014 \U0001f98a (in snow:1.2)", None, False),
    ("break", "a cat BREAK a dog", None, False),
    ("short-long-negative", "a photo of a cat", words(160, 7), False),
]
# Expected content token counts (checked, so that an edit of WORDS cannot silently move a boundary).
TOKEN_COUNTS = {"short": 5, "empty": 0, "tokens-75": 75, "tokens-76": 76, "tokens-160": 160, "tokens-400": 400}
# Prompts without brackets of at most 75 tokens, compared with the plain pipeline's embedding.
STANDARD = {"short", "empty", "tokens-75", "break"}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_tokenizer(folder: Path):
    import transformers
    from transformers import CLIPTokenizer

    try:
        import ftfy  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("ftfy is installed: the slow CLIPTokenizer would clean text with it, unlike Easel; uninstall it")
    if int(transformers.__version__.split(".")[0]) >= 5:
        raise SystemExit(f"transformers {transformers.__version__}: need 4.x for the slow CLIPTokenizer (see the docstring)")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    assert not tokenizer.is_fast and tokenizer.model_max_length == CHUNK
    return tokenizer


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


ORT_INT = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


class OnnxEncoder:
    """`pipe.text_encoder` for lpw_stable_diffusion_onnx: `encoder(input_ids=array)` returns
    `[last_hidden_state]`, like diffusers' OnnxRuntimeModel (whose [0] is the first graph output)."""

    def __init__(self, path: Path):
        self.session = session(path)
        self.ids_dtype = ORT_INT[self.session.get_inputs()[0].type]
        assert self.session.get_outputs()[0].name == "last_hidden_state"
        self.calls: list[list[int]] = []

    def __call__(self, input_ids: np.ndarray) -> list[np.ndarray]:
        ids = np.asarray(input_ids)
        assert ids.shape == (1, CHUNK), ids.shape
        self.calls.append([int(i) for i in ids[0]])
        return self.session.run(["last_hidden_state"], {"input_ids": ids.astype(self.ids_dtype)})


class EncoderOutput:
    """What lpw_stable_diffusion_xl reads from a transformers CLIP model output: `[0]`, `.hidden_states`."""

    def __init__(self, first, hidden_states):
        self.first = first
        self.hidden_states = hidden_states

    def __getitem__(self, index):
        if index != 0:
            raise IndexError(index)
        return self.first


class TorchOnnxEncoder:
    """`pipe.text_encoder` / `pipe.text_encoder_2` for lpw_stable_diffusion_xl: called with a
    [1, n] torch.long tensor (n <= 77) and `output_hidden_states=True`."""

    def __init__(self, path: Path):
        self.session = session(path)
        self.ids_dtype = ORT_INT[self.session.get_inputs()[0].type]
        self.names = [o.name for o in self.session.get_outputs()]
        self.hidden_names = sorted((n for n in self.names if n.startswith("hidden_states.")), key=lambda n: int(n.split(".")[1]))
        self.calls: list[list[int]] = []

    def run(self, ids: np.ndarray, filler: int) -> dict[str, np.ndarray]:
        padded = np.full((ids.shape[0], CHUNK), filler, dtype=self.ids_dtype)
        padded[:, : ids.shape[1]] = ids
        return dict(zip(self.names, self.session.run(None, {"input_ids": padded})))

    def __call__(self, input_ids, output_hidden_states: bool = False):
        import torch

        assert output_hidden_states
        ids = input_ids.cpu().numpy()
        n = ids.shape[1]
        # The last id is EOS; earlier EOS ids are the padding lpw adds to the shorter of prompt and
        # negative. The pooled row is the first EOS, so it is among the rows kept either way.
        assert ids.shape[0] == 1 and 2 <= n <= CHUNK and ids[0, -1] == EOS, ids
        self.calls.append([int(i) for i in ids[0]])
        out = self.run(ids, EOS)
        if n < CHUNK:  # the rows kept do not depend on what follows them
            other = self.run(ids, 0)
            for name in self.names:
                a, b = out[name], other[name]
                if a.ndim == 3:
                    a, b = a[:, :n], b[:, :n]
                assert np.array_equal(a, b), name
        first = self.names[0]
        first_value = out[first][:, :n] if out[first].ndim == 3 else out[first]
        hidden = tuple(torch.from_numpy(np.ascontiguousarray(out[h][:, :n])) for h in self.hidden_names)
        return EncoderOutput(torch.from_numpy(np.ascontiguousarray(first_value)), hidden)


class Recorder:
    """Wraps module-level lpw functions (looked up by name at call time) to record their results."""

    def __init__(self, module, *names: str):
        self.module = module
        self.originals = {n: getattr(module, n) for n in names}
        self.log: dict[str, list] = {n: [] for n in names}
        for n in names:
            setattr(module, n, self.wrap(n))

    def wrap(self, name: str):
        original = self.originals[name]

        def wrapper(*args, **kwargs):
            arguments = copy.deepcopy(args)  # before the call: pad_tokens_and_weights pads in place
            result = original(*args, **kwargs)
            self.log[name].append((arguments, copy.deepcopy(result)))
            return result

        return wrapper

    def reset(self) -> None:
        for entries in self.log.values():
            entries.clear()


def plain_floats(values) -> list[float]:
    return [float(v) for v in values]


def ints(values) -> list[int]:
    return [int(v) for v in values]


def save(out: Path, rel: str, array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.float32)
    assert np.isfinite(array).all(), rel
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(out / rel, array)
    return {"file": rel, "shape": list(array.shape)}


# --------------------------------------------------------------------------------------------
# SD 1.x / 2.x: lpw_stable_diffusion_onnx.get_weighted_text_embeddings
# --------------------------------------------------------------------------------------------


def sd_cases(lpw, out: Path, model: str) -> list[dict]:
    folder = MODELS / model
    tokenizer = load_tokenizer(folder / "tokenizer")
    encoder = OnnxEncoder(folder / "text_encoder" / "model.onnx")
    pipe = type("LpwPipe", (), {})()
    pipe.tokenizer, pipe.text_encoder = tokenizer, encoder
    rec = Recorder(lpw, "parse_prompt_attention", "pad_tokens_and_weights")
    recording_parse = lpw.parse_prompt_attention

    def chunks_of(tokens: list[int], weights: list[float], calls: list[list[int]]) -> list[dict]:
        n = len(calls)
        assert len(tokens) == (CHUNK - 2) * n + 2 and len(weights) == CHUNK * n  # no_boseos_middle=False
        return [{"input_ids": calls[i], "weights": plain_floats(weights[i * CHUNK : (i + 1) * CHUNK])} for i in range(n)]

    cases = []
    for name, prompt, negative, with_plain in PROMPTS:
        for plain in (False, True) if with_plain else (False,):
            case_name = name + ("-plain" if plain else "")
            skip_parsing_outcome = None
            if plain:
                skip_parsing_outcome = sd_skip_parsing(lpw, pipe, prompt, negative)
                lpw.parse_prompt_attention = lambda text: [[text, 1.0]]
            rec.reset()
            encoder.calls.clear()
            try:
                result = lpw.get_weighted_text_embeddings(
                    pipe,
                    prompt,
                    uncond_prompt=negative,
                    max_embeddings_multiples=MAX_EMBEDDINGS_MULTIPLES,
                )
            finally:
                lpw.parse_prompt_attention = recording_parse
            embeds, neg_embeds = result if negative is not None else (result, None)
            padded = rec.log["pad_tokens_and_weights"]
            assert len(padded) == (2 if negative is not None else 1)
            n = embeds.shape[1] // CHUNK
            assert embeds.shape[1] == n * CHUNK and len(encoder.calls) == n * len(padded)
            arguments, (tokens, weights) = padded[0]  # arguments: (tokens, weights, max_length, bos, eos, pad)
            content, tokens, weights = arguments[0][0], tokens[0], weights[0]
            parsed = [result for _, result in rec.log["parse_prompt_attention"]]
            case = {
                "model": model,
                "name": case_name,
                "prompt": prompt,
                "negative": negative,
                "reference": "lpw_stable_diffusion_onnx.get_weighted_text_embeddings",
                "options": {
                    "weighting": not plain,
                    "parse_prompt_attention": "replaced by lambda text: [[text, 1.0]]" if plain else "lpw's",
                    "skip_parsing": False,
                    "skip_weighting": False,
                    "max_embeddings_multiples": MAX_EMBEDDINGS_MULTIPLES,
                    "no_boseos_middle": False,
                },
                "fragments": [[t, float(w)] for t, w in parsed[0]] if not plain else None,
                "tokens": ints(content),
                "chunks": chunks_of(tokens, weights, encoder.calls[:n]),
                "embedding": save(out, f"{model}/{case_name}.npy", embeds),
            }
            if plain:
                case["lpw_skip_parsing_true"] = skip_parsing_outcome
            if negative is not None:
                _, (neg_tokens, neg_weights) = padded[1]
                neg_tokens, neg_weights = neg_tokens[0], neg_weights[0]
                case["negative_fragments"] = [[t, float(w)] for t, w in parsed[1]] if not plain else None
                case["negative_chunks"] = chunks_of(neg_tokens, neg_weights, encoder.calls[n:])
                case["negative_embedding"] = save(out, f"{model}/{case_name}.negative.npy", neg_embeds)
            if not plain and name in TOKEN_COUNTS:
                assert len(content) == min(TOKEN_COUNTS[name], MAX_EMBEDDINGS_MULTIPLES * (CHUNK - 2)), (name, len(content))
            if name in STANDARD and not plain:
                ids = tokenizer(prompt, padding="max_length", max_length=CHUNK, truncation=True, return_tensors="np").input_ids
                standard = encoder.session.run(["last_hidden_state"], {"input_ids": ids.astype(encoder.ids_dtype)})[0]
                rows = len(content) + 1  # BOS and the content tokens
                case["standard"] = {
                    "input_ids": ints(ids[0]),
                    "max_abs_diff": float(np.abs(standard - embeds).max()),
                    "max_abs_diff_bos_and_content_rows": float(np.abs(standard[:, :rows] - embeds[:, :rows]).max()),
                }
            cases.append(case)
            print(f"{model:11} {case_name:26} chunks={n} shape={list(embeds.shape)}" + (f" standard diff={case['standard']['max_abs_diff']:.3g}" if "standard" in case else ""))
    for function_name, function in rec.originals.items():
        setattr(lpw, function_name, function)
    return cases


def sd_skip_parsing(lpw, pipe, prompt: str, negative: str | None) -> str:
    """What lpw's own `skip_parsing=True` does with the prompt. That path takes the tokenizer's
    numpy rows and then does `[bos] + tokens[i] + [pad] * k + [eos]`, which numpy evaluates as
    element-wise additions: it raises for most lengths and gives wrong ids for the others. So the
    `-plain` cases run the parsing path with parse_prompt_attention replaced by
    `[[text, 1.0]]`: one fragment, the same truncation, all weights 1.0 (the mean-preserving
    rescale is then an exact no-op), which is what `skip_parsing=True` is meant to give."""
    calls = len(pipe.text_encoder.calls)
    try:
        lpw.get_weighted_text_embeddings(
            pipe, prompt, uncond_prompt=negative, max_embeddings_multiples=MAX_EMBEDDINGS_MULTIPLES, skip_parsing=True
        )
    except Exception as error:
        return f"raises {type(error).__name__}: {error}"
    finally:
        del pipe.text_encoder.calls[calls:]
    return "runs (on wrong ids)"


# --------------------------------------------------------------------------------------------
# SDXL: lpw_stable_diffusion_xl.get_weighted_text_embeddings_sdxl
# --------------------------------------------------------------------------------------------


def xl_cases(lpw, out: Path) -> list[dict]:
    import torch

    model = XL_MODEL
    folder = MODELS / model
    pipe = type("LpwXLPipe", (), {})()
    pipe.tokenizer = load_tokenizer(folder / "tokenizer")
    pipe.tokenizer_2 = load_tokenizer(folder / "tokenizer_2")
    pipe.text_encoder = TorchOnnxEncoder(folder / "text_encoder" / "model.onnx")
    pipe.text_encoder_2 = TorchOnnxEncoder(folder / "text_encoder_2" / "model.onnx")
    assert pipe.text_encoder_2.names[0] == "text_embeds"
    rec = Recorder(lpw, "parse_prompt_attention", "get_prompts_tokens_with_weights", "group_tokens_and_weights")
    recording_parse = lpw.parse_prompt_attention

    cases = []
    for name, prompt, negative, with_plain in PROMPTS:
        for plain in (False, True) if with_plain else (False,):
            case_name = name + ("-plain" if plain else "")
            rec.reset()
            pipe.text_encoder.calls.clear()
            pipe.text_encoder_2.calls.clear()
            if plain:
                lpw.parse_prompt_attention = lambda text: [[text, 1.0]]
            case = {
                "model": model,
                "name": case_name,
                "prompt": prompt,
                "negative": negative,
                "reference": "lpw_stable_diffusion_xl.get_weighted_text_embeddings_sdxl",
                "options": {
                    "weighting": not plain,
                    "parse_prompt_attention": "replaced by lambda text: [[text, 1.0]]" if plain else "lpw's",
                    "neg_prompt": negative if negative is not None else "",
                    "clip_skip": None,
                },
            }
            try:
                with torch.no_grad():
                    embeds, neg_embeds, pooled, neg_pooled = lpw.get_weighted_text_embeddings_sdxl(
                        pipe, prompt=prompt, neg_prompt=negative if negative is not None else "", device=torch.device("cpu")
                    )
            except Exception as error:  # lpw's own failure is part of the reference
                case["error"] = f"{type(error).__name__}: {error}"
                cases.append(case)
                print(f"{model:11} {case_name:26} error: {case['error']}")
                continue
            finally:
                lpw.parse_prompt_attention = recording_parse
            groups = [result for _, result in rec.log["group_tokens_and_weights"]]  # prompt 1, negative 1, prompt 2, negative 2
            assert len(groups) == 4
            (ids1, w1), (nids1, nw1), (ids2, _w2), (nids2, _nw2) = groups
            calls1, calls2 = pipe.text_encoder.calls, pipe.text_encoder_2.calls
            assert calls1[0::2] == ids1 and calls2[0::2] == ids2 and calls1[1::2] == nids1 and calls2[1::2] == nids2

            def chunks(ids_a, ids_b, weights):
                return [
                    {
                        "input_ids": ids_a[i],
                        "input_ids_2": ids_b[i],
                        "weights": plain_floats(weights[i]),
                        "weights_f16": plain_floats(torch.tensor(weights[i], dtype=torch.float16).float().tolist()),
                    }
                    for i in range(len(ids_a))
                ]

            parsed = [result for _, result in rec.log["parse_prompt_attention"]] if not plain else None
            case["fragments"] = [[t, float(w)] for t, w in parsed[0]] if parsed else None
            # get_prompts_tokens_with_weights: prompt 1, negative 1, prompt 2, negative 2 (before the
            # shorter of prompt and negative is padded with EOS)
            tokenized = [result for _, result in rec.log["get_prompts_tokens_with_weights"]]
            assert tokenized[0][0] == tokenized[2][0], "the two tokenizers disagree"
            case["tokens"] = ints(tokenized[0][0])
            case["chunks"] = chunks(ids1, ids2, w1)
            case["embedding"] = save(out, f"{model}/{case_name}.npy", embeds.numpy())
            case["pooled"] = save(out, f"{model}/{case_name}.pooled.npy", pooled.numpy())
            if negative is not None:
                case["negative_fragments"] = [[t, float(w)] for t, w in parsed[1]] if parsed else None
                case["negative_chunks"] = chunks(nids1, nids2, nw1)
                case["negative_embedding"] = save(out, f"{model}/{case_name}.negative.npy", neg_embeds.numpy())
                case["negative_pooled"] = save(out, f"{model}/{case_name}.negative.pooled.npy", neg_pooled.numpy())
            if not plain and name in TOKEN_COUNTS:
                assert len(case["tokens"]) == TOKEN_COUNTS[name], (name, len(case["tokens"]))
            rows = embeds.shape[1]
            if name in STANDARD and not plain:
                standard, standard_pooled, standard_ids = xl_standard(pipe, prompt)
                case["standard"] = {
                    "input_ids": standard_ids[0],
                    "input_ids_2": standard_ids[1],
                    "rows_compared": rows,
                    "max_abs_diff": float(np.abs(standard[:, :rows] - embeds.numpy()).max()),
                    "pooled_max_abs_diff": float(np.abs(standard_pooled - pooled.numpy()).max()),
                }
            cases.append(case)
            extra = f" standard diff={case['standard']['max_abs_diff']:.3g} pooled={case['standard']['pooled_max_abs_diff']:.3g}" if "standard" in case else ""
            print(f"{model:11} {case_name:26} chunks={len(ids1)} shape={list(embeds.shape)}{extra}")
    for function_name, function in rec.originals.items():
        setattr(lpw, function_name, function)
    return cases


def xl_standard(pipe, prompt: str):
    """StableDiffusionXLPipeline.encode_prompt for one prompt (clip_skip None): both tokenizers pad
    to 77 (tokenizer with EOS, tokenizer_2 with "!"), hidden_states[-2] of each encoder concatenated,
    pooled = text_encoder_2's text_embeds."""
    hidden, all_ids, pooled = [], [], None
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        ids = tokenizer(prompt, padding="max_length", max_length=CHUNK, truncation=True, return_tensors="np").input_ids
        out = dict(zip(encoder.names, encoder.session.run(None, {"input_ids": ids.astype(encoder.ids_dtype)})))
        hidden.append(out[encoder.hidden_names[-2]])
        all_ids.append(ints(ids[0]))
        if "text_embeds" in out:
            pooled = out["text_embeds"]
    return np.concatenate(hidden, axis=-1), pooled, all_ids


# --------------------------------------------------------------------------------------------


def to_json(value, indent: str = "") -> str:
    """JSON with one key per line, but lists of scalars (ids, weights, shapes, [text, weight]) on one line."""
    inner = indent + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lpw-onnx", type=Path, required=True, help="examples/community/lpw_stable_diffusion_onnx.py of diffusers")
    parser.add_argument("--lpw-xl", type=Path, required=True, help="examples/community/lpw_stable_diffusion_xl.py of diffusers")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args()

    import diffusers
    import torch
    import transformers
    from diffusers.utils import logging as diffusers_logging

    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()  # "Token indices sequence length is longer than ..."
    diffusers_logging.set_verbosity_error()  # "Prompt was truncated ..."
    warnings.filterwarnings("ignore", category=FutureWarning)

    lpw_files = {}
    for key, path in (("lpw_onnx", args.lpw_onnx), ("lpw_xl", args.lpw_xl)):
        expected_name, expected_sha = LPW_FILES[key]
        digest = sha256(path)
        if path.name != expected_name or digest != expected_sha:
            print(f"warning: {path} (sha256 {digest}) is not the {expected_name} the committed fixtures were made from ({expected_sha})", file=sys.stderr)
        lpw_files[expected_name] = {"sha256": digest, "made_from_commit": LPW_COMMIT if digest == expected_sha else None}
    lpw_onnx = load_module("lpw_stable_diffusion_onnx", args.lpw_onnx)
    lpw_xl = load_module("lpw_stable_diffusion_xl", args.lpw_xl)

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    cases = []
    for model in SD_MODELS:
        cases += sd_cases(lpw_onnx, out, model)
    cases += xl_cases(lpw_xl, out)

    tokenizer = load_tokenizer(MODELS / SD_MODELS[0] / "tokenizer")
    manifest = {
        "about": "Reference embeddings of long and weighted prompts, made by diffusers' community lpw code on the tiny test models; written by tests/assets/make_prompt_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizer": type(tokenizer).__name__,
            "diffusers": diffusers.__version__,
        },
        "lpw_files": lpw_files,
        "max_embeddings_multiples": MAX_EMBEDDINGS_MULTIPLES,
        "cases": cases,
    }
    (out / "cases.json").write_text(to_json(manifest) + "\n", encoding="utf-8")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {out} ({len(cases)} cases, {len(files)} files, {size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
