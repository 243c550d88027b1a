//! Golden bytes from a real Apache ZooKeeper 3.8 ensemble (tests/fixtures/quorum, captured by
//! its capture.sh): each fixture decodes, means what the capture says, and re-encodes to the
//! identical bytes; every truncation of it waits (stream decoders) or fails (whole messages).

use super::*;
use crate::proto::jute::Writer;
use crate::proto::txn::LoggedTxn;
use crate::quorum::packet_type as t;
use crate::quorum::{epoch_of, LearnerType, PeerState, QuorumPacket};

/// The leader's bound on learner packets with ZooKeeper's default jute.maxbuffer.
const MAX_DATA: usize = 2 * 0xfffff;

/// The kinds capture.py must have produced (its REQUIRED list).
const REQUIRED: &[&str] = &[
    "handshake-v1",
    "handshake-v2",
    "notification-looking",
    "notification-following",
    "notification-leading",
    "learner-FOLLOWERINFO",
    "learner-OBSERVERINFO",
    "leader-LEADERINFO",
    "learner-ACKEPOCH",
    "leader-DIFF",
    "leader-SNAP-stream",
    "leader-NEWLEADER",
    "leader-UPTODATE",
    "learner-ACK-epoch",
    "learner-ACK-proposal",
    "leader-PROPOSAL-txn1",
    "leader-COMMIT",
    "leader-INFORM-txn1",
    "leader-PING",
    "learner-PING-empty",
    "learner-PING-touches",
    "learner-REQUEST-op1-auth",
    "learner-REQUEST-op-10",
    "learner-REQUEST-op9-auth",
    "leader-SYNC",
    "learner-REVALIDATE",
    "leader-REVALIDATE",
];

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quorum");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".hex"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("fixture text");
        let hex: String =
            text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
        assert!(hex.len().is_multiple_of(2), "{name}: odd number of hex digits");
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("{name}: bad hex")))
            .collect();
        out.push((name.to_owned(), bytes));
    }
    out.sort();
    out
}

fn fixture(name: &str) -> Vec<u8> {
    fixtures().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no fixture {name}")).1
}

fn one_packet(name: &str, b: &[u8]) -> QuorumPacket {
    let (p, used) = decode_packet(b, MAX_DATA).unwrap().unwrap_or_else(|| panic!("{name}: incomplete"));
    assert_eq!(used, b.len(), "{name}: one packet, nothing after it");
    assert_eq!(encode_packet(&p), b, "{name}: packet re-encodes identically");
    p
}

#[test]
fn every_required_kind_was_captured() {
    let names: Vec<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    for r in REQUIRED {
        assert!(names.iter().any(|n| n == r), "fixture {r} missing: rerun tests/fixtures/quorum/capture.sh");
    }
}

/// Every fixture, whatever its kind, decodes and re-encodes to its bytes.
#[test]
fn every_fixture_round_trips() {
    let all = fixtures();
    assert!(all.len() >= REQUIRED.len());
    for (name, b) in &all {
        if name.starts_with("handshake-") {
            let (h, used) = decode_handshake(b).unwrap().unwrap();
            assert_eq!(used, b.len(), "{name}");
            assert_eq!(h.encode().unwrap(), *b, "{name}");
        } else if name.starts_with("notification-") {
            let (payload, used) = decode_frame(b).unwrap().unwrap();
            assert_eq!(used, b.len(), "{name}");
            let n = decode_notification(payload).unwrap();
            assert_eq!(encode_frame(&encode_notification(&n)).unwrap(), *b, "{name}");
            let config = n.config.as_deref().expect("3.8 sends its config");
            assert_eq!(
                QuorumView::parse(config).unwrap().to_text().as_bytes(),
                config,
                "{name}: config text"
            );
        } else if name == "leader-SNAP-stream" {
            check_snap_stream(b);
        } else if name.starts_with("leader-") {
            let p = one_packet(name, b);
            let m = LeaderMessage::from_packet(p.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.to_packet(), p, "{name}: typed message gives back the packet");
            if let LeaderMessage::Proposal { txn, .. } | LeaderMessage::Inform { txn, .. } = &m {
                let logged = LoggedTxn::from_bytes(txn).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(logged.to_bytes(), *txn, "{name}: txn re-encodes identically");
                assert_eq!(logged.hdr.zxid, p.zxid, "{name}: the packet's zxid is the txn's");
            }
        } else if name.starts_with("learner-") {
            let p = one_packet(name, b);
            let m = LearnerMessage::from_packet(p.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.to_packet(), p, "{name}: typed message gives back the packet");
        } else {
            panic!("fixture {name}: unknown kind (handshake-, notification-, leader-, learner-)");
        }
    }
}

#[test]
fn handshakes_say_who_calls_from_where() {
    let Handshake::Initial { version, sid, addrs } =
        decode_handshake(&fixture("handshake-v1")).unwrap().unwrap().0
    else {
        panic!("3.8 sends the 3.5+ form")
    };
    assert_eq!(version, HandshakeVersion::V1);
    assert!((1..=3).contains(&sid), "a voter without multiAddress: V1");
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].host, "127.0.0.1");
    let h = decode_handshake(&fixture("handshake-v2")).unwrap().unwrap().0;
    assert!(matches!(h, Handshake::Initial { version: HandshakeVersion::V2, sid: 4, .. }), "{h:?}");
}

