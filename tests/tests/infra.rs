//! Tests of the test infrastructure itself (`vshm_tests` helpers) against real redis-server.

use std::path::Path;
use std::time::Duration;

use vshm_tests::{key_slot, shared_cluster, shared_standalone, RedisCluster, RedisServer};

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn standalone_start_ping_stop_restart() {
    let mut s = RedisServer::start();
    assert_eq!(s.addr(), format!("127.0.0.1:{}", s.port()));
    assert_eq!(s.url(), format!("redis://127.0.0.1:{}", s.port()));
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert_eq!(
        s.cli(&["CONFIG", "GET", "enable-debug-command"]),
        "enable-debug-command\nyes"
    );
    assert_eq!(s.cli(&["SET", "k", "v"]), "OK");
    let pid = s.pid().expect("running server has a pid");
    assert!(process_exists(pid));

    s.stop();
    assert_eq!(s.pid(), None);
    assert!(!process_exists(pid), "pid {pid} still exists after stop");
    assert!(s.cli(&["PING"]).contains("Could not connect"));

    s.restart();
    assert_eq!(s.cli(&["PING"]), "PONG");
    let pid2 = s.pid().expect("restarted server has a pid");
    assert_ne!(pid, pid2);
    // No persistence: data is gone after a restart.
    assert_eq!(s.cli(&["EXISTS", "k"]), "0");

    // restart while running stops it first
    s.restart();
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert!(!process_exists(pid2));
}

#[test]
fn standalone_extra_args() {
    let s = RedisServer::start_with(&["--maxmemory", "10mb", "--databases", "4"]);
    assert_eq!(
        s.cli(&["CONFIG", "GET", "maxmemory"]),
        "maxmemory\n10485760"
    );
    assert_eq!(s.cli(&["CONFIG", "GET", "databases"]), "databases\n4");
}

#[test]
fn kill_removes_process() {
    let mut s = RedisServer::start();
    let pid = s.pid().unwrap();
    s.kill();
    assert_eq!(s.pid(), None);
    assert!(!process_exists(pid), "pid {pid} still exists after kill");
    s.restart();
    assert_eq!(s.cli(&["PING"]), "PONG");
}

#[test]
fn drop_kills_and_removes_dir() {
    let s = RedisServer::start();
    let pid = s.pid().unwrap();
    let dir = s.dir().unwrap().to_path_buf();
    assert!(dir.join("redis.log").exists());
    drop(s);
    assert!(!process_exists(pid));
    assert!(!dir.exists());
}

