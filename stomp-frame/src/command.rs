//! The STOMP commands.

use std::fmt;

/// Every command of STOMP 1.0, 1.1 and 1.2.
///
/// Commands are case-sensitive on the wire: `send` is not `SEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Command {
    /// Client opens a session (all versions).
    Connect,
    /// Client opens a session (1.1+ alias of `CONNECT`).
    Stomp,
    /// Server accepts a session.
    Connected,
    /// Client publishes a message.
    Send,
    /// Client subscribes to a destination.
    Subscribe,
    /// Client ends a subscription.
    Unsubscribe,
    /// Client acknowledges a message.
    Ack,
    /// Client rejects a message (1.1+).
    Nack,
    /// Client starts a transaction.
    Begin,
    /// Client commits a transaction.
    Commit,
    /// Client rolls a transaction back.
    Abort,
    /// Client closes the session.
    Disconnect,
    /// Server delivers a message.
    Message,
    /// Server confirms a frame that asked for a receipt.
    Receipt,
    /// Server reports an error (and then closes the connection).
    Error,
}

impl Command {
    /// All commands, in the order the spec lists them.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The longest command name, in bytes (`UNSUBSCRIBE`).
    pub const MAX_LEN: usize = 11;

    /// The command's name as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command name exactly (case-sensitive); `None` if it is not one.
    pub fn from_bytes(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"CONNECTED" => Command::Connected,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// Whether a frame of this command may carry a body: only `SEND`,
    /// `MESSAGE` and `ERROR` may.
    pub const fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }

    /// Whether header values of this command are escaped (1.1+). `CONNECT`,
    /// `STOMP` and `CONNECTED` never are, for compatibility with 1.0.
    pub const fn is_escaped(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// Whether a client sends this command (as opposed to a server).
    pub const fn is_client_command(self) -> bool {
        !matches!(
            self,
            Command::Connected | Command::Message | Command::Receipt | Command::Error
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for c in Command::ALL {
            assert_eq!(Command::from_bytes(c.as_str().as_bytes()), Some(c));
            assert_eq!(
                Command::from_bytes(c.as_str().to_lowercase().as_bytes()),
                None
            );
            assert!(c.as_str().len() <= Command::MAX_LEN);
        }
        assert_eq!(Command::from_bytes(b"SEND "), None);
    }

    #[test]
    fn only_send_message_error_have_bodies() {
        let with: Vec<_> = Command::ALL
            .into_iter()
            .filter(|c| c.allows_body())
            .collect();
        assert_eq!(with, [Command::Send, Command::Message, Command::Error]);
    }
}
