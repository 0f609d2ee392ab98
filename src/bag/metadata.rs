//! A rosbag2 folder's `metadata.yaml`: which storage files make the bag, in order, and what
//! they should hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BagError, TopicInfo};

#[derive(Debug, Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: Info,
}

#[derive(Debug, Deserialize)]
struct Info {
    storage_identifier: String,
    relative_file_paths: Vec<String>,
    #[serde(default)]
    topics_with_message_count: Vec<TopicCount>,
}

#[derive(Debug, Deserialize)]
struct TopicCount {
    topic_metadata: TopicMetadata,
    message_count: u64,
}

#[derive(Debug, Deserialize)]
struct TopicMetadata {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
}

/// A bag folder's `metadata.yaml`, read once.
pub struct BagMetadata {
    path: PathBuf,
    info: Info,
}

/// Reads `DIR/metadata.yaml`.
pub fn read(dir: &Path) -> Result<BagMetadata, BagError> {
    let path = dir.join("metadata.yaml");
    let text = crate::config::read_text_limited(
        &path,
        crate::config::limits::CONFIG_BYTES,
        "a metadata.yaml",
    )
    .map_err(|cause| {
        if cause.kind() == std::io::ErrorKind::NotFound {
            BagError::Format {
                path: dir.to_path_buf(),
                message: "a folder without metadata.yaml is not a rosbag2 bag".into(),
            }
        } else {
            BagError::Io {
                path: path.clone(),
                cause,
            }
        }
    })?;
    let file: MetadataFile =
        crate::config::parse_yaml(&text, &path).map_err(|e| BagError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
    Ok(BagMetadata {
        path,
        info: file.rosbag2_bagfile_information,
    })
}

impl BagMetadata {
    /// The bag's storage files, in the order `metadata.yaml` lists them; each must exist and be
    /// of the storage it names.
    pub fn storage_files(&self, dir: &Path) -> Result<Vec<PathBuf>, BagError> {
        let (path, info) = (self.path.clone(), &self.info);
        let extension = match info.storage_identifier.as_str() {
            "mcap" => "mcap",
            "sqlite3" => "db3",
            other => {
                return Err(BagError::Format {
                    path,
                    message: format!(
                        "storage_identifier `{other}` is not supported (expected mcap or sqlite3)"
                    ),
                })
            }
        };
        if info.relative_file_paths.is_empty() {
            return Err(BagError::Format {
                path,
                message: "relative_file_paths lists no files".into(),
            });
        }
        info.relative_file_paths
            .iter()
            .map(|rel| {
                // Older rosbag2 versions record paths with the bag folder's name in front.
                let direct = dir.join(rel);
                let file = if direct.is_file() {
                    direct
                } else {
                    let name = Path::new(rel).file_name().map(|n| dir.join(n));
                    match name.filter(|p| p.is_file()) {
                        Some(p) => p,
                        None => {
                            return Err(BagError::Format {
                                path: path.clone(),
                                message: format!(
                                    "relative_file_paths lists `{rel}`, which is not in the folder"
                                ),
                            })
                        }
                    }
                };
                if file.extension().and_then(|e| e.to_str()) != Some(extension) {
                    return Err(BagError::Format {
                        path: path.clone(),
                        message: format!(
                            "`{rel}` is not a .{extension} file, as storage_identifier `{}` says",
                            info.storage_identifier
                        ),
                    });
                }
                Ok(file)
            })
            .collect()
    }

    /// Warns where `metadata.yaml`'s topic types or message counts disagree with what the files
    /// hold (a recording cut short, or files swapped); a type that differs is an error.
    pub fn check_counts(&self, found: &BTreeMap<String, TopicInfo>) -> Result<(), BagError> {
        let (path, info) = (self.path.clone(), &self.info);
        for t in &info.topics_with_message_count {
            let name = &t.topic_metadata.name;
            match found.get(name) {
                Some(f) if f.type_name != t.topic_metadata.type_name => {
                    return Err(BagError::Format {
                        path,
                        message: format!(
                            "topic {name}: metadata says type {}, the files hold {}",
                            t.topic_metadata.type_name, f.type_name
                        ),
                    })
                }
                Some(f) if f.message_count != t.message_count => log::warn!(
                    "{}: topic {name}: metadata says {} messages, the files hold {}",
                    path.display(),
                    t.message_count,
                    f.message_count
                ),
                None if t.message_count > 0 => log::warn!(
                    "{}: topic {name}: metadata says {} messages, the files hold none",
                    path.display(),
                    t.message_count
                ),
                _ => {}
            }
        }
        Ok(())
    }
}
