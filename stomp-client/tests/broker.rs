//! The client against our broker, run as a real process
//! (`stomp-broker --listen 127.0.0.1:0 --memory`), for STOMP 1.0, 1.1 and 1.2.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Broker, unique, wait_event};
use stomp_client::{
    AckMode, Client, ConnectOptions, ConnectionEvent, ConnectionState, Error, Frame,
    ReconnectPolicy, Version,
};

const S5: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

fn connect(broker: &Broker, version: Version) -> Client {
    let c = Client::connect(
        ConnectOptions::new(broker.address())
            .versions(&[version])
            .connect_timeout(S5)
            .receipt_timeout(S5)
            .disconnect_timeout(Duration::from_secs(2)),
    )
    .expect("connect to our broker");
    assert_eq!(c.version(), version);
    c
}

/// Runs a test body once per protocol version.
macro_rules! per_version {
    ($($name:ident => $body:ident;)*) => {
        mod v1_0 { use super::*; $( #[test] fn $name() { super::$body(Version::V1_0) } )* }
        mod v1_1 { use super::*; $( #[test] fn $name() { super::$body(Version::V1_1) } )* }
        mod v1_2 { use super::*; $( #[test] fn $name() { super::$body(Version::V1_2) } )* }
    };
}

per_version! {
    send_and_receive_auto => send_and_receive_auto;
    confirmed_send_gets_receipt => confirmed_send_gets_receipt;
    client_individual_ack_and_nack => client_individual_ack_and_nack;
    client_ack_is_cumulative => client_ack_is_cumulative;
    transactions_commit_abort_and_drop => transactions_commit_abort_and_drop;
    unsubscribe_explicit_and_on_drop => unsubscribe_explicit_and_on_drop;
    headers_survive_escaping => headers_survive_escaping;
    large_binary_body => large_binary_body;
    topic_fan_out_and_worker_pool => topic_fan_out_and_worker_pool;
    broker_error_reaches_the_call => broker_error_reaches_the_call;
}

fn send_and_receive_auto(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("auto"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    client.send(&q, "hello").unwrap();
    client
        .send_with(&q, &[("content-type", "text/plain"), ("x-n", "2")], "world")
        .unwrap();
    let a = sub.recv_timeout(S5).unwrap().expect("first message");
    let b = sub.recv_timeout(S5).unwrap().expect("second message");
    assert_eq!(&a.body()[..], b"hello");
    assert_eq!(&b.body()[..], b"world");
    assert_eq!(b.header("content-type"), Some("text/plain"));
    assert_eq!(b.header("x-n"), Some("2"));
    assert_eq!(a.destination(), Some(q.as_str()));
    assert!(a.message_id().is_some());
    assert_eq!(a.subscription(), Some(sub.id()));
    assert!(matches!(a.ack(), Err(Error::CannotAck(_))), "auto mode");
    assert!(sub.try_recv().unwrap().is_none());
    client.disconnect().unwrap();
}

fn confirmed_send_gets_receipt(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("rcpt"));
    for i in 0..20 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let got: Vec<_> = (0..20)
        .map(|_| sub.recv_timeout(S5).unwrap().expect("message"))
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect();
    assert_eq!(got, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    client.disconnect().unwrap();
}

fn client_individual_ack_and_nack(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("ci"));
    let mode = if v == Version::V1_0 {
        AckMode::Client
    } else {
        AckMode::ClientIndividual
    };
    for i in 0..3 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    {
        let sub = client.subscribe(&q, mode, &[]).unwrap();
        let m0 = sub.recv_timeout(S5).unwrap().unwrap();
        assert_eq!(&m0.body()[..], b"m0");
        m0.ack().unwrap();
        if v != Version::V1_0 {
            let m1 = sub.recv_timeout(S5).unwrap().unwrap();
            m1.nack().unwrap();
        }
        sub.unsubscribe().unwrap();
    }
    // What was not acked comes back on a new subscription; m0 does not.
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let mut rest = HashSet::new();
    while let Some(m) = sub.recv_timeout(SHORT).unwrap() {
        rest.insert(String::from_utf8(m.body().to_vec()).unwrap());
    }
    assert!(!rest.contains("m0"), "acked message redelivered: {rest:?}");
    assert!(rest.contains("m2"), "{rest:?}");
    client.disconnect().unwrap();
}

fn client_ack_is_cumulative(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("cum"));
    for i in 0..5 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    {
        let sub = client.subscribe(&q, AckMode::Client, &[]).unwrap();
        let msgs: Vec<_> = (0..5)
            .map(|_| sub.recv_timeout(S5).unwrap().unwrap())
            .collect();
        // Acking the 4th covers m0..m3.
        client.ack(&msgs[3]).unwrap();
        sub.unsubscribe().unwrap();
    }
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let mut rest = Vec::new();
    while let Some(m) = sub.recv_timeout(SHORT).unwrap() {
        rest.push(String::from_utf8(m.body().to_vec()).unwrap());
    }
    assert_eq!(rest, ["m4"]);
    client.disconnect().unwrap();
}

fn transactions_commit_abort_and_drop(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("tx"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();

    let tx = client.begin().unwrap();
    tx.send(&q, "in-tx-1").unwrap();
    tx.send_with(&q, &[("x", "y")], "in-tx-2").unwrap();
    assert!(
        sub.recv_timeout(SHORT).unwrap().is_none(),
        "visible before commit"
    );
    tx.commit().unwrap();
    let a = sub.recv_timeout(S5).unwrap().unwrap();
    let b = sub.recv_timeout(S5).unwrap().unwrap();
    assert_eq!(
        (&a.body()[..], &b.body()[..]),
        (&b"in-tx-1"[..], &b"in-tx-2"[..])
    );
    assert!(a.header("transaction").is_none() || v == Version::V1_0);

    let tx = client.begin().unwrap();
    tx.send(&q, "aborted").unwrap();
    tx.abort().unwrap();
    {
        let tx = client.begin().unwrap();
        tx.send(&q, "dropped").unwrap();
    }
    client.send_confirmed(&q, "after", S5).unwrap();
    let next = sub.recv_timeout(S5).unwrap().unwrap();
    assert_eq!(&next.body()[..], b"after");
    assert!(sub.recv_timeout(SHORT).unwrap().is_none());

    // Acks inside a transaction take effect at commit.
    let q2 = format!("/queue/{}", unique("txack"));
    client.send_confirmed(&q2, "to-ack", S5).unwrap();
    {
        let sub2 = client.subscribe(&q2, AckMode::Client, &[]).unwrap();
        let m = sub2.recv_timeout(S5).unwrap().unwrap();
        let tx = client.begin().unwrap();
        tx.ack(&m).unwrap();
        tx.commit().unwrap();
        sub2.unsubscribe().unwrap();
    }
    let sub2 = client.subscribe(&q2, AckMode::Auto, &[]).unwrap();
    assert!(
        sub2.recv_timeout(SHORT).unwrap().is_none(),
        "acked in tx, redelivered"
    );
    client.disconnect().unwrap();
}

fn unsubscribe_explicit_and_on_drop(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let t = format!("/topic/{}", unique("unsub"));
    let keep = client.subscribe(&t, AckMode::Auto, &[]).unwrap();
    let gone = client.subscribe(&t, AckMode::Auto, &[]).unwrap();
    let dropped = client.subscribe(&t, AckMode::Auto, &[]).unwrap();
    let gone_rx = gone.receiver();
    let dropped_rx = dropped.receiver();
    gone.unsubscribe().unwrap();
    drop(dropped);
    client.send_confirmed(&t, "one", S5).unwrap();
    assert!(keep.recv_timeout(S5).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(100));
    assert!(gone_rx.try_recv().is_err());
    assert!(dropped_rx.try_recv().is_err());
    client.disconnect().unwrap();
}

fn headers_survive_escaping(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("esc"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let tricky = "a:b\\c\nd";
    let r = client.send_with_confirmed(&q, &[("x-tricky", tricky), ("x-colon", "k:v:w")], "e", S5);
    if v == Version::V1_0 {
        // 1.0 has no escaping: a newline in a value cannot be written.
        assert!(matches!(r, Err(Error::Encode(_))), "{r:?}");
        client
            .send_with_confirmed(&q, &[("x-colon", "k:v:w")], "e", S5)
            .unwrap();
        let m = sub.recv_timeout(S5).unwrap().unwrap();
        assert_eq!(m.header("x-colon"), Some("k:v:w"));
    } else {
        r.unwrap();
        let m = sub.recv_timeout(S5).unwrap().unwrap();
        assert_eq!(m.header("x-tricky"), Some(tricky));
        assert_eq!(m.header("x-colon"), Some("k:v:w"));
    }
    client.disconnect().unwrap();
}

fn large_binary_body(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    let q = format!("/queue/{}", unique("big"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 256) as u8).collect();
    assert!(body.contains(&0));
    client.send_confirmed(&q, body.clone(), S5).unwrap();
    let m = sub.recv_timeout(S5).unwrap().unwrap();
    assert_eq!(m.body().len(), body.len());
    assert!(m.body()[..] == body[..]);
    client.disconnect().unwrap();
}

fn topic_fan_out_and_worker_pool(v: Version) {
    let broker = Broker::start();
    let client = Arc::new(connect(&broker, v));
    let t = format!("/topic/{}", unique("fan"));
    let subs: Vec<_> = (0..3)
        .map(|_| client.subscribe(&t, AckMode::Auto, &[]).unwrap())
        .collect();
    // Publish from 4 threads at once: the client is Send + Sync.
    std::thread::scope(|s| {
        for w in 0..4 {
            let client = &client;
            let t = &t;
            s.spawn(move || {
                for i in 0..25 {
                    client.send(t, format!("{w}-{i}")).unwrap();
                }
            });
        }
    });
    // Each subscription's messages shared by two worker threads.
    for sub in &subs {
        let seen: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let rx = sub.receiver();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        while let Ok(m) = rx.recv_timeout(Duration::from_millis(500)) {
                            got.push(String::from_utf8(m.body().to_vec()).unwrap());
                        }
                        got
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let set: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(seen.len(), 100);
        assert_eq!(set.len(), 100);
    }
    drop(subs);
    Arc::try_unwrap(client).unwrap().disconnect().unwrap();
}

fn broker_error_reaches_the_call(v: Version) {
    let broker = Broker::start();
    let client = connect(&broker, v);
    // A SEND without a destination is an error the broker must answer
    // with ERROR + receipt-id, then close.
    let bad = Frame::new(stomp_client::stomp_frame::Command::Send).body("x");
    match client.send_frame_confirmed(bad, S5) {
        Err(Error::Broker { receipt_id, .. }) => assert!(receipt_id.is_some()),
        other => panic!("{other:?}"),
    }
    let r = client.send("/queue/a", "x");
    assert!(matches!(r, Err(Error::ConnectionLost { .. })), "{r:?}");
}

#[test]
fn connects_by_url_and_reports_session() {
    let broker = Broker::start();
    let client = Client::connect_url(&format!("{}/", broker.url())).unwrap();
    let info = client.session_info().unwrap();
    assert_eq!(info.version, Version::V1_2);
    assert!(info.server.unwrap_or_default().starts_with("stomp-rs/"));
    assert!(info.session.is_some());
    assert_eq!(
        info.heart_beat.send,
        Some(Duration::from_millis(10_000)),
        "the broker follows what the client asks"
    );
    assert!(client.is_connected());
    client.disconnect().unwrap();
}

#[test]
fn reconnects_after_broker_restart_and_restores_subscriptions() {
    let mut broker = Broker::start();
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .heart_beat(200, 200)
            .connect_timeout(Duration::from_secs(2))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
                ..ReconnectPolicy::default()
            }),
    )
    .unwrap();
    let events = client.events();
    let q = format!("/queue/{}", unique("restart"));
    let sub = client
        .subscribe(&q, AckMode::ClientIndividual, &[])
        .unwrap();
    client.send_confirmed(&q, "before", S5).unwrap();
    let before = sub.recv_timeout(S5).unwrap().unwrap();

    broker.kill();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_))).is_some());
    assert_eq!(client.state(), ConnectionState::Reconnecting);
    std::thread::sleep(Duration::from_millis(200));
    broker.restart();
    let t0 = Instant::now();
    let ev = wait_event(&events, S5, |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    });
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            ev,
            Some(ConnectionEvent::Reconnected {
                subscriptions: 1,
                ..
            })
        ),
        "{ev:?}"
    );
    // The ack of a message from the lost session is refused, not sent.
    assert!(matches!(before.ack(), Err(Error::CannotAck(_))));
    // The restored subscription (same id) receives new messages.
    client.send_confirmed(&q, "after", S5).unwrap();
    let after = sub
        .recv_timeout(S5)
        .unwrap()
        .expect("message after restart");
    assert_eq!(&after.body()[..], b"after");
    assert_eq!(after.subscription(), Some(sub.id()));
    after.ack().unwrap();
    drop(sub);
    client.disconnect().unwrap();
}

