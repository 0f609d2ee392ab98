//! The per-frame step: one image embedding and the current phrase set in, the frame's
//! [`Matches`] out (cosine, score, probability, smoothing, hysteresis, thresholds, ranking,
//! top-k).
//!
//! A phrase's **score** is what thresholds apply to and what the node publishes in
//! `vision_msgs/Classification`: a value that depends on that phrase and image alone. For
//! softmax-scored bundles (CLIP, MobileCLIP) it is the cosine; for sigmoid-scored ones
//! (SigLIP) it is the phrase's own probability `sigmoid(logit_scale * cos + logit_bias)`.
//! The node publishes what it returns and offline callers write it, so both give the same
//! numbers for the same frames. [`FrameResult`] is the `~/matches` JSON document.

use serde::Serialize;

use super::scoring::{score, Scores, Thresholds};
use crate::text::LabelMatrix;

/// How scores become matches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchPolicy {
    /// Score thresholds at or above which a phrase is matched (see the module doc).
    pub thresholds: Thresholds,
    /// Weight of the previous smoothed cosine, in [0, 1) (0: no smoothing).
    pub smoothing: f32,
    /// A matched phrase stays matched down to its threshold - `hysteresis`.
    pub hysteresis: f32,
    /// Phrases in [`Matches::top`] (`None`: all).
    pub top_k: Option<usize>,
}

/// One phrase's result for one frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseMatch {
    pub phrase: String,
    /// Cosine similarity of image and phrase (smoothed when smoothing is on).
    pub cosine: f32,
    /// What thresholds apply to: the cosine (softmax-scored bundles) or the phrase's own
    /// sigmoid probability (sigmoid-scored bundles).
    pub score: f32,
    /// Softmax of `logit_scale * cosine` over the phrase set, or the phrase's own
    /// `sigmoid(logit_scale * cosine + logit_bias)`, as the bundle scores.
    pub probability: f32,
    /// Whether the score passed the phrase's threshold (with hysteresis).
    pub matched: bool,
}

/// Every phrase's result for one frame, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matches {
    pub labels: Vec<PhraseMatch>,
    #[serde(skip)]
    top_k: usize,
}

impl Matches {
    /// The policy's top-k phrases, best first.
    pub fn top(&self) -> &[PhraseMatch] {
        &self.labels[..self.top_k.min(self.labels.len())]
    }
}

/// A ROS time (`builtin_interfaces/Time`): the image header's stamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Stamp {
    pub sec: i32,
    pub nanosec: u32,
}

impl Stamp {
    /// The wall clock now.
    pub fn now() -> Stamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Stamp {
            sec: d.as_secs() as i32,
            nanosec: d.subsec_nanos(),
        }
    }
}

/// One frame's published result: the `~/matches` JSON object
/// `{"stamp": {"sec", "nanosec"}, "frame_id", ["camera",] "labels": [{"phrase", "cosine",
/// "score", "probability", "matched"}, ...], "latency_ms", "encoder_ms"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameResult {
    pub stamp: Stamp,
    pub frame_id: String,
    /// The camera the frame came from, for a node with several (`cameras`); absent for
    /// the single-camera interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    #[serde(flatten)]
    pub matches: Matches,
    /// Receive -> publish time.
    pub latency_ms: f64,
    /// Preprocessing + image encoder time.
    pub encoder_ms: f64,
}

impl FrameResult {
    /// The JSON text (one line).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a frame result serializes")
    }
}

/// The per-frame step with its state (smoothed cosines, matched flags), which starts over
/// whenever the phrase set changes.
#[derive(Debug, Clone)]
pub struct FrameStep {
    policy: MatchPolicy,
    generation: Option<u64>,
    cosine: Vec<f32>,
    matched: Vec<bool>,
}

impl FrameStep {
    pub fn new(policy: MatchPolicy) -> Self {
        FrameStep {
            policy,
            generation: None,
            cosine: Vec::new(),
            matched: Vec::new(),
        }
    }

    pub fn policy(&self) -> &MatchPolicy {
        &self.policy
    }

    /// Changes thresholds, smoothing, hysteresis or top-k from the next frame on; the
    /// smoothed values and matched flags carry over.
    pub fn set_policy(&mut self, policy: MatchPolicy) {
        self.policy = policy;
    }

