//! `stomp-frame`: the STOMP 1.0 / 1.1 / 1.2 protocol core, with no I/O.
//!
//! It turns bytes into [`Frame`]s and frames into bytes, and carries the
//! protocol rules both ends need (version and heart-beat negotiation, ack
//! modes). It never touches a socket or a clock, so a blocking client, an
//! event-loop broker or an async runtime can all drive it.
//!
//! ```text
//!  socket ──read──▶ BytesMut ──Decoder::decode──▶ Item::Frame(Frame) / Item::Heartbeat
//!                     (headers and body are slices of the read buffer: no copy)
//!  Frame ──Encoder::encode──▶ BytesMut ──write──▶ socket
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use stomp_frame::{Decoder, Encoder, Frame, Item, Version};
//!
//! // Encode a SEND for a 1.2 session: header values are escaped as needed.
//! let frame = Frame::send("/queue/orders").header("note", "a:b").body("hello");
//! let mut wire = BytesMut::new();
//! Encoder::new(Version::V1_2).encode(&frame, &mut wire)?;
//!
//! // Decode it back, as the bytes might arrive: in two pieces.
//! let mut dec = Decoder::new(Version::V1_2);
//! let mut buf = BytesMut::new();
//! let (a, b) = wire.split_at(7);
//! buf.extend_from_slice(a);
//! assert_eq!(dec.decode(&mut buf)?, None);
//! buf.extend_from_slice(b);
//! let Some(Item::Frame(got)) = dec.decode(&mut buf)? else { unreachable!() };
//! assert_eq!(got.destination(), Some("/queue/orders"));
//! assert_eq!(got.headers.get("note"), Some("a:b"));
//! assert_eq!(&got.body[..], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the decoder enforces, and where the rules come from (the STOMP
//! specifications at stomp.github.io):
//!
//! - bodies end at `content-length` bytes (NULs inside allowed, and the next
//!   byte must be NUL) or, without it, at the first NUL;
//! - in 1.1 and 1.2 only SEND, MESSAGE and ERROR may have a body (1.0 lets
//!   any frame have one);
//! - escaping per version (1.0 none; 1.1 `\n` `\c` `\\`; 1.2 also `\r`),
//!   never in CONNECT, STOMP and CONNECTED; an undefined escape is an error;
//! - header lines split at the first colon, names and values kept exactly
//!   in 1.1 and 1.2 (1.0 trims the spaces, tabs and CRs around them, as
//!   ActiveMQ does), repeats kept with the first winning on lookup;
//! - commands are case-sensitive; command and headers must be UTF-8;
//! - [`Limits`] on line length, header count, body and frame size.

#[cfg(feature = "arbitrary")]
mod arbitrary_impl;
mod command;
mod decode;
mod encode;
mod error;
mod frame;
mod header;
mod protocol;

pub use bytes;
pub use bytestring::ByteString;

pub use command::Command;
pub use decode::{Decoder, Item, Limits};
pub use encode::{ContentLength, Encoder};
pub use error::{DecodeError, EncodeError, Limit};
pub use frame::Frame;
pub use header::{Header, Headers, names};
pub use protocol::{AckMode, HeartBeat, HeartBeatSchedule, ParseValueError, Version};

#[cfg(test)]
mod tests;
