//! Model-based property tests of the ring and of message fragmentation.
//!
//! * Each ring behaves exactly like a FIFO (`VecDeque`) model under random
//!   sequences of reserve/commit, publish, peek/advance and release, with
//!   records of every size: zero-length, exactly filling the rest of the data
//!   area, exactly filling the free space, wrapping (padding), too large.
//!   The model predicts the exact outcome of every reservation (`Ok`,
//!   `Full`, `TooLarge`), every position, and every byte read back.
//! * `FragmentWriter` + `Reassembler` deliver messages of up to several times
//!   the ring size intact and in order when the consumer only drains a few
//!   records at a time.

use std::collections::VecDeque;

use proptest::prelude::*;
use vshm_protocol::frame::{FragmentWriter, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{
    kind, record_size, Consumer, HeapArea, Producer, RecordHeader, ReserveError, REC_HDR,
};

/// Deterministic payload bytes for record `id` (so a corrupted or misplaced
/// byte is always noticed): a window of a fixed pseudo-random table.
fn payload(id: u64, len: usize) -> Vec<u8> {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..1 << 16)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    });
    let start = (id.wrapping_mul(7919) % (table.len() - len) as u64) as usize;
    table[start..start + len].to_vec()
}

#[derive(Debug, Clone)]
enum Op {
    /// Reserve + write + commit a record of this payload length.
    Push(u64),
    /// A record that ends exactly at the end of the data area.
    PushToEnd,
    /// A record that exactly fills the free contiguous space.
    PushFill,
    /// Publish everything committed.
    Publish,
    /// Peek + read + advance one record.
    Pop,
    /// Return consumed space to the producer.
    Release,
    /// Pop until empty, then release.
    Drain,
}

/// Decode one generated `(selector, number)` pair into an operation
/// (weighted towards pushes and pops). Generating plain integers and mapping
/// them here is much cheaper than a tree of `prop_oneof!` strategies.
fn op(cap: u64, sel: u8, n: u64) -> Op {
    match sel % 43 {
        0..=2 => Op::Push(0),
        3..=12 => Op::Push(n % (cap / 2 + 1)),
        13..=16 => Op::Push(n % 33),
        17 => Op::Push(cap / 2 + n % (cap / 2 + 65)),
        18..=19 => Op::PushToEnd,
        20..=21 => Op::PushFill,
        22..=27 => Op::Publish,
        28..=37 => Op::Pop,
        38..=41 => Op::Release,
        _ => Op::Drain,
    }
}

#[derive(Debug)]
struct Entry {
    end: u64,
    id: u64,
    data: Vec<u8>,
}

/// The reference model: positions plus a FIFO of committed records.
#[derive(Debug, Default)]
struct Model {
    cap: u64,
    max_record: u64,
    tail: u64,
    pub_tail: u64,
    head: u64,
    released: u64,
    /// Committed, not yet consumed records (oldest first).
    queue: VecDeque<Entry>,
    next_id: u64,
}

impl Model {
    fn expect_reserve(&self, len: u64) -> Result<(u64, u64), ReserveError> {
        if len > self.max_record {
            return Err(ReserveError::TooLarge);
        }
        let need = record_size(len);
        let off = self.tail % self.cap;
        let to_end = self.cap - off;
        let pad = if need > to_end { to_end } else { 0 };
        let free = self.cap - (self.tail - self.released);
        if free < pad + need {
            return Err(ReserveError::Full);
        }
        Ok((pad, need))
    }
}

struct Ring {
    ctl: RingCtl,
    area: HeapArea,
    prod: Producer,
    cons: Consumer,
}

/// What a run exercised (so the test can prove it covers the edge cases).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ok: usize,
    full: usize,
    too_large: usize,
    /// Records that needed a padding record first.
    wrapped: usize,
    /// Records ending exactly at the end of the data area.
    exact_end: usize,
    /// Reservations that left the ring exactly full.
    exact_full: usize,
    zero_len: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ok += o.ok;
        self.full += o.full;
        self.too_large += o.too_large;
        self.wrapped += o.wrapped;
        self.exact_end += o.exact_end;
        self.exact_full += o.exact_full;
        self.zero_len += o.zero_len;
    }
}

