//! rosbag2 recordings without ROS: a bag folder (`metadata.yaml` and its split files) or a
//! single `.mcap` / `.db3` file, read as a stream of [`BagMessage`]s of one topic (or
//! several, merged) in log-time order across split files ([`mcap`]: chunked, zstd/lz4, with or without a
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
        self.messages_of(&[topic])
    }

    /// The messages of several topics, merged by log time across topics and files; messages
    /// with the same log time come in the order of `topics` (then of the bag's files). Each
    /// topic is read by its own reader, so a topic that stops at damage does not stop the
    /// others: every message any topic could read before the damage is delivered, then the
    /// first error.
    pub fn messages_of(&self, topics: &[&str]) -> Result<Messages, BagError> {
        let mut sources = Vec::with_capacity(topics.len() * self.files.len());
        for (topic, name) in topics.iter().enumerate() {
            for file in &self.files {
                sources.push(Source {
                    topic,
                    iter: file.messages(name)?,
                    head: None,
                });
            }
        }
        Ok(Messages::new(sources, topics.len()))
    }
}

/// One topic of one storage file, with its next message.
struct Source {
    /// Which of the merged topics (their order breaks ties).
    topic: usize,
    iter: MessageIter,
    head: Option<BagMessage>,
}

/// Messages merged by log time from every storage file and topic (each file holds each
/// topic in log-time order, as rosbag2 writes it). A topic whose reading fails ends there
/// (in every file, as one topic's stream); the first error is delivered after the other
/// topics' messages, and the stream ends.
pub struct Messages {
    sources: Vec<Source>,
    /// Per topic: reading it failed.
    failed: Vec<bool>,
    error: Option<BagError>,
    done: bool,
}

impl Messages {
    fn new(sources: Vec<Source>, topics: usize) -> Self {
        Messages {
            sources,
            failed: vec![false; topics],
            error: None,
            done: false,
        }
    }
}

impl Iterator for Messages {
    type Item = Result<BagMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        for source in &mut self.sources {
            if source.head.is_none() && !self.failed[source.topic] {
                match source.iter.next() {
                    Some(Ok(m)) => source.head = Some(m),
                    Some(Err(e)) => {
                        self.failed[source.topic] = true;
                        self.error.get_or_insert(e);
                    }
                    None => {}
                }
            }
        }
        // The failed topics' messages read from other files are dropped with them.
        for source in &mut self.sources {
            if self.failed[source.topic] {
                source.head = None;
            }
        }
        // The first of the earliest: ties go to the earlier topic, then file.
        let next = self
            .sources
            .iter_mut()
            .filter(|s| s.head.is_some())
            .min_by_key(|s| s.head.as_ref().map(|m| m.log_time_ns))
            .and_then(|s| s.head.take());
        match next {
            Some(m) => Some(Ok(m)),
            None => {
                self.done = true;
                self.error.take().map(Err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, log_time_ns: u64) -> Result<BagMessage, BagError> {
        Ok(BagMessage {
            topic: topic.into(),
            log_time_ns,
            data: Vec::new(),
        })
    }

    fn damage(offset: u64) -> Result<BagMessage, BagError> {
        Err(BagError::Corrupt {
            path: "x.mcap".into(),
            unit: "byte offset",
            offset,
            message: "damaged".into(),
        })
    }

    fn source(topic: usize, items: Vec<Result<BagMessage, BagError>>) -> Source {
        Source {
            topic,
            iter: Box::new(items.into_iter()),
            head: None,
        }
    }

    fn order(messages: Messages) -> Vec<String> {
        messages
            .map(|m| match m {
                Ok(m) => format!("{}@{}", m.topic, m.log_time_ns),
                Err(e) => format!("error {e}"),
            })
            .collect()
    }

    #[test]
    fn topics_merge_by_log_time_and_ties_keep_the_topic_order() {
        // Two topics, the second in two files.
        let sources = vec![
            source(0, vec![message("a", 1), message("a", 3), message("a", 5)]),
            source(1, vec![message("b", 1), message("b", 2)]),
            source(1, vec![message("b", 5), message("b", 6)]),
        ];
        assert_eq!(
            order(Messages::new(sources, 2)),
            ["a@1", "b@1", "b@2", "a@3", "a@5", "b@5", "b@6"]
        );
    }

    #[test]
    fn a_damaged_topic_ends_alone_and_its_error_comes_last() {
        let sources = vec![
            source(0, vec![message("a", 1), message("a", 4), message("a", 6)]),
            source(1, vec![message("b", 2), damage(99), message("b", 3)]),
            // The damaged topic's other file: dropped with it.
            source(1, vec![message("b", 5)]),
        ];
        assert_eq!(
            order(Messages::new(sources, 2)),
            [
                "a@1",
                "b@2",
                "a@4",
                "a@6",
                "error x.mcap: byte offset 99: damaged"
            ]
        );
        // One topic: the stream ends at the damage, as it always did.
        let sources = vec![
            source(0, vec![message("a", 1), damage(7), message("a", 2)]),
            source(0, vec![message("a", 9)]),
        ];
        assert_eq!(
            order(Messages::new(sources, 1)),
            ["a@1", "error x.mcap: byte offset 7: damaged"]
        );
    }
}
