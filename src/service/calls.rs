//! Call signaling: start, ring, accept on one device, decline, hang up, relay SDP/ICE, and
//! a sweeper on every node that ends ringing past its timeout and drops parties gone past
//! the grace period. The store holds each call's state, so any node can act on any call and
//! no call depends on the node that started it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::webhooks::{self, Event};
use super::{Caller, Services};
use crate::bus::{BusEvent, Topic};
use crate::domain::{
    Call, CallId, CallState, ConnectionId, EndReason, Error, Media, PartyStatus, RoomId, RoomKind, Timestamp, UserId,
};
use crate::store::{CallRecord, Departure};
use crate::wire::{CallCommand, Push, Reply};

/// This node's connections that may hold a call device (they started, answered or signalled
/// in a call). Only these have a device to release when they close: most connections never
/// join a call, and releasing on every disconnect was one query per client in a reconnect
/// storm. Marked before the store records the device, so a disconnect racing it still
/// releases.
#[derive(Default)]
pub struct CallDevices(Mutex<HashSet<ConnectionId>>);

impl CallDevices {
    fn mark(&self, connection: ConnectionId) {
        self.0.lock().expect("call devices lock").insert(connection);
    }

    /// Forgets a closed connection; true if it may hold a device.
    pub fn release(&self, connection: ConnectionId) -> bool {
        self.0.lock().expect("call devices lock").remove(&connection)
    }
}

pub async fn execute(services: &Arc<Services>, caller: &Caller, command: CallCommand) -> Result<Reply, Error> {
    let call = |call| Reply::Call { call };
    match command {
        CallCommand::Start { room, media } => start(services, caller, room, media).await.map(call),
        CallCommand::Accept { call: id } => accept(services, caller, id).await.map(call),
        CallCommand::Decline { call: id } => decline(services, caller, id).await.map(call),
        CallCommand::End { call: id } => end(services, caller, id).await.map(call),
        CallCommand::Signal { call, signal, to } => relay_signal(services, caller, call, signal, to).await,
        CallCommand::History { room, limit } => {
            Ok(Reply::Calls { calls: history(services, caller, room, limit).await? })
        }
    }
}

/// A ringing callee answers on this connection; the call as it now stands.
pub async fn accept(services: &Services, caller: &Caller, call: CallId) -> Result<Call, Error> {
    let me = &caller.user;
    party_of(&load(services, call).await?, me)?;
    services.call_devices.mark(caller.connection);
    services.store.accept_call(call, me, caller.connection).await??;
    let record = load(services, call).await?;
    for user in reachable(&record.call).filter(|u| *u != me) {
        push_to(services, user, Push::CallAccepted { call: record.call.clone() }, None);
    }
    // The callee's other devices stop ringing.
    let elsewhere = Push::CallEnded { call: record.call.clone(), reason: EndReason::AnsweredElsewhere };
    push_to(services, me, elsewhere, Some(caller));
    Ok(record.call)
}

/// A ringing callee refuses; the call as it now stands.
pub async fn decline(services: &Services, caller: &Caller, call: CallId) -> Result<Call, Error> {
    let me = &caller.user;
    party_of(&load(services, call).await?, me)?;
    let departure = services.store.decline_call(call, me).await??;
    announce_departure(services, call, me, departure, EndReason::Declined, Some(caller)).await
}

/// The room's calls, newest first (members only).
pub async fn history(services: &Services, caller: &Caller, room: RoomId, limit: i64) -> Result<Vec<Call>, Error> {
    let Some(members) = services.store.room_members(room).await? else {
        return Err(Error::not_found("no such room"));
    };
    if !members.members.contains(&caller.user) {
        return Err(Error::forbidden("you are not a member of this room"));
    }
    Ok(services.store.call_history(room, limit).await?)
}

async fn load(services: &Services, call: CallId) -> Result<CallRecord, Error> {
    services.store.call(call).await?.ok_or_else(|| Error::not_found("no such call"))
}

/// The user's part in the call; a third party gets `forbidden`.
fn party_of<'a>(record: &'a CallRecord, user: &UserId) -> Result<&'a crate::domain::CallParticipant, Error> {
    record.call.participant(user).ok_or_else(|| Error::forbidden("you are not a party to this call"))
}

/// The parties a call's pushes go to: everyone but callees who were busy (they never rang).
fn reachable(call: &Call) -> impl Iterator<Item = &UserId> {
    call.participants.iter().filter(|p| p.status != PartyStatus::Busy).map(|p| &p.user_id)
}

