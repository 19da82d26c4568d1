//! The bystanders of every scenario: a normal client that keeps reading `ticks` on its own
//! thread while the attack runs (counting seq gaps, silences and whether it was cut off),
//! and a batch of normal handshakes timed from `connect()` to `101`.
//!
//! The watcher is a plain tungstenite client, as a well-behaved user would be: it answers
//! pings, reads everything, and closes cleanly at the end. What it saw is the evidence that
//! an attack on some connections did not hurt the others.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tungstenite::Message;

use super::client;

/// How long the watcher blocks in one read before it checks whether to stop.
const POLL: Duration = Duration::from_millis(100);
/// Time allowed to connect and read the welcome.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence between two ticks the watcher accepts (the default ticker sends about
/// 40 a second; a faster one more).
pub const MAX_SILENCE: Duration = Duration::from_secs(2);

/// What the watcher saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchReport {
    /// Messages of the watched topic received.
    pub messages: u64,
    /// Seq numbers missing between consecutive messages.
    pub gaps: u64,
    /// Messages whose seq did not go up.
    pub reordered: u64,
    /// The longest time between two messages (or from the start to the first), ms.
    pub max_silence_ms: u64,
    /// Set when the server ended the watcher's connection before it was told to stop.
    pub cut_off: Option<String>,
}

impl WatchReport {
    /// Whether the watcher was served throughout: never cut off, no gap, no long silence.
    pub fn healthy(&self) -> bool {
        self.cut_off.is_none()
            && self.gaps == 0
            && self.reordered == 0
            && self.messages > 0
            && self.max_silence_ms <= MAX_SILENCE.as_millis() as u64
    }

    /// One line for the measured column.
    pub fn summary(&self) -> String {
        format!(
            "watcher {} msgs, {} missed seq, max silence {:.1} s{}",
            self.messages,
            self.gaps,
            self.max_silence_ms as f64 / 1000.0,
            self.cut_off
                .as_ref()
                .map_or(String::new(), |c| format!(", cut off ({c})"))
        )
    }
}

/// The envelope fields the watcher reads from each message.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: Option<&'a str>,
    seq: Option<u64>,
}

/// A normal `/ws?topics=ticks` client reading on its own thread.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<WatchReport>,
}

impl Watcher {
    /// Connects and reads the welcome; the reading goes on in the background.
    pub fn start(addr: SocketAddr) -> Result<Watcher, String> {
        Self::start_topic(addr, "ticks")
    }

    /// The same for another topic.
    pub fn start_topic(addr: SocketAddr, topic: &str) -> Result<Watcher, String> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("watcher: {e}"))?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| format!("watcher: {e}"))?;
        let url = format!("ws://{addr}/ws?topics={topic}");
        let (mut ws, _) = tungstenite::client::client(url.as_str(), stream)
            .map_err(|e| format!("watcher: upgrade: {e}"))?;
        match ws.read() {
            Ok(Message::Text(t)) if t.contains("\"welcome\"") => {}
            other => return Err(format!("watcher: no welcome: {other:?}")),
        }
        let _ = ws.get_mut().set_read_timeout(Some(POLL));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let topic = topic.to_string();
        let thread = std::thread::Builder::new()
            .name("abuse-watcher".into())
            .spawn(move || watch(ws, &topic, &flag))
            .map_err(|e| format!("watcher: {e}"))?;
        Ok(Watcher { stop, thread })
    }

    /// Stops the watcher and returns what it saw.
    pub fn finish(self) -> WatchReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_else(|_| WatchReport {
            cut_off: Some("watcher thread panicked".into()),
            ..WatchReport::default()
        })
    }
}

fn watch(mut ws: tungstenite::WebSocket<TcpStream>, topic: &str, stop: &AtomicBool) -> WatchReport {
    let mut report = WatchReport::default();
    let mut last_seq: Option<u64> = None;
    let mut last_msg = Instant::now();
    // Once told to stop, one more message proves the watcher is still served after the
    // attack (bounded: a silence shows in `max_silence_ms`).
    let mut stop_at: Option<(Instant, u64)> = None;
    loop {
        if stop_at.is_none() && stop.load(Ordering::SeqCst) {
            stop_at = Some((Instant::now(), report.messages));
        }
        if let Some((at, count)) = stop_at
            && (report.messages > count || at.elapsed() > MAX_SILENCE + POLL)
        {
            break;
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                let Ok(env) = serde_json::from_str::<Envelope>(&text) else {
                    continue;
                };
                let (Some(t), Some(seq)) = (env.topic, env.seq) else {
                    continue;
                };
                if t != topic {
                    continue;
                }
                let now = Instant::now();
                report.max_silence_ms = report
                    .max_silence_ms
                    .max(now.duration_since(last_msg).as_millis() as u64);
                last_msg = now;
                report.messages += 1;
                match last_seq {
                    Some(prev) if seq > prev + 1 => report.gaps += seq - prev - 1,
                    Some(prev) if seq <= prev => report.reordered += 1,
                    _ => {}
                }
                last_seq = Some(last_seq.map_or(seq, |p| p.max(seq)));
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                report.cut_off = Some(format!("close {code}"));
                return report;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                report.cut_off = Some(e.to_string());
                return report;
            }
        }
    }
    let silence = Instant::now().duration_since(last_msg).as_millis() as u64;
    report.max_silence_ms = report.max_silence_ms.max(silence);
    // A clean goodbye, bounded: the server's close reply is read, then the socket dropped.
    let _ = ws.close(None);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    report
}

/// Normal handshakes timed while something else goes on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandshakeTimes {
    /// connect() -> 101 of each successful handshake, ms.
    pub ok_ms: Vec<f64>,
    /// Failures by reason.
    pub failures: client::Tally,
}

/// After `delay`, opens `n` normal WebSockets on `/ws?topics=ticks` one after another,
/// `spacing` apart, timing each from `connect()` to the `101`; each is then closed by reset
/// (nothing to linger for). Runs on its own thread; join the handle for the times.
pub fn time_handshakes(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    n: usize,
    delay: Duration,
    spacing: Duration,
    timeout: Duration,
) -> JoinHandle<HandshakeTimes> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut out = HandshakeTimes::default();
        for _ in 0..n {
            let t0 = Instant::now();
            let result = client::connect(addr, source, timeout)
                .map_err(|e| client::connect_failure(&e).to_string())
                .and_then(|mut s| {
                    client::upgrade(&mut s, &addr.to_string(), "/ws?topics=ticks", timeout)
                        .map(|_| s)
                });
            match result {
                Ok(s) => {
                    out.ok_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    client::abort(s);
                }
                Err(reason) => client::count(&mut out.failures, reason),
            }
            std::thread::sleep(spacing.saturating_sub(t0.elapsed()));
        }
        out
    })
}
