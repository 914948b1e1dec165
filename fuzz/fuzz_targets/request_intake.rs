//! The daemon's request intake: what the core does with the records a
//! client writes into its submission ring.
//!
//! A fuzzer-driven client writes a sequence of steps into a real ring
//! through the real `Producer` / `FragmentWriter`: raw records (any kind,
//! flags, id and payload, e.g. stray or lying fragments), arbitrary bytes
//! as a message, and well-formed requests (optionally under the wrong
//! record id, optionally padded past `max_record` so they fragment or past
//! `max_message` so they are refused). The daemon side is the core's
//! serve loop (`core/src/dispatch/serve.rs`) without its async plumbing and
//! byte accounting: `Consumer::peek`, the refusal of an oversized first
//! fragment and the skipping of its rest, `Reassembler::push` (bounded by
//! `max_message`), then `msg::decode_submitted` (the very function the
//! core calls to validate and decode). Any error but `TooLarge` ends the
//! intake, as in the core.
//!
//! Checks: nothing panics; every message handed on is at most
//! `max_message` bytes; what decodes re-encodes to the same request; and a
//! well-formed request written on a clean stream comes out exactly once,
//! equal (or, with the wrong id, as exactly one invalid-request answer; or,
//! too large, as exactly one refusal).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use vshm_protocol::frame::{FragmentWriter, Reassembler};
use vshm_protocol::layout::RingCtl;
use vshm_protocol::msg::{decode_submitted, encode_request, Op, Request, Route, SubKind};
use vshm_protocol::ring::{
    kind, rflags, Consumer, DataArea, HeapArea, Producer, RecordHeader, ReserveError,
};
use vshm_protocol::ProtocolError;

/// Padding up to 8 KiB: enough to pass every `max_message` below.
const PAD_MASK: u16 = 0x1fff;

#[derive(Arbitrary, Debug)]
enum ARoute {
    Auto,
    AllNodes,
    AllPrimaries,
    Random,
    SlotKey { key: Vec<u8>, replica: bool },
    SlotId { slot: u16, replica: bool },
    Address { host: String, port: u16 },
}

#[derive(Arbitrary, Debug)]
enum ASub {
    Exact,
    Pattern,
    Sharded,
}

#[derive(Arbitrary, Debug)]
enum AOp {
    Command(Vec<Vec<u8>>),
    Batch {
        atomic: bool,
        watch: Vec<Vec<u8>>,
        commands: Vec<Vec<Vec<u8>>>,
    },
    Cancel(u64),
    Script {
        code: Vec<u8>,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
    },
    Subscribe(ASub, Vec<Vec<u8>>),
    Unsubscribe(ASub, Vec<Vec<u8>>),
    ClusterScan {
        cursor: u64,
        pattern: Option<Vec<u8>>,
        count: u32,
        type_filter: Option<Vec<u8>>,
    },
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// One record with any header the producer can commit.
    Raw {
        kind: u8,
        flags: u8,
        id: u8,
        payload: Vec<u8>,
    },
    /// Arbitrary bytes (`pad` zero bytes appended) as one message, through
    /// the client's fragment writer.
    Bytes { id: u8, data: Vec<u8>, pad: u16 },
    /// A well-formed request; `pad` bytes more in one argument; the record
    /// id is the request's plus `id_delta`.
    Request {
        id: u8,
        id_delta: u8,
        timeout_ms: u32,
        flags: u32,
        route: ARoute,
        op: AOp,
        pad: u16,
    },
}

fn sub(s: ASub) -> SubKind {
    match s {
        ASub::Exact => SubKind::Exact,
        ASub::Pattern => SubKind::Pattern,
        ASub::Sharded => SubKind::Sharded,
    }
}

