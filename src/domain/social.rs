//! Social values: notifications, locations, nearby users.

use serde::{Deserialize, Serialize};

use super::{Error, RoomId, Timestamp, UserId};

/// A stored notification, as its recipient sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    /// `follow_request`, `follow_accepted`, `friend_request` or `friend_accepted`.
    pub kind: String,
    pub from: UserId,
    pub room_id: Option<RoomId>,
    pub created_at: Timestamp,
    pub read: bool,
}

/// Follow (one-way) or friend (mutual) requests share one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Follow,
    Friend,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Follow => "follow",
            Self::Friend => "friend",
        }
    }
}

/// Mean Earth radius: distances and nearby cell covers use the same sphere.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A validated position: finite, latitude within ±90, longitude within ±180.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

impl Location {
    pub fn parse(lat: f64, lng: f64) -> Result<Self, Error> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(Error::bad_request("lat must be between -90 and 90"));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(Error::bad_request("lng must be between -180 and 180"));
        }
        Ok(Self { lat, lng })
    }

    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(self, other: Location) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearbyUser {
    pub user_id: UserId,
    pub distance_km: f64,
    pub online: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranges() {
        assert!(Location::parse(31.2, 74.8).is_ok());
        assert!(Location::parse(91.0, 0.0).is_err());
        assert!(Location::parse(0.0, -180.5).is_err());
        assert!(Location::parse(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn measures_distances() {
        let paris = Location::parse(48.8566, 2.3522).unwrap();
        let london = Location::parse(51.5074, -0.1278).unwrap();
        let d = paris.distance_km(london);
        assert!((d - 343.5).abs() < 2.0, "{d}");
    }
}
