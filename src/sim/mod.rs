//! The deterministic simulator of the quorum core: 3, 5 or 7 nodes of a pure quorum state machine
//! in one process, driven by one seed through network, disk, crash and clock faults, with the
//! safety invariants checked after every step and a liveness phase at the end.
//!
//! # Fault model
//!
//! Everything random comes from one `StdRng` seeded with the run's seed: no wall clock, no threads,
//! no other randomness, so a seed replays exactly (`ZKD_SIM_SEED=n`).
//!
//! **Network (TCP, as the real drivers use it).** Nodes talk over connections, one per pair of
//! nodes and [`Channel`] (election, quorum). A connection is FIFO in each direction and never
//! duplicates or corrupts. Messages are delayed (usually a few ms, sometimes hundreds). Reordering
//! happens only *across* connections: a vote and a proposal may overtake each other, two
//! proposals on one connection never do. Loss is what TCP shows: a connection breaks (a reset, a
//! timeout, a peer that closes it), everything queued on it in both directions is dropped, and each
//! end is told `ConnectionLost` after its own detection delay; a later send opens a new connection
//! (after both ends were told of the old one's loss, so a notice never refers to the wrong
//! connection). Duplication is what a driver that resends after a reconnect shows: it is modelled
//! only on channels whose state machine says they tolerate it ([`SimNode::duplicates_ok`]), where a
//! message may be delivered twice. Partitions block directed links: symmetric ones cut both
//! directions, one-way ones cut one. Data on a blocked direction is held (TCP retransmits); a
//! connection with a blocked direction breaks when TCP gives up (a random timeout), unless healed
//! first; a new connection cannot be opened across a blocked link (the connect fails, the sender is
//! told). Healing unblocks links; held data then flows in order.
//!
//! **Disk.** Each node has a log (a durable prefix and an unsynced tail) and two epoch files
//! (accepted and current epoch). An append goes to the tail; the log syncs the whole tail some
//! time later (group commit) and the node is told `LogDurable` only then. A crash keeps a random
//! prefix of the unsynced tail (none of it, some of it, all of it: a torn write is a shorter
//! prefix, as a checksummed log reads it). Truncation, snapshot install and epoch writes are
//! synchronous and atomic (ZooKeeper fsyncs them before going on). Disks are never corrupted or
//! lost: a node that comes back has what it durably wrote.
//!
//! **Processes.** A node may crash at any moment between steps (its memory, connections, client
//! sessions and pending syncs are gone) and restart later from its disk. A node may be stopped
//! (SIGSTOP): it handles nothing while stopped; messages to it wait in TCP.
//!
//! **Clocks.** Each node's monotonic clock runs at its own rate (±10%) and is read only at the
//! node's steps. Stopping a node either lets its clock run on (SIGSTOP: the clock jumps forward
//! when the node resumes) or stops it too (a suspended VM). Clocks never go backwards.
//!
//! **Clients.** Clients connect to a serving node, send writes (and syncs) in order with rising
//! cxids, a few outstanding, and are answered when their node applies the write. A client whose
//! node stops serving, crashes or closes it opens a new session elsewhere (ZooKeeper's session
//! move with its owner check belongs to the replica, not the quorum core, and is not modelled).
//!
//! **Phases.** Chaos first (faults at random), then liveness: faults stop, every link heals, every
//! node runs, and within a bounded simulated time a leader must serve and a client write must be
//! applied on every node (safety then liveness, as openraft's turmoil tests split them).
//!
//! # Invariants (one function each in [`invariants`])
//! At most one serving leader per epoch; a committed txn is never lost or reordered; all serving
//! nodes hold the same prefix; a zxid is never proposed with two contents; a session's ops apply
//! in the order its client sent them; a learner never applies what no leader committed; epochs
//! never go backwards on disk.
//!
//! The module is compiled only for tests and under the `sim` feature: the server never runs it.

pub mod double;
pub mod invariants;
pub mod net;
pub mod peer;
pub mod run;
pub mod world;

use std::fmt::Debug;

use crate::quorum::{Members, PeerState, Sid};

/// Simulated time in milliseconds (global, or a node's own clock).
pub type Ms = u64;

