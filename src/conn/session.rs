//! A `/ws` session: who the client is, what it may do, its topics, and its operations
//! (subscribe, unsubscribe; publishing is in `publish.rs`, resumes in `resume.rs`).
//!
//! Everything a client sends is handled here, on its own shard. What must reach other
//! clients (publishes, joins and leaves, nick changes) goes to the mixer through the shard's
//! [`MixerPort`](crate::messages::MixerPort); answers meant for this client alone (acks, errors)
//! are queued directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Conn, ConnCtx};
use crate::auth::Rights;
use crate::messages::{ConnRef, MixerMsg};
use crate::protocol::{self, ClientError, ClientOp, ErrorCode, WILDCARD, replies};
use crate::ratelimit::Verdict;

/// Who is on the other end of a `/ws` connection.
#[derive(Debug)]
pub struct Client {
    /// Its id: the token's `sub`, `?client_id=`, or generated.
    pub id: Arc<str>,
    /// Its nickname, once set with `/nick`.
    pub nick: Option<Arc<str>>,
    /// What it may subscribe and publish to.
    pub rights: Rights,
}

/// Topics and resumes (topic, last seq seen) an upgrade asks for.
pub type Requested = (Vec<String>, Vec<(String, u64)>);

/// The state of a `/ws` connection beyond the transport.
#[derive(Debug)]
pub struct Session {
    /// The client.
    pub client: Client,
    /// Topics in the shard's index for this connection (canonical `Arc`s from the index).
    pub(super) topics: Vec<Arc<str>>,
    /// Topics waiting for their replay from the mixer, each with the generation of its
    /// latest resume; subscribed when it arrives. A room being joined waits here too, for
    /// the mixer's empty replay behind its join (so the newcomer is not sent its own join).
    pub(super) resuming: Vec<(Arc<str>, u64)>,
    /// Named topics kept while `*` is subscribed: out of the shard's index (`*` brings
    /// their messages, once) but held for the node's interest; rooms among them stay
    /// joined. They go back into the index when `*` is unsubscribed.
    pub(super) parked: Vec<Arc<str>>,
    /// The generation the next resume will carry.
    pub(super) next_generation: u64,
    /// What the upgrade asked for (topics, resumes), until the connection opens; boxed, as
    /// it is empty for the rest of the connection's life.
    requested: Option<Box<Requested>>,
}

impl Session {
    /// Validates what an upgrade asks for: names, rights, limits.
    pub fn prepare(
        client: Client,
        mut names: Vec<String>,
        since: Vec<(String, u64)>,
        max: usize,
    ) -> Result<Session, ClientError> {
        dedup_in_order(&mut names);
        let mut since = since;
        dedup_since(&mut since);
        check_topics(names.iter().chain(since.iter().map(|(t, _)| t)), max)?;
        for name in names.iter().chain(since.iter().map(|(t, _)| t)) {
            if !client.rights.may_subscribe(name) {
                return Err(forbidden(name));
            }
        }
        if names.iter().any(|n| n == WILDCARD) {
            if !since.is_empty() {
                return Err(wildcard_resume());
            }
            // Named topics are kept beside `*` (rooms joined); `*` is subscribed last.
            names.retain(|n| n != WILDCARD);
            names.push(WILDCARD.to_string());
        }
        if since.iter().any(|(t, _)| t == WILDCARD) {
            return Err(ClientError::new(
                ErrorCode::InvalidTopic,
                "cannot resume `*`",
            ));
        }
        Ok(Session {
            client,
            topics: Vec::new(),
            resuming: Vec::new(),
            parked: Vec::new(),
            next_generation: 1,
            requested: Some(Box::new((names, since))),
        })
    }

    /// The topics and resumes the upgrade asked for (once).
    pub fn take_requested(&mut self) -> Requested {
        self.requested.take().map(|r| *r).unwrap_or_default()
    }

    pub(super) fn has_wildcard(&self) -> bool {
        self.topics.iter().any(|t| &**t == WILDCARD)
    }

