//! `clip_bench`: latency of the tract encoders of one bundle, as JSON lines on stdout
//! (every timed run and the median, after warm-up runs; the first line names the CPU, its
//! vector extensions and the kernels the engine picked on it). `models/benchmark.py` runs it beside
//! onnxruntime on the same files and prints the side-by-side table with ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use serde_json::json;

use clip_perception::{EncoderOptions, EngineBuilder, EngineOptions, Precision, TextEncoder};

#[derive(Parser)]
#[command(about = "Latency of a bundle's tract encoders (JSON lines)")]
struct Args {
    /// Model bundle folder.
    #[arg(long)]
    model: PathBuf,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Image encoder precisions (int8 is skipped, with a note, if the bundle has none).
    #[arg(long, value_delimiter = ',', default_value = "fp32,int8")]
    precision: Vec<Precision>,
    /// Timed runs per case.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed warm-up runs per case.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// The phrase for text timings.
    #[arg(long, default_value = "a photo of a red cup")]
    phrase: String,
    /// Skip the image (or text) encoder.
    #[arg(long)]
    skip_image: bool,
    #[arg(long)]
    skip_text: bool,
    /// Also print the encoders' time per operator kind (one profiled run per case).
    #[arg(long)]
    profile: bool,
}

/// Timings of one case: every run in ms, and their median.
struct Timing {
    samples: Vec<f64>,
    median: f64,
}

fn time(runs: usize, warmup: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let median = clip_perception::eval::median(&ms);
    Ok(Timing {
        samples: ms,
        median,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "{}",
        json!({"cpu": clip_perception::cpu::cpu_features(), "kernels": clip_perception::cpu::engine_kernels()})
    );
    let engine = EngineBuilder::open(EngineOptions {
        model: Some(args.model.clone()),
        precision: Some(Precision::Fp32),
        ..EngineOptions::default()
    })?;
    let bundle = engine.bundle();
    let s = bundle.manifest.image_size;
    let precisions: Vec<Precision> = args
        .precision
        .iter()
        .copied()
        .filter(|&p| {
            let have = p == Precision::Fp32 || bundle.int8_form().is_some();
            if !have {
                eprintln!(
                    "note: {} has no int8 image encoder; skipping int8",
                    args.model.display()
                );
            }
            have
        })
        .collect();
    for &threads in &args.threads {
        for &precision in precisions.iter().filter(|_| !args.skip_image) {
            let mut encoder = engine
                .with_encoder(Some(precision), threads)?
                .image_encoder()?;
            for &batch in &args.batches {
                // Deterministic pseudo-random pixels in the normalised range.
                let pixels: Vec<f32> = (0..batch * 3 * s * s)
                    .map(|i| {
                        ((i as u32).wrapping_mul(2654435761) >> 8) as f32 / (1u32 << 24) as f32
                            * 4.0
                            - 2.0
                    })
                    .collect();
                let t = time(args.runs, args.warmup, || {
                    encoder.encode_pixels(&pixels)?;
                    Ok(())
                })?;
                if args.profile {
                    let ops: Vec<_> = encoder
                        .profile_pixels(&pixels)?
                        .into_iter()
                        .map(|(op, ms)| json!({"op": op, "ms": ms}))
                        .collect();
                    println!(
                        "{}",
                        json!({"engine": "tract", "encoder": "image", "precision": precision.name(), "profile": ops, "batch": batch, "threads": threads})
                    );
                }
                println!(
                    "{}",
                    json!({"engine": "tract", "encoder": "image", "precision": precision.name(), "batch": batch, "threads": threads,
                           "median_ms": t.median, "samples_ms": t.samples})
                );
            }
        }
        if !args.skip_text {
            let mut text = engine.with_encoder(None, threads)?.text_embedder()?;
            // A second encoder for the per-operator profile (the embedder keeps its own).
            let mut profiler: Option<TextEncoder> = None;
            let tokens = text.tokenizer().encode(&args.phrase)?.len();
            for &batch in &args.batches {
                let texts = vec![args.phrase.clone(); batch];
                for full_context in [true, false] {
                    let t = time(args.runs, args.warmup, || {
                        text.embed_texts(&texts, full_context)?;
                        Ok(())
                    })?;
                    let length = if full_context {
                        bundle.manifest.context_length
                    } else {
                        tokens
                    };
                    if args.profile {
                        let ids = vec![text.tokenizer().encode(&args.phrase)?; batch];
                        let pad = full_context.then_some(length);
                        if profiler.is_none() {
                            let options = EncoderOptions {
                                threads,
                                precision: None,
                            };
                            profiler = Some(TextEncoder::load(bundle, options)?);
                        }
                        let encoder = profiler.as_mut().expect("loaded above");
                        let ops: Vec<_> = encoder
                            .profile_ids(&ids, pad)?
                            .into_iter()
                            .map(|(op, ms)| json!({"op": op, "ms": ms}))
                            .collect();
                        println!(
                            "{}",
                            json!({"engine": "tract", "encoder": "text", "precision": "fp32", "profile": ops, "batch": batch, "threads": threads, "tokens": length})
                        );
                    }
                    println!(
                        "{}",
                        json!({"engine": "tract", "encoder": "text", "precision": "fp32", "batch": batch, "threads": threads,
                               "tokens": length, "median_ms": t.median, "samples_ms": t.samples})
                    );
                }
            }
        }
    }
    Ok(())
}
