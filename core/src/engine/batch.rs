//! Batches (`Op::Batch`): pipelines and MULTI/EXEC transactions.
//!
//! * **Pipeline** (`atomic = false`). Standalone: one redis-rs pipeline on
//!   the shared connection. Cluster: redis-rs 1.8 only sends a pipeline to
//!   one node (`route_pipeline`; its `ConnectionLike` impl refuses a
//!   pipeline whose commands are in several slots), so the engine splits
//!   it: consecutive commands whose keys are all in one slot form a *wave*;
//!   each wave is sent as one sub-pipeline per slot, concurrently; a
//!   command whose keys span slots, or that has no keys, runs alone with
//!   redis-rs's own routing (MGET/DEL/... split per slot, DBSIZE/PING/...
//!   fanned out) after everything before it has completed and before
//!   anything after it is sent. Results are put back in request order,
//!   error replies in place.
//! * **Transaction** (`atomic = true`). All keys of all commands and the
//!   watch keys must be in one slot (cluster; checked before anything is
//!   sent). `WATCH keys`, `MULTI`, the commands and `EXEC` go out as one
//!   write on the shared multiplexed connection: redis-rs writes one
//!   request's bytes contiguously and the server runs one connection's
//!   commands in order, so no other request on that connection can come
//!   between WATCH and EXEC, and EXEC (or the EXECABORT it turns into)
//!   always clears the WATCH, leaving the connection clean.
//!
//! A non-atomic batch with a blocking command (BLPOP, WAIT, ...) runs on a
//! dedicated connection, like a single blocking command.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route as RRoute, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::RedisResult;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::warn;
use vshm_protocol::msg::{flags, Args, ClientError, Completion, ErrorKind, Request, Route, Value};

use super::backend::{
    build_cmd, check_standalone_route, cluster_routing, connect_error, invalid, Backend, Kind,
    BLOCKING_MARGIN,
};
use super::cluster::{self, Cluster};
use super::standalone;
use crate::commands::{self, BlockTimeout};
use crate::keys::{command_keys, placement, slot_of, Placement};
use crate::value::{convert, map_error, server_error};

/// One command's outcome inside a batch.
type Outcome = Result<Value, ClientError>;

/// A key for an error message: lossy text, at most 64 bytes.
fn show_key(k: &[u8]) -> String {
    let cut = &k[..k.len().min(64)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if k.len() > 64 {
        s.push_str("...");
    }
    format!("`{s}`")
}

/// The one slot of a cluster transaction (watch keys and every command's
/// keys), `None` when it has no keys; `InvalidRequest` naming two keys in
/// different slots otherwise.
fn transaction_slot<'a>(
    watch: &'a [Vec<u8>],
    commands: &'a [Args],
    names: &[String],
) -> Result<Option<&'a [u8]>, ClientError> {
    let mut first: Option<(u16, &[u8])> = None;
    let all = watch.iter().map(Vec::as_slice).chain(
        commands
            .iter()
            .zip(names)
            .flat_map(|(c, n)| command_keys(n, c)),
    );
    for k in all {
        let s = slot_of(k);
        match first {
            None => first = Some((s, k)),
            Some((fs, fk)) if fs != s => {
                return Err(invalid(format!(
                    "cross-slot transaction refused (nothing was sent): keys {} (slot {fs}) and {} (slot {s}) \
                     are in different slots; all keys and watch keys of a cluster transaction must \
                     hash to one slot (use a {{hashtag}})",
                    show_key(fk),
                    show_key(k)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, k)| k))
}

/// A reply inside a batch: an error reply becomes the error in place.
fn outcome(v: redis::Value) -> Outcome {
    match v {
        redis::Value::ServerError(e) => Err(server_error(&e)),
        v => Ok(convert(v)),
    }
}

fn outcome_of(r: RedisResult<redis::Value>) -> Outcome {
    match r {
        Ok(v) => outcome(v),
        Err(e) => Err(map_error(&e)),
    }
}

/// The text of an error put in place in a result array: server errors keep
/// their `"CODE message"`; others get their kind as the code
/// (`"CONNECTION ..."`, `"TIMEOUT ..."`).
fn error_text(e: &ClientError) -> Vec<u8> {
    let code = match e.kind {
        ErrorKind::Request | ErrorKind::ExecAbort => None,
        ErrorKind::Timeout => Some("TIMEOUT"),
        ErrorKind::Connection => Some("CONNECTION"),
        ErrorKind::Closing => Some("CLOSING"),
        ErrorKind::InvalidRequest => Some("INVALID"),
        ErrorKind::Overloaded => Some("OVERLOADED"),
    };
    let starts_with_code = e
        .message
        .split(' ')
        .next()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()));
    match code {
        Some(c) if !starts_with_code => format!("{c} {}", e.message).into_bytes(),
        _ => e.message.clone().into_bytes(),
    }
}

