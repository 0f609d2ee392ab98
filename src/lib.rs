//! clip_perception: CLIP zero-shot perception for robots, on the CPU with tract.
//!
//! The data flow, one folder per part:
//!
//! ```text
//!  camera / file ─> image::Frame ─> image::preprocess ─> model::ImageEncoder ─> embedding
//!                   (raw or JPEG/    (PIL-exact bicubic,  (tract, int8/fp32,        │
//!                    PNG, borrowed)   crop, mean/std)      fused ops, reused state) │
//!                                                                                   ▼
//!  phrases ─> text::prompts ─> text::tokenizer ─> model::TextEncoder   engine::step::FrameStep
//!             (templates,      (clean + BPE)      (real token length)  cosine, probability,
//!              ensembles)      text::cache ──> text::LabelMatrix ────> smoothing, hysteresis,
//!                                                                      thresholds, top-k
//!                                                                                   │
//!                     node (ROS 2 via dds) / CLI table or JSON lines  <── Matches ──┘
//! ```
//!
//! - [`image`]: frames, decoding and the exact CLIP preprocessing.
//! - [`text`]: phrases, prompt templates and ensembles, cleaning, tokenizer, embedding
//!   cache, the text embedder and the [`LabelMatrix`].
//! - [`model`]: the validated model bundle and its two tract encoders; [`fused`]: the
//!   engine's own operators swapped into the graphs (int8 quantize/dequantize, softmax,
//!   QuickGELU).
//! - [`engine`]: the one builder every entry point uses ([`EngineBuilder`]), scoring, and
//!   the per-frame step ([`FrameStep`]) whose [`Matches`] the node publishes.
//! - [`node`]: the ROS node without a transport (command line, parameters, frame policy,
//!   diagnostics); [`dds`] (cargo feature `dds`) puts it on the wire with `ros2-client`.
//! - [`bag`]: rosbag2 recordings (MCAP, SQLite) read without ROS; [`replay`] runs their
//!   image topics through the node's own per-frame step; [`ros_msgs`]: the ROS message
//!   definitions both the node and replay decode.
//! - [`config`] (the one YAML reader), [`npy`] (tensor files), [`error`], [`precision`].
//!
//! ## Layers
//!
//! Floors, bottom to top. A module uses only modules on lower floors, so no two modules
//! depend on each other, however indirectly (`tests/layers.rs` checks every `crate::` path
//! of `src/` against this list; unit tests and doc links are exempt). The binaries
//! (`main.rs`, `cli/`, `bin/`) stand above them all.
//!
//! ```text
//! 9  zeroshot fuzzing     the zero-shot benchmark; the fuzz harness
//! 8  eval                 replay metrics, truth, reports
//! 7  replay dds           the node's step over a bag; the node on the wire
//! 6  index node           image index; the node without a transport
//! 5  engine               the one builder, scoring, the per-frame step
//! 4  text                 prompts, tokenizers, text embeddings, label matrix
//! 3  model locate         bundles, families, the tract encoders; crops and relevance maps
//! 2  image npy fused      frames and preprocessing; tensor files; fused graph ops
//! 1  error bag cpu        the error type; rosbag2 readers; CPU features
//! 0  precision config kernels ros_msgs
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bag;
pub mod config;
pub mod cpu;
#[cfg(feature = "dds")]
pub mod dds;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fused;
/// The fuzz harness (`fuzz/`, `tests/fuzz_corpus.rs`); not part of the API.
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod index;
pub mod kernels;
pub mod locate;
pub mod model;
pub mod node;
pub mod npy;
pub mod precision;
pub mod replay;
pub mod ros_msgs;
pub mod text;
pub mod zeroshot;

pub use engine::step::{FrameResult, FrameStep, MatchPolicy, Matches, PhraseMatch, Stamp};
pub use engine::{ClipEngine, EngineBuilder, EngineOptions};
pub use error::{Error, Result};
pub use image::{CompressedFrame, Frame, FrameError, RgbImage};
pub use model::{
    EncoderOptions, ImageEncoder, ModelBundle, ModelSpec, Precision, Scoring, TextEncoder,
};
pub use text::{LabelMatrix, Prompts, TextEmbedder};
