//! Reads: what a shard asks of the tree (node data, Stat, children, ACL, ephemerals, counts),
//! each under one stripe's read lock, and the fuzzy walk a snapshot is written from.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLockReadGuard;

use super::java_order::JavaHashSet;
use super::node::ChildList;
use super::watch::Mode;
use super::{ephemeral_type, stripe_of, DataTree, EphemeralType, NodeMap, WatcherId};
use crate::proto::{Acl, ErrorCode, Stat, StatPersisted};

/// A node's data as readers get it: copied out under the stripe's read lock (one memcpy; the
/// node and its data are one allocation, which a writer may replace once the lock is free).
pub type Data = Option<Vec<u8>>;

/// What a read needs to validate a write: the committed node's Stat and ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub stat: Stat,
    /// The stored (creation-counting) cversion: sequential suffixes come from it.
    pub stored_cversion: i32,
    pub acl: Arc<Vec<Acl>>,
}

thread_local! {
    /// The highest "last applied zxid" seen under a stripe lock by reads since `begin_observe`
    /// (a request's last read is the one that returns data and registers its watch).
    static OBSERVED: std::cell::Cell<i64> = const { std::cell::Cell::new(i64::MIN) };
}

/// A fuzzy preorder walk of the tree, as ZooKeeper's `DataTree.serializeNode` makes it for a
/// snapshot: a node, then each of its children (in ZooKeeper's order, as read with the node)
/// and their subtrees. Each node is read under its own stripe's lock when the walk reaches it: a
/// child deleted meanwhile is skipped, a node changed meanwhile is seen as it is then. The walk
/// holds the child names of the nodes on the current path (ZooKeeper copies them too), never
/// node data. Driven by [`DataTree::walk_next`].
#[derive(Debug, Default)]
pub struct Walk {
    started: bool,
    stack: Vec<WalkLevel>,
}

#[derive(Debug)]
struct WalkLevel {
    path: String,
    names: Vec<String>,
    next: usize,
}

impl Walk {
    pub fn new() -> Walk {
        Walk::default()
    }
}

/// Starts recording what zxid the reads on this thread observe (see `Shard::pump`).
pub fn begin_observe() {
    OBSERVED.with(|o| o.set(i64::MIN));
}

/// The highest last-applied zxid observed by reads since `begin_observe`, if any read a stripe.
pub fn end_observe() -> Option<i64> {
    OBSERVED.with(|o| {
        let v = o.replace(i64::MIN);
        (v != i64::MIN).then_some(v)
    })
}

