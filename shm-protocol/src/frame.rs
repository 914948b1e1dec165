//! Messages over records: fragmentation of large messages.
//!
//! A message that fits in one record (payload <= `max_record`) is one record
//! with flags 0. A larger one is written as consecutive records of the same
//! id: the first has [`rflags::FIRST`] and starts with the total length (u64
//! little-endian); every record but the last has [`rflags::MORE`]. The
//! fragments of one message are contiguous in the ring (the producer holds
//! the ring for the whole message), so the consumer reassembles at most one
//! message at a time and holds at most the message itself: with the copy it
//! decodes from, about twice the value.
//!
//! The writer is resumable: [`FragmentWriter::pump`] writes as many
//! fragments as fit and reports whether it finished, so a full ring is
//! waited on (bounded) by the caller, never overwritten.

use rkyv::util::AlignedVec;

use crate::layout::RingCtl;
use crate::ring::{kind, rflags, Consumer, DataArea, Producer, Record, RecordHeader, ReserveError};
use crate::ProtocolError;

/// Resumable writer of one message.
#[derive(Debug, Clone)]
pub struct FragmentWriter {
    id: u64,
    kind: u8,
    sent: usize,
    started: bool,
}

impl FragmentWriter {
    pub fn new(id: u64, kind: u8) -> Self {
        FragmentWriter {
            id,
            kind,
            sent: 0,
            started: false,
        }
    }

    /// Bytes of `data` written so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// True once the writer has committed at least one record (from then
    /// on the message must be finished: the consumer expects the rest).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Write as much of `data` (the same slice on every call) as fits.
    /// Returns `Ok(true)` when the whole message is committed, `Ok(false)`
    /// when the ring is full (publish, wait for space, call again). The
    /// caller publishes.
    pub fn pump<A: DataArea>(
        &mut self,
        prod: &mut Producer,
        ctl: &RingCtl,
        area: &A,
        data: &[u8],
    ) -> Result<bool, ProtocolError> {
        self.pump_parts(prod, ctl, area, &[data])
    }

    /// [`FragmentWriter::pump`] for a message held in pieces: the message
    /// is the concatenation of `parts` (the same parts on every call), so a
    /// large value is copied into the ring from where it lies, never first
    /// gathered into one buffer.
    pub fn pump_parts<A: DataArea>(
        &mut self,
        prod: &mut Producer,
        ctl: &RingCtl,
        area: &A,
        parts: &[&[u8]],
    ) -> Result<bool, ProtocolError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let max = prod.max_record() as usize;
        if !self.started && total <= max {
            return match prod.try_reserve(ctl, area, total as u64) {
                Ok(res) => {
                    // SAFETY: the reservation is ours and holds `total` bytes.
                    unsafe { write_span(area, res.payload_off, parts, 0, total) };
                    prod.commit(area, res, self.header(total, 0));
                    self.started = true;
                    self.sent = total;
                    Ok(true)
                }
                Err(ReserveError::Full) => Ok(false),
                Err(ReserveError::TooLarge) => unreachable!("checked against max_record"),
                Err(ReserveError::Corrupt(e)) => Err(e),
            };
        }
        if total as u64 > crate::layout::MAX_MESSAGE_LIMIT {
            return Err(ProtocolError::TooLarge {
                len: total as u64,
                limit: crate::layout::MAX_MESSAGE_LIMIT,
            });
        }
        loop {
            let first = !self.started;
            let room = if first { max - 8 } else { max };
            let chunk = (total - self.sent).min(room);
            let more = self.sent + chunk < total;
            let len = chunk + if first { 8 } else { 0 };
            let res = match prod.try_reserve(ctl, area, len as u64) {
                Ok(r) => r,
                Err(ReserveError::Full) => return Ok(false),
                Err(ReserveError::TooLarge) => unreachable!("chunk bounded by max_record"),
                Err(ReserveError::Corrupt(e)) => return Err(e),
            };
            let mut flags = if more { rflags::MORE } else { 0 };
            let mut off = res.payload_off;
            if first {
                flags |= rflags::FIRST;
                let t = (total as u64).to_le_bytes();
                // SAFETY: the reservation is ours and holds 8 + chunk bytes.
                unsafe { area.write(off, &t) };
                off += 8;
            }
            // SAFETY: as above: `chunk` bytes from `off` are reserved.
            unsafe { write_span(area, off, parts, self.sent, chunk) };
            prod.commit(area, res, self.header(len, flags));
            self.started = true;
            self.sent += chunk;
            if !more {
                return Ok(true);
            }
        }
    }

    /// Payload bytes of the record [`FragmentWriter::pump`] reserves next
    /// for a message of `data_len` bytes: an unfragmented message's own
    /// length, a first fragment `max_record` (the 8-byte total plus
    /// `max_record - 8` bytes of data), a later one `min(rest, max_record)`.
    /// Never more than `max_record`.
    pub fn next_record_len(&self, data_len: usize, max_record: u64) -> u64 {
        let max = max_record as usize;
        let left = data_len - self.sent;
        (if !self.started && data_len > max {
            max
        } else {
            left.min(max)
        }) as u64
    }

    /// True when the ring has room for the record `pump` writes next: the
    /// readiness check of a producer waiting for space. Asking for exactly
    /// that record matters: a larger ask would be refused as `TooLarge`,
    /// which cannot be waited for.
    pub fn room_for_next<A: DataArea>(
        &self,
        prod: &mut Producer,
        ctl: &RingCtl,
        area: &A,
        data_len: usize,
    ) -> Result<bool, ProtocolError> {
        let need = self.next_record_len(data_len, prod.max_record());
        match prod.try_reserve(ctl, area, need) {
            // TooLarge cannot happen (next_record_len <= max_record); if it
            // did, `pump` reports it rather than this wait spinning.
            Ok(_) | Err(ReserveError::TooLarge) => Ok(true),
            Err(ReserveError::Full) => Ok(false),
            Err(ReserveError::Corrupt(e)) => Err(e),
        }
    }

    fn header(&self, len: usize, flags: u8) -> RecordHeader {
        RecordHeader {
            len: len as u32,
            kind: self.kind,
            flags,
            id: self.id,
        }
    }
}

