//! Token revocations: the store is their truth; every node reads new ones as they come.

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::revocations;
use super::{Store, StoreResult, with_conn};
use crate::domain::{Timestamp, UserId};

/// The later of the stored and the new revocation time (the same SQL on both databases).
fn later_of_both() -> diesel::expression::SqlLiteral<diesel::sql_types::BigInt> {
    diesel::dsl::sql(
        "CASE WHEN revocations.revoked_before < excluded.revoked_before \
         THEN excluded.revoked_before ELSE revocations.revoked_before END",
    )
}

/// One user's revocation: tokens issued before `before` are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub user: UserId,
    pub before: Timestamp,
    /// When it was written (or last moved forward).
    pub at: Timestamp,
}

impl Store {
    /// Refuses `user`'s tokens issued before `before`; a revocation already later stays.
    pub async fn revoke(&self, user: &UserId, before: Timestamp) -> StoreResult<()> {
        let now = Timestamp::now().millis();
        with_conn!(self, copied(user), |conn| {
            insert_into(revocations::table)
                .values((
                    revocations::user_id.eq(user.as_str()),
                    revocations::revoked_before.eq(before.millis()),
                    revocations::created_at.eq(now),
                ))
                .on_conflict(revocations::user_id)
                .do_update()
                .set((revocations::revoked_before.eq(later_of_both()), revocations::created_at.eq(now)))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Revocations written at or after `since`.
    pub async fn revocations_since(&self, since: Timestamp) -> StoreResult<Vec<Revocation>> {
        let found: Vec<(String, i64, i64)> = with_conn!(self, |conn| {
            revocations::table
                .filter(revocations::created_at.ge(since.millis()))
                .select((revocations::user_id, revocations::revoked_before, revocations::created_at))
                .load(conn)
                .await?
        });
        Ok(found
            .into_iter()
            .filter_map(|(user, before, at)| {
                let user = UserId::parse(user)
                    .map_err(|e| tracing::error!(error = %e, "a stored revocation names no valid user"))
                    .ok()?;
                Some(Revocation { user, before: Timestamp::from_millis(before), at: Timestamp::from_millis(at) })
            })
            .collect())
    }
}
