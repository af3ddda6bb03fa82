//! Persistent messages with receipts per second: the journal against redb.
//!
//! The workload of a broker with durable queues: P producer threads each send
//! a message and wait for its "receipt" before sending the next; an
//! event-loop thread appends what arrived, commits once per turn, and answers
//! a producer when the commit holding its message is durable; a consumer acks
//! each message once it is durable (a removal in the next commit). Both
//! engines get the same event loop and the same group commit: a writer thread
//! that takes every batch queued while it was busy and makes them durable
//! together (for redb: one write transaction with `Durability::Immediate`).
//!
//! ```text
//! cargo run --release -p stomp-store --example bench -- [--secs 2] [--rounds 3] [--group-window-us 500] [--extra-sync-us 0] [--producers N] [--dir /parent/of/scratch/dir] [--engine journal|redb|both]
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stomp_store::{CommitEvent, Journal, JournalOptions, Record};

/// What the event loop needs from a store.
trait Engine {
    fn append(&mut self, r: Record);
    fn remove(&mut self, seq: u64);
    fn commit(&mut self) -> u64;
}

impl Engine for Journal {
    fn append(&mut self, r: Record) {
        Journal::append(self, r).unwrap();
    }
    fn remove(&mut self, seq: u64) {
        Journal::remove(self, seq);
    }
    fn commit(&mut self) -> u64 {
        Journal::commit(self)
    }
}

/// One commit for the redb writer: its ticket and (seq, value or removal).
type RedbBatch = (u64, Vec<(u64, Option<Bytes>)>);
/// Rates and disk use per (engine, body size, producers).
type Results<'a> = std::collections::BTreeMap<(&'a str, usize, usize), Vec<(f64, u64)>>;

/// redb behind the same append/remove/commit interface, with a writer thread
/// doing one transaction per group of queued commits.
struct Redb {
    ops: Vec<(u64, Option<Bytes>)>,
    ticket: u64,
    tx: Option<mpsc::Sender<RedbBatch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Write transactions committed by the redb writer.
static REDB_TXNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("messages");

impl Redb {
    fn open(path: &Path, extra: Duration, notify: impl Fn(u64) + Send + 'static) -> Redb {
        let db = redb::Database::create(path).unwrap();
        let (tx, rx) = mpsc::channel::<RedbBatch>();
        let thread = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                group.extend(rx.try_iter());
                let wtx = db.begin_write().unwrap();
                {
                    let mut t = wtx.open_table(TABLE).unwrap();
                    for (seq, op) in group.iter().flat_map(|(_, ops)| ops) {
                        match op {
                            Some(v) => {
                                t.insert(seq, v.as_ref()).unwrap();
                            }
                            None => {
                                t.remove(seq).unwrap();
                            }
                        }
                    }
                }
                wtx.commit().unwrap();
                if !extra.is_zero() {
                    std::thread::sleep(extra);
                }
                REDB_TXNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                notify(group.last().unwrap().0);
            }
        });
        Redb {
            ops: Vec::new(),
            ticket: 0,
            tx: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Engine for Redb {
    fn append(&mut self, r: Record) {
        // queue, headers and body in one value, as a broker would store them.
        let mut v = Vec::with_capacity(r.queue.len() + r.headers.len() + r.body.len() + 8);
        v.extend_from_slice(&(r.queue.len() as u16).to_le_bytes());
        v.extend_from_slice(&r.queue);
        v.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        v.extend_from_slice(&r.headers);
        v.extend_from_slice(&r.body);
        self.ops.push((r.seq, Some(Bytes::from(v))));
    }
    fn remove(&mut self, seq: u64) {
        self.ops.push((seq, None));
    }
    fn commit(&mut self) -> u64 {
        if self.ops.is_empty() {
            return self.ticket;
        }
        self.ticket += 1;
        self.tx
            .as_ref()
            .unwrap()
            .send((self.ticket, std::mem::take(&mut self.ops)))
            .unwrap();
        self.ticket
    }
}

impl Drop for Redb {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.thread.take().unwrap().join().unwrap();
    }
}

enum Ev {
    Send(usize, Record),
    Durable(u64),
}

