#!/usr/bin/env python3
"""Bags for the replay tests, written by writers nobody here wrote: `rosbags` (rosbag2
folders, SQLite and MCAP storage) and `mcap` + `mcap-ros2-support` (MCAP files: zstd and
lz4 chunks, one without a summary section, a bag split in two files, damaged files).

    pip install rosbags==0.11.9 mcap==1.6.0 mcap-ros2-support==0.6.0 pillow numpy
    python3 tests/data/bags/generate.py      # rewrites this folder's bags, frames/ and bags.json

Frames are 64x48 crops of the tabletop samples (models/tabletop/samples). Each frame is
also saved as an image file under frames/ that decodes to exactly the pixels the message
carries (PNG for raw frames, the JPEG/PNG bytes themselves for compressed ones), so a test
can score the same pixels through `classify`. bags.json lists, per bag, the topic and each
frame's file, stamp, frame_id and log time, and for the damaged bags what must happen.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
SAMPLES = sorted((ROOT / "models" / "tabletop" / "samples").glob("*.jpg"))
T0 = 1_700_000_000

TIME_MSG = "int32 sec\nuint32 nanosec\n"
HEADER_MSG = "builtin_interfaces/Time stamp\nstring frame_id\n"
SEP = "=" * 80 + "\n"
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
             "uint32 step\nuint8[] data\n" + SEP + "MSG: std_msgs/Header\n" + HEADER_MSG + SEP
             + "MSG: builtin_interfaces/Time\n" + TIME_MSG)
COMPRESSED_DEF = ("std_msgs/Header header\nstring format\nuint8[] data\n" + SEP + "MSG: std_msgs/Header\n"
                  + HEADER_MSG + SEP + "MSG: builtin_interfaces/Time\n" + TIME_MSG)
STRING_DEF = "string data\n"


def crops(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        im = Image.open(SAMPLES[i % len(SAMPLES)]).convert("RGB")
        x, y = 20 + 13 * i, 30 + 7 * i
        out.append(np.asarray(im.crop((x, y, x + 128, y + 96)).resize((64, 48), Image.BILINEAR)))
    return out


class Frames:
    """Frame files and their expectations, for bags.json."""

    def __init__(self):
        shutil.rmtree(HERE / "frames", ignore_errors=True)
        (HERE / "frames").mkdir()

    def raw(self, name: str, rgb: np.ndarray, encoding: str):
        """(pixel bytes in `encoding`, step, the frame file's pixels as an image)."""
        if encoding == "rgb8":
            data, shown = rgb, rgb
        elif encoding == "bgr8":
            data, shown = rgb[:, :, ::-1], rgb
        elif encoding == "rgba8":
            data, shown = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), rgb
        elif encoding == "mono8":
            data = shown = rgb[:, :, 1]
        else:
            raise ValueError(encoding)
        data = np.ascontiguousarray(data)
        path = HERE / "frames" / f"{name}.png"
        Image.fromarray(shown).save(path)
        step = data.shape[1] * (data.shape[2] if data.ndim == 3 else 1)
        return data.tobytes(), step, path

    def compressed(self, name: str, rgb: np.ndarray, fmt: str):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
        path = HERE / "frames" / f"{name}.{'jpg' if fmt == 'jpeg' else 'png'}"
        path.write_bytes(buf.getvalue())
        return buf.getvalue(), path


def stamp(i: int) -> tuple[int, int]:
    return T0 + i, 1000 * i


def log_time(i: int) -> int:
    sec, ns = stamp(i)
    return sec * 1_000_000_000 + ns + 5_000_000


def entry(path: Path, i: int, frame_id: str) -> dict:
    return {"file": str(path.relative_to(HERE)), "stamp": list(stamp(i)), "frame_id": frame_id,
            "bag_time_ns": log_time(i)}


# --- rosbags: rosbag2 folders --------------------------------------------------------------

