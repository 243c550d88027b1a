//! Quotas: ZooKeeper's `StatsTrack` (the `key=value` text of quota nodes,
//! `/zookeeper/quota/<path>/zookeeper_limits` and `.../zookeeper_stats`), and the tree's quota
//! bookkeeping: which quota covers a path, and its stats node kept up to date as txns apply.

use super::node::NodePtr;
use super::{stripe_of, DataTree, Locked, NodeMap};

/// Parsed quota text; keys kept in insertion order so re-serialisation is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack {
    pairs: Vec<(String, i64)>,
}

pub const QUOTA_ROOT: &str = "/zookeeper/quota";
pub const LIMIT_NODE: &str = "zookeeper_limits";
pub const STAT_NODE: &str = "zookeeper_stats";

impl StatsTrack {
    /// Lenient as ZooKeeper: pairs separated by `,` or `;`, an empty value is -1, garbage skipped.
    pub fn parse(b: &[u8]) -> StatsTrack {
        let s = String::from_utf8_lossy(b);
        let mut pairs = Vec::new();
        for kv in s.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut it = kv.split('=');
            let (Some(k), v) = (it.next(), it.next()) else { continue };
            let v = match v {
                None | Some("") => -1,
                Some(v) => match v.trim().parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            match pairs.iter_mut().find(|(pk, _): &&mut (String, i64)| pk == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k.to_owned(), v)),
            }
        }
        StatsTrack { pairs }
    }
    pub fn get(&self, k: &str) -> i64 {
        self.pairs.iter().find(|(pk, _)| pk == k).map(|p| p.1).unwrap_or(-1)
    }
    pub fn set(&mut self, k: &str, v: i64) {
        match self.pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v,
            None => self.pairs.push((k.to_owned(), v)),
        }
    }
    pub fn count(&self) -> i64 {
        self.get("count")
    }
    pub fn bytes(&self) -> i64 {
        self.get("bytes")
    }
    /// ZooKeeper's `StatsTrack.toString`, quirks included (an `=` before extra keys).
    pub fn to_text(&self) -> String {
        let mut s = format!("count={},bytes={}", self.count(), self.bytes());
        let mut extra: Vec<&(String, i64)> =
            self.pairs.iter().filter(|(k, _)| k != "count" && k != "bytes").collect();
        if !extra.is_empty() {
            s.push('=');
            extra.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in extra {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s
    }
}

/// The quota node path for `path` (`/zookeeper/quota` + path + `/` + node).
pub fn quota_node(path: &str, node: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{node}")
}

// ---------------------------------------------------------------- the tree's quota bookkeeping

impl DataTree {
    pub(super) fn quota_prefix(&self, path: &str) -> Option<String> {
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

    /// Adds to `/zookeeper/quota<q>/zookeeper_stats` without changing its Stat (as ZooKeeper).
    pub(super) fn update_quota_stat(&self, l: &mut Locked<'_>, q: &str, bytes: i64, count: i64) {
        let stat_path = quota_node(q, STAT_NODE);
        let limit_path = quota_node(q, LIMIT_NODE);
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
    pub(super) fn refresh_quota_stats(&self, l: &mut Locked<'_>, q: &str) {
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
        let stat_path = quota_node(q, STAT_NODE);
        if let Some(n) = l.get(&stat_path) {
            let mut st = StatsTrack::parse(n.data().unwrap_or(&[]));
            st.set("count", count);
            st.set("bytes", bytes);
            l.set_node_data(n, Some(st.to_text().as_bytes()));
        }
    }

    /// Recomputes every quota's stats node from the subtree it covers, as ZooKeeper's
    /// `DataTree.setupQuota` does after every snapshot it deserializes (a fuzzy snapshot's stats
    /// nodes were read at another moment than the nodes they count).
    pub fn setup_quota(&self) {
        let quoted: Vec<String> = self.quota_paths.read().iter().cloned().collect();
        for q in quoted {
            let stat_path = quota_node(&q, STAT_NODE);
            // The stats node's stripe and its parent's: rewriting its data may reallocate it.
            let mut idx: smallvec::SmallVec<[usize; 4]> =
                [stripe_of(&stat_path), stripe_of(super::parent_of(&stat_path))].into_iter().collect();
            idx.sort_unstable();
            idx.dedup();
            let guards = idx.iter().map(|i| self.stripes[*i].nodes.write()).collect();
            let mut l = Locked { idx, guards };
            self.refresh_quota_stats(&mut l, &q);
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
        let limits = read(&quota_node(&q, LIMIT_NODE))?;
        let stats = read(&quota_node(&q, STAT_NODE)).unwrap_or_default();
        Some((q, limits, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_like_zookeeper() {
        let mut t = StatsTrack::parse(b"count=10,bytes=-1");
        assert_eq!((t.count(), t.bytes()), (10, -1));
        t.set("countHardLimit", 5);
        assert_eq!(t.to_text(), "count=10,bytes=-1=;countHardLimit=5");
        let t2 = StatsTrack::parse(t.to_text().as_bytes());
        assert_eq!(t2.get("countHardLimit"), 5);
        assert_eq!(t2.bytes(), -1);
    }
}
