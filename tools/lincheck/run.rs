//! `zkd lincheck run`: start the nodes, create the workload's znodes, record a history while the
//! nemesis injects its faults, heal, check the history.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::check::{self, KeyHistory, Report};
use super::cluster::{disk_prerequisites, Cluster, ClusterConfig, ServerKind};
use super::history::{History, RunInfo};
use super::nemesis::{inject, schedule, FaultKind};
use super::record::{record, setup, Addrs, RecordStats, Recording, Workload};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub server: ServerKind,
    pub nodes: usize,
    pub clients: usize,
    pub keys: usize,
    pub duration: Duration,
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    pub session_timeout_ms: u32,
    /// The history file (also kept in memory).
    pub out: Option<PathBuf>,
    pub budget: u64,
    /// Where the nodes live (default: a new directory under the system's temp dir).
    pub dir: Option<PathBuf>,
    /// Keep the nodes' directory (logs, data) even when the history is linearizable.
    pub keep: bool,
}

pub struct RunResult {
    pub history: History,
    pub report: Report,
    pub keys: Vec<KeyHistory>,
    pub stats: RecordStats,
    /// The report as text.
    pub text: String,
    /// Clients that got no reply after the last fault, within 10 s past the run's duration: a
    /// liveness failure, reported beside the linearizability verdict.
    pub stalled: Vec<u32>,
    /// The nodes' directory, if kept.
    pub kept: Option<PathBuf>,
}

impl RunResult {
    /// Linearizable, and every client made progress after the faults.
    pub fn passed(&self) -> bool {
        self.report.linearizable() && self.stalled.is_empty()
    }
}

/// The clients that got no reply after the last fault event (the recorder waits for each, up to
/// `record::PROGRESS_WAIT_MAX` past the run's duration).
pub fn stalled_clients(h: &History, clients: usize) -> Vec<u32> {
    let healed = h.faults.iter().map(|f| f.at_ns).max().unwrap_or(0);
    (0..clients as u32)
        .filter(|&c| !h.ops.iter().any(|o| o.client == c && o.ret_ns.is_some_and(|r| r > healed)))
        .collect()
}

/// Records a history against servers on this machine under the configured faults, and checks it.
pub fn run_lincheck(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let disks = cfg.faults.iter().any(|f| f.needs_disk());
    if disks {
        disk_prerequisites().map_err(|why| anyhow::anyhow!("the disk faults cannot run: {why}"))?;
    }
    let dir = cfg.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zkd-lincheck-{}-{:x}", std::process::id(), cfg.seed))
    });
    let mut cluster = Cluster::start(ClusterConfig {
        kind: cfg.server.clone(),
        nodes: cfg.nodes,
        disks,
        cgroups: cfg.faults.contains(&FaultKind::SlowDisk),
        netns: cfg.nodes > 1 && cfg.faults.iter().any(|f| f.needs_net()),
        dir: dir.clone(),
    })?;
    let addrs: Addrs = cluster.addrs();
    let base = format!("/lincheck-{:x}", cfg.seed);
    let wl = Workload::new(&base, cfg.keys, cfg.clients, cfg.session_timeout_ms, cfg.seed);
    setup(&addrs, &wl, Duration::from_secs(30))?;
    let run = RunInfo {
        seed: cfg.seed,
        server: cfg.server.name().into(),
        nodes: cfg.nodes,
        clients: cfg.clients,
        session_timeout_ms: cfg.session_timeout_ms,
        faults: cfg.faults.iter().map(|f| f.name().to_string()).collect(),
        keys: wl.keys.clone(),
        seq_parents: vec![wl.seq_parent.clone()],
    };
    let rec = Recording::new(run, cfg.out.as_deref())?;
    let duration_ms = cfg.duration.as_millis() as u64;
    let plan = schedule(cfg.seed, &cfg.faults, cfg.nodes, duration_ms, u64::from(cfg.session_timeout_ms));
    eprintln!(
        "lincheck: seed {} ({} nodes of {}, {} clients, {} s): {} faults planned",
        cfg.seed,
        cfg.nodes,
        cfg.server.name(),
        cfg.clients,
        cfg.duration.as_secs(),
        plan.len()
    );
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (recorded, injected) = std::thread::scope(|s| {
        let nemesis = s.spawn(|| inject(&mut cluster, &plan, &rec, t0, &stop));
        let r = record(&rec, &addrs, &wl, cfg.duration);
        // The recorder is done: a nemesis still waiting for a node stops at the next fault.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = nemesis.join().map_err(|_| anyhow::anyhow!("the nemesis thread panicked"));
        (r, n)
    });
    let history = rec.finish();
    let stats = recorded?;
    if let Err(e) = injected.and_then(|r| r) {
        cluster.stop();
        anyhow::bail!("seed {}: {e:#} (nodes' directory kept: {})", cfg.seed, dir.display());
    }
    cluster.stop();
    let (report, keys) = check::check(&history, cfg.budget)?;
    let mut text = check::render(&history, &report, &keys);
    text.push_str(&format!(
        "recorded: {} ok, {} failed, {} unknown; {} sessions ({} connect attempts failed)\n",
        stats.ok, stats.failed, stats.unknown, stats.connects, stats.connect_failures
    ));
    let stalled = stalled_clients(&history, cfg.clients);
    if !stalled.is_empty() {
        text.push_str(&format!(
            "LIVENESS: clients {stalled:?} got no reply once the last fault had healed (see the nodes' logs)\n"
        ));
        for c in &stalled {
            if let Some(e) = stats.last_connect_error.get(c) {
                text.push_str(&format!("  client {c}'s last failed connect: {e}\n"));
            }
        }
    }
    let kept = if cfg.keep || !report.linearizable() || !stalled.is_empty() {
        text.push_str(&format!("nodes' logs and data kept in {}\n", dir.display()));
        Some(dir)
    } else {
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
        None
    };
    Ok(RunResult { history, report, keys, stats, text, stalled, kept })
}
