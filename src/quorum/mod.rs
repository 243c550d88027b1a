//! The quorum plane: FastLeaderElection and ZAB as pure state machines, on Apache ZooKeeper
//! 3.8's wire formats, so that zkd and Java nodes can form one ensemble.
//!
//! Pure modules (`step(input, now) -> actions`; no sockets, files, clocks, channels or logging
//! inside) hold the protocol; a thin driver on the quorum core owns peer sockets, timers and the
//! epoch files. The seeded simulator runs the same state machines. Of the drivers, `link` is the
//! quorum port (leader ↔ learner connections, the SNAP stream) and `sync_storage` what a
//! learner's TRUNC and SNAP do to the disk and the live tree; both run on the replica core's
//! glommio executor.
//!
//! This file holds the types every part shares: server ids, zxids, peer states, votes, the
//! election notification and the quorum packet as values (their byte forms live in `wire`), and
//! the quorum verifier (who counts towards a majority).

use std::collections::BTreeSet;

pub mod auth;
pub mod epochs;
pub mod peers;
pub mod wire;

use crate::proto::Id;

pub mod election;
pub mod link;
pub mod peer;
pub mod status;
pub mod sync_storage;
pub mod zab;

/// A server id: `server.N` in zoo.cfg and the number in `myid` (a Java `long` on the wire).
pub type Sid = i64;

/// A zxid is the epoch in its high 32 bits and a counter in its low 32 bits.
pub fn make_zxid(epoch: u32, counter: u32) -> i64 {
    ((epoch as i64) << 32) | counter as i64
}

/// The epoch of a zxid (ZooKeeper's `ZxidUtils.getEpochFromZxid`).
pub fn epoch_of(zxid: i64) -> u32 {
    (zxid >> 32) as u32
}

/// The counter of a zxid (ZooKeeper's `ZxidUtils.getCounterFromZxid`).
pub fn counter_of(zxid: i64) -> u32 {
    zxid as u32
}

/// A server's state as election notifications carry it (`QuorumPeer.ServerState` ordinals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    Looking = 0,
    Following = 1,
    Leading = 2,
    Observing = 3,
}

impl PeerState {
    pub fn from_i32(v: i32) -> Option<PeerState> {
        Some(match v {
            0 => PeerState::Looking,
            1 => PeerState::Following,
            2 => PeerState::Leading,
            3 => PeerState::Observing,
            _ => return None,
        })
    }

    /// The word ZooKeeper uses in logs and `mntr`'s zk_peer_state.
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Looking => "looking",
            PeerState::Following => "following",
            PeerState::Leading => "leading",
            PeerState::Observing => "observing",
        }
    }
}

/// Whether a server votes (`participant`) or only learns (`observer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LearnerType {
    Participant,
    Observer,
}

/// A vote: who this server believes should lead, with what it knows of that candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    pub leader: Sid,
    /// The candidate's last logged zxid.
    pub zxid: i64,
    /// The election round (`logicalclock`) the vote was cast in.
    pub election_epoch: i64,
    /// The candidate's current epoch.
    pub peer_epoch: i64,
}

impl Vote {
    /// FastLeaderElection's order (`totalOrderPredicate`): a newer peer epoch wins, then a newer
    /// zxid, then the higher server id. True when `self` beats `other`.
    pub fn beats(&self, other: &Vote) -> bool {
        (self.peer_epoch, self.zxid, self.leader) > (other.peer_epoch, other.zxid, other.leader)
    }
}

/// An election notification, as exchanged on the election port (`FastLeaderElection.Notification`
/// / `ToSend`): the sender's vote and state, and in the 3.5+ form its view of the ensemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub state: PeerState,
    pub vote: Vote,
    /// 0x2 in ZooKeeper 3.5+ (with `config`); 0x1 / 0x0 in the older 40- and 28-byte forms.
    pub version: i32,
    /// The sender's quorum verifier as text (`server.N=...` lines and `version=...`), when the
    /// form carries one.
    pub config: Option<Vec<u8>>,
}

