//! Offline evaluation: recorded image topics through the node's own per-frame path. The
//! configuration comes from the node's parameter machinery (params file, `-p` overrides,
//! the same validation) and the engine from the node's own loader, and every frame goes
//! through the same conversion, image encoder and [`FrameStep`]: what replay writes for a
//! frame is what the node publishes for it. Unlike the node, replay scores every frame
//! (in batches), so its numbers do not depend on the CPU's speed. A line's `encoder_ms` is
//! its share of the batch's forward pass (preprocessing included), `latency_ms` the frame's
//! own work: reading and decoding it, its share of the batch's conversion and encoding, and
//! its scoring (replay waits for no camera, so this is the end-to-end cost per frame).
//!
//! Several topics of one bag are replayed as the node's cameras ([`cameras`] names them):
//! their frames in log-time order, batched together, each scored by its own camera's
//! [`FrameStep`] (smoothing and hysteresis never cross cameras). Each topic is read by its
//! own bag reader ([`Bag::messages_of`]), so a file holding several of them is read (and
//! its chunks decompressed) once per topic.

pub mod cameras;
pub mod results_bag;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;

use crate::bag::{Bag, BagError, BagMessage, TopicInfo, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE};
use crate::engine::locate::locate_image;
use crate::engine::step::{FrameResult, FrameStep, MatchPolicy, Stamp};
use crate::image::{Preprocessor, RejectReason, RgbImage};
use crate::locate::{LocateSettings, LocatedPhrase};
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
    /// The bag has no image topic at all: every topic it has is listed.
    #[error(
        "{bag}: no image topic ({IMAGE_TYPE} or {COMPRESSED_IMAGE_TYPE}); the bag's topics: \
         {listing}"
    )]
    NoImageTopic { bag: String, listing: String },
    #[error("{bag}: {count} image topics, name one with --topic: {listing}")]
    Ambiguous {
        bag: String,
        count: usize,
        listing: String,
    },
    #[error("topic {topic} is named twice (--topic, --topics)")]
    DuplicateTopic { topic: String },
    #[error(transparent)]
    Camera(#[from] cameras::CameraError),
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
    let named = topic.and_then(|wanted| bag.topics().iter().find(|t| t.name == wanted));
    if images.is_empty() && named.is_none() {
        // Nothing to replay: say what the bag does hold.
        let all: Vec<&TopicInfo> = bag.topics().iter().collect();
        return Err(ReplayError::NoImageTopic {
            bag: name,
            listing: listing(&all),
        });
    }
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

/// The topics to replay: those named (each checked as [`choose_topic`] does, none twice),
/// or else the bag's only image topic.
pub fn choose_topics(bag: &Bag, topics: &[String]) -> Result<Vec<TopicInfo>, ReplayError> {
    if topics.is_empty() {
        return Ok(vec![choose_topic(bag, None)?]);
    }
    if let Some((i, _)) = topics
        .iter()
        .enumerate()
        .find(|(i, t)| topics[..*i].contains(t))
    {
        return Err(ReplayError::DuplicateTopic {
            topic: topics[i].clone(),
        });
    }
    topics.iter().map(|t| choose_topic(bag, Some(t))).collect()
}

/// A replayed topic and the camera its results belong to.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    pub topic: TopicInfo,
    /// `None` for a single topic: the node's single-camera interface (no `camera` field,
    /// results on `~/classification` and `~/matches`).
    pub camera: Option<String>,
}

/// The sources of `topics`: one topic as the single camera; several as cameras named by
/// `configured` (the `cameras` parameter, one per topic in order) or after the topics
/// ([`cameras::camera_names`]).
pub fn sources(
    topics: Vec<TopicInfo>,
    configured: &[String],
) -> Result<Vec<ReplaySource>, ReplayError> {
    if topics.len() == 1 {
        return Ok(topics
            .into_iter()
            .map(|topic| ReplaySource {
                topic,
                camera: None,
            })
            .collect());
    }
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    let cameras = cameras::camera_names(&names, configured)?;
    Ok(topics
        .into_iter()
        .zip(cameras)
        .map(|(topic, camera)| ReplaySource {
            topic,
            camera: Some(camera),
        })
        .collect())
}

