//! The fault schedule of a `chaos` run: `AT:NAME:COMMAND` entries, run by the generator
//! itself (`sh -c`) at their offsets from the start of traffic. Each fault opens a period that
//! lasts until the next fault starts (its heal and the recovery after it included), so every
//! disconnect, error and loss can be put down to the fault whose period it fell in. Period 0,
//! before the first fault, is the baseline.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::scenario::sleep_until;
use crate::stats::round3;

/// The name of the period before the first fault.
pub const BASELINE: &str = "baseline";

/// One fault: started by `command` at `at`, ended by `heal` (if any).
pub struct Fault {
    pub name: String,
    pub at: Duration,
    pub command: String,
    pub heal: Option<(Duration, String)>,
}

/// The faults in start order.
pub struct Schedule {
    pub faults: Vec<Fault>,
}

/// `AT:NAME:COMMAND`, AT in seconds (fractions allowed); the command may contain colons.
fn parse_entry(entry: &str) -> Result<(Duration, String, String)> {
    let mut parts = entry.splitn(3, ':');
    let (Some(at), Some(name), Some(command)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("fault entry {entry:?} is not AT_SECS:NAME:COMMAND");
    };
    let at: f64 = at.trim().parse().with_context(|| format!("fault entry {entry:?}: AT_SECS is not a number"))?;
    if !at.is_finite() || at < 0.0 || name.trim().is_empty() || command.trim().is_empty() {
        bail!("fault entry {entry:?}: AT_SECS must be >= 0, NAME and COMMAND not empty");
    }
    Ok((Duration::from_secs_f64(at), name.trim().to_owned(), command.to_owned()))
}

impl Schedule {
    /// Faults from `--fault` entries, each with the `--heal` entry of the same name (at most
    /// one, after the fault and before the next fault starts).
    pub fn parse(faults: &[String], heals: &[String]) -> Result<Self> {
        let mut list = Vec::new();
        for entry in faults {
            let (at, name, command) = parse_entry(entry)?;
            if name == BASELINE || list.iter().any(|f: &Fault| f.name == name) {
                bail!("fault name {name:?} is reserved or used twice");
            }
            list.push(Fault { name, at, command, heal: None });
        }
        list.sort_by_key(|f| f.at);
        for entry in heals {
            let (at, name, command) = parse_entry(entry)?;
            let Some(i) = list.iter().position(|f| f.name == name) else {
                bail!("--heal {name:?} names no --fault");
            };
            let next = list.get(i + 1).map(|f| f.at);
            if at < list[i].at || next.is_some_and(|n| at > n) || list[i].heal.is_some() {
                bail!("--heal {name:?} must come once, after its fault and before the next fault");
            }
            list[i].heal = Some((at, command));
        }
        Ok(Self { faults: list })
    }

    /// Period names: the baseline, then one per fault.
    pub fn period_names(&self) -> Vec<String> {
        std::iter::once(BASELINE.to_owned()).chain(self.faults.iter().map(|f| f.name.clone())).collect()
    }

    /// The period `offset` (from the start of traffic) falls in.
    pub fn period(&self, offset: Duration) -> usize {
        self.faults.iter().take_while(|f| f.at <= offset).count()
    }

    /// The period of instant `at`, for a run whose traffic started at `t0`.
    pub fn period_of(&self, t0: Instant, at: Instant) -> usize {
        self.period(at.saturating_duration_since(t0))
    }

    /// Each period's start and end offsets; the last ends at `end`.
    pub fn bounds(&self, end: Duration) -> Vec<(Duration, Duration)> {
        let starts: Vec<Duration> = std::iter::once(Duration::ZERO).chain(self.faults.iter().map(|f| f.at)).collect();
        starts.iter().enumerate().map(|(p, &s)| (s, starts.get(p + 1).copied().unwrap_or(end).max(s))).collect()
    }
}

/// Runs every fault and heal command at its offset from `t0`, each in its own `sh -c` (a slow
/// command never delays the next), printing a line as each ends; returns what each did.
pub async fn run_commands(schedule: &Schedule, t0: Instant) -> Vec<Value> {
    let mut set = JoinSet::new();
    for f in &schedule.faults {
        let steps = std::iter::once(("fault", f.at, f.command.clone()))
            .chain(f.heal.iter().map(|(at, command)| ("heal", *at, command.clone())));
        for (kind, at, command) in steps {
            let name = f.name.clone();
            set.spawn(async move {
                sleep_until(t0 + at).await;
                let started = Instant::now();
                let output = tokio::process::Command::new("sh").arg("-c").arg(&command).output().await;
                let took = started.elapsed().as_secs_f64();
                let (status, stderr) = match output {
                    Ok(o) => (o.status.code(), String::from_utf8_lossy(&o.stderr).trim().to_owned()),
                    Err(e) => (None, e.to_string()),
                };
                let tail: String = stderr.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!(
                    "[{:>7.1} s] {kind} {name}: {command}  → exit {} in {took:.1} s{}",
                    at.as_secs_f64(),
                    status.map_or("(signal)".into(), |c| c.to_string()),
                    if status == Some(0) { String::new() } else { format!("  stderr: {tail}") }
                );
                json!({"kind": kind, "name": name, "at_secs": round3(at.as_secs_f64()), "command": command,
                       "exit": status, "took_secs": round3(took), "stderr_tail": tail})
            });
        }
    }
    let mut done: Vec<Value> = set.join_all().await;
    done.sort_by(|a, b| a["at_secs"].as_f64().partial_cmp(&b["at_secs"].as_f64()).unwrap_or(std::cmp::Ordering::Equal));
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults_and_heals_into_periods() {
        let faults = ["30:kill:kill -9 $(cat n1.pid)".to_owned(), "10:stop:kill -STOP 1".to_owned()];
        let heals = ["12.5:stop:kill -CONT 1".to_owned()];
        let s = Schedule::parse(&faults, &heals).unwrap();
        assert_eq!(s.period_names(), ["baseline", "stop", "kill"]);
        assert_eq!(s.faults[1].command, "kill -9 $(cat n1.pid)");
        assert_eq!(s.faults[0].heal.as_ref().unwrap().0, Duration::from_millis(12500));
        assert_eq!(s.period(Duration::from_secs(5)), 0);
        assert_eq!(s.period(Duration::from_secs(10)), 1);
        assert_eq!(s.period(Duration::from_secs(31)), 2);
        let b = s.bounds(Duration::from_secs(40));
        assert_eq!(b[1], (Duration::from_secs(10), Duration::from_secs(30)));
        assert!(Schedule::parse(&faults, &["40:stop:x".to_owned()]).is_err());
        assert!(Schedule::parse(&["x:y".to_owned()], &[]).is_err());
    }
}
