//! The demo and test worker for vshmd.
//!
//! * `worker`: one process running a mixed, self-checking workload either
//!   through vshmd (`vshm_client::daemon::Reconnecting`) or directly
//!   against the cluster (the redis crate's cluster client). It connects,
//!   prints `ready`, waits for `go` on stdin, runs, prints `done ...`, and
//!   stays connected until stdin closes (so connections can be counted).
//! * `bench`: spawns N `worker`s, starts them together, counts the
//!   connections every server node holds (CLIENT LIST) while they are
//!   connected, and prints ops/s and the counts.
//! * `flood`: registers with a small completion ring, submits N requests
//!   and never reads a completion (a stuck client with requests in flight);
//!   prints `submitted N` and sleeps (tests kill it).
//! * `prefork`: registers, forks children that each run commands through
//!   the same `Reconnecting` (each must register anew), runs commands in
//!   the parent too, and checks that every reply is the caller's own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::Reconnecting;
use vshm_client::endpoint::WaitStrategy;
use vshm_protocol::msg::{Route, Value};
use vshm_protocol::register::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "vshm-demo-worker",
    about = "Workload processes for the vshmd demo and tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Through vshmd.
    Daemon,
    /// Straight to the cluster (redis crate cluster client).
    Direct,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One worker process (see the module docs).
    Worker {
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long, default_value_t = 0)]
        id: u32,
        #[arg(long, default_value_t = 2000)]
        ops: u64,
        /// vshmd socket (daemon mode).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Cluster nodes, comma separated (direct mode).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Spawn workers, run them together, count server connections.
    Bench {
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long, default_value_t = 32)]
        procs: u32,
        #[arg(long, default_value_t = 2000)]
        ops: u64,
        #[arg(long)]
        socket: Option<PathBuf>,
        /// All cluster nodes, comma separated (counted with CLIENT LIST).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// After counting, wait for a line on stdin before letting the
        /// workers go (lets a caller look at the servers and the daemon).
        #[arg(long)]
        hold: bool,
        /// Bound on each phase (all workers ready, all workers done).
        #[arg(long, default_value_t = 180)]
        timeout_secs: u64,
    },
    /// Submit requests and never read their completions.
    Flood {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 1000)]
        requests: u32,
        /// Completion ring size asked for (small: completions back up).
        #[arg(long, default_value_t = 4096)]
        cq: u64,
        /// Exit after this long (a bound, in case nobody kills us).
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// Register, fork children, run commands everywhere.
    Prefork {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 8)]
        children: u32,
        #[arg(long, default_value_t = 200)]
        ops: u64,
    },
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn settings(name: String) -> Settings {
    Settings {
        client_name: Some(name),
        ..Settings::default()
    }
}

fn copts() -> ClientOptions {
    // VSHM_DEMO_WAIT=park|spin picks the client's wait strategy (default:
    // the library's: a short spin, a short sched_yield phase, then park).
    let strategy = match std::env::var("VSHM_DEMO_WAIT").as_deref() {
        Ok("park") => WaitStrategy::PARK,
        Ok("spin") => WaitStrategy::SPIN,
        _ => WaitStrategy::DEFAULT,
    };
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        strategy,
        ..ClientOptions::default()
    }
}

/// A reply reduced to what the workload checks (RESP2/RESP3 and the two
/// value types compare alike).
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Str(Vec<u8>),
    Int(i64),
    Nil,
    Arr(Vec<V>),
    Other(String),
}

fn from_vshm(v: Value) -> V {
    match v {
        Value::Nil => V::Nil,
        Value::Int(i) => V::Int(i),
        Value::Bulk(b) | Value::Simple(b) => V::Str(b),
        Value::Array(a) | Value::Set(a) => V::Arr(a.into_iter().map(from_vshm).collect()),
        other => V::Other(format!("{other:?}")),
    }
}

fn from_redis(v: redis::Value) -> V {
    match v {
        redis::Value::Nil => V::Nil,
        redis::Value::Int(i) => V::Int(i),
        redis::Value::BulkString(b) => V::Str(b),
        redis::Value::SimpleString(s) => V::Str(s.into_bytes()),
        redis::Value::Okay => V::Str(b"OK".to_vec()),
        redis::Value::Array(a) | redis::Value::Set(a) => {
            V::Arr(a.into_iter().map(from_redis).collect())
        }
        other => V::Other(format!("{other:?}")),
    }
}

/// Runs one command and returns the reduced reply or an error text.
trait Runner {
    fn run(&mut self, args: &[&[u8]]) -> Result<V, String>;
}

