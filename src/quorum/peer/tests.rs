//! Peers wired together by a loss-free in-memory network: election, then ZAB, then failover.
//! (The seeded simulator injects faults; these stories check the composition.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::*;
use crate::quorum::zab::COMMIT_LOG_COUNT_DEFAULT;
use crate::quorum::{make_zxid, PeerState};

const TICK: u64 = 100;

/// A server's state, role served and epoch.
type NodeState = (Sid, PeerState, Option<(Role, u32)>);

struct Node {
    peer: Peer,
    log: Vec<Proposal>,
    applied: i64,
    epochs: (u32, u32),
    serving: Option<(Role, u32)>,
    stops: Vec<String>,
    sync_done: usize,
}

struct Net {
    nodes: BTreeMap<Sid, Node>,
    /// (to, input) in delivery order.
    queue: VecDeque<(Sid, Input)>,
    /// Quorum connections (learner, leader).
    conns: BTreeSet<(Sid, Sid)>,
    down: BTreeSet<Sid>,
    now: u64,
}

fn cfg(me: Sid, voters: &[Sid], observers: &[Sid]) -> PeerConfig {
    PeerConfig {
        zab: ZabConfig {
            my_id: me,
            tick_ms: TICK as i64,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: COMMIT_LOG_COUNT_DEFAULT,
        },
        members: Members::new(voters.iter().copied(), observers.iter().copied()),
        standalone: false,
        election: ElectionConfig::default(),
        announced_config: None,
    }
}

impl Net {
    fn new(voters: &[Sid], observers: &[Sid]) -> Net {
        let mut net = Net {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            conns: BTreeSet::new(),
            down: BTreeSet::new(),
            now: 0,
        };
        for &s in voters.iter().chain(observers) {
            let init = PeerInit { accepted_epoch: 0, current_epoch: 0, last_zxid: 0, log_tail: vec![] };
            let (peer, out) = Peer::new(cfg(s, voters, observers), init, 0).unwrap();
            net.nodes.insert(
                s,
                Node {
                    peer,
                    log: vec![],
                    applied: 0,
                    epochs: (0, 0),
                    serving: None,
                    stops: vec![],
                    sync_done: 0,
                },
            );
            net.perform(s, out);
        }
        net
    }

    fn perform(&mut self, me: Sid, out: Vec<Action>) {
        for a in out {
            match a {
                Action::SendNotification { to, n } => {
                    self.queue.push_back((to, Input::Notification { from: me, n }))
                }
                Action::Connect { leader } => {
                    if self.down.contains(&leader) {
                        self.queue.push_back((me, Input::Disconnected { sid: leader }));
                    } else {
                        self.conns.insert((me, leader));
                        self.queue.push_back((me, Input::Connected { sid: leader }));
                    }
                }
                Action::Send { to, packet } => {
                    if self.conns.contains(&(me, to)) || self.conns.contains(&(to, me)) {
                        self.queue.push_back((to, Input::Packet { from: me, packet }));
                    }
                }
                Action::Disconnect { sid, .. } => {
                    if self.conns.remove(&(me, sid)) || self.conns.remove(&(sid, me)) {
                        self.queue.push_back((sid, Input::Disconnected { sid: me }));
                    }
                }
                Action::Append(p) => {
                    let n = self.nodes.get_mut(&me).unwrap();
                    assert!(n.log.last().is_none_or(|l| l.zxid < p.zxid), "log grows");
                    let zxid = p.zxid;
                    n.log.push(p);
                    self.queue.push_back((me, Input::Durable { zxid }));
                }
                Action::Commit { zxid } | Action::FastForward { zxid } => {
                    let n = self.nodes.get_mut(&me).unwrap();
                    assert!(
                        n.log.iter().any(|p| p.zxid == zxid),
                        "{me} applies 0x{zxid:x}, which it never logged"
                    );
                    n.applied = n.applied.max(zxid);
                }
                Action::Truncate { zxid } => {
                    let n = self.nodes.get_mut(&me).unwrap();
                    n.log.retain(|p| p.zxid <= zxid);
                    n.applied = zxid;
                }
                Action::LoadSnapshot { zxid } => {
                    // The stream follows at once: "read" it before anything else. The snapshot is
                    // the new base: what was logged before it no longer counts.
                    let n = self.nodes.get_mut(&me).unwrap();
                    n.log.clear();
                    n.applied = zxid;
                    let out = n.peer.step(Input::SnapshotLoaded { zxid }, self.now);
                    self.perform(me, out);
                }
                Action::PersistAcceptedEpoch(e) => self.nodes.get_mut(&me).unwrap().epochs.0 = e,
                Action::PersistCurrentEpoch(e) => self.nodes.get_mut(&me).unwrap().epochs.1 = e,
                Action::Serving { role, epoch, .. } => {
                    self.nodes.get_mut(&me).unwrap().serving = Some((role, epoch))
                }
                Action::StopServing { reason } => {
                    let n = self.nodes.get_mut(&me).unwrap();
                    n.serving = None;
                    n.stops.push(reason);
                }
                Action::SyncDone => self.nodes.get_mut(&me).unwrap().sync_done += 1,
                Action::SendSnapshot { .. }
                | Action::State { .. }
                | Action::Decided { .. }
                | Action::ConfigMismatch { .. }
                | Action::NotificationTimeout { .. }
                | Action::Request { .. }
                | Action::Touch { .. }
                | Action::Revalidate { .. }
                | Action::Revalidated { .. } => {}
            }
        }
    }

