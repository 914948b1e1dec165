//! Blocking endpoints over one ring direction, with the shipped wait
//! strategy (spin, then yield, then park on the futex; whether to spin is
//! learnt by [`AdaptiveSpin`], in `spin.rs`).
//!
//! These are what a client process (and any simple peer such as the
//! cross-process echo test or the `ipc` benchmark) uses. The core's async
//! dispatcher drives the same [`Producer`]/[`Consumer`] state machines from
//! tokio instead, sleeping on its eventfd doorbell.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vshm_protocol::frame::{self, FrameError, Message, Reassembler};
use vshm_protocol::layout::{state, RingCtl};
use vshm_protocol::ring::{Consumer, Producer, RecordHeader, Reservation, ReserveError};
use vshm_protocol::segment::{RingArea, Segment};
use vshm_protocol::sync::{spin_hint, AtomicBool, Ordering};
use vshm_protocol::wake::{self, Idle, Side, Waiter};
use vshm_protocol::ProtocolError;

/// Which ring of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Submission ring (client to core).
    Sq,
    /// Completion ring (core to client).
    Cq,
}

/// How a side waits for its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Busy-poll this long (pure spinning: the cache-line handoff path).
    pub spin: Duration,
    /// Then poll with `sched_yield` between checks for this long, so a
    /// spinning client gives its core to the daemon or the server on a
    /// busy machine.
    pub yield_for: Duration,
    /// Then park on the futex (false: keep yielding until the deadline).
    pub park: bool,
    /// `spin` and `yield_for` are a budget used only while staying awake
    /// pays (see [`AdaptiveSpin`]); false: always spin and yield first.
    pub adaptive: bool,
}

impl WaitStrategy {
    /// How long a wait stays awake (spinning, then yielding) before it
    /// parks.
    pub fn awake(&self) -> Duration {
        self.spin.saturating_add(self.yield_for)
    }

    /// As shipped: a short spin (covers a peer that is actively running
    /// and answers within microseconds), then park so an idle side uses no
    /// CPU. No `sched_yield` phase by default: with more client processes
    /// than cores (the prefork case on this 2-core machine), yielding
    /// clients steal the daemon's and the server's CPU and roughly halved
    /// the daemon's throughput in `scripts/demo.sh`.
    pub const DEFAULT: WaitStrategy = WaitStrategy {
        spin: Duration::from_micros(5),
        yield_for: Duration::ZERO,
        park: true,
        adaptive: false,
    };
    /// What a Redis client waits with by default
    /// ([`WaitStrategy::from_env`], used by `ClientOptions::default()`):
    /// stay awake up to 80 µs before parking (20 µs of pure spin, then
    /// `sched_yield` between polls), but only while such waits end with
    /// the completion ([`AdaptiveSpin`]). A round trip through the core
    /// takes 10-60 µs on the measured machines when nothing parks; parking
    /// at once adds a futex wake-up (and on a loaded VM a scheduling delay)
    /// to each one, and a fixed spin burns the CPU of every waiter when
    /// processes outnumber cores. The yield phase is for the thread this
    /// wait depends on when the scheduler put it on the waiter's own CPU
    /// (a woken core thread lands beside the thread that woke it): a pure
    /// spin holds it off until the budget runs out, and the wait parks
    /// anyway. Measured in docs/performance.md ("Adaptive spin" and
    /// "fifth session").
    pub const CLIENT: WaitStrategy = WaitStrategy {
        spin: Duration::from_micros(20),
        yield_for: Duration::from_micros(60),
        park: true,
        adaptive: true,
    };
    /// Spin only (benchmarks: the floor with both sides active).
    pub const SPIN: WaitStrategy = WaitStrategy {
        spin: Duration::from_secs(3600),
        yield_for: Duration::ZERO,
        park: false,
        adaptive: false,
    };
    /// Park immediately (benchmarks: the cost of a blocking wake-up).
    pub const PARK: WaitStrategy = WaitStrategy {
        spin: Duration::ZERO,
        yield_for: Duration::ZERO,
        park: true,
        adaptive: false,
    };
}

