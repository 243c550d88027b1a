//! ZAB (ZooKeeper Atomic Broadcast) as pure state machines, on Apache ZooKeeper 3.8's packet
//! semantics, so zkd and Java servers can form one ensemble.
//!
//! The phases, as ZooKeeper's `Leader`, `LearnerHandler` and `Learner` run them:
//!
//! 1. Discovery. Each learner connects to the elected leader and sends FOLLOWERINFO (or
//!    OBSERVERINFO) with its accepted epoch. The leader proposes `newEpoch` = 1 + the highest
//!    accepted epoch among itself and the learners that connected while it waited, once a
//!    quorum of voters (itself included) is connected, within initLimit ticks; it records the
//!    epoch (`acceptedEpoch` file) and answers LEADERINFO. A learner accepts a newer epoch
//!    (records it) and answers ACKEPOCH with its last zxid and current epoch (−1 if it had
//!    already accepted this epoch). A quorum of ACKEPOCHs, again within initLimit, ends
//!    discovery; a learner whose history is newer than the leader's is refused.
//! 2. Synchronisation. For each learner the leader decides DIFF, TRUNC or SNAP (`sync`), sends
//!    that, then committed proposals each followed by COMMIT, then its outstanding proposals,
//!    then NEWLEADER. A learner logs what it received, records the new epoch (`currentEpoch`
//!    file) and ACKs NEWLEADER. Once a quorum of voters ACKed NEWLEADER (within initLimit), the
//!    leader starts serving and sends UPTODATE; the learner ACKs it and starts serving.
//! 3. Broadcast. The leader sends PROPOSAL to followers; followers ACK once it is durable; a
//!    quorum of ACKs (the leader's own durability included) commits it: COMMIT to followers,
//!    INFORM (with the data) to observers. The leader PINGs every learner each half tick; a
//!    learner answers with the sessions its clients touched. A leader that has not heard from a
//!    quorum within syncLimit ticks steps down; a learner that has heard nothing from its leader
//!    for syncLimit ticks abandons it. Learners forward writes (REQUEST), session revalidations
//!    (REVALIDATE) and syncs (a REQUEST of type sync, answered with SYNC).
//!
//! What ZAB owns and what the replica owns: the replica (the data tree, prep, sessions,
//! clients) preps requests and numbers them; ZAB owns epochs, proposals, acks, commits, learner
//! synchronisation, pings, and the in-memory window of committed proposals used to sync
//! learners. `Proposal::data` is the PROPOSAL packet's data (the serialized txn), opaque here.
//!
//! The contract, in terms of [`Input`] and [`Action`] (see each variant):
//! - Every role logs through `Action::Append`: the leader's own proposals too (an
//!   `Input::Propose(p)` yields `Append(p)`), so the replica logs what ZAB tells it to, on every
//!   role, and reports `Input::Durable { zxid }` as the log makes it durable.
//! - `Action::Commit { zxid }`: apply everything appended up to `zxid`, in order. Standalone (a
//!   leader with no other voter), `Durable(z)` yields `Commit(z)` in the same step.
//! - Actions are performed in the order given. `PersistAcceptedEpoch` / `PersistCurrentEpoch`
//!   must be durable before any action after them is performed (a packet sent after them
//!   promises the epoch is on disk).
//! - Every input from a peer is validated; a bad one costs that peer's connection
//!   (`Action::Disconnect`, or on a learner the leader's connection and the role), never a panic.
//!   Inputs from the local replica that break this contract are bugs and are asserted.

pub(crate) mod leader;
pub(crate) mod learner;
pub mod sync;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::proto::Id;
use crate::quorum::{counter_of, Notification, PeerState, QuorumPacket, Sid};

/// A proposal: a zxid and the PROPOSAL packet's data (the serialized txn: header, record and
/// digest, as ZooKeeper's `SerializeUtils.serializeRequest` writes it), opaque to ZAB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub zxid: i64,
    pub data: Arc<[u8]>,
}

/// What this server is while it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The only voter: no epoch change, no peers (ZooKeeper's standalone server).
    Standalone,
    Leader,
    Follower,
    Observer,
}

impl Role {
    /// The state election notifications and `mntr` report for this role.
    pub fn peer_state(self) -> PeerState {
        match self {
            Role::Standalone | Role::Leader => PeerState::Leading,
            Role::Follower => PeerState::Following,
            Role::Observer => PeerState::Observing,
        }
    }
}

/// The phase of ZAB a role is in, for status (ZooKeeper's `QuorumPeer.ZabState` without
/// ELECTION, which is the peer's LOOKING).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZabPhase {
    Discovery,
    Synchronization,
    Broadcast,
}

