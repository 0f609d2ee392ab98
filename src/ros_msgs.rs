//! The ROS 2 messages the node speaks and bag replay reads, as serde structs whose fields
//! follow the `.msg` definitions in order, so their CDR encoding is the one ROS 2 nodes send
//! and expect (ROS 2 Humble/Jazzy: sensor_msgs, std_msgs, vision_msgs 4.x,
//! diagnostic_msgs). One definition for the wire (`crate::dds`) and for recordings
//! ([`decode_cdr`], `crate::bag`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A serialized message that is not the CDR of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdrError {
    #[error("{0} bytes cannot hold a CDR encapsulation header")]
    TooShort(usize),
    #[error("unsupported CDR encapsulation {0:02x} {1:02x} (expected plain CDR, 00 00 or 00 01)")]
    Encapsulation(u8, u8),
    #[error("not a valid CDR message of this type: {0}")]
    Body(String),
}

/// Decodes a serialized ROS 2 message (4-byte encapsulation header, then plain CDR, little
/// or big endian), as rosbag2 stores it and DDS carries it.
pub fn decode_cdr<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CdrError> {
    if payload.len() < 4 {
        return Err(CdrError::TooShort(payload.len()));
    }
    let body = &payload[4..];
    let decoded = match (payload[0], payload[1]) {
        (0x00, 0x01) => {
            cdr_encoding::from_bytes::<T, byteorder::LittleEndian>(body).map(|(value, _)| value)
        }
        (0x00, 0x00) => {
            cdr_encoding::from_bytes::<T, byteorder::BigEndian>(body).map(|(value, _)| value)
        }
        (a, b) => return Err(CdrError::Encapsulation(a, b)),
    };
    decoded.map_err(|e| CdrError::Body(e.to_string()))
}

/// Serializes a message as ROS 2 stores and sends it: the CDR little-endian encapsulation
/// header (`00 01 00 00`), then the plain CDR body.
pub fn encode_cdr<T: Serialize>(message: &T) -> Vec<u8> {
    let body = cdr_encoding::to_vec::<T, byteorder::LittleEndian>(message)
        .expect("the ROS message structs serialize to CDR");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
    out.extend_from_slice(&body);
    out
}

/// `builtin_interfaces/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

/// `std_msgs/Header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `sensor_msgs/Image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `sensor_msgs/CompressedImage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedImage {
    pub header: Header,
    pub format: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `rosgraph_msgs/Clock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub clock: Time,
}

/// `std_msgs/String`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}

/// `vision_msgs/ObjectHypothesis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesis {
    pub class_id: String,
    pub score: f64,
}

/// `vision_msgs/Classification`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub header: Header,
    pub results: Vec<ObjectHypothesis>,
}

/// `vision_msgs/Point2D`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point2D {
    pub x: f64,
    pub y: f64,
}

/// `vision_msgs/Pose2D`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose2D {
    pub position: Point2D,
    pub theta: f64,
}

/// `vision_msgs/BoundingBox2D`: centre and size in pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox2D {
    pub center: Pose2D,
    pub size_x: f64,
    pub size_y: f64,
}

/// `geometry_msgs/Point`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// `geometry_msgs/Quaternion` (default: the identity, `w = 1`, as the message defines).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Default for Quaternion {
    fn default() -> Self {
        Quaternion {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}

/// `geometry_msgs/Pose`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    pub position: Point,
    pub orientation: Quaternion,
}

/// A `float64[36]` (a fixed-size array: no length on the wire).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariance(pub [f64; 36]);

impl Default for Covariance {
    fn default() -> Self {
        Covariance([0.0; 36])
    }
}

impl Serialize for Covariance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(36)?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Covariance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Values;
        impl<'de> serde::de::Visitor<'de> for Values {
            type Value = Covariance;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("36 float64 values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Covariance, A::Error> {
                let mut out = [0.0; 36];
                for (i, v) in out.iter_mut().enumerate() {
                    *v = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Covariance(out))
            }
        }
        deserializer.deserialize_tuple(36, Values)
    }
}

/// `geometry_msgs/PoseWithCovariance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PoseWithCovariance {
    pub pose: Pose,
    pub covariance: Covariance,
}

/// `vision_msgs/ObjectHypothesisWithPose`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesisWithPose {
    pub hypothesis: ObjectHypothesis,
    pub pose: PoseWithCovariance,
}

/// `vision_msgs/Detection2D`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2D {
    pub header: Header,
    pub results: Vec<ObjectHypothesisWithPose>,
    pub bbox: BoundingBox2D,
    pub id: String,
}

