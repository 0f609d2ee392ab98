"""Export a CLIP checkpoint to a model bundle folder for the clip_perception engine.

The bundle holds image_encoder.onnx, text_encoder.onnx, tokenizer.json and model.yaml
(see models/clip_tools/bundle.py for the exact contract). Three sources:

  transformers checkpoint (hub id or local folder; needs the hub or a local copy):
    python3 models/export.py --hf openai/clip-vit-base-patch32 --out models/clip-vit-b-32
    python3 models/export.py --hf openai/clip-vit-large-patch14 --out models/clip-vit-l-14

  open_clip model + pretrained tag (downloads weights unless cached):
    python3 models/export.py --open-clip ViT-B-32 --pretrained laion2b_s34b_b79k --out models/vit-b-32-laion

  MobileCLIP 2 (open_clip + timm FastViT MCi; format-2 bundle, family mobileclip): the tag picks
  the published preprocessing (open_clip.get_pretrained_cfg), --checkpoint the weights on disk
  (nothing is downloaded); or an open_clip folder as the hub holds it (open_clip_config.json +
  open_clip_model.safetensors). The FastViT tower is reparameterised before export:
    python3 models/export.py --open-clip MobileCLIP2-S0 --pretrained dfndr2b \
        --checkpoint MobileCLIP2-S0/open_clip_model.safetensors --out models/mobileclip2-s0
    python3 models/export.py --open-clip local-dir:models/.cache/MobileCLIP2-S0-OpenCLIP --out models/mobileclip2-s0

  SigLIP / SigLIP 2 (a transformers SiglipModel folder: config.json, weights, preprocessor_config.json,
  spiece.model (SigLIP) or tokenizer.json (SigLIP 2, Gemma); format-2 bundle, sigmoid scoring):
    python3 models/export.py --hf models/.cache/siglip-base-patch16-224 --out models/siglip-b-16

  a CLIPModel trained by the project (a save_pretrained folder with training.json, written by
  models/tabletop/train.py; source.kind: trained, training facts copied into model.yaml):
    python3 models/export.py --trained models/.cache/tabletop/checkpoint --out models/tabletop

  the real architecture with seeded random weights (no network; for tests and benchmarks):
    python3 models/export.py --random-init --arch vit-b-32 --seed 0 --out models/random-vit-b-32
    python3 models/export.py --random-init --arch tiny --seed 0 --out tests/fixtures/tiny-clip

Every export is verified: the export wrappers against the library's own forward
(get_image_features / get_text_features or encode_image / encode_text), and the ONNX
graphs against the wrappers with onnxruntime at two batch sizes and two sequence lengths
(text towers fed padded to the context length, `pad_to: context`: at that length only).
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
from clip_tools import families as fam
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
                     help="transformers CLIPModel checkpoint: hub id (e.g. openai/clip-vit-base-patch32) or local "
                          "folder; or a SiglipModel folder (SigLIP / SigLIP 2, detected from config.json)")
    src.add_argument("--open-clip", metavar="NAME",
                     help="open_clip model name (e.g. ViT-B-32, MobileCLIP2-S0); use with --pretrained; or "
                          "local-dir:FOLDER (open_clip_config.json + weights, as on the hub)")
    src.add_argument("--trained", metavar="DIR",
                     help="transformers CLIPModel folder trained by the project (save_pretrained + training.json), "
                          "e.g. models/.cache/tabletop/checkpoint from models/tabletop/train.py")
    src.add_argument("--random-init", action="store_true",
                     help="transformers CLIPModel with the architecture of --arch and seeded random weights")
    p.add_argument("--pretrained", metavar="TAG",
                   help="open_clip pretrained tag (e.g. openai, laion2b_s34b_b79k) or a checkpoint file; "
                        "'none' builds the open_clip architecture with random weights (testing)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="with --open-clip NAME --pretrained TAG: load the weights from this state dict "
                        "(.safetensors/.bin/.pt) instead of downloading the tag's; TAG still picks the preprocessing")
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
                   help="fail if any verification max abs diff exceeds this, relative to the largest output "
                        "magnitude where that is above 1 (default: %(default)s)")
    args = p.parse_args(argv)
    local_dir = bool(args.open_clip) and args.open_clip.startswith("local-dir:")
    if args.open_clip and not args.pretrained and not local_dir:
        p.error("--open-clip needs --pretrained TAG (or --pretrained none for random weights)")
    if args.pretrained and not args.open_clip:
        p.error("--pretrained is only for --open-clip")
    if local_dir and (args.pretrained or args.checkpoint):
        p.error("--open-clip local-dir:FOLDER takes its preprocessing and weights from the folder")
    if args.checkpoint and not args.open_clip:
        p.error("--checkpoint is only for --open-clip NAME --pretrained TAG")
    return args


class Source:
    """A loaded checkpoint: export wrappers, reference forwards and manifest facts. Format-2
    sources also set `family`, `sections` (preprocess / text / scoring), `context_length`,
    `reference` (informational) and `write_tokenizer(out) -> VerifyInputs`."""

    family = None

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

    cfg_path = Path(args.hf) / "config.json"
    if cfg_path.is_file():
        model_type = fam.read_json(cfg_path).get("model_type")
        if model_type == "siglip":
            return load_siglip(args)
        if model_type not in (None, "clip"):
            raise SystemExit(f"{args.hf}: model_type {model_type!r}: only clip and siglip (SiglipModel, "
                             "fixed resolution) checkpoints are supported")

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


def load_siglip(args) -> Source:
    """A transformers SiglipModel folder -> a format-2 source (family siglip with spiece.model,
    siglip2 with a fast tokenizer.json). Preprocessing from the slow PIL SiglipImageProcessor's
    config: squash to the vision image_size with its resample, rescale 1/255, its mean/std."""
    import torch
    import transformers
    from transformers import SiglipModel

    d = Path(args.hf)
    log(f"loading transformers SiglipModel {d} (attn_implementation=eager)")
    model = SiglipModel.from_pretrained(str(d), attn_implementation="eager").to(torch.float32).eval()
    cfg = model.config
    vc, tc = cfg.vision_config, cfg.text_config
    proc_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    proc = proc_cls.from_pretrained(str(d))
    size = proc.size
    h = size["height"] if isinstance(size, dict) else size.height
    w = size["width"] if isinstance(size, dict) else size.width
    if not proc.do_resize or h != w or h != vc.image_size:
        raise SystemExit(f"{d}: processor resize {size} (do_resize={proc.do_resize}) is not a square resize to "
                         f"the vision image_size {vc.image_size}")
    if getattr(proc, "do_center_crop", False):
        raise SystemExit(f"{d}: processor center-crops after resizing: not SiglipImageProcessor's squash")
    if not proc.do_rescale or abs(float(proc.rescale_factor) - 1 / 255) > 1e-12 or not proc.do_normalize:
        raise SystemExit(f"{d}: processor rescale {proc.rescale_factor} / normalize {proc.do_normalize} unsupported")
    resample = int(proc.resample)
    if resample not in fam.PIL_RESAMPLE:
        raise SystemExit(f"{d}: processor resample {resample}: only bilinear (2) and bicubic (3) are supported")
    if tc.projection_size != vc.hidden_size:
        raise SystemExit(f"{d}: text projection {tc.projection_size} != vision width {vc.hidden_size}")
    context = int(tc.max_position_embeddings)
    if (d / "tokenizer.json").is_file():
        family = "siglip2"
    elif (d / "spiece.model").is_file():
        family = "siglip"
    else:
        raise SystemExit(f"{d}: neither spiece.model (SigLIP) nor tokenizer.json (SigLIP 2) found")
    w_ = cb.wrappers()
    scale = float(model.logit_scale.exp().item())
    bias = fam.float32_repr(model.logit_bias.item())

    def write_tokenizer_siglip(out: Path) -> "VerifyInputs":
        from transformers import AutoTokenizer, SiglipTokenizer

        tok_path = out / cb.TOKENIZER_FILE
        if family == "siglip":
            tok = SiglipTokenizer.from_pretrained(str(d))
            fam.convert_siglip_spm(tok, tok_path)
            lowercase, strip_punct = bool(tok.do_lower_case), True
            reference = lambda t: fam.hf_padded_ids(tok, t, context)  # noqa: E731
            how = f"SiglipTokenizer (spiece.model) -> SpmConverter + `$A {tok.eos_token}`"
        else:
            tok = AutoTokenizer.from_pretrained(str(d))
            if not getattr(tok, "is_fast", False):
                raise SystemExit(f"{d}: tokenizer.json did not load as a fast tokenizer ({type(tok).__name__})")
            if getattr(tok, "padding_side", "right") != "right":
                log(f"note: {type(tok).__name__} pads on the {tok.padding_side}; SigLIP pools the last "
                    "position, so the bundle pads on the right like the model was trained")
                tok.padding_side = "right"
            backend = tok.backend_tokenizer
            backend.no_padding()
            backend.no_truncation()
            backend.save(str(tok_path), pretty=False)
            lowercase, strip_punct = True, False
            reference = lambda t: fam.hf_padded_ids(tok, t.lower(), context)  # noqa: E731
            how = f"{type(tok).__name__} tokenizer.json as transformers loads it, text lower-cased first"
        if tok.pad_token_id is None:
            raise SystemExit(f"{d}: the tokenizer has no pad token")
        pad_id = int(tok.pad_token_id)
        texts = cb.VERIFY_PHRASES + fam.TOKENIZER_CHECK_TEXTS
        bad = fam.check_engine_ids(tok_path, reference, texts, context, pad_id, lowercase, strip_punct)
        if bad:
            raise SystemExit("tokenizer.json (after the engine's canonicalisation) disagrees with "
                             f"{type(tok).__name__}:\n" + "\n".join(bad))
        log(f"tokenizer.json: padded ids equal {type(tok).__name__} on {len(texts)} strings")
        src.sections["text"] = {"tokenizer": "hf", "lowercase": lowercase, "strip_punctuation": strip_punct,
                                "pad_id": pad_id, "pad_to": "context", "pooling": "last"}
        src.reference["tokenizer"] = how
        return VerifyInputs([reference(t) for t in cb.VERIFY_PHRASES], vc.image_size, context, pad_id, "context")

    src = Source(
        name=args.name or d.name,
        kind="transformers",
        checkpoint=str(args.hf),
        seed=None,
        family=family,
        image_encoder=w_["SiglipImageEncoder"](model).eval(),
        text_encoder=w_["SiglipTextEncoder"](model).eval(),
        ref_image=lambda x: cb.hf_image_features(model, x),
        ref_text=lambda ids: cb.hf_text_features(model, ids),
        ref_text_fixed_length=context,
        embed_dim=int(tc.projection_size),
        image_size=int(vc.image_size),
        mean=[float(x) for x in proc.image_mean],
        std=[float(x) for x in proc.image_std],
        logit_scale=scale,
        context_length=context,
        sections={"preprocess": {"resize": "squash", "resample": fam.PIL_RESAMPLE[resample]},
                  "scoring": {"kind": "sigmoid", "logit_bias": bias}},
        reference={"image": f"transformers {proc_cls.__name__} ({d / 'preprocessor_config.json'})",
                   "scores": "SiglipModel: sigmoid(logit_scale * cos + logit_bias)"},
        architecture={"family": family, "model": "transformers SiglipModel",
                      "vision": {"width": vc.hidden_size, "layers": vc.num_hidden_layers,
                                 "heads": vc.num_attention_heads, "mlp": vc.intermediate_size,
                                 "patch_size": vc.patch_size, "image_size": vc.image_size,
                                 "activation": vc.hidden_act, "pooling": "attention head (probe)"},
                      "text": {"width": tc.hidden_size, "layers": tc.num_hidden_layers,
                               "heads": tc.num_attention_heads, "mlp": tc.intermediate_size,
                               "vocab_size": tc.vocab_size, "max_positions": tc.max_position_embeddings,
                               "activation": tc.hidden_act, "projection": tc.projection_size}},
    )
    src.write_tokenizer = write_tokenizer_siglip
    return src


def load_open_clip_model(args):
    """The open_clip model and its preprocess cfg, never downloading when --checkpoint is given:
    NAME + TAG (+ FILE): the tag's published preprocessing (get_pretrained_cfg), weights from FILE
    or, without FILE, downloaded/cached by open_clip as before; local-dir:FOLDER: open_clip's own
    folder format. Registers the fixtures' tiny timm towers first (families.register_tiny_timm_models)."""
    import open_clip

    fam.register_tiny_timm_models()
    name = args.open_clip
    if name.startswith("local-dir:"):
        log(f"loading open_clip {name}")
        model = open_clip.create_model(name, device="cpu", precision="fp32")
        return model.eval(), name
    pretrained = None if args.pretrained.lower() in ("none", "") else args.pretrained
    if args.checkpoint:
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
        if pretrained and not tag_cfg:
            raise SystemExit(f"open_clip {name}: unknown pretrained tag {pretrained!r} "
                             f"(known: {open_clip.list_pretrained_tags_by_model(name)})")
        log(f"loading open_clip {name} with the preprocessing of tag {pretrained}, weights {args.checkpoint}")
        model = open_clip.create_model(name, pretrained=None, device="cpu", precision="fp32",
                                       force_preprocess_cfg=tag_cfg)
        open_clip.load_checkpoint(model, args.checkpoint)
        return model.eval(), f"{name}/{args.pretrained} ({args.checkpoint})"
    log(f"loading open_clip {name} pretrained={pretrained}")
    model = open_clip.create_model(name, pretrained=pretrained, device="cpu", precision="fp32")
    return model.eval(), f"{name}/{args.pretrained}"


