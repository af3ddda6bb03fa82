//! Protocol rules, tested against a real `stomp-broker` process over TCP:
//! the handshake and version negotiation, heart-beats, receipts, and the
//! ERROR-then-close answer to every violation (STOMP 1.2 §Connecting,
//! §Heart-beating, §Frames and Headers, §ERROR; the broker contract).

use std::thread;
use std::time::{Duration, Instant};

use stomp_tests::*;

/// Sends one SEND with a receipt and receives it back on `c`, which is
/// subscribed to `dest` (auto ack): proves the connection is still served.
fn round_trip(c: &mut Conn, dest: &str, body: &str) {
    c.send_sync(Frame::send(dest).body(body.to_owned()), "rt");
    let m = c.expect_message();
    assert_eq!(&m.body[..], body.as_bytes());
}

/// A second connection, subscribed to its own queue, that must keep being
/// served while another connection misbehaves.
fn bystander(b: &Broker) -> Conn {
    let mut c = b.connect(Version::V1_2);
    c.subscribe("by", "/queue/bystander", AckMode::Auto);
    c
}

// ---------------------------------------------------------------- handshake

#[test]
fn connect_negotiates_highest_common_version_and_identifies_the_server() {
    let b = Broker::start();
    let mut c = b.open();
    let connected = c.connect_with(Frame::connect("localhost", &Version::ALL));
    assert_eq!(connected.headers.get("version"), Some("1.2"));
    let session = connected.session().expect("CONNECTED has a session header");
    assert!(!session.is_empty());
    let server = connected.server().expect("CONNECTED has a server header");
    assert!(
        server.starts_with("stomp-rs/"),
        "server header {server:?} should be stomp-rs/<version>"
    );
    assert!(
        connected.heart_beat().is_ok() && connected.headers.contains("heart-beat"),
        "CONNECTED has a valid heart-beat header: {connected:?}"
    );
    // Sessions are unique.
    let mut c2 = b.open();
    let other = c2.connect_with(Frame::connect("localhost", &Version::ALL));
    assert_ne!(other.session(), Some(session));
}

#[test]
fn stomp_command_is_accepted_like_connect() {
    let b = Broker::start();
    let mut c = b.open();
    let f = Frame::new(Command::Stomp)
        .header("accept-version", "1.2")
        .header("host", "localhost");
    let connected = c.connect_with(f);
    assert_eq!(connected.version(), Some(Version::V1_2));
    c.subscribe("0", "/queue/stomp-cmd", AckMode::Auto);
    round_trip(&mut c, "/queue/stomp-cmd", "via STOMP");
}

#[test]
fn no_accept_version_means_1_0() {
    let b = Broker::start();
    let mut c = b.open();
    let connected = c.connect_with(Frame::new(Command::Connect));
    assert_eq!(
        connected.headers.get("version"),
        Some("1.0"),
        "a 1.0 client gets CONNECTED version:1.0 (contract)"
    );
}

