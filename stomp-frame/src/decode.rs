//! The streaming decoder.
//!
//! The decoder works in two phases per frame, and remembers how far it has
//! scanned in each, so bytes arriving in many small reads are looked at once:
//!
//! 1. **Head**: scan for LF with `memchr`, checking each line's length, the
//!    command (as soon as its line is complete) and the header count as they
//!    go by, and noting where each line ends. At the blank line the head is
//!    split off the buffer, frozen, and its lines (not scanned again) are
//!    parsed with `nom` into headers that are slices of it.
//! 2. **Body**: with `content-length`, wait until that many bytes and the NUL
//!    are buffered (nothing is scanned); without it, `memchr` for the NUL from
//!    where the last read stopped. The body is split off the buffer: no copy.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use memchr::memchr;
use nom::bytes::complete::{tag, take_till};
use nom::combinator::rest;
use nom::sequence::separated_pair;
use nom::{IResult, Parser};

use crate::error::{DecodeError, Limit};
use crate::header::{Header, interned, names};
use crate::{Command, Frame, Headers, Version};

/// Limits on what the decoder buffers. Crossing one is a
/// [`DecodeError::LimitExceeded`] naming it, raised as soon as it is seen
/// (a declared `content-length` is checked before its body is read).
///
/// ```
/// use bytes::BytesMut;
/// use stomp_frame::{DecodeError, Decoder, Limit, Limits, Version};
///
/// let limits = Limits { max_body_len: 1024, ..Limits::DEFAULT };
/// let mut dec = Decoder::with_limits(Version::V1_2, limits);
/// // The head alone is enough to refuse the frame: no body byte is awaited.
/// let mut buf = BytesMut::from(&b"SEND\ndestination:/q\ncontent-length:4096\n\n"[..]);
/// match dec.decode(&mut buf) {
///     Err(DecodeError::LimitExceeded { limit: Limit::BodyLength, value: 4096, max: 1024, .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one command or header line, EOL excluded. Default 64 KiB.
    pub max_line_len: usize,
    /// Headers in one frame. Default 1,000 (as ActiveMQ).
    pub max_headers: usize,
    /// Bytes in one body. Default 16 MiB.
    pub max_body_len: usize,
    /// Bytes in one frame, head and body. Default 17 MiB.
    pub max_frame_len: usize,
}

impl Limits {
    /// The default limits.
    pub const DEFAULT: Limits = Limits {
        max_line_len: 64 * 1024,
        max_headers: 1000,
        max_body_len: 16 * 1024 * 1024,
        max_frame_len: 17 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A bare EOL between frames: a heart-beat (or padding after a NUL).
    Heartbeat,
}

#[derive(Debug)]
enum State {
    /// Looking for the blank line that ends the head.
    Head {
        /// Bytes of the buffer already scanned.
        scanned: usize,
        /// Where the current line starts.
        line_start: usize,
        /// The command, once its line is complete.
        command: Option<Command>,
        /// Header lines seen so far.
        headers: usize,
    },
    /// The head is parsed; waiting for the body.
    Body {
        command: Command,
        headers: Headers,
        head_len: usize,
        length: Option<usize>,
        /// Bytes of the body already scanned for NUL (no content-length).
        scanned: usize,
    },
}

const HEAD_START: State = State::Head {
    scanned: 0,
    line_start: 0,
    command: None,
    headers: 0,
};

/// A streaming, version-aware STOMP decoder.
///
/// Feed it a [`BytesMut`] holding what was read so far and call
/// [`decode`](Decoder::decode) until it returns `Ok(None)`; then read more
/// bytes onto the end of the same buffer and call again. Decoded bytes are
/// split off the front of the buffer.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_frame::{Decoder, Item, Version};
///
/// let mut dec = Decoder::new(Version::V1_2);
/// let mut buf = BytesMut::from(&b"\nSEND\ndestination:/queue/a\n\nhi"[..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Item::Heartbeat));
/// assert_eq!(dec.decode(&mut buf).unwrap(), None); // body not complete yet
/// buf.extend_from_slice(b"!\0");
/// let Some(Item::Frame(f)) = dec.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!(&f.body[..], b"hi!");
/// ```
///
/// Line endings: `CRLF` or `LF` in every version. 1.2 says so; 1.1 ends
/// lines with LF only, but a CR just before a header line's LF is taken as
/// part of the line end there too, as RabbitMQ and ActiveMQ do: a client
/// that writes CRLF would otherwise send to `/queue/a\r` without knowing.
/// A CR anywhere else in a 1.1 value is kept; in a 1.2 client frame
/// (not CONNECT), whose grammar excludes CR from names and values, it is
/// an error. Server frames keep it (a MESSAGE carries what another client
/// sent, and some brokers pass a CR through).
///
/// STOMP 1.0, whose own examples pad header values (`destination:
/// /queue/foo`), gets what ActiveMQ does for it: spaces, tabs and CRs
/// around header names and values are trimmed, and any frame may carry a
/// body (1.0 says SUBSCRIBE's "is ignored"); 1.1 and 1.2 allow neither.
/// A CONNECT without `accept-version` comes from a 1.0 client, whatever
/// version the decoder was made for: it may carry a body too.
///
/// After an error the stream is beyond repair: report it and close.
#[derive(Debug)]
pub struct Decoder {
    version: Version,
    limits: Limits,
    state: State,
    /// Stream offset of the start of the buffer.
    position: u64,
    /// Where the LF of each line of the current head is (the command line's
    /// first, the blank line's not), found while scanning, so parsing the
    /// head does not look for them again. Reused from frame to frame.
    line_ends: Vec<usize>,
    /// The `receipt` header of the frame the last error was found in.
    failed_receipt: Option<String>,
    /// A version set while a frame was half decoded: it applies from the
    /// next frame on.
    next_version: Option<Version>,
}

impl Decoder {
    /// A decoder for `version` with the default limits.
    ///
    /// A server that has not negotiated yet decodes CONNECT with
    /// [`Version::V1_2`] (CONNECT is never escaped) and calls
    /// [`set_version`](Decoder::set_version) once it has. A 1.0 client's
    /// CONNECT (no `accept-version`) then keeps any padding around its
    /// values, which 1.0's own example has (`login: <username>`): trim the
    /// values it uses.
    pub fn new(version: Version) -> Decoder {
        Decoder::with_limits(version, Limits::DEFAULT)
    }

