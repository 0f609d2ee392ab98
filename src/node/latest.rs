//! The frame policy's one place of storage: a slot that holds at most the newest waiting
//! frame. Offering a frame while one waits replaces it (the caller counts the replaced one
//! as dropped), so the encoder, when it becomes free, always takes the newest frame and the
//! queue can never grow.

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

struct State<T> {
    value: Option<T>,
    closed: bool,
}

/// A single-value, newest-wins hand-over between threads.
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        LatestSlot {
            state: Mutex::new(State {
                value: None,
                closed: false,
            }),
            filled: Condvar::new(),
        }
    }
}

impl<T> LatestSlot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere must not stop frames: the state is a plain Option.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `value` in the slot and returns the value it replaced, if one was waiting.
    pub fn offer(&self, value: T) -> Option<T> {
        let replaced = self.lock().value.replace(value);
        self.filled.notify_one();
        replaced
    }

    /// Takes the waiting value, waiting for one until `deadline`.
    pub fn take_until(&self, deadline: Instant) -> Taken<T> {
        let mut state = self.lock();
        loop {
            if let Some(v) = state.value.take() {
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

    /// Takes the waiting value, waiting at most `timeout`.
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
        let slot = LatestSlot::default();
        assert_eq!(slot.offer(1), None);
        assert_eq!(slot.offer(2), Some(1));
        assert_eq!(slot.offer(3), Some(2));
        assert_eq!(slot.take(Duration::ZERO), Taken::Value(3));
        assert_eq!(slot.take(Duration::from_millis(1)), Taken::TimedOut);
    }

    #[test]
    fn a_waiting_taker_wakes_on_offer_and_on_close() {
        let slot = Arc::new(LatestSlot::default());
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
}
