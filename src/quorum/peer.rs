//! A quorum peer: FastLeaderElection composed with ZAB's roles, as ZooKeeper's `QuorumPeer.run`
//! composes them. LOOKING runs an election round; its decision starts a role (LEADING,
//! FOLLOWING, OBSERVING); when a role ends for any reason (a timeout, a lost quorum, a broken
//! connection, a protocol error) the peer fails its clients, fast-forwards what it logged, and
//! goes back to LOOKING with a new round. A standalone server (the only voter) leads at once,
//! with no election and no new epoch.
//!
//! [`Peer::step`] is the one entry point, for the real driver and the seeded simulator alike:
//! an [`Input`] and the time in, the [`Action`]s to perform, in order, out. Both enums are
//! documented variant by variant in `quorum::zab`. Time is a monotonic clock in milliseconds.
//!
//! What the driver keeps to:
//! 1. Perform actions in the order returned. `PersistAcceptedEpoch`/`PersistCurrentEpoch` are
//!    durable before any later action is performed.
//! 2. Call `step(Input::Tick, now)` no later than [`Peer::next_wake_ms`].
//! 3. Quorum connections: at most one per sid. On the leader, a connection's sid is the one its
//!    first packet names (`quorum::wire::LearnerInfo`); `Disconnected` for an old connection
//!    comes before any packet of a new one. `Disconnect` closes without a `Disconnected` back.
//! 4. `LoadSnapshot`: read the snapshot stream that follows on the leader's connection before
//!    feeding anything else from that connection, make it durable, then feed `SnapshotLoaded`.
//!    If the stream is bad, close the connection and feed `Disconnected`; if the peer closes
//!    the connection meanwhile (`Disconnect`), drop the load and keep the old tree.
//! 5. `SendSnapshot`: write the stream into that connection right after the SNAP packet sent
//!    before it, from the tree with every `Commit` before it applied (a fuzzy snapshot that
//!    starts there is fine: the txns after it follow as proposals, and ZooKeeper's txns are
//!    idempotent).
//! 6. `Truncate` and a failed log write are fatal if they fail (ZooKeeper exits).
//!
//! What the replica keeps to:
//! - `Append` → log it, report `Durable` (in order). `Commit { zxid }` → apply through zxid and
//!   answer. `FastForward { zxid }` → apply through zxid, answer no one.
//! - Serve only between `Serving` and `StopServing`; at `StopServing` fail every pending client
//!   request and close client connections (ZooKeeper's `closeAllConnections`).
//! - Leader (and standalone): `Propose` with `next_zxid` from `Serving`, then +1 each; a zxid
//!   whose counter is all ones (`zab::counter_exhausted`) makes the leader step down (a new
//!   epoch starts, ZOOKEEPER-1277); that request fails with the role. Learner: `Forward`,
//!   `Sync`, `Revalidate` instead. `Touch` any time.
//! - A local input outside this contract is a bug and panics; a peer's input never does.

use crate::quorum::election::{self, Election, ElectionConfig};
use crate::quorum::zab::leader::Leader;
use crate::quorum::zab::learner::Learner;
use crate::quorum::zab::{Ended, Flow, History, Proposal, ZabConfig};
use crate::quorum::{epoch_of, LearnerType, Members, PeerState, Sid};

pub use crate::quorum::zab::{Action, Input, Role};

/// Static settings of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub zab: ZabConfig,
    pub members: Members,
    /// Run as ZooKeeper's standalone server: the only voter, no election, no epoch change
    /// (zoo.cfg with one voter and `standaloneEnabled=true`, the default).
    pub standalone: bool,
    pub election: ElectionConfig,
    /// The configuration text announced in election notifications (`server.N=...` lines and
    /// `version=...`), if any.
    pub announced_config: Option<Vec<u8>>,
}

