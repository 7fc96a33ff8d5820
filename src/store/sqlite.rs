//! Where SQLite's work runs: a runtime of its own, out of reach of the callers' cancellation.
//!
//! diesel-async drives SQLite through `SyncConnectionWrapper`, whose query futures must not be
//! dropped before they finish: its cancel path calls `block_in_place`, which panics on actix's
//! current-thread workers, and a half-run transaction would go back to the pool. A client that
//! disconnects drops whatever its request was awaiting, so every SQLite operation is spawned
//! here as a whole (pool checkout, queries, commit) and the caller only awaits its outcome;
//! dropping that wait leaves the operation to finish by itself. The runtime is multi-threaded,
//! so even a future dropped at process exit may block in place, and it lives for the process.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use super::{StoreError, StoreResult};

/// Threads that drive SQLite futures (the queries themselves run on the runtime's blocking
/// pool, one per pooled connection at most).
const DRIVERS: usize = 1;

fn runtime() -> StoreResult<&'static Runtime> {
    static RUNTIME: OnceLock<std::io::Result<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Builder::new_multi_thread().worker_threads(DRIVERS).thread_name("sqlite").enable_all().build())
        .as_ref()
        .map_err(|e| StoreError::Task(format!("starting the SQLite runtime: {e}")))
}

/// Runs `work` to completion on the SQLite runtime, whether or not the caller still waits.
/// A panic inside it is that operation's error, not the caller's.
pub async fn run<T, F>(work: F) -> StoreResult<T>
where
    F: Future<Output = StoreResult<T>> + Send + 'static,
    T: Send + 'static,
{
    runtime()?.spawn(work).await.map_err(|e| {
        tracing::error!(error = %e, "SQLite operation panicked");
        StoreError::Task(e.to_string())
    })?
}
