//! The mixer's side of one shard's queue.
//!
//! Broadcasts are offered with `try_send`: a full queue is a counted drop for that shard,
//! never a block. Messages for one connection (snapshots, member lists, resume replays) must
//! not be lost, so when the queue is full they wait in a bounded `pending` list, sent before
//! anything else; broadcasts that arrive meanwhile count as drops, which keeps the order every
//! client sees intact.

use std::collections::VecDeque;

use crossbeam_channel::TrySendError;
use prometheus_client::metrics::counter::Counter;

use crate::messages::{ShardLink, ShardMsg, drain_into};
use crate::metrics::{DropLabel, Metrics};

/// Connection-addressed messages that may wait for room in one shard's queue.
const MAX_PENDING: usize = 64 * 1024;

/// One shard's queue as the mixer sees it.
pub struct Outlet {
    /// The shard.
    pub link: ShardLink,
    queue_full: Counter,
    control_overflow: Counter,
    pending: VecDeque<ShardMsg>,
    /// Messages queued since the shard was last woken.
    unwoken: bool,
}

impl Outlet {
    /// The outlet of `link`, with its drop counters.
    pub fn new(link: ShardLink, metrics: &Metrics) -> Self {
        let label = |reason| DropLabel {
            shard: link.id as u32,
            reason,
        };
        let queue_full = metrics
            .drops
            .get_or_create(&label("shard_queue_full"))
            .clone();
        let control_overflow = metrics
            .drops
            .get_or_create(&label("control_overflow"))
            .clone();
        Outlet {
            link,
            queue_full,
            control_overflow,
            pending: VecDeque::new(),
            unwoken: false,
        }
    }

    /// Offers a broadcast; counted as a drop when the queue (or the pending list) is full.
    pub fn offer(&mut self, msg: ShardMsg) {
        if !self.flush_pending() {
            self.queue_full.inc();
            return;
        }
        match self.link.queue.try_send(msg) {
            Ok(()) => self.unwoken = true,
            Err(TrySendError::Full(_)) => {
                self.queue_full.inc();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends a message meant for one connection, waiting in `pending` if the queue is full.
    pub fn send_control(&mut self, msg: ShardMsg) {
        // A lost replay would leave its topic waiting forever, a lost drain request the
        // shutdown: these always wait (replays are bounded by the clients' rate limits and
        // topic limits, drain requests are one per shard).
        let must = matches!(msg, ShardMsg::Resumed { .. } | ShardMsg::Drain);
        if self.pending.len() >= MAX_PENDING && !must {
            self.control_overflow.inc();
            log::warn!(
                "shard {}: control backlog full, dropping a reply",
                self.link.id
            );
            return;
        }
        self.pending.push_back(msg);
        self.flush_pending();
    }

    /// Moves pending messages into the queue; true when none is left.
    pub fn flush_pending(&mut self) -> bool {
        let (sent, done) = drain_into(&mut self.pending, &self.link.queue);
        self.unwoken |= sent;
        done
    }

    /// Whether messages still wait for room.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Wakes the shard if anything was queued since the last wake.
    pub fn wake(&mut self) {
        if self.unwoken {
            self.unwoken = false;
            self.link.wake_if_parked();
        }
    }
}
