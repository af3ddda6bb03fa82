//! The sans-I/O broker core: every session and destination, driven by
//! frames and time.
//!
//! The [`Engine`] never reads a clock or touches a socket. A driver (the
//! mio loop in [`server`](crate::server), a unit test, a fuzz target) calls,
//! in this order:
//!
//! 1. [`open`](Engine::open) when a connection arrives; it returns the
//!    [`ConnId`] to use from then on;
//! 2. [`handle_input`](Engine::handle_input) with the bytes read so far
//!    (or [`handle_frame`](Engine::handle_frame) with decoded frames);
//!    decoding stops early when the session is paused or closing, leaving
//!    the rest in the buffer;
//! 3. [`handle_timeout`](Engine::handle_timeout) when
//!    [`next_deadline`](Engine::next_deadline) has passed;
//! 4. for each connection in [`take_dirty`](Engine::take_dirty): take the
//!    frames owed with [`pop_output`](Engine::pop_output), write them, then
//!    report what is still unwritten with [`wrote`](Engine::wrote)
//!    (that may deliver more, so loop while connections are dirty), and
//!    each [`Output::Consumed`] whose last byte the socket took with
//!    [`auto_acked`](Engine::auto_acked); close it once
//!    [`should_close`](Engine::should_close) says so, and tell the engine
//!    with [`close`](Engine::close);
//! 5. [`flush_store`](Engine::flush_store) once per turn (the mio loop
//!    writes first, then commits, then writes the RECEIPTs it released);
//! 6. read again from every connection in [`take_resumed`](Engine::take_resumed)
//!    (its reading was paused because memory was full, and memory freed).
//!
//! Spec-silent choices (ActiveMQ and RabbitMQ agree where they exist):
//!
//! - `message-id` is `m-<n>`, unique across runs (the driver starts `n`
//!   at the wall clock in microseconds, see [`Engine::start_sequence_at`]); `ack` ids are
//!   `<slot>.<n>`, opaque and unique per connection. The `ack` header is on
//!   every MESSAGE of a client-mode subscription, whatever the version.
//! - A 1.0 SUBSCRIBE without `id` uses the destination as its id.
//! - ACK/NACK: `id` (the MESSAGE's `ack`) is accepted from every version,
//!   and `message-id` (with or without `subscription`) from every version
//!   when it names one unacknowledged message.
//! - NACK in a 1.0 session, an ACK of an auto-ack subscription, an unknown
//!   ack id, UNSUBSCRIBE of an unknown id: ERROR and close.
//! - NACK of a `client` subscription is cumulative, like its ACK.
//! - `host` is not checked (any virtual host is accepted).
//! - `activemq.prefetchSize:0` is taken as 1; `prefetch-count:0` (RabbitMQ's
//!   header) means no window, as in RabbitMQ.
//! - Topic subscribers in client modes get at most their window of
//!   unacknowledged messages; further topic messages are held for them
//!   (within topic flow control) until acknowledgements open the window.
//!   Unacknowledged topic messages are not redelivered.
//! - Messages in a dead-letter queue are not dead-lettered again; a message
//!   moved there gets `original-destination`.
//! - A heart-beat timeout sends an ERROR (`heart-beat timeout`) and closes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slab::Slab;
use stomp_frame::{AckMode, ByteString, Command, Decoder, Frame, HeartBeat, Item, Version, names};

use crate::auth::{AllowAll, Authenticator, Credentials, Right};
use crate::config::{Config, SlowConsumerPolicy};
use crate::router::{Message, Queue, Router, SubRef};
use crate::session::{
    AckOp, Output, Phase, Session, Subscription, TimerKind, Tx, Unacked, estimate,
};
use crate::store::{MemoryStore, Store, StoredMessage};
use crate::timer::Timers;

/// Identifies a connection inside one engine (reused after [`Engine::close`]).
pub type ConnId = usize;

/// The value of the `server` header of CONNECTED.
pub const SERVER: &str = concat!("stomp-rs/", env!("CARGO_PKG_VERSION"));

/// How long a closing connection may take to drain before it is cut.
const LINGER: Duration = Duration::from_secs(2);

/// The same for a slow consumer cut off by the policy: its undelivered
/// topic messages are dropped, so what is left to drain before its ERROR is
/// small, but it reads slowly (or not at all for a while).
const SLOW_LINGER: Duration = Duration::from_secs(30);

/// Below this backlog a queue subscriber gets more messages.
const DISPATCH_MARK: usize = 256 * 1024;

/// Counters, for tests, invariants and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages that entered a queue from a SEND (or a COMMIT).
    pub accepted: u64,
    /// Queue messages consumed: acknowledged, or delivered in auto mode.
    pub consumed: u64,
    /// Queue messages moved to a dead-letter queue (they stay queued there).
    pub dead_lettered: u64,
    /// Topic messages published.
    pub published: u64,
    /// Topic deliveries dropped (window full or slow consumer).
    pub topic_dropped: u64,
    /// Connections opened.
    pub connections: u64,
}

/// A CONNECT whose credentials are to be checked off the event loop
/// (see [`Engine::set_auth_offload`]).
pub struct AuthRequest {
    /// The connection.
    pub conn: ConnId,
    /// Its session serial (connection ids are reused).
    pub serial: u64,
    login: Option<String>,
    passcode: Option<String>,
    host: Option<String>,
    auth: std::sync::Arc<dyn Authenticator>,
    /// Set when the connection closes before its check ran.
    gone: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("conn", &self.conn)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl AuthRequest {
    /// Whether the connection closed meanwhile: the check can be skipped
    /// (a client that gave up waiting costs no password hash).
    pub fn is_abandoned(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks the credentials (slow: call it on another thread).
    pub fn run(&self) -> Result<crate::auth::Principal, String> {
        self.auth.authenticate(&Credentials {
            login: self.login.as_deref(),
            passcode: self.passcode.as_deref(),
            host: self.host.as_deref(),
        })
    }
}

/// A session's `write_ticket` while the turn's commit has not given it one.
const THIS_TURN: u64 = u64::MAX;

/// A RECEIPT that waits for the store to write what its frame changed.
#[derive(Debug)]
struct StoreReceipt {
    conn: ConnId,
    serial: u64,
    receipt: ByteString,
    /// The frame stored messages (a SEND, a COMMIT with SENDs, a move to a
    /// dead-letter queue). If the write fails, this frame gets an ERROR; a
    /// frame that only removed or marked messages (an ACK, a SUBSCRIBE that
    /// delivered) gets its RECEIPT: what it did holds in memory, and its
    /// records are written with the store's retry.
    stored: bool,
}

/// Why a frame is refused: the ERROR frame's `message` and body.
#[derive(Debug)]
struct Fail {
    message: String,
    detail: String,
    version: bool,
}

fn fail<T>(message: impl Into<String>, detail: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        message: message.into(),
        detail: detail.into(),
        version: false,
    })
}

fn required<'a>(frame: &'a Frame, name: &str) -> Result<&'a ByteString, Fail> {
    match frame.headers.get_shared(name) {
        Some(v) => Ok(v),
        None => fail(
            format!("missing {name} header"),
            format!("a {} frame must have a {name} header", frame.command),
        ),
    }
}

/// Where a destination lives.
enum Kind {
    Queue,
    Topic,
}

/// The broker core. See the [module docs](self) for how to drive it.
pub struct Engine {
    cfg: Config,
    sessions: Slab<Session>,
    router: Router,
    timers: Timers<(ConnId, u64, TimerKind)>,
    dirty: Vec<ConnId>,
    blocked: Vec<(ConnId, u64, ByteString)>,
    /// Connections whose write backlog drained while their reading was stopped.
    unblocked: Vec<ConnId>,
    store: Box<dyn Store>,
    /// The store is durable: RECEIPTs wait for their group to be on disk.
    durable: bool,
    /// RECEIPTs of this turn.
    held: Vec<StoreReceipt>,
    /// RECEIPTs waiting for a ticket to be durable, in ticket order.
    waiting: VecDeque<(u64, StoreReceipt)>,
    /// Connections that changed the store this turn (their
    /// `write_ticket` is `THIS_TURN` until the commit).
    writers: Vec<(ConnId, u64)>,
    /// The last failed write the store reported (its top ticket, why),
    /// until a retry writes past it.
    failed: Option<(u64, String)>,
    /// See [`stop`](Engine::stop).
    stopping: bool,
    auth: std::sync::Arc<dyn Authenticator>,
    auth_offload: bool,
    auth_requests: Vec<AuthRequest>,
    next_seq: u64,
    next_serial: u64,
    stats: Stats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with the memory store and no authentication.
    pub fn new(cfg: Config) -> Engine {
        Engine::with_parts(cfg, Box::new(MemoryStore), Box::new(AllowAll))
    }

    /// Numbers the next messages from `first` on, unless recovered messages
    /// already numbered past it: the driver passes a value that grows
    /// between runs (the wall clock), so `message-id`s never repeat.
    pub fn start_sequence_at(&mut self, first: u64) {
        self.next_seq = self.next_seq.max(first);
    }

    /// An engine with a given store and authenticator. Messages the store
    /// recovers are queued again.
    pub fn with_parts(
        cfg: Config,
        mut store: Box<dyn Store>,
        auth: Box<dyn Authenticator>,
    ) -> Engine {
        let recovered = store.recover().unwrap_or_else(|e| {
            tracing::error!("store {} could not recover: {e}", store.name());
            Default::default()
        });
        let durable = store.is_durable();
        let mut engine = Engine {
            cfg,
            sessions: Slab::new(),
            router: Router::default(),
            timers: Timers::default(),
            dirty: Vec::new(),
            blocked: Vec::new(),
            unblocked: Vec::new(),
            store,
            durable,
            held: Vec::new(),
            writers: Vec::new(),
            failed: None,
            stopping: false,
            waiting: VecDeque::new(),
            auth: auth.into(),
            auth_offload: false,
            auth_requests: Vec::new(),
            next_seq: recovered.max_seq + 1,
            next_serial: 1,
            stats: Stats::default(),
        };
        for m in recovered.messages {
            engine.next_seq = engine.next_seq.max(m.seq + 1);
            let frame = Frame {
                command: Command::Send,
                headers: m.headers,
                body: m.body,
            };
            let mut msg = Message::from_send(m.seq, m.queue.clone(), frame);
            msg.size += engine.store.held_bytes(&m.queue, &msg.headers);
            msg.deliveries = m.deliveries;
            msg.redelivered = m.deliveries > 0;
            let is_dlq = m.queue.starts_with(&engine.cfg.dlq_prefix);
            engine.router.memory += msg.size;
            engine.stats.accepted += 1;
            if !is_dlq && msg.deliveries >= engine.cfg.max_deliveries {
                // Delivered as often as allowed before a crash (a clean
                // stop returns it, and the return moves it): it would loop.
                engine.dead_letter(&m.queue, msg);
                continue;
            }
            let q = engine.router.queues.entry(m.queue).or_default();
            q.is_dlq = is_dlq;
            q.bytes += msg.size;
            q.ready.push_back(msg);
        }
        engine
    }

