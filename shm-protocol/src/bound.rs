//! The bound of a request: how long the core works on it before it
//! completes it with a timeout, and so how long a client waits for it.
//!
//! One pure function, [`request_bound`], used by both ends: the core sets
//! the request's deadline with it, and the client end waits
//! `request_bound + transport margin` (so that the core's own timeout
//! completion normally arrives first). Blocking commands (`BLPOP q 0`,
//! `XREAD BLOCK 5000 ...`, `WAIT`) are bounded by their own timeout, not
//! by the request timeout: see [`block_timeout`].

use std::time::Duration;

use crate::msg::{ArgRef, ArgsRef, Op};

/// Added to a blocking command's own timeout: the server answers (nil)
/// when the block times out; the margin covers the round trip.
pub const BLOCKING_MARGIN: Duration = Duration::from_millis(500);

/// The default bound of a command that blocks forever (`BLPOP q 0`) when
/// the request sets no timeout (the core's `block_forever_limit_ms`).
pub const DEFAULT_BLOCK_FOREVER_LIMIT_MS: u64 = 3_600_000;

/// The defaults a bound is computed from (the core's configuration; a
/// client learns them when it registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundDefaults {
    /// The bound of a request that sets no timeout (`timeout_ms` 0).
    pub request_timeout: Duration,
    /// The bound of a command that blocks forever when the request sets
    /// no timeout.
    pub block_forever_limit: Duration,
}

impl Default for BoundDefaults {
    fn default() -> Self {
        BoundDefaults {
            request_timeout: Duration::from_millis(250),
            block_forever_limit: Duration::from_millis(DEFAULT_BLOCK_FOREVER_LIMIT_MS),
        }
    }
}

/// How long a blocking command may block server-side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockTimeout {
    /// Timeout 0: block until data arrives.
    Forever,
    /// Block at most this long.
    After(Duration),
    /// The timeout argument is missing or malformed: the server will answer
    /// with an error right away.
    Invalid,
}

/// An argument list, owned (`Vec<Vec<u8>>`, the core's) or borrowed
/// ([`ArgsRef`], a client's).
pub trait ArgList {
    type Arg: AsRef<[u8]>;
    fn as_args(&self) -> &[Self::Arg];
}

impl ArgList for Vec<Vec<u8>> {
    type Arg = Vec<u8>;
    fn as_args(&self) -> &[Vec<u8>] {
        self
    }
}

impl<'a> ArgList for ArgsRef<'a> {
    type Arg = ArgRef<'a>;
    fn as_args(&self) -> &[ArgRef<'a>] {
        self.0
    }
}

impl AsRef<[u8]> for ArgRef<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

fn arg_str<A: AsRef<[u8]>>(args: &[A], i: usize) -> Option<&str> {
    args.get(i)
        .and_then(|a| std::str::from_utf8(a.as_ref()).ok())
}

fn is<A: AsRef<[u8]>>(arg: &A, word: &str) -> bool {
    arg.as_ref().eq_ignore_ascii_case(word.as_bytes())
}

/// A timeout in seconds (decimal allowed), as BLPOP & co. take it.
fn seconds<A: AsRef<[u8]>>(args: &[A], i: usize) -> BlockTimeout {
    match arg_str(args, i).and_then(|s| s.trim().parse::<f64>().ok()) {
        Some(0.0) => BlockTimeout::Forever,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            BlockTimeout::After(Duration::from_secs_f64(s))
        }
        _ => BlockTimeout::Invalid,
    }
}

/// A timeout in milliseconds (integer), as XREAD BLOCK and WAIT take it.
fn millis<A: AsRef<[u8]>>(args: &[A], i: usize) -> BlockTimeout {
    match arg_str(args, i).and_then(|s| s.trim().parse::<i64>().ok()) {
        Some(0) => BlockTimeout::Forever,
        Some(ms) if ms > 0 => BlockTimeout::After(Duration::from_millis(ms as u64)),
        _ => BlockTimeout::Invalid,
    }
}

