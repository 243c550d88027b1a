//! One allocation per znode: `[Header | ephemeral owner? | path | data]`, reached through a thin
//! pointer (`NodePtr`, 8 bytes). The stripe table holds these pointers and finds a node by
//! hashing the path stored in it; a parent's child list holds its children's pointers and reads
//! their names from them. At 1M znodes of 100 bytes this is one malloc chunk of 208 bytes per
//! znode instead of a boxed node, an `Arc` for the data and two copies of the name.
//!
//! Access rules (what makes the raw pointer use sound; `DataTree` keeps them):
//! - A node's stat, ACL, data and `HAS_CHILDREN` bit are read under its stripe's lock (read or
//!   write) and written only under its write lock.
//! - Its `seq` and `index` (position in the parent's child list) are read and written only under
//!   the *parent's* stripe lock; they are atomics because a thread holding the node's own stripe
//!   lock may read other fields of the same allocation meanwhile.
//! - Its path never changes. The allocation is freed or replaced (data of another length) only
//!   by a txn that write-locks both the node's and its parent's stripes, so a pointer found in a
//!   table or a child list stays valid while the lock it was found under is held.
//! - No `&Header` or `&mut Header` is ever made: fields are read and written through raw place
//!   expressions, so concurrent accesses to *different* fields never alias a reference.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::java_order;
use crate::proto::{Stat, StatPersisted};

#[repr(C)]
struct Header {
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
    pzxid: i64,
    acl: i64,
    version: i32,
    /// The stored (creation-counting) cversion.
    cversion: i32,
    aversion: i32,
    /// Insertion sequence number in the parent's child list (Java HashSet order).
    seq: AtomicU32,
    /// Position in the parent's child list.
    index: AtomicU32,
    /// `NO_DATA` for a null data (ZooKeeper distinguishes null from empty on the wire).
    data_len: u32,
    /// Path length | `HAS_OWNER` | `HAS_CHILDREN`.
    meta: AtomicU32,
}

/// Where the variable part starts (the struct's own size is rounded up to 8).
const TAIL: usize = std::mem::offset_of!(Header, meta) + 4;
const NO_DATA: u32 = u32::MAX;
const HAS_OWNER: u32 = 1 << 31;
const HAS_CHILDREN: u32 = 1 << 30;
const LEN_MASK: u32 = HAS_CHILDREN - 1;
/// Longest path a node can have (a request frame is far shorter).
pub const MAX_PATH_LEN: usize = LEN_MASK as usize;
/// Longest data a node can have.
pub const MAX_DATA_LEN: usize = (NO_DATA - 1) as usize;

/// A node. Copyable like a reference; see the module docs for when it may be dereferenced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NodePtr(NonNull<Header>);

// The pointee is only reached under the stripe locks, as the module docs say.
unsafe impl Send for NodePtr {}
unsafe impl Sync for NodePtr {}

fn layout(path_len: usize, owner: bool, data_len: usize) -> Layout {
    let size = TAIL + if owner { 8 } else { 0 } + path_len + data_len;
    Layout::from_size_align(size.max(std::mem::size_of::<Header>()), 8).expect("node layout")
}

