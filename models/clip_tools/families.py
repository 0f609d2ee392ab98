"""Model families beyond the OpenAI-style CLIP ViTs: what a format-2 bundle says about them
(docs/bundle-format.md), their tokenizers, and the tiny architectures of the test fixtures.

    MobileCLIP / MobileCLIP 2   open_clip CustomTextCLIP: a timm FastViT MCi image tower
                                (reparameterisable convs, RepMixer stages, attention last stage)
                                and, for the S-models, a bidirectional text tower that attends
                                to its zero padding: fed 77 ids, pooled at the largest id.
                                Preprocessing is open_clip's own transform (torchvision Resize +
                                CenterCrop on the PIL image, then convert("RGB")).
    SigLIP                      transformers SiglipModel: squash resize, a SentencePiece
                                tokenizer (SiglipTokenizer) behind a canonicalisation (lower-case,
                                punctuation removed, whitespace collapsed), ids padded with `</s>`
                                to 64 and pooled at the last position; sigmoid scoring with a bias.
    SigLIP 2 (fixed resolution) SiglipModel with the Gemma byte-fallback BPE (tokenizer.json),
                                lower-cased text, `<pad>` padding to 64.

Used by clip_tools.export (format-2 bundles) and tests/data/families/generate.py (fixtures
and goldens).
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Any, Callable, Sequence

SIGLIP_CONTEXT = 64
SPIECE_UNDERLINE = "\u2581"

# ---------------------------------------------------------------------------
# Format-2 sections
# ---------------------------------------------------------------------------

OPEN_CLIP_RESIZE = {"shortest": "shortest_edge_crop", "squash": "squash"}
PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values


def open_clip_sections(pcfg: dict[str, Any], text_encoder, logit_scale_known: bool = True) -> dict[str, Any]:
    """preprocess / text / scoring for an open_clip model, from its preprocess cfg (open_clip's
    get_model_preprocess_cfg: mean, std, interpolation, resize_mode) and the export text wrapper
    (bundle.OpenClipTextEncoder: causal -> first_eot, bidirectional -> argmax_eot, padded to 77)."""
    mode = pcfg.get("resize_mode", "shortest")
    if mode not in OPEN_CLIP_RESIZE:
        raise SystemExit(f"open_clip resize_mode {mode!r} (letterbox): not supported by the bundle format")
    interp = pcfg.get("interpolation", "bicubic")
    if interp not in ("bicubic", "bilinear"):
        raise SystemExit(f"open_clip interpolation {interp!r}: not supported by the bundle format")
    pre = {"resize": OPEN_CLIP_RESIZE[mode], "resample": interp}
    if pre["resize"] == "shortest_edge_crop":
        pre["crop_offset"] = "round_half_even"  # torchvision CenterCrop: int(round((d - S) / 2))
    causal = text_encoder.causal
    text = {"tokenizer": "clip", "pad_id": 0, "pad_to": "longest" if causal else "context",
            "pooling": text_encoder.pooling}
    return {"preprocess": pre, "text": text, "scoring": {"kind": "softmax"}}


def float32_repr(x: float) -> float:
    """The shortest decimal that reads back as the same float32 (what the graph / torch hold)."""
    import numpy as np

    return float(str(np.float32(x)))


# ---------------------------------------------------------------------------
# SigLIP tokenizers
# ---------------------------------------------------------------------------

def siglip_canonicalize(text: str, lowercase: bool = True, strip_punctuation: bool = True) -> str:
    """What the engine does before running tokenizer.json for `tokenizer: hf` with
    `lowercase` / `strip_punctuation` (docs/bundle-format.md), transcribing SiglipTokenizer:
    tokenize() replaces U+2581 by a space; _tokenize() calls canonicalize_text(): str.lower()
    (do_lower_case), string.punctuation removed, runs of Python-regex \\s (str.isspace()
    characters) -> one space, str.strip(). Without strip_punctuation only the lower-casing."""
    if lowercase:
        text = text.lower()
    if not strip_punctuation:
        return text
    text = text.replace(SPIECE_UNDERLINE, " ")
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def convert_siglip_spm(tokenizer, out_path: str | os.PathLike) -> None:
    """tokenizer.json for a slow SiglipTokenizer (spiece.model, a T5-style Unigram model):
    transformers' SpmConverter pipeline (the model's precompiled nmt_nfkc charsmap, right
    strip, Metaspace with the "\u2581" prefix always added, Unigram with the spiece scores) plus
    the post-processor SiglipTokenizer applies (`$A </s>`). Canonicalisation is NOT in it: the
    engine does it first (siglip_canonicalize)."""
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import SpmConverter

    backend = SpmConverter(tokenizer).converted()
    eos = str(tokenizer.eos_token)
    eos_id = int(tokenizer.eos_token_id)
    backend.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                           special_tokens=[(eos, eos_id)])
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out_path), pretty=False)


def engine_ids(tokenizer_json: str | os.PathLike, texts: Sequence[str], context: int, pad_id: int,
               lowercase: bool, strip_punctuation: bool) -> list[list[int]]:
    """The ids the engine feeds the text tower for `tokenizer: hf, pad_to: context`:
    canonicalise, run tokenizer.json (its post-processor adds the special tokens), truncate to
    `context` keeping the special tokens (tokenizers' own truncation, as transformers'
    truncation=True), pad with `pad_id` to `context`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=context)
    out = []
    for t in texts:
        ids = tok.encode(siglip_canonicalize(t, lowercase, strip_punctuation)).ids
        out.append(ids + [pad_id] * (context - len(ids)))
    return out


