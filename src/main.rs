//! `clip_perception`: the CLIP toolbox on the command line — zero-shot classification,
//! bag replay through the node's per-frame path, tokenization, image/text embeddings, the
//! exact preprocessed tensor, bundle info.
//! Results go to stdout (a table, or one JSON object per line with `--json`); logs go to
//! stderr; any error is reported once, as one `error:` line. Commands over many images go
//! on past an image that cannot be read (one `error:` line for it, and in `--json` output
//! an `{"image", "error"}` line in its place) unless `--fail-fast`. Exit codes: 0 all good,
//! 1 some inputs failed or the run failed (model, output), 2 usage.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use clip_perception::bag::Bag;
use clip_perception::bag::STRING_TYPE;
use clip_perception::engine::scoring::Scores;
use clip_perception::eval::{write_report, Evaluator, Truth};
use clip_perception::image::load_image_file;
use clip_perception::node::topics;
use clip_perception::node::{NodePlan, RosArgs};
use clip_perception::replay::results_bag::ResultsBag;
use clip_perception::replay::{choose_topic, FrameSelection, Replayer};
use clip_perception::ros_msgs::{decode_cdr, StringMsg};
use clip_perception::text::cache::cache_root;
use clip_perception::text::phrases::check_phrases;
use clip_perception::text::{parse_phrases, Prompts};
use clip_perception::{npy, EngineBuilder, EngineOptions, LabelMatrix, ModelBundle, Precision};
use clip_perception::{ClipEngine, RgbImage};
use indicatif::ProgressBar;

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
    Classify(ClassifyArgs),
    /// Token ids of texts, as the text encoder gets them.
    Tokenize(TextArgs),
    /// Image embeddings (projected, unnormalised).
    EmbedImage(ImageArgs),
    /// Text embeddings (projected, unnormalised), texts used as given.
    EmbedText(TextArgs),
    /// Write the exact tensor the image encoder sees for one image, as .npy [1,3,S,S].
    Preprocess {
        #[command(flatten)]
        model: ModelArgs,
        image: PathBuf,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replay a recorded image topic of a rosbag2 bag through the node's per-frame path.
    Replay(ReplayArgs),
    /// Embed every image under a folder into an index (re-runs encode only what changed).
    Index(IndexArgs),
    /// The images of an index most similar to a text (or, with --image, to an image).
    Search(SearchArgs),
    /// Zero-shot benchmark on a labelled set (ImageFolder layout, or CIFAR-10/100 binary).
    Eval(EvalArgs),
    /// Show a bundle's manifest, graph inputs/outputs and file sizes.
    Info {
        /// Bundle folder.
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// Model bundle folder (default: $CLIP_PERCEPTION_MODEL, else the installed
    /// share/clip_perception/models/tabletop, else the source tree's models/tabletop).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads for the encoders' matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Image encoder graph: fp32 or int8 (default: int8 where the bundle has one).
    #[arg(long)]
    precision: Option<Precision>,
}

impl ModelArgs {
    /// The engine options of these arguments (no text cache, one image per pass).
    fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            model: self.model.clone(),
            precision: self.precision,
            threads: self.threads,
            batch_size: 1,
            ..EngineOptions::default()
        }
    }

    fn open(&self) -> Result<EngineBuilder> {
        Ok(EngineBuilder::open(self.engine_options())?)
    }
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Task phrases separated by `;` (or newlines), e.g. "red cup; blue ball".
    #[arg(long)]
    labels: String,
    /// Prompt template with `{}` for the phrase.
    #[arg(long, conflicts_with = "ensemble")]
    template: Option<String>,
    /// Prompt ensemble: `imagenet`, `cifar10` or a file with one template per line.
    #[arg(long)]
    ensemble: Option<String>,
    /// How many labels to show per image (0 = all).
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Text embedding cache folder (default: $XDG_CACHE_HOME/clip_perception).
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the text embedding cache.
    #[arg(long)]
    no_cache: bool,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// rosbag2 bag folder (metadata.yaml + files), or a single .mcap or .db3 file.
    bag: PathBuf,
    /// Image topic (sensor_msgs/Image or CompressedImage); default: the bag's only one.
    #[arg(long)]
    topic: Option<String>,
    /// Model bundle folder (default: the params file's model_dir, else the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Task phrases separated by `;` (replace the params file's labels).
    #[arg(long, required_unless_present = "params_file")]
    labels: Option<String>,
    /// The node's ROS params file (labels, template, thresholds, smoothing, hysteresis, ...).
    #[arg(long)]
    params_file: Option<PathBuf>,
    /// Results: one JSON line per frame, in bag order (`-` for stdout).
    #[arg(long)]
    out: PathBuf,
    /// Start this many seconds after the topic's first message.
    #[arg(long)]
    start: Option<f64>,
    /// Stop this many seconds after the topic's first message.
    #[arg(long)]
    end: Option<f64>,
    /// Score every N-th frame.
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Frames per image-encoder pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Threads for the image encoder (default: the params file's `threads`).
    #[arg(long)]
    threads: Option<usize>,
    /// Image encoder graph: fp32 or int8 (default: the params file's `precision`).
    #[arg(long)]
    precision: Option<Precision>,
    /// Ground truth: CSV of `start,end,label` intervals in seconds of header stamp (labels
    /// separated by `;`, `none` for nothing); prints metrics and F1-best thresholds.
    #[arg(long, conflicts_with = "truth_topic")]
    truth: Option<PathBuf>,
    /// Ground truth from a std_msgs/String topic of the bag: each message's labels hold
    /// until the next message.
    #[arg(long)]
    truth_topic: Option<String>,
    /// Write an HTML report (index.html, metrics.json, confusion/timeline/pr plots) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also write the results as an MCAP bag (vision_msgs/Classification and the matches
    /// JSON as std_msgs/String, on the node's topics, at the frames' log times).
    #[arg(long)]
    out_bag: Option<PathBuf>,
}

