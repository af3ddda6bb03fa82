//! Destinations: queues (point-to-point) and topics (fan-out), and the
//! messages they hold.
//!
//! The router is plain data; the [`Engine`](crate::engine::Engine) moves
//! messages between it and the sessions, because delivering needs both.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use stomp_frame::{ByteString, Command, Frame, Headers, names};

use crate::engine::ConnId;

/// Bytes charged for a message beyond its body and headers: its struct in
/// the queue, its id, its headers' bookkeeping, the allocator's rounding.
/// Measured with `--memory` (RSS growth over 50,000-200,000 queued
/// messages): 377 bytes for a 10-byte body, 468 for 100, 1,381 for 1,000.
/// A durable store adds its own ([`Store::held_bytes`](crate::store::Store::held_bytes)).
const MESSAGE_OVERHEAD: usize = 384;

/// A message on its way through the broker.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Broker-wide sequence number: order and identity.
    pub(crate) seq: u64,
    /// The `message-id` header.
    pub(crate) id: ByteString,
    /// The destination it is delivered from.
    pub(crate) dest: ByteString,
    /// The user headers of the SEND (`content-type` and every custom one).
    pub(crate) headers: Headers,
    /// The body, shared by every copy of the message.
    pub(crate) body: Bytes,
    /// Bytes charged to queue and broker memory.
    pub(crate) size: usize,
    /// How many times it was handed to a subscriber.
    pub(crate) deliveries: u32,
    /// Whether it was handed out before and came back.
    pub(crate) redelivered: bool,
}

/// Headers of a SEND that the broker sets itself on MESSAGE (or that only
/// mean something to the SEND), so they are not copied as user headers.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        names::DESTINATION
            | names::TRANSACTION
            | names::RECEIPT
            | names::CONTENT_LENGTH
            | names::MESSAGE_ID
            | names::SUBSCRIPTION
            | names::ACK
            | names::REDELIVERED
    )
}

impl Message {
    /// Makes a message of a SEND frame.
    pub(crate) fn from_send(seq: u64, dest: ByteString, frame: Frame) -> Message {
        let mut size = frame.body.len() + MESSAGE_OVERHEAD;
        // A repeated header is passed on once, with its first value (the
        // one that counts; RabbitMQ and ActiveMQ drop the others too).
        let many = frame.headers.len() > 16;
        let mut seen = std::collections::HashSet::new();
        let mut headers = Headers::with_capacity(frame.headers.len());
        for h in frame.headers {
            let first = if many {
                seen.insert(h.name().to_owned())
            } else {
                headers.get(h.name()).is_none()
            };
            if first && !is_reserved(h.name()) {
                size += h.name().len() + h.value().len() + 2;
                headers.push_header(h);
            }
        }
        Message {
            seq,
            id: ByteString::from(format!("m-{seq}")),
            dest,
            headers,
            body: frame.body,
            size,
            deliveries: 0,
            redelivered: false,
        }
    }

    /// The MESSAGE frame for a subscription (`ack` set in client modes).
    pub(crate) fn to_frame(&self, subscription: &ByteString, ack: Option<ByteString>) -> Frame {
        let mut h = Headers::with_capacity(self.headers.len() + 5);
        h.push(names::DESTINATION, self.dest.clone());
        h.push(names::MESSAGE_ID, self.id.clone());
        h.push(names::SUBSCRIPTION, subscription.clone());
        if let Some(ack) = ack {
            h.push(names::ACK, ack);
        }
        if self.redelivered {
            h.push(names::REDELIVERED, "true");
        }
        for header in &self.headers {
            h.push_header(header.clone());
        }
        Frame {
            command: Command::Message,
            headers: h,
            body: self.body.clone(),
        }
    }
}

/// One subscription, seen from a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRef {
    /// The connection.
    pub(crate) conn: ConnId,
    /// The subscription's slot in that session.
    pub(crate) slot: usize,
}

/// A point-to-point destination.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Messages waiting for a subscriber, in delivery order.
    pub(crate) ready: VecDeque<Message>,
    /// Subscribers, served round-robin.
    pub(crate) subs: Vec<SubRef>,
    /// Where the round-robin goes next.
    pub(crate) next: usize,
    /// Bytes of its messages, waiting or in flight.
    pub(crate) bytes: usize,
    /// Messages delivered and not yet acknowledged.
    pub(crate) inflight: usize,
    /// Whether this is a dead-letter queue (its messages are not dead-lettered again).
    pub(crate) is_dlq: bool,
}

impl Queue {
    /// Whether nothing refers to it any more (it can be forgotten).
    pub(crate) fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.subs.is_empty() && self.inflight == 0
    }

    /// Removes a subscriber, keeping the round-robin cursor in range.
    pub(crate) fn remove_sub(&mut self, r: SubRef) {
        if let Some(i) = self.subs.iter().position(|s| *s == r) {
            self.subs.remove(i);
            if self.next > i {
                self.next -= 1;
            }
            if self.next >= self.subs.len() {
                self.next = 0;
            }
        }
    }
}

/// Every destination.
#[derive(Debug, Default)]
pub(crate) struct Router {
    /// Queues by name.
    pub(crate) queues: HashMap<ByteString, Queue>,
    /// Topic subscribers by topic name.
    pub(crate) topics: HashMap<ByteString, Vec<SubRef>>,
    /// Message bytes held: queued, in flight, or in open transactions.
    pub(crate) memory: usize,
}

/// Bytes charged for each queue the broker holds (its entry, its name, its
/// bookkeeping), on top of its messages.
const QUEUE_OVERHEAD: usize = 512;

impl Router {
    /// What `max-memory` is compared with: message bytes, and each queue's
    /// own cost.
    pub(crate) fn charged(&self) -> usize {
        self.memory + self.queues.len() * QUEUE_OVERHEAD
    }
}
