//! `tickcast serve --config FILE`: options read from a TOML file.
//!
//! A key is the long option's name (`max-connections = 100`; `max_connections` is read the
//! same), a value what the option takes: a string, a number, `true`/`false` for a switch, an
//! array for a repeatable option (`trusted-proxy = ["10.0.0.0/8"]`). Precedence is
//! flag > environment > file > default: the command line is parsed once, and each file value
//! whose option was given neither as a flag nor by its variable is appended to it as
//! `--key=value` before it is parsed again, so a file value passes through the option's own
//! parser, conflicts and requirements exactly as a flag would. An unknown key, a value of
//! the wrong shape, or one its option refuses is an error naming the file and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::Cli;

/// Why the command line could not be turned into a [`Cli`].
#[derive(Debug)]
pub enum ParseError {
    /// clap's own answer (an error, or `--help`/`--version`): `exit()` prints it.
    Clap(clap::Error),
    /// The configuration file: unreadable, not TOML, an unknown key or a bad value.
    File(String),
}

/// The id of `serve`'s `--config` option.
const CONFIG: &str = "config";

/// Parses the process's arguments, with `serve --config FILE` merged in.
pub fn parse() -> Result<Cli, ParseError> {
    parse_from(std::env::args_os())
}

/// Parses `args` (program name first), with `serve --config FILE` merged in.
pub fn parse_from<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    let from_file = match matches.subcommand() {
        Some(("serve", serve)) => match serve.get_one::<PathBuf>(CONFIG) {
            Some(path) => {
                let at = |e: String| ParseError::File(format!("{}: {e}", path.display()));
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ParseError::File(format!("cannot read {}: {e}", path.display()))
                })?;
                // toml's text names the line and column and shows it.
                let table: toml::Table = text
                    .parse()
                    .map_err(|e: toml::de::Error| at(e.to_string().trim_end().to_string()))?;
                Some((path.clone(), file_args(serve, &table).map_err(at)?))
            }
            None => None,
        },
        _ => None,
    };
    let Some((path, extra)) = from_file.filter(|(_, extra)| !extra.is_empty()) else {
        return Cli::from_arg_matches(&matches).map_err(ParseError::Clap);
    };
    let mut full = argv;
    full.extend(extra.iter().map(|(_, arg)| OsString::from(arg)));
    match Cli::command().try_get_matches_from(&full) {
        Ok(m) => Cli::from_arg_matches(&m).map_err(ParseError::Clap),
        Err(e) => Err(explain(e, &path, &extra)),
    }
}

/// `serve`'s options, with the global ones (`--log-level`, ...) propagated into it.
fn serve_options() -> Vec<Arg> {
    let mut cmd = Cli::command();
    cmd.build();
    cmd.find_subcommand("serve")
        .map(|serve| serve.get_arguments().cloned().collect())
        .unwrap_or_default()
}

/// The `--key=value` arguments the file adds: one per value whose option the command line
/// and the environment left at its default, each with the key it came from.
fn file_args(serve: &ArgMatches, table: &toml::Table) -> Result<Vec<(String, String)>, String> {
    let options = serve_options();
    let mut out = Vec::new();
    let mut keys: Vec<(String, &String)> = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if let Some((_, first)) = keys.iter().find(|(l, _)| *l == long) {
            return Err(format!("`{first}` and `{key}` name the same option"));
        }
        keys.push((long.clone(), key));
        let arg = options
            .iter()
            .find(|a| {
                a.get_long() == Some(long.as_str())
                    && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
            })
            .ok_or_else(|| {
                format!(
                    "unknown key `{key}` (keys are the long options of `tickcast serve --help`, \
                     e.g. `max-connections`)"
                )
            })?;
        if arg.get_id() == CONFIG {
            return Err(format!("`{key}`: a configuration file cannot name another"));
        }
        let values = flag_values(&long, arg, value).map_err(|e| format!("key `{key}`: {e}"))?;
        let given = matches!(
            serve.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !given {
            out.extend(values.into_iter().map(|v| (key.clone(), v)));
        }
    }
    Ok(out)
}

/// The arguments that give option `long` the file's `value`.
fn flag_values(long: &str, arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value;
    match arg.get_action() {
        ArgAction::SetTrue => {
            let on = match value {
                Value::Boolean(b) => *b,
                Value::String(s) => parse_bool(s)?,
                _ => return Err("wants true or false".into()),
            };
            Ok(if on {
                vec![format!("--{long}")]
            } else {
                vec![]
            })
        }
        ArgAction::Append => match value {
            Value::Array(items) => items
                .iter()
                .map(|v| scalar(v).map(|v| format!("--{long}={v}")))
                .collect(),
            v => Ok(vec![format!("--{long}={}", scalar(v)?)]),
        },
        _ => Ok(vec![format!("--{long}={}", scalar(value)?)]),
    }
}

/// A string, number or boolean as the command line spells it.
fn scalar(value: &toml::Value) -> Result<String, String> {
    use toml::Value;
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Array(_) => Err("takes one value, not an array".into()),
        Value::Table(_) => Err("takes a value, not a table".into()),
        Value::Datetime(_) => Err("takes a value, not a date".into()),
    }
}

/// A switch's value: `1/0`, `true/false`, `yes/no`, `on/off`, in any case (as the
/// switches' environment variables read them).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "f" | "" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (1/0, true/false, yes/no)")),
    }
}

/// clap's error about the merged command line, naming the file's key when the option it is
/// about came from the file.
fn explain(e: clap::Error, path: &Path, extra: &[(String, String)]) -> ParseError {
    use clap::error::{ContextKind, ContextValue};
    let about = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return ParseError::Clap(e),
    };
    let flag = about.split([' ', '=']).next().unwrap_or_default();
    let Some((key, _)) = extra
        .iter()
        .find(|(_, arg)| arg.split('=').next() == Some(flag))
    else {
        return ParseError::Clap(e);
    };
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    ParseError::File(format!("{}: key `{key}`: {message}", path.display()))
}
