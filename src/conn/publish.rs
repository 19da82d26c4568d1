//! The `publish` operation on `/ws`: checks (topic, rights, membership), chat commands
//! (`/me`, `/nick`, `/who`, `/shrug`), then the message off to the mixer, or `server_busy`.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::session::forbidden;
use super::{Conn, ConnCtx};
use crate::chat::{self, Command};
use crate::messages::{MixerMsg, Publish, Refused};
use crate::protocol::{self, ClientError, ErrorCode};

impl Conn {
    /// `{"op":"publish"}`: checks, rate limit, chat commands, then off to the mixer.
    pub(super) fn publish(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        topic: &str,
        data: Box<RawValue>,
    ) -> Result<(), ClientError> {
        let me = self.conn_ref(ctx);
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        protocol::validate_topic(topic)?;
        if !protocol::is_room(topic) {
            return Err(ClientError::new(
                ErrorCode::ReadOnlyTopic,
                format!("`{topic}` is published by the server only"),
            ));
        }
        if !s.client.rights.may_publish(topic) {
            return Err(forbidden(topic));
        }
        let Some(room) = s.held_topics().find(|t| &***t == topic).cloned() else {
            return Err(ClientError::new(
                ErrorCode::NotInRoom,
                format!("join `{topic}` before publishing to it"),
            ));
        };
        let mut msg = Publish {
            topic: room.clone(),
            data,
            from: Some(s.client.id.clone()),
            nick: s.client.nick.clone(),
            kind: None,
            seq: None,
            made_us: None,
            queued: 0,
        };
        match chat::parse(msg.data.get())? {
            None => {}
            Some(Command::Shrug(text)) => msg.data = json_string(&text),
            Some(Command::Me(action)) => {
                msg.data = json_string(&action);
                msg.kind = Some("me");
            }
            Some(Command::Nick(nick)) => {
                let nick: Arc<str> = Arc::from(nick.as_str());
                s.client.nick = Some(nick.clone());
                let rooms = s.rooms();
                ctx.mixer.send(MixerMsg::Nick {
                    conn: me,
                    nick,
                    rooms,
                });
                return Ok(());
            }
            Some(Command::Who) => {
                ctx.mixer.send(MixerMsg::Who { room, conn: me });
                return Ok(());
            }
        }
        match ctx.mixer.publish(msg) {
            Ok(()) => {
                ctx.stats.client_publishes += 1;
                Ok(())
            }
            Err(Refused::Busy) => Err(ClientError::new(
                ErrorCode::ServerBusy,
                "server busy, publish not taken",
            )),
            Err(Refused::Stopping) => Err(ClientError::new(
                ErrorCode::ServerBusy,
                "server shutting down, publish not taken",
            )),
        }
    }
}

/// A JSON string value for a rewritten chat message.
fn json_string(text: &str) -> Box<RawValue> {
    // A Rust string always serializes to a valid JSON string.
    RawValue::from_string(serde_json::Value::from(text).to_string())
        .expect("a JSON string is valid JSON")
}
