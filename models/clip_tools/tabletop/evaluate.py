"""Zero-shot top-1 of the tabletop CLIP on models/tabletop/eval/ (make_eval.py), over ALL 64
"colour object" phrases with the template "a photo of a {}.", split into seen and held-out
compositions; in PyTorch (the trained checkpoint), optionally with onnxruntime (the bundle's
graphs) and from the Rust engine's `classify --json` output.

    # the 64 phrases, ';'-separated, for the engine's --labels
    python3 models/tabletop/evaluate.py --print-labels

    # PyTorch + onnxruntime
    python3 models/tabletop/evaluate.py --checkpoint models/.cache/tabletop/checkpoint \\
        --onnx models/tabletop --out models/.cache/tabletop/metrics.json

    # + the Rust engine's answers, and record everything in models/tabletop/model.yaml
    cargo run --release -- classify --model models/tabletop --precision fp32 --labels "$(python3 models/tabletop/evaluate.py --print-labels)" \\
        --json --top-k 1 --no-cache models/tabletop/eval/*.jpg > models/.cache/tabletop/rust.jsonl
    python3 models/tabletop/evaluate.py --checkpoint models/.cache/tabletop/checkpoint --onnx models/tabletop \\
        --rust-json models/.cache/tabletop/rust.jsonl --out models/.cache/tabletop/metrics.json --record models/tabletop

PyTorch and onnxruntime read the JPEGs with Pillow; at 224x224 the CLIP preprocessing
(bicubic shortest-edge resize, center crop) is the identity, then [0,1] and mean/std.
`--record` fails unless PyTorch and Rust agree within --max-gap points on both splits.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from clip_tools import bundle as cb
from clip_tools.paths import TABLETOP_DIR
from clip_tools.tabletop import scenes

TEMPLATE = "a photo of a {}."
PHRASES = [f"{c} {o}" for c, o in scenes.ALL_COMPOSITIONS]


def load_eval(eval_dir: Path) -> list[dict]:
    with open(eval_dir / "labels.csv", newline="") as f:
        return [dict(r, phrase=f"{r['colour']} {r['object']}") for r in csv.DictReader(f)]


def pixel_values(path: Path, size: int, mean, std) -> np.ndarray:
    """CLIP preprocessing with Pillow: bicubic shortest-edge resize, center crop, [0,1], mean/std."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        l, t = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        im = im.crop((l, t, l + size, t + size))
    x = np.asarray(im, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)


def token_ids(texts) -> np.ndarray:
    tok = cb.open_clip_simple_tokenizer()
    rows = [cb.open_clip_ids(tok, t) for t in texts]
    return cb.pad_ids(rows, max(len(r) for r in rows))


def predict(image_feats: np.ndarray, text_feats: np.ndarray) -> list[str]:
    i = image_feats / np.linalg.norm(image_feats, axis=1, keepdims=True)
    t = text_feats / np.linalg.norm(text_feats, axis=1, keepdims=True)
    return [PHRASES[k] for k in (i @ t.T).argmax(1)]


def pytorch_predictions(checkpoint: Path, rows, eval_dir: Path, threads: int) -> list[str]:
    import torch
    from transformers import CLIPModel

    torch.set_num_threads(threads)
    model = CLIPModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    size = model.config.vision_config.image_size
    with torch.no_grad():
        t = cb.hf_text_features(model, torch.from_numpy(token_ids([TEMPLATE.format(p) for p in PHRASES]))).numpy()
        feats = []
        for s in range(0, len(rows), 64):
            x = np.stack([pixel_values(eval_dir / r["file"], size, cb.OPENAI_CLIP_MEAN, cb.OPENAI_CLIP_STD)
                          for r in rows[s:s + 64]])
            feats.append(cb.hf_image_features(model, torch.from_numpy(x)).numpy())
    return predict(np.concatenate(feats), t)


