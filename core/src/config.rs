//! Connection settings of one backend (one Valkey/Redis deployment as seen
//! with one set of credentials).
//!
//! The daemon reads a [`Config`] from TOML; every field has a default, so an
//! empty table is a valid config (a standalone server on `127.0.0.1:6379`).
//! Durations are integers in milliseconds (`*_ms`) to keep TOML simple.
//!
//! ```toml
//! addresses = ["10.0.0.1:6379", "10.0.0.2:6379"]
//! mode = "cluster"
//! tls = true
//! ca_file = "/etc/vshm/ca.pem"
//! username = "app"
//! password = "secret"
//! client_name = "billing"
//! protocol = "resp3"
//! request_timeout_ms = 250
//! read_from = "prefer_replica"
//!
//! [reconnect]
//! number_of_retries = 5
//! factor_ms = 100
//! exponent_base = 2
//! jitter_percent = 20
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vshm_protocol::msg::{ClientError, ErrorKind};

/// Standalone server or cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One server (its replicas are not used).
    #[default]
    Standalone,
    /// A cluster: `addresses` are seed nodes; the topology is discovered.
    Cluster,
}

/// The RESP version spoken with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Resp2,
    /// Default: replies keep their RESP3 types (map, set, double, ...).
    #[default]
    Resp3,
}

impl Protocol {
    pub(crate) fn to_redis(self) -> redis::ProtocolVersion {
        match self {
            Protocol::Resp2 => redis::ProtocolVersion::RESP2,
            Protocol::Resp3 => redis::ProtocolVersion::RESP3,
        }
    }
}

/// Which node of a shard serves read-only commands (cluster mode only;
/// a standalone backend always uses its one server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Default: every command goes to the slot's primary.
    #[default]
    Primary,
    /// Reads go to a random replica of the shard (the primary if it has
    /// none). redis-rs `RandomReplicaStrategy`.
    PreferReplica,
    /// Reads rotate over the shard's replicas. redis-rs
    /// `RoundRobinReplicaStrategy`.
    RoundRobinReplicas,
}

/// Reconnect backoff, GLIDE style: attempt `n` waits up to
/// `factor_ms * exponent_base^n` milliseconds, `jitter_percent` of it random.
/// After `number_of_retries` attempts the wait stays at its maximum and
/// attempts go on until the server is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Attempts with a growing wait. Default 5 (GLIDE's).
    pub number_of_retries: u32,
    /// Base wait in milliseconds. Default 100 (GLIDE's).
    pub factor_ms: u32,
    /// Growth per attempt. Default 2 (GLIDE's).
    pub exponent_base: u32,
    /// Random share of each wait, 0..=100. Default 20 (GLIDE's).
    pub jitter_percent: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            number_of_retries: 5,
            factor_ms: 100,
            exponent_base: 2,
            jitter_percent: 20,
        }
    }
}

/// Cap on one backoff wait, whatever the parameters say.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Backoff {
    /// The wait before reconnect attempt `attempt` (0-based), without
    /// jitter: `factor_ms * exponent_base^min(attempt, number_of_retries)`,
    /// capped at 60 s.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let n = attempt.min(self.number_of_retries);
        let mult = u64::from(self.exponent_base.max(1)).saturating_pow(n);
        let ms = u64::from(self.factor_ms).saturating_mul(mult);
        Duration::from_millis(ms).min(MAX_BACKOFF)
    }

    /// The wait before attempt `attempt` with jitter: the base delay minus a
    /// random share of up to `jitter_percent` of it.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let pct = u64::from(self.jitter_percent.min(100));
        let base_ms = base.as_millis() as u64;
        let span = base_ms * pct / 100;
        if span == 0 {
            return base;
        }
        let cut = rand::random_range(0..=span);
        Duration::from_millis(base_ms - cut)
    }
}

