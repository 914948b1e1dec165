//! Model (c): the wake protocol (need-wakeup flag + SeqCst fences + futex)
//! loses no wakeup. The futex is loom's Mutex + Condvar model in
//! `vshm_protocol::wake::model` with no timeout, so a lost wakeup is a loom
//! deadlock (both threads blocked, or the consumer blocked forever after
//! the producer finished).
#![cfg(vshm_loom)]
// The statistics counters are std atomics on purpose: they outlive each loom
// execution (loom atomics exist only inside one), so they cannot come from
// the loom-mapped `vshm_protocol::sync` shim.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use loom::sync::atomic::Ordering;
use loom::sync::Arc;
use loom::thread;
use vshm_loom_tests::{
    check, payload, recv_wait, send_wait, try_pop, try_push, LoomArea, BOUND, BOUND_LARGE, SLEEP,
};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{Consumer, Producer};
use vshm_protocol::wake::{self, Announced, Side};

const CAP: u64 = 64;
const MAX_RECORD: u64 = 16;

/// Runs the model; returns how many executions had the consumer and the
/// producer actually sleep on the futex (so the test can insist that the
/// interesting interleavings were explored).
fn run(name: &'static str, bound: usize, records: &'static [(u64, usize)]) -> (usize, usize) {
    let cons_slept = std::sync::Arc::new(AtomicUsize::new(0));
    let prod_slept = std::sync::Arc::new(AtomicUsize::new(0));
    let (cs, ps) = (cons_slept.clone(), prod_slept.clone());
    check(name, bound, move || {
        let ctl = Arc::new(RingCtl::default());
        let area = Arc::new(LoomArea::new(CAP as usize));

        let producer = {
            let (ctl, area) = (ctl.clone(), area.clone());
            thread::spawn(move || {
                let mut prod = Producer::new(CAP, MAX_RECORD);
                let mut slept = 0;
                for &(id, len) in records {
                    slept += send_wait(&mut prod, &ctl, &*area, id, &payload(id, len));
                }
                slept
            })
        };

        let mut cons = Consumer::new(CAP, MAX_RECORD);
        let mut slept = 0;
        for &(id, len) in records {
            let (hdr, bytes, s) = recv_wait(&mut cons, &ctl, &*area);
            assert_eq!(hdr.id, id);
            assert_eq!(bytes, payload(id, len));
            slept += s;
        }
        if slept > 0 {
            cs.fetch_add(1, Relaxed);
        }
        if producer.join().unwrap() > 0 {
            ps.fetch_add(1, Relaxed);
        }
        // Every announcement was withdrawn.
        assert_eq!(ctl.wake.cons_waiting.load(Ordering::Relaxed), 0);
        assert_eq!(ctl.wake.prod_waiting.load(Ordering::Relaxed), 0);
    });
    let r = (cons_slept.load(Relaxed), prod_slept.load(Relaxed));
    println!(
        "  {name}: executions where the consumer slept: {}, the producer slept: {}",
        r.0, r.1
    );
    r
}

/// The consumer finds the ring empty and sleeps; the producer's publish
/// must see its announcement (or the consumer's re-check must see the
/// record). Two records of 32 bytes: the ring never fills.
#[test]
fn consumer_sleeps_no_lost_wakeup() {
    let (cons_slept, _) = run(
        "c1: consumer_sleeps_no_lost_wakeup",
        BOUND,
        &[(1, 16), (2, 5)],
    );
    assert!(cons_slept > 0, "the model never made the consumer sleep");
}

/// Three 32-byte records through a 64-byte ring: the producer finds the
/// ring full and sleeps until the consumer's release wakes it, while the
/// consumer sleeps whenever the ring is empty. Both directions of the
/// protocol at once.
#[test]
fn producer_waits_for_space_no_lost_wakeup() {
    let (cons_slept, prod_slept) = run(
        "c2: producer_waits_for_space_no_lost_wakeup",
        BOUND_LARGE,
        &[(1, 16), (2, 5), (3, 9)],
    );
    assert!(
        cons_slept > 0 && prod_slept > 0,
        "the model never made both sides sleep"
    );
}

