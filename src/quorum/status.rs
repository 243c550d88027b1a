//! What the operations surface (`srvr`, `mntr`, the AdminServer, Prometheus, `zkd election
//! status`) shows of the quorum plane: a plain value built from a peer at one instant, and the
//! board the replica core publishes it on.
//!
//! The replica core owns the peer. After every round that changed something of the quorum, and
//! at every tick (so that ages and timers stay fresh), its driver builds a [`QuorumStatus`] with
//! [`QuorumStatus::of`] and puts it on the [`StatusBoard`]; the ops threads read a copy. Nothing
//! here steps or changes the peer: it reads what the peer, its election and its role expose.

use std::fmt::{self, Write};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::quorum::election::ElectionStatus;
use crate::quorum::peer::{Decision, Peer, Role};
use crate::quorum::zab::{SyncMode, ZabPhase};
use crate::quorum::{LearnerType, PeerState, Sid};

/// The phase of the quorum protocol a server is in (ZooKeeper's `QuorumPeer.ZabState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZabState {
    Election,
    Discovery,
    Synchronization,
    Broadcast,
}

impl ZabState {
    /// As ZooKeeper's `zabstate` command and `zk_peer_state` spell it.
    pub fn name(self) -> &'static str {
        match self {
            ZabState::Election => "election",
            ZabState::Discovery => "discovery",
            ZabState::Synchronization => "synchronization",
            ZabState::Broadcast => "broadcast",
        }
    }
}

impl From<ZabPhase> for ZabState {
    fn from(p: ZabPhase) -> ZabState {
        match p {
            ZabPhase::Discovery => ZabState::Discovery,
            ZabPhase::Synchronization => ZabState::Synchronization,
            ZabPhase::Broadcast => ZabState::Broadcast,
        }
    }
}

/// ZooKeeper's lower-case names of a sync mode (`zk_peer_state`'s third part).
pub fn sync_mode_name(m: SyncMode) -> &'static str {
    match m {
        SyncMode::Diff => "diff",
        SyncMode::Snap => "snap",
        SyncMode::Trunc => "trunc",
    }
}

/// ZooKeeper's words for a role that serves (`ServerStats.getServerState`, `Mode:`).
pub fn mode_name(r: Role) -> &'static str {
    match r {
        Role::Standalone => "standalone",
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Observer => "observer",
    }
}

/// One learner connected to this leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerStatus {
    pub sid: Sid,
    pub learner_type: LearnerType,
    /// Counts towards the quorum.
    pub voter: bool,
    /// What the leader waits for from it (a step of discovery or sync, or "broadcast").
    pub waiting_for: &'static str,
    /// Receives broadcast proposals and commits (observers: informs), from its sync on
    /// (ZooKeeper's forwarding followers and observing learners).
    pub forwarding: bool,
    /// Was sent UPTODATE: it serves.
    pub up_to_date: bool,
    /// Since its last packet (ACK, PING reply, request).
    pub last_heard_ago_ms: u64,
    /// Its last ACK of a proposal (0: none yet).
    pub last_ack_zxid: i64,
    pub pings_sent: u64,
    pub pings_answered: u64,
}

/// The leader's own figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStatus {
    pub learners: Vec<LearnerStatus>,
    pub pending_syncs: usize,
    /// Proposals not yet committed.
    pub outstanding_proposals: usize,
    pub last_proposed: i64,
    /// Txn sizes proposed: last, smallest, largest (ZooKeeper's `BufferStats`, -1 before the first).
    pub proposal_sizes: (i32, i32, i32),
}

/// A learner's own figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerSide {
    /// Since the leader's last packet (None: nothing heard yet).
    pub leader_heard_ago_ms: Option<u64>,
}

