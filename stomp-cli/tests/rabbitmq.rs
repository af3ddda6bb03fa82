//! `stomp send` / `stomp subscribe` against a real RabbitMQ with its STOMP
//! plugin on 127.0.0.1:61713 (guest/guest, vhost `/`), installed and
//! started by `scripts/deps/rabbitmq.sh`. These tests fail, not skip, when
//! it is not running.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const STOMP: &str = env!("CARGO_BIN_EXE_stomp");
const URL: &str = "stomp://guest:guest@127.0.0.1:61713/%2F";

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

/// A queue name no earlier run used (RabbitMQ keeps its queues).
fn queue(tag: &str) -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/queue/stomp-cli-{tag}-{}-{t}", std::process::id())
}

fn stomp(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(STOMP);
    cmd.args(args)
        .args(["--url", URL, "--connect-timeout", "10"])
        .env_remove("STOMP_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn stomp");
    let mut w = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        w.write_all(s.as_bytes()).unwrap();
    }
    drop(w);
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `n` messages left on `q`, taken off it (failing if they do not all
/// come within 20 s: on a loaded machine RabbitMQ can be slow).
fn drain(q: &str, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let o = stomp(
        &[
            "subscribe",
            "--ack",
            "client-individual",
            "--count",
            &n.to_string(),
            "--timeout",
            "20",
            q,
        ],
        None,
    );
    lines(&o)
}

#[test]
fn several_destinations_in_client_mode_ack_only_what_was_printed() {
    require_rabbitmq();
    // RabbitMQ applies a client-mode ACK to every subscription of the
    // connection: one cumulative ACK for the last printed message of `b`
    // used to take `a`'s prefetched, unprinted messages with it.
    for round in 0..3 {
        let a = queue(&format!("a{round}"));
        let b = queue(&format!("b{round}"));
        lines(&stomp(&["send", "--lines", &a], Some("1\n2\n3\n4\n5\n")));
        lines(&stomp(
            &["send", "--lines", &b],
            Some("11\n12\n13\n14\n15\n"),
        ));
        let printed = lines(&stomp(&["subscribe", "--count", "3", &a, &b], None));
        assert_eq!(printed.len(), 3, "{printed:?}");
        let from_a = printed.iter().filter(|p| p.len() == 1).count();
        let mut all = printed.clone();
        all.extend(drain(&a, 5 - from_a));
        all.extend(drain(&b, 5 - (3 - from_a)));
        // Nothing more (a printed message that came back would be there).
        for q in [&a, &b] {
            let more = stomp(&["subscribe", "--count", "1", "--timeout", "1", q], None);
            assert_eq!(more.status.code(), Some(3), "{more:?}");
            all.extend(
                String::from_utf8_lossy(&more.stdout)
                    .lines()
                    .map(str::to_owned),
            );
        }
        all.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(
            all,
            ["1", "2", "3", "4", "5", "11", "12", "13", "14", "15"],
            "printed {printed:?}: what was not printed must stay on the broker"
        );
    }
}

#[test]
fn count_ends_with_status_0_and_leaves_the_rest() {
    require_rabbitmq();
    // The ACK frees RabbitMQ's prefetch window and it pushes more messages;
    // an UNSUBSCRIBE before the DISCONNECT made it answer those with
    // "Subscription not found" ERRORs, and the run failed about 1 in 4.
    for round in 0..10 {
        let q = queue(&format!("count{round}"));
        lines(&stomp(&["send", "--lines", &q], Some("1\n2\n3\n4\n5\n6\n")));
        let printed = lines(&stomp(&["subscribe", "--count", "3", &q], None));
        assert_eq!(printed, ["1", "2", "3"]);
        assert_eq!(drain(&q, 3), ["4", "5", "6"]);
    }
}
