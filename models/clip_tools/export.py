"""Export a CLIP checkpoint to a model bundle folder for the clip_perception engine.

The bundle holds image_encoder.onnx, text_encoder.onnx, tokenizer.json and model.yaml
(see models/clip_tools/bundle.py for the exact contract). Three sources:

  transformers checkpoint (hub id or local folder; needs the hub or a local copy):
    python3 models/export.py --hf openai/clip-vit-base-patch32 --out models/clip-vit-b-32
    python3 models/export.py --hf openai/clip-vit-large-patch14 --out models/clip-vit-l-14

  open_clip model + pretrained tag (downloads weights unless cached):
    python3 models/export.py --open-clip ViT-B-32 --pretrained laion2b_s34b_b79k --out models/vit-b-32-laion

  a CLIPModel trained by the project (a save_pretrained folder with training.json, written by
  models/tabletop/train.py; source.kind: trained, training facts copied into model.yaml):
    python3 models/export.py --trained models/.cache/tabletop/checkpoint --out models/tabletop

  the real architecture with seeded random weights (no network; for tests and benchmarks):
    python3 models/export.py --random-init --arch vit-b-32 --seed 0 --out models/random-vit-b-32
    python3 models/export.py --random-init --arch tiny --seed 0 --out tests/fixtures/tiny-clip

Every export is verified: the export wrappers against the library's own forward
(get_image_features / get_text_features or encode_image / encode_text), and the ONNX
graphs against the wrappers with onnxruntime at two batch sizes and two sequence lengths.
The maximum absolute differences are printed and stored in model.yaml under `export:`.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

from clip_tools import bundle as cb
from clip_tools.log import log


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="export.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", metavar="ID_OR_PATH",
                     help="transformers CLIPModel checkpoint: hub id (e.g. openai/clip-vit-base-patch32) or local folder")
    src.add_argument("--open-clip", metavar="NAME",
                     help="open_clip model name (e.g. ViT-B-32); use with --pretrained")
    src.add_argument("--trained", metavar="DIR",
                     help="transformers CLIPModel folder trained by the project (save_pretrained + training.json), "
                          "e.g. models/.cache/tabletop/checkpoint from models/tabletop/train.py")
    src.add_argument("--random-init", action="store_true",
                     help="transformers CLIPModel with the architecture of --arch and seeded random weights")
    p.add_argument("--pretrained", metavar="TAG",
                   help="open_clip pretrained tag (e.g. openai, laion2b_s34b_b79k) or a checkpoint file; "
                        "'none' builds the open_clip architecture with random weights (testing)")
    p.add_argument("--arch", choices=sorted(cb.ARCHITECTURES), default="vit-b-32",
                   help="architecture for --random-init (default: %(default)s); tiny = 32-wide, 2 layers, "
                        "projection 16, for committed test fixtures")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write (created; files overwritten)")
    p.add_argument("--name", help="bundle name in model.yaml (default: derived from the source)")
    p.add_argument("--opset", type=int, default=cb.DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    p.add_argument("--bpe", metavar="PATH",
                   help="bpe_simple_vocab_16e6.txt.gz (default: the copy inside the open_clip_torch package)")
    p.add_argument("--threads", type=int, default=2, help="torch/onnxruntime threads (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fail if any verification max abs diff exceeds this (default: %(default)s)")
    args = p.parse_args(argv)
    if args.open_clip and not args.pretrained:
        p.error("--open-clip needs --pretrained TAG (or --pretrained none for random weights)")
    if args.pretrained and not args.open_clip:
        p.error("--pretrained is only for --open-clip")
    return args


class Source:
    """A loaded checkpoint: export wrappers, reference forwards and manifest facts."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def check_clip_text_config(cfg, origin) -> None:
    """The text tower must use CLIP's vocabulary and context: the bundle ships CLIP's BPE."""
    t = cfg.text_config
    if t.vocab_size != cb.VOCAB_SIZE or t.max_position_embeddings != cb.CONTEXT_LENGTH:
        raise SystemExit(f"{origin}: text vocab {t.vocab_size} / positions {t.max_position_embeddings} "
                         f"are not CLIP's {cb.VOCAB_SIZE}/{cb.CONTEXT_LENGTH}: "
                         "its tokenizer is not the CLIP BPE this bundle format ships")