/// A client's write as the simulator sees it. `value` makes two writes of one (session, cxid)
/// distinguishable, so a zxid proposed twice with different content is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Txn {
    pub session: i64,
    pub cxid: i32,
    pub value: u32,
}

/// One logged proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub zxid: i64,
    pub txn: Txn,
}

/// The connection a message travels on. Each pair of nodes has one connection per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Election = 0,
    Quorum = 1,
}

/// What a node finds on its disk when it starts.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    pub sid: Sid,
    pub members: &'a Members,
    /// The surviving log (its durable prefix and whatever part of the tail the crash kept).
    pub log: &'a [Entry],
    pub accepted_epoch: u32,
    pub current_epoch: u32,
}

/// Inputs the world feeds a node.
#[derive(Debug, Clone)]
pub enum Input<M> {
    /// The node's periodic timer fired.
    Tick,
    Message {
        from: Sid,
        channel: Channel,
        msg: M,
    },
    /// The connection to `peer` on `channel` broke, or a connect to it failed; what was queued
    /// on it is gone.
    ConnectionLost {
        peer: Sid,
        channel: Channel,
    },
    /// A connection this node asked for (`Effect::Connect`) is up.
    Connected {
        peer: Sid,
        channel: Channel,
    },
    /// Every entry of the log up to and including `zxid` is durable.
    LogDurable {
        zxid: i64,
    },
    /// A client of this node sends a write.
    ClientWrite {
        txn: Txn,
    },
    /// A client of this node sends a sync (its next read must see what the leader committed).
    ClientSync {
        session: i64,
        id: u64,
    },
}

/// What a node asks of the world: the replica's part (log, state, epoch files) and the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<M> {
    Send {
        to: Sid,
        channel: Channel,
        msg: M,
    },
    /// Open a connection to `peer` (a new one: an open one is closed first). Answered with
    /// `Connected`, or `ConnectionLost` if it fails.
    Connect {
        peer: Sid,
        channel: Channel,
    },
    /// Close the connection to `peer` (a reset: what is queued on it either way is dropped).
    Disconnect {
        peer: Sid,
        channel: Channel,
    },
    /// Append to the log's unsynced tail; the world answers `LogDurable` later.
    LogAppend(Entry),
    /// Drop every logged entry after `zxid` (durably) and rebuild the state from the log.
    LogTruncate {
        zxid: i64,
    },
    /// Replace log and state with a snapshot (durably): SNAP sync.
    InstallSnapshot(Vec<Entry>),
    /// Apply a committed txn to the state.
    Apply(Entry),
    PersistAcceptedEpoch(u32),
    PersistCurrentEpoch(u32),
    /// The node's role changed. `serving`: a leader that a quorum has synced with, or a learner
    /// that got UPTODATE; only a serving node takes clients.
    Role {
        state: PeerState,
        epoch: u32,
        serving: bool,
    },
    /// A client's sync is answered.
    SyncDone {
        session: i64,
        id: u64,
    },
}

/// A booted node and its first effects, or why it cannot start.
pub type Booted<N> = Result<(N, Vec<Effect<<N as SimNode>::Msg>>), String>;

/// A quorum state machine the simulator can run. The real `quorum::peer::Peer` and the test
/// double in [`double`] implement it.
pub trait SimNode: Sized {
    type Msg: Clone + Debug;

    /// Starts a node from what its disk holds. `now_ms` is the node's own clock. An error is a
    /// node that cannot restart from what it wrote: a failure of the run.
    fn boot(boot: Boot<'_>, now_ms: Ms) -> Booted<Self>;

    fn step(&mut self, input: Input<Self::Msg>, now_ms: Ms) -> Vec<Effect<Self::Msg>>;

    /// How often the node wants `Tick`, on its own clock.
    fn tick_ms() -> Ms;

    /// True when `channel` may deliver a message twice (a driver that resends after reconnect).
    fn duplicates_ok(channel: Channel) -> bool;

    /// The proposal a message carries, if any (checked against every other proposal of its zxid).
    fn proposal_in(msg: &Self::Msg) -> Option<Entry>;
}

#[cfg(test)]
mod tests;
