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

/// A stored message's idempotency key: room, sender, client_id.
type Key = (String, String, String);

/// The batch's statements, per backend, in two steps around the work done in Rust. PostgreSQL
/// answers each step for every room of the batch in one statement, so a commit costs the same
/// handful of round trips however many rooms it touches (with one statement per room, a batch
/// spread over a hundred rooms took ~300 round trips and commits ran at ~80 ms), and sends
/// statements that need not wait for one another together (pipelined). SQLite runs
/// in-process, where a statement per room costs no round trip and diesel-async has no batch
/// insert.
trait BatchWrites {
    /// Takes the rooms' row write locks, in id order, until commit, and reads what the batch
    /// needs: each room's last seq (a missing room is absent), the stored messages among
    /// `keys`, and `count` fresh message numbers (numbers left unused leave gaps).
    fn read(&mut self, rooms: &[&str], keys: &[Key], count: usize) -> impl Future<Output = QueryResult<Read>> + Send;
    /// Sets each room's last seq and activity time, and inserts the messages.
    fn write(
        &mut self,
        seqs: &[(String, i64)],
        now: i64,
        rows: &[MessageRow],
    ) -> impl Future<Output = QueryResult<()>> + Send;
}

/// What a batch reads under its rooms' locks.
struct Read {
    last_seqs: HashMap<String, i64>,
    stored: Vec<MessageRow>,
    numbers: Vec<i64>,
}

#[derive(diesel::QueryableByName)]
struct Reserved {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    number: i64,
}

impl BatchWrites for diesel_async::AsyncPgConnection {
    async fn read(&mut self, rooms: &[&str], keys: &[Key], count: usize) -> QueryResult<Read> {
        // The lock first: a message another node committed in these rooms is then visible to
        // the read of stored messages. The read and the numbers go together.
        let conn: &diesel_async::AsyncPgConnection = self;
        let last_seqs = postgres::lock_rooms(conn, rooms).await?;
        let (stored, numbers) =
            futures_util::future::try_join(postgres::stored(conn, keys), postgres::reserve_numbers(conn, count))
                .await?;
        Ok(Read { last_seqs, stored, numbers })
    }

    async fn write(&mut self, seqs: &[(String, i64)], now: i64, rows: &[MessageRow]) -> QueryResult<()> {
        let conn: &diesel_async::AsyncPgConnection = self;
        futures_util::future::try_join(postgres::set_last_seqs(conn, seqs, now), postgres::insert_messages(conn, rows))
            .await?;
        Ok(())
    }
}

/// The PostgreSQL statements, on a shared connection so that they can be pipelined, each of
/// fixed text and kept prepared (lists travel as arrays).
mod postgres {
    use super::*;
    use crate::store::prepared::kept;
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    use diesel_async::AsyncPgConnection;

    pub(super) async fn lock_rooms(mut conn: &AsyncPgConnection, ids: &[&str]) -> QueryResult<HashMap<String, i64>> {
        enum LockRooms {}
        // ORDER BY with FOR UPDATE locks the rows as they leave the sort: in id order, so
        // concurrent writers on other nodes cannot deadlock.
        let query = rooms::table
            .filter(rooms::id.eq_any(ids))
            .order(rooms::id.asc())
            .select((rooms::id, rooms::last_seq))
            .for_update();
        let rows: Vec<(String, i64)> = kept::<LockRooms, _>(query).load(&mut conn).await?;
        Ok(rows.into_iter().collect())
    }

