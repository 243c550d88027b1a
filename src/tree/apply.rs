//! Applying txns: the write path (`apply`, the replica's and recovery's), which write-locks
//! every stripe a txn touches and changes nodes, counters and bookkeeping under those locks.

use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use super::node::{self, NodePtr};
use super::quota::{self, LIMIT_NODE, QUOTA_ROOT, STAT_NODE};
use super::{
    child_name, ephemeral_type, parent_of, stripe_of, ttl_owner, DataTree, EphemeralType, Locked, WatchSink,
    CONTAINER_OWNER,
};
use crate::proto::{Acl, CreateTxn, ErrorCode, EventType, OpCode, Stat, StatPersisted, TxnBody, TxnHeader};

/// Outcome of one applied (sub-)txn, as ZooKeeper's `ProcessTxnResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpOutcome {
    /// The txn type it was applied as (`OpCode::Error` for failed multi members).
    pub txn_type: i32,
    pub err: ErrorCode,
    pub path: Option<String>,
    pub stat: Option<Stat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    pub err: ErrorCode,
    /// The created node's path (creates only: the one reply that carries a path).
    pub path: Option<String>,
    pub stat: Option<Stat>,
    /// One per member of a multi.
    pub multi: Vec<OpOutcome>,
}

impl DataTree {
    /// The stripes of every path a txn may touch (for locking): targets, parents, quota stat
    /// nodes. Stripe numbers, not paths: no copy of a path on the write path.
    fn touched(&self, hdr: &TxnHeader, body: &TxnBody, out: &mut SmallVec<[usize; 4]>) {
        let add = |p: &str, out: &mut SmallVec<[usize; 4]>| {
            out.push(stripe_of(p));
            if p != "/" {
                out.push(stripe_of(parent_of(p)));
            }
            if let Some(q) = self.quota_prefix(p) {
                let stat = quota::quota_node(&q, STAT_NODE);
                // Its parent too: rewriting the stats may reallocate the node.
                out.push(stripe_of(parent_of(&stat)));
                out.push(stripe_of(&stat));
            }
            // Creating a limits/stats node changes the quota bookkeeping of the quota'd path.
            if p.starts_with(QUOTA_ROOT) {
                let name = child_name(p);
                if name == STAT_NODE || name == LIMIT_NODE {
                    out.push(stripe_of(&format!("{}/{STAT_NODE}", parent_of(p))));
                }
            }
        };
        match body {
            TxnBody::Create(t) => add(&t.path, out),
            TxnBody::CreateContainer(t) => add(&t.path, out),
            TxnBody::CreateTtl(t) => add(&t.path, out),
            TxnBody::Delete(t) => add(&t.path, out),
            TxnBody::SetData(t) => add(&t.path, out),
            TxnBody::SetAcl(t) => add(&t.path, out),
            TxnBody::Check(t) => add(&t.path, out),
            TxnBody::CloseSession(t) => {
                let paths = if t.paths2_delete.is_empty() {
                    self.ephemerals(hdr.client_id)
                } else {
                    t.paths2_delete.clone()
                };
                for p in &paths {
                    add(p, out);
                }
            }
            TxnBody::Multi(ops) => {
                for (_, b) in ops {
                    self.touched(hdr, b, out);
                }
            }
            _ => {}
        }
    }

    /// Applies one logged txn, as ZooKeeper's `DataTree.processTxn`. Only the replica (and
    /// recovery) call this, one txn at a time.
    pub fn apply(&self, hdr: &TxnHeader, body: &TxnBody, sink: &mut dyn WatchSink) -> ApplyResult {
        let mut idx = SmallVec::<[usize; 4]>::new();
        self.touched(hdr, body, &mut idx);
        idx.sort_unstable();
        idx.dedup();
        let guards = idx.iter().map(|i| self.stripes[*i].nodes.write()).collect();
        let mut locked = Locked { idx, guards };
        let r = self.apply_locked(&mut locked, hdr, body, sink);
        if let (ErrorCode::NodeExists, TxnBody::Create(t)) = (r.err, body) {
            if hdr.txn_type == OpCode::Create as i32 {
                self.fix_parent_after_node_exists(&mut locked, &t.path, t.parent_c_version, hdr.zxid);
            }
        }
        // Publish before the locks drop: a read that sees the change reports this zxid or later.
        self.last_zxid.fetch_max(hdr.zxid, Ordering::AcqRel);
        self.digest_log.lock().record(hdr.zxid, self.digest());
        drop(locked);
        r
    }

