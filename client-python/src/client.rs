//! `NativeClient`, the Python class: its constructors and methods
//! (argument checks and conversions; the waiting is in `inner.rs`).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use vshm_client::daemon::Reconnecting;
use vshm_core::config::ReadFrom;
use vshm_protocol::msg::{
    ArchivedCompletion, ArgRef, ArgsRef, ClientError, ErrorKind, Op, Route, SubKind,
};
use vshm_protocol::register::Settings;

use crate::convert::{self, Decode};
use crate::errors::{archived_error, client_error, value_error, IntoPy};
use crate::inner::{outcome, Confirmation, Inner, Outcome, Pending, SLICE};
use crate::session::{handle_error, is_cluster, lock, Mode, Session};

/// Owned argument lists borrowed as the protocol's `ArgRef`s.
fn refs<'a>(args: &'a [Cow<'a, [u8]>]) -> Vec<ArgRef<'a>> {
    args.iter().map(|a| ArgRef(a)).collect()
}

fn sub_kind(kind: u32) -> PyResult<SubKind> {
    match kind {
        0 => Ok(SubKind::Exact),
        1 => Ok(SubKind::Pattern),
        2 => Ok(SubKind::Sharded),
        k => Err(value_error(format!(
            "unknown subscription kind {k} (0 exact, 1 pattern, 2 sharded)"
        ))),
    }
}

fn sub_names(kind: SubKind) -> (&'static [u8], &'static [u8]) {
    match kind {
        SubKind::Exact => (b"subscribe", b"unsubscribe"),
        SubKind::Pattern => (b"psubscribe", b"punsubscribe"),
        SubKind::Sharded => (b"ssubscribe", b"sunsubscribe"),
    }
}

/// Ring capacity from a size in bytes: a power of two, at least 4 KiB.
fn ring_size(v: Option<u64>, what: &str) -> PyResult<u64> {
    match v {
        None | Some(0) => Ok(0),
        Some(n) if n <= 1 << 30 => Ok(n.max(4096).next_power_of_two()),
        Some(n) => Err(value_error(format!("{what} {n} is larger than 1 GiB"))),
    }
}

fn millis(d: Option<Duration>) -> Option<u32> {
    d.map(|d| d.as_millis().clamp(1, u128::from(u32::MAX)) as u32)
}

/// A client of the vshm core (in-process or through vshmd). Thread-safe:
/// one instance may be used by many Python threads at once.
#[pyclass(frozen, module = "vshm._native")]
pub struct NativeClient {
    inner: Inner,
}

impl NativeClient {
    pub(crate) fn new(session: Session, decode: Decode) -> NativeClient {
        NativeClient {
            inner: Inner {
                session,
                pending: Mutex::new(Pending::default()),
                confirmations: Mutex::new(VecDeque::new()),
                decode,
                cluster: OnceLock::new(),
            },
        }
    }

    /// The commands of a batch, converted (kept alive by `items`).
    fn batch_op<'a>(
        transaction: bool,
        watch: Vec<Vec<u8>>,
        commands: &'a [Vec<ArgRef<'a>>],
    ) -> PyResult<Op<ArgsRef<'a>>> {
        if commands.is_empty() {
            return Err(value_error("empty batch: add at least one command"));
        }
        if !watch.is_empty() && !transaction {
            return Err(value_error("watch needs a transaction (transaction=True)"));
        }
        Ok(Op::Batch {
            atomic: transaction,
            watch,
            commands: commands.iter().map(|c| ArgsRef(c)).collect(),
        })
    }
}

/// Convert a Python batch into owned argument lists.
fn batch_args<'a>(items: &'a [Vec<Bound<'_, PyAny>>]) -> PyResult<Vec<Vec<Cow<'a, [u8]>>>> {
    items.iter().map(|c| convert::args(c)).collect()
}

fn batch_items<'py>(commands: &Bound<'py, PyAny>) -> PyResult<Vec<Vec<Bound<'py, PyAny>>>> {
    convert::items(commands, "commands")?
        .iter()
        .map(|c| convert::items(c, "each command"))
        .collect()
}

