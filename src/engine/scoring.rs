//! Scoring one image embedding against a [`LabelMatrix`]: cosine similarity (a matrix-vector
//! product over unit vectors), probabilities as the bundle scores them (softmax of the
//! logit-scaled cosines over the phrases, or SigLIP's per-phrase sigmoid), ranking, top-k
//! and per-label thresholds. This is all that runs per frame after the image encoder.

use std::collections::HashMap;

use nalgebra::DVector;

use crate::text::labels::{normalize, LabelMatrix};

/// Similarities of one image to every label, in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub cosine: Vec<f32>,
    /// softmax(logit_scale * cosine) over the labels, or sigmoid(logit_scale * cosine +
    /// logit_bias) per label ([`crate::model::Scoring`]).
    pub probability: Vec<f32>,
}

/// One label of a ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub cosine: f32,
    pub probability: f32,
}

/// Scores an (unnormalised) image embedding against the label matrix.
pub fn score(labels: &LabelMatrix, embedding: &[f32]) -> Scores {
    assert_eq!(
        embedding.len(),
        labels.embed_dim(),
        "embedding width must match the label matrix"
    );
    let mut unit = embedding.to_vec();
    normalize(&mut unit);
    let cosine: Vec<f32> = (&labels.matrix * DVector::from_vec(unit))
        .iter()
        .copied()
        .collect();
    let probability = labels.scoring.probabilities(&cosine);
    Scores {
        cosine,
        probability,
    }
}

pub use crate::model::family::{sigmoid, softmax};

impl Scores {
    /// All labels, best first (ties keep label order).
    pub fn ranked(&self) -> Vec<Ranked> {
        let mut order: Vec<usize> = (0..self.cosine.len()).collect();
        order.sort_by(|&a, &b| self.cosine[b].total_cmp(&self.cosine[a]));
        order
            .into_iter()
            .map(|index| Ranked {
                index,
                cosine: self.cosine[index],
                probability: self.probability[index],
            })
            .collect()
    }

    /// The `k` best labels.
    pub fn top_k(&self, k: usize) -> Vec<Ranked> {
        let mut ranked = self.ranked();
        ranked.truncate(k);
        ranked
    }
}

/// Score thresholds (cosine, or a sigmoid bundle's probability; see
/// [`crate::engine::step`]) above which a label counts as matched: one default, optionally
/// overridden per phrase.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Thresholds {
    pub default: f32,
    pub per_label: HashMap<String, f32>,
}

impl Thresholds {
    /// The threshold of `label`: its own, else the default.
    pub fn for_label(&self, label: &str) -> f32 {
        self.per_label.get(label).copied().unwrap_or(self.default)
    }

    /// Whether `label` counts as matched at `score`. With hysteresis, a label that was
    /// matched on the previous frame stays matched down to its threshold - `hysteresis`.
    pub fn matched(&self, label: &str, score: f32, was_matched: bool, hysteresis: f32) -> bool {
        let t = self.for_label(label);
        score >= if was_matched { t - hysteresis } else { t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    fn labels() -> LabelMatrix {
        LabelMatrix {
            labels: vec!["a".into(), "b".into(), "c".into()],
            matrix: DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, -1.0, 0.0]),
            scoring: crate::model::Scoring::softmax(100.0),
        }
    }

    #[test]
    fn cosine_softmax_and_ranking() {
        let s = score(&labels(), &[3.0, 4.0]);
        assert!((s.cosine[0] - 0.6).abs() < 1e-6 && (s.cosine[1] - 0.8).abs() < 1e-6);
        assert!((s.probability.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let expected_b = 1.0 / (1.0 + (-20f32).exp() + (-140f32).exp());
        assert!((s.probability[1] - expected_b).abs() < 1e-6);
        let top: Vec<usize> = s.top_k(2).iter().map(|r| r.index).collect();
        assert_eq!(top, vec![1, 0]);
    }

    #[test]
    fn thresholds_override_per_label() {
        let t = Thresholds {
            default: 0.25,
            per_label: HashMap::from([("red cup".to_string(), 0.3)]),
        };
        assert!(t.matched("blue ball", 0.26, false, 0.0));
        assert!(!t.matched("red cup", 0.26, false, 0.0));
        // Hysteresis only holds a match that exists.
        assert!(t.matched("red cup", 0.26, true, 0.05));
        assert!(!t.matched("red cup", 0.24, true, 0.05));
        assert!(!t.matched("red cup", 0.29, false, 0.05));
    }
}
