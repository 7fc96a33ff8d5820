//! Blocks, follow and friend requests, notifications, likes and matches, and reports.

use std::collections::{HashMap, HashSet};

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{blocks, like_pairs, likes, notifications, relationship_requests, reports, rooms};
use super::{Store, StoreResult, with_conn};
use crate::domain::{Notification, RequestKind, RoomId, Timestamp, UserId};

/// What a follow or friend request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// New, or renewed after a decline: the recipient should be notified.
    Sent,
    AlreadyPending,
    AlreadyAccepted,
}

/// What a like did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikeOutcome {
    /// Both like each other (now or earlier).
    pub matched: bool,
    /// This like made the match: exactly one of two concurrent likers sees it.
    pub new_match: bool,
}

/// Blocks between one user and some others, by direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlocksAmong {
    /// Those of the others whom the user blocked.
    pub blocked_by_user: Vec<UserId>,
    /// Those of the others who blocked the user.
    pub blocking_user: Vec<UserId>,
}

#[derive(Queryable, Clone)]
struct NotificationRow {
    id: String,
    kind: String,
    from_id: UserId,
    room_id: Option<RoomId>,
    created_at: i64,
    read_at: Option<i64>,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        Notification {
            id: row.id,
            kind: row.kind,
            from: row.from_id,
            room_id: row.room_id,
            created_at: Timestamp::from_millis(row.created_at),
            read: row.read_at.is_some(),
        }
    }
}

pub(super) fn pair_key(a: &UserId, b: &UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    serde_json::json!([lo.as_str(), hi.as_str()]).to_string()
}

