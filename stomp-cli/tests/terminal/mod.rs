//! A shell command run on a terminal, for the tests of what `stomp` does
//! when a person is at the keyboard.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A shell command run on a terminal (a pty made by util-linux's
/// `script`): what it shows is collected as it comes.
pub(crate) struct Terminal {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    shown: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Terminal {
    pub(crate) fn run(command: &str) -> Terminal {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs");
        let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
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
        let stdin = child.stdin.take().unwrap();
        Terminal {
            child,
            stdin,
            shown,
            reader,
        }
    }

    /// Waits until `text` is shown after the first `shown_before` bytes,
    /// then a little more (a prompt is written just before echo is turned
    /// off); returns how much was shown.
    pub(crate) fn wait_for(&self, text: &str, shown_before: usize) -> usize {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.shown.lock().unwrap().clone();
            if s[shown_before..].contains(text) {
                std::thread::sleep(Duration::from_millis(300));
                return s.len();
            }
            assert!(std::time::Instant::now() < until, "no {text:?} in {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn type_in(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).unwrap();
    }

    /// Waits for the end; returns (success, everything shown).
    pub(crate) fn finish(mut self) -> (bool, String) {
        let ok = self.child.wait().unwrap().success();
        drop(self.stdin);
        self.reader.join().unwrap();
        let shown = self.shown.lock().unwrap().clone();
        (ok, shown)
    }
}
