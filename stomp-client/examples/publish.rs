//! Publishes messages, fire-and-forget and confirmed by receipts.
//!
//! ```sh
//! cargo run -p stomp-client --example publish -- [URL] [DESTINATION] [COUNT]
//! cargo run -p stomp-client --example publish -- stomp://127.0.0.1:61613 /queue/demo 10
//! ```

use std::time::{Duration, Instant};

use stomp_client::{Client, ConnectOptions, StompUrl, Version};

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
        "{}",
        connected_line(&url, client.version(), info.and_then(|i| i.server))
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

/// What the example prints once connected: the URL with its password
/// replaced by `***` (it stays out of terminals and logs).
fn connected_line(url: &str, version: Version, server: Option<String>) -> String {
    format!(
        "connected to {}: STOMP {version}, server {server:?}",
        StompUrl::redact(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_not_printed() {
        let line = connected_line(
            "stomp://guest:s3cret@127.0.0.1:61713/%2F",
            Version::V1_2,
            Some("RabbitMQ/3.10.8".into()),
        );
        assert!(!line.contains("s3cret"), "{line}");
        assert!(
            line.starts_with("connected to stomp://guest:***@127.0.0.1:61713/%2F: STOMP 1.2"),
            "{line}"
        );
    }
}
