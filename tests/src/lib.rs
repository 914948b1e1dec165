//! Shared test helpers: real `redis-server` processes for the integration tests.
//!
//! * [`RedisServer`]: one standalone server on a free loopback port, in its own temp dir.
//! * [`RedisCluster`]: six cluster nodes (3 primaries + 3 replicas), short node timeout.
//! * [`shared_standalone`] / [`shared_cluster`]: one of each per test process, started lazily
//!   (or the servers named by `VSHM_TEST_STANDALONE` / `VSHM_TEST_CLUSTER`, see
//!   `scripts/test-servers.sh`). Tests may `FLUSHALL` them freely; tests that destroy things
//!   (kill a node, fail over) start their own servers.
//!
//! Lifetime: every server is spawned from one long-lived spawner thread with
//! `PR_SET_PDEATHSIG = SIGKILL`, so servers die with the test process even when it is killed.
//! Owned servers are killed on drop (also while unwinding from a failed test). Temp dirs live
//! under one per-process dir (`$TMPDIR/vshm-test-<pid>`), removed at process exit; dirs left by
//! killed test processes are removed by the next test process that starts a server.

mod cluster;
pub mod cluster_ops;
pub mod soak;
pub mod vshmd;

pub use cluster::RedisCluster;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicU64, Ordering};

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use vshm_core::keys::SLOTS;

/// Poll `reason` every 50 ms until it gives `None`; panics with `what` and the last reason
/// after `timeout`.
pub fn poll_until(timeout: Duration, what: &str, mut reason: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match reason() {
            None => return,
            Some(why) if Instant::now() >= deadline => panic!("{what} after {timeout:?}: {why}"),
            Some(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Bound for a server to start answering, and for a cluster to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a SIGTERMed server to exit before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound for one query made by the helpers themselves.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound for one `redis-cli` run of [`RedisServer::cli`] (seconds, for `timeout(1)`).
const CLI_TIMEOUT_SECS: &str = "30";
/// The socket file of [`RedisServer::start_unix`], relative to the server's dir (its working
/// directory), so the server is not bound by the 108-byte socket path limit.
const UNIX_SOCKET: &str = "redis.sock";

/// How many times to try another port when a server fails to start.
const START_ATTEMPTS: usize = 10;
/// Ports are picked in `PORT_LOW..PORT_HIGH`; the cluster bus uses `port + 10000`.
const PORT_LOW: u16 = 20000;
const PORT_HIGH: u16 = 30000;
const BUS_OFFSET: u16 = 10000;
const CLUSTER_NODES: usize = 6;

// ---------------------------------------------------------------------------------------------
// redis installation

/// Makes sure `redis-server` and `redis-cli` are on `PATH`, running `scripts/install-redis.sh`
/// if they are not. Panics with a clear message if that fails.
pub fn ensure_redis() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if on_path("redis-server") && on_path("redis-cli") {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-redis.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| {
                panic!("redis-server is not on PATH and running {script:?} failed: {e}")
            });
        assert!(
            status.success(),
            "redis-server is not on PATH and {script:?} failed ({status}); \
             install redis-server and redis-cli (Debian: apt-get install redis-server redis-tools)"
        );
        assert!(
            on_path("redis-server") && on_path("redis-cli"),
            "{script:?} succeeded but redis-server/redis-cli are still not on PATH"
        );
    });
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(bin);
            fs::metadata(&p).is_ok_and(|m| m.is_file())
        })
    })
}

// ---------------------------------------------------------------------------------------------
// per-process temp dir, spawner thread, pid registry

/// Pids of live servers spawned by this process, killed at exit (see [`cleanup_at_exit`]).
static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Ports handed to servers of this process (so parallel tests in one process do not collide).
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static ROOT: OnceLock<PathBuf> = OnceLock::new();
const ROOT_PREFIX: &str = "vshm-test-";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `$TMPDIR/vshm-test-<pid>`, created on first use; removed at exit.
fn process_root() -> &'static Path {
    ROOT.get_or_init(|| {
        remove_stale_roots();
        let root = std::env::temp_dir().join(format!("{ROOT_PREFIX}{}", std::process::id()));
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {root:?}: {e}"));
        // SAFETY: `cleanup_at_exit` is a plain `extern "C" fn()` that never unwinds (it only
        // uses non-panicking calls), as atexit(3) requires.
        let rc = unsafe { libc::atexit(cleanup_at_exit) };
        if rc != 0 {
            eprintln!("vshm-tests: atexit failed; {root:?} will be removed by a later run");
        }
        root
    })
}

