//! Paths and small helpers shared by the test modules.

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}

/// The tiny random-init CLIP fixture bundle (tests/fixtures/README.md says how it is made).
pub fn tiny_bundle() -> PathBuf {
    root().join("tests/fixtures/tiny-clip")
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .expect("array of strings")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

pub fn f32s(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array of numbers")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// The largest |a[i] - b[i]|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Copies a bundle folder to a fresh temporary directory (to break it on purpose).
pub fn copy_bundle(src: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(src).expect("bundle dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// Removes the top-level block `key:` (and its indented lines) from the manifest.
pub fn remove_block(dir: &std::path::Path, key: &str) {
    let path = dir.join("model.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            skipping = line.starts_with(&format!("{key}:"));
        }
        if !skipping {
            kept.push(line);
        }
    }
    assert!(kept.len() < text.lines().count(), "no block {key}");
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

/// Removes the `files.image_encoder_int8` entry from the manifest (nothing else).
pub fn remove_int8_file_entry(dir: &std::path::Path) {
    let path = dir.join("model.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("image_encoder_int8: {path"))
        .collect();
    assert!(
        kept.len() < text.lines().count(),
        "no files.image_encoder_int8"
    );
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

/// Removes the int8 image encoder from a bundle copy (its file, its entry, its section).
pub fn remove_int8(dir: &std::path::Path) {
    remove_int8_file_entry(dir);
    remove_block(dir, "quantization");
    std::fs::remove_file(dir.join("image_encoder_int8.onnx")).unwrap();
}

/// Runs the `clip_perception` CLI as a user would (no log level from the environment).
pub fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_clip_perception"))
        .args(args)
        .env_remove("CLIP_PERCEPTION_LOG")
        .output()
        .expect("run clip_perception")
}
