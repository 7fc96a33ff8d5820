//! The `live` host: posts the comments on the plan's schedule, open loop, and collects their
//! acks.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use super::Plan;
use crate::client::{Ack, Connection, Frame, Inbound};
use crate::scenario::{note_refused, note_unexpected, sleep_until};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress};

/// What the host did.
pub(super) struct HostOutcome {
    pub sent: u64,
    pub sent_measured: u64,
    pub acked: u64,
    pub refused: u64,
    pub unacked: u64,
    pub ack: LatencyRecorder,
    pub send_lag: LatencyRecorder,
    pub errors: ErrorCounts,
}

impl HostOutcome {
    /// Comments the server stored: every viewer should get each once.
    pub(super) fn stored(&self) -> u64 {
        self.sent - self.refused
    }
}

/// The host's run: its connection, the comments awaiting their acks, and what it measured.
struct HostRun<'a> {
    host: Connection,
    session: String,
    run_id: String,
    plan: Plan,
    progress: &'a Progress,
    /// Request id → (comment index, send instant).
    awaiting: HashMap<i64, (u64, Instant)>,
    out: HostOutcome,
}

/// Posts the comments on schedule, then waits (until the grace period ends) for their acks.
pub(super) async fn drive_host(
    host: Connection,
    session: String,
    run_id: String,
    plan: Plan,
    progress: &Progress,
) -> (HostOutcome, Connection) {
    let out = HostOutcome {
        sent: 0,
        sent_measured: 0,
        acked: 0,
        refused: 0,
        unacked: 0,
        ack: LatencyRecorder::new(),
        send_lag: LatencyRecorder::new(),
        errors: ErrorCounts::default(),
    };
    let mut run = HostRun { host, session, run_id, plan, progress, awaiting: HashMap::new(), out };
    let mut k = 0u64;
    let mut sending = true;
    let mut open = true;
    let mut next_at = plan.cadence.at(0, 0);
    loop {
        if !sending && (run.awaiting.is_empty() || !open) {
            break;
        }
        tokio::select! {
            _ = sleep_until(next_at), if sending => {
                if k >= plan.comments {
                    sending = false;
                    continue;
                }
                sending = run.post(k, next_at);
                k += 1;
                next_at = plan.cadence.at(0, k);
            }
            inbound = run.host.recv(), if open => match inbound {
                None => open = false,
                Some(Inbound { at, frame: Frame::Ack(a) }) => run.on_ack(at, a),
                Some(Inbound { frame, .. }) => {
                    if note_unexpected(frame, &mut run.out.errors, progress) {
                        open = false;
                        sending = false;
                    }
                }
            },
            _ = sleep_until(plan.phases.grace_end), if !sending => break,
        }
    }
    run.out.unacked = run.awaiting.len() as u64;
    (run.out, run.host)
}

impl HostRun<'_> {
    /// Posts comment `k`, scheduled for `scheduled`; its text carries its index and send
    /// instant. False when the connection is gone.
    fn post(&mut self, k: u64, scheduled: Instant) -> bool {
        let sent_at = Instant::now();
        self.out.send_lag.record(sent_at.saturating_duration_since(scheduled));
        let us = sent_at.duration_since(self.plan.epoch).as_micros();
        let text = format!("{}:{k}:{us}", self.run_id);
        match self.host.send("live.comment", json!({"session_id": self.session, "text": text})) {
            Ok(id) => {
                self.awaiting.insert(id, (k, sent_at));
                self.out.sent += 1;
                self.out.sent_measured += u64::from(k >= self.plan.first_measured);
                Progress::bump(&self.progress.sent);
                true
            }
            Err(_) => {
                self.out.errors.add("send_failed");
                false
            }
        }
    }

    fn on_ack(&mut self, at: Instant, a: Ack) {
        let Some((k, sent_at)) = self.awaiting.remove(&a.id) else {
            self.out.errors.add("unknown_ack");
            return;
        };
        if a.ok {
            self.out.acked += 1;
            if k >= self.plan.first_measured {
                self.out.ack.record(at.saturating_duration_since(sent_at));
            }
            Progress::bump(&self.progress.acked);
        } else {
            self.out.refused += 1;
            note_refused(a.error_code, &mut self.out.errors, self.progress);
        }
    }
}
