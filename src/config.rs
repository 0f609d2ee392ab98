//! The one place that knows YAML: parses the typed configuration structs of the rest of
//! the crate (model manifests, node parameters) so serde_yaml can be swapped later.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parses YAML text that came from `origin` (used only in error messages), naming the file
/// and the offending field/line on failure.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    serde_yaml::from_str(text).map_err(|e| Error::Config {
        path: origin.to_path_buf(),
        message: format!("invalid YAML for this file's schema: {e}"),
    })
}
