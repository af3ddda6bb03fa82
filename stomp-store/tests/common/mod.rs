//! Helpers shared by the journal tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use bytes::Bytes;
use stomp_store::{CommitEvent, Journal, JournalOptions, Record, Recovered};

/// A message whose content can be checked from its seq alone.
pub fn msg(seq: u64) -> Record {
    let len = 20 + (seq * 7919 % 300) as usize;
    let body: Vec<u8> = (0..len).map(|i| (seq as usize * 31 + i) as u8).collect();
    let queue = format!("/queue/q{}", seq % 3);
    let headers = format!("seq:{seq}\ncontent-type:text/plain\n");
    Record::new(queue, seq, Bytes::from(headers), Bytes::from(body))
}

/// Asserts that `r` is exactly what [`msg`] made (apart from deliveries).
pub fn check(r: &Record) {
    let want = msg(r.seq);
    assert_eq!(r.queue, want.queue, "queue of {}", r.seq);
    assert_eq!(r.headers, want.headers, "headers of {}", r.seq);
    assert_eq!(r.body, want.body, "body of {}", r.seq);
}

/// Opens a journal whose events go to the returned channel and checks every
/// recovered message against [`msg`].
pub fn open(dir: &Path, opts: JournalOptions) -> (Journal, Recovered, Receiver<CommitEvent>) {
    let (j, r, rx) = open_raw(dir, opts);
    for m in &r.messages {
        check(m);
    }
    (j, r, rx)
}

/// Opens a journal whose events go to the returned channel.
pub fn open_raw(dir: &Path, opts: JournalOptions) -> (Journal, Recovered, Receiver<CommitEvent>) {
    let (tx, rx) = mpsc::channel();
    let (j, r) = Journal::open(
        dir,
        opts,
        Box::new(move |ev| {
            let _ = tx.send(ev);
        }),
    )
    .expect("open journal");
    (j, r, rx)
}

/// Waits (at most 10 s) until `ticket` is durable; panics on a failure.
pub fn wait(j: &Journal, rx: &Receiver<CommitEvent>, ticket: u64) {
    while j.durable_ticket() < ticket {
        match rx
            .recv_timeout(Duration::from_secs(10))
            .expect("commit event within 10 s")
        {
            CommitEvent::Durable(t) if t >= ticket => return,
            CommitEvent::Durable(_) => {}
            CommitEvent::Failed { ticket, error } => panic!("commit {ticket} failed: {error}"),
        }
    }
}

/// Options with small segments.
pub fn small(segment_size: u64) -> JournalOptions {
    JournalOptions {
        segment_size,
        ..JournalOptions::default()
    }
}

/// Bytes of all files in `dir` (a file the writer deletes meanwhile counts
/// as 0).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Bytes of the segment files in `dir` up to the last byte that is not
/// zero (what follows are zeros the writer wrote ahead, see
/// `JournalOptions::preallocate`; the records of [`msg`] used here do not
/// end in a zero byte).
pub fn data_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1) as u64)
        .sum()
}

/// Segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Copies the segment files of `from` into a fresh directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for p in segments(from) {
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Copies the segment files of `from` into `to`, with segment `name` cut
/// to `len` bytes (a write torn there).
pub fn copy_cut(from: &Path, to: &Path, name: &std::ffi::OsStr, len: u64) {
    copy_dir(from, to);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(to.join(name))
        .unwrap();
    f.set_len(len).unwrap();
}
