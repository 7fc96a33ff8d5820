//! Locations, snapped to the privacy grid before they are stored, with a geohash index for
//! nearby queries.

use diesel::dsl::insert_into;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::locations;
use super::{Store, StoreError, StoreResult, with_conn};
use crate::domain::{Location, LocationGrid, Timestamp, UserId};

/// Geohash precision stored per user: cells of about 1.2 km × 0.6 km.
pub const GEOHASH_PRECISION: usize = 6;

impl Store {
    /// Stores the user's position as the centre of its cell on `grid`, never finer, and
    /// returns what was stored.
    pub async fn set_location(&self, user: &UserId, at: Location, grid: LocationGrid) -> StoreResult<Location> {
        let at = grid.snap(at);
        let cell = cell_of(at)?;
        let now = Timestamp::now().millis();
        with_conn!(self, copied(user), |conn| {
            insert_into(locations::table)
                .values((
                    locations::user_id.eq(user.as_str()),
                    locations::lat.eq(at.lat),
                    locations::lng.eq(at.lng),
                    locations::geohash.eq(&cell),
                    locations::updated_at.eq(now),
                ))
                .on_conflict(locations::user_id)
                .do_update()
                .set((
                    locations::lat.eq(at.lat),
                    locations::lng.eq(at.lng),
                    locations::geohash.eq(&cell),
                    locations::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
        Ok(at)
    }

    /// Moves every stored position that is off `grid` (never snapped, or snapped to a finer
    /// grid) to its cell's centre; how many moved. Reads the whole table once, a page at a
    /// time; a position updated meanwhile is left as it is.
    pub async fn snap_stored_locations(&self, grid: LocationGrid) -> StoreResult<usize> {
        const PAGE: i64 = 1000;
        let mut after = String::new();
        let mut moved = 0;
        loop {
            let from = after.as_str();
            let page: Vec<(String, f64, f64)> = with_conn!(self, copied(from), |conn| {
                locations::table
                    .filter(locations::user_id.gt(from))
                    .order(locations::user_id)
                    .limit(PAGE)
                    .select((locations::user_id, locations::lat, locations::lng))
                    .load(conn)
                    .await?
            });
            let Some((last, _, _)) = page.last() else { break };
            after = last.clone();
            let mut off_grid = Vec::new();
            for (user, lat, lng) in page {
                let stored = Location { lat, lng };
                let centre = grid.snap(stored);
                if centre != stored {
                    off_grid.push((user, stored, centre, cell_of(centre)?));
                }
            }
            if off_grid.is_empty() {
                continue;
            }
            moved += with_conn!(self, |conn| {
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    let mut moved = 0;
                    for (user, stored, centre, cell) in &off_grid {
                        let row = locations::table
                            .find(user)
                            .filter(locations::lat.eq(stored.lat))
                            .filter(locations::lng.eq(stored.lng));
                        moved += diesel::update(row)
                            .set((
                                locations::lat.eq(centre.lat),
                                locations::lng.eq(centre.lng),
                                locations::geohash.eq(cell),
                            ))
                            .execute(conn)
                            .await?;
                    }
                    Ok(moved)
                })
                .await?
            });
        }
        Ok(moved)
    }

    /// Bulk import of locations (migrations from another system, benchmarks), each snapped
    /// to `grid` as `set_location` does: one transaction, rows written one by one.
    pub async fn import_locations(&self, rows: &[(UserId, Location)], grid: LocationGrid) -> StoreResult<()> {
        let now = Timestamp::now().millis();
        let mut values = Vec::with_capacity(rows.len());
        for (user, at) in rows {
            let at = grid.snap(*at);
            values.push((
                locations::user_id.eq(user.to_string()),
                locations::lat.eq(at.lat),
                locations::lng.eq(at.lng),
                locations::geohash.eq(cell_of(at)?),
                locations::updated_at.eq(now),
            ));
        }
        with_conn!(self, |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for row in &values {
                    insert_into(locations::table).values(row.clone()).on_conflict_do_nothing().execute(conn).await?;
                }
                Ok(())
            })
            .await?
        });
        Ok(())
    }

    pub async fn location_of(&self, user: &UserId) -> StoreResult<Option<Location>> {
        let found: Option<(f64, f64)> = with_conn!(self, copied(user), |conn| {
            locations::table
                .find(user.as_str())
                .select((locations::lat, locations::lng))
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.map(|(lat, lng)| Location { lat, lng }))
    }

    /// Users within `radius_km` of `center`, nearest first, with their distance as the
    /// server may tell it: measured between cell centres on `grid` and rounded to whole
    /// steps of the cell size (ties by user id). Positions are snapped again as they are
    /// read, so one stored off the grid is never told more finely. Reads only the geohash
    /// cells covering the circle's bounding box (index range scans on `locations.geohash`).
    pub async fn users_near(
        &self,
        center: Location,
        radius_km: f64,
        grid: LocationGrid,
    ) -> StoreResult<Vec<(UserId, f64)>> {
        let center = grid.snap(center);
        let cells = covering_cells(center, radius_km);
        let candidates: Vec<(UserId, f64, f64)> = with_conn!(self, |conn| {
            // One statement: an OR of range scans on the geohash index ('~' sorts after
            // every geohash character, so `cell~` bounds the cell's prefix range).
            let mut query = locations::table.select((locations::user_id, locations::lat, locations::lng)).into_boxed();
            for cell in &cells {
                query =
                    query.or_filter(locations::geohash.ge(cell.clone()).and(locations::geohash.lt(format!("{cell}~"))));
            }
            query.load(conn).await?
        });
        let mut near: Vec<(u64, UserId, f64)> = candidates
            .into_iter()
            .map(|(user, lat, lng)| (user, center.distance_km(grid.snap(Location { lat, lng }))))
            .filter(|(_, distance)| *distance <= radius_km)
            .map(|(user, distance)| (grid.steps(distance), user, grid.round_km(distance)))
            .collect();
        near.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(near.into_iter().map(|(_, user, distance)| (user, distance)).collect())
    }
}

