//! The node's counters and timing windows, and the `/diagnostics` status made from them:
//! frames received / processed / dropped / rejected by reason, processing rate, receive ->
//! publish latency percentiles, image-encoder time, and the text side's encoder calls and
//! cache hits (so a repeated query visibly costs no encoder call). Its level follows
//! diagnostic_updater's conventions: WARN for a camera that went quiet, a processing rate
//! under `min_rate` or newly rejected frames, ERROR for an encoder that keeps failing.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::messages::{DiagnosticStatus, Level};
use crate::image::RejectReason;
use crate::text::TextStats;

/// The last `cap` samples of a timing, in milliseconds.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<f64>,
    cap: usize,
}

impl Window {
    pub fn new(cap: usize) -> Self {
        Window {
            samples: VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub fn push(&mut self, ms: f64) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
    }

    /// The `q` quantile (0..=1, nearest rank), or `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// The camera's frame period, estimated from arrival times (exponential average of the
/// intervals; a gap over a second starts over).
#[derive(Debug, Clone, Default)]
pub struct ArrivalClock {
    last: Option<Instant>,
    period_s: f64,
    intervals: u32,
}

impl ArrivalClock {
    pub fn arrived(&mut self, at: Instant) {
        if let Some(last) = self.last {
            let dt = at.saturating_duration_since(last).as_secs_f64();
            if dt > 1.0 {
                self.intervals = 0;
            } else if self.intervals == 0 {
                self.period_s = dt;
                self.intervals = 1;
            } else {
                self.period_s += 0.1 * (dt - self.period_s);
                self.intervals = self.intervals.saturating_add(1);
            }
        }
        self.last = Some(at);
    }

    /// The estimated frame period, once five intervals were seen.
    pub fn period(&self) -> Option<Duration> {
        (self.intervals >= 5).then(|| Duration::from_secs_f64(self.period_s))
    }
}

/// Diagnostic periods without any frame after which the status turns WARN.
pub const STALE_PERIODS: u32 = 3;

/// Frames in a row the image encoder must fail on for the status to turn ERROR.
pub const ENCODER_FAILURES_FOR_ERROR: u32 = 3;

/// What the status is judged against, from the live parameters.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// The diagnostic period.
    pub period: Duration,
    /// Least processed frames/s while frames arrive (0: no check).
    pub min_rate: f64,
    /// The engine is still loading (frames wait; nothing is judged yet).
    pub loading: bool,
}

/// One camera's counters and timing windows.
#[derive(Debug, Clone)]
pub struct CameraStats {
    pub received: u64,
    pub processed: u64,
    /// Frames replaced in the waiting slot by a newer one before the encoder took them.
    pub dropped: u64,
    /// Frames that could not be used, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Receive -> publish time of processed frames.
    pub latency_ms: Window,
    /// Preprocessing + image encoder time of processed frames (a frame's share of its
    /// batch's forward pass).
    pub encoder_ms: Window,
    /// Localisation time of frames localised (`localize`): segmentation, the regions'
    /// encoder passes, the maps.
    pub locate_ms: Window,
    /// Arrival times of frames.
    pub arrivals: ArrivalClock,
    /// When the node started counting, and when the last frame arrived.
    pub started: Instant,
    pub last_arrival: Option<Instant>,
    /// The camera: `frame_id` of the newest frame.
    pub hardware_id: Option<String>,
    /// Frames in a row the image encoder failed on, and its last error.
    pub encoder_failures_in_a_row: u32,
    pub last_encoder_error: String,
    last_report: Option<(Instant, u64, u64)>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            received: 0,
            processed: 0,
            dropped: 0,
            rejected: BTreeMap::new(),
            latency_ms: Window::new(1000),
            encoder_ms: Window::new(1000),
            locate_ms: Window::new(1000),
            arrivals: ArrivalClock::default(),
            started: Instant::now(),
            last_arrival: None,
            hardware_id: None,
            encoder_failures_in_a_row: 0,
            last_encoder_error: String::new(),
            last_report: None,
        }
    }
}

