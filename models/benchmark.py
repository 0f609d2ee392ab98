#!/usr/bin/env python3
"""Encoder latency benchmark: tract (the Rust engine, via the `clip_bench` binary) versus
onnxruntime on the SAME ONNX files, in one run, with ratios.

    python3 models/benchmark.py                      # random-init ViT-B/32, exported on first use
    python3 models/benchmark.py --model DIR          # any bundle
    python3 models/benchmark.py --rounds 3 --runs 10 # medians over rounds x runs

Cases: image encoder at batch 1 and 8, text encoder at the full 77-token context and at the
phrase's real token length, each with 1 and 2 threads. Engines alternate round by round
(onnxruntime, then tract, then onnxruntime, ...) so drift on a shared machine hits both;
every number is the median over all timed runs of all rounds. Timing is wall clock per call
after warm-up. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import clip_bundle as cb  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_model(args) -> Path:
    if args.model:
        return Path(args.model)
    out = ROOT / "models" / ".cache" / "random-vit-b-32-seed0"
    if not (out / "model.yaml").exists():
        log(f"exporting random-init ViT-B/32 to {out} (once)")
        subprocess.run([sys.executable, str(HERE / "export.py"), "--random-init", "--arch", "vit-b-32",
                        "--seed", "0", "--out", str(out)], check=True)
    return out


def tract_round(binary: str, model: Path, args) -> list[dict]:
    cmd = [binary, "--model", str(model), "--batches", args.batches, "--threads", args.threads,
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--phrase", args.phrase]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def ort_round(model: Path, args, tokenizer) -> list[dict]:
    import numpy as np
    manifest = cb.read_manifest(model)
    s = int(manifest["image_size"])
    ctx = int(manifest["context_length"])
    ids = cb.open_clip_ids(tokenizer, args.phrase, ctx)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        image = cb.ort_session(model / manifest["files"]["image_encoder"]["path"], threads=threads)
        text = cb.ort_session(model / manifest["files"]["text_encoder"]["path"], threads=threads)
        for batch in [int(b) for b in args.batches.split(",")]:
            rng = np.random.default_rng(0)
            pixels = rng.uniform(-2, 2, size=(batch, 3, s, s)).astype(np.float32)
            rows.append(dict(engine="onnxruntime", encoder="image", batch=batch, threads=threads,
                             **time_calls(lambda: image.run(None, {"pixel_values": pixels}), args)))
            for length in (ctx, len(ids)):
                feed = cb.pad_ids([ids] * batch, length)
                rows.append(dict(engine="onnxruntime", encoder="text", batch=batch, threads=threads, tokens=length,
                                 **time_calls(lambda: text.run(None, {"input_ids": feed}), args)))
    return rows


def time_calls(fn, args) -> dict:
    for _ in range(args.warmup):
        fn()
    ms = []
    for _ in range(args.runs):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return {"samples": ms}


def key(row: dict) -> tuple:
    return (row["encoder"], row["batch"], row["threads"], row.get("tokens", 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="bundle folder (default: random-init ViT-B/32, exported once under models/.cache)")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "clip_bench"),
                   help="the clip_bench binary (built with `cargo build --release --bin clip_bench` if missing)")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--phrase", default="a photo of a red cup")
    p.add_argument("--json", help="also write all samples and medians to this file")
    args = p.parse_args()

    model = ensure_model(args)
    if not Path(args.binary).exists():
        log("building clip_bench (release)")
        subprocess.run(["cargo", "build", "--release", "--bin", "clip_bench"], cwd=ROOT, check=True)
    import onnxruntime
    tokenizer = cb.open_clip_simple_tokenizer()

    samples: dict[tuple, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}: onnxruntime")
        for row in ort_round(model, args, tokenizer):
            samples.setdefault(key(row), {}).setdefault("onnxruntime", []).extend(row["samples"])
        log(f"round {r + 1}/{args.rounds}: tract")
        for row in tract_round(args.binary, model, args):
            samples.setdefault(key(row), {}).setdefault("tract", []).extend(row["samples_ms"])

    manifest = cb.read_manifest(model)
    print(f"model: {manifest['name']} ({model}); onnxruntime {onnxruntime.__version__}; "
          f"{args.rounds} rounds x {args.runs} runs, medians in ms")
    print(f"{'encoder':<8} {'batch':>5} {'thr':>3} {'tokens':>6} {'tract':>9} {'ort':>9} {'tract/ort':>9}")
    med = {k: {e: statistics.median(v) for e, v in d.items()} for k, d in samples.items()}
    for k in sorted(med):
        enc, batch, thr, tok = k
        t, o = med[k].get("tract"), med[k].get("onnxruntime")
        print(f"{enc:<8} {batch:>5} {thr:>3} {tok or '':>6} {t:>9.2f} {o:>9.2f} {t / o:>9.2f}")
    ctx = int(manifest["context_length"])
    print("\ntext encoder, full context vs real token length (tract):")
    for k in sorted(med):
        enc, batch, thr, tok = k
        if enc == "text" and tok != ctx:
            full = med[("text", batch, thr, ctx)]["tract"]
            print(f"  batch {batch} threads {thr}: {ctx} tokens {full:.2f} ms, {tok} tokens {med[k]['tract']:.2f} ms"
                  f" -> {full / med[k]['tract']:.1f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": {str(k): v for k, v in med.items()}}, indent=1))


if __name__ == "__main__":
    main()
