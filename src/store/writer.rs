//! The batching message writer (group commit): messages queued while one batch is written go
//! together into the next, so throughput is not one commit per message. Each sender is
//! answered only after the batch holding its message has committed.
//!
//! Per-room `seq` comes from `rooms.last_seq`, bumped in the same atomic write as the insert
//! under the room row's write lock, so it is gapless and strictly increasing under any number
//! of writers on any number of nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::prepared::kept;
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

/// What is done with a new message the moment its batch commits, before its sender is
/// answered and whether or not the sender still waits: a message committed after its sender
/// gave up is still announced, once. Not called for a resend of a stored message.
pub type OnCommit = Box<dyn FnOnce(&Message) + Send>;

/// A message waiting for its batch.
struct Queued {
    message: NewMessage,
    reply: Reply,
    on_commit: Option<OnCommit>,
    at: Instant,
}

enum Command {
    Write(Queued),
    Flush(oneshot::Sender<()>),
}

/// How the writer groups messages into batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most messages one batch writes.
    pub max: usize,
    /// Longest a message waits, from when it is queued, for others to join its batch. A batch
    /// costs the database about as much as dozens of its messages, so batches under load
    /// should not be tiny. A message that already waited out a commit, or that comes after a
    /// window of quiet, goes at once.
    pub window: Duration,
}

/// Handle to the node's writer task; cheap to clone.
#[derive(Clone)]
pub struct MessageWriter {
    commands: mpsc::Sender<Command>,
}

impl MessageWriter {
    /// Starts the writer task. `queue` bounds the messages waiting for a batch: when it is
    /// full, senders wait (backpressure) rather than growing memory.
    pub fn start(store: Store, batching: Batching, queue: usize, metrics: Arc<Metrics>) -> Self {
        let (commands, inbox) = mpsc::channel(queue.max(1));
        tokio::spawn(run(store, inbox, Batching { max: batching.max.max(1), ..batching }, metrics));
        Self { commands }
    }

    /// Queues one message now (so messages keep the order they are submitted in) and
    /// returns a future that resolves once it is committed. A full queue is refused with
    /// `unavailable` rather than waited on, and so is a message not committed within
    /// [`super::DATABASE_TIMEOUT`] (the database is down, hung or overloaded): its sender is not
    /// acknowledged and resends it.
    pub fn submit(&self, message: NewMessage) -> impl Future<Output = Result<StoredMessage, domain::Error>> + use<> {
        self.submit_then(message, None)
    }