    /// Replaces the authenticator (a reloaded users file). Open sessions
    /// are authorized by the new rules from now on, with their user's new
    /// groups; one whose user is gone, or that holds a subscription it may
    /// no longer read, gets an ERROR and is closed (what it held goes back).
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>, now: Instant) {
        self.auth = auth.into();
        let open: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.phase == Phase::Open)
            .map(|(c, _)| c)
            .collect();
        for conn in open {
            let s = &mut self.sessions[conn];
            let who = s
                .principal
                .user
                .clone()
                .unwrap_or_else(|| "anonymous".into());
            let Some(p) = self.auth.refresh(&s.principal) else {
                let f = Fail {
                    message: "access revoked".into(),
                    detail: format!("user {who:?} is no longer in the users file"),
                    version: false,
                };
                self.fail(conn, f, None, now);
                continue;
            };
            s.principal = p;
            let denied = s
                .subs
                .iter()
                .flatten()
                .find(|sub| !self.auth.authorize(&s.principal, Right::Read, &sub.dest))
                .map(|sub| sub.dest.clone());
            if let Some(dest) = denied {
                let f = Fail {
                    message: format!("access revoked: no read right on {dest:?}"),
                    detail: format!(
                        "the reloaded users file no longer lets user {who:?} read {dest:?}"
                    ),
                    version: false,
                };
                self.fail(conn, f, None, now);
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Connections open.
    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// Message bytes held by the broker.
    pub fn memory(&self) -> usize {
        self.router.memory
    }

    /// Messages waiting in a queue (not in flight).
    pub fn queue_depth(&self, queue: &str) -> usize {
        self.router.queues.get(queue).map_or(0, |q| q.ready.len())
    }

    /// Messages waiting in every queue (dead-letter queues included).
    pub fn queued_total(&self) -> usize {
        self.router.queues.values().map(|q| q.ready.len()).sum()
    }

    /// A new connection.
    pub fn open(&mut self, now: Instant) -> ConnId {
        let serial = self.next_serial;
        self.next_serial += 1;
        self.stats.connections += 1;
        let decoder = Decoder::with_limits(Version::V1_2, self.cfg.connect_limits());
        let conn = self.sessions.insert(Session::new(serial, decoder, now));
        // The CONNECT deadline (the check is the heart-beat one's, see handle_timeout).
        let deadline = now + Duration::from_millis(self.cfg.connect_timeout);
        self.arm(conn, TimerKind::ReceiveCheck, deadline);
        conn
    }

    /// The protocol version of a connection (1.2 until CONNECT says otherwise).
    pub fn version(&self, conn: ConnId) -> Version {
        self.sessions.get(conn).map_or(Version::V1_2, |s| s.version)
    }

    /// Whether reading from this connection is paused: message memory is
    /// full, or the peer does not read what it is owed.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.sessions
            .get(conn)
            .is_some_and(|s| s.paused || s.out_paused || s.authenticating.is_some())
    }

    /// The driver stops (`true`) or resumes reading `conn` because of its
    /// limit on unfinished frames in memory: no timeout for silence holds
    /// meanwhile.
    pub fn hold_input(&mut self, conn: ConnId, held: bool) {
        if let Some(s) = self.sessions.get_mut(conn) {
            s.input_held = held;
        }
    }

    /// Whether reading is stopped for back-pressure (memory full, or the
    /// peer does not read what it is owed), not for a password check.
    pub fn is_held_back(&self, conn: ConnId) -> bool {
        self.sessions
            .get(conn)
            .is_some_and(|s| s.paused || s.out_paused)
    }

    /// The peer ended its side of the stream with `leftover` bytes of a
    /// frame never finished: it gets an ERROR saying so (it may still be
    /// reading) before the driver closes.
    pub fn input_ended(&mut self, conn: ConnId, leftover: &[u8], now: Instant) {
        let Some(s) = self.sessions.get(conn) else {
            return;
        };
        if s.phase == Phase::Closing
            || s.paused
            || s.out_paused
            || s.authenticating.is_some()
            || leftover.iter().all(|&b| b == b'\r' || b == b'\n')
        {
            return;
        }
        let f = Fail {
            message: "incomplete frame".into(),
            detail: format!(
                "the connection was shut down after {} bytes of a frame that never ended (a frame ends with a NUL byte)",
                leftover.len()
            ),
            version: false,
        };
        self.fail(conn, f, None, now);
    }

    /// While the driver's input memory is full, this connection is the one
    /// read until its frame is complete, and it has taken `took`, more than
    /// `--frame-timeout`, without finishing it (a byte now and then is not
    /// silence): ERROR `incomplete frame` and close, so that the others'
    /// frames get their turn.
    pub fn frame_overdue(&mut self, conn: ConnId, took: Duration, now: Instant) {
        if self
            .sessions
            .get(conn)
            .is_none_or(|s| s.phase == Phase::Closing)
        {
            return;
        }
        let f = Fail {
            message: "incomplete frame".into(),
            detail: format!(
                "a frame was still coming after {} ms while the broker's input memory was full (--frame-timeout, --max-input-memory); the connection is closed",
                took.as_millis()
            ),
            version: false,
        };
        self.fail(conn, f, None, now);
    }

    /// Whether the connection ends once what it is owed is written.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.sessions
            .get(conn)
            .is_none_or(|s| s.phase == Phase::Closing)
    }

    /// Whether the driver should close the connection now: it is closing
    /// and either nothing more is owed (`unwritten` bytes after the last
    /// write) or it lingered too long.
    pub fn should_close(&self, conn: ConnId, unwritten: usize) -> bool {
        match self.sessions.get(conn) {
            None => true,
            Some(s) => {
                s.phase == Phase::Closing
                    && (s.cut || (s.held == 0 && s.outbox.is_empty() && unwritten == 0))
            }
        }
    }

    /// Whether a closing connection ran out of time to drain: close it now,
    /// without waiting for the peer.
    pub fn is_cut(&self, conn: ConnId) -> bool {
        self.sessions.get(conn).is_none_or(|s| s.cut)
    }

    /// Bytes arrived: decode and handle every complete frame in `buf`.
    ///
    /// `buf` must be the connection's one read buffer: the decoder
    /// remembers how far it scanned, so new bytes are appended to what the
    /// last call left in it (never a fresh buffer per read).
    ///
    /// Any byte counts as a sign of life. Stops early (leaving bytes in
    /// `buf`) when the session pauses or starts closing.
    pub fn handle_input(&mut self, conn: ConnId, buf: &mut BytesMut, now: Instant) {
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        s.last_read = now;
        loop {
            let Some(s) = self.sessions.get_mut(conn) else {
                return;
            };
            if s.paused || s.out_paused || s.authenticating.is_some() || s.phase == Phase::Closing {
                return;
            }
            if s.backlog() > self.cfg.max_write_backlog {
                // It does not read its RECEIPTs: stop reading its frames.
                s.out_paused = true;
                return;
            }
            match s.decoder.decode(buf) {
                Ok(Some(Item::Frame(frame))) => self.handle_frame(conn, frame, now),
                Ok(Some(Item::Heartbeat)) => {}
                Ok(None) => {
                    // Left: nothing, a CR of a CRLF heart-beat, or part
                    // of a frame, which must not stall.
                    s.partial = buf.len() > 1 || buf.first().is_some_and(|&b| b != b'\r');
                    let timeout = self.cfg.frame_timeout;
                    if s.partial && timeout > 0 {
                        self.arm(
                            conn,
                            TimerKind::Incomplete,
                            now + Duration::from_millis(timeout),
                        );
                    }
                    return;
                }
                Err(e) => {
                    let message = match &e {
                        stomp_frame::DecodeError::LimitExceeded { limit, .. } => {
                            format!("{limit} limit exceeded")
                        }
                        stomp_frame::DecodeError::InvalidEscape { .. } => {
                            "invalid header escape".to_owned()
                        }
                        stomp_frame::DecodeError::UnknownCommand { .. } => {
                            "unknown command".to_owned()
                        }
                        _ => "malformed frame".to_owned(),
                    };
                    let f = Fail {
                        message,
                        detail: e.to_string(),
                        version: false,
                    };
                    let receipt = s.decoder.failed_receipt().map(ByteString::from);
                    self.fail(conn, f, receipt, now);
                    return;
                }
            }
        }
    }

    /// Handles one decoded frame from a connection.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame, now: Instant) {
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        s.last_read = s.last_read.max(now);
        let phase = s.phase;
        let receipt = frame.headers.get_shared(names::RECEIPT).cloned();
        let command = frame.command;
        // Where this frame's RECEIPT goes: before what the frame causes.
        let mark = s.popped + s.outbox.len() as u64;
        let changes = self.store.changes();
        let accepted = self.stats.accepted;
        let rate = self.cfg.max_frame_rate;
        if rate > 0 && phase != Phase::Closing {
            if now.saturating_duration_since(s.rate_since) >= Duration::from_secs(1) {
                s.rate_since = now;
                s.rate_frames = 0;
            }
            s.rate_frames += 1;
            if s.rate_frames > rate {
                let f = Fail {
                    message: "frame rate exceeded".into(),
                    detail: format!(
                        "more than {rate} frames in one second; the broker's max-frame-rate"
                    ),
                    version: false,
                };
                self.fail(conn, f, receipt, now);
                return;
            }
        }
        // The grammar lets a header hold a NUL, but a NUL ends a frame for
        // most clients: passed on in a MESSAGE, it would cut the frame in
        // two for every subscriber.
        if let Some(h) = frame
            .headers
            .iter()
            .find(|h| h.name().contains('\0') || h.value().contains('\0'))
        {
            let f = Fail {
                message: "malformed frame".into(),
                detail: format!(
                    "header {:?} holds a NUL byte, which ends a frame for other clients",
                    h.name()
                ),
                version: false,
            };
            self.fail(conn, f, receipt, now);
            return;
        }
        let result = match phase {
            Phase::Closing => return,
            Phase::Handshake => match command {
                Command::Connect | Command::Stomp => self.on_connect(conn, &frame, now),
                other => fail(
                    "not connected",
                    format!("expected CONNECT or STOMP as the first frame, got {other}"),
                ),
            },
            Phase::Open => match command {
                Command::Send => self.on_send(conn, frame, now),
                Command::Subscribe => self.on_subscribe(conn, &frame, now),
                Command::Unsubscribe => self.on_unsubscribe(conn, &frame, now),
                Command::Ack => self.on_ack(conn, &frame, false, now),
                Command::Nack => self.on_ack(conn, &frame, true, now),
                Command::Begin => self.on_begin(conn, &frame),
                Command::Commit => self.on_commit(conn, &frame, now),
                Command::Abort => self.on_abort(conn, &frame, now),
                Command::Disconnect => Ok(()),
                Command::Connect | Command::Stomp => fail(
                    "already connected",
                    format!("{command} may only be the first frame of a connection"),
                ),
                other => fail(
                    format!("{other} is not a client frame"),
                    format!("{other} is sent by servers only"),
                ),
            },
        };
        match result {
            Ok(()) => {
                let stored = self.stats.accepted != accepted;
                if self.durable && self.store.changes() != changes {
                    let s = &mut self.sessions[conn];
                    if s.write_ticket != THIS_TURN {
                        self.writers.push((conn, s.serial));
                    }
                    s.write_ticket = THIS_TURN;
                    if stored {
                        s.store_ticket = THIS_TURN;
                    }
                }
                if let Some(r) = receipt
                    && !matches!(command, Command::Connect | Command::Stomp)
                {
                    let s = &mut self.sessions[conn];
                    // The frame may have emptied its own outbox (a slow
                    // topic subscriber cut off while publishing to it).
                    let mark = mark.min(s.popped + s.outbox.len() as u64);
                    // A RECEIPT vouches for every frame before it (a
                    // DISCONNECT's is how most clients end a run of SENDs
                    // without receipts): it waits until this connection's
                    // changes are on disk. A frame that changed nothing
                    // (SUBSCRIBE, BEGIN, a SEND to a topic) on a connection
                    // with nothing unwritten is answered at once, unless
                    // RECEIPTs before it still wait: they stay in order.
                    let durable = self.store.durable_ticket();
                    if self.durable && (s.write_ticket > durable || s.held > 0) {
                        s.held += 1;
                        s.gates.push_back(mark);
                        self.held.push(StoreReceipt {
                            conn,
                            serial: s.serial,
                            receipt: r,
                            stored: stored || s.store_ticket > durable,
                        });
                    } else {
                        s.gates.push_back(mark);
                        release_receipt(&mut self.dirty, s, conn, r, now);
                    }
                }
                if command == Command::Disconnect {
                    self.begin_close(conn, now);
                }
            }
            Err(f) => self.fail(conn, f, receipt, now),
        }
    }

    /// Runs the timers due at `now`: heart-beats, heart-beat timeouts,
    /// closing connections that do not drain.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, (conn, serial, kind))) = self.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(conn) else {
                continue;
            };
            if s.serial != serial || s.armed[kind as usize] != Some(at) {
                continue;
            }
            s.armed[kind as usize] = None;
            match kind {
                TimerKind::SendBeat => {
                    let Some(every) = s.send_every else { continue };
                    if s.phase != Phase::Open {
                        continue;
                    }
                    let due = s.last_write + every;
                    if due <= now {
                        self.push(conn, Output::Heartbeat, now);
                        self.arm(conn, TimerKind::SendBeat, now + every);
                    } else {
                        self.arm(conn, TimerKind::SendBeat, due);
                    }
                }
                TimerKind::ReceiveCheck => {
                    // A CONNECT whose password is being checked came in
                    // time: it waits for its answer, however long the
                    // checks queued before it take.
                    if s.phase == Phase::Handshake && s.authenticating.is_none() {
                        let f = Fail {
                            message: "connect timeout".into(),
                            detail: format!(
                                "no CONNECT frame within {} ms of opening the connection",
                                self.cfg.connect_timeout
                            ),
                            version: false,
                        };
                        self.fail(conn, f, None, now);
                        continue;
                    }
                    let Some(within) = s.receive_within else {
                        continue;
                    };
                    if s.phase != Phase::Open {
                        continue;
                    }
                    let grace = self.cfg.heartbeat_grace;
                    self.check_silence(conn, kind, self.cfg.grace(within), now, |silent| Fail {
                        message: "heart-beat timeout".into(),
                        detail: format!(
                            "nothing received for {} ms; the negotiated interval is {} ms, with a grace of x{grace}",
                            silent.as_millis(),
                            within.as_millis(),
                        ),
                        version: false,
                    });
                }
                TimerKind::Incomplete => {
                    if !s.partial || s.phase == Phase::Closing {
                        continue;
                    }
                    let limit = Duration::from_millis(self.cfg.frame_timeout);
                    self.check_silence(conn, kind, limit, now, |silent| Fail {
                        message: "incomplete frame".into(),
                        detail: format!(
                            "a frame was begun and nothing more of it came for {} ms (--frame-timeout); the connection is closed",
                            silent.as_millis()
                        ),
                        version: false,
                    });
                }
                TimerKind::Slow => {
                    if s.slow && s.fan_backlog() >= self.cfg.max_write_backlog / 2 {
                        tracing::debug!(
                            conn,
                            "topic subscriber slow for too long: producers stop waiting for it"
                        );
                        s.slow_expired = true;
                    }
                }
                TimerKind::Linger => {
                    if s.phase == Phase::Closing {
                        s.cut = true;
                        self.mark_dirty(conn);
                    }
                }
            }
        }
    }

    /// The earliest time [`handle_timeout`](Engine::handle_timeout) has
    /// work (maybe none, when the entry turns out stale).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether some connection is dirty (the driver should not block in poll).
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Connections with output owed (or ready to close) since the last call.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        for &c in &self.dirty {
            if let Some(s) = self.sessions.get_mut(c) {
                s.dirty = false;
            }
        }
        into.append(&mut self.dirty);
    }

    /// The next thing owed to a connection, oldest first.
    pub fn pop_output(&mut self, conn: ConnId) -> Option<Output> {
        let s = self.sessions.get_mut(conn)?;
        if s.gates.front() == Some(&s.popped) {
            return None;
        }
        let (out, est) = s.outbox.pop_front()?;
        s.queued -= est;
        s.popped += 1;
        Some(out)
    }

    /// The driver wrote what it could: `unwritten` bytes are still pending
    /// for this connection. Frees room for more deliveries.
    pub fn wrote(&mut self, conn: ConnId, unwritten: usize, now: Instant) {
        let mark = self.dispatch_mark();
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        s.unwritten = unwritten;
        if (s.slow || s.slow_expired) && s.fan_backlog() < self.cfg.max_write_backlog / 2 {
            s.slow = false;
            s.slow_expired = false;
        }
        if s.out_paused && s.backlog() <= self.cfg.max_write_backlog / 2 {
            s.out_paused = false;
            self.unblocked.push(conn);
        }
        if s.phase != Phase::Open || s.backlog() >= mark {
            return;
        }
        let queues: Vec<ByteString> = s
            .subs
            .iter()
            .flatten()
            .filter(|sub| !sub.topic)
            .map(|sub| sub.dest.clone())
            .collect();
        for q in queues {
            if self
                .router
                .queues
                .get(&q)
                .is_some_and(|q| !q.ready.is_empty())
            {
                self.dispatch(&q, now);
            }
        }
    }

    /// Connections whose reading may resume (memory was freed).
    pub fn take_resumed(&mut self, into: &mut Vec<ConnId>) {
        for c in self.unblocked.drain(..) {
            if self
                .sessions
                .get(c)
                .is_some_and(|s| !s.paused && !s.out_paused)
            {
                into.push(c);
            }
        }
        if self.blocked.is_empty() {
            return;
        }
        let max_q = self.cfg.queue_memory();
        let global_ok = self.router.charged() <= self.cfg.max_memory;
        let mut i = 0;
        while i < self.blocked.len() {
            let (conn, serial, ref q) = self.blocked[i];
            let session = self.sessions.get(conn).filter(|s| s.serial == serial);
            let alive = session.is_some();
            let fits = global_ok
                && self.router.queues.get(q).is_none_or(|q| q.bytes <= max_q)
                && self.topic_clear(q);
            let credit = session.is_some_and(Session::has_send_credit) && self.topic_clear(q);
            if !alive || fits || credit {
                self.blocked.swap_remove(i);
                if alive {
                    // Another blocked entry for the same connection may remain.
                    if !self.blocked.iter().any(|b| b.0 == conn && b.1 == serial) {
                        let s = &mut self.sessions[conn];
                        s.paused = false;
                        if !s.out_paused {
                            into.push(conn);
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
    }

    /// Whether no subscriber of topic `dest` holds its producers back (see
    /// [`publish`](Engine::publish)); true for a queue.
    fn topic_clear(&self, dest: &str) -> bool {
        let soft = self.cfg.max_write_backlog / 2;
        self.router.topics.get(dest).is_none_or(|subs| {
            subs.iter().all(|r| {
                self.sessions.get(r.conn).is_none_or(|s| {
                    s.phase != Phase::Open || s.slow_expired || s.fan_backlog() < soft
                })
            })
        })
    }

    /// The connection is gone (socket closed, or the driver closed it):
    /// open transactions are aborted and unacknowledged messages redelivered.
    pub fn close(&mut self, conn: ConnId, now: Instant) {
        if !self.sessions.contains(conn) {
            return;
        }
        self.teardown(conn, now);
        let s = self.sessions.remove(conn);
        // Auto-ack MESSAGEs it never got are gone with it, as from
        // RabbitMQ; unless the broker is stopping: then they come back
        // after the restart.
        for (out, _) in &s.outbox {
            if let Output::Consumed { queue, seq, .. } = out
                && !self.stopping
            {
                self.auto_acked(queue, *seq);
            }
        }
        if let Some(gone) = s.auth_gone {
            gone.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.blocked.retain(|b| b.0 != conn);
    }

    /// An [`Output::Consumed`] MESSAGE was written (or its connection
    /// closed before it could be): its message leaves the store.
    pub fn auto_acked(&mut self, queue: &str, seq: u64) {
        if let Err(e) = self.store.remove(queue, seq) {
            tracing::error!("store remove failed: {e}");
        }
    }

    /// The broker is stopping: auto-ack MESSAGEs not written yet stay in
    /// the store (see [`Output::Consumed`]).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether [`stop`](Engine::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Ends the turn's group of store changes and releases the RECEIPTs
    /// whose group is durable (call once per loop turn, after reading and
    /// before writing, and when the store wakes the loop).
    pub fn flush_store(&mut self, now: Instant) {
        let ticket = self.store.commit();
        if !self.durable {
            return;
        }
        // A failed commit is answered at once below: nothing to wait for.
        let given = ticket.as_ref().map_or(0, |t| *t);
        for (conn, serial) in self.writers.drain(..) {
            if let Some(s) = self.sessions.get_mut(conn)
                && s.serial == serial
            {
                s.write_ticket = given;
                if s.store_ticket == THIS_TURN {
                    s.store_ticket = given;
                }
            }
        }
        match ticket {
            Ok(t) => {
                for r in self.held.drain(..) {
                    self.waiting.push_back((t, r));
                }
            }
            Err(e) => {
                tracing::error!("store commit failed: {e}");
                for r in std::mem::take(&mut self.held) {
                    self.store_answer(r, Some(&e.to_string()), now);
                }
            }
        }
        if let Some(f) = self.store.failed_ticket() {
            self.failed = Some(f);
        }
        let durable = self.store.durable_ticket();
        while self.waiting.front().is_some_and(|w| w.0 <= durable) {
            let (_, r) = self.waiting.pop_front().expect("front");
            self.store_answer(r, None, now);
        }
        // The failure is kept until a retry writes past it: a RECEIPT held
        // later for a connection's earlier changes may wait on a ticket
        // already reported failed.
        match self.failed.take() {
            Some((t, _)) if t <= durable => {}
            Some((t, why)) => {
                while self.waiting.front().is_some_and(|w| w.0 <= t) {
                    let (_, r) = self.waiting.pop_front().expect("front");
                    self.store_answer(r, Some(&why), now);
                }
                self.failed = Some((t, why));
            }
            None => {}
        }
    }

    /// RECEIPTs still waiting for the store.
    pub fn receipts_waiting(&self) -> usize {
        self.held.len() + self.waiting.len()
    }

    /// Answers a RECEIPT that waited for the store: the RECEIPT, or, when
    /// the write failed (`failed`: why) and the frame stored messages, an
    /// ERROR.
    fn store_answer(&mut self, r: StoreReceipt, failed: Option<&str>, now: Instant) {
        let Some(s) = self.sessions.get_mut(r.conn) else {
            return;
        };
        if s.serial != r.serial {
            return;
        }
        s.held -= 1;
        match failed {
            Some(why) if r.stored => {
                s.gates.pop_front();
                let f = Fail {
                    message: "store write failed".into(),
                    detail: format!(
                        "the message store could not save this connection's work: {why}"
                    ),
                    version: false,
                };
                // An ERROR goes out even on a closing connection (after DISCONNECT).
                self.fail(r.conn, f, Some(r.receipt), now);
            }
            _ => release_receipt(&mut self.dirty, s, r.conn, r.receipt, now),
        }
    }

    // ----- frames -----

    fn on_connect(&mut self, conn: ConnId, frame: &Frame, now: Instant) -> Result<(), Fail> {
        let Some(version) = Version::negotiate(frame.accept_version(), &Version::ALL) else {
            return Err(Fail {
                message: "unsupported protocol version".into(),
                detail: format!(
                    "accept-version {:?} has no version in common with ours: {}",
                    frame.accept_version().unwrap_or(""),
                    Version::list(&Version::ALL)
                ),
                version: true,
            });
        };
        // 1.0 has no heart-beats, but a 1.0 CONNECT that asks for them gets
        // them, as from RabbitMQ and ActiveMQ (a malformed value there is
        // ignored: the header is not 1.0's).
        // The CONNECT was decoded before the version was known: a 1.0
        // client's padding (`login: guest`, as in 1.0's own example) is
        // trimmed here, as the 1.0 decoder trims every later frame.
        let value = |name: &str| {
            let v = frame.headers.get(name);
            if version == Version::V1_0 {
                v.map(|v| v.trim_matches([' ', '\t', '\r']))
            } else {
                v
            }
        };
        let client_hb = match (version, value(names::HEART_BEAT).map(str::parse)) {
            (_, None) => HeartBeat::NONE,
            (_, Some(Ok(hb))) => hb,
            (Version::V1_0, Some(Err(_))) => HeartBeat::NONE,
            (_, Some(Err(e))) => return fail("invalid heart-beat header", e.to_string()),
        };
        let creds = Credentials {
            login: value(names::LOGIN),
            passcode: value(names::PASSCODE),
            host: value(names::HOST),
        };
        if self.auth_offload && self.auth.is_slow() {
            // Checked on the driver's auth thread: the event loop goes on
            // serving everyone else; this connection's input waits.
            let s = &mut self.sessions[conn];
            let receipt = frame.headers.get_shared(names::RECEIPT).cloned();
            s.authenticating = Some((version, client_hb, receipt));
            let gone = std::sync::Arc::default();
            s.auth_gone = Some(std::sync::Arc::clone(&gone));
            self.auth_requests.push(AuthRequest {
                conn,
                serial: s.serial,
                login: creds.login.map(str::to_owned),
                passcode: creds.passcode.map(str::to_owned),
                host: creds.host.map(str::to_owned),
                auth: std::sync::Arc::clone(&self.auth),
                gone,
            });
            return Ok(());
        }
        let principal = match self.auth.authenticate(&creds) {
            Ok(p) => p,
            Err(why) => return fail("authentication failed", why),
        };
        self.open_session(conn, version, client_hb, principal, now);
        Ok(())
    }

    /// The CONNECT was accepted: CONNECTED, heart-beat timers.
    fn open_session(
        &mut self,
        conn: ConnId,
        version: Version,
        client_hb: HeartBeat,
        principal: crate::auth::Principal,
        now: Instant,
    ) {
        self.sessions[conn].principal = principal;
        let clamp = |v: u32| {
            if v == 0 {
                0
            } else {
                v.clamp(self.cfg.heartbeat_min, self.cfg.heartbeat_max)
            }
        };
        // 1.0 has no heart-beats: a 1.0 client that asks gets them, as from
        // RabbitMQ and ActiveMQ, but is not held to beating itself (stompjs
        // sends the header in 1.0 and never beats): `sy` is 0.
        let expect = if version == Version::V1_0 {
            0
        } else {
            clamp(client_hb.send)
        };
        let ours = HeartBeat::new(clamp(client_hb.receive), expect);
        let schedule = ours.negotiate(client_hb);
        let s = &mut self.sessions[conn];
        s.version = version;
        s.decoder.set_version(version);
        s.decoder.set_limits(self.cfg.limits());
        s.phase = Phase::Open;
        s.send_every = schedule.send;
        s.receive_within = schedule.receive;
        s.last_read = now;
        let serial = s.serial;
        let connected = Frame::connected(version)
            .header(names::SESSION, format!("session-{serial}"))
            .header(names::SERVER, SERVER)
            .header(names::HEART_BEAT, ours.to_string());
        self.push(conn, Output::Frame(connected), now);
        if let Some(every) = schedule.send {
            self.arm(conn, TimerKind::SendBeat, now + every);
        }
        if let Some(within) = schedule.receive {
            self.arm(conn, TimerKind::ReceiveCheck, now + self.cfg.grace(within));
        }
    }

    /// Lets the driver check passwords off the event loop: CONNECTs then
    /// wait as [`AuthRequest`]s ([`take_auth_requests`](Engine::take_auth_requests))
    /// until [`auth_done`](Engine::auth_done). Only for authenticators that
    /// say they are slow (password hashing).
    pub fn set_auth_offload(&mut self, on: bool) {
        self.auth_offload = on;
    }

    /// CONNECTs waiting for their credentials to be checked.
    pub fn take_auth_requests(&mut self) -> Vec<AuthRequest> {
        std::mem::take(&mut self.auth_requests)
    }

    /// The outcome of an [`AuthRequest`]: CONNECTED, or the ERROR of a
    /// failed login and a close. The connection's waiting input is then
    /// read again ([`take_resumed`](Engine::take_resumed)).
    pub fn auth_done(
        &mut self,
        conn: ConnId,
        serial: u64,
        result: Result<crate::auth::Principal, String>,
        now: Instant,
    ) {
        let Some((version, client_hb, receipt)) = self.end_check(conn, serial) else {
            return;
        };
        match result {
            Ok(p) => {
                self.open_session(conn, version, client_hb, p, now);
                self.unblocked.push(conn);
            }
            Err(detail) => {
                let f = Fail {
                    message: "authentication failed".into(),
                    detail,
                    version: false,
                };
                self.fail(conn, f, receipt, now);
            }
        }
    }

    /// A login refused before its password check ran (the driver's limit
    /// on checks waiting per address): ERROR `too many logins` and close.
    pub fn refuse_login(&mut self, conn: ConnId, serial: u64, detail: String, now: Instant) {
        if let Some((_, _, receipt)) = self.end_check(conn, serial) {
            let f = Fail {
                message: "too many logins".into(),
                detail,
                version: false,
            };
            self.fail(conn, f, receipt, now);
        }
    }

    /// The CONNECT whose check ended, when its session still waits for it.
    fn end_check(
        &mut self,
        conn: ConnId,
        serial: u64,
    ) -> Option<(Version, HeartBeat, Option<ByteString>)> {
        let s = self.sessions.get_mut(conn)?;
        if s.serial != serial {
            return None;
        }
        let waiting = s.authenticating.take()?;
        s.auth_gone = None;
        (s.phase == Phase::Handshake).then_some(waiting)
    }

    fn classify(&self, dest: &str) -> Result<Kind, Fail> {
        if dest.starts_with(&self.cfg.queue_prefix) && dest.len() > self.cfg.queue_prefix.len() {
            // The journal stores a queue name in at most 65535 bytes, also
            // once it is renamed to its dead-letter queue.
            let dlq_extra = self
                .cfg
                .dlq_prefix
                .len()
                .saturating_sub(self.cfg.queue_prefix.len());
            let max = usize::from(u16::MAX) - dlq_extra;
            if dest.len() > max {
                return fail(
                    "destination too long",
                    format!(
                        "a queue name may have at most {max} bytes (the store's limit); this one has {}",
                        dest.len()
                    ),
                );
            }
            Ok(Kind::Queue)
        } else if dest.starts_with(&self.cfg.topic_prefix)
            && dest.len() > self.cfg.topic_prefix.len()
        {
            Ok(Kind::Topic)
        } else {
            fail(
                "unknown destination",
                format!(
                    "destination {dest:?} is not served: use a name after {} (queues) or {} (topics)",
                    self.cfg.queue_prefix, self.cfg.topic_prefix
                ),
            )
        }
    }

    /// The open transaction a frame's `transaction` header names, if any.
    fn frame_tx(&self, conn: ConnId, frame: &Frame) -> Result<Option<usize>, Fail> {
        let Some(t) = frame.transaction() else {
            return Ok(None);
        };
        match self.sessions[conn].tx_index(t) {
            Some(i) => Ok(Some(i)),
            None => fail(
                "unknown transaction",
                format!("no transaction {t:?} was begun"),
            ),
        }
    }

    fn on_send(&mut self, conn: ConnId, frame: Frame, now: Instant) -> Result<(), Fail> {
        let dest = required(&frame, names::DESTINATION)?.clone();
        self.authorize(conn, Right::Write, &dest)?;
        let kind = self.classify(&dest)?;
        let tx = self.frame_tx(conn, &frame)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut msg = Message::from_send(seq, dest.clone(), frame);
        if matches!(kind, Kind::Queue) {
            msg.size += self.store.held_bytes(&dest, &msg.headers);
        }
        if matches!(kind, Kind::Queue)
            && let Some(max) = self.store.too_large(&dest, &msg.headers, msg.body.len())
        {
            // Refused whole, before it is queued or joins a transaction:
            // accepted, it would be delivered now and gone after a restart.
            return fail(
                "message too large for the store",
                format!(
                    "a message of {} body bytes to {dest:?} does not fit one journal segment (at most {max} bytes with its headers and queue name); send less, or start the broker with a larger --segment-size",
                    msg.body.len()
                ),
            );
        }
        if matches!(kind, Kind::Queue)
            && let Some(why) = self.store.unavailable(&dest, &msg.headers)
        {
            // Refused whole too: the store retries a failed write, and what
            // it was given meanwhile would wait behind it.
            return fail(
                "store write failed",
                format!(
                    "the message store cannot write now ({why}); the message was not accepted: send it again later"
                ),
            );
        }
        if let Some(i) = tx {
            // What one transaction may hold until COMMIT. Pausing its
            // connection instead could never end: the memory it waits for
            // is its own (and a peer gone behind a full TCP window is not
            // seen while paused).
            let limit = self.cfg.queue_memory().min(self.cfg.max_memory / 4);
            if self.sessions[conn].txs[i].bytes + msg.size > limit {
                return fail(
                    "transaction too large",
                    format!(
                        "transaction {:?} would hold more than {limit} bytes of messages until COMMIT (the smaller of max-queue-memory and a quarter of max-memory); commit in smaller transactions",
                        &*self.sessions[conn].txs[i].id
                    ),
                );
            }
            self.router.memory += msg.size;
            self.sessions[conn].txs[i].bytes += msg.size;
            self.sessions[conn].txs[i].sends.push(msg);
            let over = self.router.charged() > self.cfg.max_memory;
            self.hold_back_if(conn, &dest, over);
            return Ok(());
        }
        match kind {
            Kind::Queue => {
                self.enqueue(msg);
                self.dispatch(&dest, now);
                self.check_queue_memory(conn, &dest);
            }
            Kind::Topic => self.publish(msg, Some(conn), now),
        }
        Ok(())
    }

    /// Checks `right` on `dest`, and the admin right too when the frame
    /// would create a queue the broker holds nothing for.
    /// An unknown destination is left for `classify` to refuse.
    fn authorize(&self, conn: ConnId, right: Right, dest: &str) -> Result<(), Fail> {
        let Ok(kind) = self.classify(dest) else {
            return Ok(());
        };
        let p = &self.sessions[conn].principal;
        let creates = matches!(kind, Kind::Queue) && !self.router.queues.contains_key(dest);
        for r in [right, Right::Admin] {
            if (r == right || creates) && !self.auth.authorize(p, r, dest) {
                let who = p.user.as_deref().unwrap_or("anonymous");
                return fail(
                    format!("access denied: no {} right on {dest:?}", r.as_str()),
                    format!(
                        "user {who:?} lacks the {} right on destination {dest:?}{}; nothing was sent or subscribed",
                        r.as_str(),
                        if r == Right::Admin && r != right {
                            " (needed to create it: the broker holds no such queue yet)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_queue_memory(&mut self, conn: ConnId, dest: &ByteString) {
        let over = self.memory_over(dest);
        self.hold_back_if(conn, dest, over);
    }

    /// Whether queue `dest` or the broker holds more than its limit.
    fn memory_over(&self, dest: &ByteString) -> bool {
        let over_q = self
            .router
            .queues
            .get(dest)
            .is_some_and(|q| q.bytes > self.cfg.queue_memory());
        over_q || self.router.charged() > self.cfg.max_memory
    }

    /// [`check_queue_memory`](Self::check_queue_memory) for a committed
    /// SEND: it was counted against the connection's credit when it came,
    /// so it takes none now.
    fn check_committed_memory(&mut self, conn: ConnId, dest: &ByteString) {
        let over = self.memory_over(dest);
        let s = &mut self.sessions[conn];
        if over && s.over_sends > 0 {
            s.over_sends -= 1;
        }
        self.hold_back_if(conn, dest, over);
    }

    /// Pauses reading `conn` when memory is `over` its limit, unless it may
    /// still send (see below).
    fn hold_back_if(&mut self, conn: ConnId, dest: &ByteString, over: bool) {
        let s = &mut self.sessions[conn];
        if !over {
            s.over_sends = 0;
            s.over_acks = 0;
            return;
        }
        // A consumer that publishes before it acks (a worker: take a job,
        // send its result, ack the job) is not paused while it holds
        // unacknowledged queue messages: its ACKs, behind its SENDs, are
        // what frees memory. It may send one message per message it holds
        // or acked meanwhile, so what it adds stays bounded by its windows;
        // paused, it is read again as soon as more are delivered to it.
        if s.has_send_credit() {
            s.over_sends += 1;
            return;
        }
        self.block(conn, dest.clone());
    }

    fn block(&mut self, conn: ConnId, dest: ByteString) {
        let s = &mut self.sessions[conn];
        if !s.paused {
            tracing::debug!(conn, "pausing reads: message memory full ({dest})");
        }
        s.paused = true;
        let serial = s.serial;
        // Every SEND of a read batch may block on the same destination: keep
        // one entry per (connection, destination), so `take_resumed` stays
        // linear in what is really blocked.
        if !self
            .blocked
            .iter()
            .any(|b| b.0 == conn && b.1 == serial && b.2 == dest)
        {
            self.blocked.push((conn, serial, dest));
        }
    }

    fn on_subscribe(&mut self, conn: ConnId, frame: &Frame, now: Instant) -> Result<(), Fail> {
        let dest = required(frame, names::DESTINATION)?.clone();
        self.authorize(conn, Right::Read, &dest)?;
        let kind = self.classify(&dest)?;
        let held = self.sessions[conn].subs.iter().flatten().count();
        if held >= self.cfg.max_subscriptions {
            return fail(
                "too many subscriptions",
                format!(
                    "this connection already holds {held} subscriptions, the broker's max-subscriptions"
                ),
            );
        }
        let version = self.sessions[conn].version;
        let id = match frame.headers.get_shared(names::ID) {
            Some(id) => id.clone(),
            None if version == Version::V1_0 => dest.clone(),
            None => required(frame, names::ID)?.clone(),
        };
        if self.sessions[conn].sub_slot(&id).is_some() {
            return fail(
                "duplicate subscription id",
                format!("subscription id {id:?} is already in use on this connection"),
            );
        }
        let ack = match frame.ack_mode() {
            Ok(a) => a,
            Err(e) => return fail("invalid ack header", e.to_string()),
        };
        // ActiveMQ's header first; RabbitMQ's `prefetch-count:0` means no
        // limit, as there (an ActiveMQ prefetch of 0 is a pull consumer,
        // which STOMP cannot be: it is taken as 1).
        let (v, zero) = match frame.headers.get("activemq.prefetchSize") {
            Some(v) => (Some(v), 1),
            None => (frame.headers.get("prefetch-count"), usize::MAX),
        };
        let window = match v {
            None => self.cfg.prefetch as usize,
            // Digits past u32 are taken as u32::MAX, as the peers take them.
            Some(v) => match v.parse::<u32>() {
                Ok(0) => zero,
                Ok(n) => n as usize,
                Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    u32::MAX as usize
                }
                Err(_) => {
                    return fail(
                        "invalid prefetch",
                        format!("prefetch {v:?} is not a non-negative integer"),
                    );
                }
            },
        };
        let topic = matches!(kind, Kind::Topic);
        let slot = self.sessions[conn].add_sub(Subscription {
            id,
            dest: dest.clone(),
            topic,
            ack,
            window,
            unacked: VecDeque::new(),
            pending: VecDeque::new(),
        });
        let r = SubRef { conn, slot };
        if topic {
            self.router.topics.entry(dest).or_default().push(r);
        } else {
            let is_dlq = dest.starts_with(&self.cfg.dlq_prefix);
            let q = self.router.queues.entry(dest.clone()).or_default();
            q.is_dlq = is_dlq;
            q.subs.push(r);
            self.dispatch(&dest, now);
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, conn: ConnId, frame: &Frame, now: Instant) -> Result<(), Fail> {
        let s = &self.sessions[conn];
        let id = match frame.id() {
            Some(id) => id,
            None if s.version == Version::V1_0 => {
                // 1.0: "either a destination header or an id header (if the
                // previous SUBSCRIBE operation passed an id value)". By
                // destination, every subscription to it goes (as ActiveMQ).
                let Some(dest) = frame.destination() else {
                    return fail(
                        "missing id header",
                        "UNSUBSCRIBE needs an id (or, in STOMP 1.0, a destination)",
                    );
                };
                let slots: Vec<usize> = (0..s.subs.len())
                    .filter(|&i| s.subs[i].as_ref().is_some_and(|sub| sub.dest == dest))
                    .collect();
                if slots.is_empty() {
                    return fail(
                        "unknown subscription",
                        format!("no subscription to {dest:?} on this connection"),
                    );
                }
                for slot in slots {
                    self.remove_sub(conn, slot, now);
                }
                return Ok(());
            }
            None => required(frame, names::ID)?,
        };
        let Some(slot) = s.sub_slot(id) else {
            return fail(
                "unknown subscription",
                format!("no subscription {id:?} on this connection"),
            );
        };
        self.remove_sub(conn, slot, now);
        Ok(())
    }

    /// Finds the subscription slot and ack number an ACK/NACK names.
    fn resolve_ack(&self, conn: ConnId, frame: &Frame) -> Result<(usize, u64), Fail> {
        let s = &self.sessions[conn];
        let what = frame.command;
        let by_id = |id: &str| -> Result<(usize, u64), Fail> {
            let parsed = id
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)));
            if let Some((slot, n)) = parsed
                && let Some(Some(sub)) = s.subs.get(slot)
                && sub.unacked.binary_search_by_key(&n, |u| u.ack).is_ok()
            {
                return Ok((slot, n));
            }
            fail(
                format!("unknown ack id {id:?}"),
                format!("{what} id {id:?} names no unacknowledged message of this connection"),
            )
        };
        let by_message_id = |mid: &str, sub: Option<&str>| -> Result<(usize, u64), Fail> {
            let mut found = None;
            for (slot, sb) in s.subs.iter().enumerate() {
                let Some(sb) = sb else { continue };
                if sub.is_some_and(|want| sb.id != want) {
                    continue;
                }
                if !sb.ack.needs_ack() {
                    if sub.is_some() {
                        return fail(
                            "subscription is auto-ack",
                            format!(
                                "subscription {:?} acknowledges automatically; {what} is not expected",
                                sb.id
                            ),
                        );
                    }
                    continue;
                }
                if let Some(u) = sb.unacked.iter().find(|u| u.msg.id == mid) {
                    if found.is_some() {
                        return fail(
                            "ambiguous message-id",
                            format!(
                                "message-id {mid:?} is unacknowledged on several subscriptions; add subscription"
                            ),
                        );
                    }
                    found = Some((slot, u.ack));
                }
            }
            if let Some(sub) = sub
                && s.sub_slot(sub).is_none()
            {
                return fail(
                    "unknown subscription",
                    format!("no subscription {sub:?} on this connection"),
                );
            }
            found.map_or_else(
                || {
                    fail(
                        format!("unknown message-id {mid:?}"),
                        format!("{what} message-id {mid:?} names no unacknowledged message"),
                    )
                },
                Ok,
            )
        };
        let id = frame.id();
        let mid = frame.message_id();
        // The headers each version REQUIRES (1.2: id; 1.1: message-id and
        // subscription; 1.0: message-id), as ActiveMQ checks them.
        match (s.version, id, mid) {
            (Version::V1_2, Some(id), _) => by_id(id),
            (Version::V1_2, None, _) => fail(
                "missing id header",
                format!("a STOMP 1.2 {what} needs the id from the MESSAGE's ack header"),
            ),
            (Version::V1_1, _, Some(_)) if frame.subscription().is_none() => fail(
                "missing subscription header",
                format!("a STOMP 1.1 {what} needs message-id and subscription"),
            ),
            (_, _, Some(mid)) => by_message_id(mid, frame.subscription()),
            (_, Some(id), None) => by_id(id),
            (Version::V1_1, None, None) => fail(
                "missing message-id header",
                format!("a STOMP 1.1 {what} needs message-id and subscription"),
            ),
            (Version::V1_0, None, None) => fail(
                "missing message-id header",
                format!("a STOMP 1.0 {what} needs message-id"),
            ),
        }
    }

    fn on_ack(
        &mut self,
        conn: ConnId,
        frame: &Frame,
        nack: bool,
        now: Instant,
    ) -> Result<(), Fail> {
        if nack && self.sessions[conn].version == Version::V1_0 {
            return fail(
                "NACK is not part of STOMP 1.0",
                "connect with accept-version:1.1 or 1.2 to use NACK",
            );
        }
        let tx = self.frame_tx(conn, frame)?;
        let (slot, ack) = self.resolve_ack(conn, frame)?;
        match tx {
            Some(i) => self.sessions[conn].txs[i]
                .acks
                .push(AckOp { slot, ack, nack }),
            None => self.apply_ack(conn, AckOp { slot, ack, nack }, now),
        }
        Ok(())
    }

    fn on_begin(&mut self, conn: ConnId, frame: &Frame) -> Result<(), Fail> {
        let id = required(frame, names::TRANSACTION)?.clone();
        let s = &mut self.sessions[conn];
        if s.tx_index(&id).is_some() {
            return fail(
                "duplicate transaction",
                format!("transaction {id:?} is already open on this connection"),
            );
        }
        if s.txs.len() >= self.cfg.max_transactions {
            return fail(
                "too many transactions",
                format!(
                    "this connection already has {} open transactions, the broker's max-transactions",
                    s.txs.len()
                ),
            );
        }
        s.txs.push(Tx {
            id,
            sends: Vec::new(),
            bytes: 0,
            acks: Vec::new(),
            held: Vec::new(),
        });
        Ok(())
    }

    fn take_tx(&mut self, conn: ConnId, frame: &Frame) -> Result<Tx, Fail> {
        let id = required(frame, names::TRANSACTION)?;
        match self.sessions[conn].tx_index(id) {
            Some(i) => Ok(self.sessions[conn].txs.swap_remove(i)),
            None => fail(
                "unknown transaction",
                format!("no transaction {id:?} is open on this connection"),
            ),
        }
    }

    fn on_commit(&mut self, conn: ConnId, frame: &Frame, now: Instant) -> Result<(), Fail> {
        let tx = self.take_tx(conn, frame)?;
        // Rights are checked again at COMMIT, when the SENDs take effect:
        // a right taken away (SIGHUP) since, or a queue gone since that now
        // needs creating, refuses the whole transaction.
        let mut dests: Vec<&ByteString> = tx.sends.iter().map(|m| &m.dest).collect();
        dests.sort_unstable();
        dests.dedup();
        if let Some(e) = dests
            .into_iter()
            .find_map(|d| self.authorize(conn, Right::Write, d).err())
        {
            self.drop_tx(tx, now);
            return Err(e);
        }
        self.store.begin_group();
        for mut msg in tx.sends {
            self.router.memory -= msg.size;
            // Numbered as it enters its queue (nobody has seen its id yet),
            // so that the order after a restart, by number, is the order
            // the queue had.
            msg.seq = self.next_seq;
            msg.id = ByteString::from(format!("m-{}", msg.seq));
            self.next_seq += 1;
            let dest = msg.dest.clone();
            if self.classify(&dest).is_ok_and(|k| matches!(k, Kind::Topic)) {
                self.publish(msg, Some(conn), now);
            } else {
                self.enqueue(msg);
                self.dispatch(&dest, now);
                if self.sessions.contains(conn) {
                    self.check_committed_memory(conn, &dest);
                }
            }
        }
        self.store.end_group();
        for op in tx.acks {
            self.apply_ack(conn, op, now);
        }
        for msg in tx.held {
            let dest = msg.dest.clone();
            self.consumed(&dest, msg);
            self.forget_if_idle(&dest);
        }
        Ok(())
    }

    fn on_abort(&mut self, conn: ConnId, frame: &Frame, now: Instant) -> Result<(), Fail> {
        let tx = self.take_tx(conn, frame)?;
        self.drop_tx(tx, now);
        Ok(())
    }

    /// Forgets a transaction's SENDs; what its ACKs held goes back.
    fn drop_tx(&mut self, tx: Tx, now: Instant) {
        for msg in tx.sends {
            self.router.memory -= msg.size;
        }
        let mut held = tx.held;
        while let Some(dest) = held.first().map(|m| m.dest.clone()) {
            let (same, rest) = held.into_iter().partition(|m| m.dest == dest);
            self.requeue(&dest, same, now);
            held = rest;
        }
    }

    // ----- delivery -----

    fn dispatch_mark(&self) -> usize {
        DISPATCH_MARK.min(self.cfg.max_write_backlog)
    }

    fn enqueue(&mut self, msg: Message) {
        let is_dlq = msg.dest.starts_with(&self.cfg.dlq_prefix);
        let q = self.router.queues.entry(msg.dest.clone()).or_default();
        q.is_dlq = is_dlq;
        q.bytes += msg.size;
        self.router.memory += msg.size;
        self.stats.accepted += 1;
        if let Err(e) = self.store.append(&stored(&msg)) {
            tracing::error!("store append failed: {e}");
        }
        q.ready.push_back(msg);
    }

    /// Hands waiting messages of a queue to subscribers with room.
    fn dispatch(&mut self, dest: &ByteString, now: Instant) {
        let mark = self.dispatch_mark();
        let Some(q) = self.router.queues.get_mut(dest) else {
            return;
        };
        while !q.ready.is_empty() && !q.subs.is_empty() {
            let n = q.subs.len();
            let mut chosen = None;
            for i in 0..n {
                let idx = (q.next + i) % n;
                let r = q.subs[idx];
                let s = &self.sessions[r.conn];
                let Some(sub) = s.subs[r.slot].as_ref() else {
                    continue;
                };
                let room = s.phase == Phase::Open
                    && s.backlog() < mark
                    && (sub.ack == AckMode::Auto || sub.unacked.len() < sub.window);
                if room {
                    chosen = Some(idx);
                    break;
                }
            }
            let Some(idx) = chosen else { break };
            q.next = (idx + 1) % n;
            let r = q.subs[idx];
            let mut msg = q.ready.pop_front().expect("ready is not empty");
            msg.deliveries += 1;
            let s = &mut self.sessions[r.conn];
            let sub = s.subs[r.slot].as_mut().expect("subscribed");
            let out = if sub.ack == AckMode::Auto {
                q.bytes -= msg.size;
                self.router.memory -= msg.size;
                self.stats.consumed += 1;
                let frame = msg.to_frame(&sub.id, None);
                if self.durable {
                    // Removed from the store once written (`auto_acked`).
                    Output::Consumed {
                        frame,
                        queue: dest.clone(),
                        seq: msg.seq,
                    }
                } else {
                    if let Err(e) = self.store.remove(dest, msg.seq) {
                        tracing::error!("store remove failed: {e}");
                    }
                    Output::Frame(frame)
                }
            } else {
                let n = s.next_ack;
                s.next_ack += 1;
                let frame =
                    msg.to_frame(&sub.id, Some(ByteString::from(format!("{}.{n}", r.slot))));
                if let Err(e) = self.store.delivered(dest, msg.seq) {
                    tracing::error!("store delivered failed: {e}");
                }
                sub.unacked.push_back(Unacked { ack: n, msg });
                q.inflight += 1;
                Output::Frame(frame)
            };
            push_to(&mut self.dirty, s, r.conn, out, now);
        }
    }

    /// Sends a message to every current subscriber of its topic.
    /// Fans a message out to the topic's subscribers. Producer flow control:
    /// when a subscriber passes half its write backlog, the producer `from`
    /// stops being read until every subscriber is back under it, or has been
    /// slow for longer than `slow_consumer_timeout` (then it no longer holds
    /// producers back, and meets the slow-consumer policy when its backlog is
    /// full). So a burst slows producers down instead of cutting off
    /// subscribers that keep reading, and a stuck one cannot stall a topic.
    fn publish(&mut self, mut msg: Message, from: Option<ConnId>, now: Instant) {
        self.stats.published += 1;
        let Some(subs) = self.router.topics.get(&msg.dest) else {
            return;
        };
        msg.deliveries = 1;
        let limit = self.cfg.max_write_backlog;
        let soft = limit / 2;
        let slow_timeout = Duration::from_millis(self.cfg.slow_consumer_timeout);
        let mut slow = Vec::new();
        let mut hold = false;
        let mut newly_slow = Vec::new();
        for &r in subs {
            let s = &mut self.sessions[r.conn];
            if s.phase != Phase::Open {
                continue;
            }
            if s.fan_backlog() >= limit {
                match self.cfg.slow_consumer_policy {
                    SlowConsumerPolicy::Drop => self.stats.topic_dropped += 1,
                    SlowConsumerPolicy::Disconnect => slow.push(r.conn),
                }
                continue;
            }
            let sub = s.subs[r.slot].as_mut().expect("subscribed");
            if sub.ack == AckMode::Auto {
                let frame = msg.to_frame(&sub.id, None);
                push_to(&mut self.dirty, s, r.conn, Output::Frame(frame), now);
            } else if sub.unacked.len() >= sub.window || !sub.pending.is_empty() {
                // Held for it, as ActiveMQ and RabbitMQ do, within the
                // same flow control as a backlog.
                sub.pending.push_back(msg.clone());
                s.pending += msg.size;
            } else {
                let frame = deliver_topic(s, r.slot, msg.clone());
                push_to(&mut self.dirty, s, r.conn, Output::Frame(frame), now);
            }
            if s.fan_backlog() >= soft && !s.slow_expired {
                hold = true;
                if !s.slow {
                    s.slow = true;
                    newly_slow.push(r.conn);
                }
            }
        }
        for conn in newly_slow {
            self.arm(conn, TimerKind::Slow, now + slow_timeout);
        }
        if hold && let Some(producer) = from {
            self.block(producer, msg.dest.clone());
        }
        for conn in slow {
            self.stats.topic_dropped += 1;
            // Its undelivered topic messages are dropped: the ERROR goes
            // right behind what the driver already encoded (at most its
            // `WBUF_CAP`, 256 KiB, plus a frame), not behind the backlog.
            let s = &mut self.sessions[conn];
            let prefix = self.cfg.topic_prefix.as_str();
            let mut freed = 0;
            s.outbox.retain(|(out, est)| {
                let topic = matches!(out, Output::Frame(f)
                    if f.command == Command::Message
                        && f.headers.get(names::DESTINATION).is_some_and(|d| d.starts_with(prefix)));
                if topic {
                    freed += est;
                }
                !topic
            });
            s.queued -= freed;
            // Entries are gone from before the gates: later RECEIPTs go last.
            s.gates.clear();
            let f = Fail {
                message: "slow consumer".into(),
                detail: format!(
                    "more than {limit} bytes were waiting for this connection (unwritten, or topic messages held until it acknowledges); it is closed (slow-consumer-policy disconnect)"
                ),
                version: false,
            };
            self.fail(conn, f, None, now);
            self.sessions[conn].armed[TimerKind::Linger as usize] = None;
            self.arm(conn, TimerKind::Linger, now + SLOW_LINGER);
        }
    }

    /// Applies one (possibly cumulative) ACK or NACK.
    fn apply_ack(&mut self, conn: ConnId, op: AckOp, now: Instant) {
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        let Some(Some(sub)) = s.subs.get_mut(op.slot) else {
            return;
        };
        // Ack numbers only grow, so `unacked` is sorted by them (checked
        // in `check_invariants`): no scan, whatever order acks come in.
        let Ok(pos) = sub.unacked.binary_search_by_key(&op.ack, |u| u.ack) else {
            return;
        };
        let taken: Vec<Unacked> = if sub.ack == AckMode::Client {
            sub.unacked.drain(..=pos).collect()
        } else {
            sub.unacked.remove(pos).into_iter().collect()
        };
        if sub.topic {
            // Unacknowledged topic messages are not redelivered; the
            // window they free takes held ones.
            self.release_pending(conn, op.slot, now);
            return;
        }
        let dest = sub.dest.clone();
        s.over_acks += taken.len();
        if op.nack {
            self.requeue(&dest, taken.into_iter().map(|u| u.msg).collect(), now);
        } else {
            for u in taken {
                self.consumed(&dest, u.msg);
            }
        }
        self.dispatch(&dest, now);
    }

    /// An in-flight message of queue `dest` is acknowledged: gone for good.
    fn consumed(&mut self, dest: &ByteString, msg: Message) {
        let q = self
            .router
            .queues
            .get_mut(dest)
            .expect("queue of an in-flight message");
        q.bytes -= msg.size;
        q.inflight -= 1;
        self.router.memory -= msg.size;
        self.stats.consumed += 1;
        if let Err(e) = self.store.remove(dest, msg.seq) {
            tracing::error!("store remove failed: {e}");
        }
    }

    /// Drops the queue `dest` from the router if nothing is left in it.
    fn forget_if_idle(&mut self, dest: &ByteString) {
        if self.router.queues.get(dest).is_some_and(Queue::is_idle) {
            self.router.queues.remove(dest);
        }
    }

    /// Delivers held topic messages while the subscription's window has room.
    fn release_pending(&mut self, conn: ConnId, slot: usize, now: Instant) {
        let s = &mut self.sessions[conn];
        while let Some(sub) = s.subs[slot].as_mut()
            && sub.unacked.len() < sub.window
            && let Some(msg) = sub.pending.pop_front()
        {
            s.pending -= msg.size;
            let frame = deliver_topic(s, slot, msg);
            push_to(&mut self.dirty, s, conn, Output::Frame(frame), now);
        }
    }

    /// Puts in-flight messages back at the front of their queue in their
    /// original order, marked redelivered; those delivered
    /// `max_deliveries` times go to the dead-letter queue instead.
    fn requeue(&mut self, dest: &ByteString, mut msgs: Vec<Message>, now: Instant) {
        if msgs.is_empty() {
            return;
        }
        msgs.sort_by_key(|m| m.seq);
        let max = self.cfg.max_deliveries;
        let q = self
            .router
            .queues
            .get_mut(dest)
            .expect("queue of a subscription");
        let mut dead = Vec::new();
        let mut back = Vec::with_capacity(msgs.len());
        for mut m in msgs {
            q.inflight -= 1;
            if !q.is_dlq && m.deliveries >= max {
                q.bytes -= m.size;
                dead.push(m);
            } else {
                m.redelivered = true;
                back.push(m);
            }
        }
        // Back at the front in their original order, also among those an
        // earlier return put there (a connection's other subscriptions).
        if let Some(last) = back.last().map(|m| m.seq) {
            let mut earlier = Vec::new();
            while q.ready.front().is_some_and(|m| m.seq < last) {
                earlier.extend(q.ready.pop_front());
            }
            if !earlier.is_empty() {
                back.append(&mut earlier);
                back.sort_by_key(|m| m.seq);
            }
        }
        for m in back.into_iter().rev() {
            q.ready.push_front(m);
        }
        let mut dlq = None;
        for m in dead {
            dlq = Some(self.dead_letter(dest, m));
        }
        if let Some(dlq) = dlq {
            self.dispatch(&dlq, now);
        }
        self.dispatch(dest, now);
    }

    /// Moves a message taken out of queue `dest` (its bytes no longer
    /// counted there) to its dead-letter queue; returns that queue.
    fn dead_letter(&mut self, dest: &ByteString, mut m: Message) -> ByteString {
        let name = dest.strip_prefix(&*self.cfg.queue_prefix).unwrap_or(dest);
        let dlq = ByteString::from(format!("{}{name}", self.cfg.dlq_prefix));
        tracing::debug!(
            "message {} to {dlq} after {} deliveries",
            &*m.id,
            m.deliveries
        );
        if let Err(e) = self.store.remove(dest, m.seq) {
            tracing::error!("store remove failed: {e}");
        }
        self.router.memory -= m.size;
        self.stats.dead_lettered += 1;
        self.stats.accepted -= 1; // enqueue counts it again
        m.headers.set("original-destination", m.dest.clone());
        m.dest = dlq.clone();
        m.deliveries = 0;
        m.redelivered = false;
        self.enqueue(m);
        dlq
    }

    fn remove_sub(&mut self, conn: ConnId, slot: usize, now: Instant) {
        let Some(sub) = self.sessions[conn].subs[slot].take() else {
            return;
        };
        let r = SubRef { conn, slot };
        if sub.topic {
            self.sessions[conn].pending -= sub.pending.iter().map(|m| m.size).sum::<usize>();
            if let Some(list) = self.router.topics.get_mut(&sub.dest) {
                list.retain(|x| *x != r);
                if list.is_empty() {
                    self.router.topics.remove(&sub.dest);
                }
            }
            return;
        }
        if let Some(q) = self.router.queues.get_mut(&sub.dest) {
            q.remove_sub(r);
        }
        // What an ACK in an open transaction names stays in flight with
        // that transaction ("handled atomically based on the transaction",
        // as RabbitMQ does): acknowledged at COMMIT, back at ABORT.
        let mut back = Vec::new();
        let s = &mut self.sessions[conn];
        for u in sub.unacked {
            let covers = |op: &AckOp| {
                op.slot == slot
                    && !op.nack
                    && (op.ack == u.ack || (sub.ack == AckMode::Client && u.ack < op.ack))
            };
            match s.txs.iter_mut().find(|tx| tx.acks.iter().any(covers)) {
                Some(tx) => tx.held.push(u.msg),
                None => back.push(u.msg),
            }
        }
        self.requeue(&sub.dest, back, now);
        self.forget_if_idle(&sub.dest);
    }

    // ----- session plumbing -----

    fn push(&mut self, conn: ConnId, out: Output, now: Instant) {
        if let Some(s) = self.sessions.get_mut(conn) {
            push_to(&mut self.dirty, s, conn, out, now);
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(conn)
            && !s.dirty
        {
            s.dirty = true;
            self.dirty.push(conn);
        }
    }

    /// Timer `kind` of `conn`, which must be heard from within `limit`:
    /// the ERROR `fail` makes of how long it was silent, or the timer again.
    /// Silence while it is not read (paused, its password being checked,
    /// held back by the driver) is not its own and does not count.
    fn check_silence(
        &mut self,
        conn: ConnId,
        kind: TimerKind,
        limit: Duration,
        now: Instant,
        fail: impl FnOnce(Duration) -> Fail,
    ) {
        let s = &mut self.sessions[conn];
        if s.paused || s.out_paused || s.authenticating.is_some() || s.input_held {
            s.last_read = now;
        }
        let due = s.last_read + limit;
        if due <= now {
            let silent = now - s.last_read;
            self.fail(conn, fail(silent), None, now);
        } else {
            self.arm(conn, kind, due);
        }
    }

    fn arm(&mut self, conn: ConnId, kind: TimerKind, at: Instant) {
        let s = &mut self.sessions[conn];
        let slot = &mut s.armed[kind as usize];
        if slot.is_none_or(|cur| at < cur) {
            *slot = Some(at);
            self.timers.push(at, (conn, s.serial, kind));
        }
    }

    /// Sends an ERROR for `f` and closes the connection.
    fn fail(&mut self, conn: ConnId, f: Fail, receipt: Option<ByteString>, now: Instant) {
        tracing::debug!(conn, "protocol error: {}: {}", f.message, f.detail);
        let mut frame = Frame::error(f.message)
            .header(names::CONTENT_TYPE, "text/plain")
            .header_opt(names::RECEIPT_ID, receipt);
        if f.version {
            frame = frame.header(names::VERSION, Version::list(&Version::ALL));
        }
        let frame = frame.body(f.detail);
        self.push(conn, Output::Frame(frame), now);
        self.begin_close(conn, now);
    }

    /// Stops reading, releases subscriptions and transactions, and lets
    /// the driver flush what is owed before closing.
    fn begin_close(&mut self, conn: ConnId, now: Instant) {
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        if s.phase == Phase::Closing {
            return;
        }
        s.phase = Phase::Closing;
        self.teardown(conn, now);
        self.arm(conn, TimerKind::Linger, now + LINGER);
        self.mark_dirty(conn);
    }

    fn teardown(&mut self, conn: ConnId, now: Instant) {
        let s = &mut self.sessions[conn];
        if s.torn_down {
            return;
        }
        s.torn_down = true;
        let txs = std::mem::take(&mut s.txs);
        for tx in txs {
            self.drop_tx(tx, now);
        }
        for slot in 0..self.sessions[conn].subs.len() {
            self.remove_sub(conn, slot, now);
        }
    }

    /// Checks the bookkeeping: every message is in exactly one place,
    /// counters and memory add up, subscriptions are registered both ways.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        use std::collections::{HashMap, HashSet};
        let mut seen = HashSet::new();
        let mut ready = 0u64;
        let mut inflight = 0u64;
        let mut bytes: HashMap<&ByteString, (usize, usize)> = HashMap::new();
        for (name, q) in &self.router.queues {
            for m in &q.ready {
                if !seen.insert(m.seq) {
                    return Err(format!("message {} queued twice", m.seq));
                }
                if m.dest != *name {
                    return Err(format!("message {} in {name} says {}", m.seq, &*m.dest));
                }
                ready += 1;
                bytes.entry(name).or_default().0 += m.size;
            }
            for r in &q.subs {
                let ok = self
                    .sessions
                    .get(r.conn)
                    .and_then(|s| s.subs.get(r.slot))
                    .and_then(Option::as_ref)
                    .is_some_and(|sub| sub.dest == *name && !sub.topic);
                if !ok {
                    return Err(format!("queue {name} has a stale subscriber {r:?}"));
                }
            }
        }
        let mut tx_bytes = 0;
        for (conn, s) in &self.sessions {
            for tx in &s.txs {
                tx_bytes += tx.sends.iter().map(|m| m.size).sum::<usize>();
                for m in &tx.held {
                    if !seen.insert(m.seq) {
                        return Err(format!("message {} held by a transaction twice", m.seq));
                    }
                    inflight += 1;
                    let e = bytes.entry(&m.dest).or_default();
                    e.0 += m.size;
                    e.1 += 1;
                }
            }
            let held: usize = s
                .subs
                .iter()
                .flatten()
                .flat_map(|sub| &sub.pending)
                .map(|m| m.size)
                .sum();
            if held != s.pending {
                return Err(format!(
                    "connection {conn} holds {held} topic bytes, counts {}",
                    s.pending
                ));
            }
            if let Some(sub) = s.subs.iter().flatten().find(|sub| {
                sub.unacked
                    .iter()
                    .zip(sub.unacked.iter().skip(1))
                    .any(|(a, b)| a.ack >= b.ack)
            }) {
                return Err(format!(
                    "subscription {:?}: unacked not in ack order",
                    &*sub.id
                ));
            }
            let end = s.popped + s.outbox.len() as u64;
            let gates_ok = s.gates.len() <= s.held
                && s.gates.iter().all(|&g| s.popped <= g && g <= end)
                && s.gates
                    .iter()
                    .zip(s.gates.iter().skip(1))
                    .all(|(a, b)| a <= b);
            if !gates_ok {
                return Err(format!(
                    "connection {conn}: receipt gates {:?} outside the outbox ({}..{end}) or more than {} held",
                    s.gates, s.popped, s.held
                ));
            }
            if let Some(sub) = s.subs.iter().flatten().find(|sub| {
                !sub.pending.is_empty()
                    && (!sub.topic || sub.ack == AckMode::Auto || sub.unacked.len() < sub.window)
            }) {
                return Err(format!(
                    "subscription {:?} holds messages it has room for",
                    &*sub.id
                ));
            }
            for (slot, sub) in s.subs.iter().enumerate() {
                let Some(sub) = sub else { continue };
                let r = SubRef { conn, slot };
                let registered = if sub.topic {
                    self.router
                        .topics
                        .get(&sub.dest)
                        .is_some_and(|l| l.contains(&r))
                } else {
                    self.router
                        .queues
                        .get(&sub.dest)
                        .is_some_and(|q| q.subs.contains(&r))
                };
                if !registered {
                    return Err(format!(
                        "subscription {r:?} not registered at {}",
                        &*sub.dest
                    ));
                }
                if sub.topic {
                    continue;
                }
                if sub.ack == AckMode::Auto && !sub.unacked.is_empty() {
                    return Err("auto subscription holds unacked messages".into());
                }
                for u in &sub.unacked {
                    if !seen.insert(u.msg.seq) {
                        return Err(format!(
                            "message {} both queued and awaiting ack (or twice in flight)",
                            u.msg.seq
                        ));
                    }
                    inflight += 1;
                    let e = bytes.entry(&sub.dest).or_default();
                    e.0 += u.msg.size;
                    e.1 += 1;
                }
            }
        }
        let mut total = tx_bytes;
        for (name, q) in &self.router.queues {
            let (b, n) = bytes.get(name).copied().unwrap_or_default();
            if q.bytes != b || q.inflight != n {
                return Err(format!(
                    "queue {name}: counted {} bytes / {} in flight, found {b} / {n}",
                    q.bytes, q.inflight
                ));
            }
            total += b;
        }
        if total != self.router.memory {
            return Err(format!(
                "memory counter {} but messages hold {total}",
                self.router.memory
            ));
        }
        let st = self.stats;
        if st.accepted != st.consumed + ready + inflight {
            return Err(format!(
                "accepted {} != consumed {} + queued {ready} + in flight {inflight}",
                st.accepted, st.consumed
            ));
        }
        for &(conn, serial, _) in &self.blocked {
            if !self
                .sessions
                .get(conn)
                .is_some_and(|s| s.serial == serial && s.paused)
            {
                return Err(format!("blocked entry for {conn} is stale or not paused"));
            }
        }
        Ok(())
    }
}

fn stored(msg: &Message) -> StoredMessage {
    StoredMessage {
        seq: msg.seq,
        queue: msg.dest.clone(),
        headers: msg.headers.clone(),
        body: msg.body.clone(),
        deliveries: msg.deliveries,
    }
}

/// The MESSAGE for a client-mode topic subscription, with its `ack` id; the
/// message is kept as unacknowledged.
fn deliver_topic(s: &mut Session, slot: usize, msg: Message) -> Frame {
    let n = s.next_ack;
    s.next_ack += 1;
    let sub = s.subs[slot].as_mut().expect("subscribed");
    let frame = msg.to_frame(&sub.id, Some(ByteString::from(format!("{slot}.{n}"))));
    sub.unacked.push_back(Unacked { ack: n, msg });
    frame
}

/// Puts a RECEIPT at its gate (the first), or at the end when the gates
/// were lifted (the connection failed meanwhile).
fn release_receipt(
    dirty: &mut Vec<ConnId>,
    s: &mut Session,
    conn: ConnId,
    r: ByteString,
    now: Instant,
) {
    let at = match s.gates.pop_front() {
        Some(gate) => {
            // Later gates sit after it: one more entry before them.
            for g in &mut s.gates {
                *g += 1;
            }
            // A gate is within the outbox (`check_invariants`); clamped all
            // the same.
            usize::try_from(gate.saturating_sub(s.popped)).unwrap_or(usize::MAX)
        }
        None => usize::MAX,
    };
    insert_at(dirty, s, conn, at, Output::Frame(Frame::receipt(r)), now);
}

fn push_to(dirty: &mut Vec<ConnId>, s: &mut Session, conn: ConnId, out: Output, now: Instant) {
    insert_at(dirty, s, conn, usize::MAX, out, now);
}

/// Queues `out` at position `at` of the outbox (its end, at most).
fn insert_at(
    dirty: &mut Vec<ConnId>,
    s: &mut Session,
    conn: ConnId,
    at: usize,
    out: Output,
    now: Instant,
) {
    let est = estimate(&out);
    s.queued += est;
    s.outbox.insert(at.min(s.outbox.len()), (out, est));
    s.last_write = now;
    if !s.dirty {
        s.dirty = true;
        dirty.push(conn);
    }
}
