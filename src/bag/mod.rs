//! rosbag2 recordings without ROS: a bag folder (`metadata.yaml` and its split files) or a
//! single `.mcap` / `.db3` file, read as a stream of [`BagMessage`]s of one topic in
//! log-time order across split files ([`mcap`]: chunked, zstd/lz4, with or without a
//! summary; [`sqlite`]: rosbag2's SQLite schema). Nothing is loaded whole: memory does not
//! grow with the bag's length. Damage is reported with the file and byte offset (MCAP) or
//! row (SQLite) where reading stopped; everything before it has been delivered.

pub mod mcap;
pub mod metadata;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ROS 2 type names of the image messages replay reads.
pub const IMAGE_TYPE: &str = "sensor_msgs/msg/Image";
pub const COMPRESSED_IMAGE_TYPE: &str = "sensor_msgs/msg/CompressedImage";
pub const STRING_TYPE: &str = "std_msgs/msg/String";

/// One recorded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagMessage {
    pub topic: String,
    /// When the recorder received it (nanoseconds since the epoch).
    pub log_time_ns: u64,
    /// The serialized message (CDR with its encapsulation header).
    pub data: Vec<u8>,
}

/// One topic of a bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// ROS 2 type name, e.g. `sensor_msgs/msg/Image`.
    pub type_name: String,
    pub message_count: u64,
}

/// Why a bag cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    #[error("{}: no such file or folder", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Not a bag this reader knows, or a `metadata.yaml` that disagrees with its files.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// The file is damaged: reading stopped at `offset` (bytes, MCAP) or after `offset`
    /// rows (SQLite).
    #[error("{}: {unit} {offset}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        unit: &'static str,
        offset: u64,
        message: String,
    },
}

/// One storage file of a bag.
#[derive(Debug, Clone)]
enum StorageFile {
    Mcap(PathBuf),
    Sqlite(PathBuf),
}

impl StorageFile {
    fn of(path: PathBuf) -> Result<Self, BagError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("mcap") => Ok(StorageFile::Mcap(path)),
            Some("db3") => Ok(StorageFile::Sqlite(path)),
            _ => Err(BagError::Format {
                message: "unknown storage (expected a rosbag2 folder with metadata.yaml, \
                          an .mcap or a .db3 file)"
                    .into(),
                path,
            }),
        }
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, BagError> {
        match self {
            StorageFile::Mcap(p) => mcap::topics(p),
            StorageFile::Sqlite(p) => sqlite::topics(p),
        }
    }

    fn messages(&self, topic: &str) -> Result<MessageIter, BagError> {
        Ok(match self {
            StorageFile::Mcap(p) => Box::new(mcap::McapMessages::open(p, topic)?),
            StorageFile::Sqlite(p) => Box::new(sqlite::SqliteMessages::open(p, topic)?),
        })
    }
}

type MessageIter = Box<dyn Iterator<Item = Result<BagMessage, BagError>>>;

/// An opened bag: its storage files and topics.
#[derive(Debug, Clone)]
pub struct Bag {
    path: PathBuf,
    files: Vec<StorageFile>,
    topics: Vec<TopicInfo>,
}

impl Bag {
    /// Opens a bag folder or a single storage file and lists its topics (for an MCAP file
    /// without a usable summary this reads the file once).
    pub fn open(path: &Path) -> Result<Bag, BagError> {
        if !path.exists() {
            return Err(BagError::Missing {
                path: path.to_path_buf(),
            });
        }
        let metadata = if path.is_dir() {
            Some(metadata::read(path)?)
        } else {
            None
        };
        let files = match &metadata {
            Some(m) => m
                .storage_files(path)?
                .into_iter()
                .map(StorageFile::of)
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![StorageFile::of(path.to_path_buf())?],
        };
        let mut merged: BTreeMap<String, TopicInfo> = BTreeMap::new();
        for file in &files {
            for t in file.topics()? {
                let entry = merged.entry(t.name.clone()).or_insert(TopicInfo {
                    message_count: 0,
                    ..t.clone()
                });
                entry.message_count += t.message_count;
            }
        }
        if let Some(m) = &metadata {
            m.check_counts(&merged)?;
        }
        Ok(Bag {
            path: path.to_path_buf(),
            files,
            topics: merged.into_values().collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every topic with its type and message count, by name.
    pub fn topics(&self) -> &[TopicInfo] {
        &self.topics
    }

    /// The messages of `topic`, in log-time order across the bag's files.
    pub fn messages(&self, topic: &str) -> Result<Messages, BagError> {
        let heads = self
            .files
            .iter()
            .map(|f| f.messages(topic).map(|it| (it, None)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Messages {
            sources: heads,
            failed: false,
        })
    }
}

/// Messages merged by log time from every storage file (each file is in log-time order, as
/// rosbag2 writes it). After an error, the stream ends.
pub struct Messages {
    sources: Vec<(MessageIter, Option<BagMessage>)>,
    failed: bool,
}

impl Iterator for Messages {
    type Item = Result<BagMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        for (iter, head) in &mut self.sources {
            if head.is_none() {
                match iter.next() {
                    Some(Ok(m)) => *head = Some(m),
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    None => {}
                }
            }
        }
        let (_, head) = self
            .sources
            .iter_mut()
            .filter(|(_, h)| h.is_some())
            .min_by_key(|(_, h)| h.as_ref().map(|m| m.log_time_ns))?;
        head.take().map(Ok)
    }
}
