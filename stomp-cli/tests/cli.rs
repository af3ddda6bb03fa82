//! Process-level tests of the `stomp` binary against a real broker process
//! (`stomp broker --listen 127.0.0.1:0 --memory`). Every process is bounded
//! in time and killed when its test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const STOMP: &str = env!("CARGO_BIN_EXE_stomp");

mod terminal;
use terminal::Terminal;

/// A broker process on an ephemeral port, killed on drop.
struct Broker {
    child: Child,
    url: String,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker with extra flags.
    fn start_with(extra: &[&str]) -> Broker {
        let mut child = Command::new(STOMP)
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--memory",
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stomp broker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("broker printed `listening on ADDR`");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Broker {
            child,
            url: format!("stomp://{addr}"),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Waits for a child at most `limit`, killing it after that (and failing).
fn finish(mut child: Child, limit: Duration) -> Output {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

fn spawn(args: &[&str], stdin: Option<Vec<u8>>) -> Child {
    let mut child = Command::new(STOMP)
        .args(args)
        .env_remove("STOMP_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stomp");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    child
}

/// Spawns `stomp args` with a stdin the test writes to as it likes.
fn spawn_fed(args: &[&str]) -> (Child, std::process::ChildStdin) {
    let mut child = Command::new(STOMP)
        .args(args)
        .env_remove("STOMP_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stomp");
    let input = child.stdin.take().unwrap();
    (child, input)
}

fn run(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    finish(spawn(args, stdin), Duration::from_secs(20))
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status,
        o.stderr
    );
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn send_and_subscribe_json_with_headers_and_binary_bodies() {
    let b = Broker::start();
    let u = b.url.as_str();
    ok(&run(
        &[
            "send",
            "--url",
            u,
            "-H",
            "k:v:w",
            "--receipt",
            "/queue/j",
            "héllo",
        ],
        None,
    ));
    let dir = std::env::temp_dir().join(format!("stomp-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bin");
    std::fs::write(&file, [0xff, 0x00, 0x01]).unwrap();
    ok(&run(
        &["send", "--url", u, "-f", file.to_str().unwrap(), "/queue/j"],
        None,
    ));
    ok(&run(
        &["send", "--url", u, "--persistent", "/queue/j"],
        Some(b"from stdin".to_vec()),
    ));
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--json",
            "--count",
            "3",
            "--timeout",
            "10",
            "/queue/j",
        ],
        None,
    );
    ok(&o);
    let msgs = json_lines(&o);
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["body"], "héllo");
    assert_eq!(msgs[0]["headers"]["k"], "v:w");
    assert_eq!(msgs[0]["destination"], "/queue/j");
    assert_eq!(msgs[1]["body_base64"], "/wAB");
    assert!(msgs[1].get("body").is_none());
    assert_eq!(msgs[2]["body"], "from stdin");
    assert_eq!(msgs[2]["headers"]["persistent"], "true");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_and_header_output() {
    let b = Broker::start();
    let u = b.url.as_str();
    ok(&run(
        &["send", "--url", u, "-H", "color:red", "/queue/p", "one"],
        None,
    ));
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--headers",
            "--count",
            "1",
            "--timeout",
            "10",
            "/queue/p",
        ],
        None,
    );
    ok(&o);
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(s.contains("color:red\n"), "{s}");
    assert!(s.ends_with("\n\none\n"), "{s:?}");
    ok(&run(&["send", "--url", u, "/queue/p", "two"], None));
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "1",
            "--timeout",
            "10",
            "/queue/p",
        ],
        None,
    );
    ok(&o);
    assert_eq!(o.stdout, b"two\n");
}

#[test]
fn hundred_thousand_lines_piped_arrive_in_order() {
    const N: usize = 100_000;
    let b = Broker::start();
    let u = b.url.as_str();
    let sub = spawn(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "100000",
            "--timeout",
            "25",
            "/queue/lines",
        ],
        None,
    );
    let input: String = (0..N).map(|i| format!("line {i}\n")).collect();
    let send = run(
        &["send", "--url", u, "--lines", "/queue/lines"],
        Some(input.into_bytes()),
    );
    ok(&send);
    let o = finish(sub, Duration::from_secs(28));
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    let mut n = 0;
    for (i, l) in out.lines().enumerate() {
        assert_eq!(l, format!("line {i}"));
        n += 1;
    }
    assert_eq!(n, N);
}

