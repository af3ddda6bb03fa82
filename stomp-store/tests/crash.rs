//! kill -9 during commits: every confirmed message survives intact, no
//! confirmed removal comes back.
//!
//! The test re-runs its own binary as the child (`crash_child`, active only
//! with `STOMP_STORE_CRASH_DIR` set), which appends, removes and commits in a
//! loop with several commits in flight, and prints one line per commit once
//! the journal reports it durable. The parent kills it at a random moment,
//! reopens the journal and checks it against the printed lines.

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stomp_store::CommitEvent;

const ENV: &str = "STOMP_STORE_CRASH_DIR";
const SEGMENT: u64 = 32 * 1024;

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let (mut j, r, rx) = open(std::path::Path::new(&dir), small(SEGMENT));
    let mut live: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    let mut next = r.max_seq + 1;
    let mut rng = fastrand::Rng::new();
    let mut inflight: VecDeque<(u64, Vec<u64>, Vec<u64>)> = VecDeque::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut added = Vec::new();
        for _ in 0..rng.usize(1..8) {
            j.append(msg(next)).unwrap();
            live.push(next);
            added.push(next);
            next += 1;
        }
        let mut removed = Vec::new();
        while live.len() > 60 || (!live.is_empty() && rng.bool()) {
            removed.push(live.swap_remove(rng.usize(0..live.len())));
        }
        // Say what is about to be removed before removing it: a removal may
        // become durable without its confirmation line being printed.
        println!("I {}", join(&removed));
        for seq in &removed {
            assert!(j.remove(*seq));
        }
        let t = j.commit();
        inflight.push_back((t, added, removed));
        loop {
            let ev = if inflight.len() > 3 {
                rx.recv().ok()
            } else {
                rx.try_recv().ok()
            };
            let Some(ev) = ev else { break };
            let CommitEvent::Durable(d) = ev else {
                panic!("{ev:?}")
            };
            while inflight.front().is_some_and(|f| f.0 <= d) {
                let (_, a, r) = inflight.pop_front().unwrap();
                println!("D {} R {}", join(&a), join(&r));
            }
        }
    }
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn parse(s: &str) -> impl Iterator<Item = u64> + '_ {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().unwrap())
}

#[test]
fn kill_9_during_commits_loses_nothing_confirmed() {
    if std::env::var(ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let exe = std::env::current_exe().unwrap();
    let mut confirmed: HashSet<u64> = HashSet::new();
    let mut removed: HashSet<u64> = HashSet::new();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut lines_total = 0;
    let started = Instant::now();
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(40..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Only complete lines count: a line cut by the kill was not printed.
        let complete = match out.rfind('\n') {
            Some(i) => &out[..=i],
            None => "",
        };
        let mut intended = HashSet::new();
        for line in complete.lines().filter_map(|l| l.strip_prefix("I ")) {
            for seq in parse(line) {
                confirmed.remove(&seq);
                intended.insert(seq);
            }
        }
        for line in complete.lines().filter_map(|l| l.strip_prefix("D ")) {
            let (a, r) = line.split_once(" R ").unwrap();
            for seq in parse(a) {
                // A seq may be used again once everything about it is deleted.
                removed.remove(&seq);
                if !intended.contains(&seq) {
                    confirmed.insert(seq);
                }
            }
            for seq in parse(r) {
                confirmed.remove(&seq);
                removed.insert(seq);
            }
            lines_total += 1;
        }
        // `open` checks every recovered message byte for byte.
        let (j, r, _rx) = open(&dir, small(SEGMENT));
        let got: HashSet<u64> = r.messages.iter().map(|m| m.seq).collect();
        let missing: Vec<_> = confirmed.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "round {round}: confirmed messages lost: {missing:?}"
        );
        let back: Vec<_> = removed.intersection(&got).collect();
        assert!(
            back.is_empty(),
            "round {round}: confirmed removals came back: {back:?}"
        );
        assert!(
            r.cuts.iter().all(|c| c.truncated),
            "round {round}: damage outside the tail: {:?}",
            r.cuts
        );
        // Bounded: the child keeps at most ~60 live messages.
        assert!(
            dir_bytes(&dir) < 12 * SEGMENT,
            "round {round}: {} bytes",
            dir_bytes(&dir)
        );
        drop(j);
    }
    assert!(
        lines_total > 20,
        "the child confirmed only {lines_total} commits"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
}
