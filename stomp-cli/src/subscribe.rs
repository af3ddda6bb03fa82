//! `stomp subscribe`: prints messages as they arrive, in one of three
//! formats, acknowledging (client modes) only what was written out.
//!
//! ```text
//!  broker ─▶ client I/O thread ─▶ per-subscription channels ─▶ select
//!     ─▶ batch (what is waiting, up to 1024) ─▶ write + flush stdout ─▶ ACK the batch
//! ```
//!
//! Ctrl-C (or SIGTERM) sets a flag checked between batches: the loop stops
//! and the client disconnects, so the broker redelivers whatever was
//! received but not printed (client modes, `client` by default; there each
//! destination has a connection of its own, as a cumulative ACK may reach
//! every subscription of a connection). With `--count N` the SUBSCRIBE asks
//! for a window of at most N, so the broker does not hand over more than
//! will be printed.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use stomp_client::crossbeam_channel::Select;
use stomp_client::{AckMode, Client, Frame, Message, Subscription};

use crate::Incomplete;
use crate::args::{OutputFormat, SubscribeArgs};
use crate::conn::{Target, explain, parse_header};

/// Largest batch printed before flushing and acknowledging.
const BATCH: usize = 1024;

/// Runs `stomp subscribe` on stdout.
pub fn run(a: &SubscribeArgs) -> anyhow::Result<()> {
    let mut target = Target::from_args(&a.conn)?;
    // --timeout bounds the whole run, connecting included.
    let deadline = a
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    if let Some(t) = a.timeout {
        target.timeout = target
            .timeout
            .min(Duration::from_secs_f64(t).max(Duration::from_millis(100)));
    }
    let mut headers = a
        .sub_headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(n) = a.count
        && !headers
            .iter()
            .any(|(k, _)| k == "activemq.prefetchSize" || k == "prefetch-count")
    {
        let window = n.clamp(1, BATCH as u64).to_string();
        headers.push(("activemq.prefetchSize".into(), window.clone()));
        headers.push(("prefetch-count".into(), window));
    }
    let ack: AckMode = a.ack.into();
    // In client mode each destination gets a connection of its own: a
    // client-mode ACK is cumulative, and RabbitMQ applies it to every
    // subscription of the connection, which would acknowledge another
    // destination's messages that were received but not printed.
    let connections = if ack == AckMode::Client {
        a.destinations.len().max(1)
    } else {
        1
    };
    // Ctrl-C while connecting ends the command at once (nothing to clean
    // up); from here on it stops cleanly.
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(
            Client::connect(target.client_options())
                .map_err(|e| anyhow!(crate::conn::explain_connect(&e, target.tls)))?,
        );
    }
    let stop = crate::interrupt_flag()?;
    let hdrs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut subs = Vec::new();
    for (i, d) in a.destinations.iter().enumerate() {
        match clients[i % connections].subscribe(d, ack, &hdrs) {
            Ok(s) => subs.push(s),
            Err(e) => {
                // Nothing was printed; a broker that did not answer the
                // SUBSCRIBE would not answer the DISCONNECT either.
                drop(subs);
                for c in clients {
                    let _ = c.disconnect_within(Duration::ZERO);
                }
                return Err(anyhow!("cannot subscribe to {d}: {}", explain(&e)));
            }
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = pump(
        &subs,
        a.format(),
        ack,
        a.count,
        deadline,
        || stop.load(Ordering::Relaxed),
        &mut out,
    );
    // DISCONNECT ends the subscriptions (what was not acknowledged goes
    // back); no UNSUBSCRIBE before it: RabbitMQ answers messages it was
    // still pushing to a cancelled subscription with ERROR frames, which
    // would fail a run that did all it was asked.
    let closed: Vec<_> = clients.into_iter().map(Client::disconnect).collect();
    drop(subs);
    let printed = result?;
    for c in closed {
        c.map_err(|e| anyhow!(explain(&e)))?;
    }
    if let (Some(want), Some(_)) = (a.count, deadline)
        && printed < want
        && !stop.load(Ordering::Relaxed)
    {
        return Err(Incomplete {
            code: 3,
            message: format!("--timeout ran out after {printed} of {want} messages"),
        }
        .into());
    }
    Ok(())
}

/// Receives, prints and acknowledges until `count` messages were printed,
/// the deadline passes, `stopped()` says so, or the output is closed.
/// Returns how many messages were printed.
pub fn pump(
    subs: &[Subscription],
    format: OutputFormat,
    ack: AckMode,
    count: Option<u64>,
    deadline: Option<Instant>,
    stopped: impl Fn() -> bool,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut printed = 0u64;
    // Each message with the index of its subscription (subscription ids
    // repeat across connections).
    let mut batch: Vec<(usize, Message)> = Vec::with_capacity(BATCH);
    let mut sel = Select::new();
    let receivers: Vec<_> = subs.iter().map(Subscription::receiver).collect();
    for r in &receivers {
        sel.recv(r);
    }
    loop {
        if stopped() || count.is_some_and(|c| printed >= c) {
            return Ok(printed);
        }
        let mut wait = Duration::from_millis(100);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(printed);
            }
            wait = wait.min(left);
        }
        let Ok(first) = sel.ready_timeout(wait) else {
            continue;
        };
        let limit = count.map_or(BATCH, |c| BATCH.min((c - printed) as usize));
        // What is waiting, starting with the ready subscription. When the
        // connection is gone, what was received is still printed (in auto
        // mode the broker has forgotten it), then the error is reported.
        let mut failed = None;
        for i in (first..subs.len()).chain(0..first) {
            while batch.len() < limit {
                match subs[i].try_recv() {
                    Ok(Some(m)) => batch.push((i, m)),
                    Ok(None) => break,
                    Err(e) => {
                        failed.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        for (_, m) in &batch {
            if let Err(e) = write_message(out, m.frame(), format) {
                return closed_output(e, printed);
            }
        }
        if let Err(e) = out.flush() {
            return closed_output(e, printed);
        }
        printed += batch.len() as u64;
        if let Some(e) = failed {
            return Err(anyhow!(explain(&e)));
        }
        acknowledge(&batch, ack).map_err(|e| anyhow!(explain(&e)))?;
        batch.clear();
    }
}

/// A closed stdout (`| head`) ends the run quietly; other errors fail it.
fn closed_output(e: io::Error, printed: u64) -> anyhow::Result<u64> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(printed)
    } else {
        Err(anyhow!("cannot write the output: {e}"))
    }
}

/// ACKs a printed batch (each message with the index of its subscription):
/// each message in client-individual mode, the last one of each
/// subscription in client mode (cumulative), nothing in auto.
fn acknowledge(batch: &[(usize, Message)], ack: AckMode) -> stomp_client::Result<()> {
    match ack {
        AckMode::Auto => Ok(()),
        AckMode::ClientIndividual => batch.iter().try_for_each(|(_, m)| m.ack()),
        AckMode::Client => {
            let mut last_of_sub: Vec<&(usize, Message)> = Vec::new();
            for m in batch {
                match last_of_sub.iter_mut().find(|x| x.0 == m.0) {
                    Some(slot) => *slot = m,
                    None => last_of_sub.push(m),
                }
            }
            last_of_sub.into_iter().try_for_each(|(_, m)| m.ack())
        }
    }
}

/// Writes one message in the chosen format, ending with a newline.
pub fn write_message(out: &mut impl Write, f: &Frame, format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Body => {
            out.write_all(&f.body)?;
            out.write_all(b"\n")
        }
        OutputFormat::Headers => {
            for h in f.headers.iter() {
                writeln!(out, "{}:{}", h.name(), h.value())?;
            }
            out.write_all(b"\n")?;
            out.write_all(&f.body)?;
            out.write_all(b"\n")
        }
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, &to_json(f))?;
            out.write_all(b"\n")
        }
    }
}