#[test]
fn lines_go_out_as_they_come_not_when_the_next_one_does() {
    // `tail -f log | stomp send --lines`: a line is sent (and confirmed)
    // when the input pauses, not held until the next line shows whether
    // it was the last.
    let b = Broker::start();
    let u = b.url.as_str();
    let (send, mut input) = spawn_fed(&["send", "--url", u, "--lines", "/queue/follow"]);
    input.write_all(b"first\n").unwrap();
    input.flush().unwrap();
    let first = run(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "1",
            "--timeout",
            "10",
            "/queue/follow",
        ],
        None,
    );
    ok(&first);
    assert_eq!(first.stdout, b"first\n");
    input.write_all(b"second\nthird").unwrap();
    drop(input);
    ok(&finish(send, Duration::from_secs(20)));
    let rest = run(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "2",
            "--timeout",
            "10",
            "/queue/follow",
        ],
        None,
    );
    ok(&rest);
    assert_eq!(rest.stdout, b"second\nthird\n");
}

#[test]
fn a_steady_stream_of_lines_is_confirmed_as_it_goes() {
    // A line every 10 ms never pauses the input long enough for the
    // pause rule; one line a second goes with a receipt anyway, so when
    // the broker dies the command can say what got through.
    let mut b = Broker::start();
    let (send, mut input) = spawn_fed(&["send", "--url", &b.url, "--lines", "/queue/steady"]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2500) {
        input.write_all(b"tick\n").unwrap();
        input.flush().unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    b.child.kill().unwrap();
    let _ = b.child.wait();
    // The next lines find the connection gone.
    for _ in 0..50 {
        if input.write_all(b"tick\n").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    drop(input);
    let o = finish(send, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("lines 1 to "), "{}", o.stderr);
}

#[test]
fn several_destinations_ack_what_was_printed_once() {
    // One connection per destination in client mode: the last printed
    // message of each is acked on its own connection (their subscription
    // ids are alike), so nothing printed comes back and nothing else goes.
    let b = Broker::start();
    let u = b.url.as_str();
    for round in 0..4 {
        let (qa, qb) = (format!("/queue/ma{round}"), format!("/queue/mb{round}"));
        ok(&run(
            &["send", "--url", u, "--lines", &qa],
            Some(b"1\n2\n3\n4\n5\n".to_vec()),
        ));
        ok(&run(
            &["send", "--url", u, "--lines", &qb],
            Some(b"11\n12\n13\n14\n15\n".to_vec()),
        ));
        let o = run(&["subscribe", "--url", u, "--count", "7", &qa, &qb], None);
        ok(&o);
        let printed = String::from_utf8(o.stdout).unwrap();
        let mut all: Vec<u32> = printed.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(all.len(), 7, "{printed}");
        let from_a = all.iter().filter(|&&v| v <= 5).count();
        for (q, left) in [(&qa, 5 - from_a), (&qb, 5 - (7 - from_a))] {
            if left > 0 {
                let o = run(
                    &[
                        "subscribe",
                        "--url",
                        u,
                        "--ack",
                        "client-individual",
                        "--count",
                        &left.to_string(),
                        "--timeout",
                        "15",
                        q,
                    ],
                    None,
                );
                ok(&o);
                all.extend(
                    String::from_utf8(o.stdout)
                        .unwrap()
                        .lines()
                        .map(|l| l.parse::<u32>().unwrap()),
                );
            }
            // Then nothing more: a printed message that came back would be
            // there at once.
            let more = run(
                &["subscribe", "--url", u, "--count", "1", "--timeout", "1", q],
                None,
            );
            assert_eq!(more.status.code(), Some(3), "{:?}", more.stdout);
            all.extend(
                String::from_utf8(more.stdout)
                    .unwrap()
                    .lines()
                    .map(|l| l.parse::<u32>().unwrap()),
            );
        }
        all.sort();
        assert_eq!(
            all,
            [1, 2, 3, 4, 5, 11, 12, 13, 14, 15],
            "printed {printed:?}"
        );
    }
}

#[test]
fn only_printed_messages_are_acked() {
    let b = Broker::start();
    let u = b.url.as_str();
    let input = b"a\nb\nc\n".to_vec();
    ok(&run(
        &["send", "--url", u, "--lines", "/queue/acks"],
        Some(input),
    ));
    // All three are delivered (prefetch), two printed and acked.
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--ack",
            "client-individual",
            "--count",
            "2",
            "--timeout",
            "10",
            "/queue/acks",
        ],
        None,
    );
    ok(&o);
    assert_eq!(o.stdout, b"a\nb\n");
    // The third comes back to the next subscriber; nothing else does.
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--ack",
            "client",
            "--count",
            "2",
            "--timeout",
            "1.5",
            "/queue/acks",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(3), "{}", o.stderr);
    assert_eq!(o.stdout, b"c\n");
    assert!(o.stderr.contains("after 1 of 2"), "{}", o.stderr);
}

