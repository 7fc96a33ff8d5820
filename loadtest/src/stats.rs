//! Measurement and reporting: latency histograms (HDR, microsecond resolution, merged from
//! per-task recorders so hot paths never share a lock), error tallies, a once-a-second
//! progress line, and the JSON report. Everything a scenario prints or writes goes through
//! here, so later report formats (HTML/SVG) start from the same `serde_json::Value`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Largest latency a histogram tracks exactly; larger values are clamped to it.
const MAX_TRACKED_US: u64 = 10 * 60 * 1_000_000;

/// Latencies in microseconds, 3 significant digits.
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl LatencyRecorder {
    pub fn new() -> Self {
        Self { histogram: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static histogram bounds are valid") }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.clamp(1, MAX_TRACKED_US));
    }

    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.histogram.add(&other.histogram).expect("recorders share bounds");
    }

    /// Count, mean and percentiles in milliseconds (all `null` when nothing was recorded).
    pub fn summary(&self) -> Value {
        let h = &self.histogram;
        if h.is_empty() {
            return json!({"count": 0, "mean": null, "p50": null, "p90": null, "p99": null,
                          "p999": null, "max": null});
        }
        let q = |q: f64| ms(h.value_at_quantile(q));
        json!({
            "count": h.len(),
            "mean": round3(h.mean() / 1000.0),
            "p50": q(0.50),
            "p90": q(0.90),
            "p99": q(0.99),
            "p999": q(0.999),
            "max": ms(h.max()),
        })
    }
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Errors by kind: an ack's error code, `close:<code>`, `send_failed`, … .
#[derive(Default)]
pub struct ErrorCounts {
    by_kind: BTreeMap<String, u64>,
}

impl ErrorCounts {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.by_kind.entry(kind.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (kind, n) in &other.by_kind {
            *self.by_kind.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    pub fn get(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    pub fn to_json(&self) -> Value {
        json!({"total": self.total(), "by_kind": self.by_kind})
    }
}

/// Live counters the scenario tasks bump and the progress line reads.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    stopped: AtomicBool,
}

/// Per-second progress, kept for the report's `timeline` (stalls show up here, not in
/// percentiles).
pub struct Timeline {
    /// Seconds since the start of the run and the counts during that second.
    samples: Vec<(f64, [u64; 4])>,
}

impl Timeline {
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.samples
                .iter()
                .map(|(t, [sent, acked, delivered, errors])| {
                    json!({"t": round3(*t), "sent": sent, "acked": acked,
                           "delivered": delivered, "errors": errors})
                })
                .collect(),
        )
    }
}

impl Progress {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 4] {
        [
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }

    /// Prints per-second counts to stderr until `stop`; the task returns the timeline.
    pub fn spawn_reporter(self: &Arc<Self>, started: Instant) -> tokio::task::JoinHandle<Timeline> {
        let progress = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(started) + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            let mut last = [0u64; 4];
            let mut samples = Vec::new();
            while !progress.stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = progress.snapshot();
                let delta: [u64; 4] = std::array::from_fn(|i| now[i] - last[i]);
                let t = started.elapsed().as_secs_f64();
                eprintln!(
                    "[{t:>4.0}s] sent/s {:>6}  acked/s {:>6}  delivered/s {:>6}  errors {}",
                    delta[0], delta[1], delta[2], now[3],
                );
                samples.push((t, delta));
                last = now;
            }
            Timeline { samples }
        })
    }

    /// Makes the reporter return after its next tick.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// Writes the report as pretty JSON.
pub fn write_report(path: &Path, report: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(report).expect("a Value always serializes");
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// One line of a latency table: `p50 1.234  p90 …` in ms.
pub fn describe_latency(summary: &Value) -> String {
    let f = |k: &str| match summary[k].as_f64() {
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    };
    format!(
        "n={:<7} p50 {:>8}  p90 {:>8}  p99 {:>8}  p99.9 {:>8}  max {:>8}  (ms)",
        summary["count"],
        f("p50"),
        f("p90"),
        f("p99"),
        f("p999"),
        f("max")
    )
}