#[test]
fn version_negotiation_matrix() {
    let b = Broker::start();
    for (accept, want) in [
        ("1.0", "1.0"),
        ("1.1", "1.1"),
        ("1.2", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.0,1.1,1.2", "1.2"),
        ("1.2,1.0", "1.2"),
        ("1.1,3.14159", "1.1"),
    ] {
        let mut c = b.open();
        let f = Frame::new(Command::Connect)
            .header("accept-version", accept)
            .header("host", "localhost");
        let connected = c.connect_with(f);
        assert_eq!(
            connected.headers.get("version"),
            Some(want),
            "accept-version:{accept}"
        );
    }
}

#[test]
fn no_common_version_is_an_error_with_the_supported_versions() {
    let b = Broker::start();
    let mut c = b.open();
    c.send(
        &Frame::new(Command::Connect)
            .header("accept-version", "3.14159")
            .header("host", "localhost"),
    );
    let err = c.expect_error();
    let versions = err
        .headers
        .get("version")
        .expect("ERROR for a version mismatch carries a version header");
    assert!(
        versions.contains("1.2"),
        "version header lists what the server supports: {versions:?}"
    );
}

#[test]
fn frames_pipelined_after_connect_use_the_negotiated_version() {
    // CONNECT and the next frames in one write: the frames after CONNECT
    // must be decoded with the negotiated version's escaping rules.
    let b = Broker::start();
    let mut c12 = b.connect(Version::V1_2);
    c12.subscribe("0", "/queue/pipe", AckMode::Auto);
    // 1.0: `\c` is two plain characters.
    let mut c10 = b.open();
    c10.send_raw(b"CONNECT\naccept-version:1.0\nhost:localhost\n\n\0SEND\ndestination:/queue/pipe\nk:a\\cb\nreceipt:r\n\n\0");
    c10.expect(Command::Connected);
    c10.set_version(Version::V1_0);
    c10.expect_receipt("r");
    let m = c12.expect_message();
    assert_eq!(
        m.headers.get("k"),
        Some("a\\cb"),
        "1.0 frame unescaped as if 1.2"
    );
    // 1.2: `\t` is an error even when it comes in the same read as CONNECT.
    let mut bad = b.open();
    bad.send_raw(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0SEND\ndestination:/queue/pipe\nk:a\\tb\n\n\0");
    bad.expect(Command::Connected);
    bad.expect_error();
    c12.expect_nothing(QUIET);
}

#[test]
fn connect_headers_are_not_unescaped() {
    // 1.2 §Value Encoding: CONNECT and CONNECTED are not escaped, so a
    // backslash there is not an escape (and `\t` is no error).
    let b = Broker::start();
    let mut c = b.open();
    c.send_raw(
        b"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:us\\ter\npasscode:pa:ss\\c\n\n\0",
    );
    let f = c.expect(Command::Connected);
    assert_eq!(f.version(), Some(Version::V1_2));
}

// --------------------------------------------------------------- heart-beats

#[test]
fn broker_sends_heart_beats_on_the_schedule_the_client_asks_for() {
    let b = Broker::start();
    let mut c = b.open();
    let connected =
        c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "0,500"));
    assert_eq!(
        connected.headers.get("heart-beat"),
        Some("500,0"),
        "broker follows what the client asks (sx = cy, sy = cx)"
    );
    let start = Instant::now();
    c.expect_nothing(Duration::from_millis(2600));
    let beats = &c.heartbeat_times;
    assert!(
        (3..=10).contains(&beats.len()),
        "expected about 5 heart-beats in 2.6 s at 500 ms, got {}",
        beats.len()
    );
    let mut last = start;
    for t in beats {
        let gap = t.duration_since(last);
        assert!(
            gap < Duration::from_millis(1000),
            "a heart-beat gap of {gap:?} is far over the 500 ms asked for"
        );
        last = *t;
    }
}

#[test]
fn no_heart_beats_when_none_asked() {
    let b = Broker::start();
    let mut c = b.open();
    let connected = c.connect_with(Frame::connect("localhost", &[Version::V1_2]));
    assert_eq!(connected.heart_beat(), Ok(HeartBeat::NONE));
    c.expect_nothing(Duration::from_millis(1200));
    assert_eq!(
        c.heartbeats, 0,
        "no heart-beats when the client asked for none"
    );
}

#[test]
fn heart_beat_intervals_are_clamped_to_the_minimum() {
    let b = Broker::start_with(&["--heartbeat-min", "200"]);
    let mut c = b.open();
    let connected =
        c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "10,20"));
    assert_eq!(connected.headers.get("heart-beat"), Some("200,200"));
}

#[test]
fn heart_beats_work_in_1_1_too() {
    let b = Broker::start();
    let mut c = b.open();
    let connected =
        c.connect_with(Frame::connect("localhost", &[Version::V1_1]).header("heart-beat", "0,300"));
    assert_eq!(connected.version(), Some(Version::V1_1));
    assert_eq!(connected.headers.get("heart-beat"), Some("300,0"));
    c.expect_nothing(Duration::from_millis(1300));
    assert!(
        c.heartbeats >= 2,
        "{} heart-beats in 1.3 s at 300 ms",
        c.heartbeats
    );
}

