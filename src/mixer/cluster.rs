//! Room membership shared with the other nodes (with `--redis`): every join, leave and
//! rename of this node's members goes to the bus presence thread, which keeps the room's
//! members in Redis and tells the other nodes; their changes come back as
//! `MixerMsg::RemotePresence` and are applied by [`super::rooms::Rooms`] like local ones. A
//! room's first member here asks for the other nodes' members to be read.
//!
//! The presence thread's channel is bounded; what finds it full waits here, in order, and
//! goes first at the next turn. Past [`MAX_WAITING`] changes are dropped and logged (the
//! other nodes' view of this node is then wrong until its members next change).

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::Mixer;
use crate::messages::{ConnRef, PresenceOp, drain_into};

/// Changes that may wait for room in the presence thread's channel.
const MAX_WAITING: usize = 64 * 1024;

/// This node's side of cluster-wide presence.
#[derive(Debug)]
pub struct Presence {
    tx: Sender<PresenceOp>,
    /// This node's id: member keys start with it.
    node: Arc<str>,
    waiting: VecDeque<PresenceOp>,
}

impl Presence {
    /// The cluster-wide key of `conn`: `<node>/<shard>/<token>/<id>`.
    fn member(&self, conn: ConnRef) -> Arc<str> {
        Arc::from(format!(
            "{}/{}/{}/{}",
            self.node, conn.shard, conn.key.token, conn.key.id
        ))
    }

    fn tell(&mut self, op: PresenceOp) {
        if self.waiting.len() >= MAX_WAITING {
            log::warn!("presence changes are not reaching Redis: one dropped");
            return;
        }
        self.waiting.push_back(op);
        self.flush();
    }

    /// Moves waiting changes into the presence thread's channel, in order.
    pub fn flush(&mut self) {
        drain_into(&mut self.waiting, &self.tx);
    }
}

impl Mixer {
    /// Room membership is shared through the bus presence thread behind `tx`; `node` is this
    /// node's id.
    pub fn with_presence(mut self, tx: Sender<PresenceOp>, node: &str) -> Self {
        self.presence = Some(Presence {
            tx,
            node: Arc::from(node),
            waiting: VecDeque::new(),
        });
        self
    }

    /// `conn` joined `room` here; `created`: the room's first member here.
    pub(super) fn joined_here(
        &mut self,
        room: &Arc<str>,
        conn: ConnRef,
        client_id: Arc<str>,
        nick: Option<Arc<str>>,
        created: bool,
    ) {
        let Some(p) = &mut self.presence else {
            return;
        };
        let member = p.member(conn);
        p.tell(PresenceOp::Join {
            room: room.clone(),
            member,
            client_id,
            nick,
        });
        if created {
            p.tell(PresenceOp::Load { room: room.clone() });
        }
    }

    /// `conn` left `room` here; `emptied`: it was the last member here.
    pub(super) fn left_here(&mut self, room: &Arc<str>, conn: ConnRef, emptied: bool) {
        let Some(p) = &mut self.presence else {
            return;
        };
        let member = p.member(conn);
        p.tell(PresenceOp::Leave {
            room: room.clone(),
            member,
        });
        if emptied {
            p.tell(PresenceOp::Emptied { room: room.clone() });
        }
    }

    /// `conn` renamed itself in `rooms`.
    pub(super) fn renamed_here(&mut self, conn: ConnRef, nick: &Arc<str>, rooms: &[Arc<str>]) {
        let Some(client_id) = self.rooms.client_id(conn, rooms) else {
            return;
        };
        let Some(p) = &mut self.presence else {
            return;
        };
        let member = p.member(conn);
        for room in rooms {
            p.tell(PresenceOp::Nick {
                room: room.clone(),
                member: member.clone(),
                client_id: client_id.clone(),
                nick: nick.clone(),
            });
        }
    }
}
