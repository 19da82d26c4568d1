//! Scale-out: nodes share messages through Redis Pub/Sub.
//!
//! With `--redis`, every message that must reach every node (client publishes to rooms, and
//! with `--redis-publish-providers` the node's own providers) goes to Redis instead of the
//! local mixer; each node subscribes to the per-topic channels its local clients want and
//! feeds what arrives into its mixer. Four threads, all on the Redis crate's blocking API:
//!
//! - [`publisher`]: one ordered queue per node; each message is sequenced, stored and
//!   published in one atomic Lua script (`INCR` the topic's counter, `XADD` to its stream,
//!   `PUBLISH` with that seq), so the order Redis publishes in *is* the seq order, the same on
//!   every node, and the stream holds exactly what was delivered;
//! - [`subscriber`]: follows the node's [`Interest`](crate::interest::Interest) with
//!   `SUBSCRIBE`/`UNSUBSCRIBE` (or `PSUBSCRIBE <prefix>:*` while someone wants `*`) and hands
//!   every message to the mixer with the seq it already carries;
//! - [`history`]: reads a topic's stream back (`XRANGE`) for a resume the mixer's ring cannot
//!   serve, so a client resumes on any node, after any restart;
//! - [`presence`]: keeps rooms' members of every node in Redis, numbers and publishes their
//!   changes, refreshes the node's heartbeat and announces the leaves of a dead node's members.
//!
//! Every key and channel of a topic carries the topic as a hash tag (`<prefix>:{<topic>}`).
//! A topic's keys live `--room-ttl` while the room has a member on some node (refreshed by a
//! join and, once below half, by a publish) and `--empty-room-ttl` once it has none; each
//! stream is capped in entries (`--history`) and in bytes (`--redis-stream-max-bytes`).
//!
//! `--redis` may name a node of a Redis Cluster ([`link`] finds out): the threads then use
//! the redis crate's blocking cluster client, whose commands and scripts go to the master of
//! the topic's slot, and messages travel by sharded Pub/Sub (`SPUBLISH` in the scripts,
//! `SSUBSCRIBE` on each master), so each crosses one master instead of every node.
//!
//! Faults: both threads reconnect with exponential backoff; the subscriber resubscribes and
//! counts `tickcast_redis_reconnects_total`; while it is down `/healthz` answers
//! `degraded: redis` (HTTP 200: the node still serves its local streams). A message whose
//! reply was lost is retried with the same id, and the script publishes each id once; the
//! mixer drops any seq it has already passed, so clients never see a duplicate.

pub mod history;
pub mod link;
pub mod presence;
pub mod publisher;
pub mod subscriber;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::interest::Interest;
use crate::messages::{MixerMsg, Publish};
use crate::protocol::SERVER_TOPICS;

/// First wait between reconnection attempts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings of the Redis bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key and channel (`<prefix>:{<topic>}...`).
    pub prefix: String,
    /// Also send the node's own providers (ticks, telemetry) through Redis.
    pub publish_providers: bool,
    /// Messages each topic's stream keeps in Redis for resumes on any node (`--history`;
    /// trimmed approximately, `XADD ... MAXLEN ~`). 0 keeps none.
    pub history: usize,
    /// A topic's keys in Redis (sequence, stream, members) expire after this long without a
    /// change (`--room-ttl`, default 24 h), so rooms no one uses any more leave nothing
    /// behind.
    pub room_ttl: Duration,
    /// A node that has not refreshed its heartbeat for this long is dead: another node
    /// announces its members' leaves (`--node-ttl`, default 10 s).
    pub node_ttl: Duration,
    /// A room with no member left on any node keeps its keys this long, not `room_ttl`
    /// (`--empty-room-ttl`, default 5 min): whoever removes the last member (its node, or the
    /// node that reaps a dead one) shortens every key's TTL, and a join anywhere restores
    /// the long one. Long enough for a reconnect to resume, short enough that a room made,
    /// published to once and left costs Redis minutes of memory instead of a day. Longer
    /// than `room_ttl`, it is taken as `room_ttl` ([`BusConfig::empty_ttl`]), so a short
    /// `--room-ttl` alone needs no second option.
    pub empty_room_ttl: Duration,
    /// Most bytes of message bodies a topic's stream keeps (`--redis-stream-max-bytes`,
    /// default 4 MiB, as the local ring's byte cap): the publish script trims the oldest
    /// entries past this as well as past `history` entries, so one room's stream costs Redis
    /// at most this much whatever its clients send.
    pub stream_max_bytes: usize,
}

