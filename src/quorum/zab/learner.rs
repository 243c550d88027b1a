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
use crate::quorum::{epoch_of, make_zxid, packet_type as pt, LearnerType, PeerState, QuorumPacket, Sid};

use super::payload::{self, LearnerInfo};
use super::{packet, Action, Ended, Flow, History, Input, PacketError, Proposal, Role, ZabConfig};

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
            durable: last,
            serving: false,
            touches: BTreeMap::new(),
            syncs: 0,
            revalidations: BTreeSet::new(),
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
                let li = LearnerInfo {
                    sid: self.cfg.my_id,
                    protocol_version: super::PROTOCOL_VERSION,
                    config_version: 0,
                };
                let typ = if self.typ == LearnerType::Observer { pt::OBSERVERINFO } else { pt::FOLLOWERINFO };
                out.push(Action::Send {
                    to: self.leader,
                    packet: QuorumPacket {
                        typ,
                        zxid: make_zxid(self.accepted_epoch, 0),
                        data: Some(li.encode()),
                        authinfo: None,
                    },
                });
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
                self.request(session, cxid, typ, &data, authinfo, out);
                Flow::Continue
            }
            Input::Sync { session, cxid, data, authinfo } => {
                assert!(self.serving, "a sync reached a learner that does not serve");
                self.syncs += 1;
                self.request(session, cxid, super::OP_SYNC, &data, authinfo, out);
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
                    let data = payload::encode_revalidate(session, timeout);
                    out.push(Action::Send {
                        to: self.leader,
                        packet: QuorumPacket {
                            typ: pt::REVALIDATE,
                            zxid: -1,
                            data: Some(data),
                            authinfo: None,
                        },
                    });
                }
                Flow::Continue
            }
            Input::Propose(_) | Input::RevalidateAnswer { .. } => {
                panic!("a leader's input reached a learner: the replica must follow Action::Serving's role")
            }
            Input::Notification { .. } | Input::ElectionPeer { .. } => Flow::Continue,
        }
    }

    fn request(
        &mut self,
        session: i64,
        cxid: i32,
        typ: i32,
        body: &[u8],
        authinfo: Vec<Id>,
        out: &mut Vec<Action>,
    ) {
        let data = payload::encode_request(session, cxid, typ, body);
        out.push(Action::Send {
            to: self.leader,
            packet: QuorumPacket { typ: pt::REQUEST, zxid: -1, data: Some(data), authinfo: Some(authinfo) },
        });
    }

    fn on_durable(&mut self, zxid: i64, out: &mut Vec<Action>) {
        self.durable = self.durable.max(zxid);
        if let Some(z) = self.sync.ack_after {
            if self.durable >= z {
                self.sync.ack_after = None;
                out.push(Action::Send {
                    to: self.leader,
                    packet: packet(pt::ACK, make_zxid(self.new_epoch, 0)),
                });
            }
        }
        if self.phase == Phase::Broadcast {
            while let Some(&z) = self.unacked.front() {
                if z > self.durable {
                    break;
                }
                self.unacked.pop_front();
                out.push(Action::Send { to: self.leader, packet: packet(pt::ACK, z) });
            }
        }
    }

    fn proposal(&mut self, pk: QuorumPacket) -> Result<Proposal, PacketError> {
        if pk.zxid <= self.last_queued {
            return Err(PacketError::Backwards { zxid: pk.zxid, after: self.last_queued });
        }
        let what = pt::name(pk.typ);
        let data = pk.data.ok_or_else(|| PacketError::Payload { what, detail: "no txn".into() })?;
        self.last_queued = pk.zxid;
        Ok(Proposal { zxid: pk.zxid, data: data.into() })
    }

    fn on_packet(&mut self, pk: QuorumPacket, now: i64, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        let flow = match self.phase {
            Phase::Connecting => Err(PacketError::unexpected(pk.typ, "connecting")),
            Phase::AwaitLeaderInfo => self.on_leader_info(pk, out),
            Phase::AwaitSyncOp => self.on_sync_op(pk, out),
            Phase::LoadingSnapshot(_) => Err(PacketError::unexpected(pk.typ, "snapshot loading")),
            Phase::Syncing => self.on_sync_packet(pk, out),
            Phase::Broadcast => self.on_broadcast_packet(pk, out).map(|()| Flow::Continue),
        }?;
        // ZooKeeper's socket read timeout: initLimit until NEWLEADER, syncLimit from then on.
        let limit = if self.phase == Phase::Broadcast || self.sync.newleader {
            self.cfg.sync_ms()
        } else {
            self.cfg.init_ms()
        };
        self.deadline_ms = now + limit;
        Ok(flow)
    }

    fn on_leader_info(&mut self, pk: QuorumPacket, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        if pk.typ != pt::LEADERINFO {
            return Err(PacketError::unexpected(pk.typ, "discovery (waiting for LEADERINFO)"));
        }
        payload::decode_int("LEADERINFO", pk.data.as_deref())?;
        let new_epoch = epoch_of(pk.zxid);
        let ours = if new_epoch > self.accepted_epoch {
            self.accepted_epoch = new_epoch;
            out.push(Action::PersistAcceptedEpoch(new_epoch));
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
        out.push(Action::Send {
            to: self.leader,
            packet: QuorumPacket {
                typ: pt::ACKEPOCH,
                zxid: self.history.last_zxid(),
                data: Some(payload::encode_int(ours)),
                authinfo: None,
            },
        });
        self.phase = Phase::AwaitSyncOp;
        Ok(Flow::Continue)
    }

    fn on_sync_op(&mut self, pk: QuorumPacket, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        match pk.typ {
            pt::DIFF => self.phase = Phase::Syncing,
            pt::TRUNC => {
                let z = pk.zxid;
                if z > self.history.last_zxid() {
                    return Err(PacketError::Refused(format!(
                        "TRUNC to 0x{z:x}, beyond our last zxid 0x{:x}",
                        self.history.last_zxid()
                    )));
                }
                out.push(Action::Truncate { zxid: z });
                self.history.truncate(z);
                self.last_queued = z;
                self.appended = z;
                self.durable = self.durable.min(z);
                self.phase = Phase::Syncing;
            }
            pt::SNAP => {
                out.push(Action::LoadSnapshot { zxid: pk.zxid });
                self.phase = Phase::LoadingSnapshot(pk.zxid);
            }
            t => return Err(PacketError::unexpected(t, "synchronisation (waiting for DIFF, TRUNC or SNAP)")),
        }
        Ok(Flow::Continue)
    }

    fn on_sync_packet(&mut self, pk: QuorumPacket, out: &mut Vec<Action>) -> Result<Flow, PacketError> {
        match pk.typ {
            pt::PROPOSAL => {
                let p = self.proposal(pk)?;
                self.sync.props.push_back(p);
            }
            pt::COMMIT => {
                let next = self.sync.props.get(self.sync.committed).map(|p| p.zxid);
                if next != Some(pk.zxid) {
                    return Err(PacketError::CommitOrder {
                        zxid: pk.zxid,
                        next: next.map_or("none".into(), |z| format!("0x{z:x}")),
                    });
                }
                self.sync.committed += 1;
            }
            pt::INFORM if self.typ == LearnerType::Observer => {
                if self.sync.committed != self.sync.props.len() {
                    return Err(PacketError::Refused("INFORM while a proposal is uncommitted".into()));
                }
                let p = self.proposal(pk)?;
                self.sync.props.push_back(p);
                self.sync.committed += 1;
            }
            pt::NEWLEADER => {
                let want = make_zxid(self.new_epoch, 0);
                if self.sync.newleader || pk.zxid != want {
                    return Err(PacketError::Refused(format!(
                        "NEWLEADER 0x{:x} (expected one, of 0x{want:x})",
                        pk.zxid
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
                self.current_epoch = self.new_epoch;
                out.push(Action::PersistCurrentEpoch(self.new_epoch));
                if self.durable >= self.appended {
                    out.push(Action::Send { to: self.leader, packet: packet(pt::ACK, want) });
                } else {
                    self.sync.ack_after = Some(self.appended);
                }
            }
            pt::UPTODATE => {
                if !self.sync.newleader || self.sync.ack_after.is_some() {
                    return Err(PacketError::unexpected(pk.typ, "synchronisation before our NEWLEADER ACK"));
                }
                self.uptodate(out);
            }
            // ZooKeeper's learner ignores pings until it is up to date.
            pt::PING => {}
            t => return Err(PacketError::unexpected(t, "synchronisation")),
        }
        Ok(Flow::Continue)
    }

    fn uptodate(&mut self, out: &mut Vec<Action>) {
        let leader = self.leader;
        out.push(Action::Send { to: leader, packet: packet(pt::ACK, make_zxid(self.new_epoch, 0)) });
        let sync = std::mem::take(&mut self.sync);
        let mut props = sync.props;
        match self.typ {
            LearnerType::Participant => {
                // Logged and durable at NEWLEADER: ACK them now.
                for p in props.iter().take(sync.logged) {
                    out.push(Action::Send { to: leader, packet: packet(pt::ACK, p.zxid) });
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

    fn on_broadcast_packet(&mut self, pk: QuorumPacket, out: &mut Vec<Action>) -> Result<(), PacketError> {
        match pk.typ {
            pt::PING => {
                let touches = std::mem::take(&mut self.touches);
                let data = payload::encode_touches(touches.into_iter());
                out.push(Action::Send {
                    to: self.leader,
                    packet: QuorumPacket {
                        typ: pt::PING,
                        zxid: pk.zxid,
                        data: Some(data),
                        authinfo: pk.authinfo,
                    },
                });
            }
            pt::PROPOSAL if self.typ == LearnerType::Participant => {
                let p = self.proposal(pk)?;
                self.appended = p.zxid;
                self.unacked.push_back(p.zxid);
                out.push(Action::Append(p.clone()));
                self.pending.push_back(p);
            }
            pt::COMMIT if self.typ == LearnerType::Participant => {
                // ZooKeeper tolerates a COMMIT with nothing pending (it logs a warning).
                let Some(front) = self.pending.front() else { return Ok(()) };
                if front.zxid != pk.zxid {
                    return Err(PacketError::CommitOrder {
                        zxid: pk.zxid,
                        next: format!("0x{:x}", front.zxid),
                    });
                }
                if let Some(p) = self.pending.pop_front() {
                    self.history.push(p);
                }
                out.push(Action::Commit { zxid: pk.zxid });
            }
            pt::INFORM if self.typ == LearnerType::Observer => {
                let p = self.proposal(pk)?;
                self.appended = p.zxid;
                out.push(Action::Append(p.clone()));
                out.push(Action::Commit { zxid: p.zxid });
                self.history.push(p);
            }
            // ZooKeeper's observer ignores proposals and commits.
            pt::PROPOSAL | pt::COMMIT if self.typ == LearnerType::Observer => {}
            pt::SYNC => {
                // ZooKeeper ignores a SYNC it did not ask for (with a warning).
                if self.syncs > 0 {
                    self.syncs -= 1;
                    out.push(Action::SyncDone);
                }
            }
            pt::REVALIDATE => {
                let (session, valid) = payload::decode_revalidated(pk.data.as_deref())?;
                if self.revalidations.remove(&session) {
                    out.push(Action::Revalidated { session, valid });
                }
            }
            // ZooKeeper logs an error and goes on.
            pt::UPTODATE => {}
            pt::COMMITANDACTIVATE | pt::INFORMANDACTIVATE => {
                return Err(PacketError::Refused("dynamic reconfiguration is not supported".into()));
            }
            t => return Err(PacketError::unexpected(t, "broadcast")),
        }
        Ok(())
    }
}