fn script_op(
    code: &Bound<'_, PyAny>,
    keys: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
) -> PyResult<Op<ArgsRef<'static>>> {
    let code = convert::arg(code)?.into_owned();
    if code.is_empty() {
        return Err(value_error("empty script"));
    }
    Ok(Op::Script {
        code,
        keys: convert::byte_list(Some(keys), "keys")?,
        args: convert::byte_list(Some(args), "args")?,
    })
}

#[pymethods]
impl NativeClient {
    /// A client served by the process's in-process core (started on first
    /// use, shared by every in-process client of the process).
    #[staticmethod]
    #[pyo3(signature = (url, *, timeout=None, connect_timeout=None, client_name=None,
        username=None, password=None, read_from_replica=false, sq_size=None, cq_size=None,
        decode_responses=false, encoding="utf-8"))]
    #[allow(clippy::too_many_arguments)]
    fn from_url(
        py: Python<'_>,
        url: &str,
        timeout: Option<f64>,
        connect_timeout: Option<f64>,
        client_name: Option<String>,
        username: Option<String>,
        password: Option<String>,
        read_from_replica: bool,
        sq_size: Option<u64>,
        cq_size: Option<u64>,
        decode_responses: bool,
        encoding: &str,
    ) -> PyResult<NativeClient> {
        let decode = Decode::new(py, decode_responses, encoding)?;
        let (mut cfg, threads) = vshm_client::uri::parse(url).map_err(|e| value_error(e.0))?;
        let t = convert::timeout(timeout, "timeout")?;
        if let Some(ms) = millis(t) {
            cfg.request_timeout_ms = ms;
        }
        if let Some(ms) = millis(convert::timeout(connect_timeout, "connect_timeout")?) {
            cfg.connection_timeout_ms = ms;
        }
        if client_name.is_some() {
            cfg.client_name = client_name;
        }
        if username.is_some() {
            cfg.username = username;
        }
        if password.is_some() {
            cfg.password = password;
        }
        if read_from_replica {
            cfg.read_from = ReadFrom::PreferReplica;
        }
        cfg.validate().map_err(|e| value_error(e.message))?;
        if sq_size.is_some() || cq_size.is_some() {
            return Err(value_error(
                "from_url: the in-process core's ring sizes are fixed (1 MiB each); \
                 sq_size/cq_size apply to from_daemon",
            ));
        }
        let mode = Mode::Embedded {
            config: cfg,
            threads: threads.max(1),
        };
        let s = py
            .allow_threads(|| Session::open(mode, t).map_err(handle_error))
            .py_err(py)?;
        Ok(NativeClient::new(s, decode))
    }

    /// A client served by the vshm daemon listening on the Unix socket
    /// `path`. Server credentials, addresses and replica reads are the
    /// daemon's configuration (pick one of its `auth_profile`s).
    #[staticmethod]
    #[pyo3(signature = (path, *, timeout=None, connect_timeout=None, client_name=None,
        username=None, password=None, read_from_replica=false, sq_size=None, cq_size=None,
        decode_responses=false, encoding="utf-8", auth_profile=None, database=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_daemon(
        py: Python<'_>,
        path: PathBuf,
        timeout: Option<f64>,
        connect_timeout: Option<f64>,
        client_name: Option<String>,
        username: Option<String>,
        password: Option<String>,
        read_from_replica: bool,
        sq_size: Option<u64>,
        cq_size: Option<u64>,
        decode_responses: bool,
        encoding: &str,
        auth_profile: Option<String>,
        database: Option<u32>,
    ) -> PyResult<NativeClient> {
        if username.is_some() || password.is_some() {
            return Err(value_error(
                "from_daemon: server credentials are configured in vshmd (auth profiles); \
                 pass auth_profile=\"name\" instead of username/password",
            ));
        }
        if read_from_replica {
            return Err(value_error(
                "from_daemon: replica reads are configured in vshmd (read_from); \
                 use from_url(...) for a per-client setting",
            ));
        }
        let decode = Decode::new(py, decode_responses, encoding)?;
        let t = convert::timeout(timeout, "timeout")?;
        let ct =
            convert::timeout(connect_timeout, "connect_timeout")?.unwrap_or(Duration::from_secs(5));
        let settings = Settings {
            database,
            client_name,
            auth_profile,
            sq_capacity: ring_size(sq_size, "sq_size")?,
            cq_capacity: ring_size(cq_size, "cq_size")?,
        };
        let rc = Reconnecting::new(path, settings, ct, Default::default());
        let s = py
            .allow_threads(|| Session::open(Mode::Daemon(rc), t).map_err(handle_error))
            .py_err(py)?;
        Ok(NativeClient::new(s, decode))
    }

    /// Run one command and wait for its reply (GIL released).
    #[pyo3(signature = (args, timeout=None, route=None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyAny>,
        timeout: Option<f64>,
        route: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let items = convert::items(args, "args")?;
        let a = convert::args(&items)?;
        let route = convert::route(route)?;
        let timeout = self.inner.timeout(timeout)?;
        let r = refs(&a);
        let op = Op::Command { args: ArgsRef(&r) };
        self.inner.run_value(py, &op, &route, timeout)
    }

    /// Submit one command without waiting; returns its request id.
    #[pyo3(signature = (args, timeout=None, route=None))]
    fn submit(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        route: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let items = convert::items(args, "args")?;
        let a = convert::args(&items)?;
        let route = convert::route(route)?;
        let timeout = self.inner.timeout(timeout)?;
        let r = refs(&a);
        let op = Op::Command { args: ArgsRef(&r) };
        self.inner.submit(py, &op, &route, timeout)
    }

    /// Run a pipeline (transaction=False) or a MULTI/EXEC transaction and
    /// wait: a list of results with error replies in place (ResponseError
    /// instances); a transaction whose WATCHed key changed gives None.
    #[pyo3(signature = (commands, transaction, watch=None, timeout=None))]
    fn execute_batch<'py>(
        &self,
        py: Python<'py>,
        commands: &Bound<'py, PyAny>,
        transaction: bool,
        watch: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let items = batch_items(commands)?;
        let args = batch_args(&items)?;
        let r: Vec<Vec<ArgRef<'_>>> = args.iter().map(|c| refs(c)).collect();
        let watch = convert::byte_list(watch, "watch")?;
        let op = Self::batch_op(transaction, watch, &r)?;
        let timeout = self.inner.timeout(timeout)?;
        self.inner.run_value(py, &op, &Route::Auto, timeout)
    }

    /// `execute_batch` without waiting; returns its request id.
    #[pyo3(signature = (commands, transaction, watch=None, timeout=None))]
    fn submit_batch(
        &self,
        py: Python<'_>,
        commands: &Bound<'_, PyAny>,
        transaction: bool,
        watch: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let items = batch_items(commands)?;
        let args = batch_args(&items)?;
        let r: Vec<Vec<ArgRef<'_>>> = args.iter().map(|c| refs(c)).collect();
        let watch = convert::byte_list(watch, "watch")?;
        let op = Self::batch_op(transaction, watch, &r)?;
        let timeout = self.inner.timeout(timeout)?;
        self.inner.submit(py, &op, &Route::Auto, timeout)
    }

    /// Run a Lua script (EVALSHA, loaded on NOSCRIPT by the core) and wait.
    #[pyo3(signature = (code, keys, args, timeout=None))]
    fn execute_script<'py>(
        &self,
        py: Python<'py>,
        code: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
        args: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = script_op(code, keys, args)?;
        let timeout = self.inner.timeout(timeout)?;
        self.inner.run_value(py, &op, &Route::Auto, timeout)
    }

    /// `execute_script` without waiting; returns its request id.
    #[pyo3(signature = (code, keys, args, timeout=None))]
    fn submit_script(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        keys: &Bound<'_, PyAny>,
        args: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let op = script_op(code, keys, args)?;
        let timeout = self.inner.timeout(timeout)?;
        self.inner.submit(py, &op, &Route::Auto, timeout)
    }

    /// Wait for a submitted request (GIL released); raises its error.
    #[pyo3(signature = (id, timeout=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = convert::timeout(timeout, "timeout")?;
        self.inner.wait(py, id, t)
    }

    /// A descriptor that becomes readable when completions arrive (for
    /// `loop.add_reader`); `drain()` resets it.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        py.allow_threads(|| self.inner.session.fd().map_err(handle_error))
            .py_err(py)
    }

    /// Every completed submitted request, without blocking, as
    /// `(id, value_or_exception, is_error)`.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if self.inner.session.is_closed() {
            return Err(client_error(
                py,
                &ClientError::new(ErrorKind::Closing, "the client is closed"),
            ));
        }
        self.inner.session.clear_fd();
        py.allow_threads(|| self.inner.collect(None));
        let done: Vec<(u64, Outcome)> = lock(&self.inner.pending).done.drain(..).collect();
        let mut out = Vec::with_capacity(done.len());
        for (id, o) in done {
            let (v, is_err) = match outcome(py, o, &self.inner.decode) {
                Ok(v) => (v, false),
                Err(e) => (e.into_value(py).into_bound(py).into_any(), true),
            };
            out.push(PyTuple::new(
                py,
                [
                    id.into_pyobject(py)?.into_any(),
                    v,
                    pyo3::types::PyBool::new(py, is_err).to_owned().into_any(),
                ],
            )?);
        }
        PyList::new(py, out)
    }

    /// Subscribe to channels (kind 0), patterns (1) or sharded channels
    /// (2); returns once the server confirmed them, with this client's
    /// subscription count. Confirmations are also queued for `get_push`.
    fn subscribe(&self, py: Python<'_>, kind: u32, channels: &Bound<'_, PyAny>) -> PyResult<i64> {
        let kind = sub_kind(kind)?;
        let channels = convert::byte_list(Some(channels), "channels")?;
        if channels.is_empty() {
            return Err(value_error("subscribe needs at least one channel"));
        }
        self.pubsub(py, kind, true, channels)
    }

    /// Unsubscribe (an empty list: from every channel of that kind).
    fn unsubscribe(&self, py: Python<'_>, kind: u32, channels: &Bound<'_, PyAny>) -> PyResult<i64> {
        let kind = sub_kind(kind)?;
        let channels = convert::byte_list(Some(channels), "channels")?;
        self.pubsub(py, kind, false, channels)
    }

    /// The next pub/sub message (or subscription confirmation) as a list;
    /// None when none came within `timeout` seconds (0: poll; None: wait
    /// until one comes, interruptible).
    #[pyo3(signature = (timeout=None))]
    fn get_push<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let deadline = match timeout {
            Some(t) if t.is_finite() && t >= 0.0 => {
                Some(Instant::now() + Duration::from_secs_f64(t.min(1e9)))
            }
            Some(t) => return Err(value_error(format!("timeout must be >= 0 (got {t})"))),
            None => None,
        };
        loop {
            if let Some(c) = lock(&self.inner.confirmations).pop_front() {
                return self.confirmation(py, c).map(Some);
            }
            let (conn, _) = self.inner.conn(py)?;
            let now = Instant::now();
            let wait = deadline.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
            let r = py.allow_threads(|| conn.wait_push_reply(wait)).py_err(py)?;
            if let Some(r) = r {
                return convert::push(py, &r, &self.inner.decode).map(Some);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            py.check_signals()?;
        }
    }

    /// One step of a SCAN over the whole keyspace (every node of a
    /// cluster): `(next_cursor, keys)`; start with 0, stop when 0 again.
    #[pyo3(signature = (cursor, r#match=None, count=0, r#type=None, timeout=None))]
    fn cluster_scan<'py>(
        &self,
        py: Python<'py>,
        cursor: u64,
        r#match: Option<&Bound<'py, PyAny>>,
        count: u32,
        r#type: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, Bound<'py, PyAny>)> {
        let pattern = match r#match.filter(|m| !m.is_none()) {
            Some(m) => Some(convert::arg(m)?.into_owned()),
            None => None,
        };
        let type_filter = match r#type.filter(|m| !m.is_none()) {
            Some(t) => Some(convert::arg(t)?.into_owned()),
            None => None,
        };
        let op = Op::ClusterScan {
            cursor,
            pattern,
            count,
            type_filter,
        };
        let timeout = self.inner.timeout(timeout)?;
        let v = self.inner.run_value(py, &op, &Route::Auto, timeout)?;
        // [next cursor, [keys...]]
        Ok((v.get_item(0)?.extract()?, v.get_item(1)?))
    }

    /// Close the client (idempotent): later calls raise ConnectionError;
    /// submitted requests still pending complete with ConnectionError.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.session.close());
        let mut p = lock(&self.inner.pending);
        let ids: Vec<u64> = p.entries.drain().map(|(id, _)| id).collect();
        for id in ids {
            p.done.push_back((
                id,
                Outcome::Failed(ClientError::new(
                    ErrorKind::Closing,
                    "the client was closed before the request completed",
                )),
            ));
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.session.is_closed()
    }

    #[getter]
    fn is_cluster(&self, py: Python<'_>) -> PyResult<bool> {
        if let Some(c) = is_cluster(&self.inner.session) {
            return Ok(c);
        }
        if let Some(c) = self.inner.cluster.get() {
            return Ok(*c);
        }
        // Through the daemon: ask the servers once ("cluster_enabled:1"
        // in INFO cluster; a cluster may answer per node).
        let args = [ArgRef(b"INFO"), ArgRef(b"cluster")];
        let op = Op::Command {
            args: ArgsRef(&args),
        };
        let r = self.inner.run(py, &op, &Route::Auto, None)?;
        if let ArchivedCompletion::Err(e) = r.completion() {
            return Err(archived_error(py, e));
        }
        // The text is contiguous in the archived reply, whatever its shape.
        let c = r.bytes().windows(17).any(|w| w == b"cluster_enabled:1");
        Ok(*self.inner.cluster.get_or_init(|| c))
    }

    #[getter]
    fn decode_responses(&self) -> bool {
        self.inner.decode.on
    }
}

