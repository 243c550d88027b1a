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

fn set_data(t: &DataTree, zxid: i64, path: &str, data: Option<Vec<u8>>, sink: &mut Rec) -> ApplyResult {
    let body = TxnBody::SetData(SetDataTxn { path: path.into(), data, version: 1 });
    t.apply(&hdr(zxid, OpCode::SetData), &body, sink)
}

/// A node's path, data, Stat and children in order.
type Dumped = (String, Option<Vec<u8>>, Stat, Vec<String>);

/// Every node, via the snapshot walk.
fn dump(t: &DataTree) -> Vec<Dumped> {
    let mut paths = Vec::new();
    t.for_each_node(|p, _, _, _| paths.push(if p.is_empty() { "/".to_owned() } else { p.to_owned() }));
    paths
        .into_iter()
        .map(|p| {
            let (d, st) = t.get_data(&p, None).unwrap();
            let (c, st2) = t.get_children(&p, None).unwrap();
            assert_eq!(st, st2);
            (p, d, st, c)
        })
        .collect()
}

#[test]
fn data_of_another_length_moves_the_node_and_everything_follows() {
    let t = DataTree::new();
    let mut s = Rec::default();
    create(&t, 1, "/p", -1, &mut s);
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        create(&t, 2 + i as i64, &format!("/p/{n}"), -1, &mut s);
    }
    create(&t, 5, "/p/b/x", -1, &mut s);
    // Parent, middle child (which has a child) and root change size: each is reallocated.
    set_data(&t, 6, "/p", Some(vec![1; 500]), &mut s);
    set_data(&t, 7, "/p/b", None, &mut s);
    set_data(&t, 8, "/", Some(vec![2; 3]), &mut s);
    set_data(&t, 9, "/p/b", Some(vec![3; 1 << 20]), &mut s);
    assert_eq!(t.get_children("/p", None).unwrap().0, vec!["a", "b", "c"]);
    assert_eq!(t.get_children("/p/b", None).unwrap().0, vec!["x"]);
    let (d, st) = t.get_data("/p/b", None).unwrap();
    assert_eq!((d.map(|d| d.len()), st.num_children, st.version, st.mzxid), (Some(1 << 20), 1, 1, 9));
    assert_eq!(t.get_data("/", None).unwrap().0, Some(vec![2; 3]));
    assert!(t.approximate_data_size() > 1 << 20);
    // Deleting through the moved nodes works and keeps the order of the rest.
    assert_eq!(delete(&t, 10, "/p/b/x", &mut s).err, ErrorCode::Ok);
    assert_eq!(delete(&t, 11, "/p/b", &mut s).err, ErrorCode::Ok);
    assert_eq!(delete(&t, 12, "/p/a", &mut s).err, ErrorCode::Ok);
    assert_eq!(t.get_children("/p", None).unwrap(), (vec!["c".to_owned()], t.exists("/p", None).unwrap()));
    assert_eq!(t.exists("/p", None).unwrap().data_length, 500);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random creates, deletes and resizing setData under one parent (and the parent itself):
    /// children come back in Java's HashSet order, data intact, and a snapshot reload agrees.
    #[test]
    fn children_order_and_data_survive_reallocation(
        ops in proptest::collection::vec((0u8..4, 0usize..40, 0usize..300), 1..250)
    ) {
        let t = DataTree::new();
        let mut s = Rec::default();
        create(&t, 1, "/p", -1, &mut s);
        let mut model = java_order::JavaHashSet::with_capacity_log2(3);
        let mut grandchild = std::collections::HashSet::new();
        let mut data: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        let mut zxid = 1;
        for (op, k, len) in ops {
            zxid += 1;
            let name = format!("c{k}");
            let path = format!("/p/{name}");
            let value = (len != 299).then(|| vec![len as u8; len]);
            match op {
                0 if !model.contains(&name) => {
                    let body = TxnBody::Create(CreateTxn {
                        path: path.clone(),
                        data: value.clone(),
                        acl: acl_cache::open_acl_unsafe(),
                        parent_c_version: -1,
                        ..Default::default()
                    });
                    proptest::prop_assert_eq!(t.apply(&hdr(zxid, OpCode::Create), &body, &mut s).err, ErrorCode::Ok);
                    model.insert(&name);
                    data.insert(path, value);
                }
                1 if model.contains(&name) => {
                    if grandchild.remove(&name) {
                        proptest::prop_assert_eq!(delete(&t, zxid, &format!("{path}/g"), &mut s).err, ErrorCode::Ok);
                    }
                    proptest::prop_assert_eq!(delete(&t, zxid, &path, &mut s).err, ErrorCode::Ok);
                    model.remove(&name);
                    data.remove(&path);
                }
                2 if model.contains(&name) => {
                    proptest::prop_assert_eq!(set_data(&t, zxid, &path, value.clone(), &mut s).err, ErrorCode::Ok);
                    data.insert(path, value);
                }
                3 if model.contains(&name) && !grandchild.contains(&name) => {
                    proptest::prop_assert_eq!(create(&t, zxid, &format!("{path}/g"), -1, &mut s).err, ErrorCode::Ok);
                    grandchild.insert(name);
                }
                _ => {
                    proptest::prop_assert_eq!(set_data(&t, zxid, "/p", value.clone(), &mut s).err, ErrorCode::Ok);
                }
            }
            let (children, st) = t.get_children("/p", None).unwrap();
            proptest::prop_assert_eq!(&children, &model.ordered());
            proptest::prop_assert_eq!(st.num_children as usize, model.len());
        }
        for (p, d) in &data {
            proptest::prop_assert_eq!(&t.get_data(p, None).unwrap().0, d);
        }
        let mut nodes = Vec::new();
        t.for_each_node(|p, d, acl, st| nodes.push((p.to_owned(), d.map(|d| d.to_vec()), acl, st.clone())));
        let t2 = DataTree::new_empty();
        t2.acl_cache_import(&t.acl_cache_export());
        for (p, d, acl, st) in nodes {
            t2.insert_loaded_node(&p, d, acl, st).unwrap();
        }
        t2.finish_load(zxid).unwrap();
        // A reload refills each set in the saved order, as ZooKeeper's deserialization does
        // (so the order can differ from before; `reloaded` is what Java would show).
        let reloaded = |c: &[String]| {
            let mut j = java_order::JavaHashSet::with_capacity_log2(3);
            for n in c {
                j.insert(n);
            }
            j.ordered().into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let (mut before, mut after) = (dump(&t), dump(&t2));
        before.sort_by(|a, b| a.0.cmp(&b.0));
        after.sort_by(|a, b| a.0.cmp(&b.0));
        proptest::prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            proptest::prop_assert!(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "{} differs after reload", a.0);
            proptest::prop_assert!(a.3 == reloaded(&b.3), "children of {} after reload", a.0);
        }
        proptest::prop_assert_eq!(t2.approximate_data_size(), t.approximate_data_size());
    }
}