impl Store {
    pub async fn set_block(&self, blocker: &UserId, blocked: &UserId, on: bool) -> StoreResult<()> {
        let now = Timestamp::now().millis();
        with_conn!(self, copied(blocked, blocker), |conn| {
            if on {
                insert_into(blocks::table)
                    .values((
                        blocks::blocker_id.eq(blocker.as_str()),
                        blocks::blocked_id.eq(blocked.as_str()),
                        blocks::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            } else {
                diesel::delete(blocks::table.find((blocker.as_str(), blocked.as_str()))).execute(conn).await?;
            }
        });
        Ok(())
    }

    /// Whom `user` has blocked, newest first.
    pub async fn blocks_of(&self, user: &UserId) -> StoreResult<Vec<(UserId, Timestamp)>> {
        let rows: Vec<(UserId, i64)> = with_conn!(self, copied(user), |conn| {
            blocks::table
                .filter(blocks::blocker_id.eq(user.as_str()))
                .order(blocks::created_at.desc())
                .select((blocks::blocked_id, blocks::created_at))
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(|(id, at)| (id, Timestamp::from_millis(at))).collect())
    }

    /// The users with a block between them and `user`, in either direction.
    pub async fn block_relations(&self, user: &UserId) -> StoreResult<HashSet<UserId>> {
        let (mine, theirs): (Vec<UserId>, Vec<UserId>) = with_conn!(self, copied(user), |conn| {
            let me = user.as_str();
            let mine = blocks::table.filter(blocks::blocker_id.eq(me)).select(blocks::blocked_id).load(conn).await?;
            let theirs = blocks::table.filter(blocks::blocked_id.eq(me)).select(blocks::blocker_id).load(conn).await?;
            (mine, theirs)
        });
        Ok(mine.into_iter().chain(theirs).collect())
    }

    /// `block_relations` for a batch of users, in one statement; a user without blocks is
    /// absent.
    pub async fn block_relations_many(&self, users: &[UserId]) -> StoreResult<HashMap<UserId, HashSet<UserId>>> {
        let keys: Vec<String> = users.iter().map(UserId::to_string).collect();
        let pairs: Vec<(UserId, UserId)> = with_conn!(self, |conn| {
            blocks::table
                .filter(blocks::blocker_id.eq_any(&keys).or(blocks::blocked_id.eq_any(&keys)))
                .select((blocks::blocker_id, blocks::blocked_id))
                .load(conn)
                .await?
        });
        let asked: HashSet<&UserId> = users.iter().collect();
        let mut hidden: HashMap<UserId, HashSet<UserId>> = HashMap::new();
        for (blocker, blocked) in pairs {
            if asked.contains(&blocker) {
                hidden.entry(blocker.clone()).or_default().insert(blocked.clone());
            }
            if asked.contains(&blocked) {
                hidden.entry(blocked).or_default().insert(blocker);
            }
        }
        Ok(hidden)
    }

    /// The blocks, either way, between `user` and any of `others`, in one statement.
    pub async fn blocks_among(&self, user: &UserId, others: &[UserId]) -> StoreResult<BlocksAmong> {
        if others.is_empty() {
            return Ok(BlocksAmong::default());
        }
        let keys: Vec<String> = others.iter().map(UserId::to_string).collect();
        let found: Vec<(UserId, UserId)> = with_conn!(self, copied(user), |conn| {
            let me = user.as_str();
            blocks::table
                .filter(
                    (blocks::blocker_id.eq(me).and(blocks::blocked_id.eq_any(&keys)))
                        .or(blocks::blocked_id.eq(me).and(blocks::blocker_id.eq_any(&keys))),
                )
                .order((blocks::blocker_id, blocks::blocked_id))
                .select((blocks::blocker_id, blocks::blocked_id))
                .load(conn)
                .await?
        });
        let mut among = BlocksAmong::default();
        for (blocker, blocked) in found {
            if blocker == *user {
                among.blocked_by_user.push(blocked);
            } else {
                among.blocking_user.push(blocker);
            }
        }
        Ok(among)
    }

    /// True if either of `a` and `b` has blocked the other.
    pub async fn blocked_between(&self, a: &UserId, b: &UserId) -> StoreResult<bool> {
        let (a, b) = (a.as_str(), b.as_str());
        let found: i64 = with_conn!(self, copied(a, b), |conn| {
            blocks::table
                .filter(
                    (blocks::blocker_id.eq(a).and(blocks::blocked_id.eq(b)))
                        .or(blocks::blocker_id.eq(b).and(blocks::blocked_id.eq(a))),
                )
                .count()
                .get_result(conn)
                .await?
        });
        Ok(found > 0)
    }

    /// `blocked_between` for a batch of pairs, in one statement: the pairs (as given) with a
    /// block either way.
    pub async fn blocked_pairs(&self, pairs: &[(UserId, UserId)]) -> StoreResult<HashSet<(UserId, UserId)>> {
        if pairs.is_empty() {
            return Ok(HashSet::new());
        }
        let users: Vec<String> = pairs
            .iter()
            .flat_map(|(a, b)| [a.to_string(), b.to_string()])
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let found: Vec<(String, String)> = with_conn!(self, |conn| {
            blocks::table
                .filter(blocks::blocker_id.eq_any(&users))
                .filter(blocks::blocked_id.eq_any(&users))
                .select((blocks::blocker_id, blocks::blocked_id))
                .load(conn)
                .await?
        });
        let found: HashSet<(String, String)> = found.into_iter().collect();
        let blocked = |a: &UserId, b: &UserId| found.contains(&(a.to_string(), b.to_string()));
        Ok(pairs.iter().filter(|(a, b)| blocked(a, b) || blocked(b, a)).cloned().collect())
    }

    /// The direct room of a pair, if it was ever opened.
    pub async fn find_direct_room(&self, a: &UserId, b: &UserId) -> StoreResult<Option<RoomId>> {
        let key = super::chat::direct_key(a, b);
        Ok(with_conn!(self, |conn| {
            rooms::table.filter(rooms::direct_key.eq(&key)).select(rooms::id).first(conn).await.optional()?
        }))
    }

    pub async fn send_request(&self, from: &UserId, to: &UserId, kind: RequestKind) -> StoreResult<RequestOutcome> {
        let now = Timestamp::now().millis();
        let outcome = with_conn!(self, copied(from, to), |conn| {
            let key = (from.as_str(), to.as_str(), kind.as_str());
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let inserted = insert_into(relationship_requests::table)
                    .values((
                        relationship_requests::from_id.eq(key.0),
                        relationship_requests::to_id.eq(key.1),
                        relationship_requests::kind.eq(key.2),
                        relationship_requests::state.eq("pending"),
                        relationship_requests::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 1 {
                    return Ok(RequestOutcome::Sent);
                }
                let state: String =
                    relationship_requests::table.find(key).select(relationship_requests::state).first(conn).await?;
                Ok(match state.as_str() {
                    "accepted" => RequestOutcome::AlreadyAccepted,
                    "pending" => RequestOutcome::AlreadyPending,
                    _ => {
                        diesel::update(relationship_requests::table.find(key))
                            .set((
                                relationship_requests::state.eq("pending"),
                                relationship_requests::created_at.eq(now),
                                relationship_requests::responded_at.eq(None::<i64>),
                            ))
                            .execute(conn)
                            .await?;
                        RequestOutcome::Sent
                    }
                })
            })
            .await?
        });
        Ok(outcome)
    }

    /// Answers a pending request from `from` to `to`; false if there was none.
    pub async fn respond_request(
        &self,
        from: &UserId,
        to: &UserId,
        kind: RequestKind,
        accept: bool,
    ) -> StoreResult<bool> {
        let now = Timestamp::now().millis();
        let state = if accept { "accepted" } else { "declined" };
        let updated = with_conn!(self, copied(from, to), |conn| {
            diesel::update(
                relationship_requests::table
                    .find((from.as_str(), to.as_str(), kind.as_str()))
                    .filter(relationship_requests::state.eq("pending")),
            )
            .set((relationship_requests::state.eq(state), relationship_requests::responded_at.eq(now)))
            .execute(conn)
            .await?
        });
        Ok(updated == 1)
    }

    pub async fn add_notification(
        &self,
        user: &UserId,
        kind: &str,
        from: &UserId,
        room: Option<RoomId>,
    ) -> StoreResult<Notification> {
        let row = NotificationRow {
            id: Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            from_id: from.clone(),
            room_id: room,
            created_at: Timestamp::now().millis(),
            read_at: None,
        };
        let inserted = row.clone();
        with_conn!(self, copied(user), |conn| {
            let row = inserted;
            insert_into(notifications::table)
                .values((
                    notifications::id.eq(&row.id),
                    notifications::user_id.eq(user.as_str()),
                    notifications::kind.eq(&row.kind),
                    notifications::from_id.eq(row.from_id.as_str()),
                    notifications::room_id.eq(row.room_id.map(|room| room.to_string())),
                    notifications::created_at.eq(row.created_at),
                ))
                .execute(conn)
                .await?;
        });
        Ok(row.into())
    }

    /// The user's notifications, newest first, before an exclusive notification id cursor.
    pub async fn notifications(
        &self,
        user: &UserId,
        limit: i64,
        before: Option<String>,
        unread_only: bool,
    ) -> StoreResult<Vec<Notification>> {
        let rows: Vec<NotificationRow> = with_conn!(self, copied(user), |conn| {
            let mut query = notifications::table
                .filter(notifications::user_id.eq(user.as_str()))
                .order(notifications::id.desc())
                .limit(limit)
                .select((
                    notifications::id,
                    notifications::kind,
                    notifications::from_id,
                    notifications::room_id,
                    notifications::created_at,
                    notifications::read_at,
                ))
                .into_boxed();
            if let Some(before) = &before {
                query = query.filter(notifications::id.lt(before.clone()));
            }
            if unread_only {
                query = query.filter(notifications::read_at.is_null());
            }
            query.load(conn).await?
        });
        Ok(rows.into_iter().map(Notification::from).collect())
    }

    /// Marks the given notifications (or all) read; how many changed.
    pub async fn read_notifications(&self, user: &UserId, ids: Option<Vec<String>>) -> StoreResult<usize> {
        let now = Timestamp::now().millis();
        with_conn!(self, copied(user), |conn| {
            let mine = notifications::table
                .filter(notifications::user_id.eq(user.as_str()))
                .filter(notifications::read_at.is_null())
                .into_boxed();
            let target = match &ids {
                Some(ids) => mine.filter(notifications::id.eq_any(ids.clone())),
                None => mine,
            };
            let ids: Vec<String> = target.select(notifications::id).load(conn).await?;
            Ok(diesel::update(notifications::table.filter(notifications::id.eq_any(&ids)))
                .set(notifications::read_at.eq(now))
                .execute(conn)
                .await?)
        })
    }

    /// Records a like or dislike. The pair's row lock serializes two concurrent likers on
    /// any nodes, so a mutual like is reported as new to exactly one of them.
    pub async fn like(&self, liker: &UserId, likee: &UserId, liked: bool) -> StoreResult<LikeOutcome> {
        let now = Timestamp::now().millis();
        let key = pair_key(liker, likee);
        let outcome = with_conn!(self, copied(likee, liker), |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                insert_into(like_pairs::table)
                    .values(like_pairs::pair_key.eq(&key))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                let matched_at: Option<i64> = diesel::update(like_pairs::table.find(&key))
                    .set(like_pairs::pair_key.eq(&key))
                    .returning(like_pairs::matched_at)
                    .get_result(conn)
                    .await?;
                insert_into(likes::table)
                    .values((
                        likes::liker_id.eq(liker.as_str()),
                        likes::likee_id.eq(likee.as_str()),
                        likes::liked.eq(liked),
                        likes::updated_at.eq(now),
                    ))
                    .on_conflict((likes::liker_id, likes::likee_id))
                    .do_update()
                    .set((likes::liked.eq(liked), likes::updated_at.eq(now)))
                    .execute(conn)
                    .await?;
                if matched_at.is_some() {
                    return Ok(LikeOutcome { matched: true, new_match: false });
                }
                let liked_back: bool = likes::table
                    .find((likee.as_str(), liker.as_str()))
                    .select(likes::liked)
                    .first(conn)
                    .await
                    .optional()?
                    .unwrap_or(false);
                if !(liked && liked_back) {
                    return Ok(LikeOutcome { matched: false, new_match: false });
                }
                diesel::update(like_pairs::table.find(&key)).set(like_pairs::matched_at.eq(now)).execute(conn).await?;
                Ok(LikeOutcome { matched: true, new_match: true })
            })
            .await?
        });
        Ok(outcome)
    }

    pub async fn add_report(
        &self,
        reporter: &UserId,
        target: &UserId,
        reason: &str,
        message_id: Option<String>,
        room: Option<RoomId>,
    ) -> StoreResult<String> {
        let id = Uuid::now_v7().to_string();
        let key = id.clone();
        with_conn!(self, copied(reason, reporter, target), |conn| {
            let id = key;
            insert_into(reports::table)
                .values((
                    reports::id.eq(&id),
                    reports::reporter_id.eq(reporter.as_str()),
                    reports::target_id.eq(target.as_str()),
                    reports::reason.eq(reason),
                    reports::message_id.eq(&message_id),
                    reports::room_id.eq(room.map(|r| r.to_string())),
                    reports::created_at.eq(Timestamp::now().millis()),
                ))
                .execute(conn)
                .await?;
        });
        Ok(id)
    }
}
