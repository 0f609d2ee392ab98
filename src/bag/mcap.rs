//! MCAP storage, streamed from the file with the `mcap` crate's sans-IO reader, which hands
//! over whole top-level records. Chunks are opened here ([`Chunk`]): decompressed (zstd,
//! lz4, or none), their size and CRC checked before any of their messages is delivered, and
//! every record inside checked to fit the chunk. So a damaged chunk is reported at its byte
//! offset after every message of the chunks before it, and never delivers a damaged frame.
//! Works with and without a summary section (the summary is not needed for a linear read).
//!
//! (The crate's own chunk walk, mcap 0.26, subtracts an inner record's declared length from
//! what is left of an uncompressed chunk without checking it fits: a debug build panics, a
//! release build reads on past the chunk. Fuzzing found it; the input is under
//! `fuzz/regressions/bag_mcap/`.)

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
    /// The chunk being read, its records not yet all delivered.
    chunk: Option<Chunk>,
    schemas: HashMap<u16, String>,
    channels: HashMap<u16, ChannelInfo>,
    done: bool,
}

/// The records of one chunk, decompressed and checked.
#[derive(Debug)]
struct Chunk {
    records: Vec<u8>,
    /// Where the next record starts in `records`.
    at: usize,
}

/// Reads `n` bytes of a record's field at `*at`, or says which field runs past the end.
fn field<'a>(data: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8], String> {
    if data.len() - *at < n {
        return Err(format!(
            "the chunk's {what} ({n} bytes at byte {at} of the record) runs past its end ({} bytes)",
            data.len()
        ));
    }
    *at += n;
    Ok(&data[*at - n..*at])
}

