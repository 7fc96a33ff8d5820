//! Measurement and reporting: latency histograms (HDR, microsecond resolution, merged from
//! per-task recorders so hot paths never share a lock), error tallies, indicatif progress
//! (a set-up bar, then a once-a-second status line with the per-second percentiles), and the
//! JSON report, from which `report` draws the HTML/SVG plots.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Largest latency a histogram tracks exactly; larger values are clamped to it.
const MAX_TRACKED_US: u64 = 10 * 60 * 1_000_000;

/// Latencies in microseconds, 3 significant digits.
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        Self { histogram: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static histogram bounds are valid") }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.clamp(1, MAX_TRACKED_US));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at quantile `q`, in ms (`None` when nothing was recorded).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.histogram.is_empty()).then(|| ms(self.histogram.value_at_quantile(q)))
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
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
    /// Delivery latencies of the current second (drained by the reporter each second). A
    /// lock, but taken once per delivery at most a few ten thousand times a second.
    window: Mutex<Option<LatencyRecorder>>,
    stopped: AtomicBool,
}

/// One second of the run.
struct Sample {
    t: f64,
    counts: [u64; 4],
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Per-second progress, kept for the report's `timeline` (stalls show up here, not in
/// percentiles).
pub struct Timeline {
    samples: Vec<Sample>,
}

impl Timeline {
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.samples
                .iter()
                .map(|s| {
                    let [sent, acked, delivered, errors] = s.counts;
                    json!({"t": round3(s.t), "sent": sent, "acked": acked, "delivered": delivered,
                           "errors": errors, "p50_ms": s.p50, "p99_ms": s.p99})
                })
                .collect(),
        )
    }
}

impl Progress {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a delivery latency to the current second's percentiles.
    pub fn record_latency(&self, latency: Duration) {
        let mut window = self.window.lock().expect("no panics while holding the window");
        window.get_or_insert_with(LatencyRecorder::new).record(latency);
    }

    fn snapshot(&self) -> [u64; 4] {
        [
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }

    /// Shows per-second counts and percentiles until `stop`; the task returns the timeline.
    pub fn spawn_reporter(self: &Arc<Self>, started: Instant) -> tokio::task::JoinHandle<Timeline> {
        let progress = Arc::clone(self);
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed:>4}] {msg}").expect("static template"));
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
                let (p50, p99) = {
                    let mut window = progress.window.lock().expect("no panics while holding the window");
                    let q = window.as_ref().map(|w| (w.quantile_ms(0.5), w.quantile_ms(0.99))).unwrap_or_default();
                    if let Some(w) = window.as_mut() {
                        w.reset();
                    }
                    q
                };
                let t = started.elapsed().as_secs_f64();
                let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
                bar.set_message(format!(
                    "sent/s {:>6}  acked/s {:>6}  delivered/s {:>7}  p50 {:>6} ms  p99 {:>6} ms  errors {}",
                    delta[0],
                    delta[1],
                    delta[2],
                    fmt(p50),
                    fmt(p99),
                    now[3],
                ));
                bar.tick();
                samples.push(Sample { t, counts: delta, p50, p99 });
                last = now;
            }
            bar.finish_and_clear();
            Timeline { samples }
        })
    }

    /// Makes the reporter return after its next tick.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// A bar for a set-up phase of `total` steps (connections, joins, rooms).
pub fn setup_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed}) {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
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
