//! Shared helpers for the end-to-end tests: a real `stomp-broker` process
//! on an ephemeral loopback port, and raw STOMP connections to it.
//!
//! ```text
//!  test ──Broker::start(&[flags])──▶ cargo build -p stomp-broker (once per test binary)
//!       ──spawn target/<profile>/stomp-broker --listen 127.0.0.1:0 --memory <flags>
//!       ◀── "listening on 127.0.0.1:PORT" (stdout, read with a timeout)
//!  test ──Conn::open / Broker::connect(version)──▶ TCP ──raw bytes or encoded Frames──▶ broker
//!       ◀── Decoder::decode (every read bounded by a timeout) ◀──
//! ```
//!
//! # Locating the broker binary
//!
//! Cargo only builds the binaries of the package under test
//! (`CARGO_BIN_EXE_*` exists only inside `stomp-broker` itself), and a
//! dev-dependency builds a crate's library, not its binary. So the harness
//! runs `cargo build -p stomp-broker --bin stomp-broker` itself, once per test
//! process, with the same profile as the running test (the test executable
//! lives in `target/<profile>/deps/`, the broker lands in `target/<profile>/`).
//! When `cargo test --workspace` already built it, that build is a quick no-op.
//! Set `STOMP_BROKER_BIN=/path/to/stomp-broker` to test another build instead.
//! [`Broker::start_cli`] does the same with `stomp broker` (crate stomp-cli).
//!
//! Every broker process is killed when its [`Broker`] is dropped, so a failing
//! test leaves no process behind; every read has a deadline, so no test hangs.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
pub use stomp_frame::{
    AckMode, Command, DecodeError, Decoder, Encoder, Frame, HeartBeat, Item, Limits, Version,
};

/// How long the harness waits for the broker's `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The usual wait for a frame that should arrive promptly.
pub const T: Duration = Duration::from_secs(5);

/// The usual wait when checking that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// The repository root (the workspace, one level above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The path of the `stomp-broker` binary, building it on first use.
///
/// See the crate docs for why the harness builds it itself.
pub fn broker_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STOMP_BROKER_BIN") {
            return PathBuf::from(p);
        }
        workspace_bin("stomp-broker", "stomp-broker")
    })
}

/// The path of the `stomp` CLI binary (crate stomp-cli), building it on
/// first use; `stomp broker` runs the same broker as `stomp-broker`.
pub fn cli_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("stomp-cli", "stomp"))
}

/// Builds binary `bin` of workspace package `package` with the profile of
/// the running test and returns its path.
fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-exe> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let mut cmd = Process::new(env!("CARGO"));
    cmd.current_dir(repo_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("running cargo build");
    assert!(
        status.success(),
        "`cargo build -p {package} --bin {bin}` failed ({status}); the tests need that binary"
    );
    let path = profile_dir.join(bin);
    assert!(path.exists(), "no binary at {}", path.display());
    path
}

/// Keeps the last bytes a child wrote to a pipe, for failure messages.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    const KEEP: usize = 16 * 1024;

    fn drain(&self, mut pipe: impl Read + Send + 'static) {
        let tail = self.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut v = tail.0.lock().unwrap_or_else(|e| e.into_inner());
                v.extend_from_slice(&buf[..n]);
                if v.len() > 2 * Tail::KEEP {
                    let cut = v.len() - Tail::KEEP;
                    v.drain(..cut);
                }
            }
        });
    }

    fn text(&self) -> String {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = v.len().saturating_sub(Tail::KEEP);
        String::from_utf8_lossy(&v[start..]).into_owned()
    }
}

/// A running `stomp-broker` process listening on an ephemeral port.
/// Killed when dropped.
pub struct Broker {
    child: Child,
    addr: SocketAddr,
    stderr: Tail,
    /// The data directory of a durable broker, removed on drop.
    data: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker with `--listen 127.0.0.1:0 --memory` and the defaults.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with `--listen 127.0.0.1:0 --memory` plus `args`;
    /// on the journal instead ([`start_durable_with`](Broker::start_durable_with))
    /// when `STOMP_TESTS_DURABLE=1` (`scripts/test.sh` runs the suite both ways).
    pub fn start_with(args: &[&str]) -> Broker {
        if std::env::var_os("STOMP_TESTS_DURABLE").is_some_and(|v| v == "1") {
            return Broker::start_durable_with(args);
        }
        let (child, addr, stderr) = spawn_broker(broker_bin(), &[], &["--memory"], args);
        Broker {
            child,
            addr,
            stderr,
            data: None,
        }
    }

