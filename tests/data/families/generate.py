#!/usr/bin/env python3
"""The format-2 test fixtures (tests/fixtures/tiny-siglip, tests/fixtures/tiny-mobileclip2) and
their goldens (this folder), from seeded random weights of the real architectures. No network.

    python3 tests/data/families/generate.py            # fixtures + goldens + tokenizer cases
    python3 tests/data/families/generate.py --goldens  # goldens only, from the committed fixtures

It imports the project's clip_tools package: install it first, from the repository root, with
`pip install -r models/requirements.txt` (plus sentencepiece and timm, listed there too).

Steps (all deterministic: fixed seeds, single-threaded SentencePiece training):

1. tiny SigLIP: a SentencePiece Unigram model (vocab 1000, T5/SigLIP ids: <pad> 0, </s> 1,
   <unk> 2, nmt_nfkc) trained on a generated corpus; a transformers SiglipModel
   (clip_tools.families.tiny_siglip_config) with logit_scale = ln(117.33) and logit_bias =
   -12.93 (published SigLIP B/16 values); saved as a SiglipModel folder (save_pretrained,
   SiglipTokenizer.save_pretrained -> spiece.model + tokenizer_config.json, the
   preprocessor_config.json of google/siglip-base-patch16-224) under models/.cache/families/,
   then exported with `models/export.py --hf FOLDER --out tests/fixtures/tiny-siglip`.
2. tiny MobileCLIP 2: open_clip with clip_tools.families.TINY_MOBILECLIP2_CFG (timm FastViT MCi0
   block types, shrunk), BatchNorm statistics / affine and layer scales randomised so the
   reparameterisation folds real values, logit_scale = ln(100); saved as an open_clip folder
   as the hub holds MobileCLIP2-S0 (open_clip_config.json with the dfndr2b preprocess cfg +
   open_clip_model.safetensors), exported with
   `models/export.py --open-clip local-dir:FOLDER --out tests/fixtures/tiny-mobileclip2`.
3. goldens tiny-siglip.json / tiny-mobileclip2.json (see README.md): the REFERENCE pipelines'
   pixel values (.npy), PyTorch embeddings, ids, cosine and probabilities; onnxruntime on the
   fixture graphs is checked against PyTorch (max abs diff printed).
4. the int8 image encoder of tiny-siglip: `models/quantize.py` (dynamic-symmetric, its default
   7-bit weights) adds tests/fixtures/tiny-siglip/image_encoder_int8.onnx and re-records
   model.yaml (accuracy on the RGB preprocess test images and PHRASES); the golden
   tiny-siglip.int8.json holds onnxruntime's embeddings of that graph on the golden
   pixel_values and their cosine with the fp32 goldens (`--goldens`: from the committed int8
   graph). The fp32 files stay byte-identical.
5. tokenizer cases: tokenizer_siglip_spm.jsonl (SiglipTokenizer on the tiny-siglip spiece.model)
   and tokenizer_gemma_bpe.jsonl + gemma_bpe/ (a byte-fallback BPE SentencePiece model with
   Gemma's special ids, loaded through transformers' GemmaTokenizer as SigLIP 2 configures it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np

from clip_tools import bundle as cb
from clip_tools import families as fam
from clip_tools.log import log
from clip_tools.paths import CACHE_DIR, REPO_ROOT

HERE = Path(__file__).resolve().parent
PREPROCESS = REPO_ROOT / "tests" / "data" / "preprocess"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CACHE = CACHE_DIR / "families"
SEED = 20250901
SIGLIP_LOGIT_SCALE = 117.33  # exp(logit_scale) of google/siglip-base-patch16-224 (rounded)
SIGLIP_LOGIT_BIAS = -12.93
CONTEXT = fam.SIGLIP_CONTEXT

# Squash: a portrait, an extreme landscape, and RGBA with transparency (composited on white).
SIGLIP_IMAGES = ["w333_h517", "w1000_h90", "rgba_w256_h200"]
# Shortest edge to 256 + centre crop: w227_h224 (-> 259 x 256) and rgba_w256_h200 (-> 327 x 256)
# have a crop offset of x.5, where torchvision's round-half-even and transformers' floor differ
# (2 vs 1, 36 vs 35 columns); rgba_w256_h200 also has transparency (open_clip drops alpha after
# resizing); w333_h517 is a portrait (-> 256 x 397, rows cropped).
MOBILECLIP_IMAGES = ["w227_h224", "w333_h517", "rgba_w256_h200"]
PHRASES = [
    "a photo of a red cup.",
    "Pick up the BLUE ball, then STOP!",
    "the drawer handle",
    "naïve café: ΟΔΟΣ 東京 😀",
    "don't   stop\tnow",
    "",
    "a robot arm grasping a yellow sponge on a wooden table next to a sink full of dishes, " * 3,
    "yellow rubber duck",
]


# ---------------------------------------------------------------------------
# Corpus and SentencePiece models
# ---------------------------------------------------------------------------

def corpus() -> list[str]:
    """Deterministic training text: task phrases over a small vocabulary, pseudo-words from
    syllables (so a 1000-piece vocabulary is reachable), a little punctuation, digits, case
    and non-Latin script."""
    rng = random.Random(SEED)
    words = ("a an the photo of red blue green yellow white black orange cup ball mug bottle sponge drawer "
             "handle robot arm table sink dish plate box pick up put down grasp push open close move next to "
             "on in under behind left right small large dog cat person waving camera shelf cone duck rubber "
             "screwdriver stack empty blurry close-up café naïve über straße δρόμος οδός 東京 タワー").split()
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "ch", "st", "ng", "er"]
    words += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    lines = []
    for _ in range(20000):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.2:
            line = line.capitalize()
        lines.append(line + rng.choice(["", "", ".", "!", "?", ",", " 42", " 3.14", " 2024"]))
    return lines


def train_spm(prefix: Path, **kwargs) -> Path:
    import sentencepiece as spm

    text = prefix.with_suffix(".corpus.txt")
    text.write_text("\n".join(corpus()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(prefix), vocab_size=1000,
                                   character_coverage=1.0, num_threads=1, minloglevel=2,
                                   shuffle_input_sentence=False, **kwargs)
    return prefix.with_suffix(".model")


def train_siglip_spm(d: Path) -> Path:
    """T5 / SigLIP layout: Unigram, nmt_nfkc normalisation, dummy prefix, extra whitespace
    removed; <pad> 0, </s> 1, <unk> 2, no <s>."""
    return train_spm(d / "spiece", model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                     pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>")


def train_gemma_spm(d: Path) -> Path:
    """Gemma layout: BPE with byte fallback, split digits, whitespace-only pieces, identity
    normalisation, no dummy prefix, whitespace kept; <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4."""
    return train_spm(d / "gemma", model_type="bpe", byte_fallback=True, split_digits=True,
                     allow_whitespace_only_pieces=True, normalization_rule_name="identity",
                     add_dummy_prefix=False, remove_extra_whitespaces=False,
                     pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                     bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=["<mask>"])


# ---------------------------------------------------------------------------
# Source folders (models/.cache/families)
# ---------------------------------------------------------------------------

SIGLIP_PREPROCESSOR_CONFIG = fam.SIGLIP_B16_PREPROCESSOR_CONFIG  # google/siglip-base-patch16-224's


def make_siglip_folder(d: Path) -> Path:
    import torch
    from transformers import SiglipModel, SiglipTokenizer

    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    spiece = train_siglip_spm(d)
    tok = SiglipTokenizer(str(spiece), model_max_length=CONTEXT)
    tok.save_pretrained(str(d))
    for f in d.glob("spiece.corpus.txt"):
        f.unlink()
    (d / "spiece.vocab").unlink()
    cfg = fam.tiny_siglip_config(tok.vocab_size)
    torch.manual_seed(SEED)
    model = SiglipModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(SIGLIP_LOGIT_SCALE))
        model.logit_bias.fill_(SIGLIP_LOGIT_BIAS)
        # Random towers give cosines near 0, where sigmoid(117 cos - 12.9) is ~1e-6 for every pair.
        # A shared direction in both output biases (norm 0.33 x the typical embedding norm: 7.0
        # text, 3.5 image) centres the golden cosines near 12.93 / 117.33 = 0.11, so the
        # probabilities spread over (0, 1).
        u = torch.randn(model.config.text_config.projection_size, generator=torch.Generator().manual_seed(SEED))
        u = u / u.norm()
        model.text_model.head.bias.add_(0.33 * 7.0 * u)
        model.vision_model.head.mlp.fc2.bias.add_(0.33 * 3.5 * u)
    model.save_pretrained(str(d))
    (d / "preprocessor_config.json").write_text(json.dumps(SIGLIP_PREPROCESSOR_CONFIG, indent=2) + "\n")
    return d


def make_mobileclip2_folder(d: Path) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    fam.register_tiny_timm_models()
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    tag = open_clip.get_pretrained_cfg("MobileCLIP2-S0", "dfndr2b")
    pre = {k: list(tag[k]) if isinstance(tag[k], tuple) else tag[k]
           for k in ("mean", "std", "interpolation", "resize_mode")}
    (d / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": fam.TINY_MOBILECLIP2_CFG, "preprocess_cfg": pre}, indent=2) + "\n")
    torch.manual_seed(SEED)
    model = open_clip.create_model(f"local-dir:{d}", device="cpu", precision="fp32").eval()
    # timm's init makes a random FastViT's output independent of its input: randomised as a
    # trained model's weights / BatchNorm statistics / layer scales would be (see the function).
    fam.randomize_fastvit_trunk(model.visual.trunk, torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "open_clip_model.safetensors"))
    return d


def export(argv: list[str]) -> None:
    from clip_tools import export as ex

    log("export.py " + " ".join(argv))
    if ex.main(argv) != 0:
        raise SystemExit("export failed")


def fixture_readme_check(out: Path) -> None:
    assert (out / "README.md").is_file(), f"{out}/README.md (written by hand) is missing"


# ---------------------------------------------------------------------------
# Reference preprocessing, transcribed (checked equal to the libraries on every golden image)
# ---------------------------------------------------------------------------

# transformers_rgb, siglip_pil_pipeline (SiglipImageProcessorPil) and open_clip_pil_pipeline
# (open_clip's eval transform) live in clip_tools.families (quantize.py preprocesses with them too).
siglip_pil_pipeline = fam.siglip_pil_pipeline
open_clip_pil_pipeline = fam.open_clip_pil_pipeline


# ---------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------

def rel(path: Path, start: Path = HERE) -> str:
    return os.path.relpath(path, start)


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def floats(a) -> list:
    return np.asarray(a, dtype=np.float32).astype(float).tolist()


def check_onnx(bundle: Path, pv: np.ndarray, ids: np.ndarray, img_emb, txt_emb) -> dict[str, float]:
    img = cb.ort_session(bundle / cb.IMAGE_FILE).run([cb.IMAGE_OUTPUT], {cb.IMAGE_INPUT: pv})[0]
    txt = cb.ort_session(bundle / cb.TEXT_FILE).run([cb.TEXT_OUTPUT], {cb.TEXT_INPUT: ids})[0]
    d = {"image_embeds": cb.max_abs_diff(img, img_emb), "text_embeds": cb.max_abs_diff(txt, txt_emb)}
    for k, v in d.items():
        print(f"{bundle.name}: onnxruntime vs PyTorch {k}: max abs diff {v:.3g}")
    return d


def write_golden(name: str, bundle: Path, logit_scale: float, logit_bias, scoring: str, images: list,
                 pixel_values: np.ndarray, image_embeds, ids, text_embeds, probability, onnx_diffs: dict,
                 reference: dict) -> None:
    cos = unit(image_embeds) @ unit(text_embeds).T
    golden = {
        "bundle": rel(bundle, REPO_ROOT),
        "logit_scale": logit_scale,
        "logit_bias": logit_bias,
        "scoring": scoring,
        "reference": reference,
        "images": [],
        "phrases": [{"text": t, "ids": [int(i) for i in row], "text_embeds": floats(e)}
                    for t, row, e in zip(PHRASES, ids, text_embeds)],
        "zero_shot": [],
        "max_abs_diff_onnxruntime_vs_torch": {k: float(f"{v:.3g}") for k, v in onnx_diffs.items()},
    }
    for k, img in enumerate(images):
        npy = f"{name}.{img}.npy"
        np.save(HERE / npy, pixel_values[k:k + 1])
        src = next(PREPROCESS.glob(f"{img}.*"))
        golden["images"].append({"name": img, "file": rel(src), "pixel_values": npy,
                                 "image_embeds": floats(image_embeds[k])})
        golden["zero_shot"].append({"image": img, "cosine": np.asarray(cos[k]).astype(float).tolist(),
                                    "probability": np.asarray(probability[k], dtype=np.float64).tolist()})
    (HERE / f"{name}.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {HERE / name}.json")


def siglip_goldens(folder: Path, bundle: Path) -> None:
    import torch
    from PIL import Image
    from transformers import SiglipImageProcessorPil, SiglipModel, SiglipTokenizer

    model = SiglipModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    proc = SiglipImageProcessorPil.from_pretrained(str(folder))
    tok = SiglipTokenizer.from_pretrained(str(folder))
    manifest = cb.read_manifest(bundle)
    cb.verify_bundle_hashes(bundle)
    pix = []
    for img in SIGLIP_IMAGES:
        im = Image.open(next(PREPROCESS.glob(f"{img}.*")))
        pv = proc(images=im, return_tensors="np")["pixel_values"].astype(np.float32)
        mine = siglip_pil_pipeline(im, 224, int(proc.resample), proc.image_mean, proc.image_std)
        assert np.array_equal(pv, mine), f"{img}: SiglipImageProcessorPil != the transcribed pipeline"
        pix.append(pv)
    pv = np.concatenate(pix)
    ids = np.asarray([fam.hf_padded_ids(tok, t, CONTEXT) for t in PHRASES], dtype=np.int64)
    text = manifest["text"]
    assert fam.engine_ids(bundle / cb.TOKENIZER_FILE, PHRASES, CONTEXT, text["pad_id"], text["lowercase"],
                          text["strip_punctuation"]) == ids.tolist()
    with torch.no_grad():
        img_emb = cb.hf_image_features(model, torch.from_numpy(pv)).numpy()
        txt_emb = cb.hf_text_features(model, torch.from_numpy(ids)).numpy()
        out = model(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pv))
        prob = torch.sigmoid(out.logits_per_image).numpy()
        scale = float(model.logit_scale.exp().item())
        bias = float(model.logit_bias.item())
    assert abs(manifest["logit_scale"] - scale) < 1e-4 and abs(manifest["scoring"]["logit_bias"] - bias) < 1e-6
    diffs = check_onnx(bundle, pv, ids, img_emb, txt_emb)
    write_golden("tiny-siglip", bundle, scale, bias, "sigmoid", SIGLIP_IMAGES, pv, img_emb, ids, txt_emb, prob, diffs, {
        "pixel_values": "transformers SiglipImageProcessorPil (from the model folder's preprocessor_config.json)",
        "ids": f"SiglipTokenizer(text, padding='max_length', max_length={CONTEXT}, truncation=True)",
        "probability": "torch.sigmoid(SiglipModel(input_ids, pixel_values).logits_per_image)",
    })


def mobileclip_goldens(folder: Path, bundle: Path) -> None:
    import open_clip
    import torch
    from PIL import Image

    fam.register_tiny_timm_models()
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", device="cpu", precision="fp32")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    pcfg = open_clip.get_model_preprocess_cfg(model)
    manifest = cb.read_manifest(bundle)
    cb.verify_bundle_hashes(bundle)
    size = manifest["image_size"]
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[pcfg["interpolation"]]
    pix = []
    for img in MOBILECLIP_IMAGES:
        im = Image.open(next(PREPROCESS.glob(f"{img}.*")))
        pv = preprocess(im).unsqueeze(0).numpy().astype(np.float32)
        mine = open_clip_pil_pipeline(im, size, resample, pcfg["mean"], pcfg["std"])
        assert np.array_equal(pv, mine), f"{img}: open_clip preprocess != the transcribed pipeline"
        pix.append(pv)
    pv = np.concatenate(pix)
    ids = tokenizer(PHRASES).numpy().astype(np.int64)  # [N, 77], zero-padded, truncated with eot last
    oc = cb.open_clip_simple_tokenizer()
    assert ids.tolist() == cb.pad_ids([cb.open_clip_ids(oc, t) for t in PHRASES], cb.CONTEXT_LENGTH).tolist()
    with torch.no_grad():
        img_emb = model.encode_image(torch.from_numpy(pv)).numpy()
        txt_emb = model.encode_text(torch.from_numpy(ids)).numpy()
        fi, ft, scale_t = model(torch.from_numpy(pv), torch.from_numpy(ids))[:3]
        prob = (scale_t * fi @ ft.T).softmax(dim=-1).numpy()
        scale = float(model.logit_scale.exp().item())
    assert abs(manifest["logit_scale"] - scale) < 1e-4
    diffs = check_onnx(bundle, pv, ids, img_emb, txt_emb)
    write_golden("tiny-mobileclip2", bundle, scale, None, "softmax", MOBILECLIP_IMAGES, pv, img_emb, ids, txt_emb, prob,
                 diffs, {
                     "pixel_values": "open_clip.create_model_and_transforms(local-dir) eval transform "
                                     f"(image_transform with {dict(pcfg)})",
                     "ids": "open_clip.get_tokenizer (SimpleTokenizer, context 77, zero-padded)",
                     "probability": "softmax over phrases of logit_scale * cos (open_clip model forward)",
                 })


# ---------------------------------------------------------------------------
# int8
# ---------------------------------------------------------------------------

# The images quantize.py measures the int8 fixture's accuracy on: the preprocess test images
# that are plain RGB (not the *.expected.png / *.decoded.png outputs).
INT8_ACCURACY_IMAGES = "tests/data/preprocess/w*[0-9].png"


def quantize_fixture(bundle: Path) -> None:
    """models/quantize.py on the fixture (deterministic: onnxruntime on one thread for the
    accuracy it records)."""
    from clip_tools import quantize

    argv = [str(bundle), "--images", INT8_ACCURACY_IMAGES, "--phrases", "; ".join(t for t in PHRASES if t.strip()),
            "--template", "{}", "--threads", "1"]
    log("quantize.py " + " ".join(argv))
    if quantize.main(argv) != 0:
        raise SystemExit("quantize failed")


def int8_golden(name: str, bundle: Path) -> None:
    """<name>.int8.json: onnxruntime's embeddings of the bundle's int8 image encoder on the
    golden pixel_values of <name>.json, and each one's cosine with the fp32 golden embedding."""
    import onnxruntime

    golden = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
    manifest = cb.read_manifest(bundle)
    cb.verify_bundle_hashes(bundle)
    entry = manifest["files"]["image_encoder_int8"]
    q = manifest["quantization"]["image_encoder_int8"]
    sess = cb.ort_session(bundle / entry["path"], threads=1)
    images = []
    for img in golden["images"]:
        pv = np.load(HERE / img["pixel_values"])
        e8 = sess.run([cb.IMAGE_OUTPUT], {cb.IMAGE_INPUT: pv})[0][0]
        cos = float(unit(e8) @ unit(img["image_embeds"]))
        images.append({"name": img["name"], "pixel_values": img["pixel_values"], "image_embeds": floats(e8),
                       "cosine_vs_fp32": cos})
        print(f"{name} int8 {img['name']}: cosine vs fp32 {cos:.6f}")
    out = {
        "bundle": golden["bundle"],
        "graph": entry["path"],
        "sha256": entry["sha256"],
        "quantization": {k: q[k] for k in ("form", "weight_bits", "matmuls_quantized")},
        "reference": {
            "image_embeds": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider, 1 thread) on the int8 graph, "
                            "unnormalised",
            "cosine_vs_fp32": f"cosine with image_embeds of {name}.json (PyTorch fp32)",
        },
        "images": images,
    }
    (HERE / f"{name}.int8.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {HERE / name}.int8.json")


