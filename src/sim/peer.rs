//! The real `quorum::peer::Peer` as a [`SimNode`]: this file plays the driver and the replica
//! around it, as thinly as the real ones should. It logs what the peer appends, applies what it
//! commits (or fast-forwards), proposes forwarded requests with the next zxid, writes the
//! snapshot stream for a SNAP sync and loads it on the other side, retries a learner's connect
//! until the peer gives up, and answers syncs in order.
//!
//! A txn's data is 16 bytes (session, cxid, value); ZAB treats it as opaque.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Boot, Booted, Channel, Effect, Entry, Input, Ms, SimNode, Txn};
use crate::quorum::election::ElectionConfig;
use crate::quorum::peer::{Action, Input as PIn, Peer, PeerConfig, PeerInit};
use crate::quorum::zab::{Proposal, ZabConfig};
use crate::quorum::{packet_type, Notification, PeerState, QuorumPacket, Sid};

/// ZooKeeper's tickTime, scaled down so a run covers many elections: initLimit 10 and
/// syncLimit 5 ticks as in the sample zoo.cfg.
pub const TICK_TIME_MS: i64 = 50;
/// Small, so that learners that fall behind get SNAP as well as DIFF and TRUNC.
pub const COMMIT_LOG_COUNT: usize = 16;
/// How long the driver waits before it tries a failed connect to the leader again.
const CONNECT_RETRY_MS: Ms = 100;

/// What travels between simulated peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    Notification(Notification),
    Packet(QuorumPacket),
    /// The snapshot stream a leader writes after SNAP: its state as of `zxid`.
    Snapshot {
        zxid: i64,
        entries: Vec<Entry>,
    },
}

pub fn encode_txn(t: &Txn) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&t.session.to_be_bytes());
    v.extend_from_slice(&t.cxid.to_be_bytes());
    v.extend_from_slice(&t.value.to_be_bytes());
    v
}

pub fn decode_txn(d: &[u8]) -> Option<Txn> {
    if d.len() != 16 {
        return None;
    }
    Some(Txn {
        session: i64::from_be_bytes(d[0..8].try_into().ok()?),
        cxid: i32::from_be_bytes(d[8..12].try_into().ok()?),
        value: u32::from_be_bytes(d[12..16].try_into().ok()?),
    })
}

/// A deliberate fault in the driver or replica around the real peer, to show the checks catch
/// what a wrong integration would do. `None` in every real run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// A serving follower's replica applies a proposal as soon as it logs it (before COMMIT).
    ApplyOnAppend,
    /// The leader's replica applies (and answers) its own proposal once its log made it
    /// durable, without waiting for a quorum's ACKs.
    CommitOnLocalDurable,
    /// The driver never writes the epoch files.
    SkipEpochFiles,
    /// The replica ignores TRUNC: it keeps its log and state.
    IgnoreTruncate,
}

// The fault for every `PeerNode` booted on this thread (the simulator is single-threaded).
thread_local! {
    static FAULT: std::cell::Cell<Fault> = const { std::cell::Cell::new(Fault::None) };
}

/// Runs `f` with every `PeerNode` booted in it carrying `fault`.
pub fn with_fault<T>(fault: Fault, f: impl FnOnce() -> T) -> T {
    let old = FAULT.with(|c| c.replace(fault));
    let out = f();
    FAULT.with(|c| c.set(old));
    out
}

/// The real peer with its simulated driver and replica.
pub struct PeerNode {
    fault: Fault,
    sid: Sid,
    peer: Peer,
    /// The replica's log (mirrors the world's disk) and how much of it the state holds.
    log: Vec<Entry>,
    applied_zxid: i64,
    serving: bool,
    /// Leader: the zxid the next proposal carries.
    next_zxid: Option<i64>,
    /// Syncs waiting for `SyncDone`, oldest first.
    syncs: VecDeque<(i64, u64)>,
    /// A learner's connect to its leader: (leader, connected yet), and when to try again.
    connecting: Option<(Sid, bool)>,
    retry_at: Option<Ms>,
    /// A SNAP is under way: the snapshot stream from the leader comes next.
    loading: bool,
}

