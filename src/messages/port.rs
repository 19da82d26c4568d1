//! The shard's side of the channel into the mixer (client publishes, joins, leaves, resumes).
//!
//! A shard never blocks. Messages that find the mixer's channel full wait here, in order,
//! and go first next turn. Membership changes always wait (losing a leave would leave a ghost
//! member); client publishes wait only while the backlog is short, and only while the
//! publishes every shard has handed the mixer and it has not taken yet stay within
//! `--mixer-queue-bytes` (one [`QueueBytes`] for the node); past either, the publisher is told
//! `server_busy`.
//!
//! With `--redis`, client publishes go to the bus publisher instead, and Redis sends each back
//! to every node subscribed to its topic, this one included. A node subscribes to a room when
//! its first member here joins, a few milliseconds later; a publish sent before that would
//! reach Redis while this node is not listening, and its own sender would never see it. So a
//! publish waits here until the bus subscriber has applied the node's interest as it was when
//! the publish was taken (which holds the publisher's rooms), at most [`SUBSCRIBED_WAIT`],
//! in order; usually it goes at once.
//!
//! At shutdown the port is sealed ([`MixerPort::seal`]): the shard's `Drained` follows every
//! publish it accepted, in order, and later publishes are refused, so that none is accepted
//! and then lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::{MixerMsg, Publish, QueueBytes, drain_into};

/// Client publishes that may wait for room in the mixer's channel, per shard.
pub const PUBLISH_BACKLOG: usize = 4096;

/// Longest a client publish waits for the bus subscriber to follow the node's interest
/// before it goes anyway (Redis down: it cannot be heard back, but is not held forever).
pub const SUBSCRIBED_WAIT: Duration = Duration::from_secs(2);

/// With `--redis`: how far the bus subscriber follows the node's interest.
pub trait Subscribed: Send + Sync + std::fmt::Debug {
    /// The node's interest version now (the topics its clients hold or wait for).
    fn wanted(&self) -> u64;
    /// The interest version whose channels are all subscribed now.
    fn applied(&self) -> u64;
}

/// With `--redis`: the bus publisher's channel, and what the subscriber follows.
#[derive(Debug, Clone)]
pub struct BusPort {
    /// The bus publisher's input (bounded; full means `server_busy`).
    pub tx: Sender<Publish>,
    /// How far the subscriber follows the node's interest.
    pub subscribed: Arc<dyn Subscribed>,
}

