"""Add an int8 image encoder to a model bundle (image_encoder_int8.onnx + model.yaml).

    python3 models/quantize.py models/tabletop                       # dynamic-symmetric (default)
    python3 models/quantize.py DIR --form static-symmetric --calibration-images 'models/tabletop/eval/*.jpg'
    python3 models/quantize.py DIR --images 'models/tabletop/eval/*.jpg'   # accuracy measured on these

Only the matrix products with a constant 2-D weight (every Linear layer: q/k/v/out
projections, MLP fc1/fc2, the final projection; MatMul, or Gemm with a constant weight and
bias, whose bias then becomes an fp32 Add after the product) become integer products;
attention's activation-by-activation products, every convolution (ViTs' patch embedding;
all of a MobileCLIP FastViT tower's stem, RepMixer and ConvFFN layers, 1x1 ones included:
the engine's int8 path has no integer convolution), LayerNorm, softmax and GELU stay fp32
(quantizing every op costs far more accuracy than it saves time). The multiply-accumulates
of one image are counted per kind (integer products, fp32 convolutions, fp32 activation
products) and recorded as `macs_per_image` with the share that stays fp32. Weights are int8,
symmetric, one scale per output channel: within -64..64 (`--weight-bits 7`, the default) or
within -127..127 (`--weight-bits 8`). 7-bit weights are onnxruntime's `reduce_range` for CPUs
without VNNI: the Rust engine's AVX2 kernel then runs `vpmaddubsw` exactly (its int16 pair
sums cannot saturate), about 1.25x faster integer products than the exact widening kernel
that 8-bit weights need there; CPUs with AVX-512 VNNI run both at one speed. The accuracy
cost is small (tabletop: int8-vs-fp32 cosine min 0.99922 with 7 bits, 0.99857 with 8, the
same top-1 agreement; random-init ViT-B/32: 0.99971 and 0.99986); choose 8 for a robot
whose CPU has VNNI. Activations are int8, symmetric (zero point 0, so
no zero-point correction terms exist), and the form decides where their scale comes from:

  dynamic-symmetric  one scale per token row (its abs-max / 127), computed at run time:
                     no calibration, and an image's result does not depend on its batch.
  static-symmetric   one scale per tensor, fixed from calibration images (abs-max over them,
                     times a safety margin), clipped at run time; needs --calibration-images.

The quantized products are written as standard ONNX (Reshape, Abs, ReduceMax, Div, Mul,
Round, Clip, Cast, MatMulInteger), which onnxruntime and tract both run. Zero points are 0, so
there are no zero-point correction terms. Activations are flattened to [rows, K] so every
runtime sees one plain 2-D integer product (tract otherwise loops over the token axis). The
Rust engine recognises the dynamic-symmetric quantize and dequantize chains and runs each as
one fused op with the same arithmetic (src/fused/int8.rs; bit-identical results). The int8 graph is checked against the fp32 graph with
onnxruntime (embedding cosine; on --images, also zero-shot top-1 agreement is measured by the
benchmark), and the form, settings and accuracy are recorded in model.yaml under
`quantization:`. Images for the accuracy are preprocessed as the bundle's family reference
does (format 2: the manifest's `preprocess` section, clip_tools.families.bundle_pixels;
format 1: CLIP's bicubic shortest-edge crop), and the phrases tokenized and padded as its
`text` section says (clip_tools.families.bundle_text_ids).
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np

from clip_tools import bundle as cb
from clip_tools import families as fam
from clip_tools.log import log

FORMS = ("dynamic-symmetric", "static-symmetric")
INT8_FILE = "image_encoder_int8.onnx"
INT8_KEY = "image_encoder_int8"
# onnxruntime's `reduce_range`: see the module docstring.
DEFAULT_WEIGHT_BITS = 7


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="quantize.py", description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle folder with image_encoder.onnx and model.yaml")
    p.add_argument("--form", choices=FORMS, default="dynamic-symmetric")
    p.add_argument("--weight-bits", type=int, choices=(8, 7), default=DEFAULT_WEIGHT_BITS,
                   help="7 (default): weights within -64..64, exact on the engine's fast AVX2 kernel; "
                        "8: within -127..127, a little more accurate, as fast only on CPUs with VNNI")
    p.add_argument("--calibration-images", metavar="GLOB",
                   help="images whose activations fix the static scales (static-symmetric only)")
    p.add_argument("--calibration-limit", type=int, default=64, help="at most this many calibration images")
    p.add_argument("--margin", type=float, default=1.0,
                   help="static-symmetric: scale = margin * calibration abs-max / 127")
    p.add_argument("--images", metavar="GLOB", action="append",
                   help="images on which to measure int8-vs-fp32 embedding cosine (default: seeded random pixels); "
                        "may be given more than once")
    p.add_argument("--limit", type=int, default=64, help="at most this many accuracy images")
    p.add_argument("--phrases", metavar="'A; B; ...'",
                   help="with --images: also measure zero-shot top-1 agreement (int8 vs fp32) over these phrases")
    p.add_argument("--template", default="a photo of a {}.", help="prompt template for --phrases")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------
# Graph rewrite
# ---------------------------------------------------------------------------

def weight_matmuls(model) -> list:
    """The Linear layers: MatMul nodes whose second input is a rank-2 float initializer, and
    Gemm nodes (A not transposed) whose B is one and whose C is absent or a float initializer
    of N values (a bias per output column)."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}

    def float_init(name: str):
        t = inits.get(name)
        return t if t is not None and t.data_type == onnx.TensorProto.FLOAT else None

    out = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        w = float_init(node.input[1])
        if w is None or len(w.dims) != 2:
            continue
        if node.op_type == "Gemm":
            a = gemm_attrs(node)
            if a["transA"]:
                continue
            n = w.dims[0] if a["transB"] else w.dims[1]
            if len(node.input) > 2 and node.input[2]:
                c = float_init(node.input[2])
                if c is None or int(np.prod(c.dims)) != n or (len(c.dims) == 2 and c.dims[0] != 1):
                    continue
        out.append(node)
    return out


