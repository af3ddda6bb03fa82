//! Reading the journal back at open, and the bookkeeping shared by recovery
//! and the running journal: which segment holds each live message, and which
//! segments may be deleted.
//!
//! # Why deleting a segment needs more than "nothing live in it"
//! A tombstone (or a compaction copy, which supersedes the original) in
//! segment `L` kills a message whose APPEND sits in an older segment `T`. If
//! `L` were deleted while `T` stays, the message would come back at the next
//! open. A DELIVER record in `L` counts as a kill too (deleted first, the
//! message would come back with its delivery count short). So every kill across segments is counted: `L.waits_on` counts the
//! kills in `L` whose target segment still exists, `T.killers[L]` the same
//! from the other side. A segment may go when it is not the active one, holds
//! no live message, and waits on nobody; deleting `T` releases the segments
//! that wait on it. The writer deletes in this order and syncs the directory
//! after each unlink, so a crash never brings back a deleted `T` without `L`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::format::{self, Entry, MAGIC};
use crate::{Cut, Record};

/// One segment file as the bookkeeping sees it.
#[derive(Debug, Default)]
pub(crate) struct Seg {
    /// Bytes in the file (as written or scheduled).
    pub(crate) bytes: u64,
    /// Live messages whose current copy is here.
    pub(crate) seqs: HashSet<u64>,
    /// Encoded bytes of those messages.
    pub(crate) live_bytes: u64,
    /// Kills recorded here whose target segment still exists.
    pub(crate) waits_on: u64,
    /// Segment id → kills recorded there that target this segment.
    pub(crate) killers: HashMap<u64, u64>,
}

/// A live message: where its current copy is, and the record itself (its
/// `Bytes` are shared with the caller, so this costs no copy of the payload).
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) seg: u64,
    pub(crate) size: u64,
    pub(crate) rec: Record,
}

/// Segments and live messages.
#[derive(Debug, Default)]
pub(crate) struct Books {
    pub(crate) segs: BTreeMap<u64, Seg>,
    pub(crate) index: HashMap<u64, Live>,
}

impl Books {
    /// An APPEND (or compaction copy) of `rec` written to segment `at`;
    /// returns the segment of the version it replaces, if any.
    pub(crate) fn put(&mut self, at: u64, rec: Record, size: u64) -> Option<u64> {
        let seq = rec.seq;
        let replaced = self.index.remove(&seq).map(|old| {
            self.unlive(&old, seq);
            self.kill(old.seg, at);
            old.seg
        });
        let seg = self.segs.get_mut(&at).expect("segment of a put exists");
        seg.seqs.insert(seq);
        seg.live_bytes += size;
        self.index.insert(seq, Live { seg: at, size, rec });
        replaced
    }

    /// A REMOVE of `seq` written to segment `at`; false if `seq` was not live.
    pub(crate) fn drop_seq(&mut self, seq: u64, at: u64) -> bool {
        match self.index.remove(&seq) {
            Some(old) => {
                self.unlive(&old, seq);
                self.kill(old.seg, at);
                true
            }
            None => false,
        }
    }

    /// A DELIVER of `seq` written to segment `at`; false if `seq` was not
    /// live. The record counts as a kill of the segment holding the
    /// message: deleting `at` first would lose the count at the next open.
    pub(crate) fn deliver(&mut self, seq: u64, at: u64) -> bool {
        let Some(live) = self.index.get_mut(&seq) else {
            return false;
        };
        live.rec.deliveries = live.rec.deliveries.saturating_add(1);
        let target = live.seg;
        self.kill(target, at);
        true
    }

    fn unlive(&mut self, old: &Live, seq: u64) {
        if let Some(s) = self.segs.get_mut(&old.seg) {
            s.seqs.remove(&seq);
            s.live_bytes -= old.size;
        }
    }

    fn kill(&mut self, target: u64, at: u64) {
        if target == at {
            return;
        }
        if let Some(t) = self.segs.get_mut(&target) {
            *t.killers.entry(at).or_insert(0) += 1;
            self.segs
                .get_mut(&at)
                .expect("killing segment exists")
                .waits_on += 1;
        }
    }

