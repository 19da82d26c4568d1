//! `tickcast baseline`: the bare syscall pattern tickcast is measured against.
//!
//! One thread, one `mio::Poll`. It accepts WebSocket clients, generates messages itself at a
//! fixed rate (JSON text with `topic`/`seq`/`ts` like tickcast's, so the same load generator
//! measures both), and for each message appends one pre-encoded frame to every client's
//! pending bytes; each loop turn then flushes every client with one `write`. That is the
//! batching tickcast does, without its queues, outboxes, timers, topics or serializer: a
//! sweep can state tickcast's throughput as a fraction of what this machine does with the
//! syscalls alone.
//!
//! Each message's `ts` is the time it was due (start + seq / rate), not the time the loop got
//! to it: a one-thread loop makes its messages only between flush passes, and stamping them
//! then would leave its own lag out of the latency. tickcast's producer is a thread of its
//! own that stamps messages as they are made, whatever the shards are doing, so stamping by
//! due time puts both on the same footing.
//!
//! Bounded like the rest of the project: clients, pending bytes per client (beyond: the frame
//! is dropped for that client and counted), request head size, and messages per turn.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::clock::unix_micros;
use crate::frame::FrameBuilder;
use crate::http;

/// Token of the listening socket (never a slab index).
const LISTENER: Token = Token(usize::MAX);
/// Messages generated per turn at most, so a stalled clock cannot produce a flood.
const MAX_BURST: u64 = 10_000;
/// Longest poll, so `stop` is seen promptly.
const MAX_POLL: Duration = Duration::from_millis(50);
/// Read buffer shared by every client.
const SCRATCH: usize = 64 * 1024;

/// Settings of the baseline server.
#[derive(Debug, Clone)]
pub struct BaselineConfig {
    /// Address to listen on. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// Messages generated per second. Default 100.
    pub rate: f64,
    /// Approximate size of each message's `data` object (0 = natural, about 90 bytes, close
    /// to a tickcast tick).
    pub payload_bytes: usize,
    /// Bytes a client may have pending; a frame that would pass it is dropped for that
    /// client (counted). Default 1 MiB, tickcast's outbox limit.
    pub max_pending: usize,
    /// Clients served at once; more are refused at accept. Default 100,000.
    pub max_clients: usize,
    /// Largest request head. Default 8 KiB.
    pub max_header: usize,
    /// Topic name written in every message. Default `ticks`.
    pub topic: String,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            rate: 100.0,
            payload_bytes: 0,
            max_pending: 1024 * 1024,
            max_clients: 100_000,
            max_header: 8 * 1024,
            topic: "ticks".into(),
        }
    }
}

impl BaselineConfig {
    /// Checks the settings once.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate <= 10_000_000.0) {
            return Err("--rate must be between 0 and 10,000,000 messages/s".into());
        }
        if self.payload_bytes > 1024 * 1024 {
            return Err("--payload-bytes must be at most 1 MiB".into());
        }
        if self.max_pending < 4096 || self.max_clients == 0 || self.max_header < 512 {
            return Err("limits too small".into());
        }
        Ok(())
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaselineStats {
    /// Messages generated.
    pub messages: u64,
    /// Frames dropped for a client whose pending bytes were full.
    pub drops: u64,
    /// Clients upgraded.
    pub upgraded: u64,
    /// Writes made.
    pub writes: u64,
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    /// Request bytes until upgraded; `None` once open.
    head: Option<Vec<u8>>,
    pending: Vec<u8>,
    sent: usize,
    /// In the flush list.
    queued: bool,
    /// The last write would block: wait for a WRITABLE edge.
    blocked: bool,
    closed: bool,
}

