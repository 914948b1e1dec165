//! The core's tokio runtime.
//!
//! With one thread the core runs a current-thread runtime on a thread of
//! its own: every task (client serve loops, node connections, timers) runs
//! there, so handing a request from a client's serve task to a node's
//! writer and a reply back never wakes another thread. Measured on the
//! 2-core machine (`vshm-bench async --quick`, 4 processes x 64 in
//! flight, standalone): a multi-thread runtime with 2 workers 375k ops/s
//! at 2.8 us of daemon CPU per request, 1 worker 740k at 1.3 us;
//! docs/performance.md has the current figures. More threads are
//! available (`threads > 1`: a multi-thread runtime) for machines where
//! one core is not enough.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

enum Kind {
    Multi(Runtime),
    Single {
        stop: Option<tokio::sync::oneshot::Sender<Duration>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// A running core runtime; [`CoreRuntime::shutdown`] (or drop) stops it.
pub struct CoreRuntime {
    handle: Handle,
    kind: Kind,
}

impl CoreRuntime {
    /// `threads` <= 1: a current-thread runtime on a thread named `name`;
    /// more: a multi-thread runtime with that many workers.
    pub fn start(threads: usize, name: &str) -> std::io::Result<CoreRuntime> {
        if threads > 1 {
            let rt = Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .enable_all()
                .build()?;
            return Ok(CoreRuntime {
                handle: rt.handle().clone(),
                kind: Kind::Multi(rt),
            });
        }
        let rt = Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Duration>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Only `Runtime::block_on` drives a current-thread
                // runtime's I/O and timers: this thread runs it until
                // asked to stop, then gives the tasks `grace` to finish.
                let grace = rt.block_on(async { stop_rx.await.unwrap_or_default() });
                rt.shutdown_timeout(grace);
            })?;
        Ok(CoreRuntime {
            handle,
            kind: Kind::Single {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Run `fut` on the runtime and wait for its output (from outside the
    /// runtime's threads).
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.kind {
            Kind::Multi(rt) => rt.block_on(fut),
            Kind::Single { .. } => {
                let (tx, rx) = std::sync::mpsc::channel();
                self.handle.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                rx.recv()
                    .expect("the core runtime stopped while a call was waiting")
            }
        }
    }

    /// Stop the runtime, giving its tasks up to `grace`.
    pub fn shutdown(mut self, grace: Duration) {
        self.stop(grace);
    }

    fn stop(&mut self, grace: Duration) {
        match &mut self.kind {
            Kind::Multi(_) => {
                let k = std::mem::replace(
                    &mut self.kind,
                    Kind::Single {
                        stop: None,
                        thread: None,
                    },
                );
                if let Kind::Multi(rt) = k {
                    rt.shutdown_timeout(grace);
                }
            }
            Kind::Single { stop, thread } => {
                if let Some(s) = stop.take() {
                    let _ = s.send(grace);
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for CoreRuntime {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_run_tasks_timers_and_stop() {
        for threads in [1, 2] {
            let rt = CoreRuntime::start(threads, "test-core").unwrap();
            let v = rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                41 + 1
            });
            assert_eq!(v, 42);
            let (tx, rx) = std::sync::mpsc::channel();
            rt.handle().spawn(async move {
                tokio::task::yield_now().await;
                tx.send(7).unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
            rt.shutdown(Duration::from_millis(100));
        }
    }
}
