//! `clip_perception eval`, the zero-shot benchmark, on sets generated from the default
//! model's evaluation images (`models/tabletop/eval/<color>_<object>_NN.jpg`): its numbers
//! against the same numbers computed here from `classify --json` on the same images (whose
//! cosines are checked against PyTorch elsewhere), and the CIFAR binary reader against the
//! same pixels as an image folder.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{root, run_cli};

/// The first `per_class` images of each of the first `classes` classes.
fn picks(classes: usize, per_class: usize) -> Vec<(String, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("models/tabletop/eval"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    let mut by_class: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for f in files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let class = stem.rsplit_once('_').unwrap().0.replace('_', " ");
        match by_class.last_mut() {
            Some((c, list)) if *c == class => list.push(f),
            _ => by_class.push((class, vec![f])),
        }
    }
    by_class
        .into_iter()
        .take(classes)
        .flat_map(|(c, list)| {
            list.into_iter()
                .take(per_class)
                .map(move |f| (c.clone(), f))
        })
        .collect()
}

fn run_json(args: &[&str]) -> (Value, std::process::Output) {
    let o = run_cli(args);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    (value, o)
}

#[test]
fn eval_numbers_equal_those_from_classify() {
    let picks = picks(8, 3);
    let dir = tempfile::tempdir().unwrap();
    for (class, file) in &picks {
        let folder = dir.path().join(class.replace(' ', "_"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
    }
    let (eval, o) = run_json(&[
        "eval",
        &dir.path().display().to_string(),
        "--json",
        "--failures",
        "100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let classes: Vec<String> = eval["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut expected_classes: Vec<String> = picks.iter().map(|p| p.0.clone()).collect();
    expected_classes.dedup();
    assert_eq!(
        classes, expected_classes,
        "class names from the folders, `_` as space"
    );

    // The same images through `classify` with the class names as phrases.
    let copied: Vec<String> = picks
        .iter()
        .map(|(c, f)| {
            dir.path()
                .join(c.replace(' ', "_"))
                .join(f.file_name().unwrap())
                .display()
                .to_string()
        })
        .collect();
    let labels = classes.join("; ");
    let args = [
        &["classify", "--json", "--no-cache", "--labels", &labels][..],
        &copied.iter().map(String::as_str).collect::<Vec<_>>()[..],
    ]
    .concat();
    let o = run_cli(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (mut top1, mut top5) = (0, 0);
    let mut recall = vec![(0usize, 0usize); classes.len()];
    let mut mistakes = 0;
    for (line, (class, _)) in String::from_utf8_lossy(&o.stdout).lines().zip(&picks) {
        let v: Value = serde_json::from_str(line).unwrap();
        let ranked: Vec<&str> = v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["label"].as_str().unwrap())
            .collect();
        let t = classes.iter().position(|c| c == class).unwrap();
        recall[t].0 += 1;
        if ranked[0] == class {
            top1 += 1;
            recall[t].1 += 1;
        } else {
            mistakes += 1;
        }
        if ranked[..5].contains(&class.as_str()) {
            top5 += 1;
        }
    }
    let n = picks.len() as f64;
    assert_eq!(eval["images"], picks.len());
    assert!((eval["top1"].as_f64().unwrap() - top1 as f64 / n).abs() < 1e-12);
    assert!((eval["top5"].as_f64().unwrap() - top5 as f64 / n).abs() < 1e-12);
    let mean_recall = recall
        .iter()
        .map(|(c, r)| *r as f64 / *c as f64)
        .sum::<f64>()
        / recall.len() as f64;
    assert!((eval["mean_per_class_recall"].as_f64().unwrap() - mean_recall).abs() < 1e-12);
    assert_eq!(eval["mistakes"].as_array().unwrap().len(), mistakes);
    for (i, c) in eval["per_class"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["count"], recall[i].0);
        assert_eq!(c["correct"], recall[i].1);
    }
    let margins: Vec<f64> = eval["mistakes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["margin"].as_f64().unwrap())
        .collect();
    assert!(
        margins.iter().all(|m| *m >= 0.0) && margins.windows(2).all(|w| w[0] >= w[1]),
        "{margins:?}"
    );
    assert!(
        top1 > 0 && mistakes > 0,
        "known answers: some right ({top1}), some wrong ({mistakes})"
    );

    // Prompt sensitivity: one row per template of the ensemble, and their spread; the
    // report with its pictures (opened in chromium by tests/scripts/report_screenshot.sh).
    let report = tempfile::tempdir().unwrap();
    let (sens, o) = run_json(&[
        "eval",
        &dir.path().display().to_string(),
        "--json",
        "--ensemble",
        "cifar10",
        "--per-template",
        "--report",
        &report.path().display().to_string(),
    ]);
    assert!(o.status.success());
    let html = std::fs::read_to_string(report.path().join("index.html")).unwrap();
    for png in ["confusion.png", "per_template.png", "mistakes.png"] {
        assert!(html.contains(png), "index.html lacks {png}");
        let img = image::open(report.path().join(png)).unwrap();
        assert!(img.width() > 200 && img.height() > 100, "{png}");
    }
    let metrics = std::fs::read_to_string(report.path().join("metrics.json")).unwrap();
    let metrics: Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(metrics, sens, "metrics.json is what --json prints");
    let rows = sens["per_template"]["templates"].as_array().unwrap();
    assert_eq!(rows.len(), 18);
    let accs: Vec<f64> = rows.iter().map(|r| r["top1"].as_f64().unwrap()).collect();
    let min = accs.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(sens["per_template"]["min"].as_f64().unwrap(), min);
}

/// Writes `images` (32x32 RGB, label) as a CIFAR binary file with `label_bytes` per record
/// (the label last of them).
fn write_cifar(path: &Path, images: &[(image::RgbImage, u8)], label_bytes: usize) {
    let mut bytes = Vec::new();
    for (img, label) in images {
        bytes.extend(std::iter::repeat_n(0u8, label_bytes - 1));
        bytes.push(*label);
        for c in 0..3 {
            bytes.extend(img.pixels().map(|p| p.0[c]));
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar_binary_files_read_as_the_same_pixels_in_a_folder() {
    let picks = picks(10, 2);
    let mut classes: Vec<String> = picks.iter().map(|p| p.0.clone()).collect();
    classes.dedup();
    let small: Vec<(image::RgbImage, u8)> = picks
        .iter()
        .map(|(c, f)| {
            let img = image::open(f).unwrap().to_rgb8();
            let img = image::imageops::resize(&img, 32, 32, image::imageops::FilterType::Triangle);
            (img, classes.iter().position(|x| x == c).unwrap() as u8)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // The same pixels as PNG files, one folder per class, named in label order.
    let folder = dir.path().join("folder");
    for (i, (img, label)) in small.iter().enumerate() {
        let class_dir = folder.join(format!("{label:02}"));
        std::fs::create_dir_all(&class_dir).unwrap();
        img.save(class_dir.join(format!("{i:03}.png"))).unwrap();
    }
    std::fs::write(folder.join("classes.txt"), classes.join("\n")).unwrap();
    let (from_folder, o) = run_json(&["eval", &folder.display().to_string(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, label_bytes) in [("test_batch.bin", 1), ("test.bin", 2)] {
        let set = dir.path().join(name.replace(".bin", ""));
        std::fs::create_dir_all(&set).unwrap();
        write_cifar(&set.join(name), &small, label_bytes);
        let names = if label_bytes == 1 {
            "batches.meta.txt"
        } else {
            "fine_label_names.txt"
        };
        std::fs::write(set.join(names), classes.join("\n")).unwrap();
        // The reader's pixels are the written ones, value for value (CIFAR stores each
        // image as its red, then green, then blue plane, rows top to bottom).
        let dataset = clip_perception::zeroshot::Dataset::open(&set).unwrap();
        assert_eq!(dataset.len(), small.len());
        for (i, (img, label)) in small.iter().enumerate() {
            let sample = dataset.sample(i);
            assert_eq!(sample.label, *label as usize, "{name}: label of {i}");
            let got = sample.image.unwrap();
            assert_eq!((got.width, got.height), (32, 32));
            for y in 0..32 {
                let want: Vec<u8> = (0..32).flat_map(|x| img.get_pixel(x, y as u32).0).collect();
                assert_eq!(got.row(y), &want[..], "{name}: image {i}, row {y}");
            }
        }
        let (from_cifar, o) = run_json(&["eval", &set.display().to_string(), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for key in [
            "classes",
            "images",
            "top1",
            "top5",
            "per_class",
            "confusion",
        ] {
            assert_eq!(from_cifar[key], from_folder[key], "{name}: {key}");
        }
    }
    // Built-in CIFAR-10 names without batches.meta.txt; a truncated file is refused.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    write_cifar(&bare.join("test_batch.bin"), &small[..3], 1);
    let (v, o) = run_json(&[
        "eval",
        &bare.join("test_batch.bin").display().to_string(),
        "--json",
    ]);
    assert!(o.status.success());
    assert_eq!(v["classes"][0], "airplane");
    let bytes = std::fs::read(bare.join("test_batch.bin")).unwrap();
    std::fs::write(bare.join("test_batch.bin"), &bytes[..bytes.len() - 100]).unwrap();
    let o = run_cli(&["eval", &bare.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.starts_with("error: ") && err.contains("test_batch.bin") && err.contains("truncated"),
        "{err}"
    );
}
