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
/// Most messages sent in one pipeline (one round trip): the publisher takes whatever is
/// queued up to this, so a quiet node sends one at a time and a busy one amortizes the
/// round trip.
const BATCH: usize = 128;

/// One message ready for the publish script.
struct Outgoing {
    topic: Arc<str>,
    keys: [String; 6],
    body: String,
    /// The node's number for it (its id is `<node>-<number>`).
    number: u64,
}

/// Whether Redis does not have the script (a new master after a failover, a flushed cache).
fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Whether `e` means the connection is gone (reconnect and send again).
fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// Sequences, stores and publishes one message, once (see the module docs and the README).
/// KEYS: the topic's seq counter, the topic's publishers hash (node -> the number of its
/// last message published there), the topic's stream, its channel (declared too, so that
/// every name the script touches is known to share the topic's hash slot), its members hash,
/// the counter of its stream's bytes. ARGV: the JSON body without `seq`, how many messages
/// the stream keeps, the room TTL in ms, the publish command (`PUBLISH`, or `SPUBLISH` on a
/// cluster), the node, the message's number, the empty-room TTL in ms, the stream's byte cap.
///
/// A node numbers its messages in order and sends each topic's in order, so a number at or
/// below the node's last on the topic is a retry of one already published (its reply was
/// lost): skipped, and it costs Redis one hash field per node and topic, not a key per
/// message. A counter that does not exist (a new or restarted Redis, or an expired room)
/// starts from the Redis clock in µs, so sequence numbers keep increasing across a Redis
/// restart; the stream entry's id is the seq, so a resume reads the gap with one `XRANGE`.
///
/// The stream is trimmed exactly, oldest first, while it holds more than `keep` entries or
/// more than the cap's bytes of bodies (counted in the bytes counter as entries come and
/// go): each entry is removed once, so the work is O(1) amortized per publish. A body
/// larger than the cap alone is not kept at all.
///
/// TTLs: a room with members somewhere lives the room TTL, one without the empty-room TTL.
/// A key's TTL is set only when it has none, is below half of what it should be, or is
/// longer (the room emptied): a busy room costs one `PTTL` per key per publish, read-only,
/// instead of rewriting every TTL (and replicating it) each time.
const SCRIPT: &str = r#"
local n = tonumber(ARGV[6])
if n <= tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0') then return 0 end
local s = redis.call('INCR', KEYS[1])
if s == 1 then
  local t = redis.call('TIME')
  s = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('SET', KEYS[1], string.format('%d', s))
end
redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
local body = '{"seq":' .. string.format('%d', s) .. ',' .. string.sub(ARGV[1], 2)
local keep = tonumber(ARGV[2])
local cap = tonumber(ARGV[8])
if keep > 0 then
  redis.call('XADD', KEYS[3], string.format('%d', s) .. '-0', 'm', body)
  local bytes = redis.call('INCRBY', KEYS[6], #body)
  local len = redis.call('XLEN', KEYS[3])
  while len > 0 and (len > keep or (cap > 0 and bytes > cap)) do
    local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', KEYS[3], old[1])
    bytes = redis.call('DECRBY', KEYS[6], #old[2][2])
    len = len - 1
  end
  if len == 0 or bytes < 0 then
    redis.call('SET', KEYS[6], '0', 'KEEPTTL')
  end
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  if redis.call('EXISTS', KEYS[5]) == 0 then ttl = tonumber(ARGV[7]) end
  for _, k in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[6]}) do
    local left = redis.call('PTTL', k)
    if left == -1 or (left >= 0 and (left < ttl / 2 or left > ttl)) then
      redis.call('PEXPIRE', k, ttl)
    end
  end
end
redis.call(ARGV[4], KEYS[4], body)
return s
"#;

