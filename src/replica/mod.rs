//! The replica core is the one core that runs prep → log → apply (and will run the quorum), hosted
//! by a shard's executor on small machines (its own thread from 4 cores up; see `driver`).
//!
//! One instance per server; the only writer of the data tree. Requests arrive from shards in
//! per-connection order; each becomes a txn with the next zxid (epoch in the high half, so ZAB can
//! take over numbering later), goes to the log, and is applied to the tree and answered only after
//! the log reports it durable. Prep validates against the tree *plus* the effects of txns that are
//! logged but not yet applied (`request::Prep` keeps that overlay), so writes pipeline.
//!
//! `Replica::step` is a state machine: messages and time in; sends to shards and log appends out
//! (through `Links` and `Outbox`). The driver around it (`driver::ReplicaHost`) only moves messages.

pub mod driver;
mod ensemble;
pub mod quorum_io;
pub mod zxids;

use crate::tree::digest::{self, DIGEST_VERSION};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::mesh::msg::{ConnRef, ToReplica, ToShard};
use crate::proto::frame::{frame_record, framed_raw};
use crate::proto::jute::{Record, Writer};
use crate::proto::ops::Request;
use crate::proto::{ConnectResponse, EventType, LoggedTxn, OpCode, ReplyHeader, TxnBody, TxnHeader};
use crate::request::{self, Prep};
use crate::session::{session_password, SessionTracker, SessionsDump};
use crate::tree::{DataTree, WatchSink, WatcherId};

/// Where the replica's messages to shards go. Sends never block.
pub trait Links {
    fn send(&self, shard: u16, msg: ToShard);
    /// How many shards there are (for what goes to every shard).
    fn shard_count(&self) -> u16;
}

/// The time a step runs at. Timeouts (session expiry, retries, sweeps) use the monotonic clock,
/// so a wall-clock step expires no session; wall time only goes where the protocol carries it
/// (txn time, and from it Stat ctime/mtime and TTLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds of a monotonic clock (any origin; only differences matter).
    pub mono_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: i64,
}

/// Static settings the replica needs.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub server_id: u8,
    pub tick_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub container_check_interval_ms: i64,
    pub extended_types_enabled: bool,
    pub super_digest: Option<String>,
    pub skip_acl: bool,
    pub enforce_quota: bool,
    /// `snapCount`: a snapshot after about this many txns (randomised, see `next_snapshot_at`).
    pub snap_count: u64,
    /// `snapSizeLimitInKb` in bytes: a snapshot once this much was logged since the last one.
    pub snap_size_limit_bytes: u64,
}

/// What the replica asks its driver to do after a step.
#[derive(Default)]
pub struct Outbox {
    pub to_log: Vec<crate::txnlog::SharedTxn>,
    /// Shards that were sent something (their doorbells should ring).
    pub touched_shards: u64,
    /// Roll the log and snapshot the tree as of this zxid with these sessions.
    pub snapshot: Option<(i64, Vec<(i64, i32)>)>,
    /// Ask the log to accept appends again after a full disk.
    pub resume_log: bool,
    /// The node must stop (the log failed): nothing more is answered.
    pub fatal: Option<String>,
    /// What the quorum plane asks of the driver, in order: election and quorum packets, epoch
    /// files (durable before anything after them is done), snapshot streams, log truncation,
    /// and what to log. Empty for a standalone server.
    pub quorum: Vec<quorum_io::QuorumCmd>,
}

/// What answering a client write needs to know of its request (the request's path, data and
/// ACL move into the txn rather than being copied).
enum ReplyTo {
    Plain,
    /// A multi answers with per-op results.
    Multi,
    /// A sync answers with its path.
    Sync(String),
    /// closeSession: the connection closes after the answer.
    Close,
}

impl ReplyTo {
    fn of(req: &Request) -> Self {
        match req {
            Request::Multi(_) => ReplyTo::Multi,
            Request::Sync(s) => ReplyTo::Sync(s.path.clone()),
            Request::CloseSession => ReplyTo::Close,
            _ => ReplyTo::Plain,
        }
    }
}

/// A request of this node's clients, and what it needs before it is answered.
enum Waiter {
    /// A client request: answered with the result of its txn (a sync: with its path).
    Client { from: ConnRef, xid: i32, opcode: i32, reply: ReplyTo },
    /// A new session's handshake: answered when its createSession txn is applied.
    Connect { from: ConnRef, session: i64, timeout_ms: i32 },
    /// A read ordered behind its session's earlier writes: runs when it reaches the front.
    Read { from: ConnRef, session: i64, xid: i32, req: Box<Request>, auth: Arc<Vec<crate::proto::Id>> },
    /// A write refused while the disk is full, answered SystemError at its turn.
    Refused { from: ConnRef, xid: i32 },
}