/// The batch's completion: the array of outcomes (errors in place), or
/// with `raise` the first error.
fn finish(results: Vec<Outcome>, raise: bool) -> Completion {
    if raise {
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            return Completion::Err(e.clone());
        }
    }
    Completion::Ok(Value::Array(
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| Value::Error(error_text(&e))))
            .collect(),
    ))
}

/// A redis-rs pipeline (not redis-rs's atomic mode: every reply is kept).
fn pipeline<'a>(cmds: impl Iterator<Item = &'a Args>) -> redis::Pipeline {
    let mut p = redis::Pipeline::new();
    for c in cmds {
        p.add_command(build_cmd(c));
    }
    p
}

/// `[WATCH keys] MULTI cmds... EXEC` as one plain pipeline.
fn transaction_pipeline(watch: &[Vec<u8>], commands: &[Args]) -> redis::Pipeline {
    let mut p = redis::Pipeline::with_capacity(commands.len() + 3);
    if !watch.is_empty() {
        let mut w = redis::cmd("WATCH");
        for k in watch {
            w.arg(k.as_slice());
        }
        p.add_command(w);
    }
    p.add_command(redis::cmd("MULTI"));
    for c in commands {
        p.add_command(build_cmd(c));
    }
    p.add_command(redis::cmd("EXEC"));
    p
}

fn unexpected(what: &str) -> ClientError {
    ClientError::new(
        ErrorKind::Connection,
        format!("unexpected reply to a batch: {what}"),
    )
}

/// Interpret the replies of [`transaction_pipeline`].
fn transaction_outcome(
    watched: bool,
    n: usize,
    replies: Vec<redis::Value>,
    raise: bool,
) -> Result<Completion, ClientError> {
    let w = usize::from(watched);
    if replies.len() != w + n + 2 {
        return Err(unexpected(&format!(
            "{} replies for {} commands",
            replies.len(),
            w + n + 2
        )));
    }
    let mut replies = replies;
    let exec = replies.pop().unwrap_or(redis::Value::Nil);
    if let redis::Value::ServerError(e) = &replies[w] {
        // MULTI itself failed: the commands ran one by one, unprotected.
        return Err(ClientError::new(
            ErrorKind::Request,
            format!(
                "MULTI failed ({}); the transaction's commands may have run outside a transaction",
                crate::value::server_error_text(e)
            ),
        ));
    }
    let queue_error = replies[w + 1..]
        .iter()
        .enumerate()
        .find_map(|(i, r)| match r {
            redis::Value::ServerError(e) => Some((i, e.clone())),
            _ => None,
        });
    match exec {
        redis::Value::Array(items) => {
            if items.len() != n {
                return Err(unexpected(&format!(
                    "EXEC returned {} results for {n} commands",
                    items.len()
                )));
            }
            if let (true, redis::Value::ServerError(e)) = (watched, &replies[0]) {
                warn!(error = %crate::value::server_error_text(e), "WATCH failed but EXEC ran");
            }
            Ok(finish(items.into_iter().map(outcome).collect(), raise))
        }
        redis::Value::Nil => {
            if raise {
                Err(ClientError::new(
                    ErrorKind::ExecAbort,
                    "transaction aborted: a watched key changed (EXEC returned nil)",
                ))
            } else {
                Ok(Completion::Ok(Value::Nil))
            }
        }
        redis::Value::ServerError(e) => {
            let mut err = server_error(&e);
            if let Some((i, qe)) = queue_error {
                if qe.code() == "CROSSSLOT" {
                    return Err(invalid(format!(
                        "cross-slot transaction refused by the server (nothing ran): command {i}: {}",
                        crate::value::server_error_text(&qe)
                    )));
                }
                err.message = format!(
                    "{} (command {i}: {})",
                    err.message,
                    crate::value::server_error_text(&qe)
                );
            }
            Err(err)
        }
        other => Err(unexpected(&format!("EXEC returned {other:?}"))),
    }
}

/// Run a plain pipeline on a standalone connection.
async fn standalone_pipeline(
    conn: &mut MultiplexedConnection,
    commands: &[Args],
) -> RedisResult<Vec<redis::Value>> {
    let p = pipeline(commands.iter());
    conn.req_packed_commands(&p, 0, commands.len()).await
}

