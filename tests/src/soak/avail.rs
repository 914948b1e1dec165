//! Availability figures of a soak run (issue 12): from the workers' [`super::Tick`]s and the
//! driver's fault records, the recovery time of every fault, the per-kind table, and the
//! longest span of the run with no successful request in any worker.
//!
//! Definitions (all times on [`super::mono_ms`]):
//!
//! * A fault's **window** runs from its injection to the next fault's injection (or the end
//!   of the load). The workers it counts are those alive during the whole window or started
//!   in it (a worker the driver killed in the window is not counted; its replacement is).
//! * A worker's **recovery** from a fault: the completion time of its first successful
//!   request *submitted after* both the injection and the submission of the worker's last
//!   failed request among those submitted in the window (a timed-out request submitted
//!   during a wedge pushes recovery past it, although its error arrives seconds later). A
//!   worker that had no failure recovers with its first success submitted after the
//!   injection.
//!   Measured from the injection, at the 10 ms resolution of the ticks.
//! * The fault's recovery is the slowest counted worker's; it **misses** its bound when it is
//!   later than the fault's reference time (promotion, migration end, ...) plus the kind's
//!   allowance ([`Fault::allowance`]), or when some worker never recovers.
//! * A failed request **belongs** to the fault injected last at or before its completion and
//!   no later than 1 s after its submission (in flight at the injection, or submitted in
//!   the window); failures that belong to no fault are counted apart (`unattributed`).

use std::time::Duration;

use serde::Serialize;

use super::chaos::{self, Fault};

