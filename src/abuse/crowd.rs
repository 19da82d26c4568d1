//! How a scenario's clients are brought up, every way bounded in count and in time: a pool
//! of threads playing numbered attempts ([`pool`]), a sequence of blocking opens ([`each`]),
//! the members of a room ([`room`]), and a [`Fleet`] of non-blocking WebSockets issued at a
//! pace ([`issue`], [`until_open`], [`turn_for`]).
//!
//! Scenarios say which and with what counts; the loops, the bounds and the failure counting
//! are written once here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Tally, WsConn};
use super::fleet::Fleet;
use super::member::{self, Member};

/// Time allowed for a room member to connect, and for all of them to have joined.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the driving thread looks at a running pool.
const POOL_TICK: Duration = Duration::from_millis(5);

/// Numbered attempts `0..total` played by `threads` threads at once.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// Attempts in all.
    pub total: usize,
    /// Threads playing them.
    pub threads: usize,
    /// No attempt starts at or after this moment (`None`: every attempt is played).
    pub until: Option<Instant>,
    /// Outcomes are tallied per group, attempt `i` in group `i % groups`.
    pub groups: usize,
}

/// What a pool did.
#[derive(Debug, Default)]
pub struct Pooled {
    /// Attempts played (skipped ones not counted).
    pub done: usize,
    /// Outcomes by label, per group.
    pub tallies: Vec<Tally>,
    /// Attempts skipped, per group.
    pub skipped: Vec<u64>,
}

/// Plays the pool: `attempt(i)` returns attempt `i`'s outcome label, or `None` when it chose
/// to skip it; meanwhile the calling thread calls `tick(done)` every few milliseconds.
pub fn pool(
    spec: &Pool,
    attempt: impl Fn(usize) -> Option<String> + Sync,
    mut tick: impl FnMut(usize),
) -> Result<Pooled, String> {
    let groups = spec.groups.max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let worker = || {
        let mut tallies = vec![Tally::new(); groups];
        let mut skipped = vec![0u64; groups];
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= spec.total || spec.until.is_some_and(|u| Instant::now() >= u) {
                break;
            }
            match attempt(i) {
                Some(label) => {
                    client::count(&mut tallies[i % groups], label);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                None => skipped[i % groups] += 1,
            }
        }
        (tallies, skipped)
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..spec.threads).map(|_| scope.spawn(worker)).collect();
        while !workers.iter().all(|w| w.is_finished()) {
            tick(done.load(Ordering::Relaxed));
            std::thread::sleep(POOL_TICK);
        }
        let mut out = Pooled {
            done: 0,
            tallies: vec![Tally::new(); groups],
            skipped: vec![0; groups],
        };
        for w in workers {
            let (tallies, skipped) = w.join().map_err(|_| "a client thread panicked")?;
            for (g, tally) in tallies.into_iter().enumerate() {
                for (k, v) in tally {
                    *out.tallies[g].entry(k).or_default() += v;
                }
                out.skipped[g] += skipped[g];
            }
        }
        out.done = done.load(Ordering::Relaxed);
        Ok(out)
    })
}

/// Opens `n` clients one after another with `open(i)`; a failure is counted by its label
/// and the next one is tried.
pub fn each<T>(n: usize, mut open: impl FnMut(usize) -> Result<T, String>) -> (Vec<T>, Tally) {
    let mut opened = Vec::with_capacity(n);
    let mut failures = Tally::new();
    for i in 0..n {
        match open(i) {
            Ok(t) => opened.push(t),
            Err(reason) => client::count(&mut failures, reason),
        }
    }
    (opened, failures)
}

/// Opens one member of `room` per client id (member `k` from source `first_source + k`) and
/// waits until every one has joined; an error if one cannot connect or join. `who` names
/// them in that error.
pub fn room(
    cfg: &AbuseConfig,
    room: &str,
    ids: &[String],
    first_source: usize,
    who: &str,
) -> Result<Vec<Member>, String> {
    let mut members = Vec::with_capacity(ids.len());
    for (k, id) in ids.iter().enumerate() {
        let path = format!("/ws?room={room}&client_id={id}");
        let conn = WsConn::open(
            cfg.target,
            cfg.source(first_source + k),
            &path,
            JOIN_TIMEOUT,
        )?;
        members.push(Member::spawn(conn, room)?);
    }
    if !member::wait_joined(&members.iter().collect::<Vec<_>>(), JOIN_TIMEOUT) {
        return Err(format!(
            "the room's presence snapshot did not reach every {who}"
        ));
    }
    Ok(members)
}

/// A room of readers and one member that speaks in it (publishes, floods, bursts).
pub struct Speaking {
    /// `reader0` .. `reader{n-1}`.
    pub readers: Vec<Member>,
    /// The last to join, with the client id the scenario named.
    pub speaker: Member,
}

/// Joins `n` readers (`reader0` .. `reader{n-1}`), then the speaker `speaker_id`, to `room`,
/// each seeing the others' presence (see [`room`]).
pub fn speaking(
    cfg: &AbuseConfig,
    room_name: &str,
    n: usize,
    speaker_id: &str,
) -> Result<Speaking, String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("reader{i}")).collect();
    ids.push(speaker_id.to_string());
    let mut readers = room(cfg, room_name, &ids, 0, "member")?;
    let speaker = readers.pop().ok_or_else(|| format!("no {speaker_id}"))?;
    Ok(Speaking { readers, speaker })
}

/// How a fleet's connects are spread out.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as possible, polling once after each slice of this many connects.
    Slices(usize),
    /// A steady ramp of this many connects a second.
    Rate(f64),
}

/// Issues `n` connects on `fleet` to `path` (connection `i` from source `i`), at `pace`.
pub fn issue(
    fleet: &mut Fleet,
    cfg: &AbuseConfig,
    n: usize,
    path: &str,
    pace: Pace,
) -> Result<(), String> {
    match pace {
        Pace::Slices(slice) => {
            let slice = slice.max(1);
            for i in 0..n {
                fleet.open(cfg.target, cfg.source(i), path);
                if i % slice == slice - 1 {
                    fleet.turn(Duration::ZERO).map_err(|e| e.to_string())?;
                }
            }
        }
        Pace::Rate(rate) => {
            let start = Instant::now();
            let mut opened = 0;
            while opened < n {
                let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(n);
                while opened < due {
                    fleet.open(cfg.target, cfg.source(opened), path);
                    opened += 1;
                }
                fleet
                    .turn(Duration::from_millis(5))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Turns `fleet` until no connection is still opening, or until `deadline`.
pub fn until_open(fleet: &mut Fleet, deadline: Instant) -> Result<(), String> {
    fleet
        .run_until(deadline, |f| f.counts().0 == 0)
        .map_err(|e| e.to_string())
}

/// Turns `fleet` for `d`.
pub fn turn_for(fleet: &mut Fleet, d: Duration) -> Result<(), String> {
    let until = Instant::now() + d;
    fleet.run_until(until, |_| false).map_err(|e| e.to_string())
}
