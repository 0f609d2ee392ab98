//! The node itself, without a transport: three threads around the engine.
//!
//! ```text
//!  adapter ── offer_image ──> LatestSlot (newest wins; a replaced frame counts as dropped)
//!                                 │ frame thread: take newest ─> to_rgb ─> ImageEncoder
//!                                 │   ─> engine's FrameStep against the current
//!                                 │      Arc<ActiveLabels> (one snapshot per frame)
//!                                 │   ─> Classification + matches
//!  adapter ── query ──> channel ──> text thread: parse, check, TextEmbedder (cache) ─>
//!                                     swap Arc<ActiveLabels> atomically ─> LabelInfo
//!                                   diagnostics thread: every period ─> DiagnosticStatus
//! ```
//!
//! With `wait_for_fresh_frame`, a frame already older than half the camera's period when
//! the encoder frees up gives way to the next frame if that arrives within the period: the
//! result is then fresher, and never older than the newest frame waiting at that moment.
//! Text never runs on the frame thread; a phrase switch is one pointer swap, so a result
//! is scored against exactly one phrase set. Nothing a message contains can stop a thread:
//! bad frames and bad queries are counted, logged (rate-limited) and skipped.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::latest::{LatestSlot, Taken};
use super::messages::{Classification, FrameResult, Header, ImageInput, LabelInfo, Outputs, Stamp};
use super::params::{check_node_phrases, NodeConfig};
use super::stats::NodeStats;
use crate::engine::step::FrameStep;
use crate::image::RejectReason;
use crate::model::ImageEncoder;
use crate::text::{parse_phrases, LabelMatrix, Prompts, TextEmbedder};

/// Cameras slower than this period get no wait for a fresher frame.
const MAX_FRESH_WAIT: Duration = Duration::from_millis(250);

/// How often a repeated warning of one kind may be logged.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The phrase set frames are scored against; replaced whole, never edited.
pub struct ActiveLabels {
    pub matrix: LabelMatrix,
    pub generation: u64,
}

/// What the core needs: the checked configuration and the engine's two halves.
pub struct CoreSetup {
    pub config: NodeConfig,
    pub image: ImageEncoder,
    pub text: TextEmbedder,
    /// The label matrix of `config.phrases` (built before start, so bad labels stop the start).
    pub labels: LabelMatrix,
    /// The diagnostic status name (conventionally `node_fqn: what`).
    pub status_name: String,
}

/// Logs a warning at most once per [`WARN_EVERY`] per kind, with the count it held back.
#[derive(Default)]
struct Throttle {
    last: HashMap<String, (Instant, u64)>,
}

impl Throttle {
    fn warn(&mut self, kind: &str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        match self.last.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < WARN_EVERY => *held += 1,
            entry => {
                let held = entry.map(|(_, h)| *h).unwrap_or(0);
                let more = if held > 0 {
                    format!(" ({held} more since the last report)")
                } else {
                    String::new()
                };
                log::warn!("{}{more}", message());
                self.last.insert(kind.to_string(), (now, 0));
            }
        }
    }
}