    /// Scores one (unnormalised) image embedding against `labels`, phrase set number
    /// `generation` (smoothing and hysteresis restart when it changes).
    pub fn step(&mut self, labels: &LabelMatrix, generation: u64, embedding: &[f32]) -> Matches {
        let scores = score(labels, embedding);
        if self.generation != Some(generation) {
            self.generation = Some(generation);
            self.cosine = scores.cosine.clone();
            self.matched = vec![false; labels.len()];
        }
        let a = self.policy.smoothing;
        for (s, c) in self.cosine.iter_mut().zip(&scores.cosine) {
            *s = a * *s + (1.0 - a) * c;
        }
        let smoothed = Scores {
            probability: if a > 0.0 {
                labels.scoring.probabilities(&self.cosine)
            } else {
                scores.probability
            },
            cosine: self.cosine.clone(),
        };
        let per_phrase = labels.scoring.per_phrase();
        let score_of = |i: usize| {
            if per_phrase {
                smoothed.probability[i]
            } else {
                smoothed.cosine[i]
            }
        };
        for (i, phrase) in labels.labels.iter().enumerate() {
            self.matched[i] = self.policy.thresholds.matched(
                phrase,
                score_of(i),
                self.matched[i],
                self.policy.hysteresis,
            );
        }
        let labels: Vec<PhraseMatch> = smoothed
            .ranked()
            .into_iter()
            .map(|r| PhraseMatch {
                phrase: labels.labels[r.index].clone(),
                cosine: r.cosine,
                score: score_of(r.index),
                probability: r.probability,
                matched: self.matched[r.index],
            })
            .collect();
        Matches {
            top_k: self.policy.top_k.unwrap_or(labels.len()),
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;
    use std::collections::HashMap;

    /// Two phrases along the x and y axes: an embedding (cos t, sin t) has cosines cos t
    /// and sin t, so every expected value below is known in closed form.
    fn labels() -> LabelMatrix {
        LabelMatrix {
            labels: vec!["x".into(), "y".into()],
            matrix: DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]),
            scoring: crate::model::Scoring::softmax(10.0),
        }
    }

    fn policy(threshold: f32, smoothing: f32, hysteresis: f32) -> MatchPolicy {
        MatchPolicy {
            thresholds: Thresholds {
                default: threshold,
                per_label: HashMap::new(),
            },
            smoothing,
            hysteresis,
            top_k: None,
        }
    }

    fn cosine_of(m: &Matches, phrase: &str) -> f32 {
        m.labels.iter().find(|l| l.phrase == phrase).unwrap().cosine
    }

    fn matched(m: &Matches, phrase: &str) -> bool {
        m.labels
            .iter()
            .find(|l| l.phrase == phrase)
            .unwrap()
            .matched
    }

    #[test]
    fn without_state_it_is_scoring_ranked() {
        let mut step = FrameStep::new(MatchPolicy {
            top_k: Some(1),
            ..policy(0.5, 0.0, 0.0)
        });
        let m = step.step(&labels(), 0, &[3.0, 4.0]);
        let names: Vec<&str> = m.labels.iter().map(|l| l.phrase.as_str()).collect();
        assert_eq!(names, ["y", "x"]);
        assert_eq!(m.top().len(), 1);
        assert!((m.labels[0].cosine - 0.8).abs() < 1e-6);
        // softmax(10 * [0.8, 0.6]) = 1 / (1 + e^-2) for the first.
        let p = 1.0 / (1.0 + (-2f32).exp());
        assert!((m.labels[0].probability - p).abs() < 1e-6);
        assert!(m.labels[0].matched && m.labels[1].matched);
    }

    #[test]
    fn smoothing_is_an_exponential_average_that_restarts_with_new_phrases() {
        let mut step = FrameStep::new(policy(0.5, 0.75, 0.0));
        let first = step.step(&labels(), 0, &[1.0, 0.0]);
        assert_eq!(cosine_of(&first, "x"), 1.0);
        // 0.75 * 1 + 0.25 * 0 = 0.75 for x; 0.75 * 0 + 0.25 * 1 = 0.25 for y.
        let second = step.step(&labels(), 0, &[0.0, 1.0]);
        assert!((cosine_of(&second, "x") - 0.75).abs() < 1e-6);
        assert!((cosine_of(&second, "y") - 0.25).abs() < 1e-6);
        // The probability is the softmax of the smoothed cosines.
        let p = 1.0 / (1.0 + (10.0f32 * (0.25 - 0.75)).exp());
        assert!((second.labels[0].probability - p).abs() < 1e-6);
        // A new phrase set starts from its first frame.
        let third = step.step(&labels(), 1, &[0.0, 1.0]);
        assert_eq!(cosine_of(&third, "y"), 1.0);
    }

