use super::*;
use crate::proto::*;
use std::sync::Arc;

#[derive(Default)]
struct Rec(Vec<(WatcherId, EventType, String)>);
impl WatchSink for Rec {
    fn deliver(&mut self, w: WatcherId, e: EventType, p: &str, _: &Arc<Vec<Acl>>) {
        self.0.push((w, e, p.to_owned()));
    }
}

const W1: WatcherId = WatcherId { shard: 0, conn: 1 };
const W2: WatcherId = WatcherId { shard: 1, conn: 2 };

fn hdr(zxid: i64, ty: OpCode) -> TxnHeader {
    TxnHeader { client_id: 0x55, cxid: 1, zxid, time: 1000 + zxid, txn_type: ty as i32 }
}

fn create(t: &DataTree, zxid: i64, path: &str, pcv: i32, sink: &mut Rec) -> ApplyResult {
    let body = TxnBody::Create(CreateTxn {
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl: acl_cache::open_acl_unsafe(),
        ephemeral: false,
        parent_c_version: pcv,
    });
    t.apply(&hdr(zxid, OpCode::Create), &body, sink)
}

fn delete(t: &DataTree, zxid: i64, path: &str, sink: &mut Rec) -> ApplyResult {
    t.apply(&hdr(zxid, OpCode::Delete), &TxnBody::Delete(DeleteTxn { path: path.into() }), sink)
}

#[test]
fn fresh_tree_matches_zookeeper() {
    let t = DataTree::new();
    let (mut c, st) = t.get_children("/zookeeper", None).unwrap();
    c.sort();
    assert_eq!(c, vec!["config", "quota"]);
    // Stored cversion 0 with two children shows as -2, as ZooKeeper 3.8 shows it.
    assert_eq!((st.cversion, st.num_children), (-2, 2));
    let (acl, st) = t.get_acl("/zookeeper/config").unwrap();
    assert_eq!(acl[0].perms, perms::READ);
    assert_eq!(st.aversion, -1);
    assert_eq!(t.all_children_number("/").unwrap(), 3);
    assert_eq!(t.node_count(), 4);
}

#[test]
fn create_delete_stats_and_cversion_semantics() {
    let t = DataTree::new();
    let mut s = Rec::default();
    assert_eq!(create(&t, 1, "/q", -1, &mut s).err, ErrorCode::Ok);
    create(&t, 2, "/q/a", 1, &mut s);
    create(&t, 3, "/q/b", 2, &mut s);
    delete(&t, 4, "/q/b", &mut s);
    let m = t.meta("/q").unwrap();
    assert_eq!(m.stored_cversion, 2, "deletes do not bump the stored cversion");
    assert_eq!((m.stat.cversion, m.stat.num_children, m.stat.pzxid), (3, 1, 4));
    assert_eq!(create(&t, 5, "/q/a", 3, &mut s).err, ErrorCode::NodeExists);
    assert_eq!(create(&t, 6, "/nope/a", 1, &mut s).err, ErrorCode::NoNode);
    assert_eq!(delete(&t, 7, "/q/zz", &mut s).err, ErrorCode::NoNode);
    let st = t.exists("/q/a", None).unwrap();
    assert_eq!((st.czxid, st.mzxid, st.pzxid, st.version, st.data_length), (2, 2, 2, 0, 1));
    assert_eq!(t.last_processed_zxid(), 7);
}

#[test]
fn watch_triggers_follow_zookeeper() {
    let t = DataTree::new();
    let mut s = Rec::default();
    assert!(t.exists("/a", Some(W1)).is_none());
    t.get_children("/", Some(W2)).unwrap();
    create(&t, 1, "/a", -1, &mut s);
    assert_eq!(
        s.0,
        vec![(W1, EventType::NodeCreated, "/a".into()), (W2, EventType::NodeChildrenChanged, "/".into())]
    );
    s.0.clear();
    // One-shot: nothing more for W1 until it watches again.
    let body = TxnBody::SetData(SetDataTxn { path: "/a".into(), data: Some(b"x".to_vec()), version: 1 });
    t.apply(&hdr(2, OpCode::SetData), &body, &mut s);
    assert!(s.0.is_empty());
    // Data and child watch by the same connection: one NodeDeleted.
    t.get_data("/a", Some(W1)).unwrap();
    t.get_children("/a", Some(W1)).unwrap();
    t.get_children("/", Some(W2)).unwrap();
    delete(&t, 3, "/a", &mut s);
    assert_eq!(
        s.0,
        vec![(W1, EventType::NodeDeleted, "/a".into()), (W2, EventType::NodeChildrenChanged, "/".into())]
    );
    assert_eq!(t.watch_count(), 0);
}

