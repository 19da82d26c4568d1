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

use crossbeam_channel::Sender;
use serde_json::value::RawValue;

use crate::acceptor::{Acceptor, Gate};
use crate::admission::Admission;
use crate::auth::Verifier;
use crate::config::ServerConfig;
use crate::interest::Interest;
use crate::messages::{BusPort, MixerMsg, Publish, QueueBytes};
use crate::metrics::Metrics;
use crate::mixer::{Mixer, MixerConfig};
use crate::provider::telemetry::Telemetry;
use crate::provider::{Provider, ProviderSet, Sink, ticker};
use crate::scrape::MetricsListener;
use crate::services::Services;
use crate::tls::Tls;

mod threads;

use threads::{Started, start_bus, start_shards};

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
        let bus_port = bus.as_ref().map(|b| BusPort {
            tx: b.tx.clone(),
            subscribed: Arc::new(crate::bus::Following::new(
                b.state.clone(),
                interest.clone(),
            )),
        });
        let services = Arc::new(Services {
            admission: Admission::with_pending(
                cfg.connection_cap(),
                cfg.max_connections_per_ip,
                cfg.max_pending_per_ip,
                cfg.ipv6_prefix,
            ),
            verifier: cfg
                .auth_secret
                .as_ref()
                .map(|s| Verifier::new(&s.0).with_max_lifetime(cfg.max_token_lifetime)),
            interest,
            deflate_interest: deflate_interest.clone(),
            bus: bus.as_ref().map(|b| b.state.clone()),
            bus_port,
            tls: self.tls.clone(),
            mixer_bytes: QueueBytes::new(cfg.mixer_queue_bytes),
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
        let mut mixer = Mixer::new(mixer_rx, started.links.clone(), mixer_cfg, metrics.clone())
            .with_input_bytes(services.mixer_bytes.clone());
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
            Gate {
                admission: services.admission.clone(),
                trusted: cfg.trusted_proxies.clone(),
            },
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
