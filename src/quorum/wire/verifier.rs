//! A quorum verifier as text (`QuorumMaj.toString`, read back by `QuorumPeer.configFromString`):
//! the view of the ensemble that rides in every notification and in NEWLEADER.
//!
//! ```text
//! server.1=127.0.0.1:2888:3888:participant
//! server.2=10.0.0.2:2888:3888|10.0.1.2:2888:3888:participant;0.0.0.0:2181
//! server.4=[::1]:2888:3888:observer
//! version=100000000
//! ```
//! One line per member (`host:quorumPort:electionPort`, several joined by '|', then the role,
//! then `;clientHost:clientPort` when the client address came from the dynamic config), then the
//! version (a zxid) in hex, with no newline after it.

use std::collections::BTreeMap;

use super::handshake::{bracketed, host_and_port, parse_port, text};
use super::{HostPort, Result, WireError};
use crate::quorum::{LearnerType, Members, Sid};

/// The config text travels in an election frame, so it is never larger than one.
const TEXT_MAX: usize = super::ELECTION_FRAME_MAX;

/// One address of a server: quorum (leader/learner) port and election port on one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerAddr {
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
}

/// One `server.N` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// One address, or several with multiAddress enabled.
    pub addrs: Vec<ServerAddr>,
    pub learner_type: LearnerType,
    /// The client address when it is part of the dynamic config (`;host:port` or `;port`, the
    /// latter read as 0.0.0.0:port). None when the client port came from the static config
    /// (`clientPort=`), which ZooKeeper leaves out of the text.
    pub client: Option<HostPort>,
}

/// The ensemble as a server sees it: members by sid, and the version of this view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub servers: BTreeMap<Sid, ServerSpec>,
    /// The zxid of the reconfig that made this view (0 for a static config).
    pub version: i64,
}

impl QuorumView {
    /// The text ZooKeeper writes. Members come in the order Java's `HashMap<Long, _>` iterates
    /// them (by bucket of the sid's hash: ascending for small sids), so the bytes match.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for sid in java_hash_map_order(self.servers.keys().copied()) {
            let s = &self.servers[&sid];
            out.push_str(&format!("server.{sid}="));
            let mut addrs: Vec<&ServerAddr> = s.addrs.iter().collect();
            // QuorumServer.toString sorts by host string.
            addrs.sort_by(|a, b| a.host.cmp(&b.host));
            let joined: Vec<String> = addrs
                .iter()
                .map(|a| format!("{}:{}:{}", bracketed(&a.host), a.quorum_port, a.election_port))
                .collect();
            out.push_str(&joined.join("|"));
            out.push_str(match s.learner_type {
                LearnerType::Participant => ":participant",
                LearnerType::Observer => ":observer",
            });
            if let Some(c) = &s.client {
                out.push(';');
                out.push_str(&c.format());
            }
            out.push('\n');
        }
        out.push_str(&format!("version={:x}", self.version as u64));
        out
    }

    /// Reads the text as `configFromString` does (Java properties; `server.N` and `version`
    /// keys only). Hierarchical quorums (`group.N`/`weight.N`) are refused: zkd runs majority
    /// quorums.
    pub fn parse(bytes: &[u8]) -> Result<QuorumView> {
        const WHAT: &str = "config";
        if bytes.len() > TEXT_MAX {
            return Err(WireError::Length {
                what: WHAT,
                len: bytes.len() as i64,
                min: 0,
                max: TEXT_MAX as i64,
            });
        }
        let s = std::str::from_utf8(bytes)
            .map_err(|_| text(WHAT, "not UTF-8", &String::from_utf8_lossy(bytes)))?;
        let mut servers = BTreeMap::new();
        let mut version = 0;
        for (key, value) in crate::config::parse_properties(s) {
            let key = key.trim();
            if let Some(n) = key.strip_prefix("server.") {
                let sid: Sid = n.parse().map_err(|_| text("config server id", "not a number", key))?;
                servers.insert(sid, parse_server(&value)?);
            } else if key == "version" {
                version =
                    i64::from_str_radix(&value, 16).map_err(|_| text("config version", "not hex", &value))?;
            } else if key.starts_with("group") || key.starts_with("weight") {
                return Err(text("config", "hierarchical quorums are not supported", key));
            } else {
                return Err(text("config", "unrecognised parameter", key));
            }
        }
        Ok(QuorumView { servers, version })
    }

    /// `QuorumMaj.equals`: the same version, or else the same members (order of addresses
    /// aside).
    pub fn same_as(&self, other: &QuorumView) -> bool {
        self.version == other.version || self.same_members(other)
    }

    /// The same members with the same addresses, roles and client addresses.
    pub fn same_members(&self, other: &QuorumView) -> bool {
        let norm = |s: &ServerSpec| {
            let mut a = s.addrs.clone();
            a.sort();
            (a, s.learner_type, s.client.clone())
        };
        self.servers.len() == other.servers.len()
            && self.servers.iter().all(|(sid, s)| other.servers.get(sid).is_some_and(|o| norm(s) == norm(o)))
    }

    /// Who votes and who observes.
    pub fn members(&self) -> Members {
        let of = |t| self.servers.iter().filter(move |(_, s)| s.learner_type == t).map(|(sid, _)| *sid);
        Members::new(of(LearnerType::Participant), of(LearnerType::Observer))
    }
}

