//! The image side, camera or file to encoder input:
//!
//! ```text
//!  Frame (raw pixels, borrowed) ──┐
//!  CompressedFrame (JPEG/PNG) ────┼─> RgbImage ─> preprocess (PIL-exact bicubic shortest
//!  image file ──── decode ────────┘              side, center crop, mean/std) ─> NCHW f32
//! ```
//! Every malformed input is a typed [`error::FrameError`] or [`error::DecodeError`].

pub mod decode;
/// The frame and decode errors and the size limits, defined on the crate's floor
/// ([`crate::error::frame`]) so the error type can wrap them without a circle.
pub use crate::error::frame as error;
pub mod frame;
pub mod preprocess;

pub use decode::{decode_bytes, load_image_file};
pub use error::{DecodeError, FrameError, RejectReason};
pub use frame::{CompressedFrame, Encoding, Frame, RgbImage};
pub use preprocess::Preprocessor;
