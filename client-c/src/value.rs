//! Values: zero-copy accessors over archived replies.

use super::*;

// ===========================================================================
// Values

/// Value types (`vshm_value_type`).
pub const VSHM_TYPE_INVALID: c_int = -1;
pub const VSHM_TYPE_NIL: c_int = 0;
pub const VSHM_TYPE_INT: c_int = 1;
/// Bulk string (binary safe).
pub const VSHM_TYPE_STRING: c_int = 2;
/// Simple string / status ("OK").
pub const VSHM_TYPE_STATUS: c_int = 3;
/// An error nested in an aggregate (pipeline or EXEC results).
pub const VSHM_TYPE_ERROR: c_int = 4;
pub const VSHM_TYPE_ARRAY: c_int = 5;
pub const VSHM_TYPE_MAP: c_int = 6;
pub const VSHM_TYPE_SET: c_int = 7;
pub const VSHM_TYPE_DOUBLE: c_int = 8;
pub const VSHM_TYPE_BOOL: c_int = 9;
/// Big number: decimal digits as a string.
pub const VSHM_TYPE_BIGNUM: c_int = 10;
/// Verbatim string: text plus a 3-byte format.
pub const VSHM_TYPE_VERBATIM: c_int = 11;
/// Push message: kind plus elements.
pub const VSHM_TYPE_PUSH: c_int = 12;
/// A value with attributes: the data plus attribute pairs.
pub const VSHM_TYPE_ATTRIBUTE: c_int = 13;

pub(crate) fn value_ptr(v: &ArchivedValue) -> *const vshm_value {
    (v as *const ArchivedValue).cast()
}

pub(crate) unsafe fn value<'a>(v: *const vshm_value) -> Result<&'a ArchivedValue, Error> {
    if v.is_null() {
        return Err(Error::arg("vshm_value is NULL"));
    }
    if !(v as usize).is_multiple_of(std::mem::align_of::<ArchivedValue>()) {
        return Err(Error::arg("vshm_value pointer is misaligned"));
    }
    // SAFETY: per the contract, a pointer obtained from a live reply's
    // accessors: it points at a validated ArchivedValue in the reply.
    Ok(unsafe { &*v.cast::<ArchivedValue>() })
}

pub(crate) fn type_of(v: &ArchivedValue) -> c_int {
    match v {
        ArchivedValue::Nil => VSHM_TYPE_NIL,
        ArchivedValue::Int(_) => VSHM_TYPE_INT,
        ArchivedValue::Bulk(_) => VSHM_TYPE_STRING,
        ArchivedValue::Simple(_) => VSHM_TYPE_STATUS,
        ArchivedValue::Error(_) => VSHM_TYPE_ERROR,
        ArchivedValue::Array(_) => VSHM_TYPE_ARRAY,
        ArchivedValue::Map(_) => VSHM_TYPE_MAP,
        ArchivedValue::Set(_) => VSHM_TYPE_SET,
        ArchivedValue::Double(_) => VSHM_TYPE_DOUBLE,
        ArchivedValue::Boolean(_) => VSHM_TYPE_BOOL,
        ArchivedValue::BigNumber(_) => VSHM_TYPE_BIGNUM,
        ArchivedValue::Verbatim { .. } => VSHM_TYPE_VERBATIM,
        ArchivedValue::Push { .. } => VSHM_TYPE_PUSH,
        ArchivedValue::Attribute { .. } => VSHM_TYPE_ATTRIBUTE,
    }
}

pub(crate) const TYPE_NAMES: [&CStr; 14] = [
    c"nil",
    c"int",
    c"string",
    c"status",
    c"error",
    c"array",
    c"map",
    c"set",
    c"double",
    c"bool",
    c"bignum",
    c"verbatim",
    c"push",
    c"attribute",
];

pub(crate) fn wrong_type(v: &ArchivedValue, want: &str) -> Error {
    let t = type_of(v) as usize;
    Error::new(
        VSHM_ERR_WRONG_TYPE,
        format!("value is {}, not {want}", TYPE_NAMES[t].to_string_lossy()),
    )
}

