//! How the leader brings a learner up to date: DIFF, TRUNC or SNAP, decided from the learner's
//! last zxid, the leader's last processed zxid and its window of committed proposals, as
//! ZooKeeper's `LearnerHandler.syncFollower` / `queueCommittedProposals` decide it. zkd keeps no
//! on-disk txn-log sync path: a learner older than the window gets a snapshot.
//!
//! The decision table (min/max: the window's oldest/newest zxid, both = last processed when the
//! window is empty; "new-epoch zxid": a zxid whose counter is 0, the marker a server holds right
//! after a sync in a new epoch, which names no txn):
//!
//! | row | condition (first that holds)                         | first packet  | then sent           |
//! |-----|------------------------------------------------------|---------------|---------------------|
//! | 1   | peer = last processed                                | DIFF(peer)    | nothing             |
//! | 2   | peer > max, not a new-epoch zxid                     | TRUNC(max)    | nothing             |
//! | 3   | min ≤ peer ≤ max, peer in the window                 | DIFF(max)     | window after peer   |
//! | 4   | min ≤ peer ≤ max, new-epoch zxid, not in the window  | DIFF(max)     | window after peer   |
//! | 5   | min ≤ peer ≤ max, not in the window, next same epoch | TRUNC(prev)   | window after peer   |
//! | 6   | min ≤ peer ≤ max, not in the window, next newer epoch| SNAP          | (snapshot)          |
//! | 7   | peer < min                                           | SNAP          | (snapshot)          |
//! | 8   | peer > max, new-epoch zxid (≠ last processed)        | SNAP          | (snapshot)          |
//!
//! Row 5 is the learner that logged a txn the leader never committed (it may have been the old
//! leader): it truncates to the last txn both share ("prev", the newest window entry below
//! peer) and takes the rest as a diff. Row 6 is the same learner when the leader's next txn is
//! in a later epoch: ZooKeeper never sends a TRUNC across an epoch boundary (the learner would
//! fail), so it sends a snapshot.
//!
//! After the decision the leader also sends its outstanding (not yet committed) proposals newer
//! than `forward_from` to participants, then NEWLEADER (see `leader`).

use std::collections::VecDeque;

use crate::quorum::{counter_of, epoch_of};

use super::Proposal;

/// The first sync packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOp {
    Diff(i64),
    Trunc(i64),
    /// SNAP with the leader's last processed zxid; the snapshot stream follows.
    Snap(i64),
}

/// What to send a learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPlan {
    /// The table's row (for tests and the log line).
    pub row: u8,
    pub op: SyncOp,
    /// Send `window[send_from..]`, each PROPOSAL followed by its COMMIT.
    pub send_from: usize,
    /// The zxid the learner is at after the above: outstanding proposals after it follow.
    pub forward_from: i64,
}

