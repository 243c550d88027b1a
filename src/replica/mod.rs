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
pub mod zxids;

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

/// Who is waiting on a pending txn (or sync barrier).
enum Waiter {
    /// A client request: answer it after apply.
    Client { from: ConnRef, xid: i32, opcode: i32, reply: ReplyTo },
    /// A new session's handshake.
    Connect { from: ConnRef, session: i64, timeout_ms: i32 },
    /// A read ordered behind its session's earlier writes: runs when it reaches the front.
    Read { from: ConnRef, session: i64, xid: i32, req: Box<Request>, auth: Arc<Vec<crate::proto::Id>> },
    /// A write refused while the disk is full, answered SystemError at its turn.
    Refused { from: ConnRef, xid: i32 },
    /// An expiry or container sweep: nobody to answer.
    Internal,
}

struct Pending {
    /// None for a sync barrier or an ordered read (no txn: answered when everything before it is
    /// applied).
    txn: Option<crate::txnlog::SharedTxn>,
    waiter: Waiter,
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
    /// Last zxid the log reported durable.
    durable_zxid: i64,
    pending: VecDeque<Pending>,
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
    /// `last_zxid`: the tree's last applied zxid after recovery.
    pub fn new(
        cfg: ReplicaConfig,
        tree: Arc<DataTree>,
        sessions: SessionTracker,
        links: L,
        last_zxid: i64,
        now: Now,
    ) -> Self {
        let cfg_snap_count = cfg.snap_count;
        let cfg_enforce_quota = cfg.enforce_quota;
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
            durable_zxid: last_zxid,
            pending: VecDeque::new(),
            failed: None,
            no_space_retry_at_ms: None,
            txns_since_snapshot: 0,
            bytes_since_snapshot: 0,
            snapshot_threshold: Self::roll_threshold(cfg_snap_count, now.wall_ms),
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
    pub fn outstanding(&self) -> usize {
        self.pending.len()
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
                self.answer_in_turn(Waiter::Read { from, session, xid, req, auth }, out)
            }
            ToReplica::Touch { sessions } => {
                for s in sessions {
                    self.sessions.touch(s, now.mono_ms);
                }
            }
            ToReplica::Disconnected { from, session } => {
                if self.owners.get(&session) == Some(&from) {
                    self.owners.remove(&session);
                }
            }
            ToReplica::Durable { zxid } => {
                assert!(zxid <= self.zxids.last(), "log reported zxid {zxid:#x} beyond last issued");
                self.durable_zxid = self.durable_zxid.max(zxid);
                self.apply_durable(now, out);
            }
            // Fail-stop, as ZooKeeper does when its log cannot be written: after a failed write or
            // fsync the page cache may no longer match the disk, and a write we did not answer
            // may or may not be durable, so none is answered "failed". Acknowledged writes are
            // durable; recovery at the next start decides the rest.
            ToReplica::LogFailed { reason } => {
                out.fatal = Some(format!(
                    "transaction log failed: {reason}; stopping: {} unanswered request(s) get no reply (each may or may not be durable; every acknowledged write is)",
                    self.pending.len()
                ));
                self.failed = Some(reason);
            }
            ToReplica::LogNoSpace { last_durable_zxid } => self.on_no_space(last_durable_zxid, now, out),
            ToReplica::DumpSessions { reply } => {
                let _ = reply.send(self.sessions.dump());
            }
            ToReplica::Shutdown => {}
        }
    }

    /// The disk filled up: everything up to `last_durable` is applied as usual; every txn after it
    /// was not logged, so its request fails and zxids are handed out again from there. Reads go
    /// on. Writes are refused for a second, then the log is asked to try again.
    fn on_no_space(&mut self, last_durable: i64, now: Now, out: &mut Outbox) {
        self.durable_zxid = self.durable_zxid.max(last_durable);
        self.apply_durable(now, out);
        let failed: Vec<Pending> = self.pending.drain(..).collect();
        tracing::error!(
            "disk full: {} txn(s) after 0x{last_durable:x} were not logged and fail; reads continue, writes resume when space returns",
            failed.iter().filter(|p| p.txn.is_some()).count()
        );
        self.prep.reset();
        // Nothing after `last_durable` was logged, applied or answered: those zxids go back.
        self.zxids.take_back_after(last_durable.max(self.tree.last_processed_zxid()));
        for p in failed {
            match p.waiter {
                // A sync (no txn) answers as usual: everything logged before it is applied.
                w @ Waiter::Client { .. } if p.txn.is_none() => self.answer_now(w, out),
                Waiter::Client { from, xid, .. } => self.answer_now(Waiter::Refused { from, xid }, out),
                Waiter::Connect { from, session, .. } => {
                    self.sessions.remove(session);
                    self.owners.remove(&session);
                    self.send(
                        out,
                        from.shard,
                        ToShard::Close { conn: from.conn, reason: "disk full: session not created" },
                    );
                }
                // Reads still answer, at the state the failed writes never changed.
                w @ (Waiter::Read { .. } | Waiter::Refused { .. }) => self.answer_now(w, out),
                Waiter::Internal => {}
            }
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
        for id in self.sessions.expire(now.mono_ms) {
            let timeout = self.sessions.get(id).map(|s| s.timeout_ms).unwrap_or(0);
            tracing::info!("Expiring session 0x{id:x}, timeout of {timeout}ms exceeded");
            let (hdr, body) = self.prep_close(id, now);
            self.log(hdr, body, Waiter::Internal, out);
        }
        if self.cfg.container_check_interval_ms > 0 && now.mono_ms >= self.next_container_check_ms {
            self.next_container_check_ms = now.mono_ms + self.cfg.container_check_interval_ms;
            for path in self.tree.containers_and_ttls_to_delete(now.wall_ms, self.cfg.extended_types_enabled)
            {
                let zxid = self.next_zxid();
                let (hdr, body) = self.prep.prep_delete_container(&self.tree, &path, zxid, now.wall_ms);
                self.log(hdr, body, Waiter::Internal, out);
            }
        }
    }

    fn prep_close(&mut self, session: i64, now: Now) -> (TxnHeader, TxnBody) {
        self.sessions.set_closing(session);
        let zxid = self.next_zxid();
        self.prep.prep_close_session(&self.tree, session, 0, zxid, now.wall_ms)
    }

    fn log(&mut self, hdr: TxnHeader, body: TxnBody, waiter: Waiter, out: &mut Outbox) {
        let txn = Arc::new(LoggedTxn { hdr, body, digest: None });
        self.txns_since_snapshot += 1;
        // Its bytes count towards snapSizeLimitInKb.
        self.bytes_since_snapshot += 64 + txn.body.encoded_len() as u64;
        out.to_log.push(txn.clone());
        self.pending.push_back(Pending { txn: Some(txn), waiter });
    }

    fn on_connect(
        &mut self,
        from: ConnRef,
        peer: std::net::SocketAddr,
        req: crate::proto::ConnectRequest,
        now: Now,
        out: &mut Outbox,
    ) {
        if req.last_zxid_seen > self.zxids.last() {
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
            let zxid = self.next_zxid();
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
            self.log(hdr, body, Waiter::Connect { from, session, timeout_ms }, out);
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
            let valid = self.sessions.is_valid(session) && req.passwd[..] == session_password(session)[..];
            if valid {
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
                tracing::debug!("revalidated session 0x{session:x} for {peer}");
                let packet = connect_packet(session, timeout_ms);
                self.send(
                    out,
                    from.shard,
                    ToShard::Connected { conn: from.conn, session, timeout_ms, packet, close: false },
                );
            } else {
                tracing::info!("Invalid session 0x{session:x} for client {peer}, probably expired");
                let resp = ConnectResponse {
                    protocol_version: 0,
                    time_out: 0,
                    session_id: 0,
                    passwd: vec![0; 16],
                    read_only: false,
                };
                let packet = frame_record(&resp);
                self.send(
                    out,
                    from.shard,
                    ToShard::Connected { conn: from.conn, session: 0, timeout_ms: 0, packet, close: true },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_write(
        &mut self,
        from: ConnRef,
        session: i64,
        xid: i32,
        opcode: i32,
        req: Request,
        auth: &[crate::proto::Id],
        now: Now,
        out: &mut Outbox,
    ) {
        if self.no_space_retry_at_ms.is_some() {
            // The disk is full: refuse rather than acknowledge, in the session's order.
            tracing::debug!("refusing write: disk full");
            self.answer_in_turn(Waiter::Refused { from, xid }, out);
            return;
        }
        self.sessions.touch(session, now.mono_ms);
        // What the answer needs of the request; the request itself moves into the txn.
        let reply = ReplyTo::of(&req);
        if matches!(reply, ReplyTo::Sync(_)) {
            self.answer_in_turn(Waiter::Client { from, xid, opcode, reply }, out);
            return;
        }
        let (hdr, body) = if matches!(reply, ReplyTo::Close) {
            self.prep_close(session, now)
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
        self.log(hdr, body, Waiter::Client { from, xid, opcode, reply }, out);
    }

    /// Applies every pending txn the log made durable, in order, answering as it goes.
    fn apply_durable(&mut self, now: Now, out: &mut Outbox) {
        while let Some(front) = self.pending.front() {
            let ready = match &front.txn {
                Some(t) => t.hdr.zxid <= self.durable_zxid,
                None => true,
            };
            if !ready {
                break;
            }
            let p = self.pending.pop_front().unwrap();
            let result = p.txn.as_ref().map(|t| {
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
                out.touched_shards = touched;
                self.prep.applied(t.hdr.zxid);
                self.zxids.expose(t.hdr.zxid);
                if t.hdr.txn_type == OpCode::CloseSession as i32 {
                    self.sessions.remove(t.hdr.client_id);
                    if let Some(owner) = self.owners.remove(&t.hdr.client_id) {
                        let is_requester = matches!(&p.waiter, Waiter::Client { from, .. } if *from == owner);
                        if !is_requester {
                            self.send(
                                out,
                                owner.shard,
                                ToShard::Close { conn: owner.conn, reason: "session expired" },
                            );
                        }
                    }
                }
                (t.hdr.zxid, r)
            });
            match p.waiter {
                Waiter::Client { from, xid, opcode, reply } => {
                    self.answer(from, xid, opcode, &reply, result.as_ref(), out)
                }
                Waiter::Connect { from, session, timeout_ms } => {
                    let packet = connect_packet(session, timeout_ms);
                    self.send(
                        out,
                        from.shard,
                        ToShard::Connected { conn: from.conn, session, timeout_ms, packet, close: false },
                    );
                }
                w @ (Waiter::Read { .. } | Waiter::Refused { .. }) => self.answer_now(w, out),
                Waiter::Internal => {}
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

    /// Answers a request that needs no txn (a read ordered behind writes, a sync, a refusal)
    /// after everything pending before it: at once if nothing is.
    fn answer_in_turn(&mut self, w: Waiter, out: &mut Outbox) {
        if self.pending.is_empty() {
            self.answer_now(w, out);
        } else {
            self.pending.push_back(Pending { txn: None, waiter: w });
        }
    }

    fn answer_now(&self, w: Waiter, out: &mut Outbox) {
        match w {
            Waiter::Client { from, xid, opcode, reply } => self.answer(from, xid, opcode, &reply, None, out),
            Waiter::Refused { from, xid } => {
                let err = crate::proto::ErrorCode::SystemError as i32;
                let packet = framed_raw(&ReplyHeader { xid, zxid: self.zxids.last(), err }, &[]);
                self.send(out, from.shard, ToShard::Reply { conn: from.conn, xid, packet, close: false });
            }
            Waiter::Read { .. } => self.run_read(w, out),
            Waiter::Connect { .. } | Waiter::Internal => unreachable!("these wait for a txn"),
        }
    }

    /// Runs a read that was ordered behind its session's writes, against the tree as applied so
    /// far, and answers it like a write (the shard holds its place in the session's replies).
    fn run_read(&self, w: Waiter, out: &mut Outbox) {
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
        self.send(out, from.shard, ToShard::Reply { conn: from.conn, xid, packet, close: false });
    }

    fn answer(
        &self,
        from: ConnRef,
        xid: i32,
        opcode: i32,
        reply: &ReplyTo,
        result: Option<&(i64, crate::tree::ApplyResult)>,
        out: &mut Outbox,
    ) {
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
        self.send(out, from.shard, ToShard::Reply { conn: from.conn, xid, packet, close });
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
