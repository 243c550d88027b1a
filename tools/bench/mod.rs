//! `zkd bench`: a ZooKeeper load generator with its own pipelined client.
//!
//! One connection (one session) per simulated client; each keeps up to `--depth` requests
//! outstanding and matches replies by xid. Closed loop by default (a request is sent when one
//! completes); with `--rate` it is open loop at a fixed rate and latency is measured from each
//! request's *intended* send time, so a stalled server is charged for every request it delayed
//! (coordinated-omission correction, as wrk2 does).
//!
//! Measurement window: requests whose start (intended, or actual in closed loop) falls in
//! `[warmup, warmup + duration)`. Every reply in the window is recorded in the latency histogram;
//! every error is counted by name (ZooKeeper error code names, plus the client-side
//! `ConnectionLoss`, `ConnectFailed`, `NoReply`, `UnmatchedXid`, `VerifyMismatch`, `VerifyStaleRead`).

pub mod hgrm;
pub mod plot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{error_name, open_acl, Conn, Event, Reply};
use zkd::proto::jute::Record;
use zkd::proto::{
    CreateRequest, CreateResponse, DeleteRequest, ErrorCode, GetDataRequest, GetDataResponse, OpCode,
    SetDataRequest, SetDataResponse,
};

pub const SESSIONS_MAX: usize = 10_000;
pub const DEPTH_MAX: usize = 10_000;
pub const VALUE_SIZE_MAX_BYTES: usize = 16 << 20;
pub const KEYS_MAX: u32 = 10_000_000;
/// How long outstanding requests may take to complete after the window closes.
pub const DRAIN: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Latencies above this are clamped (and still counted).
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
const SETUP_BATCH: usize = 512;
/// Bytes of values queued at once by setup and verify.
const SETUP_BATCH_BYTES: usize = 8 << 20;

