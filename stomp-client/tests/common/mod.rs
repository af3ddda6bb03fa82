//! Test helpers: our broker as a real process, and a scripted fake server.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stomp_client::stomp_frame::bytes::BytesMut;
use stomp_client::stomp_frame::{Decoder, Encoder, Frame, Item, Version};

/// The `stomp-broker` binary next to the test executable
/// (target/<profile>/deps/<test> -> target/<profile>/stomp-broker), built
/// with cargo first when `cargo test -p stomp-client` did not build it.
pub fn broker_binary() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(format!("stomp-broker{}", std::env::consts::EXE_SUFFIX));
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "stomp-broker", "--bin", "stomp-broker"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p stomp-broker");
        assert!(status.success(), "cargo build -p stomp-broker failed");
    }
    assert!(bin.exists(), "no broker binary at {}", bin.display());
    bin
}

/// Our broker, running as a child process; killed on drop.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    extra: Vec<String>,
}

impl Broker {
    /// Starts the broker on an ephemeral port, in memory.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts it with extra flags.
    pub fn start_with(extra: &[&str]) -> Broker {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn("127.0.0.1:0", &extra);
        Broker {
            child: Some(child),
            addr,
            extra,
        }
    }

    pub fn url(&self) -> String {
        format!("stomp://{}", self.addr)
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the process (SIGKILL: a crash, no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the process (SIGSTOP): it reads and writes nothing until
    /// [`resume`](Broker::resume)d, while the kernel still fills its
    /// sockets' buffers: a broker that stopped reading, for real.
    #[cfg(unix)]
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Broker::pause)d process run again (SIGCONT).
    #[cfg(unix)]
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    #[cfg(unix)]
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("the broker runs").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid}: {status}");
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match try_spawn(&self.addr.to_string(), &self.extra) {
                Ok((child, addr)) => {
                    assert_eq!(addr, self.addr);
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot restart the broker on {}: {e}", self.addr),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(listen: &str, extra: &[String]) -> (Child, SocketAddr) {
    try_spawn(listen, extra).unwrap_or_else(|e| panic!("broker did not start: {e}"))
}

fn try_spawn(listen: &str, extra: &[String]) -> Result<(Child, SocketAddr), String> {
    let mut child = Command::new(broker_binary())
        .args(["--listen", listen, "--memory", "--log-level", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the broker never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => {
            let addr = line
                .strip_prefix("listening on ")
                .and_then(|a| a.trim().parse().ok())
                .ok_or_else(|| format!("unexpected first line {line:?}"))?;
            Ok((child, addr))
        }
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            Err(format!("no `listening on` line (exit: {status:?})"))
        }
    }
}

/// A unique destination name per test run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One accepted connection of the fake server, speaking raw STOMP.
pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
    dec: Decoder,
    pub version: Version,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Peer {
            stream,
            buf: BytesMut::new(),
            dec: Decoder::new(Version::V1_2),
            version: Version::V1_2,
        }
    }

    /// The next frame from the client (heart-beats skipped), within `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(item) = self
                .dec
                .decode(&mut self.buf)
                .expect("client sent bad STOMP")
            {
                if let Item::Frame(f) = item {
                    return Some(f);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Counts bare EOLs (heart-beats) received within `d`.
    pub fn count_beats(&mut self, d: Duration) -> usize {
        let deadline = Instant::now() + d;
        let mut n = 0;
        while Instant::now() < deadline {
            while let Some(item) = self.dec.decode(&mut self.buf).unwrap() {
                if item == Item::Heartbeat {
                    n += 1;
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        n
    }

    pub fn write(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        Encoder::new(self.version).encode(frame, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads CONNECT and answers CONNECTED with these headers.
    pub fn handshake(&mut self, version: Version, heart_beat: &str) -> Frame {
        let connect = self
            .read_frame(Duration::from_secs(5))
            .expect("CONNECT from the client");
        assert_eq!(connect.command, stomp_client::stomp_frame::Command::Connect);
        self.version = version;
        self.dec.set_version(version);
        self.write(
            &Frame::connected(version)
                .header("heart-beat", heart_beat)
                .header("server", "fake/1"),
        );
        connect
    }
}

/// A fake STOMP server: runs `script` on each accepted connection in turn,
/// on a thread, for at most `connections` connections.
pub struct FakeServer {
    pub addr: SocketAddr,
    handle: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start<F>(connections: usize, script: F) -> FakeServer
    where
        F: Fn(usize, Peer) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(25);
            let mut n = 0;
            while n < connections && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        script(n, Peer::new(s));
                        n += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer {
            addr,
            handle: Some(handle),
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for the script to finish (bounded by its own 25 s deadline).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            h.join().expect("fake server script panicked");
        }
    }
}

/// Waits for a connection event matching `pred`, for at most `d`.
pub fn wait_event(
    rx: &crossbeam_channel::Receiver<stomp_client::ConnectionEvent>,
    d: Duration,
    pred: impl Fn(&stomp_client::ConnectionEvent) -> bool,
) -> Option<stomp_client::ConnectionEvent> {
    let deadline = Instant::now() + d;
    while let Ok(ev) = rx.recv_deadline(deadline) {
        if pred(&ev) {
            return Some(ev);
        }
    }
    None
}
