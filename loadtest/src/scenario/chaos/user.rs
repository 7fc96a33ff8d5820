//! One `chaos` user, behaving as docs/protocol.md §8 tells a real client to: it sends on the
//! run's fixed cadence with a `client_id`, holds every `seq` of its room, fills a gap with
//! `message.history after_seq` as soon as a push skips ahead, and when its connection ends
//! (closed, or a request unanswered for `--request-timeout`) it reconnects through the load
//! balancer, pages history from its last contiguous `seq` and resends every send never acked,
//! under the same `client_id`. A send refused with `unavailable` or `internal` is resent the
//! same way a second later. It is **back** once that history is read; sends scheduled while
//! it is away are skipped. Every outage and error is kept with its instant, so the run can put
//! it down to the fault of that moment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Connection, Frame, Inbound, Target};
use crate::scenario::resync::{Held, PAGE, failure_kind};
use crate::scenario::{Cadence, sleep_until, text_message};
use crate::stats::Progress;

/// Pause before a refused send (`unavailable`, `internal`) or a failed history read is retried.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Time allowed for one reconnect (upgrade and `hello`); a frozen node must not hold a client.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The run's timetable, the same for every user.
#[derive(Clone, Copy)]
pub(super) struct Plan {
    pub cadence: Cadence,
    pub send_end: Instant,
    /// Each user reads its room's history once more here, as an app does when it comes to
    /// the foreground: the last messages before the end have no later push to reveal a gap.
    pub sync_at: Instant,
    pub grace_end: Instant,
    pub request_timeout: Duration,
}

/// One lost connection: when it was lost (the close, or the unanswered request's send) and
/// how long until the client was back.
pub(super) struct Outage {
    pub lost_at: Instant,
    pub back_after: Option<Duration>,
    pub cause: &'static str,
}

/// What one user saw.
#[derive(Default)]
pub(super) struct Outcome {
    pub room: usize,
    pub prefix: String,
    pub held: Held,
    /// (n of `prefix` + n, seq, when acked).
    pub acked: Vec<(usize, i64, Instant)>,
    pub sent: u64,
    pub resent: u64,
    pub skipped: u64,
    pub unacked: u64,
    pub given_up: u64,
    pub redundant_pushes: u64,
    pub gap_fills: u64,
    pub reconnect_attempts: u64,
    pub outages: Vec<Outage>,
    pub errors: Vec<(Instant, String)>,
    /// The nodes this user's connections landed on, in order.
    pub nodes: Vec<String>,
}

/// Who a user is and where it chats.
pub(super) struct User {
    pub index: usize,
    pub room: usize,
    pub room_id: String,
    pub user: String,
    pub prefix: String,
    pub target: Target,
    pub plan: Plan,
    pub progress: Arc<Progress>,
}

/// What an outstanding request was for.
enum Pending {
    Send(usize),
    History,
}

struct State {
    out: Outcome,
    /// Seq of each of this user's client_ids once acked (index n of `prefix` + n).
    mine: Vec<Option<i64>>,
    /// Request id → what it was for and when it was sent.
    pending: HashMap<i64, (Pending, Instant)>,
    reading: bool,
    away_since: Option<Instant>,
    cause: &'static str,
    /// Refused sends to resend, with when.
    retry: Vec<(Instant, usize)>,
    history_retry_at: Option<Instant>,
}

