//! Users: profile from the token's claims, and last seen.

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use std::collections::HashMap;

use diesel_async::AsyncConnection;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::prepared::kept;
use super::schema::users;
use super::{SqliteAsync, Store, StoreResult, with_conn};
use crate::domain::{Timestamp, UserId};

/// A user's display profile, as the app backend put it in the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub avatar: Option<String>,
}

/// In an upsert of users, the later of the stored `last_seen` and the proposed one
/// (`excluded`): it only moves forward. Not GREATEST, which SQLite lacks (its max() of a NULL
/// is NULL).
macro_rules! latest_seen {
    () => {
        "CASE WHEN users.last_seen IS NULL OR excluded.last_seen > users.last_seen \
         THEN excluded.last_seen ELSE users.last_seen END"
    };
}

impl Store {
    /// Records a batch of connects (`store::lifecycle`), on PostgreSQL in one statement:
    /// creates each user if new, refreshes the profile fields the token carries (absent ones
    /// are kept) and moves `last_seen` forward to the connect (a disconnect batched separately
    /// may have stored a later time). Each user at most once. PostgreSQL writes the rows in id
    /// order (the statement sorts them), so batches of two nodes touching the same users lock
    /// them in the same order and cannot deadlock; SQLite has one writer at a time.
    pub async fn touch_users(&self, touches: &[(UserId, Profile)], seen: Timestamp) -> StoreResult<()> {
        let now = seen.millis();
        if touches.is_empty() {
            return Ok(());
        }
        super::bounded(async {
            match self {
                Store::Postgres(pool) => touch_users_postgres(pool, touches, now).await,
                Store::Sqlite(pool) => touch_users_sqlite(pool, touches, now).await,
            }
        })
        .await
    }

    /// Stores when each of a batch of users went offline, in one statement. Each user at
    /// most once. `last_seen` only moves forward: connects and disconnects are batched
    /// separately, and a reconnect's touch may be stored before the disconnect it followed.
    pub async fn set_last_seen_many(&self, seen: &[(UserId, Timestamp)]) -> StoreResult<()> {
        use diesel::sql_types::{Array, BigInt, Text};
        if seen.is_empty() {
            return Ok(());
        }
        super::bounded(async {
            match self {
                Store::Postgres(pool) => {
                    enum SetLastSeen {}
                    let mut conn = pool.get().await?;
                    // Rows are locked in id order first, like `touch_users`: the two run at once
                    // (a user going offline while others connect) and deadlocked otherwise.
                    let query = diesel::sql_query(
                        "UPDATE users SET last_seen = v.seen \
                         FROM (SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE) AS locked \
                         JOIN unnest($1::text[], $2::int8[]) AS v(id, seen) ON v.id = locked.id \
                         WHERE users.id = locked.id AND (users.last_seen IS NULL OR users.last_seen < v.seen)",
                    )
                    .bind::<Array<Text>, _>(seen.iter().map(|(user, _)| user.as_str()).collect::<Vec<_>>())
                    .bind::<Array<BigInt>, _>(seen.iter().map(|(_, at)| at.millis()).collect::<Vec<_>>());
                    kept::<SetLastSeen, _>(query).execute(&mut *conn).await?;
                }
                Store::Sqlite(pool) => {
                    let (pool, seen) = (pool.clone(), seen.to_vec());
                    super::sqlite::run(async move {
                        let mut conn = pool.get().await?;
                        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                            for (user, at) in &seen {
                                diesel::update(users::table.find(user.as_str()))
                                    .filter(users::last_seen.is_null().or(users::last_seen.lt(at.millis())))
                                    .set(users::last_seen.eq(at.millis()))
                                    .execute(conn)
                                    .await?;
                            }
                            Ok(())
                        })
                        .await?;
                        Ok(())
                    })
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// `last_seen` for each known user among `ids`.
    pub async fn last_seen(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, Timestamp>> {
        let keys: Vec<String> = ids.iter().map(UserId::to_string).collect();
        let rows: Vec<(String, Option<i64>)> = with_conn!(self, |conn| {
            users::table.filter(users::id.eq_any(&keys)).select((users::id, users::last_seen)).load(conn).await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(id, seen)| Some((UserId::parse(id).ok()?, Timestamp::from_millis(seen?))))
            .collect())
    }

    /// Display profiles for `ids` (for dialects that show names and avatars).
    pub async fn profiles(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, Profile>> {
        let keys: Vec<String> = ids.iter().map(UserId::to_string).collect();
        let rows: Vec<(String, Option<String>, Option<String>)> = with_conn!(self, |conn| {
            users::table
                .filter(users::id.eq_any(&keys))
                .select((users::id, users::name, users::avatar))
                .load(conn)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(id, name, avatar)| Some((UserId::parse(id).ok()?, Profile { name, avatar })))
            .collect())
    }
}

async fn touch_users_postgres(
    pool: &Pool<AsyncPgConnection>,
    touches: &[(UserId, Profile)],
    now: i64,
) -> StoreResult<()> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    enum TouchUsers {}
    let mut conn = pool.get().await?;
    // One statement of fixed text whatever the batch size (lists as arrays), so
    // it stays prepared. Inserted in id order, so rows are locked in id order.
    let query = diesel::sql_query(concat!(
        "INSERT INTO users (id, name, avatar, last_seen, created_at) \
         SELECT v.id, v.name, v.avatar, $4, $4 \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS v(id, name, avatar) ORDER BY v.id \
         ON CONFLICT (id) DO UPDATE SET \
         name = COALESCE(excluded.name, users.name), \
         avatar = COALESCE(excluded.avatar, users.avatar), \
         last_seen = ",
        latest_seen!()
    ))
    .bind::<Array<Text>, _>(touches.iter().map(|(user, _)| user.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(touches.iter().map(|(_, profile)| profile.name.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(touches.iter().map(|(_, profile)| profile.avatar.as_deref()).collect::<Vec<_>>())
    .bind::<BigInt, _>(now);
    kept::<TouchUsers, _>(query).execute(&mut *conn).await?;
    Ok(())
}

async fn touch_users_sqlite(pool: &Pool<SqliteAsync>, touches: &[(UserId, Profile)], now: i64) -> StoreResult<()> {
    // In-process: a statement per row costs no round trip. One transaction, so
    // one sync to disk for the batch instead of one per user.
    let (pool, touches) = (pool.clone(), touches.to_vec());
    super::sqlite::run(async move {
        let rows: Vec<_> = touches
            .iter()
            .map(|(user, profile)| {
                (
                    users::id.eq(user.as_str()),
                    users::name.eq(profile.name.as_deref()),
                    users::avatar.eq(profile.avatar.as_deref()),
                    users::last_seen.eq(now),
                    users::created_at.eq(now),
                )
            })
            .collect();
        let keep_absent = |column: &str| {
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(&format!(
                "COALESCE(excluded.{column}, users.{column})"
            ))
        };
        let latest_seen = || diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(latest_seen!());
        let mut conn = pool.get().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            for row in rows {
                insert_into(users::table)
                    .values(row)
                    .on_conflict(users::id)
                    .do_update()
                    .set((
                        users::name.eq(keep_absent("name")),
                        users::avatar.eq(keep_absent("avatar")),
                        users::last_seen.eq(latest_seen()),
                    ))
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
