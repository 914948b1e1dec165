//! The dispatcher: drains every attached segment's submission ring, hands
//! each validated request to an executor, and writes exactly one completion
//! per request into the segment's completion ring.
//!
//! One tokio task serves one attached segment (a [`ClientAttachment`]: a
//! client's segment, not a Redis connection; its loop is `serve.rs`). It
//! takes at most [`DRAIN_BUDGET`] requests per turn and then yields, so a
//! client that floods its ring gets its turn like everyone else but cannot
//! starve the others. When its ring is empty it spins briefly (yielding to tokio),
//! then announces need-wakeup and re-checks (`wake::announce_sole`, the
//! protocol's one announce/re-check step) and sleeps on the client's
//! eventfd doorbell.
//!
//! Validation: every record is copied into private, aligned memory
//! (`frame::Reassembler`) before bytecheck validates it, so a client that
//! rewrites its ring concurrently can at worst make its own request
//! invalid. A malformed message whose id is known gets an `InvalidRequest`
//! completion; a corrupt ring (impossible head/tail, bad framing without an
//! id) marks the segment broken and the client is disconnected.
//!
//! Backpressure: a client has at most `max_inflight` requests between
//! "taken from the submission ring" and "completion written into the
//! completion ring". At the limit the dispatcher stops draining that
//! client's ring; the client's submissions then wait for ring space (with
//! their own timeout). Completions that do not fit in the completion ring
//! wait in a per-client queue that the same limit bounds.
//!
//! Outstanding bytes: the bytes of a client's requests taken but not yet
//! completed (a fragmented message counts its announced total from its
//! first fragment on, so reassembly memory is covered too), plus the bytes
//! of its completions waiting for ring space, are bounded by
//! `max_outstanding_bytes`. At the limit the dispatcher stops draining that
//! client's ring (backpressure, like the in-flight limit). A single
//! request larger than the limit can never be taken: it gets exactly one
//! `Overloaded` completion (an `InvalidRequest` one above the segment's
//! `max_message`), its remaining fragments are skipped, and the client
//! stays connected. The bound is soft by one reply: a reply already
//! produced is queued even if it crosses the limit, but with other
//! completions already waiting and past twice the limit (a client that
//! stopped reading while replies to its requests keep coming), a reply is
//! replaced by a small `Overloaded` error, its request's one completion.

mod attachment;
mod body;
pub mod doorbell;
pub mod latency;
mod serve;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vshm_protocol::sync::{AtomicU64, Ordering};

use vshm_protocol::msg::{ArchivedRequest, Completion, Request};
use vshm_protocol::segment::Segment;

pub use attachment::{AttachmentStats, ClientAttachment, MAX_PENDING_PUSHES};
pub use doorbell::Doorbell;
pub use latency::LatencyHistogram;

/// Requests taken from one client's ring per turn before yielding.
pub const DRAIN_BUDGET: usize = 64;

/// A request the fast path did not take, handed back with its ticket (boxed:
/// the slow path it goes to spawns a task anyway).
pub type Declined = Box<(Request, crate::net::ticket::Ticket)>;

/// A request [`Execute::take_archived`] took from its message, to be sent
/// with [`Execute::send_taken`].
pub struct Taken(pub(crate) Box<crate::net::job::Job>);

/// Something that runs a request and produces its completion.
pub trait Execute: Send + Sync + 'static {
    fn execute(&self, req: Request) -> Pin<Box<dyn Future<Output = Completion> + Send + 'static>>;

    /// The fast path: take the request and complete it through `ticket`
    /// without a task of its own (the core's node connections), or hand
    /// both back for [`Execute::execute`]. Default: hand back.
    fn try_submit(&self, req: Request, ticket: crate::net::ticket::Ticket) -> Result<(), Declined> {
        Err(Box::new((req, ticket)))
    }

    /// The fast path for a request still archived in its message (validated,
    /// its id checked): take it without decoding it into an owned
    /// [`Request`], ready to send with [`Execute::send_taken`] (`None`:
    /// completed at once), or hand the ticket back, and the dispatcher
    /// decodes the request for [`Execute::try_submit`]. Default: hand back.
    fn take_archived(
        &self,
        _req: &ArchivedRequest,
        ticket: crate::net::ticket::Ticket,
    ) -> Result<Option<Taken>, crate::net::ticket::Ticket> {
        Err(ticket)
    }

    /// Send what [`Execute::take_archived`] took. The dispatcher calls it
    /// once it has let go of the request's message, so that the node
    /// connection's write buffer can take that memory (see
    /// `ClientAttachment::dispatch`). An executor that takes must send:
    /// the default only drops it (its ticket completes with `Closing`), and
    /// a debug build fails there.
    fn send_taken(&self, taken: Taken) {
        debug_assert!(false, "take_archived without send_taken");
        drop(taken);
    }

    /// Called once by [`Dispatcher::attach`] with the attachment this
    /// executor serves, before its first request: an executor that sends
    /// out-of-band pushes (pub/sub) keeps a weak reference to it and calls
    /// [`ClientAttachment::push`]. Default: nothing.
    fn attached(&self, _conn: &Arc<ClientAttachment>) {}
}

/// Per-attachment options.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Requests taken but not yet completed (see the module docs).
    pub max_inflight: usize,
    /// Bytes of requests taken but not completed plus completions waiting
    /// for ring space (see the module docs). Default: no limit (the
    /// in-process mode trusts its caller; the daemon sets one).
    pub max_outstanding_bytes: u64,
    /// Spin (yielding to tokio) this long before sleeping on the doorbell.
    pub spin: Duration,
    /// A label for logs and stats (client name, pid).
    pub label: String,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            max_inflight: 1000,
            max_outstanding_bytes: u64::MAX,
            spin: Duration::from_micros(20),
            label: String::new(),
        }
    }
}

/// Serves attached segments on a tokio runtime.
pub struct Dispatcher {
    rt: tokio::runtime::Handle,
    next_id: AtomicU64,
    conns: Mutex<Vec<Arc<ClientAttachment>>>,
}

impl Dispatcher {
    pub fn new(rt: tokio::runtime::Handle) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            rt,
            next_id: AtomicU64::new(1),
            conns: Mutex::new(Vec::new()),
        })
    }

    /// Start serving a segment (created by the caller, empty rings).
    /// Returns the attachment; its doorbell is what the client rings.
    pub fn attach(
        self: &Arc<Self>,
        seg: Arc<Segment>,
        exec: Arc<dyn Execute>,
        opts: AttachOptions,
    ) -> std::io::Result<Arc<ClientAttachment>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let doorbell = Doorbell::new()?;
        let _guard = self.rt.enter();
        let conn = ClientAttachment::new(id, seg, exec.clone(), doorbell, opts, self.rt.clone())?;
        exec.attached(&conn);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn.clone());
        let c = conn.clone();
        let me = Arc::downgrade(self);
        self.rt.spawn(async move {
            c.clone().serve().await;
            if let Some(d) = me.upgrade() {
                d.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|x| !Arc::ptr_eq(x, &c));
            }
        });
        Ok(conn)
    }

    /// Attachments currently served.
    pub fn attachments(&self) -> Vec<Arc<ClientAttachment>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop taking new requests everywhere, wait up to `grace` for the
    /// in-flight ones to complete, then close every segment (remaining
    /// requests get a `Closing` completion first).
    pub async fn shutdown(&self, grace: Duration) {
        let conns = self.attachments();
        for c in &conns {
            c.stop_intake();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for c in &conns {
            c.drain_until(deadline).await;
        }
        for c in &conns {
            c.close();
        }
    }
}
