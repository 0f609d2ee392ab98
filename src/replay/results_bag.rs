//! `replay --out-bag results.mcap`: the results as the node would have published them, in an
//! MCAP file rosbag2 and Foxglove read (profile `ros2`, `ros2msg` schemas, CDR messages):
//! `vision_msgs/msg/Classification` on the node's `~/classification` topic and the
//! `~/matches` JSON as `std_msgs/msg/String` (per camera `~/C/classification` and
//! `~/C/matches` when several topics are replayed), and when frames are localised the
//! matched phrases' `vision_msgs/msg/Detection2DArray` on `~/detections` (`~/C/detections`),
//! each message logged at its frame's log time so camera bag and results play side by side.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::ReplayLine;
use crate::node::messages::{Classification, Detections, Header};
use crate::ros_msgs::{self, definitions, encode_cdr, StringMsg};

/// A results file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write the results bag: {cause}")]
pub struct ResultsBagError {
    pub path: String,
    pub cause: String,
}

/// An MCAP writer as rosbag2 writes its files (profile `ros2`).
pub fn ros2_writer(file: File) -> mcap::McapResult<mcap::Writer<BufWriter<File>>> {
    mcap::WriteOptions::new()
        .profile("ros2")
        .create(BufWriter::new(file))
}

/// Adds a channel of ROS 2 messages of `type_name` (e.g. `std_msgs/msg/String`), its schema
/// the `.msg` `definition` with its dependencies (`ros2msg`), messages in CDR.
pub fn add_ros2_channel<W: std::io::Write + std::io::Seek>(
    writer: &mut mcap::Writer<W>,
    type_name: &str,
    definition: &str,
    topic: &str,
) -> mcap::McapResult<u16> {
    let schema = writer.add_schema(type_name, "ros2msg", definition.as_bytes())?;
    writer.add_channel(schema, topic, "cdr", &BTreeMap::new())
}

/// Where one replayed topic's results go: the (resolved) names of its camera's two topics.
#[derive(Debug, Clone)]
pub struct ResultTopics {
    /// The replayed image topic.
    pub source: String,
    pub classification: String,
    pub matches: String,
    /// The camera's `~/detections`, when frames are localised.
    pub detections: Option<String>,
}

/// A replayed topic's channels.
struct Channels {
    source: String,
    classification: u16,
    matches: u16,
    detections: Option<u16>,
}

/// Writes replay results into an MCAP file.
pub struct ResultsBag {
    path: PathBuf,
    writer: mcap::Writer<BufWriter<File>>,
    channels: Vec<Channels>,
    sequence: u32,
}

impl ResultsBag {
    /// Creates `path` with two channels per replayed topic, in the order given.
    pub fn create(path: &Path, topics: &[ResultTopics]) -> Result<Self, ResultsBagError> {
        let fail = |cause: String| ResultsBagError {
            path: path.display().to_string(),
            cause,
        };
        let file = File::create(path).map_err(|e| fail(e.to_string()))?;
        let mut writer = ros2_writer(file).map_err(|e| fail(e.to_string()))?;
        let mut channels = Vec::with_capacity(topics.len());
        for t in topics {
            // A schema is written once, however many channels use it.
            let classification = add_ros2_channel(
                &mut writer,
                "vision_msgs/msg/Classification",
                &definitions::classification(),
                &t.classification,
            )
            .map_err(|e| fail(e.to_string()))?;
            let matches = add_ros2_channel(
                &mut writer,
                "std_msgs/msg/String",
                definitions::STRING,
                &t.matches,
            )
            .map_err(|e| fail(e.to_string()))?;
            let detections = match &t.detections {
                Some(topic) => Some(
                    add_ros2_channel(
                        &mut writer,
                        "vision_msgs/msg/Detection2DArray",
                        &definitions::detection_2d_array(),
                        topic,
                    )
                    .map_err(|e| fail(e.to_string()))?,
                ),
                None => None,
            };
            channels.push(Channels {
                source: t.source.clone(),
                classification,
                matches,
                detections,
            });
        }
        Ok(ResultsBag {
            path: path.to_path_buf(),
            writer,
            channels,
            sequence: 0,
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> ResultsBagError {
        ResultsBagError {
            path: self.path.display().to_string(),
            cause: e.to_string(),
        }
    }

    /// Records a scored frame's two messages on its topic's channels (skipped frames have
    /// none, as on the wire).
    pub fn write(&mut self, line: &ReplayLine) -> Result<(), ResultsBagError> {
        let ReplayLine::Scored {
            result,
            bag_time_ns,
            topic,
            locations,
        } = line
        else {
            return Ok(());
        };
        let Some(channels) = self.channels.iter().find(|c| c.source == *topic) else {
            return Err(self.fail(format!("no channels for the results of topic {topic}")));
        };
        let (classification_channel, matches_channel) = (channels.classification, channels.matches);
        let detections_channel = channels.detections;
        let header = Header {
            stamp: result.stamp,
            frame_id: result.frame_id.clone(),
        };
        let classification: ros_msgs::Classification =
            Classification::of(header.clone(), &result.matches).into();
        let matches = StringMsg {
            data: result.to_json(),
        };
        let mut messages = vec![
            (classification_channel, encode_cdr(&classification)),
            (matches_channel, encode_cdr(&matches)),
        ];
        // As the node: a Detection2DArray of the matched phrases' locations.
        if let (Some(channel), Some(located)) = (detections_channel, locations) {
            let detections: ros_msgs::Detection2DArray =
                Detections::of(header, &result.matches, located).into();
            messages.push((channel, encode_cdr(&detections)));
        }
        for (channel, data) in messages {
            self.sequence += 1;
            let header = mcap::records::MessageHeader {
                channel_id: channel,
                sequence: self.sequence,
                log_time: *bag_time_ns,
                publish_time: *bag_time_ns,
            };
            self.writer
                .write_to_known_channel(&header, &data)
                .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Writes the summary section and index; the file is complete afterwards.
    pub fn finish(mut self) -> Result<(), ResultsBagError> {
        self.writer.finish().map_err(|e| self.fail(e))?;
        Ok(())
    }
}
