//! What a model family needs, as the bundle says it (`docs/bundle-format.md`): how images
//! are resized ([`PreprocessSpec`]), how text becomes token ids ([`TextSpec`]) and how a
//! cosine becomes a probability ([`Scoring`]). A format-1 bundle is the CLIP defaults
//! ([`ModelSpec::clip`]); a format-2 bundle states every section. Nothing here is guessed
//! from a model's name.

use serde::{Deserialize, Serialize};

pub use crate::image::preprocess::{CropOffset, PreprocessSpec, Resample, Resize};

/// The model family a bundle holds (shown by `info`; behaviour comes from the sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// OpenAI / open_clip CLIP ViTs, and the project's tabletop model.
    Clip,
    /// Apple MobileCLIP / MobileCLIP 2 (open_clip).
    Mobileclip,
    /// Google SigLIP (SentencePiece tokenizer).
    Siglip,
    /// Google SigLIP 2 at fixed resolution (Gemma tokenizer).
    Siglip2,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Clip => "clip",
            Family::Mobileclip => "mobileclip",
            Family::Siglip => "siglip",
            Family::Siglip2 => "siglip2",
        }
    }
}

/// Which tokenizer pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// OpenAI's cleaning + the CLIP BPE of `tokenizer.json`, start and end tokens.
    Clip,
    /// The `tokenizer.json`'s own pipeline (normalizer, pre-tokenizer, model,
    /// post-processor), after the manifest's lowercase / punctuation steps.
    Hf,
}

/// How sequences are padded for the text encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadTo {
    /// The batch's longest sequence (causal towers pooling at the end token).
    Longest,
    /// The full context (towers that attend to padding or pool the last position).
    Context,
}

/// Where the text graph pools (what the export wrote; it decides which padding is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first end-of-text token (transformers' CLIPTextModel).
    FirstEot,
    /// The highest token id, the end-of-text token (open_clip's `text_global_pool`).
    ArgmaxEot,
    /// The last position (SigLIP).
    Last,
}

/// The `text:` section of a format-2 manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub tokenizer: TokenizerKind,
    /// `hf` only: Python's `str.lower()` first.
    #[serde(default)]
    pub lowercase: bool,
    /// `hf` only: `SiglipTokenizer.canonicalize_text` (drop ASCII punctuation, collapse
    /// whitespace, strip).
    #[serde(default)]
    pub strip_punctuation: bool,
    pub pad_id: u32,
    pub pad_to: PadTo,
    pub pooling: Pooling,
}

impl TextSpec {
    /// CLIP's text side: cleaning + BPE, zeros after the end token, the batch's length.
    pub const CLIP: TextSpec = TextSpec {
        tokenizer: TokenizerKind::Clip,
        lowercase: false,
        strip_punctuation: false,
        pad_id: 0,
        pad_to: PadTo::Longest,
        pooling: Pooling::FirstEot,
    };

    /// One line for `info` and logs, e.g. `hf (lowercase, strip punctuation), pad 1 to
    /// context, pooling last`.
    pub fn describe(&self) -> String {
        let kind = match self.tokenizer {
            TokenizerKind::Clip => "clip (OpenAI cleaning + CLIP BPE)".to_string(),
            TokenizerKind::Hf => {
                let steps: Vec<&str> = [
                    (self.lowercase, "lowercase"),
                    (self.strip_punctuation, "strip punctuation"),
                ]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
                if steps.is_empty() {
                    "hf tokenizer.json".to_string()
                } else {
                    format!("hf tokenizer.json ({})", steps.join(", "))
                }
            }
        };
        let pad_to = match self.pad_to {
            PadTo::Longest => "longest",
            PadTo::Context => "context",
        };
        let pooling = match self.pooling {
            Pooling::FirstEot => "first_eot",
            Pooling::ArgmaxEot => "argmax_eot",
            Pooling::Last => "last",
        };
        format!("{kind}, pad {} to {pad_to}, pooling {pooling}", self.pad_id)
    }

