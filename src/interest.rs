//! Which topics some client on this node wants, across every shard.
//!
//! Each shard reports a topic when its first local subscriber arrives and when its last one
//! leaves (and the same for the wildcard `*`), so the registry is touched on subscription
//! changes only, never per message. Readers are threads that want to do work only for topics
//! someone listens to: the Redis subscriber (per-topic channels, not a firehose) and the
//! telemetry provider. A version counter lets them notice changes without taking the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    /// Shards with at least one subscriber, per named topic.
    topics: HashMap<Arc<str>, usize>,
    /// Shards with at least one wildcard subscriber.
    wildcard: usize,
}

/// The node's topic interest.
#[derive(Debug, Default)]
pub struct Interest {
    inner: Mutex<Inner>,
    version: AtomicU64,
}

/// A copy of the interest at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The version it was taken at.
    pub version: u64,
    /// Named topics someone subscribes to.
    pub topics: Vec<Arc<str>>,
    /// Whether someone subscribes to every topic.
    pub wildcard: bool,
}

impl Interest {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Interest::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A shard got its first subscriber of `topic`.
    pub fn add(&self, topic: &Arc<str>) {
        *self.lock().topics.entry(topic.clone()).or_insert(0) += 1;
        self.changed();
    }

    /// A shard lost its last subscriber of `topic`.
    pub fn remove(&self, topic: &str) {
        let mut inner = self.lock();
        if let Some(n) = inner.topics.get_mut(topic) {
            *n -= 1;
            if *n == 0 {
                inner.topics.remove(topic);
            }
        }
        drop(inner);
        self.changed();
    }

    /// A shard got (`true`) or lost (`false`) its only wildcard subscribers.
    pub fn set_wildcard(&self, present: bool) {
        let mut inner = self.lock();
        if present {
            inner.wildcard += 1;
        } else {
            inner.wildcard = inner.wildcard.saturating_sub(1);
        }
        drop(inner);
        self.changed();
    }

    /// Whether a message on `topic` would reach anyone on this node.
    pub fn wants(&self, topic: &str) -> bool {
        let inner = self.lock();
        inner.wildcard > 0 || inner.topics.contains_key(topic)
    }

    /// The current version (changes whenever the interest does).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current interest.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut topics: Vec<Arc<str>> = inner.topics.keys().cloned().collect();
        topics.sort();
        Snapshot {
            version: self.version(),
            topics,
            wildcard: inner.wildcard > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_shards_per_topic() {
        let i = Interest::new();
        let t: Arc<str> = Arc::from("room.a");
        let v0 = i.version();
        i.add(&t);
        i.add(&t);
        assert!(i.version() > v0);
        assert!(i.wants("room.a") && !i.wants("room.b"));
        i.remove("room.a");
        assert!(i.wants("room.a"), "one shard still has subscribers");
        i.remove("room.a");
        assert!(!i.wants("room.a"));
        i.set_wildcard(true);
        assert!(i.wants("anything"));
        assert!(i.snapshot().wildcard);
        i.set_wildcard(false);
        assert_eq!(i.snapshot().topics, Vec::<Arc<str>>::new());
    }
}
