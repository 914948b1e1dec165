//! The client side of the daemon: register over the Unix socket, attach
//! the segment it sends, watch the socket for the daemon's death, and
//! re-register transparently after a daemon restart or a `fork()`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use vshm_protocol::sync::{AtomicU64, Ordering};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::client::{Client, ClientOptions};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{ClientError, ErrorKind};
use vshm_protocol::register::{self, HandshakeReply, Hello, Settings, PROTOCOL_VERSION};
use vshm_protocol::segment::Segment;

fn conn_err(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorKind::Connection, msg)
}

static FORK_GEN: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn on_fork_child() {
    // Relaxed: read by the same (only) thread of the child afterwards.
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

/// A counter that changes in a child process after `fork()`.
pub fn fork_generation() -> u64 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is
        // async-signal-safe and valid in a freshly forked child.
        unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
    });
    FORK_GEN.load(Ordering::Relaxed)
}

/// One registration with the daemon.
pub struct DaemonClient {
    client: Client,
    sock: Arc<OwnedFd>,
    watcher: Option<JoinHandle<()>>,
    client_id: u64,
    fork_gen: u64,
}

impl std::ops::Deref for DaemonClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Connect a SOCK_SEQPACKET socket to `path` with bounded I/O.
fn dial(path: &Path, timeout: Duration) -> Result<OwnedFd, ClientError> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| conn_err(format!("socket: {e}")))?;
    let addr = UnixAddr::new(path)
        .map_err(|e| conn_err(format!("bad socket path {}: {e}", path.display())))?;
    // Before connecting: a Unix socket's connect waits for room in a full
    // listen backlog (a busy or stopped daemon) up to SO_SNDTIMEO.
    register::set_timeouts(&sock, timeout).map_err(|e| conn_err(e.to_string()))?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| {
        let why = if e == nix::errno::Errno::EAGAIN {
            format!("no room in its listen backlog within {timeout:?} (the daemon is stopped or flooded with connections)")
        } else {
            e.to_string()
        };
        conn_err(format!("cannot connect to vshmd at {}: {why}", path.display()))
    })?;
    Ok(sock)
}

impl DaemonClient {
    /// Register with the daemon listening at `path`.
    pub fn connect(
        path: &Path,
        settings: &Settings,
        timeout: Duration,
        mut opts: ClientOptions,
    ) -> Result<DaemonClient, ClientError> {
        let fork_gen = fork_generation();
        let sock = dial(path, timeout)?;
        let hello = Hello::Register {
            protocol_version: PROTOCOL_VERSION,
            pid: std::process::id(),
            settings: settings.clone(),
        };
        let (bytes, mut fds) =
            register::exchange(sock.as_raw_fd(), &register::encode_hello(&hello))
                .map_err(|e| conn_err(format!("no answer from vshmd: {e}")))?
                .ok_or_else(|| conn_err("vshmd closed the connection during registration"))?;
        let reply = register::decode_reply(&bytes).map_err(|e| conn_err(e.to_string()))?;
        let (client_id, timeout_ms, block_forever_limit_ms) = match reply {
            HandshakeReply::Welcome {
                protocol_version,
                client_id,
                request_timeout_ms,
                block_forever_limit_ms,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(conn_err(format!(
                        "vshmd speaks protocol {protocol_version}, this client {PROTOCOL_VERSION}"
                    )));
                }
                (client_id, request_timeout_ms, block_forever_limit_ms)
            }
            HandshakeReply::Refused { reason, .. } => {
                return Err(ClientError::new(
                    ErrorKind::Connection,
                    format!("vshmd refused: {reason}"),
                ))
            }
            HandshakeReply::Stats { .. } => return Err(conn_err("unexpected stats reply")),
        };
        if fds.len() != 2 {
            return Err(conn_err(format!(
                "vshmd sent {} descriptors, expected 2",
                fds.len()
            )));
        }
        let doorbell = fds.pop().expect("two fds");
        let memfd = fds.pop().expect("two fds");
        let seg = Arc::new(
            Segment::attach(memfd).map_err(|e| conn_err(format!("bad segment from vshmd: {e}")))?,
        );
        if timeout_ms > 0 {
            opts.request_timeout = Duration::from_millis(u64::from(timeout_ms));
        }
        let client = Client::new(seg.clone(), Some(Arc::new(doorbell)), opts);
        if block_forever_limit_ms > 0 {
            client.set_block_forever_limit(Duration::from_millis(block_forever_limit_ms));
        }
        let sock = Arc::new(sock);
        let watcher = {
            let sock = sock.clone();
            std::thread::Builder::new()
                .name("vshm-watch".into())
                .spawn(move || watch(sock, seg))
                .map_err(|e| conn_err(format!("cannot start watcher thread: {e}")))?
        };
        Ok(DaemonClient {
            client,
            sock,
            watcher: Some(watcher),
            client_id,
            fork_gen,
        })
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Still usable: the segment is open and this is the process that
    /// registered it.
    pub fn healthy(&self) -> bool {
        self.fork_gen == fork_generation() && self.client.segment().state() == state::OPEN
    }