def check_engine_ids(tokenizer_json, reference: Callable[[str], list[int]], texts: Sequence[str], context: int,
                     pad_id: int, lowercase: bool, strip_punctuation: bool) -> list[str]:
    """Mismatch descriptions between engine_ids and the reference tokenizer (empty when equal)."""
    got = engine_ids(tokenizer_json, texts, context, pad_id, lowercase, strip_punctuation)
    bad = []
    for t, g in zip(texts, got):
        want = reference(t)
        if g != want:
            bad.append(f"{t!r}: tokenizer.json {g} != reference {want}")
    return bad


def hf_padded_ids(tokenizer, text: str, context: int) -> list[int]:
    """transformers' ids as a SigLIP model is fed: padding="max_length", truncation=True."""
    return list(tokenizer(text, padding="max_length", max_length=context, truncation=True)["input_ids"])


# Strings the exporter checks tokenizer.json against the reference tokenizer on (texts with a
# literal special-token string such as "</s>" are left out: the reference splits them off
# before canonicalising, the engine does not).
TOKENIZER_CHECK_TEXTS = [
    "a photo of a red cup.",
    "Pick up the BLUE ball, and put it in the drawer!",
    "",
    "   ",
    "stop",
    "Hello, World! It's 3.14 o'clock; we're done.",
    "don't   STOP\tnow\nplease",
    "naïve café ΟΔΟΣ 東京 😀 👩‍💻",
    "x \u2581 y",
    "İstanbul ΣΑΣ Straße",
    "(parenthesised) [bracketed] {braced} <angled> #hash @at $dollar %percent ^caret &amp *star",
    "a robot arm grasping a yellow sponge on a wooden table next to a sink full of dishes " * 4,
]


# ---------------------------------------------------------------------------
# Tiny architectures of the committed fixtures
# ---------------------------------------------------------------------------

# MobileCLIP2-S0's timm image tower, fastvit_mci0 (layers (2, 6, 10, 2), dims (64, 128, 256,
# 512), RepMixer x3 + attention stage with RepCPE, SE in the last two downsamplings,
# lkc_use_act, MobileOne stem and final conv), shrunk: one block per stage, dims (8, 16, 32, 64).
TINY_FASTVIT = "fastvit_mci0_tiny"
TINY_FASTVIT_ARGS = dict(layers=(1, 1, 1, 1), embed_dims=(8, 16, 32, 64))

# open_clip model config of MobileCLIP2-S0 (open_clip/model_configs/MobileCLIP2-S0.json) with
# the tiny tower, embed_dim 512 -> 16 and the text tower 512 wide x 12 layers x 8 heads -> 8 x 2 x 2
# (same vocab 49408, context 77, no causal mask, argmax pooling, no pad mask).
TINY_MOBILECLIP2_CFG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"timm_model_name": TINY_FASTVIT, "timm_model_pretrained": False, "timm_pool": "avg",
                   "timm_proj": None, "timm_drop": 0.0, "timm_drop_path": 0.0, "image_size": 256},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2,
                 "no_causal_mask": True},
    "custom_text": True,
}


