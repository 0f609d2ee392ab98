//! Ground truth for a recording: which phrases each frame shows.
//!
//! Two sources:
//! - a CSV file of intervals `start,end,label` in seconds of the frames' header stamps
//!   (absolute, as `header.stamp.sec + nanosec * 1e-9`), half-open `[start, end)`; the label
//!   field holds one phrase, several separated by `;`, or `none` for "nothing"; a header row
//!   `start,end,label` and `#` comment lines are allowed; overlapping intervals add up;
//! - a `std_msgs/String` topic of the same bag: each message's labels (same syntax) hold from
//!   its log time until the next message's.
//!
//! A frame no interval covers has no truth: it is scored and plotted but left out of the
//! metrics (and counted as unlabelled).

use std::collections::BTreeSet;
use std::path::Path;

use crate::bag::{Bag, BagError, STRING_TYPE};
use crate::engine::step::Stamp;
use crate::ros_msgs::{decode_cdr, StringMsg};
use crate::text::parse_phrases;

/// The label that means "none of the phrases".
pub const NONE: &str = "none";

/// Why truth cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("{path}: cannot read: {cause}")]
    Read { path: String, cause: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{source_name}: no truth intervals")]
    Empty { source_name: String },
    /// The bag holding a truth topic could not be read.
    #[error(transparent)]
    Bag(#[from] BagError),
}

/// Which clock a truth source is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBase {
    /// The frame's `header.stamp` (CSV files).
    HeaderStamp,
    /// The frame's log time in the bag (truth topics).
    LogTime,
}

#[derive(Debug, Clone, PartialEq)]
struct Interval {
    start_ns: i64,
    /// Exclusive.
    end_ns: i64,
    /// Phrase indices (empty: none of them).
    labels: Vec<usize>,
}

/// Truth intervals over one recording, labels as indices into the phrase list.
#[derive(Debug, Clone)]
pub struct Truth {
    base: TimeBase,
    intervals: Vec<Interval>,
}

/// Nanoseconds of a header stamp.
pub fn stamp_ns(stamp: Stamp) -> i64 {
    i64::from(stamp.sec) * 1_000_000_000 + i64::from(stamp.nanosec)
}

/// A truth file's name and text (at most the table size limit), `what` naming it in errors.
pub(crate) fn read_csv(path: &Path, what: &str) -> Result<(String, String), TruthError> {
    let name = path.display().to_string();
    let text = crate::config::read_text_limited(path, crate::config::limits::TABLE_BYTES, what)
        .map_err(|e| TruthError::Read {
            path: name.clone(),
            cause: e.to_string(),
        })?;
    Ok((name, text))
}

/// The reader of the truth files' CSV: no header handling (a header row is skipped by its
/// first field), `#` comments, fields trimmed, rows of any length (checked by the caller).
pub(crate) fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes())
}

fn seconds_to_ns(s: f64) -> i64 {
    (s * 1e9).round() as i64
}

/// `red cup; blue ball` or `none` as phrase indices.
fn parse_labels(field: &str, phrases: &[String]) -> Result<Vec<usize>, String> {
    let listed = parse_phrases(field);
    if listed.is_empty() {
        return Err(format!(
            "empty label (write {NONE:?} for a frame that shows none of the phrases)"
        ));
    }
    if listed.iter().any(|l| l.eq_ignore_ascii_case(NONE)) {
        if listed.len() > 1 {
            return Err(format!("{NONE:?} together with other labels in {field:?}"));
        }
        return Ok(Vec::new());
    }
    listed
        .iter()
        .map(|label| {
            phrases.iter().position(|p| p == label).ok_or_else(|| {
                format!(
                    "label {label:?} is not one of the phrases ({})",
                    phrases.join("; ")
                )
            })
        })
        .collect()
}

impl Truth {
    pub fn base(&self) -> TimeBase {
        self.base
    }

    /// Reads a CSV file of `start,end,label` intervals (see the module docs).
    pub fn from_csv(path: &Path, phrases: &[String]) -> Result<Truth, TruthError> {
        let (name, text) = read_csv(path, "a truth CSV")?;
        Self::parse_csv(&name, &text, phrases)
    }

