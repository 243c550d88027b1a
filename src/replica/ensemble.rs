//! The replica as a member of an ensemble: it performs what its peer (election and ZAB) asks —
//! log a proposal, apply what is committed, prep a learner's forwarded request, answer syncs and
//! revalidations, start and stop serving — and, on a learner, forwards its clients' writes,
//! session creations, touches and reconnects to the leader. A standalone server is the one-node
//! case of the same code: its peer is a leader with no other voter, so the log's durability
//! commits.

use std::sync::Arc;

use super::quorum_io::QuorumCmd;
use super::{Links, Now, Outbox, Replica, ReplyTo, Waiter, Waiting};
use crate::mesh::msg::{ConnRef, ToShard};
use crate::proto::ops::Request;
use crate::proto::{ErrorCode, LoggedTxn, OpCode, TxnBody, TxnHeader, Writer};
use crate::quorum::election::ElectionConfig;
use crate::quorum::peer::{Action, Input, Peer, PeerConfig, PeerInit, Role};
use crate::quorum::zab::{Proposal, ZabConfig, COMMIT_LOG_COUNT_DEFAULT};
use crate::quorum::{epoch_of, Members, Sid};
use crate::request;

/// A standalone server's peer: the only voter, no election.
pub(super) fn standalone_config(sid: Sid, tick_ms: i64) -> PeerConfig {
    PeerConfig {
        zab: ZabConfig {
            my_id: sid,
            tick_ms,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: COMMIT_LOG_COUNT_DEFAULT,
            epoch_counter_start: 0,
        },
        members: Members::new([sid], []),
        standalone: true,
        election: ElectionConfig::default(),
        announced_config: None,
    }
}

/// Whether this role preps and numbers txns: the leader (and a standalone server). Learners
/// forward their clients' writes.
pub(super) fn prepares(role: Role) -> bool {
    matches!(role, Role::Leader | Role::Standalone)
}

impl<L: Links> Replica<L> {
    /// An input from the quorum plane's drivers: an election notification, a quorum packet, a
    /// connection that came or went, a snapshot loaded.
    pub fn quorum_input(&mut self, input: Input, now: Now, out: &mut Outbox) {
        if self.failed.is_some() {
            return;
        }
        self.zab(input, now, out);
    }

    /// When the peer's timers next need a `tick` (monotonic ms).
    pub fn next_wake_ms(&self) -> u64 {
        self.peer.next_wake_ms()
    }

    /// Election and ZAB, for status (`mntr`, the admin server, `zkd election status`).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The role clients are served in; None while looking for a leader or syncing with it.
    pub fn serving(&self) -> Option<Role> {
        self.serving
    }

    /// Steps the peer and performs its actions, in order.
    pub(super) fn zab(&mut self, input: Input, now: Now, out: &mut Outbox) {
        let mut acts = std::mem::take(&mut self.acts);
        self.peer.step_into(input, now.mono_ms as u64, &mut acts);
        for a in acts.drain(..) {
            self.perform(a, now, out);
        }
        // Keep the allocation (a nested step may have left its own, empty, in place).
        self.acts = acts;
    }

