//! Snapshot write and load with 1M znodes of 100 bytes (ZKD_NODES to change), and the start-up
//! of `zkd serve`'s loading path (`db::load`: newest valid snapshot + log replay).
//! `cargo bench --bench snapshot_1m`.

use std::time::Instant;
use zkd::proto::*;
use zkd::tree::{acl_cache::open_acl_unsafe, DataTree, WatchSink, WatcherId};

struct NoSink;
impl WatchSink for NoSink {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &std::sync::Arc<Vec<Acl>>) {}
}

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let n: usize = std::env::var("ZKD_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tree = DataTree::new();
    let acl = open_acl_unsafe();
    let mut zxid = 0i64;
    let mut create = |path: String, data: Option<Vec<u8>>| {
        zxid += 1;
        let h = TxnHeader { client_id: 1, cxid: 0, zxid, time: 0, txn_type: OpCode::Create as i32 };
        let body = TxnBody::Create(CreateTxn {
            path,
            data,
            acl: acl.clone(),
            ephemeral: false,
            parent_c_version: -1,
        });
        tree.apply(&h, &body, &mut NoSink);
    };
    for d in 0..100 {
        create(format!("/d{d}"), None);
    }
    for i in 0..n {
        create(format!("/d{}/node-{i:010}", i % 100), Some(vec![b'x'; 100]));
    }
    let last = tree.last_processed_zxid();
    let base = std::env::var("ZKD_BENCH_DIR").unwrap_or_else(|_| "target".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let v2 = zkd::db::version_dir(dir.path());
    std::fs::create_dir_all(&v2).unwrap();
    let t0 = Instant::now();
    let file = zkd::db::write_snapshot(&tree, &v2, last, &[], Default::default()).unwrap();
    let wrote = t0.elapsed();
    let bytes = std::fs::metadata(&file).unwrap().len();
    drop(tree);
    let t0 = Instant::now();
    let loaded = zkd::db::load(dir.path(), dir.path(), 1 << 20, false).unwrap();
    let load = t0.elapsed();
    assert_eq!(loaded.last_zxid, last);
    assert_eq!(loaded.tree.node_count(), n + 100 + 4);
    println!(
        "{n} znodes of 100 B: snapshot {} MiB written (fsynced) in {:.0} ms, loaded in {:.0} ms ({:.2} M znodes/s)",
        bytes >> 20,
        wrote.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        n as f64 / load.as_secs_f64() / 1e6
    );
}