fn push_to(services: &Services, user: &UserId, push: Push, skip: Option<&Caller>) {
    let skip = skip.map(|c| c.connection);
    services.bus.publish(Topic::User(user.clone()), BusEvent::Push { push, skip });
}

/// After `user` left the call (declined, hung up or vanished): everyone hears that the
/// call ended, or, in a group call that goes on, that the user left.
async fn announce_departure(
    services: &Services,
    call: CallId,
    user: &UserId,
    departure: Departure,
    own: EndReason,
    acting: Option<&Caller>,
) -> Result<Call, Error> {
    let record = load(services, call).await?;
    match departure {
        Departure::Ended(reason) => {
            for party in reachable(&record.call) {
                let skip = if party == user { acting } else { None };
                push_to(services, party, Push::CallEnded { call: record.call.clone(), reason }, skip);
            }
        }
        Departure::Left => {
            for party in reachable(&record.call).filter(|u| *u != user) {
                push_to(services, party, Push::CallLeft { call: record.call.clone(), user_id: user.clone() }, None);
            }
            push_to(services, user, Push::CallEnded { call: record.call.clone(), reason: own }, acting);
        }
    }
    Ok(record.call)
}

/// Ends ringing past the ring timeout and drops parties whose last connection has been gone
/// past the grace period; safe on every node at once (the store lets one node act on each).
pub async fn sweep(services: &Services) -> Result<(), Error> {
    let now = Timestamp::now();
    for expired in services.store.expire_ringing(now).await? {
        let Some(record) = loaded(services, expired.call).await else { continue };
        for callee in &expired.users {
            let (call, caller, media) = (record.call.id, record.call.caller_id.clone(), record.call.media);
            webhooks::emit(services, Event::CallMissed { call, caller, callee: callee.clone(), media });
        }
        // The whole call ended (everyone hears its reason), or only these parties missed it.
        let (told, reason): (Vec<&UserId>, EndReason) = match expired.ended {
            Some(reason) => (reachable(&record.call).collect(), reason),
            None => (expired.users.iter().collect(), EndReason::Missed),
        };
        for user in told {
            push_to(services, user, Push::CallEnded { call: record.call.clone(), reason }, None);
        }
    }
    let grace = services.settings.call_grace_secs as i64 * 1000;
    for (call, user) in drop_away(services, Timestamp::from_millis(now.millis() - grace)).await? {
        let Some(record) = loaded(services, call).await else { continue };
        match record.call.end_reason {
            Some(reason) => {
                for party in reachable(&record.call) {
                    push_to(services, party, Push::CallEnded { call: record.call.clone(), reason }, None);
                }
            }
            None => {
                for party in reachable(&record.call).filter(|u| **u != user) {
                    push_to(services, party, Push::CallLeft { call: record.call.clone(), user_id: user.clone() }, None);
                }
            }
        }
    }
    Ok(())
}

/// Drops the parties away since before `cutoff` from their calls; those dropped. A party
/// online again is marked back instead: a phone that moved to another node can have its old
/// node's "away" land after its new node's "back", and must not be dropped while connected.
async fn drop_away(services: &Services, cutoff: Timestamp) -> Result<Vec<(CallId, UserId)>, Error> {
    let due = services.store.away_parties(cutoff).await?;
    if due.is_empty() {
        return Ok(due);
    }
    let users: HashSet<UserId> = due.iter().map(|(_, user)| user.clone()).collect();
    let online = services.presence.online_among(users.into_iter().collect()).await?;
    if !online.is_empty() {
        let back: Vec<(UserId, Option<Timestamp>)> = online.iter().map(|user| (user.clone(), None)).collect();
        services.store.mark_call_presence_many(&back).await?;
    }
    let mut gone = Vec::new();
    for (call, user) in due.into_iter().filter(|(_, user)| !online.contains(user)) {
        // One party failing stops no other: what committed is announced.
        match services.store.drop_away(call, &user).await {
            Ok(true) => gone.push((call, user)),
            Ok(false) => {}
            Err(e) => tracing::warn!(%call, %user, error = %e, "could not drop a party away from a call"),
        }
    }
    Ok(gone)
}

/// A swept call as it stands now; `None` (logged) if it cannot be read, so that one call
/// failing keeps none of the others unannounced.
async fn loaded(services: &Services, call: CallId) -> Option<CallRecord> {
    load(services, call).await.inspect_err(|e| tracing::warn!(%call, error = %e, "could not read a swept call")).ok()
}

