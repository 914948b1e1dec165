//! Model (e): fragmentation. One message larger than `max_record` goes
//! through a 64-byte ring as three fragments written by
//! `frame::FragmentWriter::pump` (resumed whenever the ring is full) while
//! the consumer reassembles it with `frame::Reassembler::push`, releasing
//! each fragment's space as it goes. A small message first shifts the
//! fragments so that a padding record falls between two of them.
//!
//! A second model runs the same kind of message through the blocking
//! endpoints' flow: the production `frame::send_message` and
//! `frame::receive_message` (what `endpoint::Sender::send` and
//! `Receiver::recv` run) under the production sleep loop `wake::wait`; both
//! sides sleep on the futex model between fragments.
#![cfg(vshm_loom)]

use loom::sync::Arc;
use loom::thread;
use vshm_loom_tests::{check, payload, peek_spin, push_spin, LoomArea, BOUND, SLEEP};
use vshm_protocol::frame::{self, FragmentWriter, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{kind, Consumer, Producer};
use vshm_protocol::wake::{self, ParkAtOnce, Side};
use vshm_protocol::ProtocolError;

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

/// `endpoint::Sender::send` with the park-at-once strategy: the production
/// `frame::send_message`, waiting for room with the production sleep loop.
fn send(prod: &mut Producer, ctl: &RingCtl, area: &LoomArea, id: u64, data: &[u8]) {
    frame::send_message::<_, ProtocolError>(
        prod,
        ctl,
        area,
        (id, kind::MSG),
        data,
        || wake::wake(ctl, Side::Consumer),
        |_started, ready| {
            let mut w = ParkAtOnce::new(SLEEP, || Ok(ready()?.then_some(())));
            wake::wait(ctl, Side::Producer, &mut w)
        },
    )
    .expect("send");
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
            // `endpoint::Receiver::recv`: the production
            // `frame::receive_message` under the production sleep loop.
            let mut w = ParkAtOnce::new(SLEEP, || {
                frame::receive_message(&mut cons, &mut reasm, &ctl, &*area, || {
                    wake::wake(&ctl, Side::Producer)
                })
            });
            let m = wake::wait(&ctl, Side::Consumer, &mut w).expect("reassembly");
            producer.join().unwrap();
            assert_eq!((m.id, m.bytes.to_vec()), (2, payload(2, BIG)));
        },
    );
}
