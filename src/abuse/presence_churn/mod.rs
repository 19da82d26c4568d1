//! Scenario `presence_churn`: a room of many members (under `--presence-list-max`) and one
//! churner that leaves and rejoins it in a tight loop, and now and then subscribes to 63
//! more rooms in a single op: small messages that ask the server for big work (a member
//! list built and sent, a delta to every member, a snapshot per room joined).
//!
//! The defenses: a `subscribe` costs one message token per room it joins beyond the first
//! (a `resume` one per topic), so the churner's work is held to `--publish-rate` and
//! `--publish-burst` like its messages, and what is past them is refused with `rate_limited`
//! (50 refusals in a row: close 1008); and a connection that rejoins a room less than a
//! second after it was last sent the room's full list gets a count-only snapshot
//! (`"truncated":true`, no `members`), not the list (docs/protocol.md; lists of at most 32
//! members are always sent, so this part is undecided for rooms that small).
//!
//! The churner waits for each reply and, like an attacker who knows the rules, backs off
//! for a token's time after 40 refusals in a row, so it keeps going at the most the limits
//! allow. Checks: the message tokens its accepted ops cost stay within the burst plus the
//! rate over its connection's life ([`ops::token_bound`]); its refusals are `rate_limited`;
//! no rejoin snapshot lists the members sooner than a second after the last list, and
//! their bytes are a small part of what full lists would have been ([`LIST_SHARE`]); every member received a delta for each of its accepted
//! leaves and rejoins (within [`DELTA_SHARE`]); a normal client is served. The server's CPU
//! time per churn op is reported (`/proc/PID/stat`).

use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Ending, Tally, WsConn};
use super::crowd::{self, Pace};
use super::drive::{Cx, Judged, Play, Reads, Seen};
use super::fleet::Fleet;
use super::ops::{self, Frames};
use super::report::{Check, Raw};
use crate::mixer::rooms::listed::{CHEAP_LIST, REJOIN_WINDOW};
use crate::procstat::{self, Process};

mod rejoins;

use rejoins::room_starts;
pub use rejoins::{Rejoins, rejoins};

/// Rooms subscribed in one op beside the churned one (a connection holds 64 topics).
const SMALL_ROOMS: usize = 63;
/// One op in this many is the big subscribe (or its unsubscribe).
const BIG_EVERY: u64 = 20;
/// Refusals in a row after which the churner waits for a token (the server closes at 50).
const BACK_OFF_AFTER: u32 = 40;
/// Largest share of the full lists' bytes the rejoin snapshots may take.
pub const LIST_SHARE: f64 = 0.1;
/// Smallest share of the expected deltas every member must have received.
pub const DELTA_SHARE: f64 = 0.99;
/// Slack on the rejoin window for arrival times seen by the client rather than the
/// server's clock at the join.
const ARRIVAL_MARGIN: Duration = Duration::from_millis(100);
/// Time allowed to connect, for each reply, and for the last deltas to arrive.
const STEP: Duration = Duration::from_secs(10);

/// Scenario `presence_churn`: `members` in one room and a churner for `window`.
pub struct PresenceChurn {
    members: usize,
    window: Duration,
    /// The server's message rate and burst (its defaults).
    rate: f64,
    burst: f64,
    room: String,
}

impl PresenceChurn {
    /// The scenario as `cfg` sizes it, against a server with the default limits.
    pub fn new(cfg: &AbuseConfig) -> PresenceChurn {
        let d = crate::config::ServerConfig::default();
        PresenceChurn {
            members: cfg.count_or(100, 900).min(d.presence_list_max),
            window: cfg.duration_or(Duration::from_secs(3), Duration::from_secs(10)),
            rate: d.publish_rate,
            burst: f64::from(d.publish_burst),
            room: ops::fresh_room("pc"),
        }
    }
}

/// What the churner did.
#[derive(Debug, Default)]
pub struct Churner {
    /// Ops sent, by kind (`leave`, `rejoin`, `big_subscribe`, `big_unsubscribe`).
    attempted: Tally,
    /// Ops accepted, by kind.
    accepted: Tally,
    /// Message tokens the accepted ops cost.
    tokens: f64,
    /// The bound on them, summed over its connections.
    bound: f64,
    /// Connections it used (a 1008 close makes it reconnect).
    connections: u64,
    /// How many snapshots it had been sent when each connection opened.
    starts: Vec<usize>,
    /// How its connections ended.
    endings: Tally,
    frames: Frames,
}