#[test]
fn ctrl_c_stops_cleanly_and_leaves_unprinted_messages() {
    let b = Broker::start();
    let u = b.url.as_str();
    let mut sub = spawn(
        &["subscribe", "--url", u, "--ack", "client", "/queue/intr"],
        None,
    );
    ok(&run(
        &["send", "--url", u, "--receipt", "/queue/intr", "first"],
        None,
    ));
    // Wait for the first line, then interrupt.
    let mut stdout = BufReader::new(sub.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut l = String::new();
        let _ = stdout.read_line(&mut l);
        let _ = tx.send(l);
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first\n");
    let k = Command::new("kill")
        .args(["-INT", &sub.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = sub.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "subscribe ignored SIGINT");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    // "first" was printed and acked: not delivered again.
    ok(&run(
        &["send", "--url", u, "--receipt", "/queue/intr", "second"],
        None,
    ));
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "1",
            "--timeout",
            "10",
            "/queue/intr",
        ],
        None,
    );
    ok(&o);
    assert_eq!(o.stdout, b"second\n");
}

#[test]
fn failures_have_exit_codes_and_say_what_to_fix() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("stomp://127.0.0.1:{port}");
    let o = run(&["send", "--url", &url, "/queue/a", "x"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stderr.contains(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused; is a broker running? start one with `stomp broker`"
        )),
        "{}",
        o.stderr
    );
    let o = run(&["subscribe", "--url", &url, "/queue/a"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("cannot connect to"), "{}", o.stderr);
    // Usage errors: exit 2, before any connection is tried.
    let o = run(
        &["send", "--url", &url, "-H", "nocolon", "/queue/a", "x"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        o.stderr.contains("-H expects name:value, got \"nocolon\""),
        "{}",
        o.stderr
    );
    let o = run(&["send", "--url", "http://x", "/queue/a", "x"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr.contains("stomp://"), "{}", o.stderr);
    let o = run(&["send", "--stomp-version", "2.0", "/queue/a", "x"], None);
    assert_eq!(o.status.code(), Some(2));
    // STOMP_URL is read from the environment.
    let o = finish(
        Command::new(STOMP)
            .args(["send", "/queue/a", "x"])
            .env("STOMP_URL", &url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        o.stderr
    );
}

/// A server that answers every CONNECT with CONNECTED and then says
/// nothing more (a broker that stopped answering): its port.
fn silent_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut connected = false;
                // Read everything until the client closes; answer the
                // first frame (CONNECT) only.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if !connected && buf[..n].contains(&0) {
                        connected = true;
                        let _ = s.write_all(b"CONNECTED\nversion:1.2\n\n\0");
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_broker_that_stops_answering_costs_one_timeout_not_two() {
    // The command fails when its RECEIPT does not come within the timeout,
    // and does not then wait as long again for the DISCONNECT's.
    let port = silent_server().to_string();
    for args in [
        &[
            "send",
            "--port",
            &port,
            "--connect-timeout",
            "2",
            "--receipt",
            "/queue/a",
            "x",
        ][..],
        &[
            "subscribe",
            "--port",
            &port,
            "--connect-timeout",
            "2",
            "/queue/a",
        ],
        &["subscribe", "--port", &port, "--timeout", "2", "/queue/a"],
    ] {
        let t0 = Instant::now();
        let o = run(args, None);
        let took = t0.elapsed();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("timed out"), "{args:?}: {}", o.stderr);
        assert!(took < Duration::from_millis(3500), "{args:?} took {took:?}");
    }
}

#[test]
fn broker_errors_are_reported() {
    let b = Broker::start();
    // A SEND without a destination is a protocol error the broker answers
    // with an ERROR; an empty destination string is what we can send.
    let o = run(&["send", "--url", &b.url, "--receipt", "", "x"], None);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("the broker said"), "{}", o.stderr);
}

#[test]
fn help_has_examples() {
    for sub in ["send", "subscribe", "broker", "bench"] {
        let o = run(&[sub, "--help"], None);
        ok(&o);
        let s = String::from_utf8(o.stdout).unwrap();
        assert!(s.contains("Examples:"), "{sub}: {s}");
    }
}

#[test]
fn bench_short_run_reports_no_loss() {
    let b = Broker::start();
    let u = b.url.as_str();
    let o = run(
        &[
            "bench",
            "--url",
            u,
            "--count",
            "5000",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--json",
        ],
        None,
    );
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["scenario"], "128b_2a_1queue_2");
    assert_eq!(r["sent"], 5000);
    assert_eq!(r["received"], 5000);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["latency_us"]["p99"].as_f64().unwrap() >= r["latency_us"]["p50"].as_f64().unwrap());

    let o = run(
        &[
            "bench",
            "--url",
            u,
            "--topic",
            "--consumers",
            "3",
            "--count",
            "1000",
            "--persistent",
            "--ack",
            "client-individual",
            "--json",
        ],
        None,
    );
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["scenario"], "128b_1p_1topic_3_client-individual");
    assert_eq!(r["expected"], 3000);
    assert_eq!(r["received"], 3000);
    assert_eq!(r["confirmed"], 1000);
    assert_eq!(r["lost"], 0);
}

