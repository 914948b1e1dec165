//! `seq`: one client, sequential SET/GET of 100 B values (SET then GET of
//! one key, alternating, each command timed on its own), against one local
//! redis-server:
//!
//! * `vshm-embedded`: the core in this process (`EmbeddedCore`), its
//!   client through the shared-memory rings;
//! * `vshm-daemon`: through `vshmd` (a separate process) with the client
//!   library's rings;
//! * `hiredis`: the system's libhiredis, blocking `redisCommandArgv`, in a
//!   small C program (`bench/c/hiredis_peer.c`);
//! * `redis-rs`: the `redis` crate's multiplexed connection on a
//!   current-thread tokio runtime.
//!
//! The systems run interleaved in rounds (as `ipc`), so that a change of
//! machine conditions hits them alike. Besides latency, every row carries
//! `cpu_s_per_100k`: CPU seconds per 100,000 commands of every process
//! involved (client, core or vshmd, redis-server), since a waiting client
//! that spins makes its own latency lower with CPU the others may need.
//!
//! The module also holds what `values` shares: the systems, the servers
//! and the hiredis peer.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vshm_client::client::{Client, ClientOptions};
use vshm_client::daemon::DaemonClient;
use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_protocol::msg::{ArchivedCompletion, ArchivedValue, Route};
use vshm_protocol::register::Settings;
use vshm_tests::vshmd::{Servers, Vshmd};
use vshm_tests::RedisServer;

use crate::plot::Metric;
use crate::report::{self, CommonArgs, Row};
use crate::{cpeer, cpu, BoxResult};

/// Bytes per value.
const VALUE_BYTES: usize = 100;
/// Bound on one command (also the local wait's base).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Commands per system, half SET and half GET (default 100,000;
    /// 10,000 with --quick).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Interleave the systems over this many rounds (default 5).
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Run only these systems (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// Under `cargo run` (`$CARGO` set, no `$VSHMD_BIN`): bring the `vshmd`
/// binary beside this one up to date (`cargo build -p vshmd`, same
/// profile), so that a stale daemon is never measured. Once per process.
pub fn build_vshmd() -> BoxResult<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let Some(cargo) = std::env::var_os("CARGO") else {
            return Ok(());
        };
        if std::env::var_os("VSHMD_BIN").is_some() {
            return Ok(());
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "vshmd", "--bin", "vshmd"]);
        if exe.parent().is_some_and(|d| d.ends_with("release")) {
            cmd.arg("--release");
        }
        let st = cmd
            .status()
            .map_err(|e| format!("cargo build -p vshmd: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("cargo build -p vshmd: {st}"))
        }
    })
    .clone()
    .map_err(Into::into)
}

/// A measured system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Embedded,
    Daemon,
    Hiredis,
    RedisRs,
}

impl System {
    pub const ALL: [System; 4] = [
        System::Embedded,
        System::Daemon,
        System::Hiredis,
        System::RedisRs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Embedded => "vshm-embedded",
            System::Daemon => "vshm-daemon",
            System::Hiredis => "hiredis",
            System::RedisRs => "redis-rs",
        }
    }
}

/// Which commands a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// SET then GET, alternating.
    SetGet,
    Set,
    Get,
}

impl Op {
    fn arg(self) -> &'static str {
        match self {
            Op::SetGet => "setget",
            Op::Set => "set",
            Op::Get => "get",
        }
    }

    /// Whether command `i` of a run is a SET.
    fn is_set(self, i: u64) -> bool {
        match self {
            Op::SetGet => i.is_multiple_of(2),
            Op::Set => true,
            Op::Get => false,
        }
    }
}

/// What one measured run gave.
pub struct Sample {
    pub h: Histogram<u64>,
    pub elapsed: Duration,
    /// CPU of every process involved, over the measured commands.
    pub cpu: Duration,
}

impl Sample {
    pub fn merge(acc: &mut Option<Sample>, s: Sample) -> BoxResult<()> {
        match acc {
            None => *acc = Some(s),
            Some(a) => {
                a.h.add(&s.h)
                    .map_err(|e| format!("merging histograms: {e:?}"))?;
                a.elapsed += s.elapsed;
                a.cpu += s.cpu;
            }
        }
        Ok(())
    }

