//! Scenario `shutdown`: the server is stopped (SIGTERM, sent by whoever runs the scenario)
//! while subscribers read ticks and publishers publish into a room they all read.
//!
//! Every client must receive close 1001 (not EOF, not a reset), and no publish may be lost
//! silently. The tool connects everyone, lets the publishers run, pauses them for a moment
//! and scrapes `/metrics` (publishes the shards took from clients,
//! `tickcast_client_publishes_total`, against the room's sequenced count), resumes them,
//! and only then signals `ready` (a file) for the script to send SIGTERM. Afterwards the room
//! members' streams must be whole (no seq gap, the same last seq for all), hold everything
//! sequenced before the scrape, and for each publisher the publishes delivered must be its
//! first ones in order (a hole not answered by an error frame is a silent loss). Publishes
//! sent in the last moments that got neither a delivery nor an error cannot be told apart,
//! from outside, from publishes the server never read: they are reported, not judged. The
//! server's exit code and time are the script's to check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::{self, Tally};
use super::crowd::{self, Pace, turn_for as run_for};
use super::drive::{Cx, Judged, Play, Reads, Seen};
use super::fleet::Fleet;
use super::member::{self, Member, MemberReport};
use super::report::{Check, Raw, quantile, sorted};
use super::{AbuseConfig, probe};

/// Publishers (each also a member of the room).
const PUBLISHERS: usize = 5;
/// Publishes per second per publisher (under the default limit of 100/s).
const PUBLISH_RATE: f64 = 50.0;
/// The room.
const ROOM: &str = "abuse.shutdown";

/// Scenario `shutdown`: `subscribers` subscribers and [`PUBLISHERS`] publishers connected when
/// the server is stopped.
pub struct Shutdown {
    subscribers: usize,
}

impl Shutdown {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> Shutdown {
        Shutdown {
            subscribers: cfg.count_or(100, 1_000),
        }
    }
}

/// The subscribers' fleet, how many of them connected, and the publishers in the room.
pub struct Connected {
    fleet: Fleet,
    open: usize,
    failed: usize,
    members: Vec<Member>,
}

/// What was seen from the first publish to the server's end.
pub struct Ended {
    open: usize,
    failed: usize,
    endings: Tally,
    close_ms: Vec<f64>,
    client_pubs: Option<f64>,
    room_pubs: Option<f64>,
    post: Option<probe::Metrics>,
    /// Each publisher's report and the publishes it sent.
    reports: Vec<(MemberReport, u64)>,
}

impl Play for Shutdown {
    type Clients = Connected;
    type Outcome = Ended;

