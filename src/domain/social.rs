//! Social values: notifications, locations, the grid positions are kept on, nearby users.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum RequestKind {
    Follow,
    Friend,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        self.into()
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

/// Metres per degree of latitude (and of longitude on the equator) on that sphere.
const METRES_PER_DEGREE: f64 = EARTH_RADIUS_KM * 1000.0 * std::f64::consts::PI / 180.0;

/// The grid positions are kept on, so that no one can learn a user's position more finely
/// than one cell, whatever they ask: a position is stored only as the centre of its cell,
/// and distances between users are told only in whole steps of the cell size.
///
/// The grid has rows of equal height (in degrees of latitude), each at least `metres` high.
/// Each row is cut into cells of equal width (in degrees of longitude), each at least
/// `metres` wide along the row's poleward edge, where a degree of longitude is shortest; so
/// every cell is at least `metres` on each side. The two rows that touch a pole hold one
/// cell each (a cap around the pole). Longitudes wrap: +180° and −180° fall in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationGrid {
    metres: u32,
}

impl LocationGrid {
    /// Smallest cell side the server accepts.
    pub const MIN_METRES: u32 = 100;
    /// Largest cell side the server accepts.
    pub const MAX_METRES: u32 = 100_000;

    /// A grid whose cells are at least `metres` on each side (held within
    /// `MIN_METRES..=MAX_METRES`).
    pub fn new(metres: u32) -> Self {
        Self { metres: metres.clamp(Self::MIN_METRES, Self::MAX_METRES) }
    }

    pub fn metres(self) -> u32 {
        self.metres
    }

    /// The centre of the cell holding `at`. Snapping a centre gives it back unchanged.
    pub fn snap(self, at: Location) -> Location {
        let size = f64::from(self.metres);
        let rows = (180.0 * METRES_PER_DEGREE / size).floor().max(1.0);
        let row_height = 180.0 / rows;
        let row = ((at.lat + 90.0) / row_height).floor().clamp(0.0, rows - 1.0);
        let south = -90.0 + row * row_height;
        let poleward = south.abs().max((south + row_height).abs()).min(90.0);
        let edge_length = 360.0 * METRES_PER_DEGREE * poleward.to_radians().cos();
        let cells = (edge_length / size).floor().max(1.0);
        let cell_width = 360.0 / cells;
        let cell = ((at.lng + 180.0).rem_euclid(360.0) / cell_width).floor().clamp(0.0, cells - 1.0);
        Location { lat: south + row_height / 2.0, lng: -180.0 + (cell + 0.5) * cell_width }
    }

    /// `km` in whole steps of the cell size, never below one step: two users in one cell
    /// are one step apart, not 0.
    pub fn round_km(self, km: f64) -> f64 {
        let size = f64::from(self.metres);
        let steps = (km * 1000.0 / size).round().max(1.0);
        steps * size / 1000.0
    }

    /// How many steps of the cell size `km` rounds to (what `round_km` shows), for ordering.
    pub fn steps(self, km: f64) -> u64 {
        (km * 1000.0 / f64::from(self.metres)).round().max(1.0) as u64
    }
}

impl Default for LocationGrid {
    fn default() -> Self {
        Self::new(Self::MIN_METRES)
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

    /// The cell of `at` on `grid`: its centre's bits.
    fn cell(grid: LocationGrid, lat: f64, lng: f64) -> (u64, u64) {
        let centre = grid.snap(Location::parse(lat, lng).unwrap());
        (centre.lat.to_bits(), centre.lng.to_bits())
    }

    #[test]
    fn snapping_keeps_the_cell_centre_only() {
        let grid = LocationGrid::new(100);
        for (lat, lng) in [(31.2281, 74.8337), (-33.9, 151.2), (0.0, 0.0), (64.1, -21.9), (89.9, 10.0)] {
            let at = Location::parse(lat, lng).unwrap();
            let centre = grid.snap(at);
            assert_eq!(grid.snap(centre), centre, "a centre snaps to itself");
            // Within half a cell north–south; the cell is at least 100 m on each side.
            assert!(at.distance_km(centre) < 0.5, "{at:?} -> {centre:?}");
        }
        // Points a few metres apart around a centre share the cell.
        let centre = grid.snap(Location::parse(48.8566, 2.3522).unwrap());
        let d = 3.0 / METRES_PER_DEGREE;
        for (dlat, dlng) in [(d, d), (-d, d), (d, -d), (-d, -d)] {
            let near = Location::parse(centre.lat + dlat, centre.lng + dlng).unwrap();
            assert_eq!(grid.snap(near), centre);
        }
    }

    #[test]
    fn cells_are_at_least_the_precision_on_each_side() {
        for metres in [100, 250, 1000, 100_000] {
            let grid = LocationGrid::new(metres);
            let size_km = f64::from(metres) / 1000.0;
            for lat in [-89.99, -75.0, -40.0, -0.01, 0.0, 0.01, 12.5, 45.0, 60.0, 80.0, 89.0, 89.999] {
                let here = grid.snap(Location::parse(lat, 10.0).unwrap());
                // The neighbouring cells' centres (north, east) are at least one size away.
                let north = grid.snap(Location::parse((here.lat + size_km / 111.0).min(90.0), here.lng).unwrap());
                if north != here {
                    assert!(here.distance_km(north) >= size_km * 0.999, "{metres} m at {lat}: north");
                }
                // Half a cell east along the parallel and a little more: past the cell's edge
                // if it is that narrow.
                let dlng = (size_km * 600.0 / METRES_PER_DEGREE / here.lat.to_radians().cos()).min(90.0);
                let east = grid.snap(Location::parse(here.lat, here.lng + dlng).unwrap());
                if east != here {
                    assert!(here.distance_km(east) >= size_km * 0.999, "{metres} m at {lat}: east");
                }
            }
        }
    }

    #[test]
    fn poles_and_the_antimeridian_snap_cleanly() {
        let grid = LocationGrid::new(100);
        // Every longitude near a pole is one cell.
        assert_eq!(cell(grid, 90.0, -180.0), cell(grid, 90.0, 179.0));
        assert_eq!(cell(grid, -89.99999, 0.0), cell(grid, -90.0, 120.0));
        // +180 and -180 are one meridian.
        assert_eq!(cell(grid, 10.0, 180.0), cell(grid, 10.0, -180.0));
        for (lat, lng) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 180.0), (45.0, -179.99999)] {
            let centre = grid.snap(Location::parse(lat, lng).unwrap());
            assert!(Location::parse(centre.lat, centre.lng).is_ok(), "{centre:?}");
        }
    }

    #[test]
    fn distances_are_told_in_whole_steps() {
        let grid = LocationGrid::new(100);
        assert_eq!(grid.round_km(0.0), 0.1);
        assert_eq!(grid.round_km(0.149), 0.1);
        assert_eq!(grid.round_km(0.151), 0.2);
        assert_eq!(grid.round_km(3.04), 3.0);
        assert_eq!(LocationGrid::new(250).round_km(1.1), 1.0);
        assert_eq!(grid.steps(0.0), 1);
        assert_eq!(LocationGrid::new(5).metres(), LocationGrid::MIN_METRES);
    }

    #[test]
    fn measures_distances() {
        let paris = Location::parse(48.8566, 2.3522).unwrap();
        let london = Location::parse(51.5074, -0.1278).unwrap();
        let d = paris.distance_km(london);
        assert!((d - 343.5).abs() < 2.0, "{d}");
    }
}
