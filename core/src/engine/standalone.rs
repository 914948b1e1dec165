//! The shared connection of a standalone backend: one multiplexed
//! connection, replaced in the background when it breaks.
//!
//! redis-rs's `ConnectionManager` does the same but cannot re-send
//! `CLIENT SETNAME` after a reconnect, ignores jitter settings and logs
//! through `log` rather than `tracing`; this wrapper is small and does.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{ClientError, ErrorKind};

use crate::config::{Backoff, Config, Endpoint, Protocol};
use crate::value::map_error;

#[derive(Clone)]
enum State {
    Connected {
        conn: MultiplexedConnection,
        generation: u64,
    },
    Reconnecting {
        last_error: String,
    },
}

struct Inner {
    client: Client,
    conn_config: AsyncConnectionConfig,
    resp3: bool,
    client_name: Option<String>,
    connection_timeout: Duration,
    backoff: Backoff,
    endpoint: Endpoint,
    state: watch::Sender<State>,
    handle: Handle,
}

/// The reconnecting shared connection.
#[derive(Clone)]
pub(crate) struct Standalone {
    inner: Arc<Inner>,
}

/// Build the redis-rs client of a standalone config (also used for the
/// dedicated blocking connections).
pub(crate) fn client_for(c: &Config, ep: &Endpoint) -> Result<Client, ClientError> {
    let addr = if let Some(path) = ep.unix_path() {
        redis::ConnectionAddr::Unix(path.to_path_buf())
    } else if c.tls {
        redis::ConnectionAddr::TcpTls {
            host: ep.host.clone(),
            port: ep.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(ep.host.clone(), ep.port)
    };
    let mut redis_info = redis::RedisConnectionInfo::default()
        .set_db(i64::from(c.database))
        .set_protocol(c.protocol.to_redis());
    if let Some(u) = &c.username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = &c.password {
        redis_info = redis_info.set_password(p);
    }
    let info = redis::IntoConnectionInfo::into_connection_info(addr)
        .map_err(|e| map_error(&e))?
        .set_redis_settings(redis_info);
    let client = match &c.ca_file {
        Some(path) => {
            let root = std::fs::read(path).map_err(|e| {
                ClientError::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot read ca_file {}: {e}", path.display()),
                )
            })?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
        }
        None => Client::open(info),
    };
    client.map_err(|e| map_error(&e))
}

/// The connection settings every engine connection uses: no response
/// timeout of redis-rs's own (the engine bounds each request itself, and a
/// late reply must not break the connection), the configured connect bound.
pub(crate) fn connection_config(c: &Config) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(c.connection_timeout()))
}

/// Open one connection and name it.
pub(crate) async fn open(
    client: &Client,
    config: &AsyncConnectionConfig,
    client_name: Option<&str>,
    connection_timeout: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let fut = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        if let Some(name) = client_name {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("SETNAME").arg(name);
            conn.send_packed_command(&cmd).await?.extract_error()?;
        }
        Ok(conn)
    };
    // Connect and handshake are each bounded by redis-rs; bound the whole
    // (including CLIENT SETNAME) too.
    match tokio::time::timeout(connection_timeout * 2, fut).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting timed out",
        ))),
    }
}

impl Standalone {
    /// Connect (one attempt, bounded by the connection timeout).
    pub(crate) async fn connect(
        c: &Config,
        ep: &Endpoint,
        handle: Handle,
    ) -> Result<Standalone, ClientError> {
        let client = client_for(c, ep)?;
        let (state, _) = watch::channel(State::Reconnecting {
            last_error: "connecting".into(),
        });
        let inner = Arc::new(Inner {
            client,
            conn_config: connection_config(c),
            resp3: c.protocol == Protocol::Resp3,
            client_name: c.client_name.clone(),
            connection_timeout: c.connection_timeout(),
            backoff: c.reconnect,
            endpoint: ep.clone(),
            state,
            handle,
        });
        let conn = Inner::open(&inner, 1).await.map_err(|e| {
            let mut err = map_error(&e);
            err.message = format!("cannot connect to {}: {}", ep, err.message);
            if err.kind == ErrorKind::Request {
                // e.g. WRONGPASS during the handshake: not a request error.
                err.kind = ErrorKind::Connection;
            }
            err
        })?;
        inner.state.send_replace(State::Connected {
            conn,
            generation: 1,
        });
        Ok(Standalone { inner })
    }

