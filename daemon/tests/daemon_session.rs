//! The session layer of vshm-client through vshmd: a daemon restart
//! replaces the registration and changes its generation (the old request
//! ids are gone); the same session works again once the daemon is back.

mod common;

use std::time::{Duration, Instant};

use common::{Servers, Vshmd};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::Reconnecting;
use vshm_client::session::{Session, SessionError};
use vshm_protocol::msg::{ErrorKind, Value};
use vshm_protocol::register::Settings;

#[test]
fn daemon_restart_replaces_the_registration() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let mut d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let s = Session::daemon(Reconnecting::new(
        d.socket.clone(),
        Settings {
            client_name: Some("session".into()),
            ..Settings::default()
        },
        Duration::from_secs(5),
        ClientOptions::default(),
    ));
    assert!(!s.is_embedded());
    let first = s.get().unwrap();
    assert!(first.opened);
    first.conn.call(&[b"SET", b"dsession:k", b"v"]).unwrap();
    assert_eq!(s.get().unwrap().generation, first.generation);
    drop(first.conn);

    d.kill9();
    // The registration's watcher notices the daemon's death within
    // milliseconds; until then the old registration may still look usable.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.get() {
            Err(SessionError::Client(e)) => {
                assert_eq!(e.kind, ErrorKind::Connection, "{e}");
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(r) => {
                assert_eq!(r.generation, first.generation, "no daemon to register with");
                assert!(Instant::now() < deadline, "the dead daemon went unnoticed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    d.restart();
    let next = s.get().expect("re-registered");
    assert!(next.opened);
    assert_ne!(next.generation, first.generation);
    assert_eq!(
        next.conn.call(&[b"GET", b"dsession:k"]).unwrap(),
        Value::Bulk(b"v".to_vec())
    );
}
