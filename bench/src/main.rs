//! vshm benchmarks. One module per scenario; `main` only dispatches.
//!
//! ```text
//! cargo run --release -p vshm-bench -- all [--quick] [--out DIR]
//! cargo run --release -p vshm-bench -- SCENARIO [--quick] [--json FILE] [--plot FILE.svg]
//! ```
//!
//! Every scenario prints a table, returns its rows, and writes
//! `{"scenario": NAME, "results": [...]}` with `--json` and a bar chart
//! with `--plot` (see `report::CommonArgs`).

mod all;
mod async_load;
mod casync;
mod child;
mod cpeer;
mod cpu;
mod ipc;
mod plot;
mod prefork;
mod report;
mod seq;
mod values;

use clap::{Parser, Subcommand};

/// Errors of the benchmark driver (reported, then exit status 1).
pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(name = "vshm-bench", about = "vshm benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Every scenario end to end (starts and stops the servers and daemon
    /// it needs), each one's JSON and plot into --out.
    All(all::Args),
    /// Round-trip latency between two processes: the shared-memory ring
    /// (shipped, spin and park wait strategies), the cache-line floor and
    /// a Unix socket.
    Ipc(ipc::Args),
    /// One client, sequential SET/GET of small values: vshm in-process,
    /// vshm through vshmd, hiredis and the redis crate.
    Seq(seq::Args),
    /// GET and SET throughput of large values (4 KiB .. 16 MiB): vshm
    /// against hiredis.
    Values(values::Args),
    /// P worker processes doing blocking sequential requests (PHP-FPM /
    /// gunicorn style): all through one vshmd against per-process hiredis
    /// connections; standalone and cluster; ops/s, latency, server
    /// connections and CPU per request.
    Prefork(prefork::Args),
    /// P processes x C requests in flight: vshmd (queued submissions)
    /// against a multiplexed redis-rs connection per process, and the
    /// redis-benchmark -P 16 ceiling.
    Async(async_load::Args),
    /// One C process with 100 requests in flight: libvshm's asynchronous
    /// API (in-process core and vshmd) against hiredis's async API.
    Casync(casync::Args),
    /// (internal) one vshm worker process of `prefork`.
    #[command(name = "prefork-worker", hide = true)]
    PreforkWorker(prefork::WorkerArgs),
    /// (internal) one worker process of `async`.
    #[command(name = "async-worker", hide = true)]
    AsyncWorker(async_load::WorkerArgs),
    /// (internal) the echoing peer process of `ipc`.
    #[command(name = "ipc-peer", hide = true)]
    IpcPeer(ipc::PeerArgs),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::All(a) => all::run(a),
        Cmd::Ipc(a) => ipc::run(a).map(drop),
        Cmd::Seq(a) => seq::run(a).map(drop),
        Cmd::Values(a) => values::run(a).map(drop),
        Cmd::Prefork(a) => prefork::run(a).map(drop),
        Cmd::Async(a) => async_load::run(a).map(drop),
        Cmd::Casync(a) => casync::run(a).map(drop),
        Cmd::PreforkWorker(a) => prefork::worker(a),
        Cmd::AsyncWorker(a) => async_load::worker(a),
        Cmd::IpcPeer(a) => ipc::peer(a),
    };
    if let Err(e) = res {
        eprintln!("vshm-bench: {e}");
        std::process::exit(1);
    }
}
