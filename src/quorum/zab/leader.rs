//! The leader: discovery (epoch proposal), synchronisation of each learner, broadcast (proposals,
//! acks, commits, pings), as ZooKeeper's `Leader` and `LearnerHandler` run them, plus a
//! linearizable sync.
//!
//! ZooKeeper runs one thread per learner, blocked on waits; here each learner is a `Handler`
//! whose state says what it waits for, and the leader's phase says what the whole ensemble waits
//! for:
//!
//! | leader phase  | waits for (within initLimit ticks)                 | then                          |
//! |---------------|----------------------------------------------------|-------------------------------|
//! | Discovery     | a quorum of voters connected (FOLLOWERINFO)        | epoch = 1 + max accepted; persist acceptedEpoch; LEADERINFO to all |
//! | EpochAck      | a quorum of ACKEPOCH                               | persist currentEpoch; sync every learner; NEWLEADER |
//! | NewLeaderAck  | a quorum ACKed NEWLEADER                           | serve; UPTODATE               |
//! | Broadcast     | (each tick) a quorum heard from within syncLimit   | else step down                |
//!
//! Linearizable sync (ZooKeeper's sync is not: a deposed leader that does not know it yet
//! answers from a stale state): a sync is answered only once (a) every proposal made before it
//! arrived is committed and (b) a ping round started after it arrived was answered by a quorum
//! of voters (the leader counts itself), which proves no newer epoch had been established when
//! the sync arrived. Pings to a learner are counted only after its UPTODATE: learners ignore
//! earlier ones (ZooKeeper's `syncWithLeader` does), and replies come back in order on one
//! connection, so a learner's n-th reply answers its n-th counted ping.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::quorum::{epoch_of, make_zxid, packet_type as pt, LearnerType, Members, QuorumPacket, Sid};

use super::sync::{self, SyncOp};
use super::{counter_exhausted, Action, Ended, Flow, History, Input, PacketError, Proposal, Role, ZabConfig};
use crate::quorum::wire::{LeaderMessage, LearnerMessage, ZAB_PROTOCOL_VERSION};

/// Unconfirmed ping rounds remembered for pending syncs; past this the oldest is forgotten and
/// its syncs wait for a later round (which proves more).
const MARKS_MAX: usize = 8;

/// Pending syncs; a learner that forwards one more loses its connection (the replica bounds its
/// own clients' requests).
pub const SYNCS_MAX: usize = 100_000;

/// A learner that accepted an epoch at most this far ahead of an established leader's makes it
/// step down (see `on_learner_info`); further ahead, it stays out.
const EPOCH_AHEAD_MAX: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discovery,
    EpochAck,
    NewLeaderAck,
    Broadcast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HState {
    /// FOLLOWERINFO received; waiting for the epoch quorum.
    AwaitEpoch,
    /// LEADERINFO sent; waiting for its ACKEPOCH.
    AwaitAckEpoch,
    /// ACKEPOCH received; waiting for the quorum of ACKEPOCHs.
    AwaitElection,
    /// Synced and NEWLEADER sent; waiting for its ACK.
    AwaitNewLeaderAck,
    /// NEWLEADER ACKed; waiting for the leader to start serving.
    AwaitStart,
    /// UPTODATE sent.
    Broadcast,
}

/// ZooKeeper's `SyncLimitCheck`: the send time of the oldest unacknowledged proposal (and of the
/// newest, which becomes the oldest once that is acked). A learner that leaves a proposal
/// unacknowledged for syncLimit ticks is dropped at the next ping.
#[derive(Debug, Default, Clone, Copy)]
struct AckClock {
    started: bool,
    current: Option<(i64, i64)>,
    next: Option<(i64, i64)>,
}

impl AckClock {
    fn proposal_sent(&mut self, zxid: i64, now: i64) {
        if !self.started {
            return;
        }
        if self.current.is_none() {
            self.current = Some((zxid, now));
        } else {
            self.next = Some((zxid, now));
        }
    }
    fn acked(&mut self, zxid: i64) {
        if self.current.map(|c| c.0) == Some(zxid) {
            self.current = self.next.take();
        } else if self.next.map(|c| c.0) == Some(zxid) {
            self.next = None;
        }
    }
    fn ok(&self, now: i64, limit_ms: i64) -> bool {
        self.current.is_none_or(|(_, t)| now - t < limit_ms)
    }
}

#[derive(Debug)]
struct Handler {
    typ: LearnerType,
    state: HState,
    /// The learner's last zxid, from its ACKEPOCH.
    peer_last: i64,
    /// Read timeout (ZooKeeper's socket timeout): initLimit while it owes us ACKEPOCH or the
    /// NEWLEADER ACK, syncLimit in broadcast.
    read_deadline_ms: Option<i64>,
    /// `synced()` for the leader's quorum check.
    ack_deadline_ms: i64,
    /// Receives broadcast PROPOSAL/COMMIT (participants) or INFORM (observers).
    forwarding: bool,
    /// NEWLEADER was sent: pings go out.
    pinging: bool,
    /// Pings sent after UPTODATE, and replies received.
    pings_sent: u64,
    pings_answered: u64,
    /// Last per-proposal ACK (counter ≠ 0), to refuse ACKs going backwards.
    last_ack: i64,
    clock: AckClock,
    /// When its last packet arrived (status only).
    last_heard_ms: i64,
}

#[derive(Debug)]
struct Outstanding {
    p: Proposal,
    /// Voters (by index in `voters`) that acked, the leader's own durability aside.
    acks: u64,
}

