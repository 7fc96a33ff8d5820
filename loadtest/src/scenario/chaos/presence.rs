//! Presence under faults. Idle probe users connect through the load balancer and never
//! reconnect while a fault's period lasts, like an app whose phone died with its node; a
//! watcher asks `presence.query` about all of them once a second. The rule checked: a probe
//! whose connection ended must be reported offline within the node TTL plus the reaper's
//! delay (TTL/3) and a margin, and a probe still connected must be reported online. A watcher
//! on a frozen or cut-off node is replaced through the load balancer, so the answers come from
//! a surviving node. Closed probes reconnect when the next fault starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::FutureExt;
use serde_json::{Value, json};

use super::faults::Schedule;
use crate::client::{Connection, Frame, Target};
use crate::scenario::{SETUP_TIMEOUT, connect_all};
use crate::stats::{LatencyRecorder, round3};

/// Time allowed for the watcher's connect and for each of its queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A probe connected for less than this may not be registered yet: not judged.
const SETTLING: Duration = Duration::from_secs(3);

struct Probe {
    user: String,
    conn: Option<Connection>,
    node: Option<String>,
    opened_at: Instant,
    /// When its connection ended, and whether it has been reported offline since.
    closed_at: Option<Instant>,
    offline_seen: bool,
}

/// One period's presence findings.
#[derive(Default)]
struct PeriodPresence {
    closed: u64,
    closed_nodes: Vec<String>,
    offline_after: LatencyRecorder,
    offline_late: u64,
    never_offline: u64,
    polls: u64,
    polls_unavailable: u64,
    polls_failed: u64,
    /// Polls that reported at least one connected probe offline.
    polls_open_offline: u64,
    /// Connected probes reported offline at the period's last answered poll.
    open_offline_at_end: Option<u64>,
    /// (seconds from the start of traffic, connected probes reported offline) of each poll
    /// that reported any.
    open_offline_polls: Vec<(f64, u64)>,
}

pub(super) struct Monitor {
    target: Target,
    probes: Vec<Probe>,
    watcher: Option<Connection>,
    watcher_user: String,
    /// A reported offline later than this after the close counts as late.
    limit: Duration,
}

impl Monitor {
    pub(super) async fn set_up(target: &Target, run_id: &str, count: usize, ttl: Duration) -> Result<Self> {
        let users: Vec<String> = (0..count).map(|i| format!("lt-{run_id}-probe{i}")).collect();
        let conns = connect_all(target, users.clone(), 8).await?;
        let now = Instant::now();
        let probes = users
            .into_iter()
            .zip(conns)
            .map(|(user, c)| Probe {
                user,
                node: c.node().map(str::to_owned),
                conn: Some(c),
                opened_at: now,
                closed_at: None,
                offline_seen: false,
            })
            .collect();
        let watcher_user = format!("lt-{run_id}-watcher");
        let watcher = Connection::connect(target, &watcher_user, SETUP_TIMEOUT).await?;
        Ok(Self { target: target.clone(), probes, watcher: Some(watcher), watcher_user, limit: late_limit(ttl) })
    }

