//! Server metrics: one Prometheus registry, per-shard handles, merged latency histograms.
//!
//! Counters and gauges are `prometheus-client` atomics labelled by shard, resolved once when a
//! shard starts, so the hot path never takes the registry's lock. A shard also counts in plain
//! integers during a turn and adds them to its counters once per turn (see `ShardStats` in
//! `shard.rs` here). Broadcast latency is recorded by each shard into its own hdrhistogram
//! and handed over to [`LatencyStore`] about once a second; a scrape merges the per-shard
//! histograms into one Prometheus histogram plus quantile gauges. The process's own figures
//! (`process_*`, read from `/proc` at each scrape) and the build info are in `process.rs`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod bus;
mod deflate;
mod labels;
mod latency;
mod process;
mod shard;
mod tls;

pub use bus::{PublisherMetrics, SubscriberMetrics};
pub use deflate::DeflateMetrics;
pub use latency::{LatencyStore, new_latency_histogram};
pub use shard::{PUBLISH_EVERY, Sampled, ShardStats};
pub use tls::{ReloadLabel, TlsMetrics};

pub use labels::{
    ACCEPT_ERRORS, CLOSE_CODES, CodeLabel, DROP_REASONS, DropLabel, ErrorLabel, HandshakeFailure,
    ROOMS_LABEL, ReasonLabel, ShardLabel, TopicLabel, close_code_label,
};

/// Every metric the server exports. Built once; shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The `process_*` figures, registered without the `tickcast_` prefix.
    process: Registry,
    /// `tickcast_build_info{version}`, always 1.
    pub build_info: Family<process::BuildLabel, Gauge>,
    /// Sockets accepted by the acceptor.
    pub accepted: Counter,
    /// Accept failures by reason (e.g. `emfile`).
    pub accept_errors: Family<ReasonLabel, Counter>,
    /// 1 while the acceptor runs at a real-time priority (see `sched.rs`), else 0.
    pub acceptor_realtime: Gauge,
    /// Pauses the real-time acceptor took to leave its core to the shards in a flood.
    pub acceptor_pauses: Counter,
    /// Open connections per shard (every state).
    pub connections: Family<ShardLabel, Gauge>,
    /// Completed WebSocket handshakes per shard.
    pub handshakes: Family<ShardLabel, Counter>,
    /// Client publishes a shard accepted (passed to the mixer, or with `--redis` the bus):
    /// each is either sequenced or, at shutdown, refused before it is accepted.
    pub client_publishes: Family<ShardLabel, Counter>,
    /// Requests refused before or during the handshake, by reason.
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Messages sequenced by the mixer, per server topic and for every room together.
    pub published: Family<TopicLabel, Counter>,
    /// Bytes of frames every topic's history keeps now (set by the mixer once per turn).
    pub history_bytes: Gauge,
    /// `--history-budget`: the most `history_bytes` may reach.
    pub history_budget: Gauge,
    /// Bytes of client publishes handed to the mixer and not yet taken by it.
    pub mixer_queue_bytes: Gauge,
    /// Frames the history budget took out of their rings (the node's oldest first).
    pub history_evicted: Counter,
    /// Messages sequenced by the mixer, every topic together. Not exported (Prometheus sums
    /// `published` itself); read by the telemetry provider, which cannot list topic labels.
    pub published_all: Counter,
    /// Broadcast frames written completely to a client, per shard.
    pub delivered: Family<ShardLabel, Counter>,
    /// Bytes written to sockets, per shard.
    pub bytes_written: Family<ShardLabel, Counter>,
    /// Broadcast frames dropped, by shard and reason.
    pub drops: Family<DropLabel, Counter>,
    /// Broadcast walks over a topic's subscribers, per shard (one per run of frames).
    pub fanout_walks: Family<ShardLabel, Counter>,
    /// Connections closed with 1008 because they could not keep up.
    pub slow_consumer_disconnects: Family<ShardLabel, Counter>,
    /// Connections closed for sending nothing within the idle timeout.
    pub idle_timeouts: Family<ShardLabel, Counter>,
    /// Connections dropped because their socket took no byte for the write timeout.
    pub write_timeouts: Family<ShardLabel, Counter>,
    /// Connections closed with 1008 because their token expired.
    pub token_expiries: Family<ShardLabel, Counter>,
    /// Closed WebSocket connections by close code (sent or received; 1006 = no close frame).
    pub closes: Family<CodeLabel, Counter>,
    /// Error frames sent to clients, by code.
    pub client_errors: Family<ErrorLabel, Counter>,
    /// Messages waiting in each shard's broadcast queue (sampled every second).
    pub queue_depth: Family<ShardLabel, Gauge>,
    /// Bytes in each shard's queue and the mixer's backlog for it (`--shard-queue-bytes`).
    pub queue_bytes: Family<ShardLabel, Gauge>,
    /// Entries in each shard's timer wheel (sampled every second): one per connection, so it
    /// follows `connections`, never how many came and went.
    pub timer_entries: Family<ShardLabel, Gauge>,
    /// Per-shard broadcast latency histograms.
    pub latency: Arc<LatencyStore>,
    /// Per-shard handshake latency histograms, the server's part (request head complete ->
    /// 101 queued).
    pub handshake_latency: Arc<LatencyStore>,
    /// Per-shard handshake request histograms, the client's part (accepted -> request head
    /// complete): a slow client shows here, not in `handshake_latency`.
    pub handshake_request: Arc<LatencyStore>,
    /// Redis bus messages already passed in their topic's sequence (dropped, never shown).
    pub bus_duplicates: Counter,
    /// Redis bus publisher counters.
    pub bus_publisher: PublisherMetrics,
    /// permessage-deflate counters.
    pub deflate: DeflateMetrics,
    /// TLS and trusted-proxy counters.
    pub tls: TlsMetrics,
    /// Redis bus subscriber counters (including `redis_reconnects`).
    pub bus_subscriber: SubscriberMetrics,
    /// Connections that would receive a `telemetry` message (named or `*`), all shards
    /// together. Kept by the shards' topic indexes on subscribe and unsubscribe only, so the
    /// telemetry provider can skip its work while nobody listens.
    pub telemetry_subscribers: Gauge,
}