/// `vision_msgs/Detection2DArray`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2DArray {
    pub header: Header,
    pub detections: Vec<Detection2D>,
}

/// `vision_msgs/VisionClass`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionClass {
    pub class_id: u16,
    pub class_name: String,
}

/// `vision_msgs/LabelInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelInfo {
    pub header: Header,
    pub class_map: Vec<VisionClass>,
    pub threshold: f32,
}

/// `diagnostic_msgs/KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `diagnostic_msgs/DiagnosticStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}

/// `diagnostic_msgs/DiagnosticArray`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}

/// `rcl_interfaces`: the messages and services of ROS 2's parameter interface, field by
/// field as in rcl_interfaces (Humble/Jazzy).
pub mod rcl {
    use serde::{Deserialize, Serialize};

    /// `ParameterType` constants.
    pub mod param_type {
        pub const NOT_SET: u8 = 0;
        pub const BOOL: u8 = 1;
        pub const INTEGER: u8 = 2;
        pub const DOUBLE: u8 = 3;
        pub const STRING: u8 = 4;
        pub const BYTE_ARRAY: u8 = 5;
        pub const BOOL_ARRAY: u8 = 6;
        pub const INTEGER_ARRAY: u8 = 7;
        pub const DOUBLE_ARRAY: u8 = 8;
        pub const STRING_ARRAY: u8 = 9;
    }

    /// `rcl_interfaces/ParameterValue`: `type` says which field holds the value.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ParameterValue {
        pub r#type: u8,
        pub bool_value: bool,
        pub integer_value: i64,
        pub double_value: f64,
        pub string_value: String,
        #[serde(with = "serde_bytes")]
        pub byte_array_value: Vec<u8>,
        pub bool_array_value: Vec<bool>,
        pub integer_array_value: Vec<i64>,
        pub double_array_value: Vec<f64>,
        pub string_array_value: Vec<String>,
    }

    /// `rcl_interfaces/Parameter`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Parameter {
        pub name: String,
        pub value: ParameterValue,
    }

    /// `rcl_interfaces/FloatingPointRange`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
    pub struct FloatingPointRange {
        pub from_value: f64,
        pub to_value: f64,
        pub step: f64,
    }

    /// `rcl_interfaces/IntegerRange`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct IntegerRange {
        pub from_value: i64,
        pub to_value: i64,
        pub step: u64,
    }

    /// `rcl_interfaces/ParameterDescriptor` (the ranges are sequences of at most one).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ParameterDescriptor {
        pub name: String,
        pub r#type: u8,
        pub description: String,
        pub additional_constraints: String,
        pub read_only: bool,
        pub dynamic_typing: bool,
        pub floating_point_range: Vec<FloatingPointRange>,
        pub integer_range: Vec<IntegerRange>,
    }

    /// `rcl_interfaces/SetParametersResult`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SetParametersResult {
        pub successful: bool,
        pub reason: String,
    }

    /// `rcl_interfaces/ListParametersResult`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ListParametersResult {
        pub names: Vec<String>,
        pub prefixes: Vec<String>,
    }

    /// `rcl_interfaces/ParameterEvent`, published on `/parameter_events`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ParameterEvent {
        pub stamp: super::Time,
        pub node: String,
        pub new_parameters: Vec<Parameter>,
        pub changed_parameters: Vec<Parameter>,
        pub deleted_parameters: Vec<Parameter>,
    }

    /// `rcl_interfaces/Log`, published on `/rosout`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Log {
        pub stamp: super::Time,
        /// 10 debug, 20 info, 30 warn, 40 error, 50 fatal.
        pub level: u8,
        /// The logger: the node's full name without the leading `/`, `.` for `/`, as rcl
        /// names a node's logger.
        pub name: String,
        pub msg: String,
        pub file: String,
        pub function: String,
        pub line: u32,
    }

    /// `rcl_interfaces/srv/ListParameters` request.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ListParametersRequest {
        pub prefixes: Vec<String>,
        pub depth: u64,
    }

    /// `rcl_interfaces/srv/ListParameters` response.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ListParametersResponse {
        pub result: ListParametersResult,
    }

    /// The request of GetParameters, GetParameterTypes and DescribeParameters.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NamesRequest {
        pub names: Vec<String>,
    }

    /// `rcl_interfaces/srv/GetParameters` response.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct GetParametersResponse {
        pub values: Vec<ParameterValue>,
    }

    /// `rcl_interfaces/srv/GetParameterTypes` response.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct GetParameterTypesResponse {
        #[serde(with = "serde_bytes")]
        pub types: Vec<u8>,
    }

    /// `rcl_interfaces/srv/DescribeParameters` response.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct DescribeParametersResponse {
        pub descriptors: Vec<ParameterDescriptor>,
    }

    /// The request of SetParameters and SetParametersAtomically.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ParametersRequest {
        pub parameters: Vec<Parameter>,
    }

    /// `rcl_interfaces/srv/SetParameters` response.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SetParametersResponse {
        pub results: Vec<SetParametersResult>,
    }

    /// `rcl_interfaces/srv/SetParametersAtomically` response.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SetParametersAtomicallyResponse {
        pub result: SetParametersResult,
    }
}

