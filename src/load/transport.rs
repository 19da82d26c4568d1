//! What a load connection's bytes travel over: a plain TCP socket, or TLS on top of one.
//!
//! The plain path is the socket itself: reads go straight into the thread's scratch buffer
//! and writes straight from the connection's output, as before TLS existed; the enum costs
//! one branch per call. The TLS path drives a rustls [`ClientConnection`] (which does no I/O
//! of its own) from the same non-blocking mio loop: ciphertext is read from the socket in
//! one big read into a second per-thread buffer and handed to rustls from memory (rustls
//! alone would read 4 KiB per system call), decrypted records are taken out as plaintext,
//! and output is encrypted into rustls's send buffer and written with `write_tls` until the
//! socket is full. Application bytes wait until the handshake is over, so the HTTP upgrade
//! goes out only once the server is authenticated.
//!
//! Also here: opening the socket (source address, `IP_BIND_ADDRESS_NO_PORT`) and the names
//! of connect failures.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::ClientConnection;

use super::tls::TlsClient;

/// Plaintext rustls may hold before it is taken out: under its own 16 KiB limit, so feeding
/// ciphertext never fails with a full buffer.
const PLAINTEXT_HIGH_WATER: usize = 8 * 1024;

/// A connection's byte stream.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`: the socket itself.
    Plain(TcpStream),
    /// `wss://`: TLS over the socket (boxed: the plain variant stays one socket wide).
    Tls(Box<TlsStream>),
}

/// TLS over a non-blocking socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
}

/// How a write attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything given (and everything TLS had queued) is on the socket, or the socket is
    /// full: wait for the next WRITABLE edge.
    Progress,
    /// The socket is closed or broken.
    Broken,
}

impl Transport {
    /// Starts a non-blocking connect to `addr`, from `source` when given (bound with
    /// `IP_BIND_ADDRESS_NO_PORT`, so the port is picked at connect time per destination),
    /// with TLS on top when `tls` is given. Returns the transport and the moment the
    /// `connect` call was made (the handshake clock).
    pub fn connect(
        addr: SocketAddr,
        source: Option<Ipv4Addr>,
        tls: Option<&TlsClient>,
    ) -> io::Result<(Transport, std::time::Instant)> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            bind_no_port(&socket)?;
            socket.bind(&SocketAddr::new(ip.into(), 0).into())?;
        }
        // The TLS state (and its ClientHello) is made before the clock starts: it is the
        // client's own work, not the server's.
        let session = match tls {
            Some(t) => Some(
                ClientConnection::new(Arc::clone(&t.config), t.server_name.clone())
                    .map_err(io::Error::other)?,
            ),
            None => None,
        };
        let started = std::time::Instant::now();
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let sock = TcpStream::from_std(socket.into());
        let transport = match session {
            Some(tls) => Transport::Tls(Box::new(TlsStream { sock, tls })),
            None => Transport::Plain(sock),
        };
        Ok((transport, started))
    }

    /// The socket underneath (poll registration, connect errors).
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.sock,
        }
    }

    /// Whether TLS has records waiting to go out (handshake messages, alerts, encrypted
    /// data not yet on the socket). Always false for plain sockets.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.tls.wants_write(),
        }
    }

    /// Writes `out[*sent..]`, advancing `*sent`, until done or the socket is full. Over
    /// TLS, pending records go first, and application bytes only once the handshake is
    /// over.
    pub fn write(&mut self, out: &[u8], sent: &mut usize) -> Sent {
        match self {
            Transport::Plain(s) => write_plain(s, out, sent),
            Transport::Tls(t) => t.write(out, sent),
        }
    }

    /// Ends TLS with a close_notify alert, sent if the socket takes it now (best effort: the
    /// socket is dropped right after). Nothing for plain sockets.
    pub fn close_notify(&mut self) {
        if let Transport::Tls(t) = self {
            t.tls.send_close_notify();
            let _ = t.flush_records();
        }
    }
}

fn write_plain(s: &mut TcpStream, out: &[u8], sent: &mut usize) -> Sent {
    while *sent < out.len() {
        match s.write(&out[*sent..]) {
            Ok(0) => return Sent::Broken,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Progress,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Sent::Broken,
        }
    }
    Sent::Progress
}

/// What one read of ciphertext gave.
#[derive(Debug)]
pub enum Cipher {
    /// `n` bytes read into the buffer; feed them with [`TlsStream::feed`].
    Read(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed the TCP stream.
    Eof,
    /// The socket broke.
    Broken,
}

impl TlsStream {
    /// One read of ciphertext from the socket into `buf`.
    pub fn read_cipher(&mut self, buf: &mut [u8]) -> Cipher {
        loop {
            return match self.sock.read(buf) {
                Ok(0) => Cipher::Eof,
                Ok(n) => Cipher::Read(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Cipher::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Cipher::Broken,
            };
        }
    }

    /// Hands ciphertext from the front of `rest` to rustls and processes the records it
    /// completes, until `rest` is used up or enough plaintext waits to be taken out with
    /// [`TlsStream::take_plaintext`] (then call again with what is left). A TLS error
    /// (bad certificate, bad record, an alert) ends the connection: the alert rustls queued
    /// for the peer is sent if the socket takes it.
    pub fn feed(&mut self, rest: &mut &[u8]) -> Result<(), rustls::Error> {
        while !rest.is_empty() {
            // Reading from a slice fails only when rustls's buffers are full, which the
            // high-water mark below prevents; a refusal is treated like a bad record.
            match self.tls.read_tls(rest) {
                // close_notify came: rustls takes nothing more, and nothing may follow it.
                Ok(0) => {
                    *rest = &[];
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err(rustls::Error::General("TLS input buffer full".into())),
            }
            match self.tls.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() >= PLAINTEXT_HIGH_WATER => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.flush_records();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Copies decrypted bytes into `buf`: `Ok(0)` when there are none now (or the peer sent
    /// close_notify), an error when the stream ended without one.
    pub fn take_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Writes queued TLS records until none are left or the socket is full.
    fn flush_records(&mut self) -> Sent {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Sent::Broken,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Progress,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Sent::Broken,
            }
        }
        Sent::Progress
    }

    fn write(&mut self, out: &[u8], sent: &mut usize) -> Sent {
        loop {
            if self.flush_records() == Sent::Broken {
                return Sent::Broken;
            }
            if self.tls.wants_write() || self.tls.is_handshaking() || *sent >= out.len() {
                return Sent::Progress;
            }
            // Encrypts into rustls's send buffer (64 KiB at most), emptied just above.
            match self.tls.writer().write(&out[*sent..]) {
                Ok(0) | Err(_) => return Sent::Broken,
                Ok(n) => *sent += n,
            }
        }
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: bind the address now, choose the port at connect time,
/// so the full 4-tuple (not the source port alone) must be unique. The abuse clients bind
/// their sources with it too.
pub fn bind_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a live c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The failure reason for a connect error.
pub fn connect_reason(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::ECONNRESET) => "reset",
        Some(libc::ETIMEDOUT) => "timeout",
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => "no_source_port",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit",
        _ => "connect_error",
    }
}