#[test]
fn bench_idle_connections_and_tcp_echo() {
    let b = Broker::start();
    let pid = b.child.id().to_string();
    let o = run(
        &[
            "bench",
            "--url",
            &b.url,
            "--idle-connections",
            "200",
            "--hold",
            "0.5",
            "--broker-pid",
            &pid,
            "--json",
        ],
        None,
    );
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["opened"], 200);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["closed_while_held"], 0);
    assert!(r["rss_held_kib"].as_u64().unwrap() > 0);
    assert!(r["accept_s"].as_f64().unwrap() < 10.0);

    let o = run(
        &[
            "bench",
            "--tcp-echo",
            "--rate",
            "2000",
            "--count",
            "500",
            "--json",
        ],
        None,
    );
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["messages"], 500);
    assert!(r["rtt_us"]["p50"].as_f64().unwrap() > 0.0);
}

#[test]
fn send_without_receipt_still_fails_when_the_broker_refuses() {
    // The ERROR for a SEND still being written arrives while the
    // DISCONNECT waits for its receipt: it is the answer.
    let b = Broker::start_with(&["--max-body-size", "1000"]);
    let dir = std::env::temp_dir().join(format!("stomp-cli-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big");
    std::fs::write(&big, vec![b'x'; 4 << 20]).unwrap();
    let o = run(
        &[
            "send",
            "--url",
            &b.url,
            "-f",
            big.to_str().unwrap(),
            "/queue/big",
        ],
        None,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("body length limit"), "{}", o.stderr);
    // With --lines, the broker's reason, not "not connected".
    let mut lines = b"a\nb\n".to_vec();
    lines.extend(vec![b'x'; 2000]);
    lines.extend(b"\nc\nd\n");
    let o = run(
        &["send", "--url", &b.url, "--lines", "/queue/big"],
        Some(lines),
    );
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("body length limit"), "{}", o.stderr);
    assert!(
        o.stderr.contains("none of the lines was confirmed"),
        "{}",
        o.stderr
    );
}