#[test]
fn transaction_is_lost_with_its_connection() {
    let mut broker = Broker::start();
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .connect_timeout(Duration::from_secs(2))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                ..ReconnectPolicy::default()
            }),
    )
    .unwrap();
    let events = client.events();
    let q = format!("/queue/{}", unique("txlost"));
    let tx = client.begin().unwrap();
    tx.send(&q, "x").unwrap();
    broker.restart();
    loop {
        let ev = events.recv_timeout(S5).expect("Reconnected");
        if matches!(ev, ConnectionEvent::Reconnected { .. }) {
            break;
        }
    }
    assert!(matches!(tx.send(&q, "y"), Err(Error::TransactionLost(_))));
    assert!(matches!(tx.commit(), Err(Error::TransactionLost(_))));
    client.disconnect().unwrap();
}

#[test]
fn gives_up_after_max_attempts_and_closes() {
    let mut broker = Broker::start();
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .connect_timeout(Duration::from_millis(500))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(50),
                multiplier: 2.0,
                max_attempts: Some(3),
            }),
    )
    .unwrap();
    let events = client.events();
    let q = format!("/queue/{}", unique("giveup"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    broker.kill();
    let deadline = Instant::now() + S5;
    let closed = loop {
        match events.recv_deadline(deadline) {
            Ok(ConnectionEvent::Closed(reason)) => break reason,
            Ok(_) => {}
            Err(_) => panic!("never closed"),
        }
    };
    assert!(closed.is_some());
    assert_eq!(client.state(), ConnectionState::Closed);
    assert!(
        sub.recv_timeout(SHORT).is_err(),
        "subscription ends with the client"
    );
    assert!(client.send(&q, "x").is_err());
}

#[test]
fn slow_consumer_gets_every_message_in_order() {
    // A tiny subscription queue: past it (and a bounded overflow) the
    // client stops reading the socket; nothing is lost or reordered, and a
    // confirmed send completes once the consumer catches up.
    let broker = Broker::start();
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .subscription_capacity(2)
            .receipt_timeout(S5),
    )
    .unwrap();
    let q = format!("/queue/{}", unique("slow"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let body = vec![b'x'; 16 * 1024];
    for i in 0..200u32 {
        let mut b = body.clone();
        b[..4].copy_from_slice(&i.to_be_bytes());
        client.send(&q, b).unwrap();
    }
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            for i in 0..200u32 {
                let m = sub.recv_timeout(S5).unwrap().expect("message");
                assert_eq!(m.body()[..4], i.to_be_bytes());
                std::thread::sleep(Duration::from_micros(200));
            }
            let end = sub.recv_timeout(S5).unwrap().expect("end");
            assert_eq!(&end.body()[..], b"end");
        });
        client.send_confirmed(&q, "end", S5).unwrap();
        consumer.join().unwrap();
    });
    client.disconnect().unwrap();
}

