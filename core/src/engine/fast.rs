//! Which requests take the fast path (the core's own node connections,
//! `crate::net`) and how they are sent; everything else runs on the slow
//! path (`Backend::execute`).
//!
//! The decision is a pure function ([`plan`]), tested without I/O.

use std::sync::Arc;

use tokio::time::Instant;
use vshm_protocol::msg::{Op, Request, Route};

use super::Backend;
use crate::commands;
use crate::config::{Mode, ReadFrom};
use crate::dispatch::Declined;
use crate::keys::{self, SlotPlacement};
use crate::net::batch::BatchWork;
use crate::net::cluster::ClusterRouter;
use crate::net::job::{Job, Target, Work};
use crate::net::single::Single;
use crate::net::ticket::Ticket;
use crate::topology::{NodeAddr, SlotMap};

/// The fast-path connections of a backend.
pub(crate) enum Links {
    Single(Arc<Single>),
    Cluster(Arc<ClusterRouter>),
}

impl Links {
    pub fn submit(&self, job: Box<Job>) {
        match self {
            Links::Single(s) => s.submit(job),
            Links::Cluster(c) => c.submit(job),
        }
    }

    pub fn close(&self) {
        match self {
            Links::Single(s) => s.close(),
            Links::Cluster(c) => c.close(),
        }
    }
}

/// How a fast-path request is sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub target: Target,
    pub bound_ms: u32,
}

/// Whether `req` takes the fast path, and where it goes. `None`: the slow
/// path, which also produces every refusal and validation error (refused
/// and blocking commands, multi-slot and fan-out commands, batches,
/// scripts, scans, pub/sub, explicit multi-node routes, unknown
/// addresses).
pub(crate) fn plan(
    mode: Mode,
    read_from: ReadFrom,
    map: Option<&SlotMap>,
    req: &Request,
) -> Option<Plan> {
    match &req.op {
        Op::Command { args } => plan_command(mode, read_from, map, req, args),
        Op::Batch {
            atomic,
            watch,
            commands,
        } => plan_batch(mode, read_from, map, req, *atomic, watch, commands),
        _ => None,
    }
}

/// A command the fast path may send: not empty, a printable name, not
/// refused; its upper-case name.
fn sendable(args: &[Vec<u8>]) -> Option<String> {
    if args.is_empty() || commands::bad_name(args).is_some() {
        return None;
    }
    let name = commands::command_name(args);
    commands::refusal(&name).is_none().then_some(name)
}

/// Where an explicit single-node route goes (cluster); `None` for
/// multi-node routes, bad slots and addresses the topology does not know
/// (the slow path reports those).
fn explicit(route: &Route, map: Option<&SlotMap>, read_only: bool) -> Option<Target> {
    match route {
        Route::SlotKey { key, replica } => Some(Target::Slot {
            slot: keys::slot_of(key),
            replica: *replica && read_only,
        }),
        Route::SlotId { slot, replica } if *slot < keys::SLOTS => Some(Target::Slot {
            slot: *slot,
            replica: *replica && read_only,
        }),
        Route::Random => Some(Target::Random),
        Route::Address { host, port } => {
            let addr = NodeAddr {
                host: host.clone(),
                port: *port,
            };
            map?.nodes().contains(&&addr).then_some(Target::Addr(addr))
        }
        _ => None,
    }
}

fn plan_command(
    mode: Mode,
    read_from: ReadFrom,
    map: Option<&SlotMap>,
    req: &Request,
    args: &[Vec<u8>],
) -> Option<Plan> {
    let name = sendable(args)?;
    if commands::block_timeout(&name, args).is_some() {
        return None;
    }
    let target = match mode {
        Mode::Standalone => match &req.route {
            // The slow path checks an address against the server.
            Route::Address { .. } => return None,
            _ => Target::Random,
        },
        Mode::Cluster => {
            let read_only = commands::is_read_only(&name);
            match &req.route {
                Route::Auto => match keys::single_slot(&name, args) {
                    SlotPlacement::Slot(slot) => Target::Slot {
                        slot,
                        replica: read_only && read_from != ReadFrom::Primary,
                    },
                    SlotPlacement::Keyless if !keys::fan_out(&name) => Target::Random,
                    _ => return None,
                },
                r => explicit(r, map, read_only)?,
            }
        }
    };
    Some(Plan {
        target,
        bound_ms: req.timeout_ms,
    })
}

