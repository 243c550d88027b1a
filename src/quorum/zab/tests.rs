//! Short stories of ZAB, each step checked against the exact list of actions it returns.

use std::sync::Arc;

use super::*;
use crate::quorum::election::ElectionConfig;
use crate::quorum::peer::{Peer, PeerConfig, PeerInit};
use crate::quorum::{epoch_of, make_zxid, Members};

fn zcfg(my_id: Sid) -> ZabConfig {
    ZabConfig {
        epoch_counter_start: 0,
        my_id,
        tick_ms: 2000,
        init_limit: 10,
        sync_limit: 5,
        commit_log_count: COMMIT_LOG_COUNT_DEFAULT,
    }
}

fn prop(zxid: i64) -> Proposal {
    Proposal { zxid, data: Arc::from(format!("txn {zxid:x}").as_bytes()) }
}

fn standalone(last_zxid: i64) -> Peer {
    let cfg = PeerConfig {
        zab: zcfg(1),
        members: Members::new([1], []),
        standalone: true,
        election: ElectionConfig::default(),
        announced_config: None,
    };
    let init = PeerInit { accepted_epoch: 0, current_epoch: 0, last_zxid, log_tail: vec![] };
    let (p, out) = Peer::new(cfg, init, 0).unwrap();
    assert_eq!(
        out,
        vec![
            Action::State { state: PeerState::Leading, leader: Some(1) },
            Action::Serving {
                role: Role::Standalone,
                epoch: epoch_of(last_zxid),
                next_zxid: Some(last_zxid + 1)
            },
        ]
    );
    p
}

#[test]
fn standalone_durable_commits_at_once() {
    let mut p = standalone(make_zxid(3, 7));
    let z = make_zxid(3, 8);
    assert_eq!(p.step(Input::Propose(prop(z)), 10), vec![Action::Append(prop(z))]);
    assert_eq!(p.step(Input::Propose(prop(z + 1)), 10), vec![Action::Append(prop(z + 1))]);
    assert_eq!(p.step(Input::Durable { zxid: z + 1 }, 11), vec![Action::Commit { zxid: z + 1 }]);
    // A sync with nothing outstanding is answered at once: the leader alone is a quorum.
    let sync = Input::Sync { session: 1, cxid: 1, data: vec![], authinfo: vec![] };
    assert_eq!(p.step(sync.clone(), 12), vec![Action::SyncDone]);
    // With a proposal outstanding, it waits for its commit.
    assert_eq!(p.step(Input::Propose(prop(z + 2)), 13), vec![Action::Append(prop(z + 2))]);
    assert_eq!(p.step(sync, 13), vec![]);
    assert_eq!(
        p.step(Input::Durable { zxid: z + 2 }, 14),
        vec![Action::Commit { zxid: z + 2 }, Action::SyncDone]
    );
    // Nothing is ever due: a driver that ticks at next_wake_ms must not spin.
    assert_eq!(p.next_wake_ms(), i64::MAX as u64);
    // The reused-buffer entry point.
    let mut out = Vec::with_capacity(4);
    p.step_into(Input::Propose(prop(z + 3)), 15, &mut out);
    p.step_into(Input::Durable { zxid: z + 3 }, 15, &mut out);
    assert_eq!(out, vec![Action::Append(prop(z + 3)), Action::Commit { zxid: z + 3 }]);
}

// ---------------------------------------------------------------------------------------------
// Helpers: packets as the stories write them.

use super::leader::Leader;
use super::learner::Learner;
use crate::quorum::packet_type as pt;
use crate::quorum::wire::{LeaderMessage, LearnerInfo, LearnerMessage, Touch, ZAB_PROTOCOL_VERSION};
use crate::quorum::{LearnerType, QuorumPacket};

const T: i64 = 2000; // tick_ms

fn z(e: u32, c: u32) -> i64 {
    make_zxid(e, c)
}
fn pk(typ: i32, zxid: i64) -> QuorumPacket {
    QuorumPacket { typ, zxid, data: None, authinfo: None }
}
fn pkd(typ: i32, zxid: i64, data: Vec<u8>) -> QuorumPacket {
    QuorumPacket { typ, zxid, data: Some(data), authinfo: None }
}
fn info(typ: i32, sid: Sid, accepted: u32) -> QuorumPacket {
    let info = LearnerInfo { sid, protocol_version: ZAB_PROTOCOL_VERSION, config_version: 0 };
    let zxid = z(accepted, 0);
    if typ == pt::OBSERVERINFO {
        LearnerMessage::ObserverInfo { zxid, info }.to_packet()
    } else {
        LearnerMessage::FollowerInfo { zxid, info }.to_packet()
    }
}
fn leaderinfo(epoch: u32) -> QuorumPacket {
    LeaderMessage::LeaderInfo { zxid: z(epoch, 0), protocol_version: ZAB_PROTOCOL_VERSION }.to_packet()
}
fn ackepoch(last: i64, current: i32) -> QuorumPacket {
    LearnerMessage::AckEpoch { last_zxid: last, current_epoch: current }.to_packet()
}
fn touches(t: &[(i64, i32)]) -> Vec<u8> {
    let touches = t.iter().map(|&(session_id, timeout_ms)| Touch { session_id, timeout_ms }).collect();
    LearnerMessage::Ping { zxid: 0, touches }.to_packet().data.unwrap_or_default()
}
fn request(
    session_id: i64,
    cxid: i32,
    op: i32,
    body: &[u8],
    authinfo: Vec<crate::proto::Id>,
) -> QuorumPacket {
    LearnerMessage::Request { session_id, cxid, op, body: body.to_vec(), authinfo: Some(authinfo) }
        .to_packet()
}
fn proposal_pk(zxid: i64) -> QuorumPacket {
    pkd(pt::PROPOSAL, zxid, prop(zxid).data.to_vec())
}
fn inform_pk(zxid: i64) -> QuorumPacket {
    pkd(pt::INFORM, zxid, prop(zxid).data.to_vec())
}
fn send(to: Sid, packet: QuorumPacket) -> Action {
    Action::Send { to, packet }
}
fn from(sid: Sid, packet: QuorumPacket) -> Input {
    Input::Packet { from: sid, packet }
}
fn history(last: i64, tail: &[i64]) -> History {
    History::new(COMMIT_LOG_COUNT_DEFAULT, last, tail.iter().map(|&x| prop(x)))
}
fn sync_input() -> Input {
    Input::Sync { session: 5, cxid: 9, data: b"\0\0\0\x01/".to_vec(), authinfo: vec![] }
}

fn step_l(l: &mut Leader, input: Input, now: i64) -> (Vec<Action>, Flow) {
    let mut out = Vec::new();
    let f = l.step(input, now, &mut out);
    (out, f)
}
fn step_f(l: &mut Learner, input: Input, now: i64) -> (Vec<Action>, Flow) {
    let mut out = Vec::new();
    let f = l.step(input, now, &mut out);
    (out, f)
}
/// Steps and expects the role to go on.
fn ok_l(l: &mut Leader, input: Input, now: i64) -> Vec<Action> {
    let (out, f) = step_l(l, input, now);
    assert_eq!(f, Flow::Continue, "{out:?}");
    out
}
fn ok_f(l: &mut Learner, input: Input, now: i64) -> Vec<Action> {
    let (out, f) = step_f(l, input, now);
    assert_eq!(f, Flow::Continue, "{out:?}");
    out
}

