//! `ipc`: round-trip latency between two processes.
//!
//! The parent spawns a peer (this binary, hidden `ipc-peer` subcommand)
//! that echoes every message:
//!
//! * `ring`: the shipped blocking endpoints (`endpoint::{Sender,
//!   Receiver}`) on a memfd segment, `WaitStrategy::DEFAULT` on both sides
//!   (spin, then yield, then park on the futex);
//! * `ring-spin`: the same with `WaitStrategy::SPIN` on both sides;
//! * `ring-park`: the same with `WaitStrategy::PARK` on both sides;
//! * `cacheline-floor`: a bare cache-line ping-pong on one `AtomicU64` in a
//!   shared mapping: the physical floor for any shared-memory protocol;
//! * `uds`: a `SOCK_STREAM` socketpair ping-pong with blocking reads.
//!
//! The variants run interleaved in rounds (each round spawns a fresh peer
//! per variant, warms up, then measures its share of the round trips), so
//! that a change of machine conditions mid-run (other load, the hypervisor
//! moving the vCPUs) hits every variant alike and the ratios stay fair.
//!
//! `--diag` adds variants that isolate where the ring's time goes (printed,
//! never written to the JSON). They drive `ring::{Producer, Consumer}`
//! directly, without the endpoint layer:
//!
//! * `raw-ring`: spin on `peek`, copy into a reused buffer (no `Arc`
//!   clones, no allocation, no clock reads while waiting);
//! * `raw+alloc`: plus one heap buffer per received message on both sides
//!   (what `frame::Reassembler` allocates);
//! * `raw+clock`: plus one `Instant::now()` at the start of every wait on
//!   both sides (what `endpoint::wait_until` reads);
//! * `raw-park`: park on the futex at once whenever the ring is empty, on
//!   both sides (every message is a futex wake-up);
//! * `cacheline-fence`: the floor with a SeqCst fence after each store
//!   (what `Producer::publish` does);
//!
//! and endpoint variants with other wait strategies (the `strategy` field
//! is public): `ring-noyield` (DEFAULT without its yield phase) and
//! `ring-spin50us` (spin 50 µs, then park); plus in-process micro-costs
//! of the endpoint layer's operations.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{fence, AtomicU64, Ordering};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use memmap2::{MmapOptions, MmapRaw};
use vshm_client::endpoint::{Dir, EndpointError, PeerWake, Receiver, Sender, WaitStrategy};
use vshm_protocol::frame::Message;
use vshm_protocol::layout::{state, Layout};
use vshm_protocol::ring::{kind, Consumer, Producer, Record, RecordHeader, ReserveError};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, Idle, Side, Waiter};

use crate::child::{self, Peer};
use crate::plot::Metric;
use crate::report::{self, Row};
use crate::BoxResult;

/// Round trips for modes where both sides spin.
const N_SPIN: u64 = 200_000;
/// Round trips for modes that sleep in the kernel.
const N_SLOW: u64 = 20_000;
/// Bound on one round trip (and on the peer's start-up).
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that hears nothing for this long gives up.
const PEER_IDLE: Duration = Duration::from_secs(30);
/// Bound on a peer's exit once told to stop.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest single futex sleep (a closed segment is noticed within it).
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// The ring segment: 64 KiB each way.
const RING_BYTES: u64 = 64 << 10;
/// Written to the floor's word to stop the peer.
const STOP: u64 = u64::MAX;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// `--quick`: 10x fewer round trips; `--json FILE`, `--plot FILE.svg`.
    #[command(flatten)]
    pub common: report::CommonArgs,
    /// Interleave the variants over this many rounds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub rounds: u64,
    /// Pin this process to CPU 0 and the peer to CPU 1 (default: let the
    /// scheduler place them).
    #[arg(long)]
    pub pin: bool,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Run only these variants (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also run the diagnostic variants and the in-process micro-costs
    /// (printed only, never in the JSON).
    #[arg(long)]
    pub diag: bool,
}

impl Default for Args {
    /// What the command line gives without options.
    fn default() -> Args {
        Args {
            common: report::CommonArgs::default(),
            rounds: 10,
            pin: false,
            payload: 100,
            only: Vec::new(),
            diag: false,
        }
    }
}

