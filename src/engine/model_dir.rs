//! Where the default model is when none is named: the one lookup every entry point (CLI,
//! node, tools) uses, so an installed or moved binary finds its bundle the same way.
//!
//! Order: the folder given explicitly (option or parameter), then `$CLIP_PERCEPTION_MODEL`,
//! then the package's installed share folder (`share/clip_perception/models/tabletop` under
//! each `$AMENT_PREFIX_PATH` entry, then next to the executable: `../share/...` for
//! `cargo install` prefixes, `../../share/...` for colcon's `lib/clip_perception/`), then
//! the source tree this binary was built from.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the default model bundle folder.
pub const MODEL_ENV: &str = "CLIP_PERCEPTION_MODEL";

/// The default bundle's place below an install prefix.
pub const SHARE_MODEL: &str = "share/clip_perception/models/tabletop";

/// The default bundle in the source tree the binary was built from.
const SOURCE_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tabletop");

fn is_bundle(dir: &Path) -> bool {
    dir.join("model.yaml").is_file()
}

/// Every place the default model is looked for, in order, each with where it came from.
pub fn default_model_candidates() -> Vec<(String, PathBuf)> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()) {
        candidates.push((format!("${MODEL_ENV}"), PathBuf::from(dir)));
    }
    if let Some(prefixes) = std::env::var_os("AMENT_PREFIX_PATH") {
        for prefix in std::env::split_paths(&prefixes).filter(|p| !p.as_os_str().is_empty()) {
            candidates.push(("$AMENT_PREFIX_PATH".to_string(), prefix.join(SHARE_MODEL)));
        }
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        for up in ["..", "../.."] {
            candidates.push((
                "the executable's install prefix".to_string(),
                exe_dir.join(up).join(SHARE_MODEL),
            ));
        }
    }
    candidates.push(("the source tree".to_string(), PathBuf::from(SOURCE_MODEL)));
    candidates
}

/// The model folder to load: `explicit` where given (checked when the bundle is opened),
/// else the first default candidate that holds a `model.yaml`.
pub fn resolve_model_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(dir) => Ok(dir.to_path_buf()),
        None => first_bundle(&default_model_candidates()),
    }
}

/// The first candidate folder that holds a `model.yaml`, or an error listing them all.
fn first_bundle(candidates: &[(String, PathBuf)]) -> Result<PathBuf> {
    if let Some((_, dir)) = candidates.iter().find(|(_, dir)| is_bundle(dir)) {
        return Ok(dir.clone());
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|(from, dir)| format!("{} ({from})", dir.display()))
        .collect();
    Err(Error::ModelNotFound {
        looked: format!(
            "looked in {}; name one with --model / model_dir or ${MODEL_ENV}",
            looked.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_and_the_source_tree_is_the_last_resort() {
        let explicit = Path::new("/some/bundle");
        assert_eq!(resolve_model_dir(Some(explicit)).unwrap(), explicit);
        let candidates = default_model_candidates();
        assert_eq!(
            candidates.last().unwrap().1,
            PathBuf::from(SOURCE_MODEL),
            "{candidates:?}"
        );
        assert!(candidates
            .iter()
            .any(|(_, dir)| dir.ends_with("../share/clip_perception/models/tabletop")));
    }

    #[test]
    fn the_first_folder_with_a_manifest_wins_and_a_miss_names_every_place() {
        let root = std::env::temp_dir().join(format!("clip-model-dir-{}", std::process::id()));
        let (empty, bundle) = (root.join("empty"), root.join("bundle"));
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("model.yaml"), "").unwrap();
        let candidates = vec![
            ("$A".to_string(), empty.clone()),
            ("$B".to_string(), bundle.clone()),
        ];
        assert_eq!(first_bundle(&candidates).unwrap(), bundle);
        let err = first_bundle(&candidates[..1]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} ($A)", empty.display())) && err.contains(MODEL_ENV),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
