//! A broken bundle stops loading with one error that names the file and the field.

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
    let dir = copy_bundle(&tiny_bundle());
    let path = dir.path().join("tokenizer.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap();
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("tokenizer.json") && e.contains("sha256 mismatch"),
        "{e}"
    );
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
    let e = err_of(ModelBundle::open(dir.path()));
    assert!(
        e.contains("image_encoder_int8.onnx") && e.contains("sha256 mismatch"),
        "{e}"
    );
}
