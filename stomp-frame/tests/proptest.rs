//! Property tests of the codec: encode-then-decode is the identity, and
//! split points never change what is decoded.

use proptest::prelude::*;
use stomp_frame::bytes::{Bytes, BytesMut};
use stomp_frame::{
    Command, ContentLength, DecodeError, Decoder, EncodeError, Encoder, Frame, Headers, Item,
    Limits, Version,
};

/// Header text rich in the characters escaping is about, unicode, and
/// empty strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-c:\\n\\r\\\\é☃ ]{0,8}",
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

/// Names: mostly a small pool, so repeats happen (including the
/// `content-length` the encoder replaces), else [`text`].
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["destination", "k", "a:b", "content-length", "x\\y", "é"])
            .prop_map(str::to_owned),
        3 => text(),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn policy() -> impl Strategy<Value = ContentLength> {
    prop_oneof![Just(ContentLength::Always), Just(ContentLength::WhenNeeded)]
}

/// Bodies with NULs and newlines in them.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(b'\n'), Just(b'\r'), any::<u8>()],
        0..64,
    )
}

/// Any frame the model can hold; bodies only on commands that allow one.
fn frame() -> impl Strategy<Value = Frame> {
    (
        command(),
        prop::collection::vec((name(), text()), 0..8),
        body(),
    )
        .prop_map(|(command, headers, body)| {
            let mut h = Headers::new();
            h.extend(headers);
            Frame {
                command,
                headers: h,
                body: if command.allows_body() {
                    Bytes::from(body)
                } else {
                    Bytes::new()
                },
            }
        })
}

/// Whether `frame` can be written for `version`, from the specification's
/// rules rather than from the encoder's code: names are never empty;
/// escaped frames can hold anything; unescaped ones (1.0, and CONNECT,
/// STOMP, CONNECTED in every version) cannot hold a LF, nor a colon in a
/// name, and in 1.2 a value cannot end in CR (it would read as CRLF). In
/// 1.1 no name or value ends in CR, escaped or not (CRLF ends a line).
/// 1.0 names do not start or end with a space, tab or CR (1.0 peers trim
/// them, and so does the decoder; values are written padded, and come back
/// trimmed: see `as_decoded`).
fn representable(frame: &Frame, version: Version) -> bool {
    let escaped = version >= Version::V1_1 && frame.command.is_escaped();
    frame
        .headers
        .iter()
        .filter(|h| h.name() != "content-length")
        .all(|h| {
            let (n, v) = (h.name(), h.value());
            !n.is_empty()
                && (escaped
                    || (!n.contains('\n')
                        && !v.contains('\n')
                        && !n.contains(':')
                        && (version != Version::V1_2 || !(v.contains('\r') || n.contains('\r')))))
                && (version != Version::V1_0 || !padded(n))
                && (version != Version::V1_1 || !(n.ends_with('\r') || v.ends_with('\r')))
        })
}

/// `frame` as a decoder for `version` gives it back: without
/// `content-length`, and with 1.0 values trimmed.
fn as_decoded(frame: &Frame, version: Version) -> Frame {
    let mut f = without_content_length(frame);
    if version == Version::V1_0 {
        let pad: &[char] = &[' ', '\t', '\r'];
        let mut trimmed = Frame::new(f.command).body(f.body.clone());
        for h in f.headers.iter() {
            trimmed = trimmed.header(h.name(), h.value().trim_matches(pad));
        }
        f = trimmed;
    }
    f
}

fn padded(s: &str) -> bool {
    let pad = [' ', '\t', '\r'];
    s.starts_with(pad) || s.ends_with(pad)
}

fn without_content_length(f: &Frame) -> Frame {
    let mut f = f.clone();
    f.headers.remove("content-length");
    f
}

/// The default limits, or small ones that damaged frames cross often.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::DEFAULT),
        (1usize..40, 0usize..6, 0usize..40, 1usize..120).prop_map(
            |(line, headers, body, frame)| {
                Limits {
                    max_line_len: line,
                    max_headers: headers,
                    max_body_len: body,
                    max_frame_len: frame,
                }
            }
        ),
    ]
}

/// Decodes `input` fed in pieces ending at `cuts` (sorted offsets).
fn decode_pieces(version: Version, input: &[u8], cuts: &[usize]) -> Result<Vec<Item>, DecodeError> {
    let mut dec = Decoder::new(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&input.len()]) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        while let Some(item) = dec.decode(&mut buf)? {
            items.push(item);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(items)
}

fn strip(items: &[Item]) -> Vec<Item> {
    items
        .iter()
        .map(|i| match i {
            Item::Frame(f) => Item::Frame(without_content_length(f)),
            Item::Heartbeat => Item::Heartbeat,
        })
        .collect()
}

