//! MCAP storage, streamed from the file with the `mcap` crate's sans-IO reader: each chunk
//! is decompressed (zstd, lz4) and its CRC checked before any of its messages is delivered,
//! so a damaged chunk is reported at its byte offset after every message of the chunks
//! before it, and never delivers a damaged frame. Works with and without a summary section
//! (the summary is not needed for a linear read).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mcap::records::Record;
use mcap::sans_io::{LinearReadEvent, LinearReader, LinearReaderOptions};

use super::{BagError, BagMessage, TopicInfo};

/// Largest record or chunk (compressed or not) read: far above any camera frame, and a
/// damaged length field is refused before memory is reserved for it.
const MAX_RECORD: usize = 1 << 30;

/// Most bytes reserved for one read: a damaged length field in a short file (below
/// [`MAX_RECORD`]) reserves no more than this before the file ends.
const READ_STEP: usize = 1 << 20;

/// A message record's channel, as far as replay cares.
#[derive(Debug, Clone)]
struct ChannelInfo {
    topic: String,
    type_name: String,
}

/// A message record before its channel is looked up.
struct RawMessage {
    channel: u16,
    log_time_ns: u64,
    data: Vec<u8>,
}

/// The records of one MCAP file, in file order.
struct Records {
    path: PathBuf,
    file: File,
    reader: LinearReader,
    /// Bytes of the file handed to the reader so far.
    offset: u64,
    schemas: HashMap<u16, String>,
    channels: HashMap<u16, ChannelInfo>,
    done: bool,
}

impl Records {
    fn open(path: &Path) -> Result<Self, BagError> {
        let file = File::open(path).map_err(|cause| BagError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(Records {
            path: path.to_path_buf(),
            file,
            reader: LinearReader::new_with_options(
                LinearReaderOptions::default()
                    .with_prevalidate_chunk_crcs(true)
                    .with_record_length_limit(MAX_RECORD),
            ),
            offset: 0,
            schemas: HashMap::new(),
            channels: HashMap::new(),
            done: false,
        })
    }

    fn corrupt(&mut self, message: String) -> BagError {
        self.done = true;
        BagError::Corrupt {
            path: self.path.clone(),
            unit: "byte offset",
            offset: self.offset,
            message,
        }
    }

    /// The next message record; schema and channel records are remembered on the way.
    fn next_message(&mut self) -> Option<Result<RawMessage, BagError>> {
        if self.done {
            return None;
        }
        loop {
            let event = match self.reader.next_event() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    let message = match e {
                        mcap::McapError::UnexpectedEof => {
                            "the file ends inside a record (cut short?)".to_string()
                        }
                        other => other.to_string(),
                    };
                    return Some(Err(self.corrupt(message)));
                }
                Some(Ok(event)) => event,
            };
            let (opcode, data) = match event {
                LinearReadEvent::ReadRequest(n) => {
                    // The reader asks for a whole record (or chunk) at once, as long as its
                    // length field says, up to MAX_RECORD; hand it the file in steps of at
                    // most READ_STEP so memory only grows with bytes the file really has.
                    let buf = self.reader.insert(n.min(READ_STEP));
                    match self.file.read(buf) {
                        Ok(read) => {
                            self.reader.notify_read(read);
                            self.offset += read as u64;
                        }
                        Err(cause) => {
                            self.done = true;
                            return Some(Err(BagError::Io {
                                path: self.path.clone(),
                                cause,
                            }));
                        }
                    }
                    continue;
                }
                LinearReadEvent::Record { data, opcode } => (opcode, data),
            };
            // Replay needs schemas, channels and messages; every other record is skipped
            // unparsed. The two with length-prefixed fields are checked first: the parser
            // reserves a field's declared length before it reads it (4 GiB for a damaged u32).
            if !matches!(
                opcode,
                mcap::records::op::SCHEMA | mcap::records::op::CHANNEL | mcap::records::op::MESSAGE
            ) {
                continue;
            }
            if let Err(message) = check_lengths(opcode, data) {
                return Some(Err(self.corrupt(message)));
            }
            match mcap::parse_record(opcode, data) {
                Ok(Record::Schema { header, .. }) => {
                    self.schemas.insert(header.id, header.name);
                }
                Ok(Record::Channel(c)) => {
                    let type_name = self.schemas.get(&c.schema_id).cloned().unwrap_or_default();
                    self.channels.insert(
                        c.id,
                        ChannelInfo {
                            topic: c.topic,
                            type_name,
                        },
                    );
                }
                Ok(Record::Message { header, data }) => {
                    return Some(Ok(RawMessage {
                        channel: header.channel_id,
                        log_time_ns: header.log_time,
                        data: data.into_owned(),
                    }));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(self.corrupt(e.to_string()))),
            }
        }
    }
}

