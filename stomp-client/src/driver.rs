//! The I/O thread: a thin mio driver around [`Core`].
//!
//! One thread per client owns the socket, a `mio::Poll` and a `Waker`.
//! API calls push [`Cmd`]s onto a bounded channel and wake it; it writes
//! them through the core, reads the socket, and sorts what arrives onto
//! channels: messages to their subscription's queue, receipts to the call
//! waiting for them, unmatched errors to the shared state. It never blocks
//! without a timeout (poll is capped at [`MAX_POLL`]), so it notices a
//! shutdown request promptly.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use stomp_frame::{AckMode, Frame};

use crate::budget::Charge;
use crate::client::{ConnectionEvent, ConnectionState, Inner, Message};
use crate::core::{Core, CoreConfig, Event};
use crate::error::{Error, Result};
use crate::options::OutagePolicy;

pub(crate) const WAKER: Token = Token(0);
const SOCKET: Token = Token(1);
/// The longest the thread sleeps without looking at the shutdown flag.
const MAX_POLL: Duration = Duration::from_millis(250);
/// Stop taking commands while this many bytes wait to be written.
const OUT_HIGH_WATER: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// Message bytes held beyond full subscription queues before the socket is
/// no longer read. Until then receipts and errors still get through.
const STALL_MAX: usize = 1 << 20;

/// Where the answer to a frame with a receipt goes.
pub(crate) struct Waiter {
    pub(crate) tx: Sender<Result<()>>,
    pub(crate) timeout: Duration,
}

impl Waiter {
    fn answer(self, r: Result<()>) {
        let _ = self.tx.send(r);
    }
}

/// What API calls ask of the I/O thread.
pub(crate) enum Cmd {
    /// Write a frame. `epoch`: only valid in that session (transactions).
    Send {
        frame: Frame,
        epoch: Option<u64>,
        receipt: Option<Waiter>,
    },
    /// ACK or NACK a message of session `epoch`.
    Ack {
        message: Frame,
        nack: bool,
        transaction: Option<String>,
        epoch: u64,
    },
    Subscribe {
        frame: Frame,
        sink: Sender<Message>,
        ack: AckMode,
        receipt: Option<Waiter>,
    },
    Unsubscribe {
        id: String,
        receipt: Option<Waiter>,
    },
    Disconnect {
        done: Sender<Result<()>>,
    },
}

/// What a command counts for against the outgoing queue's byte bound,
/// besides its frame's body and headers: the command itself and the
/// allocations of its headers.
const CMD_OVERHEAD: usize = 128;

/// The body and header bytes of a frame.
fn frame_bytes(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|h| h.name().len() + h.value().len() + 2)
        .sum();
    frame.body.len().saturating_add(headers)
}

impl Cmd {
    /// The bytes this command takes in the outgoing queue. The MESSAGE of
    /// an ACK shares its body with the program's copy: only its headers count.
    pub(crate) fn queued_bytes(&self) -> usize {
        let own = match self {
            Cmd::Send { frame, .. } | Cmd::Subscribe { frame, .. } => frame_bytes(frame),
            Cmd::Ack { message, .. } => frame_bytes(message) - message.body.len(),
            Cmd::Unsubscribe { id, .. } => id.len(),
            Cmd::Disconnect { .. } => 0,
        };
        own.saturating_add(CMD_OVERHEAD)
    }

    fn fail(self, err: Error) {
        match self {
            Cmd::Send {
                receipt: Some(w), ..
            }
            | Cmd::Subscribe {
                receipt: Some(w), ..
            }
            | Cmd::Unsubscribe {
                receipt: Some(w), ..
            } => w.answer(Err(err)),
            Cmd::Disconnect { done } => {
                let _ = done.send(Err(err));
            }
            _ => {}
        }
    }
}

/// A command in the outgoing queue, with the room it takes there: given
/// back when it is dropped (written into the core's output, failed, or
/// thrown away).
pub(crate) struct Queued {
    pub(crate) cmd: Cmd,
    pub(crate) room: Charge,
}