fn run_ops(cap: u64, max_record: u64, ops: &[Op]) -> Result<Stats, TestCaseError> {
    let mut st = Stats::default();
    let mut r = Ring {
        ctl: RingCtl::default(),
        area: HeapArea::new(cap as usize),
        prod: Producer::new(cap, max_record),
        cons: Consumer::new(cap, max_record),
    };
    let mut m = Model {
        cap,
        max_record,
        ..Model::default()
    };
    let mut buf = Vec::new();
    for op in ops {
        let push_len = match op {
            Op::Push(len) => Some(*len),
            Op::PushToEnd => Some(cap - m.tail % cap - REC_HDR),
            Op::PushFill => {
                let free = cap - (m.tail - m.released);
                let contiguous = free.min(cap - m.tail % cap);
                Some(contiguous.saturating_sub(REC_HDR))
            }
            _ => None,
        };
        if let Some(len) = push_len {
            let expected = m.expect_reserve(len);
            let got = r.prod.try_reserve(&r.ctl, &r.area, len);
            match (&expected, got) {
                (Ok((pad, need)), Ok(res)) => {
                    let start = m.tail + pad;
                    prop_assert_eq!(res.payload_off, start % cap + REC_HDR);
                    prop_assert_eq!(res.len, len);
                    prop_assert!(res.payload_off + len <= cap, "record crosses the end");
                    let id = m.next_id;
                    m.next_id += 1;
                    let data = payload(id, len as usize);
                    r.prod.write_payload(&r.area, &res, &data);
                    r.prod.commit(
                        &r.area,
                        res,
                        RecordHeader {
                            len: len as u32,
                            kind: kind::MSG,
                            flags: 0,
                            id,
                        },
                    );
                    m.tail = start + need;
                    prop_assert_eq!(r.prod.tail(), m.tail);
                    m.queue.push_back(Entry {
                        end: m.tail,
                        id,
                        data,
                    });
                    st.ok += 1;
                    st.wrapped += usize::from(*pad > 0);
                    st.exact_end += usize::from(m.tail.is_multiple_of(cap));
                    st.exact_full += usize::from(m.tail - m.released == cap);
                    st.zero_len += usize::from(len == 0);
                }
                (Err(e), Err(g)) => {
                    prop_assert_eq!(e, &g);
                    prop_assert_eq!(
                        r.prod.tail(),
                        m.tail,
                        "a refused reservation moved the tail"
                    );
                    if g == ReserveError::Full {
                        st.full += 1;
                        // Liveness: an empty ring always accepts a record of at
                        // most half its size (the layout keeps max_record + 16
                        // <= capacity / 4 for exactly this reason).
                        prop_assert!(
                            !(m.released == m.tail && 2 * record_size(len) <= cap),
                            "empty ring refused {} bytes",
                            len
                        );
                    } else {
                        st.too_large += 1;
                    }
                }
                (e, g) => {
                    return Err(TestCaseError::fail(format!(
                        "reserve({len}) at tail {} released {}: model {e:?}, ring {g:?}",
                        m.tail, m.released
                    )))
                }
            }
            continue;
        }
        match op {
            Op::Publish => {
                prop_assert!(!r.prod.publish(&r.ctl), "no consumer is waiting");
                m.pub_tail = m.tail;
            }
            Op::Pop => pop(&mut r, &mut m, &mut buf)?,
            Op::Release => release(&mut r, &mut m)?,
            Op::Drain => {
                while m.queue.front().is_some_and(|e| e.end <= m.pub_tail) {
                    pop(&mut r, &mut m, &mut buf)?;
                }
                pop(&mut r, &mut m, &mut buf)?;
                release(&mut r, &mut m)?;
            }
            _ => unreachable!(),
        }
        let front_published = m.queue.front().is_some_and(|e| e.end <= m.pub_tail);
        prop_assert_eq!(r.cons.is_empty(&r.ctl).unwrap(), !front_published);
        prop_assert_eq!(r.cons.head(), m.head);
    }
    // Finally publish and drain everything: the FIFO must come out whole.
    r.prod.publish(&r.ctl);
    m.pub_tail = m.tail;
    while !m.queue.is_empty() {
        pop(&mut r, &mut m, &mut buf)?;
    }
    pop(&mut r, &mut m, &mut buf)?;
    release(&mut r, &mut m)?;
    prop_assert_eq!(r.cons.head(), m.tail);
    Ok(st)
}

