//! Engine tests without sockets: frames and injected time in, frames out.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_frame::{AckMode, Command, Frame, Version};

use crate::config::{Config, SlowConsumerPolicy};
use crate::engine::{ConnId, Engine};
use crate::session::Output;

struct H {
    e: Engine,
    now: Instant,
}

impl H {
    fn new() -> H {
        H::with(Config::default())
    }

    fn with(cfg: Config) -> H {
        H {
            e: Engine::new(cfg),
            now: Instant::now(),
        }
    }

    fn with_auth(cfg: Config, auth: impl crate::auth::Authenticator + 'static) -> H {
        H {
            e: Engine::with_parts(cfg, Box::new(crate::store::MemoryStore), Box::new(auth)),
            now: Instant::now(),
        }
    }

    fn check(&self) {
        self.e.check_invariants().unwrap();
    }

    /// A connection that sent CONNECT for `versions` and got CONNECTED.
    fn connect(&mut self, versions: &str) -> ConnId {
        let c = self.e.open(self.now);
        let f = Frame::new(Command::Connect)
            .header("accept-version", versions)
            .header("host", "x");
        self.frame(c, f);
        let got = self.frames(c);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].command, Command::Connected, "{got:?}");
        c
    }

    fn frame(&mut self, c: ConnId, f: Frame) {
        self.e.handle_frame(c, f, self.now);
        self.check();
    }

    fn raw(&mut self, c: ConnId, bytes: &[u8]) -> BytesMut {
        let mut buf = BytesMut::from(bytes);
        self.e.handle_input(c, &mut buf, self.now);
        self.check();
        buf
    }

    /// Everything owed to `c`, as a driver that writes it all would take it.
    fn out(&mut self, c: ConnId) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.e.pop_output(c) {
            v.push(o);
        }
        self.e.wrote(c, 0, self.now);
        self.check();
        v
    }

    fn frames(&mut self, c: ConnId) -> Vec<Frame> {
        self.out(c)
            .into_iter()
            .filter_map(|o| match o {
                Output::Frame(f) | Output::Consumed { frame: f, .. } => Some(f),
                Output::Heartbeat => None,
            })
            .collect()
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.e.handle_timeout(self.now);
        self.check();
    }

    fn sub(&mut self, c: ConnId, id: &str, dest: &str, ack: AckMode) {
        self.frame(c, Frame::subscribe(id, dest, ack));
    }

    fn send(&mut self, c: ConnId, dest: &str, body: &str) {
        self.frame(c, Frame::send(dest).body(body.as_bytes().to_vec()));
    }

    fn close(&mut self, c: ConnId) {
        self.e.close(c, self.now);
        self.check();
    }

    fn error_of(&mut self, c: ConnId) -> Frame {
        let got = self.frames(c);
        let err = got
            .iter()
            .find(|f| f.command == Command::Error)
            .unwrap_or_else(|| panic!("no ERROR in {got:?}"))
            .clone();
        assert!(self.e.is_closing(c), "an ERROR closes the connection");
        assert!(self.e.should_close(c, 0));
        err
    }
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(|f| String::from_utf8(f.body.to_vec()).unwrap())
        .collect()
}

#[test]
fn version_negotiation_and_connected_headers() {
    let mut h = H::new();
    for (accept, want) in [
        (None, "1.0"),
        (Some("1.0,1.1"), "1.1"),
        (Some("1.1,1.2,3.14"), "1.2"),
    ] {
        let c = h.e.open(h.now);
        h.frame(
            c,
            Frame::new(Command::Stomp).header_opt("accept-version", accept),
        );
        let got = h.frames(c);
        let f = &got[0];
        assert_eq!(f.command, Command::Connected);
        assert_eq!(f.headers.get("version"), Some(want));
        assert!(f.session().is_some());
        assert_eq!(f.server(), Some(crate::engine::SERVER));
        assert_eq!(f.headers.get("heart-beat"), Some("0,0"));
        assert_eq!(h.e.version(c).as_str(), want);
    }
    let c = h.e.open(h.now);
    h.frame(
        c,
        Frame::new(Command::Connect).header("accept-version", "2.0"),
    );
    let err = h.error_of(c);
    assert_eq!(err.headers.get("version"), Some("1.0,1.1,1.2"));
    assert!(err.message_header().unwrap().contains("version"));
}

#[test]
fn sessions_are_unique() {
    let mut h = H::new();
    let a = h.e.open(h.now);
    h.frame(a, Frame::connect("x", &Version::ALL));
    let b = h.e.open(h.now);
    h.frame(b, Frame::connect("x", &Version::ALL));
    let (fa, fb) = (h.frames(a), h.frames(b));
    assert_ne!(fa[0].session(), fb[0].session());
}

#[test]
fn frame_before_connect_is_an_error_with_receipt_id() {
    let mut h = H::new();
    let c = h.e.open(h.now);
    h.frame(c, Frame::send("/queue/a").header("receipt", "77"));
    let err = h.error_of(c);
    assert_eq!(err.receipt_id(), Some("77"));
    assert_eq!(err.content_type(), Some("text/plain"));
    assert!(!err.body.is_empty());
    // Nothing more is processed.
    h.frame(c, Frame::connect("x", &Version::ALL));
    assert!(h.frames(c).is_empty());
}

#[test]
fn protocol_violations_each_get_an_error() {
    let cases: Vec<(Frame, &str)> = vec![
        (Frame::new(Command::Send), "destination"),
        (Frame::send("/elsewhere/a"), "/queue/"),
        (
            Frame::new(Command::Subscribe).header("destination", "/queue/a"),
            "id",
        ),
        (
            Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("destination", "/queue/a")
                .header("ack", "x"),
            "ack",
        ),
        (Frame::unsubscribe("nope"), "subscription"),
        (Frame::new(Command::Ack).header("id", "0.99"), "ack id"),
        (Frame::new(Command::Ack), "id"),
        (Frame::commit("t9"), "transaction"),
        (
            Frame::send("/queue/a").header("transaction", "t9"),
            "transaction",
        ),
        (Frame::new(Command::Begin), "transaction"),
        (Frame::new(Command::Message), "MESSAGE"),
        (Frame::connect("x", &Version::ALL), "connected"),
    ];
    for (frame, says) in cases {
        let mut h = H::new();
        let c = h.connect("1.2");
        let other = h.connect("1.2");
        h.frame(c, frame.clone().header("receipt", "r"));
        let err = h.error_of(c);
        let text = format!(
            "{} {}",
            err.message_header().unwrap(),
            String::from_utf8_lossy(&err.body)
        );
        assert!(text.contains(says), "{frame:?}: {text}");
        assert_eq!(err.receipt_id(), Some("r"));
        assert!(!h.e.is_closing(other), "other connections never notice");
    }
}

#[test]
fn decode_errors_close_with_error() {
    for bytes in [
        &b"CONNECT\naccept-version:1.1\n\n\0SEND\ndestination:/queue/a\nk:a\\tb\n\n\0"[..],
        &b"CONNECT\n\n\0send\n\n\0"[..],
        &b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/queue/a\n\nbody\0"[..],
    ] {
        let mut h = H::with(Config {
            max_body_size: 10,
            ..Config::default()
        });
        let c = h.e.open(h.now);
        h.raw(c, bytes);
        let err = h.error_of(c);
        assert!(err.message_header().is_some());
    }
    // A limit crossed.
    let mut h = H::with(Config {
        max_body_size: 10,
        ..Config::default()
    });
    let c = h.e.open(h.now);
    h.raw(
        c,
        b"CONNECT\n\n\0SEND\ndestination:/queue/a\ncontent-length:11\n\n",
    );
    let err = h.error_of(c);
    assert!(err.message_header().unwrap().contains("limit"));
}

