//! Rooms and presence: opening a direct room, creating, listing and leaving groups, and
//! presence queries. What happens inside one room runs in its actor (`runtime::room`).

use std::collections::HashSet;
use std::sync::Arc;

use super::{Caller, Services, blocks};
use crate::bus::{BusEvent, Topic};
use crate::domain::{ConnectionId, Error, Room, RoomCursor, RoomId, UserId, text};
use crate::store::LeaveOutcome;
use crate::wire::{Command, PresenceState, Push, Reply};

/// Longest group name, in characters.
const MAX_GROUP_NAME: usize = 100;

/// The commands on rooms and presence that need no room actor: opening and leaving rooms,
/// listing them, presence.
pub async fn execute(services: &Arc<Services>, caller: &Caller, command: Command) -> Result<Reply, Error> {
    match command {
        Command::OpenDirectRoom { peer } => Ok(Reply::Room { room: open_direct(services, caller, peer).await? }),
        Command::CreateGroup { name, members } => {
            Ok(Reply::Room { room: create_group(services, caller, name, members).await? })
        }
        Command::ListRooms { limit, before } => {
            Ok(Reply::Rooms { rooms: list(services, caller, limit, before).await? })
        }
        Command::LeaveRoom { room } => leave(services, caller, room).await,
        Command::QueryPresence { users } => presence(services, caller, users).await,
        Command::Room { .. } | Command::Live(_) | Command::Social(_) | Command::Call(_) => {
            super::execute(services.clone(), caller.clone(), command).await
        }
    }
}

/// Opens (or finds) the caller's direct room with `peer`. Opening a new one counts against
/// the caller's `direct_opens` allowance (peers need not exist yet, so nothing else bounds it).
pub async fn open_direct(services: &Services, caller: &Caller, peer: UserId) -> Result<Room, Error> {
    let peer = peer.person()?;
    if peer == caller.user {
        return Err(Error::bad_request("a direct room needs another user"));
    }
    blocks::not_blocked(services, &caller.user, &peer).await?;
    // The room usually exists (the dialects open it for every message): one lookup, no write.
    let room = match services.store.find_direct_room(&caller.user, &peer).await? {
        Some(room) => room,
        None => {
            services.limits.direct_opens.check(&caller.user)?;
            let (room, created) = services.store.open_direct_room(&caller.user, &peer).await?;
            if created {
                for user in [&caller.user, &peer] {
                    services.bus.publish(Topic::User(user.clone()), BusEvent::JoinedRoom { room_id: room });
                }
            }
            room
        }
    };
    services.store.room_for(room, &caller.user).await?.ok_or(Error::Internal)
}

/// Creates a group of the caller and `members` (at most the group-create rate per user).
pub async fn create_group(
    services: &Services,
    caller: &Caller,
    name: String,
    members: Vec<UserId>,
) -> Result<Room, Error> {
    services.limits.group_creates.check(&caller.user)?;
    create_group_as(services, caller, name, members).await
}

/// Creates a group of the caller and `members`, as `create_group` does without its rate limit
/// (for the app's back end).
pub async fn create_group_as(
    services: &Services,
    caller: &Caller,
    name: String,
    members: Vec<UserId>,
) -> Result<Room, Error> {
    let name = text::label(&name, "name", MAX_GROUP_NAME)?;
    let members = members.into_iter().map(UserId::person).collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    let members: Vec<UserId> = members.into_iter().filter(|m| *m != caller.user && seen.insert(m.clone())).collect();
    if members.is_empty() {
        return Err(Error::bad_request("a group needs at least one member besides you"));
    }
    let limit = services.settings.group_limit;
    if members.len() > limit {
        return Err(Error::bad_request(format!("a group has at most {limit} members besides its creator")));
    }
    // A block either way keeps a member out. One the creator made is theirs to know
    // and is named; one a member made is not told beyond the refusal itself.
    let blocks = services.store.blocks_among(&caller.user, &members).await?;
    if let Some(member) = blocks.blocked_by_user.first() {
        return Err(Error::forbidden(format!("you blocked {member}: unblock them to add them to a group")));
    }
    if !blocks.blocking_user.is_empty() {
        return Err(Error::forbidden(if members.len() == 1 {
            "cannot add this user to a group"
        } else {
            "cannot add one of these users to a group"
        }));
    }
    let room = services.store.create_group_room(&caller.user, &name, &members).await?;
    let room = services.store.room_for(room, &caller.user).await?.ok_or(Error::Internal)?;
    for member in &room.members {
        services.bus.publish(
            Topic::User(member.clone()),
            BusEvent::Push { push: Push::RoomCreated { room: room.clone() }, skip: Some(caller.connection) },
        );
    }
    Ok(room)
}

