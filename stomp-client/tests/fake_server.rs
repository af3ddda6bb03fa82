//! The client against a scripted fake server (a std TcpListener thread
//! speaking raw STOMP): the cases a real broker will not produce on demand.

mod common;

use std::time::{Duration, Instant};

use common::{FakeServer, wait_event};
use stomp_client::stomp_frame::Command;
use stomp_client::{
    AckMode, Client, ConnectOptions, ConnectionEvent, ConnectionState, Error, Frame, OutagePolicy,
    ReconnectPolicy, Version,
};

const S5: Duration = Duration::from_secs(5);

fn opts(server: &FakeServer) -> ConnectOptions {
    ConnectOptions::new(server.address())
        .heart_beat(0, 0)
        .connect_timeout(Duration::from_secs(3))
        .receipt_timeout(Duration::from_secs(3))
        .disconnect_timeout(Duration::from_millis(500))
}

#[test]
fn silent_broker_is_detected_within_interval_plus_grace() {
    let server = FakeServer::start(1, |_, mut peer| {
        // The broker promises a beat every 200 ms, sends one, then falls
        // silent (before its first beat the client allows one interval more).
        peer.handshake(Version::V1_2, "200,0");
        peer.write_raw(b"\n");
        std::thread::sleep(Duration::from_secs(3));
    });
    let client = Client::connect(opts(&server).heart_beat(0, 200)).unwrap();
    let events = client.events();
    let t0 = Instant::now();
    let ev = wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_)))
        .expect("the silent broker was not detected");
    let took = t0.elapsed();
    // 200 ms x grace 1.5 = 300 ms; allow scheduling slack, but not seconds.
    assert!(took >= Duration::from_millis(250), "too early: {took:?}");
    assert!(took < Duration::from_millis(2000), "too late: {took:?}");
    let ConnectionEvent::Lost(Error::ConnectionLost { reason }) = ev else {
        panic!("{ev:?}")
    };
    assert!(reason.contains("heart-beat"), "{reason}");
    assert!(matches!(
        client.send("/queue/a", "x"),
        Err(Error::ConnectionLost { .. })
    ));
    assert_eq!(client.state(), ConnectionState::Closed);
    drop(client);
    server.join();
}

/// Regression: ActiveMQ 5.17 sends its first heart-beat two intervals after
/// CONNECTED, then one per interval; the client must not drop it.
#[test]
fn late_first_heart_beat_like_activemq_is_tolerated() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "200,200");
        std::thread::sleep(Duration::from_millis(400));
        for _ in 0..8 {
            peer.write_raw(b"\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let client = Client::connect(opts(&server).heart_beat(200, 200)).unwrap();
    let events = client.events();
    let lost = wait_event(&events, Duration::from_millis(1800), |e| {
        matches!(e, ConnectionEvent::Lost(_))
    });
    assert!(lost.is_none(), "{lost:?}");
    assert!(client.is_connected());
    drop(client);
    server.join();
}

/// In 1.0 too: RabbitMQ and ActiveMQ answer a 1.0 CONNECT's `heart-beat`
/// and close a connection that stays silent.
#[test]
fn client_sends_heart_beats_at_the_negotiated_interval() {
    for version in [Version::V1_2, Version::V1_0] {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let server = FakeServer::start(1, move |_, mut peer| {
            let connect = peer.handshake(version, "0,100");
            tx.send((connect, peer.count_beats(Duration::from_millis(1000))))
                .unwrap();
        });
        let client =
            Client::connect(opts(&server).versions(&[version]).heart_beat(100, 0)).unwrap();
        assert_eq!(client.version(), version);
        let info = client.session_info().unwrap();
        assert_eq!(info.heart_beat.send, Some(Duration::from_millis(100)));
        let (connect, beats) = rx.recv_timeout(S5).unwrap();
        assert_eq!(connect.headers.get("heart-beat"), Some("100,0"));
        // One every ~90 ms for a second: about 11; the broker needs >= 1 per 100 ms.
        assert!((6..=16).contains(&beats), "{version}: {beats} beats in 1 s");
        drop(client);
        server.join();
    }
}

#[test]
fn disconnect_is_bounded_when_the_receipt_never_comes() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let f = peer.read_frame(S5).expect("DISCONNECT");
        assert_eq!(f.command, Command::Disconnect);
        assert!(f.receipt_request().is_some());
        // Never answer; keep the socket open.
        std::thread::sleep(Duration::from_secs(2));
    });
    let client = Client::connect(opts(&server)).unwrap();
    let t0 = Instant::now();
    let r = client.disconnect();
    let took = t0.elapsed();
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "disconnect without receipt: {r:?}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    server.join();
}