# ---------------------------------------------------------------------------
# Tokenizer cases
# ---------------------------------------------------------------------------

def tokenizer_texts() -> list[str]:
    """~40 strings: punctuation, case, digits, unicode / emoji (unknown pieces, byte fallback),
    repeated spaces, tabs / newlines, empty, very long (truncation)."""
    rng = random.Random(SEED)
    fixed = [
        "", " ", "   ", "\t\n", "a", "A", "stop", "a photo of a red cup.", "A PHOTO OF A RED CUP!",
        "Pick up the blue ball, and put it in the drawer.", "don't   stop", "tab\tseparated\twords",
        "new\nline\r\nwindows", "  leading and trailing  ", "3.14 is pi; 42 is the answer; 2024-05-17",
        "phone: +1 (555) 010-9999", "e-mail me@example.com #tag @user $5 100% a&b *x* ~y~ ^z^ |p| \\q\\",
        "quotes: 'single' \"double\" `back` «guillemets» „low“", "naïve café über straße façade",
        "ΟΔΟΣ δρόμος ΣΑΣ", "İstanbul ıi", "東京タワー 東京", "emoji 😀👍🏽 👩‍💻 🇫🇷", "ÿ ß ǅ ﬁ", "x \u2581 y",
        "non\u00a0breaking\u2003em space", "zero\u200bwidth", "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ", "a--b__c..d",
        "...", "!!!", "?", "ends with a space ", "camelCaseWordsAndNumbers123",
        "the " * 80, "supercalifragilisticexpialidocious " * 10, "😀" * 70,
    ]
    words = ["red", "Blue", "cup", "ball", "the", "a", "robot", "Arm", "sponge", "table"]
    generated = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) + rng.choice([".", "!", "", "?"])
                 for _ in range(5)]
    return fixed + generated


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    log(f"wrote {path} ({len(rows)} lines)")