#[test]
fn a_slowly_arriving_frame_counts_as_liveness() {
    // Any byte is a sign of life, not only complete frames or EOLs.
    let b = Broker::start_with(&["--heartbeat-grace", "1.5"]);
    let mut c = b.open();
    c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "500,0"));
    c.send_raw(b"SEND\ndestination:/queue/drip\nreceipt:drip\n\n");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(250));
        c.send_raw(b"x");
    }
    c.send_raw(b"\0");
    c.expect_receipt("drip");
    c.subscribe("0", "/queue/drip", AckMode::Auto);
    assert_eq!(&c.expect_message().body[..], b"xxxxxxxxxx");
}

#[test]
fn heart_beat_intervals_are_clamped_to_the_maximum() {
    let b = Broker::start_with(&["--heartbeat-max", "60000"]);
    let mut c = b.open();
    let connected = c.connect_with(
        Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "0,99999999"),
    );
    assert_eq!(connected.headers.get("heart-beat"), Some("60000,0"));
}

#[test]
fn malformed_connect_values_are_errors() {
    let b = Broker::start();
    for bad in [
        &b"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:soon\n\n\0"[..],
        &b"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:-1,0\n\n\0"[..],
    ] {
        violation(&b, None, bad);
    }
}

#[test]
fn unknown_ack_mode_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"SUBSCRIBE\nid:0\ndestination:/queue/a\nack:sometimes\n\n\0",
    );
}

#[test]
fn silent_client_is_closed_after_the_grace_period() {
    let b = Broker::start_with(&["--heartbeat-grace", "1.5"]);
    let mut c = b.open();
    let connected =
        c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "500,0"));
    assert_eq!(connected.headers.get("heart-beat"), Some("0,500"));
    let start = Instant::now();
    // The broker may say why with an ERROR before closing; nothing else.
    let closed_after = loop {
        match c.recv(Duration::from_secs(5)) {
            Ok(f) => assert_eq!(f.command, Command::Error, "unexpected {f:?}"),
            Err(RecvError::Closed) => break start.elapsed(),
            Err(e) => panic!("a client silent for 5 s was not closed (500 ms x 1.5 agreed): {e:?}"),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(500) && closed_after <= Duration::from_secs(3),
        "closed after {closed_after:?}, expected about 750 ms"
    );
}

#[test]
fn client_sending_only_heart_beats_stays_connected() {
    let b = Broker::start_with(&["--heartbeat-grace", "1.5"]);
    let mut c = b.open();
    c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "500,0"));
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        c.send_raw(b"\n");
        c.expect_nothing(Duration::from_millis(250));
    }
    // CRLF beats count too in 1.2.
    c.send_raw(b"\r\n");
    c.subscribe("0", "/queue/hb", AckMode::Auto);
    round_trip(&mut c, "/queue/hb", "still here");
}

// ------------------------------------------------------------------ receipts

#[test]
fn every_client_frame_gets_its_receipt() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    let mut c = b.connect(Version::V1_2);
    c.send_sync(
        Frame::subscribe("s1", "/queue/rcpt", AckMode::ClientIndividual),
        "r-sub",
    );
    p.send_sync(Frame::send("/queue/rcpt").body("one"), "r-send");
    p.send_sync(Frame::send("/queue/rcpt").body("two"), "r-send2");
    let m1 = c.expect_message();
    let m2 = c.expect_message();
    c.send_sync(Frame::ack_for(&m1, Version::V1_2).unwrap(), "r-ack");
    c.send_sync(Frame::nack_for(&m2, Version::V1_2).unwrap(), "r-nack");
    c.send_sync(Frame::begin("tx1"), "r-begin");
    c.send_sync(Frame::commit("tx1"), "r-commit");
    c.send_sync(Frame::begin("tx2"), "r-begin2");
    c.send_sync(Frame::abort("tx2"), "r-abort");
    c.send_sync(Frame::unsubscribe("s1"), "r-unsub");
    // The NACKed message came back meanwhile.
    let again = c.expect_message();
    assert_eq!(&again.body[..], b"two");
    c.disconnect();
}

#[test]
fn disconnect_receipt_comes_after_earlier_frames_are_processed() {
    let b = Broker::start();
    let mut p = b.connect(Version::V1_2);
    // 200 SENDs and the DISCONNECT in one write: the RECEIPT means all are in.
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend(p.encode(&Frame::send("/queue/disc").header("seq", i.to_string())));
    }
    wire.extend(p.encode(&Frame::disconnect().header("receipt", "bye")));
    p.send_raw(&wire);
    p.expect_receipt("bye");
    p.expect_closed(T);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/disc", AckMode::Auto);
    for i in 0..200 {
        let m = c.expect_message();
        assert_eq!(m.headers.get("seq"), Some(i.to_string().as_str()));
    }
    c.expect_nothing(QUIET);
}

