//! Restart, torn tail, damage, space and I/O-error tests on real files.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use stomp_store::{CommitEvent, JournalOptions};

#[test]
fn restart_gives_back_exactly_the_live_messages_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Small segments so the messages span several files.
    let (mut j, r, rx) = open(dir, small(4096));
    assert!(r.messages.is_empty());
    assert!(r.cuts.is_empty());
    let mut t = 0;
    for seq in 1..=200 {
        j.append(msg(seq)).unwrap();
        if seq % 10 == 0 {
            t = j.commit();
        }
    }
    for seq in (3..=200).step_by(3) {
        assert!(j.remove(seq));
    }
    assert!(!j.remove(3), "a removed seq is not live");
    assert!(!j.remove(1000), "an unknown seq is not live");
    assert!(j.delivered(5));
    assert!(j.delivered(5));
    assert!(
        j.append(msg(5)).is_err(),
        "a live seq cannot be appended twice"
    );
    let t2 = j.commit();
    assert!(t2 > t);
    assert_eq!(j.commit(), t2, "nothing new: same ticket");
    wait(&j, &rx, t2);
    assert_eq!(j.durable_ticket(), t2);
    assert!(j.stats().segments > 3, "{:?}", j.stats());
    drop(j);

    let (mut j, r, rx) = open(dir, small(4096));
    let want: Vec<u64> = (1..=200).filter(|s| s % 3 != 0).collect();
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, want);
    assert_eq!(r.max_seq, 200);
    assert!(r.cuts.is_empty());
    for m in &r.messages {
        assert_eq!(
            m.deliveries,
            if m.seq == 5 { 2 } else { 0 },
            "deliveries of {}",
            m.seq
        );
    }
    // Keep going after a restart, then restart again.
    j.append(msg(202)).unwrap();
    assert!(j.remove(1));
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let (_j, r, _rx) = open(dir, small(4096));
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (2..=202).filter(|s| s % 3 != 0).collect();
    assert_eq!(got, want);
}

/// Writes `n` messages, each commit waited for, into one segment, and
/// returns the encoded length of the last one and where the records end
/// (the file goes on with preallocated zeros).
fn write_n(dir: &std::path::Path, n: u64) -> (u64, u64) {
    let (mut j, _, rx) = open(dir, JournalOptions::default());
    for seq in 1..=n {
        j.append(msg(seq)).unwrap();
        let t = j.commit();
        wait(&j, &rx, t);
    }
    let stats = j.stats();
    assert_eq!(stats.segments, 1);
    (msg(n).encoded_len(), stats.file_bytes)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (last_len, full) = write_n(&base, 20);
    let seg = segments(&base).pop().unwrap();
    assert!(
        std::fs::metadata(&seg).unwrap().len() > full,
        "zeros are written ahead"
    );
    // A write that never completed: the file cut short (no preallocation),
    // or zeros where the end of the record should be.
    for (tear, cut) in ["truncate", "zeros"]
        .into_iter()
        .flat_map(|t| ((full - last_len)..full).map(move |c| (t, c)))
    {
        let dir = tmp.path().join(format!("{tear}{cut}"));
        copy_dir(&base, &dir);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(seg.file_name().unwrap()))
            .unwrap();
        if tear == "truncate" {
            f.set_len(cut).unwrap();
        } else {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&vec![0; (full - cut) as usize], cut)
                .unwrap();
        }
        drop(f);
        let (j, r, _rx) = open(&dir, JournalOptions::default());
        let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        assert_eq!(got, (1..=19).collect::<Vec<_>>(), "{tear} at {cut}");
        if cut == full - last_len {
            assert!(
                r.cuts.is_empty(),
                "a cut at a record boundary is a clean end"
            );
        } else {
            assert_eq!(r.cuts.len(), 1, "{tear} at {cut}");
            assert!(r.cuts[0].truncated);
            assert_eq!(r.cuts[0].offset, full - last_len);
        }
        drop(j);
        // The file was truncated: a second open finds nothing to cut.
        let (_j, r, _rx) = open(&dir, JournalOptions::default());
        assert!(r.cuts.is_empty());
        assert_eq!(r.messages.len(), 19);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn scribbled_bytes_in_the_last_record_are_never_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (last_len, full) = write_n(&base, 10);
    let seg = segments(&base).pop().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for at in (full - last_len)..full {
        let dir = tmp.path().join(format!("s{at}"));
        copy_dir(&base, &dir);
        let path = dir.join(seg.file_name().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        // Change this byte and maybe a few after it.
        for b in bytes[at as usize..].iter_mut().take(1 + rng.usize(0..4)) {
            *b ^= rng.u8(1..=255);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut j, r, rx) = open(&dir, JournalOptions::default());
        let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        assert_eq!(got, (1..=9).collect::<Vec<_>>(), "scribble at {at}");
        assert_eq!(r.cuts.len(), 1);
        // Writing goes on where the good data ends.
        j.append(msg(11)).unwrap();
        let t = j.commit();
        wait(&j, &rx, t);
        drop(j);
        let (_j, r, _rx) = open(&dir, JournalOptions::default());
        assert_eq!(r.messages.len(), 10);
        assert!(r.cuts.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn damage_in_an_older_segment_skips_its_rest_and_keeps_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _, rx) = open(dir, small(2048));
    for seq in 1..=40 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let segs = segments(dir);
    assert!(segs.len() >= 3);
    // Flip a byte in the middle of the first segment.
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&segs[0], &bytes).unwrap();
    let (_j, r, _rx) = open(dir, small(2048));
    assert_eq!(r.cuts.len(), 1);
    assert!(!r.cuts[0].truncated);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    // A prefix of the first segment is lost, every later message is there.
    let first_lost = (1..=40).find(|s| !got.contains(s)).unwrap();
    assert!(first_lost > 1);
    let later = (first_lost..=40).filter(|s| got.contains(s)).count();
    assert!(later > 0 && got.ends_with(&[39, 40]));
    assert_eq!(
        std::fs::read(&segs[0]).unwrap(),
        bytes,
        "an older segment is never rewritten"
    );
}

