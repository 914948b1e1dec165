//! The core's RESP reader (`core/src/resp/`) on hostile server bytes.
//!
//! Input: `[split seed][stream bytes]`. The stream is fed to one
//! `Scanner` in reads whose sizes come from the seed (resuming each time,
//! every delimited frame consumed as the connection layer will), and every
//! delimited frame is decoded; error replies go through `error_to_client`,
//! `parse_redirect` and `retry_class`.
//!
//! Checks: nothing panics; chunked scanning reports the same frames (and
//! the same error) as scanning the whole stream at once; `need()` always
//! asks for more than the scanner has; everything the scanner delimits
//! decodes (only a push's kind is left to the decoder); a decoded array of
//! bulk strings re-encodes with `encode_command` to the same frame.
//!
//! The module is compiled from its source with `#[path]`, so the fuzz crate
//! keeps depending on `vshm-protocol` only (plus `memchr`); the one item it
//! uses from the rest of the core, `value::server_error_kind`, is mirrored
//! below.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vshm_protocol::msg::Value;

/// Mirror of `vshm_core::value::server_error_kind`.
mod value {
    use vshm_protocol::msg::ErrorKind;

    pub fn server_error_kind(code: &str) -> ErrorKind {
        match code {
            "EXECABORT" => ErrorKind::ExecAbort,
            "CLUSTERDOWN" | "MASTERDOWN" => ErrorKind::Connection,
            _ => ErrorKind::Request,
        }
    }
}

#[path = "../../core/src/resp/mod.rs"]
#[allow(dead_code, unused_imports)]
mod resp;

use resp::{decode, Frame, RespError, Scanner};

type Event = Result<(usize, String), RespError>;

/// Scan `buf` arriving in reads of the given sizes (cycled; 0 = the rest).
fn read_all(buf: &[u8], sizes: &[u8]) -> Vec<Event> {
    let mut s = Scanner::new();
    let mut start = 0;
    let mut end = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while end < buf.len() {
        let step = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0) as usize;
        i += 1;
        end = if step == 0 {
            buf.len()
        } else {
            (end + step).min(buf.len())
        };
        loop {
            match s.scan(&buf[start..end]) {
                Ok(Some(n)) => {
                    assert!(n > 0 && start + n <= end);
                    let frame = &buf[start..start + n];
                    out.push(Ok((n, check_frame(frame))));
                    start += n;
                }
                Ok(None) => {
                    assert!(s.need() > end - start);
                    break;
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// Decode one delimited frame and exercise what consumes it; returns its
/// Debug form for comparison (a NaN double is not equal to itself).
fn check_frame(frame: &[u8]) -> String {
    let f = match decode(frame) {
        Ok(f) => f,
        Err(RespError::BadPushKind) => return "bad push kind".into(),
        Err(e) => panic!("scanned frame does not decode: {e}: {frame:?}"),
    };
    match &f {
        Frame::Error(text) => {
            let _ = resp::error_to_client(text);
            let _ = resp::retry_class(text);
            if let Some(r) = resp::parse_redirect(text) {
                assert!(r.slot() < 16384 && r.port() != 0);
            }
        }
        Frame::Value(Value::Array(items)) => {
            let args: Option<Vec<&[u8]>> = items
                .iter()
                .map(|v| match v {
                    Value::Bulk(b) => Some(b.as_slice()),
                    _ => None,
                })
                .collect();
            if let Some(args) = args {
                let mut again = Vec::new();
                resp::encode_command(&mut again, &args);
                assert_eq!(decode(&again), Ok(f.clone()));
            }
        }
        _ => {}
    }
    format!("{f:?}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // Read sizes 1..=16 from the seed's bits, or everything at once.
    let sizes: Vec<u8> = if seed == 0 {
        vec![0]
    } else {
        vec![seed & 0x0f, seed >> 4, 1, (seed % 7) + 1]
            .into_iter()
            .map(|s| s.max(1))
            .collect()
    };
    let whole = read_all(stream, &[0]);
    let chunked = read_all(stream, &sizes);
    assert_eq!(whole, chunked);
});
