//! The sans-I/O protocol core of one client connection.
//!
//! [`Core`] knows the STOMP client's side of a session: the CONNECT /
//! CONNECTED handshake, heart-beat bookkeeping, the receipt table and the
//! subscription table (replayed after a reconnection). It takes bytes and
//! the current time as input and produces bytes to write, events and the
//! next deadline; it never touches a socket, a thread or the clock, so it is
//! unit-tested without any of them.
//!
//! How the driver calls it, per TCP connection:
//!
//! 1. [`Core::start`] once the socket is created (the connect timeout runs
//!    from here, covering the TCP connect and the handshake); write
//!    [`Core::output`] when the socket is writable.
//! 2. On every read, [`Core::handle_input`] with the bytes read and `now`.
//! 3. Whenever [`Core::poll_timeout`] passes, [`Core::handle_timeout`].
//! 4. After each of these, drain [`Core::poll_event`] and write [`Core::output`].
//! 5. When the socket fails or hits EOF, [`Core::connection_lost`].
//!
//! A [`Event::Closed`] says the session is over: the driver closes the
//! socket (and may reconnect, calling [`Core::start`] again: subscriptions
//! are kept and replayed once CONNECTED arrives).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use stomp_frame::{
    Command, Decoder, EncodeError, Encoder, Frame, HeartBeat, HeartBeatSchedule, Item, Limits,
    Version,
};

use crate::error::Error;

/// What the core needs to know about the connection it makes.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub(crate) login: Option<String>,
    pub(crate) passcode: Option<String>,
    pub(crate) versions: Vec<Version>,
    pub(crate) heart_beat: HeartBeat,
    pub(crate) grace: f64,
    pub(crate) connect_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) connect_headers: Vec<(String, String)>,
}

/// What the broker said in CONNECTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The negotiated protocol version.
    pub version: Version,
    /// The `server` header, if any.
    pub server: Option<String>,
    /// The `session` header, if any.
    pub session: Option<String>,
    /// The heart-beat intervals in use, negotiated in every version (none
    /// when CONNECTED has no `heart-beat` header).
    pub heart_beat: HeartBeatSchedule,
}

/// What happened, for the driver to act on.
#[derive(Debug)]
pub(crate) enum Event<R> {
    /// CONNECTED arrived; subscriptions were replayed into the output.
    Connected(SessionInfo),
    /// A MESSAGE for the subscription with this id (`None`: no subscription
    /// of ours matches it).
    Message(Option<String>, Frame),
    /// The answer to a frame sent with a receipt: RECEIPT (`Ok`), an ERROR
    /// naming it, a timeout or the loss of the connection.
    Receipt(R, Result<(), Error>),
    /// An ERROR that answers no receipt of ours.
    Error(Error),
    /// The session is over: close the socket. `Ok` after a DISCONNECT whose
    /// receipt arrived.
    Closed(Result<(), Error>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Handshake { deadline: Instant },
    Open,
    Closing,
    Closed,
}

#[derive(Debug)]
struct Pending<R> {
    token: R,
    deadline: Instant,
    timeout: Duration,
    disconnect: bool,
    /// The SUBSCRIBE this receipt confirms: forgotten if the broker refuses
    /// it, so that a reconnection does not replay it into the same ERROR.
    subscription: Option<String>,
}

/// The client side of a STOMP session, without I/O. `R` is the driver's
/// token for a receipt waiter, handed back in [`Event::Receipt`].
#[derive(Debug)]
pub(crate) struct Core<R> {
    cfg: CoreConfig,
    phase: Phase,
    decoder: Decoder,
    encoder: Encoder,
    out: BytesMut,
    last_rx: Instant,
    last_tx: Instant,
    schedule: HeartBeatSchedule,
    version: Version,
    next_receipt: u64,
    receipts: HashMap<String, Pending<R>>,
    deadlines: BinaryHeap<Reverse<(Instant, String)>>,
    subs: BTreeMap<String, Frame>,
    events: VecDeque<Event<R>>,
    epoch: u64,
    /// Whether the last thing that arrived was a heart-beat, not (part of)
    /// a frame (see `silence_deadline`).
    beat_last: bool,
}

impl<R> Core<R> {
    /// A core that has not connected yet.
    pub(crate) fn new(cfg: CoreConfig, now: Instant) -> Core<R> {
        let limits = cfg.limits;
        Core {
            cfg,
            phase: Phase::Idle,
            decoder: Decoder::with_limits(Version::V1_2, limits),
            encoder: Encoder::new(Version::V1_2),
            out: BytesMut::new(),
            last_rx: now,
            last_tx: now,
            schedule: HeartBeatSchedule::default(),
            version: Version::V1_2,
            next_receipt: 0,
            receipts: HashMap::new(),
            deadlines: BinaryHeap::new(),
            subs: BTreeMap::new(),
            events: VecDeque::new(),
            epoch: 0,
            beat_last: false,
        }
    }

    /// Begins a session on a new connection to a broker whose virtual host
    /// is `host`: writes CONNECT to the output.
    pub(crate) fn start(&mut self, host: &str, now: Instant) {
        self.decoder = Decoder::with_limits(Version::V1_2, self.cfg.limits);
        self.encoder = Encoder::new(Version::V1_2);
        self.out.clear();
        self.schedule = HeartBeatSchedule::default();
        self.last_rx = now;
        self.last_tx = now;
        self.phase = Phase::Handshake {
            deadline: now + self.cfg.connect_timeout,
        };
        let mut f = Frame::connect(host.to_owned(), &self.cfg.versions)
            .header_opt("login", self.cfg.login.clone())
            .header_opt("passcode", self.cfg.passcode.clone())
            .header("heart-beat", self.cfg.heart_beat.to_string());
        for (k, v) in &self.cfg.connect_headers {
            f = f.header(k.clone(), v.clone());
        }
        // CONNECT is never escaped; a header that cannot be written (a
        // newline in a passcode) fails the handshake at once.
        if let Err(e) = self.encoder.encode(&f, &mut self.out) {
            self.close(Err(Error::from(e)));
        }
    }

