//! Blocking endpoints over one ring direction, with the shipped wait
//! strategy (spin, then yield, then park on the futex).
//!
//! These are what a client process (and any simple peer such as the
//! cross-process echo test or the `ipc` benchmark) uses. The core's async
//! dispatcher drives the same [`Producer`]/[`Consumer`] state machines from
//! tokio instead, sleeping on its eventfd doorbell.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vshm_protocol::frame::{FragmentWriter, FrameError, Message, Reassembler};
use vshm_protocol::layout::{state, RingCtl};
use vshm_protocol::ring::{Consumer, Producer, RecordHeader, ReserveError};
use vshm_protocol::segment::{RingArea, Segment};
use vshm_protocol::sync::spin_hint;
use vshm_protocol::wake::{self, Side};
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
}

impl WaitStrategy {
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
    };
    /// What a Redis client waits with by default
    /// ([`WaitStrategy::from_env`], used by `ClientOptions::default()`):
    /// park at once. A client waits for a Redis round trip (tens of
    /// microseconds even on loopback), which no spin worth its CPU covers;
    /// measured with `vshm-bench seq` and `async` on 2 shared vCPUs, a 5 µs
    /// spin made p50 latency 15-30 % worse and cost ~25 % more CPU per
    /// request than parking at once (docs/performance.md).
    pub const CLIENT: WaitStrategy = WaitStrategy::PARK;
    /// Spin only (benchmarks: the floor with both sides active).
    pub const SPIN: WaitStrategy = WaitStrategy {
        spin: Duration::from_secs(3600),
        yield_for: Duration::ZERO,
        park: false,
    };
    /// Park immediately (benchmarks: the cost of a blocking wake-up).
    pub const PARK: WaitStrategy = WaitStrategy {
        spin: Duration::ZERO,
        yield_for: Duration::ZERO,
        park: true,
    };
}

/// Polls between two clock reads while spinning (see [`wait_until`]).
const CLOCK_EVERY: u32 = 8;

