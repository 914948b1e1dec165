//! Commands sent to every primary or every node of a cluster (`DBSIZE`,
//! `KEYS`, `FLUSHALL`, `SCRIPT LOAD`, `CONFIG SET`, ...), planned from the
//! core's one slot map and sent over the core's node connections.
//!
//! * The plan is the map's primaries (or all its nodes) when the request
//!   is taken. A map that does not cover every slot (a shard missing from
//!   the view), or a node of the plan known to be down (a primary just
//!   killed, not yet replaced in the map), holds the fan-out back: a
//!   refresh is asked for and the plan is made again shortly, while the
//!   deadline allows, so a failover in progress is waited out rather than
//!   answered with part of the cluster. An uncovered map at the deadline
//!   fails the request (`Connection`) without sending anything.
//! * A map patched by a `MOVED` since the last refresh (it may name two
//!   primaries of one shard) holds the fan-out back the same way.
//! * A piece that fails on its connection (`Connection`, `Closing`: it
//!   may have run) is planned again the same way when running it twice
//!   does no harm ([`resendable`]: reads, and writes that set a state);
//!   pieces that completed are kept by address, and the reply combines
//!   the pieces of the last plan. A piece never written is sent again by
//!   its node connection itself.
//! * The replies combine by the command's response policy ([`combine`],
//!   pure): the redis crate's rules, which the slow path applied when it
//!   ran fan-outs through the crate's own slot map (that map could lag the
//!   core's right after a failover and leave a promoted primary out).

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster_routing::{AggregateOp, LogicalAggregateOp, ResponsePolicy};
use tokio::time::Instant;
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, Pair, Value};

use super::cluster::ClusterRouter;
use super::job::Encoded;
use super::refresh::send;
use crate::keys::FanOut;
use crate::topology::NodeAddr;

/// Wait before planning a fan-out again (a node down, a piece lost).
const REPLAN_GAP: Duration = Duration::from_millis(100);

/// Whether there is time to wait [`REPLAN_GAP`] and plan again.
fn time_left(deadline: Instant) -> bool {
    Instant::now() + REPLAN_GAP < deadline
}

impl ClusterRouter {
    /// Run `args` on every node `to` names and combine the replies by
    /// `policy`. Bounded by `deadline`; see the module docs.
    pub(crate) async fn fan_out(
        &self,
        args: Vec<Vec<u8>>,
        to: FanOut,
        policy: Option<ResponsePolicy>,
        deadline: Instant,
        bound: Duration,
    ) -> Completion {
        let name = crate::commands::command_name(&args);
        let again = resendable(&name);
        let mut done: HashMap<NodeAddr, Completion> = HashMap::new();
        loop {
            if self.is_closed() {
                return Completion::Err(ClientError::new(ErrorKind::Closing, "backend closed"));
            }
            let (map, patched) = self.slot_map_patched();
            let plan: Vec<NodeAddr> = match to {
                FanOut::AllPrimaries => map.primaries(),
                FanOut::AllNodes => map.nodes(),
            }
            .into_iter()
            .cloned()
            .collect();
            // A map with uncovered slots lacks a shard: a fan-out to the
            // primaries would answer for part of the cluster. (To all
            // nodes, coverage does not matter: `CONFIG SET` and the like.)
            let partial = to == FanOut::AllPrimaries && !map.covers_all();
            let down = plan.iter().any(|a| self.node(a).is_down());
            if !((partial || patched || down) && time_left(deadline)) {
                if partial {
                    return Completion::Err(ClientError::new(
                        ErrorKind::Connection,
                        format!(
                            "{name}: not every slot has a known primary (a failover in progress?); \
                             nothing was sent"
                        ),
                    ));
                }
                if !self
                    .run_pieces(&plan, &args, deadline, bound, again, &mut done)
                    .await
                {
                    let replies = plan
                        .into_iter()
                        .filter_map(|a| done.remove(&a).map(|c| (a, c)))
                        .collect();
                    return combine(policy, replies);
                }
            }
            // Unsettled, or a piece lost: look again shortly.
            self.ask_refresh();
            tokio::time::sleep(REPLAN_GAP).await;
        }
    }
}

