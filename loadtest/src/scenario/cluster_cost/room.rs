//! `cluster-cost` traffic: one task per room sends the room's share of the messages on the
//! open-loop cadence (its members in turn) and tallies, per node, what its members' connections
//! there received.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::client::{Connection, Frame, Inbound};
use crate::scenario::chat_mix::setup::Room;
use crate::scenario::{Cadence, client_index, note_refused, note_unexpected, sleep_until, text_message};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress};

/// When and what a room sends.
#[derive(Clone)]
pub(super) struct SendPlan {
    pub cadence: Cadence,
    /// Messages this room sends.
    pub sends: u64,
    /// After this, whatever is still missing is missing.
    pub deadline: Instant,
    pub body: Arc<str>,
    /// The run's id: `client_id`s are `RUN-rROOM-N`.
    pub run_id: Arc<str>,
}

/// What one room did and saw, per node where it says so.
pub(super) struct RoomTally {
    pub sent: u64,
    pub acked: u64,
    /// Per node: acked messages of this room when the node holds one of its members.
    pub addressed: Vec<u64>,
    /// Per node: deliveries owed, one per acked message and member other than its sender.
    pub expected: Vec<u64>,
    /// Per node: `message.new` frames of this room its connections received.
    pub delivered: Vec<u64>,
    pub duplicates: u64,
    pub delivery: LatencyRecorder,
    pub errors: ErrorCounts,
    pub conns: Vec<Connection>,
}

/// Drives one room until it has sent its messages and every ack and delivery arrived, or the
/// plan's deadline passed.
pub(super) async fn drive(
    (room, mut rx): (Room, mpsc::UnboundedReceiver<(usize, Inbound)>),
    placement: Vec<usize>,
    nodes: usize,
    plan: SendPlan,
    progress: Arc<Progress>,
) -> RoomTally {
    let Room { index, id, mut members, .. } = room;
    let prefix = format!("{}-r{index}-", plan.run_id);
    let mut ledger = Ledger::new(&placement, nodes);
    let mut t = RoomTally {
        sent: 0,
        acked: 0,
        addressed: vec![0; nodes],
        expected: vec![0; nodes],
        delivered: vec![0; nodes],
        duplicates: 0,
        delivery: LatencyRecorder::new(),
        errors: ErrorCounts::default(),
        conns: Vec::new(),
    };
    loop {
        let all_sent = t.sent == plan.sends;
        if all_sent && ledger.settled() {
            break;
        }
        let next = if all_sent { plan.deadline } else { plan.cadence.at(index, t.sent).min(plan.deadline) };
        tokio::select! {
            () = sleep_until(next) => {
                if all_sent || Instant::now() >= plan.deadline {
                    break;
                }
                let m = (t.sent % members.len() as u64) as usize;
                let data = text_message(&id, &plan.body, format!("{prefix}{}", t.sent));
                match members[m].send("message.send", data) {
                    Ok(request) => ledger.sent(m, request),
                    Err(_) => t.errors.add("send_on_closed"),
                }
                t.sent += 1;
                Progress::bump(&progress.sent);
            }
            inbound = rx.recv() => {
                let Some((m, inbound)) = inbound else { break };
                ledger.take(m, inbound, &prefix, &mut t, &progress);
            }
        }
    }
    t.conns = std::mem::take(&mut members);
    t
}

/// Per room: send instants, requests awaiting their ack, deliveries seen.
struct Ledger<'a> {
    placement: &'a [usize],
    nodes: usize,
    sent_at: Vec<Instant>,
    /// (member, request id) of sends not acked yet.
    awaiting: HashSet<(usize, i64)>,
    /// (message index, member) of first deliveries.
    seen: HashSet<(u64, usize)>,
    owed: u64,
}

impl<'a> Ledger<'a> {
    fn new(placement: &'a [usize], nodes: usize) -> Self {
        Self { placement, nodes, sent_at: Vec::new(), awaiting: HashSet::new(), seen: HashSet::new(), owed: 0 }
    }

    fn sent(&mut self, member: usize, request: i64) {
        self.awaiting.insert((member, request));
        self.sent_at.push(Instant::now());
    }

    /// Every ack in and every owed delivery seen.
    fn settled(&self) -> bool {
        self.awaiting.is_empty() && self.seen.len() as u64 == self.owed
    }

    fn take(&mut self, m: usize, inbound: Inbound, prefix: &str, t: &mut RoomTally, progress: &Progress) {
        match inbound.frame {
            Frame::Ack(a) => {
                if !self.awaiting.remove(&(m, a.id)) {
                    return;
                }
                if !a.ok {
                    return note_refused(a.error_code, &mut t.errors, progress);
                }
                t.acked += 1;
                Progress::bump(&progress.acked);
                self.owe(m, t);
            }
            Frame::Event { event, data } if event == "message.new" => {
                let Some(k) = client_index(&data, prefix) else { return t.errors.add("unexpected_message") };
                t.delivered[self.placement[m]] += 1;
                if !self.seen.insert((k as u64, m)) {
                    t.duplicates += 1;
                    return;
                }
                Progress::bump(&progress.delivered);
                if let Some(sent) = self.sent_at.get(k) {
                    let latency = inbound.at.saturating_duration_since(*sent);
                    t.delivery.record(latency);
                    progress.record_latency(latency);
                }
            }
            other => {
                note_unexpected(other, &mut t.errors, progress);
            }
        }
    }

    /// An acked message from member `sender`: addressed to every node holding a member, owed
    /// to every other member.
    fn owe(&mut self, sender: usize, t: &mut RoomTally) {
        let mut holds = vec![false; self.nodes];
        for (m, &node) in self.placement.iter().enumerate() {
            holds[node] = true;
            if m != sender {
                t.expected[node] += 1;
                self.owed += 1;
            }
        }
        for (node, held) in holds.into_iter().enumerate() {
            t.addressed[node] += u64::from(held);
        }
    }
}
