//! Calls: every state change is a conditional update inside a transaction, so two nodes
//! acting on one call at once (two devices accepting, a sweep racing a hangup) cannot both
//! win. The `call_lines` unique key makes "already in a call" a cluster-wide check.

use std::collections::HashMap;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{call_events, call_lines, call_participants, calls};
use super::{Store, StoreResult, with_conn};
use crate::domain::{
    Call, CallId, CallParticipant, CallState, ConnectionId, EndReason, Error, Media, PartyRole, PartyStatus, PartyStep,
    RoomId, Timestamp, UserId, call,
};

/// A call with the device each joined party is on.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call: Call,
    pub devices: HashMap<UserId, ConnectionId>,
}

/// What a party leaving did to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Others are still in it.
    Left,
    Ended(EndReason),
}

/// Parties whose ringing or presence ran out, found by a sweep.
#[derive(Debug, Clone)]
pub struct Expired {
    pub call: CallId,
    pub users: Vec<UserId>,
    /// The whole call ended (with this reason), not only these parties' part.
    pub ended: Option<EndReason>,
}

// Steps shared by the transitions, written as macros so that, like `with_conn!` bodies,
// they compile for both connection types without generic diesel bounds.

/// Appends to the call log.
macro_rules! log {
    ($conn:expr, $sid:expr, $now:expr, $user:expr, $event:expr) => {
        insert_into(call_events::table)
            .values((
                call_events::call_id.eq($sid),
                call_events::at.eq($now),
                call_events::user_id.eq($user.map(|u: &UserId| u.to_string())),
                call_events::event.eq($event),
            ))
            .execute($conn)
            .await?
    };
}

/// Frees the user's line if it is this call's.
macro_rules! release {
    ($conn:expr, $sid:expr, $user:expr) => {
        diesel::delete(
            call_lines::table.filter(call_lines::user_id.eq($user.as_str())).filter(call_lines::call_id.eq($sid)),
        )
        .execute($conn)
        .await?
    };
}

/// Ends the call for `$reason` (each party as `PartyStatus::on_call_end` says) and frees
/// every line. A call already ended is left as it was.
macro_rules! finish {
    ($conn:expr, $sid:expr, $now:expr, $reason:expr) => {{
        let reason: EndReason = $reason;
        let ended = CallState::Ended.as_str();
        let closed = diesel::update(calls::table.find($sid).filter(calls::state.ne(ended)))
            .set((calls::state.eq(ended), calls::ended_at.eq($now), calls::end_reason.eq(reason.as_str())))
            .execute($conn)
            .await?;
        if closed == 1 {
            for status in [PartyStatus::Ringing, PartyStatus::Joined] {
                let Some(next) = status.on_call_end(reason) else { continue };
                diesel::update(
                    call_participants::table
                        .filter(call_participants::call_id.eq($sid))
                        .filter(call_participants::status.eq(status.as_str())),
                )
                .set((call_participants::status.eq(next.as_str()), call_participants::left_at.eq($now)))
                .execute($conn)
                .await?;
            }
            diesel::delete(call_lines::table.filter(call_lines::call_id.eq($sid))).execute($conn).await?;
            log!($conn, $sid, $now, None::<&UserId>, format!("ended:{}", reason.as_str()));
        }
    }};
}

/// Ends the call if `$rule` (one of `domain::call`'s rules, given the call's state and its
/// parties' statuses) says so. Evaluates to the reason it ended with, if it did.
macro_rules! settle {
    ($conn:expr, $sid:expr, $now:expr, $rule:expr) => {{
        let state: CallState = calls::table.find($sid).select(calls::state).first($conn).await?;
        let parties: Vec<PartyStatus> = call_participants::table
            .filter(call_participants::call_id.eq($sid))
            .select(call_participants::status)
            .load($conn)
            .await?;
        let ended: Option<EndReason> = ($rule)(state, parties);
        if let Some(reason) = ended {
            finish!($conn, $sid, $now, reason);
        }
        ended
    }};
}

