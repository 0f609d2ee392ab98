//! `eval`: the zero-shot benchmark on a labelled folder or CIFAR binary, printed as a
//! table or JSON, with an optional HTML report.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{inputs_done, progress_bar, BatchArgs, ModelArgs};
use clip_perception::text::Prompts;
use clip_perception::zeroshot::report::{write_report, ReportInput};
use clip_perception::zeroshot::{Dataset, RunOptions};
use clip_perception::EngineBuilder;

#[derive(Args)]
pub struct EvalArgs {
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
    #[command(flatten)]
    batch: BatchArgs,
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

pub fn eval(args: EvalArgs, out: &mut impl Write) -> Result<()> {
    let data = Dataset::open(&args.data)?;
    let prompts = Prompts::choose(args.template.as_deref(), args.ensemble.as_deref())?;
    let options = RunOptions {
        limit: args.limit,
        batch_size: args.batch.get(),
        failures: args.failures,
        per_template: args.per_template,
        fail_fast: args.fail_fast,
    };
    let mut engine = EngineBuilder::open(args.model.engine_options(options.batch_size))?.build()?;
    let bar = progress_bar(options.images(&data) as u64);
    let bench = clip_perception::zeroshot::run(
        &mut engine,
        &data,
        &args.data,
        &prompts,
        &options,
        |e| bar.suspend(|| eprintln!("error: {e}")),
        |n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    let metrics = bench.metrics();
    if let Some(dir) = &args.report {
        let mistake_images = bench
            .result
            .mistakes
            .iter()
            .map(|m| data.sample(bench.positions[m.index]).image.ok())
            .collect();
        let files = write_report(
            dir,
            &ReportInput {
                title: &bench.data,
                classes: &bench.classes,
                prompts: prompts.name(),
                result: &bench.result,
                per_template: bench.per_template.as_deref(),
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
        bench.write_text(out)?;
    }
    out.flush().context("writing to stdout")?;
    inputs_done(bench.failed, bench.requested)
}
