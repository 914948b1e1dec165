//! Synchronous requests: argv commands with options and routes.

use super::*;
use ::vshm_client::client::Client;
use vshm_protocol::bound;

// ===========================================================================
// Requests

/// Where a request goes. All-zero = VSHM_ROUTE_AUTO.
#[repr(C)]
pub struct vshm_route {
    /// One of VSHM_ROUTE_*.
    pub kind: u32,
    /// SLOT_KEY / SLOT_ID: nonzero to use a replica of the slot's shard.
    pub replica: u32,
    /// SLOT_ID: the slot, 0..16383.
    pub slot: u32,
    /// ADDRESS: the node's port.
    pub port: u32,
    /// SLOT_KEY: the key (binary safe, `key_len` bytes). Borrowed for the
    /// duration of the call.
    pub key: *const c_char,
    pub key_len: usize,
    /// ADDRESS: the node's host, NUL-terminated, as the cluster reports it.
    pub host: *const c_char,
}

/// By the command's keys (keyless commands: a random node, or every node
/// where the command's policy says so). The default.
pub const VSHM_ROUTE_AUTO: u32 = 0;
/// Every node of the cluster.
pub const VSHM_ROUTE_ALL_NODES: u32 = 1;
/// Every primary of the cluster.
pub const VSHM_ROUTE_ALL_PRIMARIES: u32 = 2;
/// One random node.
pub const VSHM_ROUTE_RANDOM: u32 = 3;
/// The node serving `key`'s slot.
pub const VSHM_ROUTE_SLOT_KEY: u32 = 4;
/// The node serving `slot`.
pub const VSHM_ROUTE_SLOT_ID: u32 = 5;
/// The node at `host`:`port`.
pub const VSHM_ROUTE_ADDRESS: u32 = 6;

/// Per-request options. All-zero = defaults.
#[repr(C)]
pub struct vshm_request_options {
    /// Request timeout in ms; 0: the client's default. A blocking command
    /// is bounded by its own timeout (see `vshm_command_argv`); with one
    /// that blocks forever, a nonzero `timeout_ms` is its bound.
    pub timeout_ms: u32,
    /// VSHM_FLAG_* bits.
    pub flags: u32,
    pub route: vshm_route,
}

/// Batches: report the first failing command's error instead of an array
/// with the errors in place.
pub const VSHM_FLAG_RAISE_ON_ERROR: u32 = 1;

pub(crate) struct ReqOpts {
    /// The request's own timeout (`timeout_ms`), if it set one.
    pub(crate) timeout: Option<Duration>,
    /// The handle's default request timeout, if it has one (else the
    /// registration's applies).
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) flags: u32,
    pub(crate) route: Route,
}

impl ReqOpts {
    /// The timeout to submit `op` with: the request's own; else the
    /// handle's default resolved for `op` by the bound function the core
    /// uses (so that a blocking command gets its own bound, not the
    /// default timeout: `BLPOP q 0` is not cut off at 250 ms); else None
    /// (the registration's defaults, resolved the same way by the client).
    pub(crate) fn timeout_for(&self, conn: &Client, op: &Op<ArgsRef<'_>>) -> Option<Duration> {
        match (self.timeout, self.default_timeout) {
            (Some(t), _) => Some(t),
            (None, Some(d)) => {
                let defaults = bound::BoundDefaults {
                    request_timeout: d,
                    ..conn.bound_defaults()
                };
                Some(bound::request_bound(op, 0, &defaults))
            }
            (None, None) => None,
        }
    }
}

