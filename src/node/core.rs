//! The node itself, without a transport: three threads around the engine.
//!
//! ```text
//!  adapter ── offer_image(camera) ──> FrameQueues, one per camera (newest: one waits, a
//!                                 │ replaced frame counts as dropped; every: in order up
//!                                 │ to queue_size)
//!                                 │ frame thread: take a batch (the oldest frame of every
//!                                 │   camera that has one, at most max_batch, cameras
//!                                 │   taking turns) ─> to_rgb ─> ImageEncoder (one pass)
//!                                 │   ─> each camera's FrameStep against the current
//!                                 │      Arc<Active> (phrases + policy: one snapshot per batch)
//!                                 │   ─> Classification + matches on each frame's camera
//!  adapter ── query / parameter set ──> channel ──> parameter thread: the candidate
//!       parameters, validated; new phrases through the TextEmbedder (cache) ─> swap
//!       Arc<Active> atomically ─> LabelInfo, parameter event; a set gets its answer
//!                                   diagnostics thread: every period ─> DiagnosticStatus
//! ```
//!
//! With `wait_for_fresh_frame`, a frame already older than half its camera's period when
//! the encoder frees up gives way to that camera's next frame if it arrives within the
//! period (only when it is the one frame waiting: a batch of several cameras never waits
//! for one): the result is then fresher, and never older than the newest frame waiting at
//! that moment. `max_rate` holds each camera back on its own; smoothing and hysteresis
//! are per camera (a result never uses another camera's pixels or state).
//! Text never runs on the frame thread; a phrase switch is one pointer swap, so a result
//! is scored against exactly one phrase set. Nothing a message contains can stop a thread:
//! bad frames and bad queries are counted, logged (rate-limited) and skipped.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::clock::{since_zero, RosClock};
use super::frame_queue::{FramePolicy, FrameQueues, Taken};
use super::messages::{
    Classification, Detections, FrameResult, Header, Heatmap, ImageInput, LabelInfo, Outputs, Stamp,
};
use super::params::{spec, NodeConfig, NodeParams};
use super::stats::{Health, NodeStats};
use crate::engine::locate::locate_image;
use crate::engine::step::FrameStep;
use crate::image::RejectReason;
use crate::locate::LocateSettings;
use crate::model::ImageEncoder;
use crate::text::{parse_phrases, LabelMatrix, TextEmbedder};
use serde_json::Value;

/// Regions encoded per pass when localising.
const LOCATE_BATCH: usize = 8;

/// Cameras slower than this period get no wait for a fresher frame.
const MAX_FRESH_WAIT: Duration = Duration::from_millis(250);
/// Longest query message accepted (checked before it is split into phrases): the most
/// phrases, each of the most characters (4 bytes each in UTF-8) and a separator.
pub const MAX_QUERY_BYTES: usize =
    super::params::MAX_PHRASES * (crate::text::phrases::MAX_PHRASE_CHARS * 4 + 2);

/// How often the frame thread looks at the simulated clock while `max_rate` holds it.
const SIM_TIME_POLL: Duration = Duration::from_millis(5);

/// How often a repeated warning of one kind may be logged.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// What frames are scored with: the phrase set and the configuration (thresholds,
/// smoothing, rates), replaced whole between frames, never edited.
pub struct Active {
    pub matrix: LabelMatrix,
    /// Phrase set number: smoothing and hysteresis restart when it changes.
    pub generation: u64,
    pub config: NodeConfig,
}

/// One camera of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Camera {
    /// Its name in `cameras`; `None` for the single-camera interface.
    pub name: Option<String>,
    /// Its diagnostic status name (conventionally `node name: what`).
    pub status_name: String,
}

/// What the core needs: the parameters, their checked configuration and the engine's two
/// halves.
pub struct CoreSetup {
    pub params: NodeParams,
    pub config: NodeConfig,
    pub image: ImageEncoder,
    pub text: TextEmbedder,
    /// The label matrix of `config.phrases` (built before start, so bad labels stop the start).
    pub labels: LabelMatrix,
    /// The cameras, in the order of the `cameras` parameter (one for the single camera).
    pub cameras: Vec<Camera>,
}