fn setup_batch(value_size: usize) -> usize {
    (SETUP_BATCH_BYTES / value_size.max(1)).clamp(1, SETUP_BATCH)
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// getData on random keys.
    Read,
    /// setData (version -1) on random keys.
    Write,
    /// --read-pct % getData, the rest setData.
    Mixed,
    /// create then delete of per-session nodes; both count as ops.
    CreateDelete,
    /// Session 0 sets /root/fanout; every other session watches it; latency = setData sent to
    /// notification received, one op per notification.
    WatchFanout,
    /// Each session repeatedly connects (handshake), then closes the session; latency = handshake.
    ConnectStorm,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::Mixed => "mixed",
            Workload::CreateDelete => "create-delete",
            Workload::WatchFanout => "watch-fanout",
            Workload::ConnectStorm => "connect-storm",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Servers, host:port[,host:port...]; sessions are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2181")]
    pub servers: Vec<String>,
    /// Concurrent sessions (one TCP connection each).
    #[arg(long, default_value_t = 16)]
    pub sessions: usize,
    /// Outstanding requests per session.
    #[arg(long, default_value_t = 8)]
    pub depth: usize,
    #[arg(long, value_enum, default_value_t = Workload::Read)]
    pub workload: Workload,
    /// Percentage of reads in the mixed workload.
    #[arg(long, default_value_t = 90)]
    pub read_pct: u32,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Number of keys (znodes under ROOT) read and written.
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Seconds of warm-up (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Fixed total rate in ops/s (open loop, coordinated-omission corrected); default closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Check what was read against what was written (data and version), and read everything back at
    /// the end.
    #[arg(long)]
    pub verify: bool,
    /// Write the latency distribution as an HdrHistogram .hgrm file (values in ms).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Draw latency by percentile to FILE.svg or FILE.png.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Another run's .hgrm to draw on the same chart.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Name of this run in the chart legend.
    #[arg(long)]
    pub label: Option<String>,
    /// Name of the --compare run in the chart legend.
    #[arg(long)]
    pub compare_label: Option<String>,
    /// Do not run: plot this .hgrm (with --compare) to --plot.
    #[arg(long)]
    pub replot: Option<PathBuf>,
    /// Print the summary as JSON on stdout (the text summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Parent znode of everything the bench creates.
    #[arg(long, default_value = "/zkbench")]
    pub root: String,
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout_ms: i32,
    /// Never show the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    /// Defaults as on the command line, against `servers`.
    pub fn new(servers: Vec<String>, workload: Workload) -> Self {
        BenchArgs {
            servers,
            sessions: 16,
            depth: 8,
            workload,
            read_pct: 90,
            value_size: 100,
            keys: 1000,
            warmup: 2.0,
            duration: 10.0,
            rate: None,
            verify: false,
            hgrm: None,
            plot: None,
            compare: None,
            label: None,
            compare_label: None,
            replot: None,
            json: false,
            root: "/zkbench".into(),
            session_timeout_ms: 30_000,
            no_progress: true,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.servers.is_empty() || self.servers.iter().any(|s| !s.contains(':')) {
            bail!("--servers: expected host:port[,host:port...], got {:?}", self.servers);
        }
        if self.sessions == 0 || self.sessions > SESSIONS_MAX {
            bail!("--sessions {} outside 1..={SESSIONS_MAX}", self.sessions);
        }
        if self.depth == 0 || self.depth > DEPTH_MAX {
            bail!("--depth {} outside 1..={DEPTH_MAX}", self.depth);
        }
        if self.value_size > VALUE_SIZE_MAX_BYTES {
            bail!("--value-size {} above {VALUE_SIZE_MAX_BYTES}", self.value_size);
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            bail!("--keys {} outside 1..={KEYS_MAX}", self.keys);
        }
        if self.read_pct > 100 {
            bail!("--read-pct {} above 100", self.read_pct);
        }
        if !(0.0..=86_400.0).contains(&self.warmup) || !(0.001..=86_400.0).contains(&self.duration) {
            bail!("--warmup/--duration out of range ({} s, {} s)", self.warmup, self.duration);
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r <= 10_000_000.0) {
                bail!("--rate {r} outside (0, 1e7]");
            }
        }
        if self.workload == Workload::WatchFanout && self.sessions < 2 {
            bail!("watch-fanout needs at least 2 sessions (one writer, the rest watch)");
        }
        if !self.root.starts_with('/') || self.root.len() < 2 || self.root.ends_with('/') {
            bail!("--root {:?}: expected an absolute path like /zkbench", self.root);
        }
        Ok(())
    }
}

/// Latency percentiles of the measured window, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyUs {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    pub keys_checked: u64,
    pub reads_checked: u64,
    pub mismatches: u64,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: Workload,
    pub servers: Vec<String>,
    pub sessions: usize,
    pub depth: usize,
    pub open_loop_rate_ops_per_s: Option<f64>,
    pub value_size_bytes: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Successful operations in the window.
    pub ops_ok: u64,
    /// Failed operations in the window (the sum of `errors`, less verify findings).
    pub ops_error: u64,
    pub ops_per_s: f64,
    pub latency_us: LatencyUs,
    /// Every error by name, never sampled.
    pub errors: BTreeMap<String, u64>,
    pub warmup_ops: u64,
    pub warmup_errors: u64,
    pub verify: Option<VerifySummary>,
    #[serde(skip)]
    pub hist: Histogram<u64>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds")
}

/// What one session measured; merged at the end.
struct SessionStats {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    warmup_ops: u64,
    warmup_errors: u64,
    reads_checked: u64,
    mismatches: u64,
}

