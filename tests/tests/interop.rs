//! Interop with the most used STOMP clients, against a real broker process:
//!
//! - stomp.py (Python): its Connection10/11/12 classes send, subscribe, ack
//!   (client and client-individual), NACK, use transactions and receipts.
//!   The scenarios are in `tests/interop/stomppy_interop.py`; the venv comes
//!   from `scripts/deps/python.sh`.
//! - stompjs (`@stomp/stompjs`, JavaScript, over TCP with
//!   `@stomp/tcp-wrapper`), limited to each protocol version: receipts,
//!   binary bodies, ack modes, NACK, transactions, header escaping, topics,
//!   ERROR frames. The scenarios are in
//!   `tests/interop/stompjs/stompjs_interop.mjs`; Node.js and the packages
//!   come from `scripts/deps/node.sh`.
//!
//! `scripts/test.sh` runs both set-up scripts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use stomp_tests::*;

fn venv_python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/deps/python.sh (or scripts/test.sh) to create the venv with stomp.py",
        py.display()
    );
    py
}

fn run_stomppy(version: &str) {
    let script = repo_root().join("tests/interop/stomppy_interop.py");
    run_interop("stomp.py", &venv_python(), &script, version);
}

fn run_stompjs(version: &str) {
    let dir = repo_root().join("tests/interop/stompjs");
    assert!(
        dir.join("node_modules/@stomp/stompjs").exists(),
        "{}/node_modules is missing: run scripts/deps/node.sh (or scripts/test.sh) to install stompjs",
        dir.display()
    );
    let script = dir.join("stompjs_interop.mjs");
    run_interop("stompjs", Path::new("node"), &script, version);
}

/// Runs `program script HOST PORT VERSION` against a fresh broker; the
/// script must exit 0 and print its "N passed, 0 failed" line in 90 s.
fn run_interop(client: &str, program: &Path, script: &Path, version: &str) {
    let b = Broker::start();
    let mut child = Process::new(program)
        .arg(script)
        .arg(b.addr().ip().to_string())
        .arg(b.addr().port().to_string())
        .arg(version)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    eprintln!("{stdout}");
    match status {
        Some(s) if s.success() => {
            assert!(
                stdout.contains("0 failed"),
                "no summary line from the script:\n{stdout}"
            );
        }
        Some(s) => panic!(
            "{client} {version} interop failed ({s}):\n{stdout}\n--- {client} stderr (last 4000 bytes) ---\n{}\n--- broker log ---\n{}",
            tail(&stderr, 4000),
            tail(&b.logs(), 4000)
        ),
        None => panic!("{client} {version} interop hung for 90 s:\n{stdout}"),
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[test]
fn stomppy_1_0() {
    run_stomppy("1.0");
}

#[test]
fn stomppy_1_1() {
    run_stomppy("1.1");
}

#[test]
fn stomppy_1_2() {
    run_stomppy("1.2");
}

#[test]
fn stompjs_1_0() {
    run_stompjs("1.0");
}

#[test]
fn stompjs_1_1() {
    run_stompjs("1.1");
}

#[test]
fn stompjs_1_2() {
    run_stompjs("1.2");
}
