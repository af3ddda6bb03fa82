//! The client against a real RabbitMQ with its STOMP plugin on
//! 127.0.0.1:61713 (guest/guest, vhost `/`), installed and started by
//! `scripts/deps/rabbitmq.sh`. These tests fail, not skip, when it is not
//! running.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::unique;
use stomp_client::{AckMode, Client, ConnectOptions, Error, Subscription, Version};

const URL: &str = "stomp://guest:guest@127.0.0.1:61713/%2F";
const S5: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(400);

/// Fails the test with what to run when RabbitMQ is not up.
fn require_rabbitmq() {
    let addr: SocketAddr = "127.0.0.1:61713".parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "RabbitMQ is not listening on 127.0.0.1:61713: run scripts/deps/rabbitmq.sh \
             (it installs RabbitMQ with the STOMP plugin and starts it on loopback)"
        );
    }
}

fn rabbit(version: Version) -> Client {
    require_rabbitmq();
    let opts = ConnectOptions::from_url(URL)
        .unwrap()
        .versions(&[version])
        // RabbitMQ can be slow to answer while other work loads it.
        .connect_timeout(Duration::from_secs(10))
        .receipt_timeout(S5);
    assert_eq!(opts.virtual_host(), "/");
    let c = Client::connect(opts).expect("connect to RabbitMQ as guest/guest, vhost /");
    assert_eq!(c.version(), version);
    c
}

/// A fresh queue name (RabbitMQ creates `/queue/x` on first use).
fn queue(tag: &str) -> String {
    format!("/queue/{}", unique(&format!("stomp-rs-{tag}")))
}

fn bodies(sub: &Subscription) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = sub.recv_timeout(SHORT).unwrap() {
        out.push(String::from_utf8(m.body().to_vec()).unwrap());
    }
    out
}

#[test]
fn send_and_receive_in_every_version() {
    for v in Version::ALL {
        let client = rabbit(v);
        let q = queue("versions");
        let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
        client.send(&q, format!("hello {v}")).unwrap();
        let m = sub
            .recv_timeout(S5)
            .unwrap()
            .expect("message from RabbitMQ");
        assert_eq!(m.body()[..], format!("hello {v}").into_bytes()[..]);
        assert_eq!(m.destination(), Some(q.as_str()));
        assert!(m.message_id().is_some());
        client.disconnect().unwrap();
    }
}