/// Locks `m`, also after a thread panicked while holding it (every value guarded here
/// stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    queues: FrameQueues<ImageInput>,
    cameras: Vec<Camera>,
    /// `None` while the engine loads.
    active: Mutex<Option<Arc<Active>>>,
    /// The parameters' current values (written by the parameter thread only).
    params: Mutex<NodeParams>,
    stats: Mutex<NodeStats>,
    stopping: Mutex<bool>,
    stop_signal: Condvar,
    /// The node's threads, joined at shutdown.
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Why the engine could not be loaded.
    failure: Mutex<Option<String>>,
    /// ROS time: the system clock, or `/clock` with `use_sim_time`.
    clock: RosClock,
}

impl Shared {
    fn spawn(&self, name: &str, f: Box<dyn FnOnce() + Send>) {
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .expect("spawning a node thread");
        lock(&self.workers).push(handle);
    }

    fn stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    /// Waits `timeout` or until the node stops; true if it is stopping.
    fn wait_or_stop(&self, timeout: Duration) -> bool {
        let stopping = lock(&self.stopping);
        let (stopping, _) = self
            .stop_signal
            .wait_timeout_while(stopping, timeout, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *stopping
    }

    fn stats(&self) -> MutexGuard<'_, NodeStats> {
        lock(&self.stats)
    }

    fn params(&self) -> MutexGuard<'_, NodeParams> {
        lock(&self.params)
    }

    fn active(&self) -> Option<Arc<Active>> {
        lock(&self.active).clone()
    }

    /// The phrases and policy frames are scored with; only called once loaded.
    fn loaded(&self) -> Arc<Active> {
        self.active().expect("the engine is loaded")
    }
}

/// One answer per parameter of a non-atomic set, or one for an atomic set: `Err` holds
/// the reason the change was refused (the old values stay).
pub type SetResults = Vec<Result<(), String>>;

/// Work for the parameter thread, in arrival order.
enum Control {
    /// A phrase list from `~/query` (`;` or newline separated): sets `labels`.
    Query(String),
    /// A parameter set; `atomic`: all of them or none.
    Set {
        changes: Vec<(String, Value)>,
        atomic: bool,
        reply: Sender<SetResults>,
    },
}

/// The running node core. Dropping it (or [`NodeCore::shutdown`]) stops its threads.
pub struct NodeCore {
    shared: Arc<Shared>,
    control: Option<Sender<Control>>,
    /// Warnings about frames refused on arrival (the transport's thread).
    arrival_throttle: Mutex<Throttle>,
}

fn label_info(stamp: Stamp, labels: &LabelMatrix, threshold: f32) -> LabelInfo {
    LabelInfo {
        header: Header {
            stamp,
            frame_id: String::new(),
        },
        class_names: labels.labels.clone(),
        threshold,
    }
}

/// Loads the engine (in the parameter thread, so the node takes images and queries while
/// it loads).
type Loader = Box<dyn FnOnce() -> Result<CoreSetup, String> + Send>;

impl NodeCore {
    /// Starts the node on an engine already loaded: publishes LabelInfo and starts taking
    /// frames at once.
    pub fn start(setup: CoreSetup, outputs: Arc<dyn Outputs>) -> NodeCore {
        let (params, cameras) = (setup.params.clone(), setup.cameras.clone());
        NodeCore::spawn(params, cameras, outputs, Box::new(move || Ok(setup)))
    }

    /// Starts the node before its model is loaded: images and queries are taken (the
    /// newest image waits, queries and parameter sets queue) and diagnostics say
    /// `loading` while the parameter thread loads the engine; then LabelInfo goes out,
    /// the queued work applies and frames are scored. A load that fails is reported by
    /// [`NodeCore::start_failure`].
    pub fn start_loading(plan: super::NodePlan, outputs: Arc<dyn Outputs>) -> NodeCore {
        let (params, cameras) = (plan.params.clone(), plan.cameras());
        NodeCore::spawn(
            params,
            cameras,
            outputs,
            Box::new(move || plan.load_engine().map_err(|e| e.to_string())),
        )
    }

