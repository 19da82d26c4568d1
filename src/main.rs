//! The `tickcast` binary: parses the command line, sets up logging and signals, and runs the
//! chosen subcommand. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use tickcast::cli::{Cli, Command, ServeArgs};
use tickcast::server::{Server, raise_nofile_limit};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Token(args) => match args.token() {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tickcast token: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tickcast: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match raise_nofile_limit() {
        Ok((before, after, hard)) => {
            log::info!("open-file limit: soft {before} -> {after} (hard {hard})")
        }
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
    // Signals are registered before any thread exists, so every thread inherits the mask
    // handling and no signal can arrive unobserved between start and wait.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickcast: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(cfg).and_then(Server::start) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("tickcast: {e}");
            return ExitCode::FAILURE;
        }
    };
    let first = signals.forever().next();
    log::info!("signal {first:?} received: shutting down (a second signal exits at once)");
    // A second signal ends the process at once, even in the middle of the drain.
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("tickcast: second signal ({sig}), exiting now");
            std::process::exit(130);
        }
    });
    server.shutdown();
    ExitCode::SUCCESS
}
