//! `async`: P processes with C requests in flight each (P x C = 256),
//! through vshmd (queued submissions: `Client::submit_queued` +
//! `wait_events`, what the C library's asynchronous API builds on) against
//! the same with the `redis` crate's multiplexed connection per process
//! (tokio current-thread runtime, C concurrent tasks); and the server's
//! ceiling from `redis-benchmark -P 16 -c 50` in the same run.
//!
//! Mixed GET/SET (50/50) of 100-byte values over 10,000 keys, as in
//! `prefork`, with the same process harness, connection count and CPU
//! accounting (see `prefork.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vshm_client::client::Reply;
use vshm_protocol::msg::{ArchivedCompletion, ArgRef, ArgsRef, Op, Route};

use crate::prefork::{self, round3, ConnCounter, Rng, Target};
use crate::report::{self, Row};
use crate::{cpu, BoxResult};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// `--quick`: standalone, P=4 C=64 only, 2 s per measurement;
    /// `--json FILE`, `--plot FILE.svg`.
    #[command(flatten)]
    pub common: report::CommonArgs,
    /// Process x in-flight configurations (default 4x64,16x16).
    #[arg(long, value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Measured seconds per variant (default 5; --quick: 2).
    #[arg(long)]
    pub secs: Option<f64>,
    /// Only this target (`standalone` or `cluster`); default both
    /// (--quick: standalone).
    #[arg(long)]
    pub target: Option<String>,
    /// Extra top-level vshmd configuration (TOML), e.g. `pool_size = 2`.
    #[arg(long, default_value = "")]
    pub daemon_config: String,
}

/// Arguments of the hidden `async-worker` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// `vshm` or `redis-rs`.
    #[arg(long)]
    pub system: String,
    /// The daemon's socket (vshm).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Server addresses, comma-separated (redis-rs).
    #[arg(long, value_delimiter = ',')]
    pub addrs: Vec<String>,
    /// The addresses are cluster nodes (redis-rs).
    #[arg(long)]
    pub cluster: bool,
    #[arg(long)]
    pub inflight: usize,
    #[arg(long)]
    pub duration_ms: u64,
    #[arg(long)]
    pub index: u64,
    #[arg(long)]
    pub workers: u64,
}

/// Bound on the wait for the last completions after the measured window.
const DRAIN_BOUND: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn worker(a: WorkerArgs) -> BoxResult<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    match a.system.as_str() {
        "vshm" => vshm_worker(&a),
        "redis-rs" => redis_worker(&a),
        other => Err(format!("unknown system {other:?}").into()),
    }
}

fn ok_reply(r: &Reply, set: bool) -> bool {
    match r.completion() {
        ArchivedCompletion::Ok(v) => {
            use vshm_protocol::msg::ArchivedValue as V;
            match v {
                V::Simple(_) => set,
                V::Bulk(_) | V::Nil => !set,
                _ => false,
            }
        }
        _ => false,
    }
}

/// C queued requests in flight through the daemon; each completion
/// submits the next one until the window ends.
fn vshm_worker(a: &WorkerArgs) -> BoxResult<()> {
    let socket = a.socket.as_ref().ok_or("--socket is required for vshm")?;
    let c = prefork::connect_daemon(socket)?;
    let val = [b'v'; prefork::VALUE_BYTES];
    let keys = prefork::KEYS;
    let mut k = a.index;
    while k < keys {
        let kb = prefork::key(k);
        c.call_routed(&[b"SET", kb.as_bytes(), &val], &Route::Auto, None)?;
        k += a.workers.max(1);
    }
    prefork::ready_and_wait()?;

    let mut rng = Rng::for_worker(a.index);
    let mut started: HashMap<u64, (Instant, bool)> = HashMap::with_capacity(a.inflight * 2);
    let mut submit = |started: &mut HashMap<u64, (Instant, bool)>| -> BoxResult<()> {
        let x = rng.next();
        let set = x & 1 == 1;
        let kb = prefork::key((x >> 8) % keys);
        let set_args = [ArgRef(b"SET"), ArgRef(kb.as_bytes()), ArgRef(&val)];
        let get_args = [ArgRef(b"GET"), ArgRef(kb.as_bytes())];
        let args = if set { &set_args[..] } else { &get_args[..] };
        let now = Instant::now();
        c.submit_queued(
            &Op::Command {
                args: ArgsRef(args),
            },
            &Route::Auto,
            None,
            0,
            &mut |id| {
                started.insert(id, (now, set));
            },
        )?;
        Ok(())
    };

    let mut samples = Vec::with_capacity(1 << 18);
    let mut errors = 0u64;
    let mut out = Vec::with_capacity(a.inflight);
    let cpu0 = cpu::self_cpu();
    let t0 = Instant::now();
    let end = t0 + Duration::from_millis(a.duration_ms);
    let mut last = t0;
    for _ in 0..a.inflight {
        submit(&mut started)?;
    }
    while !started.is_empty() {
        let now = Instant::now();
        if now > end + DRAIN_BOUND {
            return Err(format!(
                "{} requests still in flight after the drain bound",
                started.len()
            )
            .into());
        }
        c.wait_events(now + Duration::from_millis(100), &mut out, None)?;
        let t1 = Instant::now();
        // The next requests go to the core in batches (`Client::cork`), as
        // libvshm sends what its callbacks submit.
        let _cork = c.cork();
        for r in out.drain(..) {
            let Some((ts, set)) = started.remove(&r.id()) else {
                continue;
            };
            if !ok_reply(&r, set) {
                errors += 1;
            }
            drop(r);
            samples.push((t1 - ts).as_nanos() as u64);
            last = t1;
            if t1 < end {
                submit(&mut started)?;
            }
        }
    }
    let cpu = cpu::self_cpu().saturating_sub(cpu0);
    prefork::write_result(samples.len() as u64, errors, cpu, last - t0, &samples)
}

