"""Build and write CLIP model bundles: the folder the Rust engine loads.

A bundle is a folder with

    model.yaml           manifest (format_version 1): name, source, embed dim, image size,
                         mean/std, logit scale, context length, files with sha256;
                         format_version 2 adds `family`, `preprocess`, `text` and `scoring`
                         (docs/bundle-format.md), written for MobileCLIP and SigLIP exports
    image_encoder.onnx   pixel_values f32 [N,3,S,S] -> image_embeds f32 [N,D]
    text_encoder.onnx    input_ids i64 [N,L] -> text_embeds f32 [N,D]
    tokenizer.json       Hugging Face tokenizers file for the CLIP BPE vocabulary

Both encoders return *projected, unnormalised* features (what transformers'
`CLIPModel.get_image_features` / `get_text_features` and open_clip's
`encode_image` / `encode_text(normalize=False)` return). The text encoder pools
at the FIRST end-of-text token (id 49407), so it is correct for any sequence
length L: CLIP's text tower is causal, so padding after the end-of-text token
changes nothing and the caller may run at the batch's real token length.

The encoders are exported from small wrapper modules written here with plain
tensor ops (MatMul, Softmax, LayerNormalization, Range/Greater/Where for the
causal mask, ArgMax + Gather for pooling) so the graphs do not depend on
version-specific attention/masking code paths of transformers or open_clip and
stay runnable by tract-onnx. The wrappers are checked against the library's own
forward (`get_*_features`, `encode_*`) before export, and the exported graphs are
checked against the wrappers with onnxruntime.

This module is importable by other tools (training, quantization):
`sha256_file`, `write_manifest`, `read_manifest`, `build_tokenizer_json`,
`random_init_clip`, `HFImageEncoder`, `HFTextEncoder`, ... .
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only; torch is imported lazily
    import torch

# ---------------------------------------------------------------------------
# Constants of the CLIP family (OpenAI checkpoints and open_clip's SimpleTokenizer)
# ---------------------------------------------------------------------------

FORMAT_VERSION = 1
FORMAT_VERSION_FAMILIES = 2  # the manifest with family / preprocess / text / scoring sections
# The sections format 2 adds, with the keys each may hold (docs/bundle-format.md).
FORMAT2_SECTIONS: dict[str, tuple[str, ...]] = {
    "preprocess": ("resize", "resample", "crop_offset"),
    "text": ("tokenizer", "lowercase", "strip_punctuation", "pad_id", "pad_to", "pooling"),
    "scoring": ("kind", "logit_bias"),
}
FAMILIES = ("clip", "mobileclip", "siglip", "siglip2")
SOT_ID = 49406  # <|startoftext|>
EOT_ID = 49407  # <|endoftext|>
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_OPSET = 17

IMAGE_INPUT = "pixel_values"
IMAGE_OUTPUT = "image_embeds"
TEXT_INPUT = "input_ids"
TEXT_OUTPUT = "text_embeds"
IMAGE_FILE = "image_encoder.onnx"
TEXT_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "model.yaml"

# Architectures reproducible from random weights. Values are those of the
# released checkpoints' config.json (openai/clip-vit-base-patch32,
# openai/clip-vit-large-patch14); `tiny` is the same architecture shrunk for
# committed test fixtures.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit-b-32": {
        "reference_checkpoint": "openai/clip-vit-base-patch32",
        "projection_dim": 512,
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, patch_size=32, image_size=224),
        "text": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8),
    },
    "vit-l-14": {
        "reference_checkpoint": "openai/clip-vit-large-patch14",
        "projection_dim": 768,
        "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                       num_attention_heads=16, patch_size=14, image_size=224),
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12),
    },
    # The small CLIP trained by the project on synthetic tabletop scenes
    # (models/tabletop/train.py): the default bundle, models/tabletop/.
    "tabletop": {
        "reference_checkpoint": None,
        "projection_dim": 64,
        "vision": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=5,
                       num_attention_heads=4, patch_size=32, image_size=224),
        "text": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                     num_attention_heads=2),
    },
    "tiny": {
        "reference_checkpoint": None,
        "projection_dim": 16,
        "vision": dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, patch_size=32, image_size=224),
        "text": dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=2),
    },
}


# ---------------------------------------------------------------------------
# Files: sha256, manifest
# ---------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class BundleInfo:
    """Everything `model.yaml` says about a bundle except the file hashes."""

    name: str
    source_kind: str  # transformers | open_clip | random-init | trained
    checkpoint: str
    seed: int | None
    embed_dim: int
    image_size: int
    image_mean: Sequence[float]
    image_std: Sequence[float]
    logit_scale: float
    context_length: int = CONTEXT_LENGTH
    extra: dict[str, Any] = field(default_factory=dict)  # extra top-level keys
    # Format 2 only (all four set, or none for format 1): see docs/bundle-format.md.
    family: str | None = None
    preprocess: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    scoring: dict[str, Any] | None = None

    @property
    def format_version(self) -> int:
        return FORMAT_VERSION if self.family is None else FORMAT_VERSION_FAMILIES


def check_format2_sections(info: BundleInfo) -> None:
    """Raise unless the format-2 fields are complete and consistent (what the engine validates)."""
    if info.family not in FAMILIES:
        raise ValueError(f"family {info.family!r}: not one of {FAMILIES}")
    for key, allowed in FORMAT2_SECTIONS.items():
        sec = getattr(info, key)
        if not isinstance(sec, dict):
            raise ValueError(f"format 2 needs a `{key}:` section")
        unknown = sorted(set(sec) - set(allowed))
        if unknown:
            raise ValueError(f"{key}: unknown keys {unknown}")
    pre, text, sc = info.preprocess, info.text, info.scoring
    assert pre["resize"] in ("shortest_edge_crop", "squash"), pre
    assert pre["resample"] in ("bicubic", "bilinear"), pre
    assert pre.get("crop_offset", "floor") in ("floor", "round_half_even"), pre
    assert text["tokenizer"] in ("clip", "hf"), text
    assert text["pad_to"] in ("longest", "context"), text
    assert text["pooling"] in ("first_eot", "argmax_eot", "last"), text
    assert text["pooling"] != "last" or text["pad_to"] == "context", text
    assert text["tokenizer"] == "hf" or not (text.get("lowercase") or text.get("strip_punctuation")), text
    assert sc["kind"] in ("softmax", "sigmoid"), sc
    assert (sc["kind"] == "sigmoid") == (sc.get("logit_bias") is not None), sc


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        r = repr(float(v))
        if r in ("inf", "-inf", "nan"):
            return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[r]
        return r
    return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a valid YAML string


def _yaml_key(k: Any) -> str:
    """A mapping key that YAML reads back as a string (`1` or `true` would not be)."""
    k = str(k)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and k.lower() not in (
            "true", "false", "yes", "no", "on", "off", "null", "y", "n"):
        return k
    return json.dumps(k, ensure_ascii=False)


def _yaml_block(obj: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for k, v in obj.items():
        k = _yaml_key(k)
        if isinstance(v, dict):
            lines.append(f"{pad}{k}:")
            lines.extend(_yaml_block(v, indent + 1))
        elif isinstance(v, (list, tuple)):
            lines.append(f"{pad}{k}: [{', '.join(_yaml_scalar(x) for x in v)}]")
        else:
            lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    return lines


def write_manifest(bundle_dir: str | os.PathLike, info: BundleInfo) -> Path:
    """Write `model.yaml` for the three standard files already in `bundle_dir`: format 1, or
    format 2 when `info.family` is set (then with the family / preprocess / text / scoring
    sections right after context_length)."""
    d = Path(bundle_dir)
    version = info.format_version
    if version == FORMAT_VERSION_FAMILIES:
        check_format2_sections(info)
        clash = sorted({"family", *FORMAT2_SECTIONS} & set(info.extra))
        if clash:
            raise ValueError(f"extra manifest keys {clash} are format-2 sections")
    files = {
        "image_encoder": (IMAGE_FILE, IMAGE_INPUT, IMAGE_OUTPUT),
        "text_encoder": (TEXT_FILE, TEXT_INPUT, TEXT_OUTPUT),
        "tokenizer": (TOKENIZER_FILE, None, None),
    }
    lines = [
        "# CLIP model bundle manifest, written by models/export.py (models/clip_bundle.py).",
        f"format_version: {version}",
        f"name: {_yaml_scalar(info.name)}",
        "source:",
        f"  kind: {info.source_kind}",
        f"  checkpoint: {_yaml_scalar(info.checkpoint)}",
        f"  seed: {_yaml_scalar(info.seed)}",
        f"embed_dim: {int(info.embed_dim)}",
        f"image_size: {int(info.image_size)}",
        f"image_mean: [{', '.join(_yaml_scalar(float(x)) for x in info.image_mean)}]",
        f"image_std: [{', '.join(_yaml_scalar(float(x)) for x in info.image_std)}]",
        # 7 significant digits: the float32 value (exp(ln 100) = 100.00000762939453 -> 100.0)
        f"logit_scale: {_yaml_scalar(float(f'{float(info.logit_scale):.7g}'))}",
        f"context_length: {int(info.context_length)}",
    ]
    if version == FORMAT_VERSION_FAMILIES:
        lines.append(f"family: {info.family}")
        for key in FORMAT2_SECTIONS:
            lines.extend(_yaml_block({key: getattr(info, key)}, 0))
    lines += [
        "files:",
    ]
    for key, (fname, inp, out) in files.items():
        sha = sha256_file(d / fname)
        if inp is None:
            lines.append(f"  {key}: {{path: {fname}, sha256: {sha}}}")
        else:
            lines.append(f"  {key}: {{path: {fname}, sha256: {sha}, input: {inp}, output: {out}}}")
    lines.extend(_yaml_block(info.extra, 0))
    path = d / MANIFEST_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Round-trip check: the file must parse back to what we meant.
    parsed = read_manifest(d)
    assert parsed["format_version"] == version and parsed["embed_dim"] == info.embed_dim
    if version == FORMAT_VERSION_FAMILIES:
        for key in FORMAT2_SECTIONS:
            assert parsed[key] == json.loads(json.dumps(getattr(info, key))), (key, parsed[key])
    return path


def set_manifest_section(bundle_dir: str | os.PathLike, key: str, value: dict[str, Any]) -> Path:
    """Replace (or append) the top-level `key:` block of an existing `model.yaml`, leaving
    every other line as it is (e.g. evaluation metrics measured after export)."""
    if key in ("format_version", "name", "source", "files", "embed_dim", "image_size", "family",
               *FORMAT2_SECTIONS):
        raise ValueError(f"{key}: a core manifest field; re-export instead")
    path = Path(bundle_dir) / MANIFEST_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        top = bool(line) and not line[0].isspace()
        if top:
            skipping = line.split(":", 1)[0] == key
        if not skipping:
            kept.append(line)
    kept.extend(_yaml_block({key: value}, 0))
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    parsed = read_manifest(bundle_dir)
    assert parsed[key] == json.loads(json.dumps(value)), (parsed[key], value)
    return path


def set_manifest_file(bundle_dir: str | os.PathLike, key: str, fname: str, inp: str | None = None,
                      out: str | None = None) -> Path:
    """Add (or replace) the entry `key` of the `files:` block of an existing `model.yaml`
    with `fname` and its current sha256 (e.g. the int8 image encoder added after export)."""
    path = Path(bundle_dir) / MANIFEST_FILE
    sha = sha256_file(Path(bundle_dir) / fname)
    entry = f"  {key}: {{path: {fname}, sha256: {sha}"
    entry += f", input: {inp}, output: {out}}}" if inp else "}"
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("files:")
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    block = [line for line in lines[start + 1:end] if not line.startswith(f"  {key}:")]
    lines[start + 1:end] = block + [entry]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_manifest(bundle_dir)["files"][key]["sha256"] == sha
    return path


def read_manifest(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    import yaml

    with open(Path(bundle_dir) / MANIFEST_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def verify_bundle_hashes(bundle_dir: str | os.PathLike) -> None:
    """Raise if a file's sha256 differs from the manifest."""
    d = Path(bundle_dir)
    m = read_manifest(d)
    for key, entry in m["files"].items():
        actual = sha256_file(d / entry["path"])
        if actual != entry["sha256"]:
            raise ValueError(f"{d / entry['path']}: sha256 {actual} != manifest {entry['sha256']} ({key})")


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

