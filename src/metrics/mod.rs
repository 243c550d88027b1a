//! Sharded metrics, LongAdder-style: each shard owns cache-line-padded cells that only it writes
//! (plain relaxed load + store, no contended read-modify-write across cores); a reader sums the
//! cells of every shard. Latency histograms are per shard and merged on read.
//!
//! Resets (`srst`) never write a shard's counter cells (a concurrent single-writer store would
//! undo them): the reader keeps a baseline and reports differences. Latency statistics sit behind
//! a per-shard mutex that the shard holds only to record one value, so a reset clears them there.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Largest latency a histogram records, in microseconds (one hour); larger values are clamped.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;

/// The counters of one shard, by index into `ShardProbe::counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    PacketsReceived,
    PacketsSent,
    BytesReceived,
    /// Connections refused by `maxClientCnxns`.
    RejectedMaxCnxns,
    /// Frames rejected for their length (`jute.maxbuffer`): ZooKeeper's `large_requests_rejected`.
    FramesRejected,
    ConnsAccepted,
    /// Connections that closed before a session was established (4lw ones excluded).
    ConnsClosedWithoutSession,
    FourLetterWords,
    AuthFailed,
    /// Times a shard stopped reading its sockets because of `globalOutstandingLimit`.
    BackpressurePauses,
    /// Reads that arrived behind a write of their own session still in flight, and so ran on the
    /// replica at their place in the apply order (pipelining sessions that mix reads and writes).
    ReadsOrderedBehindWrites,
    /// Messages this shard held back because the replica's queue was full (it stops reading
    /// its sockets until they are handed over).
    ReplicaQueueFull,
    /// Messages for this shard the replica held back because the shard's inbox was full.
    ShardInboxFull,
}

const COUNTERS: usize = 13;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Latency of answered requests, in microseconds. Guarded by the shard's mutex.
pub struct LatencyCells {
    pub read_us: Histogram<u64>,
    pub update_us: Histogram<u64>,
    pub min_us: u64,
    pub max_us: u64,
    pub sum_us: u64,
    pub count: u64,
    /// Reply sizes in bytes (ZooKeeper's `BufferStats`: -1 until the first reply).
    pub resp_last: i64,
    pub resp_min: i64,
    pub resp_max: i64,
}

impl LatencyCells {
    fn new() -> Self {
        LatencyCells {
            read_us: hist(),
            update_us: hist(),
            min_us: u64::MAX,
            max_us: 0,
            sum_us: 0,
            count: 0,
            resp_last: -1,
            resp_min: -1,
            resp_max: -1,
        }
    }
    fn reset(&mut self) {
        *self = LatencyCells::new();
    }
}

/// One shard's cells. Written by its shard only.
pub struct ShardProbe {
    counters: [CachePadded<AtomicU64>; COUNTERS],
    connections: CachePadded<AtomicI64>,
    outstanding: CachePadded<AtomicI64>,
    /// 1 while the shard is not reading sockets (back-pressure), else 0.
    backpressured: CachePadded<AtomicI64>,
    /// The shard holds the lock only to record one value; a reader only to copy (merge).
    latency: Mutex<LatencyCells>,
}

