//! Messaging semantics against a real broker: MESSAGE contents and header
//! escaping, ack modes per version, NACK and the dead-letter queue,
//! transactions, queue and topic delivery, prefetch, configurable prefixes.

use std::collections::BTreeSet;
use std::time::Duration;

use stomp_tests::*;

/// Sends `n` messages with a `seq` header (1-based) and a receipt on the last.
fn send_seq(p: &mut Conn, dest: &str, n: usize) {
    for i in 1..=n {
        let f = Frame::send(dest)
            .header("seq", i.to_string())
            .body(format!("m{i}"));
        if i == n {
            p.send_sync(f, "seq-done");
        } else {
            p.send(&f);
        }
    }
}

fn seq(m: &Frame) -> usize {
    m.headers
        .get("seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("MESSAGE without seq: {m:?}"))
}

fn recv_n(c: &mut Conn, n: usize) -> Vec<Frame> {
    (0..n).map(|_| c.expect_message()).collect()
}

fn assert_redelivered(m: &Frame) {
    assert_eq!(
        m.headers.get("redelivered"),
        Some("true"),
        "a redelivery carries redelivered:true: {m:?}"
    );
}

// ------------------------------------------------------------ MESSAGE frames

#[test]
fn message_carries_the_required_and_user_headers() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("sub-7", "/queue/hdr", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    let body = binary_body(4096);
    p.send_sync(
        Frame::send("/queue/hdr")
            .header("content-type", "application/octet-stream")
            .header("x-custom", "v1")
            .header("x-empty", "")
            .header("x-spaces", " padded  ")
            .body(body.clone()),
        "r",
    );
    let m = c.expect_message();
    assert_eq!(m.destination(), Some("/queue/hdr"));
    assert!(m.message_id().is_some_and(|id| !id.is_empty()), "{m:?}");
    assert_eq!(m.subscription(), Some("sub-7"));
    assert!(
        m.ack().is_some_and(|a| !a.is_empty()),
        "client-individual MESSAGE needs an ack header: {m:?}"
    );
    assert_eq!(m.content_type(), Some("application/octet-stream"));
    assert_eq!(m.content_length(), Some(body.len()));
    assert_eq!(m.headers.get("x-custom"), Some("v1"));
    assert_eq!(m.headers.get("x-empty"), Some(""));
    assert_eq!(
        m.headers.get("x-spaces"),
        Some(" padded  "),
        "1.2: header values are not trimmed"
    );
    assert_eq!(&m.body[..], &body[..], "binary body with NULs round-trips");
}

#[test]
fn message_ids_are_unique_and_ack_header_present_in_client_mode() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/ids", AckMode::Client);
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/ids", 20);
    let ms = recv_n(&mut c, 20);
    let ids: BTreeSet<_> = ms
        .iter()
        .map(|m| m.message_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20, "message-ids repeat");
    assert!(
        ms.iter().all(|m| m.ack().is_some()),
        "client mode MESSAGE has ack"
    );
}

#[test]
fn large_binary_body_round_trips() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/big", AckMode::Auto);
    let body = binary_body(3 * 1024 * 1024 + 7);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/big").body(body.clone()), "r");
    let m = c.expect_message();
    assert_eq!(m.body.len(), body.len());
    assert!(m.body[..] == body[..], "3 MiB body changed in transit");
}

#[test]
fn header_escaping_round_trips_in_1_1_and_1_2() {
    let b = Broker::start();
    for (v, value) in [
        (Version::V1_1, "a:b\nc\\d"),
        (Version::V1_2, "a:b\nc\\d\re"),
    ] {
        let dest = format!("/queue/esc-{v}");
        let mut c = b.connect(v);
        c.subscribe("0", &dest, AckMode::Auto);
        let mut p = b.connect(v);
        p.send_sync(
            Frame::send(dest.as_str())
                .header("k", value)
                .header("we:ird", "name"),
            "r",
        );
        let m = c.expect_message();
        assert_eq!(m.headers.get("k"), Some(value), "{v}");
        assert_eq!(m.headers.get("we:ird"), Some("name"), "{v}: escaped name");
    }
}

#[test]
fn header_escaping_is_exact_on_the_wire() {
    // The 1.2 producer writes `k:a\cb`; a 1.2 consumer must get the same
    // escaped bytes (`\c` for `:`), never a raw colon or newline.
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/wire", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_raw(b"SEND\ndestination:/queue/wire\nk:a\\cb\\nc\\\\d\nreceipt:r\n\n\0");
    p.expect_receipt("r");
    let m = c.expect_message();
    assert_eq!(m.headers.get("k"), Some("a:b\nc\\d"));
}

#[test]
fn no_unescaping_in_1_0() {
    let b = Broker::start();
    // A 1.0 producer's backslashes are plain characters...
    let mut c12 = b.connect(Version::V1_2);
    c12.subscribe("0", "/queue/e10", AckMode::Auto);
    let mut p10 = b.connect(Version::V1_0);
    p10.send_raw(b"SEND\ndestination:/queue/e10\nk:x\\cy\nc:a:b\nreceipt:r\n\n\0");
    p10.expect_receipt("r");
    let m = c12.expect_message();
    assert_eq!(m.headers.get("k"), Some("x\\cy"), "1.0 value kept verbatim");
    assert_eq!(
        m.headers.get("c"),
        Some("a:b"),
        "1.0 value with a raw colon"
    );
    // ...and a 1.0 consumer receives values unescaped (raw colon, raw backslash).
    let mut c10 = b.connect(Version::V1_0);
    c10.send_sync(
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/e10b")
            .header("id", "s"),
        "s",
    );
    let mut p12 = b.connect(Version::V1_2);
    p12.send_sync(
        Frame::send("/queue/e10b")
            .header("k", "a:b")
            .header("bs", "x\\cy"),
        "r",
    );
    let m = c10.expect_message();
    assert_eq!(m.headers.get("k"), Some("a:b"));
    assert_eq!(m.headers.get("bs"), Some("x\\cy"));
}