// ---------------------------------------------------------------- violations

/// Runs `bad` on a fresh connection, expects ERROR (with `message`) then the
/// close, and checks a bystander connection is still served.
fn violation(b: &Broker, version: Option<Version>, bad: &[u8]) -> Frame {
    let mut by = bystander(b);
    let mut c = b.open();
    if let Some(v) = version {
        c.connect(v);
    }
    c.send_raw(bad);
    let err = c.expect_error();
    assert_eq!(
        err.content_type(),
        Some("text/plain"),
        "ERROR explains itself in a text/plain body (contract): {err:?}"
    );
    assert!(!err.body.is_empty(), "ERROR without details: {err:?}");
    round_trip(&mut by, "/queue/bystander", "unaffected");
    err
}

#[test]
fn duplicate_subscription_id_is_an_error() {
    // 1.2 §SUBSCRIBE: different subscriptions of a connection MUST use
    // different ids.
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"SUBSCRIBE\nid:0\ndestination:/queue/a\n\n\0SUBSCRIBE\nid:0\ndestination:/queue/b\n\n\0",
    );
}

#[test]
fn duplicate_open_transaction_id_is_an_error() {
    // 1.2 §BEGIN: different transactions of a connection MUST use different ids.
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"BEGIN\ntransaction:t\n\n\0BEGIN\ntransaction:t\n\n\0",
    );
}

#[test]
fn crlf_line_endings_are_accepted_in_1_2() {
    let b = Broker::start();
    let mut c = b.open();
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:localhost\r\n\r\n\0");
    c.expect(Command::Connected);
    c.set_version(Version::V1_2);
    c.send_raw(b"SUBSCRIBE\r\nid:0\r\ndestination:/queue/crlf\r\nreceipt:s\r\n\r\n\0\r\n");
    c.expect_receipt("s");
    // Mixed LF and CRLF in one frame is valid 1.2 too.
    c.send_raw(b"SEND\ndestination:/queue/crlf\r\nk:v\r\nreceipt:r\n\r\nbody\0\r\n\n");
    c.expect_receipt("r");
    let m = c.expect_message();
    assert_eq!(
        m.headers.get("k"),
        Some("v"),
        "the CR is not part of the value"
    );
    assert_eq!(&m.body[..], b"body");
}

#[test]
fn max_connections_refuses_with_an_error() {
    let b = Broker::start_with(&["--max-connections", "2"]);
    let _one = b.connect(Version::V1_2);
    let _two = b.connect(Version::V1_2);
    let mut three = b.open();
    three.send(&Frame::connect("localhost", &[Version::V1_2]));
    let f = three.expect(Command::Error);
    assert!(f.message_header().is_some());
    three.expect_closed(T);
    drop(_one);
    // A slot frees up once a connection goes.
    assert!(
        wait_until(Duration::from_secs(3), || {
            let mut c = b.open();
            c.send(&Frame::connect("localhost", &[Version::V1_2]));
            matches!(c.recv(T), Ok(f) if f.command == Command::Connected)
        }),
        "no connection accepted after one of two closed"
    );
}

#[test]
fn any_frame_counts_as_liveness() {
    let b = Broker::start_with(&["--heartbeat-grace", "1.5"]);
    let mut c = b.open();
    c.connect_with(Frame::connect("localhost", &[Version::V1_2]).header("heart-beat", "500,0"));
    for i in 0..8 {
        c.send_sync(Frame::begin(format!("t{i}")), &format!("b{i}"));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn frame_before_connect_is_an_error() {
    let b = Broker::start();
    violation(&b, None, b"SEND\ndestination:/queue/a\n\nhello\0");
    violation(&b, None, b"SUBSCRIBE\nid:0\ndestination:/queue/a\n\n\0");
}

#[test]
fn second_connect_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0",
    );
}