impl SessionStats {
    fn new() -> Self {
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
    fn merge(&mut self, o: SessionStats) {
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
    fn error(&mut self, ctx: &Ctx, start: Instant, name: &str) {
        if ctx.in_window(start) {
            self.failed += 1;
            *self.errors.entry(name.to_string()).or_default() += 1;
        } else {
            self.warmup_errors += 1;
        }
    }
    fn mismatch(&mut self, name: &str) {
        self.mismatches += 1;
        *self.errors.entry(name.to_string()).or_default() += 1;
    }
    /// A reply (or a completed handshake) for an op that started at `start`.
    fn completed(&mut self, ctx: &Ctx, start: Instant, at: Instant, err: i32) {
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
struct Ctx {
    a: BenchArgs,
    warm_end: Instant,
    end: Instant,
    drain_end: Instant,
    ops_done: AtomicU64,
    /// key -> (highest version seen written, its data): only with --verify.
    written: Mutex<HashMap<u32, (i32, Vec<u8>)>>,
    /// watch-fanout: sessions whose watch is set for the current round, and when it was fired.
    armed: AtomicUsize,
    fired_at: Mutex<Option<Instant>>,
    armed_notify: tokio::sync::Notify,
}

impl Ctx {
    fn in_window(&self, start: Instant) -> bool {
        start >= self.warm_end && start < self.end
    }
    fn key_path(&self, k: u32) -> String {
        format!("{}/k{k}", self.a.root)
    }
    fn addr(&self, idx: usize) -> &str {
        &self.a.servers[idx % self.a.servers.len()]
    }
}

fn make_value(idx: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("s{idx}-{seq}-").into_bytes();
    v.resize(size, b'x');
    v
}

enum Kind {
    Read(u32),
    Write(u32, Option<Vec<u8>>),
    Create(String),
    Delete,
}

struct Pending {
    start: Instant,
    kind: Kind,
}

/// Per-session request generator.
struct Gen {
    idx: usize,
    rng: StdRng,
    seq: u64,
    to_delete: VecDeque<String>,
    last_version: HashMap<u32, i32>,
}

impl Gen {
    fn new(idx: usize) -> Self {
        Gen {
            idx,
            rng: StdRng::seed_from_u64(0x5eed_0000 + idx as u64),
            seq: 0,
            to_delete: VecDeque::new(),
            last_version: HashMap::new(),
        }
    }

    /// Queues the next request of the workload on `conn`; returns its xid and kind.
    fn next(&mut self, ctx: &Ctx, conn: &mut Conn) -> (i32, Kind) {
        self.seq += 1;
        let a = &ctx.a;
        let read = match a.workload {
            Workload::Read => true,
            Workload::Write => false,
            Workload::Mixed => self.rng.gen_range(0..100) < a.read_pct,
            Workload::CreateDelete => {
                if let Some(path) = self.to_delete.pop_front() {
                    let xid = conn.queue(OpCode::Delete, &DeleteRequest { path, version: -1 });
                    return (xid, Kind::Delete);
                }
                let path = format!("{}/cd/s{}-{}", a.root, self.idx, self.seq);
                let req = CreateRequest {
                    path: path.clone(),
                    data: Some(make_value(self.idx, self.seq, a.value_size)),
                    acl: open_acl(),
                    flags: 0,
                };
                let xid = conn.queue(OpCode::Create, &req);
                return (xid, Kind::Create(path));
            }
            Workload::WatchFanout | Workload::ConnectStorm => unreachable!("not an op-loop workload"),
        };
        let k = self.rng.gen_range(0..a.keys);
        if read {
            let xid = conn.queue(OpCode::GetData, &GetDataRequest { path: ctx.key_path(k), watch: false });
            (xid, Kind::Read(k))
        } else {
            let data = make_value(self.idx, self.seq, a.value_size);
            let keep = a.verify.then(|| data.clone());
            let xid = conn.queue(
                OpCode::SetData,
                &SetDataRequest { path: ctx.key_path(k), data: Some(data), version: -1 },
            );
            (xid, Kind::Write(k, keep))
        }
    }

    fn on_ok(&mut self, ctx: &Ctx, st: &mut SessionStats, kind: Kind, r: &Reply) {
        match kind {
            Kind::Create(path) => {
                if ctx.a.verify {
                    match CreateResponse::from_bytes(&r.body) {
                        Ok(c) if c.path == path => {}
                        _ => st.mismatch("VerifyMismatch"),
                    }
                }
                self.to_delete.push_back(path);
            }
            Kind::Write(k, Some(data)) => match SetDataResponse::from_bytes(&r.body) {
                Ok(s) => {
                    let v = s.stat.version;
                    let lv = self.last_version.entry(k).or_insert(v);
                    if v < *lv {
                        st.mismatch("VerifyStaleRead");
                    }
                    *lv = (*lv).max(v);
                    let mut w = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
                    let e = w.entry(k).or_insert((-1, Vec::new()));
                    if v > e.0 {
                        *e = (v, data);
                    } else if v == e.0 {
                        st.mismatch("VerifyMismatch"); // two writes got the same version
                    }
                }
                Err(_) => st.mismatch("VerifyMismatch"),
            },
            Kind::Read(k) if ctx.a.verify => match GetDataResponse::from_bytes(&r.body) {
                Ok(g) => {
                    st.reads_checked += 1;
                    let v = g.stat.version;
                    let lv = self.last_version.entry(k).or_insert(v);
                    if v < *lv {
                        st.mismatch("VerifyStaleRead");
                    }
                    *lv = (*lv).max(v);
                    let w = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((wv, wd)) = w.get(&k) {
                        if *wv == v && g.data.as_deref().unwrap_or(&[]) != wd.as_slice() {
                            st.mismatch("VerifyMismatch");
                        }
                    }
                }
                Err(_) => st.mismatch("VerifyMismatch"),
            },
            _ => {}
        }
    }
}

fn sleep_until(t: Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t))
}

enum Ended {
    Done,
    Lost,
}

/// Runs requests on one established connection until the run ends or the connection is lost.
async fn run_conn(
    ctx: &Ctx,
    conn: &mut Conn,
    st: &mut SessionStats,
    g: &mut Gen,
    next_intended: &mut Instant,
) -> Ended {
    let a = &ctx.a;
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.sessions as f64 / r));
    let ping_every = Duration::from_millis((conn.negotiated_timeout_ms.max(3) / 3) as u64);
    let mut pending: HashMap<i32, Pending> = HashMap::with_capacity(a.depth + 1);
    let mut last_send = Instant::now();
    let lose_all = |pending: &mut HashMap<i32, Pending>, st: &mut SessionStats| {
        for (_, p) in pending.drain() {
            st.error(ctx, p.start, "ConnectionLoss");
        }
    };
    loop {
        let now = Instant::now();
        let sending = now < ctx.end;
        if sending {
            let mut queued = false;
            while pending.len() < a.depth {
                let start = match interval {
                    None => now,
                    Some(iv) => {
                        if *next_intended > now {
                            break;
                        }
                        let t = *next_intended;
                        *next_intended += iv;
                        t
                    }
                };
                if start >= ctx.end {
                    break;
                }
                let (xid, kind) = g.next(ctx, conn);
                pending.insert(xid, Pending { start, kind });
                queued = true;
            }
            if !queued && now.duration_since(last_send) >= ping_every {
                conn.queue_empty(zkd::proto::xid::PING, OpCode::Ping);
                queued = true;
            }
            if queued {
                if conn.flush().await.is_err() {
                    lose_all(&mut pending, st);
                    return Ended::Lost;
                }
                last_send = now;
            }
        } else if pending.is_empty() {
            return Ended::Done;
        } else if now >= ctx.drain_end {
            for (_, p) in pending.drain() {
                st.error(ctx, p.start, "NoReply");
            }
            return Ended::Done;
        }
        let mut wake = last_send + ping_every;
        if sending {
            wake = wake.min(ctx.end);
            if let (Some(_), true) = (interval, pending.len() < a.depth) {
                wake = wake.min(*next_intended);
            }
        } else {
            wake = wake.min(ctx.drain_end);
        }
        // Handle every reply that is already here before refilling, so one write carries many
        // requests (the client must cost less than the servers it measures).
        let first = match conn.try_recv() {
            Some(ev) => Some(ev),
            None => tokio::select! {
                ev = conn.recv() => Some(ev.unwrap_or(Event::Closed("closed".into()))),
                _ = sleep_until(wake) => None,
            },
        };
        let mut next = first;
        while let Some(ev) = next {
            match ev {
                Event::Reply(r) => {
                    if r.xid != zkd::proto::xid::PING && r.xid != zkd::proto::xid::NOTIFICATION {
                        match pending.remove(&r.xid) {
                            None => st.error(ctx, r.at, "UnmatchedXid"),
                            Some(p) => {
                                st.completed(ctx, p.start, r.at, r.err);
                                if r.err == 0 {
                                    g.on_ok(ctx, st, p.kind, &r);
                                }
                            }
                        }
                    }
                }
                Event::Closed(_) => {
                    lose_all(&mut pending, st);
                    return Ended::Lost;
                }
            }
            next = conn.try_recv();
        }
    }
}

