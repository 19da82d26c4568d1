//! One connection to Redis for the bus threads, to a single server or to a Redis Cluster.
//!
//! `--redis` names one address. When that server answers that cluster support is on, the
//! threads use the redis crate's (blocking) cluster client, which routes every command and
//! script by the slot of its first key and follows the cluster through failovers; a topic's
//! keys and channel share one slot (the `{topic}` hash tag), so each script runs on the
//! master that owns the topic. Messages then travel by sharded Pub/Sub (`SPUBLISH` inside
//! the scripts, `SSUBSCRIBE` on the master of each channel's slot), so each message crosses
//! one shard of the cluster instead of every node.

use std::time::Duration;

use redis::{Cmd, ConnectionLike, FromRedisValue, RedisResult};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to a single Redis or to a Redis Cluster.
pub enum Link {
    /// One server: classic Pub/Sub.
    Single(redis::Connection),
    /// A cluster: sharded Pub/Sub.
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Link {
    /// Connects to `url`, and to the whole cluster when the server is one of a cluster's.
    /// `timeout` bounds every later command.
    pub fn open(url: &str, timeout: Duration) -> RedisResult<Link> {
        let client = redis::Client::open(url)?;
        let mut single = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        single.set_read_timeout(Some(timeout))?;
        single.set_write_timeout(Some(timeout))?;
        if !is_cluster(&mut single)? {
            return Ok(Link::Single(single));
        }
        let cluster = redis::cluster::ClusterClientBuilder::new(vec![url])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(timeout)
            .build()?
            .get_connection()?;
        Ok(Link::Cluster(Box::new(cluster)))
    }

    /// [`Link::open`], or `None` with the failure logged as `what`'s (at debug level: the
    /// caller retries).
    pub fn try_open(url: &str, timeout: Duration, what: &str) -> Option<Link> {
        Link::open(url, timeout)
            .map_err(|e| {
                log::debug!(
                    "redis {what}: cannot connect to {}: {e}",
                    super::redacted(url)
                )
            })
            .ok()
    }

    /// The connection to send commands and scripts on.
    pub fn conn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Link::Single(c) => c,
            Link::Cluster(c) => c.as_mut(),
        }
    }

    /// Sends `cmds` in one round trip (one per master on a cluster, each master's in order)
    /// and returns their replies in order; an error reply fails the call. (The generic
    /// pipeline does not run on a cluster connection: it needs the cluster's own.)
    pub fn pipeline<T: FromRedisValue>(
        &mut self,
        cmds: impl IntoIterator<Item = Cmd>,
    ) -> RedisResult<T> {
        match self {
            Link::Single(c) => {
                let mut pipe = redis::pipe();
                cmds.into_iter().for_each(|cmd| {
                    pipe.add_command(cmd);
                });
                pipe.query(c)
            }
            Link::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                cmds.into_iter().for_each(|cmd| {
                    pipe.add_command(cmd);
                });
                pipe.query(c.as_mut())
            }
        }
    }

    /// The publish command the scripts use: `PUBLISH`, or `SPUBLISH` on a cluster.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Link::Single(_) => "PUBLISH",
            Link::Cluster(_) => "SPUBLISH",
        }
    }

    /// On a cluster: every slot range with the address of the master that serves it.
    pub fn masters(&mut self) -> RedisResult<Vec<SlotRange>> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(self.conn())?;
        Ok(ranges.iter().filter_map(SlotRange::parse).collect())
    }
}

/// Whether the server has cluster support on (`INFO cluster`).
fn is_cluster(c: &mut redis::Connection) -> RedisResult<bool> {
    let info: String = redis::cmd("INFO").arg("cluster").query(c)?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

/// A range of slots and the address (`redis://host:port`) of its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot.
    pub start: u16,
    /// Last slot.
    pub end: u16,
    /// Its master's address.
    pub master: String,
}

impl SlotRange {
    /// One entry of `CLUSTER SLOTS`: `[start, end, [host, port, id, ...], replicas...]`.
    fn parse(v: &redis::Value) -> Option<SlotRange> {
        use redis::Value;
        let Value::Array(parts) = v else {
            return None;
        };
        let int = |v: &Value| match v {
            Value::Int(n) => u16::try_from(*n).ok(),
            _ => None,
        };
        let (start, end) = (int(parts.first()?)?, int(parts.get(1)?)?);
        let Value::Array(master) = parts.get(2)? else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Int(port) = master.get(1)? else {
            return None;
        };
        Some(SlotRange {
            start,
            end,
            master: format!("redis://{host}:{port}"),
        })
    }
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first
/// `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster() {
        // The CRC16 check value, and slots as `CLUSTER KEYSLOT` gives them.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        // A hash tag decides alone; an empty one does not count.
        assert_eq!(slot("t:{room.a}:seq"), slot("room.a"));
        assert_eq!(slot("t:{room.a}:stream"), slot("x{room.a}"));
        assert_eq!(slot("a{}b"), crc16_xmodem(b"a{}b") % 16384);
    }

    #[test]
    fn slot_ranges_parse() {
        use redis::Value;
        let entry = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(7000),
                Value::BulkString(b"id".to_vec()),
            ]),
        ]);
        assert_eq!(
            SlotRange::parse(&entry),
            Some(SlotRange {
                start: 0,
                end: 5460,
                master: "redis://127.0.0.1:7000".into()
            })
        );
    }
}
