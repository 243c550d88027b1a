//! The learner's side of SNAP: the stream that follows the SNAP packet (see `snap_send`), read
//! an item at a time with `wire::SnapStreamDecoder` into a new tree, and at the same time into
//! the bytes of a snapshot file in ZooKeeper's format (`FileSnap.serialize`: file header, the
//! same sessions, ACL cache and nodes, "/", then the Adler32 seal), so that a restart starts from
//! it. No I/O here: the connection's reader feeds bytes in and writes the file's bytes out.
//!
//! Bounds: every length is checked by the decoder against the leader's jute.maxbuffer plus
//! slack before anything is allocated; the session, ACL and node counts against [`SnapLimits`];
//! node paths and data against the tree's own limits; a node must follow its parent.
//!
//! Consistency. The leader's snapshot is fuzzy (it walks a tree that keeps changing), and the
//! learner then replays every txn after the SNAP zxid, as ZooKeeper's learner does; the replay
//! is idempotent enough (`tree::apply`: a create of an existing node and a delete of a missing
//! one fail harmlessly, setData and setACL overwrite, a parent's cversion and pzxid only move
//! forward, closeSession deletes what is left) that it ends on the leader's state. One case is
//! not: a node *created* after the leader exported its ACL cache (the first part of the stream)
//! can carry an ACL id the stream's cache does not hold, and replaying its create fails with
//! NodeExists, leaving it with an unknown ACL. So a node created after the SNAP zxid (its czxid
//! is larger), and with it its subtree (created after it), is left out here: its create is
//! among the txns replayed, and recreates it exactly. Quota stats nodes are then recomputed from
//! the tree (`finish_load`), as ZooKeeper's `setupQuota` does after every snapshot it reads, so
//! the replayed creates and deletes count exactly once.

use crate::proto::jute::Writer;
use crate::proto::records::Acl;
use crate::quorum::wire::{SnapItem, SnapStreamDecoder, WireError};
use crate::snapshot::SNAP_DBID;
use crate::tree::{DataTree, LoadNode, LoadTally};
use crate::txnlog::format::{FORMAT_VERSION, SNAP_MAGIC};

/// What a leader's snapshot stream may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapLimits {
    /// Bound of every length in the stream (`wire::packet_data_max(jute.maxbuffer)`).
    pub max_buffer: usize,
    pub sessions_max: u64,
    pub acls_max: u64,
    pub nodes_max: u64,
}

impl SnapLimits {
    /// Far above any real ensemble, low enough that a hostile count ends the stream long before
    /// memory does.
    pub fn new(max_buffer: usize) -> SnapLimits {
        SnapLimits { max_buffer, sessions_max: 1 << 24, acls_max: 1 << 24, nodes_max: 1 << 30 }
    }
}

