//! Cluster topology for pub/sub: the slot owners come from the core's one
//! slot map (`Cluster::shards`, kept by `net/refresh.rs`, parsed by
//! `crate::topology`); they are read when first needed, when a link fails,
//! when a node unsubscribes a sharded channel by itself, and every
//! `topology_refresh_interval_ms`; a `MOVED` answer to `SSUBSCRIBE` is
//! followed at once (`link.rs`).

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use vshm_protocol::msg::ClientError;

use super::{Shared, State, Target};
use crate::topology::Shard;

/// Gap between failed topology fetches.
const TOPOLOGY_RETRY: Duration = Duration::from_millis(200);
/// Topology check interval while a link cannot connect.
const OUTAGE_REFRESH: Duration = Duration::from_millis(500);

impl Shared {
    pub(super) fn ensure_topology_task(&self, st: &mut State) {
        if !self.is_cluster() || st.closed || st.topology_task.is_some() {
            return;
        }
        let every = (self.config.topology_refresh_interval_ms > 0)
            .then(|| Duration::from_millis(u64::from(self.config.topology_refresh_interval_ms)));
        st.topology_task = Some(self.handle.spawn(run_topology(self.me.clone(), every)));
    }

    pub(super) fn request_refresh(&self, st: &mut State) {
        st.stale = true;
        self.ensure_topology_task(st);
        self.refresh.notify_one();
    }

    /// Fetch the slot owners (cluster).
    pub(super) async fn fetch_topology(&self) -> Result<Vec<Shard>, ClientError> {
        let Target::Cluster(c) = &self.target else {
            return Ok(Vec::new());
        };
        c.shards(true).await
    }
}

/// Cluster: fetch the topology when asked (stale) and periodically; re-
/// assign keys and re-link after each fetch.
pub(super) async fn run_topology(weak: Weak<Shared>, every: Option<Duration>) {
    let mut last_fetch: Option<Instant> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.lock().stale {
            // At most one fetch per TOPOLOGY_RETRY, however often asked
            // (a slot nobody serves keeps asking).
            if let Some(t) = last_fetch {
                tokio::time::sleep_until(t + TOPOLOGY_RETRY).await;
            }
            last_fetch = Some(Instant::now());
            match shared.fetch_topology().await {
                Ok(shards) => {
                    let mut guard = shared.lock();
                    let st = &mut *guard;
                    st.stale = false;
                    if let Some(c) = st.placement.cluster() {
                        if c.shards != shards {
                            debug!(shards = shards.len(), "pub/sub topology changed");
                        }
                        c.set_shards(shards);
                    }
                    shared.sync_links(st);
                    drop(guard);
                    shared.bump();
                }
                Err(e) => {
                    debug!(error = %e, "pub/sub topology fetch failed");
                    continue;
                }
            }
        }
        // While a link cannot connect (its node may be failing over), look
        // again soon: the promotion of a replica produces no event here.
        let link_down = shared
            .lock()
            .links
            .values()
            .any(|l| l.generation == 0 && l.last_error.is_some());
        let every = match (every, link_down) {
            (Some(e), true) => Some(e.min(OUTAGE_REFRESH)),
            (None, true) => Some(OUTAGE_REFRESH),
            (e, false) => e,
        };
        let refresh = shared.refresh.notified();
        match every {
            Some(d) => {
                tokio::select! {
                    _ = refresh => {}
                    _ = tokio::time::sleep(d) => shared.lock().stale = true,
                }
            }
            None => refresh.await,
        }
    }
}
