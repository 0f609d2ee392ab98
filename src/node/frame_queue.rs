//! The frame policy's one place of storage, between the transport and the frame thread:
//! one queue per camera. `newest` (a robot): at most one frame per camera waits; offering
//! a frame while one of that camera waits replaces it (the caller counts the replaced one
//! as dropped), so the encoder, when it becomes free, always takes the newest frame and
//! results are never stale. `every` (a recording played into the node): a camera's frames
//! wait in arrival order, up to `queue_size`; a frame that arrives at a full queue is
//! dropped and counted, nothing else is. The frame thread takes a batch: the oldest
//! waiting frame of every camera that has one, at most `max_batch`, cameras taking turns.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a take found.
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
    /// One queue per camera.
    queues: Vec<VecDeque<T>>,
    policy: FramePolicy,
    closed: bool,
    /// The camera a batch looks at first: the one after the last camera served, so
    /// cameras take turns when fewer frames fit a batch than cameras wait.
    next: usize,
}

/// The hand-over of frames between threads, one queue per camera, each under the same
/// [`FramePolicy`].
pub struct FrameQueues<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

impl<T> FrameQueues<T> {
    /// Queues for `cameras` cameras (at least one).
    pub fn new(cameras: usize, policy: FramePolicy) -> Self {
        FrameQueues {
            state: Mutex::new(State {
                queues: (0..cameras.max(1)).map(|_| VecDeque::new()).collect(),
                policy,
                closed: false,
                next: 0,
            }),
            filled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere must not stop frames: the state is plain queues.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers a frame of `camera`; returns the frame the policy dropped for it, if any
    /// (`newest`: the one of that camera that was waiting; `every` with that camera's
    /// queue full: this one).
    pub fn offer(&self, camera: usize, value: T) -> Option<T> {
        let mut state = self.lock();
        let policy = state.policy;
        let queue = &mut state.queues[camera];
        let dropped = match policy {
            FramePolicy::Newest => {
                let replaced = queue.pop_front();
                queue.push_back(value);
                replaced
            }
            FramePolicy::Every { queue_size } if queue.len() >= queue_size => Some(value),
            FramePolicy::Every { .. } => {
                queue.push_back(value);
                None
            }
        };
        drop(state);
        self.filled.notify_all();
        dropped
    }

    /// Changes the policy; returns how many waiting frames no longer fit (the oldest of
    /// each camera), per camera.
    pub fn set_policy(&self, policy: FramePolicy) -> Vec<usize> {
        let mut state = self.lock();
        state.policy = policy;
        let keep = match policy {
            FramePolicy::Newest => 1,
            FramePolicy::Every { queue_size } => queue_size,
        };
        state
            .queues
            .iter_mut()
            .map(|queue| {
                let excess = queue.len().saturating_sub(keep);
                queue.drain(..excess);
                excess
            })
            .collect()
    }

    /// Frames of `camera` waiting.
    pub fn len(&self, camera: usize) -> usize {
        self.lock().queues[camera].len()
    }

    /// Whether no camera has a frame waiting.
    pub fn is_empty(&self) -> bool {
        self.lock().queues.iter().all(VecDeque::is_empty)
    }

    /// Waits until `ready(state)` gives a value, the queues close or `deadline` passes.
    fn wait_for<R>(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&mut State<T>) -> Option<R>,
    ) -> Taken<R> {
        let mut state = self.lock();
        loop {
            if let Some(v) = ready(&mut state) {
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

    /// Takes `camera`'s oldest waiting frame, waiting for one until `deadline`.
    pub fn take_until(&self, camera: usize, deadline: Instant) -> Taken<T> {
        self.wait_for(deadline, |state| state.queues[camera].pop_front())
    }

    /// Takes `camera`'s oldest waiting frame, waiting at most `timeout`.
    pub fn take(&self, camera: usize, timeout: Duration) -> Taken<T> {
        self.take_until(camera, Instant::now() + timeout)
    }

    /// Waits until a camera with `eligible[camera]` has a frame (or `deadline`), then takes
    /// the oldest waiting frame of each eligible camera that has one, at most `max`
    /// frames, starting with the camera after the last one served (so no camera starves
    /// when fewer fit than wait). Frames come in camera order from that start.
    pub fn take_batch_until(
        &self,
        eligible: &[bool],
        max: usize,
        deadline: Instant,
    ) -> Taken<Vec<(usize, T)>> {
        self.wait_for(deadline, |state| {
            let n = state.queues.len();
            let mut batch = Vec::new();
            for camera in (0..n).map(|i| (state.next + i) % n) {
                if batch.len() == max.max(1) {
                    break;
                }
                if !eligible.get(camera).copied().unwrap_or(false) {
                    continue;
                }
                if let Some(frame) = state.queues[camera].pop_front() {
                    batch.push((camera, frame));
                }
            }
            let (last, _) = batch.last()?;
            state.next = (last + 1) % n;
            Some(batch)
        })
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
        let slot = FrameQueues::new(1, FramePolicy::Newest);
        assert_eq!(slot.offer(0, 1), None);
        assert_eq!(slot.offer(0, 2), Some(1));
        assert_eq!(slot.offer(0, 3), Some(2));
        assert_eq!(slot.take(0, Duration::ZERO), Taken::Value(3));
        assert_eq!(slot.take(0, Duration::from_millis(1)), Taken::TimedOut);
    }

    #[test]
    fn a_waiting_taker_wakes_on_offer_and_on_close() {
        let slot = Arc::new(FrameQueues::new(2, FramePolicy::Newest));
        let s = slot.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let taker = std::thread::spawn(move || s.take_batch_until(&[true, true], 2, deadline));
        std::thread::sleep(Duration::from_millis(20));
        slot.offer(1, "frame");
        assert_eq!(taker.join().unwrap(), Taken::Value(vec![(1, "frame")]));

        let s = slot.clone();
        let taker = std::thread::spawn(move || s.take(0, Duration::from_secs(30)));
        slot.close();
        assert_eq!(taker.join().unwrap(), Taken::<&str>::Closed);
        assert!(slot.is_closed());
    }

    #[test]
    fn every_frame_waits_in_order_until_the_queue_is_full() {
        let q = FrameQueues::new(1, FramePolicy::Every { queue_size: 3 });
        assert_eq!(
            [q.offer(0, 1), q.offer(0, 2), q.offer(0, 3)],
            [None, None, None]
        );
        assert_eq!(
            q.offer(0, 4),
            Some(4),
            "a full queue drops the arriving frame"
        );
        assert_eq!(q.take(0, Duration::ZERO), Taken::Value(1));
        assert_eq!(q.offer(0, 5), None);
        assert_eq!(q.len(0), 3);
        assert_eq!(
            q.set_policy(FramePolicy::Newest),
            vec![2],
            "switching keeps the newest"
        );
        assert_eq!(q.take(0, Duration::ZERO), Taken::Value(5));
        assert!(q.is_empty());
    }

    fn batch(
        q: &FrameQueues<&'static str>,
        eligible: &[bool],
        max: usize,
    ) -> Vec<(usize, &'static str)> {
        match q.take_batch_until(eligible, max, Instant::now()) {
            Taken::Value(batch) => batch,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_takes_one_frame_of_every_waiting_camera() {
        let q = FrameQueues::new(3, FramePolicy::Every { queue_size: 10 });
        q.offer(0, "a1");
        q.offer(0, "a2");
        q.offer(2, "c1");
        assert_eq!(batch(&q, &[true; 3], 3), [(0, "a1"), (2, "c1")]);
        assert_eq!(batch(&q, &[true; 3], 3), [(0, "a2")]);
        assert_eq!(
            q.take_batch_until(&[true; 3], 3, Instant::now()),
            Taken::TimedOut
        );
        // A camera held back (max_rate) keeps its frame for a later batch.
        q.offer(1, "b1");
        q.offer(2, "c2");
        assert_eq!(batch(&q, &[true, false, true], 3), [(2, "c2")]);
        assert_eq!(batch(&q, &[true; 3], 3), [(1, "b1")]);
    }

    #[test]
    fn cameras_take_turns_when_fewer_fit_than_wait() {
        let q = FrameQueues::new(3, FramePolicy::Newest);
        let mut served = [0; 3];
        for _ in 0..30 {
            for camera in 0..3 {
                q.offer(camera, "frame");
            }
            for (camera, _) in batch(&q, &[true; 3], 2) {
                served[camera] += 1;
            }
        }
        assert_eq!(served, [20, 20, 20], "60 places, 3 cameras");
    }
}
