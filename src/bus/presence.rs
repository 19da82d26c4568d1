//! The bus presence thread: room membership across nodes (with `--redis`).
//!
//! A room's members on every node live in one Redis hash (`<prefix>:{room}:members`, member
//! key `<node>/<shard>/<token>/<id>` -> who), changed by one Lua script per join, leave or
//! rename that also numbers the change (`<prefix>:{room}:pver`) and publishes it on the
//! room's channel, so every node following the room applies every other node's changes in
//! one order. A node reads the hash (with its version, atomically) when the room gets its
//! first member there, after it has subscribed to the room: changes numbered after what it
//! read then all reach it live.
//!
//! Each node refreshes a heartbeat key that lives `--node-ttl`, and keeps the set of rooms it
//! has members in. A node whose heartbeat expired died without saying goodbye (SIGKILL, a
//! lost host): one of the others (the first to take a lock) removes its members from every
//! room it was in and publishes their leaves, so they leave everyone's view within about
//! the TTL.
//!
//! Everything here waits for Redis on this thread alone: the mixer hands over
//! [`PresenceOp`]s through a bounded channel and hears back through its own input.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use super::link::Link;
use super::{BACKOFF_MIN, BusConfig, BusState, SUBSCRIBED_WAIT, back_off, hand_to_mixer};
use crate::interest::Interest;
use crate::messages::{MixerMsg, PresenceOp, RemoteChange, RemoteMember};
use crate::protocol::replies::PresenceEvent;

/// Changes waiting for Redis, per node.
pub const QUEUE: usize = 16 * 1024;
/// How long one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Changes one member (KEYS: members hash, version counter, channel, then the room's other
/// keys, [`BusConfig::room_keys`]; ARGV: `join`, `leave` or `nick`, the member key, who
/// (JSON), the room TTL in ms, the publish command, the empty-room TTL in ms). Numbers the
/// change and publishes it; a leave of a member that is not there changes nothing. A join or
/// rename gives every key of the room the room TTL; the leave of the room's last member on
/// any node gives every key left the empty-room TTL (the members hash is gone with it).
const CHANGE: &str = r#"
if ARGV[1] == 'leave' then
  if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
local v = redis.call('INCR', KEYS[2])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then ttl = tonumber(ARGV[6]) end
  for i = 1, #KEYS do
    if i ~= 3 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
redis.call(ARGV[5], KEYS[3], '{"presence":"' .. ARGV[1] .. '","v":' .. string.format('%d', v) .. ',"member":"' .. ARGV[2] .. '","who":' .. ARGV[3] .. '}')
return v
"#;

/// A room's members and the version they stand at, read in one step (KEYS: members hash,
/// version counter).
const READ: &str = r#"
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}
"#;

/// Removes a dead node's members from one room and publishes each leave (KEYS: members
/// hash, version counter, channel, then [`BusConfig::room_keys`]; ARGV: the node's
/// member-key prefix `<node>/`, the publish command, the empty-room TTL in ms). A room left
/// with no member gets the empty-room TTL on every key, as after the last leave. Returns how
/// many left.
const REAP: &str = r#"
local gone = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #ARGV[1]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], f)
    local v = redis.call('INCR', KEYS[2])
    redis.call(ARGV[2], KEYS[3], '{"presence":"leave","v":' .. string.format('%d', v) .. ',"member":"' .. f .. '","who":{}}')
    gone = gone + 1
  end
end
if gone > 0 and redis.call('EXISTS', KEYS[1]) == 0 and tonumber(ARGV[3]) > 0 then
  for i = 2, #KEYS do
    if i ~= 3 then redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3])) end
  end
end
return gone
"#;

/// Who a member is, as the hash and the changes carry it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Who {
    /// Its client id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Its nickname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
}

/// A change as the room's channel carries it.
#[derive(Debug, Deserialize)]
pub struct ChangeWire {
    /// `join`, `leave` or `nick`.
    pub presence: String,
    /// Its number in the room's presence sequence.
    pub v: u64,
    /// The member's key.
    pub member: String,
    /// Who it is (empty on a leave).
    #[serde(default)]
    pub who: Who,
}

impl ChangeWire {
    /// The change as the mixer takes it; `None` for an event this node does not know.
    pub fn into_change(self) -> Option<RemoteChange> {
        let event = match self.presence.as_str() {
            "join" => PresenceEvent::Join,
            "leave" => PresenceEvent::Leave,
            "nick" => PresenceEvent::Nick,
            _ => return None,
        };
        Some(RemoteChange {
            version: self.v,
            event,
            member: Arc::from(self.member),
            client_id: Arc::from(self.who.client_id),
            nick: self.who.nick.map(Arc::from),
        })
    }
}

