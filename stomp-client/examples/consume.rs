//! Consumes a destination with a pool of worker threads, acknowledging each
//! message; stops after a second without messages.
//!
//! ```sh
//! cargo run -p stomp-client --example consume -- [URL] [DESTINATION] [WORKERS]
//! ```

use std::time::Duration;

use stomp_client::{AckMode, Client, ConnectOptions};

fn main() -> Result<(), stomp_client::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "stomp://127.0.0.1:61613".into());
    let dest = args.next().unwrap_or_else(|| "/queue/demo".into());
    let workers: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(4);

    let client = Client::connect(ConnectOptions::from_url(&url)?)?;
    // Ask the broker for at most 100 unacknowledged messages at a time
    // (ActiveMQ and our broker read the first header, RabbitMQ the second).
    let sub = client.subscribe(
        &dest,
        AckMode::ClientIndividual,
        &[("activemq.prefetchSize", "100"), ("prefetch-count", "100")],
    )?;
    println!("subscribed to {dest} as {}", sub.id());

    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                // Each worker takes messages from the same queue.
                let rx = sub.receiver();
                s.spawn(move || {
                    let mut n = 0;
                    while let Ok(msg) = rx.recv_timeout(Duration::from_secs(1)) {
                        println!(
                            "worker {w}: {} {:?}",
                            msg.message_id().unwrap_or("?"),
                            String::from_utf8_lossy(msg.body())
                        );
                        if let Err(e) = msg.ack() {
                            eprintln!("worker {w}: ack failed: {e}");
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    println!("{total} messages consumed");
    sub.unsubscribe()?;
    client.disconnect()
}
