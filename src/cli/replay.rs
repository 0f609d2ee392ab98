//! `replay`: recorded image topics of a rosbag2 bag (one, or several as the node's cameras)
//! through the node's own per-frame path, as JSON lines (and optionally a results bag), with
//! metrics, F1-best thresholds and an HTML report when a truth is given.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{progress_bar, BatchArgs, ModelArgs};
use clip_perception::bag::Bag;
use clip_perception::engine::step::Stamp;
use clip_perception::eval::overlay::{frame_tile, write_strip};
use clip_perception::eval::report::LOCATE_STRIP;
use clip_perception::eval::{write_report, Evaluator, Truth, TruthBoxes};
use clip_perception::locate::{LocatedPhrase, Rect};
use clip_perception::node::topics;
use clip_perception::node::{NodePlan, ParamOverrides, RosArgs};
use clip_perception::replay::results_bag::{ResultTopics, ResultsBag};
use clip_perception::replay::{
    choose_topics, decode_frame, sources, FrameSelection, ReplayCounts, ReplayLine, ReplaySource,
    Replayer,
};

#[derive(Args)]
pub struct ReplayArgs {
    /// rosbag2 bag folder (metadata.yaml + files), or a single .mcap or .db3 file.
    bag: PathBuf,
    /// Image topic (sensor_msgs/Image or CompressedImage); default: the bag's only one.
    /// Repeat it, or give `--topics a,b`, to replay several topics as the node's cameras:
    /// frames in log-time order, each camera with its own smoothing and hysteresis, named
    /// by the params file's `cameras` (one per topic, in order) or else after its topic
    /// (`/front/color/image_raw` -> `front_color`), metrics per topic and overall.
    #[arg(
        long,
        visible_alias = "topics",
        value_name = "TOPIC",
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    topic: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Task phrases separated by `;` (replace the params file's labels).
    #[arg(long, required_unless_present = "params_file")]
    labels: Option<String>,
    /// The node's ROS params file (labels, template, thresholds, smoothing, hysteresis, ...).
    #[arg(long)]
    params_file: Option<PathBuf>,
    /// Results: one JSON line per frame, in bag (log-time) order (`-` for stdout); with
    /// several topics each line has its `topic` and `camera`.
    #[arg(long)]
    out: PathBuf,
    /// Start this many seconds after the topic's first message (of several topics: the
    /// first message of any of them).
    #[arg(long)]
    start: Option<f64>,
    /// Stop this many seconds after the topic's first message (of any, as --start).
    #[arg(long)]
    end: Option<f64>,
    /// Score every N-th frame (of each topic).
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
    /// Locate every phrase in every scored frame (as `locate`, default method): each JSON
    /// line gets `locations` [{"label", "score", "point", "box"}], the results bag the matched
    /// phrases' vision_msgs/Detection2DArray on `~/detections`. Also the params file's
    /// `localize: true`.
    #[arg(long)]
    localize: bool,
    /// True boxes: CSV of `start,end,label,x0,y0,x1,y1` (seconds of header stamp as --truth,
    /// one phrase and its box in pixels per row); implies --localize and measures pointing
    /// accuracy and mean IoU, per phrase and overall (metrics, metrics.json, report).
    #[arg(long)]
    truth_boxes: Option<PathBuf>,
    /// Write an HTML report (index.html, metrics.json, confusion/timeline/pr plots) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also write the results as an MCAP bag (vision_msgs/Classification and the matches
    /// JSON as std_msgs/String, on the node's topics, at the frames' log times; several
    /// topics: on each camera's `~/C/classification` and `~/C/matches`).
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
    let topics = choose_topics(&bag, &args.topic)?;
    let plan = NodePlan::from_args(&ros_args(&args)?)?;
    for warning in &plan.warnings {
        log::warn!("{warning}");
    }
    let sources = sources(topics, &plan.config.cameras)?;
    let several = sources.len() > 1;
    if several {
        for s in &sources {
            eprintln!(
                "replay: {} -> camera {}",
                s.topic.name,
                s.camera.as_deref().unwrap_or("-")
            );
        }
    }
    let mut replayer = Replayer::new(plan.load_engine()?, args.batch.get());
    if args.localize || args.truth_boxes.is_some() {
        replayer.set_localize(true);
    }
    let phrases = &replayer.labels().labels;
    let truth = match (&args.truth, &args.truth_topic) {
        (Some(file), _) => Some(Truth::from_csv(file, phrases)?),
        (None, Some(topic)) => Some(Truth::from_bag_topic(&bag, topic, phrases)?),
        (None, None) => None,
    };
    let boxes = match &args.truth_boxes {
        Some(file) => Some(TruthBoxes::from_csv(file, phrases)?),
        None => None,
    };
    // The report's strip needs the boxes too.
    let strip_boxes = boxes.clone().filter(|_| args.report.is_some());
    for s in &sources {
        log::info!(
            "replaying {} ({}, {} messages) against {} phrases",
            s.topic.name,
            s.topic.type_name,
            s.topic.message_count,
            replayer.labels().len()
        );
    }
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
            &result_topics(&plan, &sources, replayer.localizes())?,
        )?),
        None => None,
    };
    let mut evaluator = (truth.is_some() || boxes.is_some() || args.report.is_some()).then(|| {
        let mut evaluator = Evaluator::new(&replayer.labels().labels, replayer.policy(), truth);
        if let Some(boxes) = boxes {
            evaluator = evaluator.with_boxes(boxes);
        }
        if several {
            let topics: Vec<(String, Option<String>)> = sources
                .iter()
                .map(|s| (s.topic.name.clone(), s.camera.clone()))
                .collect();
            evaluator.with_topics(&topics)
        } else {
            evaluator
        }
    });
    // Frames with true boxes, for the report's strip: (topic, log time, stamp, locations).
    let mut boxed_frames: Vec<(String, u64, Stamp, Vec<LocatedPhrase>)> = Vec::new();
    let bar = progress_bar(sources.iter().map(|s| s.topic.message_count).sum());
    let selection = FrameSelection {
        start: args.start,
        end: args.end,
        every: args.every,
    };
    let summary = replayer.run(
        &bag,
        &sources,
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
            if let (
                Some(b),
                true,
                ReplayLine::Scored {
                    result,
                    bag_time_ns,
                    topic,
                    locations: Some(located),
                },
            ) = (
                &strip_boxes,
                boxed_frames.len() < MAX_STRIP_CANDIDATES,
                line,
            ) {
                if b.at(result.stamp).next().is_some() {
                    boxed_frames.push((topic.clone(), *bag_time_ns, result.stamp, located.clone()));
                }
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
    let skipped = summary.frames.skipped();
    if several {
        eprintln!(
            "replay: {} topics: {}; {:.1} s, {:.1} frames/s",
            sources.len(),
            counts_text(&summary.frames),
            summary.wall_s,
            summary.frames_per_s
        );
        for (s, counts) in sources.iter().zip(&summary.per_topic) {
            eprintln!(
                "replay: {} (camera {}, {}): {}",
                s.topic.name,
                s.camera.as_deref().unwrap_or("-"),
                s.topic.type_name,
                counts_text(counts)
            );
        }
    } else {
        let topic = &sources[0].topic;
        eprintln!(
            "replay: {} ({}): {}; {:.1} s, {:.1} frames/s",
            topic.name,
            topic.type_name,
            counts_text(&summary.frames),
            summary.wall_s,
            summary.frames_per_s
        );
    }
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
            let names: Vec<&str> = sources.iter().map(|s| s.topic.name.as_str()).collect();
            let title = format!("{} ({})", args.bag.display(), names.join(", "));
            write_report(dir, &evaluation, &title)?;
            if let Some(b) = &strip_boxes {
                write_locate_strip(
                    &dir.join(LOCATE_STRIP),
                    &bag,
                    &sources,
                    &boxed_frames,
                    b,
                    &replayer.labels().labels,
                )?;
            }
            eprintln!("report: {}", dir.join("index.html").display());
        }
    }
    if let Some(e) = summary.bag_error {
        anyhow::bail!(
            "{e} (the {} frames before it are in the results)",
            summary.frames.frames_read
        );
    }
    if skipped > 0 {
        anyhow::bail!("{skipped} frames could not be scored (the results say why, line by line)");
    }
    Ok(())
}

