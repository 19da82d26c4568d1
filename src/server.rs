//! Building, starting and stopping a server: the threads, the channels between them, and the
//! order of a graceful shutdown.
//!
//! [`Server::bind`] validates the config and binds the port (so "address in use" is reported
//! before any thread exists). [`Server::start`] builds every shard on the calling thread, moves
//! each into its own (pinned) thread, then starts the mixer, the providers and the acceptor.
//! [`RunningServer::shutdown`] stops them in dependency order:
//!
//! 1. the acceptor (no new connections; the listening socket closes);
//! 2. the providers (no new messages);
//! 3. the mixer, through a `Shutdown` message queued behind every message already sent, so it
//!    sequences and offers everything first; it then asks every shard to drain: a shard stops
//!    taking client publishes (later ones are answered with an error frame) and answers
//!    behind the ones it took, so the mixer sequences every accepted publish before it drops
//!    the shard queues;
//! 4. each shard sees its queue end after the last frame, queues close 1001 behind what each
//!    client still has pending, and waits up to `--drain-timeout` for the clients' replies.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use serde_json::value::RawValue;

use crate::acceptor::{Acceptor, AcceptorHandle};
use crate::admission::Admission;
use crate::auth::Verifier;
use crate::bus::history::BusHistory;
use crate::bus::presence::BusPresence;
use crate::bus::publisher::BusPublisher;
use crate::bus::subscriber::BusSubscriber;
use crate::bus::{BusConfig, BusState};
use crate::config::ServerConfig;
use crate::interest::Interest;
use crate::messages::{FetchAsk, MixerMsg, PresenceOp, Publish};
use crate::metrics::{Metrics, MetricsListener};
use crate::mixer::{Mixer, MixerConfig};
use crate::provider::telemetry::Telemetry;
use crate::provider::{Provider, ProviderSet, Sink, ticker};
use crate::services::Services;
use crate::shard::Shard;
use crate::tls::Tls;

pub use crate::listener::{bind_listener, raise_nofile_limit};

