//! The acceptor thread: owns the listening socket and nothing else.
//!
//! It accepts every pending connection, sets TCP_NODELAY (and `SO_SNDBUF` when configured),
//! hands the socket to the shard with
//! the fewest connections and wakes that shard only if it sleeps. When the process runs out
//! of file descriptors (EMFILE), the pending connections stay in the kernel's backlog and the
//! acceptor retries every 100 ms instead of spinning on a listener that stays readable.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::metrics::{Metrics, ReasonLabel};
use crate::shard::{Intake, ShardLink};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Retry interval after running out of file descriptors.
const EMFILE_BACKOFF: Duration = Duration::from_millis(100);

/// Stops a running acceptor.
#[derive(Debug, Clone)]
pub struct AcceptorHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl AcceptorHandle {
    /// Asks the acceptor to stop; it closes the listening socket on its way out.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The acceptor thread's state.
pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
    shards: Vec<ShardLink>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    /// `SO_SNDBUF` for accepted sockets; `None` leaves the kernel's autotuning on.
    send_buffer: Option<usize>,
}

impl Acceptor {
    /// An acceptor for `listener`, balancing over `shards`.
    pub fn new(
        mut listener: TcpListener,
        shards: Vec<ShardLink>,
        metrics: Arc<Metrics>,
        send_buffer: Option<usize>,
    ) -> io::Result<(Self, AcceptorHandle)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = AcceptorHandle {
            stop: stop.clone(),
            waker,
        };
        Ok((
            Acceptor {
                poll,
                listener,
                shards,
                metrics,
                stop,
                send_buffer,
            },
            handle,
        ))
    }

    /// Accepts until stopped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(16);
        let mut backoff = false;
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = backoff.then_some(EMFILE_BACKOFF);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("acceptor: poll failed: {e}");
                    std::thread::sleep(EMFILE_BACKOFF);
                }
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            backoff = self.accept_all();
        }
        log::debug!("acceptor stopped");
    }

    /// Accepts until the backlog is empty. Returns true when it had to stop for lack of file
    /// descriptors (so the caller retries on a timer).
    fn accept_all(&mut self) -> bool {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.metrics.accepted.inc();
                    if let Err(e) = configure(&stream, self.send_buffer) {
                        log::debug!("acceptor: socket options on {peer}: {e}");
                    }
                    self.hand_off(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = match e.raw_os_error() {
                        Some(libc::EMFILE) => "emfile",
                        Some(libc::ENFILE) => "enfile",
                        Some(_) | None => "other",
                    };
                    self.metrics
                        .accept_errors
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                    if reason == "other" {
                        // ECONNABORTED and friends concern one connection only.
                        log::debug!("acceptor: accept failed: {e}");
                        continue;
                    }
                    log::warn!("acceptor: out of file descriptors ({e}); retrying in 100ms");
                    return true;
                }
            }
        }
    }

    /// Gives the socket to the least loaded shard (by connections) and wakes it if parked.
    fn hand_off(&mut self, stream: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let Some(shard) = self
            .shards
            .iter()
            .min_by_key(|s| s.conns.load(Ordering::Relaxed))
        else {
            return;
        };
        shard.conns.fetch_add(1, Ordering::Relaxed);
        let intake = Intake {
            stream,
            peer,
            accepted: Instant::now(),
        };
        match shard.intake.try_send(intake) {
            Ok(()) => shard.wake_if_parked(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                // Dropping the socket closes it; the shard is stuck or gone.
                shard.conns.fetch_sub(1, Ordering::Relaxed);
                self.metrics
                    .accept_errors
                    .get_or_create(&ReasonLabel {
                        reason: "shard_busy",
                    })
                    .inc();
                log::warn!("acceptor: shard {} cannot take {peer}", shard.id);
            }
        }
    }
}

/// Socket options of an accepted client socket: `TCP_NODELAY` (frames are already batched
/// into one write per turn) and, when configured, `SO_SNDBUF`.
fn configure(stream: &mio::net::TcpStream, send_buffer: Option<usize>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(bytes) = send_buffer {
        socket2::SockRef::from(stream).set_send_buffer_size(bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair on loopback: (the accepted side as mio sees it, the client).
    fn pair() -> (mio::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (mio::net::TcpStream::from_std(accepted), client)
    }

    #[test]
    fn a_configured_send_buffer_is_set_and_the_default_left_to_the_kernel() {
        let (stream, _client) = pair();
        configure(&stream, Some(16 * 1024)).unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.tcp_nodelay().unwrap());
        // Linux doubles the value for its bookkeeping; other kernels keep it.
        let set = sock.send_buffer_size().unwrap();
        assert!((16 * 1024..=32 * 1024).contains(&set), "SO_SNDBUF {set}");

        let (stream, _client) = pair();
        let before = socket2::SockRef::from(&stream).send_buffer_size().unwrap();
        configure(&stream, None).unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.tcp_nodelay().unwrap());
        assert_eq!(sock.send_buffer_size().unwrap(), before);
    }
}
