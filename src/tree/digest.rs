//! Tree digests, as ZooKeeper 3.6+ computes them (`zookeeper.digest.enabled`, on by default).
//!
//! A node's digest is the CRC32 of its path (the root as ""), its data, and 60 bytes of its
//! persisted stat, big-endian, in this order: czxid, mzxid, pzxid, ctime, mtime (i64), version,
//! cversion, aversion (i32), ephemeralOwner (i64). The cversion is the stored one (the count of
//! child creations), not the one a client sees. The tree's digest is the wrapping sum of its nodes'
//! digests (an additive hash: a change subtracts the node's old digest and adds its new one).
//! Nodes under `/zookeeper/` (quota and config) count as 0; `/zookeeper` itself counts. This is
//! digest version 2.
//!
//! Kept incrementally: every change to a node in `apply` subtracts its digest before and adds it
//! after, so reading the tree's digest costs one atomic load. The tree also remembers the digest
//! after each applied txn (`ZxidDigest`) and every 128th of them (the `hash` command's list).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::node::NodePtr;
use crate::proto::StatPersisted;

/// `DigestCalculator.DIGEST_VERSION`.
pub const DIGEST_VERSION: i32 = 2;

/// ZooKeeper's `ZooDefs.ZOOKEEPER_NODE_SUBTREE`: nodes below it are left out of the digest.
const EXCLUDED_PREFIX: &str = "/zookeeper/";

/// `DataTree.DIGEST_LOG_INTERVAL`: the history keeps the digest of zxids that are multiples of it.
pub const DIGEST_LOG_INTERVAL: i64 = 128;
/// `DataTree.DIGEST_LOG_LIMIT`: the history's length.
pub const DIGEST_LOG_LIMIT: usize = 1024;

/// `zookeeper.digest.enabled` (ZooKeeper keeps it process-wide too: `ZooKeeperServer.digestEnabled`).
/// The tree keeps its digest either way; this decides whether snapshots and txns carry digests
/// and whether they are compared.
static ENABLED: AtomicBool = AtomicBool::new(true);
/// ZooKeeper's `digest_mismatches_count`.
static MISMATCHES: AtomicU64 = AtomicU64::new(0);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How many digest mismatches this process saw (snapshot or txn digests against the tree's).
pub fn mismatches() -> u64 {
    MISMATCHES.load(Ordering::Relaxed)
}

/// Compares a digest recorded for `zxid` (in a snapshot, a txn log record or a proposal) with the
/// tree's after applying `zxid` (`DataTree.compareDigest` / `compareSnapshotDigests`). A mismatch
/// is counted and logged as one warning; true if they match.
pub fn check(what: &str, zxid: i64, recorded: i64, tree: u64) -> bool {
    if recorded as u64 == tree {
        return true;
    }
    let n = MISMATCHES.fetch_add(1, Ordering::Relaxed) + 1;
    // Bounded: the first ones, then one in 1024 (a diverged tree mismatches on every txn).
    if n <= 16 || n.is_multiple_of(1024) {
        tracing::warn!(
            "Digests are not matching ({what}) at zxid 0x{zxid:x}: recorded {recorded}, this tree {} ({n} mismatches so far)",
            tree as i64
        );
    }
    false
}

/// The 60 stat bytes a node's digest ends with, in ZooKeeper's order.
fn stat_bytes(stat: &StatPersisted) -> [u8; 60] {
    let mut b = [0u8; 60];
    b[0..8].copy_from_slice(&stat.czxid.to_be_bytes());
    b[8..16].copy_from_slice(&stat.mzxid.to_be_bytes());
    b[16..24].copy_from_slice(&stat.pzxid.to_be_bytes());
    b[24..32].copy_from_slice(&stat.ctime.to_be_bytes());
    b[32..40].copy_from_slice(&stat.mtime.to_be_bytes());
    b[40..44].copy_from_slice(&stat.version.to_be_bytes());
    b[44..48].copy_from_slice(&stat.cversion.to_be_bytes());
    b[48..52].copy_from_slice(&stat.aversion.to_be_bytes());
    b[52..60].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    b
}

/// The digest of one node (0 for nodes under `/zookeeper/`).
pub fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> u64 {
    NodeDigestState::new(path, data, stat.clone()).digest()
}

/// What a node's digest depends on, with its path and data already hashed: prep keeps one per
/// node a txn in flight changes, to compute the digest the tree will have after that txn
/// without keeping the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDigestState {
    pub stat: StatPersisted,
    /// CRC32 of the path (the root as "") and the data; None for nodes under `/zookeeper/`.
    prefix: Option<u32>,
}

