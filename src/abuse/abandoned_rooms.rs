//! Scenario `abandoned_rooms`: against a server on a real Redis (`--redis`), clients make
//! many rooms, publish once in each and leave, and a few heavy rooms are filled past the
//! stream's byte cap by one connection after another; then Redis is read directly.
//!
//! Before the fix a room made and left kept its keys for `--room-ttl` (24 h) and its stream
//! was capped only in entries, so a client could leave Redis holding a day of garbage per
//! room, 1,000 entries of up to 64 KiB each. Now the last member's leave gives every key of
//! the room `--empty-room-ttl` (5 min), and each stream is held to
//! `--redis-stream-max-bytes` (4 MiB) of message bodies. `scripts/abuse.sh` starts a
//! private `redis-server` for this scenario and runs the server with the defaults of both.
//!
//! Every heavy connection must get its own publishes back (docs/protocol.md: a newcomer may
//! publish at once, its messages come back after its snapshot), or the fill did not happen
//! as the protocol promises. Checks, read from Redis with the bus's own client
//! ([`crate::bus::link::Link`]): once every member has left, no key of those rooms is
//! without a TTL and none has more than the empty room TTL left; each heavy stream's bodies
//! are within the cap and its `MEMORY USAGE` within the cap plus [`stream_slack`]; the keys
//! the run left are at most [`KEYS_PER_ROOM`] per room; a normal client is served
//! throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::Cmd;
use serde::Serialize;
use serde_json::Value;

use super::AbuseConfig;
use super::client::{self, Tally, WsConn};
use super::crowd;
use super::drive::{Cx, Judged, Play, Reads, Seen};
use super::ops::{self, Frames, Maker};
use super::report::{Check, Raw};
use crate::bus::BusConfig;
use crate::bus::link::Link;

/// Keys a left room may keep until they expire: sequence, publishers, stream, stream bytes
/// and presence version (its members hash goes with its last member).
pub const KEYS_PER_ROOM: u64 = 5;
/// Keys of the node itself (its heartbeat, its rooms, the set of nodes) and some margin.
const NODE_KEYS: u64 = 8;
/// Room makers, each within `--publish-rate` (three messages a room).
const MAKERS: usize = 6;
/// Rooms each maker makes a second.
const ROOMS_PER_SEC: f64 = 30.0;
/// Bytes of data in each heavy publish, and publishes per heavy connection (within its
/// 256 KiB byte burst).
const HEAVY_DATA: usize = 16_000;
const HEAVY_PUBLISHES: usize = 16;
/// Time allowed for each connect, and for the leaves to reach Redis.
const STEP: Duration = Duration::from_secs(10);
/// Time allowed for a heavy connection's echoes (a round trip through Redis each).
const ECHO_WAIT: Duration = Duration::from_secs(3);
/// How long a redis command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a stream may take in Redis beyond its bodies' cap for `entries` entries: the
/// per-entry overhead docs/scale-out.md allows, taken as 1 KiB (an entry this large fills a
/// listpack node of its own, past `stream-node-max-bytes`, rounded up by the allocator, plus
/// its id, its field name and its radix-tree key: about 790 B per 16 KB entry measured on
/// Redis 7), plus the stream's own structure.
pub fn stream_slack(entries: u64) -> u64 {
    entries * 1024 + 16 * 1024
}

/// Scenario `abandoned_rooms`: `rooms` rooms made and left, `heavy` rooms filled past the
/// stream cap by `heavy_conns` connections each.
pub struct AbandonedRooms {
    rooms: usize,
    heavy: usize,
    heavy_conns: usize,
    bus: BusConfig,
}

impl AbandonedRooms {
    /// The scenario as `cfg` sizes it, against a server with the bus's defaults.
    pub fn new(cfg: &AbuseConfig) -> AbandonedRooms {
        AbandonedRooms {
            rooms: cfg.count_or(120, 1_000),
            heavy: if cfg.quick { 1 } else { 3 },
            heavy_conns: 24,
            bus: BusConfig::new("redis://unused"),
        }
    }
}

/// What a heavy room's stream holds.
#[derive(Debug, Clone, Serialize)]
pub struct Stream {
    /// The room.
    pub room: String,
    /// Bytes published into it (the ops' data).
    pub published: u64,
    /// Its entries.
    pub entries: u64,
    /// The bytes of their bodies.
    pub body_bytes: u64,
    /// `MEMORY USAGE` of the stream key.
    pub memory: Option<u64>,
}