/// What the run saw.
pub struct Churned {
    joined: usize,
    failures: Tally,
    churner: Churner,
    /// Deltas each member received during the churn.
    deltas: Vec<u64>,
    members_ended: usize,
    cpu: Option<Duration>,
    secs: f64,
}

impl Play for PresenceChurn {
    type Clients = Fleet;
    type Outcome = Churned;

    fn expectation(&self) -> &'static str {
        "a churner leaves and rejoins a room of many members and subscribes 63 rooms in one op: its accepted ops cost at most burst + rate x time in tokens (refusals rate_limited), rejoin snapshots within 1 s of the last full list carry no member list, every member gets each delta; a normal client served"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[]).watched().needs_pid()
    }

    fn connect(&self, cx: &Cx) -> Result<Fleet, String> {
        let mut fleet = Fleet::new().map_err(|e| e.to_string())?;
        let path = format!("/ws?room={}", self.room);
        crowd::issue(&mut fleet, cx.cfg, self.members, &path, Pace::Rate(1_000.0))?;
        // Joined: the welcome and the room's snapshot came.
        let deadline = Instant::now() + STEP * 3;
        fleet
            .run_until(deadline, |f| f.texts().iter().all(|&t| t >= 2))
            .map_err(|e| e.to_string())?;
        Ok(fleet)
    }

    fn run(&self, cx: &Cx, mut fleet: Fleet) -> Result<Churned, String> {
        let texts0 = fleet.texts();
        let joined = texts0.iter().filter(|&&t| t >= 2).count();
        let failures = fleet.tally();
        let cpu = |cfg: &AbuseConfig| {
            cfg.server_pid
                .and_then(|p| procstat::stat_cpu_time(Process::Pid(p)))
        };
        let cpu0 = cpu(cx.cfg);
        let started = Instant::now();
        // The members read on this thread while the churner runs on its own.
        let churner = std::thread::scope(|scope| {
            let churn = scope.spawn(|| self.churn(cx.cfg, started + self.window));
            while !churn.is_finished() {
                if fleet.turn(Duration::from_millis(5)).is_err() {
                    break;
                }
            }
            churn.join().map_err(|_| "the churner panicked".to_string())
        })?;
        let secs = started.elapsed().as_secs_f64();
        let cpu1 = cpu(cx.cfg);
        // The last deltas: until every member has them, or nothing more comes.
        let expected = expected_deltas(&churner.accepted);
        let deadline = Instant::now() + STEP;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            crowd::turn_for(&mut fleet, Duration::from_millis(200))?;
            let now = fleet.texts();
            let done = now
                .iter()
                .zip(&texts0)
                .all(|(a, b)| a.saturating_sub(*b) >= expected);
            if done || now == last {
                break;
            }
            last = now;
        }
        let deltas: Vec<u64> = fleet
            .texts()
            .iter()
            .zip(&texts0)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let members_ended = fleet.counts().3;
        fleet.drop_all();
        Ok(Churned {
            joined,
            failures,
            churner,
            deltas,
            members_ended,
            cpu: cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
            secs,
        })
    }

    fn judge(&self, c: Churned, _: &Seen) -> Judged {
        let n = self.members;
        let ch = &c.churner;
        let attempted: u64 = ch.attempted.values().sum();
        let joins = ch.accepted.get("join").copied().unwrap_or(0);
        let accepted: u64 = ch.accepted.values().sum::<u64>() - joins;
        let refused = ch.frames.errors_of("rate_limited");
        let other_errors = ch.frames.error_count() - refused;
        let room: Vec<&ops::Snapshot> = ch
            .frames
            .snapshots
            .iter()
            .filter(|s| s.topic == self.room)
            .collect();
        let rj = rejoins(
            &room,
            &room_starts(&ch.frames.snapshots, &ch.starts, &self.room),
        );
        let full = room.first().map_or(0, |s| s.bytes);
        let full_bytes = full * rj.rejoins;
        let expected = expected_deltas(&ch.accepted);
        let min_deltas = c.deltas.iter().copied().min().unwrap_or(0);
        let max_deltas = c.deltas.iter().copied().max().unwrap_or(0);
        let cpu_us = |ops: u64| c.cpu.map(|d| d.as_secs_f64() * 1e6 / ops.max(1) as f64);
        let checks = vec![
            Check::new(
                "members_joined",
                c.joined == n,
                format!(
                    "{} of {n} members joined; {}",
                    c.joined,
                    client::tally_text(&c.failures)
                ),
            ),
            Check::new(
                "held_to_rate",
                ch.tokens <= ch.bound && accepted > 0,
                format!(
                    "{accepted} of {attempted} ops accepted, costing {:.0} tokens (bound {:.0}: burst {:.0} + {:.0}/s over {:.1} s, {} connections)",
                    ch.tokens, ch.bound, self.burst, self.rate, c.secs, ch.connections
                ),
            ),
            Check::new(
                "refused_rate_limited",
                refused > 0 && other_errors == 0 && refused + accepted >= attempted,
                format!(
                    "{refused} refused rate_limited, {other_errors} other errors; endings: {}",
                    client::tally_text(&ch.endings)
                ),
            ),
            Check::maybe(
                "rejoin_count_only",
                (n > CHEAP_LIST).then_some(
                    rj.count_only > 0
                        && rj.early_lists == 0
                        && (rj.bytes as f64) <= full_bytes as f64 * LIST_SHARE,
                ),
                format!(
                    "{} rejoin snapshots: {} count only, {} full lists ({} of them within {:?} of the last, allowed {:?} late); {} bytes, as full lists {full_bytes} ({full} bytes each){}",
                    rj.rejoins,
                    rj.count_only,
                    rj.lists,
                    rj.early_lists,
                    REJOIN_WINDOW,
                    ARRIVAL_MARGIN,
                    rj.bytes,
                    if n > CHEAP_LIST {
                        String::new()
                    } else {
                        format!(
                            "; a room of {n} is at most {CHEAP_LIST}: lists that short are always sent"
                        )
                    }
                ),
            ),
            Check::new(
                "members_served",
                c.members_ended == 0
                    && c.deltas.len() == n
                    && min_deltas as f64 >= expected as f64 * DELTA_SHARE,
                format!(
                    "deltas per member {min_deltas}-{max_deltas}, {expected} expected; {} members cut off",
                    c.members_ended
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("members", n);
        raw.put("attempted", &ch.attempted);
        raw.put("accepted", &ch.accepted);
        raw.put("tokens", ch.tokens);
        raw.put("token_bound", ch.bound);
        raw.put("connections", ch.connections);
        raw.put("churner_errors", &ch.frames.errors);
        raw.put("rejoin_snapshots", rj.rejoins);
        raw.put("rejoin_count_only", rj.count_only);
        raw.put("rejoin_full_lists", rj.lists);
        raw.put("rejoin_early_lists", rj.early_lists);
        raw.put("rejoin_snapshot_bytes", rj.bytes);
        raw.put("full_snapshot_bytes", full);
        raw.put("deltas_expected", expected);
        raw.put("deltas_min", min_deltas);
        raw.put("deltas_max", max_deltas);
        raw.put("server_cpu_s", c.cpu.map(|d| d.as_secs_f64()));
        raw.put("server_cpu_us_per_op", cpu_us(attempted));
        raw.put("server_cpu_us_per_accepted_op", cpu_us(accepted));
        let summary = format!(
            "{accepted} of {attempted} churn ops accepted ({:.0} tokens, bound {:.0}); {} rejoin snapshots ({} count only) {} B vs {full_bytes} B as lists; member deltas {min_deltas}/{expected}; server CPU {} us/op",
            ch.tokens,
            ch.bound,
            rj.rejoins,
            rj.count_only,
            rj.bytes,
            cpu_us(attempted).map_or("?".into(), |u| format!("{u:.1}"))
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// The deltas each member should see: one per accepted leave and rejoin of the room, and
/// one per join of a churner connection.
fn expected_deltas(accepted: &Tally) -> u64 {
    ["leave", "rejoin", "join"]
        .iter()
        .map(|k| accepted.get(*k).copied().unwrap_or(0))
        .sum()
}

/// An op of the churn and the message tokens it costs when accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Unsubscribe the room.
    Leave,
    /// Subscribe the room again.
    Rejoin,
    /// Subscribe the 63 small rooms at once.
    BigSubscribe,
    /// Unsubscribe them.
    BigUnsubscribe,
}

impl Op {
    /// Its label in the tallies.
    pub fn label(self) -> &'static str {
        match self {
            Op::Leave => "leave",
            Op::Rejoin => "rejoin",
            Op::BigSubscribe => "big_subscribe",
            Op::BigUnsubscribe => "big_unsubscribe",
        }
    }

    /// Message tokens it costs when accepted: one, and one more per room joined past the
    /// first.
    pub fn tokens(self) -> f64 {
        match self {
            Op::BigSubscribe => SMALL_ROOMS as f64,
            _ => 1.0,
        }
    }

    /// The op that comes `k`-th, given whether the churner is in the room and holds the
    /// small rooms.
    pub fn next(k: u64, in_room: bool, holds_small: bool) -> Op {
        match (k % BIG_EVERY == BIG_EVERY - 1, in_room, holds_small) {
            (true, _, false) => Op::BigSubscribe,
            (true, _, true) => Op::BigUnsubscribe,
            (false, true, _) => Op::Leave,
            (false, false, _) => Op::Rejoin,
        }
    }
}

impl PresenceChurn {
    /// The churner's loop until `end`: each op sent and its reply awaited; a connection the
    /// server closes is replaced.
    fn churn(&self, cfg: &AbuseConfig, end: Instant) -> Churner {
        let mut ch = Churner::default();
        let small: Vec<String> = (0..SMALL_ROOMS)
            .map(|k| format!("room.pc-small.{k}"))
            .collect();
        let path = format!("/ws?room={}", self.room);
        let mut k = 0u64;
        while Instant::now() < end {
            let Ok(mut conn) = WsConn::open(cfg.target, cfg.source(self.members), &path, STEP)
            else {
                client::count(&mut ch.endings, "connect_failed");
                break;
            };
            let opened = Instant::now();
            ch.connections += 1;
            ch.starts.push(ch.frames.snapshots.len());
            client::count(&mut ch.accepted, "join");
            let (mut in_room, mut holds_small, mut strikes) = (true, false, 0u32);
            let ending = loop {
                if Instant::now() >= end {
                    break None;
                }
                let op = Op::next(k, in_room, holds_small);
                k += 1;
                let text = match op {
                    Op::Leave => ops::unsubscribe(&[&self.room]),
                    Op::Rejoin => ops::subscribe(&[&self.room]),
                    Op::BigSubscribe => ops::subscribe(&small),
                    Op::BigUnsubscribe => ops::unsubscribe(&small),
                };
                let replies = reply_count(&ch.frames);
                if conn.send_text(&text).is_err() {
                    break Some(Ending::Reset);
                }
                client::count(&mut ch.attempted, op.label());
                let errors = ch.frames.error_count();
                let got = ops::read_for(&mut conn, Instant::now() + STEP, &mut ch.frames, |f| {
                    reply_count(f) > replies
                });
                if !got {
                    break Some(
                        ops::read_until(&mut conn, Instant::now(), &mut ch.frames)
                            .unwrap_or(Ending::Timeout),
                    );
                }
                if ch.frames.error_count() > errors {
                    strikes += 1;
                    if strikes >= BACK_OFF_AFTER {
                        // A token's time, read meanwhile.
                        let wait = Duration::from_secs_f64(1.5 / self.rate.max(1.0));
                        if let Some(end) =
                            ops::read_until(&mut conn, Instant::now() + wait, &mut ch.frames)
                        {
                            break Some(end);
                        }
                        strikes = 0;
                    }
                    continue;
                }
                strikes = 0;
                client::count(&mut ch.accepted, op.label());
                ch.tokens += op.tokens();
                match op {
                    Op::Leave => in_room = false,
                    Op::Rejoin => in_room = true,
                    Op::BigSubscribe => holds_small = true,
                    Op::BigUnsubscribe => holds_small = false,
                }
            };
            ch.bound += ops::token_bound(self.rate, self.burst, opened.elapsed().as_secs_f64());
            // The snapshots of a last rejoin, before the socket goes.
            let _ = ops::read_until(
                &mut conn,
                Instant::now() + Duration::from_millis(100),
                &mut ch.frames,
            );
            if let Some(end) = ending {
                client::count(&mut ch.endings, end.label());
            }
            client::abort(conn.stream);
        }
        ch
    }
}

/// Replies to ops received so far: acks (the welcome aside) and error frames.
fn reply_count(f: &Frames) -> u64 {
    f.acks_of("subscribed") + f.acks_of("unsubscribed") + f.error_count()
}

#[cfg(test)]
mod tests;
