//! Unit tests of the decoder and encoder rules.

use bytes::BytesMut;

use crate::*;

fn decode_all(version: Version, input: &[u8]) -> Result<Vec<Item>, DecodeError> {
    decode_with(Decoder::new(version), input)
}

fn decode_with(mut dec: Decoder, input: &[u8]) -> Result<Vec<Item>, DecodeError> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(item) = dec.decode(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

/// Feeds the input one byte at a time.
fn decode_bytewise(version: Version, input: &[u8]) -> Result<Vec<Item>, DecodeError> {
    let mut dec = Decoder::new(version);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in input {
        buf.extend_from_slice(&[b]);
        while let Some(item) = dec.decode(&mut buf)? {
            out.push(item);
        }
    }
    Ok(out)
}

fn one_frame(version: Version, input: &[u8]) -> Frame {
    let items = decode_all(version, input).unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let whole = match items.into_iter().next() {
        Some(Item::Frame(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    };
    let bytewise = decode_bytewise(version, input).unwrap();
    assert_eq!(bytewise, vec![Item::Frame(whole.clone())]);
    whole
}

fn error(version: Version, input: &[u8]) -> DecodeError {
    let e = decode_all(version, input).unwrap_err();
    assert_eq!(decode_bytewise(version, input).unwrap_err(), e);
    e
}

#[test]
fn spec_example_connect() {
    let f = one_frame(
        Version::V1_2,
        b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0",
    );
    assert_eq!(f.command, Command::Connect);
    assert_eq!(f.accept_version(), Some("1.2"));
    assert_eq!(f.host(), Some("stomp.github.org"));
    assert!(f.body.is_empty());
}

#[test]
fn spec_example_send_with_content_type() {
    let f = one_frame(
        Version::V1_2,
        b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\0",
    );
    assert_eq!(f.destination(), Some("/queue/a"));
    assert_eq!(f.content_type(), Some("text/plain"));
    assert_eq!(&f.body[..], b"hello queue a\n");
}

#[test]
fn spec_example_repeated_header_first_wins() {
    let f = one_frame(
        Version::V1_2,
        b"MESSAGE\nfoo:World\nfoo:Hello\ndestination:/q\nmessage-id:1\nsubscription:0\n\n\0",
    );
    assert_eq!(f.headers.get("foo"), Some("World"));
    assert_eq!(f.headers.get_all("foo").count(), 2);
}

#[test]
fn content_length_body_may_hold_nul() {
    let f = one_frame(
        Version::V1_2,
        b"SEND\ndestination:/q\ncontent-length:5\n\na\0b\0c\0",
    );
    assert_eq!(&f.body[..], b"a\0b\0c");
}

#[test]
fn content_length_must_be_followed_by_nul() {
    let e = error(
        Version::V1_2,
        b"SEND\ndestination:/q\ncontent-length:2\n\nabc\0",
    );
    assert!(
        matches!(
            e,
            DecodeError::MissingNul {
                length: 2,
                found: b'c',
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_content_lengths() {
    for v in ["-1", "+1", "", "1.5", "0x10", " 1"] {
        let input = format!("SEND\ndestination:/q\ncontent-length:{v}\n\n\0");
        let e = error(Version::V1_2, input.as_bytes());
        assert!(
            matches!(e, DecodeError::InvalidContentLength { ref value, .. } if value == v),
            "{v}: {e}"
        );
    }
}

#[test]
fn crlf_line_endings_in_1_2() {
    let f = one_frame(Version::V1_2, b"SEND\r\ndestination:/q\r\nx:y\n\r\nbody\0");
    assert_eq!(f.destination(), Some("/q"));
    assert_eq!(f.headers.get("x"), Some("y"));
    assert_eq!(&f.body[..], b"body");
}

#[test]
fn a_cr_inside_a_1_2_header_line_is_an_error() {
    // 1.2: header-name and header-value are "any OCTET except CR or LF or :".
    for input in [
        &b"SEND\ndestination:/q\nx:a\rb\n\n\0"[..],
        b"SEND\ndestination:/q\nx\ry:b\r\n\r\n\0",
        b"SEND\r\ndestination:/q\r\nx:a\r\r\n\r\n\0",
    ] {
        let e = error(Version::V1_2, input);
        assert!(
            matches!(e, DecodeError::BareCarriageReturn { offset, .. } if offset > 0),
            "{input:?}: {e}"
        );
    }
    // Not escaped, and decoded before the version is known: CONNECT's
    // values are taken as they are.
    let f = one_frame(
        Version::V1_2,
        b"CONNECT\naccept-version:1.2\nhost:h\npasscode:a\rb\n\n\0",
    );
    assert_eq!(f.headers.get("passcode"), Some("a\rb"));
    // A server's frame is taken as it comes: a client decoding a MESSAGE
    // from a broker that passed a CR through keeps its connection.
    let f = one_frame(Version::V1_2, b"MESSAGE\nx:a\rb\n\n\0");
    assert_eq!(f.headers.get("x"), Some("a\rb"));
}

#[test]
fn crlf_ends_1_1_lines_too_but_other_crs_stay() {
    // As RabbitMQ and ActiveMQ read it: a CRLF client's destination is /q.
    let f = one_frame(Version::V1_1, b"SEND\r\ndestination:/q\r\nx:a\rb\n\r\n\0");
    assert_eq!(f.destination(), Some("/q"));
    assert_eq!(f.headers.get("x"), Some("a\rb"));
    // So a 1.1 value cannot end in CR: the encoder says so.
    let f = Frame::send("/q").header("x", "a\r");
    let e = Encoder::new(Version::V1_1).to_bytes(&f).unwrap_err();
    assert!(matches!(e, EncodeError::Unencodable { .. }), "{e}");
    let f = Frame::send("/q").header("x", "a\rb");
    let out = Encoder::new(Version::V1_1).to_bytes(&f).unwrap();
    assert_eq!(
        one_frame(Version::V1_1, &out).headers.get("x"),
        Some("a\rb")
    );
}

#[test]
fn heartbeats_and_eols_after_nul() {
    let items = decode_all(
        Version::V1_2,
        b"\n\r\nSEND\ndestination:/q\n\nx\0\n\n\r\nSEND\ndestination:/r\n\n\0",
    )
    .unwrap();
    let kinds: Vec<_> = items
        .iter()
        .map(|i| match i {
            Item::Heartbeat => "hb".to_owned(),
            Item::Frame(f) => f.destination().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(kinds, ["hb", "hb", "/q", "hb", "hb", "hb", "/r"]);
}

#[test]
fn escaping_1_1_and_1_2() {
    let input =
        b"MESSAGE\ndestination:/q\nk\\cey:a\\nb\\\\c\\cd\nmessage-id:1\nsubscription:1\n\n\0";
    for v in [Version::V1_1, Version::V1_2] {
        let f = one_frame(v, input);
        assert_eq!(f.headers.get("k:ey"), Some("a\nb\\c:d"));
    }
    let f = one_frame(Version::V1_2, b"MESSAGE\nr:a\\rb\n\n\0");
    assert_eq!(f.headers.get("r"), Some("a\rb"));
    // \r is not an escape in 1.1.
    let e = error(Version::V1_1, b"MESSAGE\nr:a\\rb\n\n\0");
    assert!(matches!(e, DecodeError::InvalidEscape { ref sequence, .. } if sequence == "\\r"));
}

#[test]
fn undefined_escape_is_an_error() {
    for v in [Version::V1_1, Version::V1_2] {
        let e = error(v, b"SEND\ndestination:/q\nfoo:a\\tb\n\n\0");
        match e {
            DecodeError::InvalidEscape {
                header, sequence, ..
            } => {
                assert_eq!((header.as_str(), sequence.as_str()), ("foo", "\\t"));
            }
            other => panic!("{other}"),
        }
        let e = error(v, b"SEND\ndestination:/q\nfoo:a\\\n\n\0");
        assert!(matches!(e, DecodeError::InvalidEscape { ref sequence, .. } if sequence == "\\"));
    }
}

#[test]
fn no_escaping_in_1_0() {
    let f = one_frame(
        Version::V1_0,
        b"SEND\ndestination:/queue/a:b\nx:a\\tb\n\n\0",
    );
    assert_eq!(f.destination(), Some("/queue/a:b"));
    assert_eq!(f.headers.get("x"), Some("a\\tb"));
}

#[test]
fn no_escaping_in_connect_and_connected() {
    let f = one_frame(
        Version::V1_2,
        b"CONNECT\nlogin:u\npasscode:pa:ss\\c\\t\n\n\0",
    );
    assert_eq!(f.passcode(), Some("pa:ss\\c\\t"));
    let f = one_frame(Version::V1_2, b"CONNECTED\nversion:1.2\nserver:a\\b\n\n\0");
    assert_eq!(f.server(), Some("a\\b"));
}

#[test]
fn values_split_at_first_colon_and_are_not_trimmed() {
    let f = one_frame(
        Version::V1_2,
        b"SEND\ndestination:/q\n foo :bar:baz  \nempty:\n\n\0",
    );
    assert_eq!(f.headers.get(" foo "), Some("bar:baz  "));
    assert_eq!(f.headers.get("empty"), Some(""));
}

#[test]
fn body_only_on_send_message_error() {
    let e = error(Version::V1_2, b"SUBSCRIBE\nid:0\ndestination:/q\n\nbody\0");
    assert!(matches!(
        e,
        DecodeError::BodyNotAllowed {
            command: Command::Subscribe,
            ..
        }
    ));
    let e = error(Version::V1_2, b"ACK\nid:0\ncontent-length:3\n\nabc\0");
    assert!(matches!(
        e,
        DecodeError::BodyNotAllowed {
            command: Command::Ack,
            ..
        }
    ));
    // An explicit empty body is fine.
    let f = one_frame(
        Version::V1_2,
        b"BEGIN\ntransaction:t\ncontent-length:0\n\n\0",
    );
    assert_eq!(f.transaction(), Some("t"));
    for c in ["SEND", "MESSAGE", "ERROR"] {
        let f = one_frame(Version::V1_2, format!("{c}\n\nbody\0").as_bytes());
        assert_eq!(&f.body[..], b"body");
    }
}

#[test]
fn commands_are_case_sensitive() {
    let e = error(Version::V1_2, b"send\ndestination:/q\n\n\0");
    assert!(
        matches!(e, DecodeError::UnknownCommand { ref command, offset: 0 } if command == "send")
    );
}

#[test]
fn garbage_is_rejected_early() {
    // No newline at all: rejected as soon as the line is longer than any command.
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1"[..]);
    let e = dec.decode(&mut buf).unwrap_err();
    assert!(matches!(e, DecodeError::UnknownCommand { .. }), "{e}");
}

#[test]
fn invalid_utf8_in_headers() {
    let e = error(Version::V1_2, b"SEND\ndestination:/q\xff\n\n\0");
    assert!(
        matches!(e, DecodeError::InvalidUtf8 { ref place, .. } if place.contains("destination")),
        "{e}"
    );
    let e = error(Version::V1_2, b"SEND\nd\xffst:/q\n\n\0");
    assert!(
        matches!(e, DecodeError::InvalidUtf8 { ref place, .. } if place == "header name"),
        "{e}"
    );
    let e = error(Version::V1_2, b"SE\xffD\n\n\0");
    assert!(matches!(e, DecodeError::UnknownCommand { .. }), "{e}");
}

#[test]
fn header_line_without_colon_or_name() {
    let e = error(Version::V1_2, b"SEND\ndestination\n\n\0");
    assert!(
        matches!(e, DecodeError::MissingColon { ref line, offset: 5 } if line == "destination"),
        "{e}"
    );
    let e = error(Version::V1_2, b"SEND\n:x\n\n\0");
    assert!(
        matches!(e, DecodeError::EmptyHeaderName { offset: 5 }),
        "{e}"
    );
}

#[test]
fn error_offsets_count_from_stream_start() {
    let input = b"SEND\ndestination:/q\n\n\0\nSEND\nbad\n\n\0";
    let e = error(Version::V1_2, input);
    assert!(
        matches!(e, DecodeError::MissingColon { offset: 28, .. }),
        "{e}"
    );
}

fn small_limits() -> Limits {
    Limits {
        max_line_len: 32,
        max_headers: 3,
        max_body_len: 10,
        max_frame_len: 100,
    }
}

fn limit_error(input: &[u8]) -> (Limit, usize, usize) {
    match decode_with(Decoder::with_limits(Version::V1_2, small_limits()), input).unwrap_err() {
        DecodeError::LimitExceeded {
            limit, value, max, ..
        } => (limit, value, max),
        other => panic!("{other}"),
    }
}

#[test]
fn limits_are_typed_errors() {
    let long = format!("SEND\nx:{}\n\n\0", "a".repeat(40));
    assert_eq!(limit_error(long.as_bytes()), (Limit::LineLength, 42, 32));
    // A line that never ends is cut off at the limit, not buffered.
    let endless = format!("SEND\nx:{}", "a".repeat(40));
    assert_eq!(limit_error(endless.as_bytes()).0, Limit::LineLength);
    assert_eq!(
        limit_error(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0"),
        (Limit::HeaderCount, 4, 3)
    );
    assert_eq!(
        limit_error(b"SEND\ncontent-length:11\n\n"),
        (Limit::BodyLength, 11, 10)
    );
    assert_eq!(
        limit_error(b"SEND\n\n01234567890"),
        (Limit::BodyLength, 11, 10)
    );
    let big_head = format!("SEND\na:{0}\nb:{0}\nc:{0}\n\n\0", "x".repeat(30));
    assert_eq!(limit_error(big_head.as_bytes()).0, Limit::FrameLength);
}

#[test]
fn huge_declared_content_length_is_rejected_before_reading() {
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::from(&b"SEND\ndestination:/q\ncontent-length:104857600\n\n"[..]);
    let e = dec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::LimitExceeded {
                limit: Limit::BodyLength,
                value: 104857600,
                ..
            }
        ),
        "{e}"
    );
    let e = decode_all(
        Version::V1_2,
        b"SEND\ncontent-length:99999999999999999999999999\n\n",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::LimitExceeded {
                limit: Limit::BodyLength,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn body_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(b"SEND\ncontent-length:4\n\nabcd\0");
    let base = buf.as_ptr() as usize;
    let Some(Item::Frame(f)) = Decoder::new(Version::V1_2).decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.body.as_ptr() as usize, base + 23);
}

#[test]
fn large_body_in_small_reads_is_not_rescanned() {
    // Feed 1 MiB without content-length in 4 KiB pieces: the decoder's
    // remembered scan position must advance with the buffer.
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(b"SEND\n\n");
    let chunk = vec![b'x'; 4096];
    for _ in 0..256 {
        buf.extend_from_slice(&chunk);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(b"\0");
    let Some(Item::Frame(f)) = dec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.body.len(), 1 << 20);
    assert!(buf.is_empty());
}

#[test]
fn encoder_escapes_per_version() {
    let f = Frame::send("/q").header("a:b", "x\ny\\z\rw");
    let out = Encoder::new(Version::V1_2).to_bytes(&f).unwrap();
    assert_eq!(
        &out[..],
        b"SEND\ndestination:/q\na\\cb:x\\ny\\\\z\\rw\ncontent-length:0\n\n\0"
    );
    let out = Encoder::new(Version::V1_1).to_bytes(&f).unwrap();
    assert_eq!(
        &out[..],
        b"SEND\ndestination:/q\na\\cb:x\\ny\\\\z\rw\ncontent-length:0\n\n\0"
    );
    let e = Encoder::new(Version::V1_0).to_bytes(&f).unwrap_err();
    assert!(matches!(e, EncodeError::Unencodable { .. }), "{e}");
    // CONNECT is never escaped: backslashes and colons go through as they are.
    let c = Frame::new(Command::Connect).header("passcode", "p:a\\ss");
    let out = Encoder::new(Version::V1_2).to_bytes(&c).unwrap();
    assert_eq!(&out[..], b"CONNECT\npasscode:p:a\\ss\n\n\0");
}

#[test]
fn encoder_content_length_policy() {
    let f = Frame::send("/q").header("content-length", "999").body("ab");
    let always = Encoder::new(Version::V1_2);
    assert_eq!(
        &always.to_bytes(&f).unwrap()[..],
        b"SEND\ndestination:/q\ncontent-length:2\n\nab\0"
    );
    let needed = always.with_content_length(ContentLength::WhenNeeded);
    assert_eq!(
        &needed.to_bytes(&f).unwrap()[..],
        b"SEND\ndestination:/q\n\nab\0"
    );
    let nul = Frame::send("/q").body(&b"a\0b"[..]);
    assert_eq!(
        &needed.to_bytes(&nul).unwrap()[..],
        b"SEND\ndestination:/q\ncontent-length:3\n\na\0b\0"
    );
    // No content-length on frames that cannot have a body.
    assert_eq!(
        &always.to_bytes(&Frame::disconnect()).unwrap()[..],
        b"DISCONNECT\n\n\0"
    );
    assert_eq!(
        always.to_bytes(&Frame::disconnect().body("x")),
        Err(EncodeError::BodyNotAllowed(Command::Disconnect))
    );
}

#[test]
fn encoded_len_is_exact() {
    let frames = [
        Frame::send("/q")
            .header("a:b", "x\ny\\z\r")
            .body(vec![0u8; 1234]),
        Frame::connect("h", &Version::ALL),
        Frame::error("boom").body("details"),
    ];
    for v in Version::ALL {
        for ct in [ContentLength::Always, ContentLength::WhenNeeded] {
            let enc = Encoder::new(v).with_content_length(ct);
            for f in &frames {
                if let Ok(b) = enc.to_bytes(f) {
                    assert_eq!(enc.encoded_len(f), b.len(), "{v} {f:?}");
                }
            }
        }
    }
}

#[test]
fn encode_error_appends_nothing() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let bad = Frame::send("/q").header("x", "a\nb");
    assert!(Encoder::new(Version::V1_0).encode(&bad, &mut out).is_err());
    assert_eq!(&out[..], b"prefix");
}

/// Regression (found by the `decode` fuzz target): a NUL-terminated body
/// that arrived in one read skipped the frame-length limit it hit when it
/// arrived in pieces.
#[test]
fn frame_limit_applies_to_nul_terminated_body_in_one_read() {
    let limits = Limits {
        max_frame_len: 16,
        ..Limits::DEFAULT
    };
    let input = b"ERROR\n\n0123456789abcdef\0";
    let whole = decode_with(Decoder::with_limits(Version::V1_2, limits), input).unwrap_err();
    assert!(
        matches!(
            whole,
            DecodeError::LimitExceeded {
                limit: Limit::FrameLength,
                value: 23,
                max: 16,
                offset: 0,
            }
        ),
        "{whole}"
    );
    let mut dec = Decoder::with_limits(Version::V1_2, limits);
    let mut buf = BytesMut::new();
    let bytewise = input.iter().find_map(|&b| {
        buf.extend_from_slice(&[b]);
        dec.decode(&mut buf).err()
    });
    assert!(
        matches!(
            bytewise,
            Some(DecodeError::LimitExceeded {
                limit: Limit::FrameLength,
                ..
            })
        ),
        "{bytewise:?}"
    );
    // Exactly at the limit is fine: 7 head bytes, 8 body bytes and the NUL.
    let ok = decode_with(
        Decoder::with_limits(Version::V1_2, limits),
        b"ERROR\n\n01234567\0",
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
}

#[test]
fn a_swapped_buffer_mid_frame_is_not_a_panic() {
    // Regression: the broker's fuzz harness fed a fresh, shorter buffer after
    // a partial frame and the remembered scan position indexed past its end.
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\nx:"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    let mut fresh = BytesMut::from(&b"SEND\n\nab"[..]);
    assert_eq!(dec.decode(&mut fresh).unwrap(), None);
    let mut short = BytesMut::from(&b"x"[..]);
    assert_eq!(dec.decode(&mut short).unwrap(), None);
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::from(&b"SEND\n\nabcdef"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    let mut fresh = BytesMut::from(&b"a\0"[..]);
    let Some(Item::Frame(f)) = dec.decode(&mut fresh).unwrap() else {
        panic!("expected the body to end at the NUL of the new buffer")
    };
    assert_eq!(&f.body[..], b"a");
}

#[test]
fn stomp_1_0_trims_padding_around_names_and_values() {
    // As written in the 1.0 specification's own examples.
    let input = b"SUBSCRIBE\ndestination: /queue/foo\nack: client\r\n x \t: y \n\n\0";
    let items = decode_all(Version::V1_0, input).unwrap();
    let Item::Frame(f) = &items[0] else { panic!() };
    assert_eq!(f.headers.get("destination"), Some("/queue/foo"));
    assert_eq!(f.headers.get("ack"), Some("client"));
    assert_eq!(f.headers.get("x"), Some("y"));
    // 1.1 and 1.2 keep every byte but the CR of a CRLF.
    let items = decode_all(Version::V1_1, input).unwrap();
    let Item::Frame(f) = &items[0] else { panic!() };
    assert_eq!(f.headers.get("destination"), Some(" /queue/foo"));
    assert_eq!(f.headers.get("ack"), Some(" client"));
    // The 1.0 encoder refuses a name a 1.0 peer would trim, and writes
    // values as they are.
    for v in [" a", "a ", "a\t", "a\r"] {
        let f = Frame::new(Command::Send).header(v, "x");
        let e = Encoder::new(Version::V1_0).to_bytes(&f).unwrap_err();
        assert!(matches!(e, EncodeError::Unencodable { .. }), "{v:?}: {e}");
        assert_eq!(
            Encoder::new(Version::V1_1).to_bytes(&f).is_ok(),
            !v.ends_with('\r'),
            "{v:?}"
        );
        let f = Frame::new(Command::Send).header("k", v);
        let out = Encoder::new(Version::V1_0).to_bytes(&f).unwrap();
        assert!(out.windows(v.len()).any(|w| w == v.as_bytes()), "{v:?}");
    }
}

#[test]
fn stomp_1_0_frames_may_carry_a_body_anywhere() {
    for input in [
        &b"SUBSCRIBE\ndestination:/queue/a\n\nignored\0"[..],
        b"BEGIN\ntransaction:t\ncontent-length:3\n\na\0b\0",
    ] {
        let items = decode_all(Version::V1_0, input).unwrap();
        assert_eq!(items.len(), 1, "{input:?}");
        let e = decode_all(Version::V1_1, input).unwrap_err();
        assert!(matches!(e, DecodeError::BodyNotAllowed { .. }), "{e}");
    }
    // A CONNECT without accept-version is a 1.0 client's, whatever the
    // decoder was made for (a broker decodes CONNECT before it knows).
    for input in [
        &b"CONNECT\nlogin:a\n\nignored\0"[..],
        b"CONNECT\nlogin:a\ncontent-length:3\n\na\0b\0",
    ] {
        for v in Version::ALL {
            assert_eq!(decode_all(v, input).unwrap().len(), 1, "{v} {input:?}");
        }
        let versioned = [&b"CONNECT\naccept-version:1.1,1.2\n"[..], &input[8..]].concat();
        let e = decode_all(Version::V1_2, &versioned).unwrap_err();
        assert!(matches!(e, DecodeError::BodyNotAllowed { .. }), "{e}");
        let stomp = [&b"STOMP"[..], &input[7..]].concat();
        let e = decode_all(Version::V1_2, &stomp).unwrap_err();
        assert!(matches!(e, DecodeError::BodyNotAllowed { .. }), "{e}");
    }
    // The encoder mirrors it, with a content-length for a body with NULs.
    let f = Frame::new(Command::Begin)
        .header("transaction", "t")
        .body(&b"a\0b"[..]);
    let wire = Encoder::new(Version::V1_0).to_bytes(&f).unwrap();
    let items = decode_all(Version::V1_0, &wire).unwrap();
    let Item::Frame(got) = &items[0] else {
        panic!()
    };
    assert_eq!(&got.body[..], b"a\0b");
    let e = Encoder::new(Version::V1_1).to_bytes(&f).unwrap_err();
    assert!(matches!(e, EncodeError::BodyNotAllowed(_)), "{e}");
}

#[test]
fn the_receipt_of_a_frame_that_fails_to_decode_is_kept() {
    let failed = |version: Version, input: &[u8]| {
        let mut dec = Decoder::new(version);
        let mut buf = BytesMut::from(input);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error in {input:?}"),
                Err(_) => return dec.failed_receipt().map(str::to_owned),
            }
        }
    };
    let r = |s: &str| Some(s.to_owned());
    let v = Version::V1_2;
    // Errors found in the head, before and after the receipt line.
    assert_eq!(failed(v, b"SEND\nreceipt:r1\nk:a\\tb\n\n\0"), r("r1"));
    assert_eq!(failed(v, b"SEND\nk:a\\tb\nreceipt:r2\n\n\0"), r("r2"));
    assert_eq!(
        failed(v, b"SEND\nreceipt:r3\ncontent-length:x\n\n\0"),
        r("r3")
    );
    assert_eq!(failed(v, b"SEND\nreceipt:r4\nno colon\n\n\0"), r("r4"));
    // Escaped in 1.2.
    assert_eq!(failed(v, b"SEND\nreceipt:a\\cb\nk:\\t\n\n\0"), r("a:b"));
    // A body where none may be, with and without content-length.
    assert_eq!(failed(v, b"SUBSCRIBE\nreceipt:r5\nid:0\n\nx\0"), r("r5"));
    assert_eq!(
        failed(v, b"BEGIN\nreceipt:r6\ncontent-length:1\n\nx\0"),
        r("r6")
    );
    // A wrong content-length, found in the body.
    assert_eq!(
        failed(v, b"SEND\nreceipt:r7\ncontent-length:1\n\nxy\0"),
        r("r7")
    );
    // A limit crossed before the head is complete.
    let limits = Limits {
        max_headers: 2,
        ..Limits::DEFAULT
    };
    let mut dec = Decoder::with_limits(v, limits);
    let mut buf = BytesMut::from(&b"SEND\nreceipt:r8\na:1\nb:2\n"[..]);
    assert!(dec.decode(&mut buf).is_err());
    assert_eq!(dec.failed_receipt(), Some("r8"));
    // No receipt.
    assert_eq!(failed(v, b"SEND\nk:\\t\n\n\0"), None);
    // An unknown command: its header lines as far as they came (as
    // ActiveMQ answers), not a line cut short, nor one from the body.
    assert_eq!(failed(v, b"FOO\nreceipt:r9\n\n\0"), r("r9"));
    assert_eq!(failed(v, b"send\nx:1\nreceipt:r\\c10\n\n\0"), r("r:10"));
    assert_eq!(failed(v, b"FOO\nreceipt:r1"), None);
    assert_eq!(failed(v, b"FOO\n\nreceipt:r12\n\0"), None);
    // A frame that decodes clears it; the receipt of the next frame is not
    // taken for that of a failed one.
    assert_eq!(
        failed(
            v,
            b"SEND\nreceipt:ok\n\n\0SEND\nk:\\t\n\n\0SEND\nreceipt:next\n\n\0"
        ),
        None
    );
}

/// A `content-length` near `usize::MAX` with no body limit neither
/// overflows nor waits for the body: the frame limit refuses it.
#[test]
fn huge_content_length_without_a_body_limit_is_refused() {
    let limits = Limits {
        max_body_len: usize::MAX,
        ..Limits::DEFAULT
    };
    let input = format!("SEND\ncontent-length:{}\n\n", usize::MAX);
    let e = decode_with(
        Decoder::with_limits(Version::V1_2, limits),
        input.as_bytes(),
    );
    assert!(
        matches!(
            e,
            Err(DecodeError::LimitExceeded {
                limit: Limit::FrameLength,
                value: usize::MAX,
                ..
            })
        ),
        "{e:?}"
    );
}

/// Limits count what the docs say: a line without its EOL (CRLF too), a
/// frame without its NUL.
#[test]
fn limits_count_neither_the_eol_nor_the_nul() {
    let limits = Limits {
        max_line_len: 5,
        max_frame_len: 16,
        ..Limits::DEFAULT
    };
    for input in [&b"SEND\nk:vvv\n\nabcd\0"[..], b"SEND\r\nk:vvv\r\n\r\na\0"] {
        let dec = Decoder::with_limits(Version::V1_2, limits);
        assert!(decode_with(dec, input).is_ok(), "{input:?}");
    }
    let dec = Decoder::with_limits(Version::V1_2, limits);
    assert!(decode_with(dec, b"SEND\nk:vvvv\n\n\0").is_err());
    let dec = Decoder::with_limits(Version::V1_2, limits);
    assert!(decode_with(dec, b"SEND\nk:vvv\n\nabcde\0").is_err());
}

/// `set_version` while a frame is half read: that frame keeps the rules
/// it began with.
#[test]
fn set_version_applies_from_the_next_frame() {
    let mut dec = Decoder::new(Version::V1_2);
    let mut buf = BytesMut::from(&b"SEND\nk:a\\tb\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    dec.set_version(Version::V1_0);
    assert_eq!(dec.version(), Version::V1_0);
    buf.extend_from_slice(b"\n\0SEND\nk: a\\tb\n\n\0");
    assert!(matches!(
        dec.decode(&mut buf),
        Err(DecodeError::InvalidEscape { .. })
    ));
    let mut dec = Decoder::new(Version::V1_2);
    dec.set_version(Version::V1_0);
    let mut buf = BytesMut::from(&b"SEND\nk: a\\tb\n\n\0"[..]);
    let Some(Item::Frame(f)) = dec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.headers.get("k"), Some("a\\tb"));
}

/// 1.0 has no NACK and no STOMP frame; a huge `content-length` reads as
/// `usize::MAX`, as the decoder reads it.
#[test]
fn what_1_0_lacks_is_not_written() {
    let m = Frame::message("/q", "m1", "s0");
    assert_eq!(Frame::nack_for(&m, Version::V1_0), None);
    assert!(Frame::nack_for(&m, Version::V1_1).is_some());
    for c in [Command::Nack, Command::Stomp] {
        let e = Encoder::new(Version::V1_0).to_bytes(&Frame::new(c));
        assert!(matches!(e, Err(EncodeError::NotInVersion { .. })), "{e:?}");
        assert!(Encoder::new(Version::V1_1).to_bytes(&Frame::new(c)).is_ok());
    }
}

/// 1.2's CONNECT and CONNECTED are not escaped, and a 1.2 line has no CR:
/// a CR anywhere in a header there cannot be written.
#[test]
fn no_cr_in_unescaped_1_2_headers() {
    let f = Frame::new(Command::Connected).header("server", "a\rb");
    assert!(Encoder::new(Version::V1_2).to_bytes(&f).is_err());
    assert!(Encoder::new(Version::V1_1).to_bytes(&f).is_ok());
}

/// In 1.0 the receipt of a failed frame is trimmed like its headers.
#[test]
fn failed_receipt_is_trimmed_in_1_0() {
    let mut dec = Decoder::new(Version::V1_0);
    let mut buf = BytesMut::from(&b"SEND\nreceipt : r-7 \ncontent-length:x\n\n\0"[..]);
    assert!(dec.decode(&mut buf).is_err());
    assert_eq!(dec.failed_receipt(), Some("r-7"));
}
