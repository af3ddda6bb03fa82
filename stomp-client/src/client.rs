//! The public, blocking API: [`Client`], [`Subscription`], [`Message`],
//! [`Transaction`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use stomp_frame::{AckMode, Command, Frame, Headers, Version};

use crate::budget::Budget;
use crate::core::SessionInfo;
use crate::driver::{self, Cmd, Queued, Waiter};
use crate::error::{Error, Result};
use crate::options::{ConnectOptions, OutagePolicy};

/// Where the client's connection stands.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first connection is being made.
    Connecting,
    /// A session is open.
    Connected,
    /// The connection was lost; the client is trying again (reconnect on).
    Reconnecting,
    /// The client is done: disconnected, dropped, or the connection was lost
    /// for good.
    Closed,
}

/// A change of the connection, from [`Client::events`].
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum ConnectionEvent {
    /// The first session is open.
    Connected(SessionInfo),
    /// The connection was lost; with reconnect on, the client now tries again.
    Lost(Error),
    /// A new session is open after a loss, and every subscription was sent
    /// again (same ids) before any other frame.
    Reconnected {
        /// The new session.
        info: SessionInfo,
        /// How many subscriptions were re-established.
        subscriptions: usize,
    },
    /// The broker sent an ERROR that answers no call (it is also returned by
    /// the next call made on the client).
    Error(Error),
    /// The client is done (`None`: closed by the program).
    Closed(Option<Error>),
}

pub(crate) struct State {
    pub(crate) status: ConnectionState,
    pub(crate) info: Option<SessionInfo>,
    pub(crate) epoch: u64,
    pub(crate) pending_error: Option<Error>,
    pub(crate) closed_reason: Option<Error>,
}

