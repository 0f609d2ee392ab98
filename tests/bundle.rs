//! A broken bundle stops loading with one error that names the file and the field.

use clip_perception::text::tokenizer::TextTokenizer;
use clip_perception::{EncoderOptions, ImageEncoder, ModelBundle, Precision, TextEncoder};

use crate::common::{copy_bundle, remove_block, remove_int8, remove_int8_file_entry, tiny_bundle};

fn edit_manifest(dir: &std::path::Path, from: &str, to: &str) {
    let path = dir.join("model.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "fixture manifest has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn fp32() -> EncoderOptions {
    EncoderOptions {
        precision: Some(Precision::Fp32),
        ..Default::default()
    }
}

fn err_of<T>(r: clip_perception::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn fixture_bundle_is_valid() {
    let b = ModelBundle::open(tiny_bundle()).unwrap();
    assert_eq!(b.manifest.embed_dim, 16);
    assert_eq!(b.manifest_sha256.len(), 64);
}

#[test]
fn missing_folder_and_manifest() {
    let e = err_of(ModelBundle::open("/nonexistent/bundle"));
    assert!(
        e.contains("/nonexistent/bundle") && e.contains("model.yaml"),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let e = err_of(ModelBundle::open(empty.path()));
    assert!(e.contains("model.yaml") && e.contains("cannot read"), "{e}");
}

#[test]
fn manifest_field_errors_name_the_field() {
    let cases = [
        ("embed_dim: 16", "embed_dim: 0", "embed_dim"),
        ("format_version: 1", "format_version: 7", "format_version"),
        ("logit_scale: 100.0", "logit_scale: -1", "logit_scale"),
        ("image_size: 224", "image_size: \"big\"", "image_size"),
        ("context_length: 77", "", "context_length"),
        (
            "path: tokenizer.json, sha256: ",
            "path: ../tokenizer.json, sha256: ",
            "files.tokenizer.path",
        ),
    ];
    for (from, to, field) in cases {
        let dir = copy_bundle(&tiny_bundle());
        edit_manifest(dir.path(), from, to);
        let e = err_of(ModelBundle::open(dir.path()));
        assert!(
            e.contains("model.yaml") && e.contains(field),
            "{from} -> {to}: {e}"
        );
    }
}

#[test]
fn checksum_mismatch_names_the_file() {
    // Opening checks that the files exist; the checksum is checked on the bytes a load
    // reads (the tokenizer here, which every entry point loads at start) and by
    // `verify_checksums` (`info`).
    let dir = copy_bundle(&tiny_bundle());
    let path = dir.path().join("tokenizer.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap();
    let bundle = ModelBundle::open(dir.path()).unwrap();
    for e in [
        err_of(bundle.verify_checksums()),
        err_of(TextTokenizer::for_bundle(&bundle)),
        err_of(clip_perception::ClipEngine::load(
            clip_perception::EngineOptions {
                model: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
        )),
    ] {
        assert!(
            e.contains("tokenizer.json") && e.contains("sha256 mismatch"),
            "{e}"
        );
    }
}

#[test]
fn missing_graph_file() {
    let dir = copy_bundle(&tiny_bundle());
    std::fs::remove_file(dir.path().join("text_encoder.onnx")).unwrap();
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(e.contains("text_encoder.onnx"), "{e}");
}

#[test]
fn manifest_disagreeing_with_graphs() {
    let cases: [(&str, &str, &str, bool); 4] = [
        ("input: pixel_values", "input: pixels", "pixels", true),
        ("output: text_embeds", "output: embeds", "embeds", false),
        ("image_size: 224", "image_size: 256", "256", true),
        ("embed_dim: 16", "embed_dim: 32", "32", true),
    ];
    for (from, to, mention, image) in cases {
        let dir = copy_bundle(&tiny_bundle());
        edit_manifest(dir.path(), from, to);
        let bundle = ModelBundle::open(dir.path()).unwrap();
        let e = if image {
            err_of(ImageEncoder::load(&bundle, fp32()))
        } else {
            err_of(TextEncoder::load(&bundle, EncoderOptions::default()))
        };
        assert!(
            e.contains("does not match the manifest") && e.contains(mention),
            "{from} -> {to}: {e}"
        );
        assert!(
            e.contains(if image {
                "image_encoder.onnx"
            } else {
                "text_encoder.onnx"
            }),
            "{e}"
        );
    }
}

#[test]
fn not_a_graph() {
    let dir = copy_bundle(&tiny_bundle());
    // A file that is not ONNX, with its sha256 updated so only the graph load can fail.
    let path = dir.path().join("image_encoder.onnx");
    let old = clip_perception::model::bundle::sha256_file(&path).unwrap();
    std::fs::write(&path, b"not a protobuf at all").unwrap();
    let new = clip_perception::model::bundle::sha256_file(&path).unwrap();
    edit_manifest(dir.path(), &old, &new);
    let bundle = ModelBundle::open(dir.path()).unwrap();
    let e = err_of(ImageEncoder::load(&bundle, fp32()));
    assert!(
        e.contains("image_encoder.onnx") && e.contains("cannot load ONNX graph"),
        "{e}"
    );
}

#[test]
fn int8_encoder_without_its_quantization_record() {
    let dir = copy_bundle(&tiny_bundle());
    remove_block(dir.path(), "quantization");
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("model.yaml")
            && e.contains("quantization.image_encoder_int8")
            && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn unknown_quantization_form() {
    let dir = copy_bundle(&tiny_bundle());
    edit_manifest(
        dir.path(),
        "form: \"dynamic-symmetric\"",
        "form: \"int4-blockwise\"",
    );
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("model.yaml")
            && e.contains("quantization.image_encoder_int8.form")
            && e.contains("int4-blockwise")
            && e.contains("dynamic-symmetric, static-symmetric"),
        "{e}"
    );
}

#[test]
fn static_form_without_calibration() {
    let dir = copy_bundle(&tiny_bundle());
    edit_manifest(
        dir.path(),
        "form: \"dynamic-symmetric\"",
        "form: \"static-symmetric\"",
    );
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("model.yaml")
            && e.contains("quantization.image_encoder_int8.calibration")
            && e.contains("--calibration-images"),
        "{e}"
    );
    // With a calibration record the same manifest is accepted.
    edit_manifest(
        dir.path(),
        "calibration: null",
        "calibration: {images: \"16 images\", method: abs-max}",
    );
    ModelBundle::open(dir.path()).unwrap();
}

#[test]
fn quantization_record_without_the_int8_file_entry() {
    let dir = copy_bundle(&tiny_bundle());
    remove_int8_file_entry(dir.path());
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("quantization.image_encoder_int8") && e.contains("files.image_encoder_int8"),
        "{e}"
    );
}

#[test]
fn int8_asked_of_a_bundle_without_it() {
    let dir = copy_bundle(&tiny_bundle());
    remove_int8(dir.path());
    let bundle = ModelBundle::open(dir.path()).unwrap();
    assert_eq!(bundle.default_precision(), Precision::Fp32);
    let encoder = ImageEncoder::load(&bundle, EncoderOptions::default()).unwrap();
    assert_eq!(encoder.precision(), Precision::Fp32);
    let options = EncoderOptions {
        precision: Some(Precision::Int8),
        ..Default::default()
    };
    let e = err_of(ImageEncoder::load(&bundle, options));
    assert!(
        e.contains("model.yaml")
            && e.contains("files.image_encoder_int8")
            && e.contains("quantize.py"),
        "{e}"
    );
}

#[test]
fn corrupt_int8_graph_names_its_file() {
    let dir = copy_bundle(&tiny_bundle());
    let path = dir.path().join("image_encoder_int8.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    // Opened (the file exists); its load checks the bytes it reads.
    let bundle = ModelBundle::open(dir.path()).unwrap();
    let int8 = EncoderOptions {
        precision: Some(Precision::Int8),
        ..EncoderOptions::default()
    };
    let e = err_of(ImageEncoder::load(&bundle, int8));
    assert!(
        e.contains("image_encoder_int8.onnx") && e.contains("sha256 mismatch"),
        "{e}"
    );
}

/// Records `file`'s current sha256 in the bundle's manifest (a bundle re-exported with the
/// file as it is now).
fn record_sha256(dir: &std::path::Path, file: &str) {
    let manifest = dir.join("model.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let old = ModelBundle::open(crate::common::tiny_bundle()).unwrap();
    let listed = [
        &old.manifest.files.image_encoder.sha256,
        &old.manifest.files.text_encoder.sha256,
        &old.manifest.files.tokenizer.sha256,
    ];
    let new = clip_perception::model::bundle::sha256_file(&dir.join(file)).unwrap();
    let before = text.clone();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("path: {file},")))
        .unwrap_or_else(|| panic!("no {file} in the manifest"))
        .to_string();
    let sha = listed
        .iter()
        .find(|s| line.contains(s.as_str()))
        .expect("the line's sha256");
    std::fs::write(
        &manifest,
        before.replace(&line, &line.replace(sha.as_str(), &new)),
    )
    .unwrap();
}

#[test]
fn a_file_replaced_after_open_is_refused_at_its_load_never_half_used() {
    // A bundle updated under a running process: the text encoder swapped for another valid
    // graph after the manifest and checksums were read. The load checks the bytes it parses.
    let dir = copy_bundle(&tiny_bundle());
    let bundle = ModelBundle::open(dir.path()).unwrap();
    std::fs::copy(
        dir.path().join("image_encoder.onnx"),
        dir.path().join("text_encoder.onnx"),
    )
    .unwrap();
    let e = err_of(TextEncoder::load(&bundle, EncoderOptions::default()));
    assert!(
        e.contains("text_encoder.onnx") && e.contains("sha256 mismatch"),
        "{e}"
    );
    let tokenizer = dir.path().join("tokenizer.json");
    let mut bytes = std::fs::read(&tokenizer).unwrap();
    bytes.extend_from_slice(b"\n ");
    std::fs::write(&tokenizer, bytes).unwrap();
    let e = err_of(TextTokenizer::for_bundle(&bundle));
    assert!(
        e.contains("tokenizer.json") && e.contains("sha256 mismatch"),
        "{e}"
    );
    // The image encoder, untouched, still loads from the same open bundle.
    ImageEncoder::load(&bundle, fp32()).unwrap();
}

#[test]
fn a_corrupt_onnx_file_with_a_matching_checksum_is_a_clear_error() {
    // Truncated, and noise: the manifest was written for these very bytes (a bad export),
    // so the checksum passes and the ONNX parser has to refuse them.
    let original = std::fs::read(tiny_bundle().join("text_encoder.onnx")).unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for (what, bytes) in [
        ("truncated", original[..original.len() / 2].to_vec()),
        ("noise", noise),
        ("empty", Vec::new()),
    ] {
        let dir = copy_bundle(&tiny_bundle());
        std::fs::write(dir.path().join("text_encoder.onnx"), bytes).unwrap();
        record_sha256(dir.path(), "text_encoder.onnx");
        let bundle = ModelBundle::open(dir.path()).unwrap();
        let e = err_of(TextEncoder::load(&bundle, EncoderOptions::default()));
        assert!(
            e.contains("text_encoder.onnx") && e.contains("cannot load ONNX graph"),
            "{what}: {e}"
        );
    }
}

#[test]
fn a_tokenizer_that_disagrees_with_the_manifest_is_refused() {
    // One more token than the text encoder's vocabulary.
    let dir = copy_bundle(&tiny_bundle());
    let path = dir.path().join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 49408, "content": "<|pad|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    record_sha256(dir.path(), "tokenizer.json");
    let bundle = ModelBundle::open(dir.path()).unwrap();
    let e = err_of(TextTokenizer::for_bundle(&bundle));
    assert!(
        e.contains("tokenizer.json")
            && e.contains("49409")
            && e.contains("architecture.text.vocab_size"),
        "{e}"
    );
    // The manifest's vocabulary size edited instead: the same refusal.
    let dir = copy_bundle(&tiny_bundle());
    edit_manifest(dir.path(), "vocab_size: 49408", "vocab_size: 50000");
    let bundle = ModelBundle::open(dir.path()).unwrap();
    let e = err_of(TextTokenizer::for_bundle(&bundle));
    assert!(e.contains("50000") && e.contains("vocab_size"), "{e}");
    // Every entry point takes its tokenizer from the bundle: the engine refuses to start.
    let e = err_of(clip_perception::ClipEngine::load(
        clip_perception::EngineOptions {
            model: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
    ));
    assert!(e.contains("vocab_size"), "{e}");
}