#[test]
fn subscribe_takes_only_what_it_prints_by_default() {
    let b = Broker::start();
    let u = b.url.as_str();
    ok(&run(
        &["send", "--url", u, "--lines", "/queue/take"],
        Some(b"a\nb\nc\nd\n".to_vec()),
    ));
    let o = run(
        &["subscribe", "--url", u, "--count", "1", "/queue/take"],
        None,
    );
    ok(&o);
    assert_eq!(o.stdout, b"a\n");
    // The rest is still there. With a window of 1, only the message the
    // broker handed over on the last ACK (just before the DISCONNECT) went
    // out and came back; the others never left.
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--json",
            "--count",
            "3",
            "--timeout",
            "10",
            "/queue/take",
        ],
        None,
    );
    ok(&o);
    let got = json_lines(&o);
    let bodies: Vec<_> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["b", "c", "d"]);
    for m in &got[1..] {
        assert!(m["headers"].get("redelivered").is_none(), "{m}");
    }
    // A failed second destination does not eat the first one's messages.
    ok(&run(&["send", "--url", u, "/queue/take", "e"], None));
    let o = run(&["subscribe", "--url", u, "/queue/take", "/nowhere"], None);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    let o = run(
        &[
            "subscribe",
            "--url",
            u,
            "--count",
            "1",
            "--timeout",
            "10",
            "/queue/take",
        ],
        None,
    );
    ok(&o);
    assert_eq!(o.stdout, b"e\n");
}

#[test]
fn bench_on_a_destination_holding_messages_reports_them_apart() {
    let b = Broker::start();
    let u = b.url.as_str();
    ok(&run(
        &["send", "--url", u, "--lines", "/queue/held"],
        Some(b"1\n2\n3\n".to_vec()),
    ));
    let o = run(
        &[
            "bench",
            "--url",
            u,
            "--destination",
            "/queue/held",
            "--count",
            "100",
            "--json",
        ],
        None,
    );
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["received"], 100);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert_eq!(r["foreign"], 3);
}

#[test]
fn out_of_range_numbers_are_usage_errors() {
    for args in [
        &["bench", "--duration=-1"][..],
        &["bench", "--duration", "nan"],
        &["bench", "--duration", "1e20"],
        &["bench", "--rate", "1e-30"],
        &["bench", "--size", "18446744073709551615"],
        &["bench", "--idle-connections", "1", "--hold", "1e20"],
        &["subscribe", "--timeout", "1e20", "/queue/a"],
        &["send", "--connect-timeout", "-1", "/queue/a", "x"],
    ] {
        let o = run(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("expects"), "{args:?}: {}", o.stderr);
    }
}

/// `stomp send DEST` without a body, at a terminal, says it is reading the
/// body (otherwise a forgotten argument looks like a hang).
#[test]
fn send_without_a_body_at_a_terminal_says_it_reads_stdin() {
    let mut t = Terminal::run(&format!("{STOMP} send --port 1 /queue/x"));
    t.wait_for("reading the body from stdin; end with Ctrl-D", 0);
    t.type_in(b"hi\n\x04");
    let (ok, shown) = t.finish();
    assert!(!ok, "nothing listens on port 1: {shown}");
}

#[test]
fn bench_reports_what_it_measured_when_interrupted() {
    let b = Broker::start();
    let child = spawn(
        &[
            "bench",
            "--url",
            &b.url,
            "--duration",
            "60",
            "--rate",
            "2000",
            "--json",
        ],
        None,
    );
    thread::sleep(Duration::from_millis(1500));
    let k = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    // Far sooner than the 60 s asked for, with a report.
    let o = finish(child, Duration::from_secs(15));
    ok(&o);
    let r = &json_lines(&o)[0];
    assert_eq!(r["interrupted"], true);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 100 && sent < 60 * 2000, "sent {sent}");
    assert_eq!(r["received"], sent);
    assert_eq!(r["lost"], 0);
    assert!(r["send_s"].as_f64().unwrap() < 30.0);
}
