"""Train the project's small CLIP on synthetic tabletop scenes (clip_tools.tabletop.scenes).

Architecture: transformers CLIPModel, `clip_tools.bundle.ARCHITECTURES["tabletop"]` (ViT patch
32 on 224x224, quick-GELU; causal text tower with the full 49408-token CLIP vocabulary and 77
positions; token ids from open_clip's SimpleTokenizer, the same ids as the bundle's
tokenizer.json). Loss: the CLIP paper's symmetric InfoNCE (cross-entropy over the image->text
and text->image similarity matrices of a batch) with a learned temperature: logit_scale
initialised to ln(1/0.07) and clamped to ln(100).

Data: `--images` scenes are rendered once (2 worker processes) into a uint8 memmap under
models/.cache/tabletop/ and reused across epochs; each time an image is used, its caption
is re-drawn from the scene's objects and the image may be mirrored (objects' x mirrored
too, so "left of" captions stay true). Compositions in scenes.HELD_OUT are never drawn
or named.

Writes models/.cache/tabletop/checkpoint/ (transformers save_pretrained + training.json),
models/tabletop/loss_curve.png and models/tabletop/training_metrics.md. Then export with

    python3 models/export.py --trained models/.cache/tabletop/checkpoint --out models/tabletop
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from clip_tools import bundle as cb
from clip_tools.log import log as _log
from clip_tools.paths import CACHE_DIR, TABLETOP_DIR
from clip_tools.tabletop import scenes

CACHE = CACHE_DIR / "tabletop"
TEMPLATE = "a photo of a {}."
VAL_SEED_BASE = 2_000_000  # validation images (make_eval.py uses 1_000_000+)

log = functools.partial(_log, clock=True)  # training's log lines carry the wall-clock time


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def _render_chunk(args):
    start, stop, seed_base, path, n = args
    arr = np.lib.format.open_memmap(path, mode="r+")
    metas = []
    for i in range(start, stop):
        img, _, objs = scenes.training_example(seed_base + i)
        arr[i] = np.asarray(img)
        metas.append([[o.colour, o.kind, o.cx] for o in objs])
    arr.flush()
    return start, metas


def render_dataset(n: int, seed_base: int, workers: int) -> tuple[np.ndarray, list]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"images_n{n}_seed{seed_base}.npy"
    meta_path = CACHE / f"objects_n{n}_seed{seed_base}.json"
    if path.exists() and meta_path.exists():
        log(f"reusing rendered scenes {path}")
        return np.load(path, mmap_mode="r"), json.loads(meta_path.read_text())
    t0 = time.time()
    tmp = path.with_suffix(".partial.npy")
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, scenes.SIZE, scenes.SIZE, 3))
    chunk = 500
    jobs = [(s, min(n, s + chunk), seed_base, str(tmp), n) for s in range(0, n, chunk)]
    metas: list = [None] * n
    with mp.get_context("fork").Pool(workers) as pool:
        for done, (start, m) in enumerate(pool.imap_unordered(_render_chunk, jobs), 1):
            metas[start:start + len(m)] = m
            if done % 8 == 0 or done == len(jobs):
                log(f"rendered {min(n, done * chunk)}/{n} scenes ({time.time() - t0:.0f} s)")
    os.replace(tmp, path)
    meta_path.write_text(json.dumps(metas))
    return np.load(path, mmap_mode="r"), metas


class Tokens:
    """open_clip SimpleTokenizer ids (sot ... eot), memoised per caption."""

    def __init__(self):
        self.tok = cb.open_clip_simple_tokenizer()
        self.memo: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        r = self.memo.get(text)
        if r is None:
            r = self.memo[text] = cb.open_clip_ids(self.tok, text)
        return r

    def batch(self, texts):
        import torch

        rows = [self.ids(t) for t in texts]
        return torch.from_numpy(cb.pad_ids(rows, max(len(r) for r in rows)))


def to_pixels(u8: np.ndarray):
    """uint8 NHWC (already 224x224: the engine's resize + crop is the identity) -> CLIP-normalised NCHW."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cb.OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cb.OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def validation_set(per_seen: int, per_heldout: int):
    """Single-object images (seeds disjoint from training and from the eval set)."""
    imgs, labels, split = [], [], []
    held = set(scenes.HELD_OUT)
    k = 0
    for ci, (c, o) in enumerate(scenes.ALL_COMPOSITIONS):
        reps = per_heldout if (c, o) in held else per_seen
        for r in range(reps):
            imgs.append(np.asarray(scenes.single_object_image(VAL_SEED_BASE + ci * 100 + r, c, o)))
            labels.append(ci)
            split.append("heldout" if (c, o) in held else "seen")
            k += 1
    return np.stack(imgs), np.array(labels), np.array(split)


def zero_shot(model, tokens: Tokens, pix_u8: np.ndarray, labels: np.ndarray, split: np.ndarray) -> dict:
    import torch

    phrases = [f"{c} {o}" for c, o in scenes.ALL_COMPOSITIONS]
    model.eval()
    with torch.no_grad():
        t = cb.hf_text_features(model, tokens.batch([TEMPLATE.format(p) for p in phrases]))
        t = t / t.norm(dim=-1, keepdim=True)
        feats = []
        for s in range(0, len(pix_u8), 128):
            f = cb.hf_image_features(model, to_pixels(pix_u8[s:s + 128]))
            feats.append(f / f.norm(dim=-1, keepdim=True))
        pred = (torch.cat(feats) @ t.T).argmax(-1).numpy()
    model.train()
    ok = pred == labels
    return {"seen": float(ok[split == "seen"].mean()), "heldout": float(ok[split == "heldout"].mean()),
            "colour": float(np.mean([phrases[p].split()[0] == phrases[l].split()[0] for p, l in zip(pred, labels)])),
            "object": float(np.mean([phrases[p].split()[1] == phrases[l].split()[1] for p, l in zip(pred, labels)]))}


def project_patch_front(weight, chroma_channels: int, chroma_block: int) -> None:
    """Constrain the ViT patch embedding (a bias-free conv, [width, 3, P, P], on CLIP-normalised
    pixels) to a luminance/chroma front end, in place: the first width - chroma_channels
    filters see luminance only (ITU-R 601 weights on the raw pixels, so every spatial pattern
    is the same filter whatever the colour), the rest see colour only as block means
    (chroma_block x chroma_block pixels), so object shape reaches the transformer only
    through luminance and colour only coarsely. The exported model is a plain CLIP ViT whose
    patch weights happen to have this structure. Least-squares projection, applied at
    initialisation and after every optimiser step."""
    import torch

    with torch.no_grad():
        n_lum = weight.shape[0] - chroma_channels
        p = weight.shape[-1]
        # luminance of raw pixels = sum_c w_c (std_c x_c + mean_c): per channel w_c std_c on
        # normalised pixels (the constant is a per-filter offset the next layers absorb)
        v = torch.tensor(scenes.LUMA_601) * torch.tensor(cb.OPENAI_CLIP_STD)
        v = (v / v.norm()).view(1, 3, 1, 1).to(weight.dtype)
        lum = weight[:n_lum]
        weight[:n_lum] = (lum * v).sum(1, keepdim=True) * v
        if chroma_channels:
            b = p // chroma_block
            c = weight[n_lum:].reshape(chroma_channels, 3, b, chroma_block, b, chroma_block)
            weight[n_lum:] = c.mean(dim=(3, 5), keepdim=True).expand_as(c).reshape(chroma_channels, 3, p, p)


def block_mask(weight, n_out: int, n_in: int):
    """0/1 mask of a [out, in] weight that keeps two streams apart: outputs [0, n_out) read only
    inputs [0, n_in), the other outputs only the other inputs (block diagonal)."""
    import torch

    out_n, in_n = weight.shape
    return ((torch.arange(out_n)[:, None] < n_out) == (torch.arange(in_n)[None, :] < n_in)).float()


def stream_masks(tower, n_first: int) -> list:
    """Split a CLIP transformer tower (vision or text) into two towers sharing one set of
    matrices: its residual channels [0, n_first) and the rest, attention heads, MLP hidden
    units split in the same proportion, and no weight of any layer reads one stream into the
    other (they share only the LayerNorms' per-token mean and variance). In the ViT, with the
    lum-chroma patch front, the first stream is fed by the luminance-only filters, so the shape
    features it computes are those of the greyscale image whatever the object's colour.
    Returns [(weight, mask)]; the exported graph stays a plain CLIP tower whose weights have
    zero blocks."""
    width = tower.config.hidden_size
    head = width // tower.config.num_attention_heads
    if n_first % head:
        raise SystemExit(f"stream split: the first stream ({n_first} channels) must be whole attention "
                         f"heads of {head} channels")
    pairs = []
    for layer in tower.encoder.layers:
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                    layer.self_attn.out_proj, layer.mlp.fc1, layer.mlp.fc2):
            w = lin.weight  # biases are per output unit: nothing to mask
            pairs.append((w, block_mask(w, w.shape[0] * n_first // width, w.shape[1] * n_first // width)))
    return pairs


def text_stream_masks(model, tokens: "Tokens", n_shape: int, n_out: int) -> list:
    """The text tower as two towers too (split-embedding on both sides): its first n_shape
    channels (whole heads) carry what the caption says about kinds, the rest what it says
    about colours, into the embedding dims [0, n_out) and the rest, as the image towers do.
    Colour words enter the kind stream as zeros (their token embeddings are zero there) and
    kind words the colour stream, so the kind part of "a photo of a blue cup." is the same
    whichever colour it names, and the colour part whichever kind. The word lists are the
    generator's (scenes.COLOUR_NAMES, scenes.OBJECTS): a prior built into the training, named
    in the bundle README. The exported text encoder stays a plain CLIP text tower."""
    import torch

    text = model.text_model
    pairs = stream_masks(text, n_shape)
    pairs.append((model.text_projection.weight, block_mask(model.text_projection.weight, n_out, n_shape)))
    emb = text.embeddings.token_embedding.weight
    m = torch.ones_like(emb)
    for words, channels in ((scenes.COLOUR_NAMES, slice(0, n_shape)), (scenes.OBJECTS, slice(n_shape, None))):
        for w in words:
            ids = tokens.ids(w)[1:-1]  # without start and end of text
            if len(ids) != 1:
                raise SystemExit(f"--text-streams: '{w}' is {len(ids)} tokens, expected one")
            m[ids[0], channels] = 0
    return pairs + [(emb, m)]


def apply_masks(pairs) -> None:
    """Zero the masked weights (at initialisation and after every optimiser step)."""
    import torch

    with torch.no_grad():
        for w, m in pairs:
            w.mul_(m)


# ---------------------------------------------------------------------------
# plots and tables
# ---------------------------------------------------------------------------

def loss_curve_png(path: Path, steps, losses, evals) -> None:
    """Training loss (raw and smoothed) and validation zero-shot accuracy, drawn with PIL."""
    from PIL import Image, ImageDraw

    W, H, L, R, T, B = 900, 480, 60, 60, 30, 50
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    pw, ph = W - L - R, H - T - B
    xmax = max(steps) if steps else 1
    ymax = max(losses) * 1.05 if losses else 1
    X = lambda s: L + pw * s / xmax  # noqa: E731
    Y = lambda v: T + ph * (1 - v / ymax)  # noqa: E731
    YA = lambda a: T + ph * (1 - a)  # noqa: E731
    d.rectangle([L, T, L + pw, T + ph], outline="black")
    for k in range(6):
        v = ymax * k / 5
        d.line([(L - 4, Y(v)), (L, Y(v))], fill="black")
        d.text((5, Y(v) - 6), f"{v:.2f}", fill="black")
        d.text((L + pw + 6, YA(k / 5) - 6), f"{k * 20}%", fill=(0, 110, 0))
    for k in range(6):
        s = xmax * k / 5
        d.text((X(s) - 10, T + ph + 6), f"{int(s)}", fill="black")
    d.text((L + pw / 2 - 20, H - 20), "step", fill="black")
    d.text((L, 8), "training loss (grey raw, blue EMA)   validation zero-shot top-1: "
                   "green seen, red held-out", fill="black")
    if len(steps) > 1:
        d.line([(X(s), Y(v)) for s, v in zip(steps, losses)], fill=(190, 190, 190))
        ema, sm = losses[0], []
        for v in losses:
            ema = 0.95 * ema + 0.05 * v
            sm.append(ema)
        d.line([(X(s), Y(v)) for s, v in zip(steps, sm)], fill=(30, 60, 200), width=2)
    if evals:
        for key, col in (("seen", (0, 150, 0)), ("heldout", (200, 0, 0))):
            pts = [(X(e["step"]), YA(e[key])) for e in evals]
            if len(pts) > 1:
                d.line(pts, fill=col, width=2)
            for x, y in pts:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=col)
    im.save(path)


def metrics_table(path: Path, evals, settings: dict, wall: dict) -> None:
    lines = ["# Training metrics (written by models/tabletop/train.py)", "",
             "Validation: single-object images, 2 per seen and 8 per held-out composition "
             "(seeds disjoint from training and from eval/), zero-shot top-1 over all 64 "
             f"'colour object' phrases with the template {TEMPLATE!r}.", "",
             "| step | epoch | train loss (mean of last 50) | logit scale | seen top-1 | held-out top-1 | colour correct | object correct | minutes |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in evals:
        lines.append(f"| {e['step']} | {e['epoch']:.2f} | {e['loss']:.3f} | {e['logit_scale']:.1f} | "
                     f"{100 * e['seen']:.1f}% | {100 * e['heldout']:.1f}% | {100 * e['colour']:.1f}% | "
                     f"{100 * e['object']:.1f}% | {e['minutes']:.1f} |")
    lines += ["", "Settings:", "", "```", json.dumps(settings, indent=1), "```", "",
              f"Wall clock: rendering {wall['render_min']:.1f} min, training {wall['train_min']:.1f} min.", ""]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=24000, help="scenes rendered once and reused (default %(default)s)")
    p.add_argument("--data-seed", type=int, default=0, help="scene seeds are data_seed*10^7 + index")
    p.add_argument("--seed", type=int, default=0, help="weights init / batch order seed")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--single-frac", type=float, default=0.7,
                   help="fraction of each batch drawn from single-object scenes, distinct compositions "
                        "(at most 56 per batch; default %(default)s)")
    p.add_argument("--gray-frac", type=float, default=0.0,
                   help="fraction of images turned greyscale, captioned with object kinds only "
                        "('a black and white photo of a cup.'), so shape is learnt apart from colour (default %(default)s; the bundle used 0.1, see README)")
    p.add_argument("--gray-frac-end", type=float, default=None,
                   help="greyscale fraction at the end of the run, reached linearly from --gray-frac "
                        "(a curriculum: shape apart from colour early, compositions late; default: constant)")
    p.add_argument("--desat-frac", type=float, default=0.0,
                   help="share of the colour-removed images that are only partly desaturated (saturation "
                        "x0.15-0.6, captioned with kinds only, 'a photo of a cup.') instead of greyscale (default %(default)s)")
    p.add_argument("--loss", choices=["clip", "multi-positive"], default="clip",
                   help="clip: InfoNCE with one positive per row (the paper's); multi-positive: every caption "
                        "in the batch that is true of an image (same objects, same kinds for kinds-only "
                        "captions, ...) is a positive, targets spread evenly over them, so repeated "
                        "kinds-only captions are not pushed apart (default %(default)s)")
    p.add_argument("--patch-front", choices=["free", "lum-chroma"], default="free",
                   help="free: the patch embedding learns any filters; lum-chroma: it is kept to luminance "
                        "filters plus --chroma-channels filters of block-mean colour (project_patch_front), so "
                        "shape is learnt apart from colour (default %(default)s)")
    p.add_argument("--chroma-channels", type=int, default=32)
    p.add_argument("--chroma-block", type=int, default=16, help="pixels; divides the patch size")
    p.add_argument("--vision-streams", choices=["shared", "two-towers", "split-embedding"], default="shared",
                   help="with --patch-front lum-chroma: shared: every layer mixes luminance and colour "
                        "channels; two-towers: the transformer keeps a luminance stream and a colour stream "
                        "that never read each other and meet in the final projection; split-embedding: the "
                        "two towers are projected into separate parts of the embedding, so a similarity is "
                        "a shape term plus a colour term (stream_masks; default %(default)s)")
    p.add_argument("--text-streams", choices=["shared", "split"], default="shared",
                   help="split (with --vision-streams split-embedding): the text tower is two towers as "
                        "well, colour words zero in its kind stream and kind words zero in its colour "
                        "stream, each projected into the embedding part of its image tower "
                        "(text_stream_masks; default %(default)s)")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="processes rendering the scenes")
    p.add_argument("--max-minutes", type=float, default=21.0,
                   help="time limit: the cosine schedule runs over max(step/steps, minutes/max-minutes), so it anneals fully by then (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--out", default=str(CACHE / "checkpoint"))
    p.add_argument("--report-dir", default=str(TABLETOP_DIR), help="where loss_curve.png and training_metrics.md go")
    a = p.parse_args(argv)
    if a.vision_streams != "shared" and a.patch_front != "lum-chroma":
        p.error("--vision-streams needs --patch-front lum-chroma (the streams start at its filters)")
    if a.text_streams == "split" and a.vision_streams != "split-embedding":
        p.error("--text-streams split needs --vision-streams split-embedding")
    return a


