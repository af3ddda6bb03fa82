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
    Append(Record),
    Remove(u64),
    Deliver(u64),
    /// The next `n` appends are one group (see `Journal::append_group`).
    Group(u32),
    /// Delete segment `id` once the batch is on disk.
    Delete(u64),
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
}

pub(crate) struct Writer {
    dir: PathBuf,
    /// The segment being appended to, and how much of it is durable.
    seg: u64,
    file: File,
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
            file,
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
        loop {
            let mut batches = std::mem::take(&mut retry);
            let failed = batches.len();
            let mut bytes: usize = batches.iter().map(|b| b.bytes).sum();
            if !closed {
                let first = if batches.is_empty() {
                    rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(self.opts.retry_interval)
                };
                match first {
                    Ok(b) => {
                        bytes += b.bytes;
                        batches.push(b);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
                }
                while bytes < self.opts.max_batch_bytes {
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
                ahead_top = ahead_top.max(self.write_ahead(&mut batches, failed));
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
            let started = Instant::now();
            match self.write(&batches.iter().collect::<Vec<_>>()) {
                Ok(deletes) => {
                    ahead_top = 0;
                    self.shared.failing.store(false, Ordering::Relaxed);
                    last_end = Instant::now();
                    last_took = last_end - started;
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    self.shared.durable.store(top, Ordering::Release);
                    (self.notify)(CommitEvent::Durable(top));
                    self.delete(&deletes);
                }
                Err(e) => {
                    self.shared.failing.store(true, Ordering::Relaxed);
                    let e = Arc::new(e);
                    tracing::error!(
                        "journal: write failed: {e}; nothing new is confirmed until a retry succeeds"
                    );
                    self.report_failure(top, e);
                    if closed {
                        tracing::error!(
                            "journal: closing with unwritten batches (tickets up to {top})"
                        );
                        return;
                    }
                    retry = batches;
                }
            }
        }
    }

    /// After a failed write, writes the batches that came since and only
    /// remove or mark messages (ACKs) ahead of the failed ones (the first
    /// `failed` of `batches`), and takes them out of `batches`: on a disk
    /// full to its last block, the removals that empty segments, and so
    /// free space, must not wait behind a message that needs that space.
    /// Returns the highest ticket written (0: none); it is reported durable
    /// only once the failed batches are written too, as a ticket covers
    /// every ticket below it.
    ///
    /// A batch goes ahead only if writing it first changes nothing that
    /// recovery reads from what goes behind: it appends and starts no
    /// segment (nor does any batch it passes, so all its records land in
    /// the segment the journal placed them in), it removes or marks no
    /// message that a batch it passes appends, and it deletes no segment
    /// while a batch it passes deletes one (a segment's tombstones may
    /// only go once the segments they kill are gone).
    fn write_ahead(&mut self, batches: &mut Vec<Batch>, failed: usize) -> u64 {
        let mut passed_appends = std::collections::HashSet::new();
        let mut passed_delete = false;
        let mut ahead = Vec::new();
        'scan: for (i, b) in batches.iter().enumerate() {
            let mut eligible = i >= failed;
            let mut deletes = false;
            for op in &b.ops {
                match op {
                    Op::Remove(s) | Op::Deliver(s) => {
                        eligible &= !passed_appends.contains(s);
                    }
                    Op::Delete(_) => deletes = true,
                    Op::Append(_) | Op::Roll(_) | Op::Group(_) => eligible = false,
                }
            }
            eligible &= !(deletes && passed_delete);
            if eligible {
                ahead.push(i);
                continue;
            }
            for op in &b.ops {
                match op {
                    Op::Append(r) => {
                        passed_appends.insert(r.seq);
                    }
                    // Records behind a new segment: nothing may pass them.
                    Op::Roll(_) => break 'scan,
                    Op::Delete(_) => passed_delete = true,
                    _ => {}
                }
            }
        }
        if ahead.is_empty() {
            return 0;
        }
        let refs: Vec<&Batch> = ahead.iter().map(|&i| &batches[i]).collect();
        let top = refs.iter().map(|b| b.ticket).max().unwrap_or(0);
        match self.write(&refs) {
            Ok(deletes) => {
                self.shared.writes.fetch_add(1, Ordering::Relaxed);
                self.delete(&deletes);
                let mut i = 0;
                batches.retain(|_| {
                    i += 1;
                    ahead.binary_search(&(i - 1)).is_err()
                });
                tracing::info!(
                    "journal: wrote {} batch(es) of removals ahead of the failed write",
                    ahead.len()
                );
                top
            }
            // They stay in order with the rest.
            Err(_) => 0,
        }
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
        let mut deletes = Vec::new();
        let mut buf = Vec::with_capacity(batches.iter().map(|b| b.bytes).sum());
        let result = (|| -> io::Result<()> {
            for op in batches.iter().flat_map(|b| &b.ops) {
                match op {
                    Op::Append(r) => format::put_append(&mut buf, r),
                    Op::Remove(s) => format::put_seq(&mut buf, KIND_REMOVE, *s),
                    Op::Deliver(s) => format::put_seq(&mut buf, KIND_DELIVER, *s),
                    Op::Group(n) => format::put_group(&mut buf, *n),
                    Op::Delete(id) => deletes.push(*id),
                    Op::Roll(id) => {
                        let f = new_file.as_ref().unwrap_or(&self.file);
                        self.put(f, &buf, len, zeroed)?;
                        if self.opts.fsync {
                            f.sync_data()?;
                        }
                        buf.clear();
                        created.push(*id);
                        new_file = Some(create_segment(&self.dir, *id, false)?);
                        seg = *id;
                        len = MAGIC.len() as u64;
                        zeroed = len;
                        continue;
                    }
                }
            }
            let f = new_file.as_ref().unwrap_or(&self.file);
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
                if !created.is_empty() {
                    sync_dir(&self.dir)?;
                }
            }
            len += buf.len() as u64;
            Ok(())
        })();
        match result {
            Ok(()) => {
                if let Some(f) = new_file {
                    self.file = f;
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
        if room < buf.len() {
            f.write_all_at(&buf[..room], at)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        f.write_all_at(buf, at)
    }

    /// Puts the active segment back as it was before a failed write: zeros
    /// over what the write left after the durable length (the zeros written
    /// ahead stay, as room for the retry on a full disk), nothing beyond;
    /// removes the segments a failed batch created (the retry writes them
    /// again).
    fn restore(&mut self, created: &[u64]) -> io::Result<()> {
        let zeros = vec![0u8; (self.zeroed - self.len).min(1 << 20) as usize];
        let mut at = self.len;
        while at < self.zeroed {
            let n = (self.zeroed - at).min(zeros.len() as u64) as usize;
            if self.file.write_all_at(&zeros[..n], at).is_err() {
                // Cannot overwrite: cut instead.
                self.zeroed = self.len;
                break;
            }
            at += n as u64;
        }
        self.file.set_len(self.zeroed)?;
        if self.opts.fsync {
            self.file.sync_data()?;
        }
        for id in created {
            match fs::remove_file(seg_path(&self.dir, *id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes segments in order, making each deletion durable before the next.
    fn delete(&mut self, ids: &[u64]) {
        for id in ids {
            if self.no_deletes {
                return;
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
