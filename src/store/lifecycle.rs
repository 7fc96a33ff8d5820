//! Batched connection lifecycle (group commit for connects, presence changes and room loads, as the writer does for messages): each queue's task takes everything waiting (up to the batch size) and runs one statement per step for the whole batch; a user (or room) appears at most once in a batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Profile, RoomMembers, Store, StoreError, isolating};
use crate::domain::{self, RoomId, RoomKind, SessionId, Timestamp, UserId};
use crate::metrics::Metrics;

/// What a connect needs from the store: the user's rooms and live sessions (`true` when hosting).
#[derive(Debug, Clone, Default)]
pub struct Arrival {
    pub rooms: Vec<RoomId>,
    pub live: Vec<(SessionId, bool)>,
}

/// A user's state changed cluster-wide (first connection anywhere, or the last one closed).
#[derive(Debug, Clone)]
pub struct PresenceChange {
    pub user: UserId,
    pub online: bool,
    /// When it changed: stored as `last_seen` when going offline, and the call grace starts then.
    pub seen: Timestamp,
}

/// Who is told of a presence change: the user's direct peers, less anyone either side blocked.
pub type Peers = Vec<(RoomId, UserId)>;

/// What a room actor needs when it starts: the room, and for a direct room whether its two
/// members have a block between them.
#[derive(Debug, Clone)]
pub struct LoadedRoom {
    pub room: RoomMembers,
    pub blocked: bool,
}

struct ConnectJob {
    user: UserId,
    profile: Profile,
    reply: oneshot::Sender<Result<Arrival, domain::Error>>,
}

struct PresenceJob {
    change: PresenceChange,
    reply: oneshot::Sender<Result<Peers, domain::Error>>,
}

struct RoomJob {
    room: RoomId,
    reply: oneshot::Sender<Result<Option<LoadedRoom>, domain::Error>>,
}

/// Handle to the node's lifecycle batchers; cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    connects: mpsc::Sender<ConnectJob>,
    changes: mpsc::Sender<PresenceJob>,
    rooms: mpsc::Sender<RoomJob>,
}

impl Lifecycle {
    /// Starts one task each for connects, presence changes and room loads, each with a
    /// queue of `queue` and batches of at most `max_batch`. The three run side by side; a
    /// batch takes pooled connections only while it runs.
    pub fn start(store: Store, max_batch: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        let (connects, connect_inbox) = mpsc::channel(queue.max(1));
        let (changes, change_inbox) = mpsc::channel(queue.max(1));
        let (rooms, room_inbox) = mpsc::channel(queue.max(1));
        let max_batch = max_batch.max(1);
        let connects_queue = Queue {
            inbox: connect_inbox,
            max: max_batch,
            kind: "connect",
            metrics: metrics.clone(),
            key: |job: &ConnectJob| job.user.clone(),
            input: |job: &ConnectJob| (job.user.clone(), job.profile.clone()),
        };
        let at = store.clone();
        tokio::spawn(serve(connects_queue, move |touches| load_arrivals(at.clone(), touches), answer_connect));
        let changes_queue = Queue {
            inbox: change_inbox,
            max: max_batch,
            kind: "presence",
            metrics: metrics.clone(),
            key: |job: &PresenceJob| job.change.user.clone(),
            input: |job: &PresenceJob| job.change.clone(),
        };
        let at = store.clone();
        tokio::spawn(serve(changes_queue, move |changes| store_changes(at.clone(), changes), answer_change));
        let rooms_queue = Queue {
            inbox: room_inbox,
            max: max_batch,
            kind: "room",
            metrics,
            key: |job: &RoomJob| job.room,
            input: |job: &RoomJob| job.room,
        };
        tokio::spawn(serve(rooms_queue, move |rooms| load_rooms(store.clone(), rooms), answer_room));
        Self { connects, changes, rooms }
    }