struct ViaDaemon(Reconnecting);

impl Runner for ViaDaemon {
    fn run(&mut self, args: &[&[u8]]) -> Result<V, String> {
        let c = self
            .0
            .get()
            .map_err(|e| format!("{:?}: {}", e.kind, e.message))?;
        c.call(args)
            .map(from_vshm)
            .map_err(|e| format!("{:?}: {}", e.kind, e.message))
    }
}

struct Direct(redis::cluster::ClusterConnection);

impl Runner for Direct {
    fn run(&mut self, args: &[&[u8]]) -> Result<V, String> {
        let mut cmd = redis::Cmd::new();
        for a in args {
            cmd.arg(*a);
        }
        cmd.query::<redis::Value>(&mut self.0)
            .map(from_redis)
            .map_err(|e| e.to_string())
    }
}

/// The mixed workload: strings, counters, hashes, lists, echo; every reply
/// is checked against what this worker alone wrote (keys carry `tag`).
struct Workload {
    tag: String,
    strings: BTreeMap<u64, Vec<u8>>,
    hash: BTreeMap<u64, Vec<u8>>,
    counter: i64,
    list_len: i64,
    last_pushed: Vec<u8>,
    pub ops: u64,
    pub errors: u64,
    pub mismatches: u64,
    first_problem: Option<String>,
}

impl Workload {
    fn new(tag: String) -> Workload {
        Workload {
            tag,
            strings: BTreeMap::new(),
            hash: BTreeMap::new(),
            counter: 0,
            list_len: 0,
            last_pushed: Vec::new(),
            ops: 0,
            errors: 0,
            mismatches: 0,
            first_problem: None,
        }
    }

    fn key(&self, what: &str) -> Vec<u8> {
        format!("{}:{what}", self.tag).into_bytes()
    }

    /// Remove what an earlier run with the same tag left.
    fn reset(&mut self, r: &mut dyn Runner) -> Result<(), String> {
        for what in ["c", "h", "l"] {
            r.run(&[b"DEL", &self.key(what)])?;
        }
        Ok(())
    }

    fn problem(&mut self, what: String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }

    fn step(&mut self, r: &mut dyn Runner, n: u64) {
        let j = (n / 8) % 64;
        let val = format!("{}-{n}", self.tag).into_bytes();
        let (args, expect): (Vec<Vec<u8>>, Option<V>) = match n % 8 {
            0 => {
                self.strings.insert(j, val.clone());
                (
                    vec![b"SET".to_vec(), self.key(&format!("s{j}")), val],
                    Some(V::Str(b"OK".to_vec())),
                )
            }
            1 => {
                let want = self.strings.get(&j).cloned().map_or(V::Nil, V::Str);
                (
                    vec![b"GET".to_vec(), self.key(&format!("s{j}"))],
                    Some(want),
                )
            }
            2 => {
                self.counter += 1;
                (
                    vec![b"INCR".to_vec(), self.key("c")],
                    Some(V::Int(self.counter)),
                )
            }
            3 => {
                let fresh = self.hash.insert(j, val.clone()).is_none();
                (
                    vec![
                        b"HSET".to_vec(),
                        self.key("h"),
                        format!("f{j}").into_bytes(),
                        val,
                    ],
                    Some(V::Int(i64::from(fresh))),
                )
            }
            4 => {
                let want = self.hash.get(&j).cloned().map_or(V::Nil, V::Str);
                (
                    vec![
                        b"HGET".to_vec(),
                        self.key("h"),
                        format!("f{j}").into_bytes(),
                    ],
                    Some(want),
                )
            }
            5 => {
                self.list_len += 1;
                self.last_pushed = val.clone();
                (
                    vec![b"LPUSH".to_vec(), self.key("l"), val],
                    Some(V::Int(self.list_len)),
                )
            }
            6 => {
                let want = if self.list_len == 0 {
                    V::Arr(vec![])
                } else {
                    V::Arr(vec![V::Str(self.last_pushed.clone())])
                };
                (
                    vec![
                        b"LRANGE".to_vec(),
                        self.key("l"),
                        b"0".to_vec(),
                        b"0".to_vec(),
                    ],
                    Some(want),
                )
            }
            _ => (vec![b"ECHO".to_vec(), val.clone()], Some(V::Str(val))),
        };
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        self.ops += 1;
        match r.run(&refs) {
            Ok(got) => {
                if let Some(want) = expect {
                    if got != want {
                        self.mismatches += 1;
                        self.problem(format!(
                            "{}: got {got:?}, want {want:?}",
                            String::from_utf8_lossy(&args[0])
                        ));
                    }
                }
            }
            Err(e) => {
                self.errors += 1;
                self.problem(format!("{}: {e}", String::from_utf8_lossy(&args[0])));
            }
        }
    }
}

