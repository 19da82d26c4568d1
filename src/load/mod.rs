//! `tickcast load`: the load generator, the measuring instrument of the project.
//!
//! No async runtime: `threads` event loops ([`worker`]) each own a share of the connections.
//! The calling thread coordinates a run in fixed phases, each bounded in time:
//!
//! ```text
//!  ramp: connect n at connect_rate ──▶ warmup ──▶ measured window ──▶ close, merge, report
//!  (handshake latency, failures)                  (messages, latency, gaps, CPU)
//! ```
//!
//! At each phase boundary it samples the server process (`--server-pid`: CPU time and RSS
//! from `/proc`), its own CPU time, and the server's drop counters (`/metrics`), so one row
//! of results carries server CPU per delivered message and RSS per connection measured over
//! exactly the window the clients measured.
//!
//! Files: [`config`] (settings, URL), [`wire`] (client framing and upgrade), [`scan`] (finding
//! `topic`/`seq`/`ts` without a JSON tree), [`conn`] (one connection), [`transport`] (its
//! socket, plain or TLS), [`tls`] (the `wss://` client settings: `--tls-ca`, server name),
//! [`worker`] (one thread), [`stats`] (counts and merging), [`sys`] (`/proc`, `getrusage`,
//! `/metrics`), [`summary`] (the report: human text, JSON, CSV row).
//!
//! With a `wss://` URL every connection speaks TLS (rustls, driven by the same loops); the
//! handshake latency then runs from the TCP connect through the TLS handshake to the 101,
//! and a TLS failure is counted with the other connect failures (`tls_unknown_issuer`, ...).

pub mod config;
pub mod conn;
pub mod control;
pub mod scan;
pub mod stats;
pub mod summary;
pub mod sys;
pub mod tls;
pub mod transport;
pub mod wire;
pub mod worker;

pub use config::{LoadConfig, Target, parse_source_ips};
pub use summary::{RowContext, ServerSamples, Summary};

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use control::Control;
use stats::{Stats, join_counts};
use worker::Worker;

/// How often the coordinator refreshes progress and checks the ramp.
const TICK: Duration = Duration::from_millis(100);
/// How long before the window the server's drop counters are read (at most the warmup).
const SCRAPE_LEAD: Duration = Duration::from_millis(500);
/// Extra time after the ramp and connect timeout before measuring regardless.
const RAMP_GRACE: Duration = Duration::from_secs(1);
/// When this many attempts (or all of them, if fewer) have failed and none has succeeded,
/// the run stops at once: a closed port, a wrong path (404) or an untrusted certificate fails
/// every connection alike, and waiting out the window would measure nothing.
const FAIL_FAST_AFTER: usize = 16;