#[test]
fn auto_ack_queue_delivers_every_header() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/a", AckMode::Auto);
    h.frame(
        p,
        Frame::send("/queue/a")
            .header("content-type", "text/plain")
            .header("x-custom", "v:1")
            .header("receipt", "r1")
            .body("hello"),
    );
    assert_eq!(h.frames(p)[0].receipt_id(), Some("r1"));
    let got = h.frames(c);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.destination(), Some("/queue/a"));
    assert_eq!(m.subscription(), Some("s"));
    assert!(m.message_id().is_some());
    assert_eq!(m.content_type(), Some("text/plain"));
    assert_eq!(m.headers.get("x-custom"), Some("v:1"));
    assert_eq!(m.ack(), None);
    assert!(m.receipt_request().is_none());
    assert_eq!(&m.body[..], b"hello");
    assert_eq!(h.e.stats().consumed, 1);
}

#[test]
fn a_repeated_header_is_passed_on_once_with_its_first_value() {
    for extra in [0, 20] {
        // Few headers and many (the long path).
        let mut h = H::new();
        let p = h.connect("1.2");
        let c = h.connect("1.2");
        h.sub(c, "s", "/queue/dup", AckMode::Auto);
        let mut f = Frame::send("/queue/dup")
            .header("x-dup", "first")
            .header("destination", "/queue/other")
            .header("x-dup", "second");
        for i in 0..extra {
            f = f
                .header(format!("x-{i}").as_str(), "v")
                .header("x-dup", "third");
        }
        h.frame(p, f);
        let m = h.frames(c).remove(0);
        let dups: Vec<&str> = m.headers.get_all("x-dup").collect();
        assert_eq!(dups, ["first"], "{extra}");
        assert_eq!(
            m.headers
                .iter()
                .filter(|h| h.name() == "destination")
                .count(),
            1
        );
        assert_eq!(m.headers.len(), 4 + extra as usize, "{:?}", m.headers);
    }
}

#[test]
fn queue_keeps_messages_while_nobody_subscribes() {
    let mut h = H::new();
    let p = h.connect("1.2");
    for i in 0..3 {
        h.send(p, "/queue/k", &i.to_string());
    }
    assert_eq!(h.e.queue_depth("/queue/k"), 3);
    let c = h.connect("1.1");
    h.sub(c, "0", "/queue/k", AckMode::Auto);
    assert_eq!(bodies(&h.frames(c)), ["0", "1", "2"]);
}

#[test]
fn client_ack_is_cumulative_and_rest_is_redelivered_in_order() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/a", AckMode::Client);
    for i in 0..4 {
        h.send(p, "/queue/a", &i.to_string());
    }
    let got = h.frames(c);
    assert_eq!(bodies(&got), ["0", "1", "2", "3"]);
    assert!(got.iter().all(|m| m.ack().is_some()));
    h.frame(c, Frame::ack_for(&got[1], Version::V1_2).unwrap());
    assert_eq!(h.e.stats().consumed, 2);
    h.close(c);
    let d = h.connect("1.2");
    h.sub(d, "s", "/queue/a", AckMode::ClientIndividual);
    let again = h.frames(d);
    assert_eq!(bodies(&again), ["2", "3"]);
    assert!(
        again
            .iter()
            .all(|m| m.headers.get("redelivered") == Some("true"))
    );
}

#[test]
fn client_individual_acks_one_and_redelivers_the_others_first() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/a", AckMode::ClientIndividual);
    for i in 0..3 {
        h.send(p, "/queue/a", &i.to_string());
    }
    let got = h.frames(c);
    h.frame(c, Frame::ack_for(&got[1], Version::V1_2).unwrap());
    h.frame(c, Frame::unsubscribe("s"));
    h.send(p, "/queue/a", "3");
    let d = h.connect("1.2");
    h.sub(d, "s", "/queue/a", AckMode::Auto);
    let again = h.frames(d);
    assert_eq!(bodies(&again), ["0", "2", "3"]);
    assert_eq!(again[0].headers.get("redelivered"), Some("true"));
    assert_eq!(again[2].headers.get("redelivered"), None);
}

#[test]
fn nack_redelivers_then_dead_letters() {
    let mut h = H::with(Config {
        max_deliveries: 2,
        ..Config::default()
    });
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/work", AckMode::ClientIndividual);
    h.send(p, "/queue/work", "job");
    let first = h.frames(c);
    assert_eq!(first[0].headers.get("redelivered"), None);
    h.frame(c, Frame::nack_for(&first[0], Version::V1_2).unwrap());
    let second = h.frames(c);
    assert_eq!(bodies(&second), ["job"]);
    assert_eq!(second[0].headers.get("redelivered"), Some("true"));
    h.frame(c, Frame::nack_for(&second[0], Version::V1_2).unwrap());
    assert!(h.frames(c).is_empty(), "delivered twice: dead-lettered");
    assert_eq!(h.e.stats().dead_lettered, 1);
    let d = h.connect("1.2");
    h.sub(d, "dlq", "/queue/DLQ.work", AckMode::Auto);
    let dead = h.frames(d);
    assert_eq!(bodies(&dead), ["job"]);
    assert_eq!(dead[0].destination(), Some("/queue/DLQ.work"));
    assert_eq!(
        dead[0].headers.get("original-destination"),
        Some("/queue/work")
    );
}

#[test]
fn acks_in_each_version_form() {
    let mut h = H::new();
    let p = h.connect("1.2");
    // 1.1: message-id + subscription.
    let c11 = h.connect("1.1");
    h.sub(c11, "s", "/queue/v11", AckMode::Client);
    h.send(p, "/queue/v11", "a");
    let m = h.frames(c11).remove(0);
    assert!(m.ack().is_some(), "ack header in every version");
    h.frame(c11, Frame::ack_for(&m, Version::V1_1).unwrap());
    assert!(!h.e.is_closing(c11));
    // 1.1 may also use the 1.2 id (stomp.py interop).
    h.send(p, "/queue/v11", "b");
    let m = h.frames(c11).remove(0);
    h.frame(c11, Frame::ack_for(&m, Version::V1_2).unwrap());
    assert!(!h.e.is_closing(c11));
    // 1.0: message-id only; SUBSCRIBE without id uses the destination.
    let c10 = h.connect("1.0");
    h.frame(
        c10,
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/v10")
            .header("ack", "client"),
    );
    h.send(p, "/queue/v10", "c");
    let m = h.frames(c10).remove(0);
    assert_eq!(m.subscription(), Some("/queue/v10"));
    h.frame(c10, Frame::ack_for(&m, Version::V1_0).unwrap());
    assert!(!h.e.is_closing(c10));
    assert_eq!(h.e.stats().consumed, 3);
    // NACK is not 1.0.
    h.send(p, "/queue/v10", "d");
    let m = h.frames(c10).remove(0);
    h.frame(c10, Frame::nack_for(&m, Version::V1_1).unwrap());
    assert!(h.error_of(c10).message_header().unwrap().contains("1.0"));
}

#[test]
fn ack_of_auto_subscription_and_unknown_ids_are_errors() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.1");
    h.sub(c, "s", "/queue/a", AckMode::Auto);
    h.send(p, "/queue/a", "x");
    let m = h.frames(c).remove(0);
    h.frame(c, Frame::ack_for(&m, Version::V1_1).unwrap());
    assert!(h.error_of(c).message_header().unwrap().contains("auto"));

    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/b", AckMode::Client);
    h.send(p, "/queue/b", "y");
    let m = h.frames(c).remove(0);
    let ack = Frame::ack_for(&m, Version::V1_2).unwrap();
    h.frame(c, ack.clone());
    h.frame(c, ack.header("receipt", "again"));
    let err = h.error_of(c);
    assert!(err.message_header().unwrap().contains("unknown ack id"));
    assert_eq!(err.receipt_id(), Some("again"));
}