/// Produces and consumes `rounds` messages of about 1 KiB, keeping `backlog`
/// unconsumed, and returns the biggest directory size seen.
fn steady_flow(dir: &std::path::Path, seg: u64, rounds: u64, backlog: u64, pinned: &[u64]) -> u64 {
    let (mut j, _, rx) = open_raw(dir, small(seg));
    let mut max = 0;
    for seq in 1..=rounds {
        let mut r = msg(seq);
        r.body = bytes::Bytes::from(vec![seq as u8; 1000]);
        j.append(r).unwrap();
        if seq > backlog && !pinned.contains(&(seq - backlog)) {
            assert!(j.remove(seq - backlog));
        }
        if seq % 8 == 0 {
            let t = j.commit();
            wait(&j, &rx, t);
            max = max.max(dir_bytes(dir));
        }
    }
    let t = j.commit();
    wait(&j, &rx, t);
    for p in pinned {
        assert!(j.contains(*p));
    }
    drop(j);
    max
}

#[test]
fn space_stays_bounded_when_producing_and_consuming() {
    let seg = 64 * 1024;
    for (backlog, pinned) in [(1, vec![]), (100, vec![]), (10, vec![3, 500, 1700])] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // About 40 segments' worth of traffic.
        let max = steady_flow(dir, seg, 2600, backlog, &pinned);
        eprintln!("backlog {backlog} pinned {pinned:?}: max {max} bytes");
        assert!(
            max <= 8 * seg,
            "backlog {backlog} pinned {pinned:?}: directory grew to {max} bytes"
        );
        let (_j, r, _rx) = open_raw(dir, small(seg));
        let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        let mut want: Vec<u64> = pinned.clone();
        want.extend(2600 - backlog + 1..=2600);
        want.sort();
        assert_eq!(got, want, "backlog {backlog} pinned {pinned:?}");
        for m in &r.messages {
            assert_eq!(m.body, vec![m.seq as u8; 1000]);
        }
    }
}

#[test]
fn a_failed_write_is_reported_then_retried_and_confirmed_data_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fail = Arc::new(AtomicBool::new(false));
    let opts = JournalOptions {
        inject_write_error: Some(fail.clone()),
        retry_interval: Duration::from_millis(20),
        ..JournalOptions::default()
    };
    let (mut j, _, rx) = open(dir, opts.clone());
    for seq in 1..=5 {
        j.append(msg(seq)).unwrap();
    }
    let t1 = j.commit();
    wait(&j, &rx, t1);
    let good = data_bytes(dir);

    fail.store(true, Ordering::Release);
    for seq in 6..=8 {
        j.append(msg(seq)).unwrap();
    }
    assert!(j.remove(1));
    let t2 = j.commit();
    match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        CommitEvent::Failed { ticket, error } => {
            assert_eq!(ticket, t2);
            assert_eq!(error.raw_os_error(), Some(28));
        }
        other => panic!("{other:?}"),
    }
    // Retries keep failing quietly (one report per ticket); the torn half
    // write is cut back each time.
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "a failed ticket is reported once");
    assert_eq!(j.durable_ticket(), t1);
    assert_eq!(data_bytes(dir), good, "the half write was cut back");

    // The disk has room again: the retry confirms everything, in order
    // (a commit that came before the retry may be reported failed first,
    // as it waited behind the failed write).
    fail.store(false, Ordering::Release);
    j.append(msg(9)).unwrap();
    let t3 = j.commit();
    wait_durable(&j, t3);
    drop(j);
    let (_j, r, _rx) = open(dir, opts);
    assert!(r.cuts.is_empty());
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, (2..=9).collect::<Vec<_>>());
}

