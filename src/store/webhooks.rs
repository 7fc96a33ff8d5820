//! The webhook outbox: every event for the app's back end is a row before any attempt, so a
//! node going away loses none it wrote. Nodes claim due rows under a lease (PostgreSQL skips
//! rows another node holds), so several deliver without doubling; a row is delivered, retried
//! later, or kept as failed after the last attempt.

use std::time::Duration;

use diesel::dsl::{count_star, insert_into};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::chat::unread_messages;
use super::schema::{messages, room_members, webhook_outbox};
use super::{Store, StoreError, StoreResult, with_conn};
use crate::domain::{EventType, OutboxState, RoomId, Timestamp, UserId};

/// An event to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub event_type: EventType,
    pub data: Value,
    /// Set for a collapsible event (`message.offline`): it folds into the pending row of the
    /// same key, if any.
    pub collapse: Option<Collapse>,
}

/// How a collapsible event folds into the pending row of its key.
#[derive(Debug, Clone)]
pub struct Collapse {
    /// See [`collapse_key`].
    pub key: String,
    /// Messages it stands for (those of one batch fold before they are written).
    pub count: i32,
    /// How long a new row waits for more before it is due.
    pub window: Duration,
}

/// The collapse key of one recipient's `message.offline` events in one room.
pub fn collapse_key(recipient: &UserId, room: RoomId) -> String {
    format!("{recipient}|{room}")
}

/// The recipient a collapse key names (room ids never hold `|`; user ids may).
fn recipient_of(key: &str) -> &str {
    key.rsplit_once('|').map_or(key, |(user, _)| user)
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub id: Uuid,
    pub event_type: EventType,
    /// The body's `data`; final once claimed.
    pub data: Value,
    pub created_at: Timestamp,
    /// Attempts made so far.
    pub attempts: u32,
    pub state: OutboxState,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Retry {
        at: Timestamp,
        error: String,
    },
    /// The last attempt failed: the row is kept as failed.
    Failed {
        error: String,
    },
}

/// Outbox rows by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = webhook_outbox)]
struct OutboxRow {
    id: String,
    event_type: String,
    data: String,
    created_at: i64,
    attempts: i32,
    next_attempt_at: i64,
    state: String,
    last_error: Option<String>,
    last_attempt_at: Option<i64>,
    collapse_key: Option<String>,
    collapsed: i32,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_outbox)]
struct NewRow {
    id: String,
    event_type: &'static str,
    data: String,
    created_at: i64,
    next_attempt_at: i64,
    state: &'static str,
    collapse_key: Option<String>,
    collapsed: i32,
}

impl NewRow {
    fn new(event: &NewWebhook, now: i64) -> Self {
        let wait = event.collapse.as_ref().map_or(0, |c| c.window.as_millis() as i64);
        Self {
            id: Uuid::now_v7().to_string(),
            event_type: event.event_type.as_str(),
            data: event.data.to_string(),
            created_at: now,
            next_attempt_at: now + wait,
            state: OutboxState::Pending.as_str(),
            collapse_key: event.collapse.as_ref().map(|c| c.key.clone()),
            collapsed: event.collapse.as_ref().map_or(1, |c| c.count),
        }
    }
}

fn corrupt(id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Query(diesel::result::Error::DeserializationError(format!("webhook outbox row {id}: {what}").into()))
}

impl OutboxRow {
    fn into_event(self) -> StoreResult<WebhookEvent> {
        let id = Uuid::parse_str(&self.id).map_err(|e| corrupt(&self.id, e))?;
        let event_type = EventType::parse(&self.event_type).map_err(|e| corrupt(&self.id, e))?;
        let state: OutboxState = self.state.parse().map_err(|e| corrupt(&self.id, e))?;
        let data = serde_json::from_str(&self.data).map_err(|e| corrupt(&self.id, e))?;
        let attempts = u32::try_from(self.attempts).map_err(|e| corrupt(&self.id, e))?;
        Ok(WebhookEvent {
            id,
            event_type,
            data,
            created_at: Timestamp::from_millis(self.created_at),
            attempts,
            state,
            next_attempt_at: Timestamp::from_millis(self.next_attempt_at),
            last_attempt_at: self.last_attempt_at.map(Timestamp::from_millis),
            last_error: self.last_error,
        })
    }
}

/// A collapsed row's final data: its count, and the recipient's unread messages now.
fn finished(row: &OutboxRow, unread_total: i64) -> QueryResult<String> {
    let mut data: Value = serde_json::from_str(&row.data).map_err(|e| corrupt_query(&row.id, e))?;
    let Some(fields) = data.as_object_mut() else {
        return Err(corrupt_query(&row.id, "data is not an object"));
    };
    fields.insert("count".into(), row.collapsed.into());
    fields.insert("unread_total".into(), unread_total.into());
    Ok(data.to_string())
}

fn corrupt_query(id: &str, what: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("webhook outbox row {id}: {what}").into())
}