fn config(sid: Sid, members: &crate::quorum::Members) -> PeerConfig {
    PeerConfig {
        zab: ZabConfig {
            my_id: sid,
            tick_ms: TICK_TIME_MS,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: COMMIT_LOG_COUNT,
            epoch_counter_start: 0,
        },
        members: members.clone(),
        standalone: false,
        election: ElectionConfig::default(),
        announced_config: None,
    }
}

type Out = Vec<Effect<PeerMsg>>;

impl PeerNode {
    fn proposal(e: &Entry) -> Proposal {
        Proposal { zxid: e.zxid, data: Arc::from(encode_txn(&e.txn)) }
    }

    /// Feeds `input` to the peer and performs its actions, feeding back what the replica
    /// answers in the same step (a forwarded request becomes a proposal).
    fn run(&mut self, input: PIn, now: Ms, out: &mut Out) {
        let mut inputs = VecDeque::from([input]);
        while let Some(i) = inputs.pop_front() {
            let actions = self.peer.step(i, now);
            for a in actions {
                self.perform(a, out, &mut inputs);
            }
        }
    }

    fn perform(&mut self, a: Action, out: &mut Out, inputs: &mut VecDeque<PIn>) {
        match a {
            Action::SendNotification { to, n } => {
                out.push(Effect::Send { to, channel: Channel::Election, msg: PeerMsg::Notification(n) })
            }
            Action::Decided { .. } | Action::ConfigMismatch { .. } | Action::NotificationTimeout { .. } => {}
            Action::Connect { leader } => {
                self.loading = false;
                self.connecting = Some((leader, false));
                self.retry_at = None;
                out.push(Effect::Connect { peer: leader, channel: Channel::Quorum });
            }
            Action::Send { to, packet } => {
                out.push(Effect::Send { to, channel: Channel::Quorum, msg: PeerMsg::Packet(packet) })
            }
            Action::SendSnapshot { to, zxid } => {
                // The state as of `zxid` (an epoch's marker zxid carries no txn of its own).
                let entries: Vec<Entry> = self.log.iter().filter(|e| e.zxid <= zxid).copied().collect();
                let unapplied = entries.last().is_some_and(|e| e.zxid > self.applied_zxid);
                assert!(!unapplied, "a snapshot as of 0x{zxid:x} from a state at 0x{:x}", self.applied_zxid);
                out.push(Effect::Send {
                    to,
                    channel: Channel::Quorum,
                    msg: PeerMsg::Snapshot { zxid, entries },
                });
            }
            Action::Disconnect { sid, .. } => {
                // A snapshot stream that has not come yet will not: the connection is gone.
                self.loading = false;
                if self.connecting.is_some_and(|(l, _)| l == sid) {
                    self.connecting = None;
                    self.retry_at = None;
                }
                out.push(Effect::Disconnect { peer: sid, channel: Channel::Quorum });
            }
            Action::PersistAcceptedEpoch(_) | Action::PersistCurrentEpoch(_)
                if self.fault == Fault::SkipEpochFiles => {}
            Action::PersistAcceptedEpoch(e) => out.push(Effect::PersistAcceptedEpoch(e)),
            Action::PersistCurrentEpoch(e) => out.push(Effect::PersistCurrentEpoch(e)),
            Action::Append(p) => {
                let txn = decode_txn(&p.data).expect("every proposal carries a simulated txn");
                let e = Entry { zxid: p.zxid, txn };
                if self.log.last().is_none_or(|l| l.zxid < e.zxid) {
                    self.log.push(e);
                }
                out.push(Effect::LogAppend(e));
                if self.fault == Fault::ApplyOnAppend
                    && self.serving
                    && self.peer.state() == PeerState::Following
                {
                    self.apply_to(e.zxid, out);
                }
            }
            Action::Commit { zxid } | Action::FastForward { zxid } => self.apply_to(zxid, out),
            Action::LoadSnapshot { .. } => self.loading = true,
            Action::Truncate { .. } if self.fault == Fault::IgnoreTruncate => {}
            Action::Truncate { zxid } => {
                self.log.retain(|e| e.zxid <= zxid);
                self.applied_zxid = self.log.last().map_or(0, |e| e.zxid).min(zxid);
                out.push(Effect::LogTruncate { zxid });
            }
            Action::Request { session, cxid, data, .. } => {
                let txn = decode_txn(&data).expect("every request carries a simulated txn");
                assert_eq!((txn.session, txn.cxid), (session, cxid), "the request's header matches its data");
                self.propose(txn, inputs);
            }
            Action::Touch { .. } | Action::Revalidated { .. } => {}
            Action::Revalidate { from, session, .. } => {
                inputs.push_back(PIn::RevalidateAnswer { to: from, session, valid: true })
            }
            Action::SyncDone => {
                let (session, id) = self.syncs.pop_front().expect("SyncDone answers a pending sync");
                out.push(Effect::SyncDone { session, id });
            }
            Action::Serving { role, epoch, next_zxid } => {
                self.serving = true;
                self.next_zxid = next_zxid;
                out.push(Effect::Role { state: role.peer_state(), epoch, serving: true });
            }
            Action::StopServing { .. } => {
                self.serving = false;
                self.next_zxid = None;
                self.syncs.clear();
                let epoch = self.peer.current_epoch();
                out.push(Effect::Role { state: self.peer.state(), epoch, serving: false });
            }
            Action::State { state, .. } => {
                if !self.serving {
                    let epoch = self.peer.current_epoch();
                    out.push(Effect::Role { state, epoch, serving: false });
                }
            }
        }
    }

