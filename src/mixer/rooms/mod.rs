//! Room membership and presence, kept by the mixer because it is the one place that sees
//! every shard's joins and leaves in one order.
//!
//! A member is one connection ([`ConnRef`]); `count` is the number of connections in the
//! room. Each change yields one small delta for the room's members, never the full list
//! (which would be quadratic in the room size); a newcomer gets one snapshot. Above
//! `--presence-list-max` members, deltas and lists give way to the count alone, sent at most
//! once per [`COUNT_EVERY`] while it changes.

pub mod listed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::frame::FrameBytes;
use crate::messages::{ConnRef, RemoteChange, RemoteMember};
use crate::protocol::replies::{self, MemberView, PresenceEvent};
use listed::Listed;

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

/// A member: a connection of this node, or one of another node (with `--redis`), named by
/// its cluster-wide key (`<node>/<shard>/<token>/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MemberKey {
    Local(ConnRef),
    Remote(Arc<str>),
}

#[derive(Debug, Default)]
struct Room {
    members: IndexMap<MemberKey, Member>,
    /// Members that are this node's connections (the room goes when the last one leaves).
    local: usize,
    /// A large room's count changed since it was last announced.
    count_dirty: bool,
    /// The last change of other nodes' members applied (their changes are numbered in
    /// Redis, one sequence per room).
    remote_version: u64,
    /// Set while the other nodes' members are being read from Redis: changes that arrive
    /// meanwhile wait here, and those newer than what was read are applied after it.
    loading: Option<Vec<RemoteChange>>,
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

    /// Adds a member; the delta for the room, if it is new.
    fn add(&mut self, room: &str, key: MemberKey, member: Member, list_max: usize) -> Outcome {
        let local = matches!(key, MemberKey::Local(_));
        let mut out = Outcome::default();
        if self.members.insert(key, member.clone()).is_some() {
            return out;
        }
        if local {
            self.local += 1;
        }
        let count = self.members.len();
        if count <= list_max {
            out.to_room.push(replies::presence_delta(
                room,
                PresenceEvent::Join,
                &member.view(),
                count,
            ));
        } else {
            self.count_dirty = true;
        }
        out
    }

    /// Removes a member; the delta for the room, if it was one.
    fn remove(&mut self, room: &str, key: &MemberKey, list_max: usize) -> Outcome {
        let mut out = Outcome::default();
        let Some(member) = self.members.shift_remove(key) else {
            return out;
        };
        if matches!(key, MemberKey::Local(_)) {
            self.local -= 1;
        }
        let count = self.members.len();
        if count < list_max {
            out.to_room.push(replies::presence_delta(
                room,
                PresenceEvent::Leave,
                &member.view(),
                count,
            ));
        } else if count == list_max {
            // Back under the limit from above: members' lists were counts only, so they get
            // one fresh snapshot and deltas from here on.
            out.to_room.push(self.list("snapshot", room, list_max));
        } else {
            self.count_dirty = true;
        }
        out
    }

    /// Renames a member; the delta for the room, if it is one.
    fn rename(
        &mut self,
        room: &str,
        key: &MemberKey,
        nick: &Arc<str>,
        list_max: usize,
    ) -> Option<FrameBytes> {
        let count = self.members.len();
        let m = self.members.get_mut(key)?;
        m.nick = Some(nick.clone());
        (count <= list_max)
            .then(|| replies::presence_delta(room, PresenceEvent::Nick, &m.view(), count))
    }

