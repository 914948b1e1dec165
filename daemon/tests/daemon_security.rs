//! Who may connect: SO_PEERCRED against the allow list (a refused peer
//! gets a clear reason), the socket's permission bits (another user cannot
//! even connect), protocol version negotiation, auth profiles, and
//! segments that exist only as unnamed memfds.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{file_mode, memfd_links, memfd_maps, output_bounded, Servers, Vshmd, VSHMD, WORKER};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::DaemonClient;
use vshm_protocol::msg::ErrorKind;
use vshm_protocol::register::{self, HandshakeReply, Hello, Settings, PROTOCOL_VERSION};

const NOBODY: u32 = 65534;

fn connect_err(socket: &Path, settings: &Settings) -> vshm_protocol::msg::ClientError {
    match DaemonClient::connect(
        socket,
        settings,
        Duration::from_secs(5),
        ClientOptions::default(),
    ) {
        Ok(_) => panic!("registration should have been refused"),
        Err(e) => e,
    }
}

/// Send raw bytes as the first message and read the reply.
fn raw_exchange(socket: &Path, bytes: &[u8]) -> HandshakeReply {
    let s = socket_fd();
    connect(s.as_raw_fd(), &UnixAddr::new(socket).unwrap()).unwrap();
    register::set_timeouts(&s, Duration::from_secs(5)).unwrap();
    register::send_with_fds(s.as_raw_fd(), bytes, &[]).unwrap();
    let (b, fds) = register::recv_with_fds(s.as_raw_fd())
        .unwrap()
        .expect("a reply");
    assert!(fds.is_empty(), "a refusal carries no descriptors");
    register::decode_reply(&b).unwrap()
}

fn socket_fd() -> std::os::fd::OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

/// Run the worker as user nobody against `socket`; returns its stderr.
fn as_nobody(socket: &Path) -> String {
    let child = Command::new(WORKER)
        .args(["worker", "--mode", "daemon", "--ops", "1", "--socket"])
        .arg(socket)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker as nobody");
    let (st, out, err) = output_bounded(child, Duration::from_secs(20));
    assert!(
        !st.expect("worker exits").success(),
        "nobody got through: {out}"
    );
    err
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    // Root (the tests' uid) is not in the list.
    let d = Vshmd::start(
        "allowed_uids = [4242]",
        Servers::Standalone(&server.addr()),
        "",
    );
    let e = connect_err(&d.socket, &Settings::default());
    println!("refusal: {}", e.message);
    assert_eq!(e.kind, ErrorKind::Connection);
    assert!(e.message.contains("vshmd refused"), "{}", e.message);
    assert!(e.message.contains("uid 0"), "{}", e.message);
    assert!(e.message.contains("not allowed"), "{}", e.message);
    // Stats are refused too.
    let out = d.stats_cli(false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not allowed"));
    // The daemon counts it and is still fine.
    assert!(d.log_text().contains("registration refused"));

    // Allowed by gid instead (root's primary group 0): admitted.
    let d2 = Vshmd::start(
        "allowed_uids = []\nallowed_gids = [0]",
        Servers::Standalone(&server.addr()),
        "",
    );
    let c = DaemonClient::connect(
        &d2.socket,
        &Settings::default(),
        Duration::from_secs(5),
        ClientOptions::default(),
    )
    .expect("admitted by gid");
    assert!(c.call(&[b"PING"]).is_ok());
}

#[test]
fn socket_mode_keeps_other_users_out() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    // Default mode 0660, owned by root: nobody cannot connect at all.
    let d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    assert_eq!(file_mode(&d.socket), 0o660, "default socket mode");
    assert_eq!(std::fs::metadata(&d.socket).unwrap().uid(), 0);
    let err = as_nobody(&d.socket);
    println!("nobody vs 0660 socket: {err}");
    assert!(
        err.contains("Permission denied") || err.contains("EACCES"),
        "{err}"
    );

    // Mode 0666 lets nobody reach the socket; the allow list (root only by
    // default) still refuses it, naming its uid.
    let d = Vshmd::start(
        "socket_mode = 0o666",
        Servers::Standalone(&server.addr()),
        "",
    );
    assert_eq!(file_mode(&d.socket), 0o666);
    let err = as_nobody(&d.socket);
    println!("nobody vs allow list: {err}");
    assert!(
        err.contains(&format!("uid {NOBODY}")) && err.contains("not allowed"),
        "{err}"
    );

    // A stricter mode is honoured too.
    let d = Vshmd::start(
        "socket_mode = 0o600",
        Servers::Standalone(&server.addr()),
        "",
    );
    assert_eq!(file_mode(&d.socket), 0o600);
}