#[test]
fn repeated_header_first_one_wins() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/rep", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_raw(b"SEND\ndestination:/queue/rep\ndestination:/queue/other\nk:first\nk:second\nreceipt:r\n\nx\0");
    p.expect_receipt("r");
    let m = c.expect_message();
    assert_eq!(m.headers.get("k"), Some("first"));
    assert_eq!(m.destination(), Some("/queue/rep"));
    // Passed on once (as RabbitMQ and ActiveMQ): a client whose last value
    // wins gets the first too.
    let ks: Vec<&str> = m.headers.get_all("k").collect();
    assert_eq!(ks, ["first"]);
}

// ------------------------------------------------------- send / subscribe

#[test]
fn unsubscribe_stops_delivery_and_the_queue_keeps_the_rest() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("s", "/queue/uns", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/uns").body("first"), "r1");
    assert_eq!(&c.expect_message().body[..], b"first");
    c.send_sync(Frame::unsubscribe("s"), "u");
    p.send_sync(Frame::send("/queue/uns").body("second"), "r2");
    c.expect_nothing(QUIET);
    let mut d = b.connect(Version::V1_2);
    d.subscribe("s2", "/queue/uns", AckMode::Auto);
    assert_eq!(&d.expect_message().body[..], b"second");
}

#[test]
fn auto_ack_messages_are_not_redelivered() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/auto", 3);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/auto", AckMode::Auto);
    recv_n(&mut c, 3);
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/auto", AckMode::Auto);
    d.expect_nothing(QUIET);
}

// ---------------------------------------------------------------- ack modes

#[test]
fn client_ack_is_cumulative_and_the_rest_is_redelivered() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/cum", 5);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/cum", AckMode::Client);
    let ms = recv_n(&mut c, 5);
    assert_eq!(ms.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    // ACK of the 3rd acknowledges 1, 2 and 3.
    c.send_sync(Frame::ack_for(&ms[2], Version::V1_2).unwrap(), "a");
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/cum", AckMode::ClientIndividual);
    let again = recv_n(&mut d, 2);
    assert_eq!(again.iter().map(seq).collect::<Vec<_>>(), [4, 5]);
    again.iter().for_each(assert_redelivered);
    d.expect_nothing(QUIET);
}

#[test]
fn client_ack_is_per_subscription() {
    // Cumulative ACK covers earlier messages of *that* subscription only.
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("a", "/queue/pa", AckMode::Client);
    c.subscribe("b", "/queue/pb", AckMode::Client);
    let mut p = b.connect(Version::V1_2);
    p.send(&Frame::send("/queue/pb").body("b1"));
    p.send_sync(Frame::send("/queue/pa").body("a1"), "r");
    let m1 = c.expect_message();
    let m2 = c.expect_message();
    let (ma, mb) = if m1.subscription() == Some("a") {
        (m1, m2)
    } else {
        (m2, m1)
    };
    assert_eq!(mb.subscription(), Some("b"));
    c.send_sync(Frame::ack_for(&ma, Version::V1_2).unwrap(), "ack-a");
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("a", "/queue/pa", AckMode::Auto);
    d.subscribe("b", "/queue/pb", AckMode::Auto);
    let m = d.expect_message();
    assert_eq!(&m.body[..], b"b1", "only b1 was unacked");
    d.expect_nothing(QUIET);
}

#[test]
fn client_individual_ack_is_per_message() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/ind", 5);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/ind", AckMode::ClientIndividual);
    let ms = recv_n(&mut c, 5);
    c.send_sync(Frame::ack_for(&ms[2], Version::V1_2).unwrap(), "a");
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/ind", AckMode::ClientIndividual);
    let again = recv_n(&mut d, 4);
    let seqs: BTreeSet<_> = again.iter().map(seq).collect();
    assert_eq!(seqs, BTreeSet::from([1, 2, 4, 5]));
    again.iter().for_each(assert_redelivered);
    d.expect_nothing(QUIET);
}

#[test]
fn unacked_messages_go_back_when_the_subscriber_unsubscribes() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/back", 2);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/back", AckMode::ClientIndividual);
    recv_n(&mut c, 2);
    c.send_sync(Frame::unsubscribe("0"), "u");
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/back", AckMode::Auto);
    let again = recv_n(&mut d, 2);
    assert_eq!(
        again.iter().map(seq).collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
}

#[test]
fn ack_by_message_id_and_subscription_in_1_1() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_1);
    send_seq(&mut p, "/queue/a11", 3);
    let mut c = b.connect(Version::V1_1);
    c.subscribe("s11", "/queue/a11", AckMode::ClientIndividual);
    let ms = recv_n(&mut c, 3);
    let ack = Frame::new(Command::Ack)
        .header("message-id", ms[1].message_id().unwrap())
        .header("subscription", "s11");
    c.send_sync(ack, "a");
    c.disconnect();
    let mut d = b.connect(Version::V1_1);
    d.subscribe("s", "/queue/a11", AckMode::Auto);
    let again = recv_n(&mut d, 2);
    assert_eq!(
        again.iter().map(seq).collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 3])
    );
    d.expect_nothing(QUIET);
}