/// A batch takes the fast path when it goes to one node as a whole: a
/// transaction (standalone, or all its keys and watch keys in one slot, or
/// no keys at all), or a pipeline without blocking commands whose keys are
/// all in one slot (standalone: any). Invalid batches (refused commands,
/// watch keys without `atomic`, keys in several slots of a transaction,
/// multi-node routes) and multi-slot pipelines take the slow path.
fn plan_batch(
    mode: Mode,
    read_from: ReadFrom,
    map: Option<&SlotMap>,
    req: &Request,
    atomic: bool,
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
) -> Option<Plan> {
    if cmds.is_empty() || (!atomic && !watch.is_empty()) {
        return None;
    }
    let mut read_only = !atomic;
    let mut slot: Option<u16> = None;
    let mut keyless = false;
    let mut one_slot = |k: &[u8]| {
        let s = keys::slot_of(k);
        match slot {
            None => {
                slot = Some(s);
                true
            }
            Some(x) => x == s,
        }
    };
    for k in watch {
        if !one_slot(k) {
            return None;
        }
    }
    for c in cmds {
        let name = sendable(c)?;
        // Blocking commands of a pipeline need a dedicated connection
        // (inside MULTI they do not block).
        if !atomic && commands::block_timeout(&name, c).is_some() {
            return None;
        }
        read_only &= commands::is_read_only(&name);
        if mode == Mode::Cluster {
            let ks = keys::command_keys(&name, c);
            keyless |= ks.is_empty();
            for k in ks {
                if !one_slot(k) {
                    return None;
                }
            }
        }
    }
    let target = match mode {
        Mode::Standalone => match &req.route {
            Route::Address { .. } => return None,
            Route::AllNodes | Route::AllPrimaries => return None,
            _ => Target::Random,
        },
        Mode::Cluster => match &req.route {
            Route::Auto => match slot {
                // A keyless command in a pipeline runs with its own routing
                // (fan-out, ...) on the slow path.
                Some(_) if keyless && !atomic => return None,
                Some(s) => Target::Slot {
                    slot: s,
                    replica: read_only && read_from != ReadFrom::Primary,
                },
                None if atomic => Target::Random,
                None => return None,
            },
            r => explicit(r, map, read_only)?,
        },
    };
    Some(Plan {
        target,
        bound_ms: req.timeout_ms,
    })
}

impl Backend {
    /// The fast path for a caller that awaits the completion
    /// ([`Backend::execute`]): `None` when the request takes the slow path.
    pub(crate) fn execute_fast(
        &self,
        req: &Request,
    ) -> Option<tokio::sync::oneshot::Receiver<vshm_protocol::msg::Completion>> {
        let map = match &self.links {
            Links::Cluster(c) => Some(c.slot_map()),
            Links::Single(_) => None,
        };
        plan(
            self.config().mode,
            self.config().read_from,
            map.as_deref(),
            req,
        )?;
        let (ticket, rx) = crate::net::ticket::OneshotSink::ticket();
        match self.try_submit(req.clone(), ticket) {
            Ok(()) => Some(rx),
            // Planned above, so taken; a hand-back would be a bug.
            Err(back) => {
                drop(back);
                Some(rx)
            }
        }
    }