#[test]
fn segments_are_unnamed_memfds_and_reclaimed() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let before = memfd_links(d.pid()).len();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            DaemonClient::connect(
                &d.socket,
                &Settings::default(),
                Duration::from_secs(5),
                ClientOptions::default(),
            )
            .unwrap()
        })
        .collect();
    for c in &clients {
        c.call(&[b"SET", b"sec:k", b"v"]).unwrap();
    }
    let links = memfd_links(d.pid());
    println!("daemon memfds: {links:?}");
    assert_eq!(links.len(), before + 3);
    for l in &links {
        // An unnamed memfd: no path in any file system.
        assert!(
            l.starts_with("/memfd:vshm-segment") && l.ends_with("(deleted)"),
            "{l}"
        );
    }
    // Nothing in the socket's directory but what we put there.
    let names: Vec<_> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| ["vshmd.sock", "vshmd.toml", "vshmd.log"].contains(&n.as_str())),
        "{names:?}"
    );
    // Each client sees only its own segment: distinct memfds (inodes).
    let inodes: std::collections::HashSet<u64> = clients
        .iter()
        .map(|c| {
            let fd = c.segment().fd().expect("memfd");
            nix::sys::stat::fstat(fd).unwrap().st_ino
        })
        .collect();
    assert_eq!(inodes.len(), 3);
    drop(clients);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while (memfd_links(d.pid()).len() > before || memfd_maps(d.pid()) > before)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(memfd_links(d.pid()).len(), before, "segments reclaimed");
    assert_eq!(memfd_maps(d.pid()), before, "mappings released");
}

#[test]
fn version_mismatch_and_bad_handshakes_get_clear_errors() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "handshake_timeout_ms = 300",
        Servers::Standalone(&server.addr()),
        "[auth_profiles.reports]\nusername = \"default\"\nallowed_uids = [4242]\n",
    );
    let hello = Hello::Register {
        protocol_version: PROTOCOL_VERSION + 98,
        pid: 1,
        settings: Settings::default(),
    };
    match raw_exchange(&d.socket, &register::encode_hello(&hello)) {
        HandshakeReply::Refused {
            reason,
            daemon_version,
        } => {
            println!("version mismatch: {reason}");
            assert_eq!(daemon_version, PROTOCOL_VERSION);
            assert!(
                reason.contains(&format!("client speaks protocol {}", PROTOCOL_VERSION + 98)),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("vshmd speaks protocol {PROTOCOL_VERSION}")),
                "{reason}"
            );
        }
        r => panic!("{r:?}"),
    }
    match raw_exchange(&d.socket, b"\x01\x02garbage that is no hello") {
        HandshakeReply::Refused { reason, .. } => {
            assert!(reason.contains("cannot decode"), "{reason}")
        }
        r => panic!("{r:?}"),
    }
    // Unknown profile, and a profile this uid may not use.
    let e = connect_err(
        &d.socket,
        &Settings {
            auth_profile: Some("nope".into()),
            ..Settings::default()
        },
    );
    assert!(e.message.contains("unknown auth profile"), "{}", e.message);
    let e = connect_err(
        &d.socket,
        &Settings {
            auth_profile: Some("reports".into()),
            ..Settings::default()
        },
    );
    assert!(
        e.message.contains("may not use auth profile"),
        "{}",
        e.message
    );
    // A client that connects and says nothing is told so and dropped
    // after the handshake timeout, without holding anything.
    let s = socket_fd();
    connect(s.as_raw_fd(), &UnixAddr::new(&d.socket).unwrap()).unwrap();
    register::set_timeouts(&s, Duration::from_secs(5)).unwrap();
    let (b, _) = register::recv_with_fds(s.as_raw_fd())
        .unwrap()
        .expect("a refusal");
    match register::decode_reply(&b).unwrap() {
        HandshakeReply::Refused { reason, .. } => {
            assert!(reason.contains("no registration message"), "{reason}")
        }
        r => panic!("{r:?}"),
    }
    assert!(
        register::recv_with_fds(s.as_raw_fd()).unwrap().is_none(),
        "then closed"
    );
    assert_eq!(d.clients(), 0);
    // The daemon still serves good clients.
    let c = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(5),
        ClientOptions::default(),
    )
    .unwrap();
    assert!(c.call(&[b"PING"]).is_ok());
}

