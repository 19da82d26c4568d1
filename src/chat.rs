//! Chat commands: a published `data` that is a JSON string starting with `/`.
//!
//! Parsed on the publisher's shard, never in the mixer: the mixer only sequences what the
//! shard decides to publish. [`parse`] turns the text into a [`Command`]; the shard acts on it
//! (publish a rewritten message, rename, ask the mixer for the member list, or answer with an
//! `unknown_command` error to the sender only).

use crate::protocol::{ClientError, ErrorCode, validate_client_id};

/// The shrug, appended by `/shrug`.
pub const SHRUG: &str = r"¯\_(ツ)_/¯";

/// A chat command found in a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/shrug [text]`: publish the text with the shrug appended.
    Shrug(String),
    /// `/me <action>`: publish an action (`"kind":"me"` on the message).
    Me(String),
    /// `/nick <name>`: rename this client in its rooms; announced to them.
    Nick(String),
    /// `/who`: the member list of the room, to the sender only.
    Who,
}

/// Looks at a publish's raw `data`: `Ok(None)` when it is not a command (anything but a JSON
/// string starting with `/`), a command, or an error for the sender.
pub fn parse(raw_data: &str) -> Result<Option<Command>, ClientError> {
    if !raw_data.starts_with('"') {
        return Ok(None);
    }
    // The data was already validated as JSON, so a leading quote means a JSON string.
    let Ok(text) = serde_json::from_str::<String>(raw_data) else {
        return Ok(None);
    };
    let Some(line) = text.strip_prefix('/') else {
        return Ok(None);
    };
    let (name, rest) = match line.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (line, ""),
    };
    let unknown = |msg: String| ClientError::new(ErrorCode::UnknownCommand, msg);
    match name {
        "shrug" => Ok(Some(Command::Shrug(if rest.is_empty() {
            SHRUG.to_string()
        } else {
            format!("{rest} {SHRUG}")
        }))),
        "me" if !rest.is_empty() => Ok(Some(Command::Me(rest.to_string()))),
        "me" => Err(unknown("usage: /me <action>".into())),
        "nick" => {
            validate_client_id(rest)?;
            Ok(Some(Command::Nick(rest.to_string())))
        }
        "who" => Ok(Some(Command::Who)),
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(unknown(format!(
                "unknown command `/{shown}` (try /me, /nick, /who, /shrug)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse(r#""/shrug""#).unwrap(),
            Some(Command::Shrug(SHRUG.into()))
        );
        assert_eq!(
            parse(r#""/shrug fine""#).unwrap(),
            Some(Command::Shrug(format!("fine {SHRUG}")))
        );
        assert_eq!(
            parse(r#""/me waves""#).unwrap(),
            Some(Command::Me("waves".into()))
        );
        assert_eq!(
            parse(r#""/nick bob_2""#).unwrap(),
            Some(Command::Nick("bob_2".into()))
        );
        assert_eq!(parse(r#""\/who""#).unwrap(), Some(Command::Who));
    }

    #[test]
    fn not_commands() {
        for data in [
            r#""hello""#,
            "42",
            r#"{"text":"/who"}"#,
            r#"" /who""#,
            "null",
        ] {
            assert_eq!(parse(data).unwrap(), None, "{data}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(r#""/dance""#).unwrap_err().code,
            ErrorCode::UnknownCommand
        );
        assert_eq!(
            parse(r#""/me""#).unwrap_err().code,
            ErrorCode::UnknownCommand
        );
        assert_eq!(
            parse(r#""/nick a b""#).unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert_eq!(
            parse(r#""/nick""#).unwrap_err().code,
            ErrorCode::InvalidName
        );
    }
}
