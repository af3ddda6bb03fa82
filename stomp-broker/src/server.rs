//! The mio driver: sockets in, [`Engine`] in the middle, sockets out.
//!
//! One thread, one [`Poll`]. Per loop turn: read every readable connection
//! in 64 KiB chunks (until `WouldBlock`, or 1 MiB for fairness) and hand
//! the bytes to the engine; run due timers; then, for every connection the
//! engine marked dirty, encode all frames owed into its write buffer and
//! write it once. WRITABLE interest is registered only while a write
//! buffer is not empty. Read buffers are empty `BytesMut`s until bytes
//! arrive and are released when drained, so an idle connection costs a
//! few hundred bytes.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use stomp_frame::{ByteString, EncodeError, Encoder, Frame, Version, names};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::{ConnId, Engine};
use crate::session::Output;
use crate::store::Store;

const WAKER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// The SIGHUP pipe (connection tokens are slab indices, far below this).
const RELOAD: Token = Token(usize::MAX / 2);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 3;
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per loop turn before others get a go.
const READ_BUDGET: usize = 1024 * 1024;
/// Buffers bigger than this are released when they drain.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Encoded bytes a connection's write buffer is filled to before the socket
/// must take some (the rest waits in the engine, still as frames).
const WBUF_CAP: usize = 256 * 1024;
/// How long shutdown waits for owed bytes to drain.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    writing: bool,
    /// Everything owed was written and our side shut down: reading and
    /// discarding until the peer closes (or the linger time runs out), so
    /// unread input does not turn our close into a reset that could destroy
    /// the ERROR or RECEIPT the peer has not read yet.
    draining: bool,
    /// The peer's FIN (or a socket error) was seen: once this connection is
    /// paused, nothing it sent will be read, so it is closed.
    peer_gone: bool,
    /// The peer's address, for the per-IP connection count.
    ip: IpAddr,
    /// TLS state of a connection accepted on a `--tls-listen` address.
    tls: Option<Box<rustls::ServerConnection>>,
    /// Bytes the socket took so far.
    sent: u64,
    /// Auto-ack MESSAGEs in `wbuf` ([`Output::Consumed`]): where each ends
    /// in the stream (`sent` counts), its queue and store sequence number.
    auto_acks: VecDeque<(u64, ByteString, u64)>,
}

impl Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(t) => crate::tls::read(t, &mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// Writes (some of) the write buffer.
    fn write_wbuf(&mut self) -> io::Result<usize> {
        match &mut self.tls {
            Some(t) => crate::tls::write(t, &mut self.stream, &self.wbuf),
            None => self.stream.write(&self.wbuf),
        }
    }

    /// Writes owed TLS records; whether some are still owed.
    fn tls_owed(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            Some(t) => crate::tls::flush(t, &mut self.stream),
            None => Ok(false),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(t) = &mut self.tls {
            t.send_close_notify();
            let _ = crate::tls::flush(t, &mut self.stream);
        }
        self.stream.shutdown(std::net::Shutdown::Write)
    }
}

/// A broker bound to its listeners, ready to [`run`](Broker::run).
///
/// ```no_run
/// use stomp_broker::{Broker, Config};
/// let config = Config { listen: vec!["127.0.0.1:0".into()], memory: true, ..Config::default() };
/// let broker = Broker::bind(config)?;
/// println!("listening on {}", broker.local_addrs()[0]);
/// let running = broker.spawn()?; // or broker.run() on this thread
/// running.shutdown()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Broker {
    poll: Poll,
    listeners: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
    /// Addresses of the TLS listeners (after the plain ones in `listeners`).
    tls_addrs: Vec<SocketAddr>,
    tls: Option<Arc<rustls::ServerConfig>>,
    engine: Engine,
    conns: Vec<Option<Conn>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    signals: Option<UnixStream>,
    reload: Option<UnixStream>,
    /// To the password-checking thread, and its answers back.
    auth_tx: Option<std::sync::mpsc::Sender<crate::engine::AuthRequest>>,
    auth_rx: std::sync::mpsc::Receiver<AuthAnswer>,
    again: Vec<ConnId>,
    /// Refused connections, logged at most once a second.
    refusals: Refusals,
    /// Open connections per peer address (`max_connections_per_ip`).
    per_ip: HashMap<IpAddr, usize>,
    /// Password checks handed to the checking threads and not answered,
    /// by connection (its session serial and address), and their number
    /// per address (`max_pending_logins_per_ip`).
    logins: HashMap<ConnId, (u64, IpAddr)>,
    logins_per_ip: HashMap<IpAddr, usize>,
    /// The input limit (see [`Input`]).
    input: Input,
}