impl NodePtr {
    /// A new node (seq and index 0; `set_position` places it in the parent's list).
    /// The caller checked `path.len() <= MAX_PATH_LEN` and the data length.
    pub fn new(path: &str, data: Option<&[u8]>, acl: i64, stat: &StatPersisted) -> NodePtr {
        assert!(path.len() <= MAX_PATH_LEN, "path of {} bytes", path.len());
        let dlen = data.map_or(0, |d| d.len());
        assert!(dlen <= MAX_DATA_LEN, "data of {dlen} bytes");
        let owner = stat.ephemeral_owner != 0;
        let lay = layout(path.len(), owner, dlen);
        // SAFETY: the layout is non-zero; every header field and the tail are written before the
        // pointer is handed out.
        unsafe {
            let p = alloc(lay) as *mut Header;
            if p.is_null() {
                handle_alloc_error(lay);
            }
            p.write(Header {
                czxid: stat.czxid,
                mzxid: stat.mzxid,
                ctime: stat.ctime,
                mtime: stat.mtime,
                pzxid: stat.pzxid,
                acl,
                version: stat.version,
                cversion: stat.cversion,
                aversion: stat.aversion,
                seq: AtomicU32::new(0),
                index: AtomicU32::new(0),
                data_len: data.map_or(NO_DATA, |d| d.len() as u32),
                meta: AtomicU32::new(path.len() as u32 | if owner { HAS_OWNER } else { 0 }),
            });
            let mut tail = (p as *mut u8).add(TAIL);
            if owner {
                (tail as *mut i64).write_unaligned(stat.ephemeral_owner);
                tail = tail.add(8);
            }
            std::ptr::copy_nonoverlapping(path.as_ptr(), tail, path.len());
            if let Some(d) = data {
                std::ptr::copy_nonoverlapping(d.as_ptr(), tail.add(path.len()), d.len());
            }
            NodePtr(NonNull::new_unchecked(p))
        }
    }

    fn h(self) -> *mut Header {
        self.0.as_ptr()
    }

    fn meta(self) -> u32 {
        // SAFETY: the node is live (module rules).
        unsafe { (*self.h()).meta.load(Ordering::Relaxed) }
    }

    fn tail(self) -> *mut u8 {
        let skip = if self.meta() & HAS_OWNER != 0 { 8 } else { 0 };
        // SAFETY: within the allocation (layout()).
        unsafe { (self.h() as *mut u8).add(TAIL + skip) }
    }

    fn path_len(self) -> usize {
        (self.meta() & LEN_MASK) as usize
    }

    /// The full path (immutable for the node's life).
    pub fn path<'a>(self) -> &'a str {
        // SAFETY: written from a &str at creation, never changed; the caller holds a lock that
        // keeps the node alive for as long as it uses the result.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.tail(), self.path_len())) }
    }

    /// The last path component.
    pub fn name<'a>(self) -> &'a str {
        let p = self.path();
        &p[p.rfind('/').map_or(0, |i| i + 1)..]
    }

    pub fn data<'a>(self) -> Option<&'a [u8]> {
        // SAFETY: node stripe lock held (module rules); data_len bytes follow the path.
        unsafe {
            let n = (*self.h()).data_len;
            (n != NO_DATA).then(|| std::slice::from_raw_parts(self.tail().add(self.path_len()), n as usize))
        }
    }

    pub fn data_len(self) -> usize {
        self.data().map_or(0, |d| d.len())
    }

    pub fn owner(self) -> i64 {
        if self.meta() & HAS_OWNER == 0 {
            return 0;
        }
        // SAFETY: HAS_OWNER means 8 bytes of owner right after the header.
        unsafe { ((self.h() as *const u8).add(TAIL) as *const i64).read_unaligned() }
    }

    pub fn acl(self) -> i64 {
        // SAFETY: node stripe lock held.
        unsafe { (*self.h()).acl }
    }

    pub fn stat_persisted(self) -> StatPersisted {
        let h = self.h();
        // SAFETY: node stripe lock held.
        unsafe {
            StatPersisted {
                czxid: (*h).czxid,
                mzxid: (*h).mzxid,
                ctime: (*h).ctime,
                mtime: (*h).mtime,
                version: (*h).version,
                cversion: (*h).cversion,
                aversion: (*h).aversion,
                ephemeral_owner: self.owner(),
                pzxid: (*h).pzxid,
            }
        }
    }

    pub fn cversion(self) -> i32 {
        // SAFETY: node stripe lock held.
        unsafe { (*self.h()).cversion }
    }
    pub fn pzxid(self) -> i64 {
        // SAFETY: node stripe lock held.
        unsafe { (*self.h()).pzxid }
    }
    pub fn mzxid(self) -> i64 {
        // SAFETY: node stripe lock held.
        unsafe { (*self.h()).mzxid }
    }
    pub fn mtime(self) -> i64 {
        // SAFETY: node stripe lock held.
        unsafe { (*self.h()).mtime }
    }

