//! An embedded, crash-safe message journal with group commit: the disk under
//! the STOMP broker's durable queues.
//!
//! ```text
//!  event-loop thread (never touches the disk after open)        writer thread
//!  ─────────────────────────────────────────────────────        ─────────────
//!  append(record) ─┐                                             write batches
//!  remove(seq)    ─┼─▶ ops ──commit()──▶ Batch{ops, ticket} ──▶  (all queued ones
//!  delivered(seq) ─┘     (+ compaction copies, segment deletes)   together), fsync
//!                                                                 once, then
//!  notify(CommitEvent::Durable(ticket)) ◀──────────────────────── delete dead
//!                                                                 segments
//! ```
//!
//! Messages are records in append-only segment files (`NNNN.seg`, 64 MiB by
//! default); an acknowledgement is a small tombstone record. A segment whose
//! messages are all gone is deleted; a mostly dead one is compacted by copying
//! its live messages (kept in memory, shared with the caller through
//! [`Bytes`]) to the active segment. Every record carries a CRC-32C: on
//! [`Journal::open`] a torn or damaged tail is cut off with a log line and
//! nothing damaged is ever handed back. See `docs/store.md` for the format,
//! the recovery rules and the measurements behind the choice of this design
//! over an embedded database.
//!
//! # When to call what
//! All methods are for one thread (the broker's event loop) and none blocks
//! on the disk: [`append`](Journal::append) /
//! [`remove`](Journal::remove) / [`delivered`](Journal::delivered) as things
//! happen, then [`commit`](Journal::commit) once per event-loop turn. It
//! returns a ticket; the callback given to [`open`](Journal::open) is called
//! on the writer thread with [`CommitEvent::Durable`]`(t)` once everything up
//! to ticket `t` is fsync'd, which is when RECEIPTs waiting on tickets `<= t`
//! may go out (wake the event loop from the callback, e.g. with a mio
//! `Waker`).
//!
//! # Example
//! ```
//! use std::sync::mpsc;
//! use bytes::Bytes;
//! use stomp_store::{CommitEvent, Journal, JournalOptions, Record};
//!
//! let dir = std::env::temp_dir().join(format!("stomp-store-doc-{}", std::process::id()));
//! let (tx, rx) = mpsc::channel();
//! let notify = Box::new(move |ev: CommitEvent| { let _ = tx.send(ev); });
//! let (mut journal, recovered) = Journal::open(&dir, JournalOptions::default(), notify)?;
//! assert!(recovered.messages.is_empty());
//! journal.append(Record::new("/queue/a", 1, Bytes::new(), Bytes::from("hello")))?;
//! let ticket = journal.commit();
//! // The event loop would go on serving; here we wait for the disk.
//! assert!(matches!(rx.recv().unwrap(), CommitEvent::Durable(t) if t == ticket));
//! drop(journal);
//!
//! let (tx, _rx) = mpsc::channel();
//! let (_journal, recovered) =
//!     Journal::open(&dir, JournalOptions::default(), Box::new(move |ev| { let _ = tx.send(ev); }))?;
//! assert_eq!(recovered.messages[0].body, "hello");
//! # drop(_journal); std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]

mod format;
mod journal;
mod recover;
mod writer;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;

pub use journal::{Journal, Stats};

/// A message as the journal keeps it. Headers are an opaque blob the broker
/// encodes and decodes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The queue (destination) the message is in; at most 65535 bytes.
    pub queue: Bytes,
    /// Broker-wide sequence number: the key of the message in the journal.
    /// Appends are expected in increasing `seq` order (the order recovery
    /// gives them back in).
    pub seq: u64,
    /// The broker's encoding of the message headers.
    pub headers: Bytes,
    /// The body.
    pub body: Bytes,
    /// How many times the message was delivered before this append (0 for a
    /// new message); [`Journal::delivered`] adds to it and recovery gives the
    /// total back.
    pub deliveries: u32,
}

impl Record {
    /// A new, never delivered message.
    pub fn new(queue: impl Into<Bytes>, seq: u64, headers: Bytes, body: Bytes) -> Record {
        Record {
            queue: queue.into(),
            seq,
            headers,
            body,
            deliveries: 0,
        }
    }

    /// The bytes this record takes in a segment file, record header included.
    pub fn encoded_len(&self) -> u64 {
        format::append_len(self)
    }

    /// What [`encoded_len`](Record::encoded_len) gives for a record with a
    /// queue name, a headers blob and a body of these lengths.
    pub fn len_of(queue: usize, headers: usize, body: usize) -> u64 {
        format::append_len_of(queue, headers, body)
    }

    /// The largest record a journal with segments of `segment_size` bytes
    /// takes ([`Journal::append`] refuses bigger ones).
    pub fn max_len(segment_size: u64) -> u64 {
        segment_size.saturating_sub(format::MAGIC.len() as u64)
    }
}

/// What the writer thread reports through the callback given to
/// [`Journal::open`].
#[derive(Debug, Clone)]
pub enum CommitEvent {
    /// Everything committed up to and including this ticket is on disk.
    Durable(u64),
    /// Writing the batches up to this ticket failed (e.g. `ENOSPC`). What was
    /// durable before stays intact; the failed batches are kept and retried
    /// (with the next commit, or every [`JournalOptions::retry_interval`]),
    /// so a later [`Durable`](CommitEvent::Durable) may still cover them. A
    /// broker answers the producers waiting on tickets `<= ticket` with an
    /// ERROR instead of a RECEIPT. Reported once per ticket.
    Failed {
        /// The highest ticket that failed.
        ticket: u64,
        /// The error.
        error: Arc<io::Error>,
    },
}

