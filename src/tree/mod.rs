//! The data tree: znodes, Stat, ACL ids, watches. Pure (no I/O), shared by every shard.
//!
//! Concurrency: nodes live in `STRIPES` lock stripes chosen by a hash of the full path. Shards
//! read with a stripe's read lock — there is no global lock on the read path. Only the sequencer
//! writes (`apply`): it write-locks every stripe a txn touches (in index order, so a multi is
//! atomic to readers, as ZooKeeper's CommitProcessor makes it), changes the nodes, and triggers
//! the watches *while still holding the locks*. A read that registers a watch does so under the
//! same stripe's lock, so it either sees the old node and its watch fires, or sees the new node.
//! And an event is queued to the watcher's shard before any reader can see the change.
//!
//! Semantics follow ZooKeeper 3.8's `DataTree` exactly, including two quirks clients can see:
//! the stored cversion counts child *creations* (sequential names come from it) while the Stat
//! shows `2 × stored − numChildren`; container and TTL nodes show ephemeralOwner 0.

pub mod acl_cache;
pub mod java_order;
mod node;
pub mod quota;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use smallvec::SmallVec;

use crate::proto::{
    Acl, CreateTxn, ErrorCode, EventType, OpCode, Stat, StatPersisted, TxnBody, TxnHeader, WatcherType,
};
use acl_cache::AclCache;
use java_order::JavaHashSet;
use node::{ChildList, NodePtr};
use quota::{StatsTrack, LIMIT_NODE, QUOTA_ROOT, STAT_NODE};

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

/// A connection that set a watch: its shard and its id there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct WatcherId {
    pub shard: u16,
    pub conn: u64,
}

/// Receives fired watches. `apply` calls it while holding the changed path's lock. `acl` is the
/// ACL of the znode the event is about: the event reaches a connection only if that connection
/// may READ it (checked at delivery with the connection's current auth, as ZooKeeper does since
/// the CVE-2024-23944 fix, which Debian's 3.8 carries). An empty ACL means "no check".
pub trait WatchSink {
    fn deliver(&mut self, w: WatcherId, event: EventType, path: &str, acl: &Arc<Vec<Acl>>);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Standard,
    Persistent,
    Recursive,
}

type WatchList = SmallVec<[(WatcherId, Mode); 2]>;
/// A node's data as readers get it: copied out under the stripe's read lock (one memcpy; the
/// node and its data are one allocation, which a writer may replace once the lock is free).
pub type Data = Option<Vec<u8>>;

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
struct Watches {
    data: HashMap<Box<str>, WatchList, ahash::RandomState>,
    child: HashMap<Box<str>, WatchList, ahash::RandomState>,
}

#[derive(Default)]
struct Stripe {
    nodes: RwLock<NodeMap>,
    watches: Mutex<Watches>,
}

/// What a read needs to validate a write: the committed node's Stat and ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub stat: Stat,
    /// The stored (creation-counting) cversion: sequential suffixes come from it.
    pub stored_cversion: i32,
    pub acl: Arc<Vec<Acl>>,
}

/// Outcome of one applied (sub-)txn, as ZooKeeper's `ProcessTxnResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpOutcome {
    /// The txn type it was applied as (`OpCode::Error` for failed multi members).
    pub txn_type: i32,
    pub err: ErrorCode,
    pub path: Option<String>,
    pub stat: Option<Stat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    pub err: ErrorCode,
    /// The created node's path (creates only: the one reply that carries a path).
    pub path: Option<String>,
    pub stat: Option<Stat>,
    /// One per member of a multi.
    pub multi: Vec<OpOutcome>,
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

