//! Resuming topics from the mixer's history: the `resume` operation (and `?since=`), the
//! replay's arrival, and frames the mixer addresses to one connection.
//!
//! A resumed topic stays out of the shard's live index until its replay arrives through the
//! same queue as the live frames; subscribing it then is what makes the seam gapless and
//! free of duplicates. A resume never sends a message twice: a topic the connection already
//! follows live is left as it is (nothing it was sent is replayed), and a topic resumed
//! again before its replay came takes only the latest replay.

use std::sync::Arc;

use super::session::{check_topics, forbidden, wildcard_resume};
use super::{Conn, ConnCtx, ENTRY_OVERHEAD};
use crate::frame::FrameBytes;
use crate::messages::{MixerMsg, Replayed, ResumeAsk};
use crate::protocol::{self, ClientError, ErrorCode, WILDCARD, replies};

impl Conn {
    /// `{"op":"resume","since":{...}}`.
    pub(super) fn resume_op(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        since: Vec<(String, u64)>,
    ) -> Result<(), ClientError> {
        let max = ctx.cfg.max_topics_per_conn;
        let Some(s) = self.session.as_ref() else {
            return Ok(());
        };
        check_topics(since.iter().map(|(t, _)| t), max)?;
        if s.has_wildcard() {
            return Err(wildcard_resume());
        }
        if let Some((name, _)) = since
            .iter()
            .find(|(t, _)| t == WILDCARD || !s.client.rights.may_subscribe(t))
        {
            return Err(if name == WILDCARD {
                ClientError::new(ErrorCode::InvalidTopic, "cannot resume `*`")
            } else {
                forbidden(name)
            });
        }
        let new = since.iter().filter(|(t, _)| !s.holds(t)).count();
        if s.held() + new > max {
            return Err(ClientError::new(
                ErrorCode::TooManyTopics,
                format!("at most {max} topics per connection"),
            ));
        }
        // Each topic is a replay of up to --history frames: past the first, a token more.
        self.charge_more(ctx, since.len().saturating_sub(1))?;
        self.request_resume(ctx, since);
        Ok(())
    }

    /// Asks the mixer for the replays of topics this connection does not follow live (a
    /// room not joined yet is joined), holding them for the node's interest; each is
    /// subscribed when its replay arrives. A topic resumed again before its replay came
    /// gets a new generation: only the latest replay is taken. Topics followed live are
    /// skipped: their replay would only repeat what was sent.
    pub(super) fn request_resume(&mut self, ctx: &mut ConnCtx<'_>, since: Vec<(String, u64)>) {
        let me = self.conn_ref(ctx);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut asks = Vec::with_capacity(since.len());
        for (name, seq) in since {
            if s.topics.iter().any(|t| **t == *name) {
                // Followed live: everything after its subscription is on its way, and what
                // a replay would add is what this connection was already sent.
                continue;
            }
            let generation = s.next_generation;
            s.next_generation += 1;
            let topic = if let Some(entry) = s.resuming.iter_mut().find(|(t, _)| **t == *name) {
                entry.1 = generation;
                entry.0.clone()
            } else {
                let topic: Arc<str> = Arc::from(name.as_str());
                ctx.subs.hold(&topic);
                if protocol::is_room(&topic) {
                    ctx.mixer.send(s.join_msg(&topic, me, None));
                }
                s.resuming.push((topic.clone(), generation));
                topic
            };
            asks.push(ResumeAsk {
                topic,
                since: seq,
                generation,
            });
        }
        if !asks.is_empty() {
            ctx.mixer.send(MixerMsg::Resume {
                conn: me,
                topics: asks,
            });
        }
    }

    /// The mixer's replay of a topic: the reset notice and frames, then the live stream.
    /// A replay larger than the room left in the outbox is cut to its newest frames behind a
    /// `reset` naming the first one kept, so the client always knows what it missed.
    pub fn on_resumed(&mut self, ctx: &mut ConnCtx<'_>, replay: Replayed) {
        if !matches!(self.state, super::State::Open(..)) {
            return;
        }
        let class = self.class();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(i) = s
            .resuming
            .iter()
            .position(|(t, g)| *t == replay.topic && *g == replay.generation)
        else {
            // Unsubscribed meanwhile, or resumed again: a later replay is on its way.
            return;
        };
        let (topic, _) = s.resuming.swap_remove(i);
        let canonical = ctx.subs.subscribe(&topic, ctx.key.token, class);
        ctx.subs.release(&topic);
        s.topics.push(canonical);
        let Replayed {
            latest,
            mut reset,
            mut frames,
            ..
        } = replay;
        let deflate = self.deflate;
        let mut room = ctx.cfg.outbox_limit.saturating_sub(self.outbox.cost());
        let mut keep = frames.len();
        while keep > 0 && frames[keep - 1].1.for_client(deflate).len() + ENTRY_OVERHEAD <= room {
            room -= frames[keep - 1].1.for_client(deflate).len() + ENTRY_OVERHEAD;
            keep -= 1;
        }
        if keep > 0 {
            let oldest = frames
                .get(keep)
                .map_or(latest.saturating_add(1), |(seq, _)| *seq);
            reset = Some(replies::reset_frame(&topic, oldest, latest));
            frames.drain(..keep);
        }
        if let Some(frame) = reset {
            self.push_control(ctx, frame);
        }
        let mut replayed = 0;
        for (_, frame) in frames {
            let frame = frame.for_client(deflate);
            replayed += frame.len();
            self.outbox.push(frame.clone(), 0);
        }
        // The client asked for these bytes: they are owed to its byte bucket.
        self.limits.owe(
            ctx.cfg.message_rate(),
            ctx.cfg.byte_rate(),
            ctx.now,
            replayed,
        );
        self.want_flush(ctx);
    }

    /// A frame for this connection alone from the mixer (presence snapshot, `/who`).
    pub fn deliver(&mut self, ctx: &mut ConnCtx<'_>, frame: FrameBytes) {
        if matches!(self.state, super::State::Open(..)) {
            self.push_reply(ctx, frame);
        }
    }
}
