//! Single-producer / single-consumer byte rings of variable-length records.
//!
//! Positions (`head`, `tail`) are monotonic `u64` byte counts; the offset in
//! the data area is `pos & (capacity - 1)`. Every record starts on a 16-byte
//! boundary with a 16-byte [`RecordHeader`], followed by its payload padded
//! to 16 bytes. A record never wraps: when it does not fit before the end of
//! the data area, the producer writes a padding record (kind [`kind::PAD`])
//! that covers the rest, and the record starts at offset 0.
//!
//! Each side keeps its own position privately and a cached copy of the
//! other side's (as rtrb does), so the shared atomics are touched only when
//! the cache says the ring looks full (producer) or empty (consumer).
//!
//! The consumer treats everything it reads as untrusted: a tail that moves
//! backwards or past the capacity, a record header that points past the
//! tail or across the end, a padding record of the wrong size, all yield
//! [`ProtocolError::RingCorrupt`], never a panic or an out-of-bounds access.
//! The producer likewise validates the head it reads.

use crate::layout::RingCtl;
use crate::sync::{fence, Ordering};
use crate::ProtocolError;

/// Bytes of a record header.
pub const REC_HDR: u64 = 16;
/// Alignment of every record (and so of every payload).
pub const REC_ALIGN: u64 = 16;

/// Record kinds.
pub mod kind {
    /// Padding to the end of the data area; skipped by the consumer.
    pub const PAD: u8 = 0xFF;
    /// A message (request in the submission ring, completion in the
    /// completion ring), or one fragment of it.
    pub const MSG: u8 = 1;
    /// An out-of-band push (pub/sub) in the completion ring.
    pub const PUSH: u8 = 2;
}

/// Record flags (fragmentation, see [`crate::frame`]).
pub mod rflags {
    /// First fragment of a fragmented message: the payload starts with the
    /// message's total length as a little-endian u64.
    pub const FIRST: u8 = 1 << 0;
    /// More fragments of this message follow.
    pub const MORE: u8 = 1 << 1;
}

/// The 16-byte header of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordHeader {
    /// Payload bytes (not counting this header nor the alignment padding).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The request id (0 for padding and pushes).
    pub id: u64,
}

impl RecordHeader {
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4] = self.kind;
        b[5] = self.flags;
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Self {
        RecordHeader {
            len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            kind: b[4],
            flags: b[5],
            id: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }
}

/// Bytes a record with `len` payload bytes occupies in the ring.
#[inline]
pub const fn record_size(len: u64) -> u64 {
    REC_HDR + ((len + REC_ALIGN - 1) & !(REC_ALIGN - 1))
}

/// Where ring bytes live. Production uses raw memory in the mapping; loom
/// uses tracked cells so that it can report a data race on record bytes
/// (that is, a missing happens-before edge between writing a record and
/// reading it).
///
/// # Safety
/// Implementations must give access to exactly `capacity()` bytes, and the
/// methods must be memory-safe for any in-bounds `off`/length the ring code
/// passes. The *protocol* guarantees the exclusivity the callers claim.
pub unsafe trait DataArea {
    fn capacity(&self) -> u64;
    /// Copy `src` into the area at `off`.
    ///
    /// # Safety
    /// `off + src.len() <= capacity()`, and the caller owns that range
    /// (producer: free, unpublished space).
    unsafe fn write(&self, off: u64, src: &[u8]);
    /// Copy bytes out of the area at `off`.
    ///
    /// # Safety
    /// `off + dst.len() <= capacity()`, and the range is published to the
    /// caller (consumer: between head and tail). A hostile peer may still
    /// write it concurrently: the copy is then garbage, which the caller
    /// validates, but never out of bounds.
    unsafe fn read(&self, off: u64, dst: &mut [u8]);
    /// Like [`DataArea::read`], into memory not yet initialized: every
    /// byte of `dst` is written. The default zero-fills, then reads; an
    /// area that copies with `ptr::copy_nonoverlapping` overrides it to
    /// skip that pass (a large message is written once, not twice).
    ///
    /// # Safety
    /// As for [`DataArea::read`].
    unsafe fn read_uninit(&self, off: u64, dst: &mut [std::mem::MaybeUninit<u8>]) {
        // SAFETY: `dst` is valid for `dst.len()` bytes; once zeroed, every
        // byte is initialized, so viewing it as `[u8]` is sound. The
        // caller's contract is `read`'s.
        unsafe {
            std::ptr::write_bytes(dst.as_mut_ptr(), 0, dst.len());
            let dst = &mut *(dst as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]);
            self.read(off, dst)
        }
    }
}