    /// Removes every segment that may go (cascading) and returns their ids in
    /// the order they must be deleted, each with the segments that held
    /// kills of its messages (they must not be deleted before it).
    pub(crate) fn collect_dead(&mut self, active: u64) -> Vec<(u64, Vec<u64>)> {
        let mut out = Vec::new();
        loop {
            let ready: Vec<u64> = self
                .segs
                .iter()
                .filter(|(id, s)| **id != active && s.seqs.is_empty() && s.waits_on == 0)
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                return out;
            }
            for id in ready {
                let seg = self.segs.remove(&id).expect("listed above");
                let mut killers = Vec::with_capacity(seg.killers.len());
                for (killer, n) in seg.killers {
                    if let Some(k) = self.segs.get_mut(&killer) {
                        k.waits_on -= n;
                        killers.push(killer);
                    }
                }
                out.push((id, killers));
            }
        }
    }
}

/// The path of segment `id` in `dir`.
pub(crate) fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Creates (or empties) segment `id` with just its header.
pub(crate) fn create_segment(dir: &Path, id: u64, sync: bool) -> io::Result<fs::File> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(seg_path(dir, id))?;
    f.write_all(MAGIC)?;
    if sync {
        f.sync_data()?;
        sync_dir(dir)?;
    }
    Ok(f)
}

/// Bytes free for the journal in `dir` (as `statvfs` gives them to an
/// unprivileged user; what the test disk of `inject_disk_bytes` has left).
pub(crate) fn room(dir: &Path, opts: &crate::JournalOptions) -> u64 {
    match opts.inject_disk_bytes {
        Some(size) => size.saturating_sub(segment_bytes(dir)),
        None => fs4::available_space(dir).unwrap_or(u64::MAX),
    }
}

/// Bytes of the segment files in `dir`.
pub(crate) fn segment_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Makes file creations and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// What [`scan`] found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) books: Books,
    pub(crate) active: u64,
    pub(crate) max_seq: u64,
    pub(crate) cuts: Vec<Cut>,
    pub(crate) segments: usize,
}