/// Default of [`BusConfig::empty_room_ttl`].
pub const EMPTY_ROOM_TTL: Duration = Duration::from_secs(5 * 60);
/// Default of [`BusConfig::stream_max_bytes`].
pub const STREAM_MAX_BYTES: usize = 4 * 1024 * 1024;

/// `url` with its password (and a lone user part, which Redis URLs also use for one) shown
/// as `***`, for logs and errors: `redis://user:***@host:6379/0`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

impl BusConfig {
    /// The TTL of an empty room's keys: `empty_room_ttl`, at most `room_ttl`.
    pub fn empty_ttl(&self) -> Duration {
        self.empty_room_ttl.min(self.room_ttl)
    }

    /// Settings for `url` with the default prefix, history and room TTL.
    pub fn new(url: &str) -> Self {
        BusConfig {
            url: url.to_string(),
            prefix: "tickcast".into(),
            publish_providers: false,
            history: 1000,
            room_ttl: Duration::from_secs(24 * 3600),
            node_ttl: Duration::from_secs(10),
            empty_room_ttl: EMPTY_ROOM_TTL,
            stream_max_bytes: STREAM_MAX_BYTES,
        }
    }
}

impl BusConfig {
    /// Checks the URL once, at start, for a clear error.
    pub fn validate(&self) -> Result<(), String> {
        // The error's own text ends in its kind's debug name (`InvalidClientConfig`): only
        // its detail, if any, is worth showing.
        redis::Client::open(self.url.as_str()).map_err(|e| {
            let detail = e.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!(
                "invalid --redis URL `{}`: expected redis://host:port, rediss://host:port or \
                 redis+unix:///path{detail}",
                redacted(&self.url)
            )
        })?;
        if self.prefix.is_empty() || self.prefix.contains(['*', '?', '[', ' ']) {
            return Err(
                "--redis-prefix must be non-empty, without spaces or glob characters".into(),
            );
        }
        if self.node_ttl < Duration::from_millis(300) {
            return Err("--node-ttl must be at least 300ms (heartbeats go every third)".into());
        }
        if self.empty_room_ttl < Duration::from_secs(1) {
            return Err("--empty-room-ttl must be at least 1s".into());
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.stream_max_bytes) {
            return Err("--redis-stream-max-bytes must be between 1 KiB and 1 GiB".into());
        }
        Ok(())
    }

    /// The channel of `topic`: `<prefix>:{<topic>}`. Every key of a topic carries the same
    /// `{<topic>}` hash tag, so in a Redis Cluster they all live in one slot, as the publish
    /// script needs (topic names never hold braces).
    pub fn channel(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}", self.prefix)
    }

    /// The key of `topic`'s sequence counter.
    pub fn seq_key(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:seq", self.prefix)
    }

    /// The key of `topic`'s stream of recent messages (history for resumes).
    pub fn stream_key(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:stream", self.prefix)
    }

    /// The hash of the number of each node's last message published on `topic` (a retried
    /// publish is published once).
    pub fn publishers_key(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:pubs", self.prefix)
    }

    /// The counter of the bytes of message bodies in `topic`'s stream (for its byte cap).
    pub fn stream_bytes_key(&self, topic: &str) -> String {
        format!("{}:{{{topic}}}:sbytes", self.prefix)
    }

    /// Every key of `room` whose TTL follows its membership, in the order the presence
    /// scripts take them after their own three: sequence, publishers, stream, stream bytes.
    pub fn room_keys(&self, room: &str) -> [String; 4] {
        [
            self.seq_key(room),
            self.publishers_key(room),
            self.stream_key(room),
            self.stream_bytes_key(room),
        ]
    }

    /// The hash of `room`'s members on every node (member key -> who).
    pub fn members_key(&self, room: &str) -> String {
        format!("{}:{{{room}}}:members", self.prefix)
    }

    /// The counter that numbers `room`'s membership changes.
    pub fn presence_version_key(&self, room: &str) -> String {
        format!("{}:{{{room}}}:pver", self.prefix)
    }

    /// The set of every node that announced itself.
    pub fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// `node`'s heartbeat: it lives `--node-ttl` unless refreshed.
    pub fn heartbeat_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The rooms `node` has members in (for the leaves to announce when it dies).
    pub fn node_rooms_key(&self, node: &str) -> String {
        format!("{}:node:{node}:rooms", self.prefix)
    }

    /// The lock one node takes to announce a dead `node`'s leaves.
    pub fn reap_key(&self, node: &str) -> String {
        format!("{}:reap:{node}", self.prefix)
    }

    /// The topic of a channel, if it is one of ours.
    pub fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }

    /// Whether `topic` travels through Redis: rooms always, server topics only with
    /// `--redis-publish-providers` (otherwise each node's ticks are its own).
    pub fn carries(&self, topic: &str) -> bool {
        self.publish_providers || !SERVER_TOPICS.contains(&topic)
    }
}