impl ClusterRouter {
    /// Send `args` to each node of `plan` not yet in `done`, and file each
    /// completion in `done`, except pieces lost on their connection that
    /// may be sent again (`again`, time left): true when there was one.
    async fn run_pieces(
        &self,
        plan: &[NodeAddr],
        args: &[Vec<u8>],
        deadline: Instant,
        bound: Duration,
        again: bool,
        done: &mut HashMap<NodeAddr, Completion>,
    ) -> bool {
        // All sent first, then collected: the pieces run concurrently.
        let cmd = Encoded::new(args);
        let waiting: Vec<_> = plan
            .iter()
            .filter(|a| !done.contains_key(*a))
            .map(|a| (a.clone(), send(&self.node(a), cmd.clone(), deadline, bound)))
            .collect();
        let mut lost = false;
        for (addr, rx) in waiting {
            let c = rx.await.unwrap_or_else(|_| {
                Completion::Err(ClientError::new(ErrorKind::Closing, "node closed"))
            });
            let on_connection = matches!(&c, Completion::Err(e)
                if matches!(e.kind, ErrorKind::Connection | ErrorKind::Closing));
            if on_connection && again && time_left(deadline) {
                lost = true;
            } else {
                done.insert(addr, c);
            }
        }
        lost
    }
}

/// Whether a fan-out piece that may have run can be sent again: the
/// command reads, or sets a state that a second run leaves the same.
/// Not `FUNCTION LOAD`/`RESTORE`/`DELETE` (a second run fails), nor any
/// command an explicit multi-node route may carry (`INCR`...).
fn resendable(name: &str) -> bool {
    crate::commands::is_read_only(name)
        || matches!(
            name,
            "PING"
                | "INFO"
                | "TIME"
                | "SCRIPT EXISTS"
                | "SCRIPT LOAD"
                | "SCRIPT FLUSH"
                | "CONFIG GET"
                | "CONFIG SET"
                | "CONFIG RESETSTAT"
                | "FLUSHALL"
                | "FLUSHDB"
                | "FUNCTION FLUSH"
                | "FUNCTION STATS"
                | "FUNCTION LIST"
                | "MEMORY PURGE"
                | "MEMORY STATS"
                | "MEMORY DOCTOR"
                | "MEMORY MALLOC-STATS"
                | "SLOWLOG GET"
                | "SLOWLOG LEN"
                | "SLOWLOG RESET"
                | "LATENCY RESET"
                | "LATENCY LATEST"
                | "LATENCY DOCTOR"
                | "LATENCY GRAPH"
                | "LATENCY HISTORY"
                | "LATENCY HISTOGRAM"
                | "PUBSUB CHANNELS"
                | "PUBSUB NUMSUB"
                | "PUBSUB NUMPAT"
                | "PUBSUB SHARDCHANNELS"
                | "PUBSUB SHARDNUMSUB"
                | "FT._LIST"
                | "FT._ALIASLIST"
        )
}

fn unexpected(what: &str) -> Completion {
    Completion::Err(ClientError::new(
        ErrorKind::Request,
        format!("unexpected reply in a fan-out: {what}"),
    ))
}

