//! Test-only RESP writer and value generators.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// How the writer spells [`Value::Nil`].
#[derive(Debug, Clone, Copy)]
pub enum Nil {
    Null,
    Bulk,
    Array,
}

pub fn nil_style() -> impl Strategy<Value = Nil> {
    prop_oneof![Just(Nil::Null), Just(Nil::Bulk), Just(Nil::Array)]
}

fn blob(out: &mut Vec<u8>, ty: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(ty);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, ty: u8, s: &[u8]) {
    out.push(ty);
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn head(out: &mut Vec<u8>, ty: u8, n: usize) {
    line(out, ty, n.to_string().as_bytes());
}

/// Write `v` as RESP3 (RESP2 when it only uses RESP2 types and `nil` is
/// not `Null`). Errors without CR/LF are `-` lines, others `!` blobs.
pub fn write(out: &mut Vec<u8>, v: &Value, nil: Nil) {
    match v {
        Value::Nil => out.extend_from_slice(match nil {
            Nil::Null => b"_\r\n".as_slice(),
            Nil::Bulk => b"$-1\r\n",
            Nil::Array => b"*-1\r\n",
        }),
        Value::Int(i) => line(out, b':', i.to_string().as_bytes()),
        Value::Bulk(b) => blob(out, b'$', &[b]),
        Value::Simple(s) => line(out, b'+', s),
        Value::Error(e) if e.contains(&b'\r') || e.contains(&b'\n') => blob(out, b'!', &[e]),
        Value::Error(e) => line(out, b'-', e),
        Value::Double(d) => {
            // Both plain and exponent spellings.
            let s = if d.to_bits() & 1 == 1 {
                format!("{d:e}")
            } else {
                format!("{d}")
            };
            line(out, b',', s.as_bytes())
        }
        Value::Boolean(b) => line(out, b'#', if *b { b"t" } else { b"f" }),
        Value::BigNumber(d) => line(out, b'(', d),
        Value::Verbatim { format, text } => blob(out, b'=', &[format, b":", text]),
        Value::Array(a) | Value::Set(a) => {
            head(
                out,
                if matches!(v, Value::Array(_)) {
                    b'*'
                } else {
                    b'~'
                },
                a.len(),
            );
            for x in a {
                write(out, x, nil);
            }
        }
        Value::Map(m) => {
            head(out, b'%', m.len());
            write_pairs(out, m, nil);
        }
        Value::Push { kind, data } => {
            head(out, b'>', data.len() + 1);
            blob(out, b'$', &[kind]);
            for x in data {
                write(out, x, nil);
            }
        }
        Value::Attribute { data, attributes } => {
            head(out, b'|', attributes.len());
            write_pairs(out, attributes, nil);
            write(out, data, nil);
        }
    }
}

fn write_pairs(out: &mut Vec<u8>, m: &[Pair], nil: Nil) {
    for p in m {
        write(out, &p.key, nil);
        write(out, &p.value, nil);
    }
}

pub fn wire(v: &Value, nil: Nil) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v, nil);
    out
}

/// The frame `decode` must return for a top-level `v`: errors and pushes
/// (also under attributes, which are then dropped) are out of `Value`.
pub fn expected_frame(v: &Value) -> Frame {
    let mut inner = v;
    while let Value::Attribute { data, .. } = inner {
        inner = data;
    }
    match inner {
        Value::Error(e) => Frame::Error(e.clone()),
        Value::Push { .. } => Frame::Push(inner.clone()),
        _ => Frame::Value(v.clone()),
    }
}

/// What the generated values may contain.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// RESP3 types (else: nil, int, bulk, simple, error, array).
    pub resp3: bool,
    /// Only what the redis crate parses to the same value: UTF-8 text,
    /// `CODE detail` errors, known verbatim formats and push kinds.
    pub crate_safe: bool,
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..max).boxed()
}

fn text(re: &str) -> BoxedStrategy<Vec<u8>> {
    proptest::string::string_regex(re)
        .expect("regex")
        .prop_map(String::into_bytes)
        .boxed()
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN != NaN", |d| !d.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (-1000i32..1000).prop_map(f64::from),
    ]
}

pub fn value(p: Profile) -> BoxedStrategy<Value> {
    let (simple, error, verbatim, kind) = if p.crate_safe {
        (
            text("[^\r\n]{0,12}"),
            text("(ERR|WRONGTYPE|MOVED|EXECABORT|[A-Z]{1,8})( [a-z0-9 ]{0,10}[a-z0-9])?"),
            (text("txt|mkd|[a-z]{3}"), text("\\PC{0,16}")).boxed(),
            text("message|pmessage|invalidate|subscribe|[a-z]{1,10}"),
        )
    } else {
        (
            vec(
                any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
                0..12,
            )
            .boxed(),
            bytes(16),
            (vec(any::<u8>(), 3), bytes(16)).boxed(),
            bytes(10),
        )
    };
    let resp2 = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::Int),
        bytes(32).prop_map(Value::Bulk),
        simple.prop_map(Value::Simple),
        error.prop_map(Value::Error),
    ];
    if !p.resp3 {
        return resp2
            .prop_recursive(4, 48, 6, |inner| vec(inner, 0..6).prop_map(Value::Array))
            .boxed();
    }
    let leaf = prop_oneof![
        5 => resp2,
        1 => double().prop_map(Value::Double),
        1 => any::<bool>().prop_map(Value::Boolean),
        1 => text("-?[0-9]{1,30}").prop_map(Value::BigNumber),
        1 => verbatim.prop_map(|(format, text)| Value::Verbatim { format, text }),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        let pair = (inner.clone(), inner.clone()).prop_map(|(key, value)| Pair { key, value });
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(inner.clone(), 0..6).prop_map(Value::Set),
            vec(pair.clone(), 0..4).prop_map(Value::Map),
            (kind.clone(), vec(inner.clone(), 0..5))
                .prop_map(|(kind, data)| Value::Push { kind, data }),
            (inner, vec(pair, 0..3)).prop_map(|(data, attributes)| Value::Attribute {
                data: Box::new(data),
                attributes
            }),
        ]
    })
    .boxed()
}