/// The JSON form of a message: `destination`, `headers` (an object; for a
/// repeated header the first value, as the spec says), and `body` when the
/// body is UTF-8, else `body_base64`.
pub fn to_json(f: &Frame) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for h in f.headers.iter() {
        headers
            .entry(h.name().to_owned())
            .or_insert_with(|| h.value().into());
    }
    let mut obj = serde_json::Map::new();
    obj.insert(
        "destination".into(),
        f.destination().map_or(serde_json::Value::Null, Into::into),
    );
    obj.insert("headers".into(), headers.into());
    match std::str::from_utf8(&f.body) {
        Ok(s) => obj.insert("body".into(), s.into()),
        Err(_) => obj.insert("body_base64".into(), base64(&f.body).into()),
    };
    obj.into()
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn formats() {
        let f = Frame::message("/queue/a", "m-1", "s-1")
            .header("k", "v:w")
            .body(&b"hi"[..]);
        let mut v = Vec::new();
        write_message(&mut v, &f, OutputFormat::Body).unwrap();
        assert_eq!(v, b"hi\n");
        v.clear();
        write_message(&mut v, &f, OutputFormat::Headers).unwrap();
        let s = String::from_utf8(v.clone()).unwrap();
        assert!(
            s.contains("destination:/queue/a\n") && s.ends_with("k:v:w\n\nhi\n"),
            "{s}"
        );
        let j = to_json(&f.clone().body(vec![0xff, 0]));
        assert_eq!(j["body_base64"], "/wA=");
        assert!(j.get("body").is_none());
        assert_eq!(j["headers"]["k"], "v:w");
        assert_eq!(j["destination"], "/queue/a");
    }
}
