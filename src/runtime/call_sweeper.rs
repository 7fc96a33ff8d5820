//! The call sweeper: on every node, ends ringing past the ring timeout and drops parties gone
//! past the grace period, so a node dying never leaves a call ringing.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::service::Services;
use crate::service::calls::sweep;

/// Runs on every node: ends ringing past the ring timeout and drops parties whose last
/// connection has been gone past the grace period. The store's conditional updates let
/// exactly one node act on each expiry, so a node dying never leaves a call ringing.
pub struct CallSweeper {
    services: Arc<Services>,
    busy: bool,
}

/// How often each node sweeps.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl CallSweeper {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services, busy: false }
    }
}

impl Actor for CallSweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |sweeper, ctx| {
            if sweeper.busy {
                return;
            }
            sweeper.busy = true;
            let services = sweeper.services.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = sweep(&services).await {
                        tracing::warn!(error = %e, "call sweep failed");
                    }
                }
                .into_actor(sweeper)
                .map(|_, sweeper, _| sweeper.busy = false),
            );
        });
    }
}
