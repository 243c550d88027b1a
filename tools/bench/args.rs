//! `zkd bench`'s command line, its defaults and its limits.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

pub const SESSIONS_MAX: usize = 10_000;
pub const DEPTH_MAX: usize = 10_000;
pub const VALUE_SIZE_MAX_BYTES: usize = 16 << 20;
pub const KEYS_MAX: u32 = 10_000_000;
/// How long outstanding requests may take to complete after the window closes.
pub const DRAIN: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Latencies above this are clamped (and still counted).
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
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

    pub(super) fn validate(&self) -> anyhow::Result<()> {
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
