//! The [`LabelMatrix`]: one unit-length row per task phrase, with the model's scoring
//! (logit scale; softmax over phrases or a per-phrase sigmoid).
//! The text side builds it (only when the phrases change); scoring reads it on every frame.

use nalgebra::DMatrix;

use crate::model::family::Scoring;

/// Unit vectors, one row per phrase, with the model's scoring.
#[derive(Debug, Clone)]
pub struct LabelMatrix {
    pub labels: Vec<String>,
    /// n_labels x embed_dim, unit rows.
    pub matrix: DMatrix<f32>,
    /// How cosines become probabilities (the bundle's `logit_scale`, softmax or sigmoid).
    pub scoring: Scoring,
}

impl LabelMatrix {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn embed_dim(&self) -> usize {
        self.matrix.ncols()
    }
}

/// Scales `v` to unit length (left as is if it is zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