def gemm_attrs(node) -> dict:
    """A Gemm node's alpha, beta, transA, transB (ONNX defaults where absent)."""
    from onnx import helper

    a = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    a.update({x.name: helper.get_attribute_value(x) for x in node.attribute})
    return a


def weight_and_bias(node, inits: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The [K, N] fp32 weight of a weight_matmuls node, and its [N] bias (Gemm's beta * C)
    or None; Gemm's alpha is folded into the weight."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    if node.op_type != "Gemm":
        return w, None
    a = gemm_attrs(node)
    if a["transB"]:
        w = np.ascontiguousarray(w.T)
    if a["alpha"] != 1.0:
        w = (w * np.float32(a["alpha"])).astype(np.float32)
    if len(node.input) < 3 or not node.input[2]:
        return w, None
    c = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(-1)
    if a["beta"] != 1.0:
        c = (c * np.float32(a["beta"])).astype(np.float32)
    return w, c


def macs_per_image(fp32_path: Path, threads: int = 1) -> dict:
    """Multiply-accumulates of one image (batch 1) in the fp32 graph, per kind: the products
    quantize_graph makes integer (`int8_products`), convolutions (`fp32_conv`) and the other
    MatMul / Gemm (`fp32_matmul`: attention's activation-by-activation products), from the
    tensor shapes onnxruntime computes; `fp32_share` = the fp32 part of the total."""
    import onnx
    from onnx import helper

    model = onnx.load(str(fp32_path))
    targets = {n.output[0] for n in weight_matmuls(model)}
    nodes = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    wanted = sorted({n.output[0] for n in nodes} | {n.input[0] for n in nodes} | {n.input[1] for n in nodes})
    wanted = [t for t in wanted if t not in inits]
    have = {o.name for o in model.graph.output}
    for t in wanted:
        if t not in have:
            model.graph.output.append(helper.make_empty_tensor_value_info(t))
    size = int(model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value or 224)
    tmp = fp32_path.parent / ".macs.onnx"
    onnx.save(model, str(tmp))
    try:
        sess = cb.ort_session(tmp, threads)
        x = np.zeros((1, 3, size, size), np.float32)
        shapes = dict(zip(wanted, (v.shape for v in sess.run(wanted, {cb.IMAGE_INPUT: x}))))
    finally:
        tmp.unlink(missing_ok=True)
    shapes.update(inits)
    macs = {"int8_products": 0, "fp32_conv": 0, "fp32_matmul": 0}
    for n in nodes:
        out = int(np.prod(shapes[n.output[0]]))
        if n.op_type == "Conv":
            w = shapes[n.input[1]]  # [M, C / group, kh, kw]
            macs["fp32_conv"] += out * int(np.prod(w[1:]))
        else:
            a = gemm_attrs(n) if n.op_type == "Gemm" else {"transA": 0}
            k = shapes[n.input[0]][-2] if a["transA"] else shapes[n.input[0]][-1]
            macs["int8_products" if n.output[0] in targets else "fp32_matmul"] += out * int(k)
    total = sum(macs.values())
    out = {k: round(v / 1e6, 3) for k, v in macs.items()}
    out["unit"] = "million multiply-accumulates"
    out["fp32_share"] = round((macs["fp32_conv"] + macs["fp32_matmul"]) / total, 4) if total else 0.0
    return out


def weight_limit(bits: int) -> int:
    """Largest |value| of a quantized weight: 127 for 8 bits; 64 for 7 (the engine's
    vpmaddubsw kernel is exact when no two K-adjacent weights of a column sum past 128)."""
    return {8: 127, 7: 64}[bits]


def quantize_weight(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] fp32 -> ([K, N] int8, [N] fp32 scales): symmetric, per output channel."""
    limit = weight_limit(bits)
    amax = np.abs(w).max(axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(limit), 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -limit, limit).astype(np.int8)
    return q, scale


def quantize_graph(fp32_path: Path, out_path: Path, form: str,
                   static_amax: dict[str, float] | None = None, margin: float = 1.0,
                   weight_bits: int = DEFAULT_WEIGHT_BITS) -> dict:
    """Write the int8 form of `fp32_path` to `out_path`; returns facts for the manifest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")
    model = onnx.load(str(fp32_path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    targets = weight_matmuls(model)
    if not targets:
        raise SystemExit(f"{fp32_path}: no MatMul with a constant 2-D weight to quantize")
    if form == "static-symmetric":
        missing = [n.input[0] for n in targets if n.input[0] not in (static_amax or {})]
        if missing:
            raise SystemExit(f"static-symmetric: no calibration range for {missing[:3]}")

    new_inits: list = []
    const_names: set[str] = set()

    def const(name: str, array: np.ndarray) -> str:
        if name not in const_names:
            new_inits.append(numpy_helper.from_array(array, name))
            const_names.add(name)
        return name

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    # fp32 activation -> (its int8 tensor, its scale: a tensor name (dynamic) or a number (static))
    quantized_inputs: dict[str, tuple[str, str]] = {}
    replace: dict[int, list] = {}  # index of a target MatMul -> nodes replacing it
    n_weights = 0
    n_gemms = 0
    weight_bytes = [0, 0]
    for node in targets:
        x_in = node.input[0]
        w, bias = weight_and_bias(node, inits)
        k_dim, m_dim = w.shape
        pre: list = []
        if x_in not in quantized_inputs:
            # Flatten the activation to [rows, K] so every backend runs one plain 2-D
            # integer product (tract would otherwise loop over the token axis).
            p = f"{x_in}/q8"
            x = f"{p}/rows"
            pre.append(helper.make_node("Reshape", [x_in, const(f"q8/rows_{k_dim}", np.array([-1, k_dim], np.int64))],
                                        [x], name=f"{p}/Flatten"))
            pre.append(helper.make_node("Shape", [x_in], [f"{p}/shape"], name=f"{p}/Shape"))
            pre.append(helper.make_node("Slice", [f"{p}/shape", const("q8/zero", np.array([0], np.int64)),
                                                  const("q8/minus_one", np.array([-1], np.int64))],
                                        [f"{p}/lead"], name=f"{p}/Lead"))
            if form == "dynamic-symmetric":
                eps = const("q8/eps", np.array(1e-12, np.float32))
                c127 = const("q8/127", np.array(127.0, np.float32))
                pre.append(helper.make_node("Abs", [x], [f"{p}/abs"], name=f"{p}/Abs"))
                if opset >= 18:
                    axes = const("q8/axes_last", np.array([-1], np.int64))
                    pre.append(helper.make_node("ReduceMax", [f"{p}/abs", axes], [f"{p}/amax0"],
                                                name=f"{p}/ReduceMax", keepdims=1))
                else:
                    pre.append(helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/amax0"],
                                                name=f"{p}/ReduceMax", axes=[-1], keepdims=1))
                pre.append(helper.make_node("Max", [f"{p}/amax0", eps], [f"{p}/amax"], name=f"{p}/Max"))
                pre.append(helper.make_node("Div", [f"{p}/amax", c127], [f"{p}/scale"], name=f"{p}/Scale"))
                pre.append(helper.make_node("Div", [x, f"{p}/scale"], [f"{p}/scaled"], name=f"{p}/Div"))
                pre.append(helper.make_node("Round", [f"{p}/scaled"], [f"{p}/rounded"], name=f"{p}/Round"))
                # |x / scale| <= 127 by construction (scale is the row's own abs-max / 127).
                pre.append(helper.make_node("Cast", [f"{p}/rounded"], [f"{p}/int8"], name=f"{p}/Cast",
                                            to=TensorProto.INT8))
                quantized_inputs[x_in] = (f"{p}/int8", f"{p}/scale")
            else:
                scale = np.float32(max(static_amax[x_in] * margin, 1e-12) / 127.0)
                inv = const(f"{p}/inv_scale", np.array(1.0 / scale, np.float32))
                lo = const("q8/-127", np.array(-127.0, np.float32))
                hi = const("q8/127", np.array(127.0, np.float32))
                pre.append(helper.make_node("Mul", [x, inv], [f"{p}/scaled"], name=f"{p}/Mul"))
                pre.append(helper.make_node("Round", [f"{p}/scaled"], [f"{p}/rounded"], name=f"{p}/Round"))
                pre.append(helper.make_node("Clip", [f"{p}/rounded", lo, hi], [f"{p}/clipped"], name=f"{p}/Clip"))
                pre.append(helper.make_node("Cast", [f"{p}/clipped"], [f"{p}/int8"], name=f"{p}/Cast",
                                            to=TensorProto.INT8))
                quantized_inputs[x_in] = (f"{p}/int8", str(float(scale)))
        xq, xs = quantized_inputs[x_in]
        lead = f"{x_in}/q8/lead"
        wq, ws = quantize_weight(w, weight_bits)
        n_weights += 1
        weight_bytes[0] += w.nbytes
        weight_bytes[1] += wq.nbytes + ws.nbytes
        wq_name = const(f"{node.input[1]}/int8", wq)
        y = node.output[0]
        m = f"{node.name or y}/q8"
        nodes = pre + [
            helper.make_node("MatMulInteger", [xq, wq_name], [f"{m}/acc"], name=f"{m}/MatMulInteger"),
            helper.make_node("Cast", [f"{m}/acc"], [f"{m}/accf"], name=f"{m}/Cast", to=TensorProto.FLOAT),
        ]
        if form == "dynamic-symmetric":
            ws_name = const(f"{node.input[1]}/scale", ws)
            nodes.append(helper.make_node("Mul", [f"{m}/accf", ws_name], [f"{m}/wscaled"], name=f"{m}/MulW"))
            nodes.append(helper.make_node("Mul", [f"{m}/wscaled", xs], [f"{m}/rows"], name=f"{m}/MulX"))
        else:
            xscale = float(xs)  # static: the activation scale itself, a constant
            ws_name = const(f"{node.input[1]}/out_scale", (ws * np.float32(xscale)).astype(np.float32))
            nodes.append(helper.make_node("Mul", [f"{m}/accf", ws_name], [f"{m}/rows"], name=f"{m}/Mul"))
        nodes.append(helper.make_node("Concat", [lead, const(f"q8/cols_{m_dim}", np.array([m_dim], np.int64))],
                                      [f"{m}/shape"], name=f"{m}/OutShape", axis=0))
        if bias is None:
            nodes.append(helper.make_node("Reshape", [f"{m}/rows", f"{m}/shape"], [y], name=f"{m}/Unflatten"))
        else:
            # Gemm's bias, added after the product as a Linear layer's MatMul + Add does
            # (the engine fuses this Add into its int8 product).
            nodes.append(helper.make_node("Reshape", [f"{m}/rows", f"{m}/shape"], [f"{m}/unbiased"],
                                          name=f"{m}/Unflatten"))
            b_name = const(f"{node.input[2]}/bias", bias)
            nodes.append(helper.make_node("Add", [f"{m}/unbiased", b_name], [y], name=f"{m}/Bias"))
        n_gemms += node.op_type == "Gemm"
        replace[id(node)] = nodes

    new_nodes = []
    for node in graph.node:
        new_nodes.extend(replace.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)
    replaced = {i for n in targets for i in n.input[1:]}
    still_used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name not in replaced or t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    del graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out_path))
    return {
        "matmuls_quantized": n_weights,
        **({"of_which_gemm": n_gemms} if n_gemms else {}),
        "weight_bits": weight_bits,
        "weights_mb_fp32": round(weight_bytes[0] / 1e6, 2),
        "weights_mb_int8": round(weight_bytes[1] / 1e6, 2),
    }


# ---------------------------------------------------------------------------
# Calibration and accuracy
# ---------------------------------------------------------------------------

def load_pixels(patterns: str | list[str] | None, limit: int, manifest: dict,
                seed: int = 7) -> tuple[np.ndarray, str]:
    """Preprocessed images (format 1: CLIP pipeline, PIL bicubic; format 2: the family's
    reference pipeline, as the manifest's `preprocess` section says) or seeded random pixels."""
    size = int(manifest["image_size"])
    if not patterns:
        g = np.random.default_rng(seed)
        return g.standard_normal((16, 3, size, size)).astype(np.float32), "16 seeded random N(0,1) pixel tensors"
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern)})[:limit]
    pattern = " ".join(patterns)
    if not paths:
        raise SystemExit(f"no images match {pattern!r}")
    from PIL import Image

    if int(manifest.get("format_version", 1)) >= 2:
        pix = np.concatenate([fam.bundle_pixels(Image.open(p), manifest) for p in paths])
        how = ", ".join(str(v) for v in manifest["preprocess"].values())
        return pix, f"{len(paths)} images matching {pattern} (preprocessed: {how})"

    mean = np.array(manifest["image_mean"], np.float32).reshape(3, 1, 1)
    std = np.array(manifest["image_std"], np.float32).reshape(3, 1, 1)
    out = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        a = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
        out.append((a - mean) / std)
    return np.stack(out).astype(np.float32), f"{len(paths)} images matching {pattern}"


