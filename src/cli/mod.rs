//! The command line's parts, one file per command group; `main.rs` only parses and
//! dispatches. What every command shares lives here: [`ModelArgs`] (the one way a command
//! names its model, threads and precision), the one batch-size flag, the batch of images
//! that survives a bad file, and the progress bar shown on a terminal only. Library logic
//! stays in the library; these files turn arguments into calls and results into output.

pub mod classify;
pub mod embed;
pub mod eval;
pub mod index;
pub mod info;
pub mod locate;
pub mod replay;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;

use clip_perception::engine::DEFAULT_BATCH_SIZE;
use clip_perception::image::load_image_file;
use clip_perception::text::cache::cache_root;
use clip_perception::text::phrases::check_phrases;
use clip_perception::text::{parse_phrases, Prompts};
use clip_perception::{EngineBuilder, EngineOptions, Precision, RgbImage};

/// The model a command runs, and how.
#[derive(Args)]
pub struct ModelArgs {
    /// Model bundle folder (default: $CLIP_PERCEPTION_MODEL, else the installed
    /// share/clip_perception/models/tabletop, else the source tree's models/tabletop;
    /// replay: the params file's `model_dir` first).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Threads for the encoders' matrix products (default: 1; replay: the params file's
    /// `threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Image encoder graph: fp32 or int8 (default: int8 where the bundle has one; replay:
    /// the params file's `precision`).
    #[arg(long)]
    pub precision: Option<Precision>,
}

impl ModelArgs {
    /// The engine options of these arguments (no text cache), `batch_size` images per pass.
    pub fn engine_options(&self, batch_size: usize) -> EngineOptions {
        EngineOptions {
            model: self.model.clone(),
            precision: self.precision,
            threads: self.threads.unwrap_or(1),
            batch_size: batch_size.max(1),
            ..EngineOptions::default()
        }
    }

    /// The model opened and checked (no graph loaded yet), for one image per pass.
    pub fn open(&self) -> Result<EngineBuilder> {
        Ok(EngineBuilder::open(self.engine_options(1))?)
    }
}

/// The phrases a command scores, how they become prompts, and the text embedding cache.
#[derive(Args)]
pub struct PhraseArgs {
    /// Task phrases separated by `;` (or newlines), e.g. "red cup; blue ball".
    #[arg(long)]
    pub labels: String,
    /// Prompt template with `{}` for the phrase.
    #[arg(long, conflicts_with = "ensemble")]
    pub template: Option<String>,
    /// Prompt ensemble: `imagenet`, `cifar10` or a file with one template per line.
    #[arg(long)]
    pub ensemble: Option<String>,
    /// Text embedding cache folder (default: $XDG_CACHE_HOME/clip_perception).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the text embedding cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl PhraseArgs {
    /// The phrases (checked) and their prompts.
    pub fn phrases(&self) -> Result<(Vec<String>, Prompts)> {
        let phrases = parse_phrases(&self.labels);
        let prompts = Prompts::choose(self.template.as_deref(), self.ensemble.as_deref())?;
        check_phrases(&phrases, None).map_err(clip_perception::Error::from)?;
        Ok((phrases, prompts))
    }

    /// The text embedding cache folder, if the cache is on.
    pub fn cache(&self) -> Option<PathBuf> {
        cache_root(!self.no_cache, self.cache_dir.as_deref())
    }
}

/// How many images go through the image encoder at once.
#[derive(Args)]
pub struct BatchArgs {
    /// Images per image-encoder pass (a long list is streamed batch by batch).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
}

impl BatchArgs {
    pub fn get(&self) -> usize {
        self.batch_size.max(1)
    }
}

/// Some inputs of a batch command failed (each was reported where it stood).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} inputs failed")]
pub struct InputsFailed {
    pub failed: usize,
    pub total: usize,
}

/// The end of a batch command: an error if any input failed.
pub fn inputs_done(failed: usize, total: usize) -> Result<()> {
    if failed > 0 {
        return Err(InputsFailed { failed, total }.into());
    }
    Ok(())
}

/// A progress bar of `len` steps on stderr when it is a terminal, else a hidden one.
pub fn progress_bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    }
}

/// The images of one batch that could be read, and per path where its result goes: the
/// index of its image, or why it failed.
pub struct Batch<'p> {
    paths: &'p [PathBuf],
    pub images: Vec<RgbImage<'static>>,
    slots: Vec<std::result::Result<usize, String>>,
}

impl<'p> Batch<'p> {
    /// Reads and decodes `paths`; a file that fails ends the run with `fail_fast`, else
    /// it is reported (one `error:` line) and counted in `failed`.
    pub fn load(paths: &'p [PathBuf], fail_fast: bool, failed: &mut usize) -> Result<Batch<'p>> {
        let mut images = Vec::with_capacity(paths.len());
        let mut slots = Vec::with_capacity(paths.len());
        for path in paths {
            match load_image_file(path) {
                Ok(image) => {
                    slots.push(Ok(images.len()));
                    images.push(image);
                }
                Err(e) if fail_fast => return Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    *failed += 1;
                    slots.push(Err(e.to_string()));
                }
            }
        }
        Ok(Batch {
            paths,
            images,
            slots,
        })
    }

    /// The paths that were read, each with the index of its image.
    pub fn loaded(&self) -> impl Iterator<Item = (&Path, usize)> + '_ {
        self.paths
            .iter()
            .zip(&self.slots)
            .filter_map(|(p, s)| s.as_ref().ok().map(|&i| (p.as_path(), i)))
    }

    /// Writes each path's result (`write(path, index of its image)`) or, with `--json`, its
    /// error line, in input order.
    pub fn write(
        &self,
        json_out: bool,
        out: &mut impl Write,
        mut write: impl FnMut(&Path, usize, &mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        for (path, slot) in self.paths.iter().zip(&self.slots) {
            match slot {
                Ok(i) => write(path, *i, out)?,
                Err(e) if json_out => writeln!(
                    out,
                    "{}",
                    json!({"image": path.display().to_string(), "error": e})
                )?,
                Err(_) => {}
            }
        }
        Ok(())
    }
}
