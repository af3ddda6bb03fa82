//! Bounded load tests with the numbers: 500 concurrent connections,
//! and 100,000 messages through one queue with none lost, none duplicated,
//! and in order. Each runs well under 20 s in a debug build; throughput
//! is measured by `stomp bench`, not here.

use std::thread;
use std::time::{Duration, Instant};

use stomp_tests::*;

#[test]
fn five_hundred_concurrent_connections() {
    const N: usize = 500;
    let limit = raise_nofile(4 * N as u64 + 256);
    assert!(
        limit >= 2 * N as u64 + 64,
        "need at least {} open files (test and broker), have {limit}",
        2 * N + 64
    );
    let b = Broker::start();
    let rss_idle = b.rss_kib().unwrap_or(0);
    let start = Instant::now();
    let mut conns: Vec<Conn> = (0..N).map(|_| b.open()).collect();
    // Pipelined: every CONNECT and SUBSCRIBE first, then the answers.
    for (i, c) in conns.iter_mut().enumerate() {
        let mut wire = c.encode(&Frame::connect("localhost", &[Version::V1_2]));
        wire.extend(
            c.encode(
                &Frame::subscribe("0", format!("/queue/load-{i}"), AckMode::Auto)
                    .header("receipt", "s"),
            ),
        );
        wire.extend(
            c.encode(&Frame::subscribe("1", "/topic/all", AckMode::Auto).header("receipt", "t")),
        );
        c.send_raw(&wire);
    }
    for c in &mut conns {
        let f = c.expect(Command::Connected);
        c.set_version(f.version().unwrap_or(Version::V1_0));
        c.expect_receipt("s");
        c.expect_receipt("t");
    }
    let connected = start.elapsed();
    // Each one sends to its neighbour's queue.
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(&Frame::send(format!("/queue/load-{}", (i + 1) % N)).header("from", i.to_string()));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let m = c.expect_message();
        assert_eq!(
            m.headers.get("from"),
            Some(((i + N - 1) % N).to_string().as_str())
        );
    }
    // One topic message reaches all 500.
    conns[0].send(&Frame::send("/topic/all").body("to everyone"));
    for c in &mut conns {
        let m = c.expect_message();
        assert_eq!(&m.body[..], b"to everyone");
    }
    let rss = b.rss_kib().unwrap_or(0);
    eprintln!(
        "{N} connections: connected+subscribed in {connected:?}, all exchanges in {:?}; broker RSS {rss_idle} KiB idle, {rss} KiB with {N} connections",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn hundred_thousand_messages_in_order_none_lost_none_duplicated() {
    const N: usize = 100_000;
    let b = Broker::start();
    let mut consumer = b.connect(Version::V1_2);
    consumer.subscribe("0", "/queue/bulk", AckMode::Auto);
    let addr = b.addr();
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut p = Conn::open(addr);
        p.connect(Version::V1_2);
        // Pipelined: frames batched into large writes, one receipt at the end.
        let mut batch = Vec::with_capacity(256 * 1024);
        for i in 0..N {
            let mut f = Frame::send("/queue/bulk")
                .header("seq", i.to_string())
                .body(format!("message {i}"));
            if i == N - 1 {
                f = f.header("receipt", "last");
            }
            batch.extend(p.encode(&f));
            if batch.len() >= 128 * 1024 || i == N - 1 {
                p.send_raw(&batch);
                batch.clear();
            }
        }
        // Its RECEIPT comes once the broker has read the last SEND, which
        // waits (memory limits) for the consumer to drain what the socket
        // buffers still hold: seconds for a debug client on a busy machine.
        p.expect_receipt_within("last", Duration::from_secs(60));
    });
    for i in 0..N {
        let m = match consumer.recv(Duration::from_secs(10)) {
            Ok(m) => m,
            Err(e) => panic!("after {i} messages in {:?}: {e:?}", start.elapsed()),
        };
        let got = m.headers.get("seq").and_then(|s| s.parse::<usize>().ok());
        assert_eq!(got, Some(i), "message {i} out of order, lost or duplicated");
        assert_eq!(&m.body[..], format!("message {i}").as_bytes());
    }
    producer.join().expect("producer");
    consumer.expect_nothing(QUIET);
    let took = start.elapsed();
    eprintln!(
        "{N} messages through one queue in {took:?} ({:.0} msg/s; the test's own client is a debug build)",
        N as f64 / took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
