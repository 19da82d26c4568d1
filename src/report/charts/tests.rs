//! Tests of the report's charts: every chart is written, even from sparse rows, and labels
//! stay short.

use super::*;

#[test]
fn every_chart_is_written_even_from_sparse_rows() {
    let dir = std::env::temp_dir().join(format!("tickcast-charts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows = Vec::new();
    for (mode, shards) in [("tickcast", 1), ("tickcast", 2), ("baseline", 1)] {
        for (i, rate) in [100.0, 1000.0].into_iter().enumerate() {
            rows.push(Row {
                mode: mode.into(),
                shards,
                clients: 1000,
                connected: 1000,
                offered_rate: rate,
                messages: 100,
                delivered_per_s: rate * 1000.0 * (1.0 - i as f64 * 0.1),
                delivery_ratio: 1.0 - i as f64 * 0.1,
                lat_p99_us: 1000 * (i as u64 + 1),
                server_cpu_ns_per_msg: Some(300.0),
                rss_kib_per_conn: Some(0.4),
                ..Row::default()
            });
        }
    }
    let files = draw_all(&rows, &dir).unwrap();
    assert_eq!(files.len(), 6);
    for f in files {
        let svg = std::fs::read_to_string(&f).unwrap();
        assert!(svg.starts_with("<svg"), "{}", f.display());
        assert!(svg.contains("tickcast 1 shard (hub)"), "{}", f.display());
    }
    // The latency chart draws both bars.
    let p99 = std::fs::read_to_string(dir.join("p99_vs_offered.svg")).unwrap();
    assert!(p99.contains("100 ms bar") && p99.contains("250 ms bar"));
    // No rows at all still gives (empty) charts rather than an error.
    assert_eq!(draw_all(&[], &dir).unwrap().len(), 6);
}

#[test]
fn labels_are_short() {
    assert_eq!(short(1_500_000.0), "1.5M");
    assert_eq!(short(200_000.0), "200k");
    assert_eq!(short(0.25), "0.25");
}