/// Leader 3 of voters {1,2,3} (+ observer 4), at epoch 1 with txns 1:1 and 1:2.
fn leader3() -> Leader {
    let mut out = Vec::new();
    let (l, f) = Leader::start(
        zcfg(3),
        Members::new([1, 2, 3], [4]),
        history(z(1, 2), &[z(1, 1), z(1, 2)]),
        1,
        1,
        0,
        &mut out,
    );
    assert_eq!(f, Flow::Continue);
    assert_eq!(out, vec![Action::State { state: PeerState::Leading, leader: Some(3) }]);
    l
}

/// Leader 3 serving epoch 2 with followers 1 and 2 (and observer 4 if `observer`) up to date.
fn serving_leader(observer: bool) -> Leader {
    let mut l = leader3();
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    ok_l(&mut l, from(1, ackepoch(z(1, 2), 1)), 20);
    ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 2, 1)), 30);
    ok_l(&mut l, from(2, ackepoch(z(1, 2), 1)), 40);
    if observer {
        ok_l(&mut l, from(4, info(pt::OBSERVERINFO, 4, 1)), 45);
        ok_l(&mut l, from(4, ackepoch(z(1, 2), 1)), 46);
        ok_l(&mut l, from(4, pk(pt::ACK, z(2, 0))), 47);
    }
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 50);
    ok_l(&mut l, from(2, pk(pt::ACK, z(2, 0))), 60);
    for s in [1, 2] {
        ok_l(&mut l, from(s, pk(pt::ACK, z(2, 0))), 70);
    }
    assert!(l.is_serving());
    l
}

/// Follower 1 of leader 3, accepted/current epoch 1, history 1:1, 1:2, connected and past
/// LEADERINFO of epoch 2.
fn follower1(typ: LearnerType) -> Learner {
    let mut out = Vec::new();
    let mut f = Learner::start(zcfg(1), 3, typ, history(z(1, 2), &[z(1, 1), z(1, 2)]), 1, 1, 0, &mut out);
    let state = if typ == LearnerType::Observer { PeerState::Observing } else { PeerState::Following };
    assert_eq!(out, vec![Action::State { state, leader: Some(3) }, Action::Connect { leader: 3 }]);
    let info_typ = if typ == LearnerType::Observer { pt::OBSERVERINFO } else { pt::FOLLOWERINFO };
    assert_eq!(ok_f(&mut f, Input::Connected { sid: 3 }, 5), vec![send(3, info(info_typ, 1, 1))]);
    assert_eq!(
        ok_f(&mut f, from(3, leaderinfo(2)), 10),
        vec![Action::PersistAcceptedEpoch(2), send(3, ackepoch(z(1, 2), 1))]
    );
    f
}

// ---------------------------------------------------------------------------------------------
// Discovery and synchronisation.

#[test]
fn three_nodes_establish_epoch_two() {
    let mut l = leader3();
    // Follower 1 (accepted epoch 1) connects: with the leader, a quorum: epoch 2 = 1 + max(1, 1).
    assert_eq!(
        ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10),
        vec![Action::PersistAcceptedEpoch(2), send(1, leaderinfo(2))]
    );
    // Its ACKEPOCH (in sync with the leader) completes the epoch quorum: currentEpoch is
    // recorded and the follower gets an empty DIFF and NEWLEADER.
    assert_eq!(
        ok_l(&mut l, from(1, ackepoch(z(1, 2), 1)), 20),
        vec![
            Action::PersistCurrentEpoch(2),
            send(1, pk(pt::DIFF, z(1, 2))),
            send(1, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
    // Follower 2 comes later, one txn behind: LEADERINFO at once, then a DIFF with 1:2.
    assert_eq!(ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 2, 1)), 30), vec![send(2, leaderinfo(2))]);
    assert_eq!(
        ok_l(&mut l, from(2, ackepoch(z(1, 1), 1)), 40),
        vec![
            send(2, pk(pt::DIFF, z(1, 2))),
            send(2, proposal_pk(z(1, 2))),
            send(2, pk(pt::COMMIT, z(1, 2))),
            send(2, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
    // Follower 1's NEWLEADER ACK makes a quorum with the leader: it serves and sends UPTODATE.
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 50),
        vec![
            Action::Serving { role: Role::Leader, epoch: 2, next_zxid: Some(z(2, 1)) },
            send(1, pk(pt::UPTODATE, -1))
        ]
    );
    // Follower 2's ACK after that: UPTODATE at once.
    assert_eq!(ok_l(&mut l, from(2, pk(pt::ACK, z(2, 0))), 60), vec![send(2, pk(pt::UPTODATE, -1))]);
    // Their ACKs of UPTODATE count for nothing.
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 61), vec![]);
    // The first proposal of epoch 2 goes to both and to the local log.
    assert_eq!(
        ok_l(&mut l, Input::Propose(prop(z(2, 1))), 70),
        vec![send(1, proposal_pk(z(2, 1))), send(2, proposal_pk(z(2, 1))), Action::Append(prop(z(2, 1)))]
    );
    // One follower's ACK is not a quorum of three without the leader's own durability.
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 80), vec![]);
    assert_eq!(
        ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 90),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) }
        ]
    );
    // A late ACK of a committed proposal is fine.
    assert_eq!(ok_l(&mut l, from(2, pk(pt::ACK, z(2, 1))), 95), vec![]);
}

#[test]
fn follower_side_of_the_epoch_establishment() {
    let mut f = follower1(LearnerType::Participant);
    // A DIFF with one committed proposal: nothing is applied before NEWLEADER.
    assert_eq!(ok_f(&mut f, from(3, pk(pt::DIFF, z(1, 3))), 20), vec![]);
    assert_eq!(ok_f(&mut f, from(3, proposal_pk(z(1, 3))), 21), vec![]);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::COMMIT, z(1, 3))), 22), vec![]);
    // Pings during sync are ignored, as ZooKeeper's learner ignores them.
    assert_eq!(ok_f(&mut f, from(3, pk(pt::PING, z(1, 3))), 23), vec![]);
    // NEWLEADER: log what came; the epoch is recorded and ACKed only once the log is durable
    // (ZOOKEEPER-4646).
    assert_eq!(ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 30), vec![Action::Append(prop(z(1, 3)))]);
    // A proposal of the new epoch before UPTODATE waits.
    assert_eq!(ok_f(&mut f, from(3, proposal_pk(z(2, 1))), 31), vec![]);
    assert_eq!(
        ok_f(&mut f, Input::Durable { zxid: z(1, 3) }, 32),
        vec![Action::PersistCurrentEpoch(2), send(3, pk(pt::ACK, z(2, 0)))]
    );
    // UPTODATE: ACK it, ACK what NEWLEADER logged, log the rest, apply the commits, serve.
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 40),
        vec![
            send(3, pk(pt::ACK, z(2, 0))),
            send(3, pk(pt::ACK, z(1, 3))),
            Action::Append(prop(z(2, 1))),
            Action::Commit { zxid: z(1, 3) },
            Action::Serving { role: Role::Follower, epoch: 2, next_zxid: None },
        ]
    );
    assert_eq!(ok_f(&mut f, Input::Durable { zxid: z(2, 1) }, 41), vec![send(3, pk(pt::ACK, z(2, 1)))]);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::COMMIT, z(2, 1))), 42), vec![Action::Commit { zxid: z(2, 1) }]);
    // Broadcast: a proposal is logged, ACKed when durable, applied when committed.
    assert_eq!(ok_f(&mut f, from(3, proposal_pk(z(2, 2))), 50), vec![Action::Append(prop(z(2, 2)))]);
    assert_eq!(ok_f(&mut f, Input::Durable { zxid: z(2, 2) }, 51), vec![send(3, pk(pt::ACK, z(2, 2)))]);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::COMMIT, z(2, 2))), 52), vec![Action::Commit { zxid: z(2, 2) }]);
    // Pings are answered with the sessions touched since the last one.
    ok_f(&mut f, Input::Touch { sessions: vec![(7, 30000), (8, 4000)] }, 53);
    ok_f(&mut f, Input::Touch { sessions: vec![(7, 30000)] }, 54);
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::PING, z(2, 2))), 60),
        vec![send(3, pkd(pt::PING, z(2, 2), touches(&[(7, 30000), (8, 4000)])))]
    );
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::PING, z(2, 2))), 61),
        vec![send(3, pkd(pt::PING, z(2, 2), vec![]))]
    );
}

