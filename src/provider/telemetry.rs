//! `telemetry`: the server describing itself, once per `--telemetry-interval`, on the
//! `telemetry` topic (what the dashboard draws).
//!
//! Each message holds process CPU % and RSS, threads, the system's available memory,
//! connections and queue depth per shard, messages published and delivered per second,
//! bytes written per second, drops per second by reason, and broadcast latency p50/p99 over
//! the shards' last one-second histogram interval. Rates cover the time since the previous
//! message; the first message after a quiet period has no rates yet (`null`).
//!
//! It costs nothing while nobody listens: the shards' topic indexes keep a shared count of
//! `telemetry` subscribers (the wildcard included, see `subs.rs`), and while it is zero
//! the provider only wakes once per interval to read that one atomic: no `/proc` reads, no
//! counter reads, no JSON, no publish. The hot path pays nothing at all.
//!
//! Process and system figures come from Linux `/proc` and `getrusage` (read by
//! [`crate::procstat`]); where those do not exist the fields are `null`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Provider, ProviderCtx};
use crate::clock::unix_micros;
use crate::metrics::{DROP_REASONS, Metrics};
use crate::procstat::{self, Process, Usage};
use crate::protocol::TELEMETRY_TOPIC as TOPIC;

/// The provider: reads the server's metrics and the process's resource use.
pub struct Telemetry {
    interval: Duration,
    metrics: Arc<Metrics>,
    topic: Arc<str>,
    /// When the server started (µs since the Unix epoch), so a client can tell a restart.
    started_us: u64,
    started: Instant,
    /// Cores this process may run on (read once: it takes a few syscalls).
    cores: usize,
    /// Counters at the previous message; `None` after a period without subscribers.
    last: Option<Counters>,
}

/// Monotonic totals read at one instant; two of them give rates.
#[derive(Debug, Clone, PartialEq)]
struct Counters {
    at: Instant,
    cpu: Option<Duration>,
    published: u64,
    delivered: u64,
    bytes: u64,
    drops: [u64; DROP_REASONS.len()],
}

/// One shard's line in a message.
#[derive(Debug, Serialize)]
struct ShardReport {
    shard: usize,
    connections: i64,
    queue_depth: i64,
}

/// The `data` of a `telemetry` message.
#[derive(Debug, Serialize)]
struct Report {
    interval_ms: u64,
    started_us: u64,
    uptime_s: f64,
    cores: usize,
    cpu_percent: Option<f64>,
    rss_bytes: Option<u64>,
    threads: Option<u64>,
    mem_available_bytes: Option<u64>,
    mem_total_bytes: Option<u64>,
    connections: i64,
    telemetry_subscribers: i64,
    shards: Vec<ShardReport>,
    published_per_s: Option<f64>,
    delivered_per_s: Option<f64>,
    bytes_per_s: Option<f64>,
    drops_per_s: Option<BTreeMap<&'static str, f64>>,
    drops_total: BTreeMap<&'static str, u64>,
    latency_p50_us: Option<u64>,
    latency_p99_us: Option<u64>,
    latency_samples: u64,
}

impl Telemetry {
    /// A provider publishing every `interval` (non-zero; see `ServerConfig`).
    pub fn new(interval: Duration, metrics: Arc<Metrics>) -> Self {
        Telemetry {
            interval,
            metrics,
            topic: Arc::from(TOPIC),
            started_us: unix_micros(),
            started: Instant::now(),
            cores: crate::config::default_shards(),
            last: None,
        }
    }

    /// Whether any connection would receive a telemetry message.
    fn has_audience(&self) -> bool {
        self.metrics.telemetry_subscribers.get() > 0
    }

    /// What to publish at `now`, if anyone listens.
    fn tick(&mut self, now: Instant) -> Option<Box<RawValue>> {
        if !self.has_audience() {
            self.last = None;
            return None;
        }
        let counters = self.read_counters(now);
        let report = self.report(&counters, now);
        self.last = Some(counters);
        // A struct of numbers, strings and maps with string keys always serializes.
        serde_json::value::to_raw_value(&report).ok()
    }

    fn read_counters(&self, now: Instant) -> Counters {
        let m = &self.metrics;
        let shards = 0..m.shards();
        Counters {
            at: now,
            cpu: procstat::cpu_time(Usage::Process),
            published: m.published_all.get(),
            delivered: shards
                .clone()
                .map(|s| Metrics::shard_counter(&m.delivered, s))
                .sum(),
            bytes: shards
                .map(|s| Metrics::shard_counter(&m.bytes_written, s))
                .sum(),
            drops: DROP_REASONS.map(|reason| m.drops_for(reason)),
        }
    }

