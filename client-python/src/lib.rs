//! `vshm._native`: the Python client's native module, built on the Rust
//! client end (the completion ring is read in place; replies become
//! Python objects once, straight from the archived completion).
//!
//! See `docs/python.md` ("Native module") and
//! `python/vshm/_native.pyi` for the contract with the Python layer.

mod client;
mod convert;
mod errors;
mod inner;
mod session;

use pyo3::prelude::*;

use client::NativeClient;
use errors::{ConnectionError, InvalidRequest, ResponseError, TimeoutError, VshmError};

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VshmError", py.get_type::<VshmError>())?;
    m.add("ConnectionError", py.get_type::<ConnectionError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("ResponseError", py.get_type::<ResponseError>())?;
    m.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    // `.code` of ResponseError instances made elsewhere (set per instance
    // by the native module).
    py.get_type::<ResponseError>().setattr("code", py.None())?;
    m.add_class::<NativeClient>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