/// Why a reservation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Not enough free space now; retry after the consumer releases.
    Full,
    /// The record can never fit: fragment it (see [`crate::frame`]).
    TooLarge,
    /// The peer's head is impossible.
    Corrupt(ProtocolError),
}

/// Space reserved for one record; pass it to [`Producer::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pos: u64,
    /// Offset of the payload in the data area (16-byte aligned).
    pub payload_off: u64,
    /// Payload bytes reserved.
    pub len: u64,
}

/// The producer's private state.
#[derive(Debug)]
pub struct Producer {
    tail: u64,
    cached_head: u64,
    cap: u64,
    max_record: u64,
}

impl Producer {
    /// A producer for an empty ring of `cap` bytes (power of two).
    pub fn new(cap: u64, max_record: u64) -> Self {
        debug_assert!(cap.is_power_of_two() && cap >= 64);
        Producer {
            tail: 0,
            cached_head: 0,
            cap,
            max_record,
        }
    }

    pub fn max_record(&self) -> u64 {
        self.max_record
    }

    /// Private tail (including committed but unpublished records).
    pub fn tail(&self) -> u64 {
        self.tail
    }

    fn mask(&self) -> u64 {
        self.cap - 1
    }

    /// Re-read the consumer's head. Acquire: pairs with the Release store
    /// in [`Consumer::release_to`], so the consumer's reads of the bytes it
    /// released happen before we overwrite them.
    fn refresh_head(&mut self, ctl: &RingCtl) -> Result<(), ProtocolError> {
        // Acquire: pairs with the Release store in `Consumer::release_to`.
        let head = ctl.cons.head.load(Ordering::Acquire);
        // The head may only move forward, never past our tail.
        let moved = head.wrapping_sub(self.cached_head);
        let outstanding = self.tail.wrapping_sub(self.cached_head);
        if moved > outstanding || !head.is_multiple_of(REC_ALIGN) {
            return Err(ProtocolError::RingCorrupt(
                "consumer head moved backwards or past the tail",
            ));
        }
        self.cached_head = head;
        Ok(())
    }

    /// Free bytes according to the cached head.
    fn free(&self) -> u64 {
        self.cap - self.tail.wrapping_sub(self.cached_head)
    }

    /// Reserve room for a record of `len` payload bytes. May write a
    /// padding record (unpublished) to skip the end of the data area.
    pub fn try_reserve<A: DataArea>(
        &mut self,
        ctl: &RingCtl,
        area: &A,
        len: u64,
    ) -> Result<Reservation, ReserveError> {
        if len > self.max_record {
            return Err(ReserveError::TooLarge);
        }
        let need = record_size(len);
        let off = self.tail & self.mask();
        let to_end = self.cap - off;
        let pad = if need > to_end { to_end } else { 0 };
        if self.free() < pad + need {
            self.refresh_head(ctl).map_err(ReserveError::Corrupt)?;
            if self.free() < pad + need {
                return Err(ReserveError::Full);
            }
        }
        if pad > 0 {
            let hdr = RecordHeader {
                len: (pad - REC_HDR) as u32,
                kind: kind::PAD,
                flags: 0,
                id: 0,
            };
            // SAFETY: off + 16 <= cap (off is 16-aligned and < cap), and
            // [tail, tail + pad) is free space we own (checked above).
            unsafe { area.write(off, &hdr.to_bytes()) };
            self.tail += pad;
        }
        Ok(Reservation {
            pos: self.tail,
            payload_off: (self.tail & self.mask()) + REC_HDR,
            len,
        })
    }

    /// Write `payload` into a reservation (convenience for copying writers;
    /// in-place writers fill the payload through the area directly).
    ///
    /// # Panics
    /// If `payload` is longer than the reservation (a caller bug).
    pub fn write_payload<A: DataArea>(&self, area: &A, res: &Reservation, payload: &[u8]) {
        assert!(
            payload.len() as u64 <= res.len,
            "payload exceeds reservation"
        );
        // SAFETY: the reservation lies in free space we own, inside the
        // area (try_reserve checked that the record does not cross the end).
        unsafe { area.write(res.payload_off, payload) };
    }

    /// Commit a record into a reservation. `hdr.len` may be smaller than
    /// the reserved length (in-place serializers reserve an upper bound).
    /// The record becomes visible to the consumer at the next [`publish`].
    ///
    /// [`publish`]: Producer::publish
    pub fn commit<A: DataArea>(&mut self, area: &A, res: Reservation, hdr: RecordHeader) {
        assert!(
            u64::from(hdr.len) <= res.len,
            "commit longer than reservation"
        );
        // SAFETY: the header slot precedes the payload inside the reserved,
        // unpublished record.
        unsafe { area.write(res.payload_off - REC_HDR, &hdr.to_bytes()) };
        self.tail = res.pos + record_size(u64::from(hdr.len));
    }

