//! The threads a server starts, and how they stop: the shards (built on the calling thread,
//! each then moved into its own pinned thread), the Redis bus threads, and [`Started`], the
//! record of what is running that a shutdown and a start failing part-way both stop through.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::StartError;
use crate::acceptor::AcceptorHandle;
use crate::bus::history::BusHistory;
use crate::bus::presence::BusPresence;
use crate::bus::publisher::BusPublisher;
use crate::bus::subscriber::BusSubscriber;
use crate::bus::{BusConfig, BusState};
use crate::config::ServerConfig;
use crate::interest::Interest;
use crate::messages::{FetchAsk, MixerMsg, PresenceOp, Publish, ShardLink};
use crate::metrics::Metrics;
use crate::provider::ProviderSet;
use crate::scrape::MetricsListener;
use crate::services::Services;
use crate::shard::Shard;

/// Builds every shard on the calling thread, then moves each into its own (pinned) thread.
/// Returns whether the shards are pinned.
pub(super) fn start_shards(
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
pub(super) struct Started {
    pub(super) acceptor: Option<(AcceptorHandle, JoinHandle<()>)>,
    pub(super) providers: Option<ProviderSet>,
    pub(super) bus: Option<BusThreads>,
    /// The mixer's input (where `Shutdown` goes) and its thread.
    pub(super) mixer: Option<(Sender<MixerMsg>, JoinHandle<()>)>,
    /// Every shard's link. Dropped (and the shard woken) once the mixer has stopped, so a
    /// shard's queue ends even when the mixer never started.
    pub(super) links: Vec<ShardLink>,
    pub(super) shards: Vec<JoinHandle<()>>,
    /// `--metrics-listen`'s thread.
    pub(super) metrics_listener: Option<MetricsListener>,
}

impl Started {
    /// Stops and joins everything in dependency order (see the module docs).
    pub(super) fn stop(self) {
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
pub(super) struct BusThreads {
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
pub(super) struct StartedBus {
    pub(super) state: Arc<BusState>,
    pub(super) tx: Sender<Publish>,
    pub(super) fetch: Option<Sender<FetchAsk>>,
    pub(super) presence: Sender<PresenceOp>,
}

/// Starts the Redis bus threads, each recorded in `slot` as it starts. They connect (and
/// reconnect) by themselves: an unreachable Redis does not stop the node from serving its
/// local streams.
pub(super) fn start_bus(
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

fn join(name: &str, thread: JoinHandle<()>) {
    if thread.join().is_err() {
        log::error!("{name} thread panicked");
    }
}