#[test]
fn heart_beats_keep_an_idle_connection_alive() {
    // In 1.0 too: the broker answers a 1.0 CONNECT's heart-beat header
    // (as RabbitMQ and ActiveMQ do, which also hold the client to it; ours
    // answers sy=0 in 1.0, so the client need not beat there).
    let broker = Broker::start();
    for version in [Version::V1_2, Version::V1_0] {
        let client = Client::connect(
            ConnectOptions::new(broker.address())
                .versions(&[version])
                .heart_beat(200, 200),
        )
        .unwrap();
        assert_eq!(client.version(), version);
        let info = client.session_info().unwrap();
        let send = (version != Version::V1_0).then_some(Duration::from_millis(200));
        assert_eq!(info.heart_beat.send, send);
        assert_eq!(info.heart_beat.receive, Some(Duration::from_millis(200)));
        let events = client.events();
        // Idle for many intervals: both sides beat, nobody is declared lost
        // (200 ms, not less: a busy CI machine can stall a thread for over
        // 150 ms, which is a real loss at a 100 ms interval).
        std::thread::sleep(Duration::from_millis(2000));
        let lost = wait_event(&events, Duration::from_millis(10), |e| {
            matches!(e, ConnectionEvent::Lost(_))
        });
        assert!(lost.is_none(), "{version}: {lost:?}");
        client
            .send_confirmed("/queue/hb", "still here", S5)
            .unwrap();
        client.disconnect().unwrap();
    }
}