    /// The client-visible Stat, given the number of children.
    pub fn stat(self, num_children: usize) -> Stat {
        let s = self.stat_persisted();
        let n = num_children as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(n),
            aversion: s.aversion,
            ephemeral_owner: if super::ephemeral_type(s.ephemeral_owner) == super::EphemeralType::Normal {
                s.ephemeral_owner
            } else {
                0
            },
            data_length: self.data_len() as i32,
            num_children: n,
            pzxid: s.pzxid,
        }
    }

    pub fn has_children_list(self) -> bool {
        self.meta() & HAS_CHILDREN != 0
    }

    // ---- writes: the node's stripe is write-locked

    pub fn set_has_children_list(self, on: bool) {
        // SAFETY: live node; atomic.
        let m = unsafe { &(*self.h()).meta };
        if on {
            m.fetch_or(HAS_CHILDREN, Ordering::Relaxed);
        } else {
            m.fetch_and(!HAS_CHILDREN, Ordering::Relaxed);
        }
    }

    /// setData's header changes.
    pub fn set_modified(self, mzxid: i64, mtime: i64, version: i32) {
        let h = self.h();
        // SAFETY: node stripe write-locked: nobody else reads these fields now.
        unsafe {
            (*h).mzxid = mzxid;
            (*h).mtime = mtime;
            (*h).version = version;
        }
    }

    pub fn set_child_change(self, cversion: i32, pzxid: i64) {
        // SAFETY: node stripe write-locked.
        unsafe {
            (*self.h()).cversion = cversion;
            (*self.h()).pzxid = pzxid;
        }
    }

    pub fn set_pzxid(self, pzxid: i64) {
        // SAFETY: node stripe write-locked.
        unsafe { (*self.h()).pzxid = pzxid }
    }

    pub fn set_acl(self, acl: i64, aversion: i32) {
        // SAFETY: node stripe write-locked.
        unsafe {
            (*self.h()).acl = acl;
            (*self.h()).aversion = aversion;
        }
    }

    /// Overwrites stat and ACL (loading the root from a snapshot). The owner presence is fixed
    /// at allocation: callers pass a stat with the same owner or use `with_data`.
    pub fn set_stat(self, acl: i64, stat: &StatPersisted) {
        assert_eq!(stat.ephemeral_owner, self.owner(), "a node's owner is fixed at allocation");
        let h = self.h();
        // SAFETY: node stripe write-locked.
        unsafe {
            (*h).czxid = stat.czxid;
            (*h).mzxid = stat.mzxid;
            (*h).ctime = stat.ctime;
            (*h).mtime = stat.mtime;
            (*h).pzxid = stat.pzxid;
            (*h).version = stat.version;
            (*h).cversion = stat.cversion;
            (*h).aversion = stat.aversion;
            (*h).acl = acl;
        }
    }

    /// The node with `data` instead of its data: the same allocation if the length is the same,
    /// else a new one (the old one is freed; the caller repoints the stripe table, the parent's
    /// child list and the children index, which it has write-locked).
    pub fn with_data(self, data: Option<&[u8]>) -> NodePtr {
        let same_len = match (self.data(), data) {
            (None, None) => return self,
            (Some(a), Some(b)) => a.len() == b.len(),
            _ => false,
        };
        if same_len {
            let d = data.expect("same-length data");
            // SAFETY: node stripe write-locked; same length, so it fits.
            unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), self.tail().add(self.path_len()), d.len()) };
            return self;
        }
        let n = NodePtr::new(self.path(), data, self.acl(), &self.stat_persisted());
        n.set_position(self.seq(), self.index());
        n.set_has_children_list(self.has_children_list());
        // SAFETY: the caller replaces every reference to `self` before releasing its locks.
        unsafe { self.free() };
        n
    }

    /// Frees the node.
    ///
    /// # Safety
    /// It must be unreachable from every table and list, and not in use.
    pub unsafe fn free(self) {
        let lay = layout(self.path_len(), self.meta() & HAS_OWNER != 0, self.data_len());
        dealloc(self.h() as *mut u8, lay);
    }

    // ---- position in the parent's list: the parent's stripe is locked

    pub fn seq(self) -> u32 {
        // SAFETY: live node; atomic.
        unsafe { (*self.h()).seq.load(Ordering::Relaxed) }
    }
    pub fn index(self) -> u32 {
        // SAFETY: live node; atomic.
        unsafe { (*self.h()).index.load(Ordering::Relaxed) }
    }
    pub fn set_position(self, seq: u32, index: u32) {
        // SAFETY: live node; atomics.
        unsafe {
            (*self.h()).seq.store(seq, Ordering::Relaxed);
            (*self.h()).index.store(index, Ordering::Relaxed);
        }
    }
    pub fn set_index(self, index: u32) {
        // SAFETY: live node; atomic.
        unsafe { (*self.h()).index.store(index, Ordering::Relaxed) }
    }
    pub fn set_seq(self, seq: u32) {
        // SAFETY: live node; atomic.
        unsafe { (*self.h()).seq.store(seq, Ordering::Relaxed) }
    }

    /// For keying a parent's child list.
    pub fn addr(self) -> usize {
        self.h() as usize
    }

    /// The node at `addr` (what `addr` returned).
    ///
    /// # Safety
    /// `addr` came from `addr` of a node that is still live.
    pub unsafe fn from_addr(addr: usize) -> NodePtr {
        NodePtr(NonNull::new(addr as *mut Header).expect("a node address is not null"))
    }
}

