#!/usr/bin/env python3
"""Zero-shot rankings of the tiny fixture's int8 image encoder over 40 phrases, from
onnxruntime, for tests/embeddings.rs (the int8 ranking test).

    python3 tests/data/embeddings/generate_int8_rankings.py   # writes int8_rankings.json

It imports the project's clip_tools package: install it first, from the repository root,
with `pip install -r models/requirements.txt`.

For the six images of golden.json (their committed pixel_values .npy files) and the 40
PHRASES below (used as they are, no template): onnxruntime on files.text_encoder (open_clip
ids zero-padded to 77), on files.image_encoder_int8 and on files.image_encoder; stored per
image are the cosine of every phrase for int8 and for fp32 (rounded to 8 decimals). The
fp32 cosines are there so a test can show that the int8 graph, and not the fp32 one, is
what matches.
"""

from __future__ import annotations

import json
import os

import numpy as np

from clip_tools import bundle as cb
from clip_tools.log import log

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLE = os.path.join(HERE, "..", "..", "fixtures", "tiny-clip")

PHRASES = [
    "a photo of a red cup.", "blue ball", "the drawer handle", "pick up the green sponge",
    "a photo of a dog.", "an empty table", "a robot arm", "a person waving at the camera",
    "yellow rubber duck", "a blurry photo of a screwdriver.", "orange traffic cone",
    "a stack of white plates on a shelf", "a wooden chair", "the kitchen sink", "a laptop",
    "a coffee mug", "a banana", "a pair of scissors", "a cardboard box", "a door",
    "the open drawer", "a plastic bottle", "a tennis ball", "a red apple", "a smartphone",
    "a towel", "a plant in a pot", "a book on a table", "a spoon", "a fork", "a knife",
    "a bowl of cereal", "a toy car", "a measuring tape", "a hammer", "a glass of water",
    "a cat on the floor", "a pile of clothes", "a window", "a light switch",
]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> int:
    assert len(PHRASES) == len(set(PHRASES)) == 40
    manifest = cb.read_manifest(BUNDLE)
    files = manifest["files"]
    with open(os.path.join(HERE, "golden.json"), encoding="utf-8") as f:
        images = json.load(f)["images"]
    pixels = np.concatenate([np.load(os.path.join(HERE, im["pixel_values"])) for im in images])
    tok = cb.open_clip_simple_tokenizer()
    ids = cb.pad_ids([cb.open_clip_ids(tok, p) for p in PHRASES], cb.CONTEXT_LENGTH)
    text = unit(cb.ort_session(os.path.join(BUNDLE, files["text_encoder"]["path"]))
                .run(None, {files["text_encoder"]["input"]: ids})[0])
    cos = {}
    for precision, key in (("int8", "image_encoder_int8"), ("fp32", "image_encoder")):
        session = cb.ort_session(os.path.join(BUNDLE, files[key]["path"]))
        cos[precision] = unit(session.run(None, {files[key]["input"]: pixels})[0]) @ text.T
    rankings = {tuple(np.argsort(-c, kind="stable")) for c in cos["int8"]}
    out = {
        "model": os.path.relpath(BUNDLE, HERE),
        "model_files_sha256": {k: v["sha256"] for k, v in files.items()},
        "reference": "onnxruntime: files.image_encoder_int8 and files.image_encoder on the "
                     "golden.json pixel_values, files.text_encoder on open_clip ids padded to 77",
        "phrases": PHRASES,
        "images": [{"name": im["name"], "pixel_values": im["pixel_values"],
                    "int8": [round(float(v), 8) for v in cos["int8"][i]],
                    "fp32": [round(float(v), 8) for v in cos["fp32"][i]]}
                   for i, im in enumerate(images)],
    }
    with open(os.path.join(HERE, "int8_rankings.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    d = np.abs(cos["int8"] - cos["fp32"]).max(1)
    log(f"wrote int8_rankings.json: {len(images)} images x {len(PHRASES)} phrases, "
        f"{len(rankings)} distinct int8 rankings; int8 vs fp32 cosine max diff per image "
        f"{np.round(d, 5).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
