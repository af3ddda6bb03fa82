//! `stomp`: parses the command line and runs the library's subcommands.

use std::process::ExitCode;

use clap::Parser;
use stomp_cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(b) => return stomp_broker::cli::run(b.args),
        Command::Passwd(a) => return stomp_broker::auth::run_passwd(&a),
        Command::Send(a) => stomp_cli::send::run(&a),
        Command::Subscribe(a) => stomp_cli::subscribe::run(&a),
        Command::Bench(a) => stomp_cli::bench::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stomp: {e:#}");
            ExitCode::from(stomp_cli::exit_code(&e))
        }
    }
}
