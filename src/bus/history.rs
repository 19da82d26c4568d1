//! The bus history thread: reads a topic's recent messages back from its Redis stream, for a
//! resume that the mixer's own ring cannot serve (a client that moved from another node, or
//! a node that restarted).
//!
//! The mixer never waits for Redis: it hands each such resume here ([`FetchAsk`], a bounded
//! channel) and gets the answer later as [`MixerMsg::Fetched`]. Before reading, the thread
//! waits (bounded) until the subscriber has subscribed to every topic the node wants, the
//! resumed one included: whatever is published after the read then reaches the node live, so
//! the replay and the live stream meet without a gap (the mixer removes the overlap). While
//! Redis is unreachable the answer says so at once, and the mixer falls back to its ring
//! (a `reset` when it cannot serve).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::link::Link;
use super::{BusConfig, BusState, SUBSCRIBED_WAIT, Wire, hand_to_mixer};
use crate::interest::Interest;
use crate::messages::{FetchAsk, Fetched, MixerMsg, Publish, Stored};

/// Resumes waiting for Redis, per node.
pub const QUEUE: usize = 1024;
/// How long one Redis read may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream entry as `XRANGE` returns it: its id and its field-value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// The bus history thread's state.
pub struct BusHistory {
    cfg: BusConfig,
    input: Receiver<FetchAsk>,
    mixer: Sender<MixerMsg>,
    interest: Arc<Interest>,
    state: Arc<BusState>,
    /// Disconnected when the node stops.
    stop: Receiver<()>,
}

impl BusHistory {
    /// A history reader answering into `mixer`; returns it and its input.
    pub fn new(
        cfg: BusConfig,
        mixer: Sender<MixerMsg>,
        interest: Arc<Interest>,
        state: Arc<BusState>,
        stop: Receiver<()>,
    ) -> (BusHistory, Sender<FetchAsk>) {
        let (tx, input) = crossbeam_channel::bounded(QUEUE);
        let history = BusHistory {
            cfg,
            input,
            mixer,
            interest,
            state,
            stop,
        };
        (history, tx)
    }

    fn stopping(&self) -> bool {
        super::stopped(&self.stop)
    }

    /// Runs until the node stops.
    pub fn run(self) {
        let mut conn: Option<Link> = None;
        loop {
            let asked = match self.input.recv_timeout(Duration::from_millis(100)) {
                Ok(asked) => asked,
                Err(RecvTimeoutError::Timeout) if !self.stopping() => continue,
                Err(_) => break,
            };
            self.wait_subscribed();
            if conn.is_none() {
                conn = self.connect();
            }
            let stored = conn.as_mut().and_then(|c| match self.read(c, &asked) {
                Ok(stored) => Some(stored),
                Err(e) => {
                    log::warn!("redis history read failed ({e}); resuming from the ring");
                    None
                }
            });
            if stored.is_none() {
                // Reconnect on the next question.
                conn = None;
            }
            let msg = MixerMsg::Fetched(Box::new(Fetched { asked, stored }));
            if !hand_to_mixer(&self.mixer, msg, &self.stop) {
                return;
            }
        }
        log::debug!("bus history stopped");
    }

    /// Waits until the subscriber has applied the node's interest as it is now (the resumed
    /// topic is in it), at most [`SUBSCRIBED_WAIT`].
    fn wait_subscribed(&self) {
        self.state
            .await_applied(self.interest.version(), SUBSCRIBED_WAIT);
    }

    fn connect(&self) -> Option<Link> {
        Link::try_open(&self.cfg.url, COMMAND_TIMEOUT, "history")
    }

    /// The topic's last seq and its stored messages after `since` (at most `--history`).
    fn read(&self, c: &mut Link, asked: &FetchAsk) -> redis::RedisResult<Stored> {
        let topic = &asked.ask.topic;
        let from = format!("{}-0", asked.ask.since.saturating_add(1));
        let mut get = redis::cmd("GET");
        get.arg(self.cfg.seq_key(topic));
        let mut range = redis::cmd("XRANGE");
        range
            .arg(self.cfg.stream_key(topic))
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(self.cfg.history.max(1));
        let (latest, entries): (Option<u64>, Vec<StreamEntry>) = c.pipeline([get, range])?;
        let mut messages = Vec::with_capacity(entries.len());
        for (_id, fields) in entries {
            let Some((_, body)) = fields.into_iter().find(|(k, _)| k == "m") else {
                continue;
            };
            match parse_stored(topic, &body) {
                Some(p) => messages.push(p),
                None => log::debug!("ignoring a malformed stored message on {topic}"),
            }
        }
        Ok(Stored {
            latest: latest.unwrap_or(0),
            messages,
        })
    }
}

/// A stored message as the mixer takes it: its seq and publish time set.
fn parse_stored(topic: &Arc<str>, body: &str) -> Option<Publish> {
    let wire: Wire<'_> = serde_json::from_str(body).ok()?;
    Some(wire.into_publish(topic.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_becomes_a_sequenced_publish() {
        let topic: Arc<str> = Arc::from("room.a");
        let body = r#"{"seq":42,"id":"n-1","from":"alice","kind":"me","ts":7,"data":{"x":1}}"#;
        let p = parse_stored(&topic, body).unwrap();
        assert_eq!((p.seq, p.made_us, p.kind), (Some(42), Some(7), Some("me")));
        assert_eq!(p.from.as_deref(), Some("alice"));
        assert_eq!(p.data.get(), r#"{"x":1}"#);
        assert!(parse_stored(&topic, "not json").is_none());
    }
}