#[test]
fn config_errors_are_reported_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    for (text, want) in [
        ("socket_mode = 660", "octal"),
        ("metrics_addr = \"0.0.0.0:9187\"", "loopback"),
        ("nonsense = 1", "unknown field"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(VSHMD)
            .arg("--config")
            .arg(&cfg)
            .arg("--check-config")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
    let out = Command::new(VSHMD).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--socket",
        "--log-format",
        "--log-level",
        "--check-config",
        "stats",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("vshmd.example.toml");
    let out = Command::new(VSHMD)
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn client_limits_are_enforced() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "",
        Servers::Standalone(&server.addr()),
        "[limits]\nmax_clients_per_uid = 2\n",
    );
    let connect = || {
        DaemonClient::connect(
            &d.socket,
            &Settings::default(),
            Duration::from_secs(5),
            ClientOptions::default(),
        )
    };
    let a = connect().unwrap();
    let b = connect().unwrap();
    let e = connect().err().expect("third client of uid 0");
    assert!(
        e.message.contains("uid 0 already has 2 clients"),
        "{}",
        e.message
    );
    drop(a);
    // The slot frees up once the daemon has seen the first one go.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let c = loop {
        match connect() {
            Ok(c) => break c,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{}", e.message);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert!(b.call(&[b"PING"]).is_ok() && c.call(&[b"PING"]).is_ok());
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    use std::io::{Read, Write};
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "metrics_addr = \"127.0.0.1:0\"",
        Servers::Standalone(&server.addr()),
        "",
    );
    let log = d.log_text();
    let addr = log
        .split("metrics=Some(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string();
    let c = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(5),
        ClientOptions::default(),
    )
    .unwrap();
    c.call(&[b"PING"]).unwrap();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let m = get("/metrics");
    assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
    assert!(m.contains("vshmd_clients 1"), "{m}");
    assert!(m.contains("vshmd_client_requests_total{client="), "{m}");
    assert!(m.contains("vshmd_request_latency_seconds_count"), "{m}");
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
}

/// Descriptors a client attaches to its messages (the daemon never wants
/// any) are all closed, however many: with room for only 4, the kernel
/// installed 4 of 16 and the daemon could not list them to close them.
#[test]
fn descriptors_sent_to_the_daemon_are_all_closed() {
    use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags};
    use std::os::fd::RawFd;
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let open_fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = open_fds(d.pid());
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let fds: Vec<RawFd> = vec![devnull.as_raw_fd(); 16];
    for _ in 0..20 {
        let s = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(s.as_raw_fd(), &UnixAddr::new(&d.socket).unwrap()).unwrap();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"not a handshake")];
        sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
        // Until the daemon answers or hangs up (bounded).
        let tv = nix::sys::time::TimeVal::new(5, 0);
        setsockopt(&s, sockopt::ReceiveTimeout, &tv).unwrap();
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a live buffer of that length from our socket.
        let _ = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = open_fds(d.pid());
        if now <= before + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon holds {now} descriptors, {before} before 20 messages with 16 each"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A peer outside the allow list is answered with its refusal at once, before it sends
