//! Live sessions: the session row, its viewers (one row per user, so counts are exact across
//! nodes and connections); raised hands and comments are in `live_floor`.
//!
//! Joining (a batch of users in one transaction) and ending take the session row's write
//! lock (`UPDATE … RETURNING`, which works on both backends), so a join racing an end on
//! another node either lands before the end or sees the session ended.

use std::collections::{BTreeSet, HashMap, HashSet};

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::prepared::kept;
use super::schema::{blocks, live_hands, live_sessions, live_viewers, users};
use super::{SqliteAsync, Store, StoreResult, with_conn};
use crate::domain::{LiveEndReason, LiveSession, LiveState, LiveTitle, SessionId, Timestamp, UserId};

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

/// What a batch of joins did.
#[derive(Debug, Clone)]
pub struct LiveJoins {
    pub session: LiveSession,
    /// The users this call counted: not the host, nor anyone counted before, nor anyone once
    /// the session has ended, nor anyone refused.
    pub joined: HashSet<UserId>,
    /// The users refused for a block between them and the host, either way.
    pub blocked: HashSet<UserId>,
}

/// Adding a batch of viewers, as each backend does it best.
trait AddViewers {
    /// Inserts a viewer row for each of `users` (distinct, in id order) that has none, and adds
    /// their number to the session's count; the users added and the count. Run under the
    /// session row's lock, in the transaction that took it.
    async fn add_viewers(&mut self, session: &str, users: &[String], now: i64) -> QueryResult<(Vec<String>, i64)>;
}

/// One statement of fixed text, kept prepared (the users travel as one array): one round
/// trip under the lock.
impl AddViewers for AsyncPgConnection {
    async fn add_viewers(&mut self, session: &str, users: &[String], now: i64) -> QueryResult<(Vec<String>, i64)> {
        use diesel::sql_types::{Array, BigInt, Text};
        enum AddLiveViewers {}
        #[derive(QueryableByName)]
        struct Added {
            #[diesel(sql_type = Array<Text>)]
            added: Vec<String>,
            #[diesel(sql_type = BigInt)]
            viewers: i64,
        }
        let query = diesel::sql_query(
            "WITH added AS (INSERT INTO live_viewers (session_id, user_id, joined_at) \
               SELECT $1, u.id, $2 FROM unnest($3::text[]) AS u(id) ORDER BY u.id \
               ON CONFLICT DO NOTHING RETURNING user_id), \
             bumped AS (UPDATE live_sessions SET viewers = viewers + (SELECT count(*) FROM added) \
               WHERE id = $1 RETURNING viewers) \
             SELECT ARRAY(SELECT user_id FROM added) AS added, (SELECT viewers FROM bumped) AS viewers",
        )
        .bind::<Text, _>(session)
        .bind::<BigInt, _>(now)
        .bind::<Array<Text>, _>(users);
        let added: Added = kept::<AddLiveViewers, _>(query).get_result(self).await?;
        Ok((added.added, added.viewers))
    }
}

