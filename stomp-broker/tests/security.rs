//! Security of the real binary: users file and failed logins, the CONNECT
//! deadline, per-IP and subscription limits, the authorization map, the
//! start-up warning. Each test starts `stomp-broker --memory` on
//! 127.0.0.1:0 and reads its `listening on` lines; every read has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_frame::{Command, Decoder, Frame, Item, Version};

const TIMEOUT: Duration = Duration::from_secs(5);
const BIN: &str = env!("CARGO_BIN_EXE_stomp-broker");

struct Broker {
    child: Child,
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
}

impl Broker {
    fn start(args: &[&str]) -> Broker {
        Broker::launch(Process::new(BIN), args)
    }

    /// Starts the broker with `command` (the broker binary, or a shell that
    /// runs it with its arguments as `"$@"`).
    fn launch(mut command: Process, args: &[&str]) -> Broker {
        let mut all = vec!["--memory", "--log-level", "warn"];
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend(args);
        let mut child = command
            .args(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let n = all
            .iter()
            .filter(|a| **a == "--listen" || **a == "--tls-listen")
            .count();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addrs, mut tls_addrs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let a = line
                .trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            match a.strip_suffix(" (tls)") {
                Some(t) => tls_addrs.push(t.parse().unwrap()),
                None => addrs.push(a.parse().unwrap()),
            }
        }
        Broker {
            child,
            addrs,
            tls_addrs,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops it and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        err
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Client {
    tcp: Box<dyn Stream>,
    buf: BytesMut,
    dec: Decoder,
}

impl Client {
    fn open(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client::over(Box::new(tcp))
    }

    fn over(tcp: Box<dyn Stream>) -> Client {
        Client {
            tcp,
            buf: BytesMut::new(),
            dec: Decoder::new(Version::V1_2),
        }
    }

    /// Sends CONNECT with `login`/`passcode` and returns the answer.
    fn login(addr: SocketAddr, login: &str, passcode: &str) -> (Client, Frame) {
        let mut c = Client::open(addr);
        c.write(
            format!(
                "CONNECT\naccept-version:1.2\nhost:x\nlogin:{login}\npasscode:{passcode}\n\n\0"
            )
            .as_bytes(),
        );
        let f = c.frame().expect("an answer to CONNECT");
        (c, f)
    }

    fn connected(addr: SocketAddr, login: &str, passcode: &str) -> Client {
        let (c, f) = Client::login(addr, login, passcode);
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c
    }

    fn write(&mut self, b: &[u8]) {
        self.tcp.write_all(b).unwrap();
    }

    /// The next frame, or `None` at EOF (or a reset).
    fn frame(&mut self) -> Option<Frame> {
        loop {
            match self.dec.decode(&mut self.buf).unwrap() {
                Some(Item::Frame(f)) => return Some(f),
                Some(Item::Heartbeat) => continue,
                None => {}
            }
            let mut chunk = [0u8; 65536];
            match self.tcp.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read within the timeout: {e}"),
            }
        }
    }

    /// An ERROR frame, then the broker closes the connection.
    fn error_then_eof(&mut self) -> Frame {
        let f = self.frame().expect("an ERROR frame");
        assert_eq!(f.command, Command::Error, "{f:?}");
        assert!(
            self.frame().is_none(),
            "the connection is closed after ERROR"
        );
        f
    }
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stomp-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `stomp-broker passwd FILE USER`, the password on stdin.
fn passwd(file: &Path, user: &str, password: &str) {
    let mut child = Process::new(BIN)
        .args(["passwd", file.to_str().unwrap(), user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn failed_logins_get_one_generic_error_then_close() {
    let dir = temp_dir("login");
    let users = dir.join("users.toml");
    passwd(&users, "alice", "wonderland");
    let st = Process::new(BIN)
        .args([
            "passwd",
            users.to_str().unwrap(),
            "bob",
            "--password",
            "builder",
        ])
        .output()
        .unwrap();
    assert!(st.status.success());
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(!text.contains("wonderland") && !text.contains("builder"));

    let b = Broker::start(&["--users", users.to_str().unwrap()]);
    Client::connected(b.addr(), "alice", "wonderland");
    Client::connected(b.addr(), "bob", "builder");

    let (mut wrong, f) = Client::login(b.addr(), "alice", "builder");
    assert_eq!(f.command, Command::Error);
    assert!(wrong.frame().is_none(), "closed after a failed login");
    let (mut unknown, g) = Client::login(b.addr(), "mallory", "wonderland");
    assert_eq!(g.command, Command::Error);
    assert!(unknown.frame().is_none());
    let (mut none, h) = {
        let mut c = Client::open(b.addr());
        c.write(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0");
        let f = c.frame().unwrap();
        (c, f)
    };
    assert!(none.frame().is_none());
    for e in [&g, &h] {
        assert_eq!(e.headers.get("message"), f.headers.get("message"));
        assert_eq!(body(e), body(&f), "the same text whichever part was wrong");
    }
    assert_eq!(f.headers.get("message"), Some("authentication failed"));
    assert!(!body(&f).contains("alice") && !body(&f).contains("user not found"));
    // The ERROR of a failed login names the CONNECT's receipt, as every
    // other ERROR for a frame that asked for one (checked off the loop).
    let mut asked = Client::open(b.addr());
    asked.write(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:x\nreceipt:c-1\n\n\0");
    let e = asked.frame().unwrap();
    assert_eq!(e.headers.get("message"), Some("authentication failed"));
    assert_eq!(e.receipt_id(), Some("c-1"));

    // The broker still serves after the failures.
    Client::connected(b.addr(), "alice", "wonderland");
    // Frames pipelined behind a CONNECT wait for its check: handled after
    // a good login, dropped after a bad one.
    let mut piped = Client::open(b.addr());
    piped.write(
        b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:wonderland\n\n\0\
          SEND\ndestination:/queue/p\nreceipt:1\n\nok\0",
    );
    assert_eq!(piped.frame().unwrap().command, Command::Connected);
    assert_eq!(piped.frame().unwrap().receipt_id(), Some("1"));
    let mut bad = Client::open(b.addr());
    bad.write(
        b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:nope\n\n\0\
          SEND\ndestination:/queue/p\nreceipt:2\n\nsneaked\0",
    );
    bad.error_then_eof();
    piped.write(b"SUBSCRIBE\nid:0\ndestination:/queue/p\n\n\0SEND\ndestination:/queue/p\n\nlast\0");
    assert_eq!(body(&piped.frame().unwrap()), "ok");
    assert_eq!(body(&piped.frame().unwrap()), "last");
    // An unreadable users file stops start-up with a message.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[users.x]\npassword = 'plain'\n").unwrap();
    let out = Process::new(BIN)
        .args([
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--users",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passwd"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_address_cannot_queue_password_checks_without_end() {
    // Past --max-pending-logins-per-ip checks waiting for one address, a
    // CONNECT is refused at once rather than queued behind them (a flood of
    // 3,000 bad logins from one address delayed everyone's by 15 s).
    let dir = temp_dir("pending");
    let users = dir.join("users.toml");
    passwd(&users, "alice", "wonderland");
    let b = Broker::start(&[
        "--users",
        users.to_str().unwrap(),
        "--max-pending-logins-per-ip",
        "2",
    ]);
    let mut flood: Vec<Client> = (0..12).map(|_| Client::open(b.addr())).collect();
    for c in &mut flood {
        c.write(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:bad\nreceipt:f\n\n\0");
    }
    let mut refused = 0;
    for c in &mut flood {
        let e = c.frame().expect("an ERROR");
        assert_eq!(e.command, Command::Error);
        match e.headers.get("message") {
            Some("too many logins") => {
                refused += 1;
                assert_eq!(e.receipt_id(), Some("f"));
                assert!(
                    body(&e).contains("max-pending-logins-per-ip"),
                    "{}",
                    body(&e)
                );
            }
            other => assert_eq!(other, Some("authentication failed")),
        }
        assert!(c.frame().is_none(), "closed");
    }
    assert!(refused >= 4, "only {refused} of 12 refused");
    // The checks are counted back: the address may log in again.
    Client::connected(b.addr(), "alice", "wonderland");
}

/// The broker's resident memory, in KiB.
fn rss_kib(b: &Broker) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", b.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn password_checks_do_not_pile_up_memory() {
    // argon2 works in 19 MiB: each password-checking thread keeps one such
    // block. Allocated at every check, the freed copies stayed with the
    // allocator: RSS went from 4 MiB to about 370 MiB after 50 logins.
    let dir = temp_dir("rss");
    let users = dir.join("users.toml");
    passwd(&users, "alice", "wonderland");
    let b = Broker::start(&["--users", users.to_str().unwrap()]);
    let before = rss_kib(&b);
    for i in 0..40 {
        let pass = if i % 2 == 0 { "wonderland" } else { "wrong" };
        let (_c, f) = Client::login(b.addr(), if i % 3 == 0 { "nobody" } else { "alice" }, pass);
        assert!(matches!(f.command, Command::Connected | Command::Error));
    }
    let grown = rss_kib(&b).saturating_sub(before);
    // At most 4 checking threads of 19 MiB each, and some slack.
    assert!(grown < 100 * 1024, "RSS grew by {} MiB", grown / 1024);
}

#[test]
fn warns_when_open_beyond_loopback() {
    let b = Broker::start(&["--listen", "0.0.0.0:0"]);
    let log = b.stop();
    assert!(log.contains("no authentication"), "{log}");
    let b = Broker::start(&["--listen", "127.0.0.1:0"]);
    let log = b.stop();
    assert!(!log.contains("no authentication"), "{log}");
    let dir = temp_dir("warn");
    let users = dir.join("u.toml");
    passwd(&users, "a", "b");
    let b = Broker::start(&["--listen", "0.0.0.0:0", "--users", users.to_str().unwrap()]);
    let log = b.stop();
    assert!(!log.contains("no authentication"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_client_that_never_connects_is_closed_after_the_deadline() {
    let b = Broker::start(&["--connect-timeout", "300"]);
    let t0 = Instant::now();
    let mut silent = Client::open(b.addr());
    let f = silent.error_then_eof();
    let took = t0.elapsed();
    assert_eq!(f.headers.get("message"), Some("connect timeout"));
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // One that connects in time stays open past the deadline.
    let mut ok = Client::connected(b.addr(), "", "");
    std::thread::sleep(Duration::from_millis(500));
    ok.write(b"SEND\ndestination:/queue/a\nreceipt:r\n\nx\0");
    assert_eq!(ok.frame().unwrap().command, Command::Receipt);
}

#[test]
fn a_flood_from_one_address_is_refused_past_the_per_ip_limit() {
    let b = Broker::start(&[
        "--max-connections-per-ip",
        "3",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
    ]);
    let v4 = b.addrs[0];
    let v6 = b.addrs[1];
    let mut held: Vec<Client> = (0..3).map(|_| Client::connected(v4, "", "")).collect();
    for _ in 0..5 {
        let mut c = Client::open(v4);
        let f = c.error_then_eof();
        assert!(
            f.headers.get("message").unwrap().contains("your address"),
            "{f:?}"
        );
    }
    // Another address is served, and so are the held connections.
    let mut other = Client::connected(v6, "", "");
    other.write(b"SEND\ndestination:/queue/flood\nreceipt:r\n\nx\0");
    assert_eq!(other.frame().unwrap().command, Command::Receipt);
    held[0].write(b"SUBSCRIBE\nid:0\ndestination:/queue/flood\n\n\0");
    assert_eq!(held[0].frame().unwrap().command, Command::Message);
    // A slot freed is a slot for the next one.
    drop(held.pop());
    let t0 = Instant::now();
    loop {
        let (_c, f) = Client::login(v4, "", "");
        if f.command == Command::Connected {
            break;
        }
        assert!(t0.elapsed() < TIMEOUT, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn subscriptions_per_connection_are_limited() {
    let b = Broker::start(&["--max-subscriptions", "2"]);
    let mut c = Client::connected(b.addr(), "", "");
    c.write(b"SUBSCRIBE\nid:0\ndestination:/queue/a\n\n\0");
    c.write(b"SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0");
    c.write(b"UNSUBSCRIBE\nid:1\n\n\0");
    c.write(b"SUBSCRIBE\nid:2\ndestination:/topic/c\nreceipt:ok\n\n\0");
    assert_eq!(c.frame().unwrap().receipt_id(), Some("ok"));
    c.write(b"SUBSCRIBE\nid:3\ndestination:/topic/d\nreceipt:no\n\n\0");
    let f = c.error_then_eof();
    assert_eq!(f.headers.get("message"), Some("too many subscriptions"));
    assert_eq!(f.receipt_id(), Some("no"));
}

#[test]
fn the_acl_denies_read_write_and_admin() {
    let dir = temp_dir("acl");
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        "[users.alice]\ngroups = ['ops']\n[users.bob]\n[users.carol]\n\
         [[acl]]\npattern = '/queue/orders.>'\nread = ['group:ops']\nwrite = ['alice', 'bob', 'carol']\nadmin = ['group:ops', 'bob']\n\
         [[acl]]\npattern = '/topic/*'\nread = ['*']\nwrite = ['alice']\n",
    )
    .unwrap();
    // passwd fills in the passwords, keeping groups and rules.
    for u in ["alice", "bob", "carol"] {
        passwd(&users, u, &format!("{u}-pw"));
    }
    let b = Broker::start(&["--users", users.to_str().unwrap()]);
    let addr = b.addr();
    let mut alice = Client::connected(addr, "alice", "alice-pw");
    alice.write(b"SEND\ndestination:/queue/orders.eu\nreceipt:1\n\nfirst\0");
    assert_eq!(alice.frame().unwrap().receipt_id(), Some("1"));

    // Write denied: nothing stored.
    let mut mallory = Client::connected(addr, "carol", "carol-pw");
    mallory.write(b"SEND\ndestination:/topic/news\nreceipt:2\n\nspam\0");
    let f = mallory.error_then_eof();
    let msg = f.headers.get("message").unwrap();
    assert!(
        msg.contains("write") && msg.contains("/topic/news"),
        "{msg}"
    );
    assert_eq!(f.receipt_id(), Some("2"));
    // No rule matches: denied too.
    let mut bob = Client::connected(addr, "bob", "bob-pw");
    bob.write(b"SEND\ndestination:/queue/payroll\n\nx\0");
    let f = bob.error_then_eof();
    assert!(f.headers.get("message").unwrap().contains("/queue/payroll"));

    // Read denied.
    let mut bob = Client::connected(addr, "bob", "bob-pw");
    bob.write(b"SUBSCRIBE\nid:0\ndestination:/queue/orders.eu\n\n\0");
    let f = bob.error_then_eof();
    let msg = f.headers.get("message").unwrap();
    assert!(
        msg.contains("read") && msg.contains("/queue/orders.eu"),
        "{msg}"
    );

    // Admin denied: carol may write to an existing queue but not create one.
    let mut carol = Client::connected(addr, "carol", "carol-pw");
    carol.write(b"SEND\ndestination:/queue/orders.eu\nreceipt:3\n\nsecond\0");
    assert_eq!(carol.frame().unwrap().receipt_id(), Some("3"));
    carol.write(b"SEND\ndestination:/queue/orders.us\n\nnew\0");
    let f = carol.error_then_eof();
    let msg = f.headers.get("message").unwrap();
    assert!(
        msg.contains("admin") && msg.contains("/queue/orders.us"),
        "{msg}"
    );
    // bob has admin and write: he may create it.
    let mut bob = Client::connected(addr, "bob", "bob-pw");
    bob.write(b"SEND\ndestination:/queue/orders.us\nreceipt:4\n\nus\0");
    assert_eq!(bob.frame().unwrap().receipt_id(), Some("4"));

    // alice reads exactly what was allowed, in order.
    alice.write(b"SEND\ndestination:/queue/orders.eu\nreceipt:5\n\nlast\0");
    assert_eq!(alice.frame().unwrap().receipt_id(), Some("5"));
    alice.write(b"SUBSCRIBE\nid:s\ndestination:/queue/orders.eu\n\n\0");
    let got: Vec<String> = (0..3).map(|_| body(&alice.frame().unwrap())).collect();
    assert_eq!(got, ["first", "second", "last"]);
    // Topics: anyone reads, only alice writes.
    bob.write(b"SUBSCRIBE\nid:t\ndestination:/topic/news\nreceipt:6\n\n\0");
    assert_eq!(bob.frame().unwrap().receipt_id(), Some("6"));
    alice.write(b"SEND\ndestination:/topic/news\n\nhello\0");
    assert_eq!(body(&bob.frame().unwrap()), "hello");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A test CA and a certificate it signed for localhost / 127.0.0.1, as PEM
/// files in `dir`: (ca.pem, cert.pem, key.pem).
fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stomp-rs test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// A TLS client trusting only `ca`.
fn tls_open(addr: SocketAddr, ca: &Path) -> std::io::Result<Client> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake now, so a bad certificate shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(Client::over(Box::new(s)))
}

fn tls_broker(dir: &Path) -> (Broker, PathBuf) {
    let (ca, cert, key) = make_pki(dir);
    let b = Broker::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!((b.addrs.len(), b.tls_addrs.len()), (1, 1));
    (b, ca)
}

fn tls_connected(addr: SocketAddr, ca: &Path) -> Client {
    let mut c = tls_open(addr, ca).unwrap();
    c.write(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0");
    let f = c.frame().unwrap();
    assert_eq!(f.command, Command::Connected, "{f:?}");
    c
}

#[test]
fn tls_listener_serves_stomp_beside_plain_tcp() {
    let dir = temp_dir("tls");
    let (b, ca) = tls_broker(&dir);
    let tls = b.tls_addrs[0];
    let mut sub = tls_connected(tls, &ca);
    sub.write(b"SUBSCRIBE\nid:0\ndestination:/queue/secure\nreceipt:s\n\n\0");
    assert_eq!(sub.frame().unwrap().receipt_id(), Some("s"));
    // A big body crosses many TLS records and partial writes.
    let big = vec![b'x'; 3 * 1024 * 1024];
    let mut p = tls_connected(tls, &ca);
    let mut send = format!(
        "SEND\ndestination:/queue/secure\ncontent-length:{}\nreceipt:r\n\n",
        big.len()
    )
    .into_bytes();
    send.extend_from_slice(&big);
    send.push(0);
    p.write(&send);
    assert_eq!(p.frame().unwrap().receipt_id(), Some("r"));
    let m = sub.frame().unwrap();
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.body.len(), big.len());
    // Plain and TLS clients share the broker.
    let mut plain = Client::connected(b.addr(), "", "");
    plain.write(b"SEND\ndestination:/queue/secure\n\nfrom plain\0");
    assert_eq!(body(&sub.frame().unwrap()), "from plain");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_text_on_the_tls_port_fails_cleanly() {
    let dir = temp_dir("tls-plain");
    let (b, ca) = tls_broker(&dir);
    let tls = b.tls_addrs[0];
    let mut raw = TcpStream::connect(tls).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    raw.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(!got.starts_with(b"CONNECTED"), "{got:?}");
    // A client that trusts another CA is refused by its own check.
    let other = temp_dir("tls-other");
    let (other_ca, _, _) = make_pki(&other);
    assert!(tls_open(tls, &other_ca).is_err());
    // The broker is unaffected.
    tls_connected(tls, &ca);
    Client::connected(b.addr(), "", "");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn tls_flags_are_checked_at_start() {
    let out = Process::new(BIN)
        .args([
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
    let out = Process::new(BIN)
        .args([
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[test]
fn a_frame_flood_is_cut_past_the_rate_limit() {
    let b = Broker::start(&["--max-frame-rate", "50"]);
    let mut calm = Client::connected(b.addr(), "", "");
    let mut flood = Client::connected(b.addr(), "", "");
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(format!("SEND\ndestination:/queue/r\n\n{i}\0").as_bytes());
    }
    flood.write(&burst);
    let f = flood.error_then_eof();
    assert_eq!(f.headers.get("message"), Some("frame rate exceeded"));
    // A connection within the limit is served.
    for i in 0..10 {
        calm.write(format!("SEND\ndestination:/queue/calm\nreceipt:{i}\n\nx\0").as_bytes());
        assert_eq!(calm.frame().unwrap().command, Command::Receipt);
    }
}

/// Retries `f` until it holds, for at most TIMEOUT.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < TIMEOUT {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sighup_reloads_the_users_file_and_the_certificate() {
    let dir = temp_dir("hup");
    let users = dir.join("users.toml");
    passwd(&users, "alice", "old");
    let (_, cert, key) = make_pki(&dir);
    let b = Broker::start(&[
        "--users",
        users.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    Client::connected(b.addr(), "alice", "old");
    passwd(&users, "alice", "new");
    let next = temp_dir("hup-next");
    let (new_ca, new_cert, new_key) = make_pki(&next);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let hup = Process::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    assert!(
        eventually(|| Client::login(b.addr(), "alice", "new").1.command == Command::Connected),
        "the new password works after SIGHUP"
    );
    assert_eq!(
        Client::login(b.addr(), "alice", "old").1.command,
        Command::Error
    );
    assert!(
        eventually(|| tls_open(b.tls_addrs[0], &new_ca).is_ok()),
        "the new certificate is served after SIGHUP"
    );
    // A broken file is logged and the old settings stay.
    std::fs::write(&users, "not toml [").unwrap();
    Process::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Client::connected(b.addr(), "alice", "new");
    let log = b.stop();
    assert!(log.contains("not reloaded"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&next).unwrap();
}

#[test]
fn a_burst_of_logins_does_not_stall_connected_clients() {
    let dir = temp_dir("burst");
    let users = dir.join("users.toml");
    passwd(&users, "alice", "pw");
    // All checks queued (from one address, past the default 64 waiting).
    let b = Broker::start(&[
        "--users",
        users.to_str().unwrap(),
        "--max-pending-logins-per-ip",
        "1000",
    ]);
    let mut alice = Client::connected(b.addr(), "alice", "pw");
    // Time one login, to size the burst at well over a second of hashing.
    let t0 = Instant::now();
    Client::connected(b.addr(), "alice", "pw");
    let one = t0.elapsed().max(Duration::from_millis(1));
    let n = (Duration::from_millis(1500).as_micros() / one.as_micros()).clamp(20, 300) as usize;
    let mut burst = Vec::new();
    for _ in 0..n {
        let mut c = Client::open(b.addr());
        c.write(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:wrong\n\n\0");
        burst.push(c);
    }
    // The established session is answered while the burst is being checked.
    let t0 = Instant::now();
    alice.write(b"SEND\ndestination:/queue/b\nreceipt:r\n\nx\0");
    assert_eq!(alice.frame().unwrap().receipt_id(), Some("r"));
    let receipt = t0.elapsed();
    let t1 = Instant::now();
    for c in &mut burst {
        let f = c.frame().unwrap();
        assert_eq!(f.headers.get("message"), Some("authentication failed"));
    }
    let all = t1.elapsed() + receipt;
    eprintln!(
        "one login {one:?}; {n} failed logins answered in {all:?}; a RECEIPT meanwhile in {receipt:?}"
    );
    assert!(receipt < all / 2, "receipt {receipt:?}, burst {all:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With few file descriptors, the connection limit shrinks to fit them:
/// the client past it is told so (an ERROR), not left unanswered.
#[test]
fn max_connections_fits_the_open_file_limit() {
    let mut sh = Process::new("sh");
    sh.args(["-c", "ulimit -n 200 && exec \"$0\" \"$@\"", BIN]);
    let b = Broker::launch(sh, &[]);
    // 200 descriptors less the reserve: 72 connections fit.
    let held: Vec<Client> = (0..72)
        .map(|_| Client::connected(b.addr(), "", ""))
        .collect();
    for _ in 0..3 {
        let mut c = Client::open(b.addr());
        let f = c.error_then_eof();
        assert_eq!(
            f.headers.get("message"),
            Some("too many connections"),
            "{f:?}"
        );
    }
    assert_eq!(held.len(), 72);
}
