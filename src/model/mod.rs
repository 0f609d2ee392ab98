//! The model: a validated bundle folder ([`bundle`]: manifest, checksums, file names; its
//! family's preprocessing, tokenizer and scoring in [`family`]) and
//! its two tract encoders ([`encoder`]: loaded once, checked against the manifest,
//! optimised once, run with reused state; the int8 and transformer graphs get the engine's
//! fused ops from [`crate::fused`]).

pub mod bundle;
pub mod encoder;
pub mod family;

pub use bundle::{ModelBundle, Precision, QuantForm};
pub use encoder::{Embeddings, EncoderOptions, ImageEncoder, TextEncoder};
pub use family::{Family, ModelSpec, Scoring, ScoringKind};