fn worker(mode: Mode, id: u32, ops: u64, socket: Option<PathBuf>, nodes: Vec<String>) -> ExitCode {
    let tag = format!("w{id}p{}", std::process::id());
    let mut runner: Box<dyn Runner> = match mode {
        Mode::Daemon => {
            let Some(socket) = socket else {
                eprintln!("worker: --socket is required in daemon mode");
                return ExitCode::FAILURE;
            };
            Box::new(ViaDaemon(Reconnecting::new(
                socket,
                settings(format!("worker-{id}")),
                TIMEOUT,
                copts(),
            )))
        }
        Mode::Direct => {
            let client = redis::cluster::ClusterClient::builder(
                nodes.iter().map(|n| format!("redis://{n}")),
            )
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build();
            match client.and_then(|c| c.get_connection()) {
                Ok(c) => Box::new(Direct(c)),
                Err(e) => {
                    eprintln!("worker {id}: cannot connect to the cluster: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let mut w = Workload::new(tag);
    if let Err(e) = w.reset(runner.as_mut()) {
        eprintln!("worker {id}: setup failed: {e}");
        println!("failed setup");
        return ExitCode::FAILURE;
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
        return ExitCode::FAILURE;
    }
    let t0 = Instant::now();
    for n in 0..ops {
        w.step(runner.as_mut(), n);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "done ops={} errors={} mismatches={} secs={secs:.4}",
        w.ops, w.errors, w.mismatches
    );
    let _ = std::io::stdout().flush();
    if let Some(p) = &w.first_problem {
        eprintln!("worker {id}: first problem: {p}");
    }
    // Stay connected until told to go.
    let mut rest = String::new();
    while stdin.lock().read_line(&mut rest).unwrap_or(0) > 0 {
        rest.clear();
    }
    if w.errors == 0 && w.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Application connections a node holds: CLIENT LIST without our own
/// connection and without replication links (flags S = a replica talking
/// to this primary, M = this replica's link to its primary).
fn app_connections(conn: &mut redis::Connection) -> Result<usize, String> {
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(conn)
        .map_err(|e| e.to_string())?;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(conn)
        .map_err(|e| e.to_string())?;
    Ok(list
        .lines()
        .filter(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                    .unwrap_or("")
                    .to_string()
            };
            let flags = field("flags");
            field("id") != me.to_string() && !flags.contains('S') && !flags.contains('M')
        })
        .count())
}

struct Spawned {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn count_all(conns: &mut [(String, redis::Connection)]) -> Result<Vec<usize>, String> {
    conns
        .iter_mut()
        .map(|(addr, c)| app_connections(c).map_err(|e| format!("CLIENT LIST on {addr}: {e}")))
        .collect()
}

fn bench(
    mode: Mode,
    procs: u32,
    ops: u64,
    socket: Option<PathBuf>,
    nodes: Vec<String>,
    hold: bool,
    timeout: Duration,
) -> ExitCode {
    let mut counters = Vec::new();
    for n in &nodes {
        let c = redis::Client::open(format!("redis://{n}"))
            .and_then(|c| c.get_connection_with_timeout(TIMEOUT))
            .and_then(|c| {
                c.set_read_timeout(Some(TIMEOUT))?;
                Ok(c)
            });
        match c {
            Ok(c) => counters.push((n.clone(), c)),
            Err(e) => {
                eprintln!("bench: cannot connect to {n}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let before = match count_all(&mut counters) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: current_exe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tx, rx) = mpsc::channel::<(u32, String)>();
    let mut kids = Vec::new();
    for i in 0..procs {
        let mut cmd = Command::new(&exe);
        cmd.arg("worker")
            .arg("--mode")
            .arg(match mode {
                Mode::Daemon => "daemon",
                Mode::Direct => "direct",
            })
            .arg("--id")
            .arg(i.to_string())
            .arg("--ops")
            .arg(ops.to_string())
            .arg("--nodes")
            .arg(nodes.join(","));
        if let Some(s) = &socket {
            cmd.arg("--socket").arg(s);
        }
        // SAFETY: prctl is async-signal-safe and touches nothing else: the
        // workers die with the bench, however it ends.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench: cannot spawn worker: {e}");
                finish(&mut kids);
                return ExitCode::FAILURE;
            }
        };
        let out = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
            let _ = tx.send((i, "eof".into()));
        });
        let stdin = child.stdin.take();
        kids.push(Spawned { child, stdin });
    }
    drop(tx);
    let wait_for = |prefix: &str| -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut got: BTreeMap<u32, String> = BTreeMap::new();
        while got.len() < procs as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, line)) if line.starts_with(prefix) => {
                    got.insert(i, line);
                }
                Ok((i, line)) if line == "eof" || line.starts_with("failed") => {
                    return Err(format!("worker {i} ended before {prefix}"));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "{} of {procs} workers reached {prefix} in time",
                        got.len()
                    ))
                }
            }
        }
        Ok(got.into_values().collect())
    };
    if let Err(e) = wait_for("ready") {
        eprintln!("bench: {e}");
        finish(&mut kids);
        return ExitCode::FAILURE;
    }
    let t0 = Instant::now();
    for k in kids.iter_mut() {
        if let Some(s) = k.stdin.as_mut() {
            let _ = s.write_all(b"go\n").and_then(|_| s.flush());
        }
    }
    let done = match wait_for("done") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench: {e}");
            finish(&mut kids);
            return ExitCode::FAILURE;
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    // Everyone is still connected: count what the servers hold.
    let during = count_all(&mut counters);
    let (mut total_ops, mut errors, mut mismatches) = (0u64, 0u64, 0u64);
    for l in &done {
        for f in l.split_whitespace() {
            let num = |p: &str| {
                f.strip_prefix(p)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            total_ops += num("ops=");
            errors += num("errors=");
            mismatches += num("mismatches=");
        }
    }
    let mode_s = match mode {
        Mode::Daemon => "daemon",
        Mode::Direct => "direct",
    };
    println!(
        "bench mode={mode_s} procs={procs} ops={total_ops} errors={errors} mismatches={mismatches} secs={secs:.3} ops_per_sec={:.0}",
        total_ops as f64 / secs.max(1e-9)
    );
    let during = match during {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench: {e}");
            finish(&mut kids);
            return ExitCode::FAILURE;
        }
    };
    for ((n, _), (b, d)) in counters.iter().zip(before.iter().zip(&during)) {
        println!("conns mode={mode_s} node={n} before={b} during={d}");
    }
    println!(
        "conns mode={mode_s} total before={} during={}",
        before.iter().sum::<usize>(),
        during.iter().sum::<usize>()
    );
    let _ = std::io::stdout().flush();
    if hold {
        let mut l = String::new();
        let _ = std::io::stdin().lock().read_line(&mut l);
    }
    let failed = finish(&mut kids);
    if failed > 0 || errors > 0 || mismatches > 0 || total_ops != ops * u64::from(procs) {
        eprintln!("bench: {failed} worker(s) failed, {errors} errors, {mismatches} mismatches");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Close the workers' stdin (they exit), wait a bounded time, kill the
/// rest. Returns how many did not exit successfully.
fn finish(kids: &mut Vec<Spawned>) -> usize {
    for k in kids.iter_mut() {
        k.stdin.take();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failed = 0;
    for k in kids.iter_mut() {
        loop {
            match k.child.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        failed += 1;
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = k.child.kill();
                    let _ = k.child.wait();
                    failed += 1;
                    break;
                }
            }
        }
    }
    kids.clear();
    failed
}