    fn expectation(&self) -> &'static str {
        "on SIGTERM every client reads close 1001; client_publishes_total equals the room's published count; members' streams whole; no publish lost silently; server exits 0 within the 5 s drain (checked by the script)"
    }

    /// The server is stopped during the run: it reads its counters itself, before SIGTERM.
    fn reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn connect(&self, cx: &Cx) -> Result<Connected, String> {
        let n = self.subscribers;
        let mut fleet = Fleet::new().map_err(|e| format!("poll: {e}"))?;
        let connect_deadline = Instant::now() + Duration::from_secs(30);
        crowd::issue(&mut fleet, cx.cfg, n, "/ws?topics=ticks", Pace::Slices(200))?;
        crowd::until_open(&mut fleet, connect_deadline)?;
        let (_, open, failed, _) = fleet.counts();
        // Every publisher joins the room before anyone publishes, so each sees it from seq 1.
        let ids: Vec<String> = (0..PUBLISHERS).map(|p| format!("pub{p}")).collect();
        let members = crowd::room(cx.cfg, ROOM, &ids, n, "publisher")?;
        Ok(Connected {
            fleet,
            open,
            failed,
            members,
        })
    }

    fn run(&self, cx: &Cx, c: Connected) -> Result<Ended, String> {
        let Connected {
            mut fleet,
            open,
            failed,
            members,
        } = c;
        let paused = Arc::new(AtomicBool::new(false));
        let mut publishers = Vec::with_capacity(PUBLISHERS);
        for m in members {
            let sent = Arc::new(AtomicU64::new(0));
            let handle = {
                let (writer, live, paused, sent) = (
                    m.writer.clone(),
                    m.live.clone(),
                    paused.clone(),
                    sent.clone(),
                );
                std::thread::spawn(move || publish_loop(&writer, &live, &paused, &sent))
            };
            publishers.push((m, sent, handle));
        }

        // Publish for a second, pause, scrape the settled counters, resume, then say ready.
        run_for(&mut fleet, Duration::from_secs(1))?;
        paused.store(true, Ordering::SeqCst);
        run_for(&mut fleet, Duration::from_millis(300))?;
        let pre = probe::scrape(cx.cfg.target)?;
        paused.store(false, Ordering::SeqCst);
        let client_pubs = pre.sum("tickcast_client_publishes_total", &[]);
        let room_pubs = pre.sum(
            "tickcast_messages_published_total",
            &[("topic", crate::metrics::ROOMS_LABEL)],
        );
        run_for(&mut fleet, Duration::from_millis(200))?;
        let ready_at = Instant::now();
        match &cx.cfg.ready_file {
            Some(path) => {
                std::fs::write(path, "ready\n").map_err(|e| format!("ready file: {e}"))?
            }
            None => eprintln!("tickcast abuse: ready: stop the server now (SIGTERM)"),
        }

        // Wait for the server to end every connection.
        let wait_until = ready_at + cx.cfg.shutdown_wait;
        let all_ended = |pubs: &[(Member, Arc<AtomicU64>, std::thread::JoinHandle<()>)]| {
            pubs.iter()
                .all(|(m, _, _)| m.live.ended.load(Ordering::SeqCst))
        };
        while Instant::now() < wait_until && !(fleet.counts().1 == 0 && all_ended(&publishers)) {
            fleet
                .turn(Duration::from_millis(50))
                .map_err(|e| e.to_string())?;
        }
        let endings = fleet.tally();
        let close_ms = sorted(
            fleet
                .ended_at()
                .iter()
                .map(|t| t.saturating_duration_since(ready_at).as_secs_f64() * 1e3)
                .collect(),
        );
        let post = probe::scrape(cx.cfg.target).ok();
        fleet.drop_all();
        let mut reports: Vec<(MemberReport, u64)> = Vec::new();
        for (m, sent, handle) in publishers {
            let r = m.finish();
            let _ = handle.join();
            reports.push((r, sent.load(Ordering::SeqCst)));
        }
        Ok(Ended {
            open,
            failed,
            endings,
            close_ms,
            client_pubs,
            room_pubs,
            post,
            reports,
        })
    }

    fn judge(&self, e: Ended, _: &Seen) -> Judged {
        let Ended {
            open,
            failed,
            mut endings,
            close_ms,
            client_pubs,
            room_pubs,
            post,
            reports,
        } = e;
        let mut pub_endings = Tally::new();
        for (r, _) in &reports {
            client::count(
                &mut pub_endings,
                r.ending.map_or("still_open".into(), |e| e.label()),
            );
            client::count(
                &mut endings,
                r.ending.map_or("still_open".into(), |e| e.label()),
            );
        }
        let n = self.subscribers;
        let total = n + PUBLISHERS;
        let got_1001 = endings.get("close_1001").copied().unwrap_or(0);

        // The room, as its members saw it.
        let last_seqs: Vec<u64> = reports.iter().map(|(r, _)| r.last_seq).collect();
        let whole = reports.iter().all(|(r, _)| r.complete());
        let same_last = last_seqs.windows(2).all(|w| w[0] == w[1]);
        let min_last = last_seqs.iter().copied().min().unwrap_or(0);
        let mut delivered = Vec::new();
        let mut holes = 0u64;
        let mut unanswered_tail = 0u64;
        let mut errors = 0u64;
        for (p, (r, sent)) in reports.iter().enumerate() {
            let name = format!("pub{p}");
            // The best view of this publisher's messages over all members.
            let seen = reports
                .iter()
                .filter_map(|(m, _)| m.from.get(&name))
                .max_by_key(|s| s.count)
                .cloned()
                .unwrap_or_default();
            let errs = r.error_count();
            errors += errs;
            holes += seen.n_holes.saturating_sub(errs);
            unanswered_tail += sent.saturating_sub(seen.max_n).saturating_sub(errs);
            delivered.push((seen.count, *sent, errs));
        }
        let sent_total: u64 = reports.iter().map(|(_, s)| s).sum();
        let delivered_total: u64 = delivered.iter().map(|d| d.0).sum();

        let checks = vec![
            Check::new(
                "connected",
                open == n && failed == 0,
                format!(
                    "{open} of {n} subscribers and {PUBLISHERS} publishers connected ({failed} failed)"
                ),
            ),
            Check::new(
                "all_got_1001",
                got_1001 == total as u64,
                format!(
                    "{got_1001} of {total} clients read close 1001: {}",
                    client::tally_text(&endings)
                ),
            ),
            Check::maybe(
                "counters_match",
                client_pubs.zip(room_pubs).map(|(c, r)| c == r),
                format!(
                    "before SIGTERM: tickcast_client_publishes_total {}, room published {}",
                    probe::shown(client_pubs),
                    probe::shown(room_pubs)
                ),
            ),
            Check::new(
                "room_whole",
                whole && same_last && room_pubs.is_none_or(|r| min_last >= r as u64),
                format!(
                    "members' last seq {last_seqs:?} (room had {} before SIGTERM), {}",
                    probe::shown(room_pubs),
                    if whole { "no gap" } else { "gaps" }
                ),
            ),
            Check::new(
                "no_silent_hole",
                holes == 0,
                format!(
                    "{holes} publishes missing between delivered ones without an error; {delivered_total} delivered of {sent_total} sent, {errors} error frames, {unanswered_tail} sent last with neither (unread or lost: not decidable from outside)"
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("subscribers", n);
        raw.put("publishers", PUBLISHERS);
        raw.put("endings", &endings);
        raw.put("publisher_endings", &pub_endings);
        raw.put("close_after_ready_ms_p50", quantile(&close_ms, 0.5));
        raw.put("close_after_ready_ms_max", close_ms.last());
        raw.metric("pre_client_publishes", client_pubs);
        raw.metric("pre_room_published", room_pubs);
        raw.put("member_last_seqs", &last_seqs);
        raw.put("delivered_sent_errors", &delivered);
        raw.put("unanswered_tail", unanswered_tail);
        raw.put(
            "post_scrape",
            if post.is_some() {
                "answered"
            } else {
                "refused"
            },
        );
        let summary = format!(
            "{got_1001}/{total} got close 1001 ({}); room: last seq {min_last}, {delivered_total} delivered of {sent_total} sent, {errors} errors, {holes} holes, {unanswered_tail} unanswered at the end; pre-SIGTERM client_publishes {} vs room {}",
            client::tally_text(&endings),
            probe::shown(client_pubs),
            probe::shown(room_pubs)
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// Publishes `{"n":k}` at [`PUBLISH_RATE`] until the server ends the stream (or a write
/// fails), except while `paused`; `sent` is the last `k` written.
fn publish_loop(
    writer: &member::Writer,
    live: &member::Live,
    paused: &AtomicBool,
    sent: &AtomicU64,
) {
    let every = Duration::from_secs_f64(1.0 / PUBLISH_RATE);
    let mut next = Instant::now();
    while !live.ended.load(Ordering::SeqCst) {
        if !paused.load(Ordering::SeqCst) {
            let k = sent.load(Ordering::SeqCst) + 1;
            let text = format!(r#"{{"op":"publish","topic":"{ROOM}","data":{{"n":{k}}}}}"#);
            if member::send(writer, &client::text_frame(&text)).is_err() {
                break;
            }
            sent.store(k, Ordering::SeqCst);
        }
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
