//! One soak client process (the hidden `vshm-soak worker` subcommand).
//!
//! Protocol with the driver: the worker prints `ready <client id>` once registered, runs its
//! workload until a line `stop` (or EOF) arrives on stdin, then waits for every pending
//! completion (bounded), reads its keys back, prints `report <json>` and exits 0. While it
//! runs it prints `tick <json>` lines ([`super::Tick`]: when requests succeeded and failed)
//! and `died <ms>` when its registration died (then it registers again at once).
//!
//! Two modes: queued (`--inflight N` requests in flight with `submit_queued`/`wait_queued`,
//! the async pattern) and sync (`--sync`: one request at a time, `submit` + `wait` by id, the
//! blocking pattern of the C API's `vshm_call`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vshm_client::client::{ClientOptions, Reply};
use vshm_client::daemon::DaemonClient;
use vshm_protocol::msg::{ArgRef, ArgsRef, ClientError, Completion, ErrorKind, Op, Route, Value};
use vshm_protocol::register::Settings;

use super::{counter_key, group_tag, mono_ms, string_key, Tick, WorkerReport, WINDOW_MS};

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub socket: PathBuf,
    pub id: u64,
    pub seed: u64,
    /// Requests in flight at once (each on its own key group).
    pub inflight: usize,
    /// Key groups owned (>= inflight).
    pub groups: u32,
    /// Submissions per second (pacing; 0 = as fast as completions allow).
    pub rate: u32,
    /// One request at a time, submitted and waited for by id (`inflight` is ignored).
    pub sync: bool,
}

/// Bound for registering with the daemon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack past the client's own wait bound before a completion counts as overdue.
const OVERDUE_SLACK: Duration = Duration::from_secs(5);
/// After `stop`: how long past the last request's bound the worker keeps waiting before it
/// counts what is still pending as lost.
const DRAIN_SLACK: Duration = Duration::from_secs(20);
/// Read-back attempts per key (the cluster has settled by then; a failure is asked again).
const VERIFY_ATTEMPTS: u32 = 40;
/// A `tick` line at most this often.
const TICK_EVERY: Duration = Duration::from_millis(100);
/// Pause between two attempts to register again after the registration died (a daemon
/// restart): short, the availability bound is the restart + 1 s.
const REREGISTER_PAUSE: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Set,
    Get,
    Incr,
    Del,
    Expire,
    Mget,
    /// Pipeline `INCR c; GET c`.
    Pipe,
    /// Transaction `INCR c; INCR c`.
    Multi,
}

const WEIGHTS: [(Kind, u32); 8] = [
    (Kind::Set, 20),
    (Kind::Get, 20),
    (Kind::Incr, 20),
    (Kind::Del, 5),
    (Kind::Expire, 5),
    (Kind::Mget, 10),
    (Kind::Pipe, 10),
    (Kind::Multi, 10),
];

/// The string key's possible contents: `None` = absent, `Some(seq)` = the value of write `seq`.
type StrVal = Option<u64>;

#[derive(Default)]
struct Group {
    busy: bool,
    ctr_submitted: u64,
    /// Largest counter value returned by an acknowledged increment.
    ctr_max: i64,
    /// Last acknowledged string write (`None`: none acknowledged yet, the key is absent).
    str_acked: Option<StrVal>,
    /// String writes whose completion was an error (may have run, possibly late).
    str_uncertain: HashSet<StrVal>,
    /// String writes submitted since the last acknowledged one.
    str_since_ack: Vec<StrVal>,
}

struct Pending {
    group: u32,
    kind: Kind,
    /// The string value written (Set: `Some(seq)`, Del: `None`).
    wrote: StrVal,
    at: Instant,
    /// `at` on the machine-wide clock ([`mono_ms`]).
    at_ms: u64,
}

struct Worker {
    args: WorkerArgs,
    groups: Vec<Group>,
    pending: HashMap<u64, Pending>,
    report: WorkerReport,
    seq: u64,
    /// Bound for one request's completion (client's wait bound + slack).
    overdue_after: Duration,
    /// Availability records not yet printed, and the open window of successes.
    tick: Tick,
    window: Option<(u64, u32, u64)>,
    last_tick: Instant,
}

fn settings(id: u64) -> Settings {
    Settings {
        client_name: Some(format!("vshm-soak-{id}")),
        ..Settings::default()
    }
}

