//! Segments: creating (memfd sealed against resizing, or an anonymous
//! mapping for the in-process mode) and attaching with full validation.
//!
//! A memfd has no name in any file system, so no other process can open it:
//! the only way in is the file descriptor the core hands over (SCM_RIGHTS).
//! Seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` make the size final,
//! so a client can never truncate the file under the core's mapping (which
//! would turn the core's next access into SIGBUS).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::layout::{state, Layout, RingCtl, SegmentCtl, SegmentHeader, CTL_OFFSET};
use crate::ring::DataArea;
use crate::sync::Ordering;
use crate::wake::{self, Side};
use crate::ProtocolError;

fn os<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ProtocolError {
    move |e| ProtocolError::Os(format!("{what}: {e}"))
}

/// A mapped segment. The mapping lives as long as the `Segment`.
pub struct Segment {
    map: MmapRaw,
    layout: Layout,
    fd: Option<OwnedFd>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("layout", &self.layout)
            .finish()
    }
}

/// The seals every segment must carry.
pub const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW);

impl Segment {
    /// Create a sealed memfd segment (the daemon's way).
    pub fn create_memfd(layout: Layout, name: &CStr) -> Result<Segment, ProtocolError> {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(os("memfd_create"))?;
        nix::unistd::ftruncate(&fd, layout.total_size as libc::off_t).map_err(os("ftruncate"))?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(REQUIRED_SEALS | SealFlag::F_SEAL_SEAL),
        )
        .map_err(os("F_ADD_SEALS"))?;
        let map = MmapOptions::new()
            .len(layout.total_size as usize)
            .map_raw(&fd)
            .map_err(os("mmap"))?;
        let seg = Segment {
            map,
            layout,
            fd: Some(fd),
        };
        seg.write_header();
        Ok(seg)
    }

    /// Create a private anonymous segment (the in-process mode's way). It
    /// is `MAP_PRIVATE`: a forked child gets its own copy, never the
    /// parent's live rings.
    pub fn create_anonymous(layout: Layout) -> Result<Segment, ProtocolError> {
        let map = MmapOptions::new()
            .len(layout.total_size as usize)
            .map_anon()
            .map_err(os("mmap anonymous"))?;
        let seg = Segment {
            map: MmapRaw::from(map),
            layout,
            fd: None,
        };
        seg.write_header();
        Ok(seg)
    }

    fn write_header(&self) {
        let h = self.layout.header().to_bytes();
        // SAFETY: the mapping is at least HEADER_SIZE bytes and not yet
        // shared with anyone.
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), self.map.as_mut_ptr(), h.len()) };
    }

    /// Attach to a segment received as a file descriptor: check the seals,
    /// map it, and validate the header against the real size.
    pub fn attach(fd: OwnedFd) -> Result<Segment, ProtocolError> {
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(os("F_GET_SEALS"))?;
        let seals = SealFlag::from_bits_truncate(seals);
        if !seals.contains(REQUIRED_SEALS) {
            return Err(ProtocolError::BadLayout(
                "segment memfd is not sealed against resizing",
            ));
        }
        let st = nix::sys::stat::fstat(&fd).map_err(os("fstat"))?;
        let size = st.st_size as u64;
        if size < crate::layout::HEADER_SIZE {
            return Err(ProtocolError::SizeMismatch {
                header: 0,
                actual: size,
            });
        }
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(&fd)
            .map_err(os("mmap"))?;
        let mut raw = [0u8; SegmentHeader::SIZE];
        // SAFETY: the mapping has at least HEADER_SIZE bytes; we copy the
        // header into private memory before looking at it.
        unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), raw.as_mut_ptr(), raw.len()) };
        let header =
            SegmentHeader::from_bytes(&raw).ok_or(ProtocolError::BadLayout("short header"))?;
        let layout = Layout::validate(&header, size)?;
        Ok(Segment {
            map,
            layout,
            fd: Some(fd),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The memfd, if this segment has one.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    pub fn ctl(&self) -> &SegmentCtl {
        // SAFETY: CTL_OFFSET + size_of::<SegmentCtl>() <= HEADER_SIZE <= mapping size (const-asserted),
        // 128-byte aligned in a page-aligned mapping; SegmentCtl is only atomics (any bit pattern is
        // valid, the mapping starts zeroed), which may be shared and mutated through `&`.
        unsafe { &*(self.map.as_ptr().add(CTL_OFFSET as usize) as *const SegmentCtl) }
    }

    fn area(&self, off: u64, cap: u64) -> RingArea<'_> {
        // SAFETY: the layout was validated (or built) against the mapping's
        // size, so [off, off + cap) is inside the mapping.
        let base = unsafe { self.map.as_mut_ptr().add(off as usize) };
        RingArea {
            base: NonNull::new(base).expect("mapping is non-null"),
            cap,
            _seg: std::marker::PhantomData,
        }
    }

    /// The submission ring's control words and data.
    pub fn sq(&self) -> (&RingCtl, RingArea<'_>) {
        (
            &self.ctl().sq,
            self.area(self.layout.sq_offset, self.layout.sq_capacity),
        )
    }

    /// The completion ring's control words and data.
    pub fn cq(&self) -> (&RingCtl, RingArea<'_>) {
        (
            &self.ctl().cq,
            self.area(self.layout.cq_offset, self.layout.cq_capacity),
        )
    }

    pub fn state(&self) -> u32 {
        // Acquire: pairs with the Release store in `set_state`.
        self.ctl().state.load(Ordering::Acquire)
    }

    /// Mark the segment closed or broken and wake every sleeper on both
    /// rings so that none waits out its timeout.
    pub fn set_state(&self, s: u32) {
        debug_assert!(s <= state::PEER_LOST);
        // Release: pairs with the Acquire load in `state`.
        self.ctl().state.store(s, Ordering::Release);
        for ring in [&self.ctl().sq, &self.ctl().cq] {
            wake::wake(ring, Side::Consumer);
            wake::wake(ring, Side::Producer);
        }
    }
}

