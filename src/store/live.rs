//! Live sessions: the session row, its viewers (one row per user, so counts are exact across
//! nodes and connections), raised hands and comments.
//!
//! Joining and ending take the session row's write lock (`UPDATE … RETURNING`, which works
//! on both backends), so a join racing an end on another node either lands before the end or
//! sees the session ended.

use std::collections::HashMap;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{live_comments, live_hands, live_sessions, live_viewers};
use super::{Store, StoreResult, with_conn};
use crate::domain::{
    CommentText, LiveComment, LiveEndReason, LiveSession, LiveState, LiveTitle, RaisedHand, SessionId, Timestamp,
    UserId,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = live_sessions)]
struct SessionRow {
    #[diesel(serialize_as = String)]
    id: SessionId,
    #[diesel(serialize_as = String)]
    host_id: UserId,
    title: String,
    #[diesel(serialize_as = String)]
    state: LiveState,
    created_at: i64,
    ended_at: Option<i64>,
    /// Set only when the session ends (an update), never at creation.
    #[diesel(skip_insertion)]
    end_reason: Option<LiveEndReason>,
}

impl SessionRow {
    fn into_session(self, viewers: i64) -> LiveSession {
        LiveSession {
            id: self.id,
            host_id: self.host_id,
            title: self.title,
            state: self.state,
            viewers,
            created_at: Timestamp::from_millis(self.created_at),
            ended_at: self.ended_at.map(Timestamp::from_millis),
            end_reason: self.end_reason,
        }
    }

    fn is_live(&self) -> bool {
        self.state == LiveState::Live
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = live_comments)]
struct CommentRow {
    id: String,
    #[diesel(serialize_as = String)]
    session_id: SessionId,
    #[diesel(serialize_as = String)]
    user_id: UserId,
    text: String,
    created_at: i64,
}

impl From<CommentRow> for LiveComment {
    fn from(row: CommentRow) -> Self {
        LiveComment {
            id: row.id,
            session_id: row.session_id,
            user_id: row.user_id,
            text: row.text,
            at: Timestamp::from_millis(row.created_at),
        }
    }
}

/// Reads the session row under its write lock (a no-op update), inside a transaction; a
/// macro so that one text compiles for both connection types.
macro_rules! lock_session {
    ($conn:expr, $id:expr) => {
        diesel::update(live_sessions::table.find($id))
            .set(live_sessions::state.eq(live_sessions::state))
            .returning(SessionRow::as_returning())
            .get_result::<SessionRow>($conn)
            .await
            .optional()?
    };
}

/// What a join did.
#[derive(Debug, Clone)]
pub struct LiveJoin {
    pub session: LiveSession,
    /// The user was not counted before (false for the host, a repeat join, or an ended session).
    pub joined: bool,
}

impl Store {
    pub async fn create_live_session(&self, host: &UserId, title: &LiveTitle) -> StoreResult<LiveSession> {
        let row = SessionRow {
            id: SessionId::new(),
            host_id: host.clone(),
            title: title.as_str().to_owned(),
            state: LiveState::Live,
            created_at: Timestamp::now().millis(),
            ended_at: None,
            end_reason: None,
        };
        let inserted = row.clone();
        with_conn!(self, |conn| {
            insert_into(live_sessions::table).values(inserted).execute(conn).await?;
        });
        Ok(row.into_session(0))
    }

    /// The session with its current viewer count, or `None` if unknown.
    pub async fn live_session(&self, session: SessionId) -> StoreResult<Option<LiveSession>> {
        let id = session.to_string();
        let found = with_conn!(self, |conn| {
            let row: Option<SessionRow> =
                live_sessions::table.find(&id).select(SessionRow::as_select()).first(conn).await.optional()?;
            match row {
                None => None,
                Some(row) => {
                    let viewers: i64 =
                        live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?;
                    Some(row.into_session(viewers))
                }
            }
        });
        Ok(found)
    }

