//! After the traffic, the verdict: every message acked to its sender must be held by every
//! member of its room (live or after a resync) and be in the room's history under the seq it
//! was acked with, and no client_id may be stored or seen under two seqs. Findings go to the
//! period (fault) in which the message was acked; outages to the period in which the
//! connection was lost; errors to the period in which they came.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::faults::Schedule;
use super::user::Outcome;
use crate::client::{Connection, Target};
use crate::scenario::SETUP_TIMEOUT;
use crate::scenario::resync::{Held, PAGE};
use crate::stats::{ErrorCounts, LatencyRecorder};

/// Connect attempts per room for the history read (nodes may still be recovering).
const HISTORY_ATTEMPTS: usize = 5;

/// A room's whole history as the server returns it (`Err` when it could not be read).
pub(super) type History = Result<Held, String>;

/// Reads every room's history from its first seq, as `user` of that room, `concurrency` rooms
/// at a time.
pub(super) async fn read_histories(target: &Target, rooms: &[(String, String)], concurrency: usize) -> Vec<History> {
    futures_util::stream::iter(rooms)
        .map(|(room, user)| async move {
            let mut last = String::new();
            for _ in 0..HISTORY_ATTEMPTS {
                match read_history(target, room, user).await {
                    Ok(held) => return Ok(held),
                    Err(e) => last = format!("{e:#}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(last)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

async fn read_history(target: &Target, room: &str, user: &str) -> Result<Held> {
    let mut conn = Connection::connect(target, user, SETUP_TIMEOUT).await?;
    let mut held = Held::default();
    let mut after = 0;
    loop {
        let data = json!({"room_id": room, "after_seq": after, "limit": PAGE});
        let page = conn.request("message.history", data, SETUP_TIMEOUT).await?;
        let Some(messages) = page["messages"].as_array() else { bail!("history page without messages: {page}") };
        for m in messages {
            if let Some(seq) = m["seq"].as_i64() {
                held.hold(seq, m["client_id"].as_str());
                after = after.max(seq);
            }
        }
        if page["has_more"].as_bool() != Some(true) || messages.is_empty() {
            break;
        }
    }
    conn.close().await;
    Ok(held)
}

/// One period's findings.
#[derive(Default)]
pub(super) struct Period {
    acked: u64,
    lost: u64,
    not_in_history: u64,
    disconnects: u64,
    back: LatencyRecorder,
    not_back: u64,
    causes: ErrorCounts,
    errors: ErrorCounts,
}

/// Everything the verdict counts, by period and in all.
pub(super) struct Tally {
    pub periods: Vec<Period>,
    pub totals: Value,
    pub ok: bool,
}

/// The verdict over every room: `outcomes` of every user (any order), `histories` by room.
pub(super) fn tally(schedule: &Schedule, t0: Instant, outcomes: &[Outcome], histories: &[History]) -> Tally {
    let period = |at: Instant| schedule.period_of(t0, at);
    let mut periods: Vec<Period> = std::iter::repeat_with(Period::default).take(schedule.faults.len() + 1).collect();
    let mut by_room: BTreeMap<usize, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_room.entry(o.room).or_default().push(o);
        for outage in &o.outages {
            let p = &mut periods[period(outage.lost_at)];
            p.disconnects += 1;
            p.causes.add(outage.cause);
            match outage.back_after {
                Some(d) => p.back.record(d),
                None => p.not_back += 1,
            }
        }
        for (at, kind) in &o.errors {
            periods[period(*at)].errors.add(kind.clone());
        }
    }
    let mut rooms = RoomFindings::default();
    for (&r, members) in &by_room {
        check_room(members, histories.get(r).and_then(|h| h.as_ref().ok()), &mut periods, &mut rooms, &period);
    }
    let RoomFindings { mut mismatched, history_missing_rooms, stored_not_acked } = rooms;
    let sum = |f: fn(&Outcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let duplicates = sum(|o| o.held.duplicates);
    let history_duplicates: u64 = histories.iter().filter_map(|h| h.as_ref().ok()).map(|h| h.duplicates).sum();
    mismatched += sum(|o| o.held.mismatched);
    let lost: u64 = periods.iter().map(|p| p.lost).sum();
    let not_in_history: u64 = periods.iter().map(|p| p.not_in_history).sum();
    let mut nodes: BTreeMap<&str, u64> = BTreeMap::new();
    for node in outcomes.iter().flat_map(|o| o.nodes.iter()) {
        *nodes.entry(node.as_str()).or_default() += 1;
    }
    let totals = json!({
        "acked": periods.iter().map(|p| p.acked).sum::<u64>(),
        "lost": lost,
        "not_in_history": not_in_history,
        "duplicates_seen_by_clients": duplicates,
        "duplicates_in_history": history_duplicates,
        "mismatched": mismatched,
        "rooms_history_unread": history_missing_rooms,
        "stored_not_acked": stored_not_acked,
        "unacked_at_end": sum(|o| o.unacked),
        "sent": sum(|o| o.sent),
        "resent": sum(|o| o.resent),
        "skipped_while_away": sum(|o| o.skipped),
        "given_up": sum(|o| o.given_up),
        "redundant_pushes": sum(|o| o.redundant_pushes),
        "gap_fills": sum(|o| o.gap_fills),
        "reconnect_attempts": sum(|o| o.reconnect_attempts),
        "connections_by_node": nodes,
    });
    let ok = lost + not_in_history + duplicates + history_duplicates + mismatched + history_missing_rooms == 0;
    Tally { periods, totals, ok }
}

/// What the rooms' checks found beyond the per-period counts.
#[derive(Default)]
struct RoomFindings {
    /// A seq acked, held or stored with another client_id than the one it was acked for.
    mismatched: u64,
    history_missing_rooms: u64,
    /// Messages of this run in history that no sender had acked by the end.
    stored_not_acked: u64,
}

/// One room: every seq acked to one of its `members` must be held by each of them under the
/// same client_id, and be in `history` (`None`: unread) under it.
fn check_room(
    members: &[&Outcome],
    history: Option<&Held>,
    periods: &mut [Period],
    found: &mut RoomFindings,
    period: &dyn Fn(Instant) -> usize,
) {
    // seq → (client_id, when acked), over every member's acks.
    let mut acked: HashMap<i64, (String, Instant)> = HashMap::new();
    for o in members {
        for &(n, seq, at) in &o.acked {
            let id = format!("{}{n}", o.prefix);
            if let Some((other, _)) = acked.get(&seq) {
                found.mismatched += u64::from(*other != id);
                continue;
            }
            acked.insert(seq, (id, at));
        }
    }
    found.history_missing_rooms += u64::from(history.is_none());
    for (&seq, (id, at)) in &acked {
        let p = &mut periods[period(*at)];
        p.acked += 1;
        for o in members {
            match o.held.client_id(seq) {
                None => p.lost += 1,
                Some(held) if held != id => found.mismatched += 1,
                Some(_) => {}
            }
        }
        if history.is_some_and(|h| h.client_id(seq) != Some(id.as_str())) {
            p.not_in_history += 1;
        }
    }
    let ids: HashSet<&str> = acked.values().map(|(id, _)| id.as_str()).collect();
    if let Some(h) = history {
        found.stored_not_acked += h.iter().filter(|(_, id)| !ids.contains(id)).count() as u64;
    }
}

impl Period {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "acked": self.acked,
            "lost": self.lost,
            "not_in_history": self.not_in_history,
            "disconnects": self.disconnects,
            "disconnect_causes": self.causes.to_json()["by_kind"],
            "back_ms": self.back.summary(),
            "not_back": self.not_back,
            "errors": self.errors.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message acked to one member that the other never held and history lacks is lost
    /// once and missing once, in the period of its ack; a client_id under two seqs is a
    /// duplicate.
    #[test]
    fn counts_what_the_rule_forbids() {
        let schedule = Schedule::parse(&["10:kill:true".to_owned()], &[]).expect("valid schedule");
        let t0 = Instant::now();
        let mut a = Outcome { prefix: "r-0-0-".into(), ..Outcome::default() };
        a.acked = vec![(0, 1, t0 + Duration::from_secs(1)), (1, 2, t0 + Duration::from_secs(11))];
        a.held.hold(1, Some("r-0-0-0"));
        a.held.hold(2, Some("r-0-0-1"));
        let mut b = Outcome { prefix: "r-0-1-".into(), ..Outcome::default() };
        b.held.hold(1, Some("r-0-0-0"));
        b.held.hold(3, Some("r-0-0-0"));
        let mut history = Held::default();
        history.hold(1, Some("r-0-0-0"));
        let tally = tally(&schedule, t0, &[a, b], &[Ok(history)]);
        assert!(!tally.ok);
        assert_eq!((tally.periods[0].acked, tally.periods[0].lost, tally.periods[0].not_in_history), (1, 0, 0));
        assert_eq!((tally.periods[1].acked, tally.periods[1].lost, tally.periods[1].not_in_history), (1, 1, 1));
        assert_eq!(tally.totals["duplicates_seen_by_clients"], 1);
    }
}