def rosbags_folder(name: str, storage: str, frames: Frames, kind: str, images: list[np.ndarray]) -> dict:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    path = HERE / name
    shutil.rmtree(path, ignore_errors=True)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    expected = []
    topic = "/camera/image_raw" if kind == "raw" else "/camera/image_raw/compressed"
    with Writer(path, version=9, storage_plugin=plugin) as w:
        if kind == "raw":
            conn = w.add_connection(topic, "sensor_msgs/msg/Image", typestore=ts)
        else:
            conn = w.add_connection(topic, "sensor_msgs/msg/CompressedImage", typestore=ts)
        task = w.add_connection("/task", "std_msgs/msg/String", typestore=ts)
        for i, rgb in enumerate(images):
            sec, ns = stamp(i)
            header = Header(stamp=Time(sec=sec, nanosec=ns), frame_id=f"cam{i}")
            if kind == "raw":
                data, step, file = frames.raw(f"{name}_{i}", rgb, "rgb8")
                msg = ts.types["sensor_msgs/msg/Image"](
                    header=header, height=48, width=64, encoding="rgb8", is_bigendian=0, step=step,
                    data=np.frombuffer(data, np.uint8))
                w.write(conn, log_time(i), ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            else:
                fmt = "jpeg" if i % 2 == 0 else "png"
                data, file = frames.compressed(f"{name}_{i}", rgb, fmt)
                msg = ts.types["sensor_msgs/msg/CompressedImage"](
                    header=header, format=fmt, data=np.frombuffer(data, np.uint8))
                w.write(conn, log_time(i), ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
            expected.append(entry(file, i, f"cam{i}"))
            if i % 2 == 0:
                s = ts.types["std_msgs/msg/String"](data="red cup")
                w.write(task, log_time(i) + 1, ts.serialize_cdr(s, "std_msgs/msg/String"))
    return {"bag": name, "topic": topic, "writer": f"rosbags ({storage})", "frames": expected}


# --- mcap + mcap-ros2-support: MCAP files -----------------------------------------------------

def mcap_writer(path: Path, compression: str, chunk_size: int, summary: bool = True):
    from mcap.writer import CompressionType, IndexType
    from mcap.writer import Writer as McapWriter
    from mcap_ros2.writer import Writer

    comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[compression]
    f = open(path, "wb")
    if summary:
        return f, Writer(f, chunk_size=chunk_size, compression=comp)
    # mcap-ros2-support's writer always writes a summary; the same writer object over an
    # mcap Writer told to write none (no indexes, statistics or summary offsets).
    w = Writer.__new__(Writer)
    w._writer = McapWriter(output=f, chunk_size=chunk_size, compression=comp, index_types=IndexType.NONE,
                           repeat_channels=False, repeat_schemas=False, use_statistics=False,
                           use_summary_offsets=False)
    w._encoders, w._channel_ids, w._finished = {}, {}, False
    w._writer.start(profile="ros2", library="clip_perception test generator")
    return f, w


def write_raw_frames(w, frames: Frames, name: str, topic: str, images, encodings, first: int = 0):
    schema = w.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
    expected = []
    for k, rgb in enumerate(images):
        i = first + k
        enc = encodings[k % len(encodings)]
        data, step, file = frames.raw(f"{name}_{i}", rgb, enc)
        sec, ns = stamp(i)
        msg = {"header": {"stamp": {"sec": sec, "nanosec": ns}, "frame_id": f"cam{i}"}, "height": 48,
               "width": 64, "encoding": enc, "is_bigendian": 0, "step": step, "data": data}
        w.write_message(topic, schema, msg, log_time=log_time(i), publish_time=log_time(i), sequence=i)
        expected.append(dict(entry(file, i, f"cam{i}"), encoding=enc))
    return expected


def mcap_file(name: str, frames: Frames, images, compression: str, encodings, summary: bool = True,
              chunk_size: int = 1 << 20) -> dict:
    path = HERE / name
    f, w = mcap_writer(path, compression, chunk_size, summary)
    expected = write_raw_frames(w, frames, Path(name).stem, "/cam/image", images, encodings)
    w.finish()
    f.close()
    return {"bag": name, "topic": "/cam/image", "writer": f"mcap-ros2-support ({compression}"
            f"{'' if summary else ', no summary'})", "frames": expected}


def split_bag(frames: Frames, images) -> dict:
    """A rosbag2 folder of two MCAP files (frames 0..2, 3..5), metadata.yaml as rosbag2 writes it."""
    name = "split"
    path = HERE / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    expected, files = [], []
    for part, (lo, hi) in enumerate([(0, 3), (3, len(images))]):
        file = f"{name}_{part}.mcap"
        f, w = mcap_writer(path / file, "zstd", 1 << 20)
        expected += write_raw_frames(w, frames, f"{name}_{part}", "/cam/image", images[lo:hi], ["rgb8"], first=lo)
        w.finish()
        f.close()
        files.append(file)
    n = len(images)
    (path / "metadata.yaml").write_text(f"""rosbag2_bagfile_information:
  version: 9
  storage_identifier: mcap
  duration:
    nanoseconds: {log_time(n - 1) - log_time(0)}
  starting_time:
    nanoseconds_since_epoch: {log_time(0)}
  message_count: {n}
  topics_with_message_count:
    - topic_metadata:
        name: /cam/image
        type: sensor_msgs/msg/Image
        serialization_format: cdr
        offered_qos_profiles: ""
        type_description_hash: ""
      message_count: {n}
  compression_format: ""
  compression_mode: ""
  relative_file_paths:
    - {files[0]}
    - {files[1]}
  files:
    - path: {files[0]}
      starting_time:
        nanoseconds_since_epoch: {log_time(0)}
      duration:
        nanoseconds: {log_time(2) - log_time(0)}
      message_count: 3
    - path: {files[1]}
      starting_time:
        nanoseconds_since_epoch: {log_time(3)}
      duration:
        nanoseconds: {log_time(n - 1) - log_time(3)}
      message_count: {n - 3}
  custom_data: ~
  ros_distro: jazzy
""")
    return {"bag": name, "topic": "/cam/image", "writer": "mcap-ros2-support, two files + metadata.yaml",
            "frames": expected}


def two_image_topics(frames: Frames, images) -> dict:
    name = "two_image_topics.mcap"
    f, w = mcap_writer(HERE / name, "zstd", 1 << 20)
    write_raw_frames(w, frames, "two_left", "/left/image", images[:2], ["rgb8"])
    write_raw_frames(w, frames, "two_right", "/right/image", images[:2], ["rgb8"])
    schema = w.register_msgdef("std_msgs/msg/String", STRING_DEF)
    w.write_message("/task", schema, {"data": "red cup"}, log_time=log_time(0), publish_time=log_time(0))
    w.finish()
    f.close()
    return {"bag": name, "image_topics": ["/left/image", "/right/image"], "other_topic": "/task"}


def chunk_offsets(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of every chunk record, from the file's own chunk index."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    return sorted((c.chunk_start_offset, c.chunk_start_offset + c.chunk_length) for c in summary.chunk_indexes)


def readable_before_damage(path: Path) -> int:
    """Messages the mcap package's own linear reader yields before it stops at the damage."""
    from mcap.stream_reader import StreamReader

    n = 0
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, validate_crcs=True).records:
                n += type(record).__name__ == "Message"
        except Exception:  # noqa: BLE001 - any failure marks the damage
            pass
    return n


def damaged(frames: Frames, images) -> list[dict]:
    out = []
    # Cut in the middle of the last chunk: every frame of the chunks before it must come out.
    name = "cut_in_chunk.mcap"
    whole = HERE / "whole.tmp.mcap"
    f, w = mcap_writer(whole, "zstd", 12_000)
    expected = write_raw_frames(w, frames, "cut", "/cam/image", images, ["rgb8"])
    w.finish()
    f.close()
    chunks = chunk_offsets(whole)
    assert len(chunks) >= 3, chunks
    start, end = chunks[-1]
    cut = (start + end) // 2
    data = whole.read_bytes()
    (HERE / name).write_bytes(data[:cut])
    before = readable_before_damage(HERE / name)
    assert 0 < before < len(expected), before
    out.append({"bag": name, "topic": "/cam/image", "writer": "mcap-ros2-support (zstd), cut",
                "frames": expected, "damage_offset": cut, "at_least": before,
                "error": "ends inside a record"})
    # A chunk whose bytes were changed: its CRC no longer matches (uncompressed chunks, CRCs on).
    name = "bad_chunk_crc.mcap"
    f, w = mcap_writer(whole, "none", 12_000)
    expected = write_raw_frames(w, frames, "crc", "/cam/image", images, ["rgb8"])
    w.finish()
    f.close()
    chunks = chunk_offsets(whole)
    start, end = chunks[1]
    data = bytearray(whole.read_bytes())
    data[end - 100] ^= 0xFF  # inside the second chunk's records (its pixel data)
    (HERE / name).write_bytes(bytes(data))
    before = readable_before_damage(HERE / name)
    assert 0 < before < len(expected), before
    out.append({"bag": name, "topic": "/cam/image", "writer": "mcap-ros2-support (uncompressed), one byte flipped",
                "frames": expected, "damage_offset": end - 100, "at_least": before, "error": "crc"})
    whole.unlink()
    return out


def undecodable(frames: Frames, images) -> dict:
    """Compressed frames of which two cannot be scored: frame 1's bytes are not an image,
    frame 3's message is cut short (its CDR does not hold a CompressedImage)."""
    name = "undecodable.mcap"
    f, w = mcap_writer(HERE / name, "zstd", 1 << 20)
    schema = w.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
    topic = "/cam/image/compressed"
    expected = []
    for i, rgb in enumerate(images):
        sec, ns = stamp(i)
        header = {"stamp": {"sec": sec, "nanosec": ns}, "frame_id": f"cam{i}"}
        if i == 1:
            msg = {"header": header, "format": "jpeg", "data": b"\xff\xd8 this is not a JPEG"}
            w.write_message(topic, schema, msg, log_time=log_time(i), sequence=i)
            expected.append(dict(entry(HERE / name, i, f"cam{i}"), file=None, reason="undecodable"))
            continue
        data, file = frames.compressed(f"undecodable_{i}", rgb, "jpeg")
        msg = {"header": header, "format": "jpeg", "data": data}
        if i == 3:
            # The same message's CDR, cut in its pixel data, written past the encoder.
            from mcap_ros2._dynamic import serialize_dynamic

            encoded = serialize_dynamic(schema.name, COMPRESSED_DEF)[schema.name](msg)
            w._writer.add_message(channel_id=w._channel_ids[topic], log_time=log_time(i),
                                  publish_time=log_time(i), sequence=i, data=encoded[: len(encoded) // 2])
            expected.append(dict(entry(HERE / name, i, f"cam{i}"), file=None, reason="undeserializable"))
            continue
        w.write_message(topic, schema, msg, log_time=log_time(i), sequence=i)
        expected.append(entry(file, i, f"cam{i}"))
    w.finish()
    f.close()
    return {"bag": name, "topic": topic, "writer": "mcap-ros2-support (zstd), two bad frames",
            "frames": expected}


# Truth of the evaluation bag, per frame: the phrases frame i shows (empty: none).
EVAL_TRUTH = [["red cup"], ["red cup"], ["blue ball"], ["blue ball", "green box"], [], ["green box"],
              ["yellow banana"], [], ["red cup"], ["yellow banana"]]


def evaluation(frames: Frames) -> dict:
    """Ten raw frames with truth two ways: a /truth std_msgs/String topic (each message holds
    until the next, published 1 ms before its frame's log time) and eval_truth.csv (intervals
    of header stamp seconds). Frame 10 has no truth (past the last CSV interval)."""
    name = "eval.mcap"
    images = crops(11)
    f, w = mcap_writer(HERE / name, "zstd", 1 << 20)
    expected = write_raw_frames(w, frames, "eval", "/cam/image", images, ["rgb8"])
    schema = w.register_msgdef("std_msgs/msg/String", STRING_DEF)
    rows = ["start,end,label"]
    for i, labels in enumerate(EVAL_TRUTH):
        text = "; ".join(labels) if labels else "none"
        w.write_message("/truth", schema, {"data": text}, log_time=log_time(i) - 1_000_000)
        sec, ns = stamp(i)
        start = sec + ns * 1e-9 - 0.25
        rows.append(f'{start:.3f},{start + 1:.3f},"{text}"')
    w.finish()
    f.close()
    (HERE / "eval_truth.csv").write_text("\n".join(rows) + "\n")
    for e, labels in zip(expected, EVAL_TRUTH + [None]):
        e["truth"] = labels
    # The truth topic keeps the last labels for frame 10; the CSV does not cover it.
    return {"bag": name, "topic": "/cam/image", "truth_topic": "/truth", "truth_csv": "eval_truth.csv",
            "writer": "mcap-ros2-support (zstd) + truth", "frames": expected}


# Truth of the two-camera bag, per second i (header stamps [T0 + i - 0.25, T0 + i + 0.75)),
# for both cameras; the front camera's last frame (second 5) has none.
TWO_CAMERAS_TRUTH = [["red cup"], ["blue ball"], ["green box"], ["yellow banana"], []]


def two_cameras(frames: Frames) -> dict:
    """A rosbag2 folder (rosbags, MCAP storage) with two cameras showing different images,
    interleaved in log time: /front_camera/color/image_raw (raw rgb8, 6 frames, one a second)
    and /rear/image_raw/compressed (JPEG, 5 frames, 0.4 s after front frames 0, 1, 3, 4;
    rear frame 2 has front frame 3's log time exactly and is written before it). Header
    stamps are 5 ms before the log times. Truth: two_cameras_truth.csv, intervals of header
    stamp seconds that hold for both cameras. `frames` lists the frames in the order replay
    gives them for `--topic FRONT --topic REAR` (log time; the tie: front first)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    name = "two_cameras"
    path = HERE / name
    shutil.rmtree(path, ignore_errors=True)
    front, rear = "/front_camera/color/image_raw", "/rear/image_raw/compressed"
    images = crops(11)
    rear_times = [log_time(0) + 400_000_000, log_time(1) + 400_000_000, log_time(3),
                  log_time(3) + 400_000_000, log_time(4) + 400_000_000]
    # (log time, order at a tie in the file, order at a tie in replay, writer of the message)
    events = []
    for i in range(6):
        events.append((log_time(i), 1, 0, ("front", i)))
    for j, t in enumerate(rear_times):
        events.append((t, 0, 1, ("rear", j)))
    expected = {}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {"front": w.add_connection(front, "sensor_msgs/msg/Image", typestore=ts),
                 "rear": w.add_connection(rear, "sensor_msgs/msg/CompressedImage", typestore=ts)}
        for t, _, _, (camera, k) in sorted(events, key=lambda e: (e[0], e[1])):
            stamp_ns = t - 5_000_000
            sec, ns = divmod(stamp_ns, 1_000_000_000)
            header = Header(stamp=Time(sec=sec, nanosec=ns), frame_id=f"{camera}{k}")
            if camera == "front":
                data, step, file = frames.raw(f"two_front_{k}", images[k], "rgb8")
                msg = ts.types["sensor_msgs/msg/Image"](
                    header=header, height=48, width=64, encoding="rgb8", is_bigendian=0, step=step,
                    data=np.frombuffer(data, np.uint8))
                w.write(conns[camera], t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            else:
                data, file = frames.compressed(f"two_rear_{k}", images[6 + k], "jpeg")
                msg = ts.types["sensor_msgs/msg/CompressedImage"](
                    header=header, format="jpeg", data=np.frombuffer(data, np.uint8))
                w.write(conns[camera], t, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
            # The CSV row covering the stamp: [T0 + i - 0.25, T0 + i + 0.75).
            second = (stamp_ns - T0 * 1_000_000_000 + 250_000_000) // 1_000_000_000
            truth = TWO_CAMERAS_TRUTH[second] if second < len(TWO_CAMERAS_TRUTH) else None
            expected[(camera, k)] = {"file": str(file.relative_to(HERE)), "stamp": [sec, ns],
                                     "frame_id": f"{camera}{k}", "bag_time_ns": t,
                                     "topic": front if camera == "front" else rear,
                                     "camera": "front_camera_color" if camera == "front" else "rear",
                                     "truth": truth}
    rows = ["start,end,label"]
    for i, labels in enumerate(TWO_CAMERAS_TRUTH):
        start = T0 + i - 0.25
        rows.append(f'{start:.3f},{start + 1:.3f},"{"; ".join(labels) if labels else "none"}"')
    (HERE / "two_cameras_truth.csv").write_text("\n".join(rows) + "\n")
    order = [e[3] for e in sorted(events, key=lambda e: (e[0], e[2]))]
    return {"bag": name, "topics": [front, rear], "cameras": ["front_camera_color", "rear"],
            "truth_csv": "two_cameras_truth.csv", "writer": "rosbags (mcap), two topics interleaved",
            "frames": [expected[k] for k in order]}


def two_cameras_bad_frame(frames: Frames) -> dict:
    """Two topics (mcap-ros2-support, zstd), interleaved: /left/image (raw rgb8, 3 frames) and
    /right/image/compressed (JPEG, 3 frames, 0.5 s after the left ones), whose frame 1's bytes
    are not a JPEG: it is skipped and counted for /right alone, every other frame scored."""
    name = "two_cameras_bad_frame.mcap"
    f, w = mcap_writer(HERE / name, "zstd", 1 << 20)
    raw = w.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
    compressed = w.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
    images = crops(6)
    expected = []
    for i in range(3):
        sec, ns = stamp(i)
        header = {"stamp": {"sec": sec, "nanosec": ns}, "frame_id": f"left{i}"}
        data, step, file = frames.raw(f"bad_left_{i}", images[i], "rgb8")
        msg = dict(header=header, height=48, width=64, encoding="rgb8", is_bigendian=0, step=step, data=data)
        w.write_message("/left/image", raw, msg, log_time=log_time(i), publish_time=log_time(i), sequence=i)
        expected.append(dict(entry(file, i, f"left{i}"), topic="/left/image", camera="left"))
        t = log_time(i) + 500_000_000
        header = {"stamp": {"sec": sec, "nanosec": ns + 500_000_000}, "frame_id": f"right{i}"}
        if i == 1:
            msg = {"header": header, "format": "jpeg", "data": b"\xff\xd8 this is not a JPEG"}
            reason, file = "undecodable", None
        else:
            data, file = frames.compressed(f"bad_right_{i}", images[3 + i], "jpeg")
            msg = {"header": header, "format": "jpeg", "data": data}
            reason = None
        w.write_message("/right/image/compressed", compressed, msg, log_time=t, publish_time=t, sequence=i)
        right = {"file": file and str(file.relative_to(HERE)), "stamp": [sec, ns + 500_000_000],
                 "frame_id": f"right{i}", "bag_time_ns": t, "topic": "/right/image/compressed", "camera": "right"}
        if reason:
            right["reason"] = reason
        expected.append(right)
    w.finish()
    f.close()
    return {"bag": name, "topics": ["/left/image", "/right/image/compressed"], "cameras": ["left", "right"],
            "writer": "mcap-ros2-support (zstd), two topics, one bad frame", "frames": expected}


def main() -> int:
    frames = Frames()
    images = crops(6)
    bags = [
        rosbags_folder("rosbags_sqlite3", "sqlite3", frames, "raw", images[:5]),
        rosbags_folder("rosbags_mcap_compressed", "mcap", frames, "compressed", images[:4]),
        mcap_file("zstd_bgr8_mono8.mcap", frames, images, "zstd", ["bgr8", "mono8"], chunk_size=20_000),
        mcap_file("lz4_rgba8.mcap", frames, images[:4], "lz4", ["rgba8"]),
        mcap_file("no_summary.mcap", frames, images[:3], "zstd", ["rgb8"], summary=False),
        split_bag(frames, images),
    ]
    out = {"bags": bags, "two_image_topics": two_image_topics(frames, images), "damaged": damaged(frames, images),
           "undecodable": undecodable(frames, images), "evaluation": evaluation(frames),
           "two_cameras": two_cameras(frames), "two_cameras_bad_frame": two_cameras_bad_frame(frames)}
    (HERE / "bags.json").write_text(json.dumps(out, indent=1) + "\n")
    size = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {len(bags)} bags, 1 ambiguous, {len(out['damaged'])} damaged; {size / 1024:.0f} KiB in {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
