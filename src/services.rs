//! The server-wide services every shard consults when a client upgrades (never per
//! message): connection caps, token verification, the node's topic interest, the Redis
//! bus and TLS. Built once by the server and shared as `Arc<Services>`.

use std::sync::Arc;

use crate::admission::Admission;
use crate::auth::Verifier;
use crate::bus::BusState;
use crate::interest::Interest;
use crate::messages::{BusPort, QueueBytes};
use crate::tls::Tls;

/// Server-wide services every shard consults at upgrade time (never per message).
#[derive(Debug)]
pub struct Services {
    /// Connection caps.
    pub admission: Arc<Admission>,
    /// Token verification, when `--auth-secret` is set.
    pub verifier: Option<Verifier>,
    /// Which topics this node's clients want (reported by the topic indexes).
    pub interest: Arc<Interest>,
    /// Which topics have a subscriber that negotiated permessage-deflate (the mixer
    /// compresses their messages).
    pub deflate_interest: Arc<Interest>,
    /// The Redis bus's health, when `--redis` is set (for `/healthz`).
    pub bus: Option<Arc<BusState>>,
    /// The Redis bus publisher's input and how far its subscriber follows the node's
    /// interest, when `--redis` is set (client publishes go there).
    pub bus_port: Option<BusPort>,
    /// TLS for new connections, when `--tls-cert` is set.
    pub tls: Option<Arc<Tls>>,
    /// The bytes of client publishes on their way to the mixer (`--mixer-queue-bytes`),
    /// shared by every shard's port and the mixer.
    pub mixer_bytes: QueueBytes,
}
