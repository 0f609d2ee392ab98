//! The node's parameters: one typed table (name, type, default, description) that the
//! params file, `-p name:=value` overrides and the startup check all read, and the
//! validation that runs before any model is loaded. Values arrive untyped (YAML scalars or
//! lists, parsed by [`crate::config`]) and are typed here, naming the parameter on error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::Value;

use super::frame_queue::FramePolicy;
use crate::engine::model_dir::resolve_model_dir;
use crate::engine::scoring::Thresholds;
use crate::engine::step::MatchPolicy;
use crate::model::bundle::Precision;
use crate::text::cache::cache_root;
use crate::text::phrases::{check_phrases, parse_phrases, PhraseError};
use crate::text::prompts::Prompts;

/// Most phrases one label set (parameter or query) may hold.
pub const MAX_PHRASES: usize = 64;

/// Which image topic the node subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `image` (sensor_msgs/Image).
    Raw,
    /// `image/compressed` (sensor_msgs/CompressedImage).
    Compressed,
}

/// A parameter value that could not be used: which parameter, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("parameter `{name}`: {message}")]
pub struct ParamError {
    pub name: String,
    pub message: String,
}

impl ParamError {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        ParamError {
            name: name.to_string(),
            message: message.into(),
        }
    }
}

/// A value of the wrong type for its parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct TypeMismatch {
    /// What the parameter takes (`a string`, `a number`, ...).
    pub expected: &'static str,
    /// The value given, as JSON.
    pub got: Value,
}

fn mismatch(expected: &'static str, got: &Value) -> TypeMismatch {
    TypeMismatch {
        expected,
        got: got.clone(),
    }
}

/// A Rust type a parameter can have, read from an untyped (YAML/JSON) value.
pub trait ParamType: Sized {
    /// The ROS type name shown in descriptions (`string`, `double`, ...).
    const ROS_TYPE: &'static str;
    fn from_value(value: &Value) -> Result<Self, TypeMismatch>;
    fn to_value(&self) -> Value;
}

