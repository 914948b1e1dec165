//! Cluster operations shared by `pubsub.rs` and `resilience.rs`; they live in
//! `vshm_tests::cluster_ops` (the soak driver uses them too) and are re-exported here.

#![allow(unused_imports)]

pub use vshm_tests::cluster_ops::{migrate_slot, node_id, wait_slot_owner, wait_slots_settled};
