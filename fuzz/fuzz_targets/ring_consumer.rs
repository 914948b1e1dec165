//! The ring consumer and the reassembler facing a hostile producer.
//!
//! Input: `[cap selector][max_record selector][ring image (cap bytes)]`
//! then 3-byte steps `[op][u16 le]` that move the published tail or poke
//! the image. After every step the consumer runs (`peek`, `Reassembler::
//! push`, `advance`, sometimes `release`) until the ring is empty or an
//! error. Every read is checked to stay inside the data area and inside
//! the published window; a panic anywhere is a bug.
#![no_main]

use std::cell::Cell;
use vshm_protocol::sync::Ordering;

use libfuzzer_sys::fuzz_target;
use vshm_protocol::frame::Reassembler;
use vshm_protocol::layout::RingCtl;
use vshm_protocol::ring::{record_size, Consumer, DataArea};

struct CheckedArea {
    bytes: Vec<Cell<u8>>,
    cap: u64,
    /// Released position (the window's start).
    lo: Cell<u64>,
    /// Every aligned tail at or past `lo` ever published (the window's end,
    /// an upper bound of what the consumer may have accepted).
    hi: Cell<u64>,
}

// SAFETY: capacity() is the length of `bytes`; out-of-bounds or
// out-of-window accesses panic (reported by the fuzzer) instead of
// touching memory.
unsafe impl DataArea for CheckedArea {
    fn capacity(&self) -> u64 {
        self.cap
    }

    unsafe fn write(&self, off: u64, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            self.bytes[off as usize + i].set(*b);
        }
    }

    unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        let len = dst.len() as u64;
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.cap),
            "read outside the area"
        );
        if len > 0 {
            let (lo, hi) = (self.lo.get(), self.hi.get());
            let pos = lo + (off.wrapping_sub(lo) & (self.cap - 1));
            assert!(
                pos + len <= hi && pos + len <= lo + self.cap,
                "read of unpublished bytes"
            );
        }
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.bytes[off as usize + i].get();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cap = 64u64 << (data[0] % 4);
    let max_record = match data[1] % 3 {
        0 => (cap / 4).saturating_sub(16),
        1 => cap - 16,
        _ => (u64::from(data[1]) * 16) % cap,
    };
    let rest = &data[2..];
    let img_len = rest.len().min(cap as usize);
    let area = CheckedArea {
        bytes: (0..cap as usize)
            .map(|i| Cell::new(rest.get(i).copied().unwrap_or(0)))
            .collect(),
        cap,
        lo: Cell::new(0),
        hi: Cell::new(0),
    };
    let ctl = RingCtl::default();
    let mut cons = Consumer::new(cap, max_record);
    let mut reasm = Reassembler::new(4096);
    let mut tail = 0u64;
    for step in rest[img_len..].chunks_exact(3) {
        let (op, v) = (step[0], u64::from(u16::from_le_bytes([step[1], step[2]])));
        match op % 4 {
            0 => tail = tail.wrapping_add(v),
            1 => tail = cons.released() + (v % (cap / 16 + 2)) * 16,
            2 => tail = tail.wrapping_sub(v),
            _ => {
                area.bytes[(v % cap) as usize].set(op);
                continue;
            }
        }
        // Release: pairs with the Acquire tail load in
        // `Consumer::refresh_tail`, as the real producer's store does.
        ctl.prod.tail.store(tail, Ordering::Release);
        if tail.is_multiple_of(16) && tail >= area.lo.get() && tail > area.hi.get() {
            area.hi.set(tail);
        }
        let release_often = op & 4 != 0;
        loop {
            let rec = match cons.peek(&ctl, &area) {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(_) => {
                    // Still usable for the error report: same answer again.
                    let head = cons.head();
                    assert!(cons.peek(&ctl, &area).is_err());
                    assert_eq!(cons.head(), head);
                    return;
                }
            };
            assert!(u64::from(rec.hdr.len) <= max_record);
            assert!(rec.payload_off + u64::from(rec.hdr.len) <= cap);
            assert_eq!(rec.end() - rec.pos(), record_size(u64::from(rec.hdr.len)));
            match reasm.push(&area, &rec) {
                Ok(Some(m)) => assert!(m.bytes.len() <= 4096),
                Ok(None) => {}
                Err(_) => {
                    // The refused record is still there for the report.
                    assert_eq!(
                        cons.peek(&ctl, &area).ok().flatten().map(|r| r.pos()),
                        Some(rec.pos())
                    );
                    return;
                }
            }
            cons.advance(&rec);
            if release_often {
                cons.release(&ctl);
                area.lo.set(cons.released());
            }
        }
        cons.release(&ctl);
        area.lo.set(cons.released());
    }
});
