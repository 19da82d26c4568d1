//! The bytes a shard's queue holds: the bound that the queue's message count alone is not.
//!
//! A shard's queue holds up to `--shard-queue` messages, and a message may be a frame of up to
//! `--max-message` bytes or a resume's replay of a thousand of them, so a count bounds
//! nothing in memory. [`QueueBytes`] is one counter shared by the mixer (which adds what it
//! hands the shard: broadcasts, replies, replays, and what waits in its backlog for room in
//! the queue) and the shard (which takes away what it has received, once per drain). The
//! mixer checks it before it hands over more: past `--shard-queue-bytes`, a broadcast is a
//! counted drop, a reply is a counted control drop, and a replay is cut to its newest frames
//! behind a `reset` (see `mixer/outlet.rs`).
//!
//! Frames are shared (`Arc`), so a frame queued for two shards is counted by each: the count
//! is what each queue keeps alive, an upper bound on what the queues hold together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ShardMsg;

/// The bytes a shard's queue holds, and its bound.
#[derive(Debug, Clone)]
pub struct QueueBytes {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl QueueBytes {
    /// An empty queue bounded at `limit` bytes.
    pub fn new(limit: usize) -> QueueBytes {
        QueueBytes {
            held: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes that may still be added.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.held())
    }

    /// Whether `n` more bytes fit.
    pub fn fits(&self, n: usize) -> bool {
        n <= self.room()
    }

    /// Counts `n` bytes handed over (whether or not they fit: the caller decided).
    pub fn add(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    /// The receiving side took `n` bytes.
    pub fn take(&self, n: usize) {
        // Only ever what was added: the mixer adds before it sends, the shard takes after it
        // received. Saturating all the same, so a miscount can never wrap to "full forever".
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(n))
            });
    }
}

impl ShardMsg {
    /// The frame bytes this message keeps alive.
    pub fn bytes(&self) -> usize {
        match self {
            ShardMsg::Broadcast(b) => b.frame.bytes(),
            ShardMsg::Direct { frame, .. } => frame.len(),
            ShardMsg::Resumed { replay, .. } => {
                replay.reset.as_ref().map_or(0, |r| r.len())
                    + replay.frames.iter().map(|(_, f)| f.bytes()).sum::<usize>()
            }
            ShardMsg::Drain => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_takes_and_never_wraps() {
        let q = QueueBytes::new(100);
        assert!(q.fits(100));
        q.add(60);
        assert_eq!((q.held(), q.room()), (60, 40));
        assert!(q.fits(40) && !q.fits(41));
        let shard_side = q.clone();
        shard_side.take(50);
        assert_eq!(q.held(), 10);
        shard_side.take(50);
        assert_eq!(q.held(), 0, "saturates");
        q.add(150);
        assert_eq!(q.room(), 0);
    }
}
