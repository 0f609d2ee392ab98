//! Metrics of a replay against truth, from the lines replay writes (so they measure exactly
//! what the node would publish):
//! - top-1 accuracy on frames with exactly one true phrase (the best-scoring phrase is it);
//! - per phrase, precision / recall / F1 of the published `matched` flag (thresholds,
//!   smoothing and hysteresis as configured) over the frames with truth;
//! - a confusion matrix over the phrases and `none`, on frames with at most one true phrase:
//!   row = the true phrase (or none), column = the best-scoring matched phrase (or none);
//! - per phrase, a threshold sweep of its published score (`score >= t`, no hysteresis;
//!   the cosine, or a sigmoid-scored bundle's probability):
//!   precision and recall at every distinct score (as scikit-learn's
//!   `precision_recall_curve`), and the threshold with the highest F1 (ties: the highest
//!   threshold), printed as `label_thresholds` entries for the node's params file;
//! - image encoder and end-to-end (read to result) milliseconds per frame, p50 / p99
//!   (linear interpolation between order statistics, as numpy's default percentile).
//!
//! Precision with nothing predicted and recall with nothing true are 0, as is F1 then.
//!
//! When several topics are replayed, all of this is computed over all their frames together
//! and, in [`Evaluation::per_topic`], for each topic's frames alone.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::boxes::{Localization, LocalizationTally, TruthBoxes};
use super::truth::{stamp_ns, TimeBase, Truth, NONE};
use crate::engine::step::MatchPolicy;
use crate::replay::ReplayLine;

/// One scored frame, as the metrics and plots need it.
#[derive(Debug, Clone)]
pub struct FrameScores {
    pub stamp_ns: i64,
    pub log_time_ns: u64,
    /// Published score per phrase (the cosine, or a sigmoid bundle's probability; see
    /// [`crate::engine::step`]), in phrase order.
    pub score: Vec<f32>,
    pub matched: Vec<bool>,
    /// The best-scoring phrase.
    pub best: usize,
    /// True phrases (empty: none), `None` when the truth does not cover the frame.
    pub truth: Option<Vec<usize>>,
}

impl FrameScores {
    /// The frame's time on `base`'s clock.
    pub fn time_ns(&self, base: TimeBase) -> i64 {
        match base {
            TimeBase::HeaderStamp => self.stamp_ns,
            TimeBase::LogTime => self.log_time_ns as i64,
        }
    }
}

/// Collects replay lines; [`Evaluator::finish`] computes the metrics.
pub struct Evaluator {
    phrases: Vec<String>,
    index: HashMap<String, usize>,
    thresholds: Vec<f32>,
    truth: Option<Truth>,
    frames: Vec<FrameScores>,
    skipped: u64,
    encoder_ms: Vec<f64>,
    latency_ms: Vec<f64>,
    /// Several topics: each one's own evaluator.
    per_topic: Vec<TopicEvaluator>,
    /// With true boxes: the localisation results so far.
    localization: Option<LocalizationTally>,
}

/// The metrics of one replayed topic's frames.
struct TopicEvaluator {
    topic: String,
    camera: Option<String>,
    evaluator: Evaluator,
}

