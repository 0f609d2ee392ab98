//! `index` (embed every image under a folder, re-encoding only what changed) and `search`
//! (the images of an index most similar to a text or an image).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{inputs_done, progress_bar, BatchArgs, ModelArgs};
use clip_perception::image::load_image_file;
use clip_perception::index::{Index, IndexModel};
use clip_perception::text::prompts::fill_template;
use clip_perception::text::Prompts;
use clip_perception::EngineBuilder;

#[derive(Args)]
pub struct IndexArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image folder (searched recursively: jpg, jpeg, png, bmp, webp, gif).
    dir: PathBuf,
    /// Index folder (created, or updated in place).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    batch: BatchArgs,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The model must be the index's (`--model`, else the default model lookup).
    #[command(flatten)]
    model: ModelArgs,
    /// Index folder made by `index`.
    index: PathBuf,
    /// What to look for, as text (used as given; see --template).
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    query: Option<String>,
    /// Look for images like this one instead of a text.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Prompt template for the text (`{}` marks the query), e.g. "a photo of {}."
    #[arg(long)]
    template: Option<String>,
    /// Results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// One JSON object per result: {"path", "score", "rank"}.
    #[arg(long)]
    json: bool,
}

pub fn index(args: IndexArgs) -> Result<()> {
    let batch_size = args.batch.get();
    let mut engine = EngineBuilder::open(args.model.engine_options(batch_size))?.build()?;
    let bar = progress_bar(0);
    let stats = clip_perception::index::update(
        &mut engine,
        &args.dir,
        &args.out,
        batch_size,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    for skipped in &stats.skipped {
        eprintln!("error: {}", skipped.error);
    }
    eprintln!(
        "{}: {} images encoded, {} unchanged, {} removed, {} unreadable (skipped)",
        args.out.display(),
        stats.encoded,
        stats.reused,
        stats.removed,
        stats.skipped.len()
    );
    let total = stats.encoded + stats.reused + stats.skipped.len();
    inputs_done(stats.skipped.len(), total)
}

pub fn search(args: SearchArgs, out: &mut impl Write) -> Result<()> {
    let index = Index::open(&args.index)?;
    let builder = args.model.open()?;
    index.check_model(
        &args.index,
        &IndexModel::of(builder.bundle()),
        "pass the index's model with --model",
    )?;
    let query = match (&args.image, &args.query) {
        (Some(image), _) => {
            let image = load_image_file(image)?;
            let mut encoder = builder.image_encoder()?;
            encoder.encode(std::slice::from_ref(&image))?.remove(0)
        }
        (None, Some(text)) => {
            let text = match &args.template {
                Some(t) => {
                    Prompts::single(t)?; // checks the template has its `{}`
                    fill_template(t, text)
                }
                None => text.clone(),
            };
            builder
                .text_embedder()?
                .embed_texts(&[text], false)?
                .remove(0)
        }
        (None, None) => unreachable!("clap requires a query or --image"),
    };
    for hit in index.search(&query, args.k)? {
        let path = index.manifest.root.join(&hit.path).display().to_string();
        if args.json {
            writeln!(
                out,
                "{}",
                json!({"path": path, "score": hit.score, "rank": hit.rank})
            )?;
        } else {
            writeln!(out, "{:>3}. {:.4}  {path}", hit.rank, hit.score)?;
        }
    }
    Ok(())
}
