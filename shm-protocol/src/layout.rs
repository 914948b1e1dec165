//! The segment's byte layout.
//!
//! ```text
//! offset 0        SegmentHeader (plain little-endian fields, written once by
//!                 the creator before the segment is shared, then read-only)
//! offset 256      SegmentCtl (atomics only; each ring's producer line,
//!                 consumer line and wake line on separate 128-byte lines)
//! offset 4096     submission ring data (sq_capacity bytes, power of two)
//! sq_off + sq_cap completion ring data (cq_capacity bytes, power of two)
//! ```
//!
//! A reader never trusts the header: [`Layout::validate`] checks every field
//! against the mapping's real size before anything is dereferenced.

use crate::sync::{AtomicU32, AtomicU64};
use crate::ProtocolError;

/// "VSHMSEG1", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VSHMSEG1");
/// Bumped on any incompatible change of the byte layout, of the messages
/// or of how the shared words are used (3: the submission ring's
/// need-wakeup flag is claimed, see `wake::Sleepers::Sole`).
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes before the first ring: header plus control block, one page.
pub const HEADER_SIZE: u64 = 4096;
/// Where the control block starts.
pub const CTL_OFFSET: u64 = 256;
/// Smallest and largest ring capacity accepted.
pub const MIN_RING: u64 = 4096;
pub const MAX_RING: u64 = 1 << 30;
/// Largest message accepted (Redis's 512 MiB bulk limit plus framing room).
pub const MAX_MESSAGE_LIMIT: u64 = 512 * 1024 * 1024 + 64 * 1024;

/// Feature bits (header `features`).
pub mod features {
    /// The core sleeps on an eventfd doorbell (passed out of band) rather
    /// than on the submission ring's futex word; see `docs/protocol.md`.
    pub const SQ_DOORBELL: u64 = 1 << 0;
    /// All features this build understands.
    pub const KNOWN: u64 = SQ_DOORBELL;
}

/// Segment states (`SegmentCtl::state`).
pub mod state {
    pub const OPEN: u32 = 0;
    /// Closed in an orderly way (client deregistered or core shutting down).
    pub const CLOSED: u32 = 1;
    /// The core found the segment corrupt and stopped serving it.
    pub const BROKEN: u32 = 2;
    /// Set by the client itself when its daemon connection is gone (the
    /// daemon died or restarted): waiters end with a connection error.
    pub const PEER_LOST: u32 = 3;
}

/// Pads and aligns `T` to 128 bytes (two cache lines: adjacent-line
/// prefetchers pull pairs of 64-byte lines).
#[repr(C, align(128))]
#[derive(Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Written only by the ring's producer.
#[repr(C)]
#[derive(Default)]
pub struct ProdLine {
    /// Position (monotonic byte count) one past the last published record.
    pub tail: AtomicU64,
}

/// Written only by the ring's consumer.
#[repr(C)]
#[derive(Default)]
pub struct ConsLine {
    /// Position one past the last record the consumer has released.
    pub head: AtomicU64,
}

/// Need-wakeup flags and futex words. Written only when a side goes to
/// sleep or wakes the other, so this line stays shared (cheap to read) in
/// steady state.
#[repr(C)]
#[derive(Default)]
pub struct WakeLine {
    /// Number of consumers that announced they will sleep (need-wakeup).
    pub cons_waiting: AtomicU32,
    /// Number of producers waiting for free space.
    pub prod_waiting: AtomicU32,
    /// Futex word consumers sleep on; bumped by the producer to wake them.
    pub cons_seq: AtomicU32,
    /// Futex word producers sleep on; bumped by the consumer to wake them.
    pub prod_seq: AtomicU32,
}

/// One ring's shared control words.
#[repr(C)]
#[derive(Default)]
pub struct RingCtl {
    pub prod: CachePadded<ProdLine>,
    pub cons: CachePadded<ConsLine>,
    pub wake: CachePadded<WakeLine>,
    /// Under loom, the futex is modelled by a mutex and a condition variable
    /// (never present in a real mapping).
    #[cfg(vshm_loom)]
    pub model: crate::wake::model::FutexPair,
}