#[test]
fn removals_go_ahead_of_a_failed_write_and_free_its_space() {
    // A disk full to its last block: the message that does not fit is
    // retried, and the consumers' removals must not wait behind it, or the
    // segments they empty are never deleted and the space never comes back.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let room = Arc::new(AtomicU64::new(u64::MAX));
    let opts = JournalOptions {
        inject_write_room: Some(room.clone()),
        retry_interval: Duration::from_millis(20),
        slack_segments: 1,
        ..small(12288)
    };
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    for seq in 1..=60 {
        j.append(msg(seq)).unwrap();
    }
    let t1 = j.commit();
    wait(&j, &rx, t1);
    let full = segments(dir);
    assert_eq!(full.len(), 2, "one full segment and the active one");

    // Room for small records only: the big message fails.
    room.store(2000, Ordering::Release);
    j.append(sized(61, 3000)).unwrap();
    let t2 = j.commit();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        CommitEvent::Failed { ticket, .. } if ticket == t2
    ));
    // Consumers take everything else: their removals are written ahead of
    // it, and the segment they empty goes, while the message still waits.
    for seq in 1..=60 {
        assert!(j.remove(seq));
    }
    let t3 = j.commit();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while full[0].exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!full[0].exists(), "the emptied segment was not deleted");
    // Nothing is reported durable past the failed ticket meanwhile.
    assert_eq!(j.durable_ticket(), t1);

    // Space again: the message is written, and every ticket confirmed.
    room.store(u64::MAX, Ordering::Release);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while j.durable_ticket() < t3 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(j.durable_ticket(), t3);
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, [61]);
}

#[test]
fn messages_leave_room_for_the_removals_that_free_space() {
    // The disk fills inside the zeros written ahead: messages stop a quarter
    // of `preallocate` before their end, so the consumers' removals still
    // fit, are written, and do not come back.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let room = Arc::new(AtomicU64::new(u64::MAX));
    let opts = JournalOptions {
        inject_write_room: Some(room.clone()),
        retry_interval: Duration::from_millis(20),
        preallocate: 64 * 1024,
        ..small(1 << 20)
    };
    let (mut j, _, rx) = open(dir, opts.clone());
    j.append(msg(1)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    // No more zeros can be written; records fit until they would reach
    // into the kept room.
    room.store(4096, Ordering::Release);
    let mut seq = 2;
    let failed = loop {
        j.append(msg(seq)).unwrap();
        let t = j.commit();
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            CommitEvent::Durable(d) if d >= t => seq += 1,
            CommitEvent::Durable(_) => {}
            CommitEvent::Failed { .. } => break seq,
        }
        assert!(seq < 10_000, "the disk never filled");
    };
    assert!(
        failed > 100,
        "only {failed} messages before the disk was full"
    );
    for s in 1..failed {
        assert!(j.remove(s));
    }
    j.commit();
    std::thread::sleep(Duration::from_millis(200));
    drop(j);
    let (_j, r, _rx) = open(dir, small(1 << 20));
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert!(
        got.is_empty(),
        "removed messages came back: {} of them",
        got.len()
    );
}

/// Appends messages of `size` bytes, one commit each, until a write fails
/// for lack of room; returns the seqs confirmed and the one that failed.
fn fill(
    j: &mut stomp_store::Journal,
    rx: &std::sync::mpsc::Receiver<CommitEvent>,
    first: u64,
    size: usize,
) -> (Vec<u64>, u64) {
    let mut confirmed = Vec::new();
    for seq in first.. {
        j.append(sized(seq, size)).unwrap();
        let t = j.commit();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                CommitEvent::Durable(d) if d >= t => break,
                CommitEvent::Failed { ticket, .. } if ticket >= t => return (confirmed, seq),
                CommitEvent::Durable(_) | CommitEvent::Failed { .. } => {}
            }
        }
        confirmed.push(seq);
        assert!(seq < first + 10_000, "the disk never filled");
    }
    unreachable!()
}

/// A test disk of `disk` bytes (`inject_disk_bytes`), segments of
/// `segment` bytes, `preallocate` zeros written ahead, quick retries.
fn small_disk(disk: u64, preallocate: u64, segment: u64) -> JournalOptions {
    JournalOptions {
        inject_disk_bytes: Some(disk),
        preallocate,
        retry_interval: Duration::from_millis(20),
        ..small(segment)
    }
}

/// Waits (at most 10 s) until `ticket` is durable, failures or not.
fn wait_durable(j: &stomp_store::Journal, ticket: u64) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while j.durable_ticket() < ticket && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        j.durable_ticket() >= ticket,
        "ticket {ticket} never durable"
    );
}

#[test]
fn a_disk_smaller_than_a_segment_gets_its_room_back_once_consumers_empty_it() {
    // The only segment fills the disk. Consumers take everything, the
    // message that did not fit too: the next message must find room (the
    // dead active segment is deleted before a new one starts), and a
    // reopen must give back only what was sent since.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small_disk(96 * 1024, 16 * 1024, 1 << 20);
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    let (confirmed, failed) = fill(&mut j, &rx, 1, 2000);
    assert!(confirmed.len() > 30, "{} messages fit", confirmed.len());
    assert_eq!(segments(dir).len(), 1);
    // A consumer gets every message (the failed one is in the broker's
    // memory too) and acknowledges them one by one: deliveries and
    // removals interleaved, as the broker commits them.
    for seq in 1..=failed {
        assert!(j.delivered(seq));
        if seq > 1 {
            assert!(j.remove(seq - 1));
        }
        j.commit();
    }
    assert!(j.remove(failed));
    let t = j.commit();
    wait_durable(&j, t);
    // Sending works again, on a new segment.
    let before = segments(dir);
    let (again, _) = fill(&mut j, &rx, 1000, 2000);
    assert!(
        again.len() > 30,
        "only {} messages after the drain",
        again.len()
    );
    let after = segments(dir);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(before, after, "the dead segment was restarted");
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert!(got.starts_with(&again), "{got:?}");
    assert!(
        got.iter().all(|s| *s >= 1000),
        "consumed messages came back: {got:?}"
    );
}