#[test]
fn notifications_carry_vote_state_and_view() {
    for (name, state) in [
        ("notification-looking", PeerState::Looking),
        ("notification-following", PeerState::Following),
        ("notification-leading", PeerState::Leading),
    ] {
        let b = fixture(name);
        let n = decode_notification(decode_frame(&b).unwrap().unwrap().0).unwrap();
        assert_eq!((n.state, n.version), (state, NOTIFICATION_VERSION), "{name}");
        let view = QuorumView::parse(n.config.as_deref().unwrap()).unwrap();
        assert_eq!(view.version, 0, "{name}: a static config");
        assert_eq!(view.servers.len(), 4, "{name}");
        assert_eq!(view.servers[&4].learner_type, LearnerType::Observer, "{name}");
        assert!(view.servers[&3].client.is_some(), "{name}: server 3's line names its client port");
        assert!(view.servers[&1].client.is_none(), "{name}: server 1's client port is static");
        let m = view.members();
        assert_eq!(m.voters.len(), 3, "{name}");
    }
}

#[test]
fn the_learner_handshake_means_what_zab_1_0_says() {
    let p = one_packet("", &fixture("learner-FOLLOWERINFO"));
    let LearnerMessage::FollowerInfo { zxid, info } = LearnerMessage::from_packet(p).unwrap() else {
        panic!()
    };
    assert_eq!(zxid & 0xffff_ffff, 0, "FOLLOWERINFO's zxid is the accepted epoch << 32");
    assert_eq!((info.protocol_version, info.config_version), (ZAB_PROTOCOL_VERSION, 0));
    assert!((1..=3).contains(&info.sid));
    let p = one_packet("", &fixture("learner-OBSERVERINFO"));
    let LearnerMessage::ObserverInfo { info, .. } = LearnerMessage::from_packet(p).unwrap() else { panic!() };
    assert_eq!(info.sid, 4);

    let p = one_packet("", &fixture("leader-LEADERINFO"));
    let LeaderMessage::LeaderInfo { zxid, protocol_version } = LeaderMessage::from_packet(p).unwrap() else {
        panic!()
    };
    assert_eq!((zxid & 0xffff_ffff, protocol_version), (0, ZAB_PROTOCOL_VERSION));
    assert!(epoch_of(zxid) >= 1);

    let p = one_packet("", &fixture("learner-ACKEPOCH"));
    let LearnerMessage::AckEpoch { current_epoch, .. } = LearnerMessage::from_packet(p).unwrap() else {
        panic!()
    };
    assert!(current_epoch >= -1);

    let p = one_packet("", &fixture("leader-NEWLEADER"));
    let LeaderMessage::NewLeader { zxid, config: Some(config) } = LeaderMessage::from_packet(p).unwrap()
    else {
        panic!()
    };
    assert_eq!(zxid & 0xffff_ffff, 0, "NEWLEADER carries the new epoch's first zxid");
    let view = QuorumView::parse(&config).unwrap();
    assert_eq!(view.to_text().as_bytes(), &config[..]);
    assert_eq!(view.members().voters.len(), 3);

    for (name, want) in [("leader-UPTODATE", LeaderMessage::UpToDate), ("leader-SYNC", LeaderMessage::Sync)] {
        assert_eq!(LeaderMessage::from_packet(one_packet(name, &fixture(name))).unwrap(), want);
    }
    assert_eq!(one_packet("", &fixture("leader-DIFF")).typ, t::DIFF);
}

#[test]
fn pings_revalidations_and_requests() {
    let p = one_packet("", &fixture("leader-PING"));
    assert_eq!((p.data.as_ref(), p.authinfo.as_ref()), (None, None), "the leader's PING has no body");
    let LearnerMessage::Ping { touches, .. } =
        LearnerMessage::from_packet(one_packet("", &fixture("learner-PING-empty"))).unwrap()
    else {
        panic!()
    };
    assert!(touches.is_empty());
    let LearnerMessage::Ping { touches, .. } =
        LearnerMessage::from_packet(one_packet("", &fixture("learner-PING-touches"))).unwrap()
    else {
        panic!()
    };
    assert!(!touches.is_empty());
    assert!(touches.iter().all(|t| t.session_id != 0 && t.timeout_ms > 0), "{touches:?}");

    let LearnerMessage::Revalidate { session_id, timeout_ms } =
        LearnerMessage::from_packet(one_packet("", &fixture("learner-REVALIDATE"))).unwrap()
    else {
        panic!()
    };
    assert!(timeout_ms > 0);
    assert_eq!(
        LeaderMessage::from_packet(one_packet("", &fixture("leader-REVALIDATE"))).unwrap(),
        LeaderMessage::Revalidate { session_id, valid: true },
        "the leader answers for the session the learner asked about"
    );

    let LearnerMessage::Request { op, authinfo, body, .. } =
        LearnerMessage::from_packet(one_packet("", &fixture("learner-REQUEST-op1-auth"))).unwrap()
    else {
        panic!()
    };
    assert_eq!(op, 1);
    assert!(body.windows(5).any(|w| w == b"/wire"), "the create request's path");
    let auth = authinfo.unwrap();
    assert!(auth.iter().any(|id| id.scheme == "digest" && id.id.starts_with("wire:")), "{auth:?}");
    let LearnerMessage::Request { op, authinfo, .. } =
        LearnerMessage::from_packet(one_packet("", &fixture("learner-REQUEST-op-10"))).unwrap()
    else {
        panic!()
    };
    assert_eq!((op, authinfo), (-10, None), "createSession goes without authinfo");
}

