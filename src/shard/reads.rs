//! Reads answered on the connection's own shard, against the shared tree, as ZooKeeper's
//! FinalRequestProcessor answers them (ACL checks, error codes, reply zxid = last applied zxid).

use crate::proto::jute::{Record, Writer};
use crate::proto::ops::{MultiReadOp, Request};
use crate::proto::*;
use crate::request::acl::check_acl;
use crate::sequencer::framed_raw;
use crate::tree::DataTree;

use super::conn::Conn;
use super::Shard;

type ReadResult = Result<Option<Vec<u8>>, ErrorCode>;

fn enc<R: Record>(r: &R) -> Option<Vec<u8>> {
    Some(r.to_bytes())
}

fn acl_ok(shard: &Shard, conn: &Conn, tree: &DataTree, path: &str, perm: i32) -> Result<(), ErrorCode> {
    if shard.settings.skip_acl {
        return Ok(());
    }
    let (acl, _) = tree.get_acl(path)?;
    check_acl(&acl, perm, &conn.auth.borrow(), None)
}

/// The encoded `GetDataResponse`, written under the node's stripe lock straight from the tree
/// (the data is copied once, into the reply).
fn get_data(shard: &Shard, conn: &Conn, path: &str, watch: bool) -> Result<Vec<u8>, ErrorCode> {
    let tree = &shard.tree;
    acl_ok(shard, conn, tree, path, perms::READ)?;
    tree.get_data_with(path, watch.then(|| conn.watcher(shard.id)), |data, stat| {
        let mut w = Writer::with_capacity(4 + data.map_or(0, <[u8]>::len) + 68);
        w.opt_buffer(data);
        stat.encode(&mut w);
        w.into_inner()
    })
}

fn get_children(
    shard: &Shard,
    conn: &Conn,
    path: &str,
    watch: bool,
) -> Result<(Vec<String>, Stat), ErrorCode> {
    let tree = &shard.tree;
    acl_ok(shard, conn, tree, path, perms::READ)?;
    tree.get_children(path, watch.then(|| conn.watcher(shard.id)))
}

/// Remembers the paths a request may set watches on (for cleanup when the connection closes).
fn note_watches(conn: &Conn, req: &Request) {
    let mut w = conn.watched.borrow_mut();
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

fn run(shard: &Shard, conn: &Conn, req: &Request) -> ReadResult {
    note_watches(conn, req);
    let tree = &shard.tree;
    let w = conn.watcher(shard.id);
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
        Request::GetData(r) => Ok(Some(get_data(shard, conn, &r.path, r.watch)?)),
        Request::GetChildren(r) => {
            let (children, _) = get_children(shard, conn, &r.path, r.watch)?;
            Ok(enc(&GetChildrenResponse { children }))
        }
        Request::GetChildren2(r) => {
            let (children, stat) = get_children(shard, conn, &r.path, r.watch)?;
            Ok(enc(&GetChildren2Response { children, stat }))
        }
        Request::GetAllChildrenNumber(r) => {
            acl_ok(shard, conn, tree, &r.path, perms::READ)?;
            Ok(enc(&GetAllChildrenNumberResponse { total_number: tree.all_children_number(&r.path)? }))
        }
        Request::GetAcl(r) => {
            let (acl, stat) = tree.get_acl(&r.path)?;
            let auth = conn.auth.borrow();
            if !shard.settings.skip_acl {
                check_acl(&acl, perms::READ | perms::ADMIN, &auth, None)?;
            }
            // Without ADMIN, digest ids are shown without their hash (ZOOKEEPER-1392).
            let admin = shard.settings.skip_acl || check_acl(&acl, perms::ADMIN, &auth, None).is_ok();
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
            let all = tree.ephemerals(conn.session.get());
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
                        get_children(shard, conn, &r.path, r.watch).map(|(children, _)| {
                            (OpCode::GetChildren, GetChildrenResponse { children }.to_bytes())
                        })
                    }
                    MultiReadOp::GetData(r) => {
                        get_data(shard, conn, &r.path, r.watch).map(|d| (OpCode::GetData, d))
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
            let mut sink = LocalSink { conn };
            tree.set_watches(
                sw.relative_zxid,
                &sw.data_watches,
                &sw.exist_watches,
                &sw.child_watches,
                &[],
                &[],
                w,
                &mut sink,
            );
            Ok(None)
        }
        Request::SetWatches2(sw) => {
            let mut sink = LocalSink { conn };
            tree.set_watches(
                sw.relative_zxid,
                &sw.data_watches,
                &sw.exist_watches,
                &sw.child_watches,
                &sw.persistent_watches,
                &sw.persistent_recursive_watches,
                w,
                &mut sink,
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
            let client_info = conn
                .auth
                .borrow()
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

/// Events a read produces for its own connection (setWatches firing at once, removeWatches).
struct LocalSink<'a> {
    conn: &'a Conn,
}

impl crate::tree::WatchSink for LocalSink<'_> {
    fn deliver(
        &mut self,
        _w: crate::tree::WatcherId,
        event: EventType,
        path: &str,
        _acl: &std::sync::Arc<Vec<Acl>>,
    ) {
        self.conn.send_event(event, path);
    }
}

/// Runs one read and returns the framed reply.
pub fn execute(shard: &Shard, conn: &Conn, xid: i32, opcode: i32, req: Request) -> Vec<u8> {
    let result = run(shard, conn, &req);
    let zxid = shard.tree.last_processed_zxid();
    // Clients send pings and setWatches with their reserved xids; replies echo them.
    let xid = if matches!(req, Request::Ping) { xid::PING } else { xid };
    let _ = opcode;
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