#[test]
fn a_disk_smaller_than_a_segment_gets_its_room_back_after_a_restart_too() {
    // Filled, then reopened (a restart of the broker), then emptied: the
    // first message after that must not be the one that fails (and stays
    // live, pinning the full segment until someone consumes it).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small_disk(96 * 1024, 16 * 1024, 1 << 20);
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    let (confirmed, _) = fill(&mut j, &rx, 1, 2000);
    drop(j);
    let (mut j, r, rx) = open_raw(dir, opts);
    assert_eq!(r.messages.len(), confirmed.len());
    for m in &r.messages {
        assert!(j.remove(m.seq));
    }
    let t = j.commit();
    wait_durable(&j, t);
    let (again, _) = fill(&mut j, &rx, 1000, 2000);
    assert!(
        again.len() > 30,
        "only {} messages after the drain",
        again.len()
    );
}

#[test]
fn a_disk_that_fills_just_as_a_new_segment_is_needed_gets_room_from_the_consumed_one() {
    // The message that does not fit starts a new segment; the consumers'
    // removals go to that segment too, so they cannot be written ahead of
    // it. The deletion of the segment they empty can: it needs no record,
    // and then the new segment has room.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small_disk(17 * 1024, 2048, 16 * 1024);
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    let (confirmed, failed) = fill(&mut j, &rx, 1, 1000);
    assert!(confirmed.len() > 10, "{} messages fit", confirmed.len());
    assert_eq!(segments(dir).len(), 1, "the failed write's segment is gone");
    for &seq in &confirmed {
        assert!(j.remove(seq));
    }
    let t = j.commit();
    wait_durable(&j, t);
    let (again, _) = fill(&mut j, &rx, 1000, 1000);
    assert!(!again.is_empty());
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    let mut want = vec![failed];
    want.extend(&again);
    assert_eq!(got, want);
}

#[test]
fn no_compaction_on_a_nearly_full_disk_so_consumers_can_free_it() {
    // Segments each with three messages left live: compaction would copy
    // them out. On a nearly full disk the copies cannot be written, and they
    // would hold back the deletion of their segments for good (each
    // original is the message until its copy is on disk): the journal must
    // not compact without room, so that consumers can free the disk.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let no_compaction = JournalOptions {
        compact_below: 0.0,
        slack_segments: 100,
        ..small(16 * 1024)
    };
    let (mut j, _, rx) = open_raw(dir, no_compaction);
    let mut live = Vec::new();
    for seq in 1..=180 {
        j.append(sized(seq, 1000)).unwrap();
        if seq % 5 == 0 {
            live.push(seq);
        }
    }
    let t = j.commit();
    wait(&j, &rx, t);
    for seq in (1..=180).filter(|s| s % 5 != 0) {
        assert!(j.remove(seq));
    }
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    assert!(segments(dir).len() > 10);

    // Reopened on a disk with 4 KiB left.
    let opts = JournalOptions {
        slack_segments: 1,
        ..small_disk(dir_bytes(dir) + 4096, 2048, 16 * 1024)
    };
    let (mut j, r, _rx) = open_raw(dir, opts.clone());
    assert_eq!(r.messages.len(), live.len());
    for &seq in &live {
        assert!(j.remove(seq));
    }
    let t = j.commit();
    wait_durable(&j, t);
    j.append(sized(1000, 6000)).unwrap();
    let t = j.commit();
    wait_durable(&j, t);
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, [1000]);
}

#[test]
fn marks_of_the_message_that_failed_do_not_hold_back_other_removals() {
    // On a full disk, the message that did not fit is delivered with the
    // others (its DELIVER record cannot be written before it), and the
    // consumer's removals of the others, committed with those marks, must
    // still go ahead: before, they waited behind it, and every message
    // acknowledged since came back after a restart.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = small_disk(96 * 1024, 16 * 1024, 1 << 20);
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    let (confirmed, failed) = fill(&mut j, &rx, 1, 2000);
    for &seq in &confirmed {
        assert!(j.delivered(failed));
        assert!(j.remove(seq));
        j.commit();
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert!(
        got.iter().all(|s| *s == failed),
        "{} acknowledged messages came back",
        got.len()
    );
}

#[test]
fn without_zeros_written_ahead_messages_are_written_as_they_come() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        preallocate: 0,
        ..small(4096)
    };
    let (mut j, _, rx) = open(tmp.path(), opts.clone());
    for seq in 1..=40 {
        j.append(msg(seq)).unwrap();
        let t = j.commit();
        wait(&j, &rx, t);
    }
    drop(j);
    let (_j, r, _rx) = open(tmp.path(), opts);
    assert_eq!(r.messages.len(), 40);
}

