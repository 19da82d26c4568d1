//! The fallback engine `scripts/fuzz.sh` uses when no nightly toolchain (which cargo-fuzz
//! needs for its coverage instrumentation) is installed: random mutations of the target's
//! seeds, corpus and regression inputs, run through the same checks, on a stable toolchain.
//! It is blind to coverage, so it finds less than libFuzzer in the same time; the script
//! says so in its output and in `fuzz.md`.
//!
//! `cargo run --release --example stable_fuzz -- TARGET SECONDS RUNS`; a failing input is
//! written to `artifacts/TARGET/crash-<n>` and the run stops with status 1.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: stable_fuzz TARGET SECONDS RUNS";
    let target = args.get(1).expect(usage).as_str();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let runs: u64 = args.get(3).and_then(|s| s.parse().ok()).expect(usage);
    let check: fn(&[u8]) = match target {
        "http_request" => tickcast_fuzz::http_request::check,
        "ws_frames" => tickcast_fuzz::ws_frames::check,
        "client_ops" => tickcast_fuzz::client_ops::check,
        "chat" => tickcast_fuzz::chat::check,
        "deflate" => tickcast_fuzz::deflate::check,
        "token" => tickcast_fuzz::token::check,
        "conn_state" => tickcast_fuzz::conn_state::check,
        "proxy" => tickcast_fuzz::proxy::check,
        other => panic!("no target {other}"),
    };
    let pool: Vec<Vec<u8>> = tickcast_fuzz::replay_inputs(target)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert!(!pool.is_empty(), "no seeds for {target}");
    std::panic::set_hook(Box::new(|_| {}));
    let (start, limit) = (Instant::now(), Duration::from_secs(seconds));
    let mut done = 0u64;
    while done < runs && start.elapsed() < limit {
        let input = mutate(&pool[fastrand::usize(..pool.len())], &pool);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let dir = format!("{}/artifacts/{target}", env!("CARGO_MANIFEST_DIR"));
            std::fs::create_dir_all(&dir).expect("artifacts dir");
            let path = format!("{dir}/crash-{done}");
            std::fs::write(&path, &input).expect("write the crash");
            println!("stable_fuzz: {target}: crash after {done} runs, saved {path}");
            std::process::exit(1);
        }
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "stable_fuzz: {target}: {done} runs in {secs:.0} s ({:.0}/s), no crash",
        done as f64 / secs
    );
}

/// One to four random edits: flip a bit, set a byte, insert or delete a span, splice in part
/// of another input.
fn mutate(base: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..fastrand::usize(1..=4) {
        let at = fastrand::usize(..=out.len());
        match fastrand::u8(..5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << fastrand::u8(..8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = fastrand::u8(..);
            }
            2 => {
                let n = fastrand::usize(1..=16);
                out.splice(at..at, std::iter::repeat_with(|| fastrand::u8(..)).take(n));
            }
            3 if at < out.len() => {
                let end = (at + fastrand::usize(1..=16)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let other = &pool[fastrand::usize(..pool.len())];
                if !other.is_empty() {
                    let from = fastrand::usize(..other.len());
                    let end = (from + fastrand::usize(1..=64)).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
            }
        }
    }
    out
}