impl ParamType for String {
    const ROS_TYPE: &'static str = "string";
    fn from_value(value: &Value) -> Result<Self, TypeMismatch> {
        match value {
            Value::String(s) => Ok(s.clone()),
            other => Err(mismatch("a string", other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
}

impl ParamType for f64 {
    const ROS_TYPE: &'static str = "double";
    fn from_value(value: &Value) -> Result<Self, TypeMismatch> {
        value.as_f64().ok_or_else(|| mismatch("a number", value))
    }
    fn to_value(&self) -> Value {
        serde_json::json!(self)
    }
}

impl ParamType for i64 {
    const ROS_TYPE: &'static str = "integer";
    fn from_value(value: &Value) -> Result<Self, TypeMismatch> {
        value.as_i64().ok_or_else(|| mismatch("an integer", value))
    }
    fn to_value(&self) -> Value {
        serde_json::json!(self)
    }
}

impl ParamType for bool {
    const ROS_TYPE: &'static str = "bool";
    fn from_value(value: &Value) -> Result<Self, TypeMismatch> {
        value
            .as_bool()
            .ok_or_else(|| mismatch("true or false", value))
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl ParamType for Vec<String> {
    const ROS_TYPE: &'static str = "string array";
    /// A list of strings, or one string (an empty string is an empty list).
    fn from_value(value: &Value) -> Result<Self, TypeMismatch> {
        match value {
            Value::String(s) if s.is_empty() => Ok(Vec::new()),
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(mismatch("a list of strings", other)),
                })
                .collect(),
            other => Err(mismatch("a list of strings", other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::Array(self.iter().cloned().map(Value::String).collect())
    }
}

/// One parameter's declaration, as the parameter services describe it.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ros_type: &'static str,
    pub description: &'static str,
    pub default: fn() -> Value,
    /// Fixed at start (the model, its threads, the subscriptions): a set is refused.
    pub read_only: bool,
    /// Inclusive bounds of a number parameter, as its descriptor's range.
    pub range: Option<(f64, f64)>,
}

/// Old parameter names still accepted at start (with a warning), and their new names.
pub const ALIASES: &[(&str, &str)] = &[("input", "image_transport")];

/// The parameter a name given at start stands for, and the warning an old name earns.
pub fn canonical_name(name: &str) -> (&str, Option<String>) {
    match ALIASES.iter().find(|(old, _)| *old == name) {
        Some((old, new)) => (
            new,
            Some(format!("parameter `{old}` is now called `{new}`")),
        ),
        None => (name, None),
    }
}

/// The declaration of parameter `name`.
pub fn spec(name: &str) -> Option<&'static ParamSpec> {
    PARAMS.iter().find(|p| p.name == name)
}

macro_rules! node_params {
    ($( $(#[doc = $doc:literal])+ $name:ident : $ty:ty = $default:expr
        $(, range($lo:expr, $hi:expr))? $(, read_only = $read_only:literal)? ; )+) => {
        /// Every parameter of the node, with its default (see [`PARAMS`] for descriptions).
        #[derive(Debug, Clone, PartialEq)]
        pub struct NodeParams {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for NodeParams {
            fn default() -> Self {
                NodeParams { $( $name: $default, )+ }
            }
        }

        /// The parameter table: name, ROS type, description, default.
        pub const PARAMS: &[ParamSpec] = &[
            $( ParamSpec {
                name: stringify!($name),
                ros_type: <$ty as ParamType>::ROS_TYPE,
                description: concat!($($doc),+),
                default: || <$ty as ParamType>::to_value(&$default),
                read_only: {
                    #[allow(unused_mut, unused_assignments)]
                    let mut read_only = false;
                    $( read_only = $read_only; )?
                    read_only
                },
                range: {
                    #[allow(unused_mut, unused_assignments)]
                    let mut range: Option<(f64, f64)> = None;
                    $( range = Some(($lo as f64, $hi as f64)); )?
                    range
                },
            }, )+
        ];

        impl NodeParams {
            /// Sets one parameter from an untyped value; `Ok(false)` if no such parameter.
            pub fn set(&mut self, name: &str, value: &Value) -> Result<bool, ParamError> {
                match name {
                    $( stringify!($name) => {
                        self.$name = <$ty as ParamType>::from_value(value)
                            .map_err(|m| ParamError::new(name, m.to_string()))?;
                    } )+
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// The current value of every parameter, by name.
            pub fn values(&self) -> BTreeMap<&'static str, Value> {
                BTreeMap::from([ $( (stringify!($name), <$ty as ParamType>::to_value(&self.$name)), )+ ])
            }
        }
    };
}

node_params! {
    /// Model bundle folder (model.yaml, encoders, tokenizer). Empty: the default model ($CLIP_PERCEPTION_MODEL, else the installed share/clip_perception/models/tabletop, else the source tree's).
    model_dir: String = String::new(), read_only = true;
    /// Task phrases: a list, or one string with phrases separated by `;` or newlines.
    labels: Vec<String> = ["red cup", "blue ball", "green box", "yellow banana", "white phone"].map(String::from).to_vec();
    /// Prompt template, `{}` marks where the phrase goes.
    template: String = crate::text::prompts::DEFAULT_TEMPLATE.to_string();
    /// Prompt ensemble instead of the template: `imagenet`, `cifar10`, a file with one template per line, or empty for none.
    ensemble: String = String::new();
    /// Cosine similarity at or above which a phrase counts as matched, in [0, 1].
    threshold: f64 = 0.25, range(0.0, 1.0);
    /// Per-phrase thresholds overriding `threshold`, each `phrase=value`.
    label_thresholds: Vec<String> = Vec::new();
    /// Results per Classification message, best first (0 = every phrase).
    top_k: i64 = 0, range(0, MAX_PHRASES);
    /// Image transport, as image_transport's nodes take it: `raw` subscribes to `image` (sensor_msgs/Image), `compressed` to the resolved `image` topic + `/compressed` (sensor_msgs/CompressedImage). Also accepted under its old name `input`.
    image_transport: String = "raw".to_string(), read_only = true;
    /// Camera names (each a ROS name token, no `/`). Empty: one camera on `image`, results on `~/classification` and `~/matches`. Otherwise camera C subscribes to `C/image` (remap it: `-r C/image:=/front/color/image_raw`) and publishes `~/C/classification` and `~/C/matches`, with its own diagnostics status; phrases and parameters are shared and frames of several cameras are encoded in one batch.
    cameras: Vec<String> = Vec::new(), read_only = true;
    /// Most frames encoded in one batch, at most one per camera (0 = the number of cameras). When more cameras have a frame waiting than fit, cameras take turns.
    max_batch: i64 = 0, range(0, 64);
    /// Locate every matched phrase in the frame and publish `~/detections` (vision_msgs/Detection2DArray, one detection per matched phrase: box centre and size in pixels, class_id = phrase, score in the Classification unit). Costs about 8 more encoder passes per frame plus a segmentation (see diagnostics `localization median (ms)`).
    localize: bool = false;
    /// With `localize`: also publish `~/heatmap` (sensor_msgs/Image, 32FC1): every phrase's relevance map side by side in one row, in LabelInfo's class order.
    publish_heatmap: bool = false;
    /// Most frames encoded per second (0 = as fast as the encoder goes); frames in between are dropped.
    max_rate: f64 = 0.0, range(0.0, 10_000.0);
    /// Temporal smoothing of scores, in [0, 1) (1 itself is refused): weight of the previous smoothed value (0 = off).
    smoothing: f64 = 0.0, range(0.0, 1.0);
    /// Hysteresis of the matched flag: a matched phrase stays matched until its cosine falls below threshold - hysteresis.
    hysteresis: f64 = 0.0, range(0.0, 1.0);
    /// Keep text embeddings on disk so repeated phrases cost no text-encoder call.
    use_cache: bool = true, read_only = true;
    /// Text embedding cache folder. Empty: $XDG_CACHE_HOME/clip_perception (else ~/.cache/clip_perception).
    cache_dir: String = String::new(), read_only = true;
    /// Threads for the image encoder's matrix products (the text encoder uses one).
    threads: i64 = 2, range(1, 256), read_only = true;
    /// Image encoder graph: `int8`, `fp32`, or `auto` (int8 where the bundle has one, else fp32).
    precision: String = "auto".to_string(), read_only = true;
    /// Keep the text encoder loaded between queries (faster new phrases, more memory); otherwise it is freed after each use.
    keep_text_encoder: bool = false, read_only = true;
    /// Which frames are encoded: `newest` (a robot: the newest frame wins, a frame waiting for the encoder is replaced by a newer one and counted as dropped) or `every` (a recording played with `ros2 bag play`: frames wait in order, up to `queue_size`; only frames arriving at a full queue are dropped).
    frame_policy: String = "newest".to_string();
    /// Most frames waiting for the encoder with `frame_policy: every`.
    queue_size: i64 = 100, range(1, 10_000);
    /// With `frame_policy: newest`: when the encoder frees up and the waiting frame is already older than half the camera's frame period, wait for the next frame (at most one period) and encode that instead: fresher results for a little throughput. With several cameras only when one camera's frame is waiting (a batch of several never waits for one camera).
    wait_for_fresh_frame: bool = true;
    /// Follow the /clock topic (rosgraph_msgs/Clock, as `ros2 bag play --clock` publishes it) for the times the node stamps itself (LabelInfo, diagnostics, parameter events) and for `max_rate`; results keep their image's stamp.
    use_sim_time: bool = false, read_only = true;
    /// Seconds between /diagnostics messages. The status turns WARN when no frame arrived for 3 periods.
    diagnostics_period: f64 = 1.0, range(0.01, 3600.0);
    /// Least processed frames per second while frames arrive; under it /diagnostics turns WARN (0 = no check).
    min_rate: f64 = 0.0, range(0.0, 10_000.0);
}

/// The parameters checked and turned into what the node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub model_dir: PathBuf,
    pub phrases: Vec<String>,
    pub prompts: Prompts,
    /// Thresholds, smoothing, hysteresis and top-k of the per-frame step.
    pub policy: MatchPolicy,
    pub input: InputKind,
    /// The cameras' names, checked (empty: the single-camera interface).
    pub cameras: Vec<String>,
    /// Most frames per encoder batch (>= 1).
    pub max_batch: usize,
    /// Least time between two encoded frames of a camera.
    pub min_frame_interval: Option<std::time::Duration>,
    pub cache_dir: Option<PathBuf>,
    pub threads: usize,
    /// `None`: the bundle's default (int8 where it has one).
    pub precision: Option<Precision>,
    pub keep_text_encoder: bool,
    pub wait_for_fresh_frame: bool,
    /// Locate matched phrases (`~/detections`), and publish the maps (`~/heatmap`).
    pub localize: bool,
    pub publish_heatmap: bool,
    pub frame_policy: FramePolicy,
    pub diagnostics_period: std::time::Duration,
    /// Processed frames/s under which diagnostics warn (0: no check).
    pub min_rate: f64,
}

/// Why a phrase list is not acceptable for the node (the `labels` parameter or a query):
/// the engine's check and at most [`MAX_PHRASES`] phrases.
pub fn check_node_phrases(phrases: &[String]) -> Result<(), PhraseError> {
    check_phrases(phrases, Some(MAX_PHRASES))
}

/// Splits every list entry into phrases (`;` or newlines), trimmed and de-duplicated.
pub fn phrases_of(entries: &[String]) -> Vec<String> {
    parse_phrases(&entries.join("\n"))
}

/// Checks a number against its parameter's declared range (`hi_inclusive: false` for a
/// range whose upper end is itself refused, which a ROS range cannot express).
fn in_range(name: &str, value: f64, hi_inclusive: bool) -> Result<(), ParamError> {
    let (lo, hi) = spec(name)
        .and_then(|s| s.range)
        .expect("a number parameter declares its range");
    let ok = value.is_finite()
        && value >= lo
        && if hi_inclusive {
            value <= hi
        } else {
            value < hi
        };
    if ok {
        Ok(())
    } else {
        let close = if hi_inclusive { "]" } else { ")" };
        Err(ParamError::new(
            name,
            format!("{value} is out of range [{lo}, {hi}{close}"),
        ))
    }
}

impl NodeParams {
    /// `frame_policy` and `queue_size`, checked.
    pub fn frame_policy(&self) -> Result<FramePolicy, ParamError> {
        in_range("queue_size", self.queue_size as f64, true)?;
        match self.frame_policy.as_str() {
            "newest" => Ok(FramePolicy::Newest),
            "every" => Ok(FramePolicy::Every {
                queue_size: self.queue_size as usize,
            }),
            other => Err(ParamError::new(
                "frame_policy",
                format!("{other:?} is neither \"newest\" nor \"every\""),
            )),
        }
    }

    /// `cameras`, checked: valid name tokens, no name twice.
    pub fn checked_cameras(&self) -> Result<Vec<String>, ParamError> {
        let mut seen = std::collections::HashSet::new();
        for name in &self.cameras {
            super::names::check_camera_name(name)
                .map_err(|e| ParamError::new("cameras", e.to_string()))?;
            if !seen.insert(name.as_str()) {
                return Err(ParamError::new(
                    "cameras",
                    format!("camera {name:?} is named twice"),
                ));
            }
        }
        Ok(self.cameras.clone())
    }

    /// Checks every parameter (cheap checks only: no model is loaded) and returns the
    /// configuration the node runs with. The first bad parameter is reported by name.
    pub fn validate(&self) -> Result<NodeConfig, ParamError> {
        let explicit = (!self.model_dir.is_empty()).then(|| PathBuf::from(&self.model_dir));
        let model_dir = resolve_model_dir(explicit.as_deref())
            .map_err(|e| ParamError::new("model_dir", e.to_string()))?;
        if !model_dir.join("model.yaml").is_file() {
            let what = if model_dir.is_dir() {
                "is not a model bundle (it has no model.yaml)"
            } else {
                "does not exist"
            };
            return Err(ParamError::new(
                "model_dir",
                format!(
                    "{} {what} (expected a folder made by models/export.py)",
                    model_dir.display()
                ),
            ));
        }
        let phrases = phrases_of(&self.labels);
        check_node_phrases(&phrases).map_err(|e| ParamError::new("labels", e.to_string()))?;
        let ensemble = (!self.ensemble.is_empty()).then_some(self.ensemble.as_str());
        let prompts = Prompts::choose(Some(&self.template), ensemble).map_err(|e| {
            let param = if ensemble.is_some() {
                "ensemble"
            } else {
                "template"
            };
            ParamError::new(param, e.to_string())
        })?;
        in_range("threshold", self.threshold, true)?;
        let mut label_thresholds = HashMap::new();
        for entry in &self.label_thresholds {
            let (phrase, value) = entry.rsplit_once('=').ok_or_else(|| {
                ParamError::new(
                    "label_thresholds",
                    format!("{entry:?} is not `phrase=value`"),
                )
            })?;
            let value: f64 = value.trim().parse().map_err(|_| {
                ParamError::new(
                    "label_thresholds",
                    format!("{entry:?}: {value:?} is not a number"),
                )
            })?;
            in_range("threshold", value, true).map_err(|e| {
                ParamError::new("label_thresholds", format!("{entry:?}: {}", e.message))
            })?;
            label_thresholds.insert(phrase.trim().to_string(), value as f32);
        }
        in_range("top_k", self.top_k as f64, true)?;
        let input = match self.image_transport.as_str() {
            "raw" => InputKind::Raw,
            "compressed" => InputKind::Compressed,
            other => {
                return Err(ParamError::new(
                    "image_transport",
                    format!("{other:?} is neither \"raw\" nor \"compressed\""),
                ))
            }
        };
        let cameras = self.checked_cameras()?;
        in_range("max_batch", self.max_batch as f64, true)?;
        let max_batch = match self.max_batch {
            0 => cameras.len().max(1),
            n => n as usize,
        };
        in_range("max_rate", self.max_rate, true)?;
        in_range("smoothing", self.smoothing, false)?;
        in_range("hysteresis", self.hysteresis, true)?;
        in_range("threads", self.threads as f64, true)?;
        let precision = match self.precision.as_str() {
            "auto" | "" => None,
            other => Some(
                other
                    .parse::<Precision>()
                    .map_err(|e| ParamError::new("precision", format!("{e}, or auto")))?,
            ),
        };
        in_range("diagnostics_period", self.diagnostics_period, true)?;
        in_range("min_rate", self.min_rate, true)?;
        let cache_dir = cache_root(
            self.use_cache,
            (!self.cache_dir.is_empty()).then(|| std::path::Path::new(&self.cache_dir)),
        );
        Ok(NodeConfig {
            model_dir,
            phrases,
            prompts,
            policy: MatchPolicy {
                thresholds: Thresholds {
                    default: self.threshold as f32,
                    per_label: label_thresholds,
                },
                smoothing: self.smoothing as f32,
                hysteresis: self.hysteresis as f32,
                top_k: (self.top_k > 0).then_some(self.top_k as usize),
            },
            input,
            cameras,
            max_batch,
            min_frame_interval: (self.max_rate > 0.0)
                .then(|| std::time::Duration::from_secs_f64(1.0 / self.max_rate)),
            cache_dir,
            threads: self.threads as usize,
            precision,
            keep_text_encoder: self.keep_text_encoder,
            wait_for_fresh_frame: self.wait_for_fresh_frame,
            localize: self.localize,
            publish_heatmap: self.publish_heatmap,
            frame_policy: self.frame_policy()?,
            diagnostics_period: std::time::Duration::from_secs_f64(self.diagnostics_period),
            min_rate: self.min_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tiny() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-clip").to_string()
    }

    fn with(name: &str, value: Value) -> NodeParams {
        let mut p = NodeParams {
            model_dir: tiny(),
            ..NodeParams::default()
        };
        assert!(p.set(name, &value).unwrap(), "{name} is a parameter");
        p
    }

    fn rejected(name: &str, value: Value) -> String {
        let err = with(name, value).validate().unwrap_err();
        assert_eq!(err.name, name, "{err}");
        err.to_string()
    }

    #[test]
    fn the_table_matches_the_struct() {
        let values = NodeParams::default().values();
        assert_eq!(values.len(), PARAMS.len());
        for spec in PARAMS {
            assert_eq!(values[spec.name], (spec.default)(), "{}", spec.name);
            assert!(!spec.description.trim().is_empty(), "{}", spec.name);
        }
    }

    #[test]
    fn defaults_with_a_model_are_valid() {
        let config = with(
            "labels",
            json!(["red cup; blue ball", "green box", "red cup"]),
        )
        .validate()
        .unwrap();
        assert_eq!(config.phrases, vec!["red cup", "blue ball", "green box"]);
        assert_eq!(config.input, InputKind::Raw);
        assert_eq!(config.policy.top_k, None);
        assert_eq!(config.threads, 2);
    }

    #[test]
    fn typed_values() {
        let mut p = NodeParams::default();
        assert!(!p.set("no_such", &json!(1)).unwrap());
        assert_eq!(
            p.set("threshold", &json!("high")).unwrap_err().name,
            "threshold"
        );
        p.set("threshold", &json!(1)).unwrap();
        assert_eq!(p.threshold, 1.0);
        p.set("labels", &json!("a; b")).unwrap();
        assert_eq!(phrases_of(&p.labels), vec!["a", "b"]);
        assert!(p.set("top_k", &json!(1.5)).is_err());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert!(rejected("model_dir", json!("/no/such/model")).contains("does not exist"));
        assert!(rejected("labels", json!(" ; ")).contains("phrase list is empty"));
        let many: Vec<String> = (0..65).map(|i| format!("thing {i}")).collect();
        assert!(rejected("labels", json!(many)).contains("65 phrases"));
        assert!(rejected("labels", json!("x".repeat(257))).contains("257 characters"));
        assert!(rejected("threshold", json!(1.5)).contains("out of range"));
        assert!(rejected("threshold", json!(-0.1)).contains("out of range"));
        rejected("template", json!("a photo"));
        rejected("ensemble", json!("no-such-ensemble"));
        rejected("label_thresholds", json!(["red cup"]));
        rejected("label_thresholds", json!(["red cup=2"]));
        rejected("top_k", json!(-1));
        rejected("image_transport", json!("jpeg"));
        rejected("max_rate", json!(-1.0));
        rejected("smoothing", json!(1.0));
        rejected("threads", json!(0));
        rejected("diagnostics_period", json!(0.0));
        rejected("frame_policy", json!("oldest"));
        rejected("queue_size", json!(0));
        assert!(rejected("cameras", json!(["front camera"])).contains("' '"));
        assert!(rejected("cameras", json!(["front", "front"])).contains("named twice"));
        assert!(rejected("cameras", json!(["arm/wrist"])).contains("'/'"));
        assert!(rejected("cameras", json!(["2nd"])).contains("starts with a digit"));
        rejected("max_batch", json!(-1));
        assert!(rejected("precision", json!("int4")).contains("fp32 or int8"));
    }

    #[test]
    fn cameras_and_their_batch() {
        let config = NodeParams {
            model_dir: tiny(),
            ..NodeParams::default()
        }
        .validate()
        .unwrap();
        assert!(config.cameras.is_empty());
        assert_eq!(config.max_batch, 1);
        let config = with("cameras", json!(["head", "wrist", "third_person"]))
            .validate()
            .unwrap();
        assert_eq!(config.cameras, ["head", "wrist", "third_person"]);
        assert_eq!(config.max_batch, 3, "default: one frame of every camera");
        let mut p = with("cameras", json!(["head", "wrist"]));
        p.set("max_batch", &json!(1)).unwrap();
        assert_eq!(p.validate().unwrap().max_batch, 1);
    }

    #[test]
    fn precision_values() {
        assert_eq!(NodeParams::default().precision, "auto");
        let config = |v: &str| with("precision", json!(v)).validate().unwrap().precision;
        assert_eq!(config("auto"), None);
        assert_eq!(config("int8"), Some(Precision::Int8));
        assert_eq!(config("fp32"), Some(Precision::Fp32));
    }
}
