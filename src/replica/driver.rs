//! The thread around `Replica`: receives from shards and the log, steps, sends, rings doorbells.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Links, Outbox, Replica};
use crate::mesh::msg::{ToReplica, ToShard};
use crate::mesh::{ReplicaTx, ShardLinks};

/// Where logged txns go. The real one is `txnlog`'s group-committing writer; it reports
/// durability back as `ToReplica::Durable`. No method may block: on small machines a shard's
/// executor runs the replica.
pub trait LogSink: Send {
    fn append(&mut self, txns: Vec<crate::txnlog::SharedTxn>);
    /// A handle that truncates this log (a learner's TRUNC and SNAP); None in memory.
    fn truncator(&self, _max_txn_bytes: usize) -> Option<crate::txnlog::LogTruncator> {
        None
    }
    /// Start a new log file (after a snapshot).
    fn roll(&mut self) {}
    /// Accept appends again after a full disk.
    fn resume(&mut self) {}
    /// Hands over what a full queue held back; called every round.
    fn retry(&mut self) {}
    fn shutdown(&mut self) {}
}

/// A command held back while the log writer's queue was full, in order.
enum Held {
    Append(Vec<crate::txnlog::SharedTxn>),
    Roll,
    Resume,
}

/// The real log: `txnlog`'s group-committing writer thread.
///
/// Its queue is bounded (`queue_max_batches`). When it is full, commands wait here, in order,
/// and go out on a later round (every durability report is a round): the replica never waits.
/// What waits here is bounded by the shards' `globalOutstandingLimit`, which stops them reading
/// while that many requests are unanswered.
pub struct DurableLog {
    pub handle: Option<crate::txnlog::writer::LogHandle>,
    pub replica_tx: ReplicaTx,
    held: std::collections::VecDeque<Held>,
    /// Times the queue was found full (an episode starts a WARN line, rate-limited).
    pub queue_full: u64,
    last_warn: Option<Instant>,
}

impl DurableLog {
    pub fn new(handle: crate::txnlog::writer::LogHandle, replica_tx: ReplicaTx) -> Self {
        DurableLog {
            handle: Some(handle),
            replica_tx,
            held: Default::default(),
            queue_full: 0,
            last_warn: None,
        }
    }

    fn stopped(&self) {
        let _ = self.replica_tx.send(ToReplica::LogFailed { reason: "log writer stopped".into() });
    }

    fn held_back(&mut self) {
        self.queue_full += 1;
        let now = Instant::now();
        if self.last_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            self.last_warn = Some(now);
            tracing::warn!(
                "transaction log queue is full (the disk is slower than the writes): holding {} command(s) until it drains ({} time(s) so far)",
                self.held.len(),
                self.queue_full
            );
        }
    }
}

