//! Loading a snapshot into a tree: node by node in stream order, or in parallel by stripe for a
//! preorder snapshot (insert, then link), and the bookkeeping that goes with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLockWriteGuard;

use super::node::{self, NodePtr};
use super::quota::{LIMIT_NODE, QUOTA_ROOT};
use super::{child_name, parent_of, path_hash, stripe_of, DataTree, NodeMap, STRIPES};
use crate::proto::{Acl, StatPersisted};

/// A snapshot node to load, borrowed from the snapshot's bytes (see [`DataTree::load_insert`]).
pub struct LoadNode<'a> {
    /// As stored: the root is `""`.
    pub path: &'a str,
    pub data: Option<&'a [u8]>,
    pub acl: i64,
    pub stat: StatPersisted,
}

/// Where a node being loaded goes: its stripe and its parent's (see [`LoadShares::count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSlot {
    node: u16,
    parent: u16,
}

/// Checks that a snapshot's nodes come in preorder (each node's parent is one of the nodes on
/// the path from the root to the previous node), as ZooKeeper and zkd write them, and gives
/// each node its parent's stream position: what lets [`DataTree::load_insert`] and
/// [`DataTree::load_link`] run on several threads. A snapshot in another order is still valid
/// when every parent comes before its children; it is loaded node by node instead
/// ([`DataTree::insert_loaded_node`], which checks that).
#[derive(Default)]
pub struct Preorder<'a> {
    /// The current path from the root: (path, stream position).
    stack: Vec<(&'a str, u32)>,
    broken: bool,
}

impl<'a> Preorder<'a> {
    pub fn new() -> Self {
        Self::default()
    }
    /// The parent's stream position of node `i` (as stored: the root is `""`, and comes first);
    /// `u32::MAX` for the root or once the order is broken.
    pub fn parent(&mut self, i: u32, path: &'a str) -> u32 {
        if self.broken {
            return u32::MAX;
        }
        let path = if path.is_empty() { "/" } else { path };
        if i == 0 || path == "/" {
            if i == 0 && path == "/" {
                self.stack.push((path, 0));
            } else {
                self.broken = true;
            }
            return u32::MAX;
        }
        let parent = split_path(path).0;
        while let Some(&(top, at)) = self.stack.last() {
            if top == parent {
                self.stack.push((path, i));
                return at;
            }
            self.stack.pop();
        }
        self.broken = true;
        u32::MAX
    }
    /// Whether every node so far came in preorder.
    pub fn holds(&self) -> bool {
        !self.broken
    }
}

/// A snapshot node's path must be well formed ([`super::well_formed_path`]).
fn check_path(path: &str) -> Result<(), String> {
    if super::well_formed_path(path) {
        Ok(())
    } else {
        Err(format!("node {path:?} has a malformed path"))
    }
}

