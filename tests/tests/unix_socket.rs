//! A standalone server reached over a Unix socket (`unix:///path`, `valkey+unix://`,
//! `redis+unix://`), through the embedded core and the rings: commands on the fast path (the
//! core's own connections), a pipeline and a transaction, a blocking command and pub/sub (the
//! slow path's `redis` crate connections), a reconnect after `CLIENT KILL`; and a cluster over a
//! Unix socket is refused with a clear error.
//!
//! Each test starts its own server (`RedisServer::start_unix`; stopped on drop), which also
//! listens on TCP: the test's own checks (`redis-cli`) go over TCP, the core's traffic over the
//! socket, shown by the server's `CLIENT INFO` flag `U` (a Unix socket client).

use std::time::Duration;

use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;
use vshm_protocol::msg::{ArgRef, ArgsRef, Completion, ErrorKind, Op, Route, SubKind, Value};
use vshm_tests::RedisServer;

/// Generous bound for requests: the machine is shared and slow.
const T: Duration = Duration::from_secs(20);

fn unix_cfg(server: &RedisServer, scheme: &str, protocol: Protocol) -> Config {
    let path = server.unix_socket().expect("started with a unix socket");
    Config {
        addresses: vec![format!("{scheme}://{}", path.display())],
        protocol,
        request_timeout_ms: 20_000,
        ..Config::default()
    }
}

fn call(c: &EmbeddedClient, args: &[&str]) -> Value {
    let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.call_routed(&argv, &Route::Auto, Some(T))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn batch(c: &EmbeddedClient, atomic: bool, cmds: &[&[&str]]) -> Completion {
    let args: Vec<Vec<ArgRef<'_>>> = cmds
        .iter()
        .map(|c| c.iter().map(|a| ArgRef(a.as_bytes())).collect())
        .collect();
    let commands: Vec<ArgsRef<'_>> = args.iter().map(|a| ArgsRef(a)).collect();
    let op = Op::Batch {
        atomic,
        watch: Vec::new(),
        commands,
    };
    let id = c.submit_op(&op, &Route::Auto, Some(T), 0).unwrap();
    c.wait(id, Some(T)).unwrap()
}

/// The text of a bulk or verbatim string reply.
fn text(v: Value) -> String {
    match v {
        Value::Bulk(b) | Value::Simple(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Verbatim { text, .. } => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("not a string: {other:?}"),
    }
}

/// `CLIENT INFO` as the server sees the connection that ran it: `(id, flags)`.
fn client_info(c: &EmbeddedClient) -> (u64, String) {
    let info = text(call(c, &["CLIENT", "INFO"]));
    let field = |name: &str| {
        info.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {info:?}"))
            .to_string()
    };
    (field("id=").parse().unwrap(), field("flags="))
}

#[test]
fn commands_pipeline_transaction_and_reconnect_over_a_unix_socket() {
    let server = RedisServer::start_unix();
    let core = EmbeddedCore::start(1).unwrap();
    for (scheme, protocol) in [
        ("unix", Protocol::Resp3),
        ("valkey+unix", Protocol::Resp2),
        ("redis+unix", Protocol::Resp3),
    ] {
        let c = core.open(&unix_cfg(&server, scheme, protocol)).unwrap();
        let k = format!("unix:{scheme}");
        assert_eq!(call(&c, &["SET", &k, "v1"]), ok());
        assert_eq!(call(&c, &["GET", &k]), bulk("v1"));
        let (id, flags) = client_info(&c);
        assert!(
            flags.contains('U'),
            "{scheme}: not a unix socket client: {flags}"
        );
        // The server has the value (read over TCP).
        assert_eq!(server.cli(&["GET", &k]), "v1");

        // A pipeline and a transaction.
        let pipeline = batch(
            &c,
            false,
            &[&["SET", &k, "v2"], &["INCR", "unix:n"], &["GET", &k]],
        );
        match pipeline {
            Completion::Ok(Value::Array(v)) => {
                assert_eq!(v.len(), 3, "{v:?}");
                assert_eq!(v[0], ok());
                assert!(matches!(v[1], Value::Int(_)), "{v:?}");
                assert_eq!(v[2], bulk("v2"));
            }
            other => panic!("{scheme}: pipeline: {other:?}"),
        }
        let tx = batch(&c, true, &[&["SET", &k, "v3"], &["GET", &k]]);
        assert_eq!(tx, Completion::Ok(Value::Array(vec![ok(), bulk("v3")])));

        // Reconnect after CLIENT KILL: the first request after it succeeds, on a new
        // connection, still over the socket.
        assert_eq!(server.cli(&["CLIENT", "KILL", "ID", &id.to_string()]), "1");
        assert_eq!(call(&c, &["GET", &k]), bulk("v3"));
        let (id2, flags2) = client_info(&c);
        assert_ne!(id, id2, "{scheme}: the killed connection answered");
        assert!(flags2.contains('U'), "{scheme}: {flags2}");
    }
    core.shutdown(Duration::from_secs(5));
}

#[test]
fn slow_path_over_a_unix_socket() {
    let server = RedisServer::start_unix();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = unix_cfg(&server, "unix", Protocol::Resp3);
    let c = core.open(&cfg).unwrap();

    // A blocking command runs on a dedicated `redis` crate connection.
    assert_eq!(call(&c, &["RPUSH", "unix:q", "a"]), Value::Int(1));
    assert_eq!(
        call(&c, &["BLPOP", "unix:q", "1"]),
        Value::Array(vec![bulk("unix:q"), bulk("a")])
    );

    // Pub/sub: the link is a `redis` crate connection over the socket.
    let sub = core.open(&cfg).unwrap();
    let op: Op<ArgsRef<'_>> = Op::Subscribe {
        kind: SubKind::Exact,
        channels: vec![b"unix:ch".to_vec()],
    };
    let id = sub.submit_op(&op, &Route::Auto, Some(T), 0).unwrap();
    let r = sub.wait(id, Some(T)).unwrap();
    assert!(matches!(r, Completion::Ok(_)), "subscribe: {r:?}");
    assert_eq!(call(&c, &["PUBLISH", "unix:ch", "hello"]), Value::Int(1));
    let push = sub.wait_push(T).unwrap().expect("a message");
    match push {
        Value::Push { kind, data } => {
            assert_eq!(kind, b"message".to_vec());
            assert_eq!(data, vec![bulk("unix:ch"), bulk("hello")]);
        }
        other => panic!("{other:?}"),
    }
    core.shutdown(Duration::from_secs(5));
}

#[test]
fn cluster_over_a_unix_socket_is_refused() {
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = Config {
        addresses: vec!["unix:///tmp/vshm-no-such.sock".into()],
        mode: Mode::Cluster,
        ..Config::default()
    };
    let e = core.open(&cfg).map(|_| ()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    assert!(e.message.contains("Unix socket"), "{e}");
    let cfg = Config {
        addresses: vec!["unix://relative.sock".into()],
        ..Config::default()
    };
    let e = core.open(&cfg).map(|_| ()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    core.shutdown(Duration::from_secs(5));
}