pub(crate) unsafe fn req_opts(
    o: *const vshm_request_options,
    default_timeout: Option<Duration>,
) -> Result<ReqOpts, Error> {
    if o.is_null() {
        return Ok(ReqOpts {
            timeout: None,
            default_timeout,
            flags: 0,
            route: Route::Auto,
        });
    }
    // SAFETY: non-null, a valid struct per the contract.
    let o = unsafe { &*o };
    if o.flags & !VSHM_FLAG_RAISE_ON_ERROR != 0 {
        return Err(Error::arg(format!("unknown flags {:#x}", o.flags)));
    }
    let r = &o.route;
    let route = match r.kind {
        VSHM_ROUTE_AUTO => Route::Auto,
        VSHM_ROUTE_ALL_NODES => Route::AllNodes,
        VSHM_ROUTE_ALL_PRIMARIES => Route::AllPrimaries,
        VSHM_ROUTE_RANDOM => Route::Random,
        VSHM_ROUTE_SLOT_KEY => {
            if r.key.is_null() && r.key_len != 0 {
                return Err(Error::arg("route.key is NULL"));
            }
            if r.key_len > MAX_ARG {
                return Err(Error::arg("route.key_len is too large"));
            }
            let key = if r.key_len == 0 {
                Vec::new()
            } else {
                // SAFETY: key points at key_len bytes per the contract.
                unsafe { std::slice::from_raw_parts(r.key.cast::<u8>(), r.key_len) }.to_vec()
            };
            Route::SlotKey {
                key,
                replica: r.replica != 0,
            }
        }
        VSHM_ROUTE_SLOT_ID => {
            if r.slot >= 16384 {
                return Err(Error::arg(format!(
                    "route.slot {} out of range 0..16383",
                    r.slot
                )));
            }
            Route::SlotId {
                slot: r.slot as u16,
                replica: r.replica != 0,
            }
        }
        VSHM_ROUTE_ADDRESS => {
            // SAFETY: a C string per the contract (or NULL, refused).
            let host = unsafe { cstr(r.host, "route.host")? }
                .ok_or_else(|| Error::arg("route.host is NULL"))?;
            if r.port == 0 || r.port > 65535 {
                return Err(Error::arg(format!(
                    "route.port {} out of range 1..65535",
                    r.port
                )));
            }
            Route::Address {
                host: host.to_string(),
                port: r.port as u16,
            }
        }
        k => return Err(Error::arg(format!("unknown route kind {k}"))),
    };
    Ok(ReqOpts {
        timeout: (o.timeout_ms != 0).then(|| Duration::from_millis(u64::from(o.timeout_ms))),
        default_timeout,
        flags: o.flags,
        route,
    })
}

/// Run one request and wait for its completion.
pub(crate) fn run_sync(
    inner: &ClientInner,
    op: &Op<ArgsRef<'_>>,
    o: &ReqOpts,
    out: *mut *mut vshm_reply,
) -> Result<(), Error> {
    let (conn, seq) = inner.conn()?;
    let timeout = o.timeout_for(&conn, op);
    let id = conn.submit_op(op, &o.route, timeout, o.flags)?;
    let deadline = Instant::now() + conn.wait_bound_for(op, timeout);
    let cid = conn::c_id(seq, id);
    let outcome = match conn.wait_reply_until(id, deadline, true) {
        Ok(r) => Outcome::Reply(r),
        Err(e) => Outcome::Failed(e.into()),
    };
    deliver(outcome, cid, out)
}

/// Run one command (argv style, binary safe) and wait for its reply.
///
/// `argc` > 0 arguments; `argv[i]` points at `argvlen[i]` bytes, or, when
/// `argvlen` is NULL, at a NUL-terminated string. The arguments are
/// serialized straight into the shared-memory ring (no intermediate copy)
/// and only borrowed for the duration of the call.
///
/// On VSHM_OK, `*out` is the reply (owned by the caller: free it with
/// `vshm_reply_free`). On any error `*out` is NULL and the error (status
/// and message, e.g. the server's "WRONGTYPE ..." for VSHM_ERR_REQUEST) is
/// in `vshm_last_error_status()` / `vshm_last_error_message()`.
/// The wait is bounded by the request's bound plus a transport margin
/// (1 s): the request timeout, or for a blocking command (BLPOP, BRPOP,
/// BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, XREAD/XREADGROUP
/// BLOCK, WAIT, WAITAOF) its own timeout plus 0.5 s (at least the request
/// timeout); a command that blocks forever (`BLPOP q 0`) is bounded by
/// `timeout_ms` if the request sets one, else by the core's
/// `block_forever_limit_ms` (1 h). The core applies the same bound.
#[no_mangle]
pub unsafe extern "C" fn vshm_command_argv(
    c: *mut vshm_client,
    argc: c_int,
    argv: *const *const c_char,
    argvlen: *const usize,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    // SAFETY: forwarded contract.
    unsafe { vshm_command_argv_opts(c, argc, argv, argvlen, std::ptr::null(), out) }
}

/// `vshm_command_argv` with options (timeout, route, flags); `opts` may be
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn vshm_command_argv_opts(
    c: *mut vshm_client,
    argc: c_int,
    argv: *const *const c_char,
    argvlen: *const usize,
    opts: *const vshm_request_options,
    out: *mut *mut vshm_reply,
) -> vshm_status {
    guard(|| {
        check_out(out, "out")?;
        // SAFETY: a pointer from this library per the contract.
        let inner = unsafe { client_inner(c)? };
        // SAFETY: argv contract forwarded.
        let args = unsafe { self::argv(argc, argv, argvlen)? };
        // SAFETY: opts contract forwarded.
        let o = unsafe { req_opts(opts, inner.handle.default_timeout())? };
        let refs: Vec<ArgRef<'_>> = args.iter().map(|a| ArgRef(a)).collect();
        run_sync(
            &inner,
            &Op::Command {
                args: ArgsRef(&refs),
            },
            &o,
            out,
        )
    })
}