/// The type of a value: one of VSHM_TYPE_*; VSHM_TYPE_INVALID for NULL.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_type(v: *const vshm_value) -> c_int {
    // SAFETY: value contract forwarded.
    guard_value(VSHM_TYPE_INVALID, || Ok(type_of(unsafe { value(v)? })))
}

/// A static name for a VSHM_TYPE_* ("string", "array", ...); "invalid"
/// for anything else.
#[no_mangle]
pub extern "C" fn vshm_type_name(t: c_int) -> *const c_char {
    usize::try_from(t)
        .ok()
        .and_then(|i| TYPE_NAMES.get(i))
        .map_or(c"invalid".as_ptr(), |n| n.as_ptr())
}

pub(crate) fn write_out<T>(out: *mut T, v: T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::arg(format!("{what} is NULL")));
    }
    // SAFETY: non-null and writable per the contract.
    unsafe { out.write(v) };
    Ok(())
}

/// VSHM_TYPE_INT: `*out` = the integer. Else VSHM_ERR_WRONG_TYPE.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_integer(v: *const vshm_value, out: *mut i64) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Int(i) => write_out(out, i.to_native(), "out"),
            _ => Err(wrong_type(v, "int")),
        }
    })
}

/// VSHM_TYPE_DOUBLE: `*out` = the double. Else VSHM_ERR_WRONG_TYPE.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_double(v: *const vshm_value, out: *mut f64) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Double(d) => write_out(out, d.to_native(), "out"),
            _ => Err(wrong_type(v, "double")),
        }
    })
}

/// VSHM_TYPE_BOOL: `*out` = the boolean. Else VSHM_ERR_WRONG_TYPE.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_bool(v: *const vshm_value, out: *mut bool) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Boolean(b) => write_out(out, *b, "out"),
            _ => Err(wrong_type(v, "bool")),
        }
    })
}

pub(crate) fn string_of(v: &ArchivedValue) -> Option<&[u8]> {
    match v {
        ArchivedValue::Bulk(s)
        | ArchivedValue::Simple(s)
        | ArchivedValue::Error(s)
        | ArchivedValue::BigNumber(s) => Some(s.as_slice()),
        ArchivedValue::Verbatim { text, .. } => Some(text.as_slice()),
        _ => None,
    }
}

/// String-like values (STRING, STATUS, ERROR, BIGNUM, VERBATIM text):
/// `*ptr` = the bytes, `*len` = their length. ZERO COPY: `*ptr` points into
/// the reply (into the shared ring while the reply is in the ring), is NOT
/// NUL-terminated, and is valid until the reply is freed or detached.
/// Use `vshm_value_strdup` for an owned C string. Else VSHM_ERR_WRONG_TYPE.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_string(
    v: *const vshm_value,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        let s = string_of(v).ok_or_else(|| wrong_type(v, "a string"))?;
        if ptr.is_null() || len.is_null() {
            return Err(Error::arg("ptr or len is NULL"));
        }
        write_out(ptr, s.as_ptr().cast::<c_char>(), "ptr")?;
        write_out(len, s.len(), "len")
    })
}

/// VSHM_TYPE_VERBATIM: the format (3 bytes, e.g. "txt"), as
/// `vshm_value_string` (borrowed, not NUL-terminated).
#[no_mangle]
pub unsafe extern "C" fn vshm_value_verbatim_format(
    v: *const vshm_value,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Verbatim { format, .. } => {
                write_out(ptr, format.as_ptr().cast::<c_char>(), "ptr")?;
                write_out(len, format.len(), "len")
            }
            _ => Err(wrong_type(v, "verbatim")),
        }
    })
}

/// VSHM_TYPE_PUSH: the push kind ("message", ...), as `vshm_value_string`.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_push_kind(
    v: *const vshm_value,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> vshm_status {
    guard(|| {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Push { kind, .. } => {
                write_out(ptr, kind.as_ptr().cast::<c_char>(), "ptr")?;
                write_out(len, kind.len(), "len")
            }
            _ => Err(wrong_type(v, "push")),
        }
    })
}

