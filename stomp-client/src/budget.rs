//! The bound of the outgoing queue, in frames and in bytes.
//!
//! API calls hand commands to the I/O thread through a channel. What the
//! channel holds is bounded here, by count
//! ([`ConnectOptions::max_send_queue_frames`](crate::ConnectOptions::max_send_queue_frames))
//! and by bytes ([`ConnectOptions::max_send_queue_bytes`](crate::ConnectOptions::max_send_queue_bytes)):
//! a broker that stops reading must not let `send()` buffer thousands of
//! 16 MiB bodies, and a program must not run far ahead of its I/O thread
//! (a short queue keeps the frames in flight in cache). A command takes
//! its room with [`Budget::acquire`] before it enters the channel, and
//! gives it back when its [`Charge`] is dropped: once the I/O thread has
//! written it into the session's output (bounded apart), failed it or
//! thrown it away. Commands kept through an outage (the outbox) keep their
//! charge.
//!
//! Callers that wait are served in order of arrival, so a large frame is
//! not starved by a stream of small ones; a frame larger than the whole
//! byte bound goes in when the queue is empty (it would never fit
//! otherwise).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The room a queued command takes, given back on drop.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Frames and bytes queued for sending, against their maximums.
#[derive(Debug)]
pub(crate) struct Budget {
    max_frames: usize,
    max_bytes: usize,
    state: Mutex<State>,
    room: Condvar,
}

#[derive(Debug, Default)]
struct State {
    frames: usize,
    bytes: usize,
    /// Tickets of the callers waiting for room, first come first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

impl Budget {
    /// A bound of `max_frames` frames (at least one) and `max_bytes` bytes.
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max_frames: max_frames.max(1),
            max_bytes,
            state: Mutex::new(State::default()),
            room: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether one more frame of `bytes` fits: under both bounds, or alone
    /// in an empty queue.
    fn fits(&self, st: &State, bytes: usize) -> bool {
        st.frames == 0
            || (st.frames < self.max_frames && st.bytes.saturating_add(bytes) <= self.max_bytes)
    }

