//! `stomp bench`: a load generator for any STOMP broker.
//!
//! ```text
//!  producer threads (one connection each)          consumer threads (one each)
//!  SEND destination, bench-p, bench-seq,   ──▶ broker ──▶  MESSAGE: latency = now - bench-ts
//!       bench-ts (ns on the bench's clock)               seq marked in a bitset per producer
//!  [receipt: at most --window unconfirmed]                [ACK after reading, client modes]
//!  reader thread: RECEIPT frees a window slot,
//!                 ERROR stops the run
//! ```
//!
//! Producers and consumers live in this one process, so the send timestamp
//! and the receive time come from the same monotonic clock. At the end the
//! bitsets give messages lost (sent but never received; for a topic, per
//! subscriber) and duplicated (received more than once).
//!
//! The hot path writes SEND frames by hand into one buffer per producer
//! (their headers are digits and a checked destination, so nothing needs
//! escaping) and decodes with `stomp-frame`: the load generator must cost
//! the machine much less than the broker it measures.
//!
//! Two other modes: [`idle`] (N connections with heart-beats, for the
//! broker's memory per connection) and [`echo`] (a plain TCP echo on
//! loopback: the latency floor).

pub mod echo;
pub mod idle;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use stomp_frame::{AckMode, Command, Encoder, Frame, Item};

use crate::args::BenchArgs;
use crate::conn::{RawConn, Target, error_text, read_some};
use crate::{Incomplete, UsageError};

/// Runs `stomp bench` and prints the report (human or `--json`).
pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    if a.echo_server {
        return echo::serve();
    }
    if a.tcp_echo {
        let r = echo::run(a)?;
        return print(a.json, &r, echo::human(&r));
    }
    let target = Target::from_args(&a.conn)?;
    if let Some(n) = a.idle_connections {
        if target.tls {
            return Err(UsageError(
                "--idle-connections opens plain TCP connections only; use a stomp:// URL".into(),
            )
            .into());
        }
        let r = idle::run(a, &target, n)?;
        print(a.json, &r, idle::human(&r))?;
        if r.opened < r.connections {
            return Err(Incomplete {
                code: 1,
                message: format!(
                    "only {} of {} connections were accepted",
                    r.opened, r.connections
                ),
            }
            .into());
        }
        return Ok(());
    }
    let r = load(a, &target)?;
    print(a.json, &r, human(&r))?;
    if r.lost > 0 || r.duplicated > 0 {
        return Err(Incomplete {
            code: 1,
            message: format!("{} messages lost, {} duplicated", r.lost, r.duplicated),
        }
        .into());
    }
    Ok(())
}