#[test]
fn disconnect_within_waits_no_longer_than_asked() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let f = peer.read_frame(S5).expect("DISCONNECT");
        assert_eq!(f.command, Command::Disconnect);
        std::thread::sleep(Duration::from_secs(3));
    });
    let client =
        Client::connect(opts(&server).disconnect_timeout(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let r = client.disconnect_within(Duration::ZERO);
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    // The DISCONNECT went out (the server read it); the receipt was not
    // waited for: 250 ms of slack for the I/O thread, not 10 s.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    server.join();
}

#[test]
fn drop_is_bounded_when_the_broker_never_answers() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        std::thread::sleep(Duration::from_secs(3));
    });
    let client = Client::connect(opts(&server)).unwrap();
    let t0 = Instant::now();
    drop(client);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    server.join();
}

#[test]
fn error_reaches_the_call_whose_receipt_it_names() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let a = peer.read_frame(S5).expect("SEND a");
        let b = peer.read_frame(S5).expect("SEND b");
        let (ok, bad) = if a.destination() == Some("/queue/ok") {
            (a, b)
        } else {
            (b, a)
        };
        peer.write(&Frame::receipt(ok.receipt_request().unwrap().to_owned()));
        peer.write(
            &Frame::error("access refused")
                .header("receipt-id", bad.receipt_request().unwrap().to_owned())
                .body("no writes to /queue/bad"),
        );
        std::thread::sleep(Duration::from_millis(500));
    });
    let client = Client::connect(opts(&server)).unwrap();
    std::thread::scope(|s| {
        let ok = s.spawn(|| client.send_confirmed("/queue/ok", "1", S5));
        std::thread::sleep(Duration::from_millis(100));
        let bad = s.spawn(|| client.send_confirmed("/queue/bad", "2", S5));
        assert!(ok.join().unwrap().is_ok());
        match bad.join().unwrap() {
            Err(Error::Broker {
                message,
                body,
                receipt_id,
            }) => {
                assert_eq!(message, "access refused");
                assert_eq!(body, "no writes to /queue/bad");
                assert!(receipt_id.is_some());
            }
            other => panic!("{other:?}"),
        }
    });
    drop(client);
    server.join();
}

#[test]
fn unmatched_error_is_returned_by_the_next_call() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        peer.write(&Frame::error("boom").body("details"));
        std::thread::sleep(Duration::from_millis(500));
    });
    let client = Client::connect(opts(&server)).unwrap();
    let events = client.events();
    let ev = wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Error(_)));
    assert!(ev.is_some());
    match client.send("/queue/a", "x") {
        Err(Error::Broker { message, .. }) => assert_eq!(message, "boom"),
        other => panic!("{other:?}"),
    }
    // Reported once; then the call sees the closed session.
    assert!(matches!(
        client.send("/queue/a", "x"),
        Err(Error::ConnectionLost { .. })
    ));
    drop(client);
    server.join();
}

#[test]
fn connect_times_out_when_connected_never_comes() {
    let server = FakeServer::start(1, |_, mut peer| {
        let _ = peer.read_frame(S5);
        std::thread::sleep(Duration::from_secs(2));
    });
    let t0 = Instant::now();
    let r = Client::connect(opts(&server).connect_timeout(Duration::from_millis(300)));
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                what: "CONNECTED",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(t0.elapsed() < Duration::from_millis(1500));
    server.join();
}

