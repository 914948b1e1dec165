//! Which requests take the fast path (the core's own node connections,
//! `crate::net`) and how they are sent; everything else runs on the slow
//! path (`Backend::execute`).
//!
//! The decision is a pure function ([`plan`]), tested without I/O; so is
//! the validation of batches ([`validate_batch`]), which refuses invalid
//! batches before anything is sent.

use std::sync::Arc;

use rkyv::vec::ArchivedVec;
use tokio::time::Instant;
use vshm_protocol::msg::{
    ArchivedOp, ArchivedRequest, ArchivedRoute, ClientError, Completion, ErrorKind, Op, Request,
    Route, Value,
};

use super::backend::Kind;
use super::Backend;
use crate::commands;
use crate::config::{Endpoint, ReadFrom};
use crate::dispatch::{Declined, Taken};
use crate::keys::{self, SlotPlacement};
use crate::net::batch::BatchWork;
use crate::net::cluster::ClusterRouter;
use crate::net::job::{Encoded, Job, Target, Work};
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

/// What becomes of a request.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// The fast path sends it.
    Fast(Plan),
    /// The core sends it to every primary or every node of the cluster
    /// over its node connections and combines the replies
    /// (`crate::net::fanout`).
    FanOut { to: keys::FanOut, bound_ms: u32 },
    /// The slow path runs it (`Backend::execute`).
    Slow,
    /// Decided without sending anything: a validation error, or the empty
    /// batch's empty array.
    Done(Completion),
}

/// The deployment a request is planned for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deployment<'a> {
    /// One server.
    Standalone(&'a Endpoint),
    /// A cluster, with the slot map when it is known.
    Cluster(Option<&'a SlotMap>),
}

fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorKind::InvalidRequest, msg)
}

/// What becomes of `req` (pure). The slow path takes what is not for one
/// node: blocking, multi-slot and fan-out commands, multi-slot pipelines,
/// scripts, scans, pub/sub, explicit multi-node routes of commands, and
/// routes to addresses the slot map does not know (it checks them against
/// a fresh topology). Invalid batches are refused here; every valid
/// transaction is sent here (unless its address route is unknown).
pub(crate) fn plan(dep: Deployment<'_>, read_from: ReadFrom, req: &Request) -> Decision {
    match &req.op {
        Op::Command { args } => plan_command(dep, read_from, &req.route, req.timeout_ms, args),
        Op::Batch {
            atomic,
            watch,
            commands,
        } => plan_batch(dep, read_from, req, *atomic, watch, commands),
        _ => Decision::Slow,
    }
}

/// A command the fast path may send: not empty, a printable name, not
/// refused; its upper-case name.
fn sendable<A: AsRef<[u8]>>(args: &[A]) -> Option<commands::Name> {
    if args.is_empty() || commands::bad_name(args).is_some() {
        return None;
    }
    let name = commands::command_name(args);
    commands::refusal(&name).is_none().then_some(name)
}

/// Whether an `Address` route names the one server of a standalone
/// backend (hosts compared without case).
pub(crate) fn check_standalone_address(
    server: &Endpoint,
    host: &str,
    port: u16,
) -> Result<(), ClientError> {
    if server.host.eq_ignore_ascii_case(host) && server.port == port {
        Ok(())
    } else {
        Err(invalid(format!(
            "{host}:{port} is not the server of this standalone backend ({server})"
        )))
    }
}

/// Where a request goes on a standalone server: every single-node route is
/// the server; an `Address` must name it.
fn standalone_target(server: &Endpoint, route: &Route) -> Result<Target, ClientError> {
    if let Route::Address { host, port } = route {
        check_standalone_address(server, host, *port)?;
    }
    Ok(Target::Random)
}

