//! Cross-process echo over a real memfd segment.
//!
//! The test (the "client") creates a sealed memfd segment and spawns this
//! very test binary again, selecting the child role with an environment
//! variable; the memfd is inherited at a known descriptor number. The child
//! plays the core: it attaches (validating the header and the seals),
//! receives every request on the submission ring and echoes its bytes back
//! on the completion ring with the same id, waking the client through the
//! shared futex words.
//!
//! The client sends 200,000 requests of random sizes, from empty to several
//! times the ring size (fragmented), from one thread while another thread
//! reads the completions, and checks that every id gets exactly one
//! completion with identical bytes. A third of the traffic is real rkyv
//! `Request`s, which the child decodes and compares with what the client
//! must have sent.
//!
//! Every wait is bounded; on any failure the child is killed.
//! Reproduce a run with `VSHM_XPROC_SEED=<seed printed on failure>`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use vshm_client::endpoint::{Dir, EndpointError, PeerWake, Receiver, Sender};
use vshm_protocol::layout::{state, Layout};
use vshm_protocol::msg::{decode_request, encode_request, Op, Request, Route};
use vshm_protocol::ring::kind;
use vshm_protocol::segment::Segment;

const CHILD_FD_ENV: &str = "VSHM_XPROC_CHILD_FD";
const SEED_ENV: &str = "VSHM_XPROC_SEED";
const COUNT_ENV: &str = "VSHM_XPROC_COUNT";
/// Fault injection for the harness's own tests: `exit@ID` (the child dies
/// on receiving ID) or `corrupt@ID` (it echoes ID with one byte flipped).
const FAULT_ENV: &str = "VSHM_XPROC_FAULT";
/// The descriptor number the child finds the memfd at.
const CHILD_FD: i32 = 100;
/// Requests sent by the client.
const N: u64 = 200_000;
/// The last request: tells the child to report and exit.
const SHUTDOWN: u64 = u64::MAX;
/// The whole test must end within this (it takes seconds when healthy).
const TEST_DEADLINE: Duration = Duration::from_secs(300);
/// Longest time without any progress before the test gives up.
const STALL: Duration = Duration::from_secs(60);
const RING: u64 = 64 * 1024;

fn is_request(id: u64) -> bool {
    id.is_multiple_of(3)
}

