//! A set of strings that iterates in the order a `java.util.HashSet<String>` would.
//!
//! ZooKeeper keeps a node's children in `new HashSet<String>(8)` and a session's ephemeral paths
//! in `new HashSet<String>()`; getChildren, getEphemerals, closeSession (the order ephemerals are
//! deleted and their events fire) and snapshots all expose that iteration order, and clients
//! (the C client's `ls`, scripts diffing output) see it. The order is reproducible without
//! emulating the table: Java's HashMap iterates bucket by bucket (`bucket = (h ^ h >>> 16) &
//! (cap - 1)`, `h` = `String.hashCode` over UTF-16 units), and within a bucket in insertion order
//! (a resize splits each bucket keeping relative order; a removal never reorders). The capacity
//! only grows: it doubles when the size exceeds 3/4 of it. So an insertion sequence number per
//! element plus the capacity is enough.
//!
//! Not reproduced: treeified bins (9+ names in one bucket of a 64+ table) and the resize a 9-name
//! bucket forces in a smaller table; both need colliding `String.hashCode`s in one directory.

use compact_str::CompactString;
use std::collections::HashMap;

/// Java `String.hashCode()`.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u as i32);
    }
    h
}

/// Java `HashMap.hash(key) & (cap - 1)`.
pub fn bucket(s: &str, cap_log2: u8) -> u32 {
    let h = java_string_hash(s) as u32;
    (h ^ (h >> 16)) & ((1u32 << cap_log2) - 1)
}

/// Largest table Java allocates (`MAXIMUM_CAPACITY` = 2^30).
pub const MAX_CAP_LOG2: u8 = 30;

/// The capacity after an insertion made the size `len` (HashMap.putVal: `if (++size >
/// threshold) resize()`, threshold = 3/4 of the capacity).
pub fn grown_cap_log2(mut cap_log2: u8, len: usize) -> u8 {
    while cap_log2 < MAX_CAP_LOG2 && len > (3usize << cap_log2) / 4 {
        cap_log2 += 1;
    }
    cap_log2
}

#[derive(Debug, Clone)]
pub struct JavaHashSet {
    /// Element → insertion sequence number.
    map: HashMap<CompactString, u32, ahash::RandomState>,
    /// log2 of the Java table capacity.
    cap_log2: u8,
    next_seq: u32,
}

impl JavaHashSet {
    /// `new HashSet<String>(1 << cap_log2)` (ZooKeeper: 3 for children, 4 for ephemerals).
    pub fn with_capacity_log2(cap_log2: u8) -> Self {
        assert!(cap_log2 <= MAX_CAP_LOG2);
        JavaHashSet { map: HashMap::default(), cap_log2, next_seq: 0 }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.map.contains_key(s)
    }

    /// Returns false if it was already there (Java: `add` returns false, order unchanged).
    pub fn insert(&mut self, s: &str) -> bool {
        if self.next_seq == u32::MAX {
            self.renumber();
        }
        // One lookup, not contains + insert: loading 1M children of one node is dominated by
        // this table's cache misses.
        match self.map.entry(CompactString::from(s)) {
            std::collections::hash_map::Entry::Occupied(_) => return false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(self.next_seq);
            }
        }
        self.next_seq += 1;
        self.cap_log2 = grown_cap_log2(self.cap_log2, self.map.len());
        true
    }

    pub fn remove(&mut self, s: &str) -> bool {
        self.map.remove(s).is_some()
    }

    /// The elements in Java's iteration order.
    pub fn ordered(&self) -> Vec<&str> {
        let mut v: Vec<(u32, u32, &str)> =
            self.map.iter().map(|(k, &seq)| (bucket(k, self.cap_log2), seq, &**k)).collect();
        v.sort_unstable_by_key(|&(b, seq, _)| (b, seq));
        v.into_iter().map(|(_, _, k)| k).collect()
    }

    /// `HashSet.clone()` (how ZooKeeper's `DataTree.getEphemerals` hands a session's paths out):
    /// a fresh table sized for the current size (`tableSizeFor(size / 0.75 + 1)`, or the default
    /// 16 when empty) filled in this set's iteration order.
    pub fn java_clone(&self) -> JavaHashSet {
        let n = self.map.len();
        let cap_log2 = if n == 0 {
            4
        } else {
            let t = (n as f32 / 0.75f32 + 1.0f32) as u64; // Java truncates the float
            (t.next_power_of_two().trailing_zeros() as u8).min(MAX_CAP_LOG2)
        };
        let mut out = JavaHashSet::with_capacity_log2(cap_log2);
        for k in self.ordered() {
            out.insert(k);
        }
        out
    }

    /// Any order (for counting and lookups that do not expose order).
    pub fn iter_unordered(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| &**k)
    }

    /// Keeps relative order, compacting sequence numbers (after 2^32 insertions).
    fn renumber(&mut self) {
        let mut v: Vec<(u32, CompactString)> = self.map.drain().map(|(k, s)| (s, k)).collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        for (i, (_, k)) in v.into_iter().enumerate() {
            self.map.insert(k, i as u32);
        }
        self.next_seq = self.map.len() as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values a JVM prints for "".hashCode(), "a".hashCode(), "hello".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        // Non-BMP characters hash as two UTF-16 units.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn zookeeper_children_order_matches_the_oracle() {
        // Apache ZooKeeper 3.8: getChildren("/zookeeper") == [config, quota].
        let mut s = JavaHashSet::with_capacity_log2(3);
        s.insert("quota");
        s.insert("config");
        assert_eq!(s.ordered(), vec!["config", "quota"]);
    }

    #[test]
    fn same_bucket_keeps_insertion_order_and_capacity_only_grows() {
        let mut s = JavaHashSet::with_capacity_log2(3);
        // "Aa" and "BB" have the same Java hash: one bucket, insertion order.
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        s.insert("BB");
        s.insert("Aa");
        assert_eq!(s.ordered(), vec!["BB", "Aa"]);
        for i in 0..20 {
            s.insert(&format!("n{i}"));
        }
        assert_eq!(s.cap_log2, 5, "22 elements: 8 -> 16 -> 32");
        for i in 0..20 {
            s.remove(&format!("n{i}"));
        }
        assert_eq!(s.cap_log2, 5, "removals never shrink the table");
        assert_eq!(s.ordered(), vec!["BB", "Aa"]);
    }

    #[test]
    fn clone_resizes_the_table_to_the_current_size() {
        let mut s = JavaHashSet::with_capacity_log2(4);
        for i in 0..40 {
            s.insert(&format!("/e{i}"));
        }
        for i in 3..40 {
            s.remove(&format!("/e{i}"));
        }
        assert_eq!(s.cap_log2, 6);
        let c = s.java_clone();
        // 3 / 0.75 + 1 = 5 -> tableSizeFor(5) = 8.
        assert_eq!(c.cap_log2, 3);
        assert_eq!(c.len(), 3);
        assert_eq!(JavaHashSet::with_capacity_log2(4).java_clone().cap_log2, 4);
        let mut one = JavaHashSet::with_capacity_log2(4);
        one.insert("/x");
        assert_eq!(one.java_clone().cap_log2, 1, "1 / 0.75 + 1 = 2.33 -> 2");
    }

    #[test]
    fn renumbering_keeps_order() {
        let mut s = JavaHashSet::with_capacity_log2(3);
        s.insert("BB");
        s.insert("Aa");
        s.next_seq = u32::MAX;
        s.insert("x");
        assert_eq!(s.next_seq, 3);
        let o = s.ordered();
        let pos = |n| o.iter().position(|x| *x == n).unwrap();
        assert!(pos("BB") < pos("Aa"));
    }
}
