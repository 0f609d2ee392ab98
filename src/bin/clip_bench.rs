//! `clip_bench`: latency of the tract encoders of one bundle, as JSON lines on stdout
//! (every timed run and the median, after warm-up runs; the first line names the CPU, its
//! vector extensions and the kernels the engine picked on it). `models/benchmark.py` runs it beside
//! onnxruntime on the same files and prints the side-by-side table with ratios.
//!
//! `--locate`: the cost of localisation (`clip_perception::locate`) instead, per image and
//! method: proposals (the candidate regions), crop preparation (cropping and preprocessing),
//! encoding the crops, the whole `locate` call, one encoder pass over the whole image
//! (batch 1, preprocessing included) and the ratio of the whole call to that pass. The
//! crop stage preprocesses the crops one after the other; inside `locate` the encoder
//! preprocesses a batch's crops in parallel on its threads, so the stages add up to more
//! than the whole call with 2 or more threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

use clip_perception::locate::{LocateSettings, Method};
use clip_perception::text::parse_phrases;
use clip_perception::{
    ClipEngine, EncoderOptions, EngineBuilder, EngineOptions, LabelMatrix, Precision, Prompts,
    RgbImage, TextEncoder,
};

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
    /// Time localisation (both methods) instead of the encoders; timed runs are passes over
    /// all the images.
    #[arg(long)]
    locate: bool,
    /// --locate: image files (default: models/tabletop/locate/*.jpg).
    #[arg(long, value_delimiter = ',')]
    images: Vec<PathBuf>,
    /// --locate: phrases separated by `;` for every image (default: each image's labels in
    /// the `boxes.csv` beside it).
    #[arg(long)]
    labels: Option<String>,
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

/// The images to locate in and each one's phrases.
fn locate_inputs(args: &Args) -> Result<Vec<(PathBuf, RgbImage<'static>, Vec<String>)>> {
    let mut paths = args.images.clone();
    if paths.is_empty() {
        let dir = Path::new("models/tabletop/locate");
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "jpg") {
                paths.push(path);
            }
        }
        paths.sort();
    }
    // Each folder's boxes.csv: file name -> its labels, in file order.
    let mut csv_labels: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let image = clip_perception::image::load_image_file(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let phrases = match &args.labels {
            Some(l) => parse_phrases(l),
            None => {
                let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                if !csv_labels.contains_key(&dir) {
                    let file = dir.join("boxes.csv");
                    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    let mut reader = csv::Reader::from_path(&file).with_context(|| {
                        format!("no --labels: reading {} for the labels", file.display())
                    })?;
                    for row in reader.records() {
                        let row = row.with_context(|| format!("reading {}", file.display()))?;
                        if row.len() < 2 {
                            bail!("{}: a row without file,label", file.display());
                        }
                        table
                            .entry(row[0].to_string())
                            .or_default()
                            .push(row[1].to_string());
                    }
                    csv_labels.insert(dir.clone(), table);
                }
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                match csv_labels[&dir].get(name.as_ref()) {
                    Some(l) => l.clone(),
                    None => bail!("{}: no labels in boxes.csv (give --labels)", path.display()),
                }
            }
        };
        out.push((path, image, phrases));
    }
    if out.is_empty() {
        bail!("--locate: no images");
    }
    Ok(out)
}

/// `--locate`: the stages of localisation, per image, for both methods.
fn bench_locate(args: &Args, precisions: &[Precision]) -> Result<()> {
    let inputs = locate_inputs(args)?;
    let prompts = Prompts::choose(None, None)?;
    for &threads in &args.threads {
        for &precision in precisions {
            let options = EngineOptions {
                model: Some(args.model.clone()),
                precision: Some(precision),
                threads,
                ..EngineOptions::default()
            };
            let batch = options.batch_size;
            let mut engine = ClipEngine::load(options)?;
            let labels: Vec<LabelMatrix> = inputs
                .iter()
                .map(|(_, _, phrases)| engine.label_matrix(phrases, &prompts))
                .collect::<clip_perception::Result<_>>()?;
            let mut pre = engine.image.preprocessor().clone();
            let len = pre.tensor_len();
            for method in [Method::Proposals, Method::Grid] {
                let settings = LocateSettings {
                    method,
                    ..LocateSettings::default()
                };
                // Per stage, one sample per image and run.
                let mut stages: [Vec<f64>; 5] = Default::default();
                let mut candidates = Vec::new();
                let mut pixels = Vec::new();
                let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
                for run in 0..args.warmup + args.runs.max(1) {
                    let timed = run >= args.warmup;
                    let images = if timed { &inputs[..] } else { &inputs[..1] };
                    for ((_, image, _), labels) in images.iter().zip(&labels) {
                        let t = Instant::now();
                        let regions = settings.regions(image);
                        let proposals = ms(t);
                        let t = Instant::now();
                        pixels.resize(regions.len() * len, 0f32);
                        for (&r, out) in regions.iter().zip(pixels.chunks_exact_mut(len)) {
                            pre.preprocess_into(&settings.crop(image, r), out);
                        }
                        let crops = ms(t);
                        let t = Instant::now();
                        for chunk in pixels.chunks(batch * len) {
                            engine.image.encode_pixels(chunk)?;
                        }
                        let encode = ms(t);
                        let t = Instant::now();
                        engine.locate(image, labels, &settings)?;
                        let total = ms(t);
                        let t = Instant::now();
                        engine.image.encode(std::slice::from_ref(image))?;
                        let one_pass = ms(t);
                        if timed {
                            for (s, v) in stages
                                .iter_mut()
                                .zip([proposals, crops, encode, total, one_pass])
                            {
                                s.push(v);
                            }
                            candidates.push(regions.len() as f64);
                        }
                    }
                }
                let median = |v: &[f64]| clip_perception::eval::median(v);
                let [proposals, crops, encode, total, one_pass] =
                    stages.each_ref().map(|s| median(s));
                println!(
                    "{}",
                    json!({"engine": "tract", "locate": method, "precision": precision.name(), "threads": threads,
                           "batch": batch, "images": inputs.len(), "runs": args.runs.max(1),
                           "candidates": median(&candidates),
                           "proposals_ms": proposals, "crops_ms": crops, "encode_ms": encode,
                           "total_ms": total, "one_pass_ms": one_pass, "ratio": total / one_pass})
                );
            }
        }
    }
    Ok(())
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
    if args.locate {
        return bench_locate(&args, &precisions);
    }
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
