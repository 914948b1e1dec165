//! A [`Ticket`]: the right and the duty to complete one request.
//!
//! Whoever holds a request's ticket owns its one completion. The fast path
//! moves the ticket with the request (dispatcher -> node FIFO -> reader, or
//! to another node on a redirect); nothing else tracks the request. A
//! ticket dropped without [`Ticket::complete`] (a task cancelled, a node
//! torn down) completes its request with `Closing`, so "exactly one
//! completion per request" holds by construction.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vshm_protocol::msg::{ClientError, Completion, ErrorKind};

/// Where a request's completion goes.
pub trait Sink: Send + Sync + 'static {
    /// Deliver request `id`'s completion. `token` is the sink's own datum
    /// (the dispatcher: the request's bytes counted against its limit),
    /// `took` the time from when the request was taken.
    fn complete(&self, id: u64, token: u64, took: Duration, c: Completion);

    /// Like `complete`, but the sink may hold the completion until
    /// [`Sink::flush`] (a node delivering many replies at once publishes
    /// each client's ring once). Default: `complete`.
    fn complete_deferred(&self, id: u64, token: u64, took: Duration, c: Completion) {
        self.complete(id, token, took, c)
    }

    /// Write what `complete_deferred` held. Default: nothing held.
    fn flush(&self) {}
}

/// One request's completion duty. See the module docs.
pub struct Ticket {
    sink: Option<Arc<dyn Sink>>,
    id: u64,
    token: u64,
    started: Instant,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).finish()
    }
}

impl Ticket {
    pub fn new(sink: Arc<dyn Sink>, id: u64, token: u64) -> Ticket {
        Self::taken_at(sink, id, token, Instant::now())
    }

    /// A ticket for a request taken at `started` (a caller taking many
    /// requests in one pass reads the clock once for them).
    pub fn taken_at(sink: Arc<dyn Sink>, id: u64, token: u64, started: Instant) -> Ticket {
        Ticket {
            sink: Some(sink),
            id,
            token,
            started,
        }
    }

    /// When the request was taken (the start of its deadline).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The request id this ticket completes.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Complete the request (consumes the ticket).
    pub fn complete(mut self, c: Completion) {
        if let Some(s) = self.sink.take() {
            s.complete(self.id, self.token, self.started.elapsed(), c);
        }
    }

    /// Complete, letting the sink hold the completion until its `flush`;
    /// returns the sink to flush. `now` is the caller's clock reading for
    /// the whole batch of completions.
    pub fn complete_deferred(mut self, c: Completion, now: Instant) -> Option<Arc<dyn Sink>> {
        let s = self.sink.take()?;
        let took = now.saturating_duration_since(self.started);
        s.complete_deferred(self.id, self.token, took, c);
        Some(s)
    }

    /// Complete with a typed error.
    pub fn fail(self, e: ClientError) {
        self.complete(Completion::Err(e))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(s) = self.sink.take() {
            s.complete(
                self.id,
                self.token,
                self.started.elapsed(),
                Completion::Err(ClientError::new(
                    ErrorKind::Closing,
                    "connection closed before the request completed",
                )),
            );
        }
    }
}

/// A sink for the core's own control requests (topology queries, probes):
/// hands the completion to an awaiting task.
pub struct OneshotSink(Mutex<Option<tokio::sync::oneshot::Sender<Completion>>>);

impl OneshotSink {
    /// A ticket whose completion the returned receiver gets.
    pub fn ticket() -> (Ticket, tokio::sync::oneshot::Receiver<Completion>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = Arc::new(OneshotSink(Mutex::new(Some(tx))));
        (Ticket::new(sink, 0, 0), rx)
    }
}

impl Sink for OneshotSink {
    fn complete(&self, _id: u64, _token: u64, _took: Duration, c: Completion) {
        let tx = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(Mutex<Vec<(u64, Completion)>>);
    impl Sink for Count {
        fn complete(&self, id: u64, _t: u64, _s: Duration, c: Completion) {
            self.0.lock().unwrap().push((id, c));
        }
    }

    #[test]
    fn completes_once_and_drop_means_closing() {
        let s = Arc::new(Count::default());
        let t = Ticket::new(s.clone(), 7, 0);
        t.complete(Completion::Ok(vshm_protocol::msg::Value::Nil));
        drop(Ticket::new(s.clone(), 8, 0));
        let got = s.0.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 7);
        assert!(matches!(&got[1], (8, Completion::Err(e)) if e.kind == ErrorKind::Closing));
    }
}
