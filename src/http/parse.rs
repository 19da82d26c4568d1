//! Parsing a request head from the bytes received so far (httparse), bounded by
//! `--max-header` and a header count, into the parts the server acts on.

use super::{ParseError, Request};

/// Headers parsed per request; more is answered with 431.
const MAX_HEADERS: usize = 64;

/// Parses a request head from `buf`. `Ok(None)` means incomplete (and still under
/// `max_header`); on success returns the request and the bytes it used.
pub fn parse_request(
    buf: &[u8],
    max_header: usize,
) -> Result<Option<(Request, usize)>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_header => {
            return Err(ParseError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooLarge),
        Err(_) => return Err(ParseError::Malformed),
    };
    if used > max_header {
        return Err(ParseError::TooLarge);
    }
    let target = req.path.unwrap_or("/");
    let (path, query, bad_target) = match split_target(target) {
        Some((path, query)) => (path, query, false),
        None => (target, "", true),
    };
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        // A complete parse always has a version; none is treated as the stricter 1.0.
        version_minor: req.version.unwrap_or(0),
        bad_target,
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => out.upgrade_websocket |= has_token("websocket"),
            "connection" => out.connection_upgrade |= has_token("upgrade"),
            "sec-websocket-key" => {
                out.ws_key_count += 1;
                out.ws_key = Some(value);
            }
            "sec-websocket-version" => {
                out.ws_version_count += 1;
                out.ws_version = Some(value);
            }
            "origin" => {
                out.origin_count += 1;
                out.origin = Some(value);
            }
            "authorization" => out.authorization = Some(value),
            "sec-websocket-extensions" => append_list(&mut out.extensions, &value),
            "forwarded" => append_list(out.forwarded.get_or_insert_default(), &value),
            "x-forwarded-for" => append_list(out.x_forwarded_for.get_or_insert_default(), &value),
            "host" => {
                out.host_count += 1;
                out.host_invalid |= !is_valid_host(&value);
            }
            "content-length" => out.body |= !is_zero_length(&value),
            "transfer-encoding" => out.body = true,
            _ => {}
        }
    }
    Ok(Some((out, used)))
}

/// Appends one line's value to a list field (RFC 9110 §5.3: repeated lines are one list).
fn append_list(list: &mut String, value: &str) {
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(value);
}

/// Path and query of a request target: origin-form (`/p?q`) as it is, absolute-form
/// (`http://host/p?q`, RFC 9112 §3.2.2) without its scheme and authority (no path means `/`).
/// `None` for anything else: asterisk-form and authority-form are not for GET, and an
/// absolute URI needs a scheme of `http` or `https` and a host without userinfo (RFC 9110
/// §4.2).
fn split_target(target: &str) -> Option<(&str, &str)> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || !is_valid_host(authority) {
            return None;
        }
        &rest[end..]
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some((if path.is_empty() { "/" } else { path }, query))
}

/// Whether `value` can be a `uri-host [":" port]` (RFC 3986 §3.2.2): registered names,
/// percent-encoding, IP literals in brackets. Empty is valid (RFC 9112 §3.2); `@` (userinfo),
/// `/`, whitespace and controls are not.
fn is_valid_host(value: &str) -> bool {
    value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&c))
}

/// Whether a `Content-Length` value is `1*DIGIT` (RFC 9112 §6.2) and zero. Anything else
/// announces a body, or leaves unknown where the request ends.
fn is_zero_length(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|c| c == b'0')
}
