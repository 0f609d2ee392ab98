//! Feeds the node core's [`crate::node::wire::WireHealth`] from the DDS participant's status events: which
//! remote writers matched the image subscription and which went away, and remote endpoints
//! whose QoS is incompatible with one of the node's (DDS never connects those, so without
//! this a misconfigured camera looks exactly like no camera).

use std::collections::HashMap;

use ros2_client::dds::rustdds::{
    DomainParticipantStatusEvent as Event, DomainParticipantStatusListener, QosPolicies,
    StatusEvented, GUID,
};

use crate::node::wire::{Incompatible, Side};
use crate::node::NodeCore;

/// A remote endpoint's id in [`WireHealth`]: its participant, then its entity.
fn id(guid: &GUID) -> String {
    format!("{:?}/{:?}", guid.prefix, guid.entity_id)
}

/// The (first) QoS policy in which `offered` fails `requested`, by name.
fn failing_policy(offered: &QosPolicies, requested: &QosPolicies) -> String {
    offered
        .compliance_failure_wrt(requested)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "unknown policy".into())
}

/// The participant's status events, and the node's own endpoints by GUID.
pub struct WireWatch {
    listener: DomainParticipantStatusListener,
    /// Local endpoint -> its topic's ROS name.
    topics: HashMap<GUID, String>,
    /// Each camera's image subscription -> the camera's index.
    image_readers: HashMap<GUID, usize>,
}

impl WireWatch {
    pub fn new(
        listener: DomainParticipantStatusListener,
        topics: HashMap<GUID, String>,
        image_readers: HashMap<GUID, usize>,
    ) -> Self {
        WireWatch {
            listener,
            topics,
            image_readers,
        }
    }

    /// The listener, to register with the receive loop's poll.
    pub fn listener(&mut self) -> &mut DomainParticipantStatusListener {
        &mut self.listener
    }

    /// Applies every waiting status event to the core's wire health.
    pub fn drain(&self, core: &NodeCore) {
        while let Some(event) = self.listener.try_recv_status() {
            self.apply(event, core);
        }
    }

    fn apply(&self, event: Event, core: &NodeCore) {
        let incompatible = |local: &GUID, remote: &GUID, side: Side, policy: String| {
            let Some(topic) = self.topics.get(local) else {
                return;
            };
            log::warn!(
                "a {} on {topic} is {} incompatible QoS ({policy}): {}",
                match side {
                    Side::Publisher => "publisher",
                    Side::Subscriber => "subscriber",
                },
                match side {
                    Side::Publisher => "offering",
                    Side::Subscriber => "requesting",
                },
                match side {
                    Side::Publisher => "no messages will be received from it",
                    Side::Subscriber => "no messages will be sent to it",
                }
            );
            let what = Incompatible {
                topic: topic.clone(),
                side,
                policy,
            };
            core.update_wire(|w| w.incompatible(id(remote), what));
        };
        match event {
            Event::RemoteWriterMatched {
                local_reader,
                remote_writer,
            } if self.image_readers.contains_key(&local_reader) => {
                let camera = self.image_readers[&local_reader];
                let topic = self.topics.get(&local_reader).cloned().unwrap_or_default();
                log::info!("an image publisher matched on {topic}: {remote_writer:?}");
                core.update_wire(|w| w.image_publisher_matched(camera, id(&remote_writer)));
            }
            Event::RemoteWriterQosIncompatible {
                local_reader,
                remote_writer,
                requested_qos,
                offered_qos,
            } => incompatible(
                &local_reader,
                &remote_writer,
                Side::Publisher,
                failing_policy(&offered_qos, &requested_qos),
            ),
            Event::RemoteReaderQosIncompatible {
                local_writer,
                remote_reader,
                requested_qos,
                offered_qos,
            } => incompatible(
                &local_writer,
                &remote_reader,
                Side::Subscriber,
                failing_policy(&offered_qos, &requested_qos),
            ),
            Event::WriterLost { guid, .. } | Event::ReaderLost { guid, .. } => {
                core.update_wire(|w| w.endpoint_lost(&id(&guid)));
            }
            Event::ParticipantLost { id: prefix, .. } => {
                let participant = format!("{prefix:?}/");
                core.update_wire(|w| w.participant_lost(&participant));
            }
            _ => {}
        }
    }
}