pub use crate::spin::AdaptiveSpin;

/// Polls between two clock reads while spinning (see [`wait_until`]).
const CLOCK_EVERY: u32 = 8;

impl WaitStrategy {
    /// [`WaitStrategy::CLIENT`] (the adaptive spin), or, when the
    /// environment variable `VSHM_SPIN_US` is set to a number, a fixed spin
    /// of that many microseconds (at most 1 s; 0: park at once) before
    /// parking. Read once per process.
    /// This is what [`ClientOptions::default`](crate::client::ClientOptions)
    /// uses.
    pub fn from_env() -> WaitStrategy {
        static S: std::sync::OnceLock<WaitStrategy> = std::sync::OnceLock::new();
        *S.get_or_init(|| {
            let mut s = WaitStrategy::CLIENT;
            if let Some(us) = std::env::var("VSHM_SPIN_US")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                s.spin = Duration::from_micros(us.min(1_000_000));
                s.yield_for = Duration::ZERO;
                s.adaptive = false;
            }
            s
        })
    }
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::DEFAULT
    }
}

/// How to wake the peer of a ring direction.
#[derive(Debug, Clone)]
pub enum PeerWake {
    /// The peer sleeps on the ring's futex word.
    Futex,
    /// The peer sleeps on this eventfd (the core's doorbell).
    Doorbell(Arc<OwnedFd>),
}

impl PeerWake {
    /// Wake the peer sleeping as `side` of the ring `ctl`, after a publish
    /// or release reported its need-wakeup flag up.
    pub(crate) fn wake(&self, ctl: &RingCtl, side: Side) {
        match self {
            PeerWake::Futex => wake::wake(ctl, side),
            // The core's serve loop is the sole sleeper on a submission
            // ring's consumer side: the first waker claims its flag, so a
            // burst of submissions rings the doorbell once. Its standing
            // request for completion-ring space is counted (many).
            PeerWake::Doorbell(fd) => {
                if side == Side::Producer || wake::claim(ctl, side) {
                    ring_doorbell(fd.as_raw_fd())
                }
            }
        }
    }
}

/// Add 1 to an eventfd (defined with the wake protocol).
pub use vshm_protocol::wake::ring_doorbell;

/// Errors of the blocking endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// The deadline passed.
    Timeout,
    /// The segment was closed (or marked broken) by the peer.
    Closed,
    /// The peer is gone (the daemon died): see `layout::state::PEER_LOST`.
    PeerLost,
    /// The ring or a message is corrupt.
    Protocol(FrameError),
}

impl From<ProtocolError> for EndpointError {
    fn from(e: ProtocolError) -> Self {
        EndpointError::Protocol(FrameError { id: None, error: e })
    }
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointError::Timeout => write!(f, "timed out"),
            EndpointError::Closed => write!(f, "segment closed"),
            EndpointError::PeerLost => write!(f, "connection to the core lost"),
            EndpointError::Protocol(e) => write!(f, "protocol error: {}", e.error),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Wait until `ready()` is true, following `strategy`, parking as `side`
/// of `ctl`. Returns `Timeout` at the deadline, `Closed` if the segment
/// state is no longer open. The loop itself is [`wake::wait`]; this is
/// only the strategy's policy.
pub fn wait_until(
    seg: &Segment,
    ctl: &RingCtl,
    side: Side,
    strategy: WaitStrategy,
    deadline: Instant,
    ready: impl FnMut() -> Result<bool, EndpointError>,
) -> Result<(), EndpointError> {
    let mut w = StrategyWait {
        seg,
        strategy,
        deadline,
        start: Instant::now(),
        n: 0,
        yielding: false,
        ready,
    };
    wake::wait(ctl, side, &mut w)
}

/// [`WaitStrategy`] as a [`Waiter`]: spin, yield, then park (each sleep
/// capped at 100 ms so that state changes are noticed even if a dead peer
/// misses a wake), up to a deadline and while the segment is open.
struct StrategyWait<'a, F> {
    seg: &'a Segment,
    strategy: WaitStrategy,
    deadline: Instant,
    start: Instant,
    n: u32,
    /// Past the pure spin: every poll yields (and reads the clock).
    yielding: bool,
    ready: F,
}

