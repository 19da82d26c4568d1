//! The subscriber on a Redis Cluster: sharded Pub/Sub, one connection per master.
//!
//! A topic's messages are `SPUBLISH`ed on the master that owns its slot (the `{topic}` hash
//! tag), and only that master's sharded subscribers receive them. So the subscriber reads
//! the slot map (`CLUSTER SLOTS`), runs one scoped thread per master, and each follows the
//! node's interest for the topics of its slots, one `SSUBSCRIBE` per channel (a command's
//! channels must share a slot). A thread's socket is its own; what arrives goes through the
//! subscriber's own `forward`, so both modes hand the mixer the same messages.
//!
//! The slot map is checked every [`TOPOLOGY_CHECK`], and a master that stops serving a
//! channel's slot (a failover, a resharding) unsubscribes us with `sunsubscribe` or answers
//! `MOVED`: either way every thread stops and the subscriber starts again on the new map.
//! Right after a failover, the node that answers `CLUSTER SLOTS` may not have heard of it
//! yet and still name the old master, now a replica. A replica accepts `SSUBSCRIBE` and
//! even forwards the messages it replicates, so that mistake would go unnoticed until the
//! replica goes away: each thread therefore asks its server's `ROLE` before subscribing,
//! and a map that names a replica as a master is stale: the subscriber starts again, after
//! a short pause, until the map it reads is the new one.
//! Messages published while it changes reach live clients only through a resume (their seq
//! shows the gap); the README says so.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use redis::{IntoConnectionInfo, RedisResult, Value};

use super::{BusSubscriber, COMMAND_TIMEOUT, POLL};
use crate::bus::link::{Link, SlotRange, slot};

/// How often the slot map is compared with the one the threads follow.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(1);
/// How long to wait before reading again a slot map that named a replica as a master.
const STALE_PAUSE: Duration = Duration::from_millis(100);

/// One master and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Master {
    /// `host:port`.
    addr: String,
    ranges: Vec<(u16, u16)>,
}

