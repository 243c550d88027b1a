//! `zkd lincheck`: is a ZooKeeper server linearizable under faults?
//!
//! - `history`: the history file (JSON lines: the run, every operation with its call and return
//!   times and outcome, every fault).
//! - `model`: the sequential specification of one znode (value, version, existence) and of a
//!   sequential parent's counter (pure).
//! - `check`: the checker: per key, Wing & Gong's search with Lowe's memoisation (Porcupine's
//!   algorithm), unknown outcomes as "any time after the call, or never"; a violation is reported
//!   with its smallest failing window (pure).
//! - `record`: concurrent clients on their own sessions, recording every operation.
//! - `cluster`: the nodes under test (zkd, or Apache ZooKeeper as the oracle), their disks,
//!   cgroups and clocks.
//! - `nemesis`: faults from a seed (kill -9, pauses, clock jumps, a dead, full or slow disk,
//!   partitions and one-way drops between ensemble members).
//! - `netlab`: network namespaces of the run's own, one per node, for the partitions.
//! - `run`: all of it: nodes up, record under faults, heal, check.
//!
//! `zkd lincheck run` records and checks; `zkd lincheck check FILE` checks a history file. Exit
//! status 0: linearizable; 1: not (or undecided); 2: the run itself failed.

pub mod check;
pub mod cluster;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod netlab;
pub mod record;
pub mod run;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Clone, Args)]
pub struct LincheckArgs {
    #[command(subcommand)]
    pub cmd: LincheckCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LincheckCmd {
    /// Start servers, record a history of concurrent clients while faults are injected, check it.
    Run(RunArgs),
    /// Check a history file (JSON lines) for linearizability, per znode.
    Check {
        file: PathBuf,
        /// Search steps per key before giving up (undecided).
        #[arg(long, default_value_t = check::BUDGET_DEFAULT)]
        budget: u64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// zkd or oracle (Apache ZooKeeper 3.8, from --classpath).
    #[arg(long, default_value = "zkd")]
    pub server: String,
    /// The zkd binary (default: this one).
    #[arg(long)]
    pub zkd_bin: Option<PathBuf>,
    /// Apache ZooKeeper's class path, for --server oracle.
    #[arg(long, default_value = "/usr/share/java/*:/etc/zookeeper/conf")]
    pub classpath: String,
    /// 1: standalone; more: an ensemble (server.N lines, myid), clients spread over it.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Concurrent clients, one session each (a new one after every lost connection).
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Data znodes (plus one sequential parent).
    #[arg(long, default_value_t = 3)]
    pub keys: usize,
    /// Seconds of recording.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seeds the faults and the clients' choices (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Comma-separated: kill, pause, clock, fs-shutdown, disk-full, slow-disk, partition,
    /// one-way; or all, none. The disk faults and the partitions (ensembles) need root.
    #[arg(long, default_value = "kill,pause,clock")]
    pub faults: String,
    #[arg(long, default_value_t = 2000)]
    pub session_timeout_ms: u32,
    /// The history file (JSON lines; default lincheck-SEED.jsonl in the current directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Search steps per key before the checker gives up.
    #[arg(long, default_value_t = check::BUDGET_DEFAULT)]
    pub budget: u64,
    /// Keep the nodes' logs and data (always kept when the history is not linearizable).
    #[arg(long)]
    pub keep: bool,
}

impl RunArgs {
    pub fn config(&self) -> anyhow::Result<run::RunConfig> {
        let server = match self.server.as_str() {
            "zkd" => cluster::ServerKind::Zkd {
                bin: match &self.zkd_bin {
                    Some(b) => b.clone(),
                    None => std::env::current_exe()?,
                },
            },
            "oracle" => cluster::ServerKind::Oracle { classpath: self.classpath.clone() },
            other => anyhow::bail!("--server {other}: zkd or oracle"),
        };
        anyhow::ensure!((1..=64).contains(&self.clients), "--clients: 1 to 64");
        anyhow::ensure!((1..=16).contains(&self.keys), "--keys: 1 to 16");
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        Ok(run::RunConfig {
            server,
            nodes: self.nodes,
            clients: self.clients,
            keys: self.keys,
            duration: std::time::Duration::from_secs(self.duration),
            seed,
            faults: nemesis::FaultKind::parse_list(&self.faults)?,
            session_timeout_ms: self.session_timeout_ms,
            out: Some(self.out.clone().unwrap_or_else(|| PathBuf::from(format!("lincheck-{seed}.jsonl")))),
            budget: self.budget,
            dir: None,
            keep: self.keep,
        })
    }
}

/// `zkd lincheck`. Ok(true): linearizable.
pub fn run(a: LincheckArgs) -> anyhow::Result<bool> {
    match a.cmd {
        LincheckCmd::Run(r) => {
            let cfg = r.config()?;
            let res = run::run_lincheck(&cfg)?;
            print!("{}", res.text);
            if let Some(p) = &cfg.out {
                println!("history: {} (replay the faults: --seed {})", p.display(), cfg.seed);
            }
            Ok(res.passed())
        }
        LincheckCmd::Check { file, budget } => {
            let h = history::History::read_file(&file)?;
            let (report, khs) = check::check(&h, budget)?;
            print!("{}", check::render(&h, &report, &khs));
            Ok(report.linearizable())
        }
    }
}
