//! The ROS node `clip_node`, independent of any transport: what its command line means
//! ([`ros_args`], [`names`], [`params_file`], [`params`]), and the running core
//! ([`core::NodeCore`]) that takes images and queries in and hands results to an
//! [`messages::Outputs`] implementation. A transport adapter (`crate::dds` with
//! `ros2-client`; later `r2r`) only converts messages and wires topics:
//!
//! ```text
//!  argv ─> RosArgs ─> NodeNames (ns, name, remaps) ─> topic names for the adapter
//!                └──> params files + -p ─> NodeParams ─> validate ─> NodeConfig
//!  NodeConfig ─> load_engine (engine::EngineBuilder) ─> CoreSetup ─> NodeCore::start(outputs)
//!  adapter: Image/CompressedImage ─> ImageInput ─> NodeCore::offer_image
//!           String query ─> NodeCore::query
//!           Outputs ─> Classification, matches JSON, LabelInfo, DiagnosticArray
//! ```

pub mod clock;
pub mod core;
pub mod frame_queue;
pub mod messages;
pub mod names;
pub mod param_services;
pub mod params;
pub mod params_file;
pub mod ros_args;
pub mod ros_convert;
pub mod stats;
pub mod wire;

use crate::engine::{EngineBuilder, EngineOptions};
use crate::error::Error;

pub use self::core::{Camera, CoreSetup, NodeCore};
pub use messages::{ImageInput, Outputs, Pixels};
pub use names::NodeNames;
pub use params::{InputKind, NodeConfig, NodeParams, PARAMS};
pub use ros_args::{ParamOverrides, RosArgs};

/// The node's name in its code (`-r __node:=` renames it).
pub const NODE_NAME: &str = "clip_node";

/// The node's topics as named in its code (relative, so launch can namespace and remap them).
pub mod topics {
    /// The camera; with `image_transport: compressed` the node subscribes to this topic's
    /// resolved (remapped) name + `/compressed`, as image_transport does.
    pub const IMAGE: &str = "image";
    pub const QUERY: &str = "~/query";
    pub const CLASSIFICATION: &str = "~/classification";
    pub const LABEL_INFO: &str = "~/label_info";
    pub const MATCHES: &str = "~/matches";
    pub const DETECTIONS: &str = "~/detections";
    pub const HEATMAP: &str = "~/heatmap";
    pub const DIAGNOSTICS: &str = "/diagnostics";
    pub const PARAMETER_EVENTS: &str = "/parameter_events";
    pub const ROSOUT: &str = "/rosout";
    pub const CLOCK: &str = "/clock";

    /// A per-camera topic's name for `camera` (`None`: the single-camera interface, the
    /// name unchanged): `image` -> `C/image`, `~/classification` -> `~/C/classification`.
    pub fn of_camera(camera: Option<&str>, topic: &str) -> String {
        match (camera, topic.strip_prefix("~/")) {
            (None, _) => topic.to_string(),
            (Some(c), Some(private)) => format!("~/{c}/{private}"),
            (Some(c), None) => format!("{c}/{topic}"),
        }
    }
}

/// Returns memory the allocator holds but no longer uses to the OS. Loading a model frees
/// hundreds of MB of parse-time buffers that glibc's malloc otherwise keeps in its heap
/// for good; a long-running node calls this after loading and after freeing the text
/// encoder. A no-op where the allocator is not glibc's.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Why the node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Args(#[from] ros_args::RosArgsError),
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error(transparent)]
    Load(#[from] params_file::LoadError),
    #[error(transparent)]
    Param(#[from] params::ParamError),
    #[error("parameter `{param}`: {cause}")]
    Engine { param: &'static str, cause: Error },
}

/// What the command line decides before any model is loaded.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub names: NodeNames,
    pub params: NodeParams,
    pub config: NodeConfig,
    /// Ignored arguments and parameters, one line each, for the log.
    pub warnings: Vec<String>,
}

impl NodePlan {
    /// Names, parameters (defaults, params files, `-p`) and their validation.
    pub fn from_args(args: &RosArgs) -> Result<NodePlan, StartError> {
        let names = NodeNames::new(NODE_NAME, args)?;
        let (params, mut warnings) = params_file::load_params(args, &names, NODE_NAME)?;
        let config = params.validate()?;
        warnings.splice(0..0, args.warnings.iter().cloned());
        Ok(NodePlan {
            names,
            params,
            config,
            warnings,
        })
    }

    /// The node's cameras: one without a name (the single-camera interface) without the
    /// `cameras` parameter, else one per name, in order.
    pub fn cameras(&self) -> Vec<Camera> {
        let names: Vec<Option<String>> = if self.config.cameras.is_empty() {
            vec![None]
        } else {
            self.config.cameras.iter().cloned().map(Some).collect()
        };
        names
            .into_iter()
            .map(|name| Camera {
                status_name: self.status_name(name.as_deref()),
                name,
            })
            .collect()
    }

    /// A camera's diagnostic status name, diagnostic_updater's `<node name>: <task>`:
    /// `clip` for the single camera, else the camera's name.
    pub fn status_name(&self, camera: Option<&str>) -> String {
        format!("{}: {}", self.names.name, camera.unwrap_or("clip"))
    }

    /// The absolute name a topic of [`topics`] resolves to.
    pub fn topic(&self, name: &str) -> Result<String, names::NameError> {
        self.names.resolve_topic(name)
    }

    /// The image topic a camera subscribes to: `image` (or `C/image`) resolved (namespace,
    /// remaps), with `/compressed` appended for the compressed transport (image_transport's
    /// naming, so one remap of `image` serves both transports).
    pub fn image_topic(&self, camera: Option<&str>) -> Result<String, names::NameError> {
        let base = self.topic(&topics::of_camera(camera, topics::IMAGE))?;
        Ok(match self.config.input {
            InputKind::Raw => base,
            InputKind::Compressed => format!("{}/compressed", base.trim_end_matches('/')),
        })
    }

    /// Loads the model and builds the starting label matrix: the text side first (the text
    /// encoder, on one thread, only if a phrase is not cached, freed again unless
    /// `keep_text_encoder`), then the image encoder with `threads`, so the two big graphs
    /// are not loaded at once.
    pub fn load_engine(&self) -> Result<CoreSetup, StartError> {
        let config = &self.config;
        let engine = |param: &'static str| move |cause| StartError::Engine { param, cause };
        let builder = EngineBuilder::open(EngineOptions {
            model: Some(config.model_dir.clone()),
            precision: config.precision,
            threads: config.threads,
            text_threads: Some(1),
            cache_dir: config.cache_dir.clone(),
            batch_size: 1,
        })
        .map_err(|cause| StartError::Engine {
            param: match cause {
                Error::PrecisionUnavailable { .. } => "precision",
                _ => "model_dir",
            },
            cause,
        })?;
        let mut text = builder.text_embedder().map_err(engine("model_dir"))?;
        let labels = text
            .label_matrix(&config.phrases, &config.prompts)
            .map_err(engine("labels"))?;
        if !config.keep_text_encoder {
            text.unload_encoder();
        }
        let image = builder.image_encoder().map_err(engine("model_dir"))?;
        release_freed_memory();
        Ok(CoreSetup {
            params: self.params.clone(),
            config: config.clone(),
            image,
            text,
            labels,
            cameras: self.cameras(),
        })
    }
}
