//! Opening one server connection: TCP (or TLS), or a Unix socket, then the
//! handshake (HELLO/AUTH, SELECT, CLIENT SETNAME, READONLY) pipelined in
//! one write.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use vshm_protocol::msg::{ClientError, ErrorKind};

use crate::config::{Config, Protocol, ReadFrom};
use crate::resp::{self, Frame, Scanner};
use crate::topology::NodeAddr;

/// The read half of a connection.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// What every connection of a backend is opened with.
pub(crate) struct ConnSettings {
    pub tls: Option<Arc<tokio_rustls::TlsConnector>>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: u32,
    pub protocol: Protocol,
    pub client_name: Option<String>,
    /// Send READONLY (cluster connections that serve replica reads).
    pub readonly: bool,
    pub connect_timeout: Duration,
    /// The reader's limit on one reply (`Config::max_reply_bytes`).
    pub max_reply: usize,
}

impl ConnSettings {
    pub fn from_config(c: &Config, cluster: bool) -> Result<ConnSettings, ClientError> {
        let tls = if c.tls {
            Some(Arc::new(tls_connector(c)?))
        } else {
            None
        };
        Ok(ConnSettings {
            tls,
            username: c.username.clone(),
            password: c.password.clone(),
            database: c.database,
            protocol: c.protocol,
            client_name: c.client_name.clone(),
            readonly: cluster && c.read_from != ReadFrom::Primary,
            connect_timeout: c.connection_timeout(),
            max_reply: usize::try_from(c.max_reply_bytes).unwrap_or(usize::MAX),
        })
    }

    /// The handshake commands, in order.
    fn handshake(&self) -> Vec<Vec<Vec<u8>>> {
        let mut cmds = Vec::new();
        let auth = self.password.as_ref().map(|p| {
            (
                self.username.clone().unwrap_or_else(|| "default".into()),
                p.clone(),
            )
        });
        match self.protocol {
            Protocol::Resp3 => {
                let mut hello = vec![b"HELLO".to_vec(), b"3".to_vec()];
                if let Some((u, p)) = &auth {
                    hello.extend([
                        b"AUTH".to_vec(),
                        u.clone().into_bytes(),
                        p.clone().into_bytes(),
                    ]);
                }
                cmds.push(hello);
            }
            Protocol::Resp2 => {
                if let Some((u, p)) = &auth {
                    cmds.push(vec![
                        b"AUTH".to_vec(),
                        u.clone().into_bytes(),
                        p.clone().into_bytes(),
                    ]);
                }
            }
        }
        if self.database != 0 {
            cmds.push(vec![
                b"SELECT".to_vec(),
                self.database.to_string().into_bytes(),
            ]);
        }
        if let Some(n) = &self.client_name {
            cmds.push(vec![
                b"CLIENT".to_vec(),
                b"SETNAME".to_vec(),
                n.clone().into_bytes(),
            ]);
        }
        if self.readonly {
            cmds.push(vec![b"READONLY".to_vec()]);
        }
        cmds
    }
}

fn conn_err(addr: &NodeAddr, what: impl std::fmt::Display) -> ClientError {
    ClientError::new(ErrorKind::Connection, format!("{addr}: {what}"))
}

/// Connect and run the handshake, bounded by `connect_timeout`.
pub(crate) async fn open(
    s: &ConnSettings,
    addr: &NodeAddr,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    match tokio::time::timeout(s.connect_timeout, open_unbounded(s, addr)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::new(
            ErrorKind::Timeout,
            format!(
                "{addr}: connecting took over {} ms",
                s.connect_timeout.as_millis()
            ),
        )),
    }
}

async fn open_unbounded(
    s: &ConnSettings,
    addr: &NodeAddr,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    let (r, w) = transport(s, addr).await?;
    handshake(s, addr, r, w).await
}

