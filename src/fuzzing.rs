//! The fuzz harness: one function per decoder that takes bytes from outside the process,
//! each calling the product's own entry point as the node, replay or the CLI do. The
//! cargo-fuzz targets in `fuzz/` call these (coverage-guided, on nightly), and
//! `tests/fuzz_corpus.rs` replays the committed corpora through them on stable.
//!
//! A harness accepts any `Ok` or `Err`; a panic, a hang or an unbounded allocation is the
//! bug it looks for. Where it is cheap, a harness also asserts what a successful decode
//! promises (a decoded frame has the size its message claimed, a token sequence fits the
//! context length). Not part of the library's API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::bag::{Bag, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, STRING_TYPE};
use crate::image::{CompressedFrame, Frame, RgbImage};
use crate::model::bundle::Manifest;
use crate::model::ModelBundle;
use crate::node::param_services::{self, split_request};
use crate::node::params::{canonical_name, check_node_phrases, phrases_of, spec};
use crate::node::{NodePlan, RosArgs};
use crate::ros_msgs::rcl::{ListParametersRequest, NamesRequest, ParametersRequest};
use crate::ros_msgs::{decode_cdr, CompressedImage, Image, StringMsg};
use crate::text::clean::clip_clean;
use crate::text::tokenizer::ClipTokenizer;

/// The encoding names a raw-frame input picks from with its first byte: every name
/// the decoder knows, and a few it must refuse.
const ENCODINGS: &[&str] = &[
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "8UC1",
    "8UC3",
    "8UC4",
    "16UC1",
    "yuv422",
    "",
    "bayer_rggb8",
    "32FC1",
];

/// Bytes of a raw-frame input before the pixels: encoding, is_bigendian, width (u16 LE),
/// height (u16 LE), step (u32 LE).
pub const RAW_FRAME_HEADER: usize = 10;

/// A checked decode result: every row the image claims lies inside its buffer.
fn check_rgb(rgb: &RgbImage<'_>, width: u32, height: u32) {
    assert_eq!((rgb.width, rgb.height), (width, height), "decoded size");
    assert!(
        rgb.stride >= width as usize * 3,
        "stride below the row size"
    );
    let need = (height as usize - 1) * rgb.stride + width as usize * 3;
    assert!(rgb.data.len() >= need, "pixel buffer shorter than its rows");
    // Touch the last row, as the preprocessor does.
    let _ = rgb.row(height as usize - 1);
}

/// `sensor_msgs/Image` fields and pixels as [`Frame::to_rgb`] takes them: the first
/// [`RAW_FRAME_HEADER`] bytes choose encoding, byte order, width, height and step, the
/// rest are the pixels.
pub fn raw_frame(data: &[u8]) {
    if data.len() < RAW_FRAME_HEADER {
        return;
    }
    let u16_at = |i: usize| u32::from(u16::from_le_bytes([data[i], data[i + 1]]));
    let frame = Frame {
        encoding: ENCODINGS[usize::from(data[0]) % ENCODINGS.len()],
        is_bigendian: data[1] & 1 == 1,
        width: u16_at(2),
        height: u16_at(4),
        step: u32::from_le_bytes([data[6], data[7], data[8], data[9]]),
        data: &data[RAW_FRAME_HEADER..],
    };
    if let Ok(rgb) = frame.to_rgb() {
        check_rgb(&rgb, frame.width, frame.height);
    }
}

/// Encoded image bytes (JPEG, PNG and the other formats image files may be) as a
/// `sensor_msgs/CompressedImage` and an image file are decoded
/// ([`CompressedFrame::to_rgb`], [`crate::image::load_image_file`]: both end in
/// [`crate::image::decode_bytes`]).
pub fn image_bytes(data: &[u8]) {
    let frame = CompressedFrame {
        format: "jpeg",
        data,
    };
    if let Ok(rgb) = frame.to_rgb() {
        let (w, h) = (rgb.width, rgb.height);
        assert_eq!(
            rgb.data.len(),
            w as usize * h as usize * 3,
            "packed RGB size"
        );
        check_rgb(&rgb, w, h);
    }
}

/// One serialized message (4-byte encapsulation header, then CDR) decoded as each type the
/// node subscribes to: `sensor_msgs/Image`, `sensor_msgs/CompressedImage` (each then
/// converted to RGB as the node does) and `std_msgs/String` (the phrase query, then split
/// and checked as the node does).
pub fn cdr_messages(data: &[u8]) {
    if let Ok(image) = decode_cdr::<Image>(data) {
        let (_, pixels) = image.into_parts();
        let _ = pixels.to_rgb();
    }
    if let Ok(image) = decode_cdr::<CompressedImage>(data) {
        let (_, pixels) = image.into_parts();
        let _ = pixels.to_rgb();
    }
    if let Ok(query) = decode_cdr::<StringMsg>(data) {
        let _ = check_node_phrases(&phrases_of(&[query.data]));
    }
}

/// A parameter service request payload (either middleware's layout) decoded as each
/// request type, then answered as far as that needs no running node: list, types,
/// descriptions, and the values a set request carries.
pub fn param_request(data: &[u8]) {
    if let Some((_, request)) = split_request::<ListParametersRequest>(data) {
        let _ = param_services::list(&request);
    }
    if let Some((_, request)) = split_request::<NamesRequest>(data) {
        let _ = param_services::get_types(&request);
        let _ = param_services::describe(&request);
    }
    if let Some((_, request)) = split_request::<ParametersRequest>(data) {
        for p in &request.parameters {
            let (name, _) = canonical_name(&p.name);
            let _ = spec(name);
            let _ = param_services::from_ros_value(&p.value);
        }
    }
}

