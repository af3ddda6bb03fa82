//! `stomp-client`: a blocking, thread-safe STOMP 1.0 / 1.1 / 1.2 client on
//! mio, for ActiveMQ, RabbitMQ, Artemis and the `stomp-broker` of this
//! project.
//!
//! ```text
//!  program threads                         I/O thread (one per Client, mio)
//!  ───────────────                         ────────────────────────────────
//!  client.send(..) ──Cmd──▶ bounded channel ──▶ Core (sans-I/O session) ──▶ socket
//!                          (frames, bytes)       handshake, heart-beats,
//!                          + mio::Waker          receipts, subscriptions
//!  sub.recv()   ◀── per-subscription channel ◀──┐
//!  send_confirmed ◀── receipt (oneshot) ◀───────┼── frames sorted by type ◀── socket
//!  next call    ◀── pending ERROR ◀─────────────┘
//!  client.events() ◀── connected / lost / reconnected / closed
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use stomp_client::{AckMode, Client, ConnectOptions, ReconnectPolicy};
//!
//! let opts = ConnectOptions::from_url("stomp://guest:guest@127.0.0.1:61613/%2F")?
//!     .heart_beat(10_000, 10_000)
//!     .reconnect(ReconnectPolicy::default());
//! let client = Client::connect(opts)?;
//!
//! // Fire-and-forget, and confirmed by a RECEIPT.
//! client.send("/queue/orders", "order 1")?;
//! client.send_with_confirmed(
//!     "/queue/orders",
//!     &[("content-type", "text/plain")],
//!     "order 2",
//!     Duration::from_secs(5),
//! )?;
//!
//! // Consume, acknowledging each message.
//! let sub = client.subscribe("/queue/orders", AckMode::ClientIndividual, &[])?;
//! while let Some(msg) = sub.recv_timeout(Duration::from_secs(1))? {
//!     println!("{}", String::from_utf8_lossy(msg.body()));
//!     msg.ack()?;
//! }
//!
//! // A transaction: all or nothing.
//! let tx = client.begin()?;
//! tx.send("/queue/audit", "a")?;
//! tx.send("/queue/audit", "b")?;
//! tx.commit()?;
//!
//! client.disconnect()?;
//! # Ok::<(), stomp_client::Error>(())
//! ```
//!
//! Rules the client keeps:
//!
//! - **Every wait is bounded**: connect, confirmed sends, receipts, a full
//!   outgoing queue, `disconnect()` and the join of the I/O thread on drop.
//! - **Errors find their call**: an ERROR frame naming a receipt fails the
//!   call waiting for it; any other ERROR is returned by the next call (and
//!   sent as [`ConnectionEvent::Error`]). An ERROR ends the session, as STOMP
//!   1.2 says the broker closes after it. What the client can tell before
//!   sending (a body over the limit, a header the negotiated version cannot
//!   write) fails the call that made the frame, fire-and-forget sends
//!   included, and nothing goes out.
//! - **Transactions are never left open**: a commit or abort that cannot be
//!   sent, and a transaction dropped unfinished, send ABORT.
//! - **Heart-beats** are sent by the I/O thread; a broker silent for the
//!   negotiated interval times the grace factor (1.5) after a heart-beat is
//!   declared lost (one interval more after a frame: ActiveMQ's next beat
//!   after a frame can come two intervals later).
//!   They are negotiated in STOMP 1.0 too when the broker answers them
//!   (RabbitMQ and ActiveMQ do).
//! - **Reconnect** (opt-in, [`ReconnectPolicy`]): failover list, exponential
//!   backoff with a cap; subscriptions are re-established with the same ids
//!   before anything else is sent, then [`ConnectionEvent::Reconnected`] is
//!   emitted. Sends during the outage follow the [`OutagePolicy`]. Acks of
//!   messages from the lost session and its transactions fail with typed
//!   errors instead of confusing the new session. Data the client cannot
//!   decode ([`Error::Protocol`]) ends it instead: it would come again.
//! - **Back-pressure**, both ways. Sending: the frames waiting for the I/O
//!   thread are bounded in bytes ([`ConnectOptions::max_send_queue_bytes`],
//!   64 MiB by default) and in number
//!   ([`ConnectOptions::max_send_queue_frames`], 4096); when a broker reads
//!   slower than the program sends,
//!   the socket's buffers and then that queue fill up, and a send waits for
//!   room (at most [`ConnectOptions::send_timeout`], then
//!   [`Error::Timeout`]) instead of buffering without end. Receiving: each
//!   subscription buffers a bounded number of messages; when one is full
//!   the client stops reading the socket.
//!
//! The protocol logic lives in a sans-I/O core (`core.rs`, tested without
//! sockets); the I/O thread (`driver.rs`) is a thin mio loop around it.

mod budget;
mod client;
mod core;
mod driver;
mod error;
mod options;
mod tls;

pub use bytes::Bytes;
pub use client::{Client, ConnectionEvent, ConnectionState, Message, Subscription, Transaction};
pub use core::SessionInfo;
/// The channel crate of [`Client::events`] and [`Subscription::receiver`].
pub use crossbeam_channel;
pub use error::{Error, Result};
pub use options::{
    ConnectOptions, DEFAULT_PORT, DEFAULT_TLS_PORT, OutagePolicy, ReconnectPolicy, StompUrl,
};
/// The TLS crate of [`tls_session`], for programs that drive its sessions.
pub use rustls;
pub use stomp_frame::{self, AckMode, Frame, Headers, HeartBeat, Version};
pub use tls::{tls_error_text, tls_session};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<Client>();
        send_sync::<Message>();
        send::<Subscription>();
        send_sync::<ConnectOptions>();
        send_sync::<Error>();
    }
}
