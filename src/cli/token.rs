//! `tickcast token`: prints a signed token for testing and scripts.

use std::time::Duration;

use clap::Args;

use super::parse_duration;
use super::secret::SecretArgs;
use crate::auth;

/// Options of `tickcast token`. The secret's flags are spelled shorter than `serve`'s: the
/// token has no other secret to tell it from.
#[derive(Debug, Args)]
#[command(
    mut_arg("auth_secret", |a| a
        .long("secret")
        .value_name("SECRET")
        .help("The server's secret")),
    mut_arg("auth_secret_file", |a| a
        .long("secret-file")
        .value_name("SECRET_FILE")
        .help("Read the secret from this file (trailing newline ignored)")),
)]
pub struct TokenArgs {
    /// The client's identity (becomes its client_id).
    #[arg(long)]
    pub sub: String,
    /// Topic patterns it may publish to (repeatable; `room.*` matches a prefix).
    #[arg(long)]
    pub publish: Vec<String>,
    /// Topic patterns it may subscribe to (repeatable; `*` for every topic and room).
    /// Default: no claim, which grants the server's own topics (ticks, telemetry) and no
    /// room.
    #[arg(long)]
    pub subscribe: Vec<String>,
    /// How long the token is valid (more than 0).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The server's secret (`--secret`, `--secret-file`).
    #[command(flatten)]
    pub secret: SecretArgs,
}

impl TokenArgs {
    /// The signed token these options describe.
    pub fn token(&self) -> Result<String, String> {
        if self.ttl.is_zero() {
            return Err(
                "--ttl must be longer than 0 (such a token would be expired already)".into(),
            );
        }
        let secret = self
            .secret
            .bytes()?
            .ok_or("--secret or --secret-file is required")?;
        crate::protocol::validate_client_id(&self.sub).map_err(|e| e.message)?;
        let mut claims = auth::claims_for(
            &self.sub,
            self.ttl,
            self.subscribe.clone(),
            self.publish.clone(),
        );
        if self.subscribe.is_empty() {
            claims.subscribe = None;
        }
        auth::issue(&secret, &claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn printed_token_verifies() {
        let secret = "0123456789abcdef0123";
        let Cli {
            command: Command::Token(args),
            ..
        } = Cli::parse_from([
            "tickcast",
            "token",
            "--sub",
            "alice",
            "--publish",
            "room.*",
            "--ttl",
            "1h",
            "--secret",
            secret,
        ])
        else {
            panic!("token subcommand")
        };
        let token = args.token().unwrap();
        let (sub, rights) = auth::Verifier::new(secret.as_bytes())
            .verify(Some(&token))
            .unwrap();
        assert_eq!(sub, "alice");
        assert!(rights.may_publish("room.lobby"));
        assert!(rights.may_subscribe("ticks"));
        assert!(
            !rights.may_subscribe("room.lobby"),
            "no room without a claim naming it"
        );
    }

    #[test]
    fn the_secret_flags_keep_their_short_spelling() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["tickcast", "token", "--sub", "alice"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        assert!(parse(&["--secret", "0123456789abcdef"]).is_ok());
        assert!(parse(&["--secret-file", "secret.txt"]).is_ok());
        assert!(parse(&["--auth-secret", "0123456789abcdef"]).is_err());
        assert!(parse(&["--secret", "0123456789abcdef", "--secret-file", "s.txt"]).is_err());
    }
}