/// A scratch folder of this thread's own, emptied again when dropped (files the decoders
/// read by path: bags, `model.yaml`, params files). Under `/dev/shm` where there is one.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "clip_perception_fuzz_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch folder");
        Scratch(dir)
    }

    /// Writes `data` to `name` in the folder and returns its path.
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, data).expect("write a fuzz input file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Most messages read from one fuzzed bag (each input is small; this bounds the work).
const MAX_BAG_MESSAGES: usize = 10_000;

/// A bag file opened and read as replay does: topics, then every topic's messages, each
/// image decoded to RGB and each string checked as a query.
fn bag_file(data: &[u8], name: &str) {
    let scratch = Scratch::new();
    let path = scratch.file(name, data);
    let Ok(bag) = Bag::open(&path) else {
        return;
    };
    for topic in bag.topics().to_vec() {
        let Ok(messages) = bag.messages(&topic.name) else {
            continue;
        };
        for message in messages.take(MAX_BAG_MESSAGES) {
            let Ok(message) = message else {
                break;
            };
            assert_eq!(message.topic, topic.name, "message of another topic");
            match topic.type_name.as_str() {
                IMAGE_TYPE | COMPRESSED_IMAGE_TYPE => {
                    if let Ok((_, pixels)) = crate::replay::decode_frame(&topic.type_name, &message)
                    {
                        let _ = pixels.to_rgb();
                    }
                }
                STRING_TYPE => {
                    let _ = decode_cdr::<StringMsg>(&message.data);
                }
                _ => {}
            }
        }
    }
}

/// A rosbag2 MCAP file (`.mcap`), read through [`Bag`] as replay reads it.
pub fn bag_mcap(data: &[u8]) {
    bag_file(data, "fuzz.mcap");
}

/// A rosbag2 SQLite file (`.db3`), read through [`Bag`] as replay reads it.
pub fn bag_sqlite(data: &[u8]) {
    bag_file(data, "fuzz.db3");
}

/// A bundle folder holding only this `model.yaml`, opened with [`ModelBundle::open`]
/// (parsing, field and quantization checks, then whether the files it lists exist).
pub fn model_yaml(data: &[u8]) {
    let scratch = Scratch::new();
    scratch.file(crate::model::bundle::MANIFEST_FILE, data);
    let _ = ModelBundle::open(&scratch.0);
}

/// A `--params-file` as the node loads it at start: node keys matched, values flattened,
/// typed and validated ([`NodePlan::from_args`]).
pub fn params_file(data: &[u8]) {
    let scratch = Scratch::new();
    let path = scratch.file("params.yaml", data);
    let Ok(args) = RosArgs::for_params(Some(&path), &[]) else {
        return;
    };
    let _ = NodePlan::from_args(&args);
}

/// A command line (arguments separated by NUL or newline) through [`RosArgs::parse`] and
/// the node's start-up plan: names, remaps, `-p` values, log levels. Params files it names
/// are dropped (the file contents are [`params_file`]'s job; a path could name a device).
pub fn ros_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let argv = text.split(['\0', '\n']);
    let Ok(mut args) = RosArgs::parse(argv) else {
        return;
    };
    args.params_files.clear();
    let node = args.node_name(crate::node::NODE_NAME);
    let _ = args.log_filter(&node);
    if let Ok(plan) = NodePlan::from_args(&args) {
        for camera in plan.cameras() {
            let _ = plan.image_topic(camera.name.as_deref());
        }
        for topic in ["matches", "label_info", "~/query", "/diagnostics"] {
            let _ = plan.topic(topic);
        }
    }
}

/// Text through CLIP's cleaning ([`clip_clean`]: ftfy, HTML unescaping, whitespace,
/// lower-casing). Input bytes that are not UTF-8 are replaced as a lossy reader would.
pub fn text_clean(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let cleaned = clip_clean(&text);
    // Cleaned text goes through the cleaner again when the tokenizer splits a query.
    let _ = clip_clean(&cleaned);
}

/// The bundled default model's tokenizer, loaded once.
fn default_tokenizer() -> &'static ClipTokenizer {
    static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tabletop");
        let manifest_path = dir.join(crate::model::bundle::MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).expect("the bundled model.yaml");
        let manifest: Manifest =
            crate::config::parse_yaml(&text, &manifest_path).expect("a valid model.yaml");
        ClipTokenizer::from_file(
            &dir.join(&manifest.files.tokenizer.path),
            manifest.context_length,
        )
        .expect("the bundled tokenizer.json")
    })
}

/// Text through the default model's tokenizer ([`ClipTokenizer::encode`]: cleaning, BPE,
/// special tokens, truncation); the ids start and end with the special tokens and fit
/// the context length.
pub fn tokenizer(data: &[u8]) {
    let tokenizer = default_tokenizer();
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = tokenizer.encode(&text) {
        assert!(ids.len() >= 2, "start and end tokens");
        assert!(
            ids.len() <= tokenizer.context_length(),
            "ids beyond the context"
        );
        assert_eq!(ids[0], tokenizer.start_id());
        assert_eq!(*ids.last().unwrap(), tokenizer.end_id());
    }
}

/// A fuzz harness: takes any bytes, panics only on a bug.
pub type Harness = fn(&[u8]);

/// Every harness by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus folders call them.
pub const TARGETS: &[(&str, Harness)] = &[
    ("raw_frame", raw_frame),
    ("image_bytes", image_bytes),
    ("cdr_messages", cdr_messages),
    ("param_request", param_request),
    ("bag_mcap", bag_mcap),
    ("bag_sqlite", bag_sqlite),
    ("model_yaml", model_yaml),
    ("params_file", params_file),
    ("ros_args", ros_args),
    ("text_clean", text_clean),
    ("tokenizer", tokenizer),
];