/// Called on the writer thread with each [`CommitEvent`]. Keep it short: send
/// to a channel and wake the event loop.
pub type Notify = Box<dyn Fn(CommitEvent) + Send + 'static>;

/// Knobs of a [`Journal`], with defaults for production.
#[derive(Clone)]
pub struct JournalOptions {
    /// A new segment file is started when a record would make the active one
    /// bigger than this (default 64 MiB). A single record may not be bigger;
    /// a group ([`Journal::append_group`]) makes its segment as big as it
    /// needs.
    pub segment_size: u64,
    /// The writer keeps up to this many bytes of zeros written ahead of the
    /// data in the active segment (default 4 MiB, never past
    /// `segment_size`; 0 turns it off): an `fdatasync` after an append into
    /// space already written has no file metadata to commit, which makes it
    /// 1.5-3x faster on ext4. Segment files are therefore longer than their
    /// records; recovery reads the zeros as a clean end.
    pub preallocate: u64,
    /// Call `fdatasync` before reporting a ticket durable (default `true`).
    /// Turning it off is for tests and benchmarks only: nothing is promised.
    pub fsync: bool,
    /// The writer thread merges queued batches into one write and one fsync
    /// up to about this many bytes (default 8 MiB).
    pub max_batch_bytes: usize,
    /// A segment other than the active one whose live records take less than
    /// this fraction of `segment_size` is compacted (default 0.25), once there
    /// are more than `slack_segments` segments.
    pub compact_below: f64,
    /// Compaction copies at most this many bytes per commit, so that no single
    /// commit gets large (default 4 MiB).
    pub compact_bytes_per_commit: u64,
    /// Up to this many segments, nothing is compacted (a consumer a little
    /// behind its producers empties segments soon enough). Beyond it, mostly
    /// dead segments are compacted, and when more than this many dead
    /// segments wait for an older segment to go (their tombstones still
    /// matter), the live segment they wait on is compacted whatever its fill
    /// (default 4). This bounds disk use.
    pub slack_segments: usize,
    /// After a failed write, retry this often even without a new commit
    /// (default 200 ms).
    pub retry_interval: std::time::Duration,
    /// Group window (default 500 µs): how long the writer may wait for more
    /// batches to share an fsync, counted from the first batch it has in
    /// hand, and never longer than the last write took. It waits only when
    /// the last fsync carried several messages (many producers: the ones it
    /// answered are about to send again), or when all it has to write are
    /// removals (it waits for a batch with messages to ride along). A single
    /// producer that waits for each receipt never waits. Zero turns it off.
    pub group_window: std::time::Duration,
    /// Benchmark hook: sleep this long after each fsync, to see how group
    /// commit behaves on a disk with slow fsyncs. Not for production.
    #[doc(hidden)]
    pub extra_sync_latency: std::time::Duration,
    /// Test hook: while set, every write fails with `ENOSPC` after writing
    /// half of its bytes (a torn write). Not for production.
    #[doc(hidden)]
    pub inject_write_error: Option<Arc<AtomicBool>>,
    /// Test hook: a nearly full disk. Unless `u64::MAX`, no zeros are
    /// written ahead, and a write past the zeros already there, or of more
    /// bytes than this, fails with `ENOSPC` after writing what fits. Not
    /// for production.
    #[doc(hidden)]
    pub inject_write_room: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Test hook: a disk of this many bytes, which the segment files share
    /// (deleting one gives its bytes back): a write that would grow them
    /// past it fails with `ENOSPC` after writing what fits, and zeros are
    /// written ahead only as far as they fit. Not for production.
    #[doc(hidden)]
    pub inject_disk_bytes: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 64 << 20,
            preallocate: 4 << 20,
            fsync: true,
            max_batch_bytes: 8 << 20,
            compact_below: 0.25,
            compact_bytes_per_commit: 4 << 20,
            slack_segments: 4,
            retry_interval: std::time::Duration::from_millis(200),
            group_window: std::time::Duration::from_micros(500),
            extra_sync_latency: std::time::Duration::ZERO,
            inject_write_error: None,
            inject_write_room: None,
            inject_disk_bytes: None,
        }
    }
}

impl fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalOptions")
            .field("segment_size", &self.segment_size)
            .field("preallocate", &self.preallocate)
            .field("fsync", &self.fsync)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("compact_below", &self.compact_below)
            .field("compact_bytes_per_commit", &self.compact_bytes_per_commit)
            .field("slack_segments", &self.slack_segments)
            .field("retry_interval", &self.retry_interval)
            .field("group_window", &self.group_window)
            .finish_non_exhaustive()
    }
}

/// What [`Journal::open`] read back.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The live messages, in `seq` (append) order; `deliveries` counts the
    /// deliveries recorded before the restart.
    pub messages: Vec<Record>,
    /// The highest `seq` seen in any record still on disk (live or not); a
    /// broker continues numbering above it.
    pub max_seq: u64,
    /// What was found damaged and cut off or skipped (each also logged with
    /// `tracing::warn!`).
    pub cuts: Vec<Cut>,
    /// Segment files read.
    pub segments: usize,
    /// Segment files deleted at open because nothing in them was live.
    pub deleted_segments: usize,
}

/// A damaged stretch of a segment file found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// Bytes from there to the end of the file, not read.
    pub dropped_bytes: u64,
    /// What was wrong (`torn record`, `checksum mismatch`, `malformed record`,
    /// `bad segment header`).
    pub reason: &'static str,
    /// `true` when the file was truncated at `offset` (the newest segment),
    /// `false` when the rest of an older segment was skipped.
    pub truncated: bool,
}
