"""Write the zero-shot evaluation set and the README sample scenes of the tabletop CLIP.

eval/: single-object pictures (so top-1 over the 64 "colour object" phrases is
unambiguous), no distractors, with the generator's varied backgrounds, lighting, shadows
and noise: `--per-seen` per seen composition and `--per-heldout` per held-out composition
(scenes.HELD_OUT: never drawn or named in training). 224x224 JPEG quality 90 (the engine's
resize + center crop is then the identity), listed in eval/labels.csv
(file,colour,object,split). Seeds 1_000_000 + 100 * composition index + repeat: disjoint
from training (0 .. 10^7 * data_seed + images) and validation (2_000_000+).

samples/: a few scenes for the README's first command, single and multi-object, all of
seen compositions.

    python3 models/tabletop/make_eval.py            # rewrites models/tabletop/eval and samples
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from clip_tools.paths import TABLETOP_DIR
from clip_tools.tabletop import scenes

EVAL_SEED_BASE = 1_000_000
# (file stem, seed, objects): the README demo pictures
SAMPLES = [
    ("red_cup", 11, [("red", "cup")]),
    ("blue_ball", 12, [("blue", "ball")]),
    ("yellow_banana", 13, [("yellow", "banana")]),
    ("yellow_banana_green_box", 21, [("yellow", "banana"), ("green", "box")]),
    ("red_cup_blue_ball_white_phone", 22, [("red", "cup"), ("blue", "ball"), ("white", "phone")]),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(TABLETOP_DIR / "eval"))
    p.add_argument("--samples", default=str(TABLETOP_DIR / "samples"))
    p.add_argument("--per-seen", type=int, default=4)
    p.add_argument("--per-heldout", type=int, default=16)
    p.add_argument("--quality", type=int, default=90)
    a = p.parse_args(argv)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    held = set(scenes.HELD_OUT)
    rows = []
    for ci, (c, o) in enumerate(scenes.ALL_COMPOSITIONS):
        split = "heldout" if (c, o) in held else "seen"
        for r in range(a.per_heldout if split == "heldout" else a.per_seen):
            name = f"{c}_{o}_{r:02d}.jpg"
            img = scenes.single_object_image(EVAL_SEED_BASE + 100 * ci + r, c, o)
            img.save(out / name, quality=a.quality)
            rows.append((name, c, o, split))
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "colour", "object", "split"])
        w.writerows(rows)
    size = sum(p.stat().st_size for p in out.iterdir())
    n_seen = sum(r[3] == "seen" for r in rows)
    print(f"{out}: {len(rows)} images ({n_seen} seen, {len(rows) - n_seen} held-out), {size / 1e6:.2f} MB")

    smp = Path(a.samples)
    smp.mkdir(parents=True, exist_ok=True)
    for stem, seed, objs in SAMPLES:
        assert not any(o in held for o in objs), "samples use seen compositions only"
        img = scenes.scene_image(seed, objs)
        img.save(smp / f"{stem}.jpg", quality=a.quality)
    print(f"{smp}: {len(SAMPLES)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
