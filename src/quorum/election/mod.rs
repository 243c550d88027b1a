//! FastLeaderElection (Apache ZooKeeper 3.8's `FastLeaderElection.lookForLeader` and its
//! `WorkerReceiver`) as a pure state machine: inputs and `now_ms` go in, notifications to send
//! and the decision come out. It never reads a clock; the driver calls `step(Tick)` at
//! [`Election::next_deadline_ms`] (or more often).
//!
//! What it does, as ZooKeeper does it:
//! - `Start` begins a round: the logical clock (`logicalclock`, the round) goes up by one and we
//!   vote for ourselves with our last logged zxid and current epoch (`currentEpoch` file), then
//!   notify every voter. Our own notification reaches us through an internal loopback, as
//!   ZooKeeper's connection manager hands a message to itself, so no `Send` to ourselves appears.
//! - A LOOKING notification of a newer round makes us adopt the round, forget the round's votes
//!   and vote for the better of its vote and our initial vote; of an older round it is ignored
//!   (and the sender gets our vote back so it catches up); of our round it is adopted when it
//!   beats our vote ((peer epoch, zxid, sid) order) and recorded either way.
//! - When a quorum of voters has our vote in this round, ZooKeeper waits `finalizeWait` (200 ms)
//!   for a better vote, restarting the wait at every notification that is not better, and
//!   decides when none came. Here an election in which every voter's vote already matches ours
//!   decides at once (no better vote can come: each voter moved only to better votes), so an
//!   ensemble whose members are all up fails over without the 200 ms.
//! - FOLLOWING/LEADING notifications of our round count with the round's votes; of any round they
//!   are kept out of election (`outofelection`), so a late joiner follows the leader a quorum
//!   reports, once the leader itself has said LEADING (`checkLeader`).
//! - With no notification for the notification timeout (200 ms, doubling up to 60 s), we notify
//!   every voter again.
//! - When we are not LOOKING, a LOOKING voter gets our current vote back; a non-voting sender
//!   (an observer, or a server outside our configuration) always gets our current vote back, with
//!   our round as its election epoch. An observer's vote never counts and an observer never
//!   leads: its initial vote is (Long.MIN_VALUE, Long.MIN_VALUE, Long.MIN_VALUE), which every
//!   voter's vote beats, and it becomes OBSERVING where a participant would become FOLLOWING.
//!   Voters answer an observer with their *current* vote (the last decided one while they look),
//!   so an observer usually learns the leader when it re-notifies after the voters decided.
//!   (So an OBSERVING observer and a LOOKING voter answer each other until the voter decides:
//!   ZooKeeper's nodes do the same; a driver that keeps one queued notification per peer, as
//!   ZooKeeper's connection manager does, bounds it.)
//!
//! Not modelled: dynamic reconfiguration (a notification with a newer config version makes a
//! LOOKING Java node adopt it and restart the election; here a different server list is only
//! reported, once per peer, as [`Action::ConfigMismatch`]), the oracle of two-node ensembles
//! (`QuorumOracleMaj`), hierarchical quorums, and the leader's `reportLookingSid` (off unless
//! `zookeeper.leader.maxTimeToWaitForEpoch` is set).

use std::collections::{BTreeMap, VecDeque};

use super::{LearnerType, Members, Notification, PeerState, Sid, Vote};

mod server_list;
mod status;

pub use server_list::ServerList;
pub use status::{ElectionStatus, LastNotification, PeerStatus};

#[cfg(test)]
mod pump;
#[cfg(test)]
mod tests;

/// The notification format version we send: 0x2, the 3.5+ form that carries our configuration.
pub const NOTIFICATION_VERSION: i32 = 0x2;

/// At most this many servers outside our configuration are remembered (for status and the
/// config-mismatch report); a sid from a socket must not grow the table without bound.
pub const STRANGERS_MAX: usize = 64;

/// Timing of the election, ZooKeeper's defaults in `Default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How long a quorum for our vote must stand without a better vote arriving
    /// (`FastLeaderElection.finalizeWait`, fixed at 200 ms in ZooKeeper).
    pub finalize_wait_ms: u64,
    /// The first notification timeout (`zookeeper.fastleader.minNotificationInterval`, 200 ms).
    pub min_notification_interval_ms: u64,
    /// Where the doubling stops (`zookeeper.fastleader.maxNotificationInterval`, 60 s).
    pub max_notification_interval_ms: u64,
}