/// Bytes of frames begun and not finished, in all read buffers, against
/// `Config::input_memory`. Over it, a connection in the middle of a frame
/// is not read (its peer waits, as TCP makes it), except one, `favored`,
/// read until its frame is complete, so that some frame always gets
/// through and frees its bytes; the others are read again when it is done
/// or when the total is back under the limit. Connections between frames
/// are read as usual: their frames (ACKs, small SENDs) are what frees
/// memory. So a crowd of half-sent big frames cannot take the machine's
/// memory: the total stays under the limit plus one read per connection.
///
/// The favored connection has `--frame-timeout` to finish its frame: one
/// that trickles it (a byte now and then is not silence) would otherwise
/// hold every other big frame for as long as it likes.
#[derive(Debug, Default)]
struct Input {
    limit: usize,
    bytes: usize,
    favored: Option<ConnId>,
    /// When `favored` was chosen.
    favored_since: Option<Instant>,
    waiting: Vec<ConnId>,
}

impl Input {
    /// Whether `c`, holding part of a frame, may read more now.
    fn may_read(&mut self, c: ConnId, held_now: usize, held_before: usize, now: Instant) -> bool {
        if held_now == 0 || self.bytes.saturating_sub(held_before) + held_now <= self.limit {
            return true;
        }
        match self.favored {
            Some(f) => f == c,
            None => {
                self.favored = Some(c);
                self.favored_since = Some(now);
                true
            }
        }
    }

    /// How long `c` has been favored, when it is.
    fn favored_for(&self, c: ConnId, now: Instant) -> Option<Duration> {
        (self.favored == Some(c))
            .then(|| now.saturating_duration_since(self.favored_since.unwrap_or(now)))
    }

    /// `c` is read again after a pause (memory full, its login checked):
    /// a favored connection's clock restarts, the wait was not its doing.
    fn resumed(&mut self, c: ConnId, now: Instant) {
        if self.favored == Some(c) {
            self.favored_since = Some(now);
        }
    }

    /// `c` now holds `after` bytes instead of `before` (0: done, or gone);
    /// returns the connections to read again, if that freed the way.
    fn settle(&mut self, c: ConnId, before: usize, after: usize) -> Vec<ConnId> {
        self.bytes = self.bytes.saturating_sub(before) + after;
        if after == 0 && self.favored == Some(c) {
            self.favored = None;
            self.favored_since = None;
        }
        if self.favored.is_none() || self.bytes <= self.limit {
            std::mem::take(&mut self.waiting)
        } else {
            Vec::new()
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("addrs", &self.addrs)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// Stops a running broker from another thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Asks the broker to stop: it stops accepting, flushes what is owed,
    /// closes every session and returns from [`Broker::run`].
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            tracing::error!("cannot wake the broker: {e}");
        }
    }
}

/// A broker running on its own thread; shut down when dropped.
#[derive(Debug)]
pub struct RunningBroker {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningBroker {
    /// Where it listens, in the order of [`Config::listen`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where it listens for TLS, in the order of [`Config::tls_listen`].
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// A handle that stops it.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Stops it and waits for its thread.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.handle.shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("broker thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot resolve listen address {addr:?}: {e}; use host:port, as 127.0.0.1:61613"
                ),
            )
        })?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen address {addr:?} resolves to nothing"),
            )
        })
}

impl Broker {
    /// Validates `config`, binds every listener, then opens the store it
    /// names (the journal in its data directory, `./data` by default, or
    /// memory with [`Config::memory`]) and reads back what it holds.
    /// Nothing is accepted until [`run`](Broker::run). A taken port or a
    /// data directory in use by another broker is an error that names it.
    pub fn bind(config: Config) -> io::Result<Broker> {
        let auth = crate::security::authenticator(&config)?;
        Broker::build(config, crate::store::open, auth)
    }

    /// Like [`bind`](Broker::bind), with a given store and authenticator.
    pub fn bind_with(
        config: Config,
        store: Box<dyn Store>,
        auth: Box<dyn Authenticator>,
    ) -> io::Result<Broker> {
        Broker::build(config, |_| Ok(store), auth)
    }