    fn charge(self: &Arc<Self>, st: &mut State, bytes: usize) -> Charge {
        st.frames += 1;
        st.bytes = st.bytes.saturating_add(bytes);
        Charge {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Takes room for one frame of `bytes`, waiting at most `wait` (and
    /// behind the callers already waiting). `None`: no room came in time.
    pub(crate) fn acquire(self: &Arc<Self>, bytes: usize, wait: Duration) -> Option<Charge> {
        let mut st = self.lock();
        if st.waiting.is_empty() && self.fits(&st, bytes) {
            return Some(self.charge(&mut st, bytes));
        }
        let deadline = Instant::now().checked_add(wait);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push_back(ticket);
        loop {
            if st.waiting.front() == Some(&ticket) && self.fits(&st, bytes) {
                st.waiting.pop_front();
                let charge = self.charge(&mut st, bytes);
                // The next in line may fit as well.
                if !st.waiting.is_empty() {
                    self.room.notify_all();
                }
                return Some(charge);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => wait,
            };
            if left.is_zero() {
                st.waiting.retain(|t| *t != ticket);
                // The caller behind this one may be first now.
                self.room.notify_all();
                return None;
            }
            st = self
                .room
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes room for a frame of `bytes` at once, over the bounds if need
    /// be: for the small frames that clean up after the program (the ABORT
    /// of a dropped transaction, the UNSUBSCRIBE of a dropped subscription),
    /// each of which follows a frame that did wait (its BEGIN, its SUBSCRIBE).
    pub(crate) fn force(self: &Arc<Self>, bytes: usize) -> Charge {
        let mut st = self.lock();
        self.charge(&mut st, bytes)
    }

    fn release(&self, bytes: usize) {
        let mut st = self.lock();
        st.frames = st.frames.saturating_sub(1);
        st.bytes = st.bytes.saturating_sub(bytes);
        // Every waiter is in the line before it sleeps; without one, no
        // wake-up (a system call) per frame written.
        let waiters = !st.waiting.is_empty();
        drop(st);
        if waiters {
            self.room.notify_all();
        }
    }

    /// Frames and bytes queued now.
    #[cfg(test)]
    fn used(&self) -> (usize, usize) {
        let st = self.lock();
        (st.frames, st.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;
    const MANY: usize = 1000;

    #[test]
    fn bounds_bytes_and_gives_room_back_on_drop() {
        let b = Budget::new(MANY, 100);
        let a = b.acquire(60, NO_WAIT).expect("room");
        let c = b.acquire(40, NO_WAIT).expect("room up to the bound");
        assert_eq!(b.used(), (2, 100));
        assert!(b.acquire(1, NO_WAIT).is_none());
        drop(a);
        assert_eq!(b.used(), (1, 40));
        let d = b.acquire(60, NO_WAIT).expect("room again");
        drop((c, d));
        assert_eq!(b.used(), (0, 0));
    }

    #[test]
    fn bounds_frames_too() {
        let b = Budget::new(2, usize::MAX);
        let a = b.acquire(0, NO_WAIT).unwrap();
        let _c = b.acquire(0, NO_WAIT).unwrap();
        assert!(b.acquire(0, NO_WAIT).is_none());
        drop(a);
        assert!(b.acquire(0, NO_WAIT).is_some());
    }

    #[test]
    fn a_frame_over_the_whole_bound_goes_into_an_empty_queue() {
        let b = Budget::new(MANY, 100);
        let big = b.acquire(1000, NO_WAIT).expect("alone, it goes");
        assert!(b.acquire(1, NO_WAIT).is_none());
        drop(big);
        let small = b.acquire(1, NO_WAIT).unwrap();
        // Not empty: the big one waits, then times out.
        let t0 = Instant::now();
        assert!(b.acquire(1000, Duration::from_millis(100)).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(100));
        drop(small);
        assert!(b.acquire(1000, NO_WAIT).is_some());
        // A bound of 0 bytes: one frame at a time.
        let zero = Budget::new(MANY, 0);
        let one = zero.acquire(10, NO_WAIT).unwrap();
        assert!(zero.acquire(0, NO_WAIT).is_none());
        drop(one);
        assert!(zero.acquire(10, NO_WAIT).is_some());
    }

    #[test]
    fn a_waiter_gets_room_when_it_is_given_back() {
        let b = Budget::new(MANY, 100);
        let full = b.acquire(100, NO_WAIT).unwrap();
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || b2.acquire(50, Duration::from_secs(10)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        drop(full);
        assert!(waiter.join().unwrap());
        assert_eq!(b.used(), (0, 0));
    }

    #[test]
    fn waiters_are_served_in_order_so_a_large_one_is_not_starved() {
        let b = Budget::new(MANY, 100);
        let held = b.acquire(90, NO_WAIT).unwrap();
        let b2 = Arc::clone(&b);
        // A large frame waits first (it needs the queue empty)...
        let large = std::thread::spawn(move || b2.acquire(500, Duration::from_secs(10)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        // ...so a small one that would fit waits behind it.
        assert!(b.acquire(5, Duration::from_millis(50)).is_none());
        drop(held);
        assert!(large.join().unwrap());
        // A waiter that gave up leaves the line: the next one goes.
        let held = b.acquire(90, NO_WAIT).unwrap();
        let b3 = Arc::clone(&b);
        let gives_up = std::thread::spawn(move || b3.acquire(50, Duration::from_millis(50)));
        assert!(gives_up.join().unwrap().is_none());
        assert!(b.acquire(10, NO_WAIT).is_some());
        drop(held);
    }

    #[test]
    fn forced_room_ignores_the_bounds_and_is_given_back() {
        let b = Budget::new(1, 10);
        let a = b.acquire(10, NO_WAIT).unwrap();
        let f = b.force(50);
        assert_eq!(b.used(), (2, 60));
        drop((a, f));
        assert_eq!(b.used(), (0, 0));
    }

    #[test]
    fn endless_waits_do_not_overflow() {
        let b = Budget::new(MANY, 10);
        assert!(b.acquire(5, Duration::MAX).is_some());
    }
}