#[test]
fn refused_connection_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = Client::connect(ConnectOptions::new(format!("127.0.0.1:{port}")));
    assert!(matches!(r, Err(Error::Connect { .. })), "{r:?}");
}

#[test]
fn bad_login_is_a_broker_error() {
    let server = FakeServer::start(1, |_, mut peer| {
        let connect = peer.read_frame(S5).unwrap();
        assert_eq!(connect.login(), Some("bob"));
        assert_eq!(connect.passcode(), Some("p:w\\d"));
        peer.write(&Frame::error("bad credentials"));
    });
    let r = Client::connect(opts(&server).login("bob", "p:w\\d"));
    assert!(
        matches!(&r, Err(Error::Broker { message, .. }) if message == "bad credentials"),
        "{r:?}"
    );
    server.join();
}

/// ACK and NACK frames per version (the spec's pitfall #11).
#[test]
fn ack_frames_follow_the_negotiated_version() {
    for version in Version::ALL {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let server = FakeServer::start(1, move |_, mut peer| {
            peer.handshake(version, "0,0");
            let sub = peer.read_frame(S5).expect("SUBSCRIBE");
            let id = sub.id().unwrap().to_owned();
            peer.write(&Frame::receipt(sub.receipt_request().unwrap().to_owned()));
            peer.write(
                &Frame::message("/queue/a", "m-1", id.clone())
                    .header("ack", "ack-1")
                    .body("x"),
            );
            for _ in 0..2 {
                if let Some(f) = peer.read_frame(S5) {
                    tx.send(f).unwrap();
                }
            }
        });
        let client = Client::connect(opts(&server).versions(&[version])).unwrap();
        assert_eq!(client.version(), version);
        let sub = client
            .subscribe("/queue/a", AckMode::ClientIndividual, &[])
            .unwrap();
        let msg = sub.recv_timeout(S5).unwrap().expect("MESSAGE");
        msg.ack().unwrap();
        let ack = rx.recv_timeout(S5).unwrap();
        assert_eq!(ack.command, Command::Ack);
        match version {
            Version::V1_2 => {
                assert_eq!(ack.id(), Some("ack-1"));
                assert_eq!(ack.message_id(), None);
            }
            Version::V1_1 => {
                assert_eq!(ack.message_id(), Some("m-1"));
                assert_eq!(ack.subscription(), Some(sub.id()));
            }
            Version::V1_0 => assert_eq!(ack.message_id(), Some("m-1")),
        }
        if version == Version::V1_0 {
            assert!(msg.nack().is_err() || rx.recv_timeout(S5).is_ok());
        } else {
            msg.nack().unwrap();
            let nack = rx.recv_timeout(S5).unwrap();
            assert_eq!(nack.command, Command::Nack);
        }
        drop(sub);
        drop(client);
        server.join();
    }
}

#[test]
fn reconnect_replays_subscriptions_with_the_same_ids() {
    let (tx, rx) = crossbeam_channel::bounded(4);
    let server = FakeServer::start(2, move |n, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let sub = peer.read_frame(S5).expect("SUBSCRIBE");
        assert_eq!(sub.command, Command::Subscribe);
        tx.send(sub.clone()).unwrap();
        if n == 0 {
            peer.write(&Frame::receipt(sub.receipt_request().unwrap().to_owned()));
            // Drop the connection.
        } else {
            assert!(sub.receipt_request().is_none(), "replay needs no receipt");
            peer.write(
                &Frame::message("/queue/a", "m-9", sub.id().unwrap().to_owned()).body("after"),
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        ..ReconnectPolicy::default()
    };
    let client = Client::connect(opts(&server).reconnect(policy)).unwrap();
    let events = client.events();
    let sub = client
        .subscribe("/queue/a", AckMode::Auto, &[("x-custom", "1")])
        .unwrap();
    let first = rx.recv_timeout(S5).unwrap();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_))).is_some());
    let ev = wait_event(&events, S5, |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    });
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
    let replay = rx.recv_timeout(S5).unwrap();
    assert_eq!(replay.id(), first.id());
    assert_eq!(replay.headers.get("x-custom"), Some("1"));
    let msg = sub
        .recv_timeout(S5)
        .unwrap()
        .expect("message after reconnect");
    assert_eq!(&msg.body()[..], b"after");
    drop(sub);
    drop(client);
    server.join();
}