/// What the API threads and the I/O thread share.
pub(crate) struct Inner {
    pub(crate) opts: ConnectOptions,
    /// The outgoing queue: unbounded as a channel, bounded in frames and
    /// bytes by `budget` (room taken before a command enters it).
    cmd_tx: Sender<Queued>,
    budget: Arc<Budget>,
    waker: mio::Waker,
    pub(crate) wake_pending: AtomicBool,
    pub(crate) shutdown: AtomicBool,
    state: Mutex<State>,
    state_cv: Condvar,
    next_id: AtomicU64,
    events_tx: Sender<ConnectionEvent>,
    events_rx: Receiver<ConnectionEvent>,
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes calls waiting for the connection.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.state_cv.notify_all();
    }

    /// Queues an event; when 256 wait unread, the oldest goes.
    pub(crate) fn emit(&self, event: ConnectionEvent) {
        let mut event = event;
        while let Err(crossbeam_channel::TrySendError::Full(back)) = self.events_tx.try_send(event)
        {
            let _ = self.events_rx.try_recv();
            event = back;
        }
    }

    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The error for a call on a closed client.
    fn closed_error(&self) -> Error {
        self.state().closed_reason.clone().unwrap_or(Error::Closed)
    }

    /// The current session's epoch when connected (leaves a pending error
    /// for the next real call).
    fn live_epoch(&self) -> Option<u64> {
        let st = self.state();
        (st.status == ConnectionState::Connected).then_some(st.epoch)
    }

    /// Checks that a call may go out now: returns a pending broker error,
    /// waits (per the outage policy) while reconnecting, fails when closed.
    /// Returns the current session epoch.
    fn ready(&self) -> Result<u64> {
        self.ready_session().map(|(epoch, _)| epoch)
    }

    /// [`ready`](Inner::ready), and checks that the session can write
    /// `frame` (its version can carry every header): the call that makes a
    /// frame the session cannot carry gets [`Error::Encode`], and nothing
    /// is queued.
    fn ready_to_send(&self, frame: &mut Frame) -> Result<u64> {
        let (epoch, version) = self.ready_session()?;
        crate::core::check_encodable(frame, version)?;
        Ok(epoch)
    }

    /// [`ready`](Inner::ready), with the session's version.
    fn ready_session(&self) -> Result<(u64, Version)> {
        let mut st = self.state();
        if let Some(e) = st.pending_error.take() {
            return Err(e);
        }
        let wait_until = match self.opts.outage {
            OutagePolicy::FailFast => None,
            OutagePolicy::Wait(d) => Some(Instant::now() + d.min(crate::options::LONGEST)),
        };
        loop {
            match st.status {
                ConnectionState::Connected => {
                    let version = st.info.as_ref().map_or(Version::V1_2, |i| i.version);
                    return Ok((st.epoch, version));
                }
                ConnectionState::Closed => {
                    return Err(st.closed_reason.clone().unwrap_or(Error::Closed));
                }
                ConnectionState::Connecting | ConnectionState::Reconnecting => {
                    let Some(until) = wait_until else {
                        return Err(Error::NotConnected);
                    };
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::NotConnected);
                    }
                    st = self
                        .state_cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Hands a command to the I/O thread, waiting at most the send timeout
    /// for room in its queue.
    fn push(&self, cmd: Cmd) -> Result<()> {
        self.push_within(cmd, self.opts.send_timeout)
    }

    /// [`push`](Inner::push), waiting at most `wait` for room: the queue
    /// stays within [`ConnectOptions::max_send_queue_frames`] and
    /// [`ConnectOptions::max_send_queue_bytes`] (a command larger than the
    /// latter goes in alone, when the queue is empty).
    fn push_within(&self, cmd: Cmd, wait: Duration) -> Result<()> {
        let Some(room) = self.budget.acquire(cmd.queued_bytes(), wait) else {
            return Err(Error::Timeout {
                what: "room in the outgoing queue",
                after: wait,
            });
        };
        self.enqueue(Queued { cmd, room })
    }

    /// Queues a small command that cleans up after the program without
    /// waiting for room (see [`Budget::force`]).
    fn push_forced(&self, cmd: Cmd) -> Result<()> {
        let room = self.budget.force(cmd.queued_bytes());
        self.enqueue(Queued { cmd, room })
    }

    fn enqueue(&self, queued: Queued) -> Result<()> {
        match self.cmd_tx.send(queued) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            // The I/O thread has ended; the command (and its room) goes.
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Drops subscription `id` without waiting: its messages stop, it is not
    /// sent again on reconnect, and an UNSUBSCRIBE goes out if the session
    /// knows it (a full outgoing queue does not hold it back).
    fn forget(&self, id: &str) {
        let _ = self.push_forced(Cmd::Unsubscribe {
            id: id.to_owned(),
            receipt: None,
        });
    }

    /// Refuses a body larger than the client itself would receive (a
    /// broker would deliver it to no client with the same options).
    fn check_body(&self, frame: &Frame) -> Result<()> {
        let max = self.opts.limits.max_body_len;
        if frame.body.len() > max {
            return Err(Error::BodyTooLarge {
                size: frame.body.len(),
                max,
            });
        }
        Ok(())
    }

    /// Sends a command carrying a receipt waiter and waits for the answer.
    fn submit_confirmed(&self, make: impl FnOnce(Waiter) -> Cmd, timeout: Duration) -> Result<()> {
        let timeout = timeout.min(crate::options::LONGEST);
        self.ready()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.push(make(Waiter { tx, timeout }))?;
        wait_receipt(self, &rx, timeout)
    }
}

/// Waits for a receipt answer, a little longer than the I/O thread's own
/// timer for it (which answers with a timeout error itself). A waiter
/// dropped unanswered (the I/O thread ended) gives why the client closed.
fn wait_receipt(inner: &Inner, rx: &Receiver<Result<()>>, timeout: Duration) -> Result<()> {
    match rx.recv_timeout(timeout + Duration::from_millis(250)) {
        Ok(r) => r,
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
            what: "RECEIPT",
            after: timeout,
        }),
        Err(RecvTimeoutError::Disconnected) => Err(inner.closed_error()),
    }
}

