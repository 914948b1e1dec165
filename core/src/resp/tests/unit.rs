use super::*;
use vshm_protocol::msg::ErrorKind;

#[test]
fn resp2_scalars() {
    assert_eq!(val(b"+OK\r\n"), simple(b"OK"));
    assert_eq!(val(b"+\r\n"), simple(b""));
    assert_eq!(val(b":0\r\n"), Value::Int(0));
    assert_eq!(val(b":-42\r\n"), Value::Int(-42));
    assert_eq!(val(b":+7\r\n"), Value::Int(7));
    assert_eq!(val(b":9223372036854775807\r\n"), Value::Int(i64::MAX));
    assert_eq!(val(b":-9223372036854775808\r\n"), Value::Int(i64::MIN));
    assert_eq!(val(b"$5\r\nhello\r\n"), bulk(b"hello"));
    assert_eq!(val(b"$0\r\n\r\n"), bulk(b""));
    // Binary payload, CRLF inside included.
    assert_eq!(val(b"$4\r\n\0\r\n\xff\r\n"), bulk(b"\0\r\n\xff"));
}

#[test]
fn nil_forms() {
    assert_eq!(val(b"$-1\r\n"), Value::Nil);
    assert_eq!(val(b"*-1\r\n"), Value::Nil);
    assert_eq!(val(b"_\r\n"), Value::Nil);
    assert_eq!(
        val(b"*3\r\n$-1\r\n*-1\r\n_\r\n"),
        Value::Array(vec![Value::Nil, Value::Nil, Value::Nil])
    );
    // Other negative lengths are not nil.
    assert_eq!(bad(b"$-2\r\n"), RespError::BadLength);
    assert_eq!(bad(b"*-2\r\n"), RespError::BadLength);
    assert_eq!(bad(b"~-1\r\n"), RespError::BadLength);
    assert_eq!(bad(b"%-1\r\n"), RespError::BadLength);
    assert_eq!(bad(b"!-1\r\n"), RespError::BadLength);
    assert_eq!(bad(b"_x\r\n"), RespError::BadNull);
}