impl Default for ElectionConfig {
    fn default() -> ElectionConfig {
        ElectionConfig {
            finalize_wait_ms: 200,
            min_notification_interval_ms: 200,
            max_notification_interval_ms: 60_000,
        }
    }
}

/// What the driver tells the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Become LOOKING and start a new round (`lookForLeader`): our last logged zxid and the
    /// epoch in the `currentEpoch` file (the peer epoch of our initial vote). Notifications that
    /// arrive before the first `Start` are recorded for status only.
    Start {
        last_zxid: i64,
        current_epoch: i64,
    },
    /// A notification from `from` (the sid the election connection announced).
    Received {
        from: Sid,
        n: Notification,
    },
    /// Time passed; timers are computed from `now_ms`.
    Tick,
    /// The driver's view of the election connection to `sid` (status only).
    PeerReachable {
        sid: Sid,
    },
    PeerUnreachable {
        sid: Sid,
    },
    /// We now serve in `state` (not LOOKING) with `vote` as our current vote: after a decision
    /// the election sets this itself; ZAB sends it when it changes the vote (ZooKeeper's
    /// `updateElectionVote`: the peer epoch becomes the new epoch once synced with the leader).
    /// LOOKING peers that notify us get this vote back. Ends a round in progress.
    Serving {
        state: PeerState,
        vote: Vote,
    },
}

/// What the election asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue `n` for `to` (one queue per peer; ZooKeeper keeps only the newest notification per
    /// peer, so a driver may replace an unsent one).
    Send { to: Sid, n: Notification },
    /// The election is over: serve in `state` with `vote` as the current vote
    /// (`vote.election_epoch` is the round it was decided in).
    Decided { vote: Vote, state: PeerState, duration_ms: u64 },
    /// `sid` announced a server list different from ours (reported once per peer and list).
    /// Log it at WARN with [`ServerList::mismatch_message`].
    ConfigMismatch { sid: Sid, ours: ServerList, theirs: ServerList },
    /// No notification arrived within the timeout; we notified every voter again and now wait
    /// `next_timeout_ms` (ZooKeeper logs "Notification time out: N ms").
    NotificationTimeout { next_timeout_ms: u64 },
}

/// A vote as ZooKeeper's `Vote` holds it, with the sender's state and the notification's format
/// version, which decide how two votes compare (`Vote.equals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ballot {
    vote: Vote,
    state: PeerState,
    version: i32,
}

impl Ballot {
    fn looking(vote: Vote) -> Ballot {
        Ballot { vote, state: PeerState::Looking, version: 0 }
    }

    /// ZooKeeper's `Vote.equals`: when either side is LOOKING, all four numbers must agree. Out
    /// of election only the leader and peer epoch count (zxid and round can differ between its
    /// followers), and only the leader when exactly one side predates format version 1.
    fn matches(&self, other: &Ballot) -> bool {
        let (a, b) = (&self.vote, &other.vote);
        if self.state == PeerState::Looking || other.state == PeerState::Looking {
            a == b
        } else if (self.version > 0) != (other.version > 0) {
            a.leader == b.leader
        } else {
            a.leader == b.leader && a.peer_epoch == b.peer_epoch
        }
    }
}

/// The state of one `lookForLeader` call.
#[derive(Debug, Clone)]
struct Round {
    started_ms: u64,
    /// Votes of this round (LOOKING ones, and FOLLOWING/LEADING ones of the same round).
    recvset: BTreeMap<Sid, Ballot>,
    /// FOLLOWING/LEADING votes of any round.
    outofelection: BTreeMap<Sid, Ballot>,
    notification_timeout_ms: u64,
    /// When we notify everyone again if nothing arrives (the poll's timeout).
    notification_deadline_ms: u64,
    /// Set while a quorum for our vote waits out the finalize window.
    finalize_deadline_ms: Option<u64>,
}

/// The vote we start each round with (`getInitId`, `getInitLastLoggedZxid`, `getPeerEpoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Initial {
    leader: Sid,
    zxid: i64,
    peer_epoch: i64,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    last: Option<(Notification, u64)>,
    reachable: Option<bool>,
    /// The list we last reported for this peer, so a mismatch is reported once.
    reported: Option<ServerList>,
}

