//! The node itself, without a transport: three threads around the engine.
//!
//! ```text
//!  adapter ── offer_image ──> FrameQueue (newest: one waits, a replaced frame counts as
//!                                 │ dropped; every: in order up to queue_size)
//!                                 │ frame thread: take ─> to_rgb ─> ImageEncoder
//!                                 │   ─> engine's FrameStep against the current
//!                                 │      Arc<Active> (phrases + policy: one snapshot per frame)
//!                                 │   ─> Classification + matches
//!  adapter ── query / parameter set ──> channel ──> parameter thread: the candidate
//!       parameters, validated; new phrases through the TextEmbedder (cache) ─> swap
//!       Arc<Active> atomically ─> LabelInfo, parameter event; a set gets its answer
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

use super::clock::{since_zero, RosClock};
use super::frame_queue::{FramePolicy, FrameQueue, Taken};
use super::messages::{Classification, FrameResult, Header, ImageInput, LabelInfo, Outputs, Stamp};
use super::params::{spec, NodeConfig, NodeParams};
use super::stats::{Health, NodeStats};
use crate::engine::step::FrameStep;
use crate::image::RejectReason;
use crate::model::ImageEncoder;
use crate::text::{parse_phrases, LabelMatrix, TextEmbedder};
use serde_json::Value;

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

/// What the core needs: the parameters, their checked configuration and the engine's two
/// halves.
pub struct CoreSetup {
    pub params: NodeParams,
    pub config: NodeConfig,
    pub image: ImageEncoder,
    pub text: TextEmbedder,
    /// The label matrix of `config.phrases` (built before start, so bad labels stop the start).
    pub labels: LabelMatrix,
    /// The diagnostic status name (conventionally `node_fqn: what`).
    pub status_name: String,
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
    slot: FrameQueue<ImageInput>,
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
        let (params, name) = (setup.params.clone(), setup.status_name.clone());
        NodeCore::spawn(params, name, outputs, Box::new(move || Ok(setup)))
    }

    /// Starts the node before its model is loaded: images and queries are taken (the
    /// newest image waits, queries and parameter sets queue) and diagnostics say
    /// `loading` while the parameter thread loads the engine; then LabelInfo goes out,
    /// the queued work applies and frames are scored. A load that fails is reported by
    /// [`NodeCore::start_failure`].
    pub fn start_loading(plan: super::NodePlan, outputs: Arc<dyn Outputs>) -> NodeCore {
        let (params, name) = (plan.params.clone(), plan.status_name(None));
        NodeCore::spawn(
            params,
            name,
            outputs,
            Box::new(move || plan.load_engine().map_err(|e| e.to_string())),
        )
    }

    fn spawn(
        params: NodeParams,
        status_name: String,
        outputs: Arc<dyn Outputs>,
        loader: Loader,
    ) -> NodeCore {
        let clock = RosClock::new(params.use_sim_time);
        let shared = Arc::new(Shared {
            // Checked before start; a default cannot fail.
            slot: FrameQueue::new(params.frame_policy().unwrap_or(FramePolicy::Newest)),
            active: Mutex::new(None),
            params: Mutex::new(params),
            stats: Mutex::new(NodeStats::default()),
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
            Box::new(move || diagnostics_loop(&shared, &status_name, outputs.as_ref()))
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

    /// Hands a received image to the frame queue; a frame the policy drops is counted.
    pub fn offer_image(&self, input: ImageInput) {
        let received = input.received;
        let frame_id = input.header.frame_id.clone();
        // A malformed frame is counted and skipped here: it never takes a place in the
        // queue, so it cannot push out a good frame waiting there.
        if let Err(e) = input.pixels.check() {
            let mut stats = self.shared.stats();
            stats.arrived(received, &frame_id);
            stats.reject(e.reason());
            drop(stats);
            lock(&self.arrival_throttle).warn(e.reason().name(), || {
                format!("frame {frame_id:?} skipped: {e}")
            });
            return;
        }
        let replaced = self.shared.slot.offer(input);
        let mut stats = self.shared.stats();
        stats.arrived(received, &frame_id);
        if replaced.is_some() {
            stats.dropped += 1;
        }
    }

    /// Updates what the transport knows about the node's peers (shown in diagnostics).
    pub fn update_wire(&self, update: impl FnOnce(&mut super::wire::WireHealth)) {
        update(&mut self.shared.stats().wire);
    }

    /// Counts a message the adapter could not even decode into an image.
    pub fn reject_message(&self, reason: RejectReason) {
        let mut stats = self.shared.stats();
        stats.received += 1;
        stats.last_arrival = Some(Instant::now());
        stats.reject(reason);
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
        self.shared.slot.close();
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
    let mut throttle = Throttle::default();
    let mut step = FrameStep::new(shared.loaded().config.policy.clone());
    let mut next_start = Instant::now();
    // With use_sim_time, max_rate spaces frames on the ROS clock (time since zero).
    let mut next_sim = Duration::ZERO;
    loop {
        // With max_rate, wait out the interval first: frames arriving meanwhile replace
        // each other in the queue (newest) or wait in it (every).
        if let Some(wait) = next_start.checked_duration_since(Instant::now()) {
            if shared.wait_or_stop(wait) {
                return;
            }
        }
        while shared.clock.is_sim() && since_zero(shared.clock.now()) < next_sim {
            if shared.wait_or_stop(SIM_TIME_POLL) {
                return;
            }
        }
        let mut input = match shared.slot.take(Duration::from_millis(500)) {
            Taken::Value(input) => input,
            Taken::TimedOut => continue,
            Taken::Closed => return,
        };
        let active = shared.loaded();
        let config = &active.config;
        if config.wait_for_fresh_frame && config.frame_policy == FramePolicy::Newest {
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
            if shared.clock.is_sim() {
                next_sim = since_zero(shared.clock.now()) + interval;
            } else {
                next_start = Instant::now() + interval;
            }
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
            shared.stats().encoder_failed(e.to_string());
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
    // One snapshot of the phrases and policy for everything this frame publishes.
    let active = shared.loaded();
    if step.policy() != &active.config.policy {
        step.set_policy(active.config.policy.clone());
    }
    let matches = step.step(&active.matrix, active.generation, &embedding);
    let latency_ms = input.received.elapsed().as_secs_f64() * 1e3;
    let header = input.header;
    outputs.classification(Classification::of(header.clone(), &matches));
    outputs.matches(&FrameResult {
        stamp: header.stamp,
        frame_id: header.frame_id,
        camera: None,
        matches,
        latency_ms,
        encoder_ms,
    });
    let mut stats = shared.stats();
    stats.encoder_failures_in_a_row = 0;
    stats.processed += 1;
    stats.latency_ms.push(latency_ms);
    stats.encoder_ms.push(encoder_ms);
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
        let dropped = shared.slot.set_policy(config.frame_policy);
        shared.stats().dropped += dropped as u64;
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

fn diagnostics_loop(shared: &Shared, name: &str, outputs: &dyn Outputs) {
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
        let status = shared.stats().report(name, health);
        outputs.diagnostics(
            Header {
                stamp: shared.clock.now(),
                frame_id: String::new(),
            },
            status,
        );
    }
}