fn request(id: u64, timeout_ms: u32, flags: u32, route: ARoute, op: AOp, pad: u16) -> Request {
    let route = match route {
        ARoute::Auto => Route::Auto,
        ARoute::AllNodes => Route::AllNodes,
        ARoute::AllPrimaries => Route::AllPrimaries,
        ARoute::Random => Route::Random,
        ARoute::SlotKey { key, replica } => Route::SlotKey { key, replica },
        ARoute::SlotId { slot, replica } => Route::SlotId { slot, replica },
        ARoute::Address { host, port } => Route::Address { host, port },
    };
    let padding = vec![0x5a; usize::from(pad & PAD_MASK)];
    let op = match op {
        AOp::Command(mut args) => {
            args.push(padding);
            Op::Command { args }
        }
        AOp::Batch {
            atomic,
            mut watch,
            commands,
        } => {
            watch.push(padding);
            Op::Batch {
                atomic,
                watch,
                commands,
            }
        }
        AOp::Cancel(target) => Op::Cancel { target },
        AOp::Script {
            mut code,
            keys,
            args,
        } => {
            code.extend_from_slice(&padding);
            Op::Script { code, keys, args }
        }
        AOp::Subscribe(k, mut channels) => {
            channels.push(padding);
            Op::Subscribe {
                kind: sub(k),
                channels,
            }
        }
        AOp::Unsubscribe(k, mut channels) => {
            channels.push(padding);
            Op::Unsubscribe {
                kind: sub(k),
                channels,
            }
        }
        AOp::ClusterScan {
            cursor,
            pattern,
            count,
            type_filter,
        } => Op::ClusterScan {
            cursor,
            pattern: Some(
                pattern
                    .unwrap_or_default()
                    .into_iter()
                    .chain(padding)
                    .collect(),
            ),
            count,
            type_filter,
        },
    };
    Request {
        id,
        timeout_ms,
        flags,
        route,
        op,
    }
}

/// What the daemon answered for one message.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Decoded and handed to the executor.
    Decoded(Request),
    /// Answered with an InvalidRequest completion.
    Invalid(u64),
    /// An oversized fragmented message refused up front (its rest skipped).
    Refused(u64),
}

/// The core's serve loop, synchronously (see the module docs).
struct Daemon {
    cons: Consumer,
    reasm: Reassembler,
    max_message: u64,
    skip: Option<u64>,
    /// The intake ended (the core marks the segment broken).
    broken: bool,
    out: Vec<Outcome>,
}

impl Daemon {
    fn drain(&mut self, ctl: &RingCtl, area: &HeapArea) {
        while !self.broken {
            let rec = match self.cons.peek(ctl, area) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => {
                    self.broken = true;
                    break;
                }
            };
            let h = rec.hdr;
            if let Some(id) = self.skip {
                if h.id != id || h.kind != kind::MSG || h.flags & rflags::FIRST != 0 {
                    self.broken = true;
                    break;
                }
                self.cons.advance(&rec);
                if h.flags & rflags::MORE == 0 {
                    self.skip = None;
                }
                continue;
            }
            if !self.reasm.in_progress()
                && h.flags == rflags::FIRST | rflags::MORE
                && h.len >= 8
                && h.kind == kind::MSG
            {
                let mut tot = [0u8; 8];
                // SAFETY: peek checked that the record (len >= 8 payload
                // bytes) lies inside the area and the published range.
                unsafe { area.read(rec.payload_off, &mut tot) };
                if u64::from_le_bytes(tot) > self.max_message {
                    self.out.push(Outcome::Refused(h.id));
                    self.cons.advance(&rec);
                    self.skip = Some(h.id);
                    continue;
                }
            }
            match self.reasm.push(area, &rec) {
                Ok(Some(m)) => {
                    self.cons.advance(&rec);
                    assert!(m.bytes.len() as u64 <= self.max_message);
                    match decode_submitted(&m.bytes, m.id) {
                        Ok(req) => {
                            assert_eq!(req.id, m.id);
                            let again = encode_request(&req);
                            assert_eq!(decode_submitted(&again, m.id).as_ref(), Ok(&req));
                            self.out.push(Outcome::Decoded(req));
                        }
                        Err(_) => self.out.push(Outcome::Invalid(m.id)),
                    }
                }
                Ok(None) => self.cons.advance(&rec),
                Err(fe) => {
                    self.cons.advance(&rec);
                    if let (ProtocolError::TooLarge { .. }, Some(id)) = (&fe.error, fe.id) {
                        self.out.push(Outcome::Invalid(id));
                    }
                    self.broken = true;
                }
            }
        }
        self.cons.release(ctl);
    }

    fn clean(&self) -> bool {
        !self.broken && !self.reasm.in_progress() && self.skip.is_none()
    }
}

