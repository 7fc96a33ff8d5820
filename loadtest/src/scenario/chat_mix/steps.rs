//! `chat-mix` steps: the offered rate stepped up until delivery p99 passes the limit. Each
//! step dispatches its events open loop to the room tasks, settles, gathers every room's
//! counts and is judged on its delivery p99.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::ChatMixArgs;
use super::room::{Command, FinalCounts, StepCounts};
use crate::scenario::{Cadence, Phases, sleep_until};
use crate::stats::round3;

/// How long after a step's last send its deliveries may still arrive before it is judged.
const SETTLE: Duration = Duration::from_secs(1);

/// What the steps found: every step's summary and the highest offered rate that passed.
pub(super) struct Stepped {
    pub steps: Vec<Value>,
    pub best: Option<f64>,
}

/// Runs steps from the first rate until a step fails (and `--steps-past-limit` more), the
/// given rates run out or the next rate is over `--max-rate`. `started` is the instant the
/// reported step start times count from.
pub(super) async fn run_steps(
    args: &ChatMixArgs,
    commands: &[mpsc::UnboundedSender<Command>],
    started: Instant,
) -> Stepped {
    let mut steps = Vec::new();
    let mut rate = args.rates.first().copied().unwrap_or(args.start_rate);
    let mut failed_steps = 0usize;
    let mut best: Option<f64> = None;
    let mut rng = fastrand::Rng::new();
    for step in 0.. {
        let (summary, passed) = run_step(args, commands, &mut rng, step, rate, started).await;
        progress_line(&summary);
        steps.push(summary);
        if passed {
            best = Some(rate);
        } else {
            failed_steps += 1;
        }
        if failed_steps > args.steps_past_limit {
            break;
        }
        match next_rate(args, step, rate) {
            Some(next) => rate = next,
            None => break,
        }
    }
    Stepped { steps, best }
}

/// The rate of the step after `step`: the next given rate, or without given rates this one
/// times the step factor; `None` when there is none or it is over `--max-rate`.
fn next_rate(args: &ChatMixArgs, step: usize, rate: f64) -> Option<f64> {
    let next = match args.rates.get(step + 1) {
        Some(&next) => next,
        None if !args.rates.is_empty() => return None,
        None => (rate * args.step_factor).round(),
    };
    if next > args.max_rate { None } else { Some(next) }
}

/// One step at `rate`: dispatches its events, lets them settle, gathers and judges the
/// rooms' counts. Returns the step's summary and whether it passed.
async fn run_step(
    args: &ChatMixArgs,
    commands: &[mpsc::UnboundedSender<Command>],
    rng: &mut fastrand::Rng,
    step: usize,
    rate: f64,
    started: Instant,
) -> (Value, bool) {
    let step_start = Instant::now() + Duration::from_millis(50);
    let secs = Duration::from_secs;
    let phases = Phases::new(step_start, secs(args.step_warmup), secs(args.step_secs), SETTLE);
    schedule(args, commands, rng, step, Cadence::new(step_start, rate, 1), phases).await;
    sleep_until(phases.grace_end).await;

    let counts = gather(commands, step).await;
    let judged = judged_p99(&counts);
    let passed = judged.is_some_and(|p99| p99 <= args.p99_limit_ms);
    let secs = args.step_secs as f64;
    let summary = json!({
        "offered_rate": rate,
        "sent_per_sec": round3((counts.messages + counts.typings) as f64 / secs),
        "messages_per_sec": round3(counts.messages as f64 / secs),
        "typing_per_sec": round3(counts.typings as f64 / secs),
        "deliveries_per_sec": round3(counts.deliveries as f64 / secs),
        "delivery_ms": counts.delivery.summary(),
        "typing_ms": counts.typing.summary(),
        "ack_ms": counts.ack.summary(),
        "send_lag_ms": counts.send_lag.summary(),
        "missing_at_judgement": counts.missing,
        "judged_p99_ms": judged,
        "passed": passed,
        "t_start": round3(step_start.duration_since(started).as_secs_f64()),
    });
    (summary, passed)
}

/// Dispatches the events of one step, every millisecond those that are due: each goes to a
/// group room with probability `--group-share` (else a pair) and is a typing event with
/// probability `--typing-share` (else a message).
async fn schedule(
    args: &ChatMixArgs,
    commands: &[mpsc::UnboundedSender<Command>],
    rng: &mut fastrand::Rng,
    step: usize,
    cadence: Cadence,
    phases: Phases,
) {
    let mut k = 0u64;
    loop {
        let now = Instant::now();
        loop {
            let at = cadence.at(0, k);
            if at > now {
                break;
            }
            if at >= phases.send_end {
                return;
            }
            let room = if args.groups > 0 && (args.pairs == 0 || rng.f64() < args.group_share) {
                args.pairs + rng.usize(0..args.groups)
            } else {
                rng.usize(0..args.pairs)
            };
            let typing = rng.f64() < args.typing_share;
            let measured = at >= phases.measure_start;
            let _ = commands[room].send(Command::Send { at, step, measured, typing });
            k += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every room's counts of `step`, added up.
async fn gather(commands: &[mpsc::UnboundedSender<Command>], step: usize) -> StepCounts {
    let mut counts = StepCounts::new();
    for tx in commands {
        let (reply, answer) = oneshot::channel();
        if tx.send(Command::Report { step, reply }).is_ok()
            && let Ok(c) = answer.await
        {
            counts.merge(&c);
        }
    }
    counts
}

/// Waits `--grace` for the stragglers to arrive, then adds up every room's final tally.
pub(super) async fn final_tally(args: &ChatMixArgs, commands: &[mpsc::UnboundedSender<Command>]) -> FinalCounts {
    sleep_until(Instant::now() + Duration::from_secs(args.grace)).await;
    let mut totals = FinalCounts::default();
    for tx in commands {
        let (reply, answer) = oneshot::channel();
        if tx.send(Command::Finish { reply }).is_ok()
            && let Ok(c) = answer.await
        {
            totals.merge(&c);
        }
    }
    totals
}

/// The step's delivery p99, counting deliveries still missing as later than any measured one.
fn judged_p99(c: &StepCounts) -> Option<f64> {
    let measured = c.delivery.count();
    let total = measured + c.missing;
    if total == 0 {
        return None;
    }
    // The p99 lies among the missing once more than 1 % are missing.
    if c.missing as f64 > 0.01 * total as f64 {
        return Some(f64::INFINITY);
    }
    let q = 0.99 * total as f64 / measured as f64;
    c.delivery.quantile_ms(q.min(1.0))
}

/// The line printed as each step ends.
fn progress_line(s: &Value) {
    let d = &s["delivery_ms"];
    eprintln!(
        "step {:>8}/s offered: sent {:>9}/s  deliveries {:>9}/s  p50 {:>7} ms  p99 {:>7} ms  ack p99 {:>7} ms  missing {}  {}",
        s["offered_rate"],
        s["sent_per_sec"],
        s["deliveries_per_sec"],
        d["p50"],
        d["p99"],
        s["ack_ms"]["p99"],
        s["missing_at_judgement"],
        if s["passed"].as_bool() == Some(true) { "PASS" } else { "FAIL" }
    );
}
