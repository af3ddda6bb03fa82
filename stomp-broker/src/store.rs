//! Where queued messages are kept: the [`Store`] trait and the memory store.
//!
//! The router holds every queued message in memory and tells the store what
//! happens to it: [`Store::append`] when a message enters a queue,
//! [`Store::remove`] when it is consumed (acknowledged, or delivered in
//! `auto` mode), and [`Store::flush`] once per event-loop turn, before the
//! RECEIPTs of that turn are written. A durable store writes in
//! [`append`](Store::append)/[`remove`](Store::remove) and syncs a group in
//! [`flush`](Store::flush); [`Store::recover`] gives back what survived a
//! restart. The memory store does nothing: the router's memory is the store.

use std::io;

use bytes::Bytes;
use stomp_frame::{ByteString, Headers};

/// A message as a store sees it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Broker-wide sequence number (the `message-id` is derived from it).
    pub seq: u64,
    /// The queue it is in.
    pub queue: ByteString,
    /// The user headers of the SEND (`content-type` included).
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// Keeps queued messages across restarts (or not).
///
/// The event loop calls these from its own thread; an implementation that
/// does slow I/O should hand the work to a thread of its own and report
/// completion through [`flush`](Store::flush).
pub trait Store: Send {
    /// A short name for logs (`memory`, ...).
    fn name(&self) -> &'static str;
    /// Messages that were queued when the broker last stopped, in order.
    fn recover(&mut self) -> io::Result<Vec<StoredMessage>>;
    /// A message entered a queue.
    fn append(&mut self, message: &StoredMessage) -> io::Result<()>;
    /// The message with this sequence number left its queue for good.
    fn remove(&mut self, queue: &str, seq: u64) -> io::Result<()>;
    /// Makes everything appended or removed so far durable.
    fn flush(&mut self) -> io::Result<()>;
}

/// Keeps nothing beyond the router's own memory: messages die with the broker.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn recover(&mut self) -> io::Result<Vec<StoredMessage>> {
        Ok(Vec::new())
    }
    fn append(&mut self, _message: &StoredMessage) -> io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _queue: &str, _seq: u64) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