fn check_snap_stream(b: &[u8]) {
    let (p, used) = decode_packet(b, MAX_DATA).unwrap().unwrap();
    let LeaderMessage::Snap { zxid } = LeaderMessage::from_packet(p.clone()).unwrap() else {
        panic!("{p:?}")
    };
    let (items, n) = snap::decode_all(&b[used..], MAX_DATA).unwrap();
    assert_eq!(used + n, b.len(), "the fixture ends with the signature");
    let mut sessions = Vec::new();
    let mut acls = Vec::new();
    let mut nodes = Vec::new();
    for item in items {
        match item {
            SnapItem::Session { id, timeout_ms } => sessions.push((id, timeout_ms)),
            SnapItem::Acl { id, acls: list } => acls.push((id, list)),
            SnapItem::Node(n) => nodes.push(n),
            SnapItem::End => {}
        }
    }
    let mut w = Writer::new();
    encode_packet_into(&p, &mut w);
    encode_snap_head(&mut w, &sessions, &acls);
    for n in &nodes {
        encode_snap_node(&mut w, n);
    }
    encode_snap_end(&mut w);
    assert_eq!(w.buf, b, "the SNAP stream re-encodes identically");

    assert_eq!(nodes[0].path, "", "the root first");
    let wire = nodes.iter().find(|n| n.path == "/wire").expect("the client's node");
    assert_eq!(wire.data.as_deref(), Some(&b"world"[..]));
    assert!(nodes.iter().any(|n| n.path == "/zookeeper/config"));
    assert!(nodes.iter().all(|n| n.stat.mzxid <= zxid), "nothing newer than the SNAP's zxid");
}

#[test]
fn the_snap_stream_holds_the_tree() {
    check_snap_stream(&fixture("leader-SNAP-stream"));
}

/// Every proper prefix of every fixture: stream decoders wait for more, whole-message decoders
/// fail, nothing panics.
#[test]
fn every_truncation_waits_or_fails() {
    for (name, b) in fixtures() {
        for k in 0..b.len() {
            let prefix = &b[..k];
            if name.starts_with("handshake-") {
                assert_eq!(decode_handshake(prefix).unwrap(), None, "{name} {k}");
            } else if name.starts_with("notification-") {
                assert_eq!(decode_frame(prefix).unwrap(), None, "{name} {k}");
                let payload = &b[4..];
                if k < payload.len() && k != 28 && k != 40 {
                    assert!(decode_notification(&payload[..k]).is_err(), "{name} payload {k}");
                }
            } else if name == "leader-SNAP-stream" {
                let (_, used) = decode_packet(&b, MAX_DATA).unwrap().unwrap();
                if k < used {
                    assert_eq!(decode_packet(prefix, MAX_DATA).unwrap(), None, "{name} {k}");
                } else {
                    assert!(
                        matches!(
                            snap::decode_all(&prefix[used..], MAX_DATA),
                            Err(WireError::Truncated { .. })
                        ),
                        "{name} {k}"
                    );
                }
            } else {
                assert_eq!(decode_packet(prefix, MAX_DATA).unwrap(), None, "{name} {k}");
            }
        }
        // The bodies with fixed fields: each shorter body is an error.
        if name.starts_with("learner-") || (name.starts_with("leader-") && name != "leader-SNAP-stream") {
            let p = one_packet(&name, &b);
            let Some(data) = p.data.clone() else { continue };
            let min = match (name.starts_with("leader-"), p.typ) {
                (false, t::FOLLOWERINFO | t::OBSERVERINFO) => 20,
                (false, t::REQUEST) => 16,
                (false, t::REVALIDATE) => 12,
                (false, t::ACKEPOCH) | (true, t::LEADERINFO) => 4,
                (true, t::REVALIDATE) => 9,
                (false, t::PING) => 12,
                _ => 0,
            };
            for k in 0..data.len().min(min) {
                let q = QuorumPacket { data: Some(data[..k].to_vec()), ..p.clone() };
                let r = if name.starts_with("leader-") {
                    LeaderMessage::from_packet(q).map(|_| ())
                } else {
                    LearnerMessage::from_packet(q).map(|_| ())
                };
                let empty_ping = p.typ == t::PING && k == 0;
                assert_eq!(r.is_err(), !empty_ping, "{name} data {k}");
            }
        }
    }
}
