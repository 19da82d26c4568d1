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
use crate::messages::{FetchAsk, MixerMsg, PresenceOp, Publish, ShardLink};
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
    /// The listening socket could not be set up.
    Io(io::Error),
    /// A thread or an event loop could not be created: `what`, asked for by `option`.
    Spawn {
        /// The thread or event loop, e.g. `shard thread 3`.
        what: String,
        /// The option (with its value) that asked for it, if one did.
        option: Option<String>,
        /// What the system answered.
        error: io::Error,
    },
}

impl StartError {
    fn spawn(what: &str, option: Option<String>, error: io::Error) -> StartError {
        StartError::Spawn {
            what: what.to_string(),
            option,
            error,
        }
    }
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
            StartError::Spawn {
                what,
                option: Some(option),
                error,
            } => write!(f, "cannot start {what} (asked for by {option}): {error}"),
            StartError::Spawn {
                what,
                option: None,
                error,
            } => write!(f, "cannot start {what}: {error}"),
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
    ///
    /// The start runs in steps (the Redis bus, the shards, the mixer, the providers, the
    /// acceptor); when one fails, every thread an earlier step started is stopped and joined
    /// before the error is returned, so a failed start leaves nothing running.
    pub fn start_with(
        self,
        providers: Vec<Box<dyn Provider>>,
    ) -> Result<RunningServer, StartError> {
        let mut started = Started::default();
        match self.start_steps(providers, &mut started) {
            Ok(ready) => Ok(RunningServer {
                local_addr: ready.local_addr,
                metrics: ready.metrics,
                mixer_tx: ready.mixer_tx,
                started,
                tls: ready.tls,
            }),
            Err(e) => {
                // Everything the steps held (shards not yet moved into a thread, channel
                // ends) is gone by now: only the started threads remain, stopped in order.
                started.stop();
                Err(e)
            }
        }
    }

    /// The steps of [`Server::start_with`]; each records what it started in `started`.
    fn start_steps(
        self,
        mut providers: Vec<Box<dyn Provider>>,
        started: &mut Started,
    ) -> Result<Ready, StartError> {
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
            Some(bus_cfg) => Some(start_bus(
                bus_cfg,
                &interest,
                &mixer_tx,
                &metrics,
                &mut started.bus,
            )?),
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
        let pin = start_shards(&cfg, &metrics, &services, &mixer_tx, started)?;

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
        let mut mixer = Mixer::new(mixer_rx, started.links.clone(), mixer_cfg, metrics.clone());
        if cfg.deflate {
            mixer = mixer.with_deflate(deflate_interest);
        }
        if let Some(b) = &bus {
            if let Some(fetch) = b.fetch.clone() {
                mixer = mixer.with_history(fetch);
            }
            mixer = mixer.with_presence(b.presence.clone(), &b.state.node);
        }
        let worker_sched = cfg.worker_sched;
        let mixer_thread = std::thread::Builder::new()
            .name("tickcast-mixer".into())
            .spawn(move || {
                crate::sched::apply_worker_policy(worker_sched, "mixer");
                mixer.run()
            })
            .map_err(|e| StartError::spawn("the mixer thread", None, e))?;
        started.mixer = Some((mixer_tx.clone(), mixer_thread));

        let sink = match &bus {
            Some(b) if cfg.redis.as_ref().is_some_and(|r| r.publish_providers) => {
                Sink::Bus(b.tx.clone())
            }
            _ => Sink::Mixer(mixer_tx.clone()),
        };
        let provider_count = providers.len();
        let providers = ProviderSet::spawn(providers, &sink).map_err(|(name, e)| {
            let option = if name == "telemetry" {
                format!("--telemetry-interval {:?}", cfg.telemetry_interval)
            } else {
                format!("--providers {}", cfg.ticker.feeds)
            };
            StartError::spawn(&format!("provider thread {name}"), Some(option), e)
        })?;
        started.providers = Some(providers);
        drop(sink);
        if let Some(l) = self.metrics_listener {
            let state = bus.as_ref().map(|b| b.state.clone());
            started.metrics_listener =
                Some(MetricsListener::spawn(l, metrics.clone(), state).map_err(StartError::Io)?);
        }
        drop(bus);

        self.listener
            .set_nonblocking(true)
            .map_err(StartError::Io)?;
        let listener = mio::net::TcpListener::from_std(self.listener);
        let (acceptor, acceptor_handle) = Acceptor::new(
            listener,
            started.links.clone(),
            metrics.clone(),
            cfg.send_buffer,
            cfg.acceptor_rt_priority,
        )
        .map_err(|e| StartError::spawn("the acceptor's event loop", None, e))?;
        let acceptor_thread = std::thread::Builder::new()
            .name("tickcast-acceptor".into())
            .spawn(move || acceptor.run())
            .map_err(|e| StartError::spawn("the acceptor thread", None, e))?;
        started.acceptor = Some((acceptor_handle, acceptor_thread));

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
        Ok(Ready {
            local_addr: self.local_addr,
            metrics,
            mixer_tx,
            tls: self.tls,
        })
    }
}

