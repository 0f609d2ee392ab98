"""Synthetic tabletop scenes with captions: the training data of the project's small CLIP.

`render_scene(seed, ...)` draws a 224x224 RGB picture of 1-4 everyday objects on a table
(wall + table split, wood/cloth/tile textures or gradients), with per-instance colour
jitter, sizes, positions, occlusion, soft shadows, global lighting (brightness, contrast,
colour cast) and sensor noise, and returns the image plus the scene's objects. Captions
are built from the objects (`captions_for`), with many phrasings, including CLIP's
"a photo of a {}." form so the zero-shot prompts the engine uses are in distribution.

Everything is a pure function of the integer seed (numpy Generator + PIL drawing): the
same seed gives the same pixels and captions on any machine with the same Pillow/numpy.

Objects (8): cup, ball, box, bottle, banana, can, book, phone.
Colours (8): red, green, blue, yellow, orange, purple, black, white.
Compositions can be excluded (`exclude=`): training never draws or names them.

    python3 models/tabletop/scenes.py --out /tmp/scenes --n 16     # write a preview grid
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 224
OBJECTS = ["cup", "ball", "box", "bottle", "banana", "can", "book", "phone"]
COLOURS = {
    "red": (205, 30, 35),
    "green": (40, 160, 55),
    "blue": (35, 75, 205),
    "yellow": (240, 212, 35),
    "orange": (245, 128, 20),
    "purple": (135, 50, 175),
    "black": (28, 28, 30),
    "white": (238, 238, 235),
}
COLOUR_NAMES = list(COLOURS)
# ITU-R 601 luma weights (R, G, B): the greyscale of training augmentation, the evaluation
# probe and the luminance filters of train.py's lum-chroma patch embedding.
LUMA_601 = (0.299, 0.587, 0.114)
ALL_COMPOSITIONS = [(c, o) for c in COLOUR_NAMES for o in OBJECTS]
# One held-out composition per colour and per object: never drawn or named in training.
HELD_OUT = [
    ("red", "banana"), ("blue", "cup"), ("green", "phone"), ("yellow", "box"),
    ("purple", "ball"), ("orange", "bottle"), ("white", "can"), ("black", "book"),
]


@dataclass
class SceneObject:
    colour: str
    kind: str
    cx: float  # centre x of the footprint
    by: float  # y of the footprint (bottom of the object on the table)
    size: float  # nominal height in pixels

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.kind}"


# ---------------------------------------------------------------------------
# colour helpers
# ---------------------------------------------------------------------------

def _clip(c) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(v)))) for v in c)  # type: ignore[return-value]


def _shade(c, f: float) -> tuple[int, int, int]:
    """f < 1 darkens, f > 1 lightens towards white."""
    if f <= 1:
        return _clip([v * f for v in c])
    t = f - 1
    return _clip([v + (255 - v) * t for v in c])


def instance_colour(name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    base = np.array(COLOURS[name], dtype=np.float64)
    jitter = rng.uniform(-18, 18, 3)
    scale = rng.uniform(0.85, 1.08)
    if name == "black":
        base = base + rng.uniform(0, 22)  # near-black greys
        scale = 1.0
    if name == "white":
        base = base - rng.uniform(0, 25)
        scale = 1.0
    return _clip(base * scale + jitter)


# ---------------------------------------------------------------------------
# backgrounds
# ---------------------------------------------------------------------------

TABLE_TONES = [(150, 105, 65), (180, 140, 95), (120, 85, 55), (165, 160, 150), (110, 110, 112),
               (200, 190, 170), (140, 125, 110), (95, 80, 70), (185, 175, 160), (130, 140, 135)]
WALL_TONES = [(215, 210, 200), (190, 195, 200), (170, 165, 155), (225, 220, 205), (150, 155, 160),
              (200, 185, 170), (120, 125, 130), (180, 190, 180)]


def _tone(choices, rng) -> np.ndarray:
    c = np.array(choices[rng.integers(len(choices))], dtype=np.float64)
    return np.clip(c + rng.uniform(-20, 20, 3), 0, 255)


def _table_texture(h: int, w: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    img = np.ones((h, w, 3)) * base
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == 0:  # wood grain: wavy stripes
        freq = rng.uniform(0.08, 0.25)
        phase = rng.uniform(0, 6.3)
        wav = np.sin(yy * freq + 2.5 * np.sin(xx * rng.uniform(0.01, 0.04) + phase))
        img *= (1 + rng.uniform(0.04, 0.1) * wav)[..., None]
    elif kind == 1:  # tiles
        step = rng.integers(24, 60)
        grout = ((xx % step) < 2) | ((yy % step) < 2)
        img[grout] *= 0.75
    elif kind == 2:  # cloth: fine noise
        img *= (1 + rng.normal(0, 0.05, (h, w)))[..., None]
    else:  # smooth gradient
        g = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), h)[:, None]
        img *= g[..., None]
    return img


def background(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """RGB float array and the y of the table's back edge (objects stand below it)."""
    kind = rng.integers(3)
    img = np.zeros((SIZE, SIZE, 3))
    if kind == 0:  # wall + table
        horizon = int(rng.integers(50, 120))
        wall = _tone(WALL_TONES, rng)
        g = np.linspace(rng.uniform(0.9, 1.05), rng.uniform(0.9, 1.05), horizon)[:, None, None]
        img[:horizon] = wall * g
        img[horizon:] = _table_texture(SIZE - horizon, SIZE, _tone(TABLE_TONES, rng), rng)
        img[horizon:horizon + 2] *= 0.8  # table edge
    elif kind == 1:  # table only (top-down-ish)
        horizon = int(rng.integers(0, 40))
        img[:] = _table_texture(SIZE, SIZE, _tone(TABLE_TONES, rng), rng)
    else:  # two-tone vertical gradient
        horizon = int(rng.integers(30, 110))
        a, b = _tone(WALL_TONES + TABLE_TONES, rng), _tone(TABLE_TONES, rng)
        t = np.linspace(0, 1, SIZE)[:, None, None]
        img[:] = a * (1 - t) + b * t
    return np.clip(img, 0, 255), horizon