#[test]
fn recv_iter_and_try_recv() {
    let broker = Broker::start();
    let client = connect(&broker, Version::V1_2);
    let q = format!("/queue/{}", unique("iter"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    assert!(sub.try_recv().unwrap().is_none());
    for i in 0..5 {
        client.send(&q, format!("{i}")).unwrap();
    }
    assert_eq!(&sub.recv().unwrap().body()[..], b"0");
    let rest: Vec<_> = sub.iter().take(3).map(|m| m.body().clone()).collect();
    assert_eq!(rest, ["1", "2", "3"]);
    let last = (&sub).into_iter().next().unwrap();
    assert_eq!(&last.body()[..], b"4");
    // The subscription ends when the client does.
    client.disconnect().unwrap();
    assert!(sub.recv().is_err());
    assert!(sub.iter().next().is_none());
}

#[test]
fn calls_wait_out_an_outage_with_the_wait_policy() {
    let mut broker = Broker::start();
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .connect_timeout(Duration::from_secs(2))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                ..ReconnectPolicy::default()
            })
            .on_outage(stomp_client::OutagePolicy::Wait(S5)),
    )
    .unwrap();
    let events = client.events();
    let q = format!("/queue/{}", unique("outage"));
    broker.kill();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_))).is_some());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            broker.restart();
        });
        // Blocks until the client is back, then goes through.
        let t0 = Instant::now();
        client.send_confirmed(&q, "during the outage", S5).unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
    });
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let m = sub
        .recv_timeout(S5)
        .unwrap()
        .expect("the message sent during the outage");
    assert_eq!(&m.body()[..], b"during the outage");
    drop(sub);
    client.disconnect().unwrap();
}