/// A node's children, iterated in ZooKeeper's order (`new HashSet<String>(8)`, see
/// `java_order`): the children's pointers (each knows its insertion number and its position
/// here), the Java table's capacity and the next insertion number. Only nodes that have had a
/// child have one.
pub struct ChildList {
    nodes: Vec<NodePtr>,
    cap_log2: u8,
    next_seq: u32,
}

impl Default for ChildList {
    fn default() -> Self {
        ChildList { nodes: Vec::new(), cap_log2: 3, next_seq: 0 }
    }
}

impl ChildList {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Adds a child that is not in the list (the caller checked the stripe table).
    pub fn push(&mut self, child: NodePtr) {
        if self.next_seq == u32::MAX {
            self.renumber();
        }
        // Grow by ~1/4 rather than doubling: directories with many children are long-lived,
        // and the spare capacity is paid per child.
        if self.nodes.len() == self.nodes.capacity() && self.nodes.len() >= 64 {
            self.nodes.reserve_exact(self.nodes.len() / 4);
        }
        child.set_position(self.next_seq, self.nodes.len() as u32);
        self.next_seq += 1;
        self.nodes.push(child);
        self.cap_log2 = java_order::grown_cap_log2(self.cap_log2, self.nodes.len());
    }

    /// Removes a child (Java: removal never reorders the rest). A node that is not in the list
    /// (left orphaned by a corrupt log deleting its parent first) is ignored.
    pub fn remove(&mut self, child: NodePtr) {
        let i = child.index() as usize;
        if self.nodes.get(i) != Some(&child) {
            return;
        }
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            moved.set_index(i as u32);
        }
    }

    /// Points the entry of a reallocated child at its new allocation (if it is listed here).
    /// `old` is already freed: only its address is compared; the position is read from `new`.
    pub fn replace(&mut self, old: NodePtr, new: NodePtr) {
        let i = new.index() as usize;
        if self.nodes.get(i) == Some(&old) {
            self.nodes[i] = new;
        }
    }

    /// Any order.
    pub fn iter(&self) -> impl Iterator<Item = NodePtr> + '_ {
        self.nodes.iter().copied()
    }

    /// The children in Java's iteration order: by bucket, then by insertion.
    pub fn ordered(&self) -> Vec<NodePtr> {
        let mut v: Vec<(u32, u32, NodePtr)> =
            self.nodes.iter().map(|&n| (java_order::bucket(n.name(), self.cap_log2), n.seq(), n)).collect();
        v.sort_unstable_by_key(|&(b, seq, _)| (b, seq));
        v.into_iter().map(|(_, _, n)| n).collect()
    }

    /// Keeps relative order, compacting insertion numbers (after 2^32 insertions).
    fn renumber(&mut self) {
        let mut v = self.nodes.clone();
        v.sort_unstable_by_key(|n| n.seq());
        for (i, n) in v.iter().enumerate() {
            n.set_seq(i as u32);
        }
        self.next_seq = self.nodes.len() as u32;
    }

    #[cfg(test)]
    fn set_next_seq(&mut self, s: u32) {
        self.next_seq = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(owner: i64) -> StatPersisted {
        StatPersisted {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: owner,
            pzxid: 8,
        }
    }

    #[test]
    fn fields_round_trip_with_and_without_owner() {
        for owner in [0, 0x1234_5678_9abc, super::super::CONTAINER_OWNER] {
            let n = NodePtr::new("/a/bc", Some(b"xyz"), -1, &st(owner));
            assert_eq!(n.path(), "/a/bc");
            assert_eq!(n.name(), "bc");
            assert_eq!(n.data(), Some(&b"xyz"[..]));
            assert_eq!(n.stat_persisted(), st(owner));
            assert_eq!(n.acl(), -1);
            n.set_position(9, 10);
            let m = n.with_data(None);
            assert_eq!((m.data(), m.path(), m.seq(), m.index()), (None, "/a/bc", 9, 10));
            assert_eq!(m.stat_persisted(), st(owner));
            let m = m.with_data(Some(b""));
            assert_eq!(m.data(), Some(&b""[..]));
            assert_eq!(m.stat(0).data_length, 0);
            unsafe { m.free() };
        }
    }

    #[test]
    fn same_length_data_is_overwritten_in_place() {
        let n = NodePtr::new("/", Some(b"abc"), 1, &st(0));
        let m = n.with_data(Some(b"def"));
        assert!(m == n);
        assert_eq!(m.data(), Some(&b"def"[..]));
        let big = vec![7u8; 1 << 20];
        let m = m.with_data(Some(&big));
        assert_eq!(m.data().map(|d| d.len()), Some(1 << 20));
        assert_eq!(m.path(), "/");
        unsafe { m.free() };
    }

    #[test]
    fn child_list_keeps_java_order_through_removals_and_renumbering() {
        let mk = |p: &str| NodePtr::new(p, None, -1, &st(0));
        let mut l = ChildList::default();
        // "Aa" and "BB" share a Java hash: one bucket, insertion order.
        let (bb, aa) = (mk("/BB"), mk("/Aa"));
        l.push(bb);
        l.push(aa);
        let others: Vec<NodePtr> = (0..20).map(|i| mk(&format!("/n{i}"))).collect();
        for &o in &others {
            l.push(o);
        }
        assert_eq!(l.cap_log2, 5, "22 elements: 8 -> 16 -> 32");
        for &o in &others {
            l.remove(o);
            unsafe { o.free() };
        }
        assert_eq!(l.cap_log2, 5, "removals never shrink the table");
        let names = |l: &ChildList| l.ordered().iter().map(|n| n.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&l), vec!["BB", "Aa"]);
        l.set_next_seq(u32::MAX);
        let x = mk("/x");
        l.push(x);
        assert_eq!((bb.seq(), aa.seq(), x.seq()), (0, 1, 2));
        let o = names(&l);
        assert!(o.iter().position(|n| n == "BB") < o.iter().position(|n| n == "Aa"));
        // Order agrees with JavaHashSet fed the same sequence.
        let mut j = java_order::JavaHashSet::with_capacity_log2(3);
        for n in ["BB", "Aa"].into_iter().chain((0..20).map(|i| format!("n{i}").leak() as &str)) {
            j.insert(n);
        }
        for i in 0..20 {
            j.remove(&format!("n{i}"));
        }
        j.insert("x");
        assert_eq!(names(&l), j.ordered());
        for n in l.iter().collect::<Vec<_>>() {
            l.remove(n);
            unsafe { n.free() };
        }
        assert_eq!(l.len(), 0);
    }
}
