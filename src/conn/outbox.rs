//! A connection's outbox: frames waiting to be written, by reference, plus an offset into the
//! first one.
//!
//! Broadcast frames are pushed as `Arc` clones of the bytes the mixer encoded once; control
//! frames (pong, close) and per-connection replies go through the same queue, so frames never
//! interleave on the wire. [`Outbox::write_to`] puts everything pending into vectored writes
//! (Redis's `reply` list + `sentlen`, written by `writeToClient`), up to a byte budget.
//!
//! The outbox also accounts for the memory it holds: each entry costs its frame bytes plus
//! [`ENTRY_OVERHEAD`], and the slow-consumer policy compares that against the limit.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use std::sync::Arc;

use crate::frame::{FrameBytes, FrameRun};

/// Bookkeeping bytes charged per queued frame (the deque slot), on top of the frame bytes.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<OutFrame>();

/// Slices gathered into one `writev`. Linux accepts up to 1024 (IOV_MAX); 512 small frames
/// already fill a socket buffer, and the array lives on the stack.
const MAX_IOV: usize = 512;

/// One queued entry: a frame, or a run of broadcast frames the shard concatenated once.
#[derive(Debug, Clone)]
pub enum OutFrame {
    /// One complete frame, shared with every other outbox that holds it. `stamp_us` is the
    /// mixer's stamp (µs since the Unix epoch) for a broadcast frame, 0 for control frames
    /// and replies; stamps feed the broadcast-latency histogram and the delivered count.
    One { bytes: FrameBytes, stamp_us: u64 },
    /// Broadcast frames of one topic, back to back, shared by every subscriber on the shard.
    Run(Arc<FrameRun>),
}

impl OutFrame {
    /// The bytes to write.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self {
            OutFrame::One { bytes, .. } => bytes,
            OutFrame::Run(run) => run.bytes(),
        }
    }

    /// The stamps of the broadcast frames this entry carries (none for a control frame or
    /// a reply).
    #[inline]
    pub fn stamps(&self) -> &[u64] {
        match self {
            OutFrame::One { stamp_us: 0, .. } => &[],
            OutFrame::One { stamp_us, .. } => std::slice::from_ref(stamp_us),
            OutFrame::Run(run) => run.stamps(),
        }
    }

    /// How many frames this entry carries.
    #[inline]
    pub fn frames(&self) -> usize {
        match self {
            OutFrame::One { .. } => 1,
            OutFrame::Run(run) => run.frames(),
        }
    }
}

/// How a call to [`Outbox::write_to`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    /// Everything queued was written.
    Drained,
    /// The socket would block with bytes still queued: wait for WRITABLE.
    Blocked,
    /// The per-turn budget ran out with bytes still queued and the socket still writable.
    BudgetSpent,
}

/// Frames pending for one connection.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Queued frames, oldest first. No allocation until the first frame; one grown by a
    /// burst is given back (see [`Outbox::release_idle_capacity`] and
    /// [`Outbox::release_if_grown`]).
    frames: VecDeque<OutFrame>,
    /// Most frames queued at once since the queue was last empty.
    peak: usize,
    /// Bytes of the first frame already written.
    head_offset: usize,
    /// Memory charged: frame bytes plus [`ENTRY_OVERHEAD`] per entry, minus `head_offset`.
    cost: usize,
}

impl Outbox {
    /// Bytes of memory this outbox holds (see the module docs).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Number of queued frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether pushing a frame of `len` bytes would take the cost past `limit`.
    pub fn would_exceed(&self, len: usize, limit: usize) -> bool {
        self.cost + len + ENTRY_OVERHEAD > limit
    }

    /// Queues a frame (by reference).
    pub fn push(&mut self, bytes: FrameBytes, stamp_us: u64) {
        self.push_entry(OutFrame::One { bytes, stamp_us });
    }

    /// Queues an entry (a frame or a run of frames, by reference).
    pub fn push_entry(&mut self, entry: OutFrame) {
        self.cost += entry.bytes().len() + ENTRY_OVERHEAD;
        self.frames.push_back(entry);
        self.peak = self.peak.max(self.frames.len());
    }