impl<F: FnMut() -> Result<bool, EndpointError>> Waiter for StrategyWait<'_, F> {
    type Output = ();
    type Error = EndpointError;

    fn ready(&mut self) -> Result<Option<()>, EndpointError> {
        Ok((self.ready)()?.then_some(()))
    }

    fn idle(&mut self) -> Result<Idle, EndpointError> {
        self.n = self.n.wrapping_add(1);
        // While spinning, check the clock only every 8 polls (a clock read
        // costs about as much as a poll; this bounds the overshoot of the
        // spin budget to a fraction of a microsecond). With no spin budget,
        // go to the next phase at once.
        if !self.yielding && !self.strategy.spin.is_zero() && !self.n.is_multiple_of(CLOCK_EVERY) {
            spin_hint();
            return Ok(Idle::Poll);
        }
        let now = Instant::now();
        match self.seg.state() {
            state::OPEN => {}
            state::PEER_LOST => return Err(EndpointError::PeerLost),
            _ => return Err(EndpointError::Closed),
        }
        if now >= self.deadline {
            return Err(EndpointError::Timeout);
        }
        let spent = now - self.start;
        let s = self.strategy;
        if spent < s.spin {
            spin_hint();
            Ok(Idle::Poll)
        } else if spent < s.awake() || !s.park {
            self.yielding = true;
            std::thread::yield_now();
            Ok(Idle::Poll)
        } else {
            Ok(Idle::Park(
                self.deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100)),
            ))
        }
    }

    fn may_sleep(&mut self) -> bool {
        self.seg.state() == state::OPEN
    }
}

/// Records a cork holds back at most: the 16th is published with the ones
/// before it. Batches of this size let the consumer start on the first
/// requests while the producer is still writing the next ones. Measured
/// (`vshm-bench casync`, 100 in flight, callbacks submitting the next
/// request): a cork that held everything until it closed cost a fifth of
/// the ops/s (less CPU per request, but the core and the server waited for
/// the whole batch); 8, 16 and 32 measured alike, 9-10 % above no cork.
pub const CORK_BATCH: u32 = 16;

/// The producing end of one ring direction.
pub struct Sender {
    seg: Arc<Segment>,
    dir: Dir,
    prod: Producer,
    peer: PeerWake,
    pub strategy: WaitStrategy,
    /// Records committed under a cork and not yet published.
    held: u32,
    /// True while this sender waits for ring space, everything it committed
    /// published (see `cork::flush_held`). Stored only by the sender's
    /// owner, under its lock.
    space_wait: Arc<AtomicBool>,
}