# ---------------------------------------------------------------------------
# object silhouettes, drawn on an RGBA patch of side 2*size, anchored at bottom centre
# ---------------------------------------------------------------------------

def _draw_cup(d: ImageDraw.ImageDraw, c, s, rng, ox, oy):
    h = s * 0.8
    top_w, bot_w = s * rng.uniform(0.62, 0.72), s * rng.uniform(0.46, 0.56)
    # handle first (body covers its inner end)
    hx = ox + top_w / 2 - s * 0.06
    hr = s * rng.uniform(0.2, 0.26)
    d.ellipse([hx - hr * 0.3, oy - h * 0.75, hx + hr * 1.3, oy - h * 0.22], outline=_shade(c, 0.8),
              width=max(2, int(s * 0.07)))
    body = [(ox - top_w / 2, oy - h), (ox + top_w / 2, oy - h), (ox + bot_w / 2, oy), (ox - bot_w / 2, oy)]
    d.polygon(body, fill=c)
    # right side shading
    d.polygon([(ox + top_w * 0.2, oy - h), (ox + top_w / 2, oy - h), (ox + bot_w / 2, oy), (ox + bot_w * 0.2, oy)],
              fill=_shade(c, 0.85))
    # rim: the inside of the cup
    d.ellipse([ox - top_w / 2, oy - h - s * 0.07, ox + top_w / 2, oy - h + s * 0.07], fill=_shade(c, 0.6),
              outline=_shade(c, 1.15))


def _draw_ball(d, c, s, rng, ox, oy):
    r = s * 0.45
    cy = oy - r
    d.ellipse([ox - r, cy - r, ox + r, cy + r], fill=_shade(c, 0.8))
    d.ellipse([ox - r * 0.92, cy - r * 0.95, ox + r * 0.8, cy + r * 0.8], fill=c)
    hr = r * 0.28
    d.ellipse([ox - r * 0.5 - hr, cy - r * 0.5 - hr * 0.7, ox - r * 0.5 + hr, cy - r * 0.5 + hr * 0.7],
              fill=_shade(c, 1.45))


