//! Lua scripts (`Op::Script`): `EVALSHA` by the script's SHA1, and on
//! `NOSCRIPT` (the node never saw the script, or lost its script cache to
//! a restart, a failover or `SCRIPT FLUSH`) `EVAL` with the body, which
//! runs it and caches it on that node for the next `EVALSHA`.
//!
//! redis-rs's `redis::Script` does EVALSHA, then `SCRIPT LOAD` and EVALSHA
//! again (three round trips on a miss, and `SCRIPT LOAD` goes to every
//! node in cluster mode); it also takes the body as `&str`. The engine uses
//! its hash (`Script::get_hash`) and does the fallback itself: two round
//! trips on a miss, on the node that runs the script, and binary bodies
//! work (a body that is not UTF-8 is always sent with `EVAL`).
//!
//! Routing: `Route::Auto` sends the script by its first key's slot (no
//! keys: a random node), like redis-rs routes EVALSHA/EVAL; explicit routes
//! are honoured. Both attempts share the request's deadline.

use tokio::time::Instant;
use vshm_protocol::msg::{ClientError, Completion, Request};

use super::backend::Backend;

/// `[verb, sha-or-body, numkeys, keys..., args...]`.
fn invocation(verb: &str, what: &[u8], keys: &[Vec<u8>], args: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::cmd(verb);
    cmd.arg(what).arg(keys.len());
    for k in keys {
        cmd.arg(k.as_slice());
    }
    for a in args {
        cmd.arg(a.as_slice());
    }
    cmd
}

/// Whether a completion is the server's "unknown script" error.
fn is_noscript(c: &Completion) -> bool {
    matches!(c, Completion::Err(e) if e.message.starts_with("NOSCRIPT"))
}

impl Backend {
    /// Run an `Op::Script` (see the module docs).
    pub(super) async fn run_script(
        &self,
        req: &Request,
        code: &[u8],
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> Result<Completion, ClientError> {
        let bound = self.request_timeout(req.timeout_ms);
        let deadline = Instant::now() + bound;
        if let Ok(text) = std::str::from_utf8(code) {
            let script = redis::Script::new(text);
            let cmd = invocation("EVALSHA", script.get_hash().as_bytes(), keys, args);
            let c = self
                .run_shared(req, "EVALSHA", cmd, deadline, bound)
                .await?;
            if !is_noscript(&c) {
                return Ok(c);
            }
        }
        let cmd = invocation("EVAL", code, keys, args);
        self.run_shared(req, "EVAL", cmd, deadline, bound).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vshm_protocol::msg::{ErrorKind, Value};

    #[test]
    fn evalsha_command_and_noscript() {
        let cmd = invocation("EVALSHA", b"abc", &[b"k".to_vec()], &[b"a".to_vec()]);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(s) => s.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(args, [&b"EVALSHA"[..], b"abc", b"1", b"k", b"a"]);
        // The hash is the script's SHA1 (as SCRIPT LOAD returns it).
        assert_eq!(
            redis::Script::new("return 1").get_hash(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert!(is_noscript(&Completion::Err(ClientError::new(
            ErrorKind::Request,
            "NOSCRIPT No matching script. Please use EVAL."
        ))));
        assert!(!is_noscript(&Completion::Ok(Value::Nil)));
    }
}