#[derive(Args)]
struct IndexArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image folder (searched recursively: jpg, jpeg, png, bmp, webp, gif).
    dir: PathBuf,
    /// Index folder (created, or updated in place).
    #[arg(long)]
    out: PathBuf,
    /// Images per image-encoder pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An ImageFolder layout (one folder per class; names from the folders or classes.txt),
    /// or a CIFAR binary file (test_batch.bin, test.bin) or the folder holding it.
    data: PathBuf,
    /// Prompt template, `{}` marks the class name (default "a photo of a {}.").
    #[arg(long, conflicts_with = "ensemble")]
    template: Option<String>,
    /// Prompt ensemble: imagenet, cifar10, or a file with one template per line.
    #[arg(long)]
    ensemble: Option<String>,
    /// Also the accuracy of each template alone (prompt sensitivity).
    #[arg(long)]
    per_template: bool,
    /// How many of the most confident mistakes to list.
    #[arg(long, default_value_t = 10)]
    failures: usize,
    /// Use only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Images per image-encoder pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// One JSON object with every number on stdout.
    #[arg(long)]
    json: bool,
    /// Write an HTML report (index.html, metrics.json, confusion / per-template plots, a
    /// contact sheet of the mistakes) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

#[derive(Args)]
struct SearchArgs {
    /// Model bundle folder: must be the index's model (default: the default model lookup).
    #[arg(long)]
    model: Option<PathBuf>,
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

#[derive(Args)]
struct ImageArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    /// Stop at the first image that cannot be read (default: report it and go on).
    #[arg(long)]
    fail_fast: bool,
}

#[derive(Args)]
struct TextArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(required = true)]
    texts: Vec<String>,
    /// One JSON object per text on stdout.
    #[arg(long)]
    json: bool,
}

