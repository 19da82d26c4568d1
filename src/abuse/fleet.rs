//! Many WebSockets at once on one thread (mio): the subscribers of `shutdown` and the
//! clients of `reconnect_storm`, too many for a thread each.
//!
//! Each connection is opened non-blocking (from a loopback source address bound with
//! `IP_BIND_ADDRESS_NO_PORT`), upgraded with the load generator's request and answer check,
//! timed from `connect()` to the `101`, then read until the server ends it: every frame is
//! skipped except a close, which is answered with the same code as a well-behaved client
//! does. What ended each connection is kept as an [`Ending`] or a failure label.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::client::{self, Ending, Tally};
use crate::load::wire::{self, FrameReader};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 1 << 20;

/// Where one connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// TCP connect or upgrade in progress.
    Opening,
    /// Upgraded.
    Open,
    /// Failed before the upgrade: the reason.
    Failed(String),
    /// Ended after the upgrade.
    Ended(Ending),
}

/// One connection of the fleet.
struct Conn {
    /// The socket (`None` when even the connect call failed).
    stream: Option<TcpStream>,
    started: Instant,
    key: String,
    request: Vec<u8>,
    written: usize,
    head: Vec<u8>,
    reader: FrameReader,
    state: State,
    /// connect() -> 101.
    upgraded_after: Option<Duration>,
    /// Time of the ending (after the upgrade).
    ended_at: Option<Instant>,
    /// Text frames received after the upgrade (the welcome included).
    texts: u64,
}

/// A set of WebSockets on one poll.
pub struct Fleet {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    /// Time allowed from connect to 101.
    pub handshake_timeout: Duration,
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> io::Result<Fleet> {
        Ok(Fleet {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            buf: vec![0; 64 * 1024],
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// Starts one connection to `addr` from `source`, upgrading on `path`.
    pub fn open(&mut self, addr: SocketAddr, source: Option<Ipv4Addr>, path: &str) {
        let started = Instant::now();
        let key = tungstenite::handshake::client::generate_key();
        let request = wire::upgrade_request(&addr.to_string(), path, &key);
        let token = Token(self.conns.len());
        let stream = match start_connect(addr, source) {
            Ok(mut s) => match self.poll.registry().register(
                &mut s,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => s,
                Err(e) => return self.push_failed(started, &e),
            },
            Err(e) => return self.push_failed(started, &e),
        };
        self.conns.push(Conn {
            stream: Some(stream),
            started,
            key,
            request,
            written: 0,
            head: Vec::new(),
            reader: FrameReader::default(),
            state: State::Opening,
            upgraded_after: None,
            ended_at: None,
            texts: 0,
        });
    }

    /// Records a connection that failed before it had a socket.
    fn push_failed(&mut self, started: Instant, e: &io::Error) {
        self.conns.push(Conn {
            stream: None,
            started,
            key: String::new(),
            request: Vec::new(),
            written: 0,
            head: Vec::new(),
            reader: FrameReader::default(),
            state: State::Failed(client::connect_failure(e).to_string()),
            upgraded_after: None,
            ended_at: None,
            texts: 0,
        });
    }

    /// Connections in each state: (opening, open, failed, ended).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for conn in &self.conns {
            match conn.state {
                State::Opening => c.0 += 1,
                State::Open => c.1 += 1,
                State::Failed(_) => c.2 += 1,
                State::Ended(_) => c.3 += 1,
            }
        }
        c
    }

    /// Handles events for at most `wait`; times out handshakes that took too long.
    pub fn turn(&mut self, wait: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let tokens: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for t in tokens {
            if let Some(conn) = self.conns.get_mut(t) {
                conn.on_ready(&mut self.buf);
            }
        }
        let now = Instant::now();
        for conn in &mut self.conns {
            if conn.state == State::Opening
                && now.duration_since(conn.started) >= self.handshake_timeout
            {
                conn.state = State::Failed("timeout_in_handshake".into());
            }
        }
        Ok(())
    }

    /// Turns until `done(self)` holds or `deadline` passes.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Fleet) -> bool,
    ) -> io::Result<()> {
        while !done(self) && Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            self.turn(wait)?;
        }
        Ok(())
    }

    /// Closes every socket at once (a plain close: FIN, or RST if input was unread) and
    /// forgets the connections.
    pub fn drop_all(&mut self) {
        for conn in self.conns.drain(..) {
            if let Some(mut s) = conn.stream {
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
    }

    /// Endings after the upgrade, and failures before it, counted by label.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::new();
        for conn in &self.conns {
            match &conn.state {
                State::Opening => client::count(&mut t, "opening"),
                State::Open => client::count(&mut t, "open"),
                State::Failed(reason) => client::count(&mut t, reason.clone()),
                State::Ended(end) => client::count(&mut t, end.label()),
            }
        }
        t
    }

    /// connect() -> 101 of every upgraded connection, ms.
    pub fn handshake_ms(&self) -> Vec<f64> {
        self.conns
            .iter()
            .filter_map(|c| c.upgraded_after.map(|d| d.as_secs_f64() * 1e3))
            .collect()
    }

    /// The latest moment a connection was upgraded.
    pub fn last_upgrade(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter_map(|c| c.upgraded_after.map(|d| c.started + d))
            .max()
    }

    /// Text frames each connection received after its upgrade (the welcome included), in
    /// the order they were opened; connections that never upgraded count 0.
    pub fn texts(&self) -> Vec<u64> {
        self.conns.iter().map(|c| c.texts).collect()
    }

    /// The moments connections were ended after their upgrade.
    pub fn ended_at(&self) -> Vec<Instant> {
        self.conns.iter().filter_map(|c| c.ended_at).collect()
    }
}

