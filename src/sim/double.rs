//! `RefZab`: a TEST DOUBLE, not zkd's protocol. A small ZAB-shaped quorum (Raft-style voting on
//! ZooKeeper's (currentEpoch, lastZxid) order, a full-log NEWLEADER sync, PROPOSAL/ACK/COMMIT
//! broadcast) written only to exercise the simulator's world and to prove that its invariant
//! checks fire: [`Bug`] switches on one deliberate fault at a time. The real state machine is
//! `quorum::peer::Peer`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Boot, Booted, Channel, Effect, Entry, Input, Ms, SimNode, Txn};
use crate::quorum::{make_zxid, PeerState, Sid};

/// One deliberate fault, to show the checks catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    None,
    /// A serving follower applies a proposal as it arrives, before the COMMIT.
    ApplyOnPropose,
    /// The leader commits once it logged a proposal itself, without waiting for a quorum.
    CommitOnOneAck,
    /// A node never writes its epoch files: after a crash it may vote (and lead) again in an
    /// epoch it already promised, so two leaders share an epoch and reuse zxids.
    EpochNotPersisted,
    /// A voter grants any candidate, whatever its log: a leader may lack committed txns.
    VoteIgnoresLog,
    /// A follower keeps its own log on NEWLEADER instead of cutting what the leader lacks.
    NoTruncate,
    /// The leader proposes forwarded requests in pairs, the second first.
    ReorderRequests,
    /// Like `ReorderRequests`, but zxids are given on arrival, so the log gets them out of order.
    NumberOnArrival,
    /// A follower takes the epoch of a NEWLEADER from a stale leader, writing it back to disk.
    StaleEpochOnDisk,
    /// A voter forgets whom it voted for in an epoch and votes again for another candidate.
    VoteTwice,
    /// A new leader numbers proposals on from its last logged zxid instead of starting its own
    /// epoch: it reuses zxids that others logged with other content (say, the tail a crash tore
    /// from its own log).
    ZxidFromLastLogged,
}

