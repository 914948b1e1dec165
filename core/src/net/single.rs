//! The router of a standalone backend: one node.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::connect::ConnSettings;
use super::job::Job;
use super::node::{Node, NodeStats, Router};
use crate::config::Backoff;
use crate::resp::redirect::{retry_class, RetryClass};
use crate::topology::NodeAddr;

/// Wait before sending a job again after LOADING / TRYAGAIN-class errors.
pub(crate) const RETRY_GAP: Duration = Duration::from_millis(50);

pub(crate) struct Single {
    node: Arc<Node>,
    me: Weak<Single>,
    rt: Handle,
}

impl Single {
    pub fn start(
        addr: NodeAddr,
        settings: Arc<ConnSettings>,
        backoff: Backoff,
        rt: &Handle,
    ) -> Arc<Single> {
        Arc::new_cyclic(|me: &Weak<Single>| {
            let router: Weak<dyn Router> = me.clone();
            Single {
                node: Node::start(addr, settings, backoff, router, rt),
                me: me.clone(),
                rt: rt.clone(),
            }
        })
    }

    pub fn submit(&self, job: Box<Job>) {
        self.node.submit(job)
    }

    pub fn stats(&self) -> Vec<NodeStats> {
        vec![self.node.stats()]
    }

    pub fn close(&self) {
        self.node.close();
    }
}

impl Router for Single {
    fn route(&self, job: Box<Job>) {
        self.node.submit(job)
    }

    fn on_error(&self, job: Box<Job>, err: &[u8], _from: &NodeAddr) -> Option<Box<Job>> {
        match retry_class(err) {
            // The server is loading its data set: not executed, try again
            // while the deadline allows.
            Some(RetryClass::Loading) | Some(RetryClass::TryAgain) => {
                let me: Weak<dyn Router> = self.me.clone();
                retry_later(&self.rt, me, job, RETRY_GAP, err)
            }
            _ => Some(job),
        }
    }

    fn node_down(&self, _addr: &NodeAddr) {}
}

/// Send `job` again after `gap` if its deadline allows; otherwise it fails
/// now with `Connection` and the server's text (a "not executed" error is
/// never shown as the command's own reply). Returns `None`: the job is
/// taken over either way.
pub(crate) fn retry_later(
    rt: &Handle,
    router: Weak<dyn Router>,
    mut job: Box<Job>,
    gap: Duration,
    err: &[u8],
) -> Option<Box<Job>> {
    job.hops = job.hops.saturating_add(1);
    if Instant::now() + gap >= job.deadline || job.hops >= super::job::MAX_HOPS {
        let text = String::from_utf8_lossy(err).to_string();
        job.fail(vshm_protocol::msg::ErrorKind::Connection, text);
        return None;
    }
    rt.spawn(async move {
        tokio::time::sleep(gap).await;
        match router.upgrade() {
            Some(r) => r.route(job),
            None => job.fail(vshm_protocol::msg::ErrorKind::Closing, "backend closed"),
        }
    });
    None
}
