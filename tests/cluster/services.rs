//! Servers of a test's own, so that it can stop, kill and start them again without
//! touching the servers other tests share.

use std::path::PathBuf;
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