/// One entry of a session's queue of waiting requests. A session's answers leave in the order
/// its requests arrived (ZooKeeper's CommitProcessor keeps the same per-session queue); sessions
/// do not wait for each other.
enum Waiting {
    /// Waits for its txn, matched by session id and cxid (not by position: on a learner the
    /// leader's commits interleave other servers' txns).
    Txn(Waiter),
    /// A sync: answered once the peer says so (`SyncDone`: every txn before it is committed
    /// and applied, and the leader has confirmed it still leads).
    Sync { waiter: Waiter, done: bool },
    /// Answered (a read: run) as soon as it reaches the front of its session's queue.
    InTurn(Waiter),
    /// Answered; the reply goes out when it reaches the front.
    Done { shard: u16, msg: ToShard },
    /// A sync whose answer is built (a later txn of its session was about to be applied, and
    /// the answer must not reflect it) but that still waits for the peer's `SyncDone`.
    Held { shard: u16, msg: ToShard, done: bool },
    /// Its txn was just applied and its answer is being built (between `take_waiter` and
    /// `settle`; never seen by anything else).
    Taken,
}

pub struct Replica<L: Links> {
    cfg: ReplicaConfig,
    pub(crate) tree: Arc<DataTree>,
    prep: Prep,
    sessions: SessionTracker,
    /// The connection currently serving each session.
    owners: HashMap<i64, ConnRef, ahash::RandomState>,
    pub(crate) links: L,
    zxids: zxids::Zxids,
    /// Txns up to here may be applied: a quorum has them durable (standalone: the local log).
    committed_zxid: i64,
    /// Txns handed to the log and not yet applied, in zxid order.
    proposals: VecDeque<crate::txnlog::SharedTxn>,
    /// Each session's waiting requests, in arrival order.
    waiting: HashMap<i64, VecDeque<Waiting>, ahash::RandomState>,
    next_container_check_ms: i64,
    /// The log failed: the node is stopping, and answers nothing more (see `LogFailed`).
    failed: Option<String>,
    /// The disk is full: writes are refused until this time, then the log is asked to resume.
    no_space_retry_at_ms: Option<i64>,
    txns_since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// This server's randomised snapshot threshold (ZooKeeper: snapCount/2 + rand(snapCount/2),
    /// so that ensemble members do not all snapshot at once).
    snapshot_threshold: u64,
    /// Election and ZAB: decides when txns commit, and this server's role. Standalone, a leader
    /// with no other voter, so the local log's durability commits (the one-node case of the
    /// same code).
    peer: crate::quorum::peer::Peer,
    /// The role clients are served in; None while looking for a leader.
    serving: Option<crate::quorum::peer::Role>,
    /// Reused for the peer's actions.
    acts: Vec<crate::quorum::peer::Action>,
    /// The txn just proposed, handed back by the peer's `Append` without decoding it again.
    own: Option<crate::txnlog::SharedTxn>,
    /// Sessions with a sync waiting for the peer's `SyncDone`, oldest first.
    sync_queue: VecDeque<i64>,
    /// Learner: reconnects waiting for the leader's REVALIDATE answer.
    revalidating: HashMap<i64, (ConnRef, i32), ahash::RandomState>,
    /// The (empty) bytes of a standalone server's proposals, shared rather than allocated.
    no_data: Arc<[u8]>,
    /// Learner: a TRUNC is being carried out on disk; appends wait here and nothing is applied
    /// until it is done (an append sent to the log before the truncation would be cut off by
    /// it, a txn applied now would be lost by the reload).
    truncating: Option<Vec<crate::txnlog::SharedTxn>>,
}

/// Delivers watch events straight into the watcher's shard channel, while the tree still holds
/// the changed path's lock: the event is queued before any reader can see the change.
struct SinkToShards<'a, L: Links> {
    links: &'a L,
    touched: &'a mut u64,
    /// The txn being applied: shards order events against reads by it.
    zxid: i64,
    /// Whether the watcher's shard checks the znode's ACL before delivering (not for the
    /// catch-up events of setWatches, which ZooKeeper delivers unconditionally).
    filter: bool,
}

impl<L: Links> WatchSink for SinkToShards<'_, L> {
    fn deliver(&mut self, w: WatcherId, event: EventType, path: &str, acl: &Arc<Vec<crate::proto::Acl>>) {
        *self.touched |= 1 << (w.shard % 64);
        self.links.send(
            w.shard,
            ToShard::Watch {
                conn: w.conn,
                event,
                path: path.to_owned(),
                acl: self.filter.then(|| acl.clone()),
                zxid: self.zxid,
            },
        );
    }
}

/// A write reply's frame: length, header (xid, zxid, err) and a Stat (plus a path for creates).
const REPLY_CAPACITY: usize = 4 + 16 + 68 + 64;
/// Where the error code sits in a framed reply (after the length, xid and zxid).
const ERR_AT: usize = 4 + 4 + 8;

