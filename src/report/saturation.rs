//! Saturation: the highest delivered rate a configuration sustains, and the verdict on one
//! measured point that tells `scripts/bench.sh` whether to keep raising the offered rate.
//!
//! A point is sustainable when at least 99 % of the expected deliveries arrived, the p99
//! end-to-end latency stayed within the bar (100 ms strict; 250 ms loose, because at 10,000
//! clients one fan-out alone takes tens of milliseconds), and every client connected. A
//! point where the load generator was at 90 % CPU or more is client-bound: kept but flagged,
//! and when such a point fails the bar the failure may be the client's, not the server's.

use std::collections::BTreeMap;

use super::schema::Row;

/// The strict latency bar: p99 <= 100 ms.
pub const STRICT_P99_US: u64 = 100_000;
/// The loose latency bar: p99 <= 250 ms.
pub const LOOSE_P99_US: u64 = 250_000;
/// Smallest delivery ratio that counts as sustained.
pub const MIN_DELIVERY: f64 = 0.99;
/// Load generator CPU % from which a point is client-bound.
pub const CLIENT_BOUND_PCT: f64 = 90.0;

/// Whether `row` meets the delivery and latency bar `p99_limit_us`.
pub fn is_sustainable(row: &Row, p99_limit_us: u64) -> bool {
    row.messages > 0
        && row.connected >= row.clients
        && row.delivery_ratio >= MIN_DELIVERY
        && row.lat_p99_us <= p99_limit_us
}

/// Whether the load generator, not the server, was the limit.
pub fn is_client_bound(load_cpu_pct: f64, load_thread_max_cpu_pct: f64) -> bool {
    load_cpu_pct >= CLIENT_BOUND_PCT || load_thread_max_cpu_pct >= CLIENT_BOUND_PCT
}

/// What one point says about the next step of a rate ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sustained: raise the rate.
    Ok,
    /// Not sustained, with the load generator below its limit: the server is saturated.
    Saturated,
    /// Not sustained while the load generator was at its limit: the client may be what
    /// failed, so the point bounds the server's ceiling from below only.
    ClientBound,
    /// Not every client could connect: the point says nothing about throughput.
    Failed,
}

impl Verdict {
    /// The first word printed by `tickcast report --verdict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Saturated => "saturated",
            Verdict::ClientBound => "client-bound",
            Verdict::Failed => "failed",
        }
    }
}

/// The verdict on one point, with the strict bar. A sustained point is `Ok` even when the
/// load generator was busy (it kept up; the row stays flagged); a failed one is
/// `ClientBound` when the client may be what failed.
pub fn verdict(row: &Row) -> Verdict {
    if row.connected < row.clients {
        Verdict::Failed
    } else if is_sustainable(row, STRICT_P99_US) {
        Verdict::Ok
    } else if row.client_bound {
        Verdict::ClientBound
    } else {
        Verdict::Saturated
    }
}

/// What identifies one configuration of a sweep; its rows differ only in offered rate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey {
    /// `tickcast` or `baseline`.
    pub mode: String,
    /// Shard threads.
    pub shards: u32,
    /// Connections.
    pub clients: u64,
    /// Mixer linger, µs.
    pub linger_us: u64,
    /// Requested payload size.
    pub payload_bytes: u64,
    /// Publishing connections.
    pub publishers: u64,
}

impl ConfigKey {
    /// The configuration `row` was measured in.
    pub fn of(row: &Row) -> Self {
        ConfigKey {
            mode: row.mode.clone(),
            shards: row.shards,
            clients: row.clients,
            linger_us: row.linger_us,
            payload_bytes: row.payload_bytes,
            publishers: row.publishers,
        }
    }

    /// A short label such as `tickcast 2 shards` or `baseline` (`tickcast shards=?` when the
    /// shard count is unknown, never `0 shards`).
    pub fn series(&self) -> String {
        if self.mode == "tickcast" {
            format!("tickcast {}", shards_label(self.shards))
        } else {
            self.mode.clone()
        }
    }
}

/// `1 shard (hub)`, `N shards`, or `shards=?` for 0 (unknown).
pub fn shards_label(shards: u32) -> String {
    match shards {
        0 => "shards=?".into(),
        1 => "1 shard (hub)".into(),
        n => format!("{n} shards"),
    }
}

/// One configuration's saturation point.
#[derive(Debug, Clone)]
pub struct Saturation {
    /// The configuration.
    pub key: ConfigKey,
    /// The sustainable row with the highest delivered rate, if any point was sustainable.
    pub best: Option<Row>,
    /// Points measured in this configuration.
    pub points: usize,
    /// Whether a measured point failed the bar (so `best` is a real ceiling, not a floor).
    pub saturated: bool,
}

impl Saturation {
    /// Whether the best point was client-bound (the server may sustain more).
    pub fn client_bound(&self) -> bool {
        self.best.as_ref().is_some_and(|r| r.client_bound)
    }

