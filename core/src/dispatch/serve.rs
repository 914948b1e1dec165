//! The serve loop of one attachment: the decisions it takes, as pure
//! functions (unit-tested below, no I/O), and the thin loop that reads the
//! submission ring, applies them and sleeps on the doorbell.

use std::sync::Arc;
use std::time::Duration;
use vshm_protocol::sync::Ordering;

use tokio::io::unix::AsyncFd;
use tracing::debug;

use vshm_protocol::frame::{FrameError, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::msg::{ClientError, Completion, ErrorKind};
use vshm_protocol::ring::{kind, rflags, Consumer, DataArea, Record, RecordHeader};
use vshm_protocol::wake::{self, Announced, Side};
use vshm_protocol::ProtocolError;

use super::attachment::ClientAttachment;
use super::doorbell::ArcFd;
use super::DRAIN_BUDGET;

// ---------------------------------------------------------------------------
// Decisions (pure)

/// May the drain take another record?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    Take,
    /// [`DRAIN_BUDGET`] taken this turn: yield to the other attachments.
    Budget,
    /// `max_inflight` requests in flight.
    Inflight,
    /// `max_outstanding_bytes` reached (never interrupts a message begun).
    Bytes,
}

/// The limits one attachment is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_inflight: usize,
    pub max_outstanding_bytes: u64,
    pub max_message: u64,
}

pub(super) fn gate(
    taken: usize,
    inflight: usize,
    outstanding: u64,
    mid_message: bool,
    l: &Limits,
) -> Gate {
    if taken >= DRAIN_BUDGET {
        Gate::Budget
    } else if inflight >= l.max_inflight {
        Gate::Inflight
    } else if !mid_message && outstanding >= l.max_outstanding_bytes {
        Gate::Bytes
    } else {
        Gate::Take
    }
}

/// A record while the rest of a refused message is skipped: `Ok(true)` for
/// its last fragment, `Err` when another message is interleaved (a framing
/// violation: the segment is broken).
pub(super) fn skip_fragment(h: &RecordHeader, refused: u64) -> Result<bool, &'static str> {
    if h.id != refused || h.kind != kind::MSG || h.flags & rflags::FIRST != 0 {
        return Err(
            "submission ring framing: fragments of a refused message interleaved with another",
        );
    }
    Ok(h.flags & rflags::MORE == 0)
}

/// Records read in one turn before yielding, whatever they are: fragments
/// and skipped records count too, so that a client cannot keep a turn (and
/// the core's thread) going with records that never complete a message
/// (empty fragments, the endless rest of a refused message).
const TURN_RECORDS: usize = 1024;
/// Payload bytes copied in one turn before yielding; a message being
/// reassembled continues in the next turn.
const TURN_BYTES: u64 = 8 << 20;

/// Has this turn read enough records or bytes to yield?
pub(super) fn turn_spent(records: usize, bytes: u64) -> bool {
    records >= TURN_RECORDS || bytes >= TURN_BYTES
}

/// What to do with the record that starts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admit {
    /// Take it; a first fragment's announced total (charged now), else 0.
    Take(u64),
    /// Over the outstanding-bytes limit with other requests outstanding:
    /// leave it in the ring until some complete.
    Wait,
    /// Refuse it with one completion of this kind and skip the rest of its
    /// fragments.
    Refuse(ErrorKind, String),
}

/// `total`: the announced length of a fragmented message (`None` for a
/// single record, bounded by `max_record` and gated before it is peeked).
pub(super) fn admit(total: Option<u64>, outstanding: u64, l: &Limits) -> Admit {
    let Some(total) = total else {
        return Admit::Take(0);
    };
    let (limit, max_message) = (l.max_outstanding_bytes, l.max_message);
    if total > max_message {
        return Admit::Refuse(
            ErrorKind::InvalidRequest,
            format!(
                "request of {total} bytes exceeds the segment's max_message ({max_message} bytes)"
            ),
        );
    }
    if total > limit {
        return Admit::Refuse(
            ErrorKind::Overloaded,
            format!("request of {total} bytes exceeds this client's max_outstanding_bytes ({limit} bytes)"),
        );
    }
    if outstanding > 0 && outstanding.saturating_add(total) > limit {
        return Admit::Wait;
    }
    Admit::Take(total)
}

