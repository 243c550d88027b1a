//! The run: setup, one task per session (op loop, connect storm or watch fanout), the read-back of
//! --verify, and the summary they add up to.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::args::{BenchArgs, Workload, CONNECT_TIMEOUT, DRAIN};
use super::generator::{make_value, Gen, Kind};
use super::measure::{Ctx, SessionStats};
use super::report::{percentiles, Summary, VerifySummary};
use crate::client::{error_name, open_acl, Conn, Event};
use zkd::proto::jute::Record;
use zkd::proto::{
    CreateRequest, DeleteRequest, ErrorCode, GetDataRequest, GetDataResponse, OpCode, SetDataRequest,
};

const SETUP_BATCH: usize = 512;
/// Bytes of values queued at once by setup and verify.
const SETUP_BATCH_BYTES: usize = 8 << 20;

fn setup_batch(value_size: usize) -> usize {
    (SETUP_BATCH_BYTES / value_size.max(1)).clamp(1, SETUP_BATCH)
}

struct Pending {
    start: Instant,
    kind: Kind,
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