/// One task's share: requests, errors, latencies.
type TaskOut = (u64, Vec<u64>);

async fn task<C>(mut con: C, index: u64, end: Instant) -> Result<TaskOut, String>
where
    C: redis::aio::ConnectionLike + Send,
{
    let mut rng = Rng::for_worker(index);
    let val = [b'v'; prefork::VALUE_BYTES];
    let mut samples = Vec::with_capacity(1 << 14);
    let mut errors = 0u64;
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        let x = rng.next();
        let set = x & 1 == 1;
        let kb = prefork::key((x >> 8) % prefork::KEYS);
        let mut cmd = if set {
            redis::cmd("SET")
        } else {
            redis::cmd("GET")
        };
        cmd.arg(kb.as_bytes());
        if set {
            cmd.arg(&val[..]);
        }
        let r = tokio::time::timeout(REQUEST_TIMEOUT, cmd.query_async::<redis::Value>(&mut con))
            .await
            .map_err(|_| "request timed out".to_string())?;
        let ok = match r {
            Ok(redis::Value::Okay | redis::Value::SimpleString(_)) => set,
            Ok(redis::Value::BulkString(_) | redis::Value::Nil) => !set,
            Ok(_) => false,
            Err(e) if e.is_io_error() || e.is_connection_dropped() => return Err(e.to_string()),
            Err(_) => false,
        };
        if !ok {
            errors += 1;
        }
        samples.push(t.elapsed().as_nanos() as u64);
    }
    Ok((errors, samples))
}

async fn prefill<C>(con: &mut C, a: &WorkerArgs) -> BoxResult<()>
where
    C: redis::aio::ConnectionLike + Send,
{
    let val = [b'v'; prefork::VALUE_BYTES];
    let mut k = a.index;
    while k < prefork::KEYS {
        let mut cmd = redis::cmd("SET");
        cmd.arg(prefork::key(k)).arg(&val[..]);
        let q = cmd.query_async::<()>(con);
        tokio::time::timeout(REQUEST_TIMEOUT, q)
            .await
            .map_err(|_| "prefill timed out")??;
        k += a.workers.max(1);
    }
    Ok(())
}

async fn measure<C>(con: C, a: &WorkerArgs) -> BoxResult<()>
where
    C: redis::aio::ConnectionLike + Clone + Send + 'static,
{
    let cpu0 = cpu::self_cpu();
    let t0 = Instant::now();
    let end = t0 + Duration::from_millis(a.duration_ms);
    let tasks: Vec<_> = (0..a.inflight as u64)
        .map(|i| tokio::spawn(task(con.clone(), a.index * 1_000 + i, end)))
        .collect();
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (e, s) = t.await.map_err(|e| e.to_string())??;
        errors += e;
        samples.extend(s);
    }
    let elapsed = t0.elapsed();
    let cpu = cpu::self_cpu().saturating_sub(cpu0);
    prefork::write_result(samples.len() as u64, errors, cpu, elapsed, &samples)
}

