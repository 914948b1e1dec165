//! Helpers shared by several test files. Cluster operations (`pubsub.rs`, `resilience.rs`)
//! live in `vshm_tests::cluster_ops` (the soak driver uses them too) and are re-exported
//! here; the standalone config of the per-request path tests (`fastpath.rs`,
//! `large_values.rs`) is below.

#![allow(unused_imports, dead_code)]

use std::time::Duration;

use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;

pub use vshm_tests::cluster_ops::{migrate_slot, node_id, wait_slot_owner, wait_slots_settled};

/// Generous bound for requests: the machine is shared and slow; only timeout tests use a
/// short one.
pub const T: Duration = Duration::from_secs(20);

/// A standalone backend at `addr` speaking `protocol`, with [`T`] as its request timeout.
pub fn standalone_cfg(addr: String, protocol: Protocol) -> Config {
    Config {
        addresses: vec![addr],
        mode: Mode::Standalone,
        protocol,
        request_timeout_ms: T.as_millis() as u32,
        ..Config::default()
    }
}
