//! The frame model and builders for the frames clients and brokers send.

use bytes::Bytes;
use bytestring::ByteString;

use crate::header::names;
use crate::{AckMode, Command, Headers, HeartBeat, Version};

/// One STOMP frame: a command, ordered headers and a body.
///
/// Headers hold unescaped text; the body is raw bytes shared with the read
/// buffer it was decoded from (cloning a frame never copies its body).
///
/// Build frames with the constructors and chain headers and a body:
///
/// ```
/// use stomp_frame::{Command, Frame};
/// let f = Frame::send("/queue/a").header("priority", "4").body("hello");
/// assert_eq!(f.command, Command::Send);
/// assert_eq!(f.destination(), Some("/queue/a"));
/// assert_eq!(&f.body[..], b"hello");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// The headers, in order, repeats kept.
    pub headers: Headers,
    /// The body (empty when there is none).
    pub body: Bytes,
}

macro_rules! accessors {
    ($($(#[$doc:meta])* $fn:ident => $name:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(&self) -> Option<&str> {
                self.headers.get($name)
            }
        )*
    };
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Appends a header (builder style). A repeat of an existing name is
    /// kept and loses to the first.
    pub fn header(mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) -> Frame {
        self.headers.push(name, value);
        self
    }

    /// Appends a header only when `value` is `Some` (builder style).
    pub fn header_opt(
        self,
        name: impl Into<ByteString>,
        value: Option<impl Into<ByteString>>,
    ) -> Frame {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Sets the body (builder style). Only SEND, MESSAGE and ERROR may carry one.
    pub fn body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// `CONNECT` for the given virtual host, accepting `versions`.
    pub fn connect(host: impl Into<ByteString>, versions: &[Version]) -> Frame {
        Frame::new(Command::Connect)
            .header(names::ACCEPT_VERSION, Version::list(versions))
            .header(names::HOST, host)
    }

    /// `CONNECTED` for a negotiated version.
    pub fn connected(version: Version) -> Frame {
        Frame::new(Command::Connected).header(names::VERSION, version.as_str())
    }

    /// `SEND` to a destination.
    pub fn send(destination: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Send).header(names::DESTINATION, destination)
    }

    /// `SUBSCRIBE` to a destination with a subscription id and ack mode.
    pub fn subscribe(
        id: impl Into<ByteString>,
        destination: impl Into<ByteString>,
        ack: AckMode,
    ) -> Frame {
        Frame::new(Command::Subscribe)
            .header(names::ID, id)
            .header(names::DESTINATION, destination)
            .header(names::ACK, ack.as_str())
    }

    /// `UNSUBSCRIBE` of a subscription id.
    pub fn unsubscribe(id: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Unsubscribe).header(names::ID, id)
    }

    /// `ACK` of a message in the form `version` expects, from the MESSAGE's
    /// headers: 1.2 uses the `ack` header as `id`; 1.1 sends `message-id`
    /// and `subscription`; 1.0 sends `message-id`, and `subscription` when
    /// the MESSAGE has one (1.0 does not define it; ActiveMQ uses it to find
    /// the consumer, and without it sometimes redelivered a message acked in
    /// a committed transaction).
    ///
    /// Returns `None` when the message lacks the headers that version needs.
    pub fn ack_for(message: &Frame, version: Version) -> Option<Frame> {
        Frame::ack_or_nack(Command::Ack, message, version)
    }

    /// `NACK` of a message (1.1+), like [`Frame::ack_for`]; `None` for
    /// 1.0, which has no NACK.
    pub fn nack_for(message: &Frame, version: Version) -> Option<Frame> {
        if version == Version::V1_0 {
            return None;
        }
        Frame::ack_or_nack(Command::Nack, message, version)
    }

    fn ack_or_nack(command: Command, message: &Frame, version: Version) -> Option<Frame> {
        let h = &message.headers;
        let frame = Frame::new(command);
        Some(match version {
            Version::V1_2 => frame.header(names::ID, h.get_shared(names::ACK)?.clone()),
            Version::V1_1 => frame
                .header(names::MESSAGE_ID, h.get_shared(names::MESSAGE_ID)?.clone())
                .header(
                    names::SUBSCRIPTION,
                    h.get_shared(names::SUBSCRIPTION)?.clone(),
                ),
            Version::V1_0 => frame
                .header(names::MESSAGE_ID, h.get_shared(names::MESSAGE_ID)?.clone())
                .header_opt(
                    names::SUBSCRIPTION,
                    h.get_shared(names::SUBSCRIPTION).cloned(),
                ),
        })
    }

    /// `BEGIN` of a transaction.
    pub fn begin(transaction: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Begin).header(names::TRANSACTION, transaction)
    }

    /// `COMMIT` of a transaction.
    pub fn commit(transaction: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Commit).header(names::TRANSACTION, transaction)
    }

    /// `ABORT` of a transaction.
    pub fn abort(transaction: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Abort).header(names::TRANSACTION, transaction)
    }

    /// `DISCONNECT`.
    pub fn disconnect() -> Frame {
        Frame::new(Command::Disconnect)
    }

    /// `MESSAGE` from a destination for a subscription.
    pub fn message(
        destination: impl Into<ByteString>,
        message_id: impl Into<ByteString>,
        subscription: impl Into<ByteString>,
    ) -> Frame {
        Frame::new(Command::Message)
            .header(names::DESTINATION, destination)
            .header(names::MESSAGE_ID, message_id)
            .header(names::SUBSCRIPTION, subscription)
    }

    /// `RECEIPT` answering a `receipt` header.
    pub fn receipt(receipt_id: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Receipt).header(names::RECEIPT_ID, receipt_id)
    }

    /// `ERROR` with a short `message` header; add details as the body.
    pub fn error(message: impl Into<ByteString>) -> Frame {
        Frame::new(Command::Error).header(names::MESSAGE, message)
    }

    accessors! {
        /// The `destination` header.
        destination => names::DESTINATION;
        /// The `receipt` header (a client asks for a RECEIPT).
        receipt_request => names::RECEIPT;
        /// The `receipt-id` header of a RECEIPT or ERROR.
        receipt_id => names::RECEIPT_ID;
        /// The `id` header (subscription id; 1.2 ACK/NACK id).
        id => names::ID;
        /// The `ack` header (SUBSCRIBE mode, or the 1.2 MESSAGE ack id).
        ack => names::ACK;
        /// The `subscription` header.
        subscription => names::SUBSCRIPTION;
        /// The `message-id` header.
        message_id => names::MESSAGE_ID;
        /// The `transaction` header.
        transaction => names::TRANSACTION;
        /// The `content-type` header.
        content_type => names::CONTENT_TYPE;
        /// The `host` header of CONNECT.
        host => names::HOST;
        /// The `login` header of CONNECT.
        login => names::LOGIN;
        /// The `passcode` header of CONNECT.
        passcode => names::PASSCODE;
        /// The `accept-version` header of CONNECT.
        accept_version => names::ACCEPT_VERSION;
        /// The `message` header of ERROR.
        message_header => names::MESSAGE;
        /// The `session` header of CONNECTED.
        session => names::SESSION;
        /// The `server` header of CONNECTED.
        server => names::SERVER;
    }

    /// The `content-length` header as a number (`None` if absent or not a
    /// non-negative integer; a number too big for `usize` is `usize::MAX`,
    /// as the decoder reads it).
    pub fn content_length(&self) -> Option<usize> {
        let v = self.headers.get(names::CONTENT_LENGTH)?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(v.parse().unwrap_or(usize::MAX))
    }

    /// The `version` header of CONNECTED (or of an ERROR refusing a
    /// CONNECT) parsed as one version; `None` when absent or a list such as
    /// `1.2,2.1` (read that with `headers.get("version")`).
    pub fn version(&self) -> Option<Version> {
        self.headers.get(names::VERSION)?.parse().ok()
    }

    /// The `heart-beat` header, parsed. Absent means `0,0`; a malformed
    /// value is `Err`.
    pub fn heart_beat(&self) -> Result<HeartBeat, crate::ParseValueError> {
        self.headers
            .get(names::HEART_BEAT)
            .map_or(Ok(HeartBeat::NONE), str::parse)
    }

    /// The `ack` header of SUBSCRIBE, parsed. Absent means `auto`.
    pub fn ack_mode(&self) -> Result<AckMode, crate::ParseValueError> {
        self.headers
            .get(names::ACK)
            .map_or(Ok(AckMode::Auto), str::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_required_headers() {
        let c = Frame::connect("example.org", &Version::ALL);
        assert_eq!(c.accept_version(), Some("1.0,1.1,1.2"));
        assert_eq!(c.host(), Some("example.org"));
        let s = Frame::subscribe("0", "/queue/a", AckMode::ClientIndividual);
        assert_eq!(s.ack_mode(), Ok(AckMode::ClientIndividual));
        assert_eq!(Frame::receipt("77").receipt_id(), Some("77"));
        assert_eq!(Frame::error("bad").message_header(), Some("bad"));
        assert_eq!(
            Frame::connected(Version::V1_1).version(),
            Some(Version::V1_1)
        );
    }

    #[test]
    fn ack_frames_per_version() {
        let m = Frame::message("/queue/a", "m-1", "sub-0").header("ack", "a-9");
        let a12 = Frame::ack_for(&m, Version::V1_2).unwrap();
        assert_eq!(a12.id(), Some("a-9"));
        assert!(a12.message_id().is_none());
        let a11 = Frame::nack_for(&m, Version::V1_1).unwrap();
        assert_eq!(a11.command, Command::Nack);
        assert_eq!(
            (a11.message_id(), a11.subscription()),
            (Some("m-1"), Some("sub-0"))
        );
        let a10 = Frame::ack_for(&m, Version::V1_0).unwrap();
        assert_eq!(a10.message_id(), Some("m-1"));
        assert_eq!(a10.subscription(), Some("sub-0"));
        let mut bare = Frame::message("/queue/a", "m-1", "x");
        bare.headers.remove("subscription");
        let a10 = Frame::ack_for(&bare, Version::V1_0).unwrap();
        assert_eq!((a10.message_id(), a10.subscription()), (Some("m-1"), None));
        let no_ack = Frame::message("/queue/a", "m-1", "sub-0");
        assert!(Frame::ack_for(&no_ack, Version::V1_2).is_none());
    }

    #[test]
    fn content_length_is_strict() {
        let f = |v: &'static str| Frame::send("/q").header("content-length", v);
        assert_eq!(f("12").content_length(), Some(12));
        assert_eq!(f("-1").content_length(), None);
        assert_eq!(f("+1").content_length(), None);
        assert_eq!(f("").content_length(), None);
        assert_eq!(
            f("99999999999999999999999").content_length(),
            Some(usize::MAX)
        );
    }
}