#[test]
fn duplicate_subscription_id_is_an_error() {
    let mut h = H::new();
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/a", AckMode::Auto);
    h.sub(c, "s", "/topic/b", AckMode::Auto);
    assert!(
        h.error_of(c)
            .message_header()
            .unwrap()
            .contains("duplicate")
    );
}

#[test]
fn transactions_commit_abort_and_abort_at_disconnect() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/t", AckMode::Client);
    h.frame(p, Frame::begin("tx1"));
    h.frame(
        p,
        Frame::send("/queue/t")
            .header("transaction", "tx1")
            .body("in-tx"),
    );
    assert!(h.frames(c).is_empty(), "nothing before COMMIT");
    h.frame(p, Frame::commit("tx1").header("receipt", "c1"));
    assert_eq!(h.frames(p)[0].receipt_id(), Some("c1"));
    let m = h.frames(c).remove(0);
    assert_eq!(&m.body[..], b"in-tx");

    h.frame(p, Frame::begin("tx2"));
    h.frame(
        p,
        Frame::send("/queue/t")
            .header("transaction", "tx2")
            .body("aborted"),
    );
    h.frame(p, Frame::abort("tx2"));
    assert!(h.frames(c).is_empty());
    h.frame(p, Frame::commit("tx2"));
    assert!(
        h.error_of(p)
            .message_header()
            .unwrap()
            .contains("transaction")
    );

    // ACK in a transaction counts at COMMIT only; ABORT leaves it unacked.
    h.frame(c, Frame::begin("a1"));
    h.frame(
        c,
        Frame::ack_for(&m, Version::V1_2)
            .unwrap()
            .header("transaction", "a1"),
    );
    assert_eq!(h.e.stats().consumed, 0);
    h.frame(c, Frame::abort("a1"));
    assert_eq!(h.e.stats().consumed, 0);
    h.frame(c, Frame::begin("a2"));
    h.frame(
        c,
        Frame::ack_for(&m, Version::V1_2)
            .unwrap()
            .header("transaction", "a2"),
    );
    h.frame(c, Frame::commit("a2"));
    assert_eq!(h.e.stats().consumed, 1);

    // An open transaction at disconnect is aborted.
    let p2 = h.connect("1.2");
    h.frame(p2, Frame::begin("tx3"));
    h.frame(
        p2,
        Frame::send("/queue/t")
            .header("transaction", "tx3")
            .body("lost"),
    );
    assert!(h.e.memory() > 0);
    h.close(p2);
    assert_eq!(h.e.memory(), 0);
    assert!(h.frames(c).is_empty());
}

#[test]
fn a_transactional_ack_holds_its_messages_past_unsubscribe() {
    // ACK in a transaction, UNSUBSCRIBE, then COMMIT or ABORT (or a close):
    // the ACK still decides, as RabbitMQ does.
    for (mode, end) in [
        (AckMode::ClientIndividual, "commit"),
        (AckMode::Client, "commit"),
        (AckMode::ClientIndividual, "abort"),
        (AckMode::Client, "close"),
    ] {
        let mut h = H::new();
        let c = h.connect("1.2");
        let other = h.connect("1.2");
        h.sub(c, "a", "/queue/tx-unsub", mode);
        for body in ["m1", "m2", "m3"] {
            h.send(other, "/queue/tx-unsub", body);
        }
        let got = h.frames(c);
        assert_eq!(bodies(&got), ["m1", "m2", "m3"]);
        h.frame(c, Frame::begin("t1"));
        // Client mode: acking m2 covers m1 too. m3 is never acked.
        h.frame(
            c,
            Frame::ack_for(&got[1], Version::V1_2)
                .unwrap()
                .header("transaction", "t1"),
        );
        h.frame(c, Frame::unsubscribe("a"));
        h.sub(other, "b", "/queue/tx-unsub", AckMode::Auto);
        let returned = bodies(&h.frames(other));
        let acked: &[&str] = if mode == AckMode::Client {
            &["m1", "m2"]
        } else {
            &["m2"]
        };
        let unacked: Vec<&str> = ["m1", "m2", "m3"]
            .into_iter()
            .filter(|b| !acked.contains(b))
            .collect();
        assert_eq!(returned, unacked, "{mode:?}: only what no ACK names");
        match end {
            "commit" => h.frame(c, Frame::commit("t1")),
            "abort" => h.frame(c, Frame::abort("t1")),
            _ => h.close(c),
        }
        let later = bodies(&h.frames(other));
        if end == "commit" {
            assert!(later.is_empty(), "{mode:?}: acked at COMMIT: {later:?}");
            assert_eq!(h.e.stats().consumed as usize, 3, "{mode:?}");
        } else {
            assert_eq!(later, acked, "{mode:?} {end}: back to the queue");
        }
        assert_eq!(h.e.memory(), 0, "{mode:?} {end}");
    }
}

#[test]
fn disconnect_receipt_comes_after_everything_before_it() {
    let mut h = H::new();
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/a", AckMode::Auto);
    h.raw(
        c,
        b"SEND\ndestination:/queue/a\nreceipt:1\n\nx\0DISCONNECT\nreceipt:2\n\n\0SEND\ndestination:/queue/a\n\nlate\0",
    );
    let got = h.frames(c);
    let cmds: Vec<_> = got.iter().map(|f| f.command).collect();
    assert_eq!(
        cmds,
        [Command::Receipt, Command::Message, Command::Receipt],
        "{got:?}"
    );
    assert_eq!(got[0].receipt_id(), Some("1"));
    assert_eq!(got[2].receipt_id(), Some("2"));
    assert!(h.e.should_close(c, 0));
    assert_eq!(h.e.stats().accepted, 1, "nothing after DISCONNECT");
}

#[test]
fn heart_beats_both_ways_with_grace() {
    let mut h = H::new();
    let c = h.e.open(h.now);
    h.frame(
        c,
        Frame::connect("x", &[Version::V1_2]).header("heart-beat", "1000,2000"),
    );
    let got = h.frames(c);
    // We send every 2000 (their cy), expect every 1000 (their cx).
    assert_eq!(got[0].headers.get("heart-beat"), Some("2000,1000"));
    h.advance(1000);
    assert!(h.out(c).is_empty());
    h.raw(c, b"\n");
    h.advance(1000);
    assert_eq!(h.out(c), [Output::Heartbeat]);
    // Any byte counts as life: 1400 ms silent is within 1000 x 1.5.
    h.raw(c, b"\n");
    h.advance(1400);
    assert!(!h.e.is_closing(c));
    h.raw(c, b"S");
    h.advance(1400);
    assert!(!h.e.is_closing(c));
    h.advance(200);
    let err = h.error_of(c);
    assert!(err.message_header().unwrap().contains("heart-beat"));
}

#[test]
fn heart_beats_are_clamped() {
    let mut h = H::with(Config {
        heartbeat_min: 500,
        heartbeat_max: 10_000,
        ..Config::default()
    });
    let c = h.e.open(h.now);
    h.frame(
        c,
        Frame::connect("x", &[Version::V1_1]).header("heart-beat", "10,99999"),
    );
    assert_eq!(h.frames(c)[0].headers.get("heart-beat"), Some("10000,500"));
    let c = h.e.open(h.now);
    h.frame(
        c,
        Frame::connect("x", &[Version::V1_1]).header("heart-beat", "0,50"),
    );
    assert_eq!(h.frames(c)[0].headers.get("heart-beat"), Some("500,0"));
    h.advance(10_000);
    assert!(!h.e.is_closing(c), "no beats expected from it");
}