#[test]
fn unknown_command_is_an_error() {
    let b = Broker::start();
    violation(&b, Some(Version::V1_2), b"FOO\ndestination:/queue/a\n\n\0");
    // Server commands are not client commands.
    violation(
        &b,
        Some(Version::V1_2),
        b"MESSAGE\ndestination:/queue/a\nmessage-id:1\nsubscription:0\n\n\0",
    );
}

#[test]
fn lower_case_command_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"send\ndestination:/queue/a\n\nx\0",
    );
    violation(
        &b,
        None,
        b"connect\naccept-version:1.2\nhost:localhost\n\n\0",
    );
}

#[test]
fn missing_destination_is_an_error_with_receipt_id() {
    let b = Broker::start();
    let err = violation(&b, Some(Version::V1_2), b"SEND\nreceipt:r-77\n\nbody\0");
    assert_eq!(err.receipt_id(), Some("r-77"), "{err:?}");
    let err = violation(
        &b,
        Some(Version::V1_2),
        b"SUBSCRIBE\nid:0\nreceipt:r-78\n\n\0",
    );
    assert_eq!(err.receipt_id(), Some("r-78"), "{err:?}");
}

#[test]
fn subscribe_without_id_is_an_error_in_1_1_and_1_2_only() {
    let b = Broker::start();
    for v in [Version::V1_1, Version::V1_2] {
        let err = violation(
            &b,
            Some(v),
            b"SUBSCRIBE\ndestination:/queue/noid\nreceipt:r-1\n\n\0",
        );
        assert_eq!(err.receipt_id(), Some("r-1"), "{v}: {err:?}");
    }
    // 1.0 has no subscription ids: allowed.
    let mut c = b.connect(Version::V1_0);
    c.send_sync(
        Frame::new(Command::Subscribe).header("destination", "/queue/noid"),
        "r-10",
    );
    c.send_sync(Frame::send("/queue/noid").body("ten"), "r-11");
    let m = c.expect_message();
    assert_eq!(&m.body[..], b"ten");
}

#[test]
fn undefined_escape_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\nk:a\\tb\n\nx\0",
    );
    violation(
        &b,
        Some(Version::V1_1),
        b"SEND\ndestination:/queue/a\nk:a\\rb\n\nx\0",
    );
}

#[test]
fn malformed_header_lines_are_errors() {
    let b = Broker::start();
    // No colon (ActiveMQ accepts it), empty name, value not UTF-8.
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\nnocolon\n\nx\0",
    );
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\n:v\n\nx\0",
    );
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\nk:\xff\xfe\n\nx\0",
    );
}

#[test]
fn body_on_subscribe_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"SUBSCRIBE\nid:0\ndestination:/queue/a\n\nnot allowed\0",
    );
}

#[test]
fn a_frame_that_cannot_be_decoded_gets_an_error_with_its_receipt_id() {
    // 1.2 §ERROR: "if the frame included a receipt header, the ERROR frame
    // SHOULD set the receipt-id header to match".
    let b = Broker::start();
    for (bad, receipt) in [
        (
            &b"SUBSCRIBE\nreceipt:r-1\nid:0\ndestination:/queue/a\n\nbody\0"[..],
            "r-1",
        ),
        (
            b"SEND\ndestination:/queue/a\nreceipt:r-2\nk:a\\tb\n\nx\0",
            "r-2",
        ),
        (b"SEND\nreceipt:r-3\ncontent-length:abc\n\nx\0", "r-3"),
        (b"SEND\nreceipt:r\\c4\ncontent-length:1\n\nxy\0", "r:4"),
    ] {
        let err = violation(&b, Some(Version::V1_2), bad);
        assert_eq!(err.receipt_id(), Some(receipt), "{err:?}");
    }
}