/// Takes the call's row lock (a write that changes nothing, as SQLite has no `FOR UPDATE`):
/// every transition of a call takes it first, so two parties leaving at once each see the
/// other's move and the last one ends the call (each holding only its own party's row, both
/// saw the other still in, and the call went on with nobody in it).
macro_rules! lock_call {
    ($conn:expr, $sid:expr) => {
        diesel::update(calls::table.find($sid)).set(calls::state.eq(calls::state)).execute($conn).await?
    };
}

/// Moves the party by `$step` (see `PartyStep::moves`), setting `$set` as well, under the
/// call's lock; evaluates to the rows changed: 0 when the party was not in the status the step
/// needs.
macro_rules! step {
    ($conn:expr, $sid:expr, $user:expr, $step:expr, $set:expr) => {{
        lock_call!($conn, $sid);
        let (from, to) = PartyStep::moves($step);
        diesel::update(
            call_participants::table.find(($sid, $user.as_str())).filter(call_participants::status.eq(from.as_str())),
        )
        .set((call_participants::status.eq(to.as_str()), $set))
        .execute($conn)
        .await?
    }};
}

type Tx = diesel::result::Error;

/// The statuses of parties still in a call (see `PartyStatus::in_call`), as stored.
pub(super) fn in_call() -> Vec<&'static str> {
    use strum::IntoEnumIterator;
    PartyStatus::iter().filter(|status| status.in_call()).map(PartyStatus::as_str).collect()
}