impl Evaluator {
    /// For `phrases` (the label matrix's order) under `policy`, against `truth` if any
    /// (without it: timing and plots only).
    pub fn new(phrases: &[String], policy: &MatchPolicy, truth: Option<Truth>) -> Self {
        Evaluator {
            index: phrases
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), i))
                .collect(),
            thresholds: phrases
                .iter()
                .map(|p| policy.thresholds.for_label(p))
                .collect(),
            phrases: phrases.to_vec(),
            truth,
            frames: Vec::new(),
            skipped: 0,
            encoder_ms: Vec::new(),
            latency_ms: Vec::new(),
            per_topic: Vec::new(),
            localization: None,
        }
    }

    /// Also measures localisation against `boxes` (lines need `locations`). Call before
    /// [`Evaluator::with_topics`].
    pub fn with_boxes(mut self, boxes: TruthBoxes) -> Self {
        self.localization = Some(LocalizationTally::new(boxes, self.phrases.len()));
        self
    }

    /// Also computes each topic's metrics alone (several topics replayed): `(topic,
    /// camera)` in replay order. Every line counts for its topic and for the whole.
    pub fn with_topics(mut self, topics: &[(String, Option<String>)]) -> Self {
        self.per_topic = topics
            .iter()
            .map(|(topic, camera)| TopicEvaluator {
                topic: topic.clone(),
                camera: camera.clone(),
                evaluator: Evaluator {
                    phrases: self.phrases.clone(),
                    index: self.index.clone(),
                    thresholds: self.thresholds.clone(),
                    truth: self.truth.clone(),
                    frames: Vec::new(),
                    skipped: 0,
                    encoder_ms: Vec::new(),
                    latency_ms: Vec::new(),
                    per_topic: Vec::new(),
                    localization: self.localization.clone(),
                },
            })
            .collect();
        self
    }

    pub fn add(&mut self, line: &ReplayLine) {
        if let Some(t) = self.per_topic.iter_mut().find(|t| t.topic == line.topic()) {
            t.evaluator.add(line);
        }
        let ReplayLine::Scored {
            result,
            bag_time_ns,
            locations,
            ..
        } = line
        else {
            self.skipped += 1;
            return;
        };
        if let Some(tally) = self.localization.as_mut() {
            tally.add(result.stamp, locations.as_deref(), &self.phrases);
        }
        let n = self.phrases.len();
        let (mut score, mut matched) = (vec![0.0; n], vec![false; n]);
        let mut best = None;
        for m in &result.matches.labels {
            let i = self.index[&m.phrase];
            score[i] = m.score;
            matched[i] = m.matched;
            best.get_or_insert(i);
        }
        let frame = FrameScores {
            stamp_ns: stamp_ns(result.stamp),
            log_time_ns: *bag_time_ns,
            truth: self
                .truth
                .as_ref()
                .and_then(|t| t.labels_at(result.stamp, *bag_time_ns)),
            score,
            matched,
            best: best.unwrap_or(0),
        };
        self.add_frame(frame, result.encoder_ms, result.latency_ms);
    }

    /// Adds one scored frame whose truth is already known (`frame.truth`).
    pub fn add_frame(&mut self, frame: FrameScores, encoder_ms: f64, latency_ms: f64) {
        self.encoder_ms.push(encoder_ms);
        self.latency_ms.push(latency_ms);
        self.frames.push(frame);
    }

    pub fn finish(self) -> Evaluation {
        let labelled: Vec<&FrameScores> =
            self.frames.iter().filter(|f| f.truth.is_some()).collect();
        let has_truth = self.truth.is_some() || !labelled.is_empty();
        let per_phrase: Vec<PhraseMetrics> = (0..self.phrases.len())
            .map(|i| phrase_metrics(&self.phrases[i], self.thresholds[i], i, &labelled))
            .collect();
        let swept: Vec<&PhraseMetrics> = per_phrase.iter().filter(|m| m.sweep.is_some()).collect();
        Evaluation {
            frames: FrameCounts {
                scored: self.frames.len() as u64,
                skipped: self.skipped,
                with_truth: labelled.len() as u64,
                unlabelled: (self.frames.len() - labelled.len()) as u64,
            },
            top1: has_truth.then(|| top1(&labelled)),
            macro_f1: (has_truth && !per_phrase.is_empty())
                .then(|| per_phrase.iter().map(|m| m.f1).sum::<f64>() / per_phrase.len() as f64),
            confusion: has_truth.then(|| confusion(&self.phrases, &labelled)),
            label_thresholds: swept
                .iter()
                .map(|m| {
                    let t = m
                        .sweep
                        .as_ref()
                        .expect("swept")
                        .best_threshold
                        .clamp(0.0, 1.0);
                    format!("{}={t}", m.phrase)
                })
                .collect(),
            per_phrase: if has_truth { per_phrase } else { Vec::new() },
            localization: self.localization.as_ref().map(|t| t.finish(&self.phrases)),
            timing_ms: Timing {
                encoder: Percentiles::of(self.encoder_ms),
                end_to_end: Percentiles::of(self.latency_ms),
            },
            phrases: self.phrases,
            thresholds: self.thresholds,
            time_base: self
                .truth
                .as_ref()
                .map_or(TimeBase::HeaderStamp, Truth::base),
            truth_spans: self
                .truth
                .as_ref()
                .map(|t| t.spans().collect())
                .unwrap_or_default(),
            frame_scores: self.frames,
            per_topic: self
                .per_topic
                .into_iter()
                .map(|t| TopicEvaluation {
                    topic: t.topic,
                    camera: t.camera,
                    evaluation: t.evaluator.finish(),
                })
                .collect(),
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

fn top1(frames: &[&FrameScores]) -> Top1 {
    let single: Vec<&&FrameScores> = frames
        .iter()
        .filter(|f| f.truth.as_ref().is_some_and(|t| t.len() == 1))
        .collect();
    let correct = single
        .iter()
        .filter(|f| f.truth.as_ref().expect("labelled")[0] == f.best)
        .count() as u64;
    Top1 {
        frames: single.len() as u64,
        correct,
        accuracy: ratio(correct, single.len() as u64),
    }
}

fn confusion(phrases: &[String], frames: &[&FrameScores]) -> Confusion {
    let none = phrases.len();
    let mut matrix = vec![vec![0u64; none + 1]; none + 1];
    let mut multi_label_frames = 0;
    for f in frames {
        let truth = f.truth.as_ref().expect("labelled");
        if truth.len() > 1 {
            multi_label_frames += 1;
            continue;
        }
        let row = truth.first().copied().unwrap_or(none);
        // The best-scoring matched phrase: the highest score among the matched ones.
        let col = (0..phrases.len())
            .filter(|&i| f.matched[i])
            .max_by(|&a, &b| f.score[a].total_cmp(&f.score[b]).then(b.cmp(&a)))
            .unwrap_or(none);
        matrix[row][col] += 1;
    }
    let mut labels = phrases.to_vec();
    labels.push(NONE.to_string());
    Confusion {
        labels,
        matrix,
        multi_label_frames,
    }
}

fn phrase_metrics(
    phrase: &str,
    threshold: f32,
    i: usize,
    frames: &[&FrameScores],
) -> PhraseMetrics {
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    let mut scored: Vec<(f32, bool)> = Vec::with_capacity(frames.len());
    for f in frames {
        let truth = f.truth.as_ref().expect("labelled").contains(&i);
        match (f.matched[i], truth) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
        scored.push((f.score[i], truth));
    }
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    PhraseMetrics {
        phrase: phrase.to_string(),
        threshold,
        support: tp + fn_,
        tp,
        fp,
        fn_,
        precision,
        recall,
        f1: f1(precision, recall),
        sweep: sweep(scored),
    }
}

/// Precision and recall at every distinct score, highest first; `None` without positives.
fn sweep(mut scored: Vec<(f32, bool)>) -> Option<Sweep> {
    let positives = scored.iter().filter(|(_, t)| *t).count() as u64;
    if positives == 0 {
        return None;
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut curve: Vec<CurvePoint> = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    for (k, (score, truth)) in scored.iter().enumerate() {
        if *truth {
            tp += 1;
        } else {
            fp += 1;
        }
        // A threshold's point counts every frame with that score: emit after the last one.
        if scored.get(k + 1).is_some_and(|next| next.0 == *score) {
            continue;
        }
        let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, positives));
        curve.push(CurvePoint {
            threshold: *score,
            precision,
            recall,
            f1: f1(precision, recall),
        });
    }
    // The first maximum: among equal F1, the highest threshold.
    let best = curve
        .iter()
        .fold(None::<&CurvePoint>, |best, p| match best {
            Some(b) if b.f1 >= p.f1 => Some(b),
            _ => Some(p),
        })
        .expect("a curve has a point per distinct score")
        .clone();
    Some(Sweep {
        best_threshold: best.threshold,
        best_precision: best.precision,
        best_recall: best.recall,
        best_f1: best.f1,
        curve,
    })
}

/// Frame counts.
#[derive(Debug, Clone, Serialize)]
pub struct FrameCounts {
    pub scored: u64,
    pub skipped: u64,
    pub with_truth: u64,
    pub unlabelled: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Top1 {
    /// Frames with exactly one true phrase.
    pub frames: u64,
    pub correct: u64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// A phrase's threshold sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub best_threshold: f32,
    pub best_precision: f64,
    pub best_recall: f64,
    pub best_f1: f64,
    /// One point per distinct score, highest threshold first.
    pub curve: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhraseMetrics {
    pub phrase: String,
    /// The configured threshold the `matched` flag used.
    pub threshold: f32,
    /// Frames (with truth) that show the phrase.
    pub support: u64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `None` when no frame shows the phrase.
    pub sweep: Option<Sweep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    /// Row and column labels: the phrases, then `none`.
    pub labels: Vec<String>,
    /// `matrix[truth][predicted]`.
    pub matrix: Vec<Vec<u64>>,
    /// Frames with several true phrases (not in the matrix).
    pub multi_label_frames: u64,
}

/// p50 / p99 of a per-frame time, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub frames: u64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Option<Percentiles> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Percentiles {
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            frames: v.len() as u64,
        })
    }
}

