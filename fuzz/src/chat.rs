//! Chat commands: `tickcast::chat::parse` on a publish's raw `data` (any JSON, as
//! `parse_op` accepted it; other bytes are tried as a JSON string's contents too).
//!
//! Checked:
//! - anything that is not a JSON string starting with `/` is not a command;
//! - `/nick` accepts only a valid client id, `/me` only a non-empty trimmed action, `/shrug`
//!   ends with the shrug;
//! - a refusal is `unknown_command` or `invalid_name`, with a short message.

use tickcast::chat::{Command, SHRUG, parse};
use tickcast::protocol::{ErrorCode, validate_client_id};

/// Runs the chat parser on `data` as raw JSON, and on `data` as the text of a JSON string.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_raw(text);
    check_raw(&serde_json::Value::String(text.to_string()).to_string());
}

fn check_raw(raw: &str) {
    let command_text = serde_json::from_str::<String>(raw)
        .ok()
        .filter(|s| raw.starts_with('"') && s.starts_with('/'));
    match parse(raw) {
        Ok(None) => assert!(command_text.is_none(), "{raw:?} is a command"),
        Ok(Some(cmd)) => {
            assert!(command_text.is_some(), "{raw:?} is not a command");
            match cmd {
                Command::Nick(name) => assert!(validate_client_id(&name).is_ok()),
                Command::Me(action) => {
                    assert!(!action.is_empty());
                    assert_eq!(action, action.trim());
                }
                Command::Shrug(text) => assert!(text.ends_with(SHRUG)),
                Command::Who => {}
            }
        }
        Err(e) => {
            assert!(command_text.is_some());
            assert!(
                matches!(e.code, ErrorCode::UnknownCommand | ErrorCode::InvalidName),
                "{e:?}"
            );
            assert!(e.message.len() <= crate::client_ops::MAX_ERROR_MESSAGE);
        }
    }
}
