//! The node's ROS clock: the system clock, or with `use_sim_time` the time the `/clock`
//! topic last gave (zero until the first message, as rclcpp's clock). Everything the node
//! stamps itself (LabelInfo, diagnostics, parameter events) and the `max_rate` spacing
//! read it; results keep their image's header stamp.

use std::sync::Mutex;
use std::time::Duration;

use super::messages::Stamp;

/// The time source of one node.
#[derive(Debug)]
pub struct RosClock {
    /// `Some` with `use_sim_time`: the newest `/clock` time.
    sim: Option<Mutex<Stamp>>,
}

impl RosClock {
    pub fn new(use_sim_time: bool) -> RosClock {
        RosClock {
            sim: use_sim_time.then(|| Mutex::new(Stamp { sec: 0, nanosec: 0 })),
        }
    }

    pub fn is_sim(&self) -> bool {
        self.sim.is_some()
    }

    /// ROS time now.
    pub fn now(&self) -> Stamp {
        match &self.sim {
            Some(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
            None => Stamp::now(),
        }
    }

    /// A `/clock` message arrived (ignored without `use_sim_time`).
    pub fn set_sim_time(&self, t: Stamp) {
        if let Some(sim) = &self.sim {
            *sim.lock().unwrap_or_else(|e| e.into_inner()) = t;
        }
    }
}

/// A stamp as a duration since time zero (negative seconds count as zero).
pub fn since_zero(t: Stamp) -> Duration {
    Duration::new(t.sec.max(0) as u64, t.nanosec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_time_follows_clock_messages() {
        let clock = RosClock::new(true);
        assert_eq!(clock.now(), Stamp { sec: 0, nanosec: 0 });
        clock.set_sim_time(Stamp {
            sec: 42,
            nanosec: 7,
        });
        assert_eq!(
            clock.now(),
            Stamp {
                sec: 42,
                nanosec: 7
            }
        );
        let wall = RosClock::new(false);
        wall.set_sim_time(Stamp {
            sec: 42,
            nanosec: 7,
        });
        assert!(wall.now().sec > 1_700_000_000, "the system clock");
        assert_eq!(
            since_zero(Stamp { sec: 2, nanosec: 5 }),
            Duration::new(2, 5)
        );
    }
}
