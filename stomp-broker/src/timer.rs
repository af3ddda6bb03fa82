//! A deadline heap with lazy invalidation.
//!
//! Entries are never removed when a deadline moves: the owner keeps the
//! true deadline and the heap entry is checked against it when it pops.
//! This makes "something was read, push the receive deadline back" free
//! (no heap operation per read), at the cost of a re-push when a stale
//! entry comes due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Min-heap of `(deadline, key)`.
#[derive(Debug)]
pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Adds a deadline.
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline (maybe stale).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.push(t0 + Duration::from_millis(30), 3u32);
        t.push(t0 + Duration::from_millis(10), 1);
        t.push(t0 + Duration::from_millis(20), 2);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(1));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(2));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }
}
