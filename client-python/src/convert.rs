//! Conversions: Python arguments to command arguments, and archived
//! replies (read in place from the completion record) to Python objects.

use std::borrow::Cow;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PySet, PyString,
    PyTuple,
};
use vshm_protocol::client::Reply;
use vshm_protocol::msg::{ArchivedCompletion, ArchivedValue, Route};

use crate::errors::{archived_error, response_error, value_error, VshmError};

// ---------------------------------------------------------------------------
// Arguments

/// Largest single argument accepted (Redis's own bulk limit).
const MAX_ARG: usize = 512 * 1024 * 1024;

/// The items of a tuple or list argument (kept alive while their bytes
/// are borrowed).
pub(crate) fn items<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(t) = obj.downcast::<PyTuple>() {
        Ok(t.iter().collect())
    } else if let Ok(l) = obj.downcast::<PyList>() {
        Ok(l.iter().collect())
    } else {
        Err(PyTypeError::new_err(format!(
            "{what} must be a tuple or a list, not {}",
            type_name(obj)
        )))
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// One argument as redis-py encodes it: bytes-like as is, str as UTF-8,
/// int as its decimal digits, float as its repr. bool and anything else
/// is a TypeError. bytes are borrowed (immutable); the rest is copied.
pub(crate) fn arg<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    let out: Cow<'a, [u8]> = if let Ok(b) = obj.downcast::<PyBytes>() {
        Cow::Borrowed(b.as_bytes())
    } else if let Ok(s) = obj.downcast::<PyString>() {
        Cow::Owned(s.to_cow()?.into_owned().into_bytes())
    } else if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "invalid argument of type bool: convert to bytes, str, int or float first",
        ));
    } else if obj.is_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(i) => Cow::Owned(i.to_string().into_bytes()),
            Err(_) => Cow::Owned(obj.str()?.to_cow()?.into_owned().into_bytes()),
        }
    } else if obj.is_instance_of::<PyFloat>() {
        Cow::Owned(obj.repr()?.to_cow()?.into_owned().into_bytes())
    } else if let Ok(b) = obj.downcast::<PyByteArray>() {
        Cow::Owned(b.to_vec())
    } else if obj.is_instance_of::<PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        Cow::Owned(b.downcast::<PyBytes>()?.as_bytes().to_vec())
    } else {
        return Err(PyTypeError::new_err(format!(
            "invalid argument of type {}: expected bytes, bytearray, memoryview, str, int or float",
            type_name(obj)
        )));
    };
    if out.len() > MAX_ARG {
        return Err(value_error(format!(
            "argument of {} bytes is larger than the 512 MiB limit",
            out.len()
        )));
    }
    Ok(out)
}

/// The arguments of one command (non-empty).
pub(crate) fn args<'a>(items: &'a [Bound<'_, PyAny>]) -> PyResult<Vec<Cow<'a, [u8]>>> {
    if items.is_empty() {
        return Err(value_error(
            "empty command: at least the command name is needed",
        ));
    }
    items.iter().map(arg).collect()
}

/// A list of plain byte strings (keys, channels, script arguments),
/// owned.
pub(crate) fn byte_list(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<Vec<u8>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    items(obj, what)?
        .iter()
        .map(|o| arg(o).map(Cow::into_owned))
        .collect()
}

/// A timeout in seconds: None, or a positive finite number.
pub(crate) fn timeout(t: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            // At least 1 ms: the protocol counts whole milliseconds.
            Ok(Some(
                Duration::from_secs_f64(s).max(Duration::from_millis(1)),
            ))
        }
        Some(s) => Err(value_error(format!(
            "{what} must be a positive number of seconds (got {s})"
        ))),
    }
}

/// A route: None or "auto", "all_nodes", "all_primaries", "random";
/// ("key", key[, replica]), ("slot", slot[, replica]), ("address", host, port).
pub(crate) fn route(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Route> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Route::Auto);
    };
    if let Ok(s) = obj.downcast::<PyString>() {
        return match s.to_cow()?.replace('-', "_").as_str() {
            "auto" => Ok(Route::Auto),
            "all_nodes" => Ok(Route::AllNodes),
            "all_primaries" => Ok(Route::AllPrimaries),
            "random" => Ok(Route::Random),
            other => Err(value_error(format!(
                "unknown route {other:?} (auto, all_nodes, all_primaries, random, or a tuple)"
            ))),
        };
    }
    let t = obj.downcast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err("route must be None, a str or a tuple such as (\"key\", b\"k\")")
    })?;
    let kind: String = t.get_item(0)?.extract()?;
    let replica = |i: usize| -> PyResult<bool> {
        if t.len() > i {
            t.get_item(i)?.extract()
        } else {
            Ok(false)
        }
    };
    match (kind.as_str(), t.len()) {
        ("key", 2 | 3) => Ok(Route::SlotKey {
            key: arg(&t.get_item(1)?)?.into_owned(),
            replica: replica(2)?,
        }),
        ("slot", 2 | 3) => {
            let slot: u16 = t.get_item(1)?.extract()?;
            if slot >= 16384 {
                return Err(value_error(format!("slot {slot} out of range 0..16383")));
            }
            Ok(Route::SlotId {
                slot,
                replica: replica(2)?,
            })
        }
        ("address", 3) => Ok(Route::Address {
            host: t.get_item(1)?.extract()?,
            port: t.get_item(2)?.extract()?,
        }),
        _ => Err(PyValueError::new_err(
            "route tuple must be (\"key\", key[, replica]), (\"slot\", n[, replica]) or (\"address\", host, port)",
        )),
    }
}

// ---------------------------------------------------------------------------
// Replies