    fn deliver_all(&mut self) {
        let mut n = 0;
        while let Some((to, input)) = self.queue.pop_front() {
            n += 1;
            assert!(n < 100_000, "the network never goes quiet");
            if self.down.contains(&to) {
                continue;
            }
            if let Input::Notification { from, .. } | Input::Packet { from, .. } = &input {
                if self.down.contains(from) {
                    continue;
                }
            }
            let out = self.nodes.get_mut(&to).unwrap().peer.step(input, self.now);
            self.perform(to, out);
        }
    }

    /// Runs until `done` holds, ticking every peer each `TICK / 2` ms; panics after `limit_ms`.
    fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Net) -> bool) {
        let end = self.now + limit_ms;
        loop {
            self.deliver_all();
            if done(self) {
                return;
            }
            assert!(self.now < end, "not done after {limit_ms} ms: {:?}", self.states());
            self.now += TICK / 2;
            let sids: Vec<Sid> = self.nodes.keys().copied().filter(|s| !self.down.contains(s)).collect();
            for s in sids {
                let out = self.nodes.get_mut(&s).unwrap().peer.step(Input::Tick, self.now);
                self.perform(s, out);
            }
        }
    }

    fn states(&self) -> Vec<NodeState> {
        self.nodes.iter().map(|(s, n)| (*s, n.peer.state(), n.serving)).collect()
    }

    fn all_serving(&self, epoch: u32) -> bool {
        self.nodes
            .iter()
            .filter(|(s, _)| !self.down.contains(s))
            .all(|(_, n)| n.serving.is_some_and(|(_, e)| e == epoch))
    }

    fn propose(&mut self, leader: Sid, zxid: i64) {
        let p = Proposal { zxid, data: Arc::from(&b"txn"[..]) };
        let out = self.nodes.get_mut(&leader).unwrap().peer.step(Input::Propose(p), self.now);
        self.perform(leader, out);
    }
}

#[test]
fn three_voters_and_an_observer_elect_sync_broadcast_and_fail_over() {
    let mut net = Net::new(&[1, 2, 3], &[4]);
    net.run_until(5_000, |n| n.all_serving(1));
    // The highest sid wins an election of equals; epoch 1 is on every disk.
    assert_eq!(
        net.states(),
        vec![
            (1, PeerState::Following, Some((Role::Follower, 1))),
            (2, PeerState::Following, Some((Role::Follower, 1))),
            (3, PeerState::Leading, Some((Role::Leader, 1))),
            (4, PeerState::Observing, Some((Role::Observer, 1))),
        ]
    );
    assert!(net.nodes.values().all(|n| n.epochs == (1, 1)));

    for c in 1..=3 {
        net.propose(3, make_zxid(1, c));
    }
    net.deliver_all();
    for (s, n) in &net.nodes {
        assert_eq!(n.applied, make_zxid(1, 3), "server {s}");
        assert_eq!(n.log.len(), 3, "server {s}");
    }
    // A linearizable sync on a follower: forwarded, answered after a ping round.
    let out = net
        .nodes
        .get_mut(&1)
        .unwrap()
        .peer
        .step(Input::Sync { session: 1, cxid: 1, data: vec![], authinfo: vec![] }, net.now);
    net.perform(1, out);
    net.run_until(1_000, |n| n.nodes[&1].sync_done == 1);

    // The leader dies: its followers hear nothing for syncLimit, look, and elect server 2.
    net.down.insert(3);
    net.run_until(20_000, |n| n.all_serving(2));
    assert_eq!(net.nodes[&2].peer.state(), PeerState::Leading);
    assert_eq!(net.nodes[&1].peer.state(), PeerState::Following);
    assert_eq!(net.nodes[&4].peer.state(), PeerState::Observing);
    assert!(
        net.nodes[&1].stops[0].starts_with("Read timed out waiting for leader 3"),
        "{:?}",
        net.nodes[&1].stops
    );
    net.propose(2, make_zxid(2, 1));
    net.deliver_all();
    for s in [1, 2, 4] {
        assert_eq!(net.nodes[&s].applied, make_zxid(2, 1), "server {s}");
        assert_eq!(net.nodes[&s].epochs, (2, 2), "server {s}");
    }

    // The old leader comes back with its history and follows.
    net.down.remove(&3);
    let n3 = net.nodes.get_mut(&3).unwrap();
    let init = PeerInit {
        accepted_epoch: n3.epochs.0,
        current_epoch: n3.epochs.1,
        last_zxid: n3.log.last().map_or(0, |p| p.zxid),
        log_tail: n3.log.clone(),
    };
    let (peer, out) = Peer::new(cfg(3, &[1, 2, 3], &[4]), init, net.now).unwrap();
    n3.peer = peer;
    n3.serving = None;
    net.perform(3, out);
    net.run_until(20_000, |n| n.all_serving(2));
    assert_eq!(net.nodes[&3].peer.state(), PeerState::Following);
    assert_eq!(net.nodes[&3].applied, make_zxid(2, 1));
}

