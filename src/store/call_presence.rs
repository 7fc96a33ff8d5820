//! Call parties' presence: a party whose last connection closed is away (dropped from the
//! call after the grace period unless back), and one who came back is not.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::calls::in_call;
use super::prepared::kept;
use super::schema::call_participants;
use super::{SqliteAsync, Store, StoreResult, with_conn};
use crate::domain::{Timestamp, UserId};

impl Store {
    /// At the start of a single node, nobody is connected: every party of a call still
    /// going counts as away from now (the sweeper ends those calls after the grace period).
    pub async fn mark_all_call_parties_away(&self, at: Timestamp) -> StoreResult<()> {
        with_conn!(self, |conn| {
            diesel::update(
                call_participants::table
                    .filter(call_participants::status.eq_any(in_call()))
                    .filter(call_participants::away_since.is_null()),
            )
            .set(call_participants::away_since.eq(at.millis()))
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Marks a batch of users away from their calls (`Some(at)`: their last connection anywhere
    /// closed) or back (`None`, which also frees their device: the next one to signal takes
    /// the call); one statement for those back, one for those away. Each user at most once: two changes of one user must not share a batch.
    pub async fn mark_call_presence_many(&self, changes: &[(UserId, Option<Timestamp>)]) -> StoreResult<()> {
        let back: Vec<&str> = changes.iter().filter(|(_, away)| away.is_none()).map(|(u, _)| u.as_str()).collect();
        let away: Vec<(&str, i64)> =
            changes.iter().filter_map(|(user, away)| Some((user.as_str(), away.as_ref()?.millis()))).collect();
        super::bounded(async {
            match self {
                Store::Postgres(pool) => mark_call_presence_postgres(pool, &back, &away).await,
                Store::Sqlite(pool) => mark_call_presence_sqlite(pool, &back, &away).await,
            }
        })
        .await
    }
}

async fn mark_call_presence_postgres(
    pool: &Pool<AsyncPgConnection>,
    back: &[&str],
    away: &[(&str, i64)],
) -> StoreResult<()> {
    // Each statement locks its rows in key order first, so batches of several
    // nodes touching the same parties cannot deadlock.
    let mut conn = pool.get().await?;
    if !back.is_empty() {
        enum MarkBack {}
        let query = diesel::sql_query(
            "UPDATE call_participants SET away_since = NULL, device = NULL \
             FROM (SELECT call_id, user_id FROM call_participants \
                   WHERE user_id = ANY($1) AND status IN ('joined', 'ringing') \
                   ORDER BY call_id, user_id FOR UPDATE) AS locked \
             WHERE call_participants.call_id = locked.call_id \
             AND call_participants.user_id = locked.user_id \
             AND call_participants.status IN ('joined', 'ringing')",
        )
        .bind::<Array<Text>, _>(&back);
        kept::<MarkBack, _>(query).execute(&mut *conn).await?;
    }
    if !away.is_empty() {
        enum MarkAway {}
        let query = diesel::sql_query(
            "UPDATE call_participants SET away_since = v.at \
             FROM (SELECT call_id, user_id FROM call_participants \
                   WHERE user_id = ANY($1) AND status IN ('joined', 'ringing') AND away_since IS NULL \
                   ORDER BY call_id, user_id FOR UPDATE) AS locked \
             JOIN unnest($1::text[], $2::int8[]) AS v(user_id, at) ON v.user_id = locked.user_id \
             WHERE call_participants.call_id = locked.call_id \
             AND call_participants.user_id = locked.user_id \
             AND call_participants.status IN ('joined', 'ringing') \
             AND call_participants.away_since IS NULL",
        )
        .bind::<Array<Text>, _>(away.iter().map(|(user, _)| *user).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(away.iter().map(|(_, at)| *at).collect::<Vec<_>>());
        kept::<MarkAway, _>(query).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn mark_call_presence_sqlite(pool: &Pool<SqliteAsync>, back: &[&str], away: &[(&str, i64)]) -> StoreResult<()> {
    // In-process: a statement per user costs no round trip; one transaction syncs once.
    let pool = pool.clone();
    let back: Vec<String> = back.iter().map(|user| (*user).to_owned()).collect();
    let away: Vec<(String, i64)> = away.iter().map(|(user, at)| ((*user).to_owned(), *at)).collect();
    super::sqlite::run(async move {
        let mut conn = pool.get().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            if !back.is_empty() {
                diesel::update(
                    call_participants::table
                        .filter(call_participants::user_id.eq_any(&back))
                        .filter(call_participants::status.eq_any(in_call())),
                )
                .set((call_participants::away_since.eq(None::<i64>), call_participants::device.eq(None::<String>)))
                .execute(conn)
                .await?;
            }
            for (user, at) in &away {
                diesel::update(
                    call_participants::table
                        .filter(call_participants::user_id.eq(user))
                        .filter(call_participants::status.eq_any(in_call()))
                        .filter(call_participants::away_since.is_null()),
                )
                .set(call_participants::away_since.eq(*at))
                .execute(conn)
                .await?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    })
    .await?;
    Ok(())
}