#[test]
fn a_newest_segment_that_a_crash_left_unwritten_is_not_damage() {
    // kill -9 while a segment file is being created leaves it empty, or
    // with part of its header: nothing was in it, nothing is cut.
    for partial in [0usize, 3] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut j, _, rx) = open(dir, small(4096));
        for seq in 1..=10 {
            j.append(msg(seq)).unwrap();
        }
        let t = j.commit();
        wait(&j, &rx, t);
        drop(j);
        let segs = segments(dir);
        let header = std::fs::read(&segs[0]).unwrap();
        let next = dir.join(format!("{:020}.seg", segs.len() + 1));
        std::fs::write(&next, &header[..partial]).unwrap();
        let (mut j, r, rx) = open(dir, small(4096));
        assert!(r.cuts.is_empty(), "{:?}", r.cuts);
        assert_eq!(r.messages.len(), 10);
        // Deleted, not written again (on a disk that was full, writing its
        // header again failed, and the broker could not start).
        assert!(!next.exists());
        assert_eq!(segments(dir), segs);
        j.append(msg(11)).unwrap();
        let t = j.commit();
        wait(&j, &rx, t);
        drop(j);
        let (_j, r, _rx) = open(dir, small(4096));
        assert!(r.cuts.is_empty(), "{:?}", r.cuts);
        assert_eq!(r.messages.len(), 11);
    }
}

#[test]
fn closing_while_writes_fail_keeps_what_was_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fail = Arc::new(AtomicBool::new(false));
    let opts = JournalOptions {
        inject_write_error: Some(fail.clone()),
        ..small(4096)
    };
    let (mut j, _, rx) = open(dir, opts);
    for seq in 1..=30 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    wait(&j, &rx, t);
    fail.store(true, Ordering::Release);
    // Enough to roll to a new segment inside the failing batch.
    for seq in 31..=60 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    assert!(
        matches!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), CommitEvent::Failed { ticket, .. } if ticket == t)
    );
    drop(j);
    let (_j, r, _rx) = open(dir, small(4096));
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
}

#[test]
fn a_journal_that_cannot_be_created_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (tx, _rx) = std::sync::mpsc::channel();
    let res = stomp_store::Journal::open(
        &file.join("journal"),
        JournalOptions::default(),
        Box::new(move |ev| {
            let _ = tx.send(ev);
        }),
    );
    assert!(res.is_err());
}

#[test]
fn random_workload_reopens_to_the_same_live_set() {
    for seed in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut j, _, rx) = open(dir, small(32 * 1024));
        let mut live: Vec<u64> = Vec::new();
        let mut next = 1;
        for _ in 0..300 {
            for _ in 0..rng.usize(1..8) {
                j.append(msg(next)).unwrap();
                live.push(next);
                next += 1;
            }
            while live.len() > 60 || (!live.is_empty() && rng.bool()) {
                let seq = live.swap_remove(rng.usize(0..live.len()));
                assert!(j.remove(seq));
            }
            let t = j.commit();
            if rng.u8(..) < 64 {
                wait(&j, &rx, t);
            }
        }
        let t = j.commit();
        wait(&j, &rx, t);
        drop(j);
        let (_j, r, _rx) = open(dir, small(32 * 1024));
        let mut got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        got.sort();
        live.sort();
        assert_eq!(got, live, "seed {seed}");
    }
}