/// A connection to a STOMP broker.
///
/// `Client` is `Send + Sync`: share it between threads with an `Arc` (or by
/// reference) and call it from all of them. Each client runs one I/O thread
/// that owns the socket; calls hand frames to it through a queue and never
/// touch the network themselves.
///
/// ```no_run
/// use std::time::Duration;
/// use stomp_client::{AckMode, Client};
///
/// let client = Client::connect_url("stomp://guest:guest@127.0.0.1:61613/%2F")?;
/// let sub = client.subscribe("/queue/jobs", AckMode::ClientIndividual, &[])?;
/// client.send("/queue/jobs", "hello")?;
/// client.send_confirmed("/queue/jobs", "hello, with a receipt", Duration::from_secs(5))?;
/// for msg in sub.iter().take(2) {
///     println!("{:?}", msg.body());
///     msg.ack()?;
/// }
/// client.disconnect()?;
/// # Ok::<(), stomp_client::Error>(())
/// ```
///
/// Dropping the client disconnects it (bounded by the disconnect timeout)
/// and stops its I/O thread.
pub struct Client {
    inner: Arc<Inner>,
    thread: Mutex<Option<(JoinHandle<()>, Receiver<()>)>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addresses", &self.inner.opts.addresses)
            .field("state", &self.state())
            .finish()
    }
}

impl Client {
    /// Connects as `opts` says and returns once CONNECTED has arrived. Each
    /// address of the failover list is tried once, each attempt bounded by
    /// the connect timeout; the error of the last one is returned.
    pub fn connect(opts: ConnectOptions) -> Result<Client> {
        opts.validate()?;
        let poll = mio::Poll::new().map_err(|e| Error::InvalidOption(format!("mio: {e}")))?;
        let waker = mio::Waker::new(poll.registry(), driver::WAKER)
            .map_err(|e| Error::InvalidOption(format!("mio: {e}")))?;
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let send_budget = Budget::new(opts.max_send_queue_frames, opts.max_send_queue_bytes);
        let (events_tx, events_rx) = crossbeam_channel::bounded(256);
        let attempts = opts.addresses.len() as u32;
        let budget = opts.connect_timeout * attempts + Duration::from_secs(1);
        let inner = Arc::new(Inner {
            opts,
            cmd_tx,
            budget: send_budget,
            waker,
            wake_pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            state: Mutex::new(State {
                status: ConnectionState::Connecting,
                info: None,
                epoch: 0,
                pending_error: None,
                closed_reason: None,
            }),
            state_cv: Condvar::new(),
            next_id: AtomicU64::new(0),
            events_tx,
            events_rx,
        });
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let thread_inner = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("stomp-client-io".into())
            .spawn(move || driver::run(thread_inner, poll, cmd_rx, ready_tx, done_tx))
            .map_err(|e| Error::InvalidOption(format!("cannot start the I/O thread: {e}")))?;
        let client = Client {
            inner,
            thread: Mutex::new(Some((handle, done_rx))),
        };
        match ready_rx.recv_timeout(budget) {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => {
                client.stop_thread(Duration::from_secs(1));
                Err(e)
            }
            Err(_) => {
                client.stop_thread(Duration::from_secs(1));
                Err(Error::Timeout {
                    what: "CONNECTED",
                    after: budget,
                })
            }
        }
    }

    /// Connects to a `stomp://user:pass@host:port/vhost` URL with default
    /// options (see [`ConnectOptions::from_url`]).
    pub fn connect_url(url: &str) -> Result<Client> {
        Client::connect(ConnectOptions::from_url(url)?)
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.opts
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.inner.state().status
    }