/// A path's parent (`"/"` for top-level nodes) and last name, with one backward scan (paths are
/// short: a plain loop beats `rfind`'s vectorized search called three times per node).
fn split_path(path: &str) -> (&str, &str) {
    match path.as_bytes().iter().rposition(|&b| b == b'/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// Which builder of a parallel load owns which stripe in each phase ([`DataTree::load_insert`],
/// then [`DataTree::load_link`]), chosen to balance each phase: inserting a node works in its
/// stripe, linking it as a child in its parent's (so 1M children of one node weigh on one).
#[derive(Debug, Clone)]
pub struct LoadShares {
    parts: usize,
    /// Who inserts the nodes of each stripe (phase 1) and who links the children of each
    /// stripe's nodes (phase 2). The phases run one after the other, so each is balanced on
    /// its own: 1M children of one node make phase 2 one builder's work, not phase 1 too.
    insert_owner: Vec<u8>,
    link_owner: Vec<u8>,
    insert_weight: Vec<u64>,
    link_weight: Vec<u64>,
    /// Nodes counted per stripe.
    nodes: Vec<u32>,
}

impl LoadShares {
    /// Every stripe to one builder.
    pub fn single() -> Self {
        LoadShares {
            parts: 1,
            insert_owner: vec![0; STRIPES],
            link_owner: vec![0; STRIPES],
            insert_weight: vec![0; STRIPES],
            link_weight: vec![0; STRIPES],
            nodes: vec![0; STRIPES],
        }
    }
    /// No work counted yet.
    pub fn new() -> Self {
        Self::single()
    }
    /// Counts the work of one node (as stored: the root is `""`); its slot goes with it to
    /// [`DataTree::load_insert`] and [`DataTree::load_link`].
    pub fn count(&mut self, path: &str) -> LoadSlot {
        if path.is_empty() || path == "/" {
            let node = stripe_of("/") as u16;
            return LoadSlot { node, parent: node };
        }
        let slot = LoadSlot { node: stripe_of(path) as u16, parent: stripe_of(split_path(path).0) as u16 };
        self.insert_weight[slot.node as usize] += 1;
        self.nodes[slot.node as usize] = self.nodes[slot.node as usize].saturating_add(1);
        self.link_weight[slot.parent as usize] += 1;
        slot
    }
    /// Whether builder `part` inserts the node in `slot` ([`DataTree::load_insert`]).
    pub fn owns_node(&self, part: usize, slot: LoadSlot) -> bool {
        self.insert_owner[slot.node as usize] as usize == part
    }
    /// Whether builder `part` links the node in `slot` to its parent ([`DataTree::load_link`]).
    pub fn owns_parent(&self, part: usize, slot: LoadSlot) -> bool {
        self.link_owner[slot.parent as usize] as usize == part
    }
    /// Splits the stripes among `parts` builders, for each phase: heaviest first, each to the
    /// lightest builder so far (within 4/3 of the best split).
    pub fn split(&mut self, parts: usize) {
        assert!((1..=u8::MAX as usize).contains(&parts));
        greedy_split(&self.insert_weight, parts, &mut self.insert_owner);
        greedy_split(&self.link_weight, parts, &mut self.link_owner);
        self.parts = parts;
    }
    pub fn parts(&self) -> usize {
        self.parts
    }
}

fn greedy_split(weight: &[u64], parts: usize, owner: &mut [u8]) {
    let mut order: Vec<usize> = (0..weight.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight[i]));
    let mut load = vec![0u64; parts];
    for i in order {
        let p = (0..parts).min_by_key(|&p| load[p]).expect("parts >= 1");
        load[p] += weight[i];
        owner[i] = p as u8;
    }
}

impl Default for LoadShares {
    fn default() -> Self {
        Self::new()
    }
}

/// What one builder of a load counted, added to the tree by [`DataTree::load_tally`].
#[derive(Default, Debug)]
pub struct LoadTally {
    pub nodes: usize,
    pub bytes: i64,
    acl_uses: HashMap<i64, u64>,
    /// The current run of nodes with one ACL (most snapshots use one or two ACLs in long runs).
    run: Option<(i64, u64)>,
}

impl LoadTally {
    fn use_acl(&mut self, id: i64) {
        match &mut self.run {
            Some((cur, n)) if *cur == id => *n += 1,
            run => {
                if let Some((cur, n)) = run.replace((id, 1)) {
                    *self.acl_uses.entry(cur).or_default() += n;
                }
            }
        }
    }
    pub fn merge(&mut self, o: LoadTally) {
        self.nodes += o.nodes;
        self.bytes += o.bytes;
        for (id, n) in o.acl_uses.into_iter().chain(o.run) {
            *self.acl_uses.entry(id).or_default() += n;
        }
    }
}

impl DataTree {
    pub fn acl_cache_import(&self, entries: &[(i64, Vec<Acl>)]) {
        self.acls.write().import(entries);
    }
    /// Usage counts gathered while loading nodes before the ACL cache was known.
    pub fn acl_add_usages(&self, uses: &HashMap<i64, u64>) {
        let mut a = self.acls.write();
        for (&id, &n) in uses {
            a.add_usage_n(id, n);
        }
    }

    /// Inserts a node read from a snapshot (root as "" or "/"), with its ACL id's use counted
    /// now (the ACL cache is imported already). The parent must be loaded first.
    pub fn insert_loaded_node(
        &self,
        path: &str,
        data: Option<Vec<u8>>,
        acl: i64,
        stat: StatPersisted,
    ) -> Result<(), String> {
        self.acls.write().add_usage(acl);
        self.load_node(LoadNode { path, data: data.as_deref(), acl, stat })
    }

    /// One node of a snapshot loaded on one thread, in stream order (the parent must be loaded
    /// first): the node, its bookkeeping, and its ACL id's use counted in `acc` (for
    /// [`DataTree::load_tally`], once the snapshot's ACL cache is imported).
    pub fn load_node_counted(&self, n: LoadNode<'_>, acc: &mut LoadTally) -> Result<(), String> {
        acc.use_acl(n.acl);
        self.load_node(n)
    }

    fn load_node(&self, n: LoadNode<'_>) -> Result<(), String> {
        let LoadNode { path, data, acl, stat } = n;
        let path = if path.is_empty() { "/" } else { path };
        check_path(path)?;
        if path == "/" {
            if stat.ephemeral_owner != 0 {
                return Err("the root node has an ephemeral owner".into());
            }
            if data.as_ref().is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
                return Err("the root node's data is too large".into());
            }
            let mut nodes = self.stripes[stripe_of("/")].nodes.write();
            let n = nodes.get("/").expect("root exists");
            let m = n.with_data(data);
            m.set_stat(acl, &stat);
            if m != n {
                nodes.repoint(n, m);
            }
            return Ok(());
        }
        let owner = stat.ephemeral_owner;
        let parent = parent_of(path);
        self.raw_insert(path, data, acl, &stat)?;
        self.loaded_node_extras(path, parent, owner);
        Ok(())
    }

    /// Phase 1 of a parallel load of a preorder snapshot (see [`Preorder`]) into a tree made
    /// by [`DataTree::new_empty`]: builder `part` of `shares` inserts the nodes of its stripes
    /// and records each one's address at its stream position in `made`. No builder touches
    /// another's stripes, so no lock is contended. `slot` is what [`LoadShares::count`]
    /// returned for the node. Linking children is [`DataTree::load_link`]'s, once every part
    /// has inserted; ephemeral, container, TTL and quota bookkeeping is
    /// [`DataTree::load_extras`]'s.
    pub fn load_insert<'a>(
        &self,
        part: usize,
        shares: &LoadShares,
        nodes: impl IntoIterator<Item = (u32, LoadNode<'a>, LoadSlot)>,
        made: &[AtomicUsize],
        acc: &mut LoadTally,
    ) -> Result<(), String> {
        let mut guards = self.load_guards(part, shares, &shares.insert_owner);
        // Tables sized once for the nodes counted: no rehashing while loading.
        for (g, &n) in guards.iter_mut().zip(&shares.nodes) {
            if let Some(g) = g {
                let more = (n as usize).saturating_sub(g.table.len());
                g.table.reserve(more, |m| path_hash(m.path()));
            }
        }
        for (i, n, slot) in nodes {
            let path = if n.path.is_empty() { "/" } else { n.path };
            // Debug builds only: a second hash of every path in the load's hottest loop (the
            // slot was computed from the same path by `LoadShares::count`).
            debug_assert_eq!(slot.node as usize, stripe_of(path), "slot of {path}");
            let Some(g) = guards[slot.node as usize].as_mut() else { continue };
            if n.data.is_some_and(|d| d.len() > node::MAX_DATA_LEN) || path.len() > node::MAX_PATH_LEN {
                return Err(format!("node {path} is too large"));
            }
            check_path(path)?;
            acc.use_acl(n.acl);
            let ptr = if path == "/" {
                if n.stat.ephemeral_owner != 0 {
                    return Err("the root node has an ephemeral owner".into());
                }
                let root = g.get("/").expect("a load starts from new_empty, which has the root");
                let m = root.with_data(n.data);
                m.set_stat(n.acl, &n.stat);
                if m != root {
                    g.repoint(root, m);
                }
                m
            } else {
                let node = NodePtr::new(path, n.data, n.acl, &n.stat);
                if !g.insert_new(node) {
                    // SAFETY: never shared: it did not go into the table.
                    unsafe { node.free() };
                    return Err(format!("node {path} appears twice"));
                }
                acc.nodes += 1;
                acc.bytes += path.len() as i64 + n.data.map_or(0, |d| d.len() as i64);
                node
            };
            made[i as usize].store(ptr.addr(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Phase 2 of a parallel load: builder `part` links, in stream order, every node whose
    /// parent is in its stripes to that parent (`(child, parent)` stream positions, as
    /// [`Preorder::parent`] gave them). Every part's [`DataTree::load_insert`] must have
    /// succeeded and finished (joined) before any part links.
    pub fn load_link(
        &self,
        part: usize,
        shares: &LoadShares,
        links: impl IntoIterator<Item = (u32, u32, LoadSlot)>,
        made: &[AtomicUsize],
    ) {
        let mut guards = self.load_guards(part, shares, &shares.link_owner);
        for (child, parent, slot) in links {
            let Some(g) = guards[slot.parent as usize].as_mut() else { continue };
            let (c, p) =
                (made[child as usize].load(Ordering::Relaxed), made[parent as usize].load(Ordering::Relaxed));
            assert!(c != 0 && p != 0, "load_link before every load_insert finished");
            // SAFETY: both were made by load_insert into this tree's tables, which are not
            // changed by anyone else until the load ends; a child's position fields are written
            // only here, by the one builder owning its parent's stripe.
            let (c, p) = unsafe { (NodePtr::from_addr(c), NodePtr::from_addr(p)) };
            // Debug builds only: a scan and compare of every path in a loop that otherwise only
            // pushes a pointer (the positions come from `Preorder`, which matched these paths).
            debug_assert_eq!(p.path(), parent_of(c.path()));
            g.child_list_mut(p).push(c);
        }
    }

    /// Write guards on the stripes `part` owns (None for the others).
    fn load_guards(
        &self,
        part: usize,
        shares: &LoadShares,
        owner: &[u8],
    ) -> Vec<Option<RwLockWriteGuard<'_, NodeMap>>> {
        assert!(part < shares.parts, "part {part} of {}", shares.parts);
        self.stripes.iter().zip(owner).map(|(s, &o)| (o as usize == part).then(|| s.nodes.write())).collect()
    }

    /// Ephemeral, container, TTL and quota bookkeeping of a loaded node (as stored: the root is
    /// `""`), called in stream order: a session's ephemerals iterate in insertion order. Cheap
    /// for the common node (no owner, not under the quota root).
    pub fn load_extras(&self, path: &str, ephemeral_owner: i64) {
        if path.is_empty() || path == "/" || (ephemeral_owner == 0 && !path.starts_with(QUOTA_ROOT)) {
            return;
        }
        self.loaded_node_extras(path, split_path(path).0, ephemeral_owner);
    }

    /// Adds what builders counted (once every part is done).
    pub fn load_tally(&self, t: &LoadTally) {
        self.node_count.fetch_add(t.nodes, Ordering::Relaxed);
        self.data_size.fetch_add(t.bytes, Ordering::Relaxed);
        let mut uses = t.acl_uses.clone();
        if let Some((id, n)) = t.run {
            *uses.entry(id).or_default() += n;
        }
        self.acl_add_usages(&uses);
    }

    /// Ephemeral, container, TTL and quota bookkeeping of a loaded node.
    fn loaded_node_extras(&self, path: &str, parent: &str, owner: i64) {
        self.track_owner(path, owner);
        if parent.starts_with(QUOTA_ROOT) && child_name(path) == LIMIT_NODE {
            let quoted = &parent[QUOTA_ROOT.len()..];
            self.quota_paths.write().insert(if quoted.is_empty() { "/" } else { quoted }.to_owned());
        }
    }

    /// Ends a snapshot load: the tree is as of `zxid`. Quota stats are recomputed from the
    /// loaded nodes, as ZooKeeper's `DataTree.deserialize` ends with `setupQuota`: a fuzzy
    /// snapshot's stats node was read at another moment than the nodes it counts, and the txns
    /// replayed after it count their own changes.
    pub fn finish_load(&self, zxid: i64) -> Result<(), String> {
        self.setup_quota();
        self.acls.write().purge_unused();
        self.last_zxid.store(zxid, Ordering::Release);
        self.recompute_digest();
        if self.read("/zookeeper").get("/zookeeper").is_none() {
            return Err("snapshot has no /zookeeper node".into());
        }
        Ok(())
    }
}