/// Decides how to sync a learner whose last zxid is `peer`. `last_processed` is the leader's
/// state's zxid; `window` its committed proposals, oldest first.
pub fn decide(peer: i64, last_processed: i64, window: &VecDeque<Proposal>) -> SyncPlan {
    let end = window.len();
    let nothing = |row, op, forward_from| SyncPlan { row, op, send_from: end, forward_from };
    let snap = |row| SyncPlan {
        row,
        op: SyncOp::Snap(last_processed),
        send_from: end,
        forward_from: last_processed,
    };
    let new_epoch_zxid = counter_of(peer) == 0;
    let (min, max) = match (window.front(), window.back()) {
        (Some(a), Some(b)) => (a.zxid, b.zxid),
        _ => (last_processed, last_processed),
    };
    if peer == last_processed {
        return nothing(1, SyncOp::Diff(peer), peer);
    }
    if peer > max && !new_epoch_zxid {
        return nothing(2, SyncOp::Trunc(max), max);
    }
    if peer < min {
        return snap(7);
    }
    if peer > max {
        return snap(8);
    }
    // min ≤ peer ≤ max: the first window entry at or after peer decides.
    let at = window.partition_point(|p| p.zxid < peer);
    let next = &window[at];
    if next.zxid == peer {
        return SyncPlan { row: 3, op: SyncOp::Diff(max), send_from: at + 1, forward_from: max };
    }
    if new_epoch_zxid {
        return SyncPlan { row: 4, op: SyncOp::Diff(max), send_from: at, forward_from: max };
    }
    if epoch_of(next.zxid) != epoch_of(peer) {
        return snap(6);
    }
    // `at` > 0: window[0] ≤ peer, and window[0] ≠ peer (else the entry at `at` would be peer).
    let prev = window[at - 1].zxid;
    SyncPlan { row: 5, op: SyncOp::Trunc(prev), send_from: at, forward_from: max }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::make_zxid;
    use std::sync::Arc;

    fn window(zxids: &[i64]) -> VecDeque<Proposal> {
        zxids.iter().map(|&zxid| Proposal { zxid, data: Arc::from(&b"t"[..]) }).collect()
    }
    fn z(e: u32, c: u32) -> i64 {
        make_zxid(e, c)
    }

    #[test]
    fn row1_in_sync_gets_an_empty_diff() {
        let w = window(&[z(1, 1), z(1, 2)]);
        let p = decide(z(1, 2), z(1, 2), &w);
        assert_eq!(p, SyncPlan { row: 1, op: SyncOp::Diff(z(1, 2)), send_from: 2, forward_from: z(1, 2) });
        // A learner that synced in this epoch and holds the marker, the leader's state at it.
        let p = decide(z(2, 0), z(2, 0), &w);
        assert_eq!(p, SyncPlan { row: 1, op: SyncOp::Diff(z(2, 0)), send_from: 2, forward_from: z(2, 0) });
    }

    #[test]
    fn row2_ahead_of_everything_truncates_to_max() {
        let w = window(&[z(1, 1), z(1, 2)]);
        let p = decide(z(1, 5), z(2, 0), &w);
        assert_eq!(p, SyncPlan { row: 2, op: SyncOp::Trunc(z(1, 2)), send_from: 2, forward_from: z(1, 2) });
        // With an empty window, max is the last processed zxid.
        let p = decide(z(1, 5), z(1, 3), &VecDeque::new());
        assert_eq!(p, SyncPlan { row: 2, op: SyncOp::Trunc(z(1, 3)), send_from: 0, forward_from: z(1, 3) });
    }

    #[test]
    fn row3_in_window_gets_the_rest_as_a_diff() {
        let w = window(&[z(1, 1), z(1, 2), z(1, 3), z(2, 1)]);
        let p = decide(z(1, 2), z(2, 1), &w);
        assert_eq!(p, SyncPlan { row: 3, op: SyncOp::Diff(z(2, 1)), send_from: 2, forward_from: z(2, 1) });
        // Up to date with the old epoch while the leader sits at its new-epoch marker.
        let p = decide(z(2, 1), z(3, 0), &w);
        assert_eq!(p, SyncPlan { row: 3, op: SyncOp::Diff(z(2, 1)), send_from: 4, forward_from: z(2, 1) });
    }

    #[test]
    fn row4_new_epoch_marker_inside_the_window_gets_a_diff() {
        let w = window(&[z(1, 1), z(1, 2), z(2, 1), z(2, 2)]);
        let p = decide(z(2, 0), z(2, 2), &w);
        assert_eq!(p, SyncPlan { row: 4, op: SyncOp::Diff(z(2, 2)), send_from: 2, forward_from: z(2, 2) });
    }

    #[test]
    fn row5_uncommitted_txn_same_epoch_truncates_then_diffs() {
        // The learner logged 1:3, which the leader never committed; the leader went on with 1:4.
        let w = window(&[z(1, 1), z(1, 2), z(1, 4), z(1, 5)]);
        let p = decide(z(1, 3), z(1, 5), &w);
        assert_eq!(p, SyncPlan { row: 5, op: SyncOp::Trunc(z(1, 2)), send_from: 2, forward_from: z(1, 5) });
    }

    #[test]
    fn row6_uncommitted_txn_never_truncates_across_an_epoch() {
        // The learner led epoch 1 and logged 1:3 alone; the leader's next txn is 2:1.
        let w = window(&[z(1, 1), z(1, 2), z(2, 1)]);
        let p = decide(z(1, 3), z(2, 1), &w);
        assert_eq!(p, SyncPlan { row: 6, op: SyncOp::Snap(z(2, 1)), send_from: 3, forward_from: z(2, 1) });
    }

    #[test]
    fn row7_older_than_the_window_gets_a_snapshot() {
        let w = window(&[z(1, 10), z(1, 11)]);
        let p = decide(z(1, 3), z(1, 11), &w);
        assert_eq!(p, SyncPlan { row: 7, op: SyncOp::Snap(z(1, 11)), send_from: 2, forward_from: z(1, 11) });
        // An empty learner (zxid 0) against an empty window at a later state.
        let p = decide(0, z(1, 4), &VecDeque::new());
        assert_eq!(p.op, SyncOp::Snap(z(1, 4)));
        assert_eq!(p.row, 7);
    }

    #[test]
    fn row8_new_epoch_marker_beyond_the_window_gets_a_snapshot() {
        let w = window(&[z(1, 1), z(1, 2)]);
        let p = decide(z(3, 0), z(4, 0), &w);
        assert_eq!(p, SyncPlan { row: 8, op: SyncOp::Snap(z(4, 0)), send_from: 2, forward_from: z(4, 0) });
    }
}
