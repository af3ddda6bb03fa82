//! Codec benchmarks: decode and encode of typical and large frames, a
//! 64 MiB body arriving in 4 KiB reads (linear time), and the same inputs
//! decoded by the `stomp-parser` crate for comparison.
//!
//! Run: `cargo bench -p stomp-frame --bench codec -- --warm-up-time 0.5 --measurement-time 2`

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use stomp_frame::bytes::{Bytes, BytesMut};
use stomp_frame::{ContentLength, Decoder, Encoder, Frame, Item, Limits, Version};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Frames per batch in the small-frame benchmarks.
const BATCH: usize = 1000;
/// The read size of the streamed benchmarks.
const READ: usize = 4 * KIB;

/// A body of `n` printable bytes (no NUL, so it can go without content-length).
fn body(n: usize) -> Bytes {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The inputs: a name, the frame, and whether it is written with `content-length`.
fn inputs() -> Vec<(&'static str, Frame, ContentLength)> {
    let send = |n| {
        Frame::send("/queue/bench")
            .header("content-type", "text/plain")
            .header("receipt", "r-1")
            .header("priority", "4")
            .body(body(n))
    };
    vec![
        // 5 headers with the content-length the encoder adds.
        ("small_send_100b", send(100), ContentLength::Always),
        ("body_4k", send(4 * KIB), ContentLength::Always),
        ("body_1m_content_length", send(MIB), ContentLength::Always),
        (
            "body_1m_no_content_length",
            send(MIB),
            ContentLength::WhenNeeded,
        ),
        (
            "escaped_headers",
            Frame::send("/queue/a:b")
                .header("note", "line 1\nline 2")
                .header("path", "C:\\temp\\x")
                .header("url", "http://example.org:8080/")
                .header("k:v", "a:b:c")
                .body(body(100)),
            ContentLength::Always,
        ),
    ]
}

fn wire(frame: &Frame, policy: ContentLength) -> Bytes {
    Encoder::new(Version::V1_2)
        .with_content_length(policy)
        .to_bytes(frame)
        .expect("benchmark frames encode")
}

/// How many frames of `len` bytes a batch holds: `BATCH` small ones, or one.
fn batch_for(len: usize) -> usize {
    if len < 16 * KIB { BATCH } else { 1 }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, frame, policy) in inputs() {
        let one = wire(&frame, policy);
        let n = batch_for(one.len());
        let stream: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
        if n > 1 {
            g.throughput(Throughput::Elements(n as u64));
        } else {
            g.throughput(Throughput::Bytes(one.len() as u64));
        }
        let limits = Limits::DEFAULT;
        g.bench_function(BenchmarkId::new("stomp-frame", name), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&stream[..]),
                |buf| {
                    let mut dec = Decoder::with_limits(Version::V1_2, limits);
                    let mut frames = 0;
                    while let Some(item) = dec.decode(buf).expect("valid input") {
                        black_box(&item);
                        frames += usize::from(matches!(item, Item::Frame(_)));
                    }
                    assert_eq!(frames, n);
                },
                BatchSize::LargeInput,
            )
        });
        // stomp-parser parses one complete frame per Vec<u8> it owns.
        g.bench_function(BenchmarkId::new("stomp-parser", name), |b| {
            b.iter_batched_ref(
                || vec![one.to_vec(); n],
                |frames| {
                    for f in frames.drain(..) {
                        let parsed = stomp_parser::client::ClientFrame::try_from(f);
                        assert!(parsed.is_ok());
                        black_box(parsed.ok());
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// A body of `size` bytes arriving in 4 KiB reads, appended to the read
/// buffer as a socket read would (the copy is part of the measured time).
fn decode_streamed(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_streamed_4k_reads");
    g.sample_size(10);
    let limits = Limits {
        max_body_len: 65 * MIB,
        max_frame_len: 65 * MIB,
        ..Limits::DEFAULT
    };
    for size in [MIB, 64 * MIB] {
        let frame = Frame::send("/queue/bench").body(body(size));
        for (label, policy) in [
            ("content_length", ContentLength::Always),
            ("no_content_length", ContentLength::WhenNeeded),
        ] {
            let wire = wire(&frame, policy);
            g.throughput(Throughput::Bytes(wire.len() as u64));
            let id = BenchmarkId::new(label, format!("{}MiB", size / MIB));
            g.bench_function(id, |b| {
                b.iter(|| {
                    let mut dec = Decoder::with_limits(Version::V1_2, limits);
                    let mut buf = BytesMut::with_capacity(8 * KIB);
                    let mut got = None;
                    for chunk in wire.chunks(READ) {
                        if let Some(n) = dec.bytes_needed() {
                            // What a driver does with the hint: one allocation.
                            buf.reserve(n.saturating_sub(buf.len()));
                        }
                        buf.extend_from_slice(chunk);
                        while let Some(item) = dec.decode(&mut buf).expect("valid input") {
                            got = Some(item);
                        }
                    }
                    let Some(Item::Frame(f)) = got else {
                        panic!("no frame")
                    };
                    assert_eq!(f.body.len(), size);
                    black_box(f)
                })
            });
        }
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, frame, policy) in inputs() {
        let enc = Encoder::new(Version::V1_2).with_content_length(policy);
        let len = enc.encoded_len(&frame);
        let n = batch_for(len);
        if n > 1 {
            g.throughput(Throughput::Elements(n as u64));
        } else {
            g.throughput(Throughput::Bytes(len as u64));
        }
        let mut out = BytesMut::with_capacity(len * n);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..n {
                    enc.encode(black_box(&frame), &mut out).expect("encodes");
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    decode(&mut c);
    decode_streamed(&mut c);
    encode(&mut c);
    c.final_summary();
}
