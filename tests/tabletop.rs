//! The bundled default model (`models/tabletop`, trained by `models/tabletop/train.py`) on
//! its committed evaluation set (`models/tabletop/make_eval.py`):
//! - image by image against an independent reference, `tests/data/tabletop/reference.json`
//!   (onnxruntime on the bundle's graphs with Pillow preprocessing, made by `generate.py`
//!   next to it): fp32 cosines of all 64 phrases equal onnxruntime's to float rounding;
//!   int8 cosines are within the spread of correct int8 runs of onnxruntime int8's, closer
//!   to them than to fp32's on most images (an engine that ran the fp32 graph fails), and
//!   the top-1 is onnxruntime int8's wherever that is not a near-tie;
//! - the accuracy recorded in the manifest is reached within 1 point on seen and held-out
//!   (never trained) compositions, and int8 agrees with fp32 on top-1 for >= 98%.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use clip_perception::{ClipEngine, EngineOptions, Precision, Prompts};

use crate::common::{data, read_json, root};

/// fp32: the engine's cosines equal onnxruntime's on the same fp32 graph to this bound
/// (measured: 4.7e-6 at most; preprocessing and decoding are exact, tract and onnxruntime
/// differ by float rounding only), and a top-1 may differ only where onnxruntime's top two
/// are this close.
const FP32_COSINE: f64 = 1e-4;
/// int8: two correct int8 runs of one graph differ by more than float rounding, because a
/// value that lands near a rounding boundary of the activation quantization goes one int8
/// step either way and the step propagates. onnxruntime's own optimised and unoptimised
/// sessions of this graph differ by up to 8.1e-3 in cosine; the engine is within 7.5e-3 of
/// the optimised one (measured on the 352 images, 7-bit weights; with the earlier 8-bit
/// weights 1.0e-2 and 7.0e-3). Bound: 2e-2.
const INT8_COSINE: f64 = 2e-2;
/// int8: a top-1 may differ from onnxruntime int8's only where its top two cosines are
/// this close (measured: one image differs, blue_phone_03, whose top two onnxruntime int8
/// cosines are 1.9e-3 apart).
const INT8_TIE: f64 = 1e-2;
/// int8: share of images whose cosines are closer (mean absolute difference over the 64
/// phrases) to onnxruntime int8's than to onnxruntime fp32's (measured: 329 of 352, 93.5%;
/// the fp32 graph run in place of int8 gets 0 of 352).
const INT8_CLOSER_SHARE: f64 = 0.8;

struct EvalImage {
    file: String,
    label: String,
    split: String,
}

fn eval_set() -> Vec<EvalImage> {
    let path = root().join("models/tabletop/eval/labels.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (file, colour, object, split) = (col("file"), col("colour"), col("object"), col("split"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            EvalImage {
                file: f[file].to_string(),
                label: format!("{} {}", f[colour], f[object]),
                split: f[split].to_string(),
            }
        })
        .collect()
}

/// The zero-shot answers of the bundled model on the evaluation set at `precision`.
struct Run {
    metrics: serde_json::Value,
    images: Vec<EvalImage>,
    /// The phrases, in the order of `cosine`'s columns.
    phrases: Vec<String>,
    /// Top-1 phrase per image.
    top1: Vec<String>,
    /// Cosine of every phrase, per image.
    cosine: Vec<Vec<f32>>,
}

/// The run at `precision`, made once per test binary (each is 352 images).
fn run(precision: Precision) -> &'static Run {
    static FP32: OnceLock<Run> = OnceLock::new();
    static INT8: OnceLock<Run> = OnceLock::new();
    let cell = match precision {
        Precision::Fp32 => &FP32,
        Precision::Int8 => &INT8,
    };
    cell.get_or_init(|| run_uncached(precision))
}

