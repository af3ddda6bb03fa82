//! Where queued messages are kept: the [`Store`] trait, the memory store
//! ([`MemoryStore`], `--memory`) and the durable journal ([`DurableStore`],
//! the default, `--data-dir`).
//!
//! The router holds every queued message in memory and tells the store what
//! happens to it: [`Store::append`] when a message enters a queue,
//! [`Store::delivered`] when it is handed to a client-ack subscriber (so the
//! delivery count toward the dead-letter queue survives a restart),
//! [`Store::remove`] when it is consumed (acknowledged, or delivered in
//! `auto` mode) or moved to a dead-letter queue (which appends it again).
//!
//! Once per event-loop turn, after the frames read in that turn were
//! handled and before anything is written, the engine calls
//! [`Store::commit`]. A durable store ([`Store::is_durable`]) returns a
//! ticket for that group and makes it durable in the background; the
//! RECEIPTs of that turn are held until [`Store::durable_ticket`] reaches
//! the ticket (the store calls the wake-up given to [`Store::set_wakeup`]
//! when it advances, so the loop looks again), or answered with an ERROR if
//! [`Store::failed_ticket`] reports the group lost. The memory store is not
//! durable: nothing is held, the router's memory is the store.

use std::io;

mod durable;
mod memory;

pub use durable::{DurableOptions, DurableStore};
pub use memory::MemoryStore;

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
    /// Deliveries so far (0 when appended by a SEND).
    pub deliveries: u32,
}

/// What a store gives back at start-up.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Messages still queued when the broker stopped, in `seq` order.
    pub messages: Vec<StoredMessage>,
    /// The highest sequence number ever used (numbering continues above it).
    pub max_seq: u64,
}

/// Keeps queued messages across restarts (or not).
///
/// Called from the event-loop thread only; no method may block on a disk:
/// a durable store hands the writing to a thread of its own.
pub trait Store: Send {
    /// A short name for logs (`memory`, ...).
    fn name(&self) -> &'static str;
    /// What was queued when the broker last stopped.
    fn recover(&mut self) -> io::Result<Recovery>;
    /// A message entered a queue.
    fn append(&mut self, message: &StoredMessage) -> io::Result<()>;
    /// `Some(limit)` when a message of these sizes, sent to a queue, could
    /// not be stored: it is refused at SEND (an ERROR, nothing queued), not
    /// accepted and then lost. `queue`, `headers`: as in [`StoredMessage`].
    fn too_large(&self, _queue: &str, _headers: &Headers, _body_len: usize) -> Option<u64> {
        None
    }
    /// `Some(why)` when a message with these headers, sent to a queue, would
    /// be stored but the store cannot write now (its last write failed, for
    /// a full disk say, and is being retried): it is refused at SEND (an
    /// ERROR, nothing queued), rather than queued behind a write that
    /// cannot succeed, which would only make the backlog bigger than the
    /// room that frees up.
    fn unavailable(&self, _queue: &str, _headers: &Headers) -> Option<String> {
        None
    }

    /// Memory this store keeps for a message of a queue while it is there
    /// (an index entry, a copy of its headers), on top of the broker's own:
    /// charged to the message against `max-memory` and `max-queue-memory`.
    /// 0 for a message it would not keep.
    fn held_bytes(&self, _queue: &str, _headers: &Headers) -> usize {
        0
    }

    /// The message with this sequence number left its queue for good.
    fn remove(&mut self, queue: &str, seq: u64) -> io::Result<()>;
    /// The message was handed to a subscriber that must acknowledge it.
    fn delivered(&mut self, _queue: &str, _seq: u64) -> io::Result<()> {
        Ok(())
    }
    /// The appends until [`end_group`](Store::end_group) are one
    /// transaction's (its COMMIT): a durable store brings back all of them or
    /// none after a crash.
    fn begin_group(&mut self) {}
    /// Ends the group [`begin_group`](Store::begin_group) began.
    fn end_group(&mut self) {}
    /// Changes (appends, removals, deliveries) handed to the store so far:
    /// a frame that changed nothing need not wait for the disk.
    fn changes(&self) -> u64 {
        0
    }
    /// Whether RECEIPTs must wait for [`durable_ticket`](Store::durable_ticket).
    fn is_durable(&self) -> bool {
        false
    }
    /// Ends this turn's group of changes; returns its ticket.
    fn commit(&mut self) -> io::Result<u64>;
    /// The highest ticket whose changes are durable.
    fn durable_ticket(&self) -> u64 {
        u64::MAX
    }
    /// The highest ticket whose group could not be made durable, with why
    /// (reported once); its RECEIPTs become ERRORs.
    fn failed_ticket(&mut self) -> Option<(u64, String)> {
        None
    }
    /// How to wake the event loop when `durable_ticket` or `failed_ticket`
    /// changes (called once, before serving).
    fn set_wakeup(&mut self, _wake: Box<dyn Fn() + Send + Sync>) {}
}

/// Opens the store a configuration asks for: the memory store with
/// `memory`, else the journal in [`Config::store_dir`](crate::Config::store_dir)
/// (`./data` by default), locked against a second broker. Logs which store
/// and where.
pub fn open(config: &crate::Config) -> io::Result<Box<dyn Store>> {
    match config.store_dir() {
        None => {
            tracing::info!("store: memory (--memory): messages do not survive a restart");
            Ok(Box::new(MemoryStore))
        }
        Some(dir) => {
            let options = DurableOptions {
                persist: config.persist,
                segment_size: config.segment_size,
                fsync: config.fsync,
                group_window: std::time::Duration::from_micros(config.group_window_us),
                ..DurableOptions::default()
            };
            Ok(Box::new(DurableStore::open(&dir, options)?))
        }
    }
}
