//! `live` viewers: one light task per viewer that owns its socket, joins the session, and
//! then only reads, recognising comment pushes by the run's marker without parsing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{LiveArgs, Plan, kind_of};
use crate::client::{Decoded, Frame, Socket, Target, decode, encode_request};
use crate::scenario::SETUP_TIMEOUT;
use crate::stats::{ErrorCounts, Progress};

/// Join failures printed in full; the rest are only counted.
const FAILURES_SHOWN: u64 = 5;

/// How often the join progress line is printed.
const JOIN_NOTE_EVERY: Duration = Duration::from_secs(2);

/// The viewers of a run: their tasks, the reports of their joins, and what they share.
pub(super) struct Crowd {
    tasks: Vec<JoinHandle<ViewerOutcome>>,
    /// One report per viewer: joined, or why not.
    joins: mpsc::UnboundedReceiver<Result<(), String>>,
    joined: Arc<AtomicU64>,
    /// Set once every viewer has reported; the viewers measure against it from then on.
    plan: Arc<OnceLock<Plan>>,
    stop: watch::Sender<bool>,
}

impl Crowd {
    /// Spawns `--viewers` viewers, round-robin over `targets`; each connects and joins
    /// `session`, `--connect-concurrency` at a time.
    pub(super) fn spawn(
        args: &LiveArgs,
        targets: &[Target],
        run_id: &str,
        session: &str,
        progress: &Arc<Progress>,
    ) -> Self {
        let plan = Arc::new(OnceLock::new());
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(args.common.connect_concurrency.max(1)));
        let joined = Arc::new(AtomicU64::new(0));
        let (join_tx, joins) = mpsc::unbounded_channel();
        let marker: Arc<str> = format!("\"text\":\"{run_id}:").into();
        let mut tasks = Vec::with_capacity(args.viewers);
        for i in 0..args.viewers {
            let url = i % targets.len();
            let viewer = Viewer {
                target: targets[url].clone(),
                url,
                user: format!("lt-{run_id}-v{i}"),
                session: session.to_owned(),
                marker: Arc::clone(&marker),
                plan: Arc::clone(&plan),
                progress: Arc::clone(progress),
                gate: Arc::clone(&gate),
                joined: Arc::clone(&joined),
                join_tx: join_tx.clone(),
                stop: stop_rx.clone(),
            };
            tasks.push(tokio::spawn(viewer.run()));
        }
        Self { tasks, joins, joined, plan, stop }
    }

    /// Waits until every viewer has reported its join, printing the first failures and a
    /// progress line now and then; returns the failures.
    pub(super) async fn await_joins(&mut self) -> ErrorCounts {
        let viewers = self.tasks.len();
        let mut failures = ErrorCounts::default();
        let mut reported = 0usize;
        let mut last_note = Instant::now();
        while let Some(result) = self.joins.recv().await {
            reported += 1;
            if let Err(kind) = result {
                if failures.total() < FAILURES_SHOWN {
                    eprintln!("viewer failed to join: {kind}");
                }
                failures.add(kind_of(&kind));
            }
            if last_note.elapsed() >= JOIN_NOTE_EVERY {
                eprintln!("  {reported}/{viewers} viewers set up ({} joined)", self.joined());
                last_note = Instant::now();
            }
            if reported == viewers {
                break;
            }
        }
        failures
    }

    /// Viewers joined so far.
    pub(super) fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    /// Hands the comment timetable to every viewer.
    pub(super) fn start(&self, plan: Plan) {
        let _ = self.plan.set(plan);
    }

    /// Tells every viewer to stop, and collects what each saw.
    pub(super) async fn dismiss(self) -> Result<Vec<ViewerOutcome>> {
        let _ = self.stop.send(true);
        let mut outcomes = Vec::with_capacity(self.tasks.len());
        for viewer in self.tasks {
            outcomes.push(viewer.await?);
        }
        Ok(outcomes)
    }
}

/// What one viewer saw.
pub(super) struct ViewerOutcome {
    pub(super) url: usize,
    pub(super) joined: bool,
    /// Bit k: comment k arrived.
    pub(super) seen: Vec<u64>,
    pub(super) unique: u64,
    pub(super) duplicates: u64,
    pub(super) in_window: u64,
    /// Latencies of measured comments, in µs.
    pub(super) latencies: Vec<u32>,
    pub(super) errors: ErrorCounts,
    /// Closed (by the server or the network) before the run ended.
    pub(super) dropped: bool,
}

impl ViewerOutcome {
    fn new(url: usize) -> Self {
        Self {
            url,
            joined: false,
            seen: Vec::new(),
            unique: 0,
            duplicates: 0,
            in_window: 0,
            latencies: Vec::new(),
            errors: ErrorCounts::default(),
            dropped: false,
        }
    }

