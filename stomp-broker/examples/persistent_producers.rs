//! Persistent SENDs with receipts per second, producers only (nothing
//! consumes, so every message must reach the disk): P producer connections,
//! each sending one `persistent:true` message and waiting for its RECEIPT
//! before the next. Works against any STOMP broker; used by
//! `scripts/bench/durable.sh` beside RabbitMQ and ActiveMQ (`stomp bench`
//! always runs a consumer, which lets a broker skip the disk for messages
//! consumed at once).
//!
//! ```text
//! cargo run --release -p stomp-broker --example persistent_producers -- \
//!     --addr 127.0.0.1:61613 --producers 8 --seconds 5 [--size 128]
//!     [--login guest --passcode guest --vhost /] [--dest /queue/x]
//! ```
//!
//! Prints one JSON line: `{"producers":8,"sent":N,"seconds":S,"msgs_per_s":R}`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_frame::{Command, Decoder, Item, Version};

struct Opts {
    addr: String,
    producers: usize,
    seconds: f64,
    size: usize,
    login: String,
    passcode: String,
    vhost: String,
    dest: String,
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:61613".into(),
        producers: 1,
        seconds: 5.0,
        size: 128,
        login: String::new(),
        passcode: String::new(),
        vhost: "localhost".into(),
        dest: format!("/queue/durable-bench-{}", std::process::id()),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--addr" => o.addr = v,
            "--producers" => o.producers = v.parse().expect("--producers N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--size" => o.size = v.parse().expect("--size BYTES"),
            "--login" => o.login = v,
            "--passcode" => o.passcode = v,
            "--vhost" => o.vhost = v,
            "--dest" => o.dest = v,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    dec: Decoder,
}

impl Conn {
    fn next(&mut self) -> std::io::Result<Command> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(Item::Frame(f))) => {
                    if f.command == Command::Error {
                        return Err(std::io::Error::other(format!(
                            "ERROR: {:?} {}",
                            f.headers.get("message"),
                            String::from_utf8_lossy(&f.body)
                        )));
                    }
                    return Ok(f.command);
                }
                Ok(Some(Item::Heartbeat)) => continue,
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let mut chunk = [0u8; 16384];
            let n = self.tcp.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn producer(o: &Opts, start: &Barrier, deadline: &dyn Fn() -> Instant) -> std::io::Result<u64> {
    let tcp = TcpStream::connect(&o.addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut c = Conn {
        tcp,
        buf: BytesMut::new(),
        dec: Decoder::new(Version::V1_2),
    };
    let mut connect = format!(
        "CONNECT\naccept-version:1.2\nhost:{}\nheart-beat:0,0\n",
        o.vhost
    );
    if !o.login.is_empty() {
        connect.push_str(&format!("login:{}\npasscode:{}\n", o.login, o.passcode));
    }
    connect.push_str("\n\0");
    c.tcp.write_all(connect.as_bytes())?;
    if c.next()? != Command::Connected {
        return Err(std::io::Error::other("no CONNECTED"));
    }
    let body = "x".repeat(o.size);
    start.wait();
    let end = deadline();
    let mut sent = 0u64;
    let mut frame = Vec::with_capacity(o.size + 200);
    while Instant::now() < end {
        frame.clear();
        write!(
            frame,
            "SEND\ndestination:{}\npersistent:true\nreceipt:{sent}\ncontent-length:{}\n\n{body}\0",
            o.dest, o.size
        )?;
        c.tcp.write_all(&frame)?;
        if c.next()? != Command::Receipt {
            return Err(std::io::Error::other("expected a RECEIPT"));
        }
        sent += 1;
    }
    let _ = c.tcp.write_all(b"DISCONNECT\n\n\0");
    Ok(sent)
}

fn main() {
    let o = Arc::new(parse());
    let start = Arc::new(Barrier::new(o.producers + 1));
    let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
    let threads: Vec<_> = (0..o.producers)
        .map(|_| {
            let (o, start, t0) = (o.clone(), start.clone(), t0.clone());
            std::thread::spawn(move || {
                let secs = o.seconds;
                producer(&o, &start, &|| {
                    *t0.get_or_init(Instant::now) + Duration::from_secs_f64(secs)
                })
            })
        })
        .collect();
    start.wait();
    let began = *t0.get_or_init(Instant::now);
    let mut sent = 0;
    for t in threads {
        match t.join().expect("producer thread") {
            Ok(n) => sent += n,
            Err(e) => {
                eprintln!("persistent_producers: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{{\"producers\":{},\"sent\":{sent},\"seconds\":{secs:.3},\"msgs_per_s\":{:.1}}}",
        o.producers,
        sent as f64 / secs
    );
}
