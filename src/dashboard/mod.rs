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
//!
//! With `--auth-secret`, `/ws` wants a token, and a browser's WebSocket shows the page no
//! HTTP status, so the server tells the page instead: [`page`] marks `<body>` with
//! `data-auth="required"`. The page then takes its token from the URL fragment
//! (`/#token=...`: a fragment is never sent to the server, so it is in no log of the page's
//! request) or from a login field (`#login`), and says so in `#status`
//! (`data-state` = `needs-token` without one, `refused` while one is turned away).

use std::borrow::Cow;

/// The page, as it is in the binary (no token asked).
pub const PAGE: &str = include_str!("index.html");

/// The `<body>` of [`PAGE`], and the same when `/ws` needs a token.
const BODY_OPEN: &str = r#"<body data-auth="off">"#;
const BODY_AUTH: &str = r#"<body data-auth="required">"#;

/// The page as served: marked when the server wants a token (`auth`), so that it asks for
/// one instead of failing to connect without a word.
pub fn page(auth: bool) -> Cow<'static, str> {
    if auth {
        Cow::Owned(PAGE.replacen(BODY_OPEN, BODY_AUTH, 1))
    } else {
        Cow::Borrowed(PAGE)
    }
}

/// Content type of [`PAGE`].
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_asks_for_a_token_only_when_the_server_wants_one() {
        assert_eq!(PAGE.matches(BODY_OPEN).count(), 1);
        assert_eq!(page(false), PAGE);
        let auth = page(true);
        assert!(auth.contains(BODY_AUTH) && !auth.contains(BODY_OPEN));
        assert_eq!(auth.len(), PAGE.len() + BODY_AUTH.len() - BODY_OPEN.len());
    }

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
