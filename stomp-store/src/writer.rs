//! The writer thread: writes the batches the event loop commits, all queued
//! batches at once with one fsync (group commit), reports tickets durable,
//! then deletes the segments the batches made dead.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use crate::format::{self, KIND_DELIVER, KIND_REMOVE, MAGIC};
use crate::recover::{create_segment, seg_path, sync_dir};
use crate::{CommitEvent, JournalOptions, Record};

/// One step of a batch, in log order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Start segment `id` and write the following records there.
    Roll(u64),
    /// Delete segment `old`, the active one, which holds nothing that
    /// recovery needs (no live message, no kill of an older segment's), and
    /// start segment `new` in its place. Unlike a [`Roll`](Op::Roll) then a
    /// [`Delete`](Op::Delete), the old file goes first, so that a disk that
    /// it filled has room for the new one (see `Journal::restart_if_dead`);
    /// the records placed in it before are not written at all.
    Restart {
        old: u64,
        new: u64,
    },
    /// A message; `replaces`: the segment holding the version it replaces
    /// (a move to another queue, a compaction copy), if any.
    Append {
        rec: Record,
        replaces: Option<u64>,
    },
    Remove(u64),
    Deliver(u64),
    /// The next `n` appends are one group (see `Journal::append_group`).
    Group(u32),
    /// Delete segment `id` once the batch is on disk; `killers`: the
    /// segments holding kills of its messages, which must outlive it.
    Delete {
        id: u64,
        killers: Vec<u64>,
    },
}

/// What one [`Journal::commit`](crate::Journal::commit) hands over.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) ops: Vec<Op>,
    /// Messages (APPEND records) in the batch.
    pub(crate) appends: usize,
    /// When the journal sent it.
    pub(crate) sent: Instant,
    pub(crate) bytes: usize,
    pub(crate) ticket: u64,
}

/// State shared with the journal.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) durable: AtomicU64,
    /// Writes (each with its fsync) done so far.
    pub(crate) writes: AtomicU64,
    /// The last write failed: the journal compacts nothing meanwhile (a copy
    /// needs the room that is missing, and would hold back the removals
    /// that free some, see `Writer::write_ahead`).
    pub(crate) failing: std::sync::atomic::AtomicBool,
    /// A write failed since the journal last restarted a dead active
    /// segment: the next message that would go into an active segment
    /// holding nothing live starts a new one in its place
    /// (`Journal::restart_if_dead`), so a disk smaller than a segment, or
    /// filled by the active one, gets its space back once consumers have
    /// emptied it.
    pub(crate) short_of_space: std::sync::atomic::AtomicBool,
}

pub(crate) struct Writer {
    dir: PathBuf,
    /// The segment being appended to, and how much of it is durable.
    seg: u64,
    /// `None` only while a restart (`Op::Restart`) is between deleting
    /// the old file and creating the new one.
    file: Option<File>,
    len: u64,
    /// The active segment's file length: bytes from `len` to here are
    /// zeros written ahead (`JournalOptions::preallocate`).
    zeroed: u64,
    opts: JournalOptions,
    notify: Arc<dyn Fn(CommitEvent) + Send + Sync>,
    shared: Arc<Shared>,
    /// Set when the tail could not be restored after a failed write: nothing
    /// more is written (what is durable stays intact).
    poisoned: Option<Arc<io::Error>>,
    /// Set when an unlink failed: no further segment is deleted (the order
    /// of deletions matters, see `recover`).
    no_deletes: bool,
    failed_reported: u64,
}