    fn propose(&mut self, txn: Txn, inputs: &mut VecDeque<PIn>) {
        let Some(z) = self.next_zxid.as_mut() else { return };
        let p = Proposal { zxid: *z, data: Arc::from(encode_txn(&txn)) };
        *z += 1;
        inputs.push_back(PIn::Propose(p));
    }

    fn apply_to(&mut self, zxid: i64, out: &mut Out) {
        for e in self.log.iter().filter(|e| e.zxid > self.applied_zxid && e.zxid <= zxid) {
            out.push(Effect::Apply(*e));
        }
        self.applied_zxid = self.applied_zxid.max(zxid);
    }
}

impl SimNode for PeerNode {
    type Msg = PeerMsg;

    fn boot(boot: Boot<'_>, now_ms: Ms) -> Booted<Self> {
        let last_zxid = boot.log.last().map_or(0, |e| e.zxid);
        let init = PeerInit {
            accepted_epoch: boot.accepted_epoch,
            current_epoch: boot.current_epoch,
            last_zxid,
            log_tail: boot.log.iter().rev().take(COMMIT_LOG_COUNT).rev().map(Self::proposal).collect(),
        };
        let (peer, actions) =
            Peer::new(config(boot.sid, boot.members), init, now_ms).map_err(|e| e.to_string())?;
        let mut node = PeerNode {
            fault: FAULT.with(|c| c.get()),
            sid: boot.sid,
            peer,
            log: boot.log.to_vec(),
            applied_zxid: last_zxid,
            serving: false,
            next_zxid: None,
            syncs: VecDeque::new(),
            connecting: None,
            retry_at: None,
            loading: false,
        };
        let mut out = Vec::new();
        let mut inputs = VecDeque::new();
        for a in actions {
            node.perform(a, &mut out, &mut inputs);
        }
        while let Some(i) = inputs.pop_front() {
            node.run(i, now_ms, &mut out);
        }
        Ok((node, out))
    }