/// Where a shard sends what its clients ask of the mixer.
#[derive(Debug)]
pub struct MixerPort {
    tx: Sender<MixerMsg>,
    pending: VecDeque<MixerMsg>,
    /// With `--redis`: client publishes go to the bus publisher, which sequences them for
    /// every node.
    bus: Option<BusPort>,
    /// Client publishes waiting for the subscriber to apply interest version `.1` (or for
    /// the deadline `.2`), in order, before they go to the bus.
    waiting: VecDeque<(Publish, u64, Instant)>,
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
    pub fn new(tx: Sender<MixerMsg>, bus: Option<BusPort>, bytes: QueueBytes) -> Self {
        MixerPort {
            tx,
            pending: VecDeque::new(),
            bus,
            waiting: VecDeque::new(),
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
            let wanted = bus.subscribed.wanted();
            if self.waiting.is_empty() && bus.subscribed.applied() >= wanted {
                return match bus.tx.try_send(msg) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => Err(Refused::Busy),
                    Err(TrySendError::Disconnected(_)) => Err(Refused::Stopping),
                };
            }
            self.charge(&mut msg, self.waiting.len())?;
            self.waiting
                .push_back((msg, wanted, Instant::now() + SUBSCRIBED_WAIT));
            return Ok(());
        }
        self.charge(&mut msg, self.pending.len())?;
        self.send(MixerMsg::Publish(msg));
        Ok(())
    }

    /// Counts `msg`'s data in the bytes on their way (`msg.queued` says how many, for
    /// whoever takes it), or refuses it when `waiting` messages already wait or the bytes
    /// are full.
    fn charge(&self, msg: &mut Publish, waiting: usize) -> Result<(), Refused> {
        let bytes = msg.data.get().len();
        if waiting >= PUBLISH_BACKLOG || !self.bytes.fits(bytes) {
            return Err(Refused::Busy);
        }
        self.bytes.add(bytes);
        msg.queued = bytes;
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

    /// Moves waiting messages into the channel, in order, and waiting publishes to the bus
    /// once their rooms are subscribed; true when none is left.
    pub fn flush(&mut self) -> bool {
        self.flush_waiting();
        drain_into(&mut self.pending, &self.tx).1 && self.waiting.is_empty()
    }

    /// Sends the waiting publishes whose interest the subscriber has applied (or whose wait
    /// is over), in order, while the bus takes them.
    fn flush_waiting(&mut self) {
        let Some(bus) = &self.bus else {
            return;
        };
        if self.waiting.is_empty() {
            return;
        }
        let applied = bus.subscribed.applied();
        let now = Instant::now();
        while let Some((_, wanted, deadline)) = self.waiting.front() {
            if applied < *wanted && now < *deadline {
                break;
            }
            let Some((mut msg, _, _)) = self.waiting.pop_front() else {
                break;
            };
            let bytes = std::mem::take(&mut msg.queued);
            match bus.tx.try_send(msg) {
                Ok(()) => self.bytes.take(bytes),
                Err(TrySendError::Full(mut msg)) => {
                    msg.queued = bytes;
                    self.waiting.push_front((msg, 0, now));
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    let rest: usize = self.waiting.drain(..).map(|(m, _, _)| m.queued).sum();
                    self.bytes.take(bytes + rest);
                }
            }
        }
    }

    /// Whether so many messages wait that clients' subscription changes should be refused.
    pub fn is_backlogged(&self) -> bool {
        self.pending.len() >= PUBLISH_BACKLOG
    }

    /// Whether messages are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.waiting.is_empty()
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

    /// The bus as a test drives it: the interest wanted and applied, set by hand.
    #[derive(Debug, Default)]
    struct Following {
        wanted: std::sync::atomic::AtomicU64,
        applied: std::sync::atomic::AtomicU64,
    }

    impl Subscribed for Following {
        fn wanted(&self) -> u64 {
            self.wanted.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn applied(&self) -> u64 {
            self.applied.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn with_the_bus_a_publish_waits_until_its_room_is_subscribed_in_order() {
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let (bus_tx, bus_rx) = crossbeam_channel::bounded(10);
        let following = Arc::new(Following::default());
        let bytes = QueueBytes::new(1000);
        let bus = BusPort {
            tx: bus_tx,
            subscribed: following.clone(),
        };
        let mut port = MixerPort::new(tx, Some(bus), bytes.clone());
        let msg = |n: u32| {
            Publish::new(
                Arc::from("room"),
                serde_json::value::RawValue::from_string(n.to_string()).unwrap(),
            )
        };
        // Everything the node wants is subscribed: straight to the bus.
        assert_eq!(port.publish(msg(1)), Ok(()));
        assert_eq!(bus_rx.len(), 1);
        // A room joined (interest version 5) not yet subscribed (applied 4): they wait.
        following.wanted.store(5, SeqCst);
        following.applied.store(4, SeqCst);
        assert_eq!(port.publish(msg(2)), Ok(()));
        assert_eq!(port.publish(msg(3)), Ok(()));
        assert!(port.has_pending());
        assert!(!port.flush());
        assert_eq!(bus_rx.len(), 1);
        assert_eq!(bytes.held(), 2);
        // Applied: they go, in order, and a later one behind them even though it is ready.
        following.applied.store(5, SeqCst);
        following.wanted.store(6, SeqCst);
        assert_eq!(port.publish(msg(4)), Ok(()), "waits behind: version 6");
        assert!(!port.flush(), "4 still waits for version 6");
        following.applied.store(6, SeqCst);
        assert!(port.flush());
        let got: Vec<String> = bus_rx
            .try_iter()
            .map(|p| p.data.get().to_string())
            .collect();
        assert_eq!(got, ["1", "2", "3", "4"]);
        assert_eq!(bytes.held(), 0);
    }

    #[test]
    fn a_waiting_publish_goes_after_the_longest_wait_even_if_never_subscribed() {
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let (bus_tx, bus_rx) = crossbeam_channel::bounded(10);
        let following = Arc::new(Following::default());
        following.wanted.store(1, SeqCst);
        let bus = BusPort {
            tx: bus_tx,
            subscribed: following,
        };
        let mut port = MixerPort::new(tx, Some(bus), QueueBytes::new(1000));
        let msg = Publish::new(
            Arc::from("room"),
            serde_json::value::RawValue::from_string("1".into()).unwrap(),
        );
        assert_eq!(port.publish(msg), Ok(()));
        // The deadline is SUBSCRIBED_WAIT away: move it to now.
        port.waiting[0].2 = Instant::now();
        assert!(port.flush());
        assert_eq!(bus_rx.len(), 1);
    }
}