def default_bpe_path() -> str:
    """`bpe_simple_vocab_16e6.txt.gz` shipped inside the open_clip_torch wheel."""
    import open_clip

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode char table (same order as open_clip)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges(bpe_path: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges exactly as open_clip's / OpenAI's SimpleTokenizer builds them.

    vocab = 256 byte chars + the same with '</w>' + one entry per merge
            + ['<|startoftext|>', '<|endoftext|>']  (ids 49406, 49407)
    """
    bpe_path = bpe_path or default_bpe_path()
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = {tok: i for i, tok in enumerate(vocab)}
    assert len(enc) == VOCAB_SIZE, len(enc)
    assert enc["<|startoftext|>"] == SOT_ID and enc["<|endoftext|>"] == EOT_ID
    return enc, merges  # type: ignore[return-value]


def build_tokenizer_json(out_path: str | os.PathLike, bpe_path: str | None = None) -> None:
    """Write a Hugging Face `tokenizer.json` for CLIP without any hub access.

    vocab.json + merges.txt are built like SimpleTokenizer builds its vocab, then
    converted by transformers' `CLIPTokenizerFast` (which is the CLIPConverter
    pipeline: NFC + whitespace-collapse + lowercase normalizer, CLIP split regex +
    ByteLevel pre-tokenizer, BPE with '</w>' suffix, <|startoftext|> ... <|endoftext|>
    post-processor). Note that it does NOT do OpenAI's ftfy/html cleaning.
    """
    from transformers import CLIPTokenizerFast

    vocab, merges = clip_vocab_and_merges(bpe_path)
    with tempfile.TemporaryDirectory() as tmp:
        vf = os.path.join(tmp, "vocab.json")
        mf = os.path.join(tmp, "merges.txt")
        with open(vf, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(mf, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            f.write("\n".join(" ".join(m) for m in merges) + "\n")
        tok = CLIPTokenizerFast(vocab_file=vf, merges_file=mf)
        if tok.backend_tokenizer.get_vocab_size() != VOCAB_SIZE:
            # Older/newer transformers may ignore *_file kwargs: pass the data directly.
            # (transformers 5 builds the tokenizers backend from vocab/merges objects).
            tok = CLIPTokenizerFast(vocab=vocab, merges=[tuple(m) for m in merges])
        backend = tok.backend_tokenizer
        assert backend.get_vocab_size() == VOCAB_SIZE, backend.get_vocab_size()
        assert backend.token_to_id("<|startoftext|>") == SOT_ID
        assert backend.token_to_id("<|endoftext|>") == EOT_ID
        backend.no_padding()
        backend.no_truncation()
        backend.save(str(out_path), pretty=False)


def open_clip_simple_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def open_clip_ids(tokenizer, text: str, context_length: int = CONTEXT_LENGTH) -> list[int]:
    """open_clip token ids: sot + encode(clean_lower(text)) + eot, truncated like open_clip
    (cut to context_length, last id set to eot); no zero padding."""
    ids = [tokenizer.sot_token_id] + tokenizer.encode(text) + [tokenizer.eot_token_id]
    if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = tokenizer.eot_token_id
    return ids


def check_tokenizer_json(path: str | os.PathLike, texts: Sequence[str]) -> list[str]:
    """Compare tokenizer.json (fed with open_clip-cleaned text) against open_clip ids.
    Returns a list of mismatch descriptions (empty when all agree)."""
    from open_clip.tokenizer import _clean_lower
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(path))
    oc = open_clip_simple_tokenizer()
    bad = []
    for t in texts:
        want = open_clip_ids(oc, t, 10 ** 6)
        got = hf.encode(_clean_lower(t)).ids
        if got != want:
            bad.append(f"{t!r}: tokenizer.json {got} != open_clip {want}")
    return bad


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

def clip_config(arch: str):
    """transformers CLIPConfig for a named architecture (see ARCHITECTURES)."""
    from transformers import CLIPConfig

    a = ARCHITECTURES[arch]
    text = dict(a["text"], vocab_size=VOCAB_SIZE, max_position_embeddings=CONTEXT_LENGTH,
                hidden_act="quick_gelu", layer_norm_eps=1e-5,
                bos_token_id=SOT_ID, eos_token_id=EOT_ID, pad_token_id=1)
    vision = dict(a["vision"], num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=a["projection_dim"],
                     logit_scale_init_value=math.log(100.0))
    cfg._attn_implementation = "eager"
    return cfg


def random_init_clip(arch: str, seed: int):
    """A transformers CLIPModel with the named architecture and seeded random weights
    (library default init), logit_scale = ln(100) so exp(logit_scale) = 100 like the
    released checkpoints. Deterministic for a given (arch, seed, torch, transformers)."""
    import torch
    from transformers import CLIPModel

    cfg = clip_config(arch)
    torch.manual_seed(seed)
    try:
        model = CLIPModel(cfg)
    except TypeError:
        model = CLIPModel._from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    model.config._attn_implementation = "eager"
    return model.eval()


def _torch():
    import torch

    return torch


def _make_wrappers():
    """Define the nn.Module wrappers lazily so importing this module needs no torch."""
    torch = _torch()
    nn = torch.nn

    def causal_mask(length_source: "torch.Tensor") -> "torch.Tensor":
        """Additive causal mask [L, L] from a [N, L] tensor: 0 on/below the diagonal,
        float32 min above. Exports as Shape/Gather/Range/Unsqueeze/Greater/Where."""
        seq = length_source.shape[1]
        pos = torch.arange(seq, dtype=torch.int64, device=length_source.device)
        future = pos.unsqueeze(0) > pos.unsqueeze(1)  # [query, key]: key after query
        neg = torch.tensor(torch.finfo(torch.float32).min, dtype=torch.float32)
        zero = torch.tensor(0.0, dtype=torch.float32)
        return torch.where(future, neg, zero)

    def first_eot_pool(hidden: "torch.Tensor", input_ids: "torch.Tensor") -> "torch.Tensor":
        """hidden [N, L, C] -> [N, C] taken at the first position where input_ids == EOT.
        Exports as ArgMax + GatherElements over the token axis: no index arithmetic with the
        symbolic batch or length, so runtimes can optimise the graph for any N and L."""
        idx = (input_ids == EOT_ID).to(torch.float32).argmax(dim=-1)  # ArgMax returns the first max -> first eot
        width = int(hidden.shape[-1])
        index = idx.to(torch.int64).reshape(-1, 1, 1).expand(-1, 1, width)
        return torch.gather(hidden, 1, index).reshape(-1, width)

    def argmax_id_pool(hidden: "torch.Tensor", input_ids: "torch.Tensor") -> "torch.Tensor":
        """hidden [N, L, C] -> [N, C] taken at the first position of the largest token id
        (open_clip's pool_type 'argmax': the end-of-text id is the largest of the CLIP vocabulary).
        The ids go through float32 for ArgMax (exact below 2**24), as in first_eot_pool."""
        idx = input_ids.to(torch.float32).argmax(dim=-1)
        width = int(hidden.shape[-1])
        index = idx.to(torch.int64).reshape(-1, 1, 1).expand(-1, 1, width)
        return torch.gather(hidden, 1, index).reshape(-1, width)

    def last_pool(hidden: "torch.Tensor") -> "torch.Tensor":
        """hidden [N, L, C] -> [N, C] at the last position (SigLIP), as a Slice [-1:] + Reshape."""
        width = int(hidden.shape[-1])
        return hidden[:, -1:, :].reshape(-1, width)

    def attention(x, q_proj, k_proj, v_proj, out_proj, num_heads: int, width: int, mask, kv=None):
        """Multi-head attention with plain ops, same arithmetic order as transformers' eager
        CLIP attention: softmax((q k^T) * scale + mask) v. Self-attention, or attention of the
        queries `x` to the keys/values `kv` (SigLIP's pooling head)."""
        n = x.shape[0]  # the only dynamic size; the rest are Python ints (constants in the graph)
        width = int(width)
        head_dim = width // num_heads
        scale = float(head_dim) ** -0.5
        kv = x if kv is None else kv
        q = q_proj(x).reshape(n, -1, num_heads, head_dim).transpose(1, 2)
        k = k_proj(kv).reshape(n, -1, num_heads, head_dim).transpose(1, 2)
        v = v_proj(kv).reshape(n, -1, num_heads, head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(n, -1, width)
        return out_proj(out)

    def hf_block(layer, x, mask):
        a = layer.self_attn
        h = attention(layer.layer_norm1(x), a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads,
                      a.q_proj.in_features, mask)
        x = x + h
        return x + layer.mlp(layer.layer_norm2(x))

    class HFImageEncoder(nn.Module):
        """transformers CLIPModel -> projected unnormalised image features."""

        def __init__(self, model):
            super().__init__()
            self.vision = model.vision_model
            self.proj = model.visual_projection

        def forward(self, pixel_values):
            vm = self.vision
            emb = vm.embeddings
            x = emb.patch_embedding(pixel_values)  # [N, C, g, g]
            x = x.flatten(2).transpose(1, 2)  # [N, g*g, C]
            width = int(emb.class_embedding.shape[0])
            cls = emb.class_embedding.reshape(1, 1, width).expand(x.shape[0], 1, width)
            x = torch.cat([cls, x], dim=1) + emb.position_embedding.weight.unsqueeze(0)
            x = vm.pre_layrnorm(x)
            for layer in vm.encoder.layers:
                x = hf_block(layer, x, None)
            return self.proj(vm.post_layernorm(x[:, 0, :]))

    def token_and_position_embeddings(emb, input_ids):
        """A transformers text tower's input: token embeddings plus the first L positions."""
        seq = input_ids.shape[1]
        pos = torch.arange(seq, dtype=torch.int64, device=input_ids.device)
        return emb.token_embedding(input_ids) + emb.position_embedding(pos).unsqueeze(0)

    class HFTextEncoder(nn.Module):
        """transformers CLIPModel -> projected unnormalised text features pooled at the first EOT."""

        def __init__(self, model):
            super().__init__()
            self.text = model.text_model
            self.proj = model.text_projection

        def forward(self, input_ids):
            tm = self.text
            x = token_and_position_embeddings(tm.embeddings, input_ids)
            mask = causal_mask(input_ids)
            for layer in tm.encoder.layers:
                x = hf_block(layer, x, mask)
            x = tm.final_layer_norm(x)
            return self.proj(first_eot_pool(x, input_ids))

    def open_clip_standard_block(blk) -> bool:
        a = getattr(blk, "attn", None)
        return (type(blk).__name__ == "ResidualAttentionBlock" and isinstance(a, nn.MultiheadAttention)
                and a._qkv_same_embed_dim and a.in_proj_bias is not None and a.bias_k is None
                and a.bias_v is None and not a.add_zero_attn and not hasattr(blk, "ln_1_kv"))

    class PlainOpenClipTransformer(nn.Module):
        """Stand-in for open_clip's `Transformer` (same weights, batch-first in and out) that
        runs standard ResidualAttentionBlocks with the plain-op attention above instead of
        nn.MultiheadAttention, whose fused fast path (aten::_native_multi_head_attention)
        cannot be exported. Non-standard blocks are called as they are."""

        def __init__(self, transformer):
            super().__init__()
            self.inner = transformer
            self.batch_first = True

        def get_cast_dtype(self):
            return self.inner.get_cast_dtype()

        def forward(self, x, attn_mask=None):
            for blk in self.inner.resblocks:
                if open_clip_standard_block(blk):
                    a = blk.attn
                    w, b, width = a.in_proj_weight, a.in_proj_bias, a.embed_dim
                    q = lambda h: torch.nn.functional.linear(h, w[:width], b[:width])  # noqa: E731
                    k = lambda h: torch.nn.functional.linear(h, w[width:2 * width], b[width:2 * width])  # noqa: E731
                    v = lambda h: torch.nn.functional.linear(h, w[2 * width:], b[2 * width:])  # noqa: E731
                    h = attention(blk.ln_1(x), q, k, v, a.out_proj, a.num_heads, width, attn_mask)
                    x = x + blk.ls_1(h)
                    x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
                else:
                    if not self.inner.batch_first:
                        raise ValueError(f"open_clip block {type(blk).__name__} in a sequence-first transformer: unsupported")
                    x = blk(x, attn_mask=attn_mask)
            return x

    class _Swapped:
        """Context manager: temporarily set `owner.<attr> = value`."""

        def __init__(self, owner, attr, value):
            self.owner, self.attr, self.value = owner, attr, value

        def __enter__(self):
            self.saved = getattr(self.owner, self.attr)
            setattr(self.owner, self.attr, self.value)

        def __exit__(self, *exc):
            setattr(self.owner, self.attr, self.saved)

    class OpenClipImageEncoder(nn.Module):
        """open_clip model -> encode_image(normalize=False), with the vision transformer's
        attention run by plain ops (the library's own encode_image is the reference)."""

        def __init__(self, model):
            super().__init__()
            self.model = model
            vis = model.visual
            self.plain = PlainOpenClipTransformer(vis.transformer) if hasattr(vis, "transformer") else None

        def forward(self, pixel_values):
            if self.plain is None:  # e.g. a timm or ResNet tower: export as it is
                return self.model.encode_image(pixel_values, normalize=False)
            with _Swapped(self.model.visual, "transformer", self.plain):
                return self.model.encode_image(pixel_values, normalize=False)

    class OpenClipTextEncoder(nn.Module):
        """open_clip model with a standard text transformer -> projected unnormalised text
        features. A causal tower (CLIP) pools at the first EOT, for any L <= context length;
        a bidirectional one (`no_causal_mask`, MobileCLIP S-models) attends to the padding, so
        it must be fed ids zero-padded to the context length, and pools at the largest id
        (open_clip's 'argmax', `pooling` = "argmax_eot")."""

        def __init__(self, model):
            super().__init__()
            t = model.text if hasattr(model, "text") else model
            for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
                if not hasattr(t, attr):
                    raise ValueError(f"open_clip text tower {type(t).__name__} has no `{attr}`: "
                                     "only the standard TextTransformer is supported")
            self.causal = getattr(t, "attn_mask", None) is not None
            if getattr(t, "cls_emb", None) is not None:
                raise ValueError("open_clip text tower with a class token (CoCa-style): unsupported")
            if getattr(t, "use_pad_mask", False):
                raise ValueError("open_clip text tower masks its padding (use_pad_mask): unsupported")
            pool = getattr(t, "text_pool_type", getattr(t, "pool_type", "argmax"))
            if pool not in ("argmax", "eos"):
                raise ValueError(f"open_clip text pool type {pool!r}: only argmax/eos (end-of-text) pooling is supported")
            if not self.causal and pool != "argmax":
                raise ValueError(f"bidirectional open_clip text tower with pool type {pool!r}: only argmax is supported")
            self.pooling = "first_eot" if self.causal else "argmax_eot"
            self.t = t
            self.plain = PlainOpenClipTransformer(t.transformer)

        def forward(self, input_ids):
            t = self.t
            seq = input_ids.shape[1]
            cast = t.transformer.get_cast_dtype() if hasattr(t.transformer, "get_cast_dtype") else torch.float32
            x = t.token_embedding(input_ids).to(cast)
            x = x + t.positional_embedding[:seq].to(cast)
            x = self.plain(x, attn_mask=causal_mask(input_ids) if self.causal else None)
            x = t.ln_final(x)
            pooled = first_eot_pool(x, input_ids) if self.causal else argmax_id_pool(x, input_ids)
            proj = t.text_projection
            if proj is None:
                return pooled
            if isinstance(proj, nn.Linear):
                return proj(pooled)
            return pooled @ proj

    class SiglipImageEncoder(nn.Module):
        """transformers SiglipModel -> get_image_features: patch embedding + positions (no class
        token), pre-LN encoder, post LayerNorm, then the attention-pooling head (a learned probe
        query attending to all patches, LayerNorm + MLP residual). Not normalised."""

        def __init__(self, model):
            super().__init__()
            self.vision = model.vision_model
            if not getattr(self.vision, "use_head", True):
                raise ValueError("SigLIP vision tower without the pooling head (vision_use_head=False): unsupported")

        def forward(self, pixel_values):
            vm = self.vision
            emb = vm.embeddings
            x = emb.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [N, g*g, C]
            x = x + emb.position_embedding.weight.unsqueeze(0)
            for layer in vm.encoder.layers:
                x = hf_block(layer, x, None)
            x = vm.post_layernorm(x)
            head = vm.head
            a = head.attention
            width = int(a.embed_dim)
            w, b = a.in_proj_weight, a.in_proj_bias
            q = lambda h: torch.nn.functional.linear(h, w[:width], b[:width])  # noqa: E731
            k = lambda h: torch.nn.functional.linear(h, w[width:2 * width], b[width:2 * width])  # noqa: E731
            v = lambda h: torch.nn.functional.linear(h, w[2 * width:], b[2 * width:])  # noqa: E731
            probe = head.probe.reshape(1, 1, width).expand(x.shape[0], 1, width)
            h = attention(probe, q, k, v, a.out_proj, a.num_heads, width, None, kv=x)  # [N, 1, C]
            h = h + head.mlp(head.layernorm(h))
            return h.reshape(-1, width)

    class SiglipTextEncoder(nn.Module):
        """transformers SiglipModel -> get_text_features: token + position embeddings,
        bidirectional pre-LN encoder without attention mask (padding is attended to), final
        LayerNorm, the LAST position, linear head. Feed ids padded to the context length."""

        def __init__(self, model):
            super().__init__()
            self.text = model.text_model

        def forward(self, input_ids):
            tm = self.text
            x = token_and_position_embeddings(tm.embeddings, input_ids)
            for layer in tm.encoder.layers:
                x = hf_block(layer, x, None)
            x = tm.final_layer_norm(x)
            return tm.head(last_pool(x))

    return dict(causal_mask=causal_mask, first_eot_pool=first_eot_pool, argmax_id_pool=argmax_id_pool,
                HFImageEncoder=HFImageEncoder, HFTextEncoder=HFTextEncoder,
                OpenClipImageEncoder=OpenClipImageEncoder, OpenClipTextEncoder=OpenClipTextEncoder,
                SiglipImageEncoder=SiglipImageEncoder, SiglipTextEncoder=SiglipTextEncoder)


_WRAPPERS: dict[str, Any] | None = None


def wrappers() -> dict[str, Any]:
    global _WRAPPERS
    if _WRAPPERS is None:
        _WRAPPERS = _make_wrappers()
    return _WRAPPERS


def __getattr__(name: str):  # lazy access: clip_tools.bundle.HFImageEncoder etc.
    if name in ("causal_mask", "first_eot_pool", "argmax_id_pool", "HFImageEncoder", "HFTextEncoder",
                "OpenClipImageEncoder", "OpenClipTextEncoder", "SiglipImageEncoder", "SiglipTextEncoder"):
        return wrappers()[name]
    raise AttributeError(name)


def hf_image_features(model, pixel_values):
    """transformers' own get_image_features as a tensor (v4 returns a tensor, v5 an output object)."""
    out = model.get_image_features(pixel_values=pixel_values)
    return out if hasattr(out, "shape") else out.pooler_output


def hf_text_features(model, input_ids):
    out = model.get_text_features(input_ids=input_ids)
    return out if hasattr(out, "shape") else out.pooler_output


# ---------------------------------------------------------------------------
# ONNX export and verification
# ---------------------------------------------------------------------------

def export_onnx(module, example: "torch.Tensor", path: str | os.PathLike, input_name: str, output_name: str,
                dynamic_axes: dict[int, str], opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export with the legacy TorchScript exporter (dynamo=False) when available, constant
    folding on, then onnx.checker. Returns facts about the export for the manifest."""
    import inspect

    import onnx
    import torch

    path = str(path)
    kwargs: dict[str, Any] = dict(
        input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: dynamic_axes, output_name: {0: dynamic_axes[0]}},
        opset_version=opset, do_constant_folding=True,
    )
    exporter = "torchscript"
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(module, (example,), path, **kwargs)
    model = onnx.load(path)
    inlined = inline_initializer_identities(model)
    if inlined:
        onnx.save(model, path)
    onnx.checker.check_model(path, full_check=True)
    ops = sorted({n.op_type for n in model.graph.node})
    return {"exporter": exporter, "opset": opset, "ops": ops}


def inline_initializer_identities(model) -> int:
    """The exporter de-duplicates equal weights (e.g. all-zero biases of a random-init model)
    into one initializer plus Identity nodes; give each its own initializer instead, so the
    graph has no Identity nodes on weights. Returns the number of nodes removed."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    keep, removed = [], 0
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            model.graph.initializer.append(t)
            removed += 1
        else:
            keep.append(node)
    if removed:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return removed


def ort_session(path: str | os.PathLike, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def pad_ids(rows: Sequence[Sequence[int]], length: int, pad_id: int = 0) -> np.ndarray:
    """Pad token id rows to `length` with `pad_id` (0: open_clip style; rows must already fit)."""
    out = np.full((len(rows), length), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        assert len(r) <= length, (len(r), length)
        out[i, : len(r)] = r
    return out


VERIFY_PHRASES = [
    "a photo of a red cup.",
    "pick up the blue ball and put it in the drawer",
    "the drawer handle",
    "a robot arm grasping a yellow sponge on a wooden table next to a sink full of dishes",
    "",
    "stop",
]