const TICK_MS: Ms = 10;
const PING_MS: Ms = 60;
const SYNC_LIMIT_MS: Ms = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefMsg {
    VoteReq {
        epoch: u32,
        current: u32,
        last: i64,
    },
    VoteResp {
        epoch: u32,
        granted: bool,
    },
    /// The leader's whole log; `safe`: how much of it is committed or will be when this epoch
    /// is established (a learner's state must not hold more: ZooKeeper's leader sends TRUNC to
    /// a learner whose last zxid is past its committed log).
    NewLeader {
        epoch: u32,
        log: Vec<Entry>,
        safe: usize,
    },
    AckNewLeader {
        epoch: u32,
        last: i64,
    },
    UpToDate {
        epoch: u32,
    },
    Propose {
        epoch: u32,
        entry: Entry,
    },
    Ack {
        epoch: u32,
        zxid: i64,
    },
    Commit {
        epoch: u32,
        zxid: i64,
    },
    Ping {
        epoch: u32,
        commit: i64,
    },
    Pong {
        epoch: u32,
    },
    Request {
        txn: Txn,
    },
    SyncReq {
        session: i64,
        id: u64,
    },
    SyncResp {
        session: i64,
        id: u64,
        zxid: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Detached,
    Syncing,
    Attached,
}

#[derive(Debug, Clone)]
struct Learner {
    link: Link,
    acked: i64,
    heard: Ms,
}

#[derive(Debug)]
enum Role {
    Looking { candidate: Option<(u32, BTreeSet<Sid>)> },
    Following { leader: Sid, epoch: u32, synced: bool, serving: bool, commit: i64 },
    Leading(Box<Leading>),
}

#[derive(Debug)]
struct Leading {
    epoch: u32,
    serving: bool,
    since: Ms,
    pinged: Ms,
    /// The log's length when this node won: a quorum must hold all of it to establish.
    start_len: usize,
    counter: u32,
    learners: BTreeMap<Sid, Learner>,
    /// Log entries committed (a count: `log[..committed]`).
    committed: usize,
    /// Syncs waiting for the commit to reach a zxid: (from, session, id, zxid); `from` is self
    /// for a client of the leader.
    syncs: Vec<(Sid, i64, u64, i64)>,
    /// Requests held back by `Bug::ReorderRequests`.
    held: Option<Txn>,
}

pub struct RefZab {
    sid: Sid,
    voters: Vec<Sid>,
    bug: Bug,
    accepted: u32,
    current: u32,
    log: Vec<Entry>,
    /// How many log entries are known durable.
    durable: usize,
    /// How many log entries the state holds.
    applied: usize,
    voted: Option<(u32, Sid)>,
    role: Role,
    /// Local time of the last sign of life of the leader (following) or of an election timer reset.
    heard: Ms,
    attempts: u64,
    /// A sync of a client of this follower, waiting for the leader's answer.
    syncs: Vec<(i64, u64)>,
}

// The bug for every `RefZab` built by `SimNode::boot` on this thread (the trait's `boot` has no
// parameter for it; the simulator is single-threaded).
thread_local! {
    static BUG: std::cell::Cell<Bug> = const { std::cell::Cell::new(Bug::None) };
}

/// Runs `f` with every `RefZab` booted in it carrying `bug`.
pub fn with_bug<T>(bug: Bug, f: impl FnOnce() -> T) -> T {
    let old = BUG.with(|b| b.replace(bug));
    let out = f();
    BUG.with(|b| b.set(old));
    out
}

type Out = Vec<Effect<RefMsg>>;

impl RefZab {
    fn last_zxid(&self) -> i64 {
        self.log.last().map_or(0, |e| e.zxid)
    }

    fn quorum(&self, n: usize) -> bool {
        n * 2 > self.voters.len()
    }

    fn peers(&self) -> impl Iterator<Item = Sid> + '_ {
        self.voters.iter().copied().filter(move |s| *s != self.sid)
    }

    fn election_timeout(&self) -> Ms {
        250 + 25 * (self.sid as Ms - 1) + 40 * self.attempts.min(8)
    }

    fn send(out: &mut Out, to: Sid, msg: RefMsg) {
        let channel = match msg {
            RefMsg::VoteReq { .. } | RefMsg::VoteResp { .. } => Channel::Election,
            _ => Channel::Quorum,
        };
        out.push(Effect::Send { to, channel, msg });
    }

    fn persist_accepted(&mut self, e: u32, out: &mut Out) {
        self.accepted = e;
        if self.bug != Bug::EpochNotPersisted {
            out.push(Effect::PersistAcceptedEpoch(e));
        }
    }

    fn look(&mut self, now: Ms, out: &mut Out) {
        match &self.role {
            Role::Following { leader, .. } => {
                out.push(Effect::Disconnect { peer: *leader, channel: Channel::Quorum })
            }
            Role::Leading(l) => {
                for s in l.learners.keys() {
                    out.push(Effect::Disconnect { peer: *s, channel: Channel::Quorum });
                }
            }
            Role::Looking { .. } => return,
        }
        self.role = Role::Looking { candidate: None };
        self.heard = now;
        self.syncs.clear();
        out.push(Effect::Role { state: PeerState::Looking, epoch: self.current, serving: false });
    }

    fn apply_to(&mut self, count: usize, out: &mut Out) {
        while self.applied < count.min(self.log.len()) {
            out.push(Effect::Apply(self.log[self.applied]));
            self.applied += 1;
        }
    }

    fn applied_through(&self, zxid: i64) -> usize {
        self.log.iter().take_while(|e| e.zxid <= zxid).count()
    }

    fn tick(&mut self, now: Ms, out: &mut Out) {
        match &mut self.role {
            Role::Looking { .. } => {
                if now.saturating_sub(self.heard) >= self.election_timeout() {
                    self.attempts += 1;
                    self.heard = now;
                    let epoch = self.accepted + 1;
                    self.persist_accepted(epoch, out);
                    self.voted = Some((epoch, self.sid));
                    self.role = Role::Looking { candidate: Some((epoch, BTreeSet::from([self.sid]))) };
                    let (current, last) = (self.current, self.last_zxid());
                    for p in self.peers().collect::<Vec<_>>() {
                        Self::send(out, p, RefMsg::VoteReq { epoch, current, last });
                    }
                }
            }
            Role::Following { .. } => {
                if now.saturating_sub(self.heard) > SYNC_LIMIT_MS {
                    self.look(now, out);
                }
            }
            Role::Leading(l) => {
                let epoch = l.epoch;
                let commit = if l.committed > 0 { self.log[l.committed - 1].zxid } else { 0 };
                let mut alive = 1;
                let mut sync = Vec::new();
                let ping = now.saturating_sub(l.pinged) >= PING_MS;
                if ping {
                    l.pinged = now;
                }
                for (s, lr) in l.learners.iter_mut() {
                    match lr.link {
                        Link::Detached => {
                            lr.link = Link::Syncing;
                            lr.heard = now;
                            sync.push(*s);
                        }
                        _ => {
                            if ping {
                                Self::send(out, *s, RefMsg::Ping { epoch, commit });
                            }
                            if lr.link == Link::Attached && now.saturating_sub(lr.heard) <= SYNC_LIMIT_MS {
                                alive += 1;
                            }
                        }
                    }
                }
                let (serving, since, safe) = (l.serving, l.since, l.committed.max(l.start_len));
                for s in sync {
                    Self::send(out, s, RefMsg::NewLeader { epoch, log: self.log.clone(), safe });
                }
                let lost = !self.quorum(alive) && (serving || now.saturating_sub(since) > 2 * SYNC_LIMIT_MS);
                if lost {
                    self.look(now, out);
                }
            }
        }
    }

    fn persist_current(&mut self, e: u32, out: &mut Out) {
        self.current = e;
        if self.bug != Bug::EpochNotPersisted {
            out.push(Effect::PersistCurrentEpoch(e));
        }
    }

    fn lead(&mut self, epoch: u32, now: Ms, out: &mut Out) {
        self.persist_current(epoch, out);
        let learners =
            self.peers().map(|s| (s, Learner { link: Link::Syncing, acked: 0, heard: now })).collect();
        for p in self.peers().collect::<Vec<_>>() {
            let safe = self.log.len();
            Self::send(out, p, RefMsg::NewLeader { epoch, log: self.log.clone(), safe });
        }
        self.role = Role::Leading(Box::new(Leading {
            epoch,
            serving: false,
            since: now,
            pinged: now,
            start_len: self.log.len(),
            counter: 0,
            learners,
            committed: 0,
            syncs: Vec::new(),
            held: None,
        }));
        out.push(Effect::Role { state: PeerState::Leading, epoch, serving: false });
        self.advance_commit(out);
    }

    /// Recomputes the leader's commit point from the acks; commits, applies and tells learners.
    fn advance_commit(&mut self, out: &mut Out) {
        let Role::Leading(l) = &mut self.role else { return };
        let attached = |l: &Leading, z: i64| {
            l.learners.values().filter(|lr| lr.link == Link::Attached && lr.acked >= z).count()
        };
        if !l.serving {
            // Established once a quorum (the leader counting itself when its log is durable)
            // has taken the NEWLEADER sync.
            let me = usize::from(self.durable >= l.start_len);
            let synced = l.learners.values().filter(|lr| lr.link == Link::Attached).count() + me;
            if synced * 2 <= self.voters.len() {
                return;
            }
            l.serving = true;
            out.push(Effect::Role { state: PeerState::Leading, epoch: l.epoch, serving: true });
            for (s, lr) in l.learners.iter() {
                if lr.link == Link::Attached {
                    out.push(Effect::Send {
                        to: *s,
                        channel: Channel::Quorum,
                        msg: RefMsg::UpToDate { epoch: l.epoch },
                    });
                }
            }
        }
        let before = l.committed;
        while l.committed < self.log.len() {
            let z = self.log[l.committed].zxid;
            let me = usize::from(self.durable > l.committed);
            let ok = if self.bug == Bug::CommitOnOneAck {
                me == 1
            } else {
                (me + attached(l, z)) * 2 > self.voters.len()
            };
            if !ok {
                break;
            }
            l.committed += 1;
        }
        if l.committed == before {
            return;
        }
        let (epoch, committed) = (l.epoch, l.committed);
        let zxid = self.log[committed - 1].zxid;
        for (s, lr) in l.learners.iter() {
            if lr.link != Link::Detached {
                out.push(Effect::Send {
                    to: *s,
                    channel: Channel::Quorum,
                    msg: RefMsg::Commit { epoch, zxid },
                });
            }
        }
        let mut done = Vec::new();
        l.syncs.retain(|s| {
            let ready = s.3 <= zxid;
            if ready {
                done.push(*s);
            }
            !ready
        });
        self.apply_to(committed, out);
        for (from, session, id, z) in done {
            if from == self.sid {
                out.push(Effect::SyncDone { session, id });
            } else {
                Self::send(out, from, RefMsg::SyncResp { session, id, zxid: z });
            }
        }
    }

    fn propose(&mut self, txn: Txn, out: &mut Out) {
        let Role::Leading(l) = &mut self.role else { return };
        if !l.serving {
            return;
        }
        l.counter += 1;
        let zxid = match self.log.last() {
            Some(last) if self.bug == Bug::ZxidFromLastLogged => last.zxid + 1,
            _ => make_zxid(l.epoch, l.counter),
        };
        self.log_own(Entry { zxid, txn }, out);
    }

    /// The leader logs its proposal and sends it to every learner it syncs or has synced.
    fn log_own(&mut self, entry: Entry, out: &mut Out) {
        let Role::Leading(l) = &mut self.role else { return };
        let epoch = l.epoch;
        let to: Vec<Sid> =
            l.learners.iter().filter(|(_, lr)| lr.link != Link::Detached).map(|(s, _)| *s).collect();
        if self.log.last().is_some_and(|last| last.zxid >= entry.zxid) && self.bug == Bug::NumberOnArrival {
            // The world refuses an out-of-order append; keep this node's log the same.
            out.push(Effect::LogAppend(entry));
            return;
        }
        self.log.push(entry);
        out.push(Effect::LogAppend(entry));
        for s in to {
            Self::send(out, s, RefMsg::Propose { epoch, entry });
        }
    }

    fn on_message(&mut self, from: Sid, msg: RefMsg, now: Ms, out: &mut Out) {
        match msg {
            RefMsg::VoteReq { epoch, current, last } => {
                let fresh =
                    (current, last) >= (self.current, self.last_zxid()) || self.bug == Bug::VoteIgnoresLog;
                let granted = if epoch > self.accepted {
                    // The first request of a new epoch: promise it, and vote only now (whom this
                    // node voted for is not on disk, so after a restart it votes no more in the
                    // epoch it promised).
                    self.persist_accepted(epoch, out);
                    self.look(now, out);
                    self.role = Role::Looking { candidate: None };
                    fresh
                } else if epoch == self.accepted {
                    match self.voted {
                        Some((e, s)) if e == epoch && s == from => true,
                        _ => self.bug == Bug::VoteTwice && fresh && !matches!(self.role, Role::Leading(_)),
                    }
                } else {
                    return;
                };
                if granted {
                    self.voted = Some((epoch, from));
                    self.heard = now;
                } else if epoch > self.voted.map_or(0, |v| v.0) {
                    self.voted = Some((epoch, 0));
                }
                Self::send(out, from, RefMsg::VoteResp { epoch, granted });
            }
            RefMsg::VoteResp { epoch, granted } => {
                if let Role::Looking { candidate: Some((e, votes)) } = &mut self.role {
                    if *e == epoch && granted {
                        votes.insert(from);
                        if votes.len() * 2 > self.voters.len() {
                            self.attempts = 0;
                            self.lead(epoch, now, out);
                        }
                    }
                }
            }
            RefMsg::NewLeader { epoch, log, safe } => {
                if epoch < self.accepted && self.bug != Bug::StaleEpochOnDisk {
                    return;
                }
                if matches!(self.role, Role::Leading(_)) && epoch <= self.current {
                    return;
                }
                if epoch != self.accepted {
                    self.persist_accepted(epoch, out);
                }
                let same = matches!(self.role, Role::Following { leader, epoch: e, .. } if leader == from && e == epoch);
                if !same {
                    self.look(now, out);
                }
                let common = self.log.iter().zip(&log).take_while(|(a, b)| a == b).count();
                let keep = if self.bug == Bug::NoTruncate { self.log.len() } else { common };
                // What the state holds beyond the safe point goes too (it may never commit).
                let keep =
                    if self.applied > safe && self.bug != Bug::NoTruncate { keep.min(safe) } else { keep };
                if keep < self.log.len() {
                    let zxid = if keep == 0 { 0 } else { self.log[keep - 1].zxid };
                    self.log.truncate(keep);
                    self.durable = self.durable.min(keep);
                    out.push(Effect::LogTruncate { zxid });
                    // A truncation reloads the state from the log.
                    self.applied = self.log.len();
                }
                let last = self.last_zxid();
                for e in log.into_iter().filter(|e| e.zxid > last) {
                    self.log.push(e);
                    out.push(Effect::LogAppend(e));
                }
                self.role = Role::Following { leader: from, epoch, synced: false, serving: false, commit: 0 };
                self.heard = now;
                out.push(Effect::Role { state: PeerState::Following, epoch, serving: false });
                self.follower_durable(out);
            }
            RefMsg::UpToDate { epoch } => {
                if let Role::Following { leader, epoch: e, synced: true, serving, commit } = &mut self.role {
                    if *leader == from && *e == epoch && !*serving {
                        *serving = true;
                        let c = *commit;
                        out.push(Effect::Role { state: PeerState::Following, epoch, serving: true });
                        let n = self.applied_through(c);
                        self.apply_to(n, out);
                    }
                }
            }
            RefMsg::Propose { epoch, entry } => {
                if let Role::Following { leader, epoch: e, serving, .. } = self.role {
                    if leader == from && e == epoch && entry.zxid > self.last_zxid() {
                        self.heard = now;
                        self.log.push(entry);
                        out.push(Effect::LogAppend(entry));
                        if self.bug == Bug::ApplyOnPropose && serving {
                            let n = self.log.len();
                            self.apply_to(n, out);
                        }
                    }
                }
            }
            RefMsg::Commit { epoch, zxid } | RefMsg::Ping { epoch, commit: zxid } => {
                let ping = matches!(msg, RefMsg::Ping { .. });
                if let Role::Following { leader, epoch: e, serving, commit, .. } = &mut self.role {
                    if *leader == from && *e == epoch {
                        self.heard = now;
                        *commit = (*commit).max(zxid);
                        let serving = *serving;
                        if ping {
                            Self::send(out, from, RefMsg::Pong { epoch });
                        }
                        if serving {
                            let n = self.applied_through(zxid);
                            self.apply_to(n, out);
                        }
                    }
                }
            }
            RefMsg::SyncResp { session, id, zxid } => {
                if let Some(i) = self.syncs.iter().position(|s| *s == (session, id)) {
                    self.syncs.remove(i);
                    if self.applied >= self.applied_through(zxid) {
                        out.push(Effect::SyncDone { session, id });
                    }
                }
            }
            RefMsg::AckNewLeader { epoch, last } => {
                if let Role::Leading(l) = &mut self.role {
                    if let Some(lr) = l.learners.get_mut(&from) {
                        if l.epoch == epoch && lr.link == Link::Syncing {
                            lr.link = Link::Attached;
                            lr.acked = last;
                            lr.heard = now;
                            if l.serving {
                                Self::send(out, from, RefMsg::UpToDate { epoch });
                            }
                            self.advance_commit(out);
                        }
                    }
                }
            }
            RefMsg::Ack { epoch, zxid } => {
                if let Role::Leading(l) = &mut self.role {
                    if let Some(lr) = l.learners.get_mut(&from) {
                        if l.epoch == epoch && lr.link == Link::Attached {
                            lr.acked = lr.acked.max(zxid);
                            lr.heard = now;
                            self.advance_commit(out);
                        }
                    }
                }
            }
            RefMsg::Pong { epoch } => {
                if let Role::Leading(l) = &mut self.role {
                    if let Some(lr) = l.learners.get_mut(&from) {
                        if l.epoch == epoch {
                            lr.heard = now;
                        }
                    }
                }
            }
            RefMsg::Request { txn } => self.request(txn, out),
            RefMsg::SyncReq { session, id } => self.sync(from, session, id, out),
        }
    }

    /// A sync is answered once everything the leader proposed before it is committed.
    fn sync(&mut self, from: Sid, session: i64, id: u64, out: &mut Out) {
        let Role::Leading(l) = &mut self.role else { return };
        if !l.serving {
            return;
        }
        let z = self.log.last().map_or(0, |e| e.zxid);
        if l.committed < self.log.len() {
            l.syncs.push((from, session, id, z));
        } else if from == self.sid {
            out.push(Effect::SyncDone { session, id });
        } else {
            Self::send(out, from, RefMsg::SyncResp { session, id, zxid: z });
        }
    }

    fn request(&mut self, txn: Txn, out: &mut Out) {
        if matches!(self.bug, Bug::ReorderRequests | Bug::NumberOnArrival) {
            if let Role::Leading(l) = &mut self.role {
                match l.held.take() {
                    None => {
                        l.held = Some(txn);
                        if self.bug == Bug::NumberOnArrival {
                            l.counter += 1; // this request's zxid, used when it is proposed
                        }
                        return;
                    }
                    Some(first) if self.bug == Bug::NumberOnArrival => {
                        let held_counter = l.counter;
                        self.propose(txn, out);
                        if let Role::Leading(l) = &mut self.role {
                            let entry = Entry { zxid: make_zxid(l.epoch, held_counter), txn: first };
                            self.log_own(entry, out);
                        }
                        return;
                    }
                    Some(first) => {
                        self.propose(txn, out);
                        self.propose(first, out);
                        return;
                    }
                }
            }
        }
        self.propose(txn, out);
    }

    /// A follower's log became durable further: finish the sync, or ack proposals.
    fn follower_durable(&mut self, out: &mut Out) {
        let Role::Following { leader, epoch, synced, .. } = &mut self.role else { return };
        let (leader, epoch) = (*leader, *epoch);
        if !*synced {
            if self.durable < self.log.len() {
                return;
            }
            *synced = true;
            self.persist_current(epoch, out);
            let last = self.last_zxid();
            Self::send(out, leader, RefMsg::AckNewLeader { epoch, last });
        } else if self.durable > 0 {
            let zxid = self.log[self.durable - 1].zxid;
            Self::send(out, leader, RefMsg::Ack { epoch, zxid });
        }
    }
}