/// Which frames of the topics are scored.
#[derive(Debug, Clone, Default)]
pub struct FrameSelection {
    /// Seconds after the first message (of any replayed topic) at which to start.
    pub start: Option<f64>,
    /// Seconds after the first message (of any replayed topic) at which to stop.
    pub end: Option<f64>,
    /// Score every n-th frame of each topic's frames in the window (1: all).
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
        /// Every phrase's location, best score first (when localising).
        #[serde(skip_serializing_if = "Option::is_none")]
        locations: Option<Vec<LocatedPhrase>>,
    },
    Skipped {
        bag_time_ns: u64,
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        camera: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stamp: Option<Stamp>,
        reason: &'static str,
        error: String,
    },
}

impl ReplayLine {
    /// The topic the frame was read from.
    pub fn topic(&self) -> &str {
        match self {
            ReplayLine::Scored { topic, .. } | ReplayLine::Skipped { topic, .. } => topic,
        }
    }
}

/// What a replay did with the frames of one topic, or of all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayCounts {
    /// Messages read from the bag (within the window).
    pub frames_read: u64,
    pub frames_scored: u64,
    /// Frames without a result, by reason.
    pub frames_skipped: BTreeMap<&'static str, u64>,
}

impl ReplayCounts {
    fn count(&mut self, line: &ReplayLine) {
        if let ReplayLine::Skipped { reason, .. } = line {
            *self.frames_skipped.entry(reason).or_default() += 1;
        } else {
            self.frames_scored += 1;
        }
    }

    /// Frames without a result.
    pub fn skipped(&self) -> u64 {
        self.frames_skipped.values().sum()
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// All topics together.
    #[serde(flatten)]
    pub frames: ReplayCounts,
    /// Per source, in the order replayed.
    pub per_topic: Vec<ReplayCounts>,
    pub wall_s: f64,
    pub frames_per_s: f64,
    /// Where the bag stopped being readable, if it did.
    pub bag_error: Option<String>,
}

/// A frame read from the bag, waiting for its batch.
struct Pending {
    /// Its source's index.
    source: usize,
    bag_time_ns: u64,
    header: Header,
    pixels: Pixels,
    /// Reading it from the bag and decoding its message (from the end of the previous
    /// message's reading).
    read_ms: f64,
}

/// What the reading thread hands the conversion thread: up to a batch of frames and, when a
/// message could not be decoded, its line (with its source), which comes after them (bag
/// order).
struct Chunk {
    frames: Vec<Pending>,
    undecodable: Option<(usize, ReplayLine)>,
}

/// A chunk converted to the encoder's input: every converted frame's pixels preprocessed
/// into `pixels`, in order.
struct Prepared {
    frames: Vec<PreparedFrame>,
    pixels: Vec<f32>,
    /// Preprocessing the chunk (resizing, cropping, normalising): part of the encoder's
    /// time, as the node's `encoder_ms` includes it.
    preprocess_ms: f64,
    undecodable: Option<(usize, ReplayLine)>,
}

struct PreparedFrame {
    source: usize,
    bag_time_ns: u64,
    header: Header,
    /// Reading, decoding, converting and preprocessing it.
    own_ms: f64,
    /// Why it has no pixels: the reason's name and the error.
    failed: Option<(&'static str, String)>,
    /// Its RGB pixels, kept when localising.
    rgb: Option<RgbImage<'static>>,
}

/// Converts and preprocesses chunks; on the conversion thread, or inline where that thread
/// could not be started.
struct Converter {
    preprocessor: Preprocessor,
    /// A preprocessor in its initial state, to continue from after a panic.
    fresh: Preprocessor,
    /// Keep each frame's RGB pixels (for localisation).
    keep_rgb: bool,
}

impl Converter {
    fn new(preprocessor: Preprocessor, keep_rgb: bool) -> Self {
        Converter {
            fresh: preprocessor.clone(),
            preprocessor,
            keep_rgb,
        }
    }