/// A configured server with its port bound, not yet running.
#[derive(Debug)]
pub struct Server {
    cfg: Arc<ServerConfig>,
    listener: StdListener,
    local_addr: SocketAddr,
    /// TLS, loaded before the port is bound (a bad pair stops the start).
    tls: Option<Arc<Tls>>,
    /// `--metrics-listen`, bound with the public port (so "address in use" comes first too).
    metrics_listener: Option<StdListener>,
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is inconsistent.
    Config(String),
    /// The listen address could not be bound.
    Bind(SocketAddr, io::Error),
    /// A thread or poll could not be created.
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(msg) => write!(f, "invalid configuration: {msg}"),
            StartError::Bind(addr, e) if e.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr}: address already in use")
            }
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Io(e) => write!(f, "cannot start: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Validates `cfg` and binds its listen address.
    pub fn bind(cfg: ServerConfig) -> Result<Server, StartError> {
        cfg.validate().map_err(StartError::Config)?;
        let tls = match &cfg.tls {
            Some(files) => Some(Arc::new(Tls::load(files).map_err(StartError::Config)?)),
            None => None,
        };
        let listener = bind_listener(cfg.listen).map_err(|e| StartError::Bind(cfg.listen, e))?;
        let local_addr = listener.local_addr().map_err(StartError::Io)?;
        let metrics_listener = match cfg.metrics_listen {
            Some(addr) => Some(StdListener::bind(addr).map_err(|e| StartError::Bind(addr, e))?),
            None => None,
        };
        Ok(Server {
            cfg: Arc::new(cfg),
            listener,
            local_addr,
            tls,
            metrics_listener,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the server with the built-in providers of its config.
    pub fn start(self) -> Result<RunningServer, StartError> {
        let providers = ticker::feeds(&self.cfg.ticker);
        self.start_with(providers)
    }

    /// Starts the server with the given providers, plus the telemetry provider unless
    /// `telemetry_interval` is zero.
    pub fn start_with(
        self,
        mut providers: Vec<Box<dyn Provider>>,
    ) -> Result<RunningServer, StartError> {
        let cfg = self.cfg;
        let metrics = Metrics::new(cfg.shards);
        if !cfg.telemetry_interval.is_zero() {
            providers.push(Box::new(Telemetry::new(
                cfg.telemetry_interval,
                metrics.clone(),
            )));
        }
        let (mixer_tx, mixer_rx) = Mixer::channel(cfg.mixer_queue);
        let interest = Interest::new();
        let deflate_interest = Interest::new();
        let bus = match &cfg.redis {
            Some(bus_cfg) => Some(start_bus(bus_cfg, &interest, &mixer_tx, &metrics)?),
            None => None,
        };
        let services = Arc::new(Services {
            admission: Admission::new(
                cfg.max_connections,
                cfg.max_connections_per_ip,
                cfg.ipv6_prefix,
            ),
            verifier: cfg
                .auth_secret
                .as_ref()
                .map(|s| Verifier::new(&s.0).with_max_lifetime(cfg.max_token_lifetime)),
            interest,
            deflate_interest: deflate_interest.clone(),
            bus: bus.as_ref().map(|b| b.state.clone()),
            bus_tx: bus.as_ref().map(|b| b.tx.clone()),
            tls: self.tls.clone(),
        });
        let mut shards = Vec::with_capacity(cfg.shards);
        let mut links = Vec::with_capacity(cfg.shards);
        for id in 0..cfg.shards {
            let (shard, link) = Shard::new(
                id,
                cfg.clone(),
                metrics.clone(),
                services.clone(),
                mixer_tx.clone(),
            )
            .map_err(StartError::Io)?;
            shards.push(shard);
            links.push(link);
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let pin = cfg.pin && cfg.shards <= cores.len();
        if cfg.pin && !pin {
            log::info!(
                "not pinning: {} shards on {} cores",
                cfg.shards,
                cores.len()
            );
        }
        let worker_sched = cfg.worker_sched;
        let mut shard_threads = Vec::with_capacity(cfg.shards);
        for (id, shard) in shards.into_iter().enumerate() {
            let core = if pin { cores.get(id).copied() } else { None };
            let thread = std::thread::Builder::new()
                .name(format!("tickcast-shard-{id}"))
                .spawn(move || {
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        log::warn!("shard {id}: could not pin to core {}", core.id);
                    }
                    crate::sched::apply_worker_policy(worker_sched, "shard");
                    shard.run();
                })
                .map_err(StartError::Io)?;
            shard_threads.push(thread);
        }

        let history_budget = cfg
            .history_budget
            .unwrap_or_else(crate::mixer::default_budget);
        metrics
            .history_budget
            .set(i64::try_from(history_budget).unwrap_or(i64::MAX));
        let mixer_cfg = MixerConfig {
            linger: cfg.linger,
            history: cfg.history,
            history_budget,
            presence_list_max: cfg.presence_list_max,
            drain_wait: cfg.drain_timeout,
            redis_server_topics: cfg.redis.as_ref().is_some_and(|r| r.publish_providers),
            deflate_min_bytes: cfg.deflate_min_bytes,
        };
        let mut mixer = Mixer::new(mixer_rx, links.clone(), mixer_cfg, metrics.clone());
        if cfg.deflate {
            mixer = mixer.with_deflate(deflate_interest);
        }
        if let Some(b) = &bus {
            if let Some(fetch) = b.fetch.clone() {
                mixer = mixer.with_history(fetch);
            }
            mixer = mixer.with_presence(b.presence.clone(), &b.state.node);
        }
        let mixer_thread = std::thread::Builder::new()
            .name("tickcast-mixer".into())
            .spawn(move || {
                crate::sched::apply_worker_policy(worker_sched, "mixer");
                mixer.run()
            })
            .map_err(StartError::Io)?;
        let sink = match &bus {
            Some(b) if cfg.redis.as_ref().is_some_and(|r| r.publish_providers) => {
                Sink::Bus(b.tx.clone())
            }
            _ => Sink::Mixer(mixer_tx.clone()),
        };
        let provider_count = providers.len();
        let providers = ProviderSet::spawn(providers, &sink).map_err(StartError::Io)?;
        drop(sink);
        let metrics_listener = match self.metrics_listener {
            Some(l) => Some(
                MetricsListener::spawn(l, metrics.clone(), bus.as_ref().map(|b| b.state.clone()))
                    .map_err(StartError::Io)?,
            ),
            None => None,
        };
        let bus = bus.map(|b| b.threads);

        self.listener
            .set_nonblocking(true)
            .map_err(StartError::Io)?;
        let listener = mio::net::TcpListener::from_std(self.listener);
        let (acceptor, acceptor_handle) = Acceptor::new(
            listener,
            links,
            metrics.clone(),
            cfg.send_buffer,
            cfg.acceptor_rt_priority,
        )
        .map_err(StartError::Io)?;
        let acceptor_thread = std::thread::Builder::new()
            .name("tickcast-acceptor".into())
            .spawn(move || acceptor.run())
            .map_err(StartError::Io)?;

        log::info!(
            "tickcast listening on {}: {} shard(s){}, {} provider thread(s), linger {:?}{}",
            self.local_addr,
            cfg.shards,
            if pin { ", pinned" } else { "" },
            provider_count,
            cfg.linger,
            if self.tls.is_some() {
                ", TLS only (wss://)"
            } else {
                ""
            },
        );
        Ok(RunningServer {
            local_addr: self.local_addr,
            metrics,
            acceptor: (acceptor_handle, acceptor_thread),
            providers,
            mixer_tx,
            mixer_thread,
            shard_threads,
            bus,
            tls: self.tls,
            metrics_listener,
        })
    }
}

/// The Redis bus threads of a running node.
#[derive(Debug)]
struct BusThreads {
    /// Dropped to stop the subscriber and the history reader.
    stop: Sender<()>,
    subscriber: JoinHandle<()>,
    /// Reads resumes from Redis (none with `--history 0`).
    history: Option<JoinHandle<()>>,
    /// Keeps room membership in Redis.
    presence: JoinHandle<()>,
    /// Dropped once the shards have stopped: the publisher stops waiting for Redis.
    publisher_stop: Sender<()>,
    /// Ends once every sender (shards, providers) is gone and its queue is published.
    publisher: JoinHandle<()>,
}

/// A started bus: its health, the publisher's input, the history reader's input, its
/// threads.
struct StartedBus {
    state: Arc<BusState>,
    tx: Sender<Publish>,
    fetch: Option<Sender<FetchAsk>>,
    presence: Sender<PresenceOp>,
    threads: BusThreads,
}

/// Starts the Redis bus publisher and subscriber threads. They connect (and reconnect) by
/// themselves: an unreachable Redis does not stop the node from serving its local streams.
fn start_bus(
    cfg: &BusConfig,
    interest: &Arc<Interest>,
    mixer_tx: &Sender<MixerMsg>,
    metrics: &Metrics,
) -> Result<StartedBus, StartError> {
    let state = BusState::new();
    let (publisher_stop, publisher_stop_rx) = crossbeam_channel::bounded(0);
    let (publisher, tx) = BusPublisher::new(
        cfg.clone(),
        publisher_stop_rx,
        state.clone(),
        metrics.bus_publisher.clone(),
    );
    let publisher = std::thread::Builder::new()
        .name("tickcast-bus-pub".into())
        .spawn(move || publisher.run())
        .map_err(StartError::Io)?;
    let (stop, stop_rx) = crossbeam_channel::bounded(0);
    let stop_rx_history = stop_rx.clone();
    let stop_rx_presence = stop_rx.clone();
    let subscriber = BusSubscriber::new(
        cfg.clone(),
        interest.clone(),
        mixer_tx.clone(),
        stop_rx,
        state.clone(),
        metrics.bus_subscriber.clone(),
    );
    let subscriber = std::thread::Builder::new()
        .name("tickcast-bus-sub".into())
        .spawn(move || subscriber.run())
        .map_err(StartError::Io)?;
    let (fetch, history) = if cfg.history > 0 {
        let (reader, fetch) = BusHistory::new(
            cfg.clone(),
            mixer_tx.clone(),
            interest.clone(),
            state.clone(),
            stop_rx_history,
        );
        let thread = std::thread::Builder::new()
            .name("tickcast-bus-history".into())
            .spawn(move || reader.run())
            .map_err(StartError::Io)?;
        (Some(fetch), Some(thread))
    } else {
        (None, None)
    };
    let (members, presence) = BusPresence::new(
        cfg.clone(),
        mixer_tx.clone(),
        interest.clone(),
        state.clone(),
        stop_rx_presence,
    );
    let members = std::thread::Builder::new()
        .name("tickcast-bus-presence".into())
        .spawn(move || members.run())
        .map_err(StartError::Io)?;
    log::info!(
        "redis bus: {} (prefix `{}`, node {})",
        crate::bus::redacted(&cfg.url),
        cfg.prefix,
        state.node
    );
    Ok(StartedBus {
        state,
        tx,
        fetch,
        presence,
        threads: BusThreads {
            stop,
            subscriber,
            history,
            presence: members,
            publisher_stop,
            publisher,
        },
    })
}

/// A running server: its threads and the handles to stop them.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    acceptor: (AcceptorHandle, JoinHandle<()>),
    providers: ProviderSet,
    mixer_tx: Sender<MixerMsg>,
    mixer_thread: JoinHandle<()>,
    shard_threads: Vec<JoinHandle<()>>,
    bus: Option<BusThreads>,
    tls: Option<Arc<Tls>>,
    /// `--metrics-listen`'s thread.
    metrics_listener: Option<MetricsListener>,
}

impl RunningServer {
    /// Reads the TLS certificate and key again (SIGHUP): handshakes from now on use the new
    /// pair, open connections keep theirs. A pair that does not load is refused and logged,
    /// and the old one kept. Counted in `tickcast_tls_reloads_total`. Without TLS, nothing.
    pub fn reload_tls(&self) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let result = tls.reload();
        let label = match &result {
            Ok(()) => {
                log::info!("TLS: reloaded {}", tls.files().cert.display());
                "ok"
            }
            Err(e) => {
                log::error!("TLS: reload refused, the current certificate is kept: {e}");
                "failed"
            }
        };
        self.metrics
            .tls
            .reloads
            .get_or_create(&crate::metrics::ReloadLabel { result: label })
            .inc();
        result
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `--metrics-listen` serves `/metrics` (its bound address, useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(MetricsListener::addr)
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A handle that publishes straight into the mixer, like a provider.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            tx: self.mixer_tx.clone(),
        }
    }

    /// Graceful shutdown (see the module docs); returns once every thread has finished.
    pub fn shutdown(self) {
        let RunningServer {
            acceptor,
            providers,
            mixer_tx,
            mixer_thread,
            shard_threads,
            bus,
            metrics_listener,
            ..
        } = self;
        acceptor.0.stop();
        join("acceptor", acceptor.1);
        providers.stop();
        let bus_publisher = bus.map(|b| {
            drop(b.stop);
            join("bus subscriber", b.subscriber);
            if let Some(history) = b.history {
                join("bus history", history);
            }
            join("bus presence", b.presence);
            (b.publisher_stop, b.publisher)
        });
        // Queued behind every message already sent; blocks only while the mixer catches up.
        let _ = mixer_tx.send(MixerMsg::Shutdown);
        drop(mixer_tx);
        join("mixer", mixer_thread);
        for (i, t) in shard_threads.into_iter().enumerate() {
            join(&format!("shard {i}"), t);
        }
        if let Some((stop, publisher)) = bus_publisher {
            drop(stop);
            join("bus publisher", publisher);
        }
        if let Some(l) = metrics_listener {
            l.stop();
        }
        log::info!("tickcast stopped");
    }
}

fn join(name: &str, thread: JoinHandle<()>) {
    if thread.join().is_err() {
        log::error!("{name} thread panicked");
    }
}

/// Publishes messages into a running server's mixer (tests, embedding).
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: Sender<MixerMsg>,
}

impl Publisher {
    /// Publishes `json` (which must be valid JSON) on `topic`. Returns false if it is not
    /// JSON or the server is stopping.
    pub fn publish(&self, topic: &str, json: &str) -> bool {
        let Ok(data) = RawValue::from_string(json.to_string()) else {
            return false;
        };
        let msg = MixerMsg::Publish(Publish::new(Arc::from(topic), data));
        self.tx.send(msg).is_ok()
    }
}
