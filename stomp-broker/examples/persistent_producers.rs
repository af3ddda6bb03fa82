//! Persistent SENDs with receipts per second, producers only (nothing
//! consumes, so every message must reach the disk): P producer connections,
//! each sending one `persistent:true` message and waiting for its RECEIPT
//! before the next. Works against any STOMP broker; used by
//! `scripts/bench/durable.sh` beside RabbitMQ and ActiveMQ (`stomp bench`
//! always runs a consumer, which lets a broker skip the disk for messages
//! consumed at once).
//!
//! All connections are driven by one thread on an event loop, so that on a
//! small machine the load generator takes as little CPU from the broker as
//! it can (64 blocking threads on 2 cores measure the scheduler as much as
//! the broker). `--threads` runs one blocking thread per producer instead,
//! for comparison.
//!
//! ```text
//! cargo run --release -p stomp-broker --example persistent_producers -- \
//!     --addr 127.0.0.1:61613 --producers 8 --seconds 5 [--size 128]
//!     [--login guest --passcode guest --vhost /] [--dest /queue/x] [--threads]
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
    threads: bool,
}

const USAGE: &str = "usage: persistent_producers [--addr HOST:PORT] [--producers N] \
[--seconds S] [--size BYTES] [--login L --passcode P] [--vhost V] [--dest /queue/x] [--threads]";

/// The options, or what is wrong with the command line.
fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:61613".into(),
        producers: 1,
        seconds: 5.0,
        size: 128,
        login: String::new(),
        passcode: String::new(),
        vhost: "localhost".into(),
        dest: format!("/queue/durable-bench-{}", std::process::id()),
        threads: false,
    };
    fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag} wants a number, not {v:?}"))
    }
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--threads" => {
                o.threads = true;
                continue;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => {}
        }
        let v = args.next().ok_or_else(|| format!("{flag} wants a value"))?;
        match flag.as_str() {
            "--addr" => o.addr = v,
            "--producers" => o.producers = number(&flag, &v)?,
            "--seconds" => o.seconds = number(&flag, &v)?,
            "--size" => o.size = number(&flag, &v)?,
            "--login" => o.login = v,
            "--passcode" => o.passcode = v,
            "--vhost" => o.vhost = v,
            "--dest" => o.dest = v,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.producers == 0 || o.seconds.is_nan() || o.seconds <= 0.0 {
        return Err("--producers and --seconds must be above 0".into());
    }
    Ok(o)
}

struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    dec: Decoder,
}

