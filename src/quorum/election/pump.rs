//! A small message pump: several `Election`s, one FIFO channel per ordered pair of servers (as a
//! TCP connection is), messages delivered in an order drawn from a seed. Time moves only when
//! nothing is in flight, so every run is one where the network is faster than the timers; the
//! whole-cluster simulator with delays, loss and crashes is `sim`'s.
//!
//! Fault model: servers crash (their channels are dropped) and start (late); nothing else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::config_text;
use super::{Action, Election, ElectionConfig, Input};
use crate::quorum::{make_zxid, Members, Notification, PeerState, Sid, Vote};

/// Deliveries one run may take before it is declared stuck.
const DELIVERIES_MAX: u64 = 200_000;

struct Pump {
    seed: u64,
    members: Members,
    nodes: BTreeMap<Sid, Election>,
    alive: BTreeSet<Sid>,
    chans: BTreeMap<(Sid, Sid), VecDeque<Notification>>,
    now_ms: u64,
    rng: StdRng,
    decided: BTreeMap<Sid, (Vote, PeerState, u64)>,
    deliveries: u64,
}

impl Pump {
    fn new(seed: u64, voters: i64, observers: i64) -> Pump {
        let members = Members::new(1..=voters, voters + 1..=voters + observers);
        let nodes = members
            .all()
            .map(|s| {
                let text = config_text(&members);
                (s, Election::new(s, members.clone(), Some(text), ElectionConfig::default()))
            })
            .collect();
        Pump {
            seed,
            members,
            nodes,
            alive: BTreeSet::new(),
            chans: BTreeMap::new(),
            now_ms: 0,
            rng: StdRng::seed_from_u64(seed),
            decided: BTreeMap::new(),
            deliveries: 0,
        }
    }

    fn step(&mut self, sid: Sid, input: Input) {
        let mut out = Vec::new();
        self.nodes.get_mut(&sid).expect("member").step(input, self.now_ms, &mut out);
        for a in out {
            match a {
                Action::Send { to, n } => {
                    assert_ne!(to, sid, "seed {}: {sid} sent to itself", self.seed);
                    if self.alive.contains(&to) {
                        self.chans.entry((sid, to)).or_default().push_back(n);
                    }
                }
                Action::Decided { vote, state, duration_ms } => {
                    self.decided.insert(sid, (vote, state, duration_ms));
                }
                Action::NotificationTimeout { .. } => {}
                Action::ConfigMismatch { .. } => {
                    panic!("seed {}: every server runs with one list", self.seed)
                }
            }
        }
    }

    fn start(&mut self, sid: Sid, last_zxid: i64, current_epoch: i64) {
        self.alive.insert(sid);
        self.decided.remove(&sid);
        self.step(sid, Input::Start { last_zxid, current_epoch });
    }

    fn crash(&mut self, sid: Sid) {
        self.alive.remove(&sid);
        self.decided.remove(&sid);
        self.chans.retain(|(from, to), _| *from != sid && *to != sid);
        for s in self.alive.clone() {
            self.step(s, Input::PeerUnreachable { sid });
        }
    }

    /// Deliver in a random order, and when nothing is in flight move time to the next timer,
    /// until `done` holds.
    fn run_until(&mut self, done: impl Fn(&Pump) -> bool) {
        while !done(self) {
            self.chans.retain(|_, q| !q.is_empty());
            if !self.chans.is_empty() {
                let i = self.rng.gen_range(0..self.chans.len());
                let (&(from, to), q) = self.chans.iter_mut().nth(i).expect("in range");
                let n = q.pop_front().expect("not empty");
                self.deliveries += 1;
                assert!(
                    self.deliveries < DELIVERIES_MAX,
                    "seed {}: no agreement after {} deliveries",
                    self.seed,
                    self.deliveries
                );
                self.step(to, Input::Received { from, n });
                continue;
            }
            let next = self.alive.iter().filter_map(|s| self.nodes[s].next_deadline_ms()).min();
            let next =
                next.unwrap_or_else(|| panic!("seed {}: nothing in flight, no timer, not done", self.seed));
            assert!(next < 3_600_000, "seed {}: still looking after an hour", self.seed);
            self.now_ms = self.now_ms.max(next);
            for s in self.alive.clone() {
                self.step(s, Input::Tick);
            }
        }
    }

    /// Run to decisions; a server that follows a server that is down or not leading looks
    /// again a second later, as it would when it cannot connect to the leader.
    fn settle(&mut self) {
        loop {
            self.run_until(Pump::all_decided);
            let lost: Vec<Sid> = self
                .decided
                .iter()
                .filter(|(s, (v, _, _))| {
                    v.leader != **s
                        && self.decided.get(&v.leader).is_none_or(|(lv, _, _)| lv.leader != v.leader)
                })
                .map(|(s, _)| *s)
                .collect();
            if lost.is_empty() {
                return;
            }
            self.now_ms += 1000;
            for s in lost {
                let v = self.nodes[&s].current_vote().expect("decided");
                self.start(s, v.zxid, v.peer_epoch);
            }
        }
    }

