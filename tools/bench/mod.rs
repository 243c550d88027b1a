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
//!
//! Modules: `args` (the command line and its limits), `measure` (the run's shared state and window,
//! what each session measured), `generator` (each session's requests and the checks on their
//! replies), `workloads` (sessions, setup, read-back, the run), `report` (the summary, its text,
//! the plots); `hgrm` and `plot` write and draw latency distributions.

mod args;
mod generator;
pub mod hgrm;
mod measure;
pub mod plot;
mod report;
#[cfg(test)]
mod tests;
mod workloads;

use anyhow::{bail, Context};

pub use args::{
    BenchArgs, Workload, CONNECT_TIMEOUT, DEPTH_MAX, DRAIN, KEYS_MAX, LATENCY_MAX_US, SESSIONS_MAX,
    VALUE_SIZE_MAX_BYTES,
};
pub use report::{render_summary, LatencyUs, Summary, VerifySummary};
pub use workloads::run_bench;

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
        return report::plot_files(&a2, Some(h));
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
        report::plot_files(&a, Some(parsed))?;
    }
    Ok(())
}
