//! What a scenario hands back: its checks, each passed, failed or undecided, the verdict they
//! add up to, a one-line summary for the reliability table, and the raw figures, printed as
//! one line of JSON.
//!
//! The verdict rule is the one place pass/fail is decided: any failed check fails the
//! scenario; otherwise any check that could not be decided (a figure missing, a metric absent
//! on this server) makes it undecided; a scenario passes only when every check passed, and
//! never with no checks at all.

use serde::Serialize;
use serde_json::{Map, Value};

/// The outcome of one check, or of a whole scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Measured, and within the expectation.
    Pass,
    /// Measured, and outside the expectation.
    Fail,
    /// Could not be measured; says why in its detail.
    Undecided,
}

impl Verdict {
    /// `pass`, `fail` or `undecided`, as written in the CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Undecided => "undecided",
        }
    }
}

/// One expectation of a scenario and what was measured against it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name, e.g. `no_failures`.
    pub name: String,
    /// Its outcome.
    pub verdict: Verdict,
    /// What was measured (and, when undecided, why).
    pub detail: String,
}

impl Check {
    /// A decided check.
    pub fn new(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            detail: detail.into(),
        }
    }

    /// A check decided when `ok` is known, undecided otherwise.
    pub fn maybe(name: &str, ok: Option<bool>, detail: impl Into<String>) -> Check {
        match ok {
            Some(ok) => Check::new(name, ok, detail),
            None => Check {
                name: name.into(),
                verdict: Verdict::Undecided,
                detail: detail.into(),
            },
        }
    }
}

/// The verdict of a list of checks (see the module header).
pub fn overall(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::Undecided) {
        Verdict::Undecided
    } else {
        Verdict::Pass
    }
}

/// Everything one scenario run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Whether the quick counts were used.
    pub quick: bool,
    /// The verdict of [`Report::checks`].
    pub verdict: Verdict,
    /// What the server is expected to do, in one line.
    pub expectation: String,
    /// What was measured, in one line.
    pub measured: String,
    /// Each expectation and its outcome.
    pub checks: Vec<Check>,
    /// Raw figures (counts, tallies, series) for the CSV and for later reading.
    pub raw: Map<String, Value>,
    /// Wall time of the scenario, seconds.
    pub secs: f64,
}

impl Report {
    /// A report whose verdict follows from `checks`; the measured line lists the checks'
    /// details after `summary`.
    pub fn new(
        scenario: &str,
        expectation: &str,
        summary: String,
        checks: Vec<Check>,
        raw: Map<String, Value>,
    ) -> Report {
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .map(|c| format!("{} {}", c.name, c.verdict.as_str()))
            .collect();
        let measured = if failing.is_empty() {
            summary
        } else {
            format!("{summary} [{}]", failing.join(", "))
        };
        Report {
            scenario: scenario.into(),
            quick: false,
            verdict: overall(&checks),
            expectation: expectation.into(),
            measured,
            checks,
            raw,
            secs: 0.0,
        }
    }

    /// The report as one line of JSON.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"scenario\":\"{}\",\"verdict\":\"undecided\",\"measured\":\"cannot serialize: {e}\"}}", self.scenario)
        })
    }
}

/// The value at quantile `q` (0..=1) of `sorted` (nearest rank); 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `values` (NaN-free) in place and returns them.
pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// A small builder for the raw figures.
#[derive(Debug, Default)]
pub struct Raw(pub Map<String, Value>);

impl Raw {
    /// Records `key = value`.
    pub fn put(&mut self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.insert(key.to_string(), v);
    }

    /// Records a counter that may be absent (`"absent"` then, never 0).
    pub fn metric(&mut self, key: &str, value: Option<f64>) {
        match value {
            Some(v) => self.put(key, v),
            None => self.put(key, "absent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_fails_and_a_missing_figure_is_undecided() {
        let pass = Check::new("a", true, "");
        let fail = Check::new("b", false, "");
        let unknown = Check::maybe("c", None, "metric absent");
        assert_eq!(overall(std::slice::from_ref(&pass)), Verdict::Pass);
        assert_eq!(
            overall(&[pass.clone(), unknown.clone()]),
            Verdict::Undecided
        );
        assert_eq!(overall(&[unknown.clone(), fail.clone()]), Verdict::Fail);
        assert_eq!(overall(&[]), Verdict::Undecided, "no checks never passes");
        assert_eq!(Check::maybe("d", Some(true), "").verdict, Verdict::Pass);
    }

    #[test]
    fn the_measured_line_names_what_did_not_pass() {
        let r = Report::new(
            "x",
            "e",
            "10 cycles".into(),
            vec![
                Check::new("ok", true, ""),
                Check::new("rss", false, ""),
                Check::maybe("fds", None, ""),
            ],
            Map::new(),
        );
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.measured, "10 cycles [rss fail, fds undecided]");
        let v: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["checks"][2]["verdict"], "undecided");
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = sorted(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.99), 5.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
