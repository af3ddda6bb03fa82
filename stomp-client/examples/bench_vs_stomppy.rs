//! Throughput of `stomp-client` next to the Python stomp.py client, doing
//! the same work against the same broker in the same run.
//!
//! ```sh
//! bash scripts/deps/python.sh            # .venv with stomp.py
//! cargo build --release -p stomp-broker
//! cargo run --release -p stomp-client --example bench_vs_stomppy -- [--count N]
//!     [--receipt-count M] [--body-size B] [--rounds R] [--url stomp://host:port]
//! ```
//!
//! Without `--url` it starts `stomp-broker --listen 127.0.0.1:0 --memory`
//! from the same target directory. Scenarios (messages per second, best of
//! the rounds):
//!
//! - `publish`: N sends, then one confirmed send (so all were processed);
//! - `publish_receipts`: M sends, each waiting for its RECEIPT;
//! - `consume`: the N + 1 messages queued by `publish`, received with ack auto.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stomp_client::{AckMode, Client, ConnectOptions};

struct Args {
    url: Option<String>,
    count: usize,
    receipt_count: usize,
    body_size: usize,
    rounds: usize,
    python: PathBuf,
    skip_python: bool,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        url: None,
        count: 20_000,
        receipt_count: 2_000,
        body_size: 128,
        rounds: 3,
        python: root.join(".venv/bin/python"),
        skip_python: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = Some(value()?),
            "--count" => a.count = value()?.parse()?,
            "--receipt-count" => a.receipt_count = value()?.parse()?,
            "--body-size" => a.body_size = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse::<usize>()?.max(1),
            "--python" => a.python = value()?.into(),
            "--skip-python" => a.skip_python = true,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// Our broker from the same target directory, on an ephemeral port.
fn start_broker() -> Result<(Child, String), Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("no target directory")?;
    let bin = dir.join("stomp-broker");
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release -p stomp-broker` first",
            bin.display()
        )
        .into());
    }
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--memory", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected broker output {line:?}"))?
        .to_owned();
    Ok((child, addr))
}

#[derive(Default, Clone, Copy)]
struct Rates {
    publish: f64,
    publish_receipts: f64,
    consume: f64,
}

impl Rates {
    fn best(self, o: Rates) -> Rates {
        Rates {
            publish: self.publish.max(o.publish),
            publish_receipts: self.publish_receipts.max(o.publish_receipts),
            consume: self.consume.max(o.consume),
        }
    }
}

fn rust_round(address: &str, a: &Args, tag: &str) -> Result<Rates, Box<dyn Error>> {
    let client = Client::connect(ConnectOptions::new(address).heart_beat(0, 0))?;
    let body = vec![b'x'; a.body_size];
    let timeout = Duration::from_secs(30);
    let q = format!("/queue/bench-rs-pub-{tag}");
    let t0 = Instant::now();
    for _ in 0..a.count {
        client.send(&q, body.clone())?;
    }
    client.send_confirmed(&q, body.clone(), timeout)?;
    let publish = (a.count + 1) as f64 / t0.elapsed().as_secs_f64();

    let q2 = format!("/queue/bench-rs-rcpt-{tag}");
    let t0 = Instant::now();
    for _ in 0..a.receipt_count {
        client.send_confirmed(&q2, body.clone(), timeout)?;
    }
    let publish_receipts = a.receipt_count as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let sub = client.subscribe(&q, AckMode::Auto, &[])?;
    for i in 0..=a.count {
        sub.recv_timeout(timeout)?
            .ok_or_else(|| format!("consume timed out after {i} messages"))?;
    }
    let consume = (a.count + 1) as f64 / t0.elapsed().as_secs_f64();
    drop(sub);
    client.disconnect()?;
    Ok(Rates {
        publish,
        publish_receipts,
        consume,
    })
}

fn python_round(address: &str, a: &Args, tag: &str) -> Result<Rates, Box<dyn Error>> {
    let (host, port) = address.rsplit_once(':').ok_or("address without port")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/stomppy_bench.py");
    let out = Command::new(&a.python)
        .arg(script)
        .args(["--host", host, "--port", port, "--tag", tag])
        .args(["--count", &a.count.to_string()])
        .args(["--receipt-count", &a.receipt_count.to_string()])
        .args(["--body-size", &a.body_size.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e} (run scripts/deps/python.sh)", a.python.display()))?;
    if !out.status.success() {
        return Err(format!("stomp.py bench failed: {}", out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let field = |name: &str| -> Result<f64, Box<dyn Error>> {
        let key = format!("\"{name}\": ");
        let start = text.find(&key).ok_or(format!("no {name} in {text:?}"))? + key.len();
        let end = text[start..]
            .find([',', '}'])
            .ok_or("bad JSON from stomp.py bench")?;
        Ok(text[start..start + end].trim().parse()?)
    };
    Ok(Rates {
        publish: field("publish")?,
        publish_receipts: field("publish_receipts")?,
        consume: field("consume")?,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let a = parse_args()?;
    let (mut broker, address) = match &a.url {
        Some(url) => (None, ConnectOptions::from_url(url)?.addresses()[0].clone()),
        None => {
            let (child, addr) = start_broker()?;
            (Some(child), addr)
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    // `py` stays `None` with --skip-python: there is nothing to compare to.
    let run = || -> Result<(Rates, Option<Rates>), Box<dyn Error>> {
        let mut rs = Rates::default();
        let mut py: Option<Rates> = None;
        for round in 0..a.rounds {
            let tag = format!("{stamp}-{round}");
            rs = rs.best(rust_round(&address, &a, &tag)?);
            if !a.skip_python {
                let p = python_round(&address, &a, &tag)?;
                py = Some(py.map_or(p, |best| best.best(p)));
            }
        }
        Ok((rs, py))
    };
    let result = run();
    if let Some(b) = &mut broker {
        let _ = b.kill();
        let _ = b.wait();
    }
    let (rs, py) = result?;
    println!(
        "broker {address}; {} B bodies; N = {}, M = {}; best of {} rounds",
        a.body_size, a.count, a.receipt_count, a.rounds
    );
    println!(
        "{:<18} {:>16} {:>16} {:>8}",
        "scenario", "stomp-client", "stomp.py", "ratio"
    );
    for (name, r, p) in [
        ("publish", rs.publish, py.map(|p| p.publish)),
        (
            "publish_receipts",
            rs.publish_receipts,
            py.map(|p| p.publish_receipts),
        ),
        ("consume", rs.consume, py.map(|p| p.consume)),
    ] {
        let (theirs, ratio) = compare(r, p);
        println!("{name:<18} {r:>12.0} msg/s {theirs:>16} {ratio:>8}");
    }
    Ok(())
}

/// The stomp.py column and the ratio, or `n/a` for both without a stomp.py
/// figure (--skip-python) or with one of zero (no ratio to take).
fn compare(ours: f64, theirs: Option<f64>) -> (String, String) {
    match theirs {
        Some(p) if p > 0.0 && p.is_finite() => {
            (format!("{p:.0} msg/s"), format!("{:.1}x", ours / p))
        }
        Some(p) => (format!("{p:.0} msg/s"), "n/a".to_owned()),
        None => ("n/a".to_owned(), "n/a".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_stomppy_figure_is_na_not_inf() {
        assert_eq!(compare(1000.0, None), ("n/a".into(), "n/a".into()));
        assert_eq!(compare(1000.0, Some(0.0)), ("0 msg/s".into(), "n/a".into()));
        assert_eq!(
            compare(1000.0, Some(400.0)),
            ("400 msg/s".into(), "2.5x".into())
        );
    }
}
