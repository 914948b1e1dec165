//! The registration handshake: the daemon's parser of a client's hello
//! (`register::decode_hello`, what vshmd runs on the first message of every
//! accepted socket) and the client's parser of the daemon's answer
//! (`register::recv_with_fds` over a real `SOCK_SEQPACKET` pair, then
//! `register::decode_reply`, what `DaemonClient::connect` runs).
//!
//! Input: `[mode][rest]`. Mode even: `rest` is a raw message, parsed as a
//! hello and as a reply. Mode odd: `rest` drives `arbitrary` to build a
//! hello and a reply, which must come back equal after encode and decode.
//! When `mode & 6 == 0` the reply also travels through the socket first.
//! Whatever decodes from raw bytes must re-encode and decode to the same
//! value.
#![no_main]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use vshm_protocol::register::{
    decode_hello, decode_reply, encode_hello, encode_reply, recv_with_fds, send_with_fds,
    set_timeouts, Hello, HandshakeReply, Settings, MAX_HANDSHAKE,
};

/// One connected pair, made once: (daemon end, client end).
fn pair() -> &'static (OwnedFd, OwnedFd) {
    static PAIR: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        for s in [&a, &b] {
            set_timeouts(s, Duration::from_secs(5)).expect("timeouts");
        }
        (a, b)
    })
}

/// Send `msg` from the daemon end and receive it at the client end the
/// way the client does. `None`: an empty message (the client reads EOF).
fn through_socket(msg: &[u8]) -> Option<Vec<u8>> {
    let (daemon, client) = pair();
    send_with_fds(daemon.as_raw_fd(), msg, &[]).expect("send");
    let got = recv_with_fds(client.as_raw_fd()).expect("recv");
    let (bytes, fds) = got?;
    assert!(fds.is_empty());
    assert_eq!(bytes, msg);
    Some(bytes)
}

#[derive(Arbitrary, Debug)]
struct ASettings {
    database: Option<u32>,
    client_name: Option<String>,
    auth_profile: Option<String>,
    sq_capacity: u64,
    cq_capacity: u64,
}

#[derive(Arbitrary, Debug)]
enum AHello {
    Register {
        protocol_version: u32,
        pid: u32,
        settings: ASettings,
    },
    Stats {
        protocol_version: u32,
        prometheus: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum AReply {
    Welcome {
        protocol_version: u32,
        client_id: u64,
        request_timeout_ms: u32,
        block_forever_limit_ms: u64,
    },
    Refused {
        reason: String,
        daemon_version: u32,
    },
    Stats {
        text: String,
    },
}

fn hello(h: AHello) -> Hello {
    match h {
        AHello::Register {
            protocol_version,
            pid,
            settings: s,
        } => Hello::Register {
            protocol_version,
            pid,
            settings: Settings {
                database: s.database,
                client_name: s.client_name,
                auth_profile: s.auth_profile,
                sq_capacity: s.sq_capacity,
                cq_capacity: s.cq_capacity,
            },
        },
        AHello::Stats {
            protocol_version,
            prometheus,
        } => Hello::Stats {
            protocol_version,
            prometheus,
        },
    }
}

fn reply(r: AReply) -> HandshakeReply {
    match r {
        AReply::Welcome {
            protocol_version,
            client_id,
            request_timeout_ms,
            block_forever_limit_ms,
        } => HandshakeReply::Welcome {
            protocol_version,
            client_id,
            request_timeout_ms,
            block_forever_limit_ms,
        },
        AReply::Refused {
            reason,
            daemon_version,
        } => HandshakeReply::Refused {
            reason,
            daemon_version,
        },
        AReply::Stats { text } => HandshakeReply::Stats { text },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_HANDSHAKE {
        return;
    }
    if mode & 1 == 0 {
        // Daemon side: the first message of a socket, as received.
        if let Ok(h) = decode_hello(rest) {
            assert_eq!(
                decode_hello(&encode_hello(&h)).expect("re-encoded hello"),
                h
            );
        }
        // Client side: the daemon's answer, through the socket (one input
        // in four: the syscalls cost more than the parsing).
        let bytes = if mode & 6 == 0 {
            through_socket(rest)
        } else {
            Some(rest.to_vec())
        };
        if let Some(r) = bytes.and_then(|b| decode_reply(&b).ok()) {
            assert_eq!(
                decode_reply(&encode_reply(&r)).expect("re-encoded reply"),
                r
            );
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let (Ok(h), Ok(r)) = (AHello::arbitrary(&mut u), AReply::arbitrary(&mut u)) else {
        return;
    };
    let (h, r) = (hello(h), reply(r));
    let hb = encode_hello(&h);
    assert_eq!(decode_hello(&hb).expect("encoded hello decodes"), h);
    let rb = encode_reply(&r);
    assert_eq!(decode_reply(&rb).expect("encoded reply decodes"), r);
    if rb.len() <= MAX_HANDSHAKE && mode & 6 == 0 {
        let got = through_socket(&rb).expect("a reply is never empty");
        assert_eq!(decode_reply(&got).expect("encoded reply decodes"), r);
    }
});