/// Runs P producers against `engine` for `secs`; returns messages confirmed per second.
fn run(
    engine: &mut dyn Engine,
    ev_rx: &mpsc::Receiver<Ev>,
    ev_tx: &mpsc::Sender<Ev>,
    p: usize,
    body: usize,
    secs: f64,
) -> f64 {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut replies = Vec::new();
    let mut producers = Vec::new();
    for id in 0..p {
        let (rtx, rrx) = mpsc::channel::<bool>();
        replies.push(rtx);
        let tx = ev_tx.clone();
        producers.push(std::thread::spawn(move || {
            let headers =
                Bytes::from_static(b"persistent:true\ncontent-type:text/plain\nreceipt:r\n");
            let payload = Bytes::from(vec![b'x'; body]);
            let mut n = 0u64;
            loop {
                let r = Record::new("/queue/bench", 0, headers.clone(), payload.clone());
                if tx.send(Ev::Send(id, r)).is_err() {
                    return n;
                }
                match rrx.recv() {
                    Ok(true) => n += 1,
                    _ => return n,
                }
            }
        }));
    }
    let mut seq = 0u64;
    let mut waiting: Vec<(u64, usize, u64)> = Vec::new(); // (ticket, producer, seq)
    let mut turn: Vec<(usize, u64)> = Vec::new();
    let mut done = 0u64;
    let start = Instant::now();
    while Instant::now() < stop {
        let Ok(first) = ev_rx.recv_timeout(Duration::from_secs(5)) else {
            break;
        };
        for ev in std::iter::once(first).chain(ev_rx.try_iter()) {
            match ev {
                Ev::Send(id, mut r) => {
                    seq += 1;
                    r.seq = seq;
                    engine.append(r);
                    turn.push((id, seq));
                }
                Ev::Durable(d) => {
                    waiting.retain(|&(t, id, s)| {
                        if t <= d {
                            let _ = replies[id].send(true);
                            engine.remove(s); // the consumer's ack
                            done += 1;
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        }
        let t = engine.commit();
        waiting.extend(turn.drain(..).map(|(id, s)| (t, id, s)));
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    drop(replies);
    // Unblock producers waiting on an event loop that stopped.
    while ev_rx.try_recv().is_ok() {}
    for t in producers {
        t.join().unwrap();
    }
    while ev_rx.try_recv().is_ok() {}
    rate
}

fn dir_bytes(p: &Path) -> u64 {
    if p.is_file() {
        return p.metadata().unwrap().len();
    }
    std::fs::read_dir(p)
        .map(|d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

/// Latency of one small write + fdatasync on this disk, for context.
fn fsync_latency(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&[0u8; 128]).unwrap();
        f.sync_data().unwrap();
    }
    let d = t.elapsed() / n;
    std::fs::remove_file(path).unwrap();
    d
}

fn main() {
    let mut secs = 2.0;
    let mut rounds = 3;
    let mut only: Option<usize> = None;
    // Emulated extra fsync latency (both engines sleep this long after each
    // durable commit): shows group commit on a disk with slow fsyncs.
    let mut extra = Duration::ZERO;
    let mut window = JournalOptions::default().group_window;
    let mut parent = std::env::temp_dir();
    let mut engines = vec!["journal", "redb"];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().unwrap().parse().unwrap(),
            "--producers" => only = Some(args.next().unwrap().parse::<usize>().unwrap()),
            "--extra-sync-us" => {
                extra = Duration::from_micros(args.next().unwrap().parse().unwrap())
            }
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--group-window-us" => {
                window = Duration::from_micros(args.next().unwrap().parse().unwrap())
            }
            "--dir" => parent = PathBuf::from(args.next().unwrap()),
            "--engine" => {
                engines = match args.next().unwrap().as_str() {
                    "journal" => vec!["journal"],
                    "redb" => vec!["redb"],
                    _ => vec!["journal", "redb"],
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    // A directory of our own inside the one given: it is removed at the end.
    let dir = parent.join(format!("stomp-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "fsync (128-byte write + fdatasync) on {}: {:?}",
        dir.display(),
        fsync_latency(&dir)
    );
    // Rounds interleave the engines so that a noisy neighbour on the disk
    // hurts both alike; the median of the rounds is reported.
    let cases: Vec<(usize, usize)> = [128usize, 1024]
        .iter()
        .flat_map(|b| [1usize, 8, 64].map(|p| (*b, p)))
        .filter(|(_, p)| only.is_none_or(|o| o == *p))
        .collect();
    let mut results: Results = Default::default();
    for round in 0..rounds {
        for &(body, p) in &cases {
            for engine in &engines {
                let path = dir.join(format!("{engine}-{body}-{p}-{round}"));
                let (ev_tx, ev_rx) = mpsc::channel::<Ev>();
                let tx = ev_tx.clone();
                let rate = if *engine == "journal" {
                    let notify = Box::new(move |ev: CommitEvent| {
                        if let CommitEvent::Durable(t) = ev {
                            let _ = tx.send(Ev::Durable(t));
                        }
                    });
                    let opts = JournalOptions {
                        group_window: window,
                        extra_sync_latency: extra,
                        ..JournalOptions::default()
                    };
                    let (mut j, _) = Journal::open(&path, opts, notify).unwrap();
                    let rate = run(&mut j, &ev_rx, &ev_tx, p, body, secs);
                    eprintln!(
                        "  journal: {} writes, {:.1} msgs per write",
                        j.stats().writes,
                        rate * secs / j.stats().writes as f64
                    );
                    rate
                } else {
                    let mut r = Redb::open(&path, extra, move |t| {
                        let _ = tx.send(Ev::Durable(t));
                    });
                    let before = REDB_TXNS.load(std::sync::atomic::Ordering::Relaxed);
                    let rate = run(&mut r, &ev_rx, &ev_tx, p, body, secs);
                    let txns = REDB_TXNS.load(std::sync::atomic::Ordering::Relaxed) - before;
                    eprintln!(
                        "  redb: {txns} transactions, {:.1} msgs per transaction",
                        rate * secs / txns as f64
                    );
                    rate
                };
                let disk = dir_bytes(&path);
                eprintln!(
                    "round {round}: {engine} {body} B x{p}: {rate:.0} msgs/s, {disk} bytes on disk"
                );
                results
                    .entry((engine, body, p))
                    .or_default()
                    .push((rate, disk));
                let _ = std::fs::remove_dir_all(&path);
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    println!(
        "| engine | body | producers | msgs/s (median of {rounds}) | min..max | vs 1 producer | disk after run |"
    );
    println!("|---|---|---|---|---|---|---|");
    for engine in &engines {
        for body in [128usize, 1024] {
            let mut base = 0.0;
            for p in [1usize, 8, 64] {
                let Some(v) = results.get(&(*engine, body, p)) else {
                    continue;
                };
                let mut v = v.clone();
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (rate, disk) = v[v.len() / 2];
                if p == 1 || base == 0.0 {
                    base = rate;
                }
                println!(
                    "| {engine} | {body} B | {p} | {rate:.0} | {:.0}..{:.0} | {:.1}x | {:.1} MiB |",
                    v[0].0,
                    v[v.len() - 1].0,
                    rate / base,
                    disk as f64 / (1 << 20) as f64
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
