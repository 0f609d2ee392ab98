//! `clip_perception`: the CLIP toolbox on the command line — zero-shot classification,
//! localisation of phrases, bag replay through the node's per-frame path, an image index
//! with text search, the zero-shot benchmark, tokenization, image/text embeddings, the
//! exact preprocessed tensor, bundle info. This file parses and dispatches; each command
//! group is a file of `cli/`. Results go to stdout (a table, or one JSON object per line
//! with `--json`); logs go to stderr; any error is reported once, as one `error:` line.
//! Commands over many images go on past an image that cannot be read (one `error:` line
//! for it, and in `--json` output an `{"image", "error"}` line in its place) unless `--fail-fast`. Exit codes: 0 all good,
//! 1 some inputs failed or the run failed (model, output), 2 usage.

mod cli;

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use cli::{classify, embed, eval, index, info, locate, replay, InputsFailed};

#[derive(Parser)]
#[command(
    name = "clip_perception",
    version,
    about = "CLIP zero-shot perception toolbox (tract on the CPU)"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-shot classification of images against task phrases.
    Classify(classify::ClassifyArgs),
    /// Where each phrase is in images: score, point and box per phrase (crops of the image
    /// scored like whole images, combined into a relevance map).
    Locate(locate::LocateArgs),
    /// Token ids of texts, as the text encoder gets them.
    Tokenize(embed::TextArgs),
    /// Image embeddings (projected, unnormalised).
    EmbedImage(embed::ImageArgs),
    /// Text embeddings (projected, unnormalised), texts used as given.
    EmbedText(embed::TextArgs),
    /// Write the exact tensor the image encoder sees for one image, as .npy [1,3,S,S].
    Preprocess(embed::PreprocessArgs),
    /// Replay recorded image topics of a rosbag2 bag (one, or several as the node's cameras)
    /// through the node's per-frame path.
    Replay(replay::ReplayArgs),
    /// Embed every image under a folder into an index (re-runs encode only what changed).
    Index(index::IndexArgs),
    /// The images of an index most similar to a text (or, with --image, to an image).
    Search(index::SearchArgs),
    /// Zero-shot benchmark on a labelled set (ImageFolder layout, or CIFAR-10/100 binary).
    Eval(eval::EvalArgs),
    /// Show a bundle's manifest, graph inputs/outputs and file sizes.
    Info(info::InfoArgs),
}

fn run(command: Command) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match command {
        Command::Classify(args) => classify::classify(args, &mut out)?,
        Command::Locate(args) => locate::locate(args, &mut out)?,
        Command::Tokenize(args) => embed::tokenize(args, &mut out)?,
        Command::EmbedImage(args) => embed::embed_image(args, &mut out)?,
        Command::EmbedText(args) => embed::embed_text(args, &mut out)?,
        Command::Preprocess(args) => embed::preprocess(args)?,
        Command::Replay(args) => replay::replay(args)?,
        Command::Index(args) => index::index(args)?,
        Command::Search(args) => index::search(args, &mut out)?,
        Command::Eval(args) => eval::eval(args, &mut out)?,
        Command::Info(args) => info::info(args, &mut out)?,
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.quiet {
        log::LevelFilter::Error
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("CLIP_PERCEPTION_LOG")
        .target(env_logger::Target::Stderr)
        .init();
    if let Err(err) = run(cli.command) {
        match err.downcast_ref::<InputsFailed>() {
            // Each failed input already has its `error:` line.
            Some(summary) => eprintln!("{summary}"),
            None => eprintln!("error: {err:#}"),
        }
        std::process::exit(1);
    }
}
