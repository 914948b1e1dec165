//! The engine (`vshm_core::Backend::execute`) against a real standalone redis-server.
//!
//! Tests share one server (`shared_standalone`) and run in parallel: each uses its own keys
//! (prefixed by the test name) and never FLUSHes. Tests that stall the server (DEBUG SLEEP),
//! kill connections or count clients start their own server.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;
use vshm_core::config::{Config, Protocol};
use vshm_core::{Backend, Engine};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, Op, Pair, Request, Route, Value};
use vshm_tests::{shared_standalone, RedisServer};

/// Generous bound for test requests: the machine is shared and slow; only tests about
/// timeouts use short ones.
const T: u32 = 20_000;

fn request(args: &[&[u8]], route: Route, timeout_ms: u32) -> Request {
    Request {
        id: 1,
        timeout_ms,
        flags: 0,
        route,
        op: Op::Command {
            args: args.iter().map(|a| a.to_vec()).collect(),
        },
    }
}

async fn run(b: &Backend, args: &[&[u8]]) -> Completion {
    b.execute(&request(args, Route::Auto, T)).await
}

async fn ok(b: &Backend, args: &[&[u8]]) -> Value {
    match run(b, args).await {
        Completion::Ok(v) => v,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&args.concat())),
    }
}

async fn err(b: &Backend, args: &[&[u8]]) -> ClientError {
    match run(b, args).await {
        Completion::Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn bulk(s: &[u8]) -> Value {
    Value::Bulk(s.to_vec())
}

fn simple(s: &str) -> Value {
    Value::Simple(s.as_bytes().to_vec())
}

fn config(addr: String, protocol: Protocol) -> Config {
    Config {
        addresses: vec![addr],
        protocol,
        ..Config::default()
    }
}

async fn backend(addr: String, protocol: Protocol) -> (Engine, Arc<Backend>) {
    let engine = Engine::new(Handle::current());
    let b = engine.connect(&config(addr, protocol)).await.unwrap();
    (engine, b)
}

/// Sort a set's or an array's members (their order is the server's).
fn sorted(v: Value) -> Vec<Value> {
    let mut items = match v {
        Value::Set(s) | Value::Array(s) => s,
        other => panic!("not a collection: {other:?}"),
    };
    items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    items
}

async fn data_types_round_trip(protocol: Protocol) {
    let (_e, b) = backend(shared_standalone().addr(), protocol).await;
    let p = format!("types-{protocol:?}:");
    let k = |s: &str| format!("{p}{s}").into_bytes();

    // strings
    assert_eq!(ok(&b, &[b"SET", &k("s"), b"v1"]).await, simple("OK"));
    assert_eq!(ok(&b, &[b"GET", &k("s")]).await, bulk(b"v1"));
    assert_eq!(ok(&b, &[b"GET", &k("missing")]).await, Value::Nil);
    assert_eq!(ok(&b, &[b"INCRBY", &k("n"), b"5"]).await, Value::Int(5));
    assert_eq!(ok(&b, &[b"PING"]).await, simple("PONG"));

    // hashes
    assert_eq!(
        ok(&b, &[b"HSET", &k("h"), b"f1", b"a", b"f2", b"b"]).await,
        Value::Int(2)
    );
    let all = ok(&b, &[b"HGETALL", &k("h")]).await;
    match protocol {
        Protocol::Resp3 => {
            let Value::Map(mut pairs) = all else {
                panic!("HGETALL under RESP3 is a map: {all:?}")
            };
            pairs.sort_by(|a, b| format!("{:?}", a.key).cmp(&format!("{:?}", b.key)));
            assert_eq!(
                pairs,
                vec![
                    Pair {
                        key: bulk(b"f1"),
                        value: bulk(b"a")
                    },
                    Pair {
                        key: bulk(b"f2"),
                        value: bulk(b"b")
                    },
                ]
            );
        }
        Protocol::Resp2 => {
            let Value::Array(items) = all else {
                panic!("HGETALL under RESP2 is a flat array: {all:?}")
            };
            assert_eq!(items.len(), 4);
        }
    }

    // lists
    assert_eq!(
        ok(&b, &[b"RPUSH", &k("l"), b"x", b"y", b"z"]).await,
        Value::Int(3)
    );
    assert_eq!(
        ok(&b, &[b"LRANGE", &k("l"), b"0", b"-1"]).await,
        Value::Array(vec![bulk(b"x"), bulk(b"y"), bulk(b"z")])
    );

    // sets
    assert_eq!(
        ok(&b, &[b"SADD", &k("set"), b"m1", b"m2"]).await,
        Value::Int(2)
    );
    let members = ok(&b, &[b"SMEMBERS", &k("set")]).await;
    match protocol {
        Protocol::Resp3 => assert!(matches!(members, Value::Set(_)), "{members:?}"),
        Protocol::Resp2 => assert!(matches!(members, Value::Array(_)), "{members:?}"),
    }
    assert_eq!(sorted(members), vec![bulk(b"m1"), bulk(b"m2")]);

    // sorted sets
    assert_eq!(
        ok(&b, &[b"ZADD", &k("z"), b"1.5", b"a", b"2", b"b"]).await,
        Value::Int(2)
    );
    let score = ok(&b, &[b"ZSCORE", &k("z"), b"a"]).await;
    match protocol {
        Protocol::Resp3 => assert_eq!(score, Value::Double(1.5)),
        Protocol::Resp2 => assert_eq!(score, bulk(b"1.5")),
    }
    assert_eq!(
        ok(&b, &[b"ZRANGE", &k("z"), b"0", b"-1"]).await,
        Value::Array(vec![bulk(b"a"), bulk(b"b")])
    );

    // streams
    let id = ok(&b, &[b"XADD", &k("x"), b"1-1", b"f", b"v"]).await;
    assert_eq!(id, bulk(b"1-1"));
    assert_eq!(ok(&b, &[b"XLEN", &k("x")]).await, Value::Int(1));
    assert_eq!(
        ok(&b, &[b"XRANGE", &k("x"), b"-", b"+"]).await,
        Value::Array(vec![Value::Array(vec![
            bulk(b"1-1"),
            Value::Array(vec![bulk(b"f"), bulk(b"v")])
        ])])
    );

    ok(
        &b,
        &[
            b"DEL",
            &k("s"),
            &k("n"),
            &k("h"),
            &k("l"),
            &k("set"),
            &k("z"),
            &k("x"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_types_resp3() {
    data_types_round_trip(Protocol::Resp3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_types_resp2() {
    data_types_round_trip(Protocol::Resp2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_large_values() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    let nul = b"a\0b\r\n\0\xff".to_vec();
    let key = b"bin:\0key".to_vec();
    ok(&b, &[b"SET", &key, &nul]).await;
    assert_eq!(ok(&b, &[b"GET", &key]).await, Value::Bulk(nul));

    for size in [0usize, 1 << 20, 64 << 20] {
        let value: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let k = format!("bin:size:{size}").into_bytes();
        assert_eq!(ok(&b, &[b"SET", &k, &value]).await, simple("OK"));
        assert_eq!(ok(&b, &[b"STRLEN", &k]).await, Value::Int(size as i64));
        assert_eq!(
            ok(&b, &[b"GET", &k]).await,
            Value::Bulk(value),
            "size {size}"
        );
        ok(&b, &[b"DEL", &k]).await;
    }
    ok(&b, &[b"DEL", &key]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_types_from_debug_protocol() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    let bb: &Backend = &b;
    let dp = |t: &'static str| async move { ok(bb, &[b"DEBUG", b"PROTOCOL", t.as_bytes()]).await };
    assert_eq!(dp("string").await, bulk(b"Hello World"));
    assert_eq!(dp("integer").await, Value::Int(12345));
    // The server's fixed test double (not PI).
    let double: f64 = "3.141".parse().unwrap();
    assert_eq!(dp("double").await, Value::Double(double));
    assert_eq!(
        dp("bignum").await,
        Value::BigNumber(b"1234567999999999999999999999999999999".to_vec())
    );
    assert_eq!(dp("null").await, Value::Nil);
    assert_eq!(
        dp("array").await,
        Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        dp("set").await,
        Value::Set(vec![Value::Int(0), Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        dp("map").await,
        Value::Map(vec![
            Pair {
                key: Value::Int(0),
                value: Value::Boolean(false)
            },
            Pair {
                key: Value::Int(1),
                value: Value::Boolean(true)
            },
            Pair {
                key: Value::Int(2),
                value: Value::Boolean(false)
            },
        ])
    );
    assert_eq!(
        dp("verbatim").await,
        Value::Verbatim {
            format: b"txt".to_vec(),
            text: b"This is a verbatim\nstring".to_vec()
        }
    );
    assert_eq!(dp("true").await, Value::Boolean(true));
    assert_eq!(dp("false").await, Value::Boolean(false));
    assert_eq!(
        dp("attrib").await,
        Value::Attribute {
            data: Box::new(bulk(b"Some real reply following the attribute")),
            attributes: vec![Pair {
                key: bulk(b"key-popularity"),
                value: Value::Array(vec![bulk(b"key:123"), Value::Int(90)])
            }]
        }
    );
    // The push is out of band (it goes to the connection's push channel); the reply is
    // the bulk string that follows it, and the connection stays in sync.
    assert_eq!(
        dp("push").await,
        bulk(b"Some real reply following the push reply")
    );
    assert_eq!(ok(&b, &[b"PING"]).await, simple("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_types_from_debug_protocol() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp2).await;
    let bb: &Backend = &b;
    let dp = |t: &'static str| async move { run(bb, &[b"DEBUG", b"PROTOCOL", t.as_bytes()]).await };
    let v = |c: Completion| match c {
        Completion::Ok(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(v(dp("double").await), bulk(b"3.141"));
    assert_eq!(
        v(dp("bignum").await),
        bulk(b"1234567999999999999999999999999999999")
    );
    assert_eq!(v(dp("null").await), Value::Nil);
    assert_eq!(v(dp("true").await), Value::Int(1));
    assert_eq!(v(dp("false").await), Value::Int(0));
    assert_eq!(
        v(dp("set").await),
        Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        v(dp("map").await),
        Value::Array(
            [0, 0, 1, 1, 2, 0]
                .into_iter()
                .map(Value::Int)
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(v(dp("verbatim").await), bulk(b"This is a verbatim\nstring"));
    assert_eq!(
        v(dp("attrib").await),
        bulk(b"Some real reply following the attribute")
    );
    match dp("push").await {
        Completion::Err(e) => {
            assert_eq!(e.kind, ErrorKind::Request);
            assert!(e.message.starts_with("ERR RESP2 is not supported"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_request_errors() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    ok(&b, &[b"DEL", b"wrongtype:l"]).await;
    ok(&b, &[b"LPUSH", b"wrongtype:l", b"x"]).await;
    let e = err(&b, &[b"GET", b"wrongtype:l"]).await;
    assert_eq!(e.kind, ErrorKind::Request);
    assert_eq!(
        e.message,
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    let e = err(&b, &[b"NOSUCHCOMMAND", b"x"]).await;
    assert_eq!(e.kind, ErrorKind::Request);
    assert!(e.message.starts_with("ERR unknown command"), "{e}");
    // The connection is fine afterwards.
    assert_eq!(ok(&b, &[b"LLEN", b"wrongtype:l"]).await, Value::Int(1));
    ok(&b, &[b"DEL", b"wrongtype:l"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_does_not_break_the_connection() {
    // Own server: DEBUG SLEEP stalls everybody on it.
    let server = RedisServer::start();
    let (_e, b) = backend(server.addr(), Protocol::Resp3).await;
    let id = ok(&b, &[b"CLIENT", b"ID"]).await;

    let start = Instant::now();
    let c = b
        .execute(&request(&[b"DEBUG", b"SLEEP", b"2"], Route::Auto, 100))
        .await;
    match c {
        Completion::Err(e) => {
            assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
            assert!(e.message.contains("DEBUG"), "{e}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The timeout ended the wait, not the reply.
    assert!(start.elapsed() < Duration::from_secs(2));

    // The next command succeeds on the same connection (it waits for the sleep to end).
    assert_eq!(ok(&b, &[b"PING"]).await, simple("PONG"));
    assert_eq!(ok(&b, &[b"CLIENT", b"ID"]).await, id);

    // The config's default applies when the request sets none.
    let b2 = Engine::new(Handle::current())
        .connect(&Config {
            request_timeout_ms: 100,
            ..config(server.addr(), Protocol::Resp3)
        })
        .await
        .unwrap();
    match b2
        .execute(&request(&[b"DEBUG", b"SLEEP", b"0.5"], Route::Auto, 0))
        .await
    {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Timeout, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(ok(&b2, &[b"PING"]).await, simple("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_command_does_not_delay_others() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    ok(&b, &[b"DEL", b"blk:empty"]).await;
    ok(&b, &[b"SET", b"blk:k", b"v"]).await;

    let blpop = {
        let b = b.clone();
        tokio::spawn(async move {
            let c = b
                .execute(&request(&[b"BLPOP", b"blk:empty", b"2"], Route::Auto, 0))
                .await;
            (c, Instant::now())
        })
    };
    // Give the BLPOP a head start so it is blocking while the GETs run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..1000 {
        assert_eq!(ok(&b, &[b"GET", b"blk:k"]).await, bulk(b"v"));
    }
    let gets_done = Instant::now();
    let (c, blpop_done) = blpop.await.unwrap();
    assert_eq!(c, Completion::Ok(Value::Nil), "BLPOP timed out server-side");
    assert!(
        gets_done < blpop_done,
        "the GETs finished only after the BLPOP ended"
    );
    ok(&b, &[b"DEL", b"blk:k"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_command_gets_woken() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    ok(&b, &[b"DEL", b"wake:l"]).await;
    let blpop = {
        let b = b.clone();
        tokio::spawn(async move {
            b.execute(&request(&[b"BLPOP", b"wake:l", b"10"], Route::Auto, 0))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&b, &[b"RPUSH", b"wake:l", b"hello"]).await;
    let c = blpop.await.unwrap();
    assert_eq!(
        c,
        Completion::Ok(Value::Array(vec![bulk(b"wake:l"), bulk(b"hello")]))
    );
    // XREAD BLOCK is blocking too.
    let xread = {
        let b = b.clone();
        tokio::spawn(async move {
            b.execute(&request(
                &[b"XREAD", b"BLOCK", b"10000", b"STREAMS", b"wake:x", b"$"],
                Route::Auto,
                0,
            ))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&b, &[b"XADD", b"wake:x", b"5-1", b"f", b"v"]).await;
    assert_eq!(
        xread.await.unwrap(),
        Completion::Ok(Value::Map(vec![Pair {
            key: bulk(b"wake:x"),
            value: Value::Array(vec![Value::Array(vec![
                bulk(b"5-1"),
                Value::Array(vec![bulk(b"f"), bulk(b"v")])
            ])])
        }]))
    );
    ok(&b, &[b"DEL", b"wake:x"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_forever_is_bounded_by_the_request_timeout() {
    // Own server: the test counts blocked clients.
    let server = RedisServer::start();
    let (_e, b) = backend(server.addr(), Protocol::Resp3).await;
    let c = b
        .execute(&request(&[b"BLPOP", b"forever", b"0"], Route::Auto, 300))
        .await;
    match c {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Timeout, "{e}"),
        other => panic!("{other:?}"),
    }
    // The dedicated connection was closed, so the server no longer blocks for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked = server.cli(&["INFO", "clients"]);
        if blocked.contains("blocked_clients:0") {
            break;
        }
        assert!(Instant::now() < deadline, "still blocked: {blocked}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A dropped request (client gone) also ends the block.
    let forever = request(&[b"BLPOP", b"forever", b"0"], Route::Auto, 0);
    let fut = b.execute(&forever);
    let _ = tokio::time::timeout(Duration::from_millis(300), fut).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked = server.cli(&["INFO", "clients"]);
        if blocked.contains("blocked_clients:0") {
            break;
        }
        assert!(Instant::now() < deadline, "still blocked: {blocked}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_not_shared() {
    let engine = Engine::new(Handle::current());
    let addr = shared_standalone().addr();
    let c1 = Config {
        database: 1,
        ..config(addr.clone(), Protocol::Resp3)
    };
    let c2 = Config {
        database: 2,
        ..c1.clone()
    };
    let (b1, b2, b1_again) = tokio::join!(
        engine.connect(&c1),
        engine.connect(&c2),
        engine.connect(&c1)
    );
    let (b1, b2, b1_again) = (b1.unwrap(), b2.unwrap(), b1_again.unwrap());
    assert!(Arc::ptr_eq(&b1, &b1_again), "same config, same backend");
    assert!(!Arc::ptr_eq(&b1, &b2));
    assert_eq!(engine.backend_count(), 2);

    ok(&b1, &[b"SET", b"db:k", b"one"]).await;
    ok(&b2, &[b"SET", b"db:k", b"two"]).await;
    assert_eq!(ok(&b1, &[b"GET", b"db:k"]).await, bulk(b"one"));
    assert_eq!(ok(&b2, &[b"GET", b"db:k"]).await, bulk(b"two"));
    assert_eq!(shared_standalone().cli(&["-n", "1", "GET", "db:k"]), "one");
    ok(&b1, &[b"DEL", b"db:k"]).await;
    ok(&b2, &[b"DEL", b"db:k"]).await;

    // The backend goes with its last user.
    drop((b1, b1_again));
    assert_eq!(engine.backend_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_name_the_alternative() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"SELECT", b"1"], "database"),
        (&[b"AUTH", b"pw"], "password"),
        (&[b"HELLO", b"3"], "protocol"),
        (&[b"client", b"setname", b"x"], "client_name"),
        (&[b"CLIENT", b"TRACKING", b"on"], "not supported"),
        (&[b"CLIENT", b"REPLY", b"OFF"], "not supported"),
        (&[b"MULTI"], "batch API"),
        (&[b"EXEC"], "batch API"),
        (&[b"DISCARD"], "batch API"),
        (&[b"WATCH", b"k"], "batch API"),
        (&[b"UNWATCH"], "batch API"),
        (&[b"SUBSCRIBE", b"c"], "pub/sub API"),
        (&[b"PSUBSCRIBE", b"c*"], "pub/sub API"),
        (&[b"SSUBSCRIBE", b"c"], "pub/sub API"),
        (&[b"UNSUBSCRIBE"], "pub/sub API"),
        (&[b"MONITOR"], "not supported"),
        (&[b"RESET"], "not supported"),
        (&[b"QUIT"], "close the client"),
    ];
    for (args, hint) in cases {
        let e = err(&b, args).await;
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
        assert!(e.message.contains(hint), "{args:?}: {e}");
    }
    let e = err(&b, &[]).await;
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    // A refused command stays refused inside a batch.
    let batch = Request {
        op: Op::Batch {
            atomic: false,
            watch: vec![],
            commands: vec![
                vec![b"PING".to_vec()],
                vec![b"SELECT".to_vec(), b"1".to_vec()],
            ],
        },
        ..request(&[], Route::Auto, T)
    };
    match b.execute(&batch).await {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::InvalidRequest),
        other => panic!("{other:?}"),
    }
    // Still usable.
    assert_eq!(ok(&b, &[b"PING"]).await, simple("PONG"));
}

/// A non-ASCII command or subcommand name is refused before it is sent:
/// the server would echo it in an error line that the `redis` crate cannot
/// parse, and the shared connection (other clients' requests in flight on
/// it) would be dropped. CLIENT ID shows the connection is the same after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_command_names_are_refused_without_touching_the_connection() {
    let (_e, b) = backend(shared_standalone().addr(), Protocol::Resp3).await;
    let before = ok(&b, &[b"CLIENT", b"ID"]).await;
    for args in [
        &[&b"\xffGET"[..], b"k"][..],
        &[b"CLIENT", b"\xfe\xff"],
        &[b"OBJECT", b"\x80", b"k"],
    ] {
        let e = err(&b, args).await;
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{args:?}: {e}");
        assert!(e.message.contains("printable ASCII"), "{e}");
    }
    // Binary data in data positions is untouched.
    ok(&b, &[b"SET", b"bin:\xff\x00", b"\xfe\xff"]).await;
    assert_eq!(ok(&b, &[b"GET", b"bin:\xff\x00"]).await, bulk(b"\xfe\xff"));
    ok(&b, &[b"DEL", b"bin:\xff\x00"]).await;
    assert_eq!(ok(&b, &[b"CLIENT", b"ID"]).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_on_a_standalone_server() {
    let server = shared_standalone();
    let (_e, b) = backend(server.addr(), Protocol::Resp3).await;
    let port = server.port().to_string();
    for route in [
        Route::Random,
        Route::AllNodes,
        Route::AllPrimaries,
        Route::SlotId {
            slot: 7,
            replica: true,
        },
        Route::SlotKey {
            key: b"k".to_vec(),
            replica: false,
        },
        Route::Address {
            host: "127.0.0.1".into(),
            port: server.port(),
        },
    ] {
        match b
            .execute(&request(&[b"INFO", b"server"], route.clone(), T))
            .await
        {
            Completion::Ok(v) => {
                let text = match v {
                    Value::Bulk(t) | Value::Verbatim { text: t, .. } => t,
                    other => panic!("{other:?}"),
                };
                let text = String::from_utf8(text).unwrap();
                assert!(text.contains(&format!("tcp_port:{port}")), "{route:?}");
            }
            other => panic!("{route:?}: {other:?}"),
        }
    }
    match b
        .execute(&request(
            &[b"PING"],
            Route::Address {
                host: "127.0.0.1".into(),
                port: 1,
            },
            T,
        ))
        .await
    {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.nodes(), vec![server.addr()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_name_survives_reconnect() {
    // Own server: the test kills connections.
    let server = RedisServer::start();
    let engine = Engine::new(Handle::current());
    let b = engine
        .connect(&Config {
            client_name: Some("vshm-test".into()),
            ..config(server.addr(), Protocol::Resp3)
        })
        .await
        .unwrap();
    assert_eq!(ok(&b, &[b"CLIENT", b"GETNAME"]).await, bulk(b"vshm-test"));
    let Value::Int(id) = ok(&b, &[b"CLIENT", b"ID"]).await else {
        panic!()
    };
    assert_eq!(server.cli(&["CLIENT", "KILL", "ID", &id.to_string()]), "1");

    // Requests fail with Connection (or wait for the reconnect) until the connection is
    // back; then the name is there again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_id = loop {
        match run(&b, &[b"CLIENT", b"ID"]).await {
            Completion::Ok(Value::Int(n)) if n != id => break n,
            Completion::Ok(_) => {}
            Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Connection, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(new_id, id);
    assert_eq!(ok(&b, &[b"CLIENT", b"GETNAME"]).await, bulk(b"vshm-test"));
    // Blocking commands' dedicated connections are named too.
    let list = {
        let b = b.clone();
        tokio::spawn(async move {
            b.execute(&request(&[b"BLPOP", b"nm:l", b"1"], Route::Auto, 0))
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let clients = server.cli(&["CLIENT", "LIST"]);
        if clients
            .lines()
            .any(|l| l.contains("cmd=blpop") && l.contains("name=vshm-test"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{clients}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(list.await.unwrap(), Completion::Ok(Value::Nil));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects() {
    let mut server = RedisServer::start();
    let (_e, b) = backend(server.addr(), Protocol::Resp2).await;
    ok(&b, &[b"SET", b"r", b"1"]).await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match run(&b, &[b"PING"]).await {
            Completion::Ok(v) => {
                assert_eq!(v, simple("PONG"));
                break;
            }
            Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Connection, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "no reconnect after restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials() {
    // An ACL user of its own (the default user of a plain server takes any password).
    let server = shared_standalone();
    assert_eq!(
        server.cli(&[
            "ACL",
            "SETUSER",
            "engine-test",
            "on",
            ">secret",
            "~*",
            "+@all"
        ]),
        "OK"
    );
    let engine = Engine::new(Handle::current());
    for protocol in [Protocol::Resp3, Protocol::Resp2] {
        let with = |password: &str| Config {
            username: Some("engine-test".into()),
            password: Some(password.into()),
            ..config(server.addr(), protocol)
        };
        let e = engine.connect(&with("wrong")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection, "{e}");
        assert!(e.message.contains(&server.addr()), "{e}");
        let b = engine.connect(&with("secret")).await.unwrap();
        assert_eq!(ok(&b, &[b"ACL", b"WHOAMI"]).await, bulk(b"engine-test"));
    }
}