/// The announced total of a first fragment (`None` for any other record;
/// the reassembler judges those).
fn first_total<A: DataArea>(area: &A, rec: &Record) -> Option<u64> {
    let h = rec.hdr;
    if h.flags != rflags::FIRST | rflags::MORE || h.len < 8 || h.kind != kind::MSG {
        return None;
    }
    let mut tot = [0u8; 8];
    // SAFETY: `peek` checked that the record, header and `len >= 8` payload
    // bytes, lies inside the data area and the published range.
    unsafe { area.read(rec.payload_off, &mut tot) };
    Some(u64::from_le_bytes(tot))
}

/// What a reassembly error does: the segment is always broken (the stream
/// is poisoned: nobody knows where the next message starts); a message
/// whose id is known and that is merely too large first gets its one
/// `InvalidRequest` completion.
pub(super) fn on_frame_error(fe: &FrameError) -> (Option<(u64, String)>, String) {
    match (fe.id, &fe.error) {
        // Only when the client rewrote the total under us (`admit` refuses
        // oversized ones).
        (Some(id), ProtocolError::TooLarge { .. }) => (
            Some((id, fe.error.to_string())),
            format!("oversized message: {}", fe.error),
        ),
        (None, ProtocolError::TooLarge { .. }) => (None, fe.error.to_string()),
        _ => (None, format!("submission ring framing: {}", fe.error)),
    }
}

/// What the loop does after a drain turn that broke nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// The budget ran out: yield to the other tasks, then drain again.
    Yield,
    /// Something was taken: drain again.
    Again,
    /// Nothing taken: go idle. `at_limit`: held back by a limit, so wait
    /// for progress (a completion) rather than for new requests.
    Idle { at_limit: bool },
}

pub(super) fn after_turn(taken: usize, stopped_by: Option<Gate>) -> Next {
    match stopped_by {
        Some(Gate::Budget) => Next::Yield,
        _ if taken > 0 => Next::Again,
        Some(Gate::Inflight | Gate::Bytes) => Next::Idle { at_limit: true },
        _ => Next::Idle { at_limit: false },
    }
}

/// The safety-net nap while idle: the rings are re-checked even if a
/// doorbell was lost (a misbehaving client). It doubles while nothing
/// happens (250 ms up to 4 s), so that idle clients cost next to nothing.
pub(super) fn nap(idle_naps: u32) -> Duration {
    Duration::from_millis(250) * (1u32 << idle_naps.min(4))
}

// ---------------------------------------------------------------------------
// The loop (I/O)

/// Requests dispatched per clock reading in a drain turn: 32 small
/// requests take a few microseconds, so their deadlines start at most that
/// much early, never late. A large message (which may have been
/// reassembled over a long turn) reads the clock afresh.
const CLOCK_EVERY: u32 = 32;
/// Messages at least this large read the clock for themselves.
const CLOCK_BYTES: u64 = 64 << 10;

/// The submission side's private state.
struct Intake {
    cons: Consumer,
    reasm: Reassembler,
    limits: Limits,
    /// Bytes charged for the fragmented message being reassembled.
    partial_bytes: u64,
    /// The id of a refused fragmented message whose rest is skipped.
    skip: Option<u64>,
}

/// One drain turn's outcome.
struct Turn {
    taken: usize,
    stopped_by: Option<Gate>,
    broken: Option<String>,
}

