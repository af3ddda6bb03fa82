//! Smoke tests: a broker in-process (or the binary) on 127.0.0.1:0, raw
//! bytes over real TCP. Every read has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_broker::{Broker, Config, RunningBroker};
use stomp_frame::{Command, Decoder, Frame, Item, Version};

const TIMEOUT: Duration = Duration::from_secs(5);

fn start(cfg: Config) -> RunningBroker {
    let cfg = Config {
        listen: vec!["127.0.0.1:0".into()],
        memory: true,
        ..cfg
    };
    Broker::bind(cfg).unwrap().spawn().unwrap()
}

struct Client {
    tcp: TcpStream,
    buf: BytesMut,
    dec: Decoder,
    beats: usize,
}

/// The socket is shut down on drop, so the broker sees the close at once
/// even while a broker being started by another test holds a forked copy
/// of the descriptor.
impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

impl Client {
    fn connect(addr: SocketAddr, extra: &str) -> (Client, Frame) {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Client {
            tcp,
            buf: BytesMut::new(),
            dec: Decoder::new(Version::V1_2),
            beats: 0,
        };
        c.write(format!("CONNECT\naccept-version:1.2\nhost:x\n{extra}\n\0").as_bytes());
        let f = c.frame().expect("CONNECTED");
        assert_eq!(f.command, Command::Connected);
        (c, f)
    }

    fn write(&mut self, b: &[u8]) {
        self.tcp.write_all(b).unwrap();
    }

