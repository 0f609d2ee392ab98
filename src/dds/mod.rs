//! The `dds` transport adapter: the node core on ROS 2's wire protocol with the pure-Rust
//! `ros2-client` (RustDDS), so the node runs with no ROS install and talks to ROS 2 nodes.
//! It only creates the participant, topics (names from [`crate::node::NodePlan`], QoS as
//! ROS 2 uses them), converts messages to and from the core's types, and runs the receive
//! loop; every decision about frames, phrases and results is the core's.

pub use crate::ros_msgs as msgs;

pub mod params;
pub mod rosout;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ros2_client::dds::rustdds::mio1::{Events, Interest, Poll, Token};
use ros2_client::dds::rustdds::policy::ResourceLimits;
use ros2_client::dds::rustdds::{
    DomainParticipant, DomainParticipantBuilder, QosPolicies, QosPolicyBuilder, TopicKind, GUID,
};
use ros2_client::qos::{Durability, History, WhenFull};
use ros2_client::{
    Context, MessageTypeName, Name, Node, NodeName, NodeOptions, Publisher, QosProfile,
    Subscription,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::messages::{self as core_msgs, Outputs};
use crate::node::{topics, ImageInput, InputKind, NodeCore, NodePlan};

/// A DDS entity could not be created.
#[derive(Debug, thiserror::Error)]
#[error("DDS: {context}: {message}")]
pub struct DdsError {
    pub context: String,
    pub message: String,
}

fn dds_error(context: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> DdsError {
    let context = context.into();
    move |e| DdsError {
        context,
        message: e.to_string(),
    }
}

/// Camera QoS (ROS 2's `SensorDataQoS`): best effort, volatile, keep last 5.
pub fn sensor_data_qos() -> QosProfile {
    QosProfile::subscription_default()
        .reliability_best_effort()
        .history(History::KeepLast {
            depth: IMAGE_SAMPLES as usize,
        })
}

/// The camera QoS's history depth, and the most images a camera's topic keeps.
const IMAGE_SAMPLES: i32 = 5;

/// ROS 2's default QoS: reliable, volatile, keep last 10.
///
/// A publish waits at most 20 ms for room: RustDDS paces a reliable writer by its slowest
/// reliable reader's acknowledgements, and a subscriber that stops acknowledging must not
/// hold the frame thread (the failed publishes are counted in diagnostics).
pub fn default_qos() -> QosProfile {
    QosProfile::publisher_default()
        .reliability_reliable(WhenFull::Wait(Duration::from_millis(20)))
        .durability(Durability::Volatile)
        .history(History::KeepLast { depth: 10 })
}

/// `/parameter_events` QoS as rclcpp's: reliable, volatile, keep last 1000.
pub fn parameter_events_qos() -> QosProfile {
    default_qos().history(History::KeepLast { depth: 1000 })
}

/// `/rosout` QoS as rcl's: reliable, transient local, keep last 1000.
pub fn rosout_qos() -> QosProfile {
    default_qos()
        .durability(Durability::TransientLocal)
        .history(History::KeepLast { depth: 1000 })
}

/// `/clock` as rclcpp subscribes to it: best effort, keep last 1 (matches reliable and
/// best-effort publishers alike).
pub fn clock_qos() -> QosProfile {
    sensor_data_qos().history(History::KeepLast { depth: 1 })
}

/// Latched QoS for LabelInfo: reliable, transient local, keep last 1, so a subscriber
/// that joins later still gets the current phrase set.
pub fn latched_qos() -> QosProfile {
    default_qos()
        .durability(Durability::TransientLocal)
        .history(History::KeepLast { depth: 1 })
}

struct Topics<'a> {
    node: &'a mut Node,
    node_name: NodeName,
    participant: DomainParticipant,
    plan: &'a NodePlan,
    /// Every endpoint made so far, with its topic's full name (for [`wire::WireWatch`]).
    endpoints: HashMap<GUID, String>,
}

impl Topics<'_> {
    fn topic(
        &self,
        name: &str,
        (pkg, ty): (&str, &str),
        qos: &QosProfile,
    ) -> Result<(ros2_client::dds::rustdds::Topic, String), DdsError> {
        let full = self.plan.topic(name).map_err(|e| dds_error(name)(&e))?;
        let ros_name = Name::parse(&full).map_err(|e| dds_error(format!("topic {full}"))(&e))?;
        log::info!("{name} -> {full} ({pkg}/msg/{ty})");
        let topic = self
            .node
            .create_topic(&ros_name, MessageTypeName::new(pkg, ty), qos)
            .map_err(|e| dds_error(format!("topic {full}"))(&e))?;
        Ok((topic, full))
    }

    fn publisher<M: Serialize>(
        &mut self,
        name: &str,
        ty: (&str, &str),
        qos: QosProfile,
    ) -> Result<Publisher<M>, DdsError> {
        let (topic, full) = self.topic(name, ty, &qos)?;
        let publisher = self
            .node
            .create_publisher(&topic, Some(qos))
            .map_err(|e| dds_error(format!("publisher {name}"))(&e))?;
        self.endpoints.insert(publisher.guid(), full);
        Ok(publisher)
    }

    /// A camera subscription whose DDS topic keeps at most the history depth of samples.
    /// RustDDS's topic cache otherwise keeps 64 samples of every topic whose QoS sets no
    /// resource limits (ROS 2 profiles never do): 60 MB per VGA camera at 30 Hz, measured.
    fn image_subscription<M: 'static>(
        &mut self,
        name: &str,
        (pkg, ty): (&str, &str),
        qos: QosProfile,
    ) -> Result<Subscription<M>, DdsError> {
        let ros_name = Name::parse(name).map_err(|e| dds_error(format!("topic {name}"))(&e))?;
        log::info!("{name} ({pkg}/msg/{ty}, at most {IMAGE_SAMPLES} samples kept)");
        let limits = QosPolicyBuilder::new()
            .resource_limits(ResourceLimits {
                max_samples: IMAGE_SAMPLES,
                max_instances: 1,
                max_samples_per_instance: IMAGE_SAMPLES,
            })
            .build();
        let dds_qos = QosPolicies::from(&qos).modify_by(&limits);
        let topic = self
            .participant
            .create_topic(
                ros_name.to_dds_name("rt", &self.node_name, ""),
                MessageTypeName::new(pkg, ty).dds_msg_type(),
                &dds_qos,
                TopicKind::NoKey,
            )
            .map_err(|e| dds_error(format!("topic {name}"))(&e))?;
        let subscription = self
            .node
            .create_subscription(&topic, Some(qos))
            .map_err(|e| dds_error(format!("subscription {name}"))(&e))?;
        self.endpoints.insert(subscription.guid(), name.to_string());
        Ok(subscription)
    }

    fn subscription<M: 'static>(
        &mut self,
        name: &str,
        ty: (&str, &str),
        qos: QosProfile,
    ) -> Result<Subscription<M>, DdsError> {
        let (topic, full) = self.topic(name, ty, &qos)?;
        let subscription = self
            .node
            .create_subscription(&topic, Some(qos))
            .map_err(|e| dds_error(format!("subscription {name}"))(&e))?;
        self.endpoints.insert(subscription.guid(), full);
        Ok(subscription)
    }
}

