//! The social seed (`shared/seeds/000_…`): chat between two named users, groups of up to eight, follows and friends, dating likes, video calls by room, and live sessions.

use serde::Deserialize;
use serde_json::{Value, json};

use super::values::Loose;
use super::{Edge, Emit, Lookup};
use crate::domain::{
    Call, CallState, Error, ErrorCode, LiveSession, Location, Media, Message, MessageKind, RequestKind, Room, RoomKind,
    UserId,
};
use crate::wire::{Command, LiveCommand, Push, Reply, SocialCommand, fields};

/// The seed's notification statuses.
const REQUESTED: i64 = 1;
const ACCEPTED: i64 = 2;
/// Sessions started with `callForJoin` have no title in the seed.
const SESSION_TITLE: &str = "Live";

#[derive(Deserialize)]
struct Chat {
    user_1: Loose,
    user_2: Loose,
    text: String,
    sender_id: Loose,
}

#[derive(Deserialize)]
struct ReadUnread {
    #[serde(alias = "group_chat_room")]
    chat_room: Loose,
    user_id: Option<Loose>,
}

#[derive(Deserialize)]
struct UpdateLatLong {
    user_id: Loose,
    longitude: Loose,
    latitude: Loose,
}

#[derive(Deserialize)]
struct LikeOrDislike {
    user_id: Loose,
    like: Loose,
    like_user_id: Loose,
}

#[derive(Deserialize)]
struct SendRequest {
    user_id: Loose,
    combine_id: Option<Value>,
    request_id: Loose,
}

