use super::*;

/// Feed `wire` to one scanner in pieces ending at `cuts` (then the rest),
/// returning the frame lengths it reports, consuming each frame as a
/// reader would.
fn frames_in_pieces(wire: &[u8], cuts: &[usize]) -> Vec<usize> {
    let mut s = Scanner::new();
    let mut start = 0;
    let mut out = Vec::new();
    let ends = cuts.iter().copied().chain([wire.len()]);
    for end in ends {
        loop {
            match s.scan(&wire[start..end]).expect("valid RESP") {
                Some(n) => {
                    out.push(n);
                    start += n;
                }
                None => {
                    assert!(
                        s.need() > end - start,
                        "need {} at {}",
                        s.need(),
                        end - start
                    );
                    break;
                }
            }
        }
    }
    assert_eq!(start, wire.len(), "all consumed");
    out
}

#[test]
fn every_split_point() {
    let wire: &[u8] =
        b"*2\r\n$5\r\nhello\r\n%1\r\n+a\r\n|1\r\n+k\r\n+v\r\n~1\r\n,1.5\r\n>2\r\n+m\r\n:1\r\n";
    let first = b"*2\r\n$5\r\nhello\r\n%1\r\n+a\r\n|1\r\n+k\r\n+v\r\n~1\r\n,1.5\r\n".len();
    for cut in 0..=wire.len() {
        assert_eq!(
            frames_in_pieces(wire, &[cut]),
            vec![first, wire.len() - first],
            "cut {cut}"
        );
    }
    // Byte by byte.
    let cuts: Vec<usize> = (0..wire.len()).collect();
    assert_eq!(
        frames_in_pieces(wire, &cuts),
        vec![first, wire.len() - first]
    );
}

#[test]
fn need_covers_a_big_bulk() {
    let payload = vec![b'x'; 16 << 20];
    let mut wire = format!("${}\r\n", payload.len()).into_bytes();
    let header = wire.len();
    wire.extend_from_slice(&payload);
    wire.extend_from_slice(b"\r\n");
    let mut s = Scanner::new();
    assert_eq!(s.need(), 1);
    assert_eq!(s.scan(&wire[..3]), Ok(None));
    assert_eq!(s.need(), 4);
    assert_eq!(s.scan(&wire[..header + 10]), Ok(None));
    assert_eq!(s.need(), wire.len());
    assert_eq!(s.scan(&wire[..wire.len() - 1]), Ok(None));
    assert_eq!(s.need(), wire.len());
    assert_eq!(s.scan(&wire), Ok(Some(wire.len())));
    assert_eq!(s.need(), 1, "reset after a frame");
}

#[test]
fn big_inputs_in_64k_reads_are_linear() {
    // 16 MiB bulk, an array of 1M small elements and a 4 MiB simple string
    // arriving in 64 KiB reads, each read followed by a scan. Quadratic
    // rescanning would take minutes in a debug build; assert the scanner
    // never looks at more than a few times the input.
    let mut big_bulk = format!("${}\r\n", 16 << 20).into_bytes();
    big_bulk.resize(big_bulk.len() + (16 << 20), b'b');
    big_bulk.extend_from_slice(b"\r\n");
    let mut many = b"*1000000\r\n".to_vec();
    for i in 0..1_000_000u32 {
        many.extend_from_slice(if i % 2 == 0 {
            b":1\r\n".as_slice()
        } else {
            b"$1\r\nx\r\n"
        });
    }
    let mut long_line = b"+".to_vec();
    long_line.resize(4 << 20, b'l');
    long_line.extend_from_slice(b"\r\n");
    for wire in [&big_bulk, &many, &long_line] {
        let t = std::time::Instant::now();
        let mut s = Scanner::new();
        let mut got = None;
        let mut end = 0;
        while end < wire.len() {
            end = (end + (64 << 10)).min(wire.len());
            got = s.scan(&wire[..end]).expect("valid");
            if got.is_some() {
                assert_eq!(end, wire.len());
            }
        }
        assert_eq!(got, Some(wire.len()));
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    }
    assert_eq!(val(&many).clone(), {
        let v: Vec<Value> = (0..1_000_000)
            .map(|i| {
                if i % 2 == 0 {
                    Value::Int(1)
                } else {
                    bulk(b"x")
                }
            })
            .collect();
        Value::Array(v)
    });
}