impl Sender {
    pub fn new(seg: Arc<Segment>, dir: Dir, peer: PeerWake) -> Sender {
        let l = *seg.layout();
        let cap = match dir {
            Dir::Sq => l.sq_capacity,
            Dir::Cq => l.cq_capacity,
        };
        // A doorbell wakes the core, the sole sleeper of a submission ring
        // (`PeerWake::wake` claims its flag); a completion ring's consumer
        // flag is counted and must not be claimed.
        debug_assert!(dir == Dir::Sq || matches!(peer, PeerWake::Futex));
        Sender {
            seg,
            dir,
            prod: Producer::new(cap, l.max_record),
            peer,
            strategy: WaitStrategy::DEFAULT,
            held: 0,
            space_wait: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The flag that is true while this sender waits for ring space.
    pub fn space_wait_flag(&self) -> Arc<AtomicBool> {
        self.space_wait.clone()
    }

    /// Publish the records [`Sender::send_with`] held back; nothing (no
    /// publish, no wake-up) when none are.
    pub fn flush(&mut self) {
        if self.held > 0 {
            self.publish();
        }
    }

    fn ring(seg: &Segment, dir: Dir) -> (&RingCtl, RingArea<'_>) {
        match dir {
            Dir::Sq => seg.sq(),
            Dir::Cq => seg.cq(),
        }
    }

    fn publish(&mut self) {
        let (ctl, _) = Self::ring(&self.seg, self.dir);
        self.held = 0;
        if self.prod.publish(ctl) {
            self.peer.wake(ctl, Side::Consumer);
        }
    }

    /// Send one message (fragmenting if needed), waiting for space until
    /// `deadline`. A message whose first fragment went out is always
    /// finished (the consumer expects the rest), unless the segment closes.
    pub fn send(
        &mut self,
        id: u64,
        kind: u8,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), EndpointError> {
        let seg = self.seg.clone();
        let (ctl, area) = Self::ring(&seg, self.dir);
        let (strategy, peer, space) = (self.strategy, &self.peer, &self.space_wait);
        // Publishes what it wrote before each wait for room, and so what a
        // cork held back.
        let r = frame::send_message(
            &mut self.prod,
            ctl,
            &area,
            (id, kind),
            data,
            || peer.wake(ctl, Side::Consumer),
            |started, ready| {
                // A started message must be finished: extend the deadline
                // rather than leave a half message in the ring.
                let dl = if started {
                    Instant::now() + Duration::from_secs(30)
                } else {
                    deadline
                };
                let _waiting = SpaceWait::start(space);
                wait_until(&seg, ctl, Side::Producer, strategy, dl, ready)
            },
        );
        if r.is_ok() {
            self.held = 0;
        }
        r
    }

    /// Serialize in place: `fill` gets a 16-byte aligned slice of at least
    /// `max_len` bytes of ring memory and returns the bytes it wrote (or
    /// `None` if they did not fit). Messages larger than one record go
    /// through a heap buffer (`fill` is then called on that).
    ///
    /// `hold` (the sender is corked, `Client::cork`): commit the record but
    /// do not publish it, as `TCP_CORK` does for a socket, so that a burst
    /// reaches the consumer in batches of [`CORK_BATCH`] with at most one
    /// wake-up each; [`Sender::flush`] publishes what is held. Anything
    /// that has to wait for the consumer publishes it first: a message of
    /// several records, a wait for ring space. A record sent without
    /// `hold` is published with whatever was held before it.
    pub fn send_with(
        &mut self,
        id: u64,
        kind: u8,
        max_len: usize,
        deadline: Instant,
        hold: bool,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), EndpointError> {
        if max_len as u64 > self.prod.max_record() {
            let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(max_len);
            buf.resize(max_len, 0);
            let n = fill(&mut buf).ok_or(ProtocolError::BadMessage(
                "serialized size exceeded its bound".into(),
            ))?;
            return self.send(id, kind, &buf[..n], deadline);
        }
        let seg = self.seg.clone();
        let (ctl, area) = Self::ring(&seg, self.dir);
        let mut got = None;
        let len = max_len as u64;
        if !reserve(&mut self.prod, ctl, &area, len, &mut got)? {
            // The consumer must see everything committed (held back by a
            // cork too) before it can free space.
            self.held = 0;
            if self.prod.publish(ctl) {
                self.peer.wake(ctl, Side::Consumer);
            }
            let _waiting = SpaceWait::start(&self.space_wait);
            let prod = &mut self.prod;
            wait_until(&seg, ctl, Side::Producer, self.strategy, deadline, || {
                reserve(prod, ctl, &area, len, &mut got)
            })?;
        }
        let res = got.expect("reserved");
        // SAFETY: the reservation is free ring space we own until commit,
        // max_len bytes long, and the consumer never reads unpublished space.
        let slice = unsafe { area.slice_mut(res.payload_off, res.len) };
        let n = fill(slice).ok_or(ProtocolError::BadMessage(
            "serialized size exceeded its bound".into(),
        ))?;
        self.prod.commit(
            &area,
            res,
            RecordHeader {
                len: n as u32,
                kind,
                flags: 0,
                id,
            },
        );
        self.held += 1;
        if !hold || self.held >= CORK_BATCH {
            self.publish();
        }
        Ok(())
    }
}

/// `Sender::space_wait` up for the length of a wait for ring space (down
/// again however the wait ends, a panic included).
struct SpaceWait<'a>(&'a AtomicBool);

impl<'a> SpaceWait<'a> {
    fn start(flag: &'a AtomicBool) -> SpaceWait<'a> {
        // Relaxed: see `cork::flush_held`.
        flag.store(true, Ordering::Relaxed);
        SpaceWait(flag)
    }
}

impl Drop for SpaceWait<'_> {
    fn drop(&mut self) {
        // Relaxed: see `cork::flush_held`.
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Reserve room for a record of `len` bytes into `got`; false when the
/// ring is full. `len` is at most the largest record (checked by callers).
fn reserve(
    prod: &mut Producer,
    ctl: &RingCtl,
    area: &RingArea<'_>,
    len: u64,
    got: &mut Option<Reservation>,
) -> Result<bool, EndpointError> {
    match prod.try_reserve(ctl, area, len) {
        Ok(r) => {
            *got = Some(r);
            Ok(true)
        }
        Err(ReserveError::Full) => Ok(false),
        Err(ReserveError::TooLarge) => unreachable!("checked by the caller"),
        Err(ReserveError::Corrupt(e)) => Err(e.into()),
    }
}

/// The consuming end of one ring direction (copies messages out).
pub struct Receiver {
    seg: Arc<Segment>,
    dir: Dir,
    cons: Consumer,
    reasm: Reassembler,
    peer: PeerWake,
    pub strategy: WaitStrategy,
}

impl Receiver {
    pub fn new(seg: Arc<Segment>, dir: Dir, peer: PeerWake) -> Receiver {
        let l = *seg.layout();
        let cap = match dir {
            Dir::Sq => l.sq_capacity,
            Dir::Cq => l.cq_capacity,
        };
        Receiver {
            seg,
            dir,
            cons: Consumer::new(cap, l.max_record),
            reasm: Reassembler::new(l.max_message),
            peer,
            strategy: WaitStrategy::DEFAULT,
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Take the next complete message, if there is one, releasing its ring
    /// space at once.
    pub fn try_recv(&mut self) -> Result<Option<Message>, EndpointError> {
        let seg = self.seg.clone();
        let (ctl, area) = Sender::ring(&seg, self.dir);
        let peer = &self.peer;
        let r = frame::receive_message(&mut self.cons, &mut self.reasm, ctl, &area, || {
            peer.wake(ctl, Side::Producer)
        });
        r.map_err(EndpointError::Protocol)
    }

    /// Wait (per `strategy`) for the next message until `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Result<Message, EndpointError> {
        if let Some(m) = self.try_recv()? {
            return Ok(m);
        }
        let seg = self.seg.clone();
        let (ctl, area) = Sender::ring(&seg, self.dir);
        let mut out = None;
        let (cons, reasm, peer) = (&mut self.cons, &mut self.reasm, &self.peer);
        wait_until(&seg, ctl, Side::Consumer, self.strategy, deadline, || {
            out =
                frame::receive_message(cons, reasm, ctl, &area, || peer.wake(ctl, Side::Producer))
                    .map_err(EndpointError::Protocol)?;
            Ok(out.is_some())
        })?;
        Ok(out.expect("ready"))
    }
}