fn bump(c: &AtomicU64, n: u64) {
    // Single writer per cell: load + store is enough and avoids a locked RMW.
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn bump_i(c: &AtomicI64, n: i64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl ShardProbe {
    fn new() -> Self {
        ShardProbe {
            counters: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            connections: CachePadded::new(AtomicI64::new(0)),
            outstanding: CachePadded::new(AtomicI64::new(0)),
            backpressured: CachePadded::new(AtomicI64::new(0)),
            latency: Mutex::new(LatencyCells::new()),
        }
    }
    /// Adds `n` to a counter (single writer: this shard).
    pub fn add(&self, c: Counter, n: u64) {
        bump(&self.counters[c as usize], n);
    }
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }
    pub fn packet_received(&self) {
        self.add(Counter::PacketsReceived, 1);
    }
    pub fn packets_sent(&self, n: u64) {
        self.add(Counter::PacketsSent, n);
    }
    pub fn conn_opened(&self) {
        bump_i(&self.connections, 1);
        self.add(Counter::ConnsAccepted, 1);
    }
    pub fn conn_closed(&self) {
        bump_i(&self.connections, -1);
    }
    pub fn outstanding_add(&self, n: i64) {
        bump_i(&self.outstanding, n);
    }
    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Relaxed)
    }
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }
    pub fn set_backpressured(&self, on: bool) {
        let was = self.backpressured.load(Ordering::Relaxed) != 0;
        if on && !was {
            self.add(Counter::BackpressurePauses, 1);
        }
        self.backpressured.store(on as i64, Ordering::Relaxed);
    }
    pub fn backpressured(&self) -> bool {
        self.backpressured.load(Ordering::Relaxed) != 0
    }
    pub fn conn_rejected_max_cnxns(&self) {
        self.add(Counter::RejectedMaxCnxns, 1);
    }
    pub fn frame_rejected(&self) {
        self.add(Counter::FramesRejected, 1);
    }
    /// Records an answered request's latency; `update` for writes (ZooKeeper's `updatelatency`),
    /// else a read (`readlatency`).
    pub fn record_latency_us(&self, us: u64, update: bool) {
        self.record_reply(us, update, None);
    }
    /// `record_latency_us` plus the reply's size in bytes (without the length prefix).
    pub fn record_reply(&self, us: u64, update: bool, bytes: Option<usize>) {
        let us = us.clamp(1, LATENCY_MAX_US);
        let mut l = self.latency.lock();
        if let Some(b) = bytes {
            let b = b as i64;
            l.resp_last = b;
            l.resp_min = if l.resp_min < 0 { b } else { l.resp_min.min(b) };
            l.resp_max = l.resp_max.max(b);
        }
        let h = if update { &mut l.update_us } else { &mut l.read_us };
        let _ = h.record(us);
        l.min_us = l.min_us.min(us);
        l.max_us = l.max_us.max(us);
        l.sum_us += us;
        l.count += 1;
    }
}

/// Sums across shards (after the last `reset`).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub connections: i64,
    pub outstanding: i64,
    pub rejected_max_cnxns: u64,
    pub frames_rejected: u64,
    pub conns_accepted: u64,
    pub conns_closed_without_session: u64,
    pub four_letter_words: u64,
    pub auth_failed: u64,
    pub backpressure_pauses: u64,
    pub reads_ordered_behind_writes: u64,
    pub replica_queue_full: u64,
    pub shard_inbox_full: u64,
    pub backpressured_shards: u64,
    pub requests: u64,
    /// ZooKeeper's request latency (milliseconds): min/avg/max, avg rounded to 4 places.
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// Client reply sizes (bytes): last, min, max; -1 before any reply.
    pub resp_last: i64,
    pub resp_min: i64,
    pub resp_max: i64,
}

/// One shard's view, for per-shard gauges.
#[derive(Debug, Clone, Default)]
pub struct ShardView {
    pub connections: i64,
    pub outstanding: i64,
    pub backpressured: bool,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub requests: u64,
}

/// Merged latency histograms (microseconds).
pub struct LatencySnapshot {
    pub read_us: Histogram<u64>,
    pub update_us: Histogram<u64>,
}

pub struct Metrics {
    shards: Vec<Arc<ShardProbe>>,
    /// Counter values at the last reset, per shard.
    baseline: Mutex<Vec<[u64; COUNTERS]>>,
}