    /// Applies one change of another node's member.
    fn apply_remote(&mut self, room: &str, change: &RemoteChange, list_max: usize) -> Outcome {
        self.remote_version = self.remote_version.max(change.version);
        let key = MemberKey::Remote(change.member.clone());
        match change.event {
            PresenceEvent::Join => {
                let member = Member {
                    client_id: change.client_id.clone(),
                    nick: change.nick.clone(),
                };
                self.add(room, key, member, list_max)
            }
            PresenceEvent::Leave => self.remove(room, &key, list_max),
            PresenceEvent::Nick => {
                let mut out = Outcome::default();
                if let Some(nick) = &change.nick {
                    out.to_room.extend(self.rename(room, &key, nick, list_max));
                }
                out
            }
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
    /// The room has no members left on this node; its topic state may go.
    pub emptied: bool,
    /// The room did not exist here before this join: with `--redis`, the other nodes'
    /// members are to be read (and [`Rooms::loaded`] called with them).
    pub created: bool,
}

/// Every room with at least one member.
#[derive(Debug)]
pub struct Rooms {
    rooms: HashMap<Arc<str>, Room>,
    list_max: usize,
    next_count_at: Instant,
    listed: Listed,
}

impl Rooms {
    /// No rooms; lists and deltas up to `list_max` members.
    pub fn new(list_max: usize, now: Instant) -> Self {
        Rooms {
            rooms: HashMap::new(),
            list_max,
            next_count_at: now + COUNT_EVERY,
            listed: Listed::new(now),
        }
    }

    /// Members of `room` (0 when it does not exist).
    pub fn count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// `conn` joins `room` at `now`: it gets a snapshot (the count only when it had the full
    /// list of this room less than a second ago: [`Listed`]), the room a join delta.
    pub fn join(
        &mut self,
        room: &Arc<str>,
        conn: ConnRef,
        client_id: Arc<str>,
        nick: Option<Arc<str>>,
        now: Instant,
    ) -> Outcome {
        let list_max = self.list_max;
        let created = !self.rooms.contains_key(room);
        let r = self.rooms.entry(room.clone()).or_default();
        let member = Member { client_id, nick };
        let mut out = r.add(room, MemberKey::Local(conn), member, list_max);
        let count = r.members.len();
        let shown = if count <= list_max && self.listed.may_list(conn, room, count, now) {
            list_max
        } else {
            0
        };
        out.to_conn = Some((conn, r.list("snapshot", room, shown)));
        if created {
            out.created = true;
            r.loading = Some(Vec::new());
        }
        out
    }

    /// `conn` leaves `room`. The room goes with its last member of this node, other nodes'
    /// members included (this node stops hearing of them).
    pub fn leave(&mut self, room: &str, conn: ConnRef) -> Outcome {
        let Some(r) = self.rooms.get_mut(room) else {
            return Outcome::default();
        };
        let mut out = r.remove(room, &MemberKey::Local(conn), self.list_max);
        if r.local == 0 {
            self.rooms.remove(room);
            out.to_room.clear();
            out.emptied = true;
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
        let key = MemberKey::Local(conn);
        let mut frames = Vec::new();
        for room in rooms {
            if let Some(r) = self.rooms.get_mut(room)
                && let Some(frame) = r.rename(room, &key, nick, self.list_max)
            {
                frames.push((room.clone(), frame));
            }
        }
        frames
    }

    /// A change of another node's member in `room` (numbered by Redis): applied in order,
    /// once; kept aside while the room's members are being read.
    pub fn remote(&mut self, room: &str, change: RemoteChange) -> Outcome {
        let list_max = self.list_max;
        let Some(r) = self.rooms.get_mut(room) else {
            // No member here: this node does not follow the room.
            return Outcome::default();
        };
        if let Some(waiting) = &mut r.loading {
            waiting.push(change);
            return Outcome::default();
        }
        if change.version <= r.remote_version {
            return Outcome::default();
        }
        r.apply_remote(room, &change, list_max)
    }

    /// The other nodes' members of `room` as Redis held them at `version`: they replace
    /// what was known, the changes that came meanwhile and are newer follow, and the room's
    /// members here get a fresh snapshot.
    pub fn loaded(&mut self, room: &str, version: u64, members: Vec<RemoteMember>) -> Outcome {
        let list_max = self.list_max;
        let mut out = Outcome::default();
        let Some(r) = self.rooms.get_mut(room) else {
            return out;
        };
        let waiting = r.loading.take().unwrap_or_default();
        r.members.retain(|k, _| matches!(k, MemberKey::Local(_)));
        for m in members {
            let member = Member {
                client_id: m.client_id,
                nick: m.nick,
            };
            r.members.insert(MemberKey::Remote(m.member), member);
        }
        r.remote_version = version;
        for change in waiting.iter().filter(|c| c.version > version) {
            let _ = r.apply_remote(room, change, list_max);
        }
        if r.members.len() > list_max {
            r.count_dirty = true;
        }
        out.to_room.push(r.list("snapshot", room, list_max));
        out
    }

    /// The client id of `conn` in the first of `rooms` it is a member of.
    pub fn client_id(&self, conn: ConnRef, rooms: &[Arc<str>]) -> Option<Arc<str>> {
        let key = MemberKey::Local(conn);
        rooms
            .iter()
            .find_map(|room| self.rooms.get(room)?.members.get(&key))
            .map(|m| m.client_id.clone())
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
mod tests;
