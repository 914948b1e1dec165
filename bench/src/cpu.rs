//! CPU accounting from the kernel: user + system time of other processes
//! (`/proc/<pid>/stat`, all threads) and of the calling process
//! (`getrusage(RUSAGE_SELF)`).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_s() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of process `pid` (every thread, live or exited), or None
/// when it cannot be read (the process is gone).
pub fn process_cpu(pid: i32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // fields are counted after the last ')'. utime and stime are fields 14
    // and 15, i.e. the 12th and 13th after the name.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let tps = ticks_per_s();
    let ticks = utime + stime;
    Some(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// User + system time of the calling process (all its threads).
pub fn self_cpu() -> Duration {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the live struct passed.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A snapshot of the CPU time of a set of processes (daemon, servers).
#[derive(Debug, Clone)]
pub struct Snapshot {
    per_pid: Vec<(i32, Option<Duration>)>,
}

impl Snapshot {
    pub fn take(pids: &[i32]) -> Snapshot {
        Snapshot {
            per_pid: pids.iter().map(|&p| (p, process_cpu(p))).collect(),
        }
    }

    /// CPU spent by the same processes since `self` (processes that could
    /// not be read at either end count zero).
    pub fn since(&self) -> Duration {
        self.per_pid
            .iter()
            .filter_map(|&(pid, before)| {
                let before = before?;
                let now = process_cpu(pid)?;
                Some(now.saturating_sub(before))
            })
            .sum()
    }
}

/// CPU seconds per 100,000 requests.
pub fn per_100k(cpu: Duration, ops: u64) -> f64 {
    if ops == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 100_000.0 / ops as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_visible_both_ways() {
        let pid = std::process::id() as i32;
        let a = process_cpu(pid).expect("own /proc stat");
        let s = self_cpu();
        // Burn ~50 ms of CPU.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(self_cpu() > s);
        assert!(process_cpu(pid).unwrap() >= a);
        assert_eq!(process_cpu(-1), None);
    }
}