    /// Polls once a second from `t0` to `end`; returns one JSON object per period.
    pub(super) async fn run(mut self, schedule: Arc<Schedule>, t0: Instant, end: Instant) -> Vec<Value> {
        let mut periods: Vec<PeriodPresence> =
            std::iter::repeat_with(PeriodPresence::default).take(schedule.faults.len() + 1).collect();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(t0), Duration::from_secs(1));
        let mut current = 0;
        while Instant::now() < end {
            tick.tick().await;
            let p = schedule.period_of(t0, Instant::now());
            if p != current {
                self.close_period(&mut periods[current]);
                current = p;
                self.reopen_closed().await;
            }
            self.note_closes(&mut periods[current]);
            self.poll(&mut periods[current], t0).await;
        }
        self.close_period(&mut periods[current]);
        for c in self.probes.into_iter().filter_map(|p| p.conn).chain(self.watcher) {
            c.close().await;
        }
        periods.iter().map(PeriodPresence::to_json).collect()
    }

    /// Records probes whose connection ended (the frame's own instant).
    fn note_closes(&mut self, period: &mut PeriodPresence) {
        for probe in &mut self.probes {
            let Some(c) = probe.conn.as_mut() else { continue };
            while let Some(next) = c.recv().now_or_never() {
                match next {
                    Some(inbound) if !matches!(inbound.frame, Frame::Closed { .. }) => continue,
                    closed => {
                        probe.closed_at = Some(closed.map_or_else(Instant::now, |i| i.at));
                        probe.conn = None;
                        period.closed += 1;
                        period.closed_nodes.extend(probe.node.clone());
                        break;
                    }
                }
            }
        }
    }

    async fn poll(&mut self, period: &mut PeriodPresence, t0: Instant) {
        period.polls += 1;
        let users: Vec<&str> = self.probes.iter().map(|p| p.user.as_str()).collect();
        let answer = match self.watcher.as_mut() {
            Some(w) => w.request("presence.query", json!({"user_ids": users}), QUERY_TIMEOUT).await,
            None => Err(anyhow::anyhow!("no watcher")),
        };
        let data = match answer {
            Ok(data) => data,
            Err(e) => {
                if e.to_string().contains("failed with unavailable") {
                    period.polls_unavailable += 1;
                } else {
                    period.polls_failed += 1;
                    if let Some(w) = self.watcher.take() {
                        w.abort().await;
                    }
                    // A refused connect leaves no watcher: the next poll tries again.
                    self.watcher = Connection::connect(&self.target, &self.watcher_user, QUERY_TIMEOUT).await.ok();
                }
                return;
            }
        };
        let now = Instant::now();
        let mut open_offline = 0;
        for (probe, answer) in self.probes.iter_mut().zip(data["users"].as_array().into_iter().flatten()) {
            let online = answer["online"].as_bool() == Some(true);
            match probe.closed_at {
                Some(closed) if !online && !probe.offline_seen => {
                    probe.offline_seen = true;
                    let after = now.saturating_duration_since(closed);
                    period.offline_after.record(after);
                    period.offline_late += u64::from(after > self.limit);
                }
                None if !online && now.duration_since(probe.opened_at) > SETTLING => open_offline += 1,
                _ => {}
            }
        }
        if open_offline > 0 {
            period.polls_open_offline += 1;
            period.open_offline_polls.push((round3(now.duration_since(t0).as_secs_f64()), open_offline));
        }
        period.open_offline_at_end = Some(open_offline);
    }

    fn close_period(&mut self, period: &mut PeriodPresence) {
        period.never_offline = self.probes.iter().filter(|p| p.closed_at.is_some() && !p.offline_seen).count() as u64;
    }

    /// Reconnects the probes whose connection ended, for the next fault: all at once and
    /// briefly, so a frozen node the load balancer picks cannot hold up the polls. A probe
    /// still without a connection is tried again at the next period.
    async fn reopen_closed(&mut self) {
        let target = &self.target;
        let closed = self.probes.iter_mut().filter(|p| p.conn.is_none());
        let attempts = closed.map(|probe| async move {
            if let Ok(c) = Connection::connect(target, &probe.user, QUERY_TIMEOUT).await {
                probe.node = c.node().map(str::to_owned);
                probe.conn = Some(c);
                probe.opened_at = Instant::now();
                probe.closed_at = None;
                probe.offline_seen = false;
            }
        });
        futures_util::future::join_all(attempts).await;
    }
}

impl PeriodPresence {
    fn to_json(&self) -> Value {
        let mut nodes = self.closed_nodes.clone();
        nodes.sort();
        nodes.dedup();
        json!({
            "probes_closed": self.closed,
            "closed_on_nodes": nodes,
            "offline_after_close_ms": self.offline_after.summary(),
            "offline_late": self.offline_late,
            "never_offline": self.never_offline,
            "polls": self.polls,
            "polls_unavailable": self.polls_unavailable,
            "polls_failed": self.polls_failed,
            "polls_with_connected_probe_offline": self.polls_open_offline,
            "connected_probes_offline_at_end": self.open_offline_at_end,
            "connected_offline_polls": self.open_offline_polls,
        })
    }
}

/// How soon a probe whose connection ended must be reported offline: its node's heartbeat
/// expires within the TTL, the reaper runs every TTL/3, plus 3 s for the poll and the close.
pub(super) fn late_limit(ttl: Duration) -> Duration {
    ttl + ttl / 3 + Duration::from_secs(3)
}

/// `late_limit` in seconds, for the report.
pub(super) fn late_limit_secs(ttl: Duration) -> f64 {
    round3(late_limit(ttl).as_secs_f64())
}