impl CameraStats {
    pub fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts a frame that arrived from camera `frame_id`.
    pub fn arrived(&mut self, at: Instant, frame_id: &str) {
        self.received += 1;
        self.arrivals.arrived(at);
        self.last_arrival = Some(at);
        if self.hardware_id.as_deref() != Some(frame_id) {
            self.hardware_id = Some(frame_id.to_string());
        }
    }

    /// Counts a frame the image encoder failed on.
    pub fn encoder_failed(&mut self, error: String) {
        self.reject(RejectReason::EncoderError);
        self.encoder_failures_in_a_row += 1;
        self.last_encoder_error = error;
    }

    /// The rate since the previous report and the rejects since then; starts the next
    /// report's interval.
    fn since_last_report(&mut self, now: Instant) -> (f64, u64) {
        let rejected = self.rejected_total();
        let since = match self.last_report {
            Some((t, processed, rejects)) => {
                let secs = now.duration_since(t).as_secs_f64().max(1e-6);
                (
                    (self.processed - processed) as f64 / secs,
                    rejected - rejects,
                )
            }
            None => (0.0, rejected),
        };
        self.last_report = Some((now, self.processed, rejected));
        since
    }

    /// The camera's own part of its status (rate, quiet camera, rejects, encoder).
    fn report(&mut self, health: Health) -> CameraReport {
        let now = Instant::now();
        let (rate, new_rejects) = self.since_last_report(now);
        let mut values = vec![
            ("frames received".to_string(), self.received.to_string()),
            ("frames processed".into(), self.processed.to_string()),
            ("frames dropped".into(), self.dropped.to_string()),
            ("frames rejected".into(), self.rejected_total().to_string()),
        ];
        for (reason, n) in &self.rejected {
            values.push((format!("rejected {reason}"), n.to_string()));
        }
        values.extend([
            ("rate (Hz)".to_string(), format!("{rate:.2}")),
            (
                "input rate (Hz)".into(),
                self.arrivals
                    .period()
                    .map(|p| format!("{:.2}", 1.0 / p.as_secs_f64().max(1e-6)))
                    .unwrap_or_else(|| "-".into()),
            ),
            ("latency p50 (ms)".into(), ms(self.latency_ms.quantile(0.5))),
            (
                "latency p99 (ms)".into(),
                ms(self.latency_ms.quantile(0.99)),
            ),
            (
                "encoder median (ms)".into(),
                ms(self.encoder_ms.quantile(0.5)),
            ),
            (
                "encoder p99 (ms)".into(),
                ms(self.encoder_ms.quantile(0.99)),
            ),
            (
                "localization median (ms)".into(),
                ms(self.locate_ms.quantile(0.5)),
            ),
        ]);
        let mut problems: Vec<(Level, String)> = Vec::new();
        if self.encoder_failures_in_a_row >= ENCODER_FAILURES_FOR_ERROR {
            problems.push((
                Level::Error,
                format!(
                    "image encoder failed on the last {} frames: {}",
                    self.encoder_failures_in_a_row, self.last_encoder_error
                ),
            ));
        }
        let quiet_since = self.last_arrival.unwrap_or(self.started);
        let quiet = now.saturating_duration_since(quiet_since);
        if health.loading {
            // Nothing to judge yet: frames wait for the engine.
        } else if quiet > health.period * STALE_PERIODS {
            let what = if self.last_arrival.is_some() {
                "no image"
            } else {
                "no image yet"
            };
            problems.push((
                Level::Warn,
                format!("{what} for {:.1} s", quiet.as_secs_f64()),
            ));
        } else if health.min_rate > 0.0 && self.last_arrival.is_some() && rate < health.min_rate {
            problems.push((
                Level::Warn,
                format!(
                    "processing {rate:.1} frames/s, under min_rate {}",
                    health.min_rate
                ),
            ));
        }
        if new_rejects > 0 {
            problems.push((
                Level::Warn,
                format!("{new_rejects} frames rejected since the last report"),
            ));
        }
        CameraReport {
            rate,
            values,
            problems,
        }
    }
}

