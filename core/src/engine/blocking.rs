//! Dedicated connections for blocking commands.
//!
//! A blocking command (BLPOP, XREAD BLOCK, ...) holds its connection
//! server-side until it returns; on the shared multiplexed connection every
//! other client's request would queue behind it. So each blocking request
//! leases a connection of its own from this pool: at most `max` are open at
//! once, a few idle ones are kept for reuse (for at most [`IDLE_TTL`]).
//!
//! A lease goes back to the pool only after a clean reply. On a timeout, a
//! connection error or a dropped request (client closed) the connection is
//! dropped, which closes the socket and ends the server-side block.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use vshm_protocol::msg::{ClientError, ErrorKind};

/// Idle dedicated connections older than this are closed, not reused (a
/// server `timeout` setting may have closed them).
pub(crate) const IDLE_TTL: Duration = Duration::from_secs(60);

/// Idle dedicated connections kept for reuse.
const MAX_IDLE: usize = 8;

pub(crate) struct Pool<C> {
    idle: Mutex<Vec<(C, Instant)>>,
    permits: Arc<Semaphore>,
    max: usize,
}

/// A leased connection. Dropping it closes the connection; [`Lease::done`]
/// returns it to the pool.
pub(crate) struct Lease<'p, C> {
    pub(crate) conn: C,
    pool: &'p Pool<C>,
    _permit: OwnedSemaphorePermit,
}

impl<C> Pool<C> {
    pub(crate) fn new(max: usize) -> Pool<C> {
        Pool {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Lease a connection: an idle one, or a new one from `open`. Waits for
    /// a free slot until `deadline` (then `Overloaded`).
    pub(crate) async fn lease<F, Fut>(
        &self,
        deadline: Instant,
        open: F,
    ) -> Result<Lease<'_, C>, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, ClientError>>,
    {
        let permit = match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(ClientError::new(ErrorKind::Closing, "backend is closing")),
            Err(_) => {
                return Err(ClientError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "all {} dedicated connections for blocking commands stayed busy",
                        self.max
                    ),
                ))
            }
        };
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|(_, since)| since.elapsed() < IDLE_TTL);
            idle.pop().map(|(c, _)| c)
        };
        let conn = match reused {
            Some(c) => c,
            None => match tokio::time::timeout_at(deadline, open()).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ClientError::new(
                        ErrorKind::Timeout,
                        "timed out opening a dedicated connection for a blocking command",
                    ))
                }
            },
        };
        Ok(Lease {
            conn,
            pool: self,
            _permit: permit,
        })
    }

    /// Idle connections kept right now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<C> Lease<'_, C> {
    /// The command completed cleanly: keep the connection for reuse.
    pub(crate) fn done(self) {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((self.conn, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_are_bounded_and_reused() {
        let pool: Pool<u32> = Pool::new(2);
        let far = Instant::now() + Duration::from_secs(5);
        let a = pool.lease(far, || async { Ok(1) }).await.unwrap();
        let b = pool.lease(far, || async { Ok(2) }).await.unwrap();
        // Both slots busy: the third waits until its deadline.
        let soon = Instant::now() + Duration::from_millis(20);
        let e = pool.lease(soon, || async { Ok(3) }).await.err().unwrap();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        a.done();
        drop(b); // dropped: not reused
        assert_eq!(pool.idle_count(), 1);
        let c = pool.lease(far, || async { Ok(9) }).await.unwrap();
        assert_eq!(c.conn, 1);
        let d = pool.lease(far, || async { Ok(9) }).await.unwrap();
        assert_eq!(d.conn, 9);
        drop((c, d));
        let e = pool
            .lease(far, || async {
                Err(ClientError::new(ErrorKind::Connection, "x"))
            })
            .await;
        assert!(e.is_err());
    }
}
