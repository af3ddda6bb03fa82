//! Queue throughput, 1 producer + 1 consumer, raw STOMP over TCP.
//!
//! ```sh
//! cargo run --release -p stomp-broker --example throughput -- [MESSAGES] [BODY_BYTES] [ADDR]
//! ```
//!
//! Without `ADDR` it starts a broker in-process on 127.0.0.1:0 (its own
//! thread). The producer writes SEND frames as fast as the socket takes
//! them; the consumer (auto ack) counts MESSAGE frames. Prints msgs/s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use stomp_broker::{Broker, Config};
use stomp_frame::bytes::BytesMut;
use stomp_frame::{Command, Decoder, Item, Version};

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:bench\n\n\0")?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf)?;
    assert!(buf[..n].starts_with(b"CONNECTED"), "not connected");
    Ok(s)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(500_000), |s| s.parse())?;
    let size: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let mut _running = None;
    let addr: SocketAddr = match args.get(3) {
        Some(a) => a.parse()?,
        None => {
            let cfg = Config {
                listen: vec!["127.0.0.1:0".into()],
                memory: true,
                ..Config::default()
            };
            let b = Broker::bind(cfg)?.spawn()?;
            let a = b.addr();
            _running = Some(b);
            a
        }
    };
    // A fresh queue per run, so nothing left over from an earlier run arrives.
    let queue = format!("/queue/bench-{}-{}", std::process::id(), start_nanos());
    let mut consumer = connect(addr)?;
    consumer.write_all(
        format!("SUBSCRIBE\nid:0\ndestination:{queue}\nack:auto\nreceipt:s\n\n\0").as_bytes(),
    )?;
    let mut buf = [0u8; 512];
    let _ = consumer.read(&mut buf)?;

    let mut producer = connect(addr)?;
    let frame = {
        let mut f = format!("SEND\ndestination:{queue}\ncontent-length:{size}\n\n").into_bytes();
        f.extend(std::iter::repeat_n(b'x', size));
        f.push(0);
        f
    };
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let batch: Vec<u8> = frame.repeat(64);
        let mut left = n;
        while left >= 64 {
            producer.write_all(&batch)?;
            left -= 64;
        }
        for _ in 0..left {
            producer.write_all(&frame)?;
        }
        Ok(())
    });
    let mut dec = Decoder::new(Version::V1_2);
    let mut rbuf = BytesMut::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < n {
        let k = consumer.read(&mut chunk)?;
        if k == 0 {
            return Err("broker closed the consumer".into());
        }
        rbuf.extend_from_slice(&chunk[..k]);
        while let Some(item) = dec.decode(&mut rbuf)? {
            if let Item::Frame(f) = item {
                assert_eq!(f.command, Command::Message);
                got += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    writer.join().expect("producer thread")?;
    println!(
        "{n} messages of {size} bytes through one queue (1 producer, 1 consumer, auto ack): {:.0} msg/s ({secs:.2} s)",
        n as f64 / secs
    );
    Ok(())
}

fn start_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