    /// Whether a session is open right now.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// What the broker said in the CONNECTED of the current (or last) session.
    pub fn session_info(&self) -> Option<SessionInfo> {
        self.inner.state().info.clone()
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Version {
        self.inner
            .state()
            .info
            .as_ref()
            .map_or(Version::V1_2, |i| i.version)
    }

    /// Connection changes (lost, reconnected, errors, closed), as a channel:
    /// receive from it in any thread. Every call returns a handle on the same
    /// queue (each event goes to one receiver), which holds at most 256
    /// events: when it is full, a new event pushes out the oldest, so an
    /// unread queue keeps the newest 256.
    pub fn events(&self) -> Receiver<ConnectionEvent> {
        self.inner.events_rx.clone()
    }

    /// Sends `body` to `destination`, without waiting for the broker.
    ///
    /// Returns once the frame is queued for the I/O thread: cheap enough for
    /// a web request handler. A broker error about it arrives with the next
    /// call (or as [`ConnectionEvent::Error`]); what the client itself can
    /// refuse it refuses here (see [`send_frame`](Client::send_frame)).
    pub fn send(&self, destination: &str, body: impl Into<Bytes>) -> Result<()> {
        self.send_frame(Frame::send(destination.to_owned()).body(body))
    }

    /// Sends `body` to `destination` with extra headers (`content-type`,
    /// `persistent`, user headers...), without waiting.
    pub fn send_with(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<()> {
        self.send_frame(send_frame(destination, headers, body))
    }

    /// Sends a frame as built (normally a SEND made with [`Frame::send`]).
    ///
    /// Every send refuses a body over the receive limit
    /// ([`ConnectOptions::limits`], 16 MiB by default) with
    /// [`Error::BodyTooLarge`]: what is sent can be received with the same
    /// options. And every send refuses, with [`Error::Encode`], a frame the
    /// negotiated version cannot write: a line feed in a header, or a colon
    /// in a header name, in STOMP 1.0 (which has no escapes); a carriage
    /// return in 1.1. Either way nothing is sent and the session carries on.
    pub fn send_frame(&self, frame: Frame) -> Result<()> {
        let mut frame = frame;
        self.inner.check_body(&frame)?;
        self.inner.ready_to_send(&mut frame)?;
        self.inner.push(Cmd::Send {
            frame,
            epoch: None,
            receipt: None,
        })
    }

    /// Sends `body` to `destination` and waits until the broker's RECEIPT
    /// confirms it (at most `timeout`). An ERROR answering it is returned as
    /// [`Error::Broker`].
    pub fn send_confirmed(
        &self,
        destination: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<()> {
        self.send_frame_confirmed(Frame::send(destination.to_owned()).body(body), timeout)
    }

    /// [`send_confirmed`](Client::send_confirmed) with extra headers.
    pub fn send_with_confirmed(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<()> {
        self.send_frame_confirmed(send_frame(destination, headers, body), timeout)
    }

    /// Sends a frame with a `receipt` header and waits for its RECEIPT.
    pub fn send_frame_confirmed(&self, frame: Frame, timeout: Duration) -> Result<()> {
        self.inner.check_body(&frame)?;
        self.inner.submit_confirmed(
            |w| Cmd::Send {
                frame,
                epoch: None,
                receipt: Some(w),
            },
            timeout,
        )
    }

    /// Subscribes to `destination` and waits for the broker to confirm it.
    ///
    /// `headers` go into the SUBSCRIBE as given (`selector`,
    /// `activemq.prefetchSize`, `prefetch-count`, `durable`...). In the
    /// client modes, without either prefetch header, both are sent with
    /// [`subscription_capacity`](crate::ConnectOptions::subscription_capacity)
    /// as the window: the broker then never sends more unacknowledged
    /// messages than the subscription buffers. An `auto` subscription has
    /// no window: one that is not read fills its buffer, then the client
    /// stops reading the socket, and RECEIPTs and the other subscriptions'
    /// messages wait behind it (read it, use a client mode, or give it a
    /// [`Client`] of its own). The
    /// subscription's id is chosen by the client (see
    /// [`Subscription::id`]). With reconnect on, the subscription is sent
    /// again with the same id and headers on every new session.
    ///
    /// Every [`AckMode`] is sent as is whatever the negotiated version:
    /// `client-individual` came with STOMP 1.1, but RabbitMQ, ActiveMQ and
    /// `stomp-broker` accept it in a 1.0 session too (a strict 1.0 broker
    /// may refuse it).
    pub fn subscribe(
        &self,
        destination: &str,
        ack: AckMode,
        headers: &[(&str, &str)],
    ) -> Result<Subscription> {
        let id = self.inner.next_id("sub");
        let mut frame = Frame::subscribe(id.clone(), destination.to_owned(), ack);
        for (k, v) in headers {
            frame = frame.header((*k).to_owned(), (*v).to_owned());
        }
        let capacity = self.inner.opts.subscription_capacity;
        // In the client modes, a broker that honours a window never sends
        // more unacknowledged messages than this subscription buffers, so
        // the client never has to stop reading for it (RECEIPTs and other
        // subscriptions would wait behind its messages). RabbitMQ has no
        // window by default; ActiveMQ's is 1000.
        if ack != AckMode::Auto
            && !headers
                .iter()
                .any(|(k, _)| *k == "activemq.prefetchSize" || *k == "prefetch-count")
        {
            frame = frame
                .header("activemq.prefetchSize", capacity.to_string())
                .header("prefetch-count", capacity.to_string());
        }
        let (sink, rx) = crossbeam_channel::bounded(capacity);
        let subscribed = self.inner.submit_confirmed(
            |w| Cmd::Subscribe {
                frame,
                sink,
                ack,
                receipt: Some(w),
            },
            self.inner.opts.receipt_timeout,
        );
        if let Err(e) = subscribed {
            // The SUBSCRIBE may have gone out: take it back, or it would
            // take messages nobody reads (and come back on reconnect).
            self.inner.forget(&id);
            return Err(e);
        }
        Ok(Subscription {
            id,
            destination: destination.to_owned(),
            ack,
            rx,
            inner: Arc::clone(&self.inner),
            active: true,
        })
    }

    /// Acknowledges a message (same as [`Message::ack`]).
    pub fn ack(&self, message: &Message) -> Result<()> {
        message.ack()
    }

    /// Rejects a message (same as [`Message::nack`]).
    pub fn nack(&self, message: &Message) -> Result<()> {
        message.nack()
    }

    /// Begins a transaction. Its sends and acks take effect at
    /// [`Transaction::commit`]; dropping it uncommitted aborts it.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        let id = self.inner.next_id("tx");
        let epoch = self.inner.ready()?;
        self.inner.push(Cmd::Send {
            frame: Frame::begin(id.clone()),
            epoch: Some(epoch),
            receipt: None,
        })?;
        Ok(Transaction {
            client: self,
            id,
            epoch,
            finished: false,
        })
    }

    /// Disconnects gracefully: sends DISCONNECT, waits for its receipt (at
    /// most the disconnect timeout; a broker that never answers cannot hold
    /// the caller), closes the socket and stops the I/O thread.
    ///
    /// Returns the broker error pending for the program, if one is, or one
    /// that arrives while the DISCONNECT waits for its receipt (a SEND the
    /// broker refused), or why the connection ended before that receipt,
    /// even when it ended before this call (the client was already closed,
    /// no DISCONNECT could go out, and what was sent last may be lost).
    pub fn disconnect(self) -> Result<()> {
        self.end(self.inner.opts.disconnect_timeout)
    }

    /// [`disconnect`](Client::disconnect) through a shared reference: for a
    /// `Client` in an `Arc`, ended by one thread (a shutdown handler) while
    /// others still hold it. Their calls then fail with
    /// [`Error::Closed`](crate::Error::Closed) (or why the session ended),
    /// and their subscriptions' iterators end.
    pub fn close(&self) -> Result<()> {
        self.end(self.inner.opts.disconnect_timeout)
    }

    /// [`disconnect`](Client::disconnect), waiting at most `timeout` (and
    /// a 250 ms grace) for the receipt instead of the disconnect timeout:
    /// for a caller with a deadline of its own, or one that already saw
    /// the broker stop answering (a receipt timed out) and would otherwise
    /// wait again. When the wait ends first, the result is
    /// [`Error::Timeout`](crate::Error::Timeout) and what was still queued
    /// (sends the broker had not taken yet, the DISCONNECT itself) is
    /// dropped with the connection: a short timeout is for giving up on a
    /// broker, not for a quick clean exit ([`disconnect`](Client::disconnect)
    /// is).
    pub fn disconnect_within(self, timeout: Duration) -> Result<()> {
        self.end(timeout)
    }

    fn end(&self, timeout: Duration) -> Result<()> {
        let pending = self.inner.state().pending_error.take();
        let result = if self.state() == ConnectionState::Closed {
            // The session is already over: why is the answer.
            match self.inner.state().closed_reason.clone() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        } else {
            // The disconnect timeout bounds it all, the wait for room in
            // a full outgoing queue (a broker that stopped reading) included.
            let started = Instant::now();
            let (tx, rx) = crossbeam_channel::bounded(1);
            match self
                .inner
                .push_within(Cmd::Disconnect { done: tx }, timeout)
            {
                Ok(()) => wait_receipt(&self.inner, &rx, timeout.saturating_sub(started.elapsed())),
                Err(e) => Err(e),
            }
        };
        self.stop_thread(Duration::from_secs(1));
        // An ERROR may come while the DISCONNECT waits (the broker refused
        // a large SEND still being written, say): it is the answer.
        let (late, reason) = {
            let mut st = self.inner.state();
            (st.pending_error.take(), st.closed_reason.clone())
        };
        match (pending.or(late), result) {
            (Some(e), _) => Err(e),
            (None, Err(Error::Closed)) => match reason {
                Some(e) if !matches!(e, Error::Closed) => Err(e),
                _ => Ok(()),
            },
            (None, r) => r,
        }
    }

    /// Tells the I/O thread to stop and joins it, waiting at most `bound`.
    fn stop_thread(&self, bound: Duration) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        let _ = self.inner.waker.wake();
        let taken = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((handle, done)) = taken {
            // The I/O thread never blocks without a timeout; if it still
            // has not stopped, detach it rather than hang the caller.
            if done.recv_timeout(bound).is_ok() {
                let _ = handle.join();
            }
        }
        self.inner.update(|st| st.status = ConnectionState::Closed);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let running = self
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if running {
            let _ = self.end(self.inner.opts.disconnect_timeout);
        }
    }
}

fn send_frame(destination: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Frame {
    let mut frame = Frame::send(destination.to_owned());
    for (k, v) in headers {
        frame = frame.header((*k).to_owned(), (*v).to_owned());
    }
    frame.body(body)
}

/// The messages of one subscription.
///
/// Receive them with [`recv`](Subscription::recv),
/// [`recv_timeout`](Subscription::recv_timeout),
/// [`try_recv`](Subscription::try_recv) or by iterating (`for msg in &sub`);
/// to spread them over worker threads, clone the
/// [`receiver`](Subscription::receiver). Dropping the subscription
/// unsubscribes (without waiting); [`unsubscribe`](Subscription::unsubscribe)
/// waits for the broker's receipt.
///
/// Messages the client received and the program has not taken yet stay
/// for it across a reconnect. When the client closes for good, they go
/// with it: in `auto` mode the broker has forgotten them, so a program
/// that must not lose any uses a client ack mode (the broker redelivers
/// what was not acknowledged). While the program is behind, the client
/// stops reading the socket (TCP pushes back on the broker) and does not
/// take the unread heart-beats for a silent broker.
pub struct Subscription {
    id: String,
    destination: String,
    ack: AckMode,
    rx: Receiver<Message>,
    inner: Arc<Inner>,
    active: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("destination", &self.destination)
            .field("ack", &self.ack)
            .finish()
    }
}

impl Subscription {
    /// The subscription id (the `id` header of SUBSCRIBE, and the
    /// `subscription` header of its messages).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The destination subscribed to.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The ack mode.
    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    /// Waits for the next message. Fails when the client is closed (a
    /// reconnecting client keeps the subscription: this keeps waiting).
    pub fn recv(&self) -> Result<Message> {
        self.rx.recv().map_err(|_| self.inner.closed_error())
    }

    /// Waits at most `timeout` for the next message (`Ok(None)`: none came).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Message>> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.inner.closed_error()),
        }
    }

