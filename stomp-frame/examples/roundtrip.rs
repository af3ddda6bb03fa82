//! Encodes a few frames for STOMP 1.2, then decodes them from the wire as a
//! socket might deliver it: in small chunks, with heart-beats in between.
//!
//! Run with `cargo run -p stomp-frame --example roundtrip`.

use stomp_frame::bytes::BytesMut;
use stomp_frame::{AckMode, DecodeError, Decoder, EncodeError, Encoder, Frame, Item, Version};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let version = Version::V1_2;
    let frames = [
        Frame::connect("localhost", &Version::ALL),
        Frame::subscribe("0", "/queue/orders", AckMode::ClientIndividual),
        // Header values with ':' and '\n' are escaped on the wire.
        Frame::send("/queue/orders")
            .header("note", "line 1\nline 2: with a colon")
            .header("content-type", "text/plain")
            .body("one pizza"),
        // A binary body with a NUL in it: content-length frames it.
        Frame::send("/queue/bytes").body(&b"\x00\x01\x02"[..]),
        Frame::disconnect().header("receipt", "bye"),
    ];

    // Encode: each frame appended to one buffer, a heart-beat after each.
    let encoder = Encoder::new(version);
    let mut wire = BytesMut::new();
    for frame in &frames {
        encoder.encode(frame, &mut wire)?;
        wire.extend_from_slice(b"\n");
    }
    println!("encoded {} frames into {} bytes", frames.len(), wire.len());

    // Decode from 7-byte chunks, as a read loop would.
    let decoder = &mut Decoder::new(version);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for chunk in wire.chunks(7) {
        buf.extend_from_slice(chunk);
        decode_ready(decoder, &mut buf, &mut decoded)?;
    }
    assert!(buf.is_empty(), "every byte was decoded");

    // The frames come back, plus the content-length the encoder wrote.
    for (sent, got) in frames.iter().zip(&decoded) {
        let mut got = got.clone();
        got.headers.remove("content-length");
        assert_eq!(sent, &got);
    }

    // Not every frame can be written in every version: 1.0 has no escaping.
    let newline = Frame::send("/queue/a").header("note", "two\nlines");
    match Encoder::new(Version::V1_0).encode(&newline, &mut BytesMut::new()) {
        Err(e @ EncodeError::Unencodable { .. }) => println!("1.0 refuses: {e}"),
        other => panic!("expected Unencodable, got {other:?}"),
    }
    Ok(())
}

/// Decodes every complete item in `buf`, printing each one.
fn decode_ready(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    decoded: &mut Vec<Frame>,
) -> Result<(), DecodeError> {
    while let Some(item) = decoder.decode(buf)? {
        match item {
            Item::Heartbeat => println!("(heart-beat)"),
            Item::Frame(frame) => {
                println!("{}", frame.command);
                for h in &frame.headers {
                    println!("  {}: {:?}", h.name(), h.value());
                }
                if !frame.body.is_empty() {
                    println!("  body: {:?}", frame.body);
                }
                decoded.push(frame);
            }
        }
    }
    Ok(())
}