    /// The redis-rs client (to open dedicated connections).
    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The server this backend talks to.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The current connection and its generation; while reconnecting, wait
    /// for the new one until `deadline`.
    pub(crate) async fn get(
        &self,
        deadline: Instant,
    ) -> Result<(MultiplexedConnection, u64), ClientError> {
        let mut rx = self.inner.state.subscribe();
        loop {
            let last_error = match &*rx.borrow_and_update() {
                State::Connected { conn, generation } => return Ok((conn.clone(), *generation)),
                State::Reconnecting { last_error, .. } => last_error.clone(),
            };
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(ClientError::new(ErrorKind::Closing, "backend is closing"));
                }
                Err(_) => {
                    return Err(ClientError::new(
                        ErrorKind::Connection,
                        format!(
                            "not connected to {}: reconnecting (last error: {last_error})",
                            self.inner.endpoint
                        ),
                    ));
                }
            }
        }
    }

    /// Tell the wrapper a command on connection `generation` failed; if the
    /// error means the connection is gone, a replacement is started.
    pub(crate) fn report(&self, generation: u64, err: &RedisError) {
        if err.is_unrecoverable_error() {
            Inner::broken(&self.inner, generation, err.to_string());
        }
    }
}

impl Inner {
    async fn open(this: &Arc<Inner>, generation: u64) -> Result<MultiplexedConnection, RedisError> {
        let mut config = this.conn_config.clone();
        if this.resp3 {
            // RESP3 connections report their own end as a push: reconnect
            // right away instead of at the next request.
            let weak: Weak<Inner> = Arc::downgrade(this);
            config = config.set_push_sender(move |info: PushInfo| -> Result<(), ()> {
                if info.kind == PushKind::Disconnection {
                    if let Some(inner) = weak.upgrade() {
                        Inner::broken(&inner, generation, "connection closed".into());
                    }
                }
                Ok(())
            });
        }
        open(
            &this.client,
            &config,
            this.client_name.as_deref(),
            this.connection_timeout,
        )
        .await
    }

    /// Connection `generation` is broken: switch to reconnecting (once).
    fn broken(this: &Arc<Inner>, generation: u64, reason: String) {
        let changed = this.state.send_if_modified(|s| match s {
            State::Connected { generation: g, .. } if *g == generation => {
                *s = State::Reconnecting {
                    last_error: reason.clone(),
                };
                true
            }
            _ => false,
        });
        if changed {
            warn!(server = %this.endpoint, error = %reason, "connection lost; reconnecting");
            let weak = Arc::downgrade(this);
            this.handle.spawn(reconnect_loop(weak, generation + 1));
        }
    }
}

/// Reconnect until it works or the backend is gone; the wait between
/// attempts follows the configured backoff and stays at its maximum.
async fn reconnect_loop(weak: Weak<Inner>, generation: u64) {
    let mut attempt: u32 = 0;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match Inner::open(&inner, generation).await {
            Ok(conn) => {
                inner
                    .state
                    .send_replace(State::Connected { conn, generation });
                info!(server = %inner.endpoint, attempts = attempt + 1, "reconnected");
                return;
            }
            Err(e) => {
                let msg = e.to_string();
                if attempt == inner.backoff.number_of_retries {
                    warn!(server = %inner.endpoint, error = %msg, "still cannot reconnect; retrying at the maximum backoff");
                } else {
                    debug!(server = %inner.endpoint, error = %msg, attempt, "reconnect failed");
                }
                inner.state.send_modify(|s| {
                    if let State::Reconnecting { last_error, .. } = s {
                        *last_error = msg;
                    }
                });
            }
        }
        let delay = inner.backoff.delay(attempt);
        drop(inner);
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}
