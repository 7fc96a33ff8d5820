//! Per-user allowances on commands that cost other users something or leave rows, actors and
//! subscriptions behind: each is counted per node, in bursts of as many as a minute allows.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct UserLimitSettings {
    /// `location.update`s one user may make per minute (per node), with bursts of as many.
    #[arg(long, env = "SWITCHBOARD_LOCATION_UPDATES_PER_MIN", default_value_t = 6)]
    pub location_updates_per_min: u32,

    /// `room.group.create`s one user may make per minute (per node), with bursts of as many.
    #[arg(long, env = "SWITCHBOARD_GROUP_CREATES_PER_MIN", default_value_t = 5)]
    pub group_creates_per_min: u32,

    /// New direct rooms one user may open per minute (per node), with bursts of as many;
    /// opening a direct room that already exists is not counted.
    #[arg(long, env = "SWITCHBOARD_DIRECT_OPENS_PER_MIN", default_value_t = 30)]
    pub direct_opens_per_min: u32,

    /// `live.create`s one user may make per minute (per node), with bursts of as many.
    #[arg(long, env = "SWITCHBOARD_LIVE_CREATES_PER_MIN", default_value_t = 5)]
    pub live_creates_per_min: u32,

    /// Live sessions one user may host at once (across the cluster); past it `live.create`
    /// is refused with `conflict` until one ends.
    #[arg(long, env = "SWITCHBOARD_LIVE_SESSIONS_PER_HOST", default_value_t = 3)]
    pub live_sessions_per_host: u32,

    /// `report`s one user may file per minute (per node), with bursts of as many.
    #[arg(long, env = "SWITCHBOARD_REPORTS_PER_MIN", default_value_t = 10)]
    pub reports_per_min: u32,

    /// `call.signal`s one user may send per minute (per node), in bursts of a tenth of that:
    /// enough for a call's offer, answer and trickled candidates, too few to fill the other
    /// party's outbox and close their devices.
    #[arg(long, env = "SWITCHBOARD_CALL_SIGNALS_PER_MIN", default_value_t = 600)]
    pub call_signals_per_min: u32,
}

impl UserLimitSettings {
    /// Every allowance must be positive: a zero would refuse the command for good.
    pub fn validate(&self) -> Result<(), String> {
        let named = [
            ("SWITCHBOARD_LOCATION_UPDATES_PER_MIN", self.location_updates_per_min),
            ("SWITCHBOARD_GROUP_CREATES_PER_MIN", self.group_creates_per_min),
            ("SWITCHBOARD_DIRECT_OPENS_PER_MIN", self.direct_opens_per_min),
            ("SWITCHBOARD_LIVE_CREATES_PER_MIN", self.live_creates_per_min),
            ("SWITCHBOARD_LIVE_SESSIONS_PER_HOST", self.live_sessions_per_host),
            ("SWITCHBOARD_REPORTS_PER_MIN", self.reports_per_min),
            ("SWITCHBOARD_CALL_SIGNALS_PER_MIN", self.call_signals_per_min),
        ];
        match named.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("{name} must be positive")),
            None => Ok(()),
        }
    }
}
