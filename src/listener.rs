//! The process's side of listening: the listening socket, bound the same way for tickcast
//! and the baseline server, and the open-file limit raised before thousands of clients
//! arrive. Kept apart from `server.rs`, which owns the threads, so the baseline and the load
//! tools use them without the server.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

/// Listen backlog; the kernel caps it at `net.core.somaxconn`. Large, so a burst of thousands
/// of connects is not met with SYN drops and one-second retransmits.
const BACKLOG: i32 = 4096;

/// Binds with a large backlog and SO_REUSEADDR (restarts do not wait for TIME_WAIT).
/// Public for the baseline server, which must listen exactly like tickcast.
pub fn bind_listener(addr: SocketAddr) -> io::Result<StdListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Raises the open-file soft limit to the hard limit; returns (before, after, hard).
pub fn raise_nofile_limit() -> io::Result<(u64, u64, u64)> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let raised = rlimit::increase_nofile_limit(hard)?;
    Ok((soft, raised, hard))
}