impl Writer {
    pub(crate) fn new(
        dir: PathBuf,
        seg: u64,
        len: u64,
        opts: JournalOptions,
        notify: Arc<dyn Fn(CommitEvent) + Send + Sync>,
        shared: Arc<Shared>,
    ) -> io::Result<Writer> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(seg_path(&dir, seg))?;
        let zeroed = file.metadata()?.len().max(len);
        Ok(Writer {
            dir,
            seg,
            file: Some(file),
            len,
            zeroed,
            opts,
            notify,
            shared,
            poisoned: None,
            no_deletes: false,
            failed_reported: 0,
        })
    }

    /// Runs until the journal drops its sender; finishes what was queued.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Batch>) {
        let mut retry: Vec<Batch> = Vec::new();
        let mut closed = false;
        // When the last write ended, and whether producers were many then.
        let mut last_end = Instant::now();
        let mut last_took = std::time::Duration::ZERO;
        let mut busy = false;
        let mut last_appends = 0;
        // The highest ticket written ahead of failed batches, reported
        // durable once they are written too.
        let mut ahead_top = 0;
        let mut failures = FailureLog::default();
        // While batches wait after a failed write: when to try again, and
        // why it failed.
        let mut next_try = Instant::now();
        let mut last_error: Option<Arc<io::Error>> = None;
        loop {
            let mut batches = std::mem::take(&mut retry);
            let failed = batches.len();
            let mut bytes: usize = batches.iter().map(|b| b.bytes).sum();
            if !closed {
                let first = if batches.is_empty() {
                    rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(next_try.saturating_duration_since(Instant::now()))
                };
                match first {
                    Ok(b) => {
                        bytes += b.bytes;
                        batches.push(b);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
                }
                while failed > 0 || bytes < self.opts.max_batch_bytes {
                    match rx.try_recv() {
                        Ok(b) => {
                            bytes += b.bytes;
                            batches.push(b);
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if failed > 0 && self.poisoned.is_none() {
                ahead_top = ahead_top.max(self.write_ahead(&mut batches));
                if batches.is_empty() && ahead_top > 0 {
                    // All that waited was written ahead or cancelled.
                    failures.over();
                    last_error = None;
                    self.shared.failing.store(false, Ordering::Relaxed);
                    self.shared.durable.store(ahead_top, Ordering::Release);
                    (self.notify)(CommitEvent::Durable(ahead_top));
                    ahead_top = 0;
                }
                if !closed && !batches.is_empty() && Instant::now() < next_try {
                    // Not yet time to try the failed write again: what comes
                    // meanwhile waits with it (trying at every commit would
                    // spin the disk and the CPU on a write that cannot fit),
                    // and is reported failed at once, so that the frames
                    // waiting on it are answered (an ACK's RECEIPT) without
                    // waiting for the next try.
                    if let Some(e) = &last_error {
                        let top = batches.iter().map(|b| b.ticket).max().unwrap_or(0);
                        self.report_failure(top.max(ahead_top), e.clone());
                    }
                    retry = batches;
                    continue;
                }
            }
            if !closed && failed == 0 && !batches.is_empty() {
                let window = self.opts.group_window.min(last_took);
                let want = if busy { last_appends } else { 0 };
                closed = self.gather(&rx, &mut batches, &mut bytes, last_end, window, want);
            }
            if batches.is_empty() {
                if closed {
                    return;
                }
                continue;
            }
            // Several messages in one write: several producers (the event
            // loop often reads all their SENDs in one turn, one batch), or
            // one that does not wait for each receipt.
            last_appends = batches.iter().map(|b| b.appends).sum();
            busy = last_appends > 1;
            let top = batches
                .iter()
                .map(|b| b.ticket)
                .max()
                .unwrap_or(0)
                .max(ahead_top);
            if let Some(err) = &self.poisoned {
                self.report_failure(top, err.clone());
                if closed {
                    return;
                }
                continue;
            }
            // After a failure, the batches that waited are written one at a
            // time, so that as many as the room allows get through (all at
            // once, a backlog bigger than the free space would never fit).
            let n = if failed > 0 { 1 } else { batches.len() };
            let started = Instant::now();
            match self.write(&batches[..n].iter().collect::<Vec<_>>()) {
                Ok(deletes) => {
                    let rest = batches.split_off(n);
                    // Every ticket below the first one still waiting is on
                    // disk (written now, before, or ahead).
                    let durable = match rest.first() {
                        Some(b) => b.ticket - 1,
                        None => std::mem::take(&mut ahead_top).max(top),
                    };
                    if rest.is_empty() {
                        failures.over();
                        last_error = None;
                        self.shared.failing.store(false, Ordering::Relaxed);
                    }
                    last_end = Instant::now();
                    last_took = last_end - started;
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    self.shared.durable.store(durable, Ordering::Release);
                    (self.notify)(CommitEvent::Durable(durable));
                    self.delete(&deletes);
                    // The rest goes at once.
                    next_try = Instant::now();
                    retry = rest;
                }
                Err(e) => {
                    self.shared.failing.store(true, Ordering::Relaxed);
                    self.shared.short_of_space.store(true, Ordering::Relaxed);
                    let e = Arc::new(e);
                    failures.failed(&e);
                    last_error = Some(e.clone());
                    self.report_failure(top, e);
                    if closed {
                        tracing::error!(
                            "journal: closing with unwritten batches (tickets up to {top})"
                        );
                        return;
                    }
                    next_try = Instant::now() + self.opts.retry_interval;
                    retry = batches;
                }
            }
        }
    }

    /// After a failed write, writes the removals and marks (consumers'
    /// ACKs) that wait behind it ahead of it, with the segment deletions
    /// they allow, and takes them out of `batches`: on a disk full to its
    /// last block, the removals that empty segments, and so free space,
    /// must not wait behind a message that needs that space. Returns the
    /// highest ticket of the batches this emptied (0: none); it is reported
    /// durable only once the rest is written too, as a ticket covers every
    /// ticket below it.
    ///
    /// First, a message removed before it was ever written is not written
    /// at all (`cancel_removed_appends`): a consumer that took the message
    /// that did not fit frees the room it needed. Then, in log order, what
    /// can be written first without changing what recovery reads from the
    /// records that stay behind goes ahead:
    /// - a REMOVE or DELIVER, unless a record staying behind starts a
    ///   segment before it (it must land in the segment the journal placed
    ///   it in, which segment deletion relies on), appends the message it
    ///   removes or marks (a tombstone before its message would let the
    ///   message come back), or appends it again after it (a move to another
    ///   queue as a removal then an append: the old copy stays until the new
    ///   one is written);
    /// - a DELETE, unless the DELETE of a segment it holds kills of stays
    ///   behind (a segment's tombstones may only go once the segments they
    ///   kill are gone: `Op::Delete::killers`), or an APPEND staying
    ///   behind replaces a version in the segment it deletes, or a REMOVE of
    ///   a moved message stays behind (its old copy may be there), or the
    ///   segment is started by a record staying behind (deleted before it
    ///   exists, it would then stay). A new segment staying behind does not
    ///   otherwise hold a DELETE back: the segment deleted holds nothing
    ///   live, and the removals that emptied it are acknowledgements, whose
    ///   loss loses nothing (so a disk that filled just as a new segment was
    ///   needed gets room for it).
    fn write_ahead(&mut self, batches: &mut Vec<Batch>) -> u64 {
        cancel_removed_appends(batches);
        let last_append = last_appends(batches);
        let mut staying_appends = std::collections::HashSet::new();
        let mut replaced = std::collections::HashSet::new();
        // Segments whose deletion must wait for one that stays behind.
        let mut held = std::collections::HashSet::new();
        let mut staying_move = false;
        // The first segment that a record staying behind starts.
        let mut first_new: Option<u64> = None;
        let mut ahead: Vec<(usize, usize)> = Vec::new();
        let mut ops = Vec::new();
        for (bi, b) in batches.iter().enumerate() {
            for (oi, op) in b.ops.iter().enumerate() {
                let goes = match op {
                    Op::Remove(s) => {
                        let moved = last_append.get(s).is_some_and(|&p| p > (bi, oi));
                        let goes = first_new.is_none() && !moved && !staying_appends.contains(s);
                        staying_move |= moved && !goes;
                        goes
                    }
                    Op::Deliver(s) => first_new.is_none() && !staying_appends.contains(s),
                    Op::Delete { id, .. } => {
                        !held.contains(id)
                            && !staying_move
                            && !replaced.contains(id)
                            && first_new.is_none_or(|n| *id < n)
                    }
                    Op::Append { rec, replaces } => {
                        staying_appends.insert(rec.seq);
                        replaced.extend(*replaces);
                        false
                    }
                    Op::Group(_) => false,
                    Op::Roll(id) | Op::Restart { new: id, .. } => {
                        first_new = first_new.or(Some(*id));
                        false
                    }
                };
                if goes {
                    ahead.push((bi, oi));
                    ops.push(match op {
                        Op::Remove(s) => Op::Remove(*s),
                        Op::Deliver(s) => Op::Deliver(*s),
                        Op::Delete { id, killers } => Op::Delete {
                            id: *id,
                            killers: killers.clone(),
                        },
                        _ => unreachable!("only these go ahead"),
                    });
                } else if let Op::Delete { killers, .. } = op {
                    held.extend(killers.iter().copied());
                }
            }
        }
        let mut top = 0;
        if !ahead.is_empty() {
            let bytes = ops.iter().map(op_bytes).sum();
            let early = Batch {
                ops,
                appends: 0,
                sent: Instant::now(),
                bytes,
                ticket: 0,
            };
            match self.write(&[&early]) {
                Ok(deletes) => {
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    self.delete(&deletes);
                    drop_ops(batches, &ahead);
                    tracing::debug!(
                        "journal: wrote {} removal(s) ahead of the failed write",
                        ahead.len()
                    );
                }
                // They stay in order with the rest.
                Err(_) => self.shared.short_of_space.store(true, Ordering::Relaxed),
            }
        }
        // Batches with nothing left to write are done once the rest is.
        batches.retain(|b| {
            let done = b.ops.is_empty();
            if done {
                top = top.max(b.ticket);
            }
            !done
        });
        top
    }

    /// The group window: waits a little for more batches before writing, so
    /// that more producers share the fsync. `window` is `group_window` but no
    /// longer than the last write took (waiting longer than an fsync costs
    /// the waiting messages more than it saves the late ones).
    ///
    /// When the last write carried several messages (several producers, or
    /// one that does not wait for each receipt), waits up to `window` from
    /// now, when the first batch is in hand, until as many messages as it
    /// carried (`want`) have come on top of those that were already waiting
    /// during it: the producers it answered are sending their next messages
    /// right now, and both groups then share one fsync instead of
    /// alternating. The wait counts from the first of them rather than from
    /// the end of the last write, because the answered producers take about
    /// as long as an fsync to come back (their RECEIPTs go out one by one,
    /// then their SENDs are read): counted from the end of the write, the
    /// window often closed just before the last of them, and the group
    /// split and stayed split (docs/store.md has the trace).
    ///
    /// When all there is to write are removals (acks, which nobody usually
    /// waits for), waits up to `window` for a batch with messages to come
    /// along. Returns whether the journal was dropped meanwhile.
    fn gather(
        &self,
        rx: &mpsc::Receiver<Batch>,
        batches: &mut Vec<Batch>,
        bytes: &mut usize,
        last_end: Instant,
        window: std::time::Duration,
        want: usize,
    ) -> bool {
        if window.is_zero() {
            return false;
        }
        let busy = want > 0;
        let mut appends: usize = batches.iter().map(|b| b.appends).sum();
        let lazy = appends == 0;
        // Messages that were already waiting while the last write ran form
        // a group of their own; wait for the answered ones on top of them.
        let want = want
            + batches
                .iter()
                .filter(|b| b.sent < last_end)
                .map(|b| b.appends)
                .sum::<usize>();
        let waits = lazy || (busy && appends < want);
        if !waits {
            return false;
        }
        let until = Instant::now() + window;
        while *bytes < self.opts.max_batch_bytes {
            let now = Instant::now();
            if now >= until {
                break;
            }
            match rx.recv_timeout(until - now) {
                Ok(b) => {
                    let more = b.appends;
                    appends += more;
                    *bytes += b.bytes;
                    batches.push(b);
                    if (more > 0 && !busy) || (busy && appends >= want) {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            }
        }
        false
    }

    fn report_failure(&mut self, top: u64, error: Arc<io::Error>) {
        if top > self.failed_reported {
            self.failed_reported = top;
            (self.notify)(CommitEvent::Failed { ticket: top, error });
        }
    }

    /// Writes and syncs `batches`; returns the segments to delete. On error,
    /// the durable state is put back as it was.
    fn write(&mut self, batches: &[&Batch]) -> io::Result<Vec<u64>> {
        let mut seg = self.seg;
        let mut len = self.len;
        let mut zeroed = self.zeroed;
        let mut new_file: Option<File> = None;
        let mut created: Vec<u64> = Vec::new();
        let mut restarted = false;
        let mut deletes = Vec::new();
        let mut buf = Vec::with_capacity(batches.iter().map(|b| b.bytes).sum());
        let result = (|| -> io::Result<()> {
            for op in batches.iter().flat_map(|b| &b.ops) {
                match op {
                    Op::Append { rec, .. } => format::put_append(&mut buf, rec),
                    Op::Remove(s) => format::put_seq(&mut buf, KIND_REMOVE, *s),
                    Op::Deliver(s) => format::put_seq(&mut buf, KIND_DELIVER, *s),
                    Op::Group(n) => format::put_group(&mut buf, *n),
                    Op::Delete { id, .. } => deletes.push(*id),
                    Op::Restart { old, new } => {
                        // What was placed in `old` is not needed: it is
                        // not written, and the file goes (closed too, or
                        // its blocks stay taken) before the new one takes
                        // its room, but after the deletions scheduled
                        // before it (`old` may hold the tombstones of
                        // their messages). The new segment is the active
                        // one from then on, whatever happens to the rest
                        // of the write: a retry finds `old` gone and
                        // starts the new one again.
                        buf.clear();
                        new_file = None;
                        self.file = None;
                        self.delete(&std::mem::take(&mut deletes));
                        if self.no_deletes {
                            return Err(io::Error::other(
                                "a segment could not be deleted before a restart",
                            ));
                        }
                        match fs::remove_file(seg_path(&self.dir, *old)) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                            _ => {}
                        }
                        self.file = Some(create_segment(&self.dir, *new, false)?);
                        restarted = true;
                        seg = *new;
                        len = MAGIC.len() as u64;
                        zeroed = len;
                        (self.seg, self.len, self.zeroed) = (seg, len, zeroed);
                        continue;
                    }
                    Op::Roll(id) => {
                        if !buf.is_empty() {
                            let f = active_file(&new_file, &self.file)?;
                            self.put(f, &buf, len, zeroed)?;
                            if self.opts.fsync {
                                f.sync_data()?;
                            }
                            buf.clear();
                        }
                        created.push(*id);
                        new_file = Some(create_segment(&self.dir, *id, false)?);
                        seg = *id;
                        len = MAGIC.len() as u64;
                        zeroed = len;
                        continue;
                    }
                }
            }
            if buf.is_empty() && new_file.is_none() && !restarted {
                return Ok(()); // deletions only
            }
            let f = active_file(&new_file, &self.file)?;
            let end = len + buf.len() as u64;
            if self.opts.preallocate > 0 && batches.iter().any(|b| b.appends > 0) {
                // Messages leave a quarter of `preallocate` of zeros ahead
                // (within the segment) to removals: on a full disk, they
                // are the records that give space back (`write_ahead`).
                let keep = (end + self.opts.preallocate / 4).min(self.opts.segment_size.max(end));
                if zeroed < keep {
                    self.zero_ahead(f, end, &mut zeroed);
                    if zeroed < keep {
                        return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                    }
                }
            }
            self.put(f, &buf, len, zeroed)?;
            zeroed = zeroed.max(end);
            self.zero_ahead(f, len + buf.len() as u64, &mut zeroed);
            if self.opts.fsync {
                f.sync_data()?;
                if !self.opts.extra_sync_latency.is_zero() {
                    std::thread::sleep(self.opts.extra_sync_latency);
                }
                if !created.is_empty() || restarted {
                    sync_dir(&self.dir)?;
                }
            }
            len += buf.len() as u64;
            Ok(())
        })();
        match result {
            Ok(()) => {
                if let Some(f) = new_file {
                    self.file = Some(f);
                }
                self.seg = seg;
                self.len = len;
                self.zeroed = zeroed;
                Ok(deletes)
            }
            Err(e) => {
                if let Err(e2) = self.restore(&created) {
                    tracing::error!(
                        "journal: cannot restore the tail after a failed write: {e2}; refusing all writes"
                    );
                    self.poisoned = Some(Arc::new(e2));
                }
                Err(e)
            }
        }
    }

    /// Keeps zeros written ahead of the data ending at `end` in `f` (whose
    /// length is `*zeroed`): when less than half of `preallocate` is left,
    /// writes zeros up to `end + preallocate`, within the segment size.
    /// An append inside bytes already written changes no file metadata, so
    /// its `fdatasync` flushes data only; an append that grows the file
    /// also waits for a file-system journal commit (on ext4 here: 330 µs
    /// instead of 200 on an idle machine, 820 instead of 250 with its CPUs
    /// busy, where the many-producer case runs). Recovery reads zeros
    /// after the last record as a clean end.
    ///
    /// Best effort: on a nearly full disk it writes what fits and stops
    /// (the records are already written; the fsync reports real I/O
    /// errors). The zeros left are room for small records such as the
    /// removals that free space again.
    fn zero_ahead(&self, f: &File, end: u64, zeroed: &mut u64) {
        let chunk = self.opts.preallocate;
        if chunk == 0 || *zeroed >= end + chunk / 2 {
            return;
        }
        let target = (end + chunk).min(self.opts.segment_size.max(end));
        if target <= *zeroed {
            return;
        }
        let target = target.min(zeroed.saturating_add(self.disk_room()));
        if target <= *zeroed {
            return;
        }
        let zeros = vec![0u8; (target - *zeroed).min(1 << 20) as usize];
        while *zeroed < target {
            let n = (target - *zeroed).min(zeros.len() as u64) as usize;
            if let Some(r) = &self.opts.inject_write_room
                && (n as u64) > r.load(Ordering::Acquire)
            {
                return; // the test's full disk
            }
            match f.write_at(&zeros[..n], *zeroed) {
                Ok(0) => return,
                Ok(written) => *zeroed += written as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("journal: writing zeros ahead stopped: {e}");
                    return;
                }
            }
        }
    }

    /// Writes `buf` at `at`, or part of it and fails when a test hook says
    /// so (`zeroed`: where the zeros written ahead end, which a full disk
    /// cannot write past).
    fn put(&self, f: &File, buf: &[u8], at: u64, zeroed: u64) -> io::Result<()> {
        let mut room = buf.len();
        if let Some(flag) = &self.opts.inject_write_error
            && flag.load(Ordering::Acquire)
        {
            room = buf.len() / 2;
        }
        if let Some(r) = &self.opts.inject_write_room {
            let r = r.load(Ordering::Acquire);
            if r != u64::MAX {
                let fits = zeroed.saturating_sub(at).min(r);
                room = room.min(usize::try_from(fits).unwrap_or(usize::MAX));
            }
        }
        if self.opts.inject_disk_bytes.is_some() {
            // The file grows past `zeroed` only as far as the disk has room.
            let fits = zeroed.saturating_add(self.disk_room()).saturating_sub(at);
            room = room.min(usize::try_from(fits).unwrap_or(usize::MAX));
        }
        if room < buf.len() {
            f.write_all_at(&buf[..room], at)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        f.write_all_at(buf, at)
    }

    /// Bytes left on the test's disk (`JournalOptions::inject_disk_bytes`):
    /// its size less the segment files' lengths; unbounded without it.
    fn disk_room(&self) -> u64 {
        match self.opts.inject_disk_bytes {
            Some(_) => crate::recover::room(&self.dir, &self.opts),
            None => u64::MAX,
        }
    }

    /// Puts the active segment back as it was before a failed write: zeros
    /// over what the write left after the durable length (the zeros written
    /// ahead stay, as room for the retry on a full disk), nothing beyond;
    /// removes the segments a failed batch created (the retry writes them
    /// again).
    fn restore(&mut self, created: &[u64]) -> io::Result<()> {
        self.restore_tail()?;
        for id in created {
            match fs::remove_file(seg_path(&self.dir, *id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The active segment's part of [`restore`](Writer::restore).
    fn restore_tail(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(()); // a restart's new segment is not created yet
        };
        let zeros = vec![0u8; (self.zeroed - self.len).min(1 << 20) as usize];
        let mut at = self.len;
        while at < self.zeroed {
            let n = (self.zeroed - at).min(zeros.len() as u64) as usize;
            if file.write_all_at(&zeros[..n], at).is_err() {
                // Cannot overwrite: cut instead.
                self.zeroed = self.len;
                break;
            }
            at += n as u64;
        }
        file.set_len(self.zeroed)?;
        if self.opts.fsync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Deletes segments in order, making each deletion durable before the next.
    /// The segment being appended to goes too when a deletion written ahead
    /// of a failed new segment says so (see `write_ahead`): its file is
    /// closed, or its blocks would stay taken, and the new segment's write
    /// opens the next one.
    fn delete(&mut self, ids: &[u64]) {
        for id in ids {
            if self.no_deletes {
                return;
            }
            if *id == self.seg {
                self.file = None;
            }
            let res = match fs::remove_file(seg_path(&self.dir, *id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ if self.opts.fsync => sync_dir(&self.dir),
                _ => Ok(()),
            };
            if let Err(e) = res {
                tracing::error!(
                    "journal: cannot delete segment {id}: {e}; no more segments are deleted until restart"
                );
                self.no_deletes = true;
            }
        }
    }
}

/// Drops the APPEND of every new message that a later pending REMOVE
/// removes (not one that is appended again after it: a move): it was
/// never written, and writing it now would only make it dead. The REMOVE stays (a REMOVE of nothing on disk is no damage at
/// recovery); the bookkeeping is unchanged: for it, the APPEND then the
/// REMOVE happened. Not dropped: an APPEND in a group (the group's count
/// is written ahead of it), and one that replaces a version (a move, a
/// compaction copy), as a deletion already scheduled may count on it to
/// have replaced the version in the segment it deletes.
fn cancel_removed_appends(batches: &mut [Batch]) {
    let last_append = last_appends(batches);
    let mut pending: std::collections::HashMap<u64, (usize, usize)> = Default::default();
    let mut dropped = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let mut grouped = 0;
        for (oi, op) in b.ops.iter().enumerate() {
            match op {
                // A move written as a removal then an append: the message
                // lives on, and until its new copy is written its first one
                // is all there is.
                Op::Remove(s) if last_append.get(s).is_some_and(|&p| p > (bi, oi)) => {
                    pending.remove(s);
                }
                Op::Group(n) => grouped = *n,
                Op::Append { rec, replaces } => {
                    if grouped > 0 || replaces.is_some() {
                        pending.remove(&rec.seq);
                    } else {
                        pending.insert(rec.seq, (bi, oi));
                    }
                    grouped = grouped.saturating_sub(1);
                }
                Op::Remove(s) => dropped.extend(pending.remove(s)),
                _ => {}
            }
        }
    }
    if dropped.is_empty() {
        return;
    }
    dropped.sort_unstable();
    drop_ops(batches, &dropped);
}

/// Where each message's last pending APPEND is (batch, op index).
fn last_appends(batches: &[Batch]) -> std::collections::HashMap<u64, (usize, usize)> {
    let mut last = std::collections::HashMap::new();
    for (bi, b) in batches.iter().enumerate() {
        for (oi, op) in b.ops.iter().enumerate() {
            if let Op::Append { rec, .. } = op {
                last.insert(rec.seq, (bi, oi));
            }
        }
    }
    last
}

/// Takes the ops at `at` (batch, op index; sorted) out of `batches`.
fn drop_ops(batches: &mut [Batch], at: &[(usize, usize)]) {
    let mut next = at.iter().peekable();
    for (bi, b) in batches.iter_mut().enumerate() {
        let mut oi = 0;
        b.ops.retain(|_| {
            oi += 1;
            next.next_if(|&&p| p == (bi, oi - 1)).is_none()
        });
        b.appends = b
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Append { .. }))
            .count();
        b.bytes = b.ops.iter().map(op_bytes).sum();
    }
}

/// The bytes `op` takes in a segment.
fn op_bytes(op: &Op) -> usize {
    (match op {
        Op::Append { rec, .. } => rec.encoded_len(),
        Op::Remove(_) | Op::Deliver(_) => format::SEQ_RECORD,
        Op::Group(_) => format::GROUP_RECORD,
        Op::Roll(_) | Op::Restart { .. } | Op::Delete { .. } => 0,
    }) as usize
}

/// The file records go to: the segment this write started, else the
/// active one.
fn active_file<'a>(new_file: &'a Option<File>, file: &'a Option<File>) -> io::Result<&'a File> {
    new_file
        .as_ref()
        .or(file.as_ref())
        .ok_or_else(|| io::Error::other("the journal's active segment is missing"))
}

/// Logs failed writes without flooding the log while they are retried:
/// the first one, then one line every 30 s, then when writing works again.
#[derive(Default)]
struct FailureLog {
    count: u64,
    logged: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, e: &io::Error) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30))
        {
            self.logged = Some(Instant::now());
            tracing::error!(
                "journal: write failed ({} attempt(s) so far): {e}; nothing new is confirmed until a retry succeeds",
                self.count
            );
        }
    }

    fn over(&mut self) {
        if self.count > 0 {
            tracing::info!(
                "journal: writing again after {} failed attempt(s)",
                self.count
            );
        }
        *self = FailureLog::default();
    }
}