fn connect(args: &WorkerArgs) -> Result<DaemonClient, ClientError> {
    DaemonClient::connect(
        &args.socket,
        &settings(args.id),
        CONNECT_TIMEOUT,
        ClientOptions::default(),
    )
}

fn kind_name(k: ErrorKind) -> String {
    format!("{k:?}")
}

/// Runs the worker; returns the process exit code.
pub fn run(args: WorkerArgs) -> i32 {
    let client = match connect(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vshm-soak worker {}: cannot register: {e}", args.id);
            return 2;
        }
    };
    println!("ready {}", client.client_id());
    let _ = std::io::stdout().flush();

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    match line {
                        Ok(l) if l.trim() == "stop" => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                // Release: pairs with the Acquire load in the main loop below;
                // nothing else is published.
                stop.store(true, Ordering::Release);
            })
            .expect("stdin thread");
    }

    let bound = client.wait_bound(None);
    let mut w = Worker {
        groups: (0..args.groups.max(args.inflight as u32))
            .map(|_| Group::default())
            .collect(),
        pending: HashMap::new(),
        report: WorkerReport {
            id: args.id,
            ..WorkerReport::default()
        },
        seq: 0,
        overdue_after: bound + OVERDUE_SLACK,
        tick: Tick::default(),
        window: None,
        last_tick: Instant::now(),
        args,
    };
    let client = w.load(client, &stop);
    let client = w.drain(client, bound);
    w.flush_tick(true);
    w.verify(&client);
    let json = serde_json::to_string(&w.report).expect("report to json");
    println!("report {json}");
    let _ = std::io::stdout().flush();
    0
}

impl Worker {
    /// The workload, until `stop`.
    fn load(&mut self, mut client: DaemonClient, stop: &AtomicBool) -> DaemonClient {
        let mut rng = StdRng::seed_from_u64(self.args.seed);
        let interval = match self.args.rate {
            0 => Duration::ZERO,
            r => Duration::from_secs_f64(1.0 / f64::from(r)),
        };
        let mut next_at = Instant::now();
        let mut replies = Vec::new();
        // Acquire: pairs with the stdin thread's Release store above.
        while !stop.load(Ordering::Acquire) {
            self.flush_tick(false);
            let now = Instant::now();
            if now.saturating_duration_since(next_at) > Duration::from_secs(1) {
                next_at = now; // do not burst after a stop (SIGSTOP) or a slow phase
            }
            if self.args.sync {
                if now < next_at {
                    std::thread::sleep((next_at - now).min(Duration::from_millis(50)));
                    continue;
                }
                next_at += interval;
                if let Some(id) = self.submit_one(&client, &mut rng) {
                    match client.wait(id, None) {
                        Ok(c) => self.complete(id, c),
                        // The local wait bound passed (the id is abandoned), or the
                        // registration died (below).
                        Err(e) => self.complete(id, Completion::Err(e)),
                    }
                }
                // A dead registration refuses submissions at once: register again.
                if !client.healthy() {
                    let e = client.dead().unwrap_or_else(|| {
                        ClientError::new(ErrorKind::Connection, "registration lost")
                    });
                    client = self.client_died(client, e);
                }
                continue;
            }
            while self.pending.len() < self.args.inflight && Instant::now() >= next_at {
                self.submit_one(&client, &mut rng);
                next_at += interval;
            }
            // Wait for a completion, or until the next submission is due. Never with a
            // deadline already past: wait_queued then returns at once without draining the
            // completion ring.
            let now = Instant::now();
            let until = if self.pending.len() >= self.args.inflight {
                now + Duration::from_millis(50)
            } else {
                next_at.clamp(
                    now + Duration::from_millis(1),
                    now + Duration::from_millis(50),
                )
            };
            match client.wait_queued(until, &mut replies) {
                Ok(()) => self.take(&mut replies),
                Err(e) => client = self.client_died(client, e),
            }
        }
        client
    }

    /// After `stop`: every pending request gets its completion, or is counted lost once the
    /// bound has passed.
    fn drain(&mut self, mut client: DaemonClient, bound: Duration) -> DaemonClient {
        let give_up = Instant::now() + bound + DRAIN_SLACK;
        let mut replies = Vec::new();
        while !self.pending.is_empty() && Instant::now() < give_up {
            let deadline = Instant::now() + Duration::from_millis(100);
            match client.wait_queued(deadline, &mut replies) {
                Ok(()) => self.take(&mut replies),
                Err(e) => client = self.client_died(client, e),
            }
        }
        let mut lost: Vec<(u64, Pending)> = self.pending.drain().collect();
        lost.sort_by_key(|(id, _)| *id);
        for (id, p) in lost {
            self.report.lost += 1;
            self.report.problem(format!(
                "lost: request {id} ({:?} on group {}) pending for {:?}",
                p.kind,
                p.group,
                p.at.elapsed()
            ));
        }
        client
    }