/// How a learner is being synchronised, for status (ZooKeeper's `QuorumPeer.SyncMode` without
/// NONE): from the DIFF, TRUNC or SNAP it received until NEWLEADER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncMode {
    Diff,
    Snap,
    Trunc,
}

/// ZooKeeper's `zookeeper.commitLogCount` default: committed proposals kept in memory to sync
/// learners with DIFF.
pub const COMMIT_LOG_COUNT_DEFAULT: usize = 500;

/// ZooKeeper's `OpCode.sync`: a forwarded REQUEST of this type is a sync, handled by ZAB.
pub const OP_SYNC: i32 = 9;

/// The most voters a proposal's ack set can hold (a bit per voter).
pub const VOTERS_MAX: usize = 64;

/// Timing and sizing, from zoo.cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZabConfig {
    pub my_id: Sid,
    pub tick_ms: i64,
    /// `initLimit`: ticks for discovery and synchronisation.
    pub init_limit: i64,
    /// `syncLimit`: ticks a peer may stay silent in broadcast.
    pub sync_limit: i64,
    /// `zookeeper.commitLogCount`.
    pub commit_log_count: usize,
    /// The counter a leader's proposals follow in a new epoch: 0, as in ZooKeeper (the first
    /// proposal is counter 1). Only tests of the counter's end (ZOOKEEPER-1277) set it, with
    /// zoo.cfg's `zkd.testing.epochCounterStart`, so that a leader exhausts its epoch within a
    /// few writes instead of 2^32; learners follow (proposals only have to grow).
    pub epoch_counter_start: u32,
}

impl ZabConfig {
    pub fn init_ms(&self) -> i64 {
        self.tick_ms * self.init_limit
    }
    pub fn sync_ms(&self) -> i64 {
        self.tick_ms * self.sync_limit
    }
}

/// True when a leader must not hand out this zxid: its counter is all ones, and ZooKeeper
/// forces a re-election (a new epoch) instead of letting the counter roll over into the epoch
/// half (ZOOKEEPER-1277). The replica checks its next zxid with this; a `Propose` of such a zxid
/// makes the leader step down.
pub fn counter_exhausted(zxid: i64) -> bool {
    counter_of(zxid) == u32::MAX
}

/// This server's history as sync sees it: the tail of committed proposals (ZooKeeper's
/// `committedLog`, bounded by commitLogCount) and the last zxid it holds. It outlives roles: a
/// role takes it when it starts and gives it back, with what it logged, when it ends.
#[derive(Debug, Clone)]
pub struct History {
    window: VecDeque<Proposal>,
    cap: usize,
    last_zxid: i64,
    /// The highest durability report of the local log (it can run ahead of `last_zxid` while a
    /// role holds proposals outside the history, or after a TRUNC; `durable_zxid` cuts it).
    durable_report: i64,
}

impl History {
    /// `tail`: the newest proposals of the local log, oldest first (more than `cap` is fine: the
    /// oldest are dropped). `last_zxid`: the last zxid the local state holds (the log's last, or
    /// the snapshot's if nothing was logged after it).
    pub fn new(cap: usize, last_zxid: i64, tail: impl IntoIterator<Item = Proposal>) -> History {
        assert!(cap > 0, "commitLogCount must be positive");
        let mut h = History {
            window: VecDeque::with_capacity(cap.min(4096)),
            cap,
            last_zxid: i64::MIN,
            durable_report: i64::MIN,
        };
        for p in tail {
            h.push(p);
        }
        assert!(last_zxid >= h.last_zxid, "the log's tail goes beyond the last zxid 0x{last_zxid:x}");
        h.last_zxid = last_zxid;
        // What recovery read from disk is durable.
        h.durable_report = last_zxid;
        h
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// How far this history is on disk. A role may hold txns appended to the log but not yet
    /// durable; when it ends they join the history before the log has them. An election may then
    /// pick this server on them, and its epoch must not be recorded before they are durable
    /// (otherwise a crash leaves a server claiming the epoch with a shorter log).
    pub fn durable_zxid(&self) -> i64 {
        self.durable_report.min(self.last_zxid)
    }

    /// The log reported durable through `zxid` (in log order: everything appended before it is
    /// durable too).
    pub fn note_durable(&mut self, zxid: i64) {
        self.durable_report = self.durable_report.max(zxid);
    }

    pub fn window(&self) -> &VecDeque<Proposal> {
        &self.window
    }

    /// Oldest and newest zxid in the window.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        Some((self.window.front()?.zxid, self.window.back()?.zxid))
    }

    /// Adds a proposal that is now part of this server's history (committed, or logged when a
    /// role ends). Zxids only grow: anything else would be two txns under one history position.
    pub fn push(&mut self, p: Proposal) {
        assert!(p.zxid > self.last_zxid, "history must grow: 0x{:x} after 0x{:x}", p.zxid, self.last_zxid);
        if self.window.len() == self.cap {
            self.window.pop_front();
        }
        self.last_zxid = p.zxid;
        self.window.push_back(p);
    }

