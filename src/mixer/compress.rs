//! Which broadcasts the mixer compresses, and compressing them: once per message, for every
//! client on every shard that negotiated permessage-deflate (see [`crate::deflate`]).
//!
//! A message is compressed only when some subscriber of its topic (or of `*`) negotiated the
//! extension. The shards report that per topic into a second [`Interest`] registry, touched
//! on subscription changes only; the mixer rereads it when its version moves, so a message
//! costs one atomic load and a hash lookup before any compression is tried.

use std::collections::HashSet;
use std::sync::Arc;

use crate::deflate::{Deflated, Deflater};
use crate::frame::{Encoded, FrameBytes};
use crate::interest::Interest;
use crate::metrics::DeflateMetrics;

/// The mixer's compression: the compressor and which topics want it.
#[derive(Debug)]
pub(super) struct Compressor {
    deflater: Deflater,
    /// Topics with a subscriber that negotiated deflate, reported by the shards.
    interest: Arc<Interest>,
    /// The version of `interest` that `topics` and `wildcard` were read at.
    seen: Option<u64>,
    topics: HashSet<Arc<str>>,
    wildcard: bool,
    metrics: DeflateMetrics,
}

impl Compressor {
    /// Compresses messages of at least `min_bytes` on topics `interest` names.
    pub(super) fn new(interest: Arc<Interest>, min_bytes: usize, metrics: DeflateMetrics) -> Self {
        Compressor {
            deflater: Deflater::new(min_bytes),
            interest,
            seen: None,
            topics: HashSet::new(),
            wildcard: false,
            metrics,
        }
    }

    /// Whether some subscriber of `topic` negotiated deflate.
    fn wanted(&mut self, topic: &str) -> bool {
        let version = self.interest.version();
        if self.seen != Some(version) {
            let snap = self.interest.snapshot();
            self.topics = snap.topics.into_iter().collect();
            self.wildcard = snap.wildcard;
            self.seen = Some(snap.version);
        }
        // No deflate client anywhere (the common case without browsers): no hashing.
        self.wildcard || (!self.topics.is_empty() && self.topics.contains(topic))
    }

    /// `plain` (a text frame on `topic`), with its compressed twin when one is wanted and
    /// worth it.
    pub(super) fn encode(&mut self, topic: &str, plain: FrameBytes) -> Encoded {
        if !self.wanted(topic) {
            return Encoded::plain(plain);
        }
        let deflated = match self.deflater.deflate_frame(&plain) {
            Deflated::Frame {
                frame,
                plain,
                compressed,
            } => {
                self.metrics.compressed.inc();
                self.metrics.bytes_in.inc_by(plain as u64);
                self.metrics.bytes_out.inc_by(compressed as u64);
                Some(frame)
            }
            Deflated::TooSmall => {
                self.metrics.too_small.inc();
                None
            }
            Deflated::NotSmaller => {
                self.metrics.not_smaller.inc();
                None
            }
        };
        Encoded { plain, deflated }
    }
}

/// `plain` as the mixer sends it: through `compressor` when there is one.
pub(super) fn encode(
    compressor: &mut Option<Compressor>,
    topic: &str,
    plain: FrameBytes,
) -> Encoded {
    match compressor {
        Some(c) => c.encode(topic, plain),
        None => Encoded::plain(plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    #[test]
    fn compresses_only_topics_someone_wants_compressed() {
        let interest = Interest::new();
        let mut c = Compressor::new(interest.clone(), 16, DeflateMetrics::default());
        let big = frame::text(&"tick ".repeat(100));
        assert!(
            c.encode("ticks", big.clone()).deflated.is_none(),
            "nobody asked"
        );
        interest.add(&Arc::from("ticks"));
        let e = c.encode("ticks", big.clone());
        assert!(e.deflated.is_some_and(|d| d.len() < big.len()));
        assert!(c.encode("other", big.clone()).deflated.is_none());
        assert!(c.encode("ticks", frame::text("tiny")).deflated.is_none());
        interest.set_wildcard(true);
        assert!(c.encode("other", big.clone()).deflated.is_some());
        interest.set_wildcard(false);
        interest.remove("ticks");
        assert!(
            c.encode("ticks", big).deflated.is_none(),
            "the last one left"
        );
        assert_eq!(c.metrics.compressed.get(), 2);
        assert_eq!(c.metrics.too_small.get(), 1);
    }
}