#[derive(Debug)]
struct PendingSync {
    /// None: the local replica's (answered with `SyncDone`); Some: a learner's (answered SYNC).
    to: Option<Sid>,
    /// Every proposal up to this zxid must be committed.
    after: i64,
    /// This ping round must be confirmed (0: none needed, the leader alone is a quorum).
    round: u64,
}

#[derive(Debug)]
struct Mark {
    round: u64,
    /// For each voter learner in broadcast: its `pings_sent` right after this round's ping.
    seqs: Vec<(Sid, u64)>,
}

#[derive(Debug)]
pub struct Leader {
    cfg: ZabConfig,
    members: Members,
    /// Voters in order; a voter's bit in an ack set is its index here.
    voters: Vec<Sid>,
    history: History,
    standalone: bool,
    phase: Phase,
    phase_deadline_ms: i64,
    /// currentEpoch and last zxid when leading began (ZooKeeper's `leaderStateSummary`).
    summary: (u32, i64),
    /// The epoch being established (fixed once discovery ends).
    epoch: u32,
    accepted_epoch: u32,
    current_epoch: u32,
    connecting: BTreeSet<Sid>,
    electing: BTreeSet<Sid>,
    newleader_acks: BTreeSet<Sid>,
    learners: BTreeMap<Sid, Handler>,
    serving: bool,
    last_proposed: i64,
    last_committed: i64,
    /// The local log is durable up to here (the leader's own ack).
    own_durable: i64,
    /// The history this leader started with is not durable yet (an earlier role appended it):
    /// its epoch is recorded, and it counts itself for NEWLEADER, only once it is.
    history_durable_at: Option<i64>,
    outstanding: VecDeque<Outstanding>,
    syncs: VecDeque<PendingSync>,
    round: u64,
    confirmed_round: u64,
    marks: VecDeque<Mark>,
    next_ping_ms: i64,
    next_check_ms: i64,
    /// Sizes of the txns proposed (status only).
    proposal_sizes: ProposalSizes,
}

/// ZooKeeper's `BufferStats` of the leader's proposals: the last, smallest and largest txn size
/// in bytes, -1 before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalSizes {
    pub last: i32,
    pub min: i32,
    pub max: i32,
}

impl Default for ProposalSizes {
    fn default() -> ProposalSizes {
        ProposalSizes { last: -1, min: -1, max: -1 }
    }
}

impl ProposalSizes {
    fn record(&mut self, len: usize) {
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        self.last = len;
        if self.min == -1 || len < self.min {
            self.min = len;
        }
        self.max = self.max.max(len);
    }
}

/// One learner as the leader sees it, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerView {
    pub sid: Sid,
    pub typ: LearnerType,
    /// What the leader waits for from it.
    pub waiting_for: &'static str,
    /// It receives broadcast proposals and commits (or informs): ZooKeeper's forwarding
    /// followers and observing learners, counted from the sync on.
    pub forwarding: bool,
    /// UPTODATE was sent: it serves.
    pub up_to_date: bool,
    pub last_heard_ms: i64,
    /// Its last ACK of a proposal (0: none yet).
    pub last_ack: i64,
    pub pings_sent: u64,
    pub pings_answered: u64,
}

impl Leader {
    /// Starts leading an ensemble: discovery begins with this server's own accepted epoch.
    pub fn start(
        cfg: ZabConfig,
        members: Members,
        history: History,
        accepted_epoch: u32,
        current_epoch: u32,
        now: i64,
        out: &mut Vec<Action>,
    ) -> (Leader, Flow) {
        assert!(members.is_voter(cfg.my_id), "only a voter leads");
        assert!(
            members.voters.len() <= super::VOTERS_MAX,
            "ack sets hold at most {} voters",
            super::VOTERS_MAX
        );
        let last = history.last_zxid();
        let mut l = Leader::new(cfg, members, history, false, now);
        l.summary = (current_epoch, last);
        l.accepted_epoch = accepted_epoch;
        l.current_epoch = current_epoch;
        l.connecting.insert(l.cfg.my_id);
        l.phase_deadline_ms = now + l.cfg.init_ms();
        out.push(Action::State { state: crate::quorum::PeerState::Leading, leader: Some(l.cfg.my_id) });
        let Some(epoch) = accepted_epoch.checked_add(1) else {
            return (l, Flow::Abandon(format!("no epoch after the accepted epoch {accepted_epoch}")));
        };
        l.epoch = epoch;
        let flow = l.advance(now, out);
        (l, flow)
    }

    /// A standalone server: the only voter, serving at once, without a new epoch (zxids go on
    /// from the last one, as ZooKeeper's standalone server numbers them).
    pub fn standalone(cfg: ZabConfig, history: History, now: i64, out: &mut Vec<Action>) -> Leader {
        let members = Members::new([cfg.my_id], []);
        let last = history.last_zxid();
        let mut l = Leader::new(cfg, members, history, true, now);
        l.epoch = epoch_of(last);
        l.phase = Phase::Broadcast;
        l.serving = true;
        l.last_proposed = last;
        l.last_committed = last;
        l.own_durable = last;
        out.push(Action::State { state: crate::quorum::PeerState::Leading, leader: Some(l.cfg.my_id) });
        out.push(Action::Serving { role: Role::Standalone, epoch: l.epoch, next_zxid: Some(last + 1) });
        l
    }

