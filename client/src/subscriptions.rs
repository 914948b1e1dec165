//! The pub/sub subscriptions a binding made through one session, replayed
//! on each new registration (daemon restart, forked child). Best effort:
//! a failed replay shows as missing messages, like a subscription lost by
//! the server (pub/sub delivery is at most once).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vshm_protocol::msg::{Op, Route, SubKind};

use crate::client::Client;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// (kind, channel) pairs.
#[derive(Default)]
pub struct Subscriptions(Mutex<BTreeSet<(u8, Vec<u8>)>>);

impl Subscriptions {
    pub fn new() -> Subscriptions {
        Subscriptions::default()
    }

    /// Record a confirmed (un)subscription. Returns the channels it
    /// concerned (for "unsubscribe from every channel of `kind`": those
    /// channels), each with whether it changed the set.
    pub fn note(
        &self,
        kind: SubKind,
        subscribe: bool,
        channels: &[Vec<u8>],
    ) -> Vec<(Vec<u8>, bool)> {
        let mut subs = lock(&self.0);
        let k = kind as u8;
        if subscribe {
            channels
                .iter()
                .map(|c| (c.clone(), subs.insert((k, c.clone()))))
                .collect()
        } else if channels.is_empty() {
            let all: Vec<Vec<u8>> = subs
                .iter()
                .filter(|(sk, _)| *sk == k)
                .map(|(_, c)| c.clone())
                .collect();
            subs.retain(|(sk, _)| *sk != k);
            all.into_iter().map(|c| (c, true)).collect()
        } else {
            channels
                .iter()
                .map(|c| (c.clone(), subs.remove(&(k, c.clone()))))
                .collect()
        }
    }

    /// Subscribe `client` (a new registration) to everything recorded,
    /// waiting for each kind's confirmation up to the request bound.
    pub fn replay(&self, client: &Client, timeout: Option<Duration>) {
        let subs = lock(&self.0).clone();
        for kind in [SubKind::Exact, SubKind::Pattern, SubKind::Sharded] {
            let channels: Vec<Vec<u8>> = subs
                .iter()
                .filter(|(k, _)| *k == kind as u8)
                .map(|(_, c)| c.clone())
                .collect();
            if channels.is_empty() {
                continue;
            }
            let op = Op::Subscribe { kind, channels };
            if let Ok(id) = client.submit_op(&op, &Route::Auto, timeout, 0) {
                let deadline = Instant::now() + client.wait_bound(timeout);
                drop(client.wait_reply_until(id, deadline, true));
            }
        }
    }
}
