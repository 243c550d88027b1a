//! A learner: a follower (votes, ACKs proposals) or an observer (learns committed txns through
//! INFORM), as ZooKeeper's `Learner`, `Follower` and `Observer` run them.
//!
//! | phase           | waits for                         | then                                      |
//! |-----------------|-----------------------------------|-------------------------------------------|
//! | Connecting      | `Connected` (initLimit)           | FOLLOWERINFO / OBSERVERINFO               |
//! | AwaitLeaderInfo | LEADERINFO                        | persist acceptedEpoch if newer; ACKEPOCH  |
//! | AwaitSyncOp     | DIFF, TRUNC or SNAP               | TRUNC: `Truncate`; SNAP: `LoadSnapshot`   |
//! | LoadingSnapshot | `SnapshotLoaded`                  |                                           |
//! | Syncing         | proposals, commits, NEWLEADER, UPTODATE | see below                           |
//! | Broadcast       | PROPOSAL, COMMIT/INFORM, PING, SYNC, REVALIDATE |                             |
//!
//! During sync nothing is applied: proposals and commits are kept in order. At NEWLEADER a
//! follower logs every proposal received so far, records the new epoch (`currentEpoch`) and ACKs
//! NEWLEADER once those are durable (ZooKeeper appends and fsyncs them before the ACK); an
//! observer records the epoch and ACKs at once. At UPTODATE the learner ACKs it, ACKs the
//! proposals logged at NEWLEADER, logs the ones that came after (ACKed as they become durable),
//! applies the commits, and serves. PINGs during sync are ignored, as ZooKeeper's learner
//! ignores them (the leader counts only pings sent after UPTODATE).
//!
//! This is ZooKeeper 3.8.2+'s order (ZOOKEEPER-4646: the NEWLEADER ACK promises the txns are
//! on disk). 3.8.0 and 3.8.1 learners log them asynchronously, ACK NEWLEADER at once and ACK
//! the txns as they become durable, possibly before UPTODATE; the leader accepts both.
//!
//! The learner abandons its leader (back to LOOKING) when nothing arrived for initLimit ticks
//! before NEWLEADER or syncLimit ticks after (ZooKeeper's socket read timeouts), when the
//! connection closes, or when the leader breaks the protocol.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::proto::Id;
use crate::quorum::{epoch_of, make_zxid, LearnerType, PeerState, QuorumPacket, Sid};

/// A message to the leader.
fn to_leader(leader: Sid, m: LearnerMessage) -> Action {
    Action::Send { to: leader, packet: m.to_packet() }
}

use super::{
    Action, Ended, Flow, History, Input, PacketError, Proposal, Role, SyncMode, ZabConfig, ZabPhase,
};
use crate::quorum::wire::{LeaderMessage, LearnerInfo, LearnerMessage, Touch, ZAB_PROTOCOL_VERSION};

/// Sessions awaiting a REVALIDATE answer; more are refused at once (answered invalid) rather
/// than letting the set grow without bound.
pub const REVALIDATIONS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    AwaitLeaderInfo,
    AwaitSyncOp,
    LoadingSnapshot(i64),
    Syncing,
    Broadcast,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Proposals received during sync, in order.
    props: VecDeque<Proposal>,
    /// How many of `props` (from the front) are committed.
    committed: usize,
    /// How many of `props` (from the front) were logged at NEWLEADER.
    logged: usize,
    newleader: bool,
    /// The NEWLEADER ACK waits for the local log to be durable up to this zxid.
    ack_after: Option<i64>,
}

#[derive(Debug)]
pub struct Learner {
    cfg: ZabConfig,
    leader: Sid,
    typ: LearnerType,
    history: History,
    accepted_epoch: u32,
    current_epoch: u32,
    new_epoch: u32,
    phase: Phase,
    /// Connect or read deadline.
    deadline_ms: i64,
    sync: SyncState,
    /// Follower in broadcast: logged, not yet committed.
    pending: VecDeque<Proposal>,
    /// Follower: logged, not yet ACKed (ACKed as they become durable).
    unacked: VecDeque<i64>,
    /// Last zxid received in a proposal or inform (ZooKeeper's lastQueued).
    last_queued: i64,
    /// Last zxid handed to the log.
    appended: i64,
    durable: i64,
    serving: bool,
    touches: BTreeMap<i64, i32>,
    syncs: usize,
    revalidations: BTreeSet<i64>,
    /// How the leader synchronises us (status only).
    sync_mode: Option<SyncMode>,
    /// When the leader's last packet arrived (status only).
    last_heard_ms: Option<i64>,
}