impl Store {
    /// Starts a call: the caller's line, then a line for each callee who is free; callees
    /// already on a line are `busy`. With nobody to ring, the call ends at once as busy.
    /// `Err(Busy)` if the caller is already in a call.
    pub async fn start_call(
        &self,
        room: RoomId,
        caller: &UserId,
        caller_device: ConnectionId,
        callees: &[UserId],
        media: Media,
        ring_deadline: Timestamp,
    ) -> StoreResult<Result<CallId, Error>> {
        let id = CallId::new();
        let (sid, now) = (id.to_string(), Timestamp::now().millis());
        let outcome = with_conn!(self, copied(callees, caller), |conn| {
            conn.transaction::<_, Tx, _>(async |conn| {
                // Lines are taken in user-id order, so that two calls taking the same lines
                // (two users calling each other at once) cannot deadlock.
                let mut everyone: Vec<&UserId> = callees.iter().chain([caller]).collect();
                everyone.sort();
                let mut free_lines = std::collections::HashSet::new();
                for user in everyone {
                    let free = insert_into(call_lines::table)
                        .values((call_lines::user_id.eq(user.as_str()), call_lines::call_id.eq(&sid)))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if free == 1 {
                        free_lines.insert(user.clone());
                    } else if user == caller {
                        return Err(diesel::result::Error::RollbackTransaction);
                    }
                }
                insert_into(calls::table)
                    .values((
                        calls::id.eq(&sid),
                        calls::room_id.eq(room.to_string()),
                        calls::caller_id.eq(caller.as_str()),
                        calls::media.eq(media.as_str()),
                        calls::state.eq(CallState::Ringing.as_str()),
                        calls::created_at.eq(now),
                        calls::ring_deadline.eq(ring_deadline.millis()),
                    ))
                    .execute(conn)
                    .await?;
                insert_into(call_participants::table)
                    .values((
                        call_participants::call_id.eq(&sid),
                        call_participants::user_id.eq(caller.as_str()),
                        call_participants::role.eq(PartyRole::Caller.as_str()),
                        call_participants::status.eq(PartyStatus::Joined.as_str()),
                        call_participants::device.eq(caller_device.to_string()),
                        call_participants::joined_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                log!(conn, &sid, now, Some(caller), "started");
                let mut parties = vec![PartyStatus::Joined];
                for callee in callees {
                    let status = if free_lines.contains(callee) { PartyStatus::Ringing } else { PartyStatus::Busy };
                    parties.push(status);
                    let role = PartyRole::Callee.as_str();
                    let party =
                        (call_participants::user_id.eq(callee.as_str()), call_participants::status.eq(status.as_str()));
                    let values = (call_participants::call_id.eq(&sid), call_participants::role.eq(role), party);
                    insert_into(call_participants::table).values(values).execute(conn).await?;
                    log!(conn, &sid, now, Some(callee), status.as_str());
                }
                // With nobody free to ring, the call ends at once as busy.
                if let Some(reason) = call::ending(CallState::Ringing, parties, EndReason::Busy, EndReason::Busy) {
                    finish!(conn, &sid, now, reason);
                }
                Ok(Ok(()))
            })
            .await
            // The caller's own line was taken: nothing of this call is kept.
            .or_else(|e| match e {
                diesel::result::Error::RollbackTransaction => Ok(Err(Error::Busy("you are already in a call".into()))),
                e => Err(e),
            })?
        });
        Ok(outcome.map(|()| id))
    }

    pub async fn call(&self, id: CallId) -> StoreResult<Option<CallRecord>> {
        let sid = id.to_string();
        let (row, parties) = with_conn!(self, |conn| {
            let row: Option<CallRow> =
                calls::table.find(&sid).select(CallRow::as_select()).first(conn).await.optional()?;
            let parties: Vec<PartyRow> = call_participants::table
                .filter(call_participants::call_id.eq(&sid))
                .order((call_participants::role.asc(), call_participants::user_id.asc()))
                .select(PartyRow::as_select())
                .load(conn)
                .await?;
            (row, parties)
        });
        Ok(row.map(|row| record(row, parties)))
    }

    /// The room's calls, newest first.
    pub async fn call_history(&self, room: RoomId, limit: i64) -> StoreResult<Vec<Call>> {
        let ids: Vec<String> = with_conn!(self, |conn| {
            calls::table
                .filter(calls::room_id.eq(room.to_string()))
                .order(calls::created_at.desc())
                .limit(limit)
                .select(calls::id)
                .load(conn)
                .await?
        });
        let mut history = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.call(CallId::parse(&id).map_err(|_| diesel::result::Error::NotFound)?).await? {
                history.push(record.call);
            }
        }
        Ok(history)
    }

    /// A ringing party answers on `device`; the call becomes active.
    pub async fn accept_call(&self, id: CallId, user: &UserId, device: ConnectionId) -> StoreResult<Result<(), Error>> {
        let (sid, now) = (id.to_string(), Timestamp::now().millis());
        let outcome = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, Tx, _>(async |conn| {
                let joined = (call_participants::device.eq(device.to_string()), call_participants::joined_at.eq(now));
                if step!(conn, &sid, user, PartyStep::Accept, joined) == 0 {
                    return Ok(Err(Error::Conflict("this call is not ringing for you".into())));
                }
                diesel::update(calls::table.find(&sid).filter(calls::state.eq(CallState::Ringing.as_str())))
                    .set((calls::state.eq(CallState::Active.as_str()), calls::answered_at.eq(now)))
                    .execute(conn)
                    .await?;
                log!(conn, &sid, now, Some(user), "accepted");
                Ok(Ok(()))
            })
            .await?
        });
        Ok(outcome)
    }

    /// A ringing party declines. When nobody is left ringing and no callee ever joined, the
    /// call ends as declined.
    pub async fn decline_call(&self, id: CallId, user: &UserId) -> StoreResult<Result<Departure, Error>> {
        let (sid, now) = (id.to_string(), Timestamp::now().millis());
        let outcome = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, Tx, _>(async |conn| {
                if step!(conn, &sid, user, PartyStep::Decline, call_participants::left_at.eq(now)) == 0 {
                    return Ok(Err(Error::Conflict("this call is not ringing for you".into())));
                }
                release!(conn, &sid, user);
                log!(conn, &sid, now, Some(user), "declined");
                let rule = |state, parties| call::ending(state, parties, EndReason::Declined, EndReason::Hangup);
                Ok(Ok(match settle!(conn, &sid, now, rule) {
                    Some(reason) => Departure::Ended(reason),
                    None => Departure::Left,
                }))
            })
            .await?
        });
        Ok(outcome)
    }

    /// A joined party hangs up. The caller hanging up while nobody answered cancels the
    /// call; otherwise the call ends when at most one joined party remains.
    pub async fn leave_call(
        &self,
        id: CallId,
        user: &UserId,
        reason: EndReason,
    ) -> StoreResult<Result<Departure, Error>> {
        let (sid, now) = (id.to_string(), Timestamp::now().millis());
        let outcome = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, Tx, _>(async |conn| {
                if step!(conn, &sid, user, PartyStep::HangUp, call_participants::left_at.eq(now)) == 0 {
                    return Ok(Err(Error::Conflict("you are not in this call".into())));
                }
                release!(conn, &sid, user);
                log!(conn, &sid, now, Some(user), "left");
                let ended = settle!(conn, &sid, now, |state, parties| call::ending_on_leave(state, parties, reason));
                Ok(Ok(match ended {
                    Some(reason) => Departure::Ended(reason),
                    None => Departure::Left,
                }))
            })
            .await?
        });
        Ok(outcome)
    }

    /// The joined party's signals come from `device`: it becomes (or stays) the connection
    /// their call is on, so a reconnected client takes its call back by signalling.
    pub async fn take_device(&self, id: CallId, user: &UserId, device: ConnectionId) -> StoreResult<()> {
        let sid = id.to_string();
        with_conn!(self, copied(user), |conn| {
            diesel::update(
                call_participants::table
                    .find((&sid, user.as_str()))
                    .filter(call_participants::status.eq(PartyStatus::Joined.as_str())),
            )
            .set(call_participants::device.eq(device.to_string()))
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// A connection closed: calls on it fall back to all of the party's connections until
    /// one of them signals.
    pub async fn release_device(&self, user: &UserId, device: ConnectionId) -> StoreResult<()> {
        with_conn!(self, copied(user), |conn| {
            diesel::update(
                call_participants::table
                    .filter(call_participants::user_id.eq(user.as_str()))
                    .filter(call_participants::status.eq(PartyStatus::Joined.as_str()))
                    .filter(call_participants::device.eq(device.to_string())),
            )
            .set(call_participants::device.eq(None::<String>))
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Invitees still ringing past the deadline have missed the call; a call nobody
    /// answered ends as missed. Safe to run on every node at once.
    pub async fn expire_ringing(&self, now: Timestamp) -> StoreResult<Vec<Expired>> {
        let due: Vec<String> = with_conn!(self, |conn| {
            calls::table
                .filter(calls::state.ne(CallState::Ended.as_str()))
                .filter(calls::ring_deadline.le(now.millis()))
                .inner_join(call_participants::table)
                .filter(call_participants::status.eq(PartyStatus::Ringing.as_str()))
                .select(calls::id)
                .distinct()
                .load(conn)
                .await?
        });
        let mut expired = Vec::new();
        for sid in due {
            // One call failing (a deadlock with a party's own move, say) stops no other: what
            // committed is announced, and the next sweep takes the rest.
            match self.expire_ringing_in(&sid, now).await {
                Ok(Some(call)) => expired.push(call),
                Ok(None) => {}
                Err(e) => tracing::warn!(call = %sid, error = %e, "could not expire a call's ringing"),
            }
        }
        Ok(expired)
    }

    /// [`Self::expire_ringing`] for one call.
    async fn expire_ringing_in(&self, sid: &str, now: Timestamp) -> StoreResult<Option<Expired>> {
        let call = CallId::parse(sid).map_err(|_| diesel::result::Error::NotFound)?;
        let sid = sid.to_owned();
        let (users, ended) = with_conn!(self, |conn| {
            conn.transaction::<_, Tx, _>(async |conn| {
                lock_call!(conn, &sid);
                let (ringing, missed) = PartyStep::RingTimeout.moves();
                let users: Vec<UserId> = diesel::update(
                    call_participants::table
                        .filter(call_participants::call_id.eq(&sid))
                        .filter(call_participants::status.eq(ringing.as_str())),
                )
                .set((call_participants::status.eq(missed.as_str()), call_participants::left_at.eq(now.millis())))
                .returning(call_participants::user_id)
                .get_results(conn)
                .await?;
                for user in &users {
                    release!(conn, &sid, user);
                    log!(conn, &sid, now.millis(), Some(user), "missed");
                }
                let ended = if users.is_empty() {
                    None
                } else {
                    let rule = |state, parties| call::ending(state, parties, EndReason::Missed, EndReason::Hangup);
                    settle!(conn, &sid, now.millis(), rule)
                };
                Ok((users, ended))
            })
            .await?
        });
        Ok((!users.is_empty()).then_some(Expired { call, users, ended }))
    }

    /// The parties of calls still going who have been away since before `cutoff`.
    pub async fn away_parties(&self, cutoff: Timestamp) -> StoreResult<Vec<(CallId, UserId)>> {
        let due: Vec<(String, UserId)> = with_conn!(self, |conn| {
            call_participants::table
                .filter(call_participants::status.eq_any(in_call()))
                .filter(call_participants::away_since.le(cutoff.millis()))
                .select((call_participants::call_id, call_participants::user_id))
                .load(conn)
                .await?
        });
        due.into_iter()
            .map(|(sid, user)| Ok((CallId::parse(&sid).map_err(|_| diesel::result::Error::NotFound)?, user)))
            .collect()
    }

    /// Drops an away party from the call (`disconnected`; a call left with at most one party
    /// ends); whether it did. Safe on every node at once: it reuses the hang-up path, and a
    /// refusal means another node got there first.
    pub async fn drop_away(&self, id: CallId, user: &UserId) -> StoreResult<bool> {
        let key = (id.to_string(), user.to_string());
        let status: Option<PartyStatus> = with_conn!(self, |conn| {
            call_participants::table
                .find((&key.0, &key.1))
                .select(call_participants::status)
                .first(conn)
                .await
                .optional()?
        });
        let done = match status {
            Some(PartyStatus::Ringing) => self.decline_call(id, user).await?.is_ok(),
            Some(PartyStatus::Joined) => self.leave_call(id, user, EndReason::Disconnected).await?.is_ok(),
            _ => false,
        };
        Ok(done)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = calls)]
struct CallRow {
    id: CallId,
    room_id: RoomId,
    caller_id: UserId,
    media: Media,
    state: CallState,
    created_at: i64,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    end_reason: Option<EndReason>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = call_participants)]
struct PartyRow {
    user_id: UserId,
    role: PartyRole,
    status: PartyStatus,
    device: Option<ConnectionId>,
}

fn record(row: CallRow, parties: Vec<PartyRow>) -> CallRecord {
    let devices = parties.iter().filter_map(|p| Some((p.user_id.clone(), p.device?))).collect();
    let call = Call {
        id: row.id,
        room_id: row.room_id,
        caller_id: row.caller_id,
        callee_ids: parties.iter().filter(|p| p.role == PartyRole::Callee).map(|p| p.user_id.clone()).collect(),
        media: row.media,
        state: row.state,
        created_at: Timestamp::from_millis(row.created_at),
        answered_at: row.answered_at.map(Timestamp::from_millis),
        ended_at: row.ended_at.map(Timestamp::from_millis),
        end_reason: row.end_reason,
        duration_secs: match (row.answered_at, row.ended_at) {
            (Some(answered), Some(ended)) => Some((ended - answered) / 1000),
            _ => None,
        },
        participants: parties.into_iter().map(|p| CallParticipant { user_id: p.user_id, status: p.status }).collect(),
    };
    CallRecord { call, devices }
}
