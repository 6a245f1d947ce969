"""Drives Easel's /v1 images API with the official `openai` Python package, unchanged.

Run by `server/tests/openai_sdk.rs` against a test server: `python3 openai_sdk_check.py BASE_URL
SOURCE_PNG MASK_PNG`. Prints one JSON line with what it observed; the Rust test asserts on it.
Needs `pip install openai` (`cargo xtask setup` installs it).
"""
import base64
import json
import sys
import urllib.request

import openai
from openai import OpenAI

base, source, mask = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0)
out = {"sdk_version": openai.__version__}

out["models"] = [m.id for m in client.models.list()]

r = client.images.generate(model="tiny-sd", prompt="a red fox", n=2, size="64x64", response_format="b64_json",
                           extra_body={"seed": 5, "steps": 3, "negative_prompt": "blurry"})
out["generate_count"] = len(r.data)
out["generate_png"] = all(base64.b64decode(d.b64_json)[:4] == b"\x89PNG" for d in r.data)
out["generate_created"] = r.created

r = client.images.generate(prompt="a red fox", response_format="url", quality="high")
with urllib.request.urlopen(r.data[0].url) as response:
    out["url_png"] = response.read()[:4] == b"\x89PNG"

with open(source, "rb") as image, open(mask, "rb") as mask_file:
    r = client.images.edit(model="tiny-sd", image=image, mask=mask_file, prompt="a blue door", n=1,
                           extra_body={"strength": 0.8, "seed": 2, "steps": 3})
edited = base64.b64decode(r.data[0].b64_json)
out["edit_png"] = edited[:4] == b"\x89PNG"
out["edit_size"] = r.size

try:
    client.images.generate(prompt="too many", n=11)
    out["n11"] = "accepted"
except openai.BadRequestError as e:
    out["n11"] = {"status": e.status_code, "param": e.body.get("param") if isinstance(e.body, dict) else None,
                  "message": e.message}

try:
    client.images.generate(model="dall-e-9", prompt="x")
    out["unknown_model"] = "accepted"
except openai.NotFoundError as e:
    out["unknown_model"] = {"status": e.status_code, "code": e.code}

events = []
stream = client.images.generate(prompt="a tower", stream=True, partial_images=2, extra_body={"steps": 6, "seed": 1})
for event in stream:
    events.append(event.type)
out["stream_events"] = events

print(json.dumps(out))