/// `QuorumPacket` (zookeeper.jute, `org.apache.zookeeper.server.quorum`): everything leader and
/// learners say to each other after the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    pub typ: i32,
    pub zxid: i64,
    pub data: Option<Vec<u8>>,
    pub authinfo: Option<Vec<Id>>,
}

/// QuorumPacket types (`Leader.java`'s constants).
pub mod packet_type {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const REVALIDATE: i32 = 6;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const COMMITANDACTIVATE: i32 = 9;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
    pub const INFORMANDACTIVATE: i32 = 19;

    /// The name ZooKeeper logs for a type (`LearnerHandler.packetToString`).
    pub fn name(t: i32) -> &'static str {
        match t {
            REQUEST => "REQUEST",
            PROPOSAL => "PROPOSAL",
            ACK => "ACK",
            COMMIT => "COMMIT",
            PING => "PING",
            REVALIDATE => "REVALIDATE",
            SYNC => "SYNC",
            INFORM => "INFORM",
            COMMITANDACTIVATE => "COMMITANDACTIVATE",
            NEWLEADER => "NEWLEADER",
            FOLLOWERINFO => "FOLLOWERINFO",
            UPTODATE => "UPTODATE",
            DIFF => "DIFF",
            TRUNC => "TRUNC",
            SNAP => "SNAP",
            OBSERVERINFO => "OBSERVERINFO",
            LEADERINFO => "LEADERINFO",
            ACKEPOCH => "ACKEPOCH",
            INFORMANDACTIVATE => "INFORMANDACTIVATE",
            _ => "UNKNOWN",
        }
    }
}

/// Who counts towards a quorum: a majority of the voting members (`QuorumMaj`). Observers learn
/// but never vote or ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeSet<Sid>,
    pub observers: BTreeSet<Sid>,
}

impl Members {
    pub fn new(voters: impl IntoIterator<Item = Sid>, observers: impl IntoIterator<Item = Sid>) -> Members {
        let m = Members { voters: voters.into_iter().collect(), observers: observers.into_iter().collect() };
        assert!(m.voters.is_disjoint(&m.observers), "a server is either a voter or an observer");
        m
    }

    /// True when the voters among `acks` are more than half of all voters.
    pub fn is_quorum<'a>(&self, acks: impl IntoIterator<Item = &'a Sid>) -> bool {
        let n = acks.into_iter().filter(|s| self.voters.contains(s)).count();
        n * 2 > self.voters.len()
    }

    pub fn is_voter(&self, sid: Sid) -> bool {
        self.voters.contains(&sid)
    }

    pub fn learner_type(&self, sid: Sid) -> Option<LearnerType> {
        if self.voters.contains(&sid) {
            Some(LearnerType::Participant)
        } else if self.observers.contains(&sid) {
            Some(LearnerType::Observer)
        } else {
            None
        }
    }

    /// Every member, voters first.
    pub fn all(&self) -> impl Iterator<Item = Sid> + '_ {
        self.voters.iter().chain(self.observers.iter()).copied()
    }

    /// The members an ensemble's server lines name: participants vote, observers learn.
    pub fn from_ensemble(e: &crate::config::Ensemble) -> Members {
        let sid = |id: u64| {
            // config refuses ids above SERVER_ID_MAX, so every id is a non-negative Java long.
            assert!(id <= crate::config::SERVER_ID_MAX, "server id {id} out of range");
            id as Sid
        };
        Members::new(e.voters().map(|s| sid(s.id)), e.observers().map(|s| sid(s.id)))
    }
}