/// Checks that every length-prefixed field of a Schema or Channel record fits in the record.
fn check_lengths(opcode: u8, data: &[u8]) -> Result<(), String> {
    struct Fields<'a> {
        data: &'a [u8],
        at: usize,
    }
    impl Fields<'_> {
        fn skip(&mut self, n: usize, end: usize) -> Result<(), String> {
            if end - self.at < n {
                return Err(format!(
                    "a field of {n} bytes runs past the end of its record (byte {} of {end})",
                    self.at
                ));
            }
            self.at += n;
            Ok(())
        }
        fn len(&mut self, end: usize) -> Result<usize, String> {
            let at = self.at;
            self.skip(4, end)?;
            let bytes: [u8; 4] = self.data[at..at + 4].try_into().expect("4 bytes");
            Ok(u32::from_le_bytes(bytes) as usize)
        }
        fn prefixed(&mut self, end: usize) -> Result<(), String> {
            let n = self.len(end)?;
            self.skip(n, end)
        }
    }
    let end = data.len();
    let mut f = Fields { data, at: 0 };
    match opcode {
        mcap::records::op::SCHEMA => {
            f.skip(2, end)?; // id
            f.prefixed(end)?; // name
            f.prefixed(end)?; // encoding
            f.prefixed(end) // data
        }
        mcap::records::op::CHANNEL => {
            f.skip(4, end)?; // id, schema id
            f.prefixed(end)?; // topic
            f.prefixed(end)?; // message encoding
            let map_len = f.len(end)?;
            let map_end =
                f.at.checked_add(map_len)
                    .filter(|e| *e <= end)
                    .ok_or_else(|| {
                        format!("a metadata map of {map_len} bytes runs past the end of its record")
                    })?;
            while f.at < map_end {
                f.prefixed(map_end)?; // key
                f.prefixed(map_end)?; // value
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Every channel's topic with its message count (read to the end, or to the first damage:
/// `messages` reports that one where it happens).
pub fn topics(path: &Path) -> Result<Vec<TopicInfo>, BagError> {
    let mut records = Records::open(path)?;
    let mut counts: HashMap<u16, u64> = HashMap::new();
    while let Some(next) = records.next_message() {
        match next {
            Ok(m) => *counts.entry(m.channel).or_default() += 1,
            Err(BagError::Corrupt { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    // One entry per channel; `Bag::open` adds up channels of the same topic.
    Ok(records
        .channels
        .iter()
        .map(|(id, c)| TopicInfo {
            name: c.topic.clone(),
            type_name: c.type_name.clone(),
            message_count: counts.get(id).copied().unwrap_or(0),
        })
        .collect())
}

/// The messages of one topic of an MCAP file, in file order.
pub struct McapMessages {
    records: Records,
    topic: String,
}

impl McapMessages {
    pub fn open(path: &Path, topic: &str) -> Result<Self, BagError> {
        Ok(McapMessages {
            records: Records::open(path)?,
            topic: topic.to_string(),
        })
    }
}

impl Iterator for McapMessages {
    type Item = Result<BagMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let RawMessage {
                channel,
                log_time_ns,
                data,
            } = match self.records.next_message()? {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            let Some(info) = self.records.channels.get(&channel) else {
                let offset = self.records.offset;
                return Some(Err(self.records.corrupt(format!(
                    "message on channel {channel}, which no channel record declared (near byte {offset})"
                ))));
            };
            if info.topic == self.topic {
                return Some(Ok(BagMessage {
                    topic: info.topic.clone(),
                    log_time_ns,
                    data,
                }));
            }
        }
    }
}

#[cfg(test)]
mod length_tests {
    use super::check_lengths;
    use mcap::records::op;

    #[test]
    fn length_prefixed_fields_must_fit_their_record() {
        // Channel: id, schema id, topic "/a", encoding "cdr", empty map.
        let mut channel = vec![
            1, 0, 1, 0, 2, 0, 0, 0, b'/', b'a', 3, 0, 0, 0, b'c', b'd', b'r',
        ];
        channel.extend([0, 0, 0, 0]);
        assert_eq!(check_lengths(op::CHANNEL, &channel), Ok(()));
        let mut huge = channel.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_lengths(op::CHANNEL, &huge)
            .unwrap_err()
            .contains("runs past"));
        let mut map = channel.clone();
        map.truncate(channel.len() - 4);
        map.extend(12u32.to_le_bytes());
        map.extend([1, 0, 0, 0, b'k', 200, 0, 0, 0, b'v', 0, 0]);
        assert!(check_lengths(op::CHANNEL, &map).is_err());
        // Schema: id, name "s", encoding "", data of 2 bytes claimed but 1 present.
        let schema = [1, 0, 1, 0, 0, 0, b's', 0, 0, 0, 0, 2, 0, 0, 0, 9];
        assert!(check_lengths(op::SCHEMA, &schema).is_err());
        assert_eq!(
            check_lengths(op::SCHEMA, &schema[..15]),
            Err("a field of 2 bytes runs past the end of its record (byte 15 of 15)".into())
        );
    }
}