/// Runs one load test and returns its summary. Blocks for about ramp + warmup + duration.
pub fn run(cfg: LoadConfig) -> Result<Summary, String> {
    cfg.validate()?;
    let tls = match &cfg.tls_ca {
        Some(ca) => Some(tls::TlsClient::new(&cfg.target, ca)?),
        None => None,
    };
    if let Err(e) = crate::server::raise_nofile_limit() {
        log::warn!("could not raise the open-file limit: {e}");
    }
    let cfg = Arc::new(cfg);
    let loadavg_1m = sys::loadavg_1m();
    let sample = || cfg.server_pid.and_then(sys::sample_process);
    let server_start = sample();
    let server_shards = cfg
        .learn_shards
        .then(|| sys::scrape_server(cfg.target.addr, tls.as_ref()))
        .flatten()
        .and_then(|s| s.shards);

    let control = Arc::new(Control::new(Instant::now()));
    let mut threads: Vec<JoinHandle<Stats>> = Vec::with_capacity(cfg.threads);
    for index in 0..cfg.threads {
        let worker = Worker::new(index, cfg.clone(), control.clone(), tls.clone())
            .map_err(|e| format!("cannot create a poll: {e}"))?;
        let handle = std::thread::Builder::new()
            .name(format!("tickcast-load-{index}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        threads.push(handle);
    }
    let bar = progress_bar(&cfg);

    // Ramp: until every connection is open or failed, bounded by the ramp time plus the
    // connect timeout; at once when the first attempts all failed.
    bar.set_message("connecting");
    let fail_fast = cfg.connections.min(FAIL_FAST_AFTER);
    let ramp_deadline = control.base + cfg.ramp_time() + cfg.connect_timeout + RAMP_GRACE;
    loop {
        let (opened, failed) = (
            control.opened.load(Ordering::Relaxed),
            control.failed.load(Ordering::Relaxed),
        );
        bar.set_position((opened + failed) as u64);
        bar.set_message(format!("connecting: {opened} open, {failed} failed"));
        if opened + failed >= cfg.connections
            || (opened == 0 && failed >= fail_fast)
            || Instant::now() >= ramp_deadline
            || threads.iter().all(JoinHandle::is_finished)
        {
            break;
        }
        std::thread::sleep(TICK);
    }
    let ramp_secs = control.base.elapsed().as_secs_f64();
    if control.opened.load(Ordering::Relaxed) == 0 {
        bar.finish_and_clear();
        return Err(no_connection(&cfg, &control, threads));
    }
    let server_connected = sample();

    // Warm up, then measure.
    let window_start = Instant::now() + cfg.warmup;
    let window_end = window_start + cfg.duration;
    control.set_window(window_start, window_end);
    bar.set_length(cfg.duration.as_millis() as u64);
    bar.set_position(0);
    // A scrape can take a while from a saturated server, so the drop counters are read
    // just outside the window and the CPU samples exactly at its edges.
    let scrape = || {
        cfg.scrape_metrics
            .then(|| sys::scrape_server(cfg.target.addr, tls.as_ref()))
            .flatten()
    };
    let scrape_at = window_start - cfg.warmup.min(SCRAPE_LEAD);
    wait_until(scrape_at, &bar, "warming up", &control, None);
    let scrape_w0 = scrape();
    wait_until(window_start, &bar, "warming up", &control, None);
    let server_w0 = sample();
    let (cpu_w0, wall_w0) = (sys::process_cpu_ns(), Instant::now());
    wait_until(window_end, &bar, "measuring", &control, Some(window_start));
    let (cpu_w1, wall_w1) = (sys::process_cpu_ns(), Instant::now());
    let server_w1 = sample();
    let scrape_w1 = scrape();
    bar.finish_and_clear();

    // Threads end by themselves right after the window; `stop` covers a thread stuck in a
    // long turn.
    control.stop.store(true, Ordering::SeqCst);
    let mut merged = Stats::default();
    let mut thread_max_cpu = 0.0f64;
    for handle in threads {
        let stats = handle
            .join()
            .map_err(|_| "a load thread panicked".to_string())?;
        if stats.window_secs > 0.0 {
            let pct = stats.cpu_ns as f64 / 1e9 / stats.window_secs * 100.0;
            thread_max_cpu = thread_max_cpu.max(pct);
        }
        merged.merge(&stats);
    }
    let wall = wall_w1.duration_since(wall_w0).as_secs_f64().max(1e-9);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load_cpu_pct = cpu_w1.saturating_sub(cpu_w0) as f64 / 1e9 / wall / cpus * 100.0;
    let server = match (server_start, server_connected, server_w0, server_w1) {
        (Some(start), Some(connected), Some(window_start), Some(window_end)) => {
            Some(ServerSamples {
                start,
                connected,
                window_start,
                window_end,
                window_wall_secs: wall,
            })
        }
        _ => None,
    };
    let server_handshake_p99_us = scrape_w1.as_ref().and_then(|s| s.handshake_p99_us);
    let drops = match (scrape_w0, scrape_w1) {
        (Some(a), Some(b)) => Some(sys::diff_counts(&a.drops, &b.drops)),
        _ => None,
    };
    Ok(Summary {
        connections: cfg.connections,
        threads: cfg.threads,
        publishers: cfg.publishers,
        stats: merged,
        ramp_secs,
        server,
        drops,
        server_handshake_p99_us,
        server_shards,
        load_cpu_pct,
        load_thread_max_cpu_pct: thread_max_cpu,
        loadavg_1m,
    })
}

/// Stops the threads of a run where no connection opened, and says why: the failures by
/// reason, and what they usually mean.
fn no_connection(cfg: &LoadConfig, control: &Control, threads: Vec<JoinHandle<Stats>>) -> String {
    control.stop.store(true, Ordering::SeqCst);
    let mut merged = Stats::default();
    for handle in threads {
        if let Ok(stats) = handle.join() {
            merged.merge(&stats);
        }
    }
    let url = format!(
        "{}://{}{}",
        if cfg.target.tls { "wss" } else { "ws" },
        cfg.target.host,
        cfg.target.path
    );
    let tried = merged.failure_count();
    let hint = if merged.failures.contains_key("refused") {
        format!(" (is a server listening on {}?)", cfg.target.addr)
    } else if merged.failures.keys().any(|r| r.starts_with("http_")) {
        " (the server answered, but not with a WebSocket upgrade: check the path)".to_string()
    } else {
        String::new()
    };
    format!(
        "no connection to {url} succeeded: the first {tried} attempt(s) all failed ({}){hint}; \
         stopped before measuring",
        if merged.failures.is_empty() {
            "no attempt finished".to_string()
        } else {
            join_counts(&merged.failures)
        }
    )
}

fn progress_bar(cfg: &LoadConfig) -> ProgressBar {
    if !cfg.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(cfg.connections as u64),
        ProgressDrawTarget::stderr_with_hz(10),
    );
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Sleeps until `t`, updating the progress bar (with msgs/s while measuring).
fn wait_until(
    t: Instant,
    bar: &ProgressBar,
    what: &str,
    control: &Control,
    measuring_since: Option<Instant>,
) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let msg = match measuring_since {
            Some(since) => {
                let secs = now.saturating_duration_since(since).as_secs_f64().max(1e-3);
                let msgs = control.messages.load(Ordering::Relaxed) as f64;
                bar.set_position(now.saturating_duration_since(since).as_millis() as u64);
                format!("{what}: {:.0} msgs/s", msgs / secs)
            }
            None => format!(
                "{what}: {} open, {:.1} s left",
                control.opened.load(Ordering::Relaxed),
                (t - now).as_secs_f64()
            ),
        };
        bar.set_message(msg);
        std::thread::sleep(TICK.min(t - now));
    }
}
