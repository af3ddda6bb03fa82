//! Arbitrary frame sequences from several fake connections into the broker
//! engine (no sockets, injected time).
//!
//! Frames are built from a small vocabulary (a few destinations, ids and
//! transactions, acks that name messages the connection really received)
//! so the fuzzer reaches deep states; raw byte chunks cover the decoder
//! path. Limits are tiny so backpressure, slow consumers, prefetch windows
//! and dead-lettering happen often.
//!
//! Half the inputs run on a store like the journal (`SlowDisk`): RECEIPTs
//! wait for commits that the input makes durable, or fails, when it likes.
//!
//! Checks: no panic, and after every step `Engine::check_invariants`: a
//! message is never both queued and awaiting ack (nor twice anywhere);
//! messages accepted = consumed (acked / auto) + queued (dead-letter queues
//! included) + in flight; memory counters match the messages held;
//! subscriptions are registered on both sides; RECEIPT gates lie inside
//! the outbox.
#![no_main]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stomp_broker::auth::AllowAll;
use stomp_broker::engine::{ConnId, Engine};
use stomp_broker::store::{Recovery, Store, StoredMessage};
use stomp_broker::{Config, Output, SlowConsumerPolicy};
use stomp_frame::bytes::BytesMut;
use stomp_frame::{AckMode, Command, Frame, Version};

const DESTS: [&str; 6] = [
    "/queue/a",
    "/queue/b",
    "/topic/t",
    "/queue/DLQ.a",
    "/nowhere",
    "/topic/u",
];

#[derive(Arbitrary, Debug)]
enum Op {
    Open,
    Connect {
        conn: u8,
        version: u8,
        hb: (u8, u8),
    },
    Frame {
        conn: u8,
        frame: F,
        receipt: bool,
    },
    Raw {
        conn: u8,
        bytes: Vec<u8>,
    },
    Drain {
        conn: u8,
        unwritten: u16,
    },
    Close {
        conn: u8,
    },
    Advance {
        ms: u16,
    },
    /// The disk finishes every commit so far, or fails them.
    Disk {
        fail: bool,
    },
}