/// anything: it holds no descriptor or handshake slot of the daemon for `handshake_timeout_ms`
/// (here a minute; the sockets' own timeout is 5 s).
#[test]
fn refused_peers_are_answered_before_they_send() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "allowed_uids = [4242]\nhandshake_timeout_ms = 60000",
        Servers::Standalone(&server.addr()),
        "",
    );
    let socks: Vec<_> = (0..20)
        .map(|_| {
            let s = socket_fd();
            connect(s.as_raw_fd(), &UnixAddr::new(&d.socket).unwrap()).unwrap();
            register::set_timeouts(&s, Duration::from_secs(5)).unwrap();
            s
        })
        .collect();
    for s in &socks {
        let (b, _) = register::recv_with_fds(s.as_raw_fd())
            .expect("the refusal, without sending anything")
            .expect("a reply before the close");
        match register::decode_reply(&b).unwrap() {
            HandshakeReply::Refused { reason, .. } => {
                assert!(reason.contains("not allowed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    // A client that sends its registration after the close still reads why.
    let e = connect_err(&d.socket, &Settings::default());
    assert!(e.message.contains("not allowed"), "{}", e.message);
    // So does one that sent it at once and reads only later: the daemon takes the message
    // if it is there when it closes; if it came just after, the client's read reports a reset
    // first, which `recv_answer` (the client library's read) passes.
    let hello = register::encode_hello(&Hello::Register {
        protocol_version: PROTOCOL_VERSION,
        pid: std::process::id(),
        settings: Settings::default(),
    });
    for _ in 0..5 {
        let s = socket_fd();
        connect(s.as_raw_fd(), &UnixAddr::new(&d.socket).unwrap()).unwrap();
        register::set_timeouts(&s, Duration::from_secs(5)).unwrap();
        // The send fails (EPIPE) if the daemon closed first; the refusal is queued either way.
        let _ = register::send_with_fds(s.as_raw_fd(), &hello, &[]);
        std::thread::sleep(Duration::from_millis(200));
        let (b, _) = register::recv_answer(s.as_raw_fd())
            .expect("the refusal, not a reset")
            .expect("a reply");
        assert!(
            matches!(
                register::decode_reply(&b).unwrap(),
                HandshakeReply::Refused { .. }
            ),
            "a refusal"
        );
    }
}

/// Connections that never send their registration occupy at most the daemon's handshake slots
/// (256): the rest wait in the listen backlog, not in the daemon's descriptor table, and a
/// client that connects behind them is registered once their handshakes time out.
#[test]
fn silent_connections_cannot_exhaust_the_daemon() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "handshake_timeout_ms = 1000",
        Servers::Standalone(&server.addr()),
        "",
    );
    let fds_of = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds_of(d.pid());
    let silent: Vec<_> = (0..400)
        .map(|_| {
            let s = socket_fd();
            connect(s.as_raw_fd(), &UnixAddr::new(&d.socket).unwrap()).unwrap();
            s
        })
        .collect();
    // Give the daemon time to accept what it will (it must stop at its slots).
    std::thread::sleep(Duration::from_millis(300));
    let during = fds_of(d.pid());
    assert!(
        during <= before + 256 + 8,
        "the daemon holds {during} descriptors ({before} before 400 silent connections)"
    );
    let c = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(15),
        ClientOptions::default(),
    )
    .expect("registered behind the silent connections");
    assert!(c.call(&[b"PING"]).is_ok());
    drop(silent);
}