    #[test]
    fn hysteresis_holds_a_match_until_threshold_minus_hysteresis() {
        let mut step = FrameStep::new(policy(0.5, 0.0, 0.1));
        let at = |step: &mut FrameStep, generation, c: f32| {
            let e = [c, (1.0 - c * c).sqrt()];
            matched(&step.step(&labels(), generation, &e), "x")
        };
        assert!(
            !at(&mut step, 0, 0.45),
            "below the threshold, never matched"
        );
        assert!(at(&mut step, 0, 0.55), "crosses the threshold");
        assert!(at(&mut step, 0, 0.45), "held: above 0.5 - 0.1");
        assert!(!at(&mut step, 0, 0.35), "released below 0.4");
        assert!(!at(&mut step, 0, 0.45), "not matched again until 0.5");
        assert!(at(&mut step, 0, 0.51), "matched again above 0.5");
        assert!(
            !at(&mut step, 1, 0.45),
            "a new phrase set forgets the match"
        );
    }

    #[test]
    fn per_phrase_thresholds() {
        let mut p = policy(0.5, 0.0, 0.0);
        p.thresholds.per_label.insert("y".into(), 0.9);
        let m = FrameStep::new(p).step(&labels(), 0, &[0.6, 0.8]);
        assert!(matched(&m, "x"), "0.6 >= 0.5");
        assert!(!matched(&m, "y"), "0.8 < 0.9");
    }

    #[test]
    fn frame_result_json_has_the_documented_fields() {
        let matches = FrameStep::new(policy(0.5, 0.0, 0.0)).step(&labels(), 0, &[1.0, 0.0]);
        let result = FrameResult {
            stamp: Stamp { sec: 3, nanosec: 7 },
            frame_id: "cam".into(),
            camera: None,
            matches,
            latency_ms: 1.5,
            encoder_ms: 1.0,
        };
        let v: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "stamp": {"sec": 3, "nanosec": 7},
                "frame_id": "cam",
                "labels": [
                    {"phrase": "x", "cosine": 1.0, "score": 1.0, "probability": v["labels"][0]["probability"], "matched": true},
                    {"phrase": "y", "cosine": 0.0, "score": 0.0, "probability": v["labels"][1]["probability"], "matched": false},
                ],
                "latency_ms": 1.5,
                "encoder_ms": 1.0,
            })
        );
    }

    /// A sigmoid-scored bundle (SigLIP): the score is each phrase's own probability, the
    /// thresholds are in that unit, and a phrase's probability ignores the other phrases.
    #[test]
    fn sigmoid_bundles_threshold_their_probability() {
        let mut labels = labels();
        labels.scoring = crate::model::Scoring::sigmoid(10.0, -5.0);
        let mut step = FrameStep::new(policy(0.5, 0.0, 0.0));
        // cos = (0.6, 0.8): sigmoid(1) = 0.731, sigmoid(3) = 0.953.
        let m = step.step(&labels, 0, &[0.6, 0.8]);
        let x = m.labels.iter().find(|l| l.phrase == "x").unwrap();
        let y = m.labels.iter().find(|l| l.phrase == "y").unwrap();
        assert!((x.score - 0.731_058_6).abs() < 1e-6 && x.score == x.probability);
        assert!((y.score - 0.952_574_1).abs() < 1e-6);
        assert!(x.matched && y.matched, "both above 0.5");
        // cos 0.4 -> sigmoid(-1) = 0.269: below 0.5 although the cosine is the best.
        let m = step.step(&labels, 1, &[1.0, 0.0]);
        assert!(m.labels[0].matched && !m.labels[1].matched);
        let m = step.step(&labels, 2, &[0.4, -(1.0f32 - 0.16).sqrt()]);
        assert_eq!(m.labels[0].phrase, "x");
        assert!(!m.labels[0].matched, "{:?}", m.labels[0]);
    }
}