def register_tiny_timm_models() -> None:
    """Register TINY_FASTVIT with timm (idempotent), so open_clip's TimmModel can build it by
    name: timm's own fastvit_mci0 entry point with TINY_FASTVIT_ARGS."""
    import timm
    from timm.models import register_model
    from timm.models.fastvit import fastvit_mci0

    if TINY_FASTVIT in timm.list_models(TINY_FASTVIT):
        return

    def fastvit_mci0_tiny(pretrained=False, **kwargs):
        return fastvit_mci0(pretrained=pretrained, **dict(TINY_FASTVIT_ARGS, **kwargs))

    fastvit_mci0_tiny.__module__ = "timm.models.fastvit"  # timm files entry points by module
    register_model(fastvit_mci0_tiny)


# google/siglip-base-patch16-224/preprocessor_config.json (the tiny fixture's and the families
# benchmark's SiglipModel folders get it).
SIGLIP_B16_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}


def tiny_siglip_config(vocab_size: int):
    """transformers SiglipConfig: google/siglip-base-patch16-224's architecture (patch 16 on
    224 x 224, attention-pooling head, gelu_pytorch_tanh, LayerNorm eps 1e-6, text context 64,
    last-position pooling + linear head) at width 32, 2 layers, 2 heads, MLP 64."""
    from transformers import SiglipConfig

    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, attention_dropout=0.0)
    text = dict(common, vocab_size=vocab_size, max_position_embeddings=SIGLIP_CONTEXT, projection_size=32,
                pad_token_id=1, eos_token_id=1, bos_token_id=None)
    vision = dict(common, image_size=224, patch_size=16, num_channels=3, vision_use_head=True)
    cfg = SiglipConfig(text_config=text, vision_config=vision)
    cfg._attn_implementation = "eager"
    return cfg


def randomize_fastvit_trunk(trunk, g, calibration=None) -> None:
    """Random weights for a timm FastViT MCi trunk whose output depends on its input (timm's
    init, trunc-normal std 0.02 and layer scales 1e-5, makes it nearly constant): weights
    N(0, 1/fan_in), zero biases, layer scales U(0.5, 1), BatchNorm affine randomised and its
    statistics measured on 16 seeded smooth random images (a train-mode pass), as a trained
    model's would be, so reparameterisation folds real values. `g`: a seeded torch.Generator;
    `calibration`: a function of `g` giving other calibration images [N, 3, 256, 256] instead.
    (Smooth images alone leave the filters that see high frequencies with tiny variances, so
    noise inputs, such as an export's verification pixels, reach activations of ~1e3 in a
    deep tower, where its attention stage turns ill-conditioned.)"""
    import torch

    with torch.no_grad():
        for m in trunk.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
        for name, p in trunk.named_parameters():
            if "layer_scale" in name:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
        if calibration is None:
            images = torch.nn.functional.interpolate(torch.rand(16, 3, 16, 16, generator=g), size=256,
                                                     mode="bilinear", align_corners=False)
        else:
            images = calibration(g)
        trunk.train()
        trunk(images)
        trunk.eval()
        for m in trunk.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1


# ---------------------------------------------------------------------------
# The reference preprocessing, transcribed (tests/data/families/generate.py checks these equal
# the libraries bit for bit on every golden image; docs/bundle-format.md spells them out)
# ---------------------------------------------------------------------------

