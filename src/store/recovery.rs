//! Socket.IO sessions that a client may recover: a pid bound to one user, the baseline of
//! its user's rooms' seqs, and until when it may be recovered. At most
//! [`SESSIONS_PER_USER`] per user; expired ones are deleted as new ones are opened.

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::{room_members, rooms, socketio_sessions};
use super::{Store, StoreError, StoreResult, with_conn};
use crate::domain::{RoomId, Timestamp, UserId};

/// Recoverable sessions kept per user; opening another deletes the oldest.
pub const SESSIONS_PER_USER: i64 = 8;

/// One of a user's rooms, where it stands.
#[derive(Debug, Clone, Copy)]
pub struct RoomPosition {
    pub room: RoomId,
    pub last_seq: i64,
    /// The user sees nothing at or below it (`room.clear`).
    pub cleared_seq: i64,
}

impl Store {
    /// Each room of `user` with its last seq and the user's clear mark.
    pub async fn room_positions(&self, user: &UserId) -> StoreResult<Vec<RoomPosition>> {
        let rows: Vec<(String, i64, i64)> = with_conn!(self, copied(user), |conn| {
            room_members::table
                .inner_join(rooms::table)
                .filter(room_members::user_id.eq(user.as_str()))
                .select((room_members::room_id, rooms::last_seq, room_members::cleared_seq))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(room, last_seq, cleared_seq)| {
                let room = RoomId::parse(&room).map_err(|_| StoreError::Value(format!("stored room id `{room}`")))?;
                Ok(RoomPosition { room, last_seq, cleared_seq })
            })
            .collect()
    }

    /// Stores a new session held by a connection; drops expired sessions and the user's
    /// oldest beyond [`SESSIONS_PER_USER`].
    pub async fn open_socketio_session(&self, pid: &str, user: &UserId, baseline: &str) -> StoreResult<()> {
        let now = Timestamp::now().millis();
        with_conn!(self, copied(pid, user, baseline), |conn| {
            diesel::delete(socketio_sessions::table.filter(socketio_sessions::expires_at.lt(now)))
                .execute(conn)
                .await?;
            let keep: Vec<String> = socketio_sessions::table
                .filter(socketio_sessions::user_id.eq(user.as_str()))
                .order(socketio_sessions::created_at.desc())
                .select(socketio_sessions::pid)
                .limit(SESSIONS_PER_USER - 1)
                .load(conn)
                .await?;
            diesel::delete(
                socketio_sessions::table
                    .filter(socketio_sessions::user_id.eq(user.as_str()))
                    .filter(socketio_sessions::pid.ne_all(keep)),
            )
            .execute(conn)
            .await?;
            insert_into(socketio_sessions::table)
                .values((
                    socketio_sessions::pid.eq(pid),
                    socketio_sessions::user_id.eq(user.as_str()),
                    socketio_sessions::baseline.eq(baseline),
                    socketio_sessions::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Takes `user`'s session `pid` for a connection, if it is recoverable now (let go and
    /// not expired): in one statement, so two connections never both resume one session and
    /// a session a connection holds is never resumed. Its baseline.
    pub async fn claim_socketio_session(&self, pid: &str, user: &UserId) -> StoreResult<Option<String>> {
        let now = Timestamp::now().millis();
        Ok(with_conn!(self, copied(pid, user), |conn| {
            diesel::update(
                socketio_sessions::table
                    .find(pid)
                    .filter(socketio_sessions::user_id.eq(user.as_str()))
                    .filter(socketio_sessions::expires_at.gt(now)),
            )
            .set(socketio_sessions::expires_at.eq(None::<i64>))
            .returning(socketio_sessions::baseline)
            .get_result(conn)
            .await
            .optional()?
        }))
    }

    /// A connection holds the session (`None`) or let it go, recoverable until `expires_at`.
    pub async fn set_socketio_session_expiry(&self, pid: &str, expires_at: Option<Timestamp>) -> StoreResult<()> {
        let expires_at = expires_at.map(|at| at.millis());
        with_conn!(self, copied(pid), |conn| {
            diesel::update(socketio_sessions::table.find(pid))
                .set(socketio_sessions::expires_at.eq(expires_at))
                .execute(conn)
                .await?;
        });
        Ok(())
    }
}
