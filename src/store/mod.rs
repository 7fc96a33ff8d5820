//! Storage on diesel-async: one set of queries, run on PostgreSQL (production, clusters) or
//! embedded SQLite (the default). The database is the truth; nothing here knows about wires.

mod accounts;
mod call_presence;
mod calls;
mod chat;
mod columns;
mod idempotency;
mod lifecycle;
mod live;
mod live_floor;
mod locations;
mod prepared;
mod recovery;
mod revocations;
mod rows;
pub mod schema;
mod social;
pub(crate) mod sqlite;
mod users;
mod webhooks;
mod writer;

use std::time::Duration;

use deadpool::managed::{Hook, HookError, HookResult};
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::domain;

pub use accounts::JoinOutcome;
pub use calls::{CallRecord, Departure, Expired};
pub use chat::{HistoryPage, HistoryQuery, LeaveOutcome, RoomMembers};
pub use idempotency::KeyClaim;
pub use lifecycle::{Arrival, Lifecycle, LoadedRoom, Peers, PresenceChange};
pub use live::LiveJoins;
pub use recovery::{RoomPosition, SESSIONS_PER_USER};
pub use revocations::Revocation;
pub use social::{BlocksAmong, LikeOutcome, RequestOutcome};
pub use users::Profile;
pub use webhooks::{Attempt, Collapse, NewWebhook, WebhookCounts, WebhookEvent, collapse_key};
pub use writer::{Batching, MessageWriter, NewMessage, OnCommit, StoredMessage};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type SqliteAsync = SyncConnectionWrapper<SqliteConnection>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("unsupported database url `{0}`: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("store task failed: {0}")]
    Task(String),
    /// A value that cannot be stored as asked (checked before any statement runs).
    #[error("unstorable value: {0}")]
    Value(String),
    /// The database did not answer within [`DATABASE_TIMEOUT`].
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

/// Longest a store call may take in all (waiting for a pooled connection, its statements and
/// commit) before its caller is answered `unavailable`: a database that is down, hangs or sits
/// behind a network that drops packets must fail requests promptly, never hold them, while a
/// busy one still gets the time a burst needs. A write that times out may still commit
/// later; its sender was not acknowledged and resends with the same `client_id`.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a call waits for a pooled connection (within [`DATABASE_TIMEOUT`]).
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Runs one store call within [`DATABASE_TIMEOUT`].
pub(crate) async fn bounded<T>(call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(DATABASE_TIMEOUT, call).await.unwrap_or(Err(StoreError::Timeout(DATABASE_TIMEOUT)))
}

impl<E: std::fmt::Display> From<deadpool::managed::PoolError<E>> for StoreError {
    fn from(err: deadpool::managed::PoolError<E>) -> Self {
        Self::Pool(err.to_string())
    }
}

/// Store failures reach clients as `unavailable` (the database is out of reach: retry) or
/// `internal` (anything else); the details go to the log only.
impl From<StoreError> for domain::Error {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store failure");
        if err.out_of_reach() {
            domain::Error::Unavailable("database unavailable; retry".into())
        } else {
            domain::Error::Internal
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// The database could not be reached or went away mid-call (down, restarting, hung, cut
    /// off), as opposed to refusing what was asked: the same call can succeed later.
    pub fn out_of_reach(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Pool(_) | StoreError::Timeout(_) => true,
            StoreError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _))
            | StoreError::Query(Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)) => true,
            // PostgreSQL shutting down, starting or recovering (SQLSTATE class 57P).
            StoreError::Query(Error::DatabaseError(_, info)) => {
                let message = info.message();
                message.starts_with("terminating connection") || message.starts_with("the database system is")
            }
            _ => false,
        }
    }

    /// The database refused a statement for what it held (a constraint, a value it cannot
    /// store), as opposed to being out of reach: retrying its items apart can succeed.
    fn refused_statement(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Query(Error::DatabaseError(kind, _)) => {
                !matches!(kind, DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand)
            }
            StoreError::Query(Error::SerializationError(_) | Error::DeserializationError(_)) => true,
            _ => false,
        }
    }
}

/// Runs `work` over a batch of `len` items (given as the range of them to write); when the
/// database refuses a statement of a batch of several, runs it again over each half, so that
/// one bad item fails only itself and never the others batched with it. Answers each range's
/// outcome in the items' order (the first half runs first, so a room's messages still commit
/// in the order they were sent).
pub(crate) async fn isolating<T, F>(
    len: usize,
    mut work: impl FnMut(std::ops::Range<usize>) -> F,
) -> Vec<(std::ops::Range<usize>, StoreResult<T>)>
where
    F: std::future::Future<Output = StoreResult<T>>,
{
    let mut outcomes = Vec::new();
    let mut ranges: Vec<std::ops::Range<usize>> = std::iter::once(0..len).collect();
    while let Some(range) = ranges.pop() {
        match work(range.clone()).await {
            Err(err) if range.len() > 1 && err.refused_statement() => {
                tracing::warn!(error = %err, items = range.len(), "a batch was refused; retrying its halves apart");
                let middle = range.start + range.len() / 2;
                ranges.push(middle..range.end);
                ranges.push(range.start..middle);
            }
            outcome => outcomes.push((range, outcome)),
        }
    }
    outcomes
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Postgres(String),
    Sqlite(String),
}

impl Backend {
    pub fn from_url(url: &str) -> StoreResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Ok(Self::Sqlite(path.to_owned()))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }
}

