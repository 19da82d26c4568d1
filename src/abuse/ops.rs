//! The client protocol as the room scenarios speak it over a blocking [`WsConn`]: the
//! operations (`subscribe`, `unsubscribe`, `publish`, `resume`) written as JSON, the server's
//! frames sorted into what those scenarios count ([`Frames`]: acks, error codes, room
//! messages, presence snapshots and deltas, resets), a read that sorts frames until a
//! deadline ([`read_until`]), and a [`Pacer`] that keeps a client under its rate limit.
//!
//! `label_churn`, `history_fill`, `presence_churn` and `abandoned_rooms` all open rooms,
//! publish and leave; the framing, the sorting and the pacing are written once here.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::client::{self, Ending, Next, Tally, WsConn};
use super::member;

/// `{"op":"subscribe","topics":[...]}`.
pub fn subscribe<S: AsRef<str>>(topics: &[S]) -> String {
    let topics: Vec<&str> = topics.iter().map(AsRef::as_ref).collect();
    json!({"op": "subscribe", "topics": topics}).to_string()
}

/// `{"op":"unsubscribe","topics":[...]}`.
pub fn unsubscribe<S: AsRef<str>>(topics: &[S]) -> String {
    let topics: Vec<&str> = topics.iter().map(AsRef::as_ref).collect();
    json!({"op": "unsubscribe", "topics": topics}).to_string()
}

/// `{"op":"publish","topic":..,"data":..}`.
pub fn publish(topic: &str, data: &Value) -> String {
    json!({"op": "publish", "topic": topic, "data": data}).to_string()
}

/// `{"op":"resume","since":{topic: seq}}`.
pub fn resume(topic: &str, seq: u64) -> String {
    let mut since = serde_json::Map::new();
    since.insert(topic.to_string(), seq.into());
    json!({"op": "resume", "since": since}).to_string()
}

/// A room name no one else uses: `room.<tag>.<16 random hex digits>`.
pub fn fresh_room(tag: &str) -> String {
    format!("room.{tag}.{:016x}", fastrand::u64(..))
}

/// A `reset` the server sent: the topic, `oldest` and `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reset {
    /// The topic.
    pub topic: String,
    /// The first seq still kept.
    pub oldest: u64,
    /// The topic's last seq.
    pub latest: u64,
}

/// A presence snapshot the server sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The room.
    pub topic: String,
    /// Its member count.
    pub count: u64,
    /// Members listed (`None`: no `members` field, a count-only snapshot).
    pub listed: Option<u64>,
    /// The frame's payload bytes.
    pub bytes: u64,
    /// When it arrived.
    #[serde(skip)]
    pub at: Option<Instant>,
}

/// The server's frames on one connection, sorted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Frames {
    /// `subscribed` and `unsubscribed` replies, and the `welcome`.
    pub acks: Tally,
    /// Error frames by code.
    pub errors: Tally,
    /// Data messages (`{"topic":..,"seq":..}`) received.
    pub messages: u64,
    /// Their payload bytes.
    pub message_bytes: u64,
    /// Presence deltas (`join`, `leave`, `nick`, `count`).
    pub deltas: u64,
    /// Presence snapshots, in arrival order (only their figures).
    pub snapshots: Vec<Snapshot>,
    /// Resets, in arrival order.
    pub resets: Vec<Reset>,
    /// Anything else.
    pub other: u64,
}

impl Frames {
    /// Sorts one text frame's payload.
    pub fn add(&mut self, payload: &[u8]) {
        if let Some(code) = member::error_code(payload) {
            client::count(&mut self.errors, code);
            return;
        }
        // Data messages begin with their topic; only the server's events are parsed
        // (a history fill's messages are 60 KB each).
        if payload.starts_with(b"{\"topic\":") {
            self.messages += 1;
            self.message_bytes += payload.len() as u64;
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            self.other += 1;
            return;
        };
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        match (v["type"].as_str(), v["event"].as_str()) {
            (Some("subscribed" | "unsubscribed" | "welcome"), _) => {
                client::count(&mut self.acks, text("type"));
            }
            (Some("presence"), Some("snapshot")) => self.snapshots.push(Snapshot {
                topic: text("topic"),
                count: v["count"].as_u64().unwrap_or(0),
                listed: v["members"].as_array().map(|m| m.len() as u64),
                bytes: payload.len() as u64,
                at: Some(Instant::now()),
            }),
            (Some("presence"), _) => self.deltas += 1,
            (Some("reset"), _) => self.resets.push(Reset {
                topic: text("topic"),
                oldest: v["oldest"].as_u64().unwrap_or(0),
                latest: v["latest"].as_u64().unwrap_or(0),
            }),
            _ => self.other += 1,
        }
    }

