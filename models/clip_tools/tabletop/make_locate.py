"""Write the localisation evaluation set of the tabletop CLIP: multi-object scenes with the
true box of every object, for `clip_perception locate` and its test.

locate/: `--scenes` two-object scenes (and `--scenes3` three-object ones), seen
compositions only (scenes.HELD_OUT never appears), distinct phrases per scene, drawn by the
same generator as training from seeds 3_000_000 + i (disjoint from training, the
classification evaluation set and validation), 224x224 JPEG quality 90, listed in
locate/boxes.csv (file,label,x0,y0,x1,y1): the tight box of the object's drawn pixels in
image pixels, x1/y1 exclusive (parts a nearer object hides included).

    python3 models/tabletop/make_locate.py      # rewrites models/tabletop/locate
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from clip_tools.paths import TABLETOP_DIR
from clip_tools.tabletop import scenes

SEED_BASE = 3_000_000


def scene_objects(i: int, n: int) -> list[tuple[str, str]]:
    """The `n` distinct seen compositions of scene `i`."""
    rng = np.random.default_rng([i, n, 0x10CA7E])
    allowed = scenes.allowed_compositions(scenes.HELD_OUT)
    picks = rng.choice(len(allowed), n, replace=False)
    return [allowed[p] for p in picks]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(TABLETOP_DIR / "locate"))
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--scenes3", type=int, default=10)
    p.add_argument("--quality", type=int, default=90)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    rows = []
    jobs = [(i, 2) for i in range(a.scenes)] + [(a.scenes + i, 3) for i in range(a.scenes3)]
    for i, n in jobs:
        objs = scene_objects(i, n)
        boxes: list = []
        img = scenes.scene_image(SEED_BASE + i, objs, boxes=boxes)
        name = f"scene{n}_{i:03d}.jpg"
        img.save(out / name, quality=a.quality)
        for (c, k), b in zip(objs, boxes):
            rows.append((name, f"{c} {k}", *b))
    with open(out / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    size = sum(q.stat().st_size for q in out.iterdir())
    print(f"{out}: {len(jobs)} scenes, {len(rows)} objects, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