/// A bound baseline server.
#[derive(Debug)]
pub struct Baseline {
    cfg: BaselineConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Baseline {
    /// Validates `cfg` and binds its address.
    pub fn bind(cfg: BaselineConfig) -> io::Result<Baseline> {
        cfg.validate().map_err(io::Error::other)?;
        let std_listener = crate::server::bind_listener(cfg.listen)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        Ok(Baseline {
            cfg,
            listener: TcpListener::from_std(std_listener),
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<BaselineStats> {
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut clients: Slab<Client> = Slab::new();
        let mut dirty: Vec<usize> = Vec::new();
        let mut closed: Vec<usize> = Vec::new();
        let mut scratch = vec![0u8; SCRATCH];
        let mut builder = FrameBuilder::new();
        let data = tick_data(self.cfg.payload_bytes);
        let mut stats = BaselineStats::default();
        let start = Instant::now();
        let start_us = unix_micros();
        let interval = Duration::from_secs_f64(1.0 / self.cfg.rate);
        while !stop.load(Ordering::Relaxed) {
            // Generate what is due, appending each frame to every open client.
            let now = Instant::now();
            let due = (now.duration_since(start).as_secs_f64() * self.cfg.rate) as u64;
            stats.messages = stats.messages.max(due.saturating_sub(MAX_BURST));
            while stats.messages < due {
                stats.messages += 1;
                let due_us = start_us + (stats.messages as f64 * 1e6 / self.cfg.rate) as u64;
                let frame = self.message(&mut builder, stats.messages, due_us, &data);
                for (token, c) in clients.iter_mut() {
                    if c.head.is_some() || c.closed {
                        continue;
                    }
                    if c.pending.len() - c.sent + frame.len() > self.cfg.max_pending {
                        stats.drops += 1;
                        continue;
                    }
                    c.pending.extend_from_slice(&frame);
                    if !c.queued && !c.blocked {
                        c.queued = true;
                        dirty.push(token);
                    }
                }
            }
            // One write per client with pending bytes.
            for token in dirty.drain(..) {
                if let Some(c) = clients.get_mut(token) {
                    c.queued = false;
                    stats.writes += 1;
                    flush(c);
                    if c.closed {
                        closed.push(token);
                    }
                }
            }
            for token in closed.drain(..) {
                if clients.get(token).is_some_and(|c| c.closed) {
                    let mut c = clients.remove(token);
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
            let next = start + interval.mul_f64((stats.messages + 1) as f64);
            let timeout = next.saturating_duration_since(Instant::now()).min(MAX_POLL);
            if let Err(e) = poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept_all(&poll, &mut clients);
                    continue;
                }
                let token = event.token().0;
                let Some(c) = clients.get_mut(token) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    stats.upgraded += u64::from(read(c, &mut scratch, self.cfg.max_header));
                }
                if event.is_writable() {
                    c.blocked = false;
                }
                if c.closed {
                    closed.push(token);
                } else if c.sent < c.pending.len() && !c.queued && !c.blocked {
                    c.queued = true;
                    dirty.push(token);
                }
            }
        }
        Ok(stats)
    }

    /// Frames message `seq`, due at `ts` (µs since the Unix epoch):
    /// `{"topic":..,"seq":..,"ts":..,"data":..}`, encoded once.
    fn message(
        &self,
        builder: &mut FrameBuilder,
        seq: u64,
        ts: u64,
        data: &str,
    ) -> crate::frame::FrameBytes {
        let out = builder.payload();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"topic":"{}","seq":{seq},"ts":{ts},"data":{data}}}"#,
            self.cfg.topic,
        );
        builder.finish_text()
    }

    fn accept_all(&mut self, poll: &Poll, clients: &mut Slab<Client>) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if clients.len() >= self.cfg.max_clients {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let entry = clients.vacant_entry();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if poll
                        .registry()
                        .register(&mut stream, Token(entry.key()), interest)
                        .is_ok()
                    {
                        entry.insert(Client {
                            stream,
                            head: Some(Vec::new()),
                            pending: Vec::new(),
                            sent: 0,
                            queued: false,
                            blocked: false,
                            closed: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: try again on the next readable edge.
                    log::warn!("baseline: accept failed: {e}");
                    return;
                }
            }
        }
    }
}

/// Writes once. A short write leaves the rest for the next turn.
fn flush(c: &mut Client) {
    if c.sent >= c.pending.len() {
        return;
    }
    match c.stream.write(&c.pending[c.sent..]) {
        Ok(n) => c.sent += n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.blocked = true,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(_) => c.closed = true,
    }
    if c.sent == c.pending.len() {
        c.pending.clear();
        c.sent = 0;
    } else if c.sent > c.pending.len() / 2 {
        c.pending.drain(..c.sent);
        c.sent = 0;
    }
}

/// Reads what is there: the request head until upgraded, then discards. Returns whether
/// this read completed the upgrade.
fn read(c: &mut Client, scratch: &mut [u8], max_header: usize) -> bool {
    let mut upgraded = false;
    loop {
        let n = match c.stream.read(scratch) {
            Ok(0) => {
                c.closed = true;
                return upgraded;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return upgraded,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                c.closed = true;
                return upgraded;
            }
        };
        let Some(head) = c.head.as_mut() else {
            continue;
        };
        head.extend_from_slice(&scratch[..n]);
        match http::parse_request(head, max_header) {
            Ok(None) => {}
            Ok(Some((req, _))) => {
                let Some(key) = req.ws_key else {
                    c.closed = true;
                    return false;
                };
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                c.pending = http::switching_protocols(&accept, None);
                c.head = None;
                upgraded = true;
            }
            Err(_) => {
                c.closed = true;
                return false;
            }
        }
    }
}

/// A tick-like JSON object of about `payload_bytes` (natural size when 0).
fn tick_data(payload_bytes: usize) -> String {
    let natural =
        r#"{"feed":0,"symbol":"ACME","price":101.2345,"bid":101.2143,"ask":101.2547,"size":512}"#;
    // `,"pad":""` costs 9 bytes before the first padding byte.
    if payload_bytes > natural.len() + 9 {
        let pad = "x".repeat(payload_bytes - natural.len() - 9);
        format!("{},\"pad\":\"{pad}\"}}", &natural[..natural.len() - 1])
    } else {
        natural.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_data_is_json_of_the_requested_size() {
        for size in [0usize, 200, 1000] {
            let d = tick_data(size);
            let v: serde_json::Value = serde_json::from_str(&d).unwrap();
            assert_eq!(v["symbol"], "ACME");
            if size > 0 {
                assert_eq!(d.len(), size);
            }
        }
    }

    #[test]
    fn invalid_settings_are_refused() {
        let cfg = BaselineConfig {
            rate: 0.0,
            ..BaselineConfig::default()
        };
        assert!(cfg.validate().is_err());
        BaselineConfig::default().validate().unwrap();
    }
}