def hf_model_source(model, *, mean=cb.OPENAI_CLIP_MEAN, std=cb.OPENAI_CLIP_STD, resize_shortest_edge=None,
                    resample="bicubic", architecture=None, **identity) -> Source:
    """A Source for a transformers CLIPModel (random-init, trained or a checkpoint): the export
    wrappers, the library's own forward as reference, and the facts model.yaml records.
    `identity` holds name, kind, checkpoint, seed and any extra manifest sections."""
    cfg = model.config
    w = cb.wrappers()
    return Source(
        image_encoder=w["HFImageEncoder"](model).eval(),
        text_encoder=w["HFTextEncoder"](model).eval(),
        ref_image=lambda x: cb.hf_image_features(model, x),
        ref_text=lambda ids: cb.hf_text_features(model, ids),
        ref_text_fixed_length=None,
        embed_dim=cfg.projection_dim,
        image_size=cfg.vision_config.image_size,
        mean=mean,
        std=std,
        logit_scale=float(model.logit_scale.exp().item()),
        architecture=architecture or hf_architecture(cfg),
        preprocess={"resize_shortest_edge": resize_shortest_edge or cfg.vision_config.image_size,
                    "resample": resample, "crop": "center"},
        **identity,
    )


def load_random_init(args) -> Source:
    model = cb.random_init_clip(args.arch, args.seed)
    arch = cb.ARCHITECTURES[args.arch]
    return hf_model_source(
        model,
        name=args.name or f"clip-{args.arch}-random-init-seed{args.seed}",
        kind="random-init",
        checkpoint=args.arch,
        seed=args.seed,
        architecture=hf_architecture(model.config, reference=arch["reference_checkpoint"]),
    )


def load_trained(args) -> Source:
    """A CLIPModel trained by the project: weights from save_pretrained, preprocessing = the
    bundle defaults (OpenAI mean/std, bicubic shortest-edge resize, center crop), and the
    training facts (generator, seeds, settings, held-out compositions) from training.json."""
    import json

    import torch
    from transformers import CLIPModel

    d = Path(args.trained)
    facts_path = d / "training.json"
    if not facts_path.is_file():
        raise SystemExit(f"{d}: no training.json (expected a folder written by models/tabletop/train.py)")
    facts = json.loads(facts_path.read_text(encoding="utf-8"))
    log(f"loading trained CLIPModel {d} (attn_implementation=eager)")
    model = CLIPModel.from_pretrained(str(d), attn_implementation="eager").to(torch.float32).eval()
    model.config._attn_implementation = "eager"
    check_clip_text_config(model.config, d)
    settings = facts.get("settings", {})
    return hf_model_source(
        model,
        name=args.name or facts.get("name") or f"clip-{d.parent.name}",
        kind="trained",
        checkpoint=facts.get("checkpoint") or f"{facts.get('trainer', 'models/tabletop/train.py')}",
        seed=settings.get("seed"),
        training={k: v for k, v in facts.items() if k not in ("name", "checkpoint")},
    )


def hf_architecture(cfg, reference=None) -> dict:
    v, t = cfg.vision_config, cfg.text_config
    arch = {
        "family": "clip-vit",
        "vision": {"width": v.hidden_size, "layers": v.num_hidden_layers, "heads": v.num_attention_heads,
                   "mlp": v.intermediate_size, "patch_size": v.patch_size, "image_size": v.image_size,
                   "activation": v.hidden_act},
        "text": {"width": t.hidden_size, "layers": t.num_hidden_layers, "heads": t.num_attention_heads,
                 "mlp": t.intermediate_size, "vocab_size": t.vocab_size,
                 "max_positions": t.max_position_embeddings, "activation": t.hidden_act},
        "projection_dim": cfg.projection_dim,
    }
    if reference:
        arch["same_as"] = reference
    return arch