def probe(checkpoint: Path, rows, eval_dir: Path, threads: int) -> dict:
    """Where compositions fail, from the PyTorch checkpoint: 8-way zero-shot over the object
    kinds alone ("a photo of a cup.") and over the colours alone ("a photo of something
    red."), and kinds on greyscale copies of the images (ITU-R 601 luminance, "a black and
    white photo of a cup."). A model whose shape features do not depend on colour names the
    kind of a held-out composition about as well as a seen one."""
    import torch
    from transformers import CLIPModel

    torch.set_num_threads(threads)
    model = CLIPModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    size = model.config.vision_config.image_size
    mean, std = np.asarray(cb.OPENAI_CLIP_MEAN, np.float32), np.asarray(cb.OPENAI_CLIP_STD, np.float32)
    luma = np.asarray(scenes.LUMA_601, np.float32)

    def texts(t):
        with torch.no_grad():
            f = cb.hf_text_features(model, torch.from_numpy(token_ids(t))).numpy()
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    def images(gray: bool):
        feats = []
        for s in range(0, len(rows), 64):
            x = np.stack([pixel_values(eval_dir / r["file"], size, cb.OPENAI_CLIP_MEAN, cb.OPENAI_CLIP_STD)
                          for r in rows[s:s + 64]])
            if gray:  # back to [0, 1], luminance, rounded to 8 bits as the training greyscale
                raw = x.transpose(0, 2, 3, 1) * std + mean
                lum = np.round(np.clip(raw @ luma, 0, 1) * 255) / 255
                x = ((lum[..., None] - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
            with torch.no_grad():
                feats.append(cb.hf_image_features(model, torch.from_numpy(x)).numpy())
        f = np.concatenate(feats)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    colour_img, gray_img = images(False), images(True)
    out = {}
    for name, img, words, field, template in (
            ("kind", colour_img, scenes.OBJECTS, "object", "a photo of a {}."),
            ("colour", colour_img, scenes.COLOUR_NAMES, "colour", "a photo of something {}."),
            ("kind_greyscale", gray_img, scenes.OBJECTS, "object", "a black and white photo of a {}.")):
        pred = (img @ texts([template.format(w) for w in words]).T).argmax(1)
        for split in ("seen", "heldout"):
            idx = [i for i, r in enumerate(rows) if r["split"] == split]
            out[f"{name}_{split}"] = round(100.0 * sum(words[pred[i]] == rows[i][field] for i in idx) / len(idx), 2)
    return out


def onnx_predictions(bundle: Path, rows, eval_dir: Path, threads: int) -> list[str]:
    m = cb.read_manifest(bundle)
    f = m["files"]
    img = cb.ort_session(bundle / f["image_encoder"]["path"], threads)
    txt = cb.ort_session(bundle / f["text_encoder"]["path"], threads)
    t = txt.run(None, {f["text_encoder"]["input"]: token_ids([TEMPLATE.format(p) for p in PHRASES])})[0]
    feats = []
    for s in range(0, len(rows), 64):
        x = np.stack([pixel_values(eval_dir / r["file"], m["image_size"], m["image_mean"], m["image_std"])
                      for r in rows[s:s + 64]])
        feats.append(img.run(None, {f["image_encoder"]["input"]: x})[0])
    return predict(np.concatenate(feats), t)


def rust_predictions(path: Path, rows) -> list[str]:
    """Top-1 labels from `classify --json --top-k 1` (one JSON object per image)."""
    by_file = {}
    for line in path.read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            by_file[Path(obj["image"]).name] = obj["top"][0]["label"]
    missing = [r["file"] for r in rows if r["file"] not in by_file]
    if missing:
        raise SystemExit(f"{path}: no answer for {len(missing)} eval images, e.g. {missing[:3]}")
    return [by_file[r["file"]] for r in rows]


def accuracy(rows, preds) -> dict:
    out = {}
    for split in ("seen", "heldout"):
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        out[split] = round(100.0 * sum(preds[i] == rows[i]["phrase"] for i in idx) / len(idx), 2)
        out[f"{split}_colour"] = round(100.0 * sum(preds[i].split()[0] == rows[i]["colour"] for i in idx) / len(idx), 2)
        out[f"{split}_object"] = round(100.0 * sum(preds[i].split()[1] == rows[i]["object"] for i in idx) / len(idx), 2)
    return out


def per_composition(rows, preds) -> dict:
    res: dict[str, list[int]] = {}
    for r, p in zip(rows, preds):
        res.setdefault(r["phrase"], []).append(int(p == r["phrase"]))
    return {k: round(100.0 * sum(v) / len(v), 1) for k, v in res.items()}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--print-labels", action="store_true", help="print the 64 phrases joined by ';' and exit")
    p.add_argument("--eval-dir", default=str(TABLETOP_DIR / "eval"))
    p.add_argument("--checkpoint", help="transformers CLIPModel folder (train.py output)")
    p.add_argument("--onnx", metavar="BUNDLE", help="also evaluate the bundle's ONNX graphs with onnxruntime")
    p.add_argument("--rust-json", metavar="FILE", help="output of the engine's `classify --json --top-k 1`")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--record", metavar="BUNDLE", help="write the metrics into BUNDLE/model.yaml under `metrics:`")
    p.add_argument("--probe", action="store_true",
                   help="with --checkpoint: also 8-way kind-only / colour-only zero-shot, and kinds on greyscale copies")
    p.add_argument("--max-gap", type=float, default=1.0, help="points PyTorch and Rust may differ (default 1)")
    p.add_argument("--threads", type=int, default=2)
    return p


def all_predictions(a, rows, eval_dir: Path) -> dict[str, list[str]]:
    """Top-1 phrase per eval image from each engine asked for (pytorch, onnxruntime, rust)."""
    preds: dict[str, list[str]] = {}
    if a.checkpoint:
        preds["pytorch"] = pytorch_predictions(Path(a.checkpoint), rows, eval_dir, a.threads)
    if a.onnx:
        preds["onnxruntime"] = onnx_predictions(Path(a.onnx), rows, eval_dir, a.threads)
    if a.rust_json:
        preds["rust"] = rust_predictions(Path(a.rust_json), rows)
    return preds


def metrics_of(a, p: argparse.ArgumentParser, rows, eval_dir: Path, preds: dict[str, list[str]]) -> dict:
    """Accuracy per engine and split, agreement with PyTorch, the optional probe and the
    per-composition results of the first engine; printed as they are computed."""
    n_seen = sum(r["split"] == "seen" for r in rows)
    results: dict[str, dict] = {}
    for k, v in preds.items():
        results[k] = accuracy(rows, v)
    print(f"{'engine':<12} {'seen':>7} {'held-out':>9}   ({n_seen} seen, {len(rows) - n_seen} held-out images, "
          f"64 phrases, template {TEMPLATE!r})")
    for k, v in results.items():
        print(f"{k:<12} {v['seen']:>6.2f}% {v['heldout']:>8.2f}%")
    metrics = {"template": TEMPLATE, "labels": len(PHRASES), "eval_images_seen": n_seen,
               "eval_images_heldout": len(rows) - n_seen, "results": results}
    ref = preds.get("pytorch")
    for k in ("onnxruntime", "rust"):
        if ref is not None and k in preds:
            agree = sum(x == y for x, y in zip(ref, preds[k]))
            metrics[f"top1_agreement_pytorch_vs_{k}"] = f"{agree}/{len(rows)}"
            print(f"top-1 agreement PyTorch vs {k}: {agree}/{len(rows)}")
    if a.probe:
        if not a.checkpoint:
            p.error("--probe needs --checkpoint")
        metrics["probe_pytorch"] = pr = probe(Path(a.checkpoint), rows, eval_dir, a.threads)
        print("probe (PyTorch, 8-way, seen / held-out): "
              + ", ".join(f"{k} {pr[k + '_seen']:.1f}% / {pr[k + '_heldout']:.1f}%" for k in ("kind", "colour", "kind_greyscale")))
    first = next(iter(preds))
    metrics["per_composition_" + first] = per_composition(rows, preds[first])
    held = [f"{c} {o}" for c, o in scenes.HELD_OUT]
    print("held-out compositions (" + first + "): " + ", ".join(f"{h} {metrics['per_composition_' + first][h]:.0f}%" for h in held))
    return metrics


def record_metrics(a, p: argparse.ArgumentParser, metrics: dict) -> None:
    """--record: the zero-shot results into BUNDLE/model.yaml under `metrics:`, only when
    PyTorch and Rust agree within --max-gap points on both splits."""
    results = metrics["results"]
    if "pytorch" not in results or "rust" not in results:
        p.error("--record needs both --checkpoint and --rust-json")
    for split in ("seen", "heldout"):
        gap = abs(results["pytorch"][split] - results["rust"][split])
        if gap > a.max_gap:
            raise SystemExit(f"PyTorch and Rust differ by {gap:.2f} points on {split} (> {a.max_gap}): not recording")
    rec = {
        "template": TEMPLATE, "labels": len(PHRASES),
        "colours": list(scenes.COLOUR_NAMES), "objects": list(scenes.OBJECTS),
        "held_out": [f"{c} {o}" for c, o in scenes.HELD_OUT], "eval_dir": "eval",
        "eval_images_seen": metrics["eval_images_seen"], "eval_images_heldout": metrics["eval_images_heldout"],
        "zero_shot_top1_seen_pytorch": results["pytorch"]["seen"],
        "zero_shot_top1_heldout_pytorch": results["pytorch"]["heldout"],
        "zero_shot_top1_seen_rust": results["rust"]["seen"],
        "zero_shot_top1_heldout_rust": results["rust"]["heldout"],
    }
    if "onnxruntime" in results:
        rec["zero_shot_top1_seen_onnxruntime"] = results["onnxruntime"]["seen"]
        rec["zero_shot_top1_heldout_onnxruntime"] = results["onnxruntime"]["heldout"]
    rec["top1_agreement_pytorch_vs_rust"] = metrics["top1_agreement_pytorch_vs_rust"]
    path = cb.set_manifest_section(a.record, "metrics", rec)
    print(f"recorded metrics in {path}")


def main(argv=None) -> int:
    p = make_parser()
    a = p.parse_args(argv)
    if a.print_labels:
        print(";".join(PHRASES))
        return 0
    eval_dir = Path(a.eval_dir)
    rows = load_eval(eval_dir)
    preds = all_predictions(a, rows, eval_dir)
    if not preds:
        p.error("nothing to evaluate: give --checkpoint, --onnx and/or --rust-json")
    metrics = metrics_of(a, p, rows, eval_dir, preds)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(metrics, indent=1))
    if a.record:
        record_metrics(a, p, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
