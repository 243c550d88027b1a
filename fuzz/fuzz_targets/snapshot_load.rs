//! A snapshot loaded into a data tree as start-up loads it (`db::load_snapshot_bytes`: the
//! mapped file scanned, then built on two threads from spans; `db::load_snapshot_stream`: parsed
//! on a reader thread while the tree is built node by node). A snapshot is data from disk: a
//! bad one is refused with a reason, never a panic, and both loaders must accept the same
//! snapshots and build the same tree. Inputs are sealed by the harness (see `sealed_snapshot`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::db::{load_snapshot_bytes, load_snapshot_stream};
use zkd::proto::StatPersisted;
use zkd::snapshot::format::Compression;
use zkd::tree::DataTree;
use zkd::txnlog::format::DEFAULT_MAX_TXN_BYTES;
use zkd_fuzz::{check_tree, sealed_snapshot};

type Node = (String, Option<Vec<u8>>, i64, StatPersisted);

fn nodes(t: &DataTree) -> Vec<Node> {
    let mut v = Vec::new();
    t.for_each_node(|p, d, acl, st| v.push((p.to_owned(), d.map(<[u8]>::to_vec), acl, st.clone())));
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let zxid = (ctl >> 1) as i64;
    let file = if ctl & 1 == 0 { sealed_snapshot(rest, None) } else { rest.to_vec() };
    let mapped = load_snapshot_bytes(&file, zxid, DEFAULT_MAX_TXN_BYTES);
    let streamed = load_snapshot_stream(
        std::io::Cursor::new(file.clone()),
        Compression::None,
        zxid,
        DEFAULT_MAX_TXN_BYTES,
    );
    match (mapped, streamed) {
        (Ok((a, sa)), Ok((b, sb))) => {
            assert_eq!(sa, sb);
            assert_eq!(a.node_count(), b.node_count());
            assert_eq!(nodes(&a), nodes(&b), "the two loaders built different trees");
            assert_eq!(a.last_processed_zxid(), b.last_processed_zxid());
            check_tree(&a);
        }
        (Ok(_), Err(e)) => panic!("the stream loader refuses what the mapped loader loads: {e}"),
        (Err(e), Ok(_)) => panic!("the mapped loader refuses what the stream loader loads: {e}"),
        (Err(_), Err(_)) => {}
    }
});
