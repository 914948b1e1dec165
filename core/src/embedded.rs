//! The in-process mode, server side: the same core on background threads
//! inside the client process, serving that process's segments through the
//! very same dispatcher code path the daemon uses.
//!
//! [`EmbeddedCore::attach`] creates a segment and attaches it to the
//! dispatcher; the returned [`Attachment`] holds what the client end needs
//! (segment, doorbell). The client end itself (`EmbeddedClient`, the
//! `open` convenience) is `vshm_client::embedded`, so that this crate does
//! not depend on the client runtime.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use vshm_protocol::layout::{features, Layout};
use vshm_protocol::msg::{ArchivedRequest, ClientError, Completion, ErrorKind, Request};
use vshm_protocol::segment::Segment;

use crate::dispatch::{AttachOptions, ClientAttachment, Declined, Dispatcher, Execute, Taken};
use crate::engine::{PushSink, Subscriber};
use crate::net::ticket::Ticket;
use crate::{Backend, Config, Engine};

/// Default ring sizes of an in-process segment.
pub const DEFAULT_SQ: u64 = 1 << 20;
pub const DEFAULT_CQ: u64 = 1 << 20;

/// Runs requests on a pooled backend, without pub/sub (it has no push
/// channel: Subscribe/Unsubscribe fail with `InvalidRequest`). Prefer
/// [`ClientExec`].
pub struct BackendExec(pub Arc<Backend>);

impl Execute for BackendExec {
    fn execute(&self, req: Request) -> Pin<Box<dyn Future<Output = Completion> + Send + 'static>> {
        let b = self.0.clone();
        Box::pin(async move { b.execute(&req).await })
    }

    fn try_submit(&self, req: Request, ticket: Ticket) -> Result<(), Declined> {
        self.0.try_submit(req, ticket)
    }

    fn take_archived(
        &self,
        req: &ArchivedRequest,
        ticket: Ticket,
    ) -> Result<Option<Taken>, Ticket> {
        self.0.take_archived(req, ticket)
    }

    fn send_taken(&self, taken: Taken) {
        self.0.send_taken(taken)
    }
}

/// Runs one client's requests on a pooled backend, pub/sub included: once
/// [`Dispatcher::attach`] has bound it to the client's attachment, the
/// client's pub/sub messages are written into that attachment's completion
/// ring as push records. Dropping it (with the attachment) removes the
/// client's subscriptions.
pub struct ClientExec {
    backend: Arc<Backend>,
    sub: OnceLock<Subscriber>,
}

impl ClientExec {
    pub fn new(backend: Arc<Backend>) -> ClientExec {
        ClientExec {
            backend,
            sub: OnceLock::new(),
        }
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Execute for ClientExec {
    fn execute(&self, req: Request) -> Pin<Box<dyn Future<Output = Completion> + Send + 'static>> {
        let b = self.backend.clone();
        match self.sub.get() {
            Some(sub) => {
                let sub = sub.clone();
                Box::pin(async move { b.execute_as(&req, &sub).await })
            }
            None => Box::pin(async move { b.execute(&req).await }),
        }
    }

    fn try_submit(&self, req: Request, ticket: Ticket) -> Result<(), Declined> {
        self.backend.try_submit(req, ticket)
    }

    fn take_archived(
        &self,
        req: &ArchivedRequest,
        ticket: Ticket,
    ) -> Result<Option<Taken>, Ticket> {
        self.backend.take_archived(req, ticket)
    }

    fn send_taken(&self, taken: Taken) {
        self.backend.send_taken(taken)
    }

    fn attached(&self, conn: &Arc<ClientAttachment>) {
        let sink: Arc<dyn PushSink> = Arc::new(ConnSink(Arc::downgrade(conn)));
        let _ = self.sub.set(self.backend.subscriber(sink));
    }
}

/// Pushes into a client attachment's completion ring. Weak: the
/// attachment owns its executor, which owns this sink.
struct ConnSink(Weak<ClientAttachment>);

impl PushSink for ConnSink {
    fn push(&self, c: &Completion) -> bool {
        match self.0.upgrade() {
            Some(conn) if !conn.is_closed() => {
                conn.push(c);
                true
            }
            _ => false,
        }
    }
}

/// The core running inside this process.
pub struct EmbeddedCore {
    rt: Option<crate::runtime::CoreRuntime>,
    engine: Arc<Engine>,
    dispatcher: Arc<Dispatcher>,
}

/// A segment attached to the embedded core: what the client end needs
/// (the segment, the core's doorbell, the request timeout of the config)
/// and the guard of the attachment. Dropping it detaches the segment.
pub struct Attachment {
    segment: Arc<Segment>,
    conn: Arc<ClientAttachment>,
    request_timeout: Option<Duration>,
}

impl Attachment {
    /// The segment the client end submits to.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// The core's eventfd for this segment (the client rings it after
    /// submitting).
    pub fn doorbell(&self) -> Arc<OwnedFd> {
        self.conn.doorbell_fd()
    }

