//! `stomp-broker`: parses flags and runs the broker library.

use clap::Parser;

/// A STOMP 1.0/1.1/1.2 broker.
#[derive(Debug, Parser)]
#[command(name = "stomp-broker", version, about)]
struct Cli {
    #[command(flatten)]
    args: stomp_broker::cli::BrokerArgs,
}

fn main() -> std::process::ExitCode {
    stomp_broker::cli::run(Cli::parse().args)
}