/// Why a received snapshot is refused (the leader's connection is dropped).
#[derive(Debug, thiserror::Error)]
pub enum SnapLoadError {
    #[error("bad snapshot stream: {0}")]
    Wire(#[from] WireError),
    #[error("snapshot stream holds more than {max} {what}")]
    TooMany { what: &'static str, max: u64 },
    #[error("snapshot stream does not make a tree: {0}")]
    Tree(String),
}

/// What [`SnapshotReceiver::finish`] hands over.
pub(crate) struct Received {
    pub tree: DataTree,
    pub sessions: Vec<(i64, i32)>,
    /// The file's last bytes (what `take_file_bytes` had not taken, and the seal).
    pub file_tail: Vec<u8>,
    pub nodes: u64,
    /// Nodes created after the SNAP zxid, left out (see the module docs).
    pub left_out: u64,
}

/// Receives one snapshot stream.
pub(crate) struct SnapshotReceiver {
    zxid: i64,
    limits: SnapLimits,
    decoder: SnapStreamDecoder,
    tree: DataTree,
    tally: LoadTally,
    sessions: Vec<(i64, i32)>,
    acls: Vec<(i64, Vec<Acl>)>,
    acls_imported: bool,
    nodes: u64,
    left_out: u64,
    /// The node being left out with its subtree (preorder: its descendants follow it).
    left_out_root: Option<String>,
    file: Vec<u8>,
    sum: simd_adler32::Adler32,
    done: bool,
}

/// The bytes a node takes in the stream (path, data, ACL id, StatPersisted).
fn node_bytes(path: &str, data: Option<&[u8]>) -> usize {
    4 + path.len() + 4 + data.map_or(0, <[u8]>::len) + 8 + 60
}

impl SnapshotReceiver {
    /// A stream following SNAP with this zxid.
    pub(crate) fn new(zxid: i64, limits: SnapLimits) -> SnapshotReceiver {
        let mut r = SnapshotReceiver {
            zxid,
            limits,
            decoder: SnapStreamDecoder::new(limits.max_buffer),
            tree: DataTree::new_empty(),
            tally: LoadTally::default(),
            sessions: Vec::new(),
            acls: Vec::new(),
            acls_imported: false,
            nodes: 0,
            left_out: 0,
            left_out_root: None,
            file: Vec::with_capacity(1 << 16),
            sum: simd_adler32::Adler32::new(),
            done: false,
        };
        let mut w = Writer::with_capacity(16);
        w.i32(SNAP_MAGIC);
        w.i32(FORMAT_VERSION);
        w.i64(SNAP_DBID);
        r.append_file(&w.buf);
        r
    }

    fn append_file(&mut self, b: &[u8]) {
        self.sum.write(b);
        self.file.extend_from_slice(b);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// File bytes not taken yet.
    pub(crate) fn file_pending(&self) -> usize {
        self.file.len()
    }

    /// Hands out the file bytes produced so far.
    pub(crate) fn take_file_bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.file, Vec::with_capacity(1 << 16))
    }

    /// Reads whole items from the start of `buf`, at most `items_max` of them, and returns the
    /// bytes they took: fewer than `buf.len()` once the stream is done (what follows are the
    /// leader's next packets) or when `buf` ends inside an item.
    pub(crate) fn feed(&mut self, buf: &[u8], items_max: usize) -> Result<usize, SnapLoadError> {
        let mut at = 0;
        for _ in 0..items_max {
            if self.done {
                break;
            }
            let Some((item, n)) = self.decoder.next(&buf[at..])? else { break };
            let bytes = &buf[at..at + n];
            at += n;
            match item {
                SnapItem::Session { id, timeout_ms } => {
                    self.count(self.sessions.len() as u64, self.limits.sessions_max, "sessions")?;
                    self.sessions.push((id, timeout_ms));
                    self.append_file(bytes);
                }
                SnapItem::Acl { id, acls } => {
                    self.count(self.acls.len() as u64, self.limits.acls_max, "ACL lists")?;
                    self.acls.push((id, acls));
                    self.append_file(bytes);
                }
                SnapItem::Node(node) => {
                    self.count(self.nodes, self.limits.nodes_max, "nodes")?;
                    self.nodes += 1;
                    if !self.acls_imported {
                        self.tree.acl_cache_import(&self.acls);
                        self.acls_imported = true;
                    }
                    let inside_left_out = self.left_out_root.as_deref().is_some_and(|r| {
                        node.path.len() > r.len()
                            && node.path.starts_with(r)
                            && node.path.as_bytes()[r.len()] == b'/'
                    });
                    if !inside_left_out {
                        self.left_out_root = None;
                    }
                    let own = node_bytes(&node.path, node.data.as_deref());
                    // The item may start with the counts of empty sections before it.
                    let (prefix, own_bytes) = bytes.split_at(bytes.len() - own);
                    self.append_file(prefix);
                    if inside_left_out || (node.stat.czxid > self.zxid && !node.path.is_empty()) {
                        if !inside_left_out {
                            self.left_out_root = Some(node.path);
                        }
                        self.left_out += 1;
                        continue;
                    }
                    self.append_file(own_bytes);
                    let n = LoadNode {
                        path: &node.path,
                        data: node.data.as_deref(),
                        acl: node.acl,
                        stat: node.stat,
                    };
                    self.tree.load_node_counted(n, &mut self.tally).map_err(SnapLoadError::Tree)?;
                }
                SnapItem::End => {
                    // Everything but the signature: "/" ends the nodes in a file too.
                    let sig = 4 + crate::quorum::wire::SNAP_SIGNATURE.len();
                    self.append_file(&bytes[..bytes.len() - sig]);
                    self.done = true;
                }
            }
        }
        Ok(at)
    }

    fn count(&self, have: u64, max: u64, what: &'static str) -> Result<(), SnapLoadError> {
        if have >= max {
            return Err(SnapLoadError::TooMany { what, max });
        }
        Ok(())
    }

    /// The tree (as of the SNAP zxid: its last zxid is that), the sessions and the file's last
    /// bytes. Only once `is_done`.
    pub(crate) fn finish(mut self) -> Result<Received, SnapLoadError> {
        assert!(self.done, "finish before the end of the stream");
        if !self.acls_imported {
            self.tree.acl_cache_import(&self.acls);
        }
        self.tree.load_tally(&self.tally);
        self.tree.finish_load(self.zxid).map_err(SnapLoadError::Tree)?;
        let seal = self.sum.finish() as i64;
        let mut w = Writer::with_capacity(13);
        w.i64(seal);
        w.string("/");
        self.file.extend_from_slice(&w.buf);
        Ok(Received {
            tree: self.tree,
            sessions: self.sessions,
            file_tail: self.file,
            nodes: self.nodes,
            left_out: self.left_out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute::Writer;
    use crate::proto::records::StatPersisted;
    use crate::quorum::wire::{encode_snap_end, encode_snap_head, encode_snap_node, SnapNode};

    fn node(path: &str, czxid: i64) -> SnapNode {
        SnapNode {
            path: path.into(),
            data: Some(path.as_bytes().to_vec()),
            acl: -1,
            stat: StatPersisted { czxid, mzxid: czxid, pzxid: czxid, ..Default::default() },
        }
    }

    fn stream(sessions: &[(i64, i32)], nodes: &[SnapNode]) -> Vec<u8> {
        let mut w = Writer::new();
        encode_snap_head(&mut w, sessions, &[]);
        for n in nodes {
            encode_snap_node(&mut w, n);
        }
        encode_snap_end(&mut w);
        w.buf
    }

    fn base() -> Vec<SnapNode> {
        vec![node("", 0), node("/zookeeper", 0), node("/zookeeper/quota", 0)]
    }

    /// Feeds `b` one byte more at a time (as a socket may deliver it).
    fn receive(b: &[u8], zxid: i64) -> Result<(Received, Vec<u8>), SnapLoadError> {
        let mut r = SnapshotReceiver::new(zxid, SnapLimits::new(1 << 20));
        let (mut at, mut file) = (0, Vec::new());
        for end in 0..=b.len() {
            at += r.feed(&b[at..end], 3)?;
            while !r.is_done() {
                let n = r.feed(&b[at..end], 3)?;
                if n == 0 {
                    break;
                }
                at += n;
            }
            file.extend(r.take_file_bytes());
            if r.is_done() {
                break;
            }
        }
        assert_eq!(at, b.len(), "the whole stream, nothing after it");
        let got = r.finish()?;
        file.extend_from_slice(&got.file_tail);
        Ok((got, file))
    }

    #[test]
    fn the_file_is_a_snapshot_zookeeper_and_zkd_read_back() {
        let mut nodes = base();
        nodes.push(node("/a", 5));
        nodes.push(node("/a/b", 6));
        let b = stream(&[(0x10, 3000)], &nodes);
        let (got, file) = receive(&b, 6).unwrap();
        assert_eq!((got.nodes, got.left_out, got.sessions.clone()), (5, 0, vec![(0x10, 3000)]));
        let snap = crate::snapshot::read_snapshot_all(&file[..], crate::snapshot::Compression::None, 1 << 20)
            .unwrap();
        assert_eq!(snap.meta.sessions, vec![(0x10, 3000)]);
        let paths: Vec<_> = snap.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, vec!["", "/zookeeper", "/zookeeper/quota", "/a", "/a/b"]);
        assert_eq!(got.tree.get_data("/a/b", None).unwrap().0, Some(b"/a/b".to_vec()));
        assert_eq!(got.tree.last_processed_zxid(), 6);
    }

    #[test]
    fn nodes_created_after_the_snap_zxid_are_left_out_with_their_subtrees() {
        let mut nodes = base();
        nodes.extend([
            node("/a", 5),
            node("/late", 9),
            node("/late/x", 10),
            node("/a/b", 6),
            node("/latex", 4),
        ]);
        let (got, file) = receive(&stream(&[], &nodes), 8).unwrap();
        assert_eq!((got.nodes, got.left_out), (8, 2));
        assert!(got.tree.exists("/late", None).is_none() && got.tree.exists("/late/x", None).is_none());
        assert!(got.tree.exists("/latex", None).is_some(), "a sibling sharing a prefix stays");
        let snap = crate::snapshot::read_snapshot_all(&file[..], crate::snapshot::Compression::None, 1 << 20)
            .unwrap();
        assert_eq!(snap.nodes.len(), 6, "the file holds what the tree holds");
    }

    /// The stream a real Apache ZooKeeper 3.8 leader sent after SNAP (captured by
    /// tests/fixtures/quorum/capture.sh) loads into a tree and a snapshot file.
    #[test]
    fn a_zookeeper_leaders_stream_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/quorum/leader-SNAP-stream.hex");
        let text = std::fs::read_to_string(&path).unwrap();
        let hex: String =
            text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
        let b: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let (snap, used) = crate::quorum::wire::decode_packet(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(snap.typ, crate::quorum::packet_type::SNAP);
        let (got, file) = receive(&b[used..], snap.zxid).unwrap();
        assert_eq!(got.tree.get_data("/wire", None).unwrap().0, Some(b"world".to_vec()));
        assert_eq!(got.left_out, 0);
        let read = crate::snapshot::read_snapshot_all(&file[..], crate::snapshot::Compression::None, 1 << 20)
            .unwrap();
        assert_eq!(read.meta.sessions, got.sessions);
        assert_eq!(read.nodes.len() as u64, got.nodes);
        if let Some(out) = std::env::var_os("ZKD_SNAP_FILE_OUT") {
            // For checking by hand with ZooKeeper's own SnapshotFormatter.
            std::fs::write(out, &file).unwrap();
        }
    }

    #[test]
    fn bad_streams_are_refused() {
        // An orphan.
        let mut nodes = base();
        nodes.push(node("/x/y", 1));
        assert!(matches!(receive(&stream(&[], &nodes), 8), Err(SnapLoadError::Tree(_))));
        // No /zookeeper.
        assert!(matches!(receive(&stream(&[], &[node("", 0)]), 8), Err(SnapLoadError::Tree(_))));
        // Too many sessions.
        let mut r = SnapshotReceiver::new(1, SnapLimits { sessions_max: 2, ..SnapLimits::new(1 << 20) });
        let b = stream(&[(1, 1), (2, 2), (3, 3)], &base());
        assert!(matches!(r.feed(&b, 100), Err(SnapLoadError::TooMany { what: "sessions", max: 2 })));
        // A length beyond the bound.
        let mut r = SnapshotReceiver::new(1, SnapLimits::new(16));
        let mut big = base();
        big.push(SnapNode { data: Some(vec![0; 17]), ..node("/big", 1) });
        assert!(matches!(r.feed(&stream(&[], &big), 100), Err(SnapLoadError::Wire(_))));
    }
}