    /// Every topic this connection holds: subscribed or waiting for a replay.
    pub(super) fn held_topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.topics
            .iter()
            .chain(self.resuming.iter().map(|(t, _)| t))
            .chain(self.parked.iter())
    }

    pub(super) fn holds(&self, name: &str) -> bool {
        self.held_topics().any(|t| &**t == name)
    }

    pub(super) fn held(&self) -> usize {
        self.topics.len() + self.resuming.len() + self.parked.len()
    }

    /// The mixer message announcing this client in `room`; `subscribe`: the generation
    /// under which it waits to be subscribed after the join (see [`MixerMsg::Join`]).
    pub(super) fn join_msg(
        &self,
        room: &Arc<str>,
        conn: ConnRef,
        subscribe: Option<u64>,
    ) -> MixerMsg {
        MixerMsg::Join {
            room: room.clone(),
            conn,
            client_id: self.client.id.clone(),
            nick: self.client.nick.clone(),
            subscribe,
        }
    }

    /// Rooms this connection is a member of.
    pub(super) fn rooms(&self) -> Vec<Arc<str>> {
        self.held_topics()
            .filter(|t| protocol::is_room(t))
            .cloned()
            .collect()
    }
}

/// The instant a token's `exp` (seconds since the Unix epoch) falls on, from a turn's clock
/// read both ways; `None` when it is too far ahead to represent (it never comes).
pub(super) fn expiry_instant(exp_secs: u64, now: Instant, now_us: u64) -> Option<Instant> {
    let left_us = exp_secs.saturating_mul(1_000_000).saturating_sub(now_us);
    now.checked_add(Duration::from_micros(left_us))
}

pub(super) fn forbidden(topic: &str) -> ClientError {
    ClientError::new(ErrorCode::Forbidden, format!("not allowed on `{topic}`"))
}

pub(super) fn wildcard_resume() -> ClientError {
    ClientError::new(
        ErrorCode::WildcardActive,
        "subscribed to every topic (`*`): resume needs named topics",
    )
}

impl Conn {
    pub(super) fn conn_ref(&self, ctx: &ConnCtx<'_>) -> ConnRef {
        ConnRef {
            shard: ctx.stats.shard,
            key: ctx.key,
        }
    }

    /// A text message on `/ws`, already charged: one operation.
    pub(super) fn on_op(&mut self, ctx: &mut ConnCtx<'_>, text: &str) {
        let result = protocol::parse_op(text).and_then(|op| match op {
            ClientOp::Publish { topic, data } => self.publish(ctx, &topic, data),
            // Subscription changes cost the mixer (presence, replays): none while the
            // shard's channel into the mixer is backed up.
            _ if ctx.mixer.is_backlogged() => Err(ClientError::new(
                ErrorCode::ServerBusy,
                "server busy, try again",
            )),
            ClientOp::Subscribe(names) => self.subscribe(ctx, names),
            ClientOp::Unsubscribe(names) => self.unsubscribe(ctx, names),
            ClientOp::Resume(since) => self.resume_op(ctx, since),
        });
        if let Err(e) = result {
            self.send_error(ctx, &e);
        }
    }

