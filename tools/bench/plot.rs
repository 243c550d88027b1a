//! Latency-by-percentile charts in the style of HdrHistogram's plotter: the x axis is
//! log10(1/(1-percentile)) labelled 0%, 90%, 99%, 99.9%, ...; the y axis is latency in ms.
//! The output format follows the file extension (.svg or .png).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::bail;
use plotters::prelude::*;

use super::hgrm::Hgrm;

/// Where a TrueType font is looked for (plotters needs one to lay out text).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn find_font() -> Option<Vec<u8>> {
    if let Ok(p) = std::env::var("ZKD_PLOT_FONT") {
        return std::fs::read(p).ok();
    }
    for c in FONT_CANDIDATES {
        if let Ok(b) = std::fs::read(c) {
            return Some(b);
        }
    }
    // Any .ttf under /usr/share/fonts (two levels deep).
    let mut dirs = vec![std::path::PathBuf::from("/usr/share/fonts")];
    for _ in 0..3 {
        let mut next = Vec::new();
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    next.push(p);
                } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
                    if let Ok(b) = std::fs::read(&p) {
                        return Some(b);
                    }
                }
            }
        }
        dirs = next;
    }
    None
}

fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| match find_font() {
        None => false,
        Some(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
    });
    if !ok {
        bail!("no TrueType font found for the chart (install fonts-dejavu-core or set ZKD_PLOT_FONT=/path/font.ttf)");
    }
    Ok(())
}

/// x coordinate of a percentile (0..=1): log10(1/(1-p)), capped for p = 1.
fn x_of(p: f64, x_cap: f64) -> f64 {
    if p >= 1.0 {
        x_cap
    } else {
        (1.0 / (1.0 - p)).log10().min(x_cap)
    }
}

fn label(x: f64) -> String {
    let n = x.round() as i32;
    if n <= 0 {
        return "0%".into();
    }
    // 1 -> 90%, 2 -> 99%, 3 -> 99.9% ...
    let nines = "9".repeat(n as usize);
    if n == 1 {
        "90%".into()
    } else if n == 2 {
        "99%".into()
    } else {
        format!("{}.{}%", &nines[..2], &nines[2..])
    }
}

/// Draws one line per (name, histogram) to `out` (.svg or .png).
pub fn plot(out: &Path, title: &str, series: &[(String, Hgrm)]) -> anyhow::Result<()> {
    ensure_font()?;
    if series.is_empty() || series.iter().all(|(_, h)| h.points.is_empty()) {
        bail!("nothing to plot: every histogram is empty");
    }
    // The x range ends at the last finite percentile of the longest tail, rounded up.
    let mut x_cap: f64 = 1.0;
    let mut y_max: f64 = 0.0;
    for (_, h) in series {
        for p in &h.points {
            if p.percentile < 1.0 {
                x_cap = x_cap.max((1.0 / (1.0 - p.percentile)).log10());
            }
            y_max = y_max.max(p.value);
        }
    }
    let x_cap = x_cap.ceil().clamp(1.0, 7.0);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(out, (1000, 600)).into_drawing_area();
            draw(root, title, series, x_cap, y_max)?;
        }
        "png" => {
            let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
            draw(root, title, series, x_cap, y_max)?;
        }
        other => bail!("--plot {}: unknown extension {other:?} (use .svg or .png)", out.display()),
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[(String, Hgrm)],
    x_cap: f64,
    y_max: f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_cap, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(x_cap as usize + 1)
        .x_label_formatter(&|x| label(*x))
        .x_desc("Percentile")
        .y_desc("Latency (ms)")
        .draw()
        .map_err(e)?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, h)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = h.points.iter().map(|p| (x_of(p.percentile, x_cap), p.value)).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(label(0.0), "0%");
        assert_eq!(label(1.0), "90%");
        assert_eq!(label(2.0), "99%");
        assert_eq!(label(3.0), "99.9%");
        assert_eq!(label(5.0), "99.999%");
        assert!((x_of(0.99, 6.0) - 2.0).abs() < 1e-9);
        assert_eq!(x_of(1.0, 6.0), 6.0);
    }
}
