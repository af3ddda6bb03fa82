//! The library behind the `stomp` command-line tool.
//!
//! ```text
//!  argv ──clap (args.rs)──▶ Cli ──main.rs──▶ send::run / subscribe::run / bench::run
//!                                       └──▶ stomp_broker::cli::run (`stomp broker`)
//!  send, subscribe ──conn::Target──▶ stomp_client::Client (mio I/O thread) ──▶ broker
//!  bench ──conn::RawConn (blocking sockets, one thread per producer/consumer)
//!        └─ idle mode: one mio loop holding N connections with heart-beats
//! ```
//!
//! The binary is glue: each subcommand's work is a function here taking its
//! parsed arguments and the output streams, so it can be tested in-process
//! as well as through the binary (`tests/`).
//!
//! Exit codes: 0 success, 1 failure (broker unreachable, refused, no
//! receipt, messages lost), 2 usage errors ([`UsageError`]), 3 `subscribe
//! --timeout` ran out before `--count`.

pub mod args;
pub mod bench;
pub mod conn;
pub mod send;
pub mod subscribe;

use std::fmt;

/// A mistake in the command line: reported with exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A run that finished but did not get what was asked: reported with the
/// given exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// The exit status.
    pub code: u8,
    /// What is missing.
    pub message: String,
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Incomplete {}

/// The exit status for an error returned by a subcommand.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        2
    } else if let Some(i) = e.downcast_ref::<Incomplete>() {
        i.code
    } else {
        1
    }
}

/// Sets a flag on SIGINT and SIGTERM (instead of dying), for commands that
/// stop cleanly on Ctrl-C. A second signal ends the process at once, with
/// exit status 130.
pub fn interrupt_flag() -> std::io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Runs before the flag is set: exits only if it was set already.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}
