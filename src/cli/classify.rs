//! `classify`: zero-shot classification of image files against task phrases, as a table
//! or one JSON object per image, streamed batch by batch.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::{inputs_done, Batch, BatchArgs, ModelArgs, PhraseArgs};
use clip_perception::engine::scoring::Scores;
use clip_perception::{ClipEngine, EngineOptions, LabelMatrix};

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    phrases: PhraseArgs,
    /// How many labels to show per image (0 = all).
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    batch: BatchArgs,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

pub fn classify(args: ClassifyArgs, out: &mut impl Write) -> Result<()> {
    let (phrases, prompts) = args.phrases.phrases()?;
    let options = EngineOptions {
        cache_dir: args.phrases.cache(),
        ..args.model.engine_options(args.batch.get())
    };
    let mut engine = ClipEngine::load(options)?;
    let labels = engine.label_matrix(&phrases, &prompts)?;
    let k = if args.top_k == 0 {
        phrases.len()
    } else {
        args.top_k
    };
    // Decode, encode and print one batch at a time: a large folder is streamed.
    let mut failed = 0;
    for paths in args.images.chunks(args.batch.get()) {
        let batch = Batch::load(paths, args.fail_fast, &mut failed)?;
        let scores = engine.classify(&batch.images, &labels)?;
        batch.write(args.json, out, |path, i, out| {
            print_scores(path, &scores[i], &labels, k, args.json, out)
        })?;
        out.flush().context("writing to stdout")?;
    }
    let stats = engine.text.stats();
    log::info!(
        "text: {} prompts from cache, {} encoded in {} encoder calls",
        stats.cache_hits,
        stats.prompts_encoded,
        stats.encoder_calls
    );
    inputs_done(failed, args.images.len())
}

fn print_scores(
    path: &Path,
    s: &Scores,
    labels: &LabelMatrix,
    k: usize,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let top = s.top_k(k);
    if json_out {
        let top: Vec<_> = top
            .iter()
            .map(|r| json!({"label": labels.labels[r.index], "cosine": r.cosine, "probability": r.probability}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({"image": path.display().to_string(), "top": top})
        )?;
    } else {
        writeln!(out, "{}", path.display())?;
        let width = labels
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        for (rank, r) in top.iter().enumerate() {
            writeln!(
                out,
                "  {:>2}. {:<width$}  p={:.3}  cos={:.4}",
                rank + 1,
                labels.labels[r.index],
                r.probability,
                r.cosine
            )?;
        }
    }
    Ok(())
}
