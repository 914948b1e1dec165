use super::*;

fn moved(slot: u16, host: &str, port: u16) -> Option<Redirect> {
    Some(Redirect::Moved {
        slot,
        host: host.into(),
        port,
    })
}

fn ask(slot: u16, host: &str, port: u16) -> Option<Redirect> {
    Some(Redirect::Ask {
        slot,
        host: host.into(),
        port,
    })
}

#[test]
fn parse_redirect_table() {
    let cases: &[(&[u8], Option<Redirect>)] = &[
        (b"MOVED 3999 127.0.0.1:6381", moved(3999, "127.0.0.1", 6381)),
        (b"ASK 3999 127.0.0.1:6381", ask(3999, "127.0.0.1", 6381)),
        (b"MOVED 0 redis-7.example:1", moved(0, "redis-7.example", 1)),
        (b"MOVED 16383 h:65535", moved(16383, "h", 65535)),
        // Empty host: the node that answered.
        (b"MOVED 3999 :6381", moved(3999, "", 6381)),
        // IPv6: the last ':' separates the port.
        (b"MOVED 1 ::1:6379", moved(1, "::1", 6379)),
        (b"ASK 12 fe80::1:2:7000", ask(12, "fe80::1:2", 7000)),
        (b"MOVED 1 [::1]:6379", moved(1, "::1", 6379)),
        // Garbage.
        (b"", None),
        (b"MOVED", None),
        (b"MOVED 3999", None),
        (b"MOVED 3999 ", None),
        (b"MOVED 3999 host", None),
        (b"MOVED 3999 host:", None),
        (b"MOVED 3999 host:0", None),
        (b"MOVED 3999 host:65536", None),
        (b"MOVED 3999 host:+80", None),
        (b"MOVED 16384 host:1", None),
        (b"MOVED -1 host:1", None),
        (b"MOVED x host:1", None),
        (b"MOVED  3999 host:1", None),
        (b"MOVED 3999 host:1 extra", None),
        (b"moved 3999 host:1", None),
        (b"MOVEDX 3999 host:1", None),
        (b"ERR MOVED 3999 host:1", None),
        (b"ASK 1 \xff:1", None),
    ];
    for (text, want) in cases {
        assert_eq!(
            &parse_redirect(text),
            want,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    let r = parse_redirect(b"ASK 7 h:9").expect("ask");
    assert_eq!((r.slot(), r.host(), r.port()), (7, "h", 9));
}

#[test]
fn a_redirect_for_another_slot_is_not_one() {
    use Redirectable::*;
    assert!(parse_redirect_for(b"MOVED 7 h:9", Slot(7)).is_some());
    assert!(parse_redirect_for(b"ASK 7 h:9", Slot(7)).is_some());
    assert!(parse_redirect_for(b"MOVED 7 h:9", Any).is_some());
    assert_eq!(parse_redirect_for(b"MOVED 8 h:9", Slot(7)), None);
    assert_eq!(parse_redirect_for(b"ASK 8 h:9", Slot(7)), None);
    assert_eq!(parse_redirect_for(b"MOVED 7 h:9", Never), None);
    assert_eq!(parse_redirect_for(b"ASK 7 h:9", Never), None);
}

#[test]
fn retry_class_table() {
    use RetryClass::*;
    let cases: &[(&[u8], Option<RetryClass>)] = &[
        (
            b"TRYAGAIN Multiple keys request during rehashing of slot",
            Some(TryAgain),
        ),
        (b"CLUSTERDOWN The cluster is down", Some(ClusterDown)),
        (b"CLUSTERDOWN Hash slot not served", Some(ClusterDown)),
        (b"MASTERDOWN Link with MASTER is down", Some(MasterDown)),
        (
            b"LOADING Redis is loading the dataset in memory",
            Some(Loading),
        ),
        (
            b"READONLY You can't write against a read only replica.",
            Some(ReadOnly),
        ),
        (b"READONLY", Some(ReadOnly)),
        (b"ERR wrong", None),
        (b"MOVED 1 h:1", None),
        (b"readonly x", None),
        (b"LOADINGX", None),
        (b" LOADING", None),
        (b"", None),
    ];
    for (text, want) in cases {
        assert_eq!(
            retry_class(text),
            *want,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    assert!(ReadOnly.refresh_topology());
    assert!(ClusterDown.refresh_topology());
    assert!(!TryAgain.refresh_topology());
    assert!(!Loading.refresh_topology());
    assert!(!MasterDown.refresh_topology());
}
