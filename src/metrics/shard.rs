//! A shard's own counters: plain integers during a turn, added to the shared metrics once per
//! turn, and latency histograms handed over about once a second. Owned by the shard thread
//! (and lent to its connections); the registry they feed knows nothing of shards.
//!
//! Keeping per-delivery accounting in thread-local integers means a broadcast to 10,000
//! clients costs no atomic operation per client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::{DropLabel, ErrorLabel, Metrics, ShardLabel, new_latency_histogram};

/// How often the latency histogram and queue depth are published.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Gauges a shard samples once per [`PUBLISH_EVERY`].
#[derive(Debug, Clone, Copy)]
pub struct Sampled {
    /// Messages waiting in the shard's queue.
    pub queue_depth: usize,
    /// Bytes in the shard's queue and the mixer's backlog for it.
    pub queue_bytes: usize,
    /// Entries in the shard's timer wheel (one per open connection, none for closed ones).
    pub timer_entries: usize,
}

/// Metric handles resolved once for one shard.
#[derive(Debug)]
struct Handles {
    delivered: Counter,
    bytes: Counter,
    outbox_drops: Counter,
    slow_consumer_drops: Counter,
    control_drops: Counter,
    fanout_walks: Counter,
    slow_disconnects: Counter,
    idle_timeouts: Counter,
    write_timeouts: Counter,
    token_expiries: Counter,
    handshakes: Counter,
    client_publishes: Counter,
    connections: Gauge,
    queue_depth: Gauge,
    queue_bytes: Gauge,
    timer_entries: Gauge,
}

/// Counts kept by one shard thread.
#[derive(Debug)]
pub struct ShardStats {
    /// This shard's index.
    pub shard: usize,
    /// Shared registry, for rare events with open-ended labels (close codes, reasons).
    pub metrics: Arc<Metrics>,
    handles: Handles,
    /// Broadcast frames completely written this turn.
    pub delivered: u64,
    /// Bytes written this turn.
    pub bytes: u64,
    /// Broadcast frames skipped this turn because an outbox was full.
    pub outbox_drops: u64,
    /// Frames refused or discarded this turn by slow-consumer closes.
    pub slow_consumer_drops: u64,
    /// Control frames (ping, pong, reset) refused this turn past a full outbox's allowance.
    pub control_drops: u64,
    /// Broadcast walks over a topic's subscribers this turn (one per run of frames).
    pub fanout_walks: u64,
    /// Slow consumers disconnected this turn.
    pub slow_disconnects: u64,
    /// Idle connections closed this turn.
    pub idle_timeouts: u64,
    /// Connections dropped this turn because their socket took nothing for the write timeout.
    pub write_timeouts: u64,
    /// Connections closed this turn because their token expired.
    pub token_expiries: u64,
    /// Handshakes completed this turn.
    pub handshakes: u64,
    /// Client publishes accepted this turn (passed to the mixer or the bus).
    pub client_publishes: u64,
    /// Open connections that were answered with a plain HTTP response (a scrape, a health
    /// check, a refusal) and are only closing: `tickcast_connections` leaves them out, so a
    /// scrape never counts its own connection.
    pub answered_http: usize,
    /// Broadcast latency in µs since the last publish.
    pub latency: Histogram<u64>,
    /// Handshake latency, the server's part (request head complete -> 101 queued), in µs
    /// since the last publish.
    pub handshake_latency: Histogram<u64>,
    /// Handshake request time (accepted -> request head complete) in µs since the last
    /// publish: the client's part.
    pub handshake_request: Histogram<u64>,
    next_publish: Instant,
}