    /// TRUNC: everything after `zxid` is gone.
    pub fn truncate(&mut self, zxid: i64) {
        while self.window.back().is_some_and(|p| p.zxid > zxid) {
            self.window.pop_back();
        }
        self.last_zxid = zxid;
        self.durable_report = self.durable_report.min(zxid);
    }

    /// SNAP: the state is the leader's snapshot at `zxid`, durable (the driver makes it so before
    /// `SnapshotLoaded`); nothing before it is known by proposal.
    pub fn reset(&mut self, zxid: i64) {
        self.window.clear();
        self.last_zxid = zxid;
        self.durable_report = zxid;
    }

    /// The leader's own marker at the start of its epoch (`makeZxid(epoch, 0)`): no txn, but the
    /// zxid its state is at once it serves (ZooKeeper's `setlastProcessedZxid`).
    pub(crate) fn mark(&mut self, zxid: i64) {
        assert!(zxid >= self.last_zxid, "epoch marker 0x{zxid:x} behind 0x{:x}", self.last_zxid);
        // The marker is no txn: it is as durable as what precedes it.
        if self.durable_zxid() == self.last_zxid {
            self.durable_report = self.durable_report.max(zxid);
        }
        self.last_zxid = zxid;
    }
}

/// Everything that can happen to a peer. The single input surface of [`crate::quorum::peer::Peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed: timers (pings, deadlines, election timeouts) run. Call it no later than
    /// `Peer::next_wake_ms`.
    Tick,

    // ---- the election port ----
    /// An election notification from a peer.
    Notification { from: Sid, n: Notification },
    /// The election connection to `sid` came up or went down (status only).
    ElectionPeer { sid: Sid, reachable: bool },

    // ---- the quorum port (leader ↔ learners) ----
    /// A learner's connection to its leader is up (answer to `Action::Connect`).
    Connected { sid: Sid },
    /// A packet from a peer. On the leader, the driver learns a connection's sid from its first
    /// packet (FOLLOWERINFO/OBSERVERINFO, see `quorum::wire::LearnerInfo`); it keeps at most one
    /// connection per sid and reports `Disconnected` for the old one before any packet of a new.
    Packet { from: Sid, packet: QuorumPacket },
    /// A quorum connection closed, failed or could not be made.
    Disconnected { sid: Sid },
    /// The driver finished `Action::LoadSnapshot`: the stream was read, the tree replaced and
    /// the snapshot is durable.
    SnapshotLoaded { zxid: i64 },

    // ---- from the local replica ----
    /// Leader: a prepped txn to propose, carrying the next zxid (see `Action::Serving`).
    Propose(Proposal),
    /// The local log is durable up to this zxid (everything appended before it too).
    Durable { zxid: i64 },
    /// Learner: a client write to forward to the leader (REQUEST).
    Forward { session: i64, cxid: i32, typ: i32, data: Vec<u8>, authinfo: Vec<Id> },
    /// A client's sync. Leader: answered with `SyncDone` once linearizable; learner: forwarded
    /// as a REQUEST of type sync, `SyncDone` when the leader's SYNC arrives.
    Sync { session: i64, cxid: i32, data: Vec<u8>, authinfo: Vec<Id> },
    /// Learner: sessions its clients touched (id, timeout ms), reported in the next PING reply.
    Touch { sessions: Vec<(i64, i32)> },
    /// Learner: a client reconnects with a session this server does not own; ask the leader.
    Revalidate { session: i64, timeout: i32 },
    /// Leader: the answer to an `Action::Revalidate` (ignored if this server no longer leads).
    RevalidateAnswer { to: Sid, session: i64, valid: bool },
}