/// An owned, NUL-terminated copy of a string-like value (see
/// `vshm_value_string`; embedded NULs are kept, so use the length from
/// there for binary data). Free it with `vshm_string_free` (or `free`).
/// NULL on error (wrong type, or out of memory).
#[no_mangle]
pub unsafe extern "C" fn vshm_value_strdup(v: *const vshm_value) -> *mut c_char {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        let s = string_of(v).ok_or_else(|| wrong_type(v, "a string"))?;
        // SAFETY: plain allocation of len + 1 bytes.
        let p = unsafe { libc::malloc(s.len() + 1) }.cast::<u8>();
        if p.is_null() {
            return Err(Error::new(VSHM_ERR_INTERNAL, "out of memory"));
        }
        // SAFETY: p has len + 1 writable bytes; s is len readable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            *p.add(s.len()) = 0;
        }
        Ok(p.cast())
    })
}

/// Free a string from `vshm_value_strdup`. NULL is accepted.
#[no_mangle]
pub unsafe extern "C" fn vshm_string_free(s: *mut c_char) {
    guard_value((), || {
        // SAFETY: s came from vshm_value_strdup (malloc) or is NULL.
        unsafe { libc::free(s.cast()) };
        Ok(())
    })
}

/// Elements of ARRAY, SET and PUSH values; pairs of MAP and ATTRIBUTE
/// values (the attributes); bytes of string-like values; 0 otherwise and
/// for NULL.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_len(v: *const vshm_value) -> usize {
    guard_value(0, || {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        Ok(match v {
            ArchivedValue::Array(a)
            | ArchivedValue::Set(a)
            | ArchivedValue::Push { data: a, .. } => a.len(),
            ArchivedValue::Map(m) | ArchivedValue::Attribute { attributes: m, .. } => m.len(),
            other => string_of(other).map_or(0, <[u8]>::len),
        })
    })
}

/// Element `i` of an ARRAY, SET or PUSH value (borrowed from the reply);
/// NULL if `i` is out of range or the value has no elements (see
/// `vshm_last_error_message`).
#[no_mangle]
pub unsafe extern "C" fn vshm_value_element(v: *const vshm_value, i: usize) -> *const vshm_value {
    guard_value(std::ptr::null(), || {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Array(a)
            | ArchivedValue::Set(a)
            | ArchivedValue::Push { data: a, .. } => a
                .get(i)
                .map(value_ptr)
                .ok_or_else(|| Error::arg(format!("index {i} out of range (len {})", a.len()))),
            _ => Err(wrong_type(v, "an array, set or push")),
        }
    })
}

pub(crate) fn pair(v: *const vshm_value, i: usize, key: bool) -> Result<*const vshm_value, Error> {
    // SAFETY: value contract forwarded from the callers.
    let v = unsafe { value(v)? };
    match v {
        ArchivedValue::Map(m) | ArchivedValue::Attribute { attributes: m, .. } => m
            .get(i)
            .map(|p| value_ptr(if key { &p.key } else { &p.value }))
            .ok_or_else(|| Error::arg(format!("index {i} out of range (len {})", m.len()))),
        _ => Err(wrong_type(v, "a map or attribute")),
    }
}

/// Key of pair `i` of a MAP value (or of an ATTRIBUTE value's
/// attributes); borrowed; NULL if out of range or not a map.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_map_key(v: *const vshm_value, i: usize) -> *const vshm_value {
    guard_value(std::ptr::null(), || pair(v, i, true))
}

/// Value of pair `i` of a MAP value (or of an ATTRIBUTE value's
/// attributes); borrowed; NULL if out of range or not a map.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_map_value(v: *const vshm_value, i: usize) -> *const vshm_value {
    guard_value(std::ptr::null(), || pair(v, i, false))
}

/// The data of an ATTRIBUTE value (borrowed); NULL for other types.
#[no_mangle]
pub unsafe extern "C" fn vshm_value_attribute_data(v: *const vshm_value) -> *const vshm_value {
    guard_value(std::ptr::null(), || {
        // SAFETY: value contract forwarded.
        let v = unsafe { value(v)? };
        match v {
            ArchivedValue::Attribute { data, .. } => Ok(value_ptr(data)),
            _ => Err(wrong_type(v, "attribute")),
        }
    })
}
