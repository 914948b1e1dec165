//! Arbitrary `Completion` -> `encode_completion` -> `decode_completion`
//! gives the same value back (byte-identical re-encoding when a NaN makes
//! `==` useless).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vshm_protocol::msg::{
    decode_completion, encode_completion, ClientError, Completion, ErrorKind, Pair, Value,
};

/// Mirror of `msg::Value` with an `Arbitrary` derive (the protocol crate
/// does not depend on `arbitrary`).
#[derive(Arbitrary, Debug)]
enum AValue {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Array(Vec<AValue>),
    Map(Vec<(AValue, AValue)>),
    Set(Vec<AValue>),
    Double(f64),
    Boolean(bool),
    BigNumber(Vec<u8>),
    Verbatim {
        format: Vec<u8>,
        text: Vec<u8>,
    },
    Push {
        kind: Vec<u8>,
        data: Vec<AValue>,
    },
    Attribute {
        data: Box<AValue>,
        attributes: Vec<(AValue, AValue)>,
    },
}

#[derive(Arbitrary, Debug)]
enum AKind {
    Request,
    Timeout,
    Connection,
    Closing,
    ExecAbort,
    InvalidRequest,
    Overloaded,
}

#[derive(Arbitrary, Debug)]
enum ACompletion {
    Ok(AValue),
    Err(AKind, String),
    Push(AValue),
}

/// Aggregates nested deeper than this become `Nil` (bounded recursion).
const MAX_DEPTH: usize = 64;

fn value(v: AValue, depth: usize) -> Value {
    let deep = depth >= MAX_DEPTH;
    let list = |l: Vec<AValue>| l.into_iter().map(|v| value(v, depth + 1)).collect();
    let pairs = |l: Vec<(AValue, AValue)>| {
        l.into_iter()
            .map(|(k, v)| Pair {
                key: value(k, depth + 1),
                value: value(v, depth + 1),
            })
            .collect()
    };
    match v {
        AValue::Nil => Value::Nil,
        AValue::Int(i) => Value::Int(i),
        AValue::Bulk(b) => Value::Bulk(b),
        AValue::Simple(b) => Value::Simple(b),
        AValue::Error(b) => Value::Error(b),
        AValue::Double(d) => Value::Double(d),
        AValue::Boolean(b) => Value::Boolean(b),
        AValue::BigNumber(b) => Value::BigNumber(b),
        AValue::Verbatim { format, text } => Value::Verbatim { format, text },
        _ if deep => Value::Nil,
        AValue::Array(l) => Value::Array(list(l)),
        AValue::Set(l) => Value::Set(list(l)),
        AValue::Map(l) => Value::Map(pairs(l)),
        AValue::Push { kind, data } => Value::Push {
            kind,
            data: list(data),
        },
        AValue::Attribute { data, attributes } => Value::Attribute {
            data: Box::new(value(*data, depth + 1)),
            attributes: pairs(attributes),
        },
    }
}

fn has_nan(v: &Value) -> bool {
    let pairs = |l: &[Pair]| l.iter().any(|p| has_nan(&p.key) || has_nan(&p.value));
    match v {
        Value::Double(d) => d.is_nan(),
        Value::Array(l) | Value::Set(l) | Value::Push { data: l, .. } => l.iter().any(has_nan),
        Value::Map(l) => pairs(l),
        Value::Attribute { data, attributes } => has_nan(data) || pairs(attributes),
        _ => false,
    }
}

fuzz_target!(|c: ACompletion| {
    let c = match c {
        ACompletion::Ok(v) => Completion::Ok(value(v, 0)),
        ACompletion::Push(v) => Completion::Push(value(v, 0)),
        ACompletion::Err(k, message) => Completion::Err(ClientError::new(
            match k {
                AKind::Request => ErrorKind::Request,
                AKind::Timeout => ErrorKind::Timeout,
                AKind::Connection => ErrorKind::Connection,
                AKind::Closing => ErrorKind::Closing,
                AKind::ExecAbort => ErrorKind::ExecAbort,
                AKind::InvalidRequest => ErrorKind::InvalidRequest,
                AKind::Overloaded => ErrorKind::Overloaded,
            },
            message,
        )),
    };
    let bytes = encode_completion(&c);
    let back = decode_completion(&bytes).expect("an encoded completion decodes");
    match &c {
        Completion::Ok(v) | Completion::Push(v) if has_nan(v) => {
            assert_eq!(encode_completion(&back).as_slice(), bytes.as_slice());
        }
        _ => assert_eq!(back, c),
    }
});
