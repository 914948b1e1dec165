//! A tiny HTTP/1.1 responder for Prometheus: `GET /metrics` returns the
//! exposition text, anything else 404. One request per connection, every
//! read and write bounded, at most a few connections at once. Only ever
//! bound to a loopback address (checked when the config is loaded).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::server::Daemon;

const MAX_REQUEST: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 8;

pub async fn serve(listener: TcpListener, daemon: Arc<Daemon>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Too many at once: drop the connection.
            continue;
        };
        let d = daemon.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(IO_TIMEOUT, handle(stream, &d)).await {
                debug!(error = %e, "metrics request timed out");
            }
        });
    }
}

async fn handle(mut s: TcpStream, d: &Daemon) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            let _ = respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await;
            return;
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = d.snapshot().await.prometheus();
            let _ = respond(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await;
        }
        ("GET", "/") => {
            let _ = respond(
                &mut s,
                "200 OK",
                "text/plain",
                "vshmd: metrics at /metrics\n",
            )
            .await;
        }
        ("GET", _) => {
            let _ = respond(&mut s, "404 Not Found", "text/plain", "not found\n").await;
        }
        _ => {
            let _ = respond(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n").await;
        }
    }
}

async fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}
