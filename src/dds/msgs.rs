//! The ROS 2 messages the node speaks, as serde structs whose fields follow the `.msg`
//! definitions in order, so their CDR encoding is the one ROS 2 nodes send and expect
//! (ROS 2 Humble/Jazzy: sensor_msgs, std_msgs, vision_msgs 4.x, diagnostic_msgs).

use serde::{Deserialize, Serialize};

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

/// ROS package and type name of each message, for topic creation.
pub mod type_names {
    pub const IMAGE: (&str, &str) = ("sensor_msgs", "Image");
    pub const COMPRESSED_IMAGE: (&str, &str) = ("sensor_msgs", "CompressedImage");
    pub const STRING: (&str, &str) = ("std_msgs", "String");
    pub const CLASSIFICATION: (&str, &str) = ("vision_msgs", "Classification");
    pub const LABEL_INFO: (&str, &str) = ("vision_msgs", "LabelInfo");
    pub const DIAGNOSTIC_ARRAY: (&str, &str) = ("diagnostic_msgs", "DiagnosticArray");
}

impl From<crate::node::messages::Header> for Header {
    fn from(h: crate::node::messages::Header) -> Self {
        Header {
            stamp: Time {
                sec: h.stamp.sec,
                nanosec: h.stamp.nanosec,
            },
            frame_id: h.frame_id,
        }
    }
}

impl From<Header> for crate::node::messages::Header {
    fn from(h: Header) -> Self {
        crate::node::messages::Header {
            stamp: crate::node::messages::Stamp {
                sec: h.stamp.sec,
                nanosec: h.stamp.nanosec,
            },
            frame_id: h.frame_id,
        }
    }
}