    /// Replies of kind `kind` (`subscribed`, ...) received.
    pub fn acks_of(&self, kind: &str) -> u64 {
        self.acks.get(kind).copied().unwrap_or(0)
    }

    /// Error frames of `code` received.
    pub fn errors_of(&self, code: &str) -> u64 {
        self.errors.get(code).copied().unwrap_or(0)
    }

    /// Error frames received, all codes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Frames) {
        for (k, v) in other.acks {
            *self.acks.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.messages += other.messages;
        self.message_bytes += other.message_bytes;
        self.deltas += other.deltas;
        self.snapshots.extend(other.snapshots);
        self.resets.extend(other.resets);
        self.other += other.other;
    }
}

/// Reads and sorts `conn`'s frames until `deadline`; `Some(ending)` if the stream ended
/// (the server closed it, or reset it) before.
pub fn read_until(conn: &mut WsConn, deadline: Instant, frames: &mut Frames) -> Option<Ending> {
    loop {
        match conn.next(deadline) {
            Next::Frame(f) if f.opcode == client::op::TEXT => frames.add(&f.payload),
            Next::Frame(_) => {}
            Next::End(Ending::Timeout) => return None,
            Next::End(end) => return Some(end),
        }
    }
}

/// Reads and sorts `conn`'s frames until `done(frames)` holds (true) or `deadline` passes,
/// or the stream ends (false either way).
pub fn read_for(
    conn: &mut WsConn,
    deadline: Instant,
    frames: &mut Frames,
    done: impl Fn(&Frames) -> bool,
) -> bool {
    while !done(frames) {
        match conn.next(deadline) {
            Next::Frame(f) if f.opcode == client::op::TEXT => frames.add(&f.payload),
            Next::Frame(_) => {}
            Next::End(_) => return false,
        }
    }
    true
}

/// One room maker's run (see [`make_rooms`]).
pub struct Maker {
    /// Rooms it asked for, by name.
    pub names: Vec<String>,
    /// What the server sent it.
    pub frames: Frames,
    /// How the server ended it, if it did.
    pub ending: Option<Ending>,
}

/// How long the replies to a maker's last room are waited for.
const MAKER_TAIL: Duration = Duration::from_millis(500);

/// One client making short-lived rooms `room.<tag>.<random>`: at each beat of
/// `rooms_per_sec`, subscribe, publish one message, unsubscribe (three messages of its rate
/// limit), reading the replies between beats; at most `limit` rooms, none after `end`. Then
/// the last replies are read and the socket is reset.
pub fn make_rooms(
    mut conn: WsConn,
    tag: &str,
    rooms_per_sec: f64,
    limit: usize,
    end: Instant,
) -> Maker {
    let mut pacer = Pacer::new(rooms_per_sec);
    let mut maker = Maker {
        names: Vec::new(),
        frames: Frames::default(),
        ending: None,
    };
    while maker.names.len() < limit {
        // The replies are read while waiting for the next beat.
        let due = pacer.next_due();
        if due >= end {
            break;
        }
        maker.ending = read_until(&mut conn, due, &mut maker.frames);
        if maker.ending.is_some() {
            break;
        }
        let room = fresh_room(tag);
        let cycle = [
            subscribe(&[&room]),
            publish(&room, &json!({ "n": maker.names.len() })),
            unsubscribe(&[&room]),
        ];
        maker.names.push(room);
        if cycle.iter().any(|op| conn.send_text(op).is_err()) {
            maker.ending = Some(Ending::Reset);
            break;
        }
    }
    if maker.ending.is_none() {
        let wanted = maker.names.len() as u64;
        read_for(
            &mut conn,
            Instant::now() + MAKER_TAIL,
            &mut maker.frames,
            |f| f.acks_of("unsubscribed") >= wanted,
        );
    }
    client::abort(conn.stream);
    maker
}

