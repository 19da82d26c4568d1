//! What one load thread counts, and how the threads' counts are merged.
//!
//! Connection events (handshake latency, failures, closes) are counted for the whole run;
//! message counts and latency only inside the measured window. Everything is plain integers
//! and hdrhistograms owned by the thread, merged once at the end: no atomics per message.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use crate::metrics::new_latency_histogram;

/// Distinct topics tracked by name; later ones share the `_other` entry (without gap
/// tracking, since their sequences would mix).
pub const MAX_TOPICS: usize = 1024;
/// The name of the shared overflow entry.
pub const OTHER_TOPIC: &str = "_other";

/// Per-topic counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Data messages received in the window.
    pub messages: u64,
    /// Messages missing from the seq sequence, summed over connections.
    pub gaps: u64,
    /// Messages whose seq was not above the last one seen (duplicates, reordering).
    pub reordered: u64,
    /// The lowest (seq, ts) seen in the window, over every connection.
    pub first: Option<(u64, u64)>,
    /// The highest (seq, ts) seen in the window, over every connection.
    pub last: Option<(u64, u64)>,
}

impl TopicCounts {
    /// Counts a message and widens the seen (seq, ts) span.
    #[inline]
    pub fn seen(&mut self, seq: u64, ts: u64) {
        self.messages += 1;
        if self.first.is_none_or(|(s, _)| seq < s) {
            self.first = Some((seq, ts));
        }
        if self.last.is_none_or(|(s, _)| seq > s) {
            self.last = Some((seq, ts));
        }
    }

    /// Messages the server sequenced on this topic over the window, as the clients saw it:
    /// every seq from the lowest to the highest any client received in the window. A count,
    /// not a rate over the span of the stamps: ticks of several feeds due at about the same
    /// time would make that span shorter than the window and the rate read high.
    pub fn produced(&self) -> Option<u64> {
        let ((s0, _), (s1, _)) = (self.first?, self.last?);
        Some(s1.saturating_sub(s0) + 1)
    }

    fn merge(&mut self, other: &TopicCounts) {
        self.messages += other.messages;
        self.gaps += other.gaps;
        self.reordered += other.reordered;
        if let Some(f) = other.first
            && self.first.is_none_or(|(s, _)| f.0 < s)
        {
            self.first = Some(f);
        }
        if let Some(l) = other.last
            && self.last.is_none_or(|(s, _)| l.0 > s)
        {
            self.last = Some(l);
        }
    }
}

/// What the server sequenced while the threads measured, and the deliveries it made due.
///
/// Counted per thread, over that thread's window ([`Stats::settle_production`]): the threads
/// open their windows a little apart, and their union would hold messages (a whole round of
/// ticks due together) that no single client could have received in its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Produced {
    /// The most messages one thread saw sequenced, all named topics together (the largest
    /// over threads once merged).
    pub messages: u64,
    /// Deliveries due to the thread's clients: `(messages - 1 per topic) x connected`, the
    /// one message per topic forgiven being the one in flight at a window edge (summed over
    /// threads once merged).
    pub due: u64,
}

/// Topic name -> small id, so connections remember their last seq per topic by id.
#[derive(Debug, Default)]
pub struct TopicTable {
    index: HashMap<Box<[u8]>, u32>,
    names: Vec<String>,
    /// Counts by id.
    pub counts: Vec<TopicCounts>,
    other: Option<u32>,
}

impl TopicTable {
    /// The id of `name`, adding it (or mapping it to `_other` once the table is full).
    pub fn id(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        if self.names.len() >= MAX_TOPICS {
            return self.other_id();
        }
        let id = self.push(String::from_utf8_lossy(name).into_owned());
        self.index.insert(name.into(), id);
        id
    }

    /// Whether `id` is the shared overflow entry.
    pub fn is_other(&self, id: u32) -> bool {
        self.other == Some(id)
    }

    /// Whether `id` is named `name` (a cheap check for a connection's usual topic).
    #[inline]
    pub fn is(&self, id: u32, name: &[u8]) -> bool {
        self.names
            .get(id as usize)
            .is_some_and(|n| n.as_bytes() == name)
    }

    fn other_id(&mut self) -> u32 {
        match self.other {
            Some(id) => id,
            None => {
                let id = self.push(OTHER_TOPIC.into());
                self.other = Some(id);
                id
            }
        }
    }

