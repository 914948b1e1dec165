//! The engine: a pool of backends, each the set of connections to one
//! Valkey/Redis deployment for one set of credentials, and the execution of
//! requests on them.
//!
//! * [`Engine::connect`] returns the shared [`Backend`] for a [`Config`]:
//!   configs with the same [`PoolKey`] share one backend; the first caller
//!   creates it, concurrent callers wait for it and share it. A backend
//!   lives while a caller holds its `Arc` (the pool keeps only a weak
//!   reference), so its connections close when the last client goes.
//! * [`Backend::execute`] turns one owned [`Request`](vshm_protocol::msg::Request)
//!   into exactly one [`Completion`](vshm_protocol::msg::Completion).

mod backend;
mod batch;
mod blocking;
mod cluster;
mod fast;
mod pubsub;
mod scan;
mod script;
mod standalone;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use tokio::runtime::Handle;
use vshm_protocol::msg::{ClientError, ErrorKind};

use crate::config::{Config, Endpoint, Mode, Protocol, ReadFrom};

pub use backend::{Backend, BLOCKING_MARGIN};
pub use pubsub::{PushSink, Subscriber};

/// What makes two configs share a backend: everything that changes what a
/// connection is (where it goes, who it authenticates as, which database
/// and protocol it uses, its name and replica use). Timeouts and backoff
/// are not part of it: the first config's apply to a shared backend.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Standalone: the one server. Cluster: the seeds, sorted and deduped.
    pub endpoints: Vec<Endpoint>,
    pub mode: Mode,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: u32,
    pub protocol: Protocol,
    pub client_name: Option<String>,
    pub read_from: ReadFrom,
}

impl std::fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolKey")
            .field("endpoints", &self.endpoints)
            .field("mode", &self.mode)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("protocol", &self.protocol)
            .field("client_name", &self.client_name)
            .field("read_from", &self.read_from)
            .finish()
    }
}

impl PoolKey {
    /// The key of a config (validating its addresses).
    pub fn from_config(c: &Config) -> Result<PoolKey, ClientError> {
        let mut endpoints = c.endpoints()?;
        match c.mode {
            Mode::Standalone => endpoints.truncate(1),
            Mode::Cluster => {
                endpoints.sort();
                endpoints.dedup();
            }
        }
        Ok(PoolKey {
            endpoints,
            mode: c.mode,
            tls: c.tls,
            ca_file: c.ca_file.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            database: c.database,
            protocol: c.protocol,
            client_name: c.client_name.clone(),
            // Replica routing only exists in cluster mode.
            read_from: match c.mode {
                Mode::Standalone => ReadFrom::Primary,
                Mode::Cluster => c.read_from,
            },
        })
    }
}

/// A pool slot: the lock serializes creation, the weak reference lets the
/// backend go when its last user does.
type Slot = Arc<tokio::sync::Mutex<Weak<Backend>>>;

/// The pool of backends, and the runtime their connections run on.
pub struct Engine {
    handle: Handle,
    pool: Mutex<HashMap<PoolKey, Slot>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backends", &self.backend_count())
            .finish()
    }
}

impl Engine {
    /// An engine whose connections and background tasks run on `handle`'s
    /// runtime.
    pub fn new(handle: Handle) -> Engine {
        Engine {
            handle,
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime the engine's connections run on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The shared backend for `config`, connecting it if no live backend
    /// has the same [`PoolKey`]. Concurrent callers with the same key share
    /// one connection attempt. A failed attempt is not cached: the next
    /// caller tries again.
    ///
    /// Errors: `InvalidRequest` for a bad config, `Connection` when the
    /// servers cannot be reached, `Timeout` when connecting takes too long.
    pub async fn connect(&self, config: &Config) -> Result<Arc<Backend>, ClientError> {
        config.validate()?;
        let key = PoolKey::from_config(config)?;
        let slot = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            // Forget dead backends (a slot being filled is locked: keep it).
            pool.retain(|_, s| match s.try_lock() {
                Ok(w) => w.strong_count() > 0,
                Err(_) => true,
            });
            pool.entry(key.clone()).or_default().clone()
        };
        let mut current = slot.lock().await;
        if let Some(backend) = current.upgrade() {
            return Ok(backend);
        }
        let cfg = config.clone();
        let handle = self.handle.clone();
        // Connect on the engine's runtime, so the connections' driver tasks
        // live there whatever runtime the caller is on.
        let backend = self
            .handle
            .spawn(async move { Backend::connect(key, cfg, handle).await })
            .await
            .map_err(|e| ClientError::new(ErrorKind::Closing, format!("engine stopped: {e}")))??;
        *current = Arc::downgrade(&backend);
        Ok(backend)
    }

    /// How many backends are alive.
    pub fn backend_count(&self) -> usize {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.values()
            .filter(|s| s.try_lock().map(|w| w.strong_count() > 0).unwrap_or(true))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keys() {
        let a = Config {
            addresses: vec!["b:1".into(), "a:1".into(), "a:1".into()],
            mode: Mode::Cluster,
            ..Config::default()
        };
        let b = Config {
            addresses: vec!["a:1".into(), "b:1".into()],
            mode: Mode::Cluster,
            request_timeout_ms: 999,
            ..Config::default()
        };
        assert_eq!(
            PoolKey::from_config(&a).unwrap(),
            PoolKey::from_config(&b).unwrap()
        );
        for other in [
            Config {
                password: Some("x".into()),
                ..b.clone()
            },
            Config {
                username: Some("u".into()),
                ..b.clone()
            },
            Config {
                database: 1,
                ..b.clone()
            },
            Config {
                protocol: Protocol::Resp2,
                ..b.clone()
            },
            Config {
                tls: true,
                ..b.clone()
            },
            Config {
                mode: Mode::Standalone,
                ..b.clone()
            },
        ] {
            assert_ne!(
                PoolKey::from_config(&other).unwrap(),
                PoolKey::from_config(&b).unwrap()
            );
        }
        let k = PoolKey::from_config(&Config {
            password: Some("hunter2".into()),
            ..Config::default()
        })
        .unwrap();
        assert!(!format!("{k:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn bad_config_and_unreachable_server() {
        let engine = Engine::new(Handle::current());
        let err = engine
            .connect(&Config {
                addresses: vec!["nope".into()],
                ..Config::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        // Port 1 on localhost: nothing listens there.
        let err = engine
            .connect(&Config {
                addresses: vec!["127.0.0.1:1".into()],
                ..Config::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection, "{err}");
        assert_eq!(engine.backend_count(), 0);
    }
}