    /// `{"op":"subscribe"}`: every name is checked before any takes effect.
    fn subscribe(&mut self, ctx: &mut ConnCtx<'_>, names: Vec<String>) -> Result<(), ClientError> {
        let max = ctx.cfg.max_topics_per_conn;
        let Some(s) = self.session.as_ref() else {
            return Ok(());
        };
        check_topics(names.iter(), max)?;
        if let Some(name) = names.iter().find(|n| !s.client.rights.may_subscribe(n)) {
            return Err(forbidden(name));
        }
        if s.has_wildcard() && names.iter().any(|n| n != WILDCARD) {
            return Err(ClientError::new(
                ErrorCode::WildcardActive,
                "subscribed to every topic (`*`): unsubscribe `*` before joining named topics",
            ));
        }
        if !s.has_wildcard() {
            let mut new: Vec<String> = names
                .iter()
                .filter(|n| *n != WILDCARD && !s.holds(n))
                .cloned()
                .collect();
            dedup_in_order(&mut new);
            if s.held() + new.len() > max {
                return Err(ClientError::new(
                    ErrorCode::TooManyTopics,
                    format!("at most {max} topics per connection"),
                ));
            }
            // Each room joined builds a presence snapshot and a delta to every member: past
            // the first, each costs a message token more.
            let rooms = new.iter().filter(|n| protocol::is_room(n)).count();
            self.charge_more(ctx, rooms.saturating_sub(1))?;
            let wildcard = names.iter().any(|n| n == WILDCARD);
            self.join_topics(ctx, &new);
            if wildcard {
                self.add_wildcard(ctx);
            }
        }
        self.push_reply(ctx, replies::ack_frame("subscribed", &names));
        Ok(())
    }

    /// Charges `tokens` message tokens beyond the one the message took, for the work it asks
    /// for; refused (`rate_limited`, nothing done) when they are not there.
    pub(super) fn charge_more(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        tokens: usize,
    ) -> Result<(), ClientError> {
        let verdict =
            self.limits
                .take_more(ctx.cfg.message_rate(), ctx.cfg.byte_rate(), ctx.now, tokens);
        if verdict == Verdict::Allow {
            return Ok(());
        }
        Err(ClientError::new(
            ErrorCode::RateLimited,
            format!("this costs {} messages of the rate limit", tokens + 1),
        ))
    }

    /// `{"op":"unsubscribe"}`: unknown names are ignored; named topics under `*` are refused.
    fn unsubscribe(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        names: Vec<String>,
    ) -> Result<(), ClientError> {
        check_topics(names.iter(), usize::MAX)?;
        let me = self.conn_ref(ctx);
        let class = self.class();
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        if s.has_wildcard() && names.iter().any(|n| n != WILDCARD) {
            return Err(ClientError::new(
                ErrorCode::WildcardActive,
                "subscribed to every topic (`*`): unsubscribe `*` first",
            ));
        }
        for name in &names {
            let topic = if let Some(i) = s.topics.iter().position(|t| &**t == name.as_str()) {
                let topic = s.topics.swap_remove(i);
                ctx.subs.unsubscribe(&topic, ctx.key.token);
                if &*topic == WILDCARD {
                    // The named topics kept under `*` go back into the index, in the same
                    // turn: no message is lost or doubled at the seam.
                    for parked in std::mem::take(&mut s.parked) {
                        let canonical = ctx.subs.subscribe(&parked, ctx.key.token, class);
                        ctx.subs.release(&parked);
                        s.topics.push(canonical);
                    }
                }
                topic
            } else if let Some(i) = s.resuming.iter().position(|(t, _)| &**t == name.as_str()) {
                let (topic, _) = s.resuming.swap_remove(i);
                ctx.subs.release(&topic);
                topic
            } else {
                continue;
            };
            if protocol::is_room(&topic) {
                ctx.mixer.send(MixerMsg::Leave {
                    room: topic,
                    conn: me,
                });
            }
        }
        self.push_reply(ctx, replies::ack_frame("unsubscribed", &names));
        Ok(())
    }

    /// Adds topics (already validated, allowed and new) to this connection and the shard's
    /// index; rooms are joined.
    pub(super) fn join_topics(&mut self, ctx: &mut ConnCtx<'_>, names: &[String]) {
        let me = self.conn_ref(ctx);
        let class = self.class();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        // Exact at the upgrade: most connections hold one topic for life (a grown Vec would
        // hold four). Later subscribes grow it as usual.
        if s.topics.is_empty() {
            s.topics.reserve_exact(names.len());
        }
        for name in names {
            if name == WILDCARD {
                // Only through `add_wildcard`, which keeps the named topics aside.
                continue;
            }
            if protocol::is_room(name) {
                // Out of the index until the mixer's empty replay behind the join's delta.
                let room: Arc<str> = Arc::from(name.as_str());
                let generation = s.next_generation;
                s.next_generation += 1;
                ctx.subs.hold(&room);
                ctx.mixer.send(s.join_msg(&room, me, Some(generation)));
                s.resuming.push((room, generation));
            } else {
                s.topics
                    .push(ctx.subs.subscribe(name, ctx.key.token, class));
            }
        }
    }