fn run_uncached(precision: Precision) -> Run {
    let dir = root().join("models/tabletop");
    let options = EngineOptions {
        model: Some(dir.clone()),
        threads: 2,
        cache_dir: None,
        batch_size: 16,
        precision: Some(precision),
        text_threads: None,
    };
    let mut engine = ClipEngine::load(options).unwrap();
    assert_eq!(engine.image.precision(), precision);
    let metrics = engine
        .bundle
        .manifest
        .extra
        .get("metrics")
        .cloned()
        .expect("model.yaml has metrics");
    let template = metrics["template"]
        .as_str()
        .unwrap_or("a photo of a {}.")
        .to_string();
    let images = eval_set();
    let mut phrases: Vec<String> = images.iter().map(|i| i.label.clone()).collect();
    phrases.sort();
    phrases.dedup();
    // Every colour x object phrase, also those no eval image shows.
    let strings = |key: &str| -> Vec<String> {
        metrics[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    for c in &strings("colours") {
        for o in &strings("objects") {
            let p = format!("{c} {o}");
            if !phrases.contains(&p) {
                phrases.push(p);
            }
        }
    }
    let labels = engine
        .label_matrix(&phrases, &Prompts::single(&template).unwrap())
        .unwrap();
    let mut top1 = Vec::new();
    let mut cosine = Vec::new();
    for chunk in images.chunks(16) {
        let decoded: Vec<_> = chunk
            .iter()
            .map(|i| {
                clip_perception::image::load_image_file(&dir.join("eval").join(&i.file)).unwrap()
            })
            .collect();
        for scores in engine.classify(&decoded, &labels).unwrap() {
            top1.push(labels.labels[scores.top_k(1)[0].index].clone());
            cosine.push(scores.cosine);
        }
    }
    Run {
        metrics,
        images,
        phrases,
        top1,
        cosine,
    }
}

/// The reference's phrase order as indices into `run.phrases`.
fn reference_columns(run: &Run, reference: &serde_json::Value) -> Vec<usize> {
    reference["phrases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            run.phrases
                .iter()
                .position(|q| q == p)
                .unwrap_or_else(|| panic!("the engine run has no phrase {p:?}"))
        })
        .collect()
}

/// onnxruntime's cosines per image at `precision` (`fp32` or `int8`), phrases in the
/// reference's order, checked to be for this bundle and these images.
fn reference(run: &Run, precision: &str) -> Vec<Vec<f64>> {
    let reference = read_json(&data("tabletop/reference.json"));
    let manifest = root().join("models/tabletop/model.yaml");
    let sha = clip_perception::model::bundle::sha256_file(&manifest).unwrap();
    assert_eq!(
        reference["manifest_sha256"], sha,
        "tests/data/tabletop/reference.json is for another models/tabletop: run its generate.py"
    );
    let images = reference["images"].as_array().unwrap();
    assert_eq!(images.len(), run.images.len());
    images
        .iter()
        .zip(&run.images)
        .map(|(r, image)| {
            assert_eq!(r["file"], image.file.as_str());
            r[precision]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// The engine's cosines per image, phrases in the reference's order.
fn engine_cosines(run: &Run) -> Vec<Vec<f64>> {
    let reference = read_json(&data("tabletop/reference.json"));
    let columns = reference_columns(run, &reference);
    run.cosine
        .iter()
        .map(|c| columns.iter().map(|&j| f64::from(c[j])).collect())
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Index of the best cosine, and its margin over the second best.
fn top1(c: &[f64]) -> (usize, f64) {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[b].total_cmp(&c[a]));
    (order[0], c[order[0]] - c[order[1]])
}

#[test]
fn fp32_equals_onnxruntime_image_by_image() {
    let run = run(Precision::Fp32);
    let (want, got) = (reference(run, "fp32"), engine_cosines(run));
    let mut ties = 0;
    for ((w, g), image) in want.iter().zip(&got).zip(&run.images) {
        let d = max_abs_diff(w, g);
        assert!(d <= FP32_COSINE, "{}: cosines off by {d}", image.file);
        let ((a, margin), (b, _)) = (top1(w), top1(g));
        if a != b {
            assert!(margin < FP32_COSINE, "{}: top-1 differs", image.file);
            ties += 1;
        }
    }
    println!(
        "fp32 equals onnxruntime on {} images ({ties} near-tie top-1s)",
        want.len()
    );
}

#[test]
fn int8_is_onnxruntime_int8_not_fp32() {
    let run = run(Precision::Int8);
    let (int8, fp32) = (reference(run, "int8"), reference(run, "fp32"));
    let got = engine_cosines(run);
    let (mut closer, mut ties) = (0, 0);
    for (((g, w8), w32), image) in got.iter().zip(&int8).zip(&fp32).zip(&run.images) {
        let d = max_abs_diff(g, w8);
        assert!(d <= INT8_COSINE, "{}: cosines off by {d}", image.file);
        closer += usize::from(mean_abs_diff(g, w8) < mean_abs_diff(g, w32));
        let ((a, margin), (b, _)) = (top1(w8), top1(g));
        if a != b {
            assert!(margin < INT8_TIE, "{}: top-1 differs", image.file);
            ties += 1;
        }
    }
    let n = got.len();
    println!("int8 closer to onnxruntime int8 than to fp32 on {closer}/{n} images; {ties} near-tie top-1s");
    assert!(
        closer as f64 >= INT8_CLOSER_SHARE * n as f64,
        "only {closer}/{n} images closer to onnxruntime int8 than to fp32: is the int8 graph running?"
    );
}

/// (correct, total) per split.
fn accuracy(run: &Run) -> BTreeMap<String, (usize, usize)> {
    let mut correct: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (image, top) in run.images.iter().zip(&run.top1) {
        let entry = correct.entry(image.split.clone()).or_default();
        entry.0 += usize::from(*top == image.label);
        entry.1 += 1;
    }
    correct
}

#[test]
fn rust_engine_reaches_the_recorded_zero_shot_accuracy() {
    let run = run(Precision::Fp32);
    let correct = accuracy(run);
    for (split, (ok, n)) in &correct {
        let accuracy = 100.0 * *ok as f64 / *n as f64;
        let recorded = run.metrics[format!("zero_shot_top1_{split}_rust")]
            .as_f64()
            .unwrap_or_else(|| panic!("no recorded {split} accuracy"));
        let recorded = if recorded <= 1.0 {
            recorded * 100.0
        } else {
            recorded
        };
        println!("{split}: {ok}/{n} = {accuracy:.2}% (recorded {recorded:.2}%)");
        assert!(
            (accuracy - recorded).abs() <= 1.0,
            "{split}: {accuracy:.2}% vs recorded {recorded:.2}%"
        );
    }
    assert!(correct.contains_key("seen") && correct.contains_key("heldout"));
}

/// The bundled int8 image encoder gives the fp32 top-1 on at least 98% of the evaluation
/// images (the disagreements are near-ties: fp32's top two cosines within 0.001).
#[test]
fn int8_and_fp32_agree_on_top1() {
    let fp32 = run(Precision::Fp32);
    let int8 = run(Precision::Int8);
    let agree = fp32
        .top1
        .iter()
        .zip(&int8.top1)
        .filter(|(a, b)| a == b)
        .count();
    let n = fp32.top1.len();
    let rate = agree as f64 / n as f64;
    for (split, (ok, total)) in accuracy(int8) {
        println!("int8 {split}: {ok}/{total}");
    }
    println!(
        "int8 vs fp32 top-1 agreement: {agree}/{n} = {:.2}%",
        100.0 * rate
    );
    assert!(rate >= 0.98, "int8 vs fp32 top-1 agreement {agree}/{n}");
}
