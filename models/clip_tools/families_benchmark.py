"""Image encoder latency across model families: tract (the Rust engine, via `clip_bench`)
versus onnxruntime, fp32 and int8, on real-size random-weight bundles; plus tract's per-op
profile of MobileCLIP2-S0 and each bundle's int8 accuracy.

    python3 models/families_benchmark.py                        # all four models, 2 rounds x 5 runs
    python3 models/families_benchmark.py --rounds 3 --runs 10   # medians over rounds x runs
    python3 models/families_benchmark.py --models mobileclip2-s0,vit-b-32 --no-profile
    (installed: clip-families-benchmark; the code is clip_tools.families_benchmark)

Models (exported once into models/.cache/families-bench/, quantized there by models/quantize.py
with its default 7-bit dynamic-symmetric form; nothing is downloaded):

  mobileclip2-s0, mobileclip2-s2  open_clip create_model(NAME, pretrained=None) (timm FastViT
                                  MCi0 / MCi2 image tower, 12-layer bidirectional text tower),
                                  trunk weights randomised as the tiny fixture's are
                                  (families.randomize_fastvit_trunk: BatchNorm statistics measured
                                  on smooth and noise images, layer scales U(0.5, 1)), logit
                                  scale 100; exported with
                                  `models/export.py --open-clip NAME --pretrained dfndr2b
                                  --checkpoint FILE` (the dfndr2b preprocessing: mean 0 / std 1,
                                  bilinear, 256 x 256, torchvision's crop; format 2, mobileclip)
  siglip-b16-224                  transformers SiglipModel with SiglipConfig's defaults (ViT-B/16
                                  on 224 x 224, attention-pooling head; 12-layer text tower, 64
                                  positions), transformers' random init, exp(logit_scale) = 117.33,
                                  logit_bias = -12.93 (google/siglip-base-patch16-224's), a locally
                                  trained 1000-piece SentencePiece tokenizer (the text tower keeps
                                  its 32000 rows); exported with `models/export.py --hf FOLDER`
  vit-b-32                        models/benchmark.py's random-init ViT-B/32 (format 1), its fp32
                                  files hard-linked from models/.cache/random-vit-b-32-seed0

Timing: batch 1, 1 and 2 threads; each group (model, precision, threads) is timed on both
engines back to back, onnxruntime first in even rounds and tract first in odd ones, as
models/benchmark.py does; every number is the median over all timed runs of all rounds, in ms.
tract runs the bundle's image_encoder.onnx / image_encoder_int8.onnx (`clip_bench --skip-text`);
onnxruntime runs the same fp32 graph and, for int8, the graph its own `quantize_dynamic` makes
of it (MatMul and Gemm, int8 weights, as models/benchmark.py but with Gemm too: MobileCLIP's
head is a Gemm). Convolutions stay fp32 on both sides (the engine's int8 path has none):
`fp32 MACs` in the accuracy table is the share of each tower's multiply-accumulates that
int8 leaves in fp32.

Accuracy: quantize.py's figures (onnxruntime, int8 vs fp32 embedding cosine on tabletop
evaluation images preprocessed as the family does, zero-shot top-1 agreement over the 64
tabletop phrases), and the Rust engine's own int8 vs fp32 cosine (`clip_perception
embed-image`) on a few of those images. The weights are random: the figures say how much
int8 perturbs these architectures, not how a trained model's zero-shot accuracy changes.

Profile: `clip_bench --profile` on MobileCLIP2-S0 (--profile-models) at batch 1, 1 thread,
fp32 and int8: the op kinds taking the most time in one profiled run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from clip_tools import benchmark
from clip_tools import bundle as cb
from clip_tools import families as fam
from clip_tools.log import log
from clip_tools.paths import CACHE_DIR, MODELS_DIR, TABLETOP_DIR, TARGET_RELEASE

BENCH_DIR = CACHE_DIR / "families-bench"
SEED = 0
MODELS = {  # key -> label in the tables
    "mobileclip2-s0": "MobileCLIP2-S0",
    "mobileclip2-s2": "MobileCLIP2-S2",
    "siglip-b16-224": "SigLIP B/16-224",
    "vit-b-32": "ViT-B/32",
}
SIGLIP_LOGIT_SCALE = 117.33  # exp(logit_scale) of google/siglip-base-patch16-224 (rounded)
SIGLIP_LOGIT_BIAS = -12.93
ORT_INT8_OPS = ["MatMul", "Gemm"]


def run(cmd: list[str]) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True)


# ---------------------------------------------------------------------------
# Bundles
# ---------------------------------------------------------------------------

def mobileclip2_bundle(name: str, out: Path) -> None:
    """open_clip NAME with random weights (trunk randomised as the tiny fixture's), saved as
    a state dict and exported with the dfndr2b tag's preprocessing."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    src = BENCH_DIR / "src" / name
    ckpt = src / f"random-init-seed{SEED}.safetensors"
    if not ckpt.exists():
        src.mkdir(parents=True, exist_ok=True)
        log(f"building {name} with random weights")
        torch.manual_seed(SEED)
        model = open_clip.create_model(name, pretrained=None, device="cpu", precision="fp32").eval()
        fam.randomize_fastvit_trunk(model.visual.trunk, torch.Generator().manual_seed(SEED + 1), calibration_images)
        with torch.no_grad():
            model.logit_scale.fill_(math.log(100.0))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    run([sys.executable, MODELS_DIR / "export.py", "--open-clip", name, "--pretrained", "dfndr2b",
         "--checkpoint", ckpt, "--name", f"{name.lower()}-random-init-seed{SEED}", "--out", out])


def calibration_images(g):
    """BatchNorm calibration for the real-size towers: 8 smooth random images and 8 of N(0, 1)
    noise (the export's verification pixels), so neither drives a 22-block tower's activations
    to ~1e3 (see families.randomize_fastvit_trunk)."""
    import torch

    smooth = torch.nn.functional.interpolate(torch.rand(8, 3, 16, 16, generator=g), size=256, mode="bilinear",
                                             align_corners=False)
    return torch.cat([smooth, torch.randn(8, 3, 256, 256, generator=g)])


def train_siglip_spm(d: Path) -> Path:
    """A small SentencePiece Unigram model with SigLIP's (T5's) layout (<pad> 0, </s> 1,
    <unk> 2, nmt_nfkc), trained on generated task phrases: the tokenizer a SiglipModel folder
    needs; its size does not matter to image timings."""
    import sentencepiece as spm

    from clip_tools.tabletop.evaluate import PHRASES

    rng = random.Random(SEED)
    words = sorted({w for p in PHRASES for w in p.split()} | set(
        "a an the photo of picture on in under next to table robot arm hand cup ball box sponge drawer handle "
        "sink shelf dish plate bottle mug pick up put down grasp push open close move left right".split()))
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 10))) for _ in range(4000)]
    corpus = d / "spiece.corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "spiece"), vocab_size=400,
                                   hard_vocab_limit=False, character_coverage=1.0, num_threads=1, minloglevel=2,
                                   shuffle_input_sentence=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>")
    corpus.unlink()
    (d / "spiece.vocab").unlink()
    return d / "spiece.model"