/// TTLs of the rooms' keys, read after everyone left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ttls {
    /// Keys found.
    pub keys: u64,
    /// Keys without a TTL.
    pub persistent: u64,
    /// Keys with more than the empty room TTL left.
    pub too_long: u64,
    /// The longest TTL left, ms.
    pub max_ms: i64,
    /// Members hashes still there.
    pub members_left: u64,
}

/// What the connections filling one heavy room saw.
pub struct Heavy {
    room: String,
    /// Data bytes published.
    published: u64,
    /// Each connection's echoes (of [`HEAVY_PUBLISHES`]), in order.
    echoes: Vec<u64>,
    frames: Frames,
}

/// What the run did and what Redis held after it.
pub struct Left {
    makers: Vec<Maker>,
    failures: Tally,
    heavy: Vec<Heavy>,
    streams: Vec<Stream>,
    ttls: Ttls,
    keys_before: u64,
    keys_after: u64,
    leaves_seen: bool,
    cap: u64,
}

impl Play for AbandonedRooms {
    type Clients = (Link, u64);
    type Outcome = Left;

    fn expectation(&self) -> &'static str {
        "rooms made, published to and left on a Redis-backed server: every key of them expires within --empty-room-ttl (5 min), not --room-ttl; streams filled past --redis-stream-max-bytes keep at most the cap (+ per-entry slack); at most 5 keys left per room; a normal client served"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<(Link, u64), String> {
        let redis = cx
            .cfg
            .redis
            .ok_or("abandoned_rooms needs --redis (the server's Redis)")?;
        let mut link = open(redis)?;
        let keys = dbsize(&mut link)?;
        Ok((link, keys))
    }

    fn run(&self, cx: &Cx, (mut link, keys_before): (Link, u64)) -> Result<Left, String> {
        let cfg = cx.cfg;
        let per_maker = self.rooms.div_ceil(MAKERS);
        let (conns, failures) = crowd::each(MAKERS, |i| {
            let path = format!("/ws?room={}", ops::fresh_room("ar-home"));
            WsConn::open(cfg.target, cfg.source(i), &path, STEP)
        });
        let end = Instant::now() + STEP * 6;
        let heavy_rooms: Vec<String> = (0..self.heavy)
            .map(|_| ops::fresh_room("ar-heavy"))
            .collect();
        let (makers, heavy) = std::thread::scope(|scope| {
            let makers: Vec<_> = conns
                .into_iter()
                .map(|c| {
                    scope.spawn(move || ops::make_rooms(c, "ar", ROOMS_PER_SEC, per_maker, end))
                })
                .collect();
            let heavy: Vec<_> = heavy_rooms
                .iter()
                .enumerate()
                .map(|(k, room)| scope.spawn(move || self.fill(cfg, k, room)))
                .collect();
            (
                makers
                    .into_iter()
                    .filter_map(|t| t.join().ok())
                    .collect::<Vec<_>>(),
                heavy
                    .into_iter()
                    .filter_map(|t| t.join().ok())
                    .collect::<Vec<_>>(),
            )
        });
        let mut rooms: Vec<String> = makers.iter().flat_map(|m| m.names.clone()).collect();
        rooms.extend(heavy_rooms.iter().cloned());
        let leaves_seen = self.wait_for_leaves(&mut link, &rooms)?;
        let ttls = self.ttls(&mut link, &rooms)?;
        let mut streams = Vec::new();
        for h in &heavy {
            streams.push(self.stream(&mut link, &h.room, h.published)?);
        }
        let keys_after = dbsize(&mut link)?;
        Ok(Left {
            makers,
            failures,
            heavy,
            streams,
            ttls,
            keys_before,
            keys_after,
            leaves_seen,
            cap: crate::bus::STREAM_MAX_BYTES as u64,
        })
    }