impl ClientAttachment {
    /// The serve loop (one task per attachment).
    pub(super) async fn serve(self: Arc<Self>) {
        let afd: AsyncFd<ArcFd> = match self.doorbell().register() {
            Ok(a) => a,
            Err(e) => {
                self.mark_broken(format!("cannot register doorbell: {e}"));
                return;
            }
        };
        let seg = self.segment().clone();
        let (sq_ctl, _) = seg.sq();
        let l = *seg.layout();
        let limits = Limits {
            max_inflight: self.opts().max_inflight,
            max_outstanding_bytes: self.opts().max_outstanding_bytes,
            max_message: l.max_message,
        };
        let mut intake = Intake {
            cons: Consumer::new(l.sq_capacity, l.max_record),
            // Reassembly never reserves more than the outstanding-bytes limit.
            reasm: Reassembler::new(l.max_message.min(limits.max_outstanding_bytes)),
            limits,
            partial_bytes: 0,
            skip: None,
        };
        let mut closed = self.closed_rx();
        // Consecutive safety-net naps without work (backs the nap off).
        let mut idle_naps = 0u32;
        while !self.intake_stopped() {
            self.flush();
            let turn = self.drain_turn(&mut intake);
            if let Some(why) = turn.broken {
                self.mark_broken(why);
                break;
            }
            let at_limit = match after_turn(turn.taken, turn.stopped_by) {
                Next::Yield => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Next::Again => {
                    idle_naps = 0;
                    continue;
                }
                Next::Idle { at_limit } => at_limit,
            };
            // Idle: spin briefly (yielding to other tasks) before sleeping.
            if !at_limit && self.spin_for_requests(&mut intake.cons, sq_ctl).await {
                continue;
            }
            // Announce need-wakeup, re-check, then sleep on the doorbell.
            let recheck = || {
                let more = !at_limit && !matches!(intake.cons.is_empty(sq_ctl), Ok(true));
                Ok::<_, std::convert::Infallible>(more.then_some(()))
            };
            let Ok(Announced::Sleep(armed)) = wake::announce_sole(sq_ctl, Side::Consumer, recheck)
            else {
                continue;
            };
            let progress = self.progress().notified();
            tokio::select! {
                r = afd.readable() => {
                    idle_naps = 0;
                    if let Ok(mut g) = r {
                        // No read of the counter: the reactor is
                        // edge-triggered and every eventfd write raises a
                        // new edge whatever the counter holds, so clearing
                        // tokio's readiness is enough (one system call less
                        // per wake-up; the u64 counter cannot fill up).
                        g.clear_ready();
                    }
                }
                _ = progress, if at_limit => {}
                _ = closed.wait_for(|c| *c) => {}
                _ = tokio::time::sleep(nap(idle_naps)) => idle_naps += 1,
            }
            // Withdraws the announcement.
            drop(armed);
        }
        // Keep flushing completions of requests still in flight until they
        // are all written or the attachment closes.
        while self.inflight() > 0 && !self.is_closed() {
            self.flush();
            let progress = self.progress().notified();
            tokio::select! {
                r = afd.readable() => {
                    if let Ok(mut g) = r {
                        g.clear_ready();
                    }
                }
                _ = progress => {}
                _ = closed.wait_for(|c| *c) => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Spin for `AttachOptions::spin`, yielding to tokio; true as soon as
    /// a request is published.
    async fn spin_for_requests(&self, cons: &mut Consumer, ctl: &RingCtl) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < self.opts().spin {
            tokio::task::yield_now().await;
            if !matches!(cons.is_empty(ctl), Ok(true)) {
                return true;
            }
        }
        false
    }

    /// Take up to [`DRAIN_BUDGET`] requests while under the limits, then
    /// release their ring space (waking a client waiting for it).
    fn drain_turn(self: &Arc<Self>, it: &mut Intake) -> Turn {
        let seg = self.segment().clone();
        let (ctl, area) = seg.sq();
        let mut turn = Turn {
            taken: 0,
            stopped_by: None,
            broken: None,
        };
        // When requests were taken (their deadlines count from it): one
        // clock reading per CLOCK_EVERY requests, not one each, and none in
        // a turn that takes nothing.
        let mut taken_at: Option<std::time::Instant> = None;
        let mut since_clock = 0u32;
        // Records and payload bytes read this turn (`turn_spent`).
        let (mut records, mut bytes) = (0usize, 0u64);
        loop {
            let mid_message = it.reasm.in_progress() || it.skip.is_some();
            let g = gate(
                turn.taken,
                self.inflight(),
                self.outstanding_bytes(),
                mid_message,
                &it.limits,
            );
            if g != Gate::Take {
                turn.stopped_by = Some(g);
                break;
            }
            if turn_spent(records, bytes) {
                turn.stopped_by = Some(Gate::Budget);
                break;
            }
            let rec = match it.cons.peek(ctl, &area) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    turn.broken = Some(format!("submission ring: {e}"));
                    break;
                }
            };
            records += 1;
            bytes += u64::from(rec.hdr.len);
            if let Some(id) = it.skip {
                match skip_fragment(&rec.hdr, id) {
                    Ok(last) => {
                        it.cons.advance(&rec);
                        if last {
                            it.skip = None;
                        }
                        self.release(it, ctl);
                        continue;
                    }
                    Err(why) => {
                        turn.broken = Some(why.into());
                        break;
                    }
                }
            }
            if !it.reasm.in_progress() {
                let total = first_total(&area, &rec);
                match admit(total, self.outstanding_bytes(), &it.limits) {
                    Admit::Take(total) => {
                        it.partial_bytes = total;
                        if total > 0 {
                            self.charge(total);
                        }
                    }
                    Admit::Wait => {
                        turn.stopped_by = Some(Gate::Bytes);
                        break;
                    }
                    Admit::Refuse(k, why) => {
                        self.refuse(rec.hdr.id, k, why);
                        it.cons.advance(&rec);
                        it.skip = Some(rec.hdr.id);
                        turn.taken += 1;
                        continue;
                    }
                }
            }
            let pushed = it.reasm.push(&area, &rec);
            it.cons.advance(&rec);
            match pushed {
                Ok(Some(m)) => {
                    turn.taken += 1;
                    // A single record is charged its size now; a
                    // fragmented message was charged its announced total
                    // at its first fragment. The reassembler read the total
                    // again and checked the size against that: a client
                    // that rewrote it in between gets charged what was
                    // reassembled (charge before uncharge: never wraps).
                    let len = m.bytes.len() as u64;
                    let announced = std::mem::take(&mut it.partial_bytes);
                    if announced != len {
                        self.charge(len);
                        self.uncharge(announced);
                    }
                    since_clock += 1;
                    let now = match taken_at {
                        Some(t) if since_clock < CLOCK_EVERY && len < CLOCK_BYTES => t,
                        _ => {
                            since_clock = 0;
                            *taken_at.insert(std::time::Instant::now())
                        }
                    };
                    self.dispatch(m, len, now, &mut it.reasm);
                }
                Ok(None) => {}
                Err(fe) => {
                    self.uncharge(std::mem::take(&mut it.partial_bytes));
                    let (invalid, why) = on_frame_error(&fe);
                    if let Some((id, msg)) = invalid {
                        self.refuse_taken(id, ErrorKind::InvalidRequest, msg);
                    }
                    turn.broken = Some(why);
                    break;
                }
            }
            // Let the client reuse the space of a long message early.
            if it.reasm.in_progress() {
                self.release(it, ctl);
            }
        }
        self.release(it, ctl);
        turn
    }

