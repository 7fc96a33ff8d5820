//! The guard every use case between two users runs: no contact while either has blocked the
//! other. What a block ends is `social`'s; this stays below every service that checks it.

use super::Services;
use crate::domain::{Error, UserId};

/// Refuses contact between two users when either has blocked the other.
pub async fn not_blocked(services: &Services, me: &UserId, other: &UserId) -> Result<(), Error> {
    if services.store.blocked_between(me, other).await? {
        return Err(Error::blocked());
    }
    Ok(())
}