#[test]
fn nack_by_message_id_and_subscription_in_1_1() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_1);
    c.subscribe("s11", "/queue/n11", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_1);
    p.send_sync(Frame::send("/queue/n11").body("once more"), "r");
    let m = c.expect_message();
    c.send(&Frame::nack_for(&m, Version::V1_1).unwrap());
    let again = c.expect_message();
    assert_eq!(&again.body[..], b"once more");
    assert_redelivered(&again);
}

#[test]
fn ack_by_message_id_in_1_0() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_0);
    send_seq(&mut p, "/queue/a10", 3);
    let mut c = b.connect(Version::V1_0);
    c.send_sync(
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/a10")
            .header("ack", "client"),
        "s",
    );
    let ms = recv_n(&mut c, 3);
    assert!(
        ms.iter().all(|m| m.ack().is_some()),
        "ack header in client mode"
    );
    // 1.0 ACK names message-id only; client mode is cumulative: 1 and 2.
    c.send_sync(
        Frame::new(Command::Ack).header("message-id", ms[1].message_id().unwrap()),
        "a",
    );
    c.disconnect();
    let mut d = b.connect(Version::V1_0);
    d.send_sync(
        Frame::new(Command::Subscribe).header("destination", "/queue/a10"),
        "s",
    );
    let again = d.expect_message();
    assert_eq!(seq(&again), 3);
    d.expect_nothing(QUIET);
}

#[test]
fn nack_redelivers_with_the_redelivered_flag() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/nack", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(
        Frame::send("/queue/nack")
            .header("seq", "1")
            .body("retry me"),
        "r",
    );
    let m = c.expect_message();
    assert_ne!(
        m.headers.get("redelivered"),
        Some("true"),
        "first delivery: {m:?}"
    );
    c.send_sync(Frame::nack_for(&m, Version::V1_2).unwrap(), "n");
    let again = c.expect_message();
    assert_eq!(&again.body[..], b"retry me");
    assert_eq!(seq(&again), 1);
    assert_redelivered(&again);
    c.send_sync(Frame::ack_for(&again, Version::V1_2).unwrap(), "a");
    c.expect_nothing(QUIET);
}

#[test]
fn message_goes_to_the_dead_letter_queue_after_max_deliveries() {
    let b = Broker::start_with(&["--max-deliveries", "3"]);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/poison", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(
        Frame::send("/queue/poison")
            .header("x-id", "p1")
            .body("poison"),
        "r",
    );
    for attempt in 1..=3 {
        let m = c.expect_message();
        assert_eq!(&m.body[..], b"poison", "delivery {attempt}");
        c.send_sync(
            Frame::nack_for(&m, Version::V1_2).unwrap(),
            &format!("n{attempt}"),
        );
    }
    c.expect_nothing(Duration::from_millis(500));
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/DLQ.poison", AckMode::Auto);
    let dead = d.expect_message();
    assert_eq!(&dead.body[..], b"poison");
    assert_eq!(dead.headers.get("x-id"), Some("p1"));
    assert_eq!(dead.destination(), Some("/queue/DLQ.poison"));
}

// ------------------------------------------------------------- transactions

#[test]
fn transactional_sends_are_delivered_on_commit_only() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/tx", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::begin("t1"), "b");
    for i in 1..=3 {
        p.send(
            &Frame::send("/queue/tx")
                .header("transaction", "t1")
                .header("seq", i.to_string()),
        );
    }
    p.barrier();
    c.expect_nothing(QUIET);
    p.send_sync(Frame::commit("t1"), "c");
    let ms = recv_n(&mut c, 3);
    assert_eq!(ms.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn aborted_sends_are_dropped() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/txa", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::begin("t1"), "b");
    p.send(
        &Frame::send("/queue/txa")
            .header("transaction", "t1")
            .body("no"),
    );
    p.barrier();
    p.send_sync(Frame::abort("t1"), "a");
    p.send_sync(Frame::send("/queue/txa").body("yes"), "s2");
    let m = c.expect_message();
    assert_eq!(&m.body[..], b"yes");
    c.expect_nothing(QUIET);
}

#[test]
fn uncommitted_sends_are_dropped_at_disconnect() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/txd", AckMode::Auto);
    // Polite DISCONNECT without COMMIT.
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::begin("t1"), "b");
    p.send(
        &Frame::send("/queue/txd")
            .header("transaction", "t1")
            .body("no"),
    );
    p.barrier();
    p.disconnect();
    // Connection dropped without DISCONNECT.
    let mut q = b.connect(Version::V1_2);
    q.send_sync(Frame::begin("t1"), "b");
    q.send(
        &Frame::send("/queue/txd")
            .header("transaction", "t1")
            .body("no"),
    );
    q.barrier();
    drop(q);
    c.expect_nothing(Duration::from_millis(500));
    let mut r = b.connect(Version::V1_2);
    r.send_sync(Frame::send("/queue/txd").body("after"), "s");
    assert_eq!(&c.expect_message().body[..], b"after");
}

