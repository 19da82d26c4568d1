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
//! Each topic's subscribers are kept in one set per [`Class`]: the clients sent plain frames
//! and those that negotiated permessage-deflate, sent the compressed twin. A broadcast walks
//! each set with that set's frame, so the walk never asks a connection which one it takes.
//! When a topic gets its first deflate subscriber on this shard, or loses its last, a
//! second registry hears of it, and the mixer compresses that topic's messages meanwhile.
//!
//! One topic may be *watched*: its subscribers (wildcard included) are counted across shards
//! in a shared gauge, touched only on subscribe and unsubscribe, so that the provider behind
//! it (telemetry) can skip its work while nobody listens.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

mod class;

pub use class::Class;
use class::Subscribers;

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
    by_topic: HashMap<Arc<str>, Subscribers>,
    /// Subscribers of every topic.
    wildcard: Subscribers,
    /// The shared name of the wildcard, handed to its subscribers.
    wildcard_name: Arc<str>,
    /// The watched topic, if any.
    watch: Option<Watch>,
    /// The node-wide registry told about topics appearing and disappearing here.
    interest: Arc<Interest>,
    /// The same for topics' deflate subscribers.
    deflate_interest: Arc<Interest>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            by_topic: HashMap::new(),
            wildcard: Subscribers::default(),
            wildcard_name: Arc::from(WILDCARD),
            watch: None,
            interest: Interest::new(),
            deflate_interest: Interest::new(),
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

    /// The same, reporting topic presence to `interest`, and the presence of a topic's
    /// deflate subscribers to `deflate_interest`.
    pub fn with_interest(
        mut self,
        interest: Arc<Interest>,
        deflate_interest: Arc<Interest>,
    ) -> Self {
        self.interest = interest;
        self.deflate_interest = deflate_interest;
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

    /// Adds `token` to `topic` (or to the wildcard set) in `class`, and returns the shard's
    /// shared copy of the name, so that a thousand subscribers hold one string. A
    /// connection keeps one class for its whole life.
    pub fn subscribe(&mut self, topic: &str, token: usize, class: Class) -> Arc<str> {
        if topic == WILDCARD {
            if self.wildcard.insert(token, class) {
                self.count_watched(topic, 1);
                if self.wildcard.len() == 1 {
                    self.interest.set_wildcard(true);
                }
                if class.deflate() && self.wildcard.deflate_count() == 1 {
                    self.deflate_interest.set_wildcard(true);
                }
            }
            return self.wildcard_name.clone();
        }
        let (name, is_new) = match self.by_topic.get_key_value(topic) {
            Some((name, _)) => (name.clone(), false),
            None => (Arc::from(topic), true),
        };
        let subscribers = self.by_topic.entry(name.clone()).or_default();
        if subscribers.insert(token, class) {
            let first_deflate = class.deflate() && subscribers.deflate_count() == 1;
            self.count_watched(topic, 1);
            if is_new {
                self.interest.add(&name);
            }
            if first_deflate {
                self.deflate_interest.add(&name);
            }
        }
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
        let class = if topic == WILDCARD {
            let class = self.wildcard.remove(token);
            if class.is_some() && self.wildcard.is_empty() {
                self.interest.set_wildcard(false);
            }
            if class.is_some_and(Class::deflate) && self.wildcard.deflate_count() == 0 {
                self.deflate_interest.set_wildcard(false);
            }
            class
        } else {
            let Some(subscribers) = self.by_topic.get_mut(topic) else {
                return false;
            };
            let class = subscribers.remove(token);
            if class.is_some_and(Class::deflate) && subscribers.deflate_count() == 0 {
                self.deflate_interest.remove(topic);
            }
            if subscribers.is_empty() {
                self.by_topic.remove(topic);
                self.interest.remove(topic);
            }
            class
        };
        if class.is_some() {
            self.count_watched(topic, -1);
        }
        class.is_some()
    }

    /// Calls `f` for every subscriber of `topic` in `class`, wildcard subscribers included.
    /// A client holds either the wildcard or named topics, never both, so nobody is visited
    /// twice.
    pub fn for_each_subscriber(&self, topic: &str, class: Class, mut f: impl FnMut(usize)) {
        if let Some(set) = self.by_topic.get(topic).and_then(|s| s.get(class)) {
            set.iter().for_each(|&t| f(t));
        }
        if let Some(set) = self.wildcard.get(class) {
            set.iter().for_each(|&t| f(t));
        }
    }

    /// Subscribers `topic` would reach on this shard, wildcard included.
    pub fn count(&self, topic: &str) -> usize {
        self.by_topic.get(topic).map_or(0, Subscribers::len) + self.wildcard.len()
    }

    /// Subscribers of `topic` on this shard per class (indexed by `Class as usize`), wildcard
    /// included: one lookup for a broadcast's walk.
    pub fn counts_by_class(&self, topic: &str) -> [usize; Class::ALL.len()] {
        let named = self.by_topic.get(topic);
        Class::ALL.map(|c| named.map_or(0, |s| s.count(c)) + self.wildcard.count(c))
    }

    /// Named topics with at least one subscriber on this shard.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_topic.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Class = Class::Plain;

    fn collect(s: &Subscriptions, topic: &str) -> Vec<usize> {
        let mut v = vec![];
        for class in Class::ALL {
            s.for_each_subscriber(topic, class, |t| v.push(t));
        }
        v.sort();
        v
    }

    #[test]
    fn named_and_wildcard_subscribers() {
        let mut s = Subscriptions::default();
        let a = s.subscribe("ticks", 1, P);
        let b = s.subscribe("ticks", 1, P);
        assert!(Arc::ptr_eq(&a, &b), "one shared name per topic");
        s.subscribe("ticks", 2, P);
        s.subscribe(WILDCARD, 3, P);
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
        s.subscribe("ticks", 1, P);
        assert_eq!(gauge.get(), 0, "other topics are not counted");
        s.subscribe("telemetry", 2, P);
        s.subscribe("telemetry", 2, P);
        assert_eq!(gauge.get(), 1, "a repeated subscribe counts once");
        s.subscribe(WILDCARD, 3, P);
        assert_eq!(gauge.get(), 2, "the wildcard receives telemetry too");
        assert!(!s.unsubscribe("telemetry", 9));
        assert_eq!(gauge.get(), 2, "unknown tokens change nothing");
        s.unsubscribe("telemetry", 2);
        s.unsubscribe(WILDCARD, 3);
        s.unsubscribe(WILDCARD, 3);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn deflate_subscribers_are_walked_apart_and_reported() {
        let interest = Interest::new();
        let deflate = Interest::new();
        let mut s = Subscriptions::default().with_interest(interest.clone(), deflate.clone());
        s.subscribe("ticks", 1, P);
        s.subscribe("ticks", 2, Class::Deflate);
        s.subscribe("ticks", 3, Class::Deflate);
        assert!(interest.wants("ticks") && deflate.wants("ticks"));
        let mut d = vec![];
        s.for_each_subscriber("ticks", Class::Deflate, |t| d.push(t));
        assert_eq!(d, [2, 3]);
        assert_eq!(s.count("ticks"), 3);
        assert_eq!(s.counts_by_class("ticks"), [1, 2, 0, 0]);
        s.subscribe("ticks", 5, Class::BatchDeflate);
        assert!(s.unsubscribe("ticks", 5));
        assert!(s.unsubscribe("ticks", 2));
        assert!(deflate.wants("ticks"), "3 still takes it compressed");
        assert!(s.unsubscribe("ticks", 3));
        assert!(!deflate.wants("ticks") && interest.wants("ticks"));
        s.subscribe(WILDCARD, 4, Class::Deflate);
        assert!(deflate.wants("anything"));
        assert_eq!(s.counts_by_class("ticks"), [1, 1, 0, 0]);
        assert!(s.unsubscribe(WILDCARD, 4));
        assert!(!deflate.wants("anything"));
        assert!(s.unsubscribe("ticks", 1));
        assert!(!interest.wants("ticks"));
    }

    #[test]
    fn empty_topics_are_forgotten() {
        let mut s = Subscriptions::default();
        s.subscribe("room.a", 7, P);
        assert!(s.unsubscribe("room.a", 7));
        assert!(!s.unsubscribe("room.a", 7));
        assert_eq!(s.topics().count(), 0);
        assert!(collect(&s, "room.a").is_empty());
    }
}
