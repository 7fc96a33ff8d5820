//! The group-commit message writer, driven directly: what one batch answers when it mixes new
//! messages, resends of stored ones, repeats within the batch and a room that does not exist.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use switchboard::domain::{self, MessageBody, MessageKind, RoomId, UserId};
use switchboard::metrics::Metrics;
use switchboard::store::{Backend, Batching, HistoryQuery, MessageWriter, NewMessage, OnCommit, Store, StoredMessage};

use crate::both;
use crate::helpers::*;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn message(room: RoomId, sender: &UserId, body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        room,
        sender: sender.clone(),
        kind: MessageKind::Text,
        body: MessageBody::parse(MessageKind::Text, body.to_owned(), 1024).unwrap(),
        client_id: client_id.map(str::to_owned),
    }
}

/// A writer whose window is long enough that messages submitted together share a batch.
async fn writer(db: Db) -> (Store, MessageWriter, Arc<Metrics>) {
    let url = fresh_database(db).await;
    let store = Store::connect(&Backend::from_url(&url).unwrap(), 4).await.expect("store connects");
    let metrics = Arc::new(Metrics::new("test"));
    let batching = Batching { max: 512, window: Duration::from_millis(200) };
    let writer = MessageWriter::start(store.clone(), batching, 1024, metrics.clone());
    (store, writer, metrics)
}

async fn submit_together(writer: &MessageWriter, batch: Vec<NewMessage>) -> Vec<Result<StoredMessage, domain::Error>> {
    join_all(batch.into_iter().map(|m| writer.submit(m))).await
}

async fn one_batch_mixes_resends_repeats_and_new_messages(db: Db) {
    let (store, writer, metrics) = writer(db).await;
    let [ann, ben] = ["ann", "ben"].map(user);
    let (room, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let group = store.create_group_room(&ann, "g", std::slice::from_ref(&ben)).await.unwrap();
    let first = writer.submit(message(room, &ann, "first", Some("c-1"))).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.message.seq, 1);
    assert_eq!(metrics.write_resend_retries.get(), 0, "a batch with nothing stored is written once");

    let missing = RoomId::new();
    let results = submit_together(
        &writer,
        vec![
            message(room, &ann, "first again", Some("c-1")), // a resend of a stored message
            message(room, &ann, "second", Some("c-2")),
            message(group, &ben, "in the group", Some("c-1")), // same client id, other room
            message(room, &ann, "second again", Some("c-2")),  // a repeat within the batch
            message(room, &ben, "third", None),
            message(missing, &ann, "nowhere", Some("c-9")),
            message(group, &ann, "group two", None),
        ],
    )
    .await;
    assert_eq!(metrics.write_resend_retries.get(), 1, "the resend made the batch look up what is stored");

    let resend = results[0].as_ref().unwrap();
    assert!(resend.duplicate);
    assert_eq!(resend.message.id, first.message.id);
    assert_eq!(resend.message.body, "first");
    assert_eq!(resend.message.number, first.message.number);

    let second = results[1].as_ref().unwrap();
    assert!(!second.duplicate);
    assert_eq!(second.message.seq, 2);
    let repeat = results[3].as_ref().unwrap();
    assert!(repeat.duplicate);
    assert_eq!(repeat.message.id, second.message.id);
    assert_eq!(repeat.message.seq, 2);
    let third = results[4].as_ref().unwrap();
    assert_eq!((third.message.seq, third.duplicate), (3, false));

    let in_group = results[2].as_ref().unwrap();
    let group_two = results[6].as_ref().unwrap();
    assert_eq!((in_group.message.seq, group_two.message.seq), (1, 2));
    assert!(!in_group.duplicate);
    assert!(matches!(results[5], Err(domain::Error::NotFound(_))), "{:?}", results[5]);

    // Numbers are unique, and rise with seq within a room.
    assert!(first.message.number < second.message.number && second.message.number < third.message.number);
    assert!(in_group.message.number < group_two.message.number);

    // Stored: each message once, seqs gapless.
    let history = store.history(room, &ann, HistoryQuery::Newest, 50).await.unwrap();
    let seqs: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(sorted(seqs), vec![1, 2, 3]);
    // The room's seq counter moved by the three new messages only.
    let next = writer.submit(message(room, &ben, "fourth", None)).await.unwrap();
    assert_eq!(next.message.seq, 4);
}

