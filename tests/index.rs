//! The image-folder index and search (`clip_perception index` / `search`), run as a user
//! runs them, on the default model with its sample images (whose names say what they show):
//! known answers, the incremental round trip against a fresh index, refusals, corrupt files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use clip_perception::index::Index;

use crate::common::{root, run_cli, tiny_bundle};

fn samples() -> PathBuf {
    root().join("models/tabletop/samples")
}

fn cli(args: &[&str]) -> std::process::Output {
    let o = run_cli(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs `index`; the folder holds one broken image, so it exits with 1 after writing the
/// index, that file named in an `error:` line.
fn index(dir: &Path, out: &Path) -> String {
    let o = run_cli(&[
        "index",
        &dir.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--batch-size",
        "3",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("shelf/broken.png"),
        "{err}"
    );
    assert!(err.trim_end().ends_with("inputs failed"), "{err}");
    err
}

/// A folder of the sample images, one in a subfolder, plus a file that is not an image
/// and one that is broken.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shelf")).unwrap();
    for entry in std::fs::read_dir(samples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let to = if name.starts_with("yellow_banana_") {
            dir.path().join("shelf").join(&name)
        } else {
            dir.path().join(&name)
        };
        std::fs::copy(&path, to).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    std::fs::write(dir.path().join("shelf/broken.png"), b"\x89PNG broken").unwrap();
    dir
}

fn search(index: &Path, query: &[&str]) -> Vec<Value> {
    let o = cli(&[
        &["search", &index.display().to_string(), "--json"][..],
        query,
    ]
    .concat());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn text_and_image_search_find_the_right_images() {
    let dir = folder();
    let out = tempfile::tempdir().unwrap();
    let log = index(dir.path(), out.path());
    assert!(
        log.contains("shelf/broken.png"),
        "the broken file is listed: {log}"
    );
    let idx = Index::open(out.path()).unwrap();
    let paths: Vec<&str> = idx.items.iter().map(|i| i.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "rows sorted by path");
    assert!(paths.contains(&"shelf/yellow_banana_green_box.jpg"));
    assert!(!paths
        .iter()
        .any(|p| p.ends_with(".txt") || p.ends_with("broken.png")));
    assert_eq!(idx.manifest.skipped.len(), 1);
    for row in 0..idx.items.len() {
        let norm: f32 = idx.row(row).iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4, "unit rows");
    }

    let hits = search(out.path(), &["a photo of a red cup.", "-k", "3"]);
    assert_eq!(hits.len(), 3);
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("/red_cup.jpg"),
        "{hits:?}"
    );
    let ranks: Vec<u64> = hits.iter().map(|h| h["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, [1, 2, 3]);
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let banana = search(
        out.path(),
        &["banana", "--template", "a photo of a yellow {}.", "-k", "1"],
    );
    assert!(
        banana[0]["path"]
            .as_str()
            .unwrap()
            .contains("yellow_banana"),
        "{banana:?}"
    );
    // The model options every command takes: fp32 on two threads finds the same first
    // image (int8 and fp32 rank this set alike; scores within int8's error).
    let fp32 = search(
        out.path(),
        &[
            "a photo of a red cup.",
            "-k",
            "3",
            "--precision",
            "fp32",
            "--threads",
            "2",
        ],
    );
    assert_eq!(fp32[0]["path"], hits[0]["path"], "{fp32:?}");
    assert!((fp32[0]["score"].as_f64().unwrap() - scores[0]).abs() < 0.02);
    // Image to image: an indexed image finds itself first, with cosine 1.
    let me = dir.path().join("blue_ball.jpg").display().to_string();
    let hits = search(out.path(), &["--image", &me, "-k", "2"]);
    assert!(hits[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("/blue_ball.jpg"));
    assert!((hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4);
}

#[test]
fn an_update_equals_a_fresh_index() {
    let dir = folder();
    let out = tempfile::tempdir().unwrap();
    index(dir.path(), out.path());
    // Add one, change one (other pixels, so other size), delete one.
    std::fs::copy(
        samples().join("red_cup.jpg"),
        dir.path().join("shelf/new_cup.jpg"),
    )
    .unwrap();
    std::fs::copy(
        samples().join("red_cup.jpg"),
        dir.path().join("blue_ball.jpg"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("yellow_banana.jpg")).unwrap();
    let log = index(dir.path(), out.path());
    assert!(
        log.contains("2 images encoded, 3 unchanged, 1 removed, 1 unreadable"),
        "{log}"
    );
    let fresh = tempfile::tempdir().unwrap();
    index(dir.path(), fresh.path());
    let (a, b) = (
        Index::open(out.path()).unwrap(),
        Index::open(fresh.path()).unwrap(),
    );
    assert_eq!(a.items, b.items);
    assert_eq!(a.manifest.model, b.manifest.model);
    let worst = a
        .embeddings
        .iter()
        .zip(&b.embeddings)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-5,
        "updated vs fresh embeddings differ by {worst}"
    );
    // Only the current generation's files remain.
    let files = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(
        files, 3,
        "manifest.json, one embeddings file, one items file"
    );
}

#[test]
fn another_model_and_corrupt_files_are_refused_clearly() {
    let dir = folder();
    let out = tempfile::tempdir().unwrap();
    index(dir.path(), out.path());
    let out_s = out.path().display().to_string();
    let tiny = tiny_bundle().display().to_string();
    let o = run_cli(&[
        "index",
        &dir.path().display().to_string(),
        "--out",
        &out_s,
        "--model",
        &tiny,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("clip-tabletop") && err.contains("was made with model"),
        "{err}"
    );
    let o = run_cli(&["search", &out_s, "cup", "--model", &tiny]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model"));

    let idx = Index::open(out.path()).unwrap();
    // A truncated embeddings file.
    let npy = out.path().join(&idx.manifest.embeddings);
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() / 2]).unwrap();
    let o = run_cli(&["search", &out_s, "cup"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(&idx.manifest.embeddings),
        "{err}"
    );
    // A manifest that is not one.
    std::fs::write(out.path().join("manifest.json"), "{\"format\": 3").unwrap();
    let o = run_cli(&["search", &out_s, "cup"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("manifest.json") && err.contains("not a usable index"),
        "{err}"
    );
}
