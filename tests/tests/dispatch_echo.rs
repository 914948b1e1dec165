//! The dispatcher and the client end, driven through real rings by an
//! executor that echoes its arguments (no server needed): exactly one
//! completion per request, across threads, fragmentation both ways,
//! backpressure, malformed input, shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use vshm_protocol::sync::{AtomicUsize, Ordering};

use vshm_client::client::ClientOptions;
use vshm_client::embedded::{EmbeddedCore, EmbeddedOpen};
use vshm_core::dispatch::{AttachOptions, Execute};
use vshm_protocol::msg::{Completion, ErrorKind, Op, Request, Value};

/// Replies with the concatenation of the arguments after the first; an
/// argument "sleep:N" sleeps N ms first.
struct Echo {
    calls: AtomicUsize,
}

impl Execute for Echo {
    fn execute(&self, req: Request) -> Pin<Box<dyn Future<Output = Completion> + Send + 'static>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let Op::Command { args } = req.op else {
                return Completion::Ok(Value::Nil);
            };
            let mut out = Vec::new();
            for a in args.iter().skip(1) {
                if let Some(ms) = a.strip_prefix(b"sleep:") {
                    let ms: u64 = std::str::from_utf8(ms).unwrap().parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
                out.extend_from_slice(a);
            }
            Completion::Ok(Value::Bulk(out))
        })
    }
}

fn echo() -> Arc<Echo> {
    Arc::new(Echo {
        calls: AtomicUsize::new(0),
    })
}

fn copts() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// Once every call has returned, the core's accounting of the client
/// goes back to zero: nothing in flight, no request or completion bytes
/// counted against `max_outstanding_bytes`. The core finishes its
/// bookkeeping just after publishing the last completion, so this waits
/// for it, for at most 5 s.
fn assert_settled(a: &vshm_core::dispatch::ClientAttachment) {
    vshm_tests::poll_until(Duration::from_secs(5), "accounting not settled", || {
        let now = (a.inflight(), a.outstanding_bytes());
        (now != (0, 0)).then(|| format!("(in flight, outstanding bytes) = {now:?}"))
    });
}

#[test]
fn many_threads_every_request_exactly_one_completion() {
    let core = EmbeddedCore::start(1).unwrap();
    let ex = echo();
    let client = Arc::new(
        core.open_exec(
            ex.clone(),
            1 << 16,
            1 << 16,
            AttachOptions::default(),
            copts(),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    let v = format!("{t}:{i}");
                    let r = c.call(&[b"ECHO", v.as_bytes()]).unwrap();
                    assert_eq!(r, Value::Bulk(v.into_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ex.calls.load(Ordering::Relaxed), 40_000);
    let st = &client.attachment().stats;
    assert_eq!(st.requests.load(Ordering::Relaxed), 40_000);
    assert_eq!(st.completions.load(Ordering::Relaxed), 40_000);
    assert_settled(client.attachment());
    drop(client);
    core.shutdown(Duration::from_secs(1));
}

#[test]
fn large_values_fragment_both_ways() {
    let core = EmbeddedCore::start(1).unwrap();
    // 64 KiB rings: max_record is 16 KiB, so these are fragmented.
    let client = core
        .open_exec(echo(), 1 << 16, 1 << 16, AttachOptions::default(), copts())
        .unwrap();
    for size in [0usize, 1, 16 * 1024 - 200, 100_000, 3 << 20, 17 << 20] {
        let v: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let r = client.call(&[b"ECHO", &v]).unwrap();
        assert_eq!(r, Value::Bulk(v), "size {size}");
        // Single-record and fragmented requests alike give back what
        // they counted.
        assert_settled(client.attachment());
    }
}

#[test]
fn async_submissions_complete_out_of_order() {
    let core = EmbeddedCore::start(1).unwrap();
    let client = core
        .open_exec(echo(), 1 << 16, 1 << 16, AttachOptions::default(), copts())
        .unwrap();
    let slow = client
        .submit(&[b"ECHO", b"sleep:200", b"slow"], &Default::default(), None)
        .unwrap();
    let fast: Vec<u64> = (0..100)
        .map(|i| {
            client
                .submit(
                    &[b"ECHO", format!("{i}").as_bytes()],
                    &Default::default(),
                    None,
                )
                .unwrap()
        })
        .collect();
    for (i, id) in fast.iter().enumerate() {
        let c = client.wait(*id, None).unwrap();
        assert_eq!(c, Completion::Ok(Value::Bulk(format!("{i}").into_bytes())));
    }
    assert_eq!(
        client.wait(slow, None).unwrap(),
        Completion::Ok(Value::Bulk(b"slow".to_vec()))
    );
}

#[test]
fn inflight_limit_applies_backpressure_without_losing_requests() {
    let core = EmbeddedCore::start(1).unwrap();
    let opts = AttachOptions {
        max_inflight: 4,
        ..AttachOptions::default()
    };
    let client = Arc::new(
        core.open_exec(echo(), 1 << 16, 1 << 16, opts, copts())
            .unwrap(),
    );
    let ids: Vec<u64> = (0..200)
        .map(|_| {
            client
                .submit(&[b"ECHO", b"sleep:2", b"x"], &Default::default(), None)
                .unwrap()
        })
        .collect();
    // The core never has more than 4 in flight.
    let mut max_seen = 0;
    for id in ids {
        max_seen = max_seen.max(client.attachment().inflight());
        assert_eq!(
            client.wait(id, None).unwrap(),
            Completion::Ok(Value::Bulk(b"x".to_vec()))
        );
    }
    assert!(max_seen <= 4, "in flight {max_seen}");
}

#[test]
fn shutdown_completes_or_closes_every_request() {
    let core = EmbeddedCore::start(1).unwrap();
    let client = core
        .open_exec(echo(), 1 << 16, 1 << 16, AttachOptions::default(), copts())
        .unwrap();
    let quick = client
        .submit(&[b"ECHO", b"sleep:50", b"q"], &Default::default(), None)
        .unwrap();
    let slow = client
        .submit(&[b"ECHO", b"sleep:5000", b"s"], &Default::default(), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let t = std::thread::spawn(move || core.shutdown(Duration::from_millis(300)));
    assert_eq!(
        client.wait(quick, None).unwrap(),
        Completion::Ok(Value::Bulk(b"q".to_vec()))
    );
    match client.wait(slow, None) {
        Ok(Completion::Err(e)) => assert_eq!(e.kind, ErrorKind::Closing),
        Err(e) => assert_eq!(e.kind, ErrorKind::Closing, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    t.join().unwrap();
    // After shutdown a call fails at once with a closing error.
    let e = client.call(&[b"ECHO", b"x"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closing);
}
