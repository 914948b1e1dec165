//! Asynchronous requests: submit, poll, wait, take, the event fd.

use super::*;

// ===========================================================================
// Asynchronous requests

/// Completion callback of an asynchronous request. Runs in the thread that
/// calls `vshm_poll`, `vshm_wait`, `vshm_take` or `vshm_free` (never in a
/// library thread). `reply` is OWNED BY THE CALLBACK: free it with
/// `vshm_reply_free`, now or later (or `vshm_reply_detach` it to keep it
/// long: a held reply pins completion-ring space, see ZERO-COPY REPLIES).
/// It is NULL when `status` is not VSHM_OK; the error's message is then in
/// `vshm_last_error_message()` during the callback. The callback may call
/// any vshm function, including submitting more requests; what it submits
/// is held back and handed to the core in batches (16 at most) when the
/// callbacks of that call return, or earlier when the thread waits or
/// polls through vshm. So a callback must not block on anything else (a
/// condition variable, another thread) until a request it submitted
/// completes. A callback that frees the client (`vshm_free`) must be the
/// last thing that call does with it: later callbacks of the same
/// `vshm_poll`/`vshm_wait` still receive the freed pointer and must not
/// use it.
pub type vshm_callback = Option<
    unsafe extern "C" fn(
        client: *mut vshm_client,
        id: u64,
        status: vshm_status,
        reply: *mut vshm_reply,
        userdata: *mut c_void,
    ),
>;

pub(crate) fn submit_async(
    inner: &ClientInner,
    op: &Op<ArgsRef<'_>>,
    o: &ReqOpts,
    cb: vshm_callback,
    userdata: *mut c_void,
) -> Result<u64, Error> {
    let (conn, seq) = inner.conn()?;
    let mut cid = 0;
    let timeout = o.timeout_for(&conn, op);
    let deadline = Instant::now() + conn.wait_bound_for(op, timeout);
    // Set when `vshm_free` drained the pending requests before this one's
    // entry was in: its callback would never run.
    let mut freed = false;
    let r = conn.submit_queued(op, &o.route, timeout, o.flags, &mut |id| {
        cid = conn::c_id(seq, id);
        let mut p = lock(&inner.pending);
        // `close` raises the flag before it drains under this lock: either
        // it drains this entry (completed with CLOSING) or we see the flag.
        if inner.handle.is_closed() {
            freed = true;
            return;
        }
        p.entries.insert(
            cid,
            Entry {
                cb,
                userdata: userdata as usize,
                seq,
                deadline,
            },
        );
    });
    if let Err(e) = r {
        if cid != 0 {
            lock(&inner.pending).entries.remove(&cid);
        }
        return Err(e.into());
    }
    if freed {
        return Err(Error::new(
            VSHM_ERR_CLOSING,
            "the client was freed during the submission (the request may still run; no callback)",
        ));
    }
    inner.handle.deadline().lower(deadline);
    Ok(cid)
}

pub(crate) fn write_id(id_out: *mut u64, id: u64) {
    if !id_out.is_null() {
        // SAFETY: non-null, a writable u64 per the contract.
        unsafe { *id_out = id };
    }
}

