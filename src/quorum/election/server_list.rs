//! The server list a notification announces: which sids a peer runs with, and as what.
//!
//! A 3.5+ notification carries the sender's `QuorumVerifier.toString()`: one
//! `server.N=host:quorumPort:electionPort:role;clientAddress:clientPort` line per member (several
//! addresses joined by `|`), then `version=<hex>`. Only ids and roles are compared: two servers
//! can spell the same address differently (a name and its IP) and still agree.

use std::collections::BTreeMap;
use std::fmt;

use crate::quorum::{LearnerType, Members, Sid};

/// At most this many `server.N` lines are read from one notification (the text itself is
/// bounded by the wire decoder).
pub const SERVERS_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList {
    pub servers: BTreeMap<Sid, LearnerType>,
}

impl ServerList {
    pub fn from_members(m: &Members) -> ServerList {
        let mut servers = BTreeMap::new();
        for s in &m.voters {
            servers.insert(*s, LearnerType::Participant);
        }
        for s in &m.observers {
            servers.insert(*s, LearnerType::Observer);
        }
        ServerList { servers }
    }

    /// The `server.N` lines of a configuration text; None when it has none (or is not text), so
    /// a peer whose list we cannot read is never reported as different. The text is read as
    /// ZooKeeper reads it (Java properties, as `QuorumView::parse` does): `server.4:...` and
    /// `server.4 ...` are server lines too.
    pub fn parse(config: &[u8]) -> Option<ServerList> {
        let text = std::str::from_utf8(config).ok()?;
        let mut servers = BTreeMap::new();
        for (key, value) in crate::config::parse_properties(text).into_iter().take(SERVERS_MAX) {
            let Some(id) = key.trim().strip_prefix("server.") else { continue };
            let Ok(id) = id.parse::<Sid>() else { continue };
            // The role is an address's fourth `:` field, before the client part. ZooKeeper writes
            // it once, after the last of several addresses (`QuorumServer.toString`:
            // `a:1:2|b:1:2:observer`), and takes it from any address that has one.
            let addresses = value.split(';').next().unwrap_or("");
            let observer = addresses
                .split('|')
                .any(|a| a.rsplit(':').next().is_some_and(|r| r.trim().eq_ignore_ascii_case("observer")));
            let role = if observer { LearnerType::Observer } else { LearnerType::Participant };
            servers.insert(id, role);
        }
        (!servers.is_empty()).then_some(ServerList { servers })
    }

    /// The WARN line for a peer that runs with another list.
    pub fn mismatch_message(sid: Sid, ours: &ServerList, theirs: &ServerList) -> String {
        format!(
            "server {sid} runs with servers {theirs} but this server runs with {ours}; votes from and \
             for servers outside this server's list are not counted: make the server.N lines of \
             zoo.cfg the same on every server"
        )
    }
}

impl fmt::Display for ServerList {
    /// `1, 2, 3, 4 (observer)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (sid, role)) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{sid}")?;
            if *role == LearnerType::Observer {
                f.write_str(" (observer)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zookeeper_quorum_verifier_text() {
        let text = b"server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
                     server.2=[::1]:2889:3889:participant;2182\n\
                     server.3=a:1:2|b:1:2:observer;0.0.0.0:2183\n\
                     server.4=host4:2890:3890:observer\n\
                     version=100000000\n";
        let l = ServerList::parse(text).expect("server lines");
        let want: Vec<(Sid, LearnerType)> = vec![
            (1, LearnerType::Participant),
            (2, LearnerType::Participant),
            (3, LearnerType::Observer),
            (4, LearnerType::Observer),
        ];
        assert_eq!(l.servers.into_iter().collect::<Vec<_>>(), want);
    }

    /// Found by fuzz/fuzz_targets/quorum_view.rs: a multi-address observer as ZooKeeper writes it
    /// (the role once, after the last address) was read as a participant, and a line with
    /// another properties separator was not read at all, so the election warned of a config
    /// mismatch that was none.
    #[test]
    fn reads_what_quorum_view_reads() {
        use crate::quorum::wire::QuorumView;
        for text in [
            &b"server.1=b:1:2|a:1:2:observer\nserver.2=c:1:2:participant\nversion=0"[..],
            b"server.1=127.0.0.2:1:2|10.1.2:1:2:participant;0.0.0.0:2181\nserver.4:[::1]:1:2:observer\n",
            b"server.7 h:1:2:Observer \n",
        ] {
            let view = QuorumView::parse(text).unwrap();
            assert_eq!(ServerList::parse(text), Some(ServerList::from_members(&view.members())));
        }
    }

    #[test]
    fn no_server_lines_is_none() {
        assert_eq!(ServerList::parse(b"version=0\n"), None);
        assert_eq!(ServerList::parse(b""), None);
        assert_eq!(ServerList::parse(&[0xff, 0xfe, b'=']), None);
        assert_eq!(ServerList::parse(b"server.x=a:1:2\n"), None);
    }

    #[test]
    fn displays_ids_and_roles() {
        let l = ServerList::from_members(&Members::new([1, 2, 3], [4]));
        assert_eq!(l.to_string(), "1, 2, 3, 4 (observer)");
        let five = ServerList::from_members(&Members::new([1, 2, 3, 4, 5], []));
        assert_eq!(
            ServerList::mismatch_message(4, &l, &five),
            "server 4 runs with servers 1, 2, 3, 4, 5 but this server runs with 1, 2, 3, 4 (observer); \
             votes from and for servers outside this server's list are not counted: make the server.N \
             lines of zoo.cfg the same on every server"
        );
    }
}
