//! Encoder parity with PyTorch on the same weights: `tests/data/embeddings/golden.json`
//! (made by `generate.py` next to it) holds transformers `CLIPModel` image and text
//! embeddings of the tiny fixture bundle for reference-preprocessed images and open_clip
//! token ids. Tolerances: cosine >= 0.99999 per embedding; zero-shot rankings identical.

use clip_perception::labels::{Prompts, TextEmbedder};
use clip_perception::scoring::score;
use clip_perception::{npy, EncoderOptions, ImageEncoder, ModelBundle, TextEncoder};

use crate::common::{cosine, data, f32s, read_json, tiny_bundle};

const MIN_COSINE: f64 = 0.99999;

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
        let mut encoder = ImageEncoder::load(&bundle(), EncoderOptions { threads }).unwrap();
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
    let mut encoder = ImageEncoder::load(&bundle(), EncoderOptions::default()).unwrap();
    for image in golden["images"].as_array().unwrap() {
        let file = data("embeddings").join(image["file"].as_str().unwrap());
        let img = clip_perception::frame::load_image_file(&file).unwrap();
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

#[test]
fn zero_shot_ranking_is_identical() {
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
    let mut encoder = ImageEncoder::load(&b, EncoderOptions::default()).unwrap();
    for case in golden["zero_shot"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let image = golden["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap();
        let file = data("embeddings").join(image["file"].as_str().unwrap());
        let img = clip_perception::frame::load_image_file(&file).unwrap();
        let embedding = encoder.encode(&[img]).unwrap().remove(0);
        let scores = score(&labels, &embedding);
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