    /// Subscribes `*`, keeping every named topic aside ([`Session::parked`]): `*` brings
    /// their messages, once, and rooms stay joined (no presence change).
    pub(super) fn add_wildcard(&mut self, ctx: &mut ConnCtx<'_>) {
        let class = self.class();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.has_wildcard() {
            return;
        }
        for topic in s.topics.drain(..) {
            ctx.subs.hold(&topic);
            ctx.subs.unsubscribe(&topic, ctx.key.token);
            s.parked.push(topic);
        }
        // Their replays are ignored when they come (already held: they stay held).
        s.parked.extend(s.resuming.drain(..).map(|(t, _)| t));
        let wildcard = ctx.subs.subscribe(WILDCARD, ctx.key.token, class);
        s.topics.push(wildcard);
    }

    /// Leaves every topic (the connection closes).
    pub(super) fn leave_topics(&mut self, ctx: &mut ConnCtx<'_>) {
        let me = self.conn_ref(ctx);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        for topic in s.topics.drain(..) {
            ctx.subs.unsubscribe(&topic, ctx.key.token);
            if protocol::is_room(&topic) {
                ctx.mixer.send(MixerMsg::Leave {
                    room: topic,
                    conn: me,
                });
            }
        }
        let waiting = s.resuming.drain(..).map(|(t, _)| t);
        for topic in waiting.chain(s.parked.drain(..)) {
            ctx.subs.release(&topic);
            if protocol::is_room(&topic) {
                ctx.mixer.send(MixerMsg::Leave {
                    room: topic,
                    conn: me,
                });
            }
        }
        s.topics = Vec::new();
    }
}

/// Validates names against the per-connection limit.
pub(super) fn check_topics<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
    max: usize,
) -> Result<(), ClientError> {
    if names.clone().count() > max {
        return Err(ClientError::new(
            ErrorCode::TooManyTopics,
            format!("at most {max} topics per connection"),
        ));
    }
    names
        .into_iter()
        .try_for_each(|n| protocol::validate_topic(n))
}

/// Removes repeated topics from resumes, keeping the first occurrence of each.
fn dedup_since(since: &mut Vec<(String, u64)>) {
    let mut seen = 0;
    for i in 0..since.len() {
        if !since[..seen].iter().any(|(t, _)| *t == since[i].0) {
            since.swap(seen, i);
            seen += 1;
        }
    }
    since.truncate(seen);
}

/// Removes repeated names, keeping the first occurrence of each (lists are short: ≤ max topics).
fn dedup_in_order(names: &mut Vec<String>) {
    let mut seen = 0;
    for i in 0..names.len() {
        if !names[..seen].contains(&names[i]) {
            names.swap(seen, i);
            seen += 1;
        }
    }
    names.truncate(seen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        let mut v: Vec<String> = ["b", "a", "b", "c", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        dedup_in_order(&mut v);
        assert_eq!(v, ["b", "a", "c"]);
    }

    #[test]
    fn token_expiry_falls_on_the_turns_clock() {
        let now = Instant::now();
        let now_us = 1_700_000_000_250_000;
        let at = expiry_instant(1_700_000_010, now, now_us).unwrap();
        assert_eq!(at - now, Duration::from_micros(9_750_000));
        // Already expired: due at once.
        assert_eq!(expiry_instant(1_600_000_000, now, now_us), Some(now));
        // Far ahead stays far ahead (or, past what an Instant holds, never), not a panic.
        let century = Duration::from_secs(100 * 365 * 86_400);
        assert!(expiry_instant(u64::MAX, now, now_us).is_none_or(|t| t > now + century));
    }
}