    /// The row of `name`, with `cpu_s_per_100k`.
    pub fn row(&self, name: &str) -> Row {
        let n = self.h.len();
        Row::new(name, &self.h, n, self.elapsed).with(
            "cpu_s_per_100k",
            round3(self.cpu.as_secs_f64() * 100_000.0 / n.max(1) as f64),
        )
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The servers and clients of a run; everything stops on drop.
pub struct Env {
    pub redis: RedisServer,
    embedded: Option<(EmbeddedClient, EmbeddedCore)>,
    daemon: Option<(DaemonClient, Vshmd)>,
    hiredis: Option<PathBuf>,
    redis_rs: Option<(redis::aio::MultiplexedConnection, tokio::runtime::Runtime)>,
}

impl Env {
    /// Start redis-server and whatever `systems` need.
    pub fn start(systems: &[System]) -> BoxResult<Env> {
        if systems.contains(&System::Daemon) {
            build_vshmd()?;
        }
        let redis = RedisServer::start();
        let addr = redis.addr();
        let mut env = Env {
            redis,
            embedded: None,
            daemon: None,
            hiredis: None,
            redis_rs: None,
        };
        for s in systems {
            match s {
                System::Embedded => {
                    let core = EmbeddedCore::start(1)?;
                    let cfg = vshm_core::Config {
                        addresses: vec![addr.clone()],
                        request_timeout_ms: OP_TIMEOUT.as_millis() as u32,
                        ..vshm_core::Config::default()
                    };
                    let c = core.open(&cfg).map_err(|e| format!("embedded core: {e}"))?;
                    env.embedded = Some((c, core));
                }
                System::Daemon => {
                    let d = Vshmd::start("log_level = \"warn\"\n", Servers::Standalone(&addr), "");
                    let c = DaemonClient::connect(
                        &d.socket,
                        &Settings::default(),
                        Duration::from_secs(10),
                        ClientOptions::default(),
                    )
                    .map_err(|e| format!("vshmd: {e}"))?;
                    env.daemon = Some((c, d));
                }
                System::Hiredis => {
                    env.hiredis = Some(cpeer::build(
                        "hiredis_peer",
                        include_str!("../c/hiredis_peer.c"),
                        &[],
                    )?);
                }
                System::RedisRs => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let client = redis::Client::open(env.redis.url())?;
                    let con = rt.block_on(client.get_multiplexed_async_connection())?;
                    env.redis_rs = Some((con, rt));
                }
            }
        }
        Ok(env)
    }

    /// Pids whose CPU counts besides this process: redis-server, vshmd.
    fn other_pids(&self, sys: System) -> Vec<i32> {
        let mut v: Vec<i32> = self.redis.pid().map(|p| p as i32).into_iter().collect();
        if sys == System::Daemon {
            if let Some((_, d)) = &self.daemon {
                v.push(d.pid());
            }
        }
        v
    }

    /// `warm` unrecorded then `n` recorded commands of `op` on `key` with
    /// `size`-byte values through `sys`.
    pub fn run(
        &mut self,
        sys: System,
        op: Op,
        key: &str,
        size: usize,
        warm: u64,
        n: u64,
    ) -> BoxResult<Sample> {
        let val: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let others = self.other_pids(sys);
        match sys {
            System::Embedded | System::Daemon => {
                let c: &Client = match sys {
                    System::Embedded => &self.embedded.as_ref().ok_or("no embedded core")?.0,
                    _ => &self.daemon.as_ref().ok_or("no vshmd")?.0,
                };
                if op == Op::Get {
                    vshm_cmd(c, true, key, &val)?;
                }
                for i in 0..warm {
                    vshm_cmd(c, op.is_set(i), key, &val)?;
                }
                in_process(&others, n, |i| vshm_cmd(c, op.is_set(i), key, &val))
            }
            System::RedisRs => {
                let (con, rt) = self.redis_rs.as_mut().ok_or("no redis-rs connection")?;
                rt.block_on(async {
                    if op == Op::Get {
                        redis_rs_cmd(con, true, key, &val).await?;
                    }
                    for i in 0..warm {
                        redis_rs_cmd(con, op.is_set(i), key, &val).await?;
                    }
                    let mut h = report::new_histogram();
                    let snap = cpu::Snapshot::take(&others);
                    let cpu0 = cpu::self_cpu();
                    let t0 = Instant::now();
                    for i in 0..n {
                        let t = Instant::now();
                        redis_rs_cmd(con, op.is_set(i), key, &val).await?;
                        report::record(&mut h, t.elapsed());
                    }
                    let elapsed = t0.elapsed();
                    let cpu = cpu::self_cpu().saturating_sub(cpu0) + snap.since();
                    Ok(Sample { h, elapsed, cpu })
                })
            }
            System::Hiredis => {
                let bin = self.hiredis.as_ref().ok_or("no hiredis peer")?;
                let snap = cpu::Snapshot::take(&others);
                let out = Command::new(bin)
                    .args([
                        "127.0.0.1",
                        &self.redis.port().to_string(),
                        op.arg(),
                        key,
                        &size.to_string(),
                        &warm.to_string(),
                        &n.to_string(),
                    ])
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()?;
                // The servers' CPU also covers the peer's connect and
                // warm-up: count it per command over all of them.
                let total = n + warm + u64::from(op == Op::Get);
                let server_cpu = snap.since().mul_f64(n as f64 / total as f64);
                if !out.status.success() {
                    return Err(format!("hiredis_peer: {}", out.status).into());
                }
                let mut lines = out.stdout.lines();
                let head = lines.next().ok_or("hiredis_peer: no output")??;
                let mut f = head.split_whitespace().map(str::parse::<u64>);
                let (Some(Ok(elapsed)), Some(Ok(cpu_ns))) = (f.next(), f.next()) else {
                    return Err(format!("hiredis_peer: bad first line {head:?}").into());
                };
                let mut h = report::new_histogram();
                for l in lines {
                    let ns: u64 = l?.trim().parse()?;
                    h.saturating_record(ns);
                }
                if h.len() != n {
                    return Err(format!("hiredis_peer: {} samples, expected {n}", h.len()).into());
                }
                Ok(Sample {
                    h,
                    elapsed: Duration::from_nanos(elapsed),
                    cpu: Duration::from_nanos(cpu_ns) + server_cpu,
                })
            }
        }
    }
}

/// Time `n` calls of `f` in this process, with the CPU of this process and
/// of `others`.
fn in_process(
    others: &[i32],
    n: u64,
    mut f: impl FnMut(u64) -> BoxResult<()>,
) -> BoxResult<Sample> {
    let mut h = report::new_histogram();
    let snap = cpu::Snapshot::take(others);
    let cpu0 = cpu::self_cpu();
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        report::record(&mut h, t.elapsed());
    }
    let elapsed = t0.elapsed();
    let cpu = cpu::self_cpu().saturating_sub(cpu0) + snap.since();
    Ok(Sample { h, elapsed, cpu })
}