/// One camera's result publishers.
struct CameraPublishers {
    classification: Publisher<msgs::Classification>,
    matches: Publisher<msgs::StringMsg>,
    detections: Publisher<msgs::Detection2DArray>,
    heatmap: Publisher<msgs::Image>,
}

/// The core's outputs as ROS 2 publishers.
struct DdsOutputs {
    /// One per camera, in the core's camera order.
    cameras: Vec<CameraPublishers>,
    label_info: Publisher<msgs::LabelInfo>,
    diagnostics: Publisher<msgs::DiagnosticArray>,
    parameter_events: Publisher<msgs::rcl::ParameterEvent>,
    /// The node's full name, as parameter events carry it.
    node: String,
    failures: Mutex<PublishFailures>,
}

/// Failed publishes: how many, the last one's error, and when one was last logged.
#[derive(Default)]
struct PublishFailures {
    count: u64,
    last: String,
    logged_at: Option<Instant>,
}

impl DdsOutputs {
    fn publish<M: Serialize>(&self, what: &str, publisher: &Publisher<M>, message: M) {
        if let Err(e) = publisher.publish(message) {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures.count += 1;
            failures.last = format!("{what}: {e}");
            if failures
                .logged_at
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                failures.logged_at = Some(Instant::now());
                log::warn!("publishing {}", failures.last);
            }
        }
    }

    /// Failed publishes so far, and the last one's error.
    fn failures(&self) -> (u64, String) {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        (failures.count, failures.last.clone())
    }
}

