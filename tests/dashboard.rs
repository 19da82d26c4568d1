//! The telemetry topic and the dashboard page, end to end: real servers on 127.0.0.1, real
//! tungstenite clients, and a real headless Chromium running the page against a server that
//! is stopped and started again on the same port, and against one that wants a token.

mod browser;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tickcast::auth;
use tickcast::config::{Secret, ServerConfig, TickerPace};
use tungstenite::Message;

/// A test config with fast telemetry and a short drain (test clients do not answer the
/// server's close frame while they are not reading).
fn telemetry_config(shards: usize) -> ServerConfig {
    ServerConfig {
        telemetry_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_millis(500),
        ..test_config(shards)
    }
}

/// Reads until a `telemetry` message whose rates are filled in (the first one after a quiet
/// period has none) and returns its `data`.
fn next_full_telemetry(ws: &mut Client) -> Value {
    for _ in 0..50 {
        let m = next_data(ws);
        if m["topic"] == "telemetry" && !m["data"]["published_per_s"].is_null() {
            return m["data"].clone();
        }
    }
    panic!("no telemetry with rates in 50 messages");
}

#[test]
fn a_telemetry_subscriber_gets_plausible_figures() {
    let server = start(telemetry_config(2));
    let addr = server.local_addr();
    let _other = connect(addr, "/ws?topics=ticks");
    let mut ws = connect(addr, "/ws?topics=telemetry");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    let shard_queue = telemetry_config(2).shard_queue as u64;
    let (mut delivered, mut bytes) = (0.0, 0.0);
    for _ in 0..3 {
        let t = next_full_telemetry(&mut ws);
        println!("{t}");
        let shards = t["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2);
        let per_shard: i64 = shards
            .iter()
            .map(|s| s["connections"].as_i64().unwrap())
            .sum();
        assert_eq!(t["connections"].as_i64().unwrap(), per_shard);
        assert!(per_shard >= 2, "both clients are counted: {t}");
        assert_eq!(t["telemetry_subscribers"], 1);
        assert!(
            shards
                .iter()
                .all(|s| s["queue_depth"].as_u64().is_some_and(|d| d <= shard_queue)),
            "a queue holds at most {shard_queue}: {t}"
        );
        assert!(
            t["published_per_s"].as_f64().unwrap() > 0.0,
            "ticks flow: {t}"
        );
        // Rates are differences of counters, never below zero by construction; what can be
        // wrong is that they do not move. Summed over the reports, since one interval may
        // end before the shard that delivers its ticks has counted them.
        delivered += t["delivered_per_s"].as_f64().unwrap();
        bytes += t["bytes_per_s"].as_f64().unwrap();
        // A few hundred small frames: nothing is dropped.
        for reason in ["shard_queue_full", "outbox_full"] {
            assert_eq!(t["drops_per_s"][reason], 0.0, "{t}");
            assert_eq!(t["drops_total"][reason], 0, "{t}");
        }
        assert_eq!(t["interval_ms"], 100);
        assert!(t["cores"].as_u64().unwrap() >= 1);
        if cfg!(target_os = "linux") {
            // A rate of CPU time, never below zero by construction: it must be there.
            assert!(t["cpu_percent"].as_f64().is_some(), "{t}");
            assert!(t["rss_bytes"].as_u64().unwrap() > 1024 * 1024);
            // Two shards, mixer, acceptor, ticker, telemetry, and the test's own threads.
            assert!(t["threads"].as_u64().unwrap() >= 6);
            let avail = t["mem_available_bytes"].as_u64().unwrap();
            assert!(avail > 0 && avail <= t["mem_total_bytes"].as_u64().unwrap());
        }
    }
    assert!(
        delivered > 0.0 && bytes > 0.0,
        "ticks and reports were delivered: {delivered} frames/s, {bytes} bytes/s in sum"
    );
    // The shards hand their latency over about once a second: read on until a report has
    // it (the first ones usually do not).
    let t = (0..100)
        .map(|_| next_full_telemetry(&mut ws))
        .find(|t| !t["latency_p50_us"].is_null())
        .expect("no report with latency in 10 s");
    let (p50, p99) = (
        t["latency_p50_us"].as_u64().unwrap(),
        t["latency_p99_us"].as_u64().unwrap(),
    );
    assert!(p50 <= p99, "{t}");
    assert!(t["latency_samples"].as_u64().unwrap() > 0, "{t}");
    // The stream is sequenced like any other topic: the first four full reports followed
    // at least one without rates.
    let m = next_data(&mut ws);
    assert_eq!(m["topic"], "telemetry");
    assert!(m["seq"].as_u64().unwrap() >= 5, "{m}");
    server.shutdown();
}

#[test]
fn telemetry_is_published_only_while_someone_subscribes() {
    let server = start(telemetry_config(2));
    let addr = server.local_addr();
    let published = || {
        metric(
            addr,
            "tickcast_messages_published_total",
            &[("topic", "telemetry")],
        )
    };
    let subscribers = || metric(addr, "tickcast_telemetry_subscribers", &[]);

    // Only ticks: 50 ticks at 10 ms take at least five telemetry intervals.
    let mut ws = connect(addr, "/ws?topics=ticks");
    for _ in 0..50 {
        assert_eq!(next_data(&mut ws)["topic"], "ticks");
    }
    assert_eq!(subscribers(), 0.0);
    assert_eq!(published(), 0.0, "nothing published unheard");

    // Subscribing starts the stream; unsubscribing stops counting this client.
    ws.send(Message::text(
        r#"{"op":"subscribe","topics":["telemetry"]}"#,
    ))
    .unwrap();
    wait_for("one telemetry subscriber", || subscribers() == 1.0);
    loop {
        if next_data(&mut ws)["topic"] == "telemetry" {
            break;
        }
    }
    ws.send(Message::text(
        r#"{"op":"unsubscribe","topics":["telemetry"]}"#,
    ))
    .unwrap();
    wait_for("no telemetry subscriber", || subscribers() == 0.0);

    // The wildcard (the default without `topics`) receives telemetry too.
    let mut all = connect(addr, "/ws");
    wait_for("one telemetry subscriber", || subscribers() == 1.0);
    loop {
        if next_data(&mut all)["topic"] == "telemetry" {
            break;
        }
    }
    all.close(None).unwrap();
    let _ = read_until_close(&mut all, Duration::from_secs(5));
    wait_for("no telemetry subscriber", || subscribers() == 0.0);
    server.shutdown();
}

#[test]
fn telemetry_interval_zero_disables_the_provider() {
    let cfg = ServerConfig {
        telemetry_interval: Duration::ZERO,
        ..telemetry_config(1)
    };
    let server = start(cfg);
    let mut ws = connect(server.local_addr(), "/ws");
    for _ in 0..30 {
        assert_eq!(next_data(&mut ws)["topic"], "ticks");
    }
    server.shutdown();
}

#[test]
fn the_page_is_served_at_the_root_and_unknown_query_params_are_ignored() {
    let server = start(telemetry_config(1));
    let addr = server.local_addr();
    let resp = raw_http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(resp.contains("<canvas id=\"chart-msgs\""));
    assert!(resp.ends_with("</html>\n"), "the whole page arrives");
    // The page's reconnect URL carries `since`; a server without resume must ignore it.
    let mut ws = connect(addr, "/ws?topics=ticks&since=ticks:5&later=1");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    assert_eq!(next_data(&mut ws)["topic"], "ticks");
    server.shutdown();
}

/// WebSocket clients on their own threads that read `ticks` until stopped or closed, so the
/// dashboard shows several connections over the shards.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    fn start(addr: SocketAddr, n: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let mut ws = connect(addr, "/ws?topics=ticks");
                ws.get_ref()
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // Bounded: ends when told, when the server closes, or after 15 minutes.
                    let deadline = Instant::now() + Duration::from_secs(900);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match ws.read() {
                            Ok(Message::Close(_)) => break,
                            Ok(_) => {}
                            Err(tungstenite::Error::Io(e))
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Readers { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// The dashboard's config: the default ticker (4 feeds x 10 ticks/s = 40 ticks/s), 2 shards.
fn dashboard_config(listen: SocketAddr) -> ServerConfig {
    let mut cfg = ServerConfig {
        listen,
        drain_timeout: Duration::from_secs(2),
        ..test_config(2)
    };
    cfg.ticker.feeds = 4;
    cfg.ticker.pace = TickerPace::Interval(Duration::from_millis(100));
    cfg
}

/// `TICKCAST_DASHBOARD_HOLD` (e.g. `90s`, at most 10 min): keep the page running that long
/// before the final screenshot, so its charts have history (used for `docs/dashboard.png`).
fn hold() -> Duration {
    std::env::var("TICKCAST_DASHBOARD_HOLD")
        .ok()
        .and_then(|s| humantime::parse_duration(&s).ok())
        .unwrap_or_default()
        .min(Duration::from_secs(600))
}

const ROWS: &str = "document.querySelectorAll('#ticker tbody tr').length";
const STATE: &str = "document.getElementById('status').dataset.state";
const TICKS: &str = "Number(document.getElementById('ticker').dataset.ticks)";
const MSGS_RATE: &str = "Number(document.getElementById('msgs-rate').dataset.value || 0)";

#[test]
fn the_dashboard_runs_in_chromium_and_survives_a_server_restart() {
    // Fails (never skips) without Chromium: scripts/test.sh installs it.
    let chromium = require_program(&CHROMIUM);
    let wait = Duration::from_secs(30);
    let server = start(dashboard_config("127.0.0.1:0".parse().unwrap()));
    let addr = server.local_addr();
    let readers = Readers::start(addr, 6);
    let page = browser::Page::open(&chromium, &format!("http://{addr}/"));

    // The ticker fills (4 feeds x 4 symbols) and its prices move; telemetry shows traffic.
    page.wait_for("connected", &format!("{STATE} === 'connected'"), wait);
    page.wait_for("16 ticker rows", &format!("{ROWS} === 16"), wait);
    let prices = "Array.from(document.querySelectorAll('#ticker tbody tr'))\
                  .map(r => r.dataset.price).join(',')";
    let before = page.eval(prices);
    page.wait_for("a price change", &format!("{prices} !== {before}"), wait);
    page.wait_for("a price flash", "document.getAnimations().length > 0", wait);
    page.wait_for("msgs/s above zero", &format!("{MSGS_RATE} > 0"), wait);
    page.wait_for(
        "7 connections in telemetry",
        "Number(document.getElementById('connections').dataset.value) >= 7",
        wait,
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#shards tbody tr').length"),
        2
    );
    let symbols = page.eval(
        "Array.from(document.querySelectorAll('#ticker tbody tr')).map(r => r.dataset.symbol)\
         .join(',')",
    );
    let symbols: Vec<&str> = symbols.as_str().unwrap().split(',').collect();
    assert!(symbols.is_sorted(), "rows in symbol order: {symbols:?}");
    // Chromium offers permessage-deflate; the page reads the compressed telemetry (its
    // connection count above came from it) as well as the plain ticks.
    assert_eq!(
        page.eval("document.getElementById('status').dataset.extensions"),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert!(metric(addr, "tickcast_deflate_negotiated_total", &[]) >= 1.0);
    assert!(
        metric(addr, "tickcast_deflate_compressed_total", &[]) >= 1.0,
        "telemetry went out compressed"
    );
    let out = browser::output_dir();
    page.screenshot(&out.join("dashboard-before-restart.png"));

    // Stop the server: the page says so and retries with backoff.
    readers.stop();
    server.shutdown();
    page.wait_for("reconnecting", &format!("{STATE} === 'reconnecting'"), wait);
    let ticks_at_stop = page.eval(TICKS).as_f64().unwrap();
    page.screenshot(&out.join("dashboard-reconnecting.png"));

    // A new server on the same port: the page reconnects by itself and data flows again.
    let server = start(dashboard_config(addr));
    let readers = Readers::start(addr, 6);
    page.wait_for("connected again", &format!("{STATE} === 'connected'"), wait);
    page.wait_for(
        "ticks after the restart",
        &format!("{TICKS} > {ticks_at_stop} + 40"),
        wait,
    );
    let reconnects = page.eval("Number(document.getElementById('status').dataset.reconnects)");
    assert!(reconnects.as_f64().unwrap() >= 1.0);
    page.wait_for("msgs/s above zero again", &format!("{MSGS_RATE} > 0"), wait);

    std::thread::sleep(hold());
    page.screenshot(&out.join("dashboard.png"));
    if let Some(path) = std::env::var_os("TICKCAST_DASHBOARD_SCREENSHOT") {
        page.screenshot(&PathBuf::from(path));
    }
    drop(page);
    readers.stop();
    server.shutdown();
}

const SECRET: &[u8] = b"a-dashboard-secret-of-some-length";
const LOGIN_SHOWN: &str = "!document.getElementById('login').hidden";

fn dashboard_token(sub: &str) -> String {
    let subscribe = vec!["telemetry".to_string(), "ticks".to_string()];
    auth::issue(
        SECRET,
        &auth::claims_for(sub, Duration::from_secs(3600), subscribe, vec![]),
    )
    .unwrap()
}

#[test]
fn with_an_auth_secret_the_dashboard_asks_for_a_token_and_connects_with_one() {
    let chromium = require_program(&CHROMIUM);
    let wait = Duration::from_secs(30);
    let mut cfg = dashboard_config("127.0.0.1:0".parse().unwrap());
    cfg.auth_secret = Some(Secret(SECRET.to_vec()));
    let server = start(cfg);
    let addr = server.local_addr();
    let out = browser::output_dir();

    // No token: the page says one is needed, and offers the login field, instead of
    // retrying in silence against 401s.
    let page = browser::Page::open(&chromium, &format!("http://{addr}/"));
    page.wait_for("needs-token", &format!("{STATE} === 'needs-token'"), wait);
    assert_eq!(page.eval(LOGIN_SHOWN), true);
    let message = page.eval("document.getElementById('auth-message').textContent");
    assert!(
        message.as_str().unwrap().contains("requires a token"),
        "{message}"
    );
    assert_eq!(page.eval(TICKS), 0);
    page.screenshot(&out.join("dashboard-needs-token.png"));
    // A token typed into the field: connected, data flows, the field goes away.
    let js = format!(
        "document.getElementById('token-input').value = '{}'; \
         document.getElementById('login').requestSubmit(); true",
        dashboard_token("typed")
    );
    assert_eq!(page.eval(&js), true);
    page.wait_for("connected", &format!("{STATE} === 'connected'"), wait);
    page.wait_for("16 ticker rows", &format!("{ROWS} === 16"), wait);
    page.wait_for("msgs/s above zero", &format!("{MSGS_RATE} > 0"), wait);
    assert_eq!(page.eval(LOGIN_SHOWN), false);
    drop(page);

    // A token in the fragment: connected at once.
    let url = format!("http://{addr}/#token={}", dashboard_token("fragment"));
    let page = browser::Page::open(&chromium, &url);
    page.wait_for("connected", &format!("{STATE} === 'connected'"), wait);
    page.wait_for("16 ticker rows", &format!("{ROWS} === 16"), wait);
    assert_eq!(page.eval(LOGIN_SHOWN), false);
    drop(page);

    // A token the server refuses: said so, with the field to give another.
    let page = browser::Page::open(&chromium, &format!("http://{addr}/#token=not-a-token"));
    page.wait_for("refused", &format!("{STATE} === 'refused'"), wait);
    assert_eq!(page.eval(LOGIN_SHOWN), true);
    let message = page.eval("document.getElementById('auth-message').textContent");
    assert!(message.as_str().unwrap().contains("refused"), "{message}");
    assert!(metric(addr, "tickcast_handshake_failures_total", &[]) >= 1.0);
    drop(page);
    server.shutdown();
}