def transformers_rgb(im):
    """transformers.image_transforms.convert_to_rgb: alpha composited on white (see
    tests/data/preprocess/README.md); other modes convert("RGB")."""
    from PIL import Image

    if "A" in im.getbands() or im.info.get("transparency") is not None:
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def normalize(pixels_hwc, mean, std, f32_division: bool):
    """[1, 3, H, W] float32 from uint8 [H, W, 3]: / 255 then (x - mean) / std in float32."""
    import numpy as np

    if f32_division:  # torchvision to_tensor: uint8 -> float32, / 255 in float32
        x = pixels_hwc.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    else:  # transformers rescale: x * (1/255) in float64, then float32
        x = (pixels_hwc.transpose(2, 0, 1).astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return ((x - m) / s)[None].astype(np.float32)


def siglip_pil_pipeline(im, size: int, resample: int, mean, std):
    """SiglipImageProcessorPil: RGB (alpha on white), squash resize to size x size with
    PIL's filter (reducing_gap None), rescale (float64 1/255), normalize (float32)."""
    import numpy as np

    im = transformers_rgb(im).resize((size, size), resample)
    return normalize(np.asarray(im), mean, std, f32_division=False)


def resize_shortest_edge(im, size: int, resample: int):
    """Short side to `size`, long side int(size * long / short) (torchvision's Resize and
    CLIPImageProcessor alike); returns the image and its new (width, height)."""
    w, h = im.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    return im, (nw, nh)


def open_clip_pil_pipeline(im, size: int, resample: int, mean, std):
    """open_clip image_transform (eval, resize_mode shortest): torchvision Resize(size) on the
    PIL image IN ITS OWN MODE (RGBA is resized premultiplied by PIL, P with nearest), then
    CenterCrop with offsets int(round((d - size) / 2)) (round half to even), then
    convert("RGB") (alpha dropped, NOT composited), to_tensor (float32 / 255), normalize."""
    import numpy as np

    im, (nw, nh) = resize_shortest_edge(im, size, resample)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    im = im.crop((left, top, left + size, top + size)).convert("RGB")
    return normalize(np.asarray(im), mean, std, f32_division=True)


def transformers_crop_pipeline(im, size: int, resample: int, mean, std):
    """CLIPImageProcessor (format 1's pipeline, `shortest_edge_crop` with `crop_offset: floor`):
    RGB (alpha on white), short side to size (long side int(size * long / short)), centre crop
    at (d - size) // 2, rescale (float64 1/255), normalize (float32)."""
    import numpy as np

    im = transformers_rgb(im)
    im, (nw, nh) = resize_shortest_edge(im, size, resample)
    top, left = (nh - size) // 2, (nw - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return normalize(np.asarray(im), mean, std, f32_division=False)


def bundle_pixels(im, manifest: dict[str, Any]):
    """[1, 3, S, S] float32 pixel values of a PIL image as the bundle's family reference makes
    them, following a format-2 manifest's `preprocess` section (squash: SigLIP's processor;
    shortest_edge_crop with round_half_even: open_clip's transform; with floor: transformers'
    CLIP processor, also format 1's meaning)."""
    from PIL import Image

    pre = manifest.get("preprocess") if int(manifest.get("format_version", 1)) >= 2 else None
    pre = pre or {"resize": "shortest_edge_crop", "resample": "bicubic", "crop_offset": "floor"}
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[pre["resample"]]
    args = (im, int(manifest["image_size"]), resample, manifest["image_mean"], manifest["image_std"])
    if pre["resize"] == "squash":
        return siglip_pil_pipeline(*args)
    if pre.get("crop_offset", "floor") == "round_half_even":
        return open_clip_pil_pipeline(*args)
    return transformers_crop_pipeline(*args)


def bundle_text_ids(bundle_dir: str | os.PathLike, manifest: dict[str, Any], texts: Sequence[str]):
    """int64 [N, L] ids the engine feeds the bundle's text tower for `texts`: the manifest's
    `text` section (format 1: CLIP BPE, zero-padded to the longest row)."""
    import numpy as np

    from clip_tools import bundle as cb

    text = manifest.get("text") if int(manifest.get("format_version", 1)) >= 2 else None
    text = text or {"tokenizer": "clip", "pad_id": 0, "pad_to": "longest"}
    context = int(manifest["context_length"])
    if text["tokenizer"] == "hf":
        tok = Path(bundle_dir) / manifest["files"]["tokenizer"]["path"]
        return np.asarray(engine_ids(tok, texts, context, int(text["pad_id"]), bool(text.get("lowercase")),
                                     bool(text.get("strip_punctuation"))), dtype=np.int64)
    oc = cb.open_clip_simple_tokenizer()
    rows = [cb.open_clip_ids(oc, t, context) for t in texts]
    length = context if text["pad_to"] == "context" else max(len(r) for r in rows)
    return cb.pad_ids(rows, length, int(text["pad_id"]))


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
