//! `clip_replay_bench`: what replay adds to the image encoder, in one run on one machine.
//!
//! 1. Time per frame of the image encoder alone on the bag's frames, decoded beforehand,
//!    in the batches replay uses, against `clip_perception replay`'s own path in-process
//!    (read + decode + convert/preprocess + encode + score + write JSON lines to a file):
//!    medians of repeated runs, their ratio and the overhead in percent.
//! 2. Peak RSS of the `clip_perception replay` command on the bag and on a copy N times
//!    longer (the same messages repeated, later log times), each in a child process.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/clip_replay_bench                                # the bundled recording
//! target/release/clip_replay_bench --model models/.cache/random-vit-b-32-seed0
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use clip_perception::bag::{Bag, COMPRESSED_IMAGE_TYPE};
use clip_perception::eval::median;
use clip_perception::node::{NodePlan, ParamOverrides, RosArgs};
use clip_perception::replay::results_bag::{add_ros2_channel, ros2_writer};
use clip_perception::replay::{choose_topic, decode_frame, FrameSelection, ReplaySource, Replayer};
use clip_perception::ros_msgs::definitions;
use clip_perception::Precision;

#[derive(Parser)]
#[command(about = "Replay's overhead over the image encoder alone, and its peak RSS")]
struct Args {
    /// The recording (default: the bundled models/tabletop/recording/tabletop).
    #[arg(long)]
    bag: Option<PathBuf>,
    /// Image topic (default: the bag's only one).
    #[arg(long)]
    topic: Option<String>,
    /// Model bundle (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Image encoder graph (default: int8 where the bundle has one).
    #[arg(long)]
    precision: Option<Precision>,
    /// Image encoder threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Frames per encoder pass (replay's --batch-size).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Timed runs of each side (after one warm-up run); medians are compared.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The longer bag for the memory check is this many times the recording (0: no check).
    #[arg(long, default_value_t = 10)]
    rss_factor: usize,
    /// Only the first N frames of the recording (for slow models).
    #[arg(long)]
    frames: Option<usize>,
}

fn source_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The node's command line for these options (the params file of the source tree).
fn ros_args(args: &Args) -> Result<RosArgs> {
    let overrides = ParamOverrides {
        threads: Some(args.threads),
        model_dir: args.model.clone(),
        precision: args.precision,
        ..ParamOverrides::default()
    };
    let params = source_root().join("config/clip_node.yaml");
    Ok(RosArgs::with_overrides(Some(&params), &overrides)?)
}

/// Writes the topic's first `take` messages `factor` times, one copy after the other, into
/// an MCAP file.
fn copy_bag(
    bag: &Bag,
    topic: &str,
    type_name: &str,
    take: usize,
    factor: usize,
    out: &Path,
) -> Result<u64> {
    let messages: Vec<_> = bag.messages(topic)?.take(take).collect::<Result<_, _>>()?;
    let (first, last) = (
        messages.first().context("empty topic")?.log_time_ns,
        messages.last().context("empty topic")?.log_time_ns,
    );
    let span = last - first + (last - first) / messages.len().max(1) as u64 + 1;
    let mut writer = ros2_writer(std::fs::File::create(out)?)?;
    let definition = if type_name == COMPRESSED_IMAGE_TYPE {
        definitions::compressed_image()
    } else {
        definitions::image()
    };
    let channel = add_ros2_channel(&mut writer, type_name, &definition, topic)?;
    let mut sequence = 0;
    for copy in 0..factor as u64 {
        for m in &messages {
            sequence += 1;
            let time = m.log_time_ns + copy * span;
            writer.write_to_known_channel(
                &mcap::records::MessageHeader {
                    channel_id: channel,
                    sequence,
                    log_time: time,
                    publish_time: time,
                },
                &m.data,
            )?;
        }
    }
    writer.finish()?;
    Ok(sequence as u64)
}