#[test]
fn calls_fail_fast_or_wait_while_reconnecting() {
    // One connection, dropped at once; later attempts are never answered.
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
    });
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        ..ReconnectPolicy::default()
    };
    let client = Client::connect(
        opts(&server)
            .connect_timeout(Duration::from_millis(200))
            .reconnect(policy),
    )
    .unwrap();
    let events = client.events();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_))).is_some());
    assert_eq!(client.state(), ConnectionState::Reconnecting);
    let t0 = Instant::now();
    assert!(matches!(
        client.send("/queue/a", "x"),
        Err(Error::NotConnected)
    ));
    // Waiting would take the 200 ms connect timeout at least.
    assert!(
        t0.elapsed() < Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );
    drop(client);
    server.join();

    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
    });
    let client = Client::connect(
        opts(&server)
            .connect_timeout(Duration::from_millis(200))
            .reconnect(policy)
            .on_outage(OutagePolicy::Wait(Duration::from_millis(300))),
    )
    .unwrap();
    let events = client.events();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Lost(_))).is_some());
    let t0 = Instant::now();
    assert!(matches!(
        client.send("/queue/a", "x"),
        Err(Error::NotConnected)
    ));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    drop(client);
    server.join();
}

#[test]
fn unread_events_keep_the_newest_256() {
    // 150 sessions, each dropped at once: about 300 events nobody reads.
    let server = FakeServer::start(150, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
    });
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_attempts: Some(3),
        ..ReconnectPolicy::default()
    };
    let client = Client::connect(opts(&server).reconnect(policy)).unwrap();
    let events = client.events();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while client.state() != stomp_client::ConnectionState::Closed {
        assert!(
            std::time::Instant::now() < until,
            "still {:?}",
            client.state()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
    let got: Vec<ConnectionEvent> = events.try_iter().collect();
    assert_eq!(got.len(), 256);
    assert!(
        !matches!(got[0], ConnectionEvent::Connected(_)),
        "the oldest went"
    );
    assert!(
        matches!(got.last(), Some(ConnectionEvent::Closed(_))),
        "the newest stayed: {:?}",
        got.last()
    );
    server.join();
}

#[test]
fn disconnect_is_bounded_by_its_timeout_even_with_a_full_queue() {
    // The broker stops reading: the socket and the outgoing queue fill up.
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        std::thread::sleep(Duration::from_secs(12));
    });
    let client = Client::connect(
        opts(&server)
            .send_timeout(Duration::from_secs(5))
            .disconnect_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let body = vec![b'x'; 1 << 20];
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while client.send("/queue/a", body.clone()).is_ok() {
        assert!(std::time::Instant::now() < until, "the queue never filled");
    }
    let started = std::time::Instant::now();
    let _ = client.disconnect();
    let took = started.elapsed();
    // 300 ms for room, then at most 1 s to stop the I/O thread; waiting
    // for room as long as a send may (5 s) was the bug.
    assert!(took < Duration::from_secs(3), "disconnect took {took:?}");
    server.join();
}