def timm_tower_name(model) -> str | None:
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    return getattr(trunk, "default_cfg", {}).get("architecture") if trunk is not None else None


def timm_stages(model) -> dict | None:
    """Blocks and channels per stage of a timm tower (the tiny fixtures shrink these)."""
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    stages = getattr(trunk, "stages", None)
    info = getattr(trunk, "feature_info", None)
    if stages is None or not info:
        return None
    return {"blocks": [len(getattr(st, "blocks", [])) for st in stages],
            "channels": [int(fi["num_chs"]) for fi in info][:len(stages)]}


def load_open_clip(args) -> Source:
    import open_clip
    import torch
    from open_clip.tokenizer import SimpleTokenizer

    model, checkpoint = load_open_clip_model(args)
    pretrained = (args.pretrained or "").lower() not in ("none", "") or bool(args.checkpoint)
    if args.open_clip.startswith("local-dir:"):
        pretrained = any(Path(args.open_clip[len("local-dir:"):]).glob("open_clip_*model*"))
    tok = open_clip.get_tokenizer(args.open_clip)
    if not isinstance(tok, SimpleTokenizer) or getattr(tok, "context_length", cb.CONTEXT_LENGTH) != cb.CONTEXT_LENGTH:
        raise SystemExit(f"open_clip {args.open_clip}: tokenizer {type(tok).__name__} is not CLIP's SimpleTokenizer "
                         f"with context {cb.CONTEXT_LENGTH}; this bundle format ships the CLIP BPE tokenizer only")
    pcfg = open_clip.get_model_preprocess_cfg(model)
    size = pcfg.get("size", model.visual.image_size)
    size = size if isinstance(size, int) else size[0]
    w = cb.wrappers()
    text_encoder = w["OpenClipTextEncoder"](model).eval()
    tower = timm_tower_name(model)
    is_mci = bool(tower) and tower.startswith("fastvit_mci")
    standard = (pcfg.get("interpolation", "bicubic") == "bicubic" and pcfg.get("resize_mode", "shortest") == "shortest"
                and text_encoder.causal and not is_mci)
    if not standard:
        return open_clip_format2_source(args, model, checkpoint, pretrained, pcfg, int(size), text_encoder, tower)
    with torch.no_grad():
        dummy = model.encode_image(torch.zeros(1, 3, size, size))
    scale = model.logit_scale.exp().item() if hasattr(model, "logit_scale") else 100.0
    if getattr(model, "logit_bias", None) is not None:
        log("warning: model has a logit_bias (SigLIP-style); the bundle records only logit_scale")
    return Source(
        name=args.name or f"{args.open_clip}-{args.pretrained}",
        kind="open_clip" if pretrained else "random-init",
        checkpoint=f"{args.open_clip}/{args.pretrained}",
        seed=None,
        image_encoder=w["OpenClipImageEncoder"](model).eval(),
        text_encoder=text_encoder,
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


def open_clip_format2_source(args, model, checkpoint: str, pretrained: bool, pcfg: dict, size: int,
                             text_encoder, tower: str | None) -> Source:
    """A format-2 source for an open_clip model whose preprocessing or text tower differs from
    format 1's defaults (MobileCLIP / MobileCLIP 2: family mobileclip). The exported image tower is a
    reparameterised copy (timm.utils.reparameterize_model: MobileOne / RepMixer / RepCPE / large-kernel
    branches folded into single convs) with timm's fused attention off (plain MatMul/Softmax); the
    library's encode_image on the original model stays the reference."""
    import timm.utils
    import torch

    if getattr(model, "logit_bias", None) is not None:
        raise SystemExit(f"open_clip {args.open_clip}: has a logit_bias (SigLIP); export the transformers "
                         "SiglipModel with --hf instead")
    deploy = timm.utils.reparameterize_model(model)  # a deep copy: `model` stays the reference
    unfused = 0
    for m in deploy.modules():
        if getattr(m, "fused_attn", False):
            m.fused_attn = False
            unfused += 1
    log(f"reparameterised the image tower ({tower}); {unfused} attention module(s) set to plain ops")
    with torch.no_grad():
        dummy = model.encode_image(torch.zeros(1, 3, size, size))
    w = cb.wrappers()
    sections = fam.open_clip_sections(pcfg, text_encoder)
    family = "mobileclip" if (tower or "").startswith("fastvit_mci") or not text_encoder.causal else "clip"

    def write_tokenizer_open_clip(out: Path) -> "VerifyInputs":
        oc = write_tokenizer(out, args.bpe)
        rows = [cb.open_clip_ids(oc, t) for t in cb.VERIFY_PHRASES]
        return VerifyInputs(rows, size, cb.CONTEXT_LENGTH, 0, sections["text"]["pad_to"])

    src = Source(
        name=args.name or args.open_clip.replace("local-dir:", "").rstrip("/").split("/")[-1]
        + (f"-{args.pretrained}" if args.pretrained else ""),
        kind="open_clip" if pretrained else "random-init",
        checkpoint=checkpoint,
        seed=None,
        family=family,
        image_encoder=w["OpenClipImageEncoder"](deploy).eval(),
        text_encoder=w["OpenClipTextEncoder"](deploy).eval(),
        ref_image=lambda x: model.encode_image(x, normalize=False),
        ref_text=lambda ids: model.encode_text(ids, normalize=False),
        ref_text_fixed_length=cb.CONTEXT_LENGTH,
        embed_dim=int(dummy.shape[-1]),
        image_size=size,
        mean=[float(x) for x in pcfg.get("mean", cb.OPENAI_CLIP_MEAN)],
        std=[float(x) for x in pcfg.get("std", cb.OPENAI_CLIP_STD)],
        logit_scale=float(model.logit_scale.exp().item()),
        context_length=cb.CONTEXT_LENGTH,
        sections=sections,
        reference={"image": f"open_clip image_transform (eval) with {dict(pcfg)}",
                   "tokenizer": "open_clip SimpleTokenizer (clean=lower), zero-padded to 77",
                   "scores": "softmax over phrases of logit_scale * cos"},
        architecture={"family": family, "model": args.open_clip, "image_tower": tower,
                      "image_stages": timm_stages(model),
                      "text": {"width": int(text_encoder.t.transformer.width),
                               "layers": int(text_encoder.t.transformer.layers),
                               "heads": int(text_encoder.t.heads) if hasattr(text_encoder.t, "heads") else None,
                               "causal": bool(text_encoder.causal), "pooling": text_encoder.pooling},
                      "reparameterized": True},
    )
    src.write_tokenizer = write_tokenizer_open_clip
    return src


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
    """The verification inputs: cb.VERIFY_PHRASES as id rows padded with `pad_id` to the context
    (`ids77`, named for CLIP's 77), their longest real length (`real_len`; the context when the
    rows come padded), the lengths the text graph is checked at (`lengths`: the context, plus
    the real length unless the tower needs `pad_to: context`), and 3 seeded random pixel
    tensors (`pix`)."""

    def __init__(self, rows, image_size: int, context: int = cb.CONTEXT_LENGTH, pad_id: int = 0,
                 pad_to: str = "longest"):
        import torch

        self.rows = rows
        self.context = context
        self.pad_to = pad_to
        self.real_len = max(len(r) for r in self.rows)
        self.ids77 = torch.from_numpy(cb.pad_ids(self.rows, context, pad_id))
        self.lengths = (context, self.real_len) if pad_to == "longest" else (context,)
        g = torch.Generator().manual_seed(1234)
        self.pix = torch.randn(3, 3, image_size, image_size, generator=g)

    @classmethod
    def clip(cls, oc, image_size: int) -> "VerifyInputs":
        return cls([cb.open_clip_ids(oc, t) for t in cb.VERIFY_PHRASES], image_size)


def verify_wrappers(src: Source, vi: VerifyInputs) -> dict[str, float]:
    """Max abs differences of the export wrappers against the library's own forward, and of
    the text wrapper at the real length against 77 tokens."""
    import torch

    real_len, ids77 = vi.real_len, vi.ids77
    diffs: dict[str, float] = {}
    with torch.no_grad():
        ref_image = src.ref_image(vi.pix)
        diffs["image_wrapper_vs_reference"] = cb.max_abs_diff(src.image_encoder(vi.pix), ref_image)
        ref77 = src.ref_text(ids77)
        # The tolerance is absolute for outputs up to 1 in magnitude, relative to the largest
        # output above that (a FastViT's embeddings reach ~100 on random inputs).
        src.output_scale = {"image": max(1.0, float(ref_image.abs().max())), "text": max(1.0, float(ref77.abs().max()))}
        wrap77 = src.text_encoder(ids77)
        diffs[f"text_wrapper_vs_reference_L{vi.context}"] = cb.max_abs_diff(wrap77, ref77)
        if vi.pad_to == "longest":
            wrap_short = src.text_encoder(ids77[:, :real_len])
            diffs[f"text_wrapper_L{real_len}_vs_L{vi.context}"] = cb.max_abs_diff(wrap_short, wrap77)
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
    # Trace at a length that is neither 77 nor the test lengths, so no length is baked in (towers
    # fed padded to the context: at the context; the sequence axis stays dynamic either way).
    trace_len = vi.real_len + 3 if vi.pad_to == "longest" else vi.context
    txt_facts = cb.export_onnx(src.text_encoder, vi.ids77[:2, :trace_len], txt_path, cb.TEXT_INPUT,
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
            for length in vi.lengths:
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
    if src.family is not None:  # format 2: the sections are the manifest's own; the rest informational
        informational = {"architecture": src.architecture, "reference": src.reference}
        format2 = dict(family=src.family, context_length=int(src.context_length), **src.sections)
    else:
        informational = {
            "architecture": src.architecture,
            "preprocess": src.preprocess,
            **({"training": src.training} if getattr(src, "training", None) else {}),
            "text": {"sot_id": cb.SOT_ID, "eot_id": cb.EOT_ID, "pooling": "first_eot",
                     "cleaning": "open_clip _clean_lower (ftfy.fix_text, html.unescape x2, whitespace collapse, lower)"},
        }
        format2 = {}
    return cb.BundleInfo(
        name=src.name, source_kind=src.kind, checkpoint=src.checkpoint, seed=src.seed,
        embed_dim=int(src.embed_dim), image_size=int(src.image_size),
        image_mean=src.mean, image_std=src.std, logit_scale=src.logit_scale,
        **format2,
        extra={
            **informational,
            "export": {
                "exporter": img_facts["exporter"], "opset": args.opset,
                "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                "open_clip": oc_version, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "python": platform.python_version(),
                "image_encoder_ops": img_facts["ops"], "text_encoder_ops": txt_facts["ops"],
                "max_abs_diff_torch": {k: float(f"{v:.3g}") for k, v in diffs.items()},
                "max_abs_diff_onnxruntime_vs_torch": {k: float(f"{v:.3g}") for k, v in ort_diffs.items()},
                **({"max_abs_output": {k: float(f"{v:.3g}") for k, v in src.output_scale.items()}}
                   if src.family is not None else {}),
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

    if src.family is None:
        vi = VerifyInputs.clip(write_tokenizer(out, args.bpe), src.image_size)
    else:
        vi = src.write_tokenizer(out)
    diffs = verify_wrappers(src, vi)
    img_facts, txt_facts = export_graphs(src, vi, out, args.opset)
    ort_diffs = verify_onnxruntime(src, vi, out, args.threads)
    worst = max(v / src.output_scale["image" if "image" in k else "text"]
                for k, v in list(diffs.items()) + list(ort_diffs.items()))
    if not math.isfinite(worst) or worst > args.tolerance:
        raise SystemExit(f"verification failed: max abs diff {worst} (relative to outputs larger than 1: "
                         f"{src.output_scale}) > tolerance {args.tolerance}")

    manifest = cb.write_manifest(out, bundle_info(src, args, img_facts, txt_facts, diffs, ort_diffs))
    cb.verify_bundle_hashes(out)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    print(f"wrote {manifest} ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sizes.items())}) "
          f"in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