/// Rings the room's other members; the call as it starts.
pub async fn start(services: &Services, caller: &Caller, room: RoomId, media: Media) -> Result<Call, Error> {
    let (me, store) = (&caller.user, &services.store);
    let Some(members) = store.room_members(room).await? else {
        return Err(Error::not_found("no such room"));
    };
    if !members.members.contains(me) {
        return Err(Error::forbidden("you are not a member of this room"));
    }
    let callees: Vec<UserId> = members.members.iter().filter(|m| *m != me).cloned().collect();
    if members.kind == RoomKind::Direct
        && let Some(other) = callees.first()
    {
        super::blocks::not_blocked(services, me, other).await?;
    }
    let ring = Duration::from_secs(services.settings.call_ring_secs);
    let deadline = Timestamp::from_millis(Timestamp::now().millis() + ring.as_millis() as i64);
    services.call_devices.mark(caller.connection);
    let id = store.start_call(room, me, caller.connection, &callees, media, deadline).await??;
    let record = load(services, id).await?;
    for party in &record.call.participants {
        if party.status == PartyStatus::Ringing {
            push_to(services, &party.user_id, Push::CallIncoming { call: record.call.clone() }, None);
        }
    }
    Ok(record.call)
}

/// Hangs up (or declines, while it rings for the caller); the call as it now stands.
pub async fn end(services: &Services, caller: &Caller, call: CallId) -> Result<Call, Error> {
    hang_up(services, &caller.user, call, Some(caller)).await
}

/// `me` hangs up (or declines); `acting`, the connection that asked, learns it from its reply
/// rather than from `call.ended`.
async fn hang_up(services: &Services, me: &UserId, call: CallId, acting: Option<&Caller>) -> Result<Call, Error> {
    let store = &services.store;
    let record = load(services, call).await?;
    let status = party_of(&record, me)?.status;
    let departure = match status {
        PartyStatus::Ringing => store.decline_call(call, me).await??,
        PartyStatus::Joined => store.leave_call(call, me, EndReason::Hangup).await??,
        // Already out of it (or the call ended): hanging up again changes nothing.
        _ => return Ok(record.call),
    };
    let own = if status == PartyStatus::Ringing { EndReason::Declined } else { EndReason::Hangup };
    announce_departure(services, call, me, departure, own, acting).await
}

/// `user` hangs up their ringing or active call in `room`, if any (a block ends a 1:1 call);
/// every device of theirs gets `call.ended` too.
pub async fn end_in(services: &Services, user: &UserId, room: RoomId) -> Result<(), Error> {
    for call in services.store.call_history(room, 5).await? {
        if call.state != CallState::Ended && call.participant(user).is_some() {
            hang_up(services, user, call.id, None).await?;
        }
    }
    Ok(())
}

async fn relay_signal(
    services: &Services,
    caller: &Caller,
    call: CallId,
    signal: serde_json::Value,
    to: Option<UserId>,
) -> Result<Reply, Error> {
    let (me, store) = (&caller.user, &services.store);
    services.limits.call_signals.check(me)?;
    let record = load(services, call).await?;
    let status = party_of(&record, me)?.status;
    if !status.in_call() {
        return Err(Error::Conflict("you are not in this call".into()));
    }
    if status == PartyStatus::Joined {
        services.call_devices.mark(caller.connection);
        store.take_device(call, me, caller.connection).await?;
    }
    let others: Vec<&UserId> = reachable(&record.call).filter(|u| *u != me).collect();
    let target = match (to, others.as_slice()) {
        (Some(to), _) => to,
        (None, [only]) => (*only).clone(),
        (None, _) => return Err(Error::bad_request("name the party to signal with `to`")),
    };
    let in_call = record.call.participant(&target).is_some_and(|p| p.status.in_call());
    if !in_call {
        return Err(Error::Conflict(format!("{target} is not in this call")));
    }
    let push = Push::CallSignal { call_id: call, from: me.clone(), signal };
    // Once a party has answered on a device, only that device gets their signals.
    let event = match record.devices.get(&target) {
        Some(&connection) => BusEvent::ToConnection { push, connection },
        None => BusEvent::Push { push, skip: None },
    };
    services.bus.publish(Topic::User(target), event);
    Ok(Reply::Done)
}
