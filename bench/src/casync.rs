//! `casync`: one C process keeping C requests in flight (default 100)
//! through an asynchronous API for a fixed time (`bench/c/casync.c`):
//!
//! * `vshm-embedded`: libvshm with the in-process core
//!   (`vshm_open_embedded_uri`), `vshm_submit_argv` with a callback,
//!   completions driven by `vshm_wait`;
//! * `vshm-daemon`: the same program through vshmd (`vshm_connect`);
//! * `hiredis-async`: hiredis's `redisAsyncContext` on one connection,
//!   driven by a minimal `poll()` adapter written in the C file.
//!
//! Mixed GET/SET (50/50) of 100-byte values over 10,000 keys as in
//! `prefork` and `async` (or `--op incr`: INCR over 8 counters), against a
//! standalone server. The systems run in interleaved rounds; each
//! measurement uses the process harness of `prefork` (start barrier,
//! latencies from submission to callback, CPU of the client process with
//! its core threads, of vshmd and of redis-server over the window). vshmd
//! is started for each of its measurements and stopped after it, so that
//! its server connections count in its rows only.
//!
//! libvshm is the workspace's `libvshm.so` beside the running binary
//! (`target/<profile>/`; under `cargo run` it is brought up to date
//! first), linked with an rpath; the header is embedded at build time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::prefork::{self, Target};
use crate::report::{self, Row};
use crate::BoxResult;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// `--quick`: one round of 2 s per system; `--json FILE`,
    /// `--plot FILE.svg` (ops/s; CPU per request and p99 beside it).
    #[command(flatten)]
    pub common: report::CommonArgs,
    /// Requests in flight (default 100).
    #[arg(long)]
    pub inflight: Option<usize>,
    /// Measured seconds per system and round (default 5; --quick: 2).
    #[arg(long)]
    pub secs: Option<f64>,
    /// Rounds (each system once per round, interleaved; default 2;
    /// --quick: 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// `mixed` (GET/SET 50/50 of 100 B over 10,000 keys, default) or
    /// `incr` (INCR over 8 counters).
    #[arg(long, value_enum, default_value_t = Op::Mixed)]
    pub op: Op,
    /// Only these systems (comma-separated: vshm-embedded, vshm-daemon,
    /// hiredis-async).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Extra top-level vshmd configuration (TOML), e.g. `pool_size = 2`.
    #[arg(long, default_value = "")]
    pub daemon_config: String,
}

/// The workload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Op {
    #[default]
    Mixed,
    Incr,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Mixed => "mixed",
            Op::Incr => "incr",
        }
    }
}

const SYSTEMS: [&str; 3] = ["hiredis-async", "vshm-embedded", "vshm-daemon"];
const SOURCE: &str = include_str!("../c/casync.c");
const HEADER: &str = include_str!("../../client-c/include/vshm.h");

/// The C program built against hiredis.
fn build_hiredis() -> BoxResult<PathBuf> {
    crate::cpeer::build("casync_hiredis", SOURCE, &["-DCASYNC_HIREDIS"])
}

/// The C program built against the workspace's libvshm.so.
fn build_vshm() -> BoxResult<PathBuf> {
    let libdir = libvshm_dir()?;
    let so = libdir.join("libvshm.so");
    if !so.exists() {
        return Err(format!(
            "{} not found: build it first (cargo build --release --workspace)",
            so.display()
        )
        .into());
    }
    // The header beside the source (bench/c/ files are compiled in
    // target/vshm-bench-c/).
    let dir = crate::cpeer::out_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let header = dir.join("vshm.h");
    if std::fs::read_to_string(&header).ok().as_deref() != Some(HEADER) {
        std::fs::write(&header, HEADER)
            .map_err(|e| format!("writing {}: {e}", header.display()))?;
    }
    // The library's soname is libvshm.so.0, which cargo does not create:
    // a directory per profile with that link is the binary's rpath.
    let profile = libdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let linkdir = dir.join(format!("lib-{profile}"));
    std::fs::create_dir_all(&linkdir)
        .map_err(|e| format!("creating {}: {e}", linkdir.display()))?;
    let link = linkdir.join("libvshm.so.0");
    if std::fs::read_link(&link).ok().as_deref() != Some(so.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&so, &link)
            .map_err(|e| format!("linking {}: {e}", link.display()))?;
    }
    // The library's directory and the header's size are part of the
    // "source", so that a change of either rebuilds the binary.
    let source = format!(
        "{SOURCE}\n/* libvshm: {}; vshm.h: {} bytes */\n",
        libdir.display(),
        HEADER.len()
    );
    let rpath = format!("-Wl,-rpath,{}", linkdir.display());
    crate::cpeer::build(
        "casync_vshm",
        &source,
        &[
            "-DCASYNC_VSHM",
            &format!("-I{}", dir.display()),
            &so.to_string_lossy(),
            &rpath,
            "-lpthread",
        ],
    )
}