fn print<T: Serialize>(json: bool, r: &T, human: String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, r)?;
        writeln!(out)?;
    } else {
        write!(out, "{human}")?;
    }
    out.flush()?;
    Ok(())
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub samples: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            samples: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The results of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"load"`.
    pub mode: &'static str,
    /// Stopped early by Ctrl-C (SIGINT or SIGTERM): the figures cover what
    /// was sent until then.
    pub interrupted: bool,
    /// Classic STOMP benchmark name, e.g. `128b_1a_1queue_1`.
    pub scenario: String,
    /// `--label`.
    pub label: Option<String>,
    /// Broker address.
    pub broker: String,
    /// Destination used.
    pub destination: String,
    /// Producers.
    pub producers: u32,
    /// Consumers.
    pub consumers: u32,
    /// Body bytes.
    pub size: usize,
    /// Messages per second asked for (0: as fast as possible).
    pub rate: f64,
    /// Consumers' ack mode.
    pub ack: String,
    /// SENDs written.
    pub sent: u64,
    /// RECEIPTs received (with --receipts / --persistent).
    pub confirmed: u64,
    /// Deliveries expected (sent, times the consumers for a topic).
    pub expected: u64,
    /// MESSAGEs received, duplicates included.
    pub received: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries of a message a consumer (queue: any consumer) already had.
    pub duplicated: u64,
    /// Messages received that this run did not send (they were on the
    /// destination before it): consumed, and not counted anywhere else.
    pub foreign: u64,
    /// Seconds from the first SEND to the last message received.
    pub elapsed_s: f64,
    /// Seconds the producers took.
    pub send_s: f64,
    /// SENDs per second.
    pub send_rate: f64,
    /// Deliveries per second (`received / elapsed_s`).
    pub msgs_per_s: f64,
    /// Body megabytes (10^6) delivered per second.
    pub mb_per_s: f64,
    /// One-way latency (receive time minus the send timestamp), µs.
    pub latency_us: Latency,
}

fn human(r: &Report) -> String {
    let l = &r.latency_us;
    format!(
        "{interrupted}{scenario}{label} against {broker} ({dest})\n\
         sent {sent} in {send_s:.2} s ({send_rate:.0} msgs/s){confirmed}\n\
         received {received} of {expected} in {elapsed:.2} s: {rate:.0} msgs/s, {mb:.2} MB/s\n\
         lost {lost}, duplicated {dup}{foreign}\n\
         latency µs: p50 {p50:.0}  p90 {p90:.0}  p99 {p99:.0}  p99.9 {p999:.0}  max {max:.0}  (mean {mean:.0})\n",
        interrupted = if r.interrupted {
            "interrupted: the figures cover what was sent until Ctrl-C\n"
        } else {
            ""
        },
        scenario = r.scenario,
        label = r
            .label
            .as_ref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        broker = r.broker,
        dest = r.destination,
        sent = r.sent,
        send_s = r.send_s,
        send_rate = r.send_rate,
        confirmed = if r.confirmed > 0 {
            format!(", {} confirmed", r.confirmed)
        } else {
            String::new()
        },
        received = r.received,
        expected = r.expected,
        elapsed = r.elapsed_s,
        rate = r.msgs_per_s,
        mb = r.mb_per_s,
        lost = r.lost,
        dup = r.duplicated,
        foreign = if r.foreign > 0 {
            format!(
                "; {} messages already on the destination were consumed, not counted",
                r.foreign
            )
        } else {
            String::new()
        },
        p50 = l.p50,
        p90 = l.p90,
        p99 = l.p99,
        p999 = l.p999,
        max = l.max,
        mean = l.mean,
    )
}

/// The classic name: `{size}b_{producers}{a|r|p}_1{queue|topic}_{consumers}`
/// (`a` async, `r` with receipts, `p` persistent with receipts).
pub fn scenario_name(a: &BenchArgs) -> String {
    let mode = if a.persistent {
        'p'
    } else if a.receipts {
        'r'
    } else {
        'a'
    };
    let kind = if a.topic { "topic" } else { "queue" };
    let mut s = format!(
        "{}b_{}{}_1{}_{}",
        a.size, a.producers, mode, kind, a.consumers
    );
    if a.rate > 0.0 {
        s.push_str(&format!("_{}rate", a.rate));
    }
    if a.ack != crate::args::AckArg::Auto {
        s.push_str(&format!("_{}", AckMode::from(a.ack)));
    }
    s
}

/// What the threads share.
struct Shared {
    /// Monotonic origin of the `bench-ts` header.
    base: Instant,
    /// Deliveries received by all consumers.
    received: AtomicU64,
    /// SENDs written by all producers.
    sent: AtomicU64,
    /// RECEIPTs received by all producers.
    confirmed: AtomicU64,
    /// Latest receive time, ns since `base`.
    last_rx_ns: AtomicU64,
    /// When the last producer finished, ns since `base`.
    send_end_ns: AtomicU64,
    /// This run's `bench-run` header: messages without it were on the
    /// destination before (consumed, not counted).
    run: u64,
    /// Messages received that this run did not send.
    foreign: AtomicU64,
    /// Producers: stop sending (duration over, or an error elsewhere).
    stop_producers: AtomicBool,
    /// Consumers: stop reading.
    stop_consumers: AtomicBool,
    /// First error of any thread.
    error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    fn fail(&self, e: String) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
        self.stop_producers.store(true, Ordering::SeqCst);
    }
}

/// What one consumer saw.
struct ConsumerResult {
    hist: Histogram<u64>,
    /// Per producer, a bitset of sequence numbers received.
    seen: Vec<Vec<u64>>,
    received: u64,
    duplicated: u64,
}

/// Runs a load test: consumers first (subscribed and confirmed), then
/// producers, then waits for the last messages (at most `--drain-timeout`
/// without progress).
pub fn load(a: &BenchArgs, target: &Target) -> anyhow::Result<Report> {
    if a.producers == 0 || a.consumers == 0 {
        return Err(UsageError("--producers and --consumers must be at least 1".into()).into());
    }
    let destination = match &a.destination {
        Some(d) => d.clone(),
        None => format!(
            "/{}/bench-{}-{}",
            if a.topic { "topic" } else { "queue" },
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() % 1_000_000)
        ),
    };
    if destination.contains(['\n', '\r', ':', '\\']) {
        return Err(UsageError(format!(
            "--destination must not contain newlines, ':' or '\\', got {destination:?}"
        ))
        .into());
    }
    let duration = a.duration.map(Duration::from_secs_f64);
    let total = match (a.count, duration) {
        (Some(c), _) => Some(c),
        (None, None) => Some(100_000),
        (None, Some(_)) => None,
    };
    let shared = Arc::new(Shared {
        base: Instant::now(),
        received: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        confirmed: AtomicU64::new(0),
        last_rx_ns: AtomicU64::new(0),
        send_end_ns: AtomicU64::new(0),
        run: u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        foreign: AtomicU64::new(0),
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        error: std::sync::Mutex::new(None),
    });
    let ack: AckMode = a.ack.into();
    // Ctrl-C stops the producers; what was measured until then is reported.
    let interrupted = crate::interrupt_flag()?;

    // Consumers, each subscribed (confirmed by a receipt) before anything is sent.
    let mut consumers = Vec::new();
    for i in 0..a.consumers {
        let mut conn = RawConn::open(target).with_context(|| format!("consumer {i}"))?;
        let mut sub = Frame::subscribe("0", destination.clone(), ack).header("receipt", "sub-0");
        if ack.needs_ack() {
            sub = sub
                .header("activemq.prefetchSize", "1000")
                .header("prefetch-count", "1000");
        }
        conn.send(&sub)?;
        loop {
            match conn.next_frame(target.timeout)? {
                Some(f) if f.command == Command::Receipt => break,
                Some(f) if f.command == Command::Error => {
                    bail!("cannot subscribe to {destination}: {}", error_text(&f))
                }
                // Already on the destination: not this run's.
                Some(f) if f.command == Command::Message => {
                    shared.foreign.fetch_add(1, Ordering::Relaxed);
                    if ack.needs_ack()
                        && let Some(a) = Frame::ack_for(&f, conn.version)
                    {
                        conn.send(&a)?;
                    }
                }
                Some(f) => bail!("expected RECEIPT for SUBSCRIBE, got {:?}", f.command),
                None => bail!("no RECEIPT for SUBSCRIBE within {:?}", target.timeout),
            }
        }
        let sh = Arc::clone(&shared);
        let producers = a.producers as usize;
        consumers.push(
            thread::Builder::new()
                .name(format!("bench-consumer-{i}"))
                .spawn(move || consume(conn, &sh, ack, producers))?,
        );
    }

    // Producers.
    let body = bytes::Bytes::from(vec![b'x'; a.size]);
    let with_receipts = a.receipts || a.persistent;
    let t0 = shared.now_ns();
    let mut producers = Vec::new();
    for i in 0..a.producers {
        let conn = RawConn::open(target).with_context(|| format!("producer {i}"))?;
        let count = total.map(|t| {
            t / u64::from(a.producers) + u64::from(u64::from(i) < t % u64::from(a.producers))
        });
        let spec = ProducerSpec {
            id: i,
            destination: destination.clone(),
            body: body.clone(),
            count,
            duration,
            rate: a.rate / f64::from(a.producers),
            persistent: a.persistent,
            receipts: with_receipts,
            window: a.window.max(1),
            run: shared.run,
        };
        let sh = Arc::clone(&shared);
        producers.push(
            thread::Builder::new()
                .name(format!("bench-producer-{i}"))
                .spawn(move || {
                    let sent = produce(conn, &sh, &spec);
                    sh.send_end_ns.fetch_max(sh.now_ns(), Ordering::Relaxed);
                    sent
                })?,
        );
    }

    let bar = progress_bar(a, total);
    let mut sent_per_producer = Vec::new();
    for p in producers {
        while !p.is_finished() {
            if interrupted.load(Ordering::Relaxed) {
                shared.stop_producers.store(true, Ordering::SeqCst);
            }
            tick(&bar, &shared, total);
            thread::sleep(Duration::from_millis(50));
        }
        sent_per_producer.push(
            p.join()
                .map_err(|_| anyhow!("a producer thread panicked"))?,
        );
    }
    // When the producers ended, not when this loop noticed.
    let send_end = match shared.send_end_ns.load(Ordering::Relaxed) {
        0 => shared.now_ns(),
        t => t,
    };
    let sent: u64 = sent_per_producer.iter().sum();
    let fanout = if a.topic { u64::from(a.consumers) } else { 1 };
    let expected = sent * fanout;

    // Drain: wait for the expected deliveries, or no progress for the drain timeout.
    let drain = Duration::from_secs_f64(a.drain_timeout.max(0.0));
    let mut last = shared.received.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while shared.error.lock().map(|e| e.is_none()).unwrap_or(false) {
        let now = shared.received.load(Ordering::Relaxed);
        if now >= expected {
            break;
        }
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= drain {
            break;
        }
        tick(&bar, &shared, total);
        thread::sleep(Duration::from_millis(10));
    }
    shared.stop_consumers.store(true, Ordering::SeqCst);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut results = Vec::new();
    for c in consumers {
        results.push(
            c.join()
                .map_err(|_| anyhow!("a consumer thread panicked"))?,
        );
    }
    if let Some(e) = shared
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        bail!("{e}");
    }

    // Loss and duplicates.
    let (mut lost, mut duplicated) = (0u64, 0u64);
    let mut hist = histogram();
    let mut received = 0u64;
    for r in &results {
        hist.add(&r.hist).ok();
        received += r.received;
        duplicated += r.duplicated;
    }
    if a.topic {
        for r in &results {
            for (p, &n) in sent_per_producer.iter().enumerate() {
                lost += n - count_bits(r.seen.get(p), n);
            }
        }
    } else {
        for (p, &n) in sent_per_producer.iter().enumerate() {
            let mut union: Vec<u64> = Vec::new();
            for r in &results {
                if let Some(bits) = r.seen.get(p) {
                    if union.len() < bits.len() {
                        union.resize(bits.len(), 0);
                    }
                    for (w, b) in union.iter_mut().zip(bits) {
                        duplicated += u64::from((*w & b).count_ones());
                        *w |= b;
                    }
                }
            }
            lost += n - count_bits(Some(&union), n);
        }
    }
    let last_rx = shared.last_rx_ns.load(Ordering::Relaxed).max(send_end);
    let elapsed_s = (last_rx.saturating_sub(t0)) as f64 / 1e9;
    let send_s = (send_end - t0) as f64 / 1e9;
    let per_s = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    Ok(Report {
        mode: "load",
        interrupted: interrupted.load(Ordering::Relaxed),
        scenario: scenario_name(a),
        label: a.label.clone(),
        broker: target.address(),
        destination,
        producers: a.producers,
        consumers: a.consumers,
        size: a.size,
        rate: a.rate,
        ack: ack.to_string(),
        sent,
        confirmed: shared.confirmed.load(Ordering::Relaxed),
        expected,
        received,
        lost,
        duplicated,
        foreign: shared.foreign.load(Ordering::Relaxed),
        elapsed_s,
        send_s,
        send_rate: per_s(sent, send_s),
        msgs_per_s: per_s(received, elapsed_s),
        mb_per_s: per_s(received, elapsed_s) * a.size as f64 / 1e6,
        latency_us: Latency::from_ns(&hist),
    })
}

/// Bits set among the first `n` of a bitset.
fn count_bits(bits: Option<&Vec<u64>>, n: u64) -> u64 {
    let Some(bits) = bits else { return 0 };
    let mut c = 0u64;
    for (i, w) in bits.iter().enumerate() {
        let start = i as u64 * 64;
        if start >= n {
            break;
        }
        let keep = n - start;
        let w = if keep >= 64 {
            *w
        } else {
            w & ((1u64 << keep) - 1)
        };
        c += u64::from(w.count_ones());
    }
    c
}

fn progress_bar(a: &BenchArgs, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => {
            let fanout = if a.topic { u64::from(a.consumers) } else { 1 };
            indicatif::ProgressBar::new(t * fanout)
        }
        None => indicatif::ProgressBar::new(a.duration.map_or(0, |d| (d * 1000.0) as u64)),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn tick(bar: &Option<indicatif::ProgressBar>, sh: &Shared, total: Option<u64>) {
    let Some(b) = bar else { return };
    let rx = sh.received.load(Ordering::Relaxed);
    let tx = sh.sent.load(Ordering::Relaxed);
    let secs = sh.base.elapsed().as_secs_f64().max(1e-9);
    if total.is_some() {
        b.set_position(rx);
    } else {
        b.set_position((secs * 1000.0) as u64);
    }
    b.set_message(format!("sent {tx}, received {rx}"));
}

struct ProducerSpec {
    id: u32,
    destination: String,
    body: bytes::Bytes,
    count: Option<u64>,
    duration: Option<Duration>,
    rate: f64,
    persistent: bool,
    receipts: bool,
    window: usize,
    /// The run's `bench-run` header.
    run: u64,
}

/// Writes SENDs; returns how many were written. A reader thread takes
/// RECEIPTs (freeing window slots) and ERRORs (stopping the run).
fn produce(conn: RawConn, sh: &Arc<Shared>, spec: &ProducerSpec) -> u64 {
    let (slots_tx, slots_rx) = stomp_client::crossbeam_channel::bounded::<()>(spec.window);
    let reader = {
        let mut rconn = RawConn {
            stream: conn.stream.clone(),
            buf: conn.buf.clone(),
            decoder: stomp_frame::Decoder::with_limits(conn.version, conn.decoder.limits()),
            version: conn.version,
        };
        let sh = Arc::clone(sh);
        let id = spec.id;
        let expect_receipts = spec.receipts;
        thread::spawn(move || {
            let done = |sh: &Shared| {
                sh.stop_consumers.load(Ordering::Relaxed)
                    || (sh.stop_producers.load(Ordering::Relaxed) && !expect_receipts)
            };
            loop {
                match rconn.next_frame(Duration::from_millis(100)) {
                    Ok(Some(f)) if f.command == Command::Receipt => {
                        if f.receipt_id() == Some("bench-end") {
                            return;
                        }
                        sh.confirmed.fetch_add(1, Ordering::Relaxed);
                        let _ = slots_rx.try_recv();
                    }
                    Ok(Some(f)) if f.command == Command::Error => {
                        sh.fail(format!(
                            "producer {id}: the broker said: {}",
                            error_text(&f)
                        ));
                        return;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        if done(&sh) {
                            return;
                        }
                    }
                    Err(e) => {
                        if !done(&sh) {
                            sh.fail(format!("producer {id}: {e}"));
                        }
                        return;
                    }
                }
            }
        })
    };
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let stream = &conn.stream;
    let start = Instant::now();
    let interval = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    let mut seq = 0u64;
    let result: anyhow::Result<()> = (|| {
        loop {
            if spec.count.is_some_and(|c| seq >= c)
                || spec.duration.is_some_and(|d| start.elapsed() >= d)
                || sh.stop_producers.load(Ordering::Relaxed)
            {
                break;
            }
            if let Some(iv) = interval {
                let due = start + iv.mul_f64(seq as f64);
                // --rate R --duration D sends R x D, not one more at D.
                if spec.duration.is_some_and(|d| due - start >= d) {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
            }
            if spec.receipts {
                // Blocks while `window` SENDs are unconfirmed.
                loop {
                    match slots_tx.send_timeout((), Duration::from_millis(100)) {
                        Ok(()) => break,
                        Err(_) if sh.stop_producers.load(Ordering::Relaxed) => return Ok(()),
                        Err(_) => {}
                    }
                }
            }
            write_send(&mut out, spec, seq, sh.now_ns());
            seq += 1;
            sh.sent.fetch_add(1, Ordering::Relaxed);
            if interval.is_some() || out.len() >= 32 * 1024 || spec.receipts {
                stream.write_all(&out)?;
                out.clear();
            }
        }
        stream.write_all(&out)?;
        out.clear();
        if spec.receipts {
            // Wait for the outstanding receipts (bounded).
            let until = Instant::now() + Duration::from_secs(30);
            while !slots_tx.is_empty() && Instant::now() < until {
                if sh.error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        sh.fail(format!("producer {}: {e}", spec.id));
    }
    // The reader stops once the consumers are told to (or on error); the
    // connection closes when both halves are dropped.
    let _ = reader;
    seq
}

/// Appends one SEND frame (1.x encoding; header values need no escaping).
fn write_send(out: &mut Vec<u8>, spec: &ProducerSpec, seq: u64, ts: u64) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "SEND\ndestination:{}\nbench-run:{}\nbench-p:{}\nbench-seq:{}\nbench-ts:{}\ncontent-length:{}\n",
        spec.destination,
        spec.run,
        spec.id,
        seq,
        ts,
        spec.body.len()
    );
    if spec.persistent {
        out.extend_from_slice(b"persistent:true\n");
    }
    if spec.receipts {
        let _ = writeln!(out, "receipt:{seq}");
    }
    out.push(b'\n');
    out.extend_from_slice(&spec.body);
    out.push(0);
}

/// Reads MESSAGEs until told to stop; records latency and sequence numbers.
fn consume(mut conn: RawConn, sh: &Arc<Shared>, ack: AckMode, producers: usize) -> ConsumerResult {
    let mut r = ConsumerResult {
        hist: histogram(),
        seen: vec![Vec::new(); producers],
        received: 0,
        duplicated: 0,
    };
    let enc = Encoder::new(conn.version);
    let mut acks = BytesMut::new();
    let _ = conn
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)));
    loop {
        let mut last_msg: Option<Frame> = None;
        loop {
            let item = match conn.decoder.decode(&mut conn.buf) {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    sh.fail(format!("consumer: bad frame from the broker: {e}"));
                    return r;
                }
            };
            let Item::Frame(f) = item else { continue };
            match f.command {
                Command::Message => {
                    let now = sh.now_ns();
                    let num = |k: &str| f.headers.get(k).and_then(|v| v.parse::<u64>().ok());
                    let ours = num("bench-run") == Some(sh.run);
                    if !ours {
                        sh.foreign.fetch_add(1, Ordering::Relaxed);
                    } else if let (Some(p), Some(seq), Some(ts)) =
                        (num("bench-p"), num("bench-seq"), num("bench-ts"))
                    {
                        r.hist.saturating_record(now.saturating_sub(ts).max(1));
                        if let Some(bits) = r.seen.get_mut(p as usize) {
                            let (w, b) = ((seq / 64) as usize, seq % 64);
                            if bits.len() <= w {
                                bits.resize(w + 1, 0);
                            }
                            if bits[w] & (1 << b) != 0 {
                                r.duplicated += 1;
                            }
                            bits[w] |= 1 << b;
                        }
                    }
                    if ours {
                        r.received += 1;
                        sh.received.fetch_add(1, Ordering::Relaxed);
                        sh.last_rx_ns.fetch_max(now, Ordering::Relaxed);
                    }
                    match ack {
                        AckMode::Auto => {}
                        AckMode::Client => last_msg = Some(f),
                        AckMode::ClientIndividual => {
                            if let Some(a) = Frame::ack_for(&f, conn.version) {
                                let _ = enc.encode(&a, &mut acks);
                            }
                        }
                    }
                }
                Command::Error => {
                    sh.fail(format!("consumer: the broker said: {}", error_text(&f)));
                    return r;
                }
                _ => {}
            }
        }
        if let Some(m) = last_msg
            && let Some(a) = Frame::ack_for(&m, conn.version)
        {
            let _ = enc.encode(&a, &mut acks);
        }
        if !acks.is_empty() {
            if let Err(e) = conn.stream.write_all(&acks) {
                sh.fail(format!("consumer: cannot write ACKs: {e}"));
                return r;
            }
            acks.clear();
        }
        if sh.stop_consumers.load(Ordering::Relaxed) {
            return r;
        }
        match read_some(&conn.stream, &mut conn.buf) {
            Ok(0) => {
                if !sh.stop_consumers.load(Ordering::Relaxed) {
                    sh.fail("consumer: the broker closed the connection".into());
                }
                return r;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                sh.fail(format!("consumer: {e}"));
                return r;
            }
        }
    }
}

/// Reads `VmRSS` of a process, KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        b: BenchArgs,
    }

    #[test]
    fn scenario_names() {
        let n = |args: &[&str]| {
            let mut v = vec!["x"];
            v.extend_from_slice(args);
            scenario_name(&T::parse_from(v).b)
        };
        assert_eq!(n(&[]), "128b_1a_1queue_1");
        assert_eq!(n(&["--persistent", "--size", "20"]), "20b_1p_1queue_1");
        assert_eq!(n(&["--topic", "--consumers", "8"]), "128b_1a_1topic_8");
        assert_eq!(n(&["--rate", "1000"]), "128b_1a_1queue_1_1000rate");
    }

    #[test]
    fn bit_counting() {
        let bits = vec![u64::MAX, 0b101];
        assert_eq!(count_bits(Some(&bits), 64), 64);
        assert_eq!(count_bits(Some(&bits), 66), 65);
        assert_eq!(count_bits(Some(&bits), 67), 66);
        assert_eq!(count_bits(None, 10), 0);
    }

    #[test]
    fn send_frames_decode() {
        let spec = ProducerSpec {
            id: 3,
            destination: "/queue/a".into(),
            body: bytes::Bytes::from_static(b"xyz"),
            count: None,
            duration: None,
            rate: 0.0,
            persistent: true,
            receipts: true,
            window: 1,
            run: 42,
        };
        let mut out = Vec::new();
        write_send(&mut out, &spec, 7, 99);
        let mut buf = BytesMut::from(&out[..]);
        let Some(Item::Frame(f)) = stomp_frame::Decoder::new(stomp_frame::Version::V1_2)
            .decode(&mut buf)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.headers.get("bench-seq"), Some("7"));
        assert_eq!(f.headers.get("bench-run"), Some("42"));
        assert_eq!(f.headers.get("receipt"), Some("7"));
        assert_eq!(f.headers.get("persistent"), Some("true"));
        assert_eq!(&f.body[..], b"xyz");
        assert!(buf.is_empty());
    }
}