#[test]
fn learner_epoch_edges() {
    // The leader proposes the epoch this learner already accepted: it answers -1.
    let mut out = Vec::new();
    let mut f =
        Learner::start(zcfg(1), 3, LearnerType::Participant, history(z(1, 2), &[]), 2, 1, 0, &mut out);
    ok_f(&mut f, Input::Connected { sid: 3 }, 1);
    assert_eq!(ok_f(&mut f, from(3, leaderinfo(2)), 2), vec![send(3, ackepoch(z(1, 2), -1))]);
    // An older epoch than the accepted one: the learner gives up on this leader.
    let mut f =
        Learner::start(zcfg(1), 3, LearnerType::Participant, history(z(1, 2), &[]), 3, 1, 0, &mut out);
    ok_f(&mut f, Input::Connected { sid: 3 }, 1);
    let (out, flow) = step_f(&mut f, from(3, leaderinfo(2)), 2);
    assert_eq!(out, vec![]);
    assert_eq!(flow, Flow::Abandon("Leaders epoch, 2 is less than accepted epoch, 3".into()));
}

#[test]
fn leader_refuses_a_follower_ahead_of_it_and_strangers() {
    let mut l = leader3();
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    // Follower 1 has a newer history (same epoch, later zxid).
    assert_eq!(
        ok_l(&mut l, from(1, ackepoch(z(1, 5), 1)), 20),
        vec![Action::Disconnect {
            sid: 1,
            reason:
                "Follower is ahead of the leader, leader summary: 1 (current epoch), 0x100000002 (last zxid)"
                    .into()
        }]
    );
    // Not in the configuration; an observer claiming to be a follower; our own sid.
    for (sid, typ) in
        [(9, pt::FOLLOWERINFO), (4, pt::FOLLOWERINFO), (3, pt::FOLLOWERINFO), (2, pt::OBSERVERINFO)]
    {
        assert_eq!(
            ok_l(&mut l, from(sid, info(typ, sid, 1)), 30),
            vec![Action::Disconnect { sid, reason: format!("sid {sid} is not a member of the ensemble") }]
        );
    }
    // A LearnerInfo that names another sid, or is truncated.
    let out = ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 1, 1)), 31);
    assert!(matches!(&out[..], [Action::Disconnect { sid: 2, .. }]), "{out:?}");
    let out = ok_l(&mut l, from(2, pkd(pt::FOLLOWERINFO, 0, vec![0, 0, 0])), 32);
    assert!(matches!(&out[..], [Action::Disconnect { sid: 2, .. }]), "{out:?}");
    // A packet from a sid that sent no FOLLOWERINFO.
    assert_eq!(
        ok_l(&mut l, from(2, pk(pt::ACK, z(1, 1))), 33),
        vec![Action::Disconnect {
            sid: 2,
            reason: "unexpected ACK in a connection that sent no FOLLOWERINFO".into()
        }]
    );
}

#[test]
fn discovery_times_out_without_a_quorum() {
    let mut l = leader3();
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    // The epoch quorum formed; ACKEPOCHs never come.
    assert_eq!(ok_l(&mut l, Input::Tick, 10 + 10 * T - 1), vec![]);
    let (out, flow) = step_l(&mut l, Input::Tick, 10 + 10 * T);
    assert_eq!(out, vec![]);
    assert_eq!(flow, Flow::Abandon("Timeout while waiting for epoch to be acked by quorum".into()));

    let mut l = leader3();
    let (_, flow) = step_l(&mut l, Input::Tick, 10 * T);
    assert_eq!(flow, Flow::Abandon("Timeout while waiting for epoch from quorum".into()));
}

/// Leader 3 serving epoch 2 with follower 1 only (a quorum of three with the leader).
fn leader_with_follower1() -> Leader {
    let mut l = leader3();
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    ok_l(&mut l, from(1, ackepoch(z(1, 2), 1)), 20);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 30);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 31);
    assert!(l.is_serving());
    l
}

/// Follower 2 connects late and reports `last` in ACKEPOCH; returns what the leader sends it.
fn late_follower2(l: &mut Leader, last: i64, now: i64) -> Vec<Action> {
    assert_eq!(ok_l(l, from(2, info(pt::FOLLOWERINFO, 2, 1)), now), vec![send(2, leaderinfo(2))]);
    ok_l(l, from(2, ackepoch(last, 1)), now + 1)
}

#[test]
fn sync_trunc_then_outstanding_proposals() {
    // Server 2 led epoch 1 and logged 1:5 alone; it comes back after the new leader proposed 2:1.
    let mut l = leader_with_follower1();
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 40);
    assert_eq!(
        late_follower2(&mut l, z(1, 5), 50),
        vec![
            send(2, pk(pt::TRUNC, z(1, 2))),
            send(2, proposal_pk(z(2, 1))),
            send(2, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
    // The commit of 2:1 now reaches it too.
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 60), vec![]);
    assert_eq!(
        ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 61),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) }
        ]
    );
}