/// The segment-wide shared control block.
#[repr(C)]
#[derive(Default)]
pub struct SegmentCtl {
    /// One of [`state`]. Set by the core; a client checks it whenever a wait
    /// ends without progress.
    pub state: CachePadded<AtomicU32>,
    pub sq: RingCtl,
    pub cq: RingCtl,
}

#[cfg(not(vshm_loom))]
const _: () = {
    assert!(std::mem::size_of::<SegmentCtl>() as u64 + CTL_OFFSET <= HEADER_SIZE);
    assert!(std::mem::size_of::<SegmentHeader>() as u64 <= CTL_OFFSET);
};

/// The header's plain fields, as laid out at offset 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentHeader {
    pub magic: u64,
    pub version: u32,
    pub header_size: u32,
    pub total_size: u64,
    pub features: u64,
    pub sq_offset: u64,
    pub sq_capacity: u64,
    pub cq_offset: u64,
    pub cq_capacity: u64,
    /// Largest payload of one record (larger messages are fragmented).
    pub max_record: u64,
    /// Largest message (after reassembly) either side accepts.
    pub max_message: u64,
}

impl SegmentHeader {
    pub const SIZE: usize = std::mem::size_of::<SegmentHeader>();

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let words = [
            self.magic,
            u64::from(self.version) | (u64::from(self.header_size) << 32),
            self.total_size,
            self.features,
            self.sq_offset,
            self.sq_capacity,
            self.cq_offset,
            self.cq_capacity,
            self.max_record,
            self.max_message,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decode from bytes; `None` if there are too few.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < Self::SIZE {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let vw = w(1);
        Some(SegmentHeader {
            magic: w(0),
            version: vw as u32,
            header_size: (vw >> 32) as u32,
            total_size: w(2),
            features: w(3),
            sq_offset: w(4),
            sq_capacity: w(5),
            cq_offset: w(6),
            cq_capacity: w(7),
            max_record: w(8),
            max_message: w(9),
        })
    }
}

/// A validated layout. Holding one means every offset is in bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub total_size: u64,
    pub features: u64,
    pub sq_offset: u64,
    pub sq_capacity: u64,
    pub cq_offset: u64,
    pub cq_capacity: u64,
    pub max_record: u64,
    pub max_message: u64,
}

/// The default largest single-record payload for a ring of `cap` bytes:
/// a quarter of the ring, so the producer can fill one fragment while the
/// consumer drains another, capped at 1 MiB.
pub fn default_max_record(cap: u64) -> u64 {
    // Saturating: a capacity below 64 gives 0, which `Layout::check`
    // refuses (with the capacity) instead of panicking.
    (cap / 4).min(1 << 20).saturating_sub(16)
}

impl Layout {
    /// A fresh layout for the given ring capacities (powers of two).
    pub fn new(sq_capacity: u64, cq_capacity: u64, features: u64) -> Result<Layout, ProtocolError> {
        let max_record = default_max_record(sq_capacity.min(cq_capacity));
        let l = Layout {
            // Saturating: absurd capacities are refused by `check`, not
            // turned into an overflow panic.
            total_size: HEADER_SIZE
                .saturating_add(sq_capacity)
                .saturating_add(cq_capacity),
            features,
            sq_offset: HEADER_SIZE,
            sq_capacity,
            cq_offset: HEADER_SIZE.saturating_add(sq_capacity),
            cq_capacity,
            max_record,
            max_message: MAX_MESSAGE_LIMIT,
        };
        l.check()?;
        Ok(l)
    }

    pub fn header(&self) -> SegmentHeader {
        SegmentHeader {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            total_size: self.total_size,
            features: self.features,
            sq_offset: self.sq_offset,
            sq_capacity: self.sq_capacity,
            cq_offset: self.cq_offset,
            cq_capacity: self.cq_capacity,
            max_record: self.max_record,
            max_message: self.max_message,
        }
    }