impl<L: Links> Replica<L> {
    /// A standalone server. `last_zxid`: the tree's last applied zxid after recovery.
    pub fn new(
        cfg: ReplicaConfig,
        tree: Arc<DataTree>,
        sessions: SessionTracker,
        links: L,
        last_zxid: i64,
        now: Now,
    ) -> Self {
        let (peer, acts) = crate::quorum::peer::Peer::new(
            ensemble::standalone_config(cfg.server_id as crate::quorum::Sid, cfg.tick_ms),
            crate::quorum::peer::PeerInit {
                accepted_epoch: crate::quorum::epoch_of(last_zxid),
                current_epoch: crate::quorum::epoch_of(last_zxid),
                last_zxid,
                log_tail: Vec::new(),
            },
            now.mono_ms as u64,
        )
        .expect("a standalone peer starts from any state");
        let mut out = Outbox::default();
        let mut r = Self::with_peer(cfg, tree, sessions, links, last_zxid, peer, now);
        for a in acts {
            r.perform(a, now, &mut out);
        }
        assert!(out
            .quorum
            .iter()
            .all(|c| matches!(c, quorum_io::QuorumCmd::Peer(crate::quorum::peer::Action::State { .. }))));
        r
    }

    /// A member of an ensemble (or a standalone server) with its peer; the caller performs the
    /// peer's first actions with `perform_initial`.
    pub fn with_peer(
        cfg: ReplicaConfig,
        tree: Arc<DataTree>,
        sessions: SessionTracker,
        links: L,
        last_zxid: i64,
        peer: crate::quorum::peer::Peer,
        now: Now,
    ) -> Self {
        let cfg_snap_count = cfg.snap_count;
        let cfg_enforce_quota = cfg.enforce_quota;
        init_config_node(&tree, &peer, now);
        Replica {
            next_container_check_ms: now.mono_ms + cfg.container_check_interval_ms,
            cfg,
            tree,
            prep: {
                let mut p = Prep::new();
                p.enforce_quota = cfg_enforce_quota;
                p
            },
            sessions,
            owners: HashMap::default(),
            links,
            zxids: zxids::Zxids::new(last_zxid),
            committed_zxid: last_zxid,
            proposals: VecDeque::new(),
            waiting: HashMap::default(),
            failed: None,
            no_space_retry_at_ms: None,
            txns_since_snapshot: 0,
            bytes_since_snapshot: 0,
            snapshot_threshold: Self::roll_threshold(cfg_snap_count, now.wall_ms),
            peer,
            serving: None,
            acts: Vec::new(),
            own: None,
            sync_queue: VecDeque::new(),
            revalidating: HashMap::default(),
            no_data: Arc::from(&[][..]),
            truncating: None,
        }
    }