impl User {
    pub(super) async fn run(self, conn: Connection) -> (Outcome, Option<Connection>) {
        let mut st = State {
            out: Outcome { room: self.room, prefix: self.prefix.clone(), ..Outcome::default() },
            mine: Vec::new(),
            pending: HashMap::new(),
            reading: false,
            away_since: None,
            cause: "",
            retry: Vec::new(),
            history_retry_at: None,
        };
        st.out.nodes.extend(conn.node().map(str::to_owned));
        let mut conn = Some(conn);
        let (mut k, mut synced) = (0u64, false);
        let mut next_at = self.plan.cadence.at(self.index, 0);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < self.plan.grace_end {
            let Some(c) = conn.as_mut() else {
                conn = self.reconnect(&mut st).await;
                continue;
            };
            let sending = next_at < self.plan.send_end;
            let lost = tokio::select! {
                _ = sleep_until(next_at), if sending => {
                    k += 1;
                    next_at = self.plan.cadence.at(self.index, k);
                    self.send_new(c, &mut st)
                }
                _ = tick.tick() => self.housekeeping(c, &mut st),
                _ = sleep_until(self.plan.sync_at), if !synced => {
                    synced = true;
                    if !st.reading && st.away_since.is_none() {
                        let have = st.out.held.have();
                        self.read_history(c, &mut st, have);
                    }
                    None
                }
                _ = sleep_until(self.plan.grace_end) => break,
                inbound = c.recv() => match inbound {
                    None => Some((Instant::now(), "closed")),
                    Some(Inbound { at, frame: Frame::Closed { code, reason } }) => {
                        let kind = code.map_or_else(|| format!("disconnected: {reason}"), |c| format!("close:{c}"));
                        self.error(&mut st, at, kind);
                        Some((at, "closed"))
                    }
                    Some(Inbound { frame, .. }) => self.on_frame(c, &mut st, frame),
                },
            };
            if let Some((at, cause)) = lost {
                if let Some(c) = conn.take() {
                    c.abort().await;
                }
                lose(&mut st, at, cause);
            }
        }
        st.out.unacked = st.mine.iter().filter(|s| s.is_none()).count() as u64;
        if let Some(since) = st.away_since {
            st.out.outages.push(Outage { lost_at: since, back_after: None, cause: st.cause });
        }
        (st.out, conn)
    }

    fn error(&self, st: &mut State, at: Instant, kind: String) {
        st.out.errors.push((at, kind));
        Progress::bump(&self.progress.errors);
    }

    /// The next scheduled send (skipped while away); returns a loss when the socket is gone.
    fn send_new(&self, c: &mut Connection, st: &mut State) -> Option<(Instant, &'static str)> {
        if st.away_since.is_some() {
            st.out.skipped += 1;
            return None;
        }
        let n = st.mine.len();
        st.mine.push(None);
        st.out.sent += 1;
        self.send_message(c, st, n)
    }

    fn send_message(&self, c: &mut Connection, st: &mut State, n: usize) -> Option<(Instant, &'static str)> {
        let data = text_message(&self.room_id, "chaos", format!("{}{n}", self.prefix));
        match c.send("message.send", data) {
            Ok(id) => {
                st.pending.insert(id, (Pending::Send(n), Instant::now()));
                Progress::bump(&self.progress.sent);
                None
            }
            Err(_) => Some((Instant::now(), "closed")),
        }
    }

    fn read_history(&self, c: &mut Connection, st: &mut State, after: i64) {
        let data = json!({"room_id": self.room_id, "after_seq": after, "limit": PAGE});
        if let Ok(id) = c.send("message.history", data) {
            st.pending.insert(id, (Pending::History, Instant::now()));
            st.reading = true;
        }
    }

    /// Once a second: a request unanswered for too long means the connection is dead (lost
    /// when that request was sent); refused sends and history reads due again are retried.
    fn housekeeping(&self, c: &mut Connection, st: &mut State) -> Option<(Instant, &'static str)> {
        let now = Instant::now();
        let oldest = st.pending.values().map(|&(_, at)| at).min();
        if let Some(at) = oldest.filter(|&at| now.duration_since(at) > self.plan.request_timeout) {
            self.error(st, now, "no reply".into());
            return Some((at, "no reply"));
        }
        if st.history_retry_at.is_some_and(|at| at <= now) && !st.reading {
            st.history_retry_at = None;
            let have = st.out.held.have();
            self.read_history(c, st, have);
        }
        if st.away_since.is_some() {
            return None;
        }
        let (due, later): (Vec<_>, Vec<_>) = st.retry.drain(..).partition(|&(at, _)| at <= now);
        st.retry = later;
        for (_, n) in due {
            if st.mine[n].is_none() {
                st.out.resent += 1;
                if let Some(lost) = self.send_message(c, st, n) {
                    return Some(lost);
                }
            }
        }
        None
    }