    /// The next frame, or `None` at EOF.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            match self.dec.decode(&mut self.buf).unwrap() {
                Some(Item::Frame(f)) => return Some(f),
                Some(Item::Heartbeat) => {
                    self.beats += 1;
                    continue;
                }
                None => {}
            }
            let mut chunk = [0u8; 65536];
            let n = self.tcp.read(&mut chunk).expect("read within the timeout");
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn send_subscribe_receipt_over_tcp() {
    let b = start(Config::default());
    let (mut c, connected) = Client::connect(b.addr(), "");
    assert_eq!(connected.headers.get("version"), Some("1.2"));
    c.write(b"SUBSCRIBE\nid:0\ndestination:/queue/smoke\nack:client-individual\nreceipt:s\n\n\0");
    assert_eq!(c.frame().unwrap().receipt_id(), Some("s"));
    let (mut p, _) = Client::connect(b.addr(), "");
    p.write(b"SEND\ndestination:/queue/smoke\ncontent-type:application/octet-stream\ncontent-length:3\nreceipt:r\n\na\0b\0");
    assert_eq!(p.frame().unwrap().receipt_id(), Some("r"));
    let m = c.frame().unwrap();
    assert_eq!(m.command, Command::Message);
    assert_eq!(&m.body[..], b"a\0b");
    assert_eq!(m.content_type(), Some("application/octet-stream"));
    let ack = Frame::ack_for(&m, Version::V1_2).unwrap();
    let mut wire = BytesMut::new();
    stomp_frame::Encoder::new(Version::V1_2)
        .encode(&ack.header("receipt", "a"), &mut wire)
        .unwrap();
    c.write(&wire);
    assert_eq!(c.frame().unwrap().receipt_id(), Some("a"));
    c.write(b"DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(c.frame().unwrap().receipt_id(), Some("bye"));
    assert!(c.frame().is_none(), "closed after DISCONNECT");
    b.shutdown().unwrap();
}

#[test]
fn error_then_close_and_others_unaffected() {
    let b = start(Config::default());
    let (mut good, _) = Client::connect(b.addr(), "");
    let (mut bad, _) = Client::connect(b.addr(), "");
    bad.write(b"SEND\ndestination:/nowhere\nreceipt:9\n\nx\0");
    let err = bad.frame().unwrap();
    assert_eq!(err.command, Command::Error);
    assert_eq!(err.receipt_id(), Some("9"));
    assert!(bad.frame().is_none());
    good.write(b"SEND\ndestination:/queue/x\nreceipt:1\n\nok\0");
    assert_eq!(good.frame().unwrap().receipt_id(), Some("1"));
}

#[test]
fn many_messages_in_order_through_a_queue() {
    let b = start(Config::default());
    let (mut c, _) = Client::connect(b.addr(), "");
    c.write(b"SUBSCRIBE\nid:0\ndestination:/queue/many\n\n\0");
    let (mut p, _) = Client::connect(b.addr(), "");
    let n = 20_000;
    let mut wire = Vec::new();
    for i in 0..n {
        wire.extend_from_slice(format!("SEND\ndestination:/queue/many\n\n{i:0128}\0").as_bytes());
    }
    let writer = std::thread::spawn(move || {
        p.write(&wire);
        p
    });
    for i in 0..n {
        let m = c.frame().unwrap();
        assert_eq!(m.body, format!("{i:0128}").as_bytes());
    }
    drop(writer.join().unwrap());
}

#[test]
fn full_queue_pauses_producer_without_losing_messages() {
    let b = start(Config {
        max_queue_memory: Some(64 * 1024),
        ..Config::default()
    });
    let (mut p, _) = Client::connect(b.addr(), "");
    let n = 8000;
    let mut wire = Vec::new();
    for i in 0..n {
        wire.extend_from_slice(format!("SEND\ndestination:/queue/bp\n\n{i:01000}\0").as_bytes());
    }
    let writer = std::thread::spawn(move || {
        p.write(&wire); // blocks while the broker stops reading
        p.write(b"SEND\ndestination:/queue/bp\nreceipt:end\n\nlast\0");
        p.frame().unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!writer.is_finished(), "producer is held back");
    let (mut c, _) = Client::connect(b.addr(), "");
    c.write(b"SUBSCRIBE\nid:0\ndestination:/queue/bp\n\n\0");
    for i in 0..n {
        let m = c.frame().unwrap();
        assert_eq!(m.body, format!("{i:01000}").as_bytes(), "message {i}");
    }
    assert_eq!(&c.frame().unwrap().body[..], b"last");
    assert_eq!(writer.join().unwrap().receipt_id(), Some("end"));
}

#[test]
fn heart_beats_sent_and_silence_closes() {
    let b = start(Config::default());
    let (mut c, f) = Client::connect(b.addr(), "heart-beat:0,100\n");
    assert_eq!(f.headers.get("heart-beat"), Some("100,0"));
    let t = Instant::now();
    while c.beats < 3 {
        c.tcp
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut chunk = [0u8; 16];
        if let Ok(n) = c.tcp.read(&mut chunk) {
            c.beats += chunk[..n].iter().filter(|&&x| x == b'\n').count();
        }
        assert!(t.elapsed() < TIMEOUT, "no beats");
    }
    c.tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Promises a beat every 100 ms and never sends one: closed after 150.
    let (mut s, f) = Client::connect(b.addr(), "heart-beat:100,0\n");
    assert_eq!(f.headers.get("heart-beat"), Some("0,100"));
    let t = Instant::now();
    let err = s.frame().unwrap();
    assert_eq!(err.command, Command::Error);
    assert!(s.frame().is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn shutdown_is_prompt_with_clients_connected() {
    let b = start(Config::default());
    let (_c, _) = Client::connect(b.addr(), "");
    let t = Instant::now();
    b.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn binary_prints_where_it_listens_and_exits_zero_on_sigterm() {
    let mut child = Process::new(env!("CARGO_BIN_EXE_stomp-broker"))
        .args(["--listen", "127.0.0.1:0", "--memory", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let (_c, _) = Client::connect(addr, "");
    // The port is taken now: a second broker says so and exits non-zero.
    let out = Process::new(env!("CARGO_BIN_EXE_stomp-broker"))
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
    let out = Process::new(env!("CARGO_BIN_EXE_stomp-broker"))
        .args(["--prefetch", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefetch"));

    let t = Instant::now();
    Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn error_survives_unread_input_after_the_bad_frame() {
    let b = start(Config::default());
    let (mut bad, _) = Client::connect(b.addr(), "");
    let mut wire = b"BOGUS\n\n\0".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 200_000));
    // The broker stops reading after the ERROR; write what fits.
    bad.tcp
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = bad.tcp.write_all(&wire);
    std::thread::sleep(Duration::from_millis(100));
    let err = bad.frame().expect("the ERROR is not lost to a reset");
    assert_eq!(err.command, Command::Error);
    assert!(err.message_header().unwrap().contains("unknown command"));
}

#[test]
fn consumer_keeps_up_while_the_queue_is_full() {
    let b = start(Config {
        max_queue_memory: Some(128 * 1024),
        ..Config::default()
    });
    let (mut c, _) = Client::connect(b.addr(), "");
    c.write(b"SUBSCRIBE\nid:0\ndestination:/queue/full2\nreceipt:s\n\n\0");
    assert_eq!(c.frame().unwrap().receipt_id(), Some("s"));
    let (mut p, _) = Client::connect(b.addr(), "");
    let n = 50_000;
    let mut wire = Vec::new();
    for i in 0..n {
        wire.extend_from_slice(format!("SEND\ndestination:/queue/full2\n\n{i:0200}\0").as_bytes());
    }
    let writer = std::thread::spawn(move || {
        p.write(&wire);
        p
    });
    for i in 0..n {
        let m = c.frame().unwrap();
        assert_eq!(m.body, format!("{i:0200}").as_bytes(), "message {i}");
    }
    drop(writer.join().unwrap());
}

#[test]
fn connections_over_the_limit_get_an_error() {
    let b = start(Config {
        max_connections: 1,
        ..Config::default()
    });
    let (_first, _) = Client::connect(b.addr(), "");
    let tcp = TcpStream::connect(b.addr()).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut c = Client {
        tcp,
        buf: BytesMut::new(),
        dec: Decoder::new(Version::V1_2),
        beats: 0,
    };
    let err = c.frame().expect("an ERROR");
    assert_eq!(err.command, Command::Error);
    assert!(
        err.message_header()
            .unwrap()
            .contains("too many connections")
    );
}

/// A client that sends its frames and closes at once (FIN in the same read
/// as the data, or a little later): the broker takes the frames, notices
/// the end of stream and closes its side; the messages are delivered.
#[test]
fn frames_then_close_are_taken_and_the_close_noticed() {
    let b = start(Config::default());
    let (mut consumer, _) = Client::connect(b.addr(), "");
    consumer.write(b"SUBSCRIBE\nid:0\ndestination:/queue/fin\nreceipt:s\n\n\0");
    assert_eq!(consumer.frame().unwrap().command, Command::Receipt);
    for i in 0..20 {
        let mut tcp = TcpStream::connect(b.addr()).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.write_all(
            format!(
                "CONNECT\naccept-version:1.2\nhost:x\n\n\0SEND\ndestination:/queue/fin\n\n{i}\0"
            )
            .as_bytes(),
        )
        .unwrap();
        if i % 2 == 1 {
            // The FIN in a read of its own, after the data was taken.
            std::thread::sleep(Duration::from_millis(20));
        }
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest)
            .expect("the broker closes its side within the timeout");
        assert!(rest.starts_with(b"CONNECTED"), "round {i}");
        let m = consumer.frame().expect("MESSAGE");
        assert_eq!(m.command, Command::Message);
        assert_eq!(m.body, i.to_string().as_bytes());
    }
}
