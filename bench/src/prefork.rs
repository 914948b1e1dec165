//! `prefork`: P worker processes, each doing blocking sequential requests
//! (mixed GET/SET of 100-byte values over many keys), the way PHP-FPM or
//! gunicorn workers do; all through one vshmd, against each process with
//! its own hiredis connection(s) (one per primary against the cluster,
//! with the key slot computed in the worker). Against a standalone server
//! and a 6-node cluster (3 primaries + 3 replicas).
//!
//! Reported per (system, target, P): ops/s, p50/p99 latency, the client
//! connections the servers hold during the run (`CLIENT LIST` on every
//! node, minus the replication links and the benchmark's own), and the
//! CPU seconds per 100,000 requests of everything involved: the workers
//! (their own `getrusage` over the measured window), the daemon and the
//! servers (`/proc/<pid>/stat` deltas over the same window). The systems
//! run interleaved, hiredis then vshmd, in two rounds of half the duration
//! each (one with `--quick`), and each row merges its rounds: on a VM whose
//! host steals CPU in bursts, one 5-second window per system moved the
//! P=64 cluster ratio of one build between 1.35x and 1.69x.
//!
//! This module also holds the process harness shared with `async`:
//! workers are spawned with the death signal set, prefill their share of
//! the keys, print `ready`, wait for EOF on stdin (a pipe closed for all
//! of them at once: the start barrier), run a fixed duration and print
//! `result ops=.. errors=.. cpu_ns=.. elapsed_ns=.. samples=N` followed by
//! N native-endian u64 latencies in nanoseconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vshm_client::client::ClientOptions;
use vshm_client::daemon::DaemonClient;
use vshm_protocol::msg::{Route, Value};
use vshm_protocol::register::Settings;
use vshm_tests::vshmd::{Servers, Vshmd};
use vshm_tests::{RedisCluster, RedisServer};

use crate::plot::Metric;
use crate::report::{self, Row};
use crate::{cpu, BoxResult};

/// Keys the workers spread over (each worker writes its share first).
pub const KEYS: u64 = 10_000;
/// Value size of the SETs.
pub const VALUE_BYTES: usize = 100;
/// Bound of every single request and of the workers' startup.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STARTUP_BOUND: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// `--quick`: P = 8 only, 2 s per measurement; `--json FILE`,
    /// `--plot FILE.svg` (ops/s; CPU per request and p99 beside it).
    #[command(flatten)]
    pub common: report::CommonArgs,
    /// Worker process counts (default 8,32,64; --quick: 8).
    #[arg(long, value_delimiter = ',')]
    pub procs: Vec<usize>,
    /// Measured seconds per variant, over all rounds (default 5; --quick: 2).
    #[arg(long)]
    pub secs: Option<f64>,
    /// Only this target (`standalone` or `cluster`); default both.
    #[arg(long)]
    pub target: Option<String>,
    /// Extra top-level vshmd configuration (TOML), e.g. `pool_size = 2`.
    #[arg(long, default_value = "")]
    pub daemon_config: String,
}

/// Arguments of the hidden `prefork-worker` subcommand (one vshm worker).
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long)]
    pub socket: PathBuf,
    #[arg(long)]
    pub duration_ms: u64,
    #[arg(long)]
    pub index: u64,
    #[arg(long)]
    pub workers: u64,
    #[arg(long, default_value_t = KEYS)]
    pub keys: u64,
    #[arg(long, default_value_t = VALUE_BYTES)]
    pub value_bytes: usize,
}

// ---------------------------------------------------------------------------
// Targets