/// `QuorumServer(sid, "host:port:port[:type][|...][;[clientHost:]clientPort]")`.
fn parse_server(v: &str) -> Result<ServerSpec> {
    const WHAT: &str = "config server";
    let parts: Vec<&str> = v.split(';').collect();
    if parts.len() > 2 {
        return Err(text(WHAT, "more than one ';'", v));
    }
    let client = match parts.get(1) {
        None => None,
        Some(c) => {
            let hp = host_and_port(WHAT, c.trim())?;
            match hp.as_slice() {
                [port] => Some(HostPort::new("0.0.0.0", parse_port(WHAT, port)?)),
                [host, port] => Some(HostPort::new(*host, parse_port(WHAT, port)?)),
                _ => return Err(text(WHAT, "client address is not [host:]port", v)),
            }
        }
    };
    let mut addrs = Vec::new();
    let mut learner_type = None;
    for a in parts[0].split('|') {
        let hp = host_and_port(WHAT, a)?;
        if hp.len() < 3 || hp.len() > 4 {
            return Err(text(WHAT, "not host:port:port[:type]", v));
        }
        let addr = ServerAddr {
            host: hp[0].to_owned(),
            quorum_port: parse_port(WHAT, hp[1])?,
            election_port: parse_port(WHAT, hp[2])?,
        };
        if addr.quorum_port == addr.election_port {
            return Err(text(WHAT, "quorum and election ports are the same", v));
        }
        if let Some(t) = hp.get(3) {
            let t = match t.trim().to_ascii_lowercase().as_str() {
                "participant" => LearnerType::Participant,
                "observer" => LearnerType::Observer,
                _ => return Err(text(WHAT, "role is neither participant nor observer", v)),
            };
            if learner_type.is_some_and(|l| l != t) {
                return Err(text(WHAT, "addresses with different roles", v));
            }
            learner_type = Some(t);
        }
        addrs.push(addr);
    }
    Ok(ServerSpec { addrs, learner_type: learner_type.unwrap_or(LearnerType::Participant), client })
}