/// What the driver knows of one worker process.
#[derive(Default, Debug, Clone)]
pub struct WorkerHistory {
    pub id: u64,
    /// One request at a time (`--sync`) or queued.
    pub sync: bool,
    /// When it was started, and when the driver killed it (if it did).
    pub start_ms: u64,
    pub killed_ms: Option<u64>,
    /// Success windows `(end_ms, count, latest submission ms)`, in completion order.
    pub ok: Vec<(u64, u32, u64)>,
    /// Failures `(submitted_ms, completed_ms, kind)`.
    pub fail: Vec<(u64, u64, String)>,
    /// When its registration died.
    pub deaths: Vec<u64>,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct FaultRec {
    pub kind: Fault,
    pub what: String,
    pub at_ms: u64,
    /// Reference time of the bound (see [`Fault::reference_name`]).
    pub ref_ms: u64,
}

impl FaultRec {
    /// The bound, measured from the injection.
    pub fn bound_ms(&self) -> u64 {
        self.ref_ms.saturating_sub(self.at_ms) + self.kind.allowance().as_millis() as u64
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct FaultResult {
    pub kind: String,
    /// Seconds since the start of the load.
    pub at_s: f64,
    pub what: String,
    /// Reference time of the bound, ms after the injection.
    pub reference_ms: u64,
    /// Bound, ms after the injection.
    pub bound_ms: u64,
    /// ms after the injection until every counted worker succeeded again (None: some never did).
    pub recovery_ms: Option<u64>,
    /// The worker that recovered last (or never).
    pub slowest_worker: Option<u64>,
    pub workers_counted: usize,
    /// Each counted worker's recovery: `(worker, ms)` (None: never).
    pub per_worker: Vec<(u64, Option<u64>)>,
    /// Failed requests that belong to this fault, and how many of them timed out.
    pub failed: u64,
    pub timeouts: u64,
    pub missed: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct KindRow {
    pub kind: String,
    pub count: usize,
    pub recovery_p50_ms: Option<u64>,
    /// None when some fault of this kind never recovered.
    pub recovery_max_ms: Option<u64>,
    pub bound: String,
    pub misses: usize,
    pub failed: u64,
    pub timeouts: u64,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Availability {
    pub kinds: Vec<KindRow>,
    pub faults: Vec<FaultResult>,
    /// Longest span of the load with no successful completion in any worker, and when it
    /// started (s since the start of the load).
    pub longest_gap_ms: u64,
    pub longest_gap_at_s: f64,
    pub unattributed_failures: u64,
    pub unattributed_timeouts: u64,
    /// One line per missed bound.
    pub misses: Vec<String>,
    /// One line per wedge: a fault after which some worker never recovered, or recovered
    /// more than [`WEDGE_MARGIN`] after its bound (the failure of issue 12: a core that
    /// stays up but stuck). Always fails a run; `misses` fail it with `--strict`.
    pub wedges: Vec<String>,
}

/// How far past its bound a recovery counts as a wedge.
pub const WEDGE_MARGIN: Duration = Duration::from_secs(10);

/// Computes the figures for a load that ran from `t0_ms` to `end_ms`.
pub fn compute(
    t0_ms: u64,
    end_ms: u64,
    workers: &[WorkerHistory],
    faults: &[FaultRec],
) -> Availability {
    let mut av = Availability::default();
    let next_at = |i: usize| {
        faults
            .get(i + 1)
            .map_or(end_ms, |f| f.at_ms)
            .max(faults[i].at_ms)
    };
    let rel = |ms: u64| ms.saturating_sub(t0_ms) as f64 / 1000.0;

    // Ownership of failures.
    let mut failed = vec![0u64; faults.len()];
    let mut timeouts = vec![0u64; faults.len()];
    for w in workers {
        for (sub, done, kind) in &w.fail {
            let owner = faults
                .iter()
                .rposition(|f| f.at_ms <= *done && f.at_ms <= sub + 1000);
            let timeout = kind == "Timeout";
            match owner {
                Some(i) => {
                    failed[i] += 1;
                    timeouts[i] += u64::from(timeout);
                }
                None => {
                    av.unattributed_failures += 1;
                    av.unattributed_timeouts += u64::from(timeout);
                }
            }
        }
    }

    for (i, f) in faults.iter().enumerate() {
        let (at, next) = (f.at_ms, next_at(i));
        let mut slowest: Option<(Option<u64>, u64)> = None;
        let mut counted = 0;
        let mut per_worker = Vec::new();
        for w in workers {
            // A worker started after the injection has nothing to recover from (unless it
            // is the replacement a kill_worker fault waits for).
            let started = if f.kind == Fault::KillWorker {
                w.start_ms <= next
            } else {
                w.start_ms <= at
            };
            let alive = started && w.killed_ms.is_none_or(|k| k >= next);
            if !alive {
                continue;
            }
            counted += 1;
            let last_fail = w
                .fail
                .iter()
                // A failure that completes at or after the next injection is that fault's
                // (a daemon kill fails every request in flight at that moment).
                .filter(|(sub, done, _)| *done >= at && *sub < next && *done < next)
                .map(|(sub, _, _)| *sub)
                .max()
                .unwrap_or(0)
                .max(at);
            let rec =
                w.ok.iter()
                    .find(|(_, _, max_sub)| *max_sub > last_fail)
                    .map(|(end, _, _)| end.saturating_sub(at));
            per_worker.push((w.id, rec));
            let worse = match slowest {
                None => true,
                Some((None, _)) => false,
                Some((Some(r), _)) => rec.is_none_or(|x| x > r),
            };
            if worse {
                slowest = Some((rec, w.id));
            }
        }
        let recovery = slowest.and_then(|(r, _)| r);
        let bound = f.bound_ms();
        let missed = counted > 0 && recovery.is_none_or(|r| r > bound);
        let wedged =
            counted > 0 && recovery.is_none_or(|r| r > bound + WEDGE_MARGIN.as_millis() as u64);
        if wedged {
            av.wedges.push(format!(
                "{} at {:.1} s: {} (bound {bound} ms + {} ms)",
                f.kind.name(),
                rel(at),
                recovery.map_or("never recovered".into(), |r| format!("recovery {r} ms")),
                WEDGE_MARGIN.as_millis()
            ));
        }
        if missed {
            av.misses.push(format!(
                "{} at {:.1} s: {} > bound {bound} ms ({} + {} ms; slowest worker {}): {}",
                f.kind.name(),
                rel(at),
                recovery.map_or("never recovered".into(), |r| format!("recovery {r} ms")),
                f.kind.reference_name(),
                f.kind.allowance().as_millis(),
                slowest.map_or(0, |(_, id)| id),
                f.what
            ));
        }
        av.faults.push(FaultResult {
            kind: f.kind.name().into(),
            at_s: rel(at),
            what: f.what.clone(),
            reference_ms: f.ref_ms.saturating_sub(at),
            bound_ms: bound,
            recovery_ms: recovery,
            slowest_worker: slowest.map(|(_, id)| id),
            workers_counted: counted,
            per_worker,
            failed: failed[i],
            timeouts: timeouts[i],
            missed,
        });
    }

    for kind in chaos::ALL {
        let rs: Vec<&FaultResult> = av.faults.iter().filter(|r| r.kind == kind.name()).collect();
        if rs.is_empty() {
            continue;
        }
        let mut rec: Vec<u64> = rs.iter().filter_map(|r| r.recovery_ms).collect();
        rec.sort_unstable();
        let never = rs.iter().any(|r| r.recovery_ms.is_none());
        av.kinds.push(KindRow {
            kind: kind.name().into(),
            count: rs.len(),
            recovery_p50_ms: rec.get(rec.len().saturating_sub(1) / 2).copied(),
            recovery_max_ms: if never { None } else { rec.last().copied() },
            bound: format!(
                "{} + {} ms",
                kind.reference_name(),
                kind.allowance().as_millis()
            ),
            misses: rs.iter().filter(|r| r.missed).count(),
            failed: rs.iter().map(|r| r.failed).sum(),
            timeouts: rs.iter().map(|r| r.timeouts).sum(),
        });
    }

    // Longest span without a success anywhere.
    let mut ends: Vec<u64> = workers
        .iter()
        .flat_map(|w| w.ok.iter().map(|(e, _, _)| *e))
        .filter(|e| *e >= t0_ms && *e <= end_ms)
        .collect();
    ends.push(t0_ms);
    ends.push(end_ms);
    ends.sort_unstable();
    for pair in ends.windows(2) {
        let gap = pair[1] - pair[0];
        if gap > av.longest_gap_ms {
            av.longest_gap_ms = gap;
            av.longest_gap_at_s = rel(pair[0]);
        }
    }
    av
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: u64, ok: &[(u64, u64)], fail: &[(u64, u64)]) -> WorkerHistory {
        WorkerHistory {
            id,
            ok: ok.iter().map(|&(e, s)| (e, 1, s)).collect(),
            fail: fail
                .iter()
                .map(|&(s, d)| (s, d, "Timeout".into()))
                .collect(),
            ..WorkerHistory::default()
        }
    }

    fn fault(at: u64) -> FaultRec {
        FaultRec {
            kind: Fault::ClientKill,
            what: String::new(),
            at_ms: at,
            ref_ms: at,
        }
    }

    #[test]
    fn recovery_waits_for_a_success_submitted_after_the_last_failure() {
        // Failure submitted at 1500 (times out at 6500); a success submitted at 1200 done at
        // 1210 does not count, the one submitted at 1600 (done 1610) does.
        let ws = [w(1, &[(1210, 1200), (1610, 1600)], &[(1500, 6500)])];
        let av = compute(0, 10_000, &ws, &[fault(1000)]);
        assert_eq!(av.faults[0].recovery_ms, Some(610));
        assert!(!av.faults[0].missed);
        assert_eq!(av.faults[0].timeouts, 1);
    }

    #[test]
    fn a_wedged_worker_never_recovers() {
        let ws = [
            w(1, &[(900, 890), (1010, 1005)], &[]),
            w(2, &[(900, 890)], &[(1100, 6100), (2000, 7000)]),
        ];
        let av = compute(0, 10_000, &ws, &[fault(1000)]);
        assert_eq!(av.faults[0].recovery_ms, None);
        assert!(av.faults[0].missed);
        assert_eq!(av.faults[0].slowest_worker, Some(2));
        assert_eq!(av.kinds[0].misses, 1);
        assert_eq!(av.longest_gap_ms, 10_000 - 1010);
    }

    #[test]
    fn killed_workers_are_not_counted() {
        let mut dead = w(2, &[(900, 890)], &[]);
        dead.killed_ms = Some(1500);
        let ws = [w(1, &[(1010, 1005)], &[]), dead];
        let av = compute(0, 10_000, &ws, &[fault(1000)]);
        assert_eq!(av.faults[0].recovery_ms, Some(10));
        assert_eq!(av.faults[0].workers_counted, 1);
    }

    #[test]
    fn failures_of_the_next_fault_and_late_starters_do_not_count() {
        // A CLIENT KILL at 1000, then a daemon kill at 3000 that fails the request in
        // flight (submitted 2990, failed 3000): the worker recovered at 1010 from the first
        // fault's point of view. A worker started at 2500 is not part of the first fault.
        let ws = [
            w(
                1,
                &[(1010, 1005), (2000, 1995), (3050, 3040)],
                &[(2990, 3000)],
            ),
            WorkerHistory {
                start_ms: 2500,
                ..w(2, &[(3500, 3490)], &[])
            },
        ];
        let mut kill = fault(3000);
        kill.kind = Fault::KillDaemon;
        let av = compute(0, 10_000, &ws, &[fault(1000), kill]);
        assert_eq!(av.faults[0].recovery_ms, Some(10));
        assert_eq!(av.faults[0].workers_counted, 1);
        assert_eq!(av.faults[1].failed, 1);
        assert_eq!(av.faults[1].recovery_ms, Some(500));
    }
}
