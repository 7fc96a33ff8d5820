//! The messenger seed (`shared/seeds/001_…`): 1:1 chat addressed by user id, numeric ids, and names and avatars beside every message.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::values::{Loose, numeric, unix_secs};
use super::{Edge, Emit, Lookup, peer_of};
use crate::domain::{Error, Message, MessageKind, RoomId, RoomKind, UserId, direct_peer};
use crate::store::{Profile, RoomMembers};
use crate::wire::{Command, Push, RoomCommand, SocialCommand, fields};

/// Reports carry a reason natively; the seed's `report_user` names none.
const REPORT_REASON: &str = "reported from the messenger app";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRef {
    user_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendMessage {
    sender_id: Loose,
    receiver_id: Loose,
    message_type: Option<Loose>,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pair {
    sender_id: Loose,
    receiver_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserPair {
    user_id: Loose,
    user2_id: Loose,
    status: Option<Loose>,
}

pub async fn handle(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "connect_user" => {
            let d: UserRef = fields(data)?;
            edge.must_be_me("userId", &d.user_id)?;
            let connected = json!({"userId": numeric(edge.me()), "success_message": "user connected successfully"});
            Ok(vec![Emit::new("connect_listener", connected)])
        }
        "send_message" => {
            let d: SendMessage = fields(data)?;
            edge.must_be_me("senderId", &d.sender_id)?;
            let kind = d.message_type.as_ref().map(kind_of).transpose()?.unwrap_or(MessageKind::Text);
            let room = edge.direct_room(d.receiver_id.user()?).await?;
            let message = edge.send(room.id, kind, d.message).await?;
            let described = describe(&edge.lookup, room.id, std::slice::from_ref(&message)).await?;
            Ok(described.into_iter().map(|m| Emit::new("new_message", m)).collect())
        }
        "get_message" => {
            let d: Pair = fields(data)?;
            edge.must_be_me("senderId", &d.sender_id)?;
            let Some(room) = edge.lookup.direct_room(edge.me(), &d.receiver_id.user()?).await? else {
                return Ok(vec![Emit::new("get_data_message", json!([]))]);
            };
            let messages = edge.history(room).await?;
            // Opening a conversation reads it: the seed has no other read event.
            if !messages.is_empty() {
                edge.mark_read(room).await?;
            }
            let mut described = describe(&edge.lookup, room, &messages).await?;
            // Across a block, read marks tell neither when the other is active.
            if edge.lookup.blocked_between(edge.me(), &d.receiver_id.user()?).await? {
                for message in &mut described {
                    message["readStatus"] = Value::from(0);
                }
            }
            Ok(vec![Emit::new("get_data_message", Value::Array(described))])
        }
        "chat_listing" => {
            let d: UserRef = fields(data)?;
            edge.must_be_me("userId", &d.user_id)?;
            Ok(vec![Emit::new("chat_message", chat_listing(edge).await?)])
        }
        "block_user" => {
            let d: UserPair = fields(data)?;
            edge.must_be_me("userId", &d.user_id)?;
            let blocked = d.status.as_ref().map(|s| s.flag("status")).transpose()?.unwrap_or(true);
            edge.run(Command::Social(SocialCommand::Block { user: d.user2_id.user()?, blocked })).await?;
            let answer = json!({"block_data": if blocked { "1" } else { "0" }, "userId": d.user_id.as_str()});
            Ok(vec![Emit::new("block_data", answer)])
        }
        "delete_chat" => {
            let d: Pair = fields(data)?;
            edge.must_be_me("senderId", &d.sender_id)?;
            if let Some(room) = edge.lookup.direct_room(edge.me(), &d.receiver_id.user()?).await? {
                edge.run(Command::Room { room, command: RoomCommand::Clear }).await?;
            }
            Ok(vec![Emit::new("cleared_chat", json!({"success_message": "chat cleared successfully"}))])
        }
        "report_user" => {
            let d: UserPair = fields(data)?;
            edge.must_be_me("userId", &d.user_id)?;
            let report = SocialCommand::Report {
                user: d.user2_id.user()?,
                reason: REPORT_REASON.into(),
                message_id: None,
                room: None,
            };
            edge.run(Command::Social(report)).await?;
            Ok(vec![Emit::new("report_data", json!({"success_message": "Report Added Successfully"}))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

pub async fn push(lookup: &Lookup, push: &Push) -> Result<Vec<Emit>, Error> {
    match push {
        Push::MessageNew { message } => {
            let described = describe(lookup, message.room_id, std::slice::from_ref(message)).await?;
            Ok(described.into_iter().map(|m| Emit::new("new_message", m)).collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// `messageType`: 0 text, 1 image, 2 video.
fn kind_of(code: &Loose) -> Result<MessageKind, Error> {
    match code.int("messageType")? {
        0 => Ok(MessageKind::Text),
        1 => Ok(MessageKind::Image),
        2 => Ok(MessageKind::Video),
        _ => Err(Error::bad_request("`messageType` must be 0 (text), 1 (image) or 2 (video)")),
    }
}

/// Kinds the seed lacks (audio, file, system) show as text: their body is a URL or a line.
fn type_code(kind: MessageKind) -> i64 {
    match kind {
        MessageKind::Image => 1,
        MessageKind::Video => 2,
        _ => 0,
    }
}

fn name(profiles: &HashMap<UserId, Profile>, user: Option<&UserId>) -> String {
    user.and_then(|u| profiles.get(u)).and_then(|p| p.name.clone()).unwrap_or_default()
}

fn image(profiles: &HashMap<UserId, Profile>, user: Option<&UserId>) -> String {
    user.and_then(|u| profiles.get(u)).and_then(|p| p.avatar.clone()).unwrap_or_default()
}

/// Messages of one room as the seed shows them: the `new_message` fields, plus the `image`
/// field `get_data_message` shows (the receiver's avatar). The receiver of a group message
/// is 0 and its `groupId` the room's number.
async fn describe(lookup: &Lookup, room: RoomId, messages: &[Message]) -> Result<Vec<Value>, Error> {
    let facts = lookup.room(room).await?;
    let marks = lookup.read_marks(room).await?;
    let members: Vec<&UserId> = facts.members.iter().collect();
    let profiles = lookup.profiles(&members).await?;
    Ok(messages.iter().map(|message| message_json(message, &facts, &marks, &profiles)).collect())
}

fn message_json(
    message: &Message,
    room: &RoomMembers,
    marks: &HashMap<UserId, i64>,
    profiles: &HashMap<UserId, Profile>,
) -> Value {
    let receiver = peer_of(room, &message.sender_id);
    let read = match &receiver {
        Some(receiver) => marks.get(receiver).is_some_and(|seq| *seq >= message.seq),
        None => marks.iter().any(|(user, seq)| *user != message.sender_id && *seq >= message.seq),
    };
    let at = unix_secs(message.created_at);
    json!({
        "id": message.number,
        "senderId": numeric(&message.sender_id),
        "receiverId": receiver.as_ref().map(numeric).unwrap_or(Value::from(0)),
        "chatConstantId": room.number,
        "groupId": if room.kind == RoomKind::Group { room.number } else { 0 },
        "message": message.body,
        "readStatus": i64::from(read),
        "messageType": type_code(message.kind),
        "deletedId": 0,
        "created": at,
        "updated": at,
        "senderName": name(profiles, Some(&message.sender_id)),
        "senderImage": image(profiles, Some(&message.sender_id)),
        "recieverName": name(profiles, receiver.as_ref()),
        "recieverImage": image(profiles, receiver.as_ref()),
        "image": image(profiles, receiver.as_ref()),
    })
}

/// `chat_message`: one row per conversation, the other user's name, avatar and presence
/// beside it (a group's name for groups), newest activity first.
async fn chat_listing(edge: &Edge) -> Result<Value, Error> {
    let rooms = edge.rooms().await?;
    let me = edge.me();
    let peers: Vec<UserId> = rooms
        .iter()
        .filter(|r| r.kind == RoomKind::Direct)
        .flat_map(|r| r.members.iter())
        .filter(|m| *m != me)
        .cloned()
        .collect();
    let presence = edge.presence(peers.clone()).await?;
    let profiles = edge.lookup.profiles(&peers.iter().collect::<Vec<_>>()).await?;
    let rows = rooms
        .iter()
        .map(|room| {
            let peer = direct_peer(room.kind, &room.members, me);
            let last = room.last_message.as_ref();
            let user_name = match peer {
                Some(_) => name(&profiles, peer),
                None => room.name.clone().unwrap_or_default(),
            };
            json!({
                "id": room.number,
                "senderId": numeric(me),
                "receiverId": peer.map(numeric).unwrap_or(Value::from(0)),
                "groupId": if room.kind == RoomKind::Group { room.number } else { 0 },
                "lastMessageId": last.map_or(0, |m| m.number),
                "deletedId": 0,
                "created": unix_secs(room.created_at),
                "updated": unix_secs(room.last_activity_at),
                "user_id": peer.map(numeric).unwrap_or(Value::from(0)),
                "lastMessage": last.map(|m| m.body.clone()).unwrap_or_default(),
                "userName": user_name,
                "userImage": image(&profiles, peer),
                "created_at": unix_secs(last.map_or(room.last_activity_at, |m| m.created_at)),
                "messageType": last.map_or(0, |m| type_code(m.kind)),
                "isOnline": i64::from(peer.is_some_and(|p| presence.get(p).is_some_and(|state| state.online))),
                "unreadcount": room.unread,
            })
        })
        .collect();
    Ok(Value::Array(rows))
}
