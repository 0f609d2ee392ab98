//! Offline evaluation of a replay: ground truth ([`truth`]) and true boxes ([`boxes`]),
//! metrics ([`metrics`]), the HTML report with its plots ([`report`]) and localisation
//! overlays ([`overlay`]).

pub mod boxes;
pub mod metrics;
pub mod overlay;
pub mod report;
pub mod truth;

pub use boxes::{Localization, TruthBoxes};
pub use metrics::{median, Evaluation, Evaluator};
pub use report::{write_report, ReportError};
pub use truth::{Truth, TruthError};