    /// Fills `/zookeeper/config` with the ensemble's configuration, as ZooKeeper 3.8 does
    /// whenever it takes a quorum configuration into its database (`initConfigInZKDatabase`:
    /// the dynamic-config text, `server.N=...` lines and `version=<hex>`, with data version -1,
    /// mzxid = the configuration's version and mtime = now). Not a txn: no zxid, no watch; every
    /// server does it for itself, so trees compare equal across server kinds.
    pub fn init_config(&self, text: &[u8], config_version: i64, now_ms: i64) {
        const CONFIG: &str = "/zookeeper/config";
        let mut idx: SmallVec<[usize; 4]> =
            [stripe_of(CONFIG), stripe_of(parent_of(CONFIG))].into_iter().collect();
        idx.sort_unstable();
        idx.dedup();
        let guards = idx.iter().map(|i| self.stripes[*i].nodes.write()).collect();
        let mut l = Locked { idx, guards };
        let Some(n) = l.get(CONFIG) else {
            return;
        };
        let old = n.data_len() as i64;
        let n = l.set_node_data(n, Some(text));
        n.set_modified(config_version, now_ms, -1);
        self.data_size.fetch_add(n.data_len() as i64 - old, Ordering::Relaxed);
    }

    fn apply_locked(
        &self,
        l: &mut Locked<'_>,
        hdr: &TxnHeader,
        body: &TxnBody,
        sink: &mut dyn WatchSink,
    ) -> ApplyResult {
        let mut r = ApplyResult { err: ErrorCode::Ok, path: None, stat: None, multi: Vec::new() };
        let res = match body {
            TxnBody::Create(t) => {
                r.path = Some(t.path.clone());
                let owner = if t.ephemeral { hdr.client_id } else { 0 };
                self.create_node(l, t, owner, hdr, sink)
            }
            TxnBody::CreateContainer(t) => {
                r.path = Some(t.path.clone());
                let c = CreateTxn {
                    path: t.path.clone(),
                    data: t.data.clone(),
                    acl: t.acl.clone(),
                    ephemeral: false,
                    parent_c_version: t.parent_c_version,
                };
                self.create_node(l, &c, CONTAINER_OWNER, hdr, sink)
            }
            TxnBody::CreateTtl(t) => {
                r.path = Some(t.path.clone());
                let c = CreateTxn {
                    path: t.path.clone(),
                    data: t.data.clone(),
                    acl: t.acl.clone(),
                    ephemeral: false,
                    parent_c_version: t.parent_c_version,
                };
                self.create_node(l, &c, ttl_owner(t.ttl), hdr, sink)
            }
            TxnBody::Delete(t) => self.delete_node(l, &t.path, hdr.zxid, sink).map(|_| None),
            TxnBody::SetData(t) => {
                self.set_data(l, &t.path, t.data.as_deref(), t.version, hdr, sink).map(Some)
            }
            TxnBody::SetAcl(t) => self.set_acl(l, &t.path, &t.acl, t.version).map(Some),
            TxnBody::Check(_) => Ok(None),
            TxnBody::CloseSession(t) => {
                let paths = if t.paths2_delete.is_empty() {
                    self.ephemerals(hdr.client_id)
                } else {
                    t.paths2_delete.clone()
                };
                for p in paths {
                    // Already gone (e.g. replay over a fuzzy snapshot): nothing to do.
                    let _ = self.delete_node(l, &p, hdr.zxid, sink);
                }
                self.ephemerals.lock().remove(&hdr.client_id);
                Ok(None)
            }
            TxnBody::Error(e) => Err(ErrorCode::from_i32(e.err).unwrap_or(ErrorCode::SystemError)),
            TxnBody::Multi(ops) => {
                let failed = ops.iter().any(|(ty, _)| *ty == OpCode::Error as i32);
                let mut post_failed = false;
                for (ty, b) in ops {
                    let (ty, sub) = if failed && *ty != OpCode::Error as i32 {
                        // A failed multi applies nothing: members before the failure report Ok,
                        // as ZooKeeper rewrites them.
                        (
                            OpCode::Error as i32,
                            TxnBody::Error(crate::proto::ErrorTxn {
                                err: if post_failed { ErrorCode::RuntimeInconsistency as i32 } else { 0 },
                            }),
                        )
                    } else {
                        if *ty == OpCode::Error as i32 {
                            post_failed = true;
                        }
                        (*ty, b.clone())
                    };
                    let sub_hdr = TxnHeader { txn_type: ty, ..hdr.clone() };
                    let sr = self.apply_locked(l, &sub_hdr, &sub, sink);
                    if sr.err != ErrorCode::Ok && r.err == ErrorCode::Ok {
                        r.err = sr.err;
                    }
                    r.multi.push(OpOutcome { txn_type: ty, err: sr.err, path: sr.path, stat: sr.stat });
                }
                Ok(None)
            }
            TxnBody::CreateSession(_) | TxnBody::Other(_) => Ok(None),
        };
        match res {
            Ok(stat) => {
                if stat.is_some() {
                    r.stat = stat;
                }
            }
            Err(e) => r.err = e,
        }
        r
    }

