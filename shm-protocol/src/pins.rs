//! Records handed out in place (zero-copy replies) and the ring space they
//! hold.
//!
//! A consumer that lets readers use records where they lie must not return
//! their space to the producer while any of them is read: [`Pins`] keeps
//! the start positions of the records handed out, and [`Pins::release`]
//! returns space only up to the oldest one (everything consumed when none
//! is pinned). The client's completion side keeps a `Pins` next to its
//! [`Consumer`] under one lock; the loom model d2 runs the same code.

use std::collections::BTreeSet;

use crate::layout::RingCtl;
use crate::ring::{Consumer, Record};

/// Start positions of the records handed out in place and not yet freed.
#[derive(Debug, Default)]
pub struct Pins {
    set: BTreeSet<u64>,
}

impl Pins {
    pub fn new() -> Self {
        Pins::default()
    }

    /// Pin `rec` (consumed with [`Consumer::advance`], read in place).
    pub fn pin(&mut self, rec: &Record) {
        self.set.insert(rec.pos());
    }

    /// Unpin the record that starts at `pos`; false if it was not pinned.
    /// Call [`Pins::release`] afterwards.
    pub fn unpin(&mut self, pos: u64) -> bool {
        self.set.remove(&pos)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Return ring space up to the oldest pinned record, or everything
    /// consumed when nothing is pinned. True when the producer waits for
    /// space and must be woken (see [`Consumer::release_to`]).
    pub fn release(&self, cons: &mut Consumer, ctl: &RingCtl) -> bool {
        let to = self.set.first().copied().unwrap_or_else(|| cons.head());
        cons.release_to(ctl, to)
    }

    /// Ring bytes held: from the oldest pinned record to the read position.
    pub fn pinned_bytes(&self, cons: &Consumer) -> u64 {
        match self.set.first() {
            Some(&p) => cons.head().wrapping_sub(p),
            None => 0,
        }
    }
}
