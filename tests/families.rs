//! Model families (bundle format 2, `docs/bundle-format.md`): SigLIP and MobileCLIP 2 on
//! random weights of their real architectures, against PyTorch and the families' own
//! preprocessing and tokenizers.
//!
//! `tests/data/families/generate.py` made the fixtures (`tests/fixtures/tiny-siglip`,
//! `tests/fixtures/tiny-mobileclip2`) with `models/export.py` and the goldens next to it:
//! - `<fixture>.json`: pixel values from the family's reference preprocessing
//!   (transformers' PIL `SiglipImageProcessor`; open_clip's transform), PyTorch image and
//!   text embeddings, the reference tokenizer's padded ids, and the model's own
//!   probabilities (`torch.sigmoid(logits_per_image)` with its bias for SigLIP, the softmax
//!   of the logit-scaled cosines for MobileCLIP);
//! - `tokenizer_siglip_spm.jsonl` (`SiglipTokenizer`, a SentencePiece Unigram model trained
//!   locally) and `tokenizer_gemma_bpe.jsonl` (`GemmaTokenizerFast` on a byte-fallback BPE
//!   trained locally, as SigLIP 2 uses it): ids padded and truncated as the models get them.
//!
//! Tolerances: embeddings cosine >= 0.99999 and norms within 1e-4 relative; probabilities
//! and cosines within 1e-4 absolute; pixel values and ids exact.

use clip_perception::image::load_image_file;
use clip_perception::model::family::{PadTo, ScoringKind, TextSpec};
use clip_perception::npy;
use clip_perception::text::tokenizer::{HfTokenizer, TextTokenizer};
use clip_perception::{
    ClipEngine, EncoderOptions, EngineOptions, ImageEncoder, ModelBundle, Precision, Prompts,
};

use crate::common::{copy_bundle, cosine, data, f32s, read_json, root, tiny_bundle};

const FAMILIES: [&str; 2] = ["tiny-siglip", "tiny-mobileclip2"];
const MIN_COSINE: f64 = 0.99999;
const MAX_NORM_REL: f64 = 1e-4;
const MAX_SCORE_DIFF: f32 = 1e-4;

fn golden(name: &str) -> serde_json::Value {
    read_json(&data(&format!("families/{name}.json")))
}