/// Removes `vshm-test-<pid>` dirs whose process is gone (left by killed test processes).
fn remove_stale_roots() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ROOT_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid > 0 && send_signal(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

extern "C" fn cleanup_at_exit() {
    // Kill the servers that are still running (the shared ones, which live in statics and are
    // never dropped), reap them, then remove the per-process dir. PDEATHSIG would kill them
    // anyway once the spawner thread goes away; doing it here first means nothing writes into
    // the dir while it is removed. try_lock: never block at exit.
    if let Ok(mut pids) = LIVE_PIDS.try_lock() {
        for &pid in pids.iter() {
            let _ = send_signal(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for &pid in pids.iter() {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
        }
        pids.clear();
    }
    if let Some(root) = ROOT.get() {
        let _ = fs::remove_dir_all(root);
    }
}

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `cmd` from the dedicated spawner thread, with `PR_SET_PDEATHSIG = SIGKILL`.
///
/// PDEATHSIG fires when the *thread* that forked exits, so all servers are forked by one thread
/// that lives as long as the process: servers outlive the test thread that asked for them and
/// die with the process.
fn spawn_with_pdeathsig(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("vshm-test-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop runs until the process exits.
                for SpawnRequest { mut cmd, reply } in rx {
                    let child = cmd.spawn();
                    if let Ok(c) = &child {
                        lock(&LIVE_PIDS).push(c.id());
                    }
                    if let Err(mpsc::SendError(Ok(mut orphan))) = reply.send(child) {
                        // The requester gave up waiting: do not leave the server running.
                        let _ = orphan.kill();
                        let _ = orphan.wait();
                        forget_pid(orphan.id());
                    }
                }
            })
            .expect("cannot start the vshm-test-spawner thread");
        tx
    });

    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes the raw
    // syscalls prctl(2) and getppid(2) (async-signal-safe), touches no locks and does not
    // allocate (nix's Errno -> io::Error conversion is a plain OS error code).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have exited between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }

    let (reply, answer) = mpsc::channel();
    spawner
        .send(SpawnRequest { cmd, reply })
        .map_err(|_| io::Error::other("vshm-test-spawner thread is gone"))?;
    answer
        .recv_timeout(START_TIMEOUT)
        .map_err(|e| io::Error::other(format!("vshm-test-spawner did not answer: {e}")))?
}

fn forget_pid(pid: u32) {
    lock(&LIVE_PIDS).retain(|&p| p != pid);
}

// ---------------------------------------------------------------------------------------------
// ports

