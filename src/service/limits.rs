//! Per-user rate limits on commands that cost others something (moving one's position, call
//! signals pushed to the other party) or
//! leave rows, actors and subscriptions behind (groups, direct rooms, live sessions, reports),
//! shared by every connection of a node. Each limit counts per node: a
//! user spread over several nodes gets each node's allowance.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::UserLimitSettings;
use crate::domain::{Error, UserId};

/// A per-user allowance of `n` a minute, in bursts of up to `n`.
pub struct UserLimiter {
    limiter: DefaultKeyedRateLimiter<UserId>,
}

impl UserLimiter {
    pub fn per_minute(n: u32) -> Self {
        Self::per_minute_in_bursts_of(n, n)
    }

    /// `n` a minute, in bursts of up to `burst`.
    pub fn per_minute_in_bursts_of(n: u32, burst: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(burst)) }
    }

    /// Takes one from `user`'s allowance, or refuses with `rate_limited`.
    pub fn check(&self, user: &UserId) -> Result<(), Error> {
        self.limiter.check_key(user).map_err(|_| Error::RateLimited)
    }

    /// Forgets users whose allowance is full again. A keyed limiter keeps a state per user it
    /// has seen, so without this its memory grows with every user who ever acted; with it,
    /// it holds the users who acted within about the last minute.
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Users held now (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.limiter.len()
    }
}

/// The node's per-user limits (`SWITCHBOARD_*_PER_MIN`, [`UserLimitSettings`]).
pub struct UserLimits {
    pub location_updates: UserLimiter,
    pub group_creates: UserLimiter,
    /// New direct rooms only: finding one that exists is free.
    pub direct_opens: UserLimiter,
    pub live_creates: UserLimiter,
    pub reports: UserLimiter,
    pub call_signals: UserLimiter,
}

impl UserLimits {
    pub fn new(settings: &UserLimitSettings) -> Self {
        Self {
            location_updates: UserLimiter::per_minute(settings.location_updates_per_min),
            group_creates: UserLimiter::per_minute(settings.group_creates_per_min),
            direct_opens: UserLimiter::per_minute(settings.direct_opens_per_min),
            live_creates: UserLimiter::per_minute(settings.live_creates_per_min),
            reports: UserLimiter::per_minute(settings.reports_per_min),
            call_signals: UserLimiter::per_minute_in_bursts_of(
                settings.call_signals_per_min,
                settings.call_signals_per_min.div_ceil(10),
            ),
        }
    }

    /// Bounds the limiters' memory; the hub calls it every `SWEEP_EVERY`.
    pub fn sweep(&self) {
        let limiters = [
            &self.location_updates,
            &self.group_creates,
            &self.direct_opens,
            &self.live_creates,
            &self.reports,
            &self.call_signals,
        ];
        for limiter in limiters {
            limiter.sweep();
        }
    }
}

/// How often the hub sweeps the limiters: an allowance refills within a minute.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_per_user() {
        let limiter = UserLimiter::per_minute(3);
        let (alice, bob) = (UserId::parse("alice").unwrap(), UserId::parse("bob").unwrap());
        for _ in 0..3 {
            assert!(limiter.check(&alice).is_ok());
        }
        assert!(matches!(limiter.check(&alice), Err(Error::RateLimited)));
        assert!(limiter.check(&bob).is_ok(), "each user has an allowance of their own");
        assert_eq!(limiter.held(), 2);
        // Both are still refilling: a sweep keeps them.
        limiter.sweep();
        assert_eq!(limiter.held(), 2);
    }
}