fn bundle_of(golden: &serde_json::Value) -> ModelBundle {
    ModelBundle::open(root().join(golden["bundle"].as_str().unwrap())).unwrap()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn assert_close_embedding(what: &str, got: &[f32], expected: &[f32]) {
    let c = cosine(got, expected);
    let rel = (norm(got) / norm(expected) - 1.0).abs();
    assert!(
        c >= MIN_COSINE && rel <= MAX_NORM_REL,
        "{what}: cosine {c}, norm off by {rel:.2e}"
    );
}

#[test]
fn bundles_state_their_family() {
    let siglip = bundle_of(&golden("tiny-siglip"));
    let spec = siglip.spec();
    assert_eq!(spec.family.name(), "siglip");
    assert_eq!(spec.scoring.kind, ScoringKind::Sigmoid);
    assert_eq!(spec.text.pad_to, PadTo::Context);
    let mobile = bundle_of(&golden("tiny-mobileclip2"));
    assert_eq!(mobile.spec().family.name(), "mobileclip");
    assert_eq!(mobile.spec().scoring.kind, ScoringKind::Softmax);
    assert_eq!(mobile.spec().text.pad_to, PadTo::Context);
    // A format-1 bundle is CLIP throughout.
    let clip = ModelBundle::open(tiny_bundle()).unwrap();
    assert_eq!(
        *clip.spec(),
        clip_perception::ModelSpec::clip(clip.manifest.logit_scale)
    );
}

/// Exact, except on squashed images whose rows shrink more than their columns (here
/// `w333_h517` for SigLIP), where Pillow 13 runs its vertical pass first and the engine
/// keeps PIL's classic horizontal-first order (see `tests/preprocess.rs`): there the
/// 8-bit images may differ by [`ORDER_LEVELS`] levels on a few percent of the pixels.
#[test]
fn preprocessing_matches_the_family_reference() {
    /// Measured: at most 8 levels, 2.6% of the values (w333_h517, bicubic).
    const ORDER_LEVELS: f32 = 8.0;
    let mut failures = Vec::new();
    for name in FAMILIES {
        let g = golden(name);
        let bundle = bundle_of(&g);
        let mut pre = bundle.preprocessor();
        for image in g["images"].as_array().unwrap() {
            if name == "tiny-mobileclip2" && image["name"] == "rgba_w256_h200" {
                // Known difference, not fixed: open_clip resizes an RGBA file in
                // premultiplied alpha and then drops alpha; the engine composites
                // transparency onto white when it decodes a file (transformers' convention).
                // Camera frames carry no transparency.
                continue;
            }
            let file = data("families").join(image["file"].as_str().unwrap());
            let (shape, expected) =
                npy::read_f32(&data("families").join(image["pixel_values"].as_str().unwrap()))
                    .unwrap();
            let s = bundle.manifest.image_size;
            assert_eq!(shape, vec![1, 3, s, s], "{name}: reference shape");
            let img = load_image_file(&file).unwrap();
            let mut got = vec![0f32; pre.tensor_len()];
            pre.preprocess_into(&img, &mut got);
            let off = got
                .iter()
                .zip(&expected)
                .filter(|(a, b)| (*a - *b).abs() > 1e-6)
                .count();
            let m = &bundle.manifest;
            let plane = s * s;
            let levels = got
                .iter()
                .zip(&expected)
                .enumerate()
                .map(|(i, (a, b))| (a - b).abs() * m.image_std[i / plane] * 255.0)
                .fold(0f32, f32::max);
            // Pillow 13's order: squash, rows shrinking more than columns.
            let reordered = bundle.spec().preprocess.resize
                == clip_perception::model::family::Resize::Squash
                && img.height > img.width;
            let ok =
                off == 0 || (reordered && levels <= ORDER_LEVELS + 0.01 && off * 20 < got.len());
            if !ok {
                failures.push(format!(
                    "{name} {}: {off} of {} values differ (up to {levels} levels)",
                    image["name"],
                    got.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn image_embeddings_match_pytorch() {
    for name in FAMILIES {
        let g = golden(name);
        let bundle = bundle_of(&g);
        for threads in [1, 2] {
            let options = EncoderOptions {
                threads,
                precision: Some(Precision::Fp32),
            };
            let mut encoder = ImageEncoder::load(&bundle, options).unwrap();
            let mut batch = Vec::new();
            let mut expected_all = Vec::new();
            for image in g["images"].as_array().unwrap() {
                let (_, pixels) =
                    npy::read_f32(&data("families").join(image["pixel_values"].as_str().unwrap()))
                        .unwrap();
                let expected = f32s(&image["image_embeds"]);
                let got = encoder.encode_pixels(&pixels).unwrap().remove(0);
                assert_close_embedding(
                    &format!("{name} {} ({threads} threads)", image["name"]),
                    &got,
                    &expected,
                );
                batch.extend(pixels);
                expected_all.push(expected);
            }
            let got = encoder.encode_pixels(&batch).unwrap();
            for (i, (got, expected)) in got.iter().zip(&expected_all).enumerate() {
                assert_close_embedding(&format!("{name} batch row {i}"), got, expected);
            }
        }
    }
}

#[test]
fn text_ids_and_embeddings_match_the_reference() {
    for name in FAMILIES {
        let g = golden(name);
        let bundle = bundle_of(&g);
        let tokenizer = TextTokenizer::for_bundle(&bundle).unwrap();
        let phrases = g["phrases"].as_array().unwrap();
        let texts: Vec<String> = phrases
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect();
        for p in phrases {
            let text = p["text"].as_str().unwrap();
            let ids = tokenizer.encode(text).unwrap();
            assert_eq!(
                tokenizer.padded(&ids, ids.len()),
                ids_of(&p["ids"]),
                "{name}: ids of {text:?}"
            );
        }
        let engine_options = EngineOptions {
            model: Some(bundle.dir.clone()),
            ..Default::default()
        };
        let builder = clip_perception::EngineBuilder::open(engine_options).unwrap();
        let mut text = builder.text_embedder().unwrap();
        // One batch and one text at a time: padding must not depend on the batch.
        let batched = text.embed_texts(&texts, false).unwrap();
        for (i, p) in phrases.iter().enumerate() {
            let expected = f32s(&p["text_embeds"]);
            assert_close_embedding(&format!("{name} {:?}", texts[i]), &batched[i], &expected);
            let alone = text.embed_texts(&texts[i..=i], false).unwrap().remove(0);
            assert_close_embedding(&format!("{name} {:?} alone", texts[i]), &alone, &expected);
        }
    }
}

#[test]
fn probabilities_follow_the_family_scoring() {
    for name in FAMILIES {
        let g = golden(name);
        let bundle = bundle_of(&g);
        let mut engine = ClipEngine::load(EngineOptions {
            model: Some(bundle.dir.clone()),
            precision: Some(Precision::Fp32),
            ..Default::default()
        })
        .unwrap();
        let phrases: Vec<String> = g["phrases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect();
        // The phrases as given (one is longer than a node phrase may be, to test truncation):
        // the label matrix straight from the text embeddings.
        let raw = engine.text.embed_texts(&phrases, false).unwrap();
        let mut matrix = nalgebra::DMatrix::<f32>::zeros(phrases.len(), raw[0].len());
        for (i, mut e) in raw.into_iter().enumerate() {
            clip_perception::text::labels::normalize(&mut e);
            matrix
                .row_mut(i)
                .iter_mut()
                .zip(&e)
                .for_each(|(m, v)| *m = *v);
        }
        let labels = clip_perception::LabelMatrix {
            labels: phrases.clone(),
            matrix,
            scoring: bundle.spec().scoring,
        };
        let sigmoid = g["scoring"].as_str().unwrap() == "sigmoid";
        assert_eq!(labels.scoring.per_phrase(), sigmoid, "{name}");
        for (image, zs) in g["images"]
            .as_array()
            .unwrap()
            .iter()
            .zip(g["zero_shot"].as_array().unwrap())
        {
            assert_eq!(image["name"], zs["image"]);
            // The reference pixels: this checks scoring, not preprocessing.
            let (_, pixels) =
                npy::read_f32(&data("families").join(image["pixel_values"].as_str().unwrap()))
                    .unwrap();
            let embedding = engine.image.encode_pixels(&pixels).unwrap().remove(0);
            let scores = clip_perception::engine::scoring::score(&labels, &embedding);
            let (cos, prob) = (f32s(&zs["cosine"]), f32s(&zs["probability"]));
            for i in 0..phrases.len() {
                assert!(
                    (scores.cosine[i] - cos[i]).abs() <= MAX_SCORE_DIFF
                        && (scores.probability[i] - prob[i]).abs() <= MAX_SCORE_DIFF,
                    "{name} {} {:?}: cosine {} vs {}, probability {} vs {}",
                    image["name"],
                    phrases[i],
                    scores.cosine[i],
                    cos[i],
                    scores.probability[i],
                    prob[i]
                );
            }
            if !sigmoid {
                let total: f32 = scores.probability.iter().sum();
                assert!(
                    (total - 1.0).abs() < 1e-5,
                    "{name}: softmax sums to {total}"
                );
            }
        }
    }
}

fn tokenizer_cases(file: &str) -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(data(&format!("families/{file}"))).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["text"].as_str().unwrap().to_string(), ids_of(&v["ids"]))
        })
        .collect()
}

fn check_cases(what: &str, tokenizer: &TextTokenizer, cases: &[(String, Vec<u32>)]) {
    assert!(cases.len() >= 20, "{what}: only {} cases", cases.len());
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let ids = tokenizer.encode(text).unwrap();
        let got = tokenizer.padded(&ids, ids.len());
        if &got != expected {
            failures.push(format!(
                "{text:?}:\n  got      {got:?}\n  expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
}

#[test]
fn sentencepiece_unigram_ids_equal_siglip_tokenizer() {
    let bundle = bundle_of(&golden("tiny-siglip"));
    let tokenizer = TextTokenizer::for_bundle(&bundle).unwrap();
    check_cases(
        "SiglipTokenizer",
        &tokenizer,
        &tokenizer_cases("tokenizer_siglip_spm.jsonl"),
    );
}

#[test]
fn byte_fallback_bpe_ids_equal_gemma_tokenizer() {
    let dir = data("families/gemma_bpe");
    let spec_yaml = std::fs::read_to_string(dir.join("manifest_text.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&spec_yaml).unwrap();
    let section = doc.get("text").cloned().unwrap_or(doc.clone());
    let context = doc
        .get("context_length")
        .and_then(|v| v.as_u64())
        .unwrap_or(64) as usize;
    let spec: TextSpec = serde_yaml::from_value(section).unwrap();
    let path = dir.join("tokenizer.json");
    let hf =
        HfTokenizer::from_bytes(&path, &std::fs::read(&path).unwrap(), &spec, context).unwrap();
    let tokenizer = TextTokenizer::hf(hf, spec);
    check_cases(
        "GemmaTokenizerFast",
        &tokenizer,
        &tokenizer_cases("tokenizer_gemma_bpe.jsonl"),
    );
}

// ---------------------------------------------------------------------------------------
// Format 2 manifests: every section required, every field checked, format 1 unchanged.

/// The tiny CLIP fixture as a format-2 bundle stating CLIP's defaults, plus `extra` lines.
fn clip_as_format2(sections: &str) -> tempfile::TempDir {
    let dir = copy_bundle(&tiny_bundle());
    crate::common::remove_block(dir.path(), "preprocess");
    crate::common::remove_block(dir.path(), "text");
    let path = dir.path().join("model.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("format_version: 1", "format_version: 2");
    std::fs::write(&path, text + sections).unwrap();
    dir
}

const CLIP_SECTIONS: &str = "family: clip
preprocess: {resize: shortest_edge_crop, resample: bicubic, crop_offset: floor}
text: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: first_eot}
scoring: {kind: softmax}
";

fn open_err(dir: &std::path::Path) -> String {
    match ModelBundle::open(dir) {
        Ok(_) => panic!("{}: opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_format2_clip_bundle_gives_the_format1_outputs() {
    let dir = clip_as_format2(CLIP_SECTIONS);
    let v2 = ModelBundle::open(dir.path()).unwrap();
    let v1 = ModelBundle::open(tiny_bundle()).unwrap();
    assert_eq!(v2.spec(), v1.spec());
    let run = |bundle: &ModelBundle| {
        let mut engine = ClipEngine::load(EngineOptions {
            model: Some(bundle.dir.clone()),
            precision: Some(Precision::Fp32),
            ..Default::default()
        })
        .unwrap();
        let labels = engine
            .label_matrix(
                &["red cup".to_string(), "blue ball".to_string()],
                &Prompts::default(),
            )
            .unwrap();
        let img = load_image_file(&data("preprocess/w333_h517.png")).unwrap();
        engine.classify(&[img], &labels).unwrap().remove(0)
    };
    assert_eq!(run(&v2), run(&v1));
}

#[test]
fn format2_section_errors_name_the_field() {
    let cases: [(&str, &str); 6] = [
        (
            "preprocess: {resize: shortest_edge_crop, resample: bicubic}\ntext: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: first_eot}\nscoring: {kind: softmax}\n",
            "field `family`: missing",
        ),
        (
            "family: clip\npreprocess: {resize: shortest_edge_crop, resample: lanczos}\ntext: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: first_eot}\nscoring: {kind: softmax}\n",
            "field `preprocess`: unknown variant `lanczos`",
        ),
        (
            "family: siglip\npreprocess: {resize: squash, resample: bicubic}\ntext: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: last}\nscoring: {kind: softmax}\n",
            "field `text.pad_to`: must be `context`",
        ),
        (
            "family: siglip\npreprocess: {resize: squash, resample: bicubic}\ntext: {tokenizer: clip, pad_id: 0, pad_to: context, pooling: last}\nscoring: {kind: sigmoid}\n",
            "field `scoring.logit_bias`: missing",
        ),
        (
            "family: clip\npreprocess: {resize: shortest_edge_crop, resample: bicubic}\ntext: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: first_eot, eos: 3}\nscoring: {kind: softmax}\n",
            "field `text`: unknown field `eos`",
        ),
        (
            "family: clip\npreprocess: {resize: shortest_edge_crop, resample: bicubic}\ntext: {tokenizer: clip, pad_id: 0, pad_to: longest, pooling: first_eot}\nscoring: {kind: softmax, logit_bias: -3}\n",
            "field `scoring.logit_bias`: is for `sigmoid`",
        ),
    ];
    for (sections, expected) in cases {
        let dir = clip_as_format2(sections);
        let err = open_err(dir.path());
        assert!(
            err.contains("model.yaml") && err.contains(expected),
            "expected {expected:?} in: {err}"
        );
    }
    // A pad id outside the vocabulary is refused when the tokenizer loads.
    let dir = clip_as_format2(&CLIP_SECTIONS.replace("pad_id: 0", "pad_id: 49408"));
    let err = TextTokenizer::for_bundle(&ModelBundle::open(dir.path()).unwrap())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `text.pad_id`"), "{err}");
    // A format this build does not know.
    let dir = clip_as_format2(CLIP_SECTIONS);
    let path = dir.path().join("model.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("format_version: 2", "format_version: 3");
    std::fs::write(&path, text).unwrap();
    assert!(open_err(dir.path()).contains("reads formats 1 to 2"));
}

/// The SigLIP image tower's int8 graph (`models/quantize.py`, dynamic-symmetric, every
/// Linear including the attention-pooling head's) against onnxruntime running the same
/// graph on the same pixels (`tiny-siglip.int8.json`): each embedding is within
/// `INT8_MAX_ABS` of onnxruntime's and ten times closer to it than to fp32; against PyTorch
/// fp32 the cosine stays >= 0.995.
#[test]
fn siglip_int8_image_encoder_matches_onnxruntime_int8() {
    /// Both run the same integer arithmetic, but an activation that lands on a rounding
    /// tie of its int8 step flips with a few-ulp LayerNorm difference: on `w1000_h90` the
    /// `post_layernorm` output lies 1.9e-5 of a step from a .5 tie and the embedding moves
    /// by 4.9e-4 (measured; the other two agree to 4e-7), while int8 vs fp32 is ~3.7e-2.
    const INT8_MAX_ABS: f32 = 1e-3;
    let reference = read_json(&data("families/tiny-siglip.int8.json"));
    let fp32 = golden("tiny-siglip");
    let bundle = bundle_of(&fp32);
    assert_eq!(bundle.default_precision(), Precision::Int8);
    for threads in [1, 2] {
        let options = EncoderOptions {
            threads,
            precision: Some(Precision::Int8),
        };
        let mut encoder = ImageEncoder::load(&bundle, options).unwrap();
        for (image, reference_fp32) in reference["images"]
            .as_array()
            .unwrap()
            .iter()
            .zip(fp32["images"].as_array().unwrap())
        {
            assert_eq!(image["name"], reference_fp32["name"]);
            let (_, pixels) =
                npy::read_f32(&data("families").join(image["pixel_values"].as_str().unwrap()))
                    .unwrap();
            let got = encoder.encode_pixels(&pixels).unwrap().remove(0);
            let ort = f32s(&image["image_embeds"]);
            let torch = f32s(&reference_fp32["image_embeds"]);
            let d_ort = crate::common::max_abs_diff(&got, &ort);
            let d_fp32 = crate::common::max_abs_diff(&got, &torch);
            assert!(
                d_ort <= INT8_MAX_ABS && d_fp32 > 10.0 * d_ort,
                "{} ({threads} threads): {d_ort} from onnxruntime int8, {d_fp32} from fp32",
                image["name"]
            );
            assert!(cosine(&got, &torch) >= 0.995, "{}", image["name"]);
        }
    }
}

/// Every family through tract's own fp32 product (`CLIP_PERCEPTION_F32_KERNEL=tract`: what
/// runs on CPUs without AVX2 + FMA, every aarch64 board among them) gives the engine's
/// kernel's results within 1e-5, batched. Found under qemu on aarch64: with tract's MatMul
/// the SigLIP pooling probe reached the fused attention with batch 1 against keys of batch
/// N, and every SigLIP batch of more than one image failed.
#[test]
fn tracts_fp32_product_gives_the_same_results_in_batches() {
    let samples: Vec<String> = std::fs::read_dir(root().join("models/tabletop/samples"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    for fixture in ["tiny-siglip", "tiny-mobileclip2", "tiny-clip"] {
        let model = root()
            .join("tests/fixtures")
            .join(fixture)
            .display()
            .to_string();
        let run = |kernel: Option<&str>| -> Vec<serde_json::Value> {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_clip_perception"));
            command
                .args([
                    "classify",
                    "--model",
                    &model,
                    "--precision",
                    "fp32",
                    "--json",
                ])
                .args([
                    "--no-cache",
                    "--top-k",
                    "0",
                    "--labels",
                    "red cup; blue ball; a dog",
                ])
                .args(&samples)
                .env_remove("CLIP_PERCEPTION_LOG");
            if let Some(kernel) = kernel {
                command.env("CLIP_PERCEPTION_F32_KERNEL", kernel);
            }
            let o = command.output().unwrap();
            assert!(
                o.status.success(),
                "{fixture} {kernel:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (own, tract) = (run(None), run(Some("tract")));
        assert_eq!(own.len(), samples.len());
        for (a, b) in own.iter().zip(&tract) {
            assert_eq!(a["image"], b["image"]);
            let by_label = |v: &serde_json::Value| -> Vec<(String, f64, f64)> {
                let mut rows: Vec<_> = v["top"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["label"].as_str().unwrap().to_string(),
                            r["cosine"].as_f64().unwrap(),
                            r["probability"].as_f64().unwrap(),
                        )
                    })
                    .collect();
                rows.sort_by(|x, y| x.0.cmp(&y.0));
                rows
            };
            for ((label, ca, pa), (_, cb, pb)) in by_label(a).iter().zip(by_label(b)) {
                assert!(
                    (ca - cb).abs() <= 1e-5 && (pa - pb).abs() <= 1e-5,
                    "{fixture} {} {label}: cosine {ca} vs {cb}, probability {pa} vs {pb}",
                    a["image"]
                );
            }
        }
    }
}