/// What a camera's own counters say in its status.
struct CameraReport {
    rate: f64,
    values: Vec<(String, String)>,
    problems: Vec<(Level, String)>,
}

/// Everything the node counts: per camera, and what the cameras share (phrases, text
/// side, engine, transport).
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// One per camera, in the order of the `cameras` parameter (one for the single
    /// camera).
    pub cameras: Vec<CameraStats>,
    pub queries_applied: u64,
    pub queries_rejected: u64,
    /// Queries replaced by a newer one before the text worker got to them.
    pub queries_superseded: u64,
    /// Increments each time the phrase set changes (0: the phrases the node started with).
    pub label_generation: u64,
    pub labels: usize,
    /// The image encoder graph the node runs (`int8` or `fp32`).
    pub precision: &'static str,
    /// The CPU and its vector extensions, and the matrix products the engine runs on it
    /// ([`crate::cpu`]): set once the engine is loaded.
    pub cpu: String,
    pub kernels: String,
    pub text: TextStats,
    /// Why the last rejected query was rejected.
    pub last_query_rejection: Option<String>,
    /// Image encoder passes, and the frames they encoded (several cameras' frames share
    /// a pass).
    pub batches: u64,
    pub batched_frames: u64,
    /// The transport's view of the node's peers (image publishers, incompatible QoS).
    pub wire: super::wire::WireHealth,
}