/// The settings of one backend. Two clients whose configs agree on the
/// [`PoolKey`](crate::engine::PoolKey) fields share one backend (one set of
/// connections); the first client's timeouts and backoff then apply to it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `"host:port"` entries (IPv6 as `"[::1]:6379"`), or a Unix socket
    /// `"unix:///path/to/sock"` (standalone only; also `valkey+unix://`,
    /// `redis+unix://`). Standalone: the one server (only the first entry
    /// is used). Cluster: seed nodes.
    /// Default `["127.0.0.1:6379"]`.
    pub addresses: Vec<String>,
    /// Default standalone.
    pub mode: Mode,
    /// Connect with TLS. Default off.
    pub tls: bool,
    /// PEM file of the CA to trust (instead of the system roots). Requires
    /// `tls = true`. Default none.
    pub ca_file: Option<PathBuf>,
    /// ACL user name. Default none (the `default` user).
    pub username: Option<String>,
    /// Password. Default none.
    pub password: Option<String>,
    /// Sent with `CLIENT SETNAME` on every connection the backend opens.
    /// Default none.
    pub client_name: Option<String>,
    /// Logical database (standalone; cluster only if the server supports
    /// databases in cluster mode). Default 0.
    pub database: u32,
    /// Default RESP3.
    pub protocol: Protocol,
    /// Timeout of a request that does not set its own (`timeout_ms = 0`).
    /// Default 250 ms (GLIDE's). Must be > 0.
    pub request_timeout_ms: u32,
    /// Bound on establishing one connection (TCP + TLS + HELLO/AUTH).
    /// Default 2000 ms (GLIDE's).
    pub connection_timeout_ms: u32,
    /// Reconnect backoff. Default GLIDE's (5 retries, 100 ms, base 2, 20 %).
    pub reconnect: Backoff,
    /// Default primary.
    pub read_from: ReadFrom,
    /// Most requests one client may have in flight (enforced by the
    /// dispatcher). Default 1000 (GLIDE's).
    pub max_inflight: u32,
    /// Cluster: how often the topology is checked (`CLUSTER SLOTS`); a
    /// changed topology rebuilds the cluster connection. 0 disables the
    /// periodic check (MOVED/ASK and connection errors still refresh it).
    /// Default 60000 ms (GLIDE's).
    pub topology_refresh_interval_ms: u32,
    /// Most dedicated connections for blocking commands (BLPOP, XREAD
    /// BLOCK, ...) open at once; more blocking requests wait for one to
    /// free up within their timeout. Default 64.
    pub max_blocking_connections: u32,
    /// Bound on a blocking command that blocks "forever" (`BLPOP k 0`,
    /// `XREAD BLOCK 0`) when its request sets no `timeout_ms`. Default
    /// 3600000 ms (1 h). Closing the client ends the wait sooner.
    pub block_forever_limit_ms: u64,
    /// Largest reply taken from a server, in bytes on the wire plus 32 per
    /// element (about what the decoded value takes). A larger reply (an
    /// `LRANGE`, `HGETALL`, `KEYS` of a huge collection) is read and
    /// dropped as it arrives, never held whole, and fails its own request
    /// with a `Request` error; the connection and every other request on
    /// it are unaffected. Default 537919488 (513 MiB: a server's largest
    /// string, 512 MiB, with room for its header). At least 1048576. The
    /// core's own `CLUSTER SLOTS` replies go through the same limit (about
    /// 600 bytes per slot range with one replica).
    pub max_reply_bytes: u64,
}

/// [`Config::max_reply_bytes`]'s default: 513 MiB (a 512 MiB string, the
/// largest a server holds by default, weighs a little more).
pub const DEFAULT_MAX_REPLY_BYTES: u64 = 513 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            addresses: vec!["127.0.0.1:6379".to_string()],
            mode: Mode::Standalone,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            client_name: None,
            database: 0,
            protocol: Protocol::Resp3,
            request_timeout_ms: 250,
            connection_timeout_ms: 2000,
            reconnect: Backoff::default(),
            read_from: ReadFrom::Primary,
            max_inflight: 1000,
            topology_refresh_interval_ms: 60_000,
            max_blocking_connections: 64,
            block_forever_limit_ms: vshm_protocol::bound::DEFAULT_BLOCK_FOREVER_LIMIT_MS,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addresses", &self.addresses)
            .field("mode", &self.mode)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name)
            .field("database", &self.database)
            .field("protocol", &self.protocol)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connection_timeout_ms", &self.connection_timeout_ms)
            .field("reconnect", &self.reconnect)
            .field("read_from", &self.read_from)
            .field("max_inflight", &self.max_inflight)
            .field(
                "topology_refresh_interval_ms",
                &self.topology_refresh_interval_ms,
            )
            .field("max_blocking_connections", &self.max_blocking_connections)
            .field("block_forever_limit_ms", &self.block_forever_limit_ms)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