/// One statement per row, then the count: SQLite runs in-process, so a statement costs no
/// round trip (and diesel-async has no multi-row insert for it).
impl AddViewers for SqliteAsync {
    async fn add_viewers(&mut self, session: &str, users: &[String], now: i64) -> QueryResult<(Vec<String>, i64)> {
        let mut added = Vec::new();
        for user in users {
            let inserted = insert_into(live_viewers::table)
                .values((
                    live_viewers::session_id.eq(session),
                    live_viewers::user_id.eq(user.as_str()),
                    live_viewers::joined_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(self)
                .await?;
            if inserted == 1 {
                added.push(user.clone());
            }
        }
        let viewers = diesel::update(live_sessions::table.find(session))
            .set(live_sessions::viewers.eq(live_sessions::viewers + added.len() as i64))
            .returning(live_sessions::viewers)
            .get_result(self)
            .await?;
        Ok((added, viewers))
    }
}

/// Which live sessions a batch of users watch, as each backend reads it best.
trait WatchedBy {
    /// (viewer, session) for each of `users` viewing a session in state `live`.
    async fn watched_by(&mut self, users: &[String], live: &str) -> QueryResult<Vec<(UserId, SessionId)>>;
}

/// One probe of the viewers' user index per user, in any plan: `OFFSET 0` keeps PostgreSQL
/// from flattening the subquery into a join it may plan as a scan. Written as `= ANY`, the
/// plan kept with the prepared statement from when `live_viewers` was nearly empty scanned the
/// whole table for every batch: 5.5 ms a call once 20,000 viewers had joined, most of
/// PostgreSQL's time while they joined (0.1 ms with the probes).
impl WatchedBy for AsyncPgConnection {
    async fn watched_by(&mut self, users: &[String], live: &str) -> QueryResult<Vec<(UserId, SessionId)>> {
        use diesel::sql_types::{Array, Text};
        enum WatchedByUsers {}
        #[derive(QueryableByName)]
        struct Watching {
            #[diesel(sql_type = Text)]
            user_id: UserId,
            #[diesel(sql_type = Text)]
            session_id: SessionId,
        }
        let query = diesel::sql_query(
            "SELECT v.user_id, v.session_id FROM unnest($1::text[]) AS k(id) \
             CROSS JOIN LATERAL (SELECT user_id, session_id FROM live_viewers WHERE user_id = k.id OFFSET 0) AS v \
             JOIN live_sessions s ON s.id = v.session_id WHERE s.state = $2",
        )
        .bind::<Array<Text>, _>(users)
        .bind::<Text, _>(live);
        let rows: Vec<Watching> = kept::<WatchedByUsers, _>(query).load(self).await?;
        Ok(rows.into_iter().map(|w| (w.user_id, w.session_id)).collect())
    }
}

/// The plain query: SQLite's planner, without statistics, takes the user index for the list.
impl WatchedBy for SqliteAsync {
    async fn watched_by(&mut self, users: &[String], live: &str) -> QueryResult<Vec<(UserId, SessionId)>> {
        live_viewers::table
            .inner_join(live_sessions::table)
            .filter(live_viewers::user_id.eq_any(users))
            .filter(live_sessions::state.eq(live))
            .select((live_viewers::user_id, live_viewers::session_id))
            .load(self)
            .await
    }
}

impl Store {
    /// A new live session hosted by `host`, or `None` when they already host `most` that
    /// have not ended.
    pub async fn create_live_session(
        &self,
        host: &UserId,
        title: &LiveTitle,
        most: u32,
    ) -> StoreResult<Option<LiveSession>> {
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
        let created = with_conn!(self, copied(host), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                // The host's row as a lock (taken by a no-op write, as `lock_session!` does), so
                // that creates by one host on any node count one after another.
                diesel::update(users::table.find(host.as_str())).set(users::id.eq(users::id)).execute(conn).await?;
                let hosting: i64 = live_sessions::table
                    .filter(live_sessions::host_id.eq(host.as_str()))
                    .filter(live_sessions::state.eq(LiveState::Live.as_str()))
                    .count()
                    .get_result(conn)
                    .await?;
                if hosting >= i64::from(most) {
                    return Ok(false);
                }
                insert_into(live_sessions::table).values(inserted).execute(conn).await?;
                Ok(true)
            })
            .await?
        });
        Ok(created.then(|| row.into_session(0)))
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

    /// Counts each of `users` as a viewer of a live session (once, however often they join
    /// or appear in `users`), in one transaction under the session row's lock. The host is
    /// never counted, nor a user with a block between them and the host (either way), and an
    /// ended session is left as it is; `None` if unknown. The whole batch is written under the
    /// lock, so callers keep batches to a few hundred users.
    ///
    /// Blocks are read under the lock: a block's removal of viewers (`leave_live`, after the
    /// block commits) takes it too, so a join either sees the block or is removed after it.
    pub async fn join_live_many(&self, session: SessionId, users: &[UserId]) -> StoreResult<Option<LiveJoins>> {
        let id = session.to_string();
        let now = Timestamp::now().millis();
        // Sorted and deduplicated, so that rows are inserted in key order.
        let keys: Vec<String> = users.iter().map(UserId::to_string).collect::<BTreeSet<_>>().into_iter().collect();
        let joined = with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(row) = lock_session!(conn, &id) else { return Ok(None) };
                let host = row.host_id.as_str();
                let asking: Vec<&String> = keys.iter().filter(|key| **key != host).collect();
                let blocked: HashSet<String> = blocks::table
                    .filter(
                        (blocks::blocker_id.eq(host).and(blocks::blocked_id.eq_any(&asking)))
                            .or(blocks::blocked_id.eq(host).and(blocks::blocker_id.eq_any(&asking))),
                    )
                    .select((blocks::blocker_id, blocks::blocked_id))
                    .load::<(String, String)>(conn)
                    .await?
                    .into_iter()
                    .map(|(blocker, blocked)| if blocker == host { blocked } else { blocker })
                    .collect();
                let viewers: Vec<String> = asking.into_iter().filter(|key| !blocked.contains(*key)).cloned().collect();
                let (added, count) = if row.is_live() && !viewers.is_empty() {
                    conn.add_viewers(&id, &viewers, now).await?
                } else {
                    let count = live_sessions::table.find(&id).select(live_sessions::viewers).first(conn).await?;
                    (Vec::new(), count)
                };
                Ok(Some((row.into_session(count), added, blocked)))
            })
            .await?
        });
        Ok(joined.map(|(session, added, blocked)| {
            let added: HashSet<String> = added.into_iter().collect();
            let joined = users.iter().filter(|user| added.contains(user.as_str())).cloned().collect();
            let blocked = users.iter().filter(|user| blocked.contains(user.as_str())).cloned().collect();
            LiveJoins { session, joined, blocked }
        }))
    }

    /// `join_live_many` for one user.
    pub async fn join_live(&self, session: SessionId, user: &UserId) -> StoreResult<Option<LiveJoins>> {
        self.join_live_many(session, std::slice::from_ref(user)).await
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
            let watched = conn.watched_by(&keys, live).await?;
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
}