/// The `BLOCK` option of XREAD/XREADGROUP, if present before `STREAMS`.
fn xread_block<A: AsRef<[u8]>>(args: &[A], group: bool) -> Option<BlockTimeout> {
    // XREADGROUP GROUP <group> <consumer> ...: skip the names, which may
    // themselves be spelled "BLOCK".
    let mut i = if group { 4 } else { 1 };
    while let Some(tok) = args.get(i) {
        if is(tok, "STREAMS") {
            return None;
        } else if is(tok, "BLOCK") {
            return Some(millis(args, i + 1));
        } else if is(tok, "COUNT") || is(tok, "CLAIM") {
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// `Some` for commands that block the connection server-side, with the
/// block timeout; `None` for everything else (including XREAD without
/// BLOCK). `args` is the whole argv (the name first, any case).
pub fn block_timeout<A: AsRef<[u8]>>(args: &[A]) -> Option<BlockTimeout> {
    let name = args.first()?.as_ref();
    if name.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    let upper = &mut buf[..name.len()];
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    block_timeout_named(std::str::from_utf8(upper).ok()?, args)
}

/// [`block_timeout`] when the caller already has the upper-cased command
/// name (the core's `commands::command_name`; container commands carry
/// their subcommand, and none of them blocks).
pub fn block_timeout_named<A: AsRef<[u8]>>(name: &str, args: &[A]) -> Option<BlockTimeout> {
    let last = args.len().saturating_sub(1);
    match name {
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BRPOPLPUSH" | "BLMOVE" => {
            Some(if args.len() < 3 {
                BlockTimeout::Invalid
            } else {
                seconds(args, last)
            })
        }
        "BLMPOP" | "BZMPOP" => Some(seconds(args, 1)),
        "XREAD" => xread_block(args, false),
        "XREADGROUP" => xread_block(args, true),
        "WAIT" => Some(millis(args, 2)),
        "WAITAOF" => Some(millis(args, 3)),
        _ => None,
    }
}

/// The bound of a request whose commands block as `blocks` say (see
/// [`block_timeout`]; `Invalid` entries do not block). `timeout_ms` is the
/// request's own timeout (0: `defaults.request_timeout`).
///
/// * Nothing blocks: the request timeout.
/// * Something blocks forever: the request's `timeout_ms` if set (the
///   caller asked for that bound), else `defaults.block_forever_limit`.
/// * Otherwise: the request timeout, or the sum of the block timeouts
///   plus [`BLOCKING_MARGIN`] if that is longer (the server answers nil
///   when a block times out).
pub fn bound_of(
    blocks: impl IntoIterator<Item = BlockTimeout>,
    timeout_ms: u32,
    defaults: &BoundDefaults,
) -> Duration {
    let explicit = (timeout_ms != 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let base = explicit.unwrap_or(defaults.request_timeout);
    let mut blocking = false;
    let mut sum = Duration::ZERO;
    for b in blocks {
        match b {
            BlockTimeout::Forever => return explicit.unwrap_or(defaults.block_forever_limit),
            BlockTimeout::After(d) => {
                blocking = true;
                sum = sum.saturating_add(d);
            }
            BlockTimeout::Invalid => {}
        }
    }
    if blocking {
        base.max(sum.saturating_add(BLOCKING_MARGIN))
    } else {
        base
    }
}

/// The bound of a request: [`bound_of`] over the blocking commands of
/// `op` (a command, or the commands of a pipeline; inside MULTI nothing
/// blocks). The core's deadline for the request and the client's wait
/// both come from this.
pub fn request_bound<A: ArgList>(
    op: &Op<A>,
    timeout_ms: u32,
    defaults: &BoundDefaults,
) -> Duration {
    match op {
        Op::Command { args } => bound_of(block_timeout(args.as_args()), timeout_ms, defaults),
        Op::Batch {
            atomic: false,
            commands,
            ..
        } => bound_of(
            commands.iter().filter_map(|c| block_timeout(c.as_args())),
            timeout_ms,
            defaults,
        ),
        _ => bound_of(None, timeout_ms, defaults),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn bt(s: &str) -> Option<BlockTimeout> {
        block_timeout(&argv(s))
    }

    #[test]
    fn blocking_timeouts() {
        use BlockTimeout::*;
        let secs = |s: f64| Some(After(Duration::from_secs_f64(s)));
        let ms = |m: u64| Some(After(Duration::from_millis(m)));
        assert_eq!(bt("BLPOP a b 2"), secs(2.0));
        assert_eq!(bt("brpop a 0.5"), secs(0.5));
        assert_eq!(bt("BLPOP a 0"), Some(Forever));
        assert_eq!(bt("BLPOP a"), Some(Invalid));
        assert_eq!(bt("BLPOP a x"), Some(Invalid));
        assert_eq!(bt("BLPOP a -1"), Some(Invalid));
        assert_eq!(bt("BLPOP a inf"), Some(Invalid));
        assert_eq!(bt("BRPOPLPUSH s d 3"), secs(3.0));
        assert_eq!(bt("BLMOVE s d LEFT RIGHT 1.5"), secs(1.5));
        assert_eq!(bt("BZPOPMIN z 1"), secs(1.0));
        assert_eq!(bt("BZPOPMAX z 0"), Some(Forever));
        assert_eq!(bt("BLMPOP 2 1 k LEFT"), secs(2.0));
        assert_eq!(bt("BZMPOP 0 1 k MIN"), Some(Forever));
        assert_eq!(bt("XREAD COUNT 2 BLOCK 100 STREAMS s $"), ms(100));
        assert_eq!(bt("xread block 0 streams s $"), Some(Forever));
        assert_eq!(bt("XREAD COUNT 2 STREAMS s 0"), None);
        // A stream named BLOCK after STREAMS is not the option.
        assert_eq!(bt("XREAD STREAMS BLOCK 0"), None);
        assert_eq!(bt("XREADGROUP GROUP g c BLOCK 50 STREAMS s >"), ms(50));
        assert_eq!(bt("XREADGROUP GROUP BLOCK BLOCK COUNT 1 STREAMS s >"), None);
        assert_eq!(bt("WAIT 1 100"), ms(100));
        assert_eq!(bt("WAIT 1 0"), Some(Forever));
        assert_eq!(bt("WAITAOF 1 0 20"), ms(20));
        assert_eq!(bt("GET k"), None);
        assert_eq!(bt("LPOP k"), None);
        assert_eq!(bt("AVERYLONGCOMMANDNAMEINDEED 1 2"), None);
        assert_eq!(block_timeout::<Vec<u8>>(&[]), None);
    }

    fn cmd(s: &str) -> Op<Vec<Vec<u8>>> {
        Op::Command { args: argv(s) }
    }

    const D: BoundDefaults = BoundDefaults {
        request_timeout: Duration::from_millis(250),
        block_forever_limit: Duration::from_secs(3600),
    };

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn bounds_of_commands() {
        // Not blocking: the request timeout, default or explicit.
        assert_eq!(request_bound(&cmd("GET k"), 0, &D), ms(250));
        assert_eq!(request_bound(&cmd("GET k"), 40, &D), ms(40));
        // Blocking forever: the explicit timeout, else the limit.
        assert_eq!(request_bound(&cmd("BLPOP q 0"), 0, &D), ms(3_600_000));
        assert_eq!(request_bound(&cmd("BLPOP q 0"), 2000, &D), ms(2000));
        assert_eq!(
            request_bound(&cmd("XREAD BLOCK 0 STREAMS s $"), 0, &D),
            ms(3_600_000)
        );
        // Blocking with a timeout: the block plus the margin, or the
        // request timeout if longer.
        assert_eq!(request_bound(&cmd("BLPOP q 3"), 0, &D), ms(3500));
        assert_eq!(request_bound(&cmd("BLPOP q 3"), 10_000, &D), ms(10_000));
        assert_eq!(request_bound(&cmd("BLPOP q 3"), 100, &D), ms(3500));
        assert_eq!(request_bound(&cmd("WAIT 1 100"), 0, &D), ms(600));
        for c in [
            "BRPOP q 2",
            "BLMOVE a b LEFT RIGHT 2",
            "BZPOPMIN z 2",
            "BZPOPMAX z 2",
            "BLMPOP 2 1 k LEFT",
            "BZMPOP 2 1 k MIN",
            "XREAD BLOCK 2000 STREAMS s $",
            "XREADGROUP GROUP g c BLOCK 2000 STREAMS s >",
            "WAIT 0 2000",
            "WAITAOF 0 0 2000",
            "BRPOPLPUSH a b 2",
        ] {
            assert_eq!(request_bound(&cmd(c), 0, &D), ms(2500), "{c}");
        }
        // A malformed timeout: the server answers at once.
        assert_eq!(request_bound(&cmd("BLPOP q x"), 0, &D), ms(250));
        // Borrowed arguments give the same bound.
        let a = argv("BLPOP q 3");
        let refs: Vec<ArgRef<'_>> = a.iter().map(|x| ArgRef(x)).collect();
        let op = Op::Command {
            args: ArgsRef(&refs),
        };
        assert_eq!(request_bound(&op, 0, &D), ms(3500));
    }

    #[test]
    fn bounds_of_batches() {
        let batch = |atomic, cs: &[&str]| Op::Batch {
            atomic,
            watch: vec![],
            commands: cs.iter().map(|c| argv(c)).collect::<Vec<_>>(),
        };
        assert_eq!(
            request_bound(&batch(false, &["GET a", "SET b c"]), 0, &D),
            ms(250)
        );
        assert_eq!(
            request_bound(&batch(false, &["BLPOP a 1", "BLPOP b 2"]), 0, &D),
            ms(3500)
        );
        assert_eq!(
            request_bound(&batch(false, &["GET a", "BLPOP b 0"]), 0, &D),
            ms(3_600_000)
        );
        assert_eq!(
            request_bound(&batch(false, &["GET a", "BLPOP b 0"]), 900, &D),
            ms(900)
        );
        // Inside MULTI nothing blocks.
        assert_eq!(request_bound(&batch(true, &["BLPOP a 0"]), 0, &D), ms(250));
        // Other operations: the request timeout.
        let script: Op<Vec<Vec<u8>>> = Op::Script {
            code: b"return 1".to_vec(),
            keys: vec![],
            args: vec![],
        };
        assert_eq!(request_bound(&script, 0, &D), ms(250));
        assert_eq!(request_bound(&script, 70, &D), ms(70));
    }
}
