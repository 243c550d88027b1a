//! Tree operations without the network: getData from 1 and 2 threads (reads take no global lock,
//! so they should scale with threads), copied out or written into a reused buffer under the lock, and setData through `apply` (the replica's path).
//! `cargo bench --bench tree_ops`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkd::proto::*;
use zkd::tree::{acl_cache::open_acl_unsafe, DataTree, WatchSink, WatcherId};

struct NoSink;
impl WatchSink for NoSink {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &Arc<Vec<Acl>>) {}
}

const KEYS: usize = 10_000;

fn path(i: usize) -> String {
    format!("/bench/key-{i:06}")
}

fn build() -> DataTree {
    let tree = DataTree::new();
    let acl = open_acl_unsafe();
    let mut zxid = 0;
    let mut create = |p: String| {
        zxid += 1;
        let h = TxnHeader { client_id: 1, cxid: 0, zxid, time: 0, txn_type: OpCode::Create as i32 };
        let body = TxnBody::Create(CreateTxn {
            path: p,
            data: Some(vec![b'x'; 100]),
            acl: acl.clone(),
            ephemeral: false,
            parent_c_version: -1,
        });
        tree.apply(&h, &body, &mut NoSink);
    };
    create("/bench".into());
    for i in 0..KEYS {
        create(path(i));
    }
    tree
}

/// How a read takes the data: a copy of its own, or encoded into a reused reply buffer under the
/// lock (the server's path).
#[derive(Clone, Copy)]
enum Read {
    Copy,
    Into,
}

fn reads(tree: &Arc<DataTree>, threads: usize, how: Read) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let paths: Arc<Vec<String>> = Arc::new((0..KEYS).map(path).collect());
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (tree, stop, total, paths) = (tree.clone(), stop.clone(), total.clone(), paths.clone());
            std::thread::spawn(move || {
                let _ = core_affinity::set_for_current(core_affinity::CoreId { id: t });
                let mut n = 0u64;
                let mut i = t * 7919;
                let mut buf = Vec::with_capacity(256);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        i = (i + 7919) % KEYS;
                        match how {
                            Read::Copy => {
                                let (d, _) = tree.get_data(&paths[i], None).unwrap();
                                std::hint::black_box(d);
                            }
                            Read::Into => {
                                buf.clear();
                                tree.get_data_with(&paths[i], None, |d, st| {
                                    buf.extend_from_slice(d.unwrap_or(&[]));
                                    std::hint::black_box(st);
                                })
                                .unwrap();
                                std::hint::black_box(&buf);
                            }
                        }
                    }
                    n += 1024;
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let tree = Arc::new(build());
    for (how, name) in [(Read::Copy, "copied out"), (Read::Into, "into a reply buffer")] {
        let one = reads(&tree, 1, how);
        let two = reads(&tree, 2, how);
        println!(
            "getData ({name}), {KEYS} keys of 100 B: 1 thread {one:.0}/s, 2 threads {two:.0}/s ({:.2}x)",
            two / one
        );
    }

    let n = 200_000;
    let t0 = Instant::now();
    for i in 0..n {
        let zxid = 1_000_000 + i as i64;
        let h = TxnHeader { client_id: 1, cxid: 0, zxid, time: 0, txn_type: OpCode::SetData as i32 };
        let body =
            TxnBody::SetData(SetDataTxn { path: path(i % KEYS), data: Some(vec![b'y'; 100]), version: 1 });
        tree.apply(&h, &body, &mut NoSink);
    }
    println!("setData through apply: {:.0}/s", n as f64 / t0.elapsed().as_secs_f64());
}