#[test]
fn acks_in_a_transaction_count_on_commit_only() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/txack", 2);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/txack", AckMode::ClientIndividual);
    let ms = recv_n(&mut c, 2);
    c.send_sync(Frame::begin("t1"), "b1");
    c.send_sync(
        Frame::ack_for(&ms[0], Version::V1_2)
            .unwrap()
            .header("transaction", "t1"),
        "a1",
    );
    c.send_sync(Frame::commit("t1"), "c1");
    c.send_sync(Frame::begin("t2"), "b2");
    c.send_sync(
        Frame::ack_for(&ms[1], Version::V1_2)
            .unwrap()
            .header("transaction", "t2"),
        "a2",
    );
    c.send_sync(Frame::abort("t2"), "x2");
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/txack", AckMode::Auto);
    let again = d.expect_message();
    assert_eq!(seq(&again), 2, "the aborted ACK left message 2 unacked");
    d.expect_nothing(QUIET);
}

// ------------------------------------------------------------------ queues

#[test]
fn queue_keeps_messages_while_nobody_subscribes() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/keep", 10);
    p.disconnect();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/keep", AckMode::Auto);
    let ms = recv_n(&mut c, 10);
    assert_eq!(
        ms.iter().map(seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    c.expect_nothing(QUIET);
}

#[test]
fn queue_delivers_round_robin_between_subscribers() {
    let b = Broker::start();
    let mut a = b.connect(Version::V1_2);
    a.subscribe("0", "/queue/rr", AckMode::Auto);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/rr", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/rr", 10);
    let got = |conn: &mut Conn| {
        let mut v = Vec::new();
        while let Ok(m) = conn.recv(Duration::from_millis(500)) {
            v.push(seq(&m));
        }
        v
    };
    let (ga, gc) = (got(&mut a), got(&mut c));
    assert_eq!(
        (ga.len(), gc.len()),
        (5, 5),
        "round-robin split: {ga:?} / {gc:?}"
    );
    let all: BTreeSet<_> = ga.iter().chain(&gc).copied().collect();
    assert_eq!(all.len(), 10, "each message once: {ga:?} / {gc:?}");
    assert!(ga.is_sorted() && gc.is_sorted(), "each consumer in order");
}

#[test]
fn queue_keeps_order_for_one_producer_and_one_consumer() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/order", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/order", 500);
    for i in 1..=500 {
        let m = c.expect_message();
        assert_eq!(seq(&m), i);
        c.send(&Frame::ack_for(&m, Version::V1_2).unwrap());
    }
    c.expect_nothing(QUIET);
}

/// With a window of 1 and client ack, the second message waits for the ACK.
fn window_of_one(b: &Broker, sub: Frame) {
    let dest = sub.destination().unwrap().to_owned();
    let mut c = b.connect(Version::V1_2);
    c.send_sync(sub, "s");
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, &dest, 2);
    let m1 = c.expect_message();
    assert_eq!(seq(&m1), 1);
    c.expect_nothing(Duration::from_millis(500));
    c.send(&Frame::ack_for(&m1, Version::V1_2).unwrap());
    let m2 = c.expect_message();
    assert_eq!(seq(&m2), 2);
}

#[test]
fn prefetch_window_from_activemq_prefetch_size() {
    let b = Broker::start();
    let sub =
        Frame::subscribe("0", "/queue/pf1", AckMode::Client).header("activemq.prefetchSize", "1");
    window_of_one(&b, sub);
}

#[test]
fn prefetch_window_from_prefetch_count() {
    let b = Broker::start();
    let sub = Frame::subscribe("0", "/queue/pf2", AckMode::ClientIndividual)
        .header("prefetch-count", "1");
    window_of_one(&b, sub);
}

#[test]
fn prefetch_window_from_the_flag() {
    let b = Broker::start_with(&["--prefetch", "1"]);
    let sub = Frame::subscribe("0", "/queue/pf3", AckMode::Client);
    window_of_one(&b, sub);
}

#[test]
fn prefetch_count_zero_is_no_window() {
    // RabbitMQ's header: 0 means no limit there too.
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.send_sync(
        Frame::subscribe("0", "/queue/pf0", AckMode::Client).header("prefetch-count", "0"),
        "s",
    );
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/pf0", 50);
    let got: Vec<_> = recv_n(&mut c, 50).iter().map(seq).collect();
    assert_eq!(got, (1..=50).collect::<Vec<_>>(), "all without an ACK");
}

#[test]
fn stomp_1_0_unsubscribe_by_destination_of_a_subscription_with_an_id() {
    // 1.0 §UNSUBSCRIBE: "either a destination header or an id header (if
    // the previous SUBSCRIBE operation passed an id value)".
    let b = Broker::start();
    let mut c = b.connect(Version::V1_0);
    c.send_sync(Frame::subscribe("x", "/queue/u10", AckMode::Auto), "s");
    c.send_sync(
        Frame::new(Command::Unsubscribe).header("destination", "/queue/u10"),
        "u",
    );
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/u10").body("kept"), "r");
    c.expect_nothing(QUIET);
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/u10", AckMode::Auto);
    assert_eq!(&d.expect_message().body[..], b"kept");
}

#[test]
fn a_full_window_sends_messages_to_the_other_subscriber() {
    let b = Broker::start();
    let mut a = b.connect(Version::V1_2);
    a.send_sync(
        Frame::subscribe("0", "/queue/pfrr", AckMode::ClientIndividual)
            .header("activemq.prefetchSize", "1"),
        "s",
    );
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/pfrr", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/pfrr", 6);
    let first = a.expect_message();
    a.expect_nothing(Duration::from_millis(400));
    let rest: Vec<_> = recv_n(&mut c, 5).iter().map(seq).collect();
    let mut all: Vec<_> = rest.clone();
    all.push(seq(&first));
    all.sort();
    assert_eq!(
        all,
        [1, 2, 3, 4, 5, 6],
        "a got {}, c got {rest:?}",
        seq(&first)
    );
}

