//! ZooKeeper's `StatsTrack`: the `key=value` text of quota nodes
//! (`/zookeeper/quota/<path>/zookeeper_limits` and `.../zookeeper_stats`).

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