/// One server's FastLeaderElection.
#[derive(Debug, Clone)]
pub struct Election {
    my_sid: Sid,
    members: Members,
    servers: ServerList,
    my_config: Option<Vec<u8>>,
    cfg: ElectionConfig,
    learner_type: LearnerType,
    state: PeerState,
    logical_clock: i64,
    /// Our vote in the current round (`proposedLeader/Zxid/Epoch`); its election epoch is unused.
    proposal: Vote,
    initial: Option<Initial>,
    /// QuorumPeer's current vote: the initial one until the first decision, then the decided
    /// one (kept while a later round runs).
    current_vote: Option<Vote>,
    round: Option<Round>,
    peers: BTreeMap<Sid, Peer>,
    /// Our own notifications on their way back to us (the loopback).
    loopback: VecDeque<Notification>,
}

impl Election {
    /// `my_config` is what we announce as our configuration in every notification (ZooKeeper's
    /// `QuorumVerifier.toString()`: the `server.N=...` lines and `version=...`).
    pub fn new(my_sid: Sid, members: Members, my_config: Option<Vec<u8>>, cfg: ElectionConfig) -> Election {
        let learner_type = members.learner_type(my_sid).unwrap_or_else(|| {
            panic!(
                "server {my_sid} is not in its own configuration (config validation lets no such node start)"
            )
        });
        assert!(cfg.min_notification_interval_ms > 0, "a zero notification timeout would notify in a loop");
        assert!(cfg.min_notification_interval_ms <= cfg.max_notification_interval_ms);
        let servers = ServerList::from_members(&members);
        Election {
            my_sid,
            members,
            servers,
            my_config,
            cfg,
            learner_type,
            state: PeerState::Looking,
            logical_clock: 0,
            proposal: Vote { leader: -1, zxid: -1, election_epoch: 0, peer_epoch: -1 },
            initial: None,
            current_vote: None,
            round: None,
            peers: BTreeMap::new(),
            loopback: VecDeque::new(),
        }
    }