/// Peak resident set size (KiB) of `clip_perception replay` on `bag`, run as a child.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn replay_peak_rss_kib(args: &Args, bag: &Path, topic: &str, out: &Path) -> Result<i64> {
    let exe = std::env::current_exe()?.with_file_name("clip_perception");
    let mut command = Command::new(&exe);
    command.args(["replay", &bag.display().to_string(), "--topic", topic]);
    command.args([
        "--params-file",
        &source_root()
            .join("config/clip_node.yaml")
            .display()
            .to_string(),
    ]);
    command.args(["--out", &out.display().to_string(), "-q"]);
    command.args(["--batch-size", &args.batch_size.to_string()]);
    command.args(["--threads", &args.threads.to_string()]);
    if let Some(model) = &args.model {
        command.args(["--model", &model.display().to_string()]);
    }
    if let Some(p) = args.precision {
        command.args(["--precision", p.name()]);
    }
    let log = out.with_extension("stderr");
    command.stderr(std::fs::File::create(&log)?);
    let child = command.spawn().with_context(|| {
        format!(
            "{}: cannot start (cargo build --release --bins)",
            exe.display()
        )
    })?;
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by wait4; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    anyhow::ensure!(pid > 0, "wait4 failed: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} replay {} failed (status {status}): {}",
        exe.display(),
        bag.display(),
        std::fs::read_to_string(&log).unwrap_or_default().trim()
    );
    Ok(usage.ru_maxrss)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bag_path = args
        .bag
        .clone()
        .unwrap_or_else(|| source_root().join("models/tabletop/recording/tabletop"));
    let out_dir = std::env::temp_dir().join(format!("clip_replay_bench.{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let result = run(&args, bag_path, &out_dir);
    let _ = std::fs::remove_dir_all(&out_dir);
    result
}

fn run(args: &Args, mut bag_path: PathBuf, out_dir: &Path) -> Result<()> {
    let mut bag = Bag::open(&bag_path)?;
    let mut topic = choose_topic(&bag, args.topic.as_deref())?;
    if let Some(n) = args.frames {
        let first = out_dir.join("first.mcap");
        copy_bag(&bag, &topic.name, &topic.type_name, n, 1, &first)?;
        bag_path = first;
        bag = Bag::open(&bag_path)?;
        topic = choose_topic(&bag, Some(&topic.name))?;
    }
    let plan = NodePlan::from_args(&ros_args(args)?)?;
    println!(
        "cpu: {}; {}",
        clip_perception::cpu::cpu_features(),
        clip_perception::cpu::engine_kernels()
    );

    // The same frames, decoded once, for the encoder alone.
    let mut pixels = Vec::new();
    for m in bag.messages(&topic.name)? {
        pixels.push(decode_frame(&topic.type_name, &m?)?.1);
    }
    let images = pixels
        .iter()
        .map(|p| p.to_rgb())
        .collect::<Result<Vec<_>, _>>()?;
    let frames = images.len();
    let encoder = plan.load_engine()?.image;
    println!(
        "model: {} ({}), {} frames of {} ({}), batch {}, {} thread(s), medians of {} runs",
        plan.config.model_dir.display(),
        encoder.precision().name(),
        frames,
        topic.name,
        topic.type_name,
        args.batch_size,
        args.threads,
        args.runs
    );
    measure(
        args, &bag, &bag_path, &topic, &plan, &images, encoder, out_dir,
    )
}

/// Replay's time against `encoder` alone on the decoded `images`, and the peak RSS check,
/// with scratch files under `out_dir`. The two sides alternate run by run, so that drift in
/// the machine's speed (large on shared virtual machines) falls on both.
#[allow(clippy::too_many_arguments)]
fn measure(
    args: &Args,
    bag: &Bag,
    bag_path: &Path,
    topic: &clip_perception::bag::TopicInfo,
    plan: &NodePlan,
    images: &[clip_perception::RgbImage<'_>],
    mut encoder: clip_perception::ImageEncoder,
    out_dir: &Path,
) -> Result<()> {
    let frames = images.len();
    let mut replayer = Replayer::new(plan.load_engine()?, args.batch_size);
    let sources = [ReplaySource {
        topic: topic.clone(),
        camera: None,
    }];
    let out_path = out_dir.join("results.jsonl");
    let mut replay_ms = Vec::new();
    let mut encoder_ms = Vec::new();
    for run in 0..=args.runs {
        let t = Instant::now();
        for chunk in images.chunks(args.batch_size.max(1)) {
            encoder.encode(chunk)?;
        }
        if run > 0 {
            encoder_ms.push(t.elapsed().as_secs_f64() * 1e3 / frames as f64);
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
        let t = Instant::now();
        let summary = replayer.run(
            bag,
            &sources,
            &FrameSelection::default(),
            |line| {
                writeln!(out, "{}", serde_json::to_string(line)?)?;
                Ok(())
            },
            |_| {},
        )?;
        out.flush()?;
        anyhow::ensure!(
            summary.frames.frames_scored as usize == frames,
            "frames skipped"
        );
        if run > 0 {
            replay_ms.push(t.elapsed().as_secs_f64() * 1e3 / frames as f64);
        }
    }
    drop(encoder);
    let enc = median(&encoder_ms);
    let rep = median(&replay_ms);
    println!();
    println!("| path | ms / frame | frames / s | ratio to encoder |");
    println!("|---|---:|---:|---:|");
    println!(
        "| image encoder alone (frames decoded beforehand) | {enc:.2} | {:.1} | 1.00 |",
        1e3 / enc
    );
    println!(
        "| replay: read + decode + preprocess + encode + score + write | {rep:.2} | {:.1} | {:.3} |",
        1e3 / rep,
        rep / enc
    );
    println!(
        "replay overhead over the encoder: {:+.1}% (target: at most +10%)",
        (rep / enc - 1.0) * 100.0
    );

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if args.rss_factor > 0 {
        let long = out_dir.join("longer.mcap");
        let n = copy_bag(
            bag,
            &topic.name,
            &topic.type_name,
            usize::MAX,
            args.rss_factor,
            &long,
        )?;
        let out = out_dir.join("rss.jsonl");
        let short_kib = replay_peak_rss_kib(args, bag_path, &topic.name, &out)?;
        let long_kib = replay_peak_rss_kib(args, &long, &topic.name, &out)?;
        println!();
        println!("| replay command on | frames | peak RSS (MiB) | ratio |");
        println!("|---|---:|---:|---:|");
        println!(
            "| the recording | {frames} | {:.1} | 1.00 |",
            short_kib as f64 / 1024.0
        );
        println!(
            "| {}x longer | {n} | {:.1} | {:.3} |",
            args.rss_factor,
            long_kib as f64 / 1024.0,
            long_kib as f64 / short_kib as f64
        );
        println!(
            "peak RSS growth for a {}x longer bag: {:+.1}% (target: at most +10%)",
            args.rss_factor,
            (long_kib as f64 / short_kib as f64 - 1.0) * 100.0
        );
    }
    Ok(())
}