    fn push(&mut self, name: String) -> u32 {
        self.names.push(name);
        self.counts.push(TopicCounts::default());
        (self.names.len() - 1) as u32
    }

    /// (name, counts) for every topic.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TopicCounts)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter())
    }

    /// Resets the counts (ids stay valid).
    fn reset_counts(&mut self) {
        self.counts
            .iter_mut()
            .for_each(|c| *c = TopicCounts::default());
    }
}

/// Counts kept inside the measured window.
#[derive(Debug, Clone, Default)]
pub struct WindowCounts {
    /// Data messages (with `seq` and `ts`).
    pub messages: u64,
    /// Bytes read from sockets.
    pub bytes: u64,
    /// Other messages (welcome, acknowledgements).
    pub other_messages: u64,
    /// Error frames received.
    pub error_frames: u64,
    /// Messages missing from the seq sequence.
    pub gaps: u64,
    /// Publish operations sent.
    pub published: u64,
    /// Publishes skipped because the connection's send buffer was full.
    pub publish_skipped: u64,
}

/// Everything one thread counted.
#[derive(Debug)]
pub struct Stats {
    /// TCP connect started -> 101 received, µs (whole run).
    pub handshake: Histogram<u64>,
    /// Receive time - message `ts`, µs (window).
    pub latency: Histogram<u64>,
    /// Receive time - the `sent_us` a publisher embedded, µs (window).
    pub publish_latency: Histogram<u64>,
    /// Connections that completed the handshake (whole run).
    pub connected: u64,
    /// Connect and handshake failures by reason (whole run).
    pub failures: BTreeMap<String, u64>,
    /// Closes by code (whole run; 1006 = the stream ended without a close frame).
    pub closes: BTreeMap<u16, u64>,
    /// Window counts.
    pub window: WindowCounts,
    /// Per-topic counts (window).
    pub topics: TopicTable,
    /// Whether the window is open.
    pub measuring: bool,
    /// Seconds the window lasted on this thread.
    pub window_secs: f64,
    /// What the server sequenced in the window and the deliveries it made due, once the
    /// window is over (`None` when no named topic had a message).
    pub produced: Option<Produced>,
    /// CPU time this thread used inside the window, ns.
    pub cpu_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            handshake: new_latency_histogram(),
            latency: new_latency_histogram(),
            publish_latency: new_latency_histogram(),
            connected: 0,
            failures: BTreeMap::new(),
            closes: BTreeMap::new(),
            window: WindowCounts::default(),
            topics: TopicTable::default(),
            measuring: false,
            window_secs: 0.0,
            produced: None,
            cpu_ns: 0,
        }
    }
}

impl Stats {
    /// Counts a failure by reason.
    pub fn fail(&mut self, reason: &str) {
        *self.failures.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts a close by code.
    pub fn close(&mut self, code: u16) {
        *self.closes.entry(code).or_default() += 1;
    }

    /// Opens the window: message counts start from zero.
    pub fn begin_window(&mut self) {
        self.window = WindowCounts::default();
        self.latency.reset();
        self.publish_latency.reset();
        self.topics.reset_counts();
        self.measuring = true;
    }

    /// Settles [`Stats::produced`] once this thread's window is over, from what its clients
    /// received per named topic (see [`TopicCounts::produced`]).
    pub fn settle_production(&mut self) {
        let (mut messages, mut topics) = (0u64, 0u64);
        for (_, counts) in self.topics.iter().filter(|(name, _)| *name != OTHER_TOPIC) {
            if let Some(n) = counts.produced() {
                messages += n;
                topics += 1;
            }
        }
        self.produced = (topics > 0).then(|| Produced {
            messages,
            due: (messages - topics).saturating_mul(self.connected),
        });
    }

    /// Total failures.
    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Adds `other`'s counts into `self` (topics merged by name).
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.handshake.add(&other.handshake);
        let _ = self.latency.add(&other.latency);
        let _ = self.publish_latency.add(&other.publish_latency);
        self.connected += other.connected;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.closes {
            *self.closes.entry(*k).or_default() += v;
        }
        let (w, o) = (&mut self.window, &other.window);
        w.messages += o.messages;
        w.bytes += o.bytes;
        w.other_messages += o.other_messages;
        w.error_frames += o.error_frames;
        w.gaps += o.gaps;
        w.published += o.published;
        w.publish_skipped += o.publish_skipped;
        for (name, counts) in other.topics.iter() {
            let id = if name == OTHER_TOPIC {
                self.topics.other_id()
            } else {
                self.topics.id(name.as_bytes())
            };
            self.topics.counts[id as usize].merge(counts);
        }
        if let Some(o) = other.produced {
            let p = self.produced.get_or_insert_with(Produced::default);
            p.messages = p.messages.max(o.messages);
            p.due += o.due;
        }
        self.cpu_ns = self.cpu_ns.max(other.cpu_ns);
        self.window_secs = self.window_secs.max(other.window_secs);
    }
}

