//! The last `--history` frames of one topic, and the replay that answers a resume.
//!
//! Frames are kept by reference (the same `Arc<[u8]>` every client was sent), so the ring
//! costs a pointer and a sequence number per message plus the frames it keeps alive. It is
//! bounded three times: by `--history` messages and by [`MAX_BYTES`] of frames per topic,
//! and by the node-wide `--history-budget` over every ring (`budget.rs`), which takes the
//! node's oldest frames out of their rings through [`History::evict_front`].
//!
//! Sequence numbers in the ring may have holes (messages this node never received from the
//! Redis bus, or the jump after a Redis restart), so a replay is located by seq, never by
//! position.

use std::collections::VecDeque;

use crate::frame::Encoded;

/// Frame bytes kept per topic, whatever `--history` says (64 KiB messages would otherwise
/// pin 64 MiB per room).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// A frame with its sequence number.
pub type Sequenced = (u64, Encoded);

/// What keeping one frame costs at most beyond its bytes: its slot in the ring (the seq and
/// two references, twice over for the ring's spare capacity), the headers of its two
/// allocations (reference counts, the allocator's own), and the node-wide budget's entries
/// for it (at most two per kept frame, `budget.rs`); checked against the types' sizes in
/// `budget.rs`'s tests. Counted in [`kept_bytes`] so that the rings' caps and the budget
/// bound memory, not only frame bytes: with small frames the bookkeeping is as large as the
/// frames.
pub const FRAME_OVERHEAD: usize = 256;

/// The bytes keeping a message's frames costs: plain and compressed, and
/// [`FRAME_OVERHEAD`].
pub fn kept_bytes(frame: &Encoded) -> usize {
    frame.bytes() + FRAME_OVERHEAD
}

/// What a resume from `since` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every frame after `since`, in order (possibly none): no gap, no duplicate.
    Frames(Vec<Sequenced>),
    /// The history does not reach back to `since` (or `since` is ahead of this server):
    /// a reset notice, then everything the ring still holds.
    Reset {
        /// The first seq that will be replayed (or the next live one when nothing is kept).
        oldest: u64,
        /// The topic's last seq.
        latest: u64,
        /// Everything the ring holds.
        frames: Vec<Sequenced>,
    },
}

/// What one [`History::push`] did, for the node-wide budget's accounting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Whether the frame was kept (false with `--history 0`).
    pub kept: bool,
    /// Older frames the ring's own caps (`--history`, [`MAX_BYTES`]) let go.
    pub dropped_frames: usize,
    /// Their bytes.
    pub dropped_bytes: usize,
}

/// A bounded ring of (seq, frame).
#[derive(Debug, Default)]
pub struct History {
    capacity: usize,
    ring: VecDeque<Sequenced>,
    bytes: usize,
}

impl History {
    /// A ring of up to `capacity` frames (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        History {
            capacity,
            ring: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Records the frame of `seq` (sequence numbers arrive in increasing order). Returns
    /// whether it was kept, and the bytes of the older frames the ring's own caps let go.
    pub fn push(&mut self, seq: u64, frame: &Encoded) -> Pushed {
        let mut out = Pushed::default();
        if self.capacity == 0 {
            return out;
        }
        self.ring.push_back((seq, frame.clone()));
        self.bytes += kept_bytes(frame);
        out.kept = true;
        while self.ring.len() > self.capacity || (self.bytes > MAX_BYTES && self.ring.len() > 1) {
            if let Some((_, old)) = self.ring.pop_front() {
                let freed = kept_bytes(&old);
                self.bytes -= freed;
                out.dropped_frames += 1;
                out.dropped_bytes += freed;
            }
        }
        out
    }

    /// Takes the oldest frame out if it is `seq`'s (the node-wide budget evicting it):
    /// the bytes it kept alive, or `None` when the ring's own caps already let it go.
    pub fn evict_front(&mut self, seq: u64) -> Option<usize> {
        if self.ring.front().is_none_or(|(s, _)| *s != seq) {
            return None;
        }
        let (_, old) = self.ring.pop_front()?;
        let freed = kept_bytes(&old);
        self.bytes -= freed;
        Some(freed)
    }

    /// Whether the frame of `seq` is still in the ring (every frame after the oldest is, in
    /// the ring's terms: frames leave from the front only).
    pub fn holds_from(&self, seq: u64) -> bool {
        self.ring.front().is_some_and(|(s, _)| seq >= *s)
    }