/// Write bytes `from..from + len` of the concatenation of `parts` into
/// `area` at `off`.
///
/// # Safety
/// `off..off + len` must lie in space of `area` the caller has reserved.
unsafe fn write_span<A: DataArea>(
    area: &A,
    mut off: u64,
    parts: &[&[u8]],
    mut from: usize,
    mut len: usize,
) {
    for p in parts {
        if len == 0 {
            break;
        }
        if from >= p.len() {
            from -= p.len();
            continue;
        }
        let n = (p.len() - from).min(len);
        // SAFETY: within the reserved span (the caller's contract).
        unsafe { area.write(off, &p[from..from + n]) };
        off += n as u64;
        len -= n;
        from = 0;
    }
    debug_assert_eq!(len, 0, "parts shorter than the span");
}

/// A complete message taken from the ring into private, aligned memory.
#[derive(Debug)]
pub struct Message {
    pub id: u64,
    pub kind: u8,
    pub bytes: AlignedVec<16>,
}

/// A framing error, with the request id when one can be attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub id: Option<u64>,
    pub error: ProtocolError,
}

#[derive(Debug)]
struct Partial {
    id: u64,
    kind: u8,
    total: u64,
    buf: AlignedVec<16>,
}

/// Reassembles messages record by record, copying each payload out of the
/// ring into private memory exactly once.
#[derive(Debug)]
pub struct Reassembler {
    cur: Option<Partial>,
    max_message: u64,
    /// A single-record message's buffer handed back by [`Reassembler::recycle`].
    spare: Option<AlignedVec<16>>,
}

/// A recycled buffer above this capacity is not kept.
const SPARE_KEEP: usize = 64 << 10;

impl Reassembler {
    pub fn new(max_message: u64) -> Self {
        Reassembler {
            cur: None,
            max_message,
            spare: None,
        }
    }

    /// Hand back a message's buffer once its bytes are consumed: the next
    /// single-record message reuses it instead of allocating. A buffer
    /// above 64 KiB is freed here.
    pub fn recycle(&mut self, mut buf: AlignedVec<16>) {
        if buf.capacity() <= SPARE_KEEP {
            buf.clear();
            self.spare = Some(buf);
        }
    }

    /// True while a fragmented message is half received.
    pub fn in_progress(&self) -> bool {
        self.cur.is_some()
    }