#[test]
fn stomp_1_0_frames_written_as_in_the_1_0_specification() {
    // 1.0's examples pad header values ("destination: /queue/foo") and say
    // SUBSCRIBE's body "is ignored".
    let b = Broker::start();
    let mut c = b.connect(Version::V1_0);
    c.send_raw(b"SUBSCRIBE\ndestination: /queue/foo\nack: client\nreceipt: s\n\nignored\0");
    c.expect_receipt("s");
    let mut p = b.connect(Version::V1_0);
    p.send_raw(b"SEND\ndestination: /queue/foo\nreceipt: r\n\nhello queue a\0");
    p.expect_receipt("r");
    let m = c.expect_message();
    assert_eq!(m.destination(), Some("/queue/foo"));
    assert_eq!(&m.body[..], b"hello queue a");
    c.send_raw(b"ACK\nmessage-id: ");
    c.send_raw(m.message_id().unwrap().as_bytes());
    c.send_raw(b"\nreceipt: a\n\n\0");
    c.expect_receipt("a");
    // 1.0 UNSUBSCRIBE by destination, padded too.
    c.send_raw(b"UNSUBSCRIBE\ndestination: /queue/foo\nreceipt: u\n\n\0");
    c.expect_receipt("u");
    p.send_sync(Frame::send("/queue/foo").body("after"), "r2");
    c.expect_nothing(Duration::from_millis(300));
}

#[test]
fn ack_of_unknown_id_is_an_error_with_receipt_id() {
    let b = Broker::start();
    let err = violation(
        &b,
        Some(Version::V1_2),
        b"ACK\nid:no-such-ack\nreceipt:r-9\n\n\0",
    );
    assert_eq!(err.receipt_id(), Some("r-9"), "{err:?}");
    violation(&b, Some(Version::V1_2), b"NACK\nid:no-such-ack\n\n\0");
}

#[test]
fn unknown_transaction_is_an_error() {
    let b = Broker::start();
    let err = violation(
        &b,
        Some(Version::V1_2),
        b"COMMIT\ntransaction:nope\nreceipt:r-5\n\n\0",
    );
    assert_eq!(err.receipt_id(), Some("r-5"), "{err:?}");
    violation(&b, Some(Version::V1_2), b"ABORT\ntransaction:nope\n\n\0");
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\ntransaction:nope\n\nx\0",
    );
    // A committed transaction is over.
    violation(
        &b,
        Some(Version::V1_2),
        b"BEGIN\ntransaction:t\n\n\0COMMIT\ntransaction:t\n\n\0COMMIT\ntransaction:t\n\n\0",
    );
}

#[test]
fn body_over_the_limit_is_an_error() {
    let b = Broker::start_with(&["--max-body-size", "1024"]);
    let mut ok = b.connect(Version::V1_2);
    ok.subscribe("0", "/queue/lim", AckMode::Auto);
    round_trip(&mut ok, "/queue/lim", &"x".repeat(1024));
    let mut frame = b"SEND\ndestination:/queue/lim\n\n".to_vec();
    frame.extend(std::iter::repeat_n(b'y', 2000));
    frame.push(0);
    violation(&b, Some(Version::V1_2), &frame);
    // Declared too long: refused before the body arrives.
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/lim\ncontent-length:5000\n\n",
    );
    ok.expect_nothing(QUIET);
}

#[test]
fn header_limits_are_enforced() {
    let b = Broker::start_with(&["--max-headers", "10", "--max-header-line", "100"]);
    let mut many = b"SEND\ndestination:/queue/h\n".to_vec();
    for i in 0..20 {
        many.extend(format!("h{i}:v\n").bytes());
    }
    many.extend(b"\n\0");
    violation(&b, Some(Version::V1_2), &many);
    let long = format!("SEND\ndestination:/queue/h\nk:{}\n\n\0", "v".repeat(200));
    violation(&b, Some(Version::V1_2), long.as_bytes());
}

#[test]
fn bad_content_length_is_an_error() {
    let b = Broker::start();
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\ncontent-length:-1\n\nx\0",
    );
    // content-length says 2, the byte after 2 is not NUL.
    violation(
        &b,
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\ncontent-length:2\n\nxyz\0",
    );
}

// ---------------------------------------------------------------- shutdown

#[test]
fn sigterm_exits_zero_promptly_and_closes_sessions() {
    let mut b = Broker::start();
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/term", AckMode::Auto);
    let status = b
        .terminate(Duration::from_secs(2))
        .expect("broker still running 2 s after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM; logs:\n{}",
        b.logs()
    );
    // The session is closed (an ERROR saying so is allowed first).
    loop {
        match c.recv(T) {
            Ok(f) => assert_eq!(f.command, Command::Error, "{f:?}"),
            Err(RecvError::Closed) => break,
            Err(e) => panic!("session not closed after shutdown: {e:?}"),
        }
    }
}