/// A random port in 20000..30000 such that it and `port + 10000` (cluster bus) both bind on
/// loopback right now, and no other server of this process uses it.
fn pick_port() -> u16 {
    for _ in 0..2000 {
        let port = rand::random_range(PORT_LOW..PORT_HIGH);
        let mut used = lock(&USED_PORTS);
        let used = used.get_or_insert_with(HashSet::new);
        if used.contains(&port) {
            continue;
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + BUS_OFFSET) {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port pair (p, p+{BUS_OFFSET}) found in {PORT_LOW}..{PORT_HIGH}");
}

fn release_port(port: u16) {
    if let Some(used) = lock(&USED_PORTS).as_mut() {
        used.remove(&port);
    }
}

// ---------------------------------------------------------------------------------------------
// RedisServer

static SERVER_SEQ: AtomicU64 = AtomicU64::new(0);

/// One `redis-server` process (or, for [`shared_standalone`] with `VSHM_TEST_STANDALONE` set,
/// a handle to a server this process does not own: then `stop`/`kill`/`restart` panic).
pub struct RedisServer {
    host: String,
    port: u16,
    /// Own temp dir (`None` for external servers).
    dir: Option<PathBuf>,
    /// Extra args given at start (after the standard ones).
    extra_args: Vec<String>,
    /// `--requirepass` from the extra args, used by the helpers' own queries.
    password: Option<String>,
    child: Mutex<Option<Child>>,
    owned: bool,
}

enum StartError {
    /// The process exited before answering (port taken, bad argument, ...).
    Exited(ExitStatus),
    Timeout,
    Spawn(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited(status) => write!(f, "exited before answering ({status})"),
            StartError::Timeout => write!(f, "did not answer within {START_TIMEOUT:?}"),
            StartError::Spawn(e) => write!(f, "cannot spawn redis-server: {e}"),
        }
    }
}

impl RedisServer {
    /// Standalone server on a free loopback port, own temp dir, `--enable-debug-command yes`,
    /// no persistence.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments
    /// (e.g. `&["--maxmemory", "10mb"]`); later arguments override earlier ones.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        ensure_redis();
        let root = process_root();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = pick_port();
            let seq = SERVER_SEQ.fetch_add(1, Ordering::Relaxed);
            let dir = root.join(format!("redis-{port}-{seq}"));
            if let Err(e) = fs::create_dir_all(&dir) {
                release_port(port);
                panic!("cannot create {dir:?}: {e}");
            }
            let mut server = RedisServer {
                host: "127.0.0.1".into(),
                port,
                dir: Some(dir),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                password: extra_args
                    .windows(2)
                    .rfind(|w| w[0] == "--requirepass")
                    .map(|w| w[1].to_string()),
                child: Mutex::new(None),
                owned: true,
            };
            match server.launch() {
                Ok(()) => return server,
                Err(e) => {
                    last_error = format!("port {port}: {e}\n{}", server.log_tail(20));
                    // `server` is dropped here: kills what is left, removes the dir.
                }
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts; last: {last_error}");
    }

    /// Like [`RedisServer::start`], also listening on a Unix socket (`redis.sock` in its
    /// temp dir; see [`RedisServer::unix_socket`]).
    pub fn start_unix() -> RedisServer {
        Self::start_with(&["--unixsocket", UNIX_SOCKET, "--unixsocketperm", "700"])
    }

    /// The Unix socket the server listens on (started with [`RedisServer::start_unix`]).
    pub fn unix_socket(&self) -> Option<PathBuf> {
        let unix = self.extra_args.iter().any(|a| a == "--unixsocket");
        self.dir
            .as_ref()
            .filter(|_| unix)
            .map(|d| d.join(UNIX_SOCKET))
    }

    /// A handle to a server this process does not own (`"host:port"`).
    fn external(addr: &str) -> RedisServer {
        let (host, port) = addr
            .trim()
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .unwrap_or_else(|| panic!("bad server address {addr:?}: expected HOST:PORT"));
        RedisServer {
            host,
            port,
            dir: None,
            extra_args: Vec::new(),
            password: None,
            child: Mutex::new(None),
            owned: false,
        }
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            &self.host,
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &dir.to_string_lossy(),
            "--logfile",
            "redis.log",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Spawns the process (port, dir and args already set) and waits until it answers.
    fn launch(&mut self) -> Result<(), StartError> {
        let dir = self.dir.clone().expect("launch on an owned server");
        let log = dir.join("redis.log");
        // Readiness is read from our own log (not by asking the port, which could be answered
        // by another process, or need a password): only what this launch appends counts.
        let log_start = fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
        let mut cmd = Command::new("redis-server");
        cmd.args(self.args(&dir))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_with_pdeathsig(cmd).map_err(StartError::Spawn)?;
        *lock(&self.child) = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_reap() {
                return Err(StartError::Exited(status));
            }
            let ready = fs::read(&log).is_ok_and(|text| {
                String::from_utf8_lossy(text.get(log_start..).unwrap_or_default())
                    .contains("Ready to accept connections")
            });
            if ready && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill_child();
                return Err(StartError::Timeout);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `"redis://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }

    /// Pid of the running process; `None` once stopped/killed/exited, and for servers this
    /// process does not own.
    pub fn pid(&self) -> Option<u32> {
        self.try_reap();
        lock(&self.child).as_ref().map(|c| c.id())
    }

    /// The server's temp dir (`None` for servers this process does not own).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the process is running (for servers not owned: whether it answers PING).
    pub fn is_running(&self) -> bool {
        if self.owned {
            self.pid().is_some()
        } else {
            self.query_string(&["PING"]).is_ok()
        }
    }

    /// The last `lines` lines of the server's log file (empty if not owned or unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let log = fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn assert_owned(&self, what: &str) {
        assert!(
            self.owned,
            "cannot {what} {}: this process does not own it (it came from the environment)",
            self.addr()
        );
    }

    /// Reaps the child if it has exited; returns its exit status then.
    fn try_reap(&self) -> Option<ExitStatus> {
        let mut guard = lock(&self.child);
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                forget_pid(child.id());
                *guard = None;
                Some(status)
            }
            Ok(None) => None,
            Err(_) => None,
        }
    }

    fn kill_child(&self) {
        let mut guard = lock(&self.child);
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
            forget_pid(child.id());
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s; waits for the exit.
    /// No-op if not running.
    pub fn stop(&mut self) {
        self.assert_owned("stop");
        let mut guard = lock(&self.child);
        let Some(mut child) = guard.take() else {
            return;
        };
        let _ = send_signal(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
        forget_pid(child.id());
    }

    /// SIGKILL; waits for the exit. No-op if not running.
    pub fn kill(&mut self) {
        self.assert_owned("kill");
        self.kill_child();
    }

    /// Starts the server again on the same port, in the same dir, with the same args (stops it
    /// first if it is running); waits until it answers PING. Cluster nodes keep their
    /// `nodes.conf`, so they rejoin as the same node.
    pub fn restart(&mut self) {
        self.assert_owned("restart");
        self.stop();
        // The port may briefly be unbindable right after the old process died.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "vshm-tests: restart of {} failed ({e}), retrying",
                        self.addr()
                    );
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "restart of redis-server {} failed: {e}\n{}",
                    self.addr(),
                    self.log_tail(20)
                ),
            }
        }
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT args...` (bounded to 30 s) and returns its stdout,
    /// trimmed. If redis-cli exits non-zero (e.g. cannot connect), its stderr is appended.
    /// Panics if redis-cli cannot be run or times out.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args([CLI_TIMEOUT_SECS, "redis-cli", "-h", &self.host, "-p"])
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli {args:?}: {e}"));
        assert!(
            out.status.code() != Some(124),
            "redis-cli -p {} {args:?} timed out after {CLI_TIMEOUT_SECS}s",
            self.port
        );
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            s.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        s.trim().to_string()
    }

    /// One command over a fresh connection, bounded; the reply as a string.
    fn query_string(&self, args: &[&str]) -> redis::RedisResult<String> {
        let url = match &self.password {
            Some(pw) => format!("redis://:{pw}@{}:{}", self.host, self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url)?;
        let mut con = client.get_connection_with_timeout(QUERY_TIMEOUT)?;
        con.set_read_timeout(Some(QUERY_TIMEOUT))?;
        con.set_write_timeout(Some(QUERY_TIMEOUT))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }

    /// `INFO replication` role, if the server answers.
    fn role(&self) -> Option<Role> {
        let info = self.query_string(&["INFO", "replication"]).ok()?;
        match info_field(&info, "role")? {
            "master" => Some(Role::Primary),
            "slave" => Some(Role::Replica),
            _ => None,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        self.kill_child();
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
        release_port(self.port);
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("addr", &self.addr())
            .field("owned", &self.owned)
            .field("pid", &lock(&self.child).as_ref().map(|c| c.id()))
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Primary,
    Replica,
}

/// `field:value` lookup in an INFO reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

// ---------------------------------------------------------------------------------------------
// shared servers

/// The standalone server shared by all tests of this process, started on first use; or the
/// server named by `VSHM_TEST_STANDALONE` (`HOST:PORT`), which this process does not own.
/// Tests may FLUSHALL it; they must not stop it.
pub fn shared_standalone() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("VSHM_TEST_STANDALONE") {
        Ok(addr) if !addr.trim().is_empty() => RedisServer::external(&addr),
        _ => RedisServer::start(),
    })
}

/// The cluster shared by all tests of this process, started on first use; or the nodes named
/// by `VSHM_TEST_CLUSTER` (`HOST:PORT,HOST:PORT,...`). Tests may FLUSHALL it; tests that kill
/// nodes or fail over must start their own [`RedisCluster`].
pub fn shared_cluster() -> &'static RedisCluster {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("VSHM_TEST_CLUSTER") {
        Ok(addrs) if !addrs.trim().is_empty() => RedisCluster {
            nodes: addrs
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(RedisServer::external)
                .collect(),
        },
        _ => RedisCluster::start(),
    })
}

// ---------------------------------------------------------------------------------------------
// key slots

/// The cluster hash slot of `key`: CRC16-XMODEM mod 16384, hashing only the first non-empty
/// `{hashtag}` if there is one (the core's [`vshm_core::keys::slot_of`]).
pub fn key_slot(key: &[u8]) -> u16 {
    vshm_core::keys::slot_of(key)
}
