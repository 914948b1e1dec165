//! Scripts (EVALSHA with EVAL fallback) and cluster-wide SCAN.

use super::*;

// ===========================================================================
// Scripts and cluster scan

// The argv-style pieces of a script, as the C functions take them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn script_op(
    code: *const c_char,
    code_len: usize,
    nkeys: c_int,
    keys: *const *const c_char,
    keylens: *const usize,
    nargs: c_int,
    args: *const *const c_char,
    arglens: *const usize,
) -> Result<Op<ArgsRef<'static>>, Error> {
    if code.is_null() || code_len == 0 || code_len > MAX_ARG {
        return Err(Error::arg("code is NULL, empty or too large"));
    }
    if nkeys < 0 || nargs < 0 {
        return Err(Error::arg("nkeys and nargs must be >= 0"));
    }
    // SAFETY: code points at code_len bytes per the contract.
    let code = unsafe { std::slice::from_raw_parts(code.cast::<u8>(), code_len) }.to_vec();
    Ok(Op::Script {
        code,
        // SAFETY: forwarded contract (nkeys / nargs entries).
        keys: unsafe { owned_list(nkeys, keys, keylens)? },
        // SAFETY: as above.
        args: unsafe { owned_list(nargs, args, arglens)? },
    })
}

/// Run a Lua script: `code` (`code_len` bytes), `nkeys` keys and `nargs`
/// arguments (argv style; the length arrays may be NULL for
/// NUL-terminated strings). The core runs it by its SHA1 (EVALSHA) and
/// loads it on NOSCRIPT, caching the hash. Routed by the first key
/// (cluster). `opts` may be NULL. Results as for `vshm_command_argv`.
#[no_mangle]
pub unsafe extern "C" fn vshm_script(
    c: *mut vshm_client,
    code: *const c_char,
    code_len: usize,
    nkeys: c_int,
    keys: *const *const c_char,
    keylens: *const usize,
    nargs: c_int,
    args: *const *const c_char,
    arglens: *const usize,
    opts: *const vshm_request_options,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        let op = script_op(code, code_len, nkeys, keys, keylens, nargs, args, arglens)?;
        run_sync(&inner, &op, &o, out)
    })
}

/// `vshm_script` without waiting (completion as for `vshm_submit_argv`).
#[no_mangle]
pub unsafe extern "C" fn vshm_submit_script(
    c: *mut vshm_client,
    code: *const c_char,
    code_len: usize,
    nkeys: c_int,
    keys: *const *const c_char,
    keylens: *const usize,
    nargs: c_int,
    args: *const *const c_char,
    arglens: *const usize,
    opts: *const vshm_request_options,
    cb: vshm_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> vshm_status {
    guard(|| {
        write_id(id, 0);
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        let op = script_op(code, code_len, nkeys, keys, keylens, nargs, args, arglens)?;
        let cid = submit_async(&inner, &op, &o, cb, userdata)?;
        write_id(id, cid);
        Ok(())
    })
}

/// One step of a SCAN over the whole keyspace (every node of a cluster;
/// the server's SCAN on a standalone server). Start with `cursor` 0 and
/// pass back `*next_cursor` until it is 0. `pattern` (`pattern_len`
/// bytes; NULL: all keys), `count` (a hint; 0: the server's default) and
/// `type` (NUL-terminated, e.g. "string"; NULL: any) filter as for SCAN.
/// On VSHM_OK `*out` is the reply `[next cursor (int), [keys...]]`. Keys
/// may repeat after a failover or slot move. `opts` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn vshm_scan(
    c: *mut vshm_client,
    cursor: u64,
    pattern: *const c_char,
    pattern_len: usize,
    count: u32,
    type_: *const c_char,
    opts: *const vshm_request_options,
    next_cursor: *mut u64,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        if next_cursor.is_null() {
            return Err(Error::arg("next_cursor is NULL"));
        }
        // SAFETY: non-null, writable per the contract.
        unsafe { *next_cursor = 0 };
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        if (pattern.is_null() && pattern_len != 0) || pattern_len > MAX_ARG {
            return Err(Error::arg("pattern is NULL or too large"));
        }
        let pattern = (!pattern.is_null()).then(|| {
            // SAFETY: pattern points at pattern_len bytes per the contract.
            unsafe { std::slice::from_raw_parts(pattern.cast::<u8>(), pattern_len) }.to_vec()
        });
        // SAFETY: a C string per the contract, or NULL.
        let type_filter = unsafe { cstr(type_, "type")? }.map(|t| t.as_bytes().to_vec());
        let op = Op::ClusterScan {
            cursor,
            pattern,
            count,
            type_filter,
        };
        run_sync(&inner, &op, &o, out)?;
        // SAFETY: *out is the reply run_sync just stored.
        let v = unsafe { vshm_reply_value(*out) };
        let mut next = 0i64;
        // SAFETY: v is the reply's root value; element 0 is the cursor.
        unsafe { vshm_value_integer(vshm_value_element(v, 0), &mut next) };
        // SAFETY: checked non-null above.
        unsafe { *next_cursor = next as u64 };
        Ok(())
    })
}