def siglip_tokenizer_cases(folder: Path, bundle: Path) -> None:
    from transformers import SiglipTokenizer

    tok = SiglipTokenizer.from_pretrained(str(folder))
    texts = tokenizer_texts()
    rows = [{"text": t, "ids": fam.hf_padded_ids(tok, t, CONTEXT)} for t in texts]
    text = cb.read_manifest(bundle)["text"]
    bad = fam.check_engine_ids(bundle / cb.TOKENIZER_FILE, lambda t: fam.hf_padded_ids(tok, t, CONTEXT), texts,
                               CONTEXT, text["pad_id"], text["lowercase"], text["strip_punctuation"])
    if bad:
        raise SystemExit("tiny-siglip tokenizer.json disagrees with SiglipTokenizer:\n" + "\n".join(bad))
    write_jsonl(HERE / "tokenizer_siglip_spm.jsonl", rows)


GEMMA_TEXT = {"tokenizer": "hf", "lowercase": True, "strip_punctuation": False, "pad_id": 0,
              "pad_to": "context", "pooling": "last"}


def gemma_tokenizer_cases() -> None:
    """A Gemma-layout byte-fallback BPE, loaded by transformers' GemmaTokenizer from the
    SentencePiece model (GemmaConverter itself is broken in transformers 5.25: its extractor has
    no `sp`), with SigLIP 2's settings: no <bos>, <eos> appended, right padding with <pad>."""
    from tokenizers import Tokenizer, normalizers
    from transformers import GemmaTokenizer

    work = CACHE / "gemma_bpe"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model = train_gemma_spm(work)
    src = work / "src"
    src.mkdir()
    shutil.copy(model, src / "tokenizer.model")
    tok = GemmaTokenizer.from_pretrained(str(src), add_bos_token=False, add_eos_token=True, padding_side="right",
                                         model_max_length=CONTEXT)
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    out = HERE / "gemma_bpe"
    out.mkdir(exist_ok=True)
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / "tokenizer.json"), pretty=False)
    texts = tokenizer_texts()
    reference = lambda t: fam.hf_padded_ids(tok, t.lower(), CONTEXT)  # noqa: E731
    bad = fam.check_engine_ids(out / "tokenizer.json", reference, texts, CONTEXT, 0, True, False)
    if bad:
        raise SystemExit("gemma_bpe tokenizer.json disagrees with GemmaTokenizer:\n" + "\n".join(bad))
    # Siglip2Tokenizer lower-cases inside tokenizer.json (tokenizers' Lowercase: per character,
    # no final-sigma rule); Python's str.lower() here. Report where they differ.
    lowered = Tokenizer.from_str(backend.to_str())
    lowered.normalizer = normalizers.Sequence([normalizers.Lowercase(), lowered.normalizer])
    lowered.enable_truncation(max_length=CONTEXT)
    for t in texts:
        a = lowered.encode(t).ids
        b = reference(t)[:len(a)]
        if a != b:
            print(f"gemma_bpe: Siglip2Tokenizer-style Lowercase normalizer differs from str.lower() on {t!r}")
    write_jsonl(HERE / "tokenizer_gemma_bpe.jsonl", [{"text": t, "ids": reference(t)} for t in texts])
    (out / "manifest_text.yaml").write_text(
        "# The `text:` section (and context_length) a format-2 manifest gives this tokenizer.json, as\n"
        "# models/export.py writes it for a SigLIP 2 (Gemma tokenizer) SiglipModel. Written by ../generate.py.\n"
        f"context_length: {CONTEXT}\n"
        + "\n".join(cb._yaml_block({"text": GEMMA_TEXT}, 0)) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--goldens", action="store_true", help="goldens only, from the committed fixtures and the cached "
                                                          "source folders (models/.cache/families)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    os.chdir(REPO_ROOT)  # the exports record the source folders relative to the repository root
    siglip_dir, mc_dir = Path(rel(CACHE / "tiny-siglip", REPO_ROOT)), Path(rel(CACHE / "tiny-mobileclip2", REPO_ROOT))
    siglip_out, mc_out = Path(rel(FIXTURES / "tiny-siglip", REPO_ROOT)), Path(rel(FIXTURES / "tiny-mobileclip2", REPO_ROOT))
    if not args.goldens:
        make_siglip_folder(siglip_dir)
        export(["--hf", str(siglip_dir), "--name", "siglip-tiny-random-init", "--out", str(siglip_out)])
        quantize_fixture(siglip_out)
        make_mobileclip2_folder(mc_dir)
        export(["--open-clip", f"local-dir:{mc_dir}", "--name", "mobileclip2-tiny-random-init", "--out", str(mc_out)])
        for out in (siglip_out, mc_out):
            fixture_readme_check(out)
            sizes = {f.name: f.stat().st_size for f in sorted(out.iterdir())}
            print(f"{out.name}: {sum(sizes.values()) / 1e6:.2f} MB " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    for f in HERE.glob("*.npy"):
        f.unlink()
    siglip_goldens(siglip_dir, siglip_out)
    mobileclip_goldens(mc_dir, mc_out)
    if "image_encoder_int8" not in cb.read_manifest(siglip_out)["files"]:
        quantize_fixture(siglip_out)
    int8_golden("tiny-siglip", siglip_out)
    siglip_tokenizer_cases(siglip_dir, siglip_out)
    gemma_tokenizer_cases()
    return 0


if __name__ == "__main__":
    sys.exit(main())