    /// Frames in the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes of the frames the ring keeps alive.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What follows `since`, given that the topic's last seq is `latest`.
    pub fn replay(&self, since: u64, latest: u64) -> Replay {
        if since == latest {
            return Replay::Frames(Vec::new());
        }
        let oldest = self
            .ring
            .front()
            .map_or(latest.saturating_add(1), |(s, _)| *s);
        if since < latest && since.saturating_add(1) >= oldest {
            let start = self.ring.partition_point(|(s, _)| *s <= since);
            return Replay::Frames(self.ring.range(start..).cloned().collect());
        }
        Replay::Reset {
            oldest,
            latest,
            frames: self.ring.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn f(seq: u64) -> Encoded {
        Encoded::plain(Arc::from(seq.to_string().as_bytes()))
    }

    fn ids(frames: &[Sequenced]) -> Vec<String> {
        frames
            .iter()
            .map(|(_, b)| String::from_utf8(b.plain.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn replays_what_follows_and_resets_when_too_old() {
        let mut h = History::new(3);
        for seq in 1..=5 {
            h.push(seq, &f(seq));
        }
        // The ring holds 3, 4, 5.
        assert_eq!(h.replay(5, 5), Replay::Frames(vec![]));
        match h.replay(3, 5) {
            Replay::Frames(v) => assert_eq!(ids(&v), ["4", "5"]),
            other => panic!("{other:?}"),
        }
        match h.replay(2, 5) {
            Replay::Frames(v) => assert_eq!(ids(&v), ["3", "4", "5"]),
            other => panic!("{other:?}"),
        }
        match h.replay(1, 5) {
            Replay::Reset {
                oldest,
                latest,
                frames,
            } => {
                assert_eq!((oldest, latest), (3, 5));
                assert_eq!(ids(&frames), ["3", "4", "5"]);
            }
            other => panic!("{other:?}"),
        }
        // Ahead of this server (e.g. after a restart): reset.
        assert!(matches!(
            h.replay(99, 5),
            Replay::Reset {
                oldest: 3,
                latest: 5,
                ..
            }
        ));
    }

    #[test]
    fn holes_in_the_ring_are_located_by_seq() {
        let mut h = History::new(100);
        for seq in (1..=10).chain(15..=20) {
            h.push(seq, &f(seq));
        }
        match h.replay(16, 20) {
            Replay::Frames(v) => assert_eq!(ids(&v), ["17", "18", "19", "20"]),
            other => panic!("{other:?}"),
        }
        match h.replay(10, 20) {
            Replay::Frames(v) => assert_eq!(ids(&v)[0], "15"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            h.replay(u64::MAX, u64::MAX - 1),
            Replay::Reset { .. }
        ));
    }

    #[test]
    fn bytes_are_capped() {
        let mut h = History::new(1000);
        let big = Encoded::plain(Arc::from(vec![0u8; MAX_BYTES / 2 + 1]));
        for seq in 1..=3 {
            h.push(seq, &big);
        }
        assert_eq!(h.ring.len(), 1, "only what fits the byte cap stays");
        assert_eq!(h.bytes(), MAX_BYTES / 2 + 1 + FRAME_OVERHEAD);
    }

    #[test]
    fn eviction_takes_only_the_named_oldest_frame() {
        let mut h = History::new(2);
        for seq in 1..=3 {
            h.push(seq, &f(seq));
        }
        // 1 went with the ring's own cap; 2 is the oldest now.
        assert_eq!(h.evict_front(1), None);
        assert!(h.holds_from(2) && !h.holds_from(1));
        assert_eq!(h.evict_front(2), Some(1 + FRAME_OVERHEAD));
        assert_eq!((h.len(), h.bytes()), (1, 1 + FRAME_OVERHEAD));
        assert!(matches!(h.replay(1, 3), Replay::Reset { oldest: 3, .. }));
    }

    #[test]
    fn disabled_history_resets() {
        let mut h = History::new(0);
        h.push(1, &f(1));
        assert!(matches!(
            h.replay(0, 1),
            Replay::Reset {
                oldest: 2,
                latest: 1,
                ..
            }
        ));
        assert_eq!(h.replay(1, 1), Replay::Frames(vec![]));
    }
}