/// What a successful [`Server::start_steps`] hands to the [`RunningServer`] besides its
/// threads.
struct Ready {
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    mixer_tx: Sender<MixerMsg>,
    tls: Option<Arc<Tls>>,
}

/// Builds every shard on the calling thread, then moves each into its own (pinned) thread.
/// Returns whether the shards are pinned.
fn start_shards(
    cfg: &Arc<ServerConfig>,
    metrics: &Arc<Metrics>,
    services: &Arc<Services>,
    mixer_tx: &Sender<MixerMsg>,
    started: &mut Started,
) -> Result<bool, StartError> {
    let asked = || Some(format!("--shards {}", cfg.shards));
    let mut shards = Vec::with_capacity(cfg.shards);
    for id in 0..cfg.shards {
        let (shard, link) = Shard::new(
            id,
            cfg.clone(),
            metrics.clone(),
            services.clone(),
            mixer_tx.clone(),
        )
        .map_err(|e| StartError::spawn(&format!("shard {id}'s event loop"), asked(), e))?;
        shards.push(shard);
        started.links.push(link);
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
            .map_err(|e| StartError::spawn(&format!("shard thread {id}"), asked(), e))?;
        started.shards.push(thread);
    }
    Ok(pin)
}

/// The threads started so far, in the order they are stopped: used by a running server's
/// shutdown and by a start that fails part-way, so both stop the same way.
#[derive(Debug, Default)]
struct Started {
    acceptor: Option<(AcceptorHandle, JoinHandle<()>)>,
    providers: Option<ProviderSet>,
    bus: Option<BusThreads>,
    /// The mixer's input (where `Shutdown` goes) and its thread.
    mixer: Option<(Sender<MixerMsg>, JoinHandle<()>)>,
    /// Every shard's link. Dropped (and the shard woken) once the mixer has stopped, so a
    /// shard's queue ends even when the mixer never started.
    links: Vec<ShardLink>,
    shards: Vec<JoinHandle<()>>,
    /// `--metrics-listen`'s thread.
    metrics_listener: Option<MetricsListener>,
}

impl Started {
    /// Stops and joins everything in dependency order (see the module docs).
    fn stop(self) {
        let Started {
            acceptor,
            providers,
            bus,
            mixer,
            links,
            shards,
            metrics_listener,
        } = self;
        if let Some((handle, thread)) = acceptor {
            handle.stop();
            join("acceptor", thread);
        }
        if let Some(providers) = providers {
            providers.stop();
        }
        let bus_publisher = bus.map(|b| {
            drop(b.stop);
            for (name, thread) in [
                ("bus subscriber", b.subscriber),
                ("bus history", b.history),
                ("bus presence", b.presence),
            ] {
                if let Some(thread) = thread {
                    join(name, thread);
                }
            }
            (b.publisher_stop, b.publisher)
        });
        if let Some((mixer_tx, thread)) = mixer {
            // Queued behind every message already sent; blocks only while the mixer catches
            // up.
            let _ = mixer_tx.send(MixerMsg::Shutdown);
            drop(mixer_tx);
            join("mixer", thread);
        }
        for link in links {
            let waker = link.waker.clone();
            drop(link);
            if let Err(e) = waker.wake() {
                log::warn!("could not wake a stopping shard: {e}");
            }
        }
        for (i, t) in shards.into_iter().enumerate() {
            join(&format!("shard {i}"), t);
        }
        if let Some((stop, publisher)) = bus_publisher {
            drop(stop);
            if let Some(publisher) = publisher {
                join("bus publisher", publisher);
            }
        }
        if let Some(l) = metrics_listener {
            l.stop();
        }
    }
}