    pub(super) async fn stored(mut conn: &AsyncPgConnection, keys: &[Key]) -> QueryResult<Vec<MessageRow>> {
        enum StoredByKey {}
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&Key) -> &str| keys.iter().map(f).collect::<Vec<&str>>();
        // One probe of the unique (room_id, sender_id, client_id) index per key. LATERAL keeps
        // it so in the plan PostgreSQL keeps: a plain join, planned while `messages` was
        // small, stayed a hash join over the whole table (11 ms a batch within seconds).
        let query = diesel::sql_query(
            "SELECT m.id, m.room_id, m.seq, m.sender_id, m.kind, m.body, m.client_id, m.created_at, m.number \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS k(room_id, sender_id, client_id) \
             CROSS JOIN LATERAL (SELECT * FROM messages WHERE room_id = k.room_id AND sender_id = k.sender_id \
             AND client_id = k.client_id LIMIT 1) AS m",
        )
        .bind::<Array<Text>, _>(column(|k| k.0.as_str()))
        .bind::<Array<Text>, _>(column(|k| k.1.as_str()))
        .bind::<Array<Text>, _>(column(|k| k.2.as_str()));
        kept::<StoredByKey, _>(query).load(&mut conn).await
    }

    pub(super) async fn set_last_seqs(
        mut conn: &AsyncPgConnection,
        seqs: &[(String, i64)],
        now: i64,
    ) -> QueryResult<()> {
        enum SetLastSeqs {}
        if seqs.is_empty() {
            return Ok(());
        }
        let query = diesel::sql_query(
            "UPDATE rooms SET last_seq = v.seq, last_activity_at = $3 \
             FROM unnest($1::text[], $2::int8[]) AS v(id, seq) WHERE rooms.id = v.id",
        )
        .bind::<Array<Text>, _>(seqs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(seqs.iter().map(|(_, seq)| *seq).collect::<Vec<_>>())
        .bind::<BigInt, _>(now);
        kept::<SetLastSeqs, _>(query).execute(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn insert_messages(mut conn: &AsyncPgConnection, rows: &[MessageRow]) -> QueryResult<()> {
        enum InsertMessages {}
        if rows.is_empty() {
            return Ok(());
        }
        // Borrowed, not copied: a batch's bodies can run to megabytes.
        let texts = |f: fn(&MessageRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let numbers = |f: fn(&MessageRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        // One text for any number of rows (a VALUES list would be a new statement per count).
        let query = diesel::sql_query(
            "INSERT INTO messages (id, room_id, seq, sender_id, kind, body, client_id, created_at, number) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::int8[], $9::int8[])",
        )
        .bind::<Array<Text>, _>(texts(|r| r.id.as_str()))
        .bind::<Array<Text>, _>(texts(|r| r.room_id.as_str()))
        .bind::<Array<BigInt>, _>(numbers(|r| r.seq))
        .bind::<Array<Text>, _>(texts(|r| r.sender_id.as_str()))
        .bind::<Array<Text>, _>(texts(|r| r.kind.as_str()))
        .bind::<Array<Text>, _>(texts(|r| r.body.as_str()))
        .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.client_id.as_deref()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(numbers(|r| r.created_at))
        .bind::<Array<BigInt>, _>(numbers(|r| r.number));
        kept::<InsertMessages, _>(query).execute(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn reserve_numbers(mut conn: &AsyncPgConnection, count: usize) -> QueryResult<Vec<i64>> {
        enum ReserveNumbers {}
        // A sequence: nodes writing at once never wait on one another for numbers.
        let query = diesel::sql_query("SELECT nextval('message_numbers') AS number FROM generate_series(1, $1)")
            .bind::<BigInt, _>(count as i64);
        let reserved: Vec<Reserved> = kept::<ReserveNumbers, _>(query).load(&mut conn).await?;
        Ok(reserved.into_iter().map(|r| r.number).collect())
    }
}

impl BatchWrites for super::SqliteAsync {
    async fn read(&mut self, rooms: &[&str], keys: &[Key], count: usize) -> QueryResult<Read> {
        // The numbers first: a write, so the transaction takes SQLite's write lock now
        // (waiting out busy_timeout) rather than failing to upgrade a read lock later.
        let numbers = sqlite::reserve_numbers(self, count).await?;
        let last_seqs = sqlite::lock_rooms(self, rooms).await?;
        let stored = sqlite::stored(self, keys).await?;
        Ok(Read { last_seqs, stored, numbers })
    }

    async fn write(&mut self, seqs: &[(String, i64)], now: i64, rows: &[MessageRow]) -> QueryResult<()> {
        sqlite::set_last_seqs(self, seqs, now).await?;
        sqlite::insert_messages(self, rows).await
    }
}

/// The SQLite statements, one after another on the in-process connection.
mod sqlite {
    use super::*;
    use crate::store::SqliteAsync;

    pub(super) async fn lock_rooms(conn: &mut SqliteAsync, ids: &[&str]) -> QueryResult<HashMap<String, i64>> {
        let mut seqs = HashMap::new();
        for &id in ids {
            // SQLite has one writer at a time: the write itself is the lock.
            let last_seq: Option<i64> = diesel::update(rooms::table.find(id))
                .set(rooms::last_seq.eq(rooms::last_seq))
                .returning(rooms::last_seq)
                .get_result(conn)
                .await
                .optional()?;
            if let Some(seq) = last_seq {
                seqs.insert(id.to_owned(), seq);
            }
        }
        Ok(seqs)
    }

    pub(super) async fn stored(conn: &mut SqliteAsync, keys: &[Key]) -> QueryResult<Vec<MessageRow>> {
        let mut rows = Vec::new();
        for (room, sender, client_id) in keys {
            rows.extend(
                messages::table
                    .filter(messages::room_id.eq(room))
                    .filter(messages::sender_id.eq(sender))
                    .filter(messages::client_id.eq(client_id))
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?,
            );
        }
        Ok(rows)
    }

    pub(super) async fn set_last_seqs(conn: &mut SqliteAsync, seqs: &[(String, i64)], now: i64) -> QueryResult<()> {
        for (id, seq) in seqs {
            diesel::update(rooms::table.find(id))
                .set((rooms::last_seq.eq(seq), rooms::last_activity_at.eq(now)))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn insert_messages(conn: &mut SqliteAsync, rows: &[MessageRow]) -> QueryResult<()> {
        for row in rows {
            insert_into(messages::table).values(row).execute(conn).await?;
        }
        Ok(())
    }

    pub(super) async fn reserve_numbers(conn: &mut SqliteAsync, count: usize) -> QueryResult<Vec<i64>> {
        let reserved: Reserved = diesel::sql_query(
            "UPDATE counters SET value = value + ? WHERE name = 'message_numbers' RETURNING value AS number",
        )
        .bind::<diesel::sql_types::BigInt, _>(count as i64)
        .get_result(conn)
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
    let room_ids: Vec<&str> = by_room.keys().map(String::as_str).collect();
    let keys: Vec<Key> =
        batch.iter().filter_map(|m| Some((m.room.to_string(), m.sender.to_string(), m.client_id.clone()?))).collect();
    let results = with_conn!(store, |conn| {
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            let mut results: Vec<Option<Result<StoredMessage, domain::Error>>> =
                (0..batch.len()).map(|_| None).collect();
            let Read { last_seqs, stored, numbers } = conn.read(&room_ids, &keys, batch.len()).await?;
            let mut known: HashMap<Key, MessageRow> = HashMap::new();
            for row in stored {
                if let Some(client_id) = row.client_id.clone() {
                    known.insert((row.room_id.clone(), row.sender_id.clone(), client_id), row);
                }
            }
            let mut inserts: Vec<MessageRow> = Vec::with_capacity(batch.len());
            let mut new_seqs: Vec<(String, i64)> = Vec::new();
            let mut numbers = numbers.into_iter();
            for (room, indexes) in &by_room {
                let Some(&last_seq) = last_seqs.get(room) else {
                    for &index in indexes {
                        results[index] = Some(Err(domain::Error::not_found("no such room")));
                    }
                    continue;
                };
                let mut seq = last_seq;
                for &index in indexes {
                    let request = &batch[index];
                    let key = request
                        .client_id
                        .as_ref()
                        .map(|client_id| (room.clone(), request.sender.to_string(), client_id.clone()));
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
                if seq > last_seq {
                    new_seqs.push((room.clone(), seq));
                }
            }
            conn.write(&new_seqs, now, &inserts).await?;
            Ok(results)
        })
        .await?
    });
    Ok(results.into_iter().map(|result| result.unwrap_or(Err(domain::Error::Internal))).collect())
}
