//! `tickcast probe-resume`: how long a client whose node went away takes to get back what it
//! missed from another node.
//!
//! Each round uses a fresh room: a member on node A publishes `gap + 1` messages and reads
//! them back (so they are sequenced), then a new client connects to node B with
//! `since=<room>:<seq of the first>` and the clock runs from its TCP connect to the last of
//! the `gap` replayed messages. Node B has never followed the room, so the replay comes from
//! the room's stream in Redis (the path a client takes after its node died); with
//! `followed`, a member on B joins the room first, so the replay comes from B's ring. A
//! `reset`, a missing or reordered message fails the round: the probe reports it and exits
//! non-zero. Bounded: at most `rounds` rounds, each under `timeout`.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// One probe's settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Node A (publishes) and node B (resumes), in 127.0.0.0/8.
    pub publish_on: SocketAddr,
    pub resume_on: SocketAddr,
    /// Messages the resumed client missed.
    pub gap: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Room names are `<prefix>-<round>` (a fresh room per round).
    pub room_prefix: String,
    /// A member on node B follows the room (replay from B's ring instead of Redis).
    pub followed: bool,
    /// Longest any single step may take.
    pub timeout: Duration,
}

type Ws = WebSocket<TcpStream>;

/// Runs the rounds and returns the JSON summary (`ok` false when a round failed).
pub fn run(cfg: &ProbeConfig) -> Value {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds");
    let mut failure = None;
    for round in 0..cfg.rounds {
        match one_round(cfg, round) {
            Ok(took) => {
                let _ = hist.record(took.as_micros().max(1) as u64);
            }
            Err(e) => {
                failure = Some(format!("round {round}: {e}"));
                break;
            }
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "ok": failure.is_none(),
        "error": failure,
        "source": if cfg.followed { "ring" } else { "redis" },
        "gap": cfg.gap,
        "rounds": hist.len(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": hist.max() as f64 / 1000.0,
    })
}

fn one_round(cfg: &ProbeConfig, round: usize) -> Result<Duration, String> {
    let room = format!("{}-{round}", cfg.room_prefix);
    let mut publisher = connect(cfg, cfg.publish_on, &format!("room={room}&client_id=pub"))?;
    let mut follower = if cfg.followed {
        Some(connect(
            cfg,
            cfg.resume_on,
            &format!("room={room}&client_id=follow"),
        )?)
    } else {
        None
    };
    // A message published before a node follows the room never reaches it live: probe
    // until both ends have the room.
    await_room(cfg, &mut publisher, follower.as_mut(), &room)?;
    let mut seqs = Vec::with_capacity(cfg.gap + 1);
    for n in 0..=cfg.gap {
        let op = json!({"op": "publish", "topic": room, "data": {"n": n}});
        send(&mut publisher, op.to_string())?;
        let v = next_in(cfg, &mut publisher, &room)?;
        seqs.push(v["seq"].as_u64().ok_or("a message without seq")?);
    }
    let since = seqs[0];
    let started = Instant::now();
    let mut resumed = connect(cfg, cfg.resume_on, &format!("since={room}:{since}"))?;
    for want in &seqs[1..] {
        let v = next_in(cfg, &mut resumed, &room)?;
        if v["seq"].as_u64() != Some(*want) {
            return Err(format!("replayed seq {} where {want} was due", v["seq"]));
        }
    }
    let took = started.elapsed();
    let _ = resumed.close(None);
    let _ = publisher.close(None);
    Ok(took)
}

/// Publishes probes (`{"probe":i}`, not counted) from `publisher` until one comes back to
/// it, and to `follower` when there is one.
fn await_room(
    cfg: &ProbeConfig,
    publisher: &mut Ws,
    mut follower: Option<&mut Ws>,
    room: &str,
) -> Result<(), String> {
    let until = Instant::now() + cfg.timeout;
    let short = Some(Duration::from_millis(200));
    let mut heard = (false, follower.is_none());
    for i in 0.. {
        if Instant::now() >= until {
            return Err(format!("{room} never came back from Redis"));
        }
        let op = json!({"op": "publish", "topic": room, "data": {"probe": i}});
        send(publisher, op.to_string())?;
        heard.0 = heard.0 || saw_probe(publisher, room, short)?;
        if let Some(f) = follower.as_deref_mut() {
            heard.1 = heard.1 || saw_probe(f, room, short)?;
        }
        if heard.0 && heard.1 {
            break;
        }
    }
    // Drain the late probes, so the measured messages come next.
    for ws in std::iter::once(publisher).chain(follower) {
        while saw_probe(ws, room, Some(Duration::from_millis(100)))? {}
        ws.get_mut()
            .set_read_timeout(Some(cfg.timeout))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether a probe of `room` arrives within `wait`.
fn saw_probe(ws: &mut Ws, room: &str, wait: Option<Duration>) -> Result<bool, String> {
    ws.get_mut()
        .set_read_timeout(wait)
        .map_err(|e| e.to_string())?;
    let until = Instant::now() + wait.unwrap_or_default();
    while Instant::now() < until {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if v["topic"] == room && v["data"].get("probe").is_some() {
                    return Ok(true);
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(false)
}

/// Connects to `/ws?<query>` and reads the welcome.
fn connect(cfg: &ProbeConfig, addr: SocketAddr, query: &str) -> Result<Ws, String> {
    let stream = TcpStream::connect_timeout(&addr, cfg.timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(cfg.timeout))
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/ws?{query}");
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream)
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    let welcome = next_json(&mut ws)?;
    if welcome["type"] != "welcome" {
        return Err(format!("expected a welcome, got {welcome}"));
    }
    Ok(ws)
}

fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text)).map_err(|e| e.to_string())
}

fn next_json(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.read().map_err(|e| e.to_string())? {
            Message::Text(t) => return serde_json::from_str(&t).map_err(|e| e.to_string()),
            Message::Close(c) => return Err(format!("closed: {c:?}")),
            _ => {}
        }
    }
}

/// The next sequenced message of `room`, skipping presence and acks; a `reset` or an error
/// fails the round.
fn next_in(cfg: &ProbeConfig, ws: &mut Ws, room: &str) -> Result<Value, String> {
    let until = Instant::now() + cfg.timeout;
    while Instant::now() < until {
        let v = next_json(ws)?;
        if v["type"] == "reset" || v["type"] == "error" {
            return Err(format!("got {v}"));
        }
        if v["topic"] == room && v.get("seq").is_some() {
            return Ok(v);
        }
    }
    Err(format!("no message on {room} within {:?}", cfg.timeout))
}
