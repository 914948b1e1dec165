//! The soak driver: cluster, vshmd, worker processes, chaos loop, summary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::avail::{self, Availability, FaultRec, WorkerHistory};
use super::chaos::{self, Fault, Injected};
use super::{group_tag, mono_ms, Tick, WorkerReport};
use crate::cluster_ops::wait_slots_settled;
use crate::vshmd::{parse_clients, spawn_tied, Servers, Vshmd};
use crate::RedisCluster;

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct DriverArgs {
    pub seconds: u64,
    pub workers: usize,
    /// How many of the workers run one request at a time (`worker --sync`); the others keep
    /// `inflight` queued requests.
    pub sync_workers: usize,
    /// Submissions per second of a queued worker (a sync worker uses `rate`).
    pub queued_rate: u32,
    /// Every fault kind at least this many times: the chaos loop goes on past `seconds`
    /// (rounds of every kind) until each kind has run this often.
    pub min_each: u32,
    pub seed: Option<u64>,
    pub inflight: usize,
    pub groups: u32,
    pub rate: u32,
    /// Pause between two faults, ms (uniform in this range).
    pub gap_ms: (u64, u64),
    /// Fail on any missed recovery bound (else only on a wedge; misses are reported).
    pub strict: bool,
    pub json: Option<PathBuf>,
}

/// Bound for a worker to register and print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for the workers' reports after `stop` (drain + read-back).
const REPORT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for the daemon's client count to reach the expected value.
const RECLAIM_TIMEOUT: Duration = Duration::from_secs(15);
/// No fault starts in the last seconds of the run.
const QUIET_TAIL: Duration = Duration::from_secs(5);

enum Msg {
    Line(u64, String),
    Eof(u64),
}

struct Proc {
    id: u64,
    hist: WorkerHistory,
    child: Child,
    stdin: Option<ChildStdin>,
    ready: bool,
    killed: bool,
    stopped: bool,
    exited: bool,
    report: Option<WorkerReport>,
}

/// The figures of a run (printed, and written with `--json`).
#[derive(Serialize, Debug, Default)]
pub struct Summary {
    pub seed: u64,
    pub seconds: f64,
    pub workers: usize,
    pub worker_processes: u64,
    pub surviving_workers: usize,
    pub killed_workers: usize,
    pub submitted: u64,
    pub completed: u64,
    pub values: u64,
    pub lost: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_samples: BTreeMap<String, Vec<String>>,
    pub element_errors: u64,
    pub overdue: u64,
    pub max_latency_ms: u64,
    pub mismatched: u64,
    pub unexpected: u64,
    pub client_deaths: u64,
    pub acked_writes: u64,
    pub keys_checked: u64,
    pub check_failures: u64,
    pub duplicates: u64,
    pub verify_retries: u64,
    pub faults: BTreeMap<String, u64>,
    pub fault_log: Vec<String>,
    /// Recovery after every fault, per kind, and the longest span without a success.
    pub availability: Availability,
    pub daemon_rss_kb_start: u64,
    pub daemon_rss_kb_end: u64,
    pub daemon_rss_kb_idle: u64,
    pub daemon_rss_kb_peak: u64,
    pub problems: Vec<String>,
    pub failures: Vec<String>,
    pub ok: bool,
}

struct Driver {
    args: DriverArgs,
    seed: u64,
    t0: Instant,
    vshmd: Vshmd,
    procs: Vec<Proc>,
    next_id: u64,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    sum: Summary,
    /// Faults injected (for the availability figures).
    records: Vec<FaultRec>,
    /// The daemon's pid (it changes with `kill_daemon`), for the RSS sampler.
    daemon_pid: Arc<AtomicI32>,
}

/// Instant -> `mono_ms` (both are CLOCK_MONOTONIC).
fn ms_of(t: Instant) -> u64 {
    let now = Instant::now();
    let m = mono_ms();
    if t <= now {
        m - (now - t).as_millis() as u64
    } else {
        m + (t - now).as_millis() as u64
    }
}