    fn prepare(&mut self, chunk: Chunk) -> Prepared {
        let len = self.preprocessor.tensor_len();
        let mut pixels = Vec::with_capacity(len * chunk.frames.len());
        let mut preprocess_ms = 0.0;
        let frames = chunk
            .frames
            .into_iter()
            .map(|p| {
                let started = Instant::now();
                let at = pixels.len();
                // A frame that makes the decoder panic is skipped and counted, as in the node.
                let keep_rgb = self.keep_rgb;
                let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let rgb = p.pixels.to_rgb()?;
                    let preprocess_started = Instant::now();
                    pixels.resize(at + len, 0.0);
                    self.preprocessor.preprocess_into(&rgb, &mut pixels[at..]);
                    let ms = preprocess_started.elapsed().as_secs_f64() * 1e3;
                    let kept = keep_rgb.then(|| RgbImage {
                        width: rgb.width,
                        height: rgb.height,
                        stride: rgb.stride,
                        data: std::borrow::Cow::Owned(rgb.data.into_owned()),
                    });
                    Ok::<_, crate::image::FrameError>((ms, kept))
                }));
                let mut rgb = None;
                let failed = match converted {
                    Ok(Ok((ms, kept))) => {
                        preprocess_ms += ms;
                        rgb = kept;
                        None
                    }
                    Ok(Err(e)) => Some((e.reason().name(), e.to_string())),
                    Err(_) => {
                        pixels.truncate(at);
                        self.preprocessor = self.fresh.clone();
                        let reason = RejectReason::Panic;
                        Some((reason.name(), "decoding the frame panicked".to_string()))
                    }
                };
                PreparedFrame {
                    source: p.source,
                    bag_time_ns: p.bag_time_ns,
                    header: p.header,
                    own_ms: p.read_ms + started.elapsed().as_secs_f64() * 1e3,
                    failed,
                    rgb,
                }
            })
            .collect();
        Prepared {
            frames,
            pixels,
            preprocess_ms,
            undecodable: chunk.undecodable,
        }
    }
}

/// Where chunks are converted: a second thread, so that decoding the next batch overlaps
/// encoding this one (at most one chunk waits on each side, so memory stays bounded), or
/// inline where no thread could be started.
enum Conversion {
    Thread {
        chunks: mpsc::SyncSender<Chunk>,
        prepared: mpsc::Receiver<Prepared>,
        in_flight: usize,
    },
    Inline(Box<Converter>),
}

