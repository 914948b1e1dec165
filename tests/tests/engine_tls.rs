//! The engine over TLS, with a CA file: a standalone redis-server with a TLS port and a
//! certificate made for the test by the openssl CLI.

use tokio::runtime::Handle;
use vshm_core::config::{Config, Protocol};
use vshm_core::Engine;
use vshm_protocol::msg::{Completion, ErrorKind, Op, Request, Route, Value};
use vshm_tests::RedisServer;

fn request(args: &[&[u8]], timeout_ms: u32) -> Request {
    Request {
        id: 1,
        timeout_ms,
        flags: 0,
        route: Route::Auto,
        op: Op::Command {
            args: args.iter().map(|a| a.to_vec()).collect(),
        },
    }
}

fn bulk(s: &[u8]) -> Value {
    Value::Bulk(s.to_vec())
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=vshm-test-ca",
        "-config",
        "ca.cnf",
        "-extensions",
        "v3_ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    // A free port for TLS (outside the helper's range), next to the helper's plain port.
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let file = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let engine = Engine::new(Handle::current());
    let tls = Config {
        tls: true,
        ca_file: Some(dir.path().join("ca.crt")),
        addresses: vec![format!("127.0.0.1:{tls_port}")],
        protocol: Protocol::Resp3,
        ..Config::default()
    };
    let b = engine.connect(&tls).await.unwrap();
    assert_eq!(
        b.execute(&request(&[b"SET", b"tls:k", b"v"], 20_000)).await,
        Completion::Ok(Value::Simple(b"OK".to_vec()))
    );
    assert_eq!(
        b.execute(&request(&[b"GET", b"tls:k"], 20_000)).await,
        Completion::Ok(bulk(b"v"))
    );
    // Blocking commands' dedicated connections use TLS too.
    assert_eq!(
        b.execute(&request(&[b"BLPOP", b"tls:l", b"0.1"], 0)).await,
        Completion::Ok(Value::Nil)
    );
    // The connection really is TLS: the server sees it on the TLS port.
    assert_eq!(server.cli(&["GET", "tls:k"]), "v");
    // Without the CA the server's certificate is not trusted.
    let e = engine
        .connect(&Config {
            ca_file: None,
            ..tls.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connection, "{e}");
    // Plain TCP to the TLS port fails too.
    let e = engine
        .connect(&Config {
            tls: false,
            ca_file: None,
            connection_timeout_ms: 500,
            ..tls.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Connection | ErrorKind::Timeout),
        "{e}"
    );
}