    fn roll_threshold(snap_count: u64, seed: i64) -> u64 {
        let half = (snap_count / 2).max(1);
        half + (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % half
    }

    pub fn sessions(&self) -> &SessionTracker {
        &self.sessions
    }
    pub fn last_zxid(&self) -> i64 {
        self.zxids.last()
    }
    /// Requests of this node's clients not yet answered.
    pub fn outstanding(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    fn send(&self, out: &mut Outbox, shard: u16, msg: ToShard) {
        out.touched_shards |= 1 << (shard % 64);
        self.links.send(shard, msg);
    }

    fn next_zxid(&mut self) -> i64 {
        self.zxids.issue()
    }

    fn clamp_timeout(&self, t: i32) -> i32 {
        t.clamp(self.cfg.min_session_timeout_ms, self.cfg.max_session_timeout_ms)
    }

    pub fn step(&mut self, msg: ToReplica, now: Now, out: &mut Outbox) {
        if self.failed.is_some() {
            // Stopping: an answer now could overtake an earlier request that never gets one.
            // Connections close; a client learns the fate of its unanswered writes on reconnect.
            if let ToReplica::DumpSessions { reply } = msg {
                let _ = reply.send(SessionsDump::default());
            }
            return;
        }
        match msg {
            ToReplica::Connect { from, peer, req } => self.on_connect(from, peer, req, now, out),
            ToReplica::Write { from, session, xid, opcode, req, auth } => {
                self.on_write(from, session, xid, opcode, req, &auth, now, out)
            }
            ToReplica::Read { from, session, xid, req, auth } => {
                self.wait(session, Waiting::InTurn(Waiter::Read { from, session, xid, req, auth }), out)
            }
            ToReplica::Touch { sessions } => self.on_touch(sessions, now, out),
            ToReplica::Disconnected { from, session } => {
                if self.owners.get(&session) == Some(&from) {
                    self.owners.remove(&session);
                }
            }
            ToReplica::Durable { zxid } => {
                assert!(zxid <= self.zxids.last(), "log reported zxid {zxid:#x} beyond last issued");
                // The local log's ack; standalone, it commits.
                self.zab(crate::quorum::peer::Input::Durable { zxid }, now, out);
            }
            // Fail-stop, as ZooKeeper does when its log cannot be written: after a failed write or
            // fsync the page cache may no longer match the disk, and a write we did not answer
            // may or may not be durable, so none is answered "failed". Acknowledged writes are
            // durable; recovery at the next start decides the rest.
            ToReplica::LogFailed { reason } => {
                out.fatal = Some(format!(
                    "transaction log failed: {reason}; stopping: {} unanswered request(s) get no reply (each may or may not be durable; every acknowledged write is)",
                    self.outstanding()
                ));
                self.failed = Some(reason);
            }
            ToReplica::LogNoSpace { last_durable_zxid } => self.on_no_space(last_durable_zxid, now, out),
            ToReplica::DumpSessions { reply } => {
                let _ = reply.send(self.sessions.dump());
            }
            ToReplica::Quorum(input) => self.zab(input, now, out),
            ToReplica::SnapshotInstalled { zxid, sessions, current } => {
                self.snapshot_installed(zxid, sessions, current, now, out)
            }
            ToReplica::Truncated { zxid, sessions, last_zxid } => {
                self.truncated(zxid, sessions, last_zxid, now, out)
            }
            ToReplica::Shutdown => {}
        }
    }

    /// The disk filled up: everything up to `last_durable` is applied as usual; every txn after it
    /// was not logged, so its request fails and zxids are handed out again from there. Reads go
    /// on. Writes are refused for a second, then the log is asked to try again.
    fn on_no_space(&mut self, last_durable: i64, now: Now, out: &mut Outbox) {
        if self.serving != Some(crate::quorum::peer::Role::Standalone) {
            // In an ensemble the zxids after `last_durable` may have reached peers and can never
            // be handed out again; ZooKeeper exits on a log failure, and so does zkd.
            out.fatal = Some(format!(
                "transaction log: disk full after 0x{last_durable:x}; stopping (a member of an ensemble cannot take back zxids it proposed); the others go on without this server"
            ));
            self.failed = Some("disk full".into());
            return;
        }
        self.committed_zxid = self.committed_zxid.max(last_durable);
        self.apply_committed(now, out);
        let failed: Vec<crate::txnlog::SharedTxn> = self.proposals.drain(..).collect();
        tracing::error!(
            "disk full: {} txn(s) after 0x{last_durable:x} were not logged and fail; reads continue, writes resume when space returns",
            failed.len()
        );
        self.prep.reset();
        // Nothing after `last_durable` was logged, applied or answered: those zxids go back.
        self.zxids.take_back_after(last_durable.max(self.tree.last_processed_zxid()));
        for t in failed {
            let session = t.hdr.client_id;
            let msg = match self.take_waiter(&t.hdr) {
                Some(Waiter::Client { from, xid, .. }) => self.reply_msg(Waiter::Refused { from, xid }),
                Some(Waiter::Connect { from, session, .. }) => {
                    self.sessions.remove(session);
                    self.owners.remove(&session);
                    (from.shard, ToShard::Close { conn: from.conn, reason: "disk full: session not created" })
                }
                Some(Waiter::Read { .. } | Waiter::Refused { .. }) => unreachable!("these wait for no txn"),
                None => continue,
            };
            self.settle(session, msg);
            self.advance(session, out);
        }
        // The standalone peer proposed the zxids taken back: it restarts from the last durable
        // one. Its pending syncs answer now: everything logged before them is applied.
        self.restart_standalone_peer(now, out);
        for session in std::mem::take(&mut self.sync_queue) {
            self.sync_done(session, out);
        }
        // A second after the first rejection, not the latest: txns that still reach the log
        // meanwhile (createSession, an expiry's closeSession) are rejected and reported too, and
        // would otherwise postpone the retry for as long as clients keep reconnecting.
        self.no_space_retry_at_ms.get_or_insert(now.mono_ms + 1000);
    }

    /// Periodic work: session expiry and the container/TTL sweep.
    pub fn tick(&mut self, now: Now, out: &mut Outbox) {
        if let Some(at) = self.no_space_retry_at_ms {
            if now.mono_ms >= at {
                self.no_space_retry_at_ms = None;
                out.resume_log = true;
            }
        }
        if now.mono_ms as u64 >= self.peer.next_wake_ms() {
            self.zab(crate::quorum::peer::Input::Tick, now, out);
        }
        if !self.decides_sessions() {
            // Sessions expire on the leader; learners only report their clients' activity.
            return;
        }
        for id in self.sessions.expire(now.mono_ms) {
            let timeout = self.sessions.get(id).map(|s| s.timeout_ms).unwrap_or(0);
            tracing::info!("Expiring session 0x{id:x}, timeout of {timeout}ms exceeded");
            let (hdr, body) = self.prep_close(id, 0, now);
            self.log(hdr, body, now, out);
        }
        if self.cfg.container_check_interval_ms > 0 && now.mono_ms >= self.next_container_check_ms {
            self.next_container_check_ms = now.mono_ms + self.cfg.container_check_interval_ms;
            for path in self.tree.containers_and_ttls_to_delete(now.wall_ms, self.cfg.extended_types_enabled)
            {
                let zxid = self.next_zxid();
                let (hdr, body) = self.prep.prep_delete_container(&self.tree, &path, zxid, now.wall_ms);
                self.log(hdr, body, now, out);
            }
        }
    }

    /// A closeSession txn: `cxid` is the client's xid, 0 for an expiry (as ZooKeeper logs them).
    fn prep_close(&mut self, session: i64, cxid: i32, now: Now) -> (TxnHeader, TxnBody) {
        self.sessions.set_closing(session);
        let zxid = self.next_zxid();
        self.prep.prep_close_session(&self.tree, session, cxid, zxid, now.wall_ms)
    }

    /// Leader (and standalone): proposes a prepped txn; the peer's `Append` logs it.
    fn log(&mut self, hdr: TxnHeader, body: TxnBody, now: Now, out: &mut Outbox) {
        // The tree's digest once this txn is applied, as ZooKeeper 3.6+ logs and proposes it.
        let digest = digest::enabled().then(|| crate::proto::TxnDigest {
            version: DIGEST_VERSION,
            tree_digest: self.prep.digest(&self.tree) as i64,
        });
        let txn = Arc::new(LoggedTxn { hdr, body, digest });
        self.propose(txn, now, out);
    }

    /// Hands a txn to the log and keeps it until it is committed and applied.
    fn append(&mut self, txn: crate::txnlog::SharedTxn, out: &mut Outbox) {
        self.txns_since_snapshot += 1;
        // Its bytes count towards snapSizeLimitInKb.
        self.bytes_since_snapshot += 64 + txn.body.encoded_len() as u64;
        if let Some(last) = self.proposals.back() {
            assert!(txn.hdr.zxid > last.hdr.zxid, "txns are logged in zxid order");
        }
        match &mut self.truncating {
            Some(held) => held.push(txn.clone()),
            None => out.to_log.push(txn.clone()),
        }
        self.proposals.push_back(txn);
    }

    /// Queues a request behind its session's earlier ones; answers it at once if none wait.
    fn wait(&mut self, session: i64, w: Waiting, out: &mut Outbox) {
        self.waiting.entry(session).or_default().push_back(w);
        self.advance(session, out);
    }

    fn on_connect(
        &mut self,
        from: ConnRef,
        peer: std::net::SocketAddr,
        req: crate::proto::ConnectRequest,
        now: Now,
        out: &mut Outbox,
    ) {
        let Some(role) = self.serving else {
            // ZooKeeper closes a client's connection while the server is not running (looking
            // for a leader, or syncing with it); the client tries another server.
            self.send(
                out,
                from.shard,
                ToShard::Close { conn: from.conn, reason: "not serving: no quorum yet" },
            );
            return;
        };
        if req.last_zxid_seen > self.zxids.last().max(self.tree.last_processed_zxid()) {
            // The client saw a newer state than ours (it talked to another server); serving it
            // would let it go back in time. ZooKeeper closes such a connection without an answer.
            tracing::info!(
                "Refusing session request for client {peer} as it has seen zxid 0x{:x} our last zxid is 0x{:x} client must try another server",
                req.last_zxid_seen,
                self.zxids.last()
            );
            self.send(
                out,
                from.shard,
                ToShard::Close { conn: from.conn, reason: "client has seen a newer zxid" },
            );
            return;
        }
        let timeout_ms = self.clamp_timeout(req.time_out);
        if req.session_id == 0 {
            let session = self.sessions.next_session_id();
            // A learner numbers nothing: the leader gives the txn its zxid.
            let zxid = if ensemble::prepares(role) { self.next_zxid() } else { 0 };
            let hdr = TxnHeader {
                client_id: session,
                cxid: 0,
                zxid,
                time: now.wall_ms,
                txn_type: OpCode::CreateSession as i32,
            };
            let body = TxnBody::CreateSession(crate::proto::CreateSessionTxn { time_out: timeout_ms });
            self.sessions.add(session, timeout_ms, now.mono_ms);
            self.owners.insert(session, from);
            self.wait(session, Waiting::Txn(Waiter::Connect { from, session, timeout_ms }), out);
            if ensemble::prepares(role) {
                self.log(hdr, body, now, out);
            } else {
                self.forward_create_session(session, timeout_ms, now, out);
            }
        } else {
            let session = req.session_id;
            // ZooKeeper closes the session's current connection before it checks the password
            // (processConnectRequest → closeSession(CLIENT_RECONNECT)): even a wrong password
            // disconnects the owner, who can then reconnect with the right one.
            if req.passwd[..] != session_password(session)[..] {
                if let Some(old) = self.owners.remove(&session) {
                    self.send(
                        out,
                        old.shard,
                        ToShard::Close { conn: old.conn, reason: "client reconnect (wrong password)" },
                    );
                }
            }
            if !ensemble::prepares(role) && req.passwd[..] == session_password(session)[..] {
                // Only the leader knows whether the session still lives (ZooKeeper's
                // REVALIDATE): the answer comes back as `Revalidated`.
                self.revalidating.insert(session, (from, timeout_ms));
                let input = crate::quorum::peer::Input::Revalidate { session, timeout: timeout_ms };
                self.zab(input, now, out);
                return;
            }
            let valid = self.sessions.is_valid(session) && req.passwd[..] == session_password(session)[..];
            if !valid {
                tracing::info!("Invalid session 0x{session:x} for client {peer}, probably expired");
            }
            self.finish_session_init(from, session, timeout_ms, valid, now, out);
        }
    }

    /// Answers a reconnect (ZooKeeper's `finishSessionInit`): a live session moves to this
    /// connection; an expired one is told so (session id 0) and the connection closes.
    fn finish_session_init(
        &mut self,
        from: ConnRef,
        session: i64,
        timeout_ms: i32,
        valid: bool,
        now: Now,
        out: &mut Outbox,
    ) {
        if !valid {
            let resp = ConnectResponse {
                protocol_version: 0,
                time_out: 0,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: false,
            };
            let packet = frame_record(&resp);
            let msg = ToShard::Connected { conn: from.conn, session: 0, timeout_ms: 0, packet, close: true };
            self.send(out, from.shard, msg);
            return;
        }
        self.sessions.touch(session, now.mono_ms);
        if let Some(old) = self.owners.insert(session, from) {
            if old != from {
                self.send(
                    out,
                    old.shard,
                    ToShard::Close { conn: old.conn, reason: "session reconnected elsewhere" },
                );
            }
        }
        tracing::debug!("revalidated session 0x{session:x}");
        let packet = connect_packet(session, timeout_ms);
        self.send(
            out,
            from.shard,
            ToShard::Connected { conn: from.conn, session, timeout_ms, packet, close: false },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_write(
        &mut self,
        from: ConnRef,
        session: i64,
        xid: i32,
        opcode: i32,
        req: Request,
        auth: &Arc<Vec<crate::proto::Id>>,
        now: Now,
        out: &mut Outbox,
    ) {
        let Some(role) = self.serving else {
            // Not serving: the connection is being closed (`StopServing`); its requests die
            // with it, as a client expects of a lost connection.
            return;
        };
        if self.no_space_retry_at_ms.is_some() {
            // The disk is full: refuse rather than acknowledge, in the session's order.
            tracing::debug!("refusing write: disk full");
            self.wait(session, Waiting::InTurn(Waiter::Refused { from, xid }), out);
            return;
        }
        // What the answer needs of the request; the request itself moves into the txn.
        let reply = ReplyTo::of(&req);
        if let ReplyTo::Sync(path) = &reply {
            let data = crate::proto::SyncRequest { path: path.clone() }.to_bytes();
            self.wait(
                session,
                Waiting::Sync { waiter: Waiter::Client { from, xid, opcode, reply }, done: false },
                out,
            );
            self.sync_queue.push_back(session);
            let input =
                crate::quorum::peer::Input::Sync { session, cxid: xid, data, authinfo: auth.to_vec() };
            self.zab(input, now, out);
            return;
        }
        if !ensemble::prepares(role) {
            self.forward(from, session, xid, opcode, req, reply, auth, now, out);
            return;
        }
        self.sessions.touch(session, now.mono_ms);
        let (hdr, body) = if matches!(reply, ReplyTo::Close) {
            self.prep_close(session, xid, now)
        } else if !self.sessions.is_valid(session) {
            let zxid = self.next_zxid();
            request::error_txn(session, xid, zxid, now.wall_ms, crate::proto::ErrorCode::SessionExpired)
        } else {
            let zxid = self.next_zxid();
            let ctx = request::WriteCtx {
                session_id: session,
                cxid: xid,
                opcode,
                auth,
                super_digest: self.cfg.super_digest.as_deref(),
                skip_acl: self.cfg.skip_acl,
                extended_types_enabled: self.cfg.extended_types_enabled,
            };
            self.prep.prep(&self.tree, &ctx, req, zxid, now.wall_ms)
        };
        self.wait(session, Waiting::Txn(Waiter::Client { from, xid, opcode, reply }), out);
        self.log(hdr, body, now, out);
    }

    /// Applies every txn up to the commit point, in order, answering this node's clients as
    /// their turns come.
    fn apply_committed(&mut self, now: Now, out: &mut Outbox) {
        if self.truncating.is_some() {
            return;
        }
        while self.proposals.front().is_some_and(|t| t.hdr.zxid <= self.committed_zxid) {
            let t = self.proposals.pop_front().expect("checked above");
            // What waits ahead of this txn's request in its session must not see it.
            self.run_ahead_of(&t.hdr, out);
            let mut touched = out.touched_shards;
            let r = {
                let mut sink = SinkToShards {
                    links: &self.links,
                    touched: &mut touched,
                    zxid: t.hdr.zxid,
                    filter: true,
                };
                self.tree.apply(&t.hdr, &t.body, &mut sink)
            };
            // ZooKeeper's `DataTree.compareDigest`: the digest the leader computed for this txn
            // against this tree's after applying it.
            if let Some(d) = t.digest.as_ref().filter(|d| d.version == DIGEST_VERSION && digest::enabled()) {
                digest::check("txn", t.hdr.zxid, d.tree_digest, self.tree.digest());
            }
            out.touched_shards = touched;
            self.prep.applied(t.hdr.zxid);
            self.zxids.expose(t.hdr.zxid);
            let session = t.hdr.client_id;
            let waiter = self.take_waiter(&t.hdr);
            let msg = waiter.map(|w| match w {
                Waiter::Client { from, xid, opcode, reply } => {
                    self.reply_msg_with(from, xid, opcode, &reply, Some(&(t.hdr.zxid, r)))
                }
                Waiter::Connect { from, session, timeout_ms } => {
                    let packet = connect_packet(session, timeout_ms);
                    (
                        from.shard,
                        ToShard::Connected { conn: from.conn, session, timeout_ms, packet, close: false },
                    )
                }
                Waiter::Read { .. } | Waiter::Refused { .. } => unreachable!("these wait for no txn"),
            });
            if let TxnBody::CreateSession(c) = &t.body {
                // Learners learn sessions from the leader's txns (a no-op on the leader).
                if self.sessions.get(session).is_none() {
                    self.sessions.add(session, c.time_out, now.mono_ms);
                }
            }
            if t.hdr.txn_type == OpCode::CloseSession as i32 {
                self.sessions.remove(session);
                if let Some(owner) = self.owners.remove(&session) {
                    let is_requester = matches!(&msg, Some((shard, ToShard::Reply { conn, .. }))
                        if ConnRef { shard: *shard, conn: *conn } == owner);
                    if !is_requester {
                        self.send(
                            out,
                            owner.shard,
                            ToShard::Close { conn: owner.conn, reason: "session expired" },
                        );
                    }
                }
            }
            if let Some(msg) = msg {
                self.settle(session, msg);
                self.advance(session, out);
            }
        }
        if self.txns_since_snapshot >= self.snapshot_threshold
            || (self.cfg.snap_size_limit_bytes > 0
                && self.bytes_since_snapshot >= self.cfg.snap_size_limit_bytes)
        {
            self.txns_since_snapshot = 0;
            self.bytes_since_snapshot = 0;
            self.snapshot_threshold = Self::roll_threshold(self.cfg.snap_count, now.wall_ms);
            let sessions = self.sessions.sessions().map(|s| (s.id, s.timeout_ms)).collect();
            out.snapshot = Some((self.tree.last_processed_zxid(), sessions));
        }
    }

    /// Where in its session's queue the request a txn answers waits, if it is on this node: the
    /// first request waiting for a txn with the txn's cxid (a createSession: the handshake).
    fn waiter_index(q: &VecDeque<Waiting>, hdr: &TxnHeader) -> Option<usize> {
        let create = hdr.txn_type == OpCode::CreateSession as i32;
        q.iter().position(|w| match w {
            Waiting::Txn(Waiter::Connect { .. }) => create,
            Waiting::Txn(Waiter::Client { xid, .. }) => !create && *xid == hdr.cxid,
            _ => false,
        })
    }

    /// Before a txn of this node's session is applied, the reads and syncs waiting ahead of its
    /// request (behind a sync the peer has not released yet) are answered now, at the state
    /// that does not include it; their answers wait in place. A read must never see its
    /// session's later write (ZooKeeper's CommitProcessor keeps the same rule).
    fn run_ahead_of(&mut self, hdr: &TxnHeader, out: &mut Outbox) {
        let Some(q) = self.waiting.get_mut(&hdr.client_id) else { return };
        let Some(i) = Self::waiter_index(q, hdr) else { return };
        for j in 0..i {
            let q = self.waiting.get_mut(&hdr.client_id).expect("found above");
            match std::mem::replace(&mut q[j], Waiting::Taken) {
                Waiting::InTurn(w @ Waiter::Read { .. }) => {
                    let (shard, msg) = self.read_msg(w, out);
                    self.waiting.get_mut(&hdr.client_id).expect("found above")[j] =
                        Waiting::Done { shard, msg };
                }
                Waiting::Sync { waiter, done } => {
                    let (shard, msg) = self.reply_msg(waiter);
                    self.waiting.get_mut(&hdr.client_id).expect("found above")[j] =
                        Waiting::Held { shard, msg, done };
                }
                other => self.waiting.get_mut(&hdr.client_id).expect("found above")[j] = other,
            }
        }
    }

    /// The waiter of this node that a txn answers, if one is here (see `waiter_index`).
    fn take_waiter(&mut self, hdr: &TxnHeader) -> Option<Waiter> {
        let q = self.waiting.get_mut(&hdr.client_id)?;
        let i = Self::waiter_index(q, hdr)?;
        let Waiting::Txn(w) = std::mem::replace(&mut q[i], Waiting::Taken) else {
            unreachable!("found above")
        };
        Some(w)
    }

    /// Stores the answer of the request `take_waiter` just took from `session`'s queue.
    fn settle(&mut self, session: i64, (shard, msg): (u16, ToShard)) {
        let q = self.waiting.get_mut(&session).expect("take_waiter found this session");
        let slot = q.iter_mut().find(|w| matches!(w, Waiting::Taken)).expect("take_waiter left its mark");
        *slot = Waiting::Done { shard, msg };
    }

    /// Sends what is answered at the front of a session's queue, runs reads that reached the
    /// front, and stops at the first request still waiting.
    fn advance(&mut self, session: i64, out: &mut Outbox) {
        let Some(q) = self.waiting.get_mut(&session) else { return };
        let mut ready = Vec::new();
        while let Some(front) = q.front() {
            let go = match front {
                Waiting::Done { .. } | Waiting::InTurn(_) => true,
                Waiting::Sync { done, .. } | Waiting::Held { done, .. } => *done,
                Waiting::Txn(_) => false,
                Waiting::Taken => unreachable!("settled before anything advances"),
            };
            if !go {
                break;
            }
            ready.push(q.pop_front().expect("front exists"));
        }
        if q.is_empty() {
            self.waiting.remove(&session);
        }
        for w in ready {
            match w {
                Waiting::Done { shard, msg } | Waiting::Held { shard, msg, .. } => self.send(out, shard, msg),
                Waiting::InTurn(w) | Waiting::Sync { waiter: w, .. } => self.answer_now(w, out),
                Waiting::Txn(_) | Waiting::Taken => unreachable!("stopped above"),
            }
        }
    }

    fn answer_now(&self, w: Waiter, out: &mut Outbox) {
        match w {
            Waiter::Read { .. } => self.run_read(w, out),
            w => {
                let (shard, msg) = self.reply_msg(w);
                self.send(out, shard, msg)
            }
        }
    }

    /// The answer of a request that needs no txn of its own: a sync, a refusal.
    fn reply_msg(&self, w: Waiter) -> (u16, ToShard) {
        match w {
            Waiter::Client { from, xid, opcode, reply } => {
                self.reply_msg_with(from, xid, opcode, &reply, None)
            }
            Waiter::Refused { from, xid } => {
                let err = crate::proto::ErrorCode::SystemError as i32;
                let packet = framed_raw(&ReplyHeader { xid, zxid: self.zxids.last(), err }, &[]);
                (from.shard, ToShard::Reply { conn: from.conn, xid, packet, close: false })
            }
            Waiter::Read { .. } | Waiter::Connect { .. } => {
                unreachable!("reads run, handshakes wait for a txn")
            }
        }
    }

    /// Runs a read that was ordered behind its session's writes, against the tree as applied so
    /// far, and answers it like a write (the shard holds its place in the session's replies).
    fn run_read(&self, w: Waiter, out: &mut Outbox) {
        let (shard, msg) = self.read_msg(w, out);
        self.send(out, shard, msg);
    }

    /// A read's answer at the tree's current state (its watch, if any, registered now).
    fn read_msg(&self, w: Waiter, out: &mut Outbox) -> (u16, ToShard) {
        let Waiter::Read { from, session, xid, req, auth } = w else {
            unreachable!("run_read takes only reads")
        };
        let ctx = request::read::ReadCtx {
            session,
            auth: &auth,
            watcher: WatcherId { shard: from.shard, conn: from.conn },
            skip_acl: self.cfg.skip_acl,
        };
        let mut touched = out.touched_shards;
        let packet = {
            let zxid = self.tree.last_processed_zxid();
            let mut sink = SinkToShards { links: &self.links, touched: &mut touched, zxid, filter: false };
            request::read::execute(&self.tree, &ctx, xid, &req, &mut sink)
        };
        out.touched_shards = touched;
        (from.shard, ToShard::Reply { conn: from.conn, xid, packet, close: false })
    }

    fn reply_msg_with(
        &self,
        from: ConnRef,
        xid: i32,
        opcode: i32,
        reply: &ReplyTo,
        result: Option<&(i64, crate::tree::ApplyResult)>,
    ) -> (u16, ToShard) {
        // Framed in one buffer: length and header first, the error code patched in once the
        // body is encoded.
        let mut w = Writer::with_capacity(REPLY_CAPACITY);
        w.i32(0);
        let zxid = result.map_or_else(|| self.tree.last_processed_zxid(), |(z, _)| *z);
        ReplyHeader { xid, zxid, err: 0 }.encode(&mut w);
        let err = match result {
            // sync: answered with the path, at the last applied zxid.
            None => {
                if let ReplyTo::Sync(path) = reply {
                    w.string(path);
                }
                0
            }
            Some((_, r)) => request::encode_reply(opcode, matches!(reply, ReplyTo::Multi), r, &mut w),
        };
        w.buf[ERR_AT..ERR_AT + 4].copy_from_slice(&err.to_be_bytes());
        let len = (w.buf.len() - 4) as i32;
        w.buf[..4].copy_from_slice(&len.to_be_bytes());
        let packet = w.buf;
        let close = matches!(reply, ReplyTo::Close);
        (from.shard, ToShard::Reply { conn: from.conn, xid, packet, close })
    }
}

/// The handshake answer of a live session (ZooKeeper's `finishSessionInit` with valid=true).
fn connect_packet(session: i64, timeout_ms: i32) -> Vec<u8> {
    frame_record(&ConnectResponse {
        protocol_version: 0,
        time_out: timeout_ms,
        session_id: session,
        passwd: session_password(session).to_vec(),
        read_only: false,
    })
}

#[cfg(test)]
mod tests;

/// `/zookeeper/config` from the configuration the peer announces (members of an ensemble only),
/// as ZooKeeper fills it at start-up and after a learner loads its leader's snapshot.
fn init_config_node(tree: &DataTree, peer: &crate::quorum::peer::Peer, now: Now) {
    if let Some(text) = &peer.config().announced_config {
        let version = crate::quorum::wire::QuorumView::parse(text).map(|v| v.version).unwrap_or(0);
        tree.init_config(text, version, now.wall_ms);
    }
}