/// Rounds like ZooKeeper's `AvgMinMaxCounter.getAvg` (4 places, half up).
pub fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        Metrics {
            shards: (0..shards).map(|_| Arc::new(ShardProbe::new())).collect(),
            baseline: Mutex::new(vec![[0; COUNTERS]; shards]),
        }
    }
    pub fn shard(&self, i: usize) -> Arc<ShardProbe> {
        self.shards[i].clone()
    }
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
    /// Sum of a counter since the last reset.
    pub fn counter(&self, c: Counter) -> u64 {
        let base = self.baseline.lock();
        self.shards.iter().zip(base.iter()).map(|(s, b)| s.get(c).wrapping_sub(b[c as usize])).sum()
    }
    /// Server-wide outstanding requests (reads every shard's cell).
    pub fn outstanding_total(&self) -> i64 {
        self.shards.iter().map(|s| s.outstanding()).sum()
    }
    /// `srst`: packet counts and latency start over. Gauges (connections, outstanding) stay.
    pub fn reset(&self) {
        let mut base = self.baseline.lock();
        for (s, b) in self.shards.iter().zip(base.iter_mut()) {
            for (i, cell) in b.iter_mut().enumerate() {
                *cell = s.counters[i].load(Ordering::Relaxed);
            }
            s.latency.lock().reset();
        }
    }
    pub fn per_shard(&self) -> Vec<ShardView> {
        let base = self.baseline.lock();
        self.shards
            .iter()
            .zip(base.iter())
            .map(|(s, b)| {
                let l = s.latency.lock();
                ShardView {
                    connections: s.connections(),
                    outstanding: s.outstanding(),
                    backpressured: s.backpressured(),
                    packets_received: s
                        .get(Counter::PacketsReceived)
                        .wrapping_sub(b[Counter::PacketsReceived as usize]),
                    packets_sent: s.get(Counter::PacketsSent).wrapping_sub(b[Counter::PacketsSent as usize]),
                    requests: l.count,
                }
            })
            .collect()
    }
    pub fn latency(&self) -> LatencySnapshot {
        let mut snap = LatencySnapshot { read_us: hist(), update_us: hist() };
        for s in &self.shards {
            let l = s.latency.lock();
            let _ = snap.read_us.add(&l.read_us);
            let _ = snap.update_us.add(&l.update_us);
        }
        snap
    }
    pub fn snapshot(&self) -> Totals {
        let mut t = Totals::default();
        let mut h = hist();
        let (mut min, mut max, mut sum, mut count) = (u64::MAX, 0u64, 0u64, 0u64);
        (t.resp_last, t.resp_min, t.resp_max) = (-1, -1, -1);
        for s in &self.shards {
            t.connections += s.connections();
            t.outstanding += s.outstanding();
            t.backpressured_shards += s.backpressured() as u64;
            let l = s.latency.lock();
            let _ = h.add(&l.read_us);
            let _ = h.add(&l.update_us);
            min = min.min(l.min_us);
            max = max.max(l.max_us);
            sum += l.sum_us;
            count += l.count;
            if l.resp_last >= 0 {
                t.resp_last = l.resp_last;
                t.resp_min = if t.resp_min < 0 { l.resp_min } else { t.resp_min.min(l.resp_min) };
                t.resp_max = t.resp_max.max(l.resp_max);
            }
        }
        t.packets_received = self.counter(Counter::PacketsReceived);
        t.packets_sent = self.counter(Counter::PacketsSent);
        t.bytes_received = self.counter(Counter::BytesReceived);
        t.rejected_max_cnxns = self.counter(Counter::RejectedMaxCnxns);
        t.frames_rejected = self.counter(Counter::FramesRejected);
        t.conns_accepted = self.counter(Counter::ConnsAccepted);
        t.conns_closed_without_session = self.counter(Counter::ConnsClosedWithoutSession);
        t.four_letter_words = self.counter(Counter::FourLetterWords);
        t.auth_failed = self.counter(Counter::AuthFailed);
        t.backpressure_pauses = self.counter(Counter::BackpressurePauses);
        t.reads_ordered_behind_writes = self.counter(Counter::ReadsOrderedBehindWrites);
        t.replica_queue_full = self.counter(Counter::ReplicaQueueFull);
        t.shard_inbox_full = self.counter(Counter::ShardInboxFull);
        t.requests = count;
        if count > 0 {
            t.latency_min_ms = min / 1000;
            t.latency_avg_ms = round4(sum as f64 / 1000.0 / count as f64);
            t.latency_max_ms = max / 1000;
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
                        p.record_latency_us(v * 1000, v % 2 == 0);
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
        assert_eq!(t.latency_avg_ms, 500.5);
        assert!((499_000..=501_000).contains(&t.latency_p50_us), "{}", t.latency_p50_us);
        let l = m.latency();
        assert_eq!((l.read_us.len(), l.update_us.len()), (1000, 1000));
    }

    #[test]
    fn reset_keeps_gauges_and_restarts_counts() {
        let m = Metrics::new(2);
        let p = m.shard(1);
        p.conn_opened();
        p.packet_received();
        p.outstanding_add(3);
        p.record_latency_us(5000, false);
        m.reset();
        let t = m.snapshot();
        assert_eq!((t.packets_received, t.requests, t.latency_max_ms), (0, 0, 0));
        assert_eq!((t.connections, t.outstanding), (1, 3));
        p.packet_received();
        assert_eq!(m.counter(Counter::PacketsReceived), 1);
    }

    #[test]
    fn backpressure_counts_pauses_not_checks() {
        let m = Metrics::new(1);
        let p = m.shard(0);
        p.set_backpressured(true);
        p.set_backpressured(true);
        p.set_backpressured(false);
        p.set_backpressured(true);
        assert_eq!(m.counter(Counter::BackpressurePauses), 2);
        assert_eq!(m.snapshot().backpressured_shards, 1);
    }
}
