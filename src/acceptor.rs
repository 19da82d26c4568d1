//! The acceptor thread: owns the listening socket and nothing else.
//!
//! It accepts every pending connection, takes its place under `--max-pending-per-ip` (an
//! address over it has the socket closed at once, counted as
//! `accept_errors_total{reason="pending_per_ip"}`), sets TCP_NODELAY (and `SO_SNDBUF` when
//! configured), hands the socket to the shard with
//! the fewest connections and wakes that shard only if it sleeps. When the process runs out
//! of file descriptors (EMFILE), the pending connections stay in the kernel's backlog and the
//! acceptor retries every 100 ms instead of spinning on a listener that stays readable.
//!
//! It shares a core with a shard, so it asks for a real-time priority when it starts (see
//! `sched.rs`: a connecting client then waits for `accept` ~0.1 ms instead of a scheduler
//! slice), and, when it got one, pauses between bursts of a flood so the shard keeps its core.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::admission::Admission;
use crate::edge::forwarded::TrustedProxies;
use crate::messages::{Intake, ShardLink};
use crate::metrics::{Metrics, ReasonLabel};
use crate::sched::{self, FloodGuard, Sched};

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

/// What decides whether an accepted socket may wait for its upgrade: the shared counters,
/// and the proxies whose sockets are not capped per address.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The node's connection counters (shared with the shards).
    pub admission: Arc<Admission>,
    /// `--trusted-proxy`: peers carrying many clients.
    pub trusted: TrustedProxies,
}

/// The acceptor thread's state.
pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
    shards: Vec<ShardLink>,
    metrics: Arc<Metrics>,
    gate: Gate,
    /// When a refusal under `--max-pending-per-ip` was last logged (one line a second).
    refusal_logged: Option<Instant>,
    stop: Arc<AtomicBool>,
    /// `SO_SNDBUF` for accepted sockets; `None` leaves the kernel's autotuning on.
    send_buffer: Option<usize>,
    /// `SCHED_FIFO` priority to ask for (0 = none).
    rt_priority: u8,
    guard: FloodGuard,
}

/// How one round of accepting ended.
enum Round {
    /// The backlog is empty: wait for the listener.
    Drained,
    /// Out of file descriptors: retry after [`EMFILE_BACKOFF`].
    OutOfFds,
    /// A flood burst: sleep this long, then accept again without waiting (the listener is
    /// edge-triggered and will not report the connections still queued).
    Pause(Duration),
}

