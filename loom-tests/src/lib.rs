//! loom model checks of vshm's lock-free protocols.
//!
//! The models live in `tests/` and are compiled only under
//! `RUSTFLAGS="--cfg vshm_loom"`; this library holds what they share: a
//! loom-tracked [`DataArea`](vshm_protocol::ring::DataArea), the model
//! builder with the preemption bound, and record-level send/receive helpers
//! whose waits run the production sleep loop (`wake::wait`). See
//! `docs/loom.md`.
//!
//! Without the cfg the crate is empty (plus one test that it builds).

#[cfg(vshm_loom)]
mod model;

#[cfg(vshm_loom)]
pub use model::*;

#[cfg(all(test, not(vshm_loom)))]
mod tests {
    /// The models are cfg'd out of a plain build; make sure the protocol
    /// crate they check still links from here.
    #[test]
    fn plain_build_links_protocol_crate() {
        assert_eq!(vshm_protocol::ring::record_size(1), 32);
    }
}
