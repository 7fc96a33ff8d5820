//! What the app's back end does through the server API: rooms and their members, messages as
//! a user or as the system, history, presence, unread counts, deleting a user's data. The back
//! end is trusted (no per-user rate limits, any room), but blocks, group caps and membership of
//! a sending user still hold. What reaches users' connections is in `runtime::operator`.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Caller, Services, blocks, messages, rooms};
use crate::bus::{BusEvent, Topic};
use crate::domain::{
    ConnectionId, Error, Message, MessageBody, MessageKind, Room, RoomId, RoomKind, UserId, direct_peer,
};
use crate::store::{HistoryPage, HistoryQuery, JoinOutcome, LeaveOutcome, NewMessage};
use crate::wire::{PresenceState, Push};

/// Most users one presence query may name.
pub const MAX_PRESENCE_QUERY: usize = 1000;
/// Largest history page.
pub const MAX_HISTORY_PAGE: i64 = 200;

/// Who a server API message is from: a member, or the system (`kind: "system"`).
#[derive(Debug, Clone)]
pub enum Author {
    User(UserId),
    System,
}

/// Creates a room: a direct room of `created_by` and the one other member (found if it
/// exists: `false`), or a group of `created_by` and `members`.
pub async fn create_room(
    services: &Services,
    kind: RoomKind,
    created_by: UserId,
    members: Vec<UserId>,
    name: Option<String>,
) -> Result<(Room, bool), Error> {
    let created_by = created_by.person()?;
    let members = members.into_iter().map(UserId::person).collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    let others: Vec<UserId> = members.into_iter().filter(|m| *m != created_by && seen.insert(m.clone())).collect();
    match kind {
        RoomKind::Direct => {
            let [peer] = others.as_slice() else {
                return Err(Error::bad_request("a direct room has `created_by` and exactly one other member"));
            };
            blocks::not_blocked(services, &created_by, peer).await?;
            let (room, created) = services.store.open_direct_room(&created_by, peer).await?;
            if created {
                for user in [&created_by, peer] {
                    services.bus.publish(Topic::User(user.clone()), BusEvent::JoinedRoom { room_id: room });
                }
            }
            Ok((overview(services, room).await?, created))
        }
        RoomKind::Group => {
            let name = name.unwrap_or_default();
            let limit = services.settings.group_limit;
            if others.len() > limit {
                return Err(Error::Conflict(format!("a group has at most {limit} members besides its creator")));
            }
            let caller = Caller { user: created_by, connection: ConnectionId::new() };
            let room = rooms::create_group_as(services, &caller, name, others).await?;
            Ok((overview(services, room.id).await?, true))
        }
    }
}

/// Adds `user` to a group; the room. Adding a member again changes nothing.
pub async fn add_member(services: &Services, room: RoomId, user: UserId) -> Result<Room, Error> {
    let user = user.person()?;
    let members = services.store.room_members(room).await?.ok_or_else(|| Error::not_found("no such room"))?;
    let blocks = services.store.blocks_among(&user, &members.members).await?;
    if !blocks.blocked_by_user.is_empty() || !blocks.blocking_user.is_empty() {
        return Err(Error::forbidden("a block stands between this user and a member"));
    }
    match services.store.add_group_member(room, &user, services.settings.group_limit).await? {
        JoinOutcome::NoSuchRoom => return Err(Error::not_found("no such room")),
        JoinOutcome::Direct => return Err(Error::Conflict("a direct room's members cannot change".into())),
        JoinOutcome::Full => {
            let limit = services.settings.group_limit;
            return Err(Error::Conflict(format!("a group has at most {limit} members besides its creator")));
        }
        JoinOutcome::AlreadyMember => {}
        JoinOutcome::Added => {
            services.bus.publish(Topic::Room(room), BusEvent::RoomChanged { room_id: room });
            let joined = Push::RoomMemberJoined { room_id: room, user_id: user.clone() };
            services.bus.publish(Topic::Room(room), BusEvent::Push { push: joined, skip: None });
            if let Some(seen) = services.store.room_for(room, &user).await? {
                let created = Push::RoomCreated { room: seen };
                services.bus.publish(Topic::User(user), BusEvent::Push { push: created, skip: None });
            }
        }
    }
    overview(services, room).await
}

