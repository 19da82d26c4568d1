//! Latency histograms, per shard: each shard hands over an hdrhistogram of its recordings
//! about once a second; a scrape merges them into one Prometheus histogram plus quantile
//! gauges (`<name>_seconds`, `<name>_p50/p99/p999_seconds`).
//!
//! The merge walks every shard's histogram and the quantiles walk the result: most of what a
//! scrape costs. Between two hand-overs the answer cannot change, so it is computed once per
//! hand-over ([`Summary`], kept until the next one) and every scrape in between reuses it:
//! a scrape stays exact, and a flood of scrapes on the public port costs a shard only the
//! text encoding.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// Histogram upper bounds (seconds) of the exported broadcast latency histogram.
const BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram in microseconds, from 1 µs to 1 hour, 2 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    // Fixed, valid bounds: 1 <= low, high >= 2 * low, sigfig <= 5.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// A latency, per shard (broadcast: mixer stamp -> last byte written; handshake: accept ->
/// 101): everything since start, and the last complete interval (for telemetry). Each
/// shard's slot is written about once a second by that shard and read by scrapes, so the
/// mutex is never contended on the hot path. Exported as `<name>_seconds` (a histogram) and
/// `<name>_p50/p99/p999_seconds` gauges.
#[derive(Debug)]
pub struct LatencyStore {
    name: &'static str,
    help: &'static str,
    shards: Vec<Mutex<ShardLatency>>,
    /// What scrapes export, computed from `shards` once per hand-over (`None`: stale).
    summary: Mutex<Option<Summary>>,
}

/// The merged histogram as exported: per-bucket counts, sum, count and quantiles.
#[derive(Debug, Clone)]
struct Summary {
    buckets: Vec<(f64, u64)>,
    sum_s: f64,
    count: u64,
    quantiles: [f64; 3],
}

/// The quantile gauges exported beside the histogram.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)];

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        // prometheus-client accumulates the buckets itself: pass per-bucket counts.
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS_S
            .iter()
            .map(|&le| {
                let upto = h.count_between(0, (le * 1e6) as u64);
                let in_bucket = upto.saturating_sub(below);
                below = upto.max(below);
                (le, in_bucket)
            })
            .collect();
        buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
        Summary {
            buckets,
            sum_s: h.mean() * h.len() as f64 / 1e6,
            count: h.len(),
            quantiles: QUANTILES.map(|(_, q)| h.value_at_quantile(q) as f64 / 1e6),
        }
    }
}

#[derive(Debug)]
struct ShardLatency {
    total: Histogram<u64>,
    last_interval: Histogram<u64>,
}

impl LatencyStore {
    pub(super) fn new(shards: usize, name: &'static str, help: &'static str) -> Self {
        let slot = || {
            Mutex::new(ShardLatency {
                total: new_latency_histogram(),
                last_interval: new_latency_histogram(),
            })
        };
        LatencyStore {
            name,
            help,
            shards: (0..shards).map(|_| slot()).collect(),
            summary: Mutex::new(None),
        }
    }

    /// Shards recorded.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Hands over one interval of shard `shard`'s recordings.
    pub fn publish(&self, shard: usize, interval: &Histogram<u64>) {
        let Some(slot) = self.shards.get(shard) else {
            return;
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic.
        let _ = slot.total.add(interval);
        slot.last_interval.reset();
        let _ = slot.last_interval.add(interval);
        drop(slot);
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The exported figures, computed if a hand-over came since they last were.
    fn summary(&self) -> Summary {
        let mut cached = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some(summary) => summary.clone(),
            None => {
                let summary = Summary::of(&self.merged(true));
                *cached = Some(summary.clone());
                summary
            }
        }
    }

    /// All shards merged: since start (`total = true`) or over the last interval.
    pub fn merged(&self, total: bool) -> Histogram<u64> {
        let mut out = new_latency_histogram();
        for slot in &self.shards {
            let slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = out.add(if total {
                &slot.total
            } else {
                &slot.last_interval
            });
        }
        out
    }
}

impl Collector for LatencyStore {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Summary {
            buckets,
            sum_s,
            count,
            quantiles,
        } = self.summary();
        let histogram_name = format!("{}_seconds", self.name);
        let metric =
            encoder.encode_descriptor(&histogram_name, self.help, None, MetricType::Histogram)?;
        let mut metric = metric;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum_s, count, &buckets, None,
        )?;
        for ((name, _), value) in QUANTILES.into_iter().zip(quantiles) {
            let gauge = ConstGauge::new(value);
            let help = format!("{}, {name} since start (seconds)", self.help);
            let name = format!("{}_{name}_seconds", self.name);
            let enc = encoder.encode_descriptor(&name, &help, None, gauge.metric_type())?;
            gauge.encode(enc)?;
        }
        Ok(())
    }
}
