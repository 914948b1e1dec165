//! A reader facing a hostile peer.
//!
//! * The ring consumer and the reassembler against a producer that writes
//!   random bytes over the data area, truncated records, lying lengths,
//!   bad padding, impossible tails and malformed fragment sequences: every
//!   case ends in a typed error (never a panic), and every read the consumer
//!   makes stays inside the data area *and* inside the published window
//!   (checked by an instrumented [`DataArea`]). After an error the consumer
//!   stays usable for the error report: it answers the same error again and
//!   its positions do not move.
//! * The producer against a consumer whose head moves backwards or past the
//!   tail.
//!
//! Segments facing a hostile peer (scribbled headers, a consumer that stops
//! draining) are `hostile_segment.rs`. The random cases are seeded: `VSHM_HOSTILE_SEED=<n>` reproduces a run.

use std::cell::Cell;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use vshm_protocol::frame::{FragmentWriter, FrameError, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{
    kind, record_size, rflags, Consumer, DataArea, Producer, RecordHeader, ReserveError, REC_HDR,
};
use vshm_protocol::ProtocolError;

mod seeded;
use seeded::for_cases;

// ---------------------------------------------------------------------------
// An instrumented data area.

/// Ring memory that checks every consumer read: inside the area, and inside
/// the window `[lo, hi)` of positions the producer published and the
/// consumer has not released. Hostile writes go through [`poke`].
///
/// [`poke`]: CheckedArea::poke
struct CheckedArea {
    bytes: Vec<Cell<u8>>,
    cap: u64,
    /// The consumer's released position.
    lo: Cell<u64>,
    /// Upper bound of every tail the consumer may have accepted.
    hi: Cell<u64>,
    reads: Cell<u64>,
}

impl CheckedArea {
    fn new(cap: u64) -> Self {
        CheckedArea {
            bytes: (0..cap).map(|_| Cell::new(0)).collect(),
            cap,
            lo: Cell::new(0),
            hi: Cell::new(0),
            reads: Cell::new(0),
        }
    }

    /// Write as the (hostile) producer: anywhere in the area.
    fn poke(&self, off: u64, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            self.bytes[((off + i as u64) % self.cap) as usize].set(*b);
        }
    }

    /// Publish `tail` as the producer: store it and widen the window. Every
    /// aligned tail at or past the released position may be accepted by the
    /// consumer, so the window covers all of them (a looser check, never a
    /// false alarm).
    fn publish(&self, ctl: &RingCtl, tail: u64) {
        // Release: pairs with the Acquire tail load in
        // `Consumer::refresh_tail`, as `Producer::publish` does.
        ctl.prod
            .tail
            .store(tail, vshm_protocol::sync::Ordering::Release);
        if tail.is_multiple_of(16) && tail >= self.lo.get() && tail > self.hi.get() {
            self.hi.set(tail);
        }
    }

    fn released(&self, pos: u64) {
        self.lo.set(pos);
    }
}

// SAFETY: `capacity()` is the length of `bytes`; reads and writes are
// bounds checked (a violation panics, failing the test, instead of
// touching memory outside the area).
unsafe impl DataArea for CheckedArea {
    fn capacity(&self) -> u64 {
        self.cap
    }

    unsafe fn write(&self, off: u64, src: &[u8]) {
        assert!(
            off.checked_add(src.len() as u64)
                .is_some_and(|e| e <= self.cap),
            "write out of bounds"
        );
        for (i, b) in src.iter().enumerate() {
            self.bytes[off as usize + i].set(*b);
        }
    }

    unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        let len = dst.len() as u64;
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.cap),
            "consumer read [{off}, +{len}) outside a {}-byte area",
            self.cap
        );
        if len > 0 {
            let (lo, hi) = (self.lo.get(), self.hi.get());
            let pos = lo + (off.wrapping_sub(lo) & (self.cap - 1));
            assert!(
                pos + len <= hi && pos + len <= lo + self.cap,
                "consumer read unpublished bytes: offset {off} (position {pos}) +{len}, published [{lo}, {hi})"
            );
        }
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.bytes[off as usize + i].get();
        }
        self.reads.set(self.reads.get() + 1);
    }
}

const CAP: u64 = 4096;
const MAX_RECORD: u64 = CAP / 4 - 16;
const MAX_MESSAGE: u64 = 64 * 1024;