/// What the health check and metrics know of the bus, and the node's name in Redis.
#[derive(Debug, Default)]
pub struct BusState {
    /// This node's id in Redis (random per start): in message ids, member keys, heartbeat.
    pub node: String,
    subscriber_up: AtomicBool,
    publisher_up: AtomicBool,
    /// The node's interest version the subscriber has applied (its SUBSCRIBE replies came
    /// back), 0 before the first.
    applied_interest: AtomicU64,
}

impl BusState {
    /// A state with both connections down (until they connect), for a node with a fresh
    /// random id.
    pub fn new() -> Arc<Self> {
        Arc::new(BusState {
            node: format!("{:012x}", fastrand::u64(..) >> 16),
            ..BusState::default()
        })
    }

    /// Whether both connections are up.
    pub fn healthy(&self) -> bool {
        self.subscriber_up.load(Ordering::Acquire) && self.publisher_up.load(Ordering::Acquire)
    }

    pub(crate) fn set_subscriber(&self, up: bool) {
        self.subscriber_up.store(up, Ordering::Release);
    }

    pub(crate) fn set_publisher(&self, up: bool) {
        self.publisher_up.store(up, Ordering::Release);
    }

    /// The interest version whose channels are all subscribed now.
    pub fn applied_interest(&self) -> u64 {
        self.applied_interest.load(Ordering::Acquire)
    }

    /// Waits until the subscriber has applied interest version `wanted` (its topics are
    /// subscribed), at most `limit`; polls, since only bus threads wait here.
    pub fn await_applied(&self, wanted: u64, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        while self.applied_interest() < wanted && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn set_applied_interest(&self, version: u64) {
        self.applied_interest.store(version, Ordering::Release);
    }
}

/// A message as it travels through Redis (the seq is added by the publish script).
#[derive(Debug, Serialize, Deserialize)]
pub struct Wire<'a> {
    /// Cluster-wide sequence number of the message within its topic.
    #[serde(default, skip_serializing)]
    pub seq: u64,
    /// Publisher-assigned id, unique per node run; the script publishes each id once.
    pub id: &'a str,
    /// The publishing client's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    /// Its nickname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<&'a str>,
    /// `"me"` for actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    /// When the message was published (µs since the Unix epoch, the publishing node's
    /// clock): its `ts` on every node, live or replayed.
    #[serde(default)]
    pub ts: u64,
    /// The message body, relayed byte for byte.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl Wire<'_> {
    /// The message as the mixer takes it, on `topic`: with the seq Redis gave it, and
    /// stamped where it was published (the same `ts` on every node, live or replayed; the
    /// time it spent crossing Redis counts in its latency).
    pub fn into_publish(self, topic: Arc<str>) -> Publish {
        Publish {
            topic,
            data: self.data.to_owned(),
            from: self.from.map(Arc::from),
            nick: self.nick.map(Arc::from),
            kind: match self.kind {
                Some("me") => Some("me"),
                _ => None,
            },
            seq: Some(self.seq),
            made_us: (self.ts > 0).then_some(self.ts),
            queued: 0,
        }
    }
}