impl NativeClient {
    fn pubsub(
        &self,
        py: Python<'_>,
        kind: SubKind,
        subscribe: bool,
        channels: Vec<Vec<u8>>,
    ) -> PyResult<i64> {
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
        let timeout = self.inner.session.default_timeout();
        let r = self.inner.run(py, &op, &Route::Auto, timeout)?;
        let n: i64 = convert::completion(py, &r, &self.inner.decode)?.extract()?;
        drop(r);
        let changed = self
            .inner
            .session
            .note_subscriptions(kind, subscribe, &channels);
        // Counts as the server would report them, one confirmation per
        // channel: rising to n (subscribe) or falling to n (unsubscribe).
        let moved = changed.iter().filter(|(_, c)| *c).count() as i64;
        let (sub, unsub) = sub_names(kind);
        let mut count = if subscribe { n - moved } else { n + moved };
        let mut q = lock(&self.inner.confirmations);
        if changed.is_empty() {
            q.push_back(Confirmation {
                kind: unsub,
                channel: None,
                count: n,
            });
        }
        for (c, did) in changed {
            if did {
                count += if subscribe { 1 } else { -1 };
            }
            q.push_back(Confirmation {
                kind: if subscribe { sub } else { unsub },
                channel: Some(c),
                count: count.max(0),
            });
        }
        Ok(n)
    }

    fn confirmation<'py>(&self, py: Python<'py>, c: Confirmation) -> PyResult<Bound<'py, PyAny>> {
        let d = &self.inner.decode;
        let channel = match &c.channel {
            Some(ch) => d.string(py, ch)?,
            None => py.None().into_bound(py),
        };
        Ok(PyList::new(
            py,
            [
                d.string(py, c.kind)?,
                channel,
                c.count.into_pyobject(py)?.into_any(),
            ],
        )?
        .into_any())
    }
}
