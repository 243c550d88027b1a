//! Sharded metrics, LongAdder-style: each shard owns cache-line-padded cells that only it writes
//! (plain relaxed stores, no contended read-modify-write across cores); a reader sums the cells of
//! every shard. Latency histograms are per shard and merged on read.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// One shard's cells. Written by its shard only.
pub struct ShardProbe {
    packets_received: CachePadded<AtomicU64>,
    packets_sent: CachePadded<AtomicU64>,
    connections: CachePadded<AtomicI64>,
    outstanding: CachePadded<AtomicI64>,
    rejected_max_cnxns: CachePadded<AtomicU64>,
    frames_rejected: CachePadded<AtomicU64>,
    /// Request latency in microseconds. The shard holds the lock only to record one value; a
    /// reader holds it only to copy (merge) — never across I/O.
    latency_us: Mutex<Histogram<u64>>,
}

fn bump(c: &AtomicU64, n: u64) {
    // Single writer per cell: load + store is enough and avoids a locked RMW.
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl ShardProbe {
    fn new() -> Self {
        ShardProbe {
            packets_received: CachePadded::new(AtomicU64::new(0)),
            packets_sent: CachePadded::new(AtomicU64::new(0)),
            connections: CachePadded::new(AtomicI64::new(0)),
            outstanding: CachePadded::new(AtomicI64::new(0)),
            rejected_max_cnxns: CachePadded::new(AtomicU64::new(0)),
            frames_rejected: CachePadded::new(AtomicU64::new(0)),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")),
        }
    }
    pub fn packet_received(&self) {
        bump(&self.packets_received, 1);
    }
    pub fn packets_sent(&self, n: u64) {
        bump(&self.packets_sent, n);
    }
    pub fn conn_opened(&self) {
        self.connections.store(self.connections.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    pub fn conn_closed(&self) {
        self.connections.store(self.connections.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
    pub fn outstanding_add(&self, n: i64) {
        self.outstanding.store(self.outstanding.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub fn conn_rejected_max_cnxns(&self) {
        bump(&self.rejected_max_cnxns, 1);
    }
    pub fn frame_rejected(&self) {
        bump(&self.frames_rejected, 1);
    }
    pub fn record_latency_us(&self, us: u64) {
        let _ = self.latency_us.lock().record(us.max(1));
    }
}

/// Sums across shards.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub connections: i64,
    pub outstanding: i64,
    pub rejected_max_cnxns: u64,
    pub frames_rejected: u64,
    pub requests: u64,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
}

pub struct Metrics {
    shards: Vec<Arc<ShardProbe>>,
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        Metrics { shards: (0..shards).map(|_| Arc::new(ShardProbe::new())).collect() }
    }
    pub fn shard(&self, i: usize) -> Arc<ShardProbe> {
        self.shards[i].clone()
    }
    pub fn snapshot(&self) -> Totals {
        let mut t = Totals::default();
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for s in &self.shards {
            t.packets_received += s.packets_received.load(Ordering::Relaxed);
            t.packets_sent += s.packets_sent.load(Ordering::Relaxed);
            t.connections += s.connections.load(Ordering::Relaxed);
            t.outstanding += s.outstanding.load(Ordering::Relaxed);
            t.rejected_max_cnxns += s.rejected_max_cnxns.load(Ordering::Relaxed);
            t.frames_rejected += s.frames_rejected.load(Ordering::Relaxed);
            let _ = h.add(&*s.latency_us.lock());
        }
        t.requests = h.len();
        if !h.is_empty() {
            t.latency_min_ms = h.min() / 1000;
            t.latency_avg_ms = h.mean() / 1000.0;
            t.latency_max_ms = h.max() / 1000;
            t.latency_p50_us = h.value_at_quantile(0.5);
            t.latency_p99_us = h.value_at_quantile(0.99);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_shard_cells_sum_on_read() {
        let m = Arc::new(Metrics::new(2));
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let p = m.shard(i);
                std::thread::spawn(move || {
                    for v in 1..=1000u64 {
                        p.packet_received();
                        p.record_latency_us(v * 1000);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let t = m.snapshot();
        assert_eq!(t.packets_received, 2000);
        assert_eq!(t.requests, 2000);
        assert_eq!((t.latency_min_ms, t.latency_max_ms), (1, 1000));
        assert!((499_000..=501_000).contains(&t.latency_p50_us), "{}", t.latency_p50_us);
    }
}
