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

/// Runs `stomp passwd FILE USER` on a terminal (a pty made by util-linux's
/// `script`), types `first` and `second` at its two prompts, and returns
/// (exit status, everything the terminal showed).
fn passwd_on_a_terminal(file: &str, user: &str, first: &str, second: &str) -> (bool, String) {
    use std::sync::{Arc, Mutex};
    let mut child = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            &format!("{STOMP} passwd {file} {user}"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let shown = Arc::new(Mutex::new(String::new()));
    let reader = {
        let shown = shown.clone();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |text: &str, shown_before: usize| {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = shown.lock().unwrap().clone();
            if s[shown_before..].contains(text) {
                return s.len();
            }
            assert!(std::time::Instant::now() < until, "no {text:?} in {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    let at = wait_for(&format!("password for {user}: "), 0);
    // The prompt is written just before echo is turned off.
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(format!("{first}\n").as_bytes()).unwrap();
    wait_for("again: ", at);
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(format!("{second}\n").as_bytes()).unwrap();
    let ok = child.wait().unwrap().success();
    drop(stdin);
    reader.join().unwrap();
    let shown = shown.lock().unwrap().clone();
    (ok, shown)
}

#[test]
fn on_a_terminal_the_password_is_typed_twice_and_never_shown() {
    let dir = std::env::temp_dir().join(format!("stomp-cli-passwd-tty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    let file = users.to_str().unwrap();

    let (ok, shown) = passwd_on_a_terminal(file, "frank", "Sekrit-42", "Sekrit-42");
    assert!(ok, "{shown}");
    assert!(
        !shown.contains("Sekrit-42"),
        "the password was echoed: {shown:?}"
    );
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("[users.frank]"), "{text}");

    // Two different passwords: nothing changes.
    let (ok, shown) = passwd_on_a_terminal(file, "gina", "one-thing", "another");
    assert!(!ok, "{shown}");
    assert!(shown.contains("differ"), "{shown:?}");
    assert!(!std::fs::read_to_string(&users).unwrap().contains("gina"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_at_the_prompt_turns_echo_back_on() {
    use std::sync::{Arc, Mutex};
    let dir = std::env::temp_dir().join(format!("stomp-cli-passwd-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.toml");
    // The shell survives the Ctrl-C (a trap, reset for its children) and
    // then prints the terminal's echo flag: `echo`, or `-echo` when off.
    let script = format!(
        "trap : INT; {STOMP} passwd {} ivan; stty -a | tr ' ' '\\n' | grep -x -e echo -e -echo",
        file.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &script, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let shown = Arc::new(Mutex::new(String::new()));
    let reader = {
        let shown = shown.clone();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                shown.lock().unwrap().push_str(&text);
            }
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !shown.lock().unwrap().contains("password for ivan: ") {
        assert!(std::time::Instant::now() < until, "no prompt");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"abc\x03").unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let shown = shown.lock().unwrap().clone();
    let flags: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| *l == "echo" || *l == "-echo")
        .collect();
    assert_eq!(flags, ["echo"], "{status:?}: {shown:?}");
    assert!(shown.contains("interrupted"), "{shown:?}");
    assert!(!file.exists(), "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}