def _draw_box(d, c, s, rng, ox, oy):
    w = s * rng.uniform(0.7, 1.0)
    h = s * rng.uniform(0.55, 0.8)
    dx, dy = s * rng.uniform(0.18, 0.3), s * rng.uniform(0.15, 0.25)
    x0, x1 = ox - w / 2 - dx / 2, ox + w / 2 - dx / 2
    front = [(x0, oy - h), (x1, oy - h), (x1, oy), (x0, oy)]
    top = [(x0, oy - h), (x0 + dx, oy - h - dy), (x1 + dx, oy - h - dy), (x1, oy - h)]
    side = [(x1, oy - h), (x1 + dx, oy - h - dy), (x1 + dx, oy - dy), (x1, oy)]
    d.polygon(front, fill=c)
    d.polygon(top, fill=_shade(c, 1.25))
    d.polygon(side, fill=_shade(c, 0.7))
    edge = _shade(c, 0.55)
    d.line(front + [front[0]], fill=edge, width=1)


def _draw_bottle(d, c, s, rng, ox, oy):
    bw = s * rng.uniform(0.32, 0.4)
    bh = s * rng.uniform(0.55, 0.62)
    nw = bw * rng.uniform(0.35, 0.45)
    sh = s * 0.14
    nh = s * 0.14
    d.rounded_rectangle([ox - bw / 2, oy - bh, ox + bw / 2, oy], radius=bw * 0.18, fill=c)
    d.polygon([(ox - bw / 2, oy - bh + 2), (ox - nw / 2, oy - bh - sh), (ox + nw / 2, oy - bh - sh),
               (ox + bw / 2, oy - bh + 2)], fill=c)
    d.rectangle([ox - nw / 2, oy - bh - sh - nh, ox + nw / 2, oy - bh - sh], fill=c)
    d.rectangle([ox - nw / 2 - 1, oy - bh - sh - nh - s * 0.08, ox + nw / 2 + 1, oy - bh - sh - nh],
                fill=_shade(c, 0.55))
    # glossy highlight stripe
    d.rectangle([ox - bw * 0.3, oy - bh * 0.9, ox - bw * 0.18, oy - bh * 0.15], fill=_shade(c, 1.35))


def _draw_banana(d, c, s, rng, ox, oy):
    # crescent: region between two circular arcs, tips dark
    L = s * rng.uniform(1.0, 1.25)
    sag = L * rng.uniform(0.22, 0.3)
    thick = s * rng.uniform(0.2, 0.26)
    n = 24
    ts = np.linspace(-1, 1, n)
    xs = ox + ts * L / 2
    outer = oy - thick * 0.2 - sag * (1 - ts ** 2)  # lower edge of arc (curving up at ends? no: down)
    outer = oy - sag * ts ** 2 - thick * 0.2  # ends up, middle low
    inner = outer - thick * (1 - 0.75 * ts ** 2)
    poly = list(zip(xs, outer)) + list(zip(xs[::-1], inner[::-1]))
    d.polygon(poly, fill=c)
    mid = outer - thick * 0.25 * (1 - 0.75 * ts ** 2)
    d.line(list(zip(xs[3:-3], mid[3:-3])), fill=_shade(c, 0.8), width=max(1, int(s * 0.03)))
    tip = (70, 50, 30)
    for x, y in ((xs[0], (outer[0] + inner[0]) / 2), (xs[-1], (outer[-1] + inner[-1]) / 2)):
        r = max(2, s * 0.04)
        d.ellipse([x - r, y - r, x + r, y + r], fill=tip)


def _draw_can(d, c, s, rng, ox, oy):
    w = s * rng.uniform(0.42, 0.52)
    h = s * rng.uniform(0.7, 0.85)
    e = w * 0.28
    d.ellipse([ox - w / 2, oy - e, ox + w / 2, oy + e * 0.3], fill=_shade(c, 0.75))
    d.rectangle([ox - w / 2, oy - h, ox + w / 2, oy - e * 0.35], fill=c)
    d.rectangle([ox + w * 0.22, oy - h, ox + w / 2, oy - e * 0.35], fill=_shade(c, 0.82))
    d.rectangle([ox - w * 0.35, oy - h, ox - w * 0.25, oy - e * 0.35], fill=_shade(c, 1.3))
    d.ellipse([ox - w / 2, oy - h - e / 2, ox + w / 2, oy - h + e / 2], fill=(185, 188, 192), outline=_shade(c, 0.6))
    d.ellipse([ox - w * 0.3, oy - h - e * 0.3, ox + w * 0.3, oy - h + e * 0.3], outline=(140, 142, 148))