#[test]
fn persistent_and_recursive_watches() {
    let t = DataTree::new();
    let mut s = Rec::default();
    t.add_persistent_watch("/r", true, W1);
    t.add_persistent_watch("/r", false, W2);
    create(&t, 1, "/r", -1, &mut s);
    create(&t, 2, "/r/a", -1, &mut s);
    delete(&t, 3, "/r/a", &mut s);
    assert_eq!(
        s.0,
        vec![
            (W1, EventType::NodeCreated, "/r".into()),
            (W2, EventType::NodeCreated, "/r".into()),
            (W1, EventType::NodeCreated, "/r/a".into()),
            (W2, EventType::NodeChildrenChanged, "/r".into()),
            (W1, EventType::NodeDeleted, "/r/a".into()),
            (W2, EventType::NodeChildrenChanged, "/r".into()),
        ]
    );
    assert!(t.check_watches("/r", WatcherType::PersistentRecursive, W1));
    assert!(t.remove_watches("/r", WatcherType::Any, W1));
    assert!(!t.check_watches("/r", WatcherType::Any, W1));
}

#[test]
fn failed_multi_applies_nothing() {
    let t = DataTree::new();
    let mut s = Rec::default();
    let ok = TxnBody::Create(CreateTxn {
        path: "/m".into(),
        acl: acl_cache::open_acl_unsafe(),
        parent_c_version: -1,
        ..Default::default()
    });
    let body = TxnBody::Multi(vec![
        (OpCode::Create as i32, ok),
        (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: ErrorCode::NoNode as i32 })),
        (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: ErrorCode::RuntimeInconsistency as i32 })),
    ]);
    let r = t.apply(&hdr(1, OpCode::Multi), &body, &mut s);
    assert_eq!(r.err, ErrorCode::NoNode);
    let errs: Vec<ErrorCode> = r.multi.iter().map(|o| o.err).collect();
    assert_eq!(errs, vec![ErrorCode::Ok, ErrorCode::NoNode, ErrorCode::RuntimeInconsistency]);
    assert!(t.exists("/m", None).is_none());
}

#[test]
fn ephemerals_containers_ttls() {
    let t = DataTree::new();
    let mut s = Rec::default();
    let e = TxnBody::Create(CreateTxn {
        path: "/e".into(),
        acl: acl_cache::open_acl_unsafe(),
        ephemeral: true,
        parent_c_version: -1,
        ..Default::default()
    });
    t.apply(&hdr(1, OpCode::Create), &e, &mut s);
    assert_eq!(t.ephemerals(0x55), vec!["/e".to_string()]);
    assert_eq!(t.exists("/e", None).unwrap().ephemeral_owner, 0x55);
    let c = TxnBody::CreateContainer(CreateContainerTxn {
        path: "/c".into(),
        acl: acl_cache::open_acl_unsafe(),
        parent_c_version: -1,
        ..Default::default()
    });
    t.apply(&hdr(2, OpCode::CreateContainer), &c, &mut s);
    assert_eq!(t.exists("/c", None).unwrap().ephemeral_owner, 0, "containers show owner 0");
    assert!(t.containers_and_ttls_to_delete(i64::MAX, true).is_empty(), "never-used containers stay");
    create(&t, 3, "/c/x", -1, &mut s);
    delete(&t, 4, "/c/x", &mut s);
    assert_eq!(t.containers_and_ttls_to_delete(0, true), vec!["/c".to_string()]);
    let ttl = TxnBody::CreateTtl(CreateTtlTxn {
        path: "/t".into(),
        acl: acl_cache::open_acl_unsafe(),
        parent_c_version: -1,
        ttl: 100,
        ..Default::default()
    });
    t.apply(&hdr(5, OpCode::CreateTtl), &ttl, &mut s);
    let mtime = 1005;
    assert!(!t.containers_and_ttls_to_delete(mtime + 100, true).contains(&"/t".to_string()));
    assert!(t.containers_and_ttls_to_delete(mtime + 101, true).contains(&"/t".to_string()));
    let close = TxnBody::CloseSession(CloseSessionTxn { paths2_delete: vec!["/e".into()] });
    t.apply(&hdr(6, OpCode::CloseSession), &close, &mut s);
    assert!(t.exists("/e", None).is_none());
    assert!(t.ephemerals(0x55).is_empty());
}

