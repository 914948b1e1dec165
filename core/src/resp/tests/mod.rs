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
