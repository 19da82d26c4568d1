//! The node-wide history budget (`--history-budget`): every ring together keeps at most this
//! many bytes of frames, whatever the number of rooms.
//!
//! Each ring is bounded on its own (`--history` messages, 4 MiB), but a room's ring lives
//! while a member stays and a connection may hold 64 rooms, so per-ring bounds alone let a
//! few hundred connections pin tens of GiB. The budget keeps one FIFO of every kept frame, in
//! the order the mixer sequenced them: `(topic, ring id, seq)`. When the bytes kept pass the
//! budget, the front entries are taken out of their rings (the node's oldest frames, across
//! all topics) until the sum fits again. A resume that reaches back past an evicted frame
//! gets `reset`, as one past a ring's own caps does.
//!
//! Cost: one entry per kept frame (a reference count and two integers, in a `VecDeque` that
//! grows amortized, as the ring does), one addition per message, and one lookup per evicted
//! or stale entry. Entries go stale when a ring drops a frame on its own or a room ends;
//! they leave when they reach the front, or in a compaction once they outnumber the live
//! ones, so the FIFO stays within twice the frames kept (plus [`SLACK`]), amortized O(1) per
//! message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::TopicState;
use super::history::Pushed;

/// Stale entries tolerated beyond the live ones before a compaction.
const SLACK: usize = 4096;

pub use crate::config::bounds::{
    HISTORY_BUDGET_MAX as MAX_BUDGET, HISTORY_BUDGET_MIN as MIN_BUDGET,
};
/// The derived default is an eighth of the machine's memory, between these bounds.
const DEFAULT_FLOOR: u64 = 64 * 1024 * 1024;
const DEFAULT_CAP: u64 = 4 * 1024 * 1024 * 1024;
/// The default when `/proc/meminfo` cannot be read.
const DEFAULT_UNKNOWN: u64 = 512 * 1024 * 1024;

/// The default budget: an eighth of `MemTotal`, at least 64 MiB, at most 4 GiB (512 MiB
/// when the machine's memory cannot be read). Read once, when the server starts.
pub fn default_budget() -> u64 {
    derive_budget(crate::procstat::meminfo().and_then(|m| m.total_bytes))
}

/// [`default_budget`] for a machine of `total` bytes.
fn derive_budget(total: Option<u64>) -> u64 {
    total.map_or(DEFAULT_UNKNOWN, |t| {
        (t / 8).clamp(DEFAULT_FLOOR, DEFAULT_CAP)
    })
}

/// One kept frame, in the order it was sequenced.
#[derive(Debug)]
struct Entry {
    topic: Arc<str>,
    /// Which life of the topic's state (a room that ended and came back is another ring).
    ring: u64,
    seq: u64,
}

/// The accounting of every ring's bytes against the budget.
#[derive(Debug)]
pub struct Budget {
    /// Bytes every ring together may keep.
    limit: usize,
    /// Bytes every ring keeps now.
    kept: usize,
    /// Frames every ring keeps now (the live entries of `fifo`).
    frames: usize,
    fifo: VecDeque<Entry>,
    /// Frames taken out of their rings by the budget since the start.
    evicted: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Budget {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            kept: 0,
            frames: 0,
            fifo: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Bytes every ring keeps now.
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Frames evicted by the budget since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Accounts for one push of `bytes` into ring `ring` of `topic`.
    pub fn pushed(&mut self, topic: &Arc<str>, ring: u64, seq: u64, bytes: usize, p: Pushed) {
        self.kept -= p.dropped_bytes;
        self.frames -= p.dropped_frames;
        if p.kept {
            self.kept += bytes;
            self.frames += 1;
            self.fifo.push_back(Entry {
                topic: topic.clone(),
                ring,
                seq,
            });
        }
    }

    /// Accounts for a ring that went away with its topic (a room that ended).
    pub fn dropped_ring(&mut self, frames: usize, bytes: usize) {
        self.frames -= frames;
        self.kept -= bytes;
    }

    /// Evicts the oldest frames across `topics` until the bytes kept fit the budget, and
    /// compacts the FIFO when stale entries outnumber the live ones.
    pub fn enforce(&mut self, topics: &mut HashMap<Arc<str>, TopicState>) {
        while self.kept > self.limit {
            let Some(e) = self.fifo.pop_front() else {
                break;
            };
            let Some(state) = topics.get_mut(&e.topic) else {
                continue;
            };
            if state.ring != e.ring {
                continue;
            }
            if let Some(freed) = state.history.evict_front(e.seq) {
                self.kept -= freed;
                self.frames -= 1;
                self.evicted += 1;
            }
        }
        if self.fifo.len() > 2 * self.frames + SLACK {
            self.fifo.retain(|e| {
                topics
                    .get(&e.topic)
                    .is_some_and(|s| s.ring == e.ring && s.history.holds_from(e.seq))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overhead_counted_per_frame_covers_what_keeping_one_costs() {
        use crate::mixer::history::{FRAME_OVERHEAD, Sequenced};
        // Ring slot with the ring's spare capacity, two budget entries, and two frame
        // allocations' headers (Arc counts, 16 bytes, and the allocator's, up to 16).
        let slot = 2 * std::mem::size_of::<Sequenced>();
        let entries = 2 * std::mem::size_of::<Entry>();
        let headers = 2 * (16 + 16);
        assert!(
            slot + entries + headers <= FRAME_OVERHEAD,
            "{slot} + {entries} + {headers}"
        );
    }

    #[test]
    fn the_default_is_an_eighth_of_memory_within_bounds() {
        const GIB: u64 = 1 << 30;
        assert_eq!(derive_budget(Some(16 * GIB)), 2 * GIB);
        assert_eq!(derive_budget(Some(256 * GIB)), DEFAULT_CAP);
        assert_eq!(derive_budget(Some(GIB / 4)), DEFAULT_FLOOR);
        assert_eq!(derive_budget(None), DEFAULT_UNKNOWN);
        assert!(default_budget() >= DEFAULT_FLOOR && default_budget() <= DEFAULT_CAP);
    }
}