// ------------------------------------------------------------------ topics

#[test]
fn topic_fans_out_to_every_subscriber_and_stores_nothing() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    // Nobody listens: not stored.
    p.send_sync(Frame::send("/topic/news").body("lost"), "r0");
    let mut subs: Vec<Conn> = (0..3)
        .map(|i| {
            let mut c = b.connect(Version::V1_2);
            c.subscribe(&format!("t{i}"), "/topic/news", AckMode::Auto);
            c
        })
        .collect();
    p.send_sync(Frame::send("/topic/news").body("hello all"), "r1");
    for (i, c) in subs.iter_mut().enumerate() {
        let m = c.expect_message();
        assert_eq!(&m.body[..], b"hello all", "subscriber {i}");
        assert_eq!(m.subscription(), Some(format!("t{i}").as_str()));
        c.expect_nothing(Duration::from_millis(100));
    }
    // An absent subscriber gets nothing of what was sent while away.
    subs[0].send_sync(Frame::unsubscribe("t0"), "u");
    p.send_sync(Frame::send("/topic/news").body("while away"), "r2");
    subs[1].expect_message();
    subs[2].expect_message();
    subs[0].subscribe("t0", "/topic/news", AckMode::Auto);
    subs[0].expect_nothing(QUIET);
}

#[test]
fn a_topic_subscriber_past_its_window_gets_the_rest_as_it_acks() {
    // ActiveMQ and RabbitMQ hold topic messages past a client-ack
    // subscriber's prefetch; none is lost.
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.send_sync(
        Frame::subscribe("0", "/topic/tw", AckMode::ClientIndividual)
            .header("activemq.prefetchSize", "2"),
        "s",
    );
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/topic/tw", 20);
    let mut got = Vec::new();
    while got.len() < 20 {
        let m = c.expect_message();
        got.push(seq(&m));
        c.send(&Frame::ack_for(&m, Version::V1_2).unwrap());
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    c.expect_nothing(QUIET);
}

#[test]
fn configurable_queue_prefix() {
    // The broker wants the DLQ prefix inside the queue namespace.
    let b = Broker::start_with(&["--queue-prefix", "/q/", "--dlq-prefix", "/q/DLQ."]);
    let mut p = b.connect(Version::V1_2);
    // Stored while nobody listens: a queue.
    send_seq(&mut p, "/q/work", 4);
    let mut a = b.connect(Version::V1_2);
    a.send_sync(
        Frame::subscribe("0", "/q/work", AckMode::ClientIndividual)
            .header("activemq.prefetchSize", "2"),
        "s",
    );
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/q/work", AckMode::Auto);
    let got_a = recv_n(&mut a, 2);
    let got_c = recv_n(&mut c, 2);
    let all: BTreeSet<_> = got_a.iter().chain(&got_c).map(seq).collect();
    assert_eq!(all, BTreeSet::from([1, 2, 3, 4]), "each once");
}

#[test]
fn configurable_topic_prefix() {
    let b = Broker::start_with(&["--topic-prefix", "/t/"]);
    let mut s1 = b.connect(Version::V1_2);
    s1.subscribe("0", "/t/x", AckMode::Auto);
    let mut s2 = b.connect(Version::V1_2);
    s2.subscribe("0", "/t/x", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/t/x").body("both"), "r");
    assert_eq!(&s1.expect_message().body[..], b"both");
    assert_eq!(&s2.expect_message().body[..], b"both");
}

#[test]
fn client_nack_is_cumulative() {
    // 1.2 §NACK: in client mode NACK, like ACK, covers the earlier messages.
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/cnack", 3);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/cnack", AckMode::Client);
    let ms = recv_n(&mut c, 3);
    c.send_sync(Frame::nack_for(&ms[1], Version::V1_2).unwrap(), "n");
    let again = recv_n(&mut c, 2);
    assert_eq!(
        again.iter().map(seq).collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2]),
        "NACK of 2 returns 1 and 2, not 3"
    );
    again.iter().for_each(assert_redelivered);
    c.expect_nothing(QUIET);
}

// ------------------------------------------------------------ flow control

#[test]
fn a_queue_takes_a_backlog_of_100_mib_by_default() {
    // Filled before anyone consumes (a backlog, a load test): by default a
    // queue has no memory limit of its own (RabbitMQ and ActiveMQ take this
    // too), so the producer is not paused at some fixed size.
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    let body = vec![b'x'; 1 << 20];
    for i in 0..99 {
        p.send(
            &Frame::send("/queue/backlog")
                .body(body.clone())
                .header("n", i.to_string().as_str()),
        );
    }
    p.send_sync(
        Frame::send("/queue/backlog")
            .body(body.clone())
            .header("n", "99"),
        "last",
    );
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/backlog", AckMode::Auto);
    for i in 0..100 {
        let m = c.expect_message();
        assert_eq!(m.headers.get("n"), Some(i.to_string().as_str()));
        assert_eq!(m.body.len(), 1 << 20);
    }
}

#[test]
fn full_queue_pushes_back_on_the_producer_and_loses_nothing() {
    full_queue_pushes_back(Broker::start_with(&["--max-queue-memory", "65536"]));
}