/// Reads every segment of `dir` (creating the directory and a first segment
/// if needed), cutting the newest one at its first damaged record.
pub(crate) fn scan(dir: &Path, sync: bool) -> io::Result<Scan> {
    fs::create_dir_all(dir)?;
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".seg")
            && stem.len() == 20
            && let Ok(id) = stem.parse::<u64>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut scan = Scan {
        books: Books::default(),
        active: 1,
        max_seq: 0,
        cuts: Vec::new(),
        segments: ids.len(),
    };
    if ids.is_empty() {
        create_segment(dir, 1, sync)?;
        scan.books.segs.insert(
            1,
            Seg {
                bytes: MAGIC.len() as u64,
                ..Seg::default()
            },
        );
        return Ok(scan);
    }
    let last = *ids.last().expect("not empty");
    for id in ids {
        let path = seg_path(dir, id);
        let buf = fs::read(&path)?;
        let is_last = id == last;
        // Its `bytes` are set once the records are read.
        scan.books.segs.insert(id, Seg::default());
        // The newest segment as a crash while it was being created leaves
        // it: empty, zeros, or part of its header. Nothing was written to
        // it, so nothing is cut: it is started again.
        let unborn = is_last
            && (buf.iter().all(|&b| b == 0)
                || (buf.len() < MAGIC.len() && MAGIC.starts_with(&buf)));
        if unborn && scan.books.segs.len() > 1 {
            // The one before goes on as the newest: deleting this file
            // needs no room, where writing its header again may find none
            // (a disk that was full when the process stopped).
            tracing::info!(
                "journal: {} was created but not written before the broker stopped; deleted",
                path.display()
            );
            scan.books.segs.remove(&id);
            fs::remove_file(&path)?;
            if sync {
                sync_dir(dir)?;
            }
            continue;
        }
        if unborn {
            tracing::info!(
                "journal: {} was created but not written before the broker stopped; started again",
                path.display()
            );
            create_segment(dir, id, sync)?;
            scan.books.segs.insert(
                id,
                Seg {
                    bytes: MAGIC.len() as u64,
                    ..Seg::default()
                },
            );
            continue;
        }
        let (mut valid, mut damage, open_group) =
            if buf.len() < MAGIC.len() || &buf[..MAGIC.len()] != MAGIC {
                (0, Some("bad segment header"), None)
            } else {
                read_segment(&buf, id, &mut scan)
            };
        // A group whose APPENDs stop at the end of the log is a commit whose
        // write never completed (nothing of it was confirmed): it goes whole.
        // In an older segment the log went on after it: it is kept.
        let unfinished = is_last && open_group.is_some();
        if let (true, Some(at)) = (unfinished, open_group) {
            valid = at;
            damage = Some(UNFINISHED_GROUP);
        }
        // The records end at `valid`; zeros after them are preallocated space.
        scan.books.segs.get_mut(&id).expect("inserted above").bytes = valid.max(MAGIC.len()) as u64;
        if let Some(reason) = damage {
            // What is dropped: up to the last byte that is not preallocated zeros.
            let dropped = buf[valid..]
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |p| p + 1);
            let cut = Cut {
                segment: path.clone(),
                offset: valid as u64,
                dropped_bytes: dropped as u64,
                reason,
                truncated: is_last,
            };
            if is_last {
                tracing::warn!(
                    "journal: {} at byte {} of {}: cutting off the last {} bytes (a write that never completed)",
                    reason,
                    valid,
                    path.display(),
                    cut.dropped_bytes
                );
                if valid == 0 {
                    create_segment(dir, id, sync)?;
                } else {
                    let f = fs::OpenOptions::new().write(true).open(&path)?;
                    f.set_len(valid as u64)?;
                    if sync {
                        f.sync_data()?;
                    }
                }
            } else {
                tracing::warn!(
                    "journal: {} at byte {} of {} (not the newest segment): skipping its last {} bytes",
                    reason,
                    valid,
                    path.display(),
                    cut.dropped_bytes
                );
            }
            scan.cuts.push(cut);
        }
        if unfinished {
            // Its APPENDs are in the books already (some replaced older
            // versions): read everything again, now without them.
            let mut again = self::scan(dir, sync)?;
            again.cuts.splice(0..0, scan.cuts);
            return Ok(again);
        }
    }
    scan.active = *scan
        .books
        .segs
        .keys()
        .next_back()
        .expect("a segment was read");
    Ok(scan)
}

/// Why a segment's read ends early (as the damage reasons do).
const UNFINISHED_GROUP: &str = "unfinished group of appends";

/// Applies the records of one segment; returns where valid data ends, the
/// damage that stopped the reading, if any, and where a GROUP starts whose
/// APPENDs did not all follow (the segment ended first).
fn read_segment(
    buf: &[u8],
    id: u64,
    scan: &mut Scan,
) -> (usize, Option<&'static str>, Option<usize>) {
    let mut pos = MAGIC.len();
    // The open group: where its GROUP record is, APPENDs still to come.
    let mut group: Option<(usize, u32)> = None;
    loop {
        let open = group.map(|(at, _)| at);
        match format::read_record(buf, pos, u32::MAX) {
            Ok(None) => return (pos, None, open),
            Err(d) => return (pos, Some(d.as_str()), open),
            Ok(Some((entry, n))) => {
                match entry {
                    Entry::Group(count) => group = (count > 0).then_some((pos, count)),
                    Entry::Append(rec) => {
                        scan.max_seq = scan.max_seq.max(rec.seq);
                        let size = rec.encoded_len();
                        scan.books.put(id, rec, size);
                        group = group.and_then(|(at, left)| (left > 1).then_some((at, left - 1)));
                    }
                    Entry::Remove(seq) => {
                        scan.max_seq = scan.max_seq.max(seq);
                        scan.books.drop_seq(seq, id);
                    }
                    Entry::Deliver(seq) => {
                        scan.books.deliver(seq, id);
                    }
                }
                pos += n;
            }
        }
    }
}
