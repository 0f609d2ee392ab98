//! `clip_perception replay` on bags written by independent writers (`tests/data/bags`, made
//! by `generate.py` there with `rosbags` and `mcap-ros2-support`): every frame comes out in
//! bag order with its stamp, frame_id and log time, scored exactly as `classify` scores the
//! same pixels; topic choice errors list the image topics; damaged bags keep every frame
//! before the damage and name the file and byte offset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::{data, read_json, root, tiny_bundle};

const LABELS: &str = "red cup; blue ball; green box; yellow banana";

fn run(args: &[&str]) -> Output {
    crate::common::run_cli(args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bags() -> Value {
    read_json(&data("bags/bags.json"))
}

/// Replays `bag` with the tiny model into a temporary file: (exit, stderr, JSON lines).
fn replay(bag: &Path, extra: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let (bag, model, out_path) = (
        bag.display().to_string(),
        tiny_bundle().display().to_string(),
        out.path().display().to_string(),
    );
    let mut args = vec![
        "replay", &bag, "--model", &model, "--labels", LABELS, "--out", &out_path,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    let lines = std::fs::read_to_string(out.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (o.status.code(), text(&o.stderr), lines)
}

/// `classify`'s cosines of every frame file, by file name: the same pixels, scored by the
/// CLI's own path.
fn classify_cosines(files: &[PathBuf]) -> HashMap<String, HashMap<String, f64>> {
    let model = tiny_bundle().display().to_string();
    let mut args: Vec<String> = [
        "classify",
        "--model",
        &model,
        "--labels",
        LABELS,
        "--json",
        "--top-k",
        "0",
        "--no-cache",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(files.iter().map(|f| f.display().to_string()));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let name = Path::new(v["image"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let cosines = v["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["label"].as_str().unwrap().to_string(),
                        t["cosine"].as_f64().unwrap(),
                    )
                })
                .collect();
            (name, cosines)
        })
        .collect()
}

/// The lines are the expected frames, in order, each scored like `classify` scores its
/// frame file (bound 1e-5: replay encodes in batches, classify in others; the int8
/// activation scales are per token row, so batching changes results by float rounding only).
fn assert_frames(bag: &str, lines: &[Value], expected: &[Value], topic: &str) {
    let files: Vec<PathBuf> = expected
        .iter()
        .map(|f| data("bags").join(f["file"].as_str().unwrap()))
        .collect();
    let reference = classify_cosines(&files);
    for (line, want) in lines.iter().zip(expected) {
        let file = Path::new(want["file"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(line["topic"], topic, "{bag}");
        assert_eq!(line["bag_time_ns"], want["bag_time_ns"], "{bag} {file}");
        assert_eq!(line["stamp"]["sec"], want["stamp"][0], "{bag} {file}");
        assert_eq!(line["stamp"]["nanosec"], want["stamp"][1], "{bag} {file}");
        assert_eq!(line["frame_id"], want["frame_id"], "{bag} {file}");
        let labels = line["labels"]
            .as_array()
            .unwrap_or_else(|| panic!("{bag} {file}: {line}"));
        assert_eq!(labels.len(), 4, "{bag} {file}");
        for l in labels {
            let phrase = l["phrase"].as_str().unwrap();
            let (got, want) = (l["cosine"].as_f64().unwrap(), reference[&file][phrase]);
            assert!(
                (got - want).abs() <= 1e-5,
                "{bag} {file} {phrase}: replay {got}, classify {want}"
            );
        }
    }
}

#[test]
fn every_bag_of_the_independent_writers_is_replayed_frame_by_frame() {
    for bag in bags()["bags"].as_array().unwrap() {
        let name = bag["bag"].as_str().unwrap();
        let expected = bag["frames"].as_array().unwrap();
        let (code, err, lines) = replay(&data("bags").join(name), &["--batch-size", "3"]);
        assert_eq!(code, Some(0), "{name} ({}): {err}", bag["writer"]);
        assert_eq!(lines.len(), expected.len(), "{name}: {err}");
        assert_frames(name, &lines, expected, bag["topic"].as_str().unwrap());
        assert!(
            err.contains(&format!(
                "{} frames read, {} scored, 0 skipped",
                lines.len(),
                lines.len()
            )),
            "{name}: summary {err}"
        );
    }
}

#[test]
fn every_and_time_window_select_frames() {
    let bag = &bags()["bags"][2];
    let name = bag["bag"].as_str().unwrap();
    let expected: Vec<Value> = bag["frames"].as_array().unwrap().clone();
    let (code, err, lines) = replay(&data("bags").join(name), &["--every", "2"]);
    assert_eq!(code, Some(0), "{err}");
    let every_other: Vec<Value> = expected.iter().step_by(2).cloned().collect();
    assert_eq!(lines.len(), every_other.len());
    assert_frames(name, &lines, &every_other, "/cam/image");
    // Frames are a second apart: [1.5 s, 3.5 s] after the first holds frames 2 and 3.
    let (code, err, lines) = replay(
        &data("bags").join(name),
        &["--start", "1.5", "--end", "3.5"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_frames(name, &lines, &expected[2..4], "/cam/image");
    assert_eq!(lines.len(), 2);
}

#[test]
fn the_topic_is_the_only_image_topic_or_must_be_named() {
    let ambiguous = &bags()["two_image_topics"];
    let bag = data("bags").join(ambiguous["bag"].as_str().unwrap());
    let (code, err, _) = replay(&bag, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("2 image topics")
            && err.contains("/left/image (sensor_msgs/msg/Image, 2 messages)")
            && err.contains("/right/image (sensor_msgs/msg/Image, 2 messages)"),
        "{err}"
    );
    let (code, err, _) = replay(&bag, &["--topic", "/task"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/task is a std_msgs/msg/String"), "{err}");
    let (code, err, _) = replay(&bag, &["--topic", "/nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no topic /nope") && err.contains("/left/image"),
        "{err}"
    );
    let (code, err, lines) = replay(&bag, &["--topic", "/right/image"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines.len(), 2);
}

#[test]
fn a_damaged_bag_keeps_every_frame_before_the_damage_and_says_where() {
    for bag in bags()["damaged"].as_array().unwrap() {
        let name = bag["bag"].as_str().unwrap();
        let expected = bag["frames"].as_array().unwrap();
        let (code, err, lines) = replay(&data("bags").join(name), &["--batch-size", "4"]);
        assert_eq!(code, Some(1), "{name}: {err}");
        let at_least = bag["at_least"].as_u64().unwrap() as usize;
        assert!(
            lines.len() >= at_least && lines.len() < expected.len(),
            "{name}: {} frames out, the mcap package's reader reads {at_least} of {}",
            lines.len(),
            expected.len()
        );
        assert_frames(name, &lines, &expected[..lines.len()], "/cam/image");
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        assert!(
            line.contains(name)
                && line.contains("byte offset")
                && line.to_lowercase().contains(bag["error"].as_str().unwrap()),
            "{name}: {err}"
        );
    }
}

#[test]
fn bad_paths_and_storage_are_named() {
    let (code, err, _) = replay(Path::new("/no/such/bag.mcap"), &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/no/such/bag.mcap: no such file or folder"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "not a bag").unwrap();
    let (code, err, _) = replay(&other, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("notes.txt: unknown storage"), "{err}");
    let (code, err, _) = replay(dir.path(), &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("without metadata.yaml"), "{err}");
}

#[test]
fn the_params_file_gives_the_phrases_and_thresholds() {
    let out = tempfile::NamedTempFile::new().unwrap();
    let bag = data("bags").join("no_summary.mcap");
    let o = run(&[
        "replay",
        &bag.display().to_string(),
        "--params-file",
        &root().join("config/clip_node.yaml").display().to_string(),
        "--model",
        &tiny_bundle().display().to_string(),
        "--out",
        &out.path().display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(out.path())
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut phrases: Vec<&str> = first["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["phrase"].as_str().unwrap())
        .collect();
    phrases.sort();
    assert_eq!(
        phrases,
        [
            "blue ball",
            "green box",
            "red cup",
            "white phone",
            "yellow banana"
        ]
    );
}
