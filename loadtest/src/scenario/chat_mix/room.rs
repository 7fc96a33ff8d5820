//! A `chat-mix` room's task: it sends what the scheduler hands it from the room's members in
//! turn, matches every member's deliveries and acks against the room's ledger, and reports
//! per step and at the end. One task holds the ledger, so it needs no lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::setup::{Room, RoomSetup};
use crate::client::{Ack, Connection, Frame, Inbound};
use crate::scenario::{client_index, note_refused, note_unexpected, text_message};
use crate::stats::{ErrorCounts, LatencyRecorder, Progress};

/// What the scheduler asks of a room task.
pub(super) enum Command {
    Send {
        at: Instant,
        step: usize,
        measured: bool,
        typing: bool,
    },
    /// Hand over (and reset) what was measured for `step`.
    Report {
        step: usize,
        reply: oneshot::Sender<StepCounts>,
    },
    /// Final tallies: losses, duplicates, unacked.
    Finish {
        reply: oneshot::Sender<FinalCounts>,
    },
}

/// One step as one room saw it.
pub(super) struct StepCounts {
    pub(super) delivery: LatencyRecorder,
    pub(super) typing: LatencyRecorder,
    pub(super) ack: LatencyRecorder,
    pub(super) send_lag: LatencyRecorder,
    pub(super) messages: u64,
    pub(super) typings: u64,
    pub(super) deliveries: u64,
    /// Deliveries of measured messages not yet arrived when the step was judged.
    pub(super) missing: u64,
}

impl StepCounts {
    pub(super) fn new() -> Self {
        Self {
            delivery: LatencyRecorder::new(),
            typing: LatencyRecorder::new(),
            ack: LatencyRecorder::new(),
            send_lag: LatencyRecorder::new(),
            messages: 0,
            typings: 0,
            deliveries: 0,
            missing: 0,
        }
    }

    pub(super) fn merge(&mut self, o: &StepCounts) {
        self.delivery.merge(&o.delivery);
        self.typing.merge(&o.typing);
        self.ack.merge(&o.ack);
        self.send_lag.merge(&o.send_lag);
        self.messages += o.messages;
        self.typings += o.typings;
        self.deliveries += o.deliveries;
        self.missing += o.missing;
    }
}

#[derive(Default)]
pub(super) struct FinalCounts {
    pub(super) messages: u64,
    pub(super) expected: u64,
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    pub(super) unacked: u64,
    pub(super) refused: u64,
    pub(super) typing_lost: u64,
    pub(super) errors: ErrorCounts,
}

impl FinalCounts {
    pub(super) fn merge(&mut self, c: &FinalCounts) {
        self.messages += c.messages;
        self.expected += c.expected;
        self.lost += c.lost;
        self.duplicates += c.duplicates;
        self.unacked += c.unacked;
        self.refused += c.refused;
        self.typing_lost += c.typing_lost;
        self.errors.merge(&c.errors);
    }
}

/// One sent message in a room's ledger.
struct Sent {
    at: Instant,
    step: usize,
    measured: bool,
    /// Bit m: member m has it (the sender's bit is set at once).
    got: u64,
    acked: bool,
    refused: bool,
}

/// Starts one task per room; returns each room's command queue (by room index) and the
/// tasks, which hand back the room's connections once their queue closes.
pub(super) fn spawn_rooms(
    rooms: Vec<RoomSetup>,
    run_id: &str,
    body: &Arc<str>,
    progress: &Arc<Progress>,
) -> (Vec<mpsc::UnboundedSender<Command>>, Vec<JoinHandle<Vec<Connection>>>) {
    let mut commands = Vec::with_capacity(rooms.len());
    let mut tasks = Vec::with_capacity(rooms.len());
    for (room, inbound) in rooms {
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let prefix = format!("{run_id}-{}-", room.index);
        let run = RoomRun::new(room, prefix, Arc::clone(body), Arc::clone(progress));
        tasks.push(tokio::spawn(run.drive(inbound, rx)));
    }
    (commands, tasks)
}

