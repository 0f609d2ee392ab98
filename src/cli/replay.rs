//! `replay`: a recorded image topic of a rosbag2 bag through the node's own per-frame
//! path, as JSON lines (and optionally a results bag), with metrics, F1-best thresholds and
//! an HTML report when a truth is given.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{progress_bar, BatchArgs, ModelArgs};
use clip_perception::bag::Bag;
use clip_perception::eval::{write_report, Evaluator, Truth};
use clip_perception::node::topics;
use clip_perception::node::{NodePlan, ParamOverrides, RosArgs};
use clip_perception::replay::results_bag::ResultsBag;
use clip_perception::replay::{choose_topic, FrameSelection, Replayer};

#[derive(Args)]
pub struct ReplayArgs {
    /// rosbag2 bag folder (metadata.yaml + files), or a single .mcap or .db3 file.
    bag: PathBuf,
    /// Image topic (sensor_msgs/Image or CompressedImage); default: the bag's only one.
    #[arg(long)]
    topic: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
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
    #[command(flatten)]
    batch: BatchArgs,
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

/// The node's command line for the replay options: its params file and `-p` overrides go
/// through the node's own parameter loading and validation.
fn ros_args(args: &ReplayArgs) -> Result<RosArgs> {
    let overrides = ParamOverrides {
        labels: args.labels.clone(),
        model_dir: args.model.model.clone(),
        threads: args.model.threads,
        precision: args.model.precision,
    };
    Ok(RosArgs::with_overrides(
        args.params_file.as_deref(),
        &overrides,
    )?)
}

type WriteError = Box<dyn std::error::Error + Send + Sync>;

pub fn replay(args: ReplayArgs) -> Result<()> {
    let bag = Bag::open(&args.bag)?;
    let topic = choose_topic(&bag, args.topic.as_deref())?;
    let plan = NodePlan::from_args(&ros_args(&args)?)?;
    for warning in &plan.warnings {
        log::warn!("{warning}");
    }
    let mut replayer = Replayer::new(plan.load_engine()?, args.batch.get());
    let phrases = &replayer.labels().labels;
    let truth = match (&args.truth, &args.truth_topic) {
        (Some(file), _) => Some(Truth::from_csv(file, phrases)?),
        (None, Some(topic)) => Some(Truth::from_bag_topic(&bag, topic, phrases)?),
        (None, None) => None,
    };
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
    let bar = progress_bar(topic.message_count);
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