#[test]
fn sync_diff_with_committed_proposals() {
    let mut l = leader_with_follower1();
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 40);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 41);
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 42);
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 43);
    // One txn behind on epoch 1: the rest of the window with commits, then the outstanding 2:2.
    assert_eq!(
        late_follower2(&mut l, z(1, 1), 50),
        vec![
            send(2, pk(pt::DIFF, z(2, 1))),
            send(2, proposal_pk(z(1, 2))),
            send(2, pk(pt::COMMIT, z(1, 2))),
            send(2, proposal_pk(z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            send(2, proposal_pk(z(2, 2))),
            send(2, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
}

#[test]
fn a_proposal_ack_before_the_newleader_ack_counts_and_the_newleader_ack_is_still_awaited() {
    // A ZooKeeper 3.8.0 follower ACKs the outstanding proposal the sync brought (2:2) before
    // it ACKs NEWLEADER (its sync thread races the ACK of NEWLEADER).
    let mut l = leader_with_follower1();
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 40);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 41);
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 42);
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 43);
    late_follower2(&mut l, z(2, 1), 50);
    // Follower 2's ACK makes a quorum with the leader for 2:2; it stays connected.
    assert_eq!(ok_l(&mut l, from(2, pk(pt::ACK, z(2, 2))), 60), vec![]);
    assert_eq!(
        ok_l(&mut l, Input::Durable { zxid: z(2, 2) }, 61),
        vec![
            send(1, pk(pt::COMMIT, z(2, 2))),
            send(2, pk(pt::COMMIT, z(2, 2))),
            Action::Commit { zxid: z(2, 2) }
        ]
    );
    // Then NEWLEADER's ACK: UPTODATE.
    let out = ok_l(&mut l, from(2, pk(pt::ACK, z(2, 0))), 62);
    assert!(
        out.iter().any(|a| matches!(a, Action::Send { to: 2, packet } if packet.typ == pt::UPTODATE)),
        "{out:?}"
    );
    // An ACK of another epoch is still refused.
    let mut l = leader_with_follower1();
    late_follower2(&mut l, z(1, 2), 70);
    let (out, _) = step_l(&mut l, from(2, pk(pt::ACK, z(1, 2))), 71);
    assert!(matches!(&out[..], [Action::Disconnect { sid: 2, .. }]), "{out:?}");
}

#[test]
fn sync_snap_when_outside_the_window_or_across_an_epoch() {
    let mut l = leader_with_follower1();
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 40);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 41);
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 42);
    // Row 6: server 2 logged 1:5 alone in epoch 1; the leader's next txn after 1:2 is 2:1.
    assert_eq!(
        late_follower2(&mut l, z(1, 5), 50),
        vec![
            send(2, pk(pt::SNAP, z(2, 1))),
            Action::SendSnapshot { to: 2, zxid: z(2, 1) },
            send(2, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
    // Row 7: an empty server, older than the window.
    ok_l(&mut l, Input::Disconnected { sid: 2 }, 60);
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 61);
    assert_eq!(
        late_follower2(&mut l, 0, 70),
        vec![
            send(2, pk(pt::SNAP, z(2, 1))),
            Action::SendSnapshot { to: 2, zxid: z(2, 1) },
            send(2, proposal_pk(z(2, 2))),
            send(2, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
}

#[test]
fn sync_trunc_plus_diff_row() {
    // Row 5 at the leader: the window has a txn after the learner's in the same epoch, and the
    // learner's own is not in it (it logged 1:3, which was never committed).
    let mut out = Vec::new();
    let h = history(z(1, 5), &[z(1, 1), z(1, 2), z(1, 4), z(1, 5)]);
    let (mut l, _) = Leader::start(zcfg(3), Members::new([1, 2, 3], []), h, 1, 1, 0, &mut out);
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    // Its current epoch is 0: not ahead of the leader, so it is synced.
    assert_eq!(
        ok_l(&mut l, from(1, ackepoch(z(1, 3), 0)), 20),
        vec![
            Action::PersistCurrentEpoch(2),
            send(1, pk(pt::TRUNC, z(1, 2))),
            send(1, proposal_pk(z(1, 4))),
            send(1, pk(pt::COMMIT, z(1, 4))),
            send(1, proposal_pk(z(1, 5))),
            send(1, pk(pt::COMMIT, z(1, 5))),
            send(1, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
}

#[test]
fn learner_trunc_then_diff() {
    let mut out = Vec::new();
    let h = history(z(1, 3), &[z(1, 1), z(1, 2), z(1, 3)]);
    let mut f = Learner::start(zcfg(1), 3, LearnerType::Participant, h, 1, 0, 0, &mut out);
    ok_f(&mut f, Input::Connected { sid: 3 }, 1);
    assert_eq!(
        ok_f(&mut f, from(3, leaderinfo(2)), 2),
        vec![Action::PersistAcceptedEpoch(2), send(3, ackepoch(z(1, 3), 0))]
    );
    assert_eq!(ok_f(&mut f, from(3, pk(pt::TRUNC, z(1, 2))), 3), vec![Action::Truncate { zxid: z(1, 2) }]);
    ok_f(&mut f, from(3, proposal_pk(z(1, 4))), 4);
    ok_f(&mut f, from(3, pk(pt::COMMIT, z(1, 4))), 5);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 6), vec![Action::Append(prop(z(1, 4)))]);
    // A durability report of the truncated txn does not count.
    assert_eq!(ok_f(&mut f, Input::Durable { zxid: z(1, 2) }, 7), vec![]);
    assert_eq!(
        ok_f(&mut f, Input::Durable { zxid: z(1, 4) }, 8),
        vec![Action::PersistCurrentEpoch(2), send(3, pk(pt::ACK, z(2, 0)))]
    );
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 9),
        vec![
            send(3, pk(pt::ACK, z(2, 0))),
            send(3, pk(pt::ACK, z(1, 4))),
            Action::Commit { zxid: z(1, 4) },
            Action::Serving { role: Role::Follower, epoch: 2, next_zxid: None },
        ]
    );
    // Leaving the role now: nothing logged beyond the commits, nothing to fast-forward.
    let mut out = Vec::new();
    let ended = f.finish("test", &mut out);
    assert_eq!(ended.fast_forward, None);
    assert_eq!(ended.history.last_zxid(), z(1, 4));
    assert_eq!((ended.accepted_epoch, ended.current_epoch), (2, 2));
}

#[test]
fn learner_snap_handshake() {
    let mut f = follower1(LearnerType::Participant);
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::SNAP, z(2, 1))), 20),
        vec![Action::LoadSnapshot { zxid: z(2, 1) }]
    );
    ok_f(&mut f, Input::SnapshotLoaded { zxid: z(2, 1) }, 21);
    ok_f(&mut f, from(3, proposal_pk(z(2, 2))), 22);
    // Nothing logged yet: NEWLEADER is ACKed at once.
    assert_eq!(ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 23), vec![Action::Append(prop(z(2, 2)))]);
    // 2:2 must be durable first.
    assert_eq!(
        ok_f(&mut f, Input::Durable { zxid: z(2, 2) }, 24),
        vec![Action::PersistCurrentEpoch(2), send(3, pk(pt::ACK, z(2, 0)))]
    );
    assert_eq!(
        ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 25),
        vec![
            send(3, pk(pt::ACK, z(2, 0))),
            send(3, pk(pt::ACK, z(2, 2))),
            Action::Serving { role: Role::Follower, epoch: 2, next_zxid: None },
        ]
    );
    // The leader goes away with 2:2 uncommitted: it was logged, so the replica fast-forwards.
    let (out, flow) = step_f(&mut f, Input::Disconnected { sid: 3 }, 30);
    assert_eq!((out, flow), (vec![], Flow::Abandon("connection to leader 3 closed".into())));
    let mut out = Vec::new();
    let ended = f.finish("connection to leader 3 closed", &mut out);
    assert_eq!(out, vec![Action::Disconnect { sid: 3, reason: "connection to leader 3 closed".into() }]);
    assert_eq!(ended.fast_forward, Some(z(2, 2)));
    assert_eq!(ended.history.last_zxid(), z(2, 2));
}