/// One room's state, owned by its task.
struct RoomRun {
    room: Room,
    prefix: String,
    body: Arc<str>,
    progress: Arc<Progress>,
    /// Every member's bit (member m is bit m).
    all: u64,
    ledger: Vec<Sent>,
    /// (member, request id) → ledger index.
    awaiting: HashMap<(usize, i64), usize>,
    /// typing_log[s]: (sent at, step, measured) of sender s's typing events, in order;
    /// typing_seen[r][s]: how many of them member r has received.
    typing_log: Vec<Vec<(Instant, usize, bool)>>,
    typing_seen: Vec<Vec<usize>>,
    next_sender: usize,
    steps: HashMap<usize, StepCounts>,
    errors: ErrorCounts,
    duplicates: u64,
    /// open[m]: member m's connection has not closed.
    open: Vec<bool>,
}

impl RoomRun {
    fn new(room: Room, prefix: String, body: Arc<str>, progress: Arc<Progress>) -> Self {
        let size = room.members.len();
        Self {
            room,
            prefix,
            body,
            progress,
            all: if size == 64 { u64::MAX } else { (1u64 << size) - 1 },
            ledger: Vec::new(),
            awaiting: HashMap::new(),
            typing_log: vec![Vec::new(); size],
            typing_seen: vec![vec![0usize; size]; size],
            next_sender: 0,
            steps: HashMap::new(),
            errors: ErrorCounts::default(),
            duplicates: 0,
            open: vec![true; size],
        }
    }