/// Where an explicit single-node route goes (cluster). `Ok(None)` for
/// multi-node routes and addresses the slot map does not know (the slow
/// path handles those); a slot out of range is an error.
fn explicit(
    route: &Route,
    map: Option<&SlotMap>,
    read_only: bool,
) -> Result<Option<Target>, ClientError> {
    Ok(match route {
        Route::SlotKey { key, replica } => Some(Target::Slot {
            slot: keys::slot_of(key),
            replica: *replica && read_only,
        }),
        Route::SlotId { slot, replica } => {
            if *slot >= keys::SLOTS {
                return Err(invalid(format!("slot {slot} is out of range 0..16383")));
            }
            Some(Target::Slot {
                slot: *slot,
                replica: *replica && read_only,
            })
        }
        Route::Random => Some(Target::Random),
        Route::Address { host, port } => {
            let addr = NodeAddr {
                host: host.clone(),
                port: *port,
            };
            map.filter(|m| m.nodes().contains(&&addr))
                .map(|_| Target::Addr(addr))
        }
        Route::Auto | Route::AllNodes | Route::AllPrimaries => None,
    })
}

fn decide(target: Result<Option<Target>, ClientError>, bound_ms: u32) -> Decision {
    match target {
        Ok(Some(target)) => Decision::Fast(Plan { target, bound_ms }),
        Ok(None) => Decision::Slow,
        Err(e) => Decision::Done(Completion::Err(e)),
    }
}

/// [`plan`] of a command, whose `args` are owned or still archived in the
/// request's message ([`Backend::take_archived`]).
pub(crate) fn plan_command<A: AsRef<[u8]>>(
    dep: Deployment<'_>,
    read_from: ReadFrom,
    route: &Route,
    timeout_ms: u32,
    args: &[A],
) -> Decision {
    // Refusals and bad names are reported by the slow path.
    let Some(name) = sendable(args) else {
        return Decision::Slow;
    };
    if commands::block_timeout(&name, args).is_some() {
        return Decision::Slow;
    }
    if let Deployment::Cluster(Some(_)) = dep {
        let to = match route {
            Route::AllNodes => Some(keys::FanOut::AllNodes),
            Route::AllPrimaries => Some(keys::FanOut::AllPrimaries),
            Route::Auto if keys::single_slot(&name, args) == SlotPlacement::Keyless => {
                keys::fan_out_target(&name)
            }
            _ => None,
        };
        if let Some(to) = to {
            return Decision::FanOut {
                to,
                bound_ms: timeout_ms,
            };
        }
    }
    let target = match dep {
        Deployment::Standalone(server) => standalone_target(server, route).map(Some),
        Deployment::Cluster(map) => {
            let read_only = commands::is_read_only(&name);
            match route {
                Route::Auto => Ok(match keys::single_slot(&name, args) {
                    SlotPlacement::Slot(slot) => Some(Target::Slot {
                        slot,
                        replica: read_only && read_from != ReadFrom::Primary,
                    }),
                    SlotPlacement::Keyless if !keys::fan_out(&name) => Some(Target::Keyless),
                    _ => None,
                }),
                r => explicit(r, map, read_only),
            }
        }
    };
    decide(target, timeout_ms)
}