#[test]
fn shutdown_flushes_what_is_owed() {
    let mut b = Broker::start();
    let mut slow = b.connect(Version::V1_2);
    slow.subscribe("0", "/topic/owed", AckMode::Auto);
    let mut p = b.connect(Version::V1_2);
    // About 6 MiB for a subscriber that is not reading yet: more than the
    // socket buffers hold, less than the default 8 MiB write backlog.
    let mut wire = Vec::new();
    for i in 0..768 {
        wire.extend(
            p.encode(
                &Frame::send("/topic/owed")
                    .header("seq", i.to_string())
                    .body(vec![b'o'; 8192]),
            ),
        );
    }
    p.send_raw(&wire);
    p.send_sync(Frame::send("/topic/none").body("sync"), "sync");
    let pid = rustix::process::Pid::from_raw(b.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // Now read: every owed MESSAGE arrives, then the close.
    for i in 0..768 {
        match slow.recv(T) {
            Ok(m) => assert_eq!(m.headers.get("seq"), Some(i.to_string().as_str()), "{m:?}"),
            Err(e) => panic!("only {i} of 768 owed messages before {e:?}"),
        }
    }
    loop {
        match slow.recv(T) {
            Ok(f) => assert_eq!(f.command, Command::Error, "{f:?}"),
            Err(RecvError::Closed) => break,
            Err(e) => panic!("not closed after shutdown: {e:?}"),
        }
    }
    wait_until(Duration::from_secs(2), || b.try_exit_status().is_some());
    let status = b.try_exit_status();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after SIGTERM"
    );
}

#[test]
fn sigint_exits_zero_too() {
    let mut b = Broker::start();
    let _c = b.connect(Version::V1_2);
    let status = b
        .signal_and_wait(rustix::process::Signal::INT, Duration::from_secs(2))
        .expect("broker still running 2 s after SIGINT");
    assert!(status.success(), "exit status {status:?} after SIGINT");
}

