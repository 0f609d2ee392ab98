//! The `clip_perception` command line, run as a user runs it: exit codes, stdout, stderr.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{cosine, data, f32s, max_abs_diff, read_json, root, tiny_bundle};

fn run(args: &[&str]) -> Output {
    crate::common::run_cli(args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn model() -> String {
    tiny_bundle().display().to_string()
}

fn image(name: &str) -> String {
    data("preprocess").join(name).display().to_string()
}

/// Fails with exit code 1, nothing on stdout, one `error:` line on stderr containing `needles`.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(o));
    assert_eq!(err.lines().count(), 1, "expected one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
}

/// Exit code 1 after every input: one `error:` line per failed input (containing
/// `needles[i]`), then the count; `good` results on stdout.
fn assert_inputs_failed(o: &Output, needles: &[&str], total: usize, good: usize) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), needles.len() + 1, "{err}");
    for (line, needle) in lines.iter().zip(needles) {
        assert!(
            line.starts_with("error: ") && line.contains(needle),
            "{line:?} lacks {needle:?}"
        );
    }
    let summary = format!("{} of {total} inputs failed", needles.len());
    assert_eq!(*lines.last().unwrap(), summary);
    assert_eq!(stdout(o).lines().count(), good, "{}", stdout(o));
}

#[test]
fn batch_commands_report_bad_images_in_place_and_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let broken = broken.display().to_string();
    let (good1, good2) = (image("w2_h2.png"), image("palette_w200_h150.png"));
    let missing = "/no/such/image.png";
    let inputs = [good1.as_str(), &broken, missing, &good2];
    let model = model();
    let classify = |extra: &[&str]| {
        let args = [
            &[
                "classify",
                "--model",
                &model,
                "--labels",
                "cup; ball",
                "--no-cache",
            ][..],
            &inputs[..],
            extra,
        ]
        .concat();
        run(&args)
    };
    // Table: the two good images' results, one error line per bad one, then the count.
    let o = classify(&["--batch-size", "2"]);
    assert_inputs_failed(&o, &["broken.jpg: cannot decode image", missing], 4, 6);
    let table = stdout(&o);
    assert!(
        table.starts_with(&good1) && table.contains(&good2),
        "{table}"
    );
    // JSON: one line per input, in input order, errors in their places.
    let o = classify(&["--json"]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images: Vec<&str> = lines.iter().map(|l| l["image"].as_str().unwrap()).collect();
    assert_eq!(images, inputs);
    assert!(lines[0]["top"].is_array() && lines[3]["top"].is_array());
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .contains("cannot decode image"));
    assert!(lines[2]["error"].as_str().unwrap().contains("cannot read"));
    assert_eq!(o.status.code(), Some(1));
    // --fail-fast: the first bad image ends the run.
    let o = classify(&["--fail-fast", "--batch-size", "1"]);
    assert_fails_after(&o, "broken.jpg", 3);
    // embed-image the same way.
    let o = run(&[
        &["embed-image", "--model", &model, "--json"][..],
        &inputs[..],
    ]
    .concat());
    assert_inputs_failed(&o, &["broken.jpg", missing], 4, 4);
    let o = run(&[
        &["embed-image", "--model", &model, "--fail-fast"][..],
        &inputs[..],
    ]
    .concat());
    assert_fails_after(&o, "broken.jpg", 0);
    // Usage errors: exit code 2.
    assert_eq!(run(&["classify", "--labels", "cup"]).status.code(), Some(2));
    assert_eq!(
        run(&["embed-image", "--no-such-flag", &good1])
            .status
            .code(),
        Some(2)
    );
}

/// `--fail-fast`: exit code 1, `lines` lines of results before the one `error:` line.
fn assert_fails_after(o: &Output, needle: &str, lines: usize) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    assert_eq!(stdout(o).lines().count(), lines, "{}", stdout(o));
}