/// On the journal too: a producer paused for memory went on only at the
/// next unrelated wake-up (a timer seconds later) when the memory it waited
/// for was freed in the event loop's last round of writes.
#[test]
fn full_queue_pushes_back_on_the_journal_too() {
    full_queue_pushes_back(Broker::start_durable_with(&["--max-queue-memory", "65536"]));
}

fn full_queue_pushes_back(b: Broker) {
    const N: usize = 8192;
    let addr = b.addr();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let producer = std::thread::spawn(move || {
        let mut p = Conn::open(addr);
        p.connect(Version::V1_2);
        p.stream()
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut batch = Vec::new();
        for i in 1..=N {
            let f = Frame::send("/queue/full")
                .header("seq", i.to_string())
                .body(vec![b'p'; 1024]);
            batch.extend(p.encode(&f));
            if batch.len() > 64 * 1024 || i == N {
                p.send_raw(&batch);
                batch.clear();
            }
        }
        p.send_sync(Frame::send("/queue/other").body("end"), "end");
        done2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // 8 MiB cannot fit in 64 KiB of queue plus the socket buffers: the
    // producer is still blocked a second later.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "8 MiB went into a queue limited to 64 KiB with nobody consuming"
    );
    // Only that producer is held back: traffic on another queue flows.
    let mut other = b.connect(Version::V1_2);
    other.subscribe("0", "/queue/not-full", AckMode::Auto);
    let t = std::time::Instant::now();
    other.send_sync(Frame::send("/queue/not-full").body("free"), "free");
    assert_eq!(&other.expect_message().body[..], b"free");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/full", AckMode::Auto);
    for i in 1..=N {
        let m = c.recv_frame(Duration::from_secs(10));
        assert_eq!(seq(&m), i, "lost or reordered under back-pressure");
    }
    producer
        .join()
        .expect("producer finishes once the queue drains");
    c.expect_nothing(QUIET);
}

/// Topic messages sent by [`slow_topic_subscriber`].
const TOPIC_MSGS: usize = 2048;

/// A topic subscriber that never reads, on a broker with a small write
/// backlog; returns it and the producer after pushing 16 MiB at the topic
/// (more than the kernel's socket buffers hold).
fn slow_topic_subscriber(b: &Broker) -> (Conn, Conn) {
    let mut slow = b.connect(Version::V1_2);
    slow.subscribe("0", "/topic/fast", AckMode::Auto);
    let mut fast = b.connect(Version::V1_2);
    fast.subscribe("0", "/topic/fast", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    // In lockstep with a subscriber that keeps up, 64 KiB at a time, so
    // only the one that never reads falls behind.
    for chunk in 0..TOPIC_MSGS / 8 {
        let mut batch = Vec::new();
        for i in chunk * 8..chunk * 8 + 8 {
            batch.extend(
                p.encode(
                    &Frame::send("/topic/fast")
                        .header("seq", i.to_string())
                        .body(vec![b't'; 8192]),
                ),
            );
        }
        p.send_raw(&batch);
        for i in chunk * 8..chunk * 8 + 8 {
            let m = fast.recv_frame(Duration::from_secs(10));
            assert_eq!(seq(&m), i, "the subscriber that keeps up loses nothing");
        }
    }
    p.send_sync(Frame::send("/topic/other").body("x"), "after");
    (slow, p)
}

#[test]
fn slow_topic_subscriber_is_disconnected_by_default() {
    slow_subscriber_is_told(Duration::ZERO);
}

/// The ERROR is not stuck behind the messages it was too slow for: those
/// are dropped, and it comes right after what the sockets already hold,
/// even to a subscriber that reads again only seconds later.
#[test]
fn slow_topic_subscriber_reading_late_still_gets_its_error() {
    slow_subscriber_is_told(Duration::from_secs(3));
}

fn slow_subscriber_is_told(pause: Duration) {
    let b = Broker::start_with(&["--max-write-backlog", "262144"]);
    let (mut slow, _p) = slow_topic_subscriber(&b);
    std::thread::sleep(pause);
    // Its socket holds whatever fitted, then the ERROR, then the close.
    let mut messages = 0;
    loop {
        match slow.recv(Duration::from_secs(5)) {
            Ok(f) if f.command == Command::Message => messages += 1,
            Ok(f) => {
                assert_eq!(f.command, Command::Error, "{f:?}");
                slow.expect_closed(T);
                break;
            }
            Err(e) => {
                panic!("slow subscriber not told and closed ({messages} messages read): {e:?}")
            }
        }
    }
    assert!(
        messages < 1024,
        "all {messages} messages fitted: the test proves nothing"
    );
}

#[test]
fn slow_topic_subscriber_loses_messages_under_the_drop_policy() {
    let b = Broker::start_with(&[
        "--max-write-backlog",
        "262144",
        "--slow-consumer-policy",
        "drop",
    ]);
    let (mut slow, mut p) = slow_topic_subscriber(&b);
    let mut seen = Vec::new();
    while let Ok(f) = slow.recv(Duration::from_millis(500)) {
        assert_eq!(f.command, Command::Message, "{f:?}");
        seen.push(seq(&f));
    }
    assert!(
        seen.len() < 1024,
        "nothing dropped: the test proves nothing"
    );
    assert!(seen.is_sorted(), "what is kept stays in order");
    // Still connected and served.
    p.send_sync(Frame::send("/topic/fast").header("seq", "5000"), "late");
    let m = slow.expect_message();
    assert_eq!(seq(&m), 5000);
}

#[test]
fn unacked_messages_are_redelivered_after_an_abrupt_close() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/abrupt", 3);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/abrupt", AckMode::ClientIndividual);
    let ms = recv_n(&mut c, 3);
    c.send_sync(Frame::ack_for(&ms[0], Version::V1_2).unwrap(), "a");
    drop(c); // no DISCONNECT: the TCP connection just goes
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/abrupt", AckMode::Auto);
    let again = recv_n(&mut d, 2);
    assert_eq!(
        again.iter().map(seq).collect::<BTreeSet<_>>(),
        BTreeSet::from([2, 3])
    );
    again.iter().for_each(assert_redelivered);
}