/// Deeper replies are refused (the converter recurses).
const MAX_DEPTH: usize = 1000;

/// How strings are returned.
pub(crate) struct Decode {
    pub on: bool,
    pub encoding: String,
    utf8: bool,
}

impl Decode {
    pub fn new(py: Python<'_>, on: bool, encoding: &str) -> PyResult<Decode> {
        // Check the encoding exists now rather than at the first reply.
        PyModule::import(py, "codecs")?.call_method1("lookup", (encoding,))?;
        let norm = encoding.to_ascii_lowercase().replace('_', "-");
        Ok(Decode {
            on,
            encoding: encoding.to_string(),
            utf8: norm == "utf-8" || norm == "utf8",
        })
    }

    /// A string-like value: bytes, or str when decoding.
    pub fn string<'py>(&self, py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if !self.on {
            return Ok(PyBytes::new(py, b).into_any());
        }
        if self.utf8 {
            if let Ok(s) = std::str::from_utf8(b) {
                return Ok(PyString::new(py, s).into_any());
            }
        }
        // Other encodings, and invalid UTF-8 (raises UnicodeDecodeError).
        let bytes = PyBytes::new(py, b);
        Ok(PyString::from_object(&bytes, &self.encoding, "strict")?.into_any())
    }
}

/// A completion: its value, or the error it carries (raised).
/// `raise_nested`: a top-level error value is raised too (single
/// commands); batches keep errors in place.
pub(crate) fn completion<'py>(
    py: Python<'py>,
    r: &Reply,
    d: &Decode,
) -> PyResult<Bound<'py, PyAny>> {
    match r.completion() {
        ArchivedCompletion::Ok(ArchivedValue::Error(m)) => {
            Err(response_error(py, &String::from_utf8_lossy(m.as_slice())))
        }
        ArchivedCompletion::Ok(v) | ArchivedCompletion::Push(v) => value(py, v, d, 0),
        ArchivedCompletion::Err(e) => Err(archived_error(py, e)),
    }
}

/// A push message as a list: [kind, channel, data] ("message",
/// "smessage") or [kind, pattern, channel, data] ("pmessage", as redis-py).
pub(crate) fn push<'py>(py: Python<'py>, r: &Reply, d: &Decode) -> PyResult<Bound<'py, PyAny>> {
    let ArchivedCompletion::Push(ArchivedValue::Push { kind, data }) = r.completion() else {
        return completion(py, r, d);
    };
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(d.string(py, kind.as_slice())?);
    for v in data.iter() {
        out.push(value(py, v, d, 1)?);
    }
    // The core delivers [channel, pattern, payload]; redis-py (and the
    // server) order a pmessage as [pattern, channel, payload].
    if kind.as_slice() == b"pmessage" && out.len() == 4 {
        out.swap(1, 2);
    }
    Ok(PyList::new(py, out)?.into_any())
}

fn big_number<'py>(py: Python<'py>, s: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let text = std::str::from_utf8(s).map_err(|_| VshmError::new_err("big number is not ASCII"))?;
    if let Ok(i) = text.parse::<i64>() {
        return Ok(PyInt::new(py, i).into_any());
    }
    py.get_type::<PyInt>().call1((text,))
}

/// One value, recursively.
pub(crate) fn value<'py>(
    py: Python<'py>,
    v: &ArchivedValue,
    d: &Decode,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(VshmError::new_err(format!(
            "reply nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let list = |items: &[ArchivedValue]| -> PyResult<Vec<Bound<'py, PyAny>>> {
        items.iter().map(|x| value(py, x, d, depth + 1)).collect()
    };
    Ok(match v {
        ArchivedValue::Nil => py.None().into_bound(py),
        ArchivedValue::Int(i) => PyInt::new(py, i.to_native()).into_any(),
        ArchivedValue::Bulk(s) | ArchivedValue::Simple(s) => d.string(py, s.as_slice())?,
        ArchivedValue::Verbatim { text, .. } => d.string(py, text.as_slice())?,
        ArchivedValue::Error(m) => {
            let e = response_error(py, &String::from_utf8_lossy(m.as_slice()));
            e.into_value(py).into_bound(py).into_any()
        }
        ArchivedValue::Array(a) | ArchivedValue::Push { data: a, .. } => {
            PyList::new(py, list(a.as_slice())?)?.into_any()
        }
        ArchivedValue::Set(a) => {
            let items = list(a.as_slice())?;
            match PySet::new(py, &items) {
                Ok(s) => s.into_any(),
                // An unhashable element: a list instead.
                Err(_) => PyList::new(py, items)?.into_any(),
            }
        }
        ArchivedValue::Map(m) => {
            let mut pairs = Vec::with_capacity(m.len());
            for p in m.iter() {
                pairs.push((
                    value(py, &p.key, d, depth + 1)?,
                    value(py, &p.value, d, depth + 1)?,
                ));
            }
            let dict = PyDict::new(py);
            let mut ok = true;
            for (k, v) in &pairs {
                if dict.set_item(k, v).is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                dict.into_any()
            } else {
                // An unhashable key: a list of (key, value) pairs instead.
                let tuples: Vec<Bound<'py, PyTuple>> = pairs
                    .into_iter()
                    .map(|(k, v)| PyTuple::new(py, [k, v]))
                    .collect::<PyResult<_>>()?;
                PyList::new(py, tuples)?.into_any()
            }
        }
        ArchivedValue::Double(f) => PyFloat::new(py, f.to_native()).into_any(),
        ArchivedValue::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        ArchivedValue::BigNumber(s) => big_number(py, s.as_slice())?,
        ArchivedValue::Attribute { data, .. } => value(py, data, d, depth + 1)?,
    })
}
