//! A live session's floor: the hands viewers raise for the host, and the comments. Only the
//! host and viewers take the floor, checked in the statement that stores it.

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::{live_comments, live_hands, live_sessions, live_viewers};
use super::{Store, StoreResult, with_conn};
use crate::domain::{CommentText, LiveComment, RaisedHand, SessionId, Timestamp, UserId};

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

impl Store {
    /// Raises `user`'s hand; false if it was already raised, or they do not watch.
    pub async fn raise_hand(&self, session: SessionId, user: &UserId) -> StoreResult<bool> {
        use diesel::sql_types::BigInt;
        let id = session.to_string();
        let now = Timestamp::now().millis();
        let inserted = with_conn!(self, copied(user), |conn| {
            // Only a viewer's, checked in the statement that raises it (a block removing the
            // viewer in between leaves no hand behind).
            let source = live_viewers::table.find((&id, user.as_str())).select((
                live_viewers::session_id,
                live_viewers::user_id,
                now.into_sql::<BigInt>(),
            ));
            insert_into(live_hands::table)
                .values(source)
                .into_columns((live_hands::session_id, live_hands::user_id, live_hands::raised_at))
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

    /// Stores a comment by the session's host or one of its viewers, in the statement that
    /// checks it (a node's list of who watches can lag a removal, a block's above all); `None`
    /// for anyone else.
    pub async fn add_live_comment(
        &self,
        session: SessionId,
        user: &UserId,
        text: &CommentText,
    ) -> StoreResult<Option<LiveComment>> {
        use diesel::dsl::exists;
        use diesel::sql_types::{BigInt, Text};
        let row = CommentRow {
            id: Uuid::now_v7().to_string(),
            session_id: session,
            user_id: user.clone(),
            text: text.as_str().to_owned(),
            created_at: Timestamp::now().millis(),
        };
        let (sid, values) = (session.to_string(), row.clone());
        let inserted = with_conn!(self, copied(user), |conn| {
            let viewer = live_viewers::table.find((&sid, user.as_str()));
            let source = live_sessions::table
                .find(&sid)
                .filter(live_sessions::host_id.eq(user.as_str()).or(exists(viewer)))
                .select((
                    values.id.into_sql::<Text>(),
                    live_sessions::id,
                    user.as_str().into_sql::<Text>(),
                    values.text.as_str().into_sql::<Text>(),
                    values.created_at.into_sql::<BigInt>(),
                ));
            insert_into(live_comments::table)
                .values(source)
                .into_columns((
                    live_comments::id,
                    live_comments::session_id,
                    live_comments::user_id,
                    live_comments::text,
                    live_comments::created_at,
                ))
                .execute(conn)
                .await?
        });
        Ok((inserted == 1).then(|| row.into()))
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
