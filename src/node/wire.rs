//! What the transport knows about the node's peers, for diagnostics: the publishers
//! matched on the image topic (and how many went away), and remote endpoints whose QoS
//! cannot match the node's (a camera publishing with exclusive ownership, a subscriber
//! asking for durability the node does not offer), which DDS silently never connects.
//! Endpoints are named by an opaque id (the DDS GUID); the transport feeds the events.

use std::collections::BTreeMap;

use super::messages::Level;

/// Which side of a topic a remote endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Publisher,
    Subscriber,
}

/// A remote endpoint whose QoS is incompatible with the node's on `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    pub topic: String,
    pub side: Side,
    /// The (first) policy that fails, e.g. `Ownership`, `Reliability`, `Durability`.
    pub policy: String,
}

#[derive(Debug, Clone, Default)]
pub struct WireHealth {
    /// Publishers matched on a camera's image topic: id -> camera.
    image_publishers: BTreeMap<String, usize>,
    /// Image publishers that went away (deleted, or their process lost), per camera.
    image_publishers_lost: BTreeMap<usize, u64>,
    incompatible: BTreeMap<String, Incompatible>,
    /// Incompatible remote endpoints seen since start.
    pub incompatible_total: u64,
    /// Messages the transport could not publish (e.g. a reliable subscriber that stopped
    /// acknowledging), the last one's error, and the count at the last report.
    pub publish_failures: u64,
    last_publish_failure: String,
    publish_failures_reported: u64,
}

impl WireHealth {
    /// A publisher `id` now matched with `camera`'s image subscription.
    pub fn image_publisher_matched(&mut self, camera: usize, id: String) {
        self.image_publishers.insert(id, camera);
    }

    /// A remote endpoint `id` that cannot match the node's endpoint on `topic`.
    pub fn incompatible(&mut self, id: String, what: Incompatible) {
        if self.incompatible.insert(id, what).is_none() {
            self.incompatible_total += 1;
        }
    }

    /// A remote endpoint went away: forgotten wherever it was counted.
    pub fn endpoint_lost(&mut self, id: &str) {
        if let Some(camera) = self.image_publishers.remove(id) {
            *self.image_publishers_lost.entry(camera).or_default() += 1;
        }
        self.incompatible.remove(id);
    }

    /// The transport's count of failed publishes so far, and the last one's error.
    pub fn publish_failed(&mut self, total: u64, last: String) {
        if total != self.publish_failures {
            self.publish_failures = total;
            self.last_publish_failure = last;
        }
    }

    /// A remote participant went away: every endpoint whose id starts with `prefix`.
    pub fn participant_lost(&mut self, prefix: &str) {
        let gone: Vec<String> = self
            .image_publishers
            .keys()
            .chain(self.incompatible.keys())
            .filter(|id| id.starts_with(prefix))
            .cloned()
            .collect();
        for id in gone {
            self.endpoint_lost(&id);
        }
    }

    /// Publishers matched on `camera`'s image topic now.
    pub fn image_publishers(&self, camera: usize) -> usize {
        self.image_publishers
            .values()
            .filter(|c| **c == camera)
            .count()
    }

    /// Publishers of `camera`'s image topic that went away.
    pub fn image_publishers_lost(&self, camera: usize) -> u64 {
        self.image_publishers_lost
            .get(&camera)
            .copied()
            .unwrap_or(0)
    }

    /// Incompatible remote endpoints alive now.
    pub fn incompatible_now(&self) -> impl Iterator<Item = &Incompatible> {
        self.incompatible.values()
    }

    /// Diagnostics key/values of `camera`'s status.
    pub fn values(&self, camera: usize) -> Vec<(String, String)> {
        vec![
            (
                "image publishers".into(),
                self.image_publishers(camera).to_string(),
            ),
            (
                "image publishers lost".into(),
                self.image_publishers_lost(camera).to_string(),
            ),
            (
                "incompatible QoS endpoints".into(),
                self.incompatible.len().to_string(),
            ),
            ("publish failures".into(), self.publish_failures.to_string()),
        ]
    }

    /// One WARN per incompatible endpoint kind alive now (as rclcpp words its QoS event),
    /// and one for messages that could not be published since the last report (call
    /// [`WireHealth::reported`] once the report is out).
    pub fn problems(&self) -> Vec<(Level, String)> {
        let mut problems = self.incompatible_problems();
        let new_failures = self.publish_failures - self.publish_failures_reported;
        if new_failures > 0 {
            problems.push((
                Level::Warn,
                format!(
                    "{new_failures} messages could not be published since the last report \
                     (a reliable subscriber not acknowledging?): {}",
                    self.last_publish_failure
                ),
            ));
        }
        problems
    }

    /// The failed publishes so far have been reported.
    pub fn reported(&mut self) {
        self.publish_failures_reported = self.publish_failures;
    }

    fn incompatible_problems(&self) -> Vec<(Level, String)> {
        let mut seen = BTreeMap::<(String, &'static str, String), usize>::new();
        for i in self.incompatible.values() {
            let side = match i.side {
                Side::Publisher => "publisher",
                Side::Subscriber => "subscriber",
            };
            *seen
                .entry((i.topic.clone(), side, i.policy.clone()))
                .or_default() += 1;
        }
        seen.into_iter()
            .map(|((topic, side, policy), n)| {
                let (offers, effect) = if side == "publisher" {
                    ("offering", "no messages will be received from it")
                } else {
                    ("requesting", "no messages will be sent to it")
                };
                let count = if n > 1 { format!(" ({n} of them)") } else { String::new() };
                (
                    Level::Warn,
                    format!(
                        "a {side} on {topic} is {offers} incompatible QoS ({policy}){count}: {effect}"
                    ),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_come_and_go_and_incompatible_endpoints_warn_while_they_live() {
        let mut w = WireHealth::default();
        w.image_publisher_matched(0, "a".into());
        w.image_publisher_matched(0, "a".into());
        w.image_publisher_matched(0, "b".into());
        w.image_publisher_matched(1, "d".into());
        assert_eq!((w.image_publishers(0), w.image_publishers(1)), (2, 1));
        w.endpoint_lost("a");
        w.endpoint_lost("a");
        assert_eq!((w.image_publishers(0), w.image_publishers_lost(0)), (1, 1));
        assert_eq!((w.image_publishers(1), w.image_publishers_lost(1)), (1, 0));
        assert!(w.problems().is_empty());
        let what = Incompatible {
            topic: "/image".into(),
            side: Side::Publisher,
            policy: "Ownership".into(),
        };
        w.incompatible("c".into(), what.clone());
        w.incompatible("c".into(), what);
        let problems = w.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, Level::Warn);
        assert!(
            problems[0].1.contains("publisher on /image") && problems[0].1.contains("(Ownership)"),
            "{problems:?}"
        );
        assert_eq!(w.incompatible_total, 1);
        w.endpoint_lost("c");
        assert!(w.problems().is_empty());
        assert_eq!(w.values(0)[2].1, "0");
    }
}