    fn new(cfg: ZabConfig, members: Members, history: History, standalone: bool, now: i64) -> Leader {
        let voters = members.voters.iter().copied().collect();
        // Durable reports of what an earlier role logged may still arrive.
        let last = history.last_zxid();
        let history_durable_at = (history.durable_zxid() < last).then_some(last);
        Leader {
            voters,
            members,
            history,
            standalone,
            phase: Phase::Discovery,
            phase_deadline_ms: now,
            summary: (0, 0),
            epoch: 0,
            accepted_epoch: 0,
            current_epoch: 0,
            connecting: BTreeSet::new(),
            electing: BTreeSet::new(),
            newleader_acks: BTreeSet::new(),
            learners: BTreeMap::new(),
            serving: false,
            last_proposed: last,
            last_committed: last,
            own_durable: last,
            history_durable_at,
            outstanding: VecDeque::new(),
            syncs: VecDeque::new(),
            round: 0,
            confirmed_round: 0,
            marks: VecDeque::new(),
            next_ping_ms: now + cfg.tick_ms / 2,
            // ZooKeeper skips the quorum check on the first tick after it starts.
            next_check_ms: now + cfg.tick_ms,
            proposal_sizes: ProposalSizes::default(),
            cfg,
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }
    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }
    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }
    pub fn is_serving(&self) -> bool {
        self.serving
    }

    // ---- status (read only) ----

    pub fn zab_phase(&self) -> super::ZabPhase {
        match self.phase {
            Phase::Discovery | Phase::EpochAck => super::ZabPhase::Discovery,
            Phase::NewLeaderAck => super::ZabPhase::Synchronization,
            Phase::Broadcast => super::ZabPhase::Broadcast,
        }
    }
    /// The last committed zxid (the epoch's marker before the first commit).
    pub fn last_zxid(&self) -> i64 {
        self.history.last_zxid()
    }
    pub fn last_proposed(&self) -> i64 {
        self.last_proposed
    }
    /// Proposals not yet committed.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
    /// Syncs not yet answered (the local replica's and learners').
    pub fn pending_syncs(&self) -> usize {
        self.syncs.len()
    }
    pub fn proposal_sizes(&self) -> ProposalSizes {
        self.proposal_sizes
    }
    /// Every connected learner, by sid.
    pub fn learner_views(&self) -> impl Iterator<Item = LearnerView> + '_ {
        self.learners.iter().map(|(sid, h)| LearnerView {
            sid: *sid,
            typ: h.typ,
            waiting_for: state_name(h.state),
            forwarding: h.forwarding,
            up_to_date: h.state == HState::Broadcast,
            last_heard_ms: h.last_heard_ms,
            last_ack: h.last_ack,
            pings_sent: h.pings_sent,
            pings_answered: h.pings_answered,
        })
    }

    /// The role ends: every learner is disconnected, the proposals it logged but did not commit
    /// join its history (ZooKeeper's leader fast-forwards its database from its log).
    pub fn finish(mut self, reason: &str, out: &mut Vec<Action>) -> Ended {
        for sid in std::mem::take(&mut self.learners).into_keys() {
            out.push(Action::Disconnect { sid, reason: reason.to_owned() });
        }
        let mut fast_forward = None;
        for o in self.outstanding.drain(..) {
            fast_forward = Some(o.p.zxid);
            self.history.push(o.p);
        }
        Ended {
            history: self.history,
            fast_forward,
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
        }
    }

    /// The epoch is established and this leader's history is durable: record the epoch, and
    /// count ourselves for NEWLEADER (ZOOKEEPER-4646's rule, on the leader's side).
    fn own_epoch_durable(&mut self, out: &mut Vec<Action>) {
        self.current_epoch = self.epoch;
        out.push(Action::PersistCurrentEpoch(self.epoch));
        self.newleader_acks.insert(self.cfg.my_id);
    }

    pub fn next_wake_ms(&self) -> i64 {
        if self.standalone {
            // No learners, no pings, no quorum to check: nothing is ever due.
            return i64::MAX;
        }
        let mut t = self.next_ping_ms.min(self.next_check_ms);
        if self.phase != Phase::Broadcast {
            t = t.min(self.phase_deadline_ms);
        }
        for h in self.learners.values() {
            if let Some(d) = h.read_deadline_ms {
                t = t.min(d);
            }
        }
        t
    }

    pub fn step(&mut self, input: Input, now: i64, out: &mut Vec<Action>) -> Flow {
        match input {
            Input::Tick => self.tick(now, out),
            Input::Packet { from, packet } => {
                match self.on_packet(from, packet, now, out) {
                    Ok(flow) => return flow,
                    Err(e) => self.drop_learner(from, e.to_string(), out),
                }
                Flow::Continue
            }
            Input::Disconnected { sid } => {
                self.forget_learner(sid);
                Flow::Continue
            }
            Input::Propose(p) => self.propose(p, now, out),
            Input::Durable { zxid } => {
                assert!(
                    zxid <= self.last_proposed,
                    "durable 0x{zxid:x} beyond last proposed 0x{:x}",
                    self.last_proposed
                );
                self.own_durable = self.own_durable.max(zxid);
                self.history.note_durable(zxid);
                if self.history_durable_at.is_some_and(|at| zxid >= at) {
                    self.history_durable_at = None;
                    if matches!(self.phase, Phase::NewLeaderAck | Phase::Broadcast) {
                        self.own_epoch_durable(out);
                        return self.advance(now, out);
                    }
                }
                self.try_commit(now, out);
                Flow::Continue
            }
            Input::Sync { .. } => {
                assert!(self.serving, "a sync reached a leader that does not serve");
                self.add_sync(None, now, out);
                Flow::Continue
            }
            Input::RevalidateAnswer { to, session, valid } => {
                if self.learners.contains_key(&to) {
                    out.push(to_learner(to, LeaderMessage::Revalidate { session_id: session, valid }));
                }
                Flow::Continue
            }
            // Session touches on the leader are the replica's own business.
            Input::Touch { .. } => Flow::Continue,
            Input::Forward { .. } | Input::Revalidate { .. } => {
                panic!("the replica forwarded a request to itself: the leader preps its own clients' writes")
            }
            Input::Connected { sid } => {
                out.push(Action::Disconnect { sid, reason: "leading: no leader connection wanted".into() });
                Flow::Continue
            }
            Input::SnapshotLoaded { .. } | Input::Notification { .. } | Input::ElectionPeer { .. } => {
                Flow::Continue
            }
        }
    }

    fn drop_learner(&mut self, sid: Sid, reason: String, out: &mut Vec<Action>) {
        self.forget_learner(sid);
        out.push(Action::Disconnect { sid, reason });
    }

    /// A learner's connection is gone: so are the ping answers the syncs' rounds expected of it
    /// (a new connection from the same sid counts its pings from zero).
    fn forget_learner(&mut self, sid: Sid) {
        self.learners.remove(&sid);
        for m in self.marks.iter_mut() {
            m.seqs.retain(|(s, _)| *s != sid);
        }
        // Its acks of proposals still outstanding go too: a learner that reconnects is synced
        // back to the last committed zxid (TRUNC drops what it logged beyond), so an ack from
        // the old connection no longer says the txn is on its disk. Every outstanding proposal
        // is sent to it again after its sync, and it acks each anew once durable. (Simulator
        // seed 319350: an old ack committed a txn the learner had truncated, then lost it.)
        if let Some(bit) = self.voter_bit(sid) {
            for o in self.outstanding.iter_mut() {
                o.acks &= !bit;
            }
        }
    }

    fn tick(&mut self, now: i64, out: &mut Vec<Action>) -> Flow {
        if self.phase != Phase::Broadcast && now >= self.phase_deadline_ms {
            return Flow::Abandon(match self.phase {
                Phase::Discovery => "Timeout while waiting for epoch from quorum".to_owned(),
                Phase::EpochAck => "Timeout while waiting for epoch to be acked by quorum".to_owned(),
                _ => format!(
                    "Waiting for a quorum of followers, only synced with sids: [ {} ]",
                    join(&self.newleader_acks)
                ),
            });
        }
        let expired: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, h)| h.read_deadline_ms.is_some_and(|d| now >= d))
            .map(|(s, _)| *s)
            .collect();
        for sid in expired {
            self.drop_learner(sid, "read timed out".into(), out);
        }
        if self.phase == Phase::Broadcast && !self.standalone && now >= self.next_check_ms {
            self.next_check_ms = now + self.cfg.tick_ms;
            let mut synced: BTreeSet<Sid> = BTreeSet::from([self.cfg.my_id]);
            synced.extend(self.learners.iter().filter(|(_, h)| now <= h.ack_deadline_ms).map(|(s, _)| *s));
            if !self.members.is_quorum(&synced) {
                let voters: BTreeSet<Sid> =
                    synced.into_iter().filter(|s| self.members.is_voter(*s)).collect();
                return Flow::Abandon(format!(
                    "Not sufficient followers synced, only synced with sids: [ {} ]",
                    join(&voters)
                ));
            }
        }
        // ZooKeeper's leader pings only once it serves (its lead() loop).
        if self.phase == Phase::Broadcast && now >= self.next_ping_ms {
            self.next_ping_ms = now + self.cfg.tick_ms / 2;
            self.ping_round(now, out);
        }
        Flow::Continue
    }

    /// Pings every learner past NEWLEADER; this is also a round for pending syncs.
    fn ping_round(&mut self, now: i64, out: &mut Vec<Action>) {
        if self.standalone {
            return;
        }
        self.round += 1;
        let limit = self.cfg.sync_ms();
        let late: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, h)| h.pinging && !h.clock.ok(now, limit))
            .map(|(s, _)| *s)
            .collect();
        for sid in late {
            self.drop_learner(sid, "Closing connection to peer due to transaction timeout.".into(), out);
        }
        let last_proposed = self.last_proposed;
        for (sid, h) in self.learners.iter_mut().filter(|(_, h)| h.pinging) {
            out.push(to_learner(*sid, LeaderMessage::Ping { zxid: last_proposed }));
            if h.state == HState::Broadcast {
                h.pings_sent += 1;
            }
        }
        // Every round while a sync waits is a chance to confirm it: any round started after the
        // sync arrived will do, so a round that can no longer complete (its learners reconnected)
        // does not hold the sync forever.
        if self.syncs.iter().any(|s| s.round <= self.round && s.round > self.confirmed_round) {
            let seqs = self
                .learners
                .iter()
                .filter(|(s, h)| h.state == HState::Broadcast && self.members.is_voter(**s))
                .map(|(s, h)| (*s, h.pings_sent))
                .collect();
            self.marks.push_back(Mark { round: self.round, seqs });
            if self.marks.len() > MARKS_MAX {
                self.marks.pop_front();
            }
            self.check_marks(now, out);
        }
    }

    fn check_marks(&mut self, now: i64, out: &mut Vec<Action>) {
        let hit = self.marks.iter().rposition(|m| {
            let answered = m
                .seqs
                .iter()
                .filter(|(s, seq)| self.learners.get(s).is_some_and(|h| h.pings_answered >= *seq));
            self.members.is_quorum(answered.map(|(s, _)| s).chain(std::iter::once(&self.cfg.my_id)))
        });
        if let Some(i) = hit {
            self.confirmed_round = self.confirmed_round.max(self.marks[i].round);
            self.marks.drain(..=i);
            self.release_syncs(now, out);
            // Proposals held behind the syncs just released may commit now.
            self.try_commit(now, out);
        }
    }

    fn add_sync(&mut self, to: Option<Sid>, now: i64, out: &mut Vec<Action>) {
        let alone = self.members.is_quorum(&[self.cfg.my_id]);
        let round = if alone { 0 } else { self.round + 1 };
        self.syncs.push_back(PendingSync { to, after: self.last_proposed, round });
        if round > 0 && self.marks.is_empty() {
            // No round in flight for syncs: start one now rather than at the next half tick.
            self.ping_round(now, out);
        } else {
            self.release_syncs(now, out);
        }
    }

    fn release_syncs(&mut self, now: i64, out: &mut Vec<Action>) {
        while let Some(s) = self.syncs.front() {
            if s.after > self.last_committed || s.round > self.confirmed_round {
                break;
            }
            match s.to {
                None => out.push(Action::SyncDone),
                Some(sid) => {
                    if self.learners.contains_key(&sid) {
                        out.push(to_learner(sid, LeaderMessage::Sync));
                    }
                }
            }
            self.syncs.pop_front();
        }
        // Syncs that arrived after the last round started need a new one.
        if self.marks.is_empty() && self.syncs.back().is_some_and(|s| s.round > self.round) {
            self.ping_round(now, out);
        }
    }

    fn propose(&mut self, p: Proposal, now: i64, out: &mut Vec<Action>) -> Flow {
        assert!(self.serving, "a proposal reached a leader that does not serve");
        if !self.standalone {
            if counter_exhausted(p.zxid) {
                return Flow::Abandon(
                    "zxid lower 32 bits have rolled over, forcing re-election, and therefore new epoch start"
                        .into(),
                );
            }
            assert_eq!(
                p.zxid,
                self.last_proposed + 1,
                "proposals are numbered in order within the epoch: 0x{:x} after 0x{:x}",
                p.zxid,
                self.last_proposed
            );
        } else {
            assert!(
                p.zxid > self.last_proposed,
                "zxids grow: 0x{:x} after 0x{:x}",
                p.zxid,
                self.last_proposed
            );
        }
        self.last_proposed = p.zxid;
        self.proposal_sizes.record(p.data.len());
        for (sid, h) in self.learners.iter_mut() {
            if h.forwarding && h.typ == LearnerType::Participant {
                out.push(Action::Send { to: *sid, packet: proposal_packet(&p) });
                h.clock.proposal_sent(p.zxid, now);
            }
        }
        out.push(Action::Append(p.clone()));
        self.outstanding.push_back(Outstanding { p, acks: 0 });
        Flow::Continue
    }

    fn voter_bit(&self, sid: Sid) -> Option<u64> {
        self.voters.binary_search(&sid).ok().map(|i| 1u64 << i)
    }

    fn has_quorum(&self, o: &Outstanding) -> bool {
        let own = (o.p.zxid <= self.own_durable) as u32;
        ((o.acks.count_ones() + own) as usize) * 2 > self.voters.len()
    }

    /// Commits, in order, every outstanding proposal a quorum acked.
    fn try_commit(&mut self, now: i64, out: &mut Vec<Action>) {
        let mut emitted = self.last_committed;
        while let Some(o) = self.outstanding.front() {
            if !self.has_quorum(o) {
                break;
            }
            // A sync answers at its place in the commit order: nothing proposed after it commits
            // before it is released (its ping round confirmed), so the sync, and the reads of its
            // session queued behind it, never see the writes that came after it.
            if self.syncs.front().is_some_and(|s| s.after < o.p.zxid && s.round > self.confirmed_round) {
                break;
            }
            let Some(o) = self.outstanding.pop_front() else { break };
            let zxid = o.p.zxid;
            for (sid, h) in &self.learners {
                if !h.forwarding {
                    continue;
                }
                let pk = match h.typ {
                    LearnerType::Participant => LeaderMessage::Commit { zxid }.to_packet(),
                    LearnerType::Observer => {
                        // wire::LeaderMessage::Inform's layout: the data is the txn.
                        QuorumPacket { typ: pt::INFORM, zxid, data: Some(o.p.data.to_vec()), authinfo: None }
                    }
                };
                out.push(Action::Send { to: *sid, packet: pk });
            }
            self.last_committed = zxid;
            self.history.push(o.p);
            if self.syncs.front().is_some_and(|s| s.after <= zxid && s.round <= self.confirmed_round) {
                // The commits so far, then the sync, then what follows it.
                out.push(Action::Commit { zxid });
                emitted = zxid;
                self.release_syncs(now, out);
            }
        }
        if self.last_committed != emitted {
            out.push(Action::Commit { zxid: self.last_committed });
            self.release_syncs(now, out);
        }
    }

    fn on_packet(
        &mut self,
        from: Sid,
        pk: QuorumPacket,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<Flow, PacketError> {
        let typ = pk.typ;
        let m = LearnerMessage::from_packet(pk)?;
        let m = match m {
            LearnerMessage::FollowerInfo { zxid, info } => {
                return self.on_learner_info(from, LearnerType::Participant, zxid, info, now, out)
            }
            LearnerMessage::ObserverInfo { zxid, info } => {
                return self.on_learner_info(from, LearnerType::Observer, zxid, info, now, out)
            }
            m => m,
        };
        let Some(h) = self.learners.get_mut(&from) else {
            return Err(PacketError::unexpected(typ, "a connection that sent no FOLLOWERINFO"));
        };
        h.last_heard_ms = now;
        match (h.state, m) {
            (HState::AwaitAckEpoch, LearnerMessage::AckEpoch { last_zxid, current_epoch }) => {
                h.read_deadline_ms = None;
                self.on_ack_epoch(from, current_epoch, last_zxid, now, out)
            }
            // ZooKeeper 3.8.0 learners log the proposals that came with the sync when NEWLEADER
            // arrives (on their sync thread) and ACK each once durable, racing their NEWLEADER
            // ACK: a proposal's ACK may come first. ZooKeeper's leader, once established, takes
            // whatever ACK comes first as the NEWLEADER ACK and reads the real one later (and
            // ignores it: counter 0). Here such an ACK counts for its proposal, as in AwaitStart,
            // and the NEWLEADER ACK is still awaited.
            (HState::AwaitNewLeaderAck, m @ LearnerMessage::Ack { zxid })
                if epoch_of(zxid) == self.epoch && crate::quorum::counter_of(zxid) != 0 =>
            {
                self.on_broadcast_packet(from, typ, m, now, out).map(|()| Flow::Continue)
            }
            (HState::AwaitNewLeaderAck, LearnerMessage::Ack { zxid }) => {
                let want = make_zxid(self.epoch, 0);
                if zxid != want {
                    return Err(PacketError::Refused(format!(
                        "NEWLEADER ACK from sid {from} is from a different epoch - current 0x{want:x} received 0x{zxid:x}"
                    )));
                }
                h.read_deadline_ms = None;
                h.state = HState::AwaitStart;
                h.clock.started = true;
                if self.members.is_voter(from) {
                    self.newleader_acks.insert(from);
                }
                if self.serving {
                    self.uptodate(from, now, out);
                    Ok(Flow::Continue)
                } else {
                    Ok(self.advance(now, out))
                }
            }
            // ZooKeeper 3.8.0/3.8.1 learners log what NEWLEADER brought asynchronously and ACK
            // it as it becomes durable, possibly before UPTODATE; ZooKeeper's leader reads those
            // ACKs once it serves. They are of txns the leader already has: checked, then
            // nothing to count.
            (HState::AwaitStart, m @ LearnerMessage::Ack { .. }) => {
                self.on_broadcast_packet(from, typ, m, now, out).map(|()| Flow::Continue)
            }
            (HState::Broadcast, m) => {
                h.ack_deadline_ms = now + self.cfg.sync_ms();
                h.read_deadline_ms = Some(now + self.cfg.sync_ms());
                self.on_broadcast_packet(from, typ, m, now, out).map(|()| Flow::Continue)
            }
            (state, _) => Err(PacketError::unexpected(typ, state_name(state))),
        }
    }

    fn on_learner_info(
        &mut self,
        from: Sid,
        typ: LearnerType,
        zxid: i64,
        info: crate::quorum::wire::LearnerInfo,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<Flow, PacketError> {
        if from == self.cfg.my_id || self.members.learner_type(from) != Some(typ) {
            return Err(PacketError::NotMember { sid: from });
        }
        if info.sid != from {
            return Err(PacketError::Refused(format!(
                "LearnerInfo names sid {} on sid {from}'s connection",
                info.sid
            )));
        }
        if info.protocol_version < ZAB_PROTOCOL_VERSION {
            return Err(PacketError::Refused(format!(
                "learner protocol 0x{:x} predates ZAB 1.0",
                info.protocol_version
            )));
        }
        // A new connection from a sid replaces its old one.
        self.forget_learner(from);
        let accepted = epoch_of(zxid);
        self.learners.insert(
            from,
            Handler {
                typ,
                state: HState::AwaitEpoch,
                peer_last: 0,
                read_deadline_ms: None,
                ack_deadline_ms: now + self.cfg.init_ms() + self.cfg.sync_ms(),
                forwarding: false,
                pinging: false,
                pings_sent: 0,
                pings_answered: 0,
                last_ack: 0,
                clock: AckClock::default(),
                last_heard_ms: now,
            },
        );
        if self.phase == Phase::Discovery {
            // ZooKeeper's getEpochToPropose: every learner that connects while the leader waits
            // (observers too) raises the epoch; voters count towards the quorum.
            if accepted >= self.epoch {
                self.epoch = accepted
                    .checked_add(1)
                    .ok_or_else(|| PacketError::Refused("epoch space exhausted".into()))?;
            }
            if typ == LearnerType::Participant {
                self.connecting.insert(from);
            }
            return Ok(self.advance(now, out));
        }
        if accepted > self.epoch && accepted - self.epoch <= EPOCH_AHEAD_MAX {
            // It promised an epoch newer than ours to a leadership attempt that never
            // established it, so it refuses our LEADERINFO, and would loop through elections
            // that find us again (ZooKeeper's nodes wait for the next leader change). Step
            // down: the next discovery proposes an epoch past its promise. Bounded, so a
            // corrupt epoch file cannot make every leader step down. (Simulator seed 321602.)
            return Ok(Flow::Abandon(format!(
                "server {from} has accepted epoch {accepted}, newer than this leader's epoch {}: \
                 a new election moves the ensemble past it",
                self.epoch
            )));
        }
        self.leader_info(from, now, out);
        Ok(Flow::Continue)
    }

    fn leader_info(&mut self, sid: Sid, now: i64, out: &mut Vec<Action>) {
        let Some(h) = self.learners.get_mut(&sid) else { return };
        h.state = HState::AwaitAckEpoch;
        h.read_deadline_ms = Some(now + self.cfg.init_ms());
        let m = LeaderMessage::LeaderInfo {
            zxid: make_zxid(self.epoch, 0),
            protocol_version: ZAB_PROTOCOL_VERSION,
        };
        out.push(to_learner(sid, m));
    }

    fn on_ack_epoch(
        &mut self,
        from: Sid,
        cur: i32,
        last_zxid: i64,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<Flow, PacketError> {
        // ZooKeeper's waitForEpochAck: once the epoch quorum is in, a late learner is synced
        // without further checks.
        if self.phase == Phase::EpochAck && cur != -1 {
            let (le, lz) = self.summary;
            let ahead = i64::from(cur) > i64::from(le) || (i64::from(cur) == i64::from(le) && last_zxid > lz);
            if ahead {
                return Err(PacketError::Refused(format!(
                    "Follower is ahead of the leader, leader summary: {le} (current epoch), 0x{lz:x} (last zxid)"
                )));
            }
            if last_zxid != -1 && self.members.is_voter(from) {
                self.electing.insert(from);
            }
        }
        let Some(h) = self.learners.get_mut(&from) else { return Ok(Flow::Continue) };
        h.peer_last = last_zxid;
        if self.phase == Phase::EpochAck {
            h.state = HState::AwaitElection;
            return Ok(self.advance(now, out));
        }
        self.sync_learner(from, now, out);
        Ok(Flow::Continue)
    }

    /// Moves the ensemble through discovery and synchronisation as far as the quorums allow.
    fn advance(&mut self, now: i64, out: &mut Vec<Action>) -> Flow {
        loop {
            match self.phase {
                Phase::Discovery => {
                    if !self.members.is_quorum(&self.connecting) {
                        return Flow::Continue;
                    }
                    self.phase = Phase::EpochAck;
                    self.phase_deadline_ms = now + self.cfg.init_ms();
                    self.accepted_epoch = self.epoch;
                    out.push(Action::PersistAcceptedEpoch(self.epoch));
                    // The leader acks its own epoch with its own summary.
                    self.electing.insert(self.cfg.my_id);
                    let waiting: Vec<Sid> = self
                        .learners
                        .iter()
                        .filter(|(_, h)| h.state == HState::AwaitEpoch)
                        .map(|(s, _)| *s)
                        .collect();
                    for sid in waiting {
                        self.leader_info(sid, now, out);
                    }
                }
                Phase::EpochAck => {
                    if !self.members.is_quorum(&self.electing) {
                        return Flow::Continue;
                    }
                    self.phase = Phase::NewLeaderAck;
                    self.phase_deadline_ms = now + self.cfg.init_ms();
                    if self.history_durable_at.is_none() {
                        self.own_epoch_durable(out);
                    }
                    let waiting: Vec<Sid> = self
                        .learners
                        .iter()
                        .filter(|(_, h)| h.state == HState::AwaitElection)
                        .map(|(s, _)| *s)
                        .collect();
                    for sid in waiting {
                        self.sync_learner(sid, now, out);
                    }
                }
                Phase::NewLeaderAck => {
                    if !self.members.is_quorum(&self.newleader_acks) {
                        return Flow::Continue;
                    }
                    self.phase = Phase::Broadcast;
                    self.serving = true;
                    // The leader's state is now at its epoch's marker (ZooKeeper's startZkServer).
                    let marker = make_zxid(self.epoch, 0);
                    self.history.mark(marker);
                    // Proposals follow the marker, or the configured start (tests of the
                    // counter's end): nothing lies between the two.
                    let start = make_zxid(self.epoch, self.cfg.epoch_counter_start);
                    self.last_proposed = start;
                    self.last_committed = start;
                    self.own_durable = start;
                    self.next_check_ms = now + self.cfg.tick_ms;
                    self.next_ping_ms = now + self.cfg.tick_ms / 2;
                    out.push(Action::Serving {
                        role: Role::Leader,
                        epoch: self.epoch,
                        next_zxid: Some(start + 1),
                    });
                    let waiting: Vec<Sid> = self
                        .learners
                        .iter()
                        .filter(|(_, h)| h.state == HState::AwaitStart)
                        .map(|(s, _)| *s)
                        .collect();
                    for sid in waiting {
                        self.uptodate(sid, now, out);
                    }
                    return Flow::Continue;
                }
                Phase::Broadcast => return Flow::Continue,
            }
        }
    }

    /// Sends a learner what it lacks (ZooKeeper's syncFollower and startForwarding), then
    /// NEWLEADER.
    fn sync_learner(&mut self, sid: Sid, now: i64, out: &mut Vec<Action>) {
        let Some(h) = self.learners.get_mut(&sid) else { return };
        let plan = sync::decide(h.peer_last, self.history.last_zxid(), self.history.window());
        match plan.op {
            SyncOp::Diff(z) => out.push(to_learner(sid, LeaderMessage::Diff { zxid: z })),
            SyncOp::Trunc(z) => out.push(to_learner(sid, LeaderMessage::Trunc { zxid: z })),
            SyncOp::Snap(z) => {
                out.push(to_learner(sid, LeaderMessage::Snap { zxid: z }));
                out.push(Action::SendSnapshot { to: sid, zxid: z });
            }
        }
        for p in self.history.window().range(plan.send_from..) {
            out.push(Action::Send { to: sid, packet: proposal_packet(p) });
            out.push(to_learner(sid, LeaderMessage::Commit { zxid: p.zxid }));
        }
        if h.typ == LearnerType::Participant {
            for o in self.outstanding.iter().filter(|o| o.p.zxid > plan.forward_from) {
                out.push(Action::Send { to: sid, packet: proposal_packet(&o.p) });
            }
        }
        h.forwarding = true;
        h.pinging = true;
        h.state = HState::AwaitNewLeaderAck;
        h.read_deadline_ms = Some(now + self.cfg.init_ms());
        // Without the config text: a Java learner then keeps its own (zkd does no dynamic
        // reconfiguration, and a text that differs from the learner's would make it leave).
        out.push(to_learner(sid, LeaderMessage::NewLeader { zxid: make_zxid(self.epoch, 0), config: None }));
    }

    fn uptodate(&mut self, sid: Sid, now: i64, out: &mut Vec<Action>) {
        let Some(h) = self.learners.get_mut(&sid) else { return };
        h.state = HState::Broadcast;
        h.read_deadline_ms = Some(now + self.cfg.sync_ms());
        out.push(to_learner(sid, LeaderMessage::UpToDate));
    }

    fn on_broadcast_packet(
        &mut self,
        from: Sid,
        typ: i32,
        m: LearnerMessage,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<(), PacketError> {
        let Some(h) = self.learners.get_mut(&from) else { return Ok(()) };
        match m {
            LearnerMessage::Ack { zxid: z } => {
                if crate::quorum::counter_of(z) == 0 {
                    // The ACK of UPTODATE (or of NEWLEADER from an old learner): nothing to count.
                    return Ok(());
                }
                if z <= h.last_ack {
                    return Err(PacketError::Backwards { zxid: z, after: h.last_ack });
                }
                if z > self.last_proposed {
                    return Err(PacketError::UnknownAck { zxid: z, last: self.last_proposed });
                }
                h.last_ack = z;
                h.clock.acked(z);
                if h.typ == LearnerType::Observer || z <= self.last_committed {
                    return Ok(());
                }
                let Some(bit) = self.voter_bit(from) else { return Ok(()) };
                let Ok(i) = self.outstanding.binary_search_by_key(&z, |o| o.p.zxid) else {
                    return Err(PacketError::UnknownAck { zxid: z, last: self.last_proposed });
                };
                self.outstanding[i].acks |= bit;
                self.try_commit(now, out);
                Ok(())
            }
            LearnerMessage::Ping { zxid: _, touches } => {
                h.pings_answered += 1;
                if h.pings_answered > h.pings_sent {
                    return Err(PacketError::Refused("more PING replies than pings".into()));
                }
                if !touches.is_empty() {
                    let sessions = touches.into_iter().map(|t| (t.session_id, t.timeout_ms)).collect();
                    out.push(Action::Touch { sessions });
                }
                if !self.marks.is_empty() {
                    self.check_marks(now, out);
                }
                Ok(())
            }
            LearnerMessage::Revalidate { session_id, timeout_ms } => {
                out.push(Action::Revalidate { from, session: session_id, timeout: timeout_ms });
                Ok(())
            }
            LearnerMessage::Request { session_id, cxid, op, body, authinfo } => {
                if op == super::OP_SYNC {
                    if self.syncs.len() >= SYNCS_MAX {
                        return Err(PacketError::Refused(format!("more than {SYNCS_MAX} syncs pending")));
                    }
                    self.add_sync(Some(from), now, out);
                } else {
                    out.push(Action::Request {
                        from,
                        session: session_id,
                        cxid,
                        typ: op,
                        data: body,
                        authinfo: authinfo.unwrap_or_default(),
                    });
                }
                Ok(())
            }
            _ => Err(PacketError::unexpected(typ, "broadcast")),
        }
    }
}

/// A message to a learner.
fn to_learner(to: Sid, m: LeaderMessage) -> Action {
    Action::Send { to, packet: m.to_packet() }
}

/// wire::LeaderMessage::Proposal's layout (the data is the txn), without copying the txn twice.
fn proposal_packet(p: &Proposal) -> QuorumPacket {
    QuorumPacket { typ: pt::PROPOSAL, zxid: p.zxid, data: Some(p.data.to_vec()), authinfo: None }
}

fn join(s: &BTreeSet<Sid>) -> String {
    s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

fn state_name(s: HState) -> &'static str {
    match s {
        HState::AwaitEpoch => "discovery (waiting for the epoch)",
        HState::AwaitAckEpoch => "discovery (waiting for ACKEPOCH)",
        HState::AwaitElection => "discovery (waiting for the epoch quorum)",
        HState::AwaitNewLeaderAck => "synchronisation (waiting for the NEWLEADER ACK)",
        HState::AwaitStart => "synchronisation (waiting for the quorum)",
        HState::Broadcast => "broadcast",
    }
}
