//! SNAP end to end on loopback: a leader streams its tree while a writer keeps changing it, a
//! learner loads the stream into its live tree and its disk, replays the txns after the SNAP
//! zxid, and ends with the leader's state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{cfg, event, follower_info, input, run, within};
use super::*;
use crate::proto::txn::LoggedTxn;
use crate::proto::*;
use crate::quorum::packet_type as pt;
use crate::quorum::sync_storage::{Disk, SyncStorage};
use crate::tree::{DataTree, WatchSink, WatcherId};
use crate::txnlog::{LogHandle, LogOptions, LogWriter};

struct NoWatches;
impl WatchSink for NoWatches {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &Arc<Vec<Acl>>) {}
}

fn acl(who: &str) -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "digest".into(), id: format!("{who}:hash") } }]
}

fn open() -> Vec<Acl> {
    crate::tree::acl_cache::open_acl_unsafe()
}

/// Makes txns as the replica's prep would (valid against the tree they are applied to, parent
/// cversions from the tree), applies each and keeps it.
struct Writer<'a> {
    tree: &'a DataTree,
    zxid: i64,
    txns: Vec<LoggedTxn>,
    sessions: BTreeMap<i64, i32>,
}

impl Writer<'_> {
    fn apply(&mut self, client: i64, ty: OpCode, body: TxnBody) {
        self.zxid += 1;
        let hdr = TxnHeader {
            client_id: client,
            cxid: 1,
            zxid: self.zxid,
            time: self.zxid * 10,
            txn_type: ty as i32,
        };
        let r = self.tree.apply(&hdr, &body, &mut NoWatches);
        assert_eq!(r.err, ErrorCode::Ok, "{hdr:?} {body:?}");
        match &body {
            TxnBody::CreateSession(c) => {
                self.sessions.insert(client, c.time_out);
            }
            TxnBody::CloseSession(_) => {
                self.sessions.remove(&client);
            }
            _ => {}
        }
        self.txns.push(LoggedTxn { hdr, body, digest: None });
    }

    fn create_txn(&self, path: &str, data: &[u8], acl: Vec<Acl>, ephemeral: bool) -> CreateTxn {
        let parent = crate::tree::parent_of(path);
        let pcv = self.tree.meta(parent).expect("parent").stored_cversion + 1;
        CreateTxn { path: path.into(), data: Some(data.to_vec()), acl, ephemeral, parent_c_version: pcv }
    }

    fn create(&mut self, client: i64, path: &str, data: &[u8], acl: Vec<Acl>, ephemeral: bool) {
        let t = self.create_txn(path, data, acl, ephemeral);
        self.apply(client, OpCode::Create, TxnBody::Create(t));
    }

    fn version(&self, path: &str) -> i32 {
        self.tree.exists(path, None).expect("exists").version
    }
}

/// Everything observable about a tree (quota stats included), ACLs resolved (ids may differ between servers, as in
/// ZooKeeper), children and ephemerals as sets (their iteration order depends on each server's
/// hash-set history, as in ZooKeeper).
fn dump(t: &DataTree) -> Vec<String> {
    let mut paths = Vec::new();
    t.for_each_node(|p, _, _, _| paths.push(if p.is_empty() { "/".to_owned() } else { p.to_owned() }));
    paths.sort();
    let mut out: Vec<String> = paths
        .iter()
        .map(|p| {
            let (d, st) = t.get_data(p, None).unwrap();
            let (acl, _) = t.get_acl(p).unwrap();
            let (mut ch, _) = t.get_children(p, None).unwrap();
            ch.sort();
            format!("{p} {d:?} {st:?} {acl:?} {ch:?}")
        })
        .collect();
    let mut eph = t.ephemerals_by_session();
    eph.iter_mut().for_each(|(_, v)| v.sort());
    out.push(format!("{eph:?}"));
    // Not the approximate data size: as in ZooKeeper, rewriting a quota stats node does not
    // count, so it depends on each tree's history.
    out.push(format!("nodes {}", t.node_count()));
    out
}

fn same(got: &[String], want: &[String], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: line {i}");
    }
    assert_eq!(got.len(), want.len(), "{what}");
}