/// A parsed server address: `"host:port"`, or a Unix socket.
///
/// A Unix socket is `host` = its absolute path and `port` = 0 (port 0 is
/// never a TCP server's, so the two cannot be confused); use
/// [`Endpoint::unix`] and [`Endpoint::unix_path`] rather than the
/// convention itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// The Unix socket at `path`.
    pub fn unix(path: impl Into<String>) -> Endpoint {
        Endpoint {
            host: path.into(),
            port: 0,
        }
    }

    /// The socket path when this is a Unix socket address.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        (self.port == 0).then(|| std::path::Path::new(&self.host))
    }
}

/// `host:port`, `[v6]:port`, or `unix:///path`.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 0 {
            write!(f, "unix://{}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The URI schemes of a Unix socket address.
pub const UNIX_SCHEMES: [&str; 3] = ["unix", "valkey+unix", "redis+unix"];

/// Whether `scheme` (without `://`, any case) names a Unix socket.
pub fn is_unix_scheme(scheme: &str) -> bool {
    UNIX_SCHEMES.iter().any(|u| scheme.eq_ignore_ascii_case(u))
}

/// Parse one server address of [`Config::addresses`]: `"host:port"`,
/// `"[v6]:port"`, or a Unix socket `"unix:///path/to/sock"` (also
/// `valkey+unix://` and `redis+unix://`; the path must be absolute).
pub fn parse_address(s: &str) -> Result<Endpoint, ClientError> {
    let t = s.trim();
    if let Some((scheme, path)) = t.split_once("://") {
        if !is_unix_scheme(scheme) {
            return Err(invalid(format!(
                "bad address {s:?}: expected \"host:port\" or \"unix:///path\""
            )));
        }
        if !path.starts_with('/') || path.len() < 2 || path.contains('\0') {
            return Err(invalid(format!(
                "bad address {s:?}: a Unix socket address needs an absolute path (\"unix:///path/to/sock\")"
            )));
        }
        return Ok(Endpoint::unix(path));
    }
    parse_endpoint(t)
}

/// Parse `"host:port"` or `"[v6]:port"` (TCP only; see [`parse_address`]).
pub fn parse_endpoint(s: &str) -> Result<Endpoint, ClientError> {
    let bad = || {
        ClientError::new(
            ErrorKind::InvalidRequest,
            format!("bad address {s:?}: expected \"host:port\""),
        )
    };
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorKind::InvalidRequest, msg)
}