/// C tasks sharing one multiplexed connection (a cluster connection
/// against the cluster) on a current-thread runtime.
fn redis_worker(a: &WorkerArgs) -> BoxResult<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let urls: Vec<String> = a.addrs.iter().map(|x| format!("redis://{x}/")).collect();
    let first = urls
        .first()
        .ok_or("--addrs is required for redis-rs")?
        .clone();
    if a.cluster {
        let mut con = rt.block_on(async {
            let c = redis::cluster::ClusterClient::new(urls)?;
            tokio::time::timeout(REQUEST_TIMEOUT, c.get_async_connection())
                .await
                .map_err(|_| "cluster connect timed out")?
                .map_err(BoxResultErr::from)
        })?;
        rt.block_on(prefill(&mut con, a))?;
        prefork::ready_and_wait()?;
        rt.block_on(measure(con, a))
    } else {
        let mut con = rt.block_on(async {
            let c = redis::Client::open(first)?;
            tokio::time::timeout(REQUEST_TIMEOUT, c.get_multiplexed_async_connection())
                .await
                .map_err(|_| "connect timed out")?
                .map_err(BoxResultErr::from)
        })?;
        rt.block_on(prefill(&mut con, a))?;
        prefork::ready_and_wait()?;
        rt.block_on(measure(con, a))
    }
}

type BoxResultErr = Box<dyn std::error::Error>;

// ---------------------------------------------------------------------------
// The scenario

fn parse_config(s: &str) -> BoxResult<(usize, usize)> {
    let (p, c) = s
        .split_once('x')
        .ok_or_else(|| format!("config {s:?}: expected PxC, e.g. 4x64"))?;
    let p: usize = p.parse().map_err(|_| format!("bad P in {s:?}"))?;
    let c: usize = c.parse().map_err(|_| format!("bad C in {s:?}"))?;
    if p == 0 || c == 0 {
        return Err(format!("config {s:?}: P and C must be positive").into());
    }
    Ok((p, c))
}

fn worker_cmds(
    system: &str,
    target: &Target,
    socket: Option<&std::path::Path>,
    p: usize,
    c: usize,
    duration: Duration,
) -> BoxResult<Vec<Command>> {
    let exe = std::env::current_exe()?;
    Ok((0..p)
        .map(|i| {
            let mut cmd = Command::new(&exe);
            cmd.arg("async-worker")
                .arg("--system")
                .arg(system)
                .arg("--inflight")
                .arg(c.to_string())
                .arg("--duration-ms")
                .arg(duration.as_millis().to_string())
                .arg("--index")
                .arg(i.to_string())
                .arg("--workers")
                .arg(p.to_string());
            if let Some(s) = socket {
                cmd.arg("--socket").arg(s);
            } else {
                cmd.arg("--addrs").arg(target.addrs().join(","));
                if matches!(target, Target::Cluster(_)) {
                    cmd.arg("--cluster");
                }
            }
            cmd
        })
        .collect())
}

