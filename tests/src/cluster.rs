//! [`RedisCluster`]: six cluster nodes (3 primaries + 3 replicas) on loopback ports, started,
//! joined and checked by the helpers of the crate root (spawner, ports, [`RedisServer`]).

use super::*;

/// Six cluster nodes: 3 primaries + 3 replicas, `cluster-node-timeout 2000`,
/// `cluster-replica-validity-factor 0` (a replica always may fail over), debug command enabled.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
struct NodeLine<'a> {
    /// `host:port` (without the bus port / hostname).
    addr: &'a str,
    flags: Vec<&'a str>,
    config_epoch: u64,
    slots: Vec<(u16, u16)>,
}

fn parse_cluster_nodes(text: &str) -> Vec<NodeLine<'_>> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('[')) // migrating/importing markers
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(NodeLine {
                // "127.0.0.1:7000@17000[,hostname]"
                addr: f[1].split(['@', ',']).next().unwrap_or(""),
                flags: f[2].split(',').collect(),
                config_epoch: f[6].parse().unwrap_or(0),
                slots,
            })
        })
        .collect()
}

impl RedisCluster {
    /// Starts six nodes and joins them with `redis-cli --cluster create --cluster-replicas 1`;
    /// returns when every node reports `cluster_state:ok`, every replica's link is up and every
    /// node sees the same healthy six-node topology.
    pub fn start() -> RedisCluster {
        Self::start_with(&[])
    }