    fn spawn(
        params: NodeParams,
        cameras: Vec<Camera>,
        outputs: Arc<dyn Outputs>,
        loader: Loader,
    ) -> NodeCore {
        let clock = RosClock::new(params.use_sim_time);
        assert!(!cameras.is_empty(), "a node has at least one camera");
        let shared = Arc::new(Shared {
            // Checked before start; a default cannot fail.
            queues: FrameQueues::new(
                cameras.len(),
                params.frame_policy().unwrap_or(FramePolicy::Newest),
            ),
            stats: Mutex::new(NodeStats::new(cameras.len())),
            cameras,
            active: Mutex::new(None),
            params: Mutex::new(params),
            stopping: Mutex::new(false),
            stop_signal: Condvar::new(),
            workers: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            clock,
        });
        let (control_tx, control_rx) = mpsc::channel();
        shared.spawn("clip-params", {
            let (shared, outputs) = (shared.clone(), outputs.clone());
            Box::new(move || load_then_control(shared, loader, control_rx, outputs))
        });
        shared.spawn("clip-diagnostics", {
            let shared = shared.clone();
            Box::new(move || diagnostics_loop(&shared, outputs.as_ref()))
        });
        NodeCore {
            shared,
            control: Some(control_tx),
            arrival_throttle: Mutex::new(Throttle::default()),
        }
    }

    /// Why loading the engine failed, once it has (the node cannot run then).
    pub fn start_failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// Whether the engine is loaded and frames are scored.
    pub fn ready(&self) -> bool {
        self.shared.active().is_some()
    }

    /// The node's cameras.
    pub fn cameras(&self) -> &[Camera] {
        &self.shared.cameras
    }

    /// Hands a received image of `camera` (its index in [`NodeCore::cameras`]) to that
    /// camera's frame queue; a frame the policy drops is counted.
    pub fn offer_image(&self, camera: usize, input: ImageInput) {
        let received = input.received;
        let frame_id = input.header.frame_id.clone();
        // A malformed frame is counted and skipped here: it never takes a place in the
        // queue, so it cannot push out a good frame waiting there.
        if let Err(e) = input.pixels.check() {
            let mut stats = self.shared.stats();
            let camera_stats = &mut stats.cameras[camera];
            camera_stats.arrived(received, &frame_id);
            camera_stats.reject(e.reason());
            drop(stats);
            lock(&self.arrival_throttle).warn(e.reason().name(), || {
                format!("frame {frame_id:?} skipped: {e}")
            });
            return;
        }
        let replaced = self.shared.queues.offer(camera, input);
        let mut stats = self.shared.stats();
        let camera_stats = &mut stats.cameras[camera];
        camera_stats.arrived(received, &frame_id);
        if replaced.is_some() {
            camera_stats.dropped += 1;
        }
    }

    /// Updates what the transport knows about the node's peers (shown in diagnostics).
    pub fn update_wire(&self, update: impl FnOnce(&mut super::wire::WireHealth)) {
        update(&mut self.shared.stats().wire);
    }

    /// Counts a message of `camera` the adapter could not even decode into an image.
    pub fn reject_message(&self, camera: usize, reason: RejectReason) {
        let mut stats = self.shared.stats();
        let camera_stats = &mut stats.cameras[camera];
        camera_stats.received += 1;
        camera_stats.last_arrival = Some(Instant::now());
        camera_stats.reject(reason);
    }

    /// Hands a phrase list (`;` or newline separated) to the parameter thread: it becomes
    /// the `labels` parameter if it passes the same checks.
    pub fn query(&self, text: String) {
        if text.len() > MAX_QUERY_BYTES {
            let why = format!(
                "query of {} bytes is over the limit of {MAX_QUERY_BYTES} bytes ({} phrases of \
                 at most {} characters)",
                text.len(),
                super::params::MAX_PHRASES,
                crate::text::phrases::MAX_PHRASE_CHARS
            );
            log::warn!("query rejected: {why}");
            let mut stats = self.shared.stats();
            stats.queries_rejected += 1;
            stats.last_query_rejection = Some(why);
            return;
        }
        if let Some(tx) = &self.control {
            // Fails only once the parameter thread has stopped, at shutdown.
            let _ = tx.send(Control::Query(text));
        }
    }

    /// Sets parameters (name, untyped value) and waits until they apply or are refused:
    /// checked as at start, read-only ones refused, new phrases encoded, then swapped in
    /// between two frames. `atomic`: one answer, all or nothing; otherwise one answer per
    /// parameter, each applied on its own, in order.
    pub fn set_parameters(&self, changes: Vec<(String, Value)>, atomic: bool) -> SetResults {
        let n = if atomic { 1 } else { changes.len() };
        let (reply, answer) = mpsc::channel();
        let sent = self.control.as_ref().is_some_and(|tx| {
            tx.send(Control::Set {
                changes,
                atomic,
                reply,
            })
            .is_ok()
        });
        let stopped = || vec![Err("the node is shutting down".to_string()); n];
        if !sent {
            return stopped();
        }
        answer.recv().unwrap_or_else(|_| stopped())
    }

