//! C peer programs of the benchmarks (`bench/c/*.c`): compiled with the
//! system C compiler against the system's libhiredis (pkg-config) into
//! `target/vshm-bench-c/`, once per run of the bench (rebuilt when the
//! source is newer than the binary).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::BoxResult;

/// Compile `bench/c/<name>.c` (source embedded at build time by the
/// caller: `include_str!("../c/<name>.c")`) and return the binary's path.
/// `extra` is appended to the compiler's arguments (libraries beyond
/// hiredis, defines).
pub fn build(name: &str, source: &str, extra: &[&str]) -> BoxResult<PathBuf> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    let unchanged = std::fs::read_to_string(&src).is_ok_and(|s| s == source) && bin.exists();
    if unchanged {
        return Ok(bin);
    }
    std::fs::write(&src, source).map_err(|e| format!("writing {}: {e}", src.display()))?;
    let flags = pkg_config(&["--cflags", "--libs", "hiredis"]).map_err(|e| {
        format!("{e} (is libhiredis-dev installed? scripts/install-redis.sh installs it)")
    })?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-g", "-Wall", "-Wextra", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags.split_whitespace())
        .args(extra)
        .output()
        .map_err(|e| format!("running {cc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "compiling {}: {}\n{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(bin)
}

/// `target/vshm-bench-c` beside the running binary's profile directory.
pub fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("."));
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    // target/<profile> -> target
    dir.pop();
    dir.join("vshm-bench-c")
}

fn pkg_config(args: &[&str]) -> BoxResult<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .output()
        .map_err(|e| format!("running pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pkg-config {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