impl LogSink for DurableLog {
    fn append(&mut self, txns: Vec<crate::txnlog::SharedTxn>) {
        self.held.push_back(Held::Append(txns));
        self.retry();
    }
    fn truncator(&self, max_txn_bytes: usize) -> Option<crate::txnlog::LogTruncator> {
        self.handle.as_ref().map(|h| h.truncator(max_txn_bytes))
    }
    fn roll(&mut self) {
        // Never waits on the next file's zero-fill; see `txnlog::writer`.
        self.held.push_back(Held::Roll);
        self.retry();
    }
    fn resume(&mut self) {
        self.held.push_back(Held::Resume);
        self.retry();
    }
    fn retry(&mut self) {
        let Some(h) = &self.handle else {
            self.held.clear();
            return;
        };
        while let Some(cmd) = self.held.pop_front() {
            let r = match cmd {
                Held::Append(txns) => match h.append_shared(txns) {
                    Err(crate::txnlog::writer::AppendError::Full(_, t)) => {
                        self.held.push_front(Held::Append(t));
                        self.held_back();
                        return;
                    }
                    r => r,
                },
                // With one producer, room now means the send cannot wait.
                c @ (Held::Roll | Held::Resume) if h.is_full() => {
                    self.held.push_front(c);
                    self.held_back();
                    return;
                }
                Held::Roll => h.roll_soon(),
                Held::Resume => h.resume(),
            };
            if r.is_err() {
                self.held.clear();
                self.stopped();
                return;
            }
        }
    }
    fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// Keeps nothing: every txn is "durable" at once. Only for `forceSync`-less in-memory tests.
pub struct MemoryLog {
    pub replica_tx: ReplicaTx,
}

impl LogSink for MemoryLog {
    fn append(&mut self, txns: Vec<crate::txnlog::SharedTxn>) {
        if let Some(last) = txns.last() {
            let _ = self.replica_tx.send(ToReplica::Durable { zxid: last.hdr.zxid });
        }
    }
}

/// The replica core sends to the shards through their links (see `mesh`).
impl Links for ShardLinks {
    fn send(&self, shard: u16, msg: ToShard) {
        ShardLinks::send(self, shard, msg)
    }
    fn shard_count(&self) -> u16 {
        ShardLinks::len(self) as u16
    }
}

fn now_ms() -> u64 {
    crate::clock::mono_ms() as u64
}

/// The time a round runs at.
pub fn now() -> super::Now {
    super::Now { mono_ms: crate::clock::mono_ms(), wall_ms: crate::clock::wall_ms() }
}

/// The replica with its inbox, its log and its timers: one `pump` is one round (everything
/// queued now → one log append). A plain thread runs it with `run`; on small machines a shard's
/// executor hosts it instead (no thread hand-off between shard and replica, see `server`).
pub struct ReplicaHost {
    replica: Replica<ShardLinks>,
    rx: Receiver<ToReplica>,
    log: Box<dyn LogSink>,
    snapshotter: Option<crate::db::Snapshotter>,
    tick: Duration,
    next_tick: Instant,
    batch: Vec<ToReplica>,
    /// The hosting shard, whose doorbell `pump` does not ring (it drains its inbox right after).
    host_shard: Option<u16>,
    stopped: bool,
    /// Told why, when the node must stop (the log failed); the process then exits non-zero.
    on_fatal: Option<Sender<String>>,
    /// A member of an ensemble: the quorum thread and where the epoch files live.
    quorum: Option<QuorumParts>,
}

/// What a member of an ensemble adds to the replica core's driver.
pub struct QuorumParts {
    pub io: super::quorum_io::QuorumIo,
    /// `dataDir`, where `acceptedEpoch` and `currentEpoch` live.
    pub data_dir: std::path::PathBuf,
}

impl ReplicaHost {
    pub fn new(
        replica: Replica<ShardLinks>,
        rx: Receiver<ToReplica>,
        log: Box<dyn LogSink>,
        snapshotter: Option<crate::db::Snapshotter>,
        tick: Duration,
    ) -> Self {
        ReplicaHost {
            replica,
            rx,
            log,
            snapshotter,
            tick,
            next_tick: Instant::now() + tick,
            batch: Vec::with_capacity(1024),
            host_shard: None,
            stopped: false,
            on_fatal: None,
            quorum: None,
        }
    }

    /// Makes this the driver of an ensemble member: the peer's network actions go to `io`.
    pub fn set_quorum(&mut self, parts: QuorumParts) {
        self.quorum = Some(parts);
    }

    /// A handle that truncates the log, for the quorum thread (None in memory).
    pub fn log_truncator(&self, max_txn_bytes: usize) -> Option<crate::txnlog::LogTruncator> {
        self.log.truncator(max_txn_bytes)
    }

    /// Performs the peer's first actions (its first election notifications), once the quorum
    /// thread is set.
    pub fn start_peer(&mut self, acts: Vec<crate::quorum::peer::Action>, now: super::Now) {
        let mut out = Outbox::default();
        for a in acts {
            self.replica.perform(a, now, &mut out);
        }
        if let Err(why) = self.perform_quorum(&mut out) {
            tracing::error!("{why}");
        }
    }

    pub fn set_fatal_notify(&mut self, tx: Sender<String>) {
        self.on_fatal = Some(tx);
    }

