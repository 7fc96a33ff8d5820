//! The batching message writer (group commit): messages queued while one transaction commits
//! go together into the next, so throughput is not one commit per message. Each sender is
//! answered only after the transaction holding its message has committed.
//!
//! Per-room `seq` comes from `rooms.last_seq`, bumped in the same transaction as the insert
//! after taking the room row's write lock, so it is gapless and strictly increasing under
//! any number of writers on any number of nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::rows::MessageRow;
use super::schema::{messages, rooms};
use super::{Store, StoreError, with_conn};
use crate::domain::{self, Message, MessageBody, MessageKind, RoomId, Timestamp, UserId};
use crate::metrics::Metrics;

/// A message to persist, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room: RoomId,
    pub sender: UserId,
    pub kind: MessageKind,
    pub body: MessageBody,
    pub client_id: Option<String>,
}

/// A durable message; `duplicate` when its `client_id` was already stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Message,
    pub duplicate: bool,
}

type Reply = oneshot::Sender<Result<StoredMessage, domain::Error>>;

enum Command {
    Write(NewMessage, Reply),
    Flush(oneshot::Sender<()>),
}

/// Handle to the node's writer task; cheap to clone.
#[derive(Clone)]
pub struct MessageWriter {
    commands: mpsc::Sender<Command>,
}

impl MessageWriter {
    /// Starts the writer task. `queue` bounds the messages waiting for a batch: when it is
    /// full, senders wait (backpressure) rather than growing memory.
    pub fn start(store: Store, max_batch: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        let (commands, inbox) = mpsc::channel(queue.max(1));
        tokio::spawn(run(store, inbox, max_batch.max(1), metrics));
        Self { commands }
    }

    /// Queues one message now (so messages keep the order they are submitted in) and
    /// returns a future that resolves once it is committed. A full queue is refused with
    /// `unavailable` rather than waited on.
    pub fn submit(&self, message: NewMessage) -> impl Future<Output = Result<StoredMessage, domain::Error>> + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.commands.try_send(Command::Write(message, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                domain::Error::Unavailable("too many messages in flight; retry".into())
            }
            mpsc::error::TrySendError::Closed(_) => domain::Error::Unavailable("writer stopped".into()),
        });
        async move {
            queued?;
            answer.await.map_err(|_| domain::Error::Unavailable("writer stopped".into()))?
        }
    }

    /// Resolves once everything queued before this call is committed (graceful shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// How each backend inserts a batch of messages: one multi-row statement per chunk on
/// PostgreSQL (one round trip); row by row on SQLite, where diesel-async has no batch insert
/// and rows inside one transaction cost no extra fsync.
trait InsertMessages {
    fn insert_messages(&mut self, rows: &[MessageRow]) -> impl Future<Output = QueryResult<()>> + Send;
    /// `count` fresh message numbers, increasing; numbers left unused leave gaps.
    fn reserve_numbers(&mut self, count: usize) -> impl Future<Output = QueryResult<Vec<i64>>> + Send;
}

#[derive(diesel::QueryableByName)]
struct Reserved {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    number: i64,
}

impl InsertMessages for diesel_async::AsyncPgConnection {
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> QueryResult<()> {
        // 8 binds a row: chunks stay far below PostgreSQL's 65535 bind limit.
        for chunk in rows.chunks(1000) {
            insert_into(messages::table).values(chunk).execute(self).await?;
        }
        Ok(())
    }

    async fn reserve_numbers(&mut self, count: usize) -> QueryResult<Vec<i64>> {
        // A sequence: nodes writing at once never wait on one another for numbers.
        let reserved: Vec<Reserved> =
            diesel::sql_query("SELECT nextval('message_numbers') AS number FROM generate_series(1, $1)")
                .bind::<diesel::sql_types::BigInt, _>(count as i64)
                .load(self)
                .await?;
        Ok(reserved.into_iter().map(|r| r.number).collect())
    }
}

impl InsertMessages for super::SqliteAsync {
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> QueryResult<()> {
        for row in rows {
            insert_into(messages::table).values(row).execute(self).await?;
        }
        Ok(())
    }

    async fn reserve_numbers(&mut self, count: usize) -> QueryResult<Vec<i64>> {
        // A write, so the transaction takes the write lock now (waiting out busy_timeout)
        // rather than failing to upgrade a read lock later.
        let reserved: Reserved = diesel::sql_query(
            "UPDATE counters SET value = value + ? WHERE name = 'message_numbers' RETURNING value AS number",
        )
        .bind::<diesel::sql_types::BigInt, _>(count as i64)
        .get_result(self)
        .await?;
        let first = reserved.number - count as i64 + 1;
        Ok((first..=reserved.number).collect())
    }
}

