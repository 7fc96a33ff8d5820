//! Nearby query over many users: the geohash-indexed query against a full scan.
//!
//!   cargo bench --bench nearby                       # embedded SQLite in a temp dir
//!   SWITCHBOARD_DATABASE_URL=postgres://… cargo bench --bench nearby
//!   NEARBY_USERS=100000 NEARBY_RADIUS_KM=5 …          # knobs (defaults shown)
//!
//! Users are spread uniformly over a 100 km × 100 km square around Lahore (a city-sized
//! population density); queries are centred on random users.

use std::time::{Duration, Instant};

use switchboard::domain::{Location, LocationGrid, UserId};
use switchboard::store::{Backend, Store};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift: deterministic, dependency-free positions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let users: usize = env_or("NEARBY_USERS", 100_000);
    let radius: f64 = env_or("NEARBY_RADIUS_KM", 5.0);
    let queries: usize = env_or("NEARBY_QUERIES", 200);
    let dir = tempfile::tempdir()?;
    let url = std::env::var("SWITCHBOARD_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/nearby.db", dir.path().display()));
    let store = Store::connect(&Backend::from_url(&url)?, 4).await?;
    // The default grid: positions stored, and distances told, to 100 m.
    let grid = LocationGrid::default();

    let (lat0, lng0) = (31.5204, 74.3587);
    let half = 50.0 / 111.32;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let people: Vec<(UserId, Location)> = (0..users)
        .map(|i| {
            let lat = lat0 + (rng.next() * 2.0 - 1.0) * half;
            let lng = lng0 + (rng.next() * 2.0 - 1.0) * half / lat0.to_radians().cos();
            (UserId::parse(format!("n{run}-{i}")).unwrap(), Location::parse(lat, lng).unwrap())
        })
        .collect();
    let started = Instant::now();
    for chunk in people.chunks(5_000) {
        store.import_locations(chunk, grid).await?;
    }
    println!("imported {users} locations in {:.1} s ({url})", started.elapsed().as_secs_f64());

    let mut indexed = Vec::with_capacity(queries);
    let mut found = 0usize;
    for _ in 0..queries {
        let center = people[(rng.next() * users as f64) as usize].1;
        let started = Instant::now();
        let near = store.users_near(center, radius, grid).await?;
        indexed.push(started.elapsed());
        found += near.len();
    }
    indexed.sort();
    let mean = indexed.iter().sum::<Duration>() / queries as u32;
    println!(
        "indexed nearby (radius {radius} km, {queries} queries): mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, {:.0} users found per query",
        mean.as_secs_f64() * 1e3,
        percentile(&indexed, 0.5).as_secs_f64() * 1e3,
        percentile(&indexed, 0.99).as_secs_f64() * 1e3,
        found as f64 / queries as f64,
    );

    // The same answer by scanning every user (a radius covering the whole square reads
    // the whole table), for comparison.
    let started = Instant::now();
    let all = store.users_near(people[0].1, 400.0, grid).await?;
    println!("full scan of {} users: {:.1} ms per query", all.len(), started.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