/// One server's quorum state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// When it was built (monotonic ms).
    pub at_ms: u64,
    pub my_id: Sid,
    /// ZooKeeper's standalone server: one voter, no election.
    pub standalone: bool,
    pub learner_type: LearnerType,
    pub state: PeerState,
    pub zab_state: ZabState,
    pub sync_mode: Option<SyncMode>,
    /// The leader this server follows or is.
    pub leader: Option<Sid>,
    /// The role clients are served in; None while looking or syncing.
    pub serving: Option<Role>,
    /// How long clients have been served in this role.
    pub serving_for_ms: Option<u64>,
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The last zxid of this server's history (committed; while looking, what it votes with).
    pub last_zxid: i64,
    pub voters: Vec<Sid>,
    pub observers: Vec<Sid>,
    /// The election as this server sees it (None standalone).
    pub election: Option<ElectionStatus>,
    pub last_election: Option<Decision>,
    /// Times LOOKING was entered (ZooKeeper's `looking_count`).
    pub lookings: u64,
    pub leader_side: Option<LeaderStatus>,
    pub learner_side: Option<LearnerSide>,
    /// Peers that announce a server list other than ours: (sid, the sentence).
    pub config_mismatches: Vec<(Sid, String)>,
}

impl QuorumStatus {
    /// Reads `peer` at `now_ms` (the monotonic clock the peer is stepped with).
    pub fn of(peer: &Peer, now_ms: u64) -> QuorumStatus {
        let cfg = peer.config();
        let ago = |t: i64| now_ms.saturating_sub(t.max(0) as u64);
        let (zab_state, sync_mode) = match (peer.leading(), peer.learning()) {
            (Some(l), _) => (l.zab_phase().into(), None),
            (_, Some(l)) => (l.zab_phase().into(), l.sync_mode()),
            _ => (ZabState::Election, None),
        };
        let members = &cfg.members;
        let leader_side = peer.leading().filter(|_| !cfg.standalone).map(|l| {
            let s = l.proposal_sizes();
            LeaderStatus {
                learners: l
                    .learner_views()
                    .map(|v| LearnerStatus {
                        sid: v.sid,
                        learner_type: v.typ,
                        voter: members.is_voter(v.sid),
                        waiting_for: v.waiting_for,
                        forwarding: v.forwarding,
                        up_to_date: v.up_to_date,
                        last_heard_ago_ms: ago(v.last_heard_ms),
                        last_ack_zxid: v.last_ack,
                        pings_sent: v.pings_sent,
                        pings_answered: v.pings_answered,
                    })
                    .collect(),
                pending_syncs: l.pending_syncs(),
                outstanding_proposals: l.outstanding(),
                last_proposed: l.last_proposed(),
                proposal_sizes: (s.last, s.min, s.max),
            }
        });
        let learner_side =
            peer.learning().map(|l| LearnerSide { leader_heard_ago_ms: l.last_heard_ms().map(ago) });
        let election = peer.election();
        QuorumStatus {
            at_ms: now_ms,
            my_id: peer.my_id(),
            standalone: cfg.standalone,
            learner_type: members.learner_type(peer.my_id()).unwrap_or(LearnerType::Participant),
            state: peer.state(),
            zab_state,
            sync_mode,
            leader: peer.leader(),
            serving: peer.serving(),
            serving_for_ms: peer.serving_since_ms().map(|t| now_ms.saturating_sub(t)),
            accepted_epoch: peer.accepted_epoch(),
            current_epoch: peer.current_epoch(),
            last_zxid: peer.last_zxid(),
            voters: members.voters.iter().copied().collect(),
            observers: members.observers.iter().copied().collect(),
            election: election.map(|e| e.status(now_ms)),
            last_election: peer.last_decision(),
            lookings: peer.lookings(),
            leader_side,
            learner_side,
            config_mismatches: election.map(|e| e.config_mismatches()).unwrap_or_default(),
        }
    }