/// What a peer starts from: its durable state after recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInit {
    /// The `acceptedEpoch` file.
    pub accepted_epoch: u32,
    /// The `currentEpoch` file.
    pub current_epoch: u32,
    /// The last zxid of the recovered state (the log's last txn, or the snapshot's zxid).
    pub last_zxid: i64,
    /// The newest txns of the local log, oldest first (up to commitLogCount are kept, to sync
    /// learners with DIFF).
    pub log_tail: Vec<Proposal>,
}

/// A peer that cannot start from this state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerInitError {
    #[error("The current epoch, {current}, is older than the last zxid, 0x{last_zxid:x}")]
    CurrentEpochBehindLog { current: u32, last_zxid: i64 },
    #[error("The accepted epoch, {accepted} is less than the current epoch, {current}")]
    AcceptedBehindCurrent { accepted: u32, current: u32 },
    #[error("server {0} is not in its own configuration")]
    NotAMember(Sid),
    #[error("standalone mode needs exactly one server, this one, voting; the configuration has {voters} voter(s) and {observers} observer(s)")]
    NotStandalone { voters: usize, observers: usize },
    #[error("at most {max} voters are supported, the configuration has {n}")]
    TooManyVoters { n: usize, max: usize },
}

#[derive(Debug)]
enum RoleState {
    Looking(History),
    Leading(Box<Leader>),
    Learning(Box<Learner>),
}

/// One server of the ensemble: election and ZAB.
#[derive(Debug)]
pub struct Peer {
    cfg: PeerConfig,
    election: Option<Election>,
    role: Option<RoleState>,
    accepted_epoch: u32,
    current_epoch: u32,
    serving: Option<Role>,
    election_out: Vec<election::Action>,
    /// Status only: when clients started being served in the current role.
    serving_since_ms: Option<u64>,
    /// Status only: the last election's outcome, and how many rounds LOOKING was entered for.
    last_decision: Option<Decision>,
    lookings: u64,
}

/// How the last election ended, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub leader: Sid,
    pub state: PeerState,
    pub duration_ms: u64,
    /// The round (`logicalclock`) it was decided in.
    pub round: i64,
    pub at_ms: u64,
}

impl Peer {
    /// A peer at `now_ms`: standalone, it serves at once; otherwise it is LOOKING and its first
    /// notifications are among the returned actions.
    pub fn new(cfg: PeerConfig, init: PeerInit, now_ms: u64) -> Result<(Peer, Vec<Action>), PeerInitError> {
        let me = cfg.zab.my_id;
        if cfg.members.learner_type(me).is_none() {
            return Err(PeerInitError::NotAMember(me));
        }
        if cfg.members.voters.len() > crate::quorum::zab::VOTERS_MAX {
            return Err(PeerInitError::TooManyVoters {
                n: cfg.members.voters.len(),
                max: crate::quorum::zab::VOTERS_MAX,
            });
        }
        if cfg.standalone && (cfg.members.voters.len() != 1 || !cfg.members.observers.is_empty()) {
            return Err(PeerInitError::NotStandalone {
                voters: cfg.members.voters.len(),
                observers: cfg.members.observers.len(),
            });
        }
        let mut init = init;
        let mut adopted = None;
        if !cfg.standalone {
            let last_epoch = epoch_of(init.last_zxid);
            if last_epoch > init.current_epoch {
                if init.accepted_epoch < last_epoch {
                    return Err(PeerInitError::CurrentEpochBehindLog {
                        current: init.current_epoch,
                        last_zxid: init.last_zxid,
                    });
                }
                // A learner synced by SNAP makes the leader's snapshot durable before NEWLEADER
                // writes currentEpoch; a crash in between leaves data of an epoch it had already
                // accepted (ZooKeeper covers the same window with currentEpoch.tmp). Its current
                // epoch is that of its data.
                init.current_epoch = last_epoch;
                adopted = Some(last_epoch);
            }
            if init.accepted_epoch < init.current_epoch {
                return Err(PeerInitError::AcceptedBehindCurrent {
                    accepted: init.accepted_epoch,
                    current: init.current_epoch,
                });
            }
        }
        let history = History::new(cfg.zab.commit_log_count, init.last_zxid, init.log_tail);
        let mut out = Vec::new();
        if let Some(e) = adopted {
            out.push(Action::PersistCurrentEpoch(e));
        }
        let mut peer = Peer {
            election: None,
            role: None,
            accepted_epoch: init.accepted_epoch,
            current_epoch: init.current_epoch,
            serving: None,
            election_out: Vec::new(),
            serving_since_ms: None,
            last_decision: None,
            lookings: 0,
            cfg,
        };
        let now = now_ms as i64;
        if peer.cfg.standalone {
            let l = Leader::standalone(peer.cfg.zab.clone(), history, now, &mut out);
            peer.role = Some(RoleState::Leading(Box::new(l)));
            peer.serving = Some(Role::Standalone);
            peer.serving_since_ms = Some(now_ms);
        } else {
            peer.election = Some(Election::new(
                me,
                peer.cfg.members.clone(),
                peer.cfg.announced_config.clone(),
                peer.cfg.election,
            ));
            peer.look(history, now_ms, &mut out);
        }
        Ok((peer, out))
    }