    /// Validate a header read from a mapping of `actual_size` bytes.
    pub fn validate(h: &SegmentHeader, actual_size: u64) -> Result<Layout, ProtocolError> {
        if h.magic != MAGIC {
            return Err(ProtocolError::BadMagic {
                found: h.magic,
                expected: MAGIC,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: h.version,
                supported: LAYOUT_VERSION,
            });
        }
        if u64::from(h.header_size) != HEADER_SIZE {
            return Err(ProtocolError::BadLayout("header size"));
        }
        if h.total_size != actual_size {
            return Err(ProtocolError::SizeMismatch {
                header: h.total_size,
                actual: actual_size,
            });
        }
        let l = Layout {
            total_size: h.total_size,
            features: h.features,
            sq_offset: h.sq_offset,
            sq_capacity: h.sq_capacity,
            cq_offset: h.cq_offset,
            cq_capacity: h.cq_capacity,
            max_record: h.max_record,
            max_message: h.max_message,
        };
        l.check()?;
        Ok(l)
    }

    fn check(&self) -> Result<(), ProtocolError> {
        let ring_ok = |c: u64| c.is_power_of_two() && (MIN_RING..=MAX_RING).contains(&c);
        if !ring_ok(self.sq_capacity) || !ring_ok(self.cq_capacity) {
            return Err(ProtocolError::BadLayout(
                "ring capacity must be a power of two in 4 KiB..1 GiB",
            ));
        }
        if self.features & !features::KNOWN != 0 {
            return Err(ProtocolError::BadLayout("unknown feature bits"));
        }
        let in_bounds = |off: u64, len: u64| {
            off.is_multiple_of(HEADER_SIZE)
                && off >= HEADER_SIZE
                && off
                    .checked_add(len)
                    .is_some_and(|end| end <= self.total_size)
        };
        if !in_bounds(self.sq_offset, self.sq_capacity)
            || !in_bounds(self.cq_offset, self.cq_capacity)
        {
            return Err(ProtocolError::BadLayout(
                "ring offset out of bounds or unaligned",
            ));
        }
        let (a, b) = if self.sq_offset <= self.cq_offset {
            ((self.sq_offset, self.sq_capacity), self.cq_offset)
        } else {
            ((self.cq_offset, self.cq_capacity), self.sq_offset)
        };
        if a.0 + a.1 > b {
            return Err(ProtocolError::BadLayout("rings overlap"));
        }
        let min_cap = self.sq_capacity.min(self.cq_capacity);
        // min_cap >= MIN_RING here, so the subtraction cannot underflow; an
        // addition to the untrusted max_record could overflow.
        if self.max_record < 64
            || self.max_record > min_cap / 4 - 16
            || !self.max_record.is_multiple_of(16)
        {
            return Err(ProtocolError::BadLayout("max_record out of range"));
        }
        if self.max_message < self.max_record || self.max_message > MAX_MESSAGE_LIMIT {
            return Err(ProtocolError::BadLayout("max_message out of range"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_validation() {
        let l = Layout::new(1 << 16, 1 << 17, 0).unwrap();
        let h = l.header();
        let back = SegmentHeader::from_bytes(&h.to_bytes()).unwrap();
        assert_eq!(back, h);
        assert_eq!(Layout::validate(&back, l.total_size).unwrap(), l);

        let mut bad = h;
        bad.magic ^= 1;
        assert!(matches!(
            Layout::validate(&bad, l.total_size),
            Err(ProtocolError::BadMagic { .. })
        ));
        let mut bad = h;
        bad.version = 99;
        assert!(matches!(
            Layout::validate(&bad, l.total_size),
            Err(ProtocolError::UnsupportedVersion { found: 99, .. })
        ));
        assert!(matches!(
            Layout::validate(&h, l.total_size - 1),
            Err(ProtocolError::SizeMismatch { .. })
        ));
        let mut bad = h;
        bad.cq_offset = l.total_size;
        assert!(Layout::validate(&bad, l.total_size).is_err());
        let mut bad = h;
        bad.cq_offset = u64::MAX - 4095;
        assert!(Layout::validate(&bad, l.total_size).is_err());
        let mut bad = h;
        bad.sq_capacity = 3 << 12;
        assert!(Layout::validate(&bad, l.total_size).is_err());
        let mut bad = h;
        bad.cq_offset = bad.sq_offset;
        assert!(Layout::validate(&bad, l.total_size).is_err());
        let mut bad = h;
        bad.max_record = 1 << 40;
        assert!(Layout::validate(&bad, l.total_size).is_err());
        assert!(SegmentHeader::from_bytes(&[0u8; 10]).is_none());
    }
}