/// ROS package and type name of each message, for topic creation.
pub mod type_names {
    pub const IMAGE: (&str, &str) = ("sensor_msgs", "Image");
    pub const COMPRESSED_IMAGE: (&str, &str) = ("sensor_msgs", "CompressedImage");
    pub const STRING: (&str, &str) = ("std_msgs", "String");
    pub const CLASSIFICATION: (&str, &str) = ("vision_msgs", "Classification");
    pub const DETECTION_2D_ARRAY: (&str, &str) = ("vision_msgs", "Detection2DArray");
    pub const LABEL_INFO: (&str, &str) = ("vision_msgs", "LabelInfo");
    pub const DIAGNOSTIC_ARRAY: (&str, &str) = ("diagnostic_msgs", "DiagnosticArray");
    pub const PARAMETER_EVENT: (&str, &str) = ("rcl_interfaces", "ParameterEvent");
    pub const CLOCK: (&str, &str) = ("rosgraph_msgs", "Clock");
    pub const LOG: (&str, &str) = ("rcl_interfaces", "Log");
}

/// The `.msg` definitions of the messages replay records, concatenated with their
/// dependencies as rosbag2 stores them in MCAP schemas (`ros2msg` encoding).
pub mod definitions {
    const SEPARATOR: &str =
        "================================================================================\n";
    const HEADER: &str = "builtin_interfaces/Time stamp\nstring frame_id\n";
    const TIME: &str = "int32 sec\nuint32 nanosec\n";

    /// `std_msgs/msg/String`.
    pub const STRING: &str = "string data\n";

    fn with_header(body: &str) -> String {
        format!(
            "std_msgs/Header header\n{body}\
             {SEPARATOR}MSG: std_msgs/Header\n{HEADER}\
             {SEPARATOR}MSG: builtin_interfaces/Time\n{TIME}"
        )
    }

    /// `sensor_msgs/msg/Image` with its dependencies.
    pub fn image() -> String {
        with_header(
            "uint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
        )
    }

    /// `sensor_msgs/msg/CompressedImage` with its dependencies.
    pub fn compressed_image() -> String {
        with_header("string format\nuint8[] data\n")
    }

    /// `vision_msgs/msg/Detection2DArray` with its dependencies.
    pub fn detection_2d_array() -> String {
        let dependency = |name: &str, body: &str| format!("{SEPARATOR}MSG: {name}\n{body}");
        with_header("Detection2D[] detections\n")
            + &dependency(
                "vision_msgs/Detection2D",
                "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
            )
            + &dependency(
                "vision_msgs/ObjectHypothesisWithPose",
                "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
            )
            + &dependency(
                "vision_msgs/ObjectHypothesis",
                "string class_id\nfloat64 score\n",
            )
            + &dependency(
                "geometry_msgs/PoseWithCovariance",
                "Pose pose\nfloat64[36] covariance\n",
            )
            + &dependency("geometry_msgs/Pose", "Point position\nQuaternion orientation\n")
            + &dependency("geometry_msgs/Point", "float64 x\nfloat64 y\nfloat64 z\n")
            + &dependency(
                "geometry_msgs/Quaternion",
                "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
            )
            + &dependency(
                "vision_msgs/BoundingBox2D",
                "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
            )
            + &dependency(
                "vision_msgs/Pose2D",
                "vision_msgs/Point2D position\nfloat64 theta\n",
            )
            + &dependency("vision_msgs/Point2D", "float64 x\nfloat64 y\n")
    }

    /// `vision_msgs/msg/Classification` with `std_msgs/Header`, `builtin_interfaces/Time`
    /// and `vision_msgs/ObjectHypothesis`.
    pub fn classification() -> String {
        with_header("ObjectHypothesis[] results\n")
            + &format!(
                "{SEPARATOR}MSG: vision_msgs/ObjectHypothesis\nstring class_id\nfloat64 score\n"
            )
    }
}