fn place(results: &mut [Option<Outcome>], idx: &[usize], r: RedisResult<Vec<redis::Value>>) {
    match r {
        Ok(values) if values.len() == idx.len() => {
            for (&i, v) in idx.iter().zip(values) {
                results[i] = Some(outcome(v));
            }
        }
        Ok(values) => {
            let e = unexpected(&format!(
                "{} replies for {} commands",
                values.len(),
                idx.len()
            ));
            for &i in idx {
                results[i] = Some(Err(e.clone()));
            }
        }
        Err(e) => {
            let e = map_error(&e);
            for &i in idx {
                results[i] = Some(Err(e.clone()));
            }
        }
    }
}

/// The cluster split: waves of per-slot sub-pipelines, with keyless and
/// multi-slot commands alone in between.
async fn cluster_pipeline(
    conn: &ClusterConnection,
    commands: &[Args],
    names: &[String],
) -> Vec<Outcome> {
    let n = commands.len();
    let places: Vec<Placement> = commands
        .iter()
        .zip(names)
        .map(|(c, name)| placement(name, c))
        .collect();
    let mut results: Vec<Option<Outcome>> = vec![None; n];
    let mut i = 0;
    while i < n {
        if places[i] == Placement::Alone {
            let mut c = conn.clone();
            results[i] = Some(outcome_of(
                Cluster::auto(&mut c, &build_cmd(&commands[i])).await,
            ));
            i += 1;
            continue;
        }
        let end = (i..n).find(|&j| places[j] == Placement::Alone).unwrap_or(n);
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (j, p) in places.iter().enumerate().take(end).skip(i) {
            if let Placement::Slot(s) = p {
                groups.entry(*s).or_default().push(j);
            }
        }
        let mut tasks = JoinSet::new();
        for (slot, idx) in groups {
            let read_only = idx.iter().all(|&j| commands::is_read_only(&names[j]));
            let addr = if read_only {
                SlotAddr::ReplicaOptional
            } else {
                SlotAddr::Master
            };
            let p = pipeline(idx.iter().map(|&j| &commands[j]));
            let mut c = conn.clone();
            tasks.spawn(async move {
                let route = SingleNodeRoutingInfo::SpecificNode(RRoute::new(slot, addr));
                let len = idx.len();
                let r = c.route_pipeline(p, 0, len, route).await;
                (idx, r)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((idx, r)) => place(&mut results, &idx, r),
                Err(e) => warn!(error = %e, "a sub-pipeline task failed"),
            }
        }
        i = end;
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ClientError::new(
                    ErrorKind::Connection,
                    "sub-pipeline lost (task failed)",
                ))
            })
        })
        .collect()
}