    /// Drops every entry not yet started, keeping a partially written head (a run of frames
    /// whole) so the stream stays well framed. Used before a slow consumer's close frame.
    /// Returns how many frames were dropped.
    pub fn drop_unstarted(&mut self) -> usize {
        let keep = usize::from(self.head_offset > 0);
        let dropped = self.frames.iter().skip(keep).map(OutFrame::frames).sum();
        self.frames.truncate(keep);
        self.cost = self
            .frames
            .front()
            .map_or(0, |f| f.bytes().len() + ENTRY_OVERHEAD);
        self.cost -= self.head_offset.min(self.cost);
        dropped
    }

    /// Writes pending frames with vectored writes until drained, blocked, or `budget` bytes
    /// were written. `on_frame` is called for every entry that was written completely.
    /// Returns the status and the bytes written; an I/O error other than `WouldBlock` or
    /// `Interrupted` means the connection is broken.
    pub fn write_to<W: Write>(
        &mut self,
        out: &mut W,
        budget: usize,
        mut on_frame: impl FnMut(&OutFrame),
    ) -> io::Result<(WriteStatus, usize)> {
        let mut written = 0;
        while !self.frames.is_empty() {
            if written >= budget {
                return Ok((WriteStatus::BudgetSpent, written));
            }
            let result = match (self.frames.len(), self.frames.front()) {
                // The common case at low rates: one frame, one plain write, no iovec array.
                (1, Some(f)) => out.write(&f.bytes()[self.head_offset..]),
                _ => self.write_vectored_once(out, budget - written),
            };
            let n = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((WriteStatus::Blocked, written));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            written += n;
            self.advance(n, &mut on_frame);
        }
        self.release_idle_capacity();
        Ok((WriteStatus::Drained, written))
    }

    /// One `writev` of up to [`MAX_IOV`] frames, stopping once `budget` bytes are covered.
    /// The slice array is sized to the queue: filling all 512 slots (8 KiB) for a write of a
    /// few frames cost more than gathering them.
    fn write_vectored_once<W: Write>(&self, out: &mut W, budget: usize) -> io::Result<usize> {
        match self.frames.len() {
            0..=16 => self.write_gathered::<16, W>(out, budget),
            17..=64 => self.write_gathered::<64, W>(out, budget),
            _ => self.write_gathered::<MAX_IOV, W>(out, budget),
        }
    }

    /// [`Outbox::write_vectored_once`] with at most `N` slices.
    fn write_gathered<const N: usize, W: Write>(
        &self,
        out: &mut W,
        budget: usize,
    ) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); N];
        let mut count = 0;
        let mut want = 0;
        for (i, f) in self.frames.iter().enumerate().take(N) {
            let bytes = if i == 0 {
                &f.bytes()[self.head_offset..]
            } else {
                f.bytes()
            };
            iov[count] = IoSlice::new(bytes);
            count += 1;
            want += bytes.len();
            if want >= budget {
                break;
            }
        }
        out.write_vectored(&iov[..count])
    }

    /// Marks `n` bytes as written, popping completed frames.
    fn advance(&mut self, mut n: usize, on_frame: &mut impl FnMut(&OutFrame)) {
        while n > 0 {
            let Some(head) = self.frames.front() else {
                break;
            };
            let remaining = head.bytes().len() - self.head_offset;
            if n < remaining {
                self.head_offset += n;
                self.cost -= n;
                return;
            }
            n -= remaining;
            self.cost -= remaining + ENTRY_OVERHEAD;
            self.head_offset = 0;
            if let Some(done) = self.frames.pop_front() {
                on_frame(&done);
            }
        }
    }

    /// A connection whose load fell should not keep a deque grown for a burst: once drained,
    /// one past 64 slots whose fullest moment since it was last empty used under a quarter
    /// of it is given back. Under a steady load every batch queues about as much as the
    /// last, and the deque is kept (giving it back each time cost a regrowth of several
    /// reallocations per write).
    fn release_idle_capacity(&mut self) {
        let capacity = self.frames.capacity();
        if capacity > 64 && self.peak * 4 < capacity {
            self.frames = VecDeque::new();
        } else {
            // Empty already; this rewinds the ring, so the next batch is stored in the same
            // (cache-warm) slots as this one instead of walking on through the whole buffer.
            self.frames.clear();
        }
        self.peak = 0;
    }

    /// Gives back a deque past 64 slots if nothing is queued: called at a connection's
    /// heartbeat, so one that went quiet after a burst (a resume's replay, a spike) does not
    /// keep it for the rest of its life.
    pub fn release_if_grown(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            self.frames = VecDeque::new();
            self.peak = 0;
        }
    }
}

#[cfg(test)]
mod tests;
