//! Resuming topics from the mixer's history: the `resume` operation (and `?since=`), the
//! replay's arrival, and frames the mixer addresses to one connection.
//!
//! A resumed topic leaves the shard's live index until its replay arrives through the same
//! queue as the live frames; subscribing it then is what makes the seam gapless and free of
//! duplicates.

use std::sync::Arc;

use super::session::{check_topics, forbidden, wildcard_resume};
use super::{Conn, ConnCtx};
use crate::frame::FrameBytes;
use crate::mixer::MixerMsg;
use crate::protocol::{self, ClientError, ErrorCode};
use crate::shard::WILDCARD;

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
        self.request_resume(ctx, since);
        Ok(())
    }

    /// Takes the topics out of the live index (keeping room membership) and asks the mixer
    /// for their replays; each is subscribed again when its replay arrives.
    pub(super) fn request_resume(&mut self, ctx: &mut ConnCtx<'_>, since: Vec<(String, u64)>) {
        let me = self.conn_ref(ctx);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut asks = Vec::with_capacity(since.len());
        for (name, seq) in since {
            let topic = if let Some(i) = s.topics.iter().position(|t| **t == *name) {
                let topic = s.topics.swap_remove(i);
                ctx.subs.unsubscribe(&topic, ctx.token);
                topic
            } else if let Some(t) = s.resuming.iter().find(|t| ***t == *name) {
                t.clone()
            } else {
                let topic: Arc<str> = Arc::from(name.as_str());
                if protocol::is_room(&topic) {
                    ctx.mixer.send(s.join_msg(&topic, me));
                }
                topic
            };
            if !s.resuming.contains(&topic) {
                s.resuming.push(topic.clone());
            }
            asks.push((topic, seq));
        }
        ctx.mixer.send(MixerMsg::Resume {
            conn: me,
            topics: asks,
        });
    }

    /// The mixer's replay for `topic`: reset notice and frames, then the live stream.
    pub fn on_resumed(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        topic: &Arc<str>,
        reset: Option<FrameBytes>,
        frames: Vec<FrameBytes>,
    ) {
        if !matches!(self.state, super::State::Open(_)) {
            return;
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(i) = s.resuming.iter().position(|t| t == topic) else {
            return;
        };
        s.resuming.swap_remove(i);
        let canonical = ctx.subs.subscribe(topic, ctx.token);
        s.topics.push(canonical);
        for frame in reset.into_iter().chain(frames) {
            self.push_reply(ctx, frame);
        }
    }

    /// A frame for this connection alone from the mixer (presence snapshot, `/who`).
    pub fn deliver(&mut self, ctx: &mut ConnCtx<'_>, frame: FrameBytes) {
        if matches!(self.state, super::State::Open(_)) {
            self.push_reply(ctx, frame);
        }
    }
}
