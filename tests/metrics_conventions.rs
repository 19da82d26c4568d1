//! `/metrics` as operators expect it from any Prometheus target: the `process_*` figures
//! and `tickcast_build_info`, a `tickcast_connections` that leaves out the scrape's own
//! connection, and the metrics table of docs/operations.md naming exactly the families a
//! real server exports, no more, no fewer.

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

/// The name a family's samples carry: counters end in `_total`.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            match parts.next() {
                Some("counter") => format!("{name}_total"),
                _ => name.to_string(),
            }
        })
        .collect()
}

/// Every metric name the `## Metrics` section of docs/operations.md spells out.
fn documented_names() -> BTreeSet<String> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    let start = page.find("\n## Metrics\n").expect("a Metrics section") + 1;
    let section = &page[start..];
    let end = section[3..].find("\n#").map_or(section.len(), |i| i + 3);
    let section = &section[..end];
    section
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tickcast_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_documented_table_names_every_exported_family_and_only_those() {
    let server = start(quiet_config(2));
    // `topic` is the one label not known up front: its family appears with a first message.
    assert!(server.publisher().publish("news", "{}"));
    wait_metric(
        server.local_addr(),
        "tickcast_messages_published_total",
        &[],
        1.0,
    );
    let exported = sample_names(&scrape(server.local_addr()).text);
    assert!(exported.len() > 40, "{exported:?}");
    let documented = documented_names();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but missing from the metrics table of docs/operations.md: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "in the metrics table of docs/operations.md but not exported: {stale:?}"
    );
}

#[test]
fn process_figures_and_build_info_are_exported() {
    let server = start(quiet_config(1));
    let m = scrape(server.local_addr());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.sum("tickcast_build_info", &[("version", version)]), 1.0);
    let rss = m.sum("process_resident_memory_bytes", &[]);
    let vsz = m.sum("process_virtual_memory_bytes", &[]);
    assert!(rss >= 4096.0 && vsz >= rss, "rss {rss}, virtual {vsz}");
    // The test process holds the server's listener, poll and waker descriptors at least.
    let open = m.sum("process_open_fds", &[]);
    assert!(
        open >= 3.0 && m.sum("process_max_fds", &[]) >= open,
        "{open}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = m.sum("process_start_time_seconds", &[]);
    assert!(started > 1.5e9 && started <= now + 1.0, "{started} {now}");
    // A counter: never below what an earlier scrape read.
    let cpu = m.sum("process_cpu_seconds_total", &[]);
    assert!(cpu >= 0.0);
    wait_for("the CPU counter to hold or grow", || {
        scrape(server.local_addr()).sum("process_cpu_seconds_total", &[]) >= cpu
    });
}

#[test]
fn a_scrape_does_not_count_its_own_connection() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    // Nothing else is connected: every scrape reads zero, on whichever shard it lands.
    for _ in 0..4 {
        assert_eq!(metric(addr, "tickcast_connections", &[]), 0.0);
    }
    // A WebSocket client is counted, on its shard.
    let (ws, shard) = connect_stream(addr, "ticks");
    let label = shard.to_string();
    wait_metric(addr, "tickcast_connections", &[("shard", &label)], 1.0);
    for _ in 0..4 {
        assert_eq!(metric(addr, "tickcast_connections", &[]), 1.0);
    }
    close_client(ws);
    wait_for("the closed client to leave the gauge", || {
        metric(addr, "tickcast_connections", &[]) == 0.0
    });
}
