#!/usr/bin/env python3
"""Writes fixtures/clip_tokenizer_cases.json: reference CLIP token ids for the Rust tokenizer's tests.

The reference is transformers' *slow* (pure Python) `CLIPTokenizer`, loaded from the test models'
`tokenizer/` folders the way diffusers pipelines load it, called as the pipelines call it:

    tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids

Which transformers, and why:

* `ftfy` must NOT be installed. Without it the slow CLIPTokenizer cleans text with its
  `BasicTokenizer(strip_accents=False, do_split_on_punc=False)` (control characters dropped,
  whitespace collapsed, spaces put around CJK ideographs, NFC, lower case) instead of
  `ftfy.fix_text`; that BasicTokenizer path is what the Rust tokenizer reproduces. The script
  refuses to run when ftfy can be imported.
* transformers 5 removed the slow CLIPTokenizer: its `CLIPTokenizer` is the Rust `tokenizers`
  pipeline, which does no control-character removal and no CJK spacing, so it gives different
  ids for such text. Run this script with transformers 4.x (4.57.6 was used), e.g.

      python3 -m venv /tmp/tf4 && /tmp/tf4/bin/pip install "transformers==4.57.*"
      /tmp/tf4/bin/python server/tests/assets/make_tokenizer_fixture.py

  (transformers 4 needs neither torch nor ftfy for this). The script refuses to run with a
  fast tokenizer. `--compare-fast` additionally prints the cases where the installed
  CLIPTokenizerFast disagrees, for information.

Each case records the tokenizer folder (`tiny-sd`: pads with `<|endoftext|>`, as SD 1.x;
`tiny-sd2-v`: pads with "!", id 0, as SD 2.x and SDXL's tokenizer_2), the 77 ids, and
`prompt_tokens`, the number of tokens the text gives before truncation, without BOS/EOS.

Character choice: Python 3.11's unicodedata is Unicode 14. The strings avoid characters assigned
after that (the Rust side uses newer tables, and `_is_control` drops unassigned characters), apart
from noncharacters, which stay unassigned forever.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
OUT = HERE / "fixtures" / "clip_tokenizer_cases.json"
MAX_LENGTH = 77

PLAIN = [
    "a photo of a cat",
    "a photograph of an astronaut riding a horse",
    "portrait of a woman, oil painting, highly detailed, 8k, trending on artstation",
    "masterpiece, best quality, 1girl, solo, looking at viewer",
    "(masterpiece:1.2), (best quality:1.1), [blurry], {detailed}",
    "a cozy cabin in the woods at night, snow falling, warm light from the windows",
    "cyberpunk city street, neon signs, rain, reflections, cinematic lighting",
    "low quality, worst quality, bad anatomy, extra fingers, watermark, text",
    "an isometric illustration of a tiny island with a lighthouse",
    "a bowl of ramen, food photography, shallow depth of field",
    "the quick brown fox jumps over the lazy dog",
    "a red cube on top of a blue sphere",
    "studio ghibli style landscape with rolling hills",
    "ultra-realistic, hyper detailed, unreal engine 5 render",
    "a dog",
    "cat",
    "a",
    "x",
    "hello world",
    "antidisestablishmentarianism",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a photo of a cat. a photo of a dog; a photo of a bird",
    "van gogh starry night style painting of new york",
    "by greg rutkowski and alphonse mucha",
    "sks person wearing a hat",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "zzzzz qqqqq xxxxx",
    "photo-realistic",
    "well_known snake_case words",
]

CASE = [
    "A PHOTO OF A CAT",
    "A Photo Of A Cat",
    "aPhOtOoFaCaT",
    "McDonald's iPhone NASA",
    "HELLO World hello WORLD",
    "CamelCaseWordsLikeThis",
    "ΟΔΟΣ",
    "ΟΔΟΣ ΣΑΣ Σ",
    "Σίσυφος ΣΊΣΥΦΟΣ",
    "İstanbul",
    "DİYARBAKIR ırmak",
    "STRASSE Straße ẞ",
    "ǅungla ǈ",
    "ＡＢＣ ｄｅｆ",
    "K Å Ω",
    "it'ſ ſtraße",
    "<|ſtartoftext|>",
    "x'K",
    "a\u0345b \u0345",
    "ﬁ ẞ İ",
    "Ⓐⓑ",
]

ACCENTS = [
    "café crème brûlée",
    "über straße müller",
    "niño año mañana señor",
    "Ørsted søster ø Ø",
    "naïve façade déjà vu",
    "Ångström Åland",
    "cafe\u0301 with a combining accent",
    "A\u030angstrom",
    "e\u0301e\u0300e\u0302e\u0308",
    "Crème Brûlée ÉCOLE",
    "zażółć gęślą jaźń",
    "Dvořák Škoda",
    "Þórr ðæ",
    "Ĳssel ĳs",
    "ḱṓṙ",
    "a\u0301\u0302\u0303\u0304",
    "\u0301 lone combining mark",
    "Привет мир",
    "ПРИВЕТ МИР",
    "Γειά σου κόσμε",
    "Tiếng Việt có dấu",
    "ﬁne ﬂour",
    "ℌ𝔢𝔩𝔩𝔬",
]

CJK = [
    "一只猫在草地上",
    "猫",
    "猫 犬",
    "cat猫cat",
    "猫が好きです",
    "ひらがな カタカナ",
    "東京タワーの夜景",
    "고양이 사진",
    "고양이사진입니다",
    "豈 更",
    "𠀀𠀁",
    "𪜀 𫝀 𫠠",
    "猫\u3000犬",
    "。、「」『』",
    "中文，标点。",
    "中国の山水画、水墨画",
    "漢字とkanji混ざり",
    "ＣＪＫ１２３",
    "㐀㐁",
    "⺀⼀",
]

ARABIC = [
    "قطة على العشب",
    "مَرْحَبًا بِالْعَالَمِ",
    "السلام عليكم",
    "cat قطة cat",
    "\u200fمرحبا\u200f",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "ሰላም",
    "Ελληνικά και العربية",
    "١٢٣ ٤٥٦",
    "۱۲۳",
    "ܫܠܡܐ",
    "ᠮᠣᠩᠭᠣᠯ",
]

EMOJI = [
    "🐱",
    "a cat 🐱 and a dog 🐶",
    "🐱🐶🐭🐹",
    "👍",
    "👍🏽",
    "👍🏿 👍🏻",
    "👨\u200d👩\u200d👧\u200d👦",
    "👩🏽\u200d💻",
    "🏳️\u200d🌈",
    "❤️",
    "❤",
    "🇺🇸🇯🇵",
    "1️⃣ 2️⃣",
    "😀😃😄😁😆😅😂🤣",
    "✨ sparkles ✨",
    "☕️ coffee",
    "🧑\u200d🚀 astronaut",
    "🔥🔥🔥",
    "emoji🙂inside",
    "©️ ®️ ™️",
]

PUNCT = [
    "!!!",
    "wow!!!",
    "wow!!! amazing!!",
    "hello!",
    "!",
    "?!?!",
    "...",
    "hello...world",
    "a,b,c",
    "a, b, c",
    "(((masterpiece)))",
    "[[[bad]]]",
    "{{{{x}}}}",
    "---",
    "~~~",
    "'''",
    '"quoted"',
    "“smart quotes” and ‘single’",
    "—em dash— – en dash",
    "…",
    "#hashtag @user",
    "$100 €50 £20 ¥1000",
    "<html></html>",
    "a/b\\c|d",
    "1+1=2",
    "50%",
    "a_b-c.d",
    "(cat:1.3)",
    "[cat|dog]",
    "cat::dog",
    "&amp; &lt;",
    "§¶†‡",
    "¡hola! ¿qué?",
    "«guillemets»",
    "http://example.com/path?q=1&r=2",
    "email@example.com",
    "* bullet\n* list",
    "a!b!c!",
    "!a!",
]

NUMBERS = [
    "123",
    "3.14159",
    "1,000,000",
    "2024-01-01",
    "v1.5",
    "sd 2.1",
    "x2 2x",
    "4k 8k 16k",
    "1920x1080",
    "0.5",
    "-1",
    "1e10",
    "½ ¼ ¾",
    "x² y³",
    "Ⅻ ⅻ",
    "１２３",
    "007",
    "3:2 aspect",
    "(cat:0.75)",
    "99 bottles",
]

CONTRACTIONS = [
    "it's",
    "don't",
    "they're",
    "we've",
    "i'm",
    "you'll",
    "he'd",
    "IT'S",
    "DON'T",
    "THEY'RE WE'VE I'M YOU'LL HE'D",
    "cat's toy",
    "'s",
    "'t're've'm'll'd",
    "rock'n'roll",
    "o'clock",
    "it\u2019s",
    "s'",
    "''s",
    "'S",
    "James' book",
    "isn'tn't",
    "y'all'd've",
    "'",
    "'x",
]

WHITESPACE = [
    "  leading spaces",
    "trailing spaces   ",
    "a    b",
    "a\tb",
    "a\nb",
    "a\r\nb",
    "\n\n\n",
    "   ",
    "\t",
    "\ta\tcat\t",
    "line one\nline two\n\nline four",
    "a\u00a0b",
    "a\u2003b",
    "a\u2009b",
    "a\u2028b",
    "a\u2029b",
    "a\u3000b",
    "a\u1680b",
    "a\u202fb",
    "a\u205fb",
    " \t\n\r ",
]

CONTROL = [
    "a\x00b",
    "a\x07b",
    "a\x0bb",
    "a\x0cb",
    "a\x1cb",
    "a\x1fb",
    "a\x7fb",
    "a\x85b",
    "\x1b[31mred\x1b[0m",
    "a\ufffdb",
    "a\u00adb",
    "\ufeffbom at start",
    "a\u200bb",
    "a\u200cb",
    "a\u200db",
    "a\u200eb",
    "a\u2060b",
    "a\ue000b",
    "a\U000f0000b",
    "a\uffffb",
    "a\U0010ffffb",
    "a\ufe0fb",
    "\x00",
    "\x00\x01\x02 cat",
    "cat\x00dog",
]

SPECIAL = [
    "<|endoftext|>",
    "a cat<|endoftext|>a dog",
    "a cat <|endoftext|> a dog",
    "<|startoftext|>hello",
    "<|startoftext|><|endoftext|>",
    "<|ENDOFTEXT|>",
    "<|EndOfText|>",
    "x<|ENDOFTEXT|>",
    "!<|endoftext|>",
    "!<|ENDOFTEXT|>",
    "<|endoftext|><|endoftext|>",
    "<|endoftext",
    "endoftext|>",
    "<|endof text|>",
    "<|endoftext|>!!!",
    "hello<|endoftext|>!",
    "<|ENDOFTEXT|>!",
    "<|startoftext|>",
]


def long_cases() -> list[str]:
    words = (
        "a breathtaking panoramic landscape of snow capped mountains above a turquoise lake "
        "at golden hour with dramatic clouds and pine forests and a small wooden cabin "
        "reflected in the still water highly detailed photorealistic"
    )
    return [
        words + ", " + words,
        "cat " * 100,
        "cat, " * 80,
        "a" * 500,
        "supercalifragilisticexpialidocious" * 12,
        " ".join(str(i % 10) for i in range(120)),
        "🐱" * 40,
        "猫" * 90,
        "!" * 200,
        "<|endoftext|>" * 80,
        ("masterpiece, best quality, ultra detailed, " * 6).strip(),
        "word " * 74 + "last",
        "word " * 75 + "cut",
        "word " * 76,
        "Ümlaut Çedilla " * 30,
        "it's " * 40,
    ]


def random_cases(count: int) -> list[str]:
    """Deterministic random mixtures from a pool of characters of every kind above."""
    pool = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list("éüñøÅßçÉÜÑØ")
        + list(" \t\n  ")
        + list(".,;:!?'\"()[]{}<>|-_/\\*&^%$#@~`+=")
        + list("猫犬山水ひらがなカナ고양이")
        + list("قطةשלוםनमस्ते")
        + ["🐱", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇺🇸", "\x00", "\x07", "\u200b", "\u00a0", "\u3000", "'s", "'ll", "<|endoftext|>", "e\u0301"]
    )
    rng = random.Random(20240601)
    cases = []
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
        cases.append("".join(rng.choice(pool) for _ in range(length)))
    return cases


def all_texts() -> list[str]:
    texts = []
    for group in (PLAIN, CASE, ACCENTS, CJK, ARABIC, EMOJI, PUNCT, NUMBERS, CONTRACTIONS, WHITESPACE, CONTROL, SPECIAL, long_cases(), random_cases(40)):
        texts.extend(group)
    texts.append("")
    seen = set()
    unique = []
    for text in texts:
        if text not in seen:
            seen.add(text)
            unique.append(text)
    return unique


def sd2_subset(texts: list[str]) -> list[str]:
    """Everything with a "!" (the SD 2.x pad token, which is also an added token there) plus a
    spread of the rest."""
    chosen = [t for t in texts if "!" in t]
    chosen += [t for i, t in enumerate(texts) if "!" not in t and i % 4 == 0]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--compare-fast", action="store_true", help="also report where CLIPTokenizerFast differs")
    args = parser.parse_args()

    try:
        import ftfy  # noqa: F401

        sys.exit("make_tokenizer_fixture.py: ftfy is installed; uninstall it so the BasicTokenizer path is the reference")
    except ImportError:
        pass
    import transformers
    from transformers import CLIPTokenizer

    tokenizers = {}
    for name in ("tiny-sd", "tiny-sd2-v"):
        tok = CLIPTokenizer.from_pretrained(str(MODELS / name / "tokenizer"))
        if getattr(tok, "is_fast", True):
            sys.exit(
                f"make_tokenizer_fixture.py: transformers {transformers.__version__} has no slow CLIPTokenizer; "
                "run this with transformers 4.x (see the docstring)"
            )
        tokenizers[name] = tok

    texts = all_texts()
    plan = [(t, "tiny-sd") for t in texts] + [(t, "tiny-sd2-v") for t in sd2_subset(texts)]
    for text in texts:
        for ch in text:
            # Keep to characters whose category Python 3.11 (Unicode 14) and newer tables agree on.
            if unicodedata.category(ch) == "Cn":
                assert 0xFDD0 <= ord(ch) <= 0xFDEF or (ord(ch) & 0xFFFE) == 0xFFFE, repr(ch)

    cases = []
    for text, name in plan:
        tok = tokenizers[name]
        ids = tok(text, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        assert len(ids) == MAX_LENGTH
        prompt_tokens = len(tok(text, add_special_tokens=False, truncation=False).input_ids)
        cases.append({"text": text, "tokenizer": name, "ids": ids, "prompt_tokens": prompt_tokens})

    header = {
        "generator": "server/tests/assets/make_tokenizer_fixture.py (slow transformers CLIPTokenizer, BasicTokenizer path: ftfy not installed)",
        "transformers_version": transformers.__version__,
        "python_version": sys.version.split()[0],
        "unicodedata_version": unicodedata.unidata_version,
    }
    lines = ["{"]
    for key, value in header.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('  "cases": [')
    lines.append(",\n".join("    " + json.dumps(case, ensure_ascii=False) for case in cases))
    lines.append("  ]")
    lines.append("}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases ({len(texts)} texts) to {args.out}")

    if args.compare_fast:
        from transformers import CLIPTokenizerFast

        fast_tokenizers = {name: CLIPTokenizerFast.from_pretrained(str(MODELS / name / "tokenizer")) for name in tokenizers}
        differ = 0
        for case in cases:
            fast = fast_tokenizers[case["tokenizer"]]
            ids = fast(case["text"], padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
            if ids != case["ids"]:
                differ += 1
                print(f"fast differs ({case['tokenizer']}): {case['text']!r}")
        print(f"{differ} of {len(cases)} cases differ with CLIPTokenizerFast")


if __name__ == "__main__":
    main()
