//! A room member's reader: one thread reading one WebSocket until told to stop or until the
//! server ends it, keeping what the room scenarios compare: the room's messages (count, last
//! seq, gaps), who published them (`from`, and the publisher's own number `n` in `data`),
//! the error frames by code, and how the stream ended.
//!
//! A member that is also a publisher shares its socket with a writer thread; both write
//! through one [`Writer`], so a close reply never lands inside a half-written publish.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::client::{self, Ending, Next, Tally, WsConn};

/// How long one read blocks before the stop flag is looked at.
const POLL: Duration = Duration::from_millis(50);
/// A wait for messages ends early once no member received anything for this long.
const STALL: Duration = Duration::from_secs(2);

/// The write side of a member's socket, shared by its reader (close replies) and a
/// publisher loop.
pub type Writer = Arc<Mutex<TcpStream>>;

/// What one publisher's messages looked like to a member.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FromStats {
    /// Messages received from this publisher.
    pub count: u64,
    /// The highest `n` seen.
    pub max_n: u64,
    /// `n` values skipped (a publish of this sender missing between two received ones).
    pub n_holes: u64,
}

/// What a member saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberReport {
    /// Room messages received.
    pub messages: u64,
    /// The first and last seq received.
    pub first_seq: Option<u64>,
    /// The last seq received.
    pub last_seq: u64,
    /// Seqs missing between consecutive messages.
    pub gaps: u64,
    /// Messages whose seq did not go up.
    pub reordered: u64,
    /// Error frames by code.
    pub errors: Tally,
    /// Room messages by publisher.
    pub from: BTreeMap<String, FromStats>,
    /// How the server ended the stream, if it did before the member was stopped.
    pub ending: Option<Ending>,
    /// Seconds from the member's start to that ending.
    pub ended_after: Option<f64>,
}

impl MemberReport {
    /// Whether every seq from 1 to the last was received, once and in order.
    pub fn complete(&self) -> bool {
        self.gaps == 0
            && self.reordered == 0
            && (self.messages == 0 || self.first_seq == Some(1))
            && self.messages == self.last_seq
    }