/// Submit one command without waiting. Returns at once (unless the
/// submission ring is full: then it waits for space up to the request
/// timeout, VSHM_ERR_OVERLOADED after that).
///
/// `*id` (if `id` is not NULL) receives the request id (nonzero). With a
/// callback, the completion is delivered to it (see `vshm_callback`) from
/// `vshm_poll`/`vshm_wait`; with `cb` NULL, fetch it with `vshm_take(id)`.
/// Every submitted request completes exactly once (reply or error).
#[no_mangle]
pub unsafe extern "C" fn vshm_submit_argv(
    c: *mut vshm_client,
    argc: c_int,
    argv: *const *const c_char,
    argvlen: *const usize,
    opts: *const vshm_request_options,
    cb: vshm_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> vshm_status {
    guard(|| {
        write_id(id, 0);
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: argv contract forwarded.
        let args = unsafe { self::argv(argc, argv, argvlen)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        let refs: Vec<ArgRef<'_>> = args.iter().map(|a| ArgRef(a)).collect();
        let cid = submit_async(
            &inner,
            &Op::Command {
                args: ArgsRef(&refs),
            },
            &o,
            cb,
            userdata,
        )?;
        write_id(id, cid);
        Ok(())
    })
}

pub(crate) fn dispatch(c: *mut vshm_client, got: Collected) {
    // The requests the callbacks submit (typically the next one each) go
    // to the core together when the last callback returns: one batch, one
    // wake-up of the core, one write per server, as hiredis's event loop
    // sends what its callbacks queued. A callback that waits (a
    // synchronous call, `vshm_wait`) publishes them first.
    let _cork = got
        .conn
        .as_ref()
        .filter(|_| !got.done.is_empty() || !got.pushes.is_empty())
        .map(|conn| conn.cork());
    for (id, e, o) in got.done {
        let (st, r) = outcome_to_c(o, id);
        match e.cb {
            // SAFETY: a callback the caller registered, called with the
            // arguments the header documents; `r` is handed over to it.
            Some(cb) => unsafe { cb(c, id, st, r, e.userdata as *mut c_void) },
            None => {
                // SAFETY: r is a reply we just made (or NULL).
                unsafe { vshm_reply_free(r) };
            }
        }
    }
    for m in got.pushes {
        let r = new_reply(m, 0);
        match got.push_cb {
            // SAFETY: the push callback the caller registered, called with
            // the arguments the header documents; `r` is handed over to it.
            Some(cb) => unsafe { cb(c, r, got.push_userdata as *mut c_void) },
            None => {
                // SAFETY: r is a reply we just made.
                unsafe { vshm_reply_free(r) };
            }
        }
    }
}

pub(crate) fn write_count(p: *mut usize, n: usize) {
    if !p.is_null() {
        // SAFETY: non-null, a writable size_t per the contract.
        unsafe { *p = n };
    }
}

/// Deliver the completions that have arrived, without blocking: runs their
/// callbacks in this thread, and keeps callback-less ones for `vshm_take`;
/// with a push callback set, also delivers the pub/sub messages that have
/// arrived. `*completed` (if not NULL) = how many requests completed (and
/// messages were delivered) in this call. Also resets the `vshm_fd`
/// descriptor. With a push callback set and no live registration (after a
/// daemon restart, in a forked child), it opens one, so that the
/// subscriptions are renewed (a system call or two to the local daemon);
/// it fails with that error if it cannot.
#[no_mangle]
pub unsafe extern "C" fn vshm_poll(c: *mut vshm_client, completed: *mut usize) -> vshm_status {
    guard(|| {
        write_count(completed, 0);
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        inner.handle.clear_fd();
        let got = inner.collect(None);
        let n = got.count;
        // A program driven by `vshm_fd` alone renews its subscriptions
        // here after a daemon restart.
        let renewed = if n == 0 && got.push_cb.is_some() {
            renew_for_pushes(&inner).map(|_| ())
        } else {
            Ok(())
        };
        drop(inner);
        dispatch(c, got);
        write_count(completed, n);
        renewed
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Renewed {
    /// A live registration was there already.
    Live,
    /// A new one was opened (the subscriptions replayed on it).
    Opened,
    /// A new one was opened and is dead already.
    Dead,
}

/// Pushes come only through a live registration. With none (a forked
/// child's first call, a daemon restart) and no request pending (those
/// calls open one themselves), open one, replaying the subscriptions, or
/// report why it cannot be opened.
fn renew_for_pushes(inner: &ClientInner) -> Result<Renewed, Error> {
    let live = inner.handle.current().is_some_and(|(c, _)| !c.is_dead());
    if live || inner.pending_count() > 0 {
        return Ok(Renewed::Live);
    }
    let (conn, _) = inner.conn()?;
    Ok(if conn.is_dead() {
        Renewed::Dead
    } else {
        Renewed::Opened
    })
}

/// Like `vshm_poll`, but first waits up to `timeout_ms` (>= 0) for at
/// least one asynchronous request to complete (or, with a push callback
/// set, a pub/sub message to arrive). Returns VSHM_ERR_TIMEOUT if nothing
/// came in time; VSHM_OK at once, with `*completed` = 0, if no
/// asynchronous request is pending and no push callback is set.
#[no_mangle]
pub unsafe extern "C" fn vshm_wait(
    c: *mut vshm_client,
    timeout_ms: c_int,
    completed: *mut usize,
) -> vshm_status {
    guard(|| {
        write_count(completed, 0);
        if timeout_ms < 0 {
            return Err(Error::arg(format!(
                "timeout_ms must be >= 0 (got {timeout_ms})"
            )));
        }
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        inner.handle.clear_fd();
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        let waits_for_pushes = inner.has_push_callback();
        let mut got = inner.collect(None);
        while got.count == 0
            && (inner.pending_count() > 0 || waits_for_pushes)
            && Instant::now() < deadline
        {
            // With no live registration `collect` returns at once: open
            // one rather than spin until the deadline.
            if waits_for_pushes && renew_for_pushes(&inner)? == Renewed::Dead {
                // Died again at once: do not reconnect in a tight loop.
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
            got = inner.collect(Some(deadline));
        }
        let n = got.count;
        let none_pending = inner.pending_count() == 0 && !waits_for_pushes;
        drop(inner);
        dispatch(c, got);
        write_count(completed, n);
        if n == 0 && !none_pending {
            return Err(Error::new(
                VSHM_ERR_TIMEOUT,
                "no asynchronous request completed in time",
            ));
        }
        Ok(())
    })
}

/// Fetch the outcome of a request submitted without a callback. Never
/// blocks. VSHM_PENDING: not completed yet (`*out` NULL; wait with
/// `vshm_wait` or `vshm_fd` and try again). Otherwise the request's own
/// status, with `*out` its reply (owned by the caller) on VSHM_OK, NULL
/// on errors; the id is then forgotten. An unknown id (never submitted,
/// already taken, or submitted with a callback) is
/// VSHM_ERR_INVALID_ARGUMENT. Like `vshm_poll`, may run callbacks of other
/// requests that have completed.
#[no_mangle]
pub unsafe extern "C" fn vshm_take(
    c: *mut vshm_client,
    id: u64,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        for attempt in 0..2 {
            {
                let mut p = lock(&inner.pending);
                if let Some(o) = p.taken.remove(&id) {
                    drop(p);
                    return deliver(o, id, out);
                }
                match p.entries.get(&id) {
                    Some(e) if e.cb.is_some() => {
                        return Err(Error::arg(format!(
                            "request {id} has a callback: vshm_take cannot fetch it"
                        )))
                    }
                    Some(_) if attempt == 1 => {
                        return Err(Error::new(
                            VSHM_PENDING,
                            format!("request {id} has not completed yet"),
                        ))
                    }
                    Some(_) => {}
                    // `vshm_free` on another thread dropped it (its
                    // pending requests end with CLOSING).
                    None if inner.handle.is_closed() => {
                        return Err(Error::new(VSHM_ERR_CLOSING, "the client is being freed"))
                    }
                    None => {
                        return Err(Error::arg(format!(
                            "unknown request id {id} (never submitted, or already taken)"
                        )))
                    }
                }
            }
            let got = inner.collect(None);
            dispatch(c, got);
        }
        Err(Error::new(VSHM_ERR_INTERNAL, "unreachable"))
    })
}

/// Asynchronous requests submitted and not yet completed (0 for an
/// invalid handle).
#[no_mangle]
pub unsafe extern "C" fn vshm_pending(c: *const vshm_client) -> usize {
    guard_value(0, || {
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        Ok(inner.pending_count())
    })
}

/// A descriptor for event loops (epoll, poll, libuv): it becomes readable
/// when completions arrive for this client, when a pending request's
/// deadline passes (`vshm_poll` then completes it with VSHM_ERR_TIMEOUT),
/// or when the client's connection ends. Then call `vshm_poll`, which
/// resets it. It can be readable
/// spuriously (for instance after completions that a synchronous call in
/// another thread already took); `vshm_poll` is cheap then.
///
/// The first call starts a notifier thread (it sleeps on the completion
/// ring's futex and writes this eventfd when the core publishes). The
/// descriptor is owned by the client (do not close it); it stays the same
/// for the client's lifetime, also after a reconnection or in a forked
/// child. Returns -1 on error (see `vshm_last_error_message`).
#[no_mangle]
pub unsafe extern "C" fn vshm_fd(c: *mut vshm_client) -> c_int {
    guard_value(-1, || {
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        inner.fd()
    })
}