fn flood(socket: PathBuf, requests: u32, cq: u64, max_secs: u64) -> ExitCode {
    let s = Settings {
        client_name: Some("flood".into()),
        cq_capacity: cq,
        sq_capacity: 1 << 20,
        ..Settings::default()
    };
    let rc = Reconnecting::new(socket, s, TIMEOUT, copts());
    let c = match rc.get() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flood: {}", e.message);
            return ExitCode::FAILURE;
        }
    };
    for i in 0..requests {
        let key = format!("flood:{i}");
        if let Err(e) = c.submit(
            &[b"GET", key.as_bytes()],
            &Route::Auto,
            Some(Duration::from_secs(60)),
        ) {
            eprintln!("flood: submit {i}: {}", e.message);
            return ExitCode::FAILURE;
        }
    }
    println!("submitted {requests} client_id={}", c.client_id());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(max_secs));
    ExitCode::SUCCESS
}

/// Commands whose replies name the caller: SET/GET of a caller-only key and
/// ECHO of a caller-only payload. Returns (ok, problems).
fn own_replies(rc: &Reconnecting, who: &str, ops: u64) -> (u64, Vec<String>) {
    let mut ok = 0;
    let mut bad = Vec::new();
    for n in 0..ops {
        let key = format!("pf:{who}:{}", n % 16);
        let val = format!("{who}-{n}");
        let c = match rc.get() {
            Ok(c) => c,
            Err(e) => {
                bad.push(format!("{who}: register: {:?} {}", e.kind, e.message));
                continue;
            }
        };
        let r = (|| -> Result<bool, String> {
            let e = |e: vshm_protocol::msg::ClientError| format!("{:?} {}", e.kind, e.message);
            let set = c
                .call(&[b"SET", key.as_bytes(), val.as_bytes()])
                .map_err(e)?;
            let get = c.call(&[b"GET", key.as_bytes()]).map_err(e)?;
            let echo = c.call(&[b"ECHO", val.as_bytes()]).map_err(e)?;
            Ok(set == Value::Simple(b"OK".to_vec())
                && get == Value::Bulk(val.clone().into_bytes())
                && echo == Value::Bulk(val.clone().into_bytes()))
        })();
        match r {
            Ok(true) => ok += 1,
            Ok(false) => bad.push(format!("{who}: op {n}: a reply was not this caller's")),
            Err(e) => bad.push(format!("{who}: op {n}: {e}")),
        }
    }
    (ok, bad)
}