    /// Records a connect (user row and profile, `last_seen`) and loads what the hub attaches
    /// the connection to. A full queue is refused with `unavailable` (the client reconnects)
    /// rather than waited on: the database is that far behind.
    pub fn connect(
        &self,
        user: UserId,
        profile: Profile,
    ) -> impl Future<Output = Result<Arrival, domain::Error>> + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.connects.try_send(ConnectJob { user, profile, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => domain::Error::Unavailable("too many connects at once; retry".into()),
            mpsc::error::TrySendError::Closed(_) => domain::Error::Unavailable("node is shutting down".into()),
        });
        async move {
            queued?;
            answer.await.map_err(|_| domain::Error::Unavailable("node is shutting down".into()))?
        }
    }

    /// Stores a presence change (`last_seen` when offline, the call parties' away mark) and
    /// answers who is to be told. Waits for room in the queue: nobody is waiting on it, and a
    /// dropped change would leave `last_seen` and calls wrong.
    pub async fn presence_changed(&self, change: PresenceChange) -> Result<Peers, domain::Error> {
        let (reply, answer) = oneshot::channel();
        self.changes
            .send(PresenceJob { change, reply })
            .await
            .map_err(|_| domain::Error::Unavailable("node is shutting down".into()))?;
        answer.await.map_err(|_| domain::Error::Unavailable("node is shutting down".into()))?
    }

    /// The room's members (`None` for an unknown room), for a room actor starting. Waits for
    /// room in the queue.
    pub async fn load_room(&self, room: RoomId) -> Result<Option<LoadedRoom>, domain::Error> {
        let (reply, answer) = oneshot::channel();
        self.rooms
            .send(RoomJob { room, reply })
            .await
            .map_err(|_| domain::Error::Unavailable("node is shutting down".into()))?;
        answer.await.map_err(|_| domain::Error::Unavailable("node is shutting down".into()))?
    }
}

/// Waits for the next job, then takes what else is queued, up to `max` jobs and stopping
/// before a key (user or room) already in the batch (kept in `held` for the next one): the
/// batched statements assume one row per user, and a user's changes must apply in order.
async fn next_batch<J, K: Eq + std::hash::Hash>(
    inbox: &mut mpsc::Receiver<J>,
    held: &mut Option<J>,
    max: usize,
    key: fn(&J) -> K,
) -> Option<Vec<J>> {
    let first = match held.take() {
        Some(job) => job,
        None => inbox.recv().await?,
    };
    let mut keys: HashSet<K> = HashSet::from([key(&first)]);
    let mut batch = vec![first];
    while batch.len() < max {
        let Ok(job) = inbox.try_recv() else { break };
        if !keys.insert(key(&job)) {
            *held = Some(job);
            break;
        }
        batch.push(job);
    }
    Some(batch)
}

/// One lifecycle queue's task: takes batches (see `next_batch`), runs `load` over each
/// batch's inputs (a batch the database refuses again by halves, see `isolating`), and
/// answers each job with what was loaded for its part of the batch.
async fn serve<J, K, I, T, F>(
    queue: Queue<J, K, I>,
    load: impl Fn(Vec<I>) -> F,
    answer: fn(J, Result<&mut T, &domain::Error>),
) where
    K: Eq + std::hash::Hash,
    I: Clone,
    F: Future<Output = Result<T, StoreError>>,
{
    let Queue { mut inbox, max, kind, metrics, key, input } = queue;
    let mut held = None;
    while let Some(batch) = next_batch(&mut inbox, &mut held, max, key).await {
        let started = Instant::now();
        let inputs: Vec<I> = batch.iter().map(input).collect();
        let outcomes = isolating(inputs.len(), |range| load(inputs.get(range).unwrap_or_default().to_vec())).await;
        metrics.lifecycle_batch_size.with_label_values(&[kind]).observe(batch.len() as f64);
        metrics.lifecycle_seconds.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
        let mut jobs = batch.into_iter();
        for (range, outcome) in outcomes {
            let jobs = jobs.by_ref().take(range.len());
            match outcome {
                Ok(mut loaded) => jobs.for_each(|job| answer(job, Ok(&mut loaded))),
                Err(err) => {
                    let err = domain::Error::from(err);
                    jobs.for_each(|job| answer(job, Err(&err)));
                }
            }
        }
    }
}

/// A lifecycle queue: its jobs, batch size, metric label, and what keys and feeds a job.
struct Queue<J, K, I> {
    inbox: mpsc::Receiver<J>,
    max: usize,
    kind: &'static str,
    metrics: Arc<Metrics>,
    /// A key appears at most once in a batch.
    key: fn(&J) -> K,
    /// What the batch's statements need of the job.
    input: fn(&J) -> I,
}

type Loaded = (HashMap<UserId, Vec<RoomId>>, HashMap<UserId, Vec<(SessionId, bool)>>);