/// The publish script (for tests that drive it against a real Redis).
pub fn publish_script() -> redis::Script {
    redis::Script::new(SCRIPT)
}

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
        let script = publish_script();
        let mut conn: Option<Link> = None;
        let mut backoff = BACKOFF_MIN;
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
        loop {
            let first = match self.input.recv_timeout(Duration::from_secs(1)) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    if conn.is_none() {
                        conn = self.connect();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            batch.clear();
            batch.push(self.prepare(first));
            while batch.len() < BATCH {
                match self.input.try_recv() {
                    Ok(msg) => batch.push(self.prepare(msg)),
                    Err(_) => break,
                }
            }
            // Retried (same ids) until Redis takes it, or the node stops while Redis is away.
            let mut one_by_one = false;
            loop {
                let Some(c) = conn.as_mut() else {
                    if self.stopping() {
                        log::warn!(
                            "node stopping with redis unreachable: {} message(s) not published",
                            batch.len() + self.input.len()
                        );
                        return;
                    }
                    back_off(&mut backoff, || self.stopping());
                    conn = self.connect();
                    continue;
                };
                let sent = if one_by_one {
                    self.send_each(c, &script, &batch)
                } else {
                    self.send_batch(c, &script, &batch)
                };
                match sent {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        break;
                    }
                    Err(e) if is_lost(&e) => {
                        self.metrics.errors.inc();
                        log::warn!("redis publish failed ({e}); reconnecting");
                        self.state.set_publisher(false);
                        conn = None;
                    }
                    Err(e) if is_noscript(&e) => {
                        // A new master (a failover) or a flushed script cache.
                        if let Err(e) = script.load(c.conn()) {
                            log::warn!("redis: cannot load the publish script ({e})");
                            conn = None;
                        }
                    }
                    Err(e) => {
                        // Some message was refused: find it, one message per call.
                        log::debug!("redis refused a batch ({e}); sending one by one");
                        one_by_one = true;
                    }
                }
            }
        }
        log::debug!("bus publisher stopped");
    }

    /// The script's keys and body for `msg`, with the node's next message id.
    fn prepare(&mut self, msg: Publish) -> Outgoing {
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
        Outgoing {
            keys: [
                self.cfg.seq_key(&msg.topic),
                self.cfg.publishers_key(&msg.topic),
                self.cfg.stream_key(&msg.topic),
                self.cfg.channel(&msg.topic),
                self.cfg.members_key(&msg.topic),
                self.cfg.stream_bytes_key(&msg.topic),
            ],
            body,
            number: self.next_id,
            topic: msg.topic,
        }
    }

    /// The script call for `out` (`EVALSHA`: the script is loaded on a `NOSCRIPT`).
    fn call(&self, link: &Link, script: &redis::Script, out: &Outgoing) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash())
            .arg(out.keys.len())
            .arg(&out.keys[..])
            .arg(&out.body)
            .arg(self.cfg.history)
            .arg(self.cfg.room_ttl.as_millis() as u64)
            .arg(link.publish_command())
            .arg(&self.node)
            .arg(out.number)
            .arg(self.cfg.empty_ttl().as_millis() as u64)
            .arg(self.cfg.stream_max_bytes);
        cmd
    }

    /// Every message of `batch` in one pipeline: one round trip (per master), in order.
    fn send_batch(
        &self,
        link: &mut Link,
        script: &redis::Script,
        batch: &[Outgoing],
    ) -> redis::RedisResult<()> {
        let calls: Vec<redis::Cmd> = batch.iter().map(|o| self.call(link, script, o)).collect();
        let _: Vec<redis::Value> = link.pipeline(calls)?;
        self.metrics.published.inc_by(batch.len() as u64);
        Ok(())
    }

    /// Every message of `batch` on its own, so that one Redis refuses (logged, counted,
    /// dropped) does not hold back the others.
    fn send_each(
        &self,
        link: &mut Link,
        script: &redis::Script,
        batch: &[Outgoing],
    ) -> redis::RedisResult<()> {
        for out in batch {
            let call = self.call(link, script, out);
            match call.query::<redis::Value>(link.conn()) {
                Ok(_) => {
                    self.metrics.published.inc();
                }
                Err(e) if is_lost(&e) => return Err(e),
                Err(e) if is_noscript(&e) => {
                    return Err(e);
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    log::error!("redis refused a publish on `{}`: {e}", out.topic);
                }
            }
        }
        Ok(())
    }

    /// Whether the node has stopped its shards (nothing more will be published).
    fn stopping(&self) -> bool {
        super::stopped(&self.stop)
    }

    fn connect(&self) -> Option<Link> {
        match Link::open(&self.cfg.url, Duration::from_secs(5)) {
            Ok(c) => {
                self.state.set_publisher(true);
                log::info!(
                    "redis publisher connected to {}",
                    super::redacted(&self.cfg.url)
                );
                Some(c)
            }
            Err(e) => {
                self.state.set_publisher(false);
                log::debug!(
                    "redis publisher: cannot connect to {}: {e}",
                    super::redacted(&self.cfg.url)
                );
                None
            }
        }
    }
}
