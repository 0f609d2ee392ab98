#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/seed_*: small valid inputs for each
harness of src/fuzzing.rs, made here by hand (CDR messages, raw frames, a rosbag2 SQLite
file, YAML, command lines, text) or copied from the test data that other writers made
(PNG/JPEG frames, MCAP bags). Standard library only.

    python3 fuzz/make_seeds.py      # rewrites every fuzz/corpus/*/seed_* file
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"


class Cdr:
    """Plain CDR, little endian, aligned from the start of the body (after the 4-byte
    encapsulation header), as ROS 2 writes it."""

    def __init__(self) -> None:
        self.body = bytearray()

    def align(self, n: int) -> None:
        while len(self.body) % n:
            self.body.append(0)

    def u8(self, v: int) -> "Cdr":
        self.body += struct.pack("<B", v)
        return self

    def u32(self, v: int) -> "Cdr":
        self.align(4)
        self.body += struct.pack("<I", v)
        return self

    def i32(self, v: int) -> "Cdr":
        self.align(4)
        self.body += struct.pack("<i", v)
        return self

    def i64(self, v: int) -> "Cdr":
        self.align(8)
        self.body += struct.pack("<q", v)
        return self

    def f64(self, v: float) -> "Cdr":
        self.align(8)
        self.body += struct.pack("<d", v)
        return self

    def string(self, s: str) -> "Cdr":
        raw = s.encode() + b"\0"
        self.u32(len(raw))
        self.body += raw
        return self

    def octets(self, b: bytes) -> "Cdr":
        self.u32(len(b))
        self.body += b
        return self

    def header(self, sec: int = 1_700_000_000, nanosec: int = 5, frame_id: str = "camera") -> "Cdr":
        return self.i32(sec).u32(nanosec).string(frame_id)

    def message(self) -> bytes:
        return b"\x00\x01\x00\x00" + bytes(self.body)

    def raw(self) -> bytes:
        return bytes(self.body)


def image_cdr(width: int, height: int, encoding: str, step: int, data: bytes, big: int = 0) -> bytes:
    return (Cdr().header().u32(height).u32(width).string(encoding).u8(big).u32(step)
            .octets(data).message())


def compressed_cdr(fmt: str, data: bytes) -> bytes:
    return Cdr().header().string(fmt).octets(data).message()


def string_cdr(text: str) -> bytes:
    return Cdr().string(text).message()


def parameter_value(c: Cdr, kind: int, *, b=False, i=0, d=0.0, s="", strings=()) -> None:
    c.u8(kind).u8(int(b)).i64(i).f64(d).string(s)
    c.octets(b"")  # byte_array_value
    c.u32(0)  # bool_array_value
    c.u32(0)  # integer_array_value
    c.u32(0)  # double_array_value
    c.u32(len(strings))
    for x in strings:
        c.string(x)


def raw_frame(encoding_index: int, big: int, width: int, height: int, step: int, data: bytes) -> bytes:
    return struct.pack("<BBHHI", encoding_index, big, width, height, step) + data


def tiny_png() -> bytes:
    return (ROOT / "tests/data/preprocess/w2_h2.png").read_bytes()