impl wire::QuorumView {
    /// The ensemble as peers exchange it (in notifications and NEWLEADER): every server line with
    /// its addresses and role; a client address only when the line gives one (ZooKeeper leaves
    /// out one that came from `clientPort`).
    pub fn from_ensemble(e: &crate::config::Ensemble) -> wire::QuorumView {
        let servers = e
            .servers
            .values()
            .map(|s| {
                let spec = wire::ServerSpec {
                    addrs: vec![wire::ServerAddr {
                        host: s.host.clone(),
                        quorum_port: s.quorum_port,
                        election_port: s.election_port,
                    }],
                    learner_type: s.peer_type.into(),
                    client: s.client.as_ref().map(|c| {
                        wire::HostPort::new(c.host.clone().unwrap_or_else(|| "0.0.0.0".into()), c.port)
                    }),
                };
                (s.id as Sid, spec)
            })
            .collect();
        wire::QuorumView { servers, version: e.config_version as i64 }
    }
}

impl From<crate::config::PeerType> for LearnerType {
    fn from(t: crate::config::PeerType) -> LearnerType {
        match t {
            crate::config::PeerType::Participant => LearnerType::Participant,
            crate::config::PeerType::Observer => LearnerType::Observer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zxid_halves() {
        let z = make_zxid(7, 0xffff_fffe);
        assert_eq!((epoch_of(z), counter_of(z)), (7, 0xffff_fffe));
        assert_eq!(make_zxid(1, 0), 0x1_0000_0000);
    }

    #[test]
    fn vote_order_is_epoch_then_zxid_then_sid() {
        let v = |leader, zxid, peer_epoch| Vote { leader, zxid, election_epoch: 1, peer_epoch };
        assert!(v(1, 5, 2).beats(&v(3, 9, 1)), "a newer epoch wins over a newer zxid");
        assert!(v(1, 9, 1).beats(&v(3, 5, 1)), "then a newer zxid");
        assert!(v(3, 9, 1).beats(&v(1, 9, 1)), "then the higher sid");
        assert!(!v(3, 9, 1).beats(&v(3, 9, 1)));
    }

    #[test]
    fn members_of_an_ensemble() {
        let mut cfg = crate::config::Config::embedded_default();
        cfg.init_limit = 10;
        cfg.sync_limit = 5;
        cfg.my_id = Some(4);
        for (key, v) in [
            ("server.1", "a:1:2"),
            ("server.2", "b:1:2"),
            ("server.3", "c:1:2"),
            ("server.4", "d:1:2:observer"),
        ] {
            cfg.servers.push(crate::config::parse_server_line(key, v).unwrap());
        }
        let e = cfg.ensemble().unwrap().unwrap();
        let m = Members::from_ensemble(&e);
        assert_eq!(m, Members::new([1, 2, 3], [4]));
        assert_eq!(m.learner_type(e.my_id as Sid), Some(LearnerType::from(e.my_peer_type())));
        assert_eq!(m.learner_type(4), Some(LearnerType::Observer));

        // The same ensemble as peers exchange it, in ZooKeeper's text.
        cfg.servers[0] = crate::config::parse_server_line("server.1", "a:1:2;127.0.0.1:2181").unwrap();
        cfg.quorum.config_version = 0x1_0000_0000;
        let e = cfg.ensemble().unwrap().unwrap();
        let view = wire::QuorumView::from_ensemble(&e);
        assert_eq!(
            view.to_text(),
            "server.1=a:1:2:participant;127.0.0.1:2181\nserver.2=b:1:2:participant\n\
             server.3=c:1:2:participant\nserver.4=d:1:2:observer\nversion=100000000"
        );
        assert_eq!(wire::QuorumView::parse(view.to_text().as_bytes()).unwrap(), view);
        assert_eq!(view.members(), m);
    }

    #[test]
    fn majority_of_voters_only() {
        let m = Members::new([1, 2, 3], [4]);
        assert!(!m.is_quorum(&[1, 4]));
        assert!(m.is_quorum(&[1, 3]));
        let five = Members::new([1, 2, 3, 4, 5], []);
        assert!(!five.is_quorum(&[1, 2]));
        assert!(five.is_quorum(&[1, 2, 5]));
    }
}