/// A running standalone server or cluster.
pub enum Target {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

impl Target {
    pub fn start(name: &str) -> BoxResult<Target> {
        match name {
            "standalone" => Ok(Target::Standalone(RedisServer::start())),
            "cluster" => Ok(Target::Cluster(RedisCluster::start())),
            other => Err(format!("unknown target {other:?} (standalone or cluster)").into()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Standalone(_) => "standalone",
            Target::Cluster(_) => "cluster",
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        match self {
            Target::Standalone(s) => vec![s.addr()],
            Target::Cluster(c) => c.addrs(),
        }
    }

    /// Every redis-server process (for CPU accounting).
    pub fn pids(&self) -> Vec<i32> {
        let nodes: Vec<&RedisServer> = match self {
            Target::Standalone(s) => vec![s],
            Target::Cluster(c) => c.nodes.iter().collect(),
        };
        nodes
            .iter()
            .filter_map(|n| n.pid())
            .map(|p| p as i32)
            .collect()
    }

    /// A daemon serving this target; `top`: extra top-level configuration.
    pub fn start_daemon(&self, top: &str) -> Vshmd {
        let addrs = self.addrs();
        let servers = match self {
            Target::Standalone(_) => Servers::Standalone(&addrs[0]),
            Target::Cluster(_) => Servers::Cluster(&addrs),
        };
        Vshmd::start(top, servers, "")
    }
}

// ---------------------------------------------------------------------------
// The process harness

/// What one worker reported.
#[derive(Debug, Default)]
struct WorkerResult {
    ops: u64,
    errors: u64,
    cpu: Duration,
    elapsed: Duration,
    samples: Vec<u64>,
}

enum Msg {
    Ready,
    Done(WorkerResult),
    Failed(String),
}

/// The merged outcome of one run of P workers.
pub struct Measured {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    /// Mean of the workers' measured durations.
    pub elapsed: Duration,
    /// Workers' CPU over their measured windows.
    pub worker_cpu: Duration,
    /// Servers' CPU over the run.
    pub server_cpu: Duration,
    /// The daemon's CPU over the run (zero without a daemon).
    pub daemon_cpu: Duration,
    /// Client connections the servers held mid-run (all nodes).
    pub server_connections: usize,
}

impl Measured {
    /// Rounds of one system as one measurement: counts, CPU and
    /// histograms add up, `elapsed` too (so ops/s is over the whole
    /// measured time), and the connection count is the largest seen.
    pub fn merged(ms: Vec<Measured>) -> BoxResult<Measured> {
        let mut it = ms.into_iter();
        let mut acc = it.next().ok_or("no rounds to merge")?;
        for m in it {
            acc.hist
                .add(&m.hist)
                .map_err(|e| format!("merging histograms: {e:?}"))?;
            acc.ops += m.ops;
            acc.errors += m.errors;
            acc.elapsed += m.elapsed;
            acc.worker_cpu += m.worker_cpu;
            acc.server_cpu += m.server_cpu;
            acc.daemon_cpu += m.daemon_cpu;
            acc.server_connections = acc.server_connections.max(m.server_connections);
        }
        Ok(acc)
    }

    pub fn cpu_s_per_100k(&self) -> f64 {
        cpu::per_100k(
            self.worker_cpu + self.server_cpu + self.daemon_cpu,
            self.ops,
        )
    }

    /// A report row with the common extra fields.
    pub fn row(&self, name: &str, target: &str, p: usize) -> Row {
        Row::new(name, &self.hist, self.ops, self.elapsed)
            .with("P", p)
            .with("target", target)
            .with("server_connections", self.server_connections)
            .with("cpu_s_per_100k", round3(self.cpu_s_per_100k()))
            .with(
                "cpu_clients_s_per_100k",
                round3(cpu::per_100k(self.worker_cpu, self.ops)),
            )
            .with(
                "cpu_daemon_s_per_100k",
                round3(cpu::per_100k(self.daemon_cpu, self.ops)),
            )
            .with(
                "cpu_servers_s_per_100k",
                round3(cpu::per_100k(self.server_cpu, self.ops)),
            )
            .with("errors", self.errors)
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Kills and reaps every worker still running when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse_result(line: &str) -> BoxResult<(WorkerResult, usize)> {
    let mut r = WorkerResult::default();
    let mut n = None;
    let mut fields = line.split_whitespace();
    if fields.next() != Some("result") {
        return Err(format!("unexpected worker output {line:?}").into());
    }
    for f in fields {
        let (k, v) = f.split_once('=').ok_or("bad result field")?;
        let v: u64 = v.parse().map_err(|_| format!("bad number in {f:?}"))?;
        match k {
            "ops" => r.ops = v,
            "errors" => r.errors = v,
            "cpu_ns" => r.cpu = Duration::from_nanos(v),
            "elapsed_ns" => r.elapsed = Duration::from_nanos(v),
            "samples" => n = Some(v as usize),
            _ => {}
        }
    }
    Ok((r, n.ok_or("no sample count")?))
}

/// Read one worker's stdout: `ready`, then the result and its samples.
fn read_worker(out: impl Read, tx: &mpsc::Sender<(usize, Msg)>, i: usize) -> BoxResult<()> {
    let mut rd = BufReader::new(out);
    let mut line = String::new();
    rd.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("expected `ready`, got {:?}", line.trim()).into());
    }
    let _ = tx.send((i, Msg::Ready));
    line.clear();
    rd.read_line(&mut line)?;
    let (mut r, n) = parse_result(line.trim())?;
    let mut bytes = Vec::with_capacity(n * 8);
    rd.read_to_end(&mut bytes)?;
    if bytes.len() != n * 8 {
        return Err(format!("expected {n} samples, got {} bytes", bytes.len()).into());
    }
    r.samples = bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunk")))
        .collect();
    let _ = tx.send((i, Msg::Done(r)));
    Ok(())
}

/// Client connections held by the servers at `addrs`: `CLIENT LIST` on
/// each, minus replication links (flags S/M) and the asking connection.
pub struct ConnCounter {
    conns: Vec<redis::Connection>,
}

impl ConnCounter {
    pub fn connect(addrs: &[String]) -> BoxResult<ConnCounter> {
        let mut conns = Vec::new();
        for a in addrs {
            let c = redis::Client::open(format!("redis://{a}/"))?;
            let con = c.get_connection_with_timeout(REQUEST_TIMEOUT)?;
            con.set_read_timeout(Some(REQUEST_TIMEOUT))?;
            con.set_write_timeout(Some(REQUEST_TIMEOUT))?;
            conns.push(con);
        }
        Ok(ConnCounter { conns })
    }

    pub fn count(&mut self) -> BoxResult<usize> {
        let mut n = 0;
        for con in &mut self.conns {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(con)?;
            n += list
                .lines()
                .filter(|l| {
                    let flags = l
                        .split_whitespace()
                        .find_map(|f| f.strip_prefix("flags="))
                        .unwrap_or("");
                    !flags.contains('S') && !flags.contains('M') && !l.contains("cmd=client|list")
                })
                .count();
        }
        Ok(n)
    }
}

/// Run `cmds` (one per worker) through the protocol in the module docs:
/// start barrier, `duration`, merged results. `servers` and `daemon`: the
/// processes whose CPU counts besides the workers'; `addrs`: the nodes
/// whose connections count.
pub fn run_workers(
    cmds: Vec<Command>,
    duration: Duration,
    servers: &[i32],
    daemon: Option<i32>,
    addrs: &[String],
) -> BoxResult<Measured> {
    let p = cmds.len();
    let mut counter = ConnCounter::connect(addrs)?;
    let (barrier_rd, barrier_wr): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (tx, rx) = mpsc::channel::<(usize, Msg)>();
    let mut workers = Workers(Vec::with_capacity(p));
    let mut readers = Vec::with_capacity(p);
    for (i, mut cmd) in cmds.into_iter().enumerate() {
        cmd.stdin(Stdio::from(barrier_rd.try_clone()?))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = vshm_tests::vshmd::spawn_tied(&mut cmd)
            .map_err(|e| format!("spawning worker {cmd:?}: {e}"))?;
        let out = child.stdout.take().ok_or("no worker stdout")?;
        workers.0.push(child);
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            if let Err(e) = read_worker(out, &tx, i) {
                let _ = tx.send((i, Msg::Failed(e.to_string())));
            }
        }));
    }
    drop(barrier_rd);
    drop(tx);