    pub(super) fn perform(&mut self, a: Action, now: Now, out: &mut Outbox) {
        match a {
            Action::Append(p) => {
                let txn = match self.own.take() {
                    Some(t) if t.hdr.zxid == p.zxid => t,
                    _ => match LoggedTxn::from_bytes(&p.data) {
                        Ok(t) if t.hdr.zxid == p.zxid => Arc::new(t),
                        // The leader sent a txn this server cannot apply; going on would split
                        // this server's history from the ensemble's. Stop; a restart resyncs.
                        Ok(t) => {
                            return self.fail(
                                format!(
                                    "the leader proposed 0x{:x} carrying a txn for 0x{:x}",
                                    p.zxid, t.hdr.zxid
                                ),
                                out,
                            )
                        }
                        Err(e) => {
                            return self.fail(
                                format!("the leader's proposal 0x{:x} does not decode: {e}", p.zxid),
                                out,
                            )
                        }
                    },
                };
                if !prepares(self.serving.unwrap_or(Role::Follower)) {
                    // Numbered by the leader: tracked here so zxids never go back.
                    self.zxids.adopt(txn.hdr.zxid);
                }
                self.append(txn, out);
            }
            Action::Commit { zxid } | Action::FastForward { zxid } => {
                self.committed_zxid = self.committed_zxid.max(zxid);
                self.apply_committed(now, out);
            }
            Action::Request { from, session, cxid, typ, data, authinfo } => {
                self.prep_forwarded(from, session, cxid, typ, &data, &authinfo, now, out)
            }
            Action::Touch { sessions } => {
                for (s, _) in sessions {
                    self.sessions.touch(s, now.mono_ms);
                }
            }
            Action::Revalidate { from, session, timeout: _ } => {
                let valid = self.sessions.is_valid(session);
                if valid {
                    self.sessions.touch(session, now.mono_ms);
                }
                self.zab(Input::RevalidateAnswer { to: from, session, valid }, now, out);
            }
            Action::Revalidated { session, valid } => {
                if let Some((from, timeout_ms)) = self.revalidating.remove(&session) {
                    if !valid {
                        tracing::info!(
                            "Invalid session 0x{session:x}, probably expired (the leader says so)"
                        );
                    }
                    self.finish_session_init(from, session, timeout_ms, valid, now, out);
                }
            }
            Action::SyncDone => {
                let session =
                    self.sync_queue.pop_front().expect("SyncDone answers a sync this replica asked for");
                self.sync_done(session, out);
            }
            Action::Serving { role, epoch, next_zxid } => self.start_serving(role, epoch, next_zxid, now),
            Action::StopServing { reason } => self.stop_serving(reason, out),
            Action::Truncate { zxid } => {
                // Logged but uncommitted txns after `zxid` are gone; the driver truncates the
                // log and reloads the tree (`reset_to`).
                self.proposals.retain(|t| t.hdr.zxid <= zxid);
                self.prep.reset();
                self.truncating = Some(Vec::new());
                out.quorum.push(QuorumCmd::Peer(Action::Truncate { zxid }));
            }
            Action::LoadSnapshot { zxid } => {
                // The leader's snapshot replaces everything; what follows it applies on top.
                self.proposals.clear();
                self.prep.reset();
                out.quorum.push(QuorumCmd::Peer(Action::LoadSnapshot { zxid }));
            }
            Action::SendSnapshot { to, zxid } => {
                let sessions = self.sessions.sessions().map(|s| (s.id, s.timeout_ms)).collect();
                out.quorum.push(QuorumCmd::SendSnapshot { to, zxid, sessions });
            }
            other => out.quorum.push(QuorumCmd::Peer(other)),
        }
    }

    /// Leader (and standalone): proposes a prepped txn. Standalone, nobody reads the proposal's
    /// bytes, so none are made.
    pub(super) fn propose(&mut self, txn: crate::txnlog::SharedTxn, now: Now, out: &mut Outbox) {
        let zxid = txn.hdr.zxid;
        let data =
            if self.serving == Some(Role::Standalone) { self.no_data.clone() } else { txn.to_bytes().into() };
        self.own = Some(txn);
        self.zab(Input::Propose(Proposal { zxid, data }), now, out);
        assert!(self.own.is_none(), "the peer appends what it is given to propose");
    }