def _draw_book(d, c, s, rng, ox, oy):
    w = s * rng.uniform(0.95, 1.2)
    h = s * rng.uniform(0.25, 0.34)  # lying flat: cover seen in perspective
    slant = s * rng.uniform(0.2, 0.35)
    th = s * rng.uniform(0.1, 0.16)  # thickness
    x0 = ox - w / 2
    cover = [(x0 + slant, oy - th - h), (x0 + slant + w, oy - th - h), (x0 + w, oy - th), (x0, oy - th)]
    pages = [(x0, oy - th), (x0 + w, oy - th), (x0 + w, oy), (x0, oy)]
    side = [(x0 + w, oy - th), (x0 + slant + w, oy - th - h), (x0 + slant + w, oy - h), (x0 + w, oy)]
    d.polygon(pages, fill=(236, 230, 210))
    for k in range(1, 4):  # page lines
        y = oy - th * k / 4
        d.line([(x0 + 2, y), (x0 + w - 2, y)], fill=(200, 192, 170))
    d.polygon(side, fill=(225, 218, 196))
    d.polygon(cover, fill=c)
    # spine stripe along the near-left edge
    d.polygon([(x0, oy - th), (x0 + slant, oy - th - h), (x0 + slant + w * 0.1, oy - th - h), (x0 + w * 0.1, oy - th)],
              fill=_shade(c, 0.7))
    d.line(cover + [cover[0]], fill=_shade(c, 0.6), width=1)


def _draw_phone(d, c, s, rng, ox, oy):
    h = s * rng.uniform(0.85, 1.0)
    w = h * rng.uniform(0.48, 0.55)
    r = w * 0.16
    box = [ox - w / 2, oy - h, ox + w / 2, oy]
    d.rounded_rectangle(box, radius=r, fill=c, outline=_shade(c, 0.6))
    if rng.random() < 0.5:  # front: dark screen with a coloured bezel
        b = w * 0.16
        scr = (int(rng.integers(15, 40)), int(rng.integers(20, 45)), int(rng.integers(35, 70)))
        d.rounded_rectangle([box[0] + b, box[1] + b * 1.3, box[2] - b, box[3] - b * 1.3], radius=r * 0.4, fill=scr)
        d.line([(ox - w * 0.12, box[1] + b * 0.6), (ox + w * 0.12, box[1] + b * 0.6)], fill=_shade(c, 0.5), width=2)
    else:  # back: camera module
        cm = w * 0.3
        d.rounded_rectangle([box[0] + w * 0.12, box[1] + w * 0.12, box[0] + w * 0.12 + cm, box[1] + w * 0.12 + cm * 1.3],
                            radius=cm * 0.2, fill=_shade(c, 0.75))
        lr = cm * 0.25
        cx, cy = box[0] + w * 0.12 + cm / 2, box[1] + w * 0.12 + cm * 0.4
        d.ellipse([cx - lr, cy - lr, cx + lr, cy + lr], fill=(20, 20, 25))
        d.rectangle([ox - w * 0.35, box[1] + h * 0.45, ox - w * 0.25, box[1] + h * 0.85], fill=_shade(c, 1.2))


DRAW = {"cup": _draw_cup, "ball": _draw_ball, "box": _draw_box, "bottle": _draw_bottle,
        "banana": _draw_banana, "can": _draw_can, "book": _draw_book, "phone": _draw_phone}
MAX_TILT = {"cup": 8, "ball": 0, "box": 6, "bottle": 10, "banana": 35, "can": 6, "book": 15, "phone": 25}


def object_patch(obj: SceneObject, rng: np.random.Generator) -> Image.Image:
    """RGBA patch of side ~2.4*size with the object, its bottom centre at the patch centre
    horizontally and at 75% height; tilted by a small random angle."""
    s = obj.size
    side = int(s * 2.4) | 1
    patch = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(patch)
    colour = instance_colour(obj.colour, rng)
    DRAW[obj.kind](d, colour + (255,), s, rng, side / 2, side * 0.75)
    tilt = MAX_TILT[obj.kind]
    if tilt and rng.random() < 0.7:
        patch = patch.rotate(float(rng.uniform(-tilt, tilt)), resample=Image.BILINEAR, center=(side / 2, side * 0.75))
    if rng.random() < 0.5 and obj.kind in ("cup", "banana", "book", "phone", "bottle", "box"):
        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
    return patch


# ---------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------