    /// The padded length of a batch whose longest sequence has `longest` ids.
    pub fn padded_length(&self, longest: usize, context_length: usize) -> usize {
        match self.pad_to {
            PadTo::Longest => longest,
            PadTo::Context => context_length,
        }
    }
}

/// How a phrase's probability is computed from its cosine with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoringKind {
    /// `softmax(logit_scale * cos)` over the phrase set (CLIP, MobileCLIP).
    Softmax,
    /// `sigmoid(logit_scale * cos + logit_bias)`, each phrase on its own (SigLIP).
    Sigmoid,
}

/// The `scoring:` section of a format-2 manifest, as written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringSection {
    pub kind: ScoringKind,
    #[serde(default)]
    pub logit_bias: Option<f32>,
}

/// A bundle's scoring: kind, (exponentiated) logit scale, and the sigmoid's bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub kind: ScoringKind,
    pub logit_scale: f32,
    /// 0 for softmax.
    pub logit_bias: f32,
}

impl Scoring {
    pub fn softmax(logit_scale: f32) -> Self {
        Scoring {
            kind: ScoringKind::Softmax,
            logit_scale,
            logit_bias: 0.0,
        }
    }

    pub fn sigmoid(logit_scale: f32, logit_bias: f32) -> Self {
        Scoring {
            kind: ScoringKind::Sigmoid,
            logit_scale,
            logit_bias,
        }
    }

    /// Probabilities of cosines: softmax over all of them, or one sigmoid each.
    pub fn probabilities(&self, cosine: &[f32]) -> Vec<f32> {
        match self.kind {
            ScoringKind::Softmax => softmax(cosine, self.logit_scale),
            ScoringKind::Sigmoid => cosine
                .iter()
                .map(|&c| sigmoid(self.logit_scale * c + self.logit_bias))
                .collect(),
        }
    }

    /// Whether a phrase's probability depends on that phrase alone (sigmoid), so it can be
    /// thresholded and published as its score.
    pub fn per_phrase(&self) -> bool {
        self.kind == ScoringKind::Sigmoid
    }

    /// One line for `info` and logs.
    pub fn describe(&self) -> String {
        match self.kind {
            ScoringKind::Softmax => {
                format!("softmax over phrases of {} * cosine", self.logit_scale)
            }
            ScoringKind::Sigmoid => {
                let (sign, bias) = if self.logit_bias < 0.0 {
                    ('-', -self.logit_bias)
                } else {
                    ('+', self.logit_bias)
                };
                format!(
                    "sigmoid({} * cosine {sign} {bias}) per phrase",
                    self.logit_scale
                )
            }
        }
    }
}

/// Numerically stable softmax of `scale * x`.
pub fn softmax(x: &[f32], scale: f32) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(scale * v));
    let exps: Vec<f32> = x.iter().map(|&v| (scale * v - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// The logistic function, without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Everything family-specific about a bundle, resolved from its manifest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    pub family: Family,
    pub preprocess: PreprocessSpec,
    pub text: TextSpec,
    pub scoring: Scoring,
}

impl ModelSpec {
    /// What a format-1 bundle means: CLIP throughout, softmax at `logit_scale`.
    pub fn clip(logit_scale: f32) -> Self {
        ModelSpec {
            family: Family::Clip,
            preprocess: PreprocessSpec::CLIP,
            text: TextSpec::CLIP,
            scoring: Scoring::softmax(logit_scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_scores_each_phrase_alone() {
        let s = Scoring::sigmoid(10.0, -2.0);
        let p = s.probabilities(&[0.2, 0.0, -1.0]);
        assert!((p[0] - 0.5).abs() < 1e-7);
        assert!((p[1] - 1.0 / (1.0 + 2f32.exp())).abs() < 1e-7);
        assert!((p[2] - (-12f32).exp() / (1.0 + (-12f32).exp())).abs() < 1e-9);
        // Adding a phrase does not change the others.
        assert_eq!(s.probabilities(&[0.2])[0], p[0]);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = Scoring::softmax(100.0).probabilities(&[0.6, 0.8, -1.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