struct Conn {
    stream: TcpStream,
    /// The TLS session (`stomp+ssl://`, [`ConnectOptions::tls`](crate::ConnectOptions::tls)).
    tls: Option<Box<rustls::ClientConnection>>,
    /// The TCP connect has completed.
    established: bool,
    /// CONNECTED arrived on this connection.
    opened: bool,
    address: String,
}

struct Driver {
    inner: Arc<Inner>,
    poll: Poll,
    cmds: Receiver<Queued>,
    core: Core<Waiter>,
    conn: Option<Conn>,
    rbuf: BytesMut,
    scratch: Vec<u8>,
    sinks: HashMap<String, (Sender<Message>, AckMode)>,
    /// Messages waiting for room in their subscription's queue: while any
    /// wait, the socket is not read (back-pressure to the broker).
    stalled: VecDeque<(String, Message)>,
    stalled_bytes: usize,
    /// Calls that arrived while reconnecting (outage policy `Wait`); they
    /// keep their room in the outgoing queue.
    outbox: VecDeque<Queued>,
    /// Addresses tried in the current round; which one is next.
    next_address: usize,
    initial_tries: usize,
    ever_connected: bool,
    reconnect_at: Option<Instant>,
    attempt: u32,
    disconnecting: bool,
    ready: Option<Sender<Result<()>>>,
    /// Stop: set when the session ends for good.
    finished: Option<Option<Error>>,
    read_pending: bool,
}

/// The I/O thread's body.
pub(crate) fn run(
    inner: Arc<Inner>,
    poll: Poll,
    cmds: Receiver<Queued>,
    ready: Sender<Result<()>>,
    done: Sender<()>,
) {
    let o = &inner.opts;
    let cfg = CoreConfig {
        login: o.login.clone(),
        passcode: o.passcode.clone(),
        versions: o.versions.clone(),
        heart_beat: o.heart_beat,
        grace: o.heartbeat_grace,
        connect_timeout: o.connect_timeout,
        limits: o.limits,
        connect_headers: o.connect_headers.clone(),
    };
    let mut d = Driver {
        core: Core::new(cfg, Instant::now()),
        inner: Arc::clone(&inner),
        poll,
        cmds,
        conn: None,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        scratch: vec![0; READ_CHUNK],
        sinks: HashMap::new(),
        stalled: VecDeque::new(),
        stalled_bytes: 0,
        outbox: VecDeque::new(),
        next_address: 0,
        initial_tries: 0,
        ever_connected: false,
        reconnect_at: None,
        attempt: 0,
        disconnecting: false,
        ready: Some(ready),
        finished: None,
        read_pending: false,
    };
    d.start_attempt(Instant::now());
    d.event_loop();
    d.finish();
    let _ = done.send(());
}

