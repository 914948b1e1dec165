//! `vshmd.toml`: the daemon's configuration. Every key has a default, so an
//! empty file is valid (a standalone server on 127.0.0.1:6379, the socket
//! at `/run/vshm/vshmd.sock`, only the daemon's own uid allowed). See
//! `daemon/vshmd.example.toml` and `docs/operations.md` for the reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vshm_protocol::layout::{MAX_RING, MIN_RING};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vshm/vshmd.toml";
/// Where the socket is created when `socket_path` is not set.
pub const DEFAULT_SOCKET_PATH: &str = "/run/vshm/vshmd.sock";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event (default).
    #[default]
    Human,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Ring sizes of the client segments, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// Submission ring size of a client that asks for none. Default 1 MiB.
    pub sq_size: u64,
    /// Completion ring size of a client that asks for none. Default 1 MiB.
    pub cq_size: u64,
    /// Largest submission ring a client may ask for; a registration asking
    /// for more is refused with a reason naming this key. Default 16 MiB.
    pub max_sq_size: u64,
    /// Largest completion ring a client may ask for (refused above, like
    /// `max_sq_size`). Default 16 MiB.
    pub max_cq_size: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            sq_size: 1 << 20,
            cq_size: 1 << 20,
            max_sq_size: 16 << 20,
            max_cq_size: 16 << 20,
        }
    }
}

impl SegmentConfig {
    /// The ring size for a client request `asked` (0: the default),
    /// raised to at least 4 KiB and rounded up to a power of two. Asking
    /// for more than `max` is refused with a reason naming `key`.
    pub fn ring_size(asked: u64, default: u64, max: u64, key: &str) -> Result<u64, String> {
        let want = if asked == 0 { default } else { asked };
        if want > max {
            return Err(format!(
                "requested ring of {want} bytes exceeds this vshmd's limit of {max} bytes ([segment].{key})"
            ));
        }
        Ok(want.max(MIN_RING).next_power_of_two().min(max))
    }
}

/// Limits per client and in total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Clients registered at once; more are refused. Default 1024.
    pub max_clients: u32,
    /// Clients one uid may have registered at once (0: no limit). Default 0.
    pub max_clients_per_uid: u32,
    /// Requests one client may have in flight in the daemon; at the limit
    /// the daemon stops reading that client's ring (backpressure for that
    /// client only). Default 1000.
    pub max_inflight: u32,
    /// Bytes one client may have outstanding in the daemon: requests taken
    /// but not completed (a fragmented request counts its whole size from
    /// its first fragment) plus its completions waiting for ring space. At
    /// the limit the daemon stops reading that client's ring; a single
    /// request larger than the limit gets an `Overloaded` error (and the
    /// client stays registered). Default 64 MiB; at least 64 KiB.
    pub max_outstanding_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 1024,
            max_clients_per_uid: 0,
            max_inflight: 1000,
            max_outstanding_bytes: 64 << 20,
        }
    }
}

/// Credentials a client may ask for by name (`Settings::auth_profile`).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthProfile {
    /// ACL user name. Default none (the `default` user).
    pub username: Option<String>,
    /// Password. Default none. Prefer `password_file`.
    pub password: Option<String>,
    /// A file whose first line is the password (read at startup).
    pub password_file: Option<PathBuf>,
    /// Uids allowed to use this profile (besides `allowed_gids`); both
    /// empty: every client allowed to connect may use it. Default empty.
    pub allowed_uids: Vec<u32>,
    /// Gids (primary or supplementary) allowed to use this profile.
    pub allowed_gids: Vec<u32>,
}