    /// The next message if one is waiting (`Ok(None)`: none).
    pub fn try_recv(&self) -> Result<Option<Message>> {
        match self.rx.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.inner.closed_error()),
        }
    }

    /// Iterates over messages until the client closes.
    pub fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        self.rx.iter()
    }

    /// A handle on the message queue, to share among worker threads.
    pub fn receiver(&self) -> Receiver<Message> {
        self.rx.clone()
    }

    /// Unsubscribes and waits for the broker's receipt.
    pub fn unsubscribe(mut self) -> Result<()> {
        self.active = false;
        let id = self.id.clone();
        let timeout = self.inner.opts.receipt_timeout;
        match self.inner.submit_confirmed(
            |w| Cmd::Unsubscribe {
                id,
                receipt: Some(w),
            },
            timeout,
        ) {
            Ok(()) => Ok(()),
            // Closed or reconnecting: the subscription is gone either way
            // (a reconnecting client forgets it before the next session).
            Err(Error::NotConnected) => {
                self.inner.forget(&self.id);
                Ok(())
            }
            // The client forgets it all the same (an UNSUBSCRIBE goes out
            // if none did), so that it takes no more messages.
            Err(e) => {
                self.inner.forget(&self.id);
                Err(e)
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.active && self.inner.state().status != ConnectionState::Closed {
            self.inner.forget(&self.id);
        }
    }
}

impl<'a> IntoIterator for &'a Subscription {
    type Item = Message;
    type IntoIter = crossbeam_channel::Iter<'a, Message>;
    fn into_iter(self) -> Self::IntoIter {
        self.rx.iter()
    }
}

/// A message received on a [`Subscription`].
///
/// Acknowledge it with [`ack`](Message::ack) or [`nack`](Message::nack)
/// when its subscription is in `client` or `client-individual` mode; the
/// right frame for the negotiated version is sent (1.2: `id` from the `ack`
/// header; 1.1: `message-id` + `subscription`; 1.0: `message-id`).
pub struct Message {
    pub(crate) frame: Frame,
    pub(crate) epoch: u64,
    pub(crate) ack_mode: AckMode,
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("headers", &self.frame.headers)
            .field("body_len", &self.frame.body.len())
            .finish()
    }
}

