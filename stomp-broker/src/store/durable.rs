//! The durable store: the broker's [`Store`] over `stomp_store::Journal`.
//!
//! Every queued message (all of them, or only `persistent:true` ones,
//! see [`Persist`]) is appended to the journal in the data directory at the
//! end of the event-loop turn that queued it, unless it was consumed in that
//! same turn (an auto-ack subscriber was waiting: then nothing is written,
//! as RabbitMQ does for a message consumed before it reached the disk; a
//! crash would have lost it either way, since its removal would have been
//! in the same group); an acknowledgement is a tombstone; a delivery to a client-ack subscriber
//! is a small DELIVER record, so the count toward the dead-letter queue
//! survives a restart. The journal's writer thread writes and fsyncs each
//! group of commits and reports through a callback, which this adapter
//! turns into the engine's `durable_ticket` / `failed_ticket` and a mio
//! wake-up: the event loop never waits on the disk.
//!
//! Headers are stored as a small length-prefixed blob (`[u32 LE name
//! length][name][u32 LE value length][value]` per header, in order), not
//! STOMP text: no escaping rules to get wrong, and decoding slices the
//! recovered bytes without copying.
//!
//! The directory is locked (`flock` on `DIR/lock`) for as long as the store
//! is open: a second broker on the same directory fails to start with a
//! message that names it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use stomp_frame::{ByteString, Header, Headers};
use stomp_store::{CommitEvent, Journal, JournalOptions, Record, Recovered};

use super::{Recovery, Store, StoredMessage};
use crate::config::Persist;

/// Knobs of a [`DurableStore`].
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// Which queued messages are written to the journal.
    pub persist: Persist,
    /// Size of a journal segment file, bytes.
    pub segment_size: u64,
    /// `fdatasync` before a RECEIPT goes out (off: for tests and benchmarks).
    pub fsync: bool,
    /// How long the journal's writer may wait for more commits to share an
    /// fsync.
    pub group_window: std::time::Duration,
    /// Test hook: while set, every journal write fails with `ENOSPC` after
    /// writing half its bytes (a torn write on a full disk).
    #[doc(hidden)]
    pub inject_write_error: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Test hook: the journal's segment files share a disk of this many
    /// bytes (see `JournalOptions::inject_disk_bytes`).
    #[doc(hidden)]
    pub inject_disk_bytes: Option<u64>,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            persist: Persist::All,
            segment_size: JournalOptions::default().segment_size,
            fsync: true,
            group_window: JournalOptions::default().group_window,
            inject_write_error: None,
            inject_disk_bytes: None,
        }
    }
}