#[test]
fn deliveries_without_ack_count_towards_the_dead_letter_queue() {
    let b = Broker::start_with(&["--max-deliveries", "2"]);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/crashy").body("kills consumers"), "r");
    for attempt in 1..=2 {
        let mut c = b.connect(Version::V1_2);
        c.subscribe("0", "/queue/crashy", AckMode::ClientIndividual);
        let m = c.expect_message();
        assert_eq!(&m.body[..], b"kills consumers", "delivery {attempt}");
        drop(c); // the consumer dies without acking
    }
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/crashy", AckMode::ClientIndividual);
    c.expect_nothing(Duration::from_millis(500));
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/DLQ.crashy", AckMode::Auto);
    assert_eq!(&d.expect_message().body[..], b"kills consumers");
}

#[test]
fn ids_with_special_characters_are_escaped_in_1_2() {
    // Receipt, subscription and ack ids go back to the client in headers,
    // escaped (openmq #1534: unescaped `:` in ack ids).
    let b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    let sub = "sub:1\\x\ny";
    c.send_sync(
        Frame::subscribe(sub, "/queue/odd:name", AckMode::ClientIndividual),
        "rcpt:with\\colons\nand lines",
    );
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/odd:name").body("odd"), "r");
    let m = c.expect_message();
    assert_eq!(m.subscription(), Some(sub));
    assert_eq!(m.destination(), Some("/queue/odd:name"));
    c.send_sync(Frame::ack_for(&m, Version::V1_2).unwrap(), "a");
    c.disconnect();
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/odd:name", AckMode::Auto);
    d.expect_nothing(QUIET);
}

#[test]
fn ack_with_special_subscription_id_in_1_1() {
    let b = Broker::start();
    let mut c = b.connect(Version::V1_1);
    let sub = "s:1\\x";
    c.subscribe(sub, "/queue/odd11", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_1);
    p.send_sync(Frame::send("/queue/odd11").body("odd"), "r");
    let m = c.expect_message();
    assert_eq!(m.subscription(), Some(sub));
    c.send_sync(Frame::ack_for(&m, Version::V1_1).unwrap(), "a");
    c.disconnect();
    let mut d = b.connect(Version::V1_1);
    d.subscribe("0", "/queue/odd11", AckMode::Auto);
    d.expect_nothing(QUIET);
}

#[test]
fn frames_after_disconnect_are_not_processed() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    let mut wire = p.encode(&Frame::disconnect().header("receipt", "bye"));
    wire.extend(p.encode(&Frame::send("/queue/late").body("too late")));
    p.send_raw(&wire);
    p.expect_receipt("bye");
    p.expect_closed(T);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/late", AckMode::Auto);
    c.expect_nothing(QUIET);
}

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn random_acks_nacks_and_crashes_lose_nothing_and_resurrect_nothing() {
    const N: usize = 300;
    let b = Broker::start_with(&["--max-deliveries", "1000"]);
    let mut p = b.connect(Version::V1_2);
    send_seq(&mut p, "/queue/chaos", N);
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let new_consumer = |b: &Broker| {
        let mut c = b.connect(Version::V1_2);
        c.send_sync(
            Frame::subscribe("0", "/queue/chaos", AckMode::ClientIndividual)
                .header("activemq.prefetchSize", "10"),
            "s",
        );
        c
    };
    // Each consumer with the seqs it holds unacked.
    let mut consumers: Vec<(Conn, BTreeSet<usize>)> = (0..3)
        .map(|_| (new_consumer(&b), BTreeSet::new()))
        .collect();
    let mut acked = BTreeSet::new();
    let mut deliveries = 0usize;
    let mut crashes = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut idle_rounds = 0;
    while acked.len() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {N} acked after 30 s ({deliveries} deliveries, {crashes} crashes); held: {:?}",
            acked.len(),
            consumers.iter().map(|c| &c.1).collect::<Vec<_>>()
        );
        let mut got_any = false;
        for (conn, held) in consumers.iter_mut() {
            let Ok(m) = conn.recv(Duration::from_millis(2)) else {
                continue;
            };
            got_any = true;
            deliveries += 1;
            assert_eq!(m.command, Command::Message, "{m:?}");
            let s = seq(&m);
            assert!(
                !acked.contains(&s),
                "message {s} delivered again after its ACK was confirmed"
            );
            match rng.below(100) {
                0..70 => {
                    conn.send_sync(Frame::ack_for(&m, Version::V1_2).unwrap(), "a");
                    acked.insert(s);
                }
                70..88 => {
                    conn.send_sync(Frame::nack_for(&m, Version::V1_2).unwrap(), "n");
                }
                88..92 => {
                    held.insert(s); // unacked until the connection goes
                }
                _ => {
                    // Crash: the new consumer replaces (drops) the old one.
                    *conn = new_consumer(&b);
                    held.clear();
                    crashes += 1;
                }
            }
        }
        if got_any {
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            if idle_rounds > 20 {
                // Every window may be full of held messages: crash the
                // consumer holding the most; they must come back.
                let k = (0..consumers.len())
                    .max_by_key(|&k| consumers[k].1.len())
                    .unwrap();
                assert!(
                    !consumers[k].1.is_empty(),
                    "no delivery for 20 rounds although nobody holds anything; acked {} of {N}",
                    acked.len()
                );
                consumers[k] = (new_consumer(&b), BTreeSet::new());
                crashes += 1;
                idle_rounds = 0;
            }
        }
    }
    eprintln!("chaos: {N} messages acked after {deliveries} deliveries, {crashes} crashes");
    for (c, _) in &mut consumers {
        c.expect_nothing(Duration::from_millis(100));
    }
    drop(consumers);
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/chaos", AckMode::Auto);
    d.expect_nothing(QUIET);
}