def siglip_bundle(out: Path) -> None:
    """A SiglipModel folder with SiglipConfig's default (base patch16 224) architecture and
    random weights, exported with --hf."""
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer

    src = BENCH_DIR / "src" / "siglip-base-patch16-224-random"
    if not (src / "config.json").exists():
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        log("building SigLIP B/16-224 with random weights")
        tok = SiglipTokenizer(str(train_siglip_spm(src)), model_max_length=fam.SIGLIP_CONTEXT)
        tok.save_pretrained(str(src))
        cfg = SiglipConfig(text_config={"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None},
                           vision_config={})
        cfg._attn_implementation = "eager"
        torch.manual_seed(SEED)
        model = SiglipModel(cfg).eval()
        with torch.no_grad():
            model.logit_scale.fill_(math.log(SIGLIP_LOGIT_SCALE))
            model.logit_bias.fill_(SIGLIP_LOGIT_BIAS)
        model.save_pretrained(str(src))
        (src / "preprocessor_config.json").write_text(json.dumps(fam.SIGLIP_B16_PREPROCESSOR_CONFIG, indent=2) + "\n")
    run([sys.executable, MODELS_DIR / "export.py", "--hf", src, "--name", f"siglip-b16-224-random-init-seed{SEED}",
         "--out", out])


def vit_b_32_bundle(out: Path) -> None:
    """models/benchmark.py's random-init ViT-B/32 (exported there once), its fp32 files
    hard-linked here (they are never rewritten; quantize.py writes a new int8 file)."""
    base = CACHE_DIR / "random-vit-b-32-seed0"
    if not (base / "model.yaml").exists():
        run([sys.executable, MODELS_DIR / "export.py", "--random-init", "--arch", "vit-b-32", "--seed", "0",
             "--out", base])
    out.mkdir(parents=True, exist_ok=True)
    for f in (cb.IMAGE_FILE, cb.TEXT_FILE, cb.TOKENIZER_FILE):
        (out / f).unlink(missing_ok=True)
        try:
            os.link(base / f, out / f)
        except OSError:
            shutil.copy2(base / f, out / f)
    shutil.copy2(base / cb.MANIFEST_FILE, out / cb.MANIFEST_FILE)


def accuracy_argv(args) -> list[str]:
    from clip_tools.tabletop.evaluate import PHRASES

    return ["--images", str(TABLETOP_DIR / "eval" / "*.jpg"), "--limit", str(args.quantize_images),
            "--phrases", ";".join(PHRASES), "--template", "a photo of a {}.", "--threads", "2"]


def ensure_bundle(key: str, args) -> Path:
    """The bundle folder of `key`, exported and quantized (7-bit default) on first use."""
    out = BENCH_DIR / key
    if not (out / cb.MANIFEST_FILE).exists():
        log(f"exporting {MODELS[key]} to {out} (once)")
        if key.startswith("mobileclip2-"):
            mobileclip2_bundle(MODELS[key], out)
        elif key == "siglip-b16-224":
            siglip_bundle(out)
        else:
            vit_b_32_bundle(out)
    manifest = cb.read_manifest(out)
    q = manifest.get("quantization", {}).get("image_encoder_int8", {})
    from clip_tools.quantize import DEFAULT_WEIGHT_BITS

    if ("image_encoder_int8" not in manifest["files"] or q.get("weight_bits") != DEFAULT_WEIGHT_BITS
            or "macs_per_image" not in q or "top1_distinct_fp32" not in q.get("accuracy", {})):
        log(f"quantizing {out} (once)")
        run([sys.executable, MODELS_DIR / "quantize.py", out, *accuracy_argv(args)])
    return out


def ort_int8_graph(model: Path) -> Path:
    """onnxruntime's own dynamic int8 form (MatMul and Gemm) of the bundle's fp32 image encoder (cached)."""
    return benchmark.ort_int8_graph(model, tuple(ORT_INT8_OPS), BENCH_DIR / "ort-int8")


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def time_calls(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


def tract_samples(args, model: Path, precision: str, threads: int) -> tuple[list[float], dict]:
    out = subprocess.run([args.binary, "--model", str(model), "--batches", "1", "--threads", str(threads),
                          "--runs", str(args.runs), "--warmup", str(args.warmup), "--precision", precision,
                          "--skip-text"], check=True, capture_output=True, text=True).stdout
    samples, machine = [], {}
    for line in out.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "cpu" in row:
            machine = row
        elif row.get("encoder") == "image" and row.get("precision") == precision:
            samples += row["samples_ms"]
    return samples, machine


def ort_samples(args, model: Path, precision: str, threads: int) -> list[float]:
    import numpy as np

    manifest = cb.read_manifest(model)
    s = int(manifest["image_size"])
    graph = model / manifest["files"]["image_encoder"]["path"] if precision == "fp32" else ort_int8_graph(model)
    sess = cb.ort_session(graph, threads=threads)
    pixels = np.random.default_rng(0).uniform(-2, 2, size=(1, 3, s, s)).astype(np.float32)
    return time_calls(lambda: sess.run(None, {cb.IMAGE_INPUT: pixels}), args.runs, args.warmup)


def run_rounds(args, bundles: dict[str, Path]) -> tuple[dict, dict]:
    """samples[(model, precision, threads)][engine] and clip_bench's CPU line."""
    samples: dict[tuple, dict[str, list[float]]] = {}
    machine: dict = {}
    threads_list = [int(t) for t in args.threads.split(",")]
    for r in range(args.rounds):
        for key, model in bundles.items():
            for threads in threads_list:
                for precision in ("fp32", "int8"):
                    log(f"round {r + 1}/{args.rounds}: {MODELS[key]} {precision} {threads} thread(s)")
                    group = samples.setdefault((key, precision, threads), {})

                    def ort():
                        group.setdefault("onnxruntime", []).extend(ort_samples(args, model, precision, threads))

                    def tract():
                        got, m = tract_samples(args, model, precision, threads)
                        machine.update(m)
                        group.setdefault("tract", []).extend(got)

                    for engine in ((ort, tract) if r % 2 == 0 else (tract, ort)):
                        engine()
    return samples, machine


# ---------------------------------------------------------------------------
# Profile and accuracy
# ---------------------------------------------------------------------------

def profile(args, model: Path) -> dict[str, list[tuple[str, float]]]:
    """tract's time per op kind in one profiled run (clip_bench --profile), per precision."""
    out = subprocess.run([args.binary, "--model", str(model), "--batches", "1", "--threads", "1", "--runs", "1",
                          "--warmup", "1", "--precision", "fp32,int8", "--skip-text", "--profile"],
                         check=True, capture_output=True, text=True).stdout
    prof = {}
    for line in out.splitlines():
        row = json.loads(line) if line.strip() else {}
        if "profile" in row:
            prof[row["precision"]] = sorted(((o["op"], float(o["ms"])) for o in row["profile"]), key=lambda x: -x[1])
    return prof


def rust_cosines(args, model: Path, images: list[str]) -> list[float]:
    """int8 vs fp32 image embedding cosine per image, from the Rust engine (embed-image)."""
    import numpy as np

    emb = {}
    for precision in ("fp32", "int8"):
        out = subprocess.run([args.cli, "embed-image", "--model", str(model), "--precision", precision,
                              "--threads", "2", *images, "--json"], check=True, capture_output=True, text=True).stdout
        emb[precision] = np.array([json.loads(r)["embedding"] for r in out.splitlines() if r.strip()], np.float64)
    a, b = emb["fp32"], emb["int8"]
    return list((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def print_table(med: dict, keys: list[str], threads_list: list[int]) -> None:
    nan = float("nan")

    def get(key, prec, thr, engine):
        return med.get((key, prec, thr), {}).get(engine, nan)

    print(f"\n{'model':<16} {'thr':>3} {'tract fp32':>10} {'tract int8':>10} {'ort fp32':>9} {'ort int8':>9} "
          f"{'fp32 t/o':>8} {'int8 t/o':>8} {'tract i8/f32':>12} {'ort i8/f32':>10}")
    for key in keys:
        for t in threads_list:
            tf, ti = get(key, "fp32", t, "tract"), get(key, "int8", t, "tract")
            of, oi = get(key, "fp32", t, "onnxruntime"), get(key, "int8", t, "onnxruntime")
            print(f"{MODELS[key]:<16} {t:>3} {tf:>10.2f} {ti:>10.2f} {of:>9.2f} {oi:>9.2f} {tf / of:>8.2f} "
                  f"{ti / oi:>8.2f} {ti / tf:>12.2f} {oi / of:>10.2f}")
    if "mobileclip2-s0" in keys and "vit-b-32" in keys:
        parts = []
        for t in threads_list:
            tr = get("mobileclip2-s0", "int8", t, "tract") / get("vit-b-32", "int8", t, "tract")
            ort = get("mobileclip2-s0", "int8", t, "onnxruntime") / get("vit-b-32", "int8", t, "onnxruntime")
            parts.append(f"{t} thread(s): tract {tr:.2f}, ort {ort:.2f}")
        print(f"\nMobileCLIP2-S0 int8 / ViT-B/32 int8 (latency ratio): {'; '.join(parts)}")


def print_accuracy(args, bundles: dict[str, Path]) -> None:
    import glob

    images = sorted(glob.glob(str(TABLETOP_DIR / "eval" / "*.jpg")))[: args.accuracy_images]
    print(f"\nint8 (quantize.py dynamic-symmetric, 7-bit weights) vs fp32; random weights. "
          f"ort: onnxruntime on quantize.py's images / phrases; rust: clip_perception embed-image on "
          f"{len(images)} tabletop eval images")
    print(f"{'model':<16} {'int8 ops':>8} {'GMAC':>6} {'fp32 MACs':>9} {'ort cos min':>11} {'mean':>7} "
          f"{'centred min':>11} {'mean':>7} {'top-1 agree':>11} {'distinct':>8} {'rust cos min':>12} {'mean':>7}")
    for key, model in bundles.items():
        q = cb.read_manifest(model)["quantization"]["image_encoder_int8"]
        acc, macs = q["accuracy"], q["macs_per_image"]
        total = (macs["int8_products"] + macs["fp32_conv"] + macs["fp32_matmul"]) / 1e3
        rust = "skipped"
        if images:
            try:
                c = rust_cosines(args, model, images)
                rust = f"{min(c):>12.5f} {sum(c) / len(c):>7.5f}"
            except subprocess.CalledProcessError as e:
                rust = f"FAILED: {e.stderr.strip().splitlines()[-1] if e.stderr else e}"
        nan = float("nan")
        print(f"{MODELS[key]:<16} {q['matmuls_quantized']:>8} {total:>6.2f} {100 * macs['fp32_share']:>8.1f}% "
              f"{acc['cosine_vs_fp32_min']:>11.5f} {acc['cosine_vs_fp32_mean']:>7.5f} "
              f"{acc.get('centred_cosine_vs_fp32_min', nan):>11.5f} {acc.get('centred_cosine_vs_fp32_mean', nan):>7.5f} "
              f"{100 * acc.get('top1_agreement', nan):>10.1f}% {acc.get('top1_distinct_fp32', '?'):>8} {rust}")
    print(f"(ort: on {acc['measured_on']}; centred: cosine after subtracting the fp32 embeddings' mean over those "
          f"images; top-1 agreement over {acc.get('top1_phrases')} phrases, `distinct` = how many different fp32 "
          "top-1 phrases the images get: random towers give nearly one embedding to every image)")


def print_profile(prof: dict, top: int) -> None:
    for key, by_precision in prof.items():
        for precision, ops in by_precision.items():
            total = sum(ms for _, ms in ops)
            print(f"\ntract profile, {MODELS[key]} {precision}, batch 1, 1 thread (one profiled run, {total:.2f} ms "
                  f"in ops): top {top}")
            for op, ms in ops[:top]:
                print(f"  {ms:>8.3f} ms {100 * ms / total:>5.1f}%  {op}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    p.add_argument("--binary", default=str(TARGET_RELEASE / "clip_bench"))
    p.add_argument("--cli", default=str(TARGET_RELEASE / "clip_perception"))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="timed runs per engine per group per round")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quantize-images", type=int, default=32,
                   help="tabletop eval images for quantize.py's accuracy (when a bundle is quantized)")
    p.add_argument("--accuracy-images", type=int, default=4,
                   help="tabletop eval images for the Rust engine's int8 vs fp32 cosine (0: skip)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--profile-models", default="mobileclip2-s0", help="models to profile (comma-separated)")
    p.add_argument("--profile-top", type=int, default=12)
    p.add_argument("--json", help="also write all samples, medians and the profile to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    for b in (args.binary, args.cli):
        if not Path(b).exists():
            raise SystemExit(f"{b} is missing: cargo build --release --bin clip_bench --bin clip_perception")
    bundles = {k: ensure_bundle(k, args) for k in keys}
    for model in bundles.values():
        ort_int8_graph(model)  # made once, before any timing
    t1 = time.time()
    import onnxruntime

    samples, machine = run_rounds(args, bundles)
    med = {k: {e: statistics.median(v) for e, v in d.items()} for k, d in samples.items()}
    prof = {} if args.no_profile else {
        k: profile(args, bundles[k]) for k in args.profile_models.split(",") if k in bundles}
    t2 = time.time()
    print(f"\nimage encoders, batch 1: tract (clip_bench) vs onnxruntime {onnxruntime.__version__}; "
          f"{args.rounds} rounds x {args.runs} runs per engine, medians in ms")
    print(f"cpu: {machine.get('cpu', 'unknown')}; engine: {machine.get('kernels', 'unknown')}")
    print("tract int8 = quantize.py dynamic-symmetric, 7-bit weights; ort int8 = onnxruntime quantize_dynamic "
          f"({'+'.join(ORT_INT8_OPS)}, QInt8 weights) of the same fp32 graph; t/o = tract / ort")
    threads_list = [int(t) for t in args.threads.split(",")]
    print_table(med, keys, threads_list)
    print_profile(prof, args.profile_top)
    if args.accuracy_images >= 0:
        print_accuracy(args, bundles)
    print(f"\n(export/quantize {t1 - t0:.0f} s, timing + profile {t2 - t1:.0f} s, total {time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine, "medians": {str(k): v for k, v in med.items()},
            "samples": {str(k): v for k, v in samples.items()}, "profile": prof}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
