//! The Redis bus threads' counters (`bus/publisher.rs`, `bus/subscriber.rs`): plain
//! counters handed to each thread at start and registered with the server's registry here,
//! so the registry never depends on the threads that count.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of the publisher.
#[derive(Debug, Clone, Default)]
pub struct PublisherMetrics {
    /// Messages published to Redis.
    pub published: Counter,
    /// Failed attempts (each followed by a reconnect and a retry).
    pub errors: Counter,
}

impl PublisherMetrics {
    /// Registers the counters under their exported names.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "bus_published",
            "Messages published to the Redis bus",
            self.published.clone(),
        );
        r.register(
            "bus_publish_errors",
            "Failed publishes to the Redis bus (each retried after reconnecting)",
            self.errors.clone(),
        );
    }
}

/// Counters of the subscriber.
#[derive(Debug, Clone, Default)]
pub struct SubscriberMetrics {
    /// Messages received from Redis and handed to the mixer.
    pub received: Counter,
    /// Reconnections after a lost connection.
    pub reconnects: Counter,
    /// Messages that were not tickcast's (unparsable); dropped.
    pub malformed: Counter,
    /// Cluster slot maps read again because they named a replica as a master (read from a
    /// node that had not yet heard of a failover).
    pub stale_slot_maps: Counter,
}

impl SubscriberMetrics {
    /// Registers the counters under their exported names.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "redis_reconnects",
            "Reconnections of the Redis subscriber after a lost connection",
            self.reconnects.clone(),
        );
        r.register(
            "bus_received",
            "Messages received from the Redis bus",
            self.received.clone(),
        );
        r.register(
            "bus_malformed",
            "Unparsable messages on the Redis bus channels (dropped)",
            self.malformed.clone(),
        );
        r.register(
            "redis_stale_slot_maps",
            "Cluster slot maps read again because they named a replica as a master",
            self.stale_slot_maps.clone(),
        );
    }
}
