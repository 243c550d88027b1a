//! What a run measures: its shared state (the measurement window, the ops counter, what was
//! written for --verify, the watch-fanout rendezvous) and what each session measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::args::{BenchArgs, LATENCY_MAX_US};
use crate::client::error_name;

pub(super) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds")
}

/// What one session measured; merged at the end.
pub(super) struct SessionStats {
    pub(super) hist: Histogram<u64>,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) warmup_ops: u64,
    pub(super) warmup_errors: u64,
    pub(super) reads_checked: u64,
    pub(super) mismatches: u64,
}

impl SessionStats {
    pub(super) fn new() -> Self {
        SessionStats {
            hist: new_hist(),
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
            warmup_ops: 0,
            warmup_errors: 0,
            reads_checked: 0,
            mismatches: 0,
        }
    }
    pub(super) fn merge(&mut self, o: SessionStats) {
        self.hist.add(&o.hist).expect("same histogram bounds");
        self.ok += o.ok;
        self.failed += o.failed;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.warmup_ops += o.warmup_ops;
        self.warmup_errors += o.warmup_errors;
        self.reads_checked += o.reads_checked;
        self.mismatches += o.mismatches;
    }
    pub(super) fn error(&mut self, ctx: &Ctx, start: Instant, name: &str) {
        if ctx.in_window(start) {
            self.failed += 1;
            *self.errors.entry(name.to_string()).or_default() += 1;
        } else {
            self.warmup_errors += 1;
        }
    }
    pub(super) fn mismatch(&mut self, name: &str) {
        self.mismatches += 1;
        *self.errors.entry(name.to_string()).or_default() += 1;
    }
    /// A reply (or a completed handshake) for an op that started at `start`.
    pub(super) fn completed(&mut self, ctx: &Ctx, start: Instant, at: Instant, err: i32) {
        if ctx.in_window(start) {
            let us = at.saturating_duration_since(start).as_micros().min(LATENCY_MAX_US as u128) as u64;
            self.hist.saturating_record(us.max(1));
            if err == 0 {
                self.ok += 1;
                ctx.ops_done.fetch_add(1, Ordering::Relaxed);
            } else {
                self.failed += 1;
                *self.errors.entry(error_name(err)).or_default() += 1;
            }
        } else {
            self.warmup_ops += 1;
            if err != 0 {
                self.warmup_errors += 1;
            }
        }
    }
}

/// Shared, read-mostly run state.
pub(super) struct Ctx {
    pub(super) a: BenchArgs,
    pub(super) warm_end: Instant,
    pub(super) end: Instant,
    pub(super) drain_end: Instant,
    pub(super) ops_done: AtomicU64,
    /// key -> (highest version seen written, its data): only with --verify.
    pub(super) written: Mutex<HashMap<u32, (i32, Vec<u8>)>>,
    /// watch-fanout: sessions whose watch is set for the current round, and when it was fired.
    pub(super) armed: AtomicUsize,
    pub(super) fired_at: Mutex<Option<Instant>>,
    pub(super) armed_notify: tokio::sync::Notify,
}

impl Ctx {
    pub(super) fn in_window(&self, start: Instant) -> bool {
        start >= self.warm_end && start < self.end
    }
    pub(super) fn key_path(&self, k: u32) -> String {
        format!("{}/k{k}", self.a.root)
    }
    pub(super) fn addr(&self, idx: usize) -> &str {
        &self.a.servers[idx % self.a.servers.len()]
    }
}