#[test]
fn prefetch_window_and_round_robin() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let a = h.connect("1.2");
    let b = h.connect("1.2");
    h.frame(
        a,
        Frame::subscribe("s", "/queue/w", AckMode::ClientIndividual).header("prefetch-count", "2"),
    );
    h.frame(
        b,
        Frame::subscribe("s", "/queue/w", AckMode::ClientIndividual)
            .header("activemq.prefetchSize", "1"),
    );
    for i in 0..6 {
        h.send(p, "/queue/w", &i.to_string());
    }
    let ga = h.frames(a);
    let gb = h.frames(b);
    assert_eq!(bodies(&ga), ["0", "2"]);
    assert_eq!(bodies(&gb), ["1"]);
    assert_eq!(h.e.queue_depth("/queue/w"), 3);
    h.frame(b, Frame::ack_for(&gb[0], Version::V1_2).unwrap());
    assert_eq!(bodies(&h.frames(b)), ["3"]);
    h.frame(a, Frame::ack_for(&ga[1], Version::V1_2).unwrap());
    assert_eq!(bodies(&h.frames(a)), ["4"]);
}

#[test]
fn topic_fan_out_shares_the_body() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let a = h.connect("1.2");
    let b = h.connect("1.0");
    h.sub(a, "1", "/topic/news", AckMode::Auto);
    h.sub(b, "2", "/topic/news", AckMode::Client);
    h.send(p, "/topic/nobody", "lost");
    h.send(p, "/topic/news", "extra");
    let ma = h.frames(a).remove(0);
    let mb = h.frames(b).remove(0);
    assert_eq!(ma.body.as_ptr(), mb.body.as_ptr(), "one body, shared");
    assert_eq!(ma.message_id(), mb.message_id());
    assert_eq!(ma.subscription(), Some("1"));
    assert_eq!(mb.subscription(), Some("2"));
    h.frame(b, Frame::ack_for(&mb, Version::V1_0).unwrap());
    assert!(!h.e.is_closing(b));
    // Topics keep nothing.
    h.close(a);
    h.close(b);
    assert_eq!(h.e.memory(), 0);
}

#[test]
fn slow_topic_consumer_is_disconnected_or_dropped() {
    for policy in [SlowConsumerPolicy::Disconnect, SlowConsumerPolicy::Drop] {
        let mut h = H::with(Config {
            max_write_backlog: 1000,
            slow_consumer_policy: policy,
            ..Config::default()
        });
        let p = h.connect("1.2");
        let slow = h.connect("1.2");
        h.sub(slow, "s", "/topic/t", AckMode::Auto);
        for _ in 0..5 {
            h.send(p, "/topic/t", &"x".repeat(100));
        }
        // Past half its backlog the subscriber holds the producer back...
        assert!(h.e.is_paused(p), "the topic's producer waits");
        let mut resumed = Vec::new();
        h.e.take_resumed(&mut resumed);
        assert!(resumed.is_empty());
        // ...but only for slow_consumer_timeout; then the policy applies.
        h.advance(Config::default().slow_consumer_timeout);
        h.e.take_resumed(&mut resumed);
        assert_eq!(resumed, [p]);
        for _ in 0..15 {
            h.send(p, "/topic/t", &"x".repeat(100));
        }
        let got = h.frames(slow);
        match policy {
            SlowConsumerPolicy::Disconnect => {
                let err = got.last().unwrap();
                assert_eq!(err.command, Command::Error);
                assert!(err.message_header().unwrap().contains("slow consumer"));
                assert!(h.e.is_closing(slow));
            }
            SlowConsumerPolicy::Drop => {
                assert!(bodies(&got).len() < 20);
                assert!(!h.e.is_closing(slow));
                assert!(h.e.stats().topic_dropped > 0);
            }
        }
        assert!(!h.e.is_closing(p));
    }
}

/// A connection cut off as a slow subscriber of the topic it is publishing
/// to, with receipts: its outbox is emptied of topic messages while its own
/// SEND is handled, and the SEND's RECEIPT still finds its place.
#[test]
fn a_slow_subscriber_cut_while_publishing_to_its_topic_with_receipts() {
    let mut h = H::with(Config {
        max_write_backlog: 1000,
        ..Config::default()
    });
    let c = h.connect("1.2");
    h.sub(c, "s", "/topic/self", AckMode::Auto);
    h.frames(c);
    for round in 0..20 {
        if round == 5 {
            h.advance(Config::default().slow_consumer_timeout);
        }
        h.frame(
            c,
            Frame::send("/topic/self")
                .header("receipt", format!("r{round}"))
                .body("x".repeat(100)),
        );
    }
    assert!(h.e.is_closing(c));
    let got = h.frames(c);
    assert!(
        got.iter().any(|f| f.command == Command::Error),
        "{:?}",
        got.iter().map(|f| f.command).collect::<Vec<_>>()
    );
}

#[test]
fn topic_burst_pauses_producer_instead_of_cutting_a_reading_subscriber() {
    let mut h = H::with(Config {
        max_write_backlog: 1000,
        ..Config::default()
    });
    let p = h.connect("1.2");
    let fast = h.connect("1.2");
    let reader = h.connect("1.2");
    h.sub(fast, "s", "/topic/t", AckMode::Auto);
    h.sub(reader, "s", "/topic/t", AckMode::Auto);
    let mut got = 0;
    for round in 0..10 {
        for _ in 0..5 {
            h.send(p, "/topic/t", &"x".repeat(100));
        }
        assert!(
            h.e.is_paused(p),
            "round {round}: the producer waits for the readers"
        );
        // The readers catch up: the producer may go on, nobody is cut off.
        assert_eq!(bodies(&h.frames(fast)).len(), 5);
        got += bodies(&h.frames(reader)).len();
        let mut resumed = Vec::new();
        h.e.take_resumed(&mut resumed);
        assert_eq!(resumed, [p], "round {round}");
        assert!(!h.e.is_closing(reader) && !h.e.is_closing(fast));
    }
    assert_eq!(got, 50);
    assert_eq!(h.e.stats().topic_dropped, 0);
}

#[test]
fn full_queue_pauses_the_producer_until_memory_frees() {
    let mut h = H::with(Config {
        max_queue_memory: Some(1000),
        ..Config::default()
    });
    let p = h.connect("1.2");
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.extend_from_slice(b"SEND\ndestination:/queue/full\n\n");
        wire.extend_from_slice(&[b'x'; 200]);
        wire.push(0);
    }
    let rest = h.raw(p, &wire);
    assert!(h.e.is_paused(p), "reading stops");
    assert!(!rest.is_empty(), "the rest stays in the read buffer");
    let queued = h.e.queue_depth("/queue/full");
    assert!(queued < 10, "{queued}");
    let mut resumed = Vec::new();
    h.e.take_resumed(&mut resumed);
    assert!(resumed.is_empty());
    // Paused connections are not timed out for silence.
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/full", AckMode::Auto);
    assert_eq!(bodies(&h.frames(c)).len(), queued);
    h.e.take_resumed(&mut resumed);
    assert_eq!(resumed, [p]);
    assert!(!h.e.is_paused(p));
    let mut rest = rest;
    h.e.handle_input(p, &mut rest, h.now);
    h.check();
    assert_eq!(bodies(&h.frames(c)).len(), 10 - queued);
}

#[test]
fn unknown_destination_names_the_prefixes() {
    let mut h = H::with(Config {
        queue_prefix: "/q/".into(),
        topic_prefix: "/t/".into(),
        dlq_prefix: "/q/dead.".into(),
        ..Config::default()
    });
    let c = h.connect("1.2");
    h.sub(c, "s", "/q/a", AckMode::Auto);
    h.send(c, "/q/a", "ok");
    assert_eq!(bodies(&h.frames(c)), ["ok"]);
    h.send(c, "/queue/a", "no");
    let err = h.error_of(c);
    let body = String::from_utf8_lossy(&err.body).into_owned();
    assert!(body.contains("/q/") && body.contains("/t/"), "{body}");
}

