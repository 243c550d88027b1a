//! What the `data` of each QuorumPacket holds, by type and direction (Learner, LearnerHandler,
//! Leader in ZooKeeper 3.8), as two typed messages: [`LeaderMessage`] (leader → learner) and
//! [`LearnerMessage`] (learner → leader).
//!
//! Decoding is as lenient as ZooKeeper's own readers, which read a body's leading fields with a
//! `ByteBuffer`/`DataInputStream` and ignore what follows, and as strict where they fail: a body
//! shorter than its fields is an error (ZooKeeper's reader throws and drops the connection).
//! A type the sending side never sends is [`WireError::PacketType`]; ZooKeeper logs and skips
//! such a packet, and the caller, who still has the raw packet, may do the same.
//!
//! Fields ZooKeeper fills with constants are not carried: UPTODATE, REVALIDATE and REQUEST go
//! with zxid -1, SYNC with zxid 0, and decoding ignores the zxid of those types, as ZooKeeper does.

use super::{whole, Cur, Result, WireError};
use crate::proto::jute::Writer;
use crate::proto::Id;
use crate::quorum::packet_type as t;
use crate::quorum::{QuorumPacket, Sid};

/// `LearnerInfo` (zookeeper.jute): the data of FOLLOWERINFO and OBSERVERINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    pub sid: Sid,
    /// [`super::ZAB_PROTOCOL_VERSION`] (0x10000) from every 3.4+ learner.
    pub protocol_version: i32,
    /// The version of the learner's quorum verifier (the `version=` of its config, a zxid).
    pub config_version: i64,
}

impl LearnerInfo {
    const SIZE: usize = 20;

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::SIZE);
        w.i64(self.sid);
        w.i32(self.protocol_version);
        w.i64(self.config_version);
        w.into_inner()
    }

    /// Reads the 20-byte record (bytes after it are ignored, as `LearnerHandler` ignores them).
    /// The shorter forms of learners older than 3.5 (8 or 12 bytes, or no data) are errors:
    /// zkd speaks to 3.5+ learners only.
    pub fn decode(b: &[u8]) -> Result<LearnerInfo> {
        let mut c = Cur::new(b);
        whole(
            "LearnerInfo",
            (|| Ok(LearnerInfo { sid: c.i64()?, protocol_version: c.i32()?, config_version: c.i64()? }))(),
        )
    }
}

/// One entry of a learner's session touch table (the data of its PING reply): a session the
/// learner's clients used since the last PING, and its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub session_id: i64,
    pub timeout_ms: i32,
}

/// What a leader sends a learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderMessage {
    /// The epoch the leader proposes (zxid = epoch << 32) and its protocol version (0x10000).
    LeaderInfo {
        zxid: i64,
        protocol_version: i32,
    },
    /// Sync by the proposals and commits that follow, from the learner's zxid.
    Diff {
        zxid: i64,
    },
    /// Truncate the log to `zxid`.
    Trunc {
        zxid: i64,
    },
    /// A snapshot follows this packet on the stream (see `SnapStreamDecoder`); `zxid` is the
    /// leader's last processed zxid.
    Snap {
        zxid: i64,
    },
    /// The new epoch's first zxid and the leader's last seen config (QuorumVerifier text; None
    /// only to learners older than ZAB 1.0).
    NewLeader {
        zxid: i64,
        config: Option<Vec<u8>>,
    },
    /// Sync is done; serve clients.
    UpToDate,
    /// A transaction: `TxnHeader | txn | TxnDigest?` (crate::proto::txn::LoggedTxn's bytes).
    Proposal {
        zxid: i64,
        txn: Vec<u8>,
    },
    Commit {
        zxid: i64,
    },
    /// Liveness, with the leader's last proposed zxid.
    Ping {
        zxid: i64,
    },
    /// The answer to a learner's REVALIDATE.
    Revalidate {
        session_id: i64,
        valid: bool,
    },
    /// A learner's sync request reached the head of the leader's pipeline.
    Sync,
    /// To observers: a committed transaction.
    Inform {
        zxid: i64,
        txn: Vec<u8>,
    },
    /// Commit a reconfig and activate it, with the leader the new config designates.
    CommitAndActivate {
        zxid: i64,
        designated_leader: Sid,
    },
    /// To observers: INFORM of a reconfig, activating it.
    InformAndActivate {
        zxid: i64,
        designated_leader: Sid,
        txn: Vec<u8>,
    },
}