#[test]
fn receipts_confirm_sends() {
    let client = rabbit(Version::V1_2);
    let q = queue("receipts");
    for i in 0..50 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let got = bodies(&sub);
    assert_eq!(got, (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());
    client.disconnect().unwrap();
}

#[test]
fn client_individual_ack_and_nack_requeues() {
    let client = rabbit(Version::V1_2);
    let q = queue("ci");
    for i in 0..3 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    {
        let sub = client
            .subscribe(&q, AckMode::ClientIndividual, &[("prefetch-count", "10")])
            .unwrap();
        let msgs: Vec<_> = (0..3)
            .map(|_| sub.recv_timeout(S5).unwrap().expect("message"))
            .collect();
        // Out of order: individual acks.
        msgs[2].ack().unwrap();
        msgs[0].ack().unwrap();
        // RabbitMQ requeues a NACKed message at once: it comes back redelivered.
        msgs[1].nack().unwrap();
        let again = sub
            .recv_timeout(S5)
            .unwrap()
            .expect("redelivery after NACK");
        assert_eq!(&again.body()[..], b"m1");
        assert!(again.redelivered());
        again.ack().unwrap();
        sub.unsubscribe().unwrap();
    }
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    assert_eq!(bodies(&sub), Vec::<String>::new());
    client.disconnect().unwrap();
}

#[test]
fn client_ack_is_cumulative() {
    let client = rabbit(Version::V1_1);
    let q = queue("client");
    for i in 0..4 {
        client.send_confirmed(&q, format!("m{i}"), S5).unwrap();
    }
    {
        let sub = client.subscribe(&q, AckMode::Client, &[]).unwrap();
        let msgs: Vec<_> = (0..4)
            .map(|_| sub.recv_timeout(S5).unwrap().expect("message"))
            .collect();
        msgs[2].ack().unwrap(); // covers m0..m2
        // A receipt-confirmed frame after the ACK: the ACK was processed.
        client.send_confirmed(&queue("fence"), "x", S5).unwrap();
    }
    // RabbitMQ requeues unacked messages when the connection closes (not
    // at UNSUBSCRIBE): only m3 comes back, to another connection.
    client.disconnect().unwrap();
    let other = rabbit(Version::V1_1);
    let sub = other.subscribe(&q, AckMode::Auto, &[]).unwrap();
    assert_eq!(bodies(&sub), ["m3"]);
    other.disconnect().unwrap();
}

#[test]
fn transactions_commit_and_abort() {
    let client = rabbit(Version::V1_2);
    let q = queue("tx");
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let tx = client.begin().unwrap();
    tx.send(&q, "t1").unwrap();
    tx.send(&q, "t2").unwrap();
    assert!(
        sub.recv_timeout(SHORT).unwrap().is_none(),
        "visible before COMMIT"
    );
    tx.commit().unwrap();
    assert_eq!(bodies(&sub), ["t1", "t2"]);

    let tx = client.begin().unwrap();
    tx.send(&q, "gone").unwrap();
    tx.abort().unwrap();
    {
        let tx = client.begin().unwrap();
        tx.send(&q, "dropped").unwrap();
    }
    client.send_confirmed(&q, "after", S5).unwrap();
    assert_eq!(bodies(&sub), ["after"]);
    client.disconnect().unwrap();
}

#[test]
fn headers_that_need_escaping_survive() {
    for v in [Version::V1_1, Version::V1_2] {
        let client = rabbit(v);
        let q = queue("escape");
        let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
        let tricky = "colon:newline\nbackslash\\end";
        client
            .send_with_confirmed(
                &q,
                &[
                    ("x-tricky", tricky),
                    ("content-type", "text/plain;charset=utf-8"),
                ],
                "body",
                S5,
            )
            .unwrap();
        let m = sub.recv_timeout(S5).unwrap().expect("message");
        assert_eq!(m.header("x-tricky"), Some(tricky), "STOMP {v}");
        assert_eq!(m.header("content-type"), Some("text/plain;charset=utf-8"));
        client.disconnect().unwrap();
    }
}

#[test]
fn one_mebibyte_binary_body() {
    let client = rabbit(Version::V1_2);
    let q = queue("big");
    let sub = client.subscribe(&q, AckMode::Auto, &[]).unwrap();
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    assert!(body.contains(&0), "the body must hold NUL bytes");
    client.send_confirmed(&q, body.clone(), S5).unwrap();
    let m = sub.recv_timeout(S5).unwrap().expect("1 MiB message");
    assert_eq!(m.body().len(), body.len());
    assert!(m.body()[..] == body[..], "body changed in transit");
    client.disconnect().unwrap();
}

#[test]
fn topic_reaches_every_subscriber() {
    let client = rabbit(Version::V1_2);
    let t = format!("/topic/{}", unique("stomp-rs-fan"));
    let subs: Vec<_> = (0..3)
        .map(|_| client.subscribe(&t, AckMode::Auto, &[]).unwrap())
        .collect();
    for i in 0..10 {
        client.send(&t, format!("{i}")).unwrap();
    }
    for sub in &subs {
        let got: HashSet<_> = bodies(sub).into_iter().collect();
        assert_eq!(got.len(), 10);
    }
    drop(subs);
    client.disconnect().unwrap();
}

#[test]
fn rabbitmq_error_reaches_the_call() {
    let client = rabbit(Version::V1_2);
    // An unknown destination kind is refused with an ERROR naming the receipt.
    match client.send_confirmed("/nonsense/x", "x", S5) {
        Err(Error::Broker { message, .. }) => assert!(!message.is_empty()),
        other => panic!("expected an ERROR from RabbitMQ, got {other:?}"),
    }
}

#[test]
fn heart_beats_with_rabbitmq_keep_an_idle_connection() {
    require_rabbitmq();
    let client = Client::connect(
        ConnectOptions::from_url(URL)
            .unwrap()
            .heart_beat(500, 500)
            .connect_timeout(S5),
    )
    .unwrap();
    let hb = client.session_info().unwrap().heart_beat;
    // RabbitMQ rounds intervals up to whole seconds.
    assert!(
        hb.send.is_some_and(|d| d >= Duration::from_millis(500)),
        "{hb:?}"
    );
    assert!(
        hb.receive.is_some_and(|d| d >= Duration::from_millis(500)),
        "{hb:?}"
    );
    let events = client.events();
    std::thread::sleep(Duration::from_millis(2500));
    let lost = common::wait_event(&events, Duration::from_millis(10), |e| {
        matches!(e, stomp_client::ConnectionEvent::Lost(_))
    });
    assert!(lost.is_none(), "{lost:?}");
    client.send_confirmed(&queue("hb"), "alive", S5).unwrap();
    client.disconnect().unwrap();
}

#[test]
fn heart_beats_with_rabbitmq_in_1_0() {
    // RabbitMQ answers a 1.0 CONNECT's heart-beat header and enforces it.
    require_rabbitmq();
    let client = Client::connect(
        ConnectOptions::from_url(URL)
            .unwrap()
            .versions(&[Version::V1_0])
            .heart_beat(1000, 1000)
            .connect_timeout(S5),
    )
    .unwrap();
    assert_eq!(client.version(), Version::V1_0);
    let hb = client.session_info().unwrap().heart_beat;
    assert!(hb.send.is_some() && hb.receive.is_some(), "{hb:?}");
    let events = client.events();
    std::thread::sleep(Duration::from_millis(3500));
    let lost = common::wait_event(&events, Duration::from_millis(10), |e| {
        matches!(e, stomp_client::ConnectionEvent::Lost(_))
    });
    assert!(lost.is_none(), "{lost:?}");
    client.send_confirmed(&queue("hb10"), "alive", S5).unwrap();
    client.disconnect().unwrap();
}

#[test]
fn bad_login_is_rabbitmqs_error_not_a_version_mismatch() {
    // RabbitMQ's refusal carries `version:1.0,1.1,1.2`.
    require_rabbitmq();
    let r = Client::connect(
        ConnectOptions::from_url("stomp://guest:wrong@127.0.0.1:61713/%2F")
            .unwrap()
            .connect_timeout(S5),
    );
    match r {
        Err(Error::Broker { message, body, .. }) => {
            assert!(!message.is_empty());
            assert!(body.contains("guest"), "{body}");
        }
        other => panic!("expected RabbitMQ's ERROR, got {other:?}"),
    }
}
