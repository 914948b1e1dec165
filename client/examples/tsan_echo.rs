//! A three-thread echo over one in-process segment, written for
//! ThreadSanitizer (`scripts/sanitizers.sh`): a client sender writes
//! messages into the submission ring (fragmenting the large ones), a "core"
//! thread reassembles each one and writes it back into the completion ring,
//! and a client receiver reassembles and checks the echoes. Every party
//! waits with the real wake protocol (need-wakeup flag, re-check, futex
//! sleep with a bound), as the client and the core do.
//!
//! The threads share nothing but the segment (our atomics, the ring bytes)
//! and a few counters: no `Mutex`, `Condvar`, channel or `OnceLock`, whose
//! synchronization lives inside the precompiled (uninstrumented) standard
//! library and would give TSan false reports. Threads are started and
//! joined with `std::thread` (`pthread_create` / `pthread_join`, which TSan
//! intercepts). No libtest harness either (its channels give the same false
//! reports), hence an example and not a test.
//!
//! Exits 0 when every echo came back intact; panics (exit 101) otherwise.
//! `cargo run -p vshm-protocol --example tsan_echo -- [COUNT | --client
//! COUNT | --race]`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, Ordering};

use vshm_client::client::{Client, ClientOptions};
use vshm_client::endpoint::WaitStrategy;
use vshm_protocol::frame::{self, Reassembler};
use vshm_protocol::layout::{Layout, RingCtl};
use vshm_protocol::msg::{decode_submitted, encode_completion, Completion, Op, Route, Value};
use vshm_protocol::ring::{kind, Consumer, DataArea, Producer};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, Idle, Side, Waiter};

/// One wait's bound; a party that waits this long without progress fails.
const STALL: Duration = Duration::from_secs(20);

fn payload(id: u64) -> Vec<u8> {
    // 0..6000 bytes: most fit one record, some fragment (max_record is
    // about a quarter of the 4 KiB rings).
    let len = (id.wrapping_mul(7919) % 6000) as usize;
    (0..len).map(|i| (id as u8).wrapping_add(i as u8)).collect()
}

/// The protocol's sleep loop with a stall bound: park (100 ms at a time)
/// until `ready` says so; panic after [`STALL`] without it.
struct Bounded<F> {
    since: Instant,
    what: &'static str,
    ready: F,
}

impl<T, F: FnMut() -> Option<T>> Waiter for Bounded<F> {
    type Output = T;
    type Error = std::convert::Infallible;
    fn ready(&mut self) -> Result<Option<T>, Self::Error> {
        Ok((self.ready)())
    }
    fn idle(&mut self) -> Result<Idle, Self::Error> {
        assert!(self.since.elapsed() < STALL, "{} stalled", self.what);
        Ok(Idle::Park(Duration::from_millis(100)))
    }
}

fn wait_bounded<T>(
    ctl: &RingCtl,
    side: Side,
    what: &'static str,
    ready: impl FnMut() -> Option<T>,
) -> T {
    let mut w = Bounded {
        since: Instant::now(),
        what,
        ready,
    };
    let Ok(v) = wake::wait(ctl, side, &mut w);
    v
}

/// Write one message (`frame::send_message`), sleeping (bounded) while the
/// ring is full.
fn send<A: DataArea>(prod: &mut Producer, ctl: &RingCtl, area: &A, id: u64, data: &[u8]) {
    frame::send_message::<_, vshm_protocol::ProtocolError>(
        prod,
        ctl,
        area,
        (id, kind::MSG),
        data,
        || wake::wake(ctl, Side::Consumer),
        |_, ready| {
            wait_bounded(ctl, Side::Producer, "sender", || match ready() {
                Ok(true) => Some(Ok(())),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            })
        },
    )
    .expect("send");
}

/// Take messages from a ring (`frame::receive_message`, sleeping bounded
/// while it is empty) and hand each (id, bytes) to `f` until it returns
/// false.
fn receive<A: DataArea>(
    ctl: &RingCtl,
    area: &A,
    cap: u64,
    max_record: u64,
    max_message: u64,
    mut f: impl FnMut(u64, &[u8]) -> bool,
) {
    let mut cons = Consumer::new(cap, max_record);
    let mut reasm = Reassembler::new(max_message);
    loop {
        let m = wait_bounded(ctl, Side::Consumer, "receiver", || {
            frame::receive_message(&mut cons, &mut reasm, ctl, area, || {
                wake::wake(ctl, Side::Producer)
            })
            .expect("framing")
        });
        if !f(m.id, &m.bytes) {
            return;
        }
    }
}

/// `--race`: two threads copy the same ring bytes with no
/// synchronization at all, a data race on purpose. Under TSan this must be
/// reported: `scripts/sanitizers.sh` runs it to prove that the detector
/// sees accesses to segment memory and that a report fails the run.
fn deliberate_race() {
    let layout = Layout::new(4096, 4096, 0).expect("layout");
    let seg = Arc::new(Segment::create_anonymous(layout).expect("segment"));
    let writer = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            let (_, area) = seg.sq();
            for i in 0..1000u32 {
                // SAFETY: offset 0..4 is inside the ring area. Racing with
                // the reader below is the point (plain bytes of a shared
                // mapping: any value read is a valid u8).
                unsafe { area.write(0, &i.to_le_bytes()) };
            }
        })
    };
    let (_, area) = seg.sq();
    let mut b = [0u8; 4];
    for _ in 0..1000 {
        // SAFETY: as above.
        unsafe { area.read(0, &mut b) };
    }
    writer.join().expect("writer");
    println!("tsan_echo --race: done (TSan must have reported a race)");
}

