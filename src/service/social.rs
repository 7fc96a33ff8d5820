//! Social commands: follow and friend requests with stored notifications, likes and
//! matches, blocks, reports, locations and nearby users.

use std::sync::Arc;

use super::blocks::not_blocked;
use super::webhooks::{self, Event};
use super::{Caller, Services};
use crate::bus::{BusEvent, Topic};
use crate::domain::{Error, NearbyUser, RequestKind, Room, RoomId, UserId};
use crate::store::RequestOutcome;
use crate::wire::{BlockedUser, Push, Reply, SocialCommand};

pub async fn execute(services: &Arc<Services>, caller: &Caller, command: SocialCommand) -> Result<Reply, Error> {
    let me = &caller.user;
    let store = &services.store;
    match command {
        SocialCommand::Request { kind, to } => {
            other_user(me, &to)?;
            not_blocked(services, me, &to).await?;
            if store.send_request(me, &to, kind).await? == RequestOutcome::Sent {
                webhooks::emit(services, Event::FollowRequest { from: me.clone(), to: to.clone(), kind });
                notify(services, &to, &format!("{}_request", kind.as_str()), me, None).await?;
            }
            Ok(Reply::Done)
        }
        SocialCommand::Respond { kind, from, accept } => {
            Ok(Reply::Responded { room: respond(services, caller, kind, from, accept).await? })
        }
        SocialCommand::ListNotifications { limit, before, unread_only } => {
            Ok(Reply::Notifications { notifications: store.notifications(me, limit, before, unread_only).await? })
        }
        SocialCommand::ReadNotifications { ids } => {
            Ok(Reply::NotificationsRead { read: store.read_notifications(me, ids).await? })
        }
        SocialCommand::Like { user, like } => {
            let room = set_like(services, caller, user, like).await?;
            Ok(Reply::Like { matched: room.is_some(), room })
        }
        SocialCommand::Block { user, blocked } => block(services, caller, user, blocked).await,
        SocialCommand::ListBlocks => {
            let users = store.blocks_of(me).await?;
            Ok(Reply::Blocks {
                users: users.into_iter().map(|(user_id, blocked_at)| BlockedUser { user_id, blocked_at }).collect(),
            })
        }
        SocialCommand::Report { user, reason, message_id, room } => {
            other_user(me, &user)?;
            services.limits.reports.check(me)?;
            let report_id = store.add_report(me, &user, &reason, message_id.clone(), room).await?;
            let report =
                Event::ReportCreated { reporter: me.clone(), reported: user, reason, room, message: message_id };
            webhooks::emit(services, report);
            Ok(Reply::Report { report_id })
        }
        SocialCommand::UpdateLocation { at } => {
            services.limits.location_updates.check(me)?;
            let stored = store.set_location(me, at, services.settings.location_grid()).await?;
            Ok(Reply::Location { lat: stored.lat, lng: stored.lng })
        }
        SocialCommand::Nearby { radius_km, limit } => nearby(services, caller, radius_km, limit).await,
    }
}

/// Another user than `me`, and a person (not the system's id).
fn other_user(me: &UserId, other: &UserId) -> Result<(), Error> {
    if me == other {
        return Err(Error::bad_request("that is you"));
    }
    other.clone().person().map(drop)
}

/// Stores a notification and pushes it to the user's connections, wherever they are.
async fn notify(
    services: &Services,
    to: &UserId,
    kind: &str,
    from: &UserId,
    room: Option<RoomId>,
) -> Result<(), Error> {
    let notification = services.store.add_notification(to, kind, from, room).await?;
    services
        .bus
        .publish(Topic::User(to.clone()), BusEvent::Push { push: Push::Notification(notification), skip: None });
    Ok(())
}

/// The pair's direct room; when it is new, both users get `room.created` (their nodes
/// start listening to it on the way).
async fn open_shared_room(services: &Services, a: &UserId, b: &UserId) -> Result<RoomId, Error> {
    let (room, created) = services.store.open_direct_room(a, b).await?;
    if created {
        for user in [a, b] {
            let view = services.store.room_for(room, user).await?.ok_or(Error::Internal)?;
            services.bus.publish(
                Topic::User(user.clone()),
                BusEvent::Push { push: Push::RoomCreated { room: view }, skip: None },
            );
        }
    }
    Ok(room)
}