#[test]
fn config_file_sets_flags_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("stomp-tests-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broker.toml");
    std::fs::write(&file, "max_body_size = 100\nprefetch = 1\n").unwrap();
    let path = file.to_str().unwrap();
    // From the file: a 200-byte body is over the limit.
    let b = Broker::start_with(&["--config", path]);
    let mut c = b.connect(Version::V1_2);
    c.send(&Frame::send("/queue/cfg").body(vec![b'x'; 200]));
    c.expect_error();
    // The flag wins over the file.
    let b = Broker::start_with(&["--config", path, "--max-body-size", "1000"]);
    let mut c = b.connect(Version::V1_2);
    c.send_sync(Frame::send("/queue/cfg").body(vec![b'x'; 200]), "r");
    // And the rest of the file still applies: a window of one.
    c.send_sync(Frame::send("/queue/cfg").body("second"), "r2");
    c.subscribe("0", "/queue/cfg", AckMode::ClientIndividual);
    let m = c.expect_message();
    assert_eq!(m.body.len(), 200);
    c.expect_nothing(QUIET);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_values_are_clear_failures() {
    let dir = std::env::temp_dir().join(format!("stomp-tests-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, must_name) in [
        ("type.toml", "prefetch = \"lots\"\n", "prefetch"),
        ("unknown.toml", "prefetchh = 5\n", "prefetchh"),
        ("syntax.toml", "prefetch = = 5\n", "syntax.toml"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = run_to_exit(&[
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "--config",
            file.to_str().unwrap(),
        ]);
        assert!(!out.0.success(), "{name}: exit {:?}", out.0);
        assert!(
            out.1.contains(must_name),
            "{name}: stderr should name {must_name:?}: {}",
            out.1
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_config_is_a_clear_failure() {
    let out = run_to_exit(&["--memory", "--config", "/nonexistent/stomp-broker.toml"]);
    assert!(!out.0.success());
    assert!(
        out.1.contains("stomp-broker.toml"),
        "stderr should name the file: {}",
        out.1
    );
}

#[test]
fn taken_port_is_a_clear_failure() {
    let b = Broker::start();
    let out = run_to_exit(&["--listen", &b.addr().to_string(), "--memory"]);
    assert!(
        !out.0.success(),
        "second broker on a taken port exited {:?}",
        out.0
    );
    assert!(!out.1.trim().is_empty(), "no message on stderr");
}

#[test]
fn bad_flag_value_is_a_clear_failure() {
    let out = run_to_exit(&["--listen", "127.0.0.1:0", "--memory", "--prefetch", "lots"]);
    assert!(!out.0.success());
    assert!(
        out.1.contains("prefetch"),
        "stderr should name the flag: {}",
        out.1
    );
}

/// Runs the broker binary with `args` (no harness flags) and waits up to 10 s
/// for it to exit; returns the status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(broker_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn broker");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker with {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status, err)
}

#[test]
fn ack_of_another_connections_message_is_an_error_and_acks_nothing() {
    let b = Broker::start();
    let mut a = b.connect(Version::V1_2);
    a.subscribe("0", "/queue/theirs", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/theirs").body("mine"), "r");
    let m = a.expect_message();
    let ack = Encoder::new(Version::V1_2)
        .to_bytes(&Frame::ack_for(&m, Version::V1_2).unwrap())
        .unwrap();
    violation(&b, Some(Version::V1_2), &ack);
    drop(a);
    let mut c = b.connect(Version::V1_2);
    c.subscribe("0", "/queue/theirs", AckMode::Auto);
    assert_eq!(
        &c.expect_message().body[..],
        b"mine",
        "the stranger's ACK counted"
    );
}

#[test]
fn second_ack_of_the_same_message_is_an_error() {
    // ActiveMQ and RabbitMQ both refuse an ACK for a message already acked.
    let b = Broker::start();
    let mut a = b.connect(Version::V1_2);
    a.subscribe("0", "/queue/twice", AckMode::ClientIndividual);
    let mut p = b.connect(Version::V1_2);
    p.send_sync(Frame::send("/queue/twice").body("x"), "r");
    let m = a.expect_message();
    let ack = Frame::ack_for(&m, Version::V1_2).unwrap();
    a.send_sync(ack.clone(), "a1");
    a.send(&ack.header("receipt", "a2"));
    let err = a.expect_error();
    assert_eq!(err.receipt_id(), Some("a2"));
}

#[test]
fn unsubscribe_of_an_unknown_id_is_an_error() {
    // ActiveMQ and RabbitMQ both answer with an ERROR.
    let b = Broker::start();
    let err = violation(
        &b,
        Some(Version::V1_2),
        b"UNSUBSCRIBE\nid:never\nreceipt:u\n\n\0",
    );
    assert_eq!(err.receipt_id(), Some("u"));
}

#[test]
fn several_listeners_each_print_their_line_and_accept() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(broker_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--memory",
        ])
        .args(["--log-level", "debug"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn broker");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let line = rx.recv_timeout(START_TIMEOUT).expect("a listening line");
        let addr: std::net::SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("stdout line {line:?}"));
        addrs.push(addr);
    }
    assert_ne!(addrs[0], addrs[1]);
    for addr in &addrs {
        let mut c = Conn::open(*addr);
        c.connect(Version::V1_2);
        c.subscribe("0", "/queue/l", AckMode::Auto);
        c.disconnect();
    }
    // Debug logs go to stderr: stdout holds nothing but the listening lines.
    let extra = rx.recv_timeout(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        extra.is_err(),
        "stdout got more than listening lines: {extra:?}"
    );
}

#[test]
fn stomp_broker_subcommand_behaves_like_the_binary() {
    // The contract: `stomp broker` flattens the same arguments and runs
    // the same broker.
    let mut b = Broker::start_cli(&["--max-body-size", "100"]);
    let mut c = b.open();
    let connected = c.connect_with(Frame::connect("localhost", &Version::ALL));
    assert_eq!(connected.version(), Some(Version::V1_2));
    assert!(
        connected
            .server()
            .is_some_and(|s| s.starts_with("stomp-rs/"))
    );
    c.subscribe("0", "/queue/cli", AckMode::Auto);
    round_trip(&mut c, "/queue/cli", "through stomp broker");
    c.send(&Frame::send("/queue/cli").body(vec![b'x'; 200]));
    c.expect_error();
    let status = b
        .terminate(Duration::from_secs(2))
        .expect("still running after SIGTERM");
    assert!(status.success(), "{status:?}");
}
