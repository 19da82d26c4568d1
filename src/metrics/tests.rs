//! Tests of the exposition: merged latency histograms, and per-interval against cumulative
//! values.

use super::*;

#[test]
fn render_includes_merged_latency_histogram() {
    let m = Metrics::new(2);
    let mut h = new_latency_histogram();
    for us in [100, 200, 5000] {
        h.record(us).unwrap();
    }
    m.latency.publish(0, &h);
    m.latency.publish(1, &h);
    m.handshake_latency.publish(1, &h);
    m.count_close(1001);
    m.drops
        .get_or_create(&DropLabel {
            shard: 1,
            reason: "outbox_full",
        })
        .inc_by(3);
    let text = m.render();
    assert!(
        text.contains("tickcast_broadcast_latency_seconds_count 6"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_broadcast_latency_seconds_bucket{le=\"0.00025\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_closes_total{code=\"1001\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_drops_total{shard=\"1\",reason=\"outbox_full\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_broadcast_latency_p99_seconds"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_handshake_latency_seconds_count 3"),
        "{text}"
    );
    assert!(
        text.contains("tickcast_handshake_latency_p99_seconds 0.005"),
        "{text}"
    );
}

#[test]
fn last_interval_replaces_total_accumulates() {
    let m = Metrics::new(1);
    let mut h = new_latency_histogram();
    h.record(10).unwrap();
    m.latency.publish(0, &h);
    m.latency.publish(0, &h);
    assert_eq!(m.latency.merged(true).len(), 2);
    assert_eq!(m.latency.merged(false).len(), 1);
}

#[test]
fn render_has_the_build_info_and_the_process_figures_once() {
    let text = Metrics::new(1).render();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("tickcast_build_info{{version=\"{version}\"}} 1\n")),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
        }
    }
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"));
}