/// Frames with true boxes remembered for the report's strip (the first ones).
const MAX_STRIP_CANDIDATES: usize = 4096;
/// Frames in the report's strip, evenly spread over those with true boxes.
const STRIP_FRAMES: usize = 8;

/// The report's strip: up to [`STRIP_FRAMES`] frames with true boxes, evenly spread, read
/// again from the bag, with their true boxes and where the phrases they name were located.
fn write_locate_strip(
    path: &Path,
    bag: &Bag,
    sources: &[ReplaySource],
    frames: &[(String, u64, Stamp, Vec<LocatedPhrase>)],
    boxes: &TruthBoxes,
    phrases: &[String],
) -> Result<()> {
    if frames.is_empty() {
        return Ok(());
    }
    let n = frames.len().min(STRIP_FRAMES);
    let picked: Vec<&(String, u64, Stamp, Vec<LocatedPhrase>)> =
        (0..n).map(|i| &frames[i * frames.len() / n]).collect();
    let names: Vec<&str> = sources.iter().map(|s| s.topic.name.as_str()).collect();
    let mut tiles = vec![None; picked.len()];
    for message in bag.messages_of(&names)? {
        let Ok(message) = message else { break };
        let Some(k) = picked
            .iter()
            .position(|f| f.0 == message.topic && f.1 == message.log_time_ns)
        else {
            continue;
        };
        let source = sources
            .iter()
            .find(|s| s.topic.name == message.topic)
            .expect("a replayed topic");
        let (_, pixels) = decode_frame(&source.topic.type_name, &message)?;
        let rgb = pixels.to_rgb()?;
        let truth: Vec<(String, Rect)> = boxes
            .at(picked[k].2)
            .map(|(p, r)| (phrases[p].clone(), r))
            .collect();
        // The phrases the frame's truth names: what the metrics judged.
        let judged: Vec<LocatedPhrase> = picked[k]
            .3
            .iter()
            .filter(|l| truth.iter().any(|(p, _)| *p == l.label))
            .cloned()
            .collect();
        tiles[k] = Some(frame_tile(&rgb, &judged, &truth).map_err(anyhow::Error::msg)?);
        if tiles.iter().all(Option::is_some) {
            break; // the rest of the bag is not needed
        }
    }
    let tiles: Vec<_> = tiles.into_iter().flatten().collect();
    write_strip(path, &tiles, 224)?;
    Ok(())
}

/// `N frames read, N scored, N skipped (reason N, ...)`.
fn counts_text(counts: &ReplayCounts) -> String {
    let reasons: Vec<String> = counts
        .frames_skipped
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    format!(
        "{} frames read, {} scored, {} skipped{}",
        counts.frames_read,
        counts.frames_scored,
        counts.skipped(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    )
}

/// Where each source's results go: the node's `~/classification` and `~/matches` (and
/// `~/detections` when localising), or its camera's `~/C/...`, resolved as the node
/// resolves them.
fn result_topics(
    plan: &NodePlan,
    sources: &[ReplaySource],
    localizes: bool,
) -> Result<Vec<ResultTopics>> {
    sources
        .iter()
        .map(|s| {
            let camera = s.camera.as_deref();
            Ok(ResultTopics {
                source: s.topic.name.clone(),
                classification: plan.topic(&topics::of_camera(camera, topics::CLASSIFICATION))?,
                matches: plan.topic(&topics::of_camera(camera, topics::MATCHES))?,
                detections: if localizes {
                    Some(plan.topic(&topics::of_camera(camera, topics::DETECTIONS))?)
                } else {
                    None
                },
            })
        })
        .collect()
}