/// [`plan`] of a request still archived in its message
/// ([`Backend::take_archived`]), with the command's arguments; `None` for
/// anything but a command (and for a route that does not deserialize: the
/// owned path then reports the request as malformed).
pub(crate) fn plan_archived<'a>(
    dep: Deployment<'_>,
    read_from: ReadFrom,
    req: &'a ArchivedRequest,
) -> Option<(Decision, &'a [ArchivedVec<u8>])> {
    let ArchivedOp::Command { args } = &req.op else {
        return None;
    };
    let route = match &req.route {
        // Nearly every request: no deserializer call.
        ArchivedRoute::Auto => Route::Auto,
        r => rkyv::deserialize::<Route, rkyv::rancor::Error>(r).ok()?,
    };
    let args = args.as_slice();
    let d = plan_command(dep, read_from, &route, req.timeout_ms.to_native(), args);
    Some((d, args))
}

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
fn transaction_slot(
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
    names: &[commands::Name],
) -> Result<Option<u16>, ClientError> {
    let mut first: Option<(u16, &[u8])> = None;
    let all = watch.iter().map(Vec::as_slice).chain(
        cmds.iter()
            .zip(names)
            .flat_map(|(c, n)| keys::command_keys(n, c)),
    );
    for k in all {
        let s = keys::slot_of(k);
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
    Ok(first.map(|(s, _)| s))
}

/// The checks every batch passes before anything is sent (pure): watch
/// keys only with `atomic`, no multi-node route, every command non-empty,
/// printable and not refused, and (cluster) a transaction's keys in one
/// slot. Returns the commands' upper-case names.
pub(crate) fn validate_batch(
    cluster: bool,
    route: &Route,
    atomic: bool,
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
) -> Result<Vec<commands::Name>, ClientError> {
    if !atomic && !watch.is_empty() {
        return Err(invalid(
            "watch keys need an atomic batch (a transaction): set `atomic`",
        ));
    }
    if matches!(route, Route::AllNodes | Route::AllPrimaries) {
        return Err(invalid(
            "a batch cannot be fanned out to several nodes: use Auto (split by key) or a single-node route",
        ));
    }
    let mut names = Vec::with_capacity(cmds.len());
    for (i, c) in cmds.iter().enumerate() {
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
    if cluster && atomic {
        transaction_slot(watch, cmds, &names)?;
    }
    Ok(names)
}

/// A batch takes the fast path when it goes to one node as a whole: every
/// valid transaction (standalone, or all its keys and watch keys in one
/// slot, or no keys at all), and a pipeline without blocking commands
/// whose keys are all in one slot (standalone: any). Invalid batches are
/// refused ([`validate_batch`]); multi-slot pipelines and pipelines with
/// blocking commands take the slow path, as does a batch routed to an
/// address the slot map does not know.
fn plan_batch(
    dep: Deployment<'_>,
    read_from: ReadFrom,
    req: &Request,
    atomic: bool,
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
) -> Decision {
    let cluster = matches!(dep, Deployment::Cluster(_));
    let names = match validate_batch(cluster, &req.route, atomic, watch, cmds) {
        Ok(n) => n,
        Err(e) => return Decision::Done(Completion::Err(e)),
    };
    if cmds.is_empty() {
        return Decision::Done(Completion::Ok(Value::Array(Vec::new())));
    }
    // Commands inside MULTI never block; blocking commands of a pipeline
    // need a dedicated connection.
    if !atomic
        && cmds
            .iter()
            .zip(&names)
            .any(|(c, n)| commands::block_timeout(n, c).is_some())
    {
        return Decision::Slow;
    }
    let read_only = !atomic && names.iter().all(|n| commands::is_read_only(n));
    let target = match dep {
        Deployment::Standalone(server) => standalone_target(server, &req.route).map(Some),
        Deployment::Cluster(map) => match &req.route {
            Route::Auto if atomic => {
                // One slot, checked by `validate_batch`.
                let slot = transaction_slot(watch, cmds, &names).ok().flatten();
                Ok(Some(match slot {
                    Some(slot) => Target::Slot {
                        slot,
                        replica: false,
                    },
                    None => Target::Keyless,
                }))
            }
            Route::Auto => Ok(pipeline_slot(cmds, &names).map(|slot| Target::Slot {
                slot,
                replica: read_only && read_from != ReadFrom::Primary,
            })),
            r => explicit(r, map, read_only),
        },
    };
    decide(target, req.timeout_ms)
}

/// The one slot of a pipeline's keys; `None` when they span slots or a
/// command is keyless (a keyless command in a pipeline runs with its own
/// routing, fan-out included, on the slow path).
fn pipeline_slot(cmds: &[Vec<Vec<u8>>], names: &[commands::Name]) -> Option<u16> {
    let mut slot = None;
    for (c, n) in cmds.iter().zip(names) {
        let ks = keys::command_keys(n, c);
        if ks.is_empty() {
            return None;
        }
        for k in ks {
            let s = keys::slot_of(k);
            if *slot.get_or_insert(s) != s {
                return None;
            }
        }
    }
    slot
}

impl Backend {
    /// Run `f` with this backend's deployment (the slot map as it is now).
    fn with_deployment<R>(&self, f: impl FnOnce(Deployment<'_>, ReadFrom) -> R) -> R {
        let rf = self.config().read_from;
        match (&self.links, &self.kind) {
            (Links::Cluster(c), _) => f(Deployment::Cluster(Some(&c.slot_map())), rf),
            (Links::Single(_), Kind::Standalone { shared, .. }) => {
                f(Deployment::Standalone(shared.endpoint()), rf)
            }
            (Links::Single(_), Kind::Cluster { .. }) => f(Deployment::Cluster(None), rf),
        }
    }

    /// The fast path for a caller that awaits the completion
    /// ([`Backend::execute`]): `None` when the request takes the slow path.
    pub(crate) fn execute_fast(
        &self,
        req: &Request,
    ) -> Option<tokio::sync::oneshot::Receiver<Completion>> {
        let (ticket, rx) = crate::net::ticket::OneshotSink::ticket();
        match self.try_submit(req.clone(), ticket) {
            Ok(()) => Some(rx),
            // The declined ticket completes the dropped receiver: a no-op.
            Err(_) => None,
        }
    }

    /// Take `req` on the fast path if it goes to one node, or complete it
    /// at once when [`plan`] decided it (see [`Decision`]); otherwise hand
    /// it back for [`Backend::execute`].
    pub fn try_submit(&self, req: Request, ticket: Ticket) -> Result<(), Declined> {
        let p = match self.with_deployment(|dep, rf| plan(dep, rf, &req)) {
            Decision::Fast(p) => p,
            Decision::Done(c) => {
                ticket.complete(c);
                return Ok(());
            }
            Decision::Slow => return Err(Box::new((req, ticket))),
            Decision::FanOut { to, bound_ms } => return self.fan_out(req, ticket, to, bound_ms),
        };
        let raise = req.flags & vshm_protocol::msg::flags::RAISE_ON_ERROR != 0;
        let work = match req.op {
            Op::Command { args } => Work::Command(Encoded::new(&args)),
            Op::Batch {
                atomic,
                watch,
                commands,
            } => Work::Batch(Box::new(
                BatchWork::new(atomic, watch, commands, raise)
                    .redirectable(p.target.redirectable()),
            )),
            _ => unreachable!("plan only accepts commands and batches"),
        };
        self.links.submit(self.job(p, work, ticket));
        Ok(())
    }

    /// [`Backend::try_submit`] of a command still archived in its request's
    /// message (validated): planned and encoded straight from the archive,
    /// so the fast path never builds the owned argv, one allocation per
    /// argument. The job is returned, not sent: [`Backend::send_taken`]
    /// sends it once the caller has freed the message (`None`: completed
    /// at once). Hands the ticket back for anything else (batches,
    /// fan-outs, the slow path): the caller then decodes the request for
    /// [`Backend::try_submit`].
    pub fn take_archived(
        &self,
        req: &ArchivedRequest,
        ticket: Ticket,
    ) -> Result<Option<Taken>, Ticket> {
        let Some((decision, args)) = self.with_deployment(|dep, rf| plan_archived(dep, rf, req))
        else {
            return Err(ticket);
        };
        match decision {
            Decision::Fast(p) => Ok(Some(Taken(self.job(
                p,
                Work::Command(Encoded::new(args)),
                ticket,
            )))),
            Decision::Done(c) => {
                ticket.complete(c);
                Ok(None)
            }
            Decision::Slow | Decision::FanOut { .. } => Err(ticket),
        }
    }

    /// Send what [`Backend::take_archived`] took.
    pub fn send_taken(&self, taken: Taken) {
        self.links.submit(taken.0);
    }

    /// The job of a request that [`plan`] put on the fast path.
    fn job(&self, p: Plan, work: Work, ticket: Ticket) -> Box<Job> {
        let bound = self.request_timeout(p.bound_ms);
        // The deadline counts from when the request was taken (the drain
        // turn's clock reading, `Ticket::taken_at`).
        let deadline = Instant::from_std(ticket.started()) + bound;
        Box::new(Job {
            ticket,
            work,
            deadline,
            bound,
            target: p.target,
            asking: false,
            hops: 0,
        })
    }
}

impl Backend {
    /// Start a fan-out ([`Decision::FanOut`]) on the router's runtime; the
    /// task completes the ticket.
    fn fan_out(
        &self,
        req: Request,
        ticket: Ticket,
        to: keys::FanOut,
        bound_ms: u32,
    ) -> Result<(), Declined> {
        let (Links::Cluster(router), Op::Command { args }) = (&self.links, &req.op) else {
            return Err(Box::new((req, ticket)));
        };
        let policy = commands::response_policy(&commands::command_name(args));
        let bound = self.request_timeout(bound_ms);
        let deadline = Instant::from_std(ticket.started()) + bound;
        let (router, args) = (router.clone(), args.clone());
        router.clone().runtime().spawn(async move {
            let c = router.fan_out(args, to, policy, deadline, bound).await;
            ticket.complete(c);
        });
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

    fn fast(d: Decision) -> Option<Target> {
        match d {
            Decision::Fast(p) => Some(p.target),
            _ => None,
        }
    }

    fn cluster(args: &[&str], route: Route, rf: ReadFrom) -> Option<Target> {
        fast(plan(Deployment::Cluster(None), rf, &req(args, route)))
    }

    fn server() -> Endpoint {
        Endpoint {
            host: "h".into(),
            port: 1,
        }
    }

    fn standalone(r: &Request) -> Decision {
        plan(Deployment::Standalone(&server()), ReadFrom::Primary, r)
    }

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn batch(atomic: bool, watch: &[&str], cmds: &[&str], route: Route) -> Request {
        Request {
            id: 1,
            timeout_ms: 0,
            flags: 0,
            route,
            op: Op::Batch {
                atomic,
                watch: watch.iter().map(|w| w.as_bytes().to_vec()).collect(),
                commands: cmds.iter().map(|c| argv(c)).collect(),
            },
        }
    }

    fn refused(d: Decision) -> ClientError {
        match d {
            Decision::Done(Completion::Err(e)) => {
                assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
                e
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// `Backend::take_archived` plans from the archive ([`plan_archived`]):
    /// the same decision as from the owned request, for commands of every
    /// kind, every route, a request timeout, both deployments; batches and
    /// other operations are left to the owned path.
    #[test]
    fn archived_commands_are_planned_like_owned_ones() {
        let commands = [
            "GET k",
            "set {a}x v",
            "MGET a b",
            "MGET {t}a {t}b",
            "PING",
            "DBSIZE",
            "client list",
            "BLPOP k 0",
            "SUBSCRIBE c",
            "EVAL s 1 k",
            "XREAD STREAMS a b 0 0",
            "MULTI",
            "\u{fe}GET k",
        ];
        let routes = [
            Route::Auto,
            Route::Random,
            Route::AllNodes,
            Route::AllPrimaries,
            Route::SlotId {
                slot: 20000,
                replica: false,
            },
            Route::SlotId {
                slot: 7,
                replica: true,
            },
            Route::SlotKey {
                key: b"k".to_vec(),
                replica: true,
            },
            Route::Address {
                host: "h".into(),
                port: 1,
            },
        ];
        let map = SlotMap::default();
        let server = server();
        let deps = [
            Deployment::Standalone(&server),
            Deployment::Cluster(None),
            Deployment::Cluster(Some(&map)),
        ];
        for c in commands {
            for route in &routes {
                let mut owned = req(&c.split(' ').collect::<Vec<_>>(), route.clone());
                owned.timeout_ms = 1234;
                let bytes = vshm_protocol::msg::encode_request(&owned);
                let a = vshm_protocol::msg::access_submitted(&bytes, 1).unwrap();
                for dep in deps {
                    for rf in [ReadFrom::Primary, ReadFrom::PreferReplica] {
                        let (d, args) = plan_archived(dep, rf, a).expect("a command");
                        assert_eq!(d, plan(dep, rf, &owned), "{c} {route:?} {dep:?}");
                        let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                        let Op::Command { args: want } = &owned.op else {
                            unreachable!()
                        };
                        assert_eq!(args, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
                    }
                }
            }
        }
        let b = vshm_protocol::msg::encode_request(&batch(false, &[], &["GET k"], Route::Auto));
        let a = vshm_protocol::msg::access_submitted(&b, 1).unwrap();
        assert!(plan_archived(deps[0], ReadFrom::Primary, a).is_none());
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
    fn fan_outs_are_planned_from_the_cores_map() {
        let map = SlotMap::empty();
        let dep = Deployment::Cluster(Some(&map));
        let p = ReadFrom::Primary;
        let fan = |args: &[&str], route: Route| match plan(dep, p, &req(args, route)) {
            Decision::FanOut { to, .. } => Some(to),
            _ => None,
        };
        assert_eq!(
            fan(&["DBSIZE"], Route::Auto),
            Some(keys::FanOut::AllPrimaries)
        );
        assert_eq!(
            fan(&["script", "load", "return 1"], Route::Auto),
            Some(keys::FanOut::AllNodes)
        );
        assert_eq!(
            fan(&["GET", "k"], Route::AllNodes),
            Some(keys::FanOut::AllNodes)
        );
        assert_eq!(
            fan(&["TIME"], Route::AllPrimaries),
            Some(keys::FanOut::AllPrimaries)
        );
        // Not fan-outs: a keyed or keyless single-node command, a blocking
        // one, a refused one.
        assert_eq!(fan(&["GET", "k"], Route::Auto), None);
        assert_eq!(fan(&["TIME"], Route::Auto), None);
        assert_eq!(fan(&["BLPOP", "q", "0"], Route::AllPrimaries), None);
        assert_eq!(fan(&["SELECT", "1"], Route::AllNodes), None);
        // Without the core's map (no fast-path router): the slow path.
        assert_eq!(cluster(&["DBSIZE"], Route::AllPrimaries, p), None);
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
        let e = refused(plan(
            Deployment::Cluster(None),
            p,
            &req(
                &["GET", "k"],
                Route::SlotId {
                    slot: 16384,
                    replica: false,
                },
            ),
        ));
        assert!(e.message.contains("out of range"), "{e}");
        // The empty batch is answered at once.
        assert_eq!(
            standalone(&batch(false, &[], &[], Route::Auto)),
            Decision::Done(Completion::Ok(Value::Array(Vec::new())))
        );
    }

    #[test]
    fn standalone_routes() {
        assert!(fast(standalone(&req(&["GET", "k"], Route::Auto))).is_some());
        assert!(fast(standalone(&req(&["DBSIZE"], Route::AllNodes))).is_some());
        let at = |host: &str, port| Route::Address {
            host: host.into(),
            port,
        };
        // The server itself (host without case), else a refusal.
        assert_eq!(
            fast(standalone(&req(&["GET", "k"], at("H", 1)))),
            Some(Target::Random)
        );
        let e = refused(standalone(&req(&["GET", "k"], at("h", 2))));
        assert!(e.message.contains("not the server"), "{e}");
        assert_eq!(
            standalone(&req(&["BLPOP", "q", "1"], Route::Auto)),
            Decision::Slow
        );
        // Transactions go fast whatever their keys; a blocking pipeline
        // goes slow.
        assert!(fast(standalone(&batch(
            true,
            &["a"],
            &["SET b 1", "BLPOP q 0"],
            Route::Auto
        )))
        .is_some());
        assert_eq!(
            standalone(&batch(false, &[], &["SET b 1", "BLPOP q 0"], Route::Auto)),
            Decision::Slow
        );
    }

    #[test]
    fn batches_are_validated_before_planning() {
        let p = ReadFrom::Primary;
        let c = |r: &Request| plan(Deployment::Cluster(None), p, r);
        let e = refused(c(&batch(false, &["w"], &["GET w"], Route::Auto)));
        assert!(e.message.contains("atomic"), "{e}");
        let e = refused(c(&batch(true, &[], &["GET w"], Route::AllPrimaries)));
        assert!(e.message.contains("fanned out"), "{e}");
        let e = refused(standalone(&batch(
            false,
            &[],
            &["GET w", "SELECT 1"],
            Route::Auto,
        )));
        assert!(e.message.contains("command 1"), "{e}");
        // A cluster transaction's keys and watch keys must be in one slot.
        let e = refused(c(&batch(true, &[], &["SET a 1", "SET b 2"], Route::Auto)));
        assert!(
            e.message.contains("`a`") && e.message.contains("`b`"),
            "{e}"
        );
        let e = refused(c(&batch(
            true,
            &["{t}w", "x"],
            &["SET {t}a 1"],
            Route::Auto,
        )));
        assert!(e.message.contains("`x`"), "{e}");
        // ... but not a standalone one.
        assert!(fast(standalone(&batch(
            true,
            &[],
            &["SET a 1", "SET b 2"],
            Route::Auto
        )))
        .is_some());
    }

    #[test]
    fn cluster_batches() {
        let p = ReadFrom::Primary;
        let c = |r: &Request| fast(plan(Deployment::Cluster(None), p, r));
        let t = keys::slot_of(b"t");
        let slot = |slot| {
            Some(Target::Slot {
                slot,
                replica: false,
            })
        };
        assert_eq!(
            c(&batch(
                true,
                &["{t}w"],
                &["SET {t}a 1", "INCR {t}b"],
                Route::Auto
            )),
            slot(t)
        );
        // A keyless transaction goes to any node.
        assert_eq!(
            c(&batch(true, &[], &["PING"], Route::Auto)),
            Some(Target::Keyless)
        );
        assert_eq!(
            c(&batch(false, &[], &["SET {t}a 1", "GET {t}b"], Route::Auto)),
            slot(t)
        );
        // Replica reads: a read-only pipeline only.
        assert_eq!(
            fast(plan(
                Deployment::Cluster(None),
                ReadFrom::PreferReplica,
                &batch(false, &[], &["GET {t}a", "GET {t}b"], Route::Auto)
            )),
            Some(Target::Slot {
                slot: t,
                replica: true
            })
        );
        // Multi-slot pipelines, pipelines with a keyless command, blocking
        // pipelines: the slow path.
        for cmds in [
            &["GET a", "GET b"][..],
            &["GET {t}a", "DBSIZE"],
            &["BLPOP {t}q 1"],
        ] {
            assert_eq!(
                plan(
                    Deployment::Cluster(None),
                    p,
                    &batch(false, &[], cmds, Route::Auto)
                ),
                Decision::Slow,
                "{cmds:?}"
            );
        }
        // An address the slot map does not know: the slow path checks it.
        let unknown = Route::Address {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        assert_eq!(
            plan(
                Deployment::Cluster(None),
                p,
                &batch(true, &[], &["SET {t}a 1"], unknown)
            ),
            Decision::Slow
        );
    }
}