/// VmRSS of `pid` in kB (0 if unreadable).
pub fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs a soak; returns the process exit code (0: no failure).
pub fn run(args: DriverArgs) -> i32 {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "vshm-soak: seed {seed}, {} s, {} workers ({} sync at <= {}/s, {} queued x {} in flight at <= {}/s){}",
        args.seconds,
        args.workers,
        args.sync_workers,
        args.rate,
        args.workers - args.sync_workers,
        args.inflight,
        args.queued_rate,
        if args.min_each > 0 {
            format!(", every fault kind >= {} times", args.min_each)
        } else {
            String::new()
        }
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = RedisCluster::start();
    wait_slots_settled(&cluster);
    let vshmd = Vshmd::start("", Servers::Cluster(&cluster.addrs()), "");
    let (tx, rx) = mpsc::channel();
    let mut d = Driver {
        seed,
        t0: Instant::now(),
        vshmd,
        procs: Vec::new(),
        next_id: 1,
        tx,
        rx,
        sum: Summary {
            seed,
            workers: args.workers,
            ..Summary::default()
        },
        records: Vec::new(),
        daemon_pid: Arc::new(AtomicI32::new(0)),
        args,
    };
    d.daemon_pid.store(d.vshmd.pid(), Ordering::Relaxed);

    // Peak RSS, sampled every 200 ms.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), d.daemon_pid.clone());
        std::thread::spawn(move || {
            // Relaxed: a flag, a pid and a maximum; nothing else is published through them.
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid.load(Ordering::Relaxed)), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    for _ in 0..d.args.workers {
        d.spawn_worker();
    }
    d.check_clients("all workers registered");
    d.t0 = Instant::now();
    d.pump(Duration::from_secs(2));
    d.sum.daemon_rss_kb_start = rss_kb(d.vshmd.pid());

    // Chaos: rounds of every fault kind in a random order, a random gap between two.
    let load_end = d.t0 + Duration::from_secs(d.args.seconds);
    let chaos_end = load_end.checked_sub(QUIET_TAIL).unwrap_or(d.t0);
    let mut load_end = load_end;
    let mut round: Vec<Fault> = Vec::new();
    loop {
        let gap = rng.random_range(d.args.gap_ms.0..=d.args.gap_ms.1.max(d.args.gap_ms.0));
        d.pump(Duration::from_millis(gap));
        let short = chaos::ALL
            .iter()
            .any(|f| d.sum.faults.get(f.name()).copied().unwrap_or(0) < u64::from(d.args.min_each));
        if Instant::now() >= chaos_end && !short {
            break;
        }
        if round.is_empty() {
            round = chaos::ALL.to_vec();
            round.shuffle(&mut rng);
        }
        let fault = round.pop().expect("non-empty round");
        let inj = d.inject(fault, &mut cluster, &mut rng);
        let line = format!(
            "[{:7.1} s] {}: {} (bound from the injection {} ms)",
            d.t0.elapsed().as_secs_f64(),
            fault.name(),
            inj.what,
            (inj.reference - inj.at + fault.allowance()).as_millis()
        );
        println!("{line}");
        d.sum.fault_log.push(line);
        d.records.push(FaultRec {
            kind: fault,
            what: inj.what,
            at_ms: ms_of(inj.at),
            ref_ms: ms_of(inj.reference),
        });
        *d.sum.faults.entry(fault.name().to_string()).or_default() += 1;
        // --min-each: the load lasts until the last fault has had its quiet tail.
        load_end = load_end.max(Instant::now() + QUIET_TAIL);
    }
    while Instant::now() < load_end {
        d.pump(load_end.saturating_duration_since(Instant::now()));
    }

    // Faults are over: the cluster settles, then the workers stop, drain and read back.
    cluster.wait_settled(chaos::SETTLE);
    wait_slots_settled(&cluster);
    d.sum.seconds = d.t0.elapsed().as_secs_f64();
    let (t0_ms, end_ms) = (ms_of(d.t0), ms_of(load_end));
    d.check_clients("end of the load");
    d.sum.daemon_rss_kb_end = rss_kb(d.vshmd.pid());
    d.stop_workers();
    d.expect_clients(0, "all workers exited");
    d.sum.daemon_rss_kb_idle = rss_kb(d.vshmd.pid());
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    // The sampler may have missed the points measured here.
    d.sum.daemon_rss_kb_peak = peak
        .load(Ordering::Relaxed)
        .max(d.sum.daemon_rss_kb_start)
        .max(d.sum.daemon_rss_kb_end)
        .max(d.sum.daemon_rss_kb_idle);
    d.finish(t0_ms, end_ms)
}

impl Driver {
    fn live(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| !self.procs[i].killed && !self.procs[i].exited)
            .collect()
    }

    fn spawn_worker(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let exe = std::env::current_exe().expect("current_exe");
        // Workers alternate sync / queued until `sync_workers` sync ones are live.
        let live_sync = self
            .live()
            .iter()
            .filter(|&&i| self.procs[i].hist.sync)
            .count();
        let live = self.live().len();
        let sync = live_sync < self.args.sync_workers
            && (live - live_sync >= self.args.workers - self.args.sync_workers
                || live_sync <= live - live_sync);
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .arg("--socket")
            .arg(&self.vshmd.socket)
            .args(["--id", &id.to_string()])
            .args([
                "--seed",
                &(self.seed ^ id.wrapping_mul(0x9E37_79B9)).to_string(),
            ])
            .args(["--inflight", &self.args.inflight.to_string()])
            .args(["--groups", &self.args.groups.to_string()])
            .args([
                "--rate",
                &if sync {
                    self.args.rate
                } else {
                    self.args.queued_rate
                }
                .to_string(),
            ])
            .args(sync.then_some("--sync"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_tied(&mut cmd).expect("spawn worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Msg::Line(id, l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Msg::Eof(id));
        });
        let stdin = child.stdin.take();
        self.procs.push(Proc {
            id,
            hist: WorkerHistory {
                id,
                sync,
                start_ms: mono_ms(),
                ..WorkerHistory::default()
            },
            child,
            stdin,
            ready: false,
            killed: false,
            stopped: false,
            exited: false,
            report: None,
        });
        self.sum.worker_processes += 1;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.procs.last().expect("pushed").ready {
            assert!(
                Instant::now() < deadline,
                "worker {id} not ready within {READY_TIMEOUT:?}"
            );
            self.pump(Duration::from_millis(50));
        }
    }

    /// Handles worker output for `dur`.
    fn pump(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.rx.recv_timeout(left) {
                Ok(m) => m,
                Err(_) => return,
            };
            let (id, line) = match msg {
                Msg::Line(id, l) => (id, Some(l)),
                Msg::Eof(id) => (id, None),
            };
            let Some(p) = self.procs.iter_mut().find(|p| p.id == id) else {
                continue;
            };
            match line {
                Some(l) if l.starts_with("ready ") => p.ready = true,
                Some(l) if l.starts_with("tick ") => match serde_json::from_str::<Tick>(&l[5..]) {
                    Ok(t) => {
                        p.hist.ok.extend(t.ok);
                        p.hist.fail.extend(t.fail);
                    }
                    Err(e) => self
                        .sum
                        .failures
                        .push(format!("worker {id}: bad tick: {e}")),
                },
                Some(l) if l.starts_with("died ") => {
                    p.hist.deaths.extend(l[5..].trim().parse::<u64>().ok());
                }
                Some(l) => match l.strip_prefix("report ") {
                    Some(json) => match serde_json::from_str::<WorkerReport>(json) {
                        Ok(r) => p.report = Some(r),
                        Err(e) => self
                            .sum
                            .failures
                            .push(format!("worker {id}: bad report: {e}")),
                    },
                    None => println!("worker {id}: {l}"),
                },
                None => {
                    p.exited = true;
                    if !p.killed && !p.stopped {
                        let st = p.child.wait();
                        self.sum
                            .failures
                            .push(format!("worker {id} exited during the load: {st:?}"));
                    }
                }
            }
        }
    }

    fn inject(&mut self, fault: Fault, cluster: &mut RedisCluster, rng: &mut StdRng) -> Injected {
        match fault {
            Fault::KillWorker => {
                let live = self.live();
                let i = live[rng.random_range(0..live.len())];
                let p = &mut self.procs[i];
                p.killed = true;
                let at = Instant::now();
                p.hist.killed_ms = Some(mono_ms());
                let _ = p.child.kill();
                let _ = p.child.wait();
                let id = p.id;
                self.spawn_worker();
                let ready = Instant::now();
                let n = self.check_clients("after a worker was killed");
                Injected {
                    what: format!(
                        "SIGKILLed worker {id}, started worker {}; daemon clients back to {n}",
                        self.next_id - 1
                    ),
                    at,
                    reference: ready,
                }
            }
            Fault::StopWorker => {
                let live = self.live();
                let i = live[rng.random_range(0..live.len())];
                let (id, pid) = (self.procs[i].id, self.procs[i].child.id() as i32);
                let ms = rng.random_range(1000..=3000u64);
                let at = Instant::now();
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                self.pump(Duration::from_millis(ms));
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                Injected {
                    what: format!("SIGSTOPped worker {id} for {ms} ms"),
                    at,
                    reference: Instant::now(),
                }
            }
            Fault::KillPrimary => chaos::kill_primary(cluster, rng),
            Fault::ClientKill => chaos::client_kill(cluster, rng),
            Fault::ClientKillAll => chaos::client_kill_all(cluster),
            Fault::ClientPause => chaos::client_pause(cluster, rng),
            Fault::KillDaemon => {
                let at = Instant::now();
                // Vshmd::restart: SIGKILL, start on the same socket, wait until it answers.
                self.vshmd.restart();
                let back = Instant::now();
                self.daemon_pid.store(self.vshmd.pid(), Ordering::Relaxed);
                let n = self.check_clients("after the daemon restarted");
                Injected {
                    what: format!(
                        "SIGKILLed vshmd, restarted on the same socket in {} ms; clients back to {n}",
                        (back - at).as_millis()
                    ),
                    at,
                    reference: back,
                }
            }
            Fault::Migrate => {
                let tags: Vec<String> = self
                    .live()
                    .iter()
                    .flat_map(|&i| {
                        let id = self.procs[i].id;
                        (0..self.args.groups).map(move |g| group_tag(id, g))
                    })
                    .collect();
                chaos::migrate(cluster, rng, &tags)
            }
        }
    }

    /// The daemon's client count must come to the number of live workers (a killed worker's
    /// registration is reclaimed). Returns the count.
    fn check_clients(&mut self, when: &str) -> usize {
        let want = self.live().len();
        self.expect_clients(want, when)
    }

    fn expect_clients(&mut self, want: usize, when: &str) -> usize {
        let deadline = Instant::now() + RECLAIM_TIMEOUT;
        loop {
            let n = parse_clients(&self.vshmd.stats());
            if n == want {
                return n;
            }
            if Instant::now() >= deadline {
                self.sum.failures.push(format!(
                    "{when}: daemon has {n} clients after {RECLAIM_TIMEOUT:?}, expected {want}"
                ));
                return n;
            }
            self.pump(Duration::from_millis(50));
        }
    }

    fn stop_workers(&mut self) {
        for i in self.live() {
            let p = &mut self.procs[i];
            p.stopped = true;
            if let Some(mut s) = p.stdin.take() {
                let _ = s.write_all(b"stop\n");
            }
        }
        let deadline = Instant::now() + REPORT_TIMEOUT;
        while self
            .procs
            .iter()
            .any(|p| p.stopped && (p.report.is_none() || !p.exited))
            && Instant::now() < deadline
        {
            self.pump(Duration::from_millis(100));
        }
        for p in self.procs.iter_mut().filter(|p| p.stopped) {
            if p.report.is_none() {
                self.sum.failures.push(format!(
                    "worker {} sent no report within {REPORT_TIMEOUT:?}",
                    p.id
                ));
                let _ = p.child.kill();
            }
            match p.child.wait() {
                Ok(st) if st.success() => {}
                st => self
                    .sum
                    .failures
                    .push(format!("worker {} exit status {st:?}", p.id)),
            }
        }
    }

    fn finish(mut self, t0_ms: u64, end_ms: u64) -> i32 {
        let hists: Vec<WorkerHistory> = self.procs.iter().map(|p| p.hist.clone()).collect();
        let av = avail::compute(t0_ms, end_ms, &hists, &self.records);
        for w in &av.wedges {
            self.sum.failures.push(format!("availability: wedged: {w}"));
        }
        if self.args.strict {
            for m in &av.misses {
                self.sum
                    .failures
                    .push(format!("availability bound missed: {m}"));
            }
        }
        // A registration may only die when the daemon was killed (until 5 s after it was
        // back: the worker notices within its watcher's poll).
        for h in &hists {
            for &t in &h.deaths {
                let expected = self
                    .records
                    .iter()
                    .any(|r| r.kind == Fault::KillDaemon && r.at_ms <= t && t <= r.ref_ms + 5000);
                if !expected {
                    self.sum.failures.push(format!(
                        "worker {}: registration died at {:.1} s, not during a daemon restart",
                        h.id,
                        t.saturating_sub(t0_ms) as f64 / 1000.0
                    ));
                }
            }
        }
        self.sum.availability = av;
        let s = &mut self.sum;
        s.killed_workers = self.procs.iter().filter(|p| p.killed).count();
        for p in self.procs.iter().filter(|p| p.stopped) {
            let Some(r) = &p.report else { continue };
            s.surviving_workers += 1;
            s.submitted += r.submitted;
            s.completed += r.completed;
            s.values += r.values;
            s.lost += r.lost;
            for (k, n) in &r.errors {
                *s.errors.entry(k.clone()).or_default() += n;
            }
            for (k, v) in &r.error_samples {
                let e = s.error_samples.entry(k.clone()).or_default();
                for m in v {
                    if e.len() < 5 && !e.contains(m) {
                        e.push(m.clone());
                    }
                }
            }
            s.element_errors += r.element_errors;
            s.overdue += r.overdue;
            s.max_latency_ms = s.max_latency_ms.max(r.max_latency_ms);
            s.mismatched += r.mismatched;
            s.unexpected += r.unexpected;
            s.client_deaths += r.client_deaths;
            s.acked_writes += r.acked_writes;
            s.keys_checked += r.keys_checked;
            s.check_failures += r.check_failures;
            s.duplicates += r.duplicates;
            s.verify_retries += r.verify_retries;
            for m in &r.problems {
                if s.problems.len() < 50 {
                    s.problems.push(format!("worker {}: {m}", r.id));
                }
            }
            if r.submitted != r.completed + r.lost {
                s.failures.push(format!(
                    "worker {}: submitted {} != completed {} + lost {}",
                    r.id, r.submitted, r.completed, r.lost
                ));
            }
        }
        let checks = [
            (s.lost, "lost requests"),
            (
                s.submitted - s.completed.min(s.submitted),
                "submissions without completion",
            ),
            (s.mismatched, "mismatched replies"),
            (s.unexpected, "unexpected replies"),
            (s.check_failures, "acknowledged writes not read back"),
            (s.overdue, "completions later than their bound"),
        ];
        for (n, what) in checks {
            if n > 0 {
                s.failures.push(format!("{n} {what}"));
            }
        }
        if s.surviving_workers == 0 {
            s.failures.push("no worker report".into());
        }
        s.ok = s.failures.is_empty();
        print_summary(s);
        if let Some(path) = &self.args.json {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let text = serde_json::to_string_pretty(&s).expect("summary to json");
            if let Err(e) = std::fs::write(path, text + "\n") {
                eprintln!("vshm-soak: cannot write {}: {e}", path.display());
                return 1;
            }
            println!("json: {}", path.display());
        }
        if !s.ok {
            eprintln!("--- vshmd log (tail) ---");
            let log = self.vshmd.log_text();
            let lines: Vec<&str> = log.lines().collect();
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
        i32::from(!s.ok)
    }
}

fn print_summary(s: &Summary) {
    let row = |k: &str, v: String| println!("  {k:<34} {v}");
    println!("\nvshm-soak summary (seed {})", s.seed);
    row("duration", format!("{:.1} s", s.seconds));
    row(
        "workers (live / started / killed)",
        format!(
            "{} / {} / {}",
            s.workers, s.worker_processes, s.killed_workers
        ),
    );
    row("requests submitted (survivors)", s.submitted.to_string());
    row("requests completed", s.completed.to_string());
    row("  values", s.values.to_string());
    for (k, n) in &s.errors {
        row(&format!("  errors: {k}"), n.to_string());
    }
    row("lost", s.lost.to_string());
    row("max completion time", format!("{} ms", s.max_latency_ms));
    row("error replies inside batches", s.element_errors.to_string());
    row(
        "mismatched / unexpected replies",
        format!("{} / {}", s.mismatched, s.unexpected),
    );
    row("acknowledged writes", s.acked_writes.to_string());
    row("keys read back and checked", s.keys_checked.to_string());
    row(
        "acknowledged writes not read back",
        s.check_failures.to_string(),
    );
    row(
        "duplicate increments (at least once)",
        s.duplicates.to_string(),
    );
    row(
        "client registrations died (restarts)",
        s.client_deaths.to_string(),
    );
    for (k, n) in &s.faults {
        row(&format!("faults: {k}"), n.to_string());
    }
    row(
        "daemon RSS start / end / peak",
        format!(
            "{} / {} / {} kB (idle after exit: {} kB)",
            s.daemon_rss_kb_start, s.daemon_rss_kb_end, s.daemon_rss_kb_peak, s.daemon_rss_kb_idle
        ),
    );
    print_availability(&s.availability);
    for (k, v) in &s.error_samples {
        for m in v {
            println!("  sample {k}: {m}");
        }
    }
    for p in &s.problems {
        println!("  problem: {p}");
    }
    for f in &s.failures {
        println!("  FAILURE: {f}");
    }
    println!("result: {}", if s.ok { "OK (lost = 0)" } else { "FAILED" });
}

fn print_availability(av: &Availability) {
    let ms = |v: Option<u64>| v.map_or("never".to_string(), |v| format!("{v} ms"));
    println!("\n  availability: recovery = injection until every live worker succeeds again");
    println!(
        "  {:<16} {:>5} {:>10} {:>10}  {:<28} {:>6} {:>8} {:>8}",
        "fault", "count", "p50", "max", "bound", "misses", "failed", "timeouts"
    );
    for k in &av.kinds {
        println!(
            "  {:<16} {:>5} {:>10} {:>10}  {:<28} {:>6} {:>8} {:>8}",
            k.kind,
            k.count,
            ms(k.recovery_p50_ms),
            ms(k.recovery_max_ms),
            k.bound,
            k.misses,
            k.failed,
            k.timeouts
        );
    }
    println!(
        "  longest span without a successful request: {} ms (from {:.1} s)",
        av.longest_gap_ms, av.longest_gap_at_s
    );
    println!(
        "  failures outside any fault: {} ({} timeouts)\n",
        av.unattributed_failures, av.unattributed_timeouts
    );
    for m in &av.misses {
        println!("  MISS: {m}");
    }
}
