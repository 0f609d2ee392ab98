//! The frame policy's one place of storage, between the transport and the frame thread.
//! `newest` (a robot): at most one frame waits; offering a frame while one waits replaces
//! it (the caller counts the replaced one as dropped), so the encoder, when it becomes
//! free, always takes the newest frame and results are never stale. `every` (a recording
//! played into the node): frames wait in arrival order, up to `queue_size`; a frame that
//! arrives at a full queue is dropped and counted, nothing else is.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What [`LatestSlot::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Value(T),
    /// Nothing arrived before the deadline.
    TimedOut,
    /// The slot was closed (the node is shutting down).
    Closed,
}

/// Which frames wait for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePolicy {
    /// One frame waits; a newer one replaces it.
    Newest,
    /// Every frame waits, up to this many; more are dropped.
    Every { queue_size: usize },
}

struct State<T> {
    values: VecDeque<T>,
    policy: FramePolicy,
    closed: bool,
}

/// The hand-over of frames between threads, under a [`FramePolicy`].
pub struct FrameQueue<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

impl<T> FrameQueue<T> {
    pub fn new(policy: FramePolicy) -> Self {
        FrameQueue {
            state: Mutex::new(State {
                values: VecDeque::new(),
                policy,
                closed: false,
            }),
            filled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere must not stop frames: the state is a plain queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers a frame; returns the frame the policy dropped for it, if any (`newest`: the
    /// one that was waiting; `every` with a full queue: this one).
    pub fn offer(&self, value: T) -> Option<T> {
        let mut state = self.lock();
        let dropped = match state.policy {
            FramePolicy::Newest => {
                let replaced = state.values.pop_front();
                state.values.push_back(value);
                replaced
            }
            FramePolicy::Every { queue_size } if state.values.len() >= queue_size => Some(value),
            FramePolicy::Every { .. } => {
                state.values.push_back(value);
                None
            }
        };
        drop(state);
        self.filled.notify_one();
        dropped
    }

    /// Changes the policy; returns how many waiting frames no longer fit (the oldest).
    pub fn set_policy(&self, policy: FramePolicy) -> usize {
        let mut state = self.lock();
        state.policy = policy;
        let keep = match policy {
            FramePolicy::Newest => 1,
            FramePolicy::Every { queue_size } => queue_size,
        };
        let excess = state.values.len().saturating_sub(keep);
        state.values.drain(..excess);
        excess
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the oldest waiting frame, waiting for one until `deadline`.
    pub fn take_until(&self, deadline: Instant) -> Taken<T> {
        let mut state = self.lock();
        loop {
            if let Some(v) = state.values.pop_front() {
                return Taken::Value(v);
            }
            if state.closed {
                return Taken::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::TimedOut;
            }
            state = self
                .filled
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes the oldest waiting frame, waiting at most `timeout`.
    pub fn take(&self, timeout: Duration) -> Taken<T> {
        self.take_until(Instant::now() + timeout)
    }

    /// Wakes every waiter; later `take`s return what is left, then [`Taken::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn newest_wins_and_replaced_values_are_returned() {
        let slot = FrameQueue::new(FramePolicy::Newest);
        assert_eq!(slot.offer(1), None);
        assert_eq!(slot.offer(2), Some(1));
        assert_eq!(slot.offer(3), Some(2));
        assert_eq!(slot.take(Duration::ZERO), Taken::Value(3));
        assert_eq!(slot.take(Duration::from_millis(1)), Taken::TimedOut);
    }

    #[test]
    fn a_waiting_taker_wakes_on_offer_and_on_close() {
        let slot = Arc::new(FrameQueue::new(FramePolicy::Newest));
        let s = slot.clone();
        let taker = std::thread::spawn(move || s.take(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        slot.offer("frame");
        assert_eq!(taker.join().unwrap(), Taken::Value("frame"));

        let s = slot.clone();
        let taker = std::thread::spawn(move || s.take(Duration::from_secs(30)));
        slot.close();
        assert_eq!(taker.join().unwrap(), Taken::<&str>::Closed);
        assert!(slot.is_closed());
    }

    #[test]
    fn every_frame_waits_in_order_until_the_queue_is_full() {
        let q = FrameQueue::new(FramePolicy::Every { queue_size: 3 });
        assert_eq!([q.offer(1), q.offer(2), q.offer(3)], [None, None, None]);
        assert_eq!(q.offer(4), Some(4), "a full queue drops the arriving frame");
        assert_eq!(q.take(Duration::ZERO), Taken::Value(1));
        assert_eq!(q.offer(5), None);
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.set_policy(FramePolicy::Newest),
            2,
            "switching keeps the newest"
        );
        assert_eq!(q.take(Duration::ZERO), Taken::Value(5));
        assert!(q.is_empty());
    }
}