impl Driver {
    fn event_loop(&mut self) {
        let mut events = Events::with_capacity(64);
        while self.finished.is_none() {
            if self.inner.shutdown.load(Ordering::SeqCst) {
                self.finished = Some(None);
                break;
            }
            let now = Instant::now();
            let mut deadline = now + MAX_POLL;
            if let Some(t) = self.core.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let Some(t) = self.reconnect_at {
                deadline = deadline.min(t);
            }
            let mut timeout = deadline.saturating_duration_since(now);
            if !self.stalled.is_empty() {
                timeout = timeout.min(Duration::from_millis(1));
            }
            if self.read_pending && self.stalled_bytes < STALL_MAX {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.finished = Some(Some(Error::lost(format!("poll failed: {e}"))));
                break;
            }
            let mut socket_event = false;
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    socket_event = true;
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.read_pending = true;
                    }
                }
            }
            let now = Instant::now();
            if socket_event {
                self.check_established(now);
            }
            self.deliver_stalled();
            if self.read_pending && self.stalled_bytes < STALL_MAX {
                self.read(now);
            } else if self.read_pending {
                // The program is behind, so the socket is not read: what
                // waits there proves the broker alive (no heart-beat
                // timeout for our own back-pressure).
                self.core.heard(now);
            }
            self.take_commands(now);
            self.core.handle_timeout(now);
            if self.reconnect_at.is_some_and(|t| now >= t) {
                self.reconnect_at = None;
                self.start_attempt(now);
            }
            self.process_events(now);
            self.flush(now);
            self.process_events(now);
        }
    }

    /// Opens a TCP connection to the next address and starts a session on it.
    fn start_attempt(&mut self, now: Instant) {
        let addresses = &self.inner.opts.addresses;
        let address = addresses[self.next_address % addresses.len()].clone();
        self.next_address = (self.next_address + 1) % addresses.len();
        let host = self.inner.opts.host_header_for(&address).to_owned();
        self.core.start(&host, now);
        let tls_opts = self.inner.opts.tls.clone();
        let result = resolve(&address).and_then(|sa| {
            let tls = match &tls_opts {
                Some(o) => {
                    let name = crate::options::host_part(&address);
                    let config = crate::tls::client_config(o)?;
                    Some(Box::new(crate::tls::connect(&config, name)?))
                }
                None => None,
            };
            let mut stream = TcpStream::connect(sa)?;
            self.poll.registry().register(
                &mut stream,
                SOCKET,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok((stream, tls))
        });
        match result {
            Ok((stream, tls)) => {
                self.conn = Some(Conn {
                    stream,
                    tls,
                    established: false,
                    opened: false,
                    address,
                });
                self.rbuf.clear();
                self.read_pending = false;
            }
            Err(e) => {
                self.conn = None;
                self.core.connection_lost(Error::Connect {
                    address,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Completes a non-blocking connect (mio: on an event, check
    /// `take_error`, then `peer_addr`).
    fn check_established(&mut self, _now: Instant) {
        let Some(conn) = &mut self.conn else { return };
        if conn.established {
            return;
        }
        let err = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Some(e),
            },
        };
        match err {
            None => {
                conn.established = true;
                let _ = conn.stream.set_nodelay(true);
            }
            Some(e) => {
                let address = conn.address.clone();
                self.core.connection_lost(Error::Connect {
                    address,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn read(&mut self, now: Instant) {
        // A bounded number of reads per turn, so that a broker that sends
        // without pause cannot starve our writes, commands and timers;
        // `read_pending` stays set and the next poll does not sleep.
        for _ in 0..32 {
            let Some(conn) = &mut self.conn else {
                self.read_pending = false;
                return;
            };
            if !conn.established || self.core.is_closed() {
                // Nothing to read yet (an event before the connect completed
                // is looked at again on the next one) or any more.
                self.read_pending = false;
                return;
            }
            if self.stalled_bytes >= STALL_MAX {
                return;
            }
            // Read into a reused scratch buffer and append what came: a copy
            // of the bytes read, cheaper than zeroing a fresh chunk per read.
            let r = match &mut conn.tls {
                Some(t) => crate::tls::read(t, &mut conn.stream, &mut self.scratch),
                None => conn.stream.read(&mut self.scratch),
            };
            match r {
                Ok(0) => {
                    self.read_pending = false;
                    self.core
                        .connection_lost(Error::lost("the broker closed the connection"));
                    return;
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&self.scratch[..n]);
                    self.core.handle_input(&mut self.rbuf, now);
                    self.process_events(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_pending = false;
                    // A failed TLS handshake is a failed connect.
                    let error = if conn.tls.is_some() && !conn.opened {
                        Error::Connect {
                            address: conn.address.clone(),
                            reason: e.to_string(),
                        }
                    } else {
                        Error::lost(e.to_string())
                    };
                    self.core.connection_lost(error);
                    return;
                }
            }
        }
    }

    /// Writes what the core has queued until the socket would block.
    fn flush(&mut self, _now: Instant) {
        let Some(conn) = &mut self.conn else { return };
        if !conn.established {
            return;
        }
        if let Some(t) = &mut conn.tls
            && let Err(e) = crate::tls::flush(t, &mut conn.stream)
        {
            self.core.connection_lost(Error::lost(e.to_string()));
            return;
        }
        loop {
            let out = self.core.output();
            if out.is_empty() {
                return;
            }
            let w = match &mut conn.tls {
                Some(t) => crate::tls::write(t, &mut conn.stream, out),
                None => conn.stream.write(out),
            };
            match w {
                Ok(0) => {
                    self.core.connection_lost(Error::lost("write returned 0"));
                    return;
                }
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.core.connection_lost(Error::lost(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Moves commands from the channel into the core (or the outbox).
    fn take_commands(&mut self, now: Instant) {
        self.inner.wake_pending.store(false, Ordering::SeqCst);
        loop {
            if self.core.output().len() >= OUT_HIGH_WATER {
                // The socket is behind: leave the rest in the channel, whose
                // bounds (frames and bytes) then hold back the senders.
                return;
            }
            if !self.core.is_open() && self.outbox.len() >= 4096 {
                return;
            }
            let Ok(queued) = self.cmds.try_recv() else {
                return;
            };
            self.command(queued, now);
        }
    }

    fn command(&mut self, queued: Queued, now: Instant) {
        // The room stays taken until the command is written (or dropped)
        // at the end of this call; a command kept in the outbox keeps it.
        let Queued { cmd, room } = queued;
        if let Cmd::Disconnect { done } = cmd {
            if self.core.is_open() {
                let timeout = self.inner.opts.disconnect_timeout;
                // The RECEIPT (or its timeout) answers `done`; then the core
                // closes the session and `on_closed` ends the thread.
                match self
                    .core
                    .disconnect(Waiter { tx: done, timeout }, timeout, now)
                {
                    Ok(()) => self.disconnecting = true,
                    Err((w, e)) => {
                        w.answer(Err(e));
                        self.finished = Some(None);
                    }
                }
            } else {
                let _ = done.send(Ok(()));
                self.finished = Some(None);
            }
            return;
        }
        if !self.core.is_open() {
            match cmd {
                Cmd::Unsubscribe { id, receipt } => {
                    self.sinks.remove(&id);
                    let _ = self.core.unsubscribe(&id, None, now);
                    if let Some(w) = receipt {
                        w.answer(Ok(()));
                    }
                }
                cmd => match (&self.finished, self.inner.opts.outage) {
                    // The session ended for good in this turn: the call gets
                    // why, as the calls still queued do in `finish`.
                    (Some(reason), _) => cmd.fail(reason.clone().unwrap_or(Error::Closed)),
                    (None, OutagePolicy::Wait(_)) => self.outbox.push_back(Queued { cmd, room }),
                    (None, OutagePolicy::FailFast) => cmd.fail(Error::NotConnected),
                },
            }
            return;
        }
        let epoch = self.core.epoch();
        match cmd {
            Cmd::Send {
                frame,
                epoch: e,
                receipt,
            } => {
                if let Some(e) = e
                    && e != epoch
                {
                    let tx = frame.transaction().unwrap_or_default().to_owned();
                    if let Some(w) = receipt {
                        w.answer(Err(Error::TransactionLost(tx)));
                    }
                    return;
                }
                match receipt {
                    Some(w) => {
                        let timeout = w.timeout;
                        if let Err((w, e)) = self.core.send_with_receipt(frame, w, timeout, now) {
                            w.answer(Err(e));
                        }
                    }
                    None => {
                        if let Err(e) = self.core.send(&frame, now) {
                            self.soft_error(e);
                        }
                    }
                }
            }
            Cmd::Ack {
                message,
                nack,
                transaction,
                epoch: e,
            } => {
                if e != epoch {
                    return;
                }
                let version = self.core.version();
                let frame = if nack {
                    Frame::nack_for(&message, version)
                } else {
                    Frame::ack_for(&message, version)
                };
                match frame {
                    Some(f) => {
                        let f = f.header_opt("transaction", transaction);
                        if let Err(e) = self.core.send(&f, now) {
                            self.soft_error(e);
                        }
                    }
                    None => self.soft_error(Error::CannotAck(
                        "the MESSAGE lacks the header this version acks by",
                    )),
                }
            }
            Cmd::Subscribe {
                frame,
                sink,
                ack,
                receipt,
            } => {
                let id = frame.id().unwrap_or_default().to_owned();
                let token = receipt.map(|w| {
                    let t = w.timeout;
                    (w, t)
                });
                match self.core.subscribe(frame, token, now) {
                    Ok(()) => {
                        self.sinks.insert(id, (sink, ack));
                    }
                    Err((w, e)) => {
                        if let Some(w) = w {
                            w.answer(Err(e));
                        }
                    }
                }
            }
            Cmd::Unsubscribe { id, receipt } => {
                self.sinks.remove(&id);
                let token = receipt.map(|w| {
                    let t = w.timeout;
                    (w, t)
                });
                if let Err((Some(w), e)) = self.core.unsubscribe(&id, token, now) {
                    w.answer(Err(e));
                }
            }
            Cmd::Disconnect { .. } => unreachable!("handled above"),
        }
    }

    /// An error with no call waiting for it: the next call returns it.
    fn soft_error(&self, e: Error) {
        self.inner.update(|st| st.pending_error = Some(e.clone()));
        self.inner.emit(ConnectionEvent::Error(e));
    }

    fn deliver_stalled(&mut self) {
        while let Some((id, msg)) = self.stalled.pop_front() {
            let size = stalled_size(&msg);
            let Some((sink, _)) = self.sinks.get(&id) else {
                self.stalled_bytes -= size;
                continue;
            };
            match sink.try_send(msg) {
                Ok(()) => self.stalled_bytes -= size,
                Err(TrySendError::Full(msg)) => {
                    self.stalled.push_front((id, msg));
                    return;
                }
                Err(TrySendError::Disconnected(_)) => self.stalled_bytes -= size,
            }
        }
    }

    fn stall(&mut self, id: String, msg: Message) {
        self.stalled_bytes += stalled_size(&msg);
        self.stalled.push_back((id, msg));
    }

    fn process_events(&mut self, now: Instant) {
        // Answers go out after the whole batch, so that a caller woken by
        // one already sees the state the batch leads to (closed, reconnecting).
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::Connected(info) => self.on_connected(info, now),
                Event::Message(sub, frame) => {
                    let Some(id) = sub else { continue };
                    let Some((sink, ack)) = self.sinks.get(&id) else {
                        continue;
                    };
                    let msg = Message {
                        frame,
                        epoch: self.core.epoch(),
                        ack_mode: *ack,
                        inner: Arc::clone(&self.inner),
                    };
                    // Behind earlier stalled messages, to keep the order.
                    if !self.stalled.is_empty() {
                        self.stall(id, msg);
                        continue;
                    }
                    match sink.try_send(msg) {
                        Ok(()) => {}
                        Err(TrySendError::Full(msg)) => self.stall(id, msg),
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
                Event::Receipt(w, r) => answers.push((w, r)),
                Event::Error(e) => errors.push(e),
                Event::Closed(r) => self.on_closed(r, now),
            }
        }
        for e in errors {
            self.soft_error(e);
        }
        for (w, r) in answers {
            w.answer(r);
        }
    }

    fn on_connected(&mut self, info: crate::core::SessionInfo, now: Instant) {
        if let Some(conn) = &mut self.conn {
            conn.opened = true;
        }
        let epoch = self.core.epoch();
        self.attempt = 0;
        let first = !self.ever_connected;
        self.ever_connected = true;
        self.inner.update(|st| {
            st.status = ConnectionState::Connected;
            st.info = Some(info.clone());
            st.epoch = epoch;
        });
        if first {
            self.inner.emit(ConnectionEvent::Connected(info));
            if let Some(r) = self.ready.take() {
                let _ = r.send(Ok(()));
            }
        } else {
            self.inner.emit(ConnectionEvent::Reconnected {
                info,
                subscriptions: self.core.subscription_count(),
            });
        }
        // Calls that waited out the outage go after the re-subscriptions.
        while let Some(queued) = self.outbox.pop_front() {
            self.command(queued, now);
        }
    }

    fn on_closed(&mut self, result: Result<()>, now: Instant) {
        let opened = self.conn.as_ref().is_some_and(|c| c.opened);
        if let Some(mut conn) = self.conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        // Messages already received but not yet taken stay for their
        // subscriptions, which outlive the session when reconnecting.
        if self.disconnecting || self.finished.is_some() {
            self.stop(None);
            return;
        }
        let err = match result {
            Ok(()) => Error::lost("the session ended"),
            Err(e) => e,
        };
        if !self.ever_connected {
            self.initial_tries += 1;
            if self.initial_tries < self.inner.opts.addresses.len() {
                self.start_attempt(now);
            } else {
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Err(err.clone()));
                }
                self.stop(Some(err));
            }
            return;
        }
        // Bytes the client cannot decode would come again on every new
        // session (a broker redelivers the message it could not take): the
        // client ends instead of looping.
        let policy = match self.inner.opts.reconnect {
            Some(_) if matches!(err, Error::Protocol(_)) => None,
            policy => policy,
        };
        let Some(policy) = policy else {
            self.stop(Some(err.clone()));
            if opened {
                self.inner.emit(ConnectionEvent::Lost(err));
            }
            return;
        };
        if opened {
            // The state first: whoever sees `Lost` sees `Reconnecting`.
            self.inner
                .update(|st| st.status = ConnectionState::Reconnecting);
            self.inner.emit(ConnectionEvent::Lost(err));
            self.attempt = 0;
            self.next_address = 0;
        } else {
            self.attempt += 1;
            if policy.max_attempts.is_some_and(|m| self.attempt >= m) {
                self.stop(Some(Error::lost(format!(
                    "gave up reconnecting after {} attempts; last error: {err}",
                    self.attempt
                ))));
                return;
            }
        }
        self.reconnect_at = Some(now + policy.delay(self.attempt));
    }

    /// Ends the client for good: later calls fail with `reason`.
    fn stop(&mut self, reason: Option<Error>) {
        // Later calls say the connection is gone, whatever ended it (an
        // ERROR itself was already reported once).
        let lost = reason.as_ref().map(|e| match e {
            Error::ConnectionLost { .. } | Error::Closed => e.clone(),
            other => Error::lost(other.to_string()),
        });
        self.inner.update(|st| {
            st.status = ConnectionState::Closed;
            if st.closed_reason.is_none() {
                st.closed_reason = lost;
            }
        });
        self.finished = Some(reason);
    }

    /// The thread is stopping: close everything and tell everyone.
    fn finish(&mut self) {
        let reason = self.finished.take().flatten();
        self.stop(reason.clone());
        if let Some(mut conn) = self.conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        self.core.connection_lost(Error::Closed);
        while let Some(ev) = self.core.poll_event() {
            if let Event::Receipt(w, r) = ev {
                w.answer(r);
            }
        }
        let closed = reason.clone().unwrap_or(Error::Closed);
        for queued in self.outbox.drain(..) {
            queued.cmd.fail(closed.clone());
        }
        while let Ok(queued) = self.cmds.try_recv() {
            match queued.cmd {
                Cmd::Disconnect { done } => {
                    let _ = done.send(Ok(()));
                }
                cmd => cmd.fail(closed.clone()),
            }
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(Err(closed.clone()));
        }
        // Dropping the sinks ends every subscription's iterator.
        self.sinks.clear();
        self.stalled.clear();
        self.inner.emit(ConnectionEvent::Closed(reason));
    }
}

/// What a stalled message counts for against [`STALL_MAX`].
fn stalled_size(msg: &Message) -> usize {
    msg.frame.body.len() + 64
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{address} resolves to no address"),
        )
    })
}