    // Everyone connected and prefilled.
    let deadline = Instant::now() + STARTUP_BOUND;
    let mut ready = 0;
    while ready < p {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Msg::Ready)) => ready += 1,
            Ok((i, Msg::Failed(e))) => return Err(format!("worker {i}: {e}").into()),
            Ok((i, Msg::Done(_))) => return Err(format!("worker {i} finished early").into()),
            Err(_) => return Err(format!("only {ready} of {p} workers ready in time").into()),
        }
    }

    let servers_before = cpu::Snapshot::take(servers);
    let daemon_before = cpu::Snapshot::take(daemon.as_slice());
    drop(barrier_wr); // go
    std::thread::sleep(duration / 2);
    let server_connections = counter.count()?;

    let deadline = Instant::now() + duration + Duration::from_secs(30);
    let mut results = Vec::with_capacity(p);
    while results.len() < p {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Msg::Done(r))) => results.push(r),
            Ok((i, Msg::Failed(e))) => return Err(format!("worker {i}: {e}").into()),
            Ok((_, Msg::Ready)) => {}
            Err(_) => {
                return Err(
                    format!("only {} of {p} workers reported in time", results.len()).into(),
                )
            }
        }
    }
    let server_cpu = servers_before.since();
    let daemon_cpu = daemon_before.since();

    // Reap (they are exiting); a worker failing at exit fails the run.
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in &mut workers.0 {
        loop {
            if let Some(st) = c.try_wait()? {
                if !st.success() {
                    return Err(format!("a worker exited with {st}").into());
                }
                break;
            }
            if Instant::now() >= deadline {
                return Err("workers did not exit in time".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    workers.0.clear();
    for r in readers {
        let _ = r.join();
    }

    let mut hist = report::new_histogram();
    let mut m = Measured {
        hist: report::new_histogram(),
        ops: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        worker_cpu: Duration::ZERO,
        server_cpu,
        daemon_cpu,
        server_connections,
    };
    let mut elapsed = Duration::ZERO;
    for r in &results {
        for &s in &r.samples {
            hist.saturating_record(s.max(1));
        }
        m.ops += r.ops;
        m.errors += r.errors;
        m.worker_cpu += r.cpu;
        elapsed += r.elapsed;
    }
    m.hist = hist;
    m.elapsed = elapsed / p.max(1) as u32;
    Ok(m)
}

// ---------------------------------------------------------------------------
// Worker side (shared with `async`)

/// Print `ready` and wait for the start barrier (EOF on stdin), bounded.
pub fn ready_and_wait() -> BoxResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    drop(out);
    let fd = std::io::stdin();
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&fd),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(60_000u16))?;
    if n == 0 {
        return Err("no start signal in time".into());
    }
    let mut buf = [0u8; 1];
    while std::io::stdin().read(&mut buf)? != 0 {}
    Ok(())
}

