//! Revocations reach every node through the store: each node reads those written since its
//! last look, refuses the tokens they cover from then on, and closes the connections holding
//! one with 4003.

use std::sync::Arc;
use std::time::Duration;

use actix_ws::CloseCode;

use super::Services;
use super::connection::TOKEN_REVOKED;
use super::registry::Kick;
use crate::domain::Timestamp;
use crate::store::{Revocation, StoreResult};

/// How often a node looks for new revocations: the longest a revoked connection stays open.
pub const POLL: Duration = Duration::from_secs(2);
/// Rows written up to this long before the last look are read again: the writers' clocks
/// and commit order may differ a little from this node's.
const OVERLAP: Duration = Duration::from_secs(60);

/// Reads every revocation (at start-up, before serving).
pub async fn load(services: &Services) -> StoreResult<()> {
    for revocation in services.store.revocations_since(Timestamp::from_millis(0)).await? {
        services.auth.revoke(revocation.user, revocation.before);
    }
    Ok(())
}

/// Applies new revocations every [`POLL`] for as long as the node runs.
pub async fn watch(services: Arc<Services>) {
    let mut last_look = Timestamp::now();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let look = Timestamp::now();
        let since = Timestamp::from_millis(last_look.millis() - OVERLAP.as_millis() as i64);
        match services.store.revocations_since(since).await {
            Ok(revocations) => {
                last_look = look;
                revocations.into_iter().for_each(|revocation| apply(&services, revocation));
            }
            Err(e) => tracing::warn!(error = %e, "could not read revocations; retrying"),
        }
    }
}

/// Refuses the revoked tokens and closes this node's connections that hold one.
pub fn apply(services: &Services, revocation: Revocation) {
    let Revocation { user, before, .. } = revocation;
    services.auth.revoke(user.clone(), before);
    let kick = Kick { code: CloseCode::Other(TOKEN_REVOKED), reason: "token revoked", issued_before: Some(before) };
    if services.connections.kick(&user, &kick) > 0 {
        tracing::info!(%user, "closing connections of a revoked token");
    }
}
