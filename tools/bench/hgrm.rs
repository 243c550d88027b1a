//! HdrHistogram's percentile-distribution text format (`.hgrm`), as written by Java's
//! `Histogram.outputPercentileDistribution(out, 5, scaling)` and read by HdrHistogram's plotter:
//! a header, one line per percentile step ("Value Percentile TotalCount 1/(1-Percentile)"), the
//! 100% line without the last column, and the `#[Mean ...]` footer.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile steps per half distance, as HdrHistogram's tools use by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Renders `h` (values in microseconds) with values printed in milliseconds.
pub fn render_ms(h: &Histogram<u64>) -> String {
    render(h, 1000.0)
}

/// Renders `h` with every value divided by `scaling` (1000.0: µs recorded, ms printed).
pub fn render(h: &Histogram<u64>, scaling: f64) -> String {
    let mut s = String::new();
    let _ =
        write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scaling;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(s, "{:12.3} {:2.12} {:10} {:14.2}", value, q, total, 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{:12.3} {:2.12} {:10}", value, q, total);
            }
        }
    }
    let (mean, sd, max) = if !h.is_empty() {
        (h.mean() / scaling, h.stdev() / scaling, h.highest_equivalent(h.max()) as f64 / scaling)
    } else {
        (0.0, 0.0, 0.0)
    };
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil() as u32);
    let _ = writeln!(s, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", mean, sd);
    let _ = writeln!(s, "#[Max     = {:12.3}, Total count    = {:12}]", max, h.len());
    let _ = writeln!(s, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    s
}

/// One parsed line of an `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmPoint {
    pub value: f64,
    pub percentile: f64,
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Hgrm {
    pub points: Vec<HgrmPoint>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub total_count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct HgrmError {
    pub line: usize,
    pub why: String,
}

fn footer_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let rest = line[start..].trim_start().strip_prefix('=')?.trim_start();
    let end = rest.find([',', ']']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// Parses `.hgrm` text (from this tool or from any HdrHistogram implementation).
pub fn parse(text: &str) -> Result<Hgrm, HgrmError> {
    let mut out = Hgrm { points: Vec::new(), mean: None, max: None, total_count: None };
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("Value") {
            continue;
        }
        let bad = |why: String| HgrmError { line: i + 1, why };
        if t.starts_with('#') {
            if let Some(v) = footer_field(t, "Mean") {
                out.mean = Some(v.parse().map_err(|e| bad(format!("Mean {v:?}: {e}")))?);
            }
            if let Some(v) = footer_field(t, "Max") {
                out.max = Some(v.parse().map_err(|e| bad(format!("Max {v:?}: {e}")))?);
            }
            if let Some(v) = footer_field(t, "Total count") {
                out.total_count = Some(v.parse().map_err(|e| bad(format!("Total count {v:?}: {e}")))?);
            }
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f.len() < 3 {
            return Err(bad(format!("expected at least 3 columns, got {}", f.len())));
        }
        let value = f[0].parse().map_err(|e| bad(format!("value {:?}: {e}", f[0])))?;
        let percentile = f[1].parse().map_err(|e| bad(format!("percentile {:?}: {e}", f[1])))?;
        let total_count = f[2].parse().map_err(|e| bad(format!("count {:?}: {e}", f[2])))?;
        out.points.push(HgrmPoint { value, percentile, total_count });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_back() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        let text = render_ms(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        let p = parse(&text).unwrap();
        assert_eq!(p.total_count, Some(10_000));
        let last = p.points.last().unwrap();
        assert_eq!(last.percentile, 1.0);
        assert_eq!(last.total_count, 10_000);
        // Counts and percentiles never decrease.
        for w in p.points.windows(2) {
            assert!(w[1].total_count >= w[0].total_count && w[1].percentile >= w[0].percentile);
        }
        // The median is ~50 ms (values 10..100000 µs).
        let median = p.points.iter().find(|x| x.percentile >= 0.5).unwrap().value;
        assert!((49.0..=51.0).contains(&median), "median {median}");
        assert!((p.max.unwrap() - 100.0).abs() < 0.1, "{:?}", p.max);
        assert!(text.contains("#[Buckets = "));
    }

    #[test]
    fn parses_java_output() {
        let java = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.051 0.000000000000          1           1.00\n\
                    \x20      0.100 0.500000000000         50           2.00\n\
                    \x20      1.000 1.000000000000        100\n\
                    #[Mean    =        0.123, StdDeviation   =        0.045]\n\
                    #[Max     =        1.000, Total count    =          100]\n\
                    #[Buckets =           22, SubBuckets     =         2048]\n";
        let p = parse(java).unwrap();
        assert_eq!(p.points.len(), 3);
        assert_eq!(p.total_count, Some(100));
        assert_eq!(p.mean, Some(0.123));
        assert!(parse("1.0 x 3\n").is_err());
    }
}
