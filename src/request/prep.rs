//! Prep: a client write becomes a txn, as ZooKeeper's `PrepRequestProcessor`. Validation runs
//! against the committed tree *plus* the effects of txns already prepped but not yet applied
//! (the outstanding-changes overlay), so writes pipeline. Every failure is an ErrorTxn with the
//! exact code ZooKeeper gives, checked in ZooKeeper's order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::proto::ops::{MultiOp, Request};
use crate::proto::*;
use crate::tree::digest::NodeDigestState;
use crate::tree::{
    ephemeral_type, parent_of, ttl_owner, DataTree, EphemeralType, CONTAINER_OWNER, MAX_TTL_MS,
};

use super::acl::{check_acl, fixup_acl, fixup_acl_owned};
use super::WriteCtx;

/// ZooKeeper's `ChangeRecord`: what a path will look like once outstanding txns apply.
#[derive(Debug, Clone)]
struct Record {
    zxid: i64,
    /// None: the node is (being) deleted.
    node: Option<NodeState>,
}

#[derive(Debug, Clone)]
struct NodeState {
    version: i32,
    aversion: i32,
    /// Stored (creation-counting) cversion.
    cversion: i32,
    ephemeral_owner: i64,
    child_count: i32,
    data_len: i64,
    acl: Arc<Vec<Acl>>,
    /// What the node's digest depends on (None while digests are off).
    dg: Option<NodeDigestState>,
}

#[derive(Default)]
pub struct Prep {
    /// Latest record per path. The path is shared with `order` (one allocation per record).
    latest: HashMap<Arc<str>, Record, ahash::RandomState>,
    /// Every record in prep order: (zxid, path, ephemeral owner if it creates/keeps a node).
    order: VecDeque<(i64, Arc<str>, Option<i64>)>,
    /// The ACL of the last node prepped: clients mostly create with one ACL, so its overlay
    /// record shares this instead of copying the list each time.
    last_acl: Option<Arc<Vec<Acl>>>,
    pub enforce_quota: bool,
    /// The tree's digest once every txn prepped so far is applied (ZooKeeper's precalculated
    /// digest); meaningful while `order` is not empty, else the tree's own is.
    pred: u64,
}

fn bad(_: &str) -> ErrorCode {
    ErrorCode::BadArguments
}

/// ZooKeeper's `PathUtils.validatePath` (Java chars: anything outside the BMP is a surrogate pair,
/// which ZooKeeper rejects).
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    // One pass over the chars with the two before and the one after (no copy: it runs on
    // every create and setData).
    let mut it = path.chars().peekable();
    if it.next() != Some('/') {
        return Err(bad(path));
    }
    if it.peek().is_none() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(bad(path));
    }
    let (mut before_last, mut last) = ('\0', '/');
    while let Some(ch) = it.next() {
        let segment_ends = it.peek().is_none_or(|&n| n == '/');
        let u = ch as u32;
        let invalid = ch == '\0'
            || (ch == '/' && last == '/')
            || (ch == '.' && last == '.' && before_last == '/' && segment_ends)
            || (ch == '.' && last == '/' && segment_ends)
            || (0x01..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || u >= 0xfff0;
        if invalid {
            return Err(bad(path));
        }
        before_last = last;
        last = ch;
    }
    Ok(())
}

fn parent_path(path: &str) -> Result<&str, ErrorCode> {
    if !path.contains('/') || path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    Ok(parent_of(path))
}

fn is_special(path: &str) -> bool {
    matches!(path, "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config")
}

fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

impl Prep {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every outstanding change (after a full disk failed them all).
    pub fn reset(&mut self) {
        self.latest.clear();
        self.order.clear();
    }

