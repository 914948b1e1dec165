//! Segment headers from the fuzzer: `Layout::validate` on the decoded
//! header and a mapping size, then a real `Segment::attach` of a sealed
//! memfd whose header page holds the input. Whatever is accepted must be
//! in bounds: both rings' first and last bytes are read through the
//! mapping.
//!
//! Input: `[size selector][header bytes...]`.
#![no_main]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use vshm_protocol::layout::{Layout, SegmentHeader, HEADER_SIZE};
use vshm_protocol::ring::DataArea;
use vshm_protocol::segment::Segment;

/// Sealed memfds of a few sizes, made once.
fn memfds() -> &'static [(u64, File)] {
    static FDS: OnceLock<Vec<(u64, File)>> = OnceLock::new();
    FDS.get_or_init(|| {
        [
            HEADER_SIZE,
            HEADER_SIZE + 2 * 4096,
            HEADER_SIZE + 2 * 65536,
            HEADER_SIZE + 4096 + 8192,
        ]
        .into_iter()
        .map(|size| {
            let fd = memfd_create(
                c"vshm-fuzz",
                MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
            )
            .unwrap();
            nix::unistd::ftruncate(&fd, size as libc::off_t).unwrap();
            fcntl(
                &fd,
                FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
            )
            .unwrap();
            (size, File::from(fd))
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut raw = [0u8; SegmentHeader::SIZE];
    let n = rest.len().min(raw.len());
    raw[..n].copy_from_slice(&rest[..n]);
    let h = SegmentHeader::from_bytes(&raw).expect("full header");
    assert_eq!(h.to_bytes(), raw);

    // Pure validation against a size from the input (or the header's own).
    let size = if sel & 0x80 != 0 {
        h.total_size
    } else {
        rest.get(raw.len()..raw.len() + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(u64::from(sel) * 4096)
    };
    if let Ok(l) = Layout::validate(&h, size) {
        for (off, cap) in [(l.sq_offset, l.sq_capacity), (l.cq_offset, l.cq_capacity)] {
            assert!(off >= HEADER_SIZE && off.checked_add(cap).is_some_and(|e| e <= size));
        }
        assert!(l.max_record + 16 <= l.sq_capacity.min(l.cq_capacity) / 4);
    }

    // A real attach.
    let fds = memfds();
    let (size, file) = &fds[usize::from(sel) % fds.len()];
    let mut h = h;
    if sel & 0x40 != 0 {
        // Help the fuzzer past the size check.
        h.total_size = *size;
    }
    file.write_all_at(&h.to_bytes(), 0).unwrap();
    let fd = OwnedFd::from(file.try_clone().unwrap());
    if let Ok(seg) = Segment::attach(fd) {
        assert_eq!(seg.layout().total_size, *size);
        let (_, sq) = seg.sq();
        let (_, cq) = seg.cq();
        for a in [sq, cq] {
            let mut b = [0u8; 1];
            // SAFETY: offsets 0 and capacity - 1 are inside the validated
            // ring area; nobody else writes the memfd meanwhile.
            unsafe {
                a.read(0, &mut b);
                a.read(a.capacity() - 1, &mut b);
            }
        }
        let _ = seg.state();
    }
});