def load_hf(args) -> Source:
    import torch
    from transformers import CLIPModel

    log(f"loading transformers CLIPModel {args.hf} (attn_implementation=eager)")
    # No dtype argument (its name changed between transformers 4 and 5); export in float32.
    model = CLIPModel.from_pretrained(args.hf, attn_implementation="eager").to(torch.float32).eval()
    cfg = model.config
    check_clip_text_config(cfg, args.hf)
    proc = load_hf_image_processor(args.hf)
    crop = proc.crop_size
    crop_h = crop["height"] if isinstance(crop, dict) else crop.height
    crop_w = crop["width"] if isinstance(crop, dict) else crop.width
    size = proc.size
    shortest = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
    if crop_h != crop_w or crop_h != cfg.vision_config.image_size:
        raise SystemExit(f"{args.hf}: crop {crop_h}x{crop_w} does not match vision image_size "
                         f"{cfg.vision_config.image_size}")
    if shortest != crop_h:
        log(f"warning: processor resizes the shortest edge to {shortest} but crops {crop_h}; "
            "model.yaml records both (preprocess.resize_shortest_edge)")
    resample = int(getattr(proc, "resample", 3))
    if resample != 3:
        log(f"warning: processor resample is {resample}, not BICUBIC (3)")
    return hf_model_source(
        model,
        name=args.name or Path(args.hf.rstrip("/")).name,
        kind="transformers",
        checkpoint=args.hf,
        seed=None,
        mean=[float(x) for x in proc.image_mean],
        std=[float(x) for x in proc.image_std],
        resize_shortest_edge=int(shortest) if shortest else crop_h,
        resample={3: "bicubic", 2: "bilinear"}.get(resample, str(resample)),
    )


def load_hf_image_processor(id_or_path: str):
    """The slow PIL-based CLIP image processor (its config is what matters here)."""
    import transformers

    for cls_name in ("CLIPImageProcessorPil", "CLIPImageProcessor"):
        cls = getattr(transformers, cls_name, None)
        if cls is not None:
            return cls.from_pretrained(id_or_path)
    raise SystemExit("transformers has no CLIPImageProcessor")


def load_open_clip(args) -> Source:
    import open_clip
    import torch
    from open_clip.tokenizer import SimpleTokenizer

    pretrained = None if args.pretrained.lower() in ("none", "") else args.pretrained
    log(f"loading open_clip {args.open_clip} pretrained={pretrained}")
    model = open_clip.create_model(args.open_clip, pretrained=pretrained, device="cpu", precision="fp32").eval()
    tok = open_clip.get_tokenizer(args.open_clip)
    if not isinstance(tok, SimpleTokenizer) or getattr(tok, "context_length", cb.CONTEXT_LENGTH) != cb.CONTEXT_LENGTH:
        raise SystemExit(f"open_clip {args.open_clip}: tokenizer {type(tok).__name__} is not CLIP's SimpleTokenizer "
                         f"with context {cb.CONTEXT_LENGTH}; this bundle format ships the CLIP BPE tokenizer only")
    pcfg = open_clip.get_model_preprocess_cfg(model)
    size = pcfg.get("size", model.visual.image_size)
    size = size if isinstance(size, int) else size[0]
    if pcfg.get("interpolation", "bicubic") != "bicubic" or pcfg.get("resize_mode", "shortest") != "shortest":
        log(f"warning: open_clip preprocess {pcfg} is not bicubic shortest-edge resize + center crop")
    with torch.no_grad():
        dummy = model.encode_image(torch.zeros(1, 3, size, size))
    w = cb.wrappers()
    scale = model.logit_scale.exp().item() if hasattr(model, "logit_scale") else 100.0
    if getattr(model, "logit_bias", None) is not None:
        log("warning: model has a logit_bias (SigLIP-style); the bundle records only logit_scale")
    return Source(
        name=args.name or f"{args.open_clip}-{args.pretrained}",
        kind="open_clip" if pretrained else "random-init",
        checkpoint=f"{args.open_clip}/{args.pretrained}",
        seed=None,
        image_encoder=w["OpenClipImageEncoder"](model).eval(),
        text_encoder=w["OpenClipTextEncoder"](model).eval(),
        ref_image=lambda x: model.encode_image(x, normalize=False),
        ref_text=lambda ids: model.encode_text(ids, normalize=False),
        ref_text_fixed_length=cb.CONTEXT_LENGTH,  # open_clip's encode_text needs L == 77
        embed_dim=int(dummy.shape[-1]),
        image_size=int(size),
        mean=[float(x) for x in pcfg.get("mean", cb.OPENAI_CLIP_MEAN)],
        std=[float(x) for x in pcfg.get("std", cb.OPENAI_CLIP_STD)],
        logit_scale=float(scale),
        architecture={"family": "open_clip", "model": args.open_clip},
        preprocess={"resize_shortest_edge": int(size), "resample": pcfg.get("interpolation", "bicubic"),
                    "crop": "center"},
    )