#[test]
fn one_producer_order_is_kept_with_redeliveries_in_front() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.frame(
        c,
        Frame::subscribe("s", "/queue/o", AckMode::Client).header("prefetch-count", "3"),
    );
    for i in 0..6 {
        h.send(p, "/queue/o", &i.to_string());
    }
    let got = h.frames(c);
    assert_eq!(bodies(&got), ["0", "1", "2"]);
    h.frame(c, Frame::nack_for(&got[2], Version::V1_2).unwrap());
    assert_eq!(bodies(&h.frames(c)), ["0", "1", "2"]);
}

#[test]
fn lenient_host_and_unknown_headers() {
    let mut h = H::new();
    let c = h.e.open(h.now);
    h.frame(
        c,
        Frame::new(Command::Connect).header("accept-version", "1.2"),
    );
    assert_eq!(h.frames(c)[0].command, Command::Connected);
}

#[test]
fn a_peer_that_does_not_read_its_receipts_is_not_read_either() {
    let mut h = H::with(Config {
        max_write_backlog: 1000,
        ..Config::default()
    });
    let p = h.connect("1.2");
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend_from_slice(format!("SEND\ndestination:/queue/r\nreceipt:{i}\n\n\0").as_bytes());
    }
    let mut rest = h.raw(p, &wire);
    assert!(h.e.is_paused(p));
    assert!(!rest.is_empty());
    let mut resumed = Vec::new();
    h.e.take_resumed(&mut resumed);
    assert!(resumed.is_empty());
    let mut receipts = h.frames(p).len();
    h.e.take_resumed(&mut resumed);
    assert_eq!(resumed, [p]);
    while !rest.is_empty() {
        h.e.handle_input(p, &mut rest, h.now);
        receipts += h.frames(p).len();
    }
    assert_eq!(receipts, 100);
    assert_eq!(h.e.queue_depth("/queue/r"), 100);
}

/// A store that says it is durable; the test decides when tickets are.
struct FakeDurable {
    next: u64,
    durable: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl crate::store::Store for FakeDurable {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn recover(&mut self) -> std::io::Result<crate::store::Recovery> {
        Ok(crate::store::Recovery {
            messages: vec![crate::store::StoredMessage {
                seq: 41,
                queue: "/queue/old".into(),
                headers: stomp_frame::Headers::new(),
                body: "from before".into(),
                deliveries: 2,
            }],
            max_seq: 50,
        })
    }
    fn append(&mut self, m: &crate::store::StoredMessage) -> std::io::Result<()> {
        self.log.lock().unwrap().push(format!("append {}", m.seq));
        Ok(())
    }
    fn remove(&mut self, _q: &str, seq: u64) -> std::io::Result<()> {
        self.log.lock().unwrap().push(format!("remove {seq}"));
        Ok(())
    }
    fn delivered(&mut self, _q: &str, seq: u64) -> std::io::Result<()> {
        self.log.lock().unwrap().push(format!("delivered {seq}"));
        Ok(())
    }
    fn is_durable(&self) -> bool {
        true
    }
    fn changes(&self) -> u64 {
        self.log.lock().unwrap().len() as u64
    }
    fn commit(&mut self) -> std::io::Result<u64> {
        self.next += 1;
        Ok(self.next)
    }
    fn durable_ticket(&self) -> u64 {
        self.durable.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn failed_ticket(&mut self) -> Option<(u64, String)> {
        let f = self.failed.swap(0, std::sync::atomic::Ordering::SeqCst);
        (f > 0).then(|| (f, "disk full".to_owned()))
    }
}

#[test]
fn durable_store_holds_receipts_until_their_group_is_on_disk() {
    use std::sync::atomic::Ordering;
    let durable = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = FakeDurable {
        next: 0,
        durable: durable.clone(),
        failed: failed.clone(),
        log: log.clone(),
    };
    let mut h = H {
        e: Engine::with_parts(
            Config::default(),
            Box::new(store),
            Box::new(crate::auth::AllowAll),
        ),
        now: Instant::now(),
    };
    // Recovered: queued again, numbering continues above max_seq.
    assert_eq!(h.e.queue_depth("/queue/old"), 1);
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/old", AckMode::Client);
    let old = h.frames(c).remove(0);
    assert_eq!(old.headers.get("redelivered"), Some("true"));
    assert_eq!(&old.body[..], b"from before");

    // Frames that change nothing on disk are answered at once (a full
    // disk does not hold them up).
    let other = h.connect("1.2");
    h.frame(other, Frame::begin("t").header("receipt", "b"));
    h.frame(
        other,
        Frame::subscribe("s", "/queue/empty", AckMode::Auto).header("receipt", "s"),
    );
    let ids: Vec<_> = h
        .frames(other)
        .iter()
        .map(|f| f.receipt_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["b", "s"], "no wait for the disk");

    h.frame(
        c,
        Frame::send("/queue/new").header("receipt", "r1").body("x"),
    );
    // After a RECEIPT that waits, the next waits too (they stay in order).
    h.frame(c, Frame::begin("t2").header("receipt", "b2"));
    h.frame(c, Frame::disconnect().header("receipt", "bye"));
    assert!(h.frames(c).is_empty(), "not before the commit");
    h.e.flush_store(h.now); // ticket 1 for this turn
    assert!(h.frames(c).is_empty(), "not before the disk");
    assert!(!h.e.should_close(c, 0), "DISCONNECT waits for its RECEIPT");
    durable.store(1, Ordering::SeqCst);
    h.e.flush_store(h.now);
    let got = h.frames(c);
    let ids: Vec<_> = got.iter().map(|f| f.receipt_id().unwrap()).collect();
    assert_eq!(ids, ["r1", "b2", "bye"]);
    assert!(h.e.should_close(c, 0));
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("append 51")),
        "{:?}",
        log.lock().unwrap()
    );
    assert!(log.lock().unwrap().contains(&"delivered 41".to_owned()));

    // A lost group: ERROR with the receipt-id instead of a RECEIPT.
    let p = h.connect("1.2");
    h.frame(
        p,
        Frame::send("/queue/new").header("receipt", "r2").body("y"),
    );
    h.e.flush_store(h.now);
    failed.store(u64::MAX, Ordering::SeqCst);
    h.e.flush_store(h.now);
    let err = h.error_of(p);
    assert_eq!(err.receipt_id(), Some("r2"));
    assert!(err.message_header().unwrap().contains("store"));
}

#[test]
fn message_ids_continue_from_the_given_start() {
    let mut h = H::new();
    h.e.start_sequence_at(1_000_000);
    let p = h.connect("1.2");
    h.sub(p, "s", "/queue/ids", AckMode::Auto);
    h.send(p, "/queue/ids", "a");
    let got = h.frames(p);
    assert_eq!(got[0].message_id(), Some("m-1000000"));
    // A lower start never moves the numbering back.
    h.e.start_sequence_at(5);
    h.send(p, "/queue/ids", "b");
    assert_eq!(h.frames(p)[0].message_id(), Some("m-1000001"));
}

