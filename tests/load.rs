//! The load generator against real servers on 127.0.0.1: tickcast in-process, the baseline
//! server, a path that answers 404 and a port where nothing listens. Counts only, never
//! speed.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tickcast::baseline::{Baseline, BaselineConfig};
use tickcast::config::TickerPace;
use tickcast::load::{self, LoadConfig, RowContext, Target};
use tickcast::report::saturation::MIN_DELIVERY;
use tickcast::report::schema;

fn load_config(addr: std::net::SocketAddr, path: &str, n: usize) -> LoadConfig {
    let target = Target::parse(&format!("ws://{addr}{path}")).unwrap();
    let mut cfg = LoadConfig::new(target, n);
    cfg.threads = 2;
    cfg.connect_rate = 5000.0;
    cfg.warmup = Duration::from_millis(200);
    cfg.duration = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

#[test]
fn load_measures_every_message_of_a_real_server() {
    let server = start(test_config(2));
    let mut cfg = load_config(server.local_addr(), "/ws?topics=ticks", 60);
    cfg.source_ips = load::parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
    cfg.server_pid = Some(std::process::id());
    cfg.scrape_metrics = true;
    cfg.learn_shards = true;
    let summary = load::run(cfg).unwrap();
    server.shutdown();

    let s = &summary.stats;
    assert_eq!(s.connected, 60, "failures: {:?}", s.failures);
    assert!(s.failures.is_empty());
    assert_eq!(
        s.handshake.len(),
        60,
        "one handshake latency per connection"
    );
    assert!(s.window.messages > 0);
    assert_eq!(
        s.latency.len(),
        s.window.messages,
        "one latency per message"
    );
    assert_eq!(s.window.gaps, 0, "light load: nothing dropped");
    let ticks = s.topics.iter().find(|(n, _)| *n == "ticks").unwrap().1;
    assert_eq!(ticks.messages, s.window.messages);
    // The welcome frames arrived before the window: none counted as data.
    assert_eq!(s.window.error_frames, 0);

    let ctx = RowContext {
        mode: "tickcast".into(),
        ..RowContext::default()
    };
    let row = summary.row(&ctx);
    assert_eq!((row.clients, row.connected, row.seq_gaps), (60, 60, 0));
    // No --shards given: the server's /metrics told.
    assert_eq!(row.shards, 2);
    // No offered rate given: the server's own stamps give the rate it produced at.
    assert!(row.produced_per_s > 0.0);
    assert!(row.expected >= row.messages as f64);
    assert!(row.delivery_ratio > 0.0 && row.delivery_ratio <= 1.0);
    assert!(row.server_cpu_pct.is_some() && row.rss_kib_per_conn.is_some());
    assert_eq!(row.server_drops_total, Some(0));
    assert!(
        row.server_drops.contains("outbox_full=0"),
        "{}",
        row.server_drops
    );

    let dir = std::env::temp_dir().join(format!("tickcast-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("raw.csv");
    let _ = std::fs::remove_file(&csv);
    schema::append_row(&csv, &row).unwrap();
    assert_eq!(schema::read_rows(&csv).unwrap(), vec![row]);
    assert!(
        summary.json(&ctx)["topics"][0]["messages"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn refused_connections_end_the_run_before_measuring_naming_the_reason() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = load_config(format!("127.0.0.1:{port}").parse().unwrap(), "/ws", 20);
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(100);
    cfg.learn_shards = true;
    let err = load::run(cfg).unwrap_err();
    assert!(err.contains("refused=20"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("before measuring"), "{err}");
}

#[test]
fn a_wrong_path_ends_the_run_before_measuring() {
    let server = start(test_config(1));
    let mut cfg = load_config(server.local_addr(), "/nope", 40);
    cfg.duration = Duration::from_millis(100);
    let err = load::run(cfg).unwrap_err();
    server.shutdown();
    assert!(err.contains("http_404="), "{err}");
    assert!(err.contains("check the path"), "{err}");
}

#[test]
fn a_perfect_run_of_feeds_due_together_reads_as_every_message_delivered() {
    // As `tickcast serve` runs by default: four feeds due together, so their ticks come in
    // fours (there every 100 ms; here every 130 ms, so that the window, which opens on the
    // load generator's 100 ms ramp checks, does not open at the same moment as a round of
    // ticks reaches the clients). The offered rate is not given: the server's seqs tell.
    let mut server_cfg = test_config(1);
    server_cfg.ticker.feeds = 4;
    server_cfg.ticker.pace = TickerPace::Interval(Duration::from_millis(130));
    let server = start(server_cfg);
    let mut cfg = load_config(server.local_addr(), "/ws?topics=ticks", 100);
    cfg.duration = Duration::from_secs(3);
    let summary = load::run(cfg).unwrap();
    server.shutdown();
    let row = summary.row(&RowContext::default());
    assert_eq!((row.connected, row.seq_gaps), (100, 0), "{row:?}");
    assert!(row.messages > 0);
    // Every client got every message sequenced while it measured; at most a window edge
    // falling between two clients' reads of one tick can tell them apart.
    assert!(
        row.delivery_ratio >= MIN_DELIVERY,
        "delivery {} of {} expected ({} produced/s)",
        row.messages,
        row.expected,
        row.produced_per_s
    );
}

/// Starts a baseline server at `rate` msgs/s on its own thread; set the flag to stop it.
fn start_baseline(
    rate: f64,
) -> (
    std::net::SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<tickcast::baseline::BaselineStats>,
) {
    let baseline = Baseline::bind(BaselineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate,
        ..BaselineConfig::default()
    })
    .unwrap();
    let addr = baseline.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || baseline.run(&stop2).unwrap());
    (addr, stop, thread)
}

#[test]
fn the_baseline_server_is_measured_by_the_same_generator() {
    let (addr, stop, thread) = start_baseline(200.0);
    let summary = load::run(load_config(addr, "/ws", 25)).unwrap();
    stop.store(true, Ordering::SeqCst);
    let stats = thread.join().unwrap();

    assert_eq!(summary.stats.connected, 25);
    assert_eq!(stats.upgraded, 25);
    assert!(summary.stats.window.messages > 0);
    assert_eq!(summary.stats.latency.len(), summary.stats.window.messages);
    assert_eq!(summary.stats.window.gaps, 0);
    assert_eq!(stats.drops, 0);
}

#[test]
fn the_baseline_stamps_each_message_with_the_time_it_was_due() {
    let (addr, stop, thread) = start_baseline(100.0);
    let mut ws = connect(addr, "/ws");
    let first = next_data(&mut ws);
    let mut last = first.clone();
    for _ in 0..20 {
        last = next_data(&mut ws);
    }
    // The baseline answers no close frame: just drop the socket.
    drop(ws);
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    let (seq0, ts0) = (
        first["seq"].as_u64().unwrap(),
        first["ts"].as_u64().unwrap(),
    );
    let (seq1, ts1) = (last["seq"].as_u64().unwrap(), last["ts"].as_u64().unwrap());
    assert_eq!(seq1 - seq0, 20, "no gaps");
    // 100 msgs/s: due times are exactly 10 ms apart (µs truncation aside), however late the
    // loop made them.
    let spacing = ts1 - ts0;
    assert!(
        (199_998..=200_002).contains(&spacing),
        "20 messages span {spacing} µs"
    );
}

#[test]
fn pings_are_answered_so_idle_clients_stay_open() {
    let mut cfg = test_config(1);
    cfg.ping_interval = Duration::from_millis(100);
    cfg.idle_timeout = Duration::from_millis(400);
    // No ticks: the clients only ever receive pings, and must answer them.
    cfg.ticker.feeds = 0;
    let server = start(cfg);
    let mut lcfg = load_config(server.local_addr(), "/ws?topics=ticks", 10);
    lcfg.duration = Duration::from_millis(1500);
    let summary = load::run(lcfg).unwrap();
    server.shutdown();
    assert_eq!(summary.stats.connected, 10);
    assert!(
        summary.stats.closes.is_empty(),
        "closed while answering pings: {:?}",
        summary.stats.closes
    );
}

#[test]
fn publishers_send_and_every_answer_is_counted() {
    let server = start(test_config(1));
    let mut cfg = load_config(server.local_addr(), "/ws?topics=ticks", 6);
    cfg.publishers = 2;
    cfg.publish_rate = 50.0;
    let summary = load::run(cfg).unwrap();
    server.shutdown();
    let w = &summary.stats.window;
    assert_eq!(summary.stats.connected, 6);
    assert!(w.published > 0);
    // Until the server accepts publishes it answers each with an error frame; once it does,
    // the publishes come back as messages carrying their send time.
    assert!(
        w.error_frames > 0 || !summary.stats.publish_latency.is_empty(),
        "publishes neither refused nor echoed: {w:?}"
    );
}