    /// Whether the session is open (CONNECTED received, not closing).
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the session is over (or never started).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Idle)
    }

    /// The negotiated version (1.2 before CONNECTED).
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// How many sessions have been opened so far: ack ids and transactions
    /// of one session mean nothing to the next.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes to write to the socket; the driver removes what it wrote.
    pub(crate) fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// The next event, if any.
    pub(crate) fn poll_event(&mut self) -> Option<Event<R>> {
        self.events.pop_front()
    }

    /// Bytes `buf` were read from the socket at `now`: decodes every
    /// complete frame, leaving a partial one in `buf`.
    pub(crate) fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) {
        if self.is_closed() {
            buf.clear();
            return;
        }
        self.last_rx = now;
        self.beat_last = false;
        // EOLs right after a frame's NUL are its trailer (ActiveMQ ends
        // every frame with one), not a beat.
        let mut framed = false;
        while !self.is_closed() {
            match self.decoder.decode(buf) {
                Ok(None) => break,
                Ok(Some(Item::Heartbeat)) => self.beat_last = !framed && buf.is_empty(),
                Ok(Some(Item::Frame(f))) => {
                    framed = true;
                    self.handle_frame(f);
                }
                Err(e) => {
                    self.close(Err(Error::Protocol(e.to_string())));
                    buf.clear();
                }
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame) {
        match (self.phase, frame.command) {
            (Phase::Handshake { .. }, Command::Connected) => self.on_connected(&frame),
            (Phase::Handshake { .. }, Command::Error) => {
                // A `version` header is a mismatch only when it lists none of
                // the versions offered: RabbitMQ adds `version:1.0,1.1,1.2`
                // to every handshake ERROR, a refused login included.
                let err = match frame.headers.get("version") {
                    Some(said)
                        if !said
                            .split(',')
                            .filter_map(|v| v.trim().parse::<Version>().ok())
                            .any(|v| self.cfg.versions.contains(&v)) =>
                    {
                        Error::NoCommonVersion {
                            offered: Version::list(&self.cfg.versions),
                            said: Some(said.to_owned()),
                        }
                    }
                    _ => Error::from_error_frame(&frame),
                };
                self.close(Err(err));
            }
            (Phase::Handshake { .. }, other) => {
                self.close(Err(Error::Protocol(format!(
                    "expected CONNECTED, got {other}"
                ))));
            }
            (_, Command::Message) => {
                let sub = self.route(&frame);
                self.events.push_back(Event::Message(sub, frame));
            }
            (_, Command::Receipt) => {
                let Some(id) = frame.receipt_id() else { return };
                if let Some(p) = self.receipts.remove(id) {
                    self.events.push_back(Event::Receipt(p.token, Ok(())));
                    if p.disconnect {
                        self.close(Ok(()));
                    }
                }
            }
            (_, Command::Error) => {
                // The spec has the broker close after ERROR: the session is
                // over either way (go-stomp PR #2: a client that carried on
                // was left in a mangled state).
                let err = Error::from_error_frame(&frame);
                let answered = frame.receipt_id().and_then(|id| self.receipts.remove(id));
                match answered {
                    Some(p) => {
                        if let Some(id) = &p.subscription {
                            self.subs.remove(id);
                        }
                        self.events
                            .push_back(Event::Receipt(p.token, Err(err.clone())))
                    }
                    // Brokers often leave out `receipt-id` (RabbitMQ does for an
                    // unknown destination): the calls waiting for a receipt are
                    // the ones it most likely answers, so they get it.
                    None if self.receipts.is_empty() => {
                        self.events.push_back(Event::Error(err.clone()))
                    }
                    None => {
                        self.close_with(Err(err.clone()), err);
                        return;
                    }
                }
                self.close(Err(err));
            }
            // Anything else from a broker (a second CONNECTED, a client
            // command) is ignored: it carries nothing we could act on.
            _ => {}
        }
    }

    fn on_connected(&mut self, frame: &Frame) {
        // A 1.0 broker sends no `version` header.
        let version = frame.version().unwrap_or(Version::V1_0);
        if !self.cfg.versions.contains(&version) {
            self.close(Err(Error::NoCommonVersion {
                offered: Version::list(&self.cfg.versions),
                said: frame.headers.get("version").map(str::to_owned),
            }));
            return;
        }
        self.version = version;
        self.decoder.set_version(version);
        self.encoder.set_version(version);
        // A missing or malformed heart-beat header is read as `0,0`: no
        // beats. Whatever the version: 1.0 has no heart-beats, but RabbitMQ
        // and ActiveMQ answer a 1.0 CONNECT's `heart-beat` and enforce it.
        let theirs = frame.heart_beat().unwrap_or(HeartBeat::NONE);
        self.schedule = self.cfg.heart_beat.negotiate(theirs);
        self.phase = Phase::Open;
        self.beat_last = false;
        self.epoch += 1;
        self.events.push_back(Event::Connected(SessionInfo {
            version,
            server: frame.server().map(str::to_owned),
            session: frame.session().map(str::to_owned),
            heart_beat: self.schedule,
        }));
        let subs: Vec<Frame> = self.subs.values().cloned().collect();
        for f in subs {
            if let Err(e) = self.encoder.encode(&f, &mut self.out) {
                self.events.push_back(Event::Error(Error::from(e)));
            }
        }
    }

    /// The id of the subscription a MESSAGE belongs to: its `subscription`
    /// header, or (1.0 brokers may omit it) the one subscription to its
    /// destination.
    fn route(&self, frame: &Frame) -> Option<String> {
        if let Some(id) = frame.subscription() {
            return self.subs.contains_key(id).then(|| id.to_owned());
        }
        let dest = frame.destination()?;
        let mut matching = self
            .subs
            .iter()
            .filter(|(_, f)| f.destination() == Some(dest));
        match (matching.next(), matching.next()) {
            (Some((id, _)), None) => Some(id.clone()),
            _ => None,
        }
    }

    /// Writes a frame. Fails with [`Error::NotConnected`] unless the session
    /// is open, and with [`Error::Encode`] when the negotiated version cannot
    /// carry one of its headers.
    pub(crate) fn send(&mut self, frame: &Frame, now: Instant) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::NotConnected);
        }
        if self.version == Version::V1_1 {
            refuse_cr(frame)?;
        }
        self.encoder.encode(frame, &mut self.out)?;
        self.last_tx = now;
        Ok(())
    }

    /// Writes a frame with a `receipt` header; `token` comes back in an
    /// [`Event::Receipt`] when it is answered or after `timeout`.
    pub(crate) fn send_with_receipt(
        &mut self,
        frame: Frame,
        token: R,
        timeout: Duration,
        now: Instant,
    ) -> Result<(), (R, Error)> {
        self.next_receipt += 1;
        let id = format!("rcpt-{}", self.next_receipt);
        let mut frame = frame;
        frame.headers.set("receipt", id.clone());
        if let Err(e) = self.send(&frame, now) {
            return Err((token, e));
        }
        self.expect_receipt(id, token, timeout, now, false);
        Ok(())
    }

    fn expect_receipt(
        &mut self,
        id: String,
        token: R,
        timeout: Duration,
        now: Instant,
        disconnect: bool,
    ) {
        let deadline = now + timeout;
        self.deadlines.push(Reverse((deadline, id.clone())));
        self.receipts.insert(
            id,
            Pending {
                token,
                deadline,
                timeout,
                disconnect,
                subscription: None,
            },
        );
    }

    /// Records a subscription (replayed on every new session) and writes its
    /// SUBSCRIBE, with a receipt when `token` is given.
    pub(crate) fn subscribe(
        &mut self,
        frame: Frame,
        token: Option<(R, Duration)>,
        now: Instant,
    ) -> Result<(), (Option<R>, Error)> {
        let Some(id) = frame.id().map(str::to_owned) else {
            return Err((
                token.map(|t| t.0),
                Error::InvalidOption("SUBSCRIBE without id".into()),
            ));
        };
        let result = match token {
            Some((t, timeout)) => {
                let receipt = self.next_receipt + 1;
                let r = self
                    .send_with_receipt(frame.clone(), t, timeout, now)
                    .map_err(|(t, e)| (Some(t), e));
                if let Some(p) = self.receipts.get_mut(&format!("rcpt-{receipt}")) {
                    p.subscription = Some(id.clone());
                }
                r
            }
            None => self.send(&frame, now).map_err(|e| (None, e)),
        };
        if result.is_ok() {
            self.subs.insert(id, frame);
        }
        result
    }

    /// How many subscriptions are recorded (replayed on a new session).
    pub(crate) fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// Forgets a subscription and writes its UNSUBSCRIBE (when open).
    pub(crate) fn unsubscribe(
        &mut self,
        id: &str,
        token: Option<(R, Duration)>,
        now: Instant,
    ) -> Result<(), (Option<R>, Error)> {
        let known = self.subs.remove(id).is_some();
        if !known && token.is_none() {
            // A clean-up of a subscription this session never sent.
            return Ok(());
        }
        let frame = Frame::unsubscribe(id.to_owned());
        match token {
            Some((t, timeout)) => self
                .send_with_receipt(frame, t, timeout, now)
                .map_err(|(t, e)| (Some(t), e)),
            None => self.send(&frame, now).map_err(|e| (None, e)),
        }
    }

    /// Writes DISCONNECT with a receipt; the session closes when it arrives
    /// or after `timeout` (a broker that never answers cannot hold us).
    pub(crate) fn disconnect(
        &mut self,
        token: R,
        timeout: Duration,
        now: Instant,
    ) -> Result<(), (R, Error)> {
        self.next_receipt += 1;
        let id = format!("rcpt-{}", self.next_receipt);
        let frame = Frame::disconnect().header("receipt", id.clone());
        if let Err(e) = self.send(&frame, now) {
            return Err((token, e));
        }
        self.expect_receipt(id, token, timeout, now, true);
        self.phase = Phase::Closing;
        Ok(())
    }

    /// The connection failed or reached EOF: the session is over.
    pub(crate) fn connection_lost(&mut self, error: Error) {
        if !self.is_closed() {
            self.close(Err(error));
        }
    }

    fn close(&mut self, result: Result<(), Error>) {
        let lost = match &result {
            Ok(()) => Error::lost("the client disconnected"),
            Err(e @ Error::ConnectionLost { .. }) => e.clone(),
            Err(e) => Error::lost(e.to_string()),
        };
        self.close_with(result, lost);
    }

    /// Ends the session; receipts still pending fail with `lost`.
    fn close_with(&mut self, result: Result<(), Error>, lost: Error) {
        if self.is_closed() {
            return;
        }
        let mut pending: Vec<_> = self.receipts.drain().map(|(_, p)| p).collect();
        pending.sort_by_key(|p| p.deadline);
        for p in pending {
            if let (Some(id), Error::Broker { .. }) = (&p.subscription, &lost) {
                self.subs.remove(id);
            }
            self.events
                .push_back(Event::Receipt(p.token, Err(lost.clone())));
        }
        self.deadlines.clear();
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed(result));
    }

    /// When [`Core::handle_timeout`] must be called next.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        match self.phase {
            Phase::Idle | Phase::Closed => return None,
            Phase::Handshake { deadline } => consider(deadline),
            Phase::Open | Phase::Closing => {
                if let Some(t) = self.next_beat() {
                    consider(t);
                }
                if let Some(t) = self.silence_deadline() {
                    consider(t);
                }
            }
        }
        // Drop heap entries whose receipt was answered.
        while let Some(Reverse((t, id))) = self.deadlines.peek() {
            match self.receipts.get(id) {
                Some(p) if p.deadline == *t => {
                    consider(*t);
                    break;
                }
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        next
    }

    /// When we must send something: a little before the negotiated interval,
    /// so that scheduling jitter never makes us late at the broker.
    fn next_beat(&self) -> Option<Instant> {
        let every = self.schedule.send?;
        Some(self.last_tx + every - every / 10)
    }

    /// When the broker counts as lost if nothing has arrived: the
    /// negotiated interval times the grace factor after a heart-beat, plus
    /// one interval after a frame. ActiveMQ checks every interval whether it
    /// wrote anything during the last one and beats only if not, so its
    /// first beat after a frame (CONNECTED, a RECEIPT, a MESSAGE) comes up
    /// to two intervals later (seen with 5.17: CONNECTED and a RECEIPT at
    /// 0 s, beats at 20 s and 30 s with 10 s agreed; stomp.py #219 and PR
    /// #78).
    fn silence_deadline(&self) -> Option<Instant> {
        let every = self.schedule.receive?;
        let factor = if self.beat_last {
            self.cfg.grace
        } else {
            self.cfg.grace + 1.0
        };
        Some(self.last_rx + every.mul_f64(factor))
    }

    /// Runs the timers due at `now`: heart-beats to send, a silent broker,
    /// a handshake or receipts that took too long.
    /// Data from the broker is waiting unread (the program is behind): it
    /// counts as hearing from the broker.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle | Phase::Closed => return,
            Phase::Handshake { deadline } => {
                if now >= deadline {
                    self.close(Err(Error::Timeout {
                        what: "CONNECTED",
                        after: self.cfg.connect_timeout,
                    }));
                    return;
                }
            }
            Phase::Open | Phase::Closing => {
                if self.silence_deadline().is_some_and(|t| now >= t) {
                    let ms = now.saturating_duration_since(self.last_rx).as_millis();
                    self.close(Err(Error::lost(format!(
                        "nothing from the broker for {ms} ms (heart-beat expected every {} ms)",
                        self.schedule.receive.unwrap_or_default().as_millis()
                    ))));
                    return;
                }
                if self.next_beat().is_some_and(|t| now >= t) {
                    self.out.put_u8(b'\n');
                    self.last_tx = now;
                }
            }
        }
        while let Some(Reverse((t, _))) = self.deadlines.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, id))) = self.deadlines.pop() else {
                break;
            };
            if self.receipts.get(&id).is_some_and(|p| p.deadline == t) {
                let p = self.receipts.remove(&id).expect("checked above");
                let what = if p.disconnect {
                    "DISCONNECT receipt"
                } else {
                    "RECEIPT"
                };
                let err = Error::Timeout {
                    what,
                    after: p.timeout,
                };
                self.events
                    .push_back(Event::Receipt(p.token, Err(err.clone())));
                if p.disconnect {
                    self.close(Err(err));
                    return;
                }
            }
        }
    }
}

