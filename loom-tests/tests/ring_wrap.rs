//! Model (a): one producer, one consumer, records that force a padding
//! record and a wrap-around of a 64-byte ring.
#![cfg(vshm_loom)]

use loom::sync::Arc;
use loom::thread;
use vshm_loom_tests::{check, payload, pop_spin, push_spin, LoomArea, BOUND};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{Consumer, Producer};

const CAP: u64 = 64;
const MAX_RECORD: u64 = 16;

/// (id, payload length). Ring positions: #1 [0,16), #2 [16,48), then #3
/// needs 32 bytes at offset 48 where only 16 remain: a 16-byte padding
/// record [48,64) and #3 at [64,96) (offset 0, after the wrap), which needs
/// #1 and #2 released first; #4 [96,128) needs the padding and #3 released.
const RECORDS: [(u64, usize); 4] = [(1, 0), (2, 16), (3, 13), (4, 8)];

#[test]
fn spsc_wrap_and_padding() {
    check("a: spsc_wrap_and_padding", BOUND, || {
        let ctl = Arc::new(RingCtl::default());
        let area = Arc::new(LoomArea::new(CAP as usize));

        let producer = {
            let (ctl, area) = (ctl.clone(), area.clone());
            thread::spawn(move || {
                let mut prod = Producer::new(CAP, MAX_RECORD);
                for (id, len) in RECORDS {
                    push_spin(&mut prod, &ctl, &*area, id, &payload(id, len));
                }
                // 16 + 32 + (16 padding + 32) + 32: the padding was written.
                assert_eq!(prod.tail(), 128);
            })
        };

        let mut cons = Consumer::new(CAP, MAX_RECORD);
        for (id, len) in RECORDS {
            let (hdr, bytes) = pop_spin(&mut cons, &ctl, &*area);
            assert_eq!(hdr.id, id, "FIFO order");
            assert_eq!(bytes, payload(id, len), "record {id} bytes");
        }
        assert_eq!(cons.head(), 128);
        producer.join().unwrap();
    });
}