impl Metrics {
    /// Registers every metric, for `shards` shards.
    pub fn new(shards: usize) -> Arc<Metrics> {
        let latency = Arc::new(LatencyStore::new(
            shards,
            "broadcast_latency",
            "Mixer stamp to last byte written, per delivered broadcast frame",
        ));
        let handshake_latency = Arc::new(LatencyStore::new(
            shards,
            "handshake_latency",
            "Request head complete to 101 Switching Protocols queued (written in the same \
             pass): the server's part of a handshake",
        ));
        let handshake_request = Arc::new(LatencyStore::new(
            shards,
            "handshake_request",
            "Socket accepted to request head complete: the client's part of a handshake",
        ));
        let mut m = Metrics {
            registry: Registry::with_prefix("tickcast"),
            process: Registry::default(),
            build_info: Family::default(),
            accepted: Counter::default(),
            accept_errors: Family::default(),
            acceptor_realtime: Gauge::default(),
            acceptor_pauses: Counter::default(),
            connections: Family::default(),
            handshakes: Family::default(),
            client_publishes: Family::default(),
            handshake_failures: Family::default(),
            published: Family::default(),
            history_bytes: Gauge::default(),
            history_budget: Gauge::default(),
            mixer_queue_bytes: Gauge::default(),
            history_evicted: Counter::default(),
            published_all: Counter::default(),
            delivered: Family::default(),
            bytes_written: Family::default(),
            drops: Family::default(),
            fanout_walks: Family::default(),
            slow_consumer_disconnects: Family::default(),
            idle_timeouts: Family::default(),
            write_timeouts: Family::default(),
            token_expiries: Family::default(),
            closes: Family::default(),
            client_errors: Family::default(),
            queue_depth: Family::default(),
            queue_bytes: Family::default(),
            timer_entries: Family::default(),
            bus_duplicates: Counter::default(),
            bus_publisher: Default::default(),
            deflate: DeflateMetrics::default(),
            tls: TlsMetrics::default(),
            bus_subscriber: Default::default(),
            latency: latency.clone(),
            handshake_latency: handshake_latency.clone(),
            handshake_request: handshake_request.clone(),
            telemetry_subscribers: Gauge::default(),
        };
        m.process
            .register_collector(Box::new(process::ProcessCollector));
        m.build_info.get_or_create(&process::BUILD).set(1);
        let r = &mut m.registry;
        r.register(
            "build_info",
            "The running version (label `version`); always 1",
            m.build_info.clone(),
        );
        r.register("accepted", "TCP connections accepted", m.accepted.clone());
        r.register(
            "accept_errors",
            "accept() failures by reason",
            m.accept_errors.clone(),
        );
        r.register(
            "acceptor_realtime",
            "1 while the acceptor thread runs at SCHED_FIFO",
            m.acceptor_realtime.clone(),
        );
        r.register(
            "acceptor_pauses",
            "Pauses of the real-time acceptor in a connection flood",
            m.acceptor_pauses.clone(),
        );
        r.register(
            "connections",
            "Open connections per shard",
            m.connections.clone(),
        );
        r.register(
            "handshakes",
            "Completed WebSocket handshakes",
            m.handshakes.clone(),
        );
        r.register(
            "client_publishes",
            "Client publishes accepted by a shard (sequenced, never lost at shutdown)",
            m.client_publishes.clone(),
        );
        m.bus_subscriber.register(r);
        m.bus_publisher.register(r);
        m.deflate.register(r);
        m.tls.register(r);
        r.register(
            "bus_duplicates",
            "Redis bus messages already passed in their topic's sequence (dropped)",
            m.bus_duplicates.clone(),
        );
        r.register(
            "handshake_failures",
            "Requests refused before or during the handshake, by reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "messages_published",
            "Messages sequenced by the mixer",
            m.published.clone(),
        );
        r.register(
            "history_bytes",
            "Bytes of frames kept by every topic's history for resumes",
            m.history_bytes.clone(),
        );
        r.register(
            "history_budget_bytes",
            "The most bytes of history the node keeps (--history-budget)",
            m.history_budget.clone(),
        );
        r.register(
            "mixer_queue_bytes",
            "Bytes of client publishes handed to the mixer and not yet taken (at most --mixer-queue-bytes)",
            m.mixer_queue_bytes.clone(),
        );
        r.register(
            "history_evicted_frames",
            "History frames evicted, the node's oldest first, to keep within the budget",
            m.history_evicted.clone(),
        );
        r.register(
            "frames_delivered",
            "Broadcast frames completely written to a client",
            m.delivered.clone(),
        );
        r.register(
            "bytes_written",
            "Bytes written to client sockets",
            m.bytes_written.clone(),
        );
        r.register(
            "drops",
            "Broadcast frames dropped, by reason",
            m.drops.clone(),
        );
        r.register(
            "fanout_walks",
            "Walks over a topic's subscribers; one carries a run of the frames that were \
             queued together, so frames taken over walks is the batching",
            m.fanout_walks.clone(),
        );
        r.register(
            "slow_consumer_disconnects",
            "Connections closed with 1008 for falling behind",
            m.slow_consumer_disconnects.clone(),
        );
        r.register(
            "idle_timeouts",
            "Connections closed as idle",
            m.idle_timeouts.clone(),
        );
        r.register(
            "write_timeouts",
            "Connections dropped because their socket took no byte for the write timeout",
            m.write_timeouts.clone(),
        );
        r.register(
            "token_expiries",
            "Connections closed with 1008 when their token expired",
            m.token_expiries.clone(),
        );
        r.register(
            "closes",
            "Closed WebSocket connections by close code",
            m.closes.clone(),
        );
        r.register(
            "client_errors",
            "Error frames sent to clients, by code",
            m.client_errors.clone(),
        );
        r.register(
            "shard_queue_depth",
            "Messages waiting in a shard's queue",
            m.queue_depth.clone(),
        );
        r.register(
            "shard_queue_bytes",
            "Bytes of frames in a shard's queue and the mixer's backlog for it (at most --shard-queue-bytes)",
            m.queue_bytes.clone(),
        );
        r.register(
            "timer_entries",
            "Entries in a shard's timer wheel (one per connection)",
            m.timer_entries.clone(),
        );
        r.register(
            "telemetry_subscribers",
            "Connections subscribed to the telemetry topic (wildcard included)",
            m.telemetry_subscribers.clone(),
        );
        r.register_collector(Box::new(latency));
        r.register_collector(Box::new(handshake_latency));
        r.register_collector(Box::new(handshake_request));
        m.create_known_series();
        Arc::new(m)
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(8 * 1024);
        // Encoding into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }

    /// Number of shards the per-shard metrics cover.
    pub fn shards(&self) -> usize {
        self.latency.shard_count()
    }

    /// Shard `shard`'s value of a per-shard counter (0 if it was never created).
    pub fn shard_counter(family: &Family<ShardLabel, Counter>, shard: usize) -> u64 {
        let label = ShardLabel {
            shard: shard as u32,
        };
        family.get(&label).map_or(0, |c| c.get())
    }

    /// Shard `shard`'s value of a per-shard gauge (0 if it was never created).
    pub fn shard_gauge(family: &Family<ShardLabel, Gauge>, shard: usize) -> i64 {
        let label = ShardLabel {
            shard: shard as u32,
        };
        family.get(&label).map_or(0, |g| g.get())
    }

    /// Frames dropped for `reason`, all shards together.
    pub fn drops_for(&self, reason: &'static str) -> u64 {
        (0..self.shards())
            .map(|shard| {
                let label = DropLabel {
                    shard: shard as u32,
                    reason,
                };
                self.drops.get(&label).map_or(0, |c| c.get())
            })
            .sum()
    }

    /// Creates, at zero, every series whose labels come from a fixed list (see `labels.rs`),
    /// so that each is there from the first scrape. Per-shard series are created by the
    /// shards when they start.
    fn create_known_series(&self) {
        for reason in ACCEPT_ERRORS {
            let _ = self.accept_errors.get_or_create(&ReasonLabel { reason });
        }
        for reason in HandshakeFailure::ALL {
            let reason = reason.as_str();
            let _ = self
                .handshake_failures
                .get_or_create(&ReasonLabel { reason });
        }
        for code in CLOSE_CODES {
            let _ = self.closes.get_or_create(&CodeLabel { code });
        }
        for code in crate::protocol::ErrorCode::ALL {
            let code = code.as_str();
            let _ = self.client_errors.get_or_create(&ErrorLabel { code });
        }
        for shard in 0..self.shards() as u32 {
            for reason in DROP_REASONS {
                let _ = self.drops.get_or_create(&DropLabel { shard, reason });
            }
        }
    }

    /// Counts a closed WebSocket connection.
    pub fn count_close(&self, code: u16) {
        let code = close_code_label(code);
        self.closes.get_or_create(&CodeLabel { code }).inc();
    }

    /// Counts a refused handshake.
    pub fn count_handshake_failure(&self, reason: HandshakeFailure) {
        let reason = reason.as_str();
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests;
