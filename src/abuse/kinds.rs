//! Scenarios made of kinds of bad input, one connection per kind in turn (`malformed_frames`,
//! `malformed_http`): the attempts spread evenly over the kinds on a [`crowd::pool`], a kind
//! the server ignores given up after repeated timeouts, and each kind's outcomes counted
//! against the one label that counts as right.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::client::{self, Tally};
use super::crowd::{self, Pool};

/// After this many timeouts a kind is not tried again (the server ignores it; each further
/// try would only cost the timeout).
const SKIP_AFTER_TIMEOUTS: u64 = 50;

/// What one kind of bad input got.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// The kind.
    pub kind: &'static str,
    /// The outcome label that counts as right (`close_1002`, `status_431`).
    pub expected: String,
    /// Connections tried.
    pub attempts: u64,
    /// Connections that got the expected outcome.
    pub right: u64,
    /// Every outcome, counted.
    pub outcomes: Tally,
    /// Attempts skipped after repeated timeouts.
    pub skipped: u64,
}

/// Runs `total` attempts spread evenly over `kinds` (name, expected outcome label) on
/// `threads` threads; `attempt(kind, i)` plays one and returns its outcome label.
pub fn run_kinds(
    total: usize,
    threads: usize,
    kinds: &[(&'static str, String)],
    attempt: impl Fn(usize, usize) -> String + Sync,
) -> Result<Vec<KindResult>, String> {
    let timeouts: Vec<AtomicU64> = kinds.iter().map(|_| AtomicU64::new(0)).collect();
    let spec = Pool {
        total,
        threads,
        until: None,
        groups: kinds.len(),
    };
    let pooled = crowd::pool(
        &spec,
        |i| {
            let k = i % kinds.len();
            if timeouts[k].load(Ordering::Relaxed) >= SKIP_AFTER_TIMEOUTS {
                return None;
            }
            let outcome = attempt(k, i);
            if outcome.contains("timeout") {
                timeouts[k].fetch_add(1, Ordering::Relaxed);
            }
            Some(outcome)
        },
        |_| {},
    )?;
    Ok(kinds
        .iter()
        .zip(pooled.tallies.into_iter().zip(pooled.skipped))
        .map(|(&(kind, ref expected), (outcomes, skipped))| KindResult {
            kind,
            expected: expected.clone(),
            attempts: outcomes.values().sum(),
            right: outcomes.get(expected).copied().unwrap_or(0),
            outcomes,
            skipped,
        })
        .collect())
}

/// Connections tried or skipped, over every kind.
pub fn attempted(results: &[KindResult]) -> u64 {
    results.iter().map(|r| r.attempts + r.skipped).sum()
}

/// Connections with the expected outcome, over every kind.
pub fn right(results: &[KindResult]) -> u64 {
    results.iter().map(|r| r.right).sum()
}

/// Connections whose outcome label satisfies `wanted`, over every kind.
pub fn outcomes(results: &[KindResult], wanted: impl Fn(&str) -> bool) -> u64 {
    results
        .iter()
        .flat_map(|r| r.outcomes.iter())
        .filter(|(k, _)| wanted(k))
        .map(|(_, v)| v)
        .sum()
}

/// `kind right/attempts` for every kind, wrong ones with their outcomes.
pub fn kinds_text(results: &[KindResult]) -> String {
    results
        .iter()
        .map(|r| {
            let mut s = format!("{} {}/{}", r.kind, r.right, r.attempts + r.skipped);
            if r.right < r.attempts + r.skipped {
                let wrong: Tally = r
                    .outcomes
                    .iter()
                    .filter(|(k, _)| **k != r.expected)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                s.push_str(&format!(" ({}", client::tally_text(&wrong)));
                if r.skipped > 0 {
                    s.push_str(&format!(", {} skipped", r.skipped));
                }
                s.push(')');
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}