    /// Publish everything committed so far. Returns true when the consumer
    /// announced it may sleep, so the caller must wake it (futex or
    /// doorbell).
    pub fn publish(&mut self, ctl: &RingCtl) -> bool {
        // Release: pairs with the Acquire load of `tail` in
        // `Consumer::refresh_tail` (and in `PublishWatch::published`); the
        // record bytes written above become visible before the new tail
        // does.
        ctl.prod.tail.store(self.tail, Ordering::Release);
        // SeqCst fence (F2): pairs with the SeqCst fence (F1) the consumer
        // makes when it announces sleep (`wake::arm`). Either the consumer's
        // re-check of the tail sees our store, or our load below sees its
        // flag.
        fence(Ordering::SeqCst);
        ctl.wake.cons_waiting.load(Ordering::Relaxed) != 0
    }
}

/// A record the consumer has peeked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pos: u64,
    pub hdr: RecordHeader,
    /// Offset of the payload in the data area (16-byte aligned).
    pub payload_off: u64,
}

impl Record {
    /// Position just past this record.
    pub fn end(&self) -> u64 {
        self.pos + record_size(u64::from(self.hdr.len))
    }

    /// Position of this record.
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub struct Consumer {
    head: u64,
    released: u64,
    cached_tail: u64,
    cap: u64,
    max_record: u64,
}

impl Consumer {
    pub fn new(cap: u64, max_record: u64) -> Self {
        debug_assert!(cap.is_power_of_two() && cap >= 64);
        Consumer {
            head: 0,
            released: 0,
            cached_tail: 0,
            cap,
            max_record,
        }
    }

    /// Private read position (records before it have been consumed).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Re-read the producer's tail.
    fn refresh_tail(&mut self, ctl: &RingCtl) -> Result<(), ProtocolError> {
        // Acquire: pairs with the Release store in `Producer::publish`, so
        // the record bytes are visible once the tail is.
        let tail = ctl.prod.tail.load(Ordering::Acquire);
        let moved = tail.wrapping_sub(self.cached_tail);
        let span = tail.wrapping_sub(self.released);
        if span > self.cap || moved > self.cap || !tail.is_multiple_of(REC_ALIGN) {
            return Err(ProtocolError::RingCorrupt(
                "producer tail moved backwards or past capacity",
            ));
        }
        self.cached_tail = tail;
        Ok(())
    }

    /// True when no published record is waiting (re-reads the tail).
    pub fn is_empty(&mut self, ctl: &RingCtl) -> Result<bool, ProtocolError> {
        if self.head != self.cached_tail {
            return Ok(false);
        }
        self.refresh_tail(ctl)?;
        Ok(self.head == self.cached_tail)
    }

    /// The next record, if one is published. Padding is skipped.
    pub fn peek<A: DataArea>(
        &mut self,
        ctl: &RingCtl,
        area: &A,
    ) -> Result<Option<Record>, ProtocolError> {
        loop {
            if self.head == self.cached_tail {
                self.refresh_tail(ctl)?;
                if self.head == self.cached_tail {
                    return Ok(None);
                }
            }
            let avail = self.cached_tail.wrapping_sub(self.head);
            let off = self.head & (self.cap - 1);
            let mut raw = [0u8; 16];
            // SAFETY: off is 16-aligned and < cap, so off + 16 <= cap; the
            // bytes lie between head and tail, published to us.
            unsafe { area.read(off, &mut raw) };
            let hdr = RecordHeader::from_bytes(&raw);
            if hdr.kind == kind::PAD {
                let size = self.cap - off;
                if u64::from(hdr.len) + REC_HDR != size || size > avail {
                    return Err(ProtocolError::RingCorrupt("bad padding record"));
                }
                self.head += size;
                continue;
            }
            let len = u64::from(hdr.len);
            if len > self.max_record {
                return Err(ProtocolError::RingCorrupt("record longer than max_record"));
            }
            let size = record_size(len);
            if size > avail || off + size > self.cap {
                return Err(ProtocolError::RingCorrupt(
                    "record extends past tail or end of ring",
                ));
            }
            return Ok(Some(Record {
                pos: self.head,
                hdr,
                payload_off: off + REC_HDR,
            }));
        }
    }

    /// Copy a peeked record's payload into `dst` (resized to fit).
    pub fn read_payload<A: DataArea>(&self, area: &A, rec: &Record, dst: &mut Vec<u8>) {
        let len = rec.hdr.len as usize;
        dst.clear();
        dst.resize(len, 0);
        // SAFETY: peek validated payload_off + len <= cap and that the
        // record lies within the published range.
        unsafe { area.read(rec.payload_off, dst) };
    }

