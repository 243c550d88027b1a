//! `zkd lincheck`: is a ZooKeeper server linearizable under faults?
//!
//! - `history`: the history file (JSON lines: the run, every operation with its call and return
//!   times and outcome, every fault).
//! - `model`: the sequential specification of one znode (value, version, existence) and of a
//!   sequential parent's counter (pure).
//! - `check`: the checker: per key, Wing & Gong's search with Lowe's memoisation (Porcupine's
//!   algorithm), unknown outcomes as "any time after the call, or never"; a violation is reported
//!   with its smallest failing window (pure).
//!
//! `zkd lincheck check FILE` checks a history; exit status 0 linearizable, 1 not (or undecided).

pub mod check;
pub mod history;
pub mod model;
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
    /// Check a history file (JSON lines) for linearizability, per znode.
    Check {
        file: PathBuf,
        /// Search steps per key before giving up (undecided).
        #[arg(long, default_value_t = check::BUDGET_DEFAULT)]
        budget: u64,
    },
}

/// `zkd lincheck`. Ok(true): linearizable.
pub fn run(a: LincheckArgs) -> anyhow::Result<bool> {
    match a.cmd {
        LincheckCmd::Check { file, budget } => {
            let h = history::History::read_file(&file)?;
            let (report, khs) = check::check(&h, budget)?;
            print!("{}", check::render(&h, &report, &khs));
            Ok(report.linearizable())
        }
    }
}