#[test]
fn learner_refuses_packets_while_the_snapshot_loads() {
    let mut f = follower1(LearnerType::Participant);
    ok_f(&mut f, from(3, pk(pt::SNAP, z(2, 1))), 20);
    let (out, flow) = step_f(&mut f, from(3, proposal_pk(z(2, 2))), 21);
    assert_eq!(out, vec![]);
    assert_eq!(
        flow,
        Flow::Abandon("leader 3 broke the protocol: unexpected PROPOSAL in snapshot loading".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Broadcast.

#[test]
fn committed_by_a_quorum_without_the_slow_follower() {
    let mut l = serving_leader(false);
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 100);
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 101);
    ok_l(&mut l, Input::Durable { zxid: z(2, 2) }, 102);
    // Follower 1 acks both; follower 2 is slow. The leader and 1 are a quorum of three: both
    // commit, in order, and the slow follower gets the COMMITs too.
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 110),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) }
        ]
    );
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(2, 2))), 111),
        vec![
            send(1, pk(pt::COMMIT, z(2, 2))),
            send(2, pk(pt::COMMIT, z(2, 2))),
            Action::Commit { zxid: z(2, 2) }
        ]
    );
    // Follower 1 keeps answering pings; follower 2 answers pings but never acks 2:1: after
    // syncLimit ticks the leader drops it at a ping (ZooKeeper's SyncLimitCheck).
    let mut t = 100;
    loop {
        t += T / 2;
        let (out, flow) = step_l(&mut l, Input::Tick, t);
        assert_eq!(flow, Flow::Continue);
        if out.iter().any(|a| matches!(a, Action::Disconnect { .. })) {
            assert_eq!(
                out,
                vec![
                    Action::Disconnect {
                        sid: 2,
                        reason: "Closing connection to peer due to transaction timeout.".into()
                    },
                    send(1, pk(pt::PING, z(2, 2))),
                ]
            );
            break;
        }
        assert_eq!(out, vec![send(1, pk(pt::PING, z(2, 2))), send(2, pk(pt::PING, z(2, 2)))]);
        ok_l(&mut l, from(1, pkd(pt::PING, z(2, 2), vec![])), t + 1);
        ok_l(&mut l, from(2, pkd(pt::PING, z(2, 2), vec![])), t + 1);
        assert!(t < 100 + 5 * T + T, "the slow follower was never dropped");
    }
    assert!(t >= 100 + 5 * T, "dropped before syncLimit: {t}");
}

#[test]
fn an_ack_from_a_replaced_connection_does_not_count() {
    // Follower 1 acks 2:1 while the leader's own write is still in flight; then its connection
    // is replaced and the sync truncates its log back to the last committed zxid. The old ack
    // no longer means the txn is on its disk: the leader's own durability is not a quorum
    // (simulator seed 319350 lost a txn committed that way).
    let mut l = serving_leader(false);
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 100);
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 101), vec![]);
    assert_eq!(ok_l(&mut l, Input::Disconnected { sid: 1 }, 102), vec![]);
    assert_eq!(ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 2)), 103), vec![send(1, leaderinfo(2))]);
    assert_eq!(
        ok_l(&mut l, from(1, ackepoch(z(2, 1), -1)), 104),
        vec![
            send(1, pk(pt::TRUNC, z(1, 2))),
            send(1, proposal_pk(z(2, 1))),
            send(1, pk(pt::NEWLEADER, z(2, 0))),
        ]
    );
    assert_eq!(ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 105), vec![], "an old ack committed 2:1");
    // Its ack on the new connection (here before its NEWLEADER ACK, as ZooKeeper 3.8.0 may
    // send it) commits.
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 106),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) }
        ]
    );
    // A new FOLLOWERINFO on the same sid (no Disconnected in between) clears its acks too.
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 110);
    ok_l(&mut l, from(2, pk(pt::ACK, z(2, 2))), 111);
    ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 2, 2)), 112);
    assert_eq!(ok_l(&mut l, Input::Durable { zxid: z(2, 2) }, 113), vec![]);
}

#[test]
fn a_learner_that_accepted_a_newer_epoch_makes_an_established_leader_step_down() {
    // Server 1 accepted epoch 3 from a leadership attempt that never established it: it would
    // refuse LEADERINFO(2). The leader steps down so the next epoch passes 3.
    let mut l = serving_leader(false);
    ok_l(&mut l, Input::Disconnected { sid: 1 }, 100);
    let (out, flow) = step_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 3)), 101);
    assert_eq!(out, vec![]);
    assert!(matches!(&flow, Flow::Abandon(m) if m.contains("accepted epoch 3")), "{flow:?}");
    // An epoch far ahead (a corrupt file) is not followed: that learner stays out.
    let mut l = serving_leader(false);
    ok_l(&mut l, Input::Disconnected { sid: 1 }, 100);
    assert_eq!(ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 2 + 17)), 101), vec![send(1, leaderinfo(2))]);
    // Its own epoch, or an older one: LEADERINFO as usual.
    assert_eq!(ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 2, 2)), 102), vec![send(2, leaderinfo(2))]);
}

#[test]
fn observer_gets_informs_not_proposals() {
    let mut l = serving_leader(true);
    assert_eq!(
        ok_l(&mut l, Input::Propose(prop(z(2, 1))), 100),
        vec![send(1, proposal_pk(z(2, 1))), send(2, proposal_pk(z(2, 1))), Action::Append(prop(z(2, 1)))]
    );
    // The observer's ACK (it never sends one) would not count; follower 2's does.
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, 101);
    assert_eq!(
        ok_l(&mut l, from(2, pk(pt::ACK, z(2, 1))), 102),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            send(4, inform_pk(z(2, 1))),
            Action::Commit { zxid: z(2, 1) },
        ]
    );
}

#[test]
fn observer_side() {
    let mut o = follower1(LearnerType::Observer);
    // The DIFF carries committed proposals; informs may come during sync too.
    ok_f(&mut o, from(3, pk(pt::DIFF, z(1, 3))), 20);
    ok_f(&mut o, from(3, proposal_pk(z(1, 3))), 21);
    ok_f(&mut o, from(3, pk(pt::COMMIT, z(1, 3))), 22);
    // An observer logs nothing at NEWLEADER and ACKs at once.
    assert_eq!(
        ok_f(&mut o, from(3, pk(pt::NEWLEADER, z(2, 0))), 23),
        vec![Action::PersistCurrentEpoch(2), send(3, pk(pt::ACK, z(2, 0)))]
    );
    ok_f(&mut o, from(3, inform_pk(z(2, 1))), 24);
    assert_eq!(
        ok_f(&mut o, from(3, pk(pt::UPTODATE, -1)), 25),
        vec![
            send(3, pk(pt::ACK, z(2, 0))),
            Action::Append(prop(z(1, 3))),
            Action::Append(prop(z(2, 1))),
            Action::Commit { zxid: z(2, 1) },
            Action::Serving { role: Role::Observer, epoch: 2, next_zxid: None },
        ]
    );
    // An INFORM is logged and applied at once; no ACK, not even when durable.
    assert_eq!(
        ok_f(&mut o, from(3, inform_pk(z(2, 2))), 30),
        vec![Action::Append(prop(z(2, 2))), Action::Commit { zxid: z(2, 2) }]
    );
    assert_eq!(ok_f(&mut o, Input::Durable { zxid: z(2, 2) }, 31), vec![]);
    // ZooKeeper's observer ignores proposals and commits.
    assert_eq!(ok_f(&mut o, from(3, proposal_pk(z(2, 3))), 32), vec![]);
    // An INFORM going backwards breaks the protocol.
    let (_, flow) = step_f(&mut o, from(3, inform_pk(z(2, 1))), 33);
    assert_eq!(
        flow,
        Flow::Abandon(
            "leader 3 broke the protocol: zxid 0x200000001 goes backwards (after 0x200000002)".into()
        )
    );
}