/// One SET or GET through a vshm client, the reply checked in place (zero
/// copy: a GET's value is read where it lies in the completion ring, or in
/// the reassembled message when it spans several records).
pub fn vshm_cmd(c: &Client, set: bool, key: &str, val: &[u8]) -> BoxResult<()> {
    let args: [&[u8]; 3] = [if set { b"SET" } else { b"GET" }, key.as_bytes(), val];
    let id = c
        .submit(
            &args[..if set { 3 } else { 2 }],
            &Route::Auto,
            Some(OP_TIMEOUT),
        )
        .map_err(|e| format!("submit: {e}"))?;
    let deadline = Instant::now() + c.wait_bound(Some(OP_TIMEOUT));
    let r = c
        .wait_reply_until(id, deadline, true)
        .map_err(|e| format!("wait: {e}"))?;
    let ok = match r.completion() {
        ArchivedCompletion::Ok(ArchivedValue::Simple(s)) => set && s.as_slice() == b"OK",
        ArchivedCompletion::Ok(ArchivedValue::Bulk(b)) => !set && b.len() == val.len(),
        _ => false,
    };
    if !ok {
        return Err(format!(
            "unexpected reply to {}: {:?}",
            if set { "SET" } else { "GET" },
            r.to_completion()
        )
        .into());
    }
    Ok(())
}

