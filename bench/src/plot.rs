//! Bar charts of a scenario's rows (plotters, SVG backend).
//!
//! Rows are grouped by the extra fields that vary between measurements
//! (`op`, `value_bytes`, `P`, `C`, `server_connections`: whichever the
//! rows carry) and drawn as one bar per system (`name`) within each group.
//!
//! Only `.svg` is written. plotters is built without its font features, so
//! it lays text out with fixed per-character metrics and leaves the glyphs
//! to the SVG viewer: no system font is needed, on CI or anywhere. A PNG
//! would need a rasterizing font (plotters' `ab_glyph` or `ttf` feature
//! and a font file); that would make the SVG path depend on a font too, so
//! `.png` is refused with a hint to convert the SVG
//! (`rsvg-convert -o x.png x.svg`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::report::Row;
use crate::BoxResult;

/// What a chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    OpsPerS,
    P50,
    P99,
    MbPerS,
    CpuPer100k,
}

impl Metric {
    /// The axis label.
    pub fn label(self) -> &'static str {
        match self {
            Metric::OpsPerS => "operations per second",
            Metric::P50 => "p50 latency (µs)",
            Metric::P99 => "p99 latency (µs)",
            Metric::MbPerS => "throughput (MB/s)",
            Metric::CpuPer100k => "CPU seconds per 100k requests",
        }
    }

    /// A short name for file names.
    pub fn slug(self) -> &'static str {
        match self {
            Metric::OpsPerS => "ops",
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::MbPerS => "mbps",
            Metric::CpuPer100k => "cpu",
        }
    }

    /// The row's value of this metric (`None` if the row has none).
    pub fn of(self, r: &Row) -> Option<f64> {
        let v = match self {
            Metric::OpsPerS => r.ops_per_s,
            Metric::P50 => r.p50_ns as f64 / 1000.0,
            Metric::P99 => r.p99_ns as f64 / 1000.0,
            Metric::MbPerS => r.extra.get("mb_per_s")?.as_f64()?,
            Metric::CpuPer100k => r.extra.get("cpu_s_per_100k")?.as_f64()?,
        };
        v.is_finite().then_some(v)
    }
}

/// `dir/stem-<suffix>.svg` for `dir/stem.svg`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "svg".into());
    path.with_file_name(format!("{stem}-{suffix}.{ext}"))
}

/// Bar colours by system (colour-blind-safe "tab10" order).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Extra fields that identify a group of bars, in label order.
const GROUP_KEYS: &[&str] = &["op", "value_bytes", "P", "C", "server_connections"];

fn fmt_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn group_label(r: &Row) -> String {
    let mut parts = Vec::new();
    for k in GROUP_KEYS {
        let Some(v) = r.extra.get(*k) else { continue };
        parts.push(match (*k, v) {
            ("value_bytes", v) => v.as_u64().map_or_else(|| v.to_string(), fmt_bytes),
            ("op", serde_json::Value::String(s)) => s.clone(),
            (k, v) => format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ),
        });
    }
    parts.join(" ")
}

/// Compact number for a bar's label.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Draw `rows`' `metric` as a grouped bar chart into `path` (`.svg`).
pub fn write(path: &Path, title: &str, rows: &[Row], metric: Metric) -> BoxResult<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {}
        Some("png") => {
            return Err(format!(
                "{}: PNG is not supported (it needs a font file); write .svg and convert it, e.g. \
                 `rsvg-convert -o x.png x.svg`",
                path.display()
            )
            .into())
        }
        _ => return Err(format!("{}: the plot file must end in .svg", path.display()).into()),
    }
    // Groups in first-seen order, systems in first-seen order.
    let mut groups: Vec<String> = Vec::new();
    let mut systems: Vec<String> = Vec::new();
    let mut val: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for r in rows {
        let Some(v) = metric.of(r) else { continue };
        let g = group_label(r);
        let gi = groups.iter().position(|x| *x == g).unwrap_or_else(|| {
            groups.push(g);
            groups.len() - 1
        });
        let si = systems
            .iter()
            .position(|x| *x == r.name)
            .unwrap_or_else(|| {
                systems.push(r.name.clone());
                systems.len() - 1
            });
        val.insert((gi, si), v);
    }
    if val.is_empty() {
        return Err(format!("{}: no row has {}", path.display(), metric.label()).into());
    }
    // Headroom above the highest bar for the legend.
    let ymax = val
        .values()
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * (1.25 + 0.06 * systems.len() as f64);
    let (ng, ns) = (groups.len(), systems.len());
    let width = (160 + ng * (ns * 44 + 30)).clamp(640, 1800) as u32;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..ng as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(metric.label())
        .y_label_formatter(&|v| fmt_value(*v))
        .draw()?;
    // Each group spans [g, g+1): bars share 80 % of it.
    let bar_w = 0.8 / ns as f64;
    for (si, sys) in systems.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let bars: Vec<(f64, f64, f64)> = (0..ng)
            .filter_map(|gi| {
                let v = *val.get(&(gi, si))?;
                let x0 = gi as f64 + 0.1 + si as f64 * bar_w;
                Some((x0, x0 + bar_w * 0.92, v))
            })
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x0, x1, v)| Rectangle::new([(x0, 0.0), (x1, v)], color.filled())),
            )?
            // Trailing spaces: the text metrics used without a font are
            // narrower than real glyphs; this keeps labels in the box.
            .label(format!("{sys}    "))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(bars.iter().map(|&(x0, x1, v)| {
            Text::new(
                fmt_value(v),
                ((x0 + x1) / 2.0, v),
                ("sans-serif", 11).into_font().color(&BLACK).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    ),
                ),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    // Group labels under the axis, centred on each group.
    let label_style =
        ("sans-serif", 14)
            .into_font()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ));
    for (gi, g) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, 0.0));
        root.draw(&Text::new(g.clone(), (px, py + 8), label_style.clone()))?;
    }
    root.present()?;
    Ok(())
}