    /// In a forked child: forget this registration without touching
    /// anything shared with the parent (no locks, no writes to the
    /// segment, no message to the daemon). The mapping and descriptors are
    /// released; the parent's registration is unaffected.
    pub fn abandon_after_fork(mut self) {
        // The watcher thread does not exist in the child.
        if let Some(w) = self.watcher.take() {
            std::mem::forget(w);
        }
        // Dropping the rest only unmaps and closes this process's copies.
    }
}

impl Drop for DaemonClient {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            if self.fork_gen == fork_generation() {
                // Wake the watcher (it polls the socket) and let it end.
                // SAFETY: shutting down our own socket descriptor.
                unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
                let _ = w.join();
            } else {
                std::mem::forget(w);
            }
        }
    }
}

/// Watch the daemon socket; when it hangs up, mark the segment lost so
/// that every waiter ends promptly with a connection error.
fn watch(sock: Arc<OwnedFd>, seg: Arc<Segment>) {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd; the descriptor outlives the call (we
        // hold an Arc).
        let r = unsafe { libc::poll(&mut p, 1, 1000) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if r > 0 && p.revents != 0 {
            break;
        }
        if seg.state() != state::OPEN {
            return;
        }
    }
    if seg.state() == state::OPEN {
        seg.set_state(state::PEER_LOST);
    }
}

/// A daemon client that re-registers transparently: after the daemon
/// restarted, or in a child process after `fork()`.
pub struct Reconnecting {
    path: PathBuf,
    settings: Settings,
    timeout: Duration,
    opts: ClientOptions,
    cur: Mutex<Option<Arc<DaemonClient>>>,
    /// Registrations made (1 after the first call).
    pub registrations: AtomicU64,
}

impl Reconnecting {
    pub fn new(
        path: PathBuf,
        settings: Settings,
        timeout: Duration,
        opts: ClientOptions,
    ) -> Reconnecting {
        Reconnecting {
            path,
            settings,
            timeout,
            opts,
            cur: Mutex::new(None),
            registrations: AtomicU64::new(0),
        }
    }

    /// The current registration, registering anew if there is none or it
    /// is unusable (daemon gone, or we are a forked child).
    pub fn get(&self) -> Result<Arc<DaemonClient>, ClientError> {
        let mut g = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_ref() {
            if c.healthy() {
                return Ok(c.clone());
            }
        }
        if let Some(old) = g.take() {
            if old.fork_gen != fork_generation() {
                if let Ok(dc) = Arc::try_unwrap(old) {
                    dc.abandon_after_fork();
                }
            }
        }
        let c = Arc::new(DaemonClient::connect(
            &self.path,
            &self.settings,
            self.timeout,
            self.opts.clone(),
        )?);
        self.registrations.fetch_add(1, Ordering::Relaxed);
        *g = Some(c.clone());
        Ok(c)
    }
}

/// Ask a running daemon for its statistics (text or Prometheus format).
pub fn stats(path: &Path, prometheus: bool, timeout: Duration) -> Result<String, ClientError> {
    let sock = dial(path, timeout)?;
    let hello = Hello::Stats {
        protocol_version: PROTOCOL_VERSION,
        prometheus,
    };
    let (bytes, _) = register::exchange(sock.as_raw_fd(), &register::encode_hello(&hello))
        .map_err(|e| conn_err(e.to_string()))?
        .ok_or_else(|| conn_err("vshmd closed the connection"))?;
    match register::decode_reply(&bytes).map_err(|e| conn_err(e.to_string()))? {
        HandshakeReply::Stats { text } => Ok(text),
        HandshakeReply::Refused { reason, .. } => Err(conn_err(format!("vshmd refused: {reason}"))),
        HandshakeReply::Welcome { .. } => Err(conn_err("unexpected reply")),
    }
}
