//! `all`: every scenario end to end (ipc, seq, values, prefork, async,
//! casync), each starting and stopping the servers and the daemon it
//! needs, with `NAME.json` and `NAME.svg` (plus `NAME-<metric>.svg`)
//! written into `--out`. A failing scenario does not stop the others; the run then
//! exits with status 1 after the summary.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::report::{self, CommonArgs};
use crate::BoxResult;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Every scenario in its quick form (a smoke run, under 2 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Where each scenario's NAME.json and NAME.svg go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub out: PathBuf,
    /// Run only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

const SCENARIOS: [&str; 6] = ["ipc", "seq", "values", "prefork", "async", "casync"];

fn run_one(name: &str, common: CommonArgs) -> BoxResult<usize> {
    let rows = match name {
        "ipc" => crate::ipc::run(crate::ipc::Args {
            common,
            ..Default::default()
        })?,
        "seq" => crate::seq::run(crate::seq::Args {
            common,
            ..Default::default()
        })?,
        "values" => crate::values::run(crate::values::Args {
            common,
            ..Default::default()
        })?,
        "prefork" => crate::prefork::run(crate::prefork::Args {
            common,
            ..Default::default()
        })?,
        "async" => crate::async_load::run(crate::async_load::Args {
            common,
            ..Default::default()
        })?,
        "casync" => crate::casync::run(crate::casync::Args {
            common,
            ..Default::default()
        })?,
        other => return Err(format!("unknown scenario `{other}`").into()),
    };
    Ok(rows.len())
}

pub fn run(args: Args) -> BoxResult<()> {
    for o in &args.only {
        if !SCENARIOS.contains(&o.as_str()) {
            return Err(format!("unknown scenario `{o}` (known: {})", SCENARIOS.join(", ")).into());
        }
    }
    let selected: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    // The daemon the scenarios start must be this checkout's.
    crate::seq::build_vshmd()?;
    let t0 = Instant::now();
    println!(
        "vshm-bench all{}: {} -> {}; {} CPUs; load average {}",
        if args.quick { " --quick" } else { "" },
        selected.join(", "),
        args.out.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        report::loadavg()
    );
    let bar = report::progress(selected.len() as u64, "vshm-bench all");
    let mut summary: Vec<(&str, Duration, Result<usize, String>)> = Vec::new();
    for name in &selected {
        bar.step(name);
        let common = CommonArgs {
            quick: args.quick,
            json: Some(args.out.join(format!("{name}.json"))),
            plot: Some(args.out.join(format!("{name}.svg"))),
        };
        let t = Instant::now();
        println!("\n=== {name} ===");
        let r = run_one(name, common).map_err(|e| e.to_string());
        if let Err(e) = &r {
            bar.println(&format!("{name} failed: {e}"));
        }
        summary.push((name, t.elapsed(), r));
        bar.done();
    }
    bar.finish();
    println!(
        "\n=== summary ({:.0} s in all) ===",
        t0.elapsed().as_secs_f64()
    );
    for (name, d, r) in &summary {
        match r {
            Ok(n) => println!("  {name:<8} {:>6.1} s  ok ({n} rows)", d.as_secs_f64()),
            Err(e) => println!("  {name:<8} {:>6.1} s  FAILED: {e}", d.as_secs_f64()),
        }
    }
    println!("load average at the end: {}", report::loadavg());
    let failed: Vec<&str> = summary
        .iter()
        .filter(|(_, _, r)| r.is_err())
        .map(|(n, _, _)| *n)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")).into())
    }
}