#[test]
fn endless_timeouts_are_taken_as_very_long_not_a_panic() {
    // "Calls never panic": Duration::MAX anywhere a duration is taken.
    let b = Broker::start();
    let forever = Duration::MAX;
    let c = Client::connect(
        ConnectOptions::new(b.address())
            .connect_timeout(forever)
            .receipt_timeout(forever)
            .disconnect_timeout(forever)
            .send_timeout(forever)
            .heartbeat_grace(f64::MAX)
            .heart_beat(1000, 1000)
            .reconnect(ReconnectPolicy {
                initial_delay: forever,
                max_delay: forever,
                ..ReconnectPolicy::default()
            })
            .on_outage(stomp_client::OutagePolicy::Wait(forever)),
    )
    .expect("connect");
    let q = unique("/queue/forever");
    let sub = c.subscribe(&q, AckMode::Auto, &[]).unwrap();
    c.send_confirmed(&q, "x", forever).unwrap();
    assert_eq!(
        &sub.recv_timeout(forever).unwrap().unwrap().body()[..],
        b"x"
    );
    drop(sub);
    c.disconnect().unwrap();
}

#[test]
fn a_program_that_falls_behind_is_not_taken_for_a_dead_broker() {
    // The client stops reading the socket when the program does not take
    // its messages; the broker's heart-beats then wait unread, which must
    // not count as silence.
    let b = Broker::start();
    let q = unique("/queue/behind");
    let slow = Client::connect(
        ConnectOptions::new(b.address())
            .heart_beat(1000, 1000)
            .subscription_capacity(4),
    )
    .unwrap();
    let events = slow.events();
    let sub = slow.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let p = Client::connect(ConnectOptions::new(b.address())).unwrap();
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..40 {
        p.send(&q, body.clone()).unwrap();
    }
    p.disconnect().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut got = 0;
    while sub.recv_timeout(S5).unwrap().is_some() {
        got += 1;
        if got == 40 {
            break;
        }
    }
    assert_eq!(got, 40);
    let lost: Vec<_> = events
        .try_iter()
        .filter(|e| matches!(e, ConnectionEvent::Lost(_)))
        .collect();
    assert!(lost.is_empty(), "{lost:?}");
    drop(sub);
    slow.disconnect().unwrap();
}

