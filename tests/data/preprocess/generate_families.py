#!/usr/bin/env python3
"""Reference resizes of the model families' preprocessing (bundle format 2) on every plain
RGB image of this folder, as sha256 digests of the RGB8 result (before scaling and
normalisation), for tests/preprocess.rs.

    python3 tests/data/preprocess/generate_families.py   # writes families.json

Pipelines (each the family's own reference code, on PIL.Image.open(file).convert("RGB")):
- open_clip_bilinear: open_clip.image_transform(224, is_train=False, mean 0, std 1,
  interpolation="bilinear", resize_mode="shortest"): torchvision Resize (PIL bilinear) +
  CenterCrop (offset int(round(d / 2))), as MobileCLIP 2's published config;
  manifest: shortest_edge_crop, bilinear, round_half_even.
- open_clip_bicubic: the same with bicubic (open_clip / OpenAI clip.load's transform);
  manifest: shortest_edge_crop, bicubic, round_half_even.
- siglip_bicubic: transformers' SiglipImageProcessorPil(size 224x224, resample BICUBIC,
  do_rescale=False, do_normalize=False); manifest: squash, bicubic.
- siglip_bilinear: the same with resample BILINEAR; manifest: squash, bilinear.

Each case also records `sha256_horizontal_first`: PIL's single-axis passes composed in
PIL's classic order (horizontal, then vertical; `Resample.c` up to Pillow 12), and `order`:
which composition the pipeline's own output equals. Pillow 13 runs the vertical pass first
for some squash sizes (w333_h517, w100_h900 here: the rows shrink more); the two orders
round the intermediate image differently (a few levels on a few percent of the pixels).

open_clip's tensors are scaled to [0, 1] with mean 0 / std 1; the RGB8 values are
recovered as round(x * 255), exact for v / 255 in float32.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 224


def pipelines():
    import open_clip
    import transformers
    from PIL import Image

    def open_clip_rgb8(interpolation):
        t = open_clip.image_transform(SIZE, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                      interpolation=interpolation, resize_mode="shortest")

        def run(img):
            x = t(img).numpy()  # [3, S, S] float32 in [0, 1]
            return np.rint(x * 255.0).astype(np.uint8).transpose(1, 2, 0)

        return run

    def siglip_rgb8(resample):
        proc = transformers.SiglipImageProcessorPil(size={"height": SIZE, "width": SIZE}, resample=resample,
                                                    do_rescale=False, do_normalize=False)

        def run(img):
            x = proc(images=img, return_tensors="np")["pixel_values"][0]  # [3, S, S]
            return np.asarray(x).round().astype(np.uint8).transpose(1, 2, 0)

        return run

    return {
        "open_clip_bilinear": ({"resize": "shortest_edge_crop", "resample": "bilinear",
                                "crop_offset": "round_half_even"}, open_clip_rgb8("bilinear")),
        "open_clip_bicubic": ({"resize": "shortest_edge_crop", "resample": "bicubic",
                               "crop_offset": "round_half_even"}, open_clip_rgb8("bicubic")),
        "siglip_bicubic": ({"resize": "squash", "resample": "bicubic"}, siglip_rgb8(Image.BICUBIC)),
        "siglip_bilinear": ({"resize": "squash", "resample": "bilinear"}, siglip_rgb8(Image.BILINEAR)),
    }


def two_pass(img, spec):
    """The RGB8 result of `spec` made of PIL single-axis resizes, horizontal pass first and
    vertical pass first (a single-axis resize is one pass in every Pillow version)."""
    from PIL import Image

    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[spec["resample"]]
    w, h = img.size
    if spec["resize"] == "squash":
        rw, rh = SIZE, SIZE
    elif w <= h:
        rw, rh = SIZE, int(SIZE * h / w)
    else:
        rw, rh = int(SIZE * w / h), SIZE

    def crop(a):
        top, left = int(round((rh - SIZE) / 2.0)), int(round((rw - SIZE) / 2.0))
        return a[top:top + SIZE, left:left + SIZE]

    h_first = np.asarray(img.resize((rw, h), resample).resize((rw, rh), resample))
    v_first = np.asarray(img.resize((w, rh), resample).resize((rw, rh), resample))
    return crop(h_first), crop(v_first)


def main() -> int:
    import open_clip
    import PIL
    import transformers
    from PIL import Image

    files = sorted(p for p in HERE.glob("w*_h*.png") if re.fullmatch(r"w\d+_h\d+\.png", p.name))
    out = {"size": SIZE, "pillow": PIL.__version__, "open_clip": open_clip.__version__,
           "transformers": transformers.__version__, "pipelines": {}}
    for name, (spec, run) in pipelines().items():
        cases = []
        for f in files:
            img = Image.open(f).convert("RGB")
            rgb8 = run(img)
            assert rgb8.shape == (SIZE, SIZE, 3), (name, f.name, rgb8.shape)
            h_first, v_first = two_pass(img, spec)
            digest = hashlib.sha256(rgb8.tobytes()).hexdigest()
            order = {(True, True): "either", (True, False): "horizontal_first",
                     (False, True): "vertical_first", (False, False): "neither"}[
                (np.array_equal(rgb8, h_first), np.array_equal(rgb8, v_first))]
            assert order != "neither", (name, f.name)
            cases.append({"file": f.name, "sha256": digest, "sum": int(rgb8.astype(np.int64).sum()),
                          "order": order,
                          "sha256_horizontal_first": hashlib.sha256(h_first.tobytes()).hexdigest()})
        out["pipelines"][name] = {"spec": spec, "cases": cases}
        print(f"{name}: {len(cases)} images")
    (HERE / "families.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
