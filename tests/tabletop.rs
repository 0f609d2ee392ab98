//! The bundled default model (`models/tabletop`, trained by `models/tabletop/train.py`):
//! the Rust engine reaches the zero-shot accuracy recorded in its manifest on the committed
//! evaluation set (`models/tabletop/make_eval.py`), within 1 point, on seen and on held-out
//! (never trained) colour-object compositions.

use std::collections::BTreeMap;

use clip_perception::labels::Prompts;
use clip_perception::{ClipEngine, EngineOptions};

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

#[test]
fn rust_engine_reaches_the_recorded_zero_shot_accuracy() {
    let dir = root().join("models/tabletop");
    let options = EngineOptions {
        threads: 2,
        cache_dir: None,
        batch_size: 16,
    };
    let mut engine = ClipEngine::load(&dir, &options).unwrap();
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
    let colours: Vec<String> = metrics["colours"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let objects: Vec<String> = metrics["objects"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    for c in &colours {
        for o in &objects {
            let p = format!("{c} {o}");
            if !phrases.contains(&p) {
                phrases.push(p);
            }
        }
    }
    let labels = engine
        .label_matrix(&phrases, &Prompts::single(&template).unwrap())
        .unwrap();
    let mut correct: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for chunk in images.chunks(16) {
        let decoded: Vec<_> = chunk
            .iter()
            .map(|i| {
                clip_perception::frame::load_image_file(&dir.join("eval").join(&i.file)).unwrap()
            })
            .collect();
        for (image, scores) in chunk
            .iter()
            .zip(engine.classify(&decoded, &labels).unwrap())
        {
            let top = &labels.labels[scores.top_k(1)[0].index];
            let entry = correct.entry(image.split.clone()).or_default();
            entry.0 += usize::from(*top == image.label);
            entry.1 += 1;
        }
    }
    for (split, (ok, n)) in &correct {
        let accuracy = 100.0 * *ok as f64 / *n as f64;
        let recorded = metrics[format!("zero_shot_top1_{split}_rust")]
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
