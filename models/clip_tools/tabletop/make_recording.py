"""Write the bundled demo recording: a short rosbag2 bag (MCAP storage, written by the
`rosbags` library) of a camera looking at a table while objects come and go, with its
ground truth, for `clip_perception replay` (the README's first command).

models/tabletop/recording/
  tabletop/            the bag folder: metadata.yaml + tabletop_0.mcap
    /camera/image_raw/compressed  sensor_msgs/msg/CompressedImage (JPEG, 224x224, 5 Hz)
    /truth                        std_msgs/msg/String, the phrases in view, on every change
  truth.csv            the same truth as `start,end,label` intervals of header stamp
  truth_boxes.csv      every object's box in every frame, `start,end,label,x0,y0,x1,y1`
                       (the frame's stamp +- half a period; the generator's drawn box moved
                       with the camera's shift, clipped to the image), for
                       `replay --truth-boxes`

Each segment is one scene (tabletop generator, seen compositions only, or an empty table)
seen for SEGMENT_FRAMES frames with a slightly moving camera (shift, brightness, sensor
noise), so consecutive frames differ as a real camera's do.

    python3 models/tabletop/make_recording.py     # rewrites models/tabletop/recording
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from clip_tools.paths import TABLETOP_DIR
from clip_tools.tabletop import scenes

# (objects in view), in order; each for SEGMENT_FRAMES frames.
SEGMENTS = [
    [("red", "cup")],
    [],
    [("blue", "ball")],
    [("yellow", "banana"), ("green", "box")],
    [("white", "phone")],
    [],
    [("green", "box")],
    [("red", "cup"), ("blue", "ball")],
]
SEGMENT_FRAMES = 6
PERIOD_NS = 200_000_000  # 5 Hz
T0_NS = 1_764_000_000 * 1_000_000_000
RECEIVE_DELAY_NS = 8_000_000  # the recorder logs a frame 8 ms after its stamp
SEED = 4242
TOPIC = "/camera/image_raw/compressed"


def scene(seed: int, objs, boxes: list | None = None) -> Image.Image:
    """The segment's scene; `boxes` receives each object's box (scenes.render)."""
    if objs:
        return scenes.scene_image(seed, objs, boxes=boxes)
    rng = np.random.default_rng([seed, 0x7AB1])
    return scenes.render([], rng, scenes.background(rng), noise_max=4.0)


def camera_frame(base: Image.Image, rng: np.random.Generator) -> tuple[bytes, tuple[int, int]]:
    """The scene as one camera frame: shifted a few pixels, relit, noisy, JPEG; and the
    shift (dx, dy)."""
    dx, dy = (int(v) for v in rng.integers(-6, 7, size=2))
    arr = np.asarray(base).astype(np.float32)
    arr = np.roll(arr, (dy, dx), axis=(0, 1))
    arr = arr * rng.uniform(0.92, 1.08) + rng.normal(0, 2.5, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=88)
    return buf.getvalue(), (dx, dy)


def shifted(box, dx: int, dy: int, size: int = scenes.SIZE) -> tuple[int, int, int, int]:
    """A box moved by the camera's shift, clipped to the image."""
    x0, y0, x1, y1 = box
    return (min(max(x0 + dx, 0), size), min(max(y0 + dy, 0), size),
            min(max(x1 + dx, 0), size), min(max(y1 + dy, 0), size))


def phrases(objs) -> str:
    return "; ".join(f"{c} {k}" for c, k in objs) if objs else "none"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(TABLETOP_DIR / "recording"))
    a = p.parse_args(argv)

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    out = Path(a.out)
    bag = out / "tabletop"
    shutil.rmtree(bag, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time, Header = ts.types["builtin_interfaces/msg/Time"], ts.types["std_msgs/msg/Header"]
    CompressedImage, String = ts.types["sensor_msgs/msg/CompressedImage"], ts.types["std_msgs/msg/String"]
    rng = np.random.default_rng(SEED)
    rows = ["start,end,label"]
    box_rows = ["start,end,label,x0,y0,x1,y1"]
    frame = 0
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        images = w.add_connection(TOPIC, "sensor_msgs/msg/CompressedImage", typestore=ts)
        truth = w.add_connection("/truth", "std_msgs/msg/String", typestore=ts)
        for s, objs in enumerate(SEGMENTS):
            boxes: list = []
            base = scene(SEED + s, objs, boxes)
            start_ns = T0_NS + frame * PERIOD_NS
            # The truth changes half a frame period before the segment's first frame.
            change_ns = start_ns - PERIOD_NS // 2
            w.write(truth, change_ns + RECEIVE_DELAY_NS,
                    ts.serialize_cdr(String(data=phrases(objs)), "std_msgs/msg/String"))
            rows.append(f"{change_ns / 1e9:.3f},{(change_ns + SEGMENT_FRAMES * PERIOD_NS) / 1e9:.3f},"
                        f"\"{phrases(objs)}\"")
            for _ in range(SEGMENT_FRAMES):
                stamp = T0_NS + frame * PERIOD_NS
                jpeg, (dx, dy) = camera_frame(base, rng)
                for (c, k), b in zip(objs, boxes):
                    x0, y0, x1, y1 = shifted(b, dx, dy)
                    if x1 > x0 and y1 > y0:
                        box_rows.append(f"{(stamp - PERIOD_NS // 2) / 1e9:.3f},{(stamp + PERIOD_NS // 2) / 1e9:.3f},"
                                        f"{c} {k},{x0},{y0},{x1},{y1}")
                msg = CompressedImage(
                    header=Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                                  frame_id="camera_color_optical_frame"),
                    format="jpeg", data=np.frombuffer(jpeg, np.uint8))
                w.write(images, stamp + RECEIVE_DELAY_NS, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
                frame += 1
    (out / "truth.csv").write_text("\n".join(rows) + "\n")
    (out / "truth_boxes.csv").write_text("\n".join(box_rows) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {frame} frames in {len(SEGMENTS)} segments, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
