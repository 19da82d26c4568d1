//! `tickcast token`: prints a signed token for testing and scripts.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::auth;

/// Options of `tickcast token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The client's identity (becomes its client_id).
    #[arg(long)]
    pub sub: String,
    /// Topic patterns it may publish to (repeatable; `room.*` matches a prefix).
    #[arg(long)]
    pub publish: Vec<String>,
    /// Topic patterns it may subscribe to (repeatable). Default: every topic.
    #[arg(long)]
    pub subscribe: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The server's secret.
    #[arg(
        long,
        env = "TICKCAST_AUTH_SECRET",
        hide_env_values = true,
        conflicts_with = "secret_file"
    )]
    pub secret: Option<String>,
    /// Read the secret from this file (trailing newline ignored).
    #[arg(long, env = "TICKCAST_AUTH_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The signed token these options describe.
    pub fn token(&self) -> Result<String, String> {
        let secret = match (&self.secret, &self.secret_file) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(path)) => super::serve::read_secret_file(path)?,
            (None, None) => return Err("--secret or --secret-file is required".into()),
        };
        crate::protocol::validate_client_id(&self.sub).map_err(|e| e.message)?;
        let subscribe = if self.subscribe.is_empty() {
            vec!["*".to_string()]
        } else {
            self.subscribe.clone()
        };
        let claims = auth::claims_for(&self.sub, self.ttl, subscribe, self.publish.clone());
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
    }
}
