//! Differential tests against the redis crate's parser
//! (`redis::parse_redis_value`), compared through the existing
//! `crate::value::convert`.

use super::gen::{nil_style, value, wire, Nil, Profile};
use super::*;
use crate::value::convert;
use proptest::prelude::*;

/// Our frame as the value the redis-crate path yields for it.
fn ours(w: &[u8]) -> Value {
    let mut s = Scanner::new();
    assert_eq!(s.scan(w), Ok(Some(w.len())), "scan {w:?}");
    match decode(w).unwrap_or_else(|e| panic!("decode {w:?}: {e}")) {
        Frame::Value(v) | Frame::Push(v) => v,
        Frame::Error(e) => Value::Error(e),
        Frame::TooDeep => panic!("too deep"),
        Frame::TooLarge { .. } => panic!("too large"),
    }
}

/// The crate's value: `convert` maps its `Okay` back to `+OK` and its
/// server errors to `"CODE detail"`; a top-level error or push under
/// attributes loses them, as in our frames.
fn theirs(w: &[u8]) -> Value {
    let v = convert(redis::parse_redis_value(w).unwrap_or_else(|e| panic!("redis {w:?}: {e}")));
    let mut inner = &v;
    while let Value::Attribute { data, .. } = inner {
        inner = data;
    }
    match inner {
        Value::Error(_) | Value::Push { .. } => inner.clone(),
        _ => v,
    }
}

#[test]
fn fixed_inputs() {
    let cases: &[&[u8]] = &[
        b"+OK\r\n",
        b"+PONG\r\n",
        b"-ERR unknown command\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-EXECABORT\r\n",
        b":-12\r\n",
        b"$3\r\nfoo\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"*2\r\n:1\r\n-MOVED 1 h:1\r\n",
        b"_\r\n",
        b",3.25\r\n",
        b",inf\r\n",
        b",-inf\r\n",
        b",1e-7\r\n",
        b"#t\r\n",
        b"#f\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"=9\r\nmkd:# hi!\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n",
        b"~3\r\n:1\r\n:2\r\n:3\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n",
        b"|1\r\n+ttl\r\n:3\r\n:7\r\n",
        b"*1\r\n|1\r\n+a\r\n+b\r\n%1\r\n+k\r\n+v\r\n",
    ];
    for w in cases {
        assert_eq!(ours(w), theirs(w), "{}", String::from_utf8_lossy(w));
    }
}

#[test]
fn where_the_crate_fails_we_do_not() {
    // 101 levels: the crate gives up (and would drop the connection).
    let mut deep = b"*1\r\n".repeat(101);
    deep.extend_from_slice(b":1\r\n");
    assert!(redis::parse_redis_value(&deep).is_err());
    assert!(matches!(ours(&deep), Value::Array(_)));
    // A non-UTF-8 error echo.
    let w = b"-ERR unknown command '\xff'\r\n";
    assert!(redis::parse_redis_value(w).is_err());
    assert_eq!(
        ours(w),
        Value::Error(b"ERR unknown command '\xff'".to_vec())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn resp3_same_as_redis_crate(
        v in value(Profile { resp3: true, crate_safe: true }),
        nil in nil_style(),
    ) {
        let w = wire(&v, nil);
        prop_assert_eq!(ours(&w), theirs(&w));
    }

    #[test]
    fn resp2_same_as_redis_crate(
        v in value(Profile { resp3: false, crate_safe: true }),
        nil in prop_oneof![Just(Nil::Bulk), Just(Nil::Array)],
    ) {
        let w = wire(&v, nil);
        prop_assert_eq!(ours(&w), theirs(&w));
    }
}
