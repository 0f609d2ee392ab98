//! `/rosout`: every log record that passes the node's log filter (`--log-level`,
//! `RUST_LOG`) goes to stderr as before and is also published as `rcl_interfaces/Log`, so
//! rqt_console, `ros2 topic echo /rosout` and Foxglove show the node's logs. Records logged
//! before the node's publisher exists (argument and parameter checks) go to stderr only.

use std::cell::Cell;
use std::sync::OnceLock;

use log::{Level, Log, Metadata, Record};
use ros2_client::Publisher;

use crate::node::messages::Stamp;
use crate::ros_msgs::{rcl, Time};

struct Sink {
    publisher: Publisher<rcl::Log>,
    name: String,
}

/// The process's logger: env_logger's, plus the `/rosout` publisher once attached.
struct RosoutLogger {
    inner: env_logger::Logger,
    sink: OnceLock<Sink>,
}

static LOGGER: OnceLock<RosoutLogger> = OnceLock::new();

thread_local! {
    /// Set while this thread publishes a record: what the DDS stack logs meanwhile goes
    /// to stderr only (no loop).
    static PUBLISHING: Cell<bool> = const { Cell::new(false) };
}

/// `rcl_interfaces/Log` severity of a record.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        Level::Debug | Level::Trace => 10,
    }
}

/// The logger name rcl gives a node: its full name without the leading `/`, with `.`
/// between namespace parts (`/robot1/clip_node` -> `robot1.clip_node`).
pub fn logger_name(fully_qualified: &str) -> String {
    fully_qualified.trim_start_matches('/').replace('/', ".")
}

impl Log for RosoutLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.inner.matches(record) {
            return;
        }
        self.inner.log(record);
        let Some(sink) = self.sink.get() else { return };
        if PUBLISHING.with(|p| p.replace(true)) {
            return;
        }
        let now = Stamp::now();
        let message = rcl::Log {
            stamp: Time {
                sec: now.sec,
                nanosec: now.nanosec,
            },
            level: severity(record.level()),
            name: sink.name.clone(),
            msg: record.args().to_string(),
            file: record.file().unwrap_or_default().to_string(),
            function: record.module_path().unwrap_or(record.target()).to_string(),
            line: record.line().unwrap_or(0),
        };
        // A record that cannot be published is still on stderr.
        let _ = sink.publisher.publish(message);
        PUBLISHING.with(|p| p.set(false));
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Makes `inner` the process's logger, ready to also publish on `/rosout` once
/// [`attach`] gives it a publisher.
pub fn install(inner: env_logger::Logger) -> Result<(), log::SetLoggerError> {
    let max = inner.filter();
    let logger = LOGGER.get_or_init(|| RosoutLogger {
        inner,
        sink: OnceLock::new(),
    });
    log::set_logger(logger)?;
    log::set_max_level(max);
    Ok(())
}

/// Publishes every later record on `publisher`, as the logger of node `fully_qualified`.
/// Without [`install`] (a program with its own logger) it does nothing.
pub fn attach(publisher: Publisher<rcl::Log>, fully_qualified: &str) {
    if let Some(logger) = LOGGER.get() {
        let _ = logger.sink.set(Sink {
            publisher,
            name: logger_name(fully_qualified),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels_as_rcl() {
        assert_eq!(logger_name("/clip_node"), "clip_node");
        assert_eq!(logger_name("/robot1/arm/clip_node"), "robot1.arm.clip_node");
        assert_eq!(severity(Level::Warn), 30);
        assert_eq!(severity(Level::Trace), 10);
    }
}
