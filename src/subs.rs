//! One shard's topic -> subscribers index.
//!
//! A broadcast frame costs one hash lookup per shard plus one step per subscriber: clients
//! that did not ask for the topic are never visited. Subscriber sets are `IndexSet`s of slab
//! tokens, so adding, removing (swap-remove) and iterating are all O(1) per element and the
//! iteration walks a dense array. Clients that asked for every topic (`*`) sit in a separate
//! set visited for every frame.
//!
//! When a topic gets its first subscriber on this shard, or loses its last, the node-wide
//! [`Interest`] registry hears of it (subscription changes only, never per message).
//!
//! One topic may be *watched*: its subscribers (wildcard included) are counted across shards
//! in a shared gauge, touched only on subscribe and unsubscribe, so that the provider behind
//! it (telemetry) can skip its work while nobody listens.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexSet;
use prometheus_client::metrics::gauge::Gauge;

use crate::interest::Interest;
use crate::protocol::WILDCARD;

/// A topic whose subscribers every shard counts into one shared gauge.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The watched topic's name.
    pub topic: &'static str,
    /// Connections that would receive a message on `topic`, all shards together.
    pub subscribers: Gauge,
}

/// Topic -> subscriber tokens, owned by one shard thread.
#[derive(Debug)]
pub struct Subscriptions {
    /// Subscribers per named topic. A topic's entry is removed when its last subscriber goes.
    by_topic: HashMap<Arc<str>, IndexSet<usize>>,
    /// Subscribers of every topic.
    wildcard: IndexSet<usize>,
    /// The shared name of the wildcard, handed to its subscribers.
    wildcard_name: Arc<str>,
    /// The watched topic, if any.
    watch: Option<Watch>,
    /// The node-wide registry told about topics appearing and disappearing here.
    interest: Arc<Interest>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            by_topic: HashMap::new(),
            wildcard: IndexSet::new(),
            wildcard_name: Arc::from(WILDCARD),
            watch: None,
            interest: Interest::new(),
        }
    }
}

impl Subscriptions {
    /// An empty index that counts the subscribers of `watch.topic` into `watch.subscribers`.
    pub fn watching(watch: Watch) -> Self {
        Subscriptions {
            watch: Some(watch),
            ..Subscriptions::default()
        }
    }

    /// The same, reporting topic presence to `interest`.
    pub fn with_interest(mut self, interest: Arc<Interest>) -> Self {
        self.interest = interest;
        self
    }

    /// Adjusts the watched topic's gauge after `token` joined (`delta = 1`) or left (`-1`)
    /// `topic`. Called only when the index really changed, so joins and leaves balance.
    fn count_watched(&self, topic: &str, delta: i64) {
        if let Some(w) = &self.watch
            && (topic == WILDCARD || topic == w.topic)
        {
            w.subscribers.inc_by(delta);
        }
    }

    /// Adds `token` to `topic` (or to the wildcard set) and returns the shard's shared copy
    /// of the name, so that a thousand subscribers hold one string.
    pub fn subscribe(&mut self, topic: &str, token: usize) -> Arc<str> {
        if topic == WILDCARD {
            if self.wildcard.insert(token) {
                self.count_watched(topic, 1);
                if self.wildcard.len() == 1 {
                    self.interest.set_wildcard(true);
                }
            }
            return self.wildcard_name.clone();
        }
        if let Some((name, _)) = self.by_topic.get_key_value(topic) {
            let name = name.clone();
            if self.by_topic.entry(name.clone()).or_default().insert(token) {
                self.count_watched(topic, 1);
            }
            return name;
        }
        let name: Arc<str> = Arc::from(topic);
        self.by_topic.insert(name.clone(), IndexSet::from([token]));
        self.count_watched(topic, 1);
        self.interest.add(&name);
        name
    }

    /// Keeps `topic` wanted by this node while a connection waits for its replay (outside
    /// the index), so the Redis bus stays subscribed across the resume. Paired with
    /// [`Subscriptions::release`].
    pub fn hold(&self, topic: &Arc<str>) {
        self.interest.add(topic);
    }

    /// Ends a [`Subscriptions::hold`].
    pub fn release(&self, topic: &str) {
        self.interest.remove(topic);
    }

    /// Removes `token` from `topic`. Returns false if it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str, token: usize) -> bool {
        let removed = if topic == WILDCARD {
            let removed = self.wildcard.swap_remove(&token);
            if removed && self.wildcard.is_empty() {
                self.interest.set_wildcard(false);
            }
            removed
        } else {
            let Some(set) = self.by_topic.get_mut(topic) else {
                return false;
            };
            let removed = set.swap_remove(&token);
            if set.is_empty() {
                self.by_topic.remove(topic);
                self.interest.remove(topic);
            }
            removed
        };
        if removed {
            self.count_watched(topic, -1);
        }
        removed
    }

    /// Calls `f` for every subscriber of `topic`, wildcard subscribers included. A client
    /// holds either the wildcard or named topics, never both, so nobody is visited twice.
    pub fn for_each_subscriber(&self, topic: &str, mut f: impl FnMut(usize)) {
        if let Some(set) = self.by_topic.get(topic) {
            set.iter().for_each(|&t| f(t));
        }
        self.wildcard.iter().for_each(|&t| f(t));
    }

    /// Subscribers `topic` would reach on this shard, wildcard included.
    pub fn count(&self, topic: &str) -> usize {
        self.by_topic.get(topic).map_or(0, IndexSet::len) + self.wildcard.len()
    }

    /// Named topics with at least one subscriber on this shard.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_topic.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &Subscriptions, topic: &str) -> Vec<usize> {
        let mut v = vec![];
        s.for_each_subscriber(topic, |t| v.push(t));
        v.sort();
        v
    }

    #[test]
    fn named_and_wildcard_subscribers() {
        let mut s = Subscriptions::default();
        let a = s.subscribe("ticks", 1);
        let b = s.subscribe("ticks", 1);
        assert!(Arc::ptr_eq(&a, &b), "one shared name per topic");
        s.subscribe("ticks", 2);
        s.subscribe(WILDCARD, 3);
        assert_eq!(collect(&s, "ticks"), vec![1, 2, 3]);
        assert_eq!(collect(&s, "telemetry"), vec![3]);
        assert_eq!(s.count("ticks"), 3);
    }

    #[test]
    fn watched_topic_counts_named_and_wildcard_subscribers_once() {
        let gauge = Gauge::default();
        let mut s = Subscriptions::watching(Watch {
            topic: "telemetry",
            subscribers: gauge.clone(),
        });
        s.subscribe("ticks", 1);
        assert_eq!(gauge.get(), 0, "other topics are not counted");
        s.subscribe("telemetry", 2);
        s.subscribe("telemetry", 2);
        assert_eq!(gauge.get(), 1, "a repeated subscribe counts once");
        s.subscribe(WILDCARD, 3);
        assert_eq!(gauge.get(), 2, "the wildcard receives telemetry too");
        assert!(!s.unsubscribe("telemetry", 9));
        assert_eq!(gauge.get(), 2, "unknown tokens change nothing");
        s.unsubscribe("telemetry", 2);
        s.unsubscribe(WILDCARD, 3);
        s.unsubscribe(WILDCARD, 3);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn empty_topics_are_forgotten() {
        let mut s = Subscriptions::default();
        s.subscribe("room.a", 7);
        assert!(s.unsubscribe("room.a", 7));
        assert!(!s.unsubscribe("room.a", 7));
        assert_eq!(s.topics().count(), 0);
        assert!(collect(&s, "room.a").is_empty());
    }
}