/// What the hidden peer subcommand does.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMode {
    Ring,
    RingSpin,
    RingPark,
    Cacheline,
    Uds,
    RingNoyield,
    RingSpin50us,
    RawRing,
    RawAlloc,
    RawClock,
    RawPark,
    CachelineFence,
}

#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// Inherited descriptor (segment memfd, floor memfd or socket).
    #[arg(long)]
    fd: i32,
    /// Pid of the spawning process (the peer exits if it is gone).
    #[arg(long)]
    parent: u32,
    #[arg(long, value_enum)]
    mode: PeerMode,
    /// Pin the peer to this CPU.
    #[arg(long)]
    pin: Option<usize>,
}

struct Variant {
    name: &'static str,
    mode: PeerMode,
    /// Sleeps in the kernel: fewer round trips.
    slow: bool,
    /// Diagnostic only: printed, never in the JSON.
    diag: bool,
}

const fn variant(name: &'static str, mode: PeerMode, slow: bool, diag: bool) -> Variant {
    Variant {
        name,
        mode,
        slow,
        diag,
    }
}

const VARIANTS: &[Variant] = &[
    variant("ring", PeerMode::Ring, false, false),
    variant("ring-spin", PeerMode::RingSpin, false, false),
    variant("ring-park", PeerMode::RingPark, true, false),
    variant("cacheline-floor", PeerMode::Cacheline, false, false),
    variant("uds", PeerMode::Uds, true, false),
    variant("raw-ring", PeerMode::RawRing, false, true),
    variant("raw+alloc", PeerMode::RawAlloc, false, true),
    variant("raw+clock", PeerMode::RawClock, false, true),
    variant("raw-park", PeerMode::RawPark, true, true),
    variant("ring-noyield", PeerMode::RingNoyield, false, true),
    variant("ring-spin50us", PeerMode::RingSpin50us, false, true),
    variant("cacheline-fence", PeerMode::CachelineFence, false, true),
];

fn strategy(mode: PeerMode) -> WaitStrategy {
    match mode {
        PeerMode::RingSpin => WaitStrategy::SPIN,
        PeerMode::RingPark => WaitStrategy::PARK,
        // DEFAULT without its yield phase.
        PeerMode::RingNoyield => WaitStrategy {
            yield_for: Duration::ZERO,
            ..WaitStrategy::DEFAULT
        },
        // A spin budget longer than a futex wake-up on this machine.
        PeerMode::RingSpin50us => WaitStrategy {
            spin: Duration::from_micros(50),
            yield_for: Duration::ZERO,
            park: true,
            adaptive: false,
        },
        _ => WaitStrategy::DEFAULT,
    }
}

/// Settings of one measured chunk.
struct Chunk<'a> {
    n: u64,
    warm: u64,
    payload: &'a [u8],
    pin: bool,
}

impl Chunk<'_> {
    fn peer_args(&self, mode: PeerMode) -> Vec<String> {
        let mut v = vec![
            "--mode".to_owned(),
            mode.to_possible_value()
                .expect("no skipped variants")
                .get_name()
                .to_owned(),
        ];
        if self.pin {
            v.extend(["--pin".to_owned(), "1".to_owned()]);
        }
        v
    }
}

/// What one chunk measured.
struct Sample {
    h: Histogram<u64>,
    elapsed: Duration,
}

