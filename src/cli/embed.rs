//! The engine's stages one at a time: `tokenize` (token ids), `embed-image` and
//! `embed-text` (projected, unnormalised embeddings) and `preprocess` (the exact tensor the
//! image encoder sees, as .npy).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::{inputs_done, Batch, BatchArgs, ModelArgs};
use clip_perception::image::load_image_file;
use clip_perception::{npy, EngineBuilder};

#[derive(Args)]
pub struct ImageArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    batch: BatchArgs,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

#[derive(Args)]
pub struct TextArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(required = true)]
    texts: Vec<String>,
    /// One JSON object per text on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PreprocessArgs {
    #[command(flatten)]
    model: ModelArgs,
    image: PathBuf,
    /// Output .npy file.
    #[arg(long)]
    out: PathBuf,
}

pub fn tokenize(args: TextArgs, out: &mut impl Write) -> Result<()> {
    let tokenizer = args.model.open()?.tokenizer()?;
    for text in &args.texts {
        let ids = tokenizer.encode(text)?;
        if args.json {
            writeln!(out, "{}", json!({"text": text, "ids": ids}))?;
        } else {
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            writeln!(out, "{}", ids.join(" "))?;
        }
    }
    Ok(())
}

pub fn embed_image(args: ImageArgs, out: &mut impl Write) -> Result<()> {
    let options = args.model.engine_options(args.batch.get());
    let mut engine = EngineBuilder::open(options)?.build()?;
    let mut failed = 0;
    for paths in args.images.chunks(args.batch.get()) {
        let batch = Batch::load(paths, args.fail_fast, &mut failed)?;
        let vectors = engine.embed_images(&batch.images)?;
        batch.write(args.json, out, |path, i, out| {
            let name = [path.display().to_string()];
            write_vectors(out, "image", &name, &vectors[i..=i], args.json)
        })?;
    }
    out.flush().context("writing to stdout")?;
    inputs_done(failed, args.images.len())
}

pub fn embed_text(args: TextArgs, out: &mut impl Write) -> Result<()> {
    let mut text = args.model.open()?.text_embedder()?;
    let vectors = text.embed_texts(&args.texts, false)?;
    write_vectors(out, "text", &args.texts, &vectors, args.json)
}

pub fn preprocess(args: PreprocessArgs) -> Result<()> {
    let mut pre = args.model.open()?.preprocessor();
    let img = load_image_file(&args.image)?;
    let mut tensor = vec![0f32; pre.tensor_len()];
    pre.preprocess_into(&img, &mut tensor);
    let size = pre.size();
    npy::write_f32(&args.out, &[1, 3, size, size], &tensor)?;
    log::info!("wrote {}", args.out.display());
    Ok(())
}

fn write_vectors(
    out: &mut dyn Write,
    key: &str,
    names: &[String],
    vectors: &[Vec<f32>],
    json_out: bool,
) -> Result<()> {
    for (name, v) in names.iter().zip(vectors) {
        if json_out {
            writeln!(out, "{}", json!({key: name, "embedding": v}))?;
        } else {
            let values: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            writeln!(out, "{name}\t{}", values.join(" "))?;
        }
    }
    Ok(())
}
