//! `tickcast abuse` end to end at tiny counts against an in-process server: the scenarios
//! run, count what they should, and report every check. Only what holds whatever the
//! server's current hardening is checked here (the suite itself, `scripts/abuse.sh`, is
//! where pass and fail are measured).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tickcast::abuse::{self, AbuseConfig, Report, Scenario, Verdict};

fn config(addr: std::net::SocketAddr, scenario: Scenario, count: usize) -> AbuseConfig {
    let mut cfg = AbuseConfig::new(addr, scenario);
    cfg.count = Some(count);
    cfg.concurrency = 2;
    cfg
}

fn check(report: &Report, name: &str) -> Verdict {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {}", report.json_line()))
        .verdict
}

#[test]
fn churn_and_reset_churn_complete_every_cycle() {
    let server = start(test_config(2));
    let addr = server.local_addr();
    for scenario in [Scenario::Churn, Scenario::RstChurn] {
        let report = abuse::run(&config(addr, scenario, 300));
        let line = report.json_line();
        assert_eq!(check(&report, "all_cycles"), Verdict::Pass, "{line}");
        assert_eq!(check(&report, "no_failures"), Verdict::Pass, "{line}");
        assert_eq!(check(&report, "watcher"), Verdict::Pass, "{line}");
        // Without the server's pid, memory and descriptors cannot be judged: never a pass.
        assert_eq!(check(&report, "rss_flat"), Verdict::Undecided, "{line}");
        assert_eq!(report.verdict, Verdict::Undecided, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["raw"]["cycles"], 300);
    }
    server.shutdown();
}