#[test]
fn quota_stats_follow_changes() {
    let t = DataTree::new();
    let mut s = Rec::default();
    create(&t, 1, "/app", -1, &mut s);
    create(&t, 2, "/zookeeper/quota/app", -1, &mut s);
    let lim = TxnBody::Create(CreateTxn {
        path: "/zookeeper/quota/app/zookeeper_limits".into(),
        data: Some(b"count=2,bytes=-1".to_vec()),
        acl: acl_cache::open_acl_unsafe(),
        parent_c_version: -1,
        ..Default::default()
    });
    t.apply(&hdr(3, OpCode::Create), &lim, &mut s);
    let st = TxnBody::Create(CreateTxn {
        path: "/zookeeper/quota/app/zookeeper_stats".into(),
        data: Some(b"count=0,bytes=0".to_vec()),
        acl: acl_cache::open_acl_unsafe(),
        parent_c_version: -1,
        ..Default::default()
    });
    t.apply(&hdr(4, OpCode::Create), &st, &mut s);
    create(&t, 5, "/app/x", -1, &mut s);
    let (q, limits, stats) = t.quota_for("/app/x").unwrap();
    assert_eq!(q, "/app");
    assert_eq!(limits.count(), 2);
    assert_eq!((stats.count(), stats.bytes()), (2, 2));
}

#[test]
fn snapshot_walk_and_reload_round_trip() {
    let t = DataTree::new();
    let mut s = Rec::default();
    create(&t, 1, "/a", -1, &mut s);
    create(&t, 2, "/a/b", -1, &mut s);
    let mut nodes = Vec::new();
    t.for_each_node(|p, d, acl, st| nodes.push((p.to_owned(), d.map(|d| d.to_vec()), acl, st.clone())));
    assert_eq!(nodes[0].0, "");
    let t2 = DataTree::new_empty();
    t2.acl_cache_import(&t.acl_cache_export());
    for (p, d, acl, st) in nodes {
        t2.insert_loaded_node(&p, d, acl, st).unwrap();
    }
    t2.finish_load(2).unwrap();
    assert_eq!(t2.get_data("/a/b", None).unwrap(), t.get_data("/a/b", None).unwrap());
    assert_eq!(t2.exists("/a", None), t.exists("/a", None));
    assert_eq!(t2.node_count(), t.node_count());
}

/// Readers that registered a watch on version v must get an event iff a later version applied.
#[test]
fn concurrent_readers_never_lose_a_watch() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = std::sync::Arc::new(DataTree::new());
    let mut s = Rec::default();
    create(&t, 1, "/hot", -1, &mut s);
    let fired = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(WatcherId, EventType)>::new()));
    struct Shared(std::sync::Arc<parking_lot::Mutex<Vec<(WatcherId, EventType)>>>);
    impl WatchSink for Shared {
        fn deliver(&mut self, w: WatcherId, e: EventType, _: &str, _: &Arc<Vec<Acl>>) {
            self.0.lock().push((w, e));
        }
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let t = t.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut regs = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let w = WatcherId { shard: r as u16, conn: i };
                    let (_, st) = t.get_data("/hot", Some(w)).unwrap();
                    regs.push((w, st.version));
                    i += 1;
                }
                regs
            })
        })
        .collect();
    let mut sink = Shared(fired.clone());
    let mut final_version = 0;
    for z in 2..3000 {
        final_version = z as i32 - 1;
        let body =
            TxnBody::SetData(SetDataTxn { path: "/hot".into(), data: Some(vec![1]), version: final_version });
        t.apply(&hdr(z, OpCode::SetData), &body, &mut sink);
    }
    stop.store(true, Ordering::Relaxed);
    let fired: std::collections::HashSet<WatcherId> = fired.lock().iter().map(|(w, _)| *w).collect();
    for h in readers {
        for (w, v) in h.join().unwrap() {
            assert_eq!(fired.contains(&w), v < final_version, "watch {w:?} set at version {v}");
        }
    }
}