/// The replies of every node of a fan-out, combined by `policy` (pure).
/// `replies` in plan order. The rules are the redis crate's
/// (`ResponsePolicy`): an error fails the whole request except where a
/// policy tolerates it; no policy (or `Special`) gives a map from
/// `"host:port"` to each node's reply, errors as error values.
pub(crate) fn combine(
    policy: Option<ResponsePolicy>,
    replies: Vec<(NodeAddr, Completion)>,
) -> Completion {
    let first_err = || {
        replies
            .iter()
            .find(|(_, c)| matches!(c, Completion::Err(_)))
            .map(|(_, c)| c.clone())
    };
    let tolerant = matches!(
        policy,
        Some(ResponsePolicy::OneSucceeded) | Some(ResponsePolicy::FirstSucceededNonEmptyOrAllEmpty)
    );
    let per_node = matches!(policy, Some(ResponsePolicy::Special) | None);
    if per_node {
        // The map holds a node's error reply as an error value; a lost
        // connection or a timeout fails the request (as in redis-rs).
        let lost = replies
            .iter()
            .find(|(_, c)| matches!(c, Completion::Err(e) if e.kind != ErrorKind::Request));
        if let Some((_, c)) = lost {
            return c.clone();
        }
    } else if !tolerant {
        if let Some(e) = first_err() {
            return e;
        }
    }
    let values = || {
        replies.iter().filter_map(|(_, c)| match c {
            Completion::Ok(v) => Some(v),
            _ => None,
        })
    };
    match policy {
        Some(ResponsePolicy::AllSucceeded) => match replies.into_iter().last() {
            Some((_, c)) => c,
            None => unexpected("no node"),
        },
        Some(ResponsePolicy::OneSucceeded) => match values().next() {
            Some(v) => Completion::Ok(v.clone()),
            None => last_err(&replies),
        },
        Some(ResponsePolicy::FirstSucceededNonEmptyOrAllEmpty) => {
            if let Some(v) = values().find(|v| **v != Value::Nil) {
                return Completion::Ok(v.clone());
            }
            if values().count() == replies.len() {
                Completion::Ok(Value::Nil)
            } else {
                last_err(&replies)
            }
        }
        Some(ResponsePolicy::Aggregate(op)) => {
            let mut acc: i64 = match op {
                AggregateOp::Min => i64::MAX,
                _ => 0,
            };
            for v in values() {
                let Value::Int(n) = v else {
                    return unexpected("expected an integer from every node");
                };
                acc = match op {
                    AggregateOp::Min => acc.min(*n),
                    _ => acc.saturating_add(*n),
                };
            }
            Completion::Ok(Value::Int(acc))
        }
        Some(ResponsePolicy::AggregateLogical(op)) => {
            let mut acc: Option<Vec<bool>> = None;
            for v in values() {
                let Value::Array(items) = v else {
                    return unexpected("expected an array of integers from every node");
                };
                let acc = acc.get_or_insert_with(|| vec![true; items.len()]);
                if acc.len() != items.len() {
                    return unexpected("nodes answered arrays of different lengths");
                }
                for (a, item) in acc.iter_mut().zip(items) {
                    let Value::Int(n) = item else {
                        return unexpected("expected an array of integers from every node");
                    };
                    *a = match op {
                        LogicalAggregateOp::And => *a && *n > 0,
                        _ => *a && *n > 0,
                    };
                }
            }
            let acc = acc.unwrap_or_default();
            Completion::Ok(Value::Array(
                acc.into_iter().map(|b| Value::Int(i64::from(b))).collect(),
            ))
        }
        Some(ResponsePolicy::CombineArrays) => {
            let mut all = Vec::new();
            for v in values() {
                match v {
                    Value::Array(items) | Value::Set(items) => all.extend(items.iter().cloned()),
                    _ => return unexpected("expected an array from every node"),
                }
            }
            Completion::Ok(Value::Array(all))
        }
        Some(ResponsePolicy::CombineMaps) => combine_counts(values()),
        _ => Completion::Ok(Value::Map(
            replies
                .into_iter()
                .map(|(a, c)| Pair {
                    key: Value::Bulk(a.to_string().into_bytes()),
                    value: match c {
                        Completion::Ok(v) | Completion::Push(v) => v,
                        Completion::Err(e) => Value::Error(e.message.into_bytes()),
                    },
                })
                .collect(),
        )),
    }
}

