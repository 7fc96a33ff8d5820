//! Users: profile from the token's claims, and last seen.

use std::collections::HashMap;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::users;
use super::{Store, StoreResult, with_conn};
use crate::domain::{Timestamp, UserId};

/// A user's display profile, as the app backend put it in the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub avatar: Option<String>,
}

impl Store {
    /// Records a connect: creates the user if new, refreshes the profile fields the token
    /// carries (absent ones are kept) and sets `last_seen`.
    pub async fn touch_user(&self, user: &UserId, profile: &Profile, seen: Timestamp) -> StoreResult<()> {
        let now = seen.millis();
        with_conn!(self, |conn| {
            insert_into(users::table)
                .values((
                    users::id.eq(user.as_str()),
                    users::name.eq(&profile.name),
                    users::avatar.eq(&profile.avatar),
                    users::last_seen.eq(now),
                    users::created_at.eq(now),
                ))
                .on_conflict(users::id)
                .do_update()
                .set((
                    users::name.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                        "COALESCE(excluded.name, users.name)",
                    )),
                    users::avatar.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                        "COALESCE(excluded.avatar, users.avatar)",
                    )),
                    users::last_seen.eq(excluded(users::last_seen)),
                ))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    pub async fn set_last_seen(&self, user: &UserId, seen: Timestamp) -> StoreResult<()> {
        with_conn!(self, |conn| {
            diesel::update(users::table.find(user.as_str()))
                .set(users::last_seen.eq(seen.millis()))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// `last_seen` for each known user among `ids`.
    pub async fn last_seen(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, Timestamp>> {
        let keys: Vec<&str> = ids.iter().map(UserId::as_str).collect();
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
        let keys: Vec<&str> = ids.iter().map(UserId::as_str).collect();
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