impl Outputs for DdsOutputs {
    fn classification(&self, camera: usize, message: core_msgs::Classification) {
        let publisher = &self.cameras[camera].classification;
        self.publish("classification", publisher, message.into());
    }

    fn matches(&self, camera: usize, result: &core_msgs::FrameResult) {
        let data = result.to_json();
        let publisher = &self.cameras[camera].matches;
        self.publish("matches", publisher, msgs::StringMsg { data });
    }

    fn detections(&self, camera: usize, message: core_msgs::Detections) {
        let publisher = &self.cameras[camera].detections;
        self.publish("detections", publisher, message.into());
    }

    fn heatmap(&self, camera: usize, message: core_msgs::Heatmap) {
        let publisher = &self.cameras[camera].heatmap;
        self.publish("heatmap", publisher, message.into());
    }

    fn label_info(&self, message: core_msgs::LabelInfo) {
        let message = msgs::LabelInfo {
            header: message.header.into(),
            class_map: message
                .class_names
                .into_iter()
                .enumerate()
                .map(|(i, class_name)| msgs::VisionClass {
                    class_id: i as u16,
                    class_name,
                })
                .collect(),
            threshold: message.threshold,
        };
        self.publish("label_info", &self.label_info, message);
    }

    fn diagnostics(&self, header: core_msgs::Header, statuses: Vec<core_msgs::DiagnosticStatus>) {
        let message = msgs::DiagnosticArray {
            header: header.into(),
            status: statuses
                .into_iter()
                .map(|status| msgs::DiagnosticStatus {
                    level: status.level as u8,
                    name: status.name,
                    message: status.message,
                    hardware_id: status.hardware_id,
                    values: status
                        .values
                        .into_iter()
                        .map(|(key, value)| msgs::KeyValue { key, value })
                        .collect(),
                })
                .collect(),
        };
        self.publish("diagnostics", &self.diagnostics, message);
    }

    fn parameters_changed(
        &self,
        stamp: core_msgs::Stamp,
        changed: &[(&'static str, serde_json::Value)],
    ) {
        let stamp = msgs::Time {
            sec: stamp.sec,
            nanosec: stamp.nanosec,
        };
        let event = crate::node::param_services::event(&self.node, stamp, changed);
        self.publish("parameter event", &self.parameter_events, event);
    }
}

enum ImageSubscription {
    Raw(Subscription<msgs::Image>),
    Compressed(Subscription<msgs::CompressedImage>),
}

impl ImageSubscription {
    fn guid(&self) -> GUID {
        match self {
            ImageSubscription::Raw(s) => s.guid(),
            ImageSubscription::Compressed(s) => s.guid(),
        }
    }
}

const QUERIES: Token = Token(1);
const CLOCK: Token = Token(100);
/// The participant's status events ([`wire::WireWatch`]).
const STATUS: Token = Token(101);
/// The first of the parameter services' tokens.
const PARAM_SERVICES: usize = 2;
/// The first camera's image subscription token (camera i: `IMAGES + i`).
const IMAGES: usize = 1000;

/// Takes every waiting sample of `sub`, handing each to `handle`; a sample that does not
/// deserialize is logged, and counted as a rejected frame of `camera` when given.
fn drain<M: DeserializeOwned + 'static>(
    sub: &Subscription<M>,
    core: &NodeCore,
    (what, camera): (&str, Option<usize>),
    mut handle: impl FnMut(M),
) {
    loop {
        match sub.take() {
            Ok(Some((message, _info))) => handle(message),
            Ok(None) => break,
            Err(e) => {
                log::warn!("{what}: a message could not be read: {e}");
                if let Some(camera) = camera {
                    core.reject_message(camera, crate::image::RejectReason::Undeserializable);
                }
                break;
            }
        }
    }
}

/// The DDS domain: `ROS_DOMAIN_ID` as ROS 2 reads it (unset or empty: 0).
pub fn domain_id() -> Result<u16, DdsError> {
    match std::env::var("ROS_DOMAIN_ID") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|d| *d <= 232)
            .ok_or_else(|| DdsError {
                context: "ROS_DOMAIN_ID".into(),
                message: format!("{v:?} is not a domain id in [0, 232]"),
            }),
        _ => Ok(0),
    }
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Dds(#[from] DdsError),
    /// The model could not be loaded (the message names the parameter).
    #[error("{0}")]
    Start(String),
}