/// Accepts or declines `from`'s pending request; an acceptance opens (or reopens) the pair's
/// direct room, which it answers.
pub async fn respond(
    services: &Services,
    caller: &Caller,
    kind: RequestKind,
    from: UserId,
    accept: bool,
) -> Result<Option<Room>, Error> {
    let (me, store) = (&caller.user, &services.store);
    other_user(me, &from)?;
    if accept {
        not_blocked(services, me, &from).await?;
    }
    if !store.respond_request(&from, me, kind, accept).await? {
        return Err(Error::not_found(format!("no pending {} request from {from}", kind.as_str())));
    }
    if !accept {
        return Ok(None);
    }
    let room = open_shared_room(services, me, &from).await?;
    notify(services, &from, &format!("{}_accepted", kind.as_str()), me, Some(room)).await?;
    let room = store.room_for(room, me).await?.ok_or(Error::Internal)?;
    Ok(Some(room))
}

/// Likes (or unlikes) `user`; when the like is mutual, the match's direct room.
pub async fn set_like(services: &Services, caller: &Caller, user: UserId, like: bool) -> Result<Option<Room>, Error> {
    let (me, store) = (&caller.user, &services.store);
    other_user(me, &user)?;
    not_blocked(services, me, &user).await?;
    let outcome = store.like(me, &user, like).await?;
    if !outcome.matched {
        return Ok(None);
    }
    let room = open_shared_room(services, me, &user).await?;
    if outcome.new_match {
        // Only the like that made the match announces it: once per user.
        for (to, with) in [(me, &user), (&user, me)] {
            services.bus.publish(
                Topic::User(to.clone()),
                BusEvent::Push { push: Push::Match { user_id: with.clone(), room_id: room }, skip: None },
            );
        }
        webhooks::emit(services, Event::MatchCreated { users: [me.clone(), user.clone()], room });
    }
    let room = store.room_for(room, me).await?.ok_or(Error::Internal)?;
    Ok(Some(room))
}

async fn nearby(services: &Services, caller: &Caller, radius_km: f64, limit: i64) -> Result<Reply, Error> {
    let (me, store) = (&caller.user, &services.store);
    let Some(center) = store.location_of(me).await? else {
        return Err(Error::bad_request("set your location with location.update first"));
    };
    let hidden = store.block_relations(me).await?;
    // Distances come already rounded to the grid: nothing finer leaves the store.
    let near: Vec<(UserId, f64)> = store
        .users_near(center, radius_km, services.settings.location_grid())
        .await?
        .into_iter()
        .filter(|(user, _)| user != me && !hidden.contains(user))
        .take(limit as usize)
        .collect();
    let online = services.presence.online_among(near.iter().map(|(u, _)| u.clone()).collect()).await?;
    let users = near
        .into_iter()
        .map(|(user_id, distance_km)| NearbyUser { online: online.contains(&user_id), distance_km, user_id })
        .collect();
    Ok(Reply::Nearby { users })
}

async fn block(services: &Services, caller: &Caller, user: UserId, blocked: bool) -> Result<Reply, Error> {
    let (me, store) = (&caller.user, &services.store);
    other_user(me, &user)?;
    store.set_block(me, &user, blocked).await?;
    // Room actors of the pair's direct room re-read the block on their next event.
    let direct = store.find_direct_room(me, &user).await?;
    if let Some(room) = direct {
        services.bus.publish(Topic::Room(room), BusEvent::RoomChanged { room_id: room });
    }
    if blocked {
        // What the pair still shares live ends: a call between them, and each one's place in
        // the other's live sessions. The block stands either way: a failure here is logged
        // (a call racing its own end, the store failing), not answered.
        if let Some(room) = direct
            && let Err(e) = super::calls::end_in(services, me, room).await
        {
            tracing::warn!(user = %me, error = %e, "could not end a call on a block");
        }
        if let Err(e) = super::live::part(services, me, &user).await {
            tracing::warn!(user = %me, error = %e, "could not part a blocked pair's live sessions");
        }
    }
    Ok(Reply::Block { user_id: user, blocked })
}
