//! A healthy client: a `/ws?topics=ticks` reader on its own thread for the whole test,
//! recording any seq gap or error, so a test can show that misbehaving clients on the same
//! server hurt nobody else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

use super::{Client, READ_TIMEOUT, close_client, connect, next_json, wait_for};
/// What a healthy client saw, checked by [`Healthy::finish`].
#[derive(Debug, Default)]
struct HealthyLog {
    /// `(previous, next)` pairs where `seq` did not go up by exactly one.
    gaps: Vec<(u64, u64)>,
    /// Why the client stopped early, if it did.
    error: Option<String>,
}

/// A `/ws?topics=ticks` client reading on its own thread for the whole test, recording any
/// seq gap or error. Meant for a server started with [`test_config`] (ticks every 10 ms).
pub struct Healthy {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: JoinHandle<HealthyLog>,
}

impl Healthy {
    /// Connects, reads the welcome and the first tick, then keeps reading in the background.
    pub fn start(addr: SocketAddr) -> Healthy {
        Healthy::start_path(addr, "/ws?topics=ticks")
    }

    /// The same on another path (e.g. with a token), which must stream `ticks` only.
    pub fn start_path(addr: SocketAddr, path: &str) -> Healthy {
        let mut ws = connect(addr, path);
        assert_eq!(next_json(&mut ws)["type"], "welcome");
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || healthy_loop(ws, &stop, &received))
        };
        let h = Healthy {
            stop,
            received,
            thread,
        };
        h.wait_for_more(0);
        h
    }

    /// Ticks received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until more than `than` ticks were received.
    pub fn wait_for_more(&self, than: u64) {
        wait_for("the healthy client to receive more ticks", || {
            self.received() > than || self.thread.is_finished()
        });
        assert!(
            self.received() > than,
            "the healthy client stopped receiving"
        );
    }

    /// Checks the client is still receiving, stops it, and asserts it saw no gap and no
    /// error. Returns how many ticks it received.
    pub fn finish(self) -> u64 {
        self.wait_for_more(self.received());
        self.stop.store(true, Ordering::SeqCst);
        let log = self.thread.join().expect("healthy client thread");
        assert_eq!(log.error, None, "the healthy client failed");
        assert!(
            log.gaps.is_empty(),
            "healthy client saw gaps: {:?}",
            log.gaps
        );
        self.received.load(Ordering::SeqCst)
    }
}

fn healthy_loop(mut ws: Client, stop: &AtomicBool, received: &AtomicU64) -> HealthyLog {
    let mut log = HealthyLog::default();
    let mut last: Option<u64> = None;
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Text(t)) => {
                idle_since = Instant::now();
                let v: Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(e) => {
                        log.error = Some(format!("not JSON: {e}"));
                        break;
                    }
                };
                let Some(seq) = v["seq"].as_u64() else {
                    continue;
                };
                if let Some(prev) = last
                    && seq != prev + 1
                {
                    log.gaps.push((prev, seq));
                }
                last = Some(seq);
                received.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Close(c)) => {
                log.error = Some(format!("closed by the server: {c:?}"));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if idle_since.elapsed() > READ_TIMEOUT {
                    log.error = Some("no tick for the whole read timeout".into());
                    break;
                }
            }
            Err(e) => {
                log.error = Some(format!("read failed: {e}"));
                break;
            }
        }
    }
    if log.error.is_none() {
        ws.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        close_client(ws);
    }
    log
}