impl DataTree {
    pub(super) fn read(&self, path: &str) -> RwLockReadGuard<'_, NodeMap> {
        let g = self.stripes[stripe_of(path)].nodes.read();
        // Every txn that changed this stripe before we locked it has published its zxid; every
        // txn that will change it (and fire a watch registered now) gets a larger one.
        let z = self.last_zxid.load(Ordering::Acquire);
        OBSERVED.with(|o| o.set(o.get().max(z)));
        g
    }

    pub fn get_data(&self, path: &str, watch: Option<WatcherId>) -> Result<(Data, Stat), ErrorCode> {
        let nodes = self.read(path);
        let n = nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if let Some(w) = watch {
            let mut ws = self.stripes[stripe_of(path)].watches.lock();
            self.add_watch(&mut ws.data, path, w, Mode::Standard);
        }
        Ok((n.data().map(<[u8]>::to_vec), nodes.stat(n)))
    }

    /// `get_data` handing the data to `f` under the stripe's read lock (no copy of its own:
    /// `f` may encode straight into a reply buffer). `f` must not touch the tree.
    pub fn get_data_with<R>(
        &self,
        path: &str,
        watch: Option<WatcherId>,
        f: impl FnOnce(Option<&[u8]>, Stat) -> R,
    ) -> Result<R, ErrorCode> {
        let nodes = self.read(path);
        let n = nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if let Some(w) = watch {
            let mut ws = self.stripes[stripe_of(path)].watches.lock();
            self.add_watch(&mut ws.data, path, w, Mode::Standard);
        }
        Ok(f(n.data(), nodes.stat(n)))
    }

    pub fn exists(&self, path: &str, watch: Option<WatcherId>) -> Option<Stat> {
        let nodes = self.read(path);
        if let Some(w) = watch {
            let mut ws = self.stripes[stripe_of(path)].watches.lock();
            self.add_watch(&mut ws.data, path, w, Mode::Standard);
        }
        nodes.get(path).map(|n| nodes.stat(n))
    }

    pub fn get_children(
        &self,
        path: &str,
        watch: Option<WatcherId>,
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let nodes = self.read(path);
        let n = nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if let Some(w) = watch {
            let mut ws = self.stripes[stripe_of(path)].watches.lock();
            self.add_watch(&mut ws.child, path, w, Mode::Standard);
        }
        Ok((nodes.ordered_names(n), nodes.stat(n)))
    }

    pub fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ErrorCode> {
        let nodes = self.read(path);
        let n = nodes.get(path).ok_or(ErrorCode::NoNode)?;
        Ok(((*self.acls.read().get(n.acl())).clone(), nodes.stat(n)))
    }

    pub fn meta(&self, path: &str) -> Option<NodeMeta> {
        let nodes = self.read(path);
        let n = nodes.get(path)?;
        Some(NodeMeta {
            stat: nodes.stat(n),
            stored_cversion: n.cversion(),
            acl: self.acls.read().get(n.acl()),
        })
    }

    /// What the node's digest depends on (prep's view of a node before a txn changes it).
    pub fn digest_state(&self, path: &str) -> Option<super::digest::NodeDigestState> {
        let nodes = self.read(path);
        let n = nodes.get(path)?;
        Some(super::digest::NodeDigestState::new(n.path(), n.data(), n.stat_persisted()))
    }

    /// ZooKeeper's `getAllChildrenNumber`: every descendant.
    pub fn all_children_number(&self, path: &str) -> Result<i32, ErrorCode> {
        let mut count = 0i64;
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            let nodes = self.read(&p);
            let n = nodes.get(p.as_str()).ok_or(ErrorCode::NoNode)?;
            for c in nodes.children_of(n).into_iter().flat_map(ChildList::iter) {
                count += 1;
                stack.push(c.path().to_owned());
            }
        }
        Ok(count as i32)
    }

    /// The session's ephemeral paths as ZooKeeper's `getEphemerals` returns them (a clone of
    /// its HashSet, in the clone's iteration order).
    pub fn ephemerals(&self, session: i64) -> Vec<String> {
        self.ephemerals_set(session).ordered().into_iter().map(str::to_owned).collect()
    }

    /// The clone itself, for closeSession's prep, which adds and removes pending changes to it.
    pub fn ephemerals_set(&self, session: i64) -> JavaHashSet {
        self.ephemerals
            .lock()
            .get(&session)
            .map_or_else(|| JavaHashSet::with_capacity_log2(4), JavaHashSet::java_clone)
    }

    /// Every session's ephemeral paths, sessions ascending (for `dump`).
    pub fn ephemerals_by_session(&self) -> Vec<(i64, Vec<String>)> {
        let mut v: Vec<(i64, Vec<String>)> = self
            .ephemerals
            .lock()
            .iter()
            .map(|(s, p)| (*s, p.java_clone().ordered().into_iter().map(str::to_owned).collect()))
            .collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        v
    }

    pub fn ephemerals_count(&self) -> usize {
        self.ephemerals.lock().values().map(|s| s.len()).sum()
    }

    pub fn node_count(&self) -> usize {
        self.node_count.load(Ordering::Relaxed)
    }
    pub fn approximate_data_size(&self) -> i64 {
        self.data_size.load(Ordering::Relaxed)
    }
    pub fn watch_count(&self) -> usize {
        self.watch_count.load(Ordering::Relaxed)
    }
    pub fn last_processed_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::Acquire)
    }

    /// ZooKeeper's `ContainerManager.getCandidates`: empty containers that once had a child, and
    /// childless TTL nodes not modified for longer than their TTL.
    pub fn containers_and_ttls_to_delete(&self, now_ms: i64, _ttl_enabled: bool) -> Vec<String> {
        let mut out = Vec::new();
        let containers: Vec<String> = self.containers.lock().iter().cloned().collect();
        for p in containers {
            let nodes = self.read(&p);
            if let Some(n) = nodes.get(p.as_str()) {
                if nodes.num_children(n) == 0 && n.cversion() > 0 {
                    out.push(p.clone());
                }
            }
        }
        let ttls: Vec<String> = self.ttls.lock().iter().cloned().collect();
        for p in ttls {
            let nodes = self.read(&p);
            if let Some(n) = nodes.get(p.as_str()) {
                if let EphemeralType::Ttl(ttl) = ephemeral_type(n.owner()) {
                    if nodes.num_children(n) == 0 && ttl != 0 && now_ms - n.mtime() > ttl {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// Walks every node parent-before-child (ZooKeeper serializes depth-first from the root,
    /// whose path is written as ""), with [`Walk`]: fuzzy, each node read under its own stripe
    /// lock. `f` runs under that lock and must not touch the tree.
    pub fn for_each_node(&self, mut f: impl FnMut(&str, Option<&[u8]>, i64, &StatPersisted)) {
        let mut w = Walk::new();
        while self.walk_next(&mut w, &mut f) {}
    }

    /// The next node of a fuzzy preorder walk (see [`Walk`]): hands its stored path (the root as
    /// ""), data, ACL id and stat to `f` under its stripe's read lock (`f` must not touch the
    /// tree), and returns true; false once the walk is over. No lock is held between calls, so a
    /// caller may stop, yield and go on while the tree changes.
    pub fn walk_next(&self, w: &mut Walk, f: impl FnOnce(&str, Option<&[u8]>, i64, &StatPersisted)) -> bool {
        loop {
            let path = if !w.started {
                w.started = true;
                "/".to_owned()
            } else {
                let Some(top) = w.stack.last_mut() else { return false };
                let Some(name) = top.names.get(top.next) else {
                    w.stack.pop();
                    continue;
                };
                top.next += 1;
                if top.path == "/" {
                    format!("/{name}")
                } else {
                    format!("{}/{name}", top.path)
                }
            };
            let nodes = self.read(&path);
            // Gone since its parent was read: ZooKeeper's serializeNode skips it too.
            let Some(n) = nodes.get(path.as_str()) else { continue };
            let names = nodes.ordered_names(n);
            let stored = if path == "/" { "" } else { path.as_str() };
            f(stored, n.data(), n.acl(), &n.stat_persisted());
            drop(nodes);
            if !names.is_empty() {
                w.stack.push(WalkLevel { path, names, next: 0 });
            }
            return true;
        }
    }

    pub fn acl_cache_export(&self) -> Vec<(i64, Vec<Acl>)> {
        self.acls.read().export()
    }
}
