//! Offline evaluation: a recorded image topic through the node's own per-frame path. The
//! configuration comes from the node's parameter machinery (params file, `-p` overrides,
//! the same validation) and the engine from the node's own loader, and every frame goes
//! through the same conversion, image encoder and [`FrameStep`]: what replay writes for a
//! frame is what the node publishes for it. Unlike the node, replay scores every frame
//! (in batches), so its numbers do not depend on the CPU's speed. A line's `encoder_ms` is
//! its share of the batch's forward pass (preprocessing included), `latency_ms` the frame's
//! own work: reading and decoding it, its share of the batch's conversion and encoding, and
//! its scoring (replay waits for no camera, so this is the end-to-end cost per frame).

pub mod results_bag;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::bag::{Bag, BagError, BagMessage, TopicInfo, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE};
use crate::engine::step::{FrameResult, FrameStep, Stamp};
use crate::image::RejectReason;
use crate::model::ImageEncoder;
use crate::node::messages::{Header, Pixels};
use crate::node::CoreSetup;
use crate::ros_msgs::{decode_cdr, CompressedImage, Image};
use crate::text::LabelMatrix;

/// Why replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error("{bag}: no topic {topic}; its image topics: {listing}")]
    NoSuchTopic {
        bag: String,
        topic: String,
        listing: String,
    },
    #[error(
        "{bag}: topic {topic} is a {type_name}, not a {IMAGE_TYPE} or {COMPRESSED_IMAGE_TYPE}"
    )]
    NotAnImageTopic {
        bag: String,
        topic: String,
        type_name: String,
    },
    /// A result could not be written (the error names the output).
    #[error("{0}")]
    Write(Box<dyn std::error::Error + Send + Sync>),
    #[error("{bag}: {count} image topics, name one with --topic: {listing}")]
    Ambiguous {
        bag: String,
        count: usize,
        listing: String,
    },
}

fn is_image(t: &TopicInfo) -> bool {
    t.type_name == IMAGE_TYPE || t.type_name == COMPRESSED_IMAGE_TYPE
}

