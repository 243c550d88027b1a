//! The status builder on hand-made peers: one that looks alone, ensembles wired by a loss-free
//! in-memory network (election, sync, broadcast, a killed leader, an observer), a standalone
//! server, and the board.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::*;
use crate::quorum::election::ElectionConfig;
use crate::quorum::peer::{Action, Input, PeerConfig, PeerInit};
use crate::quorum::zab::{Proposal, ZabConfig, COMMIT_LOG_COUNT_DEFAULT};
use crate::quorum::{make_zxid, Members, Notification, Vote};

const TICK: u64 = 100;

fn cfg(me: Sid, voters: &[Sid], observers: &[Sid], standalone: bool) -> PeerConfig {
    PeerConfig {
        zab: ZabConfig {
            my_id: me,
            tick_ms: TICK as i64,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: COMMIT_LOG_COUNT_DEFAULT,
            epoch_counter_start: 0,
        },
        members: Members::new(voters.iter().copied(), observers.iter().copied()),
        standalone,
        election: ElectionConfig::default(),
        announced_config: None,
    }
}

fn init() -> PeerInit {
    PeerInit { accepted_epoch: 0, current_epoch: 0, last_zxid: 0, log_tail: vec![] }
}

/// Peers and the network between them: notifications and quorum packets are delivered in
/// order, one at a time; logs are durable at once; snapshots load at once.
struct Cluster {
    peers: BTreeMap<Sid, Peer>,
    queue: VecDeque<(Sid, Input)>,
    /// Quorum connections (learner, leader).
    conns: BTreeSet<(Sid, Sid)>,
    down: BTreeSet<Sid>,
    now: u64,
}

impl Cluster {
    fn new(voters: &[Sid], observers: &[Sid]) -> Cluster {
        let mut c = Cluster {
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            conns: BTreeSet::new(),
            down: BTreeSet::new(),
            now: 0,
        };
        for &s in voters.iter().chain(observers) {
            let (p, out) = Peer::new(cfg(s, voters, observers, false), init(), 0).unwrap();
            c.peers.insert(s, p);
            c.perform(s, out);
        }
        c
    }