    /// Take `req` on the fast path if it goes to one node (see [`plan`]);
    /// otherwise hand it back for [`Backend::execute`].
    pub fn try_submit(&self, req: Request, ticket: Ticket) -> Result<(), Declined> {
        let map = match &self.links {
            Links::Cluster(c) => Some(c.slot_map()),
            Links::Single(_) => None,
        };
        let Some(p) = plan(
            self.config().mode,
            self.config().read_from,
            map.as_deref(),
            &req,
        ) else {
            return Err(Box::new((req, ticket)));
        };
        let raise = req.flags & vshm_protocol::msg::flags::RAISE_ON_ERROR != 0;
        let work = match req.op {
            Op::Command { args } => Work::Command(args),
            Op::Batch {
                atomic,
                watch,
                commands,
            } => Work::Batch(Box::new(BatchWork::new(atomic, watch, commands, raise))),
            _ => unreachable!("plan only accepts commands and batches"),
        };
        let bound = self.request_timeout(p.bound_ms);
        // The deadline counts from when the request was taken (one clock
        // read per request, in `Ticket::new`).
        let deadline = Instant::from_std(ticket.started()) + bound;
        self.links.submit(Box::new(Job {
            ticket,
            work,
            deadline,
            bound,
            target: p.target,
            asking: false,
            hops: 0,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[&str], route: Route) -> Request {
        Request {
            id: 1,
            timeout_ms: 0,
            flags: 0,
            route,
            op: Op::Command {
                args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            },
        }
    }

    fn cluster(args: &[&str], route: Route, rf: ReadFrom) -> Option<Target> {
        plan(Mode::Cluster, rf, None, &req(args, route)).map(|p| p.target)
    }

    #[test]
    fn single_slot_commands_go_fast() {
        let slot = keys::slot_of(b"k");
        assert_eq!(
            cluster(&["SET", "k", "v"], Route::Auto, ReadFrom::Primary),
            Some(Target::Slot {
                slot,
                replica: false
            })
        );
        assert_eq!(
            cluster(&["GET", "k"], Route::Auto, ReadFrom::PreferReplica),
            Some(Target::Slot {
                slot,
                replica: true
            })
        );
        // A write never goes to a replica.
        assert_eq!(
            cluster(&["INCR", "k"], Route::Auto, ReadFrom::PreferReplica),
            Some(Target::Slot {
                slot,
                replica: false
            })
        );
        assert_eq!(
            cluster(&["MGET", "{t}a", "{t}b"], Route::Auto, ReadFrom::Primary),
            Some(Target::Slot {
                slot: keys::slot_of(b"t"),
                replica: false
            })
        );
    }

    #[test]
    fn everything_else_goes_slow() {
        let p = ReadFrom::Primary;
        assert_eq!(cluster(&["MGET", "a", "b"], Route::Auto, p), None);
        assert_eq!(cluster(&["DBSIZE"], Route::Auto, p), None);
        assert_eq!(cluster(&["BLPOP", "q", "0"], Route::Auto, p), None);
        assert_eq!(cluster(&["SELECT", "1"], Route::Auto, p), None);
        assert_eq!(cluster(&["GET", "k"], Route::AllNodes, p), None);
        assert_eq!(
            cluster(
                &["GET", "k"],
                Route::Address {
                    host: "127.0.0.1".into(),
                    port: 1
                },
                p
            ),
            None
        );
        assert_eq!(cluster(&[], Route::Auto, p), None);
        assert_eq!(cluster(&["\u{1}GET", "k"], Route::Auto, p), None);
        assert_eq!(
            cluster(
                &["GET", "k"],
                Route::SlotId {
                    slot: 16384,
                    replica: false
                },
                p
            ),
            None
        );
        let batch = Request {
            id: 1,
            timeout_ms: 0,
            flags: 0,
            route: Route::Auto,
            op: Op::Batch {
                atomic: false,
                watch: vec![],
                commands: vec![],
            },
        };
        assert_eq!(plan(Mode::Standalone, p, None, &batch), None);
    }

    #[test]
    fn standalone_routes() {
        let p = ReadFrom::Primary;
        assert!(plan(Mode::Standalone, p, None, &req(&["GET", "k"], Route::Auto)).is_some());
        assert!(plan(
            Mode::Standalone,
            p,
            None,
            &req(&["DBSIZE"], Route::AllNodes)
        )
        .is_some());
        assert!(plan(
            Mode::Standalone,
            p,
            None,
            &req(
                &["GET", "k"],
                Route::Address {
                    host: "h".into(),
                    port: 1
                }
            )
        )
        .is_none());
        assert!(plan(
            Mode::Standalone,
            p,
            None,
            &req(&["BLPOP", "q", "1"], Route::Auto)
        )
        .is_none());
    }
}