/// A pooled handle to the database; cheap to clone.
#[derive(Clone)]
pub enum Store {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteAsync>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend is in use,
/// within [`DATABASE_TIMEOUT`]. The body is an async block's: `?` leaves the call, not the
/// enclosing function.
/// The body is written once and compiled for both connection types, which is how queries
/// are shared without generic trait bounds.
///
/// On SQLite the body is an `async move` block run by [`sqlite::run`], where a caller that
/// goes away cannot cancel it, so it must own what it uses: borrowed arguments are listed
/// (`with_conn!(self, copied(user, others), |conn| …)`) and copied in with `to_owned`, keeping
/// their borrowed types inside the body.
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::store::with_conn!($store, copied(), |$conn| $body)
    };
    ($store:expr, copied($($borrowed:ident),*), |$conn:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Postgres(pool) => {
                $crate::store::bounded(async {
                    let mut pooled = pool.get().await?;
                    let $conn = &mut *pooled;
                    Ok::<_, $crate::store::StoreError>($body)
                })
                .await?
            }
            $crate::store::Store::Sqlite(pool) => {
                let pool = pool.clone();
                $(let $borrowed = ::std::borrow::ToOwned::to_owned($borrowed);)*
                $crate::store::bounded($crate::store::sqlite::run(async move {
                    $(let $borrowed = &$borrowed;)*
                    let mut pooled = pool.get().await?;
                    let $conn = &mut *pooled;
                    Ok::<_, $crate::store::StoreError>($body)
                }))
                .await?
            }
        }
    };
}
pub(crate) use with_conn;

impl Store {
    /// Connects, runs pending migrations, and returns the pool.
    pub async fn connect(backend: &Backend, pool_size: usize) -> StoreResult<Self> {
        run_migrations(backend).await?;
        let store = match backend {
            Backend::Postgres(url) => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.clone(), config);
                let pool = Pool::builder(manager)
                    .max_size(pool_size)
                    .pre_recycle(Hook::async_fn(|conn: &mut AsyncPgConnection, metrics| {
                        Box::pin(verify_if_idle(conn, metrics.last_used()))
                    }))
                    .wait_timeout(Some(POOL_WAIT))
                    .create_timeout(Some(POOL_WAIT))
                    // The check of a connection idle for a while must not hang on a hung database.
                    .recycle_timeout(Some(Duration::from_secs(2)))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Pool(e.to_string()))?;
                Self::Postgres(pool)
            }
            Backend::Sqlite(path) => {
                let mut config = ManagerConfig::<SqliteAsync>::default();
                config.custom_setup = Box::new(|url| {
                    let url = url.to_owned();
                    async move {
                        let mut conn = SqliteAsync::establish(&url).await?;
                        conn.batch_execute(SQLITE_PRAGMAS)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::<SqliteAsync>::new_with_config(path.clone(), config);
                let pool = Pool::builder(manager)
                    .max_size(pool_size.min(8))
                    .wait_timeout(Some(POOL_WAIT))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Pool(e.to_string()))?;
                Self::Sqlite(pool)
            }
        };
        Ok(store)
    }

    /// A trivial round trip, for `/readyz`.
    pub async fn ping(&self) -> StoreResult<()> {
        with_conn!(self, |conn| {
            conn.batch_execute("SELECT 1").await?;
            Ok(())
        })
    }
}

/// A pooled PostgreSQL connection taken again within this long is trusted without a test
/// query. diesel-async's default sends `SELECT 1` before every use, which doubled the
/// round trips of every store call (a reconnect storm's history reads above all). A
/// connection idle for longer is still tested, so one left broken by a database restart is
/// replaced rather than failing a request; a break in the last few seconds fails that one
/// request, and the broken connection is dropped.
const VERIFY_IDLE: Duration = Duration::from_secs(5);

async fn verify_if_idle(conn: &mut AsyncPgConnection, idle: Duration) -> HookResult<PoolError> {
    if idle < VERIFY_IDLE {
        return Ok(());
    }
    conn.batch_execute("SELECT 1").await.map_err(|e| HookError::Message(e.to_string().into()))
}

/// WAL lets readers run beside the single writer; `synchronous=FULL` makes a commit durable
/// before the sender's ack; `busy_timeout` makes concurrent writers wait instead of failing.
/// `busy_timeout` comes first: `journal_mode` takes a lock too, and a connection opened while
/// another one writes must wait for it rather than fail with "database is locked".
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

/// Runs the embedded migrations on a blocking thread (the async harness does not run on
/// actix's single-threaded runtime).
pub async fn run_migrations(backend: &Backend) -> StoreResult<()> {
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || -> StoreResult<()> {
        let migrate = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
        match backend {
            Backend::Postgres(url) => {
                type Blocking = diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection>;
                let mut conn = <Blocking as diesel::Connection>::establish(&url)
                    .map_err(|e| StoreError::Migration(e.to_string()))?;
                // Nodes starting together on an empty database take turns.
                diesel::connection::SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_lock(7270001)")?;
                let migrated = conn.run_pending_migrations(PG_MIGRATIONS).map(|_| ()).map_err(migrate);
                diesel::connection::SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_unlock(7270001)")?;
                migrated?;
            }
            Backend::Sqlite(path) => {
                use diesel::Connection;
                use diesel::connection::SimpleConnection;
                let mut conn = SqliteConnection::establish(&path).map_err(|e| StoreError::Migration(e.to_string()))?;
                conn.batch_execute(SQLITE_PRAGMAS)?;
                conn.run_pending_migrations(SQLITE_MIGRATIONS).map_err(migrate)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?
}