/// `key=value` pairs joined with `;`, for CSV cells.
pub fn join_counts<K: std::fmt::Display>(map: &BTreeMap<K, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_stable_and_bounded() {
        let mut t = TopicTable::default();
        let a = t.id(b"ticks");
        assert_eq!(t.id(b"ticks"), a);
        assert!(t.is(a, b"ticks") && !t.is(a, b"tick"));
        for i in 0..MAX_TOPICS + 10 {
            t.id(format!("t{i}").as_bytes());
        }
        let over = t.id(b"one-too-many");
        assert!(t.is_other(over));
        assert_eq!(t.id(b"another"), over);
        assert_eq!(t.iter().count(), MAX_TOPICS + 1);
    }

    #[test]
    fn the_production_is_counted_from_the_seqs_seen() {
        let mut c = TopicCounts::default();
        assert_eq!(c.produced(), None);
        // Seen out of order across connections: seqs 10 to 20 were sequenced.
        c.seen(15, 1_500_000);
        c.seen(10, 1_000_000);
        c.seen(20, 2_000_000);
        c.seen(12, 1_200_000);
        assert_eq!(c.messages, 4);
        assert_eq!(c.produced(), Some(11));
        let mut other = TopicCounts::default();
        other.seen(30, 3_000_000);
        c.merge(&other);
        assert_eq!(c.produced(), Some(21));
        assert_eq!(c.last, Some((30, 3_000_000)));
        // Four feeds due together every 100 ms for 3 s: 120 messages whose stamps span
        // 2.9 s (a rate read from them would say 41/s); the count is what was produced.
        let mut ticks = TopicCounts::default();
        for seq in 1..=120u64 {
            ticks.seen(seq, (seq - 1) / 4 * 100_000);
        }
        assert_eq!(ticks.produced(), Some(120));
    }

    #[test]
    fn the_production_is_settled_per_thread_over_named_topics() {
        let thread = |first: u64, last: u64, connected: u64| {
            let mut s = Stats::default();
            let a = s.topics.id(b"a") as usize;
            s.topics.counts[a].seen(first, 0);
            s.topics.counts[a].seen(last, 0);
            let b = s.topics.id(b"b") as usize;
            s.topics.counts[b].seen(7, 0);
            let other = s.topics.other_id() as usize;
            s.topics.counts[other].seen(1, 0);
            s.topics.counts[other].seen(1_000, 0);
            s.connected = connected;
            s.settle_production();
            s
        };
        // Topic a: 5 messages, b: 1; one per topic forgiven: 4 due per client.
        let mut one = thread(1, 5, 10);
        assert_eq!(
            one.produced,
            Some(Produced {
                messages: 6,
                due: 40
            })
        );
        // A thread whose window opened a round later, and closed a round later too.
        let two = thread(2, 6, 5);
        one.merge(&two);
        assert_eq!(
            one.produced,
            Some(Produced {
                messages: 6,
                due: 60
            })
        );
        // Not the union's 7 + 1 messages, which no client could have received.
        let mut none = Stats::default();
        none.settle_production();
        assert_eq!(none.produced, None);
    }

    #[test]
    fn merge_adds_counts_and_topics_by_name() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.fail("refused");
        b.fail("refused");
        b.close(1001);
        let ia = a.topics.id(b"x");
        a.topics.counts[ia as usize].gaps = 2;
        b.topics.id(b"y");
        let ib = b.topics.id(b"x");
        b.topics.counts[ib as usize].gaps = 3;
        a.latency.record(10).unwrap();
        b.latency.record(20).unwrap();
        a.merge(&b);
        assert_eq!(a.failures["refused"], 2);
        assert_eq!(join_counts(&a.closes), "1001=1");
        let x = a.topics.id(b"x");
        assert_eq!(a.topics.counts[x as usize].gaps, 5);
        assert_eq!(a.latency.len(), 2);
    }
}