    /// Like [`RedisCluster::start`], with extra `redis-server` arguments for every node.
    pub fn start_with(extra_args: &[&str]) -> RedisCluster {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync-delay",
            "0",
        ];
        args.extend_from_slice(extra_args);
        let nodes: Vec<RedisServer> = (0..CLUSTER_NODES)
            .map(|_| RedisServer::start_with(&args))
            .collect();
        let cluster = RedisCluster { nodes };
        cluster.create();
        cluster.wait_ready(START_TIMEOUT);
        cluster
    }

    fn create(&self) {
        let log = self.nodes[0]
            .dir()
            .expect("owned node")
            .join("cluster-create.log");
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {log:?}: {e}"));
        let err = out.try_clone().expect("dup log file");
        let status = Command::new("timeout")
            .arg((START_TIMEOUT.as_secs() * 2).to_string())
            .arg("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.addrs())
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            status.success(),
            "redis-cli --cluster create failed ({status}):\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Waits for: all nodes `cluster_state:ok`, replicas linked, every node seeing six healthy
    /// nodes of which three primaries serve all slots.
    fn wait_ready(&self, timeout: Duration) {
        poll_until(timeout, "cluster not ready", || self.not_ready_reason());
    }

    fn not_ready_reason(&self) -> Option<String> {
        for n in &self.nodes {
            if let Some(why) = node_not_ok(n) {
                return Some(why);
            }
            let text = n.query_string(&["CLUSTER", "NODES"]).unwrap_or_default();
            let lines = parse_cluster_nodes(&text);
            let healthy = lines.iter().all(|l| {
                !l.flags
                    .iter()
                    .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr"))
            });
            let primaries = lines
                .iter()
                .filter(|l| l.flags.contains(&"master") && !l.slots.is_empty())
                .count();
            let replicas = lines.iter().filter(|l| l.flags.contains(&"slave")).count();
            if lines.len() != CLUSTER_NODES || !healthy || primaries != 3 || replicas != 3 {
                return Some(format!("{}: topology not settled:\n{text}", n.addr()));
            }
        }
        None
    }

    /// All nodes, `"127.0.0.1:PORT"`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Running nodes that currently are primaries (asked with `INFO replication`).
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.role() == Some(Role::Primary))
            .collect()
    }

    /// Running nodes that currently are replicas.
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.role() == Some(Role::Replica))
            .collect()
    }

    /// The running primary that currently serves `slot` (by each primary's own claim; the one
    /// with the highest config epoch wins while a failover settles). Panics if none does.
    pub fn node_for_slot(&self, slot: u16) -> &RedisServer {
        assert!(slot < SLOTS, "slot {slot} out of range");
        let mut best: Option<(&RedisServer, u64)> = None;
        for n in self.primaries() {
            let Ok(text) = n.query_string(&["CLUSTER", "NODES"]) else {
                continue;
            };
            for l in parse_cluster_nodes(&text) {
                if l.flags.contains(&"myself")
                    && l.flags.contains(&"master")
                    && l.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
                    && best.is_none_or(|(_, e)| l.config_epoch > e)
                {
                    best = Some((n, l.config_epoch));
                }
            }
        }
        match best {
            Some((n, _)) => n,
            None => panic!("no running primary serves slot {slot}"),
        }
    }

    /// Waits until the cluster has settled after a kill, restart or failover: every running
    /// node reports `cluster_state:ok`, running replicas are linked, the running primaries'
    /// own claims cover every slot exactly once, and every running node's view agrees with
    /// those claims and marks no running node as failed. Panics after `timeout`.
    ///
    /// Unlike [`RedisCluster::wait_ok`], this does not return early right after a primary was
    /// killed (the others still say `ok` until they notice, `cluster-node-timeout` later).
    pub fn wait_settled(&self, timeout: Duration) {
        poll_until(timeout, "cluster not settled", || self.unsettled_reason());
    }

    fn unsettled_reason(&self) -> Option<String> {
        let running: Vec<&RedisServer> = self
            .nodes
            .iter()
            .filter(|n| !n.owned || n.is_running())
            .collect();
        let running_addrs: HashSet<String> = running.iter().map(|n| n.addr()).collect();
        let mut owner: Vec<Option<String>> = vec![None; SLOTS as usize];
        let mut views = Vec::new();
        for n in &running {
            if let Some(why) = node_not_ok(n) {
                return Some(why);
            }
            let text = match n.query_string(&["CLUSTER", "NODES"]) {
                Ok(t) => t,
                Err(e) => return Some(format!("{}: {e}", n.addr())),
            };
            for l in parse_cluster_nodes(&text) {
                if l.flags.contains(&"myself") && l.flags.contains(&"master") {
                    for &(a, b) in &l.slots {
                        for slot in a..=b.min(SLOTS - 1) {
                            if let Some(other) = &owner[slot as usize] {
                                return Some(format!(
                                    "slot {slot} claimed by {other} and {}",
                                    n.addr()
                                ));
                            }
                            owner[slot as usize] = Some(n.addr());
                        }
                    }
                }
            }
            views.push((n.addr(), text));
        }
        if let Some(slot) = owner.iter().position(Option::is_none) {
            return Some(format!("slot {slot} is served by no running primary"));
        }
        for (addr, text) in &views {
            for l in parse_cluster_nodes(text) {
                let failed = l
                    .flags
                    .iter()
                    .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr"));
                if failed && running_addrs.contains(l.addr) {
                    return Some(format!(
                        "{addr} sees running node {} as {:?}",
                        l.addr, l.flags
                    ));
                }
                if !l.flags.contains(&"master") {
                    continue;
                }
                for &(a, b) in &l.slots {
                    if owner[a as usize].as_deref() != Some(l.addr)
                        || owner[b.min(SLOTS - 1) as usize].as_deref() != Some(l.addr)
                    {
                        return Some(format!("{addr} still routes slots {a}-{b} to {}", l.addr));
                    }
                }
            }
        }
        None
    }

    /// Waits until every running node reports `cluster_state:ok`; panics after `timeout`.
    pub fn wait_ok(&self, timeout: Duration) {
        poll_until(timeout, "cluster_state not ok", || {
            let not_ok: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| !n.owned || n.is_running())
                .filter(|n| {
                    n.query_string(&["CLUSTER", "INFO"])
                        .map(|i| info_field(&i, "cluster_state") != Some("ok"))
                        .unwrap_or(true)
                })
                .map(RedisServer::addr)
                .collect();
            (!not_ok.is_empty()).then(|| format!("on {not_ok:?}"))
        });
    }
}

/// Why node `n` is not healthy on its own: `CLUSTER INFO` fails or is not `cluster_state:ok`,
/// or it is a replica whose link to its primary is down.
fn node_not_ok(n: &RedisServer) -> Option<String> {
    let info = match n.query_string(&["CLUSTER", "INFO"]) {
        Ok(i) => i,
        Err(e) => return Some(format!("{}: {e}", n.addr())),
    };
    if info_field(&info, "cluster_state") != Some("ok") {
        return Some(format!("{}: cluster_state not ok", n.addr()));
    }
    let repl = n.query_string(&["INFO", "replication"]).unwrap_or_default();
    if info_field(&repl, "role") == Some("slave")
        && info_field(&repl, "master_link_status") != Some("up")
    {
        return Some(format!("{}: replica link not up", n.addr()));
    }
    None
}