/// `target/<profile>`: where the running binary is, and libvshm.so with
/// it (brought up to date under `cargo run`).
fn libvshm_dir() -> BoxResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "vshm", "--lib"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd
            .status()
            .map_err(|e| format!("cargo build -p vshm: {e}"))?;
        if !st.success() {
            return Err(format!("cargo build -p vshm: {st}").into());
        }
    }
    Ok(dir)
}

fn command(bin: &Path, mode: &str, whence: &str, a: &Args, c: usize, d: Duration) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(mode)
        .arg(whence)
        .arg(d.as_millis().to_string())
        .arg(c.to_string())
        .arg(a.op.name())
        .arg(prefork::KEYS.to_string())
        .arg(prefork::VALUE_BYTES.to_string());
    cmd
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    let quick = args.common.quick;
    let inflight = args.inflight.unwrap_or(100);
    if inflight == 0 || inflight > 4096 {
        return Err("--inflight must be 1..=4096".into());
    }
    for o in &args.only {
        if !SYSTEMS.contains(&o.as_str()) {
            return Err(format!("unknown system `{o}` (known: {})", SYSTEMS.join(", ")).into());
        }
    }
    let systems: Vec<&str> = SYSTEMS
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    let secs = args.secs.unwrap_or(if quick { 2.0 } else { 5.0 });
    let rounds = args.rounds.unwrap_or(if quick { 1 } else { 2 }).max(1);
    let duration = Duration::from_secs_f64(secs);

    let hiredis = build_hiredis()?;
    let vshm = if systems.iter().any(|s| s.starts_with("vshm")) {
        Some(build_vshm()?)
    } else {
        None
    };
    let workload = if args.op == Op::Incr {
        "INCR over 8 counters".to_owned()
    } else {
        format!(
            "GET/SET (50/50) of {} B values over {} keys",
            prefork::VALUE_BYTES,
            prefork::KEYS
        )
    };
    println!(
        "casync: one C process, {inflight} requests in flight, {workload}, standalone, {secs} s x {rounds} round(s) per system; load average {}",
        report::loadavg()
    );

    let target = Target::start("standalone")?;
    let addrs = target.addrs();
    let servers = target.pids();
    let uri = format!("valkey://{}?timeout_ms=5000", addrs[0]);

    // Per system: the rounds' measurements, merged at the end.
    let mut measured: Vec<(&str, Vec<prefork::Measured>)> =
        systems.iter().map(|s| (*s, Vec::new())).collect();
    let mut daemon = None;
    for _ in 0..rounds {
        for (sys, ms) in &mut measured {
            let vshm_bin = || vshm.as_deref().ok_or("libvshm client not built");
            let (cmd, daemon_pid) = match *sys {
                "hiredis-async" => (
                    command(&hiredis, "hiredis", &addrs[0], &args, inflight, duration),
                    None,
                ),
                "vshm-embedded" => (
                    command(vshm_bin()?, "embedded", &uri, &args, inflight, duration),
                    None,
                ),
                _ => {
                    // A daemon for this measurement only: its server
                    // connections must not count in the other systems'.
                    let d = daemon.insert(target.start_daemon(&args.daemon_config));
                    (
                        command(
                            vshm_bin()?,
                            "daemon",
                            &d.socket.to_string_lossy(),
                            &args,
                            inflight,
                            duration,
                        ),
                        Some(d.pid()),
                    )
                }
            };
            let m = prefork::run_workers(vec![cmd], duration, &servers, daemon_pid, &addrs)?;
            daemon = None;
            eprintln!(
                "  {:<14} {:>10.0} ops/s  p99 {:>8.1} us",
                sys,
                m.ops as f64 / m.elapsed.as_secs_f64().max(1e-9),
                m.hist.value_at_quantile(0.99) as f64 / 1000.0
            );
            ms.push(m);
        }
    }

    let mut rows = Vec::new();
    for (sys, ms) in measured {
        let m = prefork::Measured::merged(ms)?;
        rows.push(
            m.row(sys, "standalone", 1)
                .with("C", inflight)
                .with("workload", args.op.name())
                .with("rounds", rounds),
        );
    }
    prefork::print_rows("casync", &rows);
    print_goals(&rows);
    prefork::write_outputs(&args.common, "casync", "casync", &rows)?;
    Ok(rows)
}

/// `vshm / hiredis-async` ops/s for both vshm systems; goal >= 1.0x.
fn print_goals(rows: &[Row]) {
    let Some(base) = rows.iter().find(|r| r.name == "hiredis-async") else {
        return;
    };
    for name in ["vshm-embedded", "vshm-daemon"] {
        let Some(r) = rows.iter().find(|r| r.name == name) else {
            continue;
        };
        let ratio = r.ops_per_s / base.ops_per_s.max(1e-9);
        let verdict = if ratio >= 1.0 { "met" } else { "NOT met" };
        println!(
            "{:<30} ops/s {ratio:>6.2}x   {:<14} {verdict}",
            format!("{name} / hiredis-async"),
            "goal >= 1.0x"
        );
    }
}
