//! Results shared by every scenario: latency histograms, the console
//! table, and the JSON file (`{"scenario": ..., "results": [...]}`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::plot::{self, Metric};
use crate::BoxResult;

/// The options every scenario takes (`#[command(flatten)] pub common`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Fewer operations (a smoke run: the figures are rough).
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also draw the results as a bar chart to FILE (`.svg`).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

impl CommonArgs {
    /// Write the JSON and the plot if asked (and say so on stdout).
    /// `metrics`: one chart per metric; the first goes to `--plot FILE`,
    /// the others to `FILE-<metric>.svg` beside it.
    pub fn write(
        &self,
        scenario: &str,
        title: &str,
        rows: &[Row],
        metrics: &[Metric],
    ) -> BoxResult<()> {
        if let Some(path) = &self.json {
            write_json(path, scenario, rows)?;
            println!("wrote {}", path.display());
        }
        if let Some(path) = &self.plot {
            for (i, m) in metrics.iter().enumerate() {
                let p = if i == 0 {
                    path.clone()
                } else {
                    plot::sibling(path, m.slug())
                };
                plot::write(&p, &format!("{title}: {}", m.label()), rows, *m)?;
                println!("wrote {}", p.display());
            }
        }
        Ok(())
    }
}

/// A progress bar of `len` steps (hidden when stderr is not a terminal,
/// as in CI logs: then each step's message is printed on its own line by
/// [`Progress::step`]).
pub struct Progress {
    bar: ProgressBar,
    tty: bool,
}

/// A progress bar over `len` steps titled `what`.
pub fn progress(len: u64, what: &str) -> Progress {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    Progress { bar, tty }
}

impl Progress {
    /// Start the next step: shows `msg` (the bar advances on `done`).
    pub fn step(&self, msg: &str) {
        if self.tty {
            self.bar.set_message(msg.to_owned());
        } else {
            eprintln!(
                "[{}/{}] {msg}",
                self.bar.position() + 1,
                self.bar.length().unwrap_or(0)
            );
        }
    }

    /// The current step is finished.
    pub fn done(&self) {
        self.bar.inc(1);
    }

    /// Print a line above the bar (plain `println!` would tear it).
    pub fn println(&self, line: &str) {
        if self.tty {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A latency histogram in nanoseconds (1 ns .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds are valid")
}

/// Record one sample (saturating at the histogram's upper bound).
#[inline]
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().min(u128::from(u64::MAX)) as u64);
}

/// One measured variant of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// Completed operations per second over the measured run.
    pub ops_per_s: f64,
    #[serde(skip)]
    pub p999_ns: u64,
    #[serde(skip)]
    pub max_ns: u64,
    #[serde(skip)]
    pub mean_ns: f64,
    #[serde(skip)]
    pub samples: u64,
    /// The scenario's extra fields (`P`, `C`, `value_bytes`,
    /// `server_connections`, `cpu_s_per_100k`, `mb_per_s`, ...), written
    /// into the JSON object beside `name`/`p50_ns`/`p99_ns`/`ops_per_s`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// Summarize `ops` operations that took `elapsed` in total, with one
    /// latency sample per operation in `h`.
    pub fn new(name: &str, h: &Histogram<u64>, ops: u64, elapsed: Duration) -> Row {
        let secs = elapsed.as_secs_f64();
        Row {
            name: name.to_owned(),
            p50_ns: h.value_at_quantile(0.50),
            p99_ns: h.value_at_quantile(0.99),
            ops_per_s: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
            samples: h.len(),
            extra: serde_json::Map::new(),
        }
    }

    /// Add (or replace) an extra JSON field, e.g. `row.with("P", 64)`.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Row {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// Print rows as an aligned table.
pub fn print_table(title: &str, rows: &[Row]) {
    println!("{title}");
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12} {:>9}",
        "name", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "mean ns", "ops/s", "samples"
    );
    for r in rows {
        println!(
            "{:<18} {:>10} {:>10} {:>10} {:>12} {:>10.0} {:>12.0} {:>9}",
            r.name, r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns, r.mean_ns, r.ops_per_s, r.samples
        );
    }
}

#[derive(Serialize)]
struct Report<'a> {
    scenario: &'a str,
    results: &'a [Row],
}

/// Write `{"scenario": scenario, "results": [{name, p50_ns, p99_ns, ops_per_s}]}`.
pub fn write_json(path: &Path, scenario: &str, rows: &[Row]) -> BoxResult<()> {
    let json = serde_json::to_string_pretty(&Report {
        scenario,
        results: rows,
    })?;
    std::fs::write(path, json + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Find a row by name.
pub fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

/// The 1-, 5- and 15-minute load averages, for context in the output.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