/// Rewrites the head of one encoded frame with CRLF line endings (1.2).
fn crlf_head(wire: &[u8]) -> Vec<u8> {
    let head_end = wire
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a head ends with a blank line")
        + 2;
    let mut out = Vec::with_capacity(wire.len() + 16);
    for &b in &wire[..head_end] {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out.extend_from_slice(&wire[head_end..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Encode then decode gives the frame back, or the encoder refuses
    /// exactly the frames the version cannot represent, appending nothing.
    #[test]
    fn encode_then_decode_is_identity(
        frame in frame(),
        version in version(),
        policy in policy(),
    ) {
        let enc = Encoder::new(version).with_content_length(policy);
        let mut wire = BytesMut::from(&b"prefix"[..]);
        match enc.encode(&frame, &mut wire) {
            Ok(()) => {
                prop_assert!(representable(&frame, version), "encoded an unrepresentable frame");
                prop_assert_eq!(wire.len(), 6 + enc.encoded_len(&frame));
                let _ = wire.split_to(6);
                let items = decode_pieces(version, &wire, &[]).unwrap();
                prop_assert_eq!(strip(&items), vec![Item::Frame(as_decoded(&frame, version))]);
                let Item::Frame(got) = &items[0] else { unreachable!() };
                let declared = got.content_length();
                match policy {
                    ContentLength::Always if frame.command.allows_body() => {
                        prop_assert_eq!(declared, Some(frame.body.len()));
                    }
                    _ if frame.body.contains(&0) => {
                        prop_assert_eq!(declared, Some(frame.body.len()));
                    }
                    _ => prop_assert_eq!(declared, None),
                }
            }
            Err(EncodeError::Unencodable { .. }) => {
                prop_assert!(!representable(&frame, version), "refused a representable frame");
                prop_assert_eq!(&wire[..], b"prefix");
            }
            Err(EncodeError::NotInVersion { command, version: v }) => {
                prop_assert_eq!(v, Version::V1_0);
                prop_assert!(matches!(command, Command::Nack | Command::Stomp));
                prop_assert_eq!(&wire[..], b"prefix");
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    /// A stream of frames and heart-beats (CRLF heads and heart-beats under
    /// 1.2) decodes to the same items whatever the split points, and
    /// one byte at a time.
    #[test]
    fn split_points_never_change_the_result(
        version in version(),
        policy in policy(),
        parts in prop::collection::vec((frame(), 0usize..3, any::<bool>()), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let enc = Encoder::new(version).with_content_length(policy);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (frame, beats, crlf) in &parts {
            let crlf = *crlf && version == Version::V1_2;
            for _ in 0..*beats {
                wire.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                expected.push(Item::Heartbeat);
            }
            let Ok(bytes) = enc.to_bytes(frame) else { continue };
            if crlf {
                wire.extend_from_slice(&crlf_head(&bytes));
            } else {
                wire.extend_from_slice(&bytes);
            }
            expected.push(Item::Frame(as_decoded(frame, version)));
        }
        let whole = decode_pieces(version, &wire, &[]).unwrap();
        prop_assert_eq!(strip(&whole), expected);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(&decode_pieces(version, &wire, &cuts).unwrap(), &whole);
        let bytewise: Vec<usize> = (1..wire.len()).collect();
        prop_assert_eq!(&decode_pieces(version, &wire, &bytewise).unwrap(), &whole);
    }

    /// Damaged streams (bytes flipped, dropped or inserted in valid frames)
    /// never panic, and the split points never change the outcome: the same
    /// items, then an error (of the same kind) or none.
    #[test]
    fn damaged_streams_decode_the_same_in_pieces(
        version in version(),
        frames in prop::collection::vec(frame(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        limits in limits(),
    ) {
        let enc = Encoder::new(version);
        let mut wire: Vec<u8> = frames
            .iter()
            .filter_map(|f| enc.to_bytes(f).ok())
            .flat_map(|b| b.to_vec())
            .collect();
        for (at, byte, op) in edits {
            let i = at.index(wire.len() + 1);
            match op {
                0 if i < wire.len() => wire[i] = byte,
                1 if i < wire.len() => { wire.remove(i); }
                _ => wire.insert(i, byte),
            }
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        let run = |cuts: &[usize]| {
            let mut dec = Decoder::with_limits(version, limits);
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            let mut start = 0;
            for &end in cuts.iter().chain([&wire.len()]) {
                buf.extend_from_slice(&wire[start..end.max(start)]);
                start = end.max(start);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => break,
                        Err(e) => {
                            // Which limit, too: it must not depend on the splits.
                            let limit = match &e {
                                DecodeError::LimitExceeded { limit, .. } => Some(*limit),
                                _ => None,
                            };
                            return (items, Some((std::mem::discriminant(&e), limit)));
                        }
                    }
                }
            }
            (items, None)
        };
        prop_assert_eq!(run(&cuts), run(&[]));
    }
}
