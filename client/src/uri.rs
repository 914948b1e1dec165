//! Connection URIs for the in-process core:
//!
//! ```text
//! valkey://[user[:password]@]host[:port][,host[:port]...][/db][?key=value&...]
//! redis://...   valkeys://... and rediss://... (TLS)
//! ```
//!
//! Query keys: `cluster` (0/1), `db`, `name` (client name), `timeout_ms`
//! (request timeout), `connect_timeout_ms`, `protocol` (`resp2`/`resp3`),
//! `tls` (0/1), `ca_file`, `read_from` (`primary`, `prefer_replica`,
//! `round_robin_replicas`), `max_inflight`, `threads` (core worker threads,
//! used when the process's core starts). User, password and query values
//! are percent-decoded. The default port is 6379.

use vshm_core::config::{Mode, Protocol, ReadFrom};
use vshm_core::Config;

/// A URI that cannot be used. The message names the scheme and the
/// reason, never the rest of the URI (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UriError(pub String);

fn bad(uri: &str, why: impl std::fmt::Display) -> UriError {
    // Never echo a password: show the scheme and the reason only.
    let scheme = uri.split("://").next().unwrap_or("");
    UriError(format!("bad URI ({scheme}://...): {why}"))
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "bad %-escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".to_string())
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 0 or 1, got {v:?}")),
    }
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{k}: not a valid number: {v:?}"))
}

/// Parse a URI into a core config and the core thread count (0: default).
pub fn parse(uri: &str) -> Result<(Config, usize), UriError> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad(uri, "missing scheme://"))?;
    let mut cfg = Config::default();
    match scheme.to_ascii_lowercase().as_str() {
        "valkey" | "redis" => {}
        "valkeys" | "rediss" => cfg.tls = true,
        other => {
            return Err(bad(
                uri,
                format!("unsupported scheme {other:?} (valkey, redis, valkeys, rediss)"),
            ))
        }
    }
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let user = decode(user).map_err(|e| bad(uri, e))?;
        if !user.is_empty() {
            cfg.username = Some(user);
        }
        if let Some(p) = pass {
            cfg.password = Some(decode(p).map_err(|e| bad(uri, e))?);
        }
    }
    let mut addresses = Vec::new();
    for h in hosts.split(',') {
        if h.is_empty() {
            return Err(bad(uri, "empty host"));
        }
        // "[v6]:port", "[v6]", "host:port", "host"
        let has_port = match h.rfind(':') {
            Some(i) => h.starts_with('[') && h[..i].ends_with(']') || !h.starts_with('['),
            None => false,
        };
        addresses.push(if has_port {
            h.to_string()
        } else {
            format!("{h}:6379")
        });
    }
    cfg.addresses = addresses;
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        cfg.database = num("database path", p).map_err(|e| bad(uri, e))?;
    }
    let mut threads = 0usize;
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = decode(v).map_err(|e| bad(uri, e))?;
        let r: Result<(), String> = (|| {
            match k {
                "cluster" => {
                    cfg.mode = if flag(&v)? {
                        Mode::Cluster
                    } else {
                        Mode::Standalone
                    };
                }
                "db" | "database" => cfg.database = num(k, &v)?,
                "name" | "client_name" => cfg.client_name = Some(v.clone()),
                "timeout_ms" | "request_timeout_ms" => cfg.request_timeout_ms = num(k, &v)?,
                "connect_timeout_ms" | "connection_timeout_ms" => {
                    cfg.connection_timeout_ms = num(k, &v)?
                }
                "protocol" => {
                    cfg.protocol = match v.as_str() {
                        "resp2" | "2" => Protocol::Resp2,
                        "resp3" | "3" => Protocol::Resp3,
                        _ => return Err(format!("protocol: expected resp2 or resp3, got {v:?}")),
                    }
                }
                "tls" => cfg.tls = flag(&v)?,
                "ca_file" => cfg.ca_file = Some(v.clone().into()),
                "read_from" => {
                    cfg.read_from = match v.as_str() {
                        "primary" => ReadFrom::Primary,
                        "prefer_replica" => ReadFrom::PreferReplica,
                        "round_robin_replicas" => ReadFrom::RoundRobinReplicas,
                        _ => return Err(format!("read_from: unknown value {v:?}")),
                    }
                }
                "max_inflight" => cfg.max_inflight = num(k, &v)?,
                "threads" => threads = num(k, &v)?,
                _ => return Err(format!("unknown parameter {k:?}")),
            }
            Ok(())
        })();
        r.map_err(|e| bad(uri, e))?;
    }
    cfg.validate().map_err(|e| bad(uri, e.message))?;
    Ok((cfg, threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let (c, t) = parse("valkey://127.0.0.1:7000?cluster=1&db=0").unwrap();
        assert_eq!(c.addresses, vec!["127.0.0.1:7000"]);
        assert_eq!(c.mode, Mode::Cluster);
        assert_eq!(t, 0);
        let (c, _) = parse("redis://u%40x:p%3Ass@h1,h2:7001,[::1]:7002/3?name=app&timeout_ms=900&protocol=resp2&threads=2")
            .unwrap();
        assert_eq!(c.addresses, vec!["h1:6379", "h2:7001", "[::1]:7002"]);
        assert_eq!(c.username.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.database, 3);
        assert_eq!(c.client_name.as_deref(), Some("app"));
        assert_eq!(c.request_timeout_ms, 900);
        assert_eq!(c.protocol, Protocol::Resp2);
        let (c, _) = parse("rediss://[::1]").unwrap();
        assert!(c.tls);
        assert_eq!(c.addresses, vec!["[::1]:6379"]);
        for bad_uri in [
            "127.0.0.1:6379",
            "http://h",
            "redis://",
            "redis://h:notaport",
            "redis://h/x",
            "redis://h?cluster=maybe",
            "redis://h?bogus=1",
            "redis://h?timeout_ms=0",
            "redis://:secret@h?x%zz=1&db=%zz",
        ] {
            let e = parse(bad_uri).unwrap_err();
            assert!(!e.0.contains("secret"), "{}", e.0);
        }
    }
}
