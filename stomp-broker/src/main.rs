//! `stomp-broker`: parses flags and runs the broker library.

use clap::{Parser, Subcommand};

/// A STOMP 1.0/1.1/1.2 broker.
#[derive(Debug, Parser)]
#[command(
    name = "stomp-broker",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    args: stomp_broker::cli::BrokerArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Add a user to a users file, or change their password (argon2 hash).
    Passwd(stomp_broker::auth::PasswdArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Passwd(a)) => stomp_broker::auth::run_passwd(&a),
        None => stomp_broker::cli::run(cli.args),
    }
}
