//! Reads, answered as ZooKeeper's FinalRequestProcessor answers them (ACL checks, error codes,
//! reply zxid = last applied zxid). Pure: the tree and who is asking go in, the framed reply comes
//! out, and events a read fires at once (setWatches) go to the sink. A shard runs a read against
//! the shared tree when its session has nothing pending; the replica core runs it at its place in
//! the apply order when the session has earlier writes in flight (see `replica`).

use crate::proto::frame::framed_raw;
use crate::proto::jute::{Record, Writer};
use crate::proto::ops::{MultiReadOp, Request};
use crate::proto::*;
use crate::request::acl::check_acl;
use crate::tree::{DataTree, WatchSink, WatcherId};

/// Who is reading, with what rights.
#[derive(Clone, Copy)]
pub struct ReadCtx<'a> {
    pub session: i64,
    pub auth: &'a [Id],
    /// The connection any watch the read sets belongs to.
    pub watcher: WatcherId,
    pub skip_acl: bool,
}

type ReadResult = Result<Option<Vec<u8>>, ErrorCode>;

fn enc<R: Record>(r: &R) -> Option<Vec<u8>> {
    Some(r.to_bytes())
}

fn acl_ok(ctx: &ReadCtx, tree: &DataTree, path: &str, perm: i32) -> Result<(), ErrorCode> {
    if ctx.skip_acl {
        return Ok(());
    }
    let (acl, _) = tree.get_acl(path)?;
    check_acl(&acl, perm, ctx.auth, None)
}

/// The encoded `GetDataResponse`, written under the node's stripe lock straight from the tree
/// (the data is copied once, into the reply).
fn get_data(tree: &DataTree, ctx: &ReadCtx, path: &str, watch: bool) -> Result<Vec<u8>, ErrorCode> {
    acl_ok(ctx, tree, path, perms::READ)?;
    tree.get_data_with(path, watch.then_some(ctx.watcher), |data, stat| {
        let mut w = Writer::with_capacity(4 + data.map_or(0, <[u8]>::len) + 68);
        w.opt_buffer(data);
        stat.encode(&mut w);
        w.into_inner()
    })
}

fn get_children(
    tree: &DataTree,
    ctx: &ReadCtx,
    path: &str,
    watch: bool,
) -> Result<(Vec<String>, Stat), ErrorCode> {
    acl_ok(ctx, tree, path, perms::READ)?;
    tree.get_children(path, watch.then_some(ctx.watcher))
}

/// The paths a read may set watches on, so a closing connection can remove them without a
/// tree scan.
pub fn watch_paths(req: &Request, w: &mut std::collections::HashSet<String>) {
    match req {
        Request::Exists(r) if r.watch => drop(w.insert(r.path.clone())),
        Request::GetData(r) if r.watch => drop(w.insert(r.path.clone())),
        Request::GetChildren(r) if r.watch => drop(w.insert(r.path.clone())),
        Request::GetChildren2(r) if r.watch => drop(w.insert(r.path.clone())),
        Request::AddWatch(r) => drop(w.insert(r.path.clone())),
        Request::MultiRead(ops) => {
            for op in ops {
                match op {
                    MultiReadOp::GetChildren(r) if r.watch => drop(w.insert(r.path.clone())),
                    MultiReadOp::GetData(r) if r.watch => drop(w.insert(r.path.clone())),
                    _ => {}
                }
            }
        }
        Request::SetWatches(sw) => {
            w.extend(sw.data_watches.iter().chain(&sw.exist_watches).chain(&sw.child_watches).cloned())
        }
        Request::SetWatches2(sw) => w.extend(
            sw.data_watches
                .iter()
                .chain(&sw.exist_watches)
                .chain(&sw.child_watches)
                .chain(&sw.persistent_watches)
                .chain(&sw.persistent_recursive_watches)
                .cloned(),
        ),
        _ => {}
    }
}