impl Conversion {
    fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        preprocessor: &Preprocessor,
        keep_rgb: bool,
    ) -> Self {
        let (chunks, chunk_rx) = mpsc::sync_channel::<Chunk>(1);
        let (prepared_tx, prepared) = mpsc::sync_channel::<Prepared>(1);
        let mut converter = Converter::new(preprocessor.clone(), keep_rgb);
        let spawned = std::thread::Builder::new()
            .name("replay-decode".into())
            .spawn_scoped(scope, move || {
                for chunk in chunk_rx {
                    if prepared_tx.send(converter.prepare(chunk)).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => Conversion::Thread {
                chunks,
                prepared,
                in_flight: 0,
            },
            Err(e) => {
                log::warn!("cannot start the decoding thread ({e}); decoding on this one");
                Conversion::Inline(Box::new(Converter::new(preprocessor.clone(), keep_rgb)))
            }
        }
    }

    /// Hands over a chunk; returns the oldest converted chunk once one more is being
    /// converted behind it (inline: this chunk, converted).
    fn submit(&mut self, chunk: Chunk) -> Option<Prepared> {
        match self {
            Conversion::Inline(converter) => return Some(converter.prepare(chunk)),
            Conversion::Thread {
                chunks, in_flight, ..
            } => {
                // The thread only ends when this side hangs up, and it catches the panics
                // of the frames it converts.
                chunks
                    .send(chunk)
                    .expect("the decoding thread runs until replay ends");
                *in_flight += 1;
                if *in_flight < 2 {
                    return None;
                }
            }
        }
        self.finish()
    }

    /// The chunk still being converted, if any.
    fn finish(&mut self) -> Option<Prepared> {
        match self {
            Conversion::Thread {
                prepared,
                in_flight,
                ..
            } if *in_flight > 0 => {
                *in_flight -= 1;
                Some(
                    prepared
                        .recv()
                        .expect("the decoding thread sends every chunk"),
                )
            }
            _ => None,
        }
    }
}

/// The node's engine and per-frame step, fed from a bag.
pub struct Replayer {
    image: ImageEncoder,
    labels: LabelMatrix,
    policy: MatchPolicy,
    batch_size: usize,
    /// Localise every scored frame's phrases (the node's `localize`).
    locate: Option<LocateSettings>,
}

impl Replayer {
    /// The parts the node itself would run ([`crate::node::NodePlan::load_engine`]).
    pub fn new(setup: CoreSetup, batch_size: usize) -> Self {
        Replayer {
            policy: setup.config.policy.clone(),
            locate: setup.config.localize.then(LocateSettings::default),
            image: setup.image,
            labels: setup.labels,
            batch_size: batch_size.max(1),
        }
    }

    /// Localise every scored frame's phrases (default: the params' `localize`): each line
    /// gets `locations`, as `locate --json` gives them for the frame's pixels.
    pub fn set_localize(&mut self, on: bool) {
        self.locate = on.then(LocateSettings::default);
    }

    /// Whether frames are localised.
    pub fn localizes(&self) -> bool {
        self.locate.is_some()
    }

    /// How scores become matches (the node's configuration).
    pub fn policy(&self) -> &MatchPolicy {
        &self.policy
    }

    /// The phrases frames are scored against.
    pub fn labels(&self) -> &LabelMatrix {
        &self.labels
    }

    /// Scores the selected frames of the `sources`' topics in log-time order (ties: in the
    /// sources' order), each camera with its own [`FrameStep`] started afresh, handing each
    /// line to `emit` (and `progress` the number of messages read so far). A damaged bag
    /// ends the replay with what was read before the damage; the summary says where it
    /// broke.
    ///
    /// Three stages overlap: this thread reads the bag and decodes messages, a second
    /// thread converts and preprocesses the frames of the next batch, and this thread
    /// encodes and scores the batch before it.
    pub fn run(
        &mut self,
        bag: &Bag,
        sources: &[ReplaySource],
        selection: &FrameSelection,
        mut emit: impl FnMut(&ReplayLine) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
        mut progress: impl FnMut(u64),
    ) -> Result<ReplaySummary, ReplayError> {
        let started = Instant::now();
        let mut summary = ReplaySummary {
            per_topic: vec![ReplayCounts::default(); sources.len()],
            ..ReplaySummary::default()
        };
        let mut steps: Vec<FrameStep> = sources
            .iter()
            .map(|_| FrameStep::new(self.policy.clone()))
            .collect();
        let names: Vec<&str> = sources.iter().map(|s| s.topic.name.as_str()).collect();
        let preprocessor = self.image.preprocessor().clone();
        std::thread::scope(|scope| {
            let mut conversion = Conversion::start(scope, &preprocessor, self.locate.is_some());
            let mut first: Option<u64> = None;
            let mut frames: Vec<Pending> = Vec::with_capacity(self.batch_size);
            let every = selection.every.max(1) as u64;
            let mut in_window = vec![0u64; sources.len()];
            // A failed write ends the replay: nothing after it could be kept.
            let mut emit_all = |lines: Vec<(usize, ReplayLine)>, summary: &mut ReplaySummary| {
                for (source, line) in &lines {
                    summary.frames.count(line);
                    summary.per_topic[*source].count(line);
                    emit(line).map_err(ReplayError::Write)?;
                }
                Ok::<(), ReplayError>(())
            };
            let mut last_done = Instant::now();
            for message in bag.messages_of(&names)? {
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
                let source = names
                    .iter()
                    .position(|n| *n == message.topic)
                    .expect("the bag delivers the topics asked for");
                in_window[source] += 1;
                if !(in_window[source] - 1).is_multiple_of(every) {
                    continue;
                }
                summary.frames.frames_read += 1;
                summary.per_topic[source].frames_read += 1;
                progress(summary.frames.frames_read);
                let chunk = match decode_frame(&sources[source].topic.type_name, &message) {
                    Ok((header, pixels)) => {
                        frames.push(Pending {
                            source,
                            bag_time_ns: message.log_time_ns,
                            header,
                            pixels,
                            read_ms: last_done.elapsed().as_secs_f64() * 1e3,
                        });
                        (frames.len() >= self.batch_size).then(|| Chunk {
                            frames: std::mem::take(&mut frames),
                            undecodable: None,
                        })
                    }
                    // The frames before it go first: results stay in bag order.
                    Err(error) => Some(Chunk {
                        frames: std::mem::take(&mut frames),
                        undecodable: Some((
                            source,
                            ReplayLine::Skipped {
                                bag_time_ns: message.log_time_ns,
                                topic: message.topic.clone(),
                                camera: sources[source].camera.clone(),
                                stamp: None,
                                reason: RejectReason::Undeserializable.name(),
                                error: error.to_string(),
                            },
                        )),
                    }),
                };
                if let Some(chunk) = chunk {
                    if let Some(ready) = conversion.submit(chunk) {
                        emit_all(self.encode(ready, sources, &mut steps), &mut summary)?;
                    }
                }
                last_done = Instant::now();
            }
            if !frames.is_empty() {
                let chunk = Chunk {
                    frames,
                    undecodable: None,
                };
                if let Some(ready) = conversion.submit(chunk) {
                    emit_all(self.encode(ready, sources, &mut steps), &mut summary)?;
                }
            }
            while let Some(ready) = conversion.finish() {
                emit_all(self.encode(ready, sources, &mut steps), &mut summary)?;
            }
            Ok::<(), ReplayError>(())
        })?;
        summary.wall_s = started.elapsed().as_secs_f64();
        summary.frames_per_s = summary.frames.frames_read as f64 / summary.wall_s.max(1e-9);
        Ok(summary)
    }

    /// Encodes (one forward pass) and scores a converted chunk, in order, each frame with
    /// its own source's step.
    fn encode(
        &mut self,
        chunk: Prepared,
        sources: &[ReplaySource],
        steps: &mut [FrameStep],
    ) -> Vec<(usize, ReplayLine)> {
        let converted = chunk.frames.iter().filter(|f| f.failed.is_none()).count();
        let started = Instant::now();
        let encoded = if converted == 0 {
            Ok(Vec::new())
        } else {
            self.image.encode_pixels(&chunk.pixels)
        };
        let encode_ms = started.elapsed().as_secs_f64() * 1e3;
        // Each frame's share of the batch's preprocessing and forward pass.
        let share_ms = encode_ms / converted.max(1) as f64;
        let encoder_ms = share_ms + chunk.preprocess_ms / converted.max(1) as f64;
        let mut lines = Vec::with_capacity(chunk.frames.len() + 1);
        match encoded {
            Err(e) => {
                let error = format!("image encoder: {e}");
                lines.extend(chunk.frames.into_iter().map(|f| match f.failed.clone() {
                    Some((reason, own)) => skipped(f, sources, reason, own),
                    None => skipped(f, sources, RejectReason::EncoderError.name(), error.clone()),
                }));
            }
            Ok(embeddings) => {
                let mut embeddings = embeddings.into_iter();
                for f in chunk.frames {
                    lines.push(match f.failed.clone() {
                        Some((reason, error)) => skipped(f, sources, reason, error),
                        None => {
                            let step_started = Instant::now();
                            let embedding = embeddings.next().expect("one embedding per image");
                            let matches = steps[f.source].step(&self.labels, 0, &embedding);
                            let locations = match (&self.locate, &f.rgb) {
                                (Some(settings), Some(rgb)) => {
                                    match locate_image(
                                        &mut self.image,
                                        self.batch_size,
                                        rgb,
                                        &self.labels,
                                        settings,
                                    ) {
                                        Ok(found) => Some(
                                            found
                                                .iter()
                                                .map(|l| l.named(&self.labels.labels))
                                                .collect(),
                                        ),
                                        Err(e) => {
                                            log::warn!(
                                                "frame {:?}: localization failed: {e}",
                                                f.header.frame_id
                                            );
                                            None
                                        }
                                    }
                                }
                                _ => None,
                            };
                            let step_ms = step_started.elapsed().as_secs_f64() * 1e3;
                            let source = &sources[f.source];
                            (
                                f.source,
                                ReplayLine::Scored {
                                    result: FrameResult {
                                        stamp: f.header.stamp,
                                        frame_id: f.header.frame_id,
                                        camera: source.camera.clone(),
                                        matches,
                                        // Replay waits for no camera: the frame's own work.
                                        latency_ms: f.own_ms + share_ms + step_ms,
                                        encoder_ms,
                                    },
                                    bag_time_ns: f.bag_time_ns,
                                    topic: source.topic.name.clone(),
                                    locations,
                                },
                            )
                        }
                    });
                }
            }
        }
        lines.extend(chunk.undecodable);
        lines
    }
}

fn skipped(
    p: PreparedFrame,
    sources: &[ReplaySource],
    reason: &'static str,
    error: String,
) -> (usize, ReplayLine) {
    let source = &sources[p.source];
    (
        p.source,
        ReplayLine::Skipped {
            bag_time_ns: p.bag_time_ns,
            topic: source.topic.name.clone(),
            camera: source.camera.clone(),
            stamp: Some(p.header.stamp),
            reason,
            error,
        },
    )
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