struct Ring {
    ctl: RingCtl,
    area: CheckedArea,
    cons: Consumer,
    reasm: Reassembler,
}

impl Ring {
    fn new() -> Self {
        Ring {
            ctl: RingCtl::default(),
            area: CheckedArea::new(CAP),
            cons: Consumer::new(CAP, MAX_RECORD),
            reasm: Reassembler::new(MAX_MESSAGE),
        }
    }

    /// Consume until the ring is empty or an error; returns the error.
    /// Releases now and then (as the real endpoints do between fragments).
    fn drain(&mut self, rng: &mut SmallRng) -> Option<FrameError> {
        for _ in 0..10_000 {
            let rec = match self.cons.peek(&self.ctl, &self.area) {
                Ok(Some(rec)) => rec,
                Ok(None) => return None,
                Err(e) => return Some(FrameError { id: None, error: e }),
            };
            // Whatever the header claims, a returned record is inside the
            // area, 16-aligned, and no longer than max_record.
            assert!(
                rec.payload_off.is_multiple_of(16)
                    && rec.payload_off + u64::from(rec.hdr.len) <= CAP
            );
            assert!(u64::from(rec.hdr.len) <= MAX_RECORD);
            assert!(rec.end() - rec.pos() == record_size(u64::from(rec.hdr.len)));
            let out = self.reasm.push(&self.area, &rec);
            match out {
                Ok(Some(m)) => assert!(m.bytes.len() as u64 <= MAX_MESSAGE),
                Ok(None) => {}
                Err(e) => return Some(e),
            }
            self.cons.advance(&rec);
            if rng.random_ratio(1, 3) {
                self.release();
            }
        }
        panic!("the consumer never ran out of records");
    }

    fn release(&mut self) {
        self.cons.release(&self.ctl);
        self.area.released(self.cons.released());
    }

    /// After an error the consumer is still usable for the report: no
    /// panic, the same answer again, positions unmoved, release callable.
    fn check_usable_after(&mut self, err: &FrameError) {
        let (head, released) = (self.cons.head(), self.cons.released());
        match self.cons.peek(&self.ctl, &self.area) {
            Err(e) => {
                assert_eq!(err.id, None, "peek fails ({e}) after a frame error");
                assert_eq!(e, err.error, "a different error the second time");
            }
            Ok(Some(rec)) => {
                // The record the reassembler refused is still there.
                assert!(err.id.is_some(), "peek now succeeds after {err:?}");
                assert_eq!(rec.pos(), head);
            }
            Ok(None) => panic!("peek finds nothing after {err:?}"),
        }
        assert_eq!(self.cons.head(), head);
        self.release();
        assert!(self.cons.released() >= released);
    }
}

// ---------------------------------------------------------------------------
// Random hostile producers.

/// Interesting record lengths.
fn hostile_len(rng: &mut SmallRng) -> u32 {
    match rng.random_range(0..10u32) {
        0 => 0,
        1 => MAX_RECORD as u32,
        2 => MAX_RECORD as u32 + rng.random_range(1..=32),
        3 => rng.random(),
        4 => u32::MAX - rng.random_range(0..32),
        5 => (CAP - REC_HDR) as u32,
        6 => rng.random_range(0..8),
        _ => rng.random_range(0..=MAX_RECORD as u32),
    }
}

fn hostile_header(rng: &mut SmallRng, ids: &[u64]) -> RecordHeader {
    RecordHeader {
        len: hostile_len(rng),
        kind: match rng.random_range(0..8u32) {
            0 => kind::PAD,
            1 => kind::PUSH,
            2 => rng.random(),
            _ => kind::MSG,
        },
        flags: match rng.random_range(0..8u32) {
            0 => rflags::FIRST,
            1 => rflags::MORE,
            2 => rflags::FIRST | rflags::MORE,
            3 => rng.random(),
            _ => 0,
        },
        id: ids[rng.random_range(0..ids.len())],
    }
}

/// The producer side of a random scenario: a legitimate producer (with a
/// message it may be half-way through) and the tail last published by
/// whoever wrote last.
struct Peer {
    prod: Producer,
    pending: Option<(FragmentWriter, Vec<u8>)>,
    tail: u64,
}

