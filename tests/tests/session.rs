//! The session layer of vshm-client (what language bindings build on), on
//! the in-process core against a real server: opening from a URI, the
//! generation of the registration, and URI errors that never echo a
//! password. (Daemon restarts: `daemon/tests/daemon_session.rs`; fork: the
//! C tests, which run the same layer through libvshm.)

use vshm_client::session::{Session, SessionError};
use vshm_client::uri::{self, UriError};
use vshm_protocol::msg::{ErrorKind, Value};

#[test]
fn uri_session_opens_once_and_keeps_its_generation() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let s = Session::from_uri(&format!("valkey://{}?name=session-test", server.addr())).unwrap();
    assert!(s.is_embedded());
    assert!(s.current().is_none(), "nothing opened before the first get");
    let first = s.get().unwrap();
    assert!(first.opened);
    first
        .conn
        .call(&[b"SET", b"session:k", b"v1"])
        .expect("SET through the session");
    let again = s.get().unwrap();
    assert!(!again.opened, "the usable registration is reused");
    assert_eq!(again.generation, first.generation);
    assert_eq!(
        again.conn.call(&[b"GET", b"session:k"]).unwrap(),
        Value::Bulk(b"v1".to_vec())
    );
    let (_, g) = s.current().expect("a current registration");
    assert_eq!(g, first.generation);
    // Closed: the next get opens a new registration with a new generation.
    drop((first, again));
    s.close();
    assert!(s.current().is_none());
    let next = s.get().unwrap();
    assert!(next.opened);
    assert_ne!(next.generation, g);
    assert_eq!(
        next.conn.call(&[b"GET", b"session:k"]).unwrap(),
        Value::Bulk(b"v1".to_vec())
    );
}

#[test]
fn unreachable_server_is_a_connection_error() {
    // Port 1 on loopback: refused at once.
    let s = Session::from_uri("valkey://127.0.0.1:1?connect_timeout_ms=500").unwrap();
    match s.get() {
        Err(SessionError::Client(e)) => assert_eq!(e.kind, ErrorKind::Connection, "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("nothing listens on port 1"),
    }
}

#[test]
fn bad_uris_are_typed_errors_without_the_password() {
    for bad in [
        "http://h",
        "redis://:secret@h?bogus=1",
        "redis://user:secret@h:notaport",
    ] {
        let UriError(msg) = uri::parse(bad).unwrap_err();
        assert!(msg.starts_with("bad URI"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
        assert!(Session::from_uri(bad).is_err());
    }
}