struct Shared {
    slot: LatestSlot<ImageInput>,
    labels: Mutex<Arc<ActiveLabels>>,
    stats: Mutex<NodeStats>,
    stopping: Mutex<bool>,
    stop_signal: Condvar,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, NodeStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current_labels(&self) -> Arc<ActiveLabels> {
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The running node core. Dropping it (or [`NodeCore::shutdown`]) stops its threads.
pub struct NodeCore {
    shared: Arc<Shared>,
    queries: Option<Sender<String>>,
    workers: Vec<JoinHandle<()>>,
}

fn label_info(labels: &LabelMatrix, threshold: f32) -> LabelInfo {
    LabelInfo {
        header: Header {
            stamp: Stamp::now(),
            frame_id: String::new(),
        },
        class_names: labels.labels.clone(),
        threshold,
    }
}

impl NodeCore {
    /// Starts the threads and publishes the initial LabelInfo.
    pub fn start(setup: CoreSetup, outputs: Arc<dyn Outputs>) -> NodeCore {
        let CoreSetup {
            config,
            image,
            text,
            labels,
            status_name,
        } = setup;
        let mut stats = NodeStats::default();
        stats.labels = labels.len();
        stats.precision = image.precision().name();
        stats.text = text.stats();
        outputs.label_info(label_info(&labels, config.policy.thresholds.default));
        let shared = Arc::new(Shared {
            slot: LatestSlot::default(),
            labels: Mutex::new(Arc::new(ActiveLabels {
                matrix: labels,
                generation: 0,
            })),
            stats: Mutex::new(stats),
            stopping: Mutex::new(false),
            stop_signal: Condvar::new(),
        });
        let config = Arc::new(config);
        let (query_tx, query_rx) = mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .expect("spawning a node thread")
        };
        let workers = vec![
            spawn("clip-frames", {
                let (shared, config, outputs) = (shared.clone(), config.clone(), outputs.clone());
                Box::new(move || frame_loop(&shared, &config, image, outputs.as_ref()))
            }),
            spawn("clip-text", {
                let (shared, config, outputs) = (shared.clone(), config.clone(), outputs.clone());
                Box::new(move || text_loop(&shared, &config, text, query_rx, outputs.as_ref()))
            }),
            spawn("clip-diagnostics", {
                let (shared, config) = (shared.clone(), config.clone());
                Box::new(move || diagnostics_loop(&shared, &config, &status_name, outputs.as_ref()))
            }),
        ];
        NodeCore {
            shared,
            queries: Some(query_tx),
            workers,
        }
    }

    /// Hands a received image to the frame thread; a frame still waiting is dropped.
    pub fn offer_image(&self, input: ImageInput) {
        let received = input.received;
        let replaced = self.shared.slot.offer(input);
        let mut stats = self.shared.stats();
        stats.received += 1;
        stats.arrivals.arrived(received);
        if replaced.is_some() {
            stats.dropped += 1;
        }
    }

    /// Counts a message the adapter could not even decode into an image.
    pub fn reject_message(&self, reason: RejectReason) {
        let mut stats = self.shared.stats();
        stats.received += 1;
        stats.reject(reason);
    }

    /// Hands a phrase list (`;` or newline separated) to the text thread.
    pub fn query(&self, text: String) {
        if let Some(tx) = &self.queries {
            // Fails only once the text thread has stopped, at shutdown.
            let _ = tx.send(text);
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> NodeStats {
        self.shared.stats().clone()
    }

    /// The phrases results are currently scored against.
    pub fn labels(&self) -> Vec<String> {
        self.shared.current_labels().matrix.labels.clone()
    }

    /// Stops the threads (after the frame being encoded, if any) and waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.stop_signal.notify_all();
        self.shared.slot.close();
        self.queries.take();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::error!("a node thread panicked");
            }
        }
    }
}

impl Drop for NodeCore {
    fn drop(&mut self) {
        self.stop();
    }
}

