//! tickcast: a thread-per-core WebSocket broadcaster.
//!
//! Many live providers are merged into one ordered stream and pushed, in real time, to tens of
//! thousands of WebSocket clients. There is no async runtime: every thread owns its state and
//! talks to the others through bounded channels.
//!
//! ```text
//!  providers (one thread each)         mixer (one thread)                  shards (one per core)
//!  ticker feed 0 ──┐                                                      ┌─ shard 0: mio::Poll
//!  ticker feed 1 ──┼─ bounded channel ─▶ sequence per topic, ─ try_send ─▶┤   Slab<Conn>, outboxes,
//!  telemetry    ───┘   (MixerMsg)        serialize JSON once,  (ShardMsg, └─ shard N: timers, topics
//!                         ▲              encode WS frame once   bounded,       │      ▲
//!                         │              into Arc<[u8]>;        per shard)     │      │ Intake
//!                         │              rooms, history                        │      │ (TcpStream)
//!                         │                                                    │   acceptor
//!                         ├──────── MixerPort (bounded; waits in order) ◀──────┤   (fewest conns)
//!                         │   client publishes, joins, leaves, /nick, /who,    │
//!                         │   resumes                                          │
//!                         │                                                    │ with --redis:
//!  bus subscriber ────────┘                    bus publisher ◀─────────────────┘ client publishes
//!  (SUBSCRIBE to the topics this           (one Lua script per message: seq, PUBLISH; ticks and
//!   node's clients want; seq kept)          telemetry too with --redis-publish-providers)
//!        ▲                                          │
//!        └──────────────────── Redis ◀──────────────┘
//! ```
//!
//! Every arrow is a bounded `crossbeam-channel`; the messages and the channel ends live in
//! [`messages`], which both sides of each arrow import, so no thread's module imports
//! another's. The modules form one hierarchy (checked by `tests/structure.rs`): lower modules
//! never import higher ones.
//!
//! Map of the crate, in the order a message travels:
//!
//! - [`provider`]: the `Provider` trait, the built-in synthetic `ticker` feeds and the
//!   `telemetry` provider (the server's own figures, published only while someone listens).
//! - [`messages`]: what the threads send each other (`MixerMsg`, `ShardMsg`, `Intake`), the
//!   handles they hold (`ShardLink`, `MixerPort`), and how a connection is named (`ConnKey`,
//!   `ConnRef`).
//! - [`mixer`]: the single sequencer; stamps `topic`/`seq`/`ts`, serializes and frames once
//!   (and compresses once, for clients that negotiated permessage-deflate);
//!   also owns room membership (presence) and per-topic history (resume).
//! - [`frame`]: server-to-client WebSocket frame encoding (`Arc<[u8]>`, shared by every client)
//!   and runs of frames a shard concatenates once for all its subscribers.
//! - [`shard`]: one event loop per core: its queue (drained into runs), its connections
//!   (reached through one `with_conn`), the flush pass.
//! - [`subs`]: one shard's topic -> subscribers index, a set per class (plain, deflate,
//!   `?batch=1`, both), each walked with its own frame or run.
//! - [`timer`]: the timer wheel behind every connection's deadlines.
//! - [`conn`]: one connection's state machine, deadlines, inbound frame parser and outbox.
//! - [`edge`]: what comes before the request: the PROXY protocol header (v1, v2), and the
//!   client's address behind trusted proxies (`Forwarded`, `X-Forwarded-For`).
//! - [`http`]: HTTP/1.1 request parsing, routing and the WebSocket upgrade answer.
//! - [`dashboard`]: the live page served at `GET /` (embedded; draws `telemetry` and `ticks`).
//! - [`deflate`]: permessage-deflate: the offers and the answer, each broadcast compressed
//!   once (the mixer), clients' compressed messages inflated within `--max-message` (shards).
//! - [`protocol`]: the JSON messages clients send, the error frames they get back, and the
//!   server's topic names.
//! - [`chat`]: chat commands (`/me`, `/nick`, `/who`, `/shrug`), parsed on the shard.
//! - [`ratelimit`]: the per-connection publish token bucket.
//! - [`auth`]: signed tokens (JWT HS256), topic rights, Origin checks.
//! - [`admission`]: `--max-connections` and `--max-connections-per-ip`.
//! - [`tls`]: `wss://`: the certificate and key, loaded at start and on SIGHUP, and the
//!   rustls configuration shards make sessions from (each connection drives its own session
//!   in the shard's loop, `conn/transport.rs`).
//! - [`services`]: what every shard consults at upgrade time (caps, tokens, interest, bus).
//! - [`interest`]: which topics this node's clients want, across shards.
//! - [`bus`]: scale-out through Redis or a Redis Cluster: Pub/Sub (sharded on a cluster) for
//!   messages, a stream per topic for resumes on any node, room members shared across nodes
//!   (publisher, subscriber, history and presence threads; on a cluster, one subscriber
//!   thread per master).
//! - [`acceptor`]: accepts sockets and hands each to the least-loaded shard.
//! - [`sched`]: the acceptor's real-time priority (or short slice) and its flood guard, and the
//!   shards' and mixer's `SCHED_BATCH` (a woken worker does not preempt its core's thread).
//! - [`metrics`]: Prometheus exposition, including latency from per-shard hdrhistograms, the
//!   shards' own counters and the bus threads'; every label value known up front has its
//!   series from the first scrape.
//! - [`scrape`]: `--metrics-listen`: `/metrics` and `/healthz` on an address and a thread of
//!   their own, so a scrape never takes a shard's turn.
//! - [`clock`]: the wall clock every stamp is read from.
//! - [`config`]: the plain, validated configuration struct.
//! - [`server`]: starts the threads in order and shuts them down gracefully.
//! - [`listener`]: the listening socket (shared with the baseline) and the open-file limit.
//! - [`cli`]: the command line and `serve --config`'s TOML file, merged under the flags and
//!   variables, and the logging options (the only module that knows clap).
//! - [`procstat`]: what `/proc` and `getrusage` say of a process and the machine (telemetry,
//!   `/metrics`' `process_*` figures, the load generator and the reliability suite read them
//!   the same way).
//!
//! Measuring (not part of the server's path):
//!
//! - [`load`]: `tickcast load`, the load generator (mio threads, own client framing, hdrhistogram;
//!   `wss://` through rustls driven by the same loops).
//! - [`baseline`]: `tickcast baseline`, the bare one-thread write loop tickcast is compared to.
//! - [`report`]: the `raw.csv` schema, saturation points, `summary.md` and SVG charts.
//! - [`abuse`]: `tickcast abuse`, the client side of the hostile scenarios
//!   `scripts/abuse.sh` runs (churn, slowloris, stalled readers, malformed input, floods,
//!   shutdown under load, reconnect storms).
//! - [`probe`]: `tickcast probe-resume`, the time a client takes to resume on another node.
//! - [`health`]: `tickcast health`, the `/healthz` probe a container's `HEALTHCHECK` runs.

pub mod abuse;
pub mod acceptor;
pub mod admission;
pub mod auth;
pub mod baseline;
pub mod bus;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod deflate;
pub mod edge;
pub mod frame;
pub mod health;
pub mod http;
pub mod interest;
pub mod listener;
pub mod load;
pub mod messages;
pub mod metrics;
pub mod mixer;
pub mod probe;
pub mod procstat;
pub mod protocol;
pub mod provider;
pub mod ratelimit;
pub mod report;
pub mod sched;
pub mod scrape;
pub mod server;
pub mod services;
pub mod shard;
pub mod subs;
pub mod timer;
pub mod tls;
