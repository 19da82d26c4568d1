//! The auth secret on the command line, shared by `serve` (which verifies tokens with it) and
//! `token` (which signs them): given as a flag or read from a file, each with its
//! `TICKCAST_AUTH_SECRET*` variable, never both, and the secret's value never printed in help.
//!
//! Both subcommands flatten [`SecretArgs`], so the variables, the conflict and the reading of
//! the file are defined once. `serve` shows the flags as they are written here; `token`
//! spells them shorter (`--secret`, `--secret-file`) with [`TokenArgs`](super::TokenArgs)'s
//! `mut_arg`.

use std::path::{Path, PathBuf};

use clap::Args;

/// Where the auth secret comes from.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// Require tokens signed with this HS256 secret (at least 16 bytes).
    #[arg(
        long,
        env = "TICKCAST_AUTH_SECRET",
        hide_env_values = true,
        conflicts_with = "auth_secret_file"
    )]
    pub auth_secret: Option<String>,
    /// Read the auth secret from this file (trailing newline ignored).
    #[arg(long, env = "TICKCAST_AUTH_SECRET_FILE")]
    pub auth_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret's bytes: the flag's, else the file's; `None` when neither is given.
    pub fn bytes(&self) -> Result<Option<Vec<u8>>, String> {
        if let Some(s) = &self.auth_secret {
            return Ok(Some(s.as_bytes().to_vec()));
        }
        self.auth_secret_file
            .as_deref()
            .map(read_secret_file)
            .transpose()
    }
}

/// Reads a secret from a file, without its trailing newline.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let end = text
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    Ok(text[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_file_without_its_newline() {
        let path = std::env::temp_dir().join(format!("tickcast-secret-{}", std::process::id()));
        std::fs::write(&path, b"from-a-file-0123\r\n").unwrap();
        let args = |secret: Option<&str>, file: Option<&Path>| SecretArgs {
            auth_secret: secret.map(str::to_string),
            auth_secret_file: file.map(Path::to_path_buf),
        };
        assert_eq!(args(None, None).bytes(), Ok(None));
        assert_eq!(
            args(None, Some(&path)).bytes(),
            Ok(Some(b"from-a-file-0123".to_vec()))
        );
        assert_eq!(
            args(Some("from-the-flag-01"), None).bytes(),
            Ok(Some(b"from-the-flag-01".to_vec()))
        );
        std::fs::remove_file(&path).unwrap();
        assert!(args(None, Some(&path)).bytes().is_err());
    }
}