/// Print the result line and the samples.
pub fn write_result(
    ops: u64,
    errors: u64,
    cpu: Duration,
    elapsed: Duration,
    samples: &[u64],
) -> BoxResult<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "result ops={ops} errors={errors} cpu_ns={} elapsed_ns={} samples={}",
        cpu.as_nanos(),
        elapsed.as_nanos(),
        samples.len()
    )?;
    for s in samples {
        out.write_all(&s.to_ne_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// xorshift64: the worker's key/op sequence.
pub struct Rng(pub u64);

impl Rng {
    pub fn for_worker(index: u64) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (index + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn key(k: u64) -> String {
    format!("bench:key:{k:06}")
}

/// Register with the daemon at `socket`.
pub fn connect_daemon(socket: &Path) -> BoxResult<DaemonClient> {
    let settings = Settings {
        client_name: Some(format!("bench-{}", std::process::id())),
        ..Settings::default()
    };
    Ok(DaemonClient::connect(
        socket,
        &settings,
        REQUEST_TIMEOUT,
        ClientOptions::default(),
    )?)
}

fn vshm_request(c: &DaemonClient, set: bool, key: &[u8], val: &[u8]) -> BoxResult<bool> {
    let r = if set {
        c.call_routed(&[b"SET", key, val], &Route::Auto, None)
    } else {
        c.call_routed(&[b"GET", key], &Route::Auto, None)
    };
    Ok(match r {
        Ok(Value::Simple(_)) => set,
        Ok(Value::Bulk(_) | Value::Nil) => !set,
        Ok(_) => false,
        Err(e) if e.kind == vshm_protocol::msg::ErrorKind::Connection => return Err(e.into()),
        Err(_) => false,
    })
}

/// The `prefork-worker` process: blocking sequential requests through the
/// daemon.
pub fn worker(a: WorkerArgs) -> BoxResult<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    let c = connect_daemon(&a.socket)?;
    let val = vec![b'v'; a.value_bytes];
    let mut k = a.index;
    while k < a.keys {
        if !vshm_request(&c, true, key(k).as_bytes(), &val)? {
            return Err("prefill SET failed".into());
        }
        k += a.workers.max(1);
    }
    ready_and_wait()?;
    let mut rng = Rng::for_worker(a.index);
    let mut samples = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    let cpu0 = cpu::self_cpu();
    let t0 = Instant::now();
    let end = t0 + Duration::from_millis(a.duration_ms);
    let mut t = t0;
    while t < end {
        let x = rng.next();
        let kb = key((x >> 8) % a.keys.max(1));
        let ok = vshm_request(&c, x & 1 == 1, kb.as_bytes(), &val)?;
        let t1 = Instant::now();
        if !ok {
            errors += 1;
        }
        samples.push((t1 - t).as_nanos() as u64);
        t = t1;
    }
    let cpu = cpu::self_cpu().saturating_sub(cpu0);
    write_result(samples.len() as u64, errors, cpu, t - t0, &samples)
}

// ---------------------------------------------------------------------------
// The scenario

fn vshm_cmds(socket: &Path, p: usize, duration: Duration) -> BoxResult<Vec<Command>> {
    let exe = std::env::current_exe()?;
    Ok((0..p)
        .map(|i| {
            let mut c = Command::new(&exe);
            c.arg("prefork-worker")
                .arg("--socket")
                .arg(socket)
                .arg("--duration-ms")
                .arg(duration.as_millis().to_string())
                .arg("--index")
                .arg(i.to_string())
                .arg("--workers")
                .arg(p.to_string());
            c
        })
        .collect())
}

fn hiredis_cmds(bin: &Path, target: &Target, p: usize, duration: Duration) -> Vec<Command> {
    let seed = target.addrs()[0].clone();
    (0..p)
        .map(|i| {
            let mut c = Command::new(bin);
            c.arg(target.name())
                .arg(&seed)
                .arg(duration.as_millis().to_string())
                .arg(i.to_string())
                .arg(p.to_string())
                .arg(KEYS.to_string())
                .arg(VALUE_BYTES.to_string());
            c
        })
        .collect()
}

/// Raise the soft descriptor limit to the hard one (64 workers, their
/// pipes and the servers' sockets).
pub fn raise_nofile() {
    // SAFETY: rlimit is plain old data; all zeroes is a valid value.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the live struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: passes a live, initialized rlimit; failure is harmless.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    raise_nofile();
    let procs = if !args.procs.is_empty() {
        args.procs.clone()
    } else if args.common.quick {
        vec![8]
    } else {
        vec![8, 32, 64]
    };
    let secs = args
        .secs
        .unwrap_or(if args.common.quick { 2.0 } else { 5.0 });
    let duration = Duration::from_secs_f64(secs);
    let targets: Vec<&str> = match args.target.as_deref() {
        Some(t) => vec![t],
        None => vec!["standalone", "cluster"],
    };
    let hiredis =
        crate::cpeer::build("hiredis_worker", include_str!("../c/hiredis_worker.c"), &[])?;
    println!(
        "prefork: P processes, blocking sequential GET/SET (50/50) of {VALUE_BYTES} B values over {KEYS} keys, {secs} s each; load average {}",
        report::loadavg()
    );
    let rounds: u32 = if args.common.quick { 1 } else { 2 };
    let per_round = duration / rounds;
    let mut rows = Vec::new();
    for t in targets {
        let target = Target::start(t)?;
        let addrs = target.addrs();
        let servers = target.pids();
        for &p in &procs {
            let (mut direct, mut shared) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                // Per-process hiredis first, with no daemon connected to
                // the servers (its connections would count).
                let m = run_workers(
                    hiredis_cmds(&hiredis, &target, p, per_round),
                    per_round,
                    &servers,
                    None,
                    &addrs,
                )?;
                direct.push(m);
                let daemon = target.start_daemon(&args.daemon_config);
                let m = run_workers(
                    vshm_cmds(&daemon.socket, p, per_round)?,
                    per_round,
                    &servers,
                    Some(daemon.pid()),
                    &addrs,
                )?;
                shared.push(m);
            }
            for (name, m) in [("hiredis", direct), ("vshm-daemon", shared)] {
                rows.push(Measured::merged(m)?.row(name, t, p));
                print_progress(rows.last().expect("pushed"));
            }
        }
    }
    print_rows("prefork", &rows);
    write_outputs(&args.common, "prefork", "prefork", &rows)?;
    Ok(rows)
}

pub fn print_progress(r: &Row) {
    eprintln!(
        "  {:<16} {:<10} P={:<3} {:>10.0} ops/s",
        r.name,
        r.extra.get("target").and_then(|v| v.as_str()).unwrap_or(""),
        r.extra.get("P").map(|v| v.to_string()).unwrap_or_default(),
        r.ops_per_s
    );
}

/// The table: one line per (target, P, system), side by side.
pub fn print_rows(title: &str, rows: &[Row]) {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    let key = |r: &Row| {
        (
            r.extra
                .get("target")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
            r.extra.get("P").and_then(|v| v.as_u64()).unwrap_or(0),
            r.extra.get("C").and_then(|v| v.as_u64()).unwrap_or(0),
        )
    };
    sorted.sort_by_key(|r| key(r));
    println!("{title}");
    println!(
        "{:<20} {:<10} {:>4} {:>4} {:>11} {:>9} {:>9} {:>7} {:>10} {:>6} (cpu: clients+daemon+servers)",
        "name",
        "target",
        "P",
        "C",
        "ops/s",
        "p50 us",
        "p99 us",
        "conns",
        "cpu s/100k",
        "errors",
    );
    for r in sorted {
        let get = |k: &str| {
            r.extra
                .get(k)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let name = match r.extra.get("test").and_then(|v| v.as_str()) {
            Some(t) => format!("{} {t}", r.name),
            None => r.name.clone(),
        };
        let split = format!(
            "{}+{}+{}",
            get("cpu_clients_s_per_100k"),
            get("cpu_daemon_s_per_100k"),
            get("cpu_servers_s_per_100k")
        );
        println!(
            "{:<20} {:<10} {:>4} {:>4} {:>11.0} {:>9.1} {:>9.1} {:>7} {:>10} {:>6} {split}",
            name,
            r.extra
                .get("target")
                .and_then(|v| v.as_str())
                .unwrap_or("-"),
            get("P"),
            get("C"),
            r.ops_per_s,
            r.p50_ns as f64 / 1000.0,
            r.p99_ns as f64 / 1000.0,
            get("server_connections"),
            get("cpu_s_per_100k"),
            get("errors"),
        );
    }
}

/// `--json` as is; `--plot`: ops/s to FILE, CPU per 100k requests and
/// p99 beside it. The plotted copies carry the target as the group's
/// first label and no connection count (which differs between systems
/// and would split their bars into separate groups).
pub fn write_outputs(
    common: &report::CommonArgs,
    scenario: &str,
    title: &str,
    rows: &[Row],
) -> BoxResult<()> {
    if let Some(path) = &common.json {
        report::write_json(path, scenario, rows)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &common.plot {
        let plotted: Vec<Row> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(t) = r.extra.remove("target") {
                    let t = t.as_str().unwrap_or("").to_owned();
                    let op = match r.extra.get("test").and_then(|v| v.as_str()) {
                        Some(test) => format!("{t} {test}"),
                        None => t,
                    };
                    r.extra.insert("op".into(), op.into());
                }
                r.extra.remove("server_connections");
                r
            })
            .collect();
        let metrics = [Metric::OpsPerS, Metric::CpuPer100k, Metric::P99];
        for (i, m) in metrics.iter().enumerate() {
            let p = if i == 0 {
                path.clone()
            } else {
                crate::plot::sibling(path, m.slug())
            };
            crate::plot::write(&p, &format!("{title}: {}", m.label()), &plotted, *m)?;
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
