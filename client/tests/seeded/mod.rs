//! Seeded random cases shared by the hostile-peer tests (`hostile.rs`,
//! `hostile_segment.rs`): `VSHM_HOSTILE_SEED=<n>` reproduces a run.

use rand::rngs::SmallRng;
use rand::SeedableRng;

pub fn base_seed() -> u64 {
    std::env::var("VSHM_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Run `f` for `n` seeded cases; a failing case panics with its seed.
pub fn for_cases(name: &str, n: u64, f: impl Fn(&mut SmallRng)) {
    let base = base_seed();
    for i in 0..n {
        let seed = base.wrapping_add(i);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut SmallRng::seed_from_u64(seed))
        }));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: case with seed {seed} failed (VSHM_HOSTILE_SEED={seed}): {msg}");
        }
    }
}