/// The Redis bus threads of a running node (each `None` until started).
#[derive(Debug)]
struct BusThreads {
    /// Dropped to stop the subscriber and the history reader.
    stop: Sender<()>,
    subscriber: Option<JoinHandle<()>>,
    /// Reads resumes from Redis (none with `--history 0`).
    history: Option<JoinHandle<()>>,
    /// Keeps room membership in Redis.
    presence: Option<JoinHandle<()>>,
    /// Dropped once the shards have stopped: the publisher stops waiting for Redis.
    publisher_stop: Sender<()>,
    /// Ends once every sender (shards, providers) is gone and its queue is published.
    publisher: Option<JoinHandle<()>>,
}

/// A started bus: its health, the publisher's input, the history reader's input and the
/// presence keeper's input (its threads are in [`Started`]).
struct StartedBus {
    state: Arc<BusState>,
    tx: Sender<Publish>,
    fetch: Option<Sender<FetchAsk>>,
    presence: Sender<PresenceOp>,
}

/// Starts the Redis bus threads, each recorded in `slot` as it starts. They connect (and
/// reconnect) by themselves: an unreachable Redis does not stop the node from serving its
/// local streams.
fn start_bus(
    cfg: &BusConfig,
    interest: &Arc<Interest>,
    mixer_tx: &Sender<MixerMsg>,
    metrics: &Metrics,
    slot: &mut Option<BusThreads>,
) -> Result<StartedBus, StartError> {
    let asked = || Some("--redis".to_string());
    let state = BusState::new();
    let (publisher_stop, publisher_stop_rx) = crossbeam_channel::bounded(0);
    let (stop, stop_rx) = crossbeam_channel::bounded(0);
    let threads = slot.insert(BusThreads {
        stop,
        subscriber: None,
        history: None,
        presence: None,
        publisher_stop,
        publisher: None,
    });
    let (publisher, tx) = BusPublisher::new(
        cfg.clone(),
        publisher_stop_rx,
        state.clone(),
        metrics.bus_publisher.clone(),
    );
    let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .map_err(|e| StartError::spawn(&format!("thread {name}"), asked(), e))
    };
    threads.publisher = Some(spawn(
        "tickcast-bus-pub",
        Box::new(move || publisher.run()),
    )?);
    let subscriber = BusSubscriber::new(
        cfg.clone(),
        interest.clone(),
        mixer_tx.clone(),
        stop_rx.clone(),
        state.clone(),
        metrics.bus_subscriber.clone(),
    );
    threads.subscriber = Some(spawn(
        "tickcast-bus-sub",
        Box::new(move || subscriber.run()),
    )?);
    let fetch = if cfg.history > 0 {
        let (reader, fetch) = BusHistory::new(
            cfg.clone(),
            mixer_tx.clone(),
            interest.clone(),
            state.clone(),
            stop_rx.clone(),
        );
        threads.history = Some(spawn(
            "tickcast-bus-history",
            Box::new(move || reader.run()),
        )?);
        Some(fetch)
    } else {
        None
    };
    let (members, presence) = BusPresence::new(
        cfg.clone(),
        mixer_tx.clone(),
        interest.clone(),
        state.clone(),
        stop_rx,
    );
    threads.presence = Some(spawn(
        "tickcast-bus-presence",
        Box::new(move || members.run()),
    )?);
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
    })
}

/// A running server: its threads and the handles to stop them.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    /// For [`RunningServer::publisher`].
    mixer_tx: Sender<MixerMsg>,
    started: Started,
    tls: Option<Arc<Tls>>,
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
        self.started
            .metrics_listener
            .as_ref()
            .map(MetricsListener::addr)
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
            mixer_tx, started, ..
        } = self;
        drop(mixer_tx);
        started.stop();
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
