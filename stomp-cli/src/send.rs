//! `stomp send`: one message from an argument, a file or stdin, or one
//! message per input line (`--lines`), pipelined and confirmed by a
//! receipt at the end (and at each pause of the input).
//!
//! STOMP brokers handle a connection's frames in order, so the RECEIPT of
//! the last SEND (or of the DISCONNECT) arriving means every earlier SEND
//! was handled; an ERROR about any of them ends the connection first and
//! fails the command.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{Context, anyhow};
use stomp_client::{Client, Frame};

use crate::args::SendArgs;
use crate::conn::{Target, explain, parse_header};

/// Runs `stomp send`: exit status 0 only when the broker confirmed.
pub fn run(a: &SendArgs) -> anyhow::Result<()> {
    let target = Target::from_args(&a.conn)?;
    let mut headers = a
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    if a.persistent {
        headers.push(("persistent".into(), "true".into()));
    }
    let confirm = a.receipt || a.persistent;
    let make = |body: Vec<u8>| {
        let mut f = Frame::send(a.destination.clone());
        for (k, v) in &headers {
            f = f.header(k.clone(), v.clone());
        }
        f.body(body)
    };
    if a.lines {
        let input: Box<dyn BufRead + Send> = match &a.file {
            Some(p) if p.as_os_str() != "-" => Box::new(BufReader::new(
                File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
            )),
            _ => {
                stdin_hint("one message per line");
                Box::new(BufReader::with_capacity(64 * 1024, std::io::stdin()))
            }
        };
        let client = connect(&target)?;
        let sent = send_lines(&client, input, make, &target);
        let closed = match &sent {
            // The broker stopped answering: its DISCONNECT receipt would
            // not come either, and the command would take twice its timeout.
            Err(Failed::Send {
                error: stomp_client::Error::Timeout { .. },
                ..
            }) => client.disconnect_within(Duration::ZERO),
            _ => client.disconnect(),
        };
        return match (sent, closed) {
            (Ok(_), closed) => closed.map_err(|e| anyhow!(explain(&e))),
            (Err(Failed::Input(e)), _) => Err(e),
            (
                Err(Failed::Send {
                    line,
                    confirmed,
                    error,
                }),
                closed,
            ) => {
                let confirmed = match confirmed {
                    0 => "none of the lines was confirmed".to_owned(),
                    n => format!("lines 1 to {n} were confirmed"),
                };
                // A call fails with "not connected" once the broker closed
                // the connection; the DISCONNECT says why it did (about
                // this line or an earlier one).
                match (&error, closed) {
                    (
                        stomp_client::Error::NotConnected
                        | stomp_client::Error::Closed
                        | stomp_client::Error::ConnectionLost { .. },
                        Err(why),
                    ) => Err(anyhow!(
                        "stopped after {line} lines were sent: {}; {confirmed}, later ones may have been delivered",
                        explain(&why)
                    )),
                    // An ERROR answering this line's receipt is about it;
                    // one without a receipt-id is about an earlier line.
                    (
                        stomp_client::Error::Broker {
                            receipt_id: Some(_),
                            ..
                        },
                        _,
                    ) => Err(anyhow!(
                        "line {line}: {}; {confirmed}, later ones may have been delivered",
                        explain(&error)
                    )),
                    _ => Err(anyhow!(
                        "stopped after {line} lines were sent: {}; {confirmed}, later ones may have been delivered",
                        explain(&error)
                    )),
                }
            }
        };
    }
    let body = match (&a.body, &a.file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(p)) if p.as_os_str() != "-" => {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        _ => {
            stdin_hint("the body");
            let mut v = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut v)
                .context("cannot read the body from stdin")?;
            v
        }
    };
    let client = connect(&target)?;
    let frame = make(body);
    let sent = if confirm {
        client.send_frame_confirmed(frame, target.timeout)
    } else {
        client.send_frame(frame)
    };
    if let Err(e) = sent {
        // Gone or not answering: no second wait for a DISCONNECT receipt.
        let _ = client.disconnect_within(Duration::ZERO);
        return Err(anyhow!(explain(&e)));
    }
    client.disconnect().map_err(|e| anyhow!(explain(&e)))?;
    Ok(())
}

fn connect(target: &Target) -> anyhow::Result<Client> {
    Client::connect(target.client_options())
        .map_err(|e| anyhow!(crate::conn::explain_connect(&e, target.tls)))
}

/// Why [`send_lines`] stopped.
pub enum Failed {
    /// The input could not be read.
    Input(anyhow::Error),
    /// Sending line `line` (counted from 1), or waiting for its receipt,
    /// failed.
    Send {
        /// The line.
        line: u64,
        /// Lines 1 to this one were confirmed by a receipt.
        confirmed: u64,
        /// What the client said.
        error: stomp_client::Error,
    },
}

/// How long the input may pause before the line read last is sent with a
/// receipt, rather than held to see whether it is the last one.
const PAUSE: Duration = Duration::from_millis(20);

/// On input that never pauses, a line goes with a receipt (waited for) at
/// least this often, so that what is confirmed keeps up.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// Sends each line (without its `\n` or `\r\n`) as a message, pipelined.
/// The last line, the last one before each pause of the input (`tail -f`),
/// and one a second on input that never pauses go with a receipt that is
/// waited for: the batch is confirmed at the end, no line waits for the
/// next one to be typed, and a steady stream is confirmed as it goes.
/// Returns how many were sent.
pub fn send_lines(
    client: &Client,
    mut input: Box<dyn BufRead + Send>,
    make: impl Fn(Vec<u8>) -> Frame,
    target: &Target,
) -> Result<u64, Failed> {
    // A thread reads, so that a pause in the input can be seen.
    let (tx, rx) = stomp_client::crossbeam_channel::bounded::<std::io::Result<Vec<u8>>>(1024);
    std::thread::spawn(move || {
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let input_failed = |e: std::io::Error| Failed::Input(anyhow!("cannot read the input: {e}"));
    let mut pending: Option<Vec<u8>> = None;
    let (mut n, mut confirmed) = (0u64, 0u64);
    let mut last_confirm = std::time::Instant::now();
    let confirm = |line: Vec<u8>, n: u64, confirmed: &mut u64| {
        client
            .send_frame_confirmed(make(line), target.timeout)
            .map(|()| *confirmed = n)
            .map_err(|error| Failed::Send {
                line: n,
                confirmed: *confirmed,
                error,
            })
    };
    loop {
        use stomp_client::crossbeam_channel::RecvTimeoutError;
        let next = match rx.recv_timeout(PAUSE) {
            Ok(line) => line.map_err(input_failed)?,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(line) = pending.take() {
                    n += 1;
                    confirm(line, n, &mut confirmed)?;
                    last_confirm = std::time::Instant::now();
                }
                match rx.recv() {
                    Ok(line) => line.map_err(input_failed)?,
                    Err(_) => break,
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(prev) = pending.replace(next) {
            n += 1;
            if last_confirm.elapsed() >= CONFIRM_EVERY {
                confirm(prev, n, &mut confirmed)?;
                last_confirm = std::time::Instant::now();
            } else {
                client
                    .send_frame(make(prev))
                    .map_err(|error| Failed::Send {
                        line: n,
                        confirmed,
                        error,
                    })?;
            }
        }
    }
    if let Some(last) = pending {
        n += 1;
        confirm(last, n, &mut confirmed)?;
    }
    Ok(n)
}

/// On a terminal, says that input is awaited (a forgotten body argument
/// otherwise looks like a hang).
fn stdin_hint(what: &str) {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("stomp: reading {what} from stdin; end with Ctrl-D (or give it as an argument)");
    }
}
