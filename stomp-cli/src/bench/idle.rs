//! `stomp bench --idle-connections N --hold SECONDS`: opens N STOMP
//! connections with heart-beats from one mio event loop, times how long the
//! broker takes to accept them all (TCP connect through CONNECTED), then
//! holds them, sending and reading heart-beats, so the broker's memory per
//! connection can be measured (`--broker-pid` reads its VmRSS before and
//! while holding).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use stomp_frame::{Encoder, HeartBeat, Version};

use super::rss_kib;
use crate::UsageError;
use crate::args::BenchArgs;
use crate::conn::{Target, connect_hint};

/// The results of an idle-connections run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Always `"idle"`.
    pub mode: &'static str,
    /// `idle_{N}conn_hb{sx},{sy}`.
    pub scenario: String,
    /// `--label`.
    pub label: Option<String>,
    /// Broker address.
    pub broker: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that got CONNECTED.
    pub opened: usize,
    /// Connections refused, reset or answered with an ERROR.
    pub failed: usize,
    /// Seconds from the first connect to the last CONNECTED.
    pub accept_s: f64,
    /// Seconds the connections were held.
    pub hold_s: f64,
    /// Open connections the broker closed (during the accept phase or the hold).
    pub closed_while_held: usize,
    /// Broker VmRSS before the first connection, KiB (`--broker-pid`).
    pub rss_before_kib: Option<u64>,
    /// Broker VmRSS at the end of the hold, all connections open, KiB.
    pub rss_held_kib: Option<u64>,
    /// (held - before) / opened, KiB.
    pub rss_per_conn_kib: Option<f64>,
}

/// Human-readable lines.
pub fn human(r: &IdleReport) -> String {
    let mut s = format!(
        "{}{} against {}: {} of {} connections accepted in {:.2} s ({} failed); held {:.1} s, {} closed by the broker\n",
        r.scenario,
        r.label
            .as_ref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        r.broker,
        r.opened,
        r.connections,
        r.accept_s,
        r.failed,
        r.hold_s,
        r.closed_while_held
    );
    if let (Some(b), Some(h), Some(p)) = (r.rss_before_kib, r.rss_held_kib, r.rss_per_conn_kib) {
        s.push_str(&format!(
            "broker RSS {b} KiB before, {h} KiB holding: {p:.2} KiB per connection\n"
        ));
    }
    s
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Handshake,
    Open,
    Dead,
}

struct Slot {
    stream: TcpStream,
    state: State,
    /// CONNECT bytes not yet written.
    pending: usize,
    /// Bytes read while waiting for CONNECTED.
    head: Vec<u8>,
}