impl Config {
    /// Check the settings; errors are `InvalidRequest` with the reason.
    pub fn validate(&self) -> Result<(), ClientError> {
        let endpoints = self.endpoints()?;
        if endpoints.iter().any(|e| e.unix_path().is_some()) {
            if self.mode == Mode::Cluster {
                return Err(invalid(
                    "a cluster cannot be reached over a Unix socket (its nodes announce TCP \
                     addresses): use host:port seeds, or mode = standalone",
                ));
            }
            if self.tls {
                return Err(invalid("tls is not available over a Unix socket"));
            }
        }
        if self.ca_file.is_some() && !self.tls {
            return Err(invalid("ca_file requires tls = true"));
        }
        if self.request_timeout_ms == 0 {
            return Err(invalid("request_timeout_ms must be > 0"));
        }
        if self.connection_timeout_ms == 0 {
            return Err(invalid("connection_timeout_ms must be > 0"));
        }
        if self.reconnect.jitter_percent > 100 {
            return Err(invalid("reconnect.jitter_percent must be 0..=100"));
        }
        if self.max_blocking_connections == 0 {
            return Err(invalid("max_blocking_connections must be > 0"));
        }
        if self.block_forever_limit_ms == 0 {
            return Err(invalid("block_forever_limit_ms must be > 0"));
        }
        if self.max_reply_bytes < 1 << 20 {
            return Err(invalid(
                "max_reply_bytes must be at least 1048576 (the core's own CLUSTER SLOTS replies go \
                 through the same limit)",
            ));
        }
        if let Some(name) = &self.client_name {
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(invalid(
                    "client_name must be non-empty without spaces or control characters",
                ));
            }
        }
        Ok(())
    }

    /// The parsed addresses (at least one).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, ClientError> {
        if self.addresses.is_empty() {
            return Err(invalid("addresses is empty"));
        }
        self.addresses.iter().map(|a| parse_address(a)).collect()
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.request_timeout_ms))
    }

    /// `connection_timeout_ms` as a duration.
    pub fn connection_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.connection_timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_is_the_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
    }

    #[test]
    fn parses_example_toml() {
        let text = r#"
            addresses = ["10.0.0.1:6379", "[::1]:7000"]
            mode = "cluster"
            tls = true
            ca_file = "/etc/vshm/ca.pem"
            username = "app"
            password = "secret"
            client_name = "billing"
            database = 0
            protocol = "resp2"
            request_timeout_ms = 500
            connection_timeout_ms = 1000
            read_from = "round_robin_replicas"
            max_inflight = 64
            topology_refresh_interval_ms = 0

            [reconnect]
            number_of_retries = 3
            factor_ms = 50
        "#;
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.mode, Mode::Cluster);
        assert_eq!(c.protocol, Protocol::Resp2);
        assert_eq!(c.read_from, ReadFrom::RoundRobinReplicas);
        assert_eq!(c.request_timeout(), Duration::from_millis(500));
        assert_eq!(c.reconnect.number_of_retries, 3);
        assert_eq!(c.reconnect.factor_ms, 50);
        // Unset fields of a nested table keep their defaults.
        assert_eq!(c.reconnect.exponent_base, 2);
        assert_eq!(c.reconnect.jitter_percent, 20);
        assert_eq!(
            c.endpoints().unwrap(),
            vec![
                Endpoint {
                    host: "10.0.0.1".into(),
                    port: 6379
                },
                Endpoint {
                    host: "::1".into(),
                    port: 7000
                },
            ]
        );
        assert_eq!(c.endpoints().unwrap()[1].to_string(), "[::1]:7000");
        // Round trip.
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        // The password never shows in Debug output.
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("adresses = []").is_err());
        assert!(toml::from_str::<Config>("mode = \"sentinel\"").is_err());
    }

    #[test]
    fn validation() {
        let bad = |c: Config| c.validate().unwrap_err().kind;
        for a in [
            "",
            "host",
            "host:",
            ":6379",
            "h:0",
            "h:70000",
            "::1:6379",
            "[::1:6379",
        ] {
            let c = Config {
                addresses: vec![a.into()],
                ..Config::default()
            };
            assert_eq!(bad(c), ErrorKind::InvalidRequest, "{a:?}");
        }
        let c = Config {
            addresses: vec![],
            ..Config::default()
        };
        assert_eq!(bad(c), ErrorKind::InvalidRequest);
        let c = Config {
            ca_file: Some("/x".into()),
            ..Config::default()
        };
        assert_eq!(bad(c), ErrorKind::InvalidRequest);
        let c = Config {
            client_name: Some("a b".into()),
            ..Config::default()
        };
        assert_eq!(bad(c), ErrorKind::InvalidRequest);
    }

    #[test]
    fn unix_addresses() {
        for a in [
            "unix:///tmp/v.sock",
            "valkey+unix:///tmp/v.sock",
            "REDIS+UNIX:///tmp/v.sock",
        ] {
            let e = parse_address(a).unwrap();
            assert_eq!(e, Endpoint::unix("/tmp/v.sock"), "{a}");
            assert_eq!(e.unix_path(), Some(std::path::Path::new("/tmp/v.sock")));
            assert_eq!(e.to_string(), "unix:///tmp/v.sock");
        }
        assert_eq!(parse_address("h:1").unwrap().unix_path(), None);
        for a in [
            "unix://",
            "unix:///",
            "unix://tmp/v.sock",
            "tcp://h:1",
            "unix:/x",
        ] {
            assert_eq!(
                parse_address(a).unwrap_err().kind,
                ErrorKind::InvalidRequest,
                "{a:?}"
            );
        }
        let unix = |mode, tls| Config {
            addresses: vec!["unix:///tmp/v.sock".into()],
            mode,
            tls,
            ..Config::default()
        };
        assert!(unix(Mode::Standalone, false).validate().is_ok());
        let e = unix(Mode::Cluster, false).validate().unwrap_err();
        assert!(e.message.contains("cluster"), "{e}");
        assert_eq!(
            unix(Mode::Standalone, true).validate().unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn backoff_grows_then_stays() {
        let b = Backoff::default();
        assert_eq!(b.base_delay(0), Duration::from_millis(100));
        assert_eq!(b.base_delay(1), Duration::from_millis(200));
        assert_eq!(b.base_delay(5), Duration::from_millis(3200));
        assert_eq!(b.base_delay(50), Duration::from_millis(3200));
        for n in 0..10 {
            let d = b.delay(n);
            assert!(d <= b.base_delay(n));
            assert!(d >= b.base_delay(n) * 80 / 100);
        }
        let huge = Backoff {
            number_of_retries: 1000,
            factor_ms: u32::MAX,
            exponent_base: u32::MAX,
            jitter_percent: 100,
        };
        assert_eq!(huge.base_delay(999), MAX_BACKOFF);
    }
}