async fn redis_rs_cmd(
    con: &mut redis::aio::MultiplexedConnection,
    set: bool,
    key: &str,
    val: &[u8],
) -> BoxResult<()> {
    let fut = async {
        if set {
            redis::cmd("SET")
                .arg(key)
                .arg(val)
                .query_async::<redis::Value>(con)
                .await
        } else {
            redis::cmd("GET")
                .arg(key)
                .query_async::<redis::Value>(con)
                .await
        }
    };
    let v = tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .map_err(|_| "redis-rs: timed out")??;
    let ok = match &v {
        redis::Value::Okay => set,
        redis::Value::SimpleString(s) => set && s == "OK",
        redis::Value::BulkString(b) => !set && b.len() == val.len(),
        _ => false,
    };
    if !ok {
        return Err(format!("redis-rs: unexpected reply {v:?}").into());
    }
    Ok(())
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    let systems: Vec<System> = if args.only.is_empty() {
        System::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for o in &args.only {
            let s = System::ALL
                .into_iter()
                .find(|s| s.name() == o)
                .ok_or_else(|| format!("unknown system `{o}`"))?;
            v.push(s);
        }
        v
    };
    let quick = args.common.quick;
    let total = args
        .ops
        .unwrap_or(if quick { 10_000 } else { 100_000 })
        .max(2);
    let rounds = args.rounds.unwrap_or(5).clamp(1, total / 2);
    let per = (total / rounds).max(2) & !1;
    let warm = (per / 10).max(100) & !1;
    println!(
        "seq: one client, sequential SET/GET of {VALUE_BYTES} B values; {total} commands per system in \
         {rounds} interleaved rounds; {} CPUs; load average {}; wait strategy {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        report::loadavg(),
        vshm_client::endpoint::WaitStrategy::from_env(),
    );
    let mut env = Env::start(&systems)?;
    let mut acc: Vec<Option<Sample>> = systems.iter().map(|_| None).collect();
    for round in 0..rounds {
        let mut line = format!("  round {}/{rounds} p50 ns:", round + 1);
        for (sys, slot) in systems.iter().zip(acc.iter_mut()) {
            let key = format!("vshm-bench:seq:{}", sys.name());
            let s = env
                .run(*sys, Op::SetGet, &key, VALUE_BYTES, warm, per)
                .map_err(|e| format!("{}: {e}", sys.name()))?;
            line += &format!(" {} {}", sys.name(), s.h.value_at_quantile(0.5));
            Sample::merge(slot, s)?;
        }
        println!("{line}");
    }
    drop(env);
    let rows: Vec<Row> = systems
        .iter()
        .zip(acc)
        .map(|(sys, s)| {
            s.expect("at least one round")
                .row(sys.name())
                .with("value_bytes", VALUE_BYTES)
        })
        .collect();
    println!();
    report::print_table("seq: SET/GET latency (ns)", &rows);
    println!();
    for r in &rows {
        println!(
            "  {:<14} CPU s per 100k commands (client + core/vshmd + redis-server): {}",
            r.name, r.extra["cpu_s_per_100k"]
        );
    }
    print_goals(&rows);
    println!("load average after the run: {}", report::loadavg());
    args.common.write(
        "seq",
        "seq: one client, SET/GET 100 B",
        &rows,
        &[
            Metric::P50,
            Metric::P99,
            Metric::OpsPerS,
            Metric::CpuPer100k,
        ],
    )?;
    Ok(rows)
}

fn print_goals(rows: &[Row]) {
    let Some(h) = report::find(rows, "hiredis") else {
        return;
    };
    for (name, goal) in [("vshm-embedded", 1.25), ("vshm-daemon", 1.5)] {
        if let Some(r) = report::find(rows, name) {
            let ratio = r.p50_ns as f64 / h.p50_ns.max(1) as f64;
            println!(
                "  {name:<14} p50 / hiredis p50 = {ratio:.2}x (goal <= {goal}x: {})",
                if ratio <= goal { "met" } else { "NOT met" }
            );
        }
    }
}
