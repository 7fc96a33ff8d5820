//! Blocks, follow and friend requests, notifications, likes and matches, reports, and
//! locations with a geohash index for nearby queries.

use std::collections::{HashMap, HashSet};

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{blocks, like_pairs, likes, locations, notifications, relationship_requests, reports, rooms};
use super::{Store, StoreError, StoreResult, with_conn};
use crate::domain::{Location, LocationGrid, Notification, RequestKind, RoomId, Timestamp, UserId};

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

/// Geohash precision stored per user: cells of about 1.2 km × 0.6 km.
pub const GEOHASH_PRECISION: usize = 6;

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

fn pair_key(a: &UserId, b: &UserId) -> String {
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

    /// Stores the user's position as the centre of its cell on `grid`, never finer, and
    /// returns what was stored.
    pub async fn set_location(&self, user: &UserId, at: Location, grid: LocationGrid) -> StoreResult<Location> {
        let at = grid.snap(at);
        let cell = cell_of(at)?;
        let now = Timestamp::now().millis();
        with_conn!(self, copied(user), |conn| {
            insert_into(locations::table)
                .values((
                    locations::user_id.eq(user.as_str()),
                    locations::lat.eq(at.lat),
                    locations::lng.eq(at.lng),
                    locations::geohash.eq(&cell),
                    locations::updated_at.eq(now),
                ))
                .on_conflict(locations::user_id)
                .do_update()
                .set((
                    locations::lat.eq(at.lat),
                    locations::lng.eq(at.lng),
                    locations::geohash.eq(&cell),
                    locations::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
        Ok(at)
    }

    /// Moves every stored position that is off `grid` (never snapped, or snapped to a finer
    /// grid) to its cell's centre; how many moved. Reads the whole table once, a page at a
    /// time; a position updated meanwhile is left as it is.
    pub async fn snap_stored_locations(&self, grid: LocationGrid) -> StoreResult<usize> {
        const PAGE: i64 = 1000;
        let mut after = String::new();
        let mut moved = 0;
        loop {
            let from = after.as_str();
            let page: Vec<(String, f64, f64)> = with_conn!(self, copied(from), |conn| {
                locations::table
                    .filter(locations::user_id.gt(from))
                    .order(locations::user_id)
                    .limit(PAGE)
                    .select((locations::user_id, locations::lat, locations::lng))
                    .load(conn)
                    .await?
            });
            let Some((last, _, _)) = page.last() else { break };
            after = last.clone();
            let mut off_grid = Vec::new();
            for (user, lat, lng) in page {
                let stored = Location { lat, lng };
                let centre = grid.snap(stored);
                if centre != stored {
                    off_grid.push((user, stored, centre, cell_of(centre)?));
                }
            }
            if off_grid.is_empty() {
                continue;
            }
            moved += with_conn!(self, |conn| {
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    let mut moved = 0;
                    for (user, stored, centre, cell) in &off_grid {
                        let row = locations::table
                            .find(user)
                            .filter(locations::lat.eq(stored.lat))
                            .filter(locations::lng.eq(stored.lng));
                        moved += diesel::update(row)
                            .set((
                                locations::lat.eq(centre.lat),
                                locations::lng.eq(centre.lng),
                                locations::geohash.eq(cell),
                            ))
                            .execute(conn)
                            .await?;
                    }
                    Ok(moved)
                })
                .await?
            });
        }
        Ok(moved)
    }

    /// Bulk import of locations (migrations from another system, benchmarks), each snapped
    /// to `grid` as `set_location` does: one transaction, rows written one by one.
    pub async fn import_locations(&self, rows: &[(UserId, Location)], grid: LocationGrid) -> StoreResult<()> {
        let now = Timestamp::now().millis();
        let mut values = Vec::with_capacity(rows.len());
        for (user, at) in rows {
            let at = grid.snap(*at);
            values.push((
                locations::user_id.eq(user.to_string()),
                locations::lat.eq(at.lat),
                locations::lng.eq(at.lng),
                locations::geohash.eq(cell_of(at)?),
                locations::updated_at.eq(now),
            ));
        }
        with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for row in &values {
                    insert_into(locations::table).values(row.clone()).on_conflict_do_nothing().execute(conn).await?;
                }
                Ok(())
            })
            .await?
        });
        Ok(())
    }

    pub async fn location_of(&self, user: &UserId) -> StoreResult<Option<Location>> {
        let found: Option<(f64, f64)> = with_conn!(self, copied(user), |conn| {
            locations::table
                .find(user.as_str())
                .select((locations::lat, locations::lng))
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.map(|(lat, lng)| Location { lat, lng }))
    }

    /// Users within `radius_km` of `center`, nearest first, with their distance as the
    /// server may tell it: measured between cell centres on `grid` and rounded to whole
    /// steps of the cell size (ties by user id). Positions are snapped again as they are
    /// read, so one stored off the grid is never told more finely. Reads only the geohash
    /// cells covering the circle's bounding box (index range scans on `locations.geohash`).
    pub async fn users_near(
        &self,
        center: Location,
        radius_km: f64,
        grid: LocationGrid,
    ) -> StoreResult<Vec<(UserId, f64)>> {
        let center = grid.snap(center);
        let cells = covering_cells(center, radius_km);
        let candidates: Vec<(UserId, f64, f64)> = with_conn!(self, |conn| {
            // One statement: an OR of range scans on the geohash index ('~' sorts after
            // every geohash character, so `cell~` bounds the cell's prefix range).
            let mut query = locations::table.select((locations::user_id, locations::lat, locations::lng)).into_boxed();
            for cell in &cells {
                query =
                    query.or_filter(locations::geohash.ge(cell.clone()).and(locations::geohash.lt(format!("{cell}~"))));
            }
            query.load(conn).await?
        });
        let mut near: Vec<(u64, UserId, f64)> = candidates
            .into_iter()
            .map(|(user, lat, lng)| (user, center.distance_km(grid.snap(Location { lat, lng }))))
            .filter(|(_, distance)| *distance <= radius_km)
            .map(|(user, distance)| (grid.steps(distance), user, grid.round_km(distance)))
            .collect();
        near.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(near.into_iter().map(|(_, user, distance)| (user, distance)).collect())
    }
}