def load_source(args) -> Source:
    if args.trained:
        return load_trained(args)
    if args.random_init:
        return load_random_init(args)
    if args.hf:
        return load_hf(args)
    return load_open_clip(args)


def write_tokenizer(out: Path, bpe: str | None):
    """tokenizer.json, checked against open_clip's SimpleTokenizer; returns that tokenizer."""
    tok_path = out / cb.TOKENIZER_FILE
    cb.build_tokenizer_json(tok_path, bpe)
    oc = cb.open_clip_simple_tokenizer()
    bad = cb.check_tokenizer_json(tok_path, cb.VERIFY_PHRASES + [
        "Hello, World! It's 3.14 o'clock; we're done.", "naïve café ΟΔΟΣ 東京 😀 👩‍💻", "don't   STOP\tnow"])
    if bad:
        raise SystemExit("tokenizer.json disagrees with open_clip SimpleTokenizer:\n" + "\n".join(bad))
    log(f"tokenizer.json: ids equal open_clip SimpleTokenizer on {len(cb.VERIFY_PHRASES) + 3} strings")
    return oc


class VerifyInputs:
    """The verification inputs: cb.VERIFY_PHRASES as ids padded to 77 (`ids77`), their
    longest real length (`real_len`), and 3 seeded random pixel tensors (`pix`)."""

    def __init__(self, oc, image_size: int):
        import torch

        self.rows = [cb.open_clip_ids(oc, t) for t in cb.VERIFY_PHRASES]
        self.real_len = max(len(r) for r in self.rows)
        self.ids77 = torch.from_numpy(cb.pad_ids(self.rows, cb.CONTEXT_LENGTH))
        g = torch.Generator().manual_seed(1234)
        self.pix = torch.randn(3, 3, image_size, image_size, generator=g)


def verify_wrappers(src: Source, vi: VerifyInputs) -> dict[str, float]:
    """Max abs differences of the export wrappers against the library's own forward, and of
    the text wrapper at the real length against 77 tokens."""
    import torch

    real_len, ids77 = vi.real_len, vi.ids77
    diffs: dict[str, float] = {}
    with torch.no_grad():
        diffs["image_wrapper_vs_reference"] = cb.max_abs_diff(src.image_encoder(vi.pix), src.ref_image(vi.pix))
        ref77 = src.ref_text(ids77)
        wrap77 = src.text_encoder(ids77)
        diffs["text_wrapper_vs_reference_L77"] = cb.max_abs_diff(wrap77, ref77)
        wrap_short = src.text_encoder(ids77[:, :real_len])
        diffs[f"text_wrapper_L{real_len}_vs_L77"] = cb.max_abs_diff(wrap_short, wrap77)
        if src.ref_text_fixed_length is None:
            diffs[f"text_wrapper_vs_reference_L{real_len}"] = cb.max_abs_diff(
                wrap_short, src.ref_text(ids77[:, :real_len]))
    for k, v in diffs.items():
        log(f"torch {k}: max abs diff {v:.3g}")
    return diffs


def export_graphs(src: Source, vi: VerifyInputs, out: Path, opset: int) -> tuple[dict, dict]:
    """Writes image_encoder.onnx and text_encoder.onnx; returns their export facts."""
    img_path, txt_path = out / cb.IMAGE_FILE, out / cb.TEXT_FILE
    log(f"exporting {img_path}")
    img_facts = cb.export_onnx(src.image_encoder, vi.pix[:2], img_path, cb.IMAGE_INPUT, cb.IMAGE_OUTPUT,
                               {0: "batch"}, opset)
    log(f"exporting {txt_path}")
    # Trace at a length that is neither 77 nor the test lengths, so no length is baked in.
    txt_facts = cb.export_onnx(src.text_encoder, vi.ids77[:2, : vi.real_len + 3], txt_path, cb.TEXT_INPUT,
                               cb.TEXT_OUTPUT, {0: "batch", 1: "sequence"}, opset)
    print(f"image_encoder ops: {img_facts['ops']}")
    print(f"text_encoder ops: {txt_facts['ops']}")
    return img_facts, txt_facts