impl std::fmt::Debug for AuthProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthProfile")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("allowed_uids", &self.allowed_uids)
            .field("allowed_gids", &self.allowed_gids)
            .finish()
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The registration socket. Default `/run/vshm/vshmd.sock`.
    pub socket_path: PathBuf,
    /// Permission bits of the socket (write it in octal: `0o660`). A user
    /// needs write permission to connect. Default 0o660.
    pub socket_mode: u32,
    /// Group owning the socket (name or number). Default: the daemon's.
    pub socket_group: Option<String>,
    /// Uids allowed to register (checked with SO_PEERCRED). Default: only
    /// the daemon's own uid. Set `[]` to allow no uid (then only
    /// `allowed_gids` admit).
    pub allowed_uids: Option<Vec<u32>>,
    /// Gids allowed to register: the peer's primary gid or any of its
    /// supplementary groups (SO_PEERGROUPS). Default empty.
    pub allowed_gids: Vec<u32>,
    /// `human` or `json`. Default human.
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `vshmd=debug,vshm_core=info`, ...).
    /// Default `info`.
    pub log_level: String,
    /// Serve Prometheus metrics over HTTP on this loopback address
    /// (`127.0.0.1:9187`). Default none (off).
    pub metrics_addr: Option<SocketAddr>,
    /// Threads of the core. 1 (default): one thread runs everything (a
    /// current-thread runtime: no hand-off between threads; measured best
    /// where clients, daemon and servers share few cores). More: a
    /// multi-thread runtime with that many workers; 0: one per CPU.
    pub worker_threads: usize,
    /// How long a client's serve loop keeps polling its empty submission
    /// ring (yielding to the core's other tasks) before it sleeps on the
    /// client's doorbell, in microseconds. 0: sleep at once (the client
    /// then rings the doorbell for its next request). Default 0
    /// (docs/performance.md: on 2 cores a spinning serve loop takes the
    /// CPU the servers and clients need).
    pub serve_spin_us: u64,
    /// Shared multiplexed connections per server node (per auth profile
    /// and database); clients are spread over them round robin. Default 1.
    pub pool_size: u32,
    /// Connect the default backend at startup (and keep it while no client
    /// is registered) rather than on the first registration. Default true.
    pub preconnect: bool,
    /// On SIGTERM/SIGINT: how long in-flight requests get to complete
    /// before the rest get a `Closing` error. Default 5000 ms.
    pub shutdown_grace_ms: u64,
    /// Bound on a client's first message after connecting. Default 5000 ms.
    pub handshake_timeout_ms: u64,
    /// The servers: every key of the core's connection settings
    /// (addresses, mode, tls, ca_file, username, password, protocol,
    /// timeouts, reconnect, read_from, ...). See docs/operations.md.
    pub server: vshm_core::Config,
    /// Named credentials clients may choose (`auth_profile`).
    pub auth_profiles: BTreeMap<String, AuthProfile>,
    pub segment: SegmentConfig,
    pub limits: Limits,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket_path: PathBuf::from(DEFAULT_SOCKET_PATH),
            socket_mode: 0o660,
            socket_group: None,
            allowed_uids: None,
            allowed_gids: Vec::new(),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            metrics_addr: None,
            worker_threads: 1,
            serve_spin_us: 0,
            pool_size: 1,
            preconnect: true,
            shutdown_grace_ms: 5000,
            handshake_timeout_ms: 5000,
            server: vshm_core::Config::default(),
            auth_profiles: BTreeMap::new(),
            segment: SegmentConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl DaemonConfig {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<DaemonConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<DaemonConfig, String> {
        let mut c: DaemonConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Check everything that can be checked without side effects, and
    /// read password files.
    pub fn validate(&mut self) -> Result<(), String> {
        self.server
            .validate()
            .map_err(|e| format!("[server]: {}", e.message))?;
        if self.server.max_inflight != vshm_core::Config::default().max_inflight
            && self.server.max_inflight != self.limits.max_inflight
        {
            return Err(
                "[server].max_inflight is not used by vshmd: set [limits].max_inflight".into(),
            );
        }
        self.server.max_inflight = self.limits.max_inflight;
        if self.socket_mode > 0o777 {
            return Err(format!(
                "socket_mode {} is not a permission mode: write it in octal, e.g. socket_mode = 0o660",
                self.socket_mode
            ));
        }
        if self.socket_mode & 0o200 == 0 {
            return Err("socket_mode must give the owner write permission (0o600 at least)".into());
        }
        if self.socket_path.as_os_str().is_empty() {
            return Err("socket_path is empty".into());
        }
        // sun_path holds 107 bytes plus the terminating NUL.
        if self.socket_path.as_os_str().len() > 107 {
            return Err(format!(
                "socket_path is longer than 107 bytes: {}",
                self.socket_path.display()
            ));
        }
        if let Some(a) = self.metrics_addr {
            if !a.ip().is_loopback() {
                return Err(format!(
                    "metrics_addr {a} is not a loopback address (metrics name client pids and names)"
                ));
            }
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err("pool_size must be 1..=64".into());
        }
        if self.limits.max_inflight == 0 {
            return Err("[limits].max_inflight must be > 0".into());
        }
        if self.limits.max_outstanding_bytes < 64 << 10 {
            return Err("[limits].max_outstanding_bytes must be at least 65536 (64 KiB)".into());
        }
        if self.limits.max_clients == 0 {
            return Err("[limits].max_clients must be > 0".into());
        }
        if self.shutdown_grace_ms > 3_600_000
            || self.handshake_timeout_ms == 0
            || self.handshake_timeout_ms > 600_000
        {
            return Err(
                "shutdown_grace_ms must be <= 1 h and handshake_timeout_ms in 1 ms..=10 min".into(),
            );
        }
        let s = &self.segment;
        for (name, v) in [
            ("sq_size", s.sq_size),
            ("cq_size", s.cq_size),
            ("max_sq_size", s.max_sq_size),
            ("max_cq_size", s.max_cq_size),
        ] {
            if !v.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&v) {
                return Err(format!(
                    "[segment].{name} = {v}: must be a power of two in 4096..=1 GiB"
                ));
            }
        }
        if s.sq_size > s.max_sq_size || s.cq_size > s.max_cq_size {
            return Err(
                "[segment]: sq_size/cq_size must not exceed max_sq_size/max_cq_size".into(),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(format!("log_level {:?}: {e}", self.log_level));
        }
        for (name, p) in self.auth_profiles.iter_mut() {
            if name.is_empty() || name.len() > 64 {
                return Err("auth profile names must be 1..=64 characters".into());
            }
            if let Some(f) = &p.password_file {
                if p.password.is_some() {
                    return Err(format!(
                        "[auth_profiles.{name}]: set password or password_file, not both"
                    ));
                }
                let text = std::fs::read_to_string(f).map_err(|e| {
                    format!("[auth_profiles.{name}]: cannot read {}: {e}", f.display())
                })?;
                p.password = Some(text.lines().next().unwrap_or("").to_string());
            }
        }
        Ok(())
    }

    /// The uids allowed to register.
    pub fn effective_allowed_uids(&self) -> Vec<u32> {
        match &self.allowed_uids {
            Some(v) => v.clone(),
            None => vec![nix::unistd::getuid().as_raw()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default_and_example_parses() {
        let c = DaemonConfig::parse("").unwrap();
        assert_eq!(c, DaemonConfig::default());
        let example = include_str!("../vshmd.example.toml");
        let c = DaemonConfig::parse(example).unwrap();
        assert_eq!(c.server.mode, vshm_core::config::Mode::Cluster);
        assert_eq!(c.socket_mode, 0o660);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "socket_mode = 660",
            "socket_mode = 0o444",
            "metrics_addr = \"0.0.0.0:9187\"",
            "pool_size = 0",
            "[segment]\nsq_size = 5000",
            "[segment]\nsq_size = 33554432",
            "[server]\naddresses = []",
            "[server]\nmax_inflight = 5",
            "[limits]\nmax_outstanding_bytes = 1000",
            "unknown = 1",
            "log_level = \"[[[\"",
        ] {
            assert!(DaemonConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_sizes_are_rounded_and_bounded() {
        let size = |asked| SegmentConfig::ring_size(asked, 1 << 20, 16 << 20, "max_sq_size");
        assert_eq!(size(0), Ok(1 << 20));
        assert_eq!(size(1), Ok(4096));
        assert_eq!(size(5000), Ok(8192));
        assert_eq!(size(16 << 20), Ok(16 << 20));
        for too_big in [(16 << 20) + 1, u64::MAX] {
            let e = size(too_big).unwrap_err();
            assert!(e.contains("[segment].max_sq_size"), "{e}");
        }
    }
}