    /// Error frames received, all codes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Live figures of a running member, readable while it runs.
#[derive(Debug, Default)]
pub struct Live {
    /// The last room seq received.
    pub last_seq: AtomicU64,
    /// Error frames received.
    pub errors: AtomicU64,
    /// Set once the server ended the stream.
    pub ended: AtomicBool,
    /// Set once the room's presence snapshot arrived: the mixer has the member in the room,
    /// so every message sequenced from now on is for it too.
    pub joined: AtomicBool,
}

/// A member reading on its own thread.
pub struct Member {
    stop: Arc<AtomicBool>,
    /// What it has seen so far.
    pub live: Arc<Live>,
    /// The shared write side (publishers write through it).
    pub writer: Writer,
    thread: JoinHandle<MemberReport>,
}

impl Member {
    /// Starts reading `conn` for messages of `room`.
    pub fn spawn(conn: WsConn, room: &str) -> Result<Member, String> {
        let writer = Arc::new(Mutex::new(
            conn.stream.try_clone().map_err(|e| format!("clone: {e}"))?,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let thread = {
            let (stop, live, writer, room) =
                (stop.clone(), live.clone(), writer.clone(), room.to_string());
            std::thread::Builder::new()
                .name("abuse-member".into())
                .spawn(move || read_loop(conn, &room, &stop, &live, &writer))
                .map_err(|e| format!("member thread: {e}"))?
        };
        Ok(Member {
            stop,
            live,
            writer,
            thread,
        })
    }

    /// Stops reading and returns what was seen; a socket the server has not ended is then
    /// reset (the scenario is over, nothing is worth a FIN handshake).
    pub fn finish(self) -> MemberReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// Waits (at most `limit`) until every member has joined its room; false if one has not.
pub fn wait_joined(members: &[&Member], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if members.iter().all(|m| m.live.joined.load(Ordering::SeqCst)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (at most `limit`) until every member has seen seq `last` or has ended, or until
/// nothing new arrived at any member for `STALL` (what was lost does not come later).
pub fn wait_for_seq(members: &[&Member], last: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let progress = || -> u64 {
        members
            .iter()
            .map(|m| m.live.last_seq.load(Ordering::SeqCst))
            .sum()
    };
    let (mut seen, mut moved) = (progress(), Instant::now());
    while Instant::now() < deadline
        && moved.elapsed() < STALL
        && members.iter().any(|m| {
            !m.live.ended.load(Ordering::SeqCst) && m.live.last_seq.load(Ordering::SeqCst) < last
        })
    {
        std::thread::sleep(Duration::from_millis(20));
        let now = progress();
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
    }
}

/// Writes one frame through a shared writer.
pub fn send(writer: &Writer, bytes: &[u8]) -> std::io::Result<()> {
    match writer.lock() {
        Ok(mut s) => s.write_all(bytes),
        Err(_) => Err(std::io::Error::other("writer lock poisoned")),
    }
}

fn read_loop(
    mut conn: WsConn,
    room: &str,
    stop: &AtomicBool,
    live: &Live,
    writer: &Writer,
) -> MemberReport {
    let started = Instant::now();
    let mut r = MemberReport::default();
    while !stop.load(Ordering::SeqCst) {
        match conn.next(Instant::now() + POLL) {
            Next::Frame(f) if f.opcode == client::op::TEXT => {
                // Error frames can come by the hundred thousand: read their code cheaply.
                if let Some(code) = error_code(&f.payload) {
                    client::count(&mut r.errors, code);
                    live.errors.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&f.payload) else {
                    continue;
                };
                if v["type"] == "presence" && v["event"] == "snapshot" && v["topic"] == room {
                    live.joined.store(true, Ordering::SeqCst);
                    continue;
                }
                if v["topic"] != room {
                    continue;
                }
                let Some(seq) = v["seq"].as_u64() else {
                    continue;
                };
                on_room_message(&mut r, seq, &v);
                live.last_seq.store(r.last_seq, Ordering::SeqCst);
            }
            Next::Frame(_) | Next::End(Ending::Timeout) => {}
            Next::End(end) => {
                if let Ending::Close(code) = end {
                    // A well-behaved client answers the close with the same code.
                    let _ = send(writer, &client::close_frame(code));
                }
                r.ending = Some(end);
                r.ended_after = Some(started.elapsed().as_secs_f64());
                live.ended.store(true, Ordering::SeqCst);
                client::linger_close(conn.stream, Duration::from_secs(1));
                return r;
            }
        }
    }
    client::abort(conn.stream);
    r
}

/// The code of an error frame (`{"type":"error","code":"...",...}`), `None` for others.
pub fn error_code(payload: &[u8]) -> Option<String> {
    memchr::memmem::find(payload, b"\"type\":\"error\"")?;
    let at = memchr::memmem::find(payload, b"\"code\":\"")? + 8;
    let len = memchr::memchr(b'"', &payload[at..])?;
    Some(String::from_utf8_lossy(&payload[at..at + len]).into_owned())
}

/// Counts one room message: seq order, and its publisher's number `data.n`.
fn on_room_message(r: &mut MemberReport, seq: u64, v: &Value) {
    r.messages += 1;
    r.first_seq.get_or_insert(seq);
    if r.messages > 1 {
        if seq > r.last_seq + 1 {
            r.gaps += seq - r.last_seq - 1;
        } else if seq <= r.last_seq {
            r.reordered += 1;
        }
    } else if seq > 1 {
        r.gaps += seq - 1;
    }
    r.last_seq = r.last_seq.max(seq);
    if let Some(from) = v["from"].as_str() {
        let s = r.from.entry(from.to_string()).or_default();
        s.count += 1;
        if let Some(n) = v["data"]["n"].as_u64() {
            if n > s.max_n + 1 {
                s.n_holes += n - s.max_n - 1;
            }
            s.max_n = s.max_n.max(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, from: &str, n: u64) -> Value {
        serde_json::json!({"topic":"r","seq":seq,"from":from,"data":{"n":n}})
    }

    #[test]
    fn error_codes_are_read_without_parsing() {
        let e = br#"{"type":"error","code":"rate_limited","message":"slow down"}"#;
        assert_eq!(error_code(e).as_deref(), Some("rate_limited"));
        assert_eq!(
            error_code(br#"{"topic":"r","seq":1,"data":{"code":"x"}}"#),
            None
        );
    }

    #[test]
    fn a_member_counts_gaps_and_holes() {
        let mut r = MemberReport::default();
        for (seq, n) in [(1, 1), (2, 2), (3, 3)] {
            on_room_message(&mut r, seq, &msg(seq, "p", n));
        }
        assert!(r.complete());
        on_room_message(&mut r, 5, &msg(5, "p", 6));
        assert_eq!(r.gaps, 1);
        assert_eq!(r.from["p"].n_holes, 2);
        assert_eq!(r.from["p"].max_n, 6);
        assert!(!r.complete());
        let mut late = MemberReport::default();
        on_room_message(&mut late, 3, &msg(3, "q", 1));
        assert_eq!(late.gaps, 2, "a room's first seq is 1");
        assert!(!late.complete());
        assert!(MemberReport::default().complete());
    }
}