def verify_onnxruntime(src: Source, vi: VerifyInputs, out: Path, threads: int) -> dict[str, float]:
    """Max abs differences of the exported graphs (onnxruntime) against the wrappers, at two
    batch sizes, and for text at 77 tokens and at the real length."""
    import torch

    ort_diffs: dict[str, float] = {}
    sess = cb.ort_session(out / cb.IMAGE_FILE, threads)
    with torch.no_grad():
        for n in (1, 3):
            got = sess.run([cb.IMAGE_OUTPUT], {cb.IMAGE_INPUT: vi.pix[:n].numpy()})[0]
            ort_diffs[f"image_N{n}"] = cb.max_abs_diff(got, src.image_encoder(vi.pix[:n]))
        sess = cb.ort_session(out / cb.TEXT_FILE, threads)
        for n in (1, len(vi.rows)):
            for length in (cb.CONTEXT_LENGTH, vi.real_len):
                ids = vi.ids77[:n, :length]
                got = sess.run([cb.TEXT_OUTPUT], {cb.TEXT_INPUT: ids.numpy()})[0]
                ort_diffs[f"text_N{n}_L{length}"] = cb.max_abs_diff(got, src.text_encoder(ids))
    for k, v in ort_diffs.items():
        print(f"onnxruntime vs torch {k}: max abs diff {v:.3g}")
    return ort_diffs


def bundle_info(src: Source, args, img_facts: dict, txt_facts: dict, diffs: dict[str, float],
                ort_diffs: dict[str, float]) -> cb.BundleInfo:
    """What model.yaml records: the source, the preprocessing, the text conventions and the
    export's tool versions, graph ops and verification differences."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    try:
        import open_clip

        oc_version = getattr(open_clip, "__version__", None)
    except ImportError:  # pragma: no cover
        oc_version = None
    return cb.BundleInfo(
        name=src.name, source_kind=src.kind, checkpoint=src.checkpoint, seed=src.seed,
        embed_dim=int(src.embed_dim), image_size=int(src.image_size),
        image_mean=src.mean, image_std=src.std, logit_scale=src.logit_scale,
        extra={
            "architecture": src.architecture,
            "preprocess": src.preprocess,
            **({"training": src.training} if getattr(src, "training", None) else {}),
            "text": {"sot_id": cb.SOT_ID, "eot_id": cb.EOT_ID, "pooling": "first_eot",
                     "cleaning": "open_clip _clean_lower (ftfy.fix_text, html.unescape x2, whitespace collapse, lower)"},
            "export": {
                "exporter": img_facts["exporter"], "opset": args.opset,
                "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                "open_clip": oc_version, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "python": platform.python_version(),
                "image_encoder_ops": img_facts["ops"], "text_encoder_ops": txt_facts["ops"],
                "max_abs_diff_torch": {k: float(f"{v:.3g}") for k, v in diffs.items()},
                "max_abs_diff_onnxruntime_vs_torch": {k: float(f"{v:.3g}") for k, v in ort_diffs.items()},
            },
        },
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    src = load_source(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    oc = write_tokenizer(out, args.bpe)
    vi = VerifyInputs(oc, src.image_size)
    diffs = verify_wrappers(src, vi)
    img_facts, txt_facts = export_graphs(src, vi, out, args.opset)
    ort_diffs = verify_onnxruntime(src, vi, out, args.threads)
    worst = max(list(diffs.values()) + list(ort_diffs.values()))
    if not math.isfinite(worst) or worst > args.tolerance:
        raise SystemExit(f"verification failed: max abs diff {worst} > tolerance {args.tolerance}")

    manifest = cb.write_manifest(out, bundle_info(src, args, img_facts, txt_facts, diffs, ort_diffs))
    cb.verify_bundle_hashes(out)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    print(f"wrote {manifest} ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sizes.items())}) "
          f"in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