#[test]
fn leader_steps_down_without_a_quorum() {
    let mut l = serving_leader(false);
    // Only follower 1 answers. One of two followers plus the leader is still a quorum.
    let mut t = 70;
    for _ in 0..(4 * 5) {
        t += T / 2;
        let (_, flow) = step_l(&mut l, Input::Tick, t);
        assert_eq!(flow, Flow::Continue, "at {t}");
        ok_l(&mut l, from(1, pkd(pt::PING, z(2, 0), vec![])), t);
    }
    // Now follower 1 falls silent too: once syncLimit (5 ticks) has passed since it was last
    // heard, its connection times out and the leader steps down (follower 2's connection timed
    // out long before).
    let last_heard = t;
    loop {
        t += T / 2;
        let (out, flow) = step_l(&mut l, Input::Tick, t);
        if let Flow::Abandon(reason) = flow {
            assert_eq!(out, vec![Action::Disconnect { sid: 1, reason: "read timed out".into() }]);
            assert_eq!(reason, "Not sufficient followers synced, only synced with sids: [ 3 ]");
            break;
        }
        assert!(t < last_heard + 5 * T, "still leading {} ms after the last ping reply", t - last_heard);
    }
    assert_eq!(t, last_heard + 5 * T);
}

#[test]
fn learner_abandons_a_silent_leader() {
    let mut f = follower1(LearnerType::Participant);
    ok_f(&mut f, from(3, pk(pt::DIFF, z(1, 2))), 20);
    ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 30);
    ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 40);
    ok_f(&mut f, from(3, pk(pt::PING, z(2, 0))), 1000);
    // syncLimit = 5 ticks after the last packet.
    assert_eq!(step_f(&mut f, Input::Tick, 1000 + 5 * T - 1), (vec![], Flow::Continue));
    assert_eq!(
        step_f(&mut f, Input::Tick, 1000 + 5 * T),
        (vec![], Flow::Abandon("Read timed out waiting for leader 3".into()))
    );
    // Before NEWLEADER the limit is initLimit (10 ticks).
    let mut f = follower1(LearnerType::Participant);
    ok_f(&mut f, from(3, pk(pt::DIFF, z(1, 2))), 20);
    assert_eq!(step_f(&mut f, Input::Tick, 20 + 10 * T - 1), (vec![], Flow::Continue));
    assert_eq!(
        step_f(&mut f, Input::Tick, 20 + 10 * T).1,
        Flow::Abandon("Read timed out waiting for leader 3".into())
    );
    // And a leader that never accepts the connection.
    let mut out = Vec::new();
    let mut f = Learner::start(zcfg(1), 3, LearnerType::Participant, history(0, &[]), 0, 0, 0, &mut out);
    assert_eq!(step_f(&mut f, Input::Tick, 10 * T).1, Flow::Abandon("Failed connect to leader 3".into()));
}

#[test]
fn linearizable_sync_waits_for_a_ping_round_started_after_it() {
    let mut l = serving_leader(false);
    // A ping round in flight before the sync does not count.
    let t = 70 + T / 2;
    assert_eq!(
        ok_l(&mut l, Input::Tick, t),
        vec![send(1, pk(pt::PING, z(2, 0))), send(2, pk(pt::PING, z(2, 0)))]
    );
    // The sync arrives: a round starts at once for it.
    assert_eq!(
        ok_l(&mut l, sync_input(), t + 1),
        vec![send(1, pk(pt::PING, z(2, 0))), send(2, pk(pt::PING, z(2, 0)))]
    );
    // Replies to the earlier round: not enough.
    assert_eq!(ok_l(&mut l, from(1, pkd(pt::PING, z(2, 0), vec![])), t + 2), vec![]);
    assert_eq!(ok_l(&mut l, from(2, pkd(pt::PING, z(2, 0), vec![])), t + 2), vec![]);
    // Follower 1's reply to the sync's round makes a quorum with the leader.
    assert_eq!(ok_l(&mut l, from(1, pkd(pt::PING, z(2, 0), vec![])), t + 3), vec![Action::SyncDone]);

    // A sync behind an uncommitted proposal also waits for its commit; a forwarded one is
    // answered with SYNC to its learner.
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), t + 10);
    let req = request(5, 9, OP_SYNC, b"\0\0\0\x01/", vec![]);
    let out = ok_l(&mut l, from(2, req), t + 11);
    assert_eq!(out, vec![send(1, pk(pt::PING, z(2, 1))), send(2, pk(pt::PING, z(2, 1)))]);
    assert_eq!(ok_l(&mut l, from(1, pkd(pt::PING, z(2, 1), vec![])), t + 12), vec![]);
    assert_eq!(ok_l(&mut l, from(2, pkd(pt::PING, z(2, 1), vec![])), t + 12), vec![]);
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, t + 13);
    assert_eq!(
        ok_l(&mut l, from(2, pk(pt::ACK, z(2, 1))), t + 14),
        vec![
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) },
            send(2, pk(pt::SYNC, 0)),
        ]
    );
}

#[test]
fn a_deposed_leader_never_answers_a_sync() {
    // Both followers have moved on to a new leader: pings go unanswered, the sync is never
    // answered (ZooKeeper's leader would answer it from its stale state), and the leader steps
    // down.
    let mut l = serving_leader(false);
    let mut out = ok_l(&mut l, sync_input(), 100);
    let mut t = 100;
    loop {
        t += T / 2;
        let (o, flow) = step_l(&mut l, Input::Tick, t);
        out.extend(o);
        if flow != Flow::Continue {
            break;
        }
    }
    assert!(!out.contains(&Action::SyncDone), "{out:?}");
}

#[test]
fn learner_forwards_writes_syncs_and_revalidations() {
    let mut f = follower1(LearnerType::Participant);
    ok_f(&mut f, from(3, pk(pt::DIFF, z(1, 2))), 20);
    ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 30);
    ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 40);
    let auth = vec![crate::proto::Id { scheme: "digest".into(), id: "u:x".into() }];
    let fwd = Input::Forward { session: 5, cxid: 7, typ: 1, data: b"body".to_vec(), authinfo: auth.clone() };
    assert_eq!(ok_f(&mut f, fwd, 50), vec![send(3, request(5, 7, 1, b"body", auth))]);
    // Two syncs; SYNCs answer them in order; an unrequested SYNC is ignored.
    ok_f(&mut f, sync_input(), 51);
    ok_f(&mut f, sync_input(), 52);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::SYNC, 0)), 53), vec![Action::SyncDone]);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::SYNC, 0)), 54), vec![Action::SyncDone]);
    assert_eq!(ok_f(&mut f, from(3, pk(pt::SYNC, 0)), 55), vec![]);
    // Revalidation.
    assert_eq!(
        ok_f(&mut f, Input::Revalidate { session: 5, timeout: 3000 }, 60),
        vec![send(3, LearnerMessage::Revalidate { session_id: 5, timeout_ms: 3000 }.to_packet())]
    );
    assert_eq!(
        ok_f(&mut f, from(3, LeaderMessage::Revalidate { session_id: 5, valid: true }.to_packet()), 61),
        vec![Action::Revalidated { session: 5, valid: true }]
    );
    // An answer nobody asked for is ignored.
    assert_eq!(
        ok_f(&mut f, from(3, LeaderMessage::Revalidate { session_id: 5, valid: true }.to_packet()), 62),
        vec![]
    );
}