    /// The parameters' current values.
    pub fn parameters(&self) -> NodeParams {
        self.shared.params().clone()
    }

    /// A copy of the counters.
    pub fn stats(&self) -> NodeStats {
        self.shared.stats().clone()
    }

    /// Whether the node follows `/clock` (`use_sim_time`).
    pub fn uses_sim_time(&self) -> bool {
        self.shared.clock.is_sim()
    }

    /// A `/clock` message arrived.
    pub fn set_sim_time(&self, t: Stamp) {
        self.shared.clock.set_sim_time(t);
    }

    /// ROS time now, as the node stamps what it publishes itself.
    pub fn now(&self) -> Stamp {
        self.shared.clock.now()
    }

    /// The phrases results are currently scored against (none while loading).
    pub fn labels(&self) -> Vec<String> {
        self.shared
            .active()
            .map(|a| a.matrix.labels.clone())
            .unwrap_or_default()
    }

    /// Stops the threads (after the frame being encoded, if any) and waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *lock(&self.shared.stopping) = true;
        self.shared.stop_signal.notify_all();
        self.shared.queues.close();
        self.control.take();
        // The parameter thread may add the frame thread while it is joined: take until none
        // is left.
        loop {
            let worker = lock(&self.shared.workers).pop();
            let Some(worker) = worker else { break };
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

fn frame_loop(shared: &Shared, mut image: ImageEncoder, outputs: &dyn Outputs) {
    let cameras = shared.cameras.len();
    let mut throttle = Throttle::default();
    let policy = shared.loaded().config.policy.clone();
    let mut steps = vec![FrameStep::new(policy); cameras];
    // With max_rate, when each camera may be encoded again (with use_sim_time, on the ROS
    // clock: time since zero).
    let mut next_start = vec![Instant::now(); cameras];
    let mut next_sim = vec![Duration::ZERO; cameras];
    loop {
        // With max_rate, a camera waits out its interval first: its frames arriving
        // meanwhile replace each other in its queue (newest) or wait there (every).
        let now = Instant::now();
        let sim_now = shared
            .clock
            .is_sim()
            .then(|| since_zero(shared.clock.now()));
        let mut deadline = now + Duration::from_millis(500);
        let eligible: Vec<bool> = (0..cameras)
            .map(|c| {
                if next_start[c] > now {
                    deadline = deadline.min(next_start[c]);
                    return false;
                }
                if sim_now.is_some_and(|t| t < next_sim[c]) {
                    deadline = deadline.min(now + SIM_TIME_POLL);
                    return false;
                }
                true
            })
            .collect();
        if !eligible.contains(&true) {
            if shared.wait_or_stop(deadline.saturating_duration_since(now)) {
                return;
            }
            continue;
        }
        let max_batch = shared.loaded().config.max_batch;
        let mut batch = match shared
            .queues
            .take_batch_until(&eligible, max_batch, deadline)
        {
            Taken::Value(batch) => batch,
            Taken::TimedOut => continue,
            Taken::Closed => return,
        };
        let active = shared.loaded();
        let config = &active.config;
        // A batch of several cameras' frames never waits for one camera's next frame: the
        // others' results would only get older (and the encoder would idle).
        if config.wait_for_fresh_frame
            && config.frame_policy == FramePolicy::Newest
            && batch.len() == 1
        {
            for (camera, input) in &mut batch {
                // The waiting frame is already more than half a period old: the camera's
                // next one is due soon, so wait for it (until 1.25 periods after this one
                // arrived) and encode the fresher frame instead.
                let period = shared.stats().cameras[*camera].arrivals.period();
                let Some(period) = period.filter(|p| *p <= MAX_FRESH_WAIT) else {
                    continue;
                };
                if input.received.elapsed() > period / 2 {
                    let until = input.received + period + period / 4;
                    match shared.queues.take_until(*camera, until) {
                        Taken::Value(newer) => {
                            shared.stats().cameras[*camera].dropped += 1;
                            *input = newer;
                        }
                        Taken::TimedOut => {}
                        Taken::Closed => return,
                    }
                }
            }
        }
        if let Some(interval) = config.min_frame_interval {
            for (camera, _) in &batch {
                if shared.clock.is_sim() {
                    next_sim[*camera] = since_zero(shared.clock.now()) + interval;
                } else {
                    next_start[*camera] = Instant::now() + interval;
                }
            }
        }
        let taken: Vec<usize> = batch.iter().map(|(camera, _)| *camera).collect();
        // A bug that panics on some frame must not stop the frames that follow.
        let processed = catch_unwind(AssertUnwindSafe(|| {
            process_batch(
                shared,
                &mut image,
                &mut steps,
                &mut throttle,
                batch,
                outputs,
            )
        }));
        if processed.is_err() {
            let mut stats = shared.stats();
            for camera in taken {
                stats.cameras[camera].reject(RejectReason::Panic);
            }
            drop(stats);
            log::error!("a batch of frames made the frame thread panic; it was skipped");
        }
    }
}

/// Decodes the frames of a batch, encodes them in one pass, scores each with its camera's
/// step and publishes each result on its camera's topics; a bad frame is counted for its
/// camera and skipped, the others go on.
fn process_batch(
    shared: &Shared,
    image: &mut ImageEncoder,
    steps: &mut [FrameStep],
    throttle: &mut Throttle,
    batch: Vec<(usize, ImageInput)>,
    outputs: &dyn Outputs,
) {
    let mut frames = Vec::with_capacity(batch.len());
    let mut rgbs = Vec::with_capacity(batch.len());
    for (camera, input) in &batch {
        match input.pixels.to_rgb() {
            Ok(rgb) => {
                frames.push((*camera, input));
                rgbs.push(rgb);
            }
            Err(e) => {
                shared.stats().cameras[*camera].reject(e.reason());
                throttle.warn(e.reason().name(), || {
                    format!("frame {:?} skipped: {e}", input.header.frame_id)
                });
            }
        }
    }
    if frames.is_empty() {
        return;
    }
    let started = Instant::now();
    let embeddings = match image.encode(&rgbs) {
        Ok(e) => e,
        Err(e) => {
            let reason = RejectReason::EncoderError;
            let mut stats = shared.stats();
            for (camera, _) in &frames {
                stats.cameras[*camera].encoder_failed(e.to_string());
            }
            drop(stats);
            throttle.warn(reason.name(), || {
                format!("{} frames skipped: image encoder: {e}", frames.len())
            });
            return;
        }
    };
    assert_eq!(embeddings.len(), frames.len(), "one embedding per image");
    // Each frame's share of the batch's pass (preprocessing included).
    let encoded = frames.len();
    let encoder_ms = started.elapsed().as_secs_f64() * 1e3 / encoded as f64;
    // One snapshot of the phrases and policy for everything this batch publishes.
    let active = shared.loaded();
    for (((camera, input), embedding), rgb) in frames.into_iter().zip(embeddings).zip(rgbs) {
        let step = &mut steps[camera];
        if step.policy() != &active.config.policy {
            step.set_policy(active.config.policy.clone());
        }
        let matches = step.step(&active.matrix, active.generation, &embedding);
        let header = input.header.clone();
        // Localisation: after the step (its matched flags pick what is published), before
        // the results go out, so a frame's messages all leave together.
        let mut located = None;
        if active.config.localize {
            let started = Instant::now();
            match locate_image(
                image,
                LOCATE_BATCH,
                &rgb,
                &active.matrix,
                &LocateSettings::default(),
            ) {
                Ok(locations) => located = Some((locations, started.elapsed())),
                Err(e) => throttle.warn("localization", || {
                    format!("frame {:?}: localization skipped: {e}", header.frame_id)
                }),
            }
        }
        drop(rgb);
        let latency_ms = input.received.elapsed().as_secs_f64() * 1e3;
        outputs.classification(camera, Classification::of(header.clone(), &matches));
        if let Some((locations, _)) = &located {
            outputs.detections(
                camera,
                Detections::of(
                    header.clone(),
                    &matches,
                    &locations
                        .iter()
                        .map(|l| l.named(&active.matrix.labels))
                        .collect::<Vec<_>>(),
                ),
            );
            if active.config.publish_heatmap {
                if let Some(map) = Heatmap::of(header.clone(), locations) {
                    outputs.heatmap(camera, map);
                }
            }
        }
        outputs.matches(
            camera,
            &FrameResult {
                stamp: header.stamp,
                frame_id: header.frame_id,
                camera: shared.cameras[camera].name.clone(),
                matches,
                latency_ms,
                encoder_ms,
            },
        );
        let mut stats = shared.stats();
        let camera_stats = &mut stats.cameras[camera];
        camera_stats.encoder_failures_in_a_row = 0;
        camera_stats.processed += 1;
        camera_stats.latency_ms.push(latency_ms);
        camera_stats.encoder_ms.push(encoder_ms);
        if let Some((_, took)) = located {
            camera_stats.locate_ms.push(took.as_secs_f64() * 1e3);
        }
    }
    let mut stats = shared.stats();
    stats.batches += 1;
    stats.batched_frames += encoded as u64;
}

/// The parameter thread: loads the engine, then starts the frame thread and handles
/// queries and parameter sets (those that came during loading first).
fn load_then_control(
    shared: Arc<Shared>,
    loader: Loader,
    control: Receiver<Control>,
    outputs: Arc<dyn Outputs>,
) {
    let started = Instant::now();
    let setup = match catch_unwind(AssertUnwindSafe(loader)) {
        Ok(Ok(setup)) => setup,
        Ok(Err(why)) => return fail(&shared, why),
        Err(_) => return fail(&shared, "loading the engine panicked".into()),
    };
    if shared.stopping() {
        return;
    }
    let CoreSetup {
        config,
        image,
        text,
        labels,
        ..
    } = setup;
    // Read before taking the stats lock: /proc/cpuinfo, and the kernels' self-checks.
    let (cpu, kernels) = (crate::cpu::cpu_features(), crate::cpu::engine_kernels());
    log::info!("cpu: {cpu}; {kernels}");
    {
        let mut stats = shared.stats();
        stats.labels = labels.len();
        stats.precision = image.precision().name();
        stats.cpu = cpu;
        stats.kernels = kernels;
        stats.text = text.stats();
    }
    outputs.label_info(label_info(
        shared.clock.now(),
        &labels,
        config.policy.thresholds.default,
    ));
    *lock(&shared.active) = Some(Arc::new(Active {
        matrix: labels,
        generation: 0,
        config,
    }));
    shared.spawn("clip-frames", {
        let (shared, outputs) = (shared.clone(), outputs.clone());
        Box::new(move || frame_loop(&shared, image, outputs.as_ref()))
    });
    log::info!(
        "model loaded in {:.2} s; scoring frames",
        started.elapsed().as_secs_f64()
    );
    control_loop(&shared, text, control, outputs.as_ref());
}

fn fail(shared: &Shared, why: String) {
    log::error!("{why}");
    *lock(&shared.failure) = Some(why);
}

fn control_loop(
    shared: &Shared,
    mut text: TextEmbedder,
    control: Receiver<Control>,
    outputs: &dyn Outputs,
) {
    while let Ok(first) = control.recv() {
        // Everything waiting is handled in order, except that only the newest query
        // matters: each one replaces the whole phrase list.
        let mut batch = vec![first];
        batch.extend(control.try_iter());
        let newest_query = batch.iter().rposition(|c| matches!(c, Control::Query(_)));
        for (i, work) in batch.into_iter().enumerate() {
            match work {
                Control::Query(_) if Some(i) != newest_query => {
                    shared.stats().queries_superseded += 1;
                }
                Control::Query(query) => {
                    let phrases = Value::from(parse_phrases(&query));
                    let applied = guarded(|| {
                        apply(shared, &mut text, &[("labels".into(), phrases)], outputs)
                    });
                    let mut stats = shared.stats();
                    match applied {
                        Ok(()) => stats.queries_applied += 1,
                        Err(why) => {
                            stats.queries_rejected += 1;
                            stats.last_query_rejection = Some(why.clone());
                            drop(stats);
                            log::warn!("query rejected: {why}; the current phrases stay");
                        }
                    }
                }
                Control::Set {
                    changes,
                    atomic,
                    reply,
                } => {
                    let results: SetResults = if atomic {
                        vec![guarded(|| apply(shared, &mut text, &changes, outputs))]
                    } else {
                        changes
                            .iter()
                            .map(|c| {
                                guarded(|| {
                                    apply(shared, &mut text, std::slice::from_ref(c), outputs)
                                })
                            })
                            .collect()
                    };
                    for (result, change) in results.iter().zip(&changes) {
                        if let Err(why) = result {
                            log::warn!("parameter set refused: {why}");
                        } else if !atomic {
                            log::info!("parameter `{}` set to {}", change.0, change.1);
                        }
                    }
                    if atomic && results[0].is_ok() {
                        log::info!("parameters set atomically: {changes:?}");
                    }
                    // The caller may have given up waiting; nothing to do then.
                    let _ = reply.send(results);
                }
            }
        }
    }
}

/// Runs one change, turning a panic into a refusal (the old values stay).
fn guarded(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("a parameter change made the parameter thread panic; it was refused");
        Err("internal error while applying the change".into())
    })
}

