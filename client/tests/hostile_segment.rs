//! A segment facing a hostile peer (the ring-level cases are `hostile.rs`).
//!
//! * `Segment::attach` against scribbled headers (each field wrong in turn,
//!   then thousands of random headers) and unsealed memfds.
//! * `Sender::send` against a consumer that stops draining: the wait ends at
//!   its deadline or when the segment closes.
//!
//! The random cases are seeded: `VSHM_HOSTILE_SEED=<n>` reproduces a run.

use std::cell::Cell;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore};
use vshm_client::endpoint::{Dir, EndpointError, PeerWake, Sender};
use vshm_protocol::layout::{state, Layout, SegmentHeader, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use vshm_protocol::ring::{kind, DataArea};
use vshm_protocol::segment::Segment;
use vshm_protocol::ProtocolError;

mod seeded;
use seeded::for_cases;

// ---------------------------------------------------------------------------
// Segment headers.

const SEG_RING: u64 = 64 * 1024;

/// A sealed memfd segment and a second descriptor of it for attaching.
fn segment_and_fd() -> (Segment, File) {
    let seg = Segment::create_memfd(Layout::new(SEG_RING, SEG_RING, 0).unwrap(), c"vshm-hostile")
        .unwrap();
    let fd = seg.fd().unwrap().try_clone_to_owned().unwrap();
    (seg, File::from(fd))
}

fn attach_with(file: &File, h: &SegmentHeader) -> Result<Segment, ProtocolError> {
    file.write_all_at(&h.to_bytes(), 0).unwrap();
    Segment::attach(OwnedFd::from(file.try_clone().unwrap()))
}

#[test]
fn attach_rejects_scribbled_headers() {
    let (seg, file) = segment_and_fd();
    let good = seg.layout().header();
    let total = good.total_size;
    assert_eq!(attach_with(&file, &good).unwrap().layout(), seg.layout());

    type Case = (
        &'static str,
        Box<dyn Fn(&mut SegmentHeader)>,
        Box<dyn Fn(&ProtocolError) -> bool>,
    );
    let layout_err = |want: &'static str| move |e: &ProtocolError| matches!(e, ProtocolError::BadLayout(m) if m.contains(want));
    let cases: Vec<Case> = vec![
        (
            "magic",
            Box::new(|h| h.magic = u64::from_le_bytes(*b"VSHMSEG2")),
            Box::new(
                |e| matches!(e, ProtocolError::BadMagic { found, expected } if *found == u64::from_le_bytes(*b"VSHMSEG2") && *expected == MAGIC),
            ),
        ),
        (
            "zero magic",
            Box::new(|h| h.magic = 0),
            Box::new(|e| matches!(e, ProtocolError::BadMagic { found: 0, .. })),
        ),
        (
            "version",
            Box::new(|h| h.version = LAYOUT_VERSION + 1),
            Box::new(
                |e| matches!(e, ProtocolError::UnsupportedVersion { found, supported } if *found == LAYOUT_VERSION + 1 && *supported == LAYOUT_VERSION),
            ),
        ),
        (
            "version 0",
            Box::new(|h| h.version = 0),
            Box::new(|e| matches!(e, ProtocolError::UnsupportedVersion { found: 0, .. })),
        ),
        (
            "header size",
            Box::new(|h| h.header_size = 8192),
            Box::new(layout_err("header size")),
        ),
        (
            "total size small",
            Box::new(move |h| h.total_size = total - 4096),
            Box::new(
                move |e| matches!(e, ProtocolError::SizeMismatch { header, actual } if *header == total - 4096 && *actual == total),
            ),
        ),
        (
            "total size huge",
            Box::new(|h| h.total_size = u64::MAX),
            Box::new(
                move |e| matches!(e, ProtocolError::SizeMismatch { header: u64::MAX, actual } if *actual == total),
            ),
        ),
        (
            "features",
            Box::new(|h| h.features = 1 << 40),
            Box::new(layout_err("unknown feature bits")),
        ),
        (
            "sq capacity not a power of two",
            Box::new(|h| h.sq_capacity = 3 << 12),
            Box::new(layout_err("power of two")),
        ),
        (
            "sq capacity 0",
            Box::new(|h| h.sq_capacity = 0),
            Box::new(layout_err("power of two")),
        ),
        (
            "cq capacity tiny",
            Box::new(|h| h.cq_capacity = 2048),
            Box::new(layout_err("power of two")),
        ),
        (
            "cq capacity huge",
            Box::new(|h| h.cq_capacity = 1 << 40),
            Box::new(layout_err("power of two")),
        ),
        (
            "sq offset unaligned",
            Box::new(|h| h.sq_offset += 16),
            Box::new(layout_err("ring offset")),
        ),
        (
            "sq offset in the header",
            Box::new(|h| h.sq_offset = 0),
            Box::new(layout_err("ring offset")),
        ),
        (
            "cq offset past the end",
            Box::new(move |h| h.cq_offset = total),
            Box::new(layout_err("ring offset")),
        ),
        (
            "cq offset wraps",
            Box::new(|h| h.cq_offset = u64::MAX - 4095),
            Box::new(layout_err("ring offset")),
        ),
        (
            "cq capacity past the end",
            Box::new(|h| h.cq_capacity *= 2),
            Box::new(layout_err("ring offset")),
        ),
        (
            "rings overlap",
            Box::new(|h| h.cq_offset = h.sq_offset + 4096),
            Box::new(layout_err("rings overlap")),
        ),
        (
            "rings coincide",
            Box::new(|h| h.cq_offset = h.sq_offset),
            Box::new(layout_err("rings overlap")),
        ),
        (
            "max_record 0",
            Box::new(|h| h.max_record = 0),
            Box::new(layout_err("max_record")),
        ),
        (
            "max_record unaligned",
            Box::new(|h| h.max_record -= 8),
            Box::new(layout_err("max_record")),
        ),
        (
            "max_record over a quarter",
            Box::new(|h| h.max_record += 16),
            Box::new(layout_err("max_record")),
        ),
        (
            "max_record near u64::MAX",
            Box::new(|h| h.max_record = u64::MAX - 15),
            Box::new(layout_err("max_record")),
        ),
        (
            "max_record u64::MAX",
            Box::new(|h| h.max_record = u64::MAX),
            Box::new(layout_err("max_record")),
        ),
        (
            "max_message below max_record",
            Box::new(|h| h.max_message = h.max_record - 16),
            Box::new(layout_err("max_message")),
        ),
        (
            "max_message huge",
            Box::new(|h| h.max_message = u64::MAX),
            Box::new(layout_err("max_message")),
        ),
    ];
    for (what, scribble, expect) in &cases {
        let mut h = good;
        scribble(&mut h);
        match attach_with(&file, &h) {
            Err(e) if expect(&e) => {}
            other => panic!("{what}: {other:?}"),
        }
        // The same verdict without a mapping.
        match Layout::validate(&h, total) {
            Err(e) if expect(&e) => {}
            other => panic!("{what} (validate): {other:?}"),
        }
    }
    // Swapped rings are a valid layout.
    let mut h = good;
    std::mem::swap(&mut h.sq_offset, &mut h.cq_offset);
    assert!(attach_with(&file, &h).is_ok());
}

#[test]
fn attach_rejects_unsealed_and_odd_descriptors() {
    let layout = Layout::new(SEG_RING, SEG_RING, 0).unwrap();
    let make = |seals: Option<SealFlag>, size: u64| -> OwnedFd {
        let fd = memfd_create(
            c"vshm-unsealed",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .unwrap();
        let f = File::from(fd);
        f.write_all_at(&layout.header().to_bytes(), 0).unwrap();
        // After the write, which extends the file: sizes below the header's
        // length cut it.
        f.set_len(size).unwrap();
        let fd = OwnedFd::from(f);
        if let Some(s) = seals {
            fcntl(&fd, FcntlArg::F_ADD_SEALS(s)).unwrap();
        }
        fd
    };
    let not_sealed = |r: Result<Segment, ProtocolError>| matches!(r, Err(ProtocolError::BadLayout(m)) if m.contains("not sealed"));
    // No seals, only one of the two required.
    assert!(not_sealed(Segment::attach(make(None, layout.total_size))));
    assert!(not_sealed(Segment::attach(make(
        Some(SealFlag::F_SEAL_SHRINK),
        layout.total_size
    ))));
    assert!(not_sealed(Segment::attach(make(
        Some(SealFlag::F_SEAL_GROW),
        layout.total_size
    ))));
    // Both: accepted (F_SEAL_SEAL is the creator's business).
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    assert!(Segment::attach(make(Some(seals), layout.total_size)).is_ok());
    // Sealed but smaller than the header page, or empty.
    for size in [0u64, 100, 4095] {
        assert!(
            matches!(Segment::attach(make(Some(seals), size)), Err(ProtocolError::SizeMismatch { actual, .. }) if actual == size),
            "size {size}"
        );
    }
    // Sealed at a size other than the header's.
    assert!(matches!(
        Segment::attach(make(Some(seals), layout.total_size + 4096)),
        Err(ProtocolError::SizeMismatch { .. })
    ));
    // A memfd that does not allow sealing at all, and not a memfd at all.
    let fd = memfd_create(c"vshm-nosealing", MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, layout.total_size as libc::off_t).unwrap();
    assert!(Segment::attach(fd).is_err());
    let devnull = OwnedFd::from(File::open("/dev/null").unwrap());
    assert!(matches!(
        Segment::attach(devnull),
        Err(ProtocolError::Os(_))
    ));
    let (r, _w) = nix::unistd::pipe().unwrap();
    assert!(Segment::attach(r).is_err());
}

/// Thousands of random headers: `validate` never panics, and whatever it
/// accepts really is in bounds.
#[test]
fn random_headers() {
    let good = Layout::new(SEG_RING, SEG_RING, 0).unwrap().header();
    let interesting = |rng: &mut SmallRng| -> u64 {
        match rng.random_range(0..10u32) {
            0 => 0,
            1 => u64::MAX - rng.random_range(0..32),
            2 => 1 << rng.random_range(0..64),
            3 => (1u64 << rng.random_range(0..64)).wrapping_sub(16),
            4 => rng.random_range(0..8) * 4096,
            5 => rng.random_range(0..=good.total_size),
            _ => rng.random(),
        }
    };
    let accepted = Cell::new(0u64);
    for_cases("random headers", 20_000, |rng| {
        let mut h = good;
        let mut bytes = h.to_bytes();
        if rng.random_ratio(1, 10) {
            rng.fill_bytes(&mut bytes);
            h = SegmentHeader::from_bytes(&bytes).unwrap();
        } else {
            for _ in 0..rng.random_range(1..4) {
                let v = interesting(rng);
                match rng.random_range(0..10u32) {
                    0 => h.total_size = v,
                    1 => h.features = v & 3,
                    2 => h.sq_offset = v,
                    3 => h.sq_capacity = v,
                    4 => h.cq_offset = v,
                    5 => h.cq_capacity = v,
                    6 => h.max_record = v,
                    7 => h.max_message = v,
                    8 => h.header_size = v as u32,
                    _ => h.version = v as u32,
                }
            }
        }
        let actual = if rng.random_bool(0.5) {
            h.total_size
        } else {
            interesting(rng)
        };
        if let Ok(l) = Layout::validate(&h, actual) {
            accepted.set(accepted.get() + 1);
            for (off, cap) in [(l.sq_offset, l.sq_capacity), (l.cq_offset, l.cq_capacity)] {
                assert!(off >= HEADER_SIZE && off.is_multiple_of(4096) && off + cap <= actual);
                assert!(cap.is_power_of_two() && cap >= 4096);
            }
            let (a, b) = if l.sq_offset < l.cq_offset {
                ((l.sq_offset, l.sq_capacity), l.cq_offset)
            } else {
                ((l.cq_offset, l.cq_capacity), l.sq_offset)
            };
            assert!(a.0 + a.1 <= b);
            assert!(
                l.max_record >= 64 && l.max_record + 16 <= l.sq_capacity.min(l.cq_capacity) / 4
            );
            assert!(l.max_record <= l.max_message);
        }
    });
    assert!(accepted.get() > 0);
}

/// Random headers through a real attach (mapping included).
#[test]
fn random_headers_attach() {
    let (seg, file) = segment_and_fd();
    let good = seg.layout().header();
    for_cases("random attach", 1000, |rng| {
        let mut h = good;
        for _ in 0..rng.random_range(1..3) {
            let v: u64 = match rng.random_range(0..3u32) {
                0 => rng.random(),
                1 => rng.random_range(0..64) * 4096,
                _ => 1 << rng.random_range(0..64),
            };
            match rng.random_range(0..8u32) {
                0 => h.total_size = v,
                1 => h.sq_offset = v,
                2 => h.sq_capacity = v,
                3 => h.cq_offset = v,
                4 => h.cq_capacity = v,
                5 => h.max_record = v,
                6 => h.max_message = v,
                _ => h.features = v,
            }
        }
        if let Ok(s) = attach_with(&file, &h) {
            // Touch both rings' first and last bytes through the mapping.
            let (_, sq) = s.sq();
            let (_, cq) = s.cq();
            for a in [sq, cq] {
                let mut b = [0u8; 1];
                // SAFETY: in bounds of the validated area (test only reads).
                unsafe {
                    a.read(0, &mut b);
                    a.read(a.capacity() - 1, &mut b);
                }
            }
        }
    });
}

#[test]
fn layout_new_refuses_bad_capacities() {
    for cap in [0u64, 16, 48, 64, 3000, 4097, 1 << 31, 1 << 63, u64::MAX] {
        assert!(Layout::new(cap, 1 << 16, 0).is_err(), "sq {cap}");
        assert!(Layout::new(1 << 16, cap, 0).is_err(), "cq {cap}");
    }
    assert!(
        Layout::new(1 << 16, 1 << 16, 1 << 5).is_err(),
        "unknown feature"
    );
    assert!(Layout::new(4096, 4096, 0).is_ok());
}

// ---------------------------------------------------------------------------
// Blocking endpoints facing a consumer that stops draining.

#[test]
fn sender_waits_are_bounded_when_the_consumer_stops() {
    let seg = Arc::new(Segment::create_anonymous(Layout::new(4096, 4096, 0).unwrap()).unwrap());
    let max = seg.layout().max_record as usize;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let s = seg.clone();
    std::thread::spawn(move || {
        let mut tx = Sender::new(s.clone(), Dir::Sq, PeerWake::Futex);
        // Nobody consumes: fill the ring with small messages until a send
        // times out at its deadline.
        let mut n = 0;
        let r = loop {
            match tx.send(
                n,
                kind::MSG,
                &[7u8; 100],
                Instant::now() + Duration::from_millis(200),
            ) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        let _ = done_tx.send(("small", r));
        // A fragmented message that starts (the first fragments fit after a
        // release below) and then stalls: it must end when the segment
        // closes, not spin forever.
        let r = tx.send(
            u64::MAX,
            kind::MSG,
            &vec![1u8; 10 * max],
            Instant::now() + Duration::from_millis(200),
        );
        let _ = done_tx.send(("fragmented", r.err().unwrap_or(EndpointError::Timeout)));
    });
    let (what, e) = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("small send timed out");
    assert_eq!((what, e), ("small", EndpointError::Timeout));
    // Free the whole ring, as a consumer that read everything then died.
    let (ctl, _) = seg.sq();
    // Acquire: pairs with the Release tail store in `Producer::publish`;
    // the Release head store below pairs with the Acquire head load in
    // `Producer::refresh_head`.
    let tail = ctl.prod.tail.load(vshm_protocol::sync::Ordering::Acquire);
    ctl.cons
        .head
        .store(tail, vshm_protocol::sync::Ordering::Release);
    std::thread::sleep(Duration::from_millis(500));
    seg.set_state(state::CLOSED);
    let (what, e) = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a started fragmented send ignored the closed segment");
    assert_eq!((what, e), ("fragmented", EndpointError::Closed));
}