    /// The registration is dead: its queued requests will never complete, and the library
    /// reports that with this error; each pending request completes with it. Then register
    /// again (bounded attempts; the daemon is expected to be up).
    fn client_died(&mut self, client: DaemonClient, e: ClientError) -> DaemonClient {
        self.report.client_deaths += 1;
        self.flush_tick(true);
        println!("died {}", mono_ms());
        let _ = std::io::stdout().flush();
        self.report
            .problem(format!("client died: {e} ({} pending)", self.pending.len()));
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.complete(id, Completion::Err(e.clone()));
        }
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match connect(&self.args) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    if self.report.client_deaths <= 3 {
                        eprintln!("vshm-soak worker {}: re-register: {e}", self.args.id);
                    }
                    std::thread::sleep(REREGISTER_PAUSE);
                }
                Err(e) => {
                    eprintln!("vshm-soak worker {}: cannot re-register: {e}", self.args.id);
                    std::process::exit(3);
                }
            }
        }
    }

    fn take(&mut self, replies: &mut Vec<Reply>) {
        for r in replies.drain(..) {
            let id = r.id();
            let c = r.to_completion();
            drop(r);
            self.complete(id, c);
        }
    }

    /// Submits one request on a free key group (queued, or by id in sync mode); returns its
    /// id if it is pending (not refused at once).
    fn submit_one(&mut self, client: &DaemonClient, rng: &mut StdRng) -> Option<u64> {
        let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random_range(0..total);
        let kind = WEIGHTS
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(k, _)| *k)
            .unwrap_or(Kind::Get);
        let free: Vec<u32> = (0..self.groups.len() as u32)
            .filter(|g| !self.groups[*g as usize].busy)
            .collect();
        let &group = free.get(rng.random_range(0..free.len().max(1)))?;
        let (id, s, c) = (
            self.args.id,
            string_key(self.args.id, group),
            counter_key(self.args.id, group),
        );
        self.seq += 1;
        let value = format!("{}:{}", group_tag(id, group), self.seq);
        let (s, c) = (s.as_bytes(), c.as_bytes());
        let mut wrote: StrVal = None;
        let commands: Vec<Vec<&[u8]>> = match kind {
            Kind::Set => {
                wrote = Some(self.seq);
                vec![vec![b"SET", s, value.as_bytes()]]
            }
            Kind::Get => vec![vec![b"GET", s]],
            Kind::Incr => vec![vec![b"INCR", c]],
            Kind::Del => vec![vec![b"DEL", s]],
            Kind::Expire => vec![vec![b"EXPIRE", s, b"100000"]],
            Kind::Mget => vec![vec![b"MGET", s, c]],
            Kind::Pipe => vec![vec![b"INCR", c], vec![b"GET", c]],
            Kind::Multi => vec![vec![b"INCR", c], vec![b"INCR", c]],
        };
        let refs: Vec<Vec<ArgRef<'_>>> = commands
            .iter()
            .map(|cmd| cmd.iter().map(|a| ArgRef(a)).collect())
            .collect();
        let op = match kind {
            Kind::Pipe | Kind::Multi => Op::Batch {
                atomic: kind == Kind::Multi,
                watch: Vec::new(),
                commands: refs.iter().map(|r| ArgsRef(r)).collect(),
            },
            _ => Op::Command {
                args: ArgsRef(&refs[0]),
            },
        };
        let g = &mut self.groups[group as usize];
        g.busy = true;
        match kind {
            Kind::Set | Kind::Del => g.str_since_ack.push(wrote),
            Kind::Incr | Kind::Pipe => g.ctr_submitted += 1,
            Kind::Multi => g.ctr_submitted += 2,
            _ => {}
        }
        self.report.submitted += 1;
        let at = Instant::now();
        let pending = Pending {
            group,
            kind,
            wrote,
            at,
            at_ms: mono_ms(),
        };
        // Completions are only taken by this thread, after this returns: filing the id
        // afterwards is safe.
        let r = if self.args.sync {
            client.submit_op(&op, &Route::Auto, None, 0)
        } else {
            client.submit_queued(&op, &Route::Auto, None, 0, &mut |_| {})
        };
        match r {
            Ok(rid) => {
                self.pending.insert(rid, pending);
                Some(rid)
            }
            Err(e) => {
                // Refused before it was sent: that is its completion.
                self.pending.insert(0, pending);
                self.complete(0, Completion::Err(e));
                None
            }
        }
    }

    /// Records a completion for the availability ticks.
    fn record(&mut self, sub_ms: u64, c: &Completion) {
        let done = mono_ms();
        let failed = match c {
            Completion::Ok(Value::Array(a)) => a.iter().any(|v| matches!(v, Value::Error(_))),
            Completion::Ok(_) => false,
            Completion::Err(e) => {
                self.tick.fail.push((sub_ms, done, kind_name(e.kind)));
                return;
            }
            Completion::Push(_) => true,
        };
        if failed {
            self.tick.fail.push((sub_ms, done, "BatchElement".into()));
            return;
        }
        let end = (done / WINDOW_MS + 1) * WINDOW_MS;
        match &mut self.window {
            Some((e, n, s)) if *e == end => {
                *n += 1;
                *s = (*s).max(sub_ms);
            }
            w => {
                if let Some(old) = w.take() {
                    self.tick.ok.push(old);
                }
                *w = Some((end, 1, sub_ms));
            }
        }
    }

    /// Prints a `tick` line if `TICK_EVERY` has passed (or `now`) and something completed.
    fn flush_tick(&mut self, now: bool) {
        if !now && self.last_tick.elapsed() < TICK_EVERY {
            return;
        }
        self.last_tick = Instant::now();
        // The open window is complete once its end has passed.
        let closed = self
            .window
            .is_some_and(|(end, _, _)| now || end <= mono_ms());
        if closed {
            self.tick.ok.extend(self.window.take());
        }
        if self.tick.ok.is_empty() && self.tick.fail.is_empty() {
            return;
        }
        let t = std::mem::take(&mut self.tick);
        println!("tick {}", serde_json::to_string(&t).expect("tick to json"));
        let _ = std::io::stdout().flush();
    }

    fn complete(&mut self, id: u64, c: Completion) {
        let Some(p) = self.pending.remove(&id) else {
            self.report.unexpected += 1;
            self.report
                .problem(format!("completion for unknown request {id}: {c:?}"));
            return;
        };
        self.report.completed += 1;
        self.record(p.at_ms, &c);
        let took = p.at.elapsed();
        self.report.max_latency_ms = self.report.max_latency_ms.max(took.as_millis() as u64);
        if took > self.overdue_after {
            self.report.overdue += 1;
            self.report.problem(format!(
                "overdue: request {id} ({:?}) completed after {took:?}",
                p.kind
            ));
        }
        let tag = group_tag(self.args.id, p.group);
        let g = &mut self.groups[p.group as usize];
        g.busy = false;
        let v = match c {
            Completion::Ok(v) => {
                self.report.values += 1;
                v
            }
            Completion::Err(e) => {
                self.report.error(&kind_name(e.kind), &e.message);
                if matches!(p.kind, Kind::Set | Kind::Del) {
                    g.str_uncertain.insert(p.wrote);
                }
                return;
            }
            Completion::Push(v) => {
                self.report.unexpected += 1;
                self.report.problem(format!("push as a completion: {v:?}"));
                return;
            }
        };
        let bad = |what: &str, r: &mut WorkerReport| {
            r.unexpected += 1;
            r.problem(format!("{:?} on {tag}: unexpected {what}: {v:?}", p.kind));
        };
        match (p.kind, &v) {
            (Kind::Set, Value::Simple(ok)) if ok == b"OK" => {
                str_acked(g, p.wrote);
                self.report.acked_writes += 1;
            }
            (Kind::Del, Value::Int(_)) => {
                str_acked(g, None);
                self.report.acked_writes += 1;
            }
            (Kind::Get, _) => check_str(&v, &tag, &mut self.report),
            (Kind::Incr, Value::Int(n)) => {
                g.ctr_max = g.ctr_max.max(*n);
                self.report.acked_writes += 1;
            }
            (Kind::Expire, Value::Int(_)) => {}
            (Kind::Mget, Value::Array(a)) if a.len() == 2 => {
                check_str(&a[0], &tag, &mut self.report);
                check_ctr(&a[1], &tag, &mut self.report);
            }
            (Kind::Pipe, Value::Array(a)) if a.len() == 2 => {
                match &a[0] {
                    Value::Int(n) => {
                        g.ctr_max = g.ctr_max.max(*n);
                        self.report.acked_writes += 1;
                    }
                    Value::Error(_) => self.report.element_errors += 1,
                    _ => bad("pipeline INCR reply", &mut self.report),
                }
                check_ctr(&a[1], &tag, &mut self.report);
            }
            (Kind::Multi, Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
                (Value::Int(x), Value::Int(y)) if *y == *x + 1 => {
                    g.ctr_max = g.ctr_max.max(*y);
                    self.report.acked_writes += 1;
                }
                (Value::Error(_), _) | (_, Value::Error(_)) => self.report.element_errors += 1,
                _ => bad("transaction reply", &mut self.report),
            },
            _ => bad("reply", &mut self.report),
        }
    }

    /// Reads every key back and checks it against the acknowledged writes.
    fn verify(&mut self, client: &DaemonClient) {
        for group in 0..self.groups.len() as u32 {
            let tag = group_tag(self.args.id, group);
            let s = self.read_back(client, &string_key(self.args.id, group));
            let c = self.read_back(client, &counter_key(self.args.id, group));
            let g = &self.groups[group as usize];
            self.report.keys_checked += 2;
            // String: last acknowledged, submitted after it, or uncertain.
            let got: Option<StrVal> = match &s {
                Some(Value::Nil) => Some(None),
                Some(Value::Bulk(b)) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| t.strip_prefix(&format!("{tag}:")))
                    .and_then(|n| n.parse().ok())
                    .map(Some),
                _ => None,
            };
            let ok = match got {
                None => false,
                Some(v) => {
                    g.str_acked.unwrap_or(None) == v
                        || g.str_since_ack.contains(&v)
                        || g.str_uncertain.contains(&v)
                }
            };
            if !ok {
                self.report.check_failures += 1;
                self.report.problem(format!(
                    "{tag}: string reads {s:?}; last acked {:?}, since {:?}, uncertain {:?}",
                    g.str_acked,
                    g.str_since_ack,
                    g.str_uncertain.len()
                ));
            }
            // Counter: >= largest acknowledged value; above the submissions = duplicates.
            let n: Option<i64> = match &c {
                Some(Value::Nil) => Some(0),
                Some(Value::Bulk(b)) => std::str::from_utf8(b).ok().and_then(|t| t.parse().ok()),
                _ => None,
            };
            match n {
                Some(n) if n >= g.ctr_max => {
                    let extra = n - g.ctr_submitted as i64;
                    if extra > 0 {
                        self.report.duplicates += extra as u64;
                    }
                }
                _ => {
                    self.report.check_failures += 1;
                    self.report.problem(format!(
                        "{tag}: counter reads {c:?}; acked up to {}, submitted {}",
                        g.ctr_max, g.ctr_submitted
                    ));
                }
            }
        }
    }

    /// GET with bounded retries (only reads are asked again).
    fn read_back(&mut self, client: &DaemonClient, key: &str) -> Option<Value> {
        let mut last = None;
        for _ in 0..VERIFY_ATTEMPTS {
            match client.call(&[b"GET", key.as_bytes()]) {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.report.verify_retries += 1;
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        self.report
            .problem(format!("read-back of {key} failed: {last:?}"));
        None
    }
}

fn str_acked(g: &mut Group, v: StrVal) {
    g.str_acked = Some(v);
    g.str_since_ack.clear();
}

/// A string value read must be nil or one of this group's values.
fn check_str(v: &Value, tag: &str, r: &mut WorkerReport) {
    let ok = match v {
        Value::Nil => true,
        Value::Bulk(b) => b.starts_with(format!("{tag}:").as_bytes()),
        Value::Error(_) => {
            r.element_errors += 1;
            true
        }
        _ => false,
    };
    if !ok {
        r.mismatched += 1;
        r.problem(format!("{tag}: string read {v:?} is not this key's"));
    }
}

/// A counter read must be nil or a number.
fn check_ctr(v: &Value, tag: &str, r: &mut WorkerReport) {
    let ok = match v {
        Value::Nil => true,
        Value::Bulk(b) => std::str::from_utf8(b).is_ok_and(|t| t.parse::<i64>().is_ok()),
        Value::Error(_) => {
            r.element_errors += 1;
            true
        }
        _ => false,
    };
    if !ok {
        r.mismatched += 1;
        r.problem(format!("{tag}: counter read {v:?} is not a counter"));
    }
}