    /// The config's request timeout (None when attached without a config).
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// The dispatcher's side of this attachment (stats, state).
    pub fn attachment(&self) -> &Arc<ClientAttachment> {
        &self.conn
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.conn.detach();
    }
}

impl EmbeddedCore {
    /// Start the core with `threads` threads (1: a current-thread runtime
    /// on its own thread, the default and fastest here; see
    /// [`crate::runtime`]).
    pub fn start(threads: usize) -> std::io::Result<EmbeddedCore> {
        let rt = crate::runtime::CoreRuntime::start(threads, "vshm-core")?;
        let engine = Arc::new(Engine::new(rt.handle().clone()));
        let dispatcher = Dispatcher::new(rt.handle().clone());
        Ok(EmbeddedCore {
            rt: Some(rt),
            engine,
            dispatcher,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    fn rt(&self) -> &crate::runtime::CoreRuntime {
        self.rt.as_ref().expect("runtime lives until shutdown")
    }

    /// Attach a segment for a client of `config` (connections are pooled
    /// by the config's pool key; see `docs/architecture.md`).
    pub fn attach(&self, config: &Config) -> Result<Attachment, ClientError> {
        self.attach_with(config, DEFAULT_SQ, DEFAULT_CQ)
    }

    /// Attach with explicit ring capacities (powers of two).
    pub fn attach_with(
        &self,
        config: &Config,
        sq: u64,
        cq: u64,
    ) -> Result<Attachment, ClientError> {
        let engine = self.engine.clone();
        let cfg = config.clone();
        let backend = self
            .rt()
            .block_on(async move { engine.connect(&cfg).await })?;
        let exec: Arc<dyn Execute> = Arc::new(ClientExec::new(backend));
        let opts = AttachOptions {
            max_inflight: config.max_inflight.max(1) as usize,
            label: config
                .client_name
                .clone()
                .unwrap_or_else(|| "embedded".into()),
            ..AttachOptions::default()
        };
        let mut att = self.attach_exec(exec, sq, cq, opts)?;
        att.request_timeout = Some(config.request_timeout());
        Ok(att)
    }

    /// Attach a fresh segment served by any executor (tests, benchmarks).
    pub fn attach_exec(
        &self,
        exec: Arc<dyn Execute>,
        sq: u64,
        cq: u64,
        opts: AttachOptions,
    ) -> Result<Attachment, ClientError> {
        let layout = Layout::new(sq, cq, features::SQ_DOORBELL)
            .map_err(|e| ClientError::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let seg = Arc::new(
            Segment::create_anonymous(layout)
                .map_err(|e| ClientError::new(ErrorKind::Connection, e.to_string()))?,
        );
        let conn = self
            .dispatcher
            .attach(seg.clone(), exec, opts)
            .map_err(|e| ClientError::new(ErrorKind::Connection, e.to_string()))?;
        Ok(Attachment {
            segment: seg,
            conn,
            request_timeout: None,
        })
    }

    /// Stop: in-flight requests get up to `grace` to complete, the rest a
    /// `Closing` error; then the runtime stops.
    pub fn shutdown(mut self, grace: Duration) {
        self.shutdown_inner(grace);
    }

    fn shutdown_inner(&mut self, grace: Duration) {
        if let Some(rt) = self.rt.take() {
            let d = self.dispatcher.clone();
            rt.block_on(async move { d.shutdown(grace).await });
            rt.shutdown(grace);
        }
    }
}

impl Drop for EmbeddedCore {
    fn drop(&mut self) {
        self.shutdown_inner(Duration::from_millis(500));
    }
}
