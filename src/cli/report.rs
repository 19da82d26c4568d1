//! `tickcast report`: its options.

use std::path::PathBuf;

use clap::Args;

/// Options of `tickcast report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep's raw.csv (every use but --schema needs it). An `Option` only so that
    /// --schema, which takes nothing else, can leave it out.
    #[arg(required = true)]
    pub csv: Option<PathBuf>,
    /// Folder for summary.md and the SVG charts. Default: the CSV's folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only print the verdict on the point of the last row, over its runs so far, for the
    /// bench script's rate ladder: `VERDICT NEAR RUNS`, where VERDICT is ok, saturated,
    /// client-bound or failed, NEAR is `near` when the median run is close to the bar
    /// (another run could decide the other way) or `clear`, and RUNS counts the runs.
    #[arg(long)]
    pub verdict: bool,
    /// Only print the CSV schema as a markdown table (alone: no CSV, no other option).
    #[arg(long, exclusive = true)]
    pub schema: bool,
    /// Only print the offered msgs/s at the strict saturation point of one configuration,
    /// given as MODE,SHARDS,CLIENTS (e.g. `tickcast,1,5000`); nothing when none passed.
    #[arg(long, value_name = "MODE,SHARDS,CLIENTS")]
    pub best_rate: Option<String>,
    /// Only print two modes of the sweep side by side as markdown, given as BASE,OTHER
    /// (e.g. `tickcast,tls`): each one's highest sustainable rate per client count, and at
    /// every rate measured both ways the server CPU per delivery, handshake p99 and RSS
    /// per connection.
    #[arg(long, value_name = "BASE,OTHER")]
    pub compare: Option<String>,
}

impl ReportArgs {
    /// `--best-rate` split into (mode, shards, clients).
    pub fn best_rate_key(&self) -> Result<Option<(String, u32, u64)>, String> {
        let Some(spec) = &self.best_rate else {
            return Ok(None);
        };
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [mode, shards, clients] => Ok(Some((
                mode.to_string(),
                shards
                    .parse()
                    .map_err(|_| format!("bad shard count in {spec:?}"))?,
                clients
                    .parse()
                    .map_err(|_| format!("bad client count in {spec:?}"))?,
            ))),
            _ => Err(format!(
                "--best-rate wants MODE,SHARDS,CLIENTS, got {spec:?}"
            )),
        }
    }

    /// `--compare` split into (base, other).
    pub fn compare_modes(&self) -> Result<Option<(String, String)>, String> {
        let Some(spec) = &self.compare else {
            return Ok(None);
        };
        match spec.split_once(',') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                Ok(Some((a.trim().to_string(), b.trim().to_string())))
            }
            _ => Err(format!("--compare wants BASE,OTHER, got {spec:?}")),
        }
    }

    /// The output folder.
    pub fn out_dir(&self) -> PathBuf {
        match (&self.out, &self.csv) {
            (Some(out), _) => out.clone(),
            (None, Some(csv)) => csv
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            (None, None) => PathBuf::from("."),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Result<super::ReportArgs, clap::Error> {
        let mut all = vec!["tickcast", "report"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Report(a) => Ok(*a),
            other => panic!("not report: {other:?}"),
        }
    }

    #[test]
    fn the_csv_is_required_except_for_the_schema() {
        let err = parse(&[]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&["--verdict"]).is_err());
        assert!(parse(&["--schema"]).unwrap().schema);
        assert!(
            parse(&["--schema", "raw.csv"]).is_err(),
            "--schema takes nothing else"
        );
        let a = parse(&["results/x/raw.csv"]).unwrap();
        assert_eq!(a.out_dir(), std::path::PathBuf::from("results/x"));
        let mut cli = Cli::command();
        let usage = cli
            .find_subcommand_mut("report")
            .unwrap()
            .render_usage()
            .to_string();
        assert!(usage.contains("<CSV>"), "{usage}");
    }
}