def build_model(a, cfg, tokens: Tokens):
    """CLIPModel 'tabletop' initialised with --seed, logit scale ln(1/0.07), with the patch
    front and the stream masks the settings ask for applied (and the masks kept applied to the
    gradients). Returns (model, masks), the model in training mode."""
    import torch
    from transformers import CLIPModel

    torch.manual_seed(a.seed)
    model = CLIPModel(cfg)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))
    if a.patch_front == "lum-chroma":
        project_patch_front(model.vision_model.embeddings.patch_embedding.weight, a.chroma_channels, a.chroma_block)
    masks = []
    if a.vision_streams != "shared":
        n_lum = cfg.vision_config.hidden_size - a.chroma_channels
        masks = stream_masks(model.vision_model, n_lum)
        # the luminance tower's share of the joint embedding (48 of 64 dims for the tabletop model)
        n_out = cfg.projection_dim * n_lum // cfg.vision_config.hidden_size
        if a.vision_streams == "split-embedding":
            w = model.visual_projection.weight
            masks.append((w, block_mask(w, n_out, n_lum)))
        if a.text_streams == "split":
            masks += text_stream_masks(model, tokens, cfg.text_config.hidden_size // 2, n_out)
        apply_masks(masks)
        for w, m in masks:  # and keep the optimiser's moments of the masked weights at zero
            w.register_hook(lambda g, m=m: g * m)
    model.train()
    return model, masks


def make_optimizer(model, a):
    """AdamW, weight decay on the matrices other than the embeddings."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.98), eps=1e-6)


class Schedule:
    """Learning rate and greyscale fraction per step. Progress is counted from `start()`."""

    def __init__(self, a):
        self.a = a
        self.gray_end = a.gray_frac if a.gray_frac_end is None else a.gray_frac_end
        self.t_train = None

    def start(self) -> None:
        self.t_train = time.time()

    def progress(self, step):
        """The run's progress in [0, 1]: the larger of steps done / --steps and minutes spent /
        --max-minutes (so a slow machine still anneals fully before the time limit)."""
        a = self.a
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        if self.t_train is not None:
            t = max(t, (time.time() - self.t_train) / 60 / a.max_minutes)
        return min(1.0, max(0.0, t))

    def lr_at(self, step):
        """Linear warmup, then cosine to 0 over the rest of the run."""
        a = self.a
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        return a.lr * 0.5 * (1 + math.cos(math.pi * self.progress(step)))

    def gray_frac_at(self, step):
        return self.a.gray_frac + (self.gray_end - self.a.gray_frac) * self.progress(step)


def targets(loss: str, objs_per_image, caps):
    """[i, j] = 1 where caption j of the batch is true of image i (the diagonal always), else 0."""
    import torch

    n = len(caps)
    if loss == "clip":
        return torch.eye(n)
    true_of = [scenes.scene_meanings(o) for o in objs_per_image]
    keys = [scenes.caption_meaning(o, c) for o, c in zip(objs_per_image, caps)]
    pos = torch.tensor([[i == j or (keys[j] is not None and keys[j] in true_of[i]) for j in range(n)]
                        for i in range(n)], dtype=torch.float32)
    return pos


class BatchSampler:
    """Batches mix single-object and multi-object scenes in a fixed proportion (--single-frac).
    The single-object part shows distinct compositions (at most 56 per batch), so the
    InfoNCE targets of a batch have few false negatives; multi-object scenes are walked in
    shuffled order, reshuffled when used up."""

    def __init__(self, metas, batch: int, single_frac: float, seed: int):
        self.rng = np.random.default_rng([seed, 1])
        self.by_comp: dict[tuple, list[int]] = {}
        for i, m in enumerate(metas):
            if len(m) == 1:
                self.by_comp.setdefault((m[0][0], m[0][1]), []).append(i)
        self.comps = sorted(self.by_comp)
        self.multi = np.array([i for i, m in enumerate(metas) if len(m) > 1])
        self.n_single = min(len(self.comps), int(round(batch * single_frac)))
        self.n_multi = batch - self.n_single
        self.perm = self.rng.permutation(self.multi)
        self.cursor = 0

    def next_batch(self) -> np.ndarray:
        rng, by_comp, comps = self.rng, self.by_comp, self.comps
        chosen = rng.choice(len(comps), self.n_single, replace=False)
        single = [by_comp[comps[c]][rng.integers(len(by_comp[comps[c]]))] for c in chosen]
        if self.cursor + self.n_multi > len(self.multi):
            self.perm, self.cursor = rng.permutation(self.multi), 0
        part = self.perm[self.cursor:self.cursor + self.n_multi]
        self.cursor += self.n_multi
        return np.sort(np.concatenate([np.array(single, dtype=np.int64), part]))


def augment(u8: np.ndarray, rng, gf: float, gray_end: float, desat_frac: float):
    """In place: mirror half the images, turn a fraction gf grey (ITU-R 601 luminance, kept as
    3 channels), desat_frac of those only partly desaturated. Returns the masks (flip, gray,
    desat). The draws from `rng` are in a fixed order that the captions continue."""
    n = len(u8)
    flip = rng.random(n) < 0.5
    u8[flip] = u8[flip, :, ::-1]
    # (no random draw when off, so runs without it keep the same caption stream)
    gray = rng.random(n) < gf if gf > 0 or gray_end > 0 else np.zeros(n, bool)
    # partly desaturated instead of grey (no draw when off, as above)
    desat = (gray & (rng.random(n) < desat_frac)) if desat_frac > 0 else np.zeros(n, bool)
    if gray.any():  # luminance (ITU-R 601), kept as 3 channels
        x = u8[gray].astype(np.float32)
        lum = x @ np.array(scenes.LUMA_601, np.float32)
        sat = np.where(desat[gray], rng.uniform(0.15, 0.6, int(gray.sum())), 0.0).astype(np.float32)
        x = lum[..., None] + sat[:, None, None, None] * (x - lum[..., None])
        u8[gray] = np.clip(x.round(), 0, 255).astype(np.uint8)
    return flip, gray, desat


def batch_captions(batch_metas, flip, gray, desat, rng) -> tuple[list[str], list]:
    """A caption per image drawn from its (mirrored) objects: kinds only for the partly
    desaturated, colourless for the grey, any for the rest. Returns (captions, objects)."""
    caps, objs_per_image = [], []
    for j, meta in enumerate(batch_metas):
        objs = [scenes.SceneObject(c, k, (scenes.SIZE - cx) if flip[j] else cx, 0.0, 0.0) for c, k, cx in meta]
        objs_per_image.append(objs)
        if desat[j]:
            caps.append(scenes.kinds_caption(objs, rng))
        elif gray[j]:
            caps.append(scenes.colourless_caption(objs, rng))
        else:
            caps.append(scenes.captions_for(objs, rng))
    return caps, objs_per_image


def train_step(a, model, opt, tokens: Tokens, masks, u8, caps, objs_per_image, lr: float) -> float:
    """One optimiser step on a batch (symmetric InfoNCE), then the patch front, the masks and
    the logit-scale clamp re-applied. Returns the loss."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    img = cb.hf_image_features(model, to_pixels(u8))
    txt = cb.hf_text_features(model, tokens.batch(caps))
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.exp() * img @ txt.T
    pos = targets(a.loss, objs_per_image, caps)
    loss = 0.5 * (torch.nn.functional.cross_entropy(logits, pos / pos.sum(1, keepdim=True))
                  + torch.nn.functional.cross_entropy(logits.T, pos.T / pos.T.sum(1, keepdim=True)))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if a.patch_front == "lum-chroma":
        project_patch_front(model.vision_model.embeddings.patch_embedding.weight, a.chroma_channels, a.chroma_block)
    apply_masks(masks)
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item()


class TrainLog:
    """What the run recorded: the loss per step, the validation results, the training time."""

    def __init__(self):
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.evals: list[dict] = []
        self.train_min = 0.0


def train(a, model, opt, tokens: Tokens, masks, images, metas, val) -> TrainLog:
    """The training loop: --steps steps or --max-minutes, validated every --eval-every steps
    and at the end."""
    val_x, val_y, val_split = val
    sched = Schedule(a)
    sampler = BatchSampler(metas, a.batch, a.single_frac, a.seed)
    run = TrainLog()
    steps_log, losses, evals = run.steps, run.losses, run.evals
    sched.start()
    for step in range(a.steps):
        idx = sampler.next_batch()
        epoch = (step * a.batch) // len(images)
        u8 = np.array(images[idx])
        rng = np.random.default_rng([a.seed, 2, step])
        flip, gray, desat = augment(u8, rng, sched.gray_frac_at(step), sched.gray_end, a.desat_frac)
        caps, objs_per_image = batch_captions([metas[i] for i in idx], flip, gray, desat, rng)
        loss = train_step(a, model, opt, tokens, masks, u8, caps, objs_per_image, sched.lr_at(step))
        steps_log.append(step + 1)
        losses.append(loss)
        minutes = (time.time() - sched.t_train) / 60
        if (step + 1) % 20 == 0:
            log(f"step {step + 1}/{a.steps} epoch {epoch} loss {np.mean(losses[-20:]):.3f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {sched.lr_at(step):.2e} {minutes:.1f} min")
        stop = minutes > a.max_minutes or (step >= a.warmup and sched.lr_at(step) <= 0.0)
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps or stop:
            m = zero_shot(model, tokens, val_x, val_y, val_split)
            e = dict(step=step + 1, epoch=(step + 1) * a.batch / len(images), loss=float(np.mean(losses[-50:])),
                     logit_scale=float(model.logit_scale.exp()), minutes=minutes, **m)
            evals.append(e)
            log(f"validation step {step + 1}: seen {100 * m['seen']:.1f}% held-out {100 * m['heldout']:.1f}% "
                f"colour {100 * m['colour']:.1f}% object {100 * m['object']:.1f}%")
        if stop:
            log(f"time limit {a.max_minutes} min reached at step {step + 1}: stopping")
            break
    run.train_min = (time.time() - sched.t_train) / 60
    return run


def training_settings(a, cfg, n_params: int, seed_base: int, steps_done: int) -> dict:
    """The run's settings, as training.json and training_metrics.md record them."""
    import torch

    gray_end = a.gray_frac if a.gray_frac_end is None else a.gray_frac_end
    return {
        "architecture": "tabletop (models/clip_bundle.py ARCHITECTURES)",
        "parameters": n_params,
        "images_rendered": a.images, "data_seed": a.data_seed, "scene_seed_base": seed_base,
        "objects_per_scene_weights": {"1": 0.5, "2": 0.25, "3": 0.15, "4": 0.1},
        "single_object_fraction_of_batch": a.single_frac,
        "augmentation": "horizontal mirror (p=0.5, captions follow), caption re-drawn on every use, "
                        f"greyscale with a kinds-only caption (p={a.gray_frac}"
                        + (f" -> {gray_end} linearly over the run" if gray_end != a.gray_frac else "")
                        + (f"; {a.desat_frac} of them partly desaturated instead, x0.15-0.6, "
                           "'a photo of a cup.'" if a.desat_frac > 0 else "") + ")",
        "seed": a.seed, "steps_planned": a.steps, "steps_done": steps_done, "batch": a.batch,
        "samples_seen": steps_done * a.batch, "epochs": round(steps_done * a.batch / a.images, 2),
        "patch_embedding": "free" if a.patch_front == "free" else
                           f"luminance-only filters ({cfg.vision_config.hidden_size - a.chroma_channels}) + "
                           f"{a.chroma_block}x{a.chroma_block}-block mean colour ({a.chroma_channels}), "
                           "projected after every step",
        "vision_streams": a.vision_streams,
        "text_streams": a.text_streams,
        "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6)", "lr": a.lr, "warmup_steps": a.warmup,
        "schedule": "linear warmup + cosine to 0 over max(step/steps, minutes/max_minutes)", "weight_decay": a.weight_decay,
        "loss": "symmetric InfoNCE (CLIP), learned logit_scale init ln(1/0.07), clamp ln(100)"
                + ("; multi-positive targets (captions true of several images of the batch)"
                   if a.loss == "multi-positive" else ""),
        "threads": a.threads, "torch": torch.__version__.split("+")[0],
    }


def save_run(a, model, settings: dict, run: TrainLog, render_min: float) -> Path:
    """The checkpoint (save_pretrained + training.json + loss.json) under --out, and
    loss_curve.png and training_metrics.md under --report-dir."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    training = {
        "generator": "models/tabletop/scenes.py training_example(seed)",
        "held_out": [f"{c} {o}" for c, o in scenes.HELD_OUT],
        "settings": settings,
        "final_loss": float(np.mean(run.losses[-50:])),
        "final_logit_scale": float(model.logit_scale.exp()),
        "validation": run.evals[-1] if run.evals else None,
        "wall_minutes": {"render": round(render_min, 2), "train": round(run.train_min, 2)},
    }
    (out / "training.json").write_text(json.dumps(training, indent=1))
    (out / "loss.json").write_text(json.dumps({"step": run.steps, "loss": run.losses, "evals": run.evals}))
    report = Path(a.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    loss_curve_png(report / "loss_curve.png", run.steps, run.losses, run.evals)
    metrics_table(report / "training_metrics.md", run.evals, settings,
                  {"render_min": render_min, "train_min": run.train_min})
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    t_start = time.time()
    seed_base = a.data_seed * 10_000_000
    images, metas = render_dataset(a.images, seed_base, a.workers)
    render_min = (time.time() - t_start) / 60
    log(f"scenes ready: {images.shape} ({render_min:.1f} min)")
    val = validation_set(2, 8)
    tokens = Tokens()

    cfg = cb.clip_config("tabletop")
    model, masks = build_model(a, cfg, tokens)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"CLIPModel 'tabletop': {n_params / 1e6:.2f} M parameters "
        f"(vision {sum(p.numel() for p in model.vision_model.parameters()) / 1e6:.2f} M)")
    opt = make_optimizer(model, a)
    run = train(a, model, opt, tokens, masks, images, metas, val)
    settings = training_settings(a, cfg, n_params, seed_base, run.steps[-1])
    out = save_run(a, model, settings, run, render_min)
    log(f"saved {out} (train {run.train_min:.1f} min, total {(time.time() - t_start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