    /// Leader: preps a write a learner forwarded, as its own clients' (ZooKeeper's
    /// PrepRequestProcessor runs the same code for both).
    #[allow(clippy::too_many_arguments)]
    fn prep_forwarded(
        &mut self,
        from: Sid,
        session: i64,
        cxid: i32,
        typ: i32,
        data: &[u8],
        authinfo: &[crate::proto::Id],
        now: Now,
        out: &mut Outbox,
    ) {
        let (hdr, body) = match OpCode::from_i32(typ) {
            Some(OpCode::CreateSession) => {
                let Some(timeout) = data.get(..4).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
                else {
                    tracing::warn!("server {from} forwarded a createSession for 0x{session:x} without a timeout; ignored");
                    return;
                };
                let timeout_ms = self.clamp_timeout(timeout);
                self.sessions.add(session, timeout_ms, now.mono_ms);
                let zxid = self.next_zxid();
                let hdr = TxnHeader { client_id: session, cxid, zxid, time: now.wall_ms, txn_type: typ };
                (hdr, TxnBody::CreateSession(crate::proto::CreateSessionTxn { time_out: timeout_ms }))
            }
            Some(OpCode::CloseSession) => self.prep_close(session, cxid, now),
            _ => {
                self.sessions.touch(session, now.mono_ms);
                let zxid = self.next_zxid();
                match Request::decode(typ, data) {
                    Err(e) => {
                        tracing::warn!("server {from} forwarded an undecodable request (type {typ}) of 0x{session:x}: {e}");
                        request::error_txn(session, cxid, zxid, now.wall_ms, ErrorCode::MarshallingError)
                    }
                    Ok(_) if !self.sessions.is_valid(session) => {
                        request::error_txn(session, cxid, zxid, now.wall_ms, ErrorCode::SessionExpired)
                    }
                    Ok(req) => {
                        let ctx = request::WriteCtx {
                            session_id: session,
                            cxid,
                            opcode: typ,
                            auth: authinfo,
                            super_digest: self.cfg.super_digest.as_deref(),
                            skip_acl: self.cfg.skip_acl,
                            extended_types_enabled: self.cfg.extended_types_enabled,
                        };
                        self.prep.prep(&self.tree, &ctx, req, zxid, now.wall_ms)
                    }
                }
            }
        };
        self.log(hdr, body, now, out);
    }