pub fn run(args: Args) -> BoxResult<Vec<Row>> {
    for name in &args.only {
        if !VARIANTS.iter().any(|v| v.name == name) {
            let known: Vec<_> = VARIANTS.iter().map(|v| v.name).collect();
            return Err(format!("unknown variant `{name}` (known: {})", known.join(", ")).into());
        }
    }
    if args.payload == 0
        || args.payload as u64 > vshm_protocol::layout::default_max_record(RING_BYTES)
    {
        return Err("--payload must be between 1 and one ring record".into());
    }
    if args.pin {
        child::pin_to_cpu(0)?;
    }
    let selected: Vec<&Variant> = VARIANTS
        .iter()
        .filter(|v| {
            if args.only.is_empty() {
                !v.diag || args.diag
            } else {
                args.only.iter().any(|o| o == v.name)
            }
        })
        .collect();
    let div = if args.common.quick { 10 } else { 1 };
    let total = |v: &Variant| (if v.slow { N_SLOW } else { N_SPIN }) / div;
    let rounds = args.rounds.min(N_SLOW / div);
    let payload: Vec<u8> = (0..args.payload).map(|i| i as u8).collect();

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "ipc: round trips between two processes, {} B payload, {rounds} interleaved rounds; {cpus} CPUs, {}; \
         load average {}",
        args.payload,
        if args.pin { "pinned to CPUs 0 and 1" } else { "not pinned" },
        report::loadavg()
    );
    if cpus <= 2 {
        println!(
            "note: {cpus} CPUs: the spinning variants (ring, ring-spin, cacheline-floor) need both cores, one per \
             process; any other load on the machine preempts a spinner and inflates their tails."
        );
    }
    if !args.pin {
        println!(
            "note: not pinned: after a futex wake-up the scheduler may place the woken process on its waker's CPU, \
             where every spin phase is pure delay until the spinner gives the CPU up; compare with --pin."
        );
    }
    println!(
        "Instant::now() costs ~{:.0} ns here; every sample (floor included) brackets one round trip with two reads.",
        clock_cost_ns()
    );

    let mut acc: Vec<Option<Sample>> = selected.iter().map(|_| None).collect();
    for round in 0..rounds {
        let mut line = format!("  round {}/{rounds} p50 ns:", round + 1);
        for (v, slot) in selected.iter().zip(acc.iter_mut()) {
            // Spread the remainder over the first rounds.
            let n = total(v) / rounds + u64::from(round < total(v) % rounds);
            let chunk = Chunk {
                n,
                warm: (n / 10).max(100),
                payload: &payload,
                pin: args.pin,
            };
            let s = run_chunk(&chunk, v.mode).map_err(|e| format!("{}: {e}", v.name))?;
            line += &format!(" {} {}", v.name, s.h.value_at_quantile(0.5));
            match slot {
                None => *slot = Some(s),
                Some(a) => {
                    a.h.add(&s.h)
                        .map_err(|e| format!("merging histograms: {e:?}"))?;
                    a.elapsed += s.elapsed;
                }
            }
        }
        // Per-round medians show regime changes the aggregate hides.
        println!("{line}");
    }

    let rows: Vec<(bool, Row)> = selected
        .iter()
        .zip(acc)
        .map(|(v, s)| {
            let s = s.expect("at least one round");
            (v.diag, Row::new(v.name, &s.h, s.h.len(), s.elapsed))
        })
        .collect();
    let all: Vec<Row> = rows.iter().map(|(_, r)| r.clone()).collect();
    println!();
    report::print_table("ipc round-trip latency (ns)", &all);
    println!();
    print_ratios(&all);
    println!("load average after the run: {}", report::loadavg());
    if args.diag {
        println!();
        micro_costs();
    }

    let main: Vec<Row> = rows
        .into_iter()
        .filter(|(d, _)| !d)
        .map(|(_, r)| r)
        .collect();
    args.common.write(
        "ipc",
        &format!("ipc round trip, {} B", args.payload),
        &main,
        &[Metric::P50, Metric::P99],
    )?;
    Ok(main)
}

fn run_chunk(c: &Chunk<'_>, mode: PeerMode) -> BoxResult<Sample> {
    match mode {
        PeerMode::Ring
        | PeerMode::RingSpin
        | PeerMode::RingPark
        | PeerMode::RingNoyield
        | PeerMode::RingSpin50us => run_ring(c, mode),
        PeerMode::RawRing | PeerMode::RawAlloc | PeerMode::RawClock | PeerMode::RawPark => {
            run_raw(c, mode)
        }
        PeerMode::Cacheline | PeerMode::CachelineFence => run_cacheline(c, mode),
        PeerMode::Uds => run_uds(c),
    }
}

