//! vshm benchmarks. One module per scenario; `main` only dispatches.
//!
//! ```text
//! cargo run --release -p vshm-bench -- ipc [--json FILE] [--quick]
//! ```

mod child;
mod cpeer;
mod ipc;
mod report;

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
    /// Round-trip latency between two processes: the shared-memory ring
    /// (shipped, spin and park wait strategies), the cache-line floor and
    /// a Unix socket.
    Ipc(ipc::Args),
    /// (internal) the echoing peer process of `ipc`.
    #[command(name = "ipc-peer", hide = true)]
    IpcPeer(ipc::PeerArgs),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Ipc(a) => ipc::run(a),
        Cmd::IpcPeer(a) => ipc::peer(a),
    };
    if let Err(e) = res {
        eprintln!("vshm-bench: {e}");
        std::process::exit(1);
    }
}