/// Model (c3): a sole sleeper whose wakers claim its flag (the core's serve
/// loop on a submission ring, `wake::announce_sole`, woken by clients
/// through `wake::claim`). The consumer loops as the serve loop does: take
/// what is there, else announce (swap the flag to 1, F1), re-check, sleep,
/// withdraw (store 0). The producer publishes three records (the third
/// waits for space), and after each publish that saw the flag up it claims
/// the flag and wakes only if its claim took it; the wake (a futex bump)
/// stands in for the doorbell, which also keeps a ring made before the
/// sleep. A publish that finds the flag down because an earlier one claimed
/// it rings nothing: the consumer's next announcement must find its record.
/// A lost wakeup is a loom deadlock.
#[test]
fn sole_sleeper_claimed_flag_no_lost_wakeup() {
    const RECORDS: [(u64, usize); 3] = [(1, 16), (2, 5), (3, 9)];
    #[derive(Default)]
    struct Seen {
        /// The consumer slept.
        slept: AtomicUsize,
        /// A publish found the flag down after an earlier publish's claim
        /// took it (so it rang nothing).
        down_after_claim: AtomicUsize,
        /// ... and the consumer then found a record only by the re-check
        /// of a later announcement.
        found_by_recheck: AtomicUsize,
        /// A claim's swap found the flag already down (the consumer
        /// withdrew between the producer's load and its swap).
        claim_raced: AtomicUsize,
    }
    let seen = std::sync::Arc::new(Seen::default());
    let sn = seen.clone();
    check(
        "c3: sole_sleeper_claimed_flag_no_lost_wakeup",
        BOUND_LARGE,
        move || {
            let ctl = Arc::new(RingCtl::default());
            let area = Arc::new(LoomArea::new(CAP as usize));
            let producer = {
                let (ctl, area) = (ctl.clone(), area.clone());
                thread::spawn(move || {
                    let mut prod = Producer::new(CAP, MAX_RECORD);
                    let (mut claimed, mut down_after_claim, mut raced) = (false, false, false);
                    for (id, len) in RECORDS {
                        while !try_push(&mut prod, &ctl, &*area, id, &payload(id, len)) {
                            thread::yield_now();
                        }
                        if !prod.publish(&ctl) {
                            down_after_claim |= claimed;
                        } else if wake::claim(&ctl, Side::Consumer) {
                            claimed = true;
                            wake::wake(&ctl, Side::Consumer);
                        } else {
                            raced = true;
                        }
                    }
                    (down_after_claim, raced)
                })
            };
            let mut cons = Consumer::new(CAP, MAX_RECORD);
            let (mut got, mut slept, mut by_recheck) = (0, false, false);
            while got < RECORDS.len() {
                if let Some((hdr, bytes)) = try_pop(&mut cons, &ctl, &*area) {
                    let (id, len) = RECORDS[got];
                    assert_eq!(hdr.id, id);
                    assert_eq!(bytes, payload(id, len));
                    cons.release(&ctl);
                    got += 1;
                    continue;
                }
                let recheck = || Ok::<_, ()>((!cons.is_empty(&ctl).expect("ring")).then_some(()));
                match wake::announce_sole(&ctl, Side::Consumer, recheck) {
                    Ok(Announced::Sleep(armed)) => {
                        slept = true;
                        armed.sleep(SLEEP);
                    }
                    Ok(Announced::Ready(())) => by_recheck = true,
                    Err(()) => unreachable!("the re-check does not fail"),
                }
            }
            let (down_after_claim, raced) = producer.join().unwrap();
            for (hit, n) in [
                (slept, &sn.slept),
                (down_after_claim, &sn.down_after_claim),
                (down_after_claim && by_recheck, &sn.found_by_recheck),
                (raced, &sn.claim_raced),
            ] {
                if hit {
                    n.fetch_add(1, Relaxed);
                }
            }
            // The last withdrawal or claim took the flag down.
            assert_eq!(ctl.wake.cons_waiting.load(Ordering::Relaxed), 0);
        },
    );
    let n = |a: &AtomicUsize| a.load(Relaxed);
    println!(
        "  c3: executions where the consumer slept: {}, a publish found the flag down after a \
         claim: {} (the record then found by a re-check: {}), a claim raced a withdrawal: {}",
        n(&seen.slept),
        n(&seen.down_after_claim),
        n(&seen.found_by_recheck),
        n(&seen.claim_raced)
    );
    assert!(
        n(&seen.slept) > 0,
        "the model never made the consumer sleep"
    );
    assert!(
        n(&seen.found_by_recheck) > 0,
        "no execution had a publish ring nothing after a claim and the consumer's re-check find it"
    );
    assert!(n(&seen.claim_raced) > 0, "no claim ever raced a withdrawal");
}
