//! Tokenizer parity with OpenAI's reference tokenizer: `tests/data/tokenizer/cases.jsonl`
//! (made by `generate.py` next to it from open_clip's `SimpleTokenizer`, with
//! `ids_openai` where OpenAI's original `clip.simple_tokenizer` differs: open_clip 3.x
//! renamed the special tokens, OpenAI's and Hugging Face's treat `<|endoftext|>` in the
//! text as the special token). Tolerance: none, every id must be equal.

use clip_perception::text::tokenizer::ClipTokenizer;

use crate::common::{data, read_json, tiny_bundle};

#[test]
fn ids_equal_openai_reference_on_all_cases() {
    let tokenizer = ClipTokenizer::from_file(&tiny_bundle().join("tokenizer.json"), 77).unwrap();
    let text = std::fs::read_to_string(data("tokenizer/cases.jsonl")).unwrap();
    let mut total = 0;
    let mut failures = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let input = case["text"].as_str().unwrap();
        let expected_field = if case.get("ids_openai").is_some() {
            "ids_openai"
        } else {
            "ids"
        };
        let expected: Vec<u32> = case[expected_field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(input).unwrap();
        total += 1;
        if got != expected {
            failures.push(format!(
                "line {}: {input:?}\n  expected {expected:?}\n  got      {got:?}",
                n + 1
            ));
        }
    }
    assert!(total >= 1000, "only {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn truncation_keeps_the_end_token() {
    let tokenizer = ClipTokenizer::from_file(&tiny_bundle().join("tokenizer.json"), 77).unwrap();
    let ids = tokenizer.encode(&"red cup ".repeat(100)).unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    assert_eq!(ids[76], 49407);
}

#[test]
fn golden_phrase_ids_match() {
    let golden = read_json(&data("embeddings/golden.json"));
    let tokenizer = ClipTokenizer::from_file(&tiny_bundle().join("tokenizer.json"), 77).unwrap();
    for phrase in golden["phrases"].as_array().unwrap() {
        let ids: Vec<u32> = phrase["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tokenizer.encode(phrase["text"].as_str().unwrap()).unwrap(),
            ids
        );
    }
}
