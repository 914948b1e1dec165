//! Run the real `vshmd` binary on a private socket for tests and
//! benchmarks: start it against a standalone server or a cluster, ask it
//! for stats, stop, kill or restart it. Every wait is bounded; the daemon
//! dies with the process that started it (PR_SET_PDEATHSIG).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `vshmd` binary of this build: `$VSHMD_BIN` if set, else the one
/// beside the running executable (`target/<profile>/vshmd`, also for test
/// binaries in `target/<profile>/deps/`), built with `cargo build -p vshmd`
/// (same profile) when it is not there yet.
pub fn vshmd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("VSHMD_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let mut dir = exe.parent().expect("exe dir").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join("vshmd");
        if !bin.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "vshmd", "--bin", "vshmd"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build -p vshmd");
            assert!(st.success(), "cargo build -p vshmd failed");
            assert!(
                bin.exists(),
                "no vshmd at {} after the build",
                bin.display()
            );
        }
        bin
    })
    .clone()
}

/// Where the daemon's servers are.
pub enum Servers<'a> {
    Standalone(&'a str),
    Cluster(&'a [String]),
}

pub struct Vshmd {
    child: Option<Child>,
    /// The `vshmd` binary this daemon runs.
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// `[server]` section for `servers`. The request timeout is 5 s rather
/// than the default 250 ms: these are debug builds on a small shared
/// machine, and the tests are about errors, not speed (a burst of 1,000
/// requests from one client can hold others up on the shared connection
/// for a while there).
pub fn server_toml(servers: &Servers<'_>) -> String {
    match servers {
        Servers::Standalone(a) => {
            format!("[server]\naddresses = [\"{a}\"]\nmode = \"standalone\"\nrequest_timeout_ms = 5000\n")
        }
        Servers::Cluster(addrs) => format!(
            "[server]\naddresses = [{}]\nmode = \"cluster\"\nrequest_timeout_ms = 5000\n",
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Spawn with the death signal set, so nothing outlives the test process.
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    spawn_tied_nice(cmd, 0)
}

/// Like [`spawn_tied`], with a nice value (the daemon serves many client
/// processes on a small machine: it runs at -10, as a deployment would give
/// it priority; failure to renice is ignored).
pub fn spawn_tied_nice(cmd: &mut Command, nice: i32) -> std::io::Result<Child> {
    // SAFETY: prctl and setpriority are async-signal-safe; the closure
    // touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if nice != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

impl Vshmd {
    /// Start a daemon: `top` is TOML for the top-level keys (before any
    /// table), `servers` where it connects, `tables` extra tables.
    pub fn start(top: &str, servers: Servers<'_>, tables: &str) -> Vshmd {
        Vshmd::start_bin(&vshmd_bin(), top, servers, tables)
    }

    /// [`Vshmd::start`] with an explicit `vshmd` binary.
    pub fn start_bin(bin: &Path, top: &str, servers: Servers<'_>, tables: &str) -> Vshmd {
        Vshmd::start_raw(bin, top, &server_toml(&servers), tables)
    }

    /// Like [`Vshmd::start`] with a `[server]` section of the caller's (e.g. another
    /// `request_timeout_ms`).
    pub fn start_with_server(top: &str, server_section: &str, tables: &str) -> Vshmd {
        Vshmd::start_raw(&vshmd_bin(), top, server_section, tables)
    }

    fn start_raw(bin: &Path, top: &str, server_section: &str, tables: &str) -> Vshmd {
        let dir = tempfile::Builder::new()
            .prefix("vshmd-test-")
            .tempdir()
            .expect("tempdir");
        // Others may traverse it (so the socket's own mode decides).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("vshmd.sock");
        let config = dir.path().join("vshmd.toml");
        let log = dir.path().join("vshmd.log");
        // `top` may set its own log_level (benchmarks use "warn").
        let log_level = if top.lines().any(|l| l.trim_start().starts_with("log_level")) {
            ""
        } else {
            "log_level = \"info,vshmd=debug\"\n"
        };
        let text = format!(
            "socket_path = \"{}\"\n{log_level}{top}\n{server_section}\n{tables}\n",
            socket.display(),
        );
        std::fs::write(&config, text).expect("write config");
        let mut d = Vshmd {
            child: None,
            bin: bin.to_owned(),
            dir,
            socket,
            config,
            log,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = spawn_tied_nice(
            Command::new(&self.bin)
                .arg("--config")
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log),
            -10,
        )
        .expect("spawn vshmd");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20));
    }

    /// Until the daemon answers stats (its socket is up).
    pub fn wait_ready(&mut self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            // Any answer (stats, or a refusal when our uid is not allowed)
            // means the socket is up.
            match vshm_client::daemon::stats(&self.socket, false, Duration::from_secs(2)) {
                Ok(_) => return,
                Err(e) if e.message.contains("vshmd refused") => return,
                Err(_) => {}
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vshmd exited at startup ({st}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "vshmd not ready after {bound:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `vshmd stats` through the binary (exactly what an operator runs).
    pub fn stats_cli(&self, prometheus: bool) -> Output {
        let mut c = Command::new(&self.bin);
        c.arg("stats")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--timeout-ms")
            .arg("5000");
        if prometheus {
            c.arg("--prometheus");
        }
        c.output().expect("run vshmd stats")
    }

    /// Stats text through the library call.
    pub fn stats(&self) -> String {
        vshm_client::daemon::stats(&self.socket, false, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("stats: {}\n{}", e.message, self.log_text()))
    }

    /// "clients: N registered now" from the stats.
    pub fn clients(&self) -> usize {
        parse_clients(&self.stats())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn sigterm(&mut self, bound: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: signals our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        wait_bounded(&mut c, bound).unwrap_or_else(|| {
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "vshmd did not exit within {bound:?} of SIGTERM:\n{}",
                self.log_text()
            )
        })
    }

    /// Start again with the same configuration (same socket path).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Vshmd {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- vshmd log ---\n{}", self.log_text());
        }
    }
}

pub fn wait_bounded(c: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn parse_clients(stats: &str) -> usize {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("clients: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no client count in:\n{stats}"))
}

/// Lines of the per-client table (after its header).
pub fn client_rows(stats: &str) -> Vec<Vec<String>> {
    stats
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("ID "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Descriptors of process `pid` that are memfd segments (their link text).
pub fn memfd_links(pid: i32) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.to_string_lossy().to_string();
                if t.starts_with("/memfd:") {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// Mappings of segments in process `pid`.
pub fn memfd_maps(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/memfd:vshm-segment"))
        .count()
}

/// Read a child's stdout to the end with a bound (the child is killed
/// past it).
pub fn output_bounded(mut c: Child, bound: Duration) -> (Option<ExitStatus>, String, String) {
    let mut out = c.stdout.take();
    let mut err = c.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = err.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let st = wait_bounded(&mut c, bound);
    if st.is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
    (
        st,
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

pub fn file_mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}