/// What the journal's writer thread reports, read by the event loop.
#[derive(Default)]
struct Events {
    /// The highest failed ticket not yet reported to the engine, with why.
    failed: Mutex<Option<(u64, String)>>,
    /// Why the last failed write failed.
    last_error: Mutex<String>,
    /// The event loop's wake-up (set once, after the journal is open).
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Events {
    fn on_commit(&self, ev: CommitEvent) {
        if let CommitEvent::Failed { ticket, error } = ev {
            // The journal logs the failure itself (not once per retry).
            tracing::debug!("journal write failed (commits up to {ticket}): {error}");
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error.to_string();
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if f.as_ref().is_none_or(|(t, _)| *t < ticket) {
                *f = Some((ticket, error.to_string()));
            }
        }
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }
}

/// Messages kept in a journal on disk; RECEIPTs wait for their group's
/// fsync.
pub struct DurableStore {
    dir: PathBuf,
    journal: Journal,
    recovered: Option<Recovered>,
    persist: Persist,
    /// The largest record a segment takes.
    max_record: u64,
    events: Arc<Events>,
    /// Messages appended this turn, written at [`Store::commit`] unless
    /// removed before (`None`).
    pending: Vec<Option<StoredMessage>>,
    /// Where each pending message is in `pending`.
    pending_at: std::collections::HashMap<u64, usize>,
    /// Appends, removals and deliveries handed over so far (`Store::changes`).
    changes: u64,
    /// Transactions of this turn: ranges of `pending` written as groups.
    groups: Vec<std::ops::Range<usize>>,
    /// Where in `pending` the open transaction began.
    group_start: Option<usize>,
    /// Removals of this turn, written after its appends: a crash that tears
    /// the group keeps a message twice rather than not at all, and a
    /// message removed and appended again in one turn (moved to a
    /// dead-letter queue) is written as one record.
    removes: Vec<u64>,
    /// An append that failed this turn (too big for a segment): the turn's
    /// RECEIPTs become ERRORs.
    append_error: Option<io::Error>,
    /// Holds the `flock` on `DIR/lock` while open.
    _lock: File,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("dir", &self.dir)
            .field("persist", &self.persist)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl DurableStore {
    /// Hands one unit of this turn's messages to the journal: a
    /// transaction's as one group, or a single message. `removes` are this
    /// turn's removals; a message removed and appended again is a move
    /// (one record), and leaves them.
    fn write_unit(
        &mut self,
        unit: Vec<StoredMessage>,
        removes: &mut std::collections::HashSet<u64>,
    ) {
        let about: Vec<(u64, ByteString, usize)> = unit
            .iter()
            .map(|m| (m.seq, m.queue.clone(), m.body.len()))
            .collect();
        let records = unit
            .into_iter()
            .map(|m| {
                let moved = removes.remove(&m.seq);
                let record = Record {
                    queue: m.queue.as_bytes().clone(),
                    seq: m.seq,
                    headers: encode_headers(&m.headers),
                    body: m.body,
                    deliveries: m.deliveries,
                };
                (record, moved)
            })
            .collect();
        let written = self.journal.append_group(records);
        for ((seq, queue, len), written) in about.into_iter().zip(written) {
            if let Err(e) = written {
                tracing::error!("message {seq} to {} not stored: {e}", &*queue);
                self.append_error.get_or_insert(io::Error::new(
                    e.kind(),
                    format!(
                        "a message of {len} bytes could not be stored: {e} (a message must fit in one journal segment: raise --segment-size)"
                    ),
                ));
            }
        }
    }

    /// Creates `dir` if needed, locks it against a second broker, and opens
    /// the journal in it (reading back what is there; a torn or damaged
    /// tail is cut off with a log line).
    pub fn open(dir: &Path, options: DurableOptions) -> io::Result<DurableStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            let why = if dir.exists() && !dir.is_dir() {
                "it exists and is not a directory; give --data-dir a directory".to_owned()
            } else {
                e.to_string()
            };
            io::Error::new(
                e.kind(),
                format!("cannot create data directory {}: {why}", dir.display()),
            )
        })?;
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let lock = lock_dir(&dir)?;
        let events = Arc::new(Events::default());
        let ev = events.clone();
        let opts = JournalOptions {
            segment_size: options.segment_size,
            fsync: options.fsync,
            group_window: options.group_window,
            inject_write_error: options.inject_write_error.clone(),
            inject_disk_bytes: options.inject_disk_bytes,
            retry_interval: if options.inject_disk_bytes.is_some() {
                std::time::Duration::from_millis(20)
            } else {
                JournalOptions::default().retry_interval
            },
            ..JournalOptions::default()
        };
        let (journal, recovered) = Journal::open(&dir, opts, Box::new(move |e| ev.on_commit(e)))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open the journal in {}: {e}", dir.display()),
                )
            })?;
        for cut in &recovered.cuts {
            tracing::warn!(
                "recovery: {} in {} at byte {}: {} bytes {}",
                cut.reason,
                cut.segment.display(),
                cut.offset,
                cut.dropped_bytes,
                if cut.truncated { "cut off" } else { "skipped" }
            );
        }
        tracing::info!(
            "store: journal in {} (persist {}, fsync {}, segments of {} bytes): {} messages recovered ({} segment files read)",
            dir.display(),
            options.persist.as_str(),
            if options.fsync { "on" } else { "OFF" },
            options.segment_size,
            recovered.messages.len(),
            recovered.segments,
        );
        Ok(DurableStore {
            dir,
            journal,
            recovered: Some(recovered),
            persist: options.persist,
            max_record: Record::max_len(options.segment_size),
            events,
            pending: Vec::new(),
            pending_at: Default::default(),
            changes: 0,
            groups: Vec::new(),
            group_start: None,
            removes: Vec::new(),
            append_error: None,
            _lock: lock,
        })
    }

    /// The data directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sizes of the journal (segments, live messages, bytes on disk).
    pub fn stats(&self) -> stomp_store::Stats {
        self.journal.stats()
    }
}

/// Takes an exclusive `flock` on `DIR/lock` (released when the file is
/// closed, i.e. when the broker exits, however it exits) and writes our pid
/// into it for whoever looks.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    // Called through the trait: std's inherent `File::try_lock` is newer
    // than the workspace's rust-version.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let other = std::fs::read_to_string(&path).unwrap_or_default();
            let other = other.trim();
            let by = if other.is_empty() {
                String::new()
            } else {
                format!(" (pid {other})")
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is in use by another broker{by}; stop it, or give this one another --data-dir",
                    dir.display()
                ),
            ));
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot lock {}: {e}", path.display()),
            ));
        }
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