    /// Starts a broker on its default storage, the journal, in a fresh
    /// data directory (`--listen 127.0.0.1:0 --data-dir DIR` plus `args`).
    pub fn start_durable_with(args: &[&str]) -> Broker {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("stomp-tests-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.join("data");
        let d = d.to_str().expect("a UTF-8 temp dir");
        let (child, addr, stderr) = spawn_broker(broker_bin(), &[], &["--data-dir", d], args);
        Broker {
            child,
            addr,
            stderr,
            data: Some(dir),
        }
    }

    /// Starts the broker through the CLI, `stomp broker --listen
    /// 127.0.0.1:0 --memory` plus `args`.
    pub fn start_cli(args: &[&str]) -> Broker {
        let (child, addr, stderr) = spawn_broker(cli_bin(), &["broker"], &["--memory"], args);
        Broker {
            child,
            addr,
            stderr,
            data: None,
        }
    }

    /// Where the broker listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the broker wrote to stderr (its logs).
    pub fn logs(&self) -> String {
        self.stderr.text()
    }

    /// A TCP connection with no STOMP handshake yet.
    pub fn open(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// A connection with a completed CONNECT handshake for `version`
    /// (asking for that version only).
    pub fn connect(&self, version: Version) -> Conn {
        let mut c = self.open();
        c.connect(version);
        c
    }

    /// Whether the process has exited (reaping it if so).
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit;
    /// `None` if it did not (it is then killed by drop).
    pub fn signal_and_wait(
        &mut self,
        signal: rustix::process::Signal,
        timeout: Duration,
    ) -> Option<ExitStatus> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).expect("kill(2)");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal_and_wait(rustix::process::Signal::TERM, timeout)
    }

    /// The resident memory of the broker process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn spawn_broker(
    bin: &Path,
    pre: &[&str],
    storage: &[&str],
    args: &[&str],
) -> (Child, SocketAddr, Tail) {
    let mut child = Process::new(bin)
        .args(pre)
        .args(["--listen", "127.0.0.1:0"])
        .args(storage)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stderr = Tail::default();
    stderr.drain(child.stderr.take().expect("stderr piped"));
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let mut sent = false;
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !sent {
                        sent = tx.send(line.trim_end().to_owned()).is_ok();
                    }
                }
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => {
            let addr = line
                .strip_prefix("listening on ")
                .and_then(|a| a.trim().parse().ok());
            match addr {
                Some(addr) => (child, addr, stderr),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "broker's first stdout line is {line:?}, expected `listening on ADDR`; stderr:\n{}",
                        stderr.text()
                    )
                }
            }
        }
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            // Give the stderr thread a moment to collect the last words.
            thread::sleep(Duration::from_millis(100));
            panic!(
                "broker exited or did not print `listening on ADDR` within {START_TIMEOUT:?} (args {args:?}, exit {status:?}); stderr:\n{}",
                stderr.text()
            )
        }
    }
}

/// What [`Conn::recv`] can run into besides a frame.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The peer closed the connection (EOF or reset) with no frame pending.
    Closed,
    /// The bytes received are not valid STOMP.
    Decode(DecodeError),
    /// Another I/O error.
    Io(io::Error),
}

/// A raw STOMP connection driven by the test: frames go out encoded (or as
/// raw bytes), frames come in through a [`Decoder`], every read is bounded.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    dec: Decoder,
    enc: Encoder,
    eof: bool,
    barriers: usize,
    /// MESSAGEs that arrived while waiting for a RECEIPT, handed out first.
    stash: VecDeque<Frame>,
    /// Heart-beat EOLs received so far.
    pub heartbeats: usize,
    /// When the last heart-beat EOL was received.
    pub heartbeat_times: Vec<Instant>,
}