def calibrate(fp32_path: Path, pixels: np.ndarray, names: list[str], threads: int) -> dict[str, float]:
    """Abs-max of each named activation over the calibration images (fp32 graph)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(fp32_path))
    have = {o.name for o in model.graph.output}
    for n in names:
        if n not in have:
            model.graph.output.append(helper.make_empty_tensor_value_info(n))
    tmp = fp32_path.parent / ".calibration.onnx"
    onnx.save(model, str(tmp))
    try:
        sess = cb.ort_session(tmp, threads)
        amax = {n: 0.0 for n in names}
        for i in range(0, len(pixels), 8):
            outs = sess.run(names, {cb.IMAGE_INPUT: pixels[i:i + 8]})
            for n, v in zip(names, outs):
                amax[n] = max(amax[n], float(np.abs(v).max()))
    finally:
        tmp.unlink(missing_ok=True)
    return amax


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def top1_agreement(d: Path, manifest: dict, e32: np.ndarray, e8: np.ndarray, phrases: str, template: str,
                   threads: int) -> dict:
    """How many images get the same zero-shot top-1 phrase from the int8 and fp32 embeddings."""
    import re

    names = [p.strip() for p in re.split(r"[;\n]", phrases) if p.strip()]
    ids = fam.bundle_text_ids(d, manifest, [template.replace("{}", n) for n in names])
    text = cb.ort_session(d / manifest["files"]["text_encoder"]["path"], threads)
    t = text.run([cb.TEXT_OUTPUT], {cb.TEXT_INPUT: ids})[0].astype(np.float64)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    top32 = (e32 @ t.T).argmax(axis=1)
    top8 = (e8 @ t.T).argmax(axis=1)
    return {"agree": int((top32 == top8).sum()), "images": len(top32), "phrases": len(names),
            "distinct": len(set(top32.tolist()))}


def static_calibration(args, fp32: Path, manifest: dict) -> tuple[dict[str, float] | None, dict | None]:
    """static-symmetric: the abs-max of every quantized activation over the calibration
    images, and what model.yaml records about them; (None, None) for dynamic-symmetric."""
    if args.form == "static-symmetric":
        if not args.calibration_images:
            raise SystemExit("static-symmetric needs --calibration-images GLOB")
        import onnx

        cal, what = load_pixels(args.calibration_images, args.calibration_limit, manifest)
        names = sorted({n.input[0] for n in weight_matmuls(onnx.load(str(fp32), load_external_data=False))})
        log(f"calibrating {len(names)} activations on {what}")
        static_amax = calibrate(fp32, cal, names, args.threads)
        return static_amax, {"images": what, "method": "abs-max", "margin": args.margin}
    if args.calibration_images:
        log("note: dynamic-symmetric needs no calibration; --calibration-images ignored")
    return None, None


def measure_accuracy(args, d: Path, manifest: dict, fp32: Path, int8: Path) -> dict:
    """int8 vs fp32 image embedding cosine (onnxruntime) on --images or seeded random pixels,
    and with --phrases the zero-shot top-1 agreement; returns model.yaml's `accuracy`."""
    pixels, what = load_pixels(args.images, args.limit, manifest)
    s32 = cb.ort_session(fp32, args.threads)
    s8 = cb.ort_session(int8, args.threads)
    e32 = np.concatenate([s32.run([cb.IMAGE_OUTPUT], {cb.IMAGE_INPUT: pixels[i:i + 8]})[0]
                          for i in range(0, len(pixels), 8)])
    e8 = np.concatenate([s8.run([cb.IMAGE_OUTPUT], {cb.IMAGE_INPUT: pixels[i:i + 8]})[0]
                         for i in range(0, len(pixels), 8)])
    cos = cosine_rows(e32.astype(np.float64), e8.astype(np.float64))
    log(f"int8 vs fp32 embedding cosine on {what} (onnxruntime): min {cos.min():.5f} mean {cos.mean():.5f}")
    accuracy = {"measured_on": what, "engine": "onnxruntime",
                "cosine_vs_fp32_min": round(float(cos.min()), 5),
                "cosine_vs_fp32_mean": round(float(cos.mean()), 5)}
    if args.images and len(pixels) > 1:
        # The same cosine after removing the fp32 embeddings' mean over these images: what int8
        # changes in the part that differs between images (a random-weight tower's embeddings
        # share a large common direction that makes the plain cosine look better).
        unit32 = e32.astype(np.float64) / np.linalg.norm(e32.astype(np.float64), axis=1, keepdims=True)
        unit8 = e8.astype(np.float64) / np.linalg.norm(e8.astype(np.float64), axis=1, keepdims=True)
        mean = unit32.mean(axis=0, keepdims=True)
        centred = cosine_rows(unit32 - mean, unit8 - mean)
        log(f"  centred on the fp32 mean: min {centred.min():.5f} mean {centred.mean():.5f}")
        accuracy["centred_cosine_vs_fp32_min"] = round(float(centred.min()), 5)
        accuracy["centred_cosine_vs_fp32_mean"] = round(float(centred.mean()), 5)
    if args.phrases:
        agree = top1_agreement(d, manifest, e32, e8, args.phrases, args.template, args.threads)
        log(f"zero-shot top-1 agreement int8 vs fp32: {agree['agree']}/{agree['images']} over {agree['phrases']} phrases "
            f"({agree['distinct']} distinct fp32 top-1 phrases)")
        accuracy["top1_agreement"] = round(agree["agree"] / agree["images"], 5)
        accuracy["top1_phrases"] = agree["phrases"]
        accuracy["top1_distinct_fp32"] = agree["distinct"]
        accuracy["template"] = args.template
    return accuracy