impl Acceptor {
    /// An acceptor for `listener`, balancing over `shards`; it asks for `SCHED_FIFO` at
    /// `rt_priority` when it starts (0 = do not).
    pub fn new(
        mut listener: TcpListener,
        shards: Vec<ShardLink>,
        metrics: Arc<Metrics>,
        gate: Gate,
        send_buffer: Option<usize>,
        rt_priority: u8,
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
                gate,
                refusal_logged: None,
                stop,
                send_buffer,
                rt_priority,
                guard: FloodGuard::new(false),
            },
            handle,
        ))
    }

    /// Accepts until stopped (on the acceptor's own thread, whose priority it raises).
    pub fn run(mut self) {
        let sched = sched::raise_current_thread(self.rt_priority);
        match sched {
            Sched::Fifo(p) => log::info!("acceptor: SCHED_FIFO priority {p}"),
            Sched::ShortSlice if self.rt_priority > 0 => log::info!(
                "acceptor: real-time priority refused; using a {:?} fair-scheduler slice",
                sched::SHORT_SLICE
            ),
            Sched::ShortSlice => {}
            Sched::Normal => log::info!("acceptor: running at normal priority"),
        }
        let realtime = matches!(sched, Sched::Fifo(_));
        self.metrics.acceptor_realtime.set(i64::from(realtime));
        self.guard = FloodGuard::new(realtime);
        let mut events = Events::with_capacity(16);
        let mut round = Round::Drained;
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = match round {
                Round::Drained => None,
                Round::OutOfFds => Some(EMFILE_BACKOFF),
                Round::Pause(pause) => {
                    self.metrics.acceptor_pauses.inc();
                    std::thread::sleep(pause);
                    Some(Duration::ZERO)
                }
            };
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
            round = self.accept_all();
        }
        log::debug!("acceptor stopped");
    }

    /// Accepts until the backlog is empty, the process is out of file descriptors, or the
    /// flood guard asks for a pause.
    fn accept_all(&mut self) -> Round {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.metrics.accepted.inc();
                    let capped = !self.gate.trusted.contains(peer.ip());
                    let Some(pending) = self.gate.admission.hold(peer.ip(), capped) else {
                        // Dropped: closed before the shard ever sees it.
                        self.refuse_pending(peer);
                        continue;
                    };
                    if let Err(e) = configure(&stream, self.send_buffer) {
                        log::debug!("acceptor: socket options on {peer}: {e}");
                    }
                    self.hand_off(stream, peer, pending);
                    if let Some(pause) = self.guard.on_accept(Instant::now()) {
                        return Round::Pause(pause);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.guard.on_idle();
                    return Round::Drained;
                }
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
                    return Round::OutOfFds;
                }
            }
        }
    }

    /// Counts a socket closed under `--max-pending-per-ip`, and logs at most one line a
    /// second (a flood would otherwise write one per socket).
    fn refuse_pending(&mut self, peer: std::net::SocketAddr) {
        self.metrics
            .accept_errors
            .get_or_create(&ReasonLabel {
                reason: "pending_per_ip",
            })
            .inc();
        let now = Instant::now();
        if self
            .refusal_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.refusal_logged = Some(now);
            log::warn!(
                "acceptor: {peer} holds --max-pending-per-ip sockets not yet upgraded; closing \
                 its new ones (counted in tickcast_accept_errors_total{{reason=\"pending_per_ip\"}})"
            );
        }
    }

    /// Gives the socket to the least loaded shard (by connections) and wakes it if parked.
    fn hand_off(
        &mut self,
        stream: mio::net::TcpStream,
        peer: std::net::SocketAddr,
        pending: crate::admission::Pending,
    ) {
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
            pending,
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
    use crate::messages::ShardMsg;
    use std::sync::atomic::AtomicUsize;

    /// An acceptor over a listener that already holds `pending` connections in its backlog,
    /// handing over to one shard link whose intake the test reads; plus the clients.
    fn flooded(
        pending: usize,
        rt_priority: u8,
    ) -> (
        Acceptor,
        AcceptorHandle,
        crossbeam_channel::Receiver<Intake>,
        Vec<std::net::TcpStream>,
    ) {
        // The server's own listener: its backlog holds the whole flood (std's 128 would not,
        // and the last connects would wait).
        let listener = crate::server::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = (0..pending)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let (intake, intake_rx) = crossbeam_channel::bounded(4 * pending);
        let poll = Poll::new().unwrap();
        let link = ShardLink {
            id: 0,
            queue: crossbeam_channel::bounded::<ShardMsg>(1).0,
            intake,
            waker: Arc::new(Waker::new(poll.registry(), Token(0)).unwrap()),
            parked: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(AtomicUsize::new(0)),
            bytes: crate::messages::QueueBytes::new(usize::MAX),
        };
        let metrics = Metrics::new(1);
        let (acceptor, handle) = Acceptor::new(
            TcpListener::from_std(listener),
            vec![link],
            metrics,
            Gate {
                admission: Admission::new(0, 0, 64),
                trusted: TrustedProxies::default(),
            },
            None,
            rt_priority,
        )
        .unwrap();
        (acceptor, handle, intake_rx, clients)
    }

    #[test]
    fn a_flood_is_accepted_in_bursts_with_pauses_between_and_nothing_lost() {
        let (mut acceptor, _handle, intake, _clients) = flooded(200, 0);
        // As a real-time acceptor would be, whatever this process may ask for.
        acceptor.guard = FloodGuard::new(true);
        let mut pauses = 0;
        loop {
            match acceptor.accept_all() {
                Round::Pause(pause) => {
                    assert!(pause <= sched::MAX_PAUSE);
                    pauses += 1;
                }
                Round::Drained => break,
                Round::OutOfFds => panic!("out of file descriptors"),
            }
        }
        assert_eq!(pauses, 200 / sched::FLOOD_BURST);
        assert_eq!(intake.len(), 200);
        assert_eq!(acceptor.metrics.accepted.get(), 200);
    }

    #[test]
    fn the_running_acceptor_resumes_after_a_pause_without_a_new_edge() {
        let (acceptor, handle, intake, _clients) = flooded(300, 10);
        let metrics = acceptor.metrics.clone();
        let thread = std::thread::spawn(move || acceptor.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while intake.len() < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let realtime = metrics.acceptor_realtime.get();
        handle.stop();
        thread.join().unwrap();
        assert_eq!(
            intake.len(),
            300,
            "every queued connection reaches the shard"
        );
        if realtime == 1 {
            // The backlog held more than a burst, so the guard paused at least once.
            assert!(metrics.acceptor_pauses.get() >= 1);
        } else {
            assert_eq!(metrics.acceptor_pauses.get(), 0);
        }
    }

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
