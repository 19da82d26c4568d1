//! Providers: live data sources, each on its own thread, feeding the mixer (fan-in).
//!
//! A provider implements [`Provider`]: it runs until asked to stop and publishes through its
//! [`ProviderCtx`]. The context hides the mixer channel and the stop signal: `publish` waits
//! while the mixer's input is full (back-pressure on this provider alone) but gives up as soon
//! as the server stops, and `sleep_until` returns early on stop, so shutdown never waits for a
//! provider's next tick.

pub mod telemetry;
pub mod ticker;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError};
use serde_json::value::RawValue;

use crate::messages::{MixerMsg, Publish};

/// A live data source.
pub trait Provider: Send + 'static {
    /// Short name, used for the thread name and logs.
    fn name(&self) -> String;
    /// Produces messages until `ctx.stopping()` (or a publish/sleep reports the stop).
    fn run(&mut self, ctx: &ProviderCtx);
}

/// Where providers' messages go: the local mixer, or (with `--redis-publish-providers`) the
/// Redis bus, which sequences them for every node.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Straight into this node's mixer.
    Mixer(Sender<MixerMsg>),
    /// Through the Redis bus publisher.
    Bus(Sender<Publish>),
}

/// What a provider thread gets to talk to the server.
#[derive(Debug, Clone)]
pub struct ProviderCtx {
    sink: Sink,
    /// Never sent on; disconnected when the server stops.
    stop: Receiver<()>,
}

/// How long `publish` waits on a full mixer before re-checking the stop signal.
const PUBLISH_RETRY: Duration = Duration::from_millis(50);

impl ProviderCtx {
    /// A context publishing into `sink` until `stop` disconnects.
    pub fn new(sink: Sink, stop: Receiver<()>) -> Self {
        ProviderCtx { sink, stop }
    }

    /// Publishes `data` on `topic`. Returns false once the server is stopping.
    pub fn publish(&self, topic: &Arc<str>, data: Box<RawValue>) -> bool {
        self.send(Publish::new(topic.clone(), data))
    }

    /// [`ProviderCtx::publish`] for a message that came to be at `made_us` (µs since the Unix
    /// epoch; a paced provider's due time), which becomes its `ts`.
    pub fn publish_made(&self, topic: &Arc<str>, data: Box<RawValue>, made_us: u64) -> bool {
        self.send(Publish::new(topic.clone(), data).made_at(made_us))
    }

    fn send(&self, msg: Publish) -> bool {
        match &self.sink {
            Sink::Mixer(tx) => self.send_patiently(tx, MixerMsg::Publish(msg)),
            Sink::Bus(tx) => self.send_patiently(tx, msg),
        }
    }

    /// Sends on a bounded channel, waiting while it is full, until the server stops.
    fn send_patiently<T>(&self, tx: &Sender<T>, mut msg: T) -> bool {
        loop {
            match tx.send_timeout(msg, PUBLISH_RETRY) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !self.stopping() => msg = back,
                Err(_) => return false,
            }
        }
    }

    /// Whether the server asked providers to stop.
    pub fn stopping(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps until `deadline`; returns false (at once) if the server stops meanwhile.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        // Nothing is ever sent on `stop`: it either times out or disconnects.
        matches!(
            self.stop.recv_deadline(deadline),
            Err(RecvTimeoutError::Timeout)
        )
    }
}

/// Running provider threads.
#[derive(Debug)]
pub struct ProviderSet {
    threads: Vec<JoinHandle<()>>,
    /// Dropped to tell every provider to stop.
    stop: Option<Sender<()>>,
}

impl ProviderSet {
    /// Starts each provider on its own thread, publishing into `sink`. When a thread cannot
    /// be started, the ones already running are stopped and joined, and the error names the
    /// provider that could not start.
    pub fn spawn(
        providers: Vec<Box<dyn Provider>>,
        sink: &Sink,
    ) -> Result<Self, (String, std::io::Error)> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let mut set = ProviderSet {
            threads: Vec::with_capacity(providers.len()),
            stop: Some(stop_tx),
        };
        for mut provider in providers {
            let ctx = ProviderCtx::new(sink.clone(), stop_rx.clone());
            let name = provider.name();
            let spawned = std::thread::Builder::new()
                .name(format!("tickcast-{name}"))
                .spawn({
                    let name = name.clone();
                    move || {
                        log::debug!("provider {name} started");
                        provider.run(&ctx);
                        log::debug!("provider {name} stopped");
                    }
                });
            match spawned {
                Ok(thread) => set.threads.push(thread),
                Err(e) => {
                    set.stop();
                    return Err((name, e));
                }
            }
        }
        Ok(set)
    }

    /// Tells every provider to stop and waits for them.
    pub fn stop(mut self) {
        self.stop.take();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("a provider thread panicked");
            }
        }
    }
}
