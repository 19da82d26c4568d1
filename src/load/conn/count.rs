//! Counting one data message of a load connection: end-to-end latency from its `ts`, the
//! publisher's `sent_us` when tracked, and gaps or reordering in each topic's `seq`.
//!
//! Split from [`super`] (the connection's framing and I/O) so each file stays short; these
//! are the per-message costs of the client, run once for every delivery.

use super::{Ctx, LoadConn};
use crate::load::stats::Stats;

/// Topics whose last seq one connection remembers.
const MAX_TRACKED_TOPICS: usize = 64;

impl LoadConn {
    /// Counts one message: latency and seq gaps for data messages, the kind of the others.
    pub(super) fn on_message(&mut self, ctx: &mut Ctx<'_>, text: &[u8], now_us: u64) {
        let env = ctx.scanner.envelope(text);
        let measuring = ctx.stats.measuring;
        let (Some(seq), Some(ts)) = (env.seq, env.ts) else {
            if measuring {
                if ctx.scanner.is_error(text) {
                    ctx.stats.window.error_frames += 1;
                } else {
                    ctx.stats.window.other_messages += 1;
                }
            }
            return;
        };
        if measuring {
            let stats = &mut *ctx.stats;
            stats.window.messages += 1;
            stats
                .latency
                .saturating_record(now_us.saturating_sub(ts).max(1));
            if ctx.track_sent
                && let Some(sent) = ctx.scanner.sent_us(text)
            {
                stats
                    .publish_latency
                    .saturating_record(now_us.saturating_sub(sent).max(1));
            }
        }
        if let Some(topic) = env.topic {
            self.track_seq(ctx.stats, topic, seq, ts);
        }
    }

    fn track_seq(&mut self, stats: &mut Stats, topic: &[u8], seq: u64, ts: u64) {
        let slot = match self
            .seqs
            .iter()
            .position(|(id, _)| stats.topics.is(*id, topic))
        {
            Some(i) => i,
            None => {
                let id = stats.topics.id(topic);
                if stats.measuring {
                    stats.topics.counts[id as usize].seen(seq, ts);
                }
                if !stats.topics.is_other(id) && self.seqs.len() < MAX_TRACKED_TOPICS {
                    self.seqs.push((id, seq));
                }
                return;
            }
        };
        let (id, last) = &mut self.seqs[slot];
        if stats.measuring {
            let counts = &mut stats.topics.counts[*id as usize];
            counts.seen(seq, ts);
            if seq > *last + 1 {
                let missing = seq - *last - 1;
                counts.gaps += missing;
                stats.window.gaps += missing;
            } else if seq <= *last {
                counts.reordered += 1;
            }
        }
        *last = (*last).max(seq);
    }
}