#[derive(Deserialize)]
struct SendFriendRequest {
    user_id: Loose,
    requested_id: Loose,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupRoom {
    group_name: String,
    user1: Option<Loose>,
    user2: Option<Loose>,
    user3: Option<Loose>,
    user4: Option<Loose>,
    user5: Option<Loose>,
    user6: Option<Loose>,
    user7: Option<Loose>,
    user8: Option<Loose>,
}

#[derive(Deserialize)]
struct ChatByGroup {
    chat_room_id: Loose,
    sender_id: Loose,
    text: String,
}

#[derive(Deserialize)]
struct VideoCall {
    chat_room_id: Loose,
    sender_id: Loose,
    // `receiver_id` is not read: the room's other members are who the call rings.
}

#[derive(Deserialize)]
struct AcceptVideoCall {
    chat_room_id: Loose,
}

#[derive(Deserialize)]
struct SessionRef {
    session_id: Loose,
}

#[derive(Deserialize)]
struct HostAction {
    session_id: Loose,
    #[serde(alias = "user_id")]
    create_session_user: Loose,
}

#[derive(Deserialize)]
struct Comment {
    session_id: Loose,
    user_id: Loose,
    comment: Loose,
}

#[derive(Deserialize)]
struct RaiseHand {
    session_id: Loose,
    user_id: Loose,
}

pub async fn handle(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "chat" | "readUnread" | "readUnreadInGroup" | "chatByGroup" => chat(edge, event, data).await,
        "updateLatLong" | "LikeOrDislikeUserForDating" | "sendRequest" | "sendFriendRequest" | "createGroupRoom" => {
            people(edge, event, data).await
        }
        "videoCall" | "videoCallEnd" | "acceptVideoCall" => video_calls(edge, event, data).await,
        "joinSession" | "endSession" | "callForJoin" | "commentOnLiveSession" | "raiseHand" | "raiseHandAccepted" => {
            live_sessions(edge, event, data).await
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

/// 1:1 and group chat, and read marks.
async fn chat(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "chat" => {
            let d: Chat = fields(data)?;
            edge.must_be_me("sender_id", &d.sender_id)?;
            let peer = match (d.user_1.as_str() == edge.me().as_str(), d.user_2.as_str() == edge.me().as_str()) {
                (true, _) => d.user_2.user()?,
                (false, true) => d.user_1.user()?,
                (false, false) => return Err(Error::forbidden("`user_1` or `user_2` must be the authenticated user")),
            };
            let room = edge.direct_room(peer).await?;
            let message = edge.send(room.id, MessageKind::Text, d.text).await?;
            Ok(vec![Emit::new("chatReceive", message_json(&message))])
        }
        "readUnread" | "readUnreadInGroup" => {
            let d: ReadUnread = fields(data)?;
            if let Some(user) = d.user_id.as_ref().filter(|u| !u.as_str().is_empty()) {
                edge.must_be_me("user_id", user)?;
            }
            let room = d.chat_room.room()?;
            let seq = edge.mark_read(room).await?;
            Ok(vec![Emit::new("chatReceive", read_json(&room.to_string(), edge.me(), seq))])
        }
        "chatByGroup" => {
            let d: ChatByGroup = fields(data)?;
            edge.must_be_me("sender_id", &d.sender_id)?;
            let message = edge.send(d.chat_room_id.room()?, MessageKind::Text, d.text).await?;
            Ok(vec![Emit::new("chatReceive", message_json(&message))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

/// Location, dating likes, follow and friend requests, groups.
async fn people(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "updateLatLong" => {
            let d: UpdateLatLong = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let at = Location::parse(d.latitude.float("latitude")?, d.longitude.float("longitude")?)?;
            edge.run(Command::Social(SocialCommand::UpdateLocation { at })).await?;
            let update = json!({"user_id": d.user_id.as_str(), "latitude": d.latitude.as_str(),
                "longitude": d.longitude.as_str(), "success": true});
            Ok(vec![Emit::new("checkUpdate", update)])
        }
        "LikeOrDislikeUserForDating" => {
            let d: LikeOrDislike = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let like = d.like.flag("like")?;
            let room = edge.like(d.like_user_id.user()?, like).await?;
            let matched = room.is_some();
            let answer = json!({"user_id": d.user_id.as_str(), "like_user_id": d.like_user_id.as_str(),
                "like": i64::from(like), "match": i64::from(matched), "chat_room": room.map(|r| r.id)});
            Ok(vec![Emit::new("likeDislikeUser", answer)])
        }
        "sendRequest" => {
            let d: SendRequest = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let (status, room) = request_or_accept(edge, RequestKind::Follow, d.request_id.user()?).await?;
            let answer = json!({"user_id": d.user_id.as_str(), "request_id": d.request_id.as_str(),
                "combine_id": d.combine_id, "status": status, "chat_room": room.map(|r| r.id)});
            Ok(vec![Emit::new("sendRequestUser", answer)])
        }
        "sendFriendRequest" => {
            let d: SendFriendRequest = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let (status, room) = request_or_accept(edge, RequestKind::Friend, d.requested_id.user()?).await?;
            let answer = json!({"user_id": d.user_id.as_str(), "requested_id": d.requested_id.as_str(),
                "status": status, "chat_room": room.map(|r| r.id)});
            Ok(vec![Emit::new("getRequest", answer)])
        }
        "createGroupRoom" => {
            let d: CreateGroupRoom = fields(data)?;
            let members = [d.user1, d.user2, d.user3, d.user4, d.user5, d.user6, d.user7, d.user8]
                .into_iter()
                .flatten()
                .filter(|u| !u.as_str().is_empty())
                .map(|u| u.user())
                .collect::<Result<Vec<UserId>, Error>>()?;
            let room = edge.create_group(d.group_name, members).await?;
            Ok(vec![Emit::new("RoomCreated", room_json(&room))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

/// Video calls in a chat room.
async fn video_calls(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "videoCall" => {
            let d: VideoCall = fields(data)?;
            edge.must_be_me("sender_id", &d.sender_id)?;
            let room = d.chat_room_id.room()?;
            let call = edge.start_call(room, Media::Video).await?;
            Ok(vec![Emit::new("videoCallReceive", call_json(&call))])
        }
        "videoCallEnd" => {
            let d: VideoCall = fields(data)?;
            edge.must_be_me("sender_id", &d.sender_id)?;
            let call = ringing_or_active(edge, &d.chat_room_id).await?;
            // A callee ending a call that still rings declines it; anything else hangs up.
            let call = if call.state == CallState::Ringing && call.caller_id != *edge.me() {
                edge.decline_call(call.id).await?
            } else {
                edge.end_call(call.id).await?
            };
            Ok(vec![Emit::new("videoCallEndReceive", call_json(&call))])
        }
        "acceptVideoCall" => {
            let d: AcceptVideoCall = fields(data)?;
            let call = ringing_or_active(edge, &d.chat_room_id).await?;
            let call = edge.accept_call(call.id).await?;
            Ok(vec![Emit::new("acceptVideoCallReceive", call_json(&call))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

/// Live sessions: joining, ending, going live, comments and raised hands.
async fn live_sessions(edge: &Edge, event: &str, data: Value) -> Result<Vec<Emit>, Error> {
    match event {
        "joinSession" => {
            let d: SessionRef = fields(data)?;
            let session = live(edge, LiveCommand::Join { session: d.session_id.session()? }).await?;
            Ok(vec![Emit::new("sessionJoinSuccess", session_json(&session))])
        }
        "endSession" => {
            let d: HostAction = fields(data)?;
            edge.must_be_me("create_session_user", &d.create_session_user)?;
            let session = live(edge, LiveCommand::End { session: d.session_id.session()? }).await?;
            Ok(vec![Emit::new("endSessionSuccess", session_json(&session))])
        }
        "callForJoin" => {
            let d: HostAction = fields(data)?;
            edge.must_be_me("create_session_user", &d.create_session_user)?;
            let session = go_live(edge, &d.session_id).await?;
            Ok(vec![Emit::new("nowEnd", session_json(&session))])
        }
        "commentOnLiveSession" => {
            let d: Comment = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let session = d.session_id.session()?;
            let text = d.comment.as_str().to_owned();
            edge.run(Command::Live(LiveCommand::Comment { session, text: text.clone() })).await?;
            let comment = json!({"session_id": session, "user_id": edge.me(), "comment": text});
            Ok(vec![Emit::new("commentResponse", comment)])
        }
        "raiseHand" => {
            let d: RaiseHand = fields(data)?;
            edge.must_be_me("user_id", &d.user_id)?;
            let session = d.session_id.session()?;
            edge.run(Command::Live(LiveCommand::RaiseHand { session })).await?;
            Ok(vec![Emit::new("raiseHandSuccess", json!({"session_id": session, "user_id": edge.me()}))])
        }
        "raiseHandAccepted" => {
            let d: HostAction = fields(data)?;
            edge.must_be_me("user_id", &d.create_session_user)?;
            let session = d.session_id.session()?;
            // The seed names no viewer: the host takes the hand raised first.
            let Reply::LiveHands { hands, .. } = edge.run(Command::Live(LiveCommand::Hands { session })).await? else {
                return Err(Error::Internal);
            };
            let hand = hands.into_iter().next().ok_or_else(|| Error::not_found("no raised hand"))?;
            edge.run(Command::Live(LiveCommand::AcceptHand { session, user: hand.user_id.clone() })).await?;
            Ok(vec![Emit::new("raiseHandAcceptedSuccess", json!({"session_id": session, "user_id": hand.user_id}))])
        }
        other => Err(Error::UnknownEvent(other.to_owned())),
    }
}

pub async fn push(_lookup: &Lookup, push: &Push) -> Result<Vec<Emit>, Error> {
    Ok(match push {
        Push::MessageNew { message } => vec![Emit::new("chatReceive", message_json(message))],
        Push::RoomRead { room_id, user_id, seq } => {
            vec![Emit::new("chatReceive", read_json(&room_id.to_string(), user_id, *seq))]
        }
        // A direct room opens by an accepted request or a match: the seed's `createdChat`.
        Push::RoomCreated { room } if room.kind == RoomKind::Direct => vec![Emit::new(
            "createdChat",
            json!({"chat_room": room.id, "user_1": room.members.first(), "user_2": room.members.get(1)}),
        )],
        Push::RoomCreated { room } => vec![Emit::new("RoomCreated", room_json(room))],
        Push::Notification(notification) => {
            let (event, status) = match notification.kind.as_str() {
                "follow_request" => ("sendRequestUser", REQUESTED),
                "follow_accepted" => ("sendRequestUser", ACCEPTED),
                "friend_request" => ("getRequest", REQUESTED),
                "friend_accepted" => ("getRequest", ACCEPTED),
                _ => return Ok(Vec::new()),
            };
            vec![Emit::new(
                event,
                json!({"user_id": notification.from, "status": status, "chat_room": notification.room_id,
                    "notification_id": notification.id}),
            )]
        }
        Push::Match { user_id, room_id } => vec![Emit::new(
            "likeDislikeUser",
            json!({"user_id": user_id, "like_user_id": user_id, "like": 1, "match": 1, "chat_room": room_id}),
        )],
        Push::CallIncoming { call } => vec![Emit::new("videoCallReceive", call_json(call))],
        Push::CallAccepted { call } => vec![Emit::new("acceptVideoCallReceive", call_json(call))],
        Push::CallEnded { call, .. } => vec![Emit::new("videoCallEndReceive", call_json(call))],
        Push::LiveComment(comment) => vec![Emit::new(
            "commentResponse",
            json!({"session_id": comment.session_id, "user_id": comment.user_id, "comment": comment.text,
                "at": comment.at}),
        )],
        Push::LiveHandRaised { session_id, user_id } => {
            vec![Emit::new("raiseHandSuccess", json!({"session_id": session_id, "user_id": user_id}))]
        }
        Push::LiveHandAccepted { session_id, user_id } => {
            vec![Emit::new("raiseHandAcceptedSuccess", json!({"session_id": session_id, "user_id": user_id}))]
        }
        Push::LiveEnded { session, .. } => vec![Emit::new("endSessionSuccess", session_json(session))],
        _ => Vec::new(),
    })
}

/// A request to someone who already asked us is an acceptance (the seed's status 2);
/// otherwise a new request (status 1).
async fn request_or_accept(edge: &Edge, kind: RequestKind, other: UserId) -> Result<(i64, Option<Room>), Error> {
    match edge.respond(kind, other.clone(), true).await {
        Ok(room) => Ok((ACCEPTED, room)),
        Err(err) if err.code() == ErrorCode::NotFound => {
            edge.run(Command::Social(SocialCommand::Request { kind, to: other })).await?;
            Ok((REQUESTED, None))
        }
        Err(err) => Err(err),
    }
}

async fn ringing_or_active(edge: &Edge, room: &Loose) -> Result<Call, Error> {
    edge.current_call(room.room()?).await?.ok_or_else(|| Error::not_found("no call in this room"))
}

async fn live(edge: &Edge, command: LiveCommand) -> Result<LiveSession, Error> {
    match edge.run(Command::Live(command)).await? {
        Reply::LiveSession { session } => Ok(session),
        _ => Err(Error::Internal),
    }
}

/// `callForJoin`: the host opens the session to its audience. The seed creates sessions
/// elsewhere; here a session the host already runs is returned as is, and any other id
/// (empty, unknown) gets the host's live session if there is one, else starts a new session
/// whose id the reply carries.
async fn go_live(edge: &Edge, session: &Loose) -> Result<LiveSession, Error> {
    if let Ok(id) = session.session()
        && let Some(existing) = edge.lookup.live_session(id).await?
    {
        if existing.host_id != *edge.me() {
            return Err(Error::forbidden("only the host can call viewers to join"));
        }
        if existing.is_live() {
            return Ok(existing);
        }
    }
    // A client that lost its session's id gets the session it already hosts, not another
    // (hosts have a few at most: SWITCHBOARD_LIVE_SESSIONS_PER_HOST).
    if let Some(hosted) = edge.lookup.hosted_live_session(edge.me()).await? {
        return Ok(hosted);
    }
    live(edge, LiveCommand::Create { title: SESSION_TITLE.into() }).await
}

fn message_json(message: &Message) -> Value {
    json!({
        "_id": message.id,
        "chat_room": message.room_id,
        "chat_room_id": message.room_id,
        "sender_id": message.sender_id,
        "text": message.body,
        "type": message.kind,
        "seq": message.seq,
        "createdAt": message.created_at,
    })
}

fn read_json(room: &str, user: &UserId, seq: i64) -> Value {
    json!({"chat_room": room, "user_id": user, "read_seq": seq, "read": true})
}

fn room_json(room: &Room) -> Value {
    json!({"chat_room_id": room.id, "groupName": room.name, "users": room.members, "created_by": room.created_by})
}

fn call_json(call: &Call) -> Value {
    json!({
        "chat_room_id": call.room_id,
        "sender_id": call.caller_id,
        "receiver_id": call.callee_ids.first(),
        "call_id": call.id,
        "status": call.state,
        "reason": call.end_reason,
    })
}

fn session_json(session: &LiveSession) -> Value {
    json!({
        "session_id": session.id,
        "create_session_user": session.host_id,
        "title": session.title,
        "status": session.state,
        "viewers": session.viewers,
    })
}
