//! `tickcast load` over `wss://`, without the server's own TLS: nginx terminates TLS in front
//! of a plain tickcast server (`deploy/nginx.conf`, as in tests/proxies.rs), with a
//! certificate for 127.0.0.1 signed by a CA made here.
//! The load binary must deliver every message through it, and refuse (every connection,
//! counted by reason) a server whose certificate the given CA did not sign.
//!
//! nginx is required: `scripts/test.sh` installs it (Debian `nginx-light`); without it this
//! test fails rather than skips.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// Runs `tickcast load URL ARGS... --json --quiet` and returns its output.
fn load(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("load")
        .arg(url)
        .args(args)
        .args(["--json", "--quiet"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run tickcast load")
}

/// The JSON summary `tickcast load --json` printed.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn wss_through_a_tls_proxy_delivers_everything_and_an_unknown_ca_fails_every_connection() {
    let dir = temp_dir("load-tls");
    let pki = Pki::new(&dir, "front");
    let server = start(test_config(1));
    let proxy = start_nginx(server.local_addr().port(), &pki, &dir);
    let url = format!("wss://127.0.0.1:{}/ws?topics=ticks", proxy.port);
    let ca = pki.ca_file.to_str().unwrap();

    // 50 clients for 3 s of ticks every 10 ms, all through nginx's TLS.
    let out = load(
        &url,
        &[
            "-n",
            "50",
            "--threads",
            "2",
            "--connect-rate",
            "500",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--tls-ca",
            ca,
            "--scrape-metrics",
        ],
    );
    let s = summary(&out);
    let context = || format!("{s:#}\nnginx:\n{}", proxy.log());
    assert!(out.status.success(), "tickcast load failed: {}", context());
    assert_eq!(s["connected"], 50, "{}", context());
    assert_eq!(s["connect_failures"], 0, "{}", context());
    assert!(s["messages"].as_u64().unwrap() > 0, "{}", context());
    assert_eq!(s["seq_gaps"], 0, "{}", context());
    assert!(
        s["delivery_ratio"].as_f64().unwrap() >= 0.99,
        "{}",
        context()
    );
    let ticks = s["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "ticks")
        .unwrap_or_else(|| panic!("no ticks: {}", context()));
    assert_eq!(ticks["messages"], s["messages"]);
    assert_eq!(
        (ticks["gaps"].as_u64(), ticks["reordered"].as_u64()),
        (Some(0), Some(0))
    );
    // Every connection's handshake (TCP, TLS, upgrade) was timed, none closed under it.
    assert!(s["handshake_p50_us"].as_u64().unwrap() > 0);
    assert_eq!(s["closes"], "", "{}", context());
    // /metrics was read through the proxy over TLS too: the drop counters are there.
    assert_eq!(s["server_drops_total"], 0, "{}", context());

    // Another CA: no connection may get through, each failure says why, and the run stops
    // before measuring.
    let other = Pki::new(&dir.join("other"), "other").ca_file;
    let out = load(
        &url,
        &[
            "-n",
            "20",
            "--warmup",
            "0",
            "--duration",
            "0.5",
            "--tls-ca",
            other.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "no connection, yet success: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no summary of a run that measured nothing"
    );
    assert!(
        stderr.contains("(tls_unknown_issuer=20)") && stderr.contains("before measuring"),
        "{stderr}"
    );

    drop(proxy);
    server.shutdown();
}

#[test]
fn wss_without_a_usable_ca_file_is_refused_at_start() {
    let dir = temp_dir("load-tls-args");
    let url = "wss://127.0.0.1:9/ws";
    let out = load(url, &["-n", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--tls-ca"), "{stderr}");

    let no_cert = dir.join("key.pem");
    std::fs::write(
        &no_cert,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let out = load(url, &["-n", "1", "--tls-ca", no_cert.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no certificate"), "{stderr}");
    assert!(out.stdout.is_empty(), "refused before any connection");
    let _ = std::fs::remove_dir_all(&dir);
}