fn print_ratios(rows: &[Row]) {
    let get = |n| report::find(rows, n);
    let line =
        |label: &str, a: Option<&Row>, b: Option<&Row>, goal: &str, ok: Option<fn(f64) -> bool>| {
            if let (Some(a), Some(b)) = (a, b) {
                let p50 = a.p50_ns as f64 / b.p50_ns.max(1) as f64;
                let p99 = a.p99_ns as f64 / b.p99_ns.max(1) as f64;
                let verdict = match ok {
                    Some(f) if f(p50) => "met (p50)",
                    Some(_) => "NOT met (p50)",
                    None => "",
                };
                println!("{label:<28} p50 {p50:>7.2}x  p99 {p99:>7.2}x   {goal:<30} {verdict}");
            }
        };
    line(
        "ring / cacheline-floor",
        get("ring"),
        get("cacheline-floor"),
        "goal <= 3x (both sides active)",
        Some(|r| r <= 3.0),
    );
    line(
        "ring-spin / cacheline-floor",
        get("ring-spin"),
        get("cacheline-floor"),
        "",
        None,
    );
    line(
        "uds / ring",
        get("uds"),
        get("ring"),
        "goal >= 20x",
        Some(|r| r >= 20.0),
    );
    line(
        "ring-park / uds",
        get("ring-park"),
        get("uds"),
        "goal <= 1x (park not slower)",
        Some(|r| r <= 1.0),
    );
    line(
        "raw-ring / cacheline-floor",
        get("raw-ring"),
        get("cacheline-floor"),
        "(diagnostic)",
        None,
    );
    line(
        "ring-spin / raw-ring",
        get("ring-spin"),
        get("raw-ring"),
        "(diagnostic)",
        None,
    );
    line(
        "raw-park / uds",
        get("raw-park"),
        get("uds"),
        "(diagnostic)",
        None,
    );
}

/// Run the peer for one variant (the hidden subcommand).
pub fn peer(args: PeerArgs) -> BoxResult<()> {
    let fd = child::peer_init(args.parent, args.fd)?;
    if let Some(cpu) = args.pin {
        child::pin_to_cpu(cpu)?;
    }
    match args.mode {
        PeerMode::Ring
        | PeerMode::RingSpin
        | PeerMode::RingPark
        | PeerMode::RingNoyield
        | PeerMode::RingSpin50us => peer_ring(fd, strategy(args.mode)),
        PeerMode::RawRing | PeerMode::RawAlloc | PeerMode::RawClock | PeerMode::RawPark => {
            peer_raw(fd, RawOpts::of(args.mode))
        }
        PeerMode::Cacheline => peer_cacheline(fd, false),
        PeerMode::CachelineFence => peer_cacheline(fd, true),
        PeerMode::Uds => peer_uds(fd),
    }
}

/// The measuring loop shared by every variant: `warm` unrecorded round
/// trips, then `n` recorded ones, each timed on its own. `round_trip` gets
/// the round trip's start time (to derive deadlines without another clock
/// read inside the measured interval).
fn measure(
    c: &Chunk<'_>,
    mut round_trip: impl FnMut(u64, Instant) -> BoxResult<()>,
) -> BoxResult<Sample> {
    for i in 0..c.warm {
        round_trip(i, Instant::now())?;
    }
    let mut h = report::new_histogram();
    let start = Instant::now();
    for i in c.warm..c.warm + c.n {
        let t0 = Instant::now();
        round_trip(i, t0)?;
        report::record(&mut h, t0.elapsed());
    }
    Ok(Sample {
        h,
        elapsed: start.elapsed(),
    })
}

fn mismatch(i: u64, id: u64) -> Box<dyn std::error::Error> {
    format!("round trip {i}: echo mismatch (id {id})").into()
}

// ---------------------------------------------------------------- rings

fn ring_segment() -> BoxResult<Arc<Segment>> {
    Ok(Arc::new(Segment::create_memfd(
        Layout::new(RING_BYTES, RING_BYTES, 0)?,
        c"vshm-ipc",
    )?))
}

fn spawn_on_segment(seg: &Segment, c: &Chunk<'_>, mode: PeerMode) -> BoxResult<Peer> {
    let fd = seg.fd().ok_or("memfd segment without a descriptor")?;
    Peer::spawn("ipc-peer", fd, &c.peer_args(mode))
}