/// One hostile round: change the ring somehow, then publish a tail.
fn hostile_round(rng: &mut SmallRng, r: &mut Ring, peer: &mut Peer) {
    let ids = [0u64, 1, 2, 7, u64::MAX];
    let hostile_tail = &mut peer.tail;
    match rng.random_range(0..10u32) {
        // A legitimate producer finishes its pending message and writes a
        // few more (fragmented or not, the last one possibly only in part:
        // it resumes next time); sometimes bytes are flipped afterwards.
        0..=5 => {
            let prod = &mut peer.prod;
            // The legit producer can only go on from what it published.
            if *hostile_tail != prod.tail() {
                if r.cons.head() != 0 {
                    return;
                }
                // A fresh ring: start over.
                *prod = Producer::new(CAP, MAX_RECORD);
                peer.pending = None;
            }
            let mut fresh = 0;
            loop {
                let (w, data) = match &mut peer.pending {
                    Some(p) => p,
                    None if fresh < rng.random_range(1..4) => {
                        fresh += 1;
                        let len = match rng.random_range(0..4u32) {
                            0 => rng.random_range(0..=3 * CAP as usize),
                            _ => rng.random_range(0..=MAX_RECORD as usize),
                        };
                        let mut data = vec![0u8; len];
                        rng.fill_bytes(&mut data);
                        let w = FragmentWriter::new(ids[rng.random_range(0..ids.len())], kind::MSG);
                        peer.pending.insert((w, data))
                    }
                    None => break,
                };
                match w.pump(prod, &r.ctl, &r.area, data) {
                    Ok(true) => peer.pending = None,
                    // Full (resume later) or the consumer's head looks
                    // corrupt to the producer (possible after tail games).
                    Ok(false) | Err(_) => break,
                }
            }
            prod.publish(&r.ctl);
            *hostile_tail = prod.tail();
            r.area.publish(&r.ctl, *hostile_tail);
            if rng.random_ratio(1, 3) {
                for _ in 0..rng.random_range(1..3) {
                    let off = rng.random_range(0..CAP);
                    let mut b = [0u8; 1];
                    rng.fill_bytes(&mut b);
                    r.area.poke(off, &b);
                }
            }
        }
        // Crafted records with lying headers, then an honest-looking tail.
        6 | 7 => {
            for _ in 0..rng.random_range(1..6) {
                let off = *hostile_tail % CAP;
                let mut h = hostile_header(rng, &ids);
                if h.kind == kind::PAD && rng.random_bool(0.5) {
                    // Sometimes a correct padding record.
                    h.len = (CAP - off - REC_HDR) as u32;
                }
                r.area.poke(off, &h.to_bytes());
                let plen = u64::from(h.len).min(CAP - off - REC_HDR) as usize;
                let mut payload = vec![0u8; plen.min(64)];
                rng.fill_bytes(&mut payload);
                if (h.flags & rflags::FIRST != 0) && payload.len() >= 8 && rng.random_bool(0.7) {
                    // A plausible total length.
                    let total: u64 = match rng.random_range(0..4u32) {
                        0 => u64::from(h.len),
                        1 => MAX_MESSAGE + 1,
                        2 => rng.random_range(0..4 * MAX_RECORD),
                        _ => rng.random(),
                    };
                    payload[..8].copy_from_slice(&total.to_le_bytes());
                }
                r.area.poke(off + REC_HDR, &payload);
                *hostile_tail += match rng.random_range(0..4u32) {
                    0 => rng.random_range(0..CAP / 16) * 16,
                    _ if h.kind == kind::PAD => CAP - off,
                    _ => record_size(u64::from(h.len).min(CAP)),
                };
            }
            r.area.publish(&r.ctl, *hostile_tail);
        }
        // Random bytes sprayed over the data area.
        8 => {
            let off = rng.random_range(0..CAP);
            let mut b = vec![0u8; rng.random_range(1..=CAP as usize)];
            rng.fill_bytes(&mut b);
            r.area.poke(off, &b);
        }
        // An impossible or surprising tail.
        _ => {
            let cur = *hostile_tail;
            let t = match rng.random_range(0..7u32) {
                0 => cur.wrapping_sub(16 * rng.random_range(1..4)),
                1 => r.cons.released() + CAP + 16 * rng.random_range(1..4),
                2 => cur + rng.random_range(1..16),
                3 => rng.random(),
                4 => u64::MAX - rng.random_range(0..64),
                5 => r.cons.released() + CAP,
                _ => cur + 16 * rng.random_range(0..8),
            };
            *hostile_tail = t;
            r.area.publish(&r.ctl, t);
        }
    }
}

