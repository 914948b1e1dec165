//! Writes the seed corpus of the cargo-fuzz targets in `fuzz/`:
//!
//! ```text
//! cargo run -p vshm-protocol --example fuzz_seeds -- fuzz/corpus
//! ```
//!
//! Seeds are small, valid inputs (encoded requests and completions, ring
//! images written by the real producer, valid segment headers) from which
//! the fuzzer mutates its way to the invalid ones.

use std::path::Path;

use vshm_protocol::frame::FragmentWriter;
use vshm_protocol::layout::{Layout, RingCtl, HEADER_SIZE};
use vshm_protocol::msg::{
    encode_completion, encode_request, ClientError, Completion, ErrorKind, Op, Pair, Request,
    Route, Value,
};
use vshm_protocol::ring::{kind, DataArea, HeapArea, Producer};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create corpus dir");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

fn requests() -> Vec<Request> {
    let args = |a: &[&[u8]]| a.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
    vec![
        Request {
            id: 1,
            timeout_ms: 0,
            flags: 0,
            route: Route::Auto,
            op: Op::Command {
                args: args(&[b"GET", b"key"]),
            },
        },
        Request {
            id: 2,
            timeout_ms: 250,
            flags: 1,
            route: Route::SlotKey {
                key: b"k".to_vec(),
                replica: true,
            },
            op: Op::Batch {
                atomic: true,
                watch: args(&[b"k"]),
                commands: vec![args(&[b"INCR", b"k"]), args(&[b"SET", b"k", &[0, 255, 7]])],
            },
        },
        Request {
            id: 3,
            timeout_ms: 5,
            flags: 0,
            route: Route::Address {
                host: "127.0.0.1".into(),
                port: 6379,
            },
            op: Op::Cancel { target: 2 },
        },
        Request {
            id: u64::MAX,
            timeout_ms: u32::MAX,
            flags: 0,
            route: Route::SlotId {
                slot: 16383,
                replica: false,
            },
            op: Op::Command { args: vec![] },
        },
    ]
}

fn completions() -> Vec<Completion> {
    vec![
        Completion::Ok(Value::Simple(b"OK".to_vec())),
        Completion::Ok(Value::Array(vec![
            Value::Nil,
            Value::Int(-1),
            Value::Bulk(vec![1, 2, 3]),
            Value::Map(vec![Pair {
                key: Value::Bulk(b"a".to_vec()),
                value: Value::Double(0.5),
            }]),
            Value::Attribute {
                data: Box::new(Value::Boolean(true)),
                attributes: vec![],
            },
        ])),
        Completion::Err(ClientError::new(ErrorKind::Request, "WRONGTYPE")),
        Completion::Push(Value::Push {
            kind: b"message".to_vec(),
            data: vec![
                Value::Bulk(b"ch".to_vec()),
                Value::Verbatim {
                    format: b"txt".to_vec(),
                    text: b"hi".to_vec(),
                },
            ],
        }),
    ]
}

/// A ring image written by the real producer, plus the steps that publish
/// it (`ring_consumer`'s input format).
fn ring_seed(cap_sel: u8, msgs: &[usize], extra_steps: &[[u8; 3]]) -> Vec<u8> {
    let cap = 64u64 << cap_sel;
    let max_record = (cap / 4).saturating_sub(16);
    let ctl = RingCtl::default();
    let area = HeapArea::new(cap as usize);
    let mut prod = Producer::new(cap, max_record);
    for (i, &len) in msgs.iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        let mut w = FragmentWriter::new(i as u64 + 1, kind::MSG);
        if !w.pump(&mut prod, &ctl, &area, &data).expect("pump") {
            break;
        }
    }
    let mut image = vec![0u8; cap as usize];
    // SAFETY: reads exactly the area's capacity from offset 0.
    unsafe { area.read(0, &mut image) };
    let mut out = vec![cap_sel, 0];
    out.extend_from_slice(&image);
    // op 1: tail = released + v * 16.
    let v = (prod.tail() / 16) as u16;
    out.push(1 | 4);
    out.extend_from_slice(&v.to_le_bytes());
    for s in extra_steps {
        out.extend_from_slice(s);
    }
    out
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let dir = Path::new(&dir);
    for (i, r) in requests().iter().enumerate() {
        write(
            dir,
            "decode_request",
            &format!("request-{i}"),
            &encode_request(r),
        );
    }
    for (i, c) in completions().iter().enumerate() {
        write(
            dir,
            "decode_request",
            &format!("completion-{i}"),
            &encode_completion(c),
        );
    }
    // completion_roundtrip takes `arbitrary` bytes: any bytes are valid
    // input; give it a few shapes.
    write(dir, "completion_roundtrip", "empty", b"");
    write(
        dir,
        "completion_roundtrip",
        "small",
        &[0, 5, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    write(
        dir,
        "completion_roundtrip",
        "nested",
        &[0, 5, 5, 5, 5, 2, 3, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9],
    );
    write(dir, "completion_roundtrip", "error", &[1, 3, 104, 105, 33]);

    write(
        dir,
        "ring_consumer",
        "small-messages",
        &ring_seed(2, &[0, 5, 48, 16], &[]),
    );
    write(
        dir,
        "ring_consumer",
        "fragmented",
        &ring_seed(2, &[150, 3], &[]),
    );
    write(
        dir,
        "ring_consumer",
        "wrapping",
        &ring_seed(1, &[20, 20, 20], &[[0, 16, 0], [2, 32, 0], [3, 7, 0]]),
    );
    write(
        dir,
        "ring_consumer",
        "big-ring",
        &ring_seed(3, &[100, 0, 300, 7], &[[1, 0, 0]]),
    );

    let sizes = [
        HEADER_SIZE,
        HEADER_SIZE + 2 * 4096,
        HEADER_SIZE + 2 * 65536,
        HEADER_SIZE + 4096 + 8192,
    ];
    for (sel, (sq, cq)) in [(1u8, (4096, 4096)), (2, (65536, 65536)), (3, (4096, 8192))] {
        let l = Layout::new(sq, cq, 0).expect("layout");
        assert_eq!(l.total_size, sizes[sel as usize]);
        let mut seed = vec![sel | 0x80];
        seed.extend_from_slice(&l.header().to_bytes());
        write(dir, "segment_attach", &format!("valid-{sq}-{cq}"), &seed);
    }
    let mut seed = vec![0x40];
    seed.extend_from_slice(
        &Layout::new(4096, 4096, 1)
            .expect("layout")
            .header()
            .to_bytes(),
    );
    write(dir, "segment_attach", "doorbell-feature", &seed);
    println!("seeds written under {}", dir.display());
}
