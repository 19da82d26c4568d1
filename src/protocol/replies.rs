//! Frames sent to one connection or one room: welcome, acknowledgements, presence, history
//! resets and member lists. Broadcast data messages are built by the mixer.

use serde::Serialize;

use super::json_frame;
use crate::frame::FrameBytes;

/// `{"type":"welcome","shard":N,"client_id":"...","topics":[...]}`, the first frame of every
/// `/ws` connection.
pub fn welcome_frame(shard: usize, client_id: &str, topics: &[impl AsRef<str>]) -> FrameBytes {
    #[derive(Serialize)]
    struct Welcome<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        shard: usize,
        client_id: &'a str,
        topics: Vec<&'a str>,
    }
    let topics = topics.iter().map(AsRef::as_ref).collect();
    json_frame(&Welcome {
        kind: "welcome",
        shard,
        client_id,
        topics,
    })
}

/// `{"type":"subscribed"|"unsubscribed","topics":[...]}`: the operation is in effect.
pub fn ack_frame(kind: &'static str, topics: &[impl AsRef<str>]) -> FrameBytes {
    #[derive(Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topics: Vec<&'a str>,
    }
    let topics = topics.iter().map(AsRef::as_ref).collect();
    json_frame(&Ack { kind, topics })
}

/// A member of a room as presence frames show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberView<'a> {
    /// The member's client id.
    pub client_id: &'a str,
    /// Its nickname, once set with `/nick`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<&'a str>,
}

/// What changed in a room's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceEvent {
    /// A member joined.
    Join,
    /// A member left.
    Leave,
    /// A member changed its nickname.
    Nick,
}

/// `{"type":"presence","topic":..,"event":"join"|"leave"|"nick","client_id":..,"nick":..,"count":N}`:
/// one membership change, sent to the room's members.
pub fn presence_delta(
    topic: &str,
    event: PresenceEvent,
    member: &MemberView<'_>,
    count: usize,
) -> FrameBytes {
    #[derive(Serialize)]
    struct Delta<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topic: &'a str,
        event: &'static str,
        #[serde(flatten)]
        member: &'a MemberView<'a>,
        count: usize,
    }
    let event = match event {
        PresenceEvent::Join => "join",
        PresenceEvent::Leave => "leave",
        PresenceEvent::Nick => "nick",
    };
    json_frame(&Delta {
        kind: "presence",
        topic,
        event,
        member,
        count,
    })
}

/// `{"type":"presence","topic":..,"event":"count","count":N}`: rooms above
/// `--presence-list-max` get only their size, at most once a second.
pub fn presence_count(topic: &str, count: usize) -> FrameBytes {
    #[derive(Serialize)]
    struct Count<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topic: &'a str,
        event: &'static str,
        count: usize,
    }
    json_frame(&Count {
        kind: "presence",
        topic,
        event: "count",
        count,
    })
}

/// The member list of a room: the join snapshot (`{"type":"presence","event":"snapshot",..}`)
/// or the answer to `/who` (`{"type":"who",..}`). `members` is `None` above the list limit,
/// and then `"truncated":true` says so.
pub fn member_list(
    kind: &'static str,
    topic: &str,
    members: Option<&[MemberView<'_>]>,
    count: usize,
) -> FrameBytes {
    #[derive(Serialize)]
    struct List<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        event: Option<&'static str>,
        count: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<&'a [MemberView<'a>]>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    }
    let (kind, event) = if kind == "who" {
        ("who", None)
    } else {
        ("presence", Some("snapshot"))
    };
    json_frame(&List {
        kind,
        topic,
        event,
        count,
        members,
        truncated: members.is_none(),
    })
}

/// `{"type":"reset","topic":..,"oldest":S,"latest":L}`: a resume asked for messages the
/// history no longer holds (or a seq this server never issued); what follows starts at
/// `oldest` (or is live when the history is empty).
pub fn reset_frame(topic: &str, oldest: u64, latest: u64) -> FrameBytes {
    #[derive(Serialize)]
    struct Reset<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topic: &'a str,
        oldest: u64,
        latest: u64,
    }
    json_frame(&Reset {
        kind: "reset",
        topic,
        oldest,
        latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(f: &FrameBytes) -> serde_json::Value {
        // Small frames: 2-byte header.
        serde_json::from_slice(&f[2..]).unwrap()
    }

    #[test]
    fn presence_shapes() {
        let m = MemberView {
            client_id: "alice",
            nick: Some("Al"),
        };
        let v = json(&presence_delta("room.a", PresenceEvent::Join, &m, 3));
        assert_eq!(
            v,
            serde_json::json!({"type":"presence","topic":"room.a","event":"join","client_id":"alice","nick":"Al","count":3})
        );
        let v = json(&member_list(
            "snapshot",
            "r",
            Some(std::slice::from_ref(&m)),
            1,
        ));
        assert_eq!(v["event"], "snapshot");
        assert_eq!(v["members"][0]["client_id"], "alice");
        assert!(v.get("truncated").is_none());
        let v = json(&member_list("who", "r", None, 5000));
        assert_eq!(v["type"], "who");
        assert_eq!(v["truncated"], true);
        assert!(v.get("members").is_none());
        assert_eq!(json(&reset_frame("t", 5, 9))["oldest"], 5);
    }
}
