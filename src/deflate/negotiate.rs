//! Reading a client's `Sec-WebSocket-Extensions` offers and answering them (RFC 7692 §5,
//! §7.1).
//!
//! The first `permessage-deflate` offer tickcast can honour is accepted, always with the
//! same answer ([`RESPONSE`]): `server_no_context_takeover`, since one compressed frame is
//! shared by every client, and `client_no_context_takeover`, which a server may ask of any
//! client (§7.1.1.2), so a connection keeps no inflate window between messages. An offer is
//! declined, and the next one tried, when it has a parameter RFC 7692 does not define for an
//! offer, a parameter twice, or an invalid value (§5), or when it asks for
//! `server_max_window_bits` below 15: the shared frames are compressed once with the full
//! window, so one client's smaller window cannot be honoured. Declining is never an error:
//! the connection is served uncompressed.

/// The extension tickcast speaks.
const NAME: &str = "permessage-deflate";

/// The answer to an accepted offer, the value of the 101's `Sec-WebSocket-Extensions`.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// What came of a request's extension offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// No `permessage-deflate` offer was made.
    NotOffered,
    /// Offers were made and none could be honoured: served uncompressed.
    Declined,
    /// An offer was accepted: answer with [`RESPONSE`].
    Accepted,
}

/// Reads the offers in `headers` (every `Sec-WebSocket-Extensions` value of the request, in
/// order) and says what to answer.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Agreement {
    let mut offered = false;
    for header in headers {
        for offer in split_outside_quotes(header, ',') {
            let mut parts = split_outside_quotes(offer, ';');
            let Some(name) = parts.next() else { continue };
            if !name.trim().eq_ignore_ascii_case(NAME) {
                continue;
            }
            offered = true;
            if acceptable(parts) {
                return Agreement::Accepted;
            }
        }
    }
    if offered {
        Agreement::Declined
    } else {
        Agreement::NotOffered
    }
}

/// Whether an offer's parameters are valid and can be honoured.
fn acceptable<'a>(params: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = [false; 4];
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (param.trim(), None),
        };
        let (slot, ok) = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            // Only the full window can be honoured (see the module docs).
            "server_max_window_bits" => (2, value.and_then(window_bits) == Some(15)),
            // Without a value: the client could take a smaller window if asked. With one:
            // it will not use more; every window fits the 15-bit inflater.
            "client_max_window_bits" => (3, value.is_none_or(|v| window_bits(v).is_some())),
            _ => return false,
        };
        if !ok || seen[slot] {
            return false;
        }
        seen[slot] = true;
    }
    true
}

/// A window size parameter's value: 8 to 15, as `1*DIGIT` without a leading zero.
fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?;
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A quoted-string's content (a parameter value must still be a token once unquoted,
/// RFC 7692 §7.1; tokens never hold escapes).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('\\')),
        None => Some(v),
    }
}

/// Splits on `sep` except inside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    s.split(move |c: char| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == sep && !in_quotes
    })
    .filter(|part| !part.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(headers: &[&str]) -> Agreement {
        negotiate(headers.iter().copied())
    }

    #[test]
    fn browsers_offers_are_accepted() {
        // Chromium's and Firefox's offer.
        assert_eq!(
            agree(&["permessage-deflate; client_max_window_bits"]),
            Agreement::Accepted
        );
        assert_eq!(agree(&["permessage-deflate"]), Agreement::Accepted);
        assert_eq!(
            agree(&[
                "Permessage-Deflate; Server_No_Context_Takeover; client_no_context_takeover; \
                 server_max_window_bits=15; client_max_window_bits=\"10\""
            ]),
            Agreement::Accepted
        );
    }

    #[test]
    fn no_offer_is_not_a_refusal() {
        assert_eq!(agree(&[]), Agreement::NotOffered);
        assert_eq!(agree(&["x-webkit-deflate-frame"]), Agreement::NotOffered);
        assert_eq!(agree(&[""]), Agreement::NotOffered);
    }

    #[test]
    fn invalid_or_unsupported_offers_are_declined() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=\"1\\5\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(agree(&[offer]), Agreement::Declined, "{offer}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins_across_lines() {
        assert_eq!(
            agree(&[
                "permessage-deflate; server_max_window_bits=9, foo",
                "permessage-deflate; client_max_window_bits=12"
            ]),
            Agreement::Accepted
        );
        assert_eq!(
            agree(&["permessage-deflate; server_max_window_bits=9, permessage-deflate"]),
            Agreement::Accepted
        );
        // A comma inside quotes does not split offers.
        assert_eq!(
            agree(&["permessage-deflate; x=\"a, permessage-deflate\""]),
            Agreement::Declined
        );
    }
}
