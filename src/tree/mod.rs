//! The data tree: znodes, Stat, ACL ids, watches. Pure (no I/O), shared by every shard.
//!
//! Concurrency: nodes live in `STRIPES` lock stripes chosen by a hash of the full path. Shards
//! read with a stripe's read lock — there is no global lock on the read path. Only the replica
//! writes (`apply`): it write-locks every stripe a txn touches (in index order, so a multi is
//! atomic to readers, as ZooKeeper's CommitProcessor makes it), changes the nodes, and triggers
//! the watches *while still holding the locks*. A read that registers a watch does so under the
//! same stripe's lock, so it either sees the old node and its watch fires, or sees the new node.
//! And an event is queued to the watcher's shard before any reader can see the change.
//!
//! Semantics follow ZooKeeper 3.8's `DataTree` exactly, including two quirks clients can see:
//! the stored cversion counts child *creations* (sequential names come from it) while the Stat
//! shows `2 × stored − numChildren`; container and TTL nodes show ephemeralOwner 0.
//!
//! One module per concept: [`DataTree`], the stripes it keeps its nodes in, and the stripes a txn
//! holds write-locked (`Locked`) are here; reads (`read`), watches (`watch`), applying txns
//! (`apply`), quota bookkeeping (`quota`), loading a snapshot (`load`) and replacing the whole tree
//! in place (`replace`) each have a module, all of them `impl DataTree` blocks on its private
//! state.

pub mod acl_cache;
mod apply;
pub mod digest;
pub mod java_order;
mod load;
mod node;
pub mod quota;
mod read;
mod replace;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use smallvec::SmallVec;

use crate::proto::{Acl, Stat, StatPersisted};
use acl_cache::AclCache;
use java_order::JavaHashSet;
use node::{ChildList, NodePtr};
use watch::Watches;

pub use apply::{ApplyResult, OpOutcome};
pub use load::{LoadNode, LoadShares, LoadSlot, LoadTally, Preorder};
pub use read::{begin_observe, end_observe, Data, NodeMeta, Walk};
pub use watch::{WatchSink, WatcherId};

const STRIPES: usize = 256;
const _: () = assert!(STRIPES.is_power_of_two() && STRIPES <= 65536);

/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
const EXTENDED_VALUE_MASK: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

/// `EphemeralType` of an ephemeralOwner value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    Void,
    Normal,
    Container,
    Ttl(i64),
}

pub fn ephemeral_type(owner: i64) -> EphemeralType {
    if owner == CONTAINER_OWNER {
        EphemeralType::Container
    } else if owner & EXTENDED_MASK == EXTENDED_MASK && (owner & RESERVED_BITS_MASK) >> 40 == 0 {
        EphemeralType::Ttl(owner & EXTENDED_VALUE_MASK)
    } else if owner == 0 {
        EphemeralType::Void
    } else {
        EphemeralType::Normal
    }
}

/// `EphemeralType.TTL.toEphemeralOwner`.
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    EXTENDED_MASK | ttl_ms
}

/// Largest TTL ZooKeeper accepts.
pub const MAX_TTL_MS: i64 = EXTENDED_VALUE_MASK;

/// One stripe's nodes. The table holds 8-byte node pointers (the key is the path stored in the
/// node), which matters because hash tables run between 44% and 87% full.
#[derive(Default)]
struct NodeMap {
    table: hashbrown::HashTable<NodePtr>,
    /// The child lists of this stripe's nodes that have had a child, by node address.
    children: HashMap<usize, ChildList, ahash::RandomState>,
}

impl NodeMap {
    fn get(&self, path: &str) -> Option<NodePtr> {
        self.table.find(path_hash(path), |n| n.path() == path).copied()
    }

    fn insert(&mut self, n: NodePtr) {
        self.table.insert_unique(path_hash(n.path()), n, |m| path_hash(m.path()));
    }

