//! Files written by Apache ZooKeeper 3.8.0 (tests/fixtures/zk38, see its README) read by zkd, and
//! zkd's dumpers compared with ZooKeeper's own tools' output on them.

use std::path::PathBuf;
use zkd::proto::types::OpCode;
use zkd::proto::TxnBody;
use zkd::snapshot::dump::{dump_snapshot_with, SnapshotDumpMode};
use zkd::snapshot::read_snapshot_file;
use zkd::txnlog::dump::dump_txnlog;
use zkd::txnlog::format::{LogReader, Stop, DEFAULT_MAX_TXN_BYTES};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk38").join(name)
}

fn utc() {
    std::env::set_var("TZ", "UTC");
}

#[test]
fn zookeeper_log_files_parse() {
    let buf = std::fs::read(fixture("log.1")).unwrap();
    let mut r = LogReader::new(&buf, DEFAULT_MAX_TXN_BYTES).unwrap();
    assert_eq!(r.header().dbid, 0);
    let entries: Vec<_> = r.by_ref().collect();
    assert_eq!(entries.len(), 13);
    assert_eq!(entries.iter().map(|e| e.txn.hdr.zxid).collect::<Vec<_>>(), (1..=13).collect::<Vec<i64>>());
    assert!(matches!(r.stop(), Stop::Padding { .. }));
    // Every ZooKeeper 3.8 txn carries a digest.
    assert!(entries.iter().all(|e| e.txn.digest.is_some()));
    let t = &entries[1].txn;
    assert_eq!(t.hdr.txn_type, OpCode::Create as i32);
    match &t.body {
        TxnBody::Create(c) => {
            assert_eq!(c.path, "/a");
            assert_eq!(c.data.as_deref(), Some(&b"hello"[..]));
        }
        b => panic!("{b:?}"),
    }
    // The failed multi: create rolled back, check failed with BADVERSION.
    match &entries[9].txn.body {
        TxnBody::Multi(ops) => assert_eq!(ops.len(), 2),
        b => panic!("{b:?}"),
    }
    // Re-encoding reproduces ZooKeeper's bytes exactly.
    for e in &entries {
        let mut out = Vec::new();
        zkd::txnlog::format::encode_txn_entry(&e.txn, &mut out);
        assert_eq!(&out[..], &buf[e.offset as usize..e.offset as usize + e.len_bytes]);
    }
}

#[test]
fn zookeeper_snapshots_parse_in_all_compressions() {
    let plain = read_snapshot_file(&fixture("snapshot.d")).unwrap();
    assert_eq!(plain.meta.header.dbid, -1);
    assert_eq!(plain.nodes.len(), 10);
    assert_eq!(plain.nodes[0].path, "");
    assert_eq!(plain.meta.sessions.len(), 2);
    assert_eq!(plain.meta.digest.map(|d| d.zxid), Some(0xd));
    let gz = read_snapshot_file(&fixture("snapshot.10.gz")).unwrap();
    let sn = read_snapshot_file(&fixture("snapshot.10.snappy")).unwrap();
    assert_eq!(gz, sn);
    assert!(gz.nodes.iter().any(|n| n.path == "/after"));
    let zero = read_snapshot_file(&fixture("snapshot.0")).unwrap();
    assert_eq!(
        zero.nodes.iter().map(|n| n.path.as_str()).collect::<Vec<_>>(),
        ["", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]
    );
    // Writing what we read gives ZooKeeper's bytes back, byte for byte.
    let bytes = std::fs::read(fixture("snapshot.d")).unwrap();
    let again = zkd::snapshot::write_snapshot(
        Vec::new(),
        zkd::snapshot::Compression::None,
        plain.meta.header.dbid,
        &plain.meta.sessions,
        &plain.meta.acl_cache,
        &plain.nodes,
        plain.meta.digest,
    )
    .unwrap();
    assert_eq!(again, bytes);
}

#[test]
fn txnlog_dump_matches_txnlogtoolkit() {
    utc();
    for f in ["log.1", "log.e"] {
        let mut out = Vec::new();
        dump_txnlog(&fixture(f), false, &mut out).unwrap();
        let want = std::fs::read_to_string(fixture(&format!("{f}.toolkit.txt"))).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want, "{f}");
    }
}

#[test]
fn snapshot_dump_matches_snapshotformatter() {
    utc();
    for f in ["snapshot.0", "snapshot.d", "snapshot.10.gz", "snapshot.10.snappy"] {
        for (mode, suffix) in
            [(SnapshotDumpMode::Details, "formatter"), (SnapshotDumpMode::DetailsWithData, "formatter-d")]
        {
            let mut out = Vec::new();
            dump_snapshot_with(&fixture(f), mode, &mut out).unwrap();
            let want = std::fs::read_to_string(fixture(&format!("{f}.{suffix}.txt"))).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{f} {suffix}");
        }
    }
}

#[test]
fn json_dumps_are_well_formed() {
    let mut out = Vec::new();
    dump_txnlog(&fixture("log.1"), true, &mut out).unwrap();
    for line in String::from_utf8(out).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    let mut out = Vec::new();
    zkd::snapshot::dump::dump_snapshot(&fixture("snapshot.d"), true, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0], 1);
}