/// `redis-benchmark -P 16 -c 50 -t get,set --csv`: one row per test.
fn redis_benchmark(target: &Target, requests: u64) -> BoxResult<Vec<Row>> {
    let addrs = target.addrs();
    let (host, port) = addrs[0].rsplit_once(':').ok_or("bad address")?;
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "redis-benchmark", "-h", host, "-p", port])
        .args(["-P", "16", "-c", "50", "-t", "get,set", "--csv"])
        .args(["-d", &prefork::VALUE_BYTES.to_string()])
        .args(["-r", &prefork::KEYS.to_string()])
        .args(["-n", &requests.to_string()]);
    if matches!(target, Target::Cluster(_)) {
        cmd.arg("--cluster");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut counter = ConnCounter::connect(&addrs)?;
    let servers = target.pids();
    let before = cpu::Snapshot::take(&servers);
    let children_before = children_cpu();
    let child = vshm_tests::vshmd::spawn_tied(&mut cmd)
        .map_err(|e| format!("running redis-benchmark: {e}"))?;
    // Count the connections once the clients are up (the SET test runs
    // first and lasts well beyond this for the request counts used).
    std::thread::sleep(Duration::from_millis(300));
    let conns = counter.count()?;
    let out = child.wait_with_output()?;
    let other = before.since();
    let bench_cpu = children_cpu().saturating_sub(children_before);
    if !out.status.success() {
        return Err(format!(
            "redis-benchmark: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // With --cluster it first describes the nodes: the CSV starts at
    // its header line.
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("\"test\""))
        .filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| format!("no CSV header in redis-benchmark's output:\n{text}"))?
        .split(',')
        .map(|f| f.trim_matches('"').to_owned())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("redis-benchmark CSV has no {name:?} column: {header:?}"))
    };
    let (c_test, c_rps, c_p50, c_p99) = (
        col("test")?,
        col("rps")?,
        col("p50_latency_ms")?,
        col("p99_latency_ms")?,
    );
    let mut parsed = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').map(|f| f.trim_matches('"')).collect();
        let num = |i: usize| -> BoxResult<f64> {
            Ok(f.get(i)
                .ok_or("short CSV line")?
                .parse::<f64>()
                .map_err(|e| format!("{l:?}: {e}"))?)
        };
        parsed.push((
            f.get(c_test).copied().unwrap_or("?").to_lowercase(),
            num(c_rps)?,
            num(c_p50)?,
            num(c_p99)?,
        ));
    }
    let total_ops = requests * parsed.len() as u64;
    let cpu_per_100k = cpu::per_100k(other + bench_cpu, total_ops);
    Ok(parsed
        .into_iter()
        .map(|(test, rps, p50, p99)| {
            let mut r = Row::new(
                "redis-benchmark",
                &report::new_histogram(),
                0,
                Duration::ZERO,
            );
            r.ops_per_s = rps;
            r.p50_ns = (p50 * 1e6) as u64;
            r.p99_ns = (p99 * 1e6) as u64;
            r.p999_ns = r.p99_ns;
            r.max_ns = r.p99_ns;
            r.samples = requests;
            r.with("test", test)
                .with("pipeline", 16)
                .with("clients", 50)
                .with("target", target.name())
                .with("server_connections", conns)
                .with("cpu_s_per_100k", round3(cpu_per_100k))
                .with(
                    "cpu_clients_s_per_100k",
                    round3(cpu::per_100k(bench_cpu, total_ops)),
                )
                .with("cpu_daemon_s_per_100k", 0.0)
                .with(
                    "cpu_servers_s_per_100k",
                    round3(cpu::per_100k(other, total_ops)),
                )
        })
        .collect())
}

/// User + system time of this process's waited-for children.
fn children_cpu() -> Duration {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the live struct passed.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    prefork::raise_nofile();
    let quick = args.common.quick;
    let configs: Vec<(usize, usize)> = if args.configs.is_empty() {
        if quick {
            vec![(4, 64)]
        } else {
            vec![(4, 64), (16, 16)]
        }
    } else {
        args.configs
            .iter()
            .map(|s| parse_config(s))
            .collect::<BoxResult<_>>()?
    };
    let secs = args.secs.unwrap_or(if quick { 2.0 } else { 5.0 });
    let duration = Duration::from_secs_f64(secs);
    let targets: Vec<&str> = match args.target.as_deref() {
        Some(t) => vec![t],
        None if quick => vec!["standalone"],
        None => vec!["standalone", "cluster"],
    };
    let bench_requests: u64 = if quick { 200_000 } else { 1_000_000 };
    println!(
        "async: P processes x C requests in flight, GET/SET (50/50) of {} B values over {} keys, {secs} s each; load average {}",
        prefork::VALUE_BYTES,
        prefork::KEYS,
        report::loadavg()
    );
    let mut rows = Vec::new();
    for t in targets {
        let target = Target::start(t)?;
        let addrs = target.addrs();
        let servers = target.pids();
        // The per-process connections and the ceiling first, with no
        // daemon connected (its connections would count).
        for &(p, c) in &configs {
            let m = prefork::run_workers(
                worker_cmds("redis-rs", &target, None, p, c, duration)?,
                duration,
                &servers,
                None,
                &addrs,
            )?;
            rows.push(m.row("redis-rs", t, p).with("C", c));
            prefork::print_progress(rows.last().expect("pushed"));
        }
        for r in redis_benchmark(&target, bench_requests)? {
            eprintln!(
                "  redis-benchmark  {t:<10} {:<5} {:>10.0} ops/s",
                r.extra["test"].as_str().unwrap_or(""),
                r.ops_per_s
            );
            rows.push(r);
        }
        let daemon = target.start_daemon(&args.daemon_config);
        for &(p, c) in &configs {
            let m = prefork::run_workers(
                worker_cmds("vshm", &target, Some(&daemon.socket), p, c, duration)?,
                duration,
                &servers,
                Some(daemon.pid()),
                &addrs,
            )?;
            rows.push(m.row("vshm-daemon", t, p).with("C", c));
            prefork::print_progress(rows.last().expect("pushed"));
        }
    }
    prefork::print_rows("async", &rows);
    prefork::write_outputs(&args.common, "async", "async", &rows)?;
    Ok(rows)
}