impl Master {
    fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// The masters of a slot map, in address order.
fn masters(ranges: &[SlotRange]) -> Vec<Master> {
    let mut by_addr: BTreeMap<&str, Vec<(u16, u16)>> = BTreeMap::new();
    for r in ranges {
        by_addr
            .entry(r.master.as_str())
            .or_default()
            .push((r.start, r.end));
    }
    by_addr
        .into_iter()
        .map(|(addr, mut ranges)| {
            ranges.sort_unstable();
            Master {
                addr: addr.trim_start_matches("redis://").to_string(),
                ranges,
            }
        })
        .collect()
}

/// Why a master's thread stopped.
enum Ended {
    /// The node is stopping, or the subscriber is starting over.
    Asked,
    /// The slot map changed under it (`MOVED`, or an `sunsubscribe` it did not ask for).
    Moved(String),
    /// The map named as a master a server that is not one (it was read from a node that
    /// had not yet heard of a failover).
    Stale(String),
    /// Its connection failed.
    Failed(redis::RedisError),
}

impl BusSubscriber {
    /// Follows interest on every master of the cluster `link` is connected to, until the
    /// node stops (`Ok`), the slot map changes (`Ok`: the caller starts again) or the
    /// cluster cannot be read (`Err`).
    pub(super) fn serve_cluster(&self, link: &mut Link) -> RedisResult<()> {
        let map = link.masters()?;
        let masters = masters(&map);
        if masters.is_empty() {
            return Err(io::Error::other("the cluster serves no slot").into());
        }
        log::info!(
            "redis subscriber: sharded Pub/Sub on {} masters ({})",
            masters.len(),
            masters
                .iter()
                .map(|m| m.addr.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let quit = AtomicBool::new(false);
        let applied: Vec<AtomicU64> = masters.iter().map(|_| AtomicU64::new(0)).collect();
        let (ended_tx, ended) = crossbeam_channel::bounded::<Ended>(masters.len());
        let mut result = Ok(());
        let mut stale = false;
        std::thread::scope(|s| {
            for (i, master) in masters.iter().enumerate() {
                let (quit, applied, ended_tx) = (&quit, &applied, ended_tx.clone());
                std::thread::Builder::new()
                    .name(format!("tickcast-sub-{i}"))
                    .spawn_scoped(s, move || {
                        let why = self.follow_master(master, i, applied, quit);
                        let _ = ended_tx.send(why);
                    })
                    .map_err(|e| log::error!("cannot start a subscriber thread: {e}"))
                    .ok();
            }
            drop(ended_tx);
            self.state.set_subscriber(true);
            let mut next_check = Instant::now() + TOPOLOGY_CHECK;
            loop {
                match ended.recv_timeout(POLL) {
                    Ok(Ended::Asked) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Ended::Moved(why)) => {
                        log::info!("redis subscriber: the slot map changed ({why})");
                        break;
                    }
                    Ok(Ended::Stale(why)) => {
                        log::info!(
                            "redis subscriber: the slot map is stale ({why}); reading it again"
                        );
                        self.metrics.stale_slot_maps.inc();
                        stale = true;
                        break;
                    }
                    Ok(Ended::Failed(e)) => {
                        log::warn!("redis subscriber lost a master ({e}); starting over");
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
                if self.stopping() {
                    break;
                }
                if Instant::now() >= next_check {
                    next_check = Instant::now() + TOPOLOGY_CHECK;
                    match link.masters() {
                        Ok(now) if self::masters(&now) == masters => {}
                        Ok(_) => {
                            log::info!("redis subscriber: the slot map changed");
                            break;
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
            quit.store(true, Ordering::Release);
        });
        self.state.set_subscriber(false);
        if stale {
            // Give the cluster's gossip a moment before the map is read again.
            let mut pause = STALE_PAUSE;
            super::back_off(&mut pause, || self.stopping());
        }
        result
    }

    /// One master's thread: subscribes to the wanted channels of its slots and forwards
    /// their messages. `applied[me]` is the interest version it has subscribed; the node's
    /// applied version is the least of all.
    fn follow_master(
        &self,
        master: &Master,
        me: usize,
        applied: &[AtomicU64],
        quit: &AtomicBool,
    ) -> Ended {
        let mut conn = match ShardConn::open(&self.cfg.url, &master.addr) {
            Ok(c) => c,
            Err(e) => return Ended::Failed(e),
        };
        // Checked once, before the connection enters subscribed mode (where `ROLE` is not
        // allowed): a demoted master after that unsubscribes us or shows in the slot map.
        match conn.role() {
            Ok(role) if role == "master" => {}
            Ok(role) => return Ended::Stale(format!("{} is a {role}", master.addr)),
            Err(e) => return Ended::Failed(e),
        }
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
        let mut version = None;
        loop {
            if quit.load(Ordering::Acquire) || self.stopping() {
                return Ended::Asked;
            }
            if version != Some(self.interest.version()) {
                let snap = self.interest.snapshot();
                if snap.wildcard {
                    log::debug!(
                        "redis subscriber: `*` on a Redis Cluster follows the named topics only"
                    );
                }
                let wanted: BTreeSet<String> = snap
                    .topics
                    .iter()
                    .filter(|t| self.cfg.carries(t) && master.serves(slot(t)))
                    .map(|t| self.cfg.channel(t))
                    .collect();
                if let Err(why) = self.resubscribe(&mut conn, &subscribed, &wanted) {
                    return why;
                }
                subscribed = wanted;
                version = Some(snap.version);
                applied[me].store(snap.version, Ordering::Release);
                let least = applied.iter().map(|a| a.load(Ordering::Acquire)).min();
                self.state.set_applied_interest(least.unwrap_or(0));
            }
            match conn.next(POLL) {
                Ok(Some(v)) => {
                    if let Err(why) = self.on_push(v, &subscribed) {
                        return why;
                    }
                }
                Ok(None) => {}
                Err(e) => return Ended::Failed(e),
            }
        }
    }

    /// Subscribes to what is `wanted` and not yet `now`, unsubscribes from the rest, and
    /// waits for every confirmation (forwarding the messages that come first).
    fn resubscribe(
        &self,
        conn: &mut ShardConn,
        now: &BTreeSet<String>,
        wanted: &BTreeSet<String>,
    ) -> Result<(), Ended> {
        let mut awaited = 0;
        for ch in wanted.difference(now) {
            conn.send(redis::cmd("SSUBSCRIBE").arg(ch))
                .map_err(Ended::Failed)?;
            awaited += 1;
        }
        for ch in now.difference(wanted) {
            conn.send(redis::cmd("SUNSUBSCRIBE").arg(ch))
                .map_err(Ended::Failed)?;
            awaited += 1;
        }
        let until = Instant::now() + COMMAND_TIMEOUT;
        while awaited > 0 {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return Err(Ended::Failed(
                    io::Error::new(io::ErrorKind::TimedOut, "no SSUBSCRIBE reply").into(),
                ));
            };
            match conn.next(left) {
                Ok(Some(v)) => match push_kind(&v) {
                    Some("ssubscribe" | "sunsubscribe") => awaited -= 1,
                    _ => self.on_push(v, wanted)?,
                },
                Ok(None) => {}
                Err(e) => return Err(Ended::Failed(e)),
            }
        }
        Ok(())
    }

    /// One value read outside a (un)subscription: a message to forward, or a sign that the
    /// slot map changed.
    fn on_push(&self, v: Value, subscribed: &BTreeSet<String>) -> Result<(), Ended> {
        if let Value::ServerError(e) = &v {
            return Err(Ended::Moved(format!("{e:?}")));
        }
        let Value::Array(parts) = v else {
            return Ok(());
        };
        match (parts.first(), parts.get(1), parts.get(2)) {
            (Some(kind), Some(Value::BulkString(ch)), Some(Value::BulkString(payload)))
                if bulk(kind) == Some("smessage") =>
            {
                if let Ok(ch) = std::str::from_utf8(ch) {
                    self.forward(ch, payload);
                }
                Ok(())
            }
            (Some(kind), Some(Value::BulkString(ch)), _) if bulk(kind) == Some("sunsubscribe") => {
                let ch = String::from_utf8_lossy(ch);
                if subscribed.contains(ch.as_ref()) {
                    return Err(Ended::Moved(format!("{ch} unsubscribed by the server")));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The kind of a Pub/Sub reply (`["ssubscribe", channel, count]`).
fn push_kind(v: &Value) -> Option<&str> {
    match v {
        Value::Array(parts) => parts.first().and_then(bulk),
        _ => None,
    }
}

fn bulk(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// A subscriber's connection to one master: its own socket, read with a timeout by the
/// redis crate's resumable parser (a value cut by the timeout is finished by the next read).
struct ShardConn {
    stream: TcpStream,
    parser: redis::Parser,
}

impl ShardConn {
    /// Connects to `addr` with the credentials of `url` (the cluster's masters share them).
    fn open(url: &str, addr: &str) -> RedisResult<ShardConn> {
        let info = url.into_connection_info()?;
        let sock = addr
            .parse()
            .map_err(|_| io::Error::other(format!("bad master address {addr}")))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        let mut conn = ShardConn {
            stream,
            parser: redis::Parser::new(),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            conn.send(&auth)?;
            match conn.next(COMMAND_TIMEOUT)? {
                Some(Value::Okay) | Some(Value::SimpleString(_)) => {}
                other => {
                    return Err(io::Error::other(format!("AUTH refused: {other:?}")).into());
                }
            }
        }
        Ok(conn)
    }

    /// The server's `ROLE`: `master`, `slave` or `sentinel`.
    fn role(&mut self) -> RedisResult<String> {
        self.send(&redis::cmd("ROLE"))?;
        match self.next(COMMAND_TIMEOUT)? {
            Some(Value::Array(parts)) => match parts.first().and_then(bulk) {
                Some(role) => Ok(role.to_string()),
                None => Err(io::Error::other("ROLE: no role in the reply").into()),
            },
            Some(Value::ServerError(e)) => Err(io::Error::other(format!(
                "ROLE refused: {}",
                e.details().unwrap_or("no details")
            ))
            .into()),
            Some(_) => Err(io::Error::other("ROLE: an unexpected reply").into()),
            None => Err(io::Error::new(io::ErrorKind::TimedOut, "no ROLE reply").into()),
        }
    }

    fn send(&mut self, cmd: &redis::Cmd) -> RedisResult<()> {
        self.stream.write_all(&cmd.get_packed_command())?;
        Ok(())
    }

    /// The next value, or `None` when none completed within `wait`.
    fn next(&mut self, wait: Duration) -> RedisResult<Option<Value>> {
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.parser.parse_value(&mut self.stream) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_group_the_slot_map_by_address() {
        let range = |start, end, master: &str| SlotRange {
            start,
            end,
            master: master.into(),
        };
        let map = [
            range(5461, 10922, "redis://127.0.0.1:7001"),
            range(0, 5460, "redis://127.0.0.1:7000"),
            range(10923, 16383, "redis://127.0.0.1:7000"),
        ];
        let got = masters(&map);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].addr, "127.0.0.1:7000");
        assert_eq!(got[0].ranges, vec![(0, 5460), (10923, 16383)]);
        assert!(got[0].serves(0) && got[0].serves(16383) && !got[0].serves(5461));
        assert!(got[1].serves(5461) && got[1].serves(10922) && !got[1].serves(10923));
    }
}
