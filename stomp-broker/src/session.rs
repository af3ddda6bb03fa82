//! Per-connection state: handshake, subscriptions, unacknowledged
//! messages, transactions, heart-beats and the frames owed to the peer.
//!
//! A session never touches a socket or a clock: the
//! [`Engine`](crate::engine::Engine) feeds it frames and `now`, and the
//! driver takes its output with [`Engine::pop_output`](crate::engine::Engine::pop_output).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use stomp_frame::{AckMode, ByteString, Decoder, Frame, Version};

use crate::router::Message;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for CONNECT or STOMP.
    Handshake,
    /// Connected.
    Open,
    /// An ERROR or the answer to DISCONNECT is owed; nothing more is read.
    Closing,
}

/// Something owed to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A frame.
    Frame(Frame),
    /// A heart-beat (one EOL).
    Heartbeat,
    /// A MESSAGE to an auto-ack subscriber of a queue kept on a durable
    /// store: the message stays in the store until the frame is written,
    /// so a crash before that brings it back instead of losing it. Report
    /// it with [`Engine::auto_acked`](crate::engine::Engine::auto_acked) once
    /// the socket took its last byte (or the connection closed before).
    Consumed {
        /// The frame.
        frame: Frame,
        /// The queue it was consumed from.
        queue: ByteString,
        /// Its store sequence number.
        seq: u64,
    },
}

/// A message handed to a client-mode subscriber and not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Unacked {
    /// The number in its `ack` id.
    pub(crate) ack: u64,
    /// The message.
    pub(crate) msg: Message,
}

/// One SUBSCRIBE.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The client's id for it.
    pub(crate) id: ByteString,
    /// The destination.
    pub(crate) dest: ByteString,
    /// Whether the destination is a topic.
    pub(crate) topic: bool,
    /// The ack mode.
    pub(crate) ack: AckMode,
    /// Most unacknowledged messages at once (client modes).
    pub(crate) window: usize,
    /// Delivered, not yet acknowledged, oldest first.
    pub(crate) unacked: VecDeque<Unacked>,
    /// Topic messages that came while the window was full (client modes),
    /// oldest first: delivered as acknowledgements open it.
    pub(crate) pending: VecDeque<Message>,
}

/// An ACK or NACK inside a transaction, applied at COMMIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckOp {
    /// The subscription's slot.
    pub(crate) slot: usize,
    /// The ack number it names.
    pub(crate) ack: u64,
    /// NACK rather than ACK.
    pub(crate) nack: bool,
}

/// An open transaction.
#[derive(Debug)]
pub(crate) struct Tx {
    /// The client's id for it.
    pub(crate) id: ByteString,
    /// Messages sent in it, routed at COMMIT.
    pub(crate) sends: Vec<Message>,
    /// Their sizes, summed.
    pub(crate) bytes: usize,
    /// Acknowledgements in it, applied at COMMIT.
    pub(crate) acks: Vec<AckOp>,
    /// Queue messages its ACKs name whose subscription went away before
    /// COMMIT (UNSUBSCRIBE): still in flight, acknowledged at COMMIT,
    /// back in their queue at ABORT.
    pub(crate) held: Vec<Message>,
}

/// Kinds of timers a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// Time to send a heart-beat if nothing else was sent.
    SendBeat = 0,
    /// Time to check the peer was heard from.
    ReceiveCheck = 1,
    /// A closing connection that does not drain is cut.
    Linger = 2,
    /// A topic subscriber over half its backlog stops holding producers back.
    Slow = 3,
    /// A frame begun and not finished: its connection must not fall silent
    /// for longer than `Config::frame_timeout`.
    Incomplete = 4,
}