#[test]
fn leader_hands_up_requests_touches_and_revalidations() {
    let mut l = serving_leader(false);
    assert_eq!(
        ok_l(&mut l, from(1, request(5, 7, 1, b"body", vec![])), 100),
        vec![Action::Request {
            from: 1,
            session: 5,
            cxid: 7,
            typ: 1,
            data: b"body".to_vec(),
            authinfo: vec![]
        }]
    );
    ok_l(&mut l, Input::Tick, 70 + T / 2);
    assert_eq!(
        ok_l(&mut l, from(1, pkd(pt::PING, 0, touches(&[(5, 3000)]))), 1100),
        vec![Action::Touch { sessions: vec![(5, 3000)] }]
    );
    assert_eq!(
        ok_l(
            &mut l,
            from(1, LearnerMessage::Revalidate { session_id: 5, timeout_ms: 3000 }.to_packet()),
            1200
        ),
        vec![Action::Revalidate { from: 1, session: 5, timeout: 3000 }]
    );
    assert_eq!(
        ok_l(&mut l, Input::RevalidateAnswer { to: 1, session: 5, valid: false }, 1201),
        vec![send(1, LeaderMessage::Revalidate { session_id: 5, valid: false }.to_packet())]
    );
}

#[test]
fn bad_learner_input_costs_its_connection() {
    let cases: Vec<(QuorumPacket, &str)> = vec![
        (pk(pt::ACK, z(2, 9)), "ACK for unknown zxid 0x200000009 (last proposed 0x200000001)"),
        (pk(pt::NEWLEADER, z(2, 0)), "packet from a learner: packet type 10 (NEWLEADER) unexpected"),
        (
            pkd(pt::PING, 0, vec![1, 2, 3]),
            "PING touch table (12 bytes an entry): length 3 out of bounds 0..=0",
        ),
        (pkd(pt::REQUEST, -1, vec![0; 15]), "REQUEST data: truncated at offset 12: needed 4 bytes, 3 left"),
        (pk(pt::PING, 0), "more PING replies than pings"),
    ];
    for (packet, reason) in cases {
        let mut l = serving_leader(false);
        ok_l(&mut l, Input::Propose(prop(z(2, 1))), 100);
        assert_eq!(
            ok_l(&mut l, from(1, packet), 101),
            vec![Action::Disconnect { sid: 1, reason: reason.into() }]
        );
        // The connection is gone: its next packet is refused as from a stranger.
        let out = ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 102);
        assert!(matches!(&out[..], [Action::Disconnect { sid: 1, .. }]));
    }
    // ACKs going backwards.
    let mut l = serving_leader(false);
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 100);
    ok_l(&mut l, Input::Propose(prop(z(2, 2))), 100);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 2))), 101);
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), 102),
        vec![Action::Disconnect {
            sid: 1,
            reason: "zxid 0x200000001 goes backwards (after 0x200000002)".into()
        }]
    );
}

#[test]
fn bad_leader_input_ends_the_learner_role() {
    let serving = || {
        let mut f = follower1(LearnerType::Participant);
        ok_f(&mut f, from(3, pk(pt::DIFF, z(1, 2))), 20);
        ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 30);
        ok_f(&mut f, from(3, pk(pt::UPTODATE, -1)), 40);
        ok_f(&mut f, from(3, proposal_pk(z(2, 1))), 50);
        ok_f(&mut f, from(3, proposal_pk(z(2, 2))), 51);
        f
    };
    let cases: Vec<(QuorumPacket, &str)> = vec![
        (pk(pt::COMMIT, z(2, 2)), "COMMIT of 0x200000002 but the next uncommitted proposal is 0x200000001"),
        (proposal_pk(z(2, 2)), "zxid 0x200000002 goes backwards (after 0x200000002)"),
        (pk(pt::PROPOSAL, z(2, 3)), "PROPOSAL data: invalid value -1"),
        (leaderinfo(3), "unexpected LEADERINFO in broadcast"),
        (
            LeaderMessage::CommitAndActivate { zxid: z(2, 1), designated_leader: 3 }.to_packet(),
            "dynamic reconfiguration is not supported",
        ),
    ];
    for (packet, reason) in cases {
        let mut f = serving();
        let (out, flow) = step_f(&mut f, from(3, packet), 60);
        assert_eq!(out, vec![]);
        assert_eq!(flow, Flow::Abandon(format!("leader 3 broke the protocol: {reason}")));
    }
    // A packet from a server that is not our leader costs that connection only.
    let mut f = serving();
    assert_eq!(
        ok_f(&mut f, from(2, pk(pt::PING, 0)), 60),
        vec![Action::Disconnect { sid: 2, reason: "not our leader (3)".into() }]
    );
}

#[test]
fn rollover_makes_the_leader_step_down() {
    assert!(counter_exhausted(z(2, u32::MAX)));
    assert!(!counter_exhausted(z(2, u32::MAX - 1)));
    let mut out = Vec::new();
    let h = history(z(1, 2), &[]);
    let (mut l, _) = Leader::start(zcfg(3), Members::new([1, 2, 3], []), h, 1, 1, 0, &mut out);
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    ok_l(&mut l, from(1, ackepoch(z(1, 2), 1)), 20);
    ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 30);
    // Walk the counter to the end quickly: propose and commit up to 0xfffffffe is too slow, so
    // the proposal numbering is checked as it is: the next zxid must be last + 1 ...
    ok_l(&mut l, Input::Propose(prop(z(2, 1))), 40);
    // ... and a proposal whose counter is all ones makes the leader step down, unsent.
    let mut l2 = l;
    let (out, flow) = step_l(&mut l2, Input::Propose(prop(z(2, u32::MAX))), 50);
    assert_eq!(out, vec![]);
    assert_eq!(
        flow,
        Flow::Abandon(
            "zxid lower 32 bits have rolled over, forcing re-election, and therefore new epoch start".into()
        )
    );
}

#[test]
fn a_configured_counter_start_brings_the_rollover_within_a_few_writes() {
    // What the process test of ZOOKEEPER-1277 runs with (`zkd.testing.epochCounterStart`): the
    // epoch's marker stays at counter 0 (NEWLEADER and its ACK), proposals start after the
    // configured counter, and the leader steps down at the all-ones counter as usual.
    let mut out = Vec::new();
    let h = history(z(1, 2), &[]);
    let cfg = ZabConfig { epoch_counter_start: u32::MAX - 2, ..zcfg(3) };
    let (mut l, _) = Leader::start(cfg, Members::new([1, 2, 3], []), h, 1, 1, 0, &mut out);
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    ok_l(&mut l, from(1, ackepoch(z(1, 2), 1)), 20);
    let acts = ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 30);
    assert!(
        acts.contains(&Action::Serving { role: Role::Leader, epoch: 2, next_zxid: Some(z(2, u32::MAX - 1)) }),
        "{acts:?}"
    );
    ok_l(&mut l, Input::Propose(prop(z(2, u32::MAX - 1))), 40);
    assert_eq!(
        ok_l(&mut l, Input::Durable { zxid: z(2, u32::MAX - 1) }, 41),
        vec![],
        "the leader alone is no quorum"
    );
    let acts = ok_l(&mut l, from(1, pk(pt::ACK, z(2, u32::MAX - 1))), 42);
    assert!(acts.contains(&Action::Commit { zxid: z(2, u32::MAX - 1) }), "{acts:?}");
    let (out, flow) = step_l(&mut l, Input::Propose(prop(z(2, u32::MAX))), 50);
    assert_eq!(out, vec![]);
    assert_eq!(
        flow,
        Flow::Abandon(
            "zxid lower 32 bits have rolled over, forcing re-election, and therefore new epoch start".into()
        )
    );
}

