//! The bundled default model (`models/tabletop`, trained by `models/tabletop/train.py`):
//! the Rust engine reaches the zero-shot accuracy recorded in its manifest on the committed
//! evaluation set (`models/tabletop/make_eval.py`), within 1 point, on seen and on held-out
//! (never trained) colour-object compositions; and its int8 image encoder agrees with fp32
//! on the top-1 phrase for at least 98% of the images.

use std::collections::BTreeMap;

use clip_perception::{ClipEngine, EngineOptions, Precision, Prompts};

use crate::common::root;

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
    /// Top-1 phrase per image.
    top1: Vec<String>,
}

fn run(precision: Precision) -> Run {
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
    for chunk in images.chunks(16) {
        let decoded: Vec<_> = chunk
            .iter()
            .map(|i| {
                clip_perception::image::load_image_file(&dir.join("eval").join(&i.file)).unwrap()
            })
            .collect();
        for scores in engine.classify(&decoded, &labels).unwrap() {
            top1.push(labels.labels[scores.top_k(1)[0].index].clone());
        }
    }
    Run {
        metrics,
        images,
        top1,
    }
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
    let correct = accuracy(&run);
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
    for (split, (ok, total)) in accuracy(&int8) {
        println!("int8 {split}: {ok}/{total}");
    }
    println!(
        "int8 vs fp32 top-1 agreement: {agree}/{n} = {:.2}%",
        100.0 * rate
    );
    assert!(rate >= 0.98, "int8 vs fp32 top-1 agreement {agree}/{n}");
}