    fn perform(&mut self, me: Sid, out: Vec<Action>) {
        for a in out {
            match a {
                Action::SendNotification { to, n } => {
                    self.queue.push_back((to, Input::Notification { from: me, n }));
                }
                Action::Connect { leader } => {
                    if self.down.contains(&leader) {
                        self.queue.push_back((me, Input::Disconnected { sid: leader }));
                    } else {
                        self.conns.insert((me, leader));
                        self.queue.push_back((me, Input::Connected { sid: leader }));
                    }
                }
                Action::Send { to, packet }
                    if self.conns.contains(&(me, to)) || self.conns.contains(&(to, me)) =>
                {
                    self.queue.push_back((to, Input::Packet { from: me, packet }));
                }
                Action::Disconnect { sid, .. }
                    if self.conns.remove(&(me, sid)) || self.conns.remove(&(sid, me)) =>
                {
                    self.queue.push_back((sid, Input::Disconnected { sid: me }));
                }
                Action::Append(p) => self.queue.push_back((me, Input::Durable { zxid: p.zxid })),
                Action::LoadSnapshot { zxid } => {
                    let out = self.peers.get_mut(&me).unwrap().step(Input::SnapshotLoaded { zxid }, self.now);
                    self.perform(me, out);
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, to: Sid, input: Input) {
        if self.down.contains(&to) {
            return;
        }
        let out = self.peers.get_mut(&to).unwrap().step(input, self.now);
        self.perform(to, out);
    }

    /// Delivers one input at a time (ticking every live peer when nothing is queued) until
    /// `done`; `watch` sees the cluster after every delivery.
    fn run(&mut self, done: impl Fn(&Cluster) -> bool, mut watch: impl FnMut(&Cluster)) {
        for _ in 0..200_000 {
            if done(self) {
                return;
            }
            match self.queue.pop_front() {
                Some((to, input)) => self.step(to, input),
                None => {
                    self.now += TICK;
                    let live: Vec<Sid> =
                        self.peers.keys().copied().filter(|s| !self.down.contains(s)).collect();
                    for s in live {
                        self.step(s, Input::Tick);
                    }
                }
            }
            watch(self);
        }
        panic!("the cluster did not get there");
    }

    fn all_serve(&self) -> bool {
        self.peers.iter().filter(|(s, _)| !self.down.contains(s)).all(|(_, p)| p.serving().is_some())
    }

    fn status(&self, sid: Sid) -> QuorumStatus {
        QuorumStatus::of(&self.peers[&sid], self.now)
    }

    fn leader(&self) -> Sid {
        let l: Vec<Sid> = self
            .peers
            .iter()
            .filter(|(s, p)| !self.down.contains(s) && p.serving() == Some(Role::Leader))
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(l.len(), 1, "one leader: {l:?}");
        l[0]
    }

    /// SIGKILL: its connections drop and the others' election connections to it are lost.
    fn kill(&mut self, sid: Sid) {
        self.down.insert(sid);
        let gone: Vec<(Sid, Sid)> =
            self.conns.iter().copied().filter(|(a, b)| *a == sid || *b == sid).collect();
        for (a, b) in gone {
            self.conns.remove(&(a, b));
            let other = if a == sid { b } else { a };
            self.queue.push_back((other, Input::Disconnected { sid }));
        }
        let others: Vec<Sid> = self.peers.keys().copied().filter(|s| *s != sid).collect();
        for s in others {
            self.queue.push_back((s, Input::ElectionPeer { sid, reachable: false }));
        }
    }
}

/// Records, per peer, every distinct detailed state it passes through, and checks that the
/// driver's fingerprint changes whenever that state does (so a status is published).
#[derive(Default)]
struct Phases {
    seen: BTreeMap<Sid, Vec<String>>,
    prints: BTreeMap<Sid, Fingerprint>,
}

impl Phases {
    fn watch(&mut self, c: &Cluster) {
        for (sid, p) in &c.peers {
            let s = QuorumStatus::of(p, c.now).detailed_peer_state();
            let f = Fingerprint::of(p);
            let seen = self.seen.entry(*sid).or_default();
            if seen.last() != Some(&s) {
                if !seen.is_empty() {
                    assert_ne!(
                        self.prints.get(sid),
                        Some(&f),
                        "server {sid} became {s:?} without a new fingerprint"
                    );
                }
                seen.push(s);
            }
            self.prints.insert(*sid, f);
        }
    }
}

#[test]
fn a_peer_looking_alone_reports_the_election_and_no_mode() {
    let (mut p, _) = Peer::new(cfg(1, &[1, 2, 3], &[], false), init(), 1_000).unwrap();
    let s = QuorumStatus::of(&p, 1_050);
    assert_eq!((s.state, s.zab_state, s.sync_mode), (PeerState::Looking, ZabState::Election, None));
    assert_eq!((s.mode(), s.leader, s.serving_for_ms), (None, None, None));
    assert_eq!(s.detailed_peer_state(), "looking");
    assert_eq!((s.lookings, s.last_election, s.quorum_size()), (1, None, 3));
    assert_eq!((s.leader_side.is_none(), s.learner_side.is_none(), s.standalone), (true, true, false));
    let e = s.election.as_ref().expect("an ensemble member has an election");
    assert_eq!((e.round, e.looking_for_ms), (1, Some(50)));
    let waiting = e.waiting.as_deref().unwrap();
    assert!(waiting.contains("waiting for votes from 2, 3"), "{waiting}");
    let report = s.election_report();
    assert!(report.starts_with("leader: none (looking for one); looking, not serving\n"), "{report}");
    assert!(report.contains(&format!("waiting: {waiting}\n")), "{report}");

    // Server 2's election connection is refused.
    p.step(Input::ElectionPeer { sid: 2, reachable: false }, 1_060);
    let s = QuorumStatus::of(&p, 1_060);
    let peers = &s.election.as_ref().unwrap().peers;
    assert_eq!(peers.iter().map(|p| (p.sid, p.reachable)).collect::<Vec<_>>(), [(2, Some(false)), (3, None)]);
    let waiting = s.election.as_ref().unwrap().waiting.clone().unwrap();
    assert!(waiting.contains("waiting for votes from 3 and from 2 (unreachable)"), "{waiting}");
    let report = s.election_report();
    let row = report.lines().find(|r| r.starts_with("2 ")).unwrap_or_else(|| panic!("{report}"));
    assert!(row.contains(" down "), "{row}");

    // Server 3 votes for itself, with another server list: 1 and 3 are a quorum, and decide at
    // once: the only other voter, 2, is unreachable, so no better vote can come in the window.
    let theirs = "server.1=a:1:2:participant\nserver.2=b:1:2:participant\nserver.3=c:1:2:participant\n\
                  server.4=d:1:2:participant\nversion=0";
    let n = Notification {
        state: PeerState::Looking,
        vote: Vote { leader: 3, zxid: 0, election_epoch: 1, peer_epoch: 0 },
        version: 2,
        config: Some(theirs.as_bytes().to_vec()),
    };
    p.step(Input::Notification { from: 3, n }, 1_070);
    p.step(Input::Tick, 1_270);
    let s = QuorumStatus::of(&p, 1_280);
    assert_eq!(s.config_mismatches.len(), 1);
    assert_eq!(s.config_mismatches[0].0, 3);
    let d = s.last_election.unwrap();
    assert_eq!((d.leader, d.state, d.duration_ms, d.round, d.at_ms), (3, PeerState::Following, 70, 1, 1_070));
    assert_eq!((s.zab_state, s.leader, s.mode()), (ZabState::Discovery, Some(3), None));
    let report = s.election_report();
    assert!(report.starts_with("leader: 3; following - discovery, not serving\n"), "{report}");
    assert!(
        report.contains("last election: round 1, took 70 ms, decided 210 ms ago (following with leader 3)\n")
    );
    assert!(
        report.contains(
            "config mismatch: server 3 runs with servers 1, 2, 3, 4 but this server runs with 1, 2, 3;"
        ),
        "{report}"
    );
}

#[test]
fn an_ensemble_reports_leader_followers_and_every_phase_they_pass() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    let mut phases = Phases::default();
    c.run(Cluster::all_serve, |c| phases.watch(c));
    assert_eq!(c.leader(), 3, "equal histories: the highest sid leads");
    assert_eq!(
        phases.seen[&3],
        ["looking", "leading - discovery", "leading - synchronization", "leading - broadcast"]
    );
    for f in [1, 2] {
        assert_eq!(
            phases.seen[&f],
            [
                "looking",
                "following - discovery",
                "following - synchronization",
                "following - synchronization - diff",
                "following - synchronization",
                "following - broadcast"
            ],
            "server {f}"
        );
    }

    let l = c.status(3);
    assert_eq!((l.mode(), l.leader, l.state), (Some("leader"), Some(3), PeerState::Leading));
    assert_eq!((l.accepted_epoch, l.current_epoch, l.lookings), (1, 1, 1));
    let d = l.last_election.expect("decided");
    assert_eq!((d.leader, d.state, d.round), (3, PeerState::Leading, 1));
    assert_eq!((l.synced_followers(), l.synced_observers(), l.synced_non_voting_followers()), (2, 0, 0));
    let side = l.leader_side.as_ref().unwrap();
    assert_eq!(side.learners.iter().map(|x| x.sid).collect::<Vec<_>>(), [1, 2]);
    assert!(side
        .learners
        .iter()
        .all(|x| x.up_to_date && x.forwarding && x.voter && x.waiting_for == "broadcast"));
    assert_eq!((side.pending_syncs, side.outstanding_proposals, side.proposal_sizes), (0, 0, (-1, -1, -1)));
    let report = l.election_report();
    assert!(report.starts_with("leader: 3 (this server); leading - broadcast, serving for "), "{report}");
    assert!(report.contains("last election: round 1, took "), "{report}");
    for f in [1, 2] {
        let s = c.status(f);
        assert_eq!(
            (s.mode(), s.leader, s.detailed_peer_state().as_str()),
            (Some("follower"), Some(3), "following - broadcast")
        );
        assert!(s.leader_side.is_none());
        assert!(s.learner_side.unwrap().leader_heard_ago_ms.is_some());
        assert!(s.election_report().starts_with("leader: 3; following - broadcast, serving for "));
    }

    // A proposal and a sync: sizes recorded, acks seen, the sync pending until its ping round.
    let at = c.now;
    let p = Proposal { zxid: make_zxid(1, 1), data: Arc::from(vec![7u8; 10]) };
    c.step(3, Input::Propose(p));
    c.step(3, Input::Sync { session: 1, cxid: 1, data: vec![], authinfo: vec![] });
    let s = c.status(3);
    let side = s.leader_side.as_ref().unwrap();
    assert_eq!((side.proposal_sizes, side.outstanding_proposals, side.pending_syncs), ((10, 10, 10), 1, 1));
    assert_eq!(side.last_proposed, make_zxid(1, 1));
    c.run(
        |c| {
            let side = c.status(3).leader_side.unwrap();
            let acked = side.learners.iter().all(|x| x.last_ack_zxid == make_zxid(1, 1));
            side.pending_syncs == 0 && side.outstanding_proposals == 0 && acked
        },
        |_| {},
    );
    assert_eq!(c.status(3).last_zxid, make_zxid(1, 1));

    // Ages grow with the clock.
    c.now = at + 5_000;
    let s = c.status(3);
    assert!(s.leader_side.unwrap().learners.iter().all(|x| x.last_heard_ago_ms >= 4_000));
    assert!(c.status(1).learner_side.unwrap().leader_heard_ago_ms.unwrap() >= 4_000);
}

#[test]
fn a_killed_leader_is_unreachable_and_a_second_election_elects_another() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(Cluster::all_serve, |_| {});
    c.kill(3);
    let mut phases = Phases::default();
    let again =
        |c: &Cluster| [1, 2].iter().all(|s| c.peers[s].lookings() == 2 && c.peers[s].serving().is_some());
    c.run(again, |c| phases.watch(c));
    let l = c.leader();
    assert_eq!(l, 2);
    assert!(phases.seen[&1].contains(&"looking".to_owned()), "{:?}", phases.seen[&1]);
    for s in [1, 2] {
        let st = c.status(s);
        assert_eq!(st.lookings, 2, "server {s}");
        let d = st.last_election.unwrap();
        assert_eq!((d.leader, d.round), (2, 2));
        let e = st.election.as_ref().unwrap();
        let dead = e.peers.iter().find(|p| p.sid == 3).unwrap();
        assert_eq!(dead.reachable, Some(false), "server {s} sees 3 unreachable");
        let report = st.election_report();
        let row = report.lines().find(|r| r.starts_with("3 ")).unwrap_or_else(|| panic!("{report}"));
        assert!(row.contains(" down "), "{row}");
    }
    let st = c.status(2);
    assert_eq!((st.synced_followers(), st.mode()), (1, Some("leader")));
    assert_eq!((st.accepted_epoch, st.current_epoch), (2, 2));
}

#[test]
fn observers_are_counted_apart_and_report_observing() {
    let mut c = Cluster::new(&[1, 2, 3], &[4]);
    let mut phases = Phases::default();
    c.run(Cluster::all_serve, |c| phases.watch(c));
    let l = c.status(c.leader());
    assert_eq!((l.synced_followers(), l.synced_observers()), (2, 1));
    assert_eq!(l.leader_side.as_ref().unwrap().learners.len(), 3);
    let o = c.status(4);
    assert_eq!((o.mode(), o.learner_type, o.leader), (Some("observer"), LearnerType::Observer, Some(3)));
    assert_eq!(o.detailed_peer_state(), "observing - broadcast");
    assert_eq!(o.observers, [4]);
    assert_eq!(o.quorum_size(), 3, "observers do not vote");
    assert_eq!(phases.seen[&4].first().map(String::as_str), Some("looking"));
}

#[test]
fn a_status_read_later_has_older_ages_and_nearer_timers() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run(Cluster::all_serve, |_| {});
    c.now += 1_000;
    let (l, f) = (c.status(3), c.status(1));
    let (l2, f2) = (l.clone().at(c.now + 250), f.clone().at(c.now + 250));
    assert_eq!(l2.at_ms, c.now + 250);
    assert_eq!(l2.serving_for_ms.unwrap(), l.serving_for_ms.unwrap() + 250);
    let ages = |s: &QuorumStatus| {
        s.leader_side.as_ref().unwrap().learners.iter().map(|x| x.last_heard_ago_ms).collect::<Vec<_>>()
    };
    assert_eq!(ages(&l2), ages(&l).iter().map(|a| a + 250).collect::<Vec<_>>());
    let heard = |s: &QuorumStatus| s.learner_side.unwrap().leader_heard_ago_ms.unwrap();
    assert_eq!(heard(&f2), heard(&f) + 250);
    let peer_ages = |s: &QuorumStatus| {
        s.election.as_ref().unwrap().peers.iter().map(|p| p.last.as_ref().unwrap().age_ms).collect::<Vec<_>>()
    };
    assert_eq!(peer_ages(&f2), peer_ages(&f).iter().map(|a| a + 250).collect::<Vec<_>>());
    assert_eq!(l.clone().at(c.now - 10), l, "a read before the build changes nothing");