/// Messages `$user` has not read, in all their rooms, as room listings count them.
macro_rules! unread_total {
    ($conn:expr, $user:expr) => {
        unread_messages!($user).select(count_star()).get_result::<i64>($conn).await?
    };
}

/// Leasing due rows, per backend.
trait LeaseDue {
    /// Moves up to `limit` pending rows due at `now` to `until` (the lease) and returns them,
    /// `collapse_key` included. One statement, so SQLite takes its write lock first and never
    /// has to upgrade a read.
    fn lease_due(
        &mut self,
        now: i64,
        limit: i64,
        until: i64,
    ) -> impl Future<Output = QueryResult<Vec<OutboxRow>>> + Send;
}

/// The columns of [`OutboxRow`] (`type` under its field's name).
macro_rules! outbox_columns {
    () => {
        "id, type AS event_type, data, created_at, attempts, next_attempt_at, state, last_error, \
         last_attempt_at, collapse_key, collapsed"
    };
}

/// Rows another node is claiming are skipped, not waited for.
impl LeaseDue for diesel_async::AsyncPgConnection {
    async fn lease_due(&mut self, now: i64, limit: i64, until: i64) -> QueryResult<Vec<OutboxRow>> {
        use diesel::sql_types::BigInt;
        diesel::sql_query(concat!(
            "UPDATE webhook_outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM webhook_outbox \
             WHERE state = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3 \
             FOR UPDATE SKIP LOCKED) RETURNING ",
            outbox_columns!()
        ))
        .bind::<BigInt, _>(until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(self)
        .await
    }
}

/// One node, one writer at a time.
impl LeaseDue for super::SqliteAsync {
    async fn lease_due(&mut self, now: i64, limit: i64, until: i64) -> QueryResult<Vec<OutboxRow>> {
        use diesel::sql_types::BigInt;
        diesel::sql_query(concat!(
            "UPDATE webhook_outbox SET next_attempt_at = ? WHERE id IN (SELECT id FROM webhook_outbox \
             WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) RETURNING ",
            outbox_columns!()
        ))
        .bind::<BigInt, _>(until)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(limit)
        .load(self)
        .await
    }
}

impl Store {
    /// Writes events to the outbox, all or none. A collapsible one whose key has a pending
    /// row folds into it (its count grows, its data becomes the newest; the row keeps its
    /// due time); otherwise it is a new row, due now or, when collapsible, after its window.
    pub async fn enqueue_webhooks(&self, events: &[NewWebhook]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().millis();
        let rows: Vec<NewRow> = events.iter().map(|event| NewRow::new(event, now)).collect();
        let rows = rows.as_slice();
        with_conn!(self, copied(rows), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for row in rows {
                    let insert = insert_into(webhook_outbox::table).values(row);
                    if row.collapse_key.is_some() {
                        insert
                            .on_conflict(webhook_outbox::collapse_key)
                            .do_update()
                            .set((
                                webhook_outbox::data.eq(excluded(webhook_outbox::data)),
                                webhook_outbox::collapsed
                                    .eq(webhook_outbox::collapsed + excluded(webhook_outbox::collapsed)),
                            ))
                            .execute(conn)
                            .await?;
                    } else {
                        insert.execute(conn).await?;
                    }
                }
                Ok(())
            })
            .await?
        });
        Ok(())
    }

    /// Claims up to `limit` events due at `now` for delivery: each is leased until
    /// `now + lease` (another node takes it after that, should this one die). A collapsed
    /// `message.offline` is closed to later messages and gets its final data now: its
    /// `count` and the recipient's `unread_total` at this moment.
    pub async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<WebhookEvent>> {
        let (now, until) = (now.millis(), now.millis() + lease.as_millis() as i64);
        let limit = limit as i64;
        let rows: Vec<OutboxRow> = with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let mut rows = LeaseDue::lease_due(conn, now, limit, until).await?;
                for row in rows.iter_mut() {
                    let Some(key) = row.collapse_key.take() else { continue };
                    let recipient = recipient_of(&key);
                    let unread = unread_total!(conn, recipient);
                    row.data = finished(row, unread)?;
                    diesel::update(webhook_outbox::table.find(&row.id))
                        .set((webhook_outbox::data.eq(&row.data), webhook_outbox::collapse_key.eq(None::<String>)))
                        .execute(conn)
                        .await?;
                }
                Ok(rows)
            })
            .await?
        });
        rows.into_iter().map(OutboxRow::into_event).collect()
    }

    /// Records an attempt at a claimed event (one no longer pending is left as it is).
    pub async fn record_webhook_attempt(&self, id: Uuid, at: Timestamp, outcome: &Attempt) -> StoreResult<()> {
        let (id, at) = (id.to_string(), at.millis());
        with_conn!(self, copied(outcome), |conn| {
            let row = webhook_outbox::table
                .filter(webhook_outbox::id.eq(&id))
                .filter(webhook_outbox::state.eq(OutboxState::Pending.as_str()));
            let tried =
                (webhook_outbox::attempts.eq(webhook_outbox::attempts + 1), webhook_outbox::last_attempt_at.eq(at));
            match outcome {
                Attempt::Delivered => {
                    diesel::update(row)
                        .set((tried, webhook_outbox::state.eq(OutboxState::Delivered.as_str())))
                        .execute(conn)
                        .await?
                }
                Attempt::Retry { at: next, error } => {
                    diesel::update(row)
                        .set((
                            tried,
                            webhook_outbox::next_attempt_at.eq(next.millis()),
                            webhook_outbox::last_error.eq(error),
                        ))
                        .execute(conn)
                        .await?
                }
                Attempt::Failed { error } => {
                    diesel::update(row)
                        .set((
                            tried,
                            webhook_outbox::state.eq(OutboxState::Failed.as_str()),
                            webhook_outbox::last_error.eq(error),
                        ))
                        .execute(conn)
                        .await?
                }
            };
        });
        Ok(())
    }

    /// Outbox rows by state, cluster-wide.
    pub async fn webhook_counts(&self) -> StoreResult<WebhookCounts> {
        let rows: Vec<(String, i64)> = with_conn!(self, |conn| {
            webhook_outbox::table
                .group_by(webhook_outbox::state)
                .select((webhook_outbox::state, count_star()))
                .load(conn)
                .await?
        });
        let mut counts = WebhookCounts::default();
        for (state, count) in rows {
            match state.parse::<OutboxState>() {
                Ok(OutboxState::Pending) => counts.pending = count,
                Ok(OutboxState::Delivered) => counts.delivered = count,
                Ok(OutboxState::Failed) => counts.failed = count,
                Err(_) => return Err(corrupt(&state, "unknown state")),
            }
        }
        Ok(counts)
    }

    /// Events kept as failed, newest first (by `created_at`, then id), after the cursor when
    /// given: the last one's `created_at` and, to go on among events created at that same
    /// time, its id.
    pub async fn failed_webhooks(
        &self,
        limit: i64,
        before: Option<(Timestamp, Option<Uuid>)>,
    ) -> StoreResult<Vec<WebhookEvent>> {
        let (before, before_id) = before.map_or((i64::MAX, None), |(at, id)| (at.millis(), id));
        let before_id = before_id.map(|id| id.to_string()).unwrap_or_default();
        let before_id = before_id.as_str();
        let rows: Vec<OutboxRow> = with_conn!(self, copied(before_id), |conn| {
            webhook_outbox::table
                .filter(webhook_outbox::state.eq(OutboxState::Failed.as_str()))
                .filter(
                    webhook_outbox::created_at
                        .lt(before)
                        .or(webhook_outbox::created_at.eq(before).and(webhook_outbox::id.lt(before_id))),
                )
                .order((webhook_outbox::created_at.desc(), webhook_outbox::id.desc()))
                .limit(limit)
                .select(OutboxRow::as_select())
                .load(conn)
                .await?
        });
        rows.into_iter().map(OutboxRow::into_event).collect()
    }

    /// One outbox event, in any state.
    pub async fn webhook_event(&self, id: Uuid) -> StoreResult<Option<WebhookEvent>> {
        let id = id.to_string();
        let row: Option<OutboxRow> = with_conn!(self, |conn| {
            webhook_outbox::table.find(&id).select(OutboxRow::as_select()).first(conn).await.optional()?
        });
        row.map(OutboxRow::into_event).transpose()
    }

    /// Puts a failed event back to pending, due now, with a fresh set of attempts; false if
    /// there is no failed event with that id.
    pub async fn retry_webhook(&self, id: Uuid) -> StoreResult<bool> {
        let (id, now) = (id.to_string(), Timestamp::now().millis());
        let changed = with_conn!(self, |conn| {
            diesel::update(
                webhook_outbox::table
                    .filter(webhook_outbox::id.eq(&id))
                    .filter(webhook_outbox::state.eq(OutboxState::Failed.as_str())),
            )
            .set((
                webhook_outbox::state.eq(OutboxState::Pending.as_str()),
                webhook_outbox::attempts.eq(0),
                webhook_outbox::next_attempt_at.eq(now),
            ))
            .execute(conn)
            .await?
        });
        Ok(changed == 1)
    }

    /// Deletes delivered events last attempted before `before`; how many.
    pub async fn purge_delivered_webhooks(&self, before: Timestamp) -> StoreResult<usize> {
        let before = before.millis();
        let deleted = with_conn!(self, |conn| {
            diesel::delete(
                webhook_outbox::table
                    .filter(webhook_outbox::state.eq(OutboxState::Delivered.as_str()))
                    .filter(webhook_outbox::last_attempt_at.lt(before)),
            )
            .execute(conn)
            .await?
        });
        Ok(deleted)
    }
}