/// Commits on a disk that the input drives: RECEIPTs wait, as on the
/// journal, until `Op::Disk` makes the commits so far durable or failed.
struct SlowDisk {
    changes: u64,
    issued: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Store for SlowDisk {
    fn name(&self) -> &'static str {
        "fuzz"
    }
    fn recover(&mut self) -> io::Result<Recovery> {
        Ok(Recovery::default())
    }
    fn append(&mut self, _: &StoredMessage) -> io::Result<()> {
        self.changes += 1;
        Ok(())
    }
    fn remove(&mut self, _: &str, _: u64) -> io::Result<()> {
        self.changes += 1;
        Ok(())
    }
    fn delivered(&mut self, _: &str, _: u64) -> io::Result<()> {
        self.changes += 1;
        Ok(())
    }
    fn changes(&self) -> u64 {
        self.changes
    }
    fn is_durable(&self) -> bool {
        true
    }
    fn commit(&mut self) -> io::Result<u64> {
        Ok(self.issued.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn durable_ticket(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }
    fn failed_ticket(&mut self) -> Option<(u64, String)> {
        let f = self.failed.swap(0, Ordering::SeqCst);
        (f > 0).then(|| (f, "disk full".to_owned()))
    }
}

#[derive(Arbitrary, Debug)]
enum F {
    Send {
        dest: u8,
        tx: Option<u8>,
        len: u8,
    },
    Subscribe {
        id: u8,
        dest: u8,
        ack: u8,
        prefetch: Option<u8>,
        with_id: bool,
    },
    Unsubscribe {
        id: u8,
    },
    Ack {
        which: u8,
        nack: bool,
        tx: Option<u8>,
        form: u8,
    },
    Begin {
        tx: u8,
    },
    Commit {
        tx: u8,
    },
    Abort {
        tx: u8,
    },
    Disconnect,
}

struct Conn {
    id: ConnId,
    version: Version,
    got: Vec<Frame>,
    /// The connection's one read buffer (the decoder's contract: new bytes
    /// are appended to what it left).
    rbuf: BytesMut,
}

fn pick<T>(v: &[T], i: u8) -> Option<usize> {
    (!v.is_empty()).then(|| i as usize % v.len())
}

fn build(f: F, c: &Conn) -> Frame {
    match f {
        F::Send { dest, tx, len } => Frame::send(DESTS[dest as usize % DESTS.len()])
            .header("x-n", len.to_string())
            .header_opt("transaction", tx.map(|t| format!("t{}", t % 3)))
            .body(vec![b'x'; len as usize * 8]),
        F::Subscribe {
            id,
            dest,
            ack,
            prefetch,
            with_id,
        } => {
            let mode =
                [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual][ack as usize % 3];
            let mut f = Frame::new(Command::Subscribe)
                .header("destination", DESTS[dest as usize % DESTS.len()])
                .header("ack", mode.as_str())
                .header_opt("prefetch-count", prefetch.map(|p| (p % 5).to_string()));
            if with_id {
                f = f.header("id", (id % 4).to_string());
            }
            f
        }
        F::Unsubscribe { id } => Frame::unsubscribe((id % 4).to_string()),
        F::Ack {
            which,
            nack,
            tx,
            form,
        } => {
            let base = match pick(&c.got, which) {
                None => Frame::new(if nack { Command::Nack } else { Command::Ack })
                    .header("id", format!("{which}.{form}")),
                Some(i) => {
                    let m = &c.got[i];
                    let v = [Version::V1_0, Version::V1_1, Version::V1_2][form as usize % 3];
                    let f = if nack {
                        Frame::nack_for(m, v)
                    } else {
                        Frame::ack_for(m, v)
                    };
                    f.unwrap_or_else(|| Frame::new(Command::Ack))
                }
            };
            base.header_opt("transaction", tx.map(|t| format!("t{}", t % 3)))
        }
        F::Begin { tx } => Frame::begin(format!("t{}", tx % 3)),
        F::Commit { tx } => Frame::commit(format!("t{}", tx % 3)),
        F::Abort { tx } => Frame::abort(format!("t{}", tx % 3)),
        F::Disconnect => Frame::disconnect(),
    }
}

fuzz_target!(|input: (bool, Vec<Op>)| {
    let (durable, ops) = input;
    let cfg = Config {
        prefetch: 3,
        max_deliveries: 3,
        max_queue_memory: Some(3000),
        max_memory: 6000,
        max_write_backlog: 1500,
        slow_consumer_policy: SlowConsumerPolicy::Disconnect,
        heartbeat_min: 10,
        heartbeat_max: 1000,
        max_body_size: 4096,
        max_frame_size: 8192,
        max_headers: 16,
        max_header_line: 512,
        ..Config::default()
    };
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut e = if durable {
        let disk = SlowDisk {
            changes: 0,
            issued: issued.clone(),
            durable: done.clone(),
            failed: failed.clone(),
        };
        Engine::with_parts(cfg, Box::new(disk), Box::new(AllowAll))
    } else {
        Engine::new(cfg)
    };
    let mut now = Instant::now();
    let mut conns: Vec<Conn> = Vec::new();
    for op in ops.into_iter().take(400) {
        match op {
            Op::Open => {
                if conns.len() < 5 {
                    let id = e.open(now);
                    conns.push(Conn {
                        id,
                        version: Version::V1_2,
                        got: Vec::new(),
                        rbuf: BytesMut::new(),
                    });
                }
            }
            Op::Connect { conn, version, hb } => {
                let Some(i) = pick(&conns, conn) else {
                    continue;
                };
                let accept = ["1.0", "1.1", "1.2", "1.0,1.1,1.2", "2.0"][version as usize % 5];
                let f = Frame::new(Command::Connect)
                    .header_opt("accept-version", (version % 6 != 5).then_some(accept))
                    .header(
                        "heart-beat",
                        format!("{},{}", hb.0 as u32 * 10, hb.1 as u32 * 10),
                    );
                e.handle_frame(conns[i].id, f, now);
                conns[i].version = e.version(conns[i].id);
            }
            Op::Frame {
                conn,
                frame,
                receipt,
            } => {
                let Some(i) = pick(&conns, conn) else {
                    continue;
                };
                let f = build(frame, &conns[i]);
                let f = if receipt { f.header("receipt", "r") } else { f };
                e.handle_frame(conns[i].id, f, now);
            }
            Op::Raw { conn, bytes } => {
                let Some(i) = pick(&conns, conn) else {
                    continue;
                };
                let c = &mut conns[i];
                c.rbuf.extend_from_slice(&bytes);
                e.handle_input(c.id, &mut c.rbuf, now);
            }
            Op::Drain { conn, unwritten } => {
                let Some(i) = pick(&conns, conn) else {
                    continue;
                };
                let id = conns[i].id;
                while let Some(out) = e.pop_output(id) {
                    let f = match out {
                        Output::Frame(f) => f,
                        Output::Consumed { frame, queue, seq } => {
                            e.auto_acked(&queue, seq);
                            frame
                        }
                        Output::Heartbeat => continue,
                    };
                    if f.command == Command::Message {
                        conns[i].got.push(f);
                        if conns[i].got.len() > 16 {
                            conns[i].got.remove(0);
                        }
                    }
                }
                let unwritten = (unwritten % 3000) as usize;
                e.wrote(id, unwritten, now);
                if e.should_close(id, unwritten) {
                    e.close(id, now);
                    conns.remove(i);
                }
                let mut resumed = Vec::new();
                e.take_resumed(&mut resumed);
                for r in resumed {
                    assert!(!e.is_paused(r));
                }
                let mut dirty = Vec::new();
                e.take_dirty(&mut dirty);
            }
            Op::Close { conn } => {
                let Some(i) = pick(&conns, conn) else {
                    continue;
                };
                e.close(conns[i].id, now);
                conns.remove(i);
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(ms as u64 % 5000);
                e.handle_timeout(now);
            }
            Op::Disk { fail } => {
                let top = issued.load(Ordering::SeqCst);
                if fail {
                    failed.store(top, Ordering::SeqCst);
                } else {
                    done.store(top, Ordering::SeqCst);
                }
            }
        }
        // As the driver does once per turn.
        e.flush_store(now);
        if let Err(why) = e.check_invariants() {
            panic!("invariant broken: {why}");
        }
    }
    for c in conns {
        e.close(c.id, now);
    }
    e.check_invariants().unwrap();
    let s = e.stats();
    assert_eq!(
        s.accepted,
        s.consumed + e.queued_total() as u64,
        "after every connection left, nothing is in flight"
    );
});