    /// Delivered msgs/s at saturation (0 when nothing was sustainable).
    pub fn rate(&self) -> f64 {
        self.best.as_ref().map_or(0.0, |r| r.delivered_per_s)
    }
}

/// Every configuration's saturation point under the bar `p99_limit_us`, in key order.
pub fn saturation_points(rows: &[Row], p99_limit_us: u64) -> Vec<Saturation> {
    let mut by_key: BTreeMap<ConfigKey, Saturation> = BTreeMap::new();
    for row in rows {
        let key = ConfigKey::of(row);
        let entry = by_key.entry(key.clone()).or_insert(Saturation {
            key,
            best: None,
            points: 0,
            saturated: false,
        });
        entry.points += 1;
        if !is_sustainable(row, p99_limit_us) {
            entry.saturated = true;
            continue;
        }
        if entry
            .best
            .as_ref()
            .is_none_or(|b| row.delivered_per_s > b.delivered_per_s)
        {
            entry.best = Some(row.clone());
        }
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, shards: u32, clients: u64, delivered: f64, ratio: f64, p99: u64) -> Row {
        Row {
            mode: mode.into(),
            shards,
            clients,
            connected: clients,
            messages: 1000,
            delivered_per_s: delivered,
            delivery_ratio: ratio,
            lat_p99_us: p99,
            ..Row::default()
        }
    }

    #[test]
    fn series_name_their_shards_and_never_zero_of_them() {
        let series =
            |mode: &str, shards| ConfigKey::of(&row(mode, shards, 1, 0.0, 1.0, 0)).series();
        assert_eq!(series("tickcast", 1), "tickcast 1 shard (hub)");
        assert_eq!(series("tickcast", 2), "tickcast 2 shards");
        assert_eq!(series("tickcast", 0), "tickcast shards=?");
        assert_eq!(series("baseline", 0), "baseline");
    }

    #[test]
    fn the_highest_sustainable_rate_wins_per_configuration() {
        let rows = vec![
            row("tickcast", 1, 1000, 100_000.0, 1.0, 2_000),
            row("tickcast", 1, 1000, 400_000.0, 0.995, 90_000),
            // Faster but too slow at p99: not sustainable.
            row("tickcast", 1, 1000, 800_000.0, 1.0, 150_000),
            // Lossy: not sustainable.
            row("tickcast", 1, 1000, 700_000.0, 0.9, 1_000),
            row("tickcast", 2, 1000, 600_000.0, 1.0, 1_000),
            row("baseline", 1, 1000, 900_000.0, 1.0, 1_000),
        ];
        let sat = saturation_points(&rows, STRICT_P99_US);
        let found: Vec<(String, u32, f64, bool)> = sat
            .iter()
            .map(|s| (s.key.mode.clone(), s.key.shards, s.rate(), s.saturated))
            .collect();
        assert_eq!(
            found,
            vec![
                ("baseline".into(), 1, 900_000.0, false),
                ("tickcast".into(), 1, 400_000.0, true),
                ("tickcast".into(), 2, 600_000.0, false),
            ]
        );
        // The loose bar admits the 150 ms point.
        let loose = saturation_points(&rows, LOOSE_P99_US);
        assert_eq!(loose[1].rate(), 800_000.0);
    }

    #[test]
    fn nothing_sustainable_gives_no_best_point() {
        let rows = vec![row("tickcast", 1, 10_000, 5e5, 0.5, 900_000)];
        let sat = saturation_points(&rows, STRICT_P99_US);
        assert!(sat[0].best.is_none());
        assert_eq!(sat[0].rate(), 0.0);
        assert!(sat[0].saturated);
    }

    #[test]
    fn missing_clients_or_messages_are_not_sustainable() {
        let mut r = row("tickcast", 1, 1000, 1e5, 1.0, 1_000);
        assert!(is_sustainable(&r, STRICT_P99_US));
        r.connected = 999;
        assert!(!is_sustainable(&r, STRICT_P99_US));
        assert_eq!(verdict(&r), Verdict::Failed);
        let mut r = row("tickcast", 1, 1000, 0.0, 1.0, 0);
        r.messages = 0;
        assert!(!is_sustainable(&r, STRICT_P99_US));
    }

    #[test]
    fn verdicts_drive_the_ladder() {
        let ok = row("tickcast", 1, 1000, 1e5, 1.0, 1_000);
        assert_eq!(verdict(&ok), Verdict::Ok);
        let slow = row("tickcast", 1, 1000, 1e5, 1.0, 200_000);
        assert_eq!(verdict(&slow), Verdict::Saturated);
        let mut busy = ok.clone();
        busy.client_bound = true;
        assert_eq!(verdict(&busy), Verdict::Ok, "it kept up");
        let mut busy_slow = slow.clone();
        busy_slow.client_bound = true;
        assert_eq!(verdict(&busy_slow), Verdict::ClientBound);
        assert!(is_client_bound(95.0, 10.0));
        assert!(is_client_bound(40.0, 91.0));
        assert!(!is_client_bound(89.9, 89.9));
    }
}