fn pop(r: &mut Ring, m: &mut Model, buf: &mut Vec<u8>) -> Result<(), TestCaseError> {
    let got = r
        .cons
        .peek(&r.ctl, &r.area)
        .map_err(|e| TestCaseError::fail(format!("peek: {e}")))?;
    match (m.queue.front(), got) {
        (Some(e), Some(rec)) if e.end <= m.pub_tail => {
            prop_assert_eq!(rec.hdr.id, e.id);
            prop_assert_eq!(rec.hdr.kind, kind::MSG);
            prop_assert_eq!(rec.hdr.flags, 0);
            prop_assert_eq!(u64::from(rec.hdr.len), e.data.len() as u64);
            prop_assert_eq!(rec.end(), e.end);
            prop_assert_eq!(rec.payload_off % 16, 0);
            r.cons.read_payload(&r.area, &rec, buf);
            prop_assert!(buf == &e.data, "payload of record {} differs", e.id);
            r.cons.advance(&rec);
            m.head = e.end;
            m.queue.pop_front();
        }
        (front, None) => {
            prop_assert!(
                front.is_none_or(|e| e.end > m.pub_tail),
                "peek found nothing but record {:?} is published",
                front.map(|e| e.id)
            );
        }
        (front, Some(rec)) => {
            return Err(TestCaseError::fail(format!(
                "peek returned {rec:?}, model front {:?} (published up to {})",
                front.map(|e| (e.id, e.end)),
                m.pub_tail
            )))
        }
    }
    Ok(())
}

fn release(r: &mut Ring, m: &mut Model) -> Result<(), TestCaseError> {
    prop_assert!(!r.cons.release(&r.ctl), "no producer is waiting");
    m.released = m.head;
    prop_assert_eq!(r.cons.released(), m.released);
    Ok(())
}

fn ring_params() -> impl Strategy<Value = (u64, u64)> {
    (0..5u32, 0..3u8, any::<u64>()).prop_map(|(c, m, n)| {
        let cap = [64u64, 128, 256, 1024, 4096][c as usize];
        let max = match m {
            // As the layout sets it: a quarter of the ring minus a header.
            0 => (cap / 4).saturating_sub(16),
            // As large as a record can be.
            1 => cap - REC_HDR,
            _ => n % (cap - REC_HDR + 1),
        };
        (cap, max)
    })
}