/// The median of `values` (any order; the mean of the two middle ones for an even count,
/// as numpy's); NaN for none. The benchmarks' one summary of repeated timings.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// numpy's default (linear) percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub encoder: Option<Percentiles>,
    pub end_to_end: Option<Percentiles>,
}

/// A replay's metrics (`metrics.json`), and what the plots need.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub phrases: Vec<String>,
    /// The configured threshold per phrase.
    pub thresholds: Vec<f32>,
    pub frames: FrameCounts,
    pub top1: Option<Top1>,
    pub macro_f1: Option<f64>,
    pub per_phrase: Vec<PhraseMetrics>,
    pub confusion: Option<Confusion>,
    /// The F1-best threshold of every phrase with truth, as `phrase=value` entries.
    pub label_thresholds: Vec<String>,
    /// Against true boxes (`--truth-boxes`): pointing accuracy and mean IoU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localization: Option<Localization>,
    pub timing_ms: Timing,
    #[serde(skip)]
    pub time_base: TimeBase,
    /// `(start_ns, end_ns, phrase)` on `time_base`'s clock.
    #[serde(skip)]
    pub truth_spans: Vec<(i64, i64, usize)>,
    #[serde(skip)]
    pub frame_scores: Vec<FrameScores>,
    /// Several topics: each topic's metrics alone, in replay order (`metrics.json`: an
    /// object keyed by topic, each value `camera` and the fields above); empty (and absent
    /// from `metrics.json`) for one topic.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "topics_by_name"
    )]
    pub per_topic: Vec<TopicEvaluation>,
}

