//! The client's error type.

use std::time::Duration;

/// Everything that can go wrong with a client call.
///
/// Calls never panic and never wait forever: a wait that runs out is
/// [`Error::Timeout`], a connection that goes away is
/// [`Error::ConnectionLost`], and an ERROR frame from the broker is
/// [`Error::Broker`], delivered to the call it answers (matched by its
/// `receipt-id`) or else to the next call made on the client.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The connection URL is not valid.
    #[error("invalid STOMP URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is not valid (for example, no address to connect to).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A TCP connection to the broker could not be made.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address tried (as given, `host:port`).
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// The broker sent an ERROR frame.
    #[error("broker error: {message}{}", if body.is_empty() { String::new() } else { format!(" ({})", body.trim_end()) })]
    Broker {
        /// The ERROR's `message` header (empty if it had none).
        message: String,
        /// The ERROR's body, lossily decoded as UTF-8.
        body: String,
        /// The `receipt-id` of the ERROR, when it answered a frame with a `receipt`.
        receipt_id: Option<String>,
    },
    /// The broker and the client share no protocol version.
    #[error(
        "the broker supports none of the versions offered ({offered}); it answered {}",
        said.as_deref().map_or("without a version header".to_owned(), |v| format!("version {v}"))
    )]
    NoCommonVersion {
        /// The versions the client offered, as in `accept-version`.
        offered: String,
        /// The broker's `version` header, if it sent one.
        said: Option<String>,
    },
    /// The connection was lost (closed by the broker, a network error, or
    /// no heart-beat from the broker in time).
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What happened.
        reason: String,
    },
    /// The client is reconnecting and the call did not wait for it (see
    /// [`OutagePolicy`](crate::OutagePolicy)), or gave up waiting.
    #[error("not connected (reconnecting); the call was not sent")]
    NotConnected,
    /// A wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited: `"CONNECTED"`, `"RECEIPT"`, ...
        what: &'static str,
        /// How long the call waited.
        after: Duration,
    },
    /// The client was closed (disconnected or dropped), or gave up reconnecting.
    #[error("the client is closed")]
    Closed,
    /// The broker sent bytes that the client cannot decode: not valid STOMP,
    /// a frame over the receive limits ([`ConnectOptions::limits`](crate::ConnectOptions::limits)),
    /// or a header that is not UTF-8.
    ///
    /// It ends the client even with a [`ReconnectPolicy`](crate::ReconnectPolicy):
    /// a broker would send the same bytes again (it redelivers an
    /// unacknowledged message), so reconnecting would only loop.
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// A frame cannot be written in the negotiated version (for example a
    /// header with a newline in STOMP 1.0).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] stomp_frame::EncodeError),
    /// A frame to send has a body larger than the client accepts in a
    /// MESSAGE (the `max_body_len` of [`ConnectOptions::limits`](crate::ConnectOptions::limits),
    /// 16 MiB by default): it could not be received by a client with the
    /// same options, this one included. Nothing was sent.
    #[error("a body of {size} bytes is over the limit of {max} bytes (ConnectOptions::limits)")]
    BodyTooLarge {
        /// The body's length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A message cannot be acknowledged: it came from a connection that has
    /// since been replaced (its ack id means nothing to the new one), its
    /// subscription is in `auto` mode, or it lacks the headers the version needs.
    #[error("cannot acknowledge message: {0}")]
    CannotAck(&'static str),
    /// A transaction belongs to a connection that has since been lost: the
    /// broker aborted it.
    #[error("transaction {0:?} was aborted by the loss of its connection")]
    TransactionLost(String),
}

impl Error {
    pub(crate) fn lost(reason: impl Into<String>) -> Error {
        Error::ConnectionLost {
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Broker`] from an ERROR frame.
    pub(crate) fn from_error_frame(frame: &stomp_frame::Frame) -> Error {
        Error::Broker {
            message: frame.message_header().unwrap_or_default().to_owned(),
            body: String::from_utf8_lossy(&frame.body).into_owned(),
            receipt_id: frame.receipt_id().map(str::to_owned),
        }
    }
}

/// The result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