/// How far the node looks for peers, from ROS 2's environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Multicast and advertised locators on the loopback interface only.
    pub localhost_only: bool,
    /// What the transport cannot do as asked, one line each, for the log.
    pub warnings: Vec<String>,
}

/// Reads `ROS_AUTOMATIC_DISCOVERY_RANGE` (`SUBNET`, the default, `LOCALHOST`, `OFF`,
/// `SYSTEM_DEFAULT`), the older `ROS_LOCALHOST_ONLY=1` (used when the range is unset, as
/// Jazzy does) and `ROS_STATIC_PEERS`, given as `(name, value)` lookups.
pub fn discovery_from(env: impl Fn(&str) -> Option<String>) -> Discovery {
    let mut warnings = Vec::new();
    let range = env("ROS_AUTOMATIC_DISCOVERY_RANGE")
        .map(|v| v.trim().to_ascii_uppercase())
        .filter(|v| !v.is_empty());
    let localhost_only = match range.as_deref() {
        None => env("ROS_LOCALHOST_ONLY").is_some_and(|v| v.trim() == "1"),
        Some("LOCALHOST") => true,
        Some("SUBNET") | Some("SYSTEM_DEFAULT") => false,
        Some("OFF") => {
            warnings.push(
                "ROS_AUTOMATIC_DISCOVERY_RANGE=OFF: this DDS transport cannot turn automatic \
                 discovery off; it is limited to this host (LOCALHOST) instead"
                    .into(),
            );
            true
        }
        Some(other) => {
            warnings.push(format!(
                "ROS_AUTOMATIC_DISCOVERY_RANGE={other:?} is not LOCALHOST, SUBNET, OFF or \
                 SYSTEM_DEFAULT; using SUBNET"
            ));
            false
        }
    };
    if let Some(peers) = env("ROS_STATIC_PEERS").filter(|p| !p.trim().is_empty()) {
        warnings.push(format!(
            "ROS_STATIC_PEERS={peers:?} ignored: this DDS transport has no static peers; \
             peers are found by multicast discovery"
        ));
    }
    Discovery {
        localhost_only,
        warnings,
    }
}