#[test]
fn corrupt_snapshots_are_errors_not_panics() {
    let t = DataTree::new_empty();
    let st = StatPersisted::default();
    assert!(t.insert_loaded_node("/a/b", None, -1, st.clone()).is_err(), "child before parent");
    t.insert_loaded_node("/a", None, -1, st.clone()).unwrap();
    assert!(t.insert_loaded_node("/a", None, -1, st.clone()).is_err(), "duplicate");
    assert!(t.insert_loaded_node("", None, -1, StatPersisted { ephemeral_owner: 5, ..st }).is_err());
    assert_eq!(t.node_count(), 2);
}

#[test]
fn a_log_deleting_a_parent_first_leaves_orphans_as_zookeeper_does() {
    let t = DataTree::new();
    let mut s = Rec::default();
    create(&t, 1, "/x", -1, &mut s);
    create(&t, 2, "/x/y", -1, &mut s);
    create(&t, 3, "/x/z", -1, &mut s);
    assert_eq!(delete(&t, 4, "/x", &mut s).err, ErrorCode::Ok);
    // The orphans are still reachable by path and can change and go, without the parent.
    assert!(t.exists("/x/y", None).is_some());
    assert_eq!(set_data(&t, 5, "/x/y", Some(vec![0; 100]), &mut s).err, ErrorCode::Ok);
    create(&t, 6, "/x", -1, &mut s);
    assert_eq!(t.get_children("/x", None).unwrap().0, Vec::<String>::new());
    assert_eq!(set_data(&t, 7, "/x/z", Some(vec![0; 10]), &mut s).err, ErrorCode::Ok);
    assert_eq!(delete(&t, 8, "/x/y", &mut s).err, ErrorCode::Ok);
    assert_eq!(delete(&t, 9, "/x/z", &mut s).err, ErrorCode::Ok);
    assert_eq!(t.exists("/x", None).unwrap().pzxid, 9);
    assert_eq!(t.get_children("/x", None).unwrap().0, Vec::<String>::new());
}

