//! `values`: GET and SET of large values (4 KiB, 64 KiB, 1 MiB, 16 MiB),
//! one client, one command at a time: vshm (in-process core and through
//! vshmd) against hiredis, in MB/s (10^6 bytes of value per second).
//!
//! vshm's GET reads the value in place (zero copy) where it fits one ring
//! record; larger messages are fragmented through the rings and
//! reassembled in the client. hiredis reads the socket into its buffer and
//! builds a reply object (one copy). Each (size, command) runs the systems
//! interleaved over eight rounds (two with `--quick`): on a VM whose host
//! steals CPU in bursts, short rounds spread a burst over every system
//! instead of charging it to one (with two rounds, the 1 MiB GET ratio of
//! one build moved between 0.6x and 1.1x from run to run).

use crate::plot::Metric;
use crate::report::{self, CommonArgs, Row};
use crate::seq::{round3, Env, Op, Sample, System};
use crate::BoxResult;

/// Value sizes measured.
const SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 16 << 20];
/// Systems measured.
const SYSTEMS: [System; 3] = [System::Embedded, System::Daemon, System::Hiredis];

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Value bytes moved per (system, command, size) (default 256 MiB;
    /// 32 MiB with --quick); the command count is this over the size,
    /// between 8 and 20,000.
    #[arg(long)]
    pub bytes: Option<u64>,
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    let quick = args.common.quick;
    let budget = args
        .bytes
        .unwrap_or(if quick { 32 << 20 } else { 256 << 20 });
    let rounds = if quick { 2u64 } else { 8 };
    println!(
        "values: one client, one GET or SET at a time; {} MiB of values per system, command and size in \
         {rounds} interleaved rounds; {} CPUs; load average {}",
        budget >> 20,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        report::loadavg()
    );
    let mut env = Env::start(&SYSTEMS)?;
    let mut rows = Vec::new();
    for size in SIZES {
        let n = (budget / size as u64).clamp(8, 20_000);
        let per = (n / rounds).max(1);
        let warm = (per / 10).max(2);
        for (op, label) in [(Op::Get, "GET"), (Op::Set, "SET")] {
            let mut acc: Vec<Option<Sample>> = SYSTEMS.iter().map(|_| None).collect();
            for _ in 0..rounds {
                for (sys, slot) in SYSTEMS.iter().zip(acc.iter_mut()) {
                    let key = format!("vshm-bench:values:{}:{size}", sys.name());
                    let s = env
                        .run(*sys, op, &key, size, warm, per)
                        .map_err(|e| format!("{} {label} {size} B: {e}", sys.name()))?;
                    Sample::merge(slot, s)?;
                }
            }
            let mut line = format!("  {label} {:>8} B MB/s:", size);
            for (sys, s) in SYSTEMS.iter().zip(acc) {
                let s = s.expect("at least one round");
                let mbps = s.h.len() as f64 * size as f64 / s.elapsed.as_secs_f64().max(1e-9) / 1e6;
                line += &format!(" {} {mbps:.0}", sys.name());
                rows.push(
                    s.row(sys.name())
                        .with("op", label)
                        .with("value_bytes", size)
                        .with("mb_per_s", round3(mbps)),
                );
            }
            println!("{line}");
        }
    }
    drop(env);
    println!();
    print_table(&rows);
    print_goals(&rows);
    println!("load average after the run: {}", report::loadavg());
    args.common.write(
        "values",
        "values: one client, large GET/SET",
        &rows,
        &[Metric::MbPerS, Metric::P50],
    )?;
    Ok(rows)
}

fn mbps(r: &Row) -> f64 {
    r.extra
        .get("mb_per_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

fn print_table(rows: &[Row]) {
    println!("values: throughput of one client");
    println!(
        "{:<14} {:>4} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "name", "op", "bytes", "MB/s", "ops/s", "p50 ns", "p99 ns"
    );
    for r in rows {
        println!(
            "{:<14} {:>4} {:>10} {:>10.0} {:>10.0} {:>12} {:>10}",
            r.name,
            r.extra.get("op").and_then(|v| v.as_str()).unwrap_or(""),
            r.extra
                .get("value_bytes")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            mbps(r),
            r.ops_per_s,
            r.p50_ns,
            r.p99_ns
        );
    }
}

/// Goal: from 1 MiB up, vshm at least 0.8x hiredis's MB/s.
fn print_goals(rows: &[Row]) {
    let key = |r: &Row| {
        (
            r.extra.get("op").cloned(),
            r.extra.get("value_bytes").cloned(),
        )
    };
    for r in rows.iter().filter(|r| r.name != "hiredis") {
        let Some(h) = rows
            .iter()
            .find(|h| h.name == "hiredis" && key(h) == key(r))
        else {
            continue;
        };
        let size = r
            .extra
            .get("value_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let ratio = mbps(r) / mbps(h).max(1e-9);
        let verdict = if size < 1 << 20 {
            "(no goal below 1 MiB)"
        } else if ratio >= 0.8 {
            "goal >= 0.8x: met"
        } else {
            "goal >= 0.8x: NOT met"
        };
        println!(
            "  {:<14} {:>4} {:>9} B: {ratio:.2}x hiredis MB/s {verdict}",
            r.name,
            r.extra.get("op").and_then(|v| v.as_str()).unwrap_or(""),
            size
        );
    }
}