fn listing(topics: &[&TopicInfo]) -> String {
    if topics.is_empty() {
        return "none".into();
    }
    topics
        .iter()
        .map(|t| format!("{} ({}, {} messages)", t.name, t.type_name, t.message_count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The topic to replay: the one named, which must be an image topic, or else the bag's only
/// image topic.
pub fn choose_topic(bag: &Bag, topic: Option<&str>) -> Result<TopicInfo, ReplayError> {
    let name = bag.path().display().to_string();
    let images: Vec<&TopicInfo> = bag.topics().iter().filter(|t| is_image(t)).collect();
    match topic {
        Some(wanted) => {
            let found = bag
                .topics()
                .iter()
                .find(|t| t.name == wanted)
                .ok_or_else(|| ReplayError::NoSuchTopic {
                    bag: name.clone(),
                    topic: wanted.to_string(),
                    listing: listing(&images),
                })?;
            if !is_image(found) {
                return Err(ReplayError::NotAnImageTopic {
                    bag: name,
                    topic: found.name.clone(),
                    type_name: found.type_name.clone(),
                });
            }
            Ok(found.clone())
        }
        None if images.len() == 1 => Ok(images[0].clone()),
        None => Err(ReplayError::Ambiguous {
            bag: name,
            count: images.len(),
            listing: listing(&images),
        }),
    }
}

/// Which frames of the topic are scored.
#[derive(Debug, Clone, Default)]
pub struct FrameSelection {
    /// Seconds after the topic's first message at which to start.
    pub start: Option<f64>,
    /// Seconds after the topic's first message at which to stop.
    pub end: Option<f64>,
    /// Score every n-th frame of those in the window (1: all).
    pub every: usize,
}

/// One output line: a frame's result, or why it has none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ReplayLine {
    Scored {
        #[serde(flatten)]
        result: FrameResult,
        bag_time_ns: u64,
        topic: String,
    },
    Skipped {
        bag_time_ns: u64,
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        stamp: Option<Stamp>,
        reason: &'static str,
        error: String,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Messages of the topic read from the bag (within the window).
    pub frames_read: u64,
    pub frames_scored: u64,
    /// Frames without a result, by reason.
    pub frames_skipped: BTreeMap<&'static str, u64>,
    pub wall_s: f64,
    pub frames_per_s: f64,
    /// Where the bag stopped being readable, if it did.
    pub bag_error: Option<String>,
}

/// A frame waiting for its batch.
struct Pending {
    bag_time_ns: u64,
    header: Header,
    pixels: Pixels,
    /// Reading and decoding it (from the end of the previous message's work).
    read_ms: f64,
}

/// The node's engine and per-frame step, fed from a bag.
pub struct Replayer {
    image: ImageEncoder,
    labels: LabelMatrix,
    step: FrameStep,
    batch_size: usize,
}

impl Replayer {
    /// The parts the node itself would run ([`crate::node::NodePlan::load_engine`]).
    pub fn new(setup: CoreSetup, batch_size: usize) -> Self {
        Replayer {
            step: FrameStep::new(setup.config.policy.clone()),
            image: setup.image,
            labels: setup.labels,
            batch_size: batch_size.max(1),
        }
    }

    /// How scores become matches (the node's configuration).
    pub fn policy(&self) -> &crate::engine::step::MatchPolicy {
        self.step.policy()
    }

    /// The phrases frames are scored against.
    pub fn labels(&self) -> &LabelMatrix {
        &self.labels
    }

    /// Scores the selected frames of `topic` in bag order, handing each line to `emit`
    /// (and `progress` the number of messages read so far). A damaged bag ends the replay
    /// with what was read before the damage; the summary says where it broke.
    pub fn run(
        &mut self,
        bag: &Bag,
        topic: &TopicInfo,
        selection: &FrameSelection,
        mut emit: impl FnMut(&ReplayLine) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
        mut progress: impl FnMut(u64),
    ) -> Result<ReplaySummary, ReplayError> {
        let started = Instant::now();
        let mut summary = ReplaySummary::default();
        let mut first: Option<u64> = None;
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch_size);
        let every = selection.every.max(1) as u64;
        let mut in_window = 0u64;
        // A failed write ends the replay: nothing after it could be kept.
        let mut emit_checked = |line: &ReplayLine, summary: &mut ReplaySummary| {
            if let ReplayLine::Skipped { reason, .. } = line {
                *summary.frames_skipped.entry(reason).or_default() += 1;
            } else {
                summary.frames_scored += 1;
            }
            emit(line).map_err(ReplayError::Write)
        };
        let mut last_done = Instant::now();
        for message in bag.messages(&topic.name)? {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    summary.bag_error = Some(e.to_string());
                    break;
                }
            };
            let t0 = *first.get_or_insert(message.log_time_ns);
            let since = (message.log_time_ns.saturating_sub(t0)) as f64 * 1e-9;
            if selection.start.is_some_and(|s| since < s) {
                continue;
            }
            if selection.end.is_some_and(|e| since > e) {
                break;
            }
            in_window += 1;
            if !(in_window - 1).is_multiple_of(every) {
                continue;
            }
            summary.frames_read += 1;
            progress(summary.frames_read);
            match decode_frame(&topic.type_name, &message).map_err(|e| e.to_string()) {
                Ok((header, pixels)) => batch.push(Pending {
                    bag_time_ns: message.log_time_ns,
                    header,
                    pixels,
                    read_ms: last_done.elapsed().as_secs_f64() * 1e3,
                }),
                Err(error) => {
                    // Frames before it in the batch come first: results stay in bag order.
                    for line in self.flush(&mut batch, &topic.name) {
                        emit_checked(&line, &mut summary)?;
                    }
                    let line = ReplayLine::Skipped {
                        bag_time_ns: message.log_time_ns,
                        topic: topic.name.clone(),
                        stamp: None,
                        reason: RejectReason::Undeserializable.name(),
                        error,
                    };
                    emit_checked(&line, &mut summary)?;
                }
            }
            if batch.len() >= self.batch_size {
                for line in self.flush(&mut batch, &topic.name) {
                    emit_checked(&line, &mut summary)?;
                }
            }
            last_done = Instant::now();
        }
        for line in self.flush(&mut batch, &topic.name) {
            emit_checked(&line, &mut summary)?;
        }
        summary.wall_s = started.elapsed().as_secs_f64();
        summary.frames_per_s = summary.frames_read as f64 / summary.wall_s.max(1e-9);
        Ok(summary)
    }

    /// Converts, encodes (one forward pass) and scores the waiting frames, in order.
    fn flush(&mut self, batch: &mut Vec<Pending>, topic: &str) -> Vec<ReplayLine> {
        let pending = std::mem::take(batch);
        let flush_started = Instant::now();
        let (failures, encoded, encoder_ms) = {
            let mut images = Vec::with_capacity(pending.len());
            let failures: Vec<Option<crate::image::FrameError>> = pending
                .iter()
                .map(|p| match p.pixels.to_rgb() {
                    Ok(image) => {
                        images.push(image);
                        None
                    }
                    Err(e) => Some(e),
                })
                .collect();
            let started = Instant::now();
            let encoded = if images.is_empty() {
                Ok(Vec::new())
            } else {
                self.image.encode(&images)
            };
            let encoder_ms = started.elapsed().as_secs_f64() * 1e3 / images.len().max(1) as f64;
            (failures, encoded, encoder_ms)
        };
        let mut embeddings = match encoded {
            Ok(e) => e.into_iter(),
            Err(e) => {
                let error = format!("image encoder: {e}");
                return pending
                    .into_iter()
                    .map(|p| skipped(p, topic, RejectReason::EncoderError.name(), error.clone()))
                    .collect();
            }
        };
        // Each frame's share of the batch's conversion and encoding.
        let share_ms = flush_started.elapsed().as_secs_f64() * 1e3 / pending.len().max(1) as f64;
        pending
            .into_iter()
            .zip(failures)
            .map(|(p, failed)| match failed {
                Some(e) => skipped(p, topic, e.reason().name(), e.to_string()),
                None => {
                    let step_started = Instant::now();
                    let embedding = embeddings.next().expect("one embedding per image");
                    let matches = self.step.step(&self.labels, 0, &embedding);
                    let share_ms = share_ms + step_started.elapsed().as_secs_f64() * 1e3;
                    ReplayLine::Scored {
                        result: FrameResult {
                            stamp: p.header.stamp,
                            frame_id: p.header.frame_id,
                            matches,
                            // Replay waits for no camera: the frame's own work.
                            latency_ms: p.read_ms + share_ms,
                            encoder_ms,
                        },
                        bag_time_ns: p.bag_time_ns,
                        topic: topic.to_string(),
                    }
                }
            })
            .collect()
    }
}

fn skipped(p: Pending, topic: &str, reason: &'static str, error: String) -> ReplayLine {
    ReplayLine::Skipped {
        bag_time_ns: p.bag_time_ns,
        topic: topic.to_string(),
        stamp: Some(p.header.stamp),
        reason,
        error,
    }
}

/// A recorded image message (`type_name`: an Image or CompressedImage type) as the node
/// receives it from the wire.
pub fn decode_frame(
    type_name: &str,
    message: &BagMessage,
) -> Result<(Header, Pixels), crate::ros_msgs::CdrError> {
    if type_name == COMPRESSED_IMAGE_TYPE {
        decode_cdr::<CompressedImage>(&message.data).map(CompressedImage::into_parts)
    } else {
        decode_cdr::<Image>(&message.data).map(Image::into_parts)
    }
}