#[test]
fn every_kind_of_bad_input_is_tried_and_counted() {
    let server = start(test_config(2));
    let addr = server.local_addr();
    let frames = abuse::run(&config(addr, Scenario::MalformedFrames, 20));
    let kinds = frames.raw["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 10, "{}", frames.json_line());
    for k in kinds {
        let tried = k["attempts"].as_u64().unwrap() + k["skipped"].as_u64().unwrap();
        assert_eq!(tried, 2, "{k}");
    }
    assert_ne!(frames.verdict, Verdict::Undecided, "{}", frames.json_line());
    let http = abuse::run(&config(addr, Scenario::MalformedHttp, 10));
    let kinds = http.raw["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 10, "{}", http.json_line());
    assert!(
        kinds.iter().all(|k| k["attempts"] == 1),
        "{}",
        http.json_line()
    );
    // The garbage request is refused by any server: 400, read back.
    let garbage = kinds.iter().find(|k| k["kind"] == "garbage").unwrap();
    assert_eq!(garbage["right"], 1, "{garbage}");
    server.shutdown();
}

#[test]
fn a_publish_flood_is_closed_and_the_room_stays_whole() {
    let server = start(test_config(2));
    let report = abuse::run(&config(server.local_addr(), Scenario::PublishFlood, 1));
    let line = report.json_line();
    assert_eq!(
        check(&report, "flooder_closed_1008"),
        Verdict::Pass,
        "{line}"
    );
    assert_eq!(check(&report, "readers_complete"), Verdict::Pass, "{line}");
    assert_eq!(check(&report, "readers_connected"), Verdict::Pass, "{line}");
    server.shutdown();
}

#[test]
fn shutdown_waits_for_the_ready_file_and_sees_every_close() {
    let server = start(test_config(2));
    let dir = std::env::temp_dir().join(format!("abuse-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let mut cfg = config(server.local_addr(), Scenario::Shutdown, 20);
    cfg.ready_file = Some(ready.clone());
    cfg.shutdown_wait = Duration::from_secs(15);
    let tool = std::thread::spawn(move || abuse::run(&cfg));
    let deadline = Instant::now() + WAIT_LIMIT;
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the tool never said ready");
        assert!(!tool.is_finished(), "the tool ended before ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.shutdown();
    let report = tool.join().unwrap();
    let line = report.json_line();
    assert_eq!(check(&report, "connected"), Verdict::Pass, "{line}");
    assert_eq!(check(&report, "all_got_1001"), Verdict::Pass, "{line}");
    assert_eq!(check(&report, "room_whole"), Verdict::Pass, "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reconnect_storm_brings_everyone_back() {
    let server = start(test_config(2));
    let report = abuse::run(&config(server.local_addr(), Scenario::ReconnectStorm, 100));
    let line = report.json_line();
    assert_eq!(check(&report, "first_connect"), Verdict::Pass, "{line}");
    assert_eq!(check(&report, "all_back"), Verdict::Pass, "{line}");
    server.shutdown();
}

#[test]
fn the_target_must_be_loopback() {
    let cfg = AbuseConfig::new("192.0.2.1:80".parse().unwrap(), Scenario::Churn);
    let report = abuse::run(&cfg);
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(report.measured.contains("loopback"), "{}", report.measured);
}

#[test]
fn pending_sockets_past_the_cap_are_closed_at_accept() {
    let mut cfg = test_config(1);
    cfg.max_pending_per_ip = 16;
    let server = start(cfg);
    let addr = server.local_addr();
    let report = abuse::run(&config(addr, Scenario::PendingSockets, 40));
    let line = report.json_line();
    // The scenario reads the default cap (128): 40 sockets stay within it there, but this
    // server caps at 16, so the counts must show the server's cap, not the tool's.
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["raw"]["open_after_settle"], 16, "{line}");
    assert_eq!(check(&report, "capped"), Verdict::Fail, "{line}");
    assert_eq!(check(&report, "refusals_counted"), Verdict::Pass, "{line}");
    assert_eq!(check(&report, "watcher"), Verdict::Pass, "{line}");
    server.shutdown();
}

fn quick(addr: std::net::SocketAddr, scenario: Scenario, count: usize, secs: u64) -> AbuseConfig {
    let mut cfg = config(addr, scenario, count);
    cfg.quick = true;
    cfg.duration = Some(Duration::from_secs(secs));
    cfg
}

#[test]
fn short_lived_rooms_leave_the_metrics_as_they_were() {
    let server = start(test_config(2));
    let report = abuse::run(&quick(server.local_addr(), Scenario::LabelChurn, 3, 2));
    let line = report.json_line();
    for name in [
        "rooms_made",
        "not_refused",
        "series_fixed",
        "size_fixed",
        "no_room_named",
        "watcher",
    ] {
        assert_eq!(check(&report, name), Verdict::Pass, "{name}: {line}");
    }
    server.shutdown();
}

#[test]
fn a_history_fill_stays_within_the_budget_and_resumes_get_reset() {
    let mut cfg = test_config(2);
    cfg.history_budget = Some(1 << 20);
    let server = start(cfg);
    let report = abuse::run(&quick(server.local_addr(), Scenario::HistoryFill, 4, 2));
    let line = report.json_line();
    for name in [
        "overfilled",
        "within_budget",
        "evicted",
        "resume_reset",
        "watcher",
    ] {
        assert_eq!(check(&report, name), Verdict::Pass, "{name}: {line}");
    }
    // RSS needs the server's pid: never a pass without it.
    assert_eq!(check(&report, "rss_bounded"), Verdict::Undecided, "{line}");
    server.shutdown();
}

#[test]
fn a_presence_churner_is_held_to_its_rate_and_the_members_keep_up() {
    let server = start(test_config(2));
    let report = abuse::run(&quick(server.local_addr(), Scenario::PresenceChurn, 40, 1));
    let line = report.json_line();
    for name in [
        "members_joined",
        "held_to_rate",
        "refused_rate_limited",
        "members_served",
        "rejoin_count_only",
        "watcher",
    ] {
        assert_eq!(check(&report, name), Verdict::Pass, "{name}: {line}");
    }
    server.shutdown();
}

#[test]
fn rooms_left_on_redis_expire_within_the_empty_room_ttl() {
    let redis = Redis::start(free_port());
    let mut cfg = test_config(2);
    cfg.redis = Some(tickcast::bus::BusConfig::new(&redis.url()));
    let server = start(cfg);
    let mut abuse_cfg = quick(server.local_addr(), Scenario::AbandonedRooms, 30, 1);
    abuse_cfg.redis = Some(redis.url().trim_start_matches("redis://").parse().unwrap());
    let report = abuse::run(&abuse_cfg);
    let line = report.json_line();
    for name in [
        "heavy_filled",
        "rooms_made",
        "members_gone",
        "empty_ttl",
        "stream_capped",
        "keys_bounded",
        "watcher",
    ] {
        assert_eq!(check(&report, name), Verdict::Pass, "{name}: {line}");
    }
    server.shutdown();
}

#[test]
fn the_sidecar_scenarios_name_what_they_miss() {
    let server = start(test_config(1));
    for (scenario, option) in [
        (Scenario::ForgedHeaders, "--via"),
        (Scenario::AbandonedRooms, "--redis"),
    ] {
        let report = abuse::run(&config(server.local_addr(), scenario, 1));
        assert_eq!(report.verdict, Verdict::Fail, "{}", report.json_line());
        assert!(report.measured.contains(option), "{}", report.measured);
    }
    server.shutdown();
}