/// `--client COUNT`: the same through the real `Client` (one client
/// thread: submit, wait, zero-copy replies kept pinned in the completion
/// ring for a while, fragmented ones on the heap) against a core thread
/// that decodes each request with `msg::decode_submitted` and answers with
/// the request's argument. The client's internal locks are taken by one
/// thread only, so the threads synchronize through the rings alone.
fn client_echo(n: u64) {
    // A roomy completion ring: the pinned replies below hold its space.
    let layout = Layout::new(4096, 65536, 0).expect("layout");
    let seg = Arc::new(Segment::create_anonymous(layout).expect("segment"));
    let l = *seg.layout();
    let client = Client::new(
        seg.clone(),
        None,
        ClientOptions {
            request_timeout: STALL,
            transport_margin: STALL,
            strategy: WaitStrategy::DEFAULT,
        },
    );
    let core = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            let (sq_ctl, sq_area) = seg.sq();
            let (cq_ctl, cq_area) = seg.cq();
            let mut prod = Producer::new(l.cq_capacity, l.max_record);
            let mut seen = 0;
            receive(
                sq_ctl,
                &sq_area,
                l.sq_capacity,
                l.max_record,
                l.max_message,
                |id, bytes| {
                    let req = decode_submitted(bytes, id).expect("a valid request");
                    let Op::Command { mut args } = req.op else {
                        panic!("not a command")
                    };
                    let c = Completion::Ok(Value::Bulk(args.pop().expect("an argument")));
                    send(&mut prod, cq_ctl, &cq_area, id, &encode_completion(&c));
                    seen += 1;
                    seen < n
                },
            );
        })
    };
    let mut pinned = std::collections::VecDeque::new();
    let mut in_ring = 0u64;
    for i in 1..=n {
        let data = payload(i);
        let id = client
            .submit(&[b"ECHO", &data], &Route::Auto, Some(STALL))
            .expect("submit");
        let r = client
            .wait_reply_until(id, Instant::now() + STALL, true)
            .expect("reply");
        in_ring += u64::from(r.in_ring());
        pinned.push_back((i, r));
        // Keep a few replies pinned while later ones arrive.
        if pinned.len() > 3 {
            let (i, r) = pinned.pop_front().expect("non-empty");
            assert_eq!(
                r.to_completion(),
                Completion::Ok(Value::Bulk(payload(i))),
                "reply {i} intact"
            );
        }
    }
    drop(pinned);
    core.join().expect("core");
    assert!(in_ring > 0, "some replies were read in place");
    println!("tsan_echo --client: {n} requests answered intact ({in_ring} replies in place)");
}

fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--race") {
        return deliberate_race();
    }
    if arg.as_deref() == Some("--client") {
        let n = std::env::args()
            .nth(2)
            .map_or(5000, |s| s.parse().expect("COUNT"));
        return client_echo(n);
    }
    let n: u64 = arg.map(|s| s.parse().expect("COUNT")).unwrap_or(20_000);
    let layout = Layout::new(4096, 4096, 0).expect("layout");
    let seg = Arc::new(Segment::create_anonymous(layout).expect("segment"));
    let l = *seg.layout();
    let done = Arc::new(AtomicBool::new(false));

    let sender = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            let (ctl, area) = seg.sq();
            let mut prod = Producer::new(l.sq_capacity, l.max_record);
            for id in 1..=n {
                send(&mut prod, ctl, &area, id, &payload(id));
            }
        })
    };
    let core = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            let (sq_ctl, sq_area) = seg.sq();
            let (cq_ctl, cq_area) = seg.cq();
            let mut prod = Producer::new(l.cq_capacity, l.max_record);
            let mut seen = 0;
            receive(
                sq_ctl,
                &sq_area,
                l.sq_capacity,
                l.max_record,
                l.max_message,
                |id, bytes| {
                    send(&mut prod, cq_ctl, &cq_area, id, bytes);
                    seen += 1;
                    seen < n
                },
            );
        })
    };
    let receiver = {
        let seg = seg.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let (ctl, area) = seg.cq();
            let mut next = 1;
            receive(
                ctl,
                &area,
                l.cq_capacity,
                l.max_record,
                l.max_message,
                |id, bytes| {
                    assert_eq!(id, next, "echoes in order");
                    assert!(bytes == payload(id).as_slice(), "echo {id} intact");
                    next += 1;
                    next <= n
                },
            );
            // Relaxed: read after join, which orders it.
            done.store(true, Ordering::Relaxed);
        })
    };
    for t in [sender, core, receiver] {
        t.join().expect("thread");
    }
    assert!(done.load(Ordering::Relaxed));
    println!("tsan_echo: {n} messages echoed intact");
}