/// What a peer asks its driver (and, through it, the replica) to do. Performed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    // ---- the election port ----
    SendNotification {
        to: Sid,
        n: Notification,
    },
    /// The election decided (log "LEADING - LEADER ELECTION TOOK - {duration_ms} MS"); the
    /// role's own actions follow.
    Decided {
        leader: Sid,
        state: PeerState,
        duration_ms: u64,
    },
    /// A peer runs with another server list (log at WARN).
    ConfigMismatch {
        message: String,
    },
    /// No notification came within the timeout; every voter was notified again (log at INFO
    /// "Notification time out: {next_timeout_ms} ms").
    NotificationTimeout {
        next_timeout_ms: u64,
    },

    // ---- the quorum port ----
    /// Learner: connect to the leader's quorum port; answer with `Connected` or `Disconnected`.
    /// Keep trying until one of them or a `Disconnect { sid }`.
    Connect {
        leader: Sid,
    },
    /// Send a packet on the quorum connection to `to`.
    Send {
        to: Sid,
        packet: QuorumPacket,
    },
    /// Leader: write the snapshot stream (the tree as of `zxid`, then the "BenWasHere"
    /// signature) into `to`'s connection exactly here in its packet order (right after the
    /// SNAP packet).
    SendSnapshot {
        to: Sid,
        zxid: i64,
    },
    /// Close the quorum connection to `sid` (or stop connecting to it).
    Disconnect {
        sid: Sid,
        reason: String,
    },

    // ---- durable state ----
    /// Write `acceptedEpoch`; durable before any later action is performed.
    PersistAcceptedEpoch(u32),
    /// Write `currentEpoch`; durable before any later action is performed.
    PersistCurrentEpoch(u32),

    // ---- the replica ----
    /// Log this proposal (every role; the leader's own too). Report `Durable`.
    Append(Proposal),
    /// Apply every appended txn up to `zxid`, in order, answering clients.
    Commit {
        zxid: i64,
    },
    /// The role ended: apply every appended txn up to `zxid` without answering anyone (all
    /// clients were failed by `StopServing`): they are in the log and part of this server's
    /// history, as ZooKeeper's `fastForwardDataBase` makes them.
    FastForward {
        zxid: i64,
    },
    /// Learner (SNAP): read the snapshot stream that follows on the leader's connection, make it
    /// durable, replace the tree with it (dropping logged txns after `zxid`), then feed
    /// `SnapshotLoaded { zxid }`.
    LoadSnapshot {
        zxid: i64,
    },
    /// Learner (TRUNC): truncate the local log after `zxid` and reload the tree from disk. A
    /// failed truncation is fatal (ZooKeeper exits).
    Truncate {
        zxid: i64,
    },
    /// Leader: a write forwarded by learner `from`: prep it and `Propose`.
    Request {
        from: Sid,
        session: i64,
        cxid: i32,
        typ: i32,
        data: Vec<u8>,
        authinfo: Vec<Id>,
    },
    /// Leader: sessions a learner's clients touched (id, timeout ms).
    Touch {
        sessions: Vec<(i64, i32)>,
    },
    /// Leader: learner `from` asks whether `session` is valid; answer with `RevalidateAnswer`.
    Revalidate {
        from: Sid,
        session: i64,
        timeout: i32,
    },
    /// Learner: the leader's answer to `Input::Revalidate`.
    Revalidated {
        session: i64,
        valid: bool,
    },
    /// Answers the oldest pending `Input::Sync` (FIFO).
    SyncDone,
    /// Clients may be served. `next_zxid`: on the leader (and standalone), the zxid the next
    /// `Propose` carries (then +1 each); None on learners.
    Serving {
        role: Role,
        epoch: u32,
        next_zxid: Option<i64>,
    },
    /// Clients may no longer be served (fail every pending request, close client connections):
    /// the role ended, back to LOOKING. `reason` is for the one log line.
    StopServing {
        reason: String,
    },
    /// The peer state changed (for logs, `mntr` and the election port).
    State {
        state: PeerState,
        leader: Option<Sid>,
    },
}

/// A peer's packet that cannot be accepted: the connection to that peer is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("unexpected {typ} in {phase}")]
    Unexpected { typ: &'static str, phase: &'static str },
    #[error(transparent)]
    Wire(#[from] crate::quorum::wire::WireError),
    #[error("zxid 0x{zxid:x} goes backwards (after 0x{after:x})")]
    Backwards { zxid: i64, after: i64 },
    #[error("ACK for unknown zxid 0x{zxid:x} (last proposed 0x{last:x})")]
    UnknownAck { zxid: i64, last: i64 },
    #[error("COMMIT of 0x{zxid:x} but the next uncommitted proposal is {next}")]
    CommitOrder { zxid: i64, next: String },
    #[error("sid {sid} is not a member of the ensemble")]
    NotMember { sid: Sid },
    #[error("{0}")]
    Refused(String),
}

impl PacketError {
    pub(crate) fn unexpected(typ: i32, phase: &'static str) -> PacketError {
        PacketError::Unexpected { typ: crate::quorum::packet_type::name(typ), phase }
    }
}

/// What a role leaves behind when it ends.
#[derive(Debug)]
pub(crate) struct Ended {
    pub history: History,
    /// The replica must apply what it logged up to here (None: nothing beyond the commits).
    pub fast_forward: Option<i64>,
    pub accepted_epoch: u32,
    pub current_epoch: u32,
}

/// How a role's step ended: go on, or the role is over (back to LOOKING) for this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Abandon(String),
}

#[cfg(test)]
mod tests;