/// One replayed topic's metrics.
#[derive(Debug, Clone)]
pub struct TopicEvaluation {
    pub topic: String,
    pub camera: Option<String>,
    pub evaluation: Evaluation,
}

impl TopicEvaluation {
    /// The per-topic table's numbers, as the text summary and the report show them
    /// (`missing` where there is no value): frames scored, skipped and with truth, top-1,
    /// macro F1, encoder p50 and end-to-end p50.
    pub fn cells(&self, missing: &str) -> [String; 7] {
        let e = &self.evaluation;
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or(missing.to_string(), |v| format!("{v:.digits$}"))
        };
        [
            e.frames.scored.to_string(),
            e.frames.skipped.to_string(),
            e.frames.with_truth.to_string(),
            opt(e.top1.as_ref().map(|t| t.accuracy), 4),
            opt(e.macro_f1, 4),
            opt(e.timing_ms.encoder.as_ref().map(|p| p.p50), 2),
            opt(e.timing_ms.end_to_end.as_ref().map(|p| p.p50), 2),
        ]
    }
}

/// `per_topic` as an object keyed by topic, in replay order.
fn topics_by_name<S: Serializer>(topics: &[TopicEvaluation], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        camera: &'a Option<String>,
        #[serde(flatten)]
        metrics: &'a Evaluation,
    }
    let mut map = s.serialize_map(Some(topics.len()))?;
    for t in topics {
        map.serialize_entry(
            &t.topic,
            &Entry {
                camera: &t.camera,
                metrics: &t.evaluation,
            },
        )?;
    }
    map.end()
}