fn frame_loop(
    shared: &Shared,
    config: &NodeConfig,
    mut image: ImageEncoder,
    outputs: &dyn Outputs,
) {
    let mut throttle = Throttle::default();
    let mut step = FrameStep::new(config.policy.clone());
    let mut next_start = Instant::now();
    loop {
        // With max_rate, wait out the interval first: frames arriving meanwhile replace
        // each other in the slot, and the newest is taken when the interval ends.
        if let Some(wait) = next_start.checked_duration_since(Instant::now()) {
            let stopping = shared.stopping.lock().unwrap_or_else(|e| e.into_inner());
            let (stopping, _) = shared
                .stop_signal
                .wait_timeout_while(stopping, wait, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stopping {
                return;
            }
        }
        let mut input = match shared.slot.take(Duration::from_millis(500)) {
            Taken::Value(input) => input,
            Taken::TimedOut => continue,
            Taken::Closed => return,
        };
        if config.wait_for_fresh_frame {
            // The waiting frame is already more than half a period old: the next one is
            // due soon, so wait for it (until 1.25 periods after this one arrived) and
            // encode the fresher frame instead.
            let period = shared.stats().arrivals.period();
            if let Some(period) = period.filter(|p| *p <= MAX_FRESH_WAIT) {
                if input.received.elapsed() > period / 2 {
                    match shared.slot.take_until(input.received + period + period / 4) {
                        Taken::Value(newer) => {
                            shared.stats().dropped += 1;
                            input = newer;
                        }
                        Taken::TimedOut => {}
                        Taken::Closed => return,
                    }
                }
            }
        }
        if let Some(interval) = config.min_frame_interval {
            next_start = Instant::now() + interval;
        }
        // A bug that panics on some frame must not stop the frames that follow.
        let processed = catch_unwind(AssertUnwindSafe(|| {
            process_frame(shared, &mut image, &mut step, &mut throttle, input, outputs)
        }));
        if processed.is_err() {
            shared.stats().reject(RejectReason::Panic);
            log::error!("a frame made the frame thread panic; it was skipped");
        }
    }
}

/// Decodes, encodes and scores one frame and publishes its results; a bad frame is
/// counted and skipped.
fn process_frame(
    shared: &Shared,
    image: &mut ImageEncoder,
    step: &mut FrameStep,
    throttle: &mut Throttle,
    input: ImageInput,
    outputs: &dyn Outputs,
) {
    let rgb = match input.pixels.to_rgb() {
        Ok(rgb) => rgb,
        Err(e) => {
            shared.stats().reject(e.reason());
            throttle.warn(e.reason().name(), || {
                format!("frame {:?} skipped: {e}", input.header.frame_id)
            });
            return;
        }
    };
    let started = Instant::now();
    let embedding = match image.encode(std::slice::from_ref(&rgb)) {
        Ok(mut e) if e.len() == 1 => e.remove(0),
        Ok(_) => unreachable!("one image in, one embedding out"),
        Err(e) => {
            let reason = RejectReason::EncoderError;
            shared.stats().reject(reason);
            throttle.warn(reason.name(), || {
                format!(
                    "frame {:?} skipped: image encoder: {e}",
                    input.header.frame_id
                )
            });
            return;
        }
    };
    let encoder_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(rgb);
    // One snapshot of the phrase set for everything this frame publishes.
    let labels = shared.current_labels();
    let matches = step.step(&labels.matrix, labels.generation, &embedding);
    let latency_ms = input.received.elapsed().as_secs_f64() * 1e3;
    let header = input.header;
    outputs.classification(Classification::of(header.clone(), &matches));
    outputs.matches(&FrameResult {
        stamp: header.stamp,
        frame_id: header.frame_id,
        matches,
        latency_ms,
        encoder_ms,
    });
    let mut stats = shared.stats();
    stats.processed += 1;
    stats.latency_ms.push(latency_ms);
    stats.encoder_ms.push(encoder_ms);
}

fn text_loop(
    shared: &Shared,
    config: &NodeConfig,
    mut text: TextEmbedder,
    queries: Receiver<String>,
    outputs: &dyn Outputs,
) {
    while let Ok(mut query) = queries.recv() {
        // Only the newest query matters: each one replaces the whole phrase list.
        while let Ok(newer) = queries.try_recv() {
            shared.stats().queries_superseded += 1;
            query = newer;
        }
        let applied = catch_unwind(AssertUnwindSafe(|| {
            apply_query(shared, config, &mut text, &query, outputs)
        }));
        if applied.is_err() {
            shared.stats().queries_rejected += 1;
            log::error!("a query made the text thread panic; the current phrases stay");
        }
    }
}

fn apply_query(
    shared: &Shared,
    config: &NodeConfig,
    text: &mut TextEmbedder,
    query: &str,
    outputs: &dyn Outputs,
) {
    let current = shared.current_labels();
    let reject = |why: String| {
        log::warn!(
            "query rejected: {why}; keeping the {} current phrases",
            current.matrix.len()
        );
        shared.stats().queries_rejected += 1;
    };
    let phrases = parse_phrases(query);
    if let Err(why) = check_node_phrases(&phrases) {
        return reject(why.to_string());
    }
    if phrases == current.matrix.labels {
        log::info!("query repeats the current phrases; nothing to do");
        shared.stats().queries_applied += 1;
        return;
    }
    let prompts: &Prompts = &config.prompts;
    let started = Instant::now();
    let matrix = text.label_matrix(&phrases, prompts);
    if !config.keep_text_encoder && text.encoder_loaded() {
        text.unload_encoder();
        super::release_freed_memory();
    }
    let matrix = match matrix {
        Ok(m) => m,
        Err(e) => return reject(format!("text encoder: {e}")),
    };
    let generation = current.generation + 1;
    log::info!(
        "phrases switched to {:?} (set {generation}, text side {:.0} ms)",
        matrix.labels,
        started.elapsed().as_secs_f64() * 1e3
    );
    let info = label_info(&matrix, config.policy.thresholds.default);
    {
        let mut stats = shared.stats();
        stats.queries_applied += 1;
        stats.label_generation = generation;
        stats.labels = matrix.len();
        stats.text = text.stats();
    }
    *shared.labels.lock().unwrap_or_else(|e| e.into_inner()) =
        Arc::new(ActiveLabels { matrix, generation });
    outputs.label_info(info);
}

fn diagnostics_loop(shared: &Shared, config: &NodeConfig, name: &str, outputs: &dyn Outputs) {
    loop {
        let stopping = shared.stopping.lock().unwrap_or_else(|e| e.into_inner());
        let (stopping, _) = shared
            .stop_signal
            .wait_timeout_while(stopping, config.diagnostics_period, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        if *stopping {
            return;
        }
        drop(stopping);
        let status = shared.stats().report(name);
        outputs.diagnostics(
            Header {
                stamp: Stamp::now(),
                frame_id: String::new(),
            },
            status,
        );
    }
}
