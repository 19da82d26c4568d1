//! The bus publisher thread: sends the node's outgoing messages to Redis, in order.
//!
//! Shards (client publishes) and, with `--redis-publish-providers`, providers put messages on
//! one bounded channel; a full channel is the caller's to handle (`server_busy` for a client),
//! never a block of a shard. Each message is sequenced and published by one Lua script, which
//! runs atomically in Redis, so the seq order is the publish order on every node. While Redis
//! is unreachable, messages wait in the channel and the connection is retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::link::Link;
use super::{BACKOFF_MIN, BusConfig, BusState, Wire, back_off};
use crate::clock::unix_micros;
use crate::messages::Publish;
use crate::metrics::PublisherMetrics;

/// Messages waiting for Redis, per node.
pub const QUEUE: usize = 16 * 1024;

/// Sequences, stores and publishes one message, once per id (see the module docs and the
/// README). KEYS: the topic's seq counter, the id's dedup key, the topic's stream, its
/// channel (declared too, so that every name the script touches is known to share the
/// topic's hash slot). ARGV: the JSON body without `seq`, how many messages the stream keeps,
/// the room TTL in ms, the publish command (`PUBLISH`, or `SPUBLISH` on a cluster). The dedup
/// key lives 60 s (a retry comes right after a reconnect). A
/// counter that does not exist (a new or restarted Redis, or an expired room) starts from the
/// Redis clock in µs, so sequence numbers keep increasing across a Redis restart; the stream
/// entry's id is the seq, so a resume reads the gap with one `XRANGE`. Counter and stream
/// expire after the room TTL without a publish.
const SCRIPT: &str = r#"
local prev = redis.call('GET', KEYS[2])
if prev then return tonumber(prev) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], string.format('%d%06d', t[1], t[2]))
end
local s = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], s, 'EX', 60)
local body = '{"seq":' .. string.format('%d', s) .. ',' .. string.sub(ARGV[1], 2)
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', keep, string.format('%d', s) .. '-0', 'm', body)
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  if keep > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
redis.call(ARGV[4], KEYS[4], body)
return s
"#;

/// The bus publisher thread's state.
pub struct BusPublisher {
    cfg: BusConfig,
    input: Receiver<Publish>,
    /// Disconnected once the node's shards have stopped: give up waiting for Redis.
    stop: Receiver<()>,
    state: Arc<BusState>,
    metrics: PublisherMetrics,
    node: String,
    next_id: u64,
}

impl BusPublisher {
    /// A publisher and the channel that feeds it.
    pub fn new(
        cfg: BusConfig,
        stop: Receiver<()>,
        state: Arc<BusState>,
        metrics: PublisherMetrics,
    ) -> (BusPublisher, Sender<Publish>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let node = state.node.clone();
        let publisher = BusPublisher {
            cfg,
            input: rx,
            stop,
            state,
            metrics,
            node,
            next_id: 0,
        };
        (publisher, tx)
    }

    /// Runs until every sender is gone and the queue is published, or, while Redis is
    /// unreachable, until the node stops.
    pub fn run(mut self) {
        let script = redis::Script::new(SCRIPT);
        let mut conn: Option<Link> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let msg = match self.input.recv_timeout(Duration::from_secs(1)) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    if conn.is_none() {
                        conn = self.connect();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.next_id += 1;
            let id = format!("{}-{}", self.node, self.next_id);
            let wire = Wire {
                seq: 0,
                id: &id,
                from: msg.from.as_deref(),
                nick: msg.nick.as_deref(),
                kind: msg.kind,
                ts: msg.made_us.unwrap_or_else(unix_micros),
                data: &msg.data,
            };
            // Strings and pre-validated raw JSON always serialize.
            let body = serde_json::to_string(&wire).expect("serialize bus message");
            let keys = [
                self.cfg.seq_key(&msg.topic),
                self.cfg.dedup_key(&msg.topic, &id),
                self.cfg.stream_key(&msg.topic),
                self.cfg.channel(&msg.topic),
            ];
            let ttl_ms = self.cfg.room_ttl.as_millis() as u64;
            // Retried with the same id until Redis takes it (or the node stops).
            loop {
                let Some(c) = conn.as_mut() else {
                    if self.stopping() {
                        log::warn!(
                            "node stopping with redis unreachable: {} message(s) not published",
                            1 + self.input.len()
                        );
                        return;
                    }
                    back_off(&mut backoff, || self.stopping());
                    conn = self.connect();
                    continue;
                };
                match script
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .key(&keys[3])
                    .arg(&body)
                    .arg(self.cfg.history)
                    .arg(ttl_ms)
                    .arg(c.publish_command())
                    .invoke::<u64>(c.conn())
                {
                    Ok(_) => {
                        self.metrics.published.inc();
                        backoff = BACKOFF_MIN;
                        break;
                    }
                    Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                        self.metrics.errors.inc();
                        log::warn!("redis publish failed ({e}); reconnecting");
                        self.state.set_publisher(false);
                        conn = None;
                    }
                    Err(e) => {
                        self.metrics.errors.inc();
                        log::error!("redis refused a publish on `{}`: {e}", msg.topic);
                        break;
                    }
                }
            }
        }
        log::debug!("bus publisher stopped");
    }

    /// Whether the node has stopped its shards (nothing more will be published).
    fn stopping(&self) -> bool {
        matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    fn connect(&self) -> Option<Link> {
        match Link::open(&self.cfg.url, Duration::from_secs(5)) {
            Ok(c) => {
                self.state.set_publisher(true);
                log::info!("redis publisher connected to {}", self.cfg.url);
                Some(c)
            }
            Err(e) => {
                self.state.set_publisher(false);
                log::debug!("redis publisher: cannot connect to {}: {e}", self.cfg.url);
                None
            }
        }
    }
}