    /// Drops records of txns applied up to `zxid` (the tree now shows them).
    pub fn applied(&mut self, zxid: i64) {
        while let Some((z, _, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let (z, path, _) = self.order.pop_front().unwrap();
            if self.latest.get(&*path).is_some_and(|r| r.zxid == z) {
                self.latest.remove(&*path);
            }
        }
    }

    /// The digest the tree will have once every txn prepped so far is applied: what the txn
    /// prepped last carries (`TxnDigest.treeDigest`).
    pub fn digest(&self, tree: &DataTree) -> u64 {
        if self.order.is_empty() {
            tree.digest()
        } else {
            self.pred
        }
    }

    /// Before a txn is prepped: with nothing in flight, the tree's digest is the starting point.
    fn begin(&mut self, tree: &DataTree) {
        if self.order.is_empty() {
            self.pred = tree.digest();
        }
    }

    /// A node's digest changes from `old` to `new` (None: absent, or digests off).
    fn moved(&mut self, old: Option<&NodeDigestState>, new: Option<&NodeDigestState>) {
        let (o, n) = (old.map_or(0, NodeDigestState::digest), new.map_or(0, NodeDigestState::digest));
        self.pred = self.pred.wrapping_sub(o).wrapping_add(n);
    }

    fn record(&self, tree: &DataTree, path: &str) -> Result<NodeState, ErrorCode> {
        if let Some(r) = self.latest.get(path) {
            return r.node.clone().ok_or(ErrorCode::NoNode);
        }
        let m = tree.meta(path).ok_or(ErrorCode::NoNode)?;
        let dg = if crate::tree::digest::enabled() { tree.digest_state(path) } else { None };
        Ok(NodeState {
            dg,
            version: m.stat.version,
            aversion: m.stat.aversion,
            cversion: m.stored_cversion,
            ephemeral_owner: tree_owner(tree, path, m.stat.ephemeral_owner),
            child_count: m.stat.num_children,
            data_len: m.stat.data_length as i64,
            acl: m.acl,
        })
    }

    fn add(&mut self, zxid: i64, path: &str, node: Option<NodeState>) {
        let owner = node.as_ref().map(|n| n.ephemeral_owner);
        let path: Arc<str> = Arc::from(path);
        self.order.push_back((zxid, path.clone(), owner));
        self.latest.insert(path, Record { zxid, node });
    }

    /// A child of `p` is deleted by txn `zxid`: its pzxid moves forwards (its digest with it).
    fn child_removed(&mut self, p: &mut NodeState, zxid: i64) {
        if let Some(old) = p.dg.take() {
            let mut new = old.clone();
            if zxid > new.stat.pzxid {
                new.stat.pzxid = zxid;
            }
            self.moved(Some(&old), Some(&new));
            p.dg = Some(new);
        }
    }

    /// `acl` as a shared list: the last one again if it is equal.
    fn shared_acl(&mut self, acl: &[Acl]) -> Arc<Vec<Acl>> {
        match &self.last_acl {
            Some(a) if a.as_slice() == acl => a.clone(),
            _ => {
                let a = Arc::new(acl.to_vec());
                self.last_acl = Some(a.clone());
                a
            }
        }
    }

    /// Preps a client write. The header's type becomes `Error` on failure.
    pub fn prep(
        &mut self,
        tree: &DataTree,
        ctx: &WriteCtx<'_>,
        req: Request,
        zxid: i64,
        now_ms: i64,
    ) -> (TxnHeader, TxnBody) {
        let mut hdr =
            TxnHeader { client_id: ctx.session_id, cxid: ctx.cxid, zxid, time: now_ms, txn_type: ctx.opcode };
        self.begin(tree);
        let res = match req {
            Request::Multi(ops) => Ok(self.prep_multi(tree, ctx, ops, zxid, now_ms)),
            Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
            _ => self.prep_one(tree, ctx, req, zxid, now_ms),
        };
        match res {
            Ok(body) => (hdr, body),
            Err(e) => {
                hdr.txn_type = OpCode::Error as i32;
                (hdr, TxnBody::Error(ErrorTxn { err: e as i32 }))
            }
        }
    }

    fn prep_multi(
        &mut self,
        tree: &DataTree,
        ctx: &WriteCtx<'_>,
        ops: Vec<MultiOp>,
        zxid: i64,
        now_ms: i64,
    ) -> TxnBody {
        let saved_latest = self.latest.clone();
        let saved_len = self.order.len();
        let saved_pred = self.pred;
        let mut out = Vec::with_capacity(ops.len());
        let mut failed = false;
        for op in ops {
            if failed {
                out.push((
                    OpCode::Error as i32,
                    TxnBody::Error(ErrorTxn { err: ErrorCode::RuntimeInconsistency as i32 }),
                ));
                continue;
            }
            let opcode = op.opcode() as i32;
            let req = match op {
                MultiOp::Create(o, r) => Request::Create(o, r),
                MultiOp::CreateTtl(r) => Request::CreateTtl(r),
                MultiOp::Delete(r) => Request::Delete(r),
                MultiOp::SetData(r) => Request::SetData(r),
                MultiOp::Check(r) => Request::Check(r),
            };
            let sub = WriteCtx { opcode, ..*ctx };
            match self.prep_one(tree, &sub, req, zxid, now_ms) {
                Ok(b) => out.push((opcode, b)),
                Err(e) => {
                    failed = true;
                    out.push((OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: e as i32 })));
                    // Roll back what this multi added to the overlay.
                    self.latest = saved_latest.clone();
                    self.order.truncate(saved_len);
                    self.pred = saved_pred;
                }
            }
        }
        TxnBody::Multi(out)
    }

    fn check(&self, ctx: &WriteCtx<'_>, acl: &[Acl], perm: i32) -> Result<(), ErrorCode> {
        if ctx.skip_acl {
            return Ok(());
        }
        check_acl(acl, perm, ctx.auth, ctx.super_digest)
    }

    fn prep_one(
        &mut self,
        tree: &DataTree,
        ctx: &WriteCtx<'_>,
        req: Request,
        zxid: i64,
        now_ms: i64,
    ) -> Result<TxnBody, ErrorCode> {
        match req {
            Request::Create(op, r) => {
                self.prep_create(tree, ctx, op, r.path, r.data, r.acl, r.flags, -1, zxid, now_ms)
            }
            Request::CreateTtl(r) => self.prep_create(
                tree,
                ctx,
                OpCode::CreateTtl,
                r.path,
                r.data,
                r.acl,
                r.flags,
                r.ttl,
                zxid,
                now_ms,
            ),
            Request::Delete(r) => {
                let path = r.path.as_str();
                let parent = parent_path(path)?;
                if is_special(path) {
                    return Err(ErrorCode::BadArguments);
                }
                let mut p = self.record(tree, parent)?;
                self.check(ctx, &p.acl, perms::DELETE)?;
                let n = self.record(tree, path)?;
                check_version(n.version, r.version)?;
                if n.child_count > 0 {
                    return Err(ErrorCode::NotEmpty);
                }
                p.child_count -= 1;
                self.child_removed(&mut p, zxid);
                self.moved(n.dg.as_ref(), None);
                self.add(zxid, parent, Some(p));
                self.add(zxid, path, None);
                Ok(TxnBody::Delete(DeleteTxn { path: r.path }))
            }
            Request::SetData(r) => {
                validate_path(&r.path)?;
                let mut n = self.record(tree, &r.path)?;
                self.check(ctx, &n.acl, perms::WRITE)?;
                let new_len = r.data.as_ref().map_or(0, |d| d.len() as i64);
                self.check_quota(tree, &r.path, new_len - n.data_len, 0)?;
                let version = check_version(n.version, r.version)?;
                n.version = version;
                n.data_len = new_len;
                if let Some(old) = n.dg.take() {
                    let mut new = old.with_data(&r.path, r.data.as_deref());
                    new.stat.mzxid = zxid;
                    new.stat.mtime = now_ms;
                    new.stat.version = version;
                    self.moved(Some(&old), Some(&new));
                    n.dg = Some(new);
                }
                self.add(zxid, &r.path, Some(n));
                Ok(TxnBody::SetData(SetDataTxn { path: r.path, data: r.data, version }))
            }
            Request::SetAcl(r) => {
                validate_path(&r.path)?;
                let acl = fixup_acl(&r.acl, ctx.auth)?;
                let mut n = self.record(tree, &r.path)?;
                self.check(ctx, &n.acl, perms::ADMIN)?;
                let version = check_version(n.aversion, r.version)?;
                n.aversion = version;
                n.acl = Arc::new(acl.clone());
                if let Some(old) = n.dg.take() {
                    let mut new = old.clone();
                    new.stat.aversion = version;
                    self.moved(Some(&old), Some(&new));
                    n.dg = Some(new);
                }
                self.add(zxid, &r.path, Some(n));
                Ok(TxnBody::SetAcl(SetAclTxn { path: r.path, acl, version }))
            }
            Request::Check(r) => {
                validate_path(&r.path)?;
                let n = self.record(tree, &r.path)?;
                self.check(ctx, &n.acl, perms::READ)?;
                let version = check_version(n.version, r.version)?;
                Ok(TxnBody::Check(CheckVersionTxn { path: r.path, version }))
            }
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prep_create(
        &mut self,
        tree: &DataTree,
        ctx: &WriteCtx<'_>,
        op: OpCode,
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl: i64,
        zxid: i64,
        now_ms: i64,
    ) -> Result<TxnBody, ErrorCode> {
        let mode = CreateMode::from_flag(flags).ok_or(ErrorCode::BadArguments)?;
        // validateCreateRequest
        if mode.is_ttl() && !ctx.extended_types_enabled {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl_ok = if mode.is_ttl() { ttl > 0 && ttl <= MAX_TTL_MS } else { ttl < 0 };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        // validatePathForCreate
        let parent = parent_path(&path)?;
        let acl = fixup_acl_owned(acl, ctx.auth)?;
        let shared_acl = self.shared_acl(&acl);
        let mut p = self.record(tree, parent)?;
        self.check(ctx, &p.acl, perms::CREATE)?;
        let full = if mode.is_sequential() { format!("{path}{:010}", p.cversion) } else { path.clone() };
        validate_path(&full)?;
        if self.record(tree, &full).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if ephemeral_type(p.ephemeral_owner) == EphemeralType::Normal {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let new_cversion = p.cversion + 1;
        let len = data.as_ref().map_or(0, |d| d.len() as i64);
        self.check_quota(tree, &full, len, 1)?;
        let owner = if mode.is_container() {
            CONTAINER_OWNER
        } else if mode.is_ttl() {
            ttl_owner(ttl)
        } else if mode.is_ephemeral() {
            ctx.session_id
        } else {
            0
        };
        p.child_count += 1;
        p.cversion = new_cversion;
        let mut dg = None;
        if let Some(old) = p.dg.take() {
            // As the tree applies it: the parent's cversion and pzxid move only forwards.
            let mut new = old.clone();
            if new_cversion > new.stat.cversion {
                new.stat.cversion = new_cversion;
                new.stat.pzxid = zxid;
            }
            self.moved(Some(&old), Some(&new));
            p.dg = Some(new);
            let stat = StatPersisted {
                czxid: zxid,
                mzxid: zxid,
                ctime: now_ms,
                mtime: now_ms,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: owner,
                pzxid: zxid,
            };
            let child = NodeDigestState::new(&full, data.as_deref(), stat);
            self.moved(None, Some(&child));
            dg = Some(child);
        }
        self.add(zxid, if parent.is_empty() { "/" } else { parent }, Some(p));
        self.add(
            zxid,
            &full,
            Some(NodeState {
                dg,
                version: 0,
                aversion: 0,
                cversion: 0,
                ephemeral_owner: owner,
                child_count: 0,
                data_len: len,
                acl: shared_acl,
            }),
        );
        // The request's path and data move into the txn (no copies).
        let ephemeral = mode.is_ephemeral();
        let body = match op {
            OpCode::CreateContainer => TxnBody::CreateContainer(CreateContainerTxn {
                path: full,
                data,
                acl,
                parent_c_version: new_cversion,
            }),
            OpCode::CreateTtl => TxnBody::CreateTtl(CreateTtlTxn {
                path: full,
                data,
                acl,
                parent_c_version: new_cversion,
                ttl,
            }),
            _ => TxnBody::Create(CreateTxn {
                path: full,
                data,
                acl,
                ephemeral,
                parent_c_version: new_cversion,
            }),
        };
        Ok(body)
    }

    /// ZooKeeper 3.7+ hard quota limits (only with `enforceQuota`, off by default there too).
    fn check_quota(&self, tree: &DataTree, path: &str, bytes: i64, count: i64) -> Result<(), ErrorCode> {
        if !self.enforce_quota {
            return Ok(());
        }
        let Some((q, limits, stats)) = tree.quota_for(path) else { return Ok(()) };
        let count_hard = limits.get("countHardLimit");
        let bytes_hard = limits.get("byteHardLimit");
        if count != 0 && count_hard > -1 && stats.count() + count > count_hard {
            tracing::warn!(
                "Quota exceeded: {q} [current count={}, hardCountLimit={count_hard}]",
                stats.count() + count
            );
            return Err(ErrorCode::QuotaExceeded);
        }
        if bytes != 0 && bytes_hard > -1 && stats.bytes() + bytes > bytes_hard {
            tracing::warn!(
                "Quota exceeded: {q} [current bytes={}, hardByteLimit={bytes_hard}]",
                stats.bytes() + bytes
            );
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(())
    }

    /// closeSession: deletes the session's ephemerals, including ones created by txns still in
    /// flight, as ZooKeeper computes `paths2Delete`.
    pub fn prep_close_session(
        &mut self,
        tree: &DataTree,
        session: i64,
        cxid: i32,
        zxid: i64,
        now_ms: i64,
    ) -> (TxnHeader, TxnBody) {
        // ZooKeeper iterates a clone of the session's HashSet with pending changes applied; the
        // order decides paths2Delete and so the order of the deletions' watch events.
        let mut es = tree.ephemerals_set(session);
        for (_, path, owner) in &self.order {
            match owner {
                None => {
                    es.remove(path);
                }
                Some(o) if *o == session => {
                    es.insert(path);
                }
                _ => {}
            }
        }
        let es: Vec<String> = es.ordered().into_iter().map(str::to_owned).collect();
        self.begin(tree);
        for p in &es {
            if crate::tree::digest::enabled() {
                // The tree moves each parent's pzxid (even for a child already gone), as
                // ZooKeeper's prep records it when digests are on; the parent's child count is
                // left as it is, as there.
                if let Ok(mut parent) = self.record(tree, parent_of(p)) {
                    self.child_removed(&mut parent, zxid);
                    self.add(zxid, parent_of(p), Some(parent));
                }
                if let Ok(n) = self.record(tree, p) {
                    self.moved(n.dg.as_ref(), None);
                }
            }
            self.add(zxid, p, None);
        }
        let hdr =
            TxnHeader { client_id: session, cxid, zxid, time: now_ms, txn_type: OpCode::CloseSession as i32 };
        (hdr, TxnBody::CloseSession(CloseSessionTxn { paths2_delete: es }))
    }

    /// The container manager's deleteContainer (session 0): only an empty container or TTL node.
    pub fn prep_delete_container(
        &mut self,
        tree: &DataTree,
        path: &str,
        zxid: i64,
        now_ms: i64,
    ) -> (TxnHeader, TxnBody) {
        let mut hdr =
            TxnHeader { client_id: 0, cxid: 0, zxid, time: now_ms, txn_type: OpCode::DeleteContainer as i32 };
        self.begin(tree);
        let res = (|| {
            let parent = parent_path(path)?;
            let n = self.record(tree, path)?;
            if n.child_count > 0 {
                return Err(ErrorCode::NotEmpty);
            }
            if ephemeral_type(n.ephemeral_owner) == EphemeralType::Normal {
                return Err(ErrorCode::BadVersion);
            }
            let mut p = self.record(tree, parent)?;
            p.child_count -= 1;
            self.child_removed(&mut p, zxid);
            self.moved(n.dg.as_ref(), None);
            self.add(zxid, parent, Some(p));
            self.add(zxid, path, None);
            Ok(())
        })();
        match res {
            Ok(()) => (hdr, TxnBody::Delete(DeleteTxn { path: path.into() })),
            Err(e) => {
                hdr.txn_type = OpCode::Error as i32;
                (hdr, TxnBody::Error(ErrorTxn { err: e as i32 }))
            }
        }
    }
}

/// The tree's Stat hides container/TTL owners (shows 0); prep needs the real one to refuse
/// children of ephemerals only. Normal ephemeral owners are shown as-is, so the Stat suffices.
fn tree_owner(_tree: &DataTree, _path: &str, shown: i64) -> i64 {
    shown
}

#[cfg(test)]
#[path = "prep/tests.rs"]
mod tests;