    /// Consume a peeked record (it must be the one `peek` returned last).
    /// Its space is returned to the producer at the next [`release`].
    ///
    /// [`release`]: Consumer::release
    pub fn advance(&mut self, rec: &Record) {
        debug_assert_eq!(rec.pos, self.head);
        self.head = rec.end();
    }

    /// Return the space of everything consumed so far to the producer.
    /// Returns true when a producer waits for space and must be woken.
    pub fn release(&mut self, ctl: &RingCtl) -> bool {
        self.release_to(ctl, self.head)
    }

    /// Return space up to `pos` (at most the consumed position). Lets a
    /// consumer that hands records out in place (zero-copy replies) keep
    /// the oldest ones pinned while later ones are freed.
    pub fn release_to(&mut self, ctl: &RingCtl, pos: u64) -> bool {
        debug_assert!(pos.wrapping_sub(self.released) <= self.head.wrapping_sub(self.released));
        if pos == self.released {
            return false;
        }
        self.released = pos;
        // Release: pairs with the Acquire load of `head` in
        // `Producer::refresh_head`: our reads of the released bytes happen
        // before the producer reuses them.
        ctl.cons.head.store(pos, Ordering::Release);
        // SeqCst fence: pairs with the SeqCst fence the producer makes when
        // it announces sleep (`wake::arm`). Either the producer's re-check of the head sees
        // our store, or our load below sees its flag.
        fence(Ordering::SeqCst);
        ctl.wake.prod_waiting.load(Ordering::Relaxed) != 0
    }

    /// Last released position.
    pub fn released(&self) -> u64 {
        self.released
    }
}

/// A third party watching a ring for newly published records without
/// consuming them (the C API's completion notifier behind `vshm_fd`): the
/// only reader of the producer's position outside [`Consumer`].
#[derive(Debug)]
pub struct PublishWatch {
    seen: u64,
}

impl Default for PublishWatch {
    fn default() -> Self {
        PublishWatch::new()
    }
}

impl PublishWatch {
    /// A watch whose first [`PublishWatch::published`] reports true.
    pub fn new() -> Self {
        PublishWatch { seen: u64::MAX }
    }

    /// True when the producer published since the last call that returned
    /// true (a peer-written position: only compared, never trusted).
    pub fn published(&mut self, ctl: &RingCtl) -> bool {
        // Acquire: pairs with the Release store in `Producer::publish`; the
        // watcher reads no record bytes, but whoever it signals may.
        let t = ctl.prod.tail.load(Ordering::Acquire);
        if t == self.seen {
            return false;
        }
        self.seen = t;
        true
    }
}

/// Plain heap memory as a data area (tests, in-process models).
#[cfg(not(vshm_loom))]
pub struct HeapArea {
    buf: Box<[std::cell::UnsafeCell<u8>]>,
}

#[cfg(not(vshm_loom))]
impl HeapArea {
    pub fn new(cap: usize) -> Self {
        HeapArea {
            buf: (0..cap).map(|_| std::cell::UnsafeCell::new(0)).collect(),
        }
    }

    fn base(&self) -> *mut u8 {
        // UnsafeCell<u8> is repr(transparent): the slice is a run of bytes
        // that may be written through a shared reference.
        self.buf.as_ptr() as *mut u8
    }
}

// SAFETY: access to the cells is coordinated by the ring protocol (the
// producer writes only free space, the consumer reads only published space).
#[cfg(not(vshm_loom))]
unsafe impl Sync for HeapArea {}

// SAFETY: capacity is the buffer's length; reads and writes are bounds
// checked by the callers' contracts (debug-asserted here).
#[cfg(not(vshm_loom))]
unsafe impl DataArea for HeapArea {
    fn capacity(&self) -> u64 {
        self.buf.len() as u64
    }

    unsafe fn write(&self, off: u64, src: &[u8]) {
        debug_assert!(off as usize + src.len() <= self.buf.len());
        // SAFETY: in bounds per the contract; UnsafeCell<u8> has u8's layout.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base().add(off as usize), src.len())
        }
    }

    unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off as usize + dst.len() <= self.buf.len());
        // SAFETY: in bounds per the contract; UnsafeCell<u8> has u8's layout.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(off as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    unsafe fn read_uninit(&self, off: u64, dst: &mut [std::mem::MaybeUninit<u8>]) {
        debug_assert!(off as usize + dst.len() <= self.buf.len());
        // SAFETY: in bounds per the contract; the copy writes every byte
        // of `dst`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(off as usize),
                dst.as_mut_ptr().cast::<u8>(),
                dst.len(),
            )
        }
    }
}
