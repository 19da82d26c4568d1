//! The `process_*` figures every Prometheus client exports (CPU seconds, resident and
//! virtual memory, open and allowed file descriptors, start time), read from `/proc` at each
//! scrape, and the build-info gauge.
//!
//! They are registered without the `tickcast_` prefix, under the names dashboards and
//! alerts already know; a figure the system does not tell (no procfs) is left out rather
//! than exported as a made-up zero.
//!
//! `process_open_fds` walks `/proc/self/fd`, one entry per descriptor: with 17,000
//! connections that is milliseconds, on whichever shard took the scrape. So it is read at most
//! once per [`FDS_MAX_AGE`] and reused in between, whatever the rate of scrapes; the other
//! figures are a few small reads and stay fresh.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::procstat;

/// Label of `tickcast_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// The crate's version (`Cargo.toml`).
    pub version: &'static str,
}

/// The build-info series: the running version, value 1.
pub const BUILD: BuildLabel = BuildLabel {
    version: env!("CARGO_PKG_VERSION"),
};

/// Longest a `process_open_fds` reading is reused.
pub const FDS_MAX_AGE: Duration = Duration::from_secs(1);

/// Reads [`procstat::process_figures`] at each scrape (the descriptor count at most once
/// per [`FDS_MAX_AGE`]).
#[derive(Debug, Default)]
pub struct ProcessCollector {
    fds: Mutex<Option<(Instant, Option<u64>)>>,
}

impl ProcessCollector {
    /// The open descriptors, read again if the last reading is older than [`FDS_MAX_AGE`].
    fn open_fds(&self, now: Instant) -> Option<u64> {
        let mut last = self.fds.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, fds)) if now.saturating_duration_since(at) < FDS_MAX_AGE => fds,
            _ => {
                let fds = procstat::open_fds();
                *last = Some((now, fds));
                fds
            }
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = procstat::ProcessFigures {
            open_fds: self.open_fds(Instant::now()),
            ..procstat::process_figures_but_fds()
        };
        if let Some(cpu) = f.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let enc = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(enc)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                f.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                f.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                f.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                f.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                f.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let enc = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(enc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_count_is_read_again_only_after_its_max_age() {
        let c = ProcessCollector::default();
        let t0 = Instant::now();
        let first = c.open_fds(t0).expect("procfs");
        // A descriptor opened now is not seen within the max age, and is seen after it.
        let extra = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(c.open_fds(t0 + FDS_MAX_AGE / 2), Some(first));
        let later = c.open_fds(t0 + FDS_MAX_AGE).expect("procfs");
        assert!(later >= 1, "{later}");
        assert_eq!(
            c.fds.lock().unwrap().map(|(at, _)| at),
            Some(t0 + FDS_MAX_AGE)
        );
        drop(extra);
    }
}