    /// Reconnects through the load balancer, retrying refusals until the grace period ends,
    /// then starts the resync. `None` only when time ran out.
    async fn reconnect(&self, st: &mut State) -> Option<Connection> {
        loop {
            st.out.reconnect_attempts += 1;
            match Connection::connect(&self.target, &self.user, RECONNECT_TIMEOUT).await {
                Ok(mut c) => {
                    st.out.nodes.extend(c.node().map(str::to_owned));
                    let have = st.out.held.have();
                    self.read_history(&mut c, st, have);
                    return Some(c);
                }
                Err(e) => {
                    self.error(st, Instant::now(), format!("reconnect: {}", failure_kind(&e)));
                    if Instant::now() >= self.plan.grace_end {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200 + fastrand::u64(0..500))).await;
                }
            }
        }
    }

    fn on_frame(&self, c: &mut Connection, st: &mut State, frame: Frame) -> Option<(Instant, &'static str)> {
        match frame {
            Frame::Event { event, data } if event == "message.new" => {
                let m = &data["message"];
                let seq = m["seq"].as_i64()?;
                let have = st.out.held.have();
                if !st.out.held.hold(seq, m["client_id"].as_str()) {
                    st.out.redundant_pushes += 1;
                    return None;
                }
                Progress::bump(&self.progress.delivered);
                if seq > have + 1 && !st.reading && st.away_since.is_none() {
                    st.out.gap_fills += 1;
                    self.read_history(c, st, have);
                }
                None
            }
            Frame::Ack(a) => match st.pending.remove(&a.id) {
                Some((Pending::Send(n), _)) => {
                    self.on_send_ack(st, n, a.ok, &a.data, a.error_code);
                    None
                }
                Some((Pending::History, _)) => self.on_history(c, st, a.ok, &a.data, a.error_code),
                None => None,
            },
            Frame::Event { event, data } if event == "error" => {
                self.error(st, Instant::now(), format!("error_event:{}", data["code"].as_str().unwrap_or("?")));
                None
            }
            Frame::Malformed(_) => {
                self.error(st, Instant::now(), "malformed_frame".into());
                None
            }
            // Presence, room.read and other pushes are not what this scenario checks.
            Frame::Event { .. } | Frame::Closed { .. } => None,
        }
    }

    fn on_send_ack(&self, st: &mut State, n: usize, ok: bool, data: &Value, code: Option<String>) {
        let now = Instant::now();
        if ok {
            let Some(seq) = data["message"]["seq"].as_i64() else {
                self.error(st, now, "ack without seq".into());
                return;
            };
            if st.mine[n].is_none() {
                st.mine[n] = Some(seq);
                st.out.acked.push((n, seq, now));
                Progress::bump(&self.progress.acked);
            }
            st.out.held.hold(seq, Some(&format!("{}{n}", self.prefix)));
            return;
        }
        let code = code.unwrap_or_else(|| "ack_error".into());
        if matches!(code.as_str(), "unavailable" | "internal") {
            // Not acked: it may or may not be stored; the same client_id makes a resend safe.
            st.retry.push((now + RETRY_DELAY, n));
        } else {
            st.out.given_up += 1;
        }
        self.error(st, now, code);
    }

    fn on_history(
        &self,
        c: &mut Connection,
        st: &mut State,
        ok: bool,
        data: &Value,
        code: Option<String>,
    ) -> Option<(Instant, &'static str)> {
        st.reading = false;
        if !ok {
            self.error(st, Instant::now(), format!("history:{}", code.unwrap_or_default()));
            st.history_retry_at = Some(Instant::now() + RETRY_DELAY);
            return None;
        }
        let mut last = None;
        for m in data["messages"].as_array().into_iter().flatten() {
            if let Some(seq) = m["seq"].as_i64() {
                st.out.held.hold(seq, m["client_id"].as_str());
                last = Some(seq);
            }
        }
        if data["has_more"].as_bool() == Some(true)
            && let Some(last) = last
        {
            self.read_history(c, st, last);
            return None;
        }
        let since = st.away_since.take()?;
        // Back: history read. Resend what was never acked, with its client_id.
        st.out.outages.push(Outage { lost_at: since, back_after: Some(since.elapsed()), cause: st.cause });
        st.retry.clear();
        for n in 0..st.mine.len() {
            if st.mine[n].is_none() {
                st.out.resent += 1;
                if let Some(lost) = self.send_message(c, st, n) {
                    return Some(lost);
                }
            }
        }
        None
    }
}

/// The connection is gone: what was in flight will get no reply (unacked sends are resent
/// after the resync), and the client is away from `at` unless it already was.
fn lose(st: &mut State, at: Instant, cause: &'static str) {
    st.pending.clear();
    st.reading = false;
    if st.away_since.is_none() {
        st.away_since = Some(at);
        st.cause = cause;
    }
}
