//! Offline evaluation of a replay: ground truth ([`truth`]), metrics ([`metrics`]) and the
//! HTML report with its plots ([`report`]).

pub mod metrics;
pub mod overlay;
pub mod report;
pub mod truth;

pub use metrics::{median, Evaluation, Evaluator};
pub use report::{write_report, ReportError};
pub use truth::{Truth, TruthError};