fn u64_field(data: &[u8], at: &mut usize, what: &str) -> Result<u64, String> {
    let bytes = field(data, at, 8, what)?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

impl Chunk {
    /// Opens a Chunk record (the MCAP spec's field order: start and end time, uncompressed
    /// size and CRC, compression, then the length-prefixed records): decompresses it and
    /// checks its size and (when not 0) its CRC. Memory grows only with bytes the
    /// decompressor really produces, up to the declared size (at most [`MAX_RECORD`]).
    fn open(data: &[u8]) -> Result<Chunk, String> {
        let mut at = 0;
        field(data, &mut at, 16, "message start and end time")?;
        let size = u64_field(data, &mut at, "uncompressed size")?;
        let crc = u32::from_le_bytes(
            field(data, &mut at, 4, "uncompressed CRC")?
                .try_into()
                .expect("4 bytes"),
        );
        let name_len = u32::from_le_bytes(
            field(data, &mut at, 4, "compression name length")?
                .try_into()
                .expect("4 bytes"),
        );
        let name = field(data, &mut at, name_len as usize, "compression name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let compressed_len = u64_field(data, &mut at, "records length")?;
        let compressed = field(
            data,
            &mut at,
            usize::try_from(compressed_len).unwrap_or(usize::MAX),
            "records",
        )?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RECORD)
            .ok_or_else(|| {
                format!("a chunk declares {size} uncompressed bytes, above the {MAX_RECORD} limit")
            })?;
        let records = match name.as_str() {
            "" => compressed.to_vec(),
            "zstd" => decompress(
                zstd::stream::read::Decoder::new(compressed).map_err(|e| format!("zstd: {e}"))?,
                size,
                "zstd",
            )?,
            "lz4" => decompress(
                lz4::Decoder::new(compressed).map_err(|e| format!("lz4: {e}"))?,
                size,
                "lz4",
            )?,
            other => return Err(format!("unsupported chunk compression {other:?}")),
        };
        if records.len() != size {
            return Err(format!(
                "a chunk holds {} bytes of records where it declares {size}",
                records.len()
            ));
        }
        if crc != 0 {
            let calculated = crc32fast::hash(&records);
            if calculated != crc {
                return Err(format!(
                    "chunk CRC mismatch: the chunk says {crc:#010x}, its records give {calculated:#010x}"
                ));
            }
        }
        Ok(Chunk { records, at: 0 })
    }

    /// The next record (opcode, body) of the chunk, checked to fit it.
    fn next_record(&mut self) -> Option<Result<(u8, &[u8]), String>> {
        if self.at == self.records.len() {
            return None;
        }
        let start = self.at;
        let result = (|| {
            let opcode = field(&self.records, &mut self.at, 1, "record opcode")?[0];
            let len = u64_field(&self.records, &mut self.at, "record length")?;
            let left = self.records.len() - self.at;
            if len > left as u64 {
                return Err(format!(
                    "a record (opcode {opcode:#04x}) at byte {start} of a chunk claims {len} bytes; {left} are left in the chunk"
                ));
            }
            self.at += len as usize;
            Ok(opcode)
        })();
        Some(result.map(|opcode| (opcode, &self.records[start + 9..self.at])))
    }
}

/// Decompresses up to `size` bytes (one more is read, to tell a chunk that holds more than
/// it declares).
fn decompress(decoder: impl Read, size: usize, name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decoder
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name} decompression failed: {e}"))?;
    Ok(out)
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
                    .with_emit_chunks(true)
                    .with_record_length_limit(MAX_RECORD),
            ),
            offset: 0,
            chunk: None,
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
            // The open chunk's records first, then the file's next record.
            if let Some(chunk) = self.chunk.as_mut() {
                match chunk.next_record() {
                    None => self.chunk = None,
                    Some(Err(message)) => return Some(Err(self.corrupt(message))),
                    Some(Ok((opcode, data))) => {
                        match take_record(opcode, data, &mut self.schemas, &mut self.channels) {
                            Ok(None) => {}
                            Ok(Some(message)) => return Some(Ok(message)),
                            Err(message) => return Some(Err(self.corrupt(message))),
                        }
                    }
                }
                continue;
            }
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
            if opcode == mcap::records::op::CHUNK {
                match Chunk::open(data) {
                    Ok(chunk) => self.chunk = Some(chunk),
                    Err(message) => return Some(Err(self.corrupt(message))),
                }
                continue;
            }
            match take_record(opcode, data, &mut self.schemas, &mut self.channels) {
                Ok(None) => {}
                Ok(Some(message)) => return Some(Ok(message)),
                Err(message) => return Some(Err(self.corrupt(message))),
            }
        }
    }
}

