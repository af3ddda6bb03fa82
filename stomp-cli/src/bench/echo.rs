//! `stomp bench --tcp-echo`: the round trip of a plain TCP echo on loopback,
//! with the same message size and rate as a broker run. A message through a
//! broker crosses loopback twice (producer -> broker process -> consumer),
//! as an echo does (client -> echo process -> client), so this is the floor
//! for the broker's one-way latency. The echo server is a child process
//! (`stomp bench --echo-server`, hidden), as the broker is, so both paths
//! pay the same process switches.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::{Latency, histogram};
use crate::args::BenchArgs;

/// The results of an echo run.
#[derive(Debug, Clone, Serialize)]
pub struct EchoReport {
    /// Always `"tcp_echo"`.
    pub mode: &'static str,
    /// `tcp_echo_{size}b_{rate}rate`.
    pub scenario: String,
    /// `--label`.
    pub label: Option<String>,
    /// Message bytes.
    pub size: usize,
    /// Messages per second (`--rate`, 1000 when not given).
    pub rate: f64,
    /// Round trips measured.
    pub messages: u64,
    /// Round-trip time, µs.
    pub rtt_us: Latency,
}

/// Human-readable lines.
pub fn human(r: &EchoReport) -> String {
    format!(
        "{} : {} round trips, µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}\n",
        r.scenario, r.messages, r.rtt_us.p50, r.rtt_us.p90, r.rtt_us.p99, r.rtt_us.max
    )
}

/// Starts the echo server process and measures round trips.
pub fn run(a: &BenchArgs) -> anyhow::Result<EchoReport> {
    let size = a.size.max(8);
    let server = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--echo-server"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the echo server process")?;
    let mut server = KillOnDrop(Some(server));
    let mut line = String::new();
    std::io::BufReader::new(server.child().stdout.take().expect("piped"))
        .read_line(&mut line)
        .context("reading the echo server's address")?;
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected line from the echo server: {line:?}"))?;
    let client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let base = Instant::now();
    let count = a.count.unwrap_or(if a.duration.is_some() {
        u64::MAX
    } else {
        10_000
    });
    let duration = a.duration.map(Duration::from_secs_f64);
    let rate = if a.rate > 0.0 { a.rate } else { 1000.0 };
    let interval = Duration::from_secs_f64(1.0 / rate);
    // The reader: one message at a time, in order.
    let mut rd = client.try_clone()?;
    let reader = thread::spawn(move || -> std::io::Result<hdrhistogram::Histogram<u64>> {
        let mut h = histogram();
        let mut msg = vec![0u8; size];
        loop {
            match rd.read_exact(&mut msg) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(h),
                Err(e) => return Err(e),
            }
            let sent = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
            let now = base.elapsed().as_nanos() as u64;
            h.saturating_record(now.saturating_sub(sent).max(1));
        }
    });
    let mut msg = vec![b'x'; size];
    let start = Instant::now();
    let mut w = &client;
    let mut n = 0u64;
    while n < count && duration.is_none_or(|d| start.elapsed() < d) {
        let due = start + interval.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let ts = base.elapsed().as_nanos() as u64;
        msg[..8].copy_from_slice(&ts.to_le_bytes());
        w.write_all(&msg)?;
        n += 1;
    }
    thread::sleep(Duration::from_millis(100));
    client.shutdown(std::net::Shutdown::Write)?;
    let h = reader
        .join()
        .map_err(|_| anyhow::anyhow!("echo reader panicked"))??;
    if let Some(mut c) = server.0.take() {
        // It exits at the end of its connection; reap it.
        let _ = c.wait();
    }
    let scenario = format!("tcp_echo_{}b_{}rate", a.size, rate);
    Ok(EchoReport {
        mode: "tcp_echo",
        scenario,
        label: a.label.clone(),
        size: a.size,
        rate,
        messages: h.len(),
        rtt_us: Latency::from_ns(&h),
    })
}

/// Kills the echo server if the run ends early (it would wait in accept).
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The echo server process: listens on 127.0.0.1:0, prints `listening on
/// ADDR`, echoes one connection until it closes.
pub fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
    }
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}
