//! The timetables of a measured run, shared by the scenarios: its phases (warm-up, measured
//! window, grace) and the open-loop cadence its senders keep.

use std::time::{Duration, Instant};

/// A run's phases: from `start` a warm-up, then the measured window from `measure_start` to
/// `send_end`, then until `grace_end` the replies still under way. Only what happens inside
/// the window counts towards the per-second rates.
#[derive(Clone, Copy)]
pub struct Phases {
    pub measure_start: Instant,
    pub send_end: Instant,
    pub grace_end: Instant,
}

impl Phases {
    pub fn new(start: Instant, warmup: Duration, measured: Duration, grace: Duration) -> Self {
        let measure_start = start + warmup;
        let send_end = measure_start + measured;
        Self { measure_start, send_end, grace_end: send_end + grace }
    }

    pub fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.send_end
    }
}

/// An open-loop timetable from `t0`: `rate` sends per second over all senders, each sender
/// every `interval` seconds, sender i shifted by i slots so that the sends are evenly spaced
/// overall. A send's time never depends on earlier replies.
#[derive(Clone, Copy)]
pub struct Cadence {
    t0: Instant,
    /// Seconds between two sends of one sender.
    interval: f64,
    /// Seconds between two consecutive senders' first sends (1 / rate).
    slot: f64,
}

impl Cadence {
    pub fn new(t0: Instant, rate: f64, senders: usize) -> Self {
        Self { t0, interval: senders as f64 / rate, slot: 1.0 / rate }
    }

    /// When `sender` makes its `k`-th send (both counted from 0).
    pub fn at(&self, sender: usize, k: u64) -> Instant {
        self.t0 + Duration::from_secs_f64(sender as f64 * self.slot + k as f64 * self.interval)
    }
}