#[test]
fn a_failed_subscribe_is_taken_back() {
    // No RECEIPT for the SUBSCRIBE: the call fails, and the client must not
    // keep a subscription that takes messages nobody reads.
    let (tx, rx) = crossbeam_channel::bounded(4);
    let server = FakeServer::start(1, move |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let sub = peer.read_frame(S5).expect("SUBSCRIBE");
        tx.send(sub).unwrap();
        let next = peer.read_frame(S5).expect("a frame after the SUBSCRIBE");
        tx.send(next).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    let client =
        Client::connect(opts(&server).receipt_timeout(Duration::from_millis(300))).unwrap();
    let e = client
        .subscribe("/queue/a", AckMode::Auto, &[])
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    let sub = rx.recv_timeout(S5).unwrap();
    assert_eq!(sub.command, Command::Subscribe);
    let next = rx.recv_timeout(S5).unwrap();
    assert_eq!(next.command, Command::Unsubscribe, "{next:?}");
    assert_eq!(next.id(), sub.id());
    drop(client);
    server.join();
}

#[test]
fn client_mode_subscriptions_ask_for_a_window_that_fits_their_buffer() {
    // Without a window, a broker (RabbitMQ) may send more unacknowledged
    // messages than the subscription buffers; the client would then stop
    // reading, and RECEIPTs would wait behind them.
    let (tx, rx) = crossbeam_channel::bounded(8);
    let server = FakeServer::start(1, move |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        for _ in 0..3 {
            let sub = peer.read_frame(S5).expect("SUBSCRIBE");
            let receipt = sub.receipt_request().unwrap().to_owned();
            peer.write(&Frame::new(Command::Receipt).header("receipt-id", receipt));
            tx.send(sub).unwrap();
        }
        let _ = peer.read_frame(S5);
    });
    let client = Client::connect(opts(&server).subscription_capacity(100)).unwrap();
    let _a = client.subscribe("/queue/a", AckMode::Client, &[]).unwrap();
    let _b = client
        .subscribe(
            "/queue/b",
            AckMode::ClientIndividual,
            &[("prefetch-count", "7")],
        )
        .unwrap();
    let _c = client.subscribe("/queue/c", AckMode::Auto, &[]).unwrap();
    let a = rx.recv_timeout(S5).unwrap();
    assert_eq!(a.headers.get("activemq.prefetchSize"), Some("100"));
    assert_eq!(a.headers.get("prefetch-count"), Some("100"));
    let b = rx.recv_timeout(S5).unwrap();
    assert_eq!(
        b.headers.get("prefetch-count"),
        Some("7"),
        "the caller's own"
    );
    assert_eq!(b.headers.get("activemq.prefetchSize"), None);
    let c = rx.recv_timeout(S5).unwrap();
    assert_eq!(c.headers.get("prefetch-count"), None, "auto has no window");
    drop(client);
    server.join();
}

/// RabbitMQ refuses a login with an ERROR that lists its versions: that is
/// the broker's error (with its message and body), not a version mismatch.
#[test]
fn refused_login_listing_versions_is_a_broker_error() {
    let server = FakeServer::start(1, |_, mut peer| {
        let _ = peer.read_frame(S5).expect("CONNECT");
        peer.write(
            &Frame::error("Bad CONNECT")
                .header("version", "1.0,1.1,1.2")
                .body("Access refused for user 'guest'"),
        );
    });
    let r = Client::connect(opts(&server).login("guest", "wrong"));
    match r {
        Err(Error::Broker { message, body, .. }) => {
            assert_eq!(message, "Bad CONNECT");
            assert_eq!(body, "Access refused for user 'guest'");
        }
        other => panic!("{other:?}"),
    }
    server.join();
}