    fn build(
        config: Config,
        store: impl FnOnce(&Config) -> io::Result<Box<dyn Store>>,
        auth: Box<dyn Authenticator>,
    ) -> io::Result<Broker> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        let mut tls_addrs = Vec::new();
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) if !config.tls_listen.is_empty() => {
                Some(crate::tls::server_config(cert, key)?)
            }
            _ => None,
        };
        let all = config.listen.iter().chain(&config.tls_listen);
        for (i, text) in all.enumerate() {
            let addr = resolve(text)?;
            let mut l = TcpListener::bind(addr).map_err(|e| {
                let hint = if e.kind() == io::ErrorKind::AddrInUse {
                    "; stop what uses it or pick another --listen"
                } else {
                    ""
                };
                io::Error::new(e.kind(), format!("cannot listen on {text}: {e}{hint}"))
            })?;
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE - i), Interest::READABLE)?;
            if i < config.listen.len() {
                addrs.push(l.local_addr()?);
            } else {
                tls_addrs.push(l.local_addr()?);
            }
            listeners.push(l);
        }
        let every: Vec<SocketAddr> = addrs.iter().chain(&tls_addrs).copied().collect();
        crate::security::warn_if_open(&config, &every, auth.as_ref());
        let mut store = store(&config)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake = waker.clone();
        store.set_wakeup(Box::new(move || {
            let _ = wake.wake();
        }));
        let (auth_tx, auth_rx) = auth_thread(waker.clone())?;
        let input = Input {
            limit: config.input_memory(),
            ..Input::default()
        };
        let mut engine = Engine::with_parts(config, store, auth);
        engine.set_auth_offload(true);
        // Message ids must not repeat across runs, even when the store kept
        // nothing to count from: start this run's sequence at the wall clock
        // in microseconds, which no earlier run can have caught up with
        // (that would take over a million messages a second, sustained).
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        engine.start_sequence_at(micros);
        Ok(Broker {
            poll,
            listeners,
            addrs,
            tls_addrs,
            tls,
            engine,
            conns: Vec::new(),
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            signals: None,
            reload: None,
            auth_tx: Some(auth_tx),
            auth_rx,
            again: Vec::new(),
            refusals: Refusals::default(),
            per_ip: HashMap::new(),
            logins: HashMap::new(),
            logins_per_ip: HashMap::new(),
            input,
        })
    }

    /// Where it listens, in the order of [`Config::listen`] (real ports
    /// when port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where it listens for TLS, in the order of [`Config::tls_listen`].
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// A handle that stops [`run`](Broker::run) from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Stops the broker when a byte arrives on `pipe` (the read end of a
    /// signal-hook pipe registered for SIGINT/SIGTERM).
    pub fn stop_on_readable(&mut self, pipe: std::os::unix::net::UnixStream) -> io::Result<()> {
        pipe.set_nonblocking(true)?;
        let mut s = UnixStream::from_std(pipe);
        self.poll
            .registry()
            .register(&mut s, SIGNALS, Interest::READABLE)?;
        self.signals = Some(s);
        Ok(())
    }

    /// Reloads the users file and the TLS certificate and key when a byte
    /// arrives on `pipe` (the read end of a signal-hook pipe for SIGHUP).
    /// A file that does not load is logged and the old settings stay.
    pub fn reload_on_readable(&mut self, pipe: std::os::unix::net::UnixStream) -> io::Result<()> {
        pipe.set_nonblocking(true)?;
        let mut s = UnixStream::from_std(pipe);
        self.poll
            .registry()
            .register(&mut s, RELOAD, Interest::READABLE)?;
        self.reload = Some(s);
        Ok(())
    }

    /// Reads the users file and the TLS files again (SIGHUP).
    fn reload(&mut self) {
        let cfg = self.engine.config();
        if cfg.users.is_some() {
            match crate::security::authenticator(cfg) {
                Ok(auth) => {
                    self.engine.set_authenticator(auth, Instant::now());
                    tracing::info!("users file reloaded");
                }
                Err(e) => tracing::error!("users file not reloaded, the old one stays: {e}"),
            }
        }
        let cfg = self.engine.config();
        if let (Some(cert), Some(key), Some(_)) = (&cfg.tls_cert, &cfg.tls_key, &self.tls) {
            match crate::tls::server_config(cert, key) {
                Ok(t) => {
                    self.tls = Some(t);
                    tracing::info!("TLS certificate reloaded (new connections use it)");
                }
                Err(e) => tracing::error!("TLS files not reloaded, the old ones stay: {e}"),
            }
        }
    }

    /// Runs the broker on a new thread.
    pub fn spawn(self) -> io::Result<RunningBroker> {
        let addrs = self.addrs.clone();
        let tls_addrs = self.tls_addrs.clone();
        let handle = self.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("stomp-broker".into())
            .spawn(move || self.run())?;
        Ok(RunningBroker {
            addrs,
            tls_addrs,
            handle,
            thread: Some(thread),
        })
    }

    /// Serves until shut down (a [`ShutdownHandle`] or the signal pipe).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut dirty = Vec::new();
        let mut resumed = Vec::new();
        loop {
            let timeout = if self.again.is_empty() && !self.engine.has_dirty() {
                self.engine
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for c in std::mem::take(&mut self.again) {
                self.read(c, &mut scratch, true, now);
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    RELOAD => {
                        if let Some(s) = self.reload.as_mut() {
                            let mut b = [0u8; 64];
                            while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                        }
                        tracing::info!("SIGHUP received, reloading");
                        self.reload();
                    }
                    SIGNALS => {
                        if let Some(s) = self.signals.as_mut() {
                            let mut b = [0u8; 64];
                            while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                        }
                        tracing::info!("signal received, shutting down");
                        self.stop.store(true, Ordering::SeqCst);
                    }
                    Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                        self.accept(LISTENER_BASE - t, now);
                    }
                    Token(c) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            // A FIN or error already seen must be read to the end.
                            let to_end = ev.is_read_closed() || ev.is_error();
                            if to_end && let Some(Some(conn)) = self.conns.get_mut(c) {
                                conn.peer_gone = true;
                            }
                            self.read(c, &mut scratch, to_end, now);
                        }
                        if ev.is_writable() {
                            dirty.push(c);
                        }
                    }
                }
            }
            self.engine.handle_timeout(now);
            while let Ok((conn, serial, result)) = self.auth_rx.try_recv() {
                if self.logins.get(&conn).is_some_and(|(s, _)| *s == serial) {
                    self.login_answered(conn);
                }
                self.engine.auth_done(conn, serial, result, now);
            }
            self.settle(&mut dirty, &mut resumed, &mut scratch, now);
            for req in self.engine.take_auth_requests() {
                let Some(Some(conn)) = self.conns.get(req.conn) else {
                    continue;
                };
                let ip = conn.ip;
                let waiting = self.logins_per_ip.get(&ip).copied().unwrap_or(0);
                if waiting >= self.engine.config().max_pending_logins_per_ip {
                    let detail = format!(
                        "{waiting} logins from {ip} are already waiting for their password check; try again later (the broker's max-pending-logins-per-ip)"
                    );
                    self.engine.refuse_login(req.conn, req.serial, detail, now);
                    continue;
                }
                *self.logins_per_ip.entry(ip).or_default() += 1;
                self.logins.insert(req.conn, (req.serial, ip));
                if let Some(tx) = &self.auth_tx
                    && tx.send(req).is_err()
                {
                    tracing::error!("the password-checking thread is gone");
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return self.shutdown();
            }
        }
    }

    /// Flushes dirty connections and re-reads resumed ones until quiet.
    fn settle(
        &mut self,
        dirty: &mut Vec<ConnId>,
        resumed: &mut Vec<ConnId>,
        scratch: &mut [u8],
        now: Instant,
    ) {
        // What is owed goes out before the turn's commit: an auto-ack
        // MESSAGE written now leaves the store in the same group as its
        // arrival, so it is never written to disk.
        self.engine.take_dirty(dirty);
        for c in dirty.drain(..) {
            self.flush(c, now);
        }
        self.engine.flush_store(now);
        let mut read_after_commit = false;
        for _ in 0..16 {
            self.engine.take_resumed(resumed);
            for c in resumed.drain(..) {
                read_after_commit = true;
                self.input.resumed(c, now);
                self.read(c, scratch, true, now);
            }
            self.engine.take_dirty(dirty);
            if dirty.is_empty() {
                break;
            }
            for c in dirty.drain(..) {
                self.flush(c, now);
            }
        }
        if read_after_commit {
            // What those reads did (the frames behind a CONNECT whose login
            // was just checked, a producer that memory let go on) joins a
            // commit now: left for the next turn's, its RECEIPTs would wait
            // for whatever wakes the loop next, a timer seconds away.
            self.engine.flush_store(now);
            self.engine.take_dirty(dirty);
            for c in dirty.drain(..) {
                self.flush(c, now);
            }
        }
        // The last flushes may have freed memory that paused producers wait
        // for (after 16 rounds, or in the last one): they are read at the
        // start of the next turn, and the poll does not wait for them.
        self.engine.take_resumed(resumed);
        for &c in resumed.iter() {
            self.input.resumed(c, now);
        }
        self.again.append(resumed);
    }

    fn accept(&mut self, i: usize, now: Instant) {
        loop {
            let (mut stream, peer) = match self.listeners[i].accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            let is_tls = i >= self.addrs.len();
            if self.engine.connections() >= self.engine.config().max_connections {
                self.refusals
                    .note(format_args!("refusing {peer}: max-connections reached"));
                if is_tls {
                    continue;
                }
                let err = Frame::error("too many connections")
                    .header(names::CONTENT_TYPE, "text/plain")
                    .body("the broker has reached its max-connections limit");
                if let Ok(bytes) = Encoder::new(Version::V1_0).to_bytes(&err) {
                    let _ = stream.write(&bytes);
                }
                continue;
            }
            let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if from_ip >= self.engine.config().max_connections_per_ip {
                self.refusals.note(format_args!(
                    "refusing {peer}: max-connections-per-ip reached"
                ));
                if is_tls {
                    continue;
                }
                let err = Frame::error("too many connections from your address")
                    .header(names::CONTENT_TYPE, "text/plain")
                    .body(
                        "the broker has reached its max-connections-per-ip limit for this address",
                    );
                if let Ok(bytes) = Encoder::new(Version::V1_0).to_bytes(&err) {
                    let _ = stream.write(&bytes);
                }
                continue;
            }
            let tls = match (&self.tls, is_tls) {
                (Some(cfg), true) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(e) => {
                        tracing::warn!("cannot start TLS with {peer}: {e}");
                        continue;
                    }
                },
                _ => None,
            };
            let _ = stream.set_nodelay(true);
            let c = self.engine.open(now);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, Token(c), Interest::READABLE)
            {
                tracing::warn!("cannot register {peer}: {e}");
                self.engine.close(c, now);
                continue;
            }
            tracing::debug!(conn = c, "accepted {peer}");
            if self.conns.len() <= c {
                self.conns.resize_with(c + 1, || None);
            }
            self.conns[c] = Some(Conn {
                stream,
                rbuf: BytesMut::new(),
                wbuf: BytesMut::new(),
                writing: false,
                draining: false,
                peer_gone: false,
                ip: peer.ip(),
                tls,
                sent: 0,
                auto_acks: VecDeque::new(),
            });
            *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        }
    }

    /// Reads what connection `c` has, feeding the engine. With `to_end`
    /// false, a plain TCP read that returns less than asked ends the turn
    /// without the extra read that would only say WouldBlock: a short read
    /// on a stream socket means its receive queue was emptied, and data or a
    /// FIN arriving later raises a new edge (epoll(7); tokio does the same).
    /// Re-reads after a pause or a spent budget, and events that already
    /// carry a FIN or an error, read until WouldBlock or end of stream.
    fn read(&mut self, c: ConnId, scratch: &mut [u8], to_end: bool, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(c) else {
            return;
        };
        if conn.draining {
            let eof = loop {
                match conn.read(scratch) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if eof {
                self.close(c, now);
            }
            return;
        }
        let held = conn.rbuf.len();
        self.engine.hold_input(c, false);
        // Frames left over from before a pause come first.
        if !conn.rbuf.is_empty() {
            self.engine.handle_input(c, &mut conn.rbuf, now);
        }
        let mut eof = false;
        let mut budget = READ_BUDGET;
        loop {
            if self.engine.is_paused(c) || self.engine.is_closing(c) {
                break;
            }
            if budget == 0 {
                self.again.push(c);
                break;
            }
            if !self.input.may_read(c, conn.rbuf.len(), held, now) {
                self.input.waiting.push(c);
                self.engine.hold_input(c, true);
                break;
            }
            let limit = Duration::from_millis(self.engine.config().frame_timeout);
            if let Some(took) = self.input.favored_for(c, now)
                && !limit.is_zero()
                && took > limit
            {
                self.engine.frame_overdue(c, took, now);
                break;
            }
            match conn.read(scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    conn.rbuf.extend_from_slice(&scratch[..n]);
                    self.engine.handle_input(c, &mut conn.rbuf, now);
                    if !to_end && n < scratch.len() && conn.tls.is_none() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(conn = c, "read error: {e}");
                    eof = true;
                    break;
                }
            }
        }
        if !eof && conn.peer_gone && self.engine.is_held_back(c) {
            // Paused (memory full, say) and the peer is gone: what it still
            // had to say will not be read, and what it holds (an open
            // transaction, unacked messages) must be freed for the others.
            tracing::debug!(conn = c, "peer gone while paused: closing");
            eof = true;
        }
        // At the end of the stream, what is left is a frame never finished.
        let leftover = if eof {
            std::mem::take(&mut conn.rbuf)
        } else {
            BytesMut::new()
        };
        if conn.rbuf.is_empty() && conn.rbuf.capacity() > 0 {
            conn.rbuf = BytesMut::new();
        }
        let freed = self.input.settle(c, held, conn.rbuf.len());
        self.again.extend(freed);
        if !eof && !conn.writing && conn.tls.as_ref().is_some_and(|t| t.wants_write()) {
            // Handshake records the socket did not take yet.
            self.flush(c, now);
        }
        if eof {
            tracing::debug!(conn = c, "peer closed");
            if !leftover.is_empty() {
                self.engine.input_ended(c, &leftover, now);
            }
            self.flush(c, now);
            self.close(c, now);
        }
    }

    fn flush(&mut self, c: ConnId, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(c) else {
            return;
        };
        let enc = Encoder::new(self.engine.version(c));
        let mut broken = conn.tls_owed().is_err();
        // Frames are encoded a window (`WBUF_CAP`) at a time, as the socket
        // takes them: what the engine still holds it can drop (a slow
        // consumer's topic messages, whose ERROR then goes out next).
        let mut more = true;
        while more && !broken {
            while conn.wbuf.len() < WBUF_CAP {
                match self.engine.pop_output(c) {
                    Some(Output::Heartbeat) => conn.wbuf.put_u8(b'\n'),
                    Some(Output::Frame(f)) => encode_lossy(&enc, f, &mut conn.wbuf),
                    Some(Output::Consumed { frame, queue, seq }) => {
                        encode_lossy(&enc, frame, &mut conn.wbuf);
                        let end = conn.sent + conn.wbuf.len() as u64;
                        conn.auto_acks.push_back((end, queue, seq));
                    }
                    None => {
                        more = false;
                        break;
                    }
                }
            }
            while !conn.wbuf.is_empty() && !broken {
                match conn.write_wbuf() {
                    Ok(0) => broken = true,
                    Ok(n) => {
                        conn.wbuf.advance(n);
                        conn.sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        more = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(conn = c, "write error: {e}");
                        broken = true;
                    }
                }
            }
        }
        while let Some((end, ..)) = conn.auto_acks.front()
            && *end <= conn.sent
        {
            let (_, queue, seq) = conn.auto_acks.pop_front().expect("front");
            self.engine.auto_acked(&queue, seq);
        }
        if conn.wbuf.is_empty() && conn.wbuf.capacity() > KEEP_CAPACITY {
            conn.wbuf = BytesMut::new();
        }
        let pending = conn.wbuf.len();
        let tls_owed = conn.tls.as_ref().is_some_and(|t| t.wants_write());
        let want = pending > 0 || tls_owed;
        if want != conn.writing && !broken {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(c), interest)
                .is_err()
            {
                broken = true;
            }
            conn.writing = want;
        }
        self.engine.wrote(c, pending, now);
        if broken || self.engine.is_cut(c) {
            self.close(c, now);
        } else if self.engine.should_close(c, pending + usize::from(tls_owed)) && !conn.draining {
            conn.draining = true;
            let freed = self.input.settle(c, conn.rbuf.len(), 0);
            self.again.extend(freed);
            conn.rbuf = BytesMut::new();
            if conn.shutdown_write().is_err() {
                self.close(c, now);
            }
        }
    }

    /// A password check handed out for `c` is over (answered, or its
    /// connection closed).
    fn login_answered(&mut self, c: ConnId) {
        if let Some((_, ip)) = self.logins.remove(&c)
            && let Some(n) = self.logins_per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.logins_per_ip.remove(&ip);
            }
        }
    }

    fn close(&mut self, c: ConnId, now: Instant) {
        self.login_answered(c);
        if let Some(slot) = self.conns.get_mut(c)
            && let Some(mut conn) = slot.take()
        {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            if !self.engine.is_stopping() {
                for (_, queue, seq) in conn.auto_acks.drain(..) {
                    self.engine.auto_acked(&queue, seq);
                }
            }
            let freed = self.input.settle(c, conn.rbuf.len(), 0);
            self.again.extend(freed);
            if let Some(n) = self.per_ip.get_mut(&conn.ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&conn.ip);
                }
            }
            tracing::debug!(conn = c, "closed");
        }
        self.engine.close(c, now);
    }

    fn shutdown(mut self) -> io::Result<()> {
        self.engine.stop();
        for mut l in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let now = Instant::now();
        self.engine.flush_store(now);
        let open: Vec<ConnId> = (0..self.conns.len())
            .filter(|&c| self.conns[c].is_some())
            .collect();
        for &c in &open {
            self.flush(c, now);
        }
        let deadline = now + SHUTDOWN_FLUSH;
        let mut events = Events::with_capacity(256);
        while Instant::now() < deadline {
            let pending: Vec<ConnId> = (0..self.conns.len())
                .filter(|&c| self.conns[c].as_ref().is_some_and(|k| !k.wbuf.is_empty()))
                .collect();
            if pending.is_empty() && self.engine.receipts_waiting() == 0 {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(20)));
            let now = Instant::now();
            self.engine.flush_store(now);
            let mut dirty = Vec::new();
            self.engine.take_dirty(&mut dirty);
            dirty.extend(pending);
            for c in dirty {
                self.flush(c, now);
            }
        }
        let now = Instant::now();
        for c in 0..self.conns.len() {
            if self.conns[c].is_some() {
                self.close(c, now);
            }
        }
        self.engine.flush_store(now);
        tracing::info!("broker stopped");
        Ok(())
    }
}

