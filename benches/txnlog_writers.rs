//! Group commit under concurrency: 1, 16 and 256 writers, each appending one 100-byte txn and
//! waiting until it is durable (closed loop), against the raw cost of the disk (one pwrite +
//! fdatasync at a time). `cargo bench --bench txnlog_writers` (ZKD_BENCH_DIR picks the disk,
//! ZKD_BENCH_SECS the duration per case).

use parking_lot::{Condvar, Mutex};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zkd::proto::records::*;
use zkd::proto::types::OpCode;
use zkd::proto::{LoggedTxn, TxnBody};
use zkd::txnlog::{LogHandle, LogOptions, LogWriter};

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

fn dir() -> tempfile::TempDir {
    let base = std::env::var("ZKD_BENCH_DIR").unwrap_or_else(|_| "target".into());
    tempfile::tempdir_in(base).unwrap()
}

fn secs() -> f64 {
    std::env::var("ZKD_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0)
}

fn raw_fdatasync() {
    let d = dir();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(d.path().join("raw"))
        .unwrap();
    f.write_all_at(&vec![0u8; 64 << 20], 0).unwrap();
    f.sync_all().unwrap();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let rec = vec![7u8; 150];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs() {
        let t = Instant::now();
        f.write_all_at(&rec, n * 150).unwrap();
        f.sync_data().unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
        n += 1;
    }
    println!(
        "raw pwrite+fdatasync, one at a time: {:8.0} syncs/s, p50 {:5} us p99 {:6} us",
        n as f64 / t0.elapsed().as_secs_f64(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
}

struct Shared {
    /// Next zxid and the handle: appends must be in zxid order, as the replica makes them.
    log: Mutex<(i64, Option<LogHandle>)>,
    durable: Mutex<i64>,
    cv: Condvar,
}

fn writers(n: usize) {
    let d = dir();
    let sh = Arc::new(Shared { log: Mutex::new((1, None)), durable: Mutex::new(0), cv: Condvar::new() });
    let s2 = sh.clone();
    let h = LogWriter::start(
        d.path().to_owned(),
        LogOptions::default(),
        Box::new(move |z| {
            *s2.durable.lock() = z;
            s2.cv.notify_all();
        }),
        Box::new(|e| panic!("{e}")),
    )
    .unwrap();
    sh.log.lock().1 = Some(h);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (sh, stop) = (sh.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let z = {
                        let mut g = sh.log.lock();
                        let z = g.0;
                        g.0 += 1;
                        g.1.as_ref().unwrap().append(vec![txn(z)]).unwrap();
                        z
                    };
                    let mut g = sh.durable.lock();
                    while *g < z {
                        sh.cv.wait_for(&mut g, Duration::from_secs(10));
                    }
                    drop(g);
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                }
                h
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs()));
    stop.store(true, Ordering::Relaxed);
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for t in threads {
        all.add(t.join().unwrap()).unwrap();
    }
    let elapsed = t0.elapsed();
    let h = sh.log.lock().1.take().unwrap();
    let st = h.stats();
    h.shutdown();
    println!(
        "{n:3} writers: {:8.0} txn/s, append->durable p50 {:5} us p99 {:6} us, {:6.1} txns per fsync (fsync p50 {} us)",
        all.len() as f64 / elapsed.as_secs_f64(),
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        st.txns_written as f64 / st.syncs.max(1) as f64,
        st.fsync_us.value_at_quantile(0.5),
    );
}

fn main() {
    raw_fdatasync();
    for n in [1, 16, 256] {
        writers(n);
    }
}
