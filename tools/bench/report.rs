//! What a run reports: the summary (text and JSON), its latency percentiles, and the plots.

use std::collections::BTreeMap;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{BenchArgs, Workload};
use super::{hgrm, plot};

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

pub(super) fn percentiles(h: &Histogram<u64>) -> LatencyUs {
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

pub(super) fn plot_files(a: &BenchArgs, this: Option<hgrm::Hgrm>) -> anyhow::Result<()> {
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
