//! The text side's engine: task phrases under prompt templates, through the tokenizer, the
//! text encoder (loaded only when a prompt is not cached) and the embedding cache, into the
//! [`LabelMatrix`] every frame is scored against. Text is encoded only here, never on the
//! frame path.

use std::path::Path;

use nalgebra::DMatrix;

use super::cache::EmbeddingCache;
use super::labels::{normalize, LabelMatrix};
use super::phrases::check_phrases;
use super::prompts::{fill_template, Prompts};
use super::tokenizer::TextTokenizer;
use crate::error::Result;
use crate::model::bundle::ModelBundle;
use crate::model::encoder::{Embeddings, EncoderOptions, TextEncoder};

/// Counters of the text side, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Forward passes of the text encoder.
    pub encoder_calls: u64,
    /// Prompts embedded by the encoder.
    pub prompts_encoded: u64,
    /// Prompts served from the cache.
    pub cache_hits: u64,
}

/// Everything that turns text into embeddings: tokenizer, the text encoder (loaded on
/// first need, so a fully cached phrase set never loads it), and the cache.
pub struct TextEmbedder {
    bundle: ModelBundle,
    tokenizer: TextTokenizer,
    encoder: Option<TextEncoder>,
    options: EncoderOptions,
    cache: Option<EmbeddingCache>,
    stats: TextStats,
    /// Prompts per encoder call.
    pub batch_size: usize,
}

impl TextEmbedder {
    pub fn new(
        bundle: &ModelBundle,
        options: EncoderOptions,
        cache_root: Option<&Path>,
    ) -> Result<Self> {
        let tokenizer = TextTokenizer::for_bundle(bundle)?;
        Ok(TextEmbedder {
            bundle: bundle.clone(),
            tokenizer,
            encoder: None,
            options,
            cache: cache_root.map(|root| EmbeddingCache::new(root, bundle)),
            stats: TextStats::default(),
            batch_size: 32,
        })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn stats(&self) -> TextStats {
        self.stats
    }

    /// Frees the text encoder (it is loaded again when an uncached prompt needs it), for
    /// long-running callers that keep the image encoder resident and want the memory back.
    pub fn unload_encoder(&mut self) {
        self.encoder = None;
    }

    /// Whether the text encoder is loaded.
    pub fn encoder_loaded(&self) -> bool {
        self.encoder.is_some()
    }

    fn encoder(&mut self) -> Result<&mut TextEncoder> {
        if self.encoder.is_none() {
            self.encoder = Some(TextEncoder::load(&self.bundle, self.options)?);
        }
        Ok(self.encoder.as_mut().expect("loaded above"))
    }

    /// Raw (unnormalised) embeddings of texts, encoded at each batch's real token length
    /// (or at the full context when `full_context`); never cached.
    pub fn embed_texts<S: AsRef<str>>(
        &mut self,
        texts: &[S],
        full_context: bool,
    ) -> Result<Embeddings> {
        let ids = self.tokenizer.encode_batch(texts)?;
        let pad_to = full_context.then_some(self.tokenizer.context_length());
        let batch = self.batch_size.max(1);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(batch) {
            let embeddings = self.encoder()?.encode_ids(chunk, pad_to)?;
            self.stats.encoder_calls += 1;
            self.stats.prompts_encoded += chunk.len() as u64;
            out.extend(embeddings);
        }
        Ok(out)
    }

    /// The label matrix of `phrases` under `prompts`, using and filling the cache.
    pub fn label_matrix(&mut self, phrases: &[String], prompts: &Prompts) -> Result<LabelMatrix> {
        check_phrases(phrases, None)?;
        let dim = self.bundle.manifest.embed_dim;
        let templates = prompts.templates();
        // (phrase, template) -> raw embedding, filled from the cache, then the encoder.
        let mut raw: Vec<Option<Vec<f32>>> = Vec::with_capacity(phrases.len() * templates.len());
        let mut missing: Vec<(usize, String)> = Vec::new();
        for phrase in phrases {
            for template in templates {
                let cached = self.cache.as_ref().and_then(|c| c.get(template, phrase));
                if cached.is_some() {
                    self.stats.cache_hits += 1;
                } else {
                    missing.push((raw.len(), fill_template(template, phrase)));
                }
                raw.push(cached);
            }
        }
        if !missing.is_empty() {
            let texts: Vec<&str> = missing.iter().map(|(_, t)| t.as_str()).collect();
            let embeddings = self.embed_texts(&texts, false)?;
            for ((slot, _), embedding) in missing.iter().zip(embeddings) {
                let (p, t) = (slot / templates.len(), slot % templates.len());
                if let Some(cache) = &self.cache {
                    cache.put(&templates[t], &phrases[p], &embedding);
                }
                raw[*slot] = Some(embedding);
            }
        }
        let mut matrix = DMatrix::<f32>::zeros(phrases.len(), dim);
        for (p, per_phrase) in raw.chunks(templates.len()).enumerate() {
            let mut mean = vec![0f32; dim];
            for embedding in per_phrase {
                let mut e = embedding.clone().expect("every prompt was filled");
                normalize(&mut e);
                mean.iter_mut().zip(&e).for_each(|(m, v)| *m += v);
            }
            normalize(&mut mean);
            matrix
                .row_mut(p)
                .iter_mut()
                .zip(&mean)
                .for_each(|(m, v)| *m = *v);
        }
        Ok(LabelMatrix {
            labels: phrases.to_vec(),
            matrix,
            scoring: self.bundle.spec().scoring,
        })
    }
}
