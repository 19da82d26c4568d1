//! Room membership and presence, kept by the mixer because it is the one place that sees
//! every shard's joins and leaves in one order.
//!
//! A member is one connection ([`ConnRef`]); `count` is the number of connections in the
//! room. Each change yields one small delta for the room's members, never the full list
//! (which would be quadratic in the room size); a newcomer gets one snapshot. Above
//! `--presence-list-max` members, deltas and lists give way to the count alone, sent at most
//! once per [`COUNT_EVERY`] while it changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::frame::FrameBytes;
use crate::messages::ConnRef;
use crate::protocol::replies::{self, MemberView, PresenceEvent};

/// How often a large room's changed count is announced.
pub const COUNT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Member {
    client_id: Arc<str>,
    nick: Option<Arc<str>>,
}

impl Member {
    fn view(&self) -> MemberView<'_> {
        MemberView {
            client_id: &self.client_id,
            nick: self.nick.as_deref(),
        }
    }
}

#[derive(Debug, Default)]
struct Room {
    members: IndexMap<ConnRef, Member>,
    /// A large room's count changed since it was last announced.
    count_dirty: bool,
}

impl Room {
    /// The member list as `kind` (`snapshot` or `who`): names up to `list_max` members, the
    /// count alone above.
    fn list(&self, kind: &'static str, room: &str, list_max: usize) -> FrameBytes {
        let count = self.members.len();
        if count <= list_max {
            let views: Vec<MemberView<'_>> = self.members.values().map(Member::view).collect();
            replies::member_list(kind, room, Some(&views), count)
        } else {
            replies::member_list(kind, room, None, count)
        }
    }
}

/// What a membership change asks the mixer to send.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Frames for every member of the room (broadcast on the room's topic).
    pub to_room: Vec<FrameBytes>,
    /// A frame for one connection (snapshot, member list).
    pub to_conn: Option<(ConnRef, FrameBytes)>,
    /// The room has no members left; its topic state may go.
    pub emptied: bool,
}

/// Every room with at least one member.
#[derive(Debug)]
pub struct Rooms {
    rooms: HashMap<Arc<str>, Room>,
    list_max: usize,
    next_count_at: Instant,
}

impl Rooms {
    /// No rooms; lists and deltas up to `list_max` members.
    pub fn new(list_max: usize, now: Instant) -> Self {
        Rooms {
            rooms: HashMap::new(),
            list_max,
            next_count_at: now + COUNT_EVERY,
        }
    }

    /// Members of `room` (0 when it does not exist).
    pub fn count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// `conn` joins `room`: it gets a snapshot, the room a join delta.
    pub fn join(
        &mut self,
        room: &Arc<str>,
        conn: ConnRef,
        client_id: Arc<str>,
        nick: Option<Arc<str>>,
    ) -> Outcome {
        let list_max = self.list_max;
        let r = self.rooms.entry(room.clone()).or_default();
        let member = Member { client_id, nick };
        let view_frame = |r: &Room| r.list("snapshot", room, list_max);
        if r.members.insert(conn, member.clone()).is_some() {
            // Already a member (a repeated join): answer with the list only.
            return Outcome {
                to_conn: Some((conn, view_frame(r))),
                ..Outcome::default()
            };
        }
        let count = r.members.len();
        let mut out = Outcome {
            to_conn: Some((conn, view_frame(r))),
            ..Outcome::default()
        };
        if count <= list_max {
            out.to_room.push(replies::presence_delta(
                room,
                PresenceEvent::Join,
                &member.view(),
                count,
            ));
        } else {
            r.count_dirty = true;
        }
        out
    }

    /// `conn` leaves `room`.
    pub fn leave(&mut self, room: &str, conn: ConnRef) -> Outcome {
        let mut out = Outcome::default();
        let Some(r) = self.rooms.get_mut(room) else {
            return out;
        };
        let Some(member) = r.members.shift_remove(&conn) else {
            return out;
        };
        let count = r.members.len();
        if count == 0 {
            self.rooms.remove(room);
            out.emptied = true;
        } else if count < self.list_max {
            out.to_room.push(replies::presence_delta(
                room,
                PresenceEvent::Leave,
                &member.view(),
                count,
            ));
        } else if count == self.list_max {
            // Back under the limit from above: members' lists were counts only, so they get
            // one fresh snapshot and deltas from here on.
            out.to_room.push(r.list("snapshot", room, self.list_max));
        } else {
            r.count_dirty = true;
        }
        out
    }