#[test]
fn what_the_broker_accepts_the_client_can_receive() {
    // A SEND at the broker's default limits comes back as a MESSAGE with a
    // few more headers, and colons escaped as `\c` double a header line.
    // (A 1.0 producer writes colons raw; a 1.2 subscriber gets them escaped.)
    let b = Broker::start();
    let c = connect(&b, Version::V1_2);
    let p = connect(&b, Version::V1_0);
    let q = unique("/queue/at-limits");
    let sub = c.subscribe(&q, AckMode::ClientIndividual, &[]).unwrap();
    let mut f = Frame::send(q.clone()).header("colons", ":".repeat(60_000));
    for i in 0..995 {
        f = f.header(format!("h{i}"), "v");
    }
    p.send_frame_confirmed(f, S5).unwrap();
    let m = sub.recv_timeout(S5).unwrap().expect("the MESSAGE arrives");
    assert_eq!(m.headers().get("colons").map(str::len), Some(60_000));
    assert_eq!(m.headers().get("h994"), Some("v"));
    m.ack().unwrap();
}

#[test]
fn a_body_at_the_default_limit_goes_round_with_default_options() {
    // What the client lets a program send by default, it receives by default.
    let b = Broker::start();
    let c = Client::connect(ConnectOptions::new(b.address())).unwrap();
    let q = unique("/queue/at-body-limit");
    let sub = c.subscribe(&q, AckMode::ClientIndividual, &[]).unwrap();
    let body = vec![b'x'; 16 << 20];
    c.send_confirmed(&q, body.clone(), S5).unwrap();
    let m = sub.recv_timeout(S5).unwrap().expect("the MESSAGE arrives");
    assert_eq!(m.body().len(), body.len());
    m.ack().unwrap();
    assert!(matches!(
        c.send(&q, vec![b'x'; (16 << 20) + 1]),
        Err(Error::BodyTooLarge { .. })
    ));
    drop(sub);
    c.disconnect().unwrap();
}

