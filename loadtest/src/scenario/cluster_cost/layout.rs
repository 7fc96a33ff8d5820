//! `cluster-cost` layout: which node each member of each room connects to. A room sits on
//! one node, or spans two neighbouring nodes (members alternating between them); never more,
//! so that a message is addressed to at most two of three nodes. Each kind of room (pairs and
//! groups, one-node and two-node) is dealt round-robin over the nodes on its own, so every
//! node holds the same share of each.

use anyhow::Result;
use futures_util::StreamExt;

use crate::client::Target;
use crate::scenario::chat_mix::setup::{RoomSetup, set_up_room_on};
use crate::stats::setup_bar;

/// The rooms to lay out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub pairs: usize,
    pub groups: usize,
    pub group_size: usize,
    /// Share of the rooms (of each kind, evenly interleaved) whose members span two nodes.
    pub spanning_share: f64,
}

/// For every room (pairs first, then groups), the node of each member; member 0 creates the
/// room. With one node everything is on node 0.
pub(super) fn placements(shape: Shape, nodes: usize) -> Vec<Vec<usize>> {
    let share = shape.spanning_share.clamp(0.0, 1.0);
    // Rooms dealt so far, by (group?, spanning?).
    let mut dealt = [[0usize; 2]; 2];
    let mut out = Vec::with_capacity(shape.pairs + shape.groups);
    for r in 0..shape.pairs + shape.groups {
        let group = r >= shape.pairs;
        let i = if group { r - shape.pairs } else { r };
        let spans = nodes > 1 && ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
        let slot = &mut dealt[usize::from(group)][usize::from(spans)];
        let home = *slot % nodes;
        *slot += 1;
        let size = if group { shape.group_size } else { 2 };
        out.push((0..size).map(|m| if spans { (home + m % 2) % nodes } else { home }).collect());
    }
    out
}

/// Distinct nodes a room's members are on.
pub(super) fn nodes_spanned(placement: &[usize]) -> usize {
    let mut nodes: Vec<usize> = placement.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

/// Connects and creates every room, `concurrency / 3` rooms at a time.
pub(super) async fn set_up(
    nodes: &[Target],
    run_id: &str,
    placements: &[Vec<usize>],
    concurrency: usize,
) -> Result<Vec<RoomSetup>> {
    let bar = setup_bar(placements.len() as u64, "rooms");
    let rooms = futures_util::stream::iter(placements.iter().enumerate())
        .map(|(r, placement)| {
            let bar = &bar;
            async move {
                let room = set_up_room_on(nodes, run_id, r, placement).await;
                bar.inc(1);
                room
            }
        })
        .buffered((concurrency / 3).max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    Ok(rooms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape { pairs: 120, groups: 40, group_size: 4, spanning_share: 0.5 };

    #[test]
    fn rooms_span_one_or_two_nodes_and_every_node_gets_its_share() {
        for nodes in 1..=3 {
            let rooms = placements(SHAPE, nodes);
            assert_eq!(rooms.len(), 160);
            let mut members_per_node = vec![0usize; nodes];
            let mut spanning = 0;
            for room in &rooms {
                let spanned = nodes_spanned(room);
                assert!(spanned == 1 || spanned == 2, "{room:?}");
                spanning += usize::from(spanned == 2);
                room.iter().for_each(|&n| members_per_node[n] += 1);
            }
            assert_eq!(spanning, if nodes == 1 { 0 } else { 80 });
            let users = 2 * 120 + 40 * 4;
            assert!(members_per_node.iter().all(|&m| m.abs_diff(users / nodes) <= 4), "{members_per_node:?}");
        }
    }

    #[test]
    fn a_spanning_group_alternates_its_members() {
        let rooms = placements(Shape { pairs: 0, groups: 2, group_size: 4, spanning_share: 1.0 }, 3);
        assert_eq!(rooms, vec![vec![0, 1, 0, 1], vec![1, 2, 1, 2]]);
    }
}