/// Takes `user` out of a group; the room.
pub async fn remove_member(services: &Services, room: RoomId, user: UserId) -> Result<Room, Error> {
    match services.store.leave_group(room, &user).await? {
        LeaveOutcome::NoSuchRoom => return Err(Error::not_found("no such room")),
        LeaveOutcome::NotMember => return Err(Error::not_found("not a member of this room")),
        LeaveOutcome::Direct => return Err(Error::Conflict("a direct room's members cannot change".into())),
        LeaveOutcome::Left => rooms::announce_left(services, room, user, None),
    }
    overview(services, room).await
}

/// Posts a message into `room` once it is durable: as a member (refused if they are not one, or
/// a block stands between a direct room's two members), or as the system. The writer gives it
/// its seq; room actors deliver it in seq order like any other.
pub async fn post_message(
    services: &Arc<Services>,
    room: RoomId,
    author: Author,
    kind: MessageKind,
    body: String,
    client_id: Option<String>,
) -> Result<Message, Error> {
    match author {
        Author::User(user) => {
            let user = user.person()?;
            let room_members =
                services.store.room_members(room).await?.ok_or_else(|| Error::not_found("no such room"))?;
            if !room_members.members.contains(&user) {
                return Err(Error::forbidden("the sender is not a member of this room"));
            }
            if let Some(peer) = direct_peer(room_members.kind, &room_members.members, &user) {
                blocks::not_blocked(services, &user, peer).await?;
            }
            let caller = Caller { user, connection: ConnectionId::new() };
            messages::send(services.clone(), room, caller, kind, body, client_id).await
        }
        Author::System => {
            if kind != MessageKind::System {
                return Err(Error::bad_request("a message without `sender_id` is a system message: kind `system`"));
            }
            let body = MessageBody::system(body, services.settings.max_body_bytes)?;
            let sender = UserId::system();
            messages::store_and_announce(services.clone(), NewMessage { room, sender, kind, body, client_id }, None)
                .await
        }
    }
}

/// A page of the room's history, whoever cleared what.
pub async fn history(services: &Services, room: RoomId, query: HistoryQuery, limit: i64) -> Result<HistoryPage, Error> {
    if services.store.room_members(room).await?.is_none() {
        return Err(Error::not_found("no such room"));
    }
    Ok(services.store.room_history(room, query, limit.clamp(1, MAX_HISTORY_PAGE)).await?)
}

/// Whether each of `users` is online anywhere, and when they were last seen.
pub async fn presence(services: &Services, users: Vec<UserId>) -> Result<Vec<PresenceState>, Error> {
    if users.len() > MAX_PRESENCE_QUERY {
        return Err(Error::bad_request(format!("at most {MAX_PRESENCE_QUERY} users per query")));
    }
    rooms::presence_of(services, users, &HashSet::new()).await
}

/// `user`'s unread messages: the total and per room (rooms with none left out), most first.
pub async fn unread(services: &Services, user: &UserId) -> Result<(i64, Vec<(RoomId, i64)>), Error> {
    let mut rooms = services.store.unread_counts(user).await?;
    rooms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok((rooms.iter().map(|(_, n)| n).sum(), rooms))
}

/// Deletes `user`'s data (see `Store::delete_user`); the members of their rooms hear they left,
/// the live sessions they host end and those they watch count them no more.
pub async fn delete_user(services: &Services, user: &UserId) -> Result<(), Error> {
    let user = &user.clone().person()?;
    super::live::leave_all(services, user).await?;
    for room in services.store.delete_user(user).await? {
        rooms::announce_left(services, room, user.clone(), None);
        services.bus.publish(Topic::Room(room), BusEvent::RoomChanged { room_id: room });
    }
    Ok(())
}

async fn overview(services: &Services, room: RoomId) -> Result<Room, Error> {
    services.store.room_overview(room).await?.ok_or(Error::Internal)
}