#[test]
fn topic_messages_past_the_window_wait_for_acks() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.frame(
        c,
        Frame::subscribe("s", "/topic/w", AckMode::ClientIndividual)
            .header("activemq.prefetchSize", "2"),
    );
    for i in 0..5 {
        h.send(p, "/topic/w", &i.to_string());
    }
    let got = h.frames(c);
    assert_eq!(bodies(&got), ["0", "1"]);
    h.frame(c, Frame::ack_for(&got[0], Version::V1_2).unwrap());
    let next = h.frames(c);
    assert_eq!(bodies(&next), ["2"]);
    // A NACK opens the window too (topic messages are not redelivered).
    h.frame(c, Frame::nack_for(&got[1], Version::V1_2).unwrap());
    h.frame(c, Frame::ack_for(&next[0], Version::V1_2).unwrap());
    assert_eq!(bodies(&h.frames(c)), ["3", "4"]);
    // What is held goes with the subscription.
    h.send(p, "/topic/w", "5");
    h.send(p, "/topic/w", "6");
    h.frame(c, Frame::new(Command::Unsubscribe).header("id", "s"));
    assert!(h.frames(c).is_empty());
    assert!(!h.e.is_closing(c));
}

#[test]
fn prefetch_count_zero_is_no_window_and_activemq_zero_is_one() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let a = h.connect("1.2");
    let b = h.connect("1.2");
    h.frame(
        a,
        Frame::subscribe("s", "/queue/pa", AckMode::Client).header("prefetch-count", "0"),
    );
    h.frame(
        b,
        Frame::subscribe("s", "/queue/pb", AckMode::Client).header("activemq.prefetchSize", "0"),
    );
    for i in 0..3 {
        h.send(p, "/queue/pa", &i.to_string());
        h.send(p, "/queue/pb", &i.to_string());
    }
    assert_eq!(bodies(&h.frames(a)), ["0", "1", "2"]);
    assert_eq!(bodies(&h.frames(b)), ["0"]);
    // Past u32: as many as there are, as from the peers; not a number: ERROR.
    let c = h.connect("1.2");
    h.frame(
        c,
        Frame::subscribe("s", "/queue/pc", AckMode::Client)
            .header("prefetch-count", "99999999999999999999"),
    );
    for i in 0..3 {
        h.send(p, "/queue/pc", &i.to_string());
    }
    assert_eq!(bodies(&h.frames(c)), ["0", "1", "2"]);
    let d = h.connect("1.2");
    h.frame(
        d,
        Frame::subscribe("s", "/queue/pd", AckMode::Client).header("activemq.prefetchSize", "-1"),
    );
    let e = h.frames(d);
    assert_eq!(e[0].command, Command::Error, "{e:?}");
}

#[test]
fn stomp_1_0_unsubscribes_by_destination_whatever_the_id() {
    let mut h = H::new();
    let p = h.connect("1.0");
    let c = h.connect("1.0");
    h.sub(c, "x", "/queue/u", AckMode::Auto);
    h.frame(
        c,
        Frame::new(Command::Unsubscribe)
            .header("destination", "/queue/u")
            .header("receipt", "r"),
    );
    let got = h.frames(c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].command, Command::Receipt);
    h.send(p, "/queue/u", "kept");
    assert!(h.frames(c).is_empty(), "unsubscribed");
    // An unknown destination is still an error.
    h.frame(
        c,
        Frame::new(Command::Unsubscribe).header("destination", "/queue/none"),
    );
    assert_eq!(
        h.error_of(c).headers.get("message"),
        Some("unknown subscription")
    );
}

#[test]
fn a_frame_that_fails_to_decode_gets_its_receipt_id() {
    let mut h = H::new();
    let c = h.connect("1.2");
    h.raw(
        c,
        b"SUBSCRIBE\nreceipt:r-1\nid:0\ndestination:/queue/a\n\nbody\0",
    );
    let err = h.error_of(c);
    assert_eq!(err.headers.get("message"), Some("malformed frame"));
    assert_eq!(err.headers.get("receipt-id"), Some("r-1"));
}

#[test]
fn stomp_1_0_frames_as_the_1_0_spec_writes_them() {
    let mut h = H::new();
    let p = h.connect("1.0");
    let c = h.connect("1.0");
    // Padded values, and a SUBSCRIBE body that "is ignored".
    h.raw(
        c,
        b"SUBSCRIBE\ndestination: /queue/foo\nack: client\nreceipt: r\n\nignored\0",
    );
    let got = h.frames(c);
    assert_eq!(got[0].command, Command::Receipt, "{got:?}");
    assert_eq!(got[0].headers.get("receipt-id"), Some("r"));
    h.raw(p, b"SEND\ndestination: /queue/foo\n\nhello\0");
    let got = h.frames(c);
    assert_eq!(bodies(&got), ["hello"]);
    assert_eq!(got[0].destination(), Some("/queue/foo"));
}

#[test]
fn a_committed_send_is_numbered_when_it_enters_its_queue() {
    // The store gives messages back in number order after a restart: the
    // order the queue had, where a transaction's SENDs came at COMMIT.
    let mut h = H::new();
    let p = h.connect("1.2");
    h.send(p, "/queue/tx-order", "1");
    h.frame(p, Frame::new(Command::Begin).header("transaction", "t"));
    h.frame(
        p,
        Frame::send("/queue/tx-order")
            .header("transaction", "t")
            .body(&b"2"[..]),
    );
    h.send(p, "/queue/tx-order", "3");
    h.frame(p, Frame::new(Command::Commit).header("transaction", "t"));
    let c = h.connect("1.2");
    h.sub(c, "s", "/queue/tx-order", AckMode::Auto);
    let got = h.frames(c);
    assert_eq!(bodies(&got), ["1", "3", "2"]);
    let n = |f: &Frame| -> u64 { f.message_id().unwrap()[2..].parse().unwrap() };
    assert!(
        n(&got[0]) < n(&got[1]) && n(&got[1]) < n(&got[2]),
        "{got:?}"
    );
}

#[test]
fn open_transactions_are_limited_per_connection() {
    let mut h = H::with(Config {
        max_transactions: 3,
        ..Config::default()
    });
    let c = h.connect("1.2");
    for i in 0..3 {
        h.frame(
            c,
            Frame::new(Command::Begin).header("transaction", format!("t{i}")),
        );
    }
    assert!(h.frames(c).is_empty());
    // Closing one makes room; a fourth at once is an error.
    h.frame(c, Frame::new(Command::Abort).header("transaction", "t0"));
    h.frame(c, Frame::new(Command::Begin).header("transaction", "t3"));
    assert!(h.frames(c).is_empty());
    h.frame(c, Frame::new(Command::Begin).header("transaction", "t4"));
    let err = h.error_of(c);
    assert_eq!(err.headers.get("message"), Some("too many transactions"));
}

#[test]
fn acks_in_any_order_find_their_message() {
    let mut h = H::new();
    let p = h.connect("1.2");
    let c = h.connect("1.2");
    h.frame(
        c,
        Frame::subscribe("s", "/queue/rev", AckMode::ClientIndividual)
            .header("prefetch-count", "0"),
    );
    for i in 0..50 {
        h.send(p, "/queue/rev", &i.to_string());
    }
    let got = h.frames(c);
    assert_eq!(got.len(), 50);
    for m in got.iter().rev().step_by(2) {
        h.frame(c, Frame::ack_for(m, Version::V1_2).unwrap());
    }
    for m in got.iter().step_by(2) {
        h.frame(c, Frame::ack_for(m, Version::V1_2).unwrap());
    }
    assert!(!h.e.is_closing(c));
    h.close(c);
    // All acked: nothing comes back.
    let d = h.connect("1.2");
    h.sub(d, "s", "/queue/rev", AckMode::Auto);
    assert!(h.frames(d).is_empty());
}

#[test]
fn a_transaction_cannot_hold_more_than_its_share_of_memory() {
    let mut h = H::with(Config {
        max_memory: 4000,
        ..Config::default()
    });
    let c = h.connect("1.2");
    h.frame(c, Frame::new(Command::Begin).header("transaction", "t"));
    let send = || {
        Frame::send("/queue/big-tx")
            .header("transaction", "t")
            .body(vec![b'x'; 100])
    };
    h.frame(c, send());
    h.frame(c, send());
    assert!(h.frames(c).is_empty(), "two fit in a quarter of 4000");
    h.frame(c, send());
    let err = h.error_of(c);
    assert_eq!(err.headers.get("message"), Some("transaction too large"));
    h.close(c);
    assert_eq!(h.e.memory(), 0, "the transaction went with its connection");
}

