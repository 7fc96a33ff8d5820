//! Revocations reach every node through the store: each node reads those written since its
//! last look, refuses the tokens they cover from then on, and closes the connections holding
//! one with 4003.

use std::sync::Arc;
use std::time::Duration;

use actix_ws::CloseCode;

use super::Node;
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
pub async fn load(node: &Node) -> StoreResult<()> {
    for revocation in node.store.revocations_since(Timestamp::from_millis(0)).await? {
        node.auth.revoke(revocation.user, revocation.before);
    }
    Ok(())
}

/// Applies new revocations every [`POLL`] for as long as the node runs.
pub async fn watch(node: Arc<Node>) {
    let mut last_look = Timestamp::now();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let look = Timestamp::now();
        let since = Timestamp::from_millis(last_look.millis() - OVERLAP.as_millis() as i64);
        match node.store.revocations_since(since).await {
            Ok(revocations) => {
                last_look = look;
                revocations.into_iter().for_each(|revocation| {
                    apply(&node, revocation);
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not read revocations; retrying"),
        }
    }
}

/// Refuses the revoked tokens and closes this node's connections that hold one; how many.
pub fn apply(node: &Node, revocation: Revocation) -> usize {
    let Revocation { user, before, .. } = revocation;
    node.auth.revoke(user.clone(), before);
    let kick = Kick { code: CloseCode::Other(TOKEN_REVOKED), reason: "token revoked", issued_before: Some(before) };
    let closed = node.connections.kick(&user, &kick);
    if closed > 0 {
        tracing::info!(%user, closed, "closing connections of a revoked token");
    }
    closed
}