/// The caller's rooms, most recent first, `limit` of them before the cursor.
pub async fn list(
    services: &Services,
    caller: &Caller,
    limit: i64,
    before: Option<RoomCursor>,
) -> Result<Vec<Room>, Error> {
    match services.store.list_rooms(&caller.user, limit, before).await? {
        Some(rooms) => Ok(rooms),
        None => Err(Error::bad_request("before must be a time or the id of one of your rooms")),
    }
}

async fn leave(services: &Services, caller: &Caller, room: RoomId) -> Result<Reply, Error> {
    match services.store.leave_group(room, &caller.user).await? {
        LeaveOutcome::NoSuchRoom => Err(Error::not_found("no such room")),
        LeaveOutcome::NotMember => Err(Error::forbidden("you are not a member of this room")),
        LeaveOutcome::Direct => Err(Error::bad_request("a direct room cannot be left")),
        LeaveOutcome::Left => {
            announce_left(services, room, caller.user.clone(), Some(caller.connection));
            Ok(Reply::Left { room_id: room })
        }
    }
}

/// Tells everyone concerned that `user` is no longer a member of `room`: room actors on every
/// node drop the user's connections before the next event they handle, then tell the members
/// who remain; the user's nodes stop listening to the room for them, and the user's
/// connections (but `skip`, which has its reply) learn that they left.
pub fn announce_left(services: &Services, room: RoomId, user: UserId, skip: Option<ConnectionId>) {
    services.bus.publish(Topic::Room(room), BusEvent::MemberLeft { room_id: room, user_id: user.clone() });
    services.bus.publish(Topic::User(user.clone()), BusEvent::LeftRoom { room_id: room });
    let push = Push::RoomMemberLeft { room_id: room, user_id: user.clone() };
    services.bus.publish(Topic::User(user), BusEvent::Push { push, skip });
}

async fn presence(services: &Services, caller: &Caller, users: Vec<UserId>) -> Result<Reply, Error> {
    Ok(Reply::Presence { users: presence_seen_by(services, caller, users).await? })
}

/// The presence of `users` as `caller` may see it: a user with a block either way shows
/// offline and never seen. Every path that shows a client presence goes through here.
pub async fn presence_seen_by(
    services: &Services,
    caller: &Caller,
    users: Vec<UserId>,
) -> Result<Vec<PresenceState>, Error> {
    let hidden = services.store.block_relations(&caller.user).await?;
    presence_of(services, users, &hidden).await
}

/// Whether each of `users` is online anywhere, and when they were last seen; the `hidden` ones
/// (a block either way) show offline and never seen.
pub async fn presence_of(
    services: &Services,
    users: Vec<UserId>,
    hidden: &HashSet<UserId>,
) -> Result<Vec<PresenceState>, Error> {
    let visible: Vec<UserId> = users.iter().filter(|u| !hidden.contains(*u)).cloned().collect();
    let online = services.presence.online_among(visible.clone()).await?;
    let last_seen = services.store.last_seen(&visible).await?;
    Ok(users
        .into_iter()
        .map(|user| PresenceState {
            online: online.contains(&user),
            last_seen: last_seen.get(&user).copied(),
            user_id: user,
        })
        .collect())
}