#[test]
fn concatenated_frames_delimited_exactly() {
    let parts: [&[u8]; 6] = [
        b"+OK\r\n",
        b"$-1\r\n",
        b"-ERR x\r\n",
        b">2\r\n+message\r\n$1\r\na\r\n",
        b"*2\r\n*0\r\n%0\r\n",
        b"|1\r\n+a\r\n+b\r\n$2\r\n\r\n\r\n",
    ];
    let wire = parts.concat();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    assert_eq!(frames_in_pieces(&wire, &[]), lens);
    assert_eq!(frames_in_pieces(&wire, &[1, 7, 20, 21, 22]), lens);
}

#[test]
fn error_leaves_no_panic_and_reset_recovers() {
    let mut s = Scanner::new();
    assert_eq!(s.scan(b"*2\r\n:1\r\n"), Ok(None));
    assert_eq!(s.scan(b"*2\r\n:1\r\n?"), Err(RespError::BadType(b'?')));
    s.reset();
    assert_eq!(s.scan(b":1\r\n"), Ok(Some(4)));
    // A shorter buffer than promised (misuse) does not panic.
    let mut s = Scanner::new();
    assert_eq!(s.scan(b"*2\r\n+aaaa"), Ok(None));
    assert_eq!(s.scan(b"*2"), Ok(None));
    let mut s = Scanner::new();
    assert_eq!(s.scan(b"$10\r\nab"), Ok(None));
    assert_eq!(s.scan(b""), Ok(None));
}

#[test]
fn bulk_head_names_a_complete_bulk_header() {
    assert_eq!(bulk_head(b"$5\r\nhel"), Some((4, 5)));
    assert_eq!(bulk_head(b"$1048576\r\n"), Some((10, 1 << 20)));
    assert_eq!(bulk_head(b"$0\r\n\r\n"), Some((4, 0)));
    // Incomplete header, nil, other types, bad headers: not for the direct read.
    assert_eq!(bulk_head(b"$104857"), None);
    assert_eq!(bulk_head(b"$-1\r\n"), None);
    assert_eq!(bulk_head(b"=10\r\ntxt:"), None);
    assert_eq!(bulk_head(b"*1\r\n$5\r\n"), None);
    assert_eq!(bulk_head(b"$x\r\n"), None);
    assert_eq!(bulk_head(b""), None);
}

/// [`read_limited`] with `wire` arriving `step` bytes at a time; everything must be consumed.
fn limited_read(wire: &[u8], limit: usize, step: usize) -> Result<Limited, RespError> {
    let cuts: Vec<usize> = (step..wire.len()).step_by(step).collect();
    let r = read_limited(wire, &cuts, limit)?;
    assert_eq!(
        r.0.len(),
        wire_frames(wire),
        "every frame read, nothing left over"
    );
    Ok(r)
}

/// How many top-level frames `wire` holds (no limit).
fn wire_frames(wire: &[u8]) -> usize {
    let mut s = Scanner::new();
    let (mut at, mut n) = (0, 0);
    while let Ok(Some(k)) = s.scan(&wire[at..]) {
        at += k;
        n += 1;
    }
    n
}

#[test]
fn oversized_frames_are_dropped_as_they_come() {
    let mut big_bulk = format!("${}\r\n", 4 << 20).into_bytes();
    big_bulk.resize(big_bulk.len() + (4 << 20), b'b');
    big_bulk.extend_from_slice(b"\r\n");
    let mut many = b"*100000\r\n".to_vec();
    for _ in 0..100_000 {
        many.extend_from_slice(b":1\r\n");
    }
    let mut long_line = b"-ERR ".to_vec();
    long_line.resize(4 << 20, b'l');
    long_line.extend_from_slice(b"\r\n");
    let mut verbatim = format!("={}\r\ntxt:", 4 << 20).into_bytes();
    verbatim.resize(verbatim.len() + (4 << 20) - 4, b'v');
    verbatim.extend_from_slice(b"\r\n");
    let mut push = b">2\r\n$7\r\nmessage\r\n".to_vec();
    push.extend_from_slice(&big_bulk);
    let mut annotated_push = b"|1\r\n+key\r\n*1\r\n:1\r\n".to_vec();
    annotated_push.extend_from_slice(&push);
    let mut nested_long = b"*2\r\n:1\r\n(".to_vec();
    nested_long.resize(nested_long.len() + (1 << 20), b'7');
    nested_long.extend_from_slice(b"\r\n");
    let ok = b"+OK\r\n";
    for (name, frame) in [
        ("bulk", &big_bulk),
        ("array", &many),
        ("error line", &long_line),
        ("verbatim", &verbatim),
        ("push", &push),
        ("annotated push", &annotated_push),
        ("big number in an array", &nested_long),
    ] {
        let mut wire = ok.to_vec();
        wire.extend_from_slice(frame);
        wire.extend_from_slice(ok);
        for step in [1 << 16, 4093, 1 << 20] {
            let (got, held) = limited_read(&wire, 64 << 10, step).expect(name);
            let want = vec![
                Ok(Frame::Value(Value::Simple(b"OK".to_vec()))),
                Err(Oversized {
                    bytes: frame.len(),
                    push: name.ends_with("push"),
                }),
                Ok(Frame::Value(Value::Simple(b"OK".to_vec()))),
            ];
            assert_eq!(got, want, "{name}, step {step}");
            // Never more than the limit and a read (4 MiB frames).
            assert!(
                held <= (64 << 10) + step,
                "{name}, step {step}: held {held}"
            );
        }
    }
}