/// Two distinct trees: each read of the live one during swaps sees one or the other, whole at
/// each node.
#[test]
fn replace_with_under_concurrent_readers() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let build = |tag: &str, zxid0: i64, n: usize| {
        let t = DataTree::new();
        let mut s = Rec::default();
        let mut z = zxid0;
        let mut next = || {
            z += 1;
            z
        };
        create(&t, next(), "/common", -1, &mut s);
        set_data(&t, next(), "/common", Some(tag.as_bytes().to_vec()), &mut s);
        create(&t, next(), &format!("/{tag}"), -1, &mut s);
        for i in 0..n {
            create(&t, next(), &format!("/{tag}/c{i}"), i as i32 + 1, &mut s);
        }
        t
    };
    let live = Arc::new(build("a", 0, 50));
    let (a_zxid, a_nodes) = (live.last_processed_zxid(), live.node_count());
    let b = build("b", 1000, 80);
    let (b_zxid, b_nodes) = (b.last_processed_zxid(), b.node_count());
    // A watch on the live tree: ZooKeeper's learner drops them with the old tree.
    live.get_data("/common", Some(W1)).unwrap();
    assert_eq!(live.watch_count(), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (t, stop, reads) = (live.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let common = t.get_data("/common", None).unwrap().0.unwrap();
                    assert!(common == b"a" || common == b"b", "{common:?}");
                    let (children, st) =
                        t.get_children("/a", None).map_or((vec![], None), |(c, s)| (c, Some(s)));
                    if let Some(st) = st {
                        assert!(children.len() == 50 && st.num_children == 50, "a half-swapped /a");
                    }
                    if let Ok((children, _)) = t.get_children("/b", None) {
                        assert_eq!(children.len(), 80, "a half-swapped /b");
                    }
                    let z = t.last_processed_zxid();
                    assert!(z == a_zxid || z == b_zxid, "zxid 0x{z:x}");
                    let n = t.node_count();
                    assert!(n == a_nodes || n == b_nodes, "{n} nodes");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut other = b;
    for i in 0..300 {
        other = live.replace_with(other);
        if i == 0 {
            assert_eq!(live.watch_count(), 0, "the watches went with the old tree");
            assert_eq!(other.watch_count(), 1);
            assert_eq!(live.get_data("/common", None).unwrap().0.unwrap(), b"b");
            // A replacement comes without watches: swap in a fresh copy of the first tree.
            other = build("a", 0, 50);
        }
        // Let readers in between swaps (no sleep: wait for reads to happen).
        let r = reads.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while reads.load(Ordering::Relaxed) == r {
            assert!(std::time::Instant::now() < deadline, "readers stalled");
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader saw a broken tree");
    }
    assert_eq!(live.replacements(), 300);
    // An even number of swaps: back to the first tree's contents, with none of its watches.
    assert_eq!((live.last_processed_zxid(), live.node_count(), live.watch_count()), (a_zxid, a_nodes, 0));
    let mut s = Rec::default();
    assert_eq!(set_data(&live, a_zxid + 1, "/common", Some(b"x".to_vec()), &mut s).err, ErrorCode::Ok);
    assert!(s.0.is_empty(), "a dropped watch fired");
}

/// Found with fuzz/fuzz_targets/snapshot_load.rs: `//x` went into the tree as a child "x" of the
/// root stored at "//x" (so getChildren listed "x" and "/x" did not exist), and a snapshot of
/// that tree did not load. A txn with a malformed path is refused.
#[test]
fn a_txn_with_a_malformed_path_creates_nothing() {
    let t = DataTree::new();
    let mut sink = Rec::default();
    assert_eq!(create(&t, 1, "/a", -1, &mut sink).err, ErrorCode::Ok);
    let before = t.node_count();
    for (i, bad) in ["//x", "/a//b", "/a/", "x"].into_iter().enumerate() {
        assert_eq!(create(&t, 2 + i as i64, bad, -1, &mut sink).err, ErrorCode::BadArguments, "{bad}");
    }
    assert_eq!(t.node_count(), before);
    let (mut c, _) = t.get_children("/", None).unwrap();
    c.sort();
    assert_eq!(c, vec!["a", "zookeeper"]);
}

/// The digest kept incrementally equals the sum recomputed from every node, after each kind of
/// change; and a fresh tree's is what ZooKeeper's constructor gives (the empty root at path ""
/// plus `/zookeeper`; quota and config count 0).
#[test]
fn digest_is_kept_incrementally() {
    use digest::node_digest;
    let t = DataTree::new();
    let fresh = node_digest("", None, &StatPersisted::default()).wrapping_add(node_digest(
        "/zookeeper",
        None,
        &StatPersisted::default(),
    ));
    assert_eq!(t.digest(), fresh);
    assert_eq!(t.last_zxid_digest(), None);
    let mut s = Rec::default();
    let check = |t: &DataTree, what: &str| {
        let kept = t.digest();
        assert_eq!(kept, t.recompute_digest(), "after {what}");
    };
    create(&t, 1, "/a", -1, &mut s);
    check(&t, "create");
    assert_eq!(t.last_zxid_digest(), Some(digest::ZxidDigest { zxid: 1, digest: t.digest() }));
    create(&t, 2, "/a/b", -1, &mut s);
    let h = TxnHeader { client_id: 0x77, ..hdr(3, OpCode::Create) };
    let eph = TxnBody::Create(CreateTxn {
        path: "/a/e".into(),
        data: None,
        acl: acl_cache::open_acl_unsafe(),
        ephemeral: true,
        parent_c_version: -1,
    });
    t.apply(&h, &eph, &mut s);
    check(&t, "ephemeral create");
    let set =
        TxnBody::SetData(SetDataTxn { path: "/a/b".into(), data: Some(b"longer data".to_vec()), version: 1 });
    t.apply(&hdr(4, OpCode::SetData), &set, &mut s);
    check(&t, "setData (reallocated)");
    let set = TxnBody::SetData(SetDataTxn { path: "/".into(), data: Some(b"r".to_vec()), version: 1 });
    t.apply(&hdr(5, OpCode::SetData), &set, &mut s);
    check(&t, "setData on the root");
    let acl = TxnBody::SetAcl(SetAclTxn { path: "/a".into(), acl: acl_cache::open_acl_unsafe(), version: 1 });
    t.apply(&hdr(6, OpCode::SetAcl), &acl, &mut s);
    check(&t, "setACL");
    create(&t, 7, "/zookeeper/quota/x", -1, &mut s);
    check(&t, "create under /zookeeper/");
    let before = t.digest();
    delete(&t, 8, "/a/b", &mut s);
    check(&t, "delete");
    assert_ne!(t.digest(), before);
    let close = TxnBody::CloseSession(CloseSessionTxn { paths2_delete: vec![] });
    t.apply(&TxnHeader { client_id: 0x77, ..hdr(9, OpCode::CloseSession) }, &close, &mut s);
    check(&t, "closeSession");
    assert!(t.meta("/a/e").is_none());
    // A failed multi changes nothing.
    let before = t.digest();
    let multi = TxnBody::Multi(vec![
        (
            OpCode::Create as i32,
            TxnBody::Create(CreateTxn {
                path: "/m".into(),
                data: None,
                acl: acl_cache::open_acl_unsafe(),
                ephemeral: false,
                parent_c_version: -1,
            }),
        ),
        (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: ErrorCode::NoNode as i32 })),
    ]);
    t.apply(&hdr(10, OpCode::Multi), &multi, &mut s);
    assert_eq!(t.digest(), before);
    // Recreating the same state gives the same digest: it depends on the nodes only.
    let u = DataTree::new();
    create(&u, 1, "/a", -1, &mut s);
    delete(&u, 2, "/a", &mut s);
    let v = DataTree::new();
    create(&v, 1, "/a", -1, &mut s);
    delete(&v, 2, "/a", &mut s);
    assert_eq!(u.digest(), v.digest());
    assert_ne!(u.digest(), DataTree::new().digest(), "the root's pzxid and cversion moved");
    // Replacing the tree brings its digest.
    let d = v.digest();
    let old = t.replace_with(v);
    assert_eq!(t.digest(), d);
    drop(old);
}

/// Replaying a create over a fuzzy snapshot that already has the child: ZooKeeper moves the
/// parent's cversion and pzxid forward anyway (`setCversionPzxid`), and the digest follows.
#[test]
fn node_exists_on_replay_moves_the_parent_forward() {
    let t = DataTree::new();
    let mut s = Rec::default();
    create(&t, 1, "/p", -1, &mut s);
    create(&t, 2, "/p/c", -1, &mut s);
    assert_eq!(create(&t, 5, "/p/c", 4, &mut s).err, ErrorCode::NodeExists);
    let m = t.meta("/p").unwrap();
    assert_eq!((m.stored_cversion, m.stat.pzxid), (4, 5));
    assert_eq!(t.digest(), t.recompute_digest());
    // Not for an older cversion.
    assert_eq!(create(&t, 6, "/p/c", 2, &mut s).err, ErrorCode::NodeExists);
    assert_eq!(t.meta("/p").unwrap().stat.pzxid, 5);
}
