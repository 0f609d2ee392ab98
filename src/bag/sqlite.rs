//! rosbag2's SQLite storage (`.db3`): tables `topics(id, name, type, serialization_format)`
//! and `messages(id, topic_id, timestamp, data)`, read with `rusqlite` (SQLite bundled) in
//! pages of rows ordered by (timestamp, id), so memory does not grow with the bag.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{BagError, BagMessage, TopicInfo};

/// Rows fetched per query.
const PAGE: i64 = 256;

fn connect(path: &Path) -> Result<Connection, BagError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| format_error(path, e))
}

fn format_error(path: &Path, e: rusqlite::Error) -> BagError {
    BagError::Format {
        path: path.to_path_buf(),
        message: format!("not a readable rosbag2 SQLite file: {e}"),
    }
}

/// Every topic of the file with its type and message count.
pub fn topics(path: &Path) -> Result<Vec<TopicInfo>, BagError> {
    let db = connect(path)?;
    let mut statement = db
        .prepare(
            "SELECT t.name, t.type, COUNT(m.id) FROM topics t \
             LEFT JOIN messages m ON m.topic_id = t.id GROUP BY t.id ORDER BY t.name",
        )
        .map_err(|e| format_error(path, e))?;
    let rows = statement
        .query_map([], |row| {
            Ok(TopicInfo {
                name: row.get(0)?,
                type_name: row.get(1)?,
                message_count: row.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(|e| format_error(path, e))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_error(path, e))
}

/// The messages of one topic of a `.db3` file, in (timestamp, id) order.
pub struct SqliteMessages {
    path: PathBuf,
    db: Connection,
    topic_id: Option<i64>,
    /// (timestamp, id) of the last row delivered.
    after: (i64, i64),
    page: std::vec::IntoIter<(i64, i64, Vec<u8>)>,
    rows_read: u64,
    done: bool,
    topic: String,
}

impl SqliteMessages {
    pub fn open(path: &Path, topic: &str) -> Result<Self, BagError> {
        let db = connect(path)?;
        let topic_id = db
            .query_row("SELECT id FROM topics WHERE name = ?1", [topic], |r| {
                r.get(0)
            })
            .ok();
        Ok(SqliteMessages {
            path: path.to_path_buf(),
            db,
            topic_id,
            after: (i64::MIN, i64::MIN),
            page: Vec::new().into_iter(),
            rows_read: 0,
            done: false,
            topic: topic.to_string(),
        })
    }

    fn fetch(&mut self) -> Result<Vec<(i64, i64, Vec<u8>)>, rusqlite::Error> {
        let mut statement = self.db.prepare_cached(
            "SELECT timestamp, id, data FROM messages WHERE topic_id = ?1 \
             AND (timestamp > ?2 OR (timestamp = ?2 AND id > ?3)) \
             ORDER BY timestamp, id LIMIT ?4",
        )?;
        let rows = statement.query_map(
            rusqlite::params![self.topic_id, self.after.0, self.after.1, PAGE],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        rows.collect()
    }
}

impl Iterator for SqliteMessages {
    type Item = Result<BagMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.topic_id.is_none() {
            return None;
        }
        if self.page.len() == 0 {
            match self.fetch() {
                Ok(rows) if rows.is_empty() => {
                    self.done = true;
                    return None;
                }
                Ok(rows) => self.page = rows.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(BagError::Corrupt {
                        path: self.path.clone(),
                        unit: "after row",
                        offset: self.rows_read,
                        message: e.to_string(),
                    }));
                }
            }
        }
        let (timestamp, id, data) = self.page.next()?;
        self.after = (timestamp, id);
        self.rows_read += 1;
        Some(Ok(BagMessage {
            topic: self.topic.clone(),
            log_time_ns: timestamp.max(0) as u64,
            data,
        }))
    }
}
