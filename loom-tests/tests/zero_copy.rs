//! Model (d): the completion side. The core produces completions out of
//! order with respect to request ids; the client takes them zero-copy:
//! it holds two records in place, frees the newer one first, and returns
//! ring space with `release_to` only up to the oldest record it still
//! holds. The producer must never write a held record: with the data area
//! made of loom cells, such a write would be a causality violation (or,
//! failing that, a corrupt read the model asserts on).
#![cfg(vshm_loom)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use vshm_loom_tests::{check, payload, peek_spin, push_spin, LoomArea, BOUND, BOUND_LARGE};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::pins::Pins;
use vshm_protocol::ring::{Consumer, Producer, Record};

const CAP: u64 = 64;
const MAX_RECORD: u64 = 16;

/// Completions in the order the core finishes the requests (not the order
/// of their ids); each is 32 bytes, so the 64-byte ring holds two and the
/// third needs the space of the first.
const COMPLETIONS: [(u64, usize); 4] = [(2, 16), (1, 7), (4, 12), (3, 1)];

fn len_of(id: u64) -> usize {
    COMPLETIONS
        .iter()
        .find(|c| c.0 == id)
        .expect("known request id")
        .1
}

/// Read a held record's payload in place (no copy out of the ring before
/// this point) and check it; remove its id from the pending requests.
fn complete(area: &LoomArea, rec: &Record, pending: &mut Vec<u64>) {
    let id = rec.hdr.id;
    let bytes = area.read_at(rec.payload_off, rec.hdr.len as usize);
    assert_eq!(
        bytes,
        payload(id, len_of(id)),
        "completion {id} bytes (held record overwritten?)"
    );
    let i = pending
        .iter()
        .position(|&p| p == id)
        .expect("completion for a request not pending (duplicate?)");
    pending.swap_remove(i);
}

/// `early_release`: the negative control. Releasing everything consumed
/// while the older record is still held lets the producer overwrite it.
fn model(early_release: bool) {
    let ctl = Arc::new(RingCtl::default());
    let area = Arc::new(LoomArea::new(CAP as usize));

    let core = {
        let (ctl, area) = (ctl.clone(), area.clone());
        thread::spawn(move || {
            let mut prod = Producer::new(CAP, MAX_RECORD);
            for (id, len) in COMPLETIONS {
                push_spin(&mut prod, &ctl, &*area, id, &payload(id, len));
            }
        })
    };

    let mut cons = Consumer::new(CAP, MAX_RECORD);
    let mut pending = vec![1, 2, 3, 4];
    for _ in 0..2 {
        // Hold two records in place.
        let older = peek_spin(&mut cons, &ctl, &*area);
        cons.advance(&older);
        let newer = peek_spin(&mut cons, &ctl, &*area);
        cons.advance(&newer);
        // Free the newer one first. Only space before the oldest held
        // record may go back to the producer: here, none.
        complete(&area, &newer, &mut pending);
        let upto = if early_release {
            cons.head()
        } else {
            older.pos()
        };
        cons.release_to(&ctl, upto);
        assert!(early_release || cons.released() == older.pos());
        // Let the producer try to reuse space while `older` is held.
        thread::yield_now();
        complete(&area, &older, &mut pending);
        // Nothing held any more: release everything consumed.
        cons.release_to(&ctl, cons.head());
    }
    assert!(pending.is_empty(), "completions missing: {pending:?}");
    core.join().unwrap();
}

#[test]
fn out_of_order_completions_zero_copy_release_to() {
    check(
        "d: out_of_order_completions_zero_copy_release_to",
        BOUND,
        || model(false),
    );
}

/// Negative control: the same model with the held record released early
/// must fail, which shows the loom cells do catch the producer writing a
/// record the consumer still reads in place.
#[test]
#[should_panic(expected = "Causality violation")]
fn negative_control_early_release_is_caught() {
    check("d-negative: early_release", BOUND, || model(true));
}

/// The client's completion ring under its short lock: the consumer and
/// the records handed out in place (`vshm_protocol::pins::Pins`, as in the
/// client's completion side).
struct Pinned {
    cons: Consumer,
    pins: Pins,
}

/// Drop of an in-place reply: unpin under the lock, then release up to the
/// oldest pin (`Pins::release`, the client's `release_locked`).
fn unpin(ring: &Mutex<Pinned>, ctl: &RingCtl, start: u64) {
    let mut r = ring.lock().unwrap();
    assert!(r.pins.unpin(start), "unpinned twice");
    let Pinned { cons, pins } = &mut *r;
    pins.release(cons, ctl);
}

/// Take the next record in place and pin it (the leader's drain).
fn take_pinned(ring: &Mutex<Pinned>, ctl: &RingCtl, area: &LoomArea) -> Record {
    loop {
        {
            let mut r = ring.lock().unwrap();
            if let Some(rec) = r.cons.peek(ctl, area).expect("ring corrupt") {
                r.cons.advance(&rec);
                r.pins.pin(&rec);
                return rec;
            }
        }
        thread::yield_now();
    }
}

/// Model (d, client threads): replies handed out in place are dropped by
/// *different* threads, in any order, each unpinning under the client's
/// ring lock; space goes back only up to the oldest pinned record. The
/// core keeps writing completions into the space as it is released: it
/// must never write a record some thread still reads in place.
#[test]
fn replies_dropped_by_different_threads() {
    /// Two fill the ring; the third needs the first one's space.
    const CQ: [(u64, usize); 3] = [(7, 16), (5, 3), (6, 11)];
    check(
        "d2: replies_dropped_by_different_threads",
        BOUND_LARGE,
        || {
            let ctl = Arc::new(RingCtl::default());
            let area = Arc::new(LoomArea::new(CAP as usize));
            let ring = Arc::new(Mutex::new(Pinned {
                cons: Consumer::new(CAP, MAX_RECORD),
                pins: Pins::new(),
            }));

            let core = {
                let (ctl, area) = (ctl.clone(), area.clone());
                thread::spawn(move || {
                    let mut prod = Producer::new(CAP, MAX_RECORD);
                    for (id, len) in CQ {
                        push_spin(&mut prod, &ctl, &*area, id, &payload(id, len));
                    }
                })
            };

            let check_reply = |area: &LoomArea, rec: &Record| {
                let len = CQ.iter().find(|c| c.0 == rec.hdr.id).expect("known id").1;
                let bytes = area.read_at(rec.payload_off, rec.hdr.len as usize);
                assert_eq!(
                    bytes,
                    payload(rec.hdr.id, len),
                    "reply {} bytes",
                    rec.hdr.id
                );
            };

            let first = take_pinned(&ring, &ctl, &area);
            let second = take_pinned(&ring, &ctl, &area);
            // The second reply goes to another thread, which reads it in place
            // and drops it whenever it likes.
            let other = {
                let (ctl, area, ring) = (ctl.clone(), area.clone(), ring.clone());
                thread::spawn(move || {
                    check_reply(&area, &second);
                    unpin(&ring, &ctl, second.pos());
                    second.hdr.id
                })
            };
            check_reply(&area, &first);
            unpin(&ring, &ctl, first.pos());
            let third = take_pinned(&ring, &ctl, &area);
            check_reply(&area, &third);
            unpin(&ring, &ctl, third.pos());

            let mut ids = vec![first.hdr.id, other.join().unwrap(), third.hdr.id];
            core.join().unwrap();
            ids.sort_unstable();
            assert_eq!(ids, [5, 6, 7], "each completion exactly once");
            let r = ring.lock().unwrap();
            assert!(r.pins.is_empty());
            assert_eq!(r.cons.released(), r.cons.head());
        },
    );
}
