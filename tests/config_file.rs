//! `tickcast serve --config FILE`: a real server started from a TOML file, with a flag and
//! a variable each overriding the file's value (flag > environment > file > default), and
//! files that are refused: an unknown key, a value of the wrong shape or one the option
//! refuses, and a file that is not TOML, each named in the message, with a non-zero exit.
//!
//! The value tested is `max-connections`, which a client can see: with N allowed, N clients
//! are welcomed and the next one gets 503.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::*;

/// A TOML file in the temporary directory, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!(
            "tickcast-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The file every working case starts from: port 0, no ticks, one connection allowed.
/// Keys are spelled with `-` and with `_`.
const BASE: &str = r#"
listen = "127.0.0.1:0"
providers = 0
no_pin = true
shards = 1
max-connections = 1
"#;

/// Opens WebSocket clients until one is refused; returns how many were welcomed (bounded
/// by `limit`, past which the test fails).
fn welcomed_before_503(addr: SocketAddr, limit: usize) -> usize {
    let mut open = Vec::new();
    loop {
        assert!(
            open.len() <= limit,
            "more than {limit} clients were welcomed"
        );
        let request = upgrade_request(
            "/ws",
            &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
        );
        match try_connect(addr, "/ws?topics=ticks") {
            Ok(mut ws) => {
                let welcome = next_json(&mut ws);
                assert_eq!(welcome["type"], "welcome", "{welcome}");
                open.push(ws);
            }
            Err(e) => {
                // The refusal is 503, not something else.
                assert!(e.contains("503"), "{e}");
                let resp = raw_http(addr, request.as_bytes());
                assert_eq!(status_of(&resp), 503, "{resp}");
                return open.len();
            }
        }
    }
}

#[test]
fn a_server_starts_from_a_file() {
    let file = ConfigFile::new("base", BASE);
    let server = ServeProcess::spawn(&["serve", "--config", file.path()], &[]);
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    assert_eq!(welcomed_before_503(server.addr, 5), 1);
}

#[test]
fn a_flag_overrides_the_file() {
    let file = ConfigFile::new("flag", BASE);
    let server = ServeProcess::spawn(
        &["serve", "--config", file.path(), "--max-connections", "2"],
        // The flag wins over the variable as well.
        &[("TICKCAST_MAX_CONNECTIONS", "3")],
    );
    assert_eq!(welcomed_before_503(server.addr, 5), 2);
}

#[test]
fn a_variable_overrides_the_file() {
    let file = ConfigFile::new("env", BASE);
    let server = ServeProcess::spawn(
        &["serve", "--config", file.path()],
        &[("TICKCAST_MAX_CONNECTIONS", "3")],
    );
    assert_eq!(welcomed_before_503(server.addr, 5), 3);
}

#[test]
fn the_file_can_come_from_its_variable() {
    let file = ConfigFile::new("var", BASE);
    let server = ServeProcess::spawn(&["serve"], &[("TICKCAST_CONFIG", file.path())]);
    assert_eq!(welcomed_before_503(server.addr, 5), 1);
}

#[test]
fn bad_files_are_refused_naming_the_key() {
    let cases: [(&str, &str, &[&str], &str); 9] = [
        (
            "unknown",
            "max-conections = 5",
            &["max-conections"],
            "unknown key",
        ),
        (
            "value",
            "max-connections = \"lots\"",
            &["max-connections"],
            "invalid value",
        ),
        ("negative", "history = -1", &["history"], "invalid value"),
        ("shape", "max-topics = [1, 2]", &["max-topics"], "one value"),
        (
            "switch",
            "proxy-protocol = \"perhaps\"",
            &["proxy-protocol"],
            "not a boolean",
        ),
        ("twice", "no-pin = false", &["no-pin"], "same option"),
        (
            "enum",
            "slow-policy = \"wait\"",
            &["slow-policy"],
            "invalid value",
        ),
        // Either key may be the one named: both come from the file.
        (
            "conflict",
            "rate = 10\ninterval = \"5ms\"",
            &["rate", "interval"],
            "cannot be used",
        ),
        ("nested", "config = \"other.toml\"", &["config"], "another"),
    ];
    for (name, extra, keys, says) in cases {
        // The bad line replaces `BASE`'s max-connections (a key may appear only once).
        let base = BASE.replace("max-connections = 1\n", "");
        let file = ConfigFile::new(name, &format!("{base}{extra}\n"));
        let stderr = refused(&["serve", "--config", file.path()], &[]);
        assert!(stderr.contains(file.path()), "{name}: {stderr}");
        assert!(
            keys.iter().any(|key| stderr.contains(&format!("`{key}`"))),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert_no_debug_text(&stderr.replace(file.path(), "FILE"));
    }
}

#[test]
fn a_file_that_is_not_toml_or_not_there_is_refused() {
    let file = ConfigFile::new("garbage", "providers = 0\nmax-connections = = 1\n");
    let stderr = refused(&["serve", "--config", file.path()], &[]);
    // The message shows where: the file, the line, the text.
    assert!(stderr.contains(file.path()), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("max-connections = = 1"),
        "{stderr}"
    );
    let missing = std::env::temp_dir().join("tickcast-config-does-not-exist.toml");
    let missing = missing.to_str().unwrap();
    let stderr = refused(&["serve", "--config", missing], &[]);
    assert!(
        stderr.contains("cannot read") && stderr.contains(missing),
        "{stderr}"
    );
}