fn run_ring(c: &Chunk<'_>, mode: PeerMode) -> BoxResult<Sample> {
    let seg = ring_segment()?;
    let peer = spawn_on_segment(&seg, c, mode)?;
    let mut tx = Sender::new(seg.clone(), Dir::Sq, PeerWake::Futex);
    tx.strategy = strategy(mode);
    let mut rx = Receiver::new(seg.clone(), Dir::Cq, PeerWake::Futex);
    rx.strategy = strategy(mode);
    let sample = measure(c, |i, t0| {
        let deadline = t0 + OP_TIMEOUT;
        tx.send(i, kind::MSG, c.payload, deadline)?;
        let m = rx.recv(deadline)?;
        if m.id != i || m.bytes[..] != c.payload[..] {
            return Err(mismatch(i, m.id));
        }
        Ok(())
    })?;
    seg.set_state(state::CLOSED);
    peer.finish(EXIT_TIMEOUT)?;
    Ok(sample)
}

fn peer_ring(fd: OwnedFd, strategy: WaitStrategy) -> BoxResult<()> {
    let seg = Arc::new(Segment::attach(fd)?);
    let mut rx = Receiver::new(seg.clone(), Dir::Sq, PeerWake::Futex);
    rx.strategy = strategy;
    let mut tx = Sender::new(seg.clone(), Dir::Cq, PeerWake::Futex);
    tx.strategy = strategy;
    // The deadline is refreshed only when a wait times out after progress,
    // so the echo loop reads no clock beyond the endpoints' own.
    let mut deadline = Instant::now() + PEER_IDLE;
    let mut progressed = false;
    loop {
        match rx.recv(deadline) {
            Ok(m) => {
                // The ring never fills with one message in flight, so an
                // expired deadline cannot fail this send.
                tx.send(m.id, m.kind, &m.bytes, deadline)?;
                progressed = true;
            }
            Err(EndpointError::Closed) => return Ok(()),
            Err(EndpointError::Timeout) if progressed => {
                progressed = false;
                deadline = Instant::now() + PEER_IDLE;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Spin until `poll` returns a value, up to about `timeout`. The clock is
/// read only every 4096 polls (never on a prompt hand-off). `Ok(None)`
/// when `stop()` turned true.
#[inline]
fn spin_until<T>(
    timeout: Duration,
    mut poll: impl FnMut() -> BoxResult<Option<T>>,
    mut stop: impl FnMut() -> bool,
) -> BoxResult<Option<T>> {
    let mut n: u32 = 0;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(v) = poll()? {
            return Ok(Some(v));
        }
        n = n.wrapping_add(1);
        if n & 4095 == 0 {
            if stop() {
                return Ok(None);
            }
            let now = Instant::now();
            match since {
                None => since = Some(now),
                Some(s) if now - s > timeout => {
                    return Err(format!("no progress for {timeout:?}").into())
                }
                Some(_) => {}
            }
        }
        std::hint::spin_loop();
    }
}

/// What the raw variants add on top of the bare ring protocol.
#[derive(Debug, Clone, Copy)]
struct RawOpts {
    /// A fresh heap buffer per received message.
    alloc: bool,
    /// One `Instant::now()` at the start of every wait.
    clock: bool,
    /// Park on the futex at once instead of spinning.
    park: bool,
}

impl RawOpts {
    fn of(mode: PeerMode) -> RawOpts {
        RawOpts {
            alloc: mode == PeerMode::RawAlloc,
            clock: mode == PeerMode::RawClock,
            park: mode == PeerMode::RawPark,
        }
    }
}

fn ring_of(
    seg: &Segment,
    dir: Dir,
) -> (
    &vshm_protocol::layout::RingCtl,
    vshm_protocol::segment::RingArea<'_>,
) {
    match dir {
        Dir::Sq => seg.sq(),
        Dir::Cq => seg.cq(),
    }
}

/// One direction's producer, driven directly.
struct RawTx {
    prod: Producer,
    dir: Dir,
}

impl RawTx {
    fn send(&mut self, seg: &Segment, id: u64, data: &[u8]) -> BoxResult<()> {
        let (ctl, area) = ring_of(seg, self.dir);
        let len = data.len() as u64;
        let prod = &mut self.prod;
        let res = spin_until(
            OP_TIMEOUT,
            || match prod.try_reserve(ctl, &area, len) {
                Ok(res) => Ok(Some(res)),
                Err(ReserveError::Full) => Ok(None),
                Err(e) => Err(format!("reserve: {e:?}").into()),
            },
            || false,
        )?
        .expect("no stop condition");
        self.prod.write_payload(&area, &res, data);
        self.prod.commit(
            &area,
            res,
            RecordHeader {
                len: len as u32,
                kind: kind::MSG,
                flags: 0,
                id,
            },
        );
        // Only a parking peer ever sets the flag.
        if self.prod.publish(ctl) {
            wake::wake(ctl, Side::Consumer);
        }
        Ok(())
    }
}

/// One direction's consumer, driven directly.
struct RawRx {
    cons: Consumer,
    dir: Dir,
    opts: RawOpts,
    buf: Vec<u8>,
    /// The last message when `opts.alloc` (freed when the next arrives,
    /// as a caller drops an endpoint's `Message`).
    last: Option<Message>,
}

impl RawRx {
    /// Receive one message into `self.buf`; `None` if the segment closed.
    fn recv(&mut self, seg: &Segment, timeout: Duration) -> BoxResult<Option<u64>> {
        let (ctl, area) = ring_of(seg, self.dir);
        if self.opts.clock {
            std::hint::black_box(Instant::now());
        }
        let cons = &mut self.cons;
        let rec = if self.opts.park {
            park_until(seg, ctl, timeout, || Ok(cons.peek(ctl, &area)?))?
        } else {
            spin_until(
                timeout,
                || Ok(cons.peek(ctl, &area)?),
                || seg.state() != state::OPEN,
            )?
        };
        let Some(rec) = rec else {
            return Ok(None);
        };
        self.cons.read_payload(&area, &rec, &mut self.buf);
        if self.opts.alloc {
            let mut m = Message {
                id: rec.hdr.id,
                kind: rec.hdr.kind,
                bytes: Default::default(),
            };
            // As `Reassembler::push`: allocate, zero, copy.
            m.bytes.resize(self.buf.len(), 0);
            m.bytes.copy_from_slice(&self.buf);
            self.last = Some(std::hint::black_box(m));
        }
        self.cons.advance(&rec);
        if self.cons.release(ctl) {
            wake::wake(ctl, Side::Producer);
        }
        Ok(Some(rec.hdr.id))
    }
}

/// Park on the consumer futex whenever `poll` finds nothing (no spinning),
/// with the protocol's sleep loop (`wake::wait`: announce, re-check,
/// sleep). `Ok(None)` once the segment is closed.
fn park_until(
    seg: &Segment,
    ctl: &vshm_protocol::layout::RingCtl,
    timeout: Duration,
    poll: impl FnMut() -> BoxResult<Option<Record>>,
) -> BoxResult<Option<Record>> {
    let mut w = ParkUntil {
        seg,
        timeout,
        slept: Duration::ZERO,
        poll,
    };
    wake::wait(ctl, Side::Consumer, &mut w)
}

/// [`park_until`]'s policy: park at once; give up after `timeout` of whole
/// sleeps that timed out (no clock read on a wake-up).
struct ParkUntil<'a, F> {
    seg: &'a Segment,
    timeout: Duration,
    slept: Duration,
    poll: F,
}

impl<F: FnMut() -> BoxResult<Option<Record>>> Waiter for ParkUntil<'_, F> {
    type Output = Option<Record>;
    type Error = Box<dyn std::error::Error>;

    fn ready(&mut self) -> BoxResult<Option<Option<Record>>> {
        if let Some(r) = (self.poll)()? {
            return Ok(Some(Some(r)));
        }
        Ok((self.seg.state() != state::OPEN).then_some(None))
    }

    fn idle(&mut self) -> BoxResult<Idle> {
        if self.slept >= self.timeout {
            return Err(format!("no progress for {:?}", self.timeout).into());
        }
        Ok(Idle::Park(MAX_SLEEP))
    }

    fn slept(&mut self, woken: bool) {
        if !woken {
            self.slept += MAX_SLEEP;
        }
    }
}

fn raw_ends(seg: &Segment, tx_dir: Dir, opts: RawOpts) -> (RawTx, RawRx) {
    let l = *seg.layout();
    let (rx_dir, tx_cap, rx_cap) = match tx_dir {
        Dir::Sq => (Dir::Cq, l.sq_capacity, l.cq_capacity),
        Dir::Cq => (Dir::Sq, l.cq_capacity, l.sq_capacity),
    };
    (
        RawTx {
            prod: Producer::new(tx_cap, l.max_record),
            dir: tx_dir,
        },
        RawRx {
            cons: Consumer::new(rx_cap, l.max_record),
            dir: rx_dir,
            opts,
            buf: Vec::with_capacity(l.max_record as usize),
            last: None,
        },
    )
}

fn run_raw(c: &Chunk<'_>, mode: PeerMode) -> BoxResult<Sample> {
    let seg = ring_segment()?;
    let peer = spawn_on_segment(&seg, c, mode)?;
    let (mut tx, mut rx) = raw_ends(&seg, Dir::Sq, RawOpts::of(mode));
    let sample = measure(c, |i, _| {
        tx.send(&seg, i, c.payload)?;
        let id = rx.recv(&seg, OP_TIMEOUT)?.ok_or("segment closed")?;
        if id != i || rx.buf[..] != c.payload[..] {
            return Err(mismatch(i, id));
        }
        Ok(())
    })?;
    seg.set_state(state::CLOSED);
    peer.finish(EXIT_TIMEOUT)?;
    Ok(sample)
}

fn peer_raw(fd: OwnedFd, opts: RawOpts) -> BoxResult<()> {
    let seg = Segment::attach(fd)?;
    let (mut tx, mut rx) = raw_ends(&seg, Dir::Cq, opts);
    while let Some(id) = rx.recv(&seg, PEER_IDLE)? {
        tx.send(&seg, id, &rx.buf)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- floor

/// A one-page shared mapping holding the ping-pong word at offset 0.
struct FloorWord {
    map: MmapRaw,
}

impl FloorWord {
    fn create() -> BoxResult<(FloorWord, OwnedFd)> {
        let fd =
            nix::sys::memfd::memfd_create(c"vshm-floor", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, 4096)?;
        Ok((FloorWord::map(&fd)?, fd))
    }

    fn map(fd: &OwnedFd) -> BoxResult<FloorWord> {
        let map = MmapOptions::new().len(4096).map_raw(fd)?;
        Ok(FloorWord { map })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping is 4096 bytes, page-aligned (so 8-aligned), shared and lives as long
        // as `self`; AtomicU64 has u64's layout, any bit pattern is valid, and both processes
        // access the word only through atomics.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64) }
    }
}

fn run_cacheline(c: &Chunk<'_>, mode: PeerMode) -> BoxResult<Sample> {
    let with_fence = mode == PeerMode::CachelineFence;
    let (floor, fd) = FloorWord::create()?;
    let peer = Peer::spawn("ipc-peer", fd.as_fd(), &c.peer_args(mode))?;
    let w = floor.word();
    let res = measure(c, |i, _| {
        let v = 2 * i + 1;
        // Release: pairs with the Acquire load in `peer_cacheline` (the word
        // is the whole message; the orderings are the ones the ring's
        // tail/head use, which is what this floor measures). The SeqCst
        // fence stands for the one in `Producer::publish` (it pairs with
        // nothing here; it is the cost being measured).
        w.store(v, Ordering::Release);
        if with_fence {
            fence(Ordering::SeqCst);
        }
        spin_until(
            OP_TIMEOUT,
            // Acquire: pairs with the Release store in `peer_cacheline`.
            || Ok((w.load(Ordering::Acquire) == v + 1).then_some(())),
            || false,
        )?;
        Ok(())
    });
    // Stop the peer even on error (it is killed on drop anyway).
    // Release: pairs with the Acquire load in `peer_cacheline`.
    w.store(STOP, Ordering::Release);
    let sample = res?;
    peer.finish(EXIT_TIMEOUT)?;
    Ok(sample)
}

fn peer_cacheline(fd: OwnedFd, with_fence: bool) -> BoxResult<()> {
    let floor = FloorWord::map(&fd)?;
    let w = floor.word();
    let mut expect = 1u64;
    loop {
        let got = spin_until(
            PEER_IDLE,
            || {
                // Acquire: pairs with the Release stores in `run_cacheline`.
                let x = w.load(Ordering::Acquire);
                Ok((x == expect || x == STOP).then_some(x))
            },
            || false,
        )?;
        if got == Some(STOP) {
            return Ok(());
        }
        // Release: pairs with the Acquire load in `run_cacheline`; the
        // fence, as there, is the measured cost and pairs with nothing.
        w.store(expect + 1, Ordering::Release);
        if with_fence {
            fence(Ordering::SeqCst);
        }
        expect += 2;
    }
}

// ---------------------------------------------------------------- uds

fn run_uds(c: &Chunk<'_>) -> BoxResult<Sample> {
    let (mut a, b) = UnixStream::pair()?;
    let peer = Peer::spawn("ipc-peer", b.as_fd(), &c.peer_args(PeerMode::Uds))?;
    drop(b);
    a.set_read_timeout(Some(OP_TIMEOUT))?;
    a.set_write_timeout(Some(OP_TIMEOUT))?;
    let mut buf = vec![0u8; c.payload.len()];
    let sample = measure(c, |i, _| {
        a.write_all(c.payload)?;
        a.read_exact(&mut buf)?;
        if buf != c.payload {
            return Err(mismatch(i, i));
        }
        Ok(())
    })?;
    // EOF tells the peer to exit.
    drop(a);
    peer.finish(EXIT_TIMEOUT)?;
    Ok(sample)
}

fn peer_uds(fd: OwnedFd) -> BoxResult<()> {
    let mut s = UnixStream::from(fd);
    s.set_read_timeout(Some(PEER_IDLE))?;
    s.set_write_timeout(Some(OP_TIMEOUT))?;
    let mut buf = [0u8; 64 << 10];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

// ---------------------------------------------------------------- micro

/// Cost of `Instant::now()` in ns.
fn clock_cost_ns() -> f64 {
    per_op_ns(1_000_000, || {
        std::hint::black_box(Instant::now());
    })
}

/// Cost of one call of `f` in ns: the fastest of 20 batches (so that a
/// preemption on a busy machine does not count), after a warm-up batch.
fn per_op_ns(n: u32, mut f: impl FnMut()) -> f64 {
    let batch = (n / 20).max(1);
    let mut best = f64::INFINITY;
    for b in 0..=20 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(batch);
        if b > 0 {
            best = best.min(ns);
        }
    }
    best
}

/// In-process costs of operations the endpoint layer performs per message
/// (single-threaded, uncontended, hot caches: lower bounds).
fn micro_costs() {
    const N: u32 = 2_000_000;
    let arc = Arc::new(0u64);
    let word = AtomicU64::new(0);
    let rows = [
        ("Instant::now()", clock_cost_ns()),
        (
            "Arc clone + drop",
            per_op_ns(N, || drop(std::hint::black_box(arc.clone()))),
        ),
        (
            "100 B AlignedVec alloc + zero + free",
            per_op_ns(N, || {
                // The buffer `frame::Reassembler` allocates per message.
                let mut m = Message {
                    id: 0,
                    kind: kind::MSG,
                    bytes: Default::default(),
                };
                m.bytes.resize(100, 0);
                drop(std::hint::black_box(m));
            }),
        ),
        (
            "store + fence(SeqCst), line owned",
            per_op_ns(N, || {
                // Release + SeqCst fence: the cost of `Producer::publish`'s
                // orderings on an owned line; nothing pairs with them here.
                word.store(std::hint::black_box(1), Ordering::Release);
                fence(Ordering::SeqCst);
            }),
        ),
        ("spin_loop() (PAUSE)", per_op_ns(N, std::hint::spin_loop)),
        (
            "sched_yield()",
            per_op_ns(N / 20, || {
                std::thread::yield_now();
            }),
        ),
    ];
    println!("in-process micro-costs (hot cache, uncontended; lower bounds):");
    for (what, ns) in rows {
        println!("  {what:<40} {ns:>7.1} ns");
    }
}
