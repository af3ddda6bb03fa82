//! Structure-aware frames: encode, then decode in arbitrary pieces; the
//! frame must come back (the encoder writes its own `content-length`, so
//! that header is ignored; 1.0 values come back trimmed of the spaces, tabs
//! and CRs around them, as 1.0 peers read them). Frames a version cannot represent must be
//! refused with `EncodeError::Unencodable`, appending nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stomp_frame::bytes::BytesMut;
use stomp_frame::{Command, ContentLength, Decoder, EncodeError, Encoder, Frame, Item, Version};

#[derive(Debug, Arbitrary)]
struct Case {
    version: Version,
    when_needed: bool,
    frame: Frame,
    pieces: Vec<u8>,
}

fn without_content_length(f: &Frame) -> Frame {
    let mut f = f.clone();
    f.headers.remove("content-length");
    f
}

/// `f` as a decoder for `version` gives it back, `content-length` aside.
fn as_decoded(f: &Frame, version: Version) -> Frame {
    let f = without_content_length(f);
    if version != Version::V1_0 {
        return f;
    }
    let pad: &[char] = &[' ', '\t', '\r'];
    let mut trimmed = Frame::new(f.command).body(f.body.clone());
    for h in f.headers.iter() {
        trimmed = trimmed.header(h.name(), h.value().trim_matches(pad));
    }
    trimmed
}

fuzz_target!(|case: Case| {
    let policy = if case.when_needed {
        ContentLength::WhenNeeded
    } else {
        ContentLength::Always
    };
    let enc = Encoder::new(case.version).with_content_length(policy);
    let mut wire = BytesMut::from(&b"\n"[..]);
    match enc.encode(&case.frame, &mut wire) {
        Ok(()) => {}
        Err(EncodeError::Unencodable { .. }) => {
            assert_eq!(&wire[..], b"\n", "a failed encode appended bytes");
            return;
        }
        Err(EncodeError::NotInVersion { command, version }) => {
            assert_eq!(version, Version::V1_0);
            assert!(matches!(command, Command::Nack | Command::Stomp));
            assert_eq!(&wire[..], b"\n", "a failed encode appended bytes");
            return;
        }
        Err(e) => panic!("unexpected encode error: {e}"),
    }
    assert_eq!(wire.len(), 1 + enc.encoded_len(&case.frame));
    wire.extend_from_slice(b"\r\n"); // a trailing heart-beat

    let mut dec = Decoder::new(case.version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = &wire[..];
    let mut sizes = case.pieces.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&s| usize::from(s) + 1);
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        buf.extend_from_slice(piece);
        rest = tail;
        while let Some(item) = dec.decode(&mut buf).expect("encoder output decodes") {
            items.push(item);
        }
    }
    assert!(buf.is_empty());
    let [Item::Heartbeat, Item::Frame(got), Item::Heartbeat] = &items[..] else {
        panic!("decoded {items:?}");
    };
    assert_eq!(
        without_content_length(got),
        as_decoded(&case.frame, case.version)
    );
});
