//! `stomp-broker`: a STOMP 1.0 / 1.1 / 1.2 broker on one mio event loop,
//! with queued messages in memory and, by default, in a crash-safe journal
//! on disk (`stomp-store`; `--memory` for none).
//!
//! ```text
//!  socket ──read 64 KiB──▶ BytesMut (lazily allocated) ──Decoder──▶ Frame (slices, no copy)
//!     ──▶ Engine: Session (handshake, heart-beats, subscriptions, acks, transactions)
//!               ──▶ Router (/queue/ round-robin within prefetch windows, /topic/ fan-out
//!                           sharing one body) ──▶ Store (memory, or the journal on disk)
//!               ──▶ per-session outbox of frames
//!     ──▶ driver: encode all owed frames into the write buffer ──one write per turn──▶ socket
//! ```
//!
//! [`engine::Engine`] is the whole broker without I/O: frames and `now` in,
//! frames out; [`Broker`] drives it with mio. Start one in-process:
//!
//! ```
//! use std::io::{Read, Write};
//! use stomp_broker::{Broker, Config};
//!
//! // `memory: false` (the default) keeps queues in a journal in `./data`.
//! let config = Config { listen: vec!["127.0.0.1:0".into()], memory: true, ..Config::default() };
//! let broker = Broker::bind(config)?.spawn()?;
//! let mut tcp = std::net::TcpStream::connect(broker.addr())?;
//! tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
//! tcp.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")?;
//! let mut buf = [0u8; 256];
//! let n = tcp.read(&mut buf)?;
//! assert!(buf[..n].starts_with(b"CONNECTED\n"));
//! broker.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Modules: [`config`] (every knob and its default), [`cli`] (flags and
//! [`cli::run`]), [`engine`] (the sans-I/O core), [`server`] (the mio
//! driver), [`store`] and [`auth`] (pluggable traits), [`timer`].

mod router;
mod security;
mod session;
mod tls;

pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod server;
pub mod store;
pub mod timer;

pub use config::{Config, Persist, SlowConsumerPolicy};
pub use engine::{ConnId, Engine};
pub use server::{Broker, RunningBroker, ShutdownHandle};
pub use session::Output;

#[cfg(test)]
mod tests;
