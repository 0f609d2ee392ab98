//! The one place that knows YAML: parses the typed configuration structs of the rest of
//! the crate (model manifests, node parameters) so serde_yaml can be swapped later.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that is not valid YAML for its schema. This module is the floor
/// of the crate: it has its own error, which [`crate::Error`] wraps (as `Error::Config`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The file (or `-p` for a command-line value).
    pub path: PathBuf,
    /// What is wrong, with serde's field and line.
    pub message: String,
}

/// Parses YAML text that came from `origin` (used only in error messages), naming the file
/// and the offending field/line on failure.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| ConfigError {
        path: origin.to_path_buf(),
        message: format!("invalid YAML for this file's schema: {e}"),
    })
}

/// Size limits of the files read whole into memory, checked before memory is reserved
/// (docs/reliability.md). Data sets (images, bags, CIFAR batches) have their own checks.
pub mod limits {
    /// `model.yaml`, a params file, a bag's `metadata.yaml`, a prompt-template file,
    /// `classes.txt` / `batches.meta.txt`.
    pub const CONFIG_BYTES: u64 = 16 << 20;
    /// Each file a bundle lists (ONNX graphs, `tokenizer.json`): protobuf's own 2 GiB limit.
    pub const BUNDLE_FILE_BYTES: u64 = 2 << 30;
    /// An index's `manifest.json`, a replay truth CSV.
    pub const TABLE_BYTES: u64 = 256 << 20;
    /// An index's `items-<G>.jsonl` and `embeddings-<G>.npy`, a CIFAR batch file.
    pub const DATA_FILE_BYTES: u64 = 16 << 30;
}

/// Reads a whole file of at most `limit` bytes; a larger one is refused (before reading it)
/// with an `InvalidData` error naming the limit and `what` the file is.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let too_large = |len: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes is over the limit of {limit} bytes for {what}"),
        )
    };
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the limit at most: a file that grows meanwhile is still refused.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_limited`] for UTF-8 text.
pub fn read_text_limited(path: &Path, limit: u64, what: &str) -> std::io::Result<String> {
    String::from_utf8(read_limited(path, limit, what)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_its_limit_is_refused_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.yaml");
        std::fs::write(&path, vec![b'#'; 101]).unwrap();
        let e = read_limited(&path, 100, "a model.yaml").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "101 bytes is over the limit of 100 bytes for a model.yaml"
        );
        assert_eq!(read_limited(&path, 101, "a model.yaml").unwrap().len(), 101);
        assert!(read_text_limited(&path, 101, "x").is_ok());
    }
}
