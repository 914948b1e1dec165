//! Batches (`Op::Batch`) on the slow path: what `fast::plan` does not
//! send to one node.
//!
//! Every batch is validated first (`fast::validate_batch`, pure: watch keys
//! only with `atomic`, no multi-node route, no refused command, a cluster
//! transaction's keys in one slot). Every valid transaction and every
//! one-node pipeline runs on the fast path (`net/batch.rs`); what is left
//! here:
//!
//! * **Pipelines that span slots** (cluster). redis-rs 1.8 only sends a
//!   pipeline to one node (`route_pipeline`), so the engine splits it
//!   (`keys::pipeline_waves`, pure): consecutive commands whose keys are
//!   all in one slot form a *wave*; each wave is sent as one sub-pipeline
//!   per slot, concurrently; a command whose keys span slots, or that has
//!   no keys, runs alone with redis-rs's own routing (MGET/DEL/... split
//!   per slot, DBSIZE/PING/... fanned out) after everything before it has
//!   completed and before anything after it is sent. Results are put back
//!   in request order, error replies in place.
//! * **Pipelines with a blocking command** (BLPOP, WAIT, ...): on a
//!   dedicated connection, like a single blocking command.
//! * **A batch routed to an address the slot map does not know yet**: the
//!   address is checked against a fresh topology; a transaction then goes
//!   to the fast path.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route as RRoute, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::RedisResult;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::warn;
use vshm_protocol::bound;
use vshm_protocol::msg::{flags, Args, ClientError, Completion, ErrorKind, Request, Route, Value};

use super::backend::{
    build_cmd, check_standalone_route, cluster_routing, connect_error, invalid, Backend, Kind,
};
use super::cluster::{self, Cluster};
use super::fast::validate_batch;
use super::standalone;
use crate::commands::{self, BlockTimeout};
use crate::keys::{pipeline_waves, placement, Placement, Wave};
use crate::value::{convert, map_error, server_error};

/// One command's outcome inside a batch.
type Outcome = Result<Value, ClientError>;

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

fn unexpected(what: &str) -> ClientError {
    ClientError::new(
        ErrorKind::Connection,
        format!("unexpected reply to a batch: {what}"),
    )
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
    names: &[commands::Name],
) -> Vec<Outcome> {
    let n = commands.len();
    let places: Vec<Placement> = commands
        .iter()
        .zip(names)
        .map(|(c, name)| placement(name, c))
        .collect();
    let mut results: Vec<Option<Outcome>> = vec![None; n];
    for wave in pipeline_waves(&places) {
        let groups = match wave {
            Wave::Alone(i) => {
                let mut c = conn.clone();
                results[i] = Some(outcome_of(
                    Cluster::auto(&mut c, &build_cmd(&commands[i])).await,
                ));
                continue;
            }
            Wave::Slots(groups) => groups,
        };
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
        let cluster = matches!(self.kind, Kind::Cluster { .. });
        let names = validate_batch(cluster, &req.route, atomic, watch, commands)?;
        let raise = req.flags & flags::RAISE_ON_ERROR != 0;
        if commands.is_empty() {
            return Ok(Completion::Ok(Value::Array(Vec::new())));
        }
        if atomic {
            let deadline = start + self.request_timeout(req.timeout_ms);
            return self.transaction_to_address(req, deadline).await;
        }
        // A pipeline with a blocking command needs a connection of its own.
        let blocks: Vec<BlockTimeout> = commands
            .iter()
            .zip(&names)
            .filter_map(|(c, n)| commands::block_timeout(n, c))
            .collect();
        let bound = self.batch_bound(&blocks, req.timeout_ms);
        let deadline = start + bound;
        let timed_out = || {
            ClientError::new(
                ErrorKind::Timeout,
                format!(
                    "batch of {} commands timed out after {} ms",
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
                if blocks.is_empty() {
                    // `fast::plan` sends these; only a blocking pipeline
                    // gets here.
                    self.resubmit_fast(req).await
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

    /// A transaction that `fast::plan` did not send: it is valid (checked
    /// there), so its route names an address the slot map did not know.
    /// Check the address against a fresh topology, then send it on the fast
    /// path like every other transaction.
    async fn transaction_to_address(
        &self,
        req: &Request,
        deadline: Instant,
    ) -> Result<Completion, ClientError> {
        if let (Kind::Cluster { shared, .. }, Route::Address { host, port }) =
            (&self.kind, &req.route)
        {
            shared.check_address(host, *port, deadline).await?;
        }
        self.resubmit_fast(req).await
    }

    /// Send a request the fast path takes now (after a check of the slow
    /// path), and await its completion.
    async fn resubmit_fast(&self, req: &Request) -> Result<Completion, ClientError> {
        match self.execute_fast(req) {
            Some(rx) => rx
                .await
                .map_err(|_| ClientError::new(ErrorKind::Closing, "backend closed")),
            None => Err(ClientError::new(
                ErrorKind::Connection,
                "the batch's node left the cluster topology meanwhile; nothing was sent",
            )),
        }
    }

    /// The bound of a batch: the request timeout; with blocking commands
    /// (non-atomic batches) at least the sum of their block timeouts plus
    /// [`BLOCKING_MARGIN`], and for a block-forever command the request's
    /// `timeout_ms` if set, else `block_forever_limit_ms`.
    fn batch_bound(&self, blocks: &[BlockTimeout], timeout_ms: u32) -> Duration {
        // The decision is shared with the client end (vshm_protocol::bound).
        bound::bound_of(blocks.iter().copied(), timeout_ms, &self.bound_defaults())
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