/// One connection's protocol state.
#[derive(Debug)]
pub(crate) struct Session {
    /// Unique among every session of this engine (connection ids are reused).
    pub(crate) serial: u64,
    pub(crate) phase: Phase,
    pub(crate) version: Version,
    pub(crate) decoder: Decoder,
    /// Subscriptions by slot (slots are reused).
    pub(crate) subs: Vec<Option<Subscription>>,
    pub(crate) txs: Vec<Tx>,
    pub(crate) outbox: VecDeque<(Output, usize)>,
    /// Estimated bytes in `outbox`.
    pub(crate) queued: usize,
    /// Bytes of the topic messages in its subscriptions' `pending`.
    pub(crate) pending: usize,
    /// Bytes the driver has encoded but not yet written.
    pub(crate) unwritten: usize,
    /// In the engine's dirty list.
    pub(crate) dirty: bool,
    pub(crate) send_every: Option<Duration>,
    pub(crate) receive_within: Option<Duration>,
    pub(crate) last_read: Instant,
    pub(crate) last_write: Instant,
    pub(crate) next_ack: u64,
    /// Reading is stopped (memory full).
    pub(crate) paused: bool,
    /// Reading is stopped because the peer does not read what it is owed
    /// (backlog over `max_write_backlog`).
    pub(crate) out_paused: bool,
    /// Topic deliveries put this connection over half its write backlog:
    /// the topic's producers wait for it (until the `Slow` timer fires).
    pub(crate) slow: bool,
    /// It stayed slow past `slow_consumer_timeout`: producers no longer wait.
    pub(crate) slow_expired: bool,
    /// The read buffer holds part of a frame (see `TimerKind::Incomplete`).
    pub(crate) partial: bool,
    /// The driver does not read it for now (too many unfinished frames in
    /// memory): its silence meanwhile is not its own.
    pub(crate) input_held: bool,
    /// Pending timer entries, for lazy invalidation.
    pub(crate) armed: [Option<Instant>; 5],
    /// The linger timer ran out: close without flushing.
    pub(crate) cut: bool,
    /// Subscriptions and transactions were released.
    pub(crate) torn_down: bool,
    /// RECEIPTs waiting for the store.
    pub(crate) held: usize,
    /// The store ticket that makes this connection's last change durable
    /// (`THIS_TURN` until the turn's commit gives it one): a RECEIPT,
    /// DISCONNECT's above all, waits for it, so that it vouches for every
    /// frame before it, not only its own.
    pub(crate) write_ticket: u64,
    /// Likewise for the last message it stored: a RECEIPT that waited for
    /// it gets an ERROR if that write fails.
    pub(crate) store_ticket: u64,
    /// Entries taken from `outbox` so far (the position of its front).
    pub(crate) popped: u64,
    /// Where in the output stream each held RECEIPT goes, in order: right
    /// after what was queued before its frame, ahead of what the frame
    /// caused (the MESSAGEs a SUBSCRIBE, COMMIT or NACK released), as
    /// RabbitMQ and ActiveMQ order them. Output stops at the first gate
    /// until its RECEIPT is in.
    pub(crate) gates: VecDeque<u64>,
    /// Who logged in (set by CONNECT), for authorization.
    pub(crate) principal: crate::auth::Principal,
    /// Start of the current one-second window of `max_frame_rate`.
    pub(crate) rate_since: Instant,
    /// Frames received in that window.
    pub(crate) rate_frames: u32,
    /// CONNECT's version, heart-beat and `receipt` (for the ERROR of a
    /// failed login) while its credentials are checked off the event loop
    /// (reading is paused meanwhile).
    pub(crate) authenticating: Option<(
        stomp_frame::Version,
        stomp_frame::HeartBeat,
        Option<stomp_frame::ByteString>,
    )>,
    /// SENDs let through while message memory was full, and queue
    /// messages acked meanwhile (see `Engine::check_queue_memory`).
    pub(crate) over_sends: usize,
    pub(crate) over_acks: usize,
    /// Tells the password-checking thread this connection closed.
    pub(crate) auth_gone: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Session {
    pub(crate) fn new(serial: u64, decoder: Decoder, now: Instant) -> Session {
        Session {
            serial,
            phase: Phase::Handshake,
            version: Version::V1_2,
            decoder,
            subs: Vec::new(),
            txs: Vec::new(),
            outbox: VecDeque::new(),
            queued: 0,
            pending: 0,
            unwritten: 0,
            dirty: false,
            send_every: None,
            receive_within: None,
            last_read: now,
            last_write: now,
            next_ack: 0,
            paused: false,
            out_paused: false,
            slow: false,
            slow_expired: false,
            partial: false,
            input_held: false,
            armed: [None; 5],
            cut: false,
            torn_down: false,
            held: 0,
            write_ticket: 0,
            store_ticket: 0,
            popped: 0,
            gates: VecDeque::new(),
            principal: crate::auth::Principal::default(),
            rate_since: now,
            rate_frames: 0,
            authenticating: None,
            auth_gone: None,
            over_sends: 0,
            over_acks: 0,
        }
    }

    /// Whether, with message memory full, this connection may still send:
    /// fewer SENDs since the limit was reached than the queue messages it
    /// holds unacknowledged plus those it acked meanwhile (a worker's ACKs
    /// come behind its SENDs; see `Engine::check_queue_memory`).
    pub(crate) fn has_send_credit(&self) -> bool {
        let held: usize = self
            .subs
            .iter()
            .flatten()
            .filter(|sub| !sub.topic)
            .map(|sub| sub.unacked.len())
            .sum();
        self.over_sends < held + self.over_acks
    }

    /// Bytes owed to the peer.
    pub(crate) fn backlog(&self) -> usize {
        self.queued + self.unwritten
    }

    /// What topic flow control counts: the backlog and the topic messages
    /// waiting for acknowledgements to open a window.
    pub(crate) fn fan_backlog(&self) -> usize {
        self.backlog() + self.pending
    }

    /// The slot of the subscription with this client id.
    pub(crate) fn sub_slot(&self, id: &str) -> Option<usize> {
        self.subs
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.id == id))
    }

    /// Stores a subscription in a free slot.
    pub(crate) fn add_sub(&mut self, sub: Subscription) -> usize {
        match self.subs.iter().position(Option::is_none) {
            Some(i) => {
                self.subs[i] = Some(sub);
                i
            }
            None => {
                self.subs.push(Some(sub));
                self.subs.len() - 1
            }
        }
    }

    /// The open transaction with this id.
    pub(crate) fn tx_index(&self, id: &str) -> Option<usize> {
        self.txs.iter().position(|t| t.id == id)
    }
}

/// Rough bytes a frame takes on the wire (for backlog accounting).
pub(crate) fn estimate(out: &Output) -> usize {
    match out {
        Output::Heartbeat => 1,
        Output::Frame(f) | Output::Consumed { frame: f, .. } => {
            24 + f.command.as_str().len()
                + f.body.len()
                + f.headers
                    .iter()
                    .map(|h| h.name().len() + h.value().len() + 2)
                    .sum::<usize>()
        }
    }
}