#[test]
fn random_workload_on_a_disk_that_fills_up_loses_and_resurrects_nothing() {
    // Writes fail now and then for lack of room (removals then go ahead of
    // the failed messages), and the journal is closed at a random moment:
    // what was confirmed must be there, what was confirmed removed must not
    // come back, and nothing damaged is read.
    // STORE_SEEDS=A..B runs those seeds instead (a longer search).
    let seeds = match std::env::var("STORE_SEEDS") {
        Ok(s) => {
            let (a, b) = s.split_once("..").expect("STORE_SEEDS=A..B");
            a.parse().unwrap()..b.parse().unwrap()
        }
        Err(_) => 0..96,
    };
    for seed in seeds {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let room = Arc::new(AtomicU64::new(u64::MAX));
        // Two disks: one whose room comes and goes, and a small one
        // (three segments' worth, or less than one), which fills for real
        // and gets room back only from deleted (or restarted) segments.
        let real_disk = seed % 3 == 2;
        let opts = JournalOptions {
            inject_write_room: (!real_disk).then(|| room.clone()),
            inject_disk_bytes: real_disk.then(|| [48 * 1024, 12 * 1024][seed as usize % 2]),
            preallocate: if real_disk { 2048 } else { 4 << 20 },
            retry_interval: Duration::from_millis(2),
            slack_segments: 1,
            ..small(16384)
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut j, _, _rx) = open(dir, opts);
        // seq -> (ticket of its append, ticket of its removal)
        let mut model: std::collections::BTreeMap<u64, (u64, Option<u64>)> = Default::default();
        let mut live: Vec<u64> = Vec::new();
        let mut next = 1;
        let stop = rng.usize(40..250);
        for step in 0..stop {
            let t = j.last_ticket() + 1;
            // A producer's turn or a consumer's, mostly apart, as in a
            // broker.
            let produce = rng.u8(..) < 140;
            let mut appended = Vec::new();
            for _ in 0..if produce { rng.usize(1..4) } else { 0 } {
                j.append(msg(next)).unwrap();
                appended.push(next);
                next += 1;
            }
            // Deliveries (of any live message, one whose write failed
            // too), and now and then a move to another queue (a new
            // version of the same seq, replacing the old one).
            let mut marked = false;
            for _ in 0..if produce { 0 } else { rng.usize(0..3) } {
                if !live.is_empty() {
                    assert!(j.delivered(live[rng.usize(0..live.len())]));
                    marked = true;
                }
            }
            if !live.is_empty() && rng.u8(..) < 20 {
                let seq = live[rng.usize(0..live.len())];
                let mut moved = msg(seq);
                moved.queue = bytes::Bytes::from_static(b"/queue/DLQ");
                // As one record, or as a removal and an append in one
                // commit (the old copy must stay until the new one is on
                // disk).
                if rng.bool() {
                    j.replace(moved).unwrap();
                } else {
                    assert!(j.remove(seq));
                    j.append(moved).unwrap();
                }
                marked = true;
            }
            let mut removed = Vec::new();
            while !live.is_empty() && (live.len() > 40 || (!produce && rng.u8(..) < 160)) {
                let seq = live.swap_remove(rng.usize(0..live.len()));
                assert!(j.remove(seq));
                removed.push(seq);
            }
            if appended.is_empty() && removed.is_empty() && !marked {
                continue;
            }
            assert_eq!(j.commit(), t);
            for seq in appended {
                model.insert(seq, (t, None));
                live.push(seq);
            }
            for seq in removed {
                model.get_mut(&seq).unwrap().1 = Some(t);
            }
            if step % 7 == 0 {
                let r = if rng.bool() {
                    u64::MAX
                } else {
                    rng.u64(0..800)
                };
                room.store(r, Ordering::Release);
            }
            if rng.u8(..) < 40 {
                std::thread::sleep(Duration::from_millis(rng.u64(0..4)));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..10)));
        let durable = j.durable_ticket();
        drop(j);
        let (_j, r, _rx) = open_raw(dir, small(16384));
        assert!(r.cuts.is_empty(), "seed {seed}: {:?}", r.cuts);
        let got: std::collections::BTreeSet<u64> = r.messages.iter().map(|m| m.seq).collect();
        for (seq, (added, removed)) in &model {
            if *added <= durable && removed.is_none() {
                assert!(
                    got.contains(seq),
                    "seed {seed}: confirmed {seq} lost {:?} {:?} dur={durable}",
                    segments(dir),
                    model.get(seq)
                );
            }
            if removed.is_some_and(|t| t <= durable) {
                assert!(
                    !got.contains(seq),
                    "seed {seed}: removed {seq} came back {:?} dur={durable}",
                    segments(dir)
                );
            }
        }
        assert!(got.iter().all(|s| model.contains_key(s)), "seed {seed}");
    }
}

#[test]
fn a_message_moved_to_a_dead_letter_queue_keeps_its_seq_and_deliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _, rx) = open_raw(dir, small(4096));
    for seq in 1..=30 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    wait(&j, &rx, t);
    // Seq 7 was delivered twice and NACKed: it moves to the DLQ, same seq.
    assert!(j.delivered(7));
    assert!(j.delivered(7));
    assert!(j.remove(7));
    let mut dead = msg(7);
    dead.queue = bytes::Bytes::from_static(b"/queue/DLQ.q1");
    dead.deliveries = 2;
    j.append(dead.clone()).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let (_j, r, _rx) = open_raw(dir, small(4096));
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
    let m7 = r.messages.iter().find(|m| m.seq == 7).unwrap();
    assert_eq!(m7, &dead);
}

#[test]
fn commits_queued_during_a_write_share_the_next_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A slow disk: each fsync takes 50 ms more.
    let opts = JournalOptions {
        extra_sync_latency: Duration::from_millis(50),
        ..JournalOptions::default()
    };
    let (mut j, _, rx) = open(dir, opts);
    j.append(msg(1)).unwrap();
    let first = j.commit();
    let mut last = first;
    for seq in 2..=21 {
        j.append(msg(seq)).unwrap();
        last = j.commit();
    }
    assert_eq!(last, first + 20, "one ticket per commit");
    wait(&j, &rx, last);
    // The first write, then everything that queued meanwhile in one or two.
    let writes = j.stats().writes;
    assert!(writes <= 3, "{writes} writes for 21 commits");
    let events: Vec<CommitEvent> = rx.try_iter().collect();
    assert!(events.iter().all(|e| matches!(e, CommitEvent::Durable(_))));
    drop(j);
    let (_j, r, _rx) = open(dir, JournalOptions::default());
    assert_eq!(r.messages.len(), 21);
}

#[test]
fn producers_answered_by_one_write_share_the_next_however_late_they_come() {
    let tmp = tempfile::tempdir().unwrap();
    // A slow disk (each fsync takes 100 ms more), so the group window is
    // capped at about 100 ms.
    let opts = JournalOptions {
        extra_sync_latency: Duration::from_millis(100),
        group_window: Duration::from_millis(200),
        ..JournalOptions::default()
    };
    let (mut j, _, rx) = open(tmp.path(), opts);
    // Four producers whose SENDs the event loop read in one turn: one batch.
    for seq in 1..=4 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    wait(&j, &rx, t);
    assert_eq!(j.stats().writes, 1);
    // Answered, they send again, each in its own turn, but later than the
    // last write took: the window counts from the first of them.
    std::thread::sleep(Duration::from_millis(150));
    let mut last = t;
    for seq in 5..=8 {
        std::thread::sleep(Duration::from_millis(2));
        j.append(msg(seq)).unwrap();
        last = j.commit();
    }
    wait(&j, &rx, last);
    assert_eq!(
        j.stats().writes,
        2,
        "the four answered producers share one fsync"
    );
}

