//! Sharded counter increments (zkd's `ShardProbe`: one cache-padded single-writer cell per
//! shard, summed on read) vs. one shared AtomicU64 incremented with fetch_add from the same
//! threads. One thread per core; plain `Instant`-based harness, best of 3.
//!
//! Run: `cargo bench --bench metrics_counter` (ITERS overrides the per-thread count, THREADS the
//! thread count; default: every core).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use zkd::metrics::{Counter, Metrics};

/// One thread per core: contention on a shared line only shows when the writers truly run at once.
fn pin(i: usize) {
    if let Some(ids) = core_affinity::get_core_ids() {
        if !ids.is_empty() {
            core_affinity::set_for_current(ids[i % ids.len()]);
        }
    }
}

fn run_sharded(threads: usize, iters: u64) -> Duration {
    let m = Arc::new(Metrics::new(threads));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let p = m.shard(i);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                pin(i);
                barrier.wait();
                for _ in 0..iters {
                    black_box(&p).add(black_box(Counter::PacketsReceived), 1);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("writer");
    }
    let elapsed = start.elapsed();
    assert_eq!(m.counter(Counter::PacketsReceived), iters * threads as u64);
    elapsed
}

fn run_shared(threads: usize, iters: u64) -> Duration {
    let counter = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let c = Arc::clone(&counter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                pin(i);
                barrier.wait();
                for _ in 0..iters {
                    black_box(&c).fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("writer");
    }
    let elapsed = start.elapsed();
    assert_eq!(counter.load(Relaxed), iters * threads as u64);
    elapsed
}

fn main() {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let iters = env("ITERS").unwrap_or(20_000_000);
    let threads = env("THREADS")
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let best = |f: fn(usize, u64) -> Duration| (0..3).map(|_| f(threads, iters)).min().expect("runs");
    let sharded = best(run_sharded);
    let shared = best(run_shared);
    let total = (iters * threads as u64) as f64;
    println!("threads={threads} increments/thread={iters}");
    println!("sharded single-writer: {:>8.2} ns/inc ({sharded:?})", sharded.as_nanos() as f64 / total);
    println!("shared AtomicU64:      {:>8.2} ns/inc ({shared:?})", shared.as_nanos() as f64 / total);
    println!("ratio shared/sharded = {:.2}x", shared.as_secs_f64() / sharded.as_secs_f64());
}
