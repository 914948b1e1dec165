//! Whether a waiting client should spin before it parks: [`AdaptiveSpin`],
//! learnt from the outcome of its recent waits and the machine's load.

use std::time::Duration;

use vshm_protocol::sync::{AtomicBool, AtomicU32, Ordering};

use crate::endpoint::WaitStrategy;

/// Whether spinning before parking pays, learnt from the waits of one
/// client end: a spin (here: the whole awake budget, spin then yield,
/// [`WaitStrategy::awake`]) pays when the completion arrives before the
/// budget runs out (it saves the futex wake-up), and wastes a core when
/// it does not (many processes per core, slow commands). A score rises by
/// 2 for a wait that ended with the completion within the budget and
/// falls by 4 for one that outlasted it (it parked, or its last yield
/// returned late); at [`AdaptiveSpin::ON`] or above every wait
/// spins, below only a probe does: a burst of [`AdaptiveSpin::PROBE_BURST`]
/// waits every [`AdaptiveSpin::PROBE_EVERY`] (to notice that spinning pays
/// again). Spinning therefore stays on only
/// while at least two spins in three succeed. And none spins while the
/// machine is crowded: more threads runnable than the CPU count plus one
/// (checked every [`AdaptiveSpin::LOAD_EVERY`] waits, with a back-off:
/// [`AdaptiveSpin::check_load`]), as with many prefork workers per core,
/// where a spinning waiter takes the CPU that the core and the server
/// need to answer it.
///
/// The counters are Relaxed: a heuristic, no memory is published through
/// them, and a lost update between two racing waiters only shifts the
/// score by one step.
#[derive(Debug)]
pub struct AdaptiveSpin {
    score: AtomicU32,
    waits: AtomicU32,
    /// Probe waits still to spin in the current burst.
    burst: AtomicU32,
    crowded: AtomicBool,
    /// Load checks still to skip while crowded (the back-off below).
    hold: AtomicU32,
    /// Checks to skip after the next crowded one: doubles on each crowded
    /// check, halves on a quiet one made after a period of spinning.
    backoff: AtomicU32,
    /// Whether the machine is crowded now (`machine_crowded`; tests
    /// substitute their own).
    load: fn() -> bool,
}

impl Default for AdaptiveSpin {
    fn default() -> AdaptiveSpin {
        AdaptiveSpin::with_load(machine_crowded)
    }
}

/// More threads are runnable right now than the CPUs available plus one:
/// the instant run-queue count (the fourth field of `/proc/loadavg`,
/// "runnable/total"), which counts this thread too. Without `/proc`, the
/// 1-minute load average stands in (it lags by up to a minute).
fn machine_crowded() -> bool {
    // Read once: `available_parallelism` reads cgroup files on Linux.
    // (It honours a CPU quota while the run queue counts the whole host:
    // in a CPU-limited container on a busy host the spin stays off.)
    static CPUS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let cpus =
        *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    let runnable = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| runnable_threads(&s));
    match runnable {
        Some(r) => f64::from(r) > cpus + 1.0,
        None => {
            let mut load = [0f64; 1];
            // SAFETY: getloadavg writes at most `nelem` (1) doubles into `load`.
            let n = unsafe { libc::getloadavg(load.as_mut_ptr(), 1) };
            n == 1 && load[0] > cpus + 1.0
        }
    }
}