    fn judge(&self, l: Left, _: &Seen) -> Judged {
        let empty_ms = self.bus.empty_ttl().as_millis() as i64;
        let room_ms = self.bus.room_ttl.as_millis() as i64;
        let mut frames = Frames::default();
        let mut made = 0u64;
        for m in &l.makers {
            made += m.names.len() as u64;
            frames.merge(m.frames.clone());
        }
        let joined = frames.acks_of("subscribed");
        let heavy_errors: u64 = l.heavy.iter().map(|h| h.frames.error_count()).sum();
        let heavy_back: u64 = l.heavy.iter().map(|h| h.frames.messages).sum();
        let short: Vec<String> = l
            .heavy
            .iter()
            .flat_map(|h| h.echoes.iter().enumerate())
            .filter(|(_, e)| **e < HEAVY_PUBLISHES as u64)
            .map(|(c, e)| format!("connection {c}: {e}"))
            .collect();
        let rooms = made + l.heavy.len() as u64;
        let key_limit = rooms * KEYS_PER_ROOM + NODE_KEYS;
        let added = l.keys_after.saturating_sub(l.keys_before);
        let streams_ok = l.streams.len() == self.heavy
            && l.streams.iter().all(|s| {
                s.published > l.cap
                    && s.body_bytes <= l.cap
                    && s.memory
                        .is_some_and(|m| m <= l.cap + stream_slack(s.entries))
            });
        let t = &l.ttls;
        let checks = vec![
            Check::new(
                "rooms_made",
                made as usize >= self.rooms && joined == made && frames.error_count() == 0,
                format!(
                    "{made} rooms made ({} asked), {joined} joined, errors: {}; connect failures: {}",
                    self.rooms,
                    client::tally_text(&frames.errors),
                    client::tally_text(&l.failures)
                ),
            ),
            Check::new(
                "heavy_filled",
                l.heavy.len() == self.heavy && heavy_errors == 0 && short.is_empty(),
                format!(
                    "{} heavy rooms, {heavy_back} publishes echoed, {heavy_errors} errors; short of echoes: {}",
                    l.heavy.len(),
                    if short.is_empty() { "none".to_string() } else { short.join(", ") }
                ),
            ),
            Check::new(
                "members_gone",
                l.leaves_seen && t.members_left == 0,
                format!("{} members hashes left after the leaves", t.members_left),
            ),
            Check::new(
                "empty_ttl",
                t.keys > 0 && t.persistent == 0 && t.too_long == 0 && t.max_ms <= empty_ms,
                format!(
                    "{} keys of {rooms} rooms: {} without TTL, {} over {} s; longest {:.0} s left (room TTL {} s)",
                    t.keys,
                    t.persistent,
                    t.too_long,
                    empty_ms / 1000,
                    t.max_ms as f64 / 1000.0,
                    room_ms / 1000
                ),
            ),
            Check::new(
                "stream_capped",
                streams_ok,
                l.streams
                    .iter()
                    .map(|s| {
                        format!(
                            "{:.1} MiB published, {} entries, bodies {:.2} MiB, memory {} (cap {:.0} MiB + {} KiB)",
                            s.published as f64 / 1048576.0,
                            s.entries,
                            s.body_bytes as f64 / 1048576.0,
                            s.memory.map_or("?".into(), |m| format!("{:.2} MiB", m as f64 / 1048576.0)),
                            l.cap as f64 / 1048576.0,
                            stream_slack(s.entries) / 1024
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Check::new(
                "keys_bounded",
                added <= key_limit,
                format!(
                    "Redis holds {} keys, {} before: +{added} (at most {KEYS_PER_ROOM} per room + {NODE_KEYS})",
                    l.keys_after, l.keys_before
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("rooms", rooms);
        raw.put("rooms_made", made);
        raw.put("ttls", t);
        raw.put("empty_room_ttl_ms", empty_ms);
        raw.put("streams", &l.streams);
        raw.put(
            "heavy_echoes",
            l.heavy.iter().map(|h| &h.echoes).collect::<Vec<_>>(),
        );
        raw.put("keys_before", l.keys_before);
        raw.put("keys_after", l.keys_after);
        let summary = format!(
            "{rooms} rooms made and left: {} keys, {} without TTL, longest {:.0} s left; streams: {}; Redis keys +{added}",
            t.keys,
            t.persistent,
            t.max_ms as f64 / 1000.0,
            l.streams
                .iter()
                .map(|s| format!(
                    "{} entries {:.2} MiB",
                    s.entries,
                    s.body_bytes as f64 / 1048576.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

impl AbandonedRooms {
    /// Fills `room` by `heavy_conns` connections in turn, each publishing its byte burst
    /// and leaving once its echoes are back (or after [`ECHO_WAIT`]).
    fn fill(&self, cfg: &AbuseConfig, k: usize, room: &str) -> Heavy {
        let mut h = Heavy {
            room: room.to_string(),
            published: 0,
            echoes: Vec::new(),
            frames: Frames::default(),
        };
        let op = ops::publish(room, &Value::String("h".repeat(HEAVY_DATA)));
        for c in 0..self.heavy_conns {
            let path = format!("/ws?room={room}");
            let Ok(mut conn) = WsConn::open(cfg.target, cfg.source(k + c), &path, STEP) else {
                client::count(&mut h.frames.errors, "connect_failed");
                continue;
            };
            let before = h.frames.messages;
            for _ in 0..HEAVY_PUBLISHES {
                if conn.send_text(&op).is_ok() {
                    h.published += HEAVY_DATA as u64;
                }
            }
            let want = before + HEAVY_PUBLISHES as u64;
            ops::read_for(&mut conn, Instant::now() + ECHO_WAIT, &mut h.frames, |f| {
                f.messages >= want || f.error_count() > 0
            });
            h.echoes.push(h.frames.messages - before);
            client::abort(conn.stream);
        }
        h
    }

    /// Waits until no room has a members hash left in Redis (every leave applied).
    fn wait_for_leaves(&self, link: &mut Link, rooms: &[String]) -> Result<bool, String> {
        let deadline = Instant::now() + STEP;
        loop {
            let cmds = rooms.iter().map(|r| {
                let mut c = redis::cmd("EXISTS");
                c.arg(self.bus.members_key(r));
                c
            });
            let left: Vec<u64> = link.pipeline(cmds).map_err(|e| format!("redis: {e}"))?;
            if left.iter().all(|&n| n == 0) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TTLs of every key of `rooms`.
    fn ttls(&self, link: &mut Link, rooms: &[String]) -> Result<Ttls, String> {
        let empty_ms = self.bus.empty_ttl().as_millis() as i64;
        let mut t = Ttls::default();
        for chunk in rooms.chunks(100) {
            let keys: Vec<(bool, String)> = chunk
                .iter()
                .flat_map(|r| {
                    let mut k: Vec<(bool, String)> = self
                        .bus
                        .room_keys(r)
                        .into_iter()
                        .map(|k| (false, k))
                        .collect();
                    k.push((false, self.bus.presence_version_key(r)));
                    k.push((true, self.bus.members_key(r)));
                    k
                })
                .collect();
            let cmds = keys.iter().map(|(_, k)| {
                let mut c = redis::cmd("PTTL");
                c.arg(k);
                c
            });
            let ttls: Vec<i64> = link.pipeline(cmds).map_err(|e| format!("redis: {e}"))?;
            for ((members, _), ms) in keys.iter().zip(ttls) {
                match ms {
                    -2 => continue,
                    -1 => t.persistent += 1,
                    ms if ms > empty_ms => t.too_long += 1,
                    _ => {}
                }
                t.keys += 1;
                t.members_left += u64::from(*members);
                t.max_ms = t.max_ms.max(ms);
            }
        }
        Ok(t)
    }

    /// What `room`'s stream holds.
    fn stream(&self, link: &mut Link, room: &str, published: u64) -> Result<Stream, String> {
        let key = self.bus.stream_key(room);
        let entries: Vec<(String, Vec<Vec<u8>>)> =
            query(link, redis::cmd("XRANGE").arg(&key).arg("-").arg("+"))?;
        // Each entry is one field, `m`, and its body.
        let body_bytes = entries
            .iter()
            .map(|(_, f)| f.get(1).map_or(0, |b| b.len() as u64))
            .sum();
        let memory: Option<u64> = query(
            link,
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0),
        )?;
        Ok(Stream {
            room: room.to_string(),
            published,
            entries: entries.len() as u64,
            body_bytes,
            memory,
        })
    }
}

/// A connection to the Redis at `addr`.
fn open(addr: SocketAddr) -> Result<Link, String> {
    Link::open(&format!("redis://{addr}"), REDIS_TIMEOUT).map_err(|e| format!("redis {addr}: {e}"))
}

/// Runs one command.
fn query<T: redis::FromRedisValue>(link: &mut Link, cmd: &Cmd) -> Result<T, String> {
    cmd.query(link.conn()).map_err(|e| format!("redis: {e}"))
}

/// The number of keys in the database.
fn dbsize(link: &mut Link) -> Result<u64, String> {
    query(link, &redis::cmd("DBSIZE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slack_grows_with_the_entries() {
        assert_eq!(stream_slack(0), 16 * 1024);
        assert_eq!(stream_slack(300), 300 * 1024 + 16 * 1024);
    }

    #[test]
    fn a_heavy_connection_stays_within_its_burst() {
        let d = crate::config::ServerConfig::default();
        let op = ops::publish(
            &ops::fresh_room("ar-heavy"),
            &Value::String("h".repeat(HEAVY_DATA)),
        );
        assert!(
            op.len() * HEAVY_PUBLISHES <= d.publish_byte_burst,
            "{}",
            op.len()
        );
        assert!(HEAVY_PUBLISHES as u32 <= d.publish_burst);
        // 24 connections' bodies are past the default stream cap.
        assert!((24 * HEAVY_PUBLISHES * HEAVY_DATA) as u64 > crate::bus::STREAM_MAX_BYTES as u64);
    }
}