/// TCP keepalive probes after this long idle (then every interval, up to
/// the count): an idle connection to a host that vanished (power loss, no
/// RST) is found dead in about 25 s rather than never.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
/// Written data left unacknowledged this long fails the socket
/// (`TCP_USER_TIMEOUT`): the node's own stall check starts from the oldest
/// request's deadline, which a caller may set to an hour.
const UNACKED_LIMIT: Duration = Duration::from_secs(30);

/// Make a dead peer fail the socket by itself (best effort: a platform
/// without an option keeps the node's stall check alone).
fn detect_dead_peers(tcp: &TcpStream) {
    let sock = socket2::SockRef::from(tcp);
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let _ = sock.set_tcp_keepalive(&ka);
    let _ = sock.set_tcp_user_timeout(Some(UNACKED_LIMIT));
}

/// The byte stream to `addr`: a Unix socket, TCP, or TLS over TCP.
async fn transport(
    s: &ConnSettings,
    addr: &NodeAddr,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    if let Some(path) = addr.unix_path() {
        if s.tls.is_some() {
            // `Config::validate` refuses this combination.
            return Err(conn_err(addr, "TLS is not available over a Unix socket"));
        }
        let sock = UnixStream::connect(path)
            .await
            .map_err(|e| conn_err(addr, e))?;
        let (r, w) = sock.into_split();
        return Ok((Box::new(r), Box::new(w)));
    }
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| conn_err(addr, e))?;
    let _ = tcp.set_nodelay(true);
    detect_dead_peers(&tcp);
    Ok(match &s.tls {
        None => {
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(addr.host.clone())
                .map_err(|e| conn_err(addr, format!("bad TLS server name: {e}")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| conn_err(addr, format!("TLS handshake: {e}")))?;
            let (r, w) = tokio::io::split(stream);
            (Box::new(r), Box::new(w))
        }
    })
}

/// Run the handshake on a fresh stream.
async fn handshake(
    s: &ConnSettings,
    addr: &NodeAddr,
    mut r: ReadHalf,
    mut w: WriteHalf,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    let cmds = s.handshake();
    if cmds.is_empty() {
        return Ok((r, w));
    }
    let mut out = Vec::new();
    for c in &cmds {
        resp::encode_command(&mut out, c);
    }
    w.write_all(&out).await.map_err(|e| conn_err(addr, e))?;
    let mut buf = Vec::with_capacity(1024);
    let mut scanner = Scanner::new();
    let mut start = 0usize;
    for c in &cmds {
        let len = loop {
            match scanner.scan(&buf[start..]) {
                Ok(Some(n)) => break n,
                Ok(None) => {
                    let mut chunk = [0u8; 4096];
                    let n = r.read(&mut chunk).await.map_err(|e| conn_err(addr, e))?;
                    if n == 0 {
                        return Err(conn_err(addr, "connection closed during the handshake"));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => return Err(conn_err(addr, format!("handshake reply: {e}"))),
            }
        };
        let frame = resp::decode(&buf[start..start + len])
            .map_err(|e| conn_err(addr, format!("handshake reply: {e}")))?;
        start += len;
        if let Frame::Error(e) = frame {
            let name = String::from_utf8_lossy(&c[0]).to_string();
            let mut err = resp::error_to_client(&e);
            err.kind = ErrorKind::Connection;
            err.message = format!("{addr}: {name} failed: {}", err.message);
            return Err(err);
        }
    }
    if start != buf.len() {
        return Err(conn_err(addr, "unexpected bytes after the handshake"));
    }
    Ok((r, w))
}

/// A rustls connector: the config's CA file, or the system roots.
fn tls_connector(c: &Config) -> Result<tokio_rustls::TlsConnector, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |m: String| ClientError::new(ErrorKind::InvalidRequest, m);
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(format!("bad ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("bad ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod dead_peer_tests {
    use super::*;

    #[tokio::test]
    async fn node_sockets_probe_for_dead_peers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        detect_dead_peers(&tcp);
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(UNACKED_LIMIT));
    }
}