/// Applies `changes` together or not at all: the candidate parameters are checked as at
/// start, new phrases or prompts go through the text encoder (cache first), and the new
/// phrases and configuration replace the old in one swap, between two frames. Publishes
/// LabelInfo when the phrases or the threshold changed and a parameter event for what
/// changed.
fn apply(
    shared: &Shared,
    text: &mut TextEmbedder,
    changes: &[(String, Value)],
    outputs: &dyn Outputs,
) -> Result<(), String> {
    let old = shared.params().clone();
    let mut candidate = old.clone();
    for (name, value) in changes {
        let spec = spec(name).ok_or_else(|| format!("parameter `{name}` is not declared"))?;
        if spec.read_only {
            return Err(format!(
                "parameter `{name}` is read-only (set it at start: params file or -p)"
            ));
        }
        candidate.set(name, value).map_err(|e| e.to_string())?;
    }
    let config = candidate.validate().map_err(|e| e.to_string())?;
    let active = shared.loaded();
    let new_phrases = config.phrases != active.matrix.labels
        || candidate.template != old.template
        || candidate.ensemble != old.ensemble;
    let (matrix, generation) = if new_phrases {
        let started = Instant::now();
        let matrix = text.label_matrix(&config.phrases, &config.prompts);
        if !config.keep_text_encoder && text.encoder_loaded() {
            text.unload_encoder();
            super::release_freed_memory();
        }
        let matrix = matrix.map_err(|e| format!("text encoder: {e}"))?;
        let generation = active.generation + 1;
        log::info!(
            "phrases switched to {:?} (set {generation}, text side {:.0} ms)",
            matrix.labels,
            started.elapsed().as_secs_f64() * 1e3
        );
        (matrix, generation)
    } else {
        (active.matrix.clone(), active.generation)
    };
    let (before, after) = (old.values(), candidate.values());
    let changed: Vec<(&'static str, Value)> = after
        .into_iter()
        .filter(|(name, value)| before.get(name) != Some(value))
        .collect();
    let threshold = config.policy.thresholds.default;
    let info = (new_phrases || threshold != active.config.policy.thresholds.default)
        .then(|| label_info(shared.clock.now(), &matrix, threshold));
    {
        let mut stats = shared.stats();
        stats.label_generation = generation;
        stats.labels = matrix.len();
        stats.text = text.stats();
    }
    *shared.params() = candidate;
    if config.frame_policy != active.config.frame_policy {
        let dropped = shared.queues.set_policy(config.frame_policy);
        let mut stats = shared.stats();
        for (camera, dropped) in stats.cameras.iter_mut().zip(dropped) {
            camera.dropped += dropped as u64;
        }
    }
    *lock(&shared.active) = Some(Arc::new(Active {
        matrix,
        generation,
        config,
    }));
    if let Some(info) = info {
        outputs.label_info(info);
    }
    if !changed.is_empty() {
        outputs.parameters_changed(shared.clock.now(), &changed);
    }
    Ok(())
}

fn diagnostics_loop(shared: &Shared, outputs: &dyn Outputs) {
    let names: Vec<String> = shared
        .cameras
        .iter()
        .map(|c| c.status_name.clone())
        .collect();
    loop {
        let health = {
            let params = shared.params();
            Health {
                period: Duration::from_secs_f64(params.diagnostics_period),
                min_rate: params.min_rate,
                loading: shared.active().is_none(),
            }
        };
        if shared.wait_or_stop(health.period) {
            return;
        }
        let statuses = shared.stats().report(&names, health);
        outputs.diagnostics(
            Header {
                stamp: shared.clock.now(),
                frame_id: String::new(),
            },
            statuses,
        );
    }
}