    /// `conn` is now called `nick` in each of `rooms`; one delta per room (each a separate
    /// broadcast), returned as (room, frame).
    pub fn rename(
        &mut self,
        conn: ConnRef,
        nick: &Arc<str>,
        rooms: &[Arc<str>],
    ) -> Vec<(Arc<str>, FrameBytes)> {
        let mut frames = Vec::new();
        for room in rooms {
            let Some(r) = self.rooms.get_mut(room) else {
                continue;
            };
            let count = r.members.len();
            let Some(m) = r.members.get_mut(&conn) else {
                continue;
            };
            m.nick = Some(nick.clone());
            if count <= self.list_max {
                frames.push((
                    room.clone(),
                    replies::presence_delta(room, PresenceEvent::Nick, &m.view(), count),
                ));
            }
        }
        frames
    }

    /// The member list of `room` for one connection (`/who`).
    pub fn who(&self, room: &str) -> FrameBytes {
        match self.rooms.get(room) {
            Some(r) => r.list("who", room, self.list_max),
            None => replies::member_list("who", room, Some(&[]), 0),
        }
    }

    /// When the next count announcement is due.
    pub fn next_tick(&self) -> Instant {
        self.next_count_at
    }

    /// Count frames for large rooms whose size changed, at most once per [`COUNT_EVERY`].
    pub fn tick(&mut self, now: Instant) -> Vec<(Arc<str>, FrameBytes)> {
        if now < self.next_count_at {
            return Vec::new();
        }
        self.next_count_at = now + COUNT_EVERY;
        let mut frames = Vec::new();
        for (name, r) in &mut self.rooms {
            if r.count_dirty {
                r.count_dirty = false;
                frames.push((name.clone(), replies::presence_count(name, r.members.len())));
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(n: usize) -> ConnRef {
        ConnRef {
            shard: 0,
            key: crate::messages::ConnKey {
                token: n,
                id: n as u64,
            },
        }
    }

    fn json(f: &FrameBytes) -> serde_json::Value {
        serde_json::from_slice(&f[f.len() - payload_len(f)..]).unwrap()
    }

    fn payload_len(f: &FrameBytes) -> usize {
        match f[1] & 0x7f {
            126 => u16::from_be_bytes([f[2], f[3]]) as usize,
            127 => unreachable!("test frames are small"),
            n => n as usize,
        }
    }

    #[test]
    fn join_leave_rename_who() {
        let now = Instant::now();
        let mut rooms = Rooms::new(10, now);
        let room: Arc<str> = Arc::from("room.a");
        let out = rooms.join(&room, conn(1), Arc::from("alice"), None);
        assert_eq!(
            json(&out.to_conn.unwrap().1)["members"][0]["client_id"],
            "alice"
        );
        assert_eq!(json(&out.to_room[0])["event"], "join");
        let out = rooms.join(&room, conn(2), Arc::from("bob"), None);
        assert_eq!(json(&out.to_conn.unwrap().1)["count"], 2);
        let renamed = rooms.rename(conn(2), &Arc::from("bobby"), std::slice::from_ref(&room));
        assert_eq!(json(&renamed[0].1)["nick"], "bobby");
        assert_eq!(json(&rooms.who("room.a"))["members"][1]["nick"], "bobby");
        let out = rooms.leave("room.a", conn(1));
        let v = json(&out.to_room[0]);
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64()),
            (Some("leave"), Some(1))
        );
        assert!(!out.emptied);
        assert!(rooms.leave("room.a", conn(2)).emptied);
        assert_eq!(rooms.count("room.a"), 0);
    }

    #[test]
    fn large_rooms_send_counts_only_and_throttled() {
        let now = Instant::now();
        let mut rooms = Rooms::new(2, now);
        let room: Arc<str> = Arc::from("big");
        for n in 0..5 {
            let out = rooms.join(&room, conn(n), Arc::from(format!("c{n}")), None);
            if n >= 2 {
                assert!(out.to_room.is_empty(), "no deltas above the list max");
                assert_eq!(json(&out.to_conn.unwrap().1)["truncated"], true);
            }
        }
        assert!(rooms.tick(now).is_empty(), "not due yet");
        let counts = rooms.tick(now + COUNT_EVERY);
        assert_eq!(counts.len(), 1);
        assert_eq!(json(&counts[0].1)["count"], 5);
        assert!(
            rooms.tick(now + COUNT_EVERY * 2).is_empty(),
            "unchanged: nothing sent"
        );
        // Shrinking back to the list limit sends one fresh snapshot to the room.
        rooms.leave("big", conn(4));
        rooms.leave("big", conn(3));
        let out = rooms.leave("big", conn(2));
        let v = json(&out.to_room[0]);
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64()),
            (Some("snapshot"), Some(2))
        );
        assert_eq!(v["members"].as_array().map(Vec::len), Some(2));
    }
}