/// Remembers a schema or channel record, returns a message record; every other record is
/// skipped unparsed. The records with length-prefixed fields are checked first: the parser
/// reserves a field's declared length before it reads it (4 GiB for a damaged u32).
fn take_record(
    opcode: u8,
    data: &[u8],
    schemas: &mut HashMap<u16, String>,
    channels: &mut HashMap<u16, ChannelInfo>,
) -> Result<Option<RawMessage>, String> {
    if !matches!(
        opcode,
        mcap::records::op::SCHEMA | mcap::records::op::CHANNEL | mcap::records::op::MESSAGE
    ) {
        return Ok(None);
    }
    check_lengths(opcode, data)?;
    match mcap::parse_record(opcode, data).map_err(|e| e.to_string())? {
        Record::Schema { header, .. } => {
            schemas.insert(header.id, header.name);
        }
        Record::Channel(c) => {
            let type_name = schemas.get(&c.schema_id).cloned().unwrap_or_default();
            channels.insert(
                c.id,
                ChannelInfo {
                    topic: c.topic,
                    type_name,
                },
            );
        }
        Record::Message { header, data } => {
            return Ok(Some(RawMessage {
                channel: header.channel_id,
                log_time_ns: header.log_time,
                data: data.into_owned(),
            }));
        }
        _ => {}
    }
    Ok(None)
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

#[cfg(test)]
mod chunk_tests {
    use super::Chunk;

    /// A Chunk record's body: times, uncompressed size and CRC, compression, records.
    fn chunk(records: &[u8], size: u64, crc: u32, compression: &str) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c.extend(size.to_le_bytes());
        c.extend(crc.to_le_bytes());
        c.extend((compression.len() as u32).to_le_bytes());
        c.extend(compression.as_bytes());
        c.extend((records.len() as u64).to_le_bytes());
        c.extend(records);
        c
    }

    fn record(opcode: u8, claimed: u64, body: &[u8]) -> Vec<u8> {
        let mut r = vec![opcode];
        r.extend(claimed.to_le_bytes());
        r.extend(body);
        r
    }

    #[test]
    fn records_come_out_in_order_and_must_fit_the_chunk() {
        let mut records = record(0x0a, 2, b"ab");
        records.extend(record(0x05, 3, b"xyz"));
        let crc = crc32fast::hash(&records);
        let mut c = Chunk::open(&chunk(&records, records.len() as u64, crc, "")).unwrap();
        assert_eq!(c.next_record().unwrap().unwrap(), (0x0a, &b"ab"[..]));
        assert_eq!(c.next_record().unwrap().unwrap(), (0x05, &b"xyz"[..]));
        assert!(c.next_record().is_none());

        // The fuzzer's case: an inner record claiming more than the chunk has left.
        let records = record(0x05, 1000, b"short");
        let mut c = Chunk::open(&chunk(&records, records.len() as u64, 0, "")).unwrap();
        let err = c.next_record().unwrap().unwrap_err();
        assert!(err.contains("claims 1000 bytes; 5 are left"), "{err}");
        let mut c = Chunk::open(&chunk(&[0x05, 1, 2], 3, 0, "")).unwrap();
        assert!(c.next_record().unwrap().is_err());
    }

    #[test]
    fn damaged_chunks_are_refused_before_any_record() {
        let records = record(0x05, 3, b"xyz");
        let good = chunk(
            &records,
            records.len() as u64,
            crc32fast::hash(&records),
            "",
        );
        assert!(Chunk::open(&good).is_ok());
        let bad_crc = chunk(&records, records.len() as u64, 1, "");
        assert!(Chunk::open(&bad_crc).unwrap_err().contains("CRC mismatch"));
        let bad_size = chunk(&records, 99, 0, "");
        assert!(Chunk::open(&bad_size).unwrap_err().contains("declares 99"));
        let huge = chunk(&records, u64::MAX, 0, "zstd");
        assert!(Chunk::open(&huge).unwrap_err().contains("above the"));
        let unknown = chunk(&records, records.len() as u64, 0, "bz2");
        assert!(Chunk::open(&unknown).unwrap_err().contains("bz2"));
        for cut in [0, 10, 20, 27, 30, good.len() - 1] {
            let err = Chunk::open(&good[..cut]).err().unwrap_or_default();
            assert!(err.contains("runs past its end"), "cut at {cut}: {err}");
        }
        let mut long_name = good.clone();
        long_name[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Chunk::open(&long_name).is_err());
    }

    #[test]
    fn compressed_chunks_are_decompressed_and_checked() {
        let records = record(0x05, 3, b"xyz");
        let crc = crc32fast::hash(&records);
        let zstd = zstd::bulk::compress(&records, 3).unwrap();
        let mut c = Chunk::open(&chunk(&zstd, records.len() as u64, crc, "zstd")).unwrap();
        assert_eq!(c.next_record().unwrap().unwrap(), (0x05, &b"xyz"[..]));
        // A chunk that decompresses to more than it declares.
        let err = Chunk::open(&chunk(&zstd, 2, 0, "zstd")).err().unwrap();
        assert!(err.contains("declares 2"), "{err}");
        let err = Chunk::open(&chunk(b"not zstd", 3, 0, "zstd"))
            .err()
            .unwrap();
        assert!(err.contains("zstd"), "{err}");
        let err = Chunk::open(&chunk(b"not lz4", 3, 0, "lz4")).err().unwrap();
        assert!(err.contains("lz4"), "{err}");
    }
}
