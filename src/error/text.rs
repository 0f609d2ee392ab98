//! Why a phrase list or a prompt template cannot be used. Defined on the crate's floor,
//! beside [`super::Error`] which wraps them, and re-exported from `text::phrases` and
//! `text::prompts` where they are raised.

use std::path::PathBuf;

/// Longest accepted phrase, in characters.
pub const MAX_PHRASE_CHARS: usize = 256;

/// Why a phrase list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    #[error("the phrase list is empty (expected e.g. \"red cup; blue ball\")")]
    Empty,
    #[error("phrase of {chars} characters exceeds {MAX_PHRASE_CHARS}: {preview:?}...")]
    TooLong { chars: usize, preview: String },
    #[error("{count} phrases, at most {max} are accepted")]
    TooMany { count: usize, max: usize },
}

/// Why a template or ensemble cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error(
        "template {0:?} has no `{{}}` placeholder for the phrase (expected e.g. \"a photo of a {{}}.\")"
    )]
    NoPlaceholder(String),
    #[error("ensemble `{0}`: not a built-in set (imagenet, cifar10) and no such file")]
    UnknownEnsemble(String),
    #[error("{}: cannot read: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: holds no templates (expected one template with `{{}}` per line)", path.display())]
    EmptyFile { path: PathBuf },
}
