//! Error types of the codec.

use std::fmt;

use crate::Command;

/// A limit the decoder enforces (see [`Limits`](crate::Limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Bytes in one command or header line, without its EOL.
    LineLength,
    /// Headers in one frame.
    HeaderCount,
    /// Bytes in one body.
    BodyLength,
    /// Bytes in one frame: command, headers and body.
    FrameLength,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::LineLength => "line length",
            Limit::HeaderCount => "header count",
            Limit::BodyLength => "body length",
            Limit::FrameLength => "frame length",
        })
    }
}

/// Why a byte stream is not valid STOMP.
///
/// Offsets count bytes from the start of the stream the decoder was fed.
/// After an error the connection is beyond repair: report it (a server
/// sends an ERROR frame) and close.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A limit was crossed; nothing more of the frame is buffered.
    #[error(
        "{limit} limit exceeded: {value} is more than the maximum {max} (frame at byte {offset})"
    )]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value seen (or reached so far); a `content-length` too big
        /// for `usize` is `usize::MAX`.
        value: usize,
        /// The configured maximum.
        max: usize,
        /// Where the offending frame starts.
        offset: u64,
    },
    /// The command line is not one of the STOMP commands (they are case-sensitive).
    #[error("unknown command {command:?} at byte {offset}; commands are upper-case, such as SEND")]
    UnknownCommand {
        /// The start of the line seen, lossily decoded.
        command: String,
        /// Where the line starts.
        offset: u64,
    },
    /// The command or a header is not valid UTF-8.
    #[error("invalid UTF-8 in {place} at byte {offset}")]
    InvalidUtf8 {
        /// `command`, `header name` or `value of header "<name>"`.
        place: String,
        /// Where the line starts.
        offset: u64,
    },
    /// A header line has no `:`.
    #[error("header line without a colon at byte {offset}: {line:?}")]
    MissingColon {
        /// The line, lossily decoded and shortened.
        line: String,
        /// Where the line starts.
        offset: u64,
    },
    /// A carriage return inside a header line of a STOMP 1.2 client frame
    /// (1.2 allows CR only as part of the line's end; a CR in a name or
    /// value is written `\r`).
    #[error(
        "carriage return inside a header line at byte {offset}: {line:?} (STOMP 1.2 allows it only before the line's LF; escape it as \\r)"
    )]
    BareCarriageReturn {
        /// The line, lossily decoded and shortened.
        line: String,
        /// Where the line starts.
        offset: u64,
    },
    /// A header line starts with `:`.
    #[error("empty header name at byte {offset}")]
    EmptyHeaderName {
        /// Where the line starts.
        offset: u64,
    },
    /// A backslash not followed by a defined escape (1.1: `n` `c` `\`; 1.2 also `r`).
    #[error("undefined escape sequence {sequence:?} in header {header:?} at byte {offset}")]
    InvalidEscape {
        /// The header whose name or value holds it.
        header: String,
        /// The sequence, such as `\t`, or `\` alone at the end.
        sequence: String,
        /// Where the line starts.
        offset: u64,
    },
    /// `content-length` is not a non-negative integer.
    #[error("invalid content-length {value:?} at byte {offset}: expected a non-negative integer")]
    InvalidContentLength {
        /// The header's value.
        value: String,
        /// Where the frame starts.
        offset: u64,
    },
    /// The byte after a `content-length` body is not NUL.
    #[error(
        "expected a NUL byte after the {length}-byte body at byte {offset}, found 0x{found:02x}; is content-length right?"
    )]
    MissingNul {
        /// The declared body length.
        length: usize,
        /// The byte found instead.
        found: u8,
        /// Where that byte is.
        offset: u64,
    },
    /// A body on a frame other than SEND, MESSAGE or ERROR (1.1 and 1.2;
    /// 1.0 lets any frame have one).
    #[error("a {command} frame must not have a body (byte {offset})")]
    BodyNotAllowed {
        /// The frame's command.
        command: Command,
        /// Where the body starts.
        offset: u64,
    },
}

/// Why a frame cannot be written for a version.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A header name or value cannot be represented in this version or
    /// command (no escaping in 1.0, CONNECT and CONNECTED; in 1.0, no
    /// space, tab or CR around a name, which 1.0 peers trim; padded values
    /// are written as they are, and may reach a 1.0 peer trimmed).
    #[error("header {header:?} cannot be written in STOMP {version} {command}: {reason}")]
    Unencodable {
        /// The header's name.
        header: String,
        /// The frame's command.
        command: Command,
        /// The version being written.
        version: crate::Version,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A body on a frame other than SEND, MESSAGE or ERROR (1.1 and 1.2;
    /// 1.0 lets any frame have one).
    #[error("a {0} frame must not have a body")]
    BodyNotAllowed(Command),
    /// A command the version does not have (NACK and STOMP in 1.0).
    #[error("STOMP {version} has no {command} frame")]
    NotInVersion {
        /// The frame's command.
        command: Command,
        /// The version being written.
        version: crate::Version,
    },
}