    /// [`Self::submit`], with what to do once the message is committed (see [`OnCommit`]).
    pub fn submit_then(
        &self,
        message: NewMessage,
        on_commit: Option<OnCommit>,
    ) -> impl Future<Output = Result<StoredMessage, domain::Error>> + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued { message, reply, on_commit, at: Instant::now() };
        let queued = self.commands.try_send(Command::Write(queued)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                domain::Error::Unavailable("too many messages in flight; retry".into())
            }
            mpsc::error::TrySendError::Closed(_) => domain::Error::Unavailable("writer stopped".into()),
        });
        async move {
            queued?;
            match tokio::time::timeout(super::DATABASE_TIMEOUT, answer).await {
                Ok(answer) => answer.map_err(|_| domain::Error::Unavailable("writer stopped".into()))?,
                Err(_) => Err(domain::Error::Unavailable(
                    "the database did not answer in time; resend with the same client_id".into(),
                )),
            }
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

/// A message of the batch not stored yet: its seq will be its room's last seq before the
/// batch plus `nth`, and the database gives it its number.
#[derive(Clone)]
struct Pending {
    id: String,
    room: RoomId,
    /// `room` as stored, bound as text.
    room_id: String,
    nth: i64,
    sender: UserId,
    /// `sender` as stored, bound as text.
    sender_id: String,
    kind: MessageKind,
    body: String,
    client_id: Option<String>,
}

/// What the database gave a pending message.
#[derive(diesel::QueryableByName)]
struct Inserted {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    number: i64,
}

/// SQLite's reservation of a run of message numbers: the last of them.
#[derive(diesel::QueryableByName)]
struct Reserved {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    number: i64,
}

impl Pending {
    fn into_row(self, seq: i64, number: i64, created_at: i64) -> MessageRow {
        MessageRow {
            id: self.id,
            room_id: self.room,
            seq,
            sender_id: self.sender,
            kind: self.kind,
            body: self.body,
            client_id: self.client_id,
            created_at,
            number,
        }
    }
}

/// The batch's statements, per backend.
trait BatchWrites {
    /// The stored messages among `keys`.
    fn stored(&mut self, keys: &[Key]) -> impl Future<Output = QueryResult<Vec<MessageRow>>> + Send;
    /// All or nothing: adds each room's count to its last seq and activity time (taking the
    /// rooms' row locks in the order of `counts`, which is id order, so writers on other
    /// nodes cannot deadlock), and inserts the pending messages, sorted by room and `nth`,
    /// with ascending numbers. Messages of a missing room are left out. Fails whole on a
    /// `client_id` already stored.
    fn insert(
        &mut self,
        counts: &[(&str, i64)],
        now: i64,
        pending: &[Pending],
    ) -> impl Future<Output = QueryResult<Vec<Inserted>>> + Send;
}

/// The PostgreSQL statements, each of fixed text and kept prepared (lists travel as arrays).
impl BatchWrites for diesel_async::AsyncPgConnection {
    async fn stored(&mut self, keys: &[Key]) -> QueryResult<Vec<MessageRow>> {
        enum StoredByKey {}
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
        kept::<StoredByKey, _>(query).load(self).await
    }

    async fn insert(&mut self, counts: &[(&str, i64)], now: i64, pending: &[Pending]) -> QueryResult<Vec<Inserted>> {
        enum InsertBatch {}
        // One statement, so one round trip and no BEGIN/COMMIT: a batch's whole write.
        // `locked` takes the rooms' row locks in the order of `counts` (id order, so writers
        // on other nodes cannot deadlock), one primary-key probe per room: written as `= ANY`,
        // PostgreSQL planned a scan of a small `rooms` (hundreds of rows) that compared every
        // row with every id, 13 % of its CPU in the chat mix. `bumped` then reads each room's
        // newest last_seq (a row another node committed meanwhile is re-read under the lock)
        // and hands out the seqs. ORDER BY gives each room's messages their numbers in seq order.
        // A node whose clock lags never moves a room's activity back (the conversation list's order).
        let query = diesel::sql_query(
            "WITH locked AS (SELECT r.id, c.n FROM unnest($1::text[], $2::int8[]) AS c(id, n) \
               CROSS JOIN LATERAL (SELECT id FROM rooms WHERE rooms.id = c.id FOR UPDATE) AS r), \
             bumped AS (UPDATE rooms SET last_seq = rooms.last_seq + locked.n, \
               last_activity_at = GREATEST(rooms.last_activity_at, $3) \
               FROM locked WHERE rooms.id = locked.id RETURNING rooms.id, rooms.last_seq - locked.n AS base) \
             INSERT INTO messages (id, room_id, seq, sender_id, kind, body, client_id, created_at) \
             SELECT m.id, m.room_id, bumped.base + m.nth, m.sender_id, m.kind, m.body, m.client_id, $3 \
             FROM unnest($4::text[], $5::text[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[]) \
               AS m(id, room_id, nth, sender_id, kind, body, client_id) \
             JOIN bumped ON bumped.id = m.room_id ORDER BY m.room_id, m.nth \
             RETURNING id, seq, number",
        )
        .bind::<Array<Text>, _>(counts.iter().map(|(room, _)| *room).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>())
        .bind::<BigInt, _>(now);
        // Borrowed, not copied: a batch's bodies can run to megabytes.
        let texts = |f: fn(&Pending) -> &str| pending.iter().map(f).collect::<Vec<&str>>();
        let query = query
            .bind::<Array<Text>, _>(texts(|p| p.id.as_str()))
            .bind::<Array<Text>, _>(texts(|p| p.room_id.as_str()))
            .bind::<Array<BigInt>, _>(pending.iter().map(|p| p.nth).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(texts(|p| p.sender_id.as_str()))
            .bind::<Array<Text>, _>(texts(|p| p.kind.as_str()))
            .bind::<Array<Text>, _>(texts(|p| p.body.as_str()))
            .bind::<Array<Nullable<Text>>, _>(pending.iter().map(|p| p.client_id.as_deref()).collect::<Vec<_>>());
        kept::<InsertBatch, _>(query).load(self).await
    }
}

/// The SQLite statements, one after another in one transaction on the in-process connection
/// (no round trips to save, and diesel-async has no batch insert for it).
impl BatchWrites for super::SqliteAsync {
    async fn stored(&mut self, keys: &[Key]) -> QueryResult<Vec<MessageRow>> {
        let mut rows = Vec::new();
        for (room, sender, client_id) in keys {
            rows.extend(
                messages::table
                    .filter(messages::room_id.eq(room))
                    .filter(messages::sender_id.eq(sender))
                    .filter(messages::client_id.eq(client_id))
                    .select(MessageRow::as_select())
                    .load(self)
                    .await?,
            );
        }
        Ok(rows)
    }

    async fn insert(&mut self, counts: &[(&str, i64)], now: i64, pending: &[Pending]) -> QueryResult<Vec<Inserted>> {
        self.transaction(async |conn| {
            // The numbers first: a write, so the transaction takes SQLite's write lock now
            // (waiting out busy_timeout) rather than failing to upgrade a read lock later.
            let reserved: Reserved = diesel::sql_query(
                "UPDATE counters SET value = value + ? WHERE name = 'message_numbers' RETURNING value AS number",
            )
            .bind::<BigInt, _>(pending.len() as i64)
            .get_result(conn)
            .await?;
            let mut numbers = reserved.number - pending.len() as i64 + 1..;
            let mut bases = HashMap::new();
            for &(room, n) in counts {
                let last_seq: Option<i64> = diesel::update(rooms::table.find(room))
                    .set((
                        rooms::last_seq.eq(rooms::last_seq + n),
                        // Never back (a clock stepped back): SQLite's two-argument max.
                        rooms::last_activity_at
                            .eq(diesel::dsl::sql::<BigInt>("max(last_activity_at, ").bind::<BigInt, _>(now).sql(")")),
                    ))
                    .returning(rooms::last_seq)
                    .get_result(conn)
                    .await
                    .optional()?;
                if let Some(last_seq) = last_seq {
                    bases.insert(room, last_seq - n);
                }
            }
            let mut inserted = Vec::with_capacity(pending.len());
            for message in pending {
                let Some(base) = bases.get(message.room_id.as_str()) else { continue };
                let number = numbers.next().expect("an unbounded range");
                let row = message.clone().into_row(base + message.nth, number, now);
                let written = Inserted { id: row.id.clone(), seq: row.seq, number: row.number };
                insert_into(messages::table).values(row).execute(conn).await?;
                inserted.push(written);
            }
            Ok(inserted)
        })
        .await
    }
}

/// How long a sender whose message was a resend of a stored one counts as resending.
const RESENDING_FOR: Duration = Duration::from_secs(10);

/// The senders who resent a stored message lately. A batch holding a keyed message of theirs
/// looks the stored ones up before it writes, rather than being refused first and written
/// again: a client resending one id over and over would otherwise cost every batch it joins,
/// everyone else's messages in it, a refused write.
#[derive(Default)]
struct Resenders {
    since: HashMap<UserId, Instant>,
    pruned: Option<Instant>,
}

impl Resenders {
    fn note(&mut self, sender: &UserId) {
        self.since.insert(sender.clone(), Instant::now());
    }

    /// Whether a batch should look its keys up before writing.
    fn among(&self, batch: &[NewMessage]) -> bool {
        !self.since.is_empty() && batch.iter().any(|m| m.client_id.is_some() && self.since.contains_key(&m.sender))
    }

    /// Forgets senders quiet for [`RESENDING_FOR`]; at most once a second.
    fn prune(&mut self) {
        if self.pruned.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.pruned = Some(Instant::now());
        self.since.retain(|_, at| at.elapsed() < RESENDING_FOR);
    }
}

async fn run(store: Store, mut inbox: mpsc::Receiver<Command>, batching: Batching, metrics: Arc<Metrics>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(batching.max);
    let mut resenders = Resenders::default();
    let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
    // When the writer last finished a batch.
    let mut idle_since = Instant::now();
    while let Some(first) = inbox.recv().await {
        // The batch waits for more until its first message has waited the window, but only
        // while messages keep coming: after a window of quiet, a lone message goes at once.
        // A flush (shutdown) ends the wait.
        let mut deadline = match &first {
            Command::Write(queued) if queued.at.duration_since(idle_since) < batching.window => {
                queued.at + batching.window
            }
            _ => Instant::now(),
        };
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                // Its sender was already told it failed: writing it now would store a
                // message its sender will send again.
                Command::Write(queued)
                    if queued.reply.is_closed() && queued.at.elapsed() >= super::DATABASE_TIMEOUT =>
                {
                    metrics.write_abandoned.inc();
                }
                Command::Write(queued) => batch.push(queued),
                Command::Flush(done) => {
                    flushed.push(done);
                    deadline = Instant::now();
                }
            }
            if batch.len() < batching.max {
                next = match inbox.try_recv() {
                    Ok(command) => Some(command),
                    Err(_) => tokio::time::timeout_at(deadline, inbox.recv()).await.ok().flatten(),
                };
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let requests: Vec<NewMessage> = batch.iter().map(|queued| queued.message.clone()).collect();
            resenders.prune();
            let outcomes = super::isolating(requests.len(), |range| {
                let part = requests.get(range).unwrap_or_default();
                commit(&store, part, resenders.among(part), &metrics)
            })
            .await;
            metrics.write_batch_size.observe(requests.len() as f64);
            metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
            let mut answered = batch.drain(..);
            for (range, outcome) in outcomes {
                let results: Vec<Result<StoredMessage, domain::Error>> = match outcome {
                    Ok(results) => results,
                    Err(err) => vec![Err(domain::Error::from(err)); range.len()],
                };
                for (queued, result) in answered.by_ref().take(range.len()).zip(results) {
                    match (&result, queued.on_commit) {
                        (Ok(stored), _) if stored.duplicate => resenders.note(&queued.message.sender),
                        (Ok(stored), Some(on_commit)) => on_commit(&stored.message),
                        _ => {}
                    }
                    let _ = queued.reply.send(result);
                }
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        idle_since = Instant::now();
    }
}

/// Writes one batch atomically; returns one result per request, in order.
///
/// Most batches resend nothing, so the first write does not look for stored messages (unless
/// `look_first`: the batch holds a resender's keyed message, see [`Resenders`]): the unique
/// (room, sender, client_id) index refuses a resend, the write changes nothing, and the batch
/// is written again with the stored messages looked up first. A resend can race its original
/// on another node (the lookup misses the original, then the write waits for it and is
/// refused), so this repeats while each lookup finds more than the last: at most once per
/// key, and a refusal that no lookup explains is an error.
async fn commit(
    store: &Store,
    batch: &[NewMessage],
    look_first: bool,
    metrics: &Metrics,
) -> Result<Vec<Result<StoredMessage, domain::Error>>, StoreError> {
    let keys: Vec<Key> =
        batch.iter().filter_map(|m| Some((m.room.to_string(), m.sender.to_string(), m.client_id.clone()?))).collect();
    let mut stored = Vec::new();
    if look_first && !keys.is_empty() {
        let wanted = keys.clone();
        stored = with_conn!(store, |conn| conn.stored(&wanted).await?);
    }
    loop {
        let refused = match write(store, batch, &stored).await {
            Err(StoreError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            ))) if !keys.is_empty() => info,
            outcome => return outcome,
        };
        let wanted = keys.clone();
        let found = with_conn!(store, |conn| conn.stored(&wanted).await?);
        if found.len() <= stored.len() {
            let kind = diesel::result::DatabaseErrorKind::UniqueViolation;
            return Err(StoreError::Query(diesel::result::Error::DatabaseError(kind, refused)));
        }
        metrics.write_resend_retries.inc();
        stored = found;
    }
}

/// What becomes of one request of the batch.
enum Outcome {
    /// Already stored: answered with the stored message.
    Stored(MessageRow),
    /// New: the index of its pending message; `again` when an earlier request of the same
    /// batch carries the same key.
    Pending { index: usize, again: bool },
}

/// What a batch will do: each request's outcome, the messages to insert, and how many each
/// room gets (rooms in id order, each room's messages in submission order).
struct Plan {
    outcomes: Vec<Option<Outcome>>,
    pending: Vec<Pending>,
    counts: Vec<(String, i64)>,
}

/// Plans a batch given the stored messages among its keys: a resend of a stored message is
/// answered with it, a repeat within the batch with the first, anything else is pending.
fn plan(batch: &[NewMessage], stored: &[MessageRow]) -> Plan {
    let mut known: HashMap<Key, Outcome> = HashMap::new();
    for row in stored {
        if let Some(client_id) = row.client_id.clone() {
            let key = (row.room_id.to_string(), row.sender_id.to_string(), client_id);
            known.insert(key, Outcome::Stored(row.clone()));
        }
    }
    // Each room's requests in submission order, rooms in id order.
    let mut by_room: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, request) in batch.iter().enumerate() {
        by_room.entry(request.room.to_string()).or_default().push(index);
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
    let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
    let mut counts: Vec<(String, i64)> = Vec::with_capacity(by_room.len());
    for (room, indexes) in &by_room {
        let mut nth = 0;
        for &index in indexes {
            let request = &batch[index];
            let key = request.client_id.as_ref().map(|c| (room.clone(), request.sender.to_string(), c.clone()));
            outcomes[index] = Some(match key.as_ref().and_then(|key| known.get(key)) {
                Some(Outcome::Stored(row)) => Outcome::Stored(row.clone()),
                Some(&Outcome::Pending { index, .. }) => Outcome::Pending { index, again: true },
                None => {
                    nth += 1;
                    pending.push(Pending {
                        id: Uuid::now_v7().to_string(),
                        room: request.room,
                        room_id: room.clone(),
                        nth,
                        sender: request.sender.clone(),
                        sender_id: request.sender.to_string(),
                        kind: request.kind,
                        body: request.body.clone().into_inner(),
                        client_id: request.client_id.clone(),
                    });
                    let outcome = Outcome::Pending { index: pending.len() - 1, again: false };
                    if let Some(key) = key {
                        known.insert(key, Outcome::Pending { index: pending.len() - 1, again: false });
                    }
                    outcome
                }
            });
        }
        if nth > 0 {
            counts.push((room.clone(), nth));
        }
    }
    Plan { outcomes, pending, counts }
}

/// One attempt at writing the batch, given the stored messages among its keys.
async fn write(
    store: &Store,
    batch: &[NewMessage],
    stored: &[MessageRow],
) -> Result<Vec<Result<StoredMessage, domain::Error>>, StoreError> {
    let now = Timestamp::now().millis();
    let Plan { outcomes, mut pending, counts } = plan(batch, stored);
    let inserted: HashMap<String, Inserted> = if pending.is_empty() {
        HashMap::new()
    } else {
        // The batch travels into the write (SQLite's runs apart from its caller) and back.
        let (inserted, batch) = with_conn!(store, |conn| {
            let rooms: Vec<(&str, i64)> = counts.iter().map(|(room, n)| (room.as_str(), *n)).collect();
            (conn.insert(&rooms, now, &pending).await?, pending)
        });
        pending = batch;
        inserted.into_iter().map(|row| (row.id.clone(), row)).collect()
    };
    let messages: Vec<Option<Message>> = pending
        .into_iter()
        .map(|message| {
            let inserted = inserted.get(&message.id)?;
            Some(Message::from(message.into_row(inserted.seq, inserted.number, now)))
        })
        .collect();
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(Outcome::Stored(row)) => Ok(StoredMessage { message: Message::from(row), duplicate: true }),
            Some(Outcome::Pending { index, again }) => match &messages[index] {
                Some(message) => Ok(StoredMessage { message: message.clone(), duplicate: again }),
                None => Err(domain::Error::not_found("no such room")),
            },
            None => Err(domain::Error::Internal),
        })
        .collect())
}
