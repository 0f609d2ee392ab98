//! The text side, phrase to label matrix:
//!
//! ```text
//!  "red cup; blue ball" ─> phrases ─> prompts ("a photo of a {}.", ensembles)
//!    ─> clean (OpenAI CLIP's ftfy/html/whitespace cleaning) ─> tokenizer (CLIP BPE)
//!    ─> embedder (text encoder at the batch's real token length, on-disk cache)
//!    ─> labels::LabelMatrix (unit rows, logit scale)
//! ```

pub mod cache;
pub mod clean;
pub mod embedder;
mod ftfy_tables;
mod html_entities;
pub mod labels;
pub mod phrases;
pub mod prompt_sets;
pub mod prompts;
mod python_str_tables;
pub mod tokenizer;

pub use embedder::{TextEmbedder, TextStats};
pub use labels::LabelMatrix;
pub use phrases::{parse_phrases, PhraseError};
pub use prompts::{Prompts, DEFAULT_TEMPLATE};