/// STOMP 1.1 has no escape for CR, and a 1.1 peer may take a raw one for
/// a line end (RabbitMQ closes the connection): the encoder of `stomp-frame`
/// writes it as is, so it is refused here, as a newline is in 1.0.
/// Checks that [`Core::send`] can write `frame` in `version`, without
/// writing it: for the calling thread, so that a frame the session cannot
/// carry fails the call that made it instead of a later one.
///
/// The rules are the encoder's own (it is run on the frame with its body
/// set aside, so that a large body is not copied) plus the 1.1 rule on CRs.
/// The frame comes back unchanged.
pub(crate) fn check_encodable(frame: &mut Frame, version: Version) -> Result<(), EncodeError> {
    if version == Version::V1_1 {
        refuse_cr(frame)?;
    }
    let body = std::mem::take(&mut frame.body);
    if !body.is_empty() {
        // A byte stands in for it: the encoder checks that the command
        // may carry a body at all.
        frame.body = Bytes::from_static(b"-");
    }
    let result = Encoder::new(version).encode(frame, &mut BytesMut::new());
    frame.body = body;
    result
}

fn refuse_cr(frame: &Frame) -> Result<(), EncodeError> {
    match frame
        .headers
        .iter()
        .find(|h| h.name().contains('\r') || h.value().contains('\r'))
    {
        Some(h) => Err(EncodeError::Unencodable {
            header: h.name().to_owned(),
            command: frame.command,
            version: Version::V1_1,
            reason: "a carriage return cannot be escaped in 1.1",
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stomp_frame::AckMode;

    fn cfg() -> CoreConfig {
        CoreConfig {
            login: Some("guest".into()),
            passcode: Some("pa:ss\\c".into()),
            versions: Version::ALL.to_vec(),
            heart_beat: HeartBeat::new(1000, 1000),
            grace: 1.5,
            connect_timeout: Duration::from_secs(5),
            limits: Limits::DEFAULT,
            connect_headers: vec![("client-id".into(), "c1".into())],
        }
    }

    /// Decodes everything the core wrote.
    fn written(core: &mut Core<u32>, version: Version) -> Vec<Frame> {
        let mut dec = Decoder::new(version);
        let mut out = Vec::new();
        while let Some(item) = dec.decode(core.output()).unwrap() {
            if let Item::Frame(f) = item {
                out.push(f);
            }
        }
        assert!(core.output().is_empty(), "partial frame left");
        out
    }

    fn feed(core: &mut Core<u32>, frame: &Frame, version: Version, now: Instant) {
        let mut buf = BytesMut::new();
        Encoder::new(version).encode(frame, &mut buf).unwrap();
        core.handle_input(&mut buf, now);
    }

    fn events(core: &mut Core<u32>) -> Vec<Event<u32>> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    fn connected(now: Instant, hb: &str, version: Version) -> Core<u32> {
        let mut core = Core::new(cfg(), now);
        core.start("/", now);
        written(&mut core, Version::V1_2);
        let f = Frame::connected(version)
            .header("heart-beat", hb)
            .header("server", "x/1");
        feed(&mut core, &f, version, now);
        let ev = events(&mut core);
        assert!(matches!(ev[..], [Event::Connected(_)]), "{ev:?}");
        core
    }

    #[test]
    fn connect_frame_has_everything_verbatim() {
        let now = Instant::now();
        let mut core: Core<u32> = Core::new(cfg(), now);
        core.start("/", now);
        let f = written(&mut core, Version::V1_2).remove(0);
        assert_eq!(f.command, Command::Connect);
        assert_eq!(f.host(), Some("/"));
        assert_eq!(f.accept_version(), Some("1.0,1.1,1.2"));
        assert_eq!(f.passcode(), Some("pa:ss\\c"));
        assert_eq!(f.headers.get("heart-beat"), Some("1000,1000"));
        assert_eq!(f.headers.get("client-id"), Some("c1"));
    }

    #[test]
    fn handshake_negotiates_version_and_heart_beats() {
        let now = Instant::now();
        let mut core: Core<u32> = Core::new(cfg(), now);
        core.start("/", now);
        let f = Frame::connected(Version::V1_1)
            .header("heart-beat", "2000,500")
            .header("session", "s-1");
        feed(&mut core, &f, Version::V1_1, now);
        let Some(Event::Connected(info)) = core.poll_event() else {
            panic!()
        };
        assert_eq!(info.version, Version::V1_1);
        assert_eq!(info.session.as_deref(), Some("s-1"));
        assert_eq!(info.heart_beat.send, Some(Duration::from_millis(1000)));
        assert_eq!(info.heart_beat.receive, Some(Duration::from_millis(2000)));
        assert!(core.is_open());
        assert_eq!(core.epoch(), 1);
    }

    #[test]
    fn connected_without_version_is_1_0_and_rejected_if_not_offered() {
        let now = Instant::now();
        let mut c = cfg();
        c.versions = vec![Version::V1_2];
        let mut core: Core<u32> = Core::new(c, now);
        core.start("/", now);
        feed(
            &mut core,
            &Frame::new(Command::Connected),
            Version::V1_0,
            now,
        );
        let ev = events(&mut core);
        assert!(
            matches!(&ev[..], [Event::Closed(Err(Error::NoCommonVersion { .. }))]),
            "{ev:?}"
        );
    }

    #[test]
    fn error_in_handshake_with_version_header() {
        let now = Instant::now();
        let mut core: Core<u32> = Core::new(cfg(), now);
        core.start("/", now);
        feed(
            &mut core,
            &Frame::error("no version").header("version", "2.0"),
            Version::V1_2,
            now,
        );
        let ev = events(&mut core);
        match &ev[..] {
            [Event::Closed(Err(e @ Error::NoCommonVersion { said, .. }))] => {
                assert_eq!(said.as_deref(), Some("2.0"));
                assert!(e.to_string().ends_with("it answered version 2.0"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let mut core: Core<u32> = Core::new(cfg(), now);
        core.start("/", now);
        feed(&mut core, &Frame::error("bad login"), Version::V1_2, now);
        let ev = events(&mut core);
        match &ev[..] {
            [Event::Closed(Err(Error::Broker { message, .. }))] => assert_eq!(message, "bad login"),
            other => panic!("{other:?}"),
        }
    }

    /// RabbitMQ refuses a login with `version:1.0,1.1,1.2` in its ERROR: that
    /// is the broker's error, not a version mismatch.
    #[test]
    fn error_in_handshake_listing_an_offered_version_is_the_brokers() {
        let now = Instant::now();
        for (offered, said, mismatch) in [
            (&Version::ALL[..], "1.0,1.1,1.2", false),
            (&[Version::V1_0][..], "1.0,1.1,1.2", false),
            (&[Version::V1_2][..], "1.0, 1.2", false),
            (&[Version::V1_2][..], "1.0,1.1", true),
            (&[Version::V1_2][..], "1.0,2.0", true),
            (&[Version::V1_2][..], "junk", true),
            (&[Version::V1_2][..], "", true),
        ] {
            let mut c = cfg();
            c.versions = offered.to_vec();
            let mut core: Core<u32> = Core::new(c, now);
            core.start("/", now);
            let refusal = Frame::error("Bad CONNECT")
                .header("version", said)
                .body("Access refused for user 'guest'");
            feed(&mut core, &refusal, Version::V1_2, now);
            let ev = events(&mut core);
            match (&ev[..], mismatch) {
                ([Event::Closed(Err(Error::NoCommonVersion { said: s, .. }))], true) => {
                    assert_eq!(s.as_deref(), Some(said))
                }
                ([Event::Closed(Err(Error::Broker { message, body, .. }))], false) => {
                    assert_eq!(message, "Bad CONNECT");
                    assert_eq!(body, "Access refused for user 'guest'");
                }
                other => panic!("{said:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn handshake_times_out() {
        let now = Instant::now();
        let mut core: Core<u32> = Core::new(cfg(), now);
        core.start("/", now);
        assert_eq!(core.poll_timeout(), Some(now + Duration::from_secs(5)));
        core.handle_timeout(now + Duration::from_secs(4));
        assert!(core.poll_event().is_none());
        core.handle_timeout(now + Duration::from_secs(5));
        assert!(matches!(
            core.poll_event(),
            Some(Event::Closed(Err(Error::Timeout {
                what: "CONNECTED",
                ..
            })))
        ));
        assert_eq!(core.poll_timeout(), None);
    }

    #[test]
    fn after_a_frame_silence_counts_one_interval_longer_than_after_a_beat() {
        // ActiveMQ beats only when it wrote nothing during the last
        // interval: after a RECEIPT, its next beat may be two intervals away.
        let t0 = Instant::now();
        let mut core = connected(t0, "1000,0", Version::V1_2);
        let ms = |n| t0 + Duration::from_millis(n);
        core.handle_input(
            &mut BytesMut::from(&b"RECEIPT\nreceipt-id:x\n\n\0\n"[..]),
            ms(100),
        );
        assert_eq!(core.poll_timeout(), Some(ms(2600)));
        core.handle_timeout(ms(2000));
        assert!(core.is_open());
        core.handle_input(&mut BytesMut::from(&b"\n"[..]), ms(2050));
        assert_eq!(core.poll_timeout(), Some(ms(3550)));
        // A frame cut in two counts as a frame, not a beat.
        core.handle_input(&mut BytesMut::from(&b"\nRECEI"[..]), ms(3000));
        assert_eq!(core.poll_timeout(), Some(ms(5500)));
    }

    #[test]
    fn heart_beats_sent_early_and_silence_detected_with_grace() {
        let t0 = Instant::now();
        let mut core = connected(t0, "1000,1000", Version::V1_2);
        let ms = |n| t0 + Duration::from_millis(n);
        let beat = |core: &mut Core<u32>, at| {
            core.handle_timeout(ms(at));
            assert_eq!(&core.output()[..], b"\n", "beat at {at}");
            core.output().clear();
        };
        // Beats are due 10% early: every 900 ms.
        assert_eq!(core.poll_timeout(), Some(ms(900)));
        beat(&mut core, 900);
        assert_eq!(core.poll_timeout(), Some(ms(1800)));
        beat(&mut core, 1800);
        // Before anything arrives after CONNECTED, silence counts only from
        // 2500 ms (interval x (1.5 + 1)): ActiveMQ's first beat is late.
        assert_eq!(core.poll_timeout(), Some(ms(2500)));
        core.handle_timeout(ms(2400));
        assert!(core.is_open());
        // Any byte counts as liveness; from now on, interval x 1.5.
        core.handle_input(&mut BytesMut::from(&b"\n"[..]), ms(2400));
        assert_eq!(core.poll_timeout(), Some(ms(2700)));
        beat(&mut core, 2700);
        beat(&mut core, 3600);
        assert_eq!(core.poll_timeout(), Some(ms(3900)));
        core.handle_timeout(ms(3899));
        assert!(core.poll_event().is_none());
        core.handle_timeout(ms(3900));
        match core.poll_event() {
            Some(Event::Closed(Err(Error::ConnectionLost { reason }))) => {
                assert!(reason.contains("heart-beat"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_heart_beats_when_broker_declines() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        assert_eq!(core.poll_timeout(), None);
        let mut core = Core::new(cfg(), t0);
        core.start("/", t0);
        feed(
            &mut core,
            &Frame::new(Command::Connected),
            Version::V1_0,
            t0,
        );
        assert!(matches!(events(&mut core)[..], [Event::Connected(_)]));
        assert_eq!(core.poll_timeout(), None, "no heart-beat header: no beats");
    }

    /// RabbitMQ and ActiveMQ answer a 1.0 CONNECT's `heart-beat` header and
    /// close a connection that then stays silent: 1.0 beats like 1.1+.
    #[test]
    fn heart_beats_in_1_0_when_the_broker_answers_them() {
        let t0 = Instant::now();
        let mut core = connected(t0, "1000,1000", Version::V1_0);
        assert_eq!(core.version(), Version::V1_0);
        assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(900)));
        core.handle_timeout(t0 + Duration::from_millis(900));
        assert_eq!(&core.output()[..], b"\n");
    }

    #[test]
    fn receipts_matched_timed_out_and_failed_on_loss() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        let s = Duration::from_secs(1);
        core.send_with_receipt(Frame::send("/queue/a"), 1, s, t0)
            .unwrap();
        core.send_with_receipt(Frame::send("/queue/a"), 2, s * 2, t0)
            .unwrap();
        core.send_with_receipt(Frame::send("/queue/a"), 3, s * 3, t0)
            .unwrap();
        let sent = written(&mut core, Version::V1_2);
        let ids: Vec<_> = sent
            .iter()
            .map(|f| f.receipt_request().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 3);
        feed(
            &mut core,
            &Frame::receipt(ids[1].clone()),
            Version::V1_2,
            t0,
        );
        assert!(matches!(core.poll_event(), Some(Event::Receipt(2, Ok(())))));
        // An unknown receipt id is ignored.
        feed(&mut core, &Frame::receipt("nope"), Version::V1_2, t0);
        assert!(core.poll_event().is_none());
        assert_eq!(core.poll_timeout(), Some(t0 + s));
        core.handle_timeout(t0 + s);
        assert!(matches!(
            core.poll_event(),
            Some(Event::Receipt(
                1,
                Err(Error::Timeout {
                    what: "RECEIPT",
                    ..
                })
            ))
        ));
        core.connection_lost(Error::lost("eof"));
        let ev = events(&mut core);
        assert!(
            matches!(
                &ev[..],
                [
                    Event::Receipt(3, Err(Error::ConnectionLost { .. })),
                    Event::Closed(Err(_))
                ]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn error_goes_to_its_receipt_and_ends_the_session() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        let s = Duration::from_secs(1);
        core.send_with_receipt(Frame::send("/queue/a"), 1, s, t0)
            .unwrap();
        core.send_with_receipt(Frame::send("/queue/b"), 2, s, t0)
            .unwrap();
        let sent = written(&mut core, Version::V1_2);
        let id = sent[1].receipt_request().unwrap().to_owned();
        let err = Frame::error("forbidden")
            .header("receipt-id", id)
            .body("no /queue/b for you");
        feed(&mut core, &err, Version::V1_2, t0);
        let ev = events(&mut core);
        match &ev[..] {
            [
                Event::Receipt(2, Err(Error::Broker { message, body, .. })),
                Event::Receipt(1, Err(Error::ConnectionLost { .. })),
                Event::Closed(Err(_)),
            ] => {
                assert_eq!(message, "forbidden");
                assert_eq!(body, "no /queue/b for you");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unmatched_error_is_an_error_event() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        feed(&mut core, &Frame::error("boom"), Version::V1_2, t0);
        let ev = events(&mut core);
        assert!(
            matches!(
                &ev[..],
                [Event::Error(Error::Broker { .. }), Event::Closed(Err(_))]
            ),
            "{ev:?}"
        );
        // With calls waiting for receipts, they get the ERROR instead.
        let mut core = connected(t0, "0,0", Version::V1_2);
        let s = Duration::from_secs(1);
        core.send_with_receipt(Frame::send("/nope/a"), 7, s, t0)
            .unwrap();
        feed(
            &mut core,
            &Frame::error("unknown destination"),
            Version::V1_2,
            t0,
        );
        let ev = events(&mut core);
        assert!(
            matches!(
                &ev[..],
                [
                    Event::Receipt(7, Err(Error::Broker { .. })),
                    Event::Closed(Err(_))
                ]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn disconnect_waits_for_receipt_or_times_out() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        core.disconnect(9, Duration::from_secs(2), t0).unwrap();
        let f = written(&mut core, Version::V1_2).remove(0);
        assert_eq!(f.command, Command::Disconnect);
        feed(
            &mut core,
            &Frame::receipt(f.receipt_request().unwrap().to_owned()),
            Version::V1_2,
            t0,
        );
        let ev = events(&mut core);
        assert!(
            matches!(&ev[..], [Event::Receipt(9, Ok(())), Event::Closed(Ok(()))]),
            "{ev:?}"
        );

        let mut core = connected(t0, "0,0", Version::V1_2);
        core.disconnect(9, Duration::from_secs(2), t0).unwrap();
        assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        core.handle_timeout(t0 + Duration::from_secs(2));
        let ev = events(&mut core);
        assert!(
            matches!(
                &ev[..],
                [
                    Event::Receipt(9, Err(Error::Timeout { .. })),
                    Event::Closed(Err(_))
                ]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn refused_subscription_is_not_replayed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        for with_receipt_id in [true, false] {
            let mut core = connected(t0, "0,0", Version::V1_2);
            core.subscribe(Frame::subscribe("ok", "/queue/a", AckMode::Auto), None, t0)
                .unwrap();
            core.subscribe(
                Frame::subscribe("bad", "/nope/b", AckMode::Auto),
                Some((5, s)),
                t0,
            )
            .unwrap();
            let sent = written(&mut core, Version::V1_2);
            let mut err = Frame::error("unknown destination");
            if with_receipt_id {
                err = err.header("receipt-id", sent[1].receipt_request().unwrap().to_owned());
            }
            feed(&mut core, &err, Version::V1_2, t0);
            let ev = events(&mut core);
            assert!(
                matches!(ev[0], Event::Receipt(5, Err(Error::Broker { .. }))),
                "{ev:?}"
            );
            assert_eq!(core.subscription_count(), 1);
            core.start("/", t0);
            written(&mut core, Version::V1_2);
            feed(
                &mut core,
                &Frame::connected(Version::V1_2),
                Version::V1_2,
                t0,
            );
            let replay = written(&mut core, Version::V1_2);
            assert_eq!(replay.len(), 1);
            assert_eq!(replay[0].id(), Some("ok"));
        }
    }

    #[test]
    fn subscriptions_are_replayed_after_reconnect_and_routed() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        core.subscribe(
            Frame::subscribe("s1", "/queue/a", AckMode::Client),
            None,
            t0,
        )
        .unwrap();
        core.subscribe(Frame::subscribe("s2", "/topic/b", AckMode::Auto), None, t0)
            .unwrap();
        core.unsubscribe("s2", None, t0).unwrap();
        written(&mut core, Version::V1_2);
        core.connection_lost(Error::lost("eof"));
        events(&mut core);
        assert!(core.send(&Frame::send("/queue/a"), t0).is_err());
        core.start("/", t0);
        written(&mut core, Version::V1_2);
        feed(
            &mut core,
            &Frame::connected(Version::V1_2),
            Version::V1_2,
            t0,
        );
        assert_eq!(core.epoch(), 2);
        let replay = written(&mut core, Version::V1_2);
        assert_eq!(replay.len(), 1);
        assert_eq!(
            (replay[0].id(), replay[0].destination()),
            (Some("s1"), Some("/queue/a"))
        );
        assert_eq!(replay[0].ack_mode(), Ok(AckMode::Client));
        events(&mut core);
        feed(
            &mut core,
            &Frame::message("/queue/a", "m1", "s1"),
            Version::V1_2,
            t0,
        );
        assert!(matches!(core.poll_event(), Some(Event::Message(Some(id), _)) if id == "s1"));
        // 1.0 brokers may leave out `subscription`: route by destination.
        let mut m = Frame::message("/queue/a", "m2", "x");
        m.headers.remove("subscription");
        feed(&mut core, &m, Version::V1_2, t0);
        assert!(matches!(core.poll_event(), Some(Event::Message(Some(id), _)) if id == "s1"));
        feed(
            &mut core,
            &Frame::message("/queue/a", "m3", "zz"),
            Version::V1_2,
            t0,
        );
        assert!(matches!(core.poll_event(), Some(Event::Message(None, _))));
    }

    #[test]
    fn garbage_from_broker_is_a_protocol_error() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_2);
        core.handle_input(&mut BytesMut::from(&b"BOGUS\n\n\0"[..]), t0);
        assert!(matches!(
            core.poll_event(),
            Some(Event::Closed(Err(Error::Protocol(_))))
        ));
    }

    #[test]
    fn escaping_follows_negotiated_version() {
        let t0 = Instant::now();
        let mut core = connected(t0, "0,0", Version::V1_0);
        let f = Frame::send("/queue/a").header("k", "line\nbreak");
        assert!(matches!(core.send(&f, t0), Err(Error::Encode(_))));
        let mut core = connected(t0, "0,0", Version::V1_1);
        core.send(&f, t0).unwrap();
        let got = written(&mut core, Version::V1_1).remove(0);
        assert_eq!(got.headers.get("k"), Some("line\nbreak"));
    }

    /// 1.1 cannot escape a CR (RabbitMQ closes the connection on a raw one):
    /// refused before anything is written; 1.2 escapes it as `\r`.
    #[test]
    fn carriage_return_is_refused_in_1_1() {
        let t0 = Instant::now();
        for (name, value) in [("k", "a\rb"), ("k\r", "v")] {
            let f = Frame::send("/queue/a").header(name, value);
            let mut core = connected(t0, "0,0", Version::V1_1);
            match core.send(&f, t0) {
                Err(Error::Encode(EncodeError::Unencodable {
                    version: Version::V1_1,
                    ..
                })) => {}
                other => panic!("{other:?}"),
            }
            assert!(core.output().is_empty());
            let mut core = connected(t0, "0,0", Version::V1_2);
            core.send(&f, t0).unwrap();
            let got = written(&mut core, Version::V1_2).remove(0);
            assert_eq!(got.headers.get(name), Some(value));
        }
    }

    /// The calling thread's check agrees with what `send` does, frame for
    /// frame and version for version, and leaves the frame as it was.
    #[test]
    fn check_encodable_agrees_with_send() {
        let t0 = Instant::now();
        let body = Bytes::from(vec![b'b'; 100_000]);
        let frames = [
            Frame::send("/queue/a")
                .header("k", "plain")
                .body(body.clone()),
            Frame::send("/queue/a")
                .header("k", "line\nbreak")
                .body(body.clone()),
            Frame::send("/queue/a").header("k:c", "v"),
            Frame::send("/queue/a").header("k", "a\rb"),
            Frame::send("/queue/a").header("k\r", "v"),
            Frame::send("/queue/a").header("k", "tail\r"),
            Frame::send("/queue/a").header(" k", "v"),
            Frame::send("/queue/a").header("", "v"),
            Frame::send("/queue/a").header("k", "back\\slash:colon"),
            Frame::new(Command::Nack).header("id", "1"),
            Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("destination", "/queue/a")
                .body("x"),
            Frame::new(Command::Begin)
                .header("transaction", "t")
                .body("x"),
        ];
        for version in Version::ALL {
            for frame in &frames {
                let mut core = connected(t0, "0,0", version);
                let sent = core.send(frame, t0);
                let mut checked = frame.clone();
                let check = check_encodable(&mut checked, version);
                assert_eq!(&checked, frame, "{version}: the frame changed");
                match (&sent, &check) {
                    (Ok(()), Ok(())) => {}
                    (Err(Error::Encode(a)), Err(b)) => assert_eq!(a, b, "{version}: {frame:?}"),
                    _ => panic!("{version}: {frame:?}: send {sent:?}, check {check:?}"),
                }
            }
        }
        // What the audit found: 1.0 cannot write a line feed in a value.
        let mut f = Frame::send("/queue/a").header("x", "a\nb");
        assert!(matches!(
            check_encodable(&mut f, Version::V1_0),
            Err(EncodeError::Unencodable { ref header, .. }) if header == "x"
        ));
    }
}
