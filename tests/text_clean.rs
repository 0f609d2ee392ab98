//! CLIP's text cleaning against open_clip itself: every case in
//! `tests/data/text_clean/clean_cases.jsonl` (made by `generate_clean_cases.py` next to it,
//! from open_clip's `SimpleTokenizer` cleaning) and in `tokenizer_strings.jsonl` (made by
//! `generate_tokenizer_strings.py`: the tokenizer test's strings, cleaned) must come out of
//! `clip_clean` identical.

use clip_perception::text::clean::clip_clean;

struct Case {
    line: usize,
    text: String,
    clean: String,
}

fn load_cases(file: &str) -> Vec<Case> {
    let path = &format!(
        "{}/tests/data/text_clean/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    data.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(k, line)| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}:{}: {e}", k + 1));
            let field = |name: &str| {
                value[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}:{}: no string field `{name}`", k + 1))
                    .to_owned()
            };
            Case {
                line: k + 1,
                text: field("text"),
                clean: field("clean"),
            }
        })
        .collect()
}

#[test]
fn clip_clean_matches_open_clip_on_every_case() {
    assert_clean_matches(&load_cases("clean_cases.jsonl"), 1500);
}

#[test]
fn clip_clean_matches_open_clip_on_the_tokenizer_strings() {
    assert_clean_matches(&load_cases("tokenizer_strings.jsonl"), 1000);
}

fn assert_clean_matches(cases: &[Case], at_least: usize) {
    assert!(cases.len() >= at_least, "only {} cases", cases.len());
    let mismatches: Vec<(&Case, String)> = cases
        .iter()
        .filter_map(|case| {
            let got = clip_clean(&case.text);
            (got != case.clean).then_some((case, got))
        })
        .collect();
    if !mismatches.is_empty() {
        let mut report = format!(
            "{} of {} cases differ from open_clip:\n",
            mismatches.len(),
            cases.len()
        );
        for (case, got) in mismatches.iter().take(20) {
            report.push_str(&format!(
                "  line {}: text {:?}\n    expected {:?}\n    got      {:?}\n",
                case.line, case.text, case.clean, got
            ));
        }
        panic!("{report}");
    }
}