thread_local! {
    /// The highest "last applied zxid" seen under a stripe lock by reads since `begin_observe`
    /// (a request's last read is the one that returns data and registers its watch).
    static OBSERVED: std::cell::Cell<i64> = const { std::cell::Cell::new(i64::MIN) };
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
        };
        t.raw_insert("/", None, acl_cache::OPEN_ACL_UNSAFE_ID, &StatPersisted::default())
            .expect("fresh tree");
        t
    }

    /// A fresh tree as ZooKeeper 3.8 creates one: `/`, `/zookeeper`, `/zookeeper/quota`,
    /// `/zookeeper/config` (world:anyone READ, aversion -1).
    pub fn new() -> DataTree {
        let t = Self::new_empty();
        let st = StatPersisted::default();
        t.raw_insert("/zookeeper", None, acl_cache::OPEN_ACL_UNSAFE_ID, &st).expect("fresh tree");
        t.raw_insert("/zookeeper/quota", None, acl_cache::OPEN_ACL_UNSAFE_ID, &st).expect("fresh tree");
        let read_only = t.acls.write().intern(&[Acl {
            perms: crate::proto::perms::READ,
            id: crate::proto::Id { scheme: "world".into(), id: "anyone".into() },
        }]);
        t.raw_insert("/zookeeper/config", Some(&b""[..]), read_only, &StatPersisted { aversion: -1, ..st })
            .expect("fresh tree");
        t
    }

    /// Inserts a node under an existing parent; false (nothing inserted) if the parent is missing.
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

    fn read(&self, path: &str) -> RwLockReadGuard<'_, NodeMap> {
        let g = self.stripes[stripe_of(path)].nodes.read();
        // Every txn that changed this stripe before we locked it has published its zxid; every
        // txn that will change it (and fire a watch registered now) gets a larger one.
        let z = self.last_zxid.load(Ordering::Acquire);
        OBSERVED.with(|o| o.set(o.get().max(z)));
        g
    }

    fn add_watch(
        &self,
        table: &mut HashMap<Box<str>, WatchList, ahash::RandomState>,
        path: &str,
        w: WatcherId,
        mode: Mode,
    ) {
        let list = table.entry(path.into()).or_default();
        match list.iter_mut().find(|(x, _)| *x == w) {
            Some(e) => {
                if e.1 == Mode::Recursive && mode != Mode::Recursive {
                    self.recursive_watches.fetch_sub(1, Ordering::Relaxed);
                } else if e.1 != Mode::Recursive && mode == Mode::Recursive {
                    self.recursive_watches.fetch_add(1, Ordering::Relaxed);
                }
                e.1 = mode;
            }
            None => {
                if mode == Mode::Recursive {
                    self.recursive_watches.fetch_add(1, Ordering::Relaxed);
                }
                self.watch_count.fetch_add(1, Ordering::Relaxed);
                list.push((w, mode));
            }
        }
    }

    // ---------------------------------------------------------------- reads

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

    // ---------------------------------------------------------------- watches

    /// Every data watch as (path, watchers), taking one stripe's watch lock at a time (the
    /// `wchc`/`wchp`/`wchs` words; ZooKeeper reports its data-watch table there). Persistent
    /// watches are in this table too.
    pub fn data_watches(&self) -> Vec<(String, Vec<WatcherId>)> {
        let mut out = Vec::new();
        for st in self.stripes.iter() {
            let ws = st.watches.lock();
            out.extend(ws.data.iter().map(|(p, l)| (p.to_string(), l.iter().map(|(w, _)| *w).collect())));
        }
        out
    }

    pub fn add_persistent_watch(&self, path: &str, recursive: bool, w: WatcherId) {
        let _nodes = self.read(path);
        let mode = if recursive { Mode::Recursive } else { Mode::Persistent };
        let mut ws = self.stripes[stripe_of(path)].watches.lock();
        // As ZooKeeper's DataTree.addWatch: in both tables.
        let ws = &mut *ws;
        self.add_watch(&mut ws.data, path, w, mode);
        self.add_watch(&mut ws.child, path, w, mode);
    }

    fn matches(mode: Mode, ty: WatcherType) -> bool {
        match ty {
            WatcherType::Any | WatcherType::Data | WatcherType::Children => true,
            WatcherType::Persistent => mode == Mode::Persistent,
            WatcherType::PersistentRecursive => mode == Mode::Recursive,
        }
    }

    fn tables(ty: WatcherType) -> (bool, bool) {
        match ty {
            WatcherType::Children => (false, true),
            WatcherType::Data => (true, false),
            _ => (true, true),
        }
    }

    pub fn check_watches(&self, path: &str, ty: WatcherType, w: WatcherId) -> bool {
        let _nodes = self.read(path);
        let ws = self.stripes[stripe_of(path)].watches.lock();
        let (d, c) = Self::tables(ty);
        let has = |t: &HashMap<Box<str>, WatchList, ahash::RandomState>| {
            t.get(path).is_some_and(|l| l.iter().any(|(x, m)| *x == w && Self::matches(*m, ty)))
        };
        (d && has(&ws.data)) || (c && has(&ws.child))
    }

    /// Removes the watches of `w` on `path` of type `ty`; false if there were none.
    pub fn remove_watches(&self, path: &str, ty: WatcherType, w: WatcherId) -> bool {
        let _nodes = self.read(path);
        let mut ws = self.stripes[stripe_of(path)].watches.lock();
        let (d, c) = Self::tables(ty);
        let mut removed = false;
        let ws = &mut *ws;
        for (use_it, table) in [(d, &mut ws.data), (c, &mut ws.child)] {
            if !use_it {
                continue;
            }
            if let Some(l) = table.get_mut(path) {
                let before = l.len();
                l.retain(|(x, m)| {
                    let hit = *x == w && Self::matches(*m, ty);
                    if hit && *m == Mode::Recursive {
                        self.recursive_watches.fetch_sub(1, Ordering::Relaxed);
                    }
                    !hit
                });
                let n = before - l.len();
                if n > 0 {
                    removed = true;
                    self.watch_count.fetch_sub(n, Ordering::Relaxed);
                }
                if l.is_empty() {
                    table.remove(path);
                }
            }
        }
        removed
    }

    /// Drops every watch of a closed connection on the given paths (the shard tracks which
    /// paths each connection watched, so this never scans the whole tree).
    pub fn remove_watcher<'a>(&self, w: WatcherId, paths: impl IntoIterator<Item = &'a str>) {
        for p in paths {
            self.remove_watches(p, WatcherType::Any, w);
        }
    }

    /// ZooKeeper's `DataTree.setWatches` (a reconnecting client re-registers its watches; those
    /// whose node changed since `relative_zxid` fire at once).
    #[allow(clippy::too_many_arguments)]
    pub fn set_watches(
        &self,
        relative_zxid: i64,
        data: &[String],
        exist: &[String],
        child: &[String],
        persistent: &[String],
        recursive: &[String],
        w: WatcherId,
        sink: &mut dyn WatchSink,
    ) {
        // Immediate events of setWatches are not filtered by ACL (ZooKeeper passes none).
        let no_acl: Arc<Vec<Acl>> = Arc::new(Vec::new());
        for p in data {
            let nodes = self.read(p);
            match nodes.get(p.as_str()) {
                None => sink.deliver(w, EventType::NodeDeleted, p, &no_acl),
                Some(n) if n.mzxid() > relative_zxid => {
                    sink.deliver(w, EventType::NodeDataChanged, p, &no_acl)
                }
                Some(_) => {
                    let mut ws = self.stripes[stripe_of(p)].watches.lock();
                    self.add_watch(&mut ws.data, p, w, Mode::Standard);
                }
            }
        }
        for p in exist {
            let nodes = self.read(p);
            if nodes.get(p.as_str()).is_some() {
                sink.deliver(w, EventType::NodeCreated, p, &no_acl);
            } else {
                let mut ws = self.stripes[stripe_of(p)].watches.lock();
                self.add_watch(&mut ws.data, p, w, Mode::Standard);
            }
        }
        for p in child {
            let nodes = self.read(p);
            match nodes.get(p.as_str()) {
                None => sink.deliver(w, EventType::NodeDeleted, p, &no_acl),
                Some(n) if n.pzxid() > relative_zxid => {
                    sink.deliver(w, EventType::NodeChildrenChanged, p, &no_acl)
                }
                Some(_) => {
                    let mut ws = self.stripes[stripe_of(p)].watches.lock();
                    self.add_watch(&mut ws.child, p, w, Mode::Standard);
                }
            }
        }
        for p in persistent {
            self.add_persistent_watch(p, false, w);
        }
        for p in recursive {
            self.add_persistent_watch(p, true, w);
        }
    }

    /// ZooKeeper's `WatchManager.triggerWatch`. Returns who fired.
    fn trigger(
        &self,
        child_table: bool,
        path: &str,
        event: EventType,
        suppress: &[WatcherId],
        acl: &Arc<Vec<Acl>>,
        sink: &mut dyn WatchSink,
    ) -> SmallVec<[WatcherId; 4]> {
        let mut fired: SmallVec<[WatcherId; 4]> = SmallVec::new();
        let walk_parents = self.recursive_watches.load(Ordering::Relaxed) > 0;
        let mut local = path;
        loop {
            let at_parent = local != path;
            let mut ws = self.stripes[stripe_of(local)].watches.lock();
            let table = if child_table { &mut ws.child } else { &mut ws.data };
            if let Some(list) = table.get_mut(local) {
                let mut removed = 0;
                list.retain(|(w, mode)| {
                    let keep = match mode {
                        Mode::Recursive => {
                            if event != EventType::NodeChildrenChanged && !fired.contains(w) {
                                fired.push(*w);
                            }
                            true
                        }
                        _ if !at_parent => {
                            if !fired.contains(w) {
                                fired.push(*w);
                            }
                            *mode == Mode::Persistent
                        }
                        _ => true,
                    };
                    if !keep {
                        removed += 1;
                    }
                    keep
                });
                if removed > 0 {
                    self.watch_count.fetch_sub(removed, Ordering::Relaxed);
                }
                if list.is_empty() {
                    table.remove(local);
                }
            }
            drop(ws);
            if !walk_parents || local == "/" {
                break;
            }
            local = parent_of(local);
        }
        for w in &fired {
            if !suppress.contains(w) {
                sink.deliver(*w, event, path, acl);
            }
        }
        fired
    }

    // ---------------------------------------------------------------- writes

    fn quota_prefix(&self, path: &str) -> Option<String> {
        let q = self.quota_paths.read();
        if q.is_empty() {
            return None;
        }
        let mut best: Option<&String> = None;
        for p in q.iter() {
            let hit = path == p
                || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
                || p == "/";
            if hit && best.is_none_or(|b| p.len() > b.len()) {
                best = Some(p);
            }
        }
        best.filter(|b| b.as_str() != "/zookeeper").cloned()
    }

    /// The stripes of every path a txn may touch (for locking): targets, parents, quota stat
    /// nodes. Stripe numbers, not paths: no copy of a path on the write path.
    fn touched(&self, hdr: &TxnHeader, body: &TxnBody, out: &mut SmallVec<[usize; 4]>) {
        let add = |p: &str, out: &mut SmallVec<[usize; 4]>| {
            out.push(stripe_of(p));
            if p != "/" {
                out.push(stripe_of(parent_of(p)));
            }
            if let Some(q) = self.quota_prefix(p) {
                let stat = quota::quota_node(&q, STAT_NODE);
                // Its parent too: rewriting the stats may reallocate the node.
                out.push(stripe_of(parent_of(&stat)));
                out.push(stripe_of(&stat));
            }
            // Creating a limits/stats node changes the quota bookkeeping of the quota'd path.
            if p.starts_with(QUOTA_ROOT) {
                let name = child_name(p);
                if name == STAT_NODE || name == LIMIT_NODE {
                    out.push(stripe_of(&format!("{}/{STAT_NODE}", parent_of(p))));
                }
            }
        };
        match body {
            TxnBody::Create(t) => add(&t.path, out),
            TxnBody::CreateContainer(t) => add(&t.path, out),
            TxnBody::CreateTtl(t) => add(&t.path, out),
            TxnBody::Delete(t) => add(&t.path, out),
            TxnBody::SetData(t) => add(&t.path, out),
            TxnBody::SetAcl(t) => add(&t.path, out),
            TxnBody::Check(t) => add(&t.path, out),
            TxnBody::CloseSession(t) => {
                let paths = if t.paths2_delete.is_empty() {
                    self.ephemerals(hdr.client_id)
                } else {
                    t.paths2_delete.clone()
                };
                for p in &paths {
                    add(p, out);
                }
            }
            TxnBody::Multi(ops) => {
                for (_, b) in ops {
                    self.touched(hdr, b, out);
                }
            }
            _ => {}
        }
    }

    /// Applies one logged txn, as ZooKeeper's `DataTree.processTxn`. Only the sequencer (and
    /// recovery) call this, one txn at a time.
    pub fn apply(&self, hdr: &TxnHeader, body: &TxnBody, sink: &mut dyn WatchSink) -> ApplyResult {
        let mut idx = SmallVec::<[usize; 4]>::new();
        self.touched(hdr, body, &mut idx);
        idx.sort_unstable();
        idx.dedup();
        let guards = idx.iter().map(|i| self.stripes[*i].nodes.write()).collect();
        let mut locked = Locked { idx, guards };
        let r = self.apply_locked(&mut locked, hdr, body, sink);
        // Publish before the locks drop: a read that sees the change reports this zxid or later.
        self.last_zxid.fetch_max(hdr.zxid, Ordering::AcqRel);
        drop(locked);
        r
    }

    fn apply_locked(
        &self,
        l: &mut Locked<'_>,
        hdr: &TxnHeader,
        body: &TxnBody,
        sink: &mut dyn WatchSink,
    ) -> ApplyResult {
        let mut r = ApplyResult { err: ErrorCode::Ok, path: None, stat: None, multi: Vec::new() };
        let res = match body {
            TxnBody::Create(t) => {
                r.path = Some(t.path.clone());
                let owner = if t.ephemeral { hdr.client_id } else { 0 };
                self.create_node(l, t, owner, hdr, sink)
            }
            TxnBody::CreateContainer(t) => {
                r.path = Some(t.path.clone());
                let c = CreateTxn {
                    path: t.path.clone(),
                    data: t.data.clone(),
                    acl: t.acl.clone(),
                    ephemeral: false,
                    parent_c_version: t.parent_c_version,
                };
                self.create_node(l, &c, CONTAINER_OWNER, hdr, sink)
            }
            TxnBody::CreateTtl(t) => {
                r.path = Some(t.path.clone());
                let c = CreateTxn {
                    path: t.path.clone(),
                    data: t.data.clone(),
                    acl: t.acl.clone(),
                    ephemeral: false,
                    parent_c_version: t.parent_c_version,
                };
                self.create_node(l, &c, ttl_owner(t.ttl), hdr, sink)
            }
            TxnBody::Delete(t) => self.delete_node(l, &t.path, hdr.zxid, sink).map(|_| None),
            TxnBody::SetData(t) => {
                self.set_data(l, &t.path, t.data.as_deref(), t.version, hdr, sink).map(Some)
            }
            TxnBody::SetAcl(t) => self.set_acl(l, &t.path, &t.acl, t.version).map(Some),
            TxnBody::Check(_) => Ok(None),
            TxnBody::CloseSession(t) => {
                let paths = if t.paths2_delete.is_empty() {
                    self.ephemerals(hdr.client_id)
                } else {
                    t.paths2_delete.clone()
                };
                for p in paths {
                    // Already gone (e.g. replay over a fuzzy snapshot): nothing to do.
                    let _ = self.delete_node(l, &p, hdr.zxid, sink);
                }
                self.ephemerals.lock().remove(&hdr.client_id);
                Ok(None)
            }
            TxnBody::Error(e) => Err(ErrorCode::from_i32(e.err).unwrap_or(ErrorCode::SystemError)),
            TxnBody::Multi(ops) => {
                let failed = ops.iter().any(|(ty, _)| *ty == OpCode::Error as i32);
                let mut post_failed = false;
                for (ty, b) in ops {
                    let (ty, sub) = if failed && *ty != OpCode::Error as i32 {
                        // A failed multi applies nothing: members before the failure report Ok,
                        // as ZooKeeper rewrites them.
                        (
                            OpCode::Error as i32,
                            TxnBody::Error(crate::proto::ErrorTxn {
                                err: if post_failed { ErrorCode::RuntimeInconsistency as i32 } else { 0 },
                            }),
                        )
                    } else {
                        if *ty == OpCode::Error as i32 {
                            post_failed = true;
                        }
                        (*ty, b.clone())
                    };
                    let sub_hdr = TxnHeader { txn_type: ty, ..hdr.clone() };
                    let sr = self.apply_locked(l, &sub_hdr, &sub, sink);
                    if sr.err != ErrorCode::Ok && r.err == ErrorCode::Ok {
                        r.err = sr.err;
                    }
                    r.multi.push(OpOutcome { txn_type: ty, err: sr.err, path: sr.path, stat: sr.stat });
                }
                Ok(None)
            }
            TxnBody::CreateSession(_) | TxnBody::Other(_) => Ok(None),
        };
        match res {
            Ok(stat) => {
                if stat.is_some() {
                    r.stat = stat;
                }
            }
            Err(e) => r.err = e,
        }
        r
    }

    fn create_node(
        &self,
        l: &mut Locked<'_>,
        t: &CreateTxn,
        owner: i64,
        hdr: &TxnHeader,
        sink: &mut dyn WatchSink,
    ) -> Result<Option<Stat>, ErrorCode> {
        let path = t.path.as_str();
        if path == "/" || !path.starts_with('/') {
            return Err(ErrorCode::BadArguments);
        }
        let parent = parent_of(path);
        let name = child_name(path);
        let zxid = hdr.zxid;
        if path.len() > node::MAX_PATH_LEN || t.data.as_ref().is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
            return Err(ErrorCode::BadArguments);
        }
        let p = l.get(parent).ok_or(ErrorCode::NoNode)?;
        // A node is in its parent's child list exactly when it is in its stripe's table.
        if l.get(path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let parent_acl_id = p.acl();
        let mut pcv = t.parent_c_version;
        if pcv == -1 {
            pcv = p.cversion() + 1;
        }
        // Replays over a fuzzy snapshot may see a parent that is already newer.
        if pcv > p.cversion() {
            p.set_child_change(pcv, zxid);
        }
        let acl = self.acls.write().intern(&t.acl);
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: hdr.time,
            mtime: hdr.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        };
        let bytes = t.data.as_ref().map_or(0, |d| d.len() as i64);
        let node = NodePtr::new(path, t.data.as_deref(), acl, &stat);
        let out = node.stat(0);
        l.map(path).insert(node);
        l.map(parent).child_list_mut(p).push(node);
        self.node_count.fetch_add(1, Ordering::Relaxed);
        self.data_size.fetch_add(path.len() as i64 + bytes, Ordering::Relaxed);
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
        // Quota bookkeeping (ZooKeeper: the limits node registers the path; the stats node gets
        // the current totals).
        if let Some(quoted) = parent.strip_prefix(QUOTA_ROOT) {
            let quoted = if quoted.is_empty() { "/" } else { quoted };
            if name == LIMIT_NODE {
                self.quota_paths.write().insert(quoted.to_owned());
            }
            if name == STAT_NODE {
                self.refresh_quota_stats(l, quoted);
            }
        }
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, bytes, 1);
        }
        let (node_acl, parent_acl) = {
            let a = self.acls.read();
            (a.get(acl), a.get(parent_acl_id))
        };
        self.trigger(false, path, EventType::NodeCreated, &[], &node_acl, sink);
        self.trigger(true, parent, EventType::NodeChildrenChanged, &[], &parent_acl, sink);
        Ok(Some(out))
    }

    fn delete_node(
        &self,
        l: &mut Locked<'_>,
        path: &str,
        zxid: i64,
        sink: &mut dyn WatchSink,
    ) -> Result<(), ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::BadArguments);
        }
        let parent = parent_of(path);
        // As ZooKeeper: the parent's pzxid moves even if the child is already gone (replay over a
        // fuzzy snapshot).
        let p = l.get(parent).ok_or(ErrorCode::NoNode)?;
        let parent_acl_id = p.acl();
        if zxid > p.pzxid() {
            p.set_pzxid(zxid);
        }
        let node = l.map(path).remove(path).ok_or(ErrorCode::NoNode)?;
        l.map(parent).child_list_mut(p).remove(node);
        let (node_acl, parent_acl) = {
            let a = self.acls.read();
            (a.get(node.acl()), a.get(parent_acl_id))
        };
        self.acls.write().remove_usage(node.acl());
        let bytes = node.data_len() as i64;
        let owner = node.owner();
        // SAFETY: out of its table and its parent's list, under both stripes' write locks.
        unsafe { node.free() };
        self.node_count.fetch_sub(1, Ordering::Relaxed);
        self.data_size.fetch_sub(path.len() as i64 + bytes, Ordering::Relaxed);
        match ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.lock().remove(path);
            }
            EphemeralType::Ttl(_) => {
                self.ttls.lock().remove(path);
            }
            EphemeralType::Normal => {
                let mut e = self.ephemerals.lock();
                if let Some(s) = e.get_mut(&owner) {
                    s.remove(path);
                }
            }
            EphemeralType::Void => {}
        }
        if parent.starts_with(QUOTA_ROOT) && child_name(path) == LIMIT_NODE {
            let quoted = &parent[QUOTA_ROOT.len()..];
            self.quota_paths.write().remove(if quoted.is_empty() { "/" } else { quoted });
        }
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, -bytes, -1);
        }
        let fired = self.trigger(false, path, EventType::NodeDeleted, &[], &node_acl, sink);
        self.trigger(true, path, EventType::NodeDeleted, &fired, &node_acl, sink);
        self.trigger(true, parent, EventType::NodeChildrenChanged, &[], &parent_acl, sink);
        Ok(())
    }

    fn set_data(
        &self,
        l: &mut Locked<'_>,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        hdr: &TxnHeader,
        sink: &mut dyn WatchSink,
    ) -> Result<Stat, ErrorCode> {
        let (old, new, stat, acl_id) = {
            let n = l.get(path).ok_or(ErrorCode::NoNode)?;
            if data.is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
                return Err(ErrorCode::BadArguments);
            }
            let old = n.data_len() as i64;
            let n = l.set_node_data(n, data);
            n.set_modified(hdr.zxid, hdr.time, version);
            (old, n.data_len() as i64, l.map(path).stat(n), n.acl())
        };
        self.data_size.fetch_add(new - old, Ordering::Relaxed);
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, new - old, 0);
        }
        let acl = self.acls.read().get(acl_id);
        self.trigger(false, path, EventType::NodeDataChanged, &[], &acl, sink);
        Ok(stat)
    }

    fn set_acl(&self, l: &mut Locked<'_>, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let new_id = self.acls.write().intern(acl);
        let n = match l.get(path) {
            Some(n) => n,
            None => {
                self.acls.write().remove_usage(new_id);
                return Err(ErrorCode::NoNode);
            }
        };
        let old = n.acl();
        n.set_acl(new_id, version);
        let st = l.map(path).stat(n);
        self.acls.write().remove_usage(old);
        Ok(st)
    }

    /// Adds to `/zookeeper/quota<q>/zookeeper_stats` without changing its Stat (as ZooKeeper).
    fn update_quota_stat(&self, l: &mut Locked<'_>, q: &str, bytes: i64, count: i64) {
        let stat_path = quota::quota_node(q, STAT_NODE);
        let limit_path = quota::quota_node(q, LIMIT_NODE);
        let Some(n) = l.get(&stat_path) else { return };
        let mut st = StatsTrack::parse(n.data().unwrap_or(&[]));
        st.set("count", st.count() + count);
        st.set("bytes", st.bytes() + bytes);
        l.set_node_data(n, Some(st.to_text().as_bytes()));
        let (count_now, bytes_now) = (st.count(), st.bytes());
        // Soft limits only warn (hard limits are enforced in prep).
        if let Ok(limits) = self.read_other(l, &limit_path) {
            let lim = StatsTrack::parse(&limits);
            if lim.count() > -1 && count_now > lim.count() {
                tracing::warn!("Quota exceeded: {q} [count={count_now} limit={}]", lim.count());
            }
            if lim.bytes() > -1 && bytes_now > lim.bytes() {
                tracing::warn!("Quota exceeded: {q} [bytes={bytes_now} limit={}]", lim.bytes());
            }
        }
    }

    /// Recomputes a quota'd subtree's totals into its stats node (when the stats node appears).
    fn refresh_quota_stats(&self, l: &mut Locked<'_>, q: &str) {
        let mut count = 0i64;
        let mut bytes = 0i64;
        let mut stack = vec![q.to_owned()];
        while let Some(p) = stack.pop() {
            let info = match self.read_node_info(l, &p) {
                Some(i) => i,
                None => continue,
            };
            count += 1;
            bytes += info.0;
            stack.extend(info.1);
        }
        let stat_path = quota::quota_node(q, STAT_NODE);
        if let Some(n) = l.get(&stat_path) {
            let mut st = StatsTrack::parse(n.data().unwrap_or(&[]));
            st.set("count", count);
            st.set("bytes", bytes);
            l.set_node_data(n, Some(st.to_text().as_bytes()));
        }
    }

    /// Reads a node (data length, child paths) that may sit in a stripe this txn did not lock.
    fn read_node_info(&self, l: &mut Locked<'_>, path: &str) -> Option<(i64, Vec<String>)> {
        let f = |m: &NodeMap, n: NodePtr| (n.data_len() as i64, m.ordered_paths(n));
        let i = stripe_of(path);
        if l.idx.binary_search(&i).is_ok() {
            let m = l.map(path);
            m.get(path).map(|n| f(m, n))
        } else {
            let m = self.stripes[i].nodes.read();
            m.get(path).map(|n| f(&m, n))
        }
    }

    fn read_other(&self, l: &mut Locked<'_>, path: &str) -> Result<Vec<u8>, ()> {
        let i = stripe_of(path);
        let data = if l.idx.binary_search(&i).is_ok() {
            l.get(path).map(|n| n.data().unwrap_or(&[]).to_vec())
        } else {
            self.stripes[i].nodes.read().get(path).map(|n| n.data().unwrap_or(&[]).to_vec())
        };
        data.ok_or(())
    }

    /// The hard limits (count, bytes) and current totals of the quota covering `path`, for
    /// prep's QuotaExceeded check: (quota path, limits, stats).
    pub fn quota_for(&self, path: &str) -> Option<(String, StatsTrack, StatsTrack)> {
        let q = self.quota_prefix(path)?;
        let read = |p: &str| self.read(p).get(p).map(|n| StatsTrack::parse(n.data().unwrap_or(&[])));
        let limits = read(&quota::quota_node(&q, LIMIT_NODE))?;
        let stats = read(&quota::quota_node(&q, STAT_NODE)).unwrap_or_default();
        Some((q, limits, stats))
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

    // ---------------------------------------------------------------- snapshots

    /// Walks every node parent-before-child (ZooKeeper serializes depth-first from the root,
    /// whose path is written as ""). Fuzzy: each node is read under its own stripe lock.
    pub fn for_each_node(&self, mut f: impl FnMut(&str, Option<&[u8]>, i64, &StatPersisted)) {
        let mut stack = vec![String::from("/")];
        // The data is copied out under the lock (a writer may replace the node once it is free)
        // into one reused buffer.
        let mut buf = Vec::new();
        while let Some(p) = stack.pop() {
            let (has_data, acl, stat) = {
                let nodes = self.read(&p);
                let Some(n) = nodes.get(p.as_str()) else { continue };
                buf.clear();
                buf.extend_from_slice(n.data().unwrap_or(&[]));
                let children = nodes.ordered_paths(n);
                stack.extend(children.into_iter().rev());
                (n.data().is_some(), n.acl(), n.stat_persisted())
            };
            let stored = if p == "/" { "" } else { p.as_str() };
            f(stored, has_data.then_some(&buf[..]), acl, &stat);
        }
    }

    pub fn acl_cache_export(&self) -> Vec<(i64, Vec<Acl>)> {
        self.acls.read().export()
    }
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
            debug_assert_eq!(slot.node as usize, stripe_of(path), "slot of {path}");
            let Some(g) = guards[slot.node as usize].as_mut() else { continue };
            if n.data.is_some_and(|d| d.len() > node::MAX_DATA_LEN) || path.len() > node::MAX_PATH_LEN {
                return Err(format!("node {path} is too large"));
            }
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
        if parent.starts_with(QUOTA_ROOT) && child_name(path) == LIMIT_NODE {
            let quoted = &parent[QUOTA_ROOT.len()..];
            self.quota_paths.write().insert(if quoted.is_empty() { "/" } else { quoted }.to_owned());
        }
    }

    /// Ends a snapshot load: the tree is as of `zxid`.
    pub fn finish_load(&self, zxid: i64) -> Result<(), String> {
        self.acls.write().purge_unused();
        self.last_zxid.store(zxid, Ordering::Release);
        if self.read("/zookeeper").get("/zookeeper").is_none() {
            return Err("snapshot has no /zookeeper node".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