async fn op_session(ctx: Arc<Ctx>, idx: usize) -> SessionStats {
    let mut st = SessionStats::new();
    let mut g = Gen::new(idx);
    let a = &ctx.a;
    // Open loop: sessions are phase-shifted so that the total rate is smooth.
    let mut next_intended = match a.rate {
        Some(r) => ctx.warm_end - Duration::from_secs_f64(a.warmup) + Duration::from_secs_f64(idx as f64 / r),
        None => Instant::now(),
    };
    while Instant::now() < ctx.end {
        let mut conn = match Conn::connect(ctx.addr(idx), a.session_timeout_ms, CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(_) => {
                st.error(&ctx, Instant::now(), "ConnectFailed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match run_conn(&ctx, &mut conn, &mut st, &mut g, &mut next_intended).await {
            Ended::Done => {
                // Remove what create-delete left behind (not measured).
                if !g.to_delete.is_empty() {
                    let mut last = 0;
                    for path in g.to_delete.drain(..) {
                        last = conn.queue(OpCode::Delete, &DeleteRequest { path, version: -1 });
                    }
                    if conn.flush().await.is_ok() {
                        let _ = conn.wait_for(last, Duration::from_secs(5)).await;
                    }
                }
                conn.close(Duration::from_secs(1)).await;
                break;
            }
            Ended::Lost => {
                g.to_delete.clear();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    st
}

async fn storm_session(ctx: Arc<Ctx>, idx: usize) -> SessionStats {
    let mut st = SessionStats::new();
    let a = &ctx.a;
    let interval = a.rate.map(|r| Duration::from_secs_f64(a.sessions as f64 / r));
    let mut next = ctx.warm_end - Duration::from_secs_f64(a.warmup)
        + Duration::from_secs_f64(idx as f64 / a.rate.unwrap_or(1e9));
    loop {
        let start = match interval {
            Some(iv) => {
                sleep_until(next).await;
                let s = next;
                next += iv;
                s
            }
            None => Instant::now(),
        };
        if start >= ctx.end {
            break;
        }
        match Conn::connect(ctx.addr(idx), a.session_timeout_ms, CONNECT_TIMEOUT).await {
            Ok(c) => {
                st.completed(&ctx, start, Instant::now(), 0);
                c.close(Duration::from_secs(2)).await;
            }
            Err(e) => {
                let name = match e {
                    crate::client::ClientError::Connect { .. } => "ConnectFailed",
                    crate::client::ClientError::Timeout { .. } => "ConnectTimeout",
                    crate::client::ClientError::Handshake { .. } => "HandshakeFailed",
                    crate::client::ClientError::Closed { .. } => "ConnectionLoss",
                };
                st.error(&ctx, start, name);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    st
}

/// watch-fanout: session 0 writes, the others watch.
async fn fanout_session(ctx: Arc<Ctx>, idx: usize) -> SessionStats {
    let mut st = SessionStats::new();
    let a = &ctx.a;
    let path = format!("{}/fanout", a.root);
    let watchers = a.sessions - 1;
    let mut conn = match Conn::connect(ctx.addr(idx), a.session_timeout_ms, CONNECT_TIMEOUT).await {
        Ok(c) => c,
        Err(_) => {
            st.error(&ctx, Instant::now(), "ConnectFailed");
            return st;
        }
    };
    let step = Duration::from_secs(2);
    if idx == 0 {
        let mut seq = 0u64;
        while Instant::now() < ctx.end {
            // Wait (bounded) until every watcher has re-armed.
            let all = async {
                while ctx.armed.load(Ordering::Acquire) < watchers {
                    ctx.armed_notify.notified().await;
                }
            };
            if tokio::time::timeout(step, all).await.is_err() {
                st.error(&ctx, Instant::now(), "WatchNotReArmed");
            }
            if Instant::now() >= ctx.end {
                break;
            }
            ctx.armed.store(0, Ordering::Release);
            seq += 1;
            let now = Instant::now();
            *ctx.fired_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            let req = SetDataRequest {
                path: path.clone(),
                data: Some(make_value(0, seq, a.value_size)),
                version: -1,
            };
            match conn.call(OpCode::SetData, &req, step).await {
                Ok(r) if r.err != 0 => st.error(&ctx, now, &error_name(r.err)),
                Ok(_) => {}
                Err(_) => {
                    st.error(&ctx, now, "ConnectionLoss");
                    break;
                }
            }
        }
    } else {
        loop {
            let arm = conn.queue(OpCode::GetData, &GetDataRequest { path: path.clone(), watch: true });
            if conn.flush().await.is_err() {
                st.error(&ctx, Instant::now(), "ConnectionLoss");
                break;
            }
            let mut armed = false;
            let mut fired = false;
            while !fired {
                let remaining = ctx.drain_end.saturating_duration_since(Instant::now());
                let ev = match tokio::time::timeout(remaining.min(step), conn.recv()).await {
                    Err(_) if Instant::now() >= ctx.end => break,
                    Err(_) => continue,
                    Ok(ev) => ev,
                };
                match ev {
                    Some(Event::Reply(r)) if r.xid == arm => {
                        if r.err != 0 {
                            st.error(&ctx, r.at, &error_name(r.err));
                        }
                        armed = true;
                        ctx.armed.fetch_add(1, Ordering::AcqRel);
                        ctx.armed_notify.notify_one();
                    }
                    Some(Event::Reply(r)) if r.xid == zkd::proto::xid::NOTIFICATION => {
                        let fired_at = *ctx.fired_at.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(t) = fired_at {
                            st.completed(&ctx, t, r.at, 0);
                        }
                        fired = true;
                    }
                    Some(Event::Reply(_)) => {}
                    Some(Event::Closed(_)) | None => {
                        st.error(&ctx, Instant::now(), "ConnectionLoss");
                        return st;
                    }
                }
            }
            if !fired || !armed || Instant::now() >= ctx.end {
                break;
            }
        }
    }
    conn.close(Duration::from_secs(1)).await;
    st
}

/// Creates ROOT and what the workload needs (existing nodes are fine).
async fn setup(a: &BenchArgs) -> anyhow::Result<()> {
    let addr = &a.servers[0];
    let mut conn =
        Conn::connect(addr, a.session_timeout_ms, CONNECT_TIMEOUT).await.context("setup connection")?;
    let mut paths = vec![a.root.clone()];
    match a.workload {
        Workload::Read | Workload::Write | Workload::Mixed => {
            paths.extend((0..a.keys).map(|k| format!("{}/k{k}", a.root)))
        }
        Workload::CreateDelete => paths.push(format!("{}/cd", a.root)),
        Workload::WatchFanout => paths.push(format!("{}/fanout", a.root)),
        Workload::ConnectStorm => {}
    }
    let value = vec![b'v'; a.value_size];
    // The root first, then the rest pipelined in batches.
    let mut rest = paths.split_off(1);
    for batch in std::iter::once(std::mem::take(&mut paths)).chain(std::iter::from_fn(|| {
        (!rest.is_empty()).then(|| rest.drain(..rest.len().min(setup_batch(a.value_size))).collect())
    })) {
        let mut xids = Vec::with_capacity(batch.len());
        for path in &batch {
            let data = if path == &a.root { Vec::new() } else { value.clone() };
            xids.push(conn.queue(
                OpCode::Create,
                &CreateRequest { path: path.clone(), data: Some(data), acl: open_acl(), flags: 0 },
            ));
        }
        conn.flush().await?;
        for (xid, path) in xids.into_iter().zip(&batch) {
            let r = conn.wait_for(xid, Duration::from_secs(30)).await?;
            if r.err != 0 && r.err != ErrorCode::NodeExists.code() {
                bail!("setup: create {path} failed: {}", error_name(r.err));
            }
        }
    }
    conn.close(Duration::from_secs(1)).await;
    Ok(())
}

/// Reads back every written key and compares data and version with the last write acknowledged.
async fn verify_all(ctx: &Ctx) -> anyhow::Result<(u64, u64, BTreeMap<String, u64>)> {
    let written: Vec<(u32, (i32, Vec<u8>))> =
        ctx.written.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
    let mut conn = Conn::connect(ctx.addr(0), ctx.a.session_timeout_ms, CONNECT_TIMEOUT)
        .await
        .context("verify connection")?;
    let mut bad = BTreeMap::new();
    let mut checked = 0;
    for chunk in written.chunks(setup_batch(ctx.a.value_size)) {
        let xids: Vec<i32> = chunk
            .iter()
            .map(|(k, _)| {
                conn.queue(OpCode::GetData, &GetDataRequest { path: ctx.key_path(*k), watch: false })
            })
            .collect();
        conn.flush().await?;
        for (xid, (_, (v, data))) in xids.into_iter().zip(chunk) {
            let r = conn.wait_for(xid, Duration::from_secs(30)).await?;
            checked += 1;
            let ok = r.err == 0
                && GetDataResponse::from_bytes(&r.body)
                    .map(|g| g.stat.version == *v && g.data.as_deref().unwrap_or(&[]) == data.as_slice())
                    .unwrap_or(false);
            if !ok {
                *bad.entry("VerifyMismatch".to_string()).or_default() += 1;
            }
        }
    }
    conn.close(Duration::from_secs(1)).await;
    let mism = bad.values().sum();
    Ok((checked, mism, bad))
}

fn percentiles(h: &Histogram<u64>) -> LatencyUs {
    if h.is_empty() {
        return LatencyUs { p50: 0, p90: 0, p99: 0, p99_9: 0, p99_99: 0, max: 0, mean: 0.0 };
    }
    LatencyUs {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        p99_99: h.value_at_quantile(0.9999),
        max: h.highest_equivalent(h.max()),
        mean: h.mean(),
    }
}

async fn run_async(a: BenchArgs) -> anyhow::Result<Summary> {
    setup(&a).await?;
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(a.warmup);
    let end = warm_end + Duration::from_secs_f64(a.duration);
    let ctx = Arc::new(Ctx {
        a: a.clone(),
        warm_end,
        end,
        drain_end: end + DRAIN,
        ops_done: AtomicU64::new(0),
        written: Mutex::new(HashMap::new()),
        armed: AtomicUsize::new(0),
        fired_at: Mutex::new(None),
        armed_notify: tokio::sync::Notify::new(),
    });
    let pb = progress_bar(&a);
    let ticker = {
        let ctx = ctx.clone();
        let pb = pb.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                pb.set_position(now.duration_since(start).as_millis().min(u64::MAX as u128) as u64);
                if now > ctx.warm_end {
                    let secs = now.min(ctx.end).duration_since(ctx.warm_end).as_secs_f64().max(1e-3);
                    let ops = ctx.ops_done.load(Ordering::Relaxed);
                    pb.set_message(format!("{ops} ops, {:.0} ops/s", ops as f64 / secs));
                } else {
                    pb.set_message("warming up");
                }
            }
        })
    };
    let mut handles = Vec::with_capacity(a.sessions);
    for idx in 0..a.sessions {
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            match ctx.a.workload {
                Workload::ConnectStorm => storm_session(ctx, idx).await,
                Workload::WatchFanout => fanout_session(ctx, idx).await,
                _ => op_session(ctx, idx).await,
            }
        }));
    }
    let mut total = SessionStats::new();
    for h in handles {
        total.merge(h.await.context("a session task panicked")?);
    }
    ticker.abort();
    pb.finish_and_clear();
    let mut verify = None;
    if a.verify && matches!(a.workload, Workload::Write | Workload::Mixed) {
        let (checked, mism, bad) = verify_all(&ctx).await?;
        for (k, v) in bad {
            *total.errors.entry(k).or_default() += v;
        }
        verify = Some(VerifySummary {
            keys_checked: checked,
            reads_checked: total.reads_checked,
            mismatches: total.mismatches + mism,
        });
    } else if a.verify {
        verify = Some(VerifySummary {
            keys_checked: 0,
            reads_checked: total.reads_checked,
            mismatches: total.mismatches,
        });
    }
    Ok(Summary {
        workload: a.workload,
        servers: a.servers.clone(),
        sessions: a.sessions,
        depth: a.depth,
        open_loop_rate_ops_per_s: a.rate,
        value_size_bytes: a.value_size,
        warmup_s: a.warmup,
        duration_s: a.duration,
        ops_ok: total.ok,
        ops_error: total.failed,
        ops_per_s: total.ok as f64 / a.duration,
        latency_us: percentiles(&total.hist),
        errors: total.errors,
        warmup_ops: total.warmup_ops,
        warmup_errors: total.warmup_errors,
        verify,
        hist: total.hist,
    })
}

fn progress_bar(a: &BenchArgs) -> indicatif::ProgressBar {
    let len_ms = ((a.warmup + a.duration) * 1000.0) as u64;
    if a.no_progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len_ms);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
    {
        pb.set_style(style);
    }
    pb
}

/// Runs the benchmark and returns its summary (no printing, no files).
pub fn run_bench(a: &BenchArgs) -> anyhow::Result<Summary> {
    a.validate()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run_async(a.clone()))
}