/// A 1.0 CONNECT is decoded before its version is known, without 1.0's
/// trimming: the padding of 1.0's own example (`login: <username>`) is
/// trimmed from the values the broker uses.
#[test]
fn padded_1_0_connect_values_are_trimmed() {
    struct GuestOnly;
    impl crate::auth::Authenticator for GuestOnly {
        fn authenticate(
            &self,
            c: &crate::auth::Credentials<'_>,
        ) -> Result<crate::auth::Principal, String> {
            if (c.login, c.passcode, c.host) == (Some("guest"), Some("pw"), Some("vh")) {
                Ok(crate::auth::Principal::default())
            } else {
                Err(format!("{:?} {:?} {:?}", c.login, c.passcode, c.host))
            }
        }
    }
    let mut h = H::with_auth(Config::default(), GuestOnly);
    let c = h.e.open(h.now);
    h.raw(
        c,
        b"CONNECT\nlogin: guest\npasscode:pw \nhost:\tvh\nheart-beat: 0,0\n\n\0",
    );
    let got = h.frames(c);
    assert_eq!(got[0].command, Command::Connected, "{got:?}");
    assert_eq!(got[0].headers.get("version"), Some("1.0"));
    // 1.2 keeps what it is sent: the padded login is refused.
    let c = h.e.open(h.now);
    h.raw(
        c,
        b"CONNECT\naccept-version:1.2\nlogin: guest\npasscode:pw\nhost:vh\n\n\0",
    );
    let got = h.frames(c);
    assert_eq!(got[0].command, Command::Error, "{got:?}");
}

/// A CONNECT whose password waits behind other checks came in time: the
/// connect deadline does not cut it. A connection that closes while it
/// waits leaves its check to be skipped.
#[test]
fn a_connect_waiting_for_its_password_check_is_not_timed_out() {
    struct Slow;
    impl crate::auth::Authenticator for Slow {
        fn authenticate(
            &self,
            _: &crate::auth::Credentials<'_>,
        ) -> Result<crate::auth::Principal, String> {
            Ok(crate::auth::Principal::default())
        }
        fn is_slow(&self) -> bool {
            true
        }
    }
    let cfg = Config {
        connect_timeout: 1000,
        ..Config::default()
    };
    let mut h = H::with_auth(cfg, Slow);
    h.e.set_auth_offload(true);
    let a = h.e.open(h.now);
    let b = h.e.open(h.now);
    for c in [a, b] {
        h.raw(
            c,
            b"CONNECT\naccept-version:1.2\nhost:x\nlogin:u\npasscode:p\n\n\0",
        );
    }
    let reqs = h.e.take_auth_requests();
    assert_eq!(reqs.len(), 2);
    h.advance(5000);
    assert!(h.frames(a).is_empty(), "no connect timeout while checking");
    h.e.close(b, h.now);
    assert!(reqs[1].is_abandoned() && !reqs[0].is_abandoned());
    let r = &reqs[0];
    h.e.auth_done(r.conn, r.serial, r.run(), h.now);
    let got = h.frames(a);
    assert_eq!(got[0].command, Command::Connected, "{got:?}");
    // Without a CONNECT the deadline still holds.
    let c = h.e.open(h.now);
    h.advance(1500);
    let got = h.frames(c);
    assert_eq!(got[0].command, Command::Error, "{got:?}");
    assert_eq!(got[0].headers.get("message"), Some("connect timeout"));
}

/// A NUL in a header would end the frame early for the subscribers it is
/// passed on to: refused with an ERROR, nothing delivered.
#[test]
fn a_nul_in_a_header_is_refused() {
    let mut h = H::new();
    let sub = h.connect("1.2");
    h.frame(
        sub,
        Frame::subscribe("0", "/queue/nul", AckMode::Auto).header("receipt", "s"),
    );
    h.frames(sub);
    for version in ["1.0", "1.2"] {
        let c = h.connect(version);
        h.raw(c, b"SEND\ndestination:/queue/nul\nreceipt:r1\nx:a\0b\n\n\0");
        let got = h.frames(c);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].command, Command::Error);
        assert_eq!(got[0].headers.get("receipt-id"), Some("r1"));
        assert!(h.frames(sub).is_empty(), "nothing delivered");
    }
}

/// Messages a closing connection held on two subscriptions of one queue go
/// back in their original order, not one subscription's after the other's.
#[test]
fn returned_messages_keep_their_order_across_subscriptions() {
    let mut h = H::new();
    let c = h.connect("1.2");
    for id in ["a", "b"] {
        h.frame(
            c,
            Frame::subscribe(id, "/queue/o", AckMode::ClientIndividual)
                .header("prefetch-count", "5"),
        );
    }
    let p = h.connect("1.2");
    for i in 0..10 {
        h.frame(p, Frame::send("/queue/o").body(format!("{i}")));
    }
    assert_eq!(h.frames(c).len(), 10, "both subscriptions hold some");
    h.e.close(c, h.now);
    h.check();
    let d = h.connect("1.2");
    h.frame(d, Frame::subscribe("0", "/queue/o", AckMode::Auto));
    let got: Vec<String> = h
        .frames(d)
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

/// At the memory limit, a worker that sends a job's result before acking
/// the job is not paused (its ACK would never be read): it may send one
/// message per message it holds or acked meanwhile. A plain producer is.
#[test]
fn a_worker_that_sends_before_it_acks_is_not_paused_at_the_limit() {
    let mut h = H::with(Config {
        max_memory: 2000,
        ..Config::default()
    });
    let p = h.connect("1.2");
    let mut sent = 0;
    while !h.e.is_held_back(p) {
        h.frame(p, Frame::send("/queue/jobs").body(vec![b'j'; 200]));
        sent += 1;
        assert!(sent < 100);
    }
    let w = h.connect("1.2");
    h.frame(
        w,
        Frame::subscribe("0", "/queue/jobs", AckMode::ClientIndividual)
            .header("prefetch-count", "1"),
    );
    for _ in 0..sent {
        let job = h.frames(w).pop().expect("a job");
        h.frame(w, Frame::send("/queue/results").body(vec![b'r'; 200]));
        assert!(!h.e.is_held_back(w), "the worker's ACK must be read");
        h.frame(w, Frame::ack_for(&job, Version::V1_2).unwrap());
    }
    // Its sends are bounded by what it held or acked: a second send for
    // one job pauses it.
    h.frame(p, Frame::send("/queue/jobs").body(vec![b'j'; 200]));
    let job = h.frames(w).pop().expect("a job");
    h.frame(w, Frame::send("/queue/results").body(vec![b'r'; 200]));
    h.frame(w, Frame::send("/queue/results").body(vec![b'r'; 200]));
    assert!(h.e.is_held_back(w));
    // Its ACK (behind those SENDs) is read once it is read again: when it
    // is given more to hold.
    h.frame(w, Frame::ack_for(&job, Version::V1_2).unwrap());
    let mut resumed = Vec::new();
    h.e.take_resumed(&mut resumed);
    assert!(!resumed.contains(&w));
    h.frame(p, Frame::send("/queue/jobs").body(vec![b'j'; 200]));
    assert_eq!(h.frames(w).len(), 1);
    h.e.take_resumed(&mut resumed);
    assert!(resumed.contains(&w) && !h.e.is_held_back(w));
}

/// A transaction's SENDs are authorized again at COMMIT: a write right
/// taken away in between refuses the whole transaction.
#[test]
fn commit_checks_the_write_right_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Toggle(Arc<AtomicBool>);
    impl crate::auth::Authenticator for Toggle {
        fn authenticate(
            &self,
            _: &crate::auth::Credentials<'_>,
        ) -> Result<crate::auth::Principal, String> {
            Ok(crate::auth::Principal::default())
        }
        fn authorize(
            &self,
            _: &crate::auth::Principal,
            right: crate::auth::Right,
            _: &str,
        ) -> bool {
            right != crate::auth::Right::Write || self.0.load(Ordering::Relaxed)
        }
    }
    let allow = Arc::new(AtomicBool::new(true));
    let mut h = H::with_auth(Config::default(), Toggle(Arc::clone(&allow)));
    let sub = h.connect("1.2");
    h.frame(sub, Frame::subscribe("0", "/queue/tx", AckMode::Auto));
    let c = h.connect("1.2");
    h.frame(c, Frame::new(Command::Begin).header("transaction", "t"));
    h.frame(
        c,
        Frame::send("/queue/tx")
            .header("transaction", "t")
            .body("x"),
    );
    allow.store(false, Ordering::Relaxed);
    h.frame(
        c,
        Frame::new(Command::Commit)
            .header("transaction", "t")
            .header("receipt", "r"),
    );
    let got = h.frames(c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].command, Command::Error);
    assert!(got[0].headers.get("message").unwrap().contains("write"));
    assert!(h.frames(sub).is_empty(), "nothing delivered");
}

