//! What operators expect of the command line, on the real binary: switches' variables read
//! `1/0/true/false/yes/no`; addresses take `host:port` names and `:port`; contradictory or
//! pointless combinations are refused with a message naming both options; `token --ttl 0`
//! is refused; a count past its upper bound is refused naming the option (not a panic or
//! an abort); refusals show no Rust debug text; `--log-format json` writes one JSON
//! object per line; `--log-level` decides what is logged, and `RUST_LOG` still adds to it.

mod common;

use common::*;
use serde_json::Value;

/// `serve` on port 0 without ticks or pinning, plus `extra`.
fn serve_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--providers",
        "0",
        "--no-pin",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn switch_variables_read_as_booleans() {
    // Without --redis, the switch may be off in any spelling, and on in none.
    for off in ["0", "false", "FALSE", "no", "No"] {
        let server = ServeProcess::spawn(
            &serve_args(&[]),
            &[("TICKCAST_REDIS_PUBLISH_PROVIDERS", off)],
        );
        assert_eq!(http_get(server.addr, "/healthz").0, 200, "{off}");
    }
    for on in ["1", "true", "True", "yes", "YES"] {
        let stderr = refused(
            &serve_args(&[]),
            &[("TICKCAST_REDIS_PUBLISH_PROVIDERS", on)],
        );
        assert!(stderr.contains("needs --redis"), "{on}: {stderr}");
    }
    // Not with `serve_args`, whose --no-pin flag would win over the variable.
    let stderr = refused(
        &["serve", "--listen", "127.0.0.1:0", "--providers", "0"],
        &[("TICKCAST_NO_PIN", "perhaps")],
    );
    assert!(
        stderr.contains("perhaps") && stderr.contains("boolean"),
        "{stderr}"
    );
    assert_no_debug_text(&stderr);
}

#[test]
fn listen_takes_a_name_or_a_bare_port() {
    let server = ServeProcess::spawn(
        &[
            "serve",
            "--listen",
            "localhost:0",
            "--providers",
            "0",
            "--no-pin",
        ],
        &[],
    );
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    let server = ServeProcess::spawn(
        &["serve", "--providers", "0", "--no-pin"],
        &[("TICKCAST_LISTEN", ":0")],
    );
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    assert_eq!(http_get(local, "/healthz").0, 200);
    let stderr = refused(&["serve", "--listen", "nowhere"], &[]);
    assert!(
        stderr.contains("nowhere") && stderr.contains("host:port"),
        "{stderr}"
    );
}

#[test]
fn contradictions_are_refused_naming_both_options() {
    for (args, first, second) in [
        (
            &["--interval", "5ms", "--rate", "10"][..],
            "--rate",
            "--interval",
        ),
        (&["--room-ttl", "1h"][..], "--room-ttl", "--redis"),
        (&["--node-ttl", "5s"][..], "--node-ttl", "--redis"),
        (&["--redis-prefix", "x"][..], "--redis-prefix", "--redis"),
        (&["--tls-cert", "c.pem"][..], "--tls-cert", "--tls-key"),
        (
            &["--proxy-protocol"][..],
            "--proxy-protocol",
            "--trusted-proxy",
        ),
        (
            &[
                "--auth-secret",
                "0123456789abcdef",
                "--auth-secret-file",
                "s",
            ][..],
            "--auth-secret",
            "--auth-secret-file",
        ),
    ] {
        let stderr = refused(&serve_args(args), &[]);
        assert!(
            stderr.contains(first) && stderr.contains(second),
            "{args:?}: {stderr}"
        );
        assert_no_debug_text(&stderr);
    }
}

#[test]
fn counts_past_their_bound_are_refused_naming_the_option() {
    for (option, value) in [
        ("--providers", "100000"),
        ("--shard-queue", "1000000000000"),
        ("--max-topics", "100000000"),
        ("--presence-list-max", "100000000"),
    ] {
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-pin",
            option,
            value,
        ];
        let (status, stderr) = run_to_exit(&args, &[]);
        // A refusal, not a panic (101) or an abort (a signal, no code).
        assert_eq!(status.code(), Some(1), "{args:?}: {status:?} {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(option) && stderr.contains("at most"),
            "{args:?}: {stderr}"
        );
        assert_no_debug_text(&stderr);
    }
}

#[test]
fn a_token_that_expires_at_once_is_refused() {
    let args = [
        "token",
        "--sub",
        "alice",
        "--secret",
        "0123456789abcdef",
        "--ttl",
    ];
    let stderr = refused(&[&args[..], &["0s"]].concat(), &[]);
    assert!(stderr.contains("--ttl"), "{stderr}");
    let (status, _) = run_to_exit(&[&args[..], &["1m"]].concat(), &[]);
    assert!(status.success());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = ServeProcess::spawn(
        &serve_args(&["--log-format", "json", "--log-level", "debug"]),
        &[],
    );
    // A 404 is logged at debug by the shard that answered it.
    assert_eq!(http_get(server.addr, "/nope").0, 404);
    let mut lines = server.seen.clone();
    lines.extend(server.lines_until("about the 404", |l| l.contains("HTTP 404")));
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let obj = v.as_object().expect("an object");
        for key in ["ts", "level", "target", "msg"] {
            assert!(obj.get(key).is_some_and(Value::is_string), "{key}: {line}");
        }
        assert_eq!(obj.len(), 4, "{line}");
    }
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["level"], "debug");
    // ts is RFC 3339 in UTC.
    let ts = last["ts"].as_str().unwrap();
    assert!(
        ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
}

/// Whether a text log line is at debug level (`[ts DEBUG target] msg`).
fn is_debug(line: &str) -> bool {
    line.split_whitespace().nth(1) == Some("DEBUG")
}

#[test]
fn the_log_level_decides_and_rust_log_adds() {
    // At info, the 404's debug line is never written: SIGHUP's info line, logged after the
    // 404 was answered, comes with no debug line before it.
    let mut server = ServeProcess::spawn(&serve_args(&[]), &[]);
    assert_eq!(http_get(server.addr, "/nope").0, 404);
    server.signal(libc::SIGHUP);
    let lines = server.lines_until("about SIGHUP", |l| l.contains("SIGHUP received"));
    assert!(!lines.iter().any(|l| is_debug(l)), "{lines:#?}");
    assert!(
        !server.seen.iter().any(|l| is_debug(l)),
        "{:#?}",
        server.seen
    );
    // RUST_LOG still works on top of --log-level.
    for envs in [
        &[("RUST_LOG", "tickcast=debug")][..],
        &[("TICKCAST_LOG_LEVEL", "debug")][..],
    ] {
        let mut server = ServeProcess::spawn(&serve_args(&[]), envs);
        assert_eq!(http_get(server.addr, "/nope").0, 404);
        let lines = server.lines_until("about the 404", |l| l.contains("HTTP 404"));
        assert!(is_debug(lines.last().unwrap()), "{envs:?}: {lines:#?}");
    }
    let stderr = refused(&serve_args(&["--log-level", "loud"]), &[]);
    assert!(
        stderr.contains("loud") && stderr.contains("--log-level"),
        "{stderr}"
    );
}
