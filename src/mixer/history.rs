//! The last `--history` frames of one topic, and the replay that answers a resume.
//!
//! Frames are kept by reference (the same `Arc<[u8]>` every client was sent), so the ring
//! costs a pointer and a sequence number per message plus the frames it keeps alive.

use std::collections::VecDeque;

use crate::frame::FrameBytes;

/// What a resume from `since` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every frame after `since`, in order (possibly none): no gap, no duplicate.
    Frames(Vec<FrameBytes>),
    /// The history does not reach back to `since` (or `since` is ahead of this server):
    /// a reset notice, then everything the ring still holds.
    Reset {
        /// The first seq that will be replayed (or the next live one when nothing is kept).
        oldest: u64,
        /// The topic's last seq.
        latest: u64,
        /// Everything the ring holds.
        frames: Vec<FrameBytes>,
    },
}

/// A bounded ring of (seq, frame).
#[derive(Debug, Default)]
pub struct History {
    capacity: usize,
    ring: VecDeque<(u64, FrameBytes)>,
}

impl History {
    /// A ring of up to `capacity` frames (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        History {
            capacity,
            ring: VecDeque::new(),
        }
    }

    /// Records the frame of `seq` (sequence numbers arrive in increasing order).
    pub fn push(&mut self, seq: u64, frame: &FrameBytes) {
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back((seq, frame.clone()));
    }

    /// What follows `since`, given that the topic's last seq is `latest`.
    pub fn replay(&self, since: u64, latest: u64) -> Replay {
        if since == latest {
            return Replay::Frames(Vec::new());
        }
        let oldest = self.ring.front().map_or(latest + 1, |(s, _)| *s);
        if since < latest && since + 1 >= oldest {
            let skip = (since + 1 - oldest) as usize;
            return Replay::Frames(
                self.ring
                    .iter()
                    .skip(skip)
                    .map(|(_, f)| f.clone())
                    .collect(),
            );
        }
        Replay::Reset {
            oldest,
            latest,
            frames: self.ring.iter().map(|(_, f)| f.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn f(seq: u64) -> FrameBytes {
        Arc::from(seq.to_string().as_bytes())
    }

    fn ids(frames: &[FrameBytes]) -> Vec<String> {
        frames
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
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