impl Message {
    /// The `destination` header.
    pub fn destination(&self) -> Option<&str> {
        self.frame.destination()
    }

    /// The `message-id` header.
    pub fn message_id(&self) -> Option<&str> {
        self.frame.message_id()
    }

    /// The `subscription` header.
    pub fn subscription(&self) -> Option<&str> {
        self.frame.subscription()
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.frame.headers.get(name)
    }

    /// Every header, in order.
    pub fn headers(&self) -> &Headers {
        &self.frame.headers
    }

    /// The body (shared, not copied).
    pub fn body(&self) -> &Bytes {
        &self.frame.body
    }

    /// Whether the broker marked it as delivered before (`redelivered:true`).
    pub fn redelivered(&self) -> bool {
        self.frame.headers.get("redelivered") == Some("true")
    }

    /// The MESSAGE frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Takes the MESSAGE frame.
    pub fn into_frame(self) -> Frame {
        self.frame
    }

    /// Acknowledges the message (in `client` mode, also every earlier one of
    /// its subscription). Does not wait for the broker.
    pub fn ack(&self) -> Result<()> {
        self.acknowledge(Command::Ack, None)
    }

    /// Rejects the message (STOMP 1.1+). What the broker does with it is
    /// its own policy: RabbitMQ requeues, ActiveMQ dead-letters.
    pub fn nack(&self) -> Result<()> {
        self.acknowledge(Command::Nack, None)
    }

