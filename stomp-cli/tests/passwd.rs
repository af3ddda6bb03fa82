//! `stomp passwd`: writes argon2 hashes that `stomp broker --users` accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const STOMP: &str = env!("CARGO_BIN_EXE_stomp");

fn connect(addr: &str, login: &str, pass: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(
        format!("CONNECT\naccept-version:1.2\nhost:x\nlogin:{login}\npasscode:{pass}\n\n\0")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn passwd_then_broker_lets_only_the_right_password_in() {
    let dir = std::env::temp_dir().join(format!("stomp-cli-passwd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    let file = users.to_str().unwrap();

    // From stdin, then changed with --password.
    let mut child = Command::new(STOMP)
        .args(["passwd", file, "dave"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"first\n").unwrap();
    assert!(child.wait().unwrap().success());
    let out = Command::new(STOMP)
        .args(["passwd", file, "dave", "--password", "second"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.contains("[users.dave]") && text.contains("$argon2id$"),
        "{text}"
    );
    // An empty password is refused.
    let out = Command::new(STOMP)
        .args(["passwd", file, "erin", "--password", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let mut broker = Command::new(STOMP)
        .args([
            "broker",
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--users",
            file,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let ok = connect(&addr, "dave", "second");
    let old = connect(&addr, "dave", "first");
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(ok.starts_with("CONNECTED\n"), "{ok}");
    assert!(old.starts_with("ERROR\n"), "{old}");
    std::fs::remove_dir_all(&dir).unwrap();
}