    /// One input at `now_ms`; the actions to perform, in order.
    pub fn step(&mut self, input: Input, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.step_into(input, now_ms, &mut out);
        out
    }

    /// As `step`, appending to `out` (which a hot caller reuses, so a standalone server's
    /// `Durable → Commit` allocates nothing).
    pub fn step_into(&mut self, input: Input, now_ms: u64, out: &mut Vec<Action>) {
        match input {
            Input::Notification { from, n } => {
                self.election_step(election::Input::Received { from, n }, now_ms, out);
            }
            Input::ElectionPeer { sid, reachable } => {
                let i = if reachable {
                    election::Input::PeerReachable { sid }
                } else {
                    election::Input::PeerUnreachable { sid }
                };
                self.election_step(i, now_ms, out);
            }
            Input::Tick => {
                self.election_step(election::Input::Tick, now_ms, out);
                self.role_step(Input::Tick, now_ms, out);
            }
            other => self.role_step(other, now_ms, out),
        }
    }

    /// When `step(Input::Tick)` must run next.
    pub fn next_wake_ms(&self) -> u64 {
        let e = self.election.as_ref().and_then(|e| e.next_deadline_ms()).unwrap_or(u64::MAX);
        let r = match &self.role {
            Some(RoleState::Leading(l)) => l.next_wake_ms().max(0) as u64,
            Some(RoleState::Learning(l)) => l.next_wake_ms().max(0) as u64,
            _ => u64::MAX,
        };
        e.min(r)
    }

    /// LOOKING, LEADING, FOLLOWING or OBSERVING.
    pub fn state(&self) -> PeerState {
        match &self.role {
            Some(RoleState::Leading(_)) => PeerState::Leading,
            Some(RoleState::Learning(l)) if l.is_observer() => PeerState::Observing,
            Some(RoleState::Learning(_)) => PeerState::Following,
            _ => PeerState::Looking,
        }
    }
    /// The role clients are served in, if they are.
    pub fn serving(&self) -> Option<Role> {
        self.serving
    }
    /// The leader this peer follows or is.
    pub fn leader(&self) -> Option<Sid> {
        match &self.role {
            Some(RoleState::Leading(_)) => Some(self.cfg.zab.my_id),
            Some(RoleState::Learning(l)) => Some(l.leader()),
            _ => None,
        }
    }
    pub fn accepted_epoch(&self) -> u32 {
        match &self.role {
            Some(RoleState::Leading(l)) => l.accepted_epoch(),
            Some(RoleState::Learning(l)) => l.accepted_epoch(),
            _ => self.accepted_epoch,
        }
    }
    pub fn current_epoch(&self) -> u32 {
        match &self.role {
            Some(RoleState::Leading(l)) => l.current_epoch(),
            Some(RoleState::Learning(l)) => l.current_epoch(),
            _ => self.current_epoch,
        }
    }
    /// The election, for status (`mntr`, the admin server).
    pub fn election(&self) -> Option<&Election> {
        self.election.as_ref()
    }

