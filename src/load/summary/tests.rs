//! Unit tests of the run summary: the row a context fills, expected deliveries.

use super::*;

/// A value's CSV header and record, as (column, cell) pairs.
fn cells<T: Serialize>(value: &T) -> Vec<(String, String)> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(value).unwrap();
    let bytes = w.into_inner().unwrap();
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header = r.headers().unwrap().clone();
    let record = r.records().next().unwrap().unwrap();
    header
        .iter()
        .zip(record.iter())
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

#[test]
fn the_context_fills_exactly_its_own_columns() {
    // No `..Default`: a new field must be given a value here, and one that is not its
    // default, or the test cannot see it.
    let ctx = RowContext {
        mode: "m".into(),
        shards: Some(3),
        pin: true,
        linger_us: 4,
        payload_bytes: 5,
        providers: 6,
        offered_rate: 7.5,
        interval_us: 8,
        cpu_split: "c".into(),
    };
    let context = cells(&ctx);
    let defaults = cells(&RowContext::default());
    for ((name, value), (_, default)) in context.iter().zip(&defaults) {
        assert_ne!(
            value, default,
            "give `{name}` a value other than its default"
        );
    }
    // The rows of an empty run in that context and in the default one differ in the
    // context's columns, which hold its values, and nowhere else.
    let summary = Summary {
        connections: 0,
        threads: 1,
        publishers: 0,
        stats: Stats::default(),
        ramp_secs: 0.0,
        server: None,
        drops: None,
        server_handshake_p99_us: None,
        server_shards: None,
        load_cpu_pct: 0.0,
        load_thread_max_cpu_pct: 0.0,
        loadavg_1m: 0.0,
    };
    let row = |ctx: &RowContext| Row {
        unix_time: 0,
        ..summary.row(ctx)
    };
    let filled = cells(&row(&ctx));
    let plain = cells(&row(&RowContext::default()));
    for (name, value) in &context {
        assert!(
            filled.contains(&(name.clone(), value.clone())),
            "the context's `{name}` is not a column of the row, or not filled from it"
        );
    }
    for ((name, cell), (_, plain)) in filled.iter().zip(&plain) {
        if cell != plain {
            assert!(
                context.iter().any(|(n, _)| n == name),
                "column `{name}` depends on the context but is not one of its fields"
            );
        }
    }
    assert_eq!(filled.len(), crate::report::schema::COLUMNS.len());
}

#[test]
fn expected_deliveries_count_gaps_a_slow_producer_and_silent_clients() {
    // 10 clients, 100 msgs/s offered, 10 s window: 1000 per client, 999 after the
    // boundary allowance.
    let e = |received, gaps| expected_deliveries(received, gaps, 100.0, None, 10.0, 10);
    // Everyone got everything, or one message fewer at the window's edge.
    assert_eq!(e(10_000, 0), 10_000.0);
    assert_eq!(e(9_990, 0), 9_990.0);
    // Drops show as gaps.
    assert_eq!(e(9_000, 1_000), 10_000.0);
    // The server sequenced half the offered rate: twice as many were due.
    assert_eq!(e(5_000, 0), 9_990.0);
    // Half the clients received nothing: the production count catches it.
    assert_eq!(
        expected_deliveries(5_000, 0, 0.0, Some(9_990), 10.0, 10),
        9_990.0
    );
    // Nothing known: gaps only.
    assert_eq!(expected_deliveries(7, 3, 0.0, None, 2.0, 1), 10.0);
}

#[test]
fn a_perfect_run_of_bursty_feeds_reads_as_every_message_delivered() {
    // `tickcast serve` (4 feeds due together every 100 ms) and 200 clients over 3 s,
    // offered rate unknown: each client got all 120 messages the server sequenced, 119
    // of which were due.
    let due = Some(119 * 200);
    assert_eq!(expected_deliveries(24_000, 0, 0.0, due, 3.0, 200), 24_000.0);
    // The same with the offered rate given.
    assert_eq!(
        expected_deliveries(24_000, 0, 40.0, None, 3.0, 200),
        24_000.0
    );
    // Ten clients silent throughout: the others' 190 x 120 fall short of 200 x 119.
    assert_eq!(
        expected_deliveries(22_800, 0, 0.0, due, 3.0, 200),
        119.0 * 200.0
    );
}

#[test]
fn a_perfect_run_is_sustainable_and_its_rate_is_what_was_produced() {
    let mut stats = Stats::default();
    let ticks = stats.topics.id(b"ticks") as usize;
    let clients = 200u64;
    for seq in 1..=120u64 {
        for _ in 0..clients {
            stats.topics.counts[ticks].seen(seq, 1_000_000 + (seq - 1) / 4 * 100_000);
            stats.latency.record(1_000).unwrap();
        }
    }
    stats.window.messages = 120 * clients;
    stats.connected = clients;
    stats.window_secs = 3.0;
    stats.settle_production();
    let summary = Summary {
        connections: clients as usize,
        threads: 2,
        publishers: 0,
        stats,
        ramp_secs: 0.1,
        server: None,
        drops: None,
        server_handshake_p99_us: None,
        server_shards: None,
        load_cpu_pct: 1.0,
        load_thread_max_cpu_pct: 1.0,
        loadavg_1m: 0.0,
    };
    let row = summary.row(&RowContext::default());
    assert_eq!(row.delivery_ratio, 1.0);
    assert_eq!(row.produced_per_s, 40.0);
    assert!(row.sustainable, "{row:?}");
    assert!(
        summary
            .human(&RowContext::default())
            .contains("delivery 100.00 %")
    );
}

#[test]
fn shards_come_from_the_context_else_the_server_else_stay_unknown() {
    let mut summary = Summary {
        connections: 1,
        threads: 1,
        publishers: 0,
        stats: Stats::default(),
        ramp_secs: 0.0,
        server: None,
        drops: None,
        server_handshake_p99_us: None,
        server_shards: Some(4),
        load_cpu_pct: 0.0,
        load_thread_max_cpu_pct: 0.0,
        loadavg_1m: 0.0,
    };
    let given = RowContext {
        shards: Some(2),
        ..RowContext::default()
    };
    assert_eq!(summary.row(&given).shards, 2);
    assert_eq!(summary.row(&RowContext::default()).shards, 4);
    summary.server_shards = None;
    assert_eq!(summary.row(&RowContext::default()).shards, 0);
}