/// Logs refused connections without flooding the log: the first one, then
/// at most one line a second with how many were refused since.
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        if self.unlogged > 0 {
            tracing::warn!(
                "{what} (and {} more refused since the last such line)",
                self.unlogged
            );
        } else {
            tracing::warn!("{what}");
        }
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// A checked login: connection, session serial, outcome.
type AuthAnswer = (ConnId, u64, Result<crate::auth::Principal, String>);

/// Starts the threads that check passwords (argon2 takes tens of
/// milliseconds by design), one per CPU up to 4, so that a burst of logins
/// does not stall the event loop. A check whose connection closed while it
/// waited is skipped. They end when the broker drops its sender.
fn auth_thread(
    waker: Arc<Waker>,
) -> io::Result<(
    std::sync::mpsc::Sender<crate::engine::AuthRequest>,
    std::sync::mpsc::Receiver<AuthAnswer>,
)> {
    let (req_tx, req_rx) = std::sync::mpsc::channel::<crate::engine::AuthRequest>();
    let (ans_tx, ans_rx) = std::sync::mpsc::channel();
    let req_rx = Arc::new(std::sync::Mutex::new(req_rx));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    for _ in 0..workers {
        let (req_rx, ans_tx, waker) = (Arc::clone(&req_rx), ans_tx.clone(), Arc::clone(&waker));
        std::thread::Builder::new()
            .name("stomp-auth".into())
            .spawn(move || {
                loop {
                    let next = req_rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some(req) = next else { return };
                    if req.is_abandoned() {
                        continue;
                    }
                    let result = req.run();
                    if ans_tx.send((req.conn, req.serial, result)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
    }
    Ok((req_tx, ans_rx))
}

/// Encodes a frame; headers this version cannot carry (a newline in a
/// 1.0 header, say) are left out rather than failing the delivery.
fn encode_lossy(enc: &Encoder, mut frame: Frame, out: &mut BytesMut) {
    loop {
        match enc.encode(&frame, out) {
            Ok(()) => return,
            Err(EncodeError::Unencodable { header, .. }) if frame.headers.remove(&header) => {
                tracing::debug!(
                    "header {header:?} cannot be written in STOMP {}; left out",
                    enc.version()
                );
            }
            Err(e) => {
                tracing::warn!("cannot encode {}: {e}", frame.command);
                return;
            }
        }
    }
}
