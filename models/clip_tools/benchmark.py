"""Encoder latency benchmark: tract (the Rust engine, via the `clip_bench` binary) versus
onnxruntime, fp32 and int8, in one run, with ratios; plus int8 accuracy versus fp32.

    python3 models/benchmark.py                      # random-init ViT-B/32, exported (and quantized) on first use
    python3 models/benchmark.py --model DIR          # any bundle
    python3 models/benchmark.py --rounds 3 --runs 10 # medians over rounds x runs
    python3 models/benchmark.py --weight-bits 8      # the int8 graph with 8-bit weights (quantize.py --weight-bits 8)

Cases: image encoder fp32 and int8 at batch 1 and 8, text encoder at the full 77-token
context and at the phrase's real token length, each with 1 and 2 threads. tract runs the
bundle's graphs (image_encoder.onnx, image_encoder_int8.onnx from models/quantize.py);
onnxruntime runs the same fp32 graph and, for int8, the graph onnxruntime's own
`quantize_dynamic` makes of it (MatMul only, int8 weights: onnxruntime's fastest int8 form;
it runs the bundle's int8 graph too, slower). The engines alternate group by group (one
encoder, precision and thread count: onnxruntime's runs, then tract's, or the other way
round in odd rounds), so the two sides of a ratio are timed seconds apart, and drift on a
shared machine (up to 40% within a minute on a 2-vCPU cloud machine) hits both alike; every
number is the median over all timed runs of all rounds. Timing is wall clock per call after
warm-up. Run it on an otherwise idle machine.

Accuracy (the Rust engine, `clip_perception embed-image` / `classify`): int8 vs fp32 image
embedding cosine on evaluation images for the benchmarked model, and on the default model
(models/tabletop) its evaluation set's cosine and zero-shot top-1 agreement over its 64
phrases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from clip_tools import bundle as cb
from clip_tools.log import log
from clip_tools.paths import CACHE_DIR, MODELS_DIR, REPO_ROOT, TABLETOP_DIR, TARGET_RELEASE
from clip_tools.quantize import DEFAULT_WEIGHT_BITS


def ensure_model(args) -> Path:
    if args.model:
        return Path(args.model)
    out = CACHE_DIR / "random-vit-b-32-seed0"
    if not (out / "model.yaml").exists():
        log(f"exporting random-init ViT-B/32 to {out} (once)")
        subprocess.run([sys.executable, str(MODELS_DIR / "export.py"), "--random-init", "--arch", "vit-b-32",
                        "--seed", "0", "--out", str(out)], check=True)
    if args.weight_bits != 8:
        # The same fp32 export, quantized with narrower weights in a folder of its own.
        base, out = out, CACHE_DIR / f"random-vit-b-32-seed0-w{args.weight_bits}"
        if not (out / "model.yaml").exists():
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out)
    manifest = cb.read_manifest(out)
    int8 = manifest.get("quantization", {}).get("image_encoder_int8", {})
    if "image_encoder_int8" not in manifest["files"] or int8.get("weight_bits", 8) != args.weight_bits:
        log(f"quantizing {out} (once)")
        subprocess.run([sys.executable, str(MODELS_DIR / "quantize.py"), str(out),
                        "--weight-bits", str(args.weight_bits)], check=True)
    return out


def ort_int8_graph(model: Path, ops: tuple[str, ...] = ("MatMul",), cache: Path | None = None) -> Path:
    """onnxruntime's own dynamic int8 form (int8 weights, `ops` quantized) of the bundle's fp32
    image encoder, cached under `cache` (default models/.cache/ort-int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    entry = cb.read_manifest(model)["files"]["image_encoder"]
    suffix = "" if tuple(ops) == ("MatMul",) else "-" + "-".join(ops).lower()
    out = (cache or CACHE_DIR / "ort-int8") / f"{entry['sha256'][:16]}{suffix}.onnx"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        log(f"onnxruntime quantize_dynamic ({', '.join(ops)}) -> {out} (once)")
        tmp = out.with_suffix(".tmp.onnx")
        quantize_dynamic(str(model / entry["path"]), str(tmp), op_types_to_quantize=list(ops),
                         weight_type=QuantType.QInt8)
        tmp.rename(out)
    return out


def groups(args) -> list[tuple[str, str, int]]:
    """The measurement groups, (encoder, precision, threads): each is timed on both engines
    back to back."""
    out = []
    for threads in [int(t) for t in args.threads.split(",")]:
        out += [("image", precision, threads) for precision in args.precision.split(",")]
        out.append(("text", "fp32", threads))
    return out


def tract_group(binary: str, model: Path, args, group: tuple[str, str, int]) -> list[dict]:
    encoder, precision, threads = group
    cmd = [binary, "--model", str(model), "--batches", args.batches, "--threads", str(threads),
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--phrase", args.phrase,
           "--precision", precision, "--skip-text" if encoder == "image" else "--skip-image"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def ort_group(model: Path, args, tokenizer, group: tuple[str, str, int]) -> list[dict]:
    import numpy as np
    encoder, precision, threads = group
    manifest = cb.read_manifest(model)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    if encoder == "image":
        s = int(manifest["image_size"])
        graph = model / manifest["files"]["image_encoder"]["path"] if precision == "fp32" else ort_int8_graph(model)
        image = cb.ort_session(graph, threads=threads)
        for batch in batches:
            rng = np.random.default_rng(0)
            pixels = rng.uniform(-2, 2, size=(batch, 3, s, s)).astype(np.float32)
            rows.append(dict(engine="onnxruntime", encoder="image", precision=precision, batch=batch,
                             threads=threads, **time_calls(lambda: image.run(None, {"pixel_values": pixels}), args)))
        return rows
    ctx = int(manifest["context_length"])
    ids = cb.open_clip_ids(tokenizer, args.phrase, ctx)
    text = cb.ort_session(model / manifest["files"]["text_encoder"]["path"], threads=threads)
    for batch in batches:
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
    return (row["encoder"], row.get("precision", "fp32"), row["batch"], row["threads"], row.get("tokens", 0))


def cli_json(args, *cmd) -> list[dict]:
    out = subprocess.run([args.cli, *cmd, "--json"], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cosines(args, model: Path, images: list[str], threads: str) -> list[float]:
    """int8 vs fp32 image embedding cosine per image, from the Rust engine."""
    import numpy as np

    emb = {}
    for precision in ("fp32", "int8"):
        rows = cli_json(args, "embed-image", "--model", str(model), "--precision", precision, "--threads", threads,
                        *images)
        emb[precision] = np.array([r["embedding"] for r in rows], dtype=np.float64)
    a, b = emb["fp32"], emb["int8"]
    return list((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def accuracy(args, model: Path) -> None:
    import glob

    from clip_tools.tabletop.evaluate import PHRASES

    eval_images = sorted(glob.glob(str(TABLETOP_DIR / "eval" / "*.jpg")))
    some = eval_images[: args.accuracy_images]
    c = cosines(args, model, some, "2")
    print(f"\nint8 vs fp32, {model.name}, {len(some)} tabletop eval images (Rust engine): "
          f"embedding cosine min {min(c):.5f}, mean {sum(c) / len(c):.5f}")
    tabletop = TABLETOP_DIR
    c = cosines(args, tabletop, eval_images, "2")
    labels = ";".join(PHRASES)  # what `models/tabletop/evaluate.py --print-labels` prints
    top = {}
    for precision in ("fp32", "int8"):
        rows = cli_json(args, "classify", "--model", str(tabletop), "--precision", precision, "--threads", "2",
                        "--labels", labels, "--top-k", "1", "--no-cache", *eval_images)
        top[precision] = [r["top"][0]["label"] for r in rows]
    agree = sum(a == b for a, b in zip(top["fp32"], top["int8"]))
    print(f"int8 vs fp32, default model (tabletop), {len(eval_images)} eval images: embedding cosine min "
          f"{min(c):.5f}, mean {sum(c) / len(c):.5f}; zero-shot top-1 agreement over "
          f"{len(labels.split(';'))} phrases {agree}/{len(eval_images)} = {100 * agree / len(eval_images):.2f}%")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="bundle folder (default: random-init ViT-B/32, exported once under models/.cache)")
    p.add_argument("--binary", default=str(TARGET_RELEASE / "clip_bench"),
                   help="the clip_bench binary (built with `cargo build --release --bin clip_bench` if missing)")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--phrase", default="a photo of a red cup")
    p.add_argument("--precision", default="fp32,int8", help="image encoder precisions")
    p.add_argument("--cli", default=str(TARGET_RELEASE / "clip_perception"),
                   help="the clip_perception binary, for the accuracy figures")
    p.add_argument("--accuracy-images", type=int, default=32,
                   help="tabletop eval images for the benchmarked model's int8 cosine (0: skip accuracy)")
    p.add_argument("--json", help="also write all samples and medians to this file")
    p.add_argument("--ort-profile", action="store_true",
                   help="instead of the timings: onnxruntime's time per operator type of its int8 image "
                        "graph at each batch and thread count (its own profiler; beside "
                        "`clip_bench --profile`, where the two engines' milliseconds go)")
    p.add_argument("--weight-bits", type=int, choices=(8, 7), default=DEFAULT_WEIGHT_BITS,
                   help="default model only: int8 weights of 7 bits (quantize.py's default), or 8")
    return p.parse_args(argv)


def run_rounds(args, model: Path, tokenizer) -> tuple[dict[tuple, dict[str, list[float]]], dict]:
    """Timed samples per case and engine, the engines alternating group by group; and
    clip_bench's line naming the CPU, its extensions and the engine's kernels on it."""
    samples: dict[tuple, dict[str, list[float]]] = {}
    machine: dict = {}

    def ort(group):
        for row in ort_group(model, args, tokenizer, group):
            samples.setdefault(key(row), {}).setdefault("onnxruntime", []).extend(row["samples"])

    def tract(group):
        for row in tract_group(args.binary, model, args, group):
            if "cpu" in row:
                machine.update(row)
                continue
            samples.setdefault(key(row), {}).setdefault("tract", []).extend(row["samples_ms"])

    if "int8" in args.precision.split(","):
        ort_int8_graph(model)  # made once, before any timing
    for r in range(args.rounds):
        for group in groups(args):
            encoder, precision, threads = group
            log(f"round {r + 1}/{args.rounds}: {encoder} {precision if encoder == 'image' else ''} "
                f"{threads} thread(s)")
            for engine in ((ort, tract) if r % 2 == 0 else (tract, ort)):
                engine(group)
    return samples, machine


def print_image_table(med: dict) -> None:
    def get(enc, prec, batch, thr, tok, engine):
        return med.get((enc, prec, batch, thr, tok), {}).get(engine, float("nan"))

    print("\nimage encoder (ort int8 = onnxruntime quantize_dynamic of the same fp32 graph)")
    print(f"{'batch':>5} {'thr':>3} {'tract fp32':>10} {'tract int8':>10} {'ort fp32':>9} {'ort int8':>9} "
          f"{'int8/fp32':>9} {'int8/ort8':>9} {'fp32/ort32':>10}")
    for b, t in sorted({(k[2], k[3]) for k in med if k[0] == "image"}):
        tf, ti = get("image", "fp32", b, t, 0, "tract"), get("image", "int8", b, t, 0, "tract")
        of, oi = get("image", "fp32", b, t, 0, "onnxruntime"), get("image", "int8", b, t, 0, "onnxruntime")
        print(f"{b:>5} {t:>3} {tf:>10.2f} {ti:>10.2f} {of:>9.2f} {oi:>9.2f} {ti / tf:>9.2f} {ti / oi:>9.2f} "
              f"{tf / of:>10.2f}")


def print_text_tables(med: dict, ctx: int) -> None:
    print("\ntext encoder (fp32)")
    print(f"{'batch':>5} {'thr':>3} {'tokens':>6} {'tract':>9} {'ort':>9} {'tract/ort':>9}")
    for k in sorted(k for k in med if k[0] == "text"):
        _, _, batch, thr, tok = k
        t, o = med[k].get("tract", float("nan")), med[k].get("onnxruntime", float("nan"))
        print(f"{batch:>5} {thr:>3} {tok:>6} {t:>9.2f} {o:>9.2f} {t / o:>9.2f}")
    print("\ntext encoder, full context vs real token length (tract):")
    for k in sorted(med):
        enc, _, batch, thr, tok = k
        if enc == "text" and tok != ctx:
            full = med[("text", "fp32", batch, thr, ctx)]["tract"]
            print(f"  batch {batch} threads {thr}: {ctx} tokens {full:.2f} ms, {tok} tokens {med[k]['tract']:.2f} ms"
                  f" -> {full / med[k]['tract']:.1f}x faster")


def ort_profile(model: Path, args) -> None:
    """onnxruntime's own per-op profile of its int8 image graph (ms per pass, by op type)."""
    import collections
    import tempfile

    import numpy as np
    import onnxruntime as ort

    s = int(cb.read_manifest(model)["image_size"])
    graph = ort_int8_graph(model)
    for threads in (int(t) for t in args.threads.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.enable_profiling = True
                options.profile_file_prefix = str(Path(tmp) / "ort")
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                pixels = np.random.default_rng(0).uniform(-2, 2, size=(batch, 3, s, s)).astype(np.float32)
                for _ in range(args.warmup):
                    session.run(None, {"pixel_values": pixels})
                session.end_profiling()
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                for _ in range(args.runs):
                    session.run(None, {"pixel_values": pixels})
                events = json.loads(Path(session.end_profiling()).read_text())
            per_op = collections.Counter()
            for ev in events:
                if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
                    per_op[ev["args"]["op_name"]] += ev["dur"] / 1000 / args.runs
            total = sum(per_op.values())
            ops = ", ".join(f"{op} {ms:.1f}" for op, ms in per_op.most_common())
            print(f"onnxruntime int8, batch {batch}, {threads} thread(s): {total:.1f} ms per pass in nodes: {ops}")


def main(argv=None) -> None:
    args = parse_args(argv)
    model = ensure_model(args)
    if args.ort_profile:
        ort_profile(model, args)
        return
    if not Path(args.binary).exists() or not Path(args.cli).exists():
        log("building clip_bench and clip_perception (release)")
        subprocess.run(["cargo", "build", "--release", "--bin", "clip_bench", "--bin", "clip_perception"],
                       cwd=REPO_ROOT, check=True)
    import onnxruntime
    tokenizer = cb.open_clip_simple_tokenizer()

    samples, machine = run_rounds(args, model, tokenizer)
    manifest = cb.read_manifest(model)
    int8 = manifest.get("quantization", {}).get("image_encoder_int8", {})
    print(f"model: {manifest['name']} ({model}); int8 weights: {int8.get('weights', 'none')}; "
          f"onnxruntime {onnxruntime.__version__}; {args.rounds} rounds x {args.runs} runs, medians in ms")
    print(f"cpu: {machine.get('cpu', 'unknown')}; engine: {machine.get('kernels', 'unknown')}")
    med = {k: {e: statistics.median(v) for e, v in d.items()} for k, d in samples.items()}
    print_image_table(med)
    print_text_tables(med, int(manifest["context_length"]))
    if args.accuracy_images > 0 and "int8" in args.precision.split(","):
        accuracy(args, model)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "medians": {str(k): v for k, v in med.items()}}, indent=1))


if __name__ == "__main__":
    main()
