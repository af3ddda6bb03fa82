//! Malformed input: each kind of damage gives its own `DecodeError`
//! variant, never a panic, and never unbounded buffering.

use stomp_frame::bytes::BytesMut;
use stomp_frame::{DecodeError, Decoder, Item, Limit, Limits, Version};

/// Decodes `input` whole and one byte at a time; both must fail with the
/// same error, after the same items.
fn fails(version: Version, input: &[u8]) -> DecodeError {
    let whole = run(version, input, input.len().max(1));
    let bytewise = run(version, input, 1);
    assert_eq!(whole, bytewise, "whole vs one byte at a time");
    match whole {
        (_, Some(e)) => e,
        (items, None) => panic!("{:?} decoded to {items:?}", String::from_utf8_lossy(input)),
    }
}

fn run(version: Version, input: &[u8], chunk: usize) -> (Vec<Item>, Option<DecodeError>) {
    let mut dec = Decoder::new(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

#[test]
fn unknown_commands() {
    for input in [
        &b"send\n\n\0"[..],
        b"SEND \n\n\0",
        b" SEND\n\n\0",
        b"HELLO\n\n\0",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\0\0\0\0\n",
        b"\xff\xfe\n\n\0",
    ] {
        for v in Version::ALL {
            let e = fails(v, input);
            assert!(
                matches!(e, DecodeError::UnknownCommand { offset: 0, .. }),
                "{e}"
            );
        }
    }
}

#[test]
fn invalid_utf8_in_name_and_value() {
    let e = fails(Version::V1_2, b"SEND\nk\xff:v\n\n\0");
    assert!(
        matches!(&e, DecodeError::InvalidUtf8 { place, offset: 5 } if place == "header name"),
        "{e}"
    );
    let e = fails(Version::V1_0, b"SEND\nk:\xc3\x28\n\n\0");
    assert!(
        matches!(&e, DecodeError::InvalidUtf8 { place, .. } if place.contains("\"k\"")),
        "{e}"
    );
}

#[test]
fn missing_colon_and_empty_name() {
    let e = fails(Version::V1_2, b"SEND\ndestination /q\n\n\0");
    assert!(
        matches!(&e, DecodeError::MissingColon { line, offset: 5 } if line == "destination /q"),
        "{e}"
    );
    let e = fails(Version::V1_1, b"SEND\n:v\n\n\0");
    assert!(
        matches!(e, DecodeError::EmptyHeaderName { offset: 5 }),
        "{e}"
    );
}

#[test]
fn undefined_escapes() {
    for (v, input, seq) in [
        (Version::V1_2, &b"SEND\nk:a\\tb\n\n\0"[..], "\\t"),
        (Version::V1_2, b"SEND\nk:a\\\n\n\0", "\\"),
        (Version::V1_1, b"SEND\nk:a\\r\n\n\0", "\\r"),
        (Version::V1_2, b"SEND\nk\\x:v\n\n\0", "\\x"),
    ] {
        let e = fails(v, input);
        assert!(
            matches!(&e, DecodeError::InvalidEscape { sequence, .. } if sequence == seq),
            "{e}"
        );
    }
    // 1.0 has no escaping: the same bytes are a plain value.
    let (items, err) = run(Version::V1_0, b"SEND\nk:a\\tb\n\n\0", 64);
    assert_eq!(err, None);
    let Item::Frame(f) = &items[0] else { panic!() };
    assert_eq!(f.headers.get("k"), Some("a\\tb"));
}

#[test]
fn invalid_content_lengths() {
    for value in ["-1", "+5", " 5", "5 ", "0x10", "1.5", "", "five"] {
        let input = format!("SEND\ncontent-length:{value}\n\nhello\0");
        let e = fails(Version::V1_2, input.as_bytes());
        assert!(
            matches!(&e, DecodeError::InvalidContentLength { value: v, offset: 0 } if v == value),
            "{value:?}: {e}"
        );
    }
}

#[test]
fn missing_nul_after_counted_body() {
    let e = fails(Version::V1_2, b"SEND\ncontent-length:3\n\nhello\0");
    assert!(
        matches!(
            e,
            DecodeError::MissingNul {
                length: 3,
                found: b'l',
                offset: 26
            }
        ),
        "{e}"
    );
}

#[test]
fn bodies_where_none_is_allowed() {
    for input in [
        &b"SUBSCRIBE\nid:0\ndestination:/q\n\nbody\0"[..],
        b"DISCONNECT\ncontent-length:4\n\nbody\0",
        b"RECEIPT\nreceipt-id:1\n\n\n\0",
    ] {
        let e = fails(Version::V1_2, input);
        assert!(matches!(e, DecodeError::BodyNotAllowed { .. }), "{e}");
    }
}

/// Feeds `stream` in `chunk`-byte reads with the default limits and
/// returns the error it must end with. After every read is decoded the
/// buffer holds no more than `bound` bytes (a limit plus one read), and
/// the error comes before `bound + chunk` bytes were fed.
fn bounded_error(
    version: Version,
    stream: impl Iterator<Item = Vec<u8>>,
    bound: usize,
) -> DecodeError {
    let mut dec = Decoder::new(version);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    for piece in stream {
        fed += piece.len();
        buf.extend_from_slice(&piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return e,
            }
        }
        assert!(
            buf.len() <= bound,
            "{} bytes buffered, bound {bound}",
            buf.len()
        );
    }
    panic!("no error after {fed} bytes");
}

const READ: usize = 4096;
const MIB: usize = 1024 * 1024;

fn reads(first: &[u8], filler: u8, total: usize) -> impl Iterator<Item = Vec<u8>> + use<> {
    let first = first.to_vec();
    std::iter::once(first).chain((0..total.div_ceil(READ)).map(move |_| vec![filler; READ]))
}

fn limit_of(e: &DecodeError) -> Limit {
    match e {
        DecodeError::LimitExceeded { limit, .. } => *limit,
        other => panic!("expected a limit error, got {other}"),
    }
}

#[test]
fn ten_mib_of_garbage_without_newline() {
    let e = bounded_error(Version::V1_2, reads(b"", b'x', 10 * MIB), READ);
    assert!(matches!(e, DecodeError::UnknownCommand { .. }), "{e}");
    // Garbage that starts like a command is cut off at the line limit.
    let e = bounded_error(
        Version::V1_2,
        reads(b"SEND\ndestination:", b'x', 10 * MIB),
        Limits::DEFAULT.max_line_len + READ,
    );
    assert_eq!(limit_of(&e), Limit::LineLength);
}

#[test]
fn never_ending_header_line() {
    let e = bounded_error(
        Version::V1_1,
        reads(b"MESSAGE\nk:", b'v', 10 * MIB),
        Limits::DEFAULT.max_line_len + READ,
    );
    match e {
        DecodeError::LimitExceeded {
            limit: Limit::LineLength,
            value,
            max,
            offset: 0,
        } => {
            assert_eq!(max, 64 * 1024);
            assert!(value > max && value <= max + READ, "{value}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_hundred_thousand_tiny_headers() {
    let tiny = b"a:b\n".repeat(READ / 4);
    let stream = std::iter::once(b"SEND\n".to_vec()).chain(std::iter::repeat_n(tiny, 100));
    let e = bounded_error(Version::V1_2, stream, 2 * READ);
    assert!(
        matches!(
            e,
            DecodeError::LimitExceeded {
                limit: Limit::HeaderCount,
                value: 1001,
                max: 1000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn long_headers_hit_the_frame_limit() {
    // 300 headers of 60 KiB: each line and the count are within limits,
    // the head is not.
    let line = {
        let mut l = b"k:".to_vec();
        l.resize(60 * 1024, b'v');
        l.push(b'\n');
        l
    };
    let stream = std::iter::once(b"SEND\n".to_vec()).chain(std::iter::repeat_n(line, 300));
    let e = bounded_error(
        Version::V1_2,
        stream,
        Limits::DEFAULT.max_frame_len + 61 * 1024,
    );
    assert_eq!(limit_of(&e), Limit::FrameLength);
}

#[test]
fn huge_content_length_in_small_pieces() {
    // Declared beyond the body limit: refused when the head is complete,
    // before any body byte is buffered.
    let head = b"SEND\ndestination:/q\ncontent-length:1099511627776\n\n";
    let pieces = head.chunks(3).map(<[u8]>::to_vec);
    let e = bounded_error(Version::V1_2, pieces.chain(reads(b"", 0, MIB)), 64);
    assert!(
        matches!(
            e,
            DecodeError::LimitExceeded {
                limit: Limit::BodyLength,
                value: 1_099_511_627_776,
                ..
            }
        ),
        "{e}"
    );
    // Within the body limit (16 MiB) but beyond the frame limit (17 MiB)
    // with its 1.2 MiB head: refused as soon as the head is complete.
    let mut head = b"SEND\n".to_vec();
    for _ in 0..20 {
        head.extend_from_slice(b"pad:");
        head.resize(head.len() + 60_000, b'p');
        head.push(b'\n');
    }
    head.extend_from_slice(format!("content-length:{}\n\n", 16 * MIB).as_bytes());
    let head_len = head.len();
    let pieces: Vec<Vec<u8>> = head.chunks(READ).map(<[u8]>::to_vec).collect();
    let e = bounded_error(
        Version::V1_2,
        pieces.into_iter().chain(reads(b"", 0, MIB)),
        head_len,
    );
    match e {
        DecodeError::LimitExceeded {
            limit: Limit::FrameLength,
            value,
            ..
        } => assert_eq!(value, head_len + 16 * MIB),
        other => panic!("{other}"),
    }
}

#[test]
fn endless_body_without_content_length() {
    let e = bounded_error(
        Version::V1_2,
        reads(b"SEND\ndestination:/q\n\n", b'b', 20 * MIB),
        Limits::DEFAULT.max_body_len + READ,
    );
    match e {
        DecodeError::LimitExceeded {
            limit: Limit::BodyLength,
            value,
            ..
        } => assert!(value > 16 * MIB && value <= 16 * MIB + READ, "{value}"),
        other => panic!("{other}"),
    }
}

#[test]
fn endless_heartbeats_buffer_nothing() {
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::new();
    let mut beats = 0;
    for _ in 0..(10 * MIB / READ) {
        buf.extend_from_slice(&b"\r\n".repeat(READ / 2));
        while let Some(item) = dec.decode(&mut buf).unwrap() {
            assert_eq!(item, Item::Heartbeat);
            beats += 1;
        }
        assert!(buf.is_empty());
    }
    assert_eq!(beats, 10 * MIB / 2);
}
