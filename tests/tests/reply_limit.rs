//! `Config::max_reply_bytes`: a reply larger than the limit (a huge `LRANGE`, a big value, a
//! long error line) fails its own request with a `Request` error, is read and dropped as it
//! arrives, and harms nothing else: other clients' concurrent requests on the same shared
//! connection all succeed, the server connection is not replaced, and the next replies are
//! matched to their own requests. Real server, RESP2 and RESP3; nothing about timing.

use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::Protocol;
use vshm_protocol::msg::{ClientError, ErrorKind, Value};
use vshm_tests::RedisServer;

mod support;
use support::{
    assert_no_failures, call, clients, connection_ids, ok_value, standalone_cfg, while_others_load,
};

/// The smallest limit allowed.
const LIMIT: u64 = 1 << 20;
/// 12,000 elements of 100 bytes: about 1.3 MB on the wire, 1.7 MB with the elements' weight.
const LIST_LEN: usize = 12_000;

/// Fill the list `big:list` and the string `big:value` (2 MiB).
fn fill(c: &EmbeddedClient) {
    let item = vec![b'i'; 100];
    for _ in 0..LIST_LEN / 500 {
        let mut args: Vec<&[u8]> = vec![b"RPUSH", b"big:list"];
        args.extend(std::iter::repeat_n(item.as_slice(), 500));
        call(c, &args).expect("RPUSH");
    }
    let value = vec![b'v'; 2 << 20];
    assert_eq!(
        call(c, &[b"SET", b"big:value", &value]).unwrap(),
        ok_value()
    );
}

/// A request whose reply is over the limit, and what a short prefix of its error must say.
const OVERSIZED: &[&[&[u8]]] = &[
    &[b"LRANGE", b"big:list", b"0", b"-1"],
    &[b"GET", b"big:value"],
    // An error line of 1.2 MB.
    &[
        b"EVAL",
        b"return redis.error_reply(string.rep('e', 1200000))",
        b"0",
    ],
    // A big number line of 1.2 MB (RESP3; RESP2 gets it as a bulk string).
    &[
        b"EVAL",
        b"redis.setresp(3) return {big_number=string.rep('7', 1200000)}",
        b"0",
    ],
];

fn is_too_large(r: &Result<Value, ClientError>) -> bool {
    matches!(r, Err(e) if e.kind == ErrorKind::Request && e.message.contains("max_reply_bytes"))
}

fn oversized_replies_fail_only_their_request(protocol: Protocol) {
    let server = RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let mut cfg = standalone_cfg(server.addr(), protocol);
    cfg.max_reply_bytes = LIMIT;
    let big = core.open(&cfg).unwrap();
    let others = clients(&core, &cfg, 3);
    fill(&big);
    let before = connection_ids(&server);
    assert!(!before.is_empty(), "the backend has no server connection");

    let (rounds, other_failures) =
        while_others_load(&others, &format!("rl:{protocol:?}"), 1000, (8, 200), |n| {
            let kind = n % OVERSIZED.len();
            let r = call(&big, OVERSIZED[kind]);
            // A small reply right after: matched to its own request.
            let tail = match call(&big, &[b"LRANGE", b"big:list", b"0", b"1"]) {
                Ok(Value::Array(v)) if v.len() == 2 => Ok(Value::Nil),
                other => other,
            };
            [(kind, r), (usize::MAX, tail)]
        });
    let results: Vec<(usize, Result<Value, ClientError>)> = rounds.into_iter().flatten().collect();

    let wrong: Vec<String> = results
        .iter()
        .filter(|(i, r)| {
            if *i == usize::MAX {
                !matches!(r, Ok(Value::Nil))
            } else {
                !is_too_large(r)
            }
        })
        .map(|(i, r)| {
            let shown = format!("{r:?}");
            format!("request kind {i}: {}", &shown[..shown.len().min(300)])
        })
        .collect();
    eprintln!(
        "{protocol:?}: {} requests ({} not as wanted), {} failures of the other clients",
        results.len(),
        wrong.len(),
        other_failures.len()
    );
    assert_no_failures("oversized replies", &wrong);
    assert_no_failures("other clients during oversized replies", &other_failures);
    let after = connection_ids(&server);
    let dropped: Vec<&u64> = before.difference(&after).collect();
    assert!(
        dropped.is_empty(),
        "server connections were closed by oversized replies: {dropped:?}"
    );
    // Below the limit the same data is served.
    let Value::Array(part) = call(&big, &[b"LRANGE", b"big:list", b"0", b"999"]).unwrap() else {
        panic!("LRANGE: not an array");
    };
    assert_eq!(part.len(), 1000);
}

#[test]
fn oversized_replies_fail_only_their_request_resp3() {
    oversized_replies_fail_only_their_request(Protocol::Resp3);
}

#[test]
fn oversized_replies_fail_only_their_request_resp2() {
    oversized_replies_fail_only_their_request(Protocol::Resp2);
}