#[test]
fn resp2_arrays() {
    assert_eq!(val(b"*0\r\n"), Value::Array(vec![]));
    assert_eq!(
        val(b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n"),
        Value::Array(vec![
            Value::Int(1),
            bulk(b"a"),
            Value::Array(vec![simple(b"x")])
        ])
    );
}

#[test]
fn resp3_scalars() {
    assert_eq!(val(b"#t\r\n"), Value::Boolean(true));
    assert_eq!(val(b"#f\r\n"), Value::Boolean(false));
    assert_eq!(bad(b"#x\r\n"), RespError::BadBoolean);
    assert_eq!(bad(b"#\r\n"), RespError::BadBoolean);
    assert_eq!(val(b",1.5\r\n"), Value::Double(1.5));
    assert_eq!(val(b",-2\r\n"), Value::Double(-2.0));
    assert_eq!(val(b",1e10\r\n"), Value::Double(1e10));
    assert_eq!(val(b",-1.25E-3\r\n"), Value::Double(-1.25e-3));
    assert_eq!(val(b",inf\r\n"), Value::Double(f64::INFINITY));
    assert_eq!(val(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
    match val(b",nan\r\n") {
        Value::Double(d) => assert!(d.is_nan()),
        v => panic!("{v:?}"),
    }
    assert_eq!(bad(b",1.2.3\r\n"), RespError::BadDouble);
    assert_eq!(bad(b",\r\n"), RespError::BadDouble);
    assert_eq!(
        val(b"(3492890328409238509324850943850943825024385\r\n"),
        Value::BigNumber(b"3492890328409238509324850943850943825024385".to_vec())
    );
    assert_eq!(
        val(b"(-12345678901234567890\r\n"),
        Value::BigNumber(b"-12345678901234567890".to_vec())
    );
    assert_eq!(bad(b"(12a\r\n"), RespError::BadBigNumber);
    assert_eq!(bad(b"(-\r\n"), RespError::BadBigNumber);
    assert_eq!(bad(b"(\r\n"), RespError::BadBigNumber);
}

#[test]
fn verbatim() {
    assert_eq!(
        val(b"=15\r\ntxt:Some string\r\n"),
        Value::Verbatim {
            format: b"txt".to_vec(),
            text: b"Some string".to_vec()
        }
    );
    assert_eq!(
        val(b"=4\r\nmkd:\r\n"),
        Value::Verbatim {
            format: b"mkd".to_vec(),
            text: vec![]
        }
    );
    assert_eq!(bad(b"=3\r\ntxt\r\n"), RespError::BadVerbatim);
    assert_eq!(bad(b"=5\r\ntxtxy\r\n"), RespError::BadVerbatim);
}

#[test]
fn resp3_aggregates() {
    assert_eq!(
        val(b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n,2.5\r\n"),
        Value::Map(vec![
            pair(simple(b"a"), Value::Int(1)),
            pair(bulk(b"b"), Value::Double(2.5))
        ])
    );
    assert_eq!(val(b"%0\r\n"), Value::Map(vec![]));
    assert_eq!(
        val(b"~2\r\n#t\r\n_\r\n"),
        Value::Set(vec![Value::Boolean(true), Value::Nil])
    );
    assert_eq!(val(b"~0\r\n"), Value::Set(vec![]));
}

#[test]
fn attributes_top_level_and_nested() {
    let ttl = || vec![pair(simple(b"ttl"), Value::Int(3))];
    assert_eq!(
        val(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"),
        Value::Attribute {
            data: Box::new(Value::Int(7)),
            attributes: ttl()
        }
    );
    // Nested: the attribute and its value are one element of the array.
    assert_eq!(
        val(b"*2\r\n|1\r\n+ttl\r\n:3\r\n*1\r\n:7\r\n:8\r\n"),
        Value::Array(vec![
            Value::Attribute {
                data: Box::new(Value::Array(vec![Value::Int(7)])),
                attributes: ttl()
            },
            Value::Int(8)
        ])
    );
    // Empty attribute, attribute of an attribute.
    assert_eq!(
        val(b"|0\r\n|0\r\n+x\r\n"),
        Value::Attribute {
            data: Box::new(Value::Attribute {
                data: Box::new(simple(b"x")),
                attributes: vec![]
            }),
            attributes: vec![]
        }
    );
    // An attribute on a top-level error or push does not hide its kind.
    assert_eq!(
        one(b"|1\r\n+k\r\n+v\r\n-ERR x\r\n"),
        Frame::Error(b"ERR x".to_vec())
    );
    assert_eq!(
        one(b"|1\r\n+k\r\n+v\r\n>1\r\n+invalidate\r\n"),
        Frame::Push(Value::Push {
            kind: b"invalidate".to_vec(),
            data: vec![]
        })
    );
}

#[test]
fn pushes() {
    assert_eq!(
        one(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        Frame::Push(Value::Push {
            kind: b"message".to_vec(),
            data: vec![bulk(b"ch"), bulk(b"hi")]
        })
    );
    assert_eq!(
        one(b">1\r\n+invalidate\r\n"),
        Frame::Push(Value::Push {
            kind: b"invalidate".to_vec(),
            data: vec![]
        })
    );
    assert_eq!(
        one(b">0\r\n"),
        Frame::Push(Value::Push {
            kind: vec![],
            data: vec![]
        })
    );
    // Nested push: a value.
    assert_eq!(
        val(b"*1\r\n>1\r\n$1\r\nk\r\n"),
        Value::Array(vec![Value::Push {
            kind: b"k".to_vec(),
            data: vec![]
        }])
    );
    // The kind must be a string: the scanner delimits it, decode refuses.
    let w = b">2\r\n:1\r\n:2\r\n";
    assert_eq!(Scanner::new().scan(w), Ok(Some(w.len())));
    assert_eq!(decode(w), Err(RespError::BadPushKind));
}

#[test]
fn errors_top_level_and_nested() {
    assert_eq!(
        one(b"-WRONGTYPE Operation against a key\r\n"),
        Frame::Error(b"WRONGTYPE Operation against a key".to_vec())
    );
    assert_eq!(
        one(b"!21\r\nSYNTAX invalid syntax\r\n"),
        Frame::Error(b"SYNTAX invalid syntax".to_vec())
    );
    assert_eq!(
        val(b"*3\r\n:1\r\n-ERR a\r\n!5\r\nERR b\r\n"),
        Value::Array(vec![
            Value::Int(1),
            Value::Error(b"ERR a".to_vec()),
            Value::Error(b"ERR b".to_vec())
        ])
    );
}

#[test]
fn binary_error_text() {
    let raw = b"ERR unknown command '\xff\xfe\x00x'";
    let mut w = b"-".to_vec();
    w.extend_from_slice(raw);
    w.extend_from_slice(b"\r\n");
    assert_eq!(one(&w), Frame::Error(raw.to_vec()));
    // Blob error: CRLF inside too.
    let raw = b"ERR \xc3\x28\r\n!";
    let mut w = format!("!{}\r\n", raw.len()).into_bytes();
    w.extend_from_slice(raw);
    w.extend_from_slice(b"\r\n");
    assert_eq!(one(&w), Frame::Error(raw.to_vec()));
    let e = error_to_client(raw);
    assert_eq!(e.kind, ErrorKind::Request);
    assert_eq!(e.message, "ERR \u{fffd}(\r\n!");
}

#[test]
fn error_to_client_kinds() {
    let cases: [(&[u8], ErrorKind); 7] = [
        (b"EXECABORT Transaction discarded", ErrorKind::ExecAbort),
        (b"EXECABORT", ErrorKind::ExecAbort),
        (b"CLUSTERDOWN The cluster is down", ErrorKind::Connection),
        (
            b"MASTERDOWN Link with MASTER is down",
            ErrorKind::Connection,
        ),
        (b"WRONGTYPE Operation", ErrorKind::Request),
        (b"EXECABORTX y", ErrorKind::Request),
        (b"", ErrorKind::Request),
    ];
    for (text, kind) in cases {
        let e = error_to_client(text);
        assert_eq!(e.kind, kind, "{text:?}");
        assert_eq!(e.message.as_bytes(), text);
        // Same mapping as the redis-crate path.
        let code = String::from_utf8_lossy(text.split(|&b| b == b' ').next().unwrap_or(b""));
        assert_eq!(crate::value::server_error_kind(&code), kind);
    }
}

#[test]
fn malformed() {
    assert_eq!(bad(b"?\r\n"), RespError::BadType(b'?'));
    // Streamed RESP3 is not supported.
    assert_eq!(bad(b"$?\r\n;4\r\nHell\r\n;0\r\n"), RespError::BadInteger);
    assert_eq!(bad(b"*?\r\n:1\r\n.\r\n"), RespError::BadInteger);
    assert_eq!(bad(b";4\r\nabcd\r\n"), RespError::BadType(b';'));
    assert_eq!(bad(b"+OK\n"), RespError::BareLf);
    assert_eq!(bad(b"\n"), RespError::BadType(b'\n'));
    assert_eq!(bad(b"+\n"), RespError::BareLf);
    // A bad type byte is refused before its line is complete.
    assert_eq!(
        Scanner::new().scan(b"*1\r\nx"),
        Err(RespError::BadType(b'x'))
    );
    assert_eq!(bad(b"$3\r\nabcd\r\n"), RespError::MissingCrlf);
    assert_eq!(bad(b"$\r\n"), RespError::BadInteger);
    assert_eq!(bad(b"$ 3\r\nabc\r\n"), RespError::BadInteger);
    assert_eq!(bad(b":12a\r\n"), RespError::BadInteger);
    assert_eq!(bad(b":-\r\n"), RespError::BadInteger);
    assert_eq!(bad(b":9223372036854775808\r\n"), RespError::BadInteger);
    assert_eq!(bad(b":-9223372036854775809\r\n"), RespError::BadInteger);
    assert_eq!(bad(b":99999999999999999999999\r\n"), RespError::BadInteger);
    // Limits.
    assert_eq!(bad(b"$536870913\r\n"), RespError::TooLarge);
    assert_eq!(bad(b"*2147483648\r\n"), RespError::TooLarge);
    assert_eq!(bad(b"%2147483648\r\n"), RespError::TooLarge);
    // At the limits the scanner just waits for the bytes.
    assert_eq!(Scanner::new().scan(b"$536870912\r\n"), Ok(None));
    assert_eq!(Scanner::new().scan(b"|2147483647\r\n"), Ok(None));
}

#[test]
fn decode_needs_exactly_one_frame() {
    assert_eq!(decode(b""), Err(RespError::Truncated));
    assert_eq!(decode(b"*2\r\n:1\r\n"), Err(RespError::Truncated));
    assert_eq!(decode(b"$5\r\nab"), Err(RespError::Truncated));
    assert_eq!(decode(b":1\r\n:2\r\n"), Err(RespError::TrailingBytes));
}

#[test]
fn hostile_count_does_not_allocate_it() {
    // Must neither allocate 2e9 slots nor succeed.
    assert_eq!(decode(b"*2000000000\r\n:1\r\n"), Err(RespError::Truncated));
    assert_eq!(decode(b"%2000000000\r\n:1\r\n"), Err(RespError::Truncated));
    assert_eq!(decode(b">2000000000\r\n+k\r\n"), Err(RespError::Truncated));
}

fn nested(depth: usize, leaf: &[u8]) -> Vec<u8> {
    let mut w = b"*1\r\n".repeat(depth);
    w.extend_from_slice(leaf);
    w
}

#[test]
fn nested_200_deep() {
    let mut v = val(&nested(200, b":5\r\n"));
    for _ in 0..200 {
        v = match v {
            Value::Array(mut a) if a.len() == 1 => a.pop().unwrap_or(Value::Nil),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(v, Value::Int(5));
}

#[test]
fn depth_limit_is_exact() {
    assert!(matches!(
        one(&nested(MAX_DEPTH, b":1\r\n")),
        Frame::Value(Value::Array(_))
    ));
    assert_eq!(one(&nested(MAX_DEPTH + 1, b":1\r\n")), Frame::TooDeep);
    // An empty aggregate is a level too.
    assert!(matches!(
        one(&nested(MAX_DEPTH - 1, b"*0\r\n")),
        Frame::Value(_)
    ));
    assert_eq!(one(&nested(MAX_DEPTH, b"%0\r\n")), Frame::TooDeep);
    // A push too deep is still a push (out of band), never a reply.
    let mut push = b">2\r\n$7\r\nmessage\r\n".to_vec();
    push.extend_from_slice(&nested(MAX_DEPTH + 1, b":1\r\n"));
    assert!(matches!(one(&push), Frame::Push(Value::Push { .. })));
    // So is one behind top-level attributes (whose own values may nest).
    for attrs in [
        b"|1\r\n+a\r\n*1\r\n:1\r\n".as_slice(),
        b"|0\r\n|1\r\n*1\r\n+k\r\n%1\r\n+x\r\n:2\r\n",
    ] {
        let mut annotated = attrs.to_vec();
        annotated.extend_from_slice(&push);
        assert!(
            matches!(one(&annotated), Frame::Push(Value::Push { .. })),
            "{:?}",
            String::from_utf8_lossy(attrs)
        );
        let mut reply = attrs.to_vec();
        reply.extend_from_slice(&nested(MAX_DEPTH + 1, b":1\r\n"));
        assert_eq!(one(&reply), Frame::TooDeep);
    }
    // A too-deep frame is still validated.
    assert_eq!(
        decode(&nested(MAX_DEPTH + 5, b":x\r\n")),
        Err(RespError::BadInteger)
    );
}

#[test]
fn ten_thousand_deep_on_a_small_stack() {
    let t = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            // Tail nesting (`*1` chains) and non-tail nesting (`*2` whose
            // first element is the deep one) through arrays, maps, sets,
            // attributes and pushes.
            let mut frames = vec![nested(10_000, b"$1\r\nx\r\n")];
            let mut w = Vec::new();
            for i in 0..10_000 {
                w.extend_from_slice(match i % 4 {
                    0 => b"*2\r\n".as_slice(),
                    1 => b"%1\r\n",
                    2 => b"~2\r\n",
                    _ => b"|1\r\n",
                });
            }
            w.extend_from_slice(b":0\r\n");
            for i in (0..10_000).rev() {
                w.extend_from_slice(if i % 4 == 3 {
                    b"+k\r\n:1\r\n"
                } else {
                    b"_\r\n"
                });
            }
            frames.push(w);
            for f in &frames {
                let mut s = Scanner::new();
                // Byte-by-byte and whole.
                for end in 1..f.len() {
                    assert_eq!(s.scan(&f[..end]), Ok(None));
                }
                assert_eq!(s.scan(f), Ok(Some(f.len())));
                assert_eq!(decode(f), Ok(Frame::TooDeep));
            }
        })
        .expect("spawn");
    t.join().expect("no stack overflow");
}

#[test]
fn encode_command_bytes() {
    let mut out = b"prefix".to_vec();
    encode_command(&mut out, &["SET", "k", "value"]);
    assert_eq!(out, b"prefix*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
    let mut out = Vec::new();
    encode_command::<&[u8]>(&mut out, &[]);
    assert_eq!(out, b"*0\r\n");
    let big = vec![7u8; 1_234_567];
    let mut out = Vec::new();
    encode_command(&mut out, &[b"".as_slice(), &big]);
    assert!(out.starts_with(b"*2\r\n$0\r\n\r\n$1234567\r\n"));
    // It decodes back to the arguments.
    assert_eq!(
        val(&out),
        Value::Array(vec![bulk(b""), Value::Bulk(big.clone())])
    );
    // Exact reservation: a fresh buffer is never reallocated.
    let mut out = Vec::new();
    encode_command(&mut out, &[b"GET".as_slice(), b"0123456789"]);
    assert_eq!(out.len(), out.capacity());
}