fn run(tree: &DataTree, ctx: &ReadCtx, req: &Request, sink: &mut dyn WatchSink) -> ReadResult {
    let w = ctx.watcher;
    match req {
        Request::Ping => Ok(None),
        Request::Exists(r) => {
            if r.path.contains('\0') {
                return Err(ErrorCode::BadArguments);
            }
            match tree.exists(&r.path, r.watch.then_some(w)) {
                Some(stat) => Ok(enc(&ExistsResponse { stat })),
                None => Err(ErrorCode::NoNode),
            }
        }
        Request::GetData(r) => Ok(Some(get_data(tree, ctx, &r.path, r.watch)?)),
        Request::GetChildren(r) => {
            let (children, _) = get_children(tree, ctx, &r.path, r.watch)?;
            Ok(enc(&GetChildrenResponse { children }))
        }
        Request::GetChildren2(r) => {
            let (children, stat) = get_children(tree, ctx, &r.path, r.watch)?;
            Ok(enc(&GetChildren2Response { children, stat }))
        }
        Request::GetAllChildrenNumber(r) => {
            acl_ok(ctx, tree, &r.path, perms::READ)?;
            Ok(enc(&GetAllChildrenNumberResponse { total_number: tree.all_children_number(&r.path)? }))
        }
        Request::GetAcl(r) => {
            let (acl, stat) = tree.get_acl(&r.path)?;
            let auth = ctx.auth;
            if !ctx.skip_acl {
                check_acl(&acl, perms::READ | perms::ADMIN, auth, None)?;
            }
            // Without ADMIN, digest ids are shown without their hash (ZOOKEEPER-1392).
            let admin = ctx.skip_acl || check_acl(&acl, perms::ADMIN, auth, None).is_ok();
            let acl = if admin {
                acl
            } else {
                acl.into_iter()
                    .map(|mut a| {
                        if a.id.scheme == "digest" {
                            if let Some((user, _)) = a.id.id.split_once(':') {
                                a.id.id = format!("{user}:x");
                            }
                        }
                        a
                    })
                    .collect()
            };
            Ok(enc(&GetAclResponse { acl, stat }))
        }
        Request::GetEphemerals(r) => {
            let all = tree.ephemerals(ctx.session);
            let prefix = r.prefix_path.trim();
            let ephemerals = if prefix.is_empty() || prefix == "/" {
                all
            } else {
                all.into_iter().filter(|p| p.starts_with(&r.prefix_path)).collect()
            };
            Ok(enc(&GetEphemeralsResponse { ephemerals }))
        }
        Request::MultiRead(ops) => {
            let mut wr = Writer::new();
            for op in ops {
                let res = match op {
                    MultiReadOp::GetChildren(r) => {
                        get_children(tree, ctx, &r.path, r.watch).map(|(children, _)| {
                            (OpCode::GetChildren, GetChildrenResponse { children }.to_bytes())
                        })
                    }
                    MultiReadOp::GetData(r) => {
                        get_data(tree, ctx, &r.path, r.watch).map(|d| (OpCode::GetData, d))
                    }
                };
                match res {
                    Ok((op, body)) => {
                        MultiHeader { op_type: op as i32, done: false, err: 0 }.encode(&mut wr);
                        wr.raw(&body);
                    }
                    Err(e) => {
                        MultiHeader { op_type: OpCode::Error as i32, done: false, err: e as i32 }
                            .encode(&mut wr);
                        ErrorResponse { err: e as i32 }.encode(&mut wr);
                    }
                }
            }
            MultiHeader { op_type: -1, done: true, err: -1 }.encode(&mut wr);
            Ok(Some(wr.buf))
        }
        Request::SetWatches(sw) => {
            tree.set_watches(
                sw.relative_zxid,
                &sw.data_watches,
                &sw.exist_watches,
                &sw.child_watches,
                &[],
                &[],
                w,
                sink,
            );
            Ok(None)
        }
        Request::SetWatches2(sw) => {
            tree.set_watches(
                sw.relative_zxid,
                &sw.data_watches,
                &sw.exist_watches,
                &sw.child_watches,
                &sw.persistent_watches,
                &sw.persistent_recursive_watches,
                w,
                sink,
            );
            Ok(None)
        }
        Request::AddWatch(r) => {
            let recursive = match AddWatchMode::from_i32(r.mode) {
                Some(AddWatchMode::Persistent) => false,
                Some(AddWatchMode::PersistentRecursive) => true,
                // ZooKeeper 3.8: AddWatchMode.fromValue throws, surfacing as MarshallingError.
                None => return Err(ErrorCode::MarshallingError),
            };
            tree.add_persistent_watch(&r.path, recursive, w);
            Ok(enc(&ErrorResponse { err: 0 }))
        }
        Request::CheckWatches(r) => {
            let ty = watcher_type_3_8(r.watcher_type)?;
            if tree.check_watches(&r.path, ty, w) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Request::RemoveWatches(r) => {
            let ty = watcher_type_3_8(r.watcher_type)?;
            if tree.remove_watches(&r.path, ty, w) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Request::WhoAmI => {
            let client_info = ctx
                .auth
                .iter()
                .map(|id| ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    user: match id.scheme.as_str() {
                        "digest" => id.id.split(':').next().unwrap_or("").to_owned(),
                        _ => id.id.clone(),
                    },
                })
                .collect();
            Ok(enc(&WhoAmIResponse { client_info }))
        }
        _ => Err(ErrorCode::Unimplemented),
    }
}

/// Runs one read and returns the framed reply. Events the read fires at once (setWatches for
/// changes the client missed) go to `sink` before the reply exists, so they precede it.
pub fn execute(tree: &DataTree, ctx: &ReadCtx, xid: i32, req: &Request, sink: &mut dyn WatchSink) -> Vec<u8> {
    let result = run(tree, ctx, req, sink);
    let zxid = tree.last_processed_zxid();
    // Clients send pings and setWatches with their reserved xids; replies echo them.
    let xid = if matches!(req, Request::Ping) { xid::PING } else { xid };
    match result {
        Ok(body) => framed_raw(&ReplyHeader { xid, zxid, err: 0 }, body.as_deref().unwrap_or(&[])),
        Err(e) => framed_raw(&ReplyHeader { xid, zxid, err: e as i32 }, &[]),
    }
}

/// checkWatches/removeWatches accept Children, Data and Any only: ZooKeeper 3.8's server-side
/// `WatcherType.fromInt` rejects Persistent (4) and PersistentRecursive (5) like any unknown
/// value, and the client sees MarshallingError (a persistent watch is removed with Any).
fn watcher_type_3_8(v: i32) -> Result<WatcherType, ErrorCode> {
    match WatcherType::from_i32(v) {
        Some(t @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => Ok(t),
        _ => Err(ErrorCode::MarshallingError),
    }
}