#[test]
fn an_uncommitted_proposal_of_a_dead_leader_is_replaced_by_a_snapshot() {
    // Leader 3 logs 1:4 and dies before anyone else has it: the new leader's history wins.
    let mut net = Net::new(&[1, 2, 3], &[]);
    net.run_until(5_000, |n| n.all_serving(1));
    net.propose(3, make_zxid(1, 1));
    net.deliver_all();
    // 1:2 reaches only the leader's own log.
    let saved: Vec<_> = net.conns.iter().copied().collect();
    net.conns.clear();
    net.propose(3, make_zxid(1, 2));
    net.deliver_all();
    assert_eq!(net.nodes[&3].log.len(), 2);
    net.down.insert(3);
    net.conns.extend(saved);
    net.run_until(20_000, |n| n.all_serving(2));
    net.propose(2, make_zxid(2, 1));
    net.deliver_all();
    // Server 3 returns: its 1:2 was never committed and the leader's next txn is in epoch 2, so
    // it is sent a snapshot (ZooKeeper never truncates across an epoch).
    net.down.remove(&3);
    let n3 = net.nodes.get_mut(&3).unwrap();
    let init = PeerInit {
        accepted_epoch: n3.epochs.0,
        current_epoch: n3.epochs.1,
        last_zxid: make_zxid(1, 2),
        log_tail: n3.log.clone(),
    };
    let (peer, out) = Peer::new(cfg(3, &[1, 2, 3], &[]), init, net.now).unwrap();
    n3.peer = peer;
    n3.serving = None;
    net.perform(3, out);
    net.run_until(20_000, |n| n.all_serving(2));
    assert!(net.nodes[&3].log.is_empty(), "1:2 is gone; the snapshot holds 1:1 and 2:1");
    assert_eq!(net.nodes[&3].applied, make_zxid(2, 1));
    // It takes part from there.
    net.propose(2, make_zxid(2, 2));
    net.deliver_all();
    assert_eq!(net.nodes[&3].applied, make_zxid(2, 2));
}

#[test]
fn peer_init_is_validated() {
    let init = |a, c, z| PeerInit { accepted_epoch: a, current_epoch: c, last_zxid: z, log_tail: vec![] };
    let c = cfg(1, &[1, 2, 3], &[]);
    assert_eq!(
        Peer::new(c.clone(), init(2, 1, make_zxid(2, 1)), 0).unwrap_err(),
        PeerInitError::CurrentEpochBehindLog { current: 1, last_zxid: make_zxid(2, 1) }
    );
    assert_eq!(
        Peer::new(c.clone(), init(1, 2, 0), 0).unwrap_err(),
        PeerInitError::AcceptedBehindCurrent { accepted: 1, current: 2 }
    );
    assert_eq!(
        Peer::new(cfg(9, &[1, 2, 3], &[]), init(0, 0, 0), 0).unwrap_err(),
        PeerInitError::NotAMember(9)
    );
    let mut s = c;
    s.standalone = true;
    assert_eq!(
        Peer::new(s, init(0, 0, 0), 0).unwrap_err(),
        PeerInitError::NotStandalone { voters: 3, observers: 0 }
    );
}