/// Times a client's messages at a steady rate: the `k`-th is due `k / rate` seconds after
/// the start, so a late one does not shift the ones after it and the average holds.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    every: Duration,
    sent: u32,
}

impl Pacer {
    /// `rate` messages a second from now (at least one a minute).
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            start: Instant::now(),
            every: Duration::from_secs_f64(1.0 / rate.max(1.0 / 60.0)),
            sent: 0,
        }
    }

    /// When the next message is due; counts it as sent.
    pub fn next_due(&mut self) -> Instant {
        let due = self.start + self.every * self.sent;
        self.sent += 1;
        due
    }
}

/// The most message tokens a connection may spend in `secs` seconds of its life under a
/// token bucket of `rate` a second and `burst`: the burst it starts with and the refill.
pub fn token_bound(rate: f64, burst: f64, secs: f64) -> f64 {
    burst + rate * secs.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_the_protocol_s_json() {
        let v: Value = serde_json::from_str(&subscribe(&["room.a", "room.b"])).unwrap();
        assert_eq!(v, json!({"op":"subscribe","topics":["room.a","room.b"]}));
        let v: Value = serde_json::from_str(&unsubscribe(&["room.a"])).unwrap();
        assert_eq!(v["op"], "unsubscribe");
        let v: Value = serde_json::from_str(&publish("room.a", &json!({"n":1}))).unwrap();
        assert_eq!(v["data"]["n"], 1);
        let v: Value = serde_json::from_str(&resume("room.a", 0)).unwrap();
        assert_eq!(v, json!({"op":"resume","since":{"room.a":0}}));
        let a = fresh_room("lc");
        assert!(
            a.starts_with("room.lc.") && a.len() == "room.lc.".len() + 16,
            "{a}"
        );
        assert_ne!(a, fresh_room("lc"));
    }

    #[test]
    fn frames_are_sorted_by_kind() {
        let mut f = Frames::default();
        f.add(br#"{"type":"welcome","shard":0,"client_id":"c","topics":[]}"#);
        f.add(br#"{"type":"subscribed","topics":["room.a"]}"#);
        f.add(br#"{"type":"error","code":"rate_limited","message":"slow down"}"#);
        f.add(br#"{"topic":"room.a","seq":1,"ts":1,"data":{}}"#);
        f.add(br#"{"type":"presence","topic":"room.a","event":"snapshot","count":2,"members":[{"client_id":"a"},{"client_id":"b"}]}"#);
        f.add(br#"{"type":"presence","topic":"room.a","event":"snapshot","count":2,"truncated":true}"#);
        f.add(br#"{"type":"presence","topic":"room.a","event":"join","client_id":"b","count":3}"#);
        f.add(br#"{"type":"reset","topic":"room.a","oldest":17,"latest":21}"#);
        f.add(b"not json");
        assert_eq!(f.acks_of("subscribed"), 1);
        assert_eq!(f.acks_of("welcome"), 1);
        assert_eq!(f.errors_of("rate_limited"), 1);
        assert_eq!(f.messages, 1);
        assert_eq!(f.snapshots.len(), 2);
        assert_eq!(f.snapshots[0].listed, Some(2));
        assert_eq!(f.snapshots[1].listed, None, "count only");
        assert_eq!(f.deltas, 1);
        let reset = Reset {
            topic: "room.a".into(),
            oldest: 17,
            latest: 21,
        };
        assert_eq!(f.resets, vec![reset]);
        assert_eq!(f.other, 1);
        let mut g = Frames::default();
        g.merge(f.clone());
        g.merge(f);
        assert_eq!(g.error_count(), 2);
        assert_eq!(g.snapshots.len(), 4);
    }

    #[test]
    fn the_pacer_keeps_the_average() {
        let mut p = Pacer::new(10.0);
        let first = p.next_due();
        let _ = p.next_due();
        let third = p.next_due();
        assert_eq!(third - first, Duration::from_millis(200));
        assert_eq!(token_bound(100.0, 200.0, 2.0), 400.0);
        assert_eq!(token_bound(100.0, 200.0, -1.0), 200.0);
    }
}