fn prefork(socket: PathBuf, children: u32, ops: u64) -> ExitCode {
    let rc = Reconnecting::new(socket, settings("prefork-parent".into()), TIMEOUT, copts());
    let parent_id = match rc.get() {
        Ok(c) => c.client_id(),
        Err(e) => {
            eprintln!("prefork: {}", e.message);
            return ExitCode::FAILURE;
        }
    };
    let (ok0, bad0) = own_replies(&rc, "parent-pre", 20);
    let _ = std::io::stdout().flush();
    let mut pids = Vec::new();
    for i in 0..children {
        // SAFETY: fork in a process whose other threads (the registration
        // watcher) hold no lock the child needs: the child only uses `rc`,
        // whose locks this thread does not hold right now.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            eprintln!("prefork: fork failed: {}", std::io::Error::last_os_error());
            break;
        }
        if pid == 0 {
            let who = format!("child{i}-{}", std::process::id());
            let (ok, bad) = own_replies(&rc, &who, ops);
            let child_id = rc.get().map(|c| c.client_id()).unwrap_or(0);
            let regs = rc
                .registrations
                .load(vshm_protocol::sync::Ordering::Relaxed);
            let fine = bad.is_empty() && ok == ops && child_id != parent_id && child_id != 0;
            println!(
                "child {i} pid={} ok={ok} problems={} client_id={child_id} parent_client_id={parent_id} registrations={regs}",
                std::process::id(),
                bad.len()
            );
            for b in bad.iter().take(3) {
                println!("child {i} problem: {b}");
            }
            let _ = std::io::stdout().flush();
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors of state it shares.
            unsafe { libc::_exit(if fine { 0 } else { 1 }) };
        }
        pids.push(pid);
    }
    let (ok1, bad1) = own_replies(&rc, "parent", ops);
    let parent_after = rc.get().map(|c| c.client_id()).unwrap_or(0);
    let mut child_ok = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for &pid in &pids {
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; status is a live int.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    child_ok += 1;
                }
                break;
            }
            if r < 0 || Instant::now() > deadline {
                // SAFETY: kills our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let regs = rc
        .registrations
        .load(vshm_protocol::sync::Ordering::Relaxed);
    println!(
        "prefork children={} children_ok={child_ok} parent_ok={} parent_problems={} parent_registrations={regs} parent_client_id={parent_id} parent_client_id_after={parent_after}",
        pids.len(),
        ok0 + ok1,
        bad0.len() + bad1.len()
    );
    for b in bad0.iter().chain(&bad1).take(3) {
        println!("parent problem: {b}");
    }
    let fine = child_ok == children
        && bad0.is_empty()
        && bad1.is_empty()
        && regs == 1
        && parent_after == parent_id;
    if fine {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Worker {
            mode,
            id,
            ops,
            socket,
            nodes,
        } => worker(mode, id, ops, socket, nodes),
        Cmd::Bench {
            mode,
            procs,
            ops,
            socket,
            nodes,
            hold,
            timeout_secs,
        } => bench(
            mode,
            procs,
            ops,
            socket,
            nodes,
            hold,
            Duration::from_secs(timeout_secs),
        ),
        Cmd::Flood {
            socket,
            requests,
            cq,
            max_secs,
        } => flood(socket, requests, cq, max_secs),
        Cmd::Prefork {
            socket,
            children,
            ops,
        } => prefork(socket, children, ops),
    }
}
