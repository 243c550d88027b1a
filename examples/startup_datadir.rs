//! Writes the data directory `perf/startup.sh` starts `zkd serve` on: what a server leaves behind
//! after creating N znodes of 100 bytes and being killed -9 some txns after its last snapshot.
//!
//! ```text
//! cargo run --release --example startup_datadir -- <dataDir> <parents> [znodes] [tail txns]
//! ```
//! `dataDir/version-2` gets, as a zkd or ZooKeeper server writing them would:
//! - `log.<a>`: the last `SNAP_EVERY` creates before the snapshot (the log rolled at the previous
//!   snapshot; recovery reads it too, ZooKeeper's `getLogFiles` picks the file holding the
//!   snapshot's zxid), zero-padded to the 64 MiB preallocation;
//! - `snapshot.<s>`: the tree after `znodes` creates (plus the parents), uncompressed;
//! - `log.<s+1>`: the tail to replay, padded to 64 MiB: a createSession, then creates, setData
//!   and deletes in the proportions 2:5:2, a closeSession.
//!
//! `parents` = 1 puts every znode under one parent, otherwise they spread round-robin.

use zkd::proto::*;
use zkd::tree::{acl_cache::open_acl_unsafe, DataTree, WatchSink, WatcherId};
use zkd::txnlog::format::{encode_txn_entry, log_file_name, FileHeader};

struct NoSink;
impl WatchSink for NoSink {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &std::sync::Arc<Vec<Acl>>) {}
}

/// The log before the snapshot holds this many of the creates (ZooKeeper's snapCount).
const SNAP_EVERY: usize = 100_000;
/// `preAllocSize` default.
const PREALLOC_BYTES: usize = 64 << 20;
const SESSION: i64 = 0x1000_0000_0000_0001;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: startup_datadir <dataDir> <parents> [znodes=1000000] [tail txns=90000]");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let parents: usize = args[2].parse().expect("parents: a number");
    let n: usize = args.get(3).map_or(1_000_000, |v| v.parse().expect("znodes: a number"));
    let tail: usize = args.get(4).map_or(90_000, |v| v.parse().expect("tail txns: a number"));
    assert!(parents >= 1 && n >= SNAP_EVERY);
    let v2 = zkd::db::version_dir(&dir);
    std::fs::create_dir_all(&v2).expect("create version-2");

    let tree = DataTree::new();
    let acl = open_acl_unsafe();
    let mut zxid = 0i64;
    let mut log: Vec<LoggedTxn> = Vec::new();
    let next = |body: TxnBody, ty: OpCode, zxid: &mut i64| {
        *zxid += 1;
        let hdr =
            TxnHeader { client_id: SESSION, cxid: *zxid as i32, zxid: *zxid, time: 0, txn_type: ty as i32 };
        LoggedTxn { hdr, body, digest: None }
    };
    let create = |path: String, data: Option<Vec<u8>>| {
        TxnBody::Create(CreateTxn { path, data, acl: acl.clone(), ephemeral: false, parent_c_version: -1 })
    };
    let path = |i: usize| {
        if parents == 1 {
            format!("/p0/node-{i:010}")
        } else {
            format!("/p{}/node-{i:010}", i % parents)
        }
    };
    for p in 0..parents {
        let t = next(create(format!("/p{p}"), None), OpCode::Create, &mut zxid);
        tree.apply(&t.hdr, &t.body, &mut NoSink);
    }
    for i in 0..n {
        let t = next(create(path(i), Some(vec![b'x'; 100])), OpCode::Create, &mut zxid);
        tree.apply(&t.hdr, &t.body, &mut NoSink);
        if i + SNAP_EVERY >= n {
            log.push(t);
        }
    }
    write_log(&v2, &log);
    let snap_zxid = zxid;
    zkd::db::write_snapshot(&tree, &v2, snap_zxid, &[], Default::default()).expect("write the snapshot");
    drop(tree);

    log.clear();
    log.push(next(
        TxnBody::CreateSession(CreateSessionTxn { time_out: 30_000 }),
        OpCode::CreateSession,
        &mut zxid,
    ));
    let mut created = n;
    let (mut set, mut deleted) = (0usize, 0usize);
    while log.len() + 1 < tail {
        let t = match log.len() % 9 {
            0 | 1 => {
                created += 1;
                next(create(path(created), Some(vec![b'y'; 100])), OpCode::Create, &mut zxid)
            }
            2 | 3 => {
                deleted += 1;
                next(TxnBody::Delete(DeleteTxn { path: path(deleted * 7) }), OpCode::Delete, &mut zxid)
            }
            _ => {
                set += 1;
                let body = TxnBody::SetData(SetDataTxn {
                    path: path((set * 13) % n),
                    data: Some(vec![b'z'; 100]),
                    version: -1,
                });
                next(body, OpCode::SetData, &mut zxid)
            }
        };
        log.push(t);
    }
    log.push(next(
        TxnBody::CloseSession(CloseSessionTxn { paths2_delete: vec![] }),
        OpCode::CloseSession,
        &mut zxid,
    ));
    write_log(&v2, &log);
    println!(
        "{}: snapshot.{snap_zxid:x} with {} znodes under {parents} parent(s), {} txns to replay after it (last zxid 0x{zxid:x})",
        dir.display(),
        n + parents + 4,
        log.len()
    );
}

/// `log.<first zxid>`, zero-padded to the preallocation as the log writer leaves it.
fn write_log(dir: &std::path::Path, txns: &[LoggedTxn]) {
    let mut buf = Vec::with_capacity(PREALLOC_BYTES);
    FileHeader::txnlog().encode(&mut buf);
    for t in txns {
        encode_txn_entry(t, &mut buf);
    }
    let padded = buf.len().div_ceil(PREALLOC_BYTES) * PREALLOC_BYTES;
    buf.resize(padded, 0);
    let name = log_file_name(txns[0].hdr.zxid);
    std::fs::write(dir.join(name), &buf).expect("write a log");
}
