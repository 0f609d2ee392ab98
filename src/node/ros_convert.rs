//! The node's messages on the wire and back: conversions between the ROS message
//! definitions ([`crate::ros_msgs`], what DDS and recordings carry) and the node core's
//! transport-free types ([`super::messages`]). Here, above both, so that the message
//! definitions import nothing of the node; the DDS adapter, replay and the fuzz harness use
//! them.

use super::messages;
use crate::ros_msgs::{
    BoundingBox2D, Classification, CompressedImage, Detection2D, Detection2DArray, Header, Image,
    ObjectHypothesis, ObjectHypothesisWithPose, Point2D, Pose2D, Time,
};

impl From<messages::Detections> for Detection2DArray {
    /// Each detection carries the image's header; `id` is empty (no tracking).
    fn from(d: messages::Detections) -> Self {
        let header: Header = d.header.into();
        Detection2DArray {
            detections: d
                .detections
                .into_iter()
                .map(|det| Detection2D {
                    header: header.clone(),
                    results: vec![ObjectHypothesisWithPose {
                        hypothesis: ObjectHypothesis {
                            class_id: det.class_id,
                            score: det.score,
                        },
                        ..ObjectHypothesisWithPose::default()
                    }],
                    bbox: BoundingBox2D {
                        center: Pose2D {
                            position: Point2D {
                                x: det.center[0],
                                y: det.center[1],
                            },
                            theta: 0.0,
                        },
                        size_x: det.size[0],
                        size_y: det.size[1],
                    },
                    id: String::new(),
                })
                .collect(),
            header,
        }
    }
}

impl From<messages::Heatmap> for Image {
    /// `32FC1`, little-endian.
    fn from(h: messages::Heatmap) -> Self {
        Image {
            header: h.header.into(),
            height: h.height,
            width: h.width,
            encoding: "32FC1".into(),
            is_bigendian: 0,
            step: h.width * 4,
            data: h.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl From<messages::Classification> for Classification {
    fn from(c: messages::Classification) -> Self {
        Classification {
            header: c.header.into(),
            results: c
                .results
                .into_iter()
                .map(|h| ObjectHypothesis {
                    class_id: h.class_id,
                    score: h.score,
                })
                .collect(),
        }
    }
}

impl From<messages::Header> for Header {
    fn from(h: messages::Header) -> Self {
        Header {
            stamp: Time {
                sec: h.stamp.sec,
                nanosec: h.stamp.nanosec,
            },
            frame_id: h.frame_id,
        }
    }
}

impl Image {
    /// The header and pixels the node core takes, as the node receives them.
    pub fn into_parts(self) -> (messages::Header, messages::Pixels) {
        let pixels = messages::Pixels::Raw {
            width: self.width,
            height: self.height,
            step: self.step,
            encoding: self.encoding,
            is_bigendian: self.is_bigendian != 0,
            data: self.data,
        };
        (self.header.into(), pixels)
    }
}

impl CompressedImage {
    /// The header and pixels the node core takes, as the node receives them.
    pub fn into_parts(self) -> (messages::Header, messages::Pixels) {
        let pixels = messages::Pixels::Compressed {
            format: self.format,
            data: self.data,
        };
        (self.header.into(), pixels)
    }
}

impl From<Header> for messages::Header {
    fn from(h: Header) -> Self {
        messages::Header {
            stamp: messages::Stamp {
                sec: h.stamp.sec,
                nanosec: h.stamp.nanosec,
            },
            frame_id: h.frame_id,
        }
    }
}