    /// Feed the record `rec` (peeked, not yet advanced past). Returns a
    /// message when one is complete. On error the partial message is
    /// dropped; the consumer should treat the segment as broken if
    /// `id` is `None`.
    pub fn push<A: DataArea>(
        &mut self,
        area: &A,
        rec: &Record,
    ) -> Result<Option<Message>, FrameError> {
        let h = rec.hdr;
        let len = u64::from(h.len);
        let fail = |id: Option<u64>, msg: &'static str| FrameError {
            id,
            error: ProtocolError::RingCorrupt(msg),
        };
        if h.kind != kind::MSG && h.kind != kind::PUSH {
            self.cur = None;
            return Err(fail(Some(h.id), "unknown record kind"));
        }
        match self.cur.take() {
            None if h.flags == 0 => {
                let mut buf = self.spare.take().unwrap_or_default();
                // SAFETY: peek validated the record within the published range.
                unsafe { append_from(area, rec.payload_off, len as usize, &mut buf) };
                Ok(Some(Message {
                    id: h.id,
                    kind: h.kind,
                    bytes: buf,
                }))
            }
            None if h.flags == rflags::FIRST | rflags::MORE => {
                if len < 8 {
                    return Err(fail(
                        Some(h.id),
                        "first fragment shorter than its length prefix",
                    ));
                }
                let mut tot = [0u8; 8];
                // SAFETY: as above; len >= 8.
                unsafe { area.read(rec.payload_off, &mut tot) };
                let total = u64::from_le_bytes(tot);
                if total > self.max_message {
                    return Err(FrameError {
                        id: Some(h.id),
                        error: ProtocolError::TooLarge {
                            len: total,
                            limit: self.max_message,
                        },
                    });
                }
                let chunk = len - 8;
                if chunk >= total {
                    return Err(fail(
                        Some(h.id),
                        "fragmented message with a single fragment",
                    ));
                }
                let mut buf = AlignedVec::<16>::with_capacity(total as usize);
                // SAFETY: as above.
                unsafe { append_from(area, rec.payload_off + 8, chunk as usize, &mut buf) };
                self.cur = Some(Partial {
                    id: h.id,
                    kind: h.kind,
                    total,
                    buf,
                });
                Ok(None)
            }
            None => Err(fail(
                Some(h.id),
                "continuation fragment without a first fragment",
            )),
            Some(mut p) => {
                if h.id != p.id || h.kind != p.kind || h.flags & rflags::FIRST != 0 {
                    return Err(fail(
                        Some(p.id),
                        "fragments of one message interleaved with another",
                    ));
                }
                let have = p.buf.len() as u64;
                let more = h.flags & rflags::MORE != 0;
                let end = have + len;
                if end > p.total || (!more && end != p.total) || (more && end == p.total) {
                    return Err(fail(Some(p.id), "fragment lengths disagree with the total"));
                }
                // SAFETY: as above.
                unsafe { append_from(area, rec.payload_off, len as usize, &mut p.buf) };
                if more {
                    self.cur = Some(p);
                    Ok(None)
                } else {
                    Ok(Some(Message {
                        id: p.id,
                        kind: p.kind,
                        bytes: p.buf,
                    }))
                }
            }
        }
    }
}

/// Send one message, fragmenting it, on a ring the caller waits on: pump
/// as many records as fit, publish (calling `wake_consumer` when the
/// consumer announced it sleeps), and while the ring is full call
/// `wait_room(started, ready)`, where `ready` says whether the next record
/// fits and `started` whether the message is under way (it must then be
/// finished). The blocking endpoints' `Sender::send` and the loom model
/// e2 both run this.
pub fn send_message<A: DataArea, E: From<ProtocolError>>(
    prod: &mut Producer,
    ctl: &RingCtl,
    area: &A,
    (id, kind): (u64, u8),
    data: &[u8],
    mut wake_consumer: impl FnMut(),
    mut wait_room: impl FnMut(bool, &mut dyn FnMut() -> Result<bool, E>) -> Result<(), E>,
) -> Result<(), E> {
    let mut w = FragmentWriter::new(id, kind);
    loop {
        let done = w.pump(prod, ctl, area, data)?;
        if prod.publish(ctl) {
            wake_consumer();
        }
        if done {
            return Ok(());
        }
        let mut ready = || Ok(w.room_for_next(prod, ctl, area, data.len())?);
        wait_room(w.started(), &mut ready)?;
    }
}

/// Feed published records to `reasm` until one message is complete,
/// releasing the space of everything consumed as it goes (fragments are
/// released early so that the producer can write the next ones), calling
/// `wake_producer` when the producer announced it waits for space.
/// `Ok(None)`: nothing complete yet. The blocking endpoints'
/// `Receiver::recv` and the loom model e2 both run this.
pub fn receive_message<A: DataArea>(
    cons: &mut Consumer,
    reasm: &mut Reassembler,
    ctl: &RingCtl,
    area: &A,
    mut wake_producer: impl FnMut(),
) -> Result<Option<Message>, FrameError> {
    let r = (|| {
        while let Some(rec) = cons
            .peek(ctl, area)
            .map_err(|error| FrameError { id: None, error })?
        {
            let out = reasm.push(area, &rec)?;
            cons.advance(&rec);
            if out.is_some() {
                return Ok(out);
            }
            if cons.release(ctl) {
                wake_producer();
            }
        }
        Ok(None)
    })();
    if cons.release(ctl) {
        wake_producer();
    }
    r
}

/// Append `n` bytes of `area` at `off` to `buf`, copied straight into its
/// spare capacity (no zero-fill pass first: a 16 MiB message is written
/// once).
///
/// # Safety
/// As for [`DataArea::read`]: `off + n` within the area, and the range
/// published to the caller.
unsafe fn append_from<A: DataArea>(area: &A, off: u64, n: usize, buf: &mut AlignedVec<16>) {
    buf.reserve(n);
    let len = buf.len();
    // SAFETY: `reserve` made room for `n` bytes past `len`, so the slice
    // is `buf`'s spare capacity; `read_uninit` writes every byte of it
    // (the caller upholds its contract) before `set_len` exposes them.
    unsafe {
        let spare = std::slice::from_raw_parts_mut(
            buf.as_mut_ptr()
                .add(len)
                .cast::<std::mem::MaybeUninit<u8>>(),
            n,
        );
        area.read_uninit(off, spare);
        buf.set_len(len + n);
    }
}