impl Backend {
    /// Run an `Op::Batch` (see the module docs).
    pub(super) async fn run_batch(
        &self,
        req: &Request,
        atomic: bool,
        watch: &[Vec<u8>],
        commands: &[Args],
    ) -> Result<Completion, ClientError> {
        let start = Instant::now();
        if !atomic && !watch.is_empty() {
            return Err(invalid(
                "watch keys need an atomic batch (a transaction): set `atomic`",
            ));
        }
        if matches!(req.route, Route::AllNodes | Route::AllPrimaries) {
            return Err(invalid(
                "a batch cannot be fanned out to several nodes: use Auto (split by key) or a single-node route",
            ));
        }
        let mut names = Vec::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            if c.is_empty() {
                return Err(invalid(format!("command {i} of the batch is empty")));
            }
            if let Some(why) = commands::bad_name(c) {
                return Err(invalid(format!("command {i} of the batch: {why}")));
            }
            let name = commands::command_name(c);
            if let Some(why) = commands::refusal(&name) {
                return Err(invalid(format!("command {i} of the batch ({name}): {why}")));
            }
            names.push(name);
        }
        let raise = req.flags & flags::RAISE_ON_ERROR != 0;
        if commands.is_empty() {
            return Ok(Completion::Ok(Value::Array(Vec::new())));
        }
        // Commands inside MULTI never block; a pipeline with a blocking
        // command needs a connection of its own.
        let blocks: Vec<BlockTimeout> = if atomic {
            Vec::new()
        } else {
            commands
                .iter()
                .zip(&names)
                .filter_map(|(c, n)| commands::block_timeout(n, c))
                .collect()
        };
        let bound = self.batch_bound(&blocks, req.timeout_ms);
        let deadline = start + bound;
        let what = if atomic { "transaction" } else { "batch" };
        let timed_out = || {
            ClientError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} of {} commands timed out after {} ms",
                    commands.len(),
                    bound.as_millis()
                ),
            )
        };
        match &self.kind {
            Kind::Standalone {
                shared,
                dedicated,
                conn_config,
            } => {
                check_standalone_route(shared, &req.route)?;
                if atomic {
                    let (mut conn, generation) = shared.get(deadline).await?;
                    let p = transaction_pipeline(watch, commands);
                    let len = p.len();
                    match tokio::time::timeout_at(deadline, conn.req_packed_commands(&p, 0, len))
                        .await
                    {
                        Err(_) => Err(timed_out()),
                        Ok(Err(e)) => {
                            shared.report(generation, &e);
                            Err(map_error(&e))
                        }
                        Ok(Ok(replies)) => {
                            transaction_outcome(!watch.is_empty(), commands.len(), replies, raise)
                        }
                    }
                } else if blocks.is_empty() {
                    let (mut conn, generation) = shared.get(deadline).await?;
                    match tokio::time::timeout_at(
                        deadline,
                        standalone_pipeline(&mut conn, commands),
                    )
                    .await
                    {
                        Err(_) => Err(timed_out()),
                        Ok(Err(e)) => {
                            shared.report(generation, &e);
                            Err(map_error(&e))
                        }
                        Ok(Ok(values)) => {
                            Ok(finish(values.into_iter().map(outcome).collect(), raise))
                        }
                    }
                } else {
                    let mut lease = dedicated
                        .lease(deadline, || async {
                            standalone::open(
                                shared.client(),
                                conn_config,
                                self.config().client_name.as_deref(),
                                self.config().connection_timeout(),
                            )
                            .await
                            .map_err(connect_error)
                        })
                        .await?;
                    let r = tokio::time::timeout_at(
                        deadline,
                        standalone_pipeline(&mut lease.conn, commands),
                    )
                    .await;
                    match r {
                        // Dropping the lease closes the connection, which
                        // ends a block server-side.
                        Err(_) => Err(timed_out()),
                        Ok(Err(e)) => Err(map_error(&e)),
                        Ok(Ok(values)) => {
                            lease.done();
                            Ok(finish(values.into_iter().map(outcome).collect(), raise))
                        }
                    }
                }
            }
            Kind::Cluster { shared, dedicated } => {
                if atomic {
                    let slot_key = transaction_slot(watch, commands, &names)?;
                    let route = match (&req.route, slot_key) {
                        (Route::Auto, Some(k)) => SingleNodeRoutingInfo::SpecificNode(
                            RRoute::with_key(k, SlotAddr::Master),
                        ),
                        (Route::Auto, None) => SingleNodeRoutingInfo::Random,
                        (r, _) => single_node(shared, r, "EXEC", deadline).await?,
                    };
                    let p = transaction_pipeline(watch, commands);
                    let len = p.len();
                    let mut conn = shared.conn();
                    match tokio::time::timeout_at(deadline, conn.route_pipeline(p, 0, len, route))
                        .await
                    {
                        Err(_) => Err(timed_out()),
                        Ok(Err(e)) => Err(map_error(&e)),
                        Ok(Ok(replies)) => {
                            transaction_outcome(!watch.is_empty(), commands.len(), replies, raise)
                        }
                    }
                } else {
                    let mut lease = None;
                    let conn = if blocks.is_empty() {
                        shared.conn()
                    } else {
                        let l = dedicated
                            .lease(deadline, || {
                                cluster::open(
                                    shared.client(),
                                    shared.client_name(),
                                    shared.connection_timeout(),
                                    shared.seeds(),
                                )
                            })
                            .await?;
                        let c = l.conn.clone();
                        lease = Some(l);
                        c
                    };
                    let fut = async {
                        match &req.route {
                            Route::Auto => Ok(cluster_pipeline(&conn, commands, &names).await),
                            r => {
                                let name = names
                                    .iter()
                                    .find(|n| !commands::is_read_only(n))
                                    .unwrap_or(&names[0]);
                                let route = single_node(shared, r, name, deadline).await?;
                                let p = pipeline(commands.iter());
                                let mut c = conn.clone();
                                let r = c.route_pipeline(p, 0, commands.len(), route).await;
                                let mut results = vec![None; commands.len()];
                                let idx: Vec<usize> = (0..commands.len()).collect();
                                place(&mut results, &idx, r);
                                Ok(results.into_iter().flatten().collect())
                            }
                        }
                    };
                    match tokio::time::timeout_at(deadline, fut).await {
                        Err(_) => Err(timed_out()),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(results)) => {
                            let clean = results.iter().all(|r| match r {
                                Ok(_) => true,
                                Err(e) => e.kind == ErrorKind::Request,
                            });
                            if let (Some(l), true) = (lease, clean) {
                                l.done();
                            }
                            Ok(finish(results, raise))
                        }
                    }
                }
            }
        }
    }

    /// The bound of a batch: the request timeout; with blocking commands
    /// (non-atomic batches) at least the sum of their block timeouts plus
    /// [`BLOCKING_MARGIN`], and for a block-forever command the request's
    /// `timeout_ms` if set, else `block_forever_limit_ms`.
    fn batch_bound(&self, blocks: &[BlockTimeout], timeout_ms: u32) -> Duration {
        let base = self.request_timeout(timeout_ms);
        if blocks.is_empty() {
            return base;
        }
        if blocks.contains(&BlockTimeout::Forever) {
            return if timeout_ms != 0 {
                base
            } else {
                Duration::from_millis(self.config().block_forever_limit_ms)
            };
        }
        let sum: Duration = blocks
            .iter()
            .map(|b| match b {
                BlockTimeout::After(d) => *d,
                _ => Duration::ZERO,
            })
            .sum();
        base.max(sum + BLOCKING_MARGIN)
    }
}

