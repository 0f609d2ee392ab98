//! The library's one error type: every failure the engine can report, each naming the file,
//! field or input it concerns and what was expected, so a caller can print it as one line.
//! Each variant's message already includes its cause (an OS error, a decoder's message):
//! none is also returned as a `source()`, so a printed error chain never says it twice.

use std::path::PathBuf;

pub mod frame;
pub mod text;

use crate::precision::Precision;
use frame::{DecodeError, FrameError};
use text::{PhraseError, PromptError};

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}: cannot write: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A configuration or manifest file is not valid YAML/JSON for its schema.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A manifest field holds a value that cannot be right.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A bundle file does not hash to the sha256 its manifest records.
    #[error(
        "{path}: sha256 mismatch: manifest says {expected}, file has {actual} (the file is \
         damaged or was replaced without updating model.yaml)"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A graph disagrees with its manifest (input/output names, shapes, dims).
    #[error("{path}: graph does not match the manifest: {message}")]
    GraphMismatch { path: PathBuf, message: String },
    /// The bundle has no image encoder of the precision asked for.
    #[error(
        "{manifest}: field `files.image_encoder_int8`: missing: this bundle has no {precision} \
         image encoder (add one with `python3 models/quantize.py BUNDLE`, or use --precision fp32)"
    )]
    PrecisionUnavailable {
        manifest: PathBuf,
        precision: Precision,
    },
    /// No model folder was given and none of the default places holds one.
    #[error("no model bundle found: {looked}")]
    ModelNotFound { looked: String },
    /// tract failed to load, optimise or run a graph.
    #[error("{context}: {message}")]
    Inference { context: String, message: String },
    /// An image file or buffer could not be decoded.
    #[error("{origin}: cannot decode image: {cause}")]
    Decode { origin: String, cause: DecodeError },
    /// A raw frame is malformed (see [`FrameError`]).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The tokenizer failed or is not a CLIP tokenizer.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A phrase list is unusable.
    #[error("labels: {0}")]
    Phrases(#[from] PhraseError),
    /// A prompt template or ensemble is unusable.
    #[error(transparent)]
    Prompts(#[from] PromptError),
    /// A caller asked for something the engine cannot do (a pixel tensor that is not a
    /// whole number of images, token sequences longer than the context, a thread pool the
    /// OS refuses).
    #[error("{0}")]
    InvalidInput(String),
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config {
            path: e.path,
            message: e.message,
        }
    }
}

/// The library's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn field(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Field {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn inference(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Inference {
            context: context.into(),
            // `{:#}` keeps anyhow-style cause chains on one line.
            message: format!("{err:#}"),
        }
    }
}