impl SimNode for RefZab {
    type Msg = RefMsg;

    fn boot(boot: Boot<'_>, now_ms: Ms) -> Booted<Self> {
        let node = RefZab {
            sid: boot.sid,
            voters: boot.members.voters.iter().copied().collect(),
            bug: BUG.with(|b| b.get()),
            accepted: boot.accepted_epoch,
            current: boot.current_epoch,
            log: boot.log.to_vec(),
            durable: boot.log.len(),
            applied: boot.log.len(),
            voted: None,
            role: Role::Looking { candidate: None },
            heard: now_ms,
            attempts: 0,
            syncs: Vec::new(),
        };
        Ok((
            node,
            vec![Effect::Role { state: PeerState::Looking, epoch: boot.current_epoch, serving: false }],
        ))
    }

    fn step(&mut self, input: Input<RefMsg>, now_ms: Ms) -> Vec<Effect<RefMsg>> {
        let mut out = Vec::new();
        match input {
            Input::Tick => self.tick(now_ms, &mut out),
            Input::Message { from, msg, .. } => self.on_message(from, msg, now_ms, &mut out),
            Input::ConnectionLost { peer, channel: Channel::Quorum } => match &mut self.role {
                Role::Following { leader, .. } if *leader == peer => self.look(now_ms, &mut out),
                Role::Leading(l) => {
                    if let Some(lr) = l.learners.get_mut(&peer) {
                        lr.link = Link::Detached;
                    }
                }
                _ => {}
            },
            Input::ConnectionLost { .. } | Input::Connected { .. } => {}
            Input::LogDurable { zxid } => {
                self.durable = self.log.iter().take_while(|e| e.zxid <= zxid).count().max(self.durable);
                match self.role {
                    Role::Following { .. } => self.follower_durable(&mut out),
                    Role::Leading(_) => self.advance_commit(&mut out),
                    Role::Looking { .. } => {}
                }
            }
            Input::ClientWrite { txn } => match self.role {
                Role::Leading(_) => self.request(txn, &mut out),
                Role::Following { leader, serving: true, .. } => {
                    Self::send(&mut out, leader, RefMsg::Request { txn })
                }
                _ => {}
            },
            Input::ClientSync { session, id } => match self.role {
                Role::Leading(_) => self.sync(self.sid, session, id, &mut out),
                Role::Following { leader, serving: true, .. } => {
                    self.syncs.push((session, id));
                    Self::send(&mut out, leader, RefMsg::SyncReq { session, id });
                }
                _ => {}
            },
        }
        out
    }

    fn tick_ms() -> Ms {
        TICK_MS
    }

    fn duplicates_ok(channel: Channel) -> bool {
        channel == Channel::Election
    }

    fn proposal_in(msg: &RefMsg) -> Option<Entry> {
        match msg {
            RefMsg::Propose { entry, .. } => Some(*entry),
            _ => None,
        }
    }
}
