//! The bytes of the server's HTTP answers: `Connection: close` responses, the headers an
//! error status needs, and the `101 Switching Protocols` that completes an upgrade.

use std::fmt::Write as _;

/// The standard reason phrase for the statuses this server sends.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete `Connection: close` response.
pub fn response(status: u16, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = response_head(status, content_type, body, extra);
    out.extend_from_slice(body);
    out
}

/// The answer to `HEAD`: the head [`response`] would send for `body`, `Content-Length`
/// included, without the body (RFC 9110 §9.3.2).
pub fn response_head(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The extra headers that go with an error status (RFC 9110, RFC 6455 §4.4).
pub fn reject_headers(status: u16) -> &'static [(&'static str, &'static str)] {
    match status {
        401 => &[("WWW-Authenticate", "Bearer")],
        405 => &[("Allow", "GET, HEAD")],
        426 => &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
        _ => &[],
    }
}

/// The `101 Switching Protocols` answer completing a WebSocket handshake, with the
/// extensions agreed on (`Sec-WebSocket-Extensions`), if any.
pub fn switching_protocols(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(ext) = extensions {
        out.push_str("Sec-WebSocket-Extensions: ");
        out.push_str(ext);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}