/// A MESSAGE the client cannot decode (here a header that is not UTF-8)
/// would be redelivered on every new session: with reconnect on, the client
/// ends with the error instead of reconnecting in a loop.
#[test]
fn undecodable_message_ends_a_reconnecting_client() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let sub = peer.read_frame(S5).expect("SUBSCRIBE");
        peer.write(&Frame::receipt(sub.receipt_request().unwrap().to_owned()));
        let mut raw = format!(
            "MESSAGE\ndestination:/queue/a\nmessage-id:m-1\nack:a-1\nsubscription:{}\nx-bad:",
            sub.id().unwrap()
        )
        .into_bytes();
        raw.extend_from_slice(b"\xff\xfe\n\nbody\0");
        peer.write_raw(&raw);
        std::thread::sleep(Duration::from_millis(300));
    });
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        ..ReconnectPolicy::default()
    };
    let client = Client::connect(opts(&server).reconnect(policy)).unwrap();
    let events = client.events();
    let sub = client
        .subscribe("/queue/a", AckMode::ClientIndividual, &[])
        .unwrap();
    let ev = wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Closed(_)));
    match ev {
        Some(ConnectionEvent::Closed(Some(Error::Protocol(reason)))) => {
            assert!(reason.contains("UTF-8"), "{reason}")
        }
        other => panic!("the client did not end: {other:?}"),
    }
    assert_eq!(client.state(), ConnectionState::Closed);
    assert!(matches!(
        client.send("/queue/a", "x"),
        Err(Error::ConnectionLost { .. })
    ));
    drop(sub);
    drop(client);
    server.join();
}

/// With reconnect off, calls racing the ERROR that ends the session get
/// that error (or the lost connection), never "not connected (reconnecting)".
#[test]
fn calls_racing_the_end_of_the_session_get_its_error() {
    for round in 0..10 {
        let server = FakeServer::start(1, move |_, mut peer| {
            peer.handshake(Version::V1_2, "0,0");
            for _ in 0..(50 + 13 * round) {
                let Some(f) = peer.read_frame(S5) else { return };
                peer.write(&Frame::receipt(f.receipt_request().unwrap().to_owned()));
            }
            peer.write(&Frame::error("boom").body("the end"));
            std::thread::sleep(Duration::from_millis(200));
        });
        let client = Client::connect(opts(&server)).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    loop {
                        match client.send_confirmed("/queue/a", "x", S5) {
                            Ok(()) => {}
                            Err(Error::Broker { .. } | Error::ConnectionLost { .. }) => break,
                            Err(e) => panic!("round {round}: {e:?}"),
                        }
                    }
                });
            }
        });
        drop(client);
        server.join();
    }
}

/// `disconnect` after the session died says why it died.
#[test]
fn disconnect_after_the_session_died_returns_why() {
    let server = FakeServer::start(1, |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
    });
    let client = Client::connect(opts(&server)).unwrap();
    let events = client.events();
    assert!(wait_event(&events, S5, |e| matches!(e, ConnectionEvent::Closed(_))).is_some());
    let r = client.disconnect();
    assert!(matches!(r, Err(Error::ConnectionLost { .. })), "{r:?}");
    server.join();
}

/// A body the client would refuse to receive is refused on send, before
/// anything goes out: what one client sends, another with the same options
/// can receive.
#[test]
fn a_body_over_the_receive_limit_is_refused_on_send() {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let server = FakeServer::start(1, move |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        tx.send(peer.read_frame(S5)).unwrap();
    });
    let client = Client::connect(opts(&server)).unwrap();
    let max = 16 << 20;
    let big = vec![b'x'; max + 1];
    for r in [
        client.send("/queue/a", big.clone()),
        client.send_confirmed("/queue/a", big.clone(), S5),
        client
            .begin()
            .and_then(|tx| tx.send("/queue/a", big.clone())),
    ] {
        assert!(
            matches!(r, Err(Error::BodyTooLarge { size, max: m }) if size == max + 1 && m == max),
            "{r:?}"
        );
    }
    drop(client);
    // Only the BEGIN and the transaction's ABORT went out.
    let first = rx.recv_timeout(S5).unwrap().expect("a frame");
    assert_eq!(first.command, Command::Begin);
    server.join();
}

/// Sends `body` fire-and-forget to a broker that has stopped reading, until
/// a send is held back; returns the bytes of body accepted before that, and
/// the error. Gives up (`None`) past `give_up` bytes.
fn fill_until_held_back(
    client: &Client,
    body: &stomp_client::Bytes,
    give_up: usize,
) -> (usize, Option<Error>) {
    let mut accepted = 0;
    while accepted < give_up {
        match client.send("/queue/a", body.clone()) {
            Ok(()) => accepted += body.len(),
            Err(e) => return (accepted, Some(e)),
        }
    }
    (accepted, None)
}