#[test]
fn classify_json_lines_sorted() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().display().to_string();
    let (model, first, second) = (model(), image("w641_h479.png"), image("w50_h40.png"));
    let args = [
        "classify",
        "--model",
        &model,
        &first,
        &second,
        "--labels",
        "red cup; blue ball; green box",
        "--top-k",
        "0",
        "--json",
        "--cache-dir",
        &cache_dir,
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let cos: Vec<f64> = top.iter().map(|t| t["cosine"].as_f64().unwrap()).collect();
        assert!(cos.windows(2).all(|w| w[0] >= w[1]), "{cos:?}");
        let p: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-4);
    }
    // The second run is served from the cache and gives the same output.
    let again = run(&[&args[..], &["-v"]].concat());
    assert_eq!(stdout(&again), stdout(&o));
    let log = stderr(&again);
    assert!(
        log.contains("text: 3 prompts from cache, 0 encoded in 0 encoder calls"),
        "{log}"
    );
}

#[test]
fn classify_table_and_ensemble() {
    let o = run(&[
        "classify",
        "--model",
        &model(),
        &image("w224_h224.png"),
        "--labels",
        "red cup;blue ball",
        "--ensemble",
        "cifar10",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with(&image("w224_h224.png")), "{out}");
    assert_eq!(out.lines().count(), 3);
    assert!(
        out.contains("1. ") && out.contains("p=") && out.contains("cos="),
        "{out}"
    );
}

#[test]
fn tokenize_matches_golden_ids() {
    let o = run(&[
        "tokenize",
        "--model",
        &model(),
        "a photo of a red cup.",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v["ids"],
        serde_json::json!([49406, 320, 1125, 539, 320, 736, 1937, 269, 49407])
    );
    let plain = run(&["tokenize", "--model", &model(), "Red  CUP"]);
    assert_eq!(stdout(&plain).trim(), "49406 736 1937 49407");
}

#[test]
fn embed_image_and_text_match_golden() {
    let golden = read_json(&data("embeddings/golden.json"));
    let img = &golden["images"][0];
    let file = data("embeddings").join(img["file"].as_str().unwrap());
    let o = run(&[
        "embed-image",
        "--model",
        &model(),
        "--precision",
        "fp32",
        &file.display().to_string(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(cosine(&f32s(&v["embedding"]), &f32s(&img["image_embeds"])) >= 0.99999);
    // The default is the bundle's int8 encoder: onnxruntime's int8 result.
    let o = run(&[
        "embed-image",
        "--model",
        &model(),
        &file.display().to_string(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    // Within 1e-4 of onnxruntime int8 and ten times farther from fp32: the int8 graph ran
    // (tests/embeddings.rs says why the bound holds).
    let got = f32s(&v["embedding"]);
    let to_int8 = max_abs_diff(&got, &f32s(&img["image_embeds_int8_onnxruntime"]));
    let to_fp32 = max_abs_diff(&got, &f32s(&img["image_embeds"]));
    assert!(to_int8 <= 1e-4 && to_fp32 >= 1e-3, "{to_int8} {to_fp32}");
    let o = run(&[
        "embed-image",
        "--precision",
        "int4",
        &file.display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("int4"), "{}", stderr(&o));

    let phrase = &golden["phrases"][0];
    let o = run(&[
        "embed-text",
        "--model",
        &model(),
        phrase["text"].as_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(cosine(&f32s(&v["embedding"]), &f32s(&phrase["text_embeds"])) >= 0.99999);
}

#[test]
fn preprocess_writes_the_reference_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.npy");
    let o = run(&[
        "preprocess",
        "--model",
        &model(),
        &image("w641_h479.png"),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, got) = clip_perception::npy::read_f32(&out).unwrap();
    let (_, expected) =
        clip_perception::npy::read_f32(&data("preprocess/w641_h479.pixel_values.npy")).unwrap();
    assert_eq!(shape, vec![1, 3, 224, 224]);
    let max = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-6, "{max}");
}

#[test]
fn info_shows_the_manifest() {
    let o = run(&["info", &model()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("clip-tiny-random-init-seed0")
            && out.contains("pixel_values")
            && out.contains("checksums     ok"),
        "{out}"
    );
    let o = run(&["info", &model(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["embed_dim"], 16);
    // `--model` is the same as DIR; without either, the default model lookup (here: the
    // source tree's models/tabletop, as for every other command).
    let o = run(&["info", "--json", "--model", &model()]);
    assert_eq!(stdout(&o), stdout(&run(&["info", &model(), "--json"])));
    let o = Command::new(env!("CARGO_BIN_EXE_clip_perception"))
        .args(["info", "--json"])
        .env_remove("CLIP_PERCEPTION_MODEL")
        .env_remove("AMENT_PREFIX_PATH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["name"], "clip-tabletop");
    let o = run(&["info", &model(), "--model", &model()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "DIR and --model together are a usage error"
    );
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let o = run(&[
        "classify",
        "--model",
        "/no/such/model",
        &image("w2_h2.png"),
        "--labels",
        "cup",
    ]);
    assert_fails(&o, &["/no/such/model"]);

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("broken.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\n this is not a png").unwrap();
    let o = run(&[
        "classify",
        "--model",
        &model(),
        &garbage.display().to_string(),
        "--labels",
        "cup",
        "--no-cache",
    ]);
    assert_inputs_failed(&o, &["broken.png: cannot decode image"], 1, 0);

    let o = run(&[
        "classify",
        "--model",
        &model(),
        "/no/such/image.png",
        "--labels",
        "cup",
        "--no-cache",
    ]);
    assert_inputs_failed(&o, &["/no/such/image.png"], 1, 0);

    // Bad labels, template or ensemble: (extra arguments, what the message must name).
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--labels", " ; ;"], &["labels", "empty"]),
        (
            &["--labels", "cup", "--template", "a photo"],
            &["template", "{}"],
        ),
        (
            &["--labels", "cup", "--ensemble", "/no/such/ensemble.txt"],
            &["ensemble"],
        ),
    ];
    let (model, small) = (model(), image("w2_h2.png"));
    for (extra, needles) in cases {
        let o = run(&[&["classify", "--model", &model, &small][..], extra].concat());
        assert_fails(&o, needles);
    }

    let broken = crate::common::copy_bundle(&tiny_bundle());
    std::fs::write(broken.path().join("text_encoder.onnx"), b"tampered").unwrap();
    let o = run(&["info", &broken.path().display().to_string()]);
    assert_fails(&o, &["text_encoder.onnx", "sha256 mismatch"]);
    assert!(!Path::new(&garbage).with_extension("npy").exists());
}

#[test]
fn an_error_line_says_its_cause_once() {
    let o = run(&["embed-image", "--model", &model(), "/no/such/image.png"]);
    assert_inputs_failed(&o, &["/no/such/image.png: cannot read: "], 1, 0);
    let err = stderr(&o);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

/// `embed-image --json` without `--model`: the width of the embedding tells which bundle
/// the default lookup found (the tiny fixture's 16, the tabletop model's 64).
fn default_model_width(command: &mut Command) -> usize {
    let o = command
        .args(["embed-image", "--json", &image("w50_h40.png")])
        .env_remove("CLIP_PERCEPTION_LOG")
        .output()
        .expect("run clip_perception");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["embedding"].as_array().unwrap().len()
}

#[test]
fn default_model_lookup_env_then_install_prefix_then_source_tree() {
    let exe = env!("CARGO_BIN_EXE_clip_perception");
    let plain = || {
        let mut c = Command::new(exe);
        c.env_remove("CLIP_PERCEPTION_MODEL")
            .env_remove("AMENT_PREFIX_PATH");
        c
    };
    // Nothing set: the source tree's tabletop model.
    assert_eq!(default_model_width(&mut plain()), 64);
    // $CLIP_PERCEPTION_MODEL names the bundle.
    assert_eq!(
        default_model_width(plain().env("CLIP_PERCEPTION_MODEL", tiny_bundle())),
        16
    );
    // An installed layout: PREFIX/lib/clip_perception/clip_perception (colcon) finds
    // PREFIX/share/clip_perception/models/tabletop, and so does $AMENT_PREFIX_PATH.
    let prefix = tempfile::tempdir().unwrap();
    let share = prefix.path().join("share/clip_perception/models/tabletop");
    std::fs::create_dir_all(share.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(tiny_bundle(), &share).unwrap();
    let lib = prefix.path().join("lib/clip_perception");
    std::fs::create_dir_all(&lib).unwrap();
    let installed = lib.join("clip_perception");
    std::fs::copy(exe, &installed).unwrap();
    let mut from_install = Command::new(&installed);
    from_install
        .env_remove("CLIP_PERCEPTION_MODEL")
        .env_remove("AMENT_PREFIX_PATH");
    assert_eq!(default_model_width(&mut from_install), 16);
    assert_eq!(
        default_model_width(plain().env("AMENT_PREFIX_PATH", prefix.path())),
        16
    );
    // An explicit --model wins over everything.
    let tabletop = root().join("models/tabletop");
    let o = plain()
        .env("CLIP_PERCEPTION_MODEL", tiny_bundle())
        .args(["embed-image", "--json", "--model"])
        .arg(&tabletop)
        .arg(image("w50_h40.png"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["embedding"].as_array().unwrap().len(), 64);
}

/// `classify` cosines and probabilities against PyTorch on the fixture's weights with the
/// CLIP paper's templates (`tests/data/classify/reference.json`, made by `generate.py`
/// there): one template and both built-in ensembles. Bound 1e-5: the fp32 encoders equal
/// PyTorch to ~1e-6 (tests/embeddings.rs) and the probabilities are a softmax over four
/// phrases at logit scale 100.
#[test]
fn classify_values_equal_pytorch_for_template_and_ensembles() {
    let reference = read_json(&data("classify/reference.json"));
    let phrases: Vec<&str> = reference["phrases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let labels = phrases.join("; ");
    let model = model();
    for case in reference["cases"].as_array().unwrap() {
        let image = root().join(case["image"].as_str().unwrap());
        let image = image.display().to_string();
        let prompts = case["prompts"].as_str().unwrap();
        let choice: [&str; 2] = match prompts {
            "template" => ["--template", "a photo of a {}."],
            ensemble => ["--ensemble", ensemble],
        };
        let args = [
            "classify",
            "--model",
            &model,
            &image,
            "--labels",
            &labels,
            choice[0],
            choice[1],
            "--precision",
            "fp32",
            "--top-k",
            "0",
            "--json",
            "--no-cache",
        ];
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), phrases.len());
        for t in top {
            let k = phrases
                .iter()
                .position(|p| *p == t["label"].as_str().unwrap())
                .unwrap();
            for field in ["cosine", "probability"] {
                let (got, want) = (t[field].as_f64().unwrap(), case[field][k].as_f64().unwrap());
                assert!(
                    (got - want).abs() <= 1e-5,
                    "{prompts} {image} {}: {field} {got} vs PyTorch {want}",
                    phrases[k]
                );
            }
        }
    }
}

/// The built-in ensembles are the paper's templates, text for text, as open_clip
/// (`imagenet`) and clip_benchmark (`cifar10`) ship them.
#[test]
fn builtin_ensembles_are_the_papers_templates() {
    let reference = read_json(&data("classify/reference.json"));
    for name in ["imagenet", "cifar10"] {
        let want: Vec<&str> = reference["templates"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let prompts = clip_perception::Prompts::ensemble(name).unwrap();
        assert_eq!(prompts.templates(), want.as_slice(), "{name}");
    }
}