    /// A decoder for `version` with the given limits.
    pub fn with_limits(version: Version, limits: Limits) -> Decoder {
        Decoder {
            version,
            limits,
            state: HEAD_START,
            position: 0,
            line_ends: Vec::new(),
            failed_receipt: None,
            next_version: None,
        }
    }

    /// The version whose rules apply (the one set last: a frame already
    /// half decoded is finished under the rules it began with).
    pub fn version(&self) -> Version {
        self.next_version.unwrap_or(self.version)
    }

    /// Switches to the negotiated version's rules, from the next frame on.
    pub fn set_version(&mut self, version: Version) {
        if matches!(self.state, State::Head { scanned: 0, .. }) {
            self.version = version;
            self.next_version = None;
        } else {
            self.next_version = Some(version);
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Replaces the limits, at once (a frame half decoded is checked
    /// against the new ones from here on): a server may hold a client that
    /// has not logged in yet to smaller ones.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes of the stream decoded so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many bytes the current frame needs in the buffer before the next
    /// call can complete it, when known (a body with `content-length`): a
    /// hint for reserving buffer space in one step.
    pub fn bytes_needed(&self) -> Option<usize> {
        match self.state {
            State::Body {
                length: Some(n), ..
            } => Some(n.saturating_add(1)),
            _ => None,
        }
    }

    /// The `receipt` header of the frame the last [`decode`](Decoder::decode)
    /// error was found in, when the decoder got far enough into it to see
    /// one: a server answers the error with an ERROR whose `receipt-id` is
    /// this (1.1 and 1.2 say it SHOULD). Best effort: the first `receipt`
    /// line of the head, unescaped when its escapes are valid. For an
    /// unknown command, only the header lines already in the buffer when
    /// the command line ended are looked at (the error does not wait for
    /// more), so it depends on how the bytes were split.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use stomp_frame::{Decoder, Version};
    ///
    /// let mut dec = Decoder::new(Version::V1_2);
    /// let mut buf = BytesMut::from(&b"SUBSCRIBE\nreceipt:r-7\nid:0\n\nbody\0"[..]);
    /// assert!(dec.decode(&mut buf).is_err()); // SUBSCRIBE takes no body
    /// assert_eq!(dec.failed_receipt(), Some("r-7"));
    /// ```
    pub fn failed_receipt(&self) -> Option<&str> {
        self.failed_receipt.as_deref()
    }

    /// Decodes the next item from the front of `buf`, or `Ok(None)` when
    /// more bytes are needed. Consumed bytes are removed from `buf`.
    ///
    /// Keep feeding the same buffer: a buffer that is swapped or truncated
    /// mid-frame is a misuse whose result is unspecified (the scan of the
    /// frame starts over), but never a panic.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let result = self.decode_item(buf);
        if result.is_err() && self.failed_receipt.is_none() {
            self.failed_receipt = match &self.state {
                State::Body { headers, .. } => headers.get(names::RECEIPT).map(str::to_owned),
                State::Head {
                    scanned,
                    command: Some(command),
                    ..
                } => Self::receipt_in(
                    self.version,
                    command.is_escaped(),
                    &buf[..(*scanned).min(buf.len())],
                ),
                State::Head { command: None, .. } => None,
            };
        }
        result
    }

    /// The first `receipt` header in the lines of `head` after the command
    /// line and before the blank line, for
    /// [`failed_receipt`](Decoder::failed_receipt).
    fn receipt_in(version: Version, escaped: bool, head: &[u8]) -> Option<String> {
        let v10 = version == Version::V1_0;
        let line = head
            .split(|&b| b == b'\n')
            .skip(1)
            .take_while(|l| !l.is_empty() && *l != b"\r")
            .find_map(|l| {
                let (name, value) = header_fields(l).ok()?.1;
                let name = if v10 { trim_padding(name) } else { name };
                (name == b"receipt").then_some(value)
            })?;
        let line = if v10 {
            trim_padding(line)
        } else {
            line.strip_suffix(b"\r").unwrap_or(line)
        };
        let value = ByteString::try_from(Bytes::copy_from_slice(line)).ok()?;
        if escaped && version >= Version::V1_1 {
            unescape(value.clone(), Some(names::RECEIPT), version, 0)
                .ok()
                .or(Some(value))
                .map(|v| v.to_string())
        } else {
            Some(value.to_string())
        }
    }

    /// Whether a frame of `command` with `headers` may carry a body. STOMP
    /// 1.0 lets any frame have one (it "is ignored" on SUBSCRIBE); 1.1 and
    /// 1.2 only SEND, MESSAGE and ERROR. A CONNECT without `accept-version`
    /// is a 1.0 client's, decoded before the version is known.
    fn allows_body(&self, command: Command, headers: &Headers) -> bool {
        command.allows_body()
            || self.version == Version::V1_0
            || (command == Command::Connect && headers.get(names::ACCEPT_VERSION).is_none())
    }

    fn decode_item(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        self.failed_receipt = None;
        match &mut self.state {
            State::Head { scanned, .. } if *scanned > buf.len() => self.state = HEAD_START,
            State::Body { scanned, .. } if *scanned > buf.len() => *scanned = 0,
            _ => {}
        }
        if matches!(self.state, State::Head { .. }) {
            match self.decode_head(buf)? {
                HeadProgress::NeedMore => return Ok(None),
                HeadProgress::Heartbeat => return Ok(Some(Item::Heartbeat)),
                HeadProgress::Done => {}
            }
        }
        self.decode_body(buf)
    }

    fn limit(&self, limit: Limit, value: usize, max: usize) -> DecodeError {
        DecodeError::LimitExceeded {
            limit,
            value,
            max,
            offset: self.position,
        }
    }

    /// The first limit crossed by the line that starts at `start` and runs
    /// to the end of `buf` (its LF not included), had the bytes come one at
    /// a time: a command line too long for any command, a line over
    /// `max_line_len` (a CR at the end does not count: it may be the start
    /// of a CRLF), a head over `max_frame_len`.
    #[cold]
    #[inline(never)]
    fn crossing(
        limits: &Limits,
        position: u64,
        buf: &[u8],
        start: usize,
        command_seen: bool,
    ) -> Option<DecodeError> {
        let limit = |limit, value, max| DecodeError::LimitExceeded {
            limit,
            value,
            max,
            offset: position,
        };
        let end = buf.len();
        // Buffer lengths at which each would be seen.
        let command_at = (!command_seen && end - start > Command::MAX_LEN + 1)
            .then_some(start + Command::MAX_LEN + 2);
        let line_at = start
            .checked_add(limits.max_line_len)
            .and_then(|at| at.checked_add(1 + usize::from(buf.get(at) == Some(&b'\r'))))
            .filter(|&at| at <= end);
        let frame_at = limits
            .max_frame_len
            .checked_add(1)
            .filter(|&at| at > start && at <= end);
        let first = [command_at, line_at, frame_at]
            .into_iter()
            .flatten()
            .min()?;
        Some(if command_at == Some(first) {
            unknown_command(&buf[start..end], position)
        } else if line_at == Some(first) {
            let line = &buf[start..end];
            let len = line.len() - usize::from(line.ends_with(b"\r"));
            limit(Limit::LineLength, len, limits.max_line_len)
        } else {
            limit(Limit::FrameLength, end, limits.max_frame_len)
        })
    }

    fn decode_head(&mut self, buf: &mut BytesMut) -> Result<HeadProgress, DecodeError> {
        let State::Head {
            scanned,
            line_start,
            command,
            headers,
        } = &mut self.state
        else {
            unreachable!("decode_head called in the body state");
        };
        if *scanned == 0 {
            if let Some(v) = self.next_version.take() {
                self.version = v;
            }
            let eol = match buf.first() {
                None => return Ok(HeadProgress::NeedMore),
                Some(b'\n') => 1,
                Some(b'\r') => match buf.get(1) {
                    None => return Ok(HeadProgress::NeedMore),
                    Some(b'\n') => 2,
                    Some(_) => 0,
                },
                Some(_) => 0,
            };
            if eol > 0 {
                buf.advance(eol);
                self.position += eol as u64;
                return Ok(HeadProgress::Heartbeat);
            }
            self.line_ends.clear();
        }
        let limits = self.limits;
        loop {
            let Some(i) = memchr(b'\n', &buf[*scanned..]) else {
                *scanned = buf.len();
                let seen = command.is_some();
                if let Some(e) = Self::crossing(&limits, self.position, buf, *line_start, seen) {
                    return Err(e);
                }
                return Ok(HeadProgress::NeedMore);
            };
            let nl = *scanned + i;
            if nl - *line_start > limits.max_line_len
                || nl > limits.max_frame_len
                || (command.is_none() && nl - *line_start > Command::MAX_LEN + 1)
            {
                let seen = command.is_some();
                if let Some(e) =
                    Self::crossing(&limits, self.position, &buf[..nl], *line_start, seen)
                {
                    return Err(e);
                }
            }
            if nl + 1 > limits.max_frame_len {
                let (v, m) = (nl + 1, limits.max_frame_len);
                return Err(self.limit(Limit::FrameLength, v, m));
            }
            let line = &buf[*line_start..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match command {
                None => match Command::from_bytes(line) {
                    Some(c) => {
                        *command = Some(c);
                        self.line_ends.push(nl);
                    }
                    None => {
                        // Its header lines as far as they came (escaped, as
                        // most frames are), for `failed_receipt`.
                        let lines = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                        self.failed_receipt =
                            Self::receipt_in(self.version, true, &buf[*line_start..lines]);
                        return Err(unknown_command(line, self.position));
                    }
                },
                Some(_) if line.is_empty() => {
                    let head_len = nl + 1;
                    let command = command.expect("command line seen");
                    let head = buf.split_to(head_len).freeze();
                    let (headers, length) = match self.check_head(command, &head) {
                        Ok(parsed) => parsed,
                        Err((e, receipt)) => {
                            // The head is gone from the buffer: start over
                            // so that `decode` does not look for a receipt
                            // in what follows it.
                            self.state = HEAD_START;
                            self.failed_receipt = receipt;
                            return Err(e);
                        }
                    };
                    self.position += head_len as u64;
                    self.state = State::Body {
                        command,
                        headers,
                        head_len,
                        length,
                        scanned: 0,
                    };
                    return Ok(HeadProgress::Done);
                }
                Some(_) => {
                    self.line_ends.push(nl);
                    *headers += 1;
                    if *headers > limits.max_headers {
                        let (v, m) = (*headers, limits.max_headers);
                        return Err(self.limit(Limit::HeaderCount, v, m));
                    }
                }
            }
            *line_start = nl + 1;
            *scanned = nl + 1;
        }
    }

    /// Parses a complete head and checks its body's declared length
    /// against the command and the limits; an error comes with the frame's
    /// `receipt` header, when it has one.
    fn check_head(
        &self,
        command: Command,
        head: &Bytes,
    ) -> Result<(Headers, Option<usize>), (DecodeError, Option<String>)> {
        let (headers, length) = self.parse_head(command, head).map_err(|e| {
            (
                e,
                Self::receipt_in(self.version, command.is_escaped(), head),
            )
        })?;
        let receipt = || headers.get(names::RECEIPT).map(str::to_owned);
        if let Some(n) = length {
            let head_len = head.len();
            if n > 0 && !self.allows_body(command, &headers) {
                let offset = self.position + head_len as u64;
                return Err((DecodeError::BodyNotAllowed { command, offset }, receipt()));
            }
            let max = self.limits.max_body_len;
            if n > max {
                return Err((self.limit(Limit::BodyLength, n, max), receipt()));
            }
            let max = self.limits.max_frame_len;
            if head_len.saturating_add(n) > max {
                return Err((
                    self.limit(Limit::FrameLength, head_len.saturating_add(n), max),
                    receipt(),
                ));
            }
        }
        Ok((headers, length))
    }

    /// Parses a complete head (command line, header lines, blank line).
    /// Returns the headers and the first `content-length`, if any.
    fn parse_head(
        &self,
        command: Command,
        head: &Bytes,
    ) -> Result<(Headers, Option<usize>), DecodeError> {
        let escaped = command.is_escaped() && self.version >= Version::V1_1;

        let mut headers = Headers::with_capacity(self.line_ends.len() - 1);
        let mut length = None;
        for pair in self.line_ends.windows(2) {
            let (start, end) = (pair[0] + 1, pair[1]);
            let offset = self.position + start as u64;
            let raw = &head[start..end];
            // A header line is never blank, so a final CR belongs to the EOL
            // (in every version: see the type's docs).
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            // 1.2: a name or value holds no CR. Checked in the frames a
            // client sends (a broker refuses them); CONNECT's values are not
            // escaped and it is decoded before its version is known, and a
            // server's frames are taken as they come (a MESSAGE carries what
            // another client sent: ActiveMQ passes a CR through).
            if escaped
                && self.version == Version::V1_2
                && command.is_client_command()
                && memchr(b'\r', raw).is_some()
            {
                return Err(DecodeError::BareCarriageReturn {
                    line: lossy_prefix(raw),
                    offset,
                });
            }
            let Ok((_, (name, value))) = header_fields(raw) else {
                return Err(DecodeError::MissingColon {
                    line: lossy_prefix(raw),
                    offset,
                });
            };
            // 1.0's own examples pad values (`destination: /queue/foo`),
            // and 1.0 peers trim or pad at will; 1.1 and 1.2 forbid both.
            let (name, value) = if self.version == Version::V1_0 {
                (trim_padding(name), trim_padding(value))
            } else {
                (name, value)
            };
            if name.is_empty() {
                return Err(DecodeError::EmptyHeaderName { offset });
            }
            let name = match interned(name) {
                Some(known) => known,
                None => {
                    let raw_name = text(head, name, || "header name".to_owned(), offset)?;
                    if escaped {
                        unescape(raw_name, None, self.version, offset)?
                    } else {
                        raw_name
                    }
                }
            };
            let value = text(
                head,
                value,
                || format!("value of header {:?}", &*name),
                offset,
            )?;
            let value = if escaped {
                unescape(value, Some(&name), self.version, offset)?
            } else {
                value
            };
            if length.is_none() && &*name == names::CONTENT_LENGTH {
                length = Some(parse_length(&value).ok_or_else(|| {
                    DecodeError::InvalidContentLength {
                        value: value.to_string(),
                        offset: self.position,
                    }
                })?);
            }
            headers.push_header(Header::new(name, value));
        }
        Ok((headers, length))
    }

    fn decode_body(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let body_allowed = match &self.state {
            State::Body {
                command, headers, ..
            } => self.allows_body(*command, headers),
            State::Head { .. } => unreachable!("decode_body called in the head state"),
        };
        let State::Body {
            command,
            head_len,
            length,
            scanned,
            ..
        } = &mut self.state
        else {
            unreachable!("decode_body called in the head state");
        };
        let limits = self.limits;
        let body_len = match *length {
            Some(n) => {
                if buf.len() <= n {
                    return Ok(None);
                }
                if buf[n] != 0 {
                    return Err(DecodeError::MissingNul {
                        length: n,
                        found: buf[n],
                        offset: self.position + n as u64,
                    });
                }
                n
            }
            None if !body_allowed => match buf.first() {
                None => return Ok(None),
                Some(0) => 0,
                Some(_) => {
                    return Err(DecodeError::BodyNotAllowed {
                        command: *command,
                        offset: self.position,
                    });
                }
            },
            None => match memchr(0, &buf[*scanned..]) {
                Some(i) => *scanned + i,
                None => {
                    *scanned = buf.len();
                    let offset = self.position - *head_len as u64;
                    return match body_limit(&limits, *head_len, *scanned, offset) {
                        Some(e) => Err(e),
                        None => Ok(None),
                    };
                }
            },
        };
        // A NUL-terminated body found in one read obeys the limits as it
        // does when it arrives in pieces.
        let offset = self.position - *head_len as u64;
        if let Some(e) = body_limit(&limits, *head_len, body_len, offset) {
            return Err(e);
        }
        let body = buf.split_to(body_len).freeze();
        buf.advance(1);
        self.position += body_len as u64 + 1;
        let State::Body {
            command, headers, ..
        } = std::mem::replace(&mut self.state, HEAD_START)
        else {
            unreachable!()
        };
        Ok(Some(Item::Frame(Frame {
            command,
            headers,
            body,
        })))
    }
}

/// The first limit a body of `len` bytes (so far) crosses, had it come a
/// byte at a time: the body limit, or the frame limit (head and body); the
/// body limit on a tie.
fn body_limit(limits: &Limits, head_len: usize, len: usize, offset: u64) -> Option<DecodeError> {
    let body_at = limits.max_body_len.saturating_add(1);
    let frame_at = limits
        .max_frame_len
        .saturating_sub(head_len)
        .saturating_add(1);
    if len < body_at.min(frame_at) {
        return None;
    }
    let (limit, value, max) = if body_at <= frame_at {
        (Limit::BodyLength, len, limits.max_body_len)
    } else {
        (Limit::FrameLength, head_len + len, limits.max_frame_len)
    };
    Some(DecodeError::LimitExceeded {
        limit,
        value,
        max,
        offset,
    })
}

enum HeadProgress {
    NeedMore,
    Heartbeat,
    Done,
}

/// `name:value`, split at the first colon; later colons stay in the value.
fn header_fields(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    separated_pair(take_till(|b| b == b':'), tag(&b":"[..]), rest).parse(line)
}

/// A UTF-8 slice of the head, shared (no copy).
fn text(
    head: &Bytes,
    part: &[u8],
    place: impl FnOnce() -> String,
    offset: u64,
) -> Result<ByteString, DecodeError> {
    ByteString::try_from(head.slice_ref(part)).map_err(|_| DecodeError::InvalidUtf8 {
        place: place(),
        offset,
    })
}

/// Undoes 1.1/1.2 escaping; `s` is returned as is when it has no backslash.
/// `header` names the header whose value `s` is; `None` when `s` is a name.
#[inline]
fn unescape(
    s: ByteString,
    header: Option<&str>,
    version: Version,
    offset: u64,
) -> Result<ByteString, DecodeError> {
    if !s.as_bytes().contains(&b'\\') {
        return Ok(s);
    }
    unescape_slow(&s, header, version, offset)
}

/// [`unescape`] of a text that holds a backslash (kept out of line: the
/// fast path above runs for every header).
#[inline(never)]
fn unescape_slow(
    s: &str,
    header: Option<&str>,
    version: Version,
    offset: u64,
) -> Result<ByteString, DecodeError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some('r') if version >= Version::V1_2 => out.push('\r'),
            other => {
                return Err(DecodeError::InvalidEscape {
                    header: header.unwrap_or(s).to_owned(),
                    sequence: other.map_or_else(|| "\\".to_owned(), |c| format!("\\{c}")),
                    offset,
                });
            }
        }
    }
    Ok(ByteString::from(out))
}

/// `b` without the spaces, tabs and CRs around it (STOMP 1.0 headers).
fn trim_padding(b: &[u8]) -> &[u8] {
    let pad = |c: &u8| matches!(c, b' ' | b'\t' | b'\r');
    let start = b.iter().position(|c| !pad(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !pad(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

/// A `content-length` value: ASCII digits only.
fn parse_length(v: &str) -> Option<usize> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for usize is as good as "too long": saturate so the
    // body limit reports it.
    Some(v.parse().unwrap_or(usize::MAX))
}

fn lossy_prefix(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
    if b.len() > 64 {
        s.push('…');
    }
    s
}

fn unknown_command(line: &[u8], offset: u64) -> DecodeError {
    DecodeError::UnknownCommand {
        command: lossy_prefix(&line[..line.len().min(Command::MAX_LEN + 1)]),
        offset,
    }
}
