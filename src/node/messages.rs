//! What crosses the boundary between the node core and a transport adapter, in plain Rust
//! types: an image as it arrived (header + raw or compressed pixels, owned), and the four
//! outputs (classification, matches JSON, label info, diagnostics) that an adapter turns
//! into its own messages through [`Outputs`]. No ROS type appears here.

use std::time::Instant;

pub use crate::engine::step::{FrameResult, Matches, PhraseMatch, Stamp};
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
    fn raw(&self) -> Option<Frame<'_>> {
        match self {
            Pixels::Raw {
                width,
                height,
                step,
                encoding,
                is_bigendian,
                data,
            } => Some(Frame {
                width: *width,
                height: *height,
                step: *step,
                encoding,
                is_bigendian: *is_bigendian,
                data,
            }),
            Pixels::Compressed { .. } => None,
        }
    }

    /// Validates and converts to RGB8 (borrowing where the encoding allows).
    pub fn to_rgb(&self) -> Result<RgbImage<'_>, FrameError> {
        match self {
            Pixels::Compressed { format, data } => CompressedFrame { format, data }.to_rgb(),
            raw => raw.raw().expect("a raw frame").to_rgb(),
        }
    }

    /// The constant-time checks done on arrival, before a frame may take a place in the
    /// queue: a raw frame's header against its data ([`Frame::check`]), a compressed
    /// frame's size and format signature ([`CompressedFrame::check`]). What they pass can
    /// still fail to decode later.
    pub fn check(&self) -> Result<(), FrameError> {
        match self {
            Pixels::Compressed { format, data } => CompressedFrame { format, data }.check(),
            raw => raw.raw().expect("a raw frame").check().map(|_| ()),
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

/// One phrase's score (`vision_msgs/ObjectHypothesis`: class_id = phrase, score from
/// [`classification_score`]).
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

/// A phrase's `Classification` score: its step score ([`crate::engine::step`]) clipped to
/// [0, 1]: the cosine similarity with the image for softmax-scored bundles (CLIP,
/// MobileCLIP), the phrase's own sigmoid probability for sigmoid-scored ones (SigLIP). It
/// depends only on that phrase and that image (not on the other phrases, unlike a softmax
/// `probability` of `~/matches`), grows with the cosine, and is in the unit of the
/// `threshold` / `label_thresholds` parameters and `LabelInfo.threshold`, so
/// `score >= threshold` is the node's own `matched` test (without hysteresis).
pub fn classification_score(m: &PhraseMatch) -> f64 {
    f64::from(m.score.clamp(0.0, 1.0))
}

impl Classification {
    /// What the node publishes for a frame: the policy's top-k phrases (every phrase when
    /// `top_k` is 0), best first, each scored by [`classification_score`].
    pub fn of(header: Header, matches: &Matches) -> Self {
        Classification {
            header,
            results: matches
                .top()
                .iter()
                .map(|m| Hypothesis {
                    class_id: m.phrase.clone(),
                    score: classification_score(m),
                })
                .collect(),
        }
    }
}

/// One located phrase (`vision_msgs/Detection2D`): the box's centre and size in the
/// image's pixels, the phrase, its score in the `Classification` unit (the picked region's
/// score, clipped to [0, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub class_id: String,
    pub score: f64,
    pub center: [f64; 2],
    pub size: [f64; 2],
}

/// `vision_msgs/Detection2DArray`: the image's header, one detection per matched phrase,
/// best score first.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    pub header: Header,
    pub detections: Vec<Detection>,
}

