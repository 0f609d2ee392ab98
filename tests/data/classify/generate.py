#!/usr/bin/env python3
"""Reference values for `clip_perception classify` on the tiny fixture model, from PyTorch,
and the CLIP paper's prompt templates as their upstream packages ship them.

    python3 tests/data/classify/generate.py    # writes reference.json next to this file

It imports the project's clip_tools package and needs clip-benchmark (for the CIFAR-10
templates): from the repository root, `pip install -r models/requirements.txt
clip-benchmark==1.6.2`.

- `templates`: `imagenet` = open_clip's OPENAI_IMAGENET_TEMPLATES (the 80 of OpenAI's
  ImageNet notebook), `cifar10` = clip_benchmark's en_zeroshot_classification_templates.json
  "cifar10" (the 18 of OpenAI's CIFAR-10 prompts), each with `{}` where the class goes.
- `cases`: for IMAGES x PHRASES under one template and under each ensemble: transformers
  CLIPModel (clip_tools.bundle.random_init_clip("tiny", 0), the fixture's weights) on
  CLIPImageProcessorPil pixel values and open_clip token ids padded to 77; an ensemble
  averages each template's unit text embedding and renormalises (the CLIP paper's
  ensembling); `cosine` of unit image and label embeddings, `probability` =
  softmax(logit_scale * cosine) over the phrases.
"""

from __future__ import annotations

import json
import os
from importlib import resources

import numpy as np

from clip_tools import bundle as cb
from clip_tools.log import log

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUNDLE = os.path.join(ROOT, "tests", "fixtures", "tiny-clip")
IMAGES = ["tests/data/preprocess/w641_h479.png", "tests/data/preprocess/palette_w200_h150.png"]
PHRASES = ["red cup", "blue ball", "green box", "the drawer handle"]


def upstream_templates() -> dict[str, list[str]]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    text = resources.files("clip_benchmark.datasets").joinpath(
        "en_zeroshot_classification_templates.json").read_text()
    cifar10 = [t.replace("{c}", "{}") for t in json.loads(text)["cifar10"]]
    return {"imagenet": [t("{}") for t in OPENAI_IMAGENET_TEMPLATES], "cifar10": cifar10}


def main() -> int:
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    torch.set_num_threads(2)
    manifest = cb.read_manifest(BUNDLE)
    cb.verify_bundle_hashes(BUNDLE)
    model = cb.random_init_clip("tiny", 0)
    logit_scale = float(manifest["logit_scale"])
    proc = CLIPImageProcessorPil()
    tok = cb.open_clip_simple_tokenizer()
    templates = upstream_templates()

    def label_matrix(prompts: list[str]) -> torch.Tensor:
        rows = []
        for phrase in PHRASES:
            texts = [t.format(phrase) for t in prompts]
            ids = torch.from_numpy(cb.pad_ids([cb.open_clip_ids(tok, t) for t in texts], cb.CONTEXT_LENGTH))
            with torch.no_grad():
                e = cb.hf_text_features(model, ids)
            e = e / e.norm(dim=-1, keepdim=True)
            m = e.mean(dim=0)
            rows.append(m / m.norm())
        return torch.stack(rows)

    pixels = torch.from_numpy(np.concatenate([
        proc(images=Image.open(os.path.join(ROOT, p)), return_tensors="np")["pixel_values"].astype(np.float32)
        for p in IMAGES]))
    with torch.no_grad():
        img = cb.hf_image_features(model, pixels)
    img = img / img.norm(dim=-1, keepdim=True)
    cases = []
    for name, prompts in [("template", ["a photo of a {}."]), ("cifar10", templates["cifar10"]),
                          ("imagenet", templates["imagenet"])]:
        cos = img @ label_matrix(prompts).T
        prob = torch.softmax(logit_scale * cos, dim=-1)
        for i, path in enumerate(IMAGES):
            cases.append({"prompts": name, "image": path,
                          "cosine": [float(c) for c in cos[i]],
                          "probability": [float(p) for p in prob[i]]})
    out = {
        "model": os.path.relpath(BUNDLE, HERE),
        "model_files_sha256": {k: v["sha256"] for k, v in manifest["files"].items()},
        "reference": "transformers CLIPModel (fp32) on CLIPImageProcessorPil pixel values and "
                     "open_clip ids padded to 77; ensembles: mean of unit template embeddings, "
                     "renormalised",
        "phrases": PHRASES,
        "templates": templates,
        "cases": cases,
    }
    with open(os.path.join(HERE, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    log(f"wrote reference.json: {len(cases)} cases, templates imagenet {len(templates['imagenet'])}, "
        f"cifar10 {len(templates['cifar10'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