/// Runs the node until `stop` is set: creates the participant, node, publishers,
/// subscriptions and parameter services, then starts the core, which loads the model
/// while messages are already taken (a query sent at start is not lost), and moves
/// received messages into it.
pub fn run(plan: &NodePlan, stop: Arc<AtomicBool>) -> Result<(), RunError> {
    let discovery = discovery_from(|name| std::env::var(name).ok());
    for warning in &discovery.warnings {
        log::warn!("{warning}");
    }
    let mut participant = DomainParticipantBuilder::new(domain_id()?);
    if discovery.localhost_only {
        log::info!("discovery limited to this host (loopback)");
        participant = participant.with_only_networks([std::net::Ipv4Addr::LOCALHOST]);
    }
    let participant = participant
        .build()
        .map_err(|e| dds_error("participant")(&e))?;
    let context =
        Context::from_domain_participant(participant).map_err(|e| dds_error("participant")(&e))?;
    let names = &plan.names;
    let node_name =
        NodeName::new(&names.namespace, &names.name).map_err(|e| dds_error("node name")(&e))?;
    let dds_node_name = node_name.clone();
    let mut node = context
        .new_node(
            node_name,
            NodeOptions::new()
                .enable_rosout(false)
                .start_parameter_services(false),
        )
        .map_err(|e| dds_error("node")(&e))?;
    let mut t = Topics {
        node_name: dds_node_name,
        participant: context.domain_participant(),
        node: &mut node,
        plan,
        endpoints: HashMap::new(),
    };
    rosout::attach(
        t.publisher(topics::ROSOUT, msgs::type_names::LOG, rosout_qos())?,
        &names.fully_qualified(),
    );
    let cameras = plan.cameras();
    let mut camera_publishers = Vec::with_capacity(cameras.len());
    for camera in &cameras {
        let name = camera.name.as_deref();
        camera_publishers.push(CameraPublishers {
            classification: t.publisher(
                &topics::of_camera(name, topics::CLASSIFICATION),
                msgs::type_names::CLASSIFICATION,
                default_qos(),
            )?,
            matches: t.publisher(
                &topics::of_camera(name, topics::MATCHES),
                msgs::type_names::STRING,
                default_qos(),
            )?,
            detections: t.publisher(
                &topics::of_camera(name, topics::DETECTIONS),
                msgs::type_names::DETECTION_2D_ARRAY,
                default_qos(),
            )?,
            heatmap: t.publisher(
                &topics::of_camera(name, topics::HEATMAP),
                msgs::type_names::IMAGE,
                default_qos(),
            )?,
        });
    }
    let outputs = Arc::new(DdsOutputs {
        cameras: camera_publishers,
        label_info: t.publisher(
            topics::LABEL_INFO,
            msgs::type_names::LABEL_INFO,
            latched_qos(),
        )?,
        diagnostics: t.publisher(
            topics::DIAGNOSTICS,
            msgs::type_names::DIAGNOSTIC_ARRAY,
            default_qos(),
        )?,
        parameter_events: t.publisher(
            topics::PARAMETER_EVENTS,
            msgs::type_names::PARAMETER_EVENT,
            parameter_events_qos(),
        )?,
        node: names.fully_qualified(),
        failures: Mutex::default(),
    });
    let mut images = Vec::with_capacity(cameras.len());
    let mut image_readers = HashMap::new();
    for (i, camera) in cameras.iter().enumerate() {
        let image_topic = plan
            .image_topic(camera.name.as_deref())
            .map_err(|e| dds_error(topics::IMAGE)(&e))?;
        let subscription = match plan.config.input {
            InputKind::Raw => ImageSubscription::Raw(t.image_subscription(
                &image_topic,
                msgs::type_names::IMAGE,
                sensor_data_qos(),
            )?),
            InputKind::Compressed => ImageSubscription::Compressed(t.image_subscription(
                &image_topic,
                msgs::type_names::COMPRESSED_IMAGE,
                sensor_data_qos(),
            )?),
        };
        image_readers.insert(subscription.guid(), i);
        images.push(subscription);
    }
    let mut queries: Subscription<msgs::StringMsg> =
        t.subscription(topics::QUERY, msgs::type_names::STRING, default_qos())?;
    let mut clock: Option<Subscription<msgs::Clock>> = if plan.params.use_sim_time {
        Some(t.subscription(topics::CLOCK, msgs::type_names::CLOCK, clock_qos())?)
    } else {
        None
    };
    let mut wire = wire::WireWatch::new(
        context.domain_participant().status_listener(),
        std::mem::take(&mut t.endpoints),
        image_readers,
    );
    let mut param_servers = params::ParamServers::create(&mut node, &names.fully_qualified())?;

    let mut poll = Poll::new().map_err(|e| dds_error("poll")(&e))?;
    let registry = poll.registry();
    for (i, images) in images.iter_mut().enumerate() {
        let token = Token(IMAGES + i);
        match images {
            ImageSubscription::Raw(s) => registry.register(s, token, Interest::READABLE),
            ImageSubscription::Compressed(s) => registry.register(s, token, Interest::READABLE),
        }
        .map_err(|e| dds_error("poll registration")(&e))?;
    }
    registry
        .register(&mut queries, QUERIES, Interest::READABLE)
        .map_err(|e| dds_error("poll registration")(&e))?;
    param_servers.register(registry, PARAM_SERVICES)?;
    registry
        .register(wire.listener(), STATUS, Interest::READABLE)
        .map_err(|e| dds_error("poll registration")(&e))?;
    if let Some(clock) = &mut clock {
        registry
            .register(clock, CLOCK, Interest::READABLE)
            .map_err(|e| dds_error("poll registration")(&e))?;
    }

    let core = NodeCore::start_loading(plan.clone(), outputs.clone());
    log::info!("{} running; loading the model", names.fully_qualified());
    let mut events = Events::with_capacity(8);
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::warn!("poll: {e}");
            }
        }
        // Every reader is drained on every wake-up: cheap, and immune to missed edges.
        for (camera, images) in images.iter().enumerate() {
            match images {
                ImageSubscription::Raw(s) => {
                    drain(s, &core, ("image", Some(camera)), |m: msgs::Image| {
                        let (header, pixels) = m.into_parts();
                        core.offer_image(camera, ImageInput::new(header, pixels));
                    })
                }
                ImageSubscription::Compressed(s) => drain(
                    s,
                    &core,
                    ("image/compressed", Some(camera)),
                    |m: msgs::CompressedImage| {
                        let (header, pixels) = m.into_parts();
                        core.offer_image(camera, ImageInput::new(header, pixels));
                    },
                ),
            }
        }
        drain(&queries, &core, ("query", None), |m: msgs::StringMsg| {
            core.query(m.data)
        });
        if let Some(clock) = &clock {
            drain(clock, &core, ("clock", None), |m: msgs::Clock| {
                core.set_sim_time(core_msgs::Stamp {
                    sec: m.clock.sec,
                    nanosec: m.clock.nanosec,
                })
            });
        }
        wire.drain(&core);
        let (failed, last) = outputs.failures();
        core.update_wire(|w| w.publish_failed(failed, last));
        param_servers.serve(&core);
        if let Some(why) = core.start_failure() {
            core.shutdown();
            return Err(RunError::Start(why));
        }
    }
    log::info!("{} shutting down", names.fully_qualified());
    core.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(vars: &[(&str, &str)]) -> Discovery {
        discovery_from(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn ros_discovery_variables() {
        assert!(!discovery(&[]).localhost_only);
        assert!(discovery(&[("ROS_LOCALHOST_ONLY", "1")]).localhost_only);
        assert!(!discovery(&[("ROS_LOCALHOST_ONLY", "0")]).localhost_only);
        let range = discovery(&[
            ("ROS_AUTOMATIC_DISCOVERY_RANGE", "localhost"),
            ("ROS_LOCALHOST_ONLY", "0"),
        ]);
        assert!(range.localhost_only && range.warnings.is_empty());
        let subnet = discovery(&[
            ("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET"),
            ("ROS_LOCALHOST_ONLY", "1"),
        ]);
        assert!(
            !subnet.localhost_only,
            "the range wins over the older variable"
        );
        let off = discovery(&[("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF")]);
        assert!(off.localhost_only && off.warnings[0].contains("OFF"));
        let bad = discovery(&[("ROS_AUTOMATIC_DISCOVERY_RANGE", "everywhere")]);
        assert!(!bad.localhost_only && bad.warnings[0].contains("EVERYWHERE"));
        let peers = discovery(&[("ROS_STATIC_PEERS", "192.168.0.2")]);
        assert!(peers.warnings[0].contains("ROS_STATIC_PEERS"));
    }
}
