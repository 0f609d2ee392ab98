#!/usr/bin/env python3
"""Per-image zero-shot reference for the bundled default model (models/tabletop), from
onnxruntime on the bundle's own graphs, for tests/tabletop.rs.

    python3 tests/data/tabletop/generate.py     # writes tests/data/tabletop/reference.json

It imports the project's clip_tools package: install it first, from the repository root,
with `pip install -r models/requirements.txt`.

For every evaluation image (models/tabletop/eval, labels.csv order) and the 64 "colour
object" phrases under the bundle's template, with the evaluation script's own pieces
(clip_tools.tabletop.evaluate: Pillow preprocessing, open_clip token ids), the cosine of
every phrase (rounded to 7 decimals):
- `fp32`: onnxruntime on files.image_encoder;
- `int8`: onnxruntime on files.image_encoder_int8 (default session options).
The text side is onnxruntime on files.text_encoder, shared by both. The trained PyTorch
checkpoint is not part of the bundle, so onnxruntime (an implementation independent of
tract) is the reference; models/tabletop/README.md shows PyTorch and onnxruntime agree
image for image on this bundle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from clip_tools import bundle as cb
from clip_tools.log import log
from clip_tools.tabletop import evaluate as ev

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
BUNDLE = ROOT / "models" / "tabletop"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def image_features(session, input_name: str, rows, manifest) -> np.ndarray:
    feats = []
    for s in range(0, len(rows), 64):
        x = np.stack([
            ev.pixel_values(BUNDLE / "eval" / r["file"], manifest["image_size"],
                            manifest["image_mean"], manifest["image_std"])
            for r in rows[s:s + 64]
        ])
        feats.append(session.run(None, {input_name: x})[0])
    return unit(np.concatenate(feats))


def main() -> int:
    manifest = cb.read_manifest(BUNDLE)
    files = manifest["files"]
    template = manifest.get("metrics", {}).get("template", ev.TEMPLATE)
    rows = ev.load_eval(BUNDLE / "eval")
    txt = cb.ort_session(BUNDLE / files["text_encoder"]["path"], 2)
    text = unit(txt.run(None, {files["text_encoder"]["input"]:
                               ev.token_ids([template.format(p) for p in ev.PHRASES])})[0])
    cos = {}
    for precision, key in (("fp32", "image_encoder"), ("int8", "image_encoder_int8")):
        session = cb.ort_session(BUNDLE / files[key]["path"], 2)
        cos[precision] = image_features(session, files[key]["input"], rows, manifest) @ text.T
        log(f"{precision}: {len(rows)} images scored")
    images = [
        {
            "file": r["file"],
            "fp32": [round(float(v), 7) for v in cos["fp32"][i]],
            "int8": [round(float(v), 7) for v in cos["int8"][i]],
        }
        for i, r in enumerate(rows)
    ]
    out = {
        "model": os.path.relpath(BUNDLE, HERE),
        "manifest_sha256": cb.sha256_file(BUNDLE / "model.yaml"),
        "reference": "onnxruntime on the bundle's fp32 / int8 image encoder and its text encoder; "
                     "Pillow preprocessing and open_clip token ids (clip_tools.tabletop.evaluate)",
        "template": template,
        "phrases": ev.PHRASES,
        "images": images,
    }
    path = HERE / "reference.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    log(f"wrote {path} ({len(images)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
