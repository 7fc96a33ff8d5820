//! Socket.IO connection-state recovery: where a connection stands, per room, and the offset
//! string that carries it. A session's baseline (each room's last seq when its pid was issued)
//! is stored under the pid; the offset appended to every event names only the rooms that moved
//! since, by their index in the baseline (or their id for rooms joined later), so it stays
//! short. An offset is opaque to clients and is checked, never trusted, on the way back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::RoomId;

/// The first characters of every offset: the encoding's version.
const VERSION: &str = "1";
/// Longest offset read back; a longer one is refused whole.
const MAX_OFFSET_CHARS: usize = 32 * 1024;

/// Each room's last seq when a session's pid was issued, in a fixed order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    rooms: Vec<(RoomId, i64)>,
    index: HashMap<RoomId, usize>,
}

impl Baseline {
    pub fn new(rooms: Vec<(RoomId, i64)>) -> Self {
        let index = rooms.iter().enumerate().map(|(i, (room, _))| (*room, i)).collect();
        Self { rooms, index }
    }

    /// The stored form: `room:seq` lines.
    pub fn encode(&self) -> String {
        self.rooms.iter().map(|(room, seq)| format!("{room}:{seq}\n")).collect()
    }

    /// `None` when the stored text is not a baseline.
    pub fn decode(text: &str) -> Option<Self> {
        let rooms = text
            .lines()
            .map(|line| {
                let (room, seq) = line.split_once(':')?;
                Some((RoomId::parse(room).ok()?, seq.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self::new(rooms))
    }

    fn seq(&self, room: &RoomId) -> Option<i64> {
        self.index.get(room).map(|&i| self.rooms[i].1)
    }
}

/// Per room, the last seq a connection delivered (or its client reported), over a baseline.
#[derive(Debug)]
pub struct Positions {
    baseline: Arc<Baseline>,
    moved: BTreeMap<RoomId, i64>,
    /// The offset for the current positions, made when first asked for.
    offset: Option<String>,
}

impl Positions {
    pub fn new(baseline: Arc<Baseline>) -> Self {
        Self { baseline, moved: BTreeMap::new(), offset: None }
    }

    /// The positions an offset describes over `baseline`; `None` for a malformed offset.
    pub fn from_offset(baseline: Arc<Baseline>, offset: &str) -> Option<Self> {
        let mut positions = Self::new(baseline);
        if offset.is_empty() {
            return Some(positions);
        }
        if offset.len() > MAX_OFFSET_CHARS {
            return None;
        }
        let body = offset.strip_prefix(VERSION)?;
        for entry in body.split(',').filter(|e| !e.is_empty()) {
            let (room, seq) = entry.split_once('.')?;
            let seq = i64::from_str_radix(seq, 36).ok().filter(|s| *s >= 0)?;
            let room = match room.len() {
                32 => RoomId::parse(room).ok()?,
                _ => positions.baseline.rooms.get(usize::from_str_radix(room, 36).ok()?)?.0,
            };
            positions.advance(room, seq);
        }
        Some(positions)
    }

    /// The last seq known delivered in `room`; `None` for a room joined since the baseline
    /// and not heard from.
    pub fn known(&self, room: &RoomId) -> Option<i64> {
        self.moved.get(room).copied().or_else(|| self.baseline.seq(room))
    }

    /// Records `seq` as delivered in `room`; false if it already was (a duplicate).
    pub fn advance(&mut self, room: RoomId, seq: i64) -> bool {
        if self.known(&room).is_some_and(|known| seq <= known) {
            return false;
        }
        self.moved.insert(room, seq);
        self.offset = None;
        true
    }

    /// The offset for the positions now: `1` then `room.seq` pairs, both base 36, the room as
    /// its baseline index or, if it is not in the baseline, its id.
    pub fn offset(&mut self) -> &str {
        let (baseline, moved) = (&self.baseline, &self.moved);
        self.offset.get_or_insert_with(|| {
            let mut text = VERSION.to_owned();
            for (room, seq) in moved {
                match baseline.index.get(room) {
                    Some(&i) => text.push_str(&radix36(i as u64)),
                    None => text.push_str(&room.to_string().replace('-', "")),
                }
                text.push('.');
                text.push_str(&radix36(*seq as u64));
                text.push(',');
            }
            text
        })
    }
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// An event packet (`42[…]`) with `offset` appended as its last argument, as Socket.IO
/// servers send it to clients that may recover; other packets are returned as they are.
pub fn with_offset(packet: &str, offset: &str) -> String {
    match packet.strip_prefix("42[").and_then(|p| p.strip_suffix(']')) {
        Some(args) => format!("42[{args},{}]", serde_json::Value::from(offset)),
        None => packet.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> (Arc<Baseline>, RoomId, RoomId) {
        let (a, b) = (RoomId::new(), RoomId::new());
        (Arc::new(Baseline::new(vec![(a, 4), (b, 0)])), a, b)
    }

    #[test]
    fn an_offset_round_trips_its_positions() {
        let (baseline, a, b) = baseline();
        let joined = RoomId::new();
        let mut positions = Positions::new(baseline.clone());
        assert!(!positions.advance(a, 4), "at the baseline: a duplicate");
        assert!(positions.advance(a, 40));
        assert!(positions.advance(joined, 1));
        let offset = positions.offset().to_owned();
        let back = Positions::from_offset(baseline, &offset).expect("well formed");
        assert_eq!(back.known(&a), Some(40));
        assert_eq!(back.known(&b), Some(0));
        assert_eq!(back.known(&joined), Some(1));
        assert_eq!(back.known(&RoomId::new()), None);
    }

    #[test]
    fn a_baseline_round_trips_and_bad_text_is_refused() {
        let (baseline, ..) = baseline();
        assert_eq!(Baseline::decode(&baseline.encode()).as_ref(), Some(&*baseline));
        assert!(Baseline::decode("x:1\n").is_none());
    }

    #[test]
    fn malformed_offsets_are_refused_not_trusted() {
        let (baseline, ..) = baseline();
        for bad in ["2", "1zz.1,", "1x", "10.-1,", "10.é,", &"1".repeat(MAX_OFFSET_CHARS + 1)] {
            assert!(Positions::from_offset(baseline.clone(), bad).is_none(), "{bad}");
        }
        assert!(Positions::from_offset(baseline, "").is_some());
    }

    #[test]
    fn only_events_get_the_offset() {
        assert_eq!(with_offset(r#"42["a",{"b":1}]"#, "1"), r#"42["a",{"b":1},"1"]"#);
        assert_eq!(with_offset(r#"430[{"ok":true}]"#, "1"), r#"430[{"ok":true}]"#);
        assert_eq!(with_offset(r#"40{"sid":"x"}"#, "1"), r#"40{"sid":"x"}"#);
    }
}
