//! The encoder.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::header::names;
use crate::{Command, Frame, Version};

/// When the encoder writes a `content-length` header.
///
/// Whatever the policy, `content-length` headers already in the frame are
/// not written: the encoder writes the true length itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentLength {
    /// On every SEND, MESSAGE and ERROR frame (the safe choice, the default).
    #[default]
    Always,
    /// Only when the body holds a NUL byte and so cannot end at the first one.
    WhenNeeded,
}

/// Writes frames for one protocol version, escaping headers as it requires.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_frame::{Encoder, Frame, Version};
///
/// let enc = Encoder::new(Version::V1_2);
/// let frame = Frame::send("/queue/a").header("k", "a:b").body("hi");
/// let mut out = BytesMut::new();
/// enc.encode(&frame, &mut out).unwrap();
/// assert_eq!(&out[..], b"SEND\ndestination:/queue/a\nk:a\\cb\ncontent-length:2\n\nhi\0");
/// assert_eq!(enc.encoded_len(&frame), out.len());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoder {
    version: Version,
    content_length: ContentLength,
}

/// What a header name or value needs to be written.
enum Need {
    Raw,
    Escape,
    Impossible(&'static str),
}

impl Encoder {
    /// An encoder for `version` that always writes `content-length`.
    pub const fn new(version: Version) -> Encoder {
        Encoder {
            version,
            content_length: ContentLength::Always,
        }
    }

    /// Sets the `content-length` policy.
    pub const fn with_content_length(mut self, policy: ContentLength) -> Encoder {
        self.content_length = policy;
        self
    }

    /// The version written.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// Switches to another version (after negotiation).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    fn writes_length(&self, frame: &Frame) -> bool {
        self.allows_body(frame.command)
            && (frame.command.allows_body() || !frame.body.is_empty())
            && match self.content_length {
                ContentLength::Always => true,
                ContentLength::WhenNeeded => memchr::memchr(0, &frame.body).is_some(),
            }
    }

    /// As the decoder: 1.0 lets any frame carry a body, 1.1 and 1.2 only
    /// SEND, MESSAGE and ERROR.
    fn allows_body(&self, command: Command) -> bool {
        command.allows_body() || self.version == Version::V1_0
    }

    fn escapes(&self, command: Command) -> bool {
        command.is_escaped() && self.version >= Version::V1_1
    }

    /// The exact number of bytes [`encode`](Encoder::encode) writes for
    /// `frame` when it succeeds.
    pub fn encoded_len(&self, frame: &Frame) -> usize {
        let escapes = self.escapes(frame.command);
        let mut n = frame.command.as_str().len() + 1;
        for h in frame.headers.iter() {
            if h.name() == names::CONTENT_LENGTH {
                continue;
            }
            n += h.name().len() + h.value().len() + 2;
            if escapes {
                n += extra(h.name().as_bytes(), self.version)
                    + extra(h.value().as_bytes(), self.version);
            }
        }
        if self.writes_length(frame) {
            n += names::CONTENT_LENGTH.len() + 2 + decimal_len(frame.body.len());
        }
        n + 1 + frame.body.len() + 1
    }

    /// Appends `frame` to `dst`. On error nothing is appended.
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let command = frame.command;
        if self.version == Version::V1_0 && matches!(command, Command::Nack | Command::Stomp) {
            return Err(EncodeError::NotInVersion {
                command,
                version: self.version,
            });
        }
        if !frame.body.is_empty() && !self.allows_body(command) {
            return Err(EncodeError::BodyNotAllowed(command));
        }
        let start = dst.len();
        dst.reserve(self.encoded_len(frame));
        dst.put_slice(command.as_str().as_bytes());
        dst.put_u8(b'\n');
        for h in frame.headers.iter() {
            if h.name() == names::CONTENT_LENGTH {
                continue;
            }
            let result = self
                .put(h.name().as_bytes(), true, command, dst)
                .and_then(|()| {
                    dst.put_u8(b':');
                    self.put(h.value().as_bytes(), false, command, dst)
                });
            if let Err(reason) = result {
                dst.truncate(start);
                return Err(EncodeError::Unencodable {
                    header: h.name().to_owned(),
                    command,
                    version: self.version,
                    reason,
                });
            }
            dst.put_u8(b'\n');
        }
        if self.writes_length(frame) {
            dst.put_slice(b"content-length:");
            put_decimal(frame.body.len(), dst);
            dst.put_u8(b'\n');
        }
        dst.put_u8(b'\n');
        dst.put_slice(&frame.body);
        dst.put_u8(0);
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self, frame: &Frame) -> Result<bytes::Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(frame, &mut out)?;
        Ok(out.freeze())
    }

    fn need(&self, s: &[u8], is_name: bool, command: Command) -> Need {
        if is_name && s.is_empty() {
            return Need::Impossible("a header name cannot be empty");
        }
        if self.version == Version::V1_1 && s.last() == Some(&b'\r') {
            return Need::Impossible("1.1 peers read a CR before the LF as part of the line end");
        }
        if self.escapes(command) {
            if extra(s, self.version) == 0 {
                Need::Raw
            } else {
                Need::Escape
            }
        } else if s.contains(&b'\n') {
            Need::Impossible("a line feed cannot be escaped here")
        } else if is_name && s.contains(&b':') {
            Need::Impossible("a colon in a name cannot be escaped here")
        } else if self.version >= Version::V1_2 && s.contains(&b'\r') {
            Need::Impossible("a CR cannot be written unescaped in 1.2")
        } else if is_name
            && self.version == Version::V1_0
            && [s.first(), s.last()]
                .into_iter()
                .any(|b| matches!(b, Some(b' ' | b'\t' | b'\r')))
        {
            Need::Impossible("1.0 peers trim spaces, tabs and CRs around names")
        } else {
            Need::Raw
        }
    }

    fn put(
        &self,
        s: &[u8],
        is_name: bool,
        command: Command,
        dst: &mut BytesMut,
    ) -> Result<(), &'static str> {
        match self.need(s, is_name, command) {
            Need::Raw => dst.put_slice(s),
            Need::Impossible(why) => return Err(why),
            Need::Escape => {
                let cr = self.version >= Version::V1_2;
                for &b in s {
                    match b {
                        b'\\' => dst.put_slice(b"\\\\"),
                        b'\n' => dst.put_slice(b"\\n"),
                        b':' => dst.put_slice(b"\\c"),
                        b'\r' if cr => dst.put_slice(b"\\r"),
                        _ => dst.put_u8(b),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Bytes escaping adds to `s` (one per escaped byte).
fn extra(s: &[u8], version: Version) -> usize {
    let cr = version >= Version::V1_2;
    s.iter()
        .filter(|&&b| matches!(b, b'\\' | b'\n' | b':') || (cr && b == b'\r'))
        .count()
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn put_decimal(n: usize, dst: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
}

impl Frame {
    /// Encodes the frame for `version` with the default encoder.
    pub fn to_bytes(&self, version: Version) -> Result<bytes::Bytes, EncodeError> {
        Encoder::new(version).to_bytes(self)
    }
}
