#!/usr/bin/env python3
"""Reference CLIP preprocessing outputs for images of awkward sizes and modes.

    python3 tests/data/preprocess/generate.py     # rewrites everything in tests/data/preprocess/

Writes, for each input image `<name>.<png|jpg>`:

  <name>.expected.png        224x224 RGB (lossless): transformers' slow PIL-based
                             CLIPImageProcessorPil (shortest_edge 224, crop 224, BICUBIC) run with
                             do_rescale=False, do_normalize=False on `PIL.Image.open(file)`, i.e.
                             the exact uint8 pixels after RGB conversion, resize and center crop.
  <name>.expected_from_path.png   only where different: the same processor given the file PATH
                             (transformers then loads it with load_image(): EXIF transpose +
                             .convert("RGB"), which drops alpha instead of compositing on white).
  <name>.decoded.png         for JPEG inputs: PIL's decoded RGB pixels (libjpeg-turbo), lossless.
  <name>.pixel_values.npy    for two images: the fully normalised tensor, default processor
                             settings, float32 [1,3,224,224].

and manifest.json describing inputs, the resize/crop geometry and the expected files. See
README.md for what the reference does with each mode. Deterministic (seeded RNG; PIL's
encoders are deterministic for a given Pillow version).
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 7
SIZE = 224


# --------------------------------------------------------------------------- content

def scene(w: int, h: int, seed: int) -> np.ndarray:
    """Compressible RGB content: smooth gradients, a few hard-edged shapes (to exercise the
    bicubic overshoot and clipping), and one small region of mild seeded noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    fx = x / max(w - 1, 1)
    fy = y / max(h - 1, 1)
    r = 255 * fx
    g = 255 * fy
    b = 127.5 + 127.5 * np.sin(2 * math.pi * (fx + fy) * 1.5 + seed)
    img = np.stack([r, g, b], axis=-1)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img, "RGB")
    d = ImageDraw.Draw(pil)
    for _ in range(4):
        x0, x1 = sorted(rng.integers(0, w, 2).tolist())
        y0, y1 = sorted(rng.integers(0, h, 2).tolist())
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x1, y1], fill=color)
        else:
            d.ellipse([x0, y0, x1, y1], fill=color)
    if w > 4 and h > 4:
        d.line([0, 0, w - 1, h - 1], fill=(255, 255, 255), width=max(1, min(w, h) // 50))
        d.line([0, h - 1, w - 1, 0], fill=(0, 0, 0), width=1)
    img = np.array(pil)
    # mild noise patch (at most 48x48)
    nw, nh = min(48, max(1, w // 4)), min(48, max(1, h // 4))
    x0, y0 = int(rng.integers(0, w - nw + 1)), int(rng.integers(0, h - nh + 1))
    patch = img[y0:y0 + nh, x0:x0 + nw].astype(np.int16) + rng.integers(-24, 25, (nh, nw, 3))
    img[y0:y0 + nh, x0:x0 + nw] = np.clip(patch, 0, 255).astype(np.uint8)
    return img


def write_png16(path: str, arr: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (gray: [H,W], RGB: [H,W,3]); Pillow cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    color_type = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[row].astype(">u2").tobytes() for row in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def make_inputs() -> list[dict]:
    """Create the input files; return [{name, file, note}] in a fixed order."""
    specs = []

    def save_png(name: str, im: Image.Image, note: str, **kw) -> None:
        fname = f"{name}.png"
        im.save(os.path.join(HERE, fname), optimize=True, **kw)
        specs.append({"name": name, "file": fname, "note": note})

    def rgb(w, h, seed):
        return Image.fromarray(scene(w, h, seed), "RGB")

    save_png("w1_h300", rgb(1, 300, 1), "1 px wide: resized to 224 x 67200 before the crop")
    save_png("w300_h1", rgb(300, 1, 2), "1 px tall: resized to 67200 x 224 before the crop")
    save_png("w2_h2", rgb(2, 2, 3), "2x2 upscale")
    save_png("w7_h5", rgb(7, 5, 4), "7x5 upscale, non-square")
    save_png("w224_h224", rgb(224, 224, 5), "exact size: resize and crop are no-ops")
    save_png("w225_h224", rgb(225, 224, 6), "height already 224: width 225, crop offset 0")
    save_png("w223_h224", rgb(223, 224, 7), "width 223 -> 224, height int(224*224/223) = int(225.004) = 225")
    save_png("w227_h224", rgb(227, 224, 8), "crop offset (227-224)//2 = 1 (torchvision would use round(1.5) = 2)")
    save_png("w100_h900", rgb(100, 900, 9), "tall upscale: 224 x 2016")
    save_png("w1000_h90", rgb(1000, 90, 10), "wide upscale: int(224*1000/90) = 2488 x 224")
    save_png("w1600_h1200", rgb(1600, 1200, 11), "large downscale 1600x1200 -> 298x224")
    save_png("w333_h517", rgb(333, 517, 12), "odd: 224 x int(224*517/333) = 347")
    save_png("w641_h479", rgb(641, 479, 13), "odd: int(224*641/479) = 299 x 224")
    save_png("w50_h40", rgb(50, 40, 14), "small upscale 5.6x")

    gray = Image.fromarray(scene(320, 240, 15)[..., 1], "L")
    save_png("gray_L_w320_h240", gray, "mode L (8-bit grayscale): convert('RGB') replicates the channel")

    a = scene(256, 200, 16)
    y, x = np.mgrid[0:200, 0:256]
    alpha = ((x * 255) // 255).clip(0, 255).astype(np.uint8)  # 0 at the left -> 255 at the right
    alpha[:40] = 0  # fully transparent band
    alpha[-40:] = 255  # fully opaque band
    alpha[80:120, 100:160] = 128
    save_png("rgba_w256_h200", Image.fromarray(np.dstack([a, alpha]), "RGBA"),
             "RGBA, varying alpha: composited on white")
    opaque = Image.fromarray(np.dstack([scene(120, 90, 17), np.full((90, 120), 255, np.uint8)]), "RGBA")
    save_png("rgba_opaque_w120_h90", opaque, "RGBA, alpha 255 everywhere")

    la = np.dstack([scene(180, 240, 18)[..., 0], np.tile(np.linspace(0, 255, 180).astype(np.uint8), (240, 1))])
    save_png("la_w180_h240", Image.fromarray(la, "LA"), "LA (gray + alpha): composited on white")

    pal = rgb(200, 150, 19).quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save_png("palette_w200_h150", pal, "mode P, 64 colours, no transparency")
    palt = rgb(150, 100, 20).quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    common = int(np.bincount(np.asarray(palt).ravel()).argmax())  # make the most used colour transparent
    save_png("palette_trns_w150_h100", palt, "mode P with tRNS (most used palette index fully transparent): "
             "composited on white", transparency=common)

    key_img = scene(130, 170, 27)
    key_img[20:60, 20:90] = (12, 34, 56)
    save_png("rgb_trns_key_w130_h170", Image.fromarray(key_img, "RGB"),
             "RGB PNG with a tRNS colour key (12,34,56): pixels of exactly that colour become white",
             transparency=(12, 34, 56))
    key_gray = scene(90, 70, 28)[..., 0]
    key_gray[10:30, 10:50] = 77
    save_png("gray_trns_key_w90_h70", Image.fromarray(key_gray, "L"),
             "L PNG with a tRNS grey key (77): pixels of exactly 77 become white", transparency=77)

    bilevel = Image.fromarray(scene(97, 61, 21)[..., 0] > 127).convert("1")
    save_png("bilevel_w97_h61", bilevel, "mode 1 (1-bit): 0 -> 0, 1 -> 255")

    yy, xx = np.mgrid[0:180, 0:240]
    g16 = (xx * 1023 // 239).astype(np.uint16)  # 0..1023 left to right
    g16[:30] = 65535
    g16[-30:] = (yy[-30:] * 255 // 179).astype(np.uint16)  # stays <= 255
    write_png16(os.path.join(HERE, "gray16_w240_h180.png"), g16)
    specs.append({"name": "gray16_w240_h180", "file": "gray16_w240_h180.png",
                  "note": "16-bit grayscale PNG (PIL mode I;16): convert('RGB') CLIPS to 0..255 (no scaling)"})

    s = scene(160, 120, 22).astype(np.uint16)
    rgb16 = s * 257 + np.random.default_rng(23).integers(0, 256, s.shape).astype(np.uint16) % 257
    write_png16(os.path.join(HERE, "rgb16_w160_h120.png"), rgb16)
    specs.append({"name": "rgb16_w160_h120", "file": "rgb16_w160_h120.png",
                  "note": "16-bit RGB PNG: PIL opens it as 8-bit RGB keeping the HIGH byte (v >> 8)"})

    def save_jpg(name, im, note, **kw):
        fname = f"{name}.jpg"
        im.save(os.path.join(HERE, fname), format="JPEG", **kw)
        # PIL's (libjpeg-turbo) decoded pixels, lossless, so decoder differences can be told
        # apart from resize differences.
        decoded = f"{name}.decoded.png"
        Image.open(os.path.join(HERE, fname)).convert("RGB").save(os.path.join(HERE, decoded), optimize=True)
        specs.append({"name": name, "file": fname, "note": note, "decoded": decoded})

    save_jpg("jpeg420_w640_h480", rgb(640, 480, 24), "JPEG, 4:2:0 chroma subsampling, quality 90",
             quality=90, subsampling=2)
    save_jpg("jpeg_gray_w300_h200", Image.fromarray(scene(300, 200, 25)[..., 2], "L"), "grayscale JPEG",
             quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    save_jpg("jpeg_exif6_w320_h240", rgb(320, 240, 26),
             "JPEG 4:4:4 with EXIF Orientation=6: ignored for a PIL image, applied for a path",
             quality=92, subsampling=0, exif=exif)
    return specs


# --------------------------------------------------------------------------- reference

def processor():
    """transformers' slow, PIL-based CLIP image processor (not the torchvision 'fast' one)."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None)
    if cls is None:  # transformers 4.x: CLIPImageProcessor is the PIL/numpy one
        cls = transformers.CLIPImageProcessor
    p = cls()
    assert getattr(p, "backend", "pil") == "pil", p
    assert p.size == {"shortest_edge": SIZE} or getattr(p.size, "shortest_edge", None) == SIZE, p.size
    return p


def reference_uint8(proc, image) -> np.ndarray:
    out = proc(images=image, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    assert out.shape == (1, 3, SIZE, SIZE), out.shape
    arr = np.asarray(out[0])
    as_int = np.round(arr).astype(np.int64)
    assert np.array_equal(arr, as_int), "reference values are not integers"
    assert as_int.min() >= 0 and as_int.max() <= 255
    return as_int.astype(np.uint8).transpose(1, 2, 0)  # HWC


def geometry(w: int, h: int) -> dict:
    """What the reference does: shortest side -> 224 with int() truncation of the long side,
    then crop top-left at ((H-224)//2, (W-224)//2)."""
    if w <= h:
        nw, nh = SIZE, int(SIZE * h / w)
    else:
        nw, nh = int(SIZE * w / h), SIZE
    return {"resized_width": nw, "resized_height": nh,
            "crop_left": (nw - SIZE) // 2, "crop_top": (nh - SIZE) // 2}


def to_rgb(im: Image.Image) -> Image.Image:
    """transformers' convert_to_rgb for a PIL image: any alpha (an A band or a tRNS
    transparency) is composited on white; everything else is convert("RGB")."""
    has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
    if has_alpha:
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)),
                                     im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def pil_pipeline(im: Image.Image) -> np.ndarray:
    """The same steps written out with PIL only (documentation and cross-check)."""
    im = to_rgb(im)
    g = geometry(*im.size)
    im = im.resize((g["resized_width"], g["resized_height"]), Image.Resampling.BICUBIC, reducing_gap=None)
    a = np.asarray(im)
    return a[g["crop_top"]:g["crop_top"] + SIZE, g["crop_left"]:g["crop_left"] + SIZE]


def bicubic_kernel(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pillow_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc (libImaging/Resample.c) for BICUBIC
    over the whole image: per output index, the first input index and fixed-point weights."""
    precision_bits = 22
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, ksize), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int(): truncation toward zero, as in C
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [bicubic_kernel((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = sum(w)
        if total != 0.0:
            w = [v / total for v in w]
        starts[xx] = xmin
        for x, v in enumerate(w):
            weights[xx, x] = int(v * (1 << precision_bits) + (0.5 if v >= 0 else -0.5))
    return starts, weights


def pillow_resample_axis(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One 8-bit pass along `axis` (0 = rows/vertical, 1 = columns/horizontal) of uint8 HWC."""
    in_size = img.shape[axis]
    starts, weights = pillow_coefficients(in_size, out_size)
    ksize = weights.shape[1]
    idx = np.minimum(starts[:, None] + np.arange(ksize)[None, :], in_size - 1)  # padded taps have weight 0
    src = np.moveaxis(img.astype(np.int64), axis, 0)  # [in, other, C]
    acc = np.full((out_size,) + src.shape[1:], 1 << 21, np.int64)
    for t in range(ksize):
        acc += src[idx[:, t]] * weights[:, t][:, None, None]
    out = np.clip(acc >> 22, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def pillow_bicubic_resize(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """Image.resize((new_w, new_h), BICUBIC) for uint8 RGB, written out as README.md describes:
    horizontal pass first (skipped if the width is unchanged), uint8 intermediate, then vertical."""
    h, w = img.shape[:2]
    if new_w != w:
        img = pillow_resample_axis(img, new_w, axis=1)
    if new_h != h:
        img = pillow_resample_axis(img, new_h, axis=0)
    return img


def main() -> int:
    import transformers

    for f in os.listdir(HERE):
        if f.endswith((".png", ".jpg", ".npy")) or f == "manifest.json":
            os.remove(os.path.join(HERE, f))
    specs = make_inputs()
    proc = processor()
    normalised_for = {"w641_h479", "rgba_w256_h200"}
    entries = []
    for s in specs:
        path = os.path.join(HERE, s["file"])
        im = Image.open(path)
        mode, (w, h) = im.mode, im.size
        expected = reference_uint8(proc, im)
        assert np.array_equal(expected, pil_pipeline(Image.open(path))), s["name"]
        # The resize algorithm documented in README.md reproduces Pillow bit for bit.
        rgb_in = np.asarray(to_rgb(Image.open(path)))
        g = geometry(w, h)
        mine = pillow_bicubic_resize(rgb_in, g["resized_width"], g["resized_height"])
        assert np.array_equal(mine[g["crop_top"]:g["crop_top"] + SIZE, g["crop_left"]:g["crop_left"] + SIZE],
                              expected), s["name"]
        exp_name = f"{s['name']}.expected.png"
        Image.fromarray(expected, "RGB").save(os.path.join(HERE, exp_name), optimize=True)
        e = {"name": s["name"], "file": s["file"], "format": im.format, "mode": mode, "width": w, "height": h,
             "note": s["note"], **geometry(w, h), "expected": exp_name}
        if "decoded" in s:
            e["decoded"] = s["decoded"]
        from_path = reference_uint8(proc, path)
        if not np.array_equal(from_path, expected):
            fp_name = f"{s['name']}.expected_from_path.png"
            Image.fromarray(from_path, "RGB").save(os.path.join(HERE, fp_name), optimize=True)
            e["expected_from_path"] = fp_name
        if s["name"] in normalised_for:
            pv = proc(images=Image.open(path), return_tensors="np")["pixel_values"].astype(np.float32)
            assert pv.shape == (1, 3, SIZE, SIZE) and pv.dtype == np.float32
            # Cross-check the normalisation formula written in README.md.
            x = expected.transpose(2, 0, 1).astype(np.float64)
            x = (x * (1 / 255)).astype(np.float32)
            mean = np.array(proc.image_mean, np.float32)[:, None, None]
            std = np.array(proc.image_std, np.float32)[:, None, None]
            assert np.array_equal((x - mean) / std, pv[0])  # bit-exact
            npy = f"{s['name']}.pixel_values.npy"
            np.save(os.path.join(HERE, npy), pv)
            e["pixel_values"] = npy
        entries.append(e)
    manifest = {
        "reference": f"transformers {transformers.__version__} {type(proc).__name__} "
                     "(PIL backend), do_rescale=False, do_normalize=False, input = PIL.Image.open(file)",
        "pillow": Image.__version__,
        "size": SIZE,
        "image_mean": [float(x) for x in proc.image_mean],
        "image_std": [float(x) for x in proc.image_std],
        "images": entries,
    }
    with open(os.path.join(HERE, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(HERE, f)) for f in os.listdir(HERE))
    print(f"wrote {len(entries)} images, {sum('expected_from_path' in e for e in entries)} with a different "
          f"from-path result, {len(normalised_for)} pixel_values; folder {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
