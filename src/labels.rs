//! The text side of zero-shot matching: task phrases, prompt templates and ensembles, the
//! on-disk embedding cache, and the [`LabelMatrix`] (one unit row per phrase) that every
//! frame is scored against. Text is encoded only here, never on the frame path.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;

use crate::bundle::{hex_sha256, ModelBundle};
use crate::encoder::{Embeddings, EncoderOptions, TextEncoder};
use crate::error::{Error, Result};
use crate::prompt_sets;
use crate::text::tokenizer::ClipTokenizer;

/// The template CLIP's paper uses for single-prompt zero-shot classification.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";
/// Longest accepted phrase, in characters.
pub const MAX_PHRASE_CHARS: usize = 256;

/// Splits a phrase list (`red cup; blue ball` or one per line) into trimmed, non-empty,
/// de-duplicated phrases, in order.
pub fn parse_phrases(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for phrase in list
        .split([';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !out.iter().any(|p| p == phrase) {
            out.push(phrase.to_string());
        }
    }
    out
}

/// Checks a phrase list: not empty, no phrase longer than [`MAX_PHRASE_CHARS`].
pub fn validate_phrases(phrases: &[String]) -> Result<()> {
    if phrases.is_empty() {
        return Err(Error::InvalidInput(
            "labels: the phrase list is empty (expected e.g. \"red cup; blue ball\")".into(),
        ));
    }
    if let Some(p) = phrases
        .iter()
        .find(|p| p.chars().count() > MAX_PHRASE_CHARS)
    {
        return Err(Error::InvalidInput(format!(
            "labels: phrase of {} characters exceeds {MAX_PHRASE_CHARS}: {:?}...",
            p.chars().count(),
            p.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// The prompt templates a phrase is embedded with: one template, or an ensemble whose
/// normalised embeddings are averaged and renormalised, as in the CLIP paper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    name: String,
    templates: Vec<String>,
}

impl Prompts {
    /// One template containing `{}` where the phrase goes.
    pub fn single(template: &str) -> Result<Self> {
        Self::new(template.to_string(), vec![template.to_string()])
    }

    /// A built-in ensemble (`imagenet`, `cifar10`) or a file with one template per line
    /// (blank lines and lines starting with `#` are skipped).
    pub fn ensemble(name_or_file: &str) -> Result<Self> {
        let builtin = match name_or_file {
            "imagenet" => Some(prompt_sets::IMAGENET),
            "cifar10" => Some(prompt_sets::CIFAR10),
            _ => None,
        };
        if let Some(set) = builtin {
            return Self::new(
                name_or_file.to_string(),
                set.iter().map(|s| s.to_string()).collect(),
            );
        }
        let path = Path::new(name_or_file);
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::InvalidInput(format!(
                    "ensemble `{name_or_file}`: not a built-in set (imagenet, cifar10) and no such file"
                ))
            } else {
                Error::io(path, e)
            }
        })?;
        let templates: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if templates.is_empty() {
            return Err(Error::Config {
                path: path.to_path_buf(),
                message: "holds no templates (expected one template with `{}` per line)".into(),
            });
        }
        Self::new(name_or_file.to_string(), templates)
    }

    fn new(name: String, templates: Vec<String>) -> Result<Self> {
        if let Some(bad) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::InvalidInput(format!(
                "template {bad:?} has no `{{}}` placeholder for the phrase (expected e.g. \"a photo of a {{}}.\")"
            )));
        }
        Ok(Prompts { name, templates })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn templates(&self) -> &[String] {
        &self.templates
    }
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts::single(DEFAULT_TEMPLATE).expect("the default template has a placeholder")
    }
}

/// The default root of the text embedding cache: `$XDG_CACHE_HOME/clip_perception`, else
/// `~/.cache/clip_perception` (`None` if neither variable is set).
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("clip_perception"))
}

/// Fills a template's `{}` with a phrase.
pub fn fill_template(template: &str, phrase: &str) -> String {
    template.replace("{}", phrase)
}

/// Unit vectors, one row per phrase, with the model's logit scale.
#[derive(Debug, Clone)]
pub struct LabelMatrix {
    pub labels: Vec<String>,
    /// n_labels x embed_dim, unit rows.
    pub matrix: DMatrix<f32>,
    pub logit_scale: f32,
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

/// Text embeddings on disk, one small file per (template, phrase), under a folder named
/// by the bundle's manifest sha256, so a restart or a repeated query costs no encoder call.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
}

const CACHE_MAGIC: &[u8; 4] = b"CLPE";

impl EmbeddingCache {
    pub fn new(root: &Path, bundle: &ModelBundle) -> Self {
        EmbeddingCache {
            dir: root.join(&bundle.manifest_sha256),
            dim: bundle.manifest.embed_dim,
        }
    }

    fn entry(&self, template: &str, phrase: &str) -> PathBuf {
        let key = hex_sha256(format!("{template}\0{phrase}").as_bytes());
        self.dir.join(format!("{key}.emb"))
    }

    /// The cached raw embedding, or `None` (missing or unreadable entries are misses).
    pub fn get(&self, template: &str, phrase: &str) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.entry(template, phrase)).ok()?;
        let body = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
        if body.len() != 4 + self.dim * 4
            || u32::from_le_bytes(body[..4].try_into().ok()?) as usize != self.dim
        {
            log::warn!("embedding cache: ignoring a corrupt entry for {phrase:?}");
            return None;
        }
        Some(
            body[4..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Stores a raw embedding (write to a temporary file, then rename: readers never see
    /// half an entry). Failures are logged, not fatal: the cache is an optimisation.
    pub fn put(&self, template: &str, phrase: &str, embedding: &[f32]) {
        let path = self.entry(template, phrase);
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut bytes = Vec::with_capacity(8 + embedding.len() * 4);
            bytes.extend_from_slice(CACHE_MAGIC);
            bytes.extend_from_slice(&(embedding.len() as u32).to_le_bytes());
            embedding
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            log::warn!("embedding cache: cannot write {}: {e}", path.display());
        }
    }
}

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
    tokenizer: ClipTokenizer,
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
        let tokenizer =
            ClipTokenizer::from_file(&bundle.tokenizer_path(), bundle.manifest.context_length)?;
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

    pub fn tokenizer(&self) -> &ClipTokenizer {
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
        validate_phrases(phrases)?;
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
            logit_scale: self.bundle.manifest.logit_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_split_on_semicolons_and_newlines() {
        assert_eq!(
            parse_phrases(" red cup; blue ball\n\ngreen box;red cup;"),
            vec!["red cup", "blue ball", "green box"]
        );
        assert!(parse_phrases(" ; \n").is_empty());
        assert!(validate_phrases(&[]).is_err());
        assert!(validate_phrases(&["x".repeat(257)]).is_err());
    }

    #[test]
    fn templates_need_a_placeholder() {
        assert!(Prompts::single("a photo of a cup").is_err());
        assert_eq!(Prompts::ensemble("imagenet").unwrap().templates().len(), 80);
        assert_eq!(Prompts::ensemble("cifar10").unwrap().templates().len(), 18);
        assert!(Prompts::ensemble("no-such-set").is_err());
        assert_eq!(
            fill_template("a photo of a {}.", "red cup"),
            "a photo of a red cup."
        );
    }
}