    // ---- status (read only; `quorum::status` builds what operators see from these) ----

    pub fn my_id(&self) -> Sid {
        self.cfg.zab.my_id
    }
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }
    /// The role's leader side, while leading (standalone too).
    pub(crate) fn leading(&self) -> Option<&Leader> {
        match &self.role {
            Some(RoleState::Leading(l)) => Some(l),
            _ => None,
        }
    }
    /// The role's learner side, while following or observing.
    pub(crate) fn learning(&self) -> Option<&Learner> {
        match &self.role {
            Some(RoleState::Learning(l)) => Some(l),
            _ => None,
        }
    }
    /// The last zxid of this server's history: committed, or (while looking) what it votes with.
    pub fn last_zxid(&self) -> i64 {
        match &self.role {
            Some(RoleState::Looking(h)) => h.last_zxid(),
            Some(RoleState::Leading(l)) => l.last_zxid(),
            Some(RoleState::Learning(l)) => l.last_zxid(),
            None => unreachable!("a peer always has a role between steps"),
        }
    }
    /// When clients started being served in this role (None: not serving).
    pub fn serving_since_ms(&self) -> Option<u64> {
        self.serving_since_ms
    }
    pub fn last_decision(&self) -> Option<Decision> {
        self.last_decision
    }
    /// How many times this peer went LOOKING (ZooKeeper's `looking_count`).
    pub fn lookings(&self) -> u64 {
        self.lookings
    }

    fn election_step(&mut self, input: election::Input, now_ms: u64, out: &mut Vec<Action>) {
        let Some(e) = self.election.as_mut() else { return };
        let mut eo = std::mem::take(&mut self.election_out);
        e.step(input, now_ms, &mut eo);
        for a in eo.drain(..) {
            match a {
                election::Action::Send { to, n } => out.push(Action::SendNotification { to, n }),
                election::Action::ConfigMismatch { sid, ours, theirs } => out.push(Action::ConfigMismatch {
                    message: election::ServerList::mismatch_message(sid, &ours, &theirs),
                }),
                election::Action::NotificationTimeout { next_timeout_ms } => {
                    out.push(Action::NotificationTimeout { next_timeout_ms })
                }
                election::Action::Decided { vote, state, duration_ms } => {
                    self.last_decision = Some(Decision {
                        leader: vote.leader,
                        state,
                        duration_ms,
                        round: vote.election_epoch,
                        at_ms: now_ms,
                    });
                    out.push(Action::Decided { leader: vote.leader, state, duration_ms });
                    self.start_role(vote.leader, state, now_ms, out);
                }
            }
        }
        self.election_out = eo;
    }

    fn start_role(&mut self, leader: Sid, state: PeerState, now_ms: u64, out: &mut Vec<Action>) {
        let Some(RoleState::Looking(history)) = self.role.take() else {
            panic!("the election decided while this peer had a role")
        };
        let now = now_ms as i64;
        let (zab, members) = (self.cfg.zab.clone(), &self.cfg.members);
        let (acc, cur) = (self.accepted_epoch, self.current_epoch);
        match state {
            PeerState::Leading => {
                let (l, flow) = Leader::start(zab, members.clone(), history, acc, cur, now, out);
                self.role = Some(RoleState::Leading(Box::new(l)));
                self.after_role_step(flow, now_ms, out);
            }
            PeerState::Following | PeerState::Observing => {
                let typ = if state == PeerState::Observing {
                    LearnerType::Observer
                } else {
                    LearnerType::Participant
                };
                let l = Learner::start(zab, leader, typ, history, acc, cur, now, out);
                self.role = Some(RoleState::Learning(Box::new(l)));
            }
            PeerState::Looking => panic!("the election decided to keep looking"),
        }
    }

    fn role_step(&mut self, input: Input, now_ms: u64, out: &mut Vec<Action>) {
        let now = now_ms as i64;
        let flow = match self.role.as_mut() {
            Some(RoleState::Leading(l)) => l.step(input, now, out),
            Some(RoleState::Learning(l)) => l.step(input, now, out),
            Some(RoleState::Looking(_)) | None => {
                if let (Input::Durable { zxid }, Some(RoleState::Looking(h))) = (&input, self.role.as_mut()) {
                    h.note_durable(*zxid);
                }
                match input {
                    // A connection of the role that ended.
                    Input::Connected { sid } | Input::Packet { from: sid, .. } => {
                        out.push(Action::Disconnect { sid, reason: "looking for a leader".into() })
                    }
                    // What the ended role logged reaches the disk (noted above).
                    Input::Durable { .. }
                    | Input::Disconnected { .. }
                    | Input::Touch { .. }
                    | Input::Tick
                    | Input::SnapshotLoaded { .. }
                    | Input::RevalidateAnswer { .. } => {}
                    Input::Notification { .. } | Input::ElectionPeer { .. } => {}
                    other => panic!(
                        "{other:?} reached a peer that serves no one: the replica must stop at StopServing"
                    ),
                }
                Flow::Continue
            }
        };
        self.after_role_step(flow, now_ms, out);
    }

    /// Tells the election when the role starts serving (ZooKeeper's `updateElectionVote`: the
    /// vote's peer epoch becomes the new epoch) and ends a role that is over.
    fn after_role_step(&mut self, flow: Flow, now_ms: u64, out: &mut Vec<Action>) {
        if let Flow::Abandon(reason) = flow {
            self.abandon(reason, now_ms, out);
            return;
        }
        let (serving, epoch) = match &self.role {
            Some(RoleState::Leading(l)) if l.is_serving() => {
                (Some(if self.cfg.standalone { Role::Standalone } else { Role::Leader }), l.epoch())
            }
            Some(RoleState::Learning(l)) if l.is_serving() => {
                (Some(if l.is_observer() { Role::Observer } else { Role::Follower }), l.epoch())
            }
            _ => (None, 0),
        };
        if serving.is_some() && self.serving.is_none() {
            self.serving = serving;
            self.serving_since_ms = Some(now_ms);
            let state = self.state();
            if let Some(e) = self.election.as_mut() {
                if let Some(mut vote) = e.current_vote() {
                    vote.peer_epoch = i64::from(epoch);
                    self.election_step(election::Input::Serving { state, vote }, now_ms, out);
                }
            }
        }
    }

    fn abandon(&mut self, reason: String, now_ms: u64, out: &mut Vec<Action>) {
        out.push(Action::StopServing { reason: reason.clone() });
        self.serving = None;
        self.serving_since_ms = None;
        let ended: Ended = match self.role.take() {
            Some(RoleState::Leading(l)) => l.finish(&reason, out),
            Some(RoleState::Learning(l)) => l.finish(&reason, out),
            other => panic!("abandoning without a role: {other:?}"),
        };
        if let Some(zxid) = ended.fast_forward {
            out.push(Action::FastForward { zxid });
        }
        self.accepted_epoch = ended.accepted_epoch;
        self.current_epoch = ended.current_epoch;
        self.look(ended.history, now_ms, out);
    }

    fn look(&mut self, history: History, now_ms: u64, out: &mut Vec<Action>) {
        let last_zxid = history.last_zxid();
        self.role = Some(RoleState::Looking(history));
        self.lookings += 1;
        out.push(Action::State { state: PeerState::Looking, leader: None });
        let current_epoch = i64::from(self.current_epoch);
        self.election_step(election::Input::Start { last_zxid, current_epoch }, now_ms, out);
    }
}

#[cfg(test)]
mod tests;
