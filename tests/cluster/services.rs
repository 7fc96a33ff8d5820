//! Servers of a test's own, so that it can stop, kill and start them again without
//! touching the servers other tests share.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Redis server of this test's own, so that it can be stopped and started again.
pub struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, dir: tempfile::tempdir().unwrap(), child: None };
        redis.run().await;
        redis
    }

    pub async fn run(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (deploy/local/test.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the server: connections stay open but nothing
    /// answers, as with a hung server or a link that silently drops packets.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().and_then(|child| child.id()).expect("redis-server runs").to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A TCP relay to a local port that can be cut: cut, it closes every connection through it
/// and drops new ones at once, as a partition between one client and a server looks to that
/// client, while the server stays up for everyone else. Stalled, it holds what it reads until
/// unstalled, as a hung link looks: connections stay open and nothing is answered.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    stalled: tokio::sync::watch::Sender<bool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn to(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, links) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let stalled = tokio::sync::watch::Sender::new(false);
        let accepting = tokio::spawn({
            let (cut, links, stalled) = (cut.clone(), links.clone(), stalled.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let stalled = stalled.subscribe();
                    let link = tokio::spawn(async move {
                        if let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                            let ((from_client, to_client), (from_server, to_server)) =
                                (client.into_split(), server.into_split());
                            tokio::join!(
                                forward(from_client, to_server, stalled.clone()),
                                forward(from_server, to_client, stalled)
                            );
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Relay { port, cut, stalled, links, accepting }
    }

    pub fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.links.lock().unwrap().drain(..).for_each(|link| link.abort());
        }
    }
}

/// Copies what `from` sends to `to`, holding it while the relay is stalled.
async fn forward(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        if stalled.wait_for(|stalled| !stalled).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut(true);
    }
}

/// How a PostgreSQL server is stopped (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy)]
pub enum PgStop {
    /// Disconnects clients, then shuts down cleanly.
    Fast,
    /// Quits at once, as a crash would: recovery runs on the next start.
    Immediate,
    /// Hangs: see [`OwnPostgres::freeze`].
    Freeze,
}

/// A PostgreSQL server of this test's own (`initdb` in a temporary folder), on a fixed port
/// across restarts.
pub struct OwnPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnPostgres {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres { port, dir };
        if running_as_root() {
            let owner = std::process::Command::new("chown").arg("postgres").arg(pg.dir.path()).status().unwrap();
            assert!(owner.success(), "chown the PostgreSQL folder");
        }
        let init = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .await
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        pg.run().await;
        pg
    }

    /// Starts the server (again), or resumes it if it was frozen.
    pub async fn run(&self) {
        if self.data().join("postmaster.pid").exists() {
            return self.freeze(false);
        }
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log");
        let started = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .await
            .unwrap();
        assert!(started.status.success(), "pg_ctl start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    pub async fn stop(&self, how: PgStop) {
        let mode = match how {
            PgStop::Fast => "fast",
            PgStop::Immediate => "immediate",
            PgStop::Freeze => return self.freeze(true),
        };
        let stopped =
            self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", mode, "-w", "stop"]).output().await.unwrap();
        assert!(stopped.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stopped.stderr));
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the server and its backends: connections
    /// stay open and new ones are accepted by the kernel, but nothing answers, as with a
    /// hung server or a network that drops packets.
    pub fn freeze(&self, frozen: bool) {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_owned();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        // The backends first, so that none is forked after the parent stopped.
        std::process::Command::new("pkill").args([signal, "-P", &pid]).status().unwrap();
        std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, run as the `postgres` user when the tests run as root (the
    /// server refuses root).
    fn command(&self, program: &str) -> tokio::process::Command {
        let path = pg_bin().join(program);
        let mut command = if running_as_root() {
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            tokio::process::Command::new(path)
        };
        command.kill_on_drop(true);
        command
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if running_as_root() { "runuser" } else { "true" })
            .args(if running_as_root() { vec!["-u", "postgres", "--"] } else { vec![] })
            .arg(pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Where PostgreSQL's programs are: on the PATH, or Debian's versioned folder.
fn pg_bin() -> PathBuf {
    if let Ok(out) = std::process::Command::new("sh").args(["-c", "command -v pg_ctl"]).output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        return path.parent().unwrap().to_owned();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (deploy/local/test.sh installs it)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version")
}

/// A Redis Cluster of this test's own: three masters, each with a replica, that fail over
/// within about two seconds (`cluster-node-timeout` 1000 ms).
pub struct OwnRedisCluster {
    servers: Vec<(u16, tokio::process::Child)>,
    _dir: tempfile::TempDir,
}

impl OwnRedisCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        for _ in 0..6 {
            servers.push(cluster_server(dir.path()).await);
        }
        let addresses: Vec<String> = servers.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .unwrap();
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        let cluster = OwnRedisCluster { servers, _dir: dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut synced = 0;
            for (port, _) in &cluster.servers {
                synced += redis_cli(*port, &["info", "replication"]).await.matches("master_link_status:up").count();
            }
            if synced == 3 {
                return cluster;
            }
            assert!(tokio::time::Instant::now() < deadline, "the replicas did not sync");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The seed nodes, as `SWITCHBOARD_REDIS_CLUSTER_NODES` takes them.
    pub fn seeds(&self) -> String {
        self.servers.iter().map(|(port, _)| format!("redis://127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    /// The port of the master that serves `key`'s slot.
    pub async fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = redis_cli(self.servers[0].0, &["cluster", "keyslot", key]).await.trim().parse().unwrap();
        let nodes = redis_cli(self.servers[0].0, &["cluster", "nodes"]).await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            for range in &fields[8..] {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                if (start.parse().unwrap()..=end.parse().unwrap()).contains(&slot) {
                    return port;
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// For each master: the RESP3 connections to it (Switchboard's; redis-cli and replicas
    /// speak RESP2), and how many of them hold sharded subscriptions.
    pub async fn connections_per_master(&self) -> Vec<(usize, usize)> {
        let mut counts = Vec::new();
        for (port, _) in &self.servers {
            if !redis_cli(*port, &["role"]).await.starts_with("master") {
                continue;
            }
            let clients = redis_cli(*port, &["client", "list"]).await;
            let ours: Vec<&str> = clients.lines().filter(|line| line.contains(" resp=3")).collect();
            let subscribed = ours.iter().filter(|line| !line.contains(" ssub=0 ")).count();
            counts.push((ours.len(), subscribed));
        }
        counts
    }

    /// Moves the hash slot of `key` from its master to another master (the keys in it too);
    /// the ports of both.
    pub async fn move_slot_of(&self, key: &str) -> (u16, u16) {
        let slot = redis_cli(self.servers[0].0, &["cluster", "keyslot", key]).await.trim().to_owned();
        let from = self.master_of(key).await;
        let mut to = None;
        for (port, _) in &self.servers {
            if *port != from && redis_cli(*port, &["role"]).await.starts_with("master") {
                to = Some(*port);
            }
        }
        let to = to.expect("another master");
        let id = |port: u16| async move { redis_cli(port, &["cluster", "myid"]).await.trim().to_owned() };
        let (from_id, to_id) = (id(from).await, id(to).await);
        redis_cli(to, &["cluster", "setslot", &slot, "importing", &from_id]).await;
        redis_cli(from, &["cluster", "setslot", &slot, "migrating", &to_id]).await;
        loop {
            let keys = redis_cli(from, &["cluster", "getkeysinslot", &slot, "100"]).await;
            let keys: Vec<&str> = keys.split_whitespace().collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["migrate", "127.0.0.1"];
            let port = to.to_string();
            migrate.extend([port.as_str(), "", "0", "5000", "keys"]);
            migrate.extend(keys);
            redis_cli(from, &migrate).await;
        }
        for (port, _) in &self.servers {
            redis_cli(*port, &["cluster", "setslot", &slot, "node", &to_id]).await;
        }
        (from, to)
    }

    /// Kills the server on `port` (`SIGKILL`): its replica takes over.
    pub async fn kill(&mut self, port: u16) {
        let (_, child) = self.servers.iter_mut().find(|(p, _)| *p == port).expect("a server of this cluster");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// Waits (up to 20 s) until another master serves the slots the dead server on `dead` had.
    pub async fn until_failed_over(&mut self, dead: u16) {
        let survivor = self.survivor();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = redis_cli(survivor, &["cluster", "nodes"]).await;
            let dead_serves = nodes
                .lines()
                .any(|line| line.contains(&format!("127.0.0.1:{dead}@")) && line.split_whitespace().count() > 8);
            if !dead_serves && redis_cli(survivor, &["cluster", "info"]).await.contains("cluster_state:ok") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no replica took over:\n{nodes}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A server that still runs.
    fn survivor(&mut self) -> u16 {
        self.servers
            .iter_mut()
            .find_map(|(port, child)| matches!(child.try_wait(), Ok(None)).then_some(*port))
            .expect("a server runs")
    }
}

async fn redis_cli(port: u16, args: &[&str]) -> String {
    let out =
        tokio::process::Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis Cluster server with its data under `dir`, started and answering. Its ports are
/// free when picked but may be taken before it binds them (by any test's connection): then it
/// exits, and another pair is tried.
async fn cluster_server(dir: &std::path::Path) -> (u16, tokio::process::Child) {
    for _ in 0..5 {
        let (port, bus) = (free_port(), free_port());
        let data = dir.join(port.to_string());
        std::fs::create_dir_all(&data).unwrap();
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--cluster-port", &bus.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", "1000", "--cluster-config-file", "nodes.conf"])
            // Replicas sync at once (the default waits 5 s), so that they can take over.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (deploy/local/test.sh installs it)");
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return (port, child);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("no redis-server of the cluster started");
}