impl Evaluation {
    /// The `label_thresholds` list to paste into `config/clip_node.yaml`.
    pub fn thresholds_yaml(&self) -> String {
        let entries: Vec<String> = self
            .label_thresholds
            .iter()
            .map(|e| serde_json::to_string(e).expect("a string serializes"))
            .collect();
        format!("label_thresholds: [{}]", entries.join(", "))
    }

    /// A plain-text summary: frames, top-1, per-phrase table, thresholds, timing; for
    /// several topics first for all of them together, then a table per topic and one of
    /// each phrase's F1 per topic.
    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        if !self.per_topic.is_empty() {
            s += &format!("all {} topics together:\n", self.per_topic.len());
        }
        s += &self.overall_text();
        if !self.per_topic.is_empty() {
            s += &self.per_topic_text();
        }
        s
    }

    /// The camera (or else topic) of each topic, for column headings.
    fn topic_names(&self) -> Vec<String> {
        self.per_topic
            .iter()
            .map(|t| t.camera.clone().unwrap_or_else(|| t.topic.clone()))
            .collect()
    }

    /// The width of the phrase column: the longest phrase, at least 6.
    fn phrase_width(&self) -> usize {
        self.phrases
            .iter()
            .map(|p| p.chars().count())
            .max()
            .unwrap_or(6)
            .max(6)
    }

    /// Per topic: frames, top-1, macro F1, timing; then each phrase's F1 per topic.
    fn per_topic_text(&self) -> String {
        let mut s = String::from("per topic (each topic's frames alone):\n");
        let wt = self
            .per_topic
            .iter()
            .map(|t| t.topic.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let wc = self
            .per_topic
            .iter()
            .map(|t| t.camera.as_deref().unwrap_or("-").chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        s += &format!(
            "{:wt$}  {:wc$}  {:>6}  {:>7}  {:>10}  {:>6}  {:>8}  {:>11}  {:>14}\n",
            "topic",
            "camera",
            "scored",
            "skipped",
            "with truth",
            "top-1",
            "macro F1",
            "encoder p50",
            "end-to-end p50"
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        for t in &self.per_topic {
            let [scored, skipped, with_truth, top1, f1, encoder, end_to_end] = t.cells("-");
            s += &format!(
                "{:wt$}  {:wc$}  {scored:>6}  {skipped:>7}  {with_truth:>10}  {top1:>6}  {f1:>8}  \
                 {encoder:>11}  {end_to_end:>14}\n",
                t.topic,
                t.camera.as_deref().unwrap_or("-"),
            );
        }
        if !self.per_phrase.is_empty() {
            let names = self.topic_names();
            let w = self.phrase_width();
            s += "F1 of matched per phrase: all topics, then each camera:\n";
            s += &format!("{:w$}  {:>6}", "phrase", "all");
            for name in &names {
                s += &format!("  {:>w2$}", name, w2 = name.chars().count().max(6));
            }
            s += "\n";
            for (i, m) in self.per_phrase.iter().enumerate() {
                s += &format!("{:w$}  {:>6.4}", m.phrase, m.f1);
                for (name, t) in names.iter().zip(&self.per_topic) {
                    let f1 = t.evaluation.per_phrase.get(i).map(|m| m.f1);
                    s += &format!("  {:>w2$}", opt(f1, 4), w2 = name.chars().count().max(6));
                }
                s += "\n";
            }
        }
        s
    }

    /// The summary of all frames together.
    fn overall_text(&self) -> String {
        let mut s = String::new();
        let f = &self.frames;
        s += &format!(
            "frames: {} scored, {} skipped, {} with truth, {} unlabelled\n",
            f.scored, f.skipped, f.with_truth, f.unlabelled
        );
        if let Some(t) = &self.top1 {
            s += &format!(
                "top-1 accuracy: {:.4} ({} of {} single-phrase frames)\n",
                t.accuracy, t.correct, t.frames
            );
        }
        if let Some(m) = self.macro_f1 {
            s += &format!("macro F1 of matched: {m:.4}\n");
        }
        if !self.per_phrase.is_empty() {
            let w = self.phrase_width();
            s += &format!(
                "{:w$}  {:>9}  {:>9}  {:>6}  {:>6}  {:>7}  {:>9}  {:>7}\n",
                "phrase",
                "threshold",
                "precision",
                "recall",
                "F1",
                "support",
                "best thr.",
                "best F1"
            );
            for m in &self.per_phrase {
                let (bt, bf) = m.sweep.as_ref().map_or(("-".into(), "-".into()), |s| {
                    (
                        format!("{:.4}", s.best_threshold),
                        format!("{:.4}", s.best_f1),
                    )
                });
                s += &format!(
                    "{:w$}  {:>9.4}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}  {:>9}  {:>7}\n",
                    m.phrase, m.threshold, m.precision, m.recall, m.f1, m.support, bt, bf
                );
            }
            s += &format!(
                "F1-best thresholds (paste into config/clip_node.yaml{}):\n    {}\n",
                if self.per_phrase.iter().any(|m| m
                    .sweep
                    .as_ref()
                    .is_some_and(|s| !(0.0..=1.0).contains(&s.best_threshold)))
                {
                    "; values outside [0, 1] are clamped to the parameter's range"
                } else {
                    ""
                },
                self.thresholds_yaml()
            );
        }
        if let Some(l) = &self.localization {
            s += &format!(
                "localization: pointing {:.4} ({} of {} objects), mean IoU {:.4}\n",
                l.pointing, l.pointed, l.objects, l.mean_iou
            );
            let w = self.phrase_width();
            s += &format!(
                "{:w$}  {:>7}  {:>8}  {:>8}\n",
                "phrase", "objects", "pointing", "mean IoU"
            );
            for p in &l.per_phrase {
                s += &format!(
                    "{:w$}  {:>7}  {:>8.4}  {:>8.4}\n",
                    p.phrase, p.objects, p.pointing, p.mean_iou
                );
            }
        }
        for (name, p) in [
            ("encoder", &self.timing_ms.encoder),
            ("end-to-end", &self.timing_ms.end_to_end),
        ] {
            if let Some(p) = p {
                s += &format!("{name} ms per frame: p50 {:.2}, p99 {:.2}\n", p.p50, p.p99);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_matches_hand_computed_points() {
        // Scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg), 0.1 (pos).
        let s = sweep(vec![
            (0.8, false),
            (0.9, true),
            (0.1, true),
            (0.8, true),
            (0.3, false),
        ])
        .unwrap();
        let points: Vec<(f32, f64, f64)> = s
            .curve
            .iter()
            .map(|p| (p.threshold, p.precision, p.recall))
            .collect();
        assert_eq!(
            points,
            vec![
                (0.9, 1.0, 1.0 / 3.0),
                (0.8, 2.0 / 3.0, 2.0 / 3.0),
                (0.3, 0.5, 2.0 / 3.0),
                (0.1, 0.6, 1.0),
            ]
        );
        // F1: 0.5, 0.6667, 0.5714, 0.75 -> the last.
        assert_eq!(s.best_threshold, 0.1);
        assert!((s.best_f1 - 0.75).abs() < 1e-12);
        assert!(sweep(vec![(0.5, false)]).is_none());
    }

    #[test]
    fn sweep_ties_go_to_the_higher_threshold() {
        // F1 at 0.9: 2/3 (P 1, R 1/2); at 0.3: 2/3 (P 1/2, R 1): the higher one wins.
        let s = sweep(vec![(0.9, true), (0.6, false), (0.5, false), (0.3, true)]).unwrap();
        assert_eq!(s.best_threshold, 0.9);
        assert!((s.best_f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn median_is_numpys() {
        // numpy.median([3, 1, 2]) == 2.0, numpy.median([4, 1, 3, 2]) == 2.5
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let p = Percentiles::of(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(p.p50, 2.5);
        assert!((p.p99 - 3.97).abs() < 1e-12);
        assert!(Percentiles::of(Vec::new()).is_none());
    }
}