/// Some inputs of a batch command failed (each was reported where it stood).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} inputs failed")]
struct InputsFailed {
    failed: usize,
    total: usize,
}

/// The images of one batch that could be read, and per path where its result goes: the
/// index of its image, or why it failed.
struct Batch<'p> {
    paths: &'p [PathBuf],
    images: Vec<RgbImage<'static>>,
    slots: Vec<std::result::Result<usize, String>>,
}

impl<'p> Batch<'p> {
    /// Reads and decodes `paths`; a file that fails ends the run with `fail_fast`, else
    /// it is reported (one `error:` line) and counted in `failed`.
    fn load(paths: &'p [PathBuf], fail_fast: bool, failed: &mut usize) -> Result<Batch<'p>> {
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

    /// Writes each path's result (`write(path, index of its image)`) or, with `--json`, its
    /// error line, in input order.
    fn write(
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

/// The end of a batch command: an error if any input failed.
fn inputs_done(failed: usize, total: usize) -> Result<()> {
    if failed > 0 {
        return Err(InputsFailed { failed, total }.into());
    }
    Ok(())
}

fn classify(args: ClassifyArgs, out: &mut impl Write) -> Result<()> {
    let phrases = parse_phrases(&args.labels);
    let prompts = Prompts::choose(args.template.as_deref(), args.ensemble.as_deref())?;
    check_phrases(&phrases, None).map_err(clip_perception::Error::from)?;
    let options = EngineOptions {
        cache_dir: cache_root(!args.no_cache, args.cache_dir.as_deref()),
        batch_size: args.batch_size,
        ..args.model.engine_options()
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
    for paths in args.images.chunks(args.batch_size.max(1)) {
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

/// Images per `embed-image` pass (a long list is streamed).
const EMBED_BATCH: usize = 8;

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

fn run(cli: Cli) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Classify(args) => classify(args, &mut out)?,
        Command::Tokenize(args) => {
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
        }
        Command::EmbedImage(args) => {
            let mut engine = args.model.open()?.build()?;
            let mut failed = 0;
            for paths in args.images.chunks(EMBED_BATCH) {
                let batch = Batch::load(paths, args.fail_fast, &mut failed)?;
                let vectors = engine.embed_images(&batch.images)?;
                batch.write(args.json, &mut out, |path, i, out| {
                    let name = [path.display().to_string()];
                    write_vectors(out, "image", &name, &vectors[i..=i], args.json)
                })?;
            }
            out.flush().context("writing to stdout")?;
            inputs_done(failed, args.images.len())?;
        }
        Command::EmbedText(args) => {
            let mut text = args.model.open()?.text_embedder()?;
            let vectors = text.embed_texts(&args.texts, false)?;
            write_vectors(&mut out, "text", &args.texts, &vectors, args.json)?;
        }
        Command::Preprocess {
            model,
            image,
            out: npy_path,
        } => {
            let mut pre = model.open()?.preprocessor();
            let img = load_image_file(&image)?;
            let mut tensor = vec![0f32; pre.tensor_len()];
            pre.preprocess_into(&img, &mut tensor);
            let size = pre.size();
            npy::write_f32(&npy_path, &[1, 3, size, size], &tensor)?;
            log::info!("wrote {}", npy_path.display());
        }
        Command::Info { dir, json } => info(&dir, json, &mut out)?,
        Command::Replay(args) => replay(args)?,
        Command::Index(args) => index(args)?,
        Command::Search(args) => search(args, &mut out)?,
        Command::Eval(args) => eval(args, &mut out)?,
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

fn index(args: IndexArgs) -> Result<()> {
    let options = EngineOptions {
        batch_size: args.batch_size.max(1),
        ..args.model.engine_options()
    };
    let mut engine = EngineBuilder::open(options)?.build()?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    let stats = clip_perception::index::update(
        &mut engine,
        &args.dir,
        &args.out,
        args.batch_size,
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

fn eval(args: EvalArgs, out: &mut impl Write) -> Result<()> {
    use clip_perception::zeroshot::{evaluate, spread, Dataset};
    let data = Dataset::open(&args.data)?;
    let prompts = Prompts::choose(args.template.as_deref(), args.ensemble.as_deref())?;
    let options = EngineOptions {
        batch_size: args.batch_size.max(1),
        ..args.model.engine_options()
    };
    let mut engine = EngineBuilder::open(options)?.build()?;
    let labels = engine.label_matrix(&data.classes, &prompts)?;
    let n = args.limit.unwrap_or(usize::MAX).min(data.len());
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(n as u64)
    } else {
        ProgressBar::hidden()
    };
    let (mut embeddings, mut truth, mut names) = (Vec::new(), Vec::new(), Vec::new());
    // The dataset index of each encoded image.
    let mut positions = Vec::new();
    let mut failed = 0;
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(args.batch_size.max(1)) {
        let mut images = Vec::new();
        for &i in chunk {
            let sample = data.sample(i);
            match sample.image {
                Ok(image) => {
                    images.push(image);
                    truth.push(sample.label);
                    names.push(sample.name);
                    positions.push(i);
                }
                Err(e) if args.fail_fast => return Err(e.into()),
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {e}"));
                    failed += 1;
                }
            }
        }
        embeddings.extend(engine.embed_images(&images)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let result = evaluate(&labels, &embeddings, &truth, &names, args.failures);
    let per_template = if args.per_template {
        let mut rows = Vec::new();
        for template in prompts.templates() {
            let alone = engine.label_matrix(&data.classes, &Prompts::single(template)?)?;
            rows.push((
                template.clone(),
                evaluate(&alone, &embeddings, &truth, &names, 0).top1,
            ));
        }
        Some(rows)
    } else {
        None
    };
    let spread_of = |rows: &[(String, f64)]| spread(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let metrics = {
        let per_template = per_template.as_ref().map(|rows| {
            let (min, max, mean, std) = spread_of(rows);
            json!({
                "templates": rows.iter().map(|(t, a)| json!({"template": t, "top1": a})).collect::<Vec<_>>(),
                "prompts_top1": result.top1, "min": min, "max": max, "mean": mean, "std": std,
            })
        });
        json!({
            "data": args.data.display().to_string(), "classes": data.classes,
            "prompts": prompts.name(), "templates": prompts.templates().len(),
            "images": result.images, "failed": failed, "top1": result.top1,
            "top5": result.top5, "mean_per_class_recall": result.mean_per_class_recall,
            "per_class": result.per_class, "confusion": result.confusion,
            "mistakes": result.mistakes, "per_template": per_template,
        })
    };
    if let Some(dir) = &args.report {
        use clip_perception::zeroshot::report::{write_report, ReportInput};
        let mistake_images = result
            .mistakes
            .iter()
            .map(|m| data.sample(positions[m.index]).image.ok())
            .collect();
        let title = args.data.display().to_string();
        let files = write_report(
            dir,
            &ReportInput {
                title: &title,
                classes: &data.classes,
                prompts: prompts.name(),
                result: &result,
                per_template: per_template.as_deref(),
                mistake_images,
                metrics: &metrics,
            },
        )?;
        log::info!("report: {}", files.len());
        eprintln!("report: {}", dir.join("index.html").display());
    }
    if args.json {
        writeln!(out, "{metrics}")?;
    } else {
        writeln!(
            out,
            "{}: {} images, {} classes, prompts {} ({} templates)",
            args.data.display(),
            result.images,
            data.classes.len(),
            prompts.name(),
            prompts.templates().len()
        )?;
        writeln!(
            out,
            "top-1 {:.4}   top-5 {:.4}   mean per-class recall {:.4}\n",
            result.top1, result.top5, result.mean_per_class_recall
        )?;
        let width = data
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(out, "{:<width$}  images  correct  recall", "class")?;
        for c in &result.per_class {
            writeln!(
                out,
                "{:<width$}  {:>6}  {:>7}  {:.4}",
                c.class, c.count, c.correct, c.recall
            )?;
        }
        if let Some(rows) = &per_template {
            let (min, max, mean, std) = spread_of(rows);
            writeln!(out, "\ntop-1 per template (prompt sensitivity):")?;
            for (template, top1) in rows {
                writeln!(out, "  {top1:.4}  {template}")?;
            }
            writeln!(
                out,
                "  min {min:.4}  max {max:.4}  mean {mean:.4}  std {std:.4}; all together ({}): {:.4}",
                prompts.name(),
                result.top1
            )?;
        }
        if !result.mistakes.is_empty() {
            writeln!(
                out,
                "\nmost confident mistakes (truth -> predicted, cosine, margin):"
            )?;
            for m in &result.mistakes {
                writeln!(
                    out,
                    "  {}  {} -> {}  {:.4}  {:.4}",
                    m.image, m.truth, m.predicted, m.cosine, m.margin
                )?;
            }
        }
    }
    out.flush().context("writing to stdout")?;
    inputs_done(failed, n)
}

fn search(args: SearchArgs, out: &mut impl Write) -> Result<()> {
    let index = clip_perception::index::Index::open(&args.index)?;
    let options = EngineOptions {
        model: args.model.clone(),
        ..Default::default()
    };
    let builder = EngineBuilder::open(options)?;
    let bundle = builder.bundle();
    if bundle.manifest_sha256 != index.manifest.model.manifest_sha256 {
        anyhow::bail!(
            "{}: made with model {:?} (manifest sha256 {}), but {} is {:?} (manifest sha256 {}): \
             pass the index's model with --model",
            args.index.display(),
            index.manifest.model.name,
            index.manifest.model.manifest_sha256,
            bundle.dir.display(),
            bundle.manifest.name,
            bundle.manifest_sha256
        );
    }
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
                    clip_perception::text::prompts::fill_template(t, text)
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

/// The node's command line for the replay options: its params file and `-p` overrides go
/// through the node's own parameter loading and validation.
fn replay_ros_args(args: &ReplayArgs) -> Result<RosArgs> {
    let mut overrides = Vec::new();
    if let Some(labels) = &args.labels {
        overrides.push(("labels", json!([labels])));
    }
    if let Some(model) = &args.model {
        overrides.push(("model_dir", json!(model.display().to_string())));
    }
    if let Some(threads) = args.threads {
        overrides.push(("threads", json!(threads)));
    }
    if let Some(precision) = args.precision {
        overrides.push(("precision", json!(precision.name())));
    }
    Ok(RosArgs::for_params(
        args.params_file.as_deref(),
        &overrides,
    )?)
}

/// The truth the replay is evaluated against, if any.
fn replay_truth(args: &ReplayArgs, bag: &Bag, phrases: &[String]) -> Result<Option<Truth>> {
    if let Some(file) = &args.truth {
        return Ok(Some(Truth::from_csv(file, phrases)?));
    }
    let Some(topic) = &args.truth_topic else {
        return Ok(None);
    };
    let info = bag
        .topics()
        .iter()
        .find(|t| &t.name == topic)
        .ok_or_else(|| anyhow::anyhow!("{}: no truth topic {topic}", bag.path().display()))?;
    if info.type_name != STRING_TYPE {
        anyhow::bail!(
            "{}: truth topic {topic} is a {}, not a {STRING_TYPE}",
            bag.path().display(),
            info.type_name
        );
    }
    let mut messages = Vec::new();
    for message in bag.messages(topic)? {
        let message = message?;
        let text = decode_cdr::<StringMsg>(&message.data).map_err(|e| {
            anyhow::anyhow!(
                "{}: truth topic {topic}, message at log time {} ns: {e}",
                bag.path().display(),
                message.log_time_ns
            )
        })?;
        messages.push((message.log_time_ns, text.data));
    }
    Ok(Some(Truth::from_messages(topic, &messages, phrases)?))
}

type WriteError = Box<dyn std::error::Error + Send + Sync>;

fn replay(args: ReplayArgs) -> Result<()> {
    let bag = Bag::open(&args.bag)?;
    let topic = choose_topic(&bag, args.topic.as_deref())?;
    let plan = NodePlan::from_args(&replay_ros_args(&args)?)?;
    for warning in &plan.warnings {
        log::warn!("{warning}");
    }
    let mut replayer = Replayer::new(plan.load_engine()?, args.batch_size);
    let truth = replay_truth(&args, &bag, &replayer.labels().labels)?;
    log::info!(
        "replaying {} ({}, {} messages) against {} phrases",
        topic.name,
        topic.type_name,
        topic.message_count,
        replayer.labels().len()
    );
    let out_name = args.out.display().to_string();
    let mut out: Box<dyn Write> = if args.out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("{out_name}: cannot create"))?;
        Box::new(std::io::BufWriter::new(file))
    };
    let mut results_bag = match &args.out_bag {
        Some(path) => Some(ResultsBag::create(
            path,
            &plan.topic(topics::CLASSIFICATION)?,
            &plan.topic(topics::MATCHES)?,
        )?),
        None => None,
    };
    let mut evaluator = (truth.is_some() || args.report.is_some())
        .then(|| Evaluator::new(&replayer.labels().labels, replayer.policy(), truth));
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(topic.message_count)
    } else {
        ProgressBar::hidden()
    };
    let selection = FrameSelection {
        start: args.start,
        end: args.end,
        every: args.every,
    };
    let summary = replayer.run(
        &bag,
        &topic,
        &selection,
        |line| {
            let json = serde_json::to_string(line).expect("a line serializes");
            writeln!(out, "{json}")
                .map_err(|e| -> WriteError { format!("{out_name}: cannot write: {e}").into() })?;
            if let Some(results) = results_bag.as_mut() {
                results.write(line)?;
            }
            if let Some(evaluator) = evaluator.as_mut() {
                evaluator.add(line);
            }
            Ok(())
        },
        |read| bar.set_position(read),
    )?;
    bar.finish_and_clear();
    out.flush()
        .with_context(|| format!("{out_name}: cannot write"))?;
    drop(out);
    if let Some(results) = results_bag {
        results.finish()?;
    }
    let skipped: u64 = summary.frames_skipped.values().sum();
    let reasons: Vec<String> = summary
        .frames_skipped
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    eprintln!(
        "replay: {} ({}): {} frames read, {} scored, {skipped} skipped{}; {:.1} s, {:.1} frames/s",
        topic.name,
        topic.type_name,
        summary.frames_read,
        summary.frames_scored,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        summary.wall_s,
        summary.frames_per_s
    );
    if let Some(evaluator) = evaluator {
        let evaluation = evaluator.finish();
        // The evaluation is a result: stdout, unless the JSON lines go there.
        let text = evaluation.summary_text();
        if args.out == Path::new("-") {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        if let Some(dir) = &args.report {
            let title = format!("{} ({})", args.bag.display(), topic.name);
            write_report(dir, &evaluation, &title)?;
            eprintln!("report: {}", dir.join("index.html").display());
        }
    }
    if let Some(e) = summary.bag_error {
        anyhow::bail!(
            "{e} (the {} frames before it are in the results)",
            summary.frames_read
        );
    }
    if skipped > 0 {
        anyhow::bail!("{skipped} frames could not be scored (the results say why, line by line)");
    }
    Ok(())
}

fn info(dir: &Path, json_out: bool, out: &mut impl Write) -> Result<()> {
    let bundle = ModelBundle::open(dir)?;
    let m = &bundle.manifest;
    let spec = bundle.spec();
    let size = |p: PathBuf| std::fs::metadata(&p).map(|md| md.len()).unwrap_or(0);
    let mut files = vec![
        (
            "image_encoder",
            bundle.image_encoder_path(),
            Some(&m.files.image_encoder),
        ),
        (
            "text_encoder",
            bundle.text_encoder_path(),
            Some(&m.files.text_encoder),
        ),
        ("tokenizer", bundle.tokenizer_path(), None),
    ];
    if let Some(g) = &m.files.image_encoder_int8 {
        files.insert(1, ("image_encoder_int8", bundle.dir.join(&g.path), Some(g)));
    }
    let int8_form = bundle.int8_form().map(|f| f.name());
    if json_out {
        let files: Vec<_> = files
            .iter()
            .map(|(role, path, graph)| {
                json!({
                    "role": role,
                    "path": path.display().to_string(),
                    "bytes": size(path.clone()),
                    "input": graph.map(|g| g.input.clone()),
                    "output": graph.map(|g| g.output.clone()),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "name": m.name,
                "source": {"kind": m.source.kind, "checkpoint": m.source.checkpoint, "seed": m.source.seed},
                "embed_dim": m.embed_dim,
                "image_size": m.image_size,
                "image_mean": m.image_mean,
                "image_std": m.image_std,
                "logit_scale": m.logit_scale,
                "context_length": m.context_length,
                "format_version": m.format_version,
                "family": spec.family.name(),
                "preprocess": spec.preprocess.describe(),
                "text": spec.text.describe(),
                "scoring": spec.scoring.describe(),
                "manifest_sha256": bundle.manifest_sha256,
                "files": files,
                "int8_form": int8_form,
                "default_precision": bundle.default_precision().name(),
            })
        )?;
    } else {
        writeln!(out, "bundle        {}", bundle.dir.display())?;
        writeln!(out, "name          {}", m.name)?;
        writeln!(
            out,
            "source        {} {} (seed {:?})",
            m.source.kind, m.source.checkpoint, m.source.seed
        )?;
        writeln!(out, "embed_dim     {}", m.embed_dim)?;
        writeln!(
            out,
            "image         {0}x{0}, mean {1:?}, std {2:?}",
            m.image_size, m.image_mean, m.image_std
        )?;
        writeln!(out, "logit_scale   {}", m.logit_scale)?;
        writeln!(out, "context       {} tokens", m.context_length)?;
        writeln!(
            out,
            "family        {} (format {})",
            spec.family.name(),
            m.format_version
        )?;
        writeln!(out, "preprocess    {}", spec.preprocess.describe())?;
        writeln!(out, "text          {}", spec.text.describe())?;
        writeln!(out, "scoring       {}", spec.scoring.describe())?;
        for (role, path, graph) in &files {
            let io = graph.map(|g| {
                format!(
                    "  {} [N,3,{s},{s}] -> {} [N,{}]",
                    g.input,
                    g.output,
                    m.embed_dim,
                    s = m.image_size
                )
            });
            let io = match (role, graph) {
                (&"text_encoder", Some(g)) => format!(
                    "  {} [N,L] int64 -> {} [N,{}]",
                    g.input, g.output, m.embed_dim
                ),
                _ => io.unwrap_or_default(),
            };
            writeln!(
                out,
                "{role:<13} {} ({} bytes){io}",
                path.display(),
                size(path.clone())
            )?;
        }
        writeln!(
            out,
            "precision     {} by default{}",
            bundle.default_precision(),
            int8_form
                .map(|f| format!(" (int8 form: {f})"))
                .unwrap_or_default()
        )?;
        writeln!(out, "checksums     ok")?;
    }
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
    if let Err(err) = run(cli) {
        match err.downcast_ref::<InputsFailed>() {
            // Each failed input already has its `error:` line.
            Some(summary) => eprintln!("{summary}"),
            None => eprintln!("error: {err:#}"),
        }
        std::process::exit(1);
    }
}