/// The leader's tree: 10k nodes under /app with data, ACLs of several ids, two sessions'
/// ephemerals, a container, a TTL node and a quota.
fn source_tree(w: &mut Writer<'_>) {
    w.apply(0x100, OpCode::CreateSession, TxnBody::CreateSession(CreateSessionTxn { time_out: 4000 }));
    w.apply(0x101, OpCode::CreateSession, TxnBody::CreateSession(CreateSessionTxn { time_out: 5000 }));
    w.apply(0x102, OpCode::CreateSession, TxnBody::CreateSession(CreateSessionTxn { time_out: 6000 }));
    w.create(0x100, "/app", b"root", open(), false);
    for d in 0..100 {
        w.create(0x100, &format!("/app/d{d}"), b"", acl(&format!("dir{}", d % 3)), false);
        for n in 0..99 {
            let a = if n % 7 == 0 { acl(&format!("user{}", n % 5)) } else { open() };
            w.create(0x100, &format!("/app/d{d}/n{n}"), format!("value-{d}-{n}").as_bytes(), a, false);
        }
    }
    for i in 0..20 {
        w.create(0x100 + (i % 2), &format!("/app/d{i}/eph{i}"), b"e", open(), true);
    }
    let c = w.create_txn("/box", b"", open(), false);
    w.apply(
        0x100,
        OpCode::CreateContainer,
        TxnBody::CreateContainer(CreateContainerTxn {
            path: c.path,
            data: c.data,
            acl: c.acl,
            parent_c_version: c.parent_c_version,
        }),
    );
    w.create(0x100, "/box/in", b"", open(), false);
    let t = w.create_txn("/ttl", b"t", open(), false);
    w.apply(
        0x100,
        OpCode::CreateTtl,
        TxnBody::CreateTtl(CreateTtlTxn {
            path: t.path,
            data: t.data,
            acl: t.acl,
            parent_c_version: t.parent_c_version,
            ttl: 100_000,
        }),
    );
    w.create(0x100, "/zookeeper/quota/app", b"", open(), false);
    w.create(0x100, "/zookeeper/quota/app/d1", b"", open(), false);
    w.create(0x100, "/zookeeper/quota/app/d1/zookeeper_limits", b"count=500,bytes=-1", open(), false);
    w.create(0x100, "/zookeeper/quota/app/d1/zookeeper_stats", b"count=0,bytes=0", open(), false);
}

/// One change of the concurrent writer: creates (some with ACLs the leader interns only now),
/// deletes, setData, setACL with new ACLs, ephemerals, a session's end and a new session, and
/// a multi, all spread over the tree so the walk meets them before and after.
fn change(w: &mut Writer<'_>, k: i64) {
    let d = (k * 37) % 100;
    let n = (k * 11) % 99;
    match k % 9 {
        0 => w.create(0x100, &format!("/app/d{d}/new{k}"), b"fresh", acl(&format!("late{k}")), false),
        1 => {
            let p = format!("/app/d{d}/n{n}");
            if w.tree.exists(&p, None).is_some() {
                w.apply(0x100, OpCode::Delete, TxnBody::Delete(DeleteTxn { path: p }));
            }
        }
        2 | 3 => {
            let p = format!("/app/d{d}/n{}", (n + 1) % 99);
            if w.tree.exists(&p, None).is_some() {
                let version = w.version(&p) + 1;
                let data = Some(format!("changed-{k}").into_bytes());
                w.apply(0x100, OpCode::SetData, TxnBody::SetData(SetDataTxn { path: p, data, version }));
            }
        }
        4 => {
            let p = format!("/app/d{d}/n{}", (n + 2) % 99);
            if let Some(st) = w.tree.exists(&p, None) {
                let body = SetAclTxn { path: p, acl: acl(&format!("reacl{k}")), version: st.aversion + 1 };
                w.apply(0x100, OpCode::SetAcl, TxnBody::SetAcl(body));
            }
        }
        5 => w.create(0x102, &format!("/app/d{d}/e{k}"), b"eph", open(), true),
        6 => w.create(0x100, &format!("/app/d1/q{k}"), b"counted", open(), false),
        7 if k == 16 => {
            let paths = w.tree.ephemerals(0x101);
            w.apply(
                0x101,
                OpCode::CloseSession,
                TxnBody::CloseSession(CloseSessionTxn { paths2_delete: paths }),
            );
        }
        7 if k == 25 => {
            w.apply(0x200, OpCode::CreateSession, TxnBody::CreateSession(CreateSessionTxn { time_out: 7000 }))
        }
        7 if k > 25 && k % 2 == 0 => w.create(0x200, &format!("/app/d{d}/s{k}"), b"", open(), true),
        _ => {
            let a = w.create_txn(&format!("/app/m{k}"), b"a", open(), false);
            let b = SetDataTxn {
                path: "/app".into(),
                data: Some(format!("m{k}").into_bytes()),
                version: w.version("/app") + 1,
            };
            let body = TxnBody::Multi(vec![
                (OpCode::Create as i32, TxnBody::Create(a)),
                (OpCode::SetData as i32, TxnBody::SetData(b)),
            ]);
            w.apply(0x100, OpCode::Multi, body);
        }
    }
}