impl Store for DurableStore {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn recover(&mut self) -> io::Result<Recovery> {
        let Some(rec) = self.recovered.take() else {
            return Ok(Recovery::default());
        };
        let mut messages = Vec::with_capacity(rec.messages.len());
        for r in rec.messages {
            // The journal hands back only records whose checksum held; a
            // blob we cannot read is still not delivered half-understood.
            let (Ok(queue), Some(headers)) = (
                ByteString::try_from(r.queue.clone()),
                decode_headers(&r.headers),
            ) else {
                tracing::warn!(
                    "recovery: message {} has unreadable headers; dropped",
                    r.seq
                );
                continue;
            };
            messages.push(StoredMessage {
                seq: r.seq,
                queue,
                headers,
                body: r.body,
                deliveries: r.deliveries,
            });
        }
        Ok(Recovery {
            messages,
            max_seq: rec.max_seq,
        })
    }

    fn append(&mut self, m: &StoredMessage) -> io::Result<()> {
        if self.persist == Persist::Persistent && !is_persistent(&m.headers) {
            return Ok(());
        }
        // Held until the turn's commit: a message consumed in the same turn
        // (an auto-ack subscriber was waiting) is never written at all.
        self.changes += 1;
        self.pending_at.insert(m.seq, self.pending.len());
        self.pending.push(Some(m.clone()));
        Ok(())
    }

