//! The `process_*` figures every Prometheus client exports (CPU seconds, resident and
//! virtual memory, open and allowed file descriptors, start time), read from `/proc` at each
//! scrape, and the build-info gauge.
//!
//! They are registered without the `tickcast_` prefix, under the names dashboards and
//! alerts already know; a figure the system does not tell (no procfs) is left out rather
//! than exported as a made-up zero.

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

/// Reads [`procstat::process_figures`] at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = procstat::process_figures();
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