/// `sensor_msgs/Image`, `32FC1`: every phrase's relevance map (score unit), side by side
/// in one row in `LabelInfo`'s class order, each `cols` wide: `width = cols * phrases`,
/// `height = rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub header: Header,
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height` values.
    pub values: Vec<f32>,
}

impl Heatmap {
    /// The maps of `locations` (any order) side by side in phrase order.
    pub fn of(header: Header, locations: &[crate::locate::Location]) -> Option<Heatmap> {
        let mut by_phrase: Vec<&crate::locate::Location> = locations.iter().collect();
        by_phrase.sort_by_key(|l| l.index);
        let first = by_phrase.first()?;
        let (cols, rows) = (first.map.cols, first.map.rows);
        let width = cols * by_phrase.len();
        let mut values = vec![0f32; width * rows];
        for (p, l) in by_phrase.iter().enumerate() {
            for r in 0..rows {
                values[r * width + p * cols..r * width + (p + 1) * cols]
                    .copy_from_slice(&l.map.values[r * cols..(r + 1) * cols]);
            }
        }
        Some(Heatmap {
            header,
            width: width as u32,
            height: rows as u32,
            values,
        })
    }
}

impl Detections {
    /// What the node publishes for a frame: a detection for each phrase `matches` has
    /// matched, at its location, best score first.
    pub fn of(header: Header, matches: &Matches, located: &[crate::locate::LocatedPhrase]) -> Self {
        let matched = |phrase: &str| {
            matches
                .labels
                .iter()
                .any(|m| m.matched && m.phrase == phrase)
        };
        let mut detections: Vec<Detection> = located
            .iter()
            .filter(|l| matched(&l.label))
            .map(|l| {
                let b = l.rect();
                Detection {
                    class_id: l.label.clone(),
                    score: f64::from(l.score.clamp(0.0, 1.0)),
                    center: [(b.x0 + b.x1) as f64 / 2.0, (b.y0 + b.y1) as f64 / 2.0],
                    size: [b.width() as f64, b.height() as f64],
                }
            })
            .collect();
        detections.sort_by(|a, b| b.score.total_cmp(&a.score));
        Detections { header, detections }
    }
}

/// `vision_msgs/LabelInfo`: class ids are the phrases' indices.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelInfo {
    pub header: Header,
    pub class_names: Vec<String>,
    pub threshold: f32,
}

/// `diagnostic_msgs/DiagnosticStatus` levels, in order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
/// `camera` is the camera's index in the `cameras` parameter (0 for the single camera).
pub trait Outputs: Send + Sync + 'static {
    /// A frame's Classification, on its camera's `~/classification` (`~/C/classification`).
    fn classification(&self, camera: usize, message: Classification);
    /// The frame's full result, published as its camera's `~/matches` JSON
    /// ([`FrameResult::to_json`]).
    fn matches(&self, camera: usize, result: &FrameResult);
    /// A frame's located matched phrases, on its camera's `~/detections` (with `localize`).
    fn detections(&self, camera: usize, message: Detections);
    /// A frame's relevance maps, on its camera's `~/heatmap` (with `localize` and
    /// `publish_heatmap`).
    fn heatmap(&self, camera: usize, message: Heatmap);
    fn label_info(&self, message: LabelInfo);
    /// One status per camera, in one `DiagnosticArray`.
    fn diagnostics(&self, header: Header, statuses: Vec<DiagnosticStatus>);
    /// Parameters whose values changed (name, new value), for `/parameter_events`, at ROS
    /// time `stamp`.
    fn parameters_changed(&self, stamp: Stamp, changed: &[(&'static str, serde_json::Value)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::step::{FrameStep, MatchPolicy};
    use crate::text::LabelMatrix;
    use nalgebra::DMatrix;

    fn scores(labels: &[(&str, [f32; 2])], embedding: &[f32]) -> Vec<(String, f64)> {
        let matrix = LabelMatrix {
            labels: labels.iter().map(|(l, _)| l.to_string()).collect(),
            matrix: DMatrix::from_row_slice(
                labels.len(),
                2,
                &labels.iter().flat_map(|(_, v)| *v).collect::<Vec<_>>(),
            ),
            scoring: crate::model::Scoring::softmax(100.0),
        };
        let matches = FrameStep::new(MatchPolicy::default()).step(&matrix, 0, embedding);
        Classification::of(Header::default(), &matches)
            .results
            .into_iter()
            .map(|h| (h.class_id, h.score))
            .collect()
    }

    #[test]
    fn a_score_depends_only_on_its_phrase_and_the_image() {
        // The image (3, 4) has cosine 0.6 with red cup's row (1, 0) and -0.8 with blue
        // ball's (0, -1). A lone phrase is not scored 1.0.
        let alone = scores(&[("red cup", [1.0, 0.0])], &[3.0, 4.0]);
        assert_eq!(alone.len(), 1);
        assert!((alone[0].1 - 0.6).abs() < 1e-6, "{alone:?}");
        let both = scores(
            &[("red cup", [1.0, 0.0]), ("blue ball", [0.0, -1.0])],
            &[3.0, 4.0],
        );
        assert_eq!(both[0].0, "red cup");
        assert!((both[0].1 - alone[0].1).abs() < 1e-12);
        // A negative cosine is clipped to 0.
        assert_eq!(both[1], ("blue ball".to_string(), 0.0));
    }
}
