//! Encoder parity with PyTorch on the same weights: `tests/data/embeddings/golden.json`
//! (made by `generate.py` next to it) holds transformers `CLIPModel` image and text
//! embeddings of the tiny fixture bundle for reference-preprocessed images and open_clip
//! token ids. Tolerances: cosine >= 0.99999 per embedding; zero-shot rankings identical.
//!
//! The int8 image encoder (`files.image_encoder_int8`, made by `models/quantize.py`) is
//! checked against onnxruntime running the same int8 graph on the same pixels (cosine >=
//! 0.9999: a rounding tie may land one int8 step apart), and against the fp32 PyTorch
//! embeddings (cosine >= 0.995, the quantization's accuracy target; top-1 identical).

use clip_perception::engine::scoring::{score, Scores};
use clip_perception::{npy, EncoderOptions, ImageEncoder, ModelBundle, Precision, TextEncoder};
use clip_perception::{Prompts, TextEmbedder};

use crate::common::{cosine, data, f32s, read_json, tiny_bundle};

const MIN_COSINE: f64 = 0.99999;
/// Engine int8 vs onnxruntime int8 on the same graph and pixels.
const MIN_COSINE_INT8_VS_ORT: f64 = 0.9999;
/// int8 vs the fp32 reference.
const MIN_COSINE_INT8_VS_FP32: f64 = 0.995;

fn fp32(threads: usize) -> EncoderOptions {
    EncoderOptions {
        threads,
        precision: Some(Precision::Fp32),
    }
}

fn int8(threads: usize) -> EncoderOptions {
    EncoderOptions {
        threads,
        precision: Some(Precision::Int8),
    }
}

fn golden() -> serde_json::Value {
    read_json(&data("embeddings/golden.json"))
}

fn bundle() -> ModelBundle {
    ModelBundle::open(tiny_bundle()).unwrap()
}

#[test]
fn image_encoder_matches_pytorch_on_reference_pixels() {
    let golden = golden();
    for threads in [1, 2] {
        let mut encoder = ImageEncoder::load(&bundle(), fp32(threads)).unwrap();
        let mut batch = Vec::new();
        let mut expected_all = Vec::new();
        for image in golden["images"].as_array().unwrap() {
            let (_, pixels) =
                npy::read_f32(&data("embeddings").join(image["pixel_values"].as_str().unwrap()))
                    .unwrap();
            let expected = f32s(&image["image_embeds"]);
            let got = encoder.encode_pixels(&pixels).unwrap().remove(0);
            let c = cosine(&got, &expected);
            assert!(
                c >= MIN_COSINE,
                "{} ({threads} threads): cosine {c}",
                image["name"]
            );
            batch.extend(pixels);
            expected_all.push(expected);
        }
        // The same images as one batch.
        let got = encoder.encode_pixels(&batch).unwrap();
        assert_eq!(got.len(), expected_all.len());
        for (g, e) in got.iter().zip(&expected_all) {
            assert!(cosine(g, e) >= MIN_COSINE);
        }
    }
}

#[test]
fn image_pipeline_end_to_end_matches_pytorch() {
    let golden = golden();
    let mut encoder = ImageEncoder::load(&bundle(), fp32(1)).unwrap();
    for image in golden["images"].as_array().unwrap() {
        let file = data("embeddings").join(image["file"].as_str().unwrap());
        let img = clip_perception::image::load_image_file(&file).unwrap();
        let got = encoder.encode(&[img]).unwrap().remove(0);
        let c = cosine(&got, &f32s(&image["image_embeds"]));
        assert!(c >= MIN_COSINE, "{}: cosine {c}", image["name"]);
    }
}

