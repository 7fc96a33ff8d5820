//! Dispatch of every command: rooms are opened, listed and left and presence answered here;
//! room commands go to the room's actor through the hub, and calls, live sessions and social
//! commands to their own modules.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::hub::ToRoom;
use super::{Caller, Services, calls, live, social};
use crate::bus::{BusEvent, Topic};
use crate::domain::{Error, UserId};
use crate::wire::{Command, PresenceState, Push, Reply};
use crate::store::LeaveOutcome;

/// Longest group name, in characters.
const MAX_GROUP_NAME: usize = 100;

/// Starts `command` and returns its reply. Room commands are handed to the hub before this
/// returns, so commands from one connection keep their order. A panic while it runs fails
/// this command alone (`internal`, logged), never the connection or the node.
pub fn execute(services: Arc<Services>, caller: Caller, command: Command) -> BoxFuture<'static, Result<Reply, Error>> {
    let event = command.event();
    let run = dispatch(services, caller, command);
    Box::pin(async move {
        std::panic::AssertUnwindSafe(run).catch_unwind().await.unwrap_or_else(|_| {
            tracing::error!(event, "a command panicked; answered as an internal error");
            Err(Error::Internal)
        })
    })
}

fn dispatch(services: Arc<Services>, caller: Caller, command: Command) -> BoxFuture<'static, Result<Reply, Error>> {
    match command {
        Command::Room { room, command } => {
            let sent = services.hub.send(ToRoom { caller, room, command });
            Box::pin(async move { sent.await.map_err(|_| Error::Unavailable("node is shutting down".into()))? })
        }
        Command::Live(command) => live::execute(services, caller, command),
        other => Box::pin(async move { execute_other(&services, &caller, other).await }),
    }
}

async fn execute_other(services: &Arc<Services>, caller: &Caller, command: Command) -> Result<Reply, Error> {
    match command {
        Command::OpenDirectRoom { peer } => {
            if peer == caller.user {
                return Err(Error::bad_request("a direct room needs another user"));
            }
            social::not_blocked(services, &caller.user, &peer).await?;
            let (room, created) = services.store.open_direct_room(&caller.user, &peer).await?;
            if created {
                for user in [&caller.user, &peer] {
                    services.bus.publish(Topic::User(user.clone()), BusEvent::JoinedRoom { room_id: room });
                }
            }
            let room = services.store.room_for(room, &caller.user).await?.ok_or(Error::Internal)?;
            Ok(Reply::Room { room })
        }
        Command::CreateGroup { name, members } => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_GROUP_NAME {
                return Err(Error::bad_request(format!("name must be 1 to {MAX_GROUP_NAME} characters")));
            }
            let mut seen = HashSet::new();
            let members: Vec<UserId> =
                members.into_iter().filter(|m| *m != caller.user && seen.insert(m.clone())).collect();
            if members.is_empty() {
                return Err(Error::bad_request("a group needs at least one member besides you"));
            }
            let limit = services.settings.group_limit;
            if members.len() > limit {
                return Err(Error::bad_request(format!("a group has at most {limit} members besides its creator")));
            }
            services.limits.group_creates.check(&caller.user)?;
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
            Ok(Reply::Room { room })
        }
        Command::ListRooms { limit, before } => match services.store.list_rooms(&caller.user, limit, before).await? {
            Some(rooms) => Ok(Reply::Rooms { rooms }),
            None => Err(Error::bad_request("before must be a time or the id of one of your rooms")),
        },
        Command::LeaveRoom { room } => match services.store.leave_group(room, &caller.user).await? {
            LeaveOutcome::NoSuchRoom => Err(Error::not_found("no such room")),
            LeaveOutcome::NotMember => Err(Error::forbidden("you are not a member of this room")),
            LeaveOutcome::Direct => Err(Error::bad_request("a direct room cannot be left")),
            LeaveOutcome::Left => {
                let user = caller.user.clone();
                // Room actors on every node drop the leaver's connections before the next
                // event they handle, then tell the members who remain.
                services.bus.publish(Topic::Room(room), BusEvent::MemberLeft { room_id: room, user_id: user.clone() });
                // The leaver's nodes stop listening to the room for them, and the leaver's
                // other connections learn that they left.
                services.bus.publish(Topic::User(user.clone()), BusEvent::LeftRoom { room_id: room });
                services.bus.publish(
                    Topic::User(user.clone()),
                    BusEvent::Push {
                        push: Push::RoomMemberLeft { room_id: room, user_id: user },
                        skip: Some(caller.connection),
                    },
                );
                Ok(Reply::Left { room_id: room })
            }
        },
        Command::QueryPresence { users } => {
            let hidden = services.store.block_relations(&caller.user).await?;
            let visible: Vec<UserId> = users.iter().filter(|u| !hidden.contains(*u)).cloned().collect();
            let online = services.presence.online_among(visible.clone()).await?;
            let last_seen = services.store.last_seen(&visible).await?;
            let users = users
                .into_iter()
                .map(|user| PresenceState {
                    online: online.contains(&user),
                    last_seen: last_seen.get(&user).copied(),
                    user_id: user,
                })
                .collect();
            Ok(Reply::Presence { users })
        }
        Command::Room { .. } | Command::Live(_) => execute(services.clone(), caller.clone(), command).await,
        Command::Social(command) => social::execute(services, caller, command).await,
        Command::Call(command) => calls::execute(services, caller, command).await,
    }
}