def record_quantization(d: Path, form: str, calibration: dict | None, facts: dict, accuracy: dict) -> None:
    """Adds files.image_encoder_int8 and quantization.image_encoder_int8 to model.yaml."""
    cb.set_manifest_file(d, INT8_KEY, INT8_FILE, cb.IMAGE_INPUT, cb.IMAGE_OUTPUT)
    cb.set_manifest_section(d, "quantization", {
        INT8_KEY: {
            "form": form,
            "weights": (f"int8 symmetric, one scale per output channel, within "
                        f"-{weight_limit(facts['weight_bits'])}..{weight_limit(facts['weight_bits'])}"),
            "activations": ("int8 symmetric, one scale per token row, computed at run time"
                            if form == "dynamic-symmetric" else
                            "int8 symmetric, one scale per tensor from calibration, clipped"),
            "ops": ("MatMul with a constant 2-D weight -> MatMulInteger; everything else fp32"
                    if "of_which_gemm" not in facts else
                    "MatMul / Gemm with a constant 2-D weight -> MatMulInteger (Gemm's bias an fp32 Add); "
                    "everything else fp32 (convolutions included)"),
            "calibration": calibration,
            **facts,
            "accuracy": accuracy,
        }
    })


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    d = Path(args.bundle)
    manifest = cb.read_manifest(d)
    fp32 = d / manifest["files"]["image_encoder"]["path"]
    out = d / INT8_FILE
    static_amax, calibration = static_calibration(args, fp32, manifest)
    facts = quantize_graph(fp32, out, args.form, static_amax, args.margin, args.weight_bits)
    facts["macs_per_image"] = macs_per_image(fp32, args.threads)
    log(f"wrote {out}: {facts}")
    accuracy = measure_accuracy(args, d, manifest, fp32, out)
    record_quantization(d, args.form, calibration, facts, accuracy)
    cb.verify_bundle_hashes(d)
    log(f"updated {d / cb.MANIFEST_FILE} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
