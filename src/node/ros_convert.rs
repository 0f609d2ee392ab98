//! The node's messages on the wire and back: conversions between the ROS message
//! definitions ([`crate::ros_msgs`], what DDS and recordings carry) and the node core's
//! transport-free types ([`super::messages`]). Here, above both, so that the message
//! definitions import nothing of the node; the DDS adapter, replay and the fuzz harness use
//! them.

use super::messages;
use crate::ros_msgs::{Classification, CompressedImage, Header, Image, ObjectHypothesis, Time};

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
