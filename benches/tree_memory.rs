//! Bytes of memory per znode: 100k (or ZKD_NODES) znodes of 100-byte values created through the
//! same apply path the server uses, RSS measured before and after. `cargo bench --bench tree_memory`.

use zkd::proto::*;
use zkd::tree::{acl_cache::open_acl_unsafe, DataTree, WatchSink, WatcherId};

struct NoSink;
impl WatchSink for NoSink {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &std::sync::Arc<Vec<Acl>>) {}
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let n: usize = std::env::var("ZKD_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let before = rss_bytes();
    let tree = DataTree::new();
    let mut sink = NoSink;
    let acl = open_acl_unsafe();
    for dir in 0..100 {
        let h = TxnHeader { client_id: 1, cxid: 0, zxid: dir + 1, time: 0, txn_type: OpCode::Create as i32 };
        let body = TxnBody::Create(CreateTxn {
            path: format!("/d{dir}"),
            data: None,
            acl: acl.clone(),
            ephemeral: false,
            parent_c_version: -1,
        });
        tree.apply(&h, &body, &mut sink);
    }
    let start = std::time::Instant::now();
    for i in 0..n {
        let zxid = 1000 + i as i64;
        let h = TxnHeader { client_id: 1, cxid: 0, zxid, time: 0, txn_type: OpCode::Create as i32 };
        let body = TxnBody::Create(CreateTxn {
            path: format!("/d{}/node-{i:010}", i % 100),
            data: Some(vec![b'x'; 100]),
            acl: acl.clone(),
            ephemeral: false,
            parent_c_version: -1,
        });
        tree.apply(&h, &body, &mut sink);
    }
    let elapsed = start.elapsed();
    let after = rss_bytes();
    println!(
        "{n} znodes of 100 bytes: RSS +{} MiB = {} bytes/znode; {:.0} creates/s through apply",
        (after - before) >> 20,
        (after - before) / n as u64,
        n as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(tree.node_count(), n + 100 + 4);
}