    pub fn my_sid(&self) -> Sid {
        self.my_sid
    }
    pub fn state(&self) -> PeerState {
        self.state
    }
    /// The round (`logicalclock`).
    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }
    /// The decided (or, before the first decision, initial) vote: what peers are told.
    pub fn current_vote(&self) -> Option<Vote> {
        self.current_vote
    }
    /// Our vote in the round in progress, if one is.
    pub fn proposal(&self) -> Option<Vote> {
        self.round.as_ref().map(|_| self.proposal_vote())
    }
    pub fn is_looking(&self) -> bool {
        self.round.is_some()
    }

    /// When `step(Tick)` next has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let r = self.round.as_ref()?;
        Some(r.finalize_deadline_ms.unwrap_or(r.notification_deadline_ms))
    }

    pub fn step(&mut self, input: Input, now_ms: u64, out: &mut Vec<Action>) {
        match input {
            Input::Start { last_zxid, current_epoch } => self.start(last_zxid, current_epoch, now_ms, out),
            Input::Received { from, n } => {
                self.record(from, &n, now_ms, out);
                self.on_notification(from, n, now_ms, out);
            }
            Input::Tick => self.tick(now_ms, out),
            Input::PeerReachable { sid } => self.set_reachable(sid, true),
            Input::PeerUnreachable { sid } => {
                self.set_reachable(sid, false);
                // A quorum waiting out the finalize window whose only missing votes are from
                // voters that cannot be reached decides now.
                let waiting = self.round.as_ref().is_some_and(|r| r.finalize_deadline_ms.is_some());
                if waiting && self.all_voters_agree() {
                    self.decide_for_proposal(now_ms, out);
                }
            }
            Input::Serving { state, vote } => {
                assert!(state != PeerState::Looking, "LOOKING is entered with Input::Start");
                assert!(
                    state != PeerState::Leading || self.members.is_voter(self.my_sid),
                    "only a voter leads"
                );
                self.state = state;
                self.current_vote = Some(vote);
                self.round = None;
                self.loopback.clear();
            }
        }
        // Deliver our own notifications as ZooKeeper's connection manager does: they join the
        // receive queue behind what we were handling. Handling one never sends another (it is
        // of our round and not better than our vote), so this ends.
        let mut delivered = 0;
        while let Some(n) = self.loopback.pop_front() {
            delivered += 1;
            assert!(delivered <= 1, "the loopback keeps sending");
            self.on_notification(self.my_sid, n, now_ms, out);
        }
    }

    fn start(&mut self, last_zxid: i64, current_epoch: i64, now_ms: u64, out: &mut Vec<Action>) {
        let participant = self.learner_type == LearnerType::Participant;
        let initial = Initial {
            leader: if self.members.is_voter(self.my_sid) { self.my_sid } else { i64::MIN },
            zxid: if participant { last_zxid } else { i64::MIN },
            peer_epoch: if participant { current_epoch } else { i64::MIN },
        };
        // QuorumPeer starts with a vote for itself (election epoch -1) and keeps the last
        // decided vote while it looks again.
        if self.current_vote.is_none() {
            self.current_vote = Some(Vote {
                leader: self.my_sid,
                zxid: last_zxid,
                election_epoch: -1,
                peer_epoch: current_epoch,
            });
        }
        self.initial = Some(initial);
        self.state = PeerState::Looking;
        self.logical_clock += 1;
        self.set_proposal(initial.leader, initial.zxid, initial.peer_epoch);
        let t = self.cfg.min_notification_interval_ms;
        self.round = Some(Round {
            started_ms: now_ms,
            recvset: BTreeMap::new(),
            outofelection: BTreeMap::new(),
            notification_timeout_ms: t,
            notification_deadline_ms: now_ms + t,
            finalize_deadline_ms: None,
        });
        self.loopback.clear();
        self.send_notifications(out);
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let Some(r) = self.round.as_mut() else { return };
        if let Some(deadline) = r.finalize_deadline_ms {
            if now_ms >= deadline {
                self.decide_for_proposal(now_ms, out);
            }
            return;
        }
        if now_ms < r.notification_deadline_ms {
            return;
        }
        let next = (r.notification_timeout_ms * 2).min(self.cfg.max_notification_interval_ms);
        r.notification_timeout_ms = next;
        r.notification_deadline_ms = now_ms + next;
        self.send_notifications(out);
        out.push(Action::NotificationTimeout { next_timeout_ms: next });
    }

    /// Status bookkeeping and the config check, for every notification from a peer.
    fn record(&mut self, from: Sid, n: &Notification, now_ms: u64, out: &mut Vec<Action>) {
        if from == self.my_sid {
            return;
        }
        let known = self.members.learner_type(from).is_some();
        let strangers = self.peers.keys().filter(|s| self.members.learner_type(**s).is_none()).count();
        if !known && !self.peers.contains_key(&from) && strangers >= STRANGERS_MAX {
            return;
        }
        let peer = self.peers.entry(from).or_default();
        peer.last = Some((n.clone(), now_ms));
        let Some(theirs) = n.config.as_deref().and_then(ServerList::parse) else { return };
        if theirs != self.servers && peer.reported.as_ref() != Some(&theirs) {
            peer.reported = Some(theirs.clone());
            out.push(Action::ConfigMismatch { sid: from, ours: self.servers.clone(), theirs });
        }
    }

    fn set_reachable(&mut self, sid: Sid, up: bool) {
        if self.members.learner_type(sid).is_some() || self.peers.contains_key(&sid) {
            self.peers.entry(sid).or_default().reachable = Some(up);
        }
    }

    /// ZooKeeper's `WorkerReceiver` (the replies) followed by `lookForLeader`'s handling.
    fn on_notification(&mut self, from: Sid, n: Notification, now_ms: u64, out: &mut Vec<Action>) {
        let Some(cv) = self.current_vote else {
            return; // neither started nor serving: nothing to answer with yet
        };
        if !self.members.is_voter(from) {
            // A non-voting sender is answered at once with our current vote and our round, and
            // its notification goes no further.
            let vote = Vote { election_epoch: self.logical_clock, ..cv };
            self.send(from, self.state, vote, out);
            return;
        }
        if self.round.is_none() {
            if n.state == PeerState::Looking {
                self.send(from, self.state, cv, out);
            }
            return;
        }
        if n.state == PeerState::Looking && n.vote.election_epoch < self.logical_clock {
            // A LOOKING voter behind us gets our vote so it catches up with our round.
            self.send(from, PeerState::Looking, self.proposal_vote(), out);
        }
        self.look(from, n, now_ms, out);
    }

    /// One notification through `lookForLeader`'s loop (the sender is a voter).
    fn look(&mut self, from: Sid, n: Notification, now_ms: u64, out: &mut Vec<Action>) {
        let finalize_wait_ms = self.cfg.finalize_wait_ms;
        let proposal = self.proposal_vote();
        let r = self.round.as_mut().expect("looking");
        if r.finalize_deadline_ms.is_some() {
            if !n.vote.beats(&proposal) {
                // Not better: ZooKeeper drops it and waits the full window again. A matching
                // vote of our round still counts towards "every voter agrees".
                r.finalize_deadline_ms = Some(now_ms + finalize_wait_ms);
                if n.state == PeerState::Looking && n.vote == proposal {
                    r.recvset.insert(from, Ballot::looking(n.vote));
                    if self.all_voters_agree() {
                        self.decide_for_proposal(now_ms, out);
                    }
                }
                return;
            }
            // A better vote ends the wait and is handled as usual.
            r.finalize_deadline_ms = None;
        }
        r.notification_deadline_ms = now_ms + r.notification_timeout_ms;
        if !self.members.is_voter(n.vote.leader) {
            return; // a vote for a server that cannot lead
        }
        match n.state {
            PeerState::Looking => self.look_looking(from, n, now_ms, out),
            PeerState::Observing => {}
            PeerState::Following | PeerState::Leading => self.look_out_of_election(from, n, now_ms, out),
        }
    }

    fn look_looking(&mut self, from: Sid, n: Notification, now_ms: u64, out: &mut Vec<Action>) {
        let init = self.initial.expect("started");
        if init.zxid == -1 || n.vote.zxid == -1 {
            return; // ZooKeeper ignores LOOKING votes while either side's zxid is -1
        }
        let v = n.vote;
        if v.election_epoch > self.logical_clock {
            self.logical_clock = v.election_epoch;
            self.round.as_mut().expect("looking").recvset.clear();
            let init_vote =
                Vote { leader: init.leader, zxid: init.zxid, election_epoch: 0, peer_epoch: init.peer_epoch };
            if v.beats(&init_vote) {
                self.set_proposal(v.leader, v.zxid, v.peer_epoch);
            } else {
                self.set_proposal(init.leader, init.zxid, init.peer_epoch);
            }
            self.send_notifications(out);
        } else if v.election_epoch < self.logical_clock {
            return;
        } else if v.beats(&self.proposal_vote()) {
            self.set_proposal(v.leader, v.zxid, v.peer_epoch);
            self.send_notifications(out);
        }
        let ours = Ballot::looking(self.proposal_vote());
        let r = self.round.as_mut().expect("looking");
        r.recvset.insert(from, Ballot::looking(v));
        if !self.members.is_quorum(Self::acks(&r.recvset, &ours).iter()) {
            return;
        }
        if self.all_voters_agree() {
            self.decide_for_proposal(now_ms, out);
        } else {
            let wait = self.cfg.finalize_wait_ms;
            self.round.as_mut().expect("looking").finalize_deadline_ms = Some(now_ms + wait);
        }
    }

    /// `receivedFollowingNotification`: join a leader that a quorum reports and that itself
    /// reported LEADING.
    fn look_out_of_election(&mut self, from: Sid, n: Notification, now_ms: u64, out: &mut Vec<Action>) {
        let theirs = Ballot { vote: n.vote, state: n.state, version: n.version };
        let leader = n.vote.leader;
        let ee = n.vote.election_epoch;
        let r = self.round.as_mut().expect("looking");
        if ee == self.logical_clock {
            // ZooKeeper stores these with format version 0, so against a 3.4.6+ notification
            // only the leader is compared.
            r.recvset.insert(from, Ballot { version: 0, ..theirs });
            let r = self.round.as_ref().expect("looking");
            if self.members.is_quorum(Self::acks(&r.recvset, &theirs).iter())
                && self.check_leader(&r.recvset, leader, ee)
            {
                return self.finish(n.vote, now_ms, out);
            }
        }
        let r = self.round.as_mut().expect("looking");
        r.outofelection.insert(from, theirs);
        let r = self.round.as_ref().expect("looking");
        if self.members.is_quorum(Self::acks(&r.outofelection, &theirs).iter())
            && self.check_leader(&r.outofelection, leader, ee)
        {
            self.logical_clock = ee;
            self.finish(n.vote, now_ms, out);
        }
    }

    /// `checkLeader`: a leader other than us must have told us it is LEADING; if it is us, the
    /// votes must be of our round.
    fn check_leader(&self, votes: &BTreeMap<Sid, Ballot>, leader: Sid, election_epoch: i64) -> bool {
        if leader != self.my_sid {
            votes.get(&leader).is_some_and(|b| b.state == PeerState::Leading)
        } else {
            self.logical_clock == election_epoch
        }
    }

    fn acks(votes: &BTreeMap<Sid, Ballot>, ours: &Ballot) -> Vec<Sid> {
        votes.iter().filter(|(_, b)| b.matches(ours)).map(|(s, _)| *s).collect()
    }

    /// Every voter that can be reached has our vote, of our round, in the round's votes (the
    /// caller has checked that they are a quorum). A voter the driver reports unreachable (its
    /// connection refused or lost) cannot send a better vote in the finalize window, so waiting
    /// for it only delays the failover. Safety does not rest on the wait: a quorum agreeing on
    /// the vote with the newest (epoch, zxid) among them holds every committed txn, and ZAB's
    /// epoch establishment refuses a follower ahead of its leader.
    fn all_voters_agree(&self) -> bool {
        let Some(r) = self.round.as_ref() else { return false };
        let ours = Ballot::looking(self.proposal_vote());
        self.members.voters.iter().all(|s| {
            let unreachable =
                *s != self.my_sid && self.peers.get(s).is_some_and(|p| p.reachable == Some(false));
            unreachable || r.recvset.get(s).is_some_and(|b| b.matches(&ours))
        })
    }

    fn decide_for_proposal(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let v = self.proposal_vote();
        self.finish(v, now_ms, out);
    }

    fn finish(&mut self, vote: Vote, now_ms: u64, out: &mut Vec<Action>) {
        let r = self.round.take().expect("deciding ends a round in progress");
        let state = if vote.leader == self.my_sid {
            PeerState::Leading
        } else if self.learner_type == LearnerType::Participant {
            PeerState::Following
        } else {
            PeerState::Observing
        };
        // An observer's vote is beaten by every voter's and only voters are adopted.
        assert!(self.members.is_voter(vote.leader), "elected {} is not a voter", vote.leader);
        self.state = state;
        self.current_vote = Some(vote);
        self.loopback.clear();
        out.push(Action::Decided { vote, state, duration_ms: now_ms.saturating_sub(r.started_ms) });
    }

    fn set_proposal(&mut self, leader: Sid, zxid: i64, peer_epoch: i64) {
        self.proposal = Vote { leader, zxid, election_epoch: 0, peer_epoch };
    }

    /// Our vote in this round, with the round as its election epoch.
    fn proposal_vote(&self) -> Vote {
        Vote { election_epoch: self.logical_clock, ..self.proposal }
    }

    /// Notify every voter of our vote (`sendNotifications`); our own copy goes to the loopback.
    fn send_notifications(&mut self, out: &mut Vec<Action>) {
        let v = self.proposal_vote();
        for sid in self.members.voters.iter().copied().filter(|s| *s != self.my_sid).collect::<Vec<_>>() {
            self.send(sid, PeerState::Looking, v, out);
        }
        if self.members.is_voter(self.my_sid) {
            self.loopback.push_back(self.notification(PeerState::Looking, v));
        }
    }

    fn send(&self, to: Sid, state: PeerState, vote: Vote, out: &mut Vec<Action>) {
        out.push(Action::Send { to, n: self.notification(state, vote) });
    }

    fn notification(&self, state: PeerState, vote: Vote) -> Notification {
        Notification {
            state,
            vote,
            version: if self.my_config.is_some() { NOTIFICATION_VERSION } else { 0x1 },
            config: self.my_config.clone(),
        }
    }
}