    fn step(&mut self, input: Input<PeerMsg>, now: Ms) -> Vec<Effect<PeerMsg>> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {
                if let (Some((leader, false)), Some(at)) = (self.connecting, self.retry_at) {
                    if now >= at {
                        self.retry_at = None;
                        out.push(Effect::Connect { peer: leader, channel: Channel::Quorum });
                    }
                }
                self.run(PIn::Tick, now, &mut out);
            }
            Input::Message { from, msg, .. } => match msg {
                PeerMsg::Notification(n) => self.run(PIn::Notification { from, n }, now, &mut out),
                PeerMsg::Packet(packet) => {
                    // The leader's connection carries the snapshot next, in order; another
                    // server's connection (a learner that thinks we lead) is not held up by it.
                    let from_leader = self.connecting.is_some_and(|(l, _)| l == from);
                    assert!(
                        !(self.loading && from_leader),
                        "sid {}: a packet from {from} before the snapshot stream",
                        self.sid
                    );
                    self.run(PIn::Packet { from, packet }, now, &mut out)
                }
                PeerMsg::Snapshot { zxid, entries } => {
                    if self.loading {
                        self.loading = false;
                        self.log = entries.clone();
                        self.applied_zxid = zxid;
                        out.push(Effect::InstallSnapshot(entries));
                        self.run(PIn::SnapshotLoaded { zxid }, now, &mut out);
                    }
                }
            },
            Input::ConnectionLost { peer, channel: Channel::Election } => {
                self.run(PIn::ElectionPeer { sid: peer, reachable: false }, now, &mut out)
            }
            Input::ConnectionLost { peer, channel: Channel::Quorum } => {
                self.loading = false;
                match self.connecting {
                    // The driver keeps trying until the peer gives up (a `Disconnect`).
                    Some((leader, false)) if leader == peer => self.retry_at = Some(now + CONNECT_RETRY_MS),
                    _ => {
                        if self.connecting.is_some_and(|(l, _)| l == peer) {
                            self.connecting = None;
                        }
                        self.run(PIn::Disconnected { sid: peer }, now, &mut out)
                    }
                }
            }
            Input::Connected { peer, .. } => {
                if self.connecting == Some((peer, false)) {
                    self.connecting = Some((peer, true));
                    self.run(PIn::Connected { sid: peer }, now, &mut out);
                }
            }
            Input::LogDurable { zxid } => {
                if self.fault == Fault::CommitOnLocalDurable && self.serving && self.next_zxid.is_some() {
                    self.apply_to(zxid, &mut out);
                }
                self.run(PIn::Durable { zxid }, now, &mut out)
            }
            Input::ClientWrite { txn } => {
                if self.serving {
                    if self.next_zxid.is_some() {
                        let mut inputs = VecDeque::new();
                        self.propose(txn, &mut inputs);
                        for i in inputs {
                            self.run(i, now, &mut out);
                        }
                    } else {
                        let data = encode_txn(&txn);
                        let f = PIn::Forward {
                            session: txn.session,
                            cxid: txn.cxid,
                            typ: 1,
                            data,
                            authinfo: Vec::new(),
                        };
                        self.run(f, now, &mut out);
                    }
                }
            }
            Input::ClientSync { session, id } => {
                if self.serving {
                    self.syncs.push_back((session, id));
                    let s = PIn::Sync { session, cxid: id as i32, data: Vec::new(), authinfo: Vec::new() };
                    self.run(s, now, &mut out);
                }
            }
        }
        out
    }

    fn tick_ms() -> Ms {
        10
    }

    fn duplicates_ok(channel: Channel) -> bool {
        channel == Channel::Election
    }

    fn proposal_in(msg: &PeerMsg) -> Option<Entry> {
        match msg {
            PeerMsg::Packet(p) if p.typ == packet_type::PROPOSAL => {
                Some(Entry { zxid: p.zxid, txn: decode_txn(p.data.as_deref()?)? })
            }
            _ => None,
        }
    }
}

impl PeerNode {
    /// The peer's state (for reports).
    pub fn state(&self) -> PeerState {
        self.peer.state()
    }
}