async fn run(store: Store, mut inbox: mpsc::Receiver<Command>, max_batch: usize, metrics: Arc<Metrics>) {
    let mut batch: Vec<(NewMessage, Reply)> = Vec::with_capacity(max_batch);
    let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = inbox.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(message, reply) => batch.push((message, reply)),
                Command::Flush(done) => flushed.push(done),
            }
            if batch.len() < max_batch {
                next = inbox.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let requests: Vec<NewMessage> = batch.iter().map(|(m, _)| m.clone()).collect();
            let outcome = commit(&store, &requests).await;
            metrics.write_batch_size.observe(requests.len() as f64);
            metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok(results) => {
                    for ((_, reply), result) in batch.drain(..).zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(err) => {
                    let err = domain::Error::from(err);
                    for (_, reply) in batch.drain(..) {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch in one transaction; returns one result per request, in order.
async fn commit(store: &Store, batch: &[NewMessage]) -> Result<Vec<Result<StoredMessage, domain::Error>>, StoreError> {
    let now = Timestamp::now().millis();
    // Rooms in id order so that concurrent writers on other nodes lock them in the same
    // order and cannot deadlock.
    let mut by_room: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, request) in batch.iter().enumerate() {
        by_room.entry(request.room.to_string()).or_default().push(index);
    }
    let results = with_conn!(store, |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let mut results: Vec<Option<Result<StoredMessage, domain::Error>>> =
                (0..batch.len()).map(|_| None).collect();
            let mut inserts: Vec<MessageRow> = Vec::with_capacity(batch.len());
            let mut numbers = conn.reserve_numbers(batch.len()).await?.into_iter();
            for (room, indexes) in &by_room {
                // Takes the room row's write lock until commit and reads its last seq.
                let last_seq: Option<i64> = diesel::update(rooms::table.find(room))
                    .set(rooms::last_seq.eq(rooms::last_seq))
                    .returning(rooms::last_seq)
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(mut seq) = last_seq else {
                    for &index in indexes {
                        results[index] = Some(Err(domain::Error::not_found("no such room")));
                    }
                    continue;
                };
                let client_ids: Vec<&str> = indexes.iter().filter_map(|&i| batch[i].client_id.as_deref()).collect();
                let senders: Vec<&str> = indexes
                    .iter()
                    .filter(|&&i| batch[i].client_id.is_some())
                    .map(|&i| batch[i].sender.as_str())
                    .collect();
                let mut known: HashMap<(String, String), MessageRow> = HashMap::new();
                if !client_ids.is_empty() {
                    // All three columns, so the lookup is a probe of the unique
                    // (room_id, sender_id, client_id) index, not a scan of the room.
                    let stored: Vec<MessageRow> = messages::table
                        .filter(messages::room_id.eq(room))
                        .filter(messages::sender_id.eq_any(&senders))
                        .filter(messages::client_id.eq_any(&client_ids))
                        .select(MessageRow::as_select())
                        .load(conn)
                        .await?;
                    for row in stored {
                        if let Some(client_id) = row.client_id.clone() {
                            known.insert((row.sender_id.clone(), client_id), row);
                        }
                    }
                }
                let first_new = inserts.len();
                for &index in indexes {
                    let request = &batch[index];
                    let key =
                        request.client_id.as_ref().map(|client_id| (request.sender.to_string(), client_id.clone()));
                    if let Some(existing) = key.as_ref().and_then(|key| known.get(key)) {
                        results[index] =
                            Some(Ok(StoredMessage { message: Message::from(existing.clone()), duplicate: true }));
                        continue;
                    }
                    seq += 1;
                    let row = MessageRow {
                        id: Uuid::now_v7().to_string(),
                        room_id: room.clone(),
                        seq,
                        sender_id: request.sender.to_string(),
                        kind: request.kind.as_str().to_owned(),
                        body: request.body.clone().into_inner(),
                        client_id: request.client_id.clone(),
                        created_at: now,
                        number: numbers.next().ok_or(diesel::result::Error::NotFound)?,
                    };
                    if let Some(key) = key {
                        known.insert(key, row.clone());
                    }
                    results[index] = Some(Ok(StoredMessage { message: Message::from(row.clone()), duplicate: false }));
                    inserts.push(row);
                }
                if inserts.len() > first_new {
                    diesel::update(rooms::table.find(room))
                        .set((rooms::last_seq.eq(seq), rooms::last_activity_at.eq(now)))
                        .execute(conn)
                        .await?;
                }
            }
            conn.insert_messages(&inserts).await?;
            Ok(results)
        })
        .await?
    });
    Ok(results.into_iter().map(|result| result.unwrap_or(Err(domain::Error::Internal))).collect())
}
