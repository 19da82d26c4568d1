//! The dashboard: one self-contained HTML page served at `GET /`, embedded in the binary.
//!
//! The page (`index.html`, inline CSS and JavaScript, nothing fetched from elsewhere, so it
//! works offline) connects to `/ws?topics=telemetry,ticks` and draws the server's telemetry
//! (status, connections per shard, msgs/s and latency charts over the last five minutes,
//! drops) and a live ticker table whose prices flash on change. DOM work is batched once per
//! animation frame, so a fast feed costs one repaint per frame, not one per message. After a
//! disconnect it reconnects by itself with exponential backoff and jitter, asking for the
//! ticks it missed with `since=ticks:<last seq>`.
//!
//! Elements the browser test reads carry stable ids and data attributes: `#status`
//! (`data-state` = `connecting` | `connected` | `reconnecting`), `#msgs-rate` (`data-value`,
//! published msgs/s), `#ticker tbody tr` (one per symbol, `data-symbol`, `data-price`) and
//! `#ticker` (`data-ticks`, ticks received since the page loaded).

/// The page, as served.
pub const PAGE: &str = include_str!("index.html");

/// Content type of [`PAGE`].
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        for external in [
            "http://",
            "https://",
            "//cdn",
            "<link",
            "<script src",
            "@import",
        ] {
            assert!(!PAGE.contains(external), "page refers to {external}");
        }
    }

    #[test]
    fn page_has_the_ids_the_browser_test_reads() {
        for id in [
            "id=\"status\"",
            "id=\"msgs-rate\"",
            "id=\"ticker\"",
            "id=\"chart-msgs\"",
            "id=\"chart-latency\"",
            "id=\"shards\"",
            "id=\"drops\"",
        ] {
            assert!(PAGE.contains(id), "missing {id}");
        }
        assert!(PAGE.contains("/ws?topics=telemetry,ticks"));
        assert!(PAGE.contains("since=ticks:"));
    }
}
