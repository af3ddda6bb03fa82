//! Publishes messages, fire-and-forget and confirmed by receipts.
//!
//! ```sh
//! cargo run -p stomp-client --example publish -- [URL] [DESTINATION] [COUNT]
//! cargo run -p stomp-client --example publish -- stomp://127.0.0.1:61613 /queue/demo 10
//! ```

use std::time::{Duration, Instant};

use stomp_client::{Client, ConnectOptions};

fn main() -> Result<(), stomp_client::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "stomp://127.0.0.1:61613".into());
    let dest = args.next().unwrap_or_else(|| "/queue/demo".into());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);

    let client =
        Client::connect(ConnectOptions::from_url(&url)?.connect_timeout(Duration::from_secs(5)))?;
    let info = client.session_info();
    println!(
        "connected to {url}: STOMP {}, server {:?}",
        client.version(),
        info.and_then(|i| i.server)
    );

    // Fire-and-forget: returns once queued for the I/O thread, as a web
    // request handler wants.
    let t0 = Instant::now();
    for i in 0..count {
        client.send_with(
            &dest,
            &[("content-type", "text/plain"), ("x-seq", &i.to_string())],
            format!("message {i}"),
        )?;
    }
    // Confirmed: waits for the broker's RECEIPT, so everything before it has
    // been processed too.
    client.send_confirmed(&dest, "last one, confirmed", Duration::from_secs(5))?;
    println!(
        "sent {} messages to {dest} in {:?}",
        count + 1,
        t0.elapsed()
    );
    client.disconnect()
}
