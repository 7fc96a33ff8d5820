//! The rooms seed (`shared/seeds/002_…`): rooms addressed by title (the room's UUID), numeric user ids, status and call events on shared listeners told apart by `type`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::values::{Loose, minutes, numeric};
use super::{Edge, Emit, Lookup};
use crate::domain::{
    Call, CallState, EndReason, Error, Media, MessageKind, Room, RoomKind, Timestamp, UserId, direct_peer,
};
use crate::wire::{Command, Push, RoomCommand, fields};

#[derive(Deserialize)]
struct Request {
    user_id: Loose,
    recipient_id: Loose,
}

#[derive(Deserialize)]
struct Send {
    user_id: Loose,
    room_title: Loose,
    message: String,
    type_id: Option<Loose>,
}

#[derive(Deserialize)]
struct Status {
    user_id: Loose,
    online: Loose,
}

#[derive(Deserialize)]
struct CallRequest {
    from_user: Loose,
    to_user: Loose,
    #[serde(rename = "type")]
    media: Option<String>,
}

#[derive(Deserialize)]
struct UserRef {
    user_id: Loose,
}

#[derive(Deserialize)]
struct CallAnswer {
    from_user: Loose,
    to_user: Loose,
    room_title: Loose,
    answered: Loose,
}

#[derive(Deserialize)]
struct Refresh {
    room_title: Loose,
}