    /// The same status seen at `now_ms`, a little after it was built: ages and durations grow by
    /// the time between, timers shrink (the driver publishes at every tick, so a reader is at
    /// most a tick behind; this keeps what it shows from going backwards).
    pub fn at(mut self, now_ms: u64) -> QuorumStatus {
        let d = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        let grow = |v: &mut u64| *v = v.saturating_add(d);
        if let Some(v) = self.serving_for_ms.as_mut() {
            grow(v);
        }
        if let Some(l) = self.leader_side.as_mut() {
            l.learners.iter_mut().for_each(|x| grow(&mut x.last_heard_ago_ms));
        }
        if let Some(v) = self.learner_side.as_mut().and_then(|l| l.leader_heard_ago_ms.as_mut()) {
            grow(v);
        }
        if let Some(e) = self.election.as_mut() {
            if let Some(v) = e.looking_for_ms.as_mut() {
                grow(v);
            }
            for v in [e.next_notification_ms.as_mut(), e.finalize_left_ms.as_mut()].into_iter().flatten() {
                *v = v.saturating_sub(d);
            }
            for p in e.peers.iter_mut() {
                if let Some(l) = p.last.as_mut() {
                    grow(&mut l.age_ms);
                }
            }
        }
        self
    }

    /// `Mode:` / `server_state`: the role clients are served in; None while not serving.
    pub fn mode(&self) -> Option<&'static str> {
        self.serving.map(mode_name)
    }

    /// ZooKeeper's `getDetailedPeerState`: `leading - broadcast`, `following - synchronization -
    /// diff`, `looking`.
    pub fn detailed_peer_state(&self) -> String {
        let mut s = self.state.name().to_owned();
        if self.zab_state != ZabState::Election {
            s.push_str(" - ");
            s.push_str(self.zab_state.name());
        }
        if let Some(m) = self.sync_mode {
            s.push_str(" - ");
            s.push_str(sync_mode_name(m));
        }
        s
    }

    /// ZooKeeper's `quorum_size`: the voting members.
    pub fn quorum_size(&self) -> usize {
        self.voters.len()
    }

    fn learners(&self) -> &[LearnerStatus] {
        self.leader_side.as_ref().map_or(&[], |l| &l.learners)
    }

    /// Voting learners receiving the broadcast (ZooKeeper's `synced_followers`).
    pub fn synced_followers(&self) -> usize {
        let f = |l: &&LearnerStatus| l.forwarding && l.learner_type == LearnerType::Participant && l.voter;
        self.learners().iter().filter(f).count()
    }

    /// Participants receiving the broadcast that are not voters (ZooKeeper's
    /// `synced_non_voting_followers`; only dynamic reconfiguration makes them, so 0 here).
    pub fn synced_non_voting_followers(&self) -> usize {
        let f = |l: &&LearnerStatus| l.forwarding && l.learner_type == LearnerType::Participant && !l.voter;
        self.learners().iter().filter(f).count()
    }

    /// Observers receiving the broadcast (ZooKeeper's `synced_observers`).
    pub fn synced_observers(&self) -> usize {
        self.learners().iter().filter(|l| l.forwarding && l.learner_type == LearnerType::Observer).count()
    }

    /// The text `zkd election status` and the `elec` word print: the leader, the last election,
    /// then the election's own table.
    pub fn election_report(&self) -> String {
        let mut s = String::new();
        if self.standalone {
            let _ = writeln!(s, "server {}: standalone (the only voter): no election", self.my_id);
            return s;
        }
        match (self.leader, self.state) {
            (Some(l), PeerState::Leading) => {
                let _ = write!(s, "leader: {l} (this server)");
            }
            (Some(l), _) => {
                let _ = write!(s, "leader: {l}");
            }
            (None, _) => s.push_str("leader: none (looking for one)"),
        }
        let _ = write!(s, "; {}", self.detailed_peer_state());
        match self.serving_for_ms {
            Some(ms) => {
                let _ = writeln!(s, ", serving for {ms} ms");
            }
            None => s.push_str(", not serving\n"),
        }
        if let Some(d) = &self.last_election {
            let _ = writeln!(
                s,
                "last election: round {}, took {} ms, decided {} ms ago ({} with leader {})",
                d.round,
                d.duration_ms,
                self.at_ms.saturating_sub(d.at_ms),
                d.state.name(),
                d.leader
            );
        }
        let _ = writeln!(
            s,
            "epochs: accepted {}, current {}; last zxid 0x{:x}",
            self.accepted_epoch, self.current_epoch, self.last_zxid
        );
        for (_, m) in &self.config_mismatches {
            let _ = writeln!(s, "config mismatch: {m}");
        }
        if let Some(e) = &self.election {
            let _ = write!(s, "{e}");
        }
        s
    }
}

