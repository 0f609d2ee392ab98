//! What crosses the boundary between the node core and a transport adapter, in plain Rust
//! types: an image as it arrived (header + raw or compressed pixels, owned), and the four
//! outputs (classification, matches JSON, label info, diagnostics) that an adapter turns
//! into its own messages through [`Outputs`]. No ROS type appears here.

use std::time::Instant;

pub use crate::engine::step::{FrameResult, Matches, Stamp};
use crate::image::{CompressedFrame, Frame, FrameError, RgbImage};

/// A `std_msgs/Header`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub stamp: Stamp,
    pub frame_id: String,
}

/// Image pixels as a camera message carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// `sensor_msgs/Image`.
    Raw {
        width: u32,
        height: u32,
        step: u32,
        encoding: String,
        is_bigendian: bool,
        data: Vec<u8>,
    },
    /// `sensor_msgs/CompressedImage` (JPEG or PNG bytes).
    Compressed { format: String, data: Vec<u8> },
}

impl Pixels {
    /// Validates and converts to RGB8 (borrowing where the encoding allows).
    pub fn to_rgb(&self) -> Result<RgbImage<'_>, FrameError> {
        match self {
            Pixels::Raw {
                width,
                height,
                step,
                encoding,
                is_bigendian,
                data,
            } => Frame {
                width: *width,
                height: *height,
                step: *step,
                encoding,
                is_bigendian: *is_bigendian,
                data,
            }
            .to_rgb(),
            Pixels::Compressed { format, data } => CompressedFrame { format, data }.to_rgb(),
        }
    }
}

/// One received image, stamped with the moment the adapter took it off the wire.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub header: Header,
    pub pixels: Pixels,
    pub received: Instant,
}

impl ImageInput {
    /// An image received now.
    pub fn new(header: Header, pixels: Pixels) -> Self {
        ImageInput {
            header,
            pixels,
            received: Instant::now(),
        }
    }
}

/// One phrase's score (`vision_msgs/ObjectHypothesis`: class_id = phrase).
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub class_id: String,
    pub score: f64,
}

/// `vision_msgs/Classification`: the image's header, results best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub header: Header,
    pub results: Vec<Hypothesis>,
}

impl Classification {
    /// What the node publishes for a frame: the policy's top-k phrases, best first, scored
    /// by probability.
    pub fn of(header: Header, matches: &Matches) -> Self {
        Classification {
            header,
            results: matches
                .top()
                .iter()
                .map(|m| Hypothesis {
                    class_id: m.phrase.clone(),
                    score: f64::from(m.probability),
                })
                .collect(),
        }
    }
}

/// `vision_msgs/LabelInfo`: class ids are the phrases' indices.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelInfo {
    pub header: Header,
    pub class_names: Vec<String>,
    pub threshold: f32,
}

/// `diagnostic_msgs/DiagnosticStatus` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Level {
    Ok = 0,
    Warn = 1,
    Error = 2,
    Stale = 3,
}

/// `diagnostic_msgs/DiagnosticStatus` (published in a `DiagnosticArray`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticStatus {
    pub level: Level,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<(String, String)>,
}

/// Where the core sends its results; an adapter implements it with publishers. Called from
/// the core's worker threads; an implementation logs its own transport errors.
pub trait Outputs: Send + Sync + 'static {
    fn classification(&self, message: Classification);
    /// The frame's full result, published as `~/matches` JSON ([`FrameResult::to_json`]).
    fn matches(&self, result: &FrameResult);
    fn label_info(&self, message: LabelInfo);
    fn diagnostics(&self, header: Header, status: DiagnosticStatus);
}