#[test]
fn consumer_survives_hostile_producers() {
    let errors = Cell::new(0u64);
    let delivered = Cell::new(0u64);
    for_cases("hostile ring", 4000, |rng| {
        let mut r = Ring::new();
        let mut peer = Peer {
            prod: Producer::new(CAP, MAX_RECORD),
            pending: None,
            tail: 0,
        };
        for _ in 0..rng.random_range(1..30) {
            hostile_round(rng, &mut r, &mut peer);
            // The legit producer needs the consumer's releases to make room.
            if let Some(e) = r.drain(rng) {
                r.check_usable_after(&e);
                errors.set(errors.get() + 1);
                return;
            }
            r.release();
            delivered.set(delivered.get() + 1);
        }
    });
    println!(
        "{} cases ended in an error, {} rounds drained cleanly",
        errors.get(),
        delivered.get()
    );
    // The cases must exercise both outcomes.
    assert!(
        errors.get() > 1000,
        "only {} cases ended in an error",
        errors.get()
    );
    assert!(
        delivered.get() > 1000,
        "only {} clean rounds",
        delivered.get()
    );
}

/// Pure garbage: a random data area and random control words.
#[test]
fn consumer_on_random_images() {
    for_cases("random image", 4000, |rng| {
        let mut r = Ring::new();
        let mut img = vec![0u8; CAP as usize];
        rng.fill_bytes(&mut img);
        r.area.poke(0, &img);
        for _ in 0..rng.random_range(1..8) {
            let t = match rng.random_range(0..3u32) {
                0 => rng.random(),
                1 => rng.random_range(0..=CAP / 16) * 16 + r.cons.released(),
                _ => rng.random_range(0..=2 * CAP),
            };
            r.area.publish(&r.ctl, t);
            if let Some(e) = r.drain(rng) {
                r.check_usable_after(&e);
                return;
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Targeted cases: each lie yields its own error.

fn ring_with(records: &[(RecordHeader, Vec<u8>)], tail: Option<u64>) -> Ring {
    let r = Ring::new();
    let mut pos = 0u64;
    for (h, payload) in records {
        r.area.poke(pos % CAP, &h.to_bytes());
        r.area.poke(pos % CAP + REC_HDR, payload);
        pos += if h.kind == kind::PAD {
            u64::from(h.len) + REC_HDR
        } else {
            record_size(u64::from(h.len))
        };
    }
    r.area.publish(&r.ctl, tail.unwrap_or(pos));
    r
}

/// `n` zero-length records.
fn zeros(n: u64) -> Vec<(RecordHeader, Vec<u8>)> {
    vec![(msg(0, 0, 1), vec![]); n as usize]
}

fn msg(len: u32, flags: u8, id: u64) -> RecordHeader {
    RecordHeader {
        len,
        kind: kind::MSG,
        flags,
        id,
    }
}

fn first(id: u64, total: u64, chunk: usize) -> (RecordHeader, Vec<u8>) {
    let mut p = total.to_le_bytes().to_vec();
    p.extend(std::iter::repeat_n(0xAB, chunk));
    (msg(p.len() as u32, rflags::FIRST | rflags::MORE, id), p)
}

fn frag(id: u64, len: usize, more: bool) -> (RecordHeader, Vec<u8>) {
    (
        msg(len as u32, if more { rflags::MORE } else { 0 }, id),
        vec![0xCD; len],
    )
}

fn corrupt(msg: &str) -> ProtocolError {
    ProtocolError::RingCorrupt(match msg {
        "long" => "record longer than max_record",
        "past" => "record extends past tail or end of ring",
        "pad" => "bad padding record",
        "tail" => "producer tail moved backwards or past capacity",
        "kind" => "unknown record kind",
        "short first" => "first fragment shorter than its length prefix",
        "single" => "fragmented message with a single fragment",
        "orphan" => "continuation fragment without a first fragment",
        "interleaved" => "fragments of one message interleaved with another",
        "lengths" => "fragment lengths disagree with the total",
        other => panic!("no such error {other}"),
    })
}

/// Drain and return the first error (None if the ring drained cleanly),
/// checking the consumer stays usable.
fn first_error(mut r: Ring) -> Option<FrameError> {
    let mut rng = SmallRng::seed_from_u64(1);
    let e = r.drain(&mut rng)?;
    r.check_usable_after(&e);
    Some(e)
}

fn ring_err(e: &str) -> Option<FrameError> {
    Some(FrameError {
        id: None,
        error: corrupt(e),
    })
}

fn frame_err(id: u64, e: &str) -> Option<FrameError> {
    Some(FrameError {
        id: Some(id),
        error: corrupt(e),
    })
}

#[test]
fn lying_records() {
    let m = MAX_RECORD as u32;
    // len > max_record.
    assert_eq!(
        first_error(ring_with(&[(msg(m + 1, 0, 1), vec![])], Some(4096))),
        ring_err("long")
    );
    assert_eq!(
        first_error(ring_with(&[(msg(u32::MAX, 0, 1), vec![])], Some(4096))),
        ring_err("long")
    );
    // Exactly max_record is fine.
    assert_eq!(
        first_error(ring_with(&[(msg(m, 0, 1), vec![1; m as usize])], None)),
        None
    );
    // Truncated: the tail cuts the record (header only, or part of it).
    assert_eq!(
        first_error(ring_with(&[(msg(100, 0, 1), vec![])], Some(16))),
        ring_err("past")
    );
    assert_eq!(
        first_error(ring_with(&[(msg(100, 0, 1), vec![])], Some(112))),
        ring_err("past")
    );
    assert_eq!(
        first_error(ring_with(&[(msg(100, 0, 1), vec![])], Some(128))),
        None
    );
    // A record across the end of the area (no padding before it): move to
    // offset CAP - 32 with zero-length records, then claim 100 bytes there.
    let mut rng = SmallRng::seed_from_u64(2);
    let mut r = Ring::new();
    for pos in (0..CAP - 32).step_by(16) {
        r.area.poke(pos, &msg(0, 0, 9).to_bytes());
    }
    r.area.publish(&r.ctl, CAP - 32);
    assert_eq!(r.drain(&mut rng), None);
    r.release();
    r.area.poke(CAP - 32, &msg(100, 0, 1).to_bytes());
    r.area.publish(&r.ctl, CAP - 32 + 128);
    let e = r.drain(&mut rng);
    assert_eq!(e, ring_err("past"));
    r.check_usable_after(&e.unwrap());
}

#[test]
fn bad_padding() {
    let mut rng = SmallRng::seed_from_u64(3);
    // Move to offset CAP - 64 with zero-length records.
    let setup = || {
        let mut r = Ring::new();
        for pos in (0..CAP - 64).step_by(16) {
            r.area.poke(pos, &msg(0, 0, 9).to_bytes());
        }
        r.area.publish(&r.ctl, CAP - 64);
        assert_eq!(r.drain(&mut SmallRng::seed_from_u64(0)), None);
        r.release();
        r
    };
    let pad = |len: u32| RecordHeader {
        len,
        kind: kind::PAD,
        flags: 0,
        id: 0,
    };
    // Correct padding (48 + 16 = 64 to the end), then a record at 0.
    let mut r = setup();
    r.area.poke(CAP - 64, &pad(48).to_bytes());
    r.area.poke(0, &msg(5, 0, 1).to_bytes());
    r.area.publish(&r.ctl, CAP + 32);
    assert_eq!(r.drain(&mut rng), None);
    // Padding with a wrong length: too short, too long, huge.
    for len in [32, 64, 4080, u32::MAX] {
        let mut r = setup();
        r.area.poke(CAP - 64, &pad(len).to_bytes());
        r.area.publish(&r.ctl, CAP + 32);
        let e = r.drain(&mut rng);
        assert_eq!(e, ring_err("pad"), "pad len {len}");
        r.check_usable_after(&e.unwrap());
    }
    // Correct length but extending past the tail.
    let mut r = setup();
    r.area.poke(CAP - 64, &pad(48).to_bytes());
    r.area.publish(&r.ctl, CAP - 32);
    let e = r.drain(&mut rng);
    assert_eq!(e, ring_err("pad"));
    r.check_usable_after(&e.unwrap());
    // Padding at offset 0 covering the whole ring is legal (if published).
    let r = ring_with(
        &[(
            RecordHeader {
                len: (CAP - 16) as u32,
                kind: kind::PAD,
                flags: 0,
                id: 0,
            },
            vec![],
        )],
        None,
    );
    assert_eq!(first_error(r), None);
}

#[test]
fn impossible_tails() {
    let mut rng = SmallRng::seed_from_u64(4);
    for (what, tail) in [
        ("unaligned", 8u64),
        ("unaligned", 17),
        ("past capacity", CAP + 16),
        ("huge", u64::MAX - 15),
        ("far past capacity", 1 << 40),
    ] {
        let mut r = Ring::new();
        r.area.publish(&r.ctl, tail);
        let e = r.drain(&mut rng);
        assert_eq!(e, ring_err("tail"), "{what}");
        r.check_usable_after(&e.unwrap());
        assert_eq!(
            r.area.reads.get(),
            0,
            "{what}: read bytes behind an invalid tail"
        );
    }
    // Exactly a full ring (of zero-length records) is fine.
    let r = ring_with(&zeros(CAP / 16), None);
    assert_eq!(first_error(r), None);
    // Backwards: publish 256, consume, then publish 128.
    let mut r = ring_with(&zeros(16), None);
    assert_eq!(r.drain(&mut rng), None);
    r.area.publish(&r.ctl, 128);
    let e = r.drain(&mut rng);
    assert_eq!(e, ring_err("tail"));
    r.check_usable_after(&e.unwrap());
    // Backwards below the released head, after a release.
    let mut r = ring_with(&zeros(16), None);
    assert_eq!(r.drain(&mut rng), None);
    r.release();
    r.area.publish(&r.ctl, 0);
    assert_eq!(r.drain(&mut rng), ring_err("tail"));
    // Past capacity relative to the released position (the producer would
    // be overwriting unreleased records).
    let mut r = ring_with(&zeros(16), None);
    assert_eq!(r.drain(&mut rng), None);
    // Nothing released yet: 256 + CAP is more than a ring ahead of 0.
    r.area.publish(&r.ctl, 256 + CAP);
    assert_eq!(r.drain(&mut rng), ring_err("tail"));
}

#[test]
fn bad_fragments() {
    let max = MAX_RECORD as usize;
    // Unknown kind.
    let r = ring_with(
        &[(
            RecordHeader {
                len: 4,
                kind: 77,
                flags: 0,
                id: 5,
            },
            vec![0; 4],
        )],
        None,
    );
    assert_eq!(first_error(r), frame_err(5, "kind"));
    // A continuation without a first fragment; unknown flag bits; FIRST
    // without MORE.
    assert_eq!(
        first_error(ring_with(&[frag(6, 10, true)], None)),
        frame_err(6, "orphan")
    );
    assert_eq!(
        first_error(ring_with(
            &[frag(6, 10, false)].map(|(mut h, p)| {
                h.flags = 0x80;
                (h, p)
            }),
            None
        )),
        frame_err(6, "orphan")
    );
    assert_eq!(
        first_error(ring_with(&[(msg(16, rflags::FIRST, 6), vec![0; 16])], None)),
        frame_err(6, "orphan")
    );
    // First fragment shorter than its 8-byte prefix.
    assert_eq!(
        first_error(ring_with(
            &[(msg(7, rflags::FIRST | rflags::MORE, 8), vec![0; 7])],
            None
        )),
        frame_err(8, "short first")
    );
    // Total larger than max_message.
    assert_eq!(
        first_error(ring_with(&[first(9, MAX_MESSAGE + 1, 100)], None)),
        Some(FrameError {
            id: Some(9),
            error: ProtocolError::TooLarge {
                len: MAX_MESSAGE + 1,
                limit: MAX_MESSAGE
            }
        })
    );
    assert_eq!(
        first_error(ring_with(&[first(9, u64::MAX, 100)], None))
            .unwrap()
            .id,
        Some(9)
    );
    // A "fragmented" message whose first fragment already holds it all.
    assert_eq!(
        first_error(ring_with(&[first(10, 100, 100)], None)),
        frame_err(10, "single")
    );
    assert_eq!(
        first_error(ring_with(&[first(10, 50, 100)], None)),
        frame_err(10, "single")
    );
    // The next fragment has another id / kind / is another FIRST: the error
    // names the interrupted message.
    assert_eq!(
        first_error(ring_with(
            &[first(11, 300, 100), frag(12, 200, false)],
            None
        )),
        frame_err(11, "interleaved")
    );
    let mut push = frag(11, 200, false);
    push.0.kind = kind::PUSH;
    assert_eq!(
        first_error(ring_with(&[first(11, 300, 100), push], None)),
        frame_err(11, "interleaved")
    );
    assert_eq!(
        first_error(ring_with(&[first(11, 300, 100), first(11, 300, 100)], None)),
        frame_err(11, "interleaved")
    );
    // Lengths that disagree with the total: too long, last too short, MORE
    // although complete.
    assert_eq!(
        first_error(ring_with(
            &[first(13, 300, 100), frag(13, 201, false)],
            None
        )),
        frame_err(13, "lengths")
    );
    assert_eq!(
        first_error(ring_with(
            &[first(13, 300, 100), frag(13, 199, false)],
            None
        )),
        frame_err(13, "lengths")
    );
    assert_eq!(
        first_error(ring_with(&[first(13, 300, 100), frag(13, 200, true)], None)),
        frame_err(13, "lengths")
    );
    assert_eq!(
        first_error(ring_with(
            &[
                first(13, 3000, max - 8),
                frag(13, max, true),
                frag(13, max, true)
            ],
            None
        )),
        frame_err(13, "lengths")
    );
    // The well-formed versions pass.
    assert_eq!(
        first_error(ring_with(
            &[first(13, 300, 100), frag(13, 200, false)],
            None
        )),
        None
    );
    assert_eq!(
        first_error(ring_with(
            &[
                first(14, 300, 100),
                frag(14, 100, true),
                frag(14, 100, false),
                frag(15, 3, false)
            ],
            None
        )),
        None
    );
    // A message cut short by the tail is not an error yet: the rest may
    // still come.
    assert_eq!(first_error(ring_with(&[first(16, 300, 100)], None)), None);
}

/// Commit max_record-sized records until the ring is full.
fn fill(prod: &mut Producer, ctl: &RingCtl, area: &CheckedArea) {
    loop {
        match prod.try_reserve(ctl, area, MAX_RECORD) {
            Ok(res) => prod.commit(area, res, msg(MAX_RECORD as u32, 0, 1)),
            Err(ReserveError::Full) => return,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The producer facing a hostile consumer's head.
#[test]
fn producer_rejects_impossible_heads() {
    let area = CheckedArea::new(CAP);
    for (what, head) in [
        ("past the tail", 512u64),
        ("unaligned", 8),
        ("backwards", u64::MAX - 15),
        ("far ahead", 1 << 40),
    ] {
        let ctl = RingCtl::default();
        let mut prod = Producer::new(CAP, MAX_RECORD);
        fill(&mut prod, &ctl, &area);
        prod.publish(&ctl);
        let tail = prod.tail();
        assert_eq!(tail, CAP);
        let head = if what == "past the tail" {
            tail + 16
        } else {
            head
        };
        // Release: pairs with the Acquire head load in
        // `Producer::refresh_head`, as `Consumer::release_to` does.
        ctl.cons
            .head
            .store(head, vshm_protocol::sync::Ordering::Release);
        match prod.try_reserve(&ctl, &area, MAX_RECORD) {
            Err(ReserveError::Corrupt(ProtocolError::RingCorrupt(_))) => {}
            other => panic!("{what}: head {head} with tail {tail}: {other:?}"),
        }
        assert_eq!(
            prod.tail(),
            tail,
            "{what}: the producer moved after the error"
        );
    }
    // A legitimate head that frees room.
    let ctl = RingCtl::default();
    let mut prod = Producer::new(CAP, MAX_RECORD);
    fill(&mut prod, &ctl, &area);
    assert_eq!(prod.try_reserve(&ctl, &area, 0), Err(ReserveError::Full));
    // Release: pairs with the Acquire head load in `Producer::refresh_head`.
    ctl.cons
        .head
        .store(1024, vshm_protocol::sync::Ordering::Release);
    assert!(prod.try_reserve(&ctl, &area, 0).is_ok());
}