    /// Learner: a client's write goes to the leader; its answer comes with the txn's commit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        from: ConnRef,
        session: i64,
        xid: i32,
        opcode: i32,
        req: Request,
        reply: ReplyTo,
        auth: &Arc<Vec<crate::proto::Id>>,
        now: Now,
        out: &mut Outbox,
    ) {
        let mut w = Writer::new();
        req.encode_write(&mut w).expect("only writes reach the replica's write path");
        self.wait(session, Waiting::Txn(Waiter::Client { from, xid, opcode, reply }), out);
        let input =
            Input::Forward { session, cxid: xid, typ: opcode, data: w.into_inner(), authinfo: auth.to_vec() };
        self.zab(input, now, out);
    }

    /// Learner: a new session is created by the leader (ZooKeeper forwards createSession with
    /// the timeout as its body and cxid 0); the session id is this server's.
    pub(super) fn forward_create_session(
        &mut self,
        session: i64,
        timeout_ms: i32,
        now: Now,
        out: &mut Outbox,
    ) {
        let input = Input::Forward {
            session,
            cxid: 0,
            typ: OpCode::CreateSession as i32,
            data: timeout_ms.to_be_bytes().to_vec(),
            authinfo: Vec::new(),
        };
        self.zab(input, now, out);
    }

    /// Sessions the shards saw active: the leader touches them; a learner reports them to the
    /// leader in its next PING.
    pub(super) fn on_touch(&mut self, sessions: Vec<i64>, now: Now, out: &mut Outbox) {
        if self.decides_sessions() {
            for s in sessions {
                self.sessions.touch(s, now.mono_ms);
            }
        } else if self.serving.is_some() {
            let sessions =
                sessions.into_iter().map(|s| (s, self.sessions.get(s).map_or(0, |x| x.timeout_ms))).collect();
            self.zab(Input::Touch { sessions }, now, out);
        }
    }

    /// Whether sessions are decided here (expiry, validity): on the leader only.
    pub(super) fn decides_sessions(&self) -> bool {
        matches!(self.serving, Some(Role::Leader | Role::Standalone))
    }

    /// A session's oldest sync may be answered.
    pub(super) fn sync_done(&mut self, session: i64, out: &mut Outbox) {
        let found = self.waiting.get_mut(&session).and_then(|q| {
            q.iter_mut().find_map(|w| match w {
                Waiting::Sync { done, .. } | Waiting::Held { done, .. } if !*done => Some(done),
                _ => None,
            })
        });
        if let Some(done) = found {
            *done = true;
            self.advance(session, out);
        }
    }

    fn start_serving(&mut self, role: Role, epoch: u32, next_zxid: Option<i64>, now: Now) {
        self.serving = Some(role);
        if let Some(next) = next_zxid {
            assert!(prepares(role), "only a leader numbers txns");
            assert!(next > self.zxids.exposed(), "the leader's first zxid 0x{next:x} was handed out before");
            self.zxids = super::zxids::Zxids::new(next - 1);
        }
        if role == Role::Leader {
            // Sessions now expire here; each gets a full timeout from now (ZooKeeper's new
            // leader does the same with the sessions of its database).
            let ids: Vec<i64> = self.sessions.sessions().map(|s| s.id).collect();
            for id in ids {
                self.sessions.touch(id, now.mono_ms);
            }
        }
        if role != Role::Standalone {
            tracing::info!("serving clients as {role:?} in epoch {epoch}");
        }
    }

    fn stop_serving(&mut self, reason: String, out: &mut Outbox) {
        tracing::warn!("stopped serving clients: {reason}");
        self.serving = None;
        // Every waiting request dies with its connection; clients reconnect and learn the
        // fate of their writes from the tree.
        self.waiting.clear();
        self.sync_queue.clear();
        self.revalidating.clear();
        self.owners.clear();
        self.own = None;
        self.prep.reset();
        for shard in 0..self.links.shard_count() {
            self.send(out, shard, ToShard::CloseAll { reason: reason.clone() });
        }
    }

    /// A standalone server after its log refused txns (a full disk): those zxids are taken
    /// back, so the peer, which proposed them, starts again from the last durable one.
    pub(super) fn restart_standalone_peer(&mut self, now: Now, out: &mut Outbox) {
        let last = self.zxids.last();
        let init = PeerInit {
            accepted_epoch: epoch_of(last),
            current_epoch: epoch_of(last),
            last_zxid: last,
            log_tail: Vec::new(),
        };
        let (peer, acts) = Peer::new(
            standalone_config(self.cfg.server_id as Sid, self.cfg.tick_ms),
            init,
            now.mono_ms as u64,
        )
        .expect("a standalone peer starts from any state");
        self.peer = peer;
        for a in acts {
            self.perform(a, now, out);
        }
    }

    /// Learner: the leader's snapshot is the live tree now (`LoadSnapshot`); its sessions
    /// replace this server's, and the peer learns it if it still waits for it.
    pub(super) fn snapshot_installed(
        &mut self,
        zxid: i64,
        sessions: Vec<(i64, i32)>,
        current: bool,
        now: Now,
        out: &mut Outbox,
    ) {
        self.sessions.replace_all(sessions, now.mono_ms);
        // The leader's snapshot carries its own /zookeeper/config (zkd's or ZooKeeper's text,
        // or an empty one from an older zkd): the local configuration replaces it.
        super::init_config_node(&self.tree, &self.peer, now);
        self.zxids.adopt(zxid);
        self.committed_zxid = zxid;
        if current {
            self.zab(Input::SnapshotLoaded { zxid }, now, out);
        }
    }

    /// Learner: the TRUNC is on disk and the tree was rebuilt from it; what was held goes to the
    /// log now, and commits apply again.
    pub(super) fn truncated(
        &mut self,
        zxid: i64,
        sessions: Vec<(i64, i32)>,
        last_zxid: i64,
        now: Now,
        out: &mut Outbox,
    ) {
        tracing::info!("log truncated to 0x{zxid:x}; the tree was rebuilt at 0x{last_zxid:x}");
        // The rebuilt tree has /zookeeper/config as its snapshot had it: filled again.
        super::init_config_node(&self.tree, &self.peer, now);
        self.sessions.replace_all(sessions, now.mono_ms);
        // What this server had applied beyond `zxid` is gone with the reload; the proposals it
        // keeps are those at or below it that were not applied yet, and what came after TRUNC.
        self.proposals.retain(|t| t.hdr.zxid > last_zxid);
        if let Some(held) = self.truncating.take() {
            out.to_log.extend(held);
        }
        self.apply_committed(now, out);
    }

    /// Stops the node: nothing more is answered (see `ToReplica::LogFailed`).
    fn fail(&mut self, reason: String, out: &mut Outbox) {
        out.fatal = Some(format!("{reason}; stopping"));
        self.failed = Some(reason);
    }
}