impl Default for NodeStats {
    /// One camera's.
    fn default() -> Self {
        NodeStats::new(1)
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

impl NodeStats {
    /// Counters for `cameras` cameras (at least one).
    pub fn new(cameras: usize) -> Self {
        NodeStats {
            cameras: vec![CameraStats::default(); cameras.max(1)],
            queries_applied: 0,
            queries_rejected: 0,
            queries_superseded: 0,
            label_generation: 0,
            labels: 0,
            precision: "",
            cpu: String::new(),
            kernels: String::new(),
            text: TextStats::default(),
            last_query_rejection: None,
            batches: 0,
            batched_frames: 0,
            wire: Default::default(),
        }
    }

    /// Frames rejected over all cameras.
    pub fn rejected_total(&self) -> u64 {
        self.cameras.iter().map(CameraStats::rejected_total).sum()
    }

    /// One diagnostic status per camera, `names[i]` for camera i; a camera's rate covers
    /// the time since the previous report. The camera's own counters and WARN rules,
    /// then what the cameras share (the engine, phrases, text side, transport).
    pub fn report(&mut self, names: &[String], health: Health) -> Vec<DiagnosticStatus> {
        let mut shared = vec![
            ("image encoder".to_string(), self.precision.to_string()),
            ("cpu".into(), self.cpu.clone()),
            ("matrix kernels".into(), self.kernels.clone()),
            (
                "frames per batch (mean)".into(),
                if self.batches == 0 {
                    "-".into()
                } else {
                    format!("{:.2}", self.batched_frames as f64 / self.batches as f64)
                },
            ),
            ("labels".into(), self.labels.to_string()),
            ("label generation".into(), self.label_generation.to_string()),
            ("queries applied".into(), self.queries_applied.to_string()),
            ("queries rejected".into(), self.queries_rejected.to_string()),
            (
                "last query rejected because".into(),
                self.last_query_rejection
                    .clone()
                    .unwrap_or_else(|| "-".into()),
            ),
            (
                "queries superseded".into(),
                self.queries_superseded.to_string(),
            ),
            (
                "text encoder calls".into(),
                self.text.encoder_calls.to_string(),
            ),
            (
                "text prompts encoded".into(),
                self.text.prompts_encoded.to_string(),
            ),
            ("text cache hits".into(), self.text.cache_hits.to_string()),
        ];
        shared.push(("min rate (Hz)".into(), format!("{:.2}", health.min_rate)));
        let wire_problems = self.wire.problems();
        self.wire.reported();
        let state = if health.loading { "loading" } else { "running" };
        self.cameras
            .iter_mut()
            .zip(names)
            .enumerate()
            .map(|(i, (camera, name))| {
                let CameraReport {
                    rate,
                    mut values,
                    mut problems,
                } = camera.report(health);
                values.insert(0, ("state".into(), state.into()));
                values.extend(shared.iter().cloned());
                values.extend(self.wire.values(i));
                problems.extend(wire_problems.iter().cloned());
                let level = problems.iter().map(|(l, _)| *l).max().unwrap_or(Level::Ok);
                let message = if problems.is_empty() && health.loading {
                    "loading the model".to_string()
                } else if problems.is_empty() {
                    format!("{rate:.1} frames/s")
                } else {
                    problems
                        .into_iter()
                        .map(|(_, m)| m)
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                DiagnosticStatus {
                    level,
                    name: name.to_string(),
                    message,
                    hardware_id: camera.hardware_id.clone().unwrap_or_else(|| "none".into()),
                    values,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut w = Window::new(100);
        assert_eq!(w.quantile(0.5), None);
        for v in 1..=100 {
            w.push(v as f64);
        }
        assert_eq!(w.quantile(0.5), Some(50.0));
        assert_eq!(w.quantile(0.99), Some(99.0));
        w.push(1000.0);
        assert_eq!(w.quantile(1.0), Some(1000.0));
        assert_eq!(
            w.quantile(0.0),
            Some(2.0),
            "the oldest sample left the window"
        );
    }

    #[test]
    fn arrival_clock_estimates_the_frame_period() {
        let mut clock = ArrivalClock::default();
        let t0 = Instant::now();
        for i in 0..5 {
            clock.arrived(t0 + Duration::from_millis(33 * i));
        }
        assert_eq!(clock.period(), None, "four intervals are not enough");
        clock.arrived(t0 + Duration::from_millis(165));
        let p = clock.period().unwrap().as_secs_f64();
        assert!((p - 0.033).abs() < 1e-6, "{p}");
        clock.arrived(t0 + Duration::from_secs(5));
        assert_eq!(clock.period(), None, "a long gap starts over");
    }

    #[test]
    fn report_counts_rejects_by_reason() {
        let mut s = NodeStats::default();
        s.cameras[0].reject(RejectReason::DataTooShort);
        s.cameras[0].reject(RejectReason::DataTooShort);
        s.cameras[0].reject(RejectReason::Undecodable);
        s.cameras[0].arrived(Instant::now(), "cam");
        let status = one(&mut s, HEALTHY);
        let get = |k: &str| {
            status
                .values
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("frames rejected").as_deref(), Some("3"));
        assert_eq!(get("rejected data_too_short").as_deref(), Some("2"));
        assert_eq!(get("rejected undecodable").as_deref(), Some("1"));
        assert_eq!(status.level, Level::Warn);
        assert_eq!(one(&mut s, HEALTHY).level, Level::Ok, "no new rejects");
        s.cameras[0].reject(RejectReason::Empty);
        assert_eq!(one(&mut s, HEALTHY).level, Level::Warn);
    }

    fn one(s: &mut NodeStats, health: Health) -> DiagnosticStatus {
        let mut statuses = s.report(&["clip_node: clip".into()], health);
        assert_eq!(statuses.len(), 1);
        statuses.remove(0)
    }

    #[test]
    fn every_camera_has_its_own_status() {
        let mut s = NodeStats::new(2);
        let health = Health {
            period: Duration::from_millis(20),
            ..HEALTHY
        };
        let names = ["clip_node: head".to_string(), "clip_node: wrist".into()];
        s.report(&names, health);
        std::thread::sleep(Duration::from_millis(70));
        s.cameras[0].arrived(Instant::now(), "head_optical_frame");
        s.cameras[0].processed += 1;
        s.cameras[1].reject(RejectReason::Undecodable);
        s.labels = 5;
        let statuses = s.report(&names, health);
        let (head, wrist) = (&statuses[0], &statuses[1]);
        assert_eq!(head.name, "clip_node: head");
        assert_eq!(head.hardware_id, "head_optical_frame");
        assert_eq!(head.level, Level::Ok, "{}", head.message);
        assert_eq!(wrist.name, "clip_node: wrist");
        assert_eq!(wrist.hardware_id, "none");
        assert_eq!(wrist.level, Level::Warn);
        assert!(
            wrist.message.contains("no image yet") && wrist.message.contains("1 frames rejected"),
            "{}",
            wrist.message
        );
        let get = |status: &DiagnosticStatus, k: &str| {
            status
                .values
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get(head, "frames rejected"), "0");
        assert_eq!(get(wrist, "frames rejected"), "1");
        assert_eq!(
            (get(head, "labels"), get(wrist, "labels")),
            ("5".into(), "5".into())
        );
    }

    const HEALTHY: Health = Health {
        period: Duration::from_secs(3600),
        min_rate: 0.0,
        loading: false,
    };

    #[test]
    fn a_quiet_camera_warns_after_three_periods() {
        let mut s = NodeStats::default();
        let health = Health {
            period: Duration::from_millis(20),
            ..HEALTHY
        };
        let status = one(&mut s, health);
        assert_eq!(
            (status.level, status.hardware_id.as_str()),
            (Level::Ok, "none")
        );
        std::thread::sleep(Duration::from_millis(70));
        let status = one(&mut s, health);
        assert_eq!(status.level, Level::Warn);
        assert!(
            status.message.contains("no image yet"),
            "{}",
            status.message
        );
        s.cameras[0].arrived(Instant::now(), "camera_optical_frame");
        let status = one(&mut s, health);
        assert_eq!(status.level, Level::Ok, "{}", status.message);
        assert_eq!(status.hardware_id, "camera_optical_frame");
        std::thread::sleep(Duration::from_millis(70));
        let status = one(&mut s, health);
        assert_eq!(status.level, Level::Warn);
        assert!(
            status.message.starts_with("no image for"),
            "{}",
            status.message
        );
    }

    #[test]
    fn a_slow_node_warns_under_min_rate() {
        let mut s = NodeStats::default();
        let health = Health {
            min_rate: 1000.0,
            ..HEALTHY
        };
        s.cameras[0].arrived(Instant::now(), "cam");
        one(&mut s, health);
        s.cameras[0].processed += 1;
        std::thread::sleep(Duration::from_millis(20));
        let status = one(&mut s, health);
        assert_eq!(status.level, Level::Warn);
        assert!(
            status.message.contains("under min_rate 1000"),
            "{}",
            status.message
        );
        let relaxed = Health {
            min_rate: 0.0,
            ..health
        };
        assert_eq!(one(&mut s, relaxed).level, Level::Ok);
    }

    #[test]
    fn an_encoder_that_keeps_failing_is_an_error() {
        let mut s = NodeStats::default();
        s.cameras[0].arrived(Instant::now(), "cam");
        for _ in 0..ENCODER_FAILURES_FOR_ERROR - 1 {
            s.cameras[0].encoder_failed("out of memory".into());
        }
        let status = one(&mut s, HEALTHY);
        assert_eq!(
            status.level,
            Level::Warn,
            "rejected frames, not yet failing"
        );
        s.cameras[0].encoder_failed("out of memory".into());
        let status = one(&mut s, HEALTHY);
        assert_eq!(status.level, Level::Error);
        assert!(
            status.message.contains("out of memory"),
            "{}",
            status.message
        );
        s.cameras[0].encoder_failures_in_a_row = 0;
        assert_eq!(one(&mut s, HEALTHY).level, Level::Ok);
    }
}