    fn unavailable(&self, _queue: &str, headers: &Headers) -> Option<String> {
        if !self.journal.is_failing()
            || (self.persist == Persist::Persistent && !is_persistent(headers))
        {
            return None;
        }
        Some(
            self.events
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    fn held_bytes(&self, _queue: &str, headers: &Headers) -> usize {
        if self.persist == Persist::Persistent && !is_persistent(headers) {
            return 0;
        }
        // The journal's index entry (the record, for compaction) and the
        // encoded headers: measured, a queued message takes 200-260 bytes
        // more RSS than with `--memory` (10- to 1,000-byte bodies).
        JOURNAL_OVERHEAD + encoded_len(headers)
    }

    fn too_large(&self, queue: &str, headers: &Headers, body_len: usize) -> Option<u64> {
        if self.persist == Persist::Persistent && !is_persistent(headers) {
            return None;
        }
        let len = Record::len_of(queue.len(), encoded_len(headers), body_len);
        (len > self.max_record).then_some(self.max_record)
    }

    fn remove(&mut self, _queue: &str, seq: u64) -> io::Result<()> {
        if let Some(at) = self.pending_at.remove(&seq) {
            self.changes += 1;
            self.pending[at] = None;
        } else if self.journal.contains(seq) {
            self.changes += 1;
            self.removes.push(seq);
        }
        Ok(())
    }

    fn delivered(&mut self, _queue: &str, seq: u64) -> io::Result<()> {
        self.changes += 1;
        if let Some(&at) = self.pending_at.get(&seq) {
            if let Some(m) = self.pending[at].as_mut() {
                m.deliveries += 1;
            }
        } else {
            self.journal.delivered(seq);
        }
        Ok(())
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn changes(&self) -> u64 {
        self.changes
    }

    fn commit(&mut self) -> io::Result<u64> {
        self.pending_at.clear();
        let mut removes: std::collections::HashSet<u64> = self.removes.iter().copied().collect();
        // One unit per transaction (a group: all or nothing after a crash),
        // one per other message.
        let mut groups = std::mem::take(&mut self.groups).into_iter().peekable();
        let mut unit = Vec::new();
        let mut group_end = None;
        for (i, m) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            if group_end.is_none() && groups.peek().is_some_and(|g| g.start == i) {
                group_end = groups.next().map(|g| g.end);
            }
            unit.extend(m);
            if group_end.is_none_or(|end| i + 1 == end) {
                group_end = None;
                self.write_unit(std::mem::take(&mut unit), &mut removes);
            }
        }
        for seq in std::mem::take(&mut self.removes) {
            if removes.contains(&seq) {
                self.journal.remove(seq);
            }
        }
        let ticket = self.journal.commit();
        match self.append_error.take() {
            Some(e) => Err(e),
            None => Ok(ticket),
        }
    }

    fn begin_group(&mut self) {
        self.group_start = Some(self.pending.len());
    }

    fn end_group(&mut self) {
        if let Some(start) = self.group_start.take()
            && self.pending.len() > start + 1
        {
            self.groups.push(start..self.pending.len());
        }
    }

    fn durable_ticket(&self) -> u64 {
        self.journal.durable_ticket()
    }

    fn failed_ticket(&mut self) -> Option<(u64, String)> {
        self.events
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn set_wakeup(&mut self, wake: Box<dyn Fn() + Send + Sync>) {
        if self.events.wake.set(wake).is_err() {
            tracing::warn!("store wake-up set twice; the first one stays");
        }
    }
}

/// `persistent:true`, in any case (ActiveMQ reads the value as a Java
/// boolean: `TRUE` counts too).
fn is_persistent(headers: &Headers) -> bool {
    headers
        .get("persistent")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Memory the journal keeps per live message beyond its encoded headers
/// (see `held_bytes`).
const JOURNAL_OVERHEAD: usize = 256;

/// The length of [`encode_headers`]'s blob.
fn encoded_len(headers: &Headers) -> usize {
    headers
        .iter()
        .map(|h| 8 + h.name().len() + h.value().len())
        .sum()
}

/// `[u32 LE len][name][u32 LE len][value]` per header, in order.
pub(crate) fn encode_headers(headers: &Headers) -> Bytes {
    let mut b = BytesMut::with_capacity(encoded_len(headers));
    for h in headers.iter() {
        b.put_u32_le(h.name().len() as u32);
        b.put_slice(h.name().as_bytes());
        b.put_u32_le(h.value().len() as u32);
        b.put_slice(h.value().as_bytes());
    }
    b.freeze()
}

/// The inverse of [`encode_headers`]; `None` if the blob is malformed
/// (cut short, or not UTF-8). Names and values share the blob's memory.
pub(crate) fn decode_headers(blob: &Bytes) -> Option<Headers> {
    let mut headers = Headers::with_capacity(4);
    let mut at = 0usize;
    let take = |at: &mut usize| -> Option<ByteString> {
        let len_end = at.checked_add(4)?;
        let len = u32::from_le_bytes(blob.get(*at..len_end)?.try_into().ok()?) as usize;
        let end = len_end.checked_add(len)?;
        if end > blob.len() {
            return None;
        }
        *at = end;
        ByteString::try_from(blob.slice(len_end..end)).ok()
    };
    while at < blob.len() {
        let name = take(&mut at)?;
        let value = take(&mut at)?;
        headers.push_header(Header::new(name, value));
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_and_wait(s: &mut DurableStore) {
        let t = s.commit().unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.durable_ticket() < t {
            assert!(std::time::Instant::now() < until, "commit {t} not durable");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_move_to_a_dead_letter_queue_is_written_as_one_record() {
        // Removed and appended again in one turn: if it were a REMOVE then an
        // APPEND, a write torn between them would lose the message.
        let tmp = tempfile::tempdir().unwrap();
        let opts = || DurableOptions {
            persist: Persist::All,
            segment_size: 1 << 20,
            fsync: false,
            group_window: std::time::Duration::ZERO,
            ..DurableOptions::default()
        };
        let mut s = DurableStore::open(tmp.path(), opts()).unwrap();
        s.recover().unwrap();
        let m = StoredMessage {
            seq: 1,
            queue: ByteString::from("/queue/q"),
            headers: Headers::with_capacity(0),
            body: Bytes::from_static(b"body"),
            deliveries: 0,
        };
        s.append(&m).unwrap();
        commit_and_wait(&mut s);
        s.remove("/queue/q", 1).unwrap();
        let mut dead = m.clone();
        dead.queue = ByteString::from("/queue/DLQ.q");
        s.append(&dead).unwrap();
        commit_and_wait(&mut s);
        drop(s);
        let seg = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        bytes[end] = 0; // the last write torn by one byte
        std::fs::write(&seg, &bytes).unwrap();
        let mut s = DurableStore::open(tmp.path(), opts()).unwrap();
        let r = s.recover().unwrap();
        assert_eq!(r.messages.len(), 1, "the message survived the torn move");
        assert_eq!(&*r.messages[0].queue, "/queue/q");
    }

    #[test]
    fn headers_round_trip_and_bad_blobs_are_refused() {
        let mut h = Headers::with_capacity(3);
        h.push("content-type", "text/plain");
        h.push("x", "a:b\nc\\é");
        h.push("x", "second");
        h.push("", "");
        let blob = encode_headers(&h);
        let back = decode_headers(&blob).unwrap();
        let pairs = |h: &Headers| {
            h.iter()
                .map(|x| (x.name().to_owned(), x.value().to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&back), pairs(&h));
        assert_eq!(decode_headers(&Bytes::new()).unwrap().len(), 0);
        // Cut anywhere: a header boundary decodes to the headers before it,
        // anything else is refused.
        let mut ends = Vec::new();
        let mut end = 0;
        for x in h.iter() {
            end += 8 + x.name().len() + x.value().len();
            ends.push(end);
        }
        for cut in 1..blob.len() {
            let got = decode_headers(&blob.slice(..cut));
            match ends.iter().position(|&e| e == cut) {
                Some(i) => assert_eq!(got.map(|g| g.len()), Some(i + 1), "cut at {cut}"),
                None => assert!(got.is_none(), "cut at {cut}"),
            }
        }
        let mut bad = BytesMut::new();
        bad.put_u32_le(1);
        bad.put_u8(0xff);
        bad.put_u32_le(0);
        assert!(decode_headers(&bad.freeze()).is_none());
    }
}