pub async fn handle(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "request" => {
            let d: Request = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let room = edge.direct_room(d.recipient_id.user()?).await?;
            Ok(vec![Emit::new("logs response", json!({"type": "request", "success": true, "room_title": room.id}))])
        }
        "send" => {
            let d: Send = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let kind = d.type_id.as_ref().map(|t| t.int("type_id")).transpose()?.map_or(MessageKind::Text, kind_of);
            let message = edge.send(d.room_title.room()?, kind, d.message).await?;
            Ok(vec![Emit::new("receive", received(&message))])
        }
        "status" => {
            let d: Status = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let online = d.online.flag("online")?;
            let status = json!({"type": "status", "user_id": numeric(edge.me()), "online": online,
                "last_seen": minutes(Timestamp::now())});
            Ok(vec![Emit::new("logs response", status)])
        }
        "call" => {
            let d: CallRequest = fields(data)?;
            edge.must_be_me("from_user", &d.from_user)?;
            let media = match d.media.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("video") => Media::Video,
                Some("audio") | Some("voice") => Media::Audio,
                Some(other) => return Err(Error::bad_request(format!("`type` must be Video or Audio, not {other}"))),
            };
            let room = edge.direct_room(d.to_user.user()?).await?;
            let call = edge.start_call(room.id, media).await?;
            Ok(vec![Emit::new("call response", call_request(&call))])
        }
        "user list" => {
            let d: UserRef = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            Ok(vec![Emit::new("call response", json!({"type": "list", "rooms": user_list(edge).await?}))])
        }
        "call answer" => {
            let d: CallAnswer = fields(data)?;
            if d.from_user.as_str() != edge.me().as_str() && d.to_user.as_str() != edge.me().as_str() {
                return Err(Error::forbidden("`from_user` or `to_user` must be the authenticated user"));
            }
            let room = d.room_title.room()?;
            let answered = d.answered.flag("answered")?;
            let call = edge.current_call(room).await?.ok_or_else(|| Error::not_found("no call in this room"))?;
            // `false` from a callee while it rings declines; any other `false` hangs up
            // (`cancelled` when the caller gives up on a ringing call).
            let ringing_for_me = call.state == CallState::Ringing && call.caller_id != *edge.me();
            match (answered, ringing_for_me) {
                (true, _) => edge.accept_call(call.id).await?,
                (false, true) => edge.decline_call(call.id).await?,
                (false, false) => edge.end_call(call.id).await?,
            };
            let answer = json!({"status": answered, "type": "answer", "room_title": room});
            Ok(vec![Emit::new("call response", answer)])
        }
        "refresh" => {
            let d: Refresh = fields(data)?;
            // Members only, like every room event; the live feed needs no resubscribing.
            let history = RoomCommand::History { before_seq: None, after_seq: None, limit: 1 };
            edge.run(Command::Room { room: d.room_title.room()?, command: history }).await?;
            Ok(vec![Emit::new("user response", json!({"type": "status", "refresh": true}))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

pub async fn push(_lookup: &Lookup, push: &Push) -> Result<Vec<Emit>, Error> {
    Ok(match push {
        Push::MessageNew { message } => vec![Emit::new("receive", received(message))],
        Push::Presence(state) => vec![Emit::new(
            "logs response",
            json!({"type": "status", "user_id": numeric(&state.user_id), "online": state.online,
                "last_seen": state.last_seen.map(minutes)}),
        )],
        Push::CallIncoming { call } => vec![Emit::new("call response", call_request(call))],
        Push::CallAccepted { call } => {
            vec![Emit::new("call response", json!({"status": true, "type": "answer", "room_title": call.room_id}))]
        }
        Push::CallEnded { call, reason } => {
            // A declined call is the seed's negative answer; any other end is `type: "end"`.
            let kind = if *reason == EndReason::Declined { "answer" } else { "end" };
            vec![Emit::new(
                "call response",
                json!({"status": false, "type": kind, "room_title": call.room_id, "reason": reason}),
            )]
        }
        _ => Vec::new(),
    })
}

/// `type_id`: the seed leaves the codes to "the backend developer"; its example sends text
/// as 2. 1 image, 2 text, 3 video, 4 audio, 5 file; anything else is text.
fn kind_of(code: i64) -> MessageKind {
    match code {
        1 => MessageKind::Image,
        3 => MessageKind::Video,
        4 => MessageKind::Audio,
        5 => MessageKind::File,
        _ => MessageKind::Text,
    }
}

fn type_id(kind: MessageKind) -> i64 {
    match kind {
        MessageKind::Image => 1,
        MessageKind::Video => 3,
        MessageKind::Audio => 4,
        MessageKind::File => 5,
        MessageKind::Text | MessageKind::System | MessageKind::Deleted => 2,
    }
}

fn received(message: &crate::domain::Message) -> Value {
    json!({"user_id": numeric(&message.sender_id), "room_title": message.room_id, "message": message.body,
        "type_id": type_id(message.kind)})
}

fn call_request(call: &Call) -> Value {
    let callee = call.callee_ids.first().map(numeric).unwrap_or(Value::Null);
    let call_type = match call.media {
        Media::Video => "Video",
        Media::Audio => "Audio",
    };
    let to_status = if call.state == CallState::Ringing { "Ringing" } else { "Answered" };
    json!({"room_id": call.room_id, "from_id": numeric(&call.caller_id), "to_id": callee,
        "from_status": "Calling", "to_status": to_status, "call_type": call_type, "type": "request"})
}

/// `user list`: the caller's direct rooms with the other user's name, avatar and status.
async fn user_list(edge: &Edge) -> Result<Vec<Value>, Error> {
    let me = edge.me();
    let rooms: Vec<(Room, UserId)> = edge
        .rooms()
        .await?
        .into_iter()
        .filter(|room| room.kind == RoomKind::Direct)
        .filter_map(|room| direct_peer(room.kind, &room.members, me).cloned().map(|peer| (room, peer)))
        .collect();
    let peers: Vec<UserId> = rooms.iter().map(|(_, peer)| peer.clone()).collect();
    let presence = edge.presence(peers.clone()).await?;
    let profiles = edge.lookup.profiles(&peers.iter().collect::<Vec<_>>()).await?;
    Ok(rooms
        .iter()
        .map(|(room, peer)| {
            let profile = profiles.get(peer);
            let state = presence.get(peer);
            let last = room.last_message.as_ref();
            json!({
                "id": room.number,
                "title": room.id,
                "user_id": numeric(me),
                "recipient_id": numeric(peer),
                "last_message": last.map(|m| m.body.clone()).unwrap_or_default(),
                "last_message_date": minutes(last.map_or(room.last_activity_at, |m| m.created_at)),
                "recipient_status": if state.is_some_and(|s| s.online) { "online" } else { "offline" },
                "recipient_lastseen": state.and_then(|s| s.last_seen).map(minutes).unwrap_or_default(),
                "recipient_avatar": profile.and_then(|p| p.avatar.clone()).unwrap_or_default(),
                "recipient_name": profile.and_then(|p| p.name.clone()).unwrap_or_default(),
            })
        })
        .collect())
}
