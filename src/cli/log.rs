//! `--log-level` and `--log-format`: how every subcommand logs (to stderr, through the `log`
//! facade and `env_logger`).
//!
//! The level is the base filter; `RUST_LOG`, when set, is applied on top of it, so its
//! directives (`RUST_LOG=tickcast::bus=debug`, or a plain `RUST_LOG=warn`) still work.
//! `json` writes one object per line with `ts` (RFC 3339, UTC, microseconds), `level`,
//! `target` and `msg`, for log shippers that would otherwise have to parse text.

use std::io::Write as _;

use clap::{Args, ValueEnum};

/// The least severe level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Start-up, shutdown, reloads and other events an operator reads (the default).
    Info,
    /// Per-connection events (refusals, closes).
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `[ts LEVEL target] message`, for people.
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

/// The logging options every subcommand takes (global: given before or after it).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Least severe level logged (RUST_LOG, when set, is applied on top of it).
    #[arg(
        long,
        global = true,
        env = "TICKCAST_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,
    /// How log lines are written: `text`, or `json` (one object per line: ts, level,
    /// target, msg).
    #[arg(
        long,
        global = true,
        env = "TICKCAST_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the process's logger. Called once, by `main`, before anything logs.
    pub fn init(&self) {
        let mut builder = env_logger::Builder::new();
        builder.filter_level(self.log_level.filter());
        if let Ok(directives) = std::env::var("RUST_LOG")
            && !directives.trim().is_empty()
        {
            builder.parse_filters(&directives);
        }
        if self.log_format == LogFormat::Json {
            builder.format(|buf, record| {
                let line = json_line(
                    &buf.timestamp_micros().to_string(),
                    record.level(),
                    record.target(),
                    &record.args().to_string(),
                );
                writeln!(buf, "{line}")
            });
        }
        // `try_init` fails only when a logger is already installed; the first one stays.
        let _ = builder.try_init();
    }
}

/// One log record as a JSON object (the `json` format's line, without its newline).
pub fn json_line(ts: &str, level: log::Level, target: &str, msg: &str) -> String {
    serde_json::json!({
        "ts": ts,
        "level": level.as_str().to_ascii_lowercase(),
        "target": target,
        "msg": msg,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_the_four_fields() {
        let line = json_line(
            "2026-01-02T03:04:05.000006Z",
            log::Level::Warn,
            "tickcast::server",
            "a \"quoted\"\nmessage",
        );
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "2026-01-02T03:04:05.000006Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["target"], "tickcast::server");
        assert_eq!(v["msg"], "a \"quoted\"\nmessage");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }
}
