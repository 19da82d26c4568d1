//! The bus subscriber thread: follows the node's topic interest on Redis and feeds every
//! message that arrives into the mixer, with the seq Redis's script gave it.
//!
//! Subscriptions are per topic (`<prefix>:{<topic>}`), changed as local clients come and go;
//! only while some local client wants every topic is the pattern `<prefix>:*` used. The
//! interest version it has applied is published in [`BusState`], so a history read can wait
//! until the topic it reads is subscribed. On a lost
//! connection the thread reconnects with backoff and subscribes again to what is wanted then.
//! On a Redis Cluster it subscribes with sharded Pub/Sub on every master instead
//! ([`sharded`]); there is no pattern subscription there, so `*` follows the topics that
//! some local client names.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::link::Link;
use super::{BACKOFF_MIN, BusConfig, BusState, Wire, back_off, hand_to_mixer, presence};
use crate::interest::Interest;
use crate::messages::MixerMsg;
use crate::metrics::SubscriberMetrics;

mod sharded;

/// How long one wait for a message may block, so interest changes and stop are noticed.
/// A new topic is subscribed within this (a resume from Redis and a room's first member on
/// the node wait for it); an idle wait costs one timed-out read.
const POLL: Duration = Duration::from_millis(5);
/// How long a SUBSCRIBE/UNSUBSCRIBE reply may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The bus subscriber thread's state.
pub struct BusSubscriber {
    cfg: BusConfig,
    interest: Arc<Interest>,
    mixer: Sender<MixerMsg>,
    stop: Receiver<()>,
    state: Arc<BusState>,
    metrics: SubscriberMetrics,
}

/// What is subscribed on the current connection.
#[derive(Default)]
struct Subscribed {
    channels: BTreeSet<String>,
    pattern: bool,
    version: Option<u64>,
}

impl BusSubscriber {
    /// A subscriber feeding `mixer`; it stops when `stop`'s sender is dropped.
    pub fn new(
        cfg: BusConfig,
        interest: Arc<Interest>,
        mixer: Sender<MixerMsg>,
        stop: Receiver<()>,
        state: Arc<BusState>,
        metrics: SubscriberMetrics,
    ) -> Self {
        BusSubscriber {
            cfg,
            interest,
            mixer,
            stop,
            state,
            metrics,
        }
    }

    fn stopping(&self) -> bool {
        super::stopped(&self.stop)
    }

    /// Runs until stopped.
    pub fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        while !self.stopping() {
            let mut link = match Link::open(&self.cfg.url, COMMAND_TIMEOUT) {
                Ok(link) => link,
                Err(e) => {
                    log::debug!(
                        "redis subscriber: cannot connect to {}: {e}",
                        super::redacted(&self.cfg.url)
                    );
                    back_off(&mut backoff, || self.stopping());
                    continue;
                }
            };
            if connected_before {
                self.metrics.reconnects.inc();
            }
            connected_before = true;
            backoff = BACKOFF_MIN;
            log::info!(
                "redis subscriber connected to {}",
                super::redacted(&self.cfg.url)
            );
            let served = match &mut link {
                Link::Single(conn) => self.serve(conn),
                Link::Cluster(_) => self.serve_cluster(&mut link),
            };
            if let Err(e) = served {
                log::warn!("redis subscriber lost its connection ({e}); reconnecting");
                back_off(&mut backoff, || self.stopping());
            }
            self.state.set_subscriber(false);
        }
        log::debug!("bus subscriber stopped");
    }

    /// Follows interest and forwards messages until the connection fails or the node stops.
    fn serve(&self, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        conn.set_read_timeout(Some(POLL))?;
        let mut pubsub = conn.as_pubsub();
        let mut subscribed = Subscribed::default();
        self.state.set_subscriber(true);
        loop {
            if self.stopping() {
                return Ok(());
            }
            if subscribed.version != Some(self.interest.version()) {
                // Replies to (un)subscribe may take longer than a poll: a slow Redis is not a
                // lost one.
                pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                self.follow_interest(&mut pubsub, &mut subscribed)?;
                pubsub.set_read_timeout(Some(POLL))?;
            }
            match pubsub.get_message() {
                Ok(msg) => self.forward(msg.get_channel_name(), msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Brings the connection's subscriptions in line with the node's interest.
    fn follow_interest(
        &self,
        pubsub: &mut redis::PubSub<'_>,
        now: &mut Subscribed,
    ) -> redis::RedisResult<()> {
        let snap = self.interest.snapshot();
        let wanted: BTreeSet<String> = if snap.wildcard {
            BTreeSet::new()
        } else {
            snap.topics
                .iter()
                .filter(|t| self.cfg.carries(t))
                .map(|t| self.cfg.channel(t))
                .collect()
        };
        let pattern = format!("{}:*", self.cfg.prefix);
        if snap.wildcard && !now.pattern {
            pubsub.psubscribe(&pattern)?;
            now.pattern = true;
        }
        let gone: Vec<String> = now.channels.difference(&wanted).cloned().collect();
        let new: Vec<String> = wanted.difference(&now.channels).cloned().collect();
        if !new.is_empty() {
            pubsub.subscribe(&new)?;
        }
        if !gone.is_empty() {
            pubsub.unsubscribe(&gone)?;
        }
        if !snap.wildcard && now.pattern {
            pubsub.punsubscribe(&pattern)?;
            now.pattern = false;
        }
        now.channels = wanted;
        now.version = Some(snap.version);
        // Every channel wanted up to this version is subscribed (the replies came back): a
        // history read from now on misses nothing that is published later.
        self.state.set_applied_interest(snap.version);
        Ok(())
    }

    /// A membership change of another node's member: to the mixer (this node's own come back
    /// too, and are skipped: its rooms already know them).
    fn forward_change(&self, channel: &str, topic: &str, payload: &[u8]) {
        let Some(change) = serde_json::from_slice::<presence::ChangeWire>(payload)
            .ok()
            .and_then(presence::ChangeWire::into_change)
        else {
            self.metrics.malformed.inc();
            log::debug!("ignoring a malformed presence change on {channel}");
            return;
        };
        if presence::is_of_node(&change.member, &self.state.node) {
            return;
        }
        self.send(MixerMsg::RemotePresence {
            room: Arc::from(topic),
            change,
        });
    }

    /// Hands a message to the mixer, waiting for room (this thread only) unless stopping.
    fn send(&self, msg: MixerMsg) {
        if hand_to_mixer(&self.mixer, msg, &self.stop) {
            self.metrics.received.inc();
        }
    }

    /// Parses one Redis message and hands it to the mixer (blocking only this thread).
    fn forward(&self, channel: &str, payload: &[u8]) {
        let Some(topic) = self.cfg.topic_of(channel) else {
            return;
        };
        if !self.cfg.carries(topic) {
            // A server topic published by a node with --redis-publish-providers, while this
            // node keeps its own: not mixed into the local sequence.
            return;
        }
        if presence::is_change(payload) {
            return self.forward_change(channel, topic, payload);
        }
        let Ok(wire) = serde_json::from_slice::<Wire<'_>>(payload) else {
            self.metrics.malformed.inc();
            log::debug!("ignoring a malformed message on {channel}");
            return;
        };
        self.send(MixerMsg::Publish(wire.into_publish(Arc::from(topic))));
    }
}
