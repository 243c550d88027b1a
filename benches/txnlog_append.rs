//! Append + sync latency of the two write paths (pwrite+fdatasync vs mmap+msync), one txn per
//! group (the latency a lone client sees) and bursts of 64 (throughput). Run:
//! `cargo bench --bench txnlog_append` (set ZKD_BENCH_DIR to put the log on another disk).

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkd::proto::records::*;
use zkd::proto::types::OpCode;
use zkd::proto::{LoggedTxn, TxnBody};
use zkd::txnlog::{LogOptions, LogWriter, WritePath};

fn txn(zxid: i64) -> LoggedTxn {
    LoggedTxn {
        hdr: TxnHeader { client_id: 7, cxid: zxid as i32, zxid, time: 5, txn_type: OpCode::SetData as i32 },
        body: TxnBody::SetData(SetDataTxn {
            path: "/bench/node".into(),
            data: Some(vec![7; 100]),
            version: 1,
        }),
        digest: Some(TxnDigest { version: 2, tree_digest: zxid }),
    }
}

fn run(path: WritePath, burst: i64, rounds: i64) {
    let base = std::env::var("ZKD_BENCH_DIR").unwrap_or_else(|_| "target".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let state = Arc::new((Mutex::new(0i64), Condvar::new()));
    let s2 = state.clone();
    let h = LogWriter::start(
        dir.path().to_owned(),
        LogOptions { write_path: path, ..Default::default() },
        Box::new(move |z| {
            *s2.0.lock() = z;
            s2.1.notify_all();
        }),
        Box::new(|e| panic!("{e}")),
    )
    .unwrap();
    let mut lat = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut z = 0;
    let t0 = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..burst {
            z += 1;
            h.append(vec![txn(z)]).unwrap();
        }
        let mut g = state.0.lock();
        while *g < z {
            state.1.wait_for(&mut g, Duration::from_secs(10));
        }
        lat.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let total = t0.elapsed();
    let s = h.stats();
    h.shutdown();
    println!(
        "{path:?} burst={burst:3}: {:7.0} txn/s, append->durable p50 {:5} us p99 {:6} us | fsync p50 {:5} us p99 {:6} us max {:6} us, {} syncs",
        z as f64 / total.as_secs_f64(),
        lat.value_at_quantile(0.5),
        lat.value_at_quantile(0.99),
        s.fsync_us.value_at_quantile(0.5),
        s.fsync_us.value_at_quantile(0.99),
        s.fsync_us.max(),
        s.syncs
    );
}

fn main() {
    let rounds: i64 = std::env::var("ZKD_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    for _ in 0..2 {
        for path in [WritePath::Direct, WritePath::Pwrite, WritePath::Mmap] {
            run(path, 1, rounds);
            run(path, 64, rounds / 10);
        }
    }
}
