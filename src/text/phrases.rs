//! Task phrases as users write them: a list separated by `;` or newlines, split, trimmed,
//! de-duplicated and checked against the limits every entry point shares.

pub use crate::error::text::{PhraseError, MAX_PHRASE_CHARS};

/// Splits a phrase list (`red cup; blue ball` or one per line) into trimmed, non-empty,
/// de-duplicated phrases, in order.
pub fn parse_phrases(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for phrase in list
        .split([';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !out.iter().any(|p| p == phrase) {
            out.push(phrase.to_string());
        }
    }
    out
}

/// Checks a phrase list: not empty, no phrase longer than [`MAX_PHRASE_CHARS`], and (where
/// the caller has a limit, as the node has) at most `max_count` phrases.
pub fn check_phrases(phrases: &[String], max_count: Option<usize>) -> Result<(), PhraseError> {
    if let Some(max) = max_count.filter(|max| phrases.len() > *max) {
        return Err(PhraseError::TooMany {
            count: phrases.len(),
            max,
        });
    }
    if phrases.is_empty() {
        return Err(PhraseError::Empty);
    }
    if let Some(p) = phrases
        .iter()
        .find(|p| p.chars().count() > MAX_PHRASE_CHARS)
    {
        return Err(PhraseError::TooLong {
            chars: p.chars().count(),
            preview: p.chars().take(40).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_split_on_semicolons_and_newlines() {
        assert_eq!(
            parse_phrases(" red cup; blue ball\n\ngreen box;red cup;"),
            vec!["red cup", "blue ball", "green box"]
        );
        assert!(parse_phrases(" ; \n").is_empty());
        assert_eq!(check_phrases(&[], None), Err(PhraseError::Empty));
        assert!(matches!(
            check_phrases(&["x".repeat(257)], None),
            Err(PhraseError::TooLong { chars: 257, .. })
        ));
        let three = parse_phrases("a; b; c");
        assert_eq!(check_phrases(&three, None), Ok(()));
        assert_eq!(
            check_phrases(&three, Some(2)),
            Err(PhraseError::TooMany { count: 3, max: 2 })
        );
    }
}
