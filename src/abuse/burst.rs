//! Scenario `oversized_burst`: one member publishes a burst of 200 messages just under
//! `--max-message` (64 KiB) into a room ten other members read.
//!
//! Each message fans out to eleven outboxes (the publisher reads its own messages back), so
//! the burst would be about 13 MiB per reader in a moment. The server takes what the
//! publisher's byte burst allows and refuses the rest (`rate_limited`, then close 1008 for
//! insisting). Every message it sequenced (the room's `tickcast_messages_published_total`)
//! must reach all ten readers with no seq gap and no frame dropped (`tickcast_drops_total`
//! unchanged), and none of them may be cut off; the publisher gets every one back too, unless
//! it was closed for persistent abuse after refusals.

use std::time::Duration;

use super::client::{self, Ending};
use super::crowd::{self, Speaking};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::member::{self, Member, MemberReport};
use super::report::{Check, Raw};
use super::{AbuseConfig, probe};

/// Reading members besides the publisher.
const READERS: usize = 10;
/// Messages in the burst (the default `--publish-burst`).
const BURST: usize = 200;
/// Bytes of each publish frame's payload: just under the default `--max-message` (64 KiB).
const MESSAGE_BYTES: usize = 64 * 1024 - 256;
/// Time allowed for everything accepted to arrive.
const SETTLE: Duration = Duration::from_secs(20);
/// The room.
const ROOM: &str = "abuse.burst";
/// Frames the server dropped, for any reason.
const DROPS: Counter = Counter::new("server_drops", "tickcast_drops_total", &[]);