impl Learner {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: ZabConfig,
        leader: Sid,
        typ: LearnerType,
        history: History,
        accepted_epoch: u32,
        current_epoch: u32,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Learner {
        let last = history.last_zxid();
        let state = if typ == LearnerType::Observer { PeerState::Observing } else { PeerState::Following };
        out.push(Action::State { state, leader: Some(leader) });
        out.push(Action::Connect { leader });
        let durable = history.durable_zxid();
        Learner {
            deadline_ms: now + cfg.init_ms(),
            cfg,
            leader,
            typ,
            history,
            accepted_epoch,
            current_epoch,
            new_epoch: 0,
            phase: Phase::Connecting,
            sync: SyncState::default(),
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            last_queued: last,
            appended: last,
            durable,
            serving: false,
            touches: BTreeMap::new(),
            syncs: 0,
            revalidations: BTreeSet::new(),
            sync_mode: None,
            last_heard_ms: None,
        }
    }

    pub fn leader(&self) -> Sid {
        self.leader
    }
    pub fn is_serving(&self) -> bool {
        self.serving
    }
    pub fn is_observer(&self) -> bool {
        self.typ == LearnerType::Observer
    }
    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }
    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }
    pub fn epoch(&self) -> u32 {
        self.new_epoch
    }
    pub fn next_wake_ms(&self) -> i64 {
        self.deadline_ms
    }

    // ---- status (read only) ----

    pub fn zab_phase(&self) -> ZabPhase {
        match self.phase {
            Phase::Connecting | Phase::AwaitLeaderInfo => ZabPhase::Discovery,
            Phase::AwaitSyncOp | Phase::LoadingSnapshot(_) | Phase::Syncing => ZabPhase::Synchronization,
            Phase::Broadcast => ZabPhase::Broadcast,
        }
    }
    /// DIFF, TRUNC or SNAP from the time it arrived until NEWLEADER (as ZooKeeper reports it).
    pub fn sync_mode(&self) -> Option<SyncMode> {
        let syncing = matches!(self.phase, Phase::LoadingSnapshot(_) | Phase::Syncing);
        self.sync_mode.filter(|_| syncing && !self.sync.newleader)
    }
    /// The last zxid of this server's history (committed, or received in sync).
    pub fn last_zxid(&self) -> i64 {
        self.history.last_zxid()
    }
    /// When the leader's last packet arrived; None before the first.
    pub fn last_heard_ms(&self) -> Option<i64> {
        self.last_heard_ms
    }
    fn role(&self) -> Role {
        if self.typ == LearnerType::Observer {
            Role::Observer
        } else {
            Role::Follower
        }
    }

    /// The role ends: the leader's connection closes; what was logged joins the history (the
    /// replica fast-forwards to it).
    pub fn finish(mut self, reason: &str, out: &mut Vec<Action>) -> Ended {
        out.push(Action::Disconnect { sid: self.leader, reason: reason.to_owned() });
        let before = self.history.last_zxid();
        let logged: Vec<Proposal> = if self.phase == Phase::Syncing {
            self.sync.props.drain(..self.sync.logged).collect()
        } else {
            self.pending.drain(..).collect()
        };
        for p in logged {
            self.history.push(p);
        }
        let after = self.history.last_zxid();
        self.history.note_durable(self.durable);
        Ended {
            fast_forward: (after > before).then_some(after),
            history: self.history,
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
        }
    }

    pub fn step(&mut self, input: Input, now: i64, out: &mut Vec<Action>) -> Flow {
        match input {
            Input::Tick => {
                if now >= self.deadline_ms {
                    return Flow::Abandon(match self.phase {
                        Phase::Connecting => format!("Failed connect to leader {}", self.leader),
                        _ => format!("Read timed out waiting for leader {}", self.leader),
                    });
                }
                Flow::Continue
            }
            Input::Connected { sid } if sid == self.leader && self.phase == Phase::Connecting => {
                let info = LearnerInfo {
                    sid: self.cfg.my_id,
                    protocol_version: ZAB_PROTOCOL_VERSION,
                    config_version: 0,
                };
                let zxid = make_zxid(self.accepted_epoch, 0);
                let m = if self.typ == LearnerType::Observer {
                    LearnerMessage::ObserverInfo { zxid, info }
                } else {
                    LearnerMessage::FollowerInfo { zxid, info }
                };
                out.push(to_leader(self.leader, m));
                self.phase = Phase::AwaitLeaderInfo;
                self.deadline_ms = now + self.cfg.init_ms();
                Flow::Continue
            }
            Input::Connected { sid } | Input::Packet { from: sid, .. } if sid != self.leader => {
                out.push(Action::Disconnect { sid, reason: format!("not our leader ({})", self.leader) });
                Flow::Continue
            }
            Input::Connected { .. } => Flow::Abandon("a second connection to the leader".into()),
            Input::Disconnected { sid } if sid == self.leader => {
                Flow::Abandon(format!("connection to leader {} closed", self.leader))
            }
            Input::Disconnected { .. } => Flow::Continue,
            Input::Packet { packet, .. } => match self.on_packet(packet, now, out) {
                Ok(f) => f,
                Err(e) => Flow::Abandon(format!("leader {} broke the protocol: {e}", self.leader)),
            },
            Input::SnapshotLoaded { zxid } => {
                assert_eq!(self.phase, Phase::LoadingSnapshot(zxid), "SnapshotLoaded answers LoadSnapshot");
                self.history.reset(zxid);
                self.last_queued = zxid;
                self.appended = zxid;
                self.durable = zxid;
                self.phase = Phase::Syncing;
                self.deadline_ms = now + self.cfg.init_ms();
                Flow::Continue
            }
            Input::Durable { zxid } => {
                // A report for txns a TRUNC removed can still arrive (the log wrote them before it
                // truncated). It cannot cover what was appended since: the leader sends only
                // zxids beyond the learner's old last one (sync's rows 2 and 5). So it is cut to
                // what was appended.
                self.on_durable(zxid.min(self.appended), out);
                Flow::Continue
            }
            Input::Forward { session, cxid, typ, data, authinfo } => {
                assert!(self.serving, "a write was forwarded by a learner that does not serve");
                self.request(session, cxid, typ, data, authinfo, out);
                Flow::Continue
            }
            Input::Sync { session, cxid, data, authinfo } => {
                assert!(self.serving, "a sync reached a learner that does not serve");
                self.syncs += 1;
                self.request(session, cxid, super::OP_SYNC, data, authinfo, out);
                Flow::Continue
            }
            Input::Touch { sessions } => {
                self.touches.extend(sessions);
                Flow::Continue
            }
            Input::Revalidate { session, timeout } => {
                assert!(self.serving, "a revalidation reached a learner that does not serve");
                if self.revalidations.len() >= REVALIDATIONS_MAX && !self.revalidations.contains(&session) {
                    out.push(Action::Revalidated { session, valid: false });
                } else {
                    self.revalidations.insert(session);
                    out.push(to_leader(
                        self.leader,
                        LearnerMessage::Revalidate { session_id: session, timeout_ms: timeout },
                    ));
                }
                Flow::Continue
            }
            // An answer the replica worked out while this server still led: nobody asks for it now.
            Input::RevalidateAnswer { .. } => Flow::Continue,
            Input::Propose(_) => {
                panic!("a leader's input reached a learner: the replica must follow Action::Serving's role")
            }
            Input::Notification { .. } | Input::ElectionPeer { .. } => Flow::Continue,
        }
    }

    fn request(
        &mut self,
        session: i64,
        cxid: i32,
        op: i32,
        body: Vec<u8>,
        authinfo: Vec<Id>,
        out: &mut Vec<Action>,
    ) {
        let m = LearnerMessage::Request { session_id: session, cxid, op, body, authinfo: Some(authinfo) };
        out.push(to_leader(self.leader, m));
    }

    fn on_durable(&mut self, zxid: i64, out: &mut Vec<Action>) {
        self.durable = self.durable.max(zxid);
        if let Some(z) = self.sync.ack_after {
            if self.durable >= z {
                self.sync.ack_after = None;
                self.newleader_durable(out);
            }
        }
        if self.phase == Phase::Broadcast {
            while let Some(&z) = self.unacked.front() {
                if z > self.durable {
                    break;
                }
                self.unacked.pop_front();
                out.push(to_leader(self.leader, LearnerMessage::Ack { zxid: z }));
            }
        }
    }

    /// The history the leader sent before NEWLEADER is durable: only now may the new epoch become
    /// our current epoch (ZOOKEEPER-4646: a currentEpoch persisted before the synced txns are on disk
    /// lets a crash leave a node that claims the epoch without its history, and elections then
    /// prefer it and lose committed txns). Then the NEWLEADER ACK.
    fn newleader_durable(&mut self, out: &mut Vec<Action>) {
        self.current_epoch = self.new_epoch;
        out.push(Action::PersistCurrentEpoch(self.new_epoch));
        out.push(to_leader(self.leader, LearnerMessage::Ack { zxid: make_zxid(self.new_epoch, 0) }));
    }

    /// A proposal (or inform) must come after everything received before it.
    fn proposal(&mut self, zxid: i64, txn: Vec<u8>) -> Result<Proposal, PacketError> {
        if zxid <= self.last_queued {
            return Err(PacketError::Backwards { zxid, after: self.last_queued });
        }
        self.last_queued = zxid;
        Ok(Proposal { zxid, data: txn.into() })
    }

    fn on_packet(&mut self, pk: QuorumPacket, now: i64, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        let typ = pk.typ;
        self.last_heard_ms = Some(now);
        let m = LeaderMessage::from_packet(pk)?;
        let flow = match self.phase {
            Phase::Connecting => return Err(PacketError::unexpected(typ, "connecting")),
            Phase::AwaitLeaderInfo => self.on_leader_info(typ, m, out)?,
            Phase::AwaitSyncOp => self.on_sync_op(typ, m, out)?,
            Phase::LoadingSnapshot(_) => return Err(PacketError::unexpected(typ, "snapshot loading")),
            Phase::Syncing => self.on_sync_packet(typ, m, out)?,
            Phase::Broadcast => {
                self.on_broadcast_packet(typ, m, out)?;
                Flow::Continue
            }
        };
        // ZooKeeper's socket read timeout: initLimit until NEWLEADER, syncLimit from then on.
        let limit = if self.phase == Phase::Broadcast || self.sync.newleader {
            self.cfg.sync_ms()
        } else {
            self.cfg.init_ms()
        };
        self.deadline_ms = now + limit;
        Ok(flow)
    }

    fn on_leader_info(
        &mut self,
        typ: i32,
        m: LeaderMessage,
        out: &mut Vec<Action>,
    ) -> Result<Flow, PacketError> {
        let LeaderMessage::LeaderInfo { zxid, protocol_version: _ } = m else {
            return Err(PacketError::unexpected(typ, "discovery (waiting for LEADERINFO)"));
        };
        let new_epoch = epoch_of(zxid);
        let ours = if new_epoch > self.accepted_epoch {
            self.accepted_epoch = new_epoch;
            out.push(Action::PersistAcceptedEpoch(new_epoch));
            // ACKEPOCH carries the current epoch as a Java int.
            self.current_epoch as i32
        } else if new_epoch == self.accepted_epoch {
            -1
        } else {
            return Ok(Flow::Abandon(format!(
                "Leaders epoch, {new_epoch} is less than accepted epoch, {}",
                self.accepted_epoch
            )));
        };
        self.new_epoch = new_epoch;
        let last_zxid = self.history.last_zxid();
        out.push(to_leader(self.leader, LearnerMessage::AckEpoch { last_zxid, current_epoch: ours }));
        self.phase = Phase::AwaitSyncOp;
        Ok(Flow::Continue)
    }

    fn on_sync_op(&mut self, typ: i32, m: LeaderMessage, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        match m {
            LeaderMessage::Diff { .. } => {
                self.sync_mode = Some(SyncMode::Diff);
                self.phase = Phase::Syncing;
            }
            LeaderMessage::Trunc { zxid: z } => {
                if z > self.history.last_zxid() {
                    return Err(PacketError::Refused(format!(
                        "TRUNC to 0x{z:x}, beyond our last zxid 0x{:x}",
                        self.history.last_zxid()
                    )));
                }
                self.sync_mode = Some(SyncMode::Trunc);
                out.push(Action::Truncate { zxid: z });
                self.history.truncate(z);
                self.last_queued = z;
                self.appended = z;
                self.durable = self.durable.min(z);
                self.phase = Phase::Syncing;
            }
            LeaderMessage::Snap { zxid } => {
                self.sync_mode = Some(SyncMode::Snap);
                out.push(Action::LoadSnapshot { zxid });
                self.phase = Phase::LoadingSnapshot(zxid);
            }
            _ => {
                return Err(PacketError::unexpected(typ, "synchronisation (waiting for DIFF, TRUNC or SNAP)"))
            }
        }
        Ok(Flow::Continue)
    }

    fn on_sync_packet(
        &mut self,
        typ: i32,
        m: LeaderMessage,
        out: &mut Vec<Action>,
    ) -> Result<Flow, PacketError> {
        match m {
            LeaderMessage::Proposal { zxid, txn } => {
                let p = self.proposal(zxid, txn)?;
                self.sync.props.push_back(p);
            }
            LeaderMessage::Commit { zxid } => {
                let next = self.sync.props.get(self.sync.committed).map(|p| p.zxid);
                if next != Some(zxid) {
                    return Err(PacketError::CommitOrder {
                        zxid,
                        next: next.map_or("none".into(), |z| format!("0x{z:x}")),
                    });
                }
                self.sync.committed += 1;
            }
            LeaderMessage::Inform { zxid, txn } if self.typ == LearnerType::Observer => {
                if self.sync.committed != self.sync.props.len() {
                    return Err(PacketError::Refused("INFORM while a proposal is uncommitted".into()));
                }
                let p = self.proposal(zxid, txn)?;
                self.sync.props.push_back(p);
                self.sync.committed += 1;
            }
            // The config text it may carry is ignored: zkd does no dynamic reconfiguration.
            LeaderMessage::NewLeader { zxid, config: _ } => {
                let want = make_zxid(self.new_epoch, 0);
                if self.sync.newleader || zxid != want {
                    return Err(PacketError::Refused(format!(
                        "NEWLEADER 0x{zxid:x} (expected one, of 0x{want:x})"
                    )));
                }
                self.sync.newleader = true;
                if self.typ == LearnerType::Participant {
                    for p in self.sync.props.iter() {
                        out.push(Action::Append(p.clone()));
                        self.appended = p.zxid;
                    }
                    self.sync.logged = self.sync.props.len();
                }
                if self.durable >= self.appended {
                    self.newleader_durable(out);
                } else {
                    self.sync.ack_after = Some(self.appended);
                }
            }
            LeaderMessage::UpToDate => {
                if !self.sync.newleader || self.sync.ack_after.is_some() {
                    return Err(PacketError::unexpected(typ, "synchronisation before our NEWLEADER ACK"));
                }
                self.uptodate(out);
            }
            // ZooKeeper's learner ignores pings until it is up to date.
            LeaderMessage::Ping { .. } => {}
            _ => return Err(PacketError::unexpected(typ, "synchronisation")),
        }
        Ok(Flow::Continue)
    }

    fn uptodate(&mut self, out: &mut Vec<Action>) {
        let leader = self.leader;
        out.push(to_leader(leader, LearnerMessage::Ack { zxid: make_zxid(self.new_epoch, 0) }));
        let sync = std::mem::take(&mut self.sync);
        let mut props = sync.props;
        match self.typ {
            LearnerType::Participant => {
                // Logged and durable at NEWLEADER: ACK them now.
                for p in props.iter().take(sync.logged) {
                    out.push(to_leader(leader, LearnerMessage::Ack { zxid: p.zxid }));
                }
                // Received after NEWLEADER: log them, ACK as they become durable.
                for p in props.iter().skip(sync.logged) {
                    out.push(Action::Append(p.clone()));
                    self.appended = p.zxid;
                    self.unacked.push_back(p.zxid);
                }
            }
            LearnerType::Observer => {
                // Only committed txns are an observer's; it logs them now.
                for p in props.iter().take(sync.committed) {
                    out.push(Action::Append(p.clone()));
                    self.appended = p.zxid;
                }
            }
        }
        let committed: Vec<Proposal> = props.drain(..sync.committed).collect();
        if self.typ == LearnerType::Participant {
            self.pending = props;
        }
        if let Some(last) = committed.last() {
            out.push(Action::Commit { zxid: last.zxid });
        }
        for p in committed {
            self.history.push(p);
        }
        self.phase = Phase::Broadcast;
        self.serving = true;
        out.push(Action::Serving { role: self.role(), epoch: self.new_epoch, next_zxid: None });
        // Anything durable already gets its ACK.
        let durable = self.durable;
        self.on_durable(durable, out);
    }

    fn on_broadcast_packet(
        &mut self,
        typ: i32,
        m: LeaderMessage,
        out: &mut Vec<Action>,
    ) -> Result<(), PacketError> {
        let participant = self.typ == LearnerType::Participant;
        match m {
            LeaderMessage::Ping { zxid } => {
                let touches = std::mem::take(&mut self.touches)
                    .into_iter()
                    .map(|(session_id, timeout_ms)| Touch { session_id, timeout_ms })
                    .collect();
                out.push(to_leader(self.leader, LearnerMessage::Ping { zxid, touches }));
            }
            LeaderMessage::Proposal { zxid, txn } if participant => {
                let p = self.proposal(zxid, txn)?;
                self.appended = p.zxid;
                self.unacked.push_back(p.zxid);
                out.push(Action::Append(p.clone()));
                self.pending.push_back(p);
            }
            LeaderMessage::Commit { zxid } if participant => {
                // ZooKeeper tolerates a COMMIT with nothing pending (it logs a warning).
                let Some(front) = self.pending.front() else { return Ok(()) };
                if front.zxid != zxid {
                    return Err(PacketError::CommitOrder { zxid, next: format!("0x{:x}", front.zxid) });
                }
                if let Some(p) = self.pending.pop_front() {
                    self.history.push(p);
                }
                out.push(Action::Commit { zxid });
            }
            LeaderMessage::Inform { zxid, txn } if !participant => {
                let p = self.proposal(zxid, txn)?;
                self.appended = p.zxid;
                out.push(Action::Append(p.clone()));
                out.push(Action::Commit { zxid: p.zxid });
                self.history.push(p);
            }
            // ZooKeeper's observer ignores proposals and commits.
            LeaderMessage::Proposal { .. } | LeaderMessage::Commit { .. } => {}
            LeaderMessage::Sync => {
                // ZooKeeper ignores a SYNC it did not ask for (with a warning).
                if self.syncs > 0 {
                    self.syncs -= 1;
                    out.push(Action::SyncDone);
                }
            }
            LeaderMessage::Revalidate { session_id, valid } => {
                if self.revalidations.remove(&session_id) {
                    out.push(Action::Revalidated { session: session_id, valid });
                }
            }
            // ZooKeeper logs an error and goes on.
            LeaderMessage::UpToDate => {}
            LeaderMessage::CommitAndActivate { .. } | LeaderMessage::InformAndActivate { .. } => {
                return Err(PacketError::Refused("dynamic reconfiguration is not supported".into()));
            }
            _ => return Err(PacketError::unexpected(typ, "broadcast")),
        }
        Ok(())
    }
}
