//! What a client holds of one room, kept the way docs/protocol.md §8 asks: every `seq` it
//! has (its own acked messages, pushes, history pages) with the `client_id` stored under it.
//! The highest contiguous `seq` (`have`) is where a resync by `after_seq` starts. A
//! `client_id` met under two different `seq`s is a duplicate: the server stored one send
//! twice. Shared by the scenarios that reconnect and resync (`reconnect-storm`, `chaos`).

use std::collections::{BTreeMap, HashMap};

/// Messages per history page (the server's maximum).
pub const PAGE: u64 = 100;

/// One client's holdings in one room.
#[derive(Default)]
pub struct Held {
    /// seq → the client_id stored under it (empty when the message had none).
    seqs: BTreeMap<i64, String>,
    /// client_id → the first seq it was met under.
    ids: HashMap<String, i64>,
    /// client_ids met under a second seq.
    pub duplicates: u64,
    /// Seqs whose client_id differs between two copies (the server changed a message).
    pub mismatched: u64,
}

impl Held {
    /// Highest seq held with every seq below it held too.
    pub fn have(&self) -> i64 {
        let mut have = 0;
        for &s in self.seqs.keys() {
            if s != have + 1 {
                break;
            }
            have = s;
        }
        have
    }

    /// Records a message held under `seq`; false when it was held already.
    pub fn hold(&mut self, seq: i64, client_id: Option<&str>) -> bool {
        let id = client_id.unwrap_or_default();
        if !id.is_empty() {
            match self.ids.get(id) {
                Some(&other) if other != seq => self.duplicates += 1,
                Some(_) => {}
                None => {
                    self.ids.insert(id.to_owned(), seq);
                }
            }
        }
        match self.seqs.get(&seq) {
            Some(known) => {
                if known != id {
                    self.mismatched += 1;
                }
                false
            }
            None => {
                self.seqs.insert(seq, id.to_owned());
                true
            }
        }
    }

    pub fn holds(&self, seq: i64) -> bool {
        self.seqs.contains_key(&seq)
    }

    /// The client_id held under `seq`.
    pub fn client_id(&self, seq: i64) -> Option<&str> {
        self.seqs.get(&seq).map(String::as_str)
    }

    /// Every (seq, client_id) held, in seq order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &str)> {
        self.seqs.iter().map(|(&s, id)| (s, id.as_str()))
    }
}

/// A failed (re)connect's kind for the tally: the close code, or the root cause without the
/// user it happened to.
pub fn failure_kind(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if let Some(at) = text.find("code: ") {
        let code: String = text[at + 6..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        return format!("closed during the greeting ({code})");
    }
    e.root_cause().to_string().rsplit(": ").next().unwrap_or_default().chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_have_and_duplicates() {
        let mut h = Held::default();
        assert!(h.hold(1, Some("a")));
        assert!(h.hold(3, Some("c")));
        assert_eq!(h.have(), 1);
        assert!(!h.hold(1, Some("a")));
        assert!(h.hold(2, Some("b")));
        assert_eq!(h.have(), 3);
        assert!(h.hold(4, Some("a")));
        assert_eq!(h.duplicates, 1);
        assert!(!h.hold(2, Some("x")));
        assert_eq!(h.mismatched, 1);
    }
}
