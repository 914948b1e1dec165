//! Tests of the RESP module.
//!
//! * [`unit`]: every type, nil forms, errors, limits, depth, encoder.
//! * [`scanner`]: resumption, `need`, concatenated frames, big inputs.
//! * [`redirect`]: `parse_redirect` / `retry_class` tables.
//! * [`gen`]: a test-only RESP writer and value generators.
//! * [`prop`]: property tests.
//! * [`diff`]: differential against the redis crate's parser.

mod diff;
mod gen;
mod prop;
mod redirect;
mod scanner;
mod unit;

use super::*;
use vshm_protocol::msg::{Pair, Value};

/// Scan `wire` in one piece, check it is exactly one frame, decode it.
fn one(wire: &[u8]) -> Frame {
    let mut s = Scanner::new();
    assert_eq!(s.scan(wire), Ok(Some(wire.len())), "scan {wire:?}");
    decode(wire).unwrap_or_else(|e| panic!("decode {wire:?}: {e}"))
}

/// Decode a frame expected to be a reply value.
fn val(wire: &[u8]) -> Value {
    match one(wire) {
        Frame::Value(v) => v,
        f => panic!("{wire:?}: expected a value, got {f:?}"),
    }
}

/// Both the scanner and the decoder reject `wire`.
fn bad(wire: &[u8]) -> RespError {
    let e = Scanner::new()
        .scan(wire)
        .expect_err(&format!("scan accepted {wire:?}"));
    assert_eq!(decode(wire), Err(e), "decode of {wire:?}");
    e
}

fn bulk(b: &[u8]) -> Value {
    Value::Bulk(b.to_vec())
}

fn simple(b: &[u8]) -> Value {
    Value::Simple(b.to_vec())
}

fn pair(key: Value, value: Value) -> Pair {
    Pair { key, value }
}

/// Scan `buf` in pieces ending at `cuts` with a size limit, dropping what an oversized frame
/// no longer needs after every incomplete scan (as the node's reader does): per frame its
/// decoded value, or its `Oversized`.
/// Also returns the most bytes it ever held.
type Limited = (Vec<Result<Frame, Oversized>>, usize);

fn read_limited(buf: &[u8], cuts: &[usize], limit: usize) -> Result<Limited, RespError> {
    let mut s = Scanner::new();
    s.set_limit(limit);
    let mut held: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut most = 0;
    let mut from = 0;
    for end in cuts.iter().copied().chain([buf.len()]) {
        if end < from {
            continue;
        }
        held.extend_from_slice(&buf[from..end]);
        most = most.max(held.len());
        from = end;
        let mut start = 0;
        while let Some(n) = s.scan(&held[start..])? {
            out.push(match s.oversized() {
                None => Ok(decode(&held[start..start + n])?),
                Some(o) => Err(o),
            });
            start += n;
        }
        held.drain(..start);
        while s.over_limit() {
            let r = s.discard(&held)?;
            if r.is_empty() {
                break;
            }
            held.drain(r);
        }
    }
    Ok((out, most))
}
