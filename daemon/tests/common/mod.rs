//! Helpers for the vshmd tests: the shared ones of `vshm_tests::vshmd`
//! plus the binaries of this package.
#![allow(dead_code)]

pub use vshm_tests::vshmd::*;

pub const VSHMD: &str = env!("CARGO_BIN_EXE_vshmd");
pub const WORKER: &str = env!("CARGO_BIN_EXE_vshm-demo-worker");