/// What a learner (follower or observer) sends its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnerMessage {
    /// A follower's first packet; zxid = its accepted epoch << 32.
    FollowerInfo { zxid: i64, info: LearnerInfo },
    /// An observer's first packet; zxid = its accepted epoch << 32.
    ObserverInfo { zxid: i64, info: LearnerInfo },
    /// The answer to LEADERINFO: the learner's last logged zxid and current epoch, or -1 when it
    /// had already accepted the proposed epoch (then it is not an ack of the epoch).
    AckEpoch { last_zxid: i64, current_epoch: i32 },
    /// Acknowledges NEWLEADER (zxid = the new epoch's first) or a proposal, or UPTODATE.
    Ack { zxid: i64 },
    /// The reply to the leader's PING: its zxid echoed, and the learner's touch table.
    Ping { zxid: i64, touches: Vec<Touch> },
    /// A client reconnected to the learner with this session: is it still valid?
    Revalidate { session_id: i64, timeout_ms: i32 },
    /// A client request forwarded to the leader: the request's bytes after the header, and the
    /// client's auth ids.
    Request { session_id: i64, cxid: i32, op: i32, body: Vec<u8>, authinfo: Option<Vec<Id>> },
}

fn packet(typ: i32, zxid: i64, data: Option<Vec<u8>>) -> QuorumPacket {
    QuorumPacket { typ, zxid, data, authinfo: None }
}

fn long_then(v: i64, rest: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(8 + rest.len());
    w.i64(v);
    w.raw(rest);
    w.into_inner()
}

/// The packet's data, which this type needs.
fn data<'a>(what: &'static str, p: &'a QuorumPacket) -> Result<&'a [u8]> {
    p.data.as_deref().ok_or(WireError::Value { what, value: -1 })
}

impl LeaderMessage {
    pub fn to_packet(&self) -> QuorumPacket {
        match self {
            LeaderMessage::LeaderInfo { zxid, protocol_version } => {
                packet(t::LEADERINFO, *zxid, Some(protocol_version.to_be_bytes().to_vec()))
            }
            LeaderMessage::Diff { zxid } => packet(t::DIFF, *zxid, None),
            LeaderMessage::Trunc { zxid } => packet(t::TRUNC, *zxid, None),
            LeaderMessage::Snap { zxid } => packet(t::SNAP, *zxid, None),
            LeaderMessage::NewLeader { zxid, config } => packet(t::NEWLEADER, *zxid, config.clone()),
            LeaderMessage::UpToDate => packet(t::UPTODATE, -1, None),
            LeaderMessage::Proposal { zxid, txn } => packet(t::PROPOSAL, *zxid, Some(txn.clone())),
            LeaderMessage::Commit { zxid } => packet(t::COMMIT, *zxid, None),
            LeaderMessage::Ping { zxid } => packet(t::PING, *zxid, None),
            LeaderMessage::Revalidate { session_id, valid } => {
                packet(t::REVALIDATE, -1, Some(long_then(*session_id, &[*valid as u8])))
            }
            LeaderMessage::Sync => packet(t::SYNC, 0, None),
            LeaderMessage::Inform { zxid, txn } => packet(t::INFORM, *zxid, Some(txn.clone())),
            LeaderMessage::CommitAndActivate { zxid, designated_leader } => {
                packet(t::COMMITANDACTIVATE, *zxid, Some(designated_leader.to_be_bytes().to_vec()))
            }
            LeaderMessage::InformAndActivate { zxid, designated_leader, txn } => {
                packet(t::INFORMANDACTIVATE, *zxid, Some(long_then(*designated_leader, txn)))
            }
        }
    }

