//! `vshm-soak`: soak + chaos driver for vshmd (issue 8). N client processes submit mixed
//! commands through vshmd while faults are injected (client processes SIGKILLed and
//! SIGSTOPped, a primary SIGKILLed and failed over, `CLIENT KILL`, `CLIENT PAUSE`, slot
//! migrations); every submission must complete (value or typed error) and every acknowledged
//! write must read back. See `vshm_tests::soak`, `scripts/soak.sh` and `docs/reliability.md`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vshm_tests::soak::driver::{self, DriverArgs};
use vshm_tests::soak::worker::{self, WorkerArgs};

#[derive(Parser, Debug)]
#[command(
    name = "vshm-soak",
    about = "Soak + chaos driver for vshmd: no lost request"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a cluster, vshmd and the workers; inject faults; check and print the figures.
    Run {
        /// Length of the load (faults stop 5 s before its end).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Client processes running at once.
        #[arg(long, default_value_t = 6)]
        workers: usize,
        /// How many of them run one request at a time (submit + wait by id); the others keep
        /// `--inflight` queued requests (default: half).
        #[arg(long)]
        sync_workers: Option<usize>,
        /// Seed of the fault schedule and the workloads (random if not given; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Requests each queued worker keeps in flight (at most).
        #[arg(long, default_value_t = 64)]
        inflight: usize,
        /// Key groups each worker owns (a string and a counter each).
        #[arg(long, default_value_t = 16)]
        groups: u32,
        /// Submissions per second per sync worker (0: unpaced).
        #[arg(long, default_value_t = 250)]
        rate: u32,
        /// Submissions per second per queued worker (0: unpaced).
        #[arg(long, default_value_t = 1000)]
        queued_rate: u32,
        /// Inject every fault kind at least this many times (the run goes on past --seconds
        /// until it has); also VSHM_SOAK_MIN_EACH.
        #[arg(long, default_value_t = 0)]
        min_each: u32,
        /// Shortest pause between two faults, ms.
        #[arg(long, default_value_t = 1000)]
        gap_min_ms: u64,
        /// Longest pause between two faults, ms.
        #[arg(long, default_value_t = 3000)]
        gap_max_ms: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Fail the run on any missed recovery bound (without it: only on a wedge, a fault
        /// after which some worker never recovered or recovered more than 10 s late;
        /// misses are printed and counted). Also VSHM_SOAK_STRICT=1.
        #[arg(long)]
        strict: bool,
    },
    /// One client process (started by `run`).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        inflight: usize,
        #[arg(long)]
        groups: u32,
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        sync: bool,
    },
}

fn main() {
    let code = match Cli::parse().cmd {
        Cmd::Run {
            seconds,
            workers,
            sync_workers,
            seed,
            inflight,
            groups,
            rate,
            queued_rate,
            mut min_each,
            gap_min_ms,
            gap_max_ms,
            json,
            strict,
        } => driver::run({
            if min_each == 0 {
                min_each = std::env::var("VSHM_SOAK_MIN_EACH")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            }
            DriverArgs {
                seconds,
                workers: workers.max(1),
                sync_workers: sync_workers.unwrap_or(workers / 2).min(workers),
                queued_rate,
                min_each,
                seed,
                inflight: inflight.max(1),
                groups: groups.max(inflight as u32).max(1),
                rate,
                gap_ms: (gap_min_ms, gap_max_ms.max(gap_min_ms)),
                json,
                strict: strict || std::env::var("VSHM_SOAK_STRICT").is_ok_and(|v| v.trim() == "1"),
            }
        }),
        Cmd::Worker {
            socket,
            id,
            seed,
            inflight,
            groups,
            rate,
            sync,
        } => worker::run(WorkerArgs {
            socket,
            id,
            seed,
            inflight: if sync { 1 } else { inflight.max(1) },
            groups,
            rate,
            sync,
        }),
    };
    std::process::exit(code);
}