#[test]
fn servers_exit_on_their_own_are_noticed() {
    let mut s = RedisServer::start();
    s.cli(&["SHUTDOWN", "NOSAVE"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.is_running() {
        assert!(std::time::Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.pid(), None);
    s.restart();
    assert_eq!(s.cli(&["PING"]), "PONG");
}

#[test]
fn shared_standalone_is_shared_and_flushable() {
    let a = shared_standalone();
    let b = shared_standalone();
    assert_eq!(a.port(), b.port());
    assert_eq!(a.cli(&["PING"]), "PONG");
    assert_eq!(a.cli(&["FLUSHALL"]), "OK");
}

#[test]
fn shared_standalone_survives_the_thread_that_started_it() {
    // The first user may be a short-lived thread: PDEATHSIG must be tied to the spawner thread.
    let port = std::thread::spawn(|| shared_standalone().port())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(shared_standalone().port(), port);
    assert_eq!(shared_standalone().cli(&["PING"]), "PONG");
}

#[test]
fn cluster_starts_with_three_primaries_and_three_replicas() {
    let c = RedisCluster::start();
    assert_eq!(c.nodes.len(), 6);
    assert_eq!(c.addrs().len(), 6);
    assert_eq!(c.primaries().len(), 3);
    assert_eq!(c.replicas().len(), 3);
    for n in &c.nodes {
        assert!(n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        assert_eq!(
            n.cli(&["CONFIG", "GET", "cluster-node-timeout"]),
            "cluster-node-timeout\n2000"
        );
    }
    c.wait_ok(Duration::from_secs(5));

    // node_for_slot names the primary that accepts writes for the key.
    for key in ["foo", "bar", "{user}a", "x"] {
        let n = c.node_for_slot(key_slot(key.as_bytes()));
        assert_eq!(n.cli(&["SET", key, "1"]), "OK", "key {key} on {}", n.addr());
        assert_eq!(
            n.cli(&["CLUSTER", "KEYSLOT", key]),
            key_slot(key.as_bytes()).to_string()
        );
    }
    // Every slot has a primary: check the range boundaries.
    let ports: Vec<u16> = [0u16, 5460, 5461, 10922, 10923, 16383]
        .iter()
        .map(|&s| c.node_for_slot(s).port())
        .collect();
    assert!(ports
        .iter()
        .all(|p| c.primaries().iter().any(|n| n.port() == *p)));
}

#[test]
fn cluster_failover_after_primary_kill() {
    let mut c = RedisCluster::start();
    let slot = key_slot(b"foo");
    let old = c.node_for_slot(slot).port();
    let idx = c.nodes.iter().position(|n| n.port() == old).unwrap();
    c.nodes[idx].kill();
    c.wait_settled(Duration::from_secs(30));
    let new = c.node_for_slot(slot);
    let new_port = new.port();
    assert_ne!(new_port, old);
    assert_eq!(new.cli(&["SET", "foo", "1"]), "OK");
    assert_eq!(c.primaries().len(), 3);
    assert_eq!(c.replicas().len(), 2);

    // The old primary comes back as a replica of the new one.
    c.nodes[idx].restart();
    c.wait_settled(Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.replicas().len() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "old primary did not rejoin as replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.node_for_slot(slot).port(), new_port);
    assert_eq!(c.nodes[idx].cli(&["ROLE"]).lines().next(), Some("slave"));
}

#[test]
fn shared_cluster_is_usable() {
    let c = shared_cluster();
    assert_eq!(c.addrs().len(), 6);
    c.wait_ok(Duration::from_secs(10));
    for p in c.primaries() {
        assert_eq!(p.cli(&["FLUSHALL"]), "OK");
    }
}

#[test]
fn key_slots() {
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"bar"), 5061);
    assert_eq!(key_slot(b"{user}a"), key_slot(b"{user}b"));
    assert_eq!(key_slot(b"{user}a"), key_slot(b"user"));
    // empty hashtag: the whole key is hashed; only the first {...} counts
    assert_eq!(key_slot(b"{}foo"), key_slot_via_redis("{}foo"));
    assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    assert_eq!(key_slot(b"{{x}}"), key_slot_via_redis("{{x}}"));
    assert_eq!(key_slot(b""), 0);
}

/// Ask a real cluster node (CLUSTER KEYSLOT needs cluster mode).
fn key_slot_via_redis(key: &str) -> u16 {
    shared_cluster().nodes[0]
        .cli(&["CLUSTER", "KEYSLOT", key])
        .parse()
        .unwrap()
}

#[test]
fn key_slot_matches_redis_for_many_keys() {
    let s = &shared_cluster().nodes[0];
    for i in 0..50 {
        let key = format!("k{i}{{t{}}}x", i % 7);
        assert_eq!(
            key_slot(key.as_bytes()).to_string(),
            s.cli(&["CLUSTER", "KEYSLOT", &key]),
            "key {key}"
        );
    }
}

#[test]
fn password_protected_server() {
    let mut s = RedisServer::start_with(&["--requirepass", "pw"]);
    assert!(s.cli(&["PING"]).contains("NOAUTH"));
    assert_eq!(s.cli(&["--no-auth-warning", "-a", "pw", "PING"]), "PONG");
    assert!(s.is_running());
    s.restart();
    assert_eq!(s.cli(&["--no-auth-warning", "-a", "pw", "PING"]), "PONG");
}

/// Gone or a zombie (an orphan's zombie may wait for a PID 1 that does not reap).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

const CHILD_ENV: &str = "VSHM_INFRA_CHILD";

/// Run by `servers_die_with_a_killed_test_process` in a child process: starts servers from a
/// short-lived thread, prints their pids, then waits to be killed.
#[test]
#[ignore = "helper process for servers_die_with_a_killed_test_process"]
fn child_process_starting_servers() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let own = std::thread::spawn(|| {
        let s = RedisServer::start();
        let pid = s.pid().unwrap();
        std::mem::forget(s); // never dropped: only PDEATHSIG can end it
        pid
    })
    .join()
    .unwrap();
    let shared = shared_standalone().pid().unwrap();
    println!("PIDS {own} {shared}");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn servers_die_with_a_killed_test_process() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_starting_servers",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("VSHM_TEST_STANDALONE")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let pids: Vec<u32> = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("PIDS ")
                .map(|p| p.split(' ').map(|x| x.parse().unwrap()).collect())
        })
        .expect("child printed no pids");
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        assert!(
            !process_gone(pid),
            "server {pid} should run while the test process runs"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for &pid in &pids {
        while !process_gone(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server {pid} survived its killed test process"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