/// The publish of message `n`, `MESSAGE_BYTES` long.
fn big_publish(room: &str, n: usize) -> String {
    let head = format!(r#"{{"op":"publish","topic":"{room}","data":{{"n":{n},"pad":""#);
    let tail = r#""}}"#;
    let pad = MESSAGE_BYTES - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// Scenario `oversized_burst`: a burst of `messages` near-limit publishes.
pub struct OversizedBurst {
    messages: usize,
}

impl OversizedBurst {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> OversizedBurst {
        OversizedBurst {
            messages: cfg.count.unwrap_or(BURST),
        }
    }
}

/// What the burst's write, the room's count and the members saw.
pub struct Received {
    write: std::io::Result<()>,
    published: Option<f64>,
    target_seq: u64,
    pub_report: MemberReport,
    reports: Vec<MemberReport>,
}

impl Play for OversizedBurst {
    type Clients = Speaking;
    type Outcome = Received;

    fn expectation(&self) -> &'static str {
        "a 200 x ~64 KiB burst: what the server sequences reaches all 10 readers (no gap, none cut off, tickcast_drops_total unchanged); the publisher gets its own back or is refused and closed 1008 for insisting"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[DROPS])
    }

    fn connect(&self, cx: &Cx) -> Result<Speaking, String> {
        crowd::speaking(cx.cfg, ROOM, READERS, "publisher")
    }

    fn run(&self, cx: &Cx, room: Speaking) -> Result<Received, String> {
        let Speaking {
            readers,
            speaker: publisher,
        } = room;
        let messages = self.messages;
        let mut everyone: Vec<&Member> = readers.iter().collect();
        everyone.push(&publisher);
        // The whole burst, written as fast as the socket takes it.
        let mut burst = Vec::with_capacity(messages * (MESSAGE_BYTES + 16));
        for n in 1..=messages {
            burst.extend(client::text_frame(&big_publish(ROOM, n)));
        }
        if let Ok(s) = publisher.writer.lock() {
            let _ = s.set_write_timeout(Some(SETTLE));
        }
        let write = member::send(&publisher.writer, &burst);
        // Everything accepted is sequenced by the time the error frames and the messages came
        // back; wait for the server's count to stop moving, then for the readers.
        let published = probe::settled(
            cx.cfg.target,
            "tickcast_messages_published_total",
            &[("topic", crate::metrics::ROOMS_LABEL)],
            SETTLE,
        )?;
        let refused_so_far = publisher
            .live
            .errors
            .load(std::sync::atomic::Ordering::SeqCst);
        let target_seq = published.map_or(messages as u64 - refused_so_far, |p| p as u64);
        member::wait_for_seq(&everyone, target_seq, SETTLE);
        let pub_report = publisher.finish();
        let reports: Vec<MemberReport> = readers.into_iter().map(Member::finish).collect();
        Ok(Received {
            write,
            published,
            target_seq,
            pub_report,
            reports,
        })
    }

    fn judge(&self, r: Received, seen: &Seen) -> Judged {
        let messages = self.messages;
        let Received {
            write,
            published,
            target_seq,
            pub_report,
            reports,
        } = r;
        let refused = pub_report.error_count();
        // What the server sequenced; without the metric, what it did not refuse.
        let accepted = target_seq;
        let drops = seen.delta(&DROPS);
        let received: Vec<u64> = reports.iter().map(|r| r.messages).collect();
        let all = reports.iter().chain(std::iter::once(&pub_report));
        let whole = reports
            .iter()
            .filter(|r| r.complete() && r.messages == accepted)
            .count();
        let cut_off = reports.iter().filter(|r| r.ending.is_some()).count();
        let publisher_whole = pub_report.complete() && pub_report.messages == accepted;
        let publisher_abusive = refused > 0 && pub_report.ending == Some(Ending::Close(1008));
        let (min_r, max_r) = (
            received.iter().copied().min().unwrap_or(0),
            received.iter().copied().max().unwrap_or(0),
        );
        let checks = vec![
            Check::new(
                "burst_written",
                write.is_ok(),
                format!(
                    "{messages} publishes of {MESSAGE_BYTES} bytes: {}",
                    match &write {
                        Ok(()) => "written".to_string(),
                        Err(e) => format!("write failed: {e}"),
                    }
                ),
            ),
            Check::new(
                "all_received",
                whole == READERS,
                format!(
                    "{whole} of {READERS} readers got all {accepted} sequenced with no gap; readers received {min_r}-{max_r}"
                ),
            ),
            Check::new(
                "publisher",
                publisher_whole || publisher_abusive,
                format!(
                    "publisher received {} of {accepted}, {refused} refused, ended {}",
                    pub_report.messages,
                    pub_report.ending.map_or("open".into(), |e| e.label())
                ),
            ),
            Check::maybe(
                "no_drops",
                drops.map(|d| d == 0.0),
                format!("tickcast_drops_total +{}", probe::shown(drops)),
            ),
            Check::new(
                "none_cut_off",
                cut_off == 0,
                format!("{cut_off} of {READERS} readers cut off"),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("messages", messages);
        raw.put("message_bytes", MESSAGE_BYTES);
        raw.put("accepted", accepted);
        raw.put("refused", &pub_report.errors);
        raw.metric("room_published", published);
        raw.put("reader_received", &received);
        raw.put(
            "reader_gaps",
            reports.iter().map(|r| r.gaps).collect::<Vec<_>>(),
        );
        raw.put("publisher_received", pub_report.messages);
        raw.put(
            "endings",
            all.filter_map(|r| r.ending.map(|e| e.label()))
                .collect::<Vec<_>>(),
        );
        let summary = format!(
            "{messages} x {} KiB: {accepted} sequenced, {refused} refused (publisher ended {}); readers received {min_r}-{max_r}, {whole}/{READERS} complete; drops +{}; {cut_off} cut off",
            MESSAGE_BYTES / 1024,
            pub_report.ending.map_or("open".into(), |e| e.label()),
            probe::shown(drops)
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_are_just_under_the_limit_and_valid_json() {
        let p = big_publish("abuse.burst", 7);
        assert_eq!(p.len(), MESSAGE_BYTES);
        assert!(p.len() < 64 * 1024);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["data"]["n"], 7);
    }
}