    // A looking peer: its round runs longer and its next notification comes nearer.
    let (p, _) = Peer::new(cfg(1, &[1, 2, 3], &[], false), init(), 0).unwrap();
    let s = QuorumStatus::of(&p, 50).at(150);
    let e = s.election.unwrap();
    assert_eq!((e.looking_for_ms, e.next_notification_ms), (Some(150), Some(50)));
}

#[test]
fn a_standalone_server_serves_without_an_election() {
    let (p, _) = Peer::new(cfg(1, &[1], &[], true), init(), 0).unwrap();
    let s = QuorumStatus::of(&p, 500);
    assert_eq!((s.mode(), s.standalone, s.serving_for_ms), (Some("standalone"), true, Some(500)));
    assert_eq!((s.election.is_none(), s.leader_side.is_none(), s.lookings), (true, true, 0));
    assert_eq!(s.election_report(), "server 1: standalone (the only voter): no election\n");
}

#[test]
fn the_board_keeps_the_last_status_and_counts_elections_and_syncs() {
    let b = StatusBoard::default();
    assert_eq!(b.status(), None);
    let (p, _) = Peer::new(cfg(1, &[1, 2, 3], &[], false), init(), 0).unwrap();
    b.publish(QuorumStatus::of(&p, 10));
    b.publish(QuorumStatus::of(&p, 20));
    assert_eq!(b.status().unwrap().at_ms, 20);
    b.record_election(240);
    b.record_election(ELECTION_MS_MAX * 2);
    b.record_sync(false);
    b.record_sync(true);
    b.record_sync(true);
    let c = b.counters();
    assert_eq!((c.election_ms.len(), c.diff_syncs, c.snap_syncs), (2, 1, 2));
    assert_eq!(c.election_ms.min(), 240);
    assert!(c.election_ms.max() >= ELECTION_MS_MAX && c.election_ms.max() < ELECTION_MS_MAX * 2);
}