    pub(crate) fn acknowledge(
        &self,
        command: Command,
        transaction: Option<(&str, u64)>,
    ) -> Result<()> {
        if !self.ack_mode.needs_ack() {
            return Err(Error::CannotAck("its subscription is in auto mode"));
        }
        if command == Command::Nack
            && self.inner.state().info.as_ref().map(|i| i.version) == Some(Version::V1_0)
        {
            return Err(Error::CannotAck("NACK needs STOMP 1.1 or later"));
        }
        let epoch = self.inner.ready()?;
        if epoch != self.epoch {
            return Err(Error::CannotAck(
                "it came from an earlier connection (the broker redelivers it)",
            ));
        }
        if let Some((id, tx_epoch)) = transaction
            && tx_epoch != epoch
        {
            return Err(Error::TransactionLost(id.to_owned()));
        }
        self.inner.push(Cmd::Ack {
            message: self.frame.clone(),
            nack: command == Command::Nack,
            transaction: transaction.map(|(id, _)| id.to_owned()),
            epoch: self.epoch,
        })
    }
}

/// A transaction: sends and acks that take effect together at
/// [`commit`](Transaction::commit), or not at all ([`abort`](Transaction::abort),
/// or dropping it).
///
/// A transaction lives in one session: if the connection is lost, the
/// broker aborts it and every later call on it fails with
/// [`Error::TransactionLost`].
pub struct Transaction<'c> {
    client: &'c Client,
    id: String,
    epoch: u64,
    finished: bool,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).finish()
    }
}