    /// Interprets a packet a leader sent.
    pub fn from_packet(p: QuorumPacket) -> Result<LeaderMessage> {
        let zxid = p.zxid;
        Ok(match p.typ {
            t::LEADERINFO => {
                let mut c = Cur::new(data("LEADERINFO data", &p)?);
                LeaderMessage::LeaderInfo { zxid, protocol_version: whole("LEADERINFO data", c.i32())? }
            }
            t::DIFF => LeaderMessage::Diff { zxid },
            t::TRUNC => LeaderMessage::Trunc { zxid },
            t::SNAP => LeaderMessage::Snap { zxid },
            t::NEWLEADER => LeaderMessage::NewLeader { zxid, config: p.data },
            t::UPTODATE => LeaderMessage::UpToDate,
            t::PROPOSAL => {
                data("PROPOSAL data", &p)?;
                LeaderMessage::Proposal { zxid, txn: p.data.unwrap_or_default() }
            }
            t::COMMIT => LeaderMessage::Commit { zxid },
            t::PING => LeaderMessage::Ping { zxid },
            t::REVALIDATE => {
                let mut c = Cur::new(data("REVALIDATE reply data", &p)?);
                let (session_id, valid) =
                    whole("REVALIDATE reply data", (|| Ok((c.i64()?, c.u8()? != 0)))())?;
                LeaderMessage::Revalidate { session_id, valid }
            }
            t::SYNC => LeaderMessage::Sync,
            t::INFORM => {
                data("INFORM data", &p)?;
                LeaderMessage::Inform { zxid, txn: p.data.unwrap_or_default() }
            }
            t::COMMITANDACTIVATE => {
                let mut c = Cur::new(data("COMMITANDACTIVATE data", &p)?);
                LeaderMessage::CommitAndActivate {
                    zxid,
                    designated_leader: whole("COMMITANDACTIVATE data", c.i64())?,
                }
            }
            t::INFORMANDACTIVATE => {
                let b = data("INFORMANDACTIVATE data", &p)?;
                let mut c = Cur::new(b);
                let designated_leader = whole("INFORMANDACTIVATE data", c.i64())?;
                LeaderMessage::InformAndActivate { zxid, designated_leader, txn: b[8..].to_vec() }
            }
            typ => return Err(WireError::PacketType { what: "packet from a leader", typ }),
        })
    }
}

impl LearnerMessage {
    pub fn to_packet(&self) -> QuorumPacket {
        match self {
            LearnerMessage::FollowerInfo { zxid, info } => {
                packet(t::FOLLOWERINFO, *zxid, Some(info.encode()))
            }
            LearnerMessage::ObserverInfo { zxid, info } => {
                packet(t::OBSERVERINFO, *zxid, Some(info.encode()))
            }
            LearnerMessage::AckEpoch { last_zxid, current_epoch } => {
                packet(t::ACKEPOCH, *last_zxid, Some(current_epoch.to_be_bytes().to_vec()))
            }
            LearnerMessage::Ack { zxid } => packet(t::ACK, *zxid, None),
            LearnerMessage::Ping { zxid, touches } => {
                let mut w = Writer::with_capacity(12 * touches.len());
                for touch in touches {
                    w.i64(touch.session_id);
                    w.i32(touch.timeout_ms);
                }
                packet(t::PING, *zxid, Some(w.into_inner()))
            }
            LearnerMessage::Revalidate { session_id, timeout_ms } => {
                packet(t::REVALIDATE, -1, Some(long_then(*session_id, &timeout_ms.to_be_bytes())))
            }
            LearnerMessage::Request { session_id, cxid, op, body, authinfo } => {
                let mut w = Writer::with_capacity(16 + body.len());
                w.i64(*session_id);
                w.i32(*cxid);
                w.i32(*op);
                w.raw(body);
                QuorumPacket {
                    typ: t::REQUEST,
                    zxid: -1,
                    data: Some(w.into_inner()),
                    authinfo: authinfo.clone(),
                }
            }
        }
    }

