//! The engine every entry point calls. [`EngineOptions`] are resolved in one place
//! ([`EngineBuilder::open`]: model folder, precision, threads, cache folder) into the parts a
//! caller needs: the whole [`ClipEngine`] (CLI, tools), or its image and text halves apart
//! (the node runs them on different threads: frames vs. queries). Per frame, every caller
//! runs the same [`step::FrameStep`] after the image encoder, so offline numbers equal live
//! numbers by construction.

pub mod locate;
pub mod model_dir;
pub mod scoring;
pub mod step;

use std::path::PathBuf;

use crate::error::Result;
use crate::image::frame::RgbImage;
use crate::image::preprocess::Preprocessor;
use crate::model::bundle::{ModelBundle, Precision};
use crate::model::encoder::{Embeddings, EncoderOptions, ImageEncoder};
use crate::text::prompts::Prompts;
use crate::text::tokenizer::TextTokenizer;
use crate::text::{LabelMatrix, TextEmbedder};

use self::scoring::{score, Scores};

/// Everything that decides how an engine is built. Defaults: the default model (see
/// [`model_dir`]), the bundle's default precision, one thread, no text cache, batches of 8.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Model bundle folder; `None`: the default model ([`model_dir::resolve_model_dir`]).
    pub model: Option<PathBuf>,
    /// Image encoder graph; `None`: int8 where the bundle has one, else fp32.
    pub precision: Option<Precision>,
    /// Threads for the image encoder's matrix products (0 or 1: the caller's thread).
    pub threads: usize,
    /// Threads for the text encoder; `None`: as `threads`.
    pub text_threads: Option<usize>,
    /// Root of the on-disk text embedding cache (`None`: no cache); see
    /// [`crate::text::cache::cache_root`].
    pub cache_dir: Option<PathBuf>,
    /// Images per image-encoder forward pass.
    pub batch_size: usize,
}

/// Images per image-encoder pass unless a caller says otherwise: the one default of the
/// engine and of every batch command (`--batch-size`).
pub const DEFAULT_BATCH_SIZE: usize = 8;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            model: None,
            precision: None,
            threads: 1,
            text_threads: None,
            cache_dir: None,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// An opened, validated bundle with every option resolved; it builds the engine's parts.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    options: EngineOptions,
    bundle: ModelBundle,
    precision: Precision,
}

impl EngineBuilder {
    /// Finds the model folder, opens and validates its bundle (manifest, files present; each
    /// file's checksum is checked when it is loaded), and
    /// resolves the precision (an int8 request on a bundle without int8 fails here, as
    /// [`crate::Error::PrecisionUnavailable`]). Loads no graph.
    pub fn open(options: EngineOptions) -> Result<Self> {
        let dir = model_dir::resolve_model_dir(options.model.as_deref())?;
        let bundle = ModelBundle::open(&dir)?;
        Self::with_bundle(options, bundle)
    }

    fn with_bundle(options: EngineOptions, bundle: ModelBundle) -> Result<Self> {
        keep_freed_buffers();
        let precision = options
            .precision
            .unwrap_or_else(|| bundle.default_precision());
        bundle.image_encoder_graph(precision)?;
        Ok(EngineBuilder {
            options,
            bundle,
            precision,
        })
    }

    /// The same bundle (not read again) with another image precision and thread count.
    pub fn with_encoder(&self, precision: Option<Precision>, threads: usize) -> Result<Self> {
        let options = EngineOptions {
            precision,
            threads,
            ..self.options.clone()
        };
        Self::with_bundle(options, self.bundle.clone())
    }

    pub fn bundle(&self) -> &ModelBundle {
        &self.bundle
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The image encoder graph the engine runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The bundle's exact preprocessing (what the image encoder applies itself).
    pub fn preprocessor(&self) -> Preprocessor {
        self.bundle.preprocessor()
    }

    /// The bundle's tokenizer.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        TextTokenizer::for_bundle(&self.bundle)
    }

    /// The text side: tokenizer, cache, and a text encoder loaded on first need.
    pub fn text_embedder(&self) -> Result<TextEmbedder> {
        let threads = self.options.text_threads.unwrap_or(self.options.threads);
        TextEmbedder::new(
            &self.bundle,
            EncoderOptions::with_threads(threads),
            self.options.cache_dir.as_deref(),
        )
    }

    /// The image encoder of the resolved precision, with its preprocessing.
    pub fn image_encoder(&self) -> Result<ImageEncoder> {
        ImageEncoder::load(
            &self.bundle,
            EncoderOptions {
                threads: self.options.threads,
                precision: Some(self.precision),
            },
        )
    }

    /// The whole engine: the text side (tokenizer; the text encoder when first needed),
    /// then the image encoder.
    pub fn build(self) -> Result<ClipEngine> {
        let text = self.text_embedder()?;
        let image = self.image_encoder()?;
        Ok(ClipEngine {
            batch_size: self.options.batch_size.max(1),
            bundle: self.bundle,
            image,
            text,
        })
    }
}

/// glibc's malloc thresholds the engine sets ([`keep_freed_buffers`]): buffers up to
/// `mmap` bytes come from the heap, and free heap top is given back past `trim` bytes.
const MALLOC_THRESHOLDS: (i32, i32) = (32 << 20, 256 << 20);

/// Lets glibc's malloc keep the buffers a forward pass frees for the next one, once per
/// process (every entry point builds its engine through [`EngineBuilder`]); returns whether
/// the allocator took the settings (true off glibc, where there is nothing to set).
///
/// Each op's output is a fresh tensor (5 MB for a batch of 8 phrases at 77 tokens x 2048).
/// With glibc's defaults a buffer that large may be `mmap`ed, and the heap's free top is
/// given back to the OS, so the next pass touches new pages: page faults, which the
/// kernel serialises when two threads take them. On a 2-vCPU AMD EPYC that cost about a
/// fifth of the fp32 text encoder's time at batch 8, 77 tokens, 2 threads (LayerNorm 2x
/// slower on 2 threads than on 1); with these thresholds (glibc's maximum for `mmap`, 256
/// MiB for trimming) the pass went from 519-576 to 417-506 ms in three alternating pairs.
/// Memory a long-running process no longer needs is still given back by
/// [`crate::node::release_freed_memory`] (`malloc_trim`), which the node calls after loading.
pub fn keep_freed_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SET.get_or_init(|| {
            let (mmap, trim) = MALLOC_THRESHOLDS;
            // SAFETY: mallopt only changes the allocator's thresholds; no preconditions.
            let ok = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
            };
            if !ok {
                log::warn!("glibc malloc refused the engine's thresholds; keeping its defaults");
            }
            ok
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
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
    /// [`EngineBuilder::open`] then [`EngineBuilder::build`].
    pub fn load(options: EngineOptions) -> Result<Self> {
        EngineBuilder::open(options)?.build()
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

    /// Every phrase's location in `image`, best first ([`locate::locate_image`]).
    pub fn locate(
        &mut self,
        image: &RgbImage,
        labels: &LabelMatrix,
        settings: &crate::locate::LocateSettings,
    ) -> Result<Vec<crate::locate::Location>> {
        locate::locate_image(&mut self.image, self.batch_size, image, labels, settings)
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

#[cfg(test)]
mod tests {
    /// glibc takes the thresholds (its `mmap` maximum is 32 MiB on 64-bit: a larger value
    /// would be refused and the defaults kept); asking twice is harmless.
    #[test]
    fn the_allocator_takes_the_engine_thresholds() {
        assert!(super::keep_freed_buffers());
        assert!(super::keep_freed_buffers());
    }
}