/// The last error among `replies` (a tolerant policy with no success).
fn last_err(replies: &[(NodeAddr, Completion)]) -> Completion {
    replies
        .iter()
        .rev()
        .find(|(_, c)| matches!(c, Completion::Err(_)))
        .map(|(_, c)| c.clone())
        .unwrap_or_else(|| unexpected("no node"))
}

/// `PUBSUB NUMSUB`-style replies (name, count pairs as a flat array in
/// RESP2, a map in RESP3): counts summed per name, in first-seen order.
fn combine_counts<'a>(values: impl Iterator<Item = &'a Value>) -> Completion {
    let mut order: Vec<Value> = Vec::new();
    let mut sums: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut add = |k: &Value, v: &Value| -> bool {
        let (Value::Bulk(name) | Value::Simple(name), Value::Int(n)) = (k, v) else {
            return false;
        };
        let e = sums.entry(name.clone()).or_insert_with(|| {
            order.push(k.clone());
            0
        });
        *e = e.saturating_add(*n);
        true
    };
    for v in values {
        let ok = match v {
            Value::Array(items) if items.len() % 2 == 0 => {
                items.chunks(2).all(|kv| add(&kv[0], &kv[1]))
            }
            Value::Map(pairs) => pairs.iter().all(|p| add(&p.key, &p.value)),
            _ => false,
        };
        if !ok {
            return unexpected("expected (name, count) pairs from every node");
        }
    }
    Completion::Ok(Value::Map(
        order
            .into_iter()
            .map(|k| {
                let n = match &k {
                    Value::Bulk(b) | Value::Simple(b) => sums[b],
                    _ => 0,
                };
                Pair {
                    key: k,
                    value: Value::Int(n),
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Value) -> Completion {
        Completion::Ok(v)
    }

    fn err(kind: ErrorKind, m: &str) -> Completion {
        Completion::Err(ClientError::new(kind, m))
    }

    fn from(cs: Vec<Completion>) -> Vec<(NodeAddr, Completion)> {
        cs.into_iter()
            .enumerate()
            .map(|(i, c)| (NodeAddr::new("127.0.0.1", 7000 + i as u16), c))
            .collect()
    }

    fn ints(ns: &[i64]) -> Value {
        Value::Array(ns.iter().map(|n| Value::Int(*n)).collect())
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn sums_and_minimums() {
        let three = || {
            from(vec![
                ok(Value::Int(30)),
                ok(Value::Int(20)),
                ok(Value::Int(40)),
            ])
        };
        let sum = Some(ResponsePolicy::Aggregate(AggregateOp::Sum));
        let min = Some(ResponsePolicy::Aggregate(AggregateOp::Min));
        assert_eq!(combine(sum, three()), ok(Value::Int(90)));
        assert_eq!(combine(min, three()), ok(Value::Int(20)));
        let bad = from(vec![ok(Value::Int(1)), ok(bulk("x"))]);
        assert!(matches!(combine(sum, bad), Completion::Err(e) if e.kind == ErrorKind::Request));
    }

    #[test]
    fn an_error_fails_the_strict_policies() {
        let e = err(ErrorKind::Request, "NOSCRIPT no");
        for p in [
            ResponsePolicy::AllSucceeded,
            ResponsePolicy::Aggregate(AggregateOp::Sum),
            ResponsePolicy::AggregateLogical(LogicalAggregateOp::And),
            ResponsePolicy::CombineArrays,
            ResponsePolicy::CombineMaps,
        ] {
            let got = combine(Some(p), from(vec![ok(ints(&[1])), e.clone()]));
            assert_eq!(got, e, "{p:?}");
        }
    }

    #[test]
    fn all_succeeded_one_succeeded_first_non_empty() {
        let all = Some(ResponsePolicy::AllSucceeded);
        let simple = || ok(Value::Simple(b"OK".to_vec()));
        assert_eq!(combine(all, from(vec![simple(), simple()])), simple());

        let one = Some(ResponsePolicy::OneSucceeded);
        let nb = err(ErrorKind::Request, "NOTBUSY");
        assert_eq!(combine(one, from(vec![nb.clone(), simple()])), simple());
        assert_eq!(combine(one, from(vec![nb.clone(), nb.clone()])), nb);

        let first = Some(ResponsePolicy::FirstSucceededNonEmptyOrAllEmpty);
        let nil = || ok(Value::Nil);
        assert_eq!(
            combine(first, from(vec![nil(), ok(bulk("k"))])),
            ok(bulk("k"))
        );
        assert_eq!(combine(first, from(vec![nil(), nil()])), nil());
        assert_eq!(combine(first, from(vec![nil(), nb.clone()])), nb);
    }

    #[test]
    fn logical_and_per_position() {
        let and = Some(ResponsePolicy::AggregateLogical(LogicalAggregateOp::And));
        let got = combine(and, from(vec![ok(ints(&[1, 1, 0])), ok(ints(&[1, 0, 1]))]));
        assert_eq!(got, ok(ints(&[1, 0, 0])));
        let uneven = combine(and, from(vec![ok(ints(&[1])), ok(ints(&[1, 1]))]));
        assert!(matches!(uneven, Completion::Err(_)));
    }

    #[test]
    fn arrays_concatenate_and_counts_add_up() {
        let arr = Some(ResponsePolicy::CombineArrays);
        let got = combine(
            arr,
            from(vec![
                ok(Value::Array(vec![bulk("a")])),
                ok(Value::Array(vec![])),
                ok(Value::Array(vec![bulk("b"), bulk("c")])),
            ]),
        );
        assert_eq!(got, ok(Value::Array(vec![bulk("a"), bulk("b"), bulk("c")])));

        let maps = Some(ResponsePolicy::CombineMaps);
        let resp2 = ok(Value::Array(vec![
            bulk("ch"),
            Value::Int(2),
            bulk("x"),
            Value::Int(0),
        ]));
        let resp3 = ok(Value::Map(vec![Pair {
            key: bulk("ch"),
            value: Value::Int(3),
        }]));
        let got = combine(maps, from(vec![resp2, resp3]));
        let want = Value::Map(vec![
            Pair {
                key: bulk("ch"),
                value: Value::Int(5),
            },
            Pair {
                key: bulk("x"),
                value: Value::Int(0),
            },
        ]);
        assert_eq!(got, ok(want));
        let odd = combine(maps, from(vec![ok(Value::Array(vec![bulk("ch")]))]));
        assert!(matches!(odd, Completion::Err(_)));
    }

    #[test]
    fn no_policy_maps_each_node_to_its_reply() {
        let got = combine(
            None,
            from(vec![ok(bulk("info a")), err(ErrorKind::Request, "ERR no")]),
        );
        let want = Value::Map(vec![
            Pair {
                key: bulk("127.0.0.1:7000"),
                value: bulk("info a"),
            },
            Pair {
                key: bulk("127.0.0.1:7001"),
                value: Value::Error(b"ERR no".to_vec()),
            },
        ]);
        assert_eq!(got, ok(want));
        let lost = err(ErrorKind::Timeout, "INFO timed out after 1000 ms");
        let got = combine(None, from(vec![ok(bulk("info a")), lost.clone()]));
        assert_eq!(got, lost);
    }

    #[test]
    fn only_harmless_commands_are_sent_twice() {
        for c in [
            "DBSIZE",
            "KEYS",
            "INFO",
            "PING",
            "SCRIPT LOAD",
            "FLUSHALL",
            "CONFIG SET",
        ] {
            assert!(resendable(c), "{c}");
        }
        for c in [
            "FUNCTION LOAD",
            "FUNCTION RESTORE",
            "FUNCTION DELETE",
            "INCR",
            "LPUSH",
        ] {
            assert!(!resendable(c), "{c}");
        }
    }
}
