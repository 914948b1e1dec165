//! The soak + chaos driver behind the `vshm-soak` binary (`scripts/soak.sh`).
//!
//! * [`worker`]: one client process. It registers with vshmd, keeps a few requests in flight
//!   (queued submission) with a mixed workload on keys it owns, counts every submission and
//!   every completion (value, or typed error by kind), and at the end reads its keys back and
//!   checks every acknowledged write. It talks to the driver over stdin/stdout.
//! * [`driver`]: starts a 6-node cluster, vshmd and the workers, runs the chaos loop
//!   ([`chaos`]) for the requested time, lets the cluster settle, stops the workers, sums their
//!   reports, checks them and prints/writes the figures.
//!
//! What "acknowledged write reads back" means, per key kind (one request in flight per key
//! group at a time, so a group's writes are submitted in order):
//!
//! * Counters (`INCR`, and `INCR`s inside pipelines and transactions): every successful reply
//!   carries the counter's value; the largest one seen is a lower bound for the final value.
//!   The upper bound is the number of increments submitted: a write whose completion was an
//!   error (timeout, connection) may or may not have run, and a write re-sent after its
//!   connection broke may run twice (at-least-once across failovers, see
//!   `docs/architecture.md`): a final value above the bound is counted as `duplicates`, not
//!   as a failure. Below the lower bound is a failure.
//! * Strings (`SET` with a unique value, `DEL`): the final value must be the last
//!   acknowledged one, or the value of a write submitted after it, or the value of a write
//!   whose completion was an error (it may have run late). Anything else is a failure.
//! * Every value read (`GET`, `MGET`, pipelines) must belong to the reading worker's own key
//!   (values carry the worker id and key group): a reply meant for another request would
//!   show up as `mismatched`.

//!
//! Availability (issue 12): every worker also reports *when* its requests succeed and fail
//! (a [`Tick`] line every 100 ms, times on the machine-wide monotonic clock, [`mono_ms`]), so
//! the driver can tell, for every fault it injects, how long it took until every live worker
//! completed requests successfully again, and fail the run when that misses the fault kind's
//! bound (see `driver::availability` and docs/reliability.md).

pub mod avail;
pub mod chaos;
pub mod driver;
pub mod worker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Key groups of a worker: `soak:{w<id>.<g>}:s` (string) and `soak:{w<id>.<g>}:c` (counter)
/// share the hash tag, so they share a slot (MGET, pipelines, transactions).
pub fn group_tag(worker: u64, group: u32) -> String {
    format!("w{worker}.{group}")
}

pub fn string_key(worker: u64, group: u32) -> String {
    format!("soak:{{{}}}:s", group_tag(worker, group))
}

pub fn counter_key(worker: u64, group: u32) -> String {
    format!("soak:{{{}}}:c", group_tag(worker, group))
}

/// Milliseconds on `CLOCK_MONOTONIC`: the same clock in every process of the machine, so the
/// driver can compare its fault times with the workers' request times.
pub fn mono_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Successful completions are counted in windows of this many ms.
pub const WINDOW_MS: u64 = 10;

/// What a worker saw since its previous tick (a `tick <json>` line, about every 100 ms, only
/// when something completed).
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct Tick {
    /// Windows with successful completions: `[end_ms, count, latest submission ms]`; a window
    /// covers `[end_ms - WINDOW_MS, end_ms)` of completion times.
    pub ok: Vec<(u64, u32, u64)>,
    /// Failed completions (a typed error, or an error inside a batch): `[submitted_ms,
    /// completed_ms, kind]`.
    pub fail: Vec<(u64, u64, String)>,
}

/// What one worker reports at exit (a `report {json}` line on stdout).
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct WorkerReport {
    pub id: u64,
    /// Requests handed to the client library (including those it refused at once with a
    /// typed error: they completed too).
    pub submitted: u64,
    /// Completions received (value or typed error), each for a request still pending.
    pub completed: u64,
    /// Completions that were values.
    pub values: u64,
    /// Completions that were typed errors, by kind (`Timeout`, `Connection`, ...).
    pub errors: BTreeMap<String, u64>,
    /// A few distinct messages per error kind.
    pub error_samples: BTreeMap<String, Vec<String>>,
    /// Requests with no completion when the worker gave up waiting (bounded drain).
    pub lost: u64,
    /// Completions that arrived later than the request timeout + transport margin + 5 s.
    pub overdue: u64,
    /// Longest submission-to-completion time seen, ms.
    pub max_latency_ms: u64,
    /// Values that belong to another key or worker (a crossed reply).
    pub mismatched: u64,
    /// Values of the wrong shape for their command.
    pub unexpected: u64,
    /// Error replies inside a pipeline or transaction value.
    pub element_errors: u64,
    /// Times the client found its registration dead (daemon closed the segment or went away).
    pub client_deaths: u64,
    /// Write requests acknowledged with a value.
    pub acked_writes: u64,
    /// Keys read back and checked at the end.
    pub keys_checked: u64,
    /// Keys whose final value contradicts an acknowledged write.
    pub check_failures: u64,
    /// Counter increments beyond the number submitted (writes applied twice).
    pub duplicates: u64,
    /// Read-back requests that failed and were asked again (the cluster had settled).
    pub verify_retries: u64,
    /// Descriptions of problems (mismatches, failed checks, lost requests), at most 20.
    pub problems: Vec<String>,
}

impl WorkerReport {
    pub fn problem(&mut self, text: String) {
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }

    pub fn error(&mut self, kind: &str, message: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        let samples = self.error_samples.entry(kind.to_string()).or_default();
        // Messages differ by addresses and ids: compare a prefix.
        let short: String = message.chars().take(120).collect();
        let head: String = short.chars().take(24).collect();
        if samples.len() < 3 && !samples.iter().any(|s| s.starts_with(&head)) {
            samples.push(short);
        }
    }
}