    /// ZooKeeper's `setCversionPzxid` after a create (type create only) failed with NodeExists:
    /// replaying over a fuzzy snapshot, the child may be there (re-created by another session
    /// after its parent was written) while the parent's cversion and pzxid are older.
    fn fix_parent_after_node_exists(&self, l: &mut Locked<'_>, path: &str, parent_c_version: i32, zxid: i64) {
        if path == "/" || !super::well_formed_path(path) {
            return;
        }
        let Some(p) = l.get(parent_of(path)) else { return };
        let cv = if parent_c_version == -1 { p.cversion() + 1 } else { parent_c_version };
        if cv > p.cversion() {
            self.digest_remove(p);
            p.set_child_change(cv, zxid);
            self.digest_add(p);
        }
    }

    fn create_node(
        &self,
        l: &mut Locked<'_>,
        t: &CreateTxn,
        owner: i64,
        hdr: &TxnHeader,
        sink: &mut dyn WatchSink,
    ) -> Result<Option<Stat>, ErrorCode> {
        let path = t.path.as_str();
        // Only a log or a leader can bring a malformed path here (prep validates clients').
        if path == "/" || !super::well_formed_path(path) {
            return Err(ErrorCode::BadArguments);
        }
        let parent = parent_of(path);
        let name = child_name(path);
        let zxid = hdr.zxid;
        if path.len() > node::MAX_PATH_LEN || t.data.as_ref().is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
            return Err(ErrorCode::BadArguments);
        }
        let p = l.get(parent).ok_or(ErrorCode::NoNode)?;
        // A node is in its parent's child list exactly when it is in its stripe's table.
        if l.get(path).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let parent_acl_id = p.acl();
        let mut pcv = t.parent_c_version;
        if pcv == -1 {
            pcv = p.cversion() + 1;
        }
        // Replays over a fuzzy snapshot may see a parent that is already newer.
        if pcv > p.cversion() {
            self.digest_remove(p);
            p.set_child_change(pcv, zxid);
            self.digest_add(p);
        }
        let acl = self.acls.write().intern(&t.acl);
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: hdr.time,
            mtime: hdr.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        };
        let bytes = t.data.as_ref().map_or(0, |d| d.len() as i64);
        let node = NodePtr::new(path, t.data.as_deref(), acl, &stat);
        let out = node.stat(0);
        l.map(path).insert(node);
        l.map(parent).child_list_mut(p).push(node);
        self.digest_add(node);
        self.node_count.fetch_add(1, Ordering::Relaxed);
        self.data_size.fetch_add(path.len() as i64 + bytes, Ordering::Relaxed);
        self.track_owner(path, owner);
        // Quota bookkeeping (ZooKeeper: the limits node registers the path; the stats node gets
        // the current totals).
        if let Some(quoted) = parent.strip_prefix(QUOTA_ROOT) {
            let quoted = if quoted.is_empty() { "/" } else { quoted };
            if name == LIMIT_NODE {
                self.quota_paths.write().insert(quoted.to_owned());
            }
            if name == STAT_NODE {
                self.refresh_quota_stats(l, quoted);
            }
        }
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, bytes, 1);
        }
        let (node_acl, parent_acl) = {
            let a = self.acls.read();
            (a.get(acl), a.get(parent_acl_id))
        };
        self.trigger(false, path, EventType::NodeCreated, &[], &node_acl, sink);
        self.trigger(true, parent, EventType::NodeChildrenChanged, &[], &parent_acl, sink);
        Ok(Some(out))
    }

    fn delete_node(
        &self,
        l: &mut Locked<'_>,
        path: &str,
        zxid: i64,
        sink: &mut dyn WatchSink,
    ) -> Result<(), ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::BadArguments);
        }
        let parent = parent_of(path);
        // As ZooKeeper: the parent's pzxid moves even if the child is already gone (replay over a
        // fuzzy snapshot).
        let p = l.get(parent).ok_or(ErrorCode::NoNode)?;
        let parent_acl_id = p.acl();
        if zxid > p.pzxid() {
            self.digest_remove(p);
            p.set_pzxid(zxid);
            self.digest_add(p);
        }
        let node = l.map(path).remove(path).ok_or(ErrorCode::NoNode)?;
        self.digest_remove(node);
        l.map(parent).child_list_mut(p).remove(node);
        let (node_acl, parent_acl) = {
            let a = self.acls.read();
            (a.get(node.acl()), a.get(parent_acl_id))
        };
        self.acls.write().remove_usage(node.acl());
        let bytes = node.data_len() as i64;
        let owner = node.owner();
        // SAFETY: out of its table and its parent's list, under both stripes' write locks.
        unsafe { node.free() };
        self.node_count.fetch_sub(1, Ordering::Relaxed);
        self.data_size.fetch_sub(path.len() as i64 + bytes, Ordering::Relaxed);
        match ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.lock().remove(path);
            }
            EphemeralType::Ttl(_) => {
                self.ttls.lock().remove(path);
            }
            EphemeralType::Normal => {
                let mut e = self.ephemerals.lock();
                if let Some(s) = e.get_mut(&owner) {
                    s.remove(path);
                }
            }
            EphemeralType::Void => {}
        }
        if parent.starts_with(QUOTA_ROOT) && child_name(path) == LIMIT_NODE {
            let quoted = &parent[QUOTA_ROOT.len()..];
            self.quota_paths.write().remove(if quoted.is_empty() { "/" } else { quoted });
        }
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, -bytes, -1);
        }
        let fired = self.trigger(false, path, EventType::NodeDeleted, &[], &node_acl, sink);
        self.trigger(true, path, EventType::NodeDeleted, &fired, &node_acl, sink);
        self.trigger(true, parent, EventType::NodeChildrenChanged, &[], &parent_acl, sink);
        Ok(())
    }

    fn set_data(
        &self,
        l: &mut Locked<'_>,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        hdr: &TxnHeader,
        sink: &mut dyn WatchSink,
    ) -> Result<Stat, ErrorCode> {
        let (old, new, stat, acl_id) = {
            let n = l.get(path).ok_or(ErrorCode::NoNode)?;
            if data.is_some_and(|d| d.len() > node::MAX_DATA_LEN) {
                return Err(ErrorCode::BadArguments);
            }
            let old = n.data_len() as i64;
            self.digest_remove(n);
            let n = l.set_node_data(n, data);
            n.set_modified(hdr.zxid, hdr.time, version);
            self.digest_add(n);
            (old, n.data_len() as i64, l.map(path).stat(n), n.acl())
        };
        self.data_size.fetch_add(new - old, Ordering::Relaxed);
        if let Some(q) = self.quota_prefix(path) {
            self.update_quota_stat(l, &q, new - old, 0);
        }
        let acl = self.acls.read().get(acl_id);
        self.trigger(false, path, EventType::NodeDataChanged, &[], &acl, sink);
        Ok(stat)
    }

    fn set_acl(&self, l: &mut Locked<'_>, path: &str, acl: &[Acl], version: i32) -> Result<Stat, ErrorCode> {
        let new_id = self.acls.write().intern(acl);
        let n = match l.get(path) {
            Some(n) => n,
            None => {
                self.acls.write().remove_usage(new_id);
                return Err(ErrorCode::NoNode);
            }
        };
        let old = n.acl();
        self.digest_remove(n);
        n.set_acl(new_id, version);
        self.digest_add(n);
        let st = l.map(path).stat(n);
        self.acls.write().remove_usage(old);
        Ok(st)
    }
}