impl ShardStats {
    /// Resolves shard `shard`'s handles.
    pub fn new(shard: usize, metrics: Arc<Metrics>, now: Instant) -> Self {
        let label = ShardLabel {
            shard: shard as u32,
        };
        let drop_label = |reason| DropLabel {
            shard: shard as u32,
            reason,
        };
        let handles = Handles {
            delivered: metrics.delivered.get_or_create(&label).clone(),
            bytes: metrics.bytes_written.get_or_create(&label).clone(),
            outbox_drops: metrics
                .drops
                .get_or_create(&drop_label("outbox_full"))
                .clone(),
            slow_consumer_drops: metrics
                .drops
                .get_or_create(&drop_label("slow_consumer"))
                .clone(),
            control_drops: metrics
                .drops
                .get_or_create(&drop_label("control_frame"))
                .clone(),
            fanout_walks: metrics.fanout_walks.get_or_create(&label).clone(),
            slow_disconnects: metrics
                .slow_consumer_disconnects
                .get_or_create(&label)
                .clone(),
            idle_timeouts: metrics.idle_timeouts.get_or_create(&label).clone(),
            write_timeouts: metrics.write_timeouts.get_or_create(&label).clone(),
            token_expiries: metrics.token_expiries.get_or_create(&label).clone(),
            handshakes: metrics.handshakes.get_or_create(&label).clone(),
            client_publishes: metrics.client_publishes.get_or_create(&label).clone(),
            connections: metrics.connections.get_or_create(&label).clone(),
            queue_depth: metrics.queue_depth.get_or_create(&label).clone(),
            queue_bytes: metrics.queue_bytes.get_or_create(&label).clone(),
            timer_entries: metrics.timer_entries.get_or_create(&label).clone(),
        };
        ShardStats {
            shard,
            metrics,
            handles,
            delivered: 0,
            bytes: 0,
            outbox_drops: 0,
            slow_consumer_drops: 0,
            control_drops: 0,
            fanout_walks: 0,
            slow_disconnects: 0,
            idle_timeouts: 0,
            write_timeouts: 0,
            token_expiries: 0,
            handshakes: 0,
            client_publishes: 0,
            answered_http: 0,
            latency: new_latency_histogram(),
            handshake_latency: new_latency_histogram(),
            handshake_request: new_latency_histogram(),
            next_publish: now + PUBLISH_EVERY,
        }
    }

    /// Records one delivered broadcast frame stamped `stamp_us`, written by `now_us`.
    #[inline]
    pub fn record_delivery(&mut self, stamp_us: u64, now_us: u64) {
        self.delivered += 1;
        // Clamp: clocks may step; a value outside the histogram's range is saturated.
        self.latency
            .saturating_record(now_us.saturating_sub(stamp_us).max(1));
    }

    /// Records a completed handshake: how long its request took to arrive after the accept
    /// (the client's part) and how long the server took from there to the 101.
    pub fn record_handshake(&mut self, request: Duration, server: Duration) {
        self.handshake_request
            .saturating_record((request.as_micros() as u64).max(1));
        self.handshake_latency
            .saturating_record((server.as_micros() as u64).max(1));
    }

    /// Counts an error frame sent to a client.
    pub fn count_client_error(&self, code: &'static str) {
        self.metrics
            .client_errors
            .get_or_create(&ErrorLabel { code })
            .inc();
    }

    /// Sets `tickcast_connections` from the shard's `open` connections (every state), less
    /// those answered with plain HTTP. Called at each publish, and by a scrape right before
    /// it renders, so the figure it reads is the shard's at that moment.
    pub fn set_connections(&self, open: usize) {
        let counted = open.saturating_sub(self.answered_http);
        self.handles.connections.set(counted as i64);
    }

    /// Adds this turn's counts to the shared counters; once per [`PUBLISH_EVERY`] also hands
    /// over the latency histogram and samples the gauges. Returns the next publish time.
    pub fn publish(&mut self, now: Instant, connections: usize, gauges: Sampled) -> Instant {
        fn add(counter: &Counter, n: &mut u64) {
            if *n > 0 {
                counter.inc_by(*n);
                *n = 0;
            }
        }
        add(&self.handles.delivered, &mut self.delivered);
        add(&self.handles.bytes, &mut self.bytes);
        add(&self.handles.outbox_drops, &mut self.outbox_drops);
        add(
            &self.handles.slow_consumer_drops,
            &mut self.slow_consumer_drops,
        );
        add(&self.handles.control_drops, &mut self.control_drops);
        add(&self.handles.fanout_walks, &mut self.fanout_walks);
        add(&self.handles.slow_disconnects, &mut self.slow_disconnects);
        add(&self.handles.idle_timeouts, &mut self.idle_timeouts);
        add(&self.handles.write_timeouts, &mut self.write_timeouts);
        add(&self.handles.token_expiries, &mut self.token_expiries);
        add(&self.handles.handshakes, &mut self.handshakes);
        add(&self.handles.client_publishes, &mut self.client_publishes);
        self.set_connections(connections);
        if now >= self.next_publish {
            self.metrics.latency.publish(self.shard, &self.latency);
            self.latency.reset();
            self.metrics
                .handshake_latency
                .publish(self.shard, &self.handshake_latency);
            self.handshake_latency.reset();
            self.metrics
                .handshake_request
                .publish(self.shard, &self.handshake_request);
            self.handshake_request.reset();
            self.handles.queue_depth.set(gauges.queue_depth as i64);
            self.handles.queue_bytes.set(gauges.queue_bytes as i64);
            self.handles.timer_entries.set(gauges.timer_entries as i64);
            self.next_publish = now + PUBLISH_EVERY;
        }
        self.next_publish
    }
}