/// Opens, times and holds the connections.
pub fn run(a: &BenchArgs, target: &Target, n: usize) -> anyhow::Result<IdleReport> {
    let hb: HeartBeat = a
        .heart_beat
        .parse()
        .map_err(|e| UsageError(format!("--heart-beat: {e}")))?;
    // Each connection is a file descriptor here too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let address = target.address();
    let addr: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| anyhow!(connect_hint(&address, &e.to_string())))?
        .next()
        .ok_or_else(|| anyhow!("{address} resolves to no address"))?;
    let connect = Encoder::new(Version::V1_2)
        .to_bytes(&target.connect_frame(hb))
        .context("encoding CONNECT")?;
    let rss_before = a.broker_pid.and_then(rss_kib);
    if let (Some(pid), None) = (a.broker_pid, rss_before) {
        anyhow::bail!("--broker-pid {pid}: no such process to measure (/proc/{pid}/status)");
    }

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut slots: Vec<Slot> = Vec::with_capacity(n);
    let (mut in_flight, mut opened, mut failed) = (0usize, 0usize, 0usize);
    let mut first_error: Option<String> = None;
    let start = Instant::now();
    let give_up = start + Duration::from_secs(120).max(target.timeout);
    // Beat at half our interval (the spec allows beating more often), from
    // the first connection on: a slow accept must not make the broker drop
    // the connections opened early.
    let beat_every = (hb.send > 0).then(|| Duration::from_millis(u64::from(hb.send) / 2));
    let mut next_beat = start + beat_every.unwrap_or(Duration::from_secs(3600));
    let mut closed = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    while opened + failed < n && Instant::now() < give_up {
        while in_flight < a.concurrency.max(1) && slots.len() < n {
            let token = Token(slots.len());
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    poll.registry().register(
                        &mut s,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    slots.push(Slot {
                        stream: s,
                        state: State::Connecting,
                        pending: connect.len(),
                        head: Vec::new(),
                    });
                    in_flight += 1;
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| connect_hint(&address, &e.to_string()));
                    failed += 1;
                    // Keep tokens aligned with slots: a dead placeholder is not
                    // possible without a stream, so stop opening more.
                    if slots.is_empty() {
                        return Err(anyhow!(first_error.unwrap_or_default()));
                    }
                    break;
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        if let Some(every) = beat_every
            && Instant::now() >= next_beat
        {
            closed += beat(&mut slots);
            next_beat += every;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let slot = &mut slots[i];
            if slot.state == State::Open {
                if ev.is_readable() && !matches!(drain(&mut slot.stream, &mut buf, None), Ok(true))
                {
                    slot.state = State::Dead;
                    closed += 1;
                }
                continue;
            }
            if slot.state == State::Connecting && (ev.is_writable() || ev.is_error()) {
                match slot.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        first_error.get_or_insert_with(|| connect_hint(&address, &e.to_string()));
                        slot.state = State::Dead;
                        failed += 1;
                        in_flight -= 1;
                        continue;
                    }
                }
                match slot.stream.peer_addr() {
                    Ok(_) => {
                        let _ = slot.stream.set_nodelay(true);
                        slot.state = State::Handshake;
                    }
                    Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                    Err(e) => {
                        first_error.get_or_insert_with(|| connect_hint(&address, &e.to_string()));
                        slot.state = State::Dead;
                        failed += 1;
                        in_flight -= 1;
                        continue;
                    }
                }
            }
            if slot.state == State::Handshake && slot.pending > 0 {
                let from = connect.len() - slot.pending;
                match slot.stream.write(&connect[from..]) {
                    Ok(k) => slot.pending -= k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        slot.state = State::Dead;
                        failed += 1;
                        in_flight -= 1;
                        continue;
                    }
                }
            }
            if slot.state == State::Handshake && ev.is_readable() {
                match drain(&mut slot.stream, &mut buf, Some(&mut slot.head)) {
                    Ok(open) => {
                        if let Some(end) = slot.head.iter().position(|&b| b == 0) {
                            let head = &slot.head[..end];
                            if head.starts_with(b"CONNECTED") {
                                slot.state = State::Open;
                                opened += 1;
                            } else {
                                first_error.get_or_insert_with(|| {
                                    format!(
                                        "the broker answered: {}",
                                        String::from_utf8_lossy(head).replace('\n', " ")
                                    )
                                });
                                slot.state = State::Dead;
                                failed += 1;
                            }
                            in_flight -= 1;
                            slot.head = Vec::new();
                        } else if !open {
                            first_error.get_or_insert_with(|| {
                                "the broker closed a connection before CONNECTED".into()
                            });
                            slot.state = State::Dead;
                            failed += 1;
                            in_flight -= 1;
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        slot.state = State::Dead;
                        failed += 1;
                        in_flight -= 1;
                    }
                }
            }
        }
    }
    let accept_s = start.elapsed().as_secs_f64();
    if opened < n {
        eprintln!(
            "stomp bench: {opened} of {n} connections accepted; first error: {}",
            first_error.as_deref().unwrap_or("none (timed out)")
        );
    }
    eprintln!("holding {opened} connections for {} s", a.hold);

    // Hold: keep beating, read and drop what the broker sends, count
    // connections it closes.
    let hold = Duration::from_secs_f64(a.hold);
    let hold_start = Instant::now();
    if beat_every.is_none() {
        next_beat = hold_start + hold;
    }
    while hold_start.elapsed() < hold {
        let left = hold.saturating_sub(hold_start.elapsed());
        let wait = left.min(next_beat.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, Some(wait))?;
        for ev in events.iter() {
            let slot = &mut slots[ev.token().0];
            if slot.state == State::Open && ev.is_readable() {
                match drain(&mut slot.stream, &mut buf, None) {
                    Ok(true) => {}
                    _ => {
                        slot.state = State::Dead;
                        closed += 1;
                    }
                }
            }
        }
        if let Some(every) = beat_every
            && Instant::now() >= next_beat
        {
            closed += beat(&mut slots);
            next_beat += every;
        }
    }
    let rss_held = a.broker_pid.and_then(rss_kib);
    let rss_per_conn = match (rss_before, rss_held) {
        (Some(b), Some(h)) if opened > 0 => Some((h as f64 - b as f64) / opened as f64),
        _ => None,
    };
    Ok(IdleReport {
        mode: "idle",
        scenario: format!("idle_{n}conn_hb{hb}"),
        label: a.label.clone(),
        broker: address,
        connections: n,
        opened,
        failed,
        accept_s,
        hold_s: hold_start.elapsed().as_secs_f64(),
        closed_while_held: closed,
        rss_before_kib: rss_before,
        rss_held_kib: rss_held,
        rss_per_conn_kib: rss_per_conn,
    })
}

/// Writes a heart-beat EOL to every open connection; returns how many
/// turned out closed.
fn beat(slots: &mut [Slot]) -> usize {
    let mut closed = 0;
    for slot in slots.iter_mut().filter(|s| s.state == State::Open) {
        match slot.stream.write(b"\n") {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                slot.state = State::Dead;
                closed += 1;
            }
        }
    }
    closed
}

/// Reads until `WouldBlock` (edge-triggered), keeping the bytes in `keep`
/// when given. Returns whether the connection is still open.
fn drain(
    s: &mut TcpStream,
    buf: &mut [u8],
    mut keep: Option<&mut Vec<u8>>,
) -> std::io::Result<bool> {
    loop {
        match s.read(buf) {
            Ok(0) => return Ok(false),
            Ok(k) => {
                if let Some(v) = keep.as_deref_mut() {
                    v.extend_from_slice(&buf[..k]);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
