//! The one place that knows YAML: reads and writes the typed configuration structs of the
//! rest of the crate (model manifests, node parameters) so serde_yaml can be swapped later.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Parses a YAML file into `T`, naming the file and the offending field/line on failure.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_yaml(&text, path)
}

/// Parses YAML text that came from `origin` (used only in error messages).
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    serde_yaml::from_str(text).map_err(|e| Error::Config {
        path: origin.to_path_buf(),
        message: format!("invalid YAML for this file's schema: {e}"),
    })
}

/// Serialises `value` as YAML text.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    serde_yaml::to_string(value).map_err(|e| Error::InvalidInput(format!("YAML encoding: {e}")))
}
