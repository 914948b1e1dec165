//! Batches: pipelines and transactions.

use super::*;

// ===========================================================================
// Batches

/// Create an empty batch: a pipeline (`atomic` = 0: the commands are sent
/// together, each gets its own result, and the reply is an array of them,
/// errors in place) or a transaction (`atomic` != 0: MULTI/EXEC, all keys
/// in one slot). `*out` is owned by the caller: free it with
/// `vshm_batch_free`. A batch is plain data: build it from one thread at a
/// time; it can be executed any number of times.
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_new(atomic: c_int, out: *mut *mut vshm_batch) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        let p = handle::alloc::<vshm_batch>();
        // SAFETY: p is not live: nobody else reads it.
        *lock(&unsafe { &*p }.data) = Some(BatchData {
            atomic: atomic != 0,
            ..BatchData::default()
        });
        handle::publish(p);
        // SAFETY: out checked non-null above.
        unsafe { *out = p };
        Ok(())
    })
}

pub(crate) fn with_batch<T>(
    b: *const vshm_batch,
    f: impl FnOnce(&mut BatchData) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: a pointer from this library per the contract.
    let h = unsafe { handle::get(b)? };
    let mut g = lock(&h.data);
    let d = g
        .as_mut()
        .ok_or_else(|| Error::arg("vshm_batch was already freed"))?;
    f(d)
}

/// Append one command (argv style, as `vshm_command_argv`; copied into the
/// batch).
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_add_argv(
    b: *mut vshm_batch,
    argc: c_int,
    argv: *const *const c_char,
    argvlen: *const usize,
) -> vshm_status {
    guard(|| {
        // SAFETY: argv contract forwarded.
        let args = unsafe { self::argv(argc, argv, argvlen)? };
        with_batch(b, |d| {
            d.commands.push(args.iter().map(|a| a.to_vec()).collect());
            Ok(())
        })
    })
}

/// Transactions: WATCH `key` (`len` bytes, copied) before MULTI; if a
/// watched key changes before EXEC, the batch fails with
/// VSHM_ERR_EXEC_ABORT. `len` = `VSHM_NUL_TERMINATED`: `key` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_watch(
    b: *mut vshm_batch,
    key: *const c_char,
    len: usize,
) -> vshm_status {
    guard(|| {
        if key.is_null() && len != 0 {
            return Err(Error::arg("key is NULL"));
        }
        let len = if len == crate::VSHM_NUL_TERMINATED {
            // SAFETY: non-null (checked above) and, with this length, a
            // NUL-terminated string per the contract.
            unsafe { std::ffi::CStr::from_ptr(key) }.to_bytes().len()
        } else {
            len
        };
        if len > MAX_ARG {
            return Err(Error::arg("len is too large"));
        }
        let k = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: key points at len bytes per the contract.
            unsafe { std::slice::from_raw_parts(key.cast::<u8>(), len) }.to_vec()
        };
        with_batch(b, |d| {
            if !d.atomic {
                return Err(Error::arg("WATCH needs an atomic batch (a transaction)"));
            }
            d.watch.push(k);
            Ok(())
        })
    })
}

/// Number of commands in the batch (0 for an invalid handle).
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_len(b: *const vshm_batch) -> usize {
    guard_value(0, || with_batch(b, |d| Ok(d.commands.len())))
}

/// Remove every command and watched key (the kind stays).
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_clear(b: *mut vshm_batch) -> vshm_status {
    guard(|| {
        with_batch(b, |d| {
            d.commands.clear();
            d.watch.clear();
            Ok(())
        })
    })
}

/// Free a batch. NULL is accepted. Freeing it twice is
/// VSHM_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_free(b: *mut vshm_batch) -> vshm_status {
    guard(|| {
        if b.is_null() {
            return Ok(());
        }
        // SAFETY: a pointer from this library per the contract.
        let h = unsafe { handle::retire(b)? };
        drop(lock(&h.data).take());
        handle::recycle(b);
        Ok(())
    })
}

pub(crate) fn batch_op<'a>(d: &'a BatchData, refs: &'a [Vec<ArgRef<'a>>]) -> Op<ArgsRef<'a>> {
    Op::Batch {
        atomic: d.atomic,
        watch: d.watch.clone(),
        commands: refs.iter().map(|r| ArgsRef(r)).collect(),
    }
}

/// Run a batch and wait: on VSHM_OK `*out` is an array reply with one
/// element per command (a failed command's element is of type
/// VSHM_TYPE_ERROR, unless VSHM_FLAG_RAISE_ON_ERROR is set: then the batch
/// fails with the first error). `opts` may be NULL. Empty batches are
/// VSHM_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_exec(
    c: *mut vshm_client,
    b: *const vshm_batch,
    opts: *const vshm_request_options,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        with_batch(b, |d| {
            if d.commands.is_empty() {
                return Err(Error::arg("the batch is empty"));
            }
            let refs: Vec<Vec<ArgRef<'_>>> = d
                .commands
                .iter()
                .map(|c| c.iter().map(|a| ArgRef(a)).collect())
                .collect();
            run_sync(&inner, &batch_op(d, &refs), &o, out)
        })
    })
}

/// Submit a batch without waiting (completion as for `vshm_submit_argv`).
#[no_mangle]
pub unsafe extern "C" fn vshm_batch_submit(
    c: *mut vshm_client,
    b: *const vshm_batch,
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
        let cid = with_batch(b, |d| {
            if d.commands.is_empty() {
                return Err(Error::arg("the batch is empty"));
            }
            let refs: Vec<Vec<ArgRef<'_>>> = d
                .commands
                .iter()
                .map(|c| c.iter().map(|a| ArgRef(a)).collect())
                .collect();
            submit_async(&inner, &batch_op(d, &refs), &o, cb, userdata)
        })?;
        write_id(id, cid);
        Ok(())
    })
}