    /// Marks comment `k` seen; false if it was already.
    fn mark(&mut self, k: u64) -> bool {
        let (word, bit) = ((k / 64) as usize, k % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }
}

/// One viewer: a user on one of the viewer URLs, with its own socket and its copies of what
/// the crowd shares.
struct Viewer {
    target: Target,
    url: usize,
    user: String,
    session: String,
    marker: Arc<str>,
    plan: Arc<OnceLock<Plan>>,
    progress: Arc<Progress>,
    gate: Arc<Semaphore>,
    joined: Arc<AtomicU64>,
    join_tx: mpsc::UnboundedSender<Result<(), String>>,
    stop: watch::Receiver<bool>,
}

impl Viewer {
    /// Connects and joins (one of `gate`'s permits at a time), reports the join, then reads
    /// pushes until told to stop or dropped.
    async fn run(mut self) -> ViewerOutcome {
        let mut out = ViewerOutcome::new(self.url);
        let socket = {
            let _permit = self.gate.acquire().await.expect("the gate is never closed");
            self.connect_and_join().await
        };
        let mut socket = match socket {
            Ok(socket) => {
                out.joined = true;
                self.joined.fetch_add(1, Ordering::Relaxed);
                let _ = self.join_tx.send(Ok(()));
                socket
            }
            Err(e) => {
                let _ = self.join_tx.send(Err(format!("{e:#}")));
                return out;
            }
        };

        loop {
            let next = tokio::select! {
                next = socket.next() => next,
                _ = self.stop.changed() => break,
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    if text.as_str() == "2" {
                        // Engine.IO ping (Socket.IO framing): answer or be dropped.
                        let _ = socket.send(Message::Text("3".into())).await;
                        continue;
                    }
                    self.on_text(text.as_str(), at, &mut out);
                }
                Some(Ok(Message::Close(close))) => {
                    out.errors.add(match close {
                        Some(c) => format!("close:{}", u16::from(c.code)),
                        None => "close".into(),
                    });
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    out.errors.add(format!("disconnected: {}", kind_of(&format!(": {e}"))));
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
                None => {
                    out.errors.add("disconnected: stream ended");
                    Progress::bump(&self.progress.errors);
                    out.dropped = true;
                    return out;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
        out
    }

    /// The hot path: one pushed frame.
    fn on_text(&self, text: &str, at: Instant, out: &mut ViewerOutcome) {
        if let Some(start) = text.find(&*self.marker) {
            let rest = &text[start + self.marker.len()..];
            let parsed = rest.split_once('"').and_then(|(body, _)| {
                let (k, us) = body.split_once(':')?;
                Some((k.parse::<u64>().ok()?, us.parse::<u64>().ok()?))
            });
            let Some((k, sent_us)) = parsed else {
                out.errors.add("unparsable_comment");
                return;
            };
            if !out.mark(k) {
                out.duplicates += 1;
                return;
            }
            out.unique += 1;
            Progress::bump(&self.progress.delivered);
            if let Some(plan) = self.plan.get() {
                if k >= plan.first_measured {
                    let at_us = at.duration_since(plan.epoch).as_micros() as u64;
                    out.latencies.push(u32::try_from(at_us.saturating_sub(sent_us)).unwrap_or(u32::MAX));
                }
                out.in_window += u64::from(plan.phases.in_window(at));
            }
            return;
        }
        // Anything else: parse it, and count only what signals a problem.
        let Decoded::Frame(frame) = decode(self.target.framing(), text) else { return };
        match frame {
            Frame::Event { event, data } if event == "error" => {
                out.errors.add(format!("error_event:{}", data["code"].as_str().unwrap_or("?")));
                Progress::bump(&self.progress.errors);
            }
            Frame::Event { event, .. } if event == "live.comment" => {
                out.errors.add("foreign_comment");
            }
            Frame::Malformed(_) => out.errors.add("malformed_frame"),
            // live.ended, live.viewers, stray acks: not measured.
            _ => {}
        }
    }

    async fn connect_and_join(&self) -> Result<Socket> {
        let mut socket = crate::client::open(&self.target, &self.user, SETUP_TIMEOUT).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let join = encode_request(self.target.framing(), "live.join", Some(1), json!({"session_id": self.session}));
        socket.send(Message::Text(join.into())).await.map_err(|e| anyhow!("{}: sending live.join: {e}", self.user))?;
        loop {
            if let Some(Frame::Ack(ack)) = self.setup_frame(&mut socket, deadline).await?
                && ack.id == 1
            {
                if ack.ok {
                    return Ok(socket);
                }
                bail!("{}: live.join failed with {}", self.user, ack.error_code.as_deref().unwrap_or("?"));
            }
        }
    }

    /// The next frame during set-up, decoded (`None` for pings and the like).
    async fn setup_frame(&self, socket: &mut Socket, deadline: tokio::time::Instant) -> Result<Option<Frame>> {
        let user = &self.user;
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => Err(anyhow!("{user}: set-up timed out")),
            Ok(None) => Err(anyhow!("{user}: closed during set-up")),
            Ok(Some(Err(e))) => Err(anyhow!("{user}: set-up: {e}")),
            Ok(Some(Ok(Message::Text(text)))) => match decode(self.target.framing(), text.as_str()) {
                Decoded::Frame(frame) => Ok(Some(frame)),
                Decoded::Ping => {
                    socket.send(Message::Text("3".into())).await?;
                    Ok(None)
                }
                Decoded::Ignore => Ok(None),
            },
            Ok(Some(Ok(Message::Close(c)))) => Err(anyhow!("{user}: closed during set-up: {c:?}")),
            Ok(Some(Ok(_))) => Ok(None),
        }
    }
}