/// The human-readable summary.
pub fn render_summary(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let mode = match s.open_loop_rate_ops_per_s {
        Some(r) => format!("open loop at {r:.0} ops/s (latency from intended send time)"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        o,
        "workload {}: {} sessions x {} outstanding, {} B values, {mode}; {:.1} s measured after {:.1} s warm-up",
        s.workload.name(),
        s.sessions,
        s.depth,
        s.value_size_bytes,
        s.duration_s,
        s.warmup_s
    );
    let _ = writeln!(o, "servers: {}", s.servers.join(","));
    let _ = writeln!(o, "ops: {} ok, {} failed -> {:.1} ops/s", s.ops_ok, s.ops_error, s.ops_per_s);
    let l = &s.latency_us;
    let _ = writeln!(
        o,
        "latency_us: p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {:.1}",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean
    );
    if s.errors.is_empty() {
        let _ = writeln!(o, "errors: none");
    } else {
        let _ = writeln!(o, "errors:");
        for (k, v) in &s.errors {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    let _ =
        writeln!(o, "warm-up: {} ops, {} errors (not in the numbers above)", s.warmup_ops, s.warmup_errors);
    if let Some(v) = &s.verify {
        let _ = writeln!(
            o,
            "verify: {} keys read back, {} reads checked, {} mismatches",
            v.keys_checked, v.reads_checked, v.mismatches
        );
    }
    o
}

fn plot_files(a: &BenchArgs, this: Option<hgrm::Hgrm>) -> anyhow::Result<()> {
    let Some(out) = &a.plot else { return Ok(()) };
    let mut series = Vec::new();
    if let Some(h) = this {
        series.push((a.label.clone().unwrap_or_else(|| "this run".into()), h));
    }
    if let Some(c) = &a.compare {
        let text = std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
        let h = hgrm::parse(&text).with_context(|| format!("parsing {}", c.display()))?;
        let name = a
            .compare_label
            .clone()
            .unwrap_or_else(|| c.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        series.push((name, h));
    }
    let title = match a.replot {
        Some(_) => "Latency by percentile".to_string(),
        None => format!("Latency by percentile: {}", a.workload.name()),
    };
    plot::plot(out, &title, &series)
}

/// `zkd bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(src) = &a.replot {
        let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
        let h = hgrm::parse(&text).with_context(|| format!("parsing {}", src.display()))?;
        if a.plot.is_none() {
            bail!("--replot needs --plot FILE.svg|png");
        }
        let mut a2 = a.clone();
        a2.label = a.label.clone().or_else(|| src.file_stem().map(|s| s.to_string_lossy().into_owned()));
        return plot_files(&a2, Some(h));
    }
    let s = run_bench(&a)?;
    let text = render_summary(&s);
    if a.json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{text}");
    }
    let rendered = hgrm::render_ms(&s.hist);
    if let Some(p) = &a.hgrm {
        std::fs::write(p, &rendered).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.plot.is_some() {
        let parsed = hgrm::parse(&rendered).context("re-reading our own hgrm")?;
        plot_files(&a, Some(parsed))?;
    }
    Ok(())
}