/// The runnable count from the text of `/proc/loadavg`
/// (`"0.52 0.58 0.59 3/467 12345"` gives 3).
fn runnable_threads(loadavg: &str) -> Option<u32> {
    let field = loadavg.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

impl AdaptiveSpin {
    /// Score from which every wait spins.
    pub const ON: u32 = 8;
    /// Highest score.
    pub const MAX: u32 = 16;
    /// While off, one wait in this many starts a probe.
    pub const PROBE_EVERY: u32 = 64;
    /// Consecutive waits that spin in a probe. One alone would measure a
    /// cold path: while the client parks, the core's dispatcher parks too
    /// between its requests, and a lone probe's round trip includes waking
    /// it, which the spin budget may not cover although a warm loop fits.
    /// The first waits of a burst warm the path; enough of them succeed to
    /// reach [`AdaptiveSpin::ON`] when spinning pays.
    pub const PROBE_BURST: u32 = 5;

    /// Waits between two load checks.
    pub const LOAD_EVERY: u32 = 512;
    /// Most load checks skipped after a crowded one.
    pub const MAX_HOLD: u32 = 64;

    pub fn new() -> AdaptiveSpin {
        AdaptiveSpin::default()
    }

    /// With `load` telling whether the machine is crowded.
    pub fn with_load(load: fn() -> bool) -> AdaptiveSpin {
        AdaptiveSpin {
            score: AtomicU32::new(0),
            waits: AtomicU32::new(0),
            burst: AtomicU32::new(0),
            crowded: AtomicBool::new(false),
            hold: AtomicU32::new(0),
            backoff: AtomicU32::new(0),
            load,
        }
    }

    /// The strategy for the next wait: `s` itself unless it is adaptive
    /// and staying awake does not pay now (then neither spin nor yield).
    pub fn strategy(&self, s: WaitStrategy) -> WaitStrategy {
        if !s.adaptive || s.awake().is_zero() {
            return s;
        }
        let n = self.waits.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(Self::LOAD_EVERY) {
            self.check_load();
        }
        let on = !self.crowded.load(Ordering::Relaxed)
            && (self.score.load(Ordering::Relaxed) >= Self::ON || self.probing(n));
        if on {
            s
        } else {
            WaitStrategy {
                spin: Duration::ZERO,
                yield_for: Duration::ZERO,
                ..s
            }
        }
    }

    /// Whether wait number `n` belongs to a probe burst.
    fn probing(&self, n: u32) -> bool {
        if n.is_multiple_of(Self::PROBE_EVERY) {
            self.burst.store(Self::PROBE_BURST - 1, Ordering::Relaxed);
            return true;
        }
        let left = self.burst.load(Ordering::Relaxed);
        if left > 0 {
            self.burst.store(left - 1, Ordering::Relaxed);
        }
        left > 0
    }

    /// One load check. The run-queue count is instant, and while waiters
    /// spin they are in it themselves: a crowd of spinning processes looks
    /// crowded, stops spinning, then looks quiet. So a crowded check holds
    /// spinning off for the next `backoff` checks, a back-off that doubles
    /// (to [`AdaptiveSpin::MAX_HOLD`]) on each crowded check and halves
    /// only on a quiet check made after a period of spinning (a quiet one
    /// right after a hold proves nothing: nobody spun). A steady crowd
    /// thus spins for one check period in `MAX_HOLD + 2` at most, and a
    /// lone caller after a burst spins again after its current hold.
    fn check_load(&self) {
        let hold = self.hold.load(Ordering::Relaxed);
        if hold > 0 {
            self.hold.store(hold - 1, Ordering::Relaxed);
            return;
        }
        let crowded = (self.load)();
        let was_crowded = self.crowded.load(Ordering::Relaxed);
        let backoff = self.backoff.load(Ordering::Relaxed);
        if crowded {
            let next = (backoff * 2).clamp(1, Self::MAX_HOLD);
            self.backoff.store(next, Ordering::Relaxed);
            self.hold.store(next, Ordering::Relaxed);
        } else if !was_crowded {
            self.backoff.store(backoff / 2, Ordering::Relaxed);
        }
        self.crowded.store(crowded, Ordering::Relaxed);
    }

    /// Learn from a wait made with `used` (from [`AdaptiveSpin::strategy`])
    /// that ended with what it waited for after `waited`.
    pub fn record(&self, used: WaitStrategy, waited: Duration) {
        if !used.adaptive || used.awake().is_zero() {
            return;
        }
        let score = self.score.load(Ordering::Relaxed);
        let next = if waited <= used.awake() {
            (score + 2).min(Self::MAX)
        } else {
            score.saturating_sub(4)
        };
        self.score.store(next, Ordering::Relaxed);
    }

    /// Whether every wait spins now.
    pub fn is_on(&self) -> bool {
        self.score.load(Ordering::Relaxed) >= Self::ON
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    fn idle() -> bool {
        false
    }

    fn crowded() -> bool {
        true
    }

    /// An adaptive spin whose waits all ended within their spin: on.
    fn turned_on(load: fn() -> bool) -> AdaptiveSpin {
        let a = AdaptiveSpin::with_load(load);
        for _ in 0..20 {
            a.record(WaitStrategy::CLIENT, US(10));
        }
        assert!(a.is_on());
        a
    }

    #[test]
    fn adaptive_spin_turns_on_when_spins_end_with_the_completion() {
        let a = AdaptiveSpin::with_load(idle);
        let s = WaitStrategy::CLIENT;
        // Off at first: only probes spin.
        let spinning = (0..AdaptiveSpin::PROBE_EVERY)
            .filter(|_| !a.strategy(s).awake().is_zero())
            .count();
        assert_eq!(spinning, AdaptiveSpin::PROBE_BURST as usize);
        // Probes that succeed turn it on.
        while !a.is_on() {
            a.record(s, US(30));
        }
        assert!((0..100).all(|_| a.strategy(s) == s));
    }

    #[test]
    fn a_probe_whose_first_wait_finds_the_path_cold_still_turns_it_on() {
        let a = AdaptiveSpin::with_load(idle);
        let s = WaitStrategy::CLIENT;
        for i in 0..AdaptiveSpin::PROBE_BURST {
            let used = a.strategy(s);
            assert_eq!(used, s, "wait {i} of the burst spins");
            // The first wait wakes the core and parks; the others fit.
            a.record(used, if i == 0 { s.awake() + US(40) } else { US(45) });
        }
        assert!(a.is_on());
    }

    #[test]
    fn adaptive_spin_turns_off_when_spins_end_in_a_park() {
        let a = turned_on(idle);
        let s = WaitStrategy::CLIENT;
        // One success in two is not enough to stay on.
        for _ in 0..10 {
            a.record(s, US(10));
            a.record(s, s.awake() + US(1));
        }
        assert!(!a.is_on());
        let spinning = (0..10 * AdaptiveSpin::PROBE_EVERY)
            .filter(|_| !a.strategy(s).awake().is_zero())
            .count();
        assert_eq!(spinning, 10 * AdaptiveSpin::PROBE_BURST as usize);
    }

    #[test]
    fn a_wait_that_ends_while_yielding_counts_as_a_spin_that_paid() {
        let s = WaitStrategy::CLIENT;
        assert!(!s.spin.is_zero() && !s.yield_for.is_zero());
        let a = AdaptiveSpin::with_load(idle);
        // Past the pure spin, within spin + yield: still no park.
        for _ in 0..AdaptiveSpin::ON / 2 {
            a.record(s, s.spin + s.yield_for / 2);
        }
        assert!(a.is_on());
        let a = turned_on(idle);
        for _ in 0..10 {
            a.record(s, s.awake() + US(1));
        }
        assert!(!a.is_on());
        // Off: neither phase runs (the wait parks at once).
        let off = (0..AdaptiveSpin::PROBE_EVERY)
            .map(|_| a.strategy(s))
            .find(|u| u.spin.is_zero())
            .expect("off waits outside probes");
        assert!(off.yield_for.is_zero() && off.park);
    }

    #[test]
    fn no_spin_on_a_crowded_machine() {
        let a = turned_on(crowded);
        let s = WaitStrategy::CLIENT;
        assert!((0..1000).all(|_| a.strategy(s).awake().is_zero()));
    }

    #[test]
    fn runnable_count_is_read_from_proc_loadavg() {
        assert_eq!(runnable_threads("0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(runnable_threads("1.00 1.00 1.00 17/900 1"), Some(17));
        assert_eq!(runnable_threads("1.00 1.00 1.00"), None);
        assert_eq!(runnable_threads("1.00 1.00 1.00 x/9 1"), None);
        // This machine's own file parses (the gate is not silently off).
        if let Ok(s) = std::fs::read_to_string("/proc/loadavg") {
            assert!(runnable_threads(&s).is_some_and(|r| r >= 1), "{s}");
        }
    }

    static CROWD: AtomicBool = AtomicBool::new(true);

    fn crowd() -> bool {
        CROWD.load(Ordering::Relaxed)
    }

    /// Over one load-check period: how many of its waits spin.
    fn spinning_in_one_period(a: &AdaptiveSpin) -> usize {
        let s = WaitStrategy::CLIENT;
        (0..AdaptiveSpin::LOAD_EVERY)
            .filter(|_| {
                let used = a.strategy(s);
                // Every spin ends with the completion: the score stays on.
                a.record(used, US(10));
                !used.awake().is_zero()
            })
            .count()
    }

    #[test]
    fn a_crowd_that_looks_quiet_once_it_stops_spinning_backs_off() {
        // The crowd is in the run queue only while it spins.
        let a = turned_on(crowd);
        let mut spun = 0;
        let periods = 200;
        for _ in 0..periods {
            let n = spinning_in_one_period(&a);
            spun += usize::from(n > 0);
            CROWD.store(n > 0, Ordering::Relaxed);
        }
        // Doubling holds: 1, 2, 4, ... 64, then one period in 66.
        assert!(spun <= 12, "spun in {spun} of {periods} periods");
        // The crowd goes away for good: after its hold, spinning resumes
        // and stays on.
        CROWD.store(false, Ordering::Relaxed);
        let held = (0..=AdaptiveSpin::MAX_HOLD + 1)
            .position(|_| spinning_in_one_period(&a) > 0)
            .expect("spins again after the hold");
        assert!(held > 0, "the last check was crowded: held at first");
        let all = AdaptiveSpin::LOAD_EVERY as usize;
        for _ in 0..20 {
            assert_eq!(spinning_in_one_period(&a), all);
        }
        // The back-off has decayed over those quiet checks: one crowded
        // check now holds for one period only.
        CROWD.store(true, Ordering::Relaxed);
        assert_eq!(spinning_in_one_period(&a), 0);
        CROWD.store(false, Ordering::Relaxed);
        assert_eq!(spinning_in_one_period(&a), 0, "held");
        assert_eq!(spinning_in_one_period(&a), all);
    }

    #[test]
    fn fixed_strategies_are_not_adapted() {
        let a = AdaptiveSpin::new();
        for s in [
            WaitStrategy::PARK,
            WaitStrategy::DEFAULT,
            WaitStrategy::SPIN,
        ] {
            a.record(s, Duration::from_secs(1));
            assert_eq!(a.strategy(s), s);
        }
        // A wait that did not spin teaches nothing.
        let off = WaitStrategy {
            spin: Duration::ZERO,
            yield_for: Duration::ZERO,
            ..WaitStrategy::CLIENT
        };
        for _ in 0..20 {
            a.record(off, US(1));
        }
        assert!(!a.is_on());
    }
}
