//! A connection's socket: plain TCP, or TCP carrying TLS (`--tls-cert`).
//!
//! The rest of the connection reads and writes plaintext through [`Transport`] and never
//! asks which it is, except where TLS changes what a step means (a short read proves
//! nothing, encrypted bytes may wait after the outbox drained, the write side ends with a
//! `close_notify`). rustls does no I/O of its own: reads pull ciphertext from the socket into
//! the session and decrypt it, writes hand plaintext to the session, which frames it into
//! records and encrypts it, then put the records on the socket.
//!
//! One write per turn stays one write: the outbox hands every pending frame over as one
//! vectored write, rustls cuts records across frame boundaries (up to 16 KiB each, not one
//! record per frame), and the records go out in one vectored `write`. Encryption itself is
//! per connection: the shared frame bytes are encrypted once for each client they reach.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// The first byte of a TLS record carrying a handshake message (a ClientHello opens with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Encrypted bytes rustls may hold for one connection before it stops taking plaintext
/// (its own default): about four full records.
const TLS_SEND_BUFFER: usize = 64 * 1024;

/// What the first byte on a TLS port says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Nothing has arrived yet.
    Nothing,
    /// The peer closed without sending anything.
    Eof,
    /// A TLS handshake record: go on with TLS.
    Tls,
    /// Something else, e.g. a plain HTTP request sent to a TLS port.
    NotTls,
}

/// A connection's socket and, on a TLS port, its TLS session.
#[derive(Debug)]
pub struct Transport {
    tcp: TcpStream,
    tls: Option<Box<TlsState>>,
}

#[derive(Debug)]
struct TlsState {
    session: rustls::ServerConnection,
    /// The first byte was seen to open a TLS handshake.
    opened: bool,
    /// The socket reported the peer's EOF (`read_tls` gave 0).
    eof: bool,
    /// A `close_notify` is queued (the write side ends after it).
    closing: bool,
}

impl Transport {
    /// A plain TCP socket.
    pub fn plain(tcp: TcpStream) -> Self {
        Transport { tcp, tls: None }
    }

    /// A socket whose peer must speak TLS first.
    pub fn tls(tcp: TcpStream, mut session: rustls::ServerConnection) -> Self {
        session.set_buffer_limit(Some(TLS_SEND_BUFFER));
        let state = TlsState {
            session,
            opened: false,
            eof: false,
            closing: false,
        };
        Transport {
            tcp,
            tls: Some(Box::new(state)),
        }
    }

    /// The TCP socket (for socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Copies what the socket holds into `buf` without taking it (the PROXY header is looked
    /// at whole before exactly its bytes are read).
    pub fn peek_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.peek(buf)
    }

    /// Reads from the socket itself, under any TLS (the PROXY header precedes TLS).
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the TLS handshake is still under way (false on plain sockets).
    pub fn is_tls_handshaking(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.session.is_handshaking())
    }

    /// On a TLS port, looks at the first byte without taking it: a TLS handshake record, or
    /// something else (a plain HTTP request). Plain sockets, and TLS sockets past their first
    /// byte, answer [`Opening::Tls`] at once.
    pub fn opening(&mut self) -> io::Result<Opening> {
        let Some(tls) = self.tls.as_mut().filter(|t| !t.opened) else {
            return Ok(Opening::Tls);
        };
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first) {
            Ok(0) => Ok(Opening::Eof),
            Ok(_) if first[0] == TLS_HANDSHAKE_RECORD => {
                tls.opened = true;
                Ok(Opening::Tls)
            }
            Ok(_) => Ok(Opening::NotTls),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Opening::Nothing),
            Err(e) => Err(e),
        }
    }

    /// Gives up TLS on a socket whose peer did not open with it, so that a plain answer can
    /// be written before the connection closes.
    pub fn drop_tls(&mut self) {
        self.tls = None;
    }

    /// Whether encrypted bytes wait to be written (never on plain sockets).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.session.wants_write())
    }

    /// Writes the encrypted bytes waiting in the session: `Ok(true)` once none remain,
    /// `Ok(false)` when the socket is full first.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self.tls.as_mut() {
            None => Ok(true),
            Some(tls) => tls.flush(&mut self.tcp),
        }
    }

    /// Ends the write side: on TLS a `close_notify` first, then the TCP FIN. `Ok(false)`
    /// when the `close_notify` could not be written yet; call again once writable.
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        if let Some(tls) = self.tls.as_mut() {
            if !tls.closing {
                tls.closing = true;
                tls.session.send_close_notify();
            }
            if !tls.flush(&mut self.tcp)? {
                return Ok(false);
            }
        }
        self.tcp.shutdown(Shutdown::Write)?;
        Ok(true)
    }

    /// Registers the socket with a poll.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut self.tcp, token, interest)
    }

    /// Changes the socket's interest.
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut self.tcp, token, interest)
    }

    /// Removes the socket from a poll.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.tcp)
    }
}

impl TlsState {
    /// Plaintext into `buf`: what the session already decrypted, else ciphertext read from
    /// the socket until a record completes. `Ok(0)` is the end of the stream (the peer's
    /// `close_notify`, or its EOF); a TLS error queues the alert, tries once to send it, and
    /// comes back as `InvalidData`.
    fn read(&mut self, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify: an end like any other here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.session.read_tls(tcp) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                let _ = self.session.write_tls(tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Plaintext into the session (after the records it already holds are written, so the
    /// session never holds more than one call's worth), then as much as the socket takes.
    fn write_vectored(&mut self, tcp: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush(tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.session.writer().write_vectored(bufs)?;
        self.flush(tcp)?;
        Ok(n)
    }

    fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.tcp.read(buf),
            Some(tls) => tls.read(&mut self.tcp, buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.tcp.write(buf),
            Some(tls) => tls.write_vectored(&mut self.tcp, &[IoSlice::new(buf)]),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.tcp.write_vectored(bufs),
            Some(tls) => tls.write_vectored(&mut self.tcp, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.flush_pending()? {
            true => Ok(()),
            false => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}