/// The leader's learners, one line each, for the election report and logs.
impl fmt::Display for LearnerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let typ = match self.learner_type {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        };
        write!(
            f,
            "learner {} ({typ}): {}{}, heard {} ms ago, last ack 0x{:x}, pings {}/{}",
            self.sid,
            self.waiting_for,
            if self.forwarding { ", forwarding" } else { "" },
            self.last_heard_ago_ms,
            self.last_ack_zxid,
            self.pings_answered,
            self.pings_sent
        )
    }
}

/// What of a peer's status changes with events rather than with time: the driver publishes a
/// new status when this differs after a round (and at every tick anyway). Cheap: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    state: PeerState,
    leader: Option<Sid>,
    serving: Option<Role>,
    phase: Option<ZabPhase>,
    sync_mode: Option<SyncMode>,
    epochs: (u32, u32),
    lookings: u64,
    round: i64,
    /// Learners connected, forwarding, up to date.
    learners: (usize, usize, usize),
}

impl Fingerprint {
    pub fn of(peer: &Peer) -> Fingerprint {
        let mut learners = (0, 0, 0);
        if let Some(l) = peer.leading() {
            for v in l.learner_views() {
                learners.0 += 1;
                learners.1 += v.forwarding as usize;
                learners.2 += v.up_to_date as usize;
            }
        }
        Fingerprint {
            state: peer.state(),
            leader: peer.leader(),
            serving: peer.serving(),
            phase: peer.leading().map(|l| l.zab_phase()).or_else(|| peer.learning().map(|l| l.zab_phase())),
            sync_mode: peer.learning().and_then(|l| l.sync_mode()),
            epochs: (peer.accepted_epoch(), peer.current_epoch()),
            lookings: peer.lookings(),
            round: peer.election().map_or(0, |e| e.logical_clock()),
            learners,
        }
    }
}

/// Counts the quorum plane's driver keeps beside the status: what the status (one instant) cannot
/// hold.
#[derive(Debug, Clone)]
pub struct QuorumCounters {
    /// Every election's duration, ms (ZooKeeper's `election_time`).
    pub election_ms: Histogram<u64>,
    /// Learners this server synchronised as leader with DIFF or TRUNC (ZooKeeper's `diff_count`)
    /// and with SNAP (`snap_count`).
    pub diff_syncs: u64,
    pub snap_syncs: u64,
}

/// The longest election duration the histogram tells apart (an hour); longer ones count as this.
pub const ELECTION_MS_MAX: u64 = 3_600_000;

impl Default for QuorumCounters {
    fn default() -> QuorumCounters {
        QuorumCounters {
            election_ms: Histogram::new_with_max(ELECTION_MS_MAX, 3)
                .expect("constant histogram bounds are valid"),
            diff_syncs: 0,
            snap_syncs: 0,
        }
    }
}

/// Where the replica core's driver publishes the quorum status and counts, and the ops threads
/// read them. Each side holds the lock only to swap or copy plain data.
#[derive(Debug, Default)]
pub struct StatusBoard {
    status: Mutex<Option<QuorumStatus>>,
    counters: Mutex<QuorumCounters>,
}

impl StatusBoard {
    pub fn publish(&self, s: QuorumStatus) {
        *self.status.lock() = Some(s);
    }
    /// The last status published (None before the first).
    pub fn status(&self) -> Option<QuorumStatus> {
        self.status.lock().clone()
    }
    pub fn record_election(&self, duration_ms: u64) {
        self.counters.lock().election_ms.saturating_record(duration_ms.min(ELECTION_MS_MAX));
    }
    pub fn record_sync(&self, snap: bool) {
        let mut c = self.counters.lock();
        if snap {
            c.snap_syncs += 1;
        } else {
            c.diff_syncs += 1;
        }
    }
    pub fn counters(&self) -> QuorumCounters {
        self.counters.lock().clone()
    }
}

#[cfg(test)]
mod tests;
