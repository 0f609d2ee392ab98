//! The engine every entry point calls: a validated bundle, its image encoder (with exact
//! preprocessing) and its text side (tokenizer, lazily loaded text encoder, embedding cache).
//! The node, bag replay and the CLI are thin callers; the image and text halves are separate
//! values so a caller can run them on different threads (frames vs. queries).

use std::path::{Path, PathBuf};

use crate::bundle::{ModelBundle, Precision};
use crate::encoder::{Embeddings, EncoderOptions, ImageEncoder};
use crate::error::Result;
use crate::frame::RgbImage;
use crate::labels::{LabelMatrix, Prompts, TextEmbedder};
use crate::scoring::{score, Scores};

/// How to load an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Threads for each encoder's matrix products.
    pub threads: usize,
    /// Root of the on-disk text embedding cache (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Images per image-encoder forward pass.
    pub batch_size: usize,
    /// Image encoder graph (`None`: int8 where the bundle has one, else fp32).
    pub precision: Option<Precision>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 1,
            cache_dir: None,
            batch_size: 8,
            precision: None,
        }
    }
}

/// A loaded CLIP model, ready to embed images and text and to score them.
pub struct ClipEngine {
    pub bundle: ModelBundle,
    pub image: ImageEncoder,
    pub text: TextEmbedder,
    batch_size: usize,
}

impl ClipEngine {
    /// Opens and validates the bundle in `dir`, loads the image encoder and the tokenizer.
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self> {
        let bundle = ModelBundle::open(dir)?;
        let encoder_options = EncoderOptions {
            threads: options.threads.max(1),
            precision: options.precision,
        };
        let text = TextEmbedder::new(&bundle, encoder_options, options.cache_dir.as_deref())?;
        let image = ImageEncoder::load(&bundle, encoder_options)?;
        Ok(ClipEngine {
            bundle,
            image,
            text,
            batch_size: options.batch_size.max(1),
        })
    }

    /// Raw image embeddings, encoded `batch_size` images per forward pass.
    pub fn embed_images(&mut self, images: &[RgbImage]) -> Result<Embeddings> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.batch_size) {
            out.extend(self.image.encode(chunk)?);
        }
        Ok(out)
    }

    /// The label matrix of `phrases` (see [`TextEmbedder::label_matrix`]).
    pub fn label_matrix(&mut self, phrases: &[String], prompts: &Prompts) -> Result<LabelMatrix> {
        self.text.label_matrix(phrases, prompts)
    }

    /// Zero-shot scores of each image against the labels.
    pub fn classify(&mut self, images: &[RgbImage], labels: &LabelMatrix) -> Result<Vec<Scores>> {
        Ok(self
            .embed_images(images)?
            .iter()
            .map(|e| score(labels, e))
            .collect())
    }
}