/// Decision: every connect still writes the user row. It creates the user on first connect,
/// refreshes the profile the token carries, and sets `last_seen`, which docs/protocol.md
/// promises is the latest connect while a user is online. Batched, that is one statement per
/// batch, so skipping it for unchanged profiles would save little and cost that promise.
async fn load_arrivals(store: Store, touches: Vec<(UserId, Profile)>) -> Result<Loaded, StoreError> {
    store.touch_users(&touches, Timestamp::now()).await?;
    let users: Vec<UserId> = touches.iter().map(|(user, _)| user.clone()).collect();
    let rooms = store.rooms_of_many(&users).await?;
    let live = store.live_sessions_of_many(&users).await?;
    Ok((rooms, live))
}

/// The batch's presence changes, in the order the hub ran them one user at a time.
async fn store_changes(store: Store, changes: Vec<PresenceChange>) -> Result<HashMap<UserId, Peers>, StoreError> {
    let offline: Vec<(UserId, Timestamp)> =
        changes.iter().filter(|c| !c.online).map(|c| (c.user.clone(), c.seen)).collect();
    store.set_last_seen_many(&offline).await?;
    // A call party who vanished is dropped after the grace period unless back by then.
    let away: Vec<(UserId, Option<Timestamp>)> =
        changes.iter().map(|c| (c.user.clone(), (!c.online).then_some(c.seen))).collect();
    store.mark_call_presence_many(&away).await?;
    let users: Vec<UserId> = changes.iter().map(|c| c.user.clone()).collect();
    let mut hidden = store.block_relations_many(&users).await?;
    let mut peers = store.direct_peers_many(&users).await?;
    for (user, peers) in peers.iter_mut() {
        if let Some(hidden) = hidden.remove(user) {
            peers.retain(|(_, peer)| !hidden.contains(peer));
        }
    }
    Ok(peers)
}

async fn load_rooms(store: Store, ids: Vec<RoomId>) -> Result<HashMap<RoomId, LoadedRoom>, StoreError> {
    let rooms = store.room_members_many(&ids).await?;
    let pairs: Vec<(UserId, UserId)> = rooms
        .values()
        .filter_map(|room| match room.members.as_slice() {
            [a, b] if room.kind == RoomKind::Direct => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    let blocked = store.blocked_pairs(&pairs).await?;
    Ok(rooms
        .into_iter()
        .map(|(id, room)| {
            let blocked = match room.members.as_slice() {
                [a, b] if room.kind == RoomKind::Direct => blocked.contains(&(a.clone(), b.clone())),
                _ => false,
            };
            (id, LoadedRoom { room, blocked })
        })
        .collect())
}

fn answer_connect(job: ConnectJob, loaded: Result<&mut Loaded, &domain::Error>) {
    let arrival = loaded.map_err(Clone::clone).map(|(rooms, live)| Arrival {
        rooms: rooms.remove(&job.user).unwrap_or_default(),
        live: live.remove(&job.user).unwrap_or_default(),
    });
    let _ = job.reply.send(arrival);
}

fn answer_change(job: PresenceJob, peers: Result<&mut HashMap<UserId, Peers>, &domain::Error>) {
    let _ = job.reply.send(peers.map_err(Clone::clone).map(|peers| peers.remove(&job.change.user).unwrap_or_default()));
}

fn answer_room(job: RoomJob, loaded: Result<&mut HashMap<RoomId, LoadedRoom>, &domain::Error>) {
    let _ = job.reply.send(loaded.map_err(Clone::clone).map(|loaded| loaded.remove(&job.room)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_batch_takes_what_is_queued_up_to_the_max_and_stops_before_a_repeated_key() {
        let (queue, mut inbox) = mpsc::channel(16);
        for job in ["a", "b", "a", "c", "d", "e", "f"] {
            queue.try_send(job).unwrap();
        }
        let mut held = None;
        let key = |job: &&str| job.to_string();
        let mut batches = Vec::new();
        drop(queue);
        while let Some(batch) = next_batch(&mut inbox, &mut held, 3, key).await {
            batches.push(batch);
        }
        // The second "a" waits for the next batch; no batch is longer than 3.
        assert_eq!(batches, vec![vec!["a", "b"], vec!["a", "c", "d"], vec!["e", "f"]]);
    }
}