/// A fake broker that answers CONNECT and then reads nothing, until told.
fn non_reading_server() -> (FakeServer, crossbeam_channel::Sender<()>) {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let server = FakeServer::start(1, move |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        let _ = stop_rx.recv_timeout(Duration::from_secs(20));
    });
    (server, stop_tx)
}

/// Regression (audit 6, finding 1): the outgoing queue was bounded at 4096
/// frames whatever their size, so with a broker that stopped reading,
/// 4096 sends of 1 MiB returned `Ok` and the client held 4 GiB. It is
/// bounded in bytes (64 MiB by default): past the socket's buffers and
/// that, a send waits `send_timeout` and fails.
#[test]
fn a_broker_that_stops_reading_holds_back_sends_by_bytes() {
    let (server, stop) = non_reading_server();
    let client = Client::connect(opts(&server).send_timeout(Duration::from_millis(300))).unwrap();
    // One shared body: the test itself holds 1 MiB, whatever the client does.
    let body = stomp_client::Bytes::from(vec![b'x'; 1 << 20]);
    let (accepted, err) = fill_until_held_back(&client, &body, 256 << 20);
    let Some(err) = err else {
        panic!("{} MiB were queued without back-pressure", accepted >> 20);
    };
    assert!(
        matches!(err, Error::Timeout { what: "room in the outgoing queue", after } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    // 64 MiB of queue, 1 MiB being written and the socket's buffers.
    assert!(
        accepted >= 60 << 20,
        "held back early: {} MiB",
        accepted >> 20
    );
    assert!(
        accepted < 128 << 20,
        "held back late: {} MiB",
        accepted >> 20
    );
    let _ = stop.send(());
    drop(client);
    server.join();
}

/// The bound is a knob; a frame larger than all of it still goes, alone,
/// into an empty queue (no deadlock), and a waiting send gets room as soon
/// as the broker reads again.
#[test]
fn the_send_queue_bound_is_a_knob_and_a_larger_frame_still_goes() {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let server = FakeServer::start(1, move |_, mut peer| {
        peer.handshake(Version::V1_2, "0,0");
        // Read nothing until told, then take every frame until DISCONNECT.
        let _ = go_rx.recv_timeout(Duration::from_secs(20));
        let mut sizes = Vec::new();
        while let Some(f) = peer.read_frame(S5) {
            if f.command == Command::Disconnect {
                if let Some(r) = f.receipt_request() {
                    peer.write(&Frame::receipt(r.to_owned()));
                }
                break;
            }
            sizes.push(f.body.len());
        }
        tx.send(sizes).unwrap();
    });
    let client = Client::connect(
        opts(&server)
            .max_send_queue_bytes(64 << 10)
            .send_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    // 256 KiB each, four times the bound: each goes alone, when the queue is empty.
    let body = stomp_client::Bytes::from(vec![b'y'; 256 << 10]);
    let (accepted, err) = fill_until_held_back(&client, &body, 256 << 20);
    assert!(
        matches!(err, Some(Error::Timeout { .. })),
        "{} MiB queued: {err:?}",
        accepted >> 20
    );
    // 64 KiB of queue (one frame over it), 1 MiB being written, the socket's buffers.
    assert!(
        accepted < 24 << 20,
        "held back late: {} MiB",
        accepted >> 20
    );
    // The broker reads again: a send waiting for room gets it.
    let waited = std::thread::scope(|s| {
        let waiting = s.spawn(|| client.send("/queue/a", body.clone()));
        std::thread::sleep(Duration::from_millis(100));
        go_tx.send(()).unwrap();
        waiting.join().unwrap()
    });
    waited.unwrap();
    client.disconnect().unwrap();
    let sizes = rx.recv_timeout(S5).unwrap();
    assert_eq!(sizes.len(), accepted / body.len() + 1);
    assert!(sizes.iter().all(|n| *n == body.len()));
    server.join();
}