    /// Inserts `n` unless a node with its path is there (one probe); false if one is.
    fn insert_new(&mut self, n: NodePtr) -> bool {
        let path = n.path();
        match self.table.entry(path_hash(path), |m| m.path() == path, |m| path_hash(m.path())) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(n);
                true
            }
        }
    }

    /// Takes a node out of the table (and its emptied child list); the caller frees it.
    fn remove(&mut self, path: &str) -> Option<NodePtr> {
        let n = match self.table.find_entry(path_hash(path), |n| n.path() == path) {
            Ok(e) => e.remove().0,
            Err(_) => return None,
        };
        if n.has_children_list() {
            // Empty unless a corrupt log deletes a parent first: its children then stay in their
            // tables, unlisted, as in ZooKeeper.
            self.children.remove(&n.addr());
        }
        Some(n)
    }

    /// After `old` was reallocated as `new`: repoints the table slot and the child-list key.
    fn repoint(&mut self, old: NodePtr, new: NodePtr) {
        let path = new.path();
        let slot =
            self.table.find_mut(path_hash(path), |n| *n == old).expect("reallocated node is in its stripe");
        *slot = new;
        if new.has_children_list() {
            if let Some(l) = self.children.remove(&old.addr()) {
                self.children.insert(new.addr(), l);
            }
        }
    }

    fn children_of(&self, n: NodePtr) -> Option<&ChildList> {
        if n.has_children_list() {
            self.children.get(&n.addr())
        } else {
            None
        }
    }

    fn child_list_mut(&mut self, n: NodePtr) -> &mut ChildList {
        n.set_has_children_list(true);
        self.children.entry(n.addr()).or_default()
    }

    fn num_children(&self, n: NodePtr) -> usize {
        self.children_of(n).map_or(0, ChildList::len)
    }

    fn stat(&self, n: NodePtr) -> Stat {
        n.stat(self.num_children(n))
    }

    /// Child names in ZooKeeper's order.
    fn ordered_names(&self, n: NodePtr) -> Vec<String> {
        self.children_of(n)
            .map_or_else(Vec::new, |l| l.ordered().iter().map(|c| c.name().to_owned()).collect())
    }

    /// Child paths in ZooKeeper's order.
    fn ordered_paths(&self, n: NodePtr) -> Vec<String> {
        self.children_of(n)
            .map_or_else(Vec::new, |l| l.ordered().iter().map(|c| c.path().to_owned()).collect())
    }
}

impl Drop for NodeMap {
    fn drop(&mut self) {
        for n in self.table.drain() {
            // SAFETY: each node is in exactly one table, and the tree is going away.
            unsafe { n.free() };
        }
    }
}

#[derive(Default)]
struct Stripe {
    nodes: RwLock<NodeMap>,
    watches: Mutex<Watches>,
}

/// The root, or `/name(/name)*` with no empty name: the only paths whose node the tree can
/// link to its parent (cut at the last '/') and find again from it. `//x` would be a child "x"
/// of the root stored at another path than "/x". ZooKeeper's clients can only make these
/// (`PathUtils.validatePath`); a txn or a snapshot that holds another came from elsewhere.
pub fn well_formed_path(path: &str) -> bool {
    path == "/" || (path.starts_with('/') && !path.ends_with('/') && !path.contains("//"))
}

pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