    /// Return consumed submission space; wake a client thread waiting for it.
    fn release(&self, it: &mut Intake, ctl: &RingCtl) {
        if it.cons.release(ctl) {
            wake::wake(ctl, Side::Producer);
        }
    }

    /// Refuse a request that was never taken, with its one completion.
    fn refuse(&self, id: u64, k: ErrorKind, why: String) {
        debug!(conn = self.id(), id, reason = %why, "request refused");
        if k == ErrorKind::Overloaded {
            self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.refuse_taken(id, k, why);
    }

    /// Count a request in flight and complete it with an error at once.
    fn refuse_taken(&self, id: u64, k: ErrorKind, why: String) {
        self.begin_one();
        self.complete(id, &Completion::Err(ClientError::new(k, why)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_inflight: 10,
        max_outstanding_bytes: 1000,
        max_message: 5000,
    };

    fn hdr(id: u64, flags: u8) -> RecordHeader {
        RecordHeader {
            len: 16,
            kind: kind::MSG,
            flags,
            id,
        }
    }

    #[test]
    fn gate_checks_budget_then_inflight_then_bytes() {
        assert_eq!(gate(0, 0, 0, false, &L), Gate::Take);
        assert_eq!(gate(DRAIN_BUDGET, 10, 1000, false, &L), Gate::Budget);
        assert_eq!(gate(3, 10, 0, false, &L), Gate::Inflight);
        assert_eq!(gate(3, 9, 1000, false, &L), Gate::Bytes);
        // A message begun is finished whatever the byte count.
        assert_eq!(gate(3, 9, 5000, true, &L), Gate::Take);
        // ...but not past the in-flight limit.
        assert_eq!(gate(3, 10, 0, true, &L), Gate::Inflight);
    }

    #[test]
    fn a_turn_yields_after_enough_records_or_bytes() {
        assert!(!turn_spent(0, 0));
        assert!(!turn_spent(TURN_RECORDS - 1, TURN_BYTES - 1));
        assert!(turn_spent(TURN_RECORDS, 0), "empty records count");
        assert!(turn_spent(1, TURN_BYTES));
    }

    #[test]
    fn skipping_a_refused_message() {
        let more = rflags::MORE;
        assert_eq!(skip_fragment(&hdr(7, more), 7), Ok(false));
        assert_eq!(skip_fragment(&hdr(7, 0), 7), Ok(true));
        assert!(skip_fragment(&hdr(8, more), 7).is_err(), "another id");
        assert!(
            skip_fragment(&hdr(7, rflags::FIRST | more), 7).is_err(),
            "a new message"
        );
        let mut push = hdr(7, 0);
        push.kind = kind::PUSH;
        assert!(skip_fragment(&push, 7).is_err(), "not a request");
    }

    #[test]
    fn admission_of_fragmented_messages() {
        assert_eq!(
            admit(None, 999_999, &L),
            Admit::Take(0),
            "single records pass"
        );
        assert_eq!(admit(Some(600), 0, &L), Admit::Take(600));
        // Over the limit only with others outstanding: wait, don't refuse.
        assert_eq!(admit(Some(600), 500, &L), Admit::Wait);
        assert_eq!(admit(Some(1000), 0, &L), Admit::Take(1000));
        assert!(matches!(
            admit(Some(1001), 0, &L),
            Admit::Refuse(ErrorKind::Overloaded, _)
        ));
        assert!(matches!(
            admit(Some(5001), 0, &L),
            Admit::Refuse(ErrorKind::InvalidRequest, w) if w.contains("max_message")
        ));
    }

    #[test]
    fn frame_errors_break_the_segment() {
        let too_large = |id| FrameError {
            id,
            error: ProtocolError::TooLarge { len: 9, limit: 8 },
        };
        let (invalid, why) = on_frame_error(&too_large(Some(4)));
        assert_eq!(
            invalid.map(|i| i.0),
            Some(4),
            "the request gets its completion"
        );
        assert!(why.starts_with("oversized message"));
        assert_eq!(on_frame_error(&too_large(None)).0, None);
        let corrupt = FrameError {
            id: Some(4),
            error: ProtocolError::RingCorrupt("x"),
        };
        let (invalid, why) = on_frame_error(&corrupt);
        assert!(invalid.is_none() && why.starts_with("submission ring framing"));
    }

    #[test]
    fn what_follows_a_turn() {
        assert_eq!(after_turn(DRAIN_BUDGET, Some(Gate::Budget)), Next::Yield);
        assert_eq!(after_turn(3, None), Next::Again);
        assert_eq!(after_turn(3, Some(Gate::Bytes)), Next::Again);
        assert_eq!(after_turn(0, None), Next::Idle { at_limit: false });
        assert_eq!(
            after_turn(0, Some(Gate::Inflight)),
            Next::Idle { at_limit: true }
        );
        assert_eq!(
            after_turn(0, Some(Gate::Bytes)),
            Next::Idle { at_limit: true }
        );
    }

    #[test]
    fn naps_back_off_to_four_seconds() {
        assert_eq!(nap(0), Duration::from_millis(250));
        assert_eq!(nap(1), Duration::from_millis(500));
        assert_eq!(nap(4), Duration::from_secs(4));
        assert_eq!(nap(40), Duration::from_secs(4));
    }
}
