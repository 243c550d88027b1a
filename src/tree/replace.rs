//! Replacing the whole tree in place: a learner that receives the leader's snapshot (SNAP) or
//! reloads from disk after a truncation (TRUNC) gets a new tree, while the shards keep their
//! `Arc<DataTree>`. ZooKeeper's learner makes a new `DataTree` there (`ZKDatabase.clear`), and
//! with it a new, empty watch manager: the watches of the old tree are dropped too (no client
//! is connected while a learner synchronises; clients re-register theirs with setWatches when
//! they reconnect).

use std::sync::atomic::Ordering;

use super::DataTree;

impl DataTree {
    /// Makes this tree `other`'s contents (nodes, ACL cache, ephemerals, containers, TTL nodes,
    /// quotas, counters, last zxid), with no watches, and returns the old contents as a tree of
    /// its own (with the old watches), for the caller to drop where freeing every old node does
    /// not stall anyone.
    ///
    /// Every stripe is write-locked, in index order as `apply` locks them, for the swap: a
    /// reader sees either the old tree or the new one at each node, and a read that spans
    /// several locks (a walk) may see both, as it may see any concurrent change.
    pub fn replace_with(&self, mut other: DataTree) -> DataTree {
        assert_eq!(self.stripes.len(), other.stripes.len());
        // A fresh or loaded tree has none; the swap below leaves this tree with the new one's.
        assert_eq!(*other.watch_count.get_mut(), 0, "a replacement tree must have no watches");
        let mut guards: Vec<_> = self.stripes.iter().map(|s| s.nodes.write()).collect();
        for (g, o) in guards.iter_mut().zip(other.stripes.iter_mut()) {
            std::mem::swap(&mut **g, o.nodes.get_mut());
        }
        // The rest is locked after the stripes, as `apply` takes it.
        std::mem::swap(&mut *self.acls.write(), other.acls.get_mut());
        std::mem::swap(&mut *self.ephemerals.lock(), other.ephemerals.get_mut());
        std::mem::swap(&mut *self.containers.lock(), other.containers.get_mut());
        std::mem::swap(&mut *self.ttls.lock(), other.ttls.get_mut());
        std::mem::swap(&mut *self.quota_paths.write(), other.quota_paths.get_mut());
        for (s, o) in self.stripes.iter().zip(other.stripes.iter_mut()) {
            std::mem::swap(&mut *s.watches.lock(), o.watches.get_mut());
        }
        let swap = |a: &std::sync::atomic::AtomicUsize, b: &mut std::sync::atomic::AtomicUsize| {
            let v = a.swap(*b.get_mut(), Ordering::Relaxed);
            *b.get_mut() = v;
        };
        swap(&self.recursive_watches, &mut other.recursive_watches);
        swap(&self.watch_count, &mut other.watch_count);
        swap(&self.node_count, &mut other.node_count);
        let v = self.data_size.swap(*other.data_size.get_mut(), Ordering::Relaxed);
        *other.data_size.get_mut() = v;
        // Published before the locks drop, as `apply` publishes: a read that sees the new
        // nodes reports the new tree's zxid (it may be older than the old tree's: TRUNC).
        let v = self.last_zxid.swap(*other.last_zxid.get_mut(), Ordering::AcqRel);
        *other.last_zxid.get_mut() = v;
        let v = self.digest.swap(*other.digest.get_mut(), Ordering::AcqRel);
        *other.digest.get_mut() = v;
        std::mem::swap(&mut *self.digest_log.lock(), other.digest_log.get_mut());
        self.replacements.fetch_add(1, Ordering::AcqRel);
        drop(guards);
        other
    }

    /// How many times the tree was replaced: a fuzzy walk (a snapshot) during which this changed
    /// holds parts of two trees and must be thrown away.
    pub fn replacements(&self) -> usize {
        self.replacements.load(Ordering::Acquire)
    }
}