fn child_name(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

fn path_hash(path: &str) -> u64 {
    static HASHER: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(|| ahash::RandomState::with_seeds(1, 2, 3, 4)).hash_one(path)
}

/// The stripe takes hash bits 32..40: a stripe's table indexes by the low bits and tags by the
/// top 7, which then vary within a stripe.
fn stripe_of(path: &str) -> usize {
    ((path_hash(path) >> 32) as usize) & (STRIPES - 1)
}

pub struct DataTree {
    stripes: Box<[Stripe]>,
    acls: RwLock<AclCache>,
    /// Per session, in ZooKeeper's order (`new HashSet<String>()`; an emptied set is kept, as
    /// ZooKeeper keeps it, so its capacity stays).
    ephemerals: Mutex<HashMap<i64, JavaHashSet>>,
    containers: Mutex<BTreeSet<String>>,
    ttls: Mutex<BTreeSet<String>>,
    /// Paths with a `zookeeper_limits` node.
    quota_paths: RwLock<BTreeSet<String>>,
    recursive_watches: AtomicUsize,
    watch_count: AtomicUsize,
    last_zxid: AtomicI64,
    node_count: AtomicUsize,
    data_size: AtomicI64,
    /// Times the whole tree was replaced (`replace_with`): a fuzzy walk that saw it change
    /// mixed two trees.
    replacements: AtomicUsize,
    /// The sum of the nodes' digests (see `digest`), kept by every change.
    digest: AtomicU64,
    /// The digest after recent txns.
    digest_log: Mutex<digest::DigestLog>,
}

/// The stripes one txn holds, write-locked in index order.
struct Locked<'a> {
    idx: SmallVec<[usize; 4]>,
    guards: SmallVec<[RwLockWriteGuard<'a, NodeMap>; 4]>,
}

impl Locked<'_> {
    fn map(&mut self, path: &str) -> &mut NodeMap {
        let i = stripe_of(path);
        let pos = self.idx.binary_search(&i).expect("txn touched a stripe it did not lock");
        &mut self.guards[pos]
    }
    fn get(&mut self, path: &str) -> Option<NodePtr> {
        self.map(path).get(path)
    }

    /// Replaces a node's data; repoints the table, the parent's child list and the child-list
    /// key if the node had to be reallocated (its parent's stripe is locked: see `touched`).
    fn set_node_data(&mut self, n: NodePtr, data: Option<&[u8]>) -> NodePtr {
        let new = n.with_data(data);
        if new != n {
            let path = new.path();
            self.map(path).repoint(n, new);
            if path != "/" {
                let parent = parent_of(path);
                let m = self.map(parent);
                // No parent only for an orphan a corrupt log left (see `NodeMap::remove`).
                if let Some(l) = m.get(parent).filter(|p| p.has_children_list()) {
                    if let Some(l) = m.children.get_mut(&l.addr()) {
                        l.replace(n, new);
                    }
                }
            }
        }
        new
    }
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// An empty tree with only "/" (for loading a snapshot).
    pub fn new_empty() -> DataTree {
        let t = DataTree {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            acls: RwLock::new(AclCache::default()),
            ephemerals: Mutex::new(HashMap::new()),
            containers: Mutex::new(BTreeSet::new()),
            ttls: Mutex::new(BTreeSet::new()),
            quota_paths: RwLock::new(BTreeSet::new()),
            recursive_watches: AtomicUsize::new(0),
            watch_count: AtomicUsize::new(0),
            last_zxid: AtomicI64::new(0),
            node_count: AtomicUsize::new(0),
            data_size: AtomicI64::new(0),
            replacements: AtomicUsize::new(0),
            digest: AtomicU64::new(0),
            digest_log: Mutex::new(digest::DigestLog::default()),
        };
        // Empty data rather than none, as ZooKeeper's DataTree makes its root.
        t.raw_insert("/", Some(&b""[..]), acl_cache::OPEN_ACL_UNSAFE_ID, &StatPersisted::default())
            .expect("fresh tree");
        t
    }

    /// A fresh tree as ZooKeeper 3.8 creates one: `/`, `/zookeeper`, `/zookeeper/quota` (empty
    /// data), `/zookeeper/config` (world:anyone READ, aversion -1; see `init_config`).
    pub fn new() -> DataTree {
        let t = Self::new_empty();
        let st = StatPersisted::default();
        t.raw_insert("/zookeeper", Some(&b""[..]), acl_cache::OPEN_ACL_UNSAFE_ID, &st).expect("fresh tree");
        t.raw_insert("/zookeeper/quota", Some(&b""[..]), acl_cache::OPEN_ACL_UNSAFE_ID, &st)
            .expect("fresh tree");
        let read_only = t.acls.write().intern(&[Acl {
            perms: crate::proto::perms::READ,
            id: crate::proto::Id { scheme: "world".into(), id: "anyone".into() },
        }]);
        t.raw_insert("/zookeeper/config", Some(&b""[..]), read_only, &StatPersisted { aversion: -1, ..st })
            .expect("fresh tree");
        t.recompute_digest();
        t
    }

    /// The tree's digest (ZooKeeper's `DataTree.getTreeDigest`): one load.
    pub fn digest(&self) -> u64 {
        self.digest.load(Ordering::Acquire)
    }

    /// The zxid of the last applied txn and the digest after it (None before the first apply).
    pub fn last_zxid_digest(&self) -> Option<digest::ZxidDigest> {
        self.digest_log.lock().last
    }

    /// The digests after recent txns whose zxid is a multiple of 128, oldest first (ZooKeeper's
    /// `DataTree.getDigestLog`, which the `hash` command lists).
    pub fn digest_history(&self) -> Vec<digest::ZxidDigest> {
        self.digest_log.lock().history.iter().copied().collect()
    }

    /// Sums every node's digest afresh and keeps it (after building or loading a tree). Takes
    /// each stripe's read lock in turn: call it before the tree serves.
    pub fn recompute_digest(&self) -> u64 {
        let mut sum = 0u64;
        for s in self.stripes.iter() {
            let m = s.nodes.read();
            for n in m.table.iter() {
                sum = sum.wrapping_add(digest::of(*n));
            }
        }
        self.digest.store(sum, Ordering::Release);
        sum
    }

    /// A node is about to change: its digest leaves the tree's (`NodeHashMap.preChange`).
    fn digest_remove(&self, n: NodePtr) {
        self.digest.fetch_sub(digest::of(n), Ordering::AcqRel);
    }

    /// A node changed or arrived: its digest joins the tree's (`NodeHashMap.postChange`).
    fn digest_add(&self, n: NodePtr) {
        self.digest.fetch_add(digest::of(n), Ordering::AcqRel);
    }

    /// Files a new node (created or loaded) under what its owner makes it: a container, a TTL
    /// node, or one of a session's ephemerals.
    fn track_owner(&self, path: &str, owner: i64) {
        match ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.lock().insert(path.to_owned());
            }
            EphemeralType::Ttl(_) => {
                self.ttls.lock().insert(path.to_owned());
            }
            EphemeralType::Normal => {
                self.ephemerals
                    .lock()
                    .entry(owner)
                    .or_insert_with(|| JavaHashSet::with_capacity_log2(4))
                    .insert(path);
            }
            EphemeralType::Void => {}
        }
    }

    /// Inserts a node under an existing parent (building or loading the tree, before it serves).
    fn raw_insert(
        &self,
        path: &str,
        data: Option<&[u8]>,
        acl: i64,
        stat: &StatPersisted,
    ) -> Result<(), String> {
        if path.len() > node::MAX_PATH_LEN || data.is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
            return Err(format!("node {path} is too large"));
        }
        let (pi, ci) = (stripe_of(parent_of(path)), stripe_of(path));
        // Lock in index order, as `apply` does.
        let mut first = self.stripes[pi.min(ci)].nodes.write();
        let mut second = (pi != ci).then(|| self.stripes[pi.max(ci)].nodes.write());
        let (pmap, cmap) = match &mut second {
            None => (None, &mut *first),
            Some(s) if pi < ci => (Some(&mut *first), &mut **s),
            Some(s) => (Some(&mut **s), &mut *first),
        };
        let parent = if path == "/" {
            None
        } else {
            let pm: &NodeMap = match &pmap {
                Some(m) => m,
                None => cmap,
            };
            Some(pm.get(parent_of(path)).ok_or_else(|| format!("node {path} appears before its parent"))?)
        };
        if cmap.get(path).is_some() {
            return Err(format!("node {path} appears twice"));
        }
        let node = NodePtr::new(path, data, acl, stat);
        cmap.insert(node);
        if let Some(p) = parent {
            pmap.unwrap_or(cmap).child_list_mut(p).push(node);
        }
        self.node_count.fetch_add(1, Ordering::Relaxed);
        self.data_size.fetch_add(path.len() as i64 + data.map_or(0, |d| d.len() as i64), Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