#[test]
fn uncommitted_ack_is_rolled_back_when_the_connection_drops() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/txdrop").body("keep me"), "r");
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/txdrop", AckMode::ClientIndividual);
    let m = c.expect_message();
    c.send_sync(Frame::begin("t"), "b");
    c.send_sync(
        Frame::ack_for(&m, Version::V1_2)
            .unwrap()
            .header("transaction", "t"),
        "a",
    );
    drop(c);
    let mut d = b.connect(Version::V1_2);
    d.subscribe("0", "/queue/txdrop", AckMode::Auto);
    let again = d.expect_message();
    assert_eq!(&again.body[..], b"keep me");
    assert_redelivered(&again);
}

#[test]
fn broker_memory_limit_pushes_back_and_loses_nothing() {
    const N: usize = 2048;
    let b = Broker::start_with(&["--max-memory", "131072"]);
    let addr = b.addr();
    let producers: Vec<_> = ["/queue/mem-a", "/queue/mem-b"]
        .into_iter()
        .map(|dest| {
            std::thread::spawn(move || {
                let mut p = Conn::open(addr);
                p.connect(Version::V1_2);
                p.stream()
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut batch = Vec::new();
                for i in 1..=N {
                    batch.extend(
                        p.encode(
                            &Frame::send(dest)
                                .header("seq", i.to_string())
                                .body(vec![b'm'; 2048]),
                        ),
                    );
                    if batch.len() > 64 * 1024 || i == N {
                        p.send_raw(&batch);
                        batch.clear();
                    }
                }
                p.send_sync(Frame::send("/queue/mem-done").body("x"), "end");
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        producers.iter().any(|p| !p.is_finished()),
        "8 MiB went into a broker limited to 128 KiB with nobody consuming"
    );
    let mut c = b.connect(Version::V1_2);
    c.subscribe("a", "/queue/mem-a", AckMode::Auto);
    c.subscribe("b", "/queue/mem-b", AckMode::Auto);
    let (mut next_a, mut next_b) = (1, 1);
    while next_a <= N || next_b <= N {
        let m = c.recv_frame(Duration::from_secs(10));
        let s = seq(&m);
        match m.subscription() {
            Some("a") => {
                assert_eq!(s, next_a);
                next_a += 1;
            }
            Some("b") => {
                assert_eq!(s, next_b);
                next_b += 1;
            }
            other => panic!("subscription {other:?}"),
        }
    }
    for p in producers {
        p.join().expect("producer finishes once memory frees up");
    }
    c.expect_nothing(QUIET);
}

/// The RECEIPT of a SUBSCRIBE comes before the messages it releases, as
/// RabbitMQ and ActiveMQ send them.
#[test]
fn subscribe_receipt_comes_before_waiting_messages() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    for i in 0..3 {
        p.send(&Frame::send("/queue/first").body(format!("m{i}")));
    }
    p.barrier();
    let mut c = b.connect(Version::V1_2);
    c.send(&Frame::subscribe("s", "/queue/first", AckMode::Auto).header("receipt", "r"));
    let f = c.recv_frame(T);
    assert_eq!(f.command, Command::Receipt, "{f:?}");
    for i in 0..3 {
        assert_eq!(c.recv_frame(T).body, format!("m{i}").as_bytes());
    }
}

/// Frames pipelined behind a CONNECT wait while its password is checked
/// (off the event loop), then are read in the same turn as the CONNECTED:
/// on the journal, their RECEIPTs come once written, not when some timer
/// next wakes the broker (a black-box audit saw 10 s: the connect timeout).
#[test]
fn frames_behind_a_checked_login_get_their_receipts_at_once() {
    let dir = std::env::temp_dir().join(format!("stomp-tests-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    let mut passwd = std::process::Command::new(broker_bin())
        .args(["passwd", users.to_str().unwrap(), "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut passwd.stdin.take().unwrap(), b"secret\n").unwrap();
    assert!(passwd.wait().unwrap().success());
    let b = Broker::start_durable_with(&["--users", users.to_str().unwrap()]);
    for i in 0..2 {
        let mut c = b.open();
        c.send_raw(
            format!(
                "CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:secret\n\n\0\
                 SEND\ndestination:/queue/after-login\nreceipt:r-{i}\n\nx\0"
            )
            .as_bytes(),
        );
        c.expect(Command::Connected);
        c.expect_receipt_within(&format!("r-{i}"), Duration::from_secs(2));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