#[test]
fn the_limit_is_exact() {
    // 11 bytes and one element: weight 11 + ELEMENT_WEIGHT.
    let wire = b"$5\r\nhello\r\n";
    let w = wire.len() + ELEMENT_WEIGHT;
    let (got, _) = limited_read(wire, w, 3).unwrap();
    assert_eq!(got, vec![Ok(Frame::Value(bulk(b"hello")))]);
    let (got, _) = limited_read(wire, w - 1, 3).unwrap();
    assert_eq!(
        got,
        vec![Err(Oversized {
            bytes: wire.len(),
            push: false
        })]
    );
    // Elements count: 4 elements, 16 bytes.
    let wire = b"*3\r\n:1\r\n:2\r\n:3\r\n";
    let w = wire.len() + 4 * ELEMENT_WEIGHT;
    assert!(limited_read(wire, w, 1).unwrap().0[0].is_ok());
    assert!(limited_read(wire, w - 1, 1).unwrap().0[0].is_err());
}

#[test]
fn dropping_still_checks_framing() {
    // A verbatim string without its prefix, a bulk without CRLF, a bare LF in a dropped
    // line: still errors, not frames.
    let mut bad_verbatim = format!("={}\r\n", 100_000).into_bytes();
    bad_verbatim.resize(bad_verbatim.len() + 100_000, b'v');
    bad_verbatim.extend_from_slice(b"\r\n");
    assert_eq!(
        limited_read(&bad_verbatim, 1024, 4096).unwrap_err(),
        RespError::BadVerbatim
    );
    let mut no_crlf = format!("${}\r\n", 100_000).into_bytes();
    no_crlf.resize(no_crlf.len() + 100_002, b'x');
    assert_eq!(
        limited_read(&no_crlf, 1024, 4096).unwrap_err(),
        RespError::MissingCrlf
    );
    let mut bare_lf = b"+".to_vec();
    bare_lf.resize(100_000, b'l');
    bare_lf.extend_from_slice(b"\n");
    assert_eq!(
        limited_read(&bare_lf, 1024, 4096).unwrap_err(),
        RespError::BareLf
    );
}

#[test]
fn endless_number_headers_are_refused_early() {
    // No LF within a number's 20 bytes (+ CRLF): an error at once, not a buffer that grows.
    for (ty, e) in [
        (b'$', RespError::BadInteger),
        (b'*', RespError::BadInteger),
        (b'%', RespError::BadInteger),
        (b'|', RespError::BadInteger),
        (b'>', RespError::BadInteger),
        (b':', RespError::BadInteger),
        (b'#', RespError::BadBoolean),
        (b'_', RespError::BadNull),
    ] {
        let mut wire = vec![ty];
        wire.resize(1 + 22, b'1');
        assert_eq!(Scanner::new().scan(&wire[..22]), Ok(None), "{}", ty as char);
        assert_eq!(Scanner::new().scan(&wire), Err(e), "{}", ty as char);
        assert_eq!(decode(&wire), Err(e), "{}", ty as char);
        // The longest valid ones still pass.
        if ty == b':' {
            assert_eq!(val(b":-9223372036854775808\r\n"), Value::Int(i64::MIN));
        }
    }
    assert_eq!(val(b"*-1\r\n"), Value::Nil, "short headers are unaffected");
    // Text lines have no such bound.
    let mut line = b"+".to_vec();
    line.resize(1000, b't');
    assert_eq!(Scanner::new().scan(&line), Ok(None));
}
