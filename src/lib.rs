//! clip_perception: CLIP zero-shot perception for robots, on the CPU with tract.
//!
//! The data flow, one module per stage:
//!
//! ```text
//!  camera / bag / file ─> frame ─> preprocess ─> encoder::ImageEncoder ─> image embedding
//!                       (Frame,   (PIL-exact     (tract, reused state)          │
//!                        RgbImage) bicubic,                                     ▼
//!                                  crop, norm)                   scoring::score(LabelMatrix, e)
//!                                                                 cosine, softmax, top-k
//!  phrases ─> labels::Prompts ─> text::tokenizer ─> encoder::TextEncoder        ▲
//!             (templates,        (clean + BPE)      (real token length)         │
//!              ensembles)        labels::EmbeddingCache ──> labels::LabelMatrix ┘
//! ```
//!
//! [`bundle`] reads and validates a model folder; [`engine`] ties the stages together for
//! every entry point (the CLI, the ROS node, bag replay), which stay thin adapters.
//! [`node`] is the ROS node without a transport (command line, parameters, frame policy,
//! diagnostics); [`dds`] (cargo feature `dds`) puts it on the wire with `ros2-client`.

#[macro_use]
mod simd;
pub mod bundle;
pub mod config;
#[cfg(feature = "dds")]
pub mod dds;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod frame;
pub mod int8;
pub mod labels;
pub mod node;
pub mod npy;
mod onnx_rewrite;
pub mod preprocess;
pub mod prompt_sets;
pub mod scoring;
pub mod text;
pub mod transformer_ops;

pub use bundle::{ModelBundle, Precision};
pub use encoder::{EncoderOptions, ImageEncoder, TextEncoder};
pub use engine::{ClipEngine, EngineOptions};
pub use error::{Error, Result};
pub use frame::{CompressedFrame, Frame, FrameError, RgbImage};
pub use labels::{LabelMatrix, Prompts, TextEmbedder};
pub use scoring::{Scores, Thresholds};
