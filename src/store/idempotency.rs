//! The server API's idempotency keys: the first answer to a key is kept for [`KEPT_FOR`] and
//! given again to a repeat of the same request.

use std::time::Duration;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::idempotency_keys;
use super::{Store, StoreResult, with_conn};
use crate::domain::Timestamp;

/// How long a key's answer is kept.
pub const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);
/// A first request that has not finished after this long is taken for dead (its node died
/// mid-request): a repeat runs again.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Where a request with an idempotency key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// First seen now: run the request, then `finish_idempotent` or `release_idempotent`.
    Fresh,
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
    /// Answered before: the first answer.
    Answered { status: u16, body: String },
}

impl Store {
    /// Claims `key` for a request with this `fingerprint`, or says why not.
    pub async fn claim_idempotency_key(&self, key: &str, fingerprint: &str) -> StoreResult<KeyClaim> {
        let now = Timestamp::now().millis();
        let expired = now - KEPT_FOR.as_millis() as i64;
        let abandoned = now - ABANDONED_AFTER.as_millis() as i64;
        let claim = with_conn!(self, copied(key, fingerprint), |conn| {
            // An expired answer or an abandoned run no longer holds the key.
            diesel::delete(
                idempotency_keys::table.filter(idempotency_keys::key.eq(key)).filter(
                    idempotency_keys::created_at
                        .lt(expired)
                        .or(idempotency_keys::status.is_null().and(idempotency_keys::created_at.lt(abandoned))),
                ),
            )
            .execute(conn)
            .await?;
            let inserted = insert_into(idempotency_keys::table)
                .values((
                    idempotency_keys::key.eq(key),
                    idempotency_keys::fingerprint.eq(fingerprint),
                    idempotency_keys::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                KeyClaim::Fresh
            } else {
                let found: Option<(String, Option<i32>, Option<String>)> = idempotency_keys::table
                    .find(key)
                    .select((idempotency_keys::fingerprint, idempotency_keys::status, idempotency_keys::body))
                    .first(conn)
                    .await
                    .optional()?;
                match found {
                    // Released between the insert and the read: the caller may retry.
                    None => KeyClaim::InProgress,
                    Some((first, _, _)) if first.as_str() != AsRef::<str>::as_ref(fingerprint) => KeyClaim::Mismatch,
                    Some((_, Some(status), Some(body))) => {
                        KeyClaim::Answered { status: u16::try_from(status).unwrap_or(500), body }
                    }
                    Some(_) => KeyClaim::InProgress,
                }
            }
        });
        Ok(claim)
    }

    /// Keeps the answer to the request that claimed `key`.
    pub async fn finish_idempotent(&self, key: &str, status: u16, body: &str) -> StoreResult<()> {
        with_conn!(self, copied(key, body), |conn| {
            diesel::update(idempotency_keys::table.find(key))
                .set((idempotency_keys::status.eq(i32::from(status)), idempotency_keys::body.eq(body)))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Frees `key` after its request failed in a way a retry may not (the database or the
    /// cluster was out of reach): the next request with it runs afresh.
    pub async fn release_idempotent(&self, key: &str) -> StoreResult<()> {
        with_conn!(self, copied(key), |conn| {
            diesel::delete(idempotency_keys::table.find(key).filter(idempotency_keys::status.is_null()))
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Forgets answers older than [`KEPT_FOR`]; how many.
    pub async fn forget_idempotency_keys(&self) -> StoreResult<usize> {
        let expired = Timestamp::now().millis() - KEPT_FOR.as_millis() as i64;
        let forgotten = with_conn!(self, |conn| {
            diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(expired)))
                .execute(conn)
                .await?
        });
        Ok(forgotten)
    }
}
