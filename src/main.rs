//! The `tickcast` binary: parses the command line, sets up logging and signals, and runs the
//! chosen subcommand. Everything else lives in the library.

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use tickcast::cli::{
    AbuseArgs, BaselineArgs, Command, HealthArgs, LoadArgs, ParseError, ProbeArgs, ReportArgs,
    ServeArgs,
};
use tickcast::server::{Server, raise_nofile_limit};

fn main() -> ExitCode {
    let cli = match tickcast::cli::parse() {
        Ok(cli) => cli,
        // Help, version and usage errors, printed the way clap prints them (exit 0 or 2).
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::File(e)) => {
            eprintln!("tickcast: {e}");
            return ExitCode::from(2);
        }
    };
    cli.log.init();
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
        Command::Load(args) => load(&args),
        Command::Baseline(args) => baseline(&args),
        Command::Report(args) => report(&args),
        Command::Abuse(args) => abuse(&args),
        Command::ProbeResume(args) => probe_resume(&args),
        Command::Health(args) => health(&args),
    }
}

fn health(args: &HealthArgs) -> ExitCode {
    match args.run() {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickcast health: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe_resume(args: &ProbeArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tickcast probe-resume: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = tickcast::probe::run(&cfg);
    println!("{report}");
    if report["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn abuse(args: &AbuseArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tickcast abuse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = tickcast::abuse::run(&cfg);
    println!("{}", report.json_line());
    // 0 pass, 1 fail, 2 undecided: the JSON line says which in any case.
    match report.verdict {
        tickcast::abuse::Verdict::Pass => ExitCode::SUCCESS,
        tickcast::abuse::Verdict::Fail => ExitCode::FAILURE,
        tickcast::abuse::Verdict::Undecided => ExitCode::from(2),
    }
}

fn load(args: &LoadArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tickcast load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = args.row_context();
    // Before measuring: a row that cannot be written would cost the whole window.
    if let Some(path) = &args.csv
        && let Err(e) = tickcast::report::schema::check_appendable(path)
    {
        eprintln!("tickcast load: --csv: {e}");
        return ExitCode::FAILURE;
    }
    let summary = match tickcast::load::run(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickcast load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.csv
        && let Err(e) = tickcast::report::schema::append_row(path, &summary.row(&ctx))
    {
        eprintln!("tickcast load: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{}", summary.json(&ctx));
    } else {
        print!("{}", summary.human(&ctx));
    }
    if summary.stats.connected == 0 {
        eprintln!("tickcast load: no connection was established");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn baseline(args: &BaselineArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("tickcast baseline: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = raise_nofile_limit() {
        log::warn!("could not raise the open-file limit: {e}");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("tickcast baseline: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    let server = match tickcast::baseline::Baseline::bind(cfg.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickcast baseline: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "baseline listening on {}: {} msgs/s to every client",
        server.local_addr(),
        cfg.rate
    );
    match server.run(&stop) {
        Ok(stats) => {
            log::info!(
                "baseline stopped: {} messages, {} upgrades, {} writes, {} drops",
                stats.messages,
                stats.upgraded,
                stats.writes,
                stats.drops
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickcast baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(args: &ReportArgs) -> ExitCode {
    if args.schema {
        print!("{}", tickcast::report::schema::markdown());
        return ExitCode::SUCCESS;
    }
    let Some(csv) = &args.csv else {
        eprintln!("tickcast report: a CSV file is required");
        return ExitCode::FAILURE;
    };
    match args.best_rate_key() {
        Ok(Some((mode, shards, clients))) => {
            return match tickcast::report::best_offered_rate(csv, &mode, shards, clients) {
                Ok(rate) => {
                    if let Some(rate) = rate {
                        println!("{rate}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tickcast report: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("tickcast report: {e}");
            return ExitCode::FAILURE;
        }
    }
    match args.compare_modes() {
        Ok(Some((base, other))) => {
            return match tickcast::report::compare_modes(csv, &base, &other) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tickcast report: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("tickcast report: {e}");
            return ExitCode::FAILURE;
        }
    }
    if args.verdict {
        return match tickcast::report::last_verdict(csv) {
            Ok(v) => {
                println!(
                    "{} {} {}",
                    v.verdict.as_str(),
                    if v.near { "near" } else { "clear" },
                    v.runs
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tickcast report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match tickcast::report::write_report(csv, &args.out_dir()) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickcast report: {e}");
            ExitCode::FAILURE
        }
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
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
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
    // SIGHUP reloads the TLS certificate and key (logged and counted either way); SIGINT or
    // SIGTERM stops the server.
    let first = signals.forever().find(|&sig| {
        if sig == SIGHUP {
            log::info!("SIGHUP received: reloading the TLS certificate and key, if any");
            let _ = server.reload_tls();
            return false;
        }
        true
    });
    match first {
        Some(sig) => log::info!(
            "{} received: shutting down (a second signal exits at once)",
            signal_name(sig)
        ),
        None => log::info!("signal handling ended: shutting down"),
    }
    // A second signal ends the process at once, even in the middle of the drain.
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().find(|&sig| sig != SIGHUP) {
            eprintln!(
                "tickcast: second signal ({}), exiting now",
                signal_name(sig)
            );
            std::process::exit(130);
        }
    });
    server.shutdown();
    ExitCode::SUCCESS
}

/// The name of a signal this binary handles, for its log lines.
fn signal_name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}