/// The order in which Java's `HashMap<Long, V>` holding these keys iterates them: by bucket
/// (`(h ^ h >>> 16) & (capacity - 1)` with `h = (int)(v ^ v >>> 32)`, capacity the smallest power
/// of two from 16 that keeps the load at most 0.75), then, within a bucket, by insertion order,
/// which we take as ascending sid.
fn java_hash_map_order(keys: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut keys: Vec<i64> = keys.collect();
    let mut capacity: usize = 16;
    while keys.len() * 4 > capacity * 3 {
        capacity *= 2;
    }
    let bucket = |v: i64| {
        let h = (v ^ ((v as u64) >> 32) as i64) as i32;
        let spread = h ^ ((h as u32) >> 16) as i32;
        spread as u32 as usize & (capacity - 1)
    };
    keys.sort_by_key(|&k| (bucket(k), k));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(host: &str, q: u16, e: u16, t: LearnerType, client: Option<(&str, u16)>) -> ServerSpec {
        ServerSpec {
            addrs: vec![ServerAddr { host: host.into(), quorum_port: q, election_port: e }],
            learner_type: t,
            client: client.map(|(h, p)| HostPort::new(h, p)),
        }
    }

    #[test]
    fn text_of_a_static_three_node_ensemble() {
        let v = QuorumView {
            servers: (1..=3)
                .map(|i| {
                    (i, spec("127.0.0.1", 2880 + i as u16, 3880 + i as u16, LearnerType::Participant, None))
                })
                .collect(),
            version: 0,
        };
        let t = "server.1=127.0.0.1:2881:3881:participant\nserver.2=127.0.0.1:2882:3882:participant\n\
                 server.3=127.0.0.1:2883:3883:participant\nversion=0";
        assert_eq!(v.to_text(), t);
        assert_eq!(QuorumView::parse(t.as_bytes()).unwrap(), v);
    }

    #[test]
    fn roles_clients_v6_and_multiple_addresses() {
        let t = "server.1=zk1:2888:3888:participant;0.0.0.0:2181\n\
                 server.2=10.0.0.2:2888:3888|10.0.1.2:2889:3889:participant\n\
                 server.4=[::1]:2888:3888:observer;[::1]:2181\nversion=10000000a";
        let v = QuorumView::parse(t.as_bytes()).unwrap();
        assert_eq!(v.version, 0x1_0000_000a);
        assert_eq!(v.servers[&2].addrs.len(), 2);
        assert_eq!(v.servers[&4], spec("::1", 2888, 3888, LearnerType::Observer, Some(("::1", 2181))));
        assert_eq!(v.to_text(), t);
        let m = v.members();
        assert!(m.is_voter(1) && m.is_voter(2) && !m.is_voter(4));
    }

    #[test]
    fn addresses_are_written_in_host_order() {
        // QuorumServer.toString sorts a server's addresses by host.
        let v = QuorumView::parse(b"server.2=zz:1:2|aa:3:4:participant\nversion=0").unwrap();
        assert_eq!(v.servers[&2].addrs[0].host, "zz", "parsed in the order written");
        assert_eq!(v.to_text(), "server.2=aa:3:4|zz:1:2:participant\nversion=0");
    }

    #[test]
    fn config_file_forms_read_as_zookeeper_reads_them() {
        // No role: participant. A bare client port: 0.0.0.0.
        let v = QuorumView::parse(b"server.5=h:1:2;2181\nversion=0").unwrap();
        assert_eq!(v.servers[&5], spec("h", 1, 2, LearnerType::Participant, Some(("0.0.0.0", 2181))));
        assert_eq!(v.to_text(), "server.5=h:1:2:participant;0.0.0.0:2181\nversion=0");
        assert_eq!(
            QuorumView::parse(b"server.5=h:1:2: Observer\n").unwrap().servers[&5].learner_type,
            LearnerType::Observer
        );
    }

    #[test]
    fn bad_text_is_an_error() {
        for t in [
            "server.1=h:1\n",
            "server.1=h:1:1\n",
            "server.1=h:1:2:leader\n",
            "server.1=h:1:2;a;b\n",
            "server.1=h:1:2;a:b:c\n",
            "server.1=h:1:2:observer|g:3:4:participant\n",
            "server.x=h:1:2\n",
            "version=xyz\n",
            "group.1=1:2\n",
            "clientPort=2181\n",
        ] {
            assert!(QuorumView::parse(t.as_bytes()).is_err(), "{t}");
        }
        assert!(QuorumView::parse(&[0xff]).is_err());
        assert!(QuorumView::parse(&vec![b'#'; TEXT_MAX + 1]).is_err());
    }

    #[test]
    fn equality_as_quorum_maj_has_it() {
        let a = QuorumView::parse(b"server.1=h:1:2\nserver.2=g:1:2\nversion=5").unwrap();
        let mut b = a.clone();
        b.servers.remove(&2);
        assert!(a.same_as(&b), "same version: equal, whatever the members");
        b.version = 6;
        assert!(!a.same_as(&b));
        b.servers.insert(2, a.servers[&2].clone());
        assert!(a.same_as(&b) && a.same_members(&b));
    }

    #[test]
    fn java_hash_map_order_for_large_sids() {
        // Capacity 16: 17 lands in bucket 1, 2 in bucket 2; 16 in bucket 0.
        assert_eq!(java_hash_map_order([1, 2, 16, 17].into_iter()), vec![16, 1, 17, 2]);
        // 13 keys: capacity 32.
        let keys: Vec<i64> = (1..=13).chain([32]).collect();
        assert_eq!(java_hash_map_order(keys.into_iter()), [32].into_iter().chain(1..=13).collect::<Vec<_>>());
        // A sid with high bits: hash folds the halves (1 << 32 hashes as 1).
        assert_eq!(java_hash_map_order([2, 1 << 32].into_iter()), vec![1 << 32, 2]);
    }

    fn arb_view() -> impl Strategy<Value = QuorumView> {
        let addr = ("[a-z][a-z0-9.]{0,10}", 1..30000u16).prop_map(|(h, p)| ServerAddr {
            host: h,
            quorum_port: p,
            election_port: p + 1,
        });
        let server = (
            prop::collection::vec(addr, 1..3),
            any::<bool>(),
            prop::option::of(("[a-z0-9.]{1,8}", any::<u16>())),
        )
            .prop_map(|(addrs, obs, c)| ServerSpec {
                addrs,
                learner_type: if obs { LearnerType::Observer } else { LearnerType::Participant },
                client: c.map(|(h, p)| HostPort { host: h, port: p }),
            });
        (prop::collection::btree_map(any::<i64>(), server, 0..6), 0..i64::MAX)
            .prop_map(|(servers, version)| QuorumView { servers, version })
    }

    proptest! {
        #[test]
        fn text_round_trips(v in arb_view()) {
            let t = v.to_text();
            let back = QuorumView::parse(t.as_bytes()).unwrap();
            prop_assert!(back.same_members(&v));
            prop_assert_eq!(back.version, v.version);
            prop_assert_eq!(back.to_text(), t);
        }
    }
}