/// The client: writes one message with the fragment writer, draining the
/// daemon whenever the ring is full. False when the daemon stopped reading.
fn write_message(
    prod: &mut Producer,
    ctl: &RingCtl,
    area: &HeapArea,
    daemon: &mut Daemon,
    id: u64,
    data: &[u8],
) -> bool {
    let mut w = FragmentWriter::new(id, kind::MSG);
    loop {
        let done = w
            .pump(prod, ctl, area, data)
            .expect("the daemon never moves its head wrongly");
        prod.publish(ctl);
        if done {
            return true;
        }
        daemon.drain(ctl, area);
        if daemon.broken {
            return false;
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    // Rings of 256, 1024 or 4096 bytes (records up to 48, 240, 1008).
    let cap = 256u64 << (u.int_in_range(0u8..=2)? * 2);
    let max_record = cap / 4 - 16;
    let max_message = match u.int_in_range(0u8..=2)? {
        0 => max_record,
        1 => 1024,
        _ => 4096,
    }
    .max(max_record);
    let area = HeapArea::new(cap as usize);
    let ctl = RingCtl::default();
    let mut prod = Producer::new(cap, max_record);
    let mut daemon = Daemon {
        cons: Consumer::new(cap, max_record),
        reasm: Reassembler::new(max_message),
        max_message,
        skip: None,
        broken: false,
        out: Vec::new(),
    };
    while !u.is_empty() && !daemon.broken {
        match Step::arbitrary(u)? {
            Step::Raw {
                kind,
                flags,
                id,
                payload,
            } => {
                let len = (payload.len() as u64).min(max_record);
                let res = match prod.try_reserve(&ctl, &area, len) {
                    Ok(r) => r,
                    Err(ReserveError::Full) => {
                        daemon.drain(&ctl, &area);
                        match prod.try_reserve(&ctl, &area, len) {
                            Ok(r) => r,
                            // The daemon stopped reading (it is broken).
                            Err(_) => return Ok(()),
                        }
                    }
                    Err(e) => panic!("reserve: {e:?}"),
                };
                prod.write_payload(&area, &res, &payload[..len as usize]);
                let hdr = RecordHeader {
                    len: len as u32,
                    kind,
                    flags,
                    id: u64::from(id),
                };
                prod.commit(&area, res, hdr);
                prod.publish(&ctl);
            }
            Step::Bytes { id, mut data, pad } => {
                data.resize(data.len() + usize::from(pad & PAD_MASK), 0);
                if !write_message(&mut prod, &ctl, &area, &mut daemon, u64::from(id), &data) {
                    return Ok(());
                }
            }
            Step::Request {
                id,
                id_delta,
                timeout_ms,
                flags,
                route,
                op,
                pad,
            } => {
                let req = request(u64::from(id), timeout_ms, flags, route, op, pad);
                let bytes = encode_request(&req);
                let rec_id = u64::from(id) + u64::from(id_delta);
                // Drain first so that the oracle knows the stream's state.
                daemon.drain(&ctl, &area);
                let clean = daemon.clean();
                let before = daemon.out.len();
                if !write_message(&mut prod, &ctl, &area, &mut daemon, rec_id, &bytes) {
                    // A clean stream and a well-formed message: the
                    // daemon must not stop reading.
                    assert!(!clean, "intake ended on a well-formed request");
                    return Ok(());
                }
                daemon.drain(&ctl, &area);
                if clean {
                    let expected = if bytes.len() as u64 > max_message {
                        Outcome::Refused(rec_id)
                    } else if id_delta != 0 {
                        Outcome::Invalid(rec_id)
                    } else {
                        Outcome::Decoded(req)
                    };
                    assert_eq!(daemon.out[before..], [expected]);
                    assert!(daemon.clean());
                }
            }
        }
    }
    daemon.drain(&ctl, &area);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
