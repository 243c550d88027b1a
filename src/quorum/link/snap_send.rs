//! The leader's side of SNAP: the stream `LearnerHandler` writes after the SNAP packet
//! (`ZKDatabase.serializeSnapshot`: the sessions with their timeouts, then `DataTree.serialize`:
//! the ACL cache and the nodes in preorder, "/"; then the "BenWasHere" signature), produced a
//! chunk at a time from the live tree. ZooKeeper 3.8's stream carries no digest (only snapshot
//! files do).
//!
//! Fuzzy, as ZooKeeper's: the tree keeps changing while it streams, each node is read when the
//! walk reaches it (`DataTree::walk_next`), and the learner replays the txns after the SNAP
//! zxid over it (see `snap_load` for what makes that replay land on the leader's state). No
//! lock is held between chunks, and nothing but the current chunk and the walk's child names
//! is held in memory.

use crate::proto::jute::Writer;
use crate::quorum::wire::{encode_snap_end, encode_snap_head, encode_snap_node_ref};
use crate::tree::{DataTree, Walk};

enum Phase {
    Head,
    Nodes(Walk),
    Done,
}

/// The stream of one snapshot, produced by [`SnapshotSource::fill`].
pub(crate) struct SnapshotSource {
    sessions: Vec<(i64, i32)>,
    phase: Phase,
    nodes: u64,
    bytes: u64,
}

impl SnapshotSource {
    /// `sessions`: the live sessions and their timeouts (ms), as the replica knows them now.
    pub(crate) fn new(sessions: Vec<(i64, i32)>) -> SnapshotSource {
        SnapshotSource { sessions, phase: Phase::Head, nodes: 0, bytes: 0 }
    }

    /// Appends the next part of the stream to `out` until it holds at least `chunk` bytes (one
    /// node may overshoot it) or the stream is complete; true once it is.
    pub(crate) fn fill(&mut self, tree: &DataTree, out: &mut Vec<u8>, chunk: usize) -> bool {
        let mut w = Writer { buf: std::mem::take(out) };
        let start = w.buf.len();
        let done = loop {
            match &mut self.phase {
                Phase::Head => {
                    // ZooKeeper writes the sessions, then the ACL cache under its lock, then walks.
                    let acls = tree.acl_cache_export();
                    encode_snap_head(&mut w, &std::mem::take(&mut self.sessions), &acls);
                    self.phase = Phase::Nodes(Walk::new());
                }
                Phase::Nodes(walk) => {
                    if w.buf.len() >= chunk {
                        break false;
                    }
                    let more = tree.walk_next(walk, |path, data, acl, stat| {
                        encode_snap_node_ref(&mut w, path, data, acl, stat);
                    });
                    if more {
                        self.nodes += 1;
                    } else {
                        encode_snap_end(&mut w);
                        self.phase = Phase::Done;
                    }
                }
                Phase::Done => break true,
            }
        };
        self.bytes += (w.buf.len() - start) as u64;
        *out = w.buf;
        done
    }

    /// Nodes and bytes produced so far (for the log line).
    pub(crate) fn produced(&self) -> (u64, u64) {
        (self.nodes, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::wire::{SnapItem, SnapStreamDecoder};

    #[test]
    fn chunks_concatenate_to_the_whole_stream() {
        let t = DataTree::new();
        let mut whole = Vec::new();
        assert!(SnapshotSource::new(vec![(7, 4000)]).fill(&t, &mut whole, usize::MAX));
        let mut chunked = Vec::new();
        let mut src = SnapshotSource::new(vec![(7, 4000)]);
        let mut fills = 0;
        loop {
            let mut c = Vec::new();
            let done = src.fill(&t, &mut c, 1);
            fills += 1;
            chunked.extend_from_slice(&c);
            if done {
                break;
            }
        }
        assert_eq!(chunked, whole);
        assert!(fills >= 4, "one node per chunk of 1 byte: {fills}");
        let mut d = SnapStreamDecoder::new(1 << 20);
        let (mut at, mut paths) = (0, Vec::new());
        while let Some((item, n)) = d.next(&whole[at..]).unwrap() {
            at += n;
            match item {
                SnapItem::Node(n) => paths.push(n.path),
                SnapItem::End => break,
                _ => {}
            }
        }
        assert_eq!(at, whole.len());
        paths.sort();
        assert_eq!(paths, vec!["", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]);
        assert_eq!(src.produced(), (4, whole.len() as u64));
    }
}
