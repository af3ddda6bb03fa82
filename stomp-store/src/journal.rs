//! The journal handle the event loop holds.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use crate::format::{GROUP_RECORD, MAGIC, SEQ_RECORD};
use crate::recover::{self, Books, Seg};
use crate::writer::{Batch, Op, Shared, Writer};
use crate::{CommitEvent, JournalOptions, Notify, Record, Recovered};

/// The journal: an append-only log of messages in segment files, written by
/// a thread of its own.
///
/// Every method returns at once (the disk is touched only by
/// [`open`](Journal::open) and by the writer thread). Dropping the journal
/// lets the writer finish the batches already committed (blocking until they
/// are written) and stops it; what was appended but not committed is lost.
pub struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    books: Books,
    active: u64,
    ops: Vec<Op>,
    op_bytes: usize,
    /// Set while a group is placed: its records stay in one segment, however
    /// big it grows.
    unbounded: bool,
    /// The active segment, if it held nothing that recovery needs when the
    /// last commit was handed over (see `restart_if_dead`).
    dead_at_commit: Option<u64>,
    ticket: u64,
    shared: Arc<Shared>,
    notify: Arc<dyn Fn(CommitEvent) + Send + Sync>,
    tx: Option<mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
}

/// Sizes, for monitoring and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Segment files (including ones scheduled for deletion by a batch not yet
    /// written, excluding ones already scheduled).
    pub segments: usize,
    /// Live messages.
    pub live_messages: usize,
    /// Bytes their records take.
    pub live_bytes: u64,
    /// Bytes of records in all segment files (as written or scheduled; the
    /// files are longer by the zeros written ahead).
    pub file_bytes: u64,
    /// Group commits written so far (one fsync each, when fsync is on): the
    /// commits per write tell how well producers share fsyncs.
    pub writes: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("active", &self.active)
            .field("ticket", &self.ticket)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, reads back what is in it and
    /// starts the writer thread, which calls `notify` for every commit.
    ///
    /// A torn or damaged tail of the newest segment is cut off (truncated),
    /// damage in an older segment makes the rest of that segment skipped;
    /// either way with a `tracing::warn!` and an entry in
    /// [`Recovered::cuts`], never an error. Errors are for what prevents
    /// reading or writing at all (permissions, a missing device...).
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        notify: Notify,
    ) -> io::Result<(Journal, Recovered)> {
        let scan = recover::scan(dir, options.fsync)?;
        let active_len = scan
            .books
            .segs
            .get(&scan.active)
            .map_or(MAGIC.len() as u64, |s| s.bytes);
        let shared = Arc::new(Shared::default());
        // A disk with less than a segment free (or smaller than one) when
        // the journal opens counts as short of space already: the active
        // segment, once emptied, is restarted before the next message
        // rather than after a write into it failed (the message that
        // failed would keep it live until a consumer took it).
        if crate::recover::room(dir, &options) < options.segment_size {
            shared.short_of_space.store(true, Ordering::Relaxed);
        }
        let notify = shareable(notify);
        let writer = Writer::new(
            dir.to_path_buf(),
            scan.active,
            active_len,
            options.clone(),
            notify.clone(),
            shared.clone(),
        )?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("stomp-journal".into())
            .spawn(move || writer.run(rx))?;
        let mut messages: Vec<Record> = scan.books.index.values().map(|l| l.rec.clone()).collect();
        messages.sort_unstable_by_key(|r| r.seq);
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            opts: options,
            books: scan.books,
            active: scan.active,
            ops: Vec::new(),
            op_bytes: 0,
            unbounded: false,
            dead_at_commit: None,
            ticket: 0,
            shared,
            notify,
            tx: Some(tx),
            thread: Some(thread),
        };
        let before = journal.books.segs.len();
        journal.maintain();
        let deleted_segments = journal
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Delete { .. }))
            .count();
        if !journal.ops.is_empty() {
            journal.send();
        }
        tracing::info!(
            "journal {}: {} segments, {} live messages, {} segments to delete, {} damaged spots",
            dir.display(),
            before,
            messages.len(),
            deleted_segments,
            scan.cuts.len()
        );
        let recovered = Recovered {
            messages,
            max_seq: scan.max_seq,
            cuts: scan.cuts,
            segments: scan.segments,
            deleted_segments,
        };
        Ok((journal, recovered))
    }

    /// Adds a message to the next commit. Fails at once (nothing written) if
    /// the record cannot be stored: a queue name over 65535 bytes, a record
    /// bigger than a segment, or a `seq` that is already live.
    pub fn append(&mut self, record: Record) -> io::Result<()> {
        self.admit(&record, false)?;
        self.put(record);
        Ok(())
    }

    /// Adds messages to the next commit as one group: after a crash,
    /// recovery gives back all of them or none (a transaction's messages).
    /// Each record comes with whether it replaces a live version (as
    /// [`replace`](Journal::replace)) or is new (as
    /// [`append`](Journal::append)); the results say which were taken, as
    /// those calls would, and the group is the ones taken.
    ///
    /// The group is written into one segment: the active one is closed
    /// first when the group would not fit in what is left of it, and a
    /// group bigger than a whole segment makes that segment as big as it
    /// needs (the next append starts a new one).
    pub fn append_group(&mut self, records: Vec<(Record, bool)>) -> Vec<io::Result<()>> {
        let results: Vec<io::Result<()>> = records
            .iter()
            .map(|(r, replace)| self.admit(r, *replace))
            .collect();
        let taken: Vec<Record> = records
            .into_iter()
            .zip(&results)
            .filter(|(_, ok)| ok.is_ok())
            .map(|((r, _), _)| r)
            .collect();
        let bytes = GROUP_RECORD + taken.iter().map(Record::encoded_len).sum::<u64>();
        let group = taken.len() > 1 && u32::try_from(taken.len()).is_ok();
        if group {
            self.restart_if_dead();
            let used = self.books.segs.get(&self.active).map_or(0, |s| s.bytes);
            if used + bytes > self.opts.segment_size && used > MAGIC.len() as u64 {
                self.roll();
            }
            self.place(GROUP_RECORD);
            self.ops.push(Op::Group(taken.len() as u32));
            self.unbounded = true;
        }
        for r in taken {
            self.put(r);
        }
        self.unbounded = false;
        results
    }

    /// Whether `record` may be appended (`replace`: replace a live version).
    fn admit(&self, record: &Record, replace: bool) -> io::Result<()> {
        let live = self.books.index.contains_key(&record.seq);
        if replace && !live {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seq not live in the journal",
            ));
        }
        self.check(record)?;
        if !replace && live {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seq already live in the journal",
            ));
        }
        Ok(())
    }

    /// Places and schedules an admitted record.
    fn put(&mut self, record: Record) {
        if !self.unbounded {
            self.restart_if_dead();
        }
        let size = record.encoded_len();
        let at = self.place(size);
        let rec = record.clone();
        let replaces = self.books.put(at, record, size);
        self.ops.push(Op::Append { rec, replaces });
    }

    /// After a failed write, before a message goes into an active segment
    /// that holds nothing recovery needs (no live message, no kill of an
    /// older segment's message: everything in it was consumed), starts a
    /// new segment in its place, the old file deleted first
    /// ([`Op::Restart`]). The active segment is never deleted otherwise, so
    /// on a disk smaller than a segment, or filled up to the active one,
    /// the room that consumers freed would never come back.
    ///
    /// The segment must have been dead already when the last commit was
    /// handed over: a message removed in this commit may be appended again
    /// in it (moved to another queue), and its old copy must stay until the
    /// new one is written. Removals handed over before need no such care:
    /// what they removed is gone either way.
    fn restart_if_dead(&mut self) {
        let dead = self.dead_at_commit == Some(self.active) && self.active_is_dead();
        if !dead || !self.shared.short_of_space.swap(false, Ordering::Relaxed) {
            return;
        }
        let old = self.active;
        self.books.segs.remove(&old);
        let new = self.start_segment();
        self.ops.push(Op::Restart { old, new });
    }

    /// Removes message `seq` for good (it was acknowledged), with the next
    /// commit. Returns `false` (and writes nothing) if `seq` is not live.
    pub fn remove(&mut self, seq: u64) -> bool {
        if !self.books.index.contains_key(&seq) {
            return false;
        }
        let at = self.place(SEQ_RECORD);
        self.books.drop_seq(seq, at);
        self.ops.push(Op::Remove(seq));
        true
    }

    /// Records that message `seq` was delivered once more (recovery gives the
    /// count back in [`Record::deliveries`]), with the next commit. Returns
    /// `false` if `seq` is not live. Optional: a broker that marks every
    /// recovered message redelivered need not call it.
    pub fn delivered(&mut self, seq: u64) -> bool {
        if !self.books.index.contains_key(&seq) {
            return false;
        }
        let at = self.place(SEQ_RECORD);
        self.books.deliver(seq, at);
        self.ops.push(Op::Deliver(seq));
        true
    }

    /// Writes a new version of live message `record.seq` (moved to another
    /// queue, say) with the next commit, as one record: recovery keeps the
    /// newest version, so a crash leaves either the old one or the new one,
    /// never neither (a [`remove`](Journal::remove) then an
    /// [`append`](Journal::append) torn between the two would). Fails like
    /// `append`, and if `seq` is not live.
    pub fn replace(&mut self, record: Record) -> io::Result<()> {
        self.admit(&record, true)?;
        self.put(record);
        Ok(())
    }

    /// Whether `record` fits the format and a segment.
    fn check(&self, record: &Record) -> io::Result<()> {
        let size = record.encoded_len();
        if record.queue.len() > u16::MAX as usize
            || size > Record::max_len(self.opts.segment_size)
            || size > u32::MAX as u64
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "record too large for the journal",
            ));
        }
        Ok(())
    }

    /// Hands everything appended, removed or delivered since the last commit
    /// to the writer thread and returns its ticket. Tickets increase by one
    /// per commit that had something to write; with nothing new, the last
    /// ticket is returned again (it is durable when the one before was).
    /// Call once per event-loop turn, after the turn's appends.
    pub fn commit(&mut self) -> u64 {
        if self.ops.is_empty() {
            return self.ticket;
        }
        self.maintain();
        self.dead_at_commit = self.active_is_dead().then_some(self.active);
        self.send()
    }

    /// Whether the active segment holds nothing that recovery needs: no
    /// live message, no kill of a message in an older segment.
    fn active_is_dead(&self) -> bool {
        self.books
            .segs
            .get(&self.active)
            .is_some_and(|s| s.seqs.is_empty() && s.waits_on == 0 && s.bytes > MAGIC.len() as u64)
    }

    /// The highest ticket known to be on disk.
    pub fn durable_ticket(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Whether the last write failed (a full disk, say) and what waits
    /// behind it is not written yet: new messages would only wait too.
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    /// The last ticket [`commit`](Journal::commit) returned.
    pub fn last_ticket(&self) -> u64 {
        self.ticket
    }

    /// Whether `seq` is live (appended and not removed).
    pub fn contains(&self, seq: u64) -> bool {
        self.books.index.contains_key(&seq)
    }

    /// Sizes of the journal.
    pub fn stats(&self) -> Stats {
        Stats {
            segments: self.books.segs.len(),
            live_messages: self.books.index.len(),
            live_bytes: self.books.segs.values().map(|s| s.live_bytes).sum(),
            file_bytes: self.books.segs.values().map(|s| s.bytes).sum(),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }

    fn send(&mut self) -> u64 {
        self.ticket += 1;
        let batch = Batch {
            appends: self
                .ops
                .iter()
                .filter(|op| matches!(op, Op::Append { .. }))
                .count(),
            sent: std::time::Instant::now(),
            ops: std::mem::take(&mut self.ops),
            bytes: self.op_bytes,
            ticket: self.ticket,
        };
        self.op_bytes = 0;
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if !sent {
            (self.notify)(CommitEvent::Failed {
                ticket: self.ticket,
                error: Arc::new(io::Error::other("the journal writer thread is gone")),
            });
        }
        self.ticket
    }

    /// Chooses the segment for a record of `size` bytes, starting a new one
    /// when the active one would grow past the segment size.
    fn place(&mut self, size: u64) -> u64 {
        let bytes = self.books.segs.get(&self.active).map_or(0, |s| s.bytes);
        if bytes + size > self.opts.segment_size && bytes > MAGIC.len() as u64 && !self.unbounded {
            self.roll();
        }
        self.books
            .segs
            .get_mut(&self.active)
            .expect("active segment exists")
            .bytes += size;
        self.op_bytes += size as usize;
        self.active
    }

    /// Starts a new active segment.
    fn roll(&mut self) {
        let id = self.start_segment();
        self.ops.push(Op::Roll(id));
    }

    /// Makes the next segment the active one in the books; returns its id.
    fn start_segment(&mut self) -> u64 {
        self.active += 1;
        self.books.segs.insert(
            self.active,
            Seg {
                bytes: MAGIC.len() as u64,
                ..Seg::default()
            },
        );
        self.active
    }

    /// Compaction and deletion, appended to the pending batch: copies live
    /// messages out of mostly dead segments (or out of the segment the most
    /// dead ones wait on), unless writes are failing, then schedules every
    /// segment that may go.
    fn maintain(&mut self) {
        // Nothing is copied while writes fail (for lack of room, mostly).
        let mut budget = if self.shared.failing.load(Ordering::Relaxed) {
            0
        } else {
            self.opts.compact_bytes_per_commit
        };
        let mut room = None;
        while budget > 0 {
            let Some(victim) = self.compaction_victim() else {
                break;
            };
            // A copy needs room, and one that cannot be written holds back
            // the deletion of its segment (its original is the message until
            // the copy is on disk) and of every segment waiting on that one:
            // on a nearly full disk, compaction would take the room it means
            // to free. So only with twice its size free, and the zeros ahead.
            let live = self.books.segs.get(&victim).map_or(0, |s| s.live_bytes);
            let free = room.get_or_insert_with(|| crate::recover::room(&self.dir, &self.opts));
            let copy = live.min(budget);
            if *free < 2 * copy + self.opts.preallocate {
                break;
            }
            *free -= copy;
            let mut seqs: Vec<u64> = self
                .books
                .segs
                .get(&victim)
                .map(|s| s.seqs.iter().copied().collect())
                .unwrap_or_default();
            seqs.sort_unstable();
            for seq in seqs {
                if budget == 0 {
                    break;
                }
                let (rec, size) = {
                    let live = &self.books.index[&seq];
                    (live.rec.clone(), live.size)
                };
                let at = self.place(size);
                self.ops.push(Op::Append {
                    rec: rec.clone(),
                    replaces: Some(victim),
                });
                self.books.put(at, rec, size);
                budget = budget.saturating_sub(size);
            }
        }
        for (id, killers) in self.books.collect_dead(self.active) {
            self.ops.push(Op::Delete { id, killers });
        }
    }

    fn compaction_victim(&self) -> Option<u64> {
        let active = self.active;
        let candidates = || {
            self.books
                .segs
                .iter()
                .filter(move |(id, s)| **id != active && !s.seqs.is_empty())
        };
        let waiting: Vec<u64> = self
            .books
            .segs
            .iter()
            .filter(|(id, s)| **id != active && s.seqs.is_empty() && s.waits_on > 0)
            .map(|(id, _)| *id)
            .collect();
        if self.books.segs.len() <= self.opts.slack_segments {
            return None;
        }
        if waiting.len() > self.opts.slack_segments {
            // The oldest live segment that a waiting one has a kill in.
            if let Some((id, _)) = candidates()
                .find(|(_, s)| s.killers.keys().any(|k| waiting.binary_search(k).is_ok()))
            {
                return Some(*id);
            }
        }
        let limit = (self.opts.segment_size as f64 * self.opts.compact_below) as u64;
        candidates()
            .find(|(_, s)| s.live_bytes < limit)
            .map(|(id, _)| *id)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("journal writer thread panicked");
        }
    }
}

/// Lets a `Send`-only callback be shared between the journal (which reports
/// a dead writer) and the writer thread.
fn shareable(notify: Notify) -> Arc<dyn Fn(CommitEvent) + Send + Sync> {
    let notify = std::sync::Mutex::new(notify);
    Arc::new(move |ev| {
        let f = notify.lock().unwrap_or_else(|p| p.into_inner());
        f(ev)
    })
}
