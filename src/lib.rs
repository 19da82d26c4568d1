//! tickcast: a thread-per-core WebSocket broadcaster.
//!
//! Many live providers are merged into one ordered stream and pushed, in real time, to tens of
//! thousands of WebSocket clients. There is no async runtime: every thread owns its state and
//! talks to the others through bounded channels.
//!
//! ```text
//!  providers (one thread each)          mixer (one thread)                 shards (one per core)
//!  ticker feed 0 ──┐                                                       ┌─ shard 0: mio::Poll
//!  ticker feed 1 ──┼─ bounded channel ─▶ sequence per topic,  ─ try_send ─▶┤   Slab<Conn>, outboxes,
//!  ...            ─┘   (fan-in)          serialize JSON once,   (bounded,  └─ shard N: timers, topics
//!                                        encode WS frame once   per shard)        ▲
//!                                        into Arc<[u8]>                           │ TcpStream
//!                                                                  acceptor ──────┘ (fewest conns)
//! ```
//!
//! Map of the crate, in the order a message travels:
//!
//! - [`provider`]: the `Provider` trait, the built-in synthetic `ticker` feeds and the
//!   `telemetry` provider (the server's own figures, published only while someone listens).
//! - [`mixer`]: the single sequencer; stamps `topic`/`seq`/`ts`, serializes and frames once;
//!   also owns room membership (presence) and per-topic history (resume).
//! - [`frame`]: server-to-client WebSocket frame encoding (`Arc<[u8]>`, shared by every client)
//!   and runs of frames a shard concatenates once for all its subscribers.
//! - [`shard`]: one event loop per core: its queue (drained into runs), topic index, timer
//!   wheel and connections.
//! - [`conn`]: one connection's state machine, deadlines, inbound frame parser and outbox.
//! - [`http`]: HTTP/1.1 request parsing, routing and the WebSocket upgrade answer.
//! - [`dashboard`]: the live page served at `GET /` (embedded; draws `telemetry` and `ticks`).
//! - [`protocol`]: the JSON messages clients send and the error frames they get back.
//! - [`chat`]: chat commands (`/me`, `/nick`, `/who`, `/shrug`), parsed on the shard.
//! - [`ratelimit`]: the per-connection publish token bucket.
//! - [`auth`]: signed tokens (JWT HS256), topic rights, Origin checks.
//! - [`admission`]: `--max-connections` and `--max-connections-per-ip`.
//! - [`interest`]: which topics this node's clients want, across shards.
//! - [`bus`]: scale-out through Redis Pub/Sub (publisher and subscriber threads).
//! - [`acceptor`]: accepts sockets and hands each to the least-loaded shard.
//! - [`sched`]: the acceptor's real-time priority (or short slice) and its flood guard.
//! - [`metrics`]: Prometheus exposition, including latency from per-shard hdrhistograms; every
//!   label value known up front has its series from the first scrape.
//! - [`config`]: the plain, validated configuration struct.
//! - [`server`]: starts the threads in order and shuts them down gracefully.
//! - [`cli`]: the command line (the only module that knows clap).
//!
//! Measuring (not part of the server's path):
//!
//! - [`load`]: `tickcast load`, the load generator (mio threads, own client framing, hdrhistogram).
//! - [`baseline`]: `tickcast baseline`, the bare one-thread write loop tickcast is compared to.
//! - [`report`]: the `raw.csv` schema, saturation points, `summary.md` and SVG charts.

pub mod acceptor;
pub mod admission;
pub mod auth;
pub mod baseline;
pub mod bus;
pub mod chat;
pub mod cli;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod frame;
pub mod http;
pub mod interest;
pub mod load;
pub mod metrics;
pub mod mixer;
pub mod protocol;
pub mod provider;
pub mod ratelimit;
pub mod report;
pub mod sched;
pub mod server;
pub mod shard;