impl WaitStrategy {
    /// [`WaitStrategy::CLIENT`] (park at once), or, when the environment
    /// variable `VSHM_SPIN_US` is set to a number, a spin of that many
    /// microseconds (at most 1 s) before parking. Read once per process.
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
    fn wake(&self, ctl: &RingCtl, side: Side) {
        match self {
            PeerWake::Futex => wake::wake(ctl, side),
            PeerWake::Doorbell(fd) => ring_doorbell(fd.as_raw_fd()),
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
/// state is no longer open.
pub fn wait_until(
    seg: &Segment,
    ctl: &RingCtl,
    side: Side,
    strategy: WaitStrategy,
    deadline: Instant,
    mut ready: impl FnMut() -> Result<bool, EndpointError>,
) -> Result<(), EndpointError> {
    let start = Instant::now();
    let spinning = !strategy.spin.is_zero();
    let mut n: u32 = 0;
    loop {
        if ready()? {
            return Ok(());
        }
        n = n.wrapping_add(1);
        // While spinning, check the clock only every 8 polls (a clock read
        // costs about as much as a poll; this bounds the overshoot of the
        // spin budget to a fraction of a microsecond). With no spin budget,
        // go to the next phase at once.
        if spinning && !n.is_multiple_of(CLOCK_EVERY) {
            spin_hint();
            continue;
        }
        let now = Instant::now();
        match seg.state() {
            state::OPEN => {}
            state::PEER_LOST => return Err(EndpointError::PeerLost),
            _ => return Err(EndpointError::Closed),
        }
        if now >= deadline {
            return Err(EndpointError::Timeout);
        }
        let spent = now - start;
        if spent < strategy.spin {
            spin_hint();
        } else if spent < strategy.spin + strategy.yield_for || !strategy.park {
            std::thread::yield_now();
        } else {
            let seq = wake::prepare_sleep(ctl, side);
            match ready() {
                Ok(false) => {}
                other => {
                    wake::cancel_sleep(ctl, side);
                    if other? {
                        return Ok(());
                    }
                }
            }
            if seg.state() != state::OPEN {
                wake::cancel_sleep(ctl, side);
                continue;
            }
            // Cap each sleep so that state changes are noticed even if a
            // wake is missed by a dead peer.
            let left = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            wake::sleep(ctl, side, seq, left);
        }
    }
}

/// The producing end of one ring direction.
pub struct Sender {
    seg: Arc<Segment>,
    dir: Dir,
    prod: Producer,
    peer: PeerWake,
    pub strategy: WaitStrategy,
}

impl Sender {
    pub fn new(seg: Arc<Segment>, dir: Dir, peer: PeerWake) -> Sender {
        let l = *seg.layout();
        let cap = match dir {
            Dir::Sq => l.sq_capacity,
            Dir::Cq => l.cq_capacity,
        };
        Sender {
            seg,
            dir,
            prod: Producer::new(cap, l.max_record),
            peer,
            strategy: WaitStrategy::DEFAULT,
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    fn ring(seg: &Segment, dir: Dir) -> (&RingCtl, RingArea<'_>) {
        match dir {
            Dir::Sq => seg.sq(),
            Dir::Cq => seg.cq(),
        }
    }

    fn publish(&mut self) {
        let (ctl, _) = Self::ring(&self.seg, self.dir);
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
        let mut w = FragmentWriter::new(id, kind);
        loop {
            if w.pump(&mut self.prod, ctl, &area, data)? {
                self.publish();
                return Ok(());
            }
            self.publish();
            // A started message must be finished: extend the deadline
            // rather than leave a half message in the ring.
            let dl = if w.started() {
                Instant::now() + Duration::from_secs(30)
            } else {
                deadline
            };
            // Wait for room for exactly the record `pump` reserves next: an
            // unfragmented message's own length, a first fragment max_record
            // (the 8-byte total plus max_record - 8 bytes of data), a later
            // one min(rest, max_record). Never more than max_record: a
            // larger ask is refused as TooLarge, which would read as "ready"
            // and turn this wait into a busy loop that never checks the
            // deadline nor the segment state.
            let max = self.prod.max_record() as usize;
            let left = data.len() - w.sent();
            let need = if !w.started() && data.len() > max {
                max
            } else {
                left.min(max)
            } as u64;
            let prod = &mut self.prod;
            wait_until(&seg, ctl, Side::Producer, self.strategy, dl, || match prod
                .try_reserve(ctl, &area, need)
            {
                Ok(_) | Err(ReserveError::TooLarge) => Ok(true),
                Err(ReserveError::Full) => Ok(false),
                Err(ReserveError::Corrupt(e)) => Err(e.into()),
            })?;
        }
    }

    /// Serialize in place: `fill` gets a 16-byte aligned slice of at least
    /// `max_len` bytes of ring memory and returns the bytes it wrote (or
    /// `None` if they did not fit). Messages larger than one record go
    /// through a heap buffer (`fill` is then called on that).
    pub fn send_with(
        &mut self,
        id: u64,
        kind: u8,
        max_len: usize,
        deadline: Instant,
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
        {
            let prod = &mut self.prod;
            let mut try_once = || -> Result<bool, EndpointError> {
                match prod.try_reserve(ctl, &area, max_len as u64) {
                    Ok(r) => {
                        got = Some(r);
                        Ok(true)
                    }
                    Err(ReserveError::Full) => Ok(false),
                    Err(ReserveError::TooLarge) => unreachable!("checked above"),
                    Err(ReserveError::Corrupt(e)) => Err(e.into()),
                }
            };
            if !try_once()? {
                if self.prod.publish(ctl) {
                    self.peer.wake(ctl, Side::Consumer);
                }
                let prod = &mut self.prod;
                wait_until(
                    &seg,
                    ctl,
                    Side::Producer,
                    self.strategy,
                    deadline,
                    || match prod.try_reserve(ctl, &area, max_len as u64) {
                        Ok(r) => {
                            got = Some(r);
                            Ok(true)
                        }
                        Err(ReserveError::Full) => Ok(false),
                        Err(ReserveError::TooLarge) => unreachable!("checked above"),
                        Err(ReserveError::Corrupt(e)) => Err(e.into()),
                    },
                )?;
            }
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
        self.publish();
        Ok(())
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
        let r = Self::step(&mut self.cons, &mut self.reasm, ctl, &area, &self.peer);
        if self.cons.release(ctl) {
            self.peer.wake(ctl, Side::Producer);
        }
        r
    }

    fn step(
        cons: &mut Consumer,
        reasm: &mut Reassembler,
        ctl: &RingCtl,
        area: &RingArea<'_>,
        peer: &PeerWake,
    ) -> Result<Option<Message>, EndpointError> {
        while let Some(rec) = cons.peek(ctl, area)? {
            let out = reasm.push(area, &rec).map_err(EndpointError::Protocol)?;
            cons.advance(&rec);
            if let Some(m) = out {
                return Ok(Some(m));
            }
            // Release fragments as we go so that the producer can write the
            // next ones.
            if cons.release(ctl) {
                peer.wake(ctl, Side::Producer);
            }
        }
        Ok(None)
    }

    /// Wait (per `strategy`) for the next message until `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Result<Message, EndpointError> {
        if let Some(m) = self.try_recv()? {
            return Ok(m);
        }
        let seg = self.seg.clone();
        let (ctl, area) = Sender::ring(&seg, self.dir);
        let mut out = None;
        let cons = &mut self.cons;
        let reasm = &mut self.reasm;
        let peer = &self.peer;
        wait_until(&seg, ctl, Side::Consumer, self.strategy, deadline, || {
            let r = Self::step(cons, reasm, ctl, &area, peer);
            if cons.release(ctl) {
                peer.wake(ctl, Side::Producer);
            }
            out = r?;
            Ok(out.is_some())
        })?;
        Ok(out.expect("ready"))
    }
}