    /// [`Truth::from_csv`] on text already read (`name` for messages).
    pub fn parse_csv(name: &str, text: &str, phrases: &[String]) -> Result<Truth, TruthError> {
        let mut reader = csv_reader(text);
        let mut intervals = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let at = |line: Option<u64>| format!("{name}:{}", line.unwrap_or(i as u64 + 1));
            let record = record.map_err(|e| TruthError::Invalid {
                at: at(e.position().map(|p| p.line())),
                message: format!("not CSV: {e}"),
            })?;
            let line = record.position().map(|p| p.line());
            let invalid = |message: String| TruthError::Invalid {
                at: at(line),
                message,
            };
            if record.len() != 3 {
                return Err(invalid(format!(
                    "{} fields, expected 3: start,end,label",
                    record.len()
                )));
            }
            if intervals.is_empty() && record[0].eq_ignore_ascii_case("start") {
                continue; // the header row
            }
            let seconds = |field: usize, what: &str| -> Result<f64, TruthError> {
                record[field]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{what} {:?} is not a number of seconds",
                            &record[field]
                        ))
                    })
            };
            let (start, end) = (seconds(0, "start")?, seconds(1, "end")?);
            if end <= start {
                return Err(invalid(format!("end {end} is not after start {start}")));
            }
            let labels = parse_labels(&record[2], phrases).map_err(invalid)?;
            intervals.push(Interval {
                start_ns: seconds_to_ns(start),
                end_ns: seconds_to_ns(end),
                labels,
            });
        }
        if intervals.is_empty() {
            return Err(TruthError::Empty {
                source_name: name.to_string(),
            });
        }
        Ok(Truth {
            base: TimeBase::HeaderStamp,
            intervals,
        })
    }

    /// Truth from the `std_msgs/String` messages of a topic, `(log time ns, data)` in log
    /// time order: each message's labels hold until the next message (the last one's until
    /// the end of the recording).
    pub fn from_messages(
        topic: &str,
        messages: &[(u64, String)],
        phrases: &[String],
    ) -> Result<Truth, TruthError> {
        let mut intervals = Vec::with_capacity(messages.len());
        for (i, (time, data)) in messages.iter().enumerate() {
            let labels = parse_labels(data, phrases).map_err(|message| TruthError::Invalid {
                at: format!("{topic} message {} (log time {time} ns)", i + 1),
                message,
            })?;
            let end = messages
                .get(i + 1)
                .map_or(i64::MAX, |(next, _)| *next as i64);
            intervals.push(Interval {
                start_ns: *time as i64,
                end_ns: end,
                labels,
            });
        }
        if intervals.is_empty() {
            return Err(TruthError::Empty {
                source_name: topic.to_string(),
            });
        }
        Ok(Truth {
            base: TimeBase::LogTime,
            intervals,
        })
    }

    /// Truth from a `std_msgs/String` topic of `bag` (see [`Truth::from_messages`]); the
    /// topic must exist and have that type, and every message must decode.
    pub fn from_bag_topic(bag: &Bag, topic: &str, phrases: &[String]) -> Result<Truth, TruthError> {
        let at = bag.path().display().to_string();
        let info = bag
            .topics()
            .iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| TruthError::Invalid {
                at: at.clone(),
                message: format!("no truth topic {topic}"),
            })?;
        if info.type_name != STRING_TYPE {
            return Err(TruthError::Invalid {
                at,
                message: format!(
                    "truth topic {topic} is a {}, not a {STRING_TYPE}",
                    info.type_name
                ),
            });
        }
        let mut messages = Vec::new();
        for message in bag.messages(topic)? {
            let message = message?;
            let text = decode_cdr::<StringMsg>(&message.data).map_err(|e| TruthError::Invalid {
                at: at.clone(),
                message: format!(
                    "truth topic {topic}, message at log time {} ns: {e}",
                    message.log_time_ns
                ),
            })?;
            messages.push((message.log_time_ns, text.data));
        }
        Truth::from_messages(topic, &messages, phrases)
    }

    /// The phrases a frame shows (indices, ascending; empty: none), or `None` when no
    /// interval covers it.
    pub fn labels_at(&self, stamp: Stamp, log_time_ns: u64) -> Option<Vec<usize>> {
        let t = match self.base {
            TimeBase::HeaderStamp => stamp_ns(stamp),
            TimeBase::LogTime => log_time_ns as i64,
        };
        let mut covered = false;
        let mut labels = BTreeSet::new();
        for interval in &self.intervals {
            if interval.start_ns <= t && t < interval.end_ns {
                covered = true;
                labels.extend(interval.labels.iter().copied());
            }
        }
        covered.then(|| labels.into_iter().collect())
    }

    /// Where each phrase is true, in this truth's clock: `(start_ns, end_ns, phrase)`.
    pub fn spans(&self) -> impl Iterator<Item = (i64, i64, usize)> + '_ {
        self.intervals
            .iter()
            .flat_map(|i| i.labels.iter().map(move |&l| (i.start_ns, i.end_ns, l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrases() -> Vec<String> {
        vec!["red cup".into(), "blue ball".into()]
    }

    fn at(sec: i32, nanosec: u32) -> Stamp {
        Stamp { sec, nanosec }
    }

    #[test]
    fn csv_intervals_are_half_open_and_add_up() {
        let text = "start,end,label\n# comment\n10,12,red cup\n11.5,13,\"blue ball; red cup\"\n13,14,none\n";
        let t = Truth::parse_csv("t.csv", text, &phrases()).unwrap();
        assert_eq!(t.labels_at(at(9, 999_999_999), 0), None);
        assert_eq!(t.labels_at(at(10, 0), 0), Some(vec![0]));
        assert_eq!(t.labels_at(at(11, 600_000_000), 0), Some(vec![0, 1]));
        assert_eq!(t.labels_at(at(12, 0), 0), Some(vec![0, 1]));
        assert_eq!(t.labels_at(at(13, 0), 0), Some(vec![]));
        assert_eq!(t.labels_at(at(14, 0), 0), None);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let bad = |text: &str| {
            Truth::parse_csv("t.csv", text, &phrases())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("1,2,red cup\n3,2,red cup\n"),
            "t.csv:2: end 2 is not after start 3"
        );
        assert!(bad("1,2,mug\n").starts_with("t.csv:1: label \"mug\" is not one of the phrases"));
        assert_eq!(
            bad("1,x,red cup\n"),
            "t.csv:1: end \"x\" is not a number of seconds"
        );
        assert_eq!(
            bad("1,2\n"),
            "t.csv:1: 2 fields, expected 3: start,end,label"
        );
        assert!(bad("1,2,none; red cup\n").contains("together with other labels"));
        assert_eq!(bad("# nothing\n"), "t.csv: no truth intervals");
    }

    #[test]
    fn topic_labels_hold_until_the_next_message() {
        let messages = vec![
            (100, "red cup".to_string()),
            (200, "none".to_string()),
            (300, "blue ball;red cup".to_string()),
        ];
        let t = Truth::from_messages("/truth", &messages, &phrases()).unwrap();
        assert_eq!(t.labels_at(Stamp::default(), 99), None);
        assert_eq!(t.labels_at(Stamp::default(), 100), Some(vec![0]));
        assert_eq!(t.labels_at(Stamp::default(), 199), Some(vec![0]));
        // At the next message's time, its labels alone.
        assert_eq!(t.labels_at(Stamp::default(), 200), Some(vec![]));
        assert_eq!(t.labels_at(Stamp::default(), 250), Some(vec![]));
        assert_eq!(
            t.labels_at(Stamp::default(), 10_000_000_000),
            Some(vec![0, 1])
        );
        let err = Truth::from_messages("/truth", &[(5, "mug".into())], &phrases()).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("/truth message 1 (log time 5 ns): label \"mug\""));
    }
}