#[test]
fn ring_matches_fifo_model() {
    use proptest::test_runner::{Config, TestRunner};
    let total = std::sync::Mutex::new(Stats::default());
    let mut runner = TestRunner::new(Config {
        cases: 1024,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        ring_params(),
        prop::collection::vec((any::<u8>(), any::<u64>()), 1..400),
    );
    runner
        .run(&strategy, |((cap, max_record), raw)| {
            let ops: Vec<Op> = raw.iter().map(|&(s, n)| op(cap, s, n)).collect();
            let st = run_ops(cap, max_record, &ops)?;
            total.lock().unwrap().add(&st);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let t = *total.lock().unwrap();
    println!("{t:?}");
    assert!(
        t.ok > 0
            && t.full > 0
            && t.too_large > 0
            && t.wrapped > 0
            && t.exact_end > 0
            && t.exact_full > 0
            && t.zero_len > 0,
        "the random cases missed an edge case: {t:?}"
    );
}

/// Hand-picked sequences covering the edge cases the random ones hit only
/// by chance.
#[test]
fn ring_edge_cases() {
    use Op::*;
    let cases: Vec<(u64, u64, Vec<Op>)> = vec![
        // A record ending exactly at the end, then one at offset 0.
        (
            256,
            240,
            vec![
                Push(100),
                PushToEnd,
                Publish,
                Pop,
                Pop,
                Release,
                Push(0),
                Publish,
                Drain,
            ],
        ),
        // Exact fill of the whole ring, full, then drain and reuse.
        (
            256,
            240,
            vec![
                PushFill,
                Push(0),
                Publish,
                Pop,
                Push(0),
                Release,
                Push(0),
                Publish,
                Drain,
            ],
        ),
        // Wrap-around with padding, repeatedly.
        (
            128,
            48,
            vec![
                Push(40),
                Push(40),
                Publish,
                Drain,
                Push(40),
                Push(40),
                Publish,
                Drain,
                Push(48),
                Publish,
                Drain,
            ],
        ),
        // Too large, never partially written.
        (
            64,
            0,
            vec![
                Push(1),
                Push(0),
                Push(0),
                Push(0),
                Push(0),
                Push(0),
                Publish,
                Drain,
            ],
        ),
        // Many zero-length records wrapping the ring many times.
        (
            64,
            48,
            std::iter::repeat_n([Push(0), Push(0), Publish, Drain], 40)
                .flatten()
                .collect(),
        ),
    ];
    for (cap, max, ops) in cases {
        run_ops(cap, max, &ops).unwrap_or_else(|e| panic!("cap {cap} max {max} {ops:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// Fragmentation.

fn consume_some(
    r: &mut Ring,
    reasm: &mut Reassembler,
    budget: usize,
    expected: &mut VecDeque<(u64, u8, Vec<u8>)>,
) -> Result<usize, TestCaseError> {
    let mut n = 0;
    while n < budget {
        let Some(rec) = r
            .cons
            .peek(&r.ctl, &r.area)
            .map_err(|e| TestCaseError::fail(format!("peek: {e}")))?
        else {
            break;
        };
        let out = reasm
            .push(&r.area, &rec)
            .map_err(|e| TestCaseError::fail(format!("reassembly: {e:?}")))?;
        r.cons.advance(&rec);
        n += 1;
        if let Some(msg) = out {
            let Some((id, k, data)) = expected.pop_front() else {
                return Err(TestCaseError::fail(format!(
                    "unexpected message {}",
                    msg.id
                )));
            };
            prop_assert_eq!(msg.id, id);
            prop_assert_eq!(msg.kind, k);
            prop_assert_eq!(msg.bytes.len(), data.len());
            prop_assert!(
                msg.bytes.as_slice() == data.as_slice(),
                "message {} corrupted",
                id
            );
            if !data.is_empty() {
                prop_assert_eq!(
                    msg.bytes.as_ptr() as usize % 16,
                    0,
                    "message bytes not aligned"
                );
            }
            // Hand the buffer back as the core does: a later, shorter
            // message in it must carry none of this one's bytes.
            reasm.recycle(msg.bytes);
        }
        // Release only sometimes mid-way, to keep consumed-but-unreleased
        // space around while the producer writes.
        if n.is_multiple_of(3) {
            r.cons.release(&r.ctl);
        }
    }
    r.cons.release(&r.ctl);
    Ok(n)
}

fn frag_case() -> impl Strategy<Value = (u64, Vec<(usize, bool)>, Vec<usize>)> {
    prop_oneof![Just(256u64), Just(1024), Just(4096)].prop_flat_map(|cap| {
        let max = (cap / 4 - 16) as usize;
        let len = prop_oneof![
            2 => Just(0usize),
            3 => 0..=max,
            2 => max - 8..=max + 9,
            4 => 0..=(4 * cap as usize),
        ];
        (
            Just(cap),
            prop::collection::vec((len, any::<bool>()), 1..40),
            prop::collection::vec(1usize..8, 1..20),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fragments_reassemble_in_order((cap, msgs, budgets) in frag_case()) {
        let max_record = cap / 4 - 16;
        let mut r = Ring {
            ctl: RingCtl::default(),
            area: HeapArea::new(cap as usize),
            prod: Producer::new(cap, max_record),
            cons: Consumer::new(cap, max_record),
        };
        let mut reasm = Reassembler::new(1 << 20);
        let mut expected = VecDeque::new();
        let mut budgets = budgets.iter().copied().cycle();
        for (i, (len, push)) in msgs.iter().enumerate() {
            let id = 1000 + i as u64;
            let k = if *push { kind::PUSH } else { kind::MSG };
            let data = payload(id, *len);
            expected.push_back((id, k, data.clone()));
            let mut w = FragmentWriter::new(id, k);
            // Every third message is written from three pieces (cut where
            // the id says), as a large reply is: the same records must come
            // out, resumable across a full ring.
            let (c1, c2) = (id as usize * 7 % (data.len() + 1), id as usize * 13 % (data.len() + 1));
            let (c1, c2) = (c1.min(c2), c1.max(c2));
            let parts = [&data[..c1], &data[c1..c2], &data[c2..]];
            let mut stalls = 0;
            loop {
                let done = if i % 3 == 0 {
                    w.pump_parts(&mut r.prod, &r.ctl, &r.area, &parts)
                } else {
                    w.pump(&mut r.prod, &r.ctl, &r.area, &data)
                }
                .map_err(|e| TestCaseError::fail(format!("pump: {e}")))?;
                r.prod.publish(&r.ctl);
                if done {
                    break;
                }
                let n = consume_some(&mut r, &mut reasm, budgets.next().unwrap(), &mut expected)?;
                stalls = if n == 0 { stalls + 1 } else { 0 };
                prop_assert!(stalls < 2, "writer stalled on a ring the consumer cannot drain");
            }
            prop_assert_eq!(w.sent(), data.len());
            // Sometimes consume between messages too.
            if i.is_multiple_of(2) {
                consume_some(&mut r, &mut reasm, budgets.next().unwrap(), &mut expected)?;
            }
        }
        while consume_some(&mut r, &mut reasm, usize::MAX, &mut expected)? > 0 {}
        prop_assert!(expected.is_empty(), "{} messages never arrived", expected.len());
        prop_assert!(!reasm.in_progress());
    }
}