    fn report(&self, now: &Counters, at: Instant) -> Report {
        let m = &self.metrics;
        let shards: Vec<ShardReport> = (0..m.shards())
            .map(|s| ShardReport {
                shard: s,
                connections: Metrics::shard_gauge(&m.connections, s),
                queue_depth: Metrics::shard_gauge(&m.queue_depth, s),
            })
            .collect();
        let status = procstat::status(Process::Current);
        let mem = procstat::meminfo();
        let rates = self
            .last
            .as_ref()
            .and_then(|prev| Rates::between(prev, now));
        let latency = m.latency.merged(false);
        let quantile = |q| (!latency.is_empty()).then(|| latency.value_at_quantile(q));
        Report {
            interval_ms: self.interval.as_millis() as u64,
            started_us: self.started_us,
            uptime_s: at.saturating_duration_since(self.started).as_secs_f64(),
            cores: self.cores,
            cpu_percent: rates.as_ref().and_then(|r| r.cpu_percent),
            rss_bytes: status.and_then(|s| s.rss_bytes),
            threads: status.and_then(|s| s.threads),
            mem_available_bytes: mem.and_then(|m| m.available_bytes),
            mem_total_bytes: mem.and_then(|m| m.total_bytes),
            connections: shards.iter().map(|s| s.connections).sum(),
            telemetry_subscribers: m.telemetry_subscribers.get(),
            shards,
            published_per_s: rates.as_ref().map(|r| r.published),
            delivered_per_s: rates.as_ref().map(|r| r.delivered),
            bytes_per_s: rates.as_ref().map(|r| r.bytes),
            drops_per_s: rates
                .as_ref()
                .map(|r| DROP_REASONS.into_iter().zip(r.drops).collect()),
            drops_total: DROP_REASONS.into_iter().zip(now.drops).collect(),
            latency_p50_us: quantile(0.5),
            latency_p99_us: quantile(0.99),
            latency_samples: latency.len(),
        }
    }
}

impl Provider for Telemetry {
    fn name(&self) -> String {
        TOPIC.to_string()
    }

    fn run(&mut self, ctx: &ProviderCtx) {
        let mut next = Instant::now() + self.interval;
        while ctx.sleep_until(next) {
            let now = Instant::now();
            if let Some(data) = self.tick(now)
                && !ctx.publish(&self.topic, data)
            {
                return;
            }
            next += self.interval;
            if now > next {
                // Fell behind (suspended, overloaded): the next message comes one interval on.
                next = now + self.interval;
            }
        }
    }
}

/// Per-second rates between two readings.
#[derive(Debug, Clone, PartialEq)]
struct Rates {
    cpu_percent: Option<f64>,
    published: f64,
    delivered: f64,
    bytes: f64,
    drops: [f64; DROP_REASONS.len()],
}

impl Rates {
    /// Rates from `prev` to `now`; `None` if no time passed between them.
    fn between(prev: &Counters, now: &Counters) -> Option<Rates> {
        let secs = now.at.checked_duration_since(prev.at)?.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        // Counters only grow; a smaller value (never expected) reads as no change.
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let cpu_percent = match (prev.cpu, now.cpu) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / secs * 100.0),
            _ => None,
        };
        let mut drops = [0.0; DROP_REASONS.len()];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = rate(prev.drops[i], now.drops[i]);
        }
        Some(Rates {
            cpu_percent,
            published: rate(prev.published, now.published),
            delivered: rate(prev.delivered, now.delivered),
            bytes: rate(prev.bytes, now.bytes),
            drops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(at: Instant, k: u64) -> Counters {
        Counters {
            at,
            cpu: Some(Duration::from_millis(250 * k)),
            published: 40 * k,
            delivered: 400 * k,
            bytes: 4000 * k,
            drops: [k, 0, 0, 0, 0],
        }
    }

    #[test]
    fn rates_are_per_second_over_the_elapsed_time() {
        let t0 = Instant::now();
        let r =
            Rates::between(&counters(t0, 1), &counters(t0 + Duration::from_secs(2), 3)).unwrap();
        assert_eq!(r.published, 40.0);
        assert_eq!(r.delivered, 400.0);
        assert_eq!(r.bytes, 4000.0);
        assert_eq!(r.drops, [1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(r.cpu_percent, Some(25.0));
        assert_eq!(Rates::between(&counters(t0, 1), &counters(t0, 1)), None);
    }

    #[test]
    fn nothing_is_collected_without_subscribers() {
        let metrics = Metrics::new(2);
        let mut t = Telemetry::new(Duration::from_secs(1), metrics.clone());
        let t0 = Instant::now();
        assert!(t.tick(t0).is_none());
        assert!(t.last.is_none());

        metrics.telemetry_subscribers.inc();
        metrics.published_all.inc_by(10);
        let first: serde_json::Value =
            serde_json::from_str(t.tick(t0 + Duration::from_secs(1)).unwrap().get()).unwrap();
        assert!(
            first["published_per_s"].is_null(),
            "no rate without a baseline"
        );
        assert_eq!(first["shards"].as_array().unwrap().len(), 2);
        assert_eq!(first["telemetry_subscribers"], 1);

        metrics.published_all.inc_by(20);
        let second: serde_json::Value =
            serde_json::from_str(t.tick(t0 + Duration::from_secs(3)).unwrap().get()).unwrap();
        assert_eq!(second["published_per_s"], 10.0);
        assert_eq!(second["drops_per_s"]["outbox_full"], 0.0);
        assert!(
            second["latency_p99_us"].is_null(),
            "no deliveries, no latency"
        );

        metrics.telemetry_subscribers.dec();
        assert!(t.tick(t0 + Duration::from_secs(4)).is_none());
        assert!(
            t.last.is_none(),
            "the baseline is forgotten while nobody listens"
        );
    }
}
