#!/usr/bin/env python3
"""Golden embeddings of the tiny fixture model (tests/fixtures/tiny-clip), from PyTorch.

    python3 tests/data/embeddings/generate.py     # writes tests/data/embeddings/golden.json (+ .npy)

It imports the project's clip_tools package: install it first, from the repository root,
with `pip install -r models/requirements.txt`.

The PyTorch model is re-created exactly as models/export.py builds the fixture
(`clip_tools.bundle.random_init_clip("tiny", seed=0)`, deterministic), and the script checks that
it is the same model as the committed ONNX files: onnxruntime on the fixture graphs must
agree with PyTorch (max abs diff printed and stored).

- images: 6 inputs from tests/data/preprocess; `pixel_values` = transformers' slow PIL
  CLIPImageProcessorPil with default settings on PIL.Image.open(file), float32 [1,3,224,224]
  stored as .npy (two of them reuse the preprocess folder's .npy files); `image_embeds` =
  CLIPModel.get_image_features (projected, unnormalised).
- phrases: 12 strings; `ids` = open_clip SimpleTokenizer ids (sot ... eot, unpadded);
  `text_embeds` = CLIPModel.get_text_features on the ids zero-padded to 77 like open_clip.
- image_embeds_int8_onnxruntime: onnxruntime on the fixture's int8 image encoder
  (models/quantize.py, dynamic-symmetric) with the same pixel_values.
- zero_shot: for each image, cosine similarity to every phrase, `logit_scale * cosine`
  softmax probabilities, and `ranking` = phrase indices by descending cosine.
Paths in golden.json are relative to this folder.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from clip_tools import bundle as cb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PREPROCESS = os.path.join(ROOT, "tests", "data", "preprocess")
BUNDLE = os.path.join(ROOT, "tests", "fixtures", "tiny-clip")

IMAGES = ["w641_h479", "rgba_w256_h200", "w1600_h1200", "gray_L_w320_h240", "w333_h517", "palette_w200_h150"]
PHRASES = [
    "a photo of a red cup.",
    "blue ball",
    "the drawer handle",
    "pick up the green sponge",
    "a photo of a dog.",
    "an empty table",
    "a robot arm",
    "a person waving at the camera",
    "yellow rubber duck",
    "a blurry photo of a screwdriver.",
    "orange traffic cone",
    "a stack of white plates on a shelf",
]


def main() -> int:
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    torch.set_num_threads(2)
    manifest = cb.read_manifest(BUNDLE)
    assert manifest["source"] == {"kind": "random-init", "checkpoint": "tiny", "seed": 0}, manifest["source"]
    cb.verify_bundle_hashes(BUNDLE)
    model = cb.random_init_clip("tiny", 0)
    logit_scale = float(manifest["logit_scale"])  # what the engine reads (100.0)
    assert abs(logit_scale - float(model.logit_scale.exp().item())) < 1e-4
    proc = CLIPImageProcessorPil()
    with open(os.path.join(PREPROCESS, "manifest.json"), encoding="utf-8") as f:
        pre = {e["name"]: e for e in json.load(f)["images"]}

    for f in os.listdir(HERE):
        if f.endswith(".npy"):
            os.remove(os.path.join(HERE, f))

    # --- images -----------------------------------------------------------------------
    images, pixels = [], []
    for name in IMAGES:
        e = pre[name]
        pv = proc(images=Image.open(os.path.join(PREPROCESS, e["file"])), return_tensors="np")["pixel_values"]
        pv = np.ascontiguousarray(pv.astype(np.float32))
        assert pv.shape == (1, 3, 224, 224)
        if "pixel_values" in e:  # reuse the preprocess folder's file (identical bytes of data)
            npy = os.path.join("..", "preprocess", e["pixel_values"])
            assert np.array_equal(np.load(os.path.join(HERE, npy)), pv), name
        else:
            npy = f"{name}.pixel_values.npy"
            np.save(os.path.join(HERE, npy), pv)
        images.append({"name": name, "file": os.path.join("..", "preprocess", e["file"]), "pixel_values": npy})
        pixels.append(pv)
    pixel_batch = torch.from_numpy(np.concatenate(pixels))

    # --- phrases ------------------------------------------------------------------------
    tok = cb.open_clip_simple_tokenizer()
    ids = [cb.open_clip_ids(tok, p) for p in PHRASES]
    ids77 = torch.from_numpy(cb.pad_ids(ids, cb.CONTEXT_LENGTH))
    assert torch.equal(ids77, tok(PHRASES))  # open_clip's own zero-padded batch

    with torch.no_grad():
        img = cb.hf_image_features(model, pixel_batch)
        txt = cb.hf_text_features(model, ids77)
        # Cross-checks: export wrappers, real-length text, onnxruntime on the committed graphs.
        w = cb.wrappers()
        d_wrap_img = cb.max_abs_diff(w["HFImageEncoder"](model)(pixel_batch), img)
        d_wrap_txt = cb.max_abs_diff(w["HFTextEncoder"](model)(ids77), txt)
        real = max(len(r) for r in ids)
        d_short = cb.max_abs_diff(w["HFTextEncoder"](model)(ids77[:, :real]), txt)
    sess_i = cb.ort_session(os.path.join(BUNDLE, cb.IMAGE_FILE))
    sess_t = cb.ort_session(os.path.join(BUNDLE, cb.TEXT_FILE))
    d_ort_img = cb.max_abs_diff(sess_i.run(None, {cb.IMAGE_INPUT: pixel_batch.numpy()})[0], img)
    d_ort_txt77 = cb.max_abs_diff(sess_t.run(None, {cb.TEXT_INPUT: ids77.numpy()})[0], txt)
    d_ort_txt = cb.max_abs_diff(sess_t.run(None, {cb.TEXT_INPUT: ids77[:, :real].numpy()})[0], txt)
    checks = {"wrapper_image": d_wrap_img, "wrapper_text": d_wrap_txt, f"torch_text_L{real}_vs_L77": d_short,
              "onnxruntime_image": d_ort_img, "onnxruntime_text_L77": d_ort_txt77,
              f"onnxruntime_text_L{real}": d_ort_txt}
    for k, v in checks.items():
        print(f"max abs diff {k}: {v:.3g}")
    assert max(checks.values()) < 1e-4, checks

    # The int8 image encoder (models/quantize.py): onnxruntime is the reference implementation
    # of its integer ops (MatMulInteger, Round, Cast); the engine must match it.
    int8 = manifest["files"]["image_encoder_int8"]
    sess_q = cb.ort_session(os.path.join(BUNDLE, int8["path"]))
    img_q = sess_q.run(None, {cb.IMAGE_INPUT: pixel_batch.numpy()})[0]
    cos_q = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(img_q, img.numpy())]
    print(f"int8 (onnxruntime) vs fp32 (PyTorch) image embedding cosine: min {min(cos_q):.6f}")

    img_n = img / img.norm(dim=-1, keepdim=True)
    txt_n = txt / txt.norm(dim=-1, keepdim=True)
    cos = (img_n @ txt_n.T).double()
    probs = torch.softmax(logit_scale * cos, dim=-1)
    zero_shot, min_gap = [], float("inf")
    for i, name in enumerate(IMAGES):
        order = torch.argsort(cos[i], descending=True).tolist()
        gaps = [float(cos[i, order[k]] - cos[i, order[k + 1]]) for k in range(len(order) - 1)]
        min_gap = min(min_gap, min(gaps))
        zero_shot.append({"image": name, "ranking": order, "cosine": [float(c) for c in cos[i]],
                          "probabilities": [float(p) for p in probs[i]]})
    print(f"smallest cosine gap between neighbours in a ranking: {min_gap:.3g}")

    golden = {
        "model": os.path.relpath(BUNDLE, HERE),
        "model_files_sha256": {k: v["sha256"] for k, v in manifest["files"].items()},
        "logit_scale": logit_scale,
        "embed_dim": int(img.shape[-1]),
        "reference": "PyTorch transformers CLIPModel get_image_features / get_text_features (unnormalised); "
                     "pixel_values from CLIPImageProcessorPil defaults; ids from open_clip SimpleTokenizer, "
                     "zero-padded to 77",
        "max_abs_diff_checks": {k: float(f"{v:.3g}") for k, v in checks.items()},
        "int8_reference": "onnxruntime on files.image_encoder_int8 (form "
                          f"{manifest['quantization']['image_encoder_int8']['form']}), same pixel_values",
        "int8_vs_fp32_cosine_min": min(cos_q),
        "images": [dict(e, image_embeds=[float(x) for x in img[i]],
                        image_embeds_int8_onnxruntime=[float(x) for x in img_q[i]])
                   for i, e in enumerate(images)],
        "phrases": [{"text": p, "ids": ids[j], "text_embeds": [float(x) for x in txt[j]]}
                    for j, p in enumerate(PHRASES)],
        "zero_shot": zero_shot,
    }
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.join(HERE, 'golden.json')}: {len(images)} images, {len(PHRASES)} phrases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