    /// Counts `user` as a viewer of a live session (once, however often they join). The
    /// host is never counted and an ended session is left as it is; `None` if unknown.
    pub async fn join_live(&self, session: SessionId, user: &UserId) -> StoreResult<Option<LiveJoin>> {
        let id = session.to_string();
        let now = Timestamp::now().millis();
        let joined = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(row) = lock_session!(conn, &id) else { return Ok(None) };
                let mut joined = false;
                if row.is_live() && row.host_id != *user {
                    joined = insert_into(live_viewers::table)
                        .values((
                            live_viewers::session_id.eq(&id),
                            live_viewers::user_id.eq(user.as_str()),
                            live_viewers::joined_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?
                        == 1;
                    if joined {
                        diesel::update(live_sessions::table.find(&id))
                            .set(live_sessions::viewers.eq(live_sessions::viewers + 1))
                            .execute(conn)
                            .await?;
                    }
                }
                let viewers: i64 = live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?;
                Ok(Some(LiveJoin { session: row.into_session(viewers), joined }))
            })
            .await?
        });
        Ok(joined)
    }

    /// Stops counting `user` as a viewer and drops their raised hand. Nothing changes once
    /// the session has ended. The session and whether the user was counted; `None` if unknown.
    pub async fn leave_live(&self, session: SessionId, user: &UserId) -> StoreResult<Option<(LiveSession, bool)>> {
        let id = session.to_string();
        let left = with_conn!(self, copied(user), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(row) = lock_session!(conn, &id) else { return Ok(None) };
                let mut left = false;
                if row.is_live() {
                    left = diesel::delete(live_viewers::table.find((&id, user.as_str()))).execute(conn).await? == 1;
                    if left {
                        diesel::update(live_sessions::table.find(&id))
                            .set(live_sessions::viewers.eq(live_sessions::viewers - 1))
                            .execute(conn)
                            .await?;
                    }
                    diesel::delete(live_hands::table.find((&id, user.as_str()))).execute(conn).await?;
                }
                let viewers: i64 = live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?;
                Ok(Some((row.into_session(viewers), left)))
            })
            .await?
        });
        Ok(left)
    }

    /// Ends a live session. The session and whether this call ended it (false when it had
    /// already ended: exactly one of several concurrent enders on any nodes gets true).
    pub async fn end_live(
        &self,
        session: SessionId,
        reason: LiveEndReason,
    ) -> StoreResult<Option<(LiveSession, bool)>> {
        let id = session.to_string();
        let now = Timestamp::now().millis();
        let ended = with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let ended: Option<SessionRow> = diesel::update(
                    live_sessions::table.find(&id).filter(live_sessions::state.eq(LiveState::Live.as_str())),
                )
                .set((
                    live_sessions::state.eq(LiveState::Ended.as_str()),
                    live_sessions::ended_at.eq(now),
                    live_sessions::end_reason.eq(reason.as_str()),
                ))
                .returning(SessionRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                let changed = ended.is_some();
                let row = match ended {
                    Some(row) => row,
                    None => {
                        let found = live_sessions::table
                            .find(&id)
                            .select(SessionRow::as_select())
                            .first(conn)
                            .await
                            .optional()?;
                        let Some(row) = found else { return Ok(None) };
                        row
                    }
                };
                diesel::delete(live_hands::table.filter(live_hands::session_id.eq(&id))).execute(conn).await?;
                let viewers: i64 = live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?;
                Ok(Some((row.into_session(viewers), changed)))
            })
            .await?
        });
        Ok(ended)
    }

    /// True if `user` is counted as a viewer of the session.
    pub async fn is_live_viewer(&self, session: SessionId, user: &UserId) -> StoreResult<bool> {
        let id = session.to_string();
        let found: i64 = with_conn!(self, copied(user), |conn| {
            live_viewers::table
                .filter(live_viewers::session_id.eq(&id))
                .filter(live_viewers::user_id.eq(user.as_str()))
                .count()
                .get_result(conn)
                .await?
        });
        Ok(found > 0)
    }

    pub async fn live_viewer_count(&self, session: SessionId) -> StoreResult<i64> {
        let id = session.to_string();
        Ok(with_conn!(self, |conn| {
            live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?
        }))
    }

    /// The live sessions `user` is in, with `true` for those they host: what their node
    /// listens to for them.
    pub async fn live_sessions_of(&self, user: &UserId) -> StoreResult<Vec<(SessionId, bool)>> {
        let live = LiveState::Live.as_str();
        let (hosted, watched): (Vec<SessionId>, Vec<SessionId>) = with_conn!(self, copied(user), |conn| {
            let me = user.as_str();
            let hosted = live_sessions::table
                .filter(live_sessions::host_id.eq(me))
                .filter(live_sessions::state.eq(live))
                .select(live_sessions::id)
                .load(conn)
                .await?;
            let watched = live_viewers::table
                .inner_join(live_sessions::table)
                .filter(live_viewers::user_id.eq(me))
                .filter(live_sessions::state.eq(live))
                .select(live_viewers::session_id)
                .load(conn)
                .await?;
            (hosted, watched)
        });
        let hosted = hosted.into_iter().map(|id| (id, true));
        Ok(hosted.chain(watched.into_iter().map(|id| (id, false))).collect())
    }

    /// `live_sessions_of` for a batch of users (one statement for the sessions they host,
    /// one for those they watch); a user in none is absent.
    pub async fn live_sessions_of_many(
        &self,
        users: &[UserId],
    ) -> StoreResult<HashMap<UserId, Vec<(SessionId, bool)>>> {
        let keys: Vec<String> = users.iter().map(UserId::to_string).collect();
        let live = LiveState::Live.as_str();
        // (user, session) pairs.
        type Pairs = Vec<(UserId, SessionId)>;
        let (hosted, watched): (Pairs, Pairs) = with_conn!(self, |conn| {
            let hosted = live_sessions::table
                .filter(live_sessions::host_id.eq_any(&keys))
                .filter(live_sessions::state.eq(live))
                .select((live_sessions::host_id, live_sessions::id))
                .load(conn)
                .await?;
            let watched = live_viewers::table
                .inner_join(live_sessions::table)
                .filter(live_viewers::user_id.eq_any(&keys))
                .filter(live_sessions::state.eq(live))
                .select((live_viewers::user_id, live_viewers::session_id))
                .load(conn)
                .await?;
            (hosted, watched)
        });
        let mut sessions: HashMap<UserId, Vec<(SessionId, bool)>> = HashMap::new();
        let hosted = hosted.into_iter().map(|(user, id)| (user, id, true));
        for (user, id, hosting) in hosted.chain(watched.into_iter().map(|(user, id)| (user, id, false))) {
            sessions.entry(user).or_default().push((id, hosting));
        }
        Ok(sessions)
    }

    /// Every live session and its host (for the sweep that ends sessions of hosts gone for good).
    pub async fn live_hosts(&self) -> StoreResult<Vec<(SessionId, UserId)>> {
        Ok(with_conn!(self, |conn| {
            live_sessions::table
                .filter(live_sessions::state.eq(LiveState::Live.as_str()))
                .select((live_sessions::id, live_sessions::host_id))
                .load(conn)
                .await?
        }))
    }

    /// Raises `user`'s hand; false if it was already raised.
    pub async fn raise_hand(&self, session: SessionId, user: &UserId) -> StoreResult<bool> {
        let id = session.to_string();
        let now = Timestamp::now().millis();
        let inserted = with_conn!(self, copied(user), |conn| {
            insert_into(live_hands::table)
                .values((
                    live_hands::session_id.eq(&id),
                    live_hands::user_id.eq(user.as_str()),
                    live_hands::raised_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?
        });
        Ok(inserted == 1)
    }

    /// Takes `user`'s hand out of the queue (lowered or accepted); false if it was not raised.
    pub async fn take_hand(&self, session: SessionId, user: &UserId) -> StoreResult<bool> {
        let id = session.to_string();
        let removed = with_conn!(self, copied(user), |conn| {
            diesel::delete(live_hands::table.find((&id, user.as_str()))).execute(conn).await?
        });
        Ok(removed == 1)
    }

    /// Raised hands, first raised first.
    pub async fn raised_hands(&self, session: SessionId) -> StoreResult<Vec<RaisedHand>> {
        let id = session.to_string();
        let hands: Vec<(UserId, i64)> = with_conn!(self, |conn| {
            live_hands::table
                .filter(live_hands::session_id.eq(&id))
                .order((live_hands::raised_at.asc(), live_hands::user_id.asc()))
                .select((live_hands::user_id, live_hands::raised_at))
                .load(conn)
                .await?
        });
        Ok(hands
            .into_iter()
            .map(|(user, at)| RaisedHand { user_id: user, raised_at: Timestamp::from_millis(at) })
            .collect())
    }

    pub async fn add_live_comment(
        &self,
        session: SessionId,
        user: &UserId,
        text: &CommentText,
    ) -> StoreResult<LiveComment> {
        let row = CommentRow {
            id: Uuid::now_v7().to_string(),
            session_id: session,
            user_id: user.clone(),
            text: text.as_str().to_owned(),
            created_at: Timestamp::now().millis(),
        };
        let inserted = row.clone();
        with_conn!(self, |conn| {
            insert_into(live_comments::table).values(inserted).execute(conn).await?;
        });
        Ok(row.into())
    }

    /// The `limit` newest comments before the comment id `before` (or the newest), in
    /// ascending order, and whether older ones exist.
    pub async fn live_comments(
        &self,
        session: SessionId,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<(Vec<LiveComment>, bool)> {
        let id = session.to_string();
        let before = before.map(str::to_owned);
        let mut rows: Vec<CommentRow> = with_conn!(self, |conn| {
            let mut query = live_comments::table
                .filter(live_comments::session_id.eq(&id))
                .order(live_comments::id.desc())
                .limit(limit + 1)
                .select(CommentRow::as_select())
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(live_comments::id.lt(before));
            }
            query.load(conn).await?
        });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((rows.into_iter().map(LiveComment::from).collect(), has_more))
    }
}
