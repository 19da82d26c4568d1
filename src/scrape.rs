//! `--metrics-listen`: `/metrics` and `/healthz` on an address of their own, answered by a
//! thread of its own.
//!
//! A scrape there never reaches a shard: the registry is rendered on this thread, so a
//! shard's turn is never spent on it, and the address can be kept private (a loopback or
//! an internal interface, a firewall rule) while the public listener answers 404 to
//! `/metrics`. Requests are served one at a time, each bounded by [`IO_TIMEOUT`] for its
//! head and its answer: a scraper is one trusted client, not a crowd. `tickcast_connections`
//! read here is the shards' last per-second sample (a scrape on a shard sets its own first).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bus::BusState;
use crate::http::{self, Target};
use crate::metrics::{CONTENT_TYPE, Metrics};

/// How long a request head may take to arrive, and its answer to be taken.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// The running metrics listener: its address, and how to stop it.
#[derive(Debug)]
pub struct MetricsListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl MetricsListener {
    /// Serves `listener` on a new thread until [`MetricsListener::stop`].
    pub fn spawn(
        listener: TcpListener,
        metrics: Arc<Metrics>,
        bus: Option<Arc<BusState>>,
    ) -> io::Result<MetricsListener> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tickcast-metrics".into())
            .spawn(move || serve(&listener, &metrics, bus.as_deref(), &flag))?;
        log::info!("metrics on http://{addr}/metrics");
        Ok(MetricsListener { addr, stop, thread })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (its blocking `accept` is woken by one connection) and joins it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        if self.thread.join().is_err() {
            log::error!("metrics listener thread panicked");
        }
    }
}

/// The accept loop: one request per connection, answered and closed.
fn serve(listener: &TcpListener, metrics: &Metrics, bus: Option<&BusState>, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, metrics, bus) {
                    log::debug!("metrics listener: {peer}: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors, most likely: keep serving once some are back.
                log::warn!("metrics listener: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request head and writes its answer.
fn answer(mut stream: TcpStream, metrics: &Metrics, bus: Option<&BusState>) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_request(&buf, MAX_HEAD) {
            Ok(None) if buf.len() < MAX_HEAD => continue,
            Ok(None) | Err(http::ParseError::TooLarge) => {
                break http::response(431, "text/plain", b"request header too large\n", &[]);
            }
            Err(http::ParseError::Malformed) => {
                break http::response(400, "text/plain", b"malformed HTTP request\n", &[]);
            }
            Ok(Some((req, _))) => break route(&req, metrics, bus),
        }
    };
    stream.write_all(&response)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// `/metrics` and `/healthz` (GET or HEAD); anything else is 404.
fn route(req: &http::Request, metrics: &Metrics, bus: Option<&BusState>) -> Vec<u8> {
    let (status, content_type, body) = match http::route(req) {
        Target::Metrics => (200, CONTENT_TYPE, metrics.render().into_bytes()),
        Target::Healthz if bus.is_some_and(|b| !b.healthy()) => {
            (200, "text/plain", b"degraded: redis\n".to_vec())
        }
        Target::Healthz => (200, "text/plain", b"ok\n".to_vec()),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    };
    if req.method == "HEAD" {
        http::response_head(status, content_type, &body, &[])
    } else {
        http::response(status, content_type, &body, &[])
    }
}
