//! What a user of `tickcast load` and `tickcast report` meets first, through the binary
//! itself: a run that cannot succeed stops before measuring (a closed port, a path that
//! answers 404, a `--csv` that cannot be written), a row records the server's shard count
//! when `--shards` is not given, and `report` refuses a CSV that is not a results file.
//!
//! Runs that would measure for an hour if they did not stop at once are waited for with a
//! bound ([`WAIT_LIMIT`]), then killed and failed.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::*;
use tickcast::report::schema;

const BIN: &str = env!("CARGO_BIN_EXE_tickcast");

/// Runs the binary with `args`, waiting at most [`WAIT_LIMIT`] for it to exit.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tickcast");
    let deadline = Instant::now() + WAIT_LIMIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "tickcast {} still running after {WAIT_LIMIT:?}; stderr: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh folder under the system's temporary one.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-load-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `load` options for a run that would measure for an hour.
const AN_HOUR: &[&str] = &[
    "-n",
    "20",
    "--threads",
    "1",
    "--warmup",
    "0",
    "--duration",
    "3600",
    "-q",
];

#[test]
fn load_against_a_closed_port_fails_at_once() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws?topics=ticks");
    let out = run(&[&["load", url.as_str()], AN_HOUR].concat());
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refused=") && err.contains("is a server listening"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no summary of a run that measured nothing"
    );
}

#[test]
fn load_against_a_path_that_answers_404_fails_at_once() {
    let server = start(test_config(1));
    let url = format!("ws://{}/nope", server.local_addr());
    let out = run(&[&["load", url.as_str()], AN_HOUR].concat());
    server.shutdown();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("http_404=") && err.contains("check the path"),
        "{err}"
    );
}

#[test]
fn a_csv_that_cannot_be_written_fails_before_measuring() {
    let server = start(test_config(1));
    let url = format!("ws://{}/ws?topics=ticks", server.local_addr());
    let missing = temp_dir("csv").join("no-such-folder");
    let csv = missing.join("raw.csv");
    let csv = csv.to_str().unwrap();
    let out = run(&[&["load", url.as_str(), "--csv", csv], AN_HOUR].concat());
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--csv") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        err.contains(missing.to_str().unwrap()),
        "names the folder: {err}"
    );
    // A file of another schema is refused up front too.
    let other = temp_dir("other").join("raw.csv");
    std::fs::write(&other, "a,b\n1,2\n").unwrap();
    let other = other.to_str().unwrap();
    let out = run(&[&["load", url.as_str(), "--csv", other], AN_HOUR].concat());
    server.shutdown();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("another header"), "{}", stderr(&out));
}

#[test]
fn a_row_without_shards_given_records_the_servers() {
    let server = start(test_config(2));
    let url = format!("ws://{}/ws?topics=ticks", server.local_addr());
    let csv = temp_dir("shards").join("raw.csv");
    let out = run(&[
        "load",
        url.as_str(),
        "-n",
        "10",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--duration",
        "0.5",
        "-q",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    server.shutdown();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = schema::read_rows(&csv).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].shards, 2);
}

#[test]
fn report_refuses_a_csv_that_is_not_a_results_file() {
    let dir = temp_dir("report");
    let csv = dir.join("not-results.csv");
    std::fs::write(&csv, "name,value\nx,1\n").unwrap();
    let csv_arg = csv.to_str().unwrap();
    let out_arg = dir.join("out");
    let out = run(&["report", csv_arg, "--out", out_arg.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not a results file"), "{err}");
    assert!(
        err.contains("unix_time") && err.contains("delivery_ratio"),
        "{err}"
    );
    assert!(
        !out_arg.join("summary.md").exists(),
        "no empty report written"
    );
    // A header alone is refused too.
    std::fs::write(&csv, format!("{}\n", schema::header())).unwrap();
    let out = run(&["report", csv_arg, "--out", out_arg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no rows"), "{}", stderr(&out));
}

#[test]
fn report_says_the_csv_is_required() {
    let help = run(&["report", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("<CSV>") && !text.contains("[CSV]"), "{text}");
    let out = run(&["report"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("<CSV>"), "{}", stderr(&out));
    let schema_only = run(&["report", "--schema"]);
    assert!(schema_only.status.success(), "{}", stderr(&schema_only));
}