impl Conn {
    /// The next frame's command from what is buffered, if a whole frame is
    /// there; an ERROR frame is an error.
    fn decoded(&mut self) -> std::io::Result<Option<Command>> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(Item::Frame(f))) if f.command == Command::Error => {
                    return Err(std::io::Error::other(format!(
                        "ERROR: {:?} {}",
                        f.headers.get("message"),
                        String::from_utf8_lossy(&f.body)
                    )));
                }
                Ok(Some(Item::Frame(f))) => return Ok(Some(f.command)),
                Ok(Some(Item::Heartbeat)) => {}
                Ok(None) => return Ok(None),
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
    }

    /// Blocks for the next frame's command.
    fn next(&mut self) -> std::io::Result<Command> {
        loop {
            if let Some(command) = self.decoded()? {
                return Ok(command);
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

impl Opts {
    /// The SEND frame carrying message number `n`.
    fn send_frame(&self, frame: &mut Vec<u8>, body: &str, n: u64) {
        frame.clear();
        write!(
            frame,
            "SEND\ndestination:{}\npersistent:true\nreceipt:{n}\ncontent-length:{}\n\n{body}\0",
            self.dest, self.size
        )
        .expect("writing to a Vec");
    }
}

/// A connected producer (CONNECT answered), blocking.
fn connect(o: &Opts) -> std::io::Result<Conn> {
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
    Ok(c)
}

/// All producers on one thread: each sends its next message when the
/// RECEIPT of the last one comes. Returns (messages confirmed, seconds).
fn event_loop(o: &Opts) -> std::io::Result<(u64, f64)> {
    use mio::{Events, Interest, Poll, Token};
    let mut conns = (0..o.producers)
        .map(|_| connect(o))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut poll = Poll::new()?;
    let mut socks = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        let tcp = c.tcp.try_clone()?;
        tcp.set_nonblocking(true)?;
        let mut tcp = mio::net::TcpStream::from_std(tcp);
        poll.registry()
            .register(&mut tcp, Token(i), Interest::READABLE)?;
        socks.push(tcp);
    }
    let body = "x".repeat(o.size);
    let mut frame = Vec::with_capacity(o.size + 200);
    let began = Instant::now();
    let end = began + Duration::from_secs_f64(o.seconds);
    let mut sent = 0u64;
    let mut open = o.producers;
    // One message in flight per connection: a SEND always fits in the
    // socket's send buffer, so the non-blocking write_all cannot stop short.
    for tcp in &mut socks {
        o.send_frame(&mut frame, &body, 0);
        tcp.write_all(&frame)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 16384];
    while open > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(60)))?;
        if events.is_empty() {
            return Err(std::io::Error::other("no RECEIPT in 60 s"));
        }
        for ev in &events {
            let i = ev.token().0;
            let c = &mut conns[i];
            // Edge-triggered: read until a short read (the queue is empty;
            // later data raises a new edge).
            loop {
                match socks[i].read(&mut chunk) {
                    Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        c.buf.extend_from_slice(&chunk[..n]);
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while let Some(command) = c.decoded()? {
                if command != Command::Receipt {
                    return Err(std::io::Error::other(format!(
                        "expected a RECEIPT, got {command:?}"
                    )));
                }
                sent += 1;
                if Instant::now() < end {
                    o.send_frame(&mut frame, &body, sent);
                    socks[i].write_all(&frame)?;
                } else {
                    open -= 1;
                }
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    for tcp in &mut socks {
        let _ = tcp.write_all(b"DISCONNECT\n\n\0");
    }
    Ok((sent, secs))
}

/// One blocking thread per producer. Returns (messages confirmed, seconds).
fn threads(o: Arc<Opts>) -> std::io::Result<(u64, f64)> {
    let start = Arc::new(Barrier::new(o.producers + 1));
    let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
    let threads: Vec<_> = (0..o.producers)
        .map(|_| {
            let (o, start, t0) = (o.clone(), start.clone(), t0.clone());
            std::thread::spawn(move || -> std::io::Result<u64> {
                let c = connect(&o);
                // Every thread reaches the barrier, connected or not.
                start.wait();
                let mut c = c?;
                let end = *t0.get_or_init(Instant::now) + Duration::from_secs_f64(o.seconds);
                let body = "x".repeat(o.size);
                let mut frame = Vec::with_capacity(o.size + 200);
                let mut sent = 0u64;
                while Instant::now() < end {
                    o.send_frame(&mut frame, &body, sent);
                    c.tcp.write_all(&frame)?;
                    if c.next()? != Command::Receipt {
                        return Err(std::io::Error::other("expected a RECEIPT"));
                    }
                    sent += 1;
                }
                let _ = c.tcp.write_all(b"DISCONNECT\n\n\0");
                Ok(sent)
            })
        })
        .collect();
    start.wait();
    let began = *t0.get_or_init(Instant::now);
    let mut sent = 0;
    for t in threads {
        sent += t.join().expect("producer thread")?;
    }
    Ok((sent, began.elapsed().as_secs_f64()))
}

fn main() {
    let o = match parse() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("persistent_producers: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = if o.threads {
        threads(o.clone())
    } else {
        event_loop(&o)
    };
    match result {
        Ok((sent, secs)) => println!(
            "{{\"producers\":{},\"sent\":{sent},\"seconds\":{secs:.3},\"msgs_per_s\":{:.1}}}",
            o.producers,
            sent as f64 / secs
        ),
        Err(e) => {
            eprintln!("persistent_producers: {e}");
            std::process::exit(1);
        }
    }
}