    /// Serves the scheduler's commands and the members' frames until the command queue
    /// closes; returns the members' connections.
    async fn drive(
        mut self,
        mut inbound: mpsc::UnboundedReceiver<(usize, Inbound)>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Vec<Connection> {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(command) => self.on_command(command),
                },
                Some((m, Inbound { at, frame })) = inbound.recv() => self.on_frame(m, at, frame),
            }
        }
        self.room.members
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { at, step, measured, typing } => self.send(at, step, measured, typing),
            Command::Report { step, reply } => {
                let _ = reply.send(self.step_counts(step));
            }
            Command::Finish { reply } => {
                let _ = reply.send(self.final_counts());
            }
        }
    }

    /// Sends the event scheduled at `at` from the room's next member in turn (nothing when
    /// that member's connection has closed).
    fn send(&mut self, at: Instant, step: usize, measured: bool, typing: bool) {
        let s = self.next_sender;
        self.next_sender = (s + 1) % self.room.members.len();
        if !self.open[s] {
            return;
        }
        let sent_at = Instant::now();
        let counts = self.steps.entry(step).or_insert_with(StepCounts::new);
        if measured {
            counts.send_lag.record(sent_at.saturating_duration_since(at));
        }
        let member = &mut self.room.members[s];
        if typing {
            if member.notify("typing", json!({"room_id": self.room.id, "typing": true})).is_ok() {
                self.typing_log[s].push((sent_at, step, measured));
                counts.typings += u64::from(measured);
                Progress::bump(&self.progress.sent);
            }
            return;
        }
        let n = self.ledger.len();
        let data = text_message(&self.room.id, &self.body, format!("{}{n}", self.prefix));
        if let Ok(id) = member.send("message.send", data) {
            self.awaiting.insert((s, id), n);
            self.ledger.push(Sent { at: sent_at, step, measured, got: 1 << s, acked: false, refused: false });
            counts.messages += u64::from(measured);
            Progress::bump(&self.progress.sent);
        }
    }

    /// What was measured for `step` (then forgotten), with the deliveries of its measured
    /// messages still missing.
    fn step_counts(&mut self, step: usize) -> StepCounts {
        let mut counts = self.steps.remove(&step).unwrap_or_else(StepCounts::new);
        counts.missing = self
            .ledger
            .iter()
            .filter(|m| m.step == step && m.measured && !m.refused)
            .map(|m| u64::from((self.all & !m.got).count_ones()))
            .sum();
        counts
    }

    /// The room's final tally: messages, deliveries expected and lost, typing events lost (to
    /// members still connected), and the errors (handed over once).
    fn final_counts(&mut self) -> FinalCounts {
        let size = self.room.members.len();
        let mut fin = FinalCounts { duplicates: self.duplicates, ..FinalCounts::default() };
        for m in &self.ledger {
            fin.messages += 1;
            if m.refused {
                fin.refused += 1;
                continue;
            }
            fin.unacked += u64::from(!m.acked);
            fin.expected += u64::from(size as u32 - 1);
            fin.lost += u64::from((self.all & !m.got).count_ones());
        }
        for (r, seen) in self.typing_seen.iter().enumerate() {
            for (s, &n) in seen.iter().enumerate() {
                if r != s && self.open[r] {
                    let log = &self.typing_log[s];
                    fin.typing_lost += (log.len() - n.min(log.len())) as u64;
                }
            }
        }
        fin.errors = std::mem::take(&mut self.errors);
        fin
    }

    /// A frame member `m` received at `at`.
    fn on_frame(&mut self, m: usize, at: Instant, frame: Frame) {
        match frame {
            Frame::Event { event, data } if event == "message.new" => self.on_message(m, at, &data),
            Frame::Event { event, data } if event == "typing" && data["typing"] == json!(true) => {
                self.on_typing(m, at, &data);
            }
            Frame::Ack(a) => self.on_ack(m, at, a),
            other => {
                if note_unexpected(other, &mut self.errors, &self.progress) {
                    self.open[m] = false;
                }
            }
        }
    }

    fn on_message(&mut self, m: usize, at: Instant, data: &Value) {
        let Some(n) = client_index(data, &self.prefix).filter(|&n| n < self.ledger.len()) else {
            self.errors.add("unexpected_message");
            return;
        };
        let sent = &mut self.ledger[n];
        if sent.got & (1 << m) != 0 {
            self.duplicates += 1;
            return;
        }
        sent.got |= 1 << m;
        let latency = at.saturating_duration_since(sent.at);
        let counts = self.steps.entry(sent.step).or_insert_with(StepCounts::new);
        if sent.measured {
            counts.delivery.record(latency);
            counts.deliveries += 1;
        }
        self.progress.record_latency(latency);
        Progress::bump(&self.progress.delivered);
    }

    /// A typing event, matched in order to its sender's log.
    fn on_typing(&mut self, m: usize, at: Instant, data: &Value) {
        let Some(&s) = data["user_id"].as_str().and_then(|u| self.room.by_user.get(u)) else {
            self.errors.add("unexpected_typing");
            return;
        };
        let seen = &mut self.typing_seen[m][s];
        if let Some(&(sent_at, step, measured)) = self.typing_log[s].get(*seen) {
            *seen += 1;
            if measured {
                let counts = self.steps.entry(step).or_insert_with(StepCounts::new);
                counts.typing.record(at.saturating_duration_since(sent_at));
                counts.deliveries += 1;
            }
        }
    }

    fn on_ack(&mut self, m: usize, at: Instant, a: Ack) {
        let Some(n) = self.awaiting.remove(&(m, a.id)) else {
            // Acks of the set-up typing requests.
            return;
        };
        let sent = &mut self.ledger[n];
        if a.ok {
            sent.acked = true;
            if sent.measured {
                let counts = self.steps.entry(sent.step).or_insert_with(StepCounts::new);
                counts.ack.record(at.saturating_duration_since(sent.at));
            }
            Progress::bump(&self.progress.acked);
        } else {
            sent.refused = true;
            note_refused(a.error_code, &mut self.errors, &self.progress);
        }
    }
}
