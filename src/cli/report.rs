//! `tickcast report`: its options.

use std::path::PathBuf;

use clap::Args;

/// Options of `tickcast report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep's raw.csv.
    #[arg(required_unless_present = "schema")]
    pub csv: Option<PathBuf>,
    /// Folder for summary.md and the SVG charts. Default: the CSV's folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only print the verdict on the last row (ok, saturated, client-bound, failed), for
    /// the bench script's rate ladder.
    #[arg(long)]
    pub verdict: bool,
    /// Only print the CSV schema as a markdown table.
    #[arg(long)]
    pub schema: bool,
}

impl ReportArgs {
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
