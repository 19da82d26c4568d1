//! `tickcast health`: the health probe a container's `HEALTHCHECK` runs. A scratch image has
//! no curl, so the binary asks its own server: one plain HTTP/1.0 `GET /healthz` on a fresh
//! connection, the answer read to its end, within a deadline.
//!
//! 200 is healthy whatever the body says: `degraded: redis` still serves the node's local
//! streams, which is why `/healthz` answers 200 then (`conn/handshake.rs`). The probe speaks
//! plain HTTP only; a `--tls-cert` port answers it 400, so it reports that port unhealthy.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Most bytes of an answer the probe reads (`/healthz` answers in under 200).
const MAX_ANSWER: usize = 4096;

/// The address to probe for a server listening on `listen`: an unspecified address
/// (`0.0.0.0`, `::`) means every interface, so the probe asks loopback on the same port.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Asks `addr` for `/healthz`; the body when it answers 200 within `timeout`, otherwise why
/// not.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{addr} did not answer within {timeout:?}"))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER {
                    return Err(format!("{addr} answered more than {MAX_ANSWER} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading from {addr}: {e}")),
        }
    }
    parse_answer(&answer).map_err(|e| format!("{addr}: {e}"))
}

/// The body of a complete HTTP answer whose status is 200.
fn parse_answer(answer: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer ended before its header did")?;
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("answered `{status_line}`"));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let probe = |s: &str| probe_addr(s.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probe("[::]:9000"), "[::1]:9000");
        assert_eq!(probe("10.1.2.3:80"), "10.1.2.3:80");
    }

    #[test]
    fn only_a_complete_200_is_healthy() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        assert_eq!(parse_answer(ok).unwrap(), "ok\n");
        let degraded = b"HTTP/1.1 200 OK\r\n\r\ndegraded: redis\n";
        assert_eq!(parse_answer(degraded).unwrap(), "degraded: redis\n");
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\nplain HTTP on a TLS port\n";
        assert!(parse_answer(refused).unwrap_err().contains("400"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(parse_answer(b"").is_err());
    }
}