def bmp_2x2() -> bytes:
    rows = b"\x00\x00\xff\x00\xff\x00\x00\x00" + b"\xff\x00\x00\xff\xff\xff\x00\x00"
    header = b"BM" + struct.pack("<IHHI", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return header + info + rows


def gif_1x1() -> bytes:
    return bytes.fromhex(
        "4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b")


def db3(path: Path) -> None:
    png = tiny_png()
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 512")
    db.executescript(
        "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,"
        " serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL,"
        " type_description_hash TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,"
        " timestamp INTEGER NOT NULL, data BLOB NOT NULL);"
        "CREATE INDEX timestamp_idx ON messages (timestamp ASC);")
    db.execute("INSERT INTO schema VALUES (4, 'jazzy')")
    topics = [(1, "/camera/image_raw", "sensor_msgs/msg/Image"),
              (2, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
              (3, "/query", "std_msgs/msg/String")]
    for tid, name, kind in topics:
        db.execute("INSERT INTO topics VALUES (?, ?, ?, 'cdr', '', '')", (tid, name, kind))
    rows = [(1, 1, 100, image_cdr(2, 2, "rgb8", 6, bytes(range(12)))),
            (2, 2, 150, compressed_cdr("png", png)),
            (3, 1, 200, image_cdr(2, 1, "mono8", 2, b"\x10\x20")),
            (4, 3, 250, string_cdr("red cup; blue ball"))]
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.execute("VACUUM")
    db.close()


def main() -> None:
    seeds: dict[str, dict[str, bytes]] = {}

    seeds["raw_frame"] = {
        "rgb8_2x2": raw_frame(0, 0, 2, 2, 6, bytes(range(12))),
        "bgr8_3x2_padded": raw_frame(1, 0, 3, 2, 11, bytes(range(22))),
        "rgba8_2x1": raw_frame(2, 0, 2, 1, 8, bytes(range(8))),
        "mono16_be_2x2": raw_frame(5, 1, 2, 2, 4, bytes(range(8))),
        "mono8_4x1": raw_frame(4, 0, 4, 1, 4, b"\x01\x02\x03\x04"),
        "step_too_small": raw_frame(0, 0, 4, 1, 3, bytes(12)),
    }

    seeds["image_bytes"] = {
        "png_2x2.png": tiny_png(),
        "png_gray16.png": (ROOT / "tests/data/preprocess/gray16_w240_h180.png").read_bytes(),
        "png_palette_trns.png": (ROOT / "tests/data/preprocess/palette_trns_w150_h100.png").read_bytes(),
        "png_gray_trns.png": (ROOT / "tests/data/preprocess/gray_trns_key_w90_h70.png").read_bytes(),
        "jpeg_64x48.jpg": (ROOT / "tests/data/bags/frames/rosbags_mcap_compressed_0.jpg").read_bytes(),
        "jpeg_gray.jpg": (ROOT / "tests/data/preprocess/jpeg_gray_w300_h200.jpg").read_bytes(),
        "bmp_2x2.bmp": bmp_2x2(),
        "gif_1x1.gif": gif_1x1(),
        "pnm_2x1.ppm": b"P6\n2 1\n255\n" + bytes(range(6)),
    }

    jpeg = seeds["image_bytes"]["jpeg_64x48.jpg"]
    seeds["cdr_messages"] = {
        "image_rgb8": image_cdr(2, 2, "rgb8", 6, bytes(range(12))),
        "image_mono16_be": image_cdr(2, 1, "mono16", 4, b"\x12\x34\xab\xcd", big=1),
        "compressed_png": compressed_cdr("png", tiny_png()),
        "compressed_jpeg": compressed_cdr("jpeg", jpeg),
        "string_query": string_cdr("red cup; blue ball\nwhite phone"),
        "string_big_endian": b"\x00\x00\x00\x00" + struct.pack(">I", 4) + b"cup\0",
    }

    list_req = Cdr().u32(2).string("threshold").string("labels").i64(1)
    names_req = Cdr().u32(2).string("threshold").string("no_such")
    set_req = Cdr().u32(2)
    set_req.string("threshold")
    parameter_value(set_req, 3, d=0.25)
    set_req.string("labels")
    parameter_value(set_req, 9, strings=("red cup", "blue ball"))
    seeds["param_request"] = {
        "list": list_req.raw(),
        "names": names_req.raw(),
        "set": set_req.raw(),
        "names_cyclone_header": bytes(range(16)) + names_req.raw(),
    }

    bags = ROOT / "tests/data/bags"
    seeds["bag_mcap"] = {
        "undecodable.mcap": (bags / "undecodable.mcap").read_bytes(),
        "two_image_topics.mcap": (bags / "two_image_topics.mcap").read_bytes(),
        "zstd_bgr8_mono8.mcap": (bags / "zstd_bgr8_mono8.mcap").read_bytes(),
        "lz4_rgba8.mcap": (bags / "lz4_rgba8.mcap").read_bytes(),
    }

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.db3"
        db3(path)
        seeds["bag_sqlite"] = {"three_topics.db3": path.read_bytes()}

    seeds["model_yaml"] = {
        "tabletop.yaml": (ROOT / "models/tabletop/model.yaml").read_bytes(),
        "tiny_clip.yaml": (ROOT / "tests/fixtures/tiny-clip/model.yaml").read_bytes(),
    }

    seeds["params_file"] = {
        "node.yaml": (b"clip_node:\n  ros__parameters:\n    labels: ['red cup', 'blue ball']\n"
                      b"    threshold: 0.3\n    frame_policy: every\n    queue_size: 4\n"
                      b"    label_thresholds: ['red cup=0.5']\n"),
        "wildcard.yaml": (b"/**:\n  ros__parameters:\n    use_sim_time: true\n"
                          b"    image_transport: compressed\n/ns/clip_node:\n  ros__parameters:\n"
                          b"    top_k: 2\n    matching:\n      nested: 1\n"),
        "anchors.yaml": b"a: &x {ros__parameters: {labels: [a, b]}}\nclip_node: *x\n",
    }
    config = ROOT / "config"
    for p in sorted(config.glob("*.yaml"))[:2]:
        seeds["params_file"][p.name] = p.read_bytes()

    seeds["ros_args"] = {
        "remaps": b"--ros-args\0-r\0__node:=clip\0-r\0__ns:=/robot\0-r\0image:=/camera/image_raw",
        "params": b"--ros-args\n-p\nthreshold:=0.4\n-p\nlabels:=[red cup, blue ball]\n"
                  b"-p\nclip_node:image_transport:=compressed\n--log-level\nclip:=debug",
        "ignored": b"user\0--ros-args\0--enclave\0/e\0--disable-rosout-logs\0--bogus\0--\0tail",
    }

    seeds["text_clean"] = {
        "html": "A &amp;amp; B &lt;tag&gt; caf\u00e9 \u201cquoted\u201d".encode(),
        "mojibake": "The Mona Lisa doesn\u00e2\u0080\u0099t have eyebrows.".encode(),
        "width_ligature": "\uff21\uff22\uff23 \ufb01sh \u00a0 \t\nLine\r\nbreak".encode(),
        "controls": b"\x1b[31mred\x1b[0m \x00\x07 cup",
    }

    seeds["tokenizer"] = {
        "phrase": b"a photo of a red cup",
        "special": b"<|startoftext|>hello<|endoftext|>;<|endoftext|> it's",
        "long": b"blue ball " * 60,
        "unicode": "\u732b \U0001f600 na\u00efve 12345 x\u0301".encode(),
    }

    for target, files in seeds.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed_*"):
            old.unlink()
        for name, data in files.items():
            (folder / f"seed_{name}").write_bytes(data)
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"{sum(len(f) for f in seeds.values())} seeds, {total} bytes under {CORPUS}")


if __name__ == "__main__":
    main()