#[test]
fn text_encoder_at_real_length_matches_pytorch_at_77() {
    let golden = golden();
    let mut encoder = TextEncoder::load(&bundle(), EncoderOptions::default()).unwrap();
    let phrases = golden["phrases"].as_array().unwrap();
    let ids: Vec<Vec<u32>> = phrases
        .iter()
        .map(|p| {
            p["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let short = encoder.encode_ids(&ids, None).unwrap();
    let full = encoder.encode_ids(&ids, Some(77)).unwrap();
    for ((p, s), f) in phrases.iter().zip(&short).zip(&full) {
        let expected = f32s(&p["text_embeds"]);
        assert!(
            cosine(s, &expected) >= MIN_COSINE,
            "{}: real length",
            p["text"]
        );
        assert!(
            cosine(f, &expected) >= MIN_COSINE,
            "{}: padded to 77",
            p["text"]
        );
    }
    // One at a time gives the same as the padded batch.
    let single = encoder.encode_ids(&ids[..1], None).unwrap();
    assert!(cosine(&single[0], &short[0]) >= MIN_COSINE);
}

/// Zero-shot scores of every golden `zero_shot` case (its image, end to end, against the
/// golden phrases with the template "{}") from the image encoder of `options`, with the case.
fn zero_shot_scores(options: EncoderOptions) -> Vec<(serde_json::Value, Scores)> {
    let golden = golden();
    let b = bundle();
    let mut text = TextEmbedder::new(&b, EncoderOptions::default(), None).unwrap();
    let phrases: Vec<String> = golden["phrases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    let labels = text
        .label_matrix(&phrases, &Prompts::single("{}").unwrap())
        .unwrap();
    let mut encoder = ImageEncoder::load(&b, options).unwrap();
    let mut out = Vec::new();
    for case in golden["zero_shot"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let image = golden["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap();
        let file = data("embeddings").join(image["file"].as_str().unwrap());
        let img = clip_perception::image::load_image_file(&file).unwrap();
        let embedding = encoder.encode(&[img]).unwrap().remove(0);
        out.push((case.clone(), score(&labels, &embedding)));
    }
    out
}

#[test]
fn zero_shot_ranking_is_identical() {
    for (case, scores) in zero_shot_scores(fp32(1)) {
        let name = &case["image"];
        let ranking: Vec<u64> = scores.ranked().iter().map(|r| r.index as u64).collect();
        let expected: Vec<u64> = case["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ranking, expected, "{name}");
        for (got, want) in scores.cosine.iter().zip(f32s(&case["cosine"])) {
            assert!((got - want).abs() < 1e-4, "{name}: cosine {got} vs {want}");
        }
    }
}

#[test]
fn cached_label_matrix_equals_fresh_and_skips_the_encoder() {
    let b = bundle();
    let cache = tempfile::tempdir().unwrap();
    let phrases = vec!["red cup".to_string(), "blue ball".to_string()];
    let prompts = Prompts::ensemble("cifar10").unwrap();
    let mut first = TextEmbedder::new(&b, EncoderOptions::default(), Some(cache.path())).unwrap();
    let fresh = first.label_matrix(&phrases, &prompts).unwrap();
    assert_eq!(first.stats().prompts_encoded, 36);
    let mut second = TextEmbedder::new(&b, EncoderOptions::default(), Some(cache.path())).unwrap();
    let cached = second.label_matrix(&phrases, &prompts).unwrap();
    assert_eq!(second.stats().encoder_calls, 0);
    assert_eq!(second.stats().cache_hits, 36);
    assert!((fresh.matrix.clone() - cached.matrix).abs().max() < 1e-7);
    // Ensemble rows are unit vectors.
    for row in fresh.matrix.row_iter() {
        assert!((row.norm() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn int8_is_the_default_where_the_bundle_has_it() {
    let b = bundle();
    assert_eq!(b.default_precision(), Precision::Int8);
    let encoder = ImageEncoder::load(&b, EncoderOptions::default()).unwrap();
    assert_eq!(encoder.precision(), Precision::Int8);
    let encoder = ImageEncoder::load(&b, fp32(1)).unwrap();
    assert_eq!(encoder.precision(), Precision::Fp32);
}

#[test]
fn int8_image_encoder_matches_onnxruntime_and_stays_close_to_fp32() {
    let golden = golden();
    for threads in [1, 2] {
        let mut encoder = ImageEncoder::load(&bundle(), int8(threads)).unwrap();
        let mut batch = Vec::new();
        let mut singles = Vec::new();
        for image in golden["images"].as_array().unwrap() {
            let name = &image["name"];
            let (_, pixels) =
                npy::read_f32(&data("embeddings").join(image["pixel_values"].as_str().unwrap()))
                    .unwrap();
            let got = encoder.encode_pixels(&pixels).unwrap().remove(0);
            let ort = f32s(&image["image_embeds_int8_onnxruntime"]);
            let c = cosine(&got, &ort);
            assert!(
                c >= MIN_COSINE_INT8_VS_ORT,
                "{name} ({threads} threads): cosine {c} to onnxruntime int8"
            );
            let c = cosine(&got, &f32s(&image["image_embeds"]));
            assert!(
                c >= MIN_COSINE_INT8_VS_FP32,
                "{name} ({threads} threads): cosine {c} to PyTorch fp32"
            );
            batch.extend(pixels);
            singles.push(got);
        }
        // Activation scales are per token row, so an image's result does not depend on
        // the other images of its batch.
        let got = encoder.encode_pixels(&batch).unwrap();
        for (g, single) in got.iter().zip(&singles) {
            assert!(cosine(g, single) >= 0.999999, "batched vs single");
        }
    }
}

#[test]
fn int8_zero_shot_top1_equals_fp32() {
    for (case, scores) in zero_shot_scores(int8(1)) {
        let expected = case["ranking"][0].as_u64().unwrap() as usize;
        assert_eq!(
            scores.ranked()[0].index,
            expected,
            "{}: top-1",
            case["image"]
        );
    }
}