/// A reload takes rights away from open sessions too: a subscriber that
/// may no longer read, or whose user is gone, gets an ERROR and is closed,
/// and what it held goes back to its queue.
#[test]
fn a_reload_revokes_rights_of_open_sessions() {
    use crate::auth::{Authenticator, Credentials, Principal, Right};
    /// Users `a` and `b`; `a` may read only when `a_reads`; `b` exists only
    /// when `b_exists`.
    struct Rules {
        a_reads: bool,
        b_exists: bool,
    }
    impl Authenticator for Rules {
        fn authenticate(&self, c: &Credentials<'_>) -> Result<Principal, String> {
            Ok(Principal {
                user: c.login.map(str::to_owned),
                groups: Vec::new(),
            })
        }
        fn authorize(&self, p: &Principal, right: Right, _: &str) -> bool {
            right != Right::Read || p.user.as_deref() != Some("a") || self.a_reads
        }
        fn refresh(&self, p: &Principal) -> Option<Principal> {
            (p.user.as_deref() != Some("b") || self.b_exists).then(|| p.clone())
        }
    }
    let rules = |a_reads, b_exists| Rules { a_reads, b_exists };
    let mut h = H::with_auth(Config::default(), rules(true, true));
    let login = |h: &mut H, user: &str| {
        let c = h.e.open(h.now);
        h.raw(
            c,
            format!("CONNECT\naccept-version:1.2\nhost:x\nlogin:{user}\n\n\0").as_bytes(),
        );
        assert_eq!(h.frames(c)[0].command, Command::Connected);
        c
    };
    let (a, b, other) = (login(&mut h, "a"), login(&mut h, "b"), login(&mut h, "c"));
    h.frame(a, Frame::subscribe("0", "/queue/r", AckMode::Client));
    h.frame(other, Frame::send("/queue/r").body("held by a"));
    assert_eq!(h.frames(a).len(), 1);
    h.e.set_authenticator(Box::new(rules(false, true)), h.now);
    let got = h.frames(a);
    assert_eq!(got.last().unwrap().command, Command::Error, "{got:?}");
    assert!(
        got.last()
            .unwrap()
            .headers
            .get("message")
            .unwrap()
            .contains("read right")
    );
    assert!(h.frames(b).is_empty(), "b keeps its session");
    h.e.set_authenticator(Box::new(rules(false, false)), h.now);
    let got = h.frames(b);
    assert_eq!(
        got[0].headers.get("message"),
        Some("access revoked"),
        "{got:?}"
    );
    // The message a held went back: c, who may read, gets it.
    h.frame(other, Frame::subscribe("0", "/queue/r", AckMode::Auto));
    let got = h.frames(other);
    assert_eq!(&got[0].body[..], b"held by a");
}

/// A queue name the store could not hold (over 65535 bytes with its
/// dead-letter prefix) is refused up front, not at the store.
#[test]
fn a_queue_name_too_long_for_the_store_is_refused() {
    let mut h = H::with(Config {
        max_header_line: 200_000,
        ..Config::default()
    });
    let c = h.connect("1.2");
    let long = format!("/queue/{}", "q".repeat(70_000));
    h.frame(
        c,
        Frame::send(long.as_str()).header("receipt", "r").body("x"),
    );
    let err = h.error_of(c);
    assert_eq!(err.headers.get("message"), Some("destination too long"));
    assert_eq!(err.headers.get("receipt-id"), Some("r"));
}

/// The same worker inside transactions (BEGIN, SEND result, ACK job,
/// COMMIT) is not paused at the limit either.
#[test]
fn a_transactional_worker_is_not_paused_at_the_limit() {
    let mut h = H::with(Config {
        max_memory: 3000,
        ..Config::default()
    });
    let p = h.connect("1.2");
    let mut sent = 0;
    while !h.e.is_held_back(p) {
        h.frame(p, Frame::send("/queue/tjobs").body(vec![b'j'; 100]));
        sent += 1;
    }
    let w = h.connect("1.2");
    h.frame(
        w,
        Frame::subscribe("0", "/queue/tjobs", AckMode::ClientIndividual)
            .header("prefetch-count", "1"),
    );
    for i in 0..sent {
        let job = h.frames(w).pop().expect("a job");
        let t = format!("t{i}");
        h.frame(
            w,
            Frame::new(Command::Begin).header("transaction", t.as_str()),
        );
        h.frame(
            w,
            Frame::send("/queue/tresults")
                .header("transaction", t.as_str())
                .body(vec![b'r'; 100]),
        );
        assert!(
            !h.e.is_held_back(w),
            "job {i}: the worker's ACK must be read"
        );
        h.frame(
            w,
            Frame::ack_for(&job, Version::V1_2)
                .unwrap()
                .header("transaction", t.as_str()),
        );
        h.frame(
            w,
            Frame::new(Command::Commit).header("transaction", t.as_str()),
        );
    }
}

#[test]
fn a_frame_that_stalls_half_way_is_an_error_after_the_frame_timeout() {
    let mut h = H::with(Config {
        frame_timeout: 1000,
        ..Config::default()
    });
    let c = h.connect("1.2");
    let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\ncontent-length:10\n\nabc"[..]);
    h.e.handle_input(c, &mut buf, h.now);
    h.advance(600);
    // Every byte that comes restarts the clock.
    buf.extend_from_slice(b"de");
    h.e.handle_input(c, &mut buf, h.now);
    h.advance(600);
    assert!(h.frames(c).is_empty());
    assert!(!h.e.is_closing(c));
    h.advance(500);
    let err = h.error_of(c);
    assert_eq!(err.headers.get("message"), Some("incomplete frame"));
    let body = String::from_utf8_lossy(&err.body).into_owned();
    assert!(body.contains("--frame-timeout"), "{body}");

    // Between frames (heart-beats and all), silence is no error.
    let idle = h.connect("1.2");
    let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\n\nx\0\r\n\r"[..]);
    h.e.handle_input(idle, &mut buf, h.now);
    h.advance(5000);
    assert!(!h.e.is_closing(idle));
    // Nor with the timeout off.
    let mut h = H::with(Config {
        frame_timeout: 0,
        ..Config::default()
    });
    let c = h.connect("1.2");
    h.raw(c, b"SEND\ndestination:/queue/a\n\nabc");
    h.advance(3_600_000);
    assert!(!h.e.is_closing(c));
}