    fn all_decided(&self) -> bool {
        self.alive.iter().all(|s| self.decided.contains_key(s))
    }

    /// Everyone alive agrees on one leader, which leads; voters follow it, observers observe.
    fn check_agreement(&self) -> Sid {
        let leader = self.decided.values().next().expect("someone decided").0.leader;
        for (sid, (vote, state, _)) in &self.decided {
            assert_eq!(vote.leader, leader, "seed {}: {sid} decided {vote:?}, others {leader}", self.seed);
            let want = if *sid == leader {
                PeerState::Leading
            } else if self.members.is_voter(*sid) {
                PeerState::Following
            } else {
                PeerState::Observing
            };
            assert_eq!(*state, want, "seed {}: server {sid}", self.seed);
        }
        assert!(self.members.is_voter(leader));
        leader
    }
}

/// The vote order's winner among `candidates`.
fn best(candidates: &BTreeMap<Sid, (i64, i64)>, voters: &BTreeSet<Sid>) -> Sid {
    let (sid, _) = candidates
        .iter()
        .filter(|(s, _)| voters.contains(s))
        .max_by_key(|(s, (zxid, epoch))| (*epoch, *zxid, **s))
        .expect("a voter");
    *sid
}

/// Random logs: a few epochs and counters, so ties on zxid are common and sids break them.
fn random_logs(rng: &mut StdRng, members: &Members) -> BTreeMap<Sid, (i64, i64)> {
    members
        .all()
        .map(|s| {
            let epoch = rng.gen_range(1..=2u32);
            (s, (make_zxid(epoch, rng.gen_range(0..3)), epoch as i64 + rng.gen_range(0..=1)))
        })
        .collect()
}

#[test]
fn ensembles_started_together_elect_the_best_vote() {
    for (voters, observers) in [(3, 0), (5, 0), (7, 0), (3, 1), (5, 2)] {
        for seed in 0..150 {
            let mut p = Pump::new(seed, voters, observers);
            let logs = random_logs(&mut p.rng, &p.members);
            // Every election port is open before anyone notifies.
            p.alive.extend(logs.keys());
            for (sid, (zxid, epoch)) in &logs {
                p.start(*sid, *zxid, *epoch);
            }
            p.run_until(Pump::all_decided);
            let leader = p.check_agreement();
            assert_eq!(leader, best(&logs, &p.members.voters), "seed {seed}, {voters}+{observers}");
            // With every voter up, voters decide as soon as all votes are in, without the window.
            for (sid, (_, _, ms)) in &p.decided {
                if p.members.is_voter(*sid) {
                    assert_eq!(*ms, 0, "seed {seed}: voter {sid} waited");
                }
            }
        }
    }
}

#[test]
fn late_joiners_and_a_failed_leader() {
    for voters in [3, 5, 7] {
        for seed in 0..100 {
            let mut p = Pump::new(seed, voters, 1);
            let logs = random_logs(&mut p.rng, &p.members);
            // A bare quorum starts first, the rest join later, one by one.
            let mut order: Vec<Sid> = p.members.all().collect();
            for i in (1..order.len()).rev() {
                order.swap(i, p.rng.gen_range(0..=i));
            }
            let quorum = voters as usize / 2 + 1;
            let first: Vec<Sid> =
                order.iter().copied().filter(|s| p.members.is_voter(*s)).take(quorum).collect();
            for s in &first {
                let (zxid, epoch) = logs[s];
                p.start(*s, zxid, epoch);
            }
            p.settle();
            let leader = p.check_agreement();
            let started: BTreeMap<Sid, (i64, i64)> = first.iter().map(|s| (*s, logs[s])).collect();
            assert_eq!(leader, best(&started, &p.members.voters), "seed {seed}");
            for s in order.iter().filter(|s| !first.contains(s)) {
                p.now_ms += p.rng.gen_range(1..5_000);
                let (zxid, epoch) = logs[s];
                p.start(*s, zxid, epoch);
                p.settle();
                assert_eq!(p.check_agreement(), leader, "seed {seed}: late joiner {s}");
            }
            // The leader fails; everyone else looks again with what it has logged since.
            p.crash(leader);
            let survivors: Vec<Sid> = p.alive.iter().copied().collect();
            let mut logs = BTreeMap::new();
            for s in survivors {
                let zxid = make_zxid(3, p.rng.gen_range(0..3));
                logs.insert(s, (zxid, 3));
                p.start(s, zxid, 3);
            }
            p.settle();
            let next = p.check_agreement();
            assert_eq!(next, best(&logs, &p.members.voters), "seed {seed}: after {leader} failed");
            // The failed leader is reported unreachable, so every live voter agreeing is enough:
            // nobody waits out the finalize window (the failover gains 200 ms).
            for (sid, (_, _, ms)) in &p.decided {
                if p.members.is_voter(*sid) {
                    assert_eq!(*ms, 0, "seed {seed}: voter {sid}");
                }
            }
        }
    }
}