fn rng_for(seed: u64, id: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Size of request `id`'s payload: mostly small, some around the record
/// limit (single record vs. two fragments), a few far beyond the ring size.
fn random_len(rng: &mut SmallRng, max_record: usize) -> usize {
    match rng.random_range(0..2000u32) {
        0 => rng.random_range(200 * 1024..=1024 * 1024),
        1..=40 => rng.random_range(max_record - 40..=max_record + 40),
        41..=80 => rng.random_range(0..=RING as usize),
        81..=200 => 0,
        _ => rng.random_range(1..=512),
    }
}

fn random_bytes(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// The `Request` the client sends for a request id (deterministic, so the
/// child can check what it decoded).
fn make_request(seed: u64, id: u64, max_record: usize) -> Request {
    let mut rng = rng_for(seed, id);
    let nargs = rng.random_range(1..=8);
    let mut args: Vec<Vec<u8>> = (0..nargs)
        .map(|_| {
            let len = rng.random_range(0..=64);
            random_bytes(&mut rng, len)
        })
        .collect();
    // Some requests carry a large argument (a fragmented request).
    if rng.random_ratio(1, 400) {
        let len = random_len(&mut rng, max_record).max(max_record);
        args.push(random_bytes(&mut rng, len));
    }
    let route = match rng.random_range(0..5u32) {
        0 => Route::Auto,
        1 => Route::SlotKey {
            key: args[0].clone(),
            replica: rng.random(),
        },
        2 => Route::SlotId {
            slot: rng.random_range(0..16384),
            replica: rng.random(),
        },
        3 => Route::Address {
            host: "127.0.0.1".into(),
            port: rng.random(),
        },
        _ => Route::AllPrimaries,
    };
    let op = if rng.random_ratio(1, 5) {
        Op::Batch {
            atomic: rng.random(),
            watch: vec![args[0].clone()],
            commands: vec![args.clone(), args],
        }
    } else {
        Op::Command { args }
    };
    Request {
        id,
        timeout_ms: rng.random(),
        flags: rng.random(),
        route,
        op,
    }
}

/// The bytes the client sends for request `id`.
fn payload(seed: u64, id: u64, max_record: usize) -> Vec<u8> {
    if is_request(id) {
        return encode_request(&make_request(seed, id, max_record)).to_vec();
    }
    let mut rng = rng_for(seed, id);
    let len = random_len(&mut rng, max_record);
    random_bytes(&mut rng, len)
}

// ---------------------------------------------------------------------------
// The child (the "core").

/// Runs as a no-op test in a normal run; as the echo peer in the spawned
/// child.
#[test]
fn child_entry() {
    let Ok(fd) = std::env::var(CHILD_FD_ENV) else {
        return;
    };
    let fd: i32 = fd.parse().expect("fd number");
    let seed: u64 = std::env::var(SEED_ENV)
        .expect("seed")
        .parse()
        .expect("seed number");
    let count: u64 = std::env::var(COUNT_ENV)
        .expect("count")
        .parse()
        .expect("count number");
    let fault = std::env::var(FAULT_ENV).ok();
    let fault = fault.as_deref().and_then(|f| f.split_once('@'));
    let fault = fault.map(|(what, id)| (what.to_string(), id.parse::<u64>().expect("fault id")));
    // SAFETY: the parent left the memfd open at this number for us (and
    // nothing else in this process owns it).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let seg = Arc::new(Segment::attach(fd).expect("attach"));
    let max_record = seg.layout().max_record as usize;
    let mut rx = Receiver::new(seg.clone(), Dir::Sq, PeerWake::Futex);
    let mut tx = Sender::new(seg.clone(), Dir::Cq, PeerWake::Futex);
    let mut decoded = 0u64;
    let mut next = 1u64;
    loop {
        let m = rx.recv(Instant::now() + STALL).expect("child recv");
        if m.id == SHUTDOWN {
            break;
        }
        let fail = |tx: &mut Sender, what: String| -> ! {
            // Tell the client at once (kind PUSH marks a child-side failure)
            // instead of letting it wait out its deadline.
            let _ = tx.send(
                m.id,
                kind::PUSH,
                what.as_bytes(),
                Instant::now() + Duration::from_secs(5),
            );
            panic!("{what}");
        };
        if m.id != next || m.kind != kind::MSG {
            fail(
                &mut tx,
                format!("child: got id {} kind {}, expected id {next}", m.id, m.kind),
            );
        }
        next += 1;
        if is_request(m.id) {
            match decode_request(&m.bytes) {
                Ok(r) if r == make_request(seed, m.id, max_record) => decoded += 1,
                Ok(r) => fail(
                    &mut tx,
                    format!(
                        "child: request {} decoded to something else: id {}",
                        m.id, r.id
                    ),
                ),
                Err(e) => fail(
                    &mut tx,
                    format!("child: request {} does not decode: {e}", m.id),
                ),
            }
        }
        match &fault {
            Some((what, id)) if *id == m.id && what == "exit" => std::process::exit(3),
            Some((what, id)) if *id == m.id && what == "corrupt" => {
                // Flip a byte; an empty message (the seed decides the
                // sizes) gets one instead, so the echo always differs.
                let mut b = m.bytes.to_vec();
                match b.first_mut() {
                    Some(x) => *x ^= 1,
                    None => b.push(1),
                }
                tx.send(m.id, kind::MSG, &b, Instant::now() + STALL)
                    .expect("child send");
                continue;
            }
            _ => {}
        }
        tx.send(m.id, kind::MSG, &m.bytes, Instant::now() + STALL)
            .expect("child send");
    }
    assert_eq!(
        next,
        count + 1,
        "child: shutdown before all requests arrived"
    );
    tx.send(
        SHUTDOWN,
        kind::MSG,
        &decoded.to_le_bytes(),
        Instant::now() + STALL,
    )
    .expect("child send report");
}

// ---------------------------------------------------------------------------
// The client.

/// Kills the child unless it was reaped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        let st = self.0.as_mut()?.try_wait().expect("try_wait")?;
        self.0 = None;
        Some(st)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_child(seg: &Segment, seed: u64, n: u64, fault: Option<&str>) -> Child {
    let fd = seg.fd().expect("memfd segment").as_raw_fd();
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_FD_ENV, CHILD_FD.to_string())
        .env(SEED_ENV, seed.to_string())
        .env(COUNT_ENV, n.to_string())
        .env_remove(FAULT_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(f) = fault {
        cmd.env(FAULT_ENV, f);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (dup2, prctl) on integers.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 clears FD_CLOEXEC on the new descriptor, so the memfd
            // (created close-on-exec) survives the exec at CHILD_FD.
            if libc::dup2(fd, CHILD_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Never outlive the test.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().expect("spawn child")
}

#[derive(Default)]
struct Progress {
    received: AtomicU64,
    abort: AtomicBool,
}

fn sender_thread(seg: Arc<Segment>, seed: u64, n: u64, p: &Progress) -> Result<(), String> {
    let max_record = seg.layout().max_record as usize;
    let mut tx = Sender::new(seg, Dir::Sq, PeerWake::Futex);
    for id in (1..=n).chain(std::iter::once(SHUTDOWN)) {
        let data = if id == SHUTDOWN {
            Vec::new()
        } else {
            payload(seed, id, max_record)
        };
        let mut last_seen = p.received.load(Ordering::Relaxed);
        let mut last_progress = Instant::now();
        loop {
            if p.abort.load(Ordering::Relaxed) {
                return Err(format!("aborted while sending {id}"));
            }
            // A short deadline: a send that has not started can simply be
            // retried (one that started is finished by `send` itself).
            match tx.send(
                id,
                kind::MSG,
                &data,
                Instant::now() + Duration::from_millis(500),
            ) {
                Ok(()) => break,
                Err(EndpointError::Timeout) => {
                    let r = p.received.load(Ordering::Relaxed);
                    if r != last_seen {
                        last_seen = r;
                        last_progress = Instant::now();
                    } else if last_progress.elapsed() > STALL {
                        return Err(format!("no progress for {STALL:?} while sending {id}"));
                    }
                }
                Err(e) => return Err(format!("sending {id} ({} bytes): {e}", data.len())),
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Report {
    /// rkyv requests the child decoded and checked.
    decoded: u64,
    /// Completions larger than one record (fragmented).
    fragmented: u64,
}

fn receiver_thread(seg: Arc<Segment>, seed: u64, n: u64, p: &Progress) -> Result<Report, String> {
    let max_record = seg.layout().max_record as usize;
    let mut rx = Receiver::new(seg, Dir::Cq, PeerWake::Futex);
    let mut seen = vec![false; n as usize + 1];
    let mut got = 0u64;
    let mut fragmented = 0u64;
    let mut last_progress = Instant::now();
    loop {
        if p.abort.load(Ordering::Relaxed) {
            return Err(format!("aborted after {got} completions"));
        }
        let m = match rx.recv(Instant::now() + Duration::from_millis(500)) {
            Ok(m) => m,
            Err(EndpointError::Timeout) if last_progress.elapsed() < STALL => continue,
            Err(e) => return Err(format!("receiving after {got} completions: {e}")),
        };
        last_progress = Instant::now();
        if m.kind == kind::PUSH {
            return Err(String::from_utf8_lossy(&m.bytes).into_owned());
        }
        if m.kind != kind::MSG {
            return Err(format!("completion {} has kind {}", m.id, m.kind));
        }
        if m.id == SHUTDOWN {
            if got != n {
                return Err(format!(
                    "child reported before all completions: {got} of {n}"
                ));
            }
            let decoded = u64::from_le_bytes(
                m.bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| "bad report".to_string())?,
            );
            // The report is the child's last message.
            match rx.try_recv() {
                Ok(None) => {}
                other => return Err(format!("after the report: {other:?}")),
            }
            return Ok(Report {
                decoded,
                fragmented,
            });
        }
        if m.id == 0 || m.id > n {
            return Err(format!("completion for unknown id {}", m.id));
        }
        if std::mem::replace(&mut seen[m.id as usize], true) {
            return Err(format!("second completion for id {}", m.id));
        }
        let want = payload(seed, m.id, max_record);
        if m.bytes.as_slice() != want.as_slice() {
            return Err(format!(
                "completion {} differs: {} bytes, expected {}",
                m.id,
                m.bytes.len(),
                want.len()
            ));
        }
        fragmented += u64::from(want.len() > max_record);
        got += 1;
        p.received.store(got, Ordering::Relaxed);
    }
}

/// Run the echo with `n` requests. Every failure (a wrong, missing or extra
/// completion, a dead or failing child, a stall, the overall deadline) is an
/// `Err`, never a hang; the child is killed unless it exited.
fn run_echo(seed: u64, n: u64, fault: Option<&str>) -> Result<Report, String> {
    let start = Instant::now();
    let layout = Layout::new(RING, RING, 0).map_err(|e| e.to_string())?;
    let seg = Arc::new(Segment::create_memfd(layout, c"vshm-test").map_err(|e| e.to_string())?);
    let mut child = ChildGuard(Some(spawn_child(&seg, seed, n, fault)));
    let p = Progress::default();
    let mut child_status = None;
    let (sent, received) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let r = sender_thread(seg.clone(), seed, n, &p);
            p.abort.fetch_or(r.is_err(), Ordering::Relaxed);
            r
        });
        let receiver = s.spawn(|| {
            let r = receiver_thread(seg.clone(), seed, n, &p);
            p.abort.fetch_or(r.is_err(), Ordering::Relaxed);
            r
        });
        // Watch the child and the clock while the workers run.
        while !(sender.is_finished() && receiver.is_finished()) {
            if child_status.is_none() {
                child_status = child.try_wait();
                if child_status.is_some_and(|st| !st.success()) {
                    p.abort.store(true, Ordering::Relaxed);
                }
            }
            if start.elapsed() > TEST_DEADLINE {
                p.abort.store(true, Ordering::Relaxed);
            }
            if p.abort.load(Ordering::Relaxed) {
                // Wake every sleeper at once.
                seg.set_state(state::CLOSED);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (
            sender
                .join()
                .map_err(|_| "sender thread panicked".to_string()),
            receiver
                .join()
                .map_err(|_| "receiver thread panicked".to_string()),
        )
    });
    // The child exits right after its report; give it a bounded moment.
    let reap_deadline = Instant::now() + Duration::from_secs(10);
    while child_status.is_none() && Instant::now() < reap_deadline {
        child_status = child.try_wait();
        std::thread::sleep(Duration::from_millis(10));
    }
    // Report every failure seen (the first cause and its consequences).
    let mut errors = Vec::new();
    match child_status {
        Some(st) if st.success() => {}
        Some(st) => errors.push(format!("child failed: {st}")),
        None => errors.push("child did not exit".to_string()),
    }
    if let Err(e) = sent.and_then(|r| r) {
        errors.push(format!("sender: {e}"));
    }
    match received.and_then(|r| r) {
        Ok(r) if errors.is_empty() => Ok(r),
        Ok(_) => Err(errors.join("; ")),
        Err(e) => {
            errors.insert(0, format!("receiver: {e}"));
            Err(errors.join("; "))
        }
    }
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s.parse().expect("seed"),
        Err(_) => rand::random(),
    }
}

#[test]
fn echo_200k_requests_across_processes() {
    let seed = seed();
    let start = Instant::now();
    let r =
        run_echo(seed, N, None).unwrap_or_else(|e| panic!("seed {seed} ({SEED_ENV}={seed}): {e}"));
    let expected_requests = (1..=N).filter(|&id| is_request(id)).count() as u64;
    assert_eq!(
        r.decoded, expected_requests,
        "child decoded every rkyv request"
    );
    assert!(r.fragmented > 0, "some completions were fragmented");
    println!(
        "seed {seed}: {N} requests echoed across processes in {:.2?} ({} rkyv requests, {} fragmented completions)",
        start.elapsed(),
        r.decoded,
        r.fragmented
    );
}

/// The harness itself fails (promptly, not at a deadline) when the child
/// dies mid-stream or echoes a wrong byte.
#[test]
fn harness_reports_child_failures() {
    let seed = seed();
    let e = run_echo(seed, 20_000, Some("exit@5000")).expect_err("a dead child must fail the run");
    assert!(e.contains("child failed"), "{e}");
    let e = run_echo(seed, 20_000, Some("corrupt@7001"))
        .expect_err("a corrupted echo must fail the run");
    assert!(e.contains("completion 7001 differs"), "{e}");
}