/// The geohash cell a stored position is indexed under.
fn cell_of(at: Location) -> StoreResult<String> {
    geohash::encode(geohash::Coord { x: at.lng, y: at.lat }, GEOHASH_PRECISION)
        .map_err(|e| StoreError::Value(format!("position {at:?} has no geohash: {e}")))
}

/// Most cells one nearby query reads: the finest precision whose cells cover the circle's
/// bounding box in at most this many is used.
const MAX_CELLS: usize = 36;

/// The geohash cells that cover the bounding box of the circle, at the finest precision
/// that needs at most `MAX_CELLS` of them. Each cell is one index range scan.
fn covering_cells(center: Location, radius_km: f64) -> Vec<String> {
    // The circle's exact extent on the sphere the distances are measured on, padded by 1%
    // against rounding; the longitude extent is the circle's widest, not its centre's.
    let angle = (radius_km / crate::domain::EARTH_RADIUS_KM * 1.01).min(std::f64::consts::PI);
    let dlat = angle.to_degrees();
    let (sin_a, cos_lat) = (angle.sin(), center.lat.to_radians().cos());
    let dlng = if angle < std::f64::consts::FRAC_PI_2 && sin_a < cos_lat {
        (sin_a / cos_lat).asin().to_degrees()
    } else {
        180.0
    };
    let (south, north) = ((center.lat - dlat).max(-90.0), (center.lat + dlat).min(90.0));
    // Near a pole the circle covers every longitude.
    let polar = north >= 90.0 || south <= -90.0;
    let (west, east) = if polar { (-180.0, 180.0) } else { (center.lng - dlng, center.lng + dlng) };
    let cell_size = |precision: usize| {
        let bits = 5 * precision as i32;
        (180.0 / 2f64.powi(bits / 2), 360.0 / 2f64.powi((bits + 1) / 2))
    };
    let steps = |span: f64, size: f64| (span / size).ceil() as usize + 1;
    let precision = (1..=GEOHASH_PRECISION)
        .rev()
        .find(|&p| {
            let (lat_size, lng_size) = cell_size(p);
            steps(north - south, lat_size) * steps(east - west, lng_size) <= MAX_CELLS
        })
        .unwrap_or(1);
    // Sampling the box at cell-size steps (edges included) hits every cell it touches.
    let (lat_size, lng_size) = cell_size(precision);
    let mut cells = Vec::new();
    for i in 0..=steps(north - south, lat_size) {
        let lat = (south + i as f64 * lat_size).min(north);
        for j in 0..=steps(east - west, lng_size) {
            // Longitudes past ±180 wrap to the other side of the antimeridian.
            let lng = (west + j as f64 * lng_size).min(east);
            let lng = (lng + 180.0).rem_euclid(360.0) - 180.0;
            if let Ok(cell) = geohash::encode(geohash::Coord { x: lng, y: lat }, precision) {
                cells.push(cell);
            }
        }
    }
    cells.sort();
    cells.dedup();
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point `km` away from `from` along `bearing` (radians), on the same sphere.
    fn destination(from: Location, km: f64, bearing: f64) -> Location {
        let d = km / crate::domain::EARTH_RADIUS_KM;
        let (lat1, lng1) = (from.lat.to_radians(), from.lng.to_radians());
        let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * bearing.cos()).asin();
        let lng2 = lng1 + (bearing.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
        Location { lat: lat2.to_degrees(), lng: ((lng2.to_degrees() + 540.0) % 360.0) - 180.0 }
    }

    #[test]
    fn covers_circles_at_high_latitudes_and_across_the_antimeridian() {
        for (lat, lng, radius) in [(84.0, 10.0, 310.0), (-60.0, 179.9, 50.0), (0.0, -179.99, 5.0), (71.0, 25.0, 120.0)]
        {
            let center = Location::parse(lat, lng).unwrap();
            let cells = covering_cells(center, radius);
            for bearing in 0..64 {
                let point = destination(center, radius * 0.999, bearing as f64 * std::f64::consts::TAU / 64.0);
                let cell = geohash::encode(geohash::Coord { x: point.lng, y: point.lat }, cells[0].len()).unwrap();
                assert!(cells.contains(&cell), "({lat},{lng}) {radius} km, bearing {bearing}: {cell} not covered");
            }
        }
    }

    #[test]
    fn small_radii_use_fine_cells_and_cover_the_circle() {
        let center = Location::parse(48.85, 2.35).unwrap();
        assert_eq!(covering_cells(center, 0.5)[0].len(), 6);
        assert_eq!(covering_cells(center, 5.0)[0].len(), 5);
        assert_eq!(covering_cells(center, 100.0)[0].len(), 3);
        for radius in [0.5, 5.0, 42.0, 300.0] {
            let cells = covering_cells(center, radius);
            assert!(cells.len() <= MAX_CELLS, "{radius}: {}", cells.len());
            // Points just inside the circle (by the same distance the query filters with)
            // fall in covered cells.
            for bearing in 0..64 {
                let point = destination(center, radius * 0.999, bearing as f64 * std::f64::consts::TAU / 64.0);
                assert!(center.distance_km(point) <= radius);
                let cell = geohash::encode(geohash::Coord { x: point.lng, y: point.lat }, cells[0].len()).unwrap();
                assert!(cells.contains(&cell), "{radius} km, bearing {bearing}: {cell} not covered");
            }
        }
    }
}