/// A log writer on `dir` (the learner's), with what it logged before: txns after the SNAP zxid
/// that the new leader does not have.
fn learner_log(dir: &std::path::Path, stale_from: i64) -> LogHandle {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let opts = LogOptions { pre_alloc_size_bytes: 64 << 10, ..Default::default() };
    let h = LogWriter::start(
        crate::db::version_dir(dir),
        opts,
        Box::new(move |z| {
            let _ = tx.try_send(z);
        }),
        Box::new(|e| panic!("learner log: {e}")),
    )
    .unwrap();
    let stale: Vec<LoggedTxn> = (0..3)
        .map(|i| LoggedTxn {
            hdr: TxnHeader {
                client_id: 0x100,
                cxid: 1,
                zxid: stale_from + i,
                time: 1,
                txn_type: OpCode::Create as i32,
            },
            body: TxnBody::Create(CreateTxn {
                path: format!("/stale{i}"),
                data: None,
                acl: open(),
                ephemeral: false,
                parent_c_version: 1,
            }),
            digest: None,
        })
        .collect();
    h.append(stale).unwrap();
    // own thread: the test's, before any executor runs.
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), stale_from + 2);
    h
}

#[test]
fn send_snapshot_then_load_snapshot_under_a_concurrent_writer_ends_on_the_leader_state() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    // Built on this thread: the leader's tree and what it is at the SNAP zxid.
    let leader_tree = Arc::new(DataTree::new());
    let mut w =
        Writer { tree: &leader_tree, zxid: 0x5_0000_0000, txns: Vec::new(), sessions: BTreeMap::new() };
    source_tree(&mut w);
    assert!(leader_tree.node_count() > 10_000);
    let z = w.zxid;
    let sessions_at_z = w.sessions.clone();
    // The learner logged txns after z (a diverged old epoch's tail), and has a snapshot newer
    // than z: both must go.
    let log = learner_log(&data_dir, z + 1);
    let newer = crate::db::write_snapshot(
        &DataTree::new(),
        &crate::db::version_dir(&data_dir),
        z + 100,
        &[],
        crate::snapshot::Compression::None,
    )
    .unwrap();
    let disk = Disk {
        data_dir: data_dir.clone(),
        data_log_dir: data_dir.clone(),
        log: log.truncator(1 << 20),
        max_txn_bytes: 1 << 20,
        trust_empty: false,
    };
    let learner_tree = Arc::new(DataTree::new());
    let (lt, lt2) = (leader_tree.clone(), learner_tree.clone());
    let (result_tx, result_rx) = crossbeam_channel::bounded(1);
    run(move || async move {
        let mut c = cfg(1, &[]);
        // Small chunks: many yields, so the writer's changes land inside the stream.
        c.snapshot_chunk_bytes = 4096;
        let leader = QuorumLink::new(c, SyncStorage::new(lt.clone(), None));
        let addr = leader.listen().unwrap()[0];
        let learner = QuorumLink::new(cfg(2, &[(1, addr)]), SyncStorage::new(lt2.clone(), Some(disk)));
        learner.connect(1);
        assert_eq!(input(&learner, "connected").await, Input::Connected { sid: 1 });
        learner.send(1, &follower_info(2));
        input(&leader, "followerinfo").await;

        let snap = QuorumPacket { typ: pt::SNAP, zxid: z, data: None, authinfo: None };
        let newleader = QuorumPacket { typ: pt::NEWLEADER, zxid: 0x6_0000_0000, data: None, authinfo: None };
        leader.send(2, &snap);
        leader.send_snapshot(2, z, sessions_at_z.iter().map(|(k, v)| (*k, *v)).collect());
        leader.send(2, &newleader);
        // The writer runs while the snapshot streams, a txn per turn.
        let writer = glommio::spawn_local(async move {
            let mut w = Writer { tree: &lt, zxid: z, txns: Vec::new(), sessions: sessions_at_z };
            for k in 0..1500 {
                change(&mut w, k);
                futures_lite::future::yield_now().await;
            }
            (w.txns, w.sessions)
        });

        assert_eq!(input(&learner, "SNAP").await, Input::Packet { from: 1, packet: snap });
        learner.load_snapshot(z);
        let loaded = event(&learner, "the snapshot").await;
        let LinkEvent::SnapshotLoaded { zxid, sessions, current } = loaded else { panic!("{loaded:?}") };
        assert_eq!((zxid, current), (z, true));
        // What follows the stream comes after it.
        assert_eq!(input(&learner, "NEWLEADER").await, Input::Packet { from: 1, packet: newleader });
        let at_load = dump(&lt2);
        let (txns, final_sessions) = within("the writer", writer).await;
        result_tx.send((zxid, sessions, at_load, txns, final_sessions)).unwrap();
    });
    let (zxid, sessions, at_load, txns, final_sessions) = result_rx.recv().unwrap();
    assert_eq!(zxid, z);
    assert_eq!(sessions, vec![(0x100, 4000), (0x101, 5000), (0x102, 6000)]);

    // The stream was fuzzy: it saw changes made after z while it was being written.
    let fuzzy = learner_tree_saw_changes_after(&learner_tree, z);
    assert!(fuzzy, "no change of the writer reached the stream: the test did not interleave");

    // Replay what follows z, as the learner does with the leader's PROPOSAL/COMMITs.
    let mut sessions: BTreeMap<i64, i32> = sessions.into_iter().collect();
    let replay = |t: &DataTree, sessions: &mut BTreeMap<i64, i32>| {
        for x in &txns {
            let _ = t.apply(&x.hdr, &x.body, &mut NoWatches);
            match &x.body {
                TxnBody::CreateSession(c) => {
                    sessions.insert(x.hdr.client_id, c.time_out);
                }
                TxnBody::CloseSession(_) => {
                    sessions.remove(&x.hdr.client_id);
                }
                _ => {}
            }
        }
    };
    replay(&learner_tree, &mut sessions);
    same(&dump(&learner_tree), &dump(&leader_tree), "learner after replay vs leader");
    assert_eq!(sessions, final_sessions);

    // On disk: the snapshot, and nothing logged after it (the stale tail and the newer snapshot
    // are gone); a restart reads back the state the learner loaded.
    log.shutdown();
    assert!(!newer.exists(), "a snapshot newer than the SNAP zxid survived");
    assert!(crate::quorum::sync_storage::snapshot_path(&data_dir, z).exists());
    let restarted = crate::db::load(&data_dir, &data_dir, 1 << 20, false).unwrap();
    assert_eq!((restarted.snapshot_zxid, restarted.txns_replayed), (z, 0));
    same(&dump(&restarted.tree), &at_load, "restart vs loaded");
    let mut s2 = BTreeMap::new();
    replay(&restarted.tree, &mut s2);
    same(&dump(&restarted.tree), &dump(&leader_tree), "restart + replay vs leader");
}

/// Whether some node in `t` was changed by a txn after `z` (the learner's tree right after the
/// load, before any replay).
fn learner_tree_saw_changes_after(t: &DataTree, z: i64) -> bool {
    let mut seen = false;
    t.for_each_node(|_, _, _, st| seen |= st.mzxid > z || st.pzxid > z);
    seen
}
