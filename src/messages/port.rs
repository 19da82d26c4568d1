//! The shard's side of the channel into the mixer (client publishes, joins, leaves, resumes).
//!
//! A shard never blocks. Messages that find the mixer's channel full wait here, in order,
//! and go first next turn. Membership changes always wait (losing a leave would leave a ghost
//! member); client publishes wait only while the backlog is short, past it the publisher is
//! told `server_busy`.

use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};

use super::{MixerMsg, Publish, drain_into};

/// Client publishes that may wait for room in the mixer's channel, per shard.
pub const PUBLISH_BACKLOG: usize = 4096;

/// Where a shard sends what its clients ask of the mixer.
#[derive(Debug)]
pub struct MixerPort {
    tx: Sender<MixerMsg>,
    pending: VecDeque<MixerMsg>,
    /// With `--redis`: client publishes go to the bus publisher, which sequences them for
    /// every node (its channel is bounded; full means `server_busy`).
    bus: Option<Sender<Publish>>,
}

impl MixerPort {
    /// A port into the mixer's input channel.
    pub fn new(tx: Sender<MixerMsg>, bus: Option<Sender<Publish>>) -> Self {
        MixerPort {
            tx,
            pending: VecDeque::new(),
            bus,
        }
    }

    /// Sends a message that must not be lost (membership, resume, `/who`).
    pub fn send(&mut self, msg: MixerMsg) {
        if self.pending.is_empty() {
            match self.tx.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(msg)) => self.pending.push_back(msg),
            }
        } else {
            self.pending.push_back(msg);
        }
    }

    /// Sends a client publish; false when the backlog is full (the caller answers
    /// `server_busy`).
    pub fn publish(&mut self, msg: Publish) -> bool {
        if let Some(bus) = &self.bus {
            return match bus.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => false,
                // Stopping: nothing more is published.
                Err(TrySendError::Disconnected(_)) => true,
            };
        }
        if self.pending.len() >= PUBLISH_BACKLOG {
            return false;
        }
        self.send(MixerMsg::Publish(msg));
        true
    }

    /// Moves waiting messages into the channel, in order; true when none is left.
    pub fn flush(&mut self) -> bool {
        drain_into(&mut self.pending, &self.tx).1
    }

    /// Whether so many messages wait that clients' subscription changes should be refused.
    pub fn is_backlogged(&self) -> bool {
        self.pending.len() >= PUBLISH_BACKLOG
    }

    /// Whether messages are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ConnKey, ConnRef};
    use std::sync::Arc;

    fn leave(n: usize) -> MixerMsg {
        MixerMsg::Leave {
            room: Arc::from("r"),
            conn: ConnRef {
                shard: 0,
                key: ConnKey {
                    token: n,
                    id: n as u64,
                },
            },
        }
    }

    #[test]
    fn waits_in_order_when_full_and_bounds_publishes() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut port = MixerPort::new(tx, None);
        port.send(leave(1));
        port.send(leave(2));
        port.send(leave(3));
        assert!(port.has_pending());
        let order = |m: MixerMsg| match m {
            MixerMsg::Leave { conn, .. } => conn.key.token,
            _ => usize::MAX,
        };
        assert_eq!(order(rx.try_recv().unwrap()), 1);
        assert!(!port.flush(), "room for one: 3 still waits");
        assert!(port.has_pending());
        assert_eq!(order(rx.try_recv().unwrap()), 2);
        assert!(port.flush(), "the last one fits");
        assert!(!port.has_pending());
        assert_eq!(order(rx.try_recv().unwrap()), 3);
        assert!(rx.try_recv().is_err(), "each message went once");
        for n in 0..PUBLISH_BACKLOG + 1 {
            port.send(leave(n));
        }
        let msg = Publish::new(
            Arc::from("r"),
            serde_json::value::RawValue::from_string("1".into()).unwrap(),
        );
        assert!(!port.publish(msg), "backlog full: publish refused");
    }
}
