//! A real `redis-server` for the tests that need one, started on a free port and killed when
//! dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use super::{REDIS_CLI, REDIS_SERVER, require_program, wait_for};

/// A redis-server child process on a given port, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts redis-server on `port` and waits (bounded) until it listens. Fails the test
    /// when redis-server is not installed (scripts/test.sh installs it) or exits early.
    pub fn start(port: u16) -> Redis {
        let program = require_program(&REDIS_SERVER);
        let child = Command::new(&program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut redis = Redis { child, port };
        wait_for("redis-server to listen", || {
            if let Some(status) = redis.child.try_wait().unwrap() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis Cluster of three masters, each with one replica: six redis-server processes on
/// free ports, joined by `redis-cli --cluster create`, killed (and their files removed) on
/// drop.
pub struct RedisCluster {
    nodes: Vec<Redis>,
    dir: std::path::PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

static CLUSTERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl RedisCluster {
    /// Starts the six servers, creates the cluster and waits (bounded) until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        // One cluster at a time: two being formed at once on one host could meet through a
        // reused port.
        let serial = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
        let program = require_program(&REDIS_SERVER);
        let dir = std::env::temp_dir().join(format!(
            "tickcast-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_cluster_port(&nodes);
            let child = Command::new(&program)
                .current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "5000"])
                // Replicas sync at once (the default waits 5 s for more of them).
                .args(["--repl-diskless-sync-delay", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            nodes.push(Redis { child, port });
        }
        for node in &mut nodes {
            let port = node.port;
            wait_for("a cluster node to listen", || {
                if let Some(status) = node.child.try_wait().unwrap() {
                    panic!("redis-server on port {port} exited at start: {status}");
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        let cluster = RedisCluster {
            nodes,
            dir,
            _serial: serial,
        };
        let mut create = Command::new(redis_cli());
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &cluster.nodes {
            wait_for("the cluster to be ok on every node", || {
                let info = cluster.cli(node.port, &["cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
            });
        }
        // A failover to a replica that has not finished its first sync would lose the data:
        // every replica must be in sync before the tests start.
        let mut replicas = 0;
        for node in &cluster.nodes {
            if cluster.cli(node.port, &["role"]).starts_with("slave") {
                replicas += 1;
                wait_for("a replica to be in sync with its master", || {
                    let info = cluster.cli(node.port, &["info", "replication"]);
                    info.contains("master_link_status:up")
                        && info.contains("master_sync_in_progress:0")
                });
            }
        }
        assert_eq!(
            replicas, 3,
            "redis-cli --cluster create made {replicas} replicas"
        );
        // ... and every node must see the three replicas (gossip takes a moment).
        for node in &cluster.nodes {
            let deadline = std::time::Instant::now() + super::WAIT_LIMIT;
            loop {
                let seen = cluster.cli(node.port, &["cluster", "nodes"]);
                let flags = seen.lines().filter_map(|l| l.split_whitespace().nth(2));
                if flags.filter(|f| f.split(',').any(|f| f == "slave")).count() == 3 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {} does not see three replicas:\n{seen}",
                    node.port
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The address of the first node, as `--redis` takes it.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Runs `redis-cli -p port args...` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new(redis_cli())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The port of the master that serves `key`'s slot, and of its replica.
    pub fn master_and_replica_of(&self, key: &str) -> (u16, u16) {
        let slot: u16 = self
            .cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        let nodes = self.cli(self.nodes[0].port, &["cluster", "nodes"]);
        // `<id> <ip:port@cport> <flags> <master-id|-> ... <slot ranges>`
        let fields: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let port_of =
            |f: &[&str]| -> u16 { f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap() };
        let master = fields
            .iter()
            .find(|f| {
                f[2].contains("master")
                    && f[8..].iter().any(|r| {
                        let mut ends = r.split('-').map(|n| n.parse::<u16>().unwrap_or(u16::MAX));
                        let a = ends.next().unwrap_or(u16::MAX);
                        let b = ends.next().unwrap_or(a);
                        (a..=b).contains(&slot)
                    })
            })
            .unwrap_or_else(|| panic!("no master serves slot {slot}:\n{nodes}"));
        let replica = fields
            .iter()
            .find(|f| f[3] == master[0])
            .unwrap_or_else(|| panic!("the master of slot {slot} has no replica:\n{nodes}"));
        (port_of(master), port_of(replica))
    }

    /// Makes `replica` take over from its master (`CLUSTER FAILOVER`), and waits until the
    /// two have swapped roles and the cluster is ok again.
    pub fn failover(&self, replica: u16) {
        let info = self.cli(replica, &["info", "replication"]);
        let master: u16 = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("master_port:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{replica} is not a replica:\n{info}"));
        let answer = self.cli(replica, &["cluster", "failover"]);
        assert!(answer.contains("OK"), "CLUSTER FAILOVER: {answer}");
        wait_for("the replica to become master", || {
            self.cli(replica, &["role"]).starts_with("master")
        });
        wait_for("the old master to step down", || {
            self.cli(master, &["role"]).starts_with("slave")
        });
        for node in &self.nodes {
            wait_for("the cluster to be ok after the failover", || {
                self.cli(node.port, &["cluster", "info"])
                    .contains("cluster_state:ok")
            });
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (10000 above it) is free too, and not one of `taken`.
fn free_cluster_port(taken: &[Redis]) -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        let clash = taken
            .iter()
            .any(|r| r.port == port || r.port == bus || r.port + 10_000 == port);
        if !clash && TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// `redis-cli`, which comes with redis-server (Debian's redis-tools).
fn redis_cli() -> std::path::PathBuf {
    require_program(&REDIS_CLI)
}