#[test]
fn a_stale_durable_report_after_trunc_does_not_ack() {
    let mut out = Vec::new();
    let h = history(z(1, 5), &[z(1, 1), z(1, 5)]);
    let mut f = Learner::start(zcfg(1), 3, LearnerType::Participant, h, 1, 1, 0, &mut out);
    ok_f(&mut f, Input::Connected { sid: 3 }, 1);
    ok_f(&mut f, from(3, leaderinfo(2)), 2);
    ok_f(&mut f, from(3, pk(pt::TRUNC, z(1, 1))), 3);
    ok_f(&mut f, from(3, proposal_pk(z(2, 1))), 4);
    ok_f(&mut f, from(3, pk(pt::NEWLEADER, z(2, 0))), 5);
    // The log reports 1:5 durable (written before it was truncated): not 2:1.
    assert_eq!(ok_f(&mut f, Input::Durable { zxid: z(1, 5) }, 6), vec![]);
    assert_eq!(
        ok_f(&mut f, Input::Durable { zxid: z(2, 1) }, 7),
        vec![Action::PersistCurrentEpoch(2), send(3, pk(pt::ACK, z(2, 0)))]
    );
}

#[test]
fn acks_of_a_3_8_0_learner_before_uptodate_are_accepted() {
    // Captured from Apache ZooKeeper 3.8.0: after NEWLEADER the follower sends ACK(NEWLEADER)
    // and then ACKs of the proposals NEWLEADER made it log, before the leader's UPTODATE.
    let mut out = Vec::new();
    let h = history(z(1, 3), &[z(1, 1), z(1, 2), z(1, 3)]);
    let (mut l, _) = Leader::start(zcfg(3), Members::new([1, 2, 3, 4, 5], []), h, 1, 1, 0, &mut out);
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    ok_l(&mut l, from(2, info(pt::FOLLOWERINFO, 2, 1)), 11);
    ok_l(&mut l, from(1, ackepoch(z(1, 1), 1)), 12);
    ok_l(&mut l, from(2, ackepoch(z(1, 3), 1)), 13);
    // Follower 1 ACKs NEWLEADER, then 1:2 and 1:3; with the leader, two of five: no quorum yet.
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 20), vec![]);
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(1, 2))), 21), vec![]);
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(1, 3))), 22), vec![]);
    // But they must be in order and of txns that exist.
    assert_eq!(
        ok_l(&mut l, from(1, pk(pt::ACK, z(1, 9))), 23),
        vec![Action::Disconnect {
            sid: 1,
            reason: "ACK for unknown zxid 0x100000009 (last proposed 0x100000003)".into()
        }]
    );
}

/// A sync answers at its place in the commit order: the proposals after it commit after it
/// (standalone: in the same step, but after the `SyncDone`), so neither the sync nor a read
/// behind it can see a later write.
#[test]
fn standalone_sync_answers_between_the_commits_before_and_after_it() {
    let mut p = standalone(make_zxid(3, 7));
    let z = make_zxid(3, 8);
    let sync = Input::Sync { session: 1, cxid: 1, data: vec![], authinfo: vec![] };
    p.step(Input::Propose(prop(z)), 10);
    assert_eq!(p.step(sync, 10), vec![]);
    p.step(Input::Propose(prop(z + 1)), 10);
    assert_eq!(
        p.step(Input::Durable { zxid: z + 1 }, 11),
        vec![Action::Commit { zxid: z }, Action::SyncDone, Action::Commit { zxid: z + 1 }]
    );
}

/// With followers the sync waits for its ping round; a proposal after it does not commit
/// before the round confirms, even with a quorum of acks.
#[test]
fn a_proposal_after_a_sync_commits_only_after_the_sync_is_released() {
    let mut l = serving_leader(false);
    let t = 70 + T / 2;
    assert_eq!(
        ok_l(&mut l, sync_input(), t),
        vec![send(1, pk(pt::PING, z(2, 0))), send(2, pk(pt::PING, z(2, 0)))]
    );
    assert_eq!(
        ok_l(&mut l, Input::Propose(prop(z(2, 1))), t + 1),
        vec![send(1, proposal_pk(z(2, 1))), send(2, proposal_pk(z(2, 1))), Action::Append(prop(z(2, 1)))]
    );
    ok_l(&mut l, Input::Durable { zxid: z(2, 1) }, t + 2);
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 1))), t + 3), vec![], "held behind the sync");
    assert_eq!(
        ok_l(&mut l, from(1, pkd(pt::PING, z(2, 1), vec![])), t + 4),
        vec![
            Action::SyncDone,
            send(1, pk(pt::COMMIT, z(2, 1))),
            send(2, pk(pt::COMMIT, z(2, 1))),
            Action::Commit { zxid: z(2, 1) },
        ]
    );
}

/// The sim's seed 41388: a follower's last txns, appended but not yet durable, joined its history
/// when it went looking; it was elected on them. Recording the new epoch before they are on disk
/// let a crash leave it claiming the epoch with a shorter log, and win the next election with it.
#[test]
fn a_leader_records_its_epoch_only_once_its_history_is_durable() {
    let mut out = Vec::new();
    let mut h = history(z(1, 2), &[z(1, 1), z(1, 2)]);
    // Logged by the follower role that ended, not yet durable.
    h.push(prop(z(1, 3)));
    assert_eq!(h.durable_zxid(), z(1, 2));
    let (mut l, _) = Leader::start(zcfg(3), Members::new([1, 2, 3], []), h, 1, 1, 0, &mut out);
    ok_l(&mut l, from(1, info(pt::FOLLOWERINFO, 1, 1)), 10);
    // The epoch quorum forms: the follower is synced, but the leader's epoch waits for its log.
    assert_eq!(
        ok_l(&mut l, from(1, ackepoch(z(1, 3), 1)), 20),
        vec![send(1, pk(pt::DIFF, z(1, 3))), send(1, pk(pt::NEWLEADER, z(2, 0)))]
    );
    // The follower's ACK alone is no quorum of three: the leader does not count itself yet.
    assert_eq!(ok_l(&mut l, from(1, pk(pt::ACK, z(2, 0))), 30), vec![]);
    assert_eq!(
        ok_l(&mut l, Input::Durable { zxid: z(1, 3) }, 40),
        vec![
            Action::PersistCurrentEpoch(2),
            Action::Serving { role: Role::Leader, epoch: 2, next_zxid: Some(z(2, 1)) },
            send(1, pk(pt::UPTODATE, -1)),
        ]
    );
}