impl Transaction<'_> {
    /// The transaction id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Checks that the transaction's session is the live one; returns its
    /// version.
    fn check(&self) -> Result<Version> {
        let (epoch, version) = self.client.inner.ready_session()?;
        if epoch != self.epoch {
            return Err(Error::TransactionLost(self.id.clone()));
        }
        Ok(version)
    }

    /// Sends `body` to `destination` within the transaction.
    pub fn send(&self, destination: &str, body: impl Into<Bytes>) -> Result<()> {
        self.send_frame(Frame::send(destination.to_owned()).body(body))
    }

    /// Sends with extra headers within the transaction.
    pub fn send_with(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<()> {
        self.send_frame(send_frame(destination, headers, body))
    }

    /// Sends a frame within the transaction (its `transaction` header is
    /// set). A frame the client refuses ([`Client::send_frame`] says which)
    /// fails this call and is not part of the transaction, which stays open.
    pub fn send_frame(&self, mut frame: Frame) -> Result<()> {
        self.client.inner.check_body(&frame)?;
        let version = self.check()?;
        frame.headers.set("transaction", self.id.clone());
        crate::core::check_encodable(&mut frame, version)?;
        self.client.inner.push(Cmd::Send {
            frame,
            epoch: Some(self.epoch),
            receipt: None,
        })
    }

    /// Acknowledges a message within the transaction.
    pub fn ack(&self, message: &Message) -> Result<()> {
        message.acknowledge(Command::Ack, Some((&self.id, self.epoch)))
    }

    /// Rejects a message within the transaction.
    pub fn nack(&self, message: &Message) -> Result<()> {
        message.acknowledge(Command::Nack, Some((&self.id, self.epoch)))
    }

    /// Commits, and waits for the broker's receipt (receipt timeout).
    ///
    /// When the COMMIT cannot be sent (an error pending for the program,
    /// no room in the outgoing queue in time), the transaction is aborted
    /// before this returns the error: it is never left open on the broker.
    /// Once the COMMIT is sent, an error (a timeout, the broker's ERROR)
    /// leaves the outcome to the broker.
    pub fn commit(mut self) -> Result<()> {
        self.finish(Frame::commit(self.id.clone()))
    }

    /// Aborts, and waits for the broker's receipt (receipt timeout).
    pub fn abort(mut self) -> Result<()> {
        self.finish(Frame::abort(self.id.clone()))
    }

    /// Sends COMMIT or ABORT and waits for its receipt. The transaction is
    /// finished only once the frame is queued: until then, the drop that
    /// follows any failure sends an ABORT (if its session is still live).
    fn finish(&mut self, frame: Frame) -> Result<()> {
        self.check()?;
        let inner = &self.client.inner;
        let timeout = inner.opts.receipt_timeout.min(crate::options::LONGEST);
        let (tx, rx) = crossbeam_channel::bounded(1);
        inner.push(Cmd::Send {
            frame,
            epoch: Some(self.epoch),
            receipt: Some(Waiter { tx, timeout }),
        })?;
        self.finished = true;
        wait_receipt(inner, &rx, timeout)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished && self.client.inner.live_epoch() == Some(self.epoch) {
            // Without waiting for room: a full queue must not leave the
            // transaction open on the broker (its BEGIN did wait).
            let _ = self.client.inner.push_forced(Cmd::Send {
                frame: Frame::abort(self.id.clone()),
                epoch: Some(self.epoch),
                receipt: None,
            });
        }
    }
}