/// The geohash cell a stored position is indexed under.
fn cell_of(at: Location) -> StoreResult<String> {
    geohash::encode(geohash::Coord { x: at.lng, y: at.lat }, GEOHASH_PRECISION)
        .map_err(|e| StoreError::Value(format!("position {at:?} has no geohash: {e}")))
}

/// Most cells one nearby query reads: the finest precision whose cells cover the circle's
/// bounding box in at most this many is used.
const MAX_CELLS: usize = 36;

/// The geohash cells that cover the bounding box of the circle, at the finest precision
/// that needs at most `MAX_CELLS` of them. Each cell is one index range scan.
fn covering_cells(center: Location, radius_km: f64) -> Vec<String> {
    // The circle's exact extent on the sphere the distances are measured on, padded by 1%
    // against rounding; the longitude extent is the circle's widest, not its centre's.
    let angle = (radius_km / crate::domain::EARTH_RADIUS_KM * 1.01).min(std::f64::consts::PI);
    let dlat = angle.to_degrees();
    let (sin_a, cos_lat) = (angle.sin(), center.lat.to_radians().cos());
    let dlng = if angle < std::f64::consts::FRAC_PI_2 && sin_a < cos_lat {
        (sin_a / cos_lat).asin().to_degrees()
    } else {
        180.0
    };
    let (south, north) = ((center.lat - dlat).max(-90.0), (center.lat + dlat).min(90.0));
    // Near a pole the circle covers every longitude.
    let polar = north >= 90.0 || south <= -90.0;
    let (west, east) = if polar { (-180.0, 180.0) } else { (center.lng - dlng, center.lng + dlng) };
    let cell_size = |precision: usize| {
        let bits = 5 * precision as i32;
        (180.0 / 2f64.powi(bits / 2), 360.0 / 2f64.powi((bits + 1) / 2))
    };
    let steps = |span: f64, size: f64| (span / size).ceil() as usize + 1;
    let precision = (1..=GEOHASH_PRECISION)
        .rev()
        .find(|&p| {
            let (lat_size, lng_size) = cell_size(p);
            steps(north - south, lat_size) * steps(east - west, lng_size) <= MAX_CELLS
        })
        .unwrap_or(1);
    // Sampling the box at cell-size steps (edges included) hits every cell it touches.
    let (lat_size, lng_size) = cell_size(precision);
    let mut cells = Vec::new();
    for i in 0..=steps(north - south, lat_size) {
        let lat = (south + i as f64 * lat_size).min(north);
        for j in 0..=steps(east - west, lng_size) {
            // Longitudes past ±180 wrap to the other side of the antimeridian.
            let lng = (west + j as f64 * lng_size).min(east);
            let lng = (lng + 180.0).rem_euclid(360.0) - 180.0;
            if let Ok(cell) = geohash::encode(geohash::Coord { x: lng, y: lat }, precision) {
                cells.push(cell);
            }
        }
    }
    cells.sort();
    cells.dedup();
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point `km` away from `from` along `bearing` (radians), on the same sphere.
    fn destination(from: Location, km: f64, bearing: f64) -> Location {
        let d = km / crate::domain::EARTH_RADIUS_KM;
        let (lat1, lng1) = (from.lat.to_radians(), from.lng.to_radians());
        let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * bearing.cos()).asin();
        let lng2 = lng1 + (bearing.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
        Location { lat: lat2.to_degrees(), lng: ((lng2.to_degrees() + 540.0) % 360.0) - 180.0 }
    }

    #[test]
    fn covers_circles_at_high_latitudes_and_across_the_antimeridian() {
        for (lat, lng, radius) in [(84.0, 10.0, 310.0), (-60.0, 179.9, 50.0), (0.0, -179.99, 5.0), (71.0, 25.0, 120.0)]
        {
            let center = Location::parse(lat, lng).unwrap();
            let cells = covering_cells(center, radius);
            for bearing in 0..64 {
                let point = destination(center, radius * 0.999, bearing as f64 * std::f64::consts::TAU / 64.0);
                let cell = geohash::encode(geohash::Coord { x: point.lng, y: point.lat }, cells[0].len()).unwrap();
                assert!(cells.contains(&cell), "({lat},{lng}) {radius} km, bearing {bearing}: {cell} not covered");
            }
        }
    }

    #[test]
    fn small_radii_use_fine_cells_and_cover_the_circle() {
        let center = Location::parse(48.85, 2.35).unwrap();
        assert_eq!(covering_cells(center, 0.5)[0].len(), 6);
        assert_eq!(covering_cells(center, 5.0)[0].len(), 5);
        assert_eq!(covering_cells(center, 100.0)[0].len(), 3);
        for radius in [0.5, 5.0, 42.0, 300.0] {
            let cells = covering_cells(center, radius);
            assert!(cells.len() <= MAX_CELLS, "{radius}: {}", cells.len());
            // Points just inside the circle (by the same distance the query filters with)
            // fall in covered cells.
            for bearing in 0..64 {
                let point = destination(center, radius * 0.999, bearing as f64 * std::f64::consts::TAU / 64.0);
                assert!(center.distance_km(point) <= radius);
                let cell = geohash::encode(geohash::Coord { x: point.lng, y: point.lat }, cells[0].len()).unwrap();
                assert!(cells.contains(&cell), "{radius} km, bearing {bearing}: {cell} not covered");
            }
        }
    }
}