    pub fn set_host_shard(&mut self, shard: u16) {
        self.host_shard = Some(shard);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// One round over everything queued now (never blocks, except on a full log queue, which is
    /// the back-pressure). `None` once the replica has shut down, else whether it did anything.
    pub fn pump(&mut self) -> Option<bool> {
        if self.stopped {
            return None;
        }
        // Take everything that is already queued: one log append (one group) per round.
        while self.batch.len() < 4096 {
            match self.rx.try_recv() {
                Ok(m) => self.batch.push(m),
                Err(_) => break,
            }
        }
        let tick_due = Instant::now() >= self.next_tick || now_ms() >= self.replica.next_wake_ms();
        if self.batch.is_empty() && !tick_due {
            return Some(false);
        }
        self.log.retry();
        let retried = self.replica.links.retry();
        let now = now();
        let mut out = Outbox::default();
        let mut stop = false;
        for m in self.batch.drain(..) {
            if matches!(m, ToReplica::Shutdown) {
                stop = true;
            }
            self.replica.step(m, now, &mut out);
        }
        if tick_due {
            self.replica.tick(now, &mut out);
            self.next_tick = Instant::now() + self.tick;
        }
        // The peer's actions first: an epoch is durable before the appends and packets after
        // it are handed on.
        if !out.quorum.is_empty() {
            if let Err(why) = self.perform_quorum(&mut out) {
                out.fatal.get_or_insert(why);
            }
        }
        if !out.to_log.is_empty() {
            self.log.append(std::mem::take(&mut out.to_log));
        }
        if out.resume_log {
            self.log.resume();
        }
        if let Some((zxid, sessions)) = out.snapshot.take() {
            if let Some(s) = &self.snapshotter {
                // Roll first, as ZooKeeper does (the new log starts at or after this point; the
                // fuzzy snapshot is replayed from zxid + 1 on recovery, from whichever file
                // holds it).
                self.log.roll();
                s.start(self.replica.tree.clone(), zxid, sessions);
            }
        }
        let own = self.host_shard.map_or(0, |h| 1u64 << (h % 64));
        self.replica.links.ring((out.touched_shards | retried) & !own);
        if let Some(why) = out.fatal.take() {
            tracing::error!("{why}");
            if let Some(tx) = &self.on_fatal {
                let _ = tx.try_send(why);
            }
            self.finish();
            return None;
        }
        if stop {
            self.finish();
            return None;
        }
        Some(true)
    }

    /// Time until the next tick is due (the replica's own, or the peer's next timer).
    pub fn until_tick(&self) -> Duration {
        let own = self.next_tick.saturating_duration_since(Instant::now());
        let wake = self.replica.next_wake_ms();
        if wake == u64::MAX {
            return own;
        }
        own.min(Duration::from_millis(wake.saturating_sub(now_ms())))
    }

    /// Performs what the peer asked of the driver: epoch files here (written and synced before
    /// anything after them goes out: the protocol promises them durable; an election writes at
    /// most two small files, so the replica core does it rather than hand it off), log lines,
    /// the rest on the quorum thread.
    fn perform_quorum(&mut self, out: &mut Outbox) -> Result<(), String> {
        use super::quorum_io::QuorumCmd;
        use crate::quorum::epochs;
        use crate::quorum::peer::Action;
        for cmd in out.quorum.drain(..) {
            let Some(q) = &self.quorum else {
                // Standalone: only state changes come out, and nothing needs them.
                continue;
            };
            match cmd {
                QuorumCmd::Peer(Action::PersistAcceptedEpoch(e)) => {
                    epochs::write(&q.data_dir, epochs::ACCEPTED_EPOCH, e)
                        .map_err(|err| format!("cannot write {}: {err}", epochs::ACCEPTED_EPOCH))?
                }
                QuorumCmd::Peer(Action::PersistCurrentEpoch(e)) => {
                    epochs::write(&q.data_dir, epochs::CURRENT_EPOCH, e)
                        .map_err(|err| format!("cannot write {}: {err}", epochs::CURRENT_EPOCH))?
                }
                QuorumCmd::Peer(Action::Decided { leader, state, duration_ms }) => {
                    tracing::info!(
                        "{} - LEADER ELECTION TOOK - {duration_ms} MS (leader: server {leader})",
                        state.name().to_uppercase()
                    )
                }
                QuorumCmd::Peer(Action::ConfigMismatch { message }) => tracing::warn!("{message}"),
                QuorumCmd::Peer(Action::NotificationTimeout { next_timeout_ms }) => {
                    tracing::info!("Notification time out: {next_timeout_ms} ms")
                }
                QuorumCmd::Peer(Action::State { state, leader }) => {
                    tracing::info!(
                        "Peer state changed: {}{}",
                        state.name(),
                        leader.map_or(String::new(), |l| format!(" (leader: server {l})"))
                    );
                    let leading = state == crate::quorum::PeerState::Leading;
                    if !q.io.send(QuorumCmd::Leading(leading)) {
                        return Err("the quorum thread's queue is full".into());
                    }
                }
                cmd => {
                    if !q.io.send(cmd) {
                        return Err("the quorum thread's queue is full".into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Blocks for the next message or tick (the dedicated-thread driver). False when every
    /// sender is gone.
    fn wait(&mut self) -> bool {
        // own thread: the dedicated driver
        match self.rx.recv_timeout(self.until_tick()) {
            Ok(m) => {
                self.batch.push(m);
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    fn finish(&mut self) {
        self.stopped = true;
        self.log.shutdown();
        // The hosting shard learns of the stop from `pump` returning None.
        self.replica.links.retry();
        self.replica.links.stop_all(self.host_shard);
    }
}

/// Runs on a dedicated thread until `Shutdown`.
pub fn run(mut host: ReplicaHost) {
    loop {
        if !host.wait() {
            host.finish();
            return;
        }
        if host.pump().is_none() {
            return;
        }
    }
}