def sample_objects(rng: np.random.Generator, n: int, horizon: int,
                   allowed: Sequence[tuple[str, str]], distinct: bool = True,
                   size_range: tuple[float, float] | None = None) -> list[SceneObject]:
    """n objects with allowed (colour, kind) pairs; distinct phrases when `distinct`."""
    objs: list[SceneObject] = []
    used: set[tuple[str, str]] = set()
    lo, hi = size_range or ((80, 140) if n == 1 else (58, 105) if n == 2 else (50, 88))
    slots = np.sort(rng.permutation(n) + rng.uniform(0.1, 0.9, n)) / n  # spread in x
    rng.shuffle(slots)
    for i in range(n):
        while True:
            c, k = allowed[rng.integers(len(allowed))]
            if not distinct or (c, k) not in used:
                break
        used.add((c, k))
        s = float(rng.uniform(lo, hi))
        margin = s * 0.55
        cx = float(np.clip(slots[i] * SIZE + rng.uniform(-12, 12), margin, SIZE - margin))
        top = max(horizon + s * 0.2, s * 0.95)
        by = float(rng.uniform(min(top, SIZE - 8), SIZE - 6))
        objs.append(SceneObject(c, k, cx, by, s))
    return objs


def render(objs: Sequence[SceneObject], rng: np.random.Generator, bg: tuple[np.ndarray, int] | None = None,
           noise_max: float = 7.0, boxes: list | None = None) -> Image.Image:
    """Draw the scene. When `boxes` is a list, it receives one `(x0, y0, x1, y1)` per object
    in the order of `objs`: the tight box of the object's drawn pixels (alpha > 0, after tilt
    and mirror) in image pixels, clipped to the image, half-open (x1, y1 exclusive). Drawn
    boxes include parts a nearer object hides. Asking for boxes consumes no random numbers:
    the picture is the same either way."""
    arr, _ = bg if bg is not None else background(rng)
    canvas = Image.fromarray(arr.astype(np.uint8), "RGB").convert("RGBA")
    shadow_dx = float(rng.uniform(-10, 10))
    found: dict[int, tuple[int, int, int, int]] = {}
    for i, obj in sorted(enumerate(objs), key=lambda io: io[1].by):  # back to front: nearer objects occlude
        patch = object_patch(obj, rng)
        side = patch.size[0]
        x0, y0 = int(round(obj.cx - side / 2)), int(round(obj.by - side * 0.75))
        bb = patch.getchannel("A").getbbox()
        if bb is not None:
            found[i] = (max(0, x0 + bb[0]), max(0, y0 + bb[1]), min(SIZE, x0 + bb[2]), min(SIZE, y0 + bb[3]))
        # soft shadow: the object's alpha, squashed towards the table, blurred, dark
        a = patch.getchannel("A")
        sh = a.resize((side, max(1, side // 3)), Image.BILINEAR)
        sh = sh.filter(ImageFilter.BoxBlur(max(1, side // 30)))
        opacity = float(rng.uniform(0.25, 0.5))
        sh = sh.point(lambda v, o=opacity: int(v * o))
        shadow = Image.new("RGBA", sh.size, (0, 0, 0, 0))
        shadow.putalpha(sh)
        sy = int(obj.by - sh.size[1] * 0.85)
        canvas.alpha_composite(shadow, (x0 + int(shadow_dx), sy)) if _fits(canvas, shadow, x0 + int(shadow_dx), sy) \
            else _paste_clipped(canvas, shadow, x0 + int(shadow_dx), sy)
        _paste_clipped(canvas, patch, x0, y0)
    img = np.asarray(canvas.convert("RGB")).astype(np.float32)
    # lighting: brightness, contrast, colour cast, vignette-ish gradient
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.8, 1.2) + mean
    img *= rng.uniform(0.78, 1.2)
    img *= (1 + rng.uniform(-0.07, 0.07, 3)).astype(np.float32)
    if rng.random() < 0.4:
        gx = np.linspace(1 + rng.uniform(-0.15, 0.15), 1 + rng.uniform(-0.15, 0.15), SIZE, dtype=np.float32)
        img *= gx[None, :, None] if rng.random() < 0.5 else gx[:, None, None]
    if noise_max > 0:
        img += rng.normal(0, rng.uniform(0, noise_max), img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.15:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    if boxes is not None:
        boxes.extend(found.get(i, (0, 0, 0, 0)) for i in range(len(objs)))
    return out


def _fits(canvas, im, x, y) -> bool:
    return x >= 0 and y >= 0 and x + im.size[0] <= canvas.size[0] and y + im.size[1] <= canvas.size[1]


def _paste_clipped(canvas: Image.Image, im: Image.Image, x: int, y: int) -> None:
    """alpha_composite that tolerates patches hanging off the canvas."""
    W, H = canvas.size
    l, t = max(0, -x), max(0, -y)
    r, b = min(im.size[0], W - x), min(im.size[1], H - y)
    if r <= l or b <= t:
        return
    canvas.alpha_composite(im.crop((l, t, r, b)), (x + l, y + t))


# ---------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------

SINGLE_TEMPLATES = [
    "a photo of a {}.", "a photo of a {}.", "a {}", "a {}.", "a photo of the {}.", "a picture of a {}.",
    "a {} on a table", "a photo of a {} on a table.", "a {} on the table.", "there is a {} on the table",
    "a close-up photo of a {}.", "a bright photo of a {}.", "a dark photo of a {}.", "a good photo of a {}.",
    "the {}", "an image of a {}.", "a {} sitting on a table", "a photo of one {}.", "a small {}.", "a large {}.",
]
PAIR_TEMPLATES = [
    "a {} and a {}", "a photo of a {} and a {}.", "a {} next to a {}", "a {} and a {} on a table",
    "a photo of a {} next to a {}.", "a {} beside a {}.", "a table with a {} and a {}.",
]
LIST_TEMPLATES = ["{}", "a photo of {}.", "{} on a table", "a table with {}.", "a picture of {}."]


def _article(phrase: str, rng) -> str:
    if phrase[0] in "aeiou" and rng.random() < 0.4:
        return "an " + phrase
    return "a " + phrase


def captions_for(objs: Sequence[SceneObject], rng: np.random.Generator) -> str:
    """One caption drawn from many phrasings. Mentions every object, in random order, with
    occasional spatial relations (left/right from the centres); a few captions name only
    the colours or only the kinds (which always hold for the whole scene)."""
    n = len(objs)
    u = rng.random()
    if n == 1:
        o = objs[0]
        if u < 0.06:
            return rng.choice(["a photo of a {}.", "a {}", "a {} on a table"]).format(o.kind)
        if u < 0.1:
            return rng.choice(["a photo of something {}.", "something {}", "a {} object"]).format(o.colour)
        t = SINGLE_TEMPLATES[rng.integers(len(SINGLE_TEMPLATES))]
        text = t.format(o.phrase)
        if "a {}" in t and o.phrase[0] in "aeiou" and rng.random() < 0.4:
            text = text.replace(f"a {o.phrase}", f"an {o.phrase}")
        return text
    order = list(rng.permutation(n))
    if n == 2 and u < 0.2:
        a, b = sorted(objs, key=lambda o: o.cx)
        if abs(a.cx - b.cx) > 25:
            if rng.random() < 0.5:
                return f"a {a.phrase} to the left of a {b.phrase}"
            return f"a {b.phrase} to the right of a {a.phrase}"
    if n == 2 and u < 0.75:
        t = PAIR_TEMPLATES[rng.integers(len(PAIR_TEMPLATES))]
        return t.format(objs[order[0]].phrase, objs[order[1]].phrase)
    parts = [_article(objs[i].phrase, rng) for i in order]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1]
    return LIST_TEMPLATES[rng.integers(len(LIST_TEMPLATES))].format(listed)


def _kinds_listed(objs: Sequence[SceneObject], rng: np.random.Generator) -> str:
    """The objects' kinds in random order: "a cup", "a cup and a ball", "a cup, a ball and a can"."""
    parts = ["a " + objs[i].kind for i in rng.permutation(len(objs))]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


GRAY_TEMPLATES = ["a black and white photo of {}.", "a grayscale photo of {}.", "a black and white picture of {}."]


def colourless_caption(objs: Sequence[SceneObject], rng: np.random.Generator) -> str:
    """Caption for the greyscale version of a scene: names the kinds only ("a black and
    white photo of a banana."), so shape is learnt apart from colour."""
    listed = _kinds_listed(objs, rng)  # first: the same random draws, in the same order, as before
    return GRAY_TEMPLATES[rng.integers(len(GRAY_TEMPLATES))].format(listed)


KIND_TEMPLATES = ["a photo of {}.", "{}", "{} on a table", "a picture of {}."]


def kinds_caption(objs: Sequence[SceneObject], rng: np.random.Generator) -> str:
    """Caption naming the kinds only, without colours and without claiming black and white
    ("a photo of a cup and a ball."): true of a scene however its colours look."""
    listed = _kinds_listed(objs, rng)  # first: the same random draws, in the same order, as before
    return KIND_TEMPLATES[rng.integers(len(KIND_TEMPLATES))].format(listed)


def caption_meaning(objs: Sequence[SceneObject], caption: str) -> tuple:
    """What a caption of `objs` (from captions_for, colourless_caption or kinds_caption)
    claims, as a key: two scenes the same key is true of are both matches of the caption.
    ("full", sorted (colour, kind) pairs), ("kinds", sorted kinds), ("colours", sorted
    colours); captions with left/right relations depend on the layout and get None (true
    of their own scene only)."""
    words = caption.replace(",", " ").replace(".", " ").split()
    if "left" in words or "right" in words:
        return None
    pairs = set(zip(words, words[1:]))
    if any((o.colour, o.kind) in pairs for o in objs):
        return ("full", tuple(sorted((o.colour, o.kind) for o in objs)))
    if all(o.kind in words for o in objs):
        return ("kinds", tuple(sorted(o.kind for o in objs)))
    return ("colours", tuple(sorted(o.colour for o in objs)))


def scene_meanings(objs: Sequence[SceneObject]) -> set:
    """Every caption_meaning key that is true of a scene with these objects."""
    return {("full", tuple(sorted((o.colour, o.kind) for o in objs))),
            ("kinds", tuple(sorted(o.kind for o in objs))),
            ("colours", tuple(sorted(o.colour for o in objs)))}


def allowed_compositions(exclude: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    ex = set(map(tuple, exclude))
    return [p for p in ALL_COMPOSITIONS if p not in ex]


def training_example(seed: int, exclude: Iterable[tuple[str, str]] = HELD_OUT,
                     n_weights: Sequence[float] = (0.5, 0.25, 0.15, 0.1)) -> tuple[Image.Image, str, list[SceneObject]]:
    """One training pair for an integer seed: (image, caption, objects). Excluded
    compositions never appear, neither as the subject nor as a distractor."""
    rng = np.random.default_rng([seed, 0x7AB1E])
    allowed = allowed_compositions(exclude)
    n = int(rng.choice(4, p=np.asarray(n_weights) / np.sum(n_weights))) + 1
    bg = background(rng)
    objs = sample_objects(rng, n, bg[1], allowed)
    img = render(objs, rng, bg)
    return img, captions_for(objs, rng), objs


def single_object_image(seed: int, colour: str, kind: str, noise_max: float = 4.0) -> Image.Image:
    """A distractor-free picture of one object (evaluation and samples)."""
    rng = np.random.default_rng([seed, 0xE7A1])
    bg = background(rng)
    objs = sample_objects(rng, 1, bg[1], [(colour, kind)], size_range=(85, 135))
    return render(objs, rng, bg, noise_max=noise_max)


def scene_image(seed: int, objs: Sequence[tuple[str, str]], noise_max: float = 4.0,
                boxes: list | None = None) -> Image.Image:
    """A picture of exactly the given (colour, kind) objects (samples); `boxes` as in
    `render`, in the order of `objs`."""
    rng = np.random.default_rng([seed, 0x5A3E])
    bg = background(rng)
    lo, hi = (85, 135) if len(objs) == 1 else (70, 105) if len(objs) == 2 else (62, 90)
    placed = sample_objects(rng, len(objs), bg[1], list(objs), size_range=(lo, hi))
    for o, (c, k) in zip(placed, objs):
        o.colour, o.kind = c, k
    return render(placed, rng, bg, noise_max=noise_max, boxes=boxes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Preview the tabletop scene generator.")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = int(math.ceil(math.sqrt(a.n)))
    grid = Image.new("RGB", (cols * SIZE, cols * (SIZE + 14)), (255, 255, 255))
    gd = ImageDraw.Draw(grid)
    for i in range(a.n):
        img, cap, _ = training_example(a.seed + i)
        x, y = (i % cols) * SIZE, (i // cols) * (SIZE + 14)
        grid.paste(img, (x, y))
        gd.text((x + 2, y + SIZE + 1), cap[:40], fill=(0, 0, 0))
        print(a.seed + i, cap)
    grid.save(out / "preview.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
