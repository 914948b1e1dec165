//! Shared pieces of the loom models (compiled only under `--cfg vshm_loom`).

use std::time::Duration;

use loom::cell::UnsafeCell;
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{kind, Consumer, DataArea, Producer, Record, RecordHeader, ReserveError};
use vshm_protocol::wake::{self, ParkAtOnce, Side};

/// Preemption bound of most models (two threads, small state space).
pub const BOUND: usize = 4;
/// Preemption bound of the largest models (three threads, or both sides of
/// the wake protocol sleeping): at 4 they take 30 s to well over a minute
/// on the shared 2-core machine, at 3 a few seconds. See `docs/loom.md`.
pub const BOUND_LARGE: usize = 3;

/// A loom model builder with preemption bound `bound`, unless
/// `LOOM_MAX_PREEMPTIONS` in the environment overrides it.
pub fn builder(bound: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    b
}

/// Run `f` under [`builder`]`(bound)`, printing how many executions were
/// explored and how long it took (visible with `--nocapture`).
// The execution counter is a std atomic on purpose: it outlives each loom
// execution, so it cannot be a loom atomic from the `sync` shim.
#[allow(clippy::disallowed_types)]
pub fn check<F>(name: &str, bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    let b = builder(bound);
    let bound = b.preemption_bound;
    b.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "loom model {name}: {} executions, preemption bound {bound:?}, {:.2?}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// A ring data area made of loom-tracked byte cells.
///
/// Every byte the ring code writes or reads goes through
/// [`UnsafeCell::with_mut`] / [`UnsafeCell::with`], so loom checks that each
/// read of a record byte happens after the write that produced it, and that
/// each write happens after every earlier read of that byte. A missing
/// Release/Acquire edge in the ring (publishing a record, or returning its
/// space to the producer) is reported as a causality violation.
pub struct LoomArea {
    cells: Box<[UnsafeCell<u8>]>,
}

impl LoomArea {
    pub fn new(cap: usize) -> Self {
        LoomArea {
            cells: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// Read bytes in place (what a zero-copy consumer does with a record it
    /// holds), tracked like any other read.
    pub fn read_at(&self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        // SAFETY: the loom cells are bounds-checked by indexing and every
        // access is tracked; `read` is memory-safe for any range.
        unsafe { self.read(off, &mut v) };
        v
    }
}

// SAFETY: the cells are only touched through loom's tracked accessors, which
// report (panic on) any access that is not ordered by happens-before, so
// sharing the area between loom threads cannot go unnoticed as a data race.
unsafe impl Sync for LoomArea {}

// SAFETY: `capacity` is the number of cells; every access indexes the slice,
// so an out-of-range offset panics (fails the model) instead of touching
// memory outside the area.
unsafe impl DataArea for LoomArea {
    fn capacity(&self) -> u64 {
        self.cells.len() as u64
    }

    unsafe fn write(&self, off: u64, src: &[u8]) {
        let cells = &self.cells[off as usize..off as usize + src.len()];
        for (cell, b) in cells.iter().zip(src) {
            // SAFETY: loom checks that this write is ordered after every
            // other access to the cell; the pointer is valid for a u8.
            cell.with_mut(|p| unsafe { *p = *b });
        }
    }

    unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        let cells = &self.cells[off as usize..off as usize + dst.len()];
        for (cell, b) in cells.iter().zip(dst) {
            // SAFETY: loom checks that this read is ordered after the last
            // write to the cell; the pointer is valid for a u8.
            *b = cell.with(|p| unsafe { *p });
        }
    }
}

/// The payload of test record `id`: `len` bytes that differ per id and per
/// position, so a torn, stale or misplaced copy is caught by comparison.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id as u8).wrapping_mul(31).wrapping_add(i as u8 + 1))
        .collect()
}

fn msg_header(id: u64, len: usize) -> RecordHeader {
    RecordHeader {
        len: len as u32,
        kind: kind::MSG,
        flags: 0,
        id,
    }
}

/// Reserve, write and commit one record; `Ok(false)` if the ring is full.
pub fn try_push<A: DataArea>(
    prod: &mut Producer,
    ctl: &RingCtl,
    area: &A,
    id: u64,
    data: &[u8],
) -> bool {
    match prod.try_reserve(ctl, area, data.len() as u64) {
        Ok(res) => {
            prod.write_payload(area, &res, data);
            prod.commit(area, res, msg_header(id, data.len()));
            true
        }
        Err(ReserveError::Full) => false,
        Err(e) => panic!("reserve failed: {e:?}"),
    }
}

/// Push one record and publish it, yielding to the scheduler while the ring
/// is full (no sleeping: the wake protocol is modelled separately).
pub fn push_spin<A: DataArea>(prod: &mut Producer, ctl: &RingCtl, area: &A, id: u64, data: &[u8]) {
    while !try_push(prod, ctl, area, id, data) {
        loom::thread::yield_now();
    }
    prod.publish(ctl);
}

/// Take the next record (copying its payload out), advance and release it;
/// `None` if the ring is empty.
pub fn try_pop<A: DataArea>(
    cons: &mut Consumer,
    ctl: &RingCtl,
    area: &A,
) -> Option<(RecordHeader, Vec<u8>)> {
    let rec = cons.peek(ctl, area).expect("ring corrupt")?;
    let mut buf = Vec::new();
    cons.read_payload(area, &rec, &mut buf);
    cons.advance(&rec);
    Some((rec.hdr, buf))
}

/// Pop one record, yielding while the ring is empty; releases its space.
pub fn pop_spin<A: DataArea>(
    cons: &mut Consumer,
    ctl: &RingCtl,
    area: &A,
) -> (RecordHeader, Vec<u8>) {
    loop {
        if let Some(r) = try_pop(cons, ctl, area) {
            cons.release(ctl);
            return r;
        }
        loom::thread::yield_now();
    }
}

/// Peek the next record, yielding while the ring is empty (no release).
pub fn peek_spin<A: DataArea>(cons: &mut Consumer, ctl: &RingCtl, area: &A) -> Record {
    loop {
        if let Some(rec) = cons.peek(ctl, area).expect("ring corrupt") {
            return rec;
        }
        loom::thread::yield_now();
    }
}

/// The futex timeout passed to the sleep loop (ignored under loom: a lost
/// wakeup must be a deadlock, not a timeout).
pub const SLEEP: Duration = Duration::from_secs(1);

/// Producer side of the wake protocol: push one record, waiting for space
/// with the production sleep loop (`wake::wait`: check, announce, re-check,
/// sleep on the producer futex). After publishing, wake the consumer if it
/// announced that it sleeps. Returns how many times it went to sleep.
pub fn send_wait<A: DataArea>(
    prod: &mut Producer,
    ctl: &RingCtl,
    area: &A,
    id: u64,
    data: &[u8],
) -> usize {
    let mut w = ParkAtOnce::new(SLEEP, || {
        Ok::<_, ()>(try_push(prod, ctl, area, id, data).then_some(()))
    });
    wake::wait(ctl, Side::Producer, &mut w).expect("no error");
    let slept = w.sleeps;
    if prod.publish(ctl) {
        wake::wake(ctl, Side::Consumer);
    }
    slept
}

/// Consumer side of the wake protocol: take one record, waiting with the
/// production sleep loop on the consumer futex. After releasing, wake the
/// producer if it announced that it waits for space. Returns the record
/// and how many times it went to sleep.
pub fn recv_wait<A: DataArea>(
    cons: &mut Consumer,
    ctl: &RingCtl,
    area: &A,
) -> (RecordHeader, Vec<u8>, usize) {
    let mut w = ParkAtOnce::new(SLEEP, || Ok::<_, ()>(try_pop(cons, ctl, area)));
    let (hdr, bytes) = wake::wait(ctl, Side::Consumer, &mut w).expect("no error");
    let slept = w.sleeps;
    if cons.release(ctl) {
        wake::wake(ctl, Side::Producer);
    }
    (hdr, bytes, slept)
}