/// Whether a payload on a room channel is a membership change rather than a message.
pub fn is_change(payload: &[u8]) -> bool {
    payload.starts_with(br#"{"presence":"#)
}

/// Whether `member` is one of `node`'s.
pub fn is_of_node(member: &str, node: &str) -> bool {
    member
        .strip_prefix(node)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The bus presence thread's state.
pub struct BusPresence {
    cfg: BusConfig,
    input: Receiver<PresenceOp>,
    mixer: Sender<MixerMsg>,
    interest: Arc<Interest>,
    state: Arc<BusState>,
    stop: Receiver<()>,
    /// Changes taken from the input and not yet in Redis (kept across a reconnect).
    waiting: VecDeque<PresenceOp>,
}

impl BusPresence {
    /// A presence thread answering into `mixer`; returns it and its input.
    pub fn new(
        cfg: BusConfig,
        mixer: Sender<MixerMsg>,
        interest: Arc<Interest>,
        state: Arc<BusState>,
        stop: Receiver<()>,
    ) -> (BusPresence, Sender<PresenceOp>) {
        let (tx, input) = crossbeam_channel::bounded(QUEUE);
        let presence = BusPresence {
            cfg,
            input,
            mixer,
            interest,
            state,
            stop,
            waiting: VecDeque::new(),
        };
        (presence, tx)
    }

    fn stopping(&self) -> bool {
        super::stopped(&self.stop)
    }

    /// Runs until the node stops; then takes its heartbeat away, so the others announce
    /// whatever leaves did not get out.
    pub fn run(mut self) {
        let mut conn: Option<Link> = None;
        let mut backoff = BACKOFF_MIN;
        let beat_every = self.cfg.node_ttl / 3;
        let mut next_beat = Instant::now();
        while !self.stopping() {
            let Some(c) = conn.as_mut() else {
                conn = self.connect();
                if conn.is_none() {
                    back_off(&mut backoff, || self.stopping());
                }
                continue;
            };
            backoff = BACKOFF_MIN;
            let now = Instant::now();
            let result = if now >= next_beat {
                next_beat = now + beat_every;
                self.beat(c).and_then(|()| self.reap_dead(c))
            } else {
                self.serve(c, next_beat)
            };
            if let Err(e) = result {
                log::warn!("redis presence failed ({e}); reconnecting");
                conn = None;
            }
        }
        if let Some(c) = conn.as_mut() {
            let _ = redis::cmd("DEL")
                .arg(self.cfg.heartbeat_key(&self.state.node))
                .query::<()>(c.conn());
        }
        log::debug!("bus presence stopped");
    }

    fn connect(&self) -> Option<Link> {
        Link::try_open(&self.cfg.url, COMMAND_TIMEOUT, "presence")
    }

    /// Carries out changes until `until` (the next heartbeat).
    fn serve(&mut self, c: &mut Link, until: Instant) -> redis::RedisResult<()> {
        loop {
            let op = match self.waiting.pop_front() {
                Some(op) => op,
                None => {
                    let wait = until.saturating_duration_since(Instant::now());
                    match self
                        .input
                        .recv_timeout(wait.min(Duration::from_millis(100)))
                    {
                        Ok(op) => op,
                        Err(RecvTimeoutError::Timeout) => return Ok(()),
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            };
            if let Err(e) = self.carry_out(c, &op) {
                self.waiting.push_front(op);
                return Err(e);
            }
            if Instant::now() >= until || self.stopping() {
                return Ok(());
            }
        }
    }

    fn carry_out(&self, link: &mut Link, op: &PresenceOp) -> redis::RedisResult<()> {
        let ttl_ms = self.cfg.room_ttl.as_millis() as u64;
        let empty_ms = self.cfg.empty_ttl().as_millis() as u64;
        let publish = link.publish_command();
        if let PresenceOp::Load { room } = op {
            return self.load(link, room);
        }
        let c = link.conn();
        let change =
            |c: &mut dyn redis::ConnectionLike, room: &str, what: &str, member: &str, who: &Who| {
                // Serializing two strings cannot fail.
                let who = serde_json::to_string(who).unwrap_or_else(|_| "{}".into());
                redis::Script::new(CHANGE)
                    .key(self.cfg.members_key(room))
                    .key(self.cfg.presence_version_key(room))
                    .key(self.cfg.channel(room))
                    .key(&self.cfg.room_keys(room)[..])
                    .arg(what)
                    .arg(member)
                    .arg(who)
                    .arg(ttl_ms)
                    .arg(publish)
                    .arg(empty_ms)
                    .invoke::<u64>(c)
                    .map(drop)
            };
        match op {
            PresenceOp::Join {
                room,
                member,
                client_id,
                nick,
            } => {
                redis::cmd("SADD")
                    .arg(self.cfg.node_rooms_key(&self.state.node))
                    .arg(&**room)
                    .query::<()>(c)?;
                let who = Who {
                    client_id: client_id.to_string(),
                    nick: nick.as_deref().map(str::to_string),
                };
                change(c, room, "join", member, &who)
            }
            PresenceOp::Leave { room, member } => change(c, room, "leave", member, &Who::default()),
            PresenceOp::Nick {
                room,
                member,
                client_id,
                nick,
            } => {
                let who = Who {
                    client_id: client_id.to_string(),
                    nick: Some(nick.to_string()),
                };
                change(c, room, "nick", member, &who)
            }
            PresenceOp::Emptied { room } => redis::cmd("SREM")
                .arg(self.cfg.node_rooms_key(&self.state.node))
                .arg(&**room)
                .query::<()>(c),
            PresenceOp::Load { .. } => Ok(()),
        }
    }

    /// Reads `room`'s members once this node follows the room, and hands the other nodes'
    /// to the mixer.
    fn load(&self, c: &mut Link, room: &Arc<str>) -> redis::RedisResult<()> {
        self.state
            .await_applied(self.interest.version(), SUBSCRIBED_WAIT);
        let (version, flat): (u64, Vec<String>) = redis::Script::new(READ)
            .key(self.cfg.members_key(room))
            .key(self.cfg.presence_version_key(room))
            .invoke(c.conn())?;
        let members = flat
            .chunks_exact(2)
            .filter(|kv| !is_of_node(&kv[0], &self.state.node))
            .map(|kv| {
                let who: Who = serde_json::from_str(&kv[1]).unwrap_or_default();
                RemoteMember {
                    member: Arc::from(kv[0].as_str()),
                    client_id: Arc::from(who.client_id),
                    nick: who.nick.map(Arc::from),
                }
            })
            .collect();
        let msg = MixerMsg::PresenceLoaded {
            room: room.clone(),
            version,
            members,
        };
        hand_to_mixer(&self.mixer, msg, &self.stop);
        Ok(())
    }

    /// Refreshes this node's heartbeat and announces it.
    fn beat(&self, c: &mut Link) -> redis::RedisResult<()> {
        let node = &self.state.node;
        let mut set = redis::cmd("SET");
        set.arg(self.cfg.heartbeat_key(node))
            .arg(1)
            .arg("PX")
            .arg(self.cfg.node_ttl.as_millis() as u64);
        let mut add = redis::cmd("SADD");
        add.arg(self.cfg.nodes_key()).arg(node);
        c.pipeline::<redis::Value>([set, add]).map(drop)
    }

    /// Announces the leaves of every member of every node whose heartbeat expired (one
    /// node does it, the first to take the lock).
    fn reap_dead(&self, link: &mut Link) -> redis::RedisResult<()> {
        let publish = link.publish_command();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.cfg.nodes_key())
            .query(link.conn())?;
        for node in nodes.iter().filter(|n| **n != self.state.node) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.cfg.heartbeat_key(node))
                .query(link.conn())?;
            if alive {
                continue;
            }
            let locked: Option<String> = redis::cmd("SET")
                .arg(self.cfg.reap_key(node))
                .arg(&self.state.node)
                .arg("NX")
                .arg("PX")
                .arg(self.cfg.node_ttl.as_millis() as u64)
                .query(link.conn())?;
            if locked.is_none() {
                continue;
            }
            let rooms: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.cfg.node_rooms_key(node))
                .query(link.conn())?;
            let mut gone = 0u64;
            for room in &rooms {
                gone += redis::Script::new(REAP)
                    .key(self.cfg.members_key(room))
                    .key(self.cfg.presence_version_key(room))
                    .key(self.cfg.channel(room))
                    .key(&self.cfg.room_keys(room)[..])
                    .arg(format!("{node}/"))
                    .arg(publish)
                    .arg(self.cfg.empty_ttl().as_millis() as u64)
                    .invoke::<u64>(link.conn())?;
            }
            let mut del = redis::cmd("DEL");
            del.arg(self.cfg.node_rooms_key(node));
            let mut forget = redis::cmd("SREM");
            forget.arg(self.cfg.nodes_key()).arg(node);
            link.pipeline::<redis::Value>([del, forget])?;
            log::info!(
                "redis presence: node {node} is gone; {gone} member(s) left {} room(s)",
                rooms.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_and_member_keys_name_their_node() {
        let body = br#"{"presence":"join","v":7,"member":"ab12/0/3/9","who":{"client_id":"alice","nick":"al"}}"#;
        assert!(is_change(body));
        assert!(!is_change(br#"{"seq":1,"id":"x","data":1}"#));
        let wire: ChangeWire = serde_json::from_slice(body).unwrap();
        let c = wire.into_change().unwrap();
        assert_eq!((c.version, c.event), (7, PresenceEvent::Join));
        assert_eq!((&*c.client_id, c.nick.as_deref()), ("alice", Some("al")));
        let leave: ChangeWire =
            serde_json::from_str(r#"{"presence":"leave","v":8,"member":"ab12/0/3/9","who":{}}"#)
                .unwrap();
        assert_eq!(leave.into_change().unwrap().event, PresenceEvent::Leave);
        assert!(is_of_node("ab12/0/3/9", "ab12"));
        assert!(!is_of_node("ab123/0/3/9", "ab12"));
    }
}