/// How far the subscriber follows the node's interest, as a shard's port asks it before a
/// client publish goes to Redis ([`crate::messages::Subscribed`]).
#[derive(Debug)]
pub struct Following {
    state: Arc<BusState>,
    interest: Arc<Interest>,
}

impl Following {
    /// What `state`'s subscriber has applied of `interest`.
    pub fn new(state: Arc<BusState>, interest: Arc<Interest>) -> Following {
        Following { state, interest }
    }
}

impl crate::messages::Subscribed for Following {
    fn wanted(&self) -> u64 {
        self.interest.version()
    }

    fn applied(&self) -> u64 {
        self.state.applied_interest()
    }
}

/// Longest a bus thread waits for the subscriber to follow the node's interest before it
/// reads a topic's state from Redis anyway: the same wait a client publish gets in its
/// shard's port.
pub use crate::messages::SUBSCRIBED_WAIT;

/// Hands `msg` to the mixer, waiting for room (blocking only the calling bus thread) until
/// the node stops: true once it is sent.
pub(crate) fn hand_to_mixer(
    mixer: &crossbeam_channel::Sender<MixerMsg>,
    mut msg: MixerMsg,
    stop: &crossbeam_channel::Receiver<()>,
) -> bool {
    loop {
        match mixer.send_timeout(msg, Duration::from_millis(100)) {
            Ok(()) => return true,
            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if !stopped(stop) => msg = back,
            Err(_) => return false,
        }
    }
}

/// Whether the node is stopping: the sender of a bus thread's `stop` channel is gone.
pub(crate) fn stopped(stop: &crossbeam_channel::Receiver<()>) -> bool {
    matches!(
        stop.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    )
}

pub(crate) fn back_off(backoff: &mut Duration, stopping: impl Fn() -> bool) {
    let until = std::time::Instant::now() + *backoff;
    while std::time::Instant::now() < until && !stopping() {
        std::thread::sleep(Duration::from_millis(20));
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("redis://app:s3cret@host:6379", "redis://app:***@host:6379"),
            ("rediss://s3cret@host", "rediss://***@host"),
            ("redis://u:p@ss@host/1?x=@", "redis://u:***@host/1?x=@"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    #[test]
    fn channels_and_carriage() {
        let cfg = BusConfig {
            prefix: "tc".into(),
            ..BusConfig::new("redis://127.0.0.1:6379")
        };
        cfg.validate().unwrap();
        assert_eq!(cfg.channel("room.a"), "tc:{room.a}");
        assert_eq!(cfg.topic_of("tc:{room.a}"), Some("room.a"));
        assert_eq!(cfg.topic_of("other:{room.a}"), None);
        assert_eq!(cfg.topic_of("tc:room.a"), None);
        assert_eq!(cfg.seq_key("room.a"), "tc:{room.a}:seq");
        assert_eq!(cfg.stream_key("room.a"), "tc:{room.a}:stream");
        assert_eq!(cfg.publishers_key("room.a"), "tc:{room.a}:pubs");
        assert!(cfg.carries("room.a") && !cfg.carries("ticks"));
        let bad = BusConfig {
            url: "http://nope".into(),
            ..cfg
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("invalid --redis URL"), "{e}");
        assert!(
            !e.contains("InvalidClientConfig") && !e.contains(" - "),
            "{e}"
        );
    }

    #[test]
    fn wire_round_trip() {
        let data = RawValue::from_string("{\"x\":[1,2]}".into()).unwrap();
        let w = Wire {
            seq: 0,
            id: "n-1",
            from: Some("alice"),
            nick: None,
            kind: None,
            ts: 7,
            data: &data,
        };
        let body = serde_json::to_string(&w).unwrap();
        assert!(!body.contains("seq"), "the script adds the seq");
        let published = format!("{{\"seq\":42,{}", &body[1..]);
        let back: Wire<'_> = serde_json::from_str(&published).unwrap();
        assert_eq!(
            (back.seq, back.from, back.data.get()),
            (42, Some("alice"), "{\"x\":[1,2]}")
        );
    }
}