    /// Interprets a packet a learner sent.
    pub fn from_packet(p: QuorumPacket) -> Result<LearnerMessage> {
        let zxid = p.zxid;
        Ok(match p.typ {
            t::FOLLOWERINFO => {
                LearnerMessage::FollowerInfo { zxid, info: LearnerInfo::decode(data("LearnerInfo", &p)?)? }
            }
            t::OBSERVERINFO => {
                LearnerMessage::ObserverInfo { zxid, info: LearnerInfo::decode(data("LearnerInfo", &p)?)? }
            }
            t::ACKEPOCH => {
                let mut c = Cur::new(data("ACKEPOCH data", &p)?);
                LearnerMessage::AckEpoch { last_zxid: zxid, current_epoch: whole("ACKEPOCH data", c.i32())? }
            }
            t::ACK => LearnerMessage::Ack { zxid },
            t::PING => {
                // LearnerHandler reads (long, int) pairs while bytes remain: a partial pair is an
                // error. No data reads as an empty table.
                let b = p.data.as_deref().unwrap_or_default();
                if !b.len().is_multiple_of(12) {
                    return Err(WireError::Length {
                        what: "PING touch table (12 bytes an entry)",
                        len: b.len() as i64,
                        min: 0,
                        max: (b.len() / 12 * 12) as i64,
                    });
                }
                let mut c = Cur::new(b);
                let mut touches = Vec::with_capacity(b.len() / 12);
                while c.left() > 0 {
                    let touch = whole(
                        "PING touch table",
                        (|| Ok(Touch { session_id: c.i64()?, timeout_ms: c.i32()? }))(),
                    )?;
                    touches.push(touch);
                }
                LearnerMessage::Ping { zxid, touches }
            }
            t::REVALIDATE => {
                let mut c = Cur::new(data("REVALIDATE data", &p)?);
                let (session_id, timeout_ms) = whole("REVALIDATE data", (|| Ok((c.i64()?, c.i32()?)))())?;
                LearnerMessage::Revalidate { session_id, timeout_ms }
            }
            t::REQUEST => {
                let b = data("REQUEST data", &p)?;
                let mut c = Cur::new(b);
                let (session_id, cxid, op) =
                    whole("REQUEST data", (|| Ok((c.i64()?, c.i32()?, c.i32()?)))())?;
                LearnerMessage::Request { session_id, cxid, op, body: b[16..].to_vec(), authinfo: p.authinfo }
            }
            typ => return Err(WireError::PacketType { what: "packet from a learner", typ }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::wire::{decode_packet, encode_packet};
    use proptest::prelude::*;

    fn leader_round_trip(m: LeaderMessage) {
        let p = m.to_packet();
        let b = encode_packet(&p);
        let (q, _) = decode_packet(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(LeaderMessage::from_packet(q).unwrap(), m);
    }

    fn learner_round_trip(m: LearnerMessage) {
        let p = m.to_packet();
        let b = encode_packet(&p);
        let (q, _) = decode_packet(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(LearnerMessage::from_packet(q).unwrap(), m);
    }

    #[test]
    fn bodies_are_laid_out_as_zookeeper_writes_them() {
        let info = LearnerInfo { sid: 2, protocol_version: 0x10000, config_version: 0x1_0000_0000 };
        assert_eq!(
            info.encode(),
            [&2i64.to_be_bytes()[..], &[0, 1, 0, 0], &0x1_0000_0000i64.to_be_bytes()].concat()
        );
        let p = LearnerMessage::AckEpoch { last_zxid: 7, current_epoch: -1 }.to_packet();
        assert_eq!((p.typ, p.zxid, p.data), (t::ACKEPOCH, 7, Some(vec![0xff; 4])));
        let p = LeaderMessage::Revalidate { session_id: 0x1234, valid: true }.to_packet();
        assert_eq!((p.zxid, p.data.unwrap()), (-1, [&0x1234i64.to_be_bytes()[..], &[1]].concat()));
        let p = LearnerMessage::Ping { zxid: 9, touches: vec![] }.to_packet();
        assert_eq!(p.data, Some(vec![]), "an empty table is empty data, not null");
        let p = LearnerMessage::Request {
            session_id: 1,
            cxid: 2,
            op: 9,
            body: b"xy".to_vec(),
            authinfo: Some(vec![]),
        }
        .to_packet();
        assert_eq!(p.data.unwrap(), [&1i64.to_be_bytes()[..], &[0, 0, 0, 2, 0, 0, 0, 9], b"xy"].concat());
        assert_eq!(LeaderMessage::Sync.to_packet().zxid, 0);
        assert_eq!(LeaderMessage::UpToDate.to_packet().zxid, -1);
    }

    #[test]
    fn every_message_round_trips() {
        for m in [
            LeaderMessage::LeaderInfo { zxid: 1 << 32, protocol_version: 0x10000 },
            LeaderMessage::Diff { zxid: 5 },
            LeaderMessage::Trunc { zxid: 6 },
            LeaderMessage::Snap { zxid: 7 },
            LeaderMessage::NewLeader { zxid: 1 << 32, config: Some(b"version=0".to_vec()) },
            LeaderMessage::NewLeader { zxid: 1 << 32, config: None },
            LeaderMessage::UpToDate,
            LeaderMessage::Proposal { zxid: 8, txn: vec![1, 2, 3] },
            LeaderMessage::Commit { zxid: 8 },
            LeaderMessage::Ping { zxid: 8 },
            LeaderMessage::Revalidate { session_id: -5, valid: false },
            LeaderMessage::Sync,
            LeaderMessage::Inform { zxid: 9, txn: vec![4] },
            LeaderMessage::CommitAndActivate { zxid: 10, designated_leader: 3 },
            LeaderMessage::InformAndActivate { zxid: 11, designated_leader: 2, txn: vec![5, 6] },
        ] {
            leader_round_trip(m);
        }
        let info = LearnerInfo { sid: 4, protocol_version: 0x10000, config_version: 0 };
        for m in [
            LearnerMessage::FollowerInfo { zxid: 1 << 32, info },
            LearnerMessage::ObserverInfo { zxid: 0, info },
            LearnerMessage::AckEpoch { last_zxid: 3, current_epoch: 1 },
            LearnerMessage::Ack { zxid: 3 },
            LearnerMessage::Ping { zxid: 3, touches: vec![Touch { session_id: 7, timeout_ms: 4000 }; 3] },
            LearnerMessage::Revalidate { session_id: 7, timeout_ms: 4000 },
            LearnerMessage::Request {
                session_id: 7,
                cxid: 1,
                op: 1,
                body: vec![9; 30],
                authinfo: Some(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]),
            },
            LearnerMessage::Request { session_id: 7, cxid: 1, op: -10, body: vec![], authinfo: None },
        ] {
            learner_round_trip(m);
        }
    }

    #[test]
    fn short_bodies_are_errors() {
        let cases: Vec<(i32, usize)> = vec![
            (t::FOLLOWERINFO, 20),
            (t::OBSERVERINFO, 20),
            (t::ACKEPOCH, 4),
            (t::REVALIDATE, 12),
            (t::REQUEST, 16),
        ];
        for (typ, need) in cases {
            for len in 0..need {
                let p = packet(typ, 0, Some(vec![0; len]));
                assert!(LearnerMessage::from_packet(p).is_err(), "{} {len}", t::name(typ));
            }
            assert!(LearnerMessage::from_packet(packet(typ, 0, None)).is_err(), "{} null", t::name(typ));
            assert!(LearnerMessage::from_packet(packet(typ, 0, Some(vec![0; need]))).is_ok());
        }
        for (typ, need) in
            [(t::LEADERINFO, 4), (t::REVALIDATE, 9), (t::COMMITANDACTIVATE, 8), (t::INFORMANDACTIVATE, 8)]
        {
            for len in 0..need {
                assert!(
                    LeaderMessage::from_packet(packet(typ, 0, Some(vec![0; len]))).is_err(),
                    "{}",
                    t::name(typ)
                );
            }
            assert!(LeaderMessage::from_packet(packet(typ, 0, None)).is_err());
            assert!(LeaderMessage::from_packet(packet(typ, 0, Some(vec![0; need]))).is_ok());
        }
        for typ in [t::PROPOSAL, t::INFORM] {
            assert!(LeaderMessage::from_packet(packet(typ, 0, None)).is_err());
        }
        for len in [1, 11, 13, 23] {
            assert!(matches!(
                LearnerMessage::from_packet(packet(t::PING, 0, Some(vec![0; len]))),
                Err(WireError::Length { .. })
            ));
        }
        assert_eq!(
            LearnerMessage::from_packet(packet(t::PING, 4, None)).unwrap(),
            LearnerMessage::Ping { zxid: 4, touches: vec![] }
        );
    }

    #[test]
    fn types_of_the_other_side_are_refused() {
        for typ in [t::FOLLOWERINFO, t::ACK, t::ACKEPOCH, t::REQUEST, 0, 20, -1] {
            assert!(matches!(
                LeaderMessage::from_packet(packet(typ, 0, None)),
                Err(WireError::PacketType { .. })
            ));
        }
        for typ in [t::LEADERINFO, t::PROPOSAL, t::COMMIT, t::UPTODATE, t::NEWLEADER, t::SNAP, 0, 99] {
            assert!(matches!(
                LearnerMessage::from_packet(packet(typ, 0, None)),
                Err(WireError::PacketType { .. })
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_as_zookeeper_does() {
        let mut d = LearnerInfo { sid: 1, protocol_version: 0x10000, config_version: 0 }.encode();
        d.push(0);
        assert!(LearnerMessage::from_packet(packet(t::FOLLOWERINFO, 0, Some(d))).is_ok());
        assert_eq!(
            LeaderMessage::from_packet(packet(t::LEADERINFO, 0, Some(vec![0, 1, 0, 0, 9]))).unwrap(),
            LeaderMessage::LeaderInfo { zxid: 0, protocol_version: 0x10000 }
        );
    }

    proptest! {
        #[test]
        fn any_packet_never_panics(typ in -2..22i32, zxid in any::<i64>(), data in prop::option::of(prop::collection::vec(any::<u8>(), 0..40))) {
            let _ = LeaderMessage::from_packet(packet(typ, zxid, data.clone()));
            let _ = LearnerMessage::from_packet(packet(typ, zxid, data));
        }

        #[test]
        fn touch_tables_round_trip(zxid in any::<i64>(), touches in prop::collection::vec((any::<i64>(), any::<i32>()), 0..20)) {
            let touches = touches.into_iter().map(|(s, t)| Touch { session_id: s, timeout_ms: t }).collect();
            learner_round_trip(LearnerMessage::Ping { zxid, touches });
        }
    }
}
