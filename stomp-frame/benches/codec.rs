//! Codec benchmarks: decode and encode of typical and large frames, a
//! 64 MiB body arriving in 4 KiB reads (linear time), and the same inputs
//! decoded by the `stomp-parser` crate for comparison.
//!
//! Run (see the README's "Codec performance" for why the variable):
//! `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 \
//!   cargo bench -p stomp-frame --bench codec -- --warm-up-time 0.5 --measurement-time 1`

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, BenchmarkId, SamplingMode, Throughput};
use stomp_frame::bytes::{Bytes, BytesMut};
use stomp_frame::{ContentLength, Decoder, Encoder, Frame, Item, Limits, Version};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Frames per batch in the small-frame benchmarks.
const BATCH: usize = 1000;
/// The read size of the streamed benchmarks.
const READ: usize = 4 * KIB;

/// Criterion's clock here: the CPU time of the benchmark thread (user and
/// system, so page faults count), not wall time. The machine is shared:
/// while other processes hold the CPU, wall time runs on and CPU time
/// does not.
struct ThreadCpu;

/// A criterion with the [`ThreadCpu`] clock.
type Criterion = criterion::Criterion<ThreadCpu>;

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

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

/// Feeds `wire` to a decoder in 4 KiB reads appended to one read buffer,
/// as a socket driver does (the copy into the buffer is part of the
/// measured time), reserving what `bytes_needed` asks for. Returns the
/// number of frames decoded.
fn feed(wire: &[u8], limits: Limits) -> usize {
    let mut dec = Decoder::with_limits(Version::V1_2, limits);
    let mut buf = BytesMut::with_capacity(8 * KIB);
    let mut frames = 0;
    for chunk in wire.chunks(READ) {
        if let Some(n) = dec.bytes_needed() {
            buf.reserve(n.saturating_sub(buf.len()));
        }
        buf.extend_from_slice(chunk);
        while let Some(item) = dec.decode(&mut buf).expect("valid input") {
            if let Item::Frame(f) = item {
                frames += 1;
                black_box(f);
            }
        }
    }
    frames
}

/// The same reads copied into fresh buffers of `size` bytes, with no
/// decoding: the floor any decoder that keeps the body in place pays.
fn copy_only(wire: &[u8], size: usize) -> usize {
    let mut filled = 0;
    for frame in wire.chunks(size) {
        let mut buf = BytesMut::with_capacity(size);
        for chunk in frame.chunks(READ) {
            buf.extend_from_slice(chunk);
        }
        filled += buf.len();
        black_box(buf.freeze());
    }
    filled
}

/// 64 MiB arriving in 4 KiB reads, as one 64 MiB body or as 64 frames of
/// 1 MiB: if decoding were not linear in the frame size (a body rescanned
/// on every read), the 64 MiB body would take far longer per MiB.
fn decode_streamed(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_streamed_4k_reads");
    // Each iteration moves 64 MiB: ten of them, not criterion's 55.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let limits = Limits {
        max_body_len: 65 * MIB,
        max_frame_len: 65 * MIB,
        ..Limits::DEFAULT
    };
    let total = 64 * MIB;
    for (label, policy) in [
        ("content_length", ContentLength::Always),
        ("no_content_length", ContentLength::WhenNeeded),
    ] {
        for size in [MIB, 64 * MIB] {
            let one = wire(&Frame::send("/queue/bench").body(body(size)), policy);
            let n = total / size;
            let stream: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
            g.throughput(Throughput::Bytes(stream.len() as u64));
            let id = BenchmarkId::new(label, format!("{}MiB_bodies", size / MIB));
            g.bench_function(id, |b| b.iter(|| assert_eq!(feed(&stream, limits), n)));
        }
    }
    let stream = vec![b'x'; total];
    g.throughput(Throughput::Bytes(total as u64));
    for size in [MIB, 64 * MIB] {
        let id = BenchmarkId::new("copy_only", format!("{}MiB_buffers", size / MIB));
        g.bench_function(id, |b| b.iter(|| copy_only(&stream, size)));
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
    let mut c = criterion::Criterion::default()
        .with_measurement(ThreadCpu)
        .configure_from_args();
    decode(&mut c);
    decode_streamed(&mut c);
    encode(&mut c);
    c.final_summary();
}