#[test]
fn a_tombstone_outlives_the_message_it_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No compaction: only deletion rules act.
    let keep_all = JournalOptions {
        slack_segments: 1000,
        ..small(1024)
    };
    let (mut j, _, rx) = open(dir, keep_all.clone());
    for seq in 1..=10 {
        j.append(msg(seq)).unwrap();
    }
    let t = j.commit();
    wait(&j, &rx, t);
    // Acks arrive later, in later segments; seq 1 stays, pinning segment 1.
    for round in 0..30 {
        let seq = 11 + round;
        j.append(msg(seq)).unwrap();
        assert!(j.remove(seq));
        if round < 9 {
            assert!(j.remove(2 + round));
        }
        let t = j.commit();
        wait(&j, &rx, t);
    }
    drop(j);
    let segs_before = segments(dir).len();
    let (j, r, rx) = open(dir, keep_all);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, vec![1], "a removed message came back");
    // Segments holding tombstones for segment 1 are still there.
    assert!(segs_before >= 3, "{segs_before} segments");
    drop((j, rx));
    // With compaction, seq 1 moves forward and the old segments go.
    let (mut j, r, rx) = open(dir, small(1024));
    assert_eq!(r.messages.len(), 1);
    for seq in 100..130 {
        j.append(msg(seq)).unwrap();
        assert!(j.remove(seq));
        let t = j.commit();
        wait(&j, &rx, t);
    }
    drop(j);
    assert!(
        segments(dir).len() <= 6,
        "{} segments left",
        segments(dir).len()
    );
    let (_j, r, _rx) = open(dir, small(1024));
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, vec![1]);
}

/// A record of `body` bytes, not checked against `msg`.
fn sized(seq: u64, body: usize) -> stomp_store::Record {
    stomp_store::Record::new(
        "/queue/s",
        seq,
        bytes::Bytes::new(),
        bytes::Bytes::from(vec![7u8; body]),
    )
}

#[test]
fn a_compaction_copy_keeps_its_original_from_coming_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = JournalOptions {
        slack_segments: 2,
        ..small(1024)
    };
    let (mut j, _, rx) = open_raw(dir, opts.clone());
    let step = |j: &mut stomp_store::Journal| {
        let t = j.commit();
        wait(j, &rx, t);
    };
    // Segment 1: P (pinned, well filled) and Q.
    j.append(sized(1, 700)).unwrap();
    j.append(sized(2, 100)).unwrap();
    step(&mut j);
    // Segment 2: X, and the tombstone of Q (so segment 2 waits on segment 1).
    j.append(sized(3, 150)).unwrap();
    assert!(j.remove(2));
    step(&mut j);
    // A filler, consumed. Segment 2 is no longer active and mostly dead: X
    // is copied forward, segment 2 stays (it still waits on segment 1).
    j.append(sized(4, 900)).unwrap();
    assert!(j.remove(4));
    step(&mut j);
    // X is consumed; its tombstone sits beside its copy, in a segment that
    // must not go before segment 2 (which still holds the original X).
    assert!(j.remove(3));
    j.append(sized(5, 900)).unwrap();
    assert!(j.remove(5));
    step(&mut j);
    j.append(sized(6, 900)).unwrap();
    assert!(j.remove(6));
    step(&mut j);
    drop(j);
    let (_j, r, _rx) = open_raw(dir, opts);
    let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, vec![1], "a consumed message came back");
}

#[test]
fn a_replaced_message_survives_a_write_torn_anywhere() {
    // A move to a dead-letter queue is one record: a crash in the middle of
    // its write leaves the message where it was, never nowhere.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _, rx) = open_raw(dir, JournalOptions::default());
    j.append(msg(1)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    let before = segments(dir);
    let durable_len = std::fs::read(&before[0])
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .unwrap()
        + 1;
    assert!(j.delivered(1));
    let mut dead = msg(1);
    dead.queue = bytes::Bytes::from_static(b"/queue/DLQ.q1");
    dead.deliveries = 1;
    j.replace(dead.clone()).unwrap();
    assert!(j.replace(msg(99)).is_err(), "only a live seq is replaced");
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let full = std::fs::read(&before[0]).unwrap();
    let end = full.iter().rposition(|&b| b != 0).unwrap() + 1;
    for cut in durable_len..=end {
        let copy = tempfile::tempdir().unwrap();
        let mut bytes = full[..cut].to_vec();
        bytes.resize(full.len(), 0);
        std::fs::write(copy.path().join(before[0].file_name().unwrap()), &bytes).unwrap();
        let (_j, r, _rx) = open_raw(copy.path(), JournalOptions::default());
        assert_eq!(r.messages.len(), 1, "cut at {cut}: {:?}", r.messages);
        let q = &r.messages[0].queue;
        assert!(
            &q[..] == b"/queue/q1" || &q[..] == b"/queue/DLQ.q1",
            "cut at {cut}"
        );
        if cut == end {
            assert_eq!(r.messages[0], dead);
        }
    }
}

#[test]
fn a_delivery_record_outlives_nothing_it_counts_for() {
    // The DELIVER of a message sits in a later segment that otherwise
    // empties; deleting it first would bring the message back with its
    // delivery count short.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keep_all = JournalOptions {
        slack_segments: 1000,
        ..small(1024)
    };
    let (mut j, _, rx) = open(dir, keep_all.clone());
    j.append(msg(1)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    // Later segments: traffic that is consumed, and one delivery of seq 1.
    for seq in 2..40 {
        j.append(msg(seq)).unwrap();
        if seq == 20 {
            assert!(j.delivered(1));
        }
        let t = j.commit();
        wait(&j, &rx, t);
    }
    for seq in 2..40 {
        assert!(j.remove(seq));
        let t = j.commit();
        wait(&j, &rx, t);
    }
    drop(j);
    let (_j, r, _rx) = open(dir, keep_all);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].deliveries, 1, "the delivery count survived");
}