/// An explicit single-node route for a whole batch.
async fn single_node(
    shared: &Cluster,
    route: &Route,
    name: &str,
    deadline: Instant,
) -> Result<SingleNodeRoutingInfo, ClientError> {
    match cluster_routing(shared, route, name, deadline).await? {
        Some(RoutingInfo::SingleNode(r)) => Ok(r),
        _ => Err(invalid(
            "a batch cannot be fanned out to several nodes: use Auto (split by key) or a single-node route",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn transaction_slots() {
        let cmds = vec![argv("SET {t}a 1"), argv("INCR {t}b")];
        let names: Vec<String> = cmds.iter().map(|c| commands::command_name(c)).collect();
        assert_eq!(
            transaction_slot(&[b"{t}w".to_vec()], &cmds, &names).unwrap(),
            Some(&b"{t}w"[..])
        );
        let cmds = vec![argv("SET a 1"), argv("SET b 2")];
        let names: Vec<String> = cmds.iter().map(|c| commands::command_name(c)).collect();
        let e = transaction_slot(&[], &cmds, &names).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(
            e.message.contains("`a`") && e.message.contains("`b`"),
            "{e}"
        );
        let cmds = vec![argv("PING")];
        assert_eq!(
            transaction_slot(&[], &cmds, &["PING".to_string()]).unwrap(),
            None
        );
    }

    #[test]
    fn transaction_replies() {
        use redis::Value as R;
        let ok = || R::Okay;
        let queued = || R::SimpleString("QUEUED".into());
        // WATCH, MULTI, 2 x QUEUED, EXEC -> array.
        let c = transaction_outcome(
            true,
            2,
            vec![
                ok(),
                ok(),
                queued(),
                queued(),
                R::Array(vec![R::Okay, R::Int(3)]),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            c,
            Completion::Ok(Value::Array(vec![
                Value::Simple(b"OK".to_vec()),
                Value::Int(3)
            ]))
        );
        // Watch abort.
        let c = transaction_outcome(true, 1, vec![ok(), ok(), queued(), R::Nil], false).unwrap();
        assert_eq!(c, Completion::Ok(Value::Nil));
        let e = transaction_outcome(true, 1, vec![ok(), ok(), queued(), R::Nil], true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ExecAbort);
        // Wrong count.
        assert!(transaction_outcome(false, 2, vec![ok(), R::Nil], false).is_err());
    }

    #[test]
    fn raise_and_error_text() {
        let r = vec![
            Ok(Value::Int(1)),
            Err(ClientError::new(ErrorKind::Request, "WRONGTYPE bad")),
            Err(ClientError::new(ErrorKind::Connection, "broken pipe")),
        ];
        match finish(r.clone(), false) {
            Completion::Ok(Value::Array(v)) => {
                assert_eq!(v[1], Value::Error(b"WRONGTYPE bad".to_vec()));
                assert_eq!(v[2], Value::Error(b"CONNECTION broken pipe".to_vec()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            finish(r, true),
            Completion::Err(ClientError::new(ErrorKind::Request, "WRONGTYPE bad"))
        );
    }
}