/// One ring's data area inside a mapping.
#[derive(Clone, Copy)]
pub struct RingArea<'a> {
    base: NonNull<u8>,
    cap: u64,
    _seg: std::marker::PhantomData<&'a Segment>,
}

// SAFETY: the area is plain shared memory; the ring protocol, not the type
// system, decides who touches which bytes.
unsafe impl Send for RingArea<'_> {}
// SAFETY: as above.
unsafe impl Sync for RingArea<'_> {}

impl RingArea<'_> {
    /// A mutable view of free ring space for in-place serialization.
    ///
    /// # Safety
    /// `off + len <= capacity()`, the range is free space owned by the
    /// calling producer, and no other view of it exists while the returned
    /// slice lives. The peer never reads unpublished space.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, off: u64, len: u64) -> &mut [u8] {
        debug_assert!(off + len <= self.cap);
        // SAFETY: per the contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(off as usize), len as usize)
        }
    }

    /// A shared view of published ring bytes (zero-copy reads by a side
    /// that trusts its peer, i.e. a client reading completions).
    ///
    /// # Safety
    /// `off + len <= capacity()`, and the peer does not write the range
    /// while the slice lives (it is published and not yet released).
    pub unsafe fn slice(&self, off: u64, len: u64) -> &[u8] {
        debug_assert!(off + len <= self.cap);
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off as usize), len as usize) }
    }
}

// SAFETY: `cap` is exactly the area's size inside the mapping; the copies
// stay in bounds per the trait's contract.
unsafe impl DataArea for RingArea<'_> {
    fn capacity(&self) -> u64 {
        self.cap
    }

    unsafe fn write(&self, off: u64, src: &[u8]) {
        debug_assert!(off + src.len() as u64 <= self.cap);
        // SAFETY: in bounds per the contract; src is private memory and
        // cannot overlap the mapping's free space.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.as_ptr().add(off as usize),
                src.len(),
            )
        }
    }

    unsafe fn read(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off + dst.len() as u64 <= self.cap);
        // SAFETY: in bounds per the contract. If a hostile peer writes the
        // range concurrently, we copy garbage (validated afterwards): the
        // same stance as the kernel's copy_from_user. See docs/protocol.md.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(off as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    unsafe fn read_uninit(&self, off: u64, dst: &mut [std::mem::MaybeUninit<u8>]) {
        debug_assert!(off + dst.len() as u64 <= self.cap);
        // SAFETY: as for `read`; the copy writes every byte of `dst`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(off as usize),
                dst.as_mut_ptr().cast::<u8>(),
                dst.len(),
            )
        }
    }
}
