//! Stays connected through broker restarts: reconnects with backoff over a
//! failover list, restores its subscription, and reports every change.
//! Publishes one message a second and prints what comes back. Ctrl-C stops it.
//!
//! ```sh
//! cargo run -p stomp-client --example reconnect -- [URL] [FAILOVER-ADDRESS...]
//! # then stop and restart the broker, and watch
//! ```

use std::time::Duration;

use stomp_client::{
    AckMode, Client, ConnectOptions, ConnectionEvent, OutagePolicy, ReconnectPolicy,
};

fn main() -> Result<(), stomp_client::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "stomp://127.0.0.1:61613".into());
    let mut opts = ConnectOptions::from_url(&url)?
        .heart_beat(1_000, 1_000)
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            ..ReconnectPolicy::default()
        })
        // Sends wait up to 2 s for the connection to come back.
        .on_outage(OutagePolicy::Wait(Duration::from_secs(2)));
    for addr in args {
        opts = opts.failover(addr);
    }
    let client = Client::connect(opts)?;
    let events = client.events();
    std::thread::spawn(move || {
        for ev in events {
            match ev {
                ConnectionEvent::Lost(e) => println!("-- lost: {e}; reconnecting"),
                ConnectionEvent::Reconnected {
                    info,
                    subscriptions,
                } => println!(
                    "-- reconnected (session {:?}), {subscriptions} subscription(s) restored",
                    info.session
                ),
                ConnectionEvent::Closed(e) => println!("-- closed: {e:?}"),
                other => println!("-- {other:?}"),
            }
        }
    });
    let sub = client.subscribe("/topic/reconnect-demo", AckMode::Auto, &[])?;
    for i in 0u64.. {
        match client.send("/topic/reconnect-demo", format!("tick {i}")) {
            Ok(()) => {}
            Err(e) => println!("send {i} failed: {e}"),
        }
        match sub.recv_timeout(Duration::from_secs(1)) {
            Ok(Some(m)) => println!("got {:?}", String::from_utf8_lossy(m.body())),
            Ok(None) => {}
            Err(e) => {
                println!("subscription ended: {e}");
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}
