//! The counters of permessage-deflate: what was negotiated at upgrades (shards), what the
//! mixer compressed and how much it saved, and the clients' compressed messages the shards
//! inflated or refused. Every counter is touched per upgrade or per message, never per
//! delivery.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of permessage-deflate.
#[derive(Debug, Clone, Default)]
pub struct DeflateMetrics {
    /// Upgrades that negotiated permessage-deflate.
    pub negotiated: Counter,
    /// Upgrades whose permessage-deflate offers were all declined (served uncompressed).
    pub declined: Counter,
    /// Messages the mixer compressed (once each, for every client that negotiated it).
    pub compressed: Counter,
    /// Runs compressed once on a shard as one batch, for its `?batch=1` clients that
    /// negotiated deflate.
    pub batches_compressed: Counter,
    /// Messages under `--deflate-min-bytes`, sent plain to everyone.
    pub too_small: Counter,
    /// Messages that did not shrink, sent plain to everyone.
    pub not_smaller: Counter,
    /// Payload bytes of the compressed messages and batches before compression.
    pub bytes_in: Counter,
    /// The same messages' payload bytes after compression.
    pub bytes_out: Counter,
    /// Compressed client messages inflated.
    pub inflated: Counter,
    /// Compressed client messages refused: invalid data (close 1007) or inflating past
    /// `--max-message` (close 1009).
    pub inflate_refused: Counter,
}

impl DeflateMetrics {
    /// Registers the counters under their exported names.
    pub fn register(&self, r: &mut Registry) {
        let all: [(&str, &str, &Counter); 10] = [
            (
                "deflate_negotiated",
                "Upgrades that negotiated permessage-deflate",
                &self.negotiated,
            ),
            (
                "deflate_declined",
                "Upgrades whose permessage-deflate offers were all declined (served plain)",
                &self.declined,
            ),
            (
                "deflate_compressed",
                "Messages compressed once for every client that negotiated permessage-deflate",
                &self.compressed,
            ),
            (
                "deflate_batches_compressed",
                "Runs compressed once on a shard as one batch, for its ?batch=1 deflate clients",
                &self.batches_compressed,
            ),
            (
                "deflate_too_small",
                "Messages under --deflate-min-bytes, sent plain to every client",
                &self.too_small,
            ),
            (
                "deflate_not_smaller",
                "Messages that did not shrink when compressed, sent plain to every client",
                &self.not_smaller,
            ),
            (
                "deflate_bytes_in",
                "Payload bytes of compressed messages before compression",
                &self.bytes_in,
            ),
            (
                "deflate_bytes_out",
                "Payload bytes of compressed messages after compression",
                &self.bytes_out,
            ),
            (
                "inflated_messages",
                "Compressed client messages inflated",
                &self.inflated,
            ),
            (
                "inflate_refused",
                "Compressed client messages refused: invalid (close 1007) or inflating past \
                 --max-message (close 1009)",
                &self.inflate_refused,
            ),
        ];
        for (name, help, counter) in all {
            r.register(name, help, counter.clone());
        }
    }
}