impl NodeDigestState {
    pub fn new(path: &str, data: Option<&[u8]>, stat: StatPersisted) -> NodeDigestState {
        let prefix = (!path.starts_with(EXCLUDED_PREFIX)).then(|| {
            // "/" and "" are the same node (the root): ZooKeeper maps "/" to "".
            let path = if path == "/" { "" } else { path };
            let mut h = crc32fast::Hasher::new();
            h.update(path.as_bytes());
            if let Some(d) = data {
                h.update(d);
            }
            h.finalize()
        });
        NodeDigestState { stat, prefix }
    }

    /// The same node with new data.
    pub fn with_data(&self, path: &str, data: Option<&[u8]>) -> NodeDigestState {
        NodeDigestState::new(path, data, self.stat.clone())
    }

    pub fn digest(&self) -> u64 {
        match self.prefix {
            None => 0,
            Some(p) => {
                let mut h = crc32fast::Hasher::new_with_initial(p);
                h.update(&stat_bytes(&self.stat));
                h.finalize() as u64
            }
        }
    }
}

/// A live node's digest (its stripe locked).
pub(super) fn of(n: NodePtr) -> u64 {
    NodeDigestState::new(n.path(), n.data(), n.stat_persisted()).digest()
}

/// The tree's digest after one txn (`DataTree.ZxidDigest`; a snapshot stores the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZxidDigest {
    pub zxid: i64,
    pub digest: u64,
}

/// The digests after recent txns: the last one and a bounded history.
#[derive(Debug, Default)]
pub(super) struct DigestLog {
    pub last: Option<ZxidDigest>,
    pub history: VecDeque<ZxidDigest>,
}

impl DigestLog {
    /// `DataTree.logZxidDigest`.
    pub fn record(&mut self, zxid: i64, digest: u64) {
        let d = ZxidDigest { zxid, digest };
        self.last = Some(d);
        if zxid % DIGEST_LOG_INTERVAL == 0 {
            if self.history.len() == DIGEST_LOG_LIMIT {
                self.history.pop_front();
            }
            self.history.push_back(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(z: i64) -> StatPersisted {
        StatPersisted {
            czxid: z,
            mzxid: z,
            ctime: 1000,
            mtime: 1000,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            pzxid: z,
        }
    }

    #[test]
    fn excluded_and_aliased_paths() {
        let s = st(5);
        assert_eq!(node_digest("/zookeeper/quota", None, &s), 0);
        assert_eq!(node_digest("/zookeeper/config", Some(b"x"), &s), 0);
        assert_ne!(node_digest("/zookeeper", None, &s), 0);
        assert_ne!(node_digest("/zookeeperx", None, &s), 0);
        assert_eq!(node_digest("/", None, &s), node_digest("", None, &s));
        // No data and empty data are the same bytes.
        assert_eq!(node_digest("/a", None, &s), node_digest("/a", Some(b""), &s));
    }

    #[test]
    fn crc32_over_path_data_and_stat_in_order() {
        let s = st(0x1_0000_0002);
        let mut bytes = b"/a".to_vec();
        bytes.extend_from_slice(b"hello");
        for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        for v in [s.version, s.cversion, s.aversion] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&s.ephemeral_owner.to_be_bytes());
        assert_eq!(bytes.len(), 2 + 5 + 60);
        assert_eq!(node_digest("/a", Some(b"hello"), &s), crc32fast::hash(&bytes) as u64);
        // The Java empty root: java.util.zip.CRC32 over 60 zero bytes.
        assert_eq!(node_digest("", None, &StatPersisted::default()), crc32fast::hash(&[0u8; 60]) as u64);
    }

    #[test]
    fn history_keeps_every_128th_up_to_the_limit() {
        let mut l = DigestLog::default();
        for z in 1..=(DIGEST_LOG_INTERVAL * (DIGEST_LOG_LIMIT as i64 + 5)) {
            l.record(z, z as u64);
        }
        assert_eq!(l.history.len(), DIGEST_LOG_LIMIT);
        assert_eq!(l.history.front().unwrap().zxid, DIGEST_LOG_INTERVAL * 6);
        assert_eq!(l.last.unwrap().zxid, DIGEST_LOG_INTERVAL * (DIGEST_LOG_LIMIT as i64 + 5));
    }
}
