//! Socket-level steps of the hostile scenarios, below any WebSocket: connect from a chosen
//! loopback source address, the lingering close, the reset (`SO_LINGER` 0), and the kernel's
//! view of a socket's TCP state, read without touching its queues.
//!
//! Each is a few system calls; they live apart from the WebSocket client so that scenarios
//! that never upgrade (slowloris, bad HTTP) read as plainly as those that do.

use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::client::Ending;

/// Why a connection did not get as far as an open WebSocket, as counted.
pub fn connect_failure(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connect_refused",
        Some(libc::ECONNRESET) => "connect_reset",
        Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => "connect_timeout",
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => "no_source_port",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit",
        _ if e.kind() == io::ErrorKind::TimedOut => "connect_timeout",
        _ => "connect_error",
    }
}

/// Opens a TCP connection to `addr` (always loopback: checked by the caller's config), from
/// `source` when given. The source is bound with `IP_BIND_ADDRESS_NO_PORT`, so the port is
/// chosen at connect time for this destination and each source address has its own ~28k.
pub fn connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        bind_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip.into(), 0).into())?;
    }
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` on a socket about to be bound to an address alone (the
/// load generator's, so both bind sources the same way).
pub use crate::load::transport::bind_no_port;

/// Resets the connection: `SO_LINGER` 0, then close. The kernel sends RST at once and keeps
/// no state (no TIME_WAIT, no unsent data).
pub fn abort(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Lingering close: shut the write side, read until EOF or `timeout`, then close. Closing a
/// socket with unread input would make the kernel send RST instead of FIN.
pub fn linger_close(mut stream: TcpStream, timeout: Duration) -> Ending {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ending::Timeout;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ending::Eof,
            Ok(_) => {}
            Err(e) => {
                if let Some(end) = Ending::of_error(&e) {
                    return end;
                }
            }
        }
    }
}

/// The kernel's TCP state of a socket (`TCP_INFO`), read without touching its queues:
/// `ESTABLISHED` (1), `CLOSE_WAIT` (8: the peer sent FIN), `CLOSE` (7: reset), ...
pub fn tcp_state(stream: &TcpStream) -> Option<u8> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid value for getsockopt to overwrite.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid fd, and a writable buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.tcpi_state)
}

/// `TCP_ESTABLISHED` in [`tcp_state`].
pub const TCP_ESTABLISHED: u8 = 1;