/// A group (one commit's messages: a transaction) comes back whole or not
/// at all: a write torn anywhere inside it drops all of it, also the
/// version it replaced comes back; a group the log went on after is kept.
#[test]
fn a_group_torn_anywhere_comes_back_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (mut j, _, rx) = open(&base, JournalOptions::default());
    j.append(msg(1)).unwrap();
    j.append(msg(2)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    let before = j.stats().file_bytes;
    // Message 2 moved (replaced, as to a dead-letter queue), 3..=5 new.
    let mut moved = msg(2);
    moved.queue = bytes::Bytes::from_static(b"/queue/dlq");
    let group = vec![
        (moved, true),
        (msg(3), false),
        (msg(4), false),
        (msg(5), false),
    ];
    assert!(j.append_group(group).iter().all(Result::is_ok));
    let t = j.commit();
    wait(&j, &rx, t);
    let full = j.stats().file_bytes;
    drop(j);
    let seg = segments(&base).pop().unwrap();
    let name = seg.file_name().unwrap().to_owned();
    for cut in (before + 1)..full {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_cut(&base, &dir, &name, cut);
        let (j, r, _rx) = open(&dir, JournalOptions::default());
        let got: Vec<(u64, &[u8])> = r.messages.iter().map(|m| (m.seq, &m.queue[..])).collect();
        assert_eq!(
            got,
            [(1, &b"/queue/q1"[..]), (2, &b"/queue/q2"[..])],
            "torn at {cut}: the group goes whole, message 2 stays where it was"
        );
        assert_eq!(r.cuts.len(), 1, "at {cut}");
        assert_eq!(r.cuts[0].offset, before, "at {cut}");
        drop(j);
        let (_j, r, _rx) = open(&dir, JournalOptions::default());
        assert!(r.cuts.is_empty(), "cut for good at {cut}");
        assert_eq!(r.messages.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Whole, and then more: all of it.
    let (mut j, r, rx) = open_raw(&base, JournalOptions::default());
    assert_eq!(
        r.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(&r.messages[1].queue[..], b"/queue/dlq");
    j.append(msg(6)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let (_j, r, _rx) = open_raw(&base, JournalOptions::default());
    assert_eq!(r.messages.len(), 6);
    assert!(r.cuts.is_empty());
}

/// A group bigger than a segment still goes in one segment (which grows to
/// hold it), so it too comes back whole or not at all; the next append
/// starts a new segment.
#[test]
fn a_group_bigger_than_a_segment_stays_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (mut j, _, rx) = open(&base, small(1024));
    j.append(msg(1)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    let group: Vec<_> = (2..=20).map(|s| (msg(s), false)).collect();
    let bytes: u64 = group.iter().map(|(r, _)| r.encoded_len()).sum();
    assert!(bytes > 2 * 1024, "the group is bigger than a segment");
    assert!(j.append_group(group).iter().all(Result::is_ok));
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    let segs = segments(&base);
    assert_eq!(segs.len(), 2, "message 1's segment, then the group's");
    let group_seg = segs[1].clone();
    let written = data_bytes(&base) - data_bytes_of(&segs[0]);
    assert!(written > bytes, "the whole group is in the second segment");
    let name = group_seg.file_name().unwrap().to_owned();
    for cut in (16..written).step_by(61) {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_cut(&base, &dir, &name, cut);
        let (_j, r, _rx) = open(&dir, small(1024));
        let got: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
        assert_eq!(got, [1], "torn at {cut}: none of the group");
        drop(_j);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let (mut j, r, rx) = open(&base, small(1024));
    assert_eq!(r.messages.len(), 20);
    j.append(msg(21)).unwrap();
    let t = j.commit();
    wait(&j, &rx, t);
    drop(j);
    assert_eq!(segments(&base).len(), 3, "the next append starts a segment");
    let (_j, r, _rx) = open(&base, small(1024));
    assert_eq!(r.messages.len(), 21);
}

/// Bytes of one segment file up to its last byte that is not zero.
fn data_bytes_of(p: &std::path::Path) -> u64 {
    let b = std::fs::read(p).unwrap();
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1) as u64
}
