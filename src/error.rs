//! The library's one error type: every failure the engine can report, each naming the file,
//! field or input it concerns and what was expected, so a caller can print it as one line.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    #[error("{path}: sha256 mismatch: manifest says {expected}, file has {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A graph disagrees with its manifest (input/output names, shapes, dims).
    #[error("{path}: graph does not match the manifest: {message}")]
    GraphMismatch { path: PathBuf, message: String },
    /// tract failed to load, optimise or run a graph.
    #[error("{context}: {message}")]
    Inference { context: String, message: String },
    /// An image file or buffer could not be decoded.
    #[error("{origin}: cannot decode image: {message}")]
    Decode { origin: String, message: String },
    /// A raw frame is malformed (see [`crate::frame::FrameError`]).
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// The tokenizer failed or is not a CLIP tokenizer.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Labels, templates or other user-supplied text is unusable.
    #[error("{0}")]
    InvalidInput(String),
}

/// The library's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
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
