//! Model (e): fragmentation. One message larger than `max_record` goes
//! through a 64-byte ring as three fragments written by
//! `frame::FragmentWriter::pump` (resumed whenever the ring is full) while
//! the consumer reassembles it with `frame::Reassembler::push`, releasing
//! each fragment's space as it goes. A small message first shifts the
//! fragments so that a padding record falls between two of them.
//!
//! A second model runs the same kind of message through the blocking
//! endpoints' flow (`endpoint::Sender::send` / `Receiver::recv`, which are
//! not built under loom and are mirrored here step for step): both sides
//! sleep on the futex model between fragments.
#![cfg(vshm_loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use vshm_loom_tests::{check, payload, peek_spin, push_spin, LoomArea, BOUND};
use vshm_protocol::frame::{FragmentWriter, Message, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{kind, Consumer, Producer, ReserveError};
use vshm_protocol::wake::{self, Side};

const CAP: u64 = 64;
const MAX_RECORD: u64 = 16;
/// 8 bytes in the first fragment (after the 8-byte total), then 16 + 16.
const BIG: usize = 40;

#[test]
fn fragmented_message_across_small_ring() {
    check("e: fragmented_message_across_small_ring", BOUND, || {
        let ctl = Arc::new(RingCtl::default());
        let area = Arc::new(LoomArea::new(CAP as usize));

        let producer = {
            let (ctl, area) = (ctl.clone(), area.clone());
            thread::spawn(move || {
                let mut prod = Producer::new(CAP, MAX_RECORD);
                // Record [0,16); the fragments go to [16,48), padding
                // [48,64), [64,96) and [96,128).
                push_spin(&mut prod, &ctl, &*area, 1, &[]);
                let big = payload(2, BIG);
                let mut w = FragmentWriter::new(2, kind::MSG);
                loop {
                    let done = w.pump(&mut prod, &ctl, &*area, &big).expect("pump");
                    prod.publish(&ctl);
                    if done {
                        break;
                    }
                    thread::yield_now();
                }
                assert_eq!(prod.tail(), 128, "fragments and padding as planned");
            })
        };

        let mut cons = Consumer::new(CAP, MAX_RECORD);
        let mut reasm = Reassembler::new(1024);
        let mut got = Vec::new();
        let mut records = 0;
        while got.len() < 2 {
            let rec = peek_spin(&mut cons, &ctl, &*area);
            let out = reasm.push(&*area, &rec).expect("reassembly");
            cons.advance(&rec);
            cons.release(&ctl);
            records += 1;
            if let Some(m) = out {
                got.push((m.id, m.bytes.to_vec()));
            }
        }
        producer.join().unwrap();
        assert_eq!(records, 4, "one small record and three fragments");
        assert_eq!(got[0], (1, vec![]));
        assert_eq!(got[1], (2, payload(2, BIG)));
        assert!(!reasm.in_progress());
    });
}

/// The payload length of the record `pump` reserves next (what
/// `endpoint::Sender::send` waits for room for): an unfragmented message's
/// own length, a first fragment max_record (8-byte total + data), a later
/// one min(rest, max_record).
fn next_record_len(w: &FragmentWriter, data: &[u8], max: usize) -> u64 {
    let left = data.len() - w.sent();
    (if !w.started() && data.len() > max {
        max
    } else {
        left.min(max)
    }) as u64
}

/// `wait_until` with the park-at-once strategy: check, announce, re-check,
/// sleep (no timeout under loom).
fn wait_until(ctl: &RingCtl, side: Side, mut ready: impl FnMut() -> bool) {
    loop {
        if ready() {
            return;
        }
        let seq = wake::prepare_sleep(ctl, side);
        if ready() {
            wake::cancel_sleep(ctl, side);
            return;
        }
        wake::sleep(ctl, side, seq, Duration::from_secs(1));
    }
}

/// `endpoint::Sender::send`: pump fragments, publish, and while the ring
/// is full wait (sleeping on the producer futex) for room for the next one.
fn send(prod: &mut Producer, ctl: &RingCtl, area: &LoomArea, id: u64, data: &[u8]) {
    let mut w = FragmentWriter::new(id, kind::MSG);
    loop {
        let done = w.pump(prod, ctl, area, data).expect("pump");
        if prod.publish(ctl) {
            wake::wake(ctl, Side::Consumer);
        }
        if done {
            return;
        }
        let need = next_record_len(&w, data, prod.max_record() as usize);
        wait_until(ctl, Side::Producer, || {
            match prod.try_reserve(ctl, area, need) {
                Ok(_) | Err(ReserveError::TooLarge) => true,
                Err(ReserveError::Full) => false,
                Err(ReserveError::Corrupt(e)) => panic!("{e}"),
            }
        });
    }
}

/// `endpoint::Receiver::step`: feed records to the reassembler, releasing
/// fragments as they are consumed (waking the producer if it waits).
fn step(
    cons: &mut Consumer,
    reasm: &mut Reassembler,
    ctl: &RingCtl,
    area: &LoomArea,
) -> Option<Message> {
    let mut out = None;
    while let Some(rec) = cons.peek(ctl, area).expect("ring corrupt") {
        out = reasm.push(area, &rec).expect("reassembly");
        cons.advance(&rec);
        if out.is_some() {
            break;
        }
        if cons.release(ctl) {
            wake::wake(ctl, Side::Producer);
        }
    }
    if cons.release(ctl) {
        wake::wake(ctl, Side::Producer);
    }
    out
}

/// The blocking endpoints' flow end to end: a fragmented message through a
/// ring smaller than the message, the producer sleeping for space between
/// fragments and the consumer sleeping for fragments, on the futex model.
/// A lost wakeup, or a wait for room that can never come (or that reads as
/// "ready" without progress and spins), fails the model.
#[test]
fn fragmented_message_with_sleeping_endpoints() {
    check(
        "e2: fragmented_message_with_sleeping_endpoints",
        BOUND,
        || {
            let ctl = Arc::new(RingCtl::default());
            let area = Arc::new(LoomArea::new(CAP as usize));

            let producer = {
                let (ctl, area) = (ctl.clone(), area.clone());
                thread::spawn(move || {
                    let mut prod = Producer::new(CAP, MAX_RECORD);
                    send(&mut prod, &ctl, &area, 2, &payload(2, BIG));
                })
            };

            let mut cons = Consumer::new(CAP, MAX_RECORD);
            let mut reasm = Reassembler::new(1024);
            let mut got = None;
            wait_until(&ctl, Side::Consumer, || {
                got = step(&mut cons, &mut reasm, &ctl, &area);
                got.is_some()
            });
            producer.join().unwrap();
            let m = got.expect("message");
            assert_eq!((m.id, m.bytes.to_vec()), (2, payload(2, BIG)));
        },
    );
}