/// Closing a `Conn` shuts the socket down at once. Dropping the descriptor
/// alone is not enough: a broker another test is starting at that moment
/// holds a copy of every descriptor between its fork and exec, which would
/// delay the FIN by milliseconds, and the broker would still count this
/// connection as a subscriber (and deliver to it) meanwhile.
impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Conn {
    /// Opens a TCP connection (no STOMP yet).
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, T)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream.set_write_timeout(Some(T)).expect("write timeout");
        // Generous: the tests judge the broker's limits, not their own.
        let limits = Limits {
            max_line_len: 16 * 1024 * 1024,
            max_headers: 1_000_000,
            max_body_len: 256 * 1024 * 1024,
            max_frame_len: 257 * 1024 * 1024,
        };
        Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            dec: Decoder::with_limits(Version::V1_2, limits),
            enc: Encoder::new(Version::V1_2),
            eof: false,
            barriers: 0,
            stash: VecDeque::new(),
            heartbeats: 0,
            heartbeat_times: Vec::new(),
        }
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The version the codec now uses.
    pub fn version(&self) -> Version {
        self.enc.version()
    }

    /// Switches encoder and decoder to `version` rules.
    pub fn set_version(&mut self, version: Version) {
        self.enc.set_version(version);
        self.dec.set_version(version);
    }

    /// Sends CONNECT accepting only `version` (no `accept-version` for 1.0,
    /// as a 1.0 client does), expects CONNECTED and switches to its version.
    pub fn connect(&mut self, version: Version) -> Frame {
        let frame = match version {
            Version::V1_0 => Frame::new(Command::Connect),
            v => Frame::connect(vhost(), &[v]),
        };
        self.connect_with(frame)
    }

    /// Sends the given CONNECT/STOMP frame, expects CONNECTED and switches
    /// to the version it names (1.0 when absent).
    pub fn connect_with(&mut self, frame: Frame) -> Frame {
        self.send(&frame);
        let reply = self.recv_frame(T);
        assert_eq!(
            reply.command,
            Command::Connected,
            "expected CONNECTED, got {reply:?}"
        );
        self.set_version(reply.version().unwrap_or(Version::V1_0));
        reply
    }

    /// Writes raw bytes. Panics on error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes raw bytes, returning the error.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Encodes `frame` for the session's version and writes it.
    pub fn send(&mut self, frame: &Frame) {
        let bytes = self.encode(frame);
        self.send_raw(&bytes);
    }

    /// Encodes `frame` for the session's version.
    pub fn encode(&self, frame: &Frame) -> Vec<u8> {
        self.enc
            .to_bytes(frame)
            .unwrap_or_else(|e| panic!("cannot encode {frame:?}: {e}"))
            .to_vec()
    }

    /// Receives the next frame (heart-beats are counted and skipped).
    /// MESSAGEs set aside while waiting for a RECEIPT come first.
    pub fn recv(&mut self, timeout: Duration) -> Result<Frame, RecvError> {
        if let Some(f) = self.stash.pop_front() {
            return Ok(f);
        }
        self.recv_wire(timeout)
    }

    /// Receives the next frame from the socket, ignoring the stash.
    fn recv_wire(&mut self, timeout: Duration) -> Result<Frame, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_item_until(deadline)? {
                Item::Frame(f) => return Ok(f),
                Item::Heartbeat => {}
            }
        }
    }

    /// Receives the next frame or heart-beat.
    pub fn recv_item(&mut self, timeout: Duration) -> Result<Item, RecvError> {
        if let Some(f) = self.stash.pop_front() {
            return Ok(Item::Frame(f));
        }
        self.recv_item_until(Instant::now() + timeout)
    }

    fn recv_item_until(&mut self, deadline: Instant) -> Result<Item, RecvError> {
        loop {
            match self.dec.decode(&mut self.buf) {
                Ok(Some(item)) => {
                    if item == Item::Heartbeat {
                        self.heartbeats += 1;
                        self.heartbeat_times.push(Instant::now());
                    }
                    return Ok(item);
                }
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(e)),
            }
            if self.eof {
                return Err(RecvError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .expect("read timeout");
            self.buf.reserve(64 * 1024);
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.eof = true
                }
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Receives the next frame; panics with a clear message if none comes.
    pub fn recv_frame(&mut self, timeout: Duration) -> Frame {
        match self.recv(timeout) {
            Ok(f) => f,
            Err(e) => panic!("expected a frame within {timeout:?}, got {e:?}"),
        }
    }

    /// Receives the next frame and checks its command.
    pub fn expect(&mut self, command: Command) -> Frame {
        let f = self.recv_frame(T);
        assert_eq!(
            f.command,
            command,
            "expected {command}, got {} {:?} body {:?}",
            f.command,
            f.headers,
            String::from_utf8_lossy(&f.body)
        );
        f
    }

    /// Expects a MESSAGE.
    pub fn expect_message(&mut self) -> Frame {
        self.expect(Command::Message)
    }

    /// Expects a RECEIPT for `id`. MESSAGEs arriving first (the broker may
    /// deliver before it confirms) are set aside for the next `recv`.
    pub fn expect_receipt(&mut self, id: &str) -> Frame {
        self.expect_receipt_within(id, T)
    }

    /// [`expect_receipt`](Conn::expect_receipt), waiting up to `wait`.
    pub fn expect_receipt_within(&mut self, id: &str, wait: Duration) -> Frame {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match self.recv_wire(left) {
                Ok(f) => f,
                Err(e) => panic!("expected RECEIPT {id:?}, got {e:?}"),
            };
            if f.command == Command::Message {
                self.stash.push_back(f);
                continue;
            }
            assert_eq!(
                f.command,
                Command::Receipt,
                "expected RECEIPT {id:?}, got {} {:?} body {:?}",
                f.command,
                f.headers,
                String::from_utf8_lossy(&f.body)
            );
            assert_eq!(
                f.receipt_id(),
                Some(id),
                "RECEIPT for the wrong frame: {f:?}"
            );
            return f;
        }
    }

    /// Sends `frame` with a `receipt` header and waits for its RECEIPT.
    pub fn send_sync(&mut self, frame: Frame, receipt: &str) {
        self.send(&frame.header("receipt", receipt));
        self.expect_receipt(receipt);
    }

    /// Expects an ERROR with a `message` header, then the connection closed.
    pub fn expect_error(&mut self) -> Frame {
        let f = self.expect(Command::Error);
        assert!(
            f.message_header().is_some_and(|m| !m.is_empty()),
            "ERROR without a message header: {f:?}"
        );
        self.expect_closed(T);
        f
    }

    /// Expects that the peer closes the connection within `timeout`, with no
    /// further frame; returns how long it took.
    pub fn expect_closed(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        match self.recv(timeout) {
            Err(RecvError::Closed) => start.elapsed(),
            Ok(f) => panic!("expected the connection closed, got another frame: {f:?}"),
            Err(e) => panic!("expected the connection closed within {timeout:?}, got {e:?}"),
        }
    }

    /// Asserts that no frame arrives within `wait` (heart-beats are fine).
    pub fn expect_nothing(&mut self, wait: Duration) {
        match self.recv(wait) {
            Err(RecvError::Timeout) => {}
            Ok(f) => panic!("expected no frame, got {f:?}"),
            Err(e) => panic!("expected no frame and an open connection, got {e:?}"),
        }
    }

    /// Subscribes with a receipt (so the subscription is in place on return).
    pub fn subscribe(&mut self, id: &str, destination: &str, ack: AckMode) {
        let frame = Frame::subscribe(id, destination, ack);
        self.send_sync(frame, &format!("sub-{id}"));
    }

    /// Waits until the broker has processed every frame sent so far, without
    /// putting a `receipt` on those frames: sends a SUBSCRIBE to a topic
    /// nobody publishes to, with a receipt (frames are processed in order).
    /// Used after transactional SENDs, whose RECEIPT some brokers defer.
    pub fn barrier(&mut self) {
        self.barriers += 1;
        let id = format!("barrier-{}", self.barriers);
        let frame = Frame::subscribe(id.as_str(), "/topic/stomp-tests-barrier", AckMode::Auto);
        self.send_sync(frame, &id);
    }

    /// Sends DISCONNECT with a receipt, expects the RECEIPT and the close.
    pub fn disconnect(mut self) {
        self.send(&Frame::disconnect().header("receipt", "bye"));
        self.expect_receipt("bye");
        self.expect_closed(T);
    }
}

/// The `host` header the harness's CONNECT frames carry: `localhost`, or
/// `$STOMP_VHOST` (lets the same tests talk to a broker with other vhosts).
pub fn vhost() -> String {
    std::env::var("STOMP_VHOST").unwrap_or_else(|_| "localhost".to_owned())
}

/// A body of `n` bytes holding every byte value, NULs included.
pub fn binary_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

/// Raises this process's open-file soft limit to at least `want` (up to the
/// hard limit); children started afterwards inherit it. Returns the limit
/// now in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= want {
        return soft;
    }
    let target = cur.maximum.map_or(want, |m| m.min(want));
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: cur.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Polls `check` every 10 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