async fn a_batch_of_only_resends_writes_nothing_new(db: Db) {
    let (store, writer, metrics) = writer(db).await;
    let [ann, ben] = ["ann", "ben"].map(user);
    let (room, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let stored = submit_together(
        &writer,
        (0..5).map(|i| message(room, &ann, &format!("m{i}"), Some(&format!("c-{i}")))).collect(),
    )
    .await;
    let again = submit_together(
        &writer,
        (0..5).map(|i| message(room, &ann, &format!("m{i}"), Some(&format!("c-{i}")))).collect(),
    )
    .await;
    for (stored, again) in stored.iter().zip(&again) {
        let (stored, again) = (stored.as_ref().unwrap(), again.as_ref().unwrap());
        assert!(again.duplicate);
        assert_eq!(again.message.id, stored.message.id);
        assert_eq!(again.message.seq, stored.message.seq);
    }
    assert_eq!(metrics.write_resend_retries.get(), 1, "the resends' batch was refused once, then written");
    // A sender who just resent: their batches look the stored messages up first and are
    // not refused, however often they resend.
    for _ in 0..3 {
        let resent = writer.submit(message(room, &ann, "m0", Some("c-0"))).await.unwrap();
        assert!(resent.duplicate);
    }
    assert_eq!(metrics.write_resend_retries.get(), 1, "no batch refused again");
    let next = writer.submit(message(room, &ann, "new", Some("c-new"))).await.unwrap();
    assert_eq!(next.message.seq, 6);
}

/// A message the database refuses (a NUL in its client id, which PostgreSQL cannot store and
/// which the edge refuses before it gets here) fails alone: the others batched with it are
/// written, in order.
async fn a_refused_message_fails_alone_in_its_batch(db: Db) {
    let (store, writer, _) = writer(db).await;
    let [ann, ben] = ["ann", "ben"].map(user);
    let (room, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let mut batch: Vec<NewMessage> =
        (0..15).map(|i| message(room, &ben, &format!("bystander {i}"), Some(&format!("b-{i}")))).collect();
    batch.insert(7, message(room, &ann, "bad", Some("nul\u{0}")));
    let results = submit_together(&writer, batch).await;
    for (i, result) in results.iter().enumerate() {
        if i == 7 {
            assert!(result.is_err(), "the refused message fails");
        } else {
            assert!(result.is_ok(), "bystander {i} fails with it: {result:?}");
        }
    }
    let seqs: Vec<i64> = results.iter().filter_map(|r| r.as_ref().ok()).map(|s| s.message.seq).collect();
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>(), "the others keep their order, without a gap");
}

/// The writer announces what it committed whether or not the sender still waits (a sender
/// that gave up on a slow commit must not leave its message unpushed), and never a resend.
async fn a_commit_is_announced_when_its_sender_stopped_waiting(db: Db) {
    let (store, writer, _) = writer(db).await;
    let [ann, ben] = ["ann", "ben"].map(user);
    let (room, _) = store.open_direct_room(&ann, &ben).await.unwrap();
    let (announced, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let announcing = |announced: &tokio::sync::mpsc::UnboundedSender<i64>| -> Option<OnCommit> {
        let announced = announced.clone();
        Some(Box::new(move |message: &domain::Message| {
            let _ = announced.send(message.seq);
        }))
    };
    drop(writer.submit_then(message(room, &ann, "nobody waits", Some("c-1")), announcing(&announced)));
    let seq = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.expect("announced").unwrap();
    assert_eq!(seq, 1);
    let resent = writer.submit_then(message(room, &ann, "again", Some("c-1")), announcing(&announced)).await.unwrap();
    assert!(resent.duplicate);
    let next = writer.submit_then(message(room, &ann, "next", Some("c-2")), announcing(&announced)).await.unwrap();
    assert_eq!(heard.recv().await, Some(next.message.seq), "the resend was not announced, the next one was");
}

/// The store shows history to members only, whatever a node's member list still says.
async fn history_is_for_members_only(db: Db) {
    let (store, writer, _) = writer(db).await;
    let [ann, ben] = ["ann", "ben"].map(user);
    let group = store.create_group_room(&ann, "g", std::slice::from_ref(&ben)).await.unwrap();
    writer.submit(message(group, &ann, "before ben left", None)).await.unwrap();
    let seen = |who: UserId| {
        let store = store.clone();
        async move { store.history(group, &who, HistoryQuery::Newest, 10).await.unwrap().messages.len() }
    };
    assert_eq!((seen(ann.clone()).await, seen(ben.clone()).await), (1, 1));
    store.leave_group(group, &ben).await.unwrap();
    assert_eq!((seen(ann).await, seen(ben).await), (1, 0), "a former member reads nothing");
}

mod postgres_only {
    #[actix_web::test]
    async fn a_refused_message_fails_alone_in_its_batch() {
        super::a_refused_message_fails_alone_in_its_batch(crate::helpers::Db::Postgres).await
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

both!(
    one_batch_mixes_resends_repeats_and_new_messages,
    a_batch_of_only_resends_writes_nothing_new,
    a_commit_is_announced_when_its_sender_stopped_waiting,
    history_is_for_members_only
);