impl Conn {
    fn on_ready(&mut self, buf: &mut [u8]) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if self.state == State::Opening && self.written < self.request.len() {
            match stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    self.state = State::Failed(client::connect_failure(&e).to_string());
                    return;
                }
                Ok(None) => {}
            }
            match stream.write(&self.request[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return,
                Err(e) => {
                    self.state = State::Failed(client::connect_failure(&e).to_string());
                    return;
                }
            }
        }
        loop {
            if matches!(self.state, State::Failed(_) | State::Ended(_)) {
                return;
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.read(buf) {
                Ok(0) => return self.end(Ending::Eof, "eof_in_handshake"),
                Ok(n) => self.on_bytes(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return,
                Err(e) => match Ending::of_error(&e) {
                    None => {}
                    Some(end) => {
                        let label = format!("{}_in_handshake", end.label());
                        return self.end(end, &label);
                    }
                },
            }
        }
    }

    /// The stream ended: a failure while opening, an ending once open.
    fn end(&mut self, end: Ending, failure: &str) {
        self.state = match self.state {
            State::Opening => State::Failed(failure.to_string()),
            _ => {
                self.ended_at = Some(Instant::now());
                State::Ended(end)
            }
        };
    }

    fn on_bytes(&mut self, data: &[u8]) {
        let frames = if self.state == State::Opening {
            self.head.extend_from_slice(data);
            match wire::check_upgrade_response(&self.head, &self.key) {
                Ok(None) => return,
                Ok(Some(used)) => {
                    self.upgraded_after = Some(self.started.elapsed());
                    self.state = State::Open;
                    std::mem::take(&mut self.head).split_off(used)
                }
                Err(e) => {
                    self.state = State::Failed(e.reason());
                    return;
                }
            }
        } else {
            data.to_vec()
        };
        let mut close = None;
        let texts = &mut self.texts;
        let result = self.reader.feed(&frames, MAX_FRAME, |info, payload| {
            match u8::from(info.opcode) {
                client::op::CLOSE => {
                    close = Some(wire::close_code(payload));
                    return false;
                }
                client::op::TEXT => *texts += 1,
                _ => {}
            }
            true
        });
        if result.is_err() {
            return self.end(Ending::BadFrame, "bad_frame");
        }
        if let Some(code) = close {
            // Answer the close with its code, as a well-behaved client does.
            if let Some(s) = self.stream.as_mut() {
                let _ = s.write(&client::close_frame(code));
            }
            self.end(Ending::Close(code), "close_in_handshake");
        }
    }
}

/// A non-blocking connect from `source` (bound with `IP_BIND_ADDRESS_NO_PORT`).
fn start_connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        client::bind_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip.into(), 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
