//! `stomp passwd`: writes argon2 hashes that `stomp broker --users` accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const STOMP: &str = env!("CARGO_BIN_EXE_stomp");

mod terminal;
use terminal::Terminal;

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

/// Runs `stomp passwd FILE USER` on a terminal, types `first` and `second`
/// at its two prompts, and returns (exit status, everything shown).
fn passwd_on_a_terminal(file: &str, user: &str, first: &str, second: &str) -> (bool, String) {
    let mut t = Terminal::run(&format!("{STOMP} passwd {file} {user}"));
    let at = t.wait_for(&format!("password for {user}: "), 0);
    t.type_in(format!("{first}\n").as_bytes());
    t.wait_for("again: ", at);
    t.type_in(format!("{second}\n").as_bytes());
    t.finish()
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
    let dir = std::env::temp_dir().join(format!("stomp-cli-passwd-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.toml");
    // The shell survives the Ctrl-C (a trap, reset for its children) and
    // then prints the terminal's echo flag: `echo`, or `-echo` when off.
    let mut t = Terminal::run(&format!(
        "trap : INT; {STOMP} passwd {} ivan; stty -a | tr ' ' '\\n' | grep -x -e echo -e -echo",
        file.display()
    ));
    t.wait_for("password for ivan: ", 0);
    t.type_in(b"abc\x03");
    let (_, shown) = t.finish();
    let flags: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| *l == "echo" || *l == "-echo")
        .collect();
    assert_eq!(flags, ["echo"], "{shown:?}");
    assert!(shown.contains("interrupted"), "{shown:?}");
    assert!(!file.exists(), "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An unusable user name or password is a usage error (exit 2), and the
/// file is not created.
#[test]
fn a_bad_user_name_or_empty_password_is_a_usage_error() {
    let file =
        std::env::temp_dir().join(format!("stomp-cli-passwd-bad-{}.toml", std::process::id()));
    for (user, password) in [("a b", "secret"), ("alice", "")] {
        let out = Command::new(STOMP)
            .args([
                "passwd",
                file.to_str().unwrap(),
                user,
                "--password",
                password,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(!file.exists());
    }
}
