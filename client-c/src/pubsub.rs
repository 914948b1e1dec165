//! Pub/sub: subscribe, unsubscribe, push callbacks and polling.

use super::*;

// ===========================================================================
// Pub/sub

/// SUBSCRIBE / PUBLISH channels.
pub const VSHM_SUB_EXACT: u32 = 0;
/// PSUBSCRIBE patterns.
pub const VSHM_SUB_PATTERN: u32 = 1;
/// SSUBSCRIBE / SPUBLISH sharded channels (cluster: the channel's slot).
pub const VSHM_SUB_SHARDED: u32 = 2;

/// Receives one pub/sub message: `message` is a reply whose root value is
/// of type VSHM_TYPE_PUSH: kind (`vshm_value_push_kind`) "message",
/// "pmessage" or "smessage", elements [channel, payload] or, for
/// "pmessage", [channel, pattern, payload]. The callback owns `message`
/// (free it with `vshm_reply_free`). Runs in the thread that calls
/// `vshm_poll`, `vshm_wait` or `vshm_take`.
pub type vshm_push_callback = Option<
    unsafe extern "C" fn(client: *mut vshm_client, message: *mut vshm_reply, userdata: *mut c_void),
>;

pub(crate) fn sub_kind(kind: u32) -> Result<SubKind, Error> {
    match kind {
        VSHM_SUB_EXACT => Ok(SubKind::Exact),
        VSHM_SUB_PATTERN => Ok(SubKind::Pattern),
        VSHM_SUB_SHARDED => Ok(SubKind::Sharded),
        k => Err(Error::arg(format!("unknown subscription kind {k}"))),
    }
}

pub(crate) unsafe fn owned_list(
    n: c_int,
    items: *const *const c_char,
    lens: *const usize,
) -> Result<Vec<Vec<u8>>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: forwarded contract (n entries).
    Ok(unsafe { argv(n, items, lens)? }
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect())
}

pub(crate) fn pubsub(
    c: *mut vshm_client,
    kind: u32,
    subscribe: bool,
    channels: Vec<Vec<u8>>,
    count: *mut i64,
) -> Result<(), Error> {
    // SAFETY: a pointer from this library per the contract.
    let inner = unsafe { client_inner(c)? };
    let kind = sub_kind(kind)?;
    let o = ReqOpts {
        timeout: None,
        default_timeout: inner.handle.default_timeout(),
        flags: 0,
        route: Route::Auto,
    };
    let op = if subscribe {
        Op::Subscribe {
            kind,
            channels: channels.clone(),
        }
    } else {
        Op::Unsubscribe {
            kind,
            channels: channels.clone(),
        }
    };
    let mut r: *mut vshm_reply = std::ptr::null_mut();
    run_sync(&inner, &op, &o, &mut r)?;
    inner.handle.note_subscriptions(kind, subscribe, &channels);
    // SAFETY: r is the reply run_sync just made (an integer: the count).
    let v = unsafe { vshm_reply_value(r) };
    let mut n = -1i64;
    // SAFETY: v is r's root value (or NULL, handled).
    unsafe { vshm_value_integer(v, &mut n) };
    // SAFETY: r is ours to free.
    unsafe { vshm_reply_free(r) };
    if !count.is_null() {
        // SAFETY: non-null, a writable int64_t per the contract.
        unsafe { *count = n };
    }
    Ok(())
}

/// Subscribe this client to `n` (> 0) channels (or patterns) of `kind`
/// (VSHM_SUB_*); `lens` may be NULL for NUL-terminated names. Returns once
/// the server confirmed every channel; `*count` (if not NULL) = this
/// client's number of subscriptions. Messages are delivered to the push
/// callback (`vshm_set_push_callback`, via `vshm_poll`/`vshm_wait`) or
/// taken with `vshm_next_push`. Subscriptions are renewed transparently
/// when the client re-registers (daemon restart, forked child) and when
/// the core reconnects to the servers; delivery is at most once (messages
/// published meanwhile are lost, as with Redis itself).
#[no_mangle]
pub unsafe extern "C" fn vshm_subscribe(
    c: *mut vshm_client,
    kind: u32,
    n: c_int,
    channels: *const *const c_char,
    lens: *const usize,
    count: *mut i64,
) -> vshm_status {
    guard(|| {
        if n <= 0 {
            return Err(Error::arg(format!("n must be > 0 (got {n})")));
        }
        // SAFETY: forwarded contract.
        let list = unsafe { owned_list(n, channels, lens)? };
        pubsub(c, kind, true, list, count)
    })
}

/// Unsubscribe from `n` channels of `kind`; `n` = 0 (channels may be
/// NULL): from every channel of that kind. Delivery stops at once;
/// `*count` (if not NULL) = the subscriptions left.
#[no_mangle]
pub unsafe extern "C" fn vshm_unsubscribe(
    c: *mut vshm_client,
    kind: u32,
    n: c_int,
    channels: *const *const c_char,
    lens: *const usize,
    count: *mut i64,
) -> vshm_status {
    guard(|| {
        if n < 0 {
            return Err(Error::arg(format!("n must be >= 0 (got {n})")));
        }
        // SAFETY: forwarded contract.
        let list = unsafe { owned_list(n, channels, lens)? };
        pubsub(c, kind, false, list, count)
    })
}

/// Set (or, with `cb` NULL, clear) the callback that receives pub/sub
/// messages from `vshm_poll`/`vshm_wait`/`vshm_take`. Without one,
/// messages queue up for `vshm_next_push`.
#[no_mangle]
pub unsafe extern "C" fn vshm_set_push_callback(
    c: *mut vshm_client,
    cb: vshm_push_callback,
    userdata: *mut c_void,
) -> vshm_status {
    guard(|| {
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        inner.set_push_callback(cb, userdata as usize);
        Ok(())
    })
}

/// Take the next pub/sub message, waiting up to `timeout_ms` (>= 0) for
/// one: `*out` = the message (a VSHM_TYPE_PUSH reply, see
/// `vshm_push_callback`; owned by the caller). VSHM_ERR_TIMEOUT if none
/// arrived in time.
#[no_mangle]
pub unsafe extern "C" fn vshm_next_push(
    c: *mut vshm_client,
    timeout_ms: c_int,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        if timeout_ms < 0 {
            return Err(Error::arg(format!(
                "timeout_ms must be >= 0 (got {timeout_ms})"
            )));
        }
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        let (conn, _) = inner.conn()?;
        match conn.wait_push_reply(Duration::from_millis(timeout_ms as u64))? {
            Some(m) => {
                // SAFETY: out checked non-null above.
                unsafe { *out = new_reply(m, 0) };
                Ok(())
            }
            None => Err(Error::new(VSHM_ERR_TIMEOUT, "no pub/sub message in time")),
        }
    })
}
