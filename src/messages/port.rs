//! The shard's side of the channel into the mixer (client publishes, joins, leaves, resumes).
//!
//! A shard never blocks. Messages that find the mixer's channel full wait here, in order,
//! and go first next turn. Membership changes always wait (losing a leave would leave a ghost
//! member); client publishes wait only while the backlog is short, and only while the
//! publishes every shard has handed the mixer and it has not taken yet stay within
//! `--mixer-queue-bytes` (one [`QueueBytes`] for the node); past either, the publisher is told
//! `server_busy`.
//!
//! At shutdown the port is sealed ([`MixerPort::seal`]): the shard's `Drained` follows every
//! publish it accepted, in order, and later publishes are refused, so that none is accepted
//! and then lost.

use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};

use super::{MixerMsg, Publish, QueueBytes, drain_into};

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
    /// Set at shutdown: publishes are refused.
    sealed: bool,
    /// The bytes of client publishes on their way to the mixer, every shard's together.
    bytes: QueueBytes,
}

/// Why a client publish was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The backlog (or the bus's queue) is full: try again.
    Busy,
    /// The server is stopping.
    Stopping,
}

impl MixerPort {
    /// A port into the mixer's input channel; `bytes` bounds the client publishes on their
    /// way (the mixer takes them away as it receives them).
    pub fn new(tx: Sender<MixerMsg>, bus: Option<Sender<Publish>>, bytes: QueueBytes) -> Self {
        MixerPort {
            tx,
            pending: VecDeque::new(),
            bus,
            sealed: false,
            bytes,
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

    /// Sends a client publish, or says why not (the caller answers with an error frame).
    pub fn publish(&mut self, mut msg: Publish) -> Result<(), Refused> {
        if self.sealed {
            return Err(Refused::Stopping);
        }
        if let Some(bus) = &self.bus {
            return match bus.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(Refused::Busy),
                Err(TrySendError::Disconnected(_)) => Err(Refused::Stopping),
            };
        }
        let bytes = msg.data.get().len();
        if self.pending.len() >= PUBLISH_BACKLOG || !self.bytes.fits(bytes) {
            return Err(Refused::Busy);
        }
        self.bytes.add(bytes);
        msg.queued = bytes;
        self.send(MixerMsg::Publish(msg));
        Ok(())
    }

    /// Shutdown: no publish is taken from now on, and shard `shard`'s `Drained` is queued
    /// behind every one taken before.
    pub fn seal(&mut self, shard: usize) {
        if !self.sealed {
            self.sealed = true;
            self.send(MixerMsg::Drained { shard });
        }
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
        let mut port = MixerPort::new(tx, None, QueueBytes::new(usize::MAX));
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
        let msg = || {
            Publish::new(
                Arc::from("r"),
                serde_json::value::RawValue::from_string("1".into()).unwrap(),
            )
        };
        assert_eq!(port.publish(msg()), Err(Refused::Busy), "backlog full");
    }

    #[test]
    fn sealing_queues_drained_behind_every_publish_and_refuses_later_ones() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let mut port = MixerPort::new(tx, None, QueueBytes::new(usize::MAX));
        let msg = || {
            Publish::new(
                Arc::from("r"),
                serde_json::value::RawValue::from_string("1".into()).unwrap(),
            )
        };
        for _ in 0..3 {
            assert_eq!(port.publish(msg()), Ok(()));
        }
        port.seal(7);
        port.seal(7);
        assert_eq!(port.publish(msg()), Err(Refused::Stopping));
        let mut got = Vec::new();
        while got.len() < 4 {
            port.flush();
            got.extend(rx.try_iter());
        }
        assert!(got[..3].iter().all(|m| matches!(m, MixerMsg::Publish(_))));
        assert!(matches!(got[3], MixerMsg::Drained { shard: 7 }));
        port.flush();
        assert!(rx.try_recv().is_err(), "sealed once");
    }

    #[test]
    fn publishes_past_the_bytes_are_busy_until_the_mixer_takes_them() {
        let (tx, rx) = crossbeam_channel::bounded(100);
        let bytes = QueueBytes::new(10);
        let mut port = MixerPort::new(tx, None, bytes.clone());
        let msg = |data: &str| {
            Publish::new(
                Arc::from("r"),
                serde_json::value::RawValue::from_string(data.into()).unwrap(),
            )
        };
        assert_eq!(port.publish(msg("\"abcd\"")), Ok(()));
        assert_eq!(port.publish(msg("12345")), Err(Refused::Busy), "6 + 5 > 10");
        assert_eq!(port.publish(msg("1234")), Ok(()));
        assert_eq!(bytes.held(), 10);
        // The mixer's side: what it receives says how much to take away.
        let Ok(MixerMsg::Publish(first)) = rx.try_recv() else {
            panic!("a publish");
        };
        assert_eq!(first.queued, 6);
        bytes.take(first.queued);
        assert_eq!(port.publish(msg("12345")), Ok(()));
    }
}