/// Regression (audit 6, finding 2): in STOMP 1.0 a line feed in a header
/// value (or a colon in a name) cannot be written. A fire-and-forget send
/// with one returned `Ok` and the encode error came back from the next,
/// unrelated call; inside a transaction it came back from `commit`, which
/// then left the transaction open on the broker, until `BEGIN` hit the
/// broker's limit and the broker ended the session. Now the send that has
/// the bad header fails, nothing of it is sent, and the session carries on.
#[test]
fn an_unencodable_header_fails_its_own_send_in_1_0() {
    let broker = Broker::start_with(&["--max-transactions", "2"]);
    let client = connect(&broker, Version::V1_0);
    let q = format!("/queue/{}", unique("enc10"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let unencodable = |r: Result<(), Error>, header: &str| match r {
        Err(Error::Encode(stomp_client::stomp_frame::EncodeError::Unencodable {
            header: h,
            version: Version::V1_0,
            ..
        })) if h == header => {}
        other => panic!("{header}: {other:?}"),
    };
    unencodable(client.send_with(&q, &[("x", "a\nb")], "bad"), "x");
    unencodable(client.send_with(&q, &[("a:b", "v")], "bad"), "a:b");
    unencodable(
        client.send_frame(Frame::send(q.clone()).header("y", "c\nd").body("bad")),
        "y",
    );
    // The next, unrelated call is not handed the error.
    let other = client
        .subscribe(&format!("/queue/{}", unique("other")), AckMode::Auto, &[])
        .expect("a call after the refused sends");
    client.send(&q, "good").unwrap();
    // Three rounds against a limit of two open transactions: none is left open.
    for round in 0..3 {
        let tx = client.begin().unwrap();
        unencodable(tx.send_with(&q, &[("x", "a\nb")], "bad"), "x");
        tx.send(&q, format!("tx-{round}")).unwrap();
        tx.commit().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    let mut got = Vec::new();
    while let Some(m) = sub.recv_timeout(SHORT).unwrap() {
        got.push(String::from_utf8(m.body().to_vec()).unwrap());
    }
    assert_eq!(got, ["good", "tx-0", "tx-1", "tx-2"]);
    drop(other);
    assert!(client.is_connected());
    client.disconnect().unwrap();
}

/// Regression (audit 6, finding 2): `commit` marked the transaction
/// finished before trying to send COMMIT, so when that failed (here: no
/// room in the outgoing queue in time, the broker having stopped reading)
/// neither COMMIT nor ABORT went out and the transaction stayed open on
/// the broker. Now it is aborted before `commit` returns the error: its
/// sends never show, and the broker's limit of one open transaction per
/// connection lets the next one begin.
#[cfg(unix)]
#[test]
fn a_commit_that_cannot_be_sent_aborts_the_transaction() {
    let broker = Broker::start_with(&["--max-transactions", "1"]);
    let client = Client::connect(
        ConnectOptions::new(broker.address())
            .versions(&[Version::V1_0])
            .heart_beat(0, 0)
            .send_timeout(Duration::from_millis(300))
            .max_send_queue_frames(64)
            .receipt_timeout(S5),
    )
    .unwrap();
    let q = format!("/queue/{}", unique("txfull"));
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let tx = client.begin().unwrap();
    tx.send(&q, "before the pause").unwrap();
    broker.pause();
    // Until the socket's buffers and the outgoing queue are full, and stay
    // so: three sends in a row find no room (the paused broker's kernel may
    // still take a little, late).
    let body = stomp_client::Bytes::from(vec![b'z'; 16 << 10]);
    let (mut sent, mut misses) = (0, 0);
    while misses < 3 {
        match tx.send(&q, body.clone()) {
            Ok(()) => (sent, misses) = (sent + 1, 0),
            Err(Error::Timeout { .. }) => misses += 1,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent < 100_000, "the queue never filled");
    }
    // No room for the COMMIT either: it is not sent.
    let r = tx.commit();
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                what: "room in the outgoing queue",
                ..
            })
        ),
        "{r:?}"
    );
    broker.resume();
    // The broker takes the transaction's frames, then its ABORT: a new
    // transaction may begin (max one open), and commits.
    let tx = client.begin().unwrap();
    tx.send(&q, "committed").unwrap();
    tx.commit().expect("the first transaction was left open");
    let first = sub
        .recv_timeout(S5 * 4)
        .unwrap()
        .expect("the committed message");
    assert_eq!(
        &first.body()[..],
        b"committed",
        "the aborted transaction showed"
    );
    assert!(sub.recv_timeout(SHORT).unwrap().is_none());
    client.disconnect().unwrap();
}

#[test]
fn a_shared_client_is_closed_from_any_thread() {
    // A Client in an Arc, ended by a shutdown handler while a worker still
    // holds it and waits on its subscription.
    let broker = Broker::start();
    let client = Arc::new(connect(&broker, Version::V1_2));
    let queue = unique("/queue/shared-close");
    let sub = client.subscribe(&queue, AckMode::Auto, &[]).unwrap();
    let worker = std::thread::spawn(move || sub.iter().count());
    client.send_confirmed(&queue, "one", S5).unwrap();
    std::thread::sleep(SHORT);
    let t0 = Instant::now();
    client.close().unwrap();
    assert!(t0.elapsed() < S5);
    assert_eq!(worker.join().unwrap(), 1, "the iterator ends once closed");
    assert!(client.send(&queue, "after").is_err());
    assert!(!client.is_connected());
}
