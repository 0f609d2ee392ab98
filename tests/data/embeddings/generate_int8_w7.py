#!/usr/bin/env python3
"""The tiny fixture's int8 image encoder with 7-bit weights, and onnxruntime's embeddings
from it, for tests/embeddings.rs (the 7-bit onnxruntime test).

    python3 tests/data/embeddings/generate_int8_w7.py
    # writes tiny_image_encoder_int8_w7.onnx, tiny_model_w7.yaml and int8_w7.json here

It imports the project's clip_tools package: install it first, from the repository root,
with `pip install -r models/requirements.txt`.

- A copy of tests/fixtures/tiny-clip is quantized by `models/quantize.py --weight-bits 7`
  (dynamic-symmetric, weights within -64..64, the range the engine's vpmaddubsw kernel runs
  exactly); its image_encoder_int8.onnx and model.yaml are stored here. The test puts them
  into a copy of the fixture bundle.
- For the six images of golden.json (their committed pixel_values .npy files): onnxruntime's
  embeddings from that graph (`image_embeds_int8_w7_onnxruntime`). golden.json's 8-bit
  onnxruntime embeddings of the same images stay the reference for the 8-bit graph.
- `weight_abs_max`: the largest |weight| over the graph's int8 weight initializers (must be
  <= 64).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from clip_tools import bundle as cb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUNDLE = os.path.join(ROOT, "tests", "fixtures", "tiny-clip")
ONNX_OUT = os.path.join(HERE, "tiny_image_encoder_int8_w7.onnx")
YAML_OUT = os.path.join(HERE, "tiny_model_w7.yaml")


def main() -> int:
    import onnx
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "tiny-clip")
        shutil.copytree(BUNDLE, bundle)
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "quantize.py"), bundle,
                        "--weight-bits", "7"], check=True)
        shutil.copyfile(os.path.join(bundle, "image_encoder_int8.onnx"), ONNX_OUT)
        shutil.copyfile(os.path.join(bundle, "model.yaml"), YAML_OUT)

    model = onnx.load(ONNX_OUT)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    weight_abs_max = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert weights and weight_abs_max <= 64, weight_abs_max

    golden = json.load(open(os.path.join(HERE, "golden.json")))
    session = cb.ort_session(ONNX_OUT)
    images = []
    for image in golden["images"]:
        pixels = np.load(os.path.join(HERE, image["pixel_values"])).astype(np.float32)
        emb = session.run(None, {cb.IMAGE_INPUT: pixels})[0][0]
        eight = np.array(image["image_embeds_int8_onnxruntime"], dtype=np.float32)
        print(f"{image['name']}: 7-bit vs 8-bit onnxruntime max abs diff {np.abs(emb - eight).max():.3g}")
        images.append({"name": image["name"], "pixel_values": image["pixel_values"],
                       "image_embeds_int8_w7_onnxruntime": [float(x) for x in emb]})
    out = {
        "reference": "onnxruntime on tiny_image_encoder_int8_w7.onnx (models/quantize.py "
                     "--weight-bits 7 of tests/fixtures/tiny-clip), the golden.json pixel_values",
        "onnxruntime": __import__("onnxruntime").__version__,
        "int8_weights": len(weights),
        "weight_abs_max": weight_abs_max,
        "images": images,
    }
    with open(os.path.join(HERE, "int8_w7.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {ONNX_OUT}, {YAML_OUT}, int8_w7.json ({len(weights)} int8 weights, |w| <= {weight_abs_max})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
